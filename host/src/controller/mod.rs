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
//!
//! Three disciplines make it safe to leave running unattended:
//! - **Durable state.** With a [`Journal`], every phase that matters is
//!   recorded before the action it announces (the `sending` record before
//!   UpdateApplication), and a restarted controller first resolves the
//!   journaled phase with [`crate::state::resume`]: an update already sent
//!   is never sent again, a grace period continues, a decision not sent is
//!   decided again.
//! - **Classified AWS failures** ([`Failure`]), each logged once and
//!   counted: throttling and 5xx back off exponentially with jitter (after
//!   the SDK's own retries); a stale version id (ConcurrentModification)
//!   re-reads and re-decides; a busy application (ResourceInUse) is polled;
//!   the account KPU limit (LimitExceeded) becomes a ceiling for later
//!   decisions; an invalid request is not repeated; an update that ends
//!   ROLLED_BACK or times out backs off.
//! - **Plugin quarantine** ([`quarantine`]): a policy or interpreter that
//!   keeps failing is left alone for a while and the application holds; a
//!   failing plugin never produces a scaling action.

pub mod quarantine;
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
use crate::state::{AppRecord, Journal, KpuLimit, Phase, Resume, StateError, Update};
use crate::target::{AppState, AppStatus, ScalingTarget, TargetError};
use crate::telemetry::{Event, Events};

pub use quarantine::{AfterFailure, Gate, PluginHealth, QuarantinePolicy, RetryReason};

/// The decide stage: a policy (in production, a sandboxed plugin instance).
pub trait Decide: Send {
    /// Decides on `evaluation`; an error means "no decision" and is turned
    /// into a hold by the controller.
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String>;
    /// Who decides, for logs (e.g. `step 0.1.0`).
    fn label(&self) -> String;
    /// Whether the policy's code changed since it was loaded (its file was
    /// replaced; the next call runs the new code). Asked at each evaluation
    /// while the policy is quarantined: a change retries it at once. The
    /// default never changes.
    fn changed(&mut self) -> bool {
        false
    }
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
    /// Whether the interpreter's code changed since it was loaded; see
    /// [`Decide::changed`].
    fn changed(&mut self) -> bool {
        false
    }
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
    /// When a failing plugin is quarantined, and for how long.
    pub quarantine: QuarantinePolicy,
}

impl Settings {
    /// Settings of `app`; `dry_run` comes from the command line, and the
    /// plugin quarantine is the default until
    /// [`Controller::with_quarantine`] sets the agent's.
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
            quarantine: QuarantinePolicy::DEFAULT,
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

/// The classes failures are logged and counted under (the `class` of
/// [`Event::Failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// AWS throttled a call, after the SDK's own retries.
    Throttled,
    /// A network failure, timeout or 5xx, after the SDK's own retries.
    Transient,
    /// UpdateApplication quoted a stale version id: somebody else updated
    /// the application first.
    ConcurrentModification,
    /// The application was busy with another operation.
    ResourceInUse,
    /// The account's KPU limit refused an update.
    LimitExceeded,
    /// AWS refused a request as invalid (InvalidArgument,
    /// InvalidApplicationConfiguration, ...).
    Invalid,
    /// The application does not exist.
    NotFound,
    /// A scale decision met an application that is not RUNNING.
    NotRunning,
    /// An update ended in a status other than RUNNING (ROLLED_BACK, ...).
    UpdateFailed,
    /// An update was not over within `update_timeout_secs`.
    UpdateTimeout,
    /// An update ended RUNNING, but not at the KPU requested.
    UpdateResult,
    /// Metrics could not be fetched.
    Metrics,
    /// A plugin call failed.
    Plugin,
    /// The journal could not be read or written.
    Journal,
    /// AWS refused the agent's identity or its permissions (AccessDenied,
    /// UnrecognizedClient, ExpiredToken), or no credentials could be
    /// loaded: an operator must act; retrying changes nothing.
    Permission,
}

impl Failure {
    /// The class as logged and counted (`throttled`, `limit_exceeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Throttled => "throttled",
            Failure::Transient => "transient",
            Failure::ConcurrentModification => "concurrent_modification",
            Failure::ResourceInUse => "resource_in_use",
            Failure::LimitExceeded => "limit_exceeded",
            Failure::Invalid => "invalid",
            Failure::NotFound => "not_found",
            Failure::NotRunning => "not_running",
            Failure::UpdateFailed => "update_failed",
            Failure::UpdateTimeout => "update_timeout",
            Failure::UpdateResult => "update_result",
            Failure::Metrics => "metrics",
            Failure::Plugin => "plugin",
            Failure::Journal => "journal",
            Failure::Permission => "permission",
        }
    }

    /// Every class, so that counters can start at 0 for each.
    pub const ALL: [Failure; 15] = [
        Failure::Throttled,
        Failure::Transient,
        Failure::ConcurrentModification,
        Failure::ResourceInUse,
        Failure::LimitExceeded,
        Failure::Invalid,
        Failure::NotFound,
        Failure::NotRunning,
        Failure::UpdateFailed,
        Failure::UpdateTimeout,
        Failure::UpdateResult,
        Failure::Metrics,
        Failure::Plugin,
        Failure::Journal,
        Failure::Permission,
    ];

    /// The class of a failed call to the target.
    pub fn of(error: &TargetError) -> Self {
        match error {
            TargetError::Throttled(_) => Failure::Throttled,
            TargetError::Transient(_) => Failure::Transient,
            TargetError::ConcurrentModification(_) => Failure::ConcurrentModification,
            TargetError::ResourceInUse(_) => Failure::ResourceInUse,
            TargetError::LimitExceeded(_) => Failure::LimitExceeded,
            TargetError::Invalid(_) => Failure::Invalid,
            TargetError::NotFound(_) => Failure::NotFound,
            TargetError::Permission(_) => Failure::Permission,
        }
    }
}

/// Shortest and longest back-off after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long a target that AWS refused as invalid is not asked for again:
/// the same request would be refused the same way, and an hour lets a
/// fixed application configuration be picked up without a restart.
const REFUSED_TARGET_HOLD_MS: i64 = 3_600_000;

/// How long a KPU limit met holds before the agent dares the refused size
/// again: other applications may have scaled in, or the quota been raised.
/// One refused call an hour is not a loop.
const LIMIT_RETRY_MS: i64 = 3_600_000;

/// The back-off after `failures` consecutive failed steps (1 or more):
/// 5 s, 10 s, 20 s, ... up to 5 minutes, with "equal jitter": half of it
/// fixed, the other half scaled by `unit` (in `[0, 1)`), so that
/// controllers that failed together do not retry together, and none
/// retries sooner than half its back-off.
pub fn backoff_delay(failures: u32, unit: f64) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    let ceiling = (BACKOFF_MIN * factor).min(BACKOFF_MAX);
    let half = ceiling / 2;
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Whole milliseconds, so that runs on a paused clock are reproducible.
    let jitter = Duration::from_millis((half.as_millis() as f64 * unit) as u64);
    half + jitter
}

/// A deterministic jitter source (splitmix64): seeded from the
/// application's name, so two applications draw differently while a test
/// (or a replay) draws the same numbers every run.
#[derive(Debug, Clone)]
struct Jitter(u64);

impl Jitter {
    fn seeded(name: &str) -> Self {
        // FNV-1a of the name.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Self(seed)
    }

    /// A number in `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A target AWS refused as invalid, not asked for again before `until_ms`.
#[derive(Debug, Clone, Copy)]
struct RefusedTarget {
    kpu: u32,
    until_ms: i64,
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
    /// What the journal holds (or would hold, without one).
    durable: AppRecord,
    journal: Option<Journal>,
    /// The last record the journal accepted.
    saved: Option<AppRecord>,
    /// A phase whose outcome is unknown (journaled before a restart, or an
    /// update whose answer was lost): resolved before the next decision.
    pending: Option<Phase>,
    consecutive_failures: u32,
    jitter: Jitter,
    refused: Option<RefusedTarget>,
    policy_health: PluginHealth,
    interpreter_health: Vec<PluginHealth>,
}

/// What resolving an in-doubt phase came to.
enum Step {
    /// Nothing in flight any more: evaluate now.
    Evaluate,
    /// Run again after this long.
    Next(Duration),
    /// Shutdown was requested.
    Stop,
}

impl Controller {
    /// A controller for `app`, reading from `source`, acting on `target` and
    /// deciding with `policy`. It keeps no journal until
    /// [`Controller::with_journal`] gives it one.
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
        let interpreter_health = vec![PluginHealth::default(); interpreters.len()];
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
            durable: AppRecord::default(),
            journal: None,
            saved: None,
            pending: None,
            consecutive_failures: 0,
            jitter: Jitter::seeded(&app.name),
            refused: None,
            policy_health: PluginHealth::default(),
            interpreter_health,
        }
    }

    /// Keeps the controller's state in `journal`, and resumes from what it
    /// holds: an in-flight phase is resolved at the first tick, before
    /// anything is decided. An unreadable journal is reported (and set
    /// aside) and the controller starts with no state. A dry-run
    /// controller takes no journal (it would overwrite the record of an
    /// agent that acts): the journal is dropped, and its lock released.
    pub fn with_journal(mut self, mut journal: Journal) -> Self {
        if self.settings.dry_run {
            return self;
        }
        match journal.load() {
            Ok(Some(file)) => {
                self.durable = file.record.clone();
                self.saved = Some(file.record);
                if self.durable.phase != Phase::Idle {
                    self.pending = Some(self.durable.phase.clone());
                }
            }
            Ok(None) => {}
            Err(error) => {
                let aside = match &error {
                    StateError::Corrupt { .. } => match journal.set_aside() {
                        Ok(path) => format!("; kept as {}", path.display()),
                        Err(e) => format!("; {e}"),
                    },
                    _ => String::new(),
                };
                self.fail(
                    Failure::Journal,
                    format!("{error}{aside}; starting with no state"),
                );
            }
        }
        self.journal = Some(journal);
        self
    }

    /// Quarantines failing plugins by `policy` instead of the default.
    pub fn with_quarantine(mut self, policy: QuarantinePolicy) -> Self {
        self.settings.quarantine = policy;
        self
    }

    /// Seeds the back-off jitter with `seed` instead of the application's
    /// name.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Jitter(seed);
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the controller would journal now.
    pub fn record(&self) -> &AppRecord {
        &self.durable
    }

    /// Runs the loop until `shutdown` becomes true. The first evaluation is
    /// immediate (after resolving a journaled phase).
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

    /// One pass of the loop: resolve a phase in doubt, evaluate, act, and
    /// follow an update through to its grace period. Returns when to run
    /// next, or `None` on shutdown.
    pub async fn tick(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Duration> {
        if let Some(phase) = self.pending.take() {
            match self.resolve(phase, shutdown).await {
                Step::Evaluate => {}
                Step::Next(delay) => return Some(delay),
                Step::Stop => return None,
            }
        }
        let assessment = match self.evaluate().await {
            Ok(a) => a,
            Err(error) => {
                let class = match &error {
                    EvaluateError::Metrics(MetricsError::Throttled(_)) => Failure::Throttled,
                    EvaluateError::Metrics(MetricsError::Permission(_)) => Failure::Permission,
                    EvaluateError::Metrics(_) => Failure::Metrics,
                    EvaluateError::Target(e) => Failure::of(e),
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
            ActOutcome::Started { .. } => {
                self.consecutive_failures = 0;
                let Some(update) = self.durable.phase.update().cloned() else {
                    // `started` always records the update; should that ever
                    // change, re-check rather than stop.
                    return Some(self.settings.update_poll);
                };
                match self.follow_through(&update, shutdown).await {
                    Step::Next(delay) => Some(delay),
                    Step::Stop => None,
                    Step::Evaluate => Some(Duration::ZERO),
                }
            }
        }
    }

    /// Resolves a phase whose outcome is unknown, against what
    /// DescribeApplication says now (see [`crate::state::resume`]).
    async fn resolve(&mut self, phase: Phase, shutdown: &mut watch::Receiver<bool>) -> Step {
        let name = self.settings.name.clone();
        let state = match self.target.describe(&name).await {
            Ok(state) => state,
            Err(error) => {
                self.fail(
                    Failure::of(&error),
                    format!("cannot resolve the {} phase: {error}", phase.name()),
                );
                self.pending = Some(phase);
                return Step::Next(self.backoff());
            }
        };
        let now_ms = self.clock.now_ms();
        let resume = crate::state::resume(&phase, &state, now_ms, self.settings.grace_period);
        self.events.emit(Event::Resumed {
            application: name.clone(),
            at_ms: now_ms,
            phase: phase.name().to_owned(),
            resume: resume.name().to_owned(),
            version_id: state.version_id,
        });
        match resume {
            Resume::Evaluate | Resume::Reevaluate { .. } | Resume::NotApplied { .. } => {
                self.set_phase(Phase::Idle);
                Step::Evaluate
            }
            Resume::Grace { remaining } => Step::Next(remaining),
            Resume::Follow { update } => self.follow_through(&update, shutdown).await,
            Resume::Finished { update } => Step::Next(self.completed(&update, &state)),
            Resume::Failed { update, status } => {
                self.fail(
                    Failure::UpdateFailed,
                    format!(
                        "the update to {} KPU (version {}) ended in {status}",
                        update.target_kpu, update.quoted_version_id
                    ),
                );
                self.set_phase(Phase::Idle);
                Step::Next(self.backoff())
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
        self.review_limit(state.kpu(), now_ms);
        let app = Application {
            name: name.clone(),
            status: state.status,
            kpu: state.kpu(),
            parallelism: state.parallelism,
            parallelism_per_kpu: state.parallelism_per_kpu,
            min_kpu: self.settings.min_kpu,
            max_kpu: self.max_kpu(),
            version_id: state.version_id,
            last_rescale_ms: self.durable.last_rescale_ms,
            last_update_duration_secs: self.durable.last_update_duration_secs,
        };
        let (signals, trouble) = self.interpret(now_ms, &app, &metrics).await;
        let alarms = self.alarms.update(&metrics, now_ms);
        let evaluation = Evaluation {
            now_ms,
            app,
            metrics,
            alarms,
            signals,
        };
        let raw = match trouble {
            // Signals are missing: deciding without them could scale on
            // half the picture.
            Some(why) => Decision::hold(format!("{why}; holding")),
            None => self.decide(&evaluation).await,
        };
        let decision = crate::plugin::validate::validate_decision(raw, &evaluation.app);
        let decision = self.apply_refusals(decision, &evaluation.app, now_ms);
        Ok(Assessment {
            state,
            evaluation,
            decision,
        })
    }

    /// The highest KPU decisions may reach: `max_kpu`, or below a KPU the
    /// account's limit refused.
    fn max_kpu(&self) -> u32 {
        match self.durable.kpu_limit {
            Some(limit) => limit
                .ceiling()
                .min(self.settings.max_kpu)
                .max(self.settings.min_kpu),
            None => self.settings.max_kpu,
        }
    }

    /// Lifts a recorded KPU limit that no longer says anything: the
    /// application runs at or above the refused size, or the limit is old.
    fn review_limit(&mut self, kpu: u32, now_ms: i64) {
        let Some(limit) = self.durable.kpu_limit else {
            return;
        };
        let reason = if kpu >= limit.refused_kpu {
            format!(
                "the application runs at {kpu} KPU, not below the {} KPU refused",
                limit.refused_kpu
            )
        } else if now_ms - limit.at_ms >= LIMIT_RETRY_MS {
            format!(
                "{} s have passed; the limit may have been raised",
                LIMIT_RETRY_MS / 1000
            )
        } else {
            return;
        };
        self.durable.kpu_limit = None;
        self.persist();
        self.events.emit(Event::LimitLifted {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            refused_kpu: limit.refused_kpu,
            reason,
        });
    }

    /// Says why a decision stops below `max_kpu` (a KPU limit met), and
    /// holds instead of asking again for a target AWS refused as invalid.
    fn apply_refusals(&self, mut decision: Decision, app: &Application, now_ms: i64) -> Decision {
        if let Some(limit) = self.durable.kpu_limit {
            let at_ceiling = match decision.action {
                Action::ScaleTo(kpu) => kpu == app.max_kpu,
                Action::Hold => app.kpu == app.max_kpu,
            };
            if at_ceiling && app.max_kpu < self.settings.max_kpu {
                decision.reason.push_str(&format!(
                    "; max lowered to {} KPU: the account's KPU limit refused {} KPU",
                    app.max_kpu, limit.refused_kpu
                ));
            }
        }
        if let (Action::ScaleTo(kpu), Some(refused)) = (decision.action, self.refused)
            && kpu == refused.kpu
            && now_ms < refused.until_ms
        {
            decision.action = Action::Hold;
            decision.reason.push_str(&format!(
                "; UpdateApplication refused {kpu} KPU as invalid, not asked again for another {} s, holding",
                secs_until(refused.until_ms, now_ms)
            ));
        }
        decision
    }

    /// Runs every interpreter that is not quarantined. Returns the signals,
    /// and why the evaluation must hold if an interpreter failed or is
    /// quarantined.
    async fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> (Vec<Signal>, Option<String>) {
        let mut signals = Vec::new();
        let mut trouble = Vec::new();
        for i in 0..self.interpreters.len() {
            let gate = {
                let interpreter = &mut self.interpreters[i];
                self.interpreter_health[i].gate(now_ms, || interpreter.changed())
            };
            let label = self.interpreters[i].label();
            match gate {
                Gate::Skip { until_ms } => {
                    trouble.push(format!(
                        "interpreter {label} is quarantined for another {} s",
                        secs_until(until_ms, now_ms)
                    ));
                    continue;
                }
                Gate::Retry(reason) => self.plugin_retried(&label, reason, now_ms),
                Gate::Call => {}
            }
            let mut interpreters = std::mem::take(&mut self.interpreters);
            let (call_app, call_metrics) = (app.clone(), metrics.to_vec());
            let (interpreters, result) = off_runtime(move || {
                let result = interpreters[i].interpret(now_ms, &call_app, &call_metrics);
                (interpreters, result)
            })
            .await;
            self.interpreters = interpreters;
            match result {
                Ok(found) => {
                    if self.interpreter_health[i].succeeded() {
                        self.plugin_recovered(&self.interpreters[i].label(), now_ms);
                    }
                    signals.extend(found.into_iter().filter(|s| s.value.is_finite()));
                }
                Err(error) => {
                    let label = self.interpreters[i].label();
                    let after =
                        self.interpreter_health[i].failed(now_ms, &self.settings.quarantine);
                    let message = format!("interpreter {label} failed: {error}");
                    self.plugin_failed(&label, message.clone(), after, now_ms);
                    trouble.push(message);
                }
            }
        }
        let trouble = (!trouble.is_empty()).then(|| trouble.join("; "));
        (signals, trouble)
    }

    /// Asks the policy, unless it is quarantined; a failure is a hold.
    async fn decide(&mut self, evaluation: &Evaluation) -> Decision {
        let now_ms = evaluation.now_ms;
        let gate = {
            let policy = &mut self.policy;
            self.policy_health.gate(now_ms, || policy.changed())
        };
        match gate {
            Gate::Skip { until_ms } => {
                return Decision::hold(format!(
                    "policy {} is quarantined for another {} s after failing repeatedly; holding",
                    self.policy.label(),
                    secs_until(until_ms, now_ms)
                ));
            }
            Gate::Retry(reason) => self.plugin_retried(&self.policy.label(), reason, now_ms),
            Gate::Call => {}
        }
        let mut policy = std::mem::replace(&mut self.policy, Box::new(Lent));
        let call_evaluation = evaluation.clone();
        let (policy, result) = off_runtime(move || {
            let result = policy.decide(&call_evaluation);
            (policy, result)
        })
        .await;
        self.policy = policy;
        match result {
            Ok(decision) => {
                if self.policy_health.succeeded() {
                    self.plugin_recovered(&self.policy.label(), now_ms);
                }
                decision
            }
            Err(error) => {
                let label = self.policy.label();
                let after = self.policy_health.failed(now_ms, &self.settings.quarantine);
                let message = format!("policy {label} failed: {error}");
                self.plugin_failed(&label, message.clone(), after, now_ms);
                Decision::hold(format!("{message}; holding"))
            }
        }
    }

    fn plugin_failed(&self, label: &str, message: String, after: AfterFailure, now_ms: i64) {
        self.fail(Failure::Plugin, message);
        if let AfterFailure::Quarantined { failures, until_ms } = after {
            self.events.emit(Event::PluginQuarantined {
                application: self.settings.name.clone(),
                at_ms: now_ms,
                plugin: label.to_owned(),
                failures,
                until_ms,
            });
        }
    }

    fn plugin_retried(&self, label: &str, reason: RetryReason, now_ms: i64) {
        self.events.emit(Event::PluginRetried {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            plugin: label.to_owned(),
            reason: reason.describe().to_owned(),
        });
    }

    fn plugin_recovered(&self, label: &str, now_ms: i64) {
        self.events.emit(Event::PluginRecovered {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            plugin: label.to_owned(),
        });
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
        if self.settings.dry_run {
            return ActOutcome::Held;
        }
        let Action::ScaleTo(to_kpu) = decision.action else {
            // Settled (or still holding): nothing is in flight.
            self.set_phase(Phase::Idle);
            return ActOutcome::Held;
        };
        if state.status != AppStatus::Running {
            let already = matches!(&self.durable.phase,
                Phase::Decided { target_kpu, .. } if *target_kpu == to_kpu);
            if !already {
                self.set_phase(Phase::Decided {
                    target_kpu: to_kpu,
                    reason: decision.reason.clone(),
                    at_ms: evaluation.now_ms,
                });
            }
            self.fail(
                Failure::NotRunning,
                format!(
                    "application is {}, not RUNNING; rescale to {to_kpu} KPU deferred",
                    state.status
                ),
            );
            return ActOutcome::NotSent {
                retry_after: self.settings.update_poll,
            };
        }
        self.send_update(state, to_kpu, &decision.reason).await
    }

    /// Journals the update, then sends it. A decision sent at once is
    /// journaled as `sending` only (it carries the decision's target,
    /// reason and time): the recovery is the same as with a `decided`
    /// record first, for one fsync instead of two.
    async fn send_update(&mut self, state: &AppState, to_kpu: u32, reason: &str) -> ActOutcome {
        let name = self.settings.name.clone();
        let update = Update {
            target_kpu: to_kpu,
            from_kpu: state.kpu(),
            quoted_version_id: state.version_id,
            reason: reason.to_owned(),
            started_ms: self.clock.now_ms(),
        };
        if !self.set_phase(Phase::Sending {
            update: update.clone(),
        }) {
            // Without the record, a crash after the call could not tell
            // whether it went out: better not to send it at all.
            return ActOutcome::NotSent {
                retry_after: self.backoff(),
            };
        }
        let error = match self.target.rescale(&name, to_kpu, state).await {
            Ok(new_version_id) => return self.started(update, new_version_id),
            Err(error) => error,
        };
        let class = Failure::of(&error);
        let message = format!("UpdateApplication to {to_kpu} KPU failed: {error}");
        if matches!(error, TargetError::Transient(_) | TargetError::Throttled(_)) {
            // A lost answer may hide an update that took effect: the
            // version id tells, so the same decision is never sent twice.
            match self.target.describe(&name).await {
                Ok(now) if now.version_id > update.quoted_version_id => {
                    self.fail(
                        class,
                        format!(
                            "{message}; the version id moved to {}, so it took effect",
                            now.version_id
                        ),
                    );
                    return self.started(update, now.version_id);
                }
                Ok(_) => {}
                Err(describe_error) => {
                    // Unknown: keep the `sending` record and resolve it
                    // before deciding anything else.
                    self.fail(
                        class,
                        format!(
                            "{message}; whether it took effect is unknown until DescribeApplication answers ({describe_error})"
                        ),
                    );
                    self.pending = Some(self.durable.phase.clone());
                    return ActOutcome::NotSent {
                        retry_after: self.backoff(),
                    };
                }
            }
        }
        self.fail(class, message);
        self.not_sent(&update, &error)
    }

    /// UpdateApplication was accepted (or its effect seen).
    fn started(&mut self, update: Update, new_version_id: u64) -> ActOutcome {
        let at_ms = self.clock.now_ms();
        let to_kpu = update.target_kpu;
        self.events.emit(Event::RescaleStarted {
            application: self.settings.name.clone(),
            at_ms,
            from_kpu: update.from_kpu,
            to_kpu,
            version_id: update.quoted_version_id,
        });
        self.set_phase(Phase::Sent {
            update,
            new_version_id,
        });
        ActOutcome::Started { to_kpu, at_ms }
    }

    /// What to do after UpdateApplication certainly did not take effect.
    fn not_sent(&mut self, update: &Update, error: &TargetError) -> ActOutcome {
        let now_ms = self.clock.now_ms();
        let retry_after = match error {
            // Somebody else updated it: re-read and re-decide at once, with
            // the new version id and status.
            TargetError::ConcurrentModification(_) => Duration::from_secs(1),
            TargetError::ResourceInUse(_) => self.settings.update_poll,
            TargetError::Throttled(_) | TargetError::Transient(_) => self.backoff(),
            TargetError::LimitExceeded(_) => {
                // Only a scale-out says where the ceiling is; asking for
                // less than now and being refused says nothing about more.
                if update.target_kpu > update.from_kpu {
                    let limit = KpuLimit {
                        refused_kpu: update.target_kpu,
                        at_ms: now_ms,
                    };
                    self.durable.kpu_limit = Some(limit);
                    self.events.emit(Event::LimitRecorded {
                        application: self.settings.name.clone(),
                        at_ms: now_ms,
                        refused_kpu: limit.refused_kpu,
                        ceiling_kpu: limit.ceiling(),
                    });
                    self.settings.evaluation_interval
                } else {
                    self.backoff()
                }
            }
            TargetError::Permission(_) => self.backoff(),
            TargetError::Invalid(_) | TargetError::NotFound(_) => {
                self.refused = Some(RefusedTarget {
                    kpu: update.target_kpu,
                    until_ms: now_ms + REFUSED_TARGET_HOLD_MS,
                });
                self.backoff()
            }
        };
        self.set_phase(Phase::Idle);
        ActOutcome::NotSent { retry_after }
    }

    /// Follows an update that took effect to its end, then starts the
    /// grace period (or backs off if it failed).
    async fn follow_through(
        &mut self,
        update: &Update,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Step {
        match self.follow(update, shutdown).await {
            Follow::Running(state) => Step::Next(self.completed(update, &state)),
            Follow::GaveUp => {
                self.set_phase(Phase::Idle);
                Step::Next(self.backoff())
            }
            Follow::Shutdown => Step::Stop,
        }
    }

    /// Polls the application every `update_poll` until it is RUNNING again,
    /// it fails, or `update_timeout` has passed since the update was sent.
    async fn follow(&mut self, update: &Update, shutdown: &mut watch::Receiver<bool>) -> Follow {
        let name = self.settings.name.clone();
        let to_kpu = update.target_kpu;
        let timeout_ms = self.settings.update_timeout.as_millis() as i64;
        loop {
            if sleep_or_shutdown(self.settings.update_poll, shutdown).await {
                return Follow::Shutdown;
            }
            let now_ms = self.clock.now_ms();
            match self.target.describe(&name).await {
                Ok(state) if state.status == AppStatus::Running => {
                    return Follow::Running(state);
                }
                Ok(state) if !state.status.is_transitional() => {
                    self.fail(
                        Failure::UpdateFailed,
                        format!("update to {to_kpu} KPU ended in {}", state.status),
                    );
                    return Follow::GaveUp;
                }
                Ok(_) => {
                    if !matches!(self.durable.phase, Phase::Updating { .. }) {
                        self.set_phase(Phase::Updating {
                            update: update.clone(),
                            observed_ms: now_ms,
                        });
                    }
                }
                Err(error) => self.fail(
                    Failure::of(&error),
                    format!("DescribeApplication while following the update to {to_kpu} KPU failed: {error}"),
                ),
            }
            if now_ms - update.started_ms >= timeout_ms {
                self.fail(
                    Failure::UpdateTimeout,
                    format!(
                        "application not RUNNING {} s after the update to {to_kpu} KPU",
                        self.settings.update_timeout.as_secs()
                    ),
                );
                return Follow::GaveUp;
            }
        }
    }

    /// The update is over and the application RUNNING: records it and
    /// starts the grace period, whose length is returned.
    fn completed(&mut self, update: &Update, state: &AppState) -> Duration {
        let now_ms = self.clock.now_ms();
        let update_secs =
            u32::try_from((now_ms - update.started_ms).max(0) / 1000).unwrap_or(u32::MAX);
        self.durable.last_rescale_ms = Some(now_ms);
        self.durable.last_update_duration_secs = Some(update_secs);
        self.events.emit(Event::RescaleCompleted {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            kpu: state.kpu(),
            update_secs,
        });
        if state.kpu() != update.target_kpu {
            self.fail(
                Failure::UpdateResult,
                format!(
                    "application is RUNNING at {} KPU, not the {} KPU requested",
                    state.kpu(),
                    update.target_kpu
                ),
            );
        }
        let grace = self.settings.grace_period;
        self.set_phase(Phase::Grace {
            kpu: state.kpu(),
            until_ms: now_ms + grace.as_millis() as i64,
        });
        grace
    }

    /// Moves to `phase` and journals it. Returns false if the journal
    /// refused the record (already reported).
    fn set_phase(&mut self, phase: Phase) -> bool {
        self.durable.phase = phase;
        self.persist()
    }

    /// Writes the record if it differs from the last one written. Returns
    /// false if the journal refused it (reported as a `journal` failure).
    fn persist(&mut self) -> bool {
        if self.saved.as_ref() == Some(&self.durable) {
            return true;
        }
        let Some(journal) = self.journal.as_mut() else {
            return true;
        };
        match journal.save(&self.durable, self.clock.now_ms()) {
            Ok(()) => {
                self.saved = Some(self.durable.clone());
                true
            }
            Err(error) => {
                self.fail(Failure::Journal, error.to_string());
                false
            }
        }
    }

    fn fail(&self, class: Failure, message: String) {
        self.events.emit(Event::Failed {
            application: self.settings.name.clone(),
            at_ms: self.clock.now_ms(),
            class: class.as_str().to_owned(),
            message,
        });
    }

    /// The next back-off after one more consecutive failed step; see
    /// [`backoff_delay`].
    fn backoff(&mut self) -> Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        backoff_delay(self.consecutive_failures, self.jitter.next())
    }
}

/// Whole seconds from `now_ms` to `until_ms`, rounded up.
fn secs_until(until_ms: i64, now_ms: i64) -> i64 {
    (until_ms.saturating_sub(now_ms).max(0) + 999) / 1000
}

enum Follow {
    Running(AppState),
    GaveUp,
    Shutdown,
}

/// Runs a plugin call on tokio's blocking pool. A call may run up to the
/// plugin deadline (up to 60 s): on a runtime worker it would stall every
/// controller, the metrics batcher, `/healthz` and the SDK's timers with
/// it. A panic in the call is the caller's, as if the call were inline.
async fn off_runtime<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(call).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task, and
            // then this controller's task is being dropped too.
            Err(error) => panic!("a plugin call was cancelled: {error}"),
        },
    }
}

/// Stands in for the policy while it is lent to a blocking call; the
/// controller is borrowed for the whole call, so nothing can ask it.
struct Lent;

impl Decide for Lent {
    fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
        Err("the policy is busy in another call".to_owned())
    }
    fn label(&self) -> String {
        "(policy in a call)".to_owned()
    }
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
