//! The plugin host: one wasmtime engine, one linker, the component cache,
//! and the contract-version dispatch that turns a file into a ready
//! instance.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::component::{
    Component, HasSelf, InstancePre, Linker, Resource, ResourceTable, ResourceType,
};
use wasmtime::{Config, Engine};
use wasmtime_wasi::p2::DynPollable;

use super::builtin::PluginSource;
use super::cache::{CacheError, ComponentCache, Origin, wasm_hash};
use super::inspect::ComponentFacts;
use super::instance::Sandbox;
use super::sandbox::{GuestLog, Seed, State};
use super::world::{InterpreterWorld, Linked, PolicyWorld, World};
use super::{
    InterpreterInstance, PluginError, PluginKind, PluginMetadata, PolicyInstance, SandboxLimits,
    v0_1_0, v0_2_0,
};
use crate::target::Words;

/// How often the epoch advances. Deadlines are counted in ticks, so a call
/// may overrun its deadline by up to one tick: 10 ms is a tenth of the
/// default 100 ms deadline, precise enough, and costs 100 wake-ups a second
/// while a plugin call runs (none between calls, see [`CallInFlight`]).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One export this host knows how to bind: the interface name a component
/// exports, the world it implies, and the contract version.
struct SupportedExport {
    name: &'static str,
    kind: PluginKind,
    contract_version: &'static str,
}

/// Every export of every contract version this host accepts, newest
/// first (a component exporting two versions runs as the newest). A new
/// contract version adds its rows (and a bindings module); old rows stay.
const SUPPORTED: &[SupportedExport] = &[
    SupportedExport {
        name: v0_2_0::POLICY_EXPORT,
        kind: PluginKind::Policy,
        contract_version: v0_2_0::VERSION,
    },
    SupportedExport {
        name: v0_2_0::INTERPRETER_EXPORT,
        kind: PluginKind::Interpreter,
        contract_version: v0_2_0::VERSION,
    },
    SupportedExport {
        name: v0_1_0::POLICY_EXPORT,
        kind: PluginKind::Policy,
        contract_version: v0_1_0::VERSION,
    },
    SupportedExport {
        name: v0_1_0::INTERPRETER_EXPORT,
        kind: PluginKind::Interpreter,
        contract_version: v0_1_0::VERSION,
    },
];

/// The contract versions this host accepts, oldest first, each once (what
/// `flinkscale_build_info{contract_versions}` reports).
pub fn contract_versions() -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for export in SUPPORTED {
        if !versions.contains(&export.contract_version) {
            versions.push(export.contract_version);
        }
    }
    versions
}

/// Loads plugin components and runs them in sandboxes; one per agent.
///
/// Calls into plugins are synchronous and block the calling thread for up
/// to the call timeout; a load may also wait up to the compile timeout
/// ([`SandboxLimits::compile_timeout`], 60 s by default). Make them from
/// a thread that may block (tokio's blocking pool, as the controller
/// does), not from an async task. They are safe from
/// anywhere in a tokio runtime (see `guarded` in `instance.rs`).
pub struct PluginHost {
    engine: Engine,
    linker: Linker<State>,
    cache: Arc<ComponentCache>,
    limits: SandboxLimits,
}

impl PluginHost {
    /// A host with `limits` for every instance, on the engine (and epoch
    /// ticker thread) and in-memory component cache that every such host
    /// of this process shares (see `SHARED`).
    pub fn new(limits: SandboxLimits) -> Result<Self, PluginError> {
        Self::build(limits, None)
    }

    /// Like [`PluginHost::new`], on an engine and cache of its own that
    /// also keep compiled components in `cache_dir` (created if missing), so that a restart does not compile
    /// again. The directory must be writable only by the agent: its files
    /// are loaded as native code.
    pub fn with_cache_dir(limits: SandboxLimits, cache_dir: PathBuf) -> Result<Self, PluginError> {
        Self::build(limits, Some(cache_dir))
    }

    fn build(limits: SandboxLimits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let (engine, cache) = match cache_dir {
            None => SHARED
                .get_or_init(|| {
                    let dir = SHARED_DIR.seal();
                    let engine = new_engine()?;
                    let cache = Arc::new(ComponentCache::new(&engine, dir));
                    Ok((engine, cache))
                })
                .clone()
                .map_err(PluginError::Engine)?,
            Some(dir) => {
                let engine = new_engine().map_err(PluginError::Engine)?;
                let cache = Arc::new(ComponentCache::new(&engine, Some(dir)));
                (engine, cache)
            }
        };

        // One linker serves every world and contract version: they import
        // the same WASI interfaces, and each version's `host` interface has
        // its own versioned name.
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(describe(&e)))?;
        forbid_waiting(&mut linker).map_err(|e| PluginError::Engine(describe(&e)))?;
        runtime_free_wasi(&mut linker).map_err(|e| PluginError::Engine(describe(&e)))?;
        v0_1_0::policy::flinkscale::plugin::host::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| PluginError::Engine(describe(&e)))?;
        v0_2_0::policy::flinkscale::plugin::host::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| PluginError::Engine(describe(&e)))?;

        Ok(Self {
            engine,
            linker,
            cache,
            limits,
        })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Loads the scaling policy at `path` for `application`: compiles it
    /// (or takes it from the cache), checks it implements a supported
    /// version of `scaling-policy`, instantiates it and calls `configure`
    /// with `params_json`. A configure error is [`PluginError::Configure`]
    /// with the plugin's own message. What it logs is left in the
    /// contract's KPU, as an MSF application's user reads it
    /// ([`PluginHost::load_policy_in`] for another target).
    pub fn load_policy(
        &self,
        source: impl Into<PluginSource>,
        params_json: &str,
        application: &str,
    ) -> Result<PolicyInstance, PluginError> {
        self.load_policy_in(source, params_json, application, Words::Msf)
    }

    /// [`PluginHost::load_policy`] for an application that speaks `words`:
    /// what the plugin logs through `log` reads in its unit (on a Flink
    /// job, `4 KPU` reads `parallelism 4`; see [`Words::plugin_text`]).
    pub fn load_policy_in(
        &self,
        source: impl Into<PluginSource>,
        params_json: &str,
        application: &str,
        words: Words,
    ) -> Result<PolicyInstance, PluginError> {
        let sandbox =
            self.sandbox::<PolicyWorld>(&source.into(), params_json, application, words)?;
        PolicyInstance::start(sandbox)
    }

    /// Loads the metric interpreter at `path` for `application`, as
    /// [`PluginHost::load_policy`] does for policies.
    pub fn load_interpreter(
        &self,
        source: impl Into<PluginSource>,
        params_json: &str,
        application: &str,
    ) -> Result<InterpreterInstance, PluginError> {
        self.load_interpreter_in(source, params_json, application, Words::Msf)
    }

    /// [`PluginHost::load_interpreter`] for an application that speaks
    /// `words`, as [`PluginHost::load_policy_in`].
    pub fn load_interpreter_in(
        &self,
        source: impl Into<PluginSource>,
        params_json: &str,
        application: &str,
        words: Words,
    ) -> Result<InterpreterInstance, PluginError> {
        let sandbox =
            self.sandbox::<InterpreterWorld>(&source.into(), params_json, application, words)?;
        InterpreterInstance::start(sandbox)
    }

    /// Loads the plugin at `path`, of either world, instantiates it and asks
    /// its metadata, without configuring it (`flinkscale validate
    /// --environment`).
    pub fn check(&self, source: impl Into<PluginSource>) -> Result<PluginMetadata, PluginError> {
        let source = source.into();
        let path = source.display_path();
        let (component, export, seed) = self.compile(&source, None)?;
        match export.kind {
            PluginKind::Policy => self.check_as::<PolicyWorld>(&path, &component, export, seed),
            PluginKind::Interpreter => {
                self.check_as::<InterpreterWorld>(&path, &component, export, seed)
            }
        }
    }

    fn check_as<W: World>(
        &self,
        path: &Path,
        component: &Component,
        export: &'static SupportedExport,
        seed: Seed,
    ) -> Result<PluginMetadata, PluginError> {
        let linked = self.link::<W>(path, component, export)?;
        let mut sandbox = self.new_sandbox::<W>(path, linked, export, seed, "{}", "", Words::Msf);
        sandbox.start(false)?;
        Ok(sandbox.metadata())
    }

    fn sandbox<W: World>(
        &self,
        source: &PluginSource,
        params_json: &str,
        application: &str,
        words: Words,
    ) -> Result<Sandbox<W>, PluginError> {
        #[cfg(test)]
        load_probe::run(application);
        let path = source.display_path();
        let (component, export, seed) = self.compile(source, Some(W::KIND))?;
        let linked = self.link::<W>(&path, &component, export)?;
        Ok(self.new_sandbox(&path, linked, export, seed, params_json, application, words))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_sandbox<W: World>(
        &self,
        path: &Path,
        linked: Arc<dyn Linked<W>>,
        export: &'static SupportedExport,
        seed: Seed,
        params_json: &str,
        application: &str,
        words: Words,
    ) -> Sandbox<W> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        let log = Arc::new(GuestLog::new(&stem, application, words));
        Sandbox::new(
            self.engine.clone(),
            linked,
            self.limits,
            deadline_ticks(self.limits.call_timeout),
            super::PluginIdentity {
                name: stem,
                version: "?".to_owned(),
                path: path.to_owned(),
                application: application.to_owned(),
            },
            export.contract_version,
            params_json.to_owned(),
            log,
            seed,
        )
    }

    /// Reads and compiles `source` and finds which supported export it
    /// implements; `expected` (if any) is the world the caller needs. A
    /// built-in goes through the same digest-keyed cache as a file, so it is
    /// compiled once per agent (and once per machine with a cache folder).
    /// Also gives the seed of the plugin's randomness, from its bytes.
    fn compile(
        &self,
        source: &PluginSource,
        expected: Option<PluginKind>,
    ) -> Result<(Component, &'static SupportedExport, Seed), PluginError> {
        let display_path = source.display_path();
        let path = display_path.as_path();
        let bytes = read(source)?;
        let (component, _) = self.component(path, &bytes)?;
        let export = dispatch(&self.engine, &component, path, expected)?;
        Ok((component, export, Seed::of_component(wasm_hash(&bytes))))
    }

    /// The compiled component of `bytes` (the file at `path`), from the
    /// cache or compiled now, and where it came from.
    fn component(&self, path: &Path, bytes: &[u8]) -> Result<(Component, Origin), PluginError> {
        self.cache
            .get_or_compile(&self.engine, bytes, self.limits.compile_timeout)
            .map_err(|e| match e {
                CacheError::Compile(detail) => PluginError::NotAComponent {
                    path: path.to_owned(),
                    detail,
                },
                CacheError::TimedOut(timeout) => PluginError::CompileTimeout {
                    path: path.to_owned(),
                    timeout,
                },
            })
    }

    /// What `source`'s component is (size, sha256, exports) and how long
    /// getting it compiled took through this host's cache, which a user's
    /// cache folder (see [`share_cache_dir`]) keeps between runs: a compile,
    /// or a load of an earlier one (`plugin check`).
    pub fn component_facts(&self, source: &PluginSource) -> Result<ComponentFacts, PluginError> {
        let bytes = read(source)?;
        let started = std::time::Instant::now();
        let (component, origin) = self.component(&source.display_path(), &bytes)?;
        let compile = started.elapsed();
        Ok(ComponentFacts::of(
            &self.engine,
            &component,
            &bytes,
            compile,
            origin != Origin::Compiled,
        ))
    }

    /// Links `component` once, as world `W`, with the bindings of its
    /// contract version.
    fn link<W: World>(
        &self,
        path: &Path,
        component: &Component,
        export: &'static SupportedExport,
    ) -> Result<Arc<dyn Linked<W>>, PluginError> {
        let link_error = |e: wasmtime::Error| PluginError::Link {
            path: path.to_owned(),
            detail: describe(&e),
        };
        let pre: InstancePre<State> = self.linker.instantiate_pre(component).map_err(link_error)?;
        match W::link(export.contract_version, pre) {
            Some(linked) => linked.map(Arc::from).map_err(link_error),
            // Unreachable as long as SUPPORTED and `World::link` agree; an
            // error rather than a panic all the same.
            None => Err(PluginError::UnsupportedContract {
                path: path.to_owned(),
                found: vec![format!("{} ({})", export.name, export.contract_version)],
                supported: supported_names(),
            }),
        }
    }
}

/// The engine and the in-memory compiled components shared by every
/// [`PluginHost::new`] of this process (a host with a cache folder has its
/// own), so a component is compiled once per process however many hosts
/// load it: `bench` assembles an agent, and with it a host, per run, and
/// each run compiled its plugin again (0.15 to 0.2 s of CPU a run, half of
/// a 7-day `seed` run). The engine's settings are the same for every host,
/// and nothing in it belongs to one: stores, limits and deadlines are per
/// instance.
static SHARED: std::sync::OnceLock<Result<(Engine, Arc<ComponentCache>), String>> =
    std::sync::OnceLock::new();

/// The folder where [`SHARED`]'s cache also keeps compiled components, if
/// one was set (by [`share_cache_dir`]) before the first host was built.
static SHARED_DIR: SharedDir = SharedDir(std::sync::OnceLock::new());

/// A folder chosen at most once, before it is first read: whichever comes
/// first, [`SharedDir::share`] or [`SharedDir::seal`], decides for good, in
/// one atomic step (a check, then a set, would let a host be built between
/// the two without the folder a `true` answer promised).
struct SharedDir(std::sync::OnceLock<Option<PathBuf>>);

impl SharedDir {
    /// Chooses `dir`, if nothing was chosen or read yet; whether it was.
    fn share(&self, dir: PathBuf) -> bool {
        self.0.set(Some(dir)).is_ok()
    }

    /// The folder chosen, choosing none if nothing was: no later
    /// [`SharedDir::share`] changes it.
    fn seal(&self) -> Option<PathBuf> {
        self.0.get_or_init(|| None).clone()
    }
}

/// Makes the compiled-component cache that every [`PluginHost::new`] of
/// this process shares also keep its artifacts in `dir` (created 0700 if
/// missing; trusted as [`PluginHost::with_cache_dir`] trusts its own), so
/// that the next process (the next `simulate`) does not compile the same
/// plugin again: call it first. Answers true when `dir` is the folder
/// from now on. A second call answers false and changes nothing (the first
/// folder stays), as does a call once a host was built (it was built with
/// no folder, for good); race-free: calls and hosts built on other threads
/// at the same time see one order.
pub fn share_cache_dir(dir: PathBuf) -> bool {
    SHARED_DIR.share(dir)
}

/// The bytes of `source`, or a read error naming it.
fn read(source: &PluginSource) -> Result<std::borrow::Cow<'static, [u8]>, PluginError> {
    source.bytes().map_err(|error| PluginError::Read {
        path: source.display_path(),
        source: error,
    })
}

/// An engine with this host's settings and its epoch ticker.
/// The host's engine settings: the component model, and epoch
/// interruption for the call deadlines. [`super::inspect::Compiler`] uses
/// them too, so that its compile times are the host's.
pub(crate) fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

fn new_engine() -> Result<Engine, String> {
    let engine = Engine::new(&engine_config()).map_err(|e| describe(&e))?;
    start_ticker(&engine)?;
    Ok(engine)
}

/// The monotonic clock interface as wasmtime-wasi defines it (semver
/// matching makes this name serve guests built against any 0.2.x).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces the monotonic clock's `subscribe-*` functions (what a guest's
/// `sleep` and timed waits use) with traps. A wait blocks in host code,
/// where epoch interruption cannot reach, so a guest sleeping an hour would
/// hold its controller for an hour; and a plugin has no business waiting:
/// the contract gives it no clock.
fn forbid_waiting(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    fn refuse(
        _store: wasmtime::StoreContextMut<'_, State>,
        _when: (u64,),
    ) -> wasmtime::Result<(Resource<DynPollable>,)> {
        wasmtime::bail!("plugins cannot sleep or wait: the sandbox gives them no clock")
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", refuse)?;
    clock.func_wrap("subscribe-instant", refuse)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:io` and `wasi:sockets` interfaces as wasmtime-wasi defines
/// them (semver matching makes these names serve guests built against any
/// 0.2.x, as [`MONOTONIC_CLOCK`] does).
const IO_POLL: &str = "wasi:io/poll@0.2.12";
/// See [`IO_POLL`].
const IO_STREAMS: &str = "wasi:io/streams@0.2.12";
/// See [`IO_POLL`].
const UDP_CREATE_SOCKET: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// Replaces the host functions of wasmtime-wasi's synchronous bindings that
/// a sandboxed plugin can reach and that would enter a tokio runtime, so
/// that no guest call ever needs one and a guest may run inline on any
/// thread, even one that drives a runtime (the simulator's).
///
/// wasmtime-wasi 48 runs these through `in_tokio`, which calls
/// `Handle::block_on` on the current runtime: that panics on a thread that
/// drives one. Here each runs its asynchronous twin (the same code, so the
/// same checks and errors) to completion at once, with [`at_once`]: every
/// stream a plugin holds answers at once (stdout and stderr are the
/// plugin's log, stdin is closed) and it can subscribe to nothing else
/// ([`forbid_waiting`] refuses clock subscriptions), so nothing here ever
/// waits; should something ever not be ready, the call traps rather than
/// wait, as [`forbid_waiting`] does for sleeps.
///
/// The other functions wasmtime-wasi wraps so take a resource a plugin
/// cannot hold: a file descriptor (no directory is preopened), a TCP socket
/// (creating one is refused: TCP is not allowed) or a UDP socket (whose
/// creation is replaced here).
fn runtime_free_wasi(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::io::{poll, streams};
    use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, UdpSocket};

    /// The guest-facing `stream-error` of a stream function's outcome (a
    /// failure's error resource goes into the table); a trap stays a trap.
    type GuestStreamResult<T> = wasmtime::Result<(Result<T, streams::StreamError>,)>;
    fn guest_result<T>(
        table: &mut ResourceTable,
        result: wasmtime_wasi::p2::StreamResult<T>,
    ) -> GuestStreamResult<T> {
        match result {
            Ok(value) => Ok((Ok(value),)),
            Err(error) => Ok((Err(streams::Host::convert_stream_error(table, error)?),)),
        }
    }
    type Store<'a> = wasmtime::StoreContextMut<'a, State>;

    linker.allow_shadowing(true);

    let mut io_poll = linker.instance(IO_POLL)?;
    io_poll.func_wrap(
        "poll",
        |mut store: Store<'_>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let table = store.data_mut().table();
            Ok((at_once("poll", poll::Host::poll(table, pollables))??,))
        },
    )?;
    io_poll.func_wrap(
        "[method]pollable.block",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            let table = store.data_mut().table();
            at_once("pollable.block", poll::HostPollable::block(table, pollable))?
        },
    )?;
    io_poll.func_wrap(
        "[method]pollable.ready",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            let table = store.data_mut().table();
            Ok((at_once(
                "pollable.ready",
                poll::HostPollable::ready(table, pollable),
            )??,))
        },
    )?;

    let mut io_streams = linker.instance(IO_STREAMS)?;
    io_streams.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store: Store<'_>, rep: u32| {
            let table = store.data_mut().table();
            let stream = Resource::new_own(rep);
            at_once(
                "dropping an output-stream",
                streams::HostOutputStream::drop(table, stream),
            )?
        },
    )?;
    io_streams.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut store: Store<'_>, rep: u32| {
            let table = store.data_mut().table();
            let stream = Resource::new_own(rep);
            at_once(
                "dropping an input-stream",
                streams::HostInputStream::drop(table, stream),
            )?
        },
    )?;
    io_streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let table = store.data_mut().table();
            let written = at_once(
                "output-stream.blocking-write-and-flush",
                streams::HostOutputStream::blocking_write_and_flush(table, stream, bytes),
            )?;
            guest_result(table, written)
        },
    )?;
    io_streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Store<'_>, (stream, len): (Resource<DynOutputStream>, u64)| {
            let table = store.data_mut().table();
            let written = at_once(
                "output-stream.blocking-write-zeroes-and-flush",
                streams::HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len),
            )?;
            guest_result(table, written)
        },
    )?;
    io_streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: Store<'_>, (stream,): (Resource<DynOutputStream>,)| {
            let table = store.data_mut().table();
            let flushed = at_once(
                "output-stream.blocking-flush",
                streams::HostOutputStream::blocking_flush(table, stream),
            )?;
            guest_result(table, flushed)
        },
    )?;
    io_streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: Store<'_>,
         (to, from, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let table = store.data_mut().table();
            let spliced = at_once(
                "output-stream.blocking-splice",
                streams::HostOutputStream::blocking_splice(table, to, from, len),
            )?;
            guest_result(table, spliced)
        },
    )?;
    io_streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = store.data_mut().table();
            let read = at_once(
                "input-stream.blocking-read",
                streams::HostInputStream::blocking_read(table, stream, len),
            )?;
            guest_result(table, read)
        },
    )?;
    io_streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = store.data_mut().table();
            let skipped = at_once(
                "input-stream.blocking-skip",
                streams::HostInputStream::blocking_skip(table, stream, len),
            )?;
            guest_result(table, skipped)
        },
    )?;

    // What wasmtime-wasi answers when UDP is not allowed, as the sandbox
    // never allows it (`State::new`), without entering a runtime first.
    linker.instance(UDP_CREATE_SOCKET)?.func_wrap(
        "create-udp-socket",
        |_store: Store<'_>,
         _family: (IpAddressFamily,)|
         -> wasmtime::Result<(Result<Resource<UdpSocket>, ErrorCode>,)> {
            Ok((Err(ErrorCode::AccessDenied),))
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}

/// Runs a wasmtime-wasi host function's future to completion if it
/// completes at once, and refuses it (an error, which traps the guest)
/// otherwise: a plugin has nothing to wait for (see [`runtime_free_wasi`]),
/// and a wait blocks in host code, out of the deadline's reach.
fn at_once<F: std::future::Future>(function: &str, future: F) -> wasmtime::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => wasmtime::bail!(
            "{function} would wait, and plugins cannot wait: the sandbox gives them nothing to wait for"
        ),
    }
}

/// Finds the supported export a component implements, or explains why none.
fn dispatch(
    engine: &Engine,
    component: &Component,
    path: &Path,
    expected: Option<PluginKind>,
) -> Result<&'static SupportedExport, PluginError> {
    let ty = component.component_type();
    let found: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut matches = SUPPORTED
        .iter()
        .filter(|s| found.iter().any(|name| name == s.name));
    let Some(first) = matches.next() else {
        return Err(PluginError::UnsupportedContract {
            path: path.to_owned(),
            found,
            supported: supported_names(),
        });
    };
    match expected {
        None => Ok(first),
        Some(kind) => std::iter::once(first)
            .chain(matches)
            .find(|s| s.kind == kind)
            .ok_or_else(|| PluginError::WrongWorld {
                path: path.to_owned(),
                expected: kind,
                found: first.kind,
                export: first.name.to_owned(),
            }),
    }
}

fn supported_names() -> Vec<String> {
    SUPPORTED.iter().map(|s| s.name.to_owned()).collect()
}

/// Epoch ticks for a call timeout: rounded up, plus one because the first
/// tick may come at once.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_millis().max(1);
    u64::try_from(timeout.as_millis().div_ceil(tick))
        .unwrap_or(u64::MAX / 2)
        .max(1)
        + 1
}

/// Plugin calls running now, in the whole process, and the ticker threads'
/// wake-up: a ticker advances its engine's epoch only while some call runs
/// (between calls no deadline counts down), so an idle agent's ticker sleeps
/// instead of waking 100 times a second.
///
/// A call counts itself with one atomic add and takes the lock to wake the
/// tickers only when one of them is waiting: a call of a warm Rust policy
/// takes a few microseconds, and a lock and a condition variable's wake-up
/// (a system call) at every call cost more than the call (`plugin bench
/// step`: 4.4 us a `decide` with them, release build). A waking ticker
/// runs at least one tick (10 ms) before it waits again, so calls in a
/// row wake it at most 100 times a second. No wake-up is lost: a ticker
/// counts itself `idle` and then reads `calls`, under the lock, and a call
/// adds to `calls` and then reads `idle` (all sequentially consistent), so
/// either the ticker sees the call and does not wait, or the call sees the
/// ticker and notifies it once it waits (the lock is held until then).
struct InFlight {
    calls: AtomicUsize,
    idle: AtomicUsize,
    lock: Mutex<()>,
    started: Condvar,
}

static IN_FLIGHT: InFlight = InFlight {
    calls: AtomicUsize::new(0),
    idle: AtomicUsize::new(0),
    lock: Mutex::new(()),
    started: Condvar::new(),
};

/// How often an idle ticker checks whether its engine is gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A plugin call under way: the epoch tickers run from [`CallInFlight::begin`]
/// until it is dropped (also when the call panics). Every guest call holds
/// one, or its deadline would never pass.
pub(crate) struct CallInFlight(());

impl CallInFlight {
    /// Counts a call as running and wakes the tickers that wait.
    pub(crate) fn begin() -> Self {
        IN_FLIGHT.calls.fetch_add(1, Ordering::SeqCst);
        if IN_FLIGHT.idle.load(Ordering::SeqCst) > 0 {
            let _waiting = IN_FLIGHT
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            IN_FLIGHT.started.notify_all();
        }
        Self(())
    }
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        IN_FLIGHT.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the thread that advances the engine's epoch while plugin calls
/// run ([`CallInFlight`]). It holds the engine only weakly, so it ends on
/// its own once the host and every instance are gone (instances keep the
/// engine alive, and with it their deadlines); the [`SHARED`] engine's
/// lives as long as the process.
fn start_ticker(engine: &Engine) -> Result<(), String> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("flinkscale-epoch".to_owned())
        .spawn(move || {
            loop {
                if IN_FLIGHT.calls.load(Ordering::SeqCst) == 0 {
                    let mut waiting = IN_FLIGHT
                        .lock
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    IN_FLIGHT.idle.fetch_add(1, Ordering::SeqCst);
                    while IN_FLIGHT.calls.load(Ordering::SeqCst) == 0 {
                        waiting = IN_FLIGHT
                            .started
                            .wait_timeout(waiting, IDLE_CHECK)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        if weak.upgrade().is_none() {
                            IN_FLIGHT.idle.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    IN_FLIGHT.idle.fetch_sub(1, Ordering::SeqCst);
                }
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the epoch ticker thread: {e}"))
}

/// An error's whole chain on one line: a cause whose text spans lines
/// (wasmparser prints the bytes it expected as an indented list) has each
/// line break and the indentation after it made one space.
pub(crate) fn describe(error: &wasmtime::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = crate::telemetry::text::spaced(&cause.to_string());
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Unit tests' view of where plugins are loaded: a probe installed for an
/// application runs at the start of each of its loads, on the loading
/// thread.
#[cfg(test)]
pub(crate) mod load_probe {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    type Probe = Arc<dyn Fn() + Send + Sync>;

    static PROBES: Mutex<Vec<(String, Probe)>> = Mutex::new(Vec::new());

    /// Runs `probe` at the start of every load for `application`, on the
    /// thread that loads.
    pub(crate) fn install(application: &str, probe: impl Fn() + Send + Sync + 'static) {
        PROBES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((application.to_owned(), Arc::new(probe) as Probe));
    }

    /// Runs the probe installed for `application`, if any.
    pub(crate) fn run(application: &str) {
        let probe = PROBES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(name, _)| name == application)
            .map(|(_, probe)| probe.clone());
        if let Some(probe) = probe {
            probe();
        }
    }

    /// What loads of one application found of the runtime they were asked
    /// from.
    #[derive(Default)]
    pub(crate) struct RuntimeFree {
        /// Loads during which a task spawned on the runtime ran.
        pub(crate) free: AtomicUsize,
        /// Loads during which it could not run (10 s): the load held the
        /// runtime's thread.
        pub(crate) held: AtomicUsize,
    }

    impl RuntimeFree {
        /// Probes every load of `application`: each spawns a task on
        /// `runtime` and waits for it to run. Deterministic on a
        /// current-thread runtime, whose only thread runs the task only if
        /// the load is not holding it.
        pub(crate) fn install(
            application: &str,
            runtime: tokio::runtime::Handle,
        ) -> Arc<RuntimeFree> {
            let seen = Arc::new(RuntimeFree::default());
            let counts = seen.clone();
            install(application, move || {
                let (ran, answered) = std::sync::mpsc::channel();
                runtime.spawn(async move {
                    let _ = ran.send(());
                });
                let counter = match answered.recv_timeout(Duration::from_secs(10)) {
                    Ok(()) => &counts.free,
                    Err(_) => &counts.held,
                };
                counter.fetch_add(1, Ordering::SeqCst);
            });
            seen
        }

        /// (free, held) so far.
        pub(crate) fn counts(&self) -> (usize, usize) {
            (
                self.free.load(Ordering::SeqCst),
                self.held.load(Ordering::SeqCst),
            )
        }
    }
}

/// The WebAssembly magic bytes every module and component starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Why `bytes` failed to compile, for the plugin's author: a file that is
/// not WebAssembly at all, or a core module where a component is needed,
/// is said in those words before the compiler's own reason (on one line,
/// [`describe`]).
pub(crate) fn describe_compile_error(bytes: &[u8], error: &wasmtime::Error) -> String {
    let reason = describe(error);
    if !bytes.starts_with(WASM_MAGIC) {
        let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        return format!(
            "the file is not WebAssembly: it does not start with the bytes \\0asm that every \
             module and component starts with (it starts with {start:?}, {} bytes in all) ({reason})",
            bytes.len()
        );
    }
    // A core module's version field is 1; a component's layer is 1 at
    // bytes 6..8.
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return format!(
            "the file is a core WebAssembly module, not a component: build it for \
             wasm32-wasip2 (wasm32-unknown-unknown and wasm32-wasip1 make core modules), or \
             wrap the module with `wasm-tools component new` ({reason})"
        );
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use super::{CallInFlight, IDLE_CHECK, IN_FLIGHT, SharedDir};

    /// A call that begins while the tickers wait wakes them at once: were
    /// the wake-up lost, a waiting ticker would run again only at its next
    /// idle check (1 s), and the call's deadline would pass that much late.
    /// Other tests' calls in this process can only wake the tickers sooner.
    #[test]
    fn a_call_wakes_a_waiting_ticker_at_once() {
        // An engine, and with it a ticker of its own that lives as long
        // as the engine does.
        let engine = super::new_engine().expect("an engine starts");
        for _ in 0..10 {
            let waiting_since = Instant::now();
            while IN_FLIGHT.idle.load(Ordering::SeqCst) == 0 {
                assert!(
                    waiting_since.elapsed() < Duration::from_secs(30),
                    "no ticker ever waited"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            let began = Instant::now();
            let call = CallInFlight::begin();
            while IN_FLIGHT.idle.load(Ordering::SeqCst) > 0 && began.elapsed() < 3 * IDLE_CHECK {
                std::thread::yield_now();
            }
            let woke_after = began.elapsed();
            drop(call);
            assert!(
                woke_after < IDLE_CHECK / 2,
                "the tickers went on waiting {woke_after:?} after a call began"
            );
        }
        drop(engine);
    }

    fn compile_error(bytes: &[u8]) -> String {
        let engine = wasmtime::Engine::default();
        match wasmtime::component::Component::new(&engine, bytes) {
            Ok(_) => panic!("{bytes:?} compiled"),
            Err(error) => super::describe_compile_error(bytes, &error),
        }
    }

    #[test]
    fn a_file_that_is_not_wasm_is_said_so_on_one_line() {
        let text = compile_error(b"garbage\n");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with(
                "the file is not WebAssembly: it does not start with the bytes \\0asm that \
                 every module and component starts with (it starts with \"garbage.\", 8 bytes \
                 in all) ("
            ),
            "{text}"
        );
        // The compiler's reason follows, its list of bytes on the same line.
        assert!(text.contains("magic header not detected"), "{text}");
    }

    #[test]
    fn a_core_module_is_said_to_need_wrapping_as_a_component() {
        let text = compile_error(&[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
        assert!(
            text.starts_with(
                "the file is a core WebAssembly module, not a component: build it for wasm32-wasip2"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_shared_dir_is_chosen_once_and_a_second_call_changes_nothing() {
        let dir = SharedDir(std::sync::OnceLock::new());
        assert!(dir.share(PathBuf::from("/first")));
        assert!(!dir.share(PathBuf::from("/second")), "a second call");
        assert_eq!(dir.seal(), Some(PathBuf::from("/first")));

        let sealed = SharedDir(std::sync::OnceLock::new());
        assert_eq!(sealed.seal(), None, "a host built first: no folder");
        assert!(!sealed.share(PathBuf::from("/late")), "too late");
        assert_eq!(sealed.seal(), None);
    }

    /// Threads sharing folders while others build hosts (seal) at the same
    /// time: every host sees the same folder, and a call answered true iff
    /// its folder is that one.
    #[test]
    fn sharing_a_dir_races_no_host() {
        for round in 0..200 {
            let dir = Arc::new(SharedDir(std::sync::OnceLock::new()));
            let start = Arc::new(Barrier::new(6));
            let sharers: Vec<_> = (0..3)
                .map(|i| {
                    let (dir, start) = (dir.clone(), start.clone());
                    std::thread::spawn(move || {
                        let mine = PathBuf::from(format!("/cache-{i}"));
                        start.wait();
                        (mine.clone(), dir.share(mine))
                    })
                })
                .collect();
            let hosts: Vec<_> = (0..3)
                .map(|_| {
                    let (dir, start) = (dir.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        dir.seal()
                    })
                })
                .collect();
            let answers: Vec<(PathBuf, bool)> =
                sharers.into_iter().map(|t| t.join().unwrap()).collect();
            let seen: Vec<Option<PathBuf>> = hosts.into_iter().map(|t| t.join().unwrap()).collect();
            let chosen = dir.seal();
            assert!(seen.iter().all(|s| *s == chosen), "round {round}: {seen:?}");
            let yes: Vec<&PathBuf> = answers.iter().filter(|a| a.1).map(|a| &a.0).collect();
            assert_eq!(
                yes,
                chosen.iter().collect::<Vec<_>>(),
                "round {round}: {answers:?}"
            );
        }
    }
}
