//! A plugin bound to its file: drop-in and hot reload.
//!
//! [`Reloading`] holds one instance and remembers the size, modification
//! and change times, inode and sha256 of the file it came from.
//! [`Reloading::refresh`] is cheap enough to call at every evaluation: a
//! `stat`, and a read and hash only when one of those differs (so a `touch`
//! is not a change, and a copy that keeps size and modification time is
//! still caught by its change time). When the
//! content changed, the new file is loaded beside the running instance,
//! compiled and configured with the application's parameters like the
//! first: only if that succeeds does it replace the running one. A file
//! that does not load or refuses the parameters is [`Refresh::Refused`] and
//! the running instance keeps deciding. One that loads but fails its first
//! call in a way that is its code's (a trap, an answer outside the
//! contract) is rolled back at the next refresh: the instance it replaced,
//! kept until then with its state if its own last call had answered,
//! answers again ([`Reloading::answered`]), and that refresh reports the
//! new file refused. So a bad deployment never leaves an application
//! without a working plugin for more than one evaluation. A
//! refused file is tried again only when it changes again (or, refused for
//! a reason that may pass, a few times: [`RELOAD_TRIES`]). With no instance running (the first load failed),
//! the next call loads the new file, and a failure is that call's.

//!
//! A built-in plugin never changes while the agent runs, but a file of its
//! name dropped into `plugin_dir` later replaces it (see
//! [`Reloading::prefer`]); every load (the first, and each reload) is
//! logged with the plugin's name, version, sha256 and where it came from
//! (`built-in` or the file), so an operator can tell which one runs.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::builtin::PluginSource;
use super::{
    FailureClass, InterpreterInstance, PluginError, PluginHost, PluginIdentity, PolicyInstance,
};
use crate::target::Words;

/// What a reloadable instance tells about itself.
pub trait Labelled {
    /// `name version`, e.g. `step 0.1.0`.
    fn label(&self) -> String;
    /// Its name, version and application.
    fn identity(&self) -> &PluginIdentity;
    /// The sha256 of the bytes it was compiled from, when it knows it:
    /// the file may have changed between the read that noticed it and the
    /// load's own read (a copy still under way), and what runs is what
    /// the load read.
    fn sha256(&self) -> Option<[u8; 32]> {
        None
    }
}

impl Labelled for PolicyInstance {
    fn label(&self) -> String {
        PolicyInstance::label(self)
    }
    fn identity(&self) -> &PluginIdentity {
        PolicyInstance::identity(self)
    }
    fn sha256(&self) -> Option<[u8; 32]> {
        Some(PolicyInstance::sha256(self))
    }
}

impl Labelled for InterpreterInstance {
    fn label(&self) -> String {
        InterpreterInstance::label(self)
    }
    fn identity(&self) -> &PluginIdentity {
        InterpreterInstance::identity(self)
    }
    fn sha256(&self) -> Option<[u8; 32]> {
        Some(InterpreterInstance::sha256(self))
    }
}

/// Loads an instance from a file or a built-in; shared with the thread
/// of a load in the background.
type Loader<T> = Arc<Mutex<dyn FnMut(&PluginSource) -> Result<T, PluginError> + Send>>;

/// A load of a new file under way beside the running instance.
struct Job<T> {
    /// The sha256 of the content it loads.
    digest: [u8; 32],
    /// Where that content came from.
    source: PluginSource,
    /// The file's stamp when that content was read.
    read_at: Option<Stamp>,
    /// The file changed again since it started: its result is dropped.
    stale: bool,
    /// Its result, once it has arrived.
    done: Option<Result<T, PluginError>>,
    receiver: Receiver<Result<T, PluginError>>,
}

/// What `stat` says of a file: enough to notice a replacement without
/// reading it. Beside the size and the modification time (which a copy
/// that keeps times, `cp -p` or `rsync -a`, or a reproducible build keeps
/// too), the device and inode (a file renamed into place is another file)
/// and the change time, with its nanoseconds (set by every write, rename
/// and chmod, and by no tool that restores times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
    changed: (i64, i64),
}

impl Stamp {
    fn of(source: &PluginSource) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(source.file()?).ok()?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            device: meta.dev(),
            inode: meta.ino(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// What [`Reloading::refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Nothing new runs: the file's content is what was loaded last, or
    /// a new one is still loading in the background.
    Unchanged,
    /// The file changed while no instance runs: the next call loads it.
    /// (A new file loading beside a running instance is `Unchanged` until
    /// its load finished.)
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
    /// The files a plugin given by name may be dropped in as, best first
    /// (`<name>.wasm`, then Cargo's `_` spelling): one ranked above
    /// `source` (the built-in, or a lower-ranked file) is followed instead
    /// once it appears.
    preferred: Vec<PathBuf>,
    /// What ran before each preferred file appeared, the newest last: the
    /// configuration's own resolution first, which runs again when the
    /// files dropped in over it are deleted.
    stand_in: Vec<PluginSource>,
    loader: Loader<T>,
    instance: Option<T>,
    stamp: Option<Stamp>,
    digest: Option<[u8; 32]>,
    /// The sha256 of the content the running instance came from: a file
    /// that comes back to it (a refused drop-in undone) is not new.
    running: Option<[u8; 32]>,
    label: String,
    /// Whether a new file is loaded on a thread of its own.
    background: bool,
    /// The load of a new file under way, in the background.
    job: Option<Job<T>>,
    /// The content whose loads failed for a reason that may pass (a
    /// compile past its deadline, a start that trapped or timed out), and
    /// how many times: it is tried again at the next refreshes, up to
    /// [`RELOAD_TRIES`] in all.
    failing: Option<([u8; 32], u32)>,
    /// The next refresh loads the current content even if it is the one
    /// tried last (a try of `failing` is due).
    retry: bool,
    /// The instance a reload replaced, if its last call had answered,
    /// kept until the new one has answered a call: a new one whose first
    /// call fails in a way that is the code's (a trap, an answer outside
    /// the contract, memory) gives way to it again.
    previous: Option<Previous<T>>,
    /// Whether the running instance's last call answered (or it has not
    /// been called yet): only such an instance is kept to go back to.
    answering: bool,
    /// A roll-back decided by [`Reloading::answered`], made (and reported)
    /// by the next refresh, so that the failed call is still the new
    /// plugin's in the controller's accounts.
    roll_back: Option<String>,
    /// The stamp of a file that could not be read, said once.
    unreadable: Option<Stamp>,
    /// Where the plugin's fields are in the configuration file (its slot
    /// among its application's), for a refused file's error.
    place: Option<(ConfigPlaces, usize)>,
}

/// Where a plugin's two fields are in the configuration file, as
/// `validate` says where an error is (`agent.toml:12:10: application
/// "orders".policy.params`): a new file refused for what the
/// configuration gives it (params it refuses, or a `plugin` that names
/// no component of the right world) is said at the field to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPlace {
    /// Where `plugin` is (or the plugin's table).
    pub plugin: String,
    /// Where `params` is (or the plugin's table, without one).
    pub params: String,
}

impl ConfigPlace {
    /// The place of `field` (`"plugin"` or `"params"`, as
    /// [`PluginError::config_field`] names it).
    fn of(&self, field: &str) -> &str {
        if field == "params" {
            &self.params
        } else {
            &self.plugin
        }
    }
}

/// Where the plugins of one application are in the configuration file
/// (the policy's, then each interpreter's), shared between its plugins
/// and the agent: a reload of the file that leaves the application
/// unchanged but moves its lines (a table added above it) moves them too,
/// so that a refused plugin file is said at the line the file has now.
#[derive(Debug, Clone, Default)]
pub struct ConfigPlaces(Arc<RwLock<Vec<ConfigPlace>>>);

impl ConfigPlaces {
    /// The places `places`, in slot order.
    pub fn new(places: Vec<ConfigPlace>) -> Self {
        Self(Arc::new(RwLock::new(places)))
    }

    /// Puts `places` in force for every plugin that shares these.
    pub fn set(&self, places: Vec<ConfigPlace>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = places;
    }

    /// The place of slot `slot` (0: the policy; 1 + k: interpreter k).
    pub fn get(&self, slot: usize) -> Option<ConfigPlace> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slot)
            .cloned()
    }
}

/// The instance a reload replaced, and what ran with it.
struct Previous<T> {
    /// The instance, with its state.
    instance: T,
    /// Its `name version`.
    label: String,
    /// The sha256 of its content.
    running: Option<[u8; 32]>,
    /// The sha256 of the new file, in hex.
    replaced_by: String,
}

/// How many times a new file whose load fails for a reason that may pass
/// is tried, at successive refreshes (evaluations), before it waits for
/// the file to change. A compile past its deadline goes on in the
/// background, so the next try usually finds it done.
pub const RELOAD_TRIES: u32 = 3;

impl<T: Labelled + Send + 'static> Reloading<T> {
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
            preferred: Vec::new(),
            stand_in: Vec::new(),
            loader: Arc::new(Mutex::new(loader)),
            instance: None,
            stamp: None,
            digest: None,
            running: None,
            label,
            background: false,
            job: None,
            failing: None,
            retry: false,
            previous: None,
            answering: true,
            roll_back: None,
            unreadable: None,
            place: None,
        }
    }

    /// Says a new file refused for what the configuration gives it at
    /// slot `slot` of `places` (see [`ConfigPlaces`]), where the
    /// configuration file has it when the file is refused.
    pub fn placed(mut self, places: ConfigPlaces, slot: usize) -> Self {
        self.place = Some((places, slot));
        self
    }

    /// Loads a new file on a thread of its own while the running instance
    /// keeps answering, and swaps it in at the first [`Reloading::refresh`]
    /// after its load finished (see the module's documentation). With no
    /// instance running, the call still loads.
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
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
                let instance = load(&self.loader, &self.source)?;
                self.running = self.adopt(&instance, self.digest);
                self.label = instance.label();
                let sha256 = self.digest.as_ref().map(hex).unwrap_or_default();
                log_loaded(&instance, &sha256, &self.source);
                instance
            }
        };
        Ok(self.instance.insert(instance))
    }

    /// Follows one of `preferred` (files, best first) instead of the
    /// current source as soon as it exists, if it ranks above the current
    /// source: a plugin dropped in under the name the configuration gives
    /// (or Cargo's spelling of it) replaces the built-in or lower-ranked
    /// file it was resolved to (loaded and configured first, like any new
    /// file). The files ranked at or below the current one are not
    /// followed.
    pub fn prefer(mut self, preferred: impl IntoIterator<Item = PathBuf>) -> Self {
        self.preferred = preferred.into_iter().collect();
        self
    }

    /// The best preferred file that exists and ranks above the current
    /// source, if any.
    fn preferred_now(&self) -> Option<PathBuf> {
        let current = self.source.file();
        self.preferred
            .iter()
            .take_while(|p| Some(p.as_path()) != current)
            .find(|p| p.is_file())
            .cloned()
    }

    /// Runs `overridden` again if the file the plugin was loaded from is
    /// deleted: the built-in a file in `plugin_dir` of its name overrides.
    /// No effect on a plugin that is not loaded from a file.
    pub fn overriding(mut self, overridden: Option<PluginSource>) -> Self {
        if self.source.file().is_some()
            && let Some(overridden) = overridden
        {
            self.stand_in = vec![overridden];
        }
        self
    }

    /// Follows the file: if its content changed since it was last loaded
    /// (or a load was attempted), loads and configures the new file and, if
    /// that succeeds, runs it instead of the current instance. Blocking (it
    /// may read, compile and configure a component, unless loading
    /// [`Reloading::in_background`]): call it off the async runtime.
    pub fn refresh(&mut self) -> Refresh {
        if let Some(failure) = self.roll_back.take()
            && let Some(previous) = self.previous.take()
        {
            return self.restore(previous, &failure);
        }
        let changed = if let Some(preferred) = self.preferred_now() {
            // Its content is new whatever its time and size say.
            let replaced = std::mem::replace(&mut self.source, PluginSource::File(preferred));
            self.stand_in.push(replaced);
            self.stamp = None;
            (self.retry, self.failing) = (false, None);
            self.content_changed()
        } else if let Some((deleted, stand_in)) = self.deleted_over_stand_in() {
            // The file dropped in over the configuration's plugin was
            // deleted: what it replaced runs again (loaded and configured
            // first, like any new file), and the file is preferred again
            // if it comes back.
            tracing::info!(
                message = "Plugin file deleted; going back to the plugin it replaced.",
                file = %deleted.display(),
                source = %stand_in.origin(),
            );
            self.source = stand_in;
            (self.retry, self.failing) = (false, None);
            self.stamp = Stamp::of(&self.source);
            self.digest = digest(&self.source);
            self.digest
        } else {
            self.content_changed()
        };
        if self.instance.is_none() {
            return match changed {
                Some(_) => Refresh::Pending,
                None => Refresh::Unchanged,
            };
        }
        if let Some(job) = &mut self.job {
            job.stale |= changed.is_some();
            if job.done.is_none() {
                match job.receiver.try_recv() {
                    Ok(result) => job.done = Some(result),
                    Err(TryRecvError::Empty) => return Refresh::Unchanged,
                    Err(TryRecvError::Disconnected) => job.done = Some(Err(lost_load(&job.source))),
                }
            }
            let job = self.job.take().expect("a job is under way");
            if !job.stale {
                let result = job.done.expect("its result arrived");
                return self.swap(result, &job.digest, &job.source, job.read_at);
            }
            // Stale: the newest content is loaded instead, unless it is
            // what runs.
            let newest = self.digest.unwrap_or(job.digest);
            if Some(newest) != self.running {
                self.start(newest);
            }
            return Refresh::Unchanged;
        }
        let Some(new_digest) = changed.filter(|new| Some(*new) != self.running) else {
            return Refresh::Unchanged;
        };
        if self.background {
            self.start(new_digest);
            return Refresh::Unchanged;
        }
        let result = load(&self.loader, &self.source);
        let source = self.source.clone();
        self.swap(result, &new_digest, &source, self.stamp)
    }

    /// Says how the call just made on the instance went. An answer proves
    /// a newly loaded instance (the one it replaced is dropped). A failure
    /// of its first call that is the code's (a trap, an answer outside the
    /// contract, memory or resources past their limits; not a timeout on a
    /// busy machine, nor the plugin's own error, which may pass) rolls it
    /// back at the next [`Reloading::refresh`]: the instance it replaced
    /// answers again, with its state, and the refresh reports the new file
    /// refused, not loaded again until it changes. Returns whether a
    /// roll-back is due.
    pub fn answered(&mut self, failure: Option<&PluginError>) -> bool {
        self.answering = failure.is_none();
        let Some(failure) = failure else {
            self.previous = None;
            return false;
        };
        let the_codes = !matches!(
            failure.class(),
            Some(FailureClass::Timeout | FailureClass::GuestError)
        );
        if self.previous.is_none() || !the_codes {
            return false;
        }
        self.roll_back = Some(failure.to_string());
        true
    }

    /// The sha256 of what `instance` was compiled from (`read`, the digest
    /// of the file as read before its load, when it does not say), noted
    /// as the content last loaded: a file still being copied when it was
    /// read gave a digest of its part, and is looked at again at the next
    /// refresh.
    fn adopt(&mut self, instance: &T, read: Option<[u8; 32]>) -> Option<[u8; 32]> {
        let loaded = instance.sha256().or(read);
        if loaded != self.digest {
            self.digest = loaded;
            self.stamp = None;
        }
        loaded
    }

    /// Runs `previous` again in place of the instance whose first call
    /// failed with `failure`, and says so.
    fn restore(&mut self, previous: Previous<T>, failure: &str) -> Refresh {
        let failed = std::mem::replace(&mut self.label, previous.label);
        self.instance = Some(previous.instance);
        self.running = previous.running;
        self.answering = true;
        tracing::warn!(
            message = "Reloaded plugin failed its first call; the plugin it replaced runs again.",
            failed = %failed,
            running = %self.label,
            sha256 = %previous.replaced_by,
            error = %failure,
        );
        Refresh::Refused {
            running: self.label.clone(),
            sha256: previous.replaced_by,
            reason: format!(
                "{failed} loaded, but its first call failed ({failure}), so the plugin it \
                 replaced runs again"
            ),
        }
    }

    /// Blocks until the load under way in the background (if any) has
    /// finished; its result is swapped in (or refused) at the next
    /// [`Reloading::refresh`], as if that had found it finished.
    pub fn wait_for_load(&mut self) {
        if let Some(job) = self.job.as_mut().filter(|job| job.done.is_none()) {
            job.done = Some(
                job.receiver
                    .recv()
                    .unwrap_or_else(|_| Err(lost_load(&job.source))),
            );
        }
    }

    /// Whether a new file is loading in the background.
    pub fn is_loading(&self) -> bool {
        self.job.is_some()
    }

    /// Starts loading the current file (of sha256 `digest`) on a thread of
    /// its own; if no thread can be started, loads it in this call and
    /// keeps the result for the next refresh.
    fn start(&mut self, digest: [u8; 32]) {
        let (sender, receiver) = mpsc::channel();
        let (loader, source) = (self.loader.clone(), self.source.clone());
        if let Some(instance) = &self.instance {
            let identity = instance.identity();
            tracing::info!(
                message = "Plugin file changed; loading it beside the running plugin.",
                application = %identity.application,
                plugin = %identity.name,
                plugin_version = %identity.version,
                sha256 = %hex(&digest),
                source = %source.origin(),
            );
        }
        let spawned = std::thread::Builder::new()
            .name("plugin-load".to_owned())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    load(&loader, &source)
                }))
                .unwrap_or_else(|_| Err(lost_load(&source)));
                // The receiver is gone if the plugin was dropped meanwhile.
                let _ = sender.send(result);
            });
        let done = match spawned {
            Ok(_) => None,
            Err(_) => Some(load(&self.loader, &self.source)),
        };
        self.job = Some(Job {
            digest,
            source: self.source.clone(),
            read_at: self.stamp,
            stale: false,
            done,
            receiver,
        });
    }

    /// Runs the instance `result` loaded from `source` (of sha256
    /// `digest`, read when the file's stamp was `read_at`), or says why
    /// not.
    fn swap(
        &mut self,
        result: Result<T, PluginError>,
        digest: &[u8; 32],
        source: &PluginSource,
        read_at: Option<Stamp>,
    ) -> Refresh {
        match result {
            Ok(instance) => {
                let loaded = self.adopt(&instance, Some(*digest)).unwrap_or(*digest);
                let digest = &loaded;
                let sha256 = hex(digest);
                log_loaded(&instance, &sha256, source);
                self.failing = None;
                let running = self.running.replace(*digest);
                let from = std::mem::replace(&mut self.label, instance.label());
                let replaced = self.instance.replace(instance);
                match &mut self.previous {
                    // Two reloads before a call: the fallback stays the
                    // instance that last answered.
                    Some(previous) => previous.replaced_by = sha256.clone(),
                    None if self.answering => {
                        self.previous = replaced.map(|instance| Previous {
                            instance,
                            label: from.clone(),
                            running,
                            replaced_by: sha256.clone(),
                        });
                    }
                    // A failing instance is no fallback.
                    None => {}
                }
                self.answering = true;
                Refresh::Reloaded {
                    from,
                    to: self.label.clone(),
                    sha256,
                }
            }
            Err(error) if error.is_configuration() => {
                self.forget_if_changed_while_loading(source, read_at);
                Refresh::Refused {
                    running: self.label.clone(),
                    sha256: hex(digest),
                    reason: match self.place.as_ref().and_then(|(places, k)| places.get(*k)) {
                        Some(place) => format!("{}: {error}", place.of(error.config_field())),
                        None => error.to_string(),
                    },
                }
            }
            Err(error) => {
                self.forget_if_changed_while_loading(source, read_at);
                // May pass: forgotten, so that the next refresh reads and
                // loads the same content again, a few times.
                let tries = match self.failing {
                    Some((failing, tries)) if failing == *digest => tries + 1,
                    _ => 1,
                };
                self.failing = Some((*digest, tries));
                let next = if tries < RELOAD_TRIES {
                    self.retry = true;
                    "tried again at the next evaluation"
                } else {
                    "not tried again until the file changes"
                };
                Refresh::Refused {
                    running: self.label.clone(),
                    sha256: hex(digest),
                    reason: format!("{error} (try {tries} of {RELOAD_TRIES}; {next})"),
                }
            }
        }
    }

    /// Forgets the content last read when the file `source` (the one
    /// followed) changed since it was read (at `read_at`): the load that failed may have
    /// read other bytes than those hashed (a copy over the file in place,
    /// truncated first, the same bytes again once done), and its refusal
    /// is no verdict on them. The next refresh reads the file again and,
    /// if it is the same content, tries it again; a file refused that did
    /// not change is not tried until it does (a `touch` of it is a
    /// change too).
    fn forget_if_changed_while_loading(&mut self, source: &PluginSource, read_at: Option<Stamp>) {
        if source.file().is_some()
            && source.file() == self.source.file()
            && Stamp::of(source) != read_at
        {
            (self.digest, self.stamp) = (None, None);
        }
    }

    /// The file running, when it is gone, and what runs in its place: the
    /// best preferred file ranked below it that exists (the `_` spelling
    /// under `<name>.wasm`, as a start would pick), else the newest
    /// stand-in there to go back to (a built-in always is; stand-in files
    /// deleted meanwhile are passed over), taken off the stack.
    fn deleted_over_stand_in(&mut self) -> Option<(PathBuf, PluginSource)> {
        let file = self.source.file()?;
        let gone = matches!(
            std::fs::symlink_metadata(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound
        );
        if !gone {
            return None;
        }
        let deleted = file.to_path_buf();
        if let Some(rank) = self.preferred.iter().position(|p| *p == deleted)
            && let Some(lower) = self.preferred[rank + 1..]
                .iter()
                .find(|p| p.is_file())
                .cloned()
        {
            self.stand_in.retain(|s| s.file() != Some(lower.as_path()));
            return Some((deleted, PluginSource::File(lower)));
        }
        let back = self
            .stand_in
            .iter()
            .rposition(|s| s.file().is_none_or(Path::is_file))?;
        let stand_in = self.stand_in.swap_remove(back);
        self.stand_in.truncate(back);
        Some((deleted, stand_in))
    }

    /// The new digest if the file's content differs from the last one
    /// loaded (or tried), remembering it: a refused file is not tried again
    /// until it changes again, unless it failed for a reason that may pass
    /// and a try is due. A built-in never changes.
    fn content_changed(&mut self) -> Option<[u8; 32]> {
        // Missing for now (being replaced?), or a built-in: nothing new.
        let stamp = Stamp::of(&self.source)?;
        if Some(stamp) == self.stamp && !self.retry {
            return None;
        }
        // Noted once the content is read: a file unreadable for now (its
        // mode about to change) is read again at the next look, and said
        // once.
        let digest = match read_digest(&self.source) {
            Ok(digest) => digest,
            Err(error) => {
                if self.unreadable.replace(stamp) != Some(stamp) {
                    tracing::warn!(
                        message = "Plugin file changed but cannot be read; the running plugin stays.",
                        file = %self.source.display_path().display(),
                        running = %self.label,
                        error = %error,
                    );
                }
                return None;
            }
        };
        self.unreadable = None;
        self.stamp = Some(stamp);
        if Some(digest) == self.digest && !std::mem::take(&mut self.retry) {
            return None;
        }
        self.retry = false;
        // Tries are counted per content.
        if self.failing.is_some_and(|(failing, _)| failing != digest) {
            self.failing = None;
        }
        self.digest = Some(digest);
        Some(digest)
    }

    /// The sha256 of the component last loaded (or tried, or loading in
    /// the background), in hex.
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

/// Runs `loader` on `source` (a loader that panicked before leaves no
/// state that matters: each load starts from the source).
fn load<T>(loader: &Loader<T>, source: &PluginSource) -> Result<T, PluginError> {
    let mut loader = loader.lock().unwrap_or_else(PoisonError::into_inner);
    (*loader)(source)
}

/// The error of a load in the background that ended without a result (a
/// host bug: the loader panicked).
fn lost_load(source: &PluginSource) -> PluginError {
    PluginError::Read {
        path: source.display_path(),
        source: std::io::Error::other("its load in the background panicked (a host bug)"),
    }
}

fn digest(source: &PluginSource) -> Option<[u8; 32]> {
    read_digest(source).ok()
}

/// [`digest`], or why the file cannot be read.
fn read_digest(source: &PluginSource) -> std::io::Result<[u8; 32]> {
    Ok(Sha256::digest(&source.bytes()?).into())
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
        Self::policy_in(host, source, params_json, application, Words::Msf, |_| {
            Ok(())
        })
    }

    /// [`Reloading::policy`] for an application that speaks `words`, each
    /// load as [`PluginHost::load_policy_in`], then judged by `check`
    /// (the application's references to its alarms and metrics): a file
    /// that fails it is refused at start and at every reload alike, so a
    /// replaced file the configuration would not accept never replaces
    /// the running plugin.
    pub fn policy_in(
        host: Arc<PluginHost>,
        source: impl Into<PluginSource>,
        params_json: String,
        application: String,
        words: Words,
        check: impl Fn(&PolicyInstance) -> Result<(), PluginError> + Send + 'static,
    ) -> Result<Self, PluginError> {
        Self::new(source, move |source: &PluginSource| {
            let instance = host.load_policy_in(source, &params_json, &application, words)?;
            check(&instance).map(|()| instance)
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
        Self::interpreter_in(host, source, params_json, application, Words::Msf, |_| {
            Ok(())
        })
    }

    /// [`Reloading::interpreter`] for an application that speaks `words`,
    /// each load as [`PluginHost::load_interpreter_in`], then judged by
    /// `check`, as [`Reloading::policy_in`] judges a policy.
    pub fn interpreter_in(
        host: Arc<PluginHost>,
        source: impl Into<PluginSource>,
        params_json: String,
        application: String,
        words: Words,
        check: impl Fn(&InterpreterInstance) -> Result<(), PluginError> + Send + 'static,
    ) -> Result<Self, PluginError> {
        Self::new(source, move |source: &PluginSource| {
            let instance = host.load_interpreter_in(source, &params_json, &application, words)?;
            check(&instance).map(|()| instance)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "plugin" that is its file's text; `bad` files do not load.
    pub(super) struct Text(pub(super) String, PluginIdentity);

    /// The plugin `text` read from `path`, or its refusal if it is `bad`.
    pub(super) fn text_or_refusal(text: String, path: PathBuf) -> Result<Text, PluginError> {
        // A compile past its deadline, every time: a failure that may pass.
        if text.starts_with("timeout") {
            return Err(PluginError::CompileTimeout {
                path,
                timeout: std::time::Duration::from_secs(60),
            });
        }
        if text.starts_with("bad") {
            return Err(PluginError::Read {
                path,
                source: std::io::Error::other("refused"),
            });
        }
        let identity = PluginIdentity {
            name: text.clone(),
            version: "0".to_owned(),
            path,
            application: "app".to_owned(),
        };
        // A plugin that loads and refuses its params.
        if text.starts_with("picky") {
            return Err(PluginError::Configure {
                plugin: Box::new(identity),
                message: "missing required key \"alarm\"".to_owned(),
            });
        }
        Ok(Text(text, identity))
    }

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
            text_or_refusal(text, path.clone())
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

    /// A new file refused for what the configuration gives it is said at
    /// the field to change, as `validate` says it: `params` for params it
    /// refuses, `plugin` for a file that does not load; without a place
    /// (a plugin not from a configuration file), as it is.
    #[test]
    fn a_refused_file_is_said_at_the_configuration_field_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let at = |line: u32| ConfigPlace {
            plugin: format!("agent.toml:{line}:10: application \"orders\".policy.plugin"),
            params: format!(
                "agent.toml:{}:10: application \"orders\".policy.params",
                line + 1
            ),
        };
        let places = ConfigPlaces::new(vec![at(7)]);
        let mut plugin = text_plugin(&path).placed(places.clone(), 0);
        let reason = |plugin: &mut Reloading<Text>| match plugin.refresh() {
            Refresh::Refused { reason, .. } => reason,
            other => panic!("refused, not {other:?}"),
        };
        std::fs::write(&path, "picky two").unwrap();
        let said = reason(&mut plugin);
        assert!(
            said.starts_with("agent.toml:8:10: application \"orders\".policy.params: plugin ")
                && said.ends_with("missing required key \"alarm\""),
            "{said}"
        );
        std::fs::write(&path, "bad three").unwrap();
        let said = reason(&mut plugin);
        assert!(
            said.starts_with("agent.toml:7:10: application \"orders\".policy.plugin: ")
                && said.ends_with("refused"),
            "{said}"
        );
        // A reload that moved the application's lines moves the place.
        places.set(vec![at(12)]);
        std::fs::write(&path, "picky four").unwrap();
        let said = reason(&mut plugin);
        assert!(
            said.starts_with("agent.toml:13:10: application \"orders\".policy.params: "),
            "{said}"
        );
        // A slot the places lack: said without a place.
        let third = dir.path().join("r.wasm");
        std::fs::write(&third, "one").unwrap();
        let mut beyond = text_plugin(&third).placed(places, 1);
        std::fs::write(&third, "picky two").unwrap();
        let said = reason(&mut beyond);
        assert!(said.starts_with("plugin "), "{said}");
        let other = dir.path().join("q.wasm");
        std::fs::write(&other, "one").unwrap();
        let mut unplaced = text_plugin(&other);
        std::fs::write(&other, "picky two").unwrap();
        let said = reason(&mut unplaced);
        assert!(said.starts_with("plugin "), "{said}");
    }

    /// A failed call of class `class`.
    pub(super) fn call_failed(class: FailureClass) -> PluginError {
        PluginError::Call {
            plugin: Box::new(PluginIdentity {
                name: "p".to_owned(),
                version: "0".to_owned(),
                path: PathBuf::from("p.wasm"),
                application: "app".to_owned(),
            }),
            function: "decide",
            class,
            detail: "unreachable".to_owned(),
        }
    }

    /// A reloaded plugin whose first call fails in a way that is the
    /// code's gives way, at the next refresh, to the one it replaced (kept,
    /// with its state, until then); that refresh says the new file was
    /// refused, and it is not loaded again until it changes. A timeout or
    /// the plugin's own error rolls nothing back (they may pass), one
    /// that answers is kept for good, and a plugin that was failing is no
    /// fallback for the file deployed to fix it.
    #[test]
    fn a_reloaded_plugin_failing_its_first_call_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let mut plugin = text_plugin(&path);
        assert!(!plugin.answered(None));

        std::fs::write(&path, "traps").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { ref to, .. } if to == "traps"));
        assert!(plugin.answered(Some(&call_failed(FailureClass::Trap))));
        // Until the next refresh, the failed call is the new plugin's.
        assert_eq!(plugin.label(), "traps");
        match plugin.refresh() {
            Refresh::Refused {
                running,
                sha256,
                reason,
            } => {
                assert_eq!(running, "one");
                assert_eq!(sha256, hex(&Sha256::digest(b"traps").into()));
                assert!(
                    reason.starts_with("traps loaded, but its first call failed (")
                        && reason.ends_with("), so the plugin it replaced runs again"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            plugin.get().unwrap().0,
            "one",
            "the previous one answers again"
        );
        assert_eq!(plugin.label(), "one");
        assert_eq!(plugin.refresh(), Refresh::Unchanged, "not loaded again");
        assert!(
            !plugin.answered(Some(&call_failed(FailureClass::Trap))),
            "nothing to roll back to"
        );

        // "one" fails now: the file deployed to fix it has nothing to go
        // back to, whatever its first call does.
        std::fs::write(&path, "two").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        assert!(!plugin.answered(Some(&call_failed(FailureClass::Trap))));
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(plugin.get().unwrap().0, "two");
        assert!(!plugin.answered(None));

        // The plugin's own error, or a timeout: kept, on trial.
        std::fs::write(&path, "three").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        assert!(!plugin.answered(Some(&call_failed(FailureClass::GuestError))));
        assert!(!plugin.answered(Some(&call_failed(FailureClass::Timeout))));
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(plugin.get().unwrap().0, "three");

        // Two reloads before a call: the fallback is the one that answered.
        assert!(!plugin.answered(None));
        std::fs::write(&path, "four").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        std::fs::write(&path, "five!").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        assert!(plugin.answered(Some(&call_failed(FailureClass::Invalid))));
        assert!(
            matches!(plugin.refresh(), Refresh::Refused { ref running, .. } if running == "three")
        );
        assert_eq!(plugin.get().unwrap().0, "three");

        // A new file that answers is kept for good.
        std::fs::write(&path, "six!").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        assert!(!plugin.answered(None));
        assert!(!plugin.answered(Some(&call_failed(FailureClass::Trap))));
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(plugin.get().unwrap().0, "six!");
    }

    /// A new file of the same size given the old one's modification time
    /// (`cp -p`, `rsync -a`, a reproducible build) is noticed: the change
    /// time moved. It was taken for the file already loaded.
    #[test]
    fn a_replacement_that_keeps_the_size_and_the_modification_time_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut plugin = text_plugin(&path);
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        assert!(
            matches!(plugin.refresh(), Refresh::Reloaded { ref to, .. } if to == "two"),
            "the new content runs"
        );
    }

    /// A new file whose load fails for a reason that may pass (a compile
    /// past its deadline) is tried again at the next refreshes, unchanged,
    /// up to [`RELOAD_TRIES`] in all, then waits for the file to change.
    /// It was never tried again: the healthy new plugin stayed unloaded
    /// until someone changed its bytes.
    #[test]
    fn a_load_that_may_pass_is_tried_again_a_few_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let timeouts_left = Arc::new(Mutex::new(0_u32));
        let left = timeouts_left.clone();
        let mut plugin = Reloading::new(path.clone(), move |source: &PluginSource| {
            let text = String::from_utf8_lossy(&source.bytes().expect("readable")).into_owned();
            let mut left = left.lock().unwrap();
            if text.starts_with("slow") && *left > 0 {
                *left -= 1;
                return Err(PluginError::CompileTimeout {
                    path: source.display_path(),
                    timeout: std::time::Duration::from_secs(60),
                });
            }
            text_or_refusal(text, source.display_path())
        })
        .expect("the first file loads");

        *timeouts_left.lock().unwrap() = 1;
        std::fs::write(&path, "slow two").unwrap();
        match plugin.refresh() {
            Refresh::Refused {
                running, reason, ..
            } => {
                assert_eq!(running, "one");
                assert!(
                    reason.ends_with("(try 1 of 3; tried again at the next evaluation)"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(plugin.refresh(), Refresh::Reloaded { ref to, .. } if to == "slow two"),
            "the same bytes, tried again"
        );
        assert_eq!(plugin.refresh(), Refresh::Unchanged);

        *timeouts_left.lock().unwrap() = 10;
        std::fs::write(&path, "slow three").unwrap();
        for tries in 1..=RELOAD_TRIES {
            let Refresh::Refused { reason, .. } = plugin.refresh() else {
                panic!("try {tries} refused");
            };
            assert!(reason.contains(&format!("(try {tries} of 3;")), "{reason}");
        }
        assert_eq!(plugin.refresh(), Refresh::Unchanged, "no fourth try");
        assert_eq!(plugin.get().unwrap().0, "slow two");
        assert_eq!(*timeouts_left.lock().unwrap(), 7);
    }

    #[test]
    fn the_file_the_configuration_names_replaces_its_stand_in_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let stand_in = dir.path().join("target_tracking.wasm");
        let named = dir.path().join("target-tracking.wasm");
        std::fs::write(&stand_in, "built").unwrap();
        let mut plugin = text_plugin(&stand_in).prefer([named.clone()]);
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        std::fs::write(&named, "dropped in").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { to, .. } if to == "dropped in"));
        assert_eq!(plugin.source().file(), Some(named.as_path()));
        // From now on the named file is the one followed.
        std::fs::write(&stand_in, "built again").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
    }
}

/// Loads in the background, with a loader that the test lets through one
/// load at a time: no sleeps, every step is decided by the test.
#[cfg(test)]
mod background_tests {
    use std::sync::mpsc::{Receiver, Sender, channel};

    use super::tests::{Text, call_failed, text_or_refusal};
    use super::*;

    /// Lets the loads after the first through, one at a time.
    struct Gate {
        open: Sender<()>,
        started: Receiver<String>,
    }

    impl Gate {
        /// Waits for the next load to have read its file, lets it finish,
        /// and returns what it read.
        fn let_through(&self) -> String {
            let text = self.started.recv().expect("a load started");
            self.open.send(()).expect("the load waits");
            text
        }
    }

    /// A plugin following `path` in the background; a load after the first
    /// waits for the test's [`Gate`]. `bad` files do not load. The texts
    /// loaded are noted in order.
    fn gated(path: &std::path::Path) -> (Reloading<Text>, Gate, Arc<Mutex<Vec<String>>>) {
        let (open, opened) = channel::<()>();
        let (starts, started) = channel::<String>();
        let loads = Arc::new(Mutex::new(Vec::new()));
        let noted = loads.clone();
        let plugin = Reloading::new(path.to_path_buf(), move |source: &PluginSource| {
            let text = String::from_utf8_lossy(&source.bytes().expect("readable")).into_owned();
            if !noted.lock().unwrap().is_empty() {
                starts.send(text.clone()).expect("the test follows");
                opened.recv().expect("the test lets the load through");
            }
            noted.lock().unwrap().push(text.clone());
            text_or_refusal(text, source.display_path())
        })
        .expect("the first file loads")
        .in_background();
        (plugin, Gate { open, started }, loads)
    }

    fn sha(text: &str) -> String {
        hex(&Sha256::digest(text.as_bytes()).into())
    }

    #[test]
    fn the_running_instance_answers_while_the_new_file_loads_and_is_replaced_at_the_next_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let (mut plugin, gate, loads) = gated(&path);

        std::fs::write(&path, "two!").unwrap();
        // Noticed: the load starts, the call returns at once.
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert!(plugin.is_loading());
        // The load is held by the gate: "one" keeps answering.
        for _ in 0..3 {
            assert_eq!(plugin.refresh(), Refresh::Unchanged);
            assert_eq!(plugin.get().unwrap().0, "one");
        }
        assert_eq!(plugin.label(), "one");

        assert_eq!(gate.let_through(), "two!");
        plugin.wait_for_load();
        // The first refresh after the load finished swaps it in.
        assert_eq!(
            plugin.refresh(),
            Refresh::Reloaded {
                from: "one".into(),
                to: "two!".into(),
                sha256: sha("two!"),
            }
        );
        assert_eq!(plugin.get().unwrap().0, "two!");
        assert!(!plugin.is_loading());
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(*loads.lock().unwrap(), ["one", "two!"]);
    }

    /// A refused drop-in undone (the running plugin's bytes copied back)
    /// is not a new plugin: nothing is loaded or reported (a reload would
    /// also end a quarantine the running code earned).
    #[test]
    fn the_running_files_bytes_back_are_not_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let (mut plugin, gate, loads) = gated(&path);

        std::fs::write(&path, "bad two").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(gate.let_through(), "bad two");
        plugin.wait_for_load();
        assert!(matches!(plugin.refresh(), Refresh::Refused { .. }));

        std::fs::write(&path, "one").unwrap();
        for _ in 0..3 {
            assert_eq!(plugin.refresh(), Refresh::Unchanged);
        }
        assert!(
            !plugin.is_loading(),
            "the running bytes are not loaded again"
        );
        assert_eq!(*loads.lock().unwrap(), ["one", "bad two"]);
        assert_eq!(plugin.get().unwrap().0, "one");
    }

    /// In the background, as the agent loads: a load that may pass is
    /// tried at the next refreshes, each try a load of its own beside the
    /// running plugin, 3 in all, then waits for the file to change; a
    /// reloaded plugin failing its first call with a trap gives way to
    /// the one it replaced at the next refresh.
    #[test]
    fn in_the_background_a_load_that_may_pass_is_retried_and_a_failed_first_call_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let (mut plugin, gate, loads) = gated(&path);

        std::fs::write(&path, "timeout two").unwrap();
        for tries in 1..=RELOAD_TRIES {
            assert_eq!(plugin.refresh(), Refresh::Unchanged, "try {tries} starts");
            assert!(plugin.is_loading());
            assert_eq!(gate.let_through(), "timeout two");
            plugin.wait_for_load();
            let Refresh::Refused {
                running, reason, ..
            } = plugin.refresh()
            else {
                panic!("try {tries} refused");
            };
            assert_eq!(running, "one");
            assert!(reason.contains(&format!("(try {tries} of 3;")), "{reason}");
            assert_eq!(plugin.get().unwrap().0, "one");
        }
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert!(!plugin.is_loading(), "no fourth try");

        std::fs::write(&path, "three").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(gate.let_through(), "three");
        plugin.wait_for_load();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { ref to, .. } if to == "three"));
        assert!(plugin.answered(Some(&call_failed(FailureClass::Trap))));
        assert!(
            matches!(plugin.refresh(), Refresh::Refused { ref running, .. } if running == "one")
        );
        assert_eq!(plugin.get().unwrap().0, "one");
        assert_eq!(
            *loads.lock().unwrap(),
            ["one", "timeout two", "timeout two", "timeout two", "three"]
        );
    }

    #[test]
    fn a_refused_file_keeps_the_running_one_and_is_not_tried_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let (mut plugin, gate, loads) = gated(&path);

        std::fs::write(&path, "bad two").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(gate.let_through(), "bad two");
        plugin.wait_for_load();
        let Refresh::Refused {
            running,
            sha256,
            reason,
        } = plugin.refresh()
        else {
            panic!("a file that does not load is refused");
        };
        assert_eq!((running.as_str(), sha256), ("one", sha("bad two")));
        assert!(reason.contains("refused"), "{reason}");
        assert_eq!(plugin.get().unwrap().0, "one", "the running one stays");
        for _ in 0..3 {
            assert_eq!(plugin.refresh(), Refresh::Unchanged);
        }
        assert!(!plugin.is_loading(), "not tried again");
        assert_eq!(*loads.lock().unwrap(), ["one", "bad two"]);

        std::fs::write(&path, "three").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(gate.let_through(), "three");
        plugin.wait_for_load();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { to, .. } if to == "three"));
        assert_eq!(*loads.lock().unwrap(), ["one", "bad two", "three"]);
    }

    /// A file copied over in place while it loads (truncated, written,
    /// the same bytes as those hashed once done): the load read it cut
    /// short and refused it, but the refusal is not held against the whole
    /// file, which the next refresh loads. Before stop 59 the refusal was
    /// recorded against the hashed bytes, and the good file never loaded.
    #[test]
    fn a_file_refused_because_it_changed_while_loading_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        // The loads after the first wait for the test before reading.
        let (open, opened) = channel::<()>();
        let (starts, started) = channel::<()>();
        let loads = Arc::new(Mutex::new(Vec::new()));
        let noted = loads.clone();
        let mut plugin = Reloading::new(path.to_path_buf(), move |source: &PluginSource| {
            if !noted.lock().unwrap().is_empty() {
                starts.send(()).expect("the test follows");
                opened.recv().expect("the test lets the load read");
            }
            let text = String::from_utf8_lossy(&source.bytes().expect("readable")).into_owned();
            noted.lock().unwrap().push(text.clone());
            text_or_refusal(text, source.display_path())
        })
        .expect("the first file loads")
        .in_background();

        std::fs::write(&path, "three").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        started.recv().unwrap();
        // The copy in place has just truncated and begun the file.
        std::fs::write(&path, "bad, cut sh").unwrap();
        open.send(()).unwrap();
        plugin.wait_for_load();
        std::fs::write(&path, "three").unwrap();
        assert!(
            matches!(plugin.refresh(), Refresh::Refused { ref sha256, .. } if *sha256 == sha("three"))
        );
        assert_eq!(plugin.get().unwrap().0, "one");
        // Read again, the same content as hashed: tried again, and runs.
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        started.recv().unwrap();
        open.send(()).unwrap();
        plugin.wait_for_load();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { ref to, .. } if to == "three"));
        assert_eq!(*loads.lock().unwrap(), ["one", "bad, cut sh", "three"]);
        // A file refused that did not change meanwhile is not tried again.
        std::fs::write(&path, "bad four").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        started.recv().unwrap();
        open.send(()).unwrap();
        plugin.wait_for_load();
        assert!(matches!(plugin.refresh(), Refresh::Refused { .. }));
        for _ in 0..3 {
            assert_eq!(plugin.refresh(), Refresh::Unchanged);
        }
        assert!(!plugin.is_loading());
        assert_eq!(loads.lock().unwrap().len(), 4);
    }

    #[test]
    fn a_change_during_a_load_drops_its_result_and_the_newest_content_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, "one").unwrap();
        let (mut plugin, gate, loads) = gated(&path);

        // Sizes differ at each write: each is a differing stat.
        std::fs::write(&path, "two!!").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        let started = gate.started.recv().unwrap();
        assert_eq!(started, "two!!");
        // Changed again while "two!!" loads.
        std::fs::write(&path, "three!").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        gate.open.send(()).unwrap();
        plugin.wait_for_load();
        // "two!!" loaded, but is stale: dropped, and "three!" loads.
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        assert_eq!(plugin.get().unwrap().0, "one", "two!! never runs");
        assert!(plugin.is_loading());
        assert_eq!(gate.let_through(), "three!");
        plugin.wait_for_load();
        assert_eq!(
            plugin.refresh(),
            Refresh::Reloaded {
                from: "one".into(),
                to: "three!".into(),
                sha256: sha("three!"),
            }
        );
        assert_eq!(plugin.get().unwrap().0, "three!");
        assert_eq!(*loads.lock().unwrap(), ["one", "two!!", "three!"]);
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
            .prefer([named.clone()]);
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

        // Deleted: the built-in runs again, as the README promises
        // ("delete it to go back"), and a file dropped in again replaces
        // it again.
        std::fs::remove_file(&named).unwrap();
        let Refresh::Reloaded { from, to, .. } = plugin.refresh() else {
            panic!("the built-in runs again");
        };
        assert!(from.ends_with("(14 bytes)"), "{from}");
        assert!(to.starts_with("built-in"), "{to}");
        assert!(plugin.source().is_builtin());
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        std::fs::write(&named, b"hold, rebuilt again").unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("the file dropped in again runs");
        };
        assert!(to.ends_with("(19 bytes)"), "{to}");
    }

    /// An override in plugin_dir found at start (so the name resolved to
    /// the file, not the built-in) also goes back to the built-in when it
    /// is deleted; a file the configuration names by path has nothing to
    /// go back to and keeps running.
    #[test]
    fn an_override_found_at_start_goes_back_to_the_built_in_when_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("hold.wasm");
        std::fs::write(&named, b"a rebuilt hold").unwrap();
        let builtin = crate::plugin::builtin::find("hold").expect("hold is built in");
        let mut plugin = Reloading::new(PluginSource::File(named.clone()), sized)
            .expect("the file loads")
            .prefer([named.clone()])
            .overriding(Some(PluginSource::BuiltIn(builtin)));
        assert_eq!(plugin.refresh(), Refresh::Unchanged);
        std::fs::remove_file(&named).unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("the built-in runs again");
        };
        assert!(to.starts_with("built-in"), "{to}");

        let by_path = dir.path().join("mine.wasm");
        std::fs::write(&by_path, b"mine").unwrap();
        let mut plugin = Reloading::new(PluginSource::File(by_path.clone()), sized)
            .expect("the file loads")
            .prefer([by_path.clone()])
            .overriding(None);
        std::fs::remove_file(&by_path).unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged, "keeps running");
        assert_eq!(plugin.source().file(), Some(by_path.as_path()));
    }

    /// A running agent follows both files a name may be dropped in as
    /// (`<name>.wasm` and Cargo's or componentize-py's `_` spelling), as
    /// the start does, ranked the same way: the `_` spelling replaces the
    /// built-in, `<name>.wasm` replaces both, a lower-ranked file never
    /// replaces a higher one, and each deletion goes back one step.
    #[test]
    fn both_spellings_of_a_name_are_followed_and_ranked_as_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("target-tracking.wasm");
        let underscored = dir.path().join("target_tracking.wasm");
        let builtin = crate::plugin::builtin::find("target-tracking").expect("built in");
        let files = crate::config::load::plugin_files("target-tracking", dir.path());
        assert_eq!(files, [named.clone(), underscored.clone()]);
        let mut plugin = Reloading::new(PluginSource::BuiltIn(builtin), sized)
            .expect("the built-in loads")
            .prefer(files.clone());
        assert_eq!(plugin.refresh(), Refresh::Unchanged);

        std::fs::write(&underscored, b"underscored").unwrap();
        let Refresh::Reloaded { from, to, .. } = plugin.refresh() else {
            panic!("the `_` spelling replaces the built-in");
        };
        assert!(from.starts_with("built-in"), "{from}");
        assert!(to.ends_with("(11 bytes)"), "{to}");
        assert_eq!(plugin.source().file(), Some(underscored.as_path()));

        std::fs::write(&named, b"named!").unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("the name's own file replaces the `_` spelling");
        };
        assert!(to.ends_with("(6 bytes)"), "{to}");
        assert_eq!(plugin.source().file(), Some(named.as_path()));
        std::fs::write(&underscored, b"underscored again").unwrap();
        assert_eq!(plugin.refresh(), Refresh::Unchanged, "ranked below");

        std::fs::remove_file(&named).unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("back to the `_` spelling");
        };
        assert!(to.ends_with("(17 bytes)"), "{to}");
        std::fs::remove_file(&underscored).unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("back to the built-in");
        };
        assert!(to.starts_with("built-in"), "{to}");

        // Both deleted while the name's file runs: straight to the built-in.
        std::fs::write(&underscored, b"underscored").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        std::fs::write(&named, b"named!").unwrap();
        assert!(matches!(plugin.refresh(), Refresh::Reloaded { .. }));
        std::fs::remove_file(&underscored).unwrap();
        std::fs::remove_file(&named).unwrap();
        let Refresh::Reloaded { to, .. } = plugin.refresh() else {
            panic!("back to the built-in");
        };
        assert!(to.starts_with("built-in"), "{to}");
        assert!(plugin.source().is_builtin());
    }

    /// Both spellings present at start (the name's own file runs, as the
    /// start picks it): deleting it runs the `_` spelling next, as a start
    /// would, not the built-in under both, nor the deleted file for good
    /// when there is no built-in.
    #[test]
    fn deleting_the_names_file_runs_the_underscore_spelling_beside_it() {
        for built_in in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let name = if built_in {
                "target-tracking"
            } else {
                "my-policy"
            };
            let files = crate::config::load::plugin_files(name, dir.path());
            let (named, underscored) = (files[0].clone(), files[1].clone());
            std::fs::write(&named, b"named!").unwrap();
            std::fs::write(&underscored, b"underscored").unwrap();
            let overridden = built_in.then(|| {
                PluginSource::BuiltIn(crate::plugin::builtin::find(name).expect("built in"))
            });
            let mut plugin = Reloading::new(PluginSource::File(named.clone()), sized)
                .expect("the file loads")
                .prefer(files)
                .overriding(overridden);
            assert_eq!(plugin.refresh(), Refresh::Unchanged);
            std::fs::remove_file(&named).unwrap();
            let Refresh::Reloaded { to, .. } = plugin.refresh() else {
                panic!("the `_` spelling runs (built-in: {built_in})");
            };
            assert!(to.ends_with("(11 bytes)"), "{to}");
            assert_eq!(plugin.source().file(), Some(underscored.as_path()));
            std::fs::remove_file(&underscored).unwrap();
            if built_in {
                let Refresh::Reloaded { to, .. } = plugin.refresh() else {
                    panic!("back to the built-in");
                };
                assert!(to.starts_with("built-in"), "{to}");
            } else {
                // Nothing to go back to: the last instance keeps running.
                assert_eq!(plugin.refresh(), Refresh::Unchanged);
            }
        }
    }
}
