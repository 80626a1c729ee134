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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{InterpreterInstance, PluginError, PluginHost, PolicyInstance};

/// What a reloadable instance tells about itself.
pub trait Labelled {
    /// `name version`, e.g. `step 0.1.0`.
    fn label(&self) -> String;
}

impl Labelled for PolicyInstance {
    fn label(&self) -> String {
        PolicyInstance::label(self)
    }
}

impl Labelled for InterpreterInstance {
    fn label(&self) -> String {
        InterpreterInstance::label(self)
    }
}

/// Loads an instance from a file.
type Loader<T> = Box<dyn FnMut(&Path) -> Result<T, PluginError> + Send>;

/// What `stat` says of a file: enough to notice most replacements without
/// reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
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
    path: PathBuf,
    /// The file the configuration names, when `path` is a stand-in for it
    /// (Cargo's `_` spelling today; a built-in tomorrow): once it appears,
    /// it is followed instead.
    preferred: Option<PathBuf>,
    loader: Loader<T>,
    instance: Option<T>,
    stamp: Option<Stamp>,
    digest: Option<[u8; 32]>,
    label: String,
}

impl<T: Labelled> Reloading<T> {
    /// Loads the plugin at `path` with `loader` now; an error is returned
    /// as it is (a plugin that cannot load at start is a configuration
    /// error).
    pub fn new(
        path: PathBuf,
        loader: impl FnMut(&Path) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<Self, PluginError> {
        let mut this = Self::deferred(path, loader);
        this.get()?;
        Ok(this)
    }

    /// Binds the plugin at `path` without loading it: the first call loads
    /// it, and a load that fails is that call's failure (so it holds and
    /// may be quarantined like any failing call, instead of stopping an
    /// agent that serves other applications).
    pub fn deferred(
        path: PathBuf,
        loader: impl FnMut(&Path) -> Result<T, PluginError> + Send + 'static,
    ) -> Self {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        Self {
            path,
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
                self.stamp = Stamp::of(&self.path);
                self.digest = digest(&self.path);
                let instance = (self.loader)(&self.path)?;
                self.label = instance.label();
                instance
            }
        };
        Ok(self.instance.insert(instance))
    }

    /// Follows `preferred` instead of the current file as soon as it exists:
    /// a plugin dropped in under the name the configuration gives replaces
    /// the stand-in it was resolved to (loaded and configured first, like
    /// any new file). No effect when it is the current file.
    pub fn prefer(mut self, preferred: PathBuf) -> Self {
        self.preferred = (preferred != self.path).then_some(preferred);
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
            self.path = preferred;
            self.stamp = None;
        }
        let Some(new_digest) = self.content_changed() else {
            return Refresh::Unchanged;
        };
        if self.instance.is_none() {
            return Refresh::Pending;
        }
        let sha256 = hex(&new_digest);
        match (self.loader)(&self.path) {
            Ok(instance) => {
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
    /// until it changes again.
    fn content_changed(&mut self) -> Option<[u8; 32]> {
        // Missing for now (being replaced?): nothing new to load yet.
        let stamp = Stamp::of(&self.path)?;
        if Some(stamp) == self.stamp {
            return None;
        }
        self.stamp = Some(stamp);
        let digest = digest(&self.path)?;
        if Some(digest) == self.digest {
            return None;
        }
        self.digest = Some(digest);
        Some(digest)
    }

    /// The sha256 of the file last loaded (or tried), in hex.
    pub fn sha256(&self) -> Option<String> {
        self.digest.as_ref().map(hex)
    }

    /// `name version` of the last loaded instance, or the file's stem
    /// before any load succeeded.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// The plugin's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).into())
}

impl Reloading<PolicyInstance> {
    /// The policy at `path` for `application`, configured with
    /// `params_json`, loaded now.
    pub fn policy(
        host: Arc<PluginHost>,
        path: PathBuf,
        params_json: String,
        application: String,
    ) -> Result<Self, PluginError> {
        Self::new(path, move |path: &Path| {
            host.load_policy(path, &params_json, &application)
        })
    }

    /// Like [`Reloading::policy`], loaded at the first call.
    pub fn policy_deferred(
        host: Arc<PluginHost>,
        path: PathBuf,
        params_json: String,
        application: String,
    ) -> Self {
        Self::deferred(path, move |path: &Path| {
            host.load_policy(path, &params_json, &application)
        })
    }
}

impl Reloading<InterpreterInstance> {
    /// The interpreter at `path` for `application`, configured with
    /// `params_json`, loaded now.
    pub fn interpreter(
        host: Arc<PluginHost>,
        path: PathBuf,
        params_json: String,
        application: String,
    ) -> Result<Self, PluginError> {
        Self::new(path, move |path: &Path| {
            host.load_interpreter(path, &params_json, &application)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "plugin" that is its file's text; `bad` files do not load.
    struct Text(String);

    impl Labelled for Text {
        fn label(&self) -> String {
            self.0.clone()
        }
    }

    fn text_plugin(path: &Path) -> Reloading<Text> {
        Reloading::new(path.to_path_buf(), |path: &Path| {
            let text = std::fs::read_to_string(path).map_err(|source| PluginError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if text.starts_with("bad") {
                return Err(PluginError::Read {
                    path: path.to_path_buf(),
                    source: std::io::Error::other("refused"),
                });
            }
            Ok(Text(text))
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
        assert_eq!(plugin.path(), named);
        // From now on the named file is the one followed.
        std::fs::write(&stand_in, "built again").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
    }
}
