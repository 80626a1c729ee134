//! The component's exports: the one implementation of each world's
//! generated `Guest` trait, generic over the plugin's type, and the slot
//! that holds the configured instance between calls.
//!
//! As in Zed's extension API, the SDK implements the generated trait once,
//! for its own wrapper type ([`PolicyExport`], [`InterpreterExport`]); the
//! plugin's export macro only registers the plugin's type (an impl of
//! [`Registered`] naming its crate and wrapper, and the wit-bindgen export
//! of that wrapper). Everything the two worlds share (metadata, configure,
//! the instance slot) is written once, over [`Component`].

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::__bindings::interpreter::exports::flinkscale::plugin::interpreter;
use crate::__bindings::policy::exports::flinkscale::plugin::policy;
use crate::__bindings::policy::flinkscale::plugin::types::Parameter as WitParameter;
use crate::{
    Application, Decision, Evaluation, Interpreter, Parameter, Params, PluginMetadata, Policy,
    Series, Signal,
};

/// The error `decide` and `interpret` answer before a successful
/// `configure`.
pub const NOT_CONFIGURED: &str = "not configured";

/// A plugin type registered by [`export_policy!`](crate::export_policy) or
/// [`export_interpreter!`](crate::export_interpreter): its crate's name and
/// version, and the wrapper that exports it. Implemented by the macros
/// only.
pub trait Registered: Sized + 'static {
    /// The plugin crate's `CARGO_PKG_NAME`.
    const NAME: &'static str;
    /// The plugin crate's `CARGO_PKG_VERSION`.
    const VERSION: &'static str;
    /// The wrapper whose `Guest` impl exports this type.
    type Export: Component<Instance = Self>;
}

/// What the two worlds have in common: declarations and `configure`. The
/// wrappers forward it from [`Policy`] and [`Interpreter`].
pub trait Component {
    /// The plugin's type.
    type Instance: 'static;
    /// See [`Policy::SUMMARY`].
    const SUMMARY: &'static str;
    /// See [`Policy::PARAMETERS`].
    const PARAMETERS: &'static [Parameter];
    /// See [`Policy::configure`].
    fn configure(params: Params) -> Result<Self::Instance, String>;
}

/// Exports a [`Policy`] as the `scaling-policy` world.
pub struct PolicyExport<P>(PhantomData<P>);

/// Exports an [`Interpreter`] as the `metric-interpreter` world.
pub struct InterpreterExport<I>(PhantomData<I>);

impl<P: Policy> Component for PolicyExport<P> {
    type Instance = P;
    const SUMMARY: &'static str = P::SUMMARY;
    const PARAMETERS: &'static [Parameter] = P::PARAMETERS;

    fn configure(params: Params) -> Result<P, String> {
        P::configure(params)
    }
}

impl<I: Interpreter> Component for InterpreterExport<I> {
    type Instance = I;
    const SUMMARY: &'static str = I::SUMMARY;
    const PARAMETERS: &'static [Parameter] = I::PARAMETERS;

    fn configure(params: Params) -> Result<I, String> {
        I::configure(params)
    }
}

std::thread_local! {
    /// The configured instance. A component exports one world for one
    /// type, so one slot serves both; it holds `dyn Any` only because a
    /// generic impl cannot own a static of its type parameter.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The plugin's metadata, from its crate and its declarations.
pub fn metadata<T: Registered>() -> PluginMetadata {
    PluginMetadata {
        name: T::NAME.to_owned(),
        version: T::VERSION.to_owned(),
        summary: <T::Export as Component>::SUMMARY.to_owned(),
        parameters: <T::Export as Component>::PARAMETERS
            .iter()
            .map(|parameter| WitParameter {
                name: parameter.name.to_owned(),
                kind: parameter.kind,
                required: parameter.required,
                default_json: parameter.default_json.map(str::to_owned),
                meaning: parameter.meaning.to_owned(),
            })
            .collect(),
    }
}

/// A new instance from the `params` JSON, as the agent's `configure` makes
/// it: the text must be a JSON object, undeclared keys are refused, absent
/// keys take their declared default, then the plugin's own `configure`.
pub fn configure<T: Registered>(params_json: &str) -> Result<T, String> {
    let params = Params::from_json(params_json)?.declare(<T::Export as Component>::PARAMETERS)?;
    <T::Export as Component>::configure(params)
}

/// Configures the instance in the slot. A failed reconfiguration empties
/// it, so that the previous instance cannot answer as if the new
/// parameters had been accepted.
fn install<T: Registered>(params_json: &str) -> Result<(), String> {
    INSTANCE.with(|slot| slot.replace(None));
    let instance = configure::<T>(params_json)?;
    INSTANCE.with(|slot| slot.replace(Some(Box::new(instance))));
    Ok(())
}

/// Calls `f` with the configured instance, or answers [`NOT_CONFIGURED`].
fn with_instance<T: 'static, R>(f: impl FnOnce(&mut T) -> Result<R, String>) -> Result<R, String> {
    INSTANCE.with(|slot| {
        match slot
            .borrow_mut()
            .as_mut()
            .and_then(|instance| instance.downcast_mut::<T>())
        {
            Some(instance) => f(instance),
            None => Err(NOT_CONFIGURED.to_owned()),
        }
    })
}

impl<P: Policy + Registered> policy::Guest for PolicyExport<P> {
    fn metadata() -> PluginMetadata {
        metadata::<P>()
    }

    fn configure(params_json: String) -> Result<(), String> {
        install::<P>(&params_json)
    }

    fn decide(evaluation: Evaluation) -> Result<Decision, String> {
        with_instance(|policy: &mut P| policy.decide(&evaluation))
    }
}

impl<I: Interpreter + Registered> interpreter::Guest for InterpreterExport<I> {
    fn metadata() -> PluginMetadata {
        metadata::<I>()
    }

    fn configure(params_json: String) -> Result<(), String> {
        install::<I>(&params_json)
    }

    fn interpret(
        now_ms: i64,
        app: Application,
        metrics: Vec<Series>,
    ) -> Result<Vec<Signal>, String> {
        with_instance(|interpreter: &mut I| interpreter.interpret(now_ms, &app, &metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, ParameterKind};

    /// Holds with its `tag` parameter as the reason.
    struct Echo {
        tag: String,
    }

    impl Policy for Echo {
        const SUMMARY: &'static str = "Holds, giving its tag as the reason.";
        const PARAMETERS: &'static [Parameter] = &[
            Parameter::text("tag")
                .required()
                .meaning("The reason to give."),
            Parameter::integer("times")
                .default("1")
                .meaning("Unused; declared to show defaults."),
        ];

        fn configure(params: Params) -> Result<Self, String> {
            Ok(Echo {
                tag: params.get_str("tag")?.to_owned(),
            })
        }

        fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
            Ok(Decision::hold(self.tag.clone()))
        }
    }

    crate::export_policy!(Echo);

    /// The component's exports, as the agent calls them.
    struct Exported;

    impl Exported {
        fn metadata() -> PluginMetadata {
            <PolicyExport<Echo> as policy::Guest>::metadata()
        }

        fn configure(params_json: String) -> Result<(), String> {
            <PolicyExport<Echo> as policy::Guest>::configure(params_json)
        }

        fn decide(evaluation: Evaluation) -> Result<Decision, String> {
            <PolicyExport<Echo> as policy::Guest>::decide(evaluation)
        }
    }

    fn evaluation() -> Evaluation {
        Evaluation {
            now_ms: 0,
            app: crate::testing::application(1, 1, 4),
            metrics: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
        }
    }

    #[test]
    fn decide_before_configure_is_an_error() {
        INSTANCE.with(|slot| slot.replace(None));
        assert_eq!(
            Exported::decide(evaluation()),
            Err(NOT_CONFIGURED.to_owned())
        );
    }

    #[test]
    fn configured_policy_answers_and_a_failed_reconfigure_unconfigures_it() {
        Exported::configure(r#"{"tag": "first"}"#.to_owned()).expect("valid parameters");
        let decision = Exported::decide(evaluation()).expect("configured");
        assert_eq!(
            (decision.action, decision.reason.as_str()),
            (Action::Hold, "first")
        );

        assert_eq!(
            Exported::configure(r#"{"tga": "second"}"#.to_owned()),
            Err(
                "unknown parameter `tga`; valid parameters: tag, times (did you mean `tag`?)"
                    .to_owned()
            )
        );
        assert_eq!(
            Exported::decide(evaluation()),
            Err(NOT_CONFIGURED.to_owned())
        );
    }

    #[test]
    fn parameters_that_are_not_an_object_fail_configure() {
        assert_eq!(
            Exported::configure("[]".to_owned()),
            Err("parameters must be a table (a JSON object), found an array".to_owned())
        );
    }

    #[test]
    fn metadata_carries_the_crate_and_the_declarations() {
        let metadata = Exported::metadata();
        assert_eq!(metadata.name, "flinkscale-plugin");
        assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(metadata.summary, "Holds, giving its tag as the reason.");
        let tag = &metadata.parameters[0];
        assert_eq!(
            (
                tag.name.as_str(),
                tag.kind,
                tag.required,
                tag.default_json.as_deref()
            ),
            ("tag", ParameterKind::Text, true, None)
        );
        assert_eq!(tag.meaning, "The reason to give.");
        let times = &metadata.parameters[1];
        assert_eq!(
            (
                times.name.as_str(),
                times.kind,
                times.required,
                times.default_json.as_deref()
            ),
            ("times", ParameterKind::Integer, false, Some("1"))
        );
    }

    #[test]
    fn configure_fills_declared_defaults_and_keeps_given_values() {
        struct Seen(Params);
        impl Policy for Seen {
            const SUMMARY: &'static str = "Keeps its parameters.";
            const PARAMETERS: &'static [Parameter] = Echo::PARAMETERS;
            fn configure(params: Params) -> Result<Self, String> {
                Ok(Seen(params))
            }
            fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
                Ok(Decision::hold(""))
            }
        }
        crate::export_policy!(Seen);

        let Seen(params) = configure::<Seen>(r#"{"tag": "x"}"#).expect("valid");
        assert_eq!(params.get_u32("times"), Ok(1));
        let Seen(params) = configure::<Seen>(r#"{"tag": "x", "times": 3}"#).expect("valid");
        assert_eq!(params.get_u32("times"), Ok(3));
    }

    #[test]
    fn an_invalid_declared_default_is_an_error_not_a_trap() {
        struct Broken;
        impl Policy for Broken {
            const SUMMARY: &'static str = "Declares a default that is not JSON.";
            const PARAMETERS: &'static [Parameter] = &[Parameter::text("mode").default("multiply")];
            fn configure(_params: Params) -> Result<Self, String> {
                Ok(Broken)
            }
            fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
                Ok(Decision::hold(""))
            }
        }
        crate::export_policy!(Broken);

        let error = configure::<Broken>("{}").err().expect("refused");
        assert!(
            error.starts_with(
                "the plugin declares parameter `mode` with the default multiply, which is not JSON"
            ),
            "{error}"
        );
        assert!(error.ends_with("this is a bug in the plugin"), "{error}");
    }
}
