//! The Rust SDK for flinkscale plugins.
//!
//! A flinkscale plugin is a WebAssembly component that the agent loads into a
//! sandbox and asks, at every evaluation of an application, what to do. This
//! crate hides the component-model plumbing generated from the WIT contract
//! (`wit/v0.1.0/plugin.wit`): a plugin author writes one `impl` of [`Policy`]
//! (or [`Interpreter`]) and registers it with [`export_policy!`] (or
//! [`export_interpreter!`]).
//!
//! # A whole policy
//!
//! ```
//! use flinkscale_plugin::{export_policy, AlarmState, Decision, Evaluation, Params, Policy};
//!
//! /// Adds one KPU while the `busy` alarm fires.
//! struct PlusOne {
//!     alarm: String,
//! }
//!
//! impl Policy for PlusOne {
//!     fn configure(params: Params) -> Result<Self, String> {
//!         params.deny_unknown(&["alarm"])?;
//!         let alarm = params.get_str_or("alarm", "busy")?.to_owned();
//!         Ok(PlusOne { alarm })
//!     }
//!
//!     fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
//!         let alarm = evaluation.require_alarm(&self.alarm)?;
//!         let app = &evaluation.app;
//!         if alarm.state != AlarmState::Alarm {
//!             return Ok(Decision::hold(format!("`{}` is {}", self.alarm, alarm.state)));
//!         }
//!         if app.kpu >= app.max_kpu {
//!             return Ok(Decision::hold(format!("already at max KPU ({})", app.max_kpu)));
//!         }
//!         flinkscale_plugin::log::info!("adding one KPU to {}", app.name);
//!         Ok(Decision::scale_to(app.kpu + 1, format!("`{}` is in ALARM: {} + 1", self.alarm, app.kpu)))
//!     }
//! }
//!
//! export_policy!(PlusOne);
//! # fn main() {}
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
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the
//! `cdylib` that rustc links for that target is already a component, ready
//! for the agent's `plugin_dir`. [`PluginMetadata`] (name and version) comes
//! from the plugin crate's `Cargo.toml`.
//!
//! Natively the component exports are left out, so a plugin's unit tests
//! call [`Policy::configure`] and [`Policy::decide`] directly with plain
//! values; host logging then goes to stderr.
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

mod evaluation;
pub mod log;
mod params;
pub mod testing;
pub mod usl;

pub use params::Params;
#[doc(no_inline)]
pub use serde_json::Value;

/// The generated bindings. Not part of the API: only the export macros use
/// them, through `$crate`.
#[doc(hidden)]
pub mod __bindings {
    /// The `scaling-policy` world; it also owns the shared `types` and `host`
    /// interfaces, which the interpreter world reuses so that both worlds
    /// speak the same Rust types.
    pub mod policy {
        wit_bindgen::generate!({
            path: "../../wit/v0.1.0",
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
            path: "../../wit/v0.1.0",
            world: "metric-interpreter",
            pub_export_macro: true,
            export_macro_name: "__export_metric_interpreter",
            default_bindings_module: "::flinkscale_plugin::__bindings::interpreter",
            runtime_path: "::flinkscale_plugin::__wit_bindgen::rt",
            with: {
                "flinkscale:plugin/types@0.1.0": crate::__bindings::policy::flinkscale::plugin::types,
                "flinkscale:plugin/host@0.1.0": crate::__bindings::policy::flinkscale::plugin::host,
            },
        });
    }
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

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
    /// Builds the policy from its parameters.
    ///
    /// Return an error naming the parameter and what would be valid when a
    /// parameter is wrong (the [`Params`] getters already do); the agent
    /// shows it and does not scale the application. Refusing unknown
    /// parameters with [`Params::deny_unknown`] turns a typo into an error
    /// instead of a silently ignored setting.
    fn configure(params: Params) -> Result<Self, String>;

    /// Decides what to do now.
    ///
    /// An error is logged and treated as [`Decision::hold`]. The agent
    /// clamps a [`Action::ScaleTo`] target to the application's
    /// [`min_kpu`, `max_kpu`] and refuses 0, so a policy need not, but a
    /// policy that clamps itself can say so in its reason.
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String>;
}

/// A metric interpreter: derives named signals (for example
/// `lag_growth_per_sec`) from an application's metric series, for the
/// application's policy to read with [`Evaluation::signal`].
///
/// Register the type with [`export_interpreter!`].
///
/// ```
/// use flinkscale_plugin::{export_interpreter, Application, Interpreter, Params, Series, Signal};
///
/// /// Publishes each metric's latest value as a signal named after the metric.
/// struct Latest;
///
/// impl Interpreter for Latest {
///     fn configure(params: Params) -> Result<Self, String> {
///         params.deny_unknown(&[])?;
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
/// # fn main() {}
/// ```
pub trait Interpreter: Sized + 'static {
    /// Builds the interpreter from its parameters; see [`Policy::configure`].
    fn configure(params: Params) -> Result<Self, String>;

    /// Computes the signals for this evaluation. Signals whose value is NaN
    /// or infinite are dropped by the agent.
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
/// `cdylib` built for `wasm32-wasip2`. The plugin's
/// [`PluginMetadata`] is the crate's `CARGO_PKG_NAME` and
/// `CARGO_PKG_VERSION`. Until `configure` has succeeded, `decide` answers
/// with the error `not configured`.
///
/// ```ignore
/// flinkscale_plugin::export_policy!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __FLINKSCALE_INSTANCE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __FlinkscalePolicyExport;

            impl $crate::__bindings::policy::exports::flinkscale::plugin::policy::Guest
                for __FlinkscalePolicyExport
            {
                fn metadata() -> $crate::PluginMetadata {
                    $crate::__private::metadata(
                        ::core::env!("CARGO_PKG_NAME"),
                        ::core::env!("CARGO_PKG_VERSION"),
                    )
                }

                fn configure(
                    params_json: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::configure_policy::<$ty>(&__FLINKSCALE_INSTANCE, &params_json)
                }

                fn decide(
                    evaluation: $crate::Evaluation,
                ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                    $crate::__private::decide::<$ty>(&__FLINKSCALE_INSTANCE, &evaluation)
                }
            }

            // Natively nothing calls the exports; naming them keeps the
            // plugin's type from being reported as dead code.
            #[cfg(not(target_arch = "wasm32"))]
            const _: () = {
                let _ = <__FlinkscalePolicyExport as $crate::__bindings::policy::exports::flinkscale::plugin::policy::Guest>::metadata;
                let _ = <__FlinkscalePolicyExport as $crate::__bindings::policy::exports::flinkscale::plugin::policy::Guest>::configure;
                let _ = <__FlinkscalePolicyExport as $crate::__bindings::policy::exports::flinkscale::plugin::policy::Guest>::decide;
            };

            // The component exports exist only in WebAssembly: their names
            // (`flinkscale:plugin/...#...`) are not valid native symbols, and
            // a plugin's native unit tests call the trait directly.
            #[cfg(target_arch = "wasm32")]
            $crate::__bindings::policy::__export_scaling_policy!(
                __FlinkscalePolicyExport with_types_in $crate::__bindings::policy
            );
        };
    };
}

/// Registers an [`Interpreter`] as the component's `metric-interpreter`
/// export; see [`export_policy!`], which it mirrors.
///
/// ```ignore
/// flinkscale_plugin::export_interpreter!(MyInterpreter);
/// ```
#[macro_export]
macro_rules! export_interpreter {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __FLINKSCALE_INSTANCE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __FlinkscaleInterpreterExport;

            impl $crate::__bindings::interpreter::exports::flinkscale::plugin::interpreter::Guest
                for __FlinkscaleInterpreterExport
            {
                fn metadata() -> $crate::PluginMetadata {
                    $crate::__private::metadata(
                        ::core::env!("CARGO_PKG_NAME"),
                        ::core::env!("CARGO_PKG_VERSION"),
                    )
                }

                fn configure(
                    params_json: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::configure_interpreter::<$ty>(
                        &__FLINKSCALE_INSTANCE,
                        &params_json,
                    )
                }

                fn interpret(
                    now_ms: i64,
                    app: $crate::Application,
                    metrics: ::std::vec::Vec<$crate::Series>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Signal>, ::std::string::String>
                {
                    $crate::__private::interpret::<$ty>(
                        &__FLINKSCALE_INSTANCE,
                        now_ms,
                        &app,
                        &metrics,
                    )
                }
            }

            // Natively nothing calls the exports; naming them keeps the
            // plugin's type from being reported as dead code.
            #[cfg(not(target_arch = "wasm32"))]
            const _: () = {
                let _ = <__FlinkscaleInterpreterExport as $crate::__bindings::interpreter::exports::flinkscale::plugin::interpreter::Guest>::metadata;
                let _ = <__FlinkscaleInterpreterExport as $crate::__bindings::interpreter::exports::flinkscale::plugin::interpreter::Guest>::configure;
                let _ = <__FlinkscaleInterpreterExport as $crate::__bindings::interpreter::exports::flinkscale::plugin::interpreter::Guest>::interpret;
            };

            // The component exports exist only in WebAssembly: their names
            // (`flinkscale:plugin/...#...`) are not valid native symbols, and
            // a plugin's native unit tests call the trait directly.
            #[cfg(target_arch = "wasm32")]
            $crate::__bindings::interpreter::__export_metric_interpreter!(
                __FlinkscaleInterpreterExport with_types_in $crate::__bindings::interpreter
            );
        };
    };
}

/// What the export macros expand to call. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{
        Application, Decision, Evaluation, Interpreter, Params, PluginMetadata, Policy, Series,
        Signal,
    };

    /// The error `decide` and `interpret` answer before a successful
    /// `configure`.
    pub const NOT_CONFIGURED: &str = "not configured";

    pub fn metadata(name: &str, version: &str) -> PluginMetadata {
        PluginMetadata {
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    pub fn configure_policy<P: Policy>(
        slot: &'static LocalKey<RefCell<Option<P>>>,
        params_json: &str,
    ) -> Result<(), String> {
        // A failed reconfiguration must not leave the previous instance
        // answering as if the new parameters had been accepted.
        slot.with(|cell| cell.replace(None));
        let policy = P::configure(Params::from_json(params_json)?)?;
        slot.with(|cell| cell.replace(Some(policy)));
        Ok(())
    }

    pub fn decide<P: Policy>(
        slot: &'static LocalKey<RefCell<Option<P>>>,
        evaluation: &Evaluation,
    ) -> Result<Decision, String> {
        slot.with(|cell| match cell.borrow_mut().as_mut() {
            Some(policy) => policy.decide(evaluation),
            None => Err(NOT_CONFIGURED.to_owned()),
        })
    }

    pub fn configure_interpreter<I: Interpreter>(
        slot: &'static LocalKey<RefCell<Option<I>>>,
        params_json: &str,
    ) -> Result<(), String> {
        slot.with(|cell| cell.replace(None));
        let interpreter = I::configure(Params::from_json(params_json)?)?;
        slot.with(|cell| cell.replace(Some(interpreter)));
        Ok(())
    }

    pub fn interpret<I: Interpreter>(
        slot: &'static LocalKey<RefCell<Option<I>>>,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String> {
        slot.with(|cell| match cell.borrow_mut().as_mut() {
            Some(interpreter) => interpreter.interpret(now_ms, app, metrics),
            None => Err(NOT_CONFIGURED.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::__private::{NOT_CONFIGURED, configure_policy, decide};
    use super::*;

    /// Holds with its `tag` parameter as the reason.
    struct Echo {
        tag: String,
    }

    impl Policy for Echo {
        fn configure(params: Params) -> Result<Self, String> {
            params.deny_unknown(&["tag"])?;
            Ok(Echo {
                tag: params.get_str("tag")?.to_owned(),
            })
        }

        fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
            Ok(Decision::hold(self.tag.clone()))
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Echo>> = const { RefCell::new(None) };
    }

    fn evaluation() -> Evaluation {
        Evaluation {
            now_ms: 0,
            app: Application {
                name: "orders".to_owned(),
                status: AppStatus::Running,
                kpu: 1,
                parallelism: 1,
                parallelism_per_kpu: 1,
                min_kpu: 1,
                max_kpu: 4,
                version_id: 1,
                last_rescale_ms: None,
                last_update_duration_secs: None,
            },
            metrics: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
        }
    }

    #[test]
    fn decide_before_configure_is_an_error() {
        SLOT.with(|cell| cell.replace(None));
        assert_eq!(decide(&SLOT, &evaluation()), Err(NOT_CONFIGURED.to_owned()));
    }

    #[test]
    fn configured_policy_answers_and_a_failed_reconfigure_unconfigures_it() {
        configure_policy(&SLOT, r#"{"tag": "first"}"#).expect("valid parameters");
        assert_eq!(
            decide(&SLOT, &evaluation()).map(|d| d.reason),
            Ok("first".to_owned())
        );

        assert_eq!(
            configure_policy(&SLOT, r#"{"tga": "second"}"#),
            Err("unknown parameter `tga`; valid parameters: tag (did you mean `tag`?)".to_owned())
        );
        assert_eq!(decide(&SLOT, &evaluation()), Err(NOT_CONFIGURED.to_owned()));
    }

    #[test]
    fn parameters_that_are_not_an_object_fail_configure() {
        assert!(configure_policy(&SLOT, "[]").is_err());
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
