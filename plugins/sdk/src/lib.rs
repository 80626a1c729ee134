//! The Rust SDK for flinkscale plugins.
//!
//! A flinkscale plugin is a WebAssembly component that the agent loads into a
//! sandbox and asks, at every evaluation of an application, what to do. This
//! crate hides the component-model plumbing generated from the WIT contract
//! (`wit/v0.2.0/plugin.wit`): a plugin author writes one `impl` of [`Policy`]
//! (or [`Interpreter`]), declaring a summary and every parameter, and
//! registers the type with [`export_policy!`] (or [`export_interpreter!`]).
//!
//! # A whole policy
//!
//! ```
//! use flinkscale_plugin::{export_policy, AlarmState, Decision, Evaluation, Parameter, Params, Policy};
//! use serde::Deserialize;
//!
//! /// Adds KPU while an alarm fires.
//! struct PlusOne {
//!     params: PlusOneParams,
//! }
//!
//! /// The parameters, read by serde; every key is declared below.
//! #[derive(Deserialize)]
//! struct PlusOneParams {
//!     alarm: String,
//!     step: u32,
//! }
//!
//! impl Policy for PlusOne {
//!     const SUMMARY: &'static str = "Adds `step` KPU while an alarm is in ALARM.";
//!     const PARAMETERS: &'static [Parameter] = &[
//!         Parameter::alarm_id("alarm")
//!             .required()
//!             .meaning("The alarm that asks for more capacity."),
//!         Parameter::integer("step")
//!             .default("1")
//!             .meaning("KPU added at each evaluation while the alarm fires; at least 1."),
//!     ];
//!
//!     fn configure(params: Params) -> Result<Self, String> {
//!         // Undeclared keys were refused and `step` holds its default if
//!         // absent, so the struct needs no `#[serde(default)]`.
//!         let params: PlusOneParams = params.parse()?;
//!         if params.step == 0 {
//!             return Err("parameter `step` must be at least 1, found 0".to_owned());
//!         }
//!         Ok(PlusOne { params })
//!     }
//!
//!     fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
//!         let PlusOneParams { alarm, step } = &self.params;
//!         let state = evaluation.require_alarm(alarm)?.state;
//!         let app = &evaluation.app;
//!         if state != AlarmState::Alarm {
//!             return Ok(Decision::hold(format!("`{alarm}` is {state}")));
//!         }
//!         if app.kpu >= app.max_kpu {
//!             return Ok(Decision::hold(format!("already at max KPU ({})", app.max_kpu)));
//!         }
//!         flinkscale_plugin::log::info!("adding {step} KPU to {}", app.name);
//!         Ok(Decision::scale_to(app.kpu + step, format!("`{alarm}` is in ALARM: {} + {step}", app.kpu)))
//!     }
//! }
//!
//! export_policy!(PlusOne);
//!
//! // What the agent's `configure` would answer, natively:
//! let error = flinkscale_plugin::testing::configure::<PlusOne>(r#"{"alarm": "busy", "stpe": 2}"#)
//!     .err()
//!     .unwrap();
//! assert_eq!(error, "unknown parameter `stpe`; valid parameters: alarm, step (did you mean `step`?)");
//! let error = flinkscale_plugin::testing::configure::<PlusOne>(r#"{"alarm": "busy", "step": "two"}"#)
//!     .err()
//!     .unwrap();
//! assert_eq!(error, "parameter `step` must be a whole number from 0 to 4294967295, found the string \"two\"");
//! ```
//!
//! # The crate around it
//!
//! ```toml
//! [package]
//! name = "plus-one"          # the plugin's name in the agent's logs
//! version = "0.1.0"          # and its version
//! edition = "2024"
//!
//! [lib]
//! # cdylib: the component; rlib: lets `cargo test` run natively.
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! flinkscale-plugin = { path = "../sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the
//! `cdylib` that rustc links for that target is already a component, ready
//! for the agent's `plugin_dir`. [`PluginMetadata`] carries the name and
//! version from the plugin crate's `Cargo.toml` and the declarations from
//! the `impl`; `flinkscale plugin describe` prints them.
//!
//! # Parameters
//!
//! [`Policy::PARAMETERS`] is the one place a parameter is written down:
//! its kind, whether it is required, its default (as JSON) and its meaning.
//! The agent checks a configuration against it before `configure`, the
//! documentation is generated from it, and the SDK holds the plugin to it:
//! a key not declared is refused with a did-you-mean suggestion, and an
//! absent key with a declared default arrives holding that default. Read
//! the values with [`Params::parse`] into a `#[derive(Deserialize)]` struct
//! (or with the [`Params`] getters); errors name the key, what was
//! expected and what was found.
//!
//! # Testing
//!
//! Natively the component exports are left out, so a plugin's unit tests
//! call [`testing::configure`] (the agent's `configure`: parsing,
//! declarations, then [`Policy::configure`]) and [`Policy::decide`]
//! directly with plain values; host logging then goes to stderr.
//! [`testing::check_declarations`] checks the declarations themselves.
//!
//! # The sandbox
//!
//! A plugin has no clock (use [`Evaluation::now_ms`]), no filesystem, no
//! network and no environment variables: everything it may know arrives in
//! the arguments. Each call has a deadline and each instance a memory cap.
//! A plugin that traps (a panic included), overruns either limit, returns an
//! error or returns something invalid makes the agent hold and log the
//! failure with the plugin's name and version; the next call may go to a
//! fresh instance, which is configured again. State kept in `self` is
//! therefore a cache, never the only copy of anything that matters.
//!
//! Prefer returning `Err` to panicking: the message reaches the agent's log
//! as written, where a panic only leaves its text on the plugin's stderr.

#![warn(missing_docs)]

extern crate self as flinkscale_plugin;

mod declare;
mod evaluation;
mod export;
// Natively only its unit tests use the allocator.
#[cfg(feature = "size-class-allocator")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod heap;
pub mod log;
mod params;
pub mod testing;
pub mod usl;

pub use declare::{Parameter, ParameterKind};
pub use params::Params;
#[doc(no_inline)]
pub use serde_json::Value;

/// The generated bindings. Not part of the API: only the SDK's own
/// `Guest` impls and the export macros use them, through `$crate`.
#[doc(hidden)]
pub mod __bindings {
    /// The `scaling-policy` world; it also owns the shared `types` and `host`
    /// interfaces, which the interpreter world reuses so that both worlds
    /// speak the same Rust types.
    pub mod policy {
        wit_bindgen::generate!({
            path: "../../wit/v0.2.0",
            world: "scaling-policy",
            pub_export_macro: true,
            export_macro_name: "__export_scaling_policy",
            default_bindings_module: "::flinkscale_plugin::__bindings::policy",
            runtime_path: "::flinkscale_plugin::__wit_bindgen::rt",
            additional_derives: [PartialEq],
        });
    }

    /// The `metric-interpreter` world.
    pub mod interpreter {
        wit_bindgen::generate!({
            path: "../../wit/v0.2.0",
            world: "metric-interpreter",
            pub_export_macro: true,
            export_macro_name: "__export_metric_interpreter",
            default_bindings_module: "::flinkscale_plugin::__bindings::interpreter",
            runtime_path: "::flinkscale_plugin::__wit_bindgen::rt",
            with: {
                "flinkscale:plugin/types@0.2.0": crate::__bindings::policy::flinkscale::plugin::types,
                "flinkscale:plugin/host@0.2.0": crate::__bindings::policy::flinkscale::plugin::host,
            },
        });
    }
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The guest's allocator: a size class per power of two (see `heap.rs`),
/// cheaper than the standard allocator for the small blocks every call
/// hands over and frees. Off with the `size-class-allocator` feature.
#[cfg(all(feature = "size-class-allocator", target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: heap::SizeClassAllocator = heap::SizeClassAllocator::new();

pub use __bindings::policy::flinkscale::plugin::types::{
    Action, Alarm, AlarmState, AppStatus, Application, Datapoint, Decision, Evaluation,
    PluginMetadata, Series, Signal,
};

/// A scaling policy: decides, from an [`Evaluation`], whether to keep or
/// change an application's capacity.
///
/// The agent makes one instance per application. It calls
/// [`configure`](Policy::configure) once with the application's
/// `[application.policy] params`, then [`decide`](Policy::decide) at every
/// evaluation. Register the type with [`export_policy!`].
pub trait Policy: Sized + 'static {
    /// What the policy does, in one sentence; `flinkscale plugin describe`
    /// and the documentation show it.
    const SUMMARY: &'static str;

    /// Every key the policy accepts in `params`, in the order the
    /// documentation should list them; `&[]` for none. A key not declared
    /// here is refused before [`configure`](Policy::configure) runs, and an
    /// absent key with a declared default arrives holding it.
    const PARAMETERS: &'static [Parameter];

    /// Builds the policy from its parameters.
    ///
    /// Return an error naming the parameter and what would be valid when a
    /// parameter is wrong ([`Params::parse`] and the getters already do for
    /// types); the agent shows it and does not scale the application.
    fn configure(params: Params) -> Result<Self, String>;

    /// Decides what to do now.
    ///
    /// An error is logged and treated as [`Decision::hold`]; errors in a
    /// row put the plugin in quarantine. The agent clamps a
    /// [`Action::ScaleTo`] target to the application's [`min_kpu`,
    /// `max_kpu`], so a policy need not (one that clamps itself can say so
    /// in its reason), but `scale_to(0)` and an empty reason are contract
    /// violations, failed calls like an error: ask for at least 1 KPU.
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String>;
}

/// A metric interpreter: derives named signals (for example
/// `lag_growth_per_sec`) from an application's metric series, for the
/// application's policy to read with [`Evaluation::signal`].
///
/// Register the type with [`export_interpreter!`].
///
/// ```
/// use flinkscale_plugin::{export_interpreter, Application, Interpreter, Parameter, Params, Series, Signal};
///
/// /// Publishes each metric's latest value as a signal named after the metric.
/// struct Latest;
///
/// impl Interpreter for Latest {
///     const SUMMARY: &'static str = "Publishes each metric's latest value as a signal.";
///     const PARAMETERS: &'static [Parameter] = &[];
///
///     fn configure(_params: Params) -> Result<Self, String> {
///         Ok(Latest)
///     }
///
///     fn interpret(
///         &mut self,
///         _now_ms: i64,
///         _app: &Application,
///         metrics: &[Series],
///     ) -> Result<Vec<Signal>, String> {
///         Ok(metrics
///             .iter()
///             .filter_map(|series| Some(Signal::new(series.id.clone(), series.latest()?.value)))
///             .collect())
///     }
/// }
///
/// export_interpreter!(Latest);
/// ```
pub trait Interpreter: Sized + 'static {
    /// What the interpreter derives, in one sentence; see
    /// [`Policy::SUMMARY`].
    const SUMMARY: &'static str;

    /// Every key the interpreter accepts in `params`; see
    /// [`Policy::PARAMETERS`].
    const PARAMETERS: &'static [Parameter];

    /// Builds the interpreter from its parameters; see [`Policy::configure`].
    fn configure(params: Params) -> Result<Self, String>;

    /// Computes the signals for this evaluation. Signals whose value is NaN
    /// or infinite are dropped by the agent. An `Err` makes the evaluation
    /// hold without asking the policy, and counts toward the interpreter's
    /// quarantine; with not enough data yet, return no signals instead
    /// (they are then absent, and the policy is asked).
    fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String>;
}

/// Registers a [`Policy`] as the component's `scaling-policy` export.
///
/// Use it once, at the top level of the plugin crate, which must be a
/// `cdylib` built for `wasm32-wasip2`. The plugin's [`PluginMetadata`] is
/// the crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION` with the type's
/// declarations. Until `configure` has succeeded, `decide` answers with the
/// error `not configured`.
///
/// ```ignore
/// flinkscale_plugin::export_policy!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        $crate::__export!($ty, PolicyExport, policy, __export_scaling_policy);
    };
}

/// Registers an [`Interpreter`] as the component's `metric-interpreter`
/// export; see [`export_policy!`].
///
/// ```ignore
/// flinkscale_plugin::export_interpreter!(MyInterpreter);
/// ```
#[macro_export]
macro_rules! export_interpreter {
    ($ty:ty) => {
        $crate::__export!(
            $ty,
            InterpreterExport,
            interpreter,
            __export_metric_interpreter
        );
    };
}

/// What both export macros expand to: registers `$ty` (its crate's name and
/// version, and the SDK wrapper that exports it) and, in WebAssembly, hands
/// the wrapper to the world's generated export macro. The wrapper's `Guest`
/// impl is the SDK's own, written once (`export.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __export {
    ($ty:ty, $wrapper:ident, $world:ident, $wit_export:ident) => {
        const _: () = {
            impl $crate::__private::Registered for $ty {
                const NAME: &'static str = ::core::env!("CARGO_PKG_NAME");
                const VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");
                type Export = $crate::__private::$wrapper<$ty>;
            }

            // The component exports exist only in WebAssembly: their names
            // (`flinkscale:plugin/...#...`) are not valid native symbols, and
            // a plugin's native unit tests call the trait directly.
            #[cfg(target_arch = "wasm32")]
            type __FlinkscaleExport = $crate::__private::$wrapper<$ty>;
            #[cfg(target_arch = "wasm32")]
            $crate::__bindings::$world::$wit_export!(
                __FlinkscaleExport with_types_in $crate::__bindings::$world
            );

            // Natively nothing calls the exports; naming the configure path
            // keeps a plugin type that only the exports build from being
            // reported as dead code.
            #[cfg(not(target_arch = "wasm32"))]
            const _: fn(&str) -> ::core::result::Result<$ty, ::std::string::String> =
                $crate::__private::configure::<$ty>;
        };
    };
}

/// What the export macros expand to use. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        Component, InterpreterExport, NOT_CONFIGURED, PolicyExport, Registered, configure, metadata,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> Evaluation {
        Evaluation {
            now_ms: 0,
            app: testing::application(1, 1, 4),
            metrics: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
        }
    }

    #[test]
    fn evaluation_lookups_find_by_id() {
        let mut evaluation = evaluation();
        evaluation.alarms.push(Alarm {
            name: "scale-out".to_owned(),
            state: AlarmState::Alarm,
            since_ms: 5,
        });
        evaluation
            .signals
            .push(Signal::new("lag_growth_per_sec", 12.5));
        evaluation.metrics.push(Series {
            id: "cpu".to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: "containerCPUUtilization".to_owned(),
            statistic: "Average".to_owned(),
            period_secs: 60,
            points: vec![
                Datapoint {
                    timestamp_ms: 0,
                    value: 10.0,
                },
                Datapoint {
                    timestamp_ms: 60_000,
                    value: 90.0,
                },
            ],
        });
        assert!(evaluation.in_alarm("scale-out"));
        assert!(!evaluation.in_alarm("scale-in"));
        assert_eq!(evaluation.signal("lag_growth_per_sec"), Some(12.5));
        assert_eq!(
            evaluation
                .metric("cpu")
                .and_then(Series::latest)
                .map(|p| p.value),
            Some(90.0)
        );
        assert_eq!(
            evaluation.require_alarm("scale-in").unwrap_err(),
            "no alarm `scale-in` is configured for application `orders` (configured: scale-out)"
        );
    }

    #[test]
    fn decision_constructors_set_action_and_reason() {
        let decision = Decision::scale_to(4, "busy").next_evaluation_in(30);
        assert_eq!(decision.action.target(), Some(4));
        assert_eq!(decision.reason, "busy");
        assert_eq!(decision.next_evaluation_secs, Some(30));
        assert_eq!(Decision::hold("calm").action, Action::Hold);
    }
}
