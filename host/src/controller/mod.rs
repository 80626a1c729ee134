//! The control loop of one application: collect -> interpret -> evaluate ->
//! decide -> act -> follow -> record, then requeue.
//!
//! This is the reference design's state machine, as code: evaluate; on a
//! scale decision call UpdateApplication; poll every `update_poll_secs`
//! while the application is UPDATING; wait `grace_period_secs`; evaluate
//! again and scale again if the policy still says so; settle when it holds
//! (a policy holds at min or max KPU). One controller task owns one
//! application, so an application never has two updates in flight, and an
//! application that is not RUNNING is never updated.
//!
//! The decisions about what to do next live in a pure state machine
//! ([`machine`]): `step(observation, settings, now) -> (next command or
//! requeue, events)`, with the durable record inside, and no I/O. This
//! module is its driver, in the manner of a kube-rs reconciler: it runs the
//! command the machine asks for (DescribeApplication, an evaluation,
//! UpdateApplication), persists the record whenever it changed (the
//! `sending` record before UpdateApplication goes out: write-ahead), emits
//! the events, and sleeps on tokio time when the machine says wait, so the
//! simulator drives the same code on a paused clock.
//!
//! Three disciplines make it safe to leave running unattended:
//! - **Durable state.** With a [`Journal`], a restarted controller resumes
//!   the journaled phase ([`Machine::resume`]): an update already sent is
//!   never sent again, a grace period continues, a decision not sent is
//!   decided again. An unreadable journal fails closed ([`Machine::unknown`]):
//!   the application is read and one grace period held before deciding.
//! - **Classified AWS failures** ([`Failure`]), each logged and counted by
//!   one error policy in the machine: UpdateApplication is sent once (the
//!   SDK does not retry it) and any failure of it is resolved against
//!   DescribeApplication before anything else is decided.
//! - **Plugins off the runtime.** Every plugin call runs on a blocking
//!   thread (`spawn_blocking`), never on a tokio worker, and a plugin that
//!   keeps failing is quarantined ([`quarantine`]): the application holds.

pub mod fight;
pub mod machine;
pub mod quarantine;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;

use crate::alarm::{AlarmTracker, ReportedState};
use crate::clock::Clock;
use crate::config::ApplicationConfig;
use crate::metrics::alarms::AlarmStates;
use crate::metrics::{MetricQuery, MetricSource, MetricsError, Series};
use crate::model::{Action, Application, Decision, Evaluation, Signal};
use crate::plugin::{FailureClass, PluginError, Refresh};
use crate::state::{AppRecord, Journal, JournalFile, Phase, StateError};
use crate::target::{AppState, ScalingTarget, TargetError, Words};
use crate::telemetry::failing::Failing;
use crate::telemetry::{Event, Events};

pub use machine::{Command, Evaluated, Jitter, Machine, Next, Observation, backoff_delay};
pub use quarantine::{AfterFailure, Gate, PluginHealth, QuarantinePolicy, RetryReason};

/// The decide stage: a policy (in production, a sandboxed plugin instance).
pub trait Decide: Send {
    /// Decides on `evaluation`; an error means "no decision" and is turned
    /// into a hold by the controller.
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, PluginFailure>;
    /// Who decides, for logs (e.g. `step 0.1.0`).
    fn label(&self) -> String;
    /// Follows the policy's code: if its file was replaced, loads the new
    /// one and runs it if it loads and accepts the parameters, else keeps
    /// the running one (the agent's plugins load it on a thread of their
    /// own and answer `Unchanged` until the first call after that load
    /// finished, which swaps it in). Asked before every call, on the plugin
    /// thread (it may compile); new code also ends a quarantine. The
    /// default never changes.
    fn refresh(&mut self) -> Refresh {
        Refresh::Unchanged
    }
    /// Whether the next call runs on an instance that has not decided yet
    /// (loaded, reloaded from a new file, or started again after a trap or
    /// timeout), so remembers nothing of earlier evaluations: the
    /// controller then hands it the policy's history (`history_days`)
    /// again. Asked on the plugin thread, after [`Decide::refresh`]. The
    /// default, a policy that keeps what it learnt for the controller's
    /// life, never does.
    fn starts_afresh(&self) -> bool {
        false
    }
    /// Whether the policy decides on nothing but the states of its alarms
    /// and the application (KPU, bounds, status), so that the host may
    /// skip an evaluation in which no alarm can change state (lazy
    /// polling; see [`is_alarm_driven`] for what the application must
    /// also be). True only for code the host ships and knows, the
    /// built-in `step`: the plugin contract has no way for a plugin to
    /// say so, and a file standing in for `step` may read anything. The
    /// default says no.
    fn reads_only_alarm_states(&self) -> bool {
        false
    }
}

/// The interpret stage: derives signals from series (in production, a
/// sandboxed plugin instance).
pub trait Interpret: Send {
    /// Derives signals; an error makes the evaluation hold without asking
    /// the policy, and counts toward the interpreter's quarantine.
    fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, PluginFailure>;
    /// Who interprets, for logs.
    fn label(&self) -> String;
    /// The interpreter's file, for logs (empty when there is none).
    fn file(&self) -> String {
        String::new()
    }
    /// Follows the interpreter's code; see [`Decide::refresh`].
    fn refresh(&mut self) -> Refresh {
        Refresh::Unchanged
    }
}

/// What [`Controller::run_until_stopped`] gives back (by default: no
/// journal, nothing quarantined, as a task that ran no controller).
#[derive(Debug, Default)]
pub struct Stopped {
    /// The journal, still locked ([`Controller::into_journal`]).
    pub journal: Option<Journal>,
    /// Which plugins were quarantined at the stop.
    pub quarantined: QuarantinedPlugins,
}

/// Which of a controller's plugins were quarantined: its policy, and its
/// interpreters in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuarantinedPlugins {
    /// The policy.
    pub policy: bool,
    /// Each interpreter.
    pub interpreters: Vec<bool>,
}

/// Why a plugin gave no answer: its class (what quarantine events and the
/// plugin failure counter report) and what happened, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    /// The kind of failure.
    pub class: FailureClass,
    /// What happened, naming the plugin.
    pub message: String,
}

impl PluginFailure {
    /// A failure of `class`.
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<PluginError> for PluginFailure {
    /// A failed call keeps its class; a plugin whose (new) file cannot be
    /// loaded at all is not a valid plugin: `Invalid`.
    fn from(error: PluginError) -> Self {
        Self {
            class: error.class().unwrap_or(FailureClass::Invalid),
            message: error.to_string(),
        }
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
    /// Decide and record, but never rescale (the target's rescale call is
    /// never made).
    pub dry_run: bool,
    /// How the application's messages name capacity, the calls and the
    /// ceiling (its target's vocabulary).
    pub words: Words,
    /// When a failing plugin is quarantined, and for how long.
    pub quarantine: QuarantinePolicy,
    /// Honour a hold's `next_evaluation_secs` (bounded by
    /// [`machine::LAZY_MAX_INTERVALS`] intervals), and let the host skip
    /// the polls of an alarm-driven policy that cannot change an alarm.
    pub lazy_polling: bool,
}

impl Settings {
    /// Settings of `app`; `dry_run` comes from the command line (the
    /// application's own `mode = "dry-run"` makes it a dry run too), and the
    /// plugin quarantine is the default until
    /// [`Controller::with_quarantine`] sets the agent's.
    pub fn from_config(app: &ApplicationConfig, dry_run: bool) -> Self {
        let interval = app.evaluation_interval();
        Self {
            name: app.name.clone(),
            min_kpu: app.min_kpu,
            max_kpu: app.max_kpu,
            evaluation_interval: secs(interval),
            update_poll: secs(app.update_poll_secs),
            update_timeout: secs(app.update_timeout_secs),
            grace_period: secs(app.grace_period_secs),
            dry_run: dry_run || app.mode == crate::config::Mode::DryRun,
            words: Words::from(app.target),
            quarantine: QuarantinePolicy::DEFAULT,
            // Absent only in a table that was not loaded (tests): the
            // agent's default.
            lazy_polling: app.lazy_polling.unwrap_or(true),
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// `metrics` without the datapoints of periods that had not ended at
/// `now_ms`, the fetch's end. CloudWatch answers the period under way as
/// one value over the part of it seen so far (a `Sum` a fraction of the
/// period's); interpreters and policies are promised one value per whole
/// period, and alarms judge whole periods alone.
fn whole_periods(mut metrics: Vec<Series>, now_ms: i64) -> Vec<Series> {
    for series in &mut metrics {
        let period_ms = i64::from(series.query.period_secs) * 1000;
        series
            .points
            .retain(|p| p.timestamp_ms.saturating_add(period_ms) <= now_ms);
    }
    metrics
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
    // Saturating: a huge `period_secs` must not wrap into a tiny window.
    alarm_need.max(longest_period.saturating_mul(10)).max(600)
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
    /// A plugin call panicked on its thread (a bug of the host, never of a
    /// plugin: guest failures are traps, not panics).
    #[error("a plugin call panicked: {0}")]
    Panicked(String),
    /// A stop was asked while the evaluation waited for a read; the read
    /// was given up ([`Controller::run_until_stopped`]).
    #[error("stopped while reading the application or its metrics")]
    Stopped,
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
        /// Why, as the log says it (`class: message` of the step's last
        /// failure), when a step failed.
        reason: Option<String>,
    },
}

/// Why the `once` command may not act now ([`Controller::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// How long until it may (a grace period's time left, an update's
    /// next read, a back-off).
    pub retry_after: Duration,
    /// Why, in words.
    pub reason: String,
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
    /// The application's KPU quota refused an update.
    LimitExceeded,
    /// AWS refused a request as invalid (InvalidArgument,
    /// InvalidApplicationConfiguration, ...).
    Invalid,
    /// The application does not exist.
    NotFound,
    /// A scale decision met an application that is not RUNNING.
    NotRunning,
    /// An update ended in a status other than RUNNING (ROLLED_BACK, ...),
    /// or was rolled back (it did not start at its size).
    UpdateFailed,
    /// An update was not over within `update_timeout_secs`.
    UpdateTimeout,
    /// An update ended RUNNING, but not at the KPU requested.
    UpdateResult,
    /// An evaluation found the application's version id moved without an
    /// update of this agent: another writer (reported once per move; the
    /// agent then waits the update out and holds a grace period).
    ForeignUpdate,
    /// Metrics could not be fetched.
    Metrics,
    /// A plugin call failed.
    Plugin,
    /// The journal could not be read at start, or a save of it failed and
    /// held an update back (counted once per update not sent; the saves
    /// retried in between are not counted).
    Journal,
    /// AWS refused the agent's identity or its permissions (AccessDenied,
    /// UnrecognizedClient, ExpiredToken), or no credentials could be
    /// loaded: an operator must act; retrying changes nothing.
    Permission,
    /// A metric's datapoint was seen sooner after its period ended than
    /// its `min_publication_delay_secs` promised: the application stops
    /// relying on the promise (lazy polling goes on without it).
    PublicationDelay,
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
            Failure::ForeignUpdate => "foreign_update",
            Failure::Metrics => "metrics",
            Failure::Plugin => "plugin",
            Failure::Journal => "journal",
            Failure::Permission => "permission",
            Failure::PublicationDelay => "publication_delay",
        }
    }

    /// Every class, so that counters can start at 0 for each.
    pub const ALL: [Failure; 17] = [
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
        Failure::ForeignUpdate,
        Failure::Metrics,
        Failure::Plugin,
        Failure::Journal,
        Failure::Permission,
        Failure::PublicationDelay,
    ];

    /// The class of a failed call to the target.
    pub fn of(error: &TargetError) -> Self {
        match error {
            TargetError::Throttled(_) => Failure::Throttled,
            TargetError::Transient(_) => Failure::Transient,
            TargetError::ConcurrentModification(_) => Failure::ConcurrentModification,
            TargetError::ResourceInUse(_) => Failure::ResourceInUse,
            TargetError::LimitExceeded(_) | TargetError::SlotsExceeded { .. } => {
                Failure::LimitExceeded
            }
            TargetError::Invalid(_) => Failure::Invalid,
            TargetError::NotFound(_) => Failure::NotFound,
            TargetError::Permission(_) => Failure::Permission,
            TargetError::Request(_) => Failure::Invalid,
        }
    }
}

/// How plugin calls are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginThreads {
    /// On tokio's blocking pool (`spawn_blocking`): a slow plugin never
    /// holds a runtime worker, so the other controllers, the metrics
    /// batcher, the HTTP listener and the SDK's timers keep running.
    Blocking,
    /// On the controller's own task. Only for a runtime that runs nothing
    /// else and waits on a paused clock: the simulator, where a call
    /// handed to another thread would only cost time.
    Inline,
    /// The simulator's: a runtime that runs nothing else, on a paused
    /// clock. Calls run inline on the runtime's own thread, marked as
    /// plugin work (`plugin::on_plugin_thread`): a hand-off to another
    /// thread would only cost time (a 7-day run makes 40 000 calls); and the plugins
    /// loaded at start serve the whole run, their files not followed (a
    /// file changed mid-run would make the run irreproducible, and a 7-day
    /// run would stat them 40 000 times).
    Simulation,
}

impl PluginThreads {
    /// Whether plugins follow their files (reload when they change).
    fn follows_files(self) -> bool {
        self != PluginThreads::Simulation
    }
}

/// How long a history read retried after a failure may take before it
/// counts as failed too: the evaluation it is made in waits for it (a
/// read of 15 days of three metrics takes one call, well under a second).
pub const HISTORY_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// History reads (`history_days`, read by the controller) that may fail in a row
/// before the policy goes on without its history: 5, 10, 20, 40 and 60
/// minutes apart (each drawn between half and all of that), within about
/// two and a quarter hours of the first.
pub const HISTORY_READS: u32 = 6;

/// The longest wait before history read `failed + 1`, after `failed` (1
/// or more) failed in a row: 5 minutes, doubling, at most an hour; the
/// wait is drawn between half and all of it.
pub fn history_retry_ms(failed: u32) -> i64 {
    let doublings = failed.saturating_sub(1).min(4);
    (300_000_i64 << doublings).min(3_600_000)
}

/// The control loop of one application: the [`Machine`] and the ports it
/// drives.
pub struct Controller {
    settings: Settings,
    queries: Vec<MetricQuery>,
    window_ms: i64,
    /// `[application.policy] history_days`: days of history handed to the
    /// policy when it starts (see [`Controller::decide`]).
    history_days: u32,
    /// Whether the policy's next call gets the history although it does
    /// not start afresh: its first call (a [`Decide`] that never starts
    /// afresh gets it there only).
    history_due: bool,
    /// The call the history was read for failed: a new instance of the
    /// same code gets none (it may be the history it cannot take), new
    /// code does.
    history_refused: bool,
    /// History reads that failed in a row ([`HISTORY_READS`] at most).
    history_failed_reads: u32,
    /// When a failed history read may be tried again.
    history_retry_at_ms: i64,
    /// The last failure a step of the state machine reported
    /// (`class: message`), for [`Controller::act`]'s answer.
    step_failure: Option<String>,
    alarms: AlarmTracker,
    /// Where `source = "cloudwatch"` alarms' states are read; `None` when
    /// the run has no CloudWatch (the simulator).
    alarm_states: Option<Arc<dyn AlarmStates>>,
    /// Whether the next DescribeApplication answer is to be checked for
    /// MSF's own autoscaling (once, from [`Controller::run_until_stopped`]:
    /// `once` says it in its report).
    autoscaling_unchecked: bool,
    source: Arc<dyn MetricSource>,
    target: Arc<dyn ScalingTarget>,
    /// Taken out while a call runs on a blocking thread.
    policy: Option<Box<dyn Decide>>,
    interpreters: Vec<Box<dyn Interpret>>,
    clock: Clock,
    events: Events,
    machine: Machine,
    /// Shared with the blocking thread a save runs on: a save that never
    /// comes back (a runtime shutting down) cannot take the journal, and
    /// its lock, with it.
    journal: Option<Arc<Mutex<Journal>>>,
    /// The last record the journal accepted.
    saved: Option<AppRecord>,
    /// Whether saves fail now, since when and why: what makes a stretch of
    /// failed saves one warning, reminders and one recovery line.
    journal_failing: Failing,
    policy_health: PluginHealth,
    interpreter_health: Vec<PluginHealth>,
    /// Per interpreter, whether its running file already gave a signal
    /// that is not a finite number (told at WARN once per file).
    dropped_told: Vec<bool>,
    threads: PluginThreads,
    /// Whether the application lets a policy that reads nothing but the
    /// alarms' states and the application
    /// ([`Decide::reads_only_alarm_states`]) skip evaluations (see
    /// [`is_alarm_driven`]).
    alarm_driven: bool,
    /// The promised publication delay of each metric that makes one
    /// (`min_publication_delay_secs`), by id: checked on every fetch, and
    /// used by the lazy skip rule until one is broken.
    publication_delays: BTreeMap<String, u32>,
    /// Whether a datapoint was seen sooner than promised: the skip rule
    /// then makes no use of any promise of this application.
    promise_broken: bool,
    /// Each change is an operator's word to lift the recorded KPU limit and
    /// a held size, and to end a stand-down if [`Controller::with_resumes`]
    /// names the application (see [`Controller::with_ceiling_lifts`]).
    ceiling_lifts: Option<watch::Receiver<u64>>,
    /// The applications a reload resumes ([`fight::Resumes`]); none: no
    /// stand-down is ever lifted.
    resumes: Option<fight::Resumes>,
    /// Lift before the first step what [`Controller::with_ceiling_lifts`]
    /// lifts ([`Controller::lifting_at_start`]).
    lift_at_start: bool,
    /// The stop signal of [`Controller::run_until_stopped`], which gives
    /// up a read in flight (see [`unless_stopped`]); `None` before it runs
    /// (the `once` command, the tests' direct calls).
    stop: Option<watch::Receiver<bool>>,
}

/// Whether `app` lets an evaluation in which no alarm changed state be
/// skipped, when its policy reads nothing but the alarms' states and the
/// application ([`Decide::reads_only_alarm_states`]: the built-in `step`,
/// the reference design's and MSF's rules, the `seed` and `msf-builtin`
/// presets): with no interpreter (signals are made only where an
/// evaluation runs), every metric from CloudWatch, which keeps each
/// datapoint for a later poll (a Flink job's metrics, `source = "flink"`,
/// are sampled only where an evaluation runs, so a skipped interval would
/// leave its period with no datapoint for good, and an alarm would fire
/// later than it should), and no metric math that calls a function
/// ([`crate::metrics::math::Expr::calls_a_function`]: `FILL` gives a
/// period not published yet a value that its datapoint later replaces,
/// and `SUM` of a list a value before every series has one, so a value
/// fetched there is not final, which the skip rule assumes).
pub fn is_alarm_driven(app: &ApplicationConfig) -> bool {
    app.interpreters.is_empty()
        && app.metrics.iter().all(|m| {
            m.source == crate::config::MetricSourceKind::Cloudwatch
                && m.expression.as_deref().is_none_or(|text| {
                    crate::metrics::math::parse(text).is_ok_and(|e| !e.calls_a_function())
                })
        })
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
            .map(|m| MetricQuery::from_config(m, &app.metrics))
            .collect();
        let interpreter_health = vec![PluginHealth::default(); interpreters.len()];
        let dropped_told = vec![false; interpreters.len()];
        let settings = Settings::from_config(app, dry_run);
        // A signal gets one value per evaluation: its alarm periods are the
        // evaluation interval.
        let signal_period_secs =
            u32::try_from(settings.evaluation_interval.as_secs()).unwrap_or(u32::MAX);
        let events = events.with_words(settings.words);
        let mut machine = Machine::new(Jitter::seeded(&app.name));
        if settings.dry_run {
            // A dry run keeps no journal, so it starts as a run that acts
            // starts without one: it holds the grace period owed to an
            // update that ended moments ago, and decides when that run
            // would (the point of a dry run is to show what it would do).
            machine.started_without_journal();
        }
        Self {
            settings,
            queries,
            window_ms: i64::from(fetch_window_secs(app)) * 1000,
            history_days: app.policy.history_days,
            history_due: true,
            history_refused: false,
            history_failed_reads: 0,
            history_retry_at_ms: i64::MIN,
            step_failure: None,
            alarms: AlarmTracker::new(&app.alarms, clock.now_ms())
                .with_signal_period(signal_period_secs),
            alarm_states: None,
            autoscaling_unchecked: false,
            source,
            target,
            policy: Some(policy),
            interpreters,
            clock,
            events,
            machine,
            journal: None,
            saved: None,
            journal_failing: Failing::default(),
            policy_health: PluginHealth::default(),
            interpreter_health,
            dropped_told,
            threads: PluginThreads::Blocking,
            alarm_driven: is_alarm_driven(app),
            publication_delays: app
                .metrics
                .iter()
                .filter_map(|m| Some((m.id.clone(), m.min_publication_delay_secs?)))
                .collect(),
            promise_broken: false,
            ceiling_lifts: None,
            resumes: None,
            lift_at_start: false,
            stop: None,
        }
    }

    /// Keeps the controller's state in `journal`, resuming from `loaded`,
    /// what [`Journal::load`] read from it: an in-flight phase is resolved
    /// at the first step, before anything is decided. An unreadable
    /// journal (`Err`) fails closed: it is kept aside for inspection, and
    /// the application is read and one grace period held before any
    /// decision. A dry-run controller takes no journal (it would overwrite
    /// the record of an agent that acts): the journal is dropped, and its
    /// lock released.
    pub fn with_journal(
        mut self,
        journal: Journal,
        loaded: Result<Option<JournalFile>, StateError>,
    ) -> Self {
        if self.settings.dry_run {
            return self;
        }
        let jitter = Jitter::seeded(&self.settings.name);
        match loaded {
            Ok(Some(file)) => {
                self.saved = Some(file.record.clone());
                self.machine = Machine::resume(file.record, jitter);
                if fight::stood_down(&self.machine.record) {
                    // Said again at every start, as loudly: it lasts until
                    // a reload.
                    self.events.emit(fight::stood_down_event(
                        &self.machine.record,
                        &self.settings,
                        self.clock.now_ms(),
                        true,
                    ));
                }
            }
            // No journal: the application's last update may have ended
            // moments ago, and nothing recorded its grace period.
            Ok(None) => self.machine.started_without_journal(),
            Err(error) => {
                // A journal that cannot be read (unparsable, or the read
                // itself failed: a disk error, a symbolic link or a FIFO
                // planted there) is kept, not saved over: what it knew
                // may still be read off it by hand. One that cannot be
                // set aside (every numbered name taken, or no hard links
                // on this file system) is saved over, the error saying
                // why: keeping it would mean journaling nothing, so never
                // scaling the application until someone cleaned up.
                let aside = match &error {
                    StateError::Corrupt { .. } | StateError::Io { .. } => match journal.set_aside()
                    {
                        Ok(path) => format!("; kept as {}", path.display()),
                        Err(e) => format!("; {e}"),
                    },
                    _ => String::new(),
                };
                self.fail(
                    Failure::Journal,
                    format!(
                        "{error}{aside}; the outcome of anything in flight is unknown: reading the application and holding one grace period before deciding"
                    ),
                );
                self.machine = Machine::unknown(self.clock.now_ms(), jitter);
            }
        }
        self.journal = Some(Arc::new(Mutex::new(journal)));
        // The record in force is journaled at once, so that a crash before
        // the first step does not forget that it is in doubt. The agent
        // calls this off the runtime: the save runs right here.
        if let Some(save) = self.pending_save() {
            self.settle_save(save(), None);
        }
        self
    }

    /// Quarantines failing plugins by `policy` instead of the default.
    pub fn with_quarantine(mut self, policy: QuarantinePolicy) -> Self {
        self.settings.quarantine = policy;
        self
    }

    /// Reads the states of the application's `source = "cloudwatch"`
    /// alarms from `states`.
    pub fn with_alarm_states(mut self, states: Arc<dyn AlarmStates>) -> Self {
        self.alarm_states = Some(states);
        self
    }

    /// The states of the `source = "cloudwatch"` alarms: one DescribeAlarms
    /// for all of them (per 100). An alarm CloudWatch does not return fails
    /// the evaluation, as a metric that cannot be fetched does: a policy
    /// must not decide on an alarm that is not there. (`&mut self`: the
    /// controller is `Send` but not `Sync`, and its future must be `Send`.)
    async fn cloudwatch_states(&mut self) -> Result<Vec<ReportedState>, MetricsError> {
        let names = self.alarms.cloudwatch_names();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let Some(states) = &self.alarm_states else {
            return Err(MetricsError::Invalid(
                "alarms with source = \"cloudwatch\" need CloudWatch, and this run has none (the simulator evaluates local alarms only)".into(),
            ));
        };
        let described = states.describe_named(&names).await?;
        names
            .into_iter()
            .map(|name| {
                let Some(found) = described.iter().find(|d| d.name == name) else {
                    return Err(MetricsError::Invalid(format!(
                        "the CloudWatch alarm {name:?} (source = \"cloudwatch\") does not exist in this account and region, or is a composite alarm, which is not supported (judge its parts, metric alarms): DescribeAlarms returned no metric alarm of that name"
                    )));
                };
                let state = found.state.ok_or_else(|| {
                    MetricsError::Source(format!(
                        "the CloudWatch alarm {name:?} is in a state this version does not know"
                    ))
                })?;
                Ok(ReportedState {
                    alarm_name: name,
                    state,
                    since_ms: found.state_updated_ms,
                })
            })
            .collect()
    }

    /// Runs plugin calls as `threads` says instead of on blocking threads.
    pub fn with_plugin_threads(mut self, threads: PluginThreads) -> Self {
        self.threads = threads;
        self
    }

    /// Seeds the back-off jitter with `seed` instead of the application's
    /// name.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.machine.set_jitter(Jitter::new(seed));
        self
    }

    /// Lifts the recorded KPU limit (the cluster's free slots for a Flink
    /// job) whenever `lifts` changes, a configuration reload's doing: see
    /// [`Machine::lift_limit`]; it also lifts a size held as invalid
    /// ([`Machine::lift_refused`]: the operator fixed what refused it; not
    /// one rolled back, which only a reload changing the application
    /// lifts, see [`Controller::lifting_at_start`]) and ends a stand-down
    /// if the reload asked to resume the application ([`fight::lift`],
    /// [`Controller::with_resumes`]: the operator stopped the other
    /// writer). A change is taken while the controller
    /// waits between steps; one sent while a step runs is taken at the
    /// next wait, and a change already made when this is called is not one.
    pub fn with_ceiling_lifts(mut self, mut lifts: watch::Receiver<u64>) -> Self {
        lifts.mark_unchanged();
        self.ceiling_lifts = Some(lifts);
        self
    }

    /// Ends a stand-down at a reload's lift only when `resumes` names the
    /// application then (`flinkscale reload --resume NAME`).
    pub fn with_resumes(mut self, resumes: fight::Resumes) -> Self {
        self.resumes = Some(resumes);
        self
    }

    /// Lifts, before its first step, what a change of
    /// [`Controller::with_ceiling_lifts`] lifts (the KPU limit, a size held
    /// as invalid, a stand-down asked to resume), and a size held after a
    /// rollback too, as
    /// read back from its journal: the controller a configuration reload
    /// starts (a changed or resumed application) is the reload's doing, and
    /// its first decision must not be held to, or sized under, what that
    /// reload lifts. Without it, that decision came before the lift (the
    /// reload's signal reaches a controller only while it waits): a
    /// scale-out to the old ceiling, then another past it one grace period
    /// later, two restarts for one.
    pub fn lifting_at_start(mut self) -> Self {
        self.lift_at_start = true;
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the controller would journal now.
    pub fn record(&self) -> &AppRecord {
        &self.machine.record
    }

    /// Runs the loop until `shutdown` becomes true. The first evaluation is
    /// immediate (after resolving a journaled phase). A panic in a step is
    /// caught, reported, and whatever was in flight resolved again: one
    /// application's bug does not stop its controller for good.
    ///
    /// Gives back its journal, still locked, so that a reload restarting
    /// the application hands it to the next controller without letting the
    /// lock go ([`Controller::into_journal`]).
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Option<Journal> {
        self.run_until_stopped(shutdown).await.journal
    }

    /// [`Controller::run`], giving back as well which of its plugins were
    /// quarantined when it stopped: a reload that restarts the
    /// application tells the next controller
    /// ([`Controller::after_quarantine`]), whose first answer from the
    /// plugin then ends the quarantine the metrics, `status` and the
    /// history still show.
    ///
    /// A stop asked while the controller waits for a read (a
    /// DescribeApplication, a GetMetricData, a Flink REST call: up to the
    /// SDK's 35 s deadline when AWS does not answer) gives the read up at
    /// once: a read has no effect, and systemd or a container runtime
    /// follows SIGTERM with SIGKILL after 10 to 90 s. An UpdateApplication
    /// (or a Flink PUT) in flight is waited for, so that the journal
    /// records its answer; none is started after the stop.
    pub async fn run_until_stopped(mut self, mut shutdown: watch::Receiver<bool>) -> Stopped {
        self.stop = Some(shutdown.clone());
        // Warned of from the first step's own read, not one of its own.
        self.autoscaling_unchecked = true;
        let mut observation = Observation::Wake;
        if self.lift_at_start {
            self.lift_for_reload(true).await;
        }
        loop {
            let next = self.step(observation).await;
            observation = match next {
                Next::Wait(delay) => {
                    if self.wait(delay, &mut shutdown).await {
                        self.say_what_is_left();
                        return self.stopped();
                    }
                    Observation::Wake
                }
                Next::Run(command) => {
                    // A command in flight is finished (an answer dropped
                    // halfway is an update in doubt), but none is started
                    // after shutdown was asked for.
                    if *shutdown.borrow() {
                        if matches!(command, Command::Update { .. }) {
                            self.not_sent_for_the_stop().await;
                        }
                        self.say_what_is_left();
                        return self.stopped();
                    }
                    match self.execute(command).await {
                        Some(observation) => observation,
                        // A read given up for the stop.
                        None => {
                            self.say_what_is_left();
                            return self.stopped();
                        }
                    }
                }
            };
        }
    }

    /// The stop came between the journal's `sending` record and the call:
    /// nothing was sent, and the journal says so (the phase back to idle),
    /// so that the next controller decides afresh instead of reading the
    /// application to resolve an update that never left, and nobody is
    /// told of an update in flight. Should this save fail, the record
    /// stays `sending`, which the next controller resolves safely.
    async fn not_sent_for_the_stop(&mut self) {
        let now_ms = self.clock.now_ms();
        let transition = self
            .machine
            .step(Observation::NotJournaled, &self.settings, now_ms);
        for event in transition.events {
            self.events.emit(event);
        }
        // The decision history's entry is resolved as not sent (a stop
        // leaves it "no answer" otherwise, for good: the next start finds
        // nothing in flight to tell it about).
        self.events.emit(Event::NotSent {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            reason: format!(
                "the agent stopped before sending {}",
                self.settings.words.rescale_call()
            ),
        });
        self.persist(None).await;
    }

    /// What a stopped controller gives back: its journal and which plugins
    /// were quarantined, or left their quarantine without answering since
    /// ([`PluginHealth::awaiting_recovery`]).
    fn stopped(self) -> Stopped {
        let quarantined = QuarantinedPlugins {
            policy: self.policy_health.awaiting_recovery(),
            interpreters: self
                .interpreter_health
                .iter()
                .map(PluginHealth::awaiting_recovery)
                .collect(),
        };
        Stopped {
            journal: self.into_journal(),
            quarantined,
        }
    }

    /// A controller started by a reload in place of one whose plugins
    /// `before` were quarantined: the new instances are called at once
    /// (new code, or new params: what failed is not theirs), and the first
    /// answer of each ends that quarantine as a replaced file's does
    /// ([`Event::PluginRecovered`]); their failures count from zero. An
    /// interpreter is matched by its place in the configuration; the
    /// quarantine of one whose place the reload removed ends at once,
    /// reported as recovered with no plugin (nothing would answer there).
    pub fn after_quarantine(mut self, before: &QuarantinedPlugins) -> Self {
        if before.policy {
            self.policy_health = PluginHealth::renewed();
        }
        for (health, quarantined) in self.interpreter_health.iter_mut().zip(&before.interpreters) {
            if *quarantined {
                *health = PluginHealth::renewed();
            }
        }
        let kept = self.interpreter_health.len();
        for (index, _) in before
            .interpreters
            .iter()
            .enumerate()
            .skip(kept)
            .filter(|(_, quarantined)| **quarantined)
        {
            self.events.emit(Event::PluginRecovered {
                application: self.settings.name.clone(),
                at_ms: self.clock.now_ms(),
                plugin: "none (the reload removed it)".to_owned(),
                slot: crate::telemetry::plugin_slot(Some(index)),
            });
        }
        self
    }

    /// The controller's journal, still holding its lock: `None` for a
    /// controller that keeps none (a dry run, no `state_dir`), or when a
    /// save it started still holds the journal on its blocking thread
    /// (never after a save that came back, which every step waits for).
    pub fn into_journal(mut self) -> Option<Journal> {
        let journal = Arc::try_unwrap(self.journal.take()?).ok()?;
        Some(journal.into_inner().unwrap_or_else(PoisonError::into_inner))
    }

    /// At a stop, says what the journal keeps for the next start when an
    /// update is in flight or its outcome unknown: without it, an agent
    /// stopped while an UpdateApplication answer was outstanding logged
    /// nothing about it.
    fn say_what_is_left(&self) {
        let phase = &self.machine.record.phase;
        // Without a journal (a dry run, the simulator) nothing is kept.
        let Some(update) = phase.update().filter(|_| self.journal.is_some()) else {
            return;
        };
        tracing::warn!(
            application = %self.settings.name,
            phase = phase.name(),
            to = %self.settings.words.capacity(update.target_kpu),
            "Stopping with an update in flight; the journal keeps it, and the next start (or the controller a reload starts) reads the application to learn whether it took effect."
        );
    }

    /// Waits `delay`, lifting the KPU limit whenever asked meanwhile (the
    /// wait goes on: the next step comes when it would have); whether
    /// shutdown was asked for.
    async fn wait(&mut self, delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            let Some(lifts) = self.ceiling_lifts.as_mut() else {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                return sleep_or_shutdown(left, shutdown).await;
            };
            if *shutdown.borrow() {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return *shutdown.borrow(),
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return true;
                    }
                }
                changed = lifts.changed() => match changed {
                    Ok(()) => {
                        self.lift_for_reload(false).await;
                    }
                    // Nobody can ask any more.
                    Err(_) => self.ceiling_lifts = None,
                },
            }
        }
    }

    /// What a configuration reload lifts, now: the recorded KPU limit
    /// ([`Machine::lift_limit`]), a held size ([`Machine::lift_refused`]; a
    /// rolled-back one with `rolled_back_too`) and, if the reload asked to
    /// resume the application, a stand-down ([`fight::lift`]). Each lift is
    /// reported, and the record without them journaled once. Nothing in
    /// flight and no wait is cut short.
    async fn lift_for_reload(&mut self, rolled_back_too: bool) {
        let now_ms = self.clock.now_ms();
        let resumed = self
            .resumes
            .as_ref()
            .is_some_and(|resumes| resumes.take(&self.settings.name));
        let lifted: Vec<Event> = [
            self.machine.lift_limit(&self.settings, now_ms),
            self.machine
                .lift_refused(&self.settings, now_ms, rolled_back_too),
            resumed
                .then(|| fight::lift(&mut self.machine.record, &self.settings, now_ms))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if lifted.is_empty() {
            return;
        }
        for event in lifted {
            self.events.emit(event);
        }
        self.persist(None).await;
    }

    /// Steps the machine at the current time, emits its events and
    /// persists its record. A panic in the step (a bug of the machine's)
    /// undoes the step's half-made change and is observed as any panic: it
    /// is reported, and whatever was in flight is resolved again against a
    /// fresh read, so that an update the step was taking in is neither
    /// sent again nor lost (it ended the application's task before).
    async fn step(&mut self, observation: Observation) -> Next {
        let now_ms = self.clock.now_ms();
        let before = self.machine.clone();
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.machine.step(observation, &self.settings, now_ms)
        }));
        let transition = match stepped {
            Ok(transition) => transition,
            Err(panic) => {
                self.machine = before;
                let message = format!(
                    "in the state machine's step: {}",
                    panic_message(panic.as_ref())
                );
                self.machine
                    .step(Observation::Panicked(message), &self.settings, now_ms)
            }
        };
        for event in transition.events {
            if let Event::Failed { class, message, .. } = &event {
                self.step_failure = Some(format!("{class}: {message}"));
            }
            self.events.emit(event);
        }
        // A save refused before an update says that the update is not sent:
        // the journal's error alone leaves the operator asking.
        let unsent = match &transition.next {
            Next::Run(Command::Update { update, .. }) => Some(format!(
                "{} to {} not sent, since the journal cannot record it first",
                self.settings.words.rescale_call(),
                self.settings.words.capacity(update.target_kpu)
            )),
            _ => None,
        };
        let journaled = self.persist(unsent.as_deref()).await;
        match transition.next {
            // Write-ahead: no update goes out that the journal does not
            // know about.
            Next::Run(Command::Update { .. }) if !journaled => {
                Box::pin(self.step(Observation::NotJournaled)).await
            }
            next => next,
        }
    }

    /// Runs one command and returns what it observed (a panic on the way
    /// is observed too); `None` when a stop was asked while it read (see
    /// [`Controller::run_until_stopped`]).
    async fn execute(&mut self, command: Command) -> Option<Observation> {
        let run = std::panic::AssertUnwindSafe(self.run_command(command)).catch_unwind();
        match run.await {
            Ok(observation) => observation,
            Err(panic) => Some(Observation::Panicked(panic_message(panic.as_ref()))),
        }
    }

    /// [`Controller::execute`] for the `once` command, which no stop
    /// interrupts: its controller never runs [`Controller::run_until_stopped`].
    async fn execute_once(&mut self, command: Command) -> Observation {
        self.execute(command).await.unwrap_or_else(|| {
            Observation::Panicked(
                "internal error: a read was given up for a stop `once` cannot ask for".to_owned(),
            )
        })
    }

    async fn run_command(&mut self, command: Command) -> Option<Observation> {
        let name = &self.settings.name;
        Some(match command {
            Command::Describe => {
                let read = unless_stopped(self.stop.clone(), self.target.describe(name));
                let described = read.await.ok()?;
                if let Ok(state) = &described {
                    self.check_autoscaling(state);
                }
                Observation::Described(described)
            }
            Command::Update { update, current } => {
                Observation::Updated(self.target.rescale(name, update.target_kpu, &current).await)
            }
            Command::Evaluate => match self.evaluate().await {
                Ok(assessment) => {
                    self.emit_evaluated(&assessment);
                    Observation::Evaluated(Ok(Evaluated {
                        state: assessment.state,
                        decision: assessment.decision,
                    }))
                }
                Err(EvaluateError::Stopped) => return None,
                Err(EvaluateError::Panicked(message)) => Observation::Panicked(message),
                Err(error) => {
                    let class = match &error {
                        EvaluateError::Metrics(MetricsError::Throttled(_)) => Failure::Throttled,
                        EvaluateError::Metrics(MetricsError::Permission(_)) => Failure::Permission,
                        EvaluateError::Metrics(_) => Failure::Metrics,
                        EvaluateError::Target(e) => Failure::of(e),
                        EvaluateError::Panicked(_) | EvaluateError::Stopped => Failure::Plugin,
                    };
                    Observation::Evaluated(Err((class, error.to_string())))
                }
            },
        })
    }

    /// Warns, at the first read of a running controller, that MSF's own
    /// autoscaling is enabled, when it is.
    fn check_autoscaling(&mut self, state: &AppState) {
        if std::mem::take(&mut self.autoscaling_unchecked) && state.autoscaling_enabled {
            crate::telemetry::warn_autoscaling_enabled(&self.settings.name, state.status);
        }
    }

    /// Collect, interpret, evaluate alarms and decide, without acting.
    pub async fn evaluate(&mut self) -> Result<Assessment, EvaluateError> {
        let name = self.settings.name.clone();
        let state = unless_stopped(self.stop.clone(), self.target.describe(&name))
            .await?
            .map_err(EvaluateError::Target)?;
        self.check_autoscaling(&state);
        let now_ms = self.clock.now_ms();
        let metrics = if self.queries.is_empty() {
            Vec::new()
        } else {
            let fetch = self
                .source
                .fetch(&self.queries, now_ms - self.window_ms, now_ms);
            unless_stopped(self.stop.clone(), fetch)
                .await?
                .map_err(EvaluateError::Metrics)?
        };
        // Against the evaluation's start too, the time the skip rule
        // reckons which periods no evaluation can see: a datapoint published
        // while the fetch ran, in a period the rule counts as not visible
        // yet, means evaluations at this phase see such ones.
        self.check_publication_delays(&metrics, now_ms, self.clock.now_ms());
        let metrics = whole_periods(metrics, now_ms);
        let app = Application {
            name: name.clone(),
            status: state.status,
            kpu: state.kpu(),
            parallelism: state.parallelism,
            parallelism_per_kpu: state.parallelism_per_kpu,
            min_kpu: self.settings.min_kpu,
            max_kpu: self.machine.max_kpu(&self.settings, state.kpu(), now_ms),
            version_id: state.version_id,
            last_rescale_ms: last_restart_ms(
                self.machine.record.last_rescale_ms,
                state.last_update_ms,
                now_ms,
            ),
            last_update_duration_secs: self.machine.record.last_update_duration_secs,
        };
        let (signals, trouble) = self.interpret(now_ms, &app, &metrics).await?;
        let stop = self.stop.clone();
        let reported = unless_stopped(stop, self.cloudwatch_states())
            .await?
            .map_err(EvaluateError::Metrics)?;
        let alarms = self
            .alarms
            .update_all(&metrics, &signals, &reported, now_ms);
        let evaluation = Evaluation {
            now_ms,
            app,
            metrics,
            alarms,
            signals,
        };
        let raw = match trouble {
            // Signals are missing: deciding without them could scale on
            // half the picture. The policy's file is followed all the same.
            Some(why) => {
                self.follow_policy(now_ms).await?;
                Decision::hold(format!("{why}; holding"))
            }
            None => self.decide(&evaluation).await?,
        };
        let decision = crate::plugin::validate::validate_decision_in(
            raw,
            &evaluation.app,
            self.settings.words,
        );
        let decision = self
            .machine
            .refine(&self.settings, decision, &evaluation.app, now_ms);
        let decision = self.skip_unchanged(decision, &evaluation.metrics, now_ms);
        // A restart or update this agent did not make is waited out, whatever the
        // policy said: the machine acts on none, and the history says so.
        let decision = self
            .machine
            .assess(decision, &state, &self.settings, now_ms);
        let decision = fight::hold_while_stood_down(&self.machine.record, decision, &self.settings);
        Ok(Assessment {
            state,
            evaluation,
            decision,
        })
    }

    /// The history the policy asked for (`history_days`) before the
    /// window ending at `now_ms`, read from the metric source, or `None`
    /// (none asked for, or a failed read: logged, and the policy goes on
    /// without; it learns as it runs). `&mut`: the controller is `Send`
    /// but not `Sync`, and this future is held across an await.
    async fn read_history(&mut self, now_ms: i64) -> Result<Option<Vec<Series>>, EvaluateError> {
        let days = self.history_days;
        let Some((start_ms, end_ms)) =
            crate::metrics::history::span(now_ms, now_ms - self.window_ms, days)
        else {
            return Ok(None);
        };
        if self.queries.is_empty() {
            return Ok(None);
        }
        // What the read costs, for the log: the datapoints it asks for at
        // most, and the GetMetricData pages they take at least.
        let (asked, pages) = crate::metrics::history::size(
            &crate::metrics::history::queries(&self.queries),
            start_ms,
            end_ms,
        );
        let started = std::time::Instant::now();
        let read =
            crate::metrics::history::read(self.source.as_ref(), &self.queries, start_ms, end_ms);
        // A retry (the reads before it failed: throttled, timed out) is
        // made inside a live evaluation, whose decision waits for it: it
        // gets [`HISTORY_RETRY_TIMEOUT`], and failing that is one more
        // failed read.
        let read = async {
            if self.history_failed_reads == 0 {
                return read.await;
            }
            tokio::time::timeout(HISTORY_RETRY_TIMEOUT, read)
                .await
                .unwrap_or_else(|_| {
                    Err(MetricsError::Source(format!(
                        "the read was not over within {} s",
                        HISTORY_RETRY_TIMEOUT.as_secs()
                    )))
                })
        };
        Ok(match unless_stopped(self.stop.clone(), read).await? {
            Ok(history) => {
                self.history_failed_reads = 0;
                let points: usize = history.iter().map(|s| s.points.len()).sum();
                tracing::info!(
                    application = %self.settings.name,
                    days,
                    datapoints = points,
                    datapoints_asked = asked,
                    pages,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "read the policy's history"
                );
                Some(history)
            }
            Err(error) => {
                // Tried again later (a throttled or timed-out read at
                // start would otherwise cost the policy its past for good):
                // the policy decides without it meanwhile, and gets it with
                // a later call, its window included.
                self.history_failed_reads += 1;
                // Jittered as the back-off is (between half and all of the
                // wait): applications whose reads failed together at start
                // do not all read 15 days again in the same tick.
                let retry_ms = (self.history_failed_reads < HISTORY_READS).then(|| {
                    let longest = history_retry_ms(self.history_failed_reads);
                    let wait = machine::equal_jitter(
                        Duration::from_millis(u64::try_from(longest).unwrap_or(0)),
                        self.machine.jitter_unit(),
                    );
                    i64::try_from(wait.as_millis()).unwrap_or(longest)
                });
                if let Some(retry_ms) = retry_ms {
                    self.history_due = true;
                    self.history_retry_at_ms = now_ms.saturating_add(retry_ms);
                }
                let message = if retry_ms.is_some() {
                    "could not read the policy's history; deciding without it, and reading it again later"
                } else {
                    "could not read the policy's history; deciding without it from now on"
                };
                tracing::warn!(
                    application = %self.settings.name,
                    days,
                    datapoints_asked = asked,
                    pages,
                    %error,
                    failed_reads = self.history_failed_reads,
                    retry_in_secs = retry_ms.map(|ms| ms / 1000),
                    "{message}"
                );
                None
            }
        })
    }

    /// With lazy polling, an alarm-driven policy's hold is asked again only
    /// at the first evaluation at which an alarm may have changed state
    /// ([`AlarmTracker::earliest_change_ms`]): every evaluation before it
    /// would find the same states, so the same decision, and is skipped
    /// (its DescribeApplication and GetMetricData with it). The skip is
    /// written as the decision's `next_evaluation_secs`, whole intervals,
    /// so that the evaluation that does run falls where it would have.
    /// Left alone: a policy that asked for its own next evaluation, a
    /// policy that failed lately (its retries keep their pace), and
    /// anything but a hold.
    fn skip_unchanged(&self, mut decision: Decision, metrics: &[Series], now_ms: i64) -> Decision {
        // Asked each time: a file dropped into `plugin_dir` over the
        // built-in `step` replaces it while the application runs.
        let reads_only_alarm_states = self
            .policy
            .as_ref()
            .is_some_and(|policy| policy.reads_only_alarm_states());
        if !self.settings.lazy_polling
            || !self.alarm_driven
            || !reads_only_alarm_states
            || decision.action != Action::Hold
            || decision.next_evaluation_secs.is_some()
            || self.policy_health != PluginHealth::default()
        {
            return decision;
        }
        let interval_ms =
            i64::try_from(self.settings.evaluation_interval.as_millis()).unwrap_or(i64::MAX);
        let promised = |metric: &str| {
            if self.promise_broken {
                0
            } else {
                self.publication_delays.get(metric).copied().unwrap_or(0)
            }
        };
        let Some(change_ms) = self.alarms.earliest_change_ms(metrics, now_ms, promised) else {
            return decision;
        };
        if interval_ms <= 0 || change_ms <= now_ms + interval_ms {
            return decision;
        }
        // Both positive here: the ceiling of their quotient.
        let intervals = (change_ms - now_ms + interval_ms - 1) / interval_ms;
        let secs = intervals.saturating_mul(interval_ms) / 1000;
        decision.next_evaluation_secs = u32::try_from(secs).ok();
        decision
    }

    /// Checks every fetched datapoint against its metric's promised
    /// publication delay. One the fetch that ended at `seen_ms` saw sooner
    /// than the promise allows (its period's end plus the delay; a period
    /// still in progress too) breaks it: the first broken promise is
    /// reported as a `publication_delay` failure. One seen sooner than
    /// that only as of `started_ms`, the evaluation's start (published
    /// while the fetch ran), kept the promise, but the skip rule reckons
    /// the periods no evaluation can see from that start, and evaluations
    /// at this phase see it: said at INFO, not a failure. Either way, from
    /// then on the skip rule makes no use of any promise of this
    /// application: it polls as if none had been made. Nothing else
    /// changes: the alarms judge what was fetched.
    fn check_publication_delays(&mut self, metrics: &[Series], started_ms: i64, seen_ms: i64) {
        if self.promise_broken || self.publication_delays.is_empty() {
            return;
        }
        // The first datapoint, of any metric with a promise, published
        // sooner than its promise allows as of `at_ms`.
        let sooner = |at_ms: i64| {
            metrics.iter().find_map(|series| {
                let delay_secs = *self.publication_delays.get(&series.query.id)?;
                let period_ms = i64::from(series.query.period_secs) * 1000;
                let end = |p: &crate::metrics::Datapoint| p.timestamp_ms.saturating_add(period_ms);
                series
                    .points
                    .iter()
                    .filter(|p| !p.value.is_nan())
                    .find(|p| end(p).saturating_add(i64::from(delay_secs) * 1000) > at_ms)
                    .map(|p| (series.query.id.clone(), p.timestamp_ms, end(p), delay_secs))
            })
        };
        // A broken promise first: a datapoint only published during the
        // fetch, in another metric or an older period, must not hide it.
        if let Some((metric, start_ms, end_ms, delay_secs)) = sooner(seen_ms) {
            self.promise_broken = true;
            self.fail(
                Failure::PublicationDelay,
                format!(
                    "metric {metric:?}: the datapoint of the period starting at {start_ms} ms was seen {:.1} s after the period ended, but min_publication_delay_secs promises {delay_secs} s; polling without the promise from now on",
                    (seen_ms - end_ms) as f64 / 1000.0,
                ),
            );
        } else if let Some((metric, _, end_ms, delay_secs)) = sooner(started_ms) {
            self.promise_broken = true;
            tracing::info!(
                message = "A datapoint was published while a fetch ran, in a period the skip rule counts as not visible yet at this evaluation phase; polling without the publication promise from now on.",
                application = %self.settings.name,
                metric = %metric,
                evaluation_began_after_period_end_secs = (started_ms - end_ms) as f64 / 1000.0,
                min_publication_delay_secs = delay_secs,
            );
        }
    }

    /// Resolves what the journal left before the `once` command evaluates,
    /// as [`Controller::run`] does at its start: an update in flight or in
    /// doubt is read against DescribeApplication, a grace period is
    /// waited out, an unreadable journal holds one grace period. `None`
    /// when the application may be evaluated and acted on now (the phase
    /// is settled; a finished update's end is journaled on the way), or
    /// how long it must wait and why ([`Controller::held`] reports it).
    pub async fn resolve(&mut self) -> Option<Waiting> {
        let mut observation = Observation::Wake;
        let unknown = matches!(self.machine.record.phase, Phase::Unknown { .. });
        self.step_failure = None;
        loop {
            match self.step(observation).await {
                Next::Run(Command::Evaluate) => return None,
                Next::Run(command @ Command::Describe) => {
                    observation = self.execute_once(command).await;
                }
                // Never asked for before an evaluation: a machine bug,
                // reported as such and not run.
                Next::Run(Command::Update { .. }) => {
                    return Some(Waiting {
                        retry_after: self.settings.update_poll,
                        reason: "internal error: an update was asked for before any evaluation; not sent".to_owned(),
                    });
                }
                Next::Wait(delay) => {
                    let resolved = !matches!(self.machine.record.phase, Phase::Unknown { .. });
                    let reason = if unknown && resolved {
                        format!(
                            "the journal could not be read, so whatever was in flight has an unknown outcome: one grace period is held ({} s left)",
                            delay.as_secs()
                        )
                    } else {
                        self.waiting_reason(delay)
                    };
                    return Some(Waiting {
                        retry_after: delay,
                        reason,
                    });
                }
            }
        }
    }

    /// Why [`Controller::resolve`] waits `delay`, from the phase it left.
    fn waiting_reason(&mut self, delay: Duration) -> String {
        let words = self.settings.words;
        let secs = delay.as_secs();
        match &self.machine.record.phase {
            Phase::Grace {
                kpu, after: None, ..
            } => format!(
                "the grace period after the update to {} has {secs} s left",
                words.capacity(*kpu)
            ),
            Phase::Grace {
                after: Some(after), ..
            } => format!("the {after} has {secs} s left"),
            Phase::Sending { update }
            | Phase::Sent { update, .. }
            | Phase::Updating { update, .. } => {
                format!(
                    "the update to {} is still in progress; read again in {secs} s",
                    words.capacity(update.target_kpu)
                )
            }
            Phase::Unknown { .. } => format!(
                "the journal could not be read, and the {} cannot be read yet ({}); try again in {secs} s",
                words.thing(),
                self.step_failure.take().unwrap_or_default()
            ),
            Phase::Foreign { .. } => {
                format!(
                    "a restart or update this agent did not make is in progress; read again in {secs} s"
                )
            }
            Phase::Idle | Phase::Decided { .. } => match self.step_failure.take() {
                Some(failure) => format!("{failure}; try again in {secs} s"),
                None => format!("waiting {secs} s"),
            },
        }
    }

    /// Records an evaluation that [`Controller::resolve`] found must wait:
    /// nothing is sent, and a decision to scale says why not.
    pub fn held(&self, assessment: &Assessment, waiting: Waiting) -> ActOutcome {
        self.emit_evaluated(assessment);
        if matches!(assessment.decision.action, Action::ScaleTo(_)) && !self.settings.dry_run {
            self.events.emit(Event::NotSent {
                application: self.settings.name.clone(),
                at_ms: assessment.evaluation.now_ms,
                reason: waiting.reason.clone(),
            });
            ActOutcome::NotSent {
                retry_after: waiting.retry_after,
                reason: Some(waiting.reason),
            }
        } else {
            ActOutcome::Held
        }
    }

    /// Records an evaluation and, unless holding or in dry-run, sends the
    /// update, resolving a failed one against DescribeApplication, but
    /// without following it (the `once` command, after
    /// [`Controller::resolve`]). Never sends one to an application that is
    /// not RUNNING.
    pub async fn act(&mut self, assessment: &Assessment) -> ActOutcome {
        self.emit_evaluated(assessment);
        let mut observation = Observation::Evaluated(Ok(Evaluated {
            state: assessment.state.clone(),
            decision: assessment.decision.clone(),
        }));
        let mut started = None;
        self.step_failure = None;
        loop {
            let phase_before = self.machine.record.phase.clone();
            let next = self.step(observation).await;
            // Accepted, or found to have taken effect after a lost
            // answer (followed to UPDATING, or already through).
            if let (
                Phase::Sending { update },
                Phase::Sent { .. } | Phase::Updating { .. } | Phase::Grace { after: None, .. },
            ) = (&phase_before, &self.machine.record.phase)
            {
                started = Some(ActOutcome::Started {
                    to_kpu: update.target_kpu,
                    at_ms: self.clock.now_ms(),
                });
            }
            match next {
                Next::Run(command @ (Command::Update { .. } | Command::Describe)) => {
                    observation = self.execute_once(command).await;
                }
                Next::Run(Command::Evaluate) | Next::Wait(_) if started.is_some() => {
                    return started.unwrap_or(ActOutcome::Held);
                }
                Next::Run(Command::Evaluate) => {
                    return ActOutcome::NotSent {
                        retry_after: Duration::ZERO,
                        reason: self.step_failure.take(),
                    };
                }
                Next::Wait(delay) => {
                    let sent = matches!(assessment.decision.action, Action::ScaleTo(_));
                    return if sent && !self.settings.dry_run {
                        ActOutcome::NotSent {
                            retry_after: delay,
                            reason: self.step_failure.take(),
                        }
                    } else {
                        ActOutcome::Held
                    };
                }
            }
        }
    }

    fn emit_evaluated(&self, assessment: &Assessment) {
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
            signals: evaluation.signals.clone(),
            policy: self.policy.as_ref().map(|p| p.label()).unwrap_or_default(),
            decision: decision.clone(),
            dry_run: self.settings.dry_run,
        });
    }

    /// Runs `call` with the plugin `plugin` as [`PluginThreads`] says:
    /// on a blocking thread, or inline. A panic in the call is caught
    /// where it happens, so the plugin is handed back whatever the call
    /// did (guest failures are traps, not panics: a panic is a host bug).
    async fn off_runtime<P, R>(
        threads: PluginThreads,
        plugin: P,
        call: impl FnOnce(&mut P) -> R + Send + 'static,
    ) -> Result<(P, Result<R, EvaluateError>), EvaluateError>
    where
        P: Send + 'static,
        R: Send + 'static,
    {
        let run = move || {
            let mut plugin = plugin;
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&mut plugin)))
                    .map_err(|panic| EvaluateError::Panicked(panic_message(panic.as_ref())));
            (plugin, result)
        };
        match threads {
            PluginThreads::Inline => Ok(run()),
            PluginThreads::Simulation => Ok(crate::plugin::on_plugin_thread(run)),
            // The closure catches its own panics: only a runtime shutting
            // down cancels it, and the plugin goes with it.
            // A blocking-pool thread may call guests directly: marked so,
            // no call needs a helper thread.
            PluginThreads::Blocking => {
                tokio::task::spawn_blocking(|| crate::plugin::on_plugin_thread(run))
                    .await
                    .map_err(|e| EvaluateError::Panicked(format!("the call was cancelled: {e}")))
            }
        }
    }

    /// Runs every interpreter that is not quarantined, off the runtime.
    /// Returns the signals, and why the evaluation must hold if an
    /// interpreter failed or is quarantined.
    async fn interpret(
        &mut self,
        now_ms: i64,
        app: &Application,
        metrics: &[Series],
    ) -> Result<(Vec<Signal>, Option<String>), EvaluateError> {
        if self.interpreters.is_empty() {
            return Ok((Vec::new(), None));
        }
        let interpreters = std::mem::take(&mut self.interpreters);
        let health = std::mem::take(&mut self.interpreter_health);
        let quarantine = self.settings.quarantine;
        let (app, metrics) = (app.clone(), metrics.to_vec());
        let follow = self.threads.follows_files();
        let ((interpreters, health), outcomes) = Self::off_runtime(
            self.threads,
            (interpreters, health),
            move |(interpreters, health)| {
                interpreters
                    .iter_mut()
                    .zip(health.iter_mut())
                    .map(|(interpreter, health)| {
                        let refresh = if follow {
                            interpreter.refresh()
                        } else {
                            Refresh::Unchanged
                        };
                        let gate = health.gate(now_ms, || refresh.is_new_code());
                        let started = std::time::Instant::now();
                        let result = match gate {
                            Gate::Skip { until_ms } => Err(Gate::Skip { until_ms }),
                            gate => Ok((gate, interpreter.interpret(now_ms, &app, &metrics))),
                        };
                        let elapsed = result.is_ok().then(|| started.elapsed());
                        let after = match &result {
                            Ok((_, Ok(_))) => None,
                            Ok((_, Err(_))) => Some(health.failed(now_ms, &quarantine)),
                            Err(_) => None,
                        };
                        let recovered = matches!(&result, Ok((_, Ok(_)))) && health.succeeded();
                        (
                            interpreter.label(),
                            interpreter.file(),
                            refresh,
                            result,
                            after,
                            recovered,
                            elapsed,
                        )
                    })
                    .collect::<Vec<_>>()
            },
        )
        .await?;
        self.interpreters = interpreters;
        self.interpreter_health = health;
        let outcomes = outcomes?;
        let mut signals = Vec::new();
        let mut trouble = Vec::new();
        for (index, (label, file, refresh, result, after, recovered, elapsed)) in
            outcomes.into_iter().enumerate()
        {
            if refresh.is_new_code() {
                self.dropped_told[index] = false;
            }
            self.plugin_refreshed(refresh, now_ms);
            if let Some(elapsed) = elapsed {
                self.events
                    .plugin_call(&self.settings.name, &label, "interpret", elapsed);
            }
            match result {
                Err(Gate::Skip { until_ms }) => trouble.push(format!(
                    "interpreter {label} is quarantined for another {} s",
                    machine::secs_until(until_ms, now_ms)
                )),
                Err(_) => {}
                Ok((gate, result)) => {
                    if let Gate::Retry(reason) = gate {
                        self.plugin_retried(&label, reason, now_ms);
                    }
                    match result {
                        Ok(found) => {
                            if recovered {
                                self.plugin_recovered(&label, Some(index), now_ms);
                            }
                            let (finite, dropped): (Vec<Signal>, Vec<Signal>) =
                                found.into_iter().partition(|s| s.value.is_finite());
                            if !dropped.is_empty() {
                                let first = !std::mem::replace(&mut self.dropped_told[index], true);
                                self.events.emit(Event::SignalsDropped {
                                    application: self.settings.name.clone(),
                                    at_ms: now_ms,
                                    plugin: label.clone(),
                                    file,
                                    signals: dropped,
                                    first,
                                });
                            }
                            signals.extend(finite);
                        }
                        Err(error) => {
                            let message = format!("interpreter {label} failed: {error}");
                            if let Some(after) = after {
                                self.plugin_failed(
                                    (&label, Some(index)),
                                    error.class,
                                    message.clone(),
                                    after,
                                    now_ms,
                                );
                            }
                            trouble.push(message);
                        }
                    }
                }
            }
        }
        let trouble = (!trouble.is_empty()).then(|| trouble.join("; "));
        Ok((signals, trouble))
    }

    /// Asks the policy, off the runtime, unless it is quarantined; a
    /// failure is a hold. An answer outside the contract
    /// ([`crate::plugin::validate::contract_violation`]) is a failure of
    /// class `invalid`, counted toward quarantine.
    ///
    /// With `history_days`, the call that reaches an instance remembering
    /// nothing hands it the days before the window too
    /// ([`Controller::read_history`], prepended to the series): the
    /// policy's first call, and the first call after a reload or a restart
    /// after a trap ([`Decide::starts_afresh`]), so that a policy learning
    /// from its past (`predictive`) does not lose it with its instance. The
    /// history is read again from the metric source, up to that
    /// evaluation's window: it holds what passed since the start, and
    /// nothing is kept in memory between restarts (15 days of 1-minute
    /// points are 21,600 a metric) for what is a rare event. If the call
    /// the history was read for fails, the next instance of the same code
    /// goes without it, so that a policy that cannot take it (or fails at
    /// once) does not fail, or have the history read, on every restart;
    /// new code gets it again.
    async fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, EvaluateError> {
        let now_ms = evaluation.now_ms;
        let Some(policy) = self.policy.take() else {
            // Only a runtime shutting down mid-call loses it.
            return Err(EvaluateError::Panicked(
                "the policy was lost with a cancelled call".to_owned(),
            ));
        };
        let health = std::mem::take(&mut self.policy_health);
        let short = evaluation.clone();
        let follow = self.threads.follows_files();
        let reads_history = self.history_days > 0 && !self.queries.is_empty();
        let due = self.history_due && now_ms >= self.history_retry_at_ms;
        let refused = self.history_refused;
        let ((policy, health), outcome) =
            Self::off_runtime(self.threads, (policy, health), move |(policy, health)| {
                let refresh = if follow {
                    policy.refresh()
                } else {
                    Refresh::Unchanged
                };
                let gate = health.gate(now_ms, || refresh.is_new_code());
                let skipped = matches!(gate, Gate::Skip { .. });
                let refused = refused && !refresh.is_new_code();
                let wants_history =
                    reads_history && !skipped && (due || (policy.starts_afresh() && !refused));
                let started = std::time::Instant::now();
                // Wanting its history, the policy is asked once that is
                // read, off this thread.
                let result = (!skipped && !wants_history).then(|| policy.decide(&short));
                let elapsed = started.elapsed();
                (refresh, gate, wants_history, result, elapsed)
            })
            .await?;
        self.policy = Some(policy);
        self.policy_health = health;
        let (refresh, gate, wants_history, mut result, mut elapsed) = outcome?;
        if refresh.is_new_code() {
            self.history_refused = false;
            // New code's reads fail and are retried afresh.
            self.history_failed_reads = 0;
        }
        self.plugin_refreshed(refresh, now_ms);
        if wants_history {
            self.history_due = false;
            let history = self.read_history(now_ms).await?;
            let with_history = history.is_some();
            let evaluation = match history {
                Some(history) => Evaluation {
                    metrics: crate::metrics::history::prepend(&history, &evaluation.metrics),
                    ..evaluation.clone()
                },
                None => evaluation.clone(),
            };
            let Some(policy) = self.policy.take() else {
                return Err(EvaluateError::Panicked(
                    "the policy was lost with a cancelled call".to_owned(),
                ));
            };
            let (policy, outcome) = Self::off_runtime(self.threads, policy, move |policy| {
                let started = std::time::Instant::now();
                let result = policy.decide(&evaluation);
                (result, started.elapsed())
            })
            .await?;
            self.policy = Some(policy);
            let (decided, took) = outcome?;
            // Refused after a failure even when the read failed too: an
            // instance that fails at once (a file that does not load)
            // would otherwise have the history read at every evaluation.
            self.history_refused = decided.is_err();
            if with_history {
                tracing::info!(
                    application = %self.settings.name,
                    elapsed_ms = took.as_millis() as u64,
                    "the policy decided on its history"
                );
            }
            (result, elapsed) = (Some(decided), took);
        }
        let label = self.policy.as_ref().map(|p| p.label()).unwrap_or_default();
        if result.is_some() {
            self.events
                .plugin_call(&self.settings.name, &label, "decide", elapsed);
        }
        let result = match (gate, result) {
            (gate, None) => {
                let until_ms = match gate {
                    Gate::Skip { until_ms } => until_ms,
                    _ => now_ms,
                };
                return Ok(Decision::hold(format!(
                    "policy {label} is quarantined for another {} s after failing repeatedly; holding",
                    machine::secs_until(until_ms, now_ms)
                )));
            }
            (Gate::Retry(reason), Some(result)) => {
                self.plugin_retried(&label, reason, now_ms);
                result
            }
            (_, Some(result)) => result,
        };
        // An answer outside the contract is invalid output, a failure as a
        // trap is (counted toward quarantine); one the bounds clamp is not.
        let result =
            result.and_then(|decision| {
                match crate::plugin::validate::contract_violation(&decision) {
                    Some(problem) => Err(PluginFailure::new(
                        FailureClass::Invalid,
                        format!("invalid decision: {problem}"),
                    )),
                    None => Ok(decision),
                }
            });
        Ok(match result {
            Ok(decision) => {
                if self.policy_health.succeeded() {
                    self.plugin_recovered(&label, None, now_ms);
                }
                decision
            }
            Err(error) => {
                let after = self.policy_health.failed(now_ms, &self.settings.quarantine);
                let message = format!("policy {label} failed: {error}");
                self.plugin_failed((&label, None), error.class, message.clone(), after, now_ms);
                Decision::hold(format!("{message}; holding"))
            }
        })
    }

    /// Follows the policy's file, off the runtime, at an evaluation that
    /// holds before the decide stage (an interpreter failed or is
    /// quarantined): new code is loaded, reported and ends the policy's
    /// quarantine now, as at a call ([`PluginHealth::gate`] is told), rather
    /// than once the interpreter recovers, which may be an hour away.
    async fn follow_policy(&mut self, now_ms: i64) -> Result<(), EvaluateError> {
        if !self.threads.follows_files() {
            return Ok(());
        }
        let Some(policy) = self.policy.take() else {
            return Err(EvaluateError::Panicked(
                "the policy was lost with a cancelled call".to_owned(),
            ));
        };
        let (policy, refresh) =
            Self::off_runtime(self.threads, policy, |policy| policy.refresh()).await?;
        self.policy = Some(policy);
        let refresh = refresh?;
        let new_code = refresh.is_new_code();
        self.plugin_refreshed(refresh, now_ms);
        if new_code {
            self.history_refused = false;
            self.history_failed_reads = 0;
            if let Gate::Retry(reason) = self.policy_health.gate(now_ms, || true) {
                let label = self.policy.as_ref().map(|p| p.label()).unwrap_or_default();
                self.plugin_retried(&label, reason, now_ms);
            }
        }
        Ok(())
    }

    /// Reports a failed plugin call, and the quarantine it led to if it
    /// did. `plugin` is the plugin's label and its interpreter index (none
    /// for the policy: [`crate::telemetry::plugin_slot`]).
    fn plugin_failed(
        &self,
        (label, interpreter): (&str, Option<usize>),
        class: FailureClass,
        message: String,
        after: AfterFailure,
        now_ms: i64,
    ) {
        self.events.emit(Event::Failed {
            application: self.settings.name.clone(),
            at_ms: self.clock.now_ms(),
            class: Failure::Plugin.as_str().to_owned(),
            plugin_class: Some(class),
            message,
        });
        if let AfterFailure::Quarantined { failures, until_ms } = after {
            self.events.emit(Event::PluginQuarantined {
                application: self.settings.name.clone(),
                at_ms: now_ms,
                plugin: label.to_owned(),
                slot: crate::telemetry::plugin_slot(interpreter),
                class,
                failures,
                until_ms,
            });
        }
    }

    /// Reports a replaced plugin file: now running, or refused.
    fn plugin_refreshed(&self, refresh: Refresh, now_ms: i64) {
        let application = self.settings.name.clone();
        match refresh {
            Refresh::Unchanged | Refresh::Pending => {}
            Refresh::Reloaded { from, to, sha256 } => self.events.emit(Event::PluginReloaded {
                application,
                at_ms: now_ms,
                from,
                to,
                sha256,
            }),
            Refresh::Refused {
                running,
                sha256,
                reason,
            } => self.events.emit(Event::PluginReloadRefused {
                application,
                at_ms: now_ms,
                plugin: running,
                sha256,
                reason,
            }),
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

    /// Reports the first answer after a quarantine of the plugin `label`,
    /// the policy or the interpreter at `interpreter`.
    fn plugin_recovered(&self, label: &str, interpreter: Option<usize>, now_ms: i64) {
        self.events.emit(Event::PluginRecovered {
            application: self.settings.name.clone(),
            at_ms: now_ms,
            plugin: label.to_owned(),
            slot: crate::telemetry::plugin_slot(interpreter),
        });
    }

    /// Writes the record if it differs from the last one written. Returns
    /// false if the journal refused it (see [`Controller::settle_save`]).
    ///
    /// A save writes, renames and syncs the disk twice, which takes as long
    /// as the disk likes: as plugin calls, it runs on tokio's blocking pool
    /// unless [`PluginThreads`] says the runtime runs nothing else. The
    /// controller waits for it, so the write-ahead order is unchanged.
    /// `unsent` names the update the record is for, if one goes out once it
    /// is saved: a refused save's failure then says it was not sent.
    async fn persist(&mut self, unsent: Option<&str>) -> bool {
        let Some(save) = self.pending_save() else {
            return true;
        };
        let outcome = match self.threads {
            PluginThreads::Blocking => tokio::task::spawn_blocking(save)
                .await
                .unwrap_or_else(|e| Err(format!("the journal save did not finish: {e}"))),
            PluginThreads::Inline | PluginThreads::Simulation => save(),
        };
        self.settle_save(outcome, unsent)
    }

    /// The save [`Controller::persist`] has to make, `None` when the
    /// journal holds the record already or there is no journal. It gives
    /// back the record it wrote, or why the journal refused it.
    fn pending_save(
        &self,
    ) -> Option<impl FnOnce() -> Result<AppRecord, String> + Send + 'static + use<>> {
        if self.saved.as_ref() == Some(&self.machine.record) {
            return None;
        }
        let journal = self.journal.clone()?;
        let record = self.machine.record.clone();
        let now_ms = self.clock.now_ms();
        Some(move || {
            // A save has no panic of its own; were one to poison the lock,
            // the next save rewrites the whole file anyway.
            let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
            journal
                .save(&record, now_ms)
                .map(|()| record)
                .map_err(|e| e.to_string())
        })
    }

    /// Records the outcome of a save: the record the journal now holds, or
    /// why it refused it. Returns whether the save succeeded.
    ///
    /// A refused save is retried at every later step (the record in force
    /// differs from the one saved), so a full or read-only folder fails
    /// many saves in a row. Each one is an [`Event::JournalFailing`] (the
    /// registry keeps the cause: `/readyz` says not ready), logged only
    /// when it starts, when its cause changes and as a reminder every
    /// [`REMINDER_INTERVAL`](crate::telemetry::failing::REMINDER_INTERVAL).
    /// Only a save that held an update back (`unsent` names it) is a
    /// `journal` failure: counted once and recorded as that decision's
    /// fate, without a log line of its own. The first save that succeeds
    /// ends the stretch with an [`Event::JournalRecovered`] that says how
    /// long it lasted and how many updates it held (each was decided again
    /// at a later evaluation, never sent as it was).
    fn settle_save(&mut self, outcome: Result<AppRecord, String>, unsent: Option<&str>) -> bool {
        let now_ms = self.clock.now_ms();
        let application = self.settings.name.clone();
        match outcome {
            Ok(record) => {
                self.saved = Some(record);
                if let Some(recovered) = self.journal_failing.succeeded(now_ms) {
                    self.events.emit(Event::JournalRecovered {
                        application,
                        at_ms: now_ms,
                        since_ms: recovered.since_ms,
                        held: recovered.held,
                    });
                }
                true
            }
            Err(cause) => {
                let tell = self.journal_failing.failed(now_ms, &cause);
                if unsent.is_some() {
                    self.journal_failing.held_one();
                }
                self.events.emit(Event::JournalFailing {
                    application: application.clone(),
                    at_ms: now_ms,
                    since_ms: self.journal_failing.since_ms().unwrap_or(now_ms),
                    cause: cause.clone(),
                    held: self.journal_failing.held(),
                    tell,
                });
                if let Some(unsent) = unsent {
                    self.events.emit_unlogged(Event::Failed {
                        application,
                        at_ms: now_ms,
                        class: Failure::Journal.as_str().to_owned(),
                        plugin_class: None,
                        message: format!("{unsent}: {cause}"),
                    });
                }
                false
            }
        }
    }

    fn fail(&self, class: Failure, message: String) {
        self.events.emit(Event::Failed {
            application: self.settings.name.clone(),
            at_ms: self.clock.now_ms(),
            class: class.as_str().to_owned(),
            plugin_class: None,
            message,
        });
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}

/// What a plugin is told as `last-rescale-ms`: when the application's job
/// last restarted for an update, as far as the host knows. The end of the
/// last rescale it followed (`own`, already no later than now), or, when
/// later or it followed none, the service's last update (`service`: MSF's
/// `LastUpdateTimestamp`, the creation of a Flink job's graph). Without
/// the service's, an agent starting without a journal told its policies
/// nothing, and they took every period they were shown as the current
/// size's, though the application may have been resized minutes before
/// (by an earlier agent, or by hand): `rate` then measured the capacity of
/// two sizes at once. A later update by another writer moves it too. A
/// service time after `now_ms` (a clock ahead of the agent's) is not
/// taken: read as now at every evaluation, it would keep the policies
/// from every period until the agent's clock caught up.
fn last_restart_ms(own: Option<i64>, service: Option<i64>, now_ms: i64) -> Option<i64> {
    own.max(service.filter(|&at| at <= now_ms))
}

/// Awaits `read`, a call with no effect, unless `stop` (when there is
/// one) is asked for, or its sender gone, first: then the read is dropped
/// where it was and [`EvaluateError::Stopped`] returned.
async fn unless_stopped<T>(
    stop: Option<watch::Receiver<bool>>,
    read: impl std::future::Future<Output = T>,
) -> Result<T, EvaluateError> {
    let Some(mut stop) = stop else {
        return Ok(read.await);
    };
    tokio::select! {
        value = read => Ok(value),
        // An error: the sender is gone, as good as a stop.
        _ = stop.wait_for(|stopped| *stopped) => Err(EvaluateError::Stopped),
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
