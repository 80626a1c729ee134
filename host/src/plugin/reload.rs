//! A plugin bound to its file, so that a quarantined plugin can be retried
//! the moment somebody deploys a fixed one.
//!
//! A built-in plugin never changes while the agent runs; every load (the
//! first, and each reload of a file) is logged with the plugin's name,
//! version, sha256 and where it came from (`built-in` or the file), so an
//! operator can tell which of a built-in and its override runs.
//!
//! [`Reloading`] holds one instance and remembers the size, modification
//! time and sha256 of the file it came from. [`Reloading::changed`] is cheap
//! enough to call at every evaluation: a `stat`, and a read and hash only
//! when size or time differ (so a `touch` is not a change, and a copy that
//! keeps size and time is still caught on the next differing stat). When the
//! content changed, the instance is dropped and the next call loads the new
//! file, compiled and configured like the first; a load that fails is an
//! error of that call, counted like any other failure.

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

/// A plugin instance that follows its file.
pub struct Reloading<T> {
    source: PluginSource,
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
                let identity = instance.identity();
                tracing::info!(
                    message = "Plugin loaded.",
                    application = %identity.application,
                    plugin = %identity.name,
                    plugin_version = %identity.version,
                    sha256 = %self.digest.map(|d| sha256_hex_of_digest(&d)).unwrap_or_default(),
                    source = %self.source.origin(),
                );
                instance
            }
        };
        Ok(self.instance.insert(instance))
    }

    /// Whether the file's content changed since it was last loaded (or a
    /// load was attempted); if so the next [`Reloading::get`] loads it
    /// again.
    pub fn changed(&mut self) -> bool {
        let Some(stamp) = Stamp::of(&self.source) else {
            // Missing for now (being replaced?), or a built-in, which never
            // changes: nothing new to load.
            return false;
        };
        if Some(stamp) == self.stamp {
            return false;
        }
        self.stamp = Some(stamp);
        let Some(digest) = digest(&self.source) else {
            return false;
        };
        if Some(digest) == self.digest {
            return false;
        }
        self.digest = Some(digest);
        self.instance = None;
        true
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

fn sha256_hex_of_digest(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
