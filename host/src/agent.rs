//! Assembles an agent from a validated configuration: the plugin host, one
//! policy instance (and its interpreters) per application, the metric source
//! and the scaling target, and one [`Controller`] per application.
//!
//! Production wires CloudWatch (batched across applications) and MSF, and
//! gives each controller its journal in the state folder; the simulator
//! and tests wire their own source and target into the same
//! [`Agent::assemble`] (without a journal: a simulated run has nothing to
//! resume), so that they run exactly the production controller.

use std::sync::Arc;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::load::LoadedConfig;
use crate::controller::{
    ActOutcome, Assessment, Controller, Decide, EvaluateError, Interpret, PluginThreads,
    QuarantinePolicy,
};
use crate::metrics::MetricSource;
use crate::metrics::Series;
use crate::metrics::batch::BatchingSource;
use crate::metrics::cloudwatch::CloudWatchSource;
use crate::model::{Application, Decision, Evaluation, Signal};
use crate::plugin::{
    InterpreterInstance, PluginError, PluginHost, PolicyInstance, Reloading, SandboxLimits,
};
use crate::state::{StateError, StateStore};
use crate::target::ScalingTarget;
use crate::target::msf::MsfTarget;
use crate::telemetry::Events;

/// Why an agent could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The plugin host (wasmtime engine) could not start.
    #[error("cannot start the plugin host: {0}")]
    Host(#[source] PluginError),
    /// A plugin could not be loaded or configured.
    #[error("application {application:?}: {source}")]
    Plugin {
        /// The application whose plugin failed.
        application: String,
        /// Why.
        #[source]
        source: PluginError,
    },
    /// The state folder or a journal could not be opened.
    #[error("cannot open the agent's state: {0}")]
    State(#[source] StateError),
}

/// The controllers of every configured application.
pub struct Agent {
    controllers: Vec<Controller>,
    // The engine outlives every instance made from it.
    _host: Arc<PluginHost>,
}

impl Agent {
    /// An agent on AWS: CloudWatch metrics (batched across applications) and
    /// MSF, with the SDK's standard configuration chain. Unless `dry_run`,
    /// each application's controller keeps its journal in the configured
    /// `state_dir` (created if missing) and resumes from it.
    pub async fn on_aws(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
    ) -> Result<Self, AgentError> {
        let sdk = crate::aws::sdk_config(loaded.config.agent.region.as_deref()).await;
        // A dry run must not touch the journal of an agent that acts.
        let state = if dry_run {
            None
        } else {
            Some(StateStore::open(&loaded.state_dir).map_err(AgentError::State)?)
        };
        Self::on_sdk_with_state(loaded, dry_run, events, &sdk, state.as_ref())
    }

    /// An agent on the AWS endpoints, region and credentials of `sdk` (the
    /// demo points it at the emulator), keeping no journal.
    pub fn on_sdk(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, AgentError> {
        Self::on_sdk_with_state(loaded, dry_run, events, sdk, None)
    }

    /// An agent on the AWS endpoints of `sdk`, journaling in `state` when
    /// given.
    pub fn on_sdk_with_state(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        sdk: &aws_config::SdkConfig,
        state: Option<&StateStore>,
    ) -> Result<Self, AgentError> {
        let source: Arc<dyn MetricSource> =
            Arc::new(BatchingSource::new(CloudWatchSource::new(sdk)));
        let target: Arc<dyn ScalingTarget> = Arc::new(MsfTarget::new(sdk));
        Self::assemble_with_state(
            loaded,
            dry_run,
            events,
            source,
            target,
            Clock::system(),
            state,
        )
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
        let agent = &loaded.config.agent;
        let limits = SandboxLimits {
            call_timeout: std::time::Duration::from_millis(agent.plugin_timeout_ms),
            memory_limit_bytes: agent.plugin_memory_limit_bytes,
        };
        // An agent that keeps state also keeps its compiled plugins there
        // (inside the 0700 state folder, since a compiled component is
        // native code), so a restart does not pay the compile again.
        let host = match state {
            Some(_) => PluginHost::with_cache_dir(limits, loaded.state_dir.join("plugin-cache")),
            None => PluginHost::new(limits),
        };
        let host = Arc::new(host.map_err(AgentError::Host)?);
        let quarantine = QuarantinePolicy::from_config(
            agent.plugin_quarantine_after_failures,
            agent.plugin_quarantine_secs,
        );
        let mut controllers = Vec::new();
        for (app, paths) in loaded.config.applications.iter().zip(&loaded.plugins) {
            let plugin_error = |source| AgentError::Plugin {
                application: app.name.clone(),
                source,
            };
            let policy = Reloading::policy(
                host.clone(),
                &paths.policy,
                crate::config::load::params_json(&app.policy.params),
                app.name.clone(),
            )
            .map_err(plugin_error)?;
            let mut interpreters: Vec<Box<dyn Interpret>> = Vec::new();
            for (config, source) in app.interpreters.iter().zip(&paths.interpreters) {
                let instance = Reloading::interpreter(
                    host.clone(),
                    source,
                    crate::config::load::params_json(&config.params),
                    app.name.clone(),
                )
                .map_err(plugin_error)?;
                interpreters.push(Box::new(PluginInterpreter(instance)));
            }
            let mut controller = Controller::new(
                app,
                dry_run,
                source.clone(),
                target.clone(),
                Box::new(PluginPolicy(policy)),
                interpreters,
                clock,
                events.clone(),
            )
            .with_quarantine(quarantine);
            if let Some(store) = state
                && !dry_run
            {
                let mut journal = store.journal(&app.name).map_err(AgentError::State)?;
                let loaded = journal.load();
                // A journal only a newer agent can read is neither misread
                // nor replaced: the operator upgrades or removes it.
                if let Err(error @ StateError::Newer { .. }) = loaded {
                    return Err(AgentError::State(error));
                }
                controller = controller.with_journal(journal, loaded);
            }
            controllers.push(controller);
        }
        Ok(Self {
            controllers,
            _host: host,
        })
    }

    /// Runs every controller's plugin calls as `threads` says (the
    /// simulator runs them inline on its own paused runtime).
    pub fn with_plugin_threads(mut self, threads: PluginThreads) -> Self {
        self.controllers = self
            .controllers
            .into_iter()
            .map(|c| c.with_plugin_threads(threads))
            .collect();
        self
    }

    /// Runs every controller as its own task until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let tasks: Vec<_> = self
            .controllers
            .into_iter()
            .map(|c| tokio::spawn(c.run(shutdown.clone())))
            .collect();
        for task in tasks {
            // A panicking controller must not take the others down; its
            // panic is already printed by the runtime.
            let _ = task.await;
        }
    }

    /// Evaluates every application once and acts on the decision, without
    /// following an update. Returns each application's name, assessment and
    /// outcome.
    pub async fn once(&mut self) -> Vec<OnceReport> {
        let mut reports = Vec::new();
        for controller in &mut self.controllers {
            let application = controller.settings().name.clone();
            let report = match controller.evaluate().await {
                Ok(assessment) => {
                    let outcome = controller.act(&assessment).await;
                    OnceReport {
                        application,
                        result: Ok((assessment, outcome)),
                    }
                }
                Err(error) => OnceReport {
                    application,
                    result: Err(error),
                },
            };
            reports.push(report);
        }
        reports
    }
}

/// What one evaluation of one application came to (the `once` command).
pub struct OnceReport {
    /// Application name.
    pub application: String,
    /// The assessment and what acting on it did, or why it failed.
    pub result: Result<(Assessment, ActOutcome), EvaluateError>,
}

/// A policy plugin, following its file, as the controller's decide stage.
pub struct PluginPolicy(pub Reloading<PolicyInstance>);

impl Decide for PluginPolicy {
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        let instance = self.0.get().map_err(|e| e.to_string())?;
        instance.decide(evaluation).map_err(|e| e.to_string())
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn changed(&mut self) -> bool {
        self.0.changed()
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
    ) -> Result<Vec<Signal>, String> {
        let instance = self.0.get().map_err(|e| e.to_string())?;
        instance
            .interpret(now_ms, app, metrics)
            .map_err(|e| e.to_string())
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn changed(&mut self) -> bool {
        self.0.changed()
    }
}
