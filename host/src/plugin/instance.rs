//! One plugin instance per application: a store, its exports (of one
//! world, whatever the contract version), and the discipline around every call (deadline, memory cap, log budget, failure
//! classification, and rebuilding after a trap).

use std::cell::Cell;
use std::sync::Arc;

use wasmtime::{Engine, Store, Trap};

use super::engine;
use super::params;
use super::sandbox::{GuestLog, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES, Seed, State};
use super::validate::sanitize_text;
use super::world::{Exports, InterpreterWorld, Linked, PolicyWorld, World};
use super::{FailureClass, Parameter, PluginError, PluginIdentity, PluginMetadata, SandboxLimits};
use crate::metrics::Series;
use crate::model::{Application, Decision, Evaluation, Signal};

/// How wasmtime words a refusal by the limiter's `instances`, `tables` or
/// `memories` count (`resource limit exceeded: instance count too high at
/// 101`); it has no error type of its own. Pinned by a test, so that a
/// wasmtime that words it otherwise fails that test rather than turning
/// the class into a plain trap unnoticed.
const COUNT_LIMIT_ERROR: &str = "resource limit exceeded";

/// Longest error text kept from a plugin or a trap, in bytes.
const MAX_DETAIL_BYTES: usize = 512;

/// Longest summary kept from a plugin's metadata, in bytes.
const MAX_SUMMARY_BYTES: usize = 256;

/// The most bytes the host copies out of a plugin in one call (wasmtime's
/// hostcall fuel): past it the call fails as a trap, before the host
/// holds the copy.
pub(crate) const MAX_COPIED_OUT_BYTES: usize = 16 << 20;

/// The deadline of the calls that start an instance (instantiate, metadata,
/// configure): ten times a call's, and at least a second. They run once per
/// instance, and a start refused for a deadline fails the agent's start or a
/// reload; on a host whose cores are busy (a build, other containers) a
/// wall-clock 100 ms was seen to refuse the built-in `hold`, whose start
/// does no work at all.
pub(crate) fn start_timeout(call_timeout: std::time::Duration) -> std::time::Duration {
    (call_timeout.saturating_mul(10)).max(std::time::Duration::from_secs(1))
}

/// Whether `function` is one of the calls that start an instance, which
/// get [`start_timeout`].
fn starts_an_instance(function: &str) -> bool {
    matches!(function, "instantiate" | "metadata" | "configure")
}

/// A duration in whole microseconds, for a log field.
fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Whether a start that failed with `error` is tried once more, on a fresh
/// instance: only when one of its calls ran past its deadline. A healthy
/// plugin's start does little, so on a host busy enough (a load average
/// of 6.5 on 2 cores was seen) to push it past [`start_timeout`] a second
/// try usually passes; a guest that really loops fails again, after two
/// deadlines. Anything else (a trap, a refusal, invalid metadata) would
/// only fail the same way again.
pub(crate) fn retries_start(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Call {
            class: FailureClass::Timeout,
            ..
        }
    )
}

/// A live instance: a store and the exports instantiated in it.
struct Live<W: World> {
    store: Store<State>,
    exports: Box<W::Exports>,
}

/// One plugin instance of world `W` and everything needed to rebuild it.
pub(crate) struct Sandbox<W: World> {
    engine: Engine,
    linked: Arc<dyn Linked<W>>,
    limits: SandboxLimits,
    deadline_ticks: u64,
    identity: PluginIdentity,
    contract_version: &'static str,
    summary: String,
    parameters: Option<Vec<Parameter>>,
    params_json: String,
    log: Arc<GuestLog>,
    /// Where every store of this plugin draws its randomness from.
    seed: Seed,
    /// `None` before the first start and after a trap (a trapped store is
    /// poisoned and never called again).
    live: Option<Live<W>>,
    /// Whether the live instance has been called (`decide`, `interpret`)
    /// since it started.
    called: bool,
    consecutive_failures: u32,
}

impl<W: World> Sandbox<W> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        engine: Engine,
        linked: Arc<dyn Linked<W>>,
        limits: SandboxLimits,
        deadline_ticks: u64,
        identity: PluginIdentity,
        contract_version: &'static str,
        params_json: String,
        log: Arc<GuestLog>,
        seed: Seed,
    ) -> Self {
        Self {
            engine,
            linked,
            limits,
            deadline_ticks,
            identity,
            contract_version,
            summary: String::new(),
            parameters: None,
            params_json,
            log,
            seed,
            live: None,
            called: false,
            consecutive_failures: 0,
        }
    }

    /// Memory the live instance holds, linear memories and tables
    /// together ([`Limiter::used`](super::sandbox::Limiter::used)); `None`
    /// when none is live (not started yet, or trapped).
    pub(crate) fn memory_bytes(&self) -> Option<u64> {
        self.live
            .as_ref()
            .map(|live| live.store.data().limiter.used())
    }

    /// What is known of the plugin (its own name, version, summary and
    /// parameters once it has been started).
    pub(crate) fn metadata(&self) -> PluginMetadata {
        PluginMetadata {
            name: self.identity.name.clone(),
            version: self.identity.version.clone(),
            kind: W::KIND,
            contract_version: self.contract_version,
            summary: self.summary.clone(),
            parameters: self.parameters.clone(),
        }
    }

    /// Builds a fresh store and instance, asks the plugin's metadata and,
    /// if `configure`, configures it; each step under its own deadline. A
    /// start that runs past a deadline ([`retries_start`]) is logged and
    /// tried once more on a fresh instance before it fails; it then counts
    /// as one failure.
    pub(crate) fn start(&mut self, configure: bool) -> Result<(), PluginError> {
        let failures = self.consecutive_failures;
        match self.start_once(configure) {
            Err(error) if retries_start(&error) => {
                tracing::warn!(
                    message = "Plugin start ran past its deadline; retrying once on a fresh instance.",
                    plugin = %self.identity.name,
                    plugin_version = %self.identity.version,
                    application = %self.identity.application,
                    %error,
                );
                self.consecutive_failures = failures;
                self.start_once(configure).map_err(|error| match error {
                    PluginError::Call {
                        plugin,
                        function,
                        class: FailureClass::Timeout,
                        detail,
                    } => PluginError::Call {
                        plugin,
                        function,
                        class: FailureClass::Timeout,
                        detail: format!("{detail}, on two fresh instances in turn"),
                    },
                    other => other,
                })
            }
            outcome => outcome,
        }
    }

    /// One try of [`Sandbox::start`].
    fn start_once(&mut self, configure: bool) -> Result<(), PluginError> {
        self.live = None;
        self.called = false;
        let start_ticks = engine::deadline_ticks(self.timeout_of("configure"));
        let mut store = Store::new(
            &self.engine,
            State::new(self.limits.memory_limit_bytes, self.log.clone(), &self.seed),
        );
        store.limiter(|state| &mut state.limiter);
        // What the host copies out of the guest in one call (an answer's
        // strings and lists, a log line): a real answer is kilobytes, and
        // wasmtime's own bound (128 MiB) is twice the sandbox's memory, as
        // an answer may name one string many times over.
        store.set_hostcall_fuel(MAX_COPIED_OUT_BYTES);

        let began = std::time::Instant::now();
        let linked = &*self.linked;
        let instantiated = guarded(&mut store, start_ticks, |store| linked.instantiate(store));
        let instantiated_at = began.elapsed();
        let exports = match instantiated {
            Ok(exports) => exports,
            Err(error) => return Err(self.trapped("instantiate", &store, &error)),
        };

        let metadata = guarded(&mut store, start_ticks, |store| exports.metadata(store));
        let metadata = match metadata {
            Ok(metadata) => metadata,
            Err(error) => return Err(self.trapped("metadata", &store, &error)),
        };
        let name = sanitize_text(&metadata.name, 64);
        let version = sanitize_text(&metadata.version, 64);
        let empty = match (name.trim().is_empty(), version.trim().is_empty()) {
            (true, true) => Some("name and version are"),
            (true, false) => Some("name is"),
            (false, true) => Some("version is"),
            (false, false) => None,
        };
        if let Some(empty) = empty {
            return Err(self.failed(
                "metadata",
                FailureClass::Invalid,
                format!("the plugin's {empty} empty (metadata() must name it and its version)"),
            ));
        }
        self.log.set_identity(&name, &version);
        self.identity.name = name;
        self.identity.version = version;
        self.summary = sanitize_text(&metadata.summary, MAX_SUMMARY_BYTES);
        self.parameters = match metadata.parameters {
            None => None,
            Some(declared) => match params::check_declarations(declared) {
                Ok(declared) => Some(declared),
                Err(problem) => {
                    return Err(self.failed("metadata", FailureClass::Invalid, problem));
                }
            },
        };

        if configure {
            // What the plugin declares is checked here, the same way for
            // every plugin, and reaches the user as a configure error does.
            if let Some(declared) = &self.parameters {
                let problems = params::check_params(declared, &self.params_json);
                if !problems.is_empty() {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    return Err(PluginError::Configure {
                        plugin: Box::new(self.identity.clone()),
                        message: problems.join("; "),
                    });
                }
            }
            let params = match &self.parameters {
                Some(declared) => params::with_defaults(declared, &self.params_json),
                None => self.params_json.clone(),
            };
            let configured = guarded(&mut store, start_ticks, |store| {
                exports.configure(store, &params)
            });
            match configured {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    return Err(PluginError::Configure {
                        plugin: Box::new(self.identity.clone()),
                        // Read in the application's unit, as its
                        // decisions' reasons are: `2 KPU` is
                        // `parallelism 2` on a Flink job.
                        message: sanitize_text(
                            &self.log.words().plugin_text(&message),
                            MAX_DETAIL_BYTES,
                        ),
                    });
                }
                Err(error) => return Err(self.trapped("configure", &store, &error)),
            }
        }
        // How close a start runs to its deadline: what to look at before
        // blaming (or raising) the deadline.
        tracing::debug!(
            message = "Plugin instance started.",
            plugin = %self.identity.name,
            plugin_version = %self.identity.version,
            application = %self.identity.application,
            instantiate_us = micros(instantiated_at),
            start_us = micros(began.elapsed()),
            deadline_us = micros(self.timeout_of("configure")),
        );
        self.live = Some(Live { store, exports });
        Ok(())
    }

    /// Calls `function` through `call`, (re)starting the instance first if
    /// it has none. Counts failures; forgets a trapped store.
    fn invoke<R: Send>(
        &mut self,
        function: &'static str,
        call: impl FnOnce(&mut Store<State>, &mut W::Exports) -> wasmtime::Result<Result<R, String>>
        + Send,
    ) -> Result<R, PluginError> {
        if self.live.is_none() {
            self.start(true)?;
        }
        let Some(live) = self.live.as_mut() else {
            return Err(self.failed(function, FailureClass::Trap, "no live instance".to_owned()));
        };
        self.called = true;
        let exports = &mut *live.exports;
        let result = guarded(&mut live.store, self.deadline_ticks, |store| {
            call(store, exports)
        });
        match result {
            Ok(Ok(value)) => {
                self.consecutive_failures = 0;
                Ok(value)
            }
            Ok(Err(message)) => Err(self.failed(
                function,
                FailureClass::GuestError,
                sanitize_text(&message, MAX_DETAIL_BYTES),
            )),
            Err(error) => {
                let Some(live) = self.live.take() else {
                    return Err(self.failed(function, FailureClass::Trap, describe_trap(&error)));
                };
                Err(self.trapped(function, &live.store, &error))
            }
        }
    }

    /// Whether the next call runs on an instance that no call has reached
    /// yet: none is live (never started, or the last one trapped), or the
    /// live one was just started.
    pub(crate) fn starts_afresh(&self) -> bool {
        self.live.is_none() || !self.called
    }

    /// The deadline of `function`: [`start_timeout`] for the calls that
    /// start an instance, the sandbox's call timeout for the others.
    fn timeout_of(&self, function: &str) -> std::time::Duration {
        if starts_an_instance(function) {
            start_timeout(self.limits.call_timeout)
        } else {
            self.limits.call_timeout
        }
    }

    /// A failure of a call that did not return: classifies it from the
    /// error and the store's limiter, and leaves no live instance behind.
    fn trapped(
        &mut self,
        function: &'static str,
        store: &Store<State>,
        error: &wasmtime::Error,
    ) -> PluginError {
        self.live = None;
        let (class, detail) = if store.data().limiter.refused {
            (
                FailureClass::OutOfMemory,
                format!(
                    "exceeded the memory limit of {} bytes (linear memories and tables together)",
                    self.limits.memory_limit_bytes
                ),
            )
        } else if error
            .chain()
            .any(|cause| cause.to_string().contains(COUNT_LIMIT_ERROR))
        {
            (
                FailureClass::ResourceLimit,
                format!(
                    "a plugin may create at most {MAX_INSTANCES} core instances, {MAX_TABLES} \
                     tables and {MAX_MEMORIES} memories: {}",
                    describe_trap(error)
                ),
            )
        } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            let deadline_ms = self.timeout_of(function).as_millis();
            let detail = if starts_an_instance(function) {
                format!(
                    "no answer within the {deadline_ms} ms deadline of an instance's start \
                     (ten times `plugin_timeout_ms`, at least 1 s)"
                )
            } else {
                format!(
                    "no answer within the {deadline_ms} ms deadline (`plugin_timeout_ms` in \
                     [agent]; `flinkscale plugin bench` times the plugin's calls)"
                )
            };
            (FailureClass::Timeout, detail)
        } else {
            let mut detail = with_last_words(describe_trap(error), &self.log.stderr_tail());
            // The first call of a component built from a JavaScript module
            // that exports no `policy` (or a Python module without the
            // class) reaches the glue's `unreachable`, which says nothing
            // of why.
            if function == "metadata"
                && matches!(
                    error.downcast_ref::<Trap>(),
                    Some(Trap::UnreachableCodeReached)
                )
            {
                detail.push_str(
                    " (the component's own code failed before its first answer: a JavaScript \
                     module must `export const policy = definePolicy(...)`, or `export const \
                     interpreter` for an interpreter; a Python module must define `class Policy` \
                     or `class Interpreter`; the build's warnings say which is missing)",
                );
            }
            (FailureClass::Trap, detail)
        };
        tracing::debug!(
            message = "Plugin call trapped.",
            plugin = %self.identity.name,
            plugin_version = %self.identity.version,
            application = %self.identity.application,
            function,
            error = ?error,
        );
        self.failed(function, class, detail)
    }

    fn failed(
        &mut self,
        function: &'static str,
        class: FailureClass,
        detail: String,
    ) -> PluginError {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        PluginError::Call {
            plugin: Box::new(self.identity.clone()),
            function,
            class,
            detail,
        }
    }
}

thread_local! {
    /// Set while [`on_plugin_thread`] runs work on this thread.
    static PLUGIN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` as plugin work: guest calls made inside it run on this
/// thread. Call it only where a guest call may block the thread for up to
/// its deadline: on a thread of tokio's blocking pool (`spawn_blocking`, as
/// the agent's controllers call plugins), on a thread outside any runtime,
/// or on the thread of a runtime that runs nothing else (the simulator's).
/// Outside it, a guest call made from inside a runtime runs on a scoped
/// helper thread (see `guarded`), which costs a thread start a call.
pub fn on_plugin_thread<R>(work: impl FnOnce() -> R) -> R {
    /// Restores the mark even if `work` panics (the controller catches
    /// plugin-thread panics and goes on using the thread's pool).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PLUGIN_THREAD.set(self.0);
        }
    }
    let _restore = Restore(PLUGIN_THREAD.replace(true));
    work()
}

/// Runs one call into a guest under the deadline, with a fresh log budget
/// and a cleared memory-refusal flag.
///
/// No WASI function a plugin can reach enters a tokio runtime (see
/// `runtime_free_wasi` in `engine.rs`), so a guest may run on any thread.
/// It runs inline outside any runtime and on threads marked by
/// [`on_plugin_thread`] (the agent's controllers on the blocking pool, the
/// simulator's own thread, the blocking-pool threads on which `run`, a
/// reload and `validate --environment` load plugins). Anywhere else in a
/// runtime it runs on a scoped helper thread: no caller of the agent's
/// does so, but should one appear and a wasmtime upgrade route a reachable
/// function through its runtime again, it would not panic on an async
/// worker (measured in a debug build: warm `decide` of `step` 83 us
/// inline, 316 us through the helper).
fn guarded<R: Send>(
    store: &mut Store<State>,
    deadline_ticks: u64,
    call: impl FnOnce(&mut Store<State>) -> R + Send,
) -> R {
    store.set_epoch_deadline(deadline_ticks);
    store.data_mut().limiter.refused = false;
    let log = store.data().log.clone();
    log.begin_call();
    let _ticking = engine::CallInFlight::begin();
    let result = if PLUGIN_THREAD.get() || tokio::runtime::Handle::try_current().is_err() {
        call(store)
    } else {
        std::thread::scope(|scope| match scope.spawn(|| call(store)).join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    };
    log.end_call();
    result
}

/// A trap's own message (`wasm trap: ...`, or a host function's refusal)
/// rather than the wasm backtrace that wraps it (which goes to the debug
/// log), cut to a log-friendly length.
fn describe_trap(error: &wasmtime::Error) -> String {
    let mut text = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    // wasmtime's words for the bound of `MAX_COPIED_OUT_BYTES` (a list or
    // a string past it) name neither the bound nor what to do.
    if text.contains("hostcalls has been exhausted") || text.contains("too much data") {
        text.push_str(&format!(
            " (the plugin handed the host more than {} MiB in one call, the most the host \
             copies out of a plugin: shorten its answer)",
            MAX_COPIED_OUT_BYTES >> 20
        ));
    }
    sanitize_text(&text, MAX_DETAIL_BYTES)
}

/// A trap's description with what the guest last wrote to stderr in that
/// call: a Rust plugin's panic traps as `unreachable`, and its message is
/// only there. Rust's hint about `RUST_BACKTRACE` (a guest has no
/// environment) is left out.
fn with_last_words(trap: String, stderr_tail: &[String]) -> String {
    let words: Vec<&str> = stderr_tail
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if words.is_empty() {
        return trap;
    }
    sanitize_text(
        &format!("{trap}; its stderr before: {}", words.join(" / ")),
        MAX_DETAIL_BYTES,
    )
}

/// A scaling policy instance serving one application.
pub struct PolicyInstance {
    sandbox: Sandbox<PolicyWorld>,
}

impl PolicyInstance {
    pub(crate) fn start(mut sandbox: Sandbox<PolicyWorld>) -> Result<Self, PluginError> {
        sandbox.start(true)?;
        Ok(Self { sandbox })
    }

    /// Starts a fresh instance of the compiled component now, configured
    /// again, as the next call after a trap or a timeout does: a new store,
    /// instantiate, metadata, configure (`plugin bench` times it).
    pub fn restart(&mut self) -> Result<(), PluginError> {
        self.sandbox.start(true)
    }

    /// Asks the policy to decide on `evaluation`. The answer is the
    /// plugin's, unvalidated: refuse it if
    /// [`super::validate::contract_violation`] finds it outside the
    /// contract, else pass it through
    /// [`super::validate::validate_decision`] before acting. After a trap
    /// or timeout the next call runs on a fresh instance (configured
    /// again).
    pub fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, PluginError> {
        self.sandbox
            .invoke("decide", |store, exports| exports.decide(store, evaluation))
    }

    /// [`PolicyInstance::decide`], with an answer outside the contract
    /// ([`super::validate::contract_violation`]: `scale-to(0)`, no reason)
    /// failed as `invalid` the way a trap is: the error names the plugin,
    /// its file and the application, as an interpreter's invalid answer
    /// does, so that an operator can tell which file to fix.
    pub fn decide_checked(&mut self, evaluation: &Evaluation) -> Result<Decision, PluginError> {
        let decision = self.decide(evaluation)?;
        match super::validate::contract_violation(&decision) {
            None => Ok(decision),
            Some(problem) => Err(self.sandbox.failed(
                "decide",
                FailureClass::Invalid,
                format!("invalid decision: {problem}"),
            )),
        }
    }

    /// The plugin's name, version, world and contract version.
    pub fn metadata(&self) -> PluginMetadata {
        self.sandbox.metadata()
    }

    /// The plugin as named in logs and errors.
    pub fn identity(&self) -> &PluginIdentity {
        &self.sandbox.identity
    }

    /// `name version`, e.g. `step 0.1.0`.
    pub fn label(&self) -> String {
        label(&self.sandbox.identity)
    }

    /// The sha256 of the bytes this instance was compiled from.
    pub fn sha256(&self) -> [u8; 32] {
        self.sandbox.seed.component_sha256()
    }

    /// Failed calls since the last successful one (for quarantine).
    pub fn consecutive_failures(&self) -> u32 {
        self.sandbox.consecutive_failures
    }

    /// Memory the instance holds, its linear memories and tables together:
    /// its peak so far, as WebAssembly memory never shrinks; `None` when
    /// no instance is live (after a trap or a timeout).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.sandbox.memory_bytes()
    }

    /// Whether the next [`PolicyInstance::decide`] runs on an instance
    /// that has not decided yet, so remembers nothing of earlier calls:
    /// before the first call, and after a trap or timeout (the next call
    /// starts the plugin again).
    pub fn starts_afresh(&self) -> bool {
        self.sandbox.starts_afresh()
    }
}

/// A metric interpreter instance serving one application.
pub struct InterpreterInstance {
    sandbox: Sandbox<InterpreterWorld>,
}

impl InterpreterInstance {
    pub(crate) fn start(mut sandbox: Sandbox<InterpreterWorld>) -> Result<Self, PluginError> {
        sandbox.start(true)?;
        Ok(Self { sandbox })
    }

    /// [`PolicyInstance::restart`], for an interpreter.
    pub fn restart(&mut self) -> Result<(), PluginError> {
        self.sandbox.start(true)
    }

    /// Asks the interpreter for signals. NaN and infinite values are
    /// dropped, as the contract says (by the caller). An answer with a
    /// signal no one could name (an empty name, a control character, more
    /// than `MAX_SIGNAL_NAME_BYTES`) or with a name given twice is
    /// nonsense: the call fails as `invalid`.
    pub fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, PluginError> {
        let signals = self.sandbox.invoke("interpret", |store, exports| {
            exports.interpret(store, now_ms, app, metrics)
        })?;
        match signal_problem(&signals) {
            None => Ok(signals),
            Some(problem) => Err(self
                .sandbox
                .failed("interpret", FailureClass::Invalid, problem)),
        }
    }

    /// The plugin's name, version, world and contract version.
    pub fn metadata(&self) -> PluginMetadata {
        self.sandbox.metadata()
    }

    /// [`PolicyInstance::memory_bytes`], for an interpreter.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.sandbox.memory_bytes()
    }

    /// The plugin as named in logs and errors.
    pub fn identity(&self) -> &PluginIdentity {
        &self.sandbox.identity
    }

    /// `name version`, e.g. `lag 0.1.0`.
    pub fn label(&self) -> String {
        label(&self.sandbox.identity)
    }

    /// The sha256 of the bytes this instance was compiled from.
    pub fn sha256(&self) -> [u8; 32] {
        self.sandbox.seed.component_sha256()
    }

    /// Failed calls since the last successful one (for quarantine).
    pub fn consecutive_failures(&self) -> u32 {
        self.sandbox.consecutive_failures
    }
}

/// The longest signal name an interpreter may give, in bytes.
pub(crate) const MAX_SIGNAL_NAME_BYTES: usize = 64;

/// The most signals one interpreter call may give: far more than any
/// policy reads, few enough that each evaluation's history entry, `status`
/// and `explain` stay small (every signal is recorded with each entry).
pub(crate) const MAX_SIGNALS: usize = 256;

/// What is wrong with an interpreter's answer, if anything: more than
/// [`MAX_SIGNALS`] signals, a name that is empty, too long or holds a
/// control character or one that changes a line without showing (see
/// `validate::is_invisible_format`), or one given twice.
fn signal_problem(signals: &[Signal]) -> Option<String> {
    const VALID: &str = "a signal's name is 1 to 64 bytes with no control character nor one \
                         that changes a line without showing (a line separator, a \
                         bidirectional override, a zero-width space), and unique in the \
                         answer; by convention letters, digits and '_'";
    if signals.len() > MAX_SIGNALS {
        return Some(format!(
            "{} signals in one answer; at most {MAX_SIGNALS} are taken",
            signals.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, signal) in signals.iter().enumerate() {
        // Debug quoting shows a control character as its escape.
        let shown: String = signal.name.chars().take(MAX_SIGNAL_NAME_BYTES).collect();
        if signal.name.is_empty()
            || signal.name.len() > MAX_SIGNAL_NAME_BYTES
            || signal
                .name
                .chars()
                .any(|c| c.is_control() || super::validate::is_invisible_format(c))
        {
            return Some(format!(
                "signal {} of {} has the name {shown:?}; {VALID}",
                index + 1,
                signals.len()
            ));
        }
        if !seen.insert(signal.name.as_str()) {
            return Some(format!("signal {shown:?} is given more than once; {VALID}"));
        }
    }
    None
}

fn label(identity: &PluginIdentity) -> String {
    format!("{} {}", identity.name, identity.version)
}

#[cfg(test)]
mod tests {
    use super::{describe_trap, retries_start, signal_problem, with_last_words};
    use crate::plugin::{FailureClass, PluginError, PluginIdentity};

    /// wasmtime's words when a call hands the host more than it copies
    /// out (a JavaScript plugin's 20 MiB reason) named no bound: they now
    /// say the 16 MiB and what to do.
    #[test]
    fn a_call_past_what_the_host_copies_out_names_the_bound() {
        let said = describe_trap(&wasmtime::Error::msg(
            "fuel allocated for hostcalls has been exhausted",
        ));
        assert!(
            said.ends_with(
                "(the plugin handed the host more than 16 MiB in one call, the most the host \
                 copies out of a plugin: shorten its answer)"
            ),
            "{said}"
        );
        let other = describe_trap(&wasmtime::Error::msg("wasm trap: integer divide by zero"));
        assert_eq!(other, "wasm trap: integer divide by zero");
    }

    fn identity() -> Box<PluginIdentity> {
        Box::new(PluginIdentity {
            name: "step".to_owned(),
            version: "0.1.0".to_owned(),
            path: "step.wasm".into(),
            application: "orders".to_owned(),
        })
    }

    fn start_failure(function: &'static str, class: FailureClass) -> PluginError {
        PluginError::Call {
            plugin: identity(),
            function,
            class,
            detail: "x".to_owned(),
        }
    }

    #[test]
    fn only_a_start_past_its_deadline_is_tried_again() {
        for function in ["instantiate", "metadata", "configure"] {
            assert!(retries_start(&start_failure(
                function,
                FailureClass::Timeout
            )));
            for class in [
                FailureClass::Trap,
                FailureClass::OutOfMemory,
                FailureClass::ResourceLimit,
                FailureClass::GuestError,
                FailureClass::Invalid,
            ] {
                assert!(
                    !retries_start(&start_failure(function, class)),
                    "{function} {class:?}"
                );
            }
        }
        let refused = PluginError::Configure {
            plugin: identity(),
            message: "unknown key".to_owned(),
        };
        assert!(!retries_start(&refused));
    }

    #[test]
    fn a_trap_carries_the_guests_last_stderr_lines() {
        let tail = [
            "thread '<unnamed>' (1) panicked at src/lib.rs:18:24:".to_owned(),
            "bad: panic in decide".to_owned(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                .to_owned(),
        ];
        assert_eq!(
            with_last_words(
                "wasm trap: wasm `unreachable` instruction executed".to_owned(),
                &tail
            ),
            "wasm trap: wasm `unreachable` instruction executed; its stderr before: thread \
             '<unnamed>' (1) panicked at src/lib.rs:18:24: / bad: panic in decide"
        );
        assert_eq!(
            with_last_words("wasm trap: x".to_owned(), &[]),
            "wasm trap: x"
        );
    }
    use crate::model::Signal;

    fn signals(names: &[&str]) -> Vec<Signal> {
        names
            .iter()
            .map(|name| Signal {
                name: (*name).to_owned(),
                value: 1.0,
            })
            .collect()
    }

    #[test]
    fn well_named_distinct_signals_pass() {
        assert_eq!(
            signal_problem(&signals(&["lag_growth", "hot", "x-1"])),
            None
        );
        assert_eq!(signal_problem(&[]), None);
    }

    #[test]
    fn a_signal_no_one_could_name_is_refused_naming_it_and_what_is_valid() {
        let problem = signal_problem(&signals(&["ok", ""])).unwrap();
        assert!(
            problem
                .starts_with("signal 2 of 2 has the name \"\"; a signal's name is 1 to 64 bytes"),
            "{problem}"
        );
        let problem = signal_problem(&signals(&["bad\nname"])).unwrap();
        assert!(
            problem.starts_with("signal 1 of 1 has the name \"bad\\nname\";"),
            "{problem}"
        );
        // Characters that change how a log line reads without showing (a
        // line separator, a right-to-left override) are refused as
        // control characters are: a name goes into logs and `explain`.
        for hidden in ["a\u{2028}b", "lag\u{202E}gal", "zero\u{200B}width"] {
            let problem = signal_problem(&signals(&[hidden])).unwrap();
            assert!(
                problem.starts_with("signal 1 of 1 has the name "),
                "{problem}"
            );
        }
        let long = "x".repeat(65);
        assert!(signal_problem(&signals(&[&long])).is_some());
        assert_eq!(signal_problem(&signals(&[&long[..64]])), None);
    }

    /// Every signal goes into each evaluation's history entry: an answer
    /// of more than [`super::MAX_SIGNALS`] is refused as a whole.
    #[test]
    fn more_signals_than_the_limit_are_refused() {
        let names: Vec<String> = (0..=super::MAX_SIGNALS).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(signal_problem(&signals(&refs[..super::MAX_SIGNALS])), None);
        assert_eq!(
            signal_problem(&signals(&refs)),
            Some("257 signals in one answer; at most 256 are taken".to_owned())
        );
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let problem = signal_problem(&signals(&["dup", "other", "dup"])).unwrap();
        assert!(
            problem.starts_with("signal \"dup\" is given more than once;"),
            "{problem}"
        );
    }
}
