//! The control loop of one application: collect -> interpret -> evaluate ->
//! decide -> act -> follow -> record, then requeue.
//!
//! This is the reference design's state machine, as code: evaluate; on a
//! scale decision call UpdateApplication; poll every `update_poll_secs`
//! while the application is UPDATING (giving up after
//! `update_timeout_secs`); wait `grace_period_secs`; evaluate again and
//! scale again if the policy still says so; settle when it holds (a policy
//! holds at min or max KPU). One controller task owns one application, so
//! an application never has two updates in flight, and an application that
//! is not RUNNING is never updated.
//!
//! Like a kube-rs reconciler, each [`Controller::tick`] reads the world,
//! decides, acts and returns when it next wants to run. All waiting is on
//! tokio time, so the simulator can drive the same code on a paused clock.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::alarm::AlarmTracker;
use crate::clock::Clock;
use crate::config::ApplicationConfig;
use crate::metrics::{MetricQuery, MetricSource, MetricsError, Series};
use crate::model::{Action, Application, Decision, Evaluation, Signal};
use crate::target::{AppState, AppStatus, ScalingTarget, TargetError};
use crate::telemetry::{Event, Events};

/// The decide stage: a policy (in production, a sandboxed plugin instance).
pub trait Decide: Send {
    /// Decides on `evaluation`; an error means "no decision" and is turned
    /// into a hold by the controller.
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String>;
    /// Who decides, for logs (e.g. `step 0.1.0`).
    fn label(&self) -> String;
}

/// The interpret stage: derives signals from series (in production, a
/// sandboxed plugin instance).
pub trait Interpret: Send {
    /// Derives signals; an error drops this interpreter's signals for this
    /// evaluation.
    fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String>;
    /// Who interprets, for logs.
    fn label(&self) -> String;
}

/// The timing and bounds of one application's loop, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Application name.
    pub name: String,
    /// Lowest KPU.
    pub min_kpu: u32,
    /// Highest KPU.
    pub max_kpu: u32,
    /// Idle evaluation interval.
    pub evaluation_interval: Duration,
    /// Poll interval while UPDATING.
    pub update_poll: Duration,
    /// Give up following an update after this long.
    pub update_timeout: Duration,
    /// Wait after an update before evaluating again.
    pub grace_period: Duration,
    /// Decide and record, but never call UpdateApplication.
    pub dry_run: bool,
}

impl Settings {
    /// Settings of `app`; `dry_run` comes from the command line.
    pub fn from_config(app: &ApplicationConfig, dry_run: bool) -> Self {
        let shortest_period = app.metrics.iter().map(|m| m.period_secs).min();
        let interval = app
            .evaluation_interval_secs
            .or(shortest_period)
            .unwrap_or(60);
        Self {
            name: app.name.clone(),
            min_kpu: app.min_kpu,
            max_kpu: app.max_kpu,
            evaluation_interval: secs(interval),
            update_poll: secs(app.update_poll_secs),
            update_timeout: secs(app.update_timeout_secs),
            grace_period: secs(app.grace_period_secs),
            dry_run,
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// How far back metrics are fetched: enough for every alarm's evaluation
/// range (see [`crate::alarm::window_secs`]) and at least ten periods of the longest metric or
/// ten minutes, so that policies see a trend. GetMetricData is billed per
/// metric, not per datapoint, so a wider window costs nothing.
pub fn fetch_window_secs(app: &ApplicationConfig) -> u32 {
    let longest_period = app
        .metrics
        .iter()
        .map(|m| m.period_secs)
        .max()
        .unwrap_or(60);
    let alarm_need = crate::alarm::window_secs(&app.alarms, &app.metrics);
    alarm_need.max(10 * longest_period).max(600)
}

/// Why an evaluation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// DescribeApplication failed.
    #[error("could not read the application: {0}")]
    Target(#[source] TargetError),
    /// GetMetricData failed.
    #[error("could not fetch metrics: {0}")]
    Metrics(#[source] MetricsError),
}

/// The result of one evaluation, before acting on it.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The application as DescribeApplication reported it.
    pub state: AppState,
    /// What the policy was given.
    pub evaluation: Evaluation,
    /// The decision after host validation.
    pub decision: Decision,
}

/// What acting on a decision came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActOutcome {
    /// Nothing to do (hold, dry run).
    Held,
    /// UpdateApplication was accepted; the application is updating.
    Started {
        /// KPU requested.
        to_kpu: u32,
        /// When it was accepted (ms since the epoch).
        at_ms: i64,
    },
    /// The update was not sent or not accepted; requeue after this long.
    NotSent {
        /// When to evaluate again.
        retry_after: Duration,
    },
}

/// The control loop of one application.
pub struct Controller {
    settings: Settings,
    queries: Vec<MetricQuery>,
    window_ms: i64,
    alarms: AlarmTracker,
    source: Arc<dyn MetricSource>,
    target: Arc<dyn ScalingTarget>,
    policy: Box<dyn Decide>,
    interpreters: Vec<Box<dyn Interpret>>,
    clock: Clock,
    events: Events,
    last_rescale_ms: Option<i64>,
    last_update_duration_secs: Option<u32>,
    consecutive_failures: u32,
}

/// Shortest and longest back-off after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Controller {
    /// A controller for `app`, reading from `source`, acting on `target` and
    /// deciding with `policy`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        app: &ApplicationConfig,
        dry_run: bool,
        source: Arc<dyn MetricSource>,
        target: Arc<dyn ScalingTarget>,
        policy: Box<dyn Decide>,
        interpreters: Vec<Box<dyn Interpret>>,
        clock: Clock,
        events: Events,
    ) -> Self {
        let queries = app
            .metrics
            .iter()
            .map(|m| MetricQuery {
                id: m.id.clone(),
                namespace: m.namespace.clone(),
                metric_name: m.metric_name.clone(),
                dimensions: m.dimensions.clone(),
                statistic: m.statistic.clone(),
                period_secs: m.period_secs,
            })
            .collect();
        Self {
            settings: Settings::from_config(app, dry_run),
            queries,
            window_ms: i64::from(fetch_window_secs(app)) * 1000,
            alarms: AlarmTracker::new(&app.alarms, clock.now_ms()),
            source,
            target,
            policy,
            interpreters,
            clock,
            events,
            last_rescale_ms: None,
            last_update_duration_secs: None,
            consecutive_failures: 0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs the loop until `shutdown` becomes true. The first evaluation is
    /// immediate.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.warn_if_autoscaling().await;
        let mut delay = Duration::ZERO;
        loop {
            if sleep_or_shutdown(delay, &mut shutdown).await {
                return;
            }
            match self.tick(&mut shutdown).await {
                Some(next) => delay = next,
                None => return,
            }
        }
    }

    async fn warn_if_autoscaling(&mut self) {
        if let Ok(state) = self.target.describe(&self.settings.name).await
            && state.autoscaling_enabled
        {
            crate::telemetry::warn_autoscaling_enabled(&self.settings.name, state.status);
        }
    }

    /// One pass of the loop: evaluate, act, and follow an update through its
    /// grace period. Returns when to run next, or `None` on shutdown.
    pub async fn tick(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Duration> {
        let assessment = match self.evaluate().await {
            Ok(a) => a,
            Err(error) => {
                let class = match &error {
                    EvaluateError::Metrics(MetricsError::Throttled(_)) => "throttled",
                    EvaluateError::Metrics(_) => "metrics",
                    EvaluateError::Target(TargetError::Throttled(_)) => "throttled",
                    EvaluateError::Target(_) => "describe",
                };
                self.fail(class, error.to_string());
                return Some(self.backoff());
            }
        };
        match self.act(&assessment).await {
            ActOutcome::Held => {
                self.consecutive_failures = 0;
                let next = assessment
                    .decision
                    .next_evaluation_secs
                    .map(secs)
                    .unwrap_or(self.settings.evaluation_interval);
                Some(next)
            }
            ActOutcome::NotSent { retry_after } => Some(retry_after),
            ActOutcome::Started { to_kpu, at_ms } => {
                self.consecutive_failures = 0;
                match self.follow(at_ms, to_kpu, shutdown).await {
                    Follow::Running => Some(self.settings.grace_period),
                    Follow::GaveUp => Some(self.backoff()),
                    Follow::Shutdown => None,
                }
            }
        }
    }

    /// Collect, interpret, evaluate alarms and decide, without acting.
    pub async fn evaluate(&mut self) -> Result<Assessment, EvaluateError> {
        let name = self.settings.name.clone();
        let state = self
            .target
            .describe(&name)
            .await
            .map_err(EvaluateError::Target)?;
        let now_ms = self.clock.now_ms();
        let metrics = if self.queries.is_empty() {
            Vec::new()
        } else {
            self.source
                .fetch(&self.queries, now_ms - self.window_ms, now_ms)
                .await
                .map_err(EvaluateError::Metrics)?
        };
        let app = Application {
            name: name.clone(),
            status: state.status,
            kpu: state.kpu(),
            parallelism: state.parallelism,
            parallelism_per_kpu: state.parallelism_per_kpu,
            min_kpu: self.settings.min_kpu,
            max_kpu: self.settings.max_kpu,
            version_id: state.version_id,
            last_rescale_ms: self.last_rescale_ms,
            last_update_duration_secs: self.last_update_duration_secs,
        };
        let signals = self.interpret(now_ms, &app, &metrics);
        let alarms = self.alarms.update(&metrics, now_ms);
        let evaluation = Evaluation {
            now_ms,
            app,
            metrics,
            alarms,
            signals,
        };
        let raw = match self.policy.decide(&evaluation) {
            Ok(decision) => decision,
            Err(error) => {
                let message = format!("policy {} failed: {error}", self.policy.label());
                self.fail("plugin", message.clone());
                Decision::hold(format!("{message}; holding"))
            }
        };
        let decision = crate::plugin::validate::validate_decision(raw, &evaluation.app);
        Ok(Assessment {
            state,
            evaluation,
            decision,
        })
    }

    fn interpret(&mut self, now_ms: i64, app: &Application, metrics: &[Series]) -> Vec<Signal> {
        let mut signals = Vec::new();
        let mut failures = Vec::new();
        for interpreter in &mut self.interpreters {
            match interpreter.interpret(now_ms, app, metrics) {
                Ok(found) => signals.extend(found.into_iter().filter(|s| s.value.is_finite())),
                Err(error) => failures.push(format!(
                    "interpreter {} failed: {error}",
                    interpreter.label()
                )),
            }
        }
        for message in failures {
            self.fail("plugin", message);
        }
        signals
    }

    /// Records an evaluation and, unless holding or in dry-run, sends the
    /// update. Never sends one to an application that is not RUNNING.
    pub async fn act(&mut self, assessment: &Assessment) -> ActOutcome {
        let Assessment {
            state,
            evaluation,
            decision,
        } = assessment;
        self.events.emit(Event::Evaluated {
            application: self.settings.name.clone(),
            at_ms: evaluation.now_ms,
            kpu: state.kpu(),
            latest: evaluation
                .metrics
                .iter()
                .map(|s| (s.query.id.clone(), s.points.last().map(|p| p.value)))
                .collect(),
            alarms: evaluation.alarms.clone(),
            decision: decision.clone(),
            dry_run: self.settings.dry_run,
        });
        let Action::ScaleTo(to_kpu) = decision.action else {
            return ActOutcome::Held;
        };
        if self.settings.dry_run {
            return ActOutcome::Held;
        }
        if state.status != AppStatus::Running {
            self.fail(
                "not_running",
                format!(
                    "application is {}, not RUNNING; rescale to {to_kpu} KPU deferred",
                    state.status
                ),
            );
            return ActOutcome::NotSent {
                retry_after: self.settings.update_poll,
            };
        }
        self.send_update(state, to_kpu).await
    }

    async fn send_update(&mut self, state: &AppState, to_kpu: u32) -> ActOutcome {
        let name = self.settings.name.clone();
        let started = |this: &mut Self| {
            let at_ms = this.clock.now_ms();
            this.events.emit(Event::RescaleStarted {
                application: this.settings.name.clone(),
                at_ms,
                from_kpu: state.kpu(),
                to_kpu,
                version_id: state.version_id,
            });
            ActOutcome::Started { to_kpu, at_ms }
        };
        match self.target.rescale(&name, to_kpu, state).await {
            Ok(_) => started(self),
            Err(error) => {
                // A lost answer may hide an update that took effect: the
                // version id tells, so the same decision is never sent twice.
                if matches!(error, TargetError::Transient(_) | TargetError::Throttled(_))
                    && let Ok(now) = self.target.describe(&name).await
                    && now.version_id != state.version_id
                {
                    return started(self);
                }
                let retry_after = match &error {
                    // Somebody else updated it: re-read and re-decide at once.
                    TargetError::ConcurrentModification(_) => Duration::from_secs(1),
                    TargetError::ResourceInUse(_) => self.settings.update_poll,
                    TargetError::Throttled(_) | TargetError::Transient(_) => self.backoff(),
                    TargetError::LimitExceeded(_)
                    | TargetError::Invalid(_)
                    | TargetError::NotFound(_) => {
                        self.settings.evaluation_interval.max(BACKOFF_MAX)
                    }
                };
                let class = match &error {
                    TargetError::Throttled(_) => "throttled",
                    TargetError::ConcurrentModification(_) => "concurrent_modification",
                    TargetError::ResourceInUse(_) => "resource_in_use",
                    TargetError::LimitExceeded(_) => "limit_exceeded",
                    TargetError::Invalid(_) | TargetError::NotFound(_) => "rejected",
                    TargetError::Transient(_) => "transient",
                };
                self.fail(
                    class,
                    format!("UpdateApplication to {to_kpu} KPU failed: {error}"),
                );
                ActOutcome::NotSent { retry_after }
            }
        }
    }

    /// Polls the application every `update_poll` until it is RUNNING again,
    /// it fails, or `update_timeout` passes.
    async fn follow(
        &mut self,
        started_ms: i64,
        to_kpu: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Follow {
        let name = self.settings.name.clone();
        let timeout_ms = self.settings.update_timeout.as_millis() as i64;
        loop {
            if sleep_or_shutdown(self.settings.update_poll, shutdown).await {
                return Follow::Shutdown;
            }
            let now_ms = self.clock.now_ms();
            match self.target.describe(&name).await {
                Ok(state) if state.status == AppStatus::Running => {
                    let update_secs = ((now_ms - started_ms).max(0) / 1000) as u32;
                    self.last_rescale_ms = Some(now_ms);
                    self.last_update_duration_secs = Some(update_secs);
                    self.events.emit(Event::RescaleCompleted {
                        application: name.clone(),
                        at_ms: now_ms,
                        kpu: state.kpu(),
                        update_secs,
                    });
                    if state.kpu() != to_kpu {
                        self.fail(
                            "update_result",
                            format!(
                                "application is RUNNING at {} KPU, not the {to_kpu} KPU requested",
                                state.kpu()
                            ),
                        );
                    }
                    return Follow::Running;
                }
                Ok(state) if !state.status.is_transitional() => {
                    self.fail(
                        "update_failed",
                        format!("update to {to_kpu} KPU ended in {}", state.status),
                    );
                    return Follow::GaveUp;
                }
                Ok(_) => {}
                Err(error) => self.fail("describe", error.to_string()),
            }
            if now_ms - started_ms >= timeout_ms {
                self.fail(
                    "update_timeout",
                    format!(
                        "application not RUNNING {} s after the update to {to_kpu} KPU",
                        self.settings.update_timeout.as_secs()
                    ),
                );
                return Follow::GaveUp;
            }
        }
    }

    fn fail(&mut self, class: &str, message: String) {
        self.events.emit(Event::Failed {
            application: self.settings.name.clone(),
            at_ms: self.clock.now_ms(),
            class: class.to_owned(),
            message,
        });
    }

    /// Exponential back-off after consecutive failed steps: 5 s, 10 s, ...,
    /// at most 5 minutes.
    fn backoff(&mut self) -> Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let factor = 1u32 << (self.consecutive_failures - 1).min(6);
        (BACKOFF_MIN * factor).min(BACKOFF_MAX)
    }
}

enum Follow {
    Running,
    GaveUp,
    Shutdown,
}

/// Sleeps for `delay`; returns true if shutdown was requested meanwhile (or
/// before).
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}
