//! Assembles an agent from a validated configuration: the plugin host, one
//! policy instance (and its interpreters) per application, the metric source
//! and the scaling target, and one [`Controller`] per application.
//!
//! Production wires CloudWatch (batched across applications) and MSF; the
//! simulator and tests wire their own source and target into the same
//! [`Agent::assemble`], so that they run exactly the production controller.

use std::sync::Arc;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::load::LoadedConfig;
use crate::controller::{ActOutcome, Assessment, Controller, Decide, EvaluateError, Interpret};
use crate::metrics::MetricSource;
use crate::metrics::Series;
use crate::metrics::batch::BatchingSource;
use crate::metrics::cloudwatch::CloudWatchSource;
use crate::model::{Application, Decision, Evaluation, Signal};
use crate::plugin::{InterpreterInstance, PluginError, PluginHost, PolicyInstance, SandboxLimits};
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
}

/// The controllers of every configured application.
pub struct Agent {
    controllers: Vec<Controller>,
    // The engine outlives every instance made from it.
    _host: Arc<PluginHost>,
}

impl Agent {
    /// An agent on AWS: CloudWatch metrics (batched across applications) and
    /// MSF, with the SDK's standard configuration chain.
    pub async fn on_aws(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
    ) -> Result<Self, AgentError> {
        let sdk = crate::aws::sdk_config(loaded.config.agent.region.as_deref()).await;
        Self::on_sdk(loaded, dry_run, events, &sdk)
    }

    /// An agent on the AWS endpoints, region and credentials of `sdk` (the
    /// demo points it at the emulator).
    pub fn on_sdk(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, AgentError> {
        let source: Arc<dyn MetricSource> =
            Arc::new(BatchingSource::new(CloudWatchSource::new(sdk)));
        let target: Arc<dyn ScalingTarget> = Arc::new(MsfTarget::new(sdk));
        Self::assemble(loaded, dry_run, events, source, target, Clock::system())
    }

    /// An agent over the given source and target.
    pub fn assemble(
        loaded: &LoadedConfig,
        dry_run: bool,
        events: Events,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        clock: Clock,
    ) -> Result<Self, AgentError> {
        let agent = &loaded.config.agent;
        let host = Arc::new(
            PluginHost::new(SandboxLimits {
                call_timeout: std::time::Duration::from_millis(agent.plugin_timeout_ms),
                memory_limit_bytes: agent.plugin_memory_limit_bytes,
            })
            .map_err(AgentError::Host)?,
        );
        let mut controllers = Vec::new();
        for (app, paths) in loaded.config.applications.iter().zip(&loaded.plugins) {
            let plugin_error = |source| AgentError::Plugin {
                application: app.name.clone(),
                source,
            };
            let policy = host
                .load_policy(
                    &paths.policy,
                    &crate::config::load::params_json(&app.policy.params),
                    &app.name,
                )
                .map_err(plugin_error)?;
            let mut interpreters: Vec<Box<dyn Interpret>> = Vec::new();
            for (config, path) in app.interpreters.iter().zip(&paths.interpreters) {
                let instance = host
                    .load_interpreter(
                        path,
                        &crate::config::load::params_json(&config.params),
                        &app.name,
                    )
                    .map_err(plugin_error)?;
                interpreters.push(Box::new(PluginInterpreter(instance)));
            }
            controllers.push(Controller::new(
                app,
                dry_run,
                source.clone(),
                target.clone(),
                Box::new(PluginPolicy(policy)),
                interpreters,
                clock,
                events.clone(),
            ));
        }
        Ok(Self {
            controllers,
            _host: host,
        })
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

/// A policy plugin instance as the controller's decide stage.
struct PluginPolicy(PolicyInstance);

impl Decide for PluginPolicy {
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        self.0.decide(evaluation).map_err(|e| e.to_string())
    }
    fn label(&self) -> String {
        self.0.label()
    }
}

/// An interpreter plugin instance as the controller's interpret stage.
struct PluginInterpreter(InterpreterInstance);

impl Interpret for PluginInterpreter {
    fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String> {
        self.0
            .interpret(now_ms, app, metrics)
            .map_err(|e| e.to_string())
    }
    fn label(&self) -> String {
        self.0.label()
    }
}
