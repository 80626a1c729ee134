//! Compiled components, kept so that a plugin is compiled once.
//!
//! Compiling is the slow step of loading (tens of milliseconds for a Rust
//! component, seconds for an interpreted language's), so compiled
//! components are kept in memory by the sha256 of the wasm, and, when a
//! cache directory is set, on disk as `<wasm sha256>-<engine hash>.cwasm`:
//! the engine hash changes with the wasmtime version and the engine's
//! settings, so a stale artifact is never even looked at.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The sha256 of a wasm file.
pub(crate) type WasmHash = [u8; 32];

/// Hashes wasm bytes.
pub(crate) fn wasm_hash(bytes: &[u8]) -> WasmHash {
    Sha256::digest(bytes).into()
}

/// Compiled components by wasm hash, in memory and optionally on disk.
pub(crate) struct ComponentCache {
    memory: Mutex<HashMap<WasmHash, Component>>,
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
        Self {
            memory: Mutex::new(HashMap::new()),
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    /// The compiled component for `bytes`, compiling (and storing) it if it
    /// is in neither cache. An error is the compiler's.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let hash = wasm_hash(bytes);
        // Held while compiling: two applications loading the same plugin at
        // once then compile it once, not twice in parallel.
        let mut memory = self.lock();
        if let Some(component) = memory.get(&hash) {
            return Ok(component.clone());
        }
        let file = self.file_for(&hash);
        let component = match file.as_deref().and_then(|f| load(engine, f)) {
            Some(component) => component,
            None => {
                let component = Component::new(engine, bytes)?;
                if let Some(file) = &file {
                    store(&component, file);
                }
                component
            }
        };
        memory.insert(hash, component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WasmHash, Component>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file_for(&self, hash: &WasmHash) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}-{}.cwasm", self.engine_hash)))
    }
}

/// Loads a precompiled component; `None` (and a debug log) when it is absent
/// or unusable, so that the caller compiles from source.
fn load(engine: &Engine, file: &Path) -> Option<Component> {
    if !file.is_file() {
        return None;
    }
    // SAFETY: the file is native code; `deserialize_file` trusts it. Only
    // this cache writes into the cache directory (atomically, via rename),
    // under a name bound to the wasm's hash and to this engine's
    // compatibility hash, and the directory belongs to the agent: a file
    // there is one `Component::serialize` wrote for this engine.
    match unsafe { Component::deserialize_file(engine, file) } {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::debug!(
                message = "Ignoring unusable compiled plugin in the cache.",
                file = %file.display(),
                %error,
            );
            None
        }
    }
}

/// Writes a compiled component; failures only cost a recompilation next
/// time, so they are logged, not returned.
fn store(component: &Component, file: &Path) {
    let result = component
        .serialize()
        .map_err(|error| format!("{error:#}"))
        .and_then(|bytes| {
            let write = || -> std::io::Result<()> {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Written aside and renamed, so that a reader never sees a
                // half-written artifact.
                let partial = file.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&partial, bytes)?;
                std::fs::rename(&partial, file)
            };
            write().map_err(|error| error.to_string())
        });
    if let Err(error) = result {
        tracing::warn!(
            message = "Cannot write compiled plugin to the cache.",
            file = %file.display(),
            %error,
        );
    }
}
