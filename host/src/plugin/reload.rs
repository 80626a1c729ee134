//! A plugin bound to its file: drop-in and hot reload.
//!
//! [`Reloading`] holds one instance and remembers the size, modification
//! time and sha256 of the file it came from. [`Reloading::refresh`] is cheap
//! enough to call at every evaluation: a `stat`, and a read and hash only
//! when size or time differ (so a `touch` is not a change, and a copy that
//! keeps size and time is still caught on the next differing stat). When the
//! content changed, the new file is loaded beside the running instance,
//! compiled and configured with the application's parameters like the
//! first: only if that succeeds does it replace the running one. A file
//! that does not load or refuses the parameters is [`Refresh::Refused`] and
//! the running instance keeps deciding, so a bad deployment never leaves an
//! application without a working plugin. It is tried again only when the
//! file changes again. With no instance running (the first load failed),
//! the next call loads the new file, and a failure is that call's.

//!
//! A built-in plugin never changes while the agent runs, but a file of its
//! name dropped into `plugin_dir` later replaces it (see
//! [`Reloading::prefer`]); every load (the first, and each reload) is
//! logged with the plugin's name, version, sha256 and where it came from
//! (`built-in` or the file), so an operator can tell which one runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::builtin::PluginSource;
use super::{InterpreterInstance, PluginError, PluginHost, PluginIdentity, PolicyInstance};

/// What a reloadable instance tells about itself.
pub trait Labelled {
    /// `name version`, e.g. `step 0.1.0`.
    fn label(&self) -> String;
    /// Its name, version and application.
    fn identity(&self) -> &PluginIdentity;
}

impl Labelled for PolicyInstance {
    fn label(&self) -> String {
        PolicyInstance::label(self)
    }
    fn identity(&self) -> &PluginIdentity {
        PolicyInstance::identity(self)
    }
}

impl Labelled for InterpreterInstance {
    fn label(&self) -> String {
        InterpreterInstance::label(self)
    }
    fn identity(&self) -> &PluginIdentity {
        InterpreterInstance::identity(self)
    }
}

/// Loads an instance from a file or a built-in.
type Loader<T> = Box<dyn FnMut(&PluginSource) -> Result<T, PluginError> + Send>;

/// What `stat` says of a file: enough to notice most replacements without
/// reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(source: &PluginSource) -> Option<Self> {
        let meta = std::fs::metadata(source.file()?).ok()?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// What [`Reloading::refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The file's content is what was loaded last.
    Unchanged,
    /// The file changed while no instance runs: the next call loads it.
    Pending,
    /// A new file was loaded and configured, and now runs.
    Reloaded {
        /// `name version` of the instance replaced.
        from: String,
        /// `name version` of the instance now running.
        to: String,
        /// The new file's sha256, in hex.
        sha256: String,
    },
    /// A new file did not load or refused the parameters; the running
    /// instance stays.
    Refused {
        /// `name version` of the instance that keeps running.
        running: String,
        /// The refused file's sha256, in hex.
        sha256: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Refresh {
    /// Whether new code is (or is about to be) running: ends a quarantine.
    pub fn is_new_code(&self) -> bool {
        matches!(self, Refresh::Pending | Refresh::Reloaded { .. })
    }
}

/// A plugin instance that follows its file.
pub struct Reloading<T> {
    source: PluginSource,
    /// The file the configuration names, when `source` is a stand-in for
    /// it (the built-in, or Cargo's `_` spelling of the name): once it
    /// appears, it is followed instead.
    preferred: Option<PathBuf>,
    loader: Loader<T>,
    instance: Option<T>,
    stamp: Option<Stamp>,
    digest: Option<[u8; 32]>,
    label: String,
}

impl<T: Labelled> Reloading<T> {
    /// Loads the plugin from `source` with `loader` now; an error is
    /// returned as it is (a plugin that cannot load at start is a
    /// configuration error).
    pub fn new(
        source: impl Into<PluginSource>,
        loader: impl FnMut(&PluginSource) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<Self, PluginError> {
        let mut this = Self::deferred(source, loader);
        this.get()?;
        Ok(this)
    }

    /// Binds the plugin from `source` without loading it: the first call loads
    /// it, and a load that fails is that call's failure (so it holds and
    /// may be quarantined like any failing call, instead of stopping an
    /// agent that serves other applications).
    pub fn deferred(
        source: impl Into<PluginSource>,
        loader: impl FnMut(&PluginSource) -> Result<T, PluginError> + Send + 'static,
    ) -> Self {
        let source = source.into();
        let label = source
            .display_path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        Self {
            source,
            preferred: None,
            loader: Box::new(loader),
            instance: None,
            stamp: None,
            digest: None,
            label,
        }
    }

    /// The instance, loading the file first if there is none (never loaded,
    /// or the file changed).
    pub fn get(&mut self) -> Result<&mut T, PluginError> {
        let instance = match self.instance.take() {
            Some(instance) => instance,
            None => {
                // The fingerprint is of the file this attempt loads, even
                // if the load fails: `changed` then means "changed since
                // the last attempt", and a file that changes during the
                // load is seen as changed and loaded again.
                self.stamp = Stamp::of(&self.source);
                self.digest = digest(&self.source);
                let instance = (self.loader)(&self.source)?;
                self.label = instance.label();
                let sha256 = self.digest.as_ref().map(hex).unwrap_or_default();
                log_loaded(&instance, &sha256, &self.source);
                instance
            }
        };
        Ok(self.instance.insert(instance))
    }

    /// Follows `preferred` instead of the current source as soon as that
    /// file exists: a plugin dropped in under the name the configuration
    /// gives replaces the built-in or stand-in it was resolved to (loaded
    /// and configured first, like any new file). No effect when it is the
    /// current file.
    pub fn prefer(mut self, preferred: PathBuf) -> Self {
        self.preferred = (self.source.file() != Some(preferred.as_path())).then_some(preferred);
        self
    }

    /// Follows the file: if its content changed since it was last loaded
    /// (or a load was attempted), loads and configures the new file and, if
    /// that succeeds, runs it instead of the current instance. Blocking (it
    /// may read, compile and configure a component): call it off the async
    /// runtime.
    pub fn refresh(&mut self) -> Refresh {
        if let Some(preferred) = self.preferred.take_if(|p| p.is_file()) {
            // Its content is new whatever its time and size say.
            self.source = PluginSource::File(preferred);
            self.stamp = None;
        }
        let Some(new_digest) = self.content_changed() else {
            return Refresh::Unchanged;
        };
        if self.instance.is_none() {
            return Refresh::Pending;
        }
        let sha256 = hex(&new_digest);
        match (self.loader)(&self.source) {
            Ok(instance) => {
                log_loaded(&instance, &sha256, &self.source);
                let from = std::mem::replace(&mut self.label, instance.label());
                self.instance = Some(instance);
                Refresh::Reloaded {
                    from,
                    to: self.label.clone(),
                    sha256,
                }
            }
            Err(error) => Refresh::Refused {
                running: self.label.clone(),
                sha256,
                reason: error.to_string(),
            },
        }
    }

    /// The new digest if the file's content differs from the last one
    /// loaded (or tried), remembering it: a refused file is not tried again
    /// until it changes again. A built-in never changes.
    fn content_changed(&mut self) -> Option<[u8; 32]> {
        // Missing for now (being replaced?), or a built-in: nothing new.
        let stamp = Stamp::of(&self.source)?;
        if Some(stamp) == self.stamp {
            return None;
        }
        self.stamp = Some(stamp);
        let digest = digest(&self.source)?;
        if Some(digest) == self.digest {
            return None;
        }
        self.digest = Some(digest);
        Some(digest)
    }

    /// The sha256 of the component last loaded (or tried), in hex.
    pub fn sha256(&self) -> Option<String> {
        self.digest.as_ref().map(hex)
    }

    /// The running instance, if one is loaded (`None` before the first
    /// load succeeded: the next call loads).
    pub fn loaded(&self) -> Option<&T> {
        self.instance.as_ref()
    }

    /// `name version` of the last loaded instance, or the file's stem
    /// before any load succeeded.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// Where the plugin comes from.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }
}

fn digest(source: &PluginSource) -> Option<[u8; 32]> {
    let bytes = source.bytes().ok()?;
    Some(Sha256::digest(&bytes).into())
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Says which plugin now runs for which application, and from where.
fn log_loaded<T: Labelled>(instance: &T, sha256: &str, source: &PluginSource) {
    let identity = instance.identity();
    tracing::info!(
        message = "Plugin loaded.",
        application = %identity.application,
        plugin = %identity.name,
        plugin_version = %identity.version,
        sha256 = %sha256,
        source = %source.origin(),
    );
}

impl Reloading<PolicyInstance> {
    /// The policy from `source` for `application`, configured with
    /// `params_json`, loaded now.
    pub fn policy(
        host: Arc<PluginHost>,
        source: impl Into<PluginSource>,
        params_json: String,
        application: String,
    ) -> Result<Self, PluginError> {
        Self::new(source, move |source: &PluginSource| {
            host.load_policy(source, &params_json, &application)
        })
    }

    /// Like [`Reloading::policy`], loaded at the first call.
    pub fn policy_deferred(
        host: Arc<PluginHost>,
        source: impl Into<PluginSource>,
        params_json: String,
        application: String,
    ) -> Self {
        Self::deferred(source, move |source: &PluginSource| {
            host.load_policy(source, &params_json, &application)
        })
    }
}

impl Reloading<InterpreterInstance> {
    /// The interpreter from `source` for `application`, configured with
    /// `params_json`, loaded now.
    pub fn interpreter(
        host: Arc<PluginHost>,
        source: impl Into<PluginSource>,
        params_json: String,
        application: String,
    ) -> Result<Self, PluginError> {
        Self::new(source, move |source: &PluginSource| {
            host.load_interpreter(source, &params_json, &application)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "plugin" that is its file's text; `bad` files do not load.
    struct Text(String, PluginIdentity);

    impl Labelled for Text {
        fn label(&self) -> String {
            self.0.clone()
        }
        fn identity(&self) -> &PluginIdentity {
            &self.1
        }
    }

    fn text_plugin(path: &std::path::Path) -> Reloading<Text> {
        Reloading::new(path.to_path_buf(), |source: &PluginSource| {
            let path = source.display_path();
            let read = |source| PluginError::Read {
                path: path.clone(),
                source,
            };
            let text = String::from_utf8(source.bytes().map_err(read)?.into_owned())
                .map_err(|e| read(std::io::Error::other(e)))?;
            if text.starts_with("bad") {
                return Err(read(std::io::Error::other("refused")));
            }
            let identity = PluginIdentity {
                name: text.clone(),
                version: "0".to_owned(),
                path: path.clone(),
                application: "app".to_owned(),
            };
            Ok(Text(text, identity))
        })
        .expect("the first file loads")
    }

    #[test]
    fn a_new_file_replaces_the_running_one_only_if_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let mut plugin = text_plugin(&path);
        assert_eq!(plugin.refresh(), Refresh::Unchanged);

        std::fs::write(&path, "bad two").unwrap();
        let Refresh::Refused {
            running, sha256, ..
        } = plugin.refresh()
        else {
            panic!("a file that does not load is refused");
        };
        assert_eq!(running, "one");
        assert_eq!(sha256, hex(&Sha256::digest(b"bad two").into()));
        assert_eq!(plugin.get().unwrap().0, "one", "the running one stays");
        assert_eq!(plugin.refresh(), Refresh::Unchanged, "refused once");

        std::fs::write(&path, "three!").unwrap();
        assert_eq!(
            plugin.refresh(),
            Refresh::Reloaded {
                from: "one".into(),
                to: "three!".into(),
                sha256: hex(&Sha256::digest(b"three!").into()),
            }
        );
        assert_eq!(plugin.get().unwrap().0, "three!");
    }

    #[test]
    fn the_file_the_configuration_names_replaces_its_stand_in_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let stand_in = dir.path().join("target_tracking.wasm");
        let named = dir.path().join("target-tracking.wasm");
        std::fs::write(&stand_in, "built").unwrap();
        let mut plugin = text_plugin(&stand_in).prefer(named.clone());
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        std::fs::write(&named, "dropped in").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { to, .. } if to == "dropped in"));
        assert_eq!(plugin.source().file(), Some(named.as_path()));
        // From now on the named file is the one followed.
        std::fs::write(&stand_in, "built again").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
    }
}

#[cfg(test)]
mod built_in_tests {
    use super::*;

    /// A "plugin" labelled by where it came from and its size.
    struct Sized(String, PluginIdentity);

    impl Labelled for Sized {
        fn label(&self) -> String {
            self.0.clone()
        }
        fn identity(&self) -> &PluginIdentity {
            &self.1
        }
    }

    fn sized(source: &PluginSource) -> Result<Sized, PluginError> {
        let bytes = source.bytes().map_err(|source_error| PluginError::Read {
            path: source.display_path(),
            source: source_error,
        })?;
        let label = format!("{} ({} bytes)", source.origin(), bytes.len());
        let identity = PluginIdentity {
            name: label.clone(),
            version: "0".to_owned(),
            path: source.display_path(),
            application: "app".to_owned(),
        };
        Ok(Sized(label, identity))
    }

    /// A running built-in is replaced by a file of its name dropped into
    /// plugin_dir later, at the next refresh, once it loads.
    #[test]
    fn a_file_dropped_in_later_replaces_a_running_built_in() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("hold.wasm");
        let builtin = crate::plugin::builtin::find("hold").expect("hold is built in");
        let mut plugin = Reloading::new(PluginSource::BuiltIn(builtin), sized)
            .expect("the built-in loads")
            .prefer(named.clone());
        assert!(plugin.label().starts_with("built-in"), "{}", plugin.label());
        assert_eq!(plugin.refresh(), Refresh::Unchanged);

        std::fs::write(&named, b"a rebuilt hold").unwrap();
        let Refresh::Reloaded { from, to, .. } = plugin.refresh() else {
            panic!("the dropped-in file runs now");
        };
        assert!(from.starts_with("built-in"), "{from}");
        assert!(to.ends_with("(14 bytes)"), "{to}");
        assert_eq!(plugin.source().file(), Some(named.as_path()));
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
    }
}
