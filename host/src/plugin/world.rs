//! The two worlds of the contract as the host sees them, whatever the
//! contract version: a trait per world ([`PolicyExports`],
//! [`InterpreterExports`]) that each version's bindings implement once,
//! and a marker type per world ([`PolicyWorld`], [`InterpreterWorld`]) that
//! a sandbox is generic over. A policy sandbox holds only policy exports,
//! so calling `interpret` on a policy cannot be written, rather than being
//! an error at run time.
//!
//! The records of the versions differ only in `plugin-metadata`, so the
//! conversions and the trait implementations are generated for each
//! bindings module by one macro, [`contract_bindings!`]; a version module
//! writes only its metadata conversion.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::sandbox::State;
use super::{Parameter, PluginKind};
use crate::metrics::Series;
use crate::model::{Application, Decision, Evaluation, Signal};

/// What a plugin's `metadata()` answered, converted but not yet checked
/// (see `params::check_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestMetadata {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Empty for contract 0.1.0.
    pub(crate) summary: String,
    /// `None` for contract 0.1.0.
    pub(crate) parameters: Option<Vec<Parameter>>,
}

/// The exports both worlds share. A call's outer `Err` is a trap (or
/// interruption); the inner one is the plugin's own error.
pub(crate) trait Exports: Send + Sync + 'static {
    /// Calls `metadata`.
    fn metadata(&self, store: &mut Store<State>) -> wasmtime::Result<GuestMetadata>;
    /// Calls `configure` with the application's params as JSON.
    fn configure(
        &self,
        store: &mut Store<State>,
        params_json: &str,
    ) -> wasmtime::Result<Result<(), String>>;
}

/// The exports of world `scaling-policy`.
pub(crate) trait PolicyExports: Exports {
    /// Calls `decide`.
    fn decide(
        &mut self,
        store: &mut Store<State>,
        evaluation: &Evaluation,
    ) -> wasmtime::Result<Result<Decision, String>>;
}

/// The exports of world `metric-interpreter`.
pub(crate) trait InterpreterExports: Exports {
    /// Calls `interpret`.
    fn interpret(
        &mut self,
        store: &mut Store<State>,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> wasmtime::Result<Result<Vec<Signal>, String>>;
}

/// A component linked with the bindings of its contract version, ready to
/// instantiate as world `W`.
pub(crate) trait Linked<W: World + ?Sized>: Send + Sync + 'static {
    /// Instantiates the component in `store`.
    fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Box<W::Exports>>;
}

/// One of the contract's worlds.
pub(crate) trait World: 'static {
    /// Which world this is.
    const KIND: PluginKind;
    /// The exports an instance of this world has.
    type Exports: Exports + ?Sized;
    /// Links `pre` with the bindings of `contract_version`; `None` when the
    /// host has no bindings for that version.
    fn link(
        contract_version: &str,
        pre: InstancePre<State>,
    ) -> Option<wasmtime::Result<Box<dyn Linked<Self>>>>;
}

/// World `scaling-policy`.
pub(crate) struct PolicyWorld;

/// World `metric-interpreter`.
pub(crate) struct InterpreterWorld;

impl World for PolicyWorld {
    const KIND: PluginKind = PluginKind::Policy;
    type Exports = dyn PolicyExports;

    fn link(
        contract_version: &str,
        pre: InstancePre<State>,
    ) -> Option<wasmtime::Result<Box<dyn Linked<Self>>>> {
        fn boxed<L: Linked<PolicyWorld>>(
            linked: wasmtime::Result<L>,
        ) -> wasmtime::Result<Box<dyn Linked<PolicyWorld>>> {
            linked.map(|l| Box::new(l) as Box<dyn Linked<PolicyWorld>>)
        }
        match contract_version {
            super::v0_1_0::VERSION => {
                Some(boxed(super::v0_1_0::policy::ScalingPolicyPre::new(pre)))
            }
            super::v0_2_0::VERSION => {
                Some(boxed(super::v0_2_0::policy::ScalingPolicyPre::new(pre)))
            }
            _ => None,
        }
    }
}

impl World for InterpreterWorld {
    const KIND: PluginKind = PluginKind::Interpreter;
    type Exports = dyn InterpreterExports;

    fn link(
        contract_version: &str,
        pre: InstancePre<State>,
    ) -> Option<wasmtime::Result<Box<dyn Linked<Self>>>> {
        fn boxed<L: Linked<InterpreterWorld>>(
            linked: wasmtime::Result<L>,
        ) -> wasmtime::Result<Box<dyn Linked<InterpreterWorld>>> {
            linked.map(|l| Box::new(l) as Box<dyn Linked<InterpreterWorld>>)
        }
        match contract_version {
            super::v0_1_0::VERSION => Some(boxed(
                super::v0_1_0::interpreter::MetricInterpreterPre::new(pre),
            )),
            super::v0_2_0::VERSION => Some(boxed(
                super::v0_2_0::interpreter::MetricInterpreterPre::new(pre),
            )),
            _ => None,
        }
    }
}

/// Generates, inside a contract version's module, the conversions between
/// the host's records and that version's generated ones, the host's `log`
/// import, and the world traits for its bindings. The module must have
/// the generated worlds as `policy` and `interpreter` (sharing their
/// interfaces), `wit` as its `types` interface, and a `fn
/// guest_metadata(wit::PluginMetadata) -> GuestMetadata`.
macro_rules! contract_bindings {
    () => {
        use $crate::metrics::Series;
        use $crate::model;
        use $crate::plugin::lower::Points;
        use $crate::plugin::sandbox::State;
        use $crate::plugin::world::{
            Exports, GuestMetadata, InterpreterExports, InterpreterWorld, Linked, PolicyExports,
            PolicyWorld,
        };
        use $crate::target::AppStatus;

        pub use policy::flinkscale::plugin::host::{Host, Level};
        pub use policy::flinkscale::plugin::types as wit;

        /// The guest's `evaluation` record as the host lowers it: the
        /// generated record's fields, in the WIT's order, with each
        /// series' points as [`Points`] (one block per list, see
        /// `plugin::lower`) instead of generated datapoints.
        #[derive(Debug, Clone, wasmtime::component::ComponentType, wasmtime::component::Lower)]
        #[component(record)]
        pub struct GuestEvaluation {
            #[component(name = "now-ms")]
            now_ms: i64,
            app: wit::Application,
            metrics: Vec<GuestSeries>,
            alarms: Vec<wit::Alarm>,
            signals: Vec<wit::Signal>,
        }

        /// The guest's `series` record as the host lowers it (see
        /// [`GuestEvaluation`]).
        #[derive(Debug, Clone, wasmtime::component::ComponentType, wasmtime::component::Lower)]
        #[component(record)]
        pub struct GuestSeries {
            id: String,
            namespace: String,
            #[component(name = "metric-name")]
            metric_name: String,
            statistic: String,
            #[component(name = "period-secs")]
            period_secs: u32,
            points: Points,
        }

        /// Converts the host's evaluation to the guest's.
        pub fn evaluation(e: &model::Evaluation) -> GuestEvaluation {
            let mut out = GuestEvaluation {
                now_ms: 0,
                app: application(&e.app),
                metrics: Vec::new(),
                alarms: Vec::new(),
                signals: Vec::new(),
            };
            fill_evaluation(e, &mut out);
            out
        }

        /// Overwrites `out` with the host's evaluation, reusing the
        /// strings' and lists' buffers of the previous call: a warm
        /// `decide` then allocates nothing on the host side.
        pub fn fill_evaluation(e: &model::Evaluation, out: &mut GuestEvaluation) {
            out.now_ms = e.now_ms;
            fill_application(&e.app, &mut out.app);
            fill_list(&mut out.metrics, &e.metrics, empty_series, fill_series);
            fill_list(&mut out.alarms, &e.alarms, empty_alarm, |a, out| {
                out.name.clone_from(&a.name);
                out.state = alarm(a).state;
                out.since_ms = a.since_ms;
            });
            fill_list(
                &mut out.signals,
                &e.signals,
                || wit::Signal {
                    name: String::new(),
                    value: 0.0,
                },
                |s, out| {
                    out.name.clone_from(&s.name);
                    out.value = s.value;
                },
            );
        }

        /// Makes `out` as long as `from` and fills each element in place.
        fn fill_list<T, U>(
            out: &mut Vec<U>,
            from: &[T],
            empty: impl Fn() -> U,
            fill: impl Fn(&T, &mut U),
        ) {
            out.truncate(from.len());
            while out.len() < from.len() {
                out.push(empty());
            }
            for (from, out) in from.iter().zip(out.iter_mut()) {
                fill(from, out);
            }
        }

        fn empty_series() -> GuestSeries {
            GuestSeries {
                id: String::new(),
                namespace: String::new(),
                metric_name: String::new(),
                statistic: String::new(),
                period_secs: 0,
                points: Points::default(),
            }
        }

        fn empty_alarm() -> wit::Alarm {
            wit::Alarm {
                name: String::new(),
                state: wit::AlarmState::Ok,
                since_ms: 0,
            }
        }

        fn fill_series(s: &Series, out: &mut GuestSeries) {
            out.id.clone_from(&s.query.id);
            out.namespace.clone_from(&s.query.namespace);
            out.metric_name.clone_from(&s.query.metric_name);
            out.statistic.clone_from(&s.query.statistic);
            out.period_secs = s.query.period_secs;
            out.points.fill(&s.points);
        }

        fn fill_application(a: &model::Application, out: &mut wit::Application) {
            let mut name = std::mem::take(&mut out.name);
            name.clone_from(&a.name);
            *out = application_named(a, name);
        }

        /// Converts the host's application record to the guest's.
        pub fn application(a: &model::Application) -> wit::Application {
            application_named(a, a.name.clone())
        }

        fn application_named(a: &model::Application, name: String) -> wit::Application {
            wit::Application {
                name,
                status: app_status(a.status),
                kpu: a.kpu,
                parallelism: a.parallelism,
                parallelism_per_kpu: a.parallelism_per_kpu,
                min_kpu: a.min_kpu,
                max_kpu: a.max_kpu,
                version_id: a.version_id,
                last_rescale_ms: a.last_rescale_ms,
                last_update_duration_secs: a.last_update_duration_secs,
            }
        }

        /// Converts one metric series to the guest's record, dropping NaN
        /// values (the contract promises the guest a value is never NaN).
        pub fn series(s: &Series) -> wit::Series {
            wit::Series {
                id: s.query.id.clone(),
                namespace: s.query.namespace.clone(),
                metric_name: s.query.metric_name.clone(),
                statistic: s.query.statistic.clone(),
                period_secs: s.query.period_secs,
                points: s
                    .points
                    .iter()
                    .filter(|p| !p.value.is_nan())
                    .map(|p| wit::Datapoint {
                        timestamp_ms: p.timestamp_ms,
                        value: p.value,
                    })
                    .collect(),
            }
        }

        fn alarm(a: &model::AlarmStatus) -> wit::Alarm {
            wit::Alarm {
                name: a.name.clone(),
                state: match a.state {
                    model::AlarmState::Ok => wit::AlarmState::Ok,
                    model::AlarmState::Alarm => wit::AlarmState::Alarm,
                    model::AlarmState::InsufficientData => wit::AlarmState::InsufficientData,
                },
                since_ms: a.since_ms,
            }
        }

        fn app_status(s: AppStatus) -> wit::AppStatus {
            match s {
                AppStatus::Ready => wit::AppStatus::Ready,
                AppStatus::Starting => wit::AppStatus::Starting,
                AppStatus::Running => wit::AppStatus::Running,
                AppStatus::Updating => wit::AppStatus::Updating,
                AppStatus::Autoscaling => wit::AppStatus::Autoscaling,
                AppStatus::Stopping => wit::AppStatus::Stopping,
                AppStatus::ForceStopping => wit::AppStatus::ForceStopping,
                AppStatus::RollingBack => wit::AppStatus::RollingBack,
                AppStatus::RolledBack => wit::AppStatus::RolledBack,
                AppStatus::Maintenance => wit::AppStatus::Maintenance,
                AppStatus::Deleting => wit::AppStatus::Deleting,
                AppStatus::Unknown => wit::AppStatus::Unknown,
            }
        }

        /// Converts the guest's decision to the host's (unvalidated: see
        /// [`crate::plugin::validate`]).
        pub fn decision(d: wit::Decision) -> model::Decision {
            model::Decision {
                action: match d.action {
                    wit::Action::Hold => model::Action::Hold,
                    wit::Action::ScaleTo(kpu) => model::Action::ScaleTo(kpu),
                },
                reason: d.reason,
                next_evaluation_secs: d.next_evaluation_secs,
            }
        }

        /// Converts the guest's signals as they are: NaN and infinities are
        /// dropped by the caller, as the contract says, which reports them
        /// (the controller's `SignalsDropped`).
        pub fn signals(s: Vec<wit::Signal>) -> Vec<model::Signal> {
            s.into_iter()
                .map(|s| model::Signal {
                    name: s.name,
                    value: s.value,
                })
                .collect()
        }

        impl Host for State {
            fn log(&mut self, level: Level, message: String) {
                let level = match level {
                    Level::Trace => tracing::Level::TRACE,
                    Level::Debug => tracing::Level::DEBUG,
                    Level::Info => tracing::Level::INFO,
                    Level::Warn => tracing::Level::WARN,
                    Level::Error => tracing::Level::ERROR,
                };
                self.log.line(
                    level,
                    $crate::plugin::sandbox::LOG_SOURCE,
                    message.as_bytes(),
                );
            }
        }

        // `metadata` and `configure` are the same in both worlds, under
        // each world's interface accessor.
        macro_rules! exports {
            ($bindings:ty, $interface:ident) => {
                impl Exports for $bindings {
                    fn metadata(
                        &self,
                        store: &mut wasmtime::Store<State>,
                    ) -> wasmtime::Result<GuestMetadata> {
                        self.$interface().call_metadata(store).map(guest_metadata)
                    }

                    fn configure(
                        &self,
                        store: &mut wasmtime::Store<State>,
                        params_json: &str,
                    ) -> wasmtime::Result<Result<(), String>> {
                        self.$interface().call_configure(store, params_json)
                    }
                }
            };
        }
        exports!(policy::ScalingPolicy, flinkscale_plugin_policy);
        exports!(
            interpreter::MetricInterpreter,
            flinkscale_plugin_interpreter
        );

        /// A policy instance's exports, with the guest's evaluation record
        /// kept from call to call so that its buffers are reused.
        pub(crate) struct Policy {
            bindings: policy::ScalingPolicy,
            /// The instance's `decide`, checked at instantiation against
            /// [`GuestEvaluation`] (see [`call_decide`]).
            decide: wasmtime::component::Func,
            evaluation: Option<GuestEvaluation>,
        }

        /// Calls `decide` with the host's record, as the generated
        /// `call_decide` does with the generated one.
        fn call_decide(
            decide: wasmtime::component::Func,
            store: &mut wasmtime::Store<State>,
            evaluation: &GuestEvaluation,
        ) -> wasmtime::Result<Result<wit::Decision, String>> {
            // SAFETY: `instantiate` checked `decide` against
            // these parameter and result types (`Func::typed`), as the
            // generated bindings check theirs before their own
            // `new_unchecked`.
            let callee = unsafe {
                wasmtime::component::TypedFunc::<
                    (&GuestEvaluation,),
                    (Result<wit::Decision, String>,),
                >::new_unchecked(decide)
            };
            let (answer,) = callee.call(store, (evaluation,))?;
            Ok(answer)
        }

        impl Exports for Policy {
            fn metadata(
                &self,
                store: &mut wasmtime::Store<State>,
            ) -> wasmtime::Result<GuestMetadata> {
                self.bindings.metadata(store)
            }

            fn configure(
                &self,
                store: &mut wasmtime::Store<State>,
                params_json: &str,
            ) -> wasmtime::Result<Result<(), String>> {
                self.bindings.configure(store, params_json)
            }
        }

        impl PolicyExports for Policy {
            fn decide(
                &mut self,
                store: &mut wasmtime::Store<State>,
                e: &model::Evaluation,
            ) -> wasmtime::Result<Result<model::Decision, String>> {
                let converted = match &mut self.evaluation {
                    Some(reused) => {
                        fill_evaluation(e, reused);
                        reused
                    }
                    slot @ None => slot.insert(evaluation(e)),
                };
                call_decide(self.decide, store, converted).map(|answer| answer.map(decision))
            }
        }

        impl Linked<PolicyWorld> for policy::ScalingPolicyPre<State> {
            fn instantiate(
                &self,
                store: &mut wasmtime::Store<State>,
            ) -> wasmtime::Result<Box<dyn PolicyExports>> {
                let instance = self.instance_pre().instantiate(&mut *store)?;
                let bindings = policy::ScalingPolicy::new(&mut *store, &instance)?;
                let Some(interface) = instance.get_export_index(&mut *store, None, POLICY_EXPORT)
                else {
                    wasmtime::bail!("the component exports no `{POLICY_EXPORT}`");
                };
                let Some(decide) =
                    instance.get_export_index(&mut *store, Some(&interface), "decide")
                else {
                    wasmtime::bail!("`{POLICY_EXPORT}` exports no `decide`");
                };
                let Some(decide) = instance.get_func(&mut *store, decide) else {
                    wasmtime::bail!("`{POLICY_EXPORT}`'s `decide` is not a function");
                };
                // The check `call_decide` relies on.
                decide.typed::<(&GuestEvaluation,), (Result<wit::Decision, String>,)>(&*store)?;
                Ok(Box::new(Policy {
                    bindings,
                    decide,
                    evaluation: None,
                }))
            }
        }

        impl InterpreterExports for interpreter::MetricInterpreter {
            fn interpret(
                &mut self,
                store: &mut wasmtime::Store<State>,
                now_ms: i64,
                app: &model::Application,
                metrics: &[Series],
            ) -> wasmtime::Result<Result<Vec<model::Signal>, String>> {
                let app = application(app);
                let metrics: Vec<_> = metrics.iter().map(series).collect();
                self.flinkscale_plugin_interpreter()
                    .call_interpret(store, now_ms, &app, &metrics)
                    .map(|answer| answer.map(signals))
            }
        }

        impl Linked<InterpreterWorld> for interpreter::MetricInterpreterPre<State> {
            fn instantiate(
                &self,
                store: &mut wasmtime::Store<State>,
            ) -> wasmtime::Result<Box<dyn InterpreterExports>> {
                interpreter::MetricInterpreterPre::instantiate(self, store)
                    .map(|b| Box::new(b) as Box<dyn InterpreterExports>)
            }
        }
    };
}

pub(crate) use contract_bindings;
