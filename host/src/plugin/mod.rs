//! The sandboxed WebAssembly plugin host: the decide (and interpret) stage.
//!
//! A [`PluginHost`] owns one wasmtime engine for the whole agent, compiles a
//! plugin component once (cached by the wasm's sha256, in memory and
//! optionally on disk), finds which contract version and world it was built
//! against, and hands out one [`PolicyInstance`] or [`InterpreterInstance`]
//! per application. Every call into a plugin runs under a wall-clock
//! deadline and a memory cap, in an empty WASI context; a plugin that
//! fails is reported as a [`PluginError`] naming it, and a trapped instance
//! is rebuilt before its next call; a start that runs past its deadline
//! is tried once more on a fresh instance. What a policy answers is
//! checked before anyone acts on it: an answer outside the contract
//! ([`validate::contract_violation`]) is a failure, and
//! [`validate::validate_decision`] clamps a valid one to the bounds. A
//! [`Reloading`] instance follows its file: a new file replaces the running
//! plugin once it has loaded (in the agent, on a thread of its own while
//! the running plugin keeps answering) and accepted the application's
//! parameters, and a plugin quarantined by its controller is retried at
//! once.

pub mod builtin;
mod cache;
mod engine;
pub mod inspect;
mod instance;
pub mod lower;
pub mod params;
pub mod reload;
mod sandbox;
pub mod v0_1_0;
pub mod v0_2_0;
pub mod validate;
mod world;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use builtin::PluginSource;
#[cfg(test)]
pub(crate) use engine::load_probe;
pub use engine::{PluginHost, contract_versions, share_cache_dir};
pub use instance::{InterpreterInstance, PolicyInstance, on_plugin_thread};
pub use reload::{ConfigPlace, ConfigPlaces, Refresh, Reloading};

/// The resources one plugin instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wall-clock deadline of one call into a plugin (configure, metadata,
    /// decide, interpret). Enforced by epoch interruption, so the effective
    /// deadline is rounded up to the host's epoch tick (10 ms).
    pub call_timeout: Duration,
    /// Most memory one instance may hold, in bytes: all its linear memories
    /// and all its tables (a pointer's worth per element) together.
    pub memory_limit_bytes: u64,
    /// Longest a load waits for its component to compile (a compile that
    /// overruns goes on in the background, and the next load of the same
    /// file uses its result). Default 60 s: a Python component (18 MB,
    /// CPython inside) takes 11 s on two cores in a release build of the
    /// host, more on a busy or slower host, and a debug build of the host
    /// two to three times as long.
    pub compile_timeout: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(100),
            memory_limit_bytes: 64 * 1024 * 1024,
            compile_timeout: cache::COMPILE_TIMEOUT,
        }
    }
}

/// Which of the contract's worlds a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// World `scaling-policy`: decides a target capacity.
    Policy,
    /// World `metric-interpreter`: derives signals from series.
    Interpreter,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Policy => "scaling policy",
            PluginKind::Interpreter => "metric interpreter",
        })
    }
}

/// Who a plugin says it is, plus what the host found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    /// The plugin's name, from its `metadata()`.
    pub name: String,
    /// The plugin's own version, from its `metadata()`.
    pub version: String,
    /// The world it exports.
    pub kind: PluginKind,
    /// The contract version it was built against, e.g. `0.1.0`.
    pub contract_version: &'static str,
    /// What the plugin does, in one sentence; empty for contract 0.1.0,
    /// which has no place for it.
    pub summary: String,
    /// The keys the plugin accepts in `params`, as it declares them;
    /// `None` for contract 0.1.0, which cannot declare them (its plugins
    /// check their own params in `configure`).
    pub parameters: Option<Vec<Parameter>>,
}

/// The kind of value a plugin parameter takes (contract 0.2.0's
/// `parameter-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParameterKind {
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// A number (a whole number is a number too).
    Number,
    /// A string.
    Text,
    /// An array of strings.
    TextList,
    /// The id of one of the application's alarms.
    AlarmId,
    /// An array of alarm ids.
    AlarmIds,
    /// The id of one of the application's metrics.
    MetricId,
    /// An array of metric ids.
    MetricIds,
    /// A table whose keys the plugin defines.
    Table,
}

impl ParameterKind {
    /// How documentation names the kind, e.g. `alarm id`.
    pub fn label(self) -> &'static str {
        match self {
            ParameterKind::Boolean => "boolean",
            ParameterKind::Integer => "integer",
            ParameterKind::Number => "number",
            ParameterKind::Text => "string",
            ParameterKind::TextList => "array of strings",
            ParameterKind::AlarmId => "alarm id",
            ParameterKind::AlarmIds => "array of alarm ids",
            ParameterKind::MetricId => "metric id",
            ParameterKind::MetricIds => "array of metric ids",
            ParameterKind::Table => "table",
        }
    }
}

impl std::fmt::Display for ParameterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One key a plugin accepts in its `params` table, as the plugin declares
/// it (contract 0.2.0's `parameter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// The key, e.g. `scale_out_factor`.
    pub name: String,
    /// The kind of value it takes.
    pub kind: ParameterKind,
    /// Whether the key must be present.
    pub required: bool,
    /// The value used when the key is absent, as JSON text; `None` when
    /// required or when the default depends on other parameters.
    pub default_json: Option<String>,
    /// What it means and which values are valid, for people.
    pub meaning: String,
}

/// A plugin as named in logs and errors: what it says it is, where it was
/// loaded from, and the application it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginIdentity {
    /// The plugin's name (the file stem until `metadata()` has answered).
    pub name: String,
    /// The plugin's version (`?` until `metadata()` has answered).
    pub version: String,
    /// The component file.
    pub path: PathBuf,
    /// The application this instance serves (empty for `check`).
    pub application: String,
}

impl std::fmt::Display for PluginIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {} {} ({})",
            self.name,
            self.version,
            self.path.display()
        )?;
        if !self.application.is_empty() {
            write!(f, " for application {:?}", self.application)?;
        }
        Ok(())
    }
}

/// Why a call into a plugin produced no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The call ran past its deadline and was interrupted.
    Timeout,
    /// The instance tried to grow its memory (linear memories and tables
    /// together) past the cap.
    OutOfMemory,
    /// The component tried to create more core instances, tables or
    /// memories than a plugin may have.
    ResourceLimit,
    /// The guest trapped (`unreachable`, a panic, an out-of-bounds access).
    Trap,
    /// The guest returned an error of its own.
    GuestError,
    /// The guest answered something the contract does not allow.
    Invalid,
}

impl FailureClass {
    /// Every class, for metrics that report each one.
    pub const ALL: [FailureClass; 6] = [
        FailureClass::Timeout,
        FailureClass::OutOfMemory,
        FailureClass::ResourceLimit,
        FailureClass::Trap,
        FailureClass::GuestError,
        FailureClass::Invalid,
    ];

    /// The class as a metric label and in JSON, e.g. `out_of_memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Timeout => "timeout",
            FailureClass::OutOfMemory => "out_of_memory",
            FailureClass::ResourceLimit => "resource_limit",
            FailureClass::Trap => "trap",
            FailureClass::GuestError => "guest_error",
            FailureClass::Invalid => "invalid",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureClass::Timeout => "Timeout",
            FailureClass::OutOfMemory => "OutOfMemory",
            FailureClass::ResourceLimit => "ResourceLimit",
            FailureClass::Trap => "Trap",
            FailureClass::GuestError => "GuestError",
            FailureClass::Invalid => "Invalid",
        })
    }
}

/// Everything that can go wrong loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The WebAssembly engine could not be set up.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The component file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a component this host can compile (a core module, a
    /// component using features the engine lacks, or not wasm at all).
    #[error(
        "plugin {} is not a WebAssembly component this host can load \
         (build a Rust plugin for wasm32-wasip2, a Python or JavaScript one with \
         plugins/python/build.sh or plugins/js/build.sh): {detail}",
        path.display()
    )]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What the compiler said.
        detail: String,
    },
    /// Compiling the component took longer than the host waits
    /// ([`SandboxLimits::compile_timeout`]); the compile goes on in the background, and a
    /// later load of the same file uses its result.
    #[error(
        "plugin {} did not compile within {} s (`plugin_compile_timeout_secs`); a \
         component that takes this long is too big or pathological, or the host too slow \
         or too busy for it: raise the setting (a Python component takes 10-30 s on two \
         cores) (the compile goes on in the background, and the next load of the same \
         file uses its result)",
        path.display(),
        timeout.as_secs_f64()
    )]
    CompileTimeout {
        /// The file.
        path: PathBuf,
        /// How long the host waited.
        timeout: Duration,
    },
    /// The component exports no contract version this host supports.
    #[error(
        "plugin {} exports no flinkscale plugin interface this host supports; \
         found exports [{}]; supported: [{}]{}",
        path.display(),
        found.join(", "),
        supported.join(", "),
        contract_hint(found)
    )]
    UnsupportedContract {
        /// The file.
        path: PathBuf,
        /// The component's export names.
        found: Vec<String>,
        /// The export names this host accepts.
        supported: Vec<String>,
    },
    /// The component implements the other world.
    #[error("plugin {} is a {found} (exports {export}), but a {expected} is needed here", path.display())]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// What was asked for.
        expected: PluginKind,
        /// What the component is.
        found: PluginKind,
        /// The export that tells.
        export: String,
    },
    /// The component imports something the sandbox does not offer (for
    /// example sockets from a newer WASI, or HTTP).
    #[error("plugin {} imports what the sandbox does not provide: {detail}", path.display())]
    Link {
        /// The file.
        path: PathBuf,
        /// What the linker said.
        detail: String,
    },
    /// The plugin refused its parameters.
    #[error("{plugin} rejected its params: {message}")]
    Configure {
        /// The plugin.
        plugin: Box<PluginIdentity>,
        /// The plugin's own explanation.
        message: String,
    },
    /// A call into the plugin failed.
    #[error("{plugin} failed in {function}: {class}: {detail}")]
    Call {
        /// The plugin.
        plugin: Box<PluginIdentity>,
        /// The exported function (or `instantiate`).
        function: &'static str,
        /// The kind of failure.
        class: FailureClass,
        /// What happened, for people.
        detail: String,
    },
}

/// What to do about a component that exports no supported interface, by
/// what it does export: another version of the contract (a newer one,
/// most likely), or nothing at all (a Rust plugin without its export
/// macro).
fn contract_hint(found: &[String]) -> &'static str {
    if found.is_empty() {
        "; it exports nothing: a Rust plugin registers its type with \
         `flinkscale_plugin::export_policy!` (or `export_interpreter!`), a \
         plugin in another language implements the `policy` or `interpreter` \
         export of the WIT"
    } else if found
        .iter()
        .any(|name| name.starts_with("flinkscale:plugin/"))
    {
        "; it was built against a contract version this agent does not know \
         (a newer one?): upgrade flinkscale, or rebuild the plugin against a \
         version above (`flinkscale plugin sdk DIR` writes the WIT files)"
    } else {
        ""
    }
}

impl PluginError {
    /// Whether the configuration is at fault, so that starting again as
    /// it is fails the same way: the file cannot be read, is not a
    /// component, is of the other world or contract, needs what the
    /// sandbox lacks, refused its params, or declares invalid metadata
    /// (an empty name, a parameter past the host's limits: the file is
    /// at fault, and says the same every time). Not a failing engine, a
    /// compile past its deadline or a trapping call, which may pass on
    /// another try.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            PluginError::Read { .. }
                | PluginError::NotAComponent { .. }
                | PluginError::UnsupportedContract { .. }
                | PluginError::WrongWorld { .. }
                | PluginError::Link { .. }
                | PluginError::Configure { .. }
                | PluginError::Call {
                    function: "metadata",
                    class: FailureClass::Invalid,
                    ..
                }
        )
    }

    /// The configuration key a [`PluginError::is_configuration`] error is
    /// the fault of, under `[application.policy]` or an
    /// `[[application.interpreter]]`: `params` when the plugin refused
    /// them, `plugin` when it did not load.
    pub fn config_field(&self) -> &'static str {
        if matches!(self, PluginError::Configure { .. }) {
            "params"
        } else {
            "plugin"
        }
    }

    /// The kind of failure of a failed call (configure counts as a guest
    /// error); none for load errors.
    pub fn class(&self) -> Option<FailureClass> {
        match self {
            PluginError::Call { class, .. } => Some(*class),
            PluginError::Configure { .. } => Some(FailureClass::GuestError),
            _ => None,
        }
    }
}
