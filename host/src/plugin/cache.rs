//! Compiled components, kept so that a plugin is compiled once.
//!
//! Compiling is the slow step of loading (tens of milliseconds for a Rust
//! component, seconds for an interpreted language's), so compiled
//! components are kept in memory by the sha256 of the wasm, and, when a
//! cache directory is set, on disk as `<wasm sha256>-<engine hash>.cwasm`:
//! the engine hash changes with the wasmtime version and the engine's
//! settings, so a stale artifact is never even looked at.
//!
//! An artifact is native code that is run as the agent, so the disk cache
//! trusts nothing it did not write itself: the directory is created 0700
//! and is used only while it (and every artifact in it) belongs to the
//! agent's user and is writable by nobody else; every artifact starts with
//! a sha256 over the wasm hash, the engine hash and the native code, checked
//! before anything is deserialized, so a torn, corrupted or swapped file is
//! refused. Artifacts are written to a fresh file, synced, renamed into
//! place and the directory synced, so a crash leaves either the old state
//! or the new one. Whatever is refused is compiled again (and replaced),
//! with a warning.
//!
//! A compile runs on a thread of its own and is waited for at most the
//! load's compile timeout ([`COMPILE_TIMEOUT`] unless the host's limits say
//! otherwise): a pathological component cannot hold a controller
//! (or the agent's start) forever. A compile that overran goes on in the
//! background, and the next load of the same wasm waits for it instead of
//! starting another.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Longest a load waits for a component to compile, unless configured
/// otherwise (`plugin_compile_timeout_secs`). Generous: a large
/// interpreted-language component (componentize-py bundles CPython) takes
/// 11 s on two cores in a release build of the host (26 s in a debug build,
/// over a minute on a busy machine: measured with `flinkscale plugin bench`
/// and the polyglot tests); a minute means something is wrong, or a host
/// too slow for the default.
pub(crate) const COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every artifact file starts with, before its digest; the version
/// digit changes if the layout ever does.
const MAGIC: &[u8; 8] = b"FSCWASM1";

/// The sha256 of a wasm file.
pub(crate) type WasmHash = [u8; 32];

/// Hashes wasm bytes.
pub(crate) fn wasm_hash(bytes: &[u8]) -> WasmHash {
    Sha256::digest(bytes).into()
}

/// Where a compiled component came from (for tests and the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Compiled by an earlier load in this process.
    Memory,
    /// Loaded from a verified artifact in the cache directory.
    Disk,
    /// Compiled by this load.
    Compiled,
}

/// Why no compiled component could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheError {
    /// The compiler refused the wasm.
    Compile(String),
    /// The compile did not finish within the timeout.
    TimedOut(Duration),
}

/// The outcome of one compile (or load), shared by every load waiting for it.
type Outcome = Result<(Component, Origin), String>;

/// Bytes whose compile panics, in the tests.
#[cfg(test)]
pub(crate) const PANICS_IN_THE_COMPILER: &[u8] = b"\0asm compiler panic";

/// One wasm's compile: pending until its thread finishes.
#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
}

impl Slot {
    fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.done.notify_all();
    }

    /// The outcome, waiting up to `timeout` for it.
    fn wait(&self, timeout: Duration) -> Option<Outcome> {
        let guard = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .done
            .wait_timeout_while(guard, timeout, |outcome| outcome.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        guard.clone()
    }
}

/// The slots by wasm hash, each with when it was last asked for (a count
/// of lookups).
type Slots = Arc<Mutex<HashMap<WasmHash, (Arc<Slot>, u64)>>>;

/// The most compiled components kept in memory: the least recently asked
/// for finished ones beyond it are forgotten. Every version of a plugin
/// file that a drop-in replaced was kept before, for the life of the
/// agent (about 1 MB each for a Rust plugin, 35 MB for a Python one); an
/// instance keeps its own component, and a forgotten one is loaded again
/// from the disk cache when it is needed again.
pub(crate) const MAX_IN_MEMORY: usize = 32;

/// Forgets the least recently asked for finished slots beyond
/// [`MAX_IN_MEMORY`]; a compile still running is never forgotten (the
/// loads waiting for it hold it).
fn forget_the_oldest(slots: &mut HashMap<WasmHash, (Arc<Slot>, u64)>) {
    while slots.len() > MAX_IN_MEMORY {
        let oldest = slots
            .iter()
            .filter(|(_, (slot, _))| {
                slot.outcome
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some()
            })
            .min_by_key(|(_, (_, used))| *used)
            .map(|(hash, _)| *hash);
        match oldest {
            Some(hash) => {
                slots.remove(&hash);
            }
            None => return,
        }
    }
}

/// Compiled components by wasm hash, in memory and optionally on disk.
pub(crate) struct ComponentCache {
    /// Held only to look up or insert a slot, never while compiling.
    slots: Slots,
    /// Lookups so far: the clock of the slots' last use.
    lookups: AtomicU64,
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl ComponentCache {
    /// A cache for components compiled by `engine`, persisted under `dir`
    /// if given.
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        // `DefaultHasher::new()` is unkeyed, so the value is stable for one
        // build of the agent; a new build may miss the cache once, which is
        // harmless (wasmtime also refuses an incompatible artifact).
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        if let Some(dir) = &dir {
            prune(dir, &engine_hash, SystemTime::now());
        }
        Self {
            slots: Arc::default(),
            lookups: AtomicU64::new(0),
            dir,
            engine_hash,
        }
    }

    /// The compiled component for `bytes`, compiling (and storing) it if it
    /// is in neither cache, and where it came from; waits at most
    /// `compile_timeout` for a compile (this load's or another's).
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile_timeout: Duration,
    ) -> Result<(Component, Origin), CacheError> {
        let hash = wasm_hash(bytes);
        let (slot, started) = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.lookups.fetch_add(1, Ordering::Relaxed);
            match slots.get_mut(&hash) {
                Some((slot, used)) => {
                    *used = now;
                    (slot.clone(), false)
                }
                None => {
                    let slot = Arc::new(Slot::default());
                    slots.insert(hash, (slot.clone(), now));
                    forget_the_oldest(&mut slots);
                    (slot, true)
                }
            }
        };
        if started {
            self.start_compile(engine, bytes, hash, slot.clone())?;
        } else if let Some(file) = self.file_for(&hash) {
            // In use from memory: its artifact is renewed as a load from
            // disk renews it, or a plugin running for longer than
            // MAX_ARTIFACT_IDLE would be pruned at the next start and
            // compiled again then.
            renew(&file);
        }
        match slot.wait(compile_timeout) {
            Some(Ok((component, origin))) => {
                let origin = if started { origin } else { Origin::Memory };
                Ok((component, origin))
            }
            Some(Err(error)) => Err(CacheError::Compile(error)),
            None => Err(CacheError::TimedOut(compile_timeout)),
        }
    }

    /// Compiles (or loads) on a thread of its own, which fills `slot`; a
    /// failure forgets the slot, so that a later load tries again.
    fn start_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: WasmHash,
        slot: Arc<Slot>,
    ) -> Result<(), CacheError> {
        let engine = engine.clone();
        let bytes = bytes.to_vec();
        let file = self.file_for(&hash).map(|file| Artifact {
            file,
            wasm_hash: hash,
            engine_hash: self.engine_hash.clone(),
        });
        let slots = self.slots.clone();
        let thread_slot = slot.clone();
        // The compile's log lines go where the caller's would.
        let dispatch = tracing::dispatcher::get_default(|dispatch| dispatch.clone());
        let spawned = std::thread::Builder::new()
            .name("flinkscale-compile".to_owned())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                let started = Instant::now();
                // A panic in the compiler (this thread's, or one of its
                // workers' brought here) must still finish the slot, or
                // every later load of these bytes would wait its whole
                // compile timeout for a result that never comes.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compile_or_load(&engine, &bytes, file.as_ref())
                }))
                .unwrap_or_else(|panic| {
                    Err(format!(
                        "the compiler panicked ({}); the next load compiles again",
                        crate::controller::panic_message(panic.as_ref())
                    ))
                });
                if let (Ok((_, Origin::Compiled)), Some(file)) = (&outcome, &file)
                    && let Some(dir) = file.file.parent()
                {
                    // The components in use, from memory, are renewed
                    // first: a plugin running for longer than
                    // MAX_ARTIFACT_IDLE without a load keeps its artifact.
                    let in_use: Vec<WasmHash> = slots
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keys()
                        .copied()
                        .collect();
                    for hash in in_use {
                        renew(&artifact_file(dir, &hash, &file.engine_hash));
                    }
                    prune(dir, &file.engine_hash, SystemTime::now());
                }
                tracing::debug!(
                    message = "Plugin component ready.",
                    origin = ?outcome.as_ref().map(|(_, origin)| *origin).ok(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                );
                if outcome.is_err() {
                    slots
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&hash);
                }
                thread_slot.finish(outcome);
            });
        if let Err(error) = spawned {
            self.slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&hash);
            let error = format!("cannot start a compile thread: {error}");
            slot.finish(Err(error.clone()));
            return Err(CacheError::Compile(error));
        }
        Ok(())
    }

    fn file_for(&self, hash: &WasmHash) -> Option<PathBuf> {
        Some(artifact_file(self.dir.as_ref()?, hash, &self.engine_hash))
    }
}

/// The artifact of the wasm of sha256 `hash` compiled by the engine of
/// `engine_hash`, in the cache folder `dir`.
fn artifact_file(dir: &Path, hash: &WasmHash, engine_hash: &str) -> PathBuf {
    dir.join(format!("{}-{engine_hash}.cwasm", hex(hash)))
}

/// Marks the artifact `file` as used now (see [`prune`]); a failure only
/// makes it age out sooner.
fn renew(file: &Path) {
    if let Ok(handle) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
        && handle.metadata().is_ok_and(|meta| meta.is_file())
    {
        let _ = handle.set_modified(SystemTime::now());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An artifact file and what its digest binds it to.
struct Artifact {
    file: PathBuf,
    wasm_hash: WasmHash,
    engine_hash: String,
}

impl Artifact {
    /// The digest that heads the file: over what the file is for (so a
    /// valid artifact of another wasm or engine does not pass) and over the
    /// native code (so a torn or altered one does not).
    fn digest(&self, code: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(MAGIC);
        hasher.update(self.wasm_hash);
        hasher.update(self.engine_hash.as_bytes());
        hasher.update(code);
        hasher.finalize().into()
    }

    fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// The verified artifact if there is one; otherwise compiles (and writes
/// the artifact, when the directory is the agent's own).
fn compile_or_load(engine: &Engine, bytes: &[u8], artifact: Option<&Artifact>) -> Outcome {
    // Where a compiler bug would panic, for the test that the slot is
    // finished all the same.
    #[cfg(test)]
    if bytes == PANICS_IN_THE_COMPILER {
        panic!("an injected compiler panic");
    }
    if let Some(artifact) = artifact {
        match load(engine, artifact) {
            Ok(Some(component)) => return Ok((component, Origin::Disk)),
            Ok(None) => {}
            Err(reason) => tracing::warn!(
                message = "Refusing a compiled plugin from the cache; compiling it again.",
                file = %artifact.file.display(),
                reason = %reason,
            ),
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(|e| super::engine::describe_compile_error(bytes, &e))?;
    if let Some(artifact) = artifact
        && let Err(reason) = store(&component, artifact)
    {
        tracing::warn!(
            message = "Cannot write a compiled plugin to the cache; it will be compiled again at the next start.",
            file = %artifact.file.display(),
            reason = %reason,
        );
    }
    Ok((component, Origin::Compiled))
}

/// How long an artifact of the current engine is kept unused: loading one
/// from disk renews it, so only the compiled forms of plugin files that no
/// longer run (each hot-reloaded version leaves one, 35 MB for a Python
/// policy) age out.
pub(crate) const MAX_ARTIFACT_IDLE: Duration = Duration::from_secs(30 * 86_400);

/// How long an artifact of another engine is kept unused. This agent never
/// loads one, but another flinkscale version (or settings) sharing the
/// folder may, and renews it when it does (as `simulate` of two versions
/// share the user cache): removing it at once made each version remove the
/// other's artifacts and compile again at every start. A week after the
/// other version last ran (an upgrade's old artifacts), it goes.
pub(crate) const MAX_OTHER_ENGINE_IDLE: Duration = Duration::from_secs(7 * 86_400);

/// How long the partial file of a write is kept: a write takes seconds,
/// so one an hour old was left by a process killed before its rename.
pub(crate) const MAX_PARTIAL_IDLE: Duration = Duration::from_secs(3600);

/// Removes from the cache folder `dir` (only if it is the agent's own) the
/// artifacts no load will use for long: those unused for
/// [`MAX_ARTIFACT_IDLE`] before `now`, those of another engine (an
/// agent of another version or settings wrote them; this one never looks
/// at them) unused for [`MAX_OTHER_ENGINE_IDLE`], and the partial files of
/// writes killed before their rename, after [`MAX_PARTIAL_IDLE`]. Run at
/// start and after each artifact written, so that an agent that runs for
/// months with plugins reloaded keeps its folder bounded. Only files
/// named as this cache names artifacts are touched; what cannot be removed
/// stays, with a warning. Returns how many were removed.
pub(crate) fn prune(dir: &Path, engine_hash: &str, now: SystemTime) -> usize {
    if !matches!(private_dir(dir), Ok(true)) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // An artifact, or what a write killed before its rename left.
        let (stem, partial) = match name.strip_suffix(".cwasm") {
            Some(stem) => (stem, false),
            None => match name.split_once(".tmp-") {
                Some((stem, writer))
                    if writer.split('-').count() == 2
                        && writer
                            .split('-')
                            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
                {
                    (stem, true)
                }
                _ => continue,
            },
        };
        let Some((wasm, engine)) = stem.split_once('-') else {
            continue;
        };
        let is_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(wasm, 64) || !is_hex(engine, 16) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() || untrusted(&path, &meta).is_some() {
            continue;
        }
        let idle = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .unwrap_or_default();
        let kept_for = if partial {
            MAX_PARTIAL_IDLE
        } else if engine == engine_hash {
            MAX_ARTIFACT_IDLE
        } else {
            MAX_OTHER_ENGINE_IDLE
        };
        if idle < kept_for {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(
                message = "Cannot remove a stale compiled plugin from the cache.",
                file = %path.display(),
                reason = %e,
            ),
        }
    }
    if removed > 0 {
        tracing::info!(
            message = "Removed stale compiled plugins from the cache.",
            dir = %dir.display(),
            removed,
            max_idle_days = MAX_ARTIFACT_IDLE.as_secs() / 86_400,
            other_engine_max_idle_days = MAX_OTHER_ENGINE_IDLE.as_secs() / 86_400,
        );
    }
    removed
}

/// The user the agent runs as.
fn agent_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why `meta` (of `path`) must not be trusted: owned by another user, or
/// writable by group or others.
fn untrusted(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let uid = agent_uid();
    if meta.uid() != uid {
        return Some(format!(
            "{} belongs to uid {}, not to the agent's uid {uid}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} has mode {mode:03o}: writable by group or others (valid: not writable by them, e.g. 0700 for the folder, 0600 for a file)",
            path.display()
        ));
    }
    None
}

/// The cache directory, if it is the agent's own; `Ok(false)` if it does not
/// exist.
fn private_dir(dir: &Path) -> Result<bool, String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a folder", dir.display())),
        Ok(meta) => untrusted(dir, &meta).map_or(Ok(true), Err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot inspect {}: {e}", dir.display())),
    }
}

/// Loads a verified artifact: `Ok(None)` when there is none, an error
/// saying why one that is there is refused.
fn load(engine: &Engine, artifact: &Artifact) -> Result<Option<Component>, String> {
    if !private_dir(artifact.dir())? {
        return Ok(None);
    }
    let file = &artifact.file;
    // Non-blocking: a FIFO in its place is refused below at once, where
    // the open would wait for a writer that never comes.
    let mut handle = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
    {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it (a symbolic link?): {e}")),
    };
    // Checked on the open file, so that what is checked is what is read.
    let meta = handle
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if let Some(reason) = untrusted(file, &meta) {
        return Err(reason);
    }
    let mut contents = Vec::new();
    handle
        .read_to_end(&mut contents)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let header = MAGIC.len() + 32;
    if contents.len() < header || &contents[..MAGIC.len()] != MAGIC {
        return Err(format!(
            "it is not a flinkscale artifact ({} bytes, no {} header)",
            contents.len(),
            String::from_utf8_lossy(MAGIC)
        ));
    }
    let (recorded, code) = contents[MAGIC.len()..].split_at(32);
    if recorded != artifact.digest(code) {
        return Err(
            "its digest does not match its content (torn, altered, or another plugin's)".to_owned(),
        );
    }
    // Renew it: an artifact that is used does not age out (see `prune`).
    // A failure only makes it age out sooner and be compiled again.
    let _ = handle.set_modified(SystemTime::now());
    // SAFETY: the bytes are native code that `deserialize` trusts. They are
    // what this cache wrote for this wasm and this engine: the digest above
    // binds them to both, and the folder and file belong to the agent and
    // are writable by nobody else, so nobody else could have put them there.
    unsafe { Component::deserialize(engine, code) }
        .map(Some)
        .map_err(|e| format!("wasmtime refused it: {}", super::engine::describe(&e)))
}

/// Distinguishes the temporary files of concurrent writes in one process.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Writes a compiled component: to a fresh private file, synced, renamed
/// over the old one, and the folder synced.
fn store(component: &Component, artifact: &Artifact) -> Result<(), String> {
    let dir = artifact.dir();
    if !private_dir(dir)? {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Created 0700 (whatever the umask), and checked like one found.
        if !private_dir(dir)? {
            return Err(format!("{} vanished after creation", dir.display()));
        }
    }
    let code = component
        .serialize()
        .map_err(|e| format!("cannot serialize: {}", super::engine::describe(&e)))?;
    let partial = artifact.file.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial)?;
        out.write_all(MAGIC)?;
        out.write_all(&artifact.digest(&code))?;
        out.write_all(&code)?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&partial, &artifact.file)?;
        crate::state::sync_folder(dir)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        e.to_string()
    })
}
