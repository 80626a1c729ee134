//! Assembles an agent from a validated configuration: the plugin host, one
//! policy instance (and its interpreters) per application, the metric source
//! and the scaling target, and one [`Controller`] per application.
//!
//! Production wires CloudWatch (batched across applications) and MSF, or,
//! for a `target = "flink"` application, its job's REST API as target and
//! for its `source = "flink"` metrics, and gives each controller its
//! journal in the state folder; the simulator
//! and tests wire their own source and target into the same
//! [`Agent::assemble`] (without a journal: a simulated run has nothing to
//! resume), so that they run exactly the production controller.
//!
//! The AWS side (one SDK configuration per agent, and the CloudWatch, MSF
//! and alarm clients made from it) is loaded only when the first
//! application that calls AWS is assembled, at start or by a reload that
//! adds one: an agent of Flink jobs only never runs the SDK's region and
//! credentials chain, whose instance metadata lookups wait for timeouts
//! (and log warnings) on a machine off EC2.
//!
//! [`Agent::run_reloading`] also applies reloaded configurations (the
//! `run` command sends one on SIGHUP): each application's controller is its
//! own task with its own stop signal, so an application added, removed or
//! changed starts, stops or restarts (resuming from its journal) while the
//! others keep running untouched. A changed application's plugins are
//! loaded before its running controller is stopped, off the runtime: one
//! that does not load leaves it running as it was. Every reload also lifts
//! the KPU limits (a Flink cluster's free slots) the controllers recorded:
//! an operator who raised the application's KPU quota, or added TaskManagers,
//! says so with `systemctl reload` rather than waiting out the hour; it
//! lifts a size held after AWS refused it as invalid (the operator fixed
//! the application), and one whose update was rolled back when the reload
//! changed that application's settings; and, when the reload names it
//! (`flinkscale reload --resume`), it ends the stand-down of a controller
//! that found another writer fighting it (`crate::controller::fight`): the
//! operator stopped it.
//!
//! An application whose `mode` is `"paused"` gets no controller at all
//! (no plugin loaded, no AWS call), only a placeholder task that waits to
//! be stopped: a reload that changes its mode replaces the placeholder
//! with a controller, or the controller with a placeholder, like any other
//! change of its settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::load::{LoadedConfig, PluginSources};
use crate::config::validate::{FieldPath, Problem};
use crate::config::{ApplicationConfig, Mode};
use crate::controller::{
    ActOutcome, Assessment, Controller, Decide, EvaluateError, Interpret, PluginFailure,
    PluginThreads, QuarantinePolicy, QuarantinedPlugins, Stopped,
};
use crate::metrics::MetricSource;
use crate::metrics::Series;
use crate::metrics::alarm_batch::BatchingAlarms;
use crate::metrics::alarms::{AlarmStates, CloudWatchAlarms};
use crate::metrics::batch::BatchingSource;
use crate::metrics::cloudwatch::CloudWatchSource;
use crate::metrics::flink::FlinkMetricSource;
use crate::model::{Application, Decision, Evaluation, Signal};
use crate::plugin::reload::Labelled;
use crate::plugin::{
    ConfigPlace, ConfigPlaces, InterpreterInstance, PluginError, PluginHost, PluginIdentity,
    PluginMetadata, PluginSource, PolicyInstance, Refresh, Reloading,
};
use crate::state::{Journal, StateError, StateStore};
use crate::target::flink::FlinkTarget;
use crate::target::msf::MsfTarget;
use crate::target::{ScalingTarget, Words};
use crate::telemetry::Events;

/// Why an agent could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The plugin host (wasmtime engine) could not start.
    /// (The plugin errors are in the message and not sources: an error
    /// chain, as `error: {:#}` prints it, would repeat them.)
    #[error("cannot start the plugin host: {0}")]
    Host(PluginError),
    /// A plugin could not be loaded or configured.
    #[error("application {application:?}: {error}")]
    Plugin {
        /// The application whose plugin failed.
        application: String,
        /// Which of its plugins: `None` for its policy, `Some(k)` for its
        /// `k`-th interpreter (as configured).
        interpreter: Option<usize>,
        /// Why.
        error: PluginError,
    },
    /// An application's target could not be built from its configuration.
    #[error("application {application:?}: {message}")]
    Target {
        /// The application.
        application: String,
        /// Why.
        message: String,
    },
    /// The assembly stopped without an answer (it panicked or was
    /// cancelled).
    #[error("the agent's assembly stopped: {0}")]
    Assembly(String),
    /// The state folder or a journal could not be opened.
    #[error("cannot open the agent's state: {0}")]
    State(#[source] StateError),
    /// Applications call AWS, and the SDK's chain found no region: no
    /// call could be sent (each would fail as "Missing Region", retried
    /// for ever).
    #[error(
        "no AWS region for {}: {}",
        application_list(.applications),
        crate::aws::region_sources("[agent]")
    )]
    NoRegion {
        /// The applications that call AWS, in configuration order.
        applications: Vec<String>,
    },
}

/// `application "a"` or `applications "a", "b"`.
fn application_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let noun = if names.len() == 1 {
        "application"
    } else {
        "applications"
    };
    format!("{noun} {}", quoted.join(", "))
}

impl AgentError {
    /// Whether a plugin the configuration names will not load or refuses
    /// its params ([`PluginError::is_configuration`]): the configuration
    /// is at fault, and starting again as it is fails the same way.
    pub fn is_plugin_configuration(&self) -> bool {
        matches!(self, AgentError::Plugin { error, .. } if error.is_configuration())
    }
}

/// The controllers of every configured application, and what it takes to
/// build more when the configuration is reloaded.
pub struct Agent {
    /// The controllers of the applications that are not paused.
    controllers: Vec<Controller>,
    /// The applications whose `mode` is `"paused"`, in configuration order.
    paused: Vec<String>,
    /// Where each controller's plugins are in the configuration file.
    places: BTreeMap<String, ConfigPlaces>,
    parts: Parts,
}

/// Where an application's metrics come from and what it scales.
type SourceAndTarget = (Arc<dyn MetricSource>, Arc<dyn ScalingTarget>);

/// What every controller of an agent shares.
#[derive(Clone)]
struct Parts {
    // The engine outlives every instance made from it.
    host: Arc<PluginHost>,
    source: Arc<dyn MetricSource>,
    target: Arc<dyn ScalingTarget>,
    clock: Clock,
    events: Events,
    state: Option<StateStore>,
    dry_run: bool,
    quarantine: QuarantinePolicy,
    threads: Option<PluginThreads>,
    /// Where `source = "cloudwatch"` alarms are read (production only).
    alarm_states: Option<Arc<dyn AlarmStates>>,
    /// The configuration in force.
    loaded: LoadedConfig,
    /// The `[agent]` section the agent started with, which stays in force
    /// (a reload applies it at the next restart), as `{:#?}` writes it.
    started_agent: String,
    /// The AWS clients `source`, `target` and `alarm_states` stand for,
    /// when they are loaded on first need ([`Agent::on_aws`]): a reload
    /// that adds an application calling AWS loads them before assembling
    /// it.
    aws: Option<LazyAws>,
    /// Whether a `target = "flink"` application gets its own target and
    /// source from its configuration (production), rather than the ones
    /// given (the simulator's and tests', which stand in for every target).
    flink_from_config: bool,
    /// Bumped by every configuration reload: each controller then lifts
    /// its recorded KPU limit, and ends its stand-down if `resumes` names
    /// it (see [`Controller::with_ceiling_lifts`]).
    ceiling_lifts: Arc<watch::Sender<u64>>,
    /// The applications reloads asked to resume (`flinkscale reload
    /// --resume`) whose controllers have not taken the request yet: a
    /// controller's stand-down ends only then.
    resumes: crate::controller::fight::Resumes,
}

impl Parts {
    /// The controller of `app` (with `paths`), its plugins loaded, without
    /// its journal yet. Blocking: it compiles and configures plugins.
    fn controller(
        &self,
        app: &ApplicationConfig,
        paths: &PluginSources,
        places: &ConfigPlaces,
    ) -> Result<Controller, AgentError> {
        let plugin_error = |interpreter: Option<usize>| {
            move |error| AgentError::Plugin {
                application: app.name.clone(),
                interpreter,
                error,
            }
        };
        // What the plugins log reads in the application's unit.
        let words = Words::from(app.target);
        let policy = Reloading::policy_in(
            self.host.clone(),
            paths.policy.clone(),
            crate::config::load::params_json(&app.policy.params),
            app.name.clone(),
            words,
            references_checked(app.policy.clone(), app.clone(), PolicyInstance::metadata),
        )
        .map_err(plugin_error(None))?;
        let policy = policy
            .prefer(self.named_files(&app.policy.plugin, &paths.policy))
            .overriding(overridden(&app.policy.plugin, &paths.policy))
            .placed(places.clone(), 0)
            .in_background();
        let mut interpreters: Vec<Box<dyn Interpret>> = Vec::new();
        for (k, (config, path)) in app.interpreters.iter().zip(&paths.interpreters).enumerate() {
            let instance = Reloading::interpreter_in(
                self.host.clone(),
                path.clone(),
                crate::config::load::params_json(&config.params),
                app.name.clone(),
                words,
                references_checked(config.clone(), app.clone(), InterpreterInstance::metadata),
            )
            .map_err(plugin_error(Some(k)))?;
            let instance = instance
                .prefer(self.named_files(&config.plugin, path))
                .overriding(overridden(&config.plugin, path))
                .placed(places.clone(), 1 + k)
                .in_background();
            interpreters.push(Box::new(PluginInterpreter(instance)));
        }
        let (source, target) = self.source_and_target(app)?;
        let mut controller = Controller::new(
            app,
            self.dry_run,
            source,
            target,
            Box::new(PluginPolicy(policy)),
            interpreters,
            self.clock,
            self.events.clone(),
        )
        .with_quarantine(self.quarantine)
        .with_ceiling_lifts(self.ceiling_lifts.subscribe())
        .with_resumes(self.resumes.clone());
        if let Some(threads) = self.threads {
            controller = controller.with_plugin_threads(threads);
        }
        if let Some(states) = &self.alarm_states {
            controller = controller.with_alarm_states(states.clone());
        }
        Ok(controller)
    }

    /// Where `app` reads its metrics and what it scales: the agent's own
    /// source and target, except for a `target = "flink"` application of
    /// an agent that builds its targets from the configuration, which
    /// scales its job over the cluster's REST API and reads its
    /// `source = "flink"` metrics there (the others from the agent's
    /// source).
    fn source_and_target(&self, app: &ApplicationConfig) -> Result<SourceAndTarget, AgentError> {
        let flink = self.flink_from_config.then(|| app.flink()).flatten();
        let Some((rest_url, job)) = flink else {
            return Ok((self.source.clone(), self.target.clone()));
        };
        let refused = |error: crate::target::TargetError| AgentError::Target {
            application: app.name.clone(),
            message: error.to_string(),
        };
        let target = FlinkTarget::for_job(&rest_url, job.clone()).map_err(refused)?;
        let source =
            FlinkMetricSource::new(&rest_url, job, self.source.clone()).map_err(refused)?;
        Ok((Arc::new(source), Arc::new(target)))
    }

    /// The files a plugin given by name is dropped in as, best first
    /// (`<plugin_dir>/<name>.wasm`, then Cargo's `_` spelling, as
    /// [`crate::config::load::resolve_plugin`] ranks them at start): one
    /// ranked above what the name resolved to replaces it when it appears.
    /// `resolved` itself for a plugin given by path; none for a name when
    /// no folder is followed ([`crate::config::load::LoadedConfig::drop_in_dir`]).
    fn named_files(&self, plugin: &str, resolved: &PluginSource) -> Vec<std::path::PathBuf> {
        match (resolved.file(), self.loaded.drop_in_dir()) {
            (Some(file), _) if crate::config::load::is_plugin_path(plugin) => {
                vec![file.to_path_buf()]
            }
            (_, Some(dir)) => crate::config::load::plugin_files(plugin, dir),
            (_, None) => Vec::new(),
        }
    }

    /// Gives `controller` its application's journal (locked against other
    /// agents) when the agent keeps state and acts: `kept`, the journal a
    /// reload took from the controller it replaces, still locked, or else
    /// the journal opened and locked now. A `kept` journal that is not
    /// wanted (the application now runs dry) is dropped, its lock with it.
    fn journaled(
        &self,
        controller: Controller,
        kept: Option<Journal>,
    ) -> Result<Controller, AgentError> {
        let dry_run = self.dry_run || controller.settings().dry_run;
        let Some(store) = self.state.as_ref().filter(|_| !dry_run) else {
            return Ok(controller);
        };
        let name = &controller.settings().name;
        let kept = kept.filter(|journal| journal.is_of(store.dir(), name));
        let mut journal = match kept {
            Some(journal) => journal,
            None => store.journal(name).map_err(AgentError::State)?,
        };
        let loaded = journal.load();
        // A journal only a newer agent can read is neither misread nor
        // replaced: the operator upgrades or removes it.
        if let Err(error @ StateError::Newer { .. }) = loaded {
            return Err(AgentError::State(error));
        }
        Ok(controller.with_journal(journal, loaded))
    }
}

/// The built-in a plugin given by name overrides when the name resolved
/// to a file in `plugin_dir`: it runs again if that file is deleted.
fn overridden(plugin: &str, resolved: &PluginSource) -> Option<PluginSource> {
    if resolved.is_builtin() || crate::config::load::is_plugin_path(plugin) {
        return None;
    }
    crate::plugin::builtin::find(plugin).map(PluginSource::BuiltIn)
}

/// What identifies an application's running configuration: a change of any
/// of it restarts its controller.
///
/// Compared by Debug text: every field is plain data, and the
/// configuration types need not implement `PartialEq` for it.
fn fingerprint(app: &ApplicationConfig, sources: &PluginSources) -> String {
    // Where each plugin comes from, not its bytes (a built-in's Debug text
    // would be the whole component): a changed file is hot-reloaded, a
    // changed origin restarts.
    let origins: Vec<String> = std::iter::once(&sources.policy)
        .chain(&sources.interpreters)
        .map(|s| s.origin())
        .collect();
    format!("{app:?}\n{origins:?}")
}

/// The AWS side of an agent on AWS: the SDK's configuration, loaded by its
/// standard chain with the agent's region, and the clients made from it,
/// all loaded once, on first need, and shared by every application (the
/// CloudWatch source batches across them). Cloning shares them.
///
/// It is itself the agent's metric source, MSF target and alarm reader,
/// so that what is assembled before it is loaded calls the clients once
/// they are; the agent loads it before assembling an application that
/// calls AWS ([`ApplicationConfig::calls_aws`]), so that the SDK's start
/// (region, credentials) happens there and not in its first evaluation.
#[derive(Clone)]
struct LazyAws {
    region: Option<String>,
    clients: Arc<tokio::sync::OnceCell<AwsClients>>,
}

/// The clients of [`LazyAws`], made from one SDK configuration.
struct AwsClients {
    /// Whether the SDK's chain found a region.
    has_region: bool,
    source: BatchingSource,
    target: MsfTarget,
    alarms: BatchingAlarms,
}

impl LazyAws {
    /// Nothing loaded yet; `region` overrides the chain's (`[agent] region`).
    fn new(region: Option<String>) -> Self {
        Self {
            region,
            clients: Arc::default(),
        }
    }

    /// The clients, loading the SDK's configuration the first time.
    async fn clients(&self) -> &AwsClients {
        self.clients
            .get_or_init(|| async {
                let sdk = crate::aws::sdk_config(self.region.as_deref()).await;
                info!(
                    message = "AWS SDK configuration loaded.",
                    region = %sdk.region().map_or_else(|| "none".to_owned(), |r| r.to_string()),
                );
                AwsClients {
                    has_region: sdk.region().is_some(),
                    source: BatchingSource::new(CloudWatchSource::new(&sdk)),
                    target: MsfTarget::new(&sdk),
                    alarms: BatchingAlarms::new(CloudWatchAlarms::new(&sdk)),
                }
            })
            .await
    }

    /// Loads the clients when one of `apps` calls AWS and is not paused;
    /// [`AgentError::NoRegion`], naming those, when the SDK's chain found
    /// no region.
    async fn load_for<'a>(
        &self,
        apps: impl IntoIterator<Item = &'a ApplicationConfig>,
    ) -> Result<(), AgentError> {
        let applications: Vec<String> = apps
            .into_iter()
            .filter(|app| app.mode != Mode::Paused && app.calls_aws())
            .map(|app| app.name.clone())
            .collect();
        if applications.is_empty() || self.clients().await.has_region {
            Ok(())
        } else {
            Err(AgentError::NoRegion { applications })
        }
    }
}

#[async_trait::async_trait]
impl MetricSource for LazyAws {
    async fn fetch(
        &self,
        queries: &[crate::metrics::MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, crate::metrics::MetricsError> {
        self.clients()
            .await
            .source
            .fetch(queries, start_ms, end_ms)
            .await
    }
}

#[async_trait::async_trait]
impl ScalingTarget for LazyAws {
    async fn describe(
        &self,
        application: &str,
    ) -> Result<crate::target::AppState, crate::target::TargetError> {
        self.clients().await.target.describe(application).await
    }

    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &crate::target::AppState,
    ) -> Result<u64, crate::target::TargetError> {
        self.clients()
            .await
            .target
            .rescale(application, kpu, current)
            .await
    }
}

#[async_trait::async_trait]
impl AlarmStates for LazyAws {
    async fn describe_named(
        &self,
        names: &[String],
    ) -> Result<Vec<crate::metrics::alarms::DescribedAlarm>, crate::metrics::MetricsError> {
        self.clients().await.alarms.describe_named(names).await
    }
}

/// One application's controller while it runs as its own task, which
/// ends giving back the controller's journal (see [`Controller::run`]).
struct RunningApp {
    fingerprint: String,
    /// The settings it runs with: after a reload that could not put an
    /// application's new ones in force, the registry reports these.
    config: ApplicationConfig,
    /// Where its plugins are in the configuration file, moved by a reload
    /// that leaves it unchanged (none while paused).
    places: ConfigPlaces,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Stopped>,
}

impl RunningApp {
    fn spawn(
        controller: Controller,
        fingerprint: String,
        config: ApplicationConfig,
        places: ConfigPlaces,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        Self {
            fingerprint,
            config,
            places,
            stop,
            task: tokio::spawn(controller.run_until_stopped(stopped)),
        }
    }

    /// A paused application: a task that does nothing until it is stopped.
    /// It hands on the quarantines of the controller it replaced
    /// (`quarantined`), so that the controller a resume starts ends them
    /// with its first answer, as any reload's does: forgotten, they stayed
    /// in `flinkscale_plugin_quarantined` and `status` for good.
    fn paused(
        fingerprint: String,
        config: ApplicationConfig,
        quarantined: QuarantinedPlugins,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        Self {
            fingerprint,
            config,
            places: ConfigPlaces::default(),
            stop,
            task: tokio::spawn(async move {
                while !*stopped.borrow() {
                    if stopped.changed().await.is_err() {
                        break;
                    }
                }
                Stopped {
                    journal: None,
                    quarantined,
                }
            }),
        }
    }

    /// Stops the controller and waits until it is gone; gives back its
    /// journal, still locked, and which plugins were quarantined. Dropping
    /// the journal lets the lock go; a reload that restarts the
    /// application hands it to the next controller instead, so that no
    /// other agent can take the application in between.
    async fn stop(self) -> Stopped {
        let _ = self.stop.send(true);
        // A panicking controller must not take the others down; its panic
        // is already printed by the runtime (and its journal dropped with
        // it: the next controller locks the journal again).
        self.task.await.unwrap_or_default()
    }
}

impl Agent {
    /// An agent on AWS: CloudWatch metrics (batched across applications) and
    /// MSF, with the SDK's standard configuration chain, loaded only if
    /// an application calls AWS (now, or once a reload adds one). Unless
    /// `dry_run`, each application's controller keeps its journal in the
    /// configured `state_dir` (created if missing) and resumes from it.
    pub async fn on_aws(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
    ) -> Result<Self, AgentError> {
        let aws = LazyAws::new(loaded.config.agent.region.clone());
        // A dry run must not touch the journal of an agent that acts.
        let state = if dry_run {
            None
        } else {
            Some(StateStore::open(&loaded.state_dir).map_err(AgentError::State)?)
        };
        let source: Arc<dyn MetricSource> = Arc::new(aws.clone());
        let target: Arc<dyn ScalingTarget> = Arc::new(aws.clone());
        let mut agent = Self::assemble_off_runtime(loaded, dry_run, events, source, target, state)
            .await?
            .with_alarm_states(Arc::new(aws.clone()));
        // After the plugins: a plugin that will not load or refuses its
        // params is said at once, not after the SDK's own search for a
        // region and credentials (seconds, and warnings, off EC2).
        aws.load_for(&loaded.config.applications).await?;
        agent.parts.aws = Some(aws);
        Ok(agent)
    }

    /// An agent on the AWS endpoints, region and credentials of `sdk` (the
    /// demo points it at the emulator), keeping no journal.
    pub async fn on_sdk(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, AgentError> {
        let source: Arc<dyn MetricSource> =
            Arc::new(BatchingSource::new(CloudWatchSource::new(sdk)));
        let target: Arc<dyn ScalingTarget> = Arc::new(MsfTarget::new(sdk));
        Ok(
            Self::assemble_off_runtime(loaded, dry_run, events, source, target, None)
                .await?
                .with_alarm_states(Arc::new(BatchingAlarms::new(CloudWatchAlarms::new(sdk)))),
        )
    }

    /// [`Self::assemble_targets`] for production (`target = "flink"`
    /// applications scale their own job) on tokio's blocking pool: it
    /// compiles, instantiates and configures every plugin, CPU work that
    /// must not hold an async worker (a current-thread runtime's only
    /// thread) for its duration.
    async fn assemble_off_runtime(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        state: Option<StateStore>,
    ) -> Result<Self, AgentError> {
        let loaded = loaded.clone();
        // A blocking-pool thread may call guests directly (`configure`).
        tokio::task::spawn_blocking(move || {
            crate::plugin::on_plugin_thread(|| {
                Self::assemble_targets(
                    &loaded,
                    dry_run,
                    events,
                    source,
                    target,
                    Clock::system(),
                    state.as_ref(),
                    true,
                )
            })
        })
        .await
        .map_err(|error| AgentError::Assembly(error.to_string()))?
    }

    /// Reads the states of `source = "cloudwatch"` alarms from `states`,
    /// in every controller, and in those a reload starts.
    pub fn with_alarm_states(mut self, states: Arc<dyn AlarmStates>) -> Self {
        self.parts.alarm_states = Some(states.clone());
        self.controllers = self
            .controllers
            .into_iter()
            .map(|c| c.with_alarm_states(states.clone()))
            .collect();
        self
    }

    /// An agent over the given source and target, keeping no journal (the
    /// simulator's).
    pub fn assemble(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        clock: Clock,
    ) -> Result<Self, AgentError> {
        Self::assemble_with_state(loaded, dry_run, events, source, target, clock, None)
    }

    /// An agent over the given source and target; with `state`, each
    /// controller holds its application's journal (locked against other
    /// agents) and resumes from it. A dry run never journals.
    pub fn assemble_with_state(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        clock: Clock,
        state: Option<&StateStore>,
    ) -> Result<Self, AgentError> {
        Self::assemble_targets(loaded, dry_run, events, source, target, clock, state, false)
    }

    /// [`Self::assemble_with_state`], where `flink_from_config` says
    /// whether `target = "flink"` applications scale their own job
    /// (production) or use `source` and `target` like the others.
    #[allow(clippy::too_many_arguments)]
    fn assemble_targets(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        clock: Clock,
        state: Option<&StateStore>,
        flink_from_config: bool,
    ) -> Result<Self, AgentError> {
        let agent = &loaded.config.agent;
        let limits = agent.sandbox_limits();
        // A resume request is a reload's (`flinkscale reload --resume`):
        // one found at start was left by a reload that never reached an
        // agent, and taken by a later reload made for another reason it
        // would end a stand-down nobody asked to end then. A restart keeps
        // every stand-down.
        if let Some(store) = state {
            let stale = store
                .take_resume_requests(loaded.config.applications.iter().map(|a| a.name.as_str()));
            if !stale.is_empty() {
                warn!(
                    message = "Resume requests found at start, dropped: a restart keeps every stand-down; ask again with `flinkscale reload --resume`.",
                    applications = %stale.into_iter().collect::<Vec<_>>().join(","),
                );
            }
        }
        // An agent that keeps state also keeps its compiled plugins there
        // (inside the 0700 state folder, since a compiled component is
        // native code), so a restart does not pay the compile again.
        let host = match state {
            Some(_) => PluginHost::with_cache_dir(limits, loaded.state_dir.join("plugin-cache")),
            None => PluginHost::new(limits),
        };
        let parts = Parts {
            host: Arc::new(host.map_err(AgentError::Host)?),
            source,
            target,
            clock,
            events,
            state: state.cloned(),
            dry_run,
            quarantine: QuarantinePolicy::from_config(
                agent.plugin_quarantine_after_failures,
                agent.plugin_quarantine_secs,
            ),
            threads: None,
            alarm_states: None,
            aws: None,
            loaded: loaded.clone(),
            started_agent: format!("{:#?}", loaded.config.agent),
            flink_from_config,
            ceiling_lifts: Arc::new(watch::channel(0).0),
            resumes: crate::controller::fight::Resumes::default(),
        };
        let mut controllers = Vec::new();
        let mut paused = Vec::new();
        let mut located = plugin_places(loaded, |_| true);
        let mut places = BTreeMap::new();
        for (app, paths) in loaded.applications() {
            if app.mode == Mode::Paused {
                paused.push(app.name.clone());
                continue;
            }
            let cell = ConfigPlaces::new(located.remove(&app.name).unwrap_or_default());
            controllers.push(parts.journaled(parts.controller(app, paths, &cell)?, None)?);
            places.insert(app.name.clone(), cell);
        }
        Ok(Self {
            controllers,
            paused,
            places,
            parts,
        })
    }

    /// Runs every controller's plugin calls as `threads` says (the
    /// simulator runs them inline on its own paused runtime).
    pub fn with_plugin_threads(mut self, threads: PluginThreads) -> Self {
        self.parts.threads = Some(threads);
        self.controllers = self
            .controllers
            .into_iter()
            .map(|c| c.with_plugin_threads(threads))
            .collect();
        self
    }

    /// Runs every controller as its own task until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let (_no_reloads, configs) = mpsc::unbounded_channel();
        self.run_reloading(shutdown, configs).await;
    }

    /// Runs every controller as its own task until `shutdown` turns true,
    /// applying each configuration that arrives on `configs` (validated:
    /// the caller loads the file and reports its errors): an application
    /// added starts, one removed stops (releasing its journal), one changed
    /// is restarted with its new settings (resuming from its journal), and
    /// the others are not touched. Every controller lifts its recorded KPU
    /// limit and a size held as invalid, an operator's word that the limit
    /// may have been raised or the application fixed: the running ones at
    /// their next wait (see [`Controller::with_ceiling_lifts`]), the ones
    /// the reload starts before their first decision, with a size held
    /// after a rollback too ([`Controller::lifting_at_start`]). A paused
    /// application keeps its journal's until it runs again (one this
    /// reload pauses may have lifted them on its way out: the signal goes
    /// out before the restarts).
    pub async fn run_reloading(
        self,
        mut shutdown: watch::Receiver<bool>,
        mut configs: mpsc::UnboundedReceiver<LoadedConfig>,
    ) {
        let Agent {
            controllers,
            paused,
            mut places,
            mut parts,
        } = self;
        let mut running: BTreeMap<String, RunningApp> = BTreeMap::new();
        let mut started: BTreeMap<String, (String, ApplicationConfig)> = parts
            .loaded
            .config
            .applications
            .iter()
            .zip(&parts.loaded.plugins)
            .map(|(app, paths)| (app.name.clone(), (fingerprint(app, paths), app.clone())))
            .collect();
        // Every controller was built from an application of the file.
        for controller in controllers {
            let name = controller.settings().name.clone();
            if let Some((fingerprint, config)) = started.remove(&name) {
                let places = places.remove(&name).unwrap_or_default();
                running.insert(
                    name,
                    RunningApp::spawn(controller, fingerprint, config, places),
                );
            }
        }
        for name in paused {
            info!(message = "Application paused: not evaluated until its mode changes.", application = %name);
            if let Some((fingerprint, config)) = started.remove(&name) {
                running.insert(
                    name,
                    RunningApp::paused(fingerprint, config, QuarantinedPlugins::default()),
                );
            }
        }
        let mut reloads_open = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                config = configs.recv(), if reloads_open => match config {
                    Some(loaded) => {
                        // The stand-downs this reload ends: those its
                        // resume requests name, read (and removed) off the
                        // runtime.
                        let resumed = match parts.state.clone() {
                            Some(store) => {
                                let names: Vec<String> =
                                    loaded.config.applications.iter().map(|a| a.name.clone()).collect();
                                tokio::task::spawn_blocking(move || {
                                    store.take_resume_requests(names.iter().map(String::as_str))
                                })
                                .await
                                .unwrap_or_default()
                            }
                            None => Default::default(),
                        };
                        if !resumed.is_empty() {
                            info!(
                                message = "Resume asked for: the stand-downs of these applications end as the reload reaches their controllers (a paused one's when it runs again).",
                                applications = %resumed.iter().cloned().collect::<Vec<_>>().join(","),
                            );
                        }
                        parts.resumes.ask(resumed);
                        // Before the restarts: the controllers running now
                        // lift at their next wait; one the reload starts
                        // subscribes after this and lifts what it read back
                        // from its journal before its first step
                        // ([`Controller::lifting_at_start`]).
                        parts.ceiling_lifts.send_modify(|n| *n = n.wrapping_add(1));
                        parts = apply(parts, loaded, &mut running, shutdown.clone()).await;
                    }
                    None => reloads_open = false,
                },
            }
        }
        // Every controller is told at once, then each is waited for: they
        // finish their calls in flight side by side.
        for app in running.values() {
            let _ = app.stop.send(true);
        }
        for (_, app) in running {
            app.stop().await;
        }
    }

    /// The applications whose `mode` is `"paused"`: [`Agent::once`] and
    /// [`Agent::run`] leave them alone.
    pub fn paused(&self) -> &[String] {
        &self.paused
    }

    /// Evaluates every application that is not paused once and acts on the
    /// decision, without following an update. What the journal left is
    /// resolved first, as `run` does at start: an update in flight or in
    /// doubt, a grace period with time left or an unreadable journal
    /// holds the decision, which is still evaluated and reported. Returns
    /// each application's name, assessment and outcome, in the
    /// configuration's order.
    ///
    /// Up to [`ONCE_CONCURRENCY`] applications are evaluated at a time, as
    /// `run`'s controllers run side by side: their metric reads then merge
    /// into shared GetMetricData calls, and N applications cost about the
    /// time of one, not N times it (one after another, 200 took 5 s on
    /// loopback and tens of seconds against a real service).
    ///
    /// Unordered while they run: one application stuck in a slow call (an
    /// SDK timeout) does not hold back the start of the ones after the
    /// first [`ONCE_CONCURRENCY`]; the reports are put back in order.
    pub async fn once(&mut self) -> Vec<OnceReport> {
        use futures_util::StreamExt;
        let mut reports: Vec<(usize, OnceReport)> =
            futures_util::stream::iter(self.controllers.iter_mut().enumerate())
                .map(|(k, controller)| async move { (k, once_report(controller).await) })
                .buffer_unordered(ONCE_CONCURRENCY)
                .collect()
                .await;
        reports.sort_by_key(|(k, _)| *k);
        reports.into_iter().map(|(_, report)| report).collect()
    }
}

/// How many applications [`Agent::once`] evaluates at a time.
pub const ONCE_CONCURRENCY: usize = 32;

/// One application's [`Agent::once`].
async fn once_report(controller: &mut Controller) -> OnceReport {
    let application = controller.settings().name.clone();
    let dry_run = controller.settings().dry_run;
    let words = controller.settings().words;
    let waiting = controller.resolve().await;
    let result = match controller.evaluate().await {
        Ok(assessment) => {
            let outcome = match waiting {
                Some(waiting) => controller.held(&assessment, waiting),
                None => controller.act(&assessment).await,
            };
            Ok((assessment, outcome))
        }
        Err(error) => Err(error),
    };
    OnceReport {
        application,
        words,
        dry_run,
        result,
    }
}

/// Returns once a stop is asked for (or nobody can ask any more).
async fn stop_asked(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// The fields whose values differ between two structs as `{:#?}` writes
/// them (one `name: value` a line at the first indent; a value over
/// several lines is compared whole).
fn changed_fields(before: &str, after: &str) -> Vec<String> {
    let fields = |text: &str| -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let top = line
                .strip_prefix("    ")
                .filter(|rest| !rest.starts_with(' '))
                .and_then(|rest| rest.split_once(": "));
            match (top, fields.last_mut()) {
                (Some((name, value)), _) => fields.push((name.to_owned(), value.to_owned())),
                (None, Some((_, value))) => value.push_str(line),
                (None, None) => {}
            }
        }
        fields
    };
    let (before, after) = (fields(before), fields(after));
    after
        .iter()
        .filter(|field| !before.contains(field))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The `[agent]` fields of a reload that differ from the started ones
/// ([`changed_fields`]) and wait for a restart: all but `lazy_polling`,
/// which is copied into every application that does not set its own, so
/// that a change of it changes them, and they restart with it at once.
fn waiting_for_restart(before: &str, after: &str) -> Vec<String> {
    changed_fields(before, after)
        .into_iter()
        .filter(|field| field != "lazy_polling")
        .collect()
}

/// Applies a reloaded configuration to the running controllers; returns the
/// parts with the new configuration in force. A stop asked for while a
/// plugin of the new configuration loads (a compile takes seconds for a
/// large component) leaves the reload unfinished at once: the load ends
/// on its own thread, and nobody waits for it.
async fn apply(
    mut parts: Parts,
    loaded: LoadedConfig,
    running: &mut BTreeMap<String, RunningApp>,
    mut shutdown: watch::Receiver<bool>,
) -> Parts {
    let changed = waiting_for_restart(&parts.started_agent, &format!("{:#?}", loaded.config.agent));
    if !changed.is_empty() {
        warn!(
            message = "The [agent] section differs from the one the agent started with; its settings take effect at the next restart (a changed plugin_dir moves the plugins of the applications that use it now).",
            file = %loaded.file.display(),
            changed = %changed.join(", "),
        );
    }
    let wanted: BTreeMap<&str, (&ApplicationConfig, &PluginSources)> = loaded
        .applications()
        .map(|(app, paths)| (app.name.as_str(), (app, paths)))
        .collect();
    // The controllers built below follow the files of the new plugin_dir
    // ([`Parts::named_files`]): with the old one's, a plugin of the new
    // folder read as ranked below the old folder's file of that name, and
    // was swapped back for it at the first evaluation.
    parts.loaded.plugin_dir = loaded.plugin_dir.clone();
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    // Changed or added, but its new settings are not in force (its plugins
    // did not load, its journal could not be opened, ...).
    let mut not_applied: Vec<String> = Vec::new();
    // Unchanged: its controller runs on, but the file's lines may have
    // moved (a table added above it), and with them its plugins' places.
    let mut unchanged: Vec<String> = Vec::new();
    let names: Vec<String> = running.keys().cloned().collect();
    for name in names {
        match wanted.get(name.as_str()) {
            None => {
                if let Some(app) = running.remove(&name) {
                    app.stop().await;
                }
                info!(message = "Application removed; its controller stopped.", application = %name);
                removed.push(name);
            }
            Some((app, paths)) => {
                let fingerprint = fingerprint(app, paths);
                if running
                    .get(&name)
                    .is_some_and(|r| r.fingerprint != fingerprint)
                {
                    changed.push(name);
                } else {
                    // Its file's settings are the ones it runs with (a
                    // reload that could not apply them may have been
                    // undone by this one).
                    reload_applied(&parts, &name, app);
                    unchanged.push(name);
                }
            }
        }
    }
    if !unchanged.is_empty() {
        // The file is read again: off the async runtime.
        let (loaded, wanted) = (loaded.clone(), unchanged.clone());
        let located = tokio::task::spawn_blocking(move || {
            plugin_places(&loaded, |name| wanted.iter().any(|w| w == name))
        })
        .await
        .unwrap_or_default();
        for name in &unchanged {
            if let Some(app) = running.get(name) {
                app.places
                    .set(located.get(name).cloned().unwrap_or_default());
            }
        }
    }
    for (name, (app, paths)) in &wanted {
        let is_new = !running.contains_key(*name);
        let is_changed = changed.iter().any(|c| c == name);
        if !is_new && !is_changed {
            continue;
        }
        let fingerprint = fingerprint(app, paths);
        if app.mode == Mode::Paused {
            let quarantined = match running.remove(*name) {
                Some(old) => old.stop().await.quarantined,
                None => QuarantinedPlugins::default(),
            };
            running.insert(
                (*name).to_owned(),
                RunningApp::paused(fingerprint, (*app).clone(), quarantined),
            );
            reload_applied(&parts, name, app);
            info!(message = "Application paused: not evaluated until its mode changes.", application = %name);
            if is_new {
                added.push((*name).to_owned());
            }
            continue;
        }
        // The AWS clients, the first time an application needs them.
        if let Some(aws) = &parts.aws
            && let Err(error) = aws.load_for([*app]).await
        {
            error!(
                message = "Application not (re)started.",
                application = %name,
                %error,
                hint = "[agent] and the AWS environment are read at start: restart the agent once a region is set",
            );
            reload_not_applied(&parts, running, &mut not_applied, name, &error.to_string());
            continue;
        }
        // Plugins are compiled and configured before the running controller
        // is touched: a changed application whose new plugin does not load
        // keeps running as it was.
        let places = ConfigPlaces::default();
        let build = {
            let builder = parts.clone();
            let (app, paths, loaded) = ((*app).clone(), (*paths).clone(), loaded.clone());
            let places = places.clone();
            let loading = tokio::task::spawn_blocking(move || {
                places.set(
                    plugin_places(&loaded, |name| name == app.name)
                        .remove(&app.name)
                        .unwrap_or_default(),
                );
                crate::plugin::on_plugin_thread(|| builder.controller(&app, &paths, &places))
            });
            tokio::select! {
                build = loading => build,
                () = stop_asked(&mut shutdown) => {
                    info!(
                        message = "Stopping during a configuration reload; the plugins it was loading are left to finish on their own threads.",
                        application = %name,
                    );
                    return parts;
                }
            }
        };
        let controller = match build {
            Ok(Ok(controller)) => controller,
            Ok(Err(error @ AgentError::Plugin { .. })) => {
                // Where the file is at fault, said as `validate` says it
                // (the file is read again: off the async runtime).
                let located = match plugin_problem(&loaded, name, &error) {
                    Some(problem) => {
                        let loaded = loaded.clone();
                        tokio::task::spawn_blocking(move || {
                            crate::config::load::locate(&loaded, &[problem])
                                .first()
                                .map(ToString::to_string)
                        })
                        .await
                        .ok()
                        .flatten()
                    }
                    None => None,
                };
                let error = located.unwrap_or_else(|| error.to_string());
                error!(
                    message = "Application not (re)started: its plugins did not load; a changed one keeps its previous settings.",
                    application = %name,
                    %error,
                );
                reload_not_applied(
                    &parts,
                    running,
                    &mut not_applied,
                    name,
                    &format!("its plugins did not load: {error}"),
                );
                continue;
            }
            Ok(Err(error)) => {
                error!(
                    message = "Application not (re)started; a changed one keeps its previous settings.",
                    application = %name,
                    %error,
                );
                reload_not_applied(&parts, running, &mut not_applied, name, &error.to_string());
                continue;
            }
            Err(error) => {
                error!(message = "Application not (re)started.", application = %name, %error);
                reload_not_applied(&parts, running, &mut not_applied, name, &error.to_string());
                continue;
            }
        };
        // The old controller's journal goes to the new one still locked:
        // letting the lock go and taking it again would leave an instant in
        // which another agent could take the application.
        let (kept, quarantined) = match running.remove(*name) {
            Some(old) => {
                let stopped = old.stop().await;
                // Before the new controller says anything (a stand-down it
                // still stands in is said again as its journal opens).
                parts
                    .events
                    .emit_unlogged(crate::telemetry::Event::ControllerReplaced {
                        application: (*name).to_owned(),
                        at_ms: parts.clock.now_ms(),
                    });
                (stopped.journal, stopped.quarantined)
            }
            None => (None, QuarantinedPlugins::default()),
        };
        // A quarantine the old controller was in ends with the new one's
        // first answer, as when a file is replaced.
        // What this reload lifts in every running controller, the new one
        // lifts from its journal before it decides anything.
        let controller = controller.after_quarantine(&quarantined).lifting_at_start();
        let journaled = {
            let parts = parts.clone();
            tokio::task::spawn_blocking(move || parts.journaled(controller, kept)).await
        };
        match journaled {
            Ok(Ok(controller)) => {
                running.insert(
                    (*name).to_owned(),
                    RunningApp::spawn(controller, fingerprint, (*app).clone(), places),
                );
                reload_applied(&parts, name, app);
                if is_new {
                    info!(message = "Application added; its controller started.", application = %name);
                    added.push((*name).to_owned());
                } else {
                    info!(message = "Application changed; its controller restarted with the new settings.", application = %name, mode = app.mode.as_str());
                }
            }
            Ok(Err(error)) => {
                error!(message = "Application not (re)started: its journal cannot be opened.", application = %name, %error);
                reload_not_applied(
                    &parts,
                    running,
                    &mut not_applied,
                    name,
                    &format!("its journal cannot be opened: {error}"),
                );
            }
            Err(error) => {
                error!(message = "Application not (re)started.", application = %name, %error);
                reload_not_applied(&parts, running, &mut not_applied, name, &error.to_string());
            }
        }
    }
    // `changed` names those whose new settings are in force.
    changed.retain(|name| !not_applied.contains(name));
    if not_applied.is_empty() {
        info!(
            message = "Configuration reloaded.",
            file = %loaded.file.display(),
            applications = running.len(),
            added = %added.join(","),
            removed = %removed.join(","),
            changed = %changed.join(","),
        );
    } else {
        warn!(
            message = "Configuration reloaded.",
            not_applied_means = "their new settings are not in force: they keep their previous ones (or, added, are not started); the errors above say why",
            file = %loaded.file.display(),
            applications = running.len(),
            added = %added.join(","),
            removed = %removed.join(","),
            changed = %changed.join(","),
            not_applied = %not_applied.join(","),
        );
    }
    parts.loaded = loaded;
    parts
}

/// Tells the metrics registry that the settings of the last reload,
/// `app`, are in force for `name`.
fn reload_applied(parts: &Parts, name: &str, app: &ApplicationConfig) {
    if let Some(registry) = parts.events.registry() {
        registry.reload_applied(name, app, parts.clock.now_ms());
    }
}

/// `error`, a plugin of application `name` that would not load or refused
/// its params, as the problem of its field in `loaded`'s file, for
/// [`crate::config::load::locate`] to say as `validate` and a refused
/// start say it (`agent.toml:10:10: application "orders".policy.params:
/// ...`); `None` for an error the configuration is not at fault for (a
/// failing engine, a compile past its deadline).
fn plugin_problem(loaded: &LoadedConfig, name: &str, error: &AgentError) -> Option<Problem> {
    let AgentError::Plugin {
        interpreter, error, ..
    } = error
    else {
        return None;
    };
    if !error.is_configuration() {
        return None;
    }
    let k = loaded
        .applications()
        .position(|(app, _)| app.name == name)?;
    Some(Problem {
        path: plugin_table(loaded, k, *interpreter).key(error.config_field()),
        message: error.to_string(),
        hint: None,
        assumes: None,
    })
}

/// The table in `loaded`'s file of application `k`'s policy (`None`) or
/// of its interpreter `j`.
fn plugin_table(loaded: &LoadedConfig, k: usize, interpreter: Option<usize>) -> FieldPath {
    let at = FieldPath::root()
        .key("application")
        .index(loaded.file_index(k));
    match interpreter {
        None => at.key("policy"),
        Some(j) => at.key("interpreter").index(j),
    }
}

/// Where the plugins' fields of each application `wanted` names are in
/// `loaded`'s file: the policy's, then each interpreter's, by application
/// name. It reads the file once: call it off the async runtime.
fn plugin_places(
    loaded: &LoadedConfig,
    wanted: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<ConfigPlace>> {
    let slots: Vec<(&str, FieldPath)> = loaded
        .applications()
        .enumerate()
        .filter(|(_, (app, _))| wanted(&app.name))
        .flat_map(|(k, (app, _))| {
            std::iter::once(None)
                .chain((0..app.interpreters.len()).map(Some))
                .map(move |slot| (app.name.as_str(), plugin_table(loaded, k, slot)))
        })
        .collect();
    let problems: Vec<Problem> = slots
        .iter()
        .flat_map(|(_, slot)| ["plugin", "params"].map(|field| slot.key(field)))
        .map(|path| Problem {
            path,
            message: String::new(),
            hint: None,
            assumes: None,
        })
        .collect();
    let located = crate::config::load::locate(loaded, &problems);
    let mut places: BTreeMap<String, Vec<ConfigPlace>> = BTreeMap::new();
    for ((name, _), pair) in slots.iter().zip(located.chunks(2)) {
        places
            .entry((*name).to_owned())
            .or_default()
            .push(ConfigPlace {
                plugin: pair[0].place(),
                params: pair[1].place(),
            });
    }
    places
}

/// The check of every load of `plugin` (of `app`), at start and at each
/// reload of its file: [`unconfigured_ids`] on the loaded instance's
/// declarations (a new file may declare other kinds or defaults than the
/// one the configuration was checked with).
fn references_checked<T: Labelled + 'static>(
    plugin: crate::config::PluginConfig,
    app: ApplicationConfig,
    metadata: fn(&T) -> PluginMetadata,
) -> impl Fn(&T) -> Result<(), PluginError> + Send + 'static {
    move |instance: &T| unconfigured_ids(metadata(instance), instance.identity(), &plugin, &app)
}

/// The ids the params of `plugin` (of `app`) name that `app` does not
/// configure ([`crate::plugin::params::reference_problems`]), refused as
/// params the plugin refused are: the agent neither starts nor reloads
/// with what `validate` refuses, and a plugin asked for an alarm or metric
/// the application lacks would fail at every evaluation.
fn unconfigured_ids(
    metadata: PluginMetadata,
    identity: &PluginIdentity,
    plugin: &crate::config::PluginConfig,
    app: &ApplicationConfig,
) -> Result<(), PluginError> {
    let params_at = FieldPath::root().key("params");
    let problems = crate::plugin::params::reference_problems(&metadata, plugin, app, &params_at);
    if problems.is_empty() {
        return Ok(());
    }
    let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(PluginError::Configure {
        plugin: Box::new(identity.clone()),
        message: said.join("; "),
    })
}

/// Tells the metrics registry that a reload could not put `name`'s new
/// settings in force, and why: its controller in `running` (if any) runs
/// with its previous settings, which the registry reports again; with
/// none, nothing runs for it. `name` joins `not_applied`, which the
/// reload's summary lists.
fn reload_not_applied(
    parts: &Parts,
    running: &BTreeMap<String, RunningApp>,
    not_applied: &mut Vec<String>,
    name: &str,
    reason: &str,
) {
    not_applied.push(name.to_owned());
    if let Some(registry) = parts.events.registry() {
        registry.reload_not_applied(
            name,
            reason,
            parts.clock.now_ms(),
            running.get(name).map(|app| &app.config),
        );
    }
}

/// What one evaluation of one application came to (the `once` command).
pub struct OnceReport {
    /// Application name.
    pub application: String,
    /// Its target's vocabulary, for the report's text.
    pub words: crate::target::Words,
    /// Whether it was a dry run (`--dry-run` or its `mode = "dry-run"`).
    pub dry_run: bool,
    /// The assessment and what acting on it did, or why it failed.
    pub result: Result<(Assessment, ActOutcome), EvaluateError>,
}

/// A policy plugin, following its file, as the controller's decide stage.
pub struct PluginPolicy(pub Reloading<PolicyInstance>);

impl Decide for PluginPolicy {
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, PluginFailure> {
        let decided = self.0.get()?.decide_checked(evaluation);
        // A reloaded policy failing its first call gives way to the one
        // it replaced.
        self.0.answered(decided.as_ref().err());
        Ok(decided?)
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn refresh(&mut self) -> Refresh {
        self.0.refresh()
    }
    fn starts_afresh(&self) -> bool {
        self.0.loaded().is_none_or(PolicyInstance::starts_afresh)
    }
    /// Only while the instance that runs is the built-in `step`'s code
    /// (the sha256 it was compiled from): not by the source's name, which
    /// changes before the code does (a `step.wasm` dropped in or deleted
    /// is loaded in the background, and a load that fails keeps the old
    /// code), nor for a file of other bytes, which may read anything.
    fn reads_only_alarm_states(&self) -> bool {
        static STEP: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
        let step = STEP.get_or_init(|| {
            crate::plugin::builtin::find("step").map(|b| {
                use sha2::Digest;
                sha2::Sha256::digest(b.bytes).into()
            })
        });
        self.0
            .loaded()
            .is_some_and(|instance| Some(instance.sha256()) == *step)
    }
}

/// An interpreter plugin, following its file, as the controller's
/// interpret stage.
pub struct PluginInterpreter(pub Reloading<InterpreterInstance>);

impl Interpret for PluginInterpreter {
    fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, PluginFailure> {
        let signals = self.0.get()?.interpret(now_ms, app, metrics);
        // A reloaded interpreter failing its first call gives way to the
        // one it replaced.
        self.0.answered(signals.as_ref().err());
        Ok(signals?)
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn file(&self) -> String {
        self.0.source().display_path().display().to_string()
    }
    fn refresh(&mut self) -> Refresh {
        self.0.refresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::load_probe::RuntimeFree;

    /// A paused application hands on the quarantines of the controller
    /// it replaced, for the controller a resume starts (which ends them
    /// with its first answer); it handed on none, and they stayed.
    #[tokio::test]
    async fn a_paused_application_hands_on_its_quarantines() {
        let quarantined = QuarantinedPlugins {
            policy: true,
            interpreters: vec![false, true],
        };
        let config: crate::config::Config = toml::from_str(
            "[[application]]\nname = \"a\"\nmode = \"paused\"\n[application.policy]\nplugin = \"hold\"\n",
        )
        .expect("a valid configuration");
        let paused = RunningApp::paused(
            "fingerprint".to_owned(),
            config.applications[0].clone(),
            quarantined.clone(),
        );
        let stopped = paused.stop().await;
        assert_eq!(stopped.quarantined, quarantined);
        assert!(stopped.journal.is_none());
    }

    /// A reload's `[agent]` section is compared with the one the agent
    /// started with (its settings stay in force until a restart), field by
    /// field: set back to the started value, nothing differs; a changed
    /// field is named.
    #[test]
    fn the_agent_sections_changed_fields_are_named_against_the_started_one() {
        let agent = |text: &str| -> String {
            let config: crate::config::Config = toml::from_str(&format!(
                "[agent]\n{text}\n[[application]]\nname = \"a\"\n[application.policy]\nplugin = \"hold\"\n"
            ))
            .expect("a configuration");
            format!("{:#?}", config.agent)
        };
        let started = agent("listen = \"127.0.0.1:9464\"");
        assert_eq!(
            changed_fields(&started, &agent("listen = \"127.0.0.1:9464\"")),
            Vec::<String>::new()
        );
        assert_eq!(
            changed_fields(
                &started,
                &agent("listen = \"127.0.0.1:9465\"\nplugin_timeout_ms = 200")
            ),
            ["plugin_timeout_ms", "listen"],
            "in the struct's order"
        );
        // lazy_polling applies at once (the applications that inherit it
        // restart with it): not said to wait for a restart.
        let lazy = agent("listen = \"127.0.0.1:9464\"\nlazy_polling = false");
        assert_eq!(changed_fields(&started, &lazy), ["lazy_polling"]);
        assert_eq!(waiting_for_restart(&started, &lazy), Vec::<String>::new());
    }

    /// A Flink job's application named `name` at a port nothing listens
    /// on, deciding with `hold`: no AWS, and its controller's calls fail
    /// at once.
    fn flink_application(name: &str, port: u16) -> String {
        format!(
            "[[application]]\nname = \"{name}\"\ntarget = \"flink\"\n\
             rest_url = \"http://127.0.0.1:{port}\"\n\n[application.policy]\nplugin = \"hold\"\n"
        )
    }

    /// Plugins are compiled, instantiated and configured off the async
    /// runtime, at start and when a reload adds an application: on a
    /// current-thread runtime, a task spawned while a plugin loads runs
    /// before the load ends.
    #[test]
    fn plugins_load_off_the_async_runtime_at_start_and_on_reload() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let at_start = RuntimeFree::install("load-probe-start", runtime.handle().clone());
        let on_reload = RuntimeFree::install("load-probe-reload", runtime.handle().clone());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let origin = std::path::Path::new("agent.toml");
        let first =
            crate::config::load::load_str(&flink_application("load-probe-start", port), origin)
                .expect("valid");
        let second = crate::config::load::load_str(
            &format!(
                "{}{}",
                flink_application("load-probe-start", port),
                flink_application("load-probe-reload", port)
            ),
            origin,
        )
        .expect("valid");
        runtime.block_on(async {
            let agent = Agent::on_aws(&first, true, Events::log_only())
                .await
                .expect("the agent assembles");
            let (reload, reloads) = mpsc::unbounded_channel();
            let (stop, stopped) = watch::channel(false);
            let running = tokio::spawn(agent.run_reloading(stopped, reloads));
            reload.send(second).expect("the agent listens");
            while on_reload.counts() == (0, 0) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let _ = stop.send(true);
            running.await.expect("the agent stops");
        });
        assert_eq!(at_start.counts(), (1, 0), "(free, held) at start");
        assert_eq!(on_reload.counts(), (1, 0), "(free, held) on reload");
    }

    /// A reload that restarts a changed application hands the old
    /// controller's journal to the new one still locked: another process
    /// trying the lock all along never gets it. (Letting it go and taking
    /// it again left a gap of about 0.3 ms, in which a second agent could
    /// take the application; this agent then could not restart it.)
    #[test]
    fn a_restart_on_reload_keeps_the_journal_locked_throughout() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::time::Duration;

        const RELOADS: usize = 12;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let state = tempfile::tempdir().expect("a state folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let origin = std::path::Path::new("agent.toml");
        // The application changes at every reload (its grace period), so
        // its controller is restarted; a last reload adds `marker`, whose
        // plugin load says that every restart before it is done.
        let config = |grace: usize, marker: bool| {
            let mut text = format!(
                "[agent]\nstate_dir = {:?}\n\n[[application]]\nname = \"handed-over\"\n\
                 target = \"flink\"\nrest_url = \"http://127.0.0.1:{port}\"\n\
                 grace_period_secs = {}\n\n[application.policy]\nplugin = \"hold\"\n",
                state.path().display().to_string(),
                60 + grace,
            );
            if marker {
                text.push_str(&flink_application("handed-over-marker", port));
            }
            crate::config::load::load_str(&text, origin).expect("valid")
        };
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        crate::plugin::load_probe::install("handed-over", move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let marked = Arc::new(AtomicBool::new(false));
        let marks = marked.clone();
        crate::plugin::load_probe::install("handed-over-marker", move || {
            marks.store(true, Ordering::SeqCst);
        });
        let lock_path = state.path().join("handed-over.lock");
        runtime.block_on(async {
            let agent = Agent::on_aws(&config(0, false), false, Events::log_only())
                .await
                .expect("the agent assembles");
            assert!(lock_path.exists(), "the agent locked the journal");
            let done = Arc::new(AtomicBool::new(false));
            let trier = {
                let (done, lock_path) = (done.clone(), lock_path.clone());
                std::thread::spawn(move || {
                    let file = std::fs::File::open(&lock_path).expect("the lock file");
                    let (mut tries, mut taken) = (0u64, 0u64);
                    while !done.load(Ordering::SeqCst) {
                        tries += 1;
                        if file.try_lock().is_ok() {
                            taken += 1;
                            let _ = file.unlock();
                        }
                    }
                    (tries, taken)
                })
            };
            let (reload, reloads) = mpsc::unbounded_channel();
            let (stop, stopped) = watch::channel(false);
            let running = tokio::spawn(agent.run_reloading(stopped, reloads));
            for grace in 1..=RELOADS {
                reload
                    .send(config(grace, false))
                    .expect("the agent listens");
            }
            reload
                .send(config(RELOADS, true))
                .expect("the agent listens");
            while !marked.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done.store(true, Ordering::SeqCst);
            let (tries, taken) = trier.join().expect("the trier ends");
            assert!(tries > 1000, "the lock was tried all along ({tries} tries)");
            assert_eq!(
                loads.load(Ordering::SeqCst),
                1 + RELOADS,
                "the application was restarted at every reload"
            );
            assert_eq!(taken, 0, "another process took the lock during a restart");
            let _ = stop.send(true);
            running.await.expect("the agent stops");
        });
        let file = std::fs::File::open(&lock_path).expect("the lock file");
        assert!(file.try_lock().is_ok(), "the stopped agent let the lock go");
    }

    /// A stop asked for while a reload loads a new application's plugin
    /// (a compile of seconds, here a load held until the test lets it go)
    /// stops the agent without waiting for that load, which ends on its
    /// own thread.
    #[test]
    fn a_stop_does_not_wait_for_a_plugin_a_reload_is_loading() {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (entered, loading) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (entered, released) = (Mutex::new(entered), Mutex::new(released));
        let finished = Arc::new(AtomicBool::new(false));
        let finished_by_load = finished.clone();
        crate::plugin::load_probe::install("slow-reload", move || {
            let _ = entered.lock().unwrap().send(());
            // Bounded, so that a stop that waits fails the test rather
            // than hanging it.
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20));
            finished_by_load.store(true, Ordering::SeqCst);
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let origin = std::path::Path::new("agent.toml");
        let first = crate::config::load::load_str(&flink_application("steady", port), origin)
            .expect("valid");
        let second = crate::config::load::load_str(
            &format!(
                "{}{}",
                flink_application("steady", port),
                flink_application("slow-reload", port)
            ),
            origin,
        )
        .expect("valid");
        runtime.block_on(async {
            let agent = Agent::on_aws(&first, true, Events::log_only())
                .await
                .expect("the agent assembles");
            let (reload, reloads) = mpsc::unbounded_channel();
            let (stop, stopped) = watch::channel(false);
            let running = tokio::spawn(agent.run_reloading(stopped, reloads));
            reload.send(second).expect("the agent listens");
            while loading.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = stop.send(true);
            running.await.expect("the agent stops");
        });
        assert!(
            !finished.load(Ordering::SeqCst),
            "the stop waited for the reload's plugin load"
        );
        // Let the load end before the runtime's drop waits for it.
        let _ = release.send(());
        drop(runtime);
        assert!(finished.load(Ordering::SeqCst));
    }
}
