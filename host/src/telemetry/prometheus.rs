//! What `GET /metrics`, `GET /livez` and `GET /readyz` report: one small
//! [`Registry`] that [`super::Events`] updates as every event passes,
//! rendered in the Prometheus text exposition format 0.0.4.
//!
//! Counters and gauges are written here by hand, in the 0.0.4 text format
//! their tests pin down (exact millisecond timestamps, label escaping). The
//! histograms (AWS call, Flink REST call and plugin call durations) come from
//! `prometheus-client`, the official Rust client: it keeps buckets, sums
//! and counts consistent under concurrent observations and writes their
//! `_bucket`/`_sum`/`_count` lines, which read the same in 0.0.4 and
//! OpenMetrics. Porting every counter to it would change no number a
//! scraper sees, only the format's details the tests and dashboards rely
//! on.
//!
//! The registry knows the configured applications and every failure class
//! from the start, so each counter exists (at 0) before the first
//! evaluation, and a dashboard sees an application that never evaluates
//! rather than nothing at all.
//!
//! Liveness and readiness answer different questions. Liveness is "is the
//! process still running its loops?": a heartbeat task beats on the async
//! runtime, and a runtime frozen for [`LIVENESS_LIMIT`] fails it. Readiness
//! is "is every application being evaluated?": AWS being down or a missing
//! permission fails readiness, never liveness, so an orchestrator does not
//! restart the agent for a problem a restart cannot fix.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::{Event, FailureCounts, ResumedWait};
use crate::config::{ApplicationConfig, Config, Mode};
use crate::controller::machine::lazy_intervals;
use crate::controller::{Failure, Settings};
use crate::model::{Action, AlarmState, Decision};
use crate::plugin::FailureClass;
use crate::target::Words;

/// Slack added to three evaluation intervals before an application counts
/// as stale: a slow CloudWatch answer must not fail readiness.
const STALE_SLACK_MS: i64 = 60_000;

/// How often the heartbeat beats (see [`super::http::serve`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the heartbeat may be silent before `/livez` fails: ten missed
/// beats means the runtime has not run a ready task for that long, which
/// no AWS answer, however slow, can cause.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(10);

/// Label pairs of a histogram series, in the order they are written.
type Labels = Vec<(&'static str, String)>;

/// One histogram per label set, all with [`latency_buckets`].
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets of a call's duration in seconds: 1 ms doubling to about 33 s,
/// which spans a plugin's answer (milliseconds) to an AWS call retried
/// under throttling (seconds).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every AWS call of the process, by operation and outcome, and their
/// durations. One per process, not per [`Registry`]: the AWS adapters are
/// built before (and outlive) any registry, and a process makes one
/// agent's calls.
struct AwsCalls {
    counts: Mutex<BTreeMap<(&'static str, String), u64>>,
    durations: Histograms,
}

static AWS_CALLS: LazyLock<AwsCalls> = LazyLock::new(|| AwsCalls {
    counts: Mutex::new(BTreeMap::new()),
    durations: Family::new_with_constructor(latency_histogram),
});

/// Counts one AWS call of `operation` (`DescribeApplication`,
/// `UpdateApplication`, `GetMetricData`) that ended with `outcome` (`ok`,
/// or the failure's class: `throttled`, `permission`, ...) after `elapsed`.
pub fn record_aws_call(operation: &'static str, outcome: &str, elapsed: Duration) {
    let mut counts = AWS_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry((operation, outcome.to_owned())).or_insert(0) += 1;
    // Observed under the counts' lock, as [`Registry::render`] reads both
    // under it: a scrape sees each call in both or in neither.
    AWS_CALLS
        .durations
        .get_or_create(&vec![("operation", operation.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// Every call of the process to a Flink JobManager's REST API (the `flink`
/// target and `source = "flink"` metrics), by route and outcome, and their
/// durations; one per process, as [`AwsCalls`].
struct FlinkCalls {
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    durations: Histograms,
}

static FLINK_CALLS: LazyLock<FlinkCalls> = LazyLock::new(|| FlinkCalls {
    counts: Mutex::new(BTreeMap::new()),
    durations: Family::new_with_constructor(latency_histogram),
});

/// Counts one call to Flink's REST API of `operation` (the method and
/// route template, `GET /jobs/{id}`: never a raw id, so one series per
/// route) that ended with `outcome` (`ok`, or the failure's class:
/// `not_found`, `invalid`, `throttled`, `transient`) after `elapsed`.
pub fn record_flink_call(operation: &str, outcome: &'static str, elapsed: Duration) {
    let mut counts = FLINK_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry((operation.to_owned(), outcome)).or_insert(0) += 1;
    // Under the counts' lock, as for AWS calls.
    FLINK_CALLS
        .durations
        .get_or_create(&vec![("operation", operation.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// One call under way to AWS or to a Flink JobManager, counted when it
/// ends ([`CountedCall::ended`]) in `flinkscale_aws_calls_total` or
/// `flinkscale_flink_calls_total` and its duration histogram, or with the
/// outcome `given_up` if it is dropped first: its caller stopped waiting
/// (a stop or a reload gave up a read in flight), and the call, sent and
/// maybe billed, would otherwise be counted nowhere.
#[must_use = "a call dropped without `ended` is counted as given up"]
pub struct CountedCall {
    operation: Operation,
    started: Instant,
    ended: bool,
}

/// What a [`CountedCall`] is counted as.
enum Operation {
    /// An AWS API operation (`DescribeApplication`).
    Aws(&'static str),
    /// A Flink REST route template (`GET /jobs/{id}`).
    Flink(String),
}

impl CountedCall {
    /// A call of the AWS API `operation` starting now.
    pub fn aws(operation: &'static str) -> Self {
        Self::start(Operation::Aws(operation))
    }

    /// A call of Flink's REST API on `route` (a route template) starting
    /// now.
    pub fn flink(route: String) -> Self {
        Self::start(Operation::Flink(route))
    }

    fn start(operation: Operation) -> Self {
        Self {
            operation,
            started: Instant::now(),
            ended: false,
        }
    }

    /// Counts the call as ended with `outcome`.
    pub fn ended(mut self, outcome: &'static str) {
        self.ended = true;
        self.record(outcome);
    }

    fn record(&self, outcome: &'static str) {
        let elapsed = self.started.elapsed();
        match &self.operation {
            Operation::Aws(operation) => record_aws_call(operation, outcome, elapsed),
            Operation::Flink(route) => record_flink_call(route, outcome, elapsed),
        }
    }
}

impl Drop for CountedCall {
    fn drop(&mut self) {
        if !self.ended {
            self.record("given_up");
        }
    }
}

/// Every move of the process from one JobManager's address to the next
/// (a `rest_url` with more than one address), by the two addresses; one
/// per process, as [`AwsCalls`].
static JOBMANAGER_MOVES: LazyLock<Mutex<BTreeMap<(String, String), u64>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Counts one move from the JobManager at `from` to the one at `to` (both
/// as configured in `rest_url`, `http://host:port`): the one at `from` did
/// not answer and the call went on to `to`.
pub fn record_jobmanager_move(from: &str, to: &str) {
    let mut moves = JOBMANAGER_MOVES.lock().unwrap_or_else(|p| p.into_inner());
    *moves.entry((from.to_owned(), to.to_owned())).or_insert(0) += 1;
}

/// How many moves from `from` to `to` this process made so far.
#[cfg(test)]
pub(crate) fn jobmanager_moves(from: &str, to: &str) -> u64 {
    let moves = JOBMANAGER_MOVES.lock().unwrap_or_else(|p| p.into_inner());
    moves
        .get(&(from.to_owned(), to.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// How many AWS calls of `operation` ended with `outcome` in this process
/// so far.
#[cfg(test)]
pub(crate) fn aws_calls(operation: &str, outcome: &str) -> u64 {
    let counts = AWS_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
    counts
        .iter()
        .filter(|((op, out), _)| *op == operation && out == outcome)
        .map(|(_, n)| *n)
        .sum()
}

/// How many calls to Flink's REST API of `operation` ended with `outcome`
/// in this process so far.
#[cfg(test)]
pub(crate) fn flink_calls(operation: &str, outcome: &str) -> u64 {
    let counts = FLINK_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
    counts
        .iter()
        .filter(|((op, out), _)| op == operation && *out == outcome)
        .map(|(_, n)| *n)
        .sum()
}

/// The last failure of an application (from [`Event::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFailure {
    /// Its class (`metrics`, `permission`, ...; see [`Failure`]).
    pub class: String,
    /// What happened.
    pub message: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

/// An application whose journal cannot be saved (from
/// [`Event::JournalFailing`]): it sends no update, so it is not ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalTrouble {
    /// Since when its saves fail (ms since the epoch).
    pub since_ms: i64,
    /// Why the last one failed: the journal's error, naming the file and
    /// the OS error.
    pub cause: String,
    /// Updates held (not sent) since then.
    pub held: u64,
}

/// What an application's controller waits out without evaluating, which
/// staleness allows for ([`AppMetrics::stale_at_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// Its own rescale ([`Event::RescaleStarted`]): the update timeout
    /// and the grace period, or the grace period from its completion.
    Rescale,
    /// A restart or update it did not make ([`Event::GraceHeld`]): the update
    /// timeout and the grace period.
    Held,
    /// What a controller resumed from the journal said it waits out
    /// without evaluating ([`Event::Resumed`]): an update it follows (as
    /// [`Waited::Rescale`]), or a grace period until a time.
    Resumed(ResumedWait),
}

/// How long an application may go without evaluating, and what it counted.
#[derive(Debug, Clone, Default)]
struct AppMetrics {
    /// 3 x the evaluation interval + 60 s.
    stale_after_ms: i64,
    /// The evaluation interval, in ms.
    interval_ms: i64,
    /// Whether the application polls lazily: a hold may then put its next
    /// evaluation several intervals off.
    lazy_polling: bool,
    /// How much later than one interval on the last evaluation's hold put
    /// the next one (lazy polling, [`crate::controller::machine::LAZY_MAX_INTERVALS`] intervals at
    /// most): a silence the agent chose is not staleness.
    lazy_wait_ms: i64,
    /// While a rescale is followed the controller does not evaluate: the
    /// update timeout plus the grace period are allowed on top, until the
    /// rescale is seen to complete.
    rescale_allowance_ms: i64,
    /// The grace period: what is allowed on top once a rescale completed.
    grace_ms: i64,
    evaluations: u64,
    holds: u64,
    scales: u64,
    rescales: u64,
    panics: u64,
    kpu: Option<u32>,
    /// The KPU the last decision asked for (the current KPU on a hold).
    target_kpu: Option<u32>,
    /// Each configured alarm's state at the last evaluation.
    alarms: Vec<(String, AlarmState)>,
    /// Each configured metric's latest value at the last evaluation.
    latest: Vec<(String, Option<f64>)>,
    last_evaluation_ms: Option<i64>,
    last_rescale_ms: Option<i64>,
    /// When the last rescale was seen to complete ([`Event::RescaleCompleted`]).
    completed_ms: Option<i64>,
    /// When the controller last began waiting out an update it did not
    /// make ([`Event::GraceHeld`]): allowed the same as a rescale in
    /// progress.
    held_ms: Option<i64>,
    /// When a controller resumed from its journal a phase in which it does
    /// not evaluate ([`Event::Resumed`]), and what it said it waits out
    /// there: an update followed (allowed as a rescale in progress,
    /// counted from the first time it said so while no evaluation came
    /// between), or a grace period until a time.
    resumed: Option<(i64, Waited)>,
    last_failure: Option<LastFailure>,
    /// Its journal cannot be saved: not ready until a save succeeds.
    journal: Option<JournalTrouble>,
    /// The message of a panic since the last evaluation: the application is
    /// not ready until it evaluates again.
    panicked: Option<String>,
    /// The plugins quarantined now, by their place
    /// ([`crate::telemetry::plugin_slot`]).
    quarantined: std::collections::BTreeSet<String>,
    /// Since when (ms since the epoch) the agent stands down for the
    /// application, and the other writer's updates that made it
    /// ([`Event::StoodDown`]): not ready until a reload lifts it.
    stood_down: Option<(i64, String)>,
    /// Plugin failures by how the plugin failed.
    plugin_failures: BTreeMap<FailureClass, u64>,
    plugin_reloads: u64,
    plugin_reloads_refused: u64,
    /// When a reload added the application, or took it out of pause: its
    /// staleness counts from then, not from the agent's start or from its
    /// last evaluation before the pause.
    added_ms: Option<i64>,
    /// Its configured mode: a paused application is not evaluated, and so
    /// never stale.
    mode: Mode,
    /// The last configuration reload could not put its new settings in
    /// force ([`Registry::reload_not_applied`]).
    not_applied: Option<NotApplied>,
    /// Its target's vocabulary: a Flink job's capacity is reported as
    /// `flinkscale_parallelism`, an MSF application's as `flinkscale_kpu`.
    words: Words,
}

/// Why a configuration reload's settings for an application are not the
/// ones it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplied {
    /// What failed: its plugins did not load, its journal could not be
    /// opened, ... (the error, naming the file).
    pub reason: String,
    /// When the reload gave up on it (ms since the epoch).
    pub at_ms: i64,
    /// Whether a controller still runs for it, with its previous settings;
    /// with none, nothing runs for it.
    pub running: bool,
}

/// The mode an application configured with `mode` runs in: `run --dry-run`
/// makes an active one dry-run (a paused one stays paused).
fn running_mode(mode: Mode, dry_run: bool) -> Mode {
    match mode {
        Mode::Active if dry_run => Mode::DryRun,
        other => other,
    }
}

impl AppMetrics {
    /// Nothing counted yet, with the staleness limits of `app`.
    fn limits(app: &ApplicationConfig) -> Self {
        let settings = Settings::from_config(app, false);
        let interval_ms =
            i64::try_from(settings.evaluation_interval.as_millis()).unwrap_or(i64::MAX);
        Self {
            stale_after_ms: interval_ms.saturating_mul(3).saturating_add(STALE_SLACK_MS),
            interval_ms,
            lazy_polling: settings.lazy_polling,
            rescale_allowance_ms: i64::from(app.update_timeout_secs)
                .saturating_add(i64::from(app.grace_period_secs))
                .saturating_mul(1000),
            grace_ms: i64::from(app.grace_period_secs).saturating_mul(1000),
            mode: app.mode,
            words: settings.words,
            ..Self::default()
        }
    }

    /// Takes the staleness limits, mode (as `run --dry-run` makes it) and
    /// vocabulary of `app`, keeping what was counted.
    fn follow(&mut self, app: &ApplicationConfig, dry_run: bool) {
        let limits = Self::limits(app);
        self.stale_after_ms = limits.stale_after_ms;
        self.interval_ms = limits.interval_ms;
        self.lazy_polling = limits.lazy_polling;
        self.rescale_allowance_ms = limits.rescale_allowance_ms;
        self.grace_ms = limits.grace_ms;
        self.mode = running_mode(app.mode, dry_run);
        self.words = limits.words;
    }

    /// Since when the application's silence counts: its last evaluation,
    /// or when it was added or resumed if that is later.
    fn since_ms(&self, started_ms: i64) -> i64 {
        match (self.last_evaluation_ms, self.added_ms) {
            (Some(evaluated), Some(added)) => evaluated.max(added),
            (evaluated, added) => evaluated.or(added).unwrap_or(started_ms),
        }
    }

    /// When the application counts as stale: 3 x its interval + 60 s after
    /// [`Self::since_ms`], later by the wait a lazy hold chose at its last
    /// evaluation (when that evaluation is what the silence counts from),
    /// and, after a rescale started since, by its update timeout and grace
    /// period while it is in progress, by what is left of its grace period
    /// once it completed. An update a controller resumed from the journal
    /// and follows is allowed the same, and a grace period it resumed, until
    /// its end (at most the whole period).
    fn stale_at_ms(&self, started_ms: i64) -> i64 {
        let since = self.since_ms(started_ms);
        let mut deadline = since.saturating_add(self.stale_after_ms);
        if self.last_evaluation_ms == Some(since) {
            deadline = deadline.saturating_add(self.lazy_wait_ms);
        }
        // A rescale started after the last evaluation is followed
        // without evaluating, for up to the update timeout + grace; once
        // it is over, only its grace period is waited out. The latest of
        // what is waited out counts (a rescale over one at the same time).
        let latest = [
            self.held_ms.map(|at| (at, Waited::Held)),
            self.resumed,
            self.last_rescale_ms.map(|at| (at, Waited::Rescale)),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|(at, _)| *at);
        if let Some((at, waited)) = latest
            && at >= since
        {
            let over = self
                .completed_ms
                .filter(|done| *done >= at)
                .map(|done| done.saturating_add(self.grace_ms));
            let in_progress = at.saturating_add(self.rescale_allowance_ms);
            let allowed_until = match waited {
                Waited::Rescale | Waited::Resumed(ResumedWait::Follow) => {
                    over.unwrap_or(in_progress)
                }
                Waited::Held => in_progress,
                // What is left of a grace period: never more than the whole.
                Waited::Resumed(ResumedWait::Until(until_ms)) => {
                    until_ms.min(at.saturating_add(self.grace_ms))
                }
            };
            deadline = deadline.max(allowed_until.saturating_add(self.stale_after_ms));
        }
        deadline
    }

    /// Why the application `name` is not ready at `now_ms`, if it is not:
    /// the one rule `/readyz` ([`Registry::not_ready`]) and the
    /// `flinkscale_ready` gauge both apply. Stale, panicked since its last
    /// evaluation, with a journal that cannot be saved, stood down, or
    /// left without a controller by a reload. A paused application is
    /// ready (nothing is expected of it) unless the last reload asked it
    /// to run and could not start it.
    fn not_ready(&self, name: &str, started_ms: i64, now_ms: i64) -> Option<NotReady> {
        if self.mode == Mode::Paused && self.not_applied.is_none() {
            return None;
        }
        let since = self.since_ms(started_ms);
        // A reload pauses an application without fail: one still paused
        // after a reload that did not apply was asked to run.
        let still_paused = self.mode == Mode::Paused;
        let stale = !still_paused && now_ms > self.stale_at_ms(started_ms);
        let not_started = self
            .not_applied
            .clone()
            .filter(|n| !n.running || still_paused);
        (stale
            || self.panicked.is_some()
            || self.journal.is_some()
            || self.stood_down.is_some()
            || not_started.is_some())
        .then(|| NotReady {
            application: name.to_owned(),
            silent_ms: now_ms.saturating_sub(since),
            ever_evaluated: self.last_evaluation_ms.is_some(),
            since_reload: self
                .added_ms
                .is_some_and(|added| self.last_evaluation_ms.is_none_or(|e| added > e)),
            stale,
            panicked: self.panicked.clone(),
            stood_down: self.stood_down.clone(),
            failure: self
                .last_failure
                .clone()
                .filter(|f| self.last_evaluation_ms.is_none_or(|e| f.at_ms >= e)),
            journal: self.journal.clone(),
            not_started,
            still_paused,
        })
    }

    /// The extra wait (beyond one interval) before the next evaluation
    /// that `decision` leads the controller to take: with lazy polling, a
    /// hold's `next_evaluation_secs` in the controller's whole intervals
    /// ([`lazy_intervals`]; the controller may wait less, never more).
    fn lazy_wait_after(&self, decision: &Decision) -> i64 {
        let Some(asked) = decision.next_evaluation_secs else {
            return 0;
        };
        if !self.lazy_polling || decision.action != Action::Hold || self.interval_ms <= 0 {
            return 0;
        }
        let interval = Duration::from_millis(self.interval_ms.unsigned_abs());
        (i64::from(lazy_intervals(asked, interval)) - 1).saturating_mul(self.interval_ms)
    }
}

/// The agent's counters and gauges by application; shared between the
/// controllers' [`super::Events`] and the HTTP server.
#[derive(Debug)]
pub struct Registry {
    apps: Mutex<BTreeMap<String, AppMetrics>>,
    failures: Arc<FailureCounts>,
    started_ms: Mutex<i64>,
    /// Between [`Registry::mark_starting`] and [`Registry::mark_started`]:
    /// the agent loads its plugins and journals, and no application runs.
    starting: std::sync::atomic::AtomicBool,
    /// The heartbeat's last beat, on the monotonic clock: a wall-clock step
    /// must not fail liveness.
    last_beat: Mutex<Instant>,
    /// Plugin call durations by application, plugin and function.
    plugin_calls: Histograms,
    /// The label sets of `plugin_calls` observed so far, to drop the
    /// series of an application a reload removed.
    plugin_call_series: Mutex<std::collections::BTreeSet<Labels>>,
    /// SIGHUP reloads of the configuration file.
    config_reloads: Mutex<ConfigReloads>,
    /// `run --dry-run`: every active application runs as dry-run, and
    /// `flinkscale_application_mode` says so.
    dry_run: bool,
}

/// What the SIGHUP reloads of the configuration file came to.
#[derive(Debug, Clone, Copy, Default)]
struct ConfigReloads {
    /// Valid files handed to the agent.
    accepted: u64,
    /// Invalid files refused (the running configuration stayed).
    refused: u64,
    /// Whether the last reload was refused: the file on disk is not the
    /// configuration that runs, and a restart would exit 78 on it.
    last_refused: bool,
}

/// Why `GET /readyz` answers 503 for an application: it has not evaluated
/// for too long, its controller panicked since it last did, or its journal
/// cannot be saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// Application name.
    pub application: String,
    /// Milliseconds since its last evaluation (or since the agent started,
    /// if it never evaluated).
    pub silent_ms: i64,
    /// Whether it has evaluated at all.
    pub ever_evaluated: bool,
    /// Whether the silence counts from the reload that added (or resumed)
    /// it, not from its last evaluation or the agent's start.
    pub since_reload: bool,
    /// Whether `silent_ms` is past its limit (3 x its evaluation interval +
    /// 60 s, plus the wait a lazy hold chose, or the update timeout and
    /// grace period after a rescale).
    pub stale: bool,
    /// The message of a panic of its controller since its last evaluation.
    pub panicked: Option<String>,
    /// Since when (ms since the epoch) the agent stands down for it, and
    /// the other writer's updates that made it: it sends no update until
    /// a configuration reload.
    pub stood_down: Option<(i64, String)>,
    /// Its last failure, if it came after its last evaluation: why it does
    /// not evaluate.
    pub failure: Option<LastFailure>,
    /// Its journal cannot be saved, so it sends no update (it evaluates,
    /// and may well not be stale).
    pub journal: Option<JournalTrouble>,
    /// The last configuration reload left no controller running for it,
    /// and why.
    pub not_started: Option<NotApplied>,
    /// It is still paused: the last configuration reload asked it to run
    /// and could not start it (`not_started` says why).
    pub still_paused: bool,
}

impl Registry {
    /// A registry for the applications of `config`, their staleness limits
    /// derived from their evaluation intervals, counting from `started_ms`
    /// (ms since the epoch).
    pub fn for_config(config: &Config, started_ms: i64) -> Self {
        let failures = FailureCounts::default();
        let apps = config
            .applications
            .iter()
            .map(|app| {
                for class in Failure::ALL {
                    failures.start(&app.name, class.as_str());
                }
                (app.name.clone(), AppMetrics::limits(app))
            })
            .collect();
        Self {
            apps: Mutex::new(apps),
            failures: Arc::new(failures),
            started_ms: Mutex::new(started_ms),
            starting: std::sync::atomic::AtomicBool::new(false),
            last_beat: Mutex::new(Instant::now()),
            plugin_calls: Family::new_with_constructor(latency_histogram),
            plugin_call_series: Mutex::default(),
            config_reloads: Mutex::new(ConfigReloads::default()),
            dry_run: false,
        }
    }

    /// For `run --dry-run`, which makes every active application dry-run:
    /// they are reported in the mode they run in, now and after reloads.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        let apps = self.apps.get_mut().unwrap_or_else(|p| p.into_inner());
        for app in apps.values_mut() {
            app.mode = running_mode(app.mode, dry_run);
        }
        self
    }

    /// Counts a SIGHUP reload of the configuration file: `accepted` (valid,
    /// handed to the agent) or refused (invalid; the running configuration
    /// stays, and a restart would refuse the file too).
    pub fn config_reloaded(&self, accepted: bool) {
        let mut reloads = self
            .config_reloads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if accepted {
            reloads.accepted += 1;
        } else {
            reloads.refused += 1;
        }
        reloads.last_refused = !accepted;
    }

    /// The settings of the last configuration reload, `running`, are in
    /// force for `application` at `now_ms` (or the reload left it as it
    /// was): reported as they are, whatever a reload read since, or one
    /// that failed before, said.
    pub fn reload_applied(&self, application: &str, running: &ApplicationConfig, now_ms: i64) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(app) = apps.get_mut(application) {
            app.not_applied = None;
            if app.mode == Mode::Paused && running.mode != Mode::Paused {
                app.added_ms = Some(now_ms);
            }
            app.follow(running, self.dry_run);
        }
    }

    /// A configuration reload could not put `application`'s new settings
    /// in force at `at_ms`, for `reason`. `running` is what it still runs
    /// with (a changed application whose new plugin did not load keeps its
    /// controller and its previous settings): reported again, its mode and
    /// staleness limits with them. With none, no controller runs for it:
    /// it is not ready until a reload starts one.
    pub fn reload_not_applied(
        &self,
        application: &str,
        reason: &str,
        at_ms: i64,
        running: Option<&ApplicationConfig>,
    ) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(app) = apps.get_mut(application) else {
            return;
        };
        if let Some(config) = running {
            app.follow(config, self.dry_run);
        }
        app.not_applied = Some(NotApplied {
            reason: reason.to_owned(),
            at_ms,
            running: running.is_some(),
        });
    }

    /// Follows a reloaded configuration at `now_ms`: applications removed
    /// are no longer reported (none of their series, their counters
    /// included: with applications renamed over time they would pile up
    /// for ever; one added again starts from 0, which Prometheus reads as
    /// a counter reset), added ones are reported from now (their
    /// staleness counts from `now_ms`), and the others keep their counts
    /// with the limits of their new settings.
    pub fn set_applications(&self, config: &Config, now_ms: i64) {
        let wanted = |name: &str| config.applications.iter().any(|a| a.name == name);
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.retain(|name, _| wanted(name));
        self.failures.retain(wanted);
        // A removed application's call durations go with it (a histogram
        // is not a counter an alert compares over time).
        self.plugin_call_series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|labels| {
                let kept = labels
                    .iter()
                    .any(|(key, value)| *key == "application" && wanted(value));
                if !kept {
                    self.plugin_calls.remove(labels);
                }
                kept
            });
        for app in &config.applications {
            match apps.get_mut(&app.name) {
                Some(metrics) => {
                    if metrics.mode == Mode::Paused && app.mode != Mode::Paused {
                        metrics.added_ms = Some(now_ms);
                    }
                    metrics.follow(app, self.dry_run);
                }
                None => {
                    for class in Failure::ALL {
                        self.failures.start(&app.name, class.as_str());
                    }
                    apps.insert(
                        app.name.clone(),
                        AppMetrics {
                            added_ms: Some(now_ms),
                            mode: running_mode(app.mode, self.dry_run),
                            ..AppMetrics::limits(app)
                        },
                    );
                }
            }
        }
    }

    /// The applications reported, sorted by name (the configuration's,
    /// reloads included).
    pub fn applications(&self) -> Vec<String> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.keys().cloned().collect()
    }

    /// The applications reported, each with its target's words, sorted by
    /// name (what `GET /status` and `GET /explain` read).
    pub fn configured(&self) -> Vec<(String, Words)> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .map(|(name, app)| (name.clone(), app.words))
            .collect()
    }

    /// Says that the agent starts (it loads its plugins, which may compile
    /// for a minute, and its journals): `/readyz` and `flinkscale_ready`
    /// say not ready until [`Registry::mark_started`]; `/livez` is not
    /// concerned.
    pub fn mark_starting(&self) {
        self.starting
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the agent is starting ([`Registry::mark_starting`]).
    pub fn starting(&self) -> bool {
        self.starting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Restarts the clock of applications that never evaluated (call it
    /// when the controllers start, after the plugins are compiled), and
    /// ends the start.
    pub fn mark_started(&self, now_ms: i64) {
        *self.started_ms.lock().unwrap_or_else(|p| p.into_inner()) = now_ms;
        self.starting
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The failure counters this registry reports; [`super::Events`] with
    /// this registry counts into them.
    pub fn failure_counts(&self) -> Arc<FailureCounts> {
        self.failures.clone()
    }

    /// Records a beat of the heartbeat at `now`.
    pub fn beat(&self, now: Instant) {
        *self.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// How long the heartbeat has been silent at `now`, if longer than
    /// [`LIVENESS_LIMIT`]; `None` while the agent is alive.
    pub fn frozen_for(&self, now: Instant) -> Option<Duration> {
        let last = *self.last_beat.lock().unwrap_or_else(|p| p.into_inner());
        let silent = now.saturating_duration_since(last);
        (silent > LIVENESS_LIMIT).then_some(silent)
    }

    /// Observes one call of `function` (`decide`, `interpret`) of `plugin`
    /// (`name version`) for `application` that took `elapsed`.
    pub fn plugin_call(&self, application: &str, plugin: &str, function: &str, elapsed: Duration) {
        // Under the applications' lock, as a reload's removal is: a last
        // call of a removed application's controller is not reported.
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if !apps.contains_key(application) {
            return;
        }
        let labels = vec![
            ("application", application.to_owned()),
            ("plugin", plugin.to_owned()),
            ("function", function.to_owned()),
        ];
        self.plugin_calls
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let mut series = self
            .plugin_call_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !series.contains(&labels) {
            series.insert(labels);
        }
    }

    /// Updates the counters from `event`. Failures are counted by
    /// [`FailureCounts`], not here.
    pub fn record(&self, event: &Event) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let application = match event {
            Event::Evaluated { application, .. }
            | Event::RescaleStarted { application, .. }
            | Event::RescaleCompleted { application, .. }
            | Event::GraceHeld { application, .. }
            | Event::Resumed { application, .. }
            | Event::Failed { application, .. }
            | Event::Panicked { application, .. }
            | Event::JournalFailing { application, .. }
            | Event::JournalRecovered { application, .. }
            | Event::PluginQuarantined { application, .. }
            | Event::PluginRecovered { application, .. }
            | Event::PluginReloaded { application, .. }
            | Event::PluginReloadRefused { application, .. }
            | Event::StoodDown { application, .. }
            | Event::StandDownLifted { application, .. }
            | Event::ControllerReplaced { application, .. } => application,
            _ => return,
        };
        // An application a reload removed may have a last word as its
        // controller stops: it is no longer reported.
        let Some(app) = apps.get_mut(application) else {
            return;
        };
        match event {
            Event::Evaluated {
                at_ms,
                kpu,
                decision,
                alarms,
                latest,
                ..
            } => {
                app.evaluations += 1;
                app.target_kpu = Some(match decision.action {
                    Action::Hold => {
                        app.holds += 1;
                        *kpu
                    }
                    Action::ScaleTo(target) => {
                        app.scales += 1;
                        target
                    }
                });
                app.alarms = alarms.iter().map(|a| (a.name.clone(), a.state)).collect();
                app.latest = latest.clone();
                app.kpu = Some(*kpu);
                app.last_evaluation_ms = Some(*at_ms);
                app.lazy_wait_ms = app.lazy_wait_after(decision);
                app.panicked = None;
            }
            Event::RescaleStarted { at_ms, .. } => {
                app.rescales += 1;
                app.last_rescale_ms = Some(*at_ms);
            }
            Event::RescaleCompleted { at_ms, .. } => app.completed_ms = Some(*at_ms),
            // Somebody else's update is followed and waited out as the
            // agent's own, without evaluating: the same allowance.
            Event::GraceHeld { at_ms, .. } => app.held_ms = Some(*at_ms),
            // A restart resumes the journal's phase: an update followed, or
            // a grace period waited out, without evaluating, and nothing
            // else says so (no RescaleStarted, no GraceHeld).
            // Said again while the same wait goes on (an application that
            // stays busy), it counts from the first: one stuck for good is
            // not ready once its update timeout and grace period are past.
            Event::Resumed { at_ms, wait, .. } => {
                let waited = wait.map(Waited::Resumed);
                // (Not across a reload that started the controller anew,
                // from which staleness counts.)
                let same_wait = matches!(
                    (app.resumed, waited),
                    (
                        Some((first, Waited::Resumed(ResumedWait::Follow))),
                        Some(Waited::Resumed(ResumedWait::Follow))
                    )
                        if app.last_evaluation_ms.is_none_or(|e| e < first)
                            && app.added_ms.is_none_or(|added| added <= first)
                );
                if !same_wait {
                    app.resumed = waited.map(|waited| (*at_ms, waited));
                }
            }
            Event::Failed {
                at_ms,
                class,
                message,
                plugin_class,
                ..
            } => {
                if let Some(plugin_class) = plugin_class {
                    *app.plugin_failures.entry(*plugin_class).or_insert(0) += 1;
                }
                app.last_failure = Some(LastFailure {
                    class: class.clone(),
                    message: message.clone(),
                    at_ms: *at_ms,
                });
            }
            Event::Panicked { message, .. } => {
                app.panics += 1;
                app.panicked = Some(message.clone());
            }
            Event::JournalFailing {
                since_ms,
                cause,
                held,
                ..
            } => {
                app.journal = Some(JournalTrouble {
                    since_ms: *since_ms,
                    cause: cause.clone(),
                    held: *held,
                });
            }
            Event::JournalRecovered { .. } => app.journal = None,
            Event::PluginQuarantined { slot, .. } => {
                app.quarantined.insert(slot.clone());
            }
            Event::PluginRecovered { slot, .. } => {
                app.quarantined.remove(slot);
            }
            Event::PluginReloaded { .. } => app.plugin_reloads += 1,
            Event::PluginReloadRefused { .. } => app.plugin_reloads_refused += 1,
            Event::StoodDown {
                since_ms, updates, ..
            } => app.stood_down = Some((*since_ms, updates.clone())),
            Event::StandDownLifted { .. } => app.stood_down = None,
            Event::ControllerReplaced { .. } => {
                app.stood_down = None;
                app.journal = None;
                app.panicked = None;
            }
            _ => {}
        }
    }

    /// The applications that are not ready at `now_ms` (stale, panicked
    /// since their last evaluation, with a journal that cannot be saved,
    /// or left without a controller by a reload), sorted by name; empty
    /// when every application is ready. A paused application is ready
    /// (nothing is expected of it) unless the last reload asked it to run
    /// and could not start it: the operator asked for scaling and has none.
    pub fn not_ready(&self, now_ms: i64) -> Vec<NotReady> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let started_ms = *self.started_ms.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .filter_map(|(name, app)| app.not_ready(name, started_ms, now_ms))
            .collect()
    }

    /// Each application whose journal cannot be saved now, by name: what
    /// `GET /status` adds to the files it reads (the failure record beside
    /// the journal cannot be written either).
    pub fn journal_trouble(&self) -> BTreeMap<String, JournalTrouble> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .filter_map(|(name, app)| Some((name.clone(), app.journal.clone()?)))
            .collect()
    }

    /// The applications whose mode is `"paused"`, sorted by name: `/readyz`
    /// names them (they are ready: nothing is expected of them, unless a
    /// reload could not resume them: see [`Registry::not_ready`]).
    pub fn paused(&self) -> Vec<String> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .filter(|(_, app)| app.mode == Mode::Paused)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every metric at `now_ms`, in the Prometheus text format 0.0.4.
    pub fn render(&self, now_ms: i64) -> String {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let started_ms = *self.started_ms.lock().unwrap_or_else(|p| p.into_inner());
        let starting = self.starting();
        // A removed application's stopping controller may count one last
        // failure after the reload: not reported.
        let failures: Vec<_> = self
            .failures
            .snapshot()
            .into_iter()
            .filter(|(app, _, _)| apps.contains_key(app))
            .collect();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
        let per_app = |value: &dyn Fn(&AppMetrics) -> Option<String>| -> Vec<(String, String)> {
            apps.iter()
                .filter_map(|(name, app)| value(app).map(|v| (labels(&[("application", name)]), v)))
                .collect()
        };
        family(
            "flinkscale_evaluations_total",
            "counter",
            "Evaluations that ended with a validated decision.",
            per_app(&|a| Some(a.evaluations.to_string())),
        );
        let mut decisions = Vec::new();
        for (name, app) in &apps {
            for (action, n) in [("hold", app.holds), ("scale", app.scales)] {
                decisions.push((
                    labels(&[("application", name), ("action", action)]),
                    n.to_string(),
                ));
            }
        }
        family(
            "flinkscale_decisions_total",
            "counter",
            "Decisions by action (hold or scale), dry runs included.",
            decisions,
        );
        family(
            "flinkscale_rescales_total",
            "counter",
            "Rescales the target accepted: UpdateApplication for MSF, PUT /jobs/{id}/resource-requirements for a self-managed Flink job.",
            per_app(&|a| Some(a.rescales.to_string())),
        );
        family(
            "flinkscale_failures_total",
            "counter",
            "Failures by class (metrics, plugin, throttled, permission, update_timeout, ...); journal: a journal unreadable at start, or an update not sent because its record could not be saved (one per update held, not the saves retried in between).",
            failures
                .iter()
                .map(|(app, class, n)| {
                    (
                        labels(&[("application", app), ("class", class)]),
                        n.to_string(),
                    )
                })
                .collect(),
        );
        let mut last_failure = Vec::new();
        for (name, app) in &apps {
            let last = app.last_failure.as_ref().map(|f| f.class.as_str());
            let mut classes: Vec<&str> = Failure::ALL.iter().map(|c| c.as_str()).collect();
            // A class this build does not list still shows which it was.
            if let Some(class) = last
                && !classes.contains(&class)
            {
                classes.push(class);
            }
            for class in classes {
                last_failure.push((
                    labels(&[("application", name), ("class", class)]),
                    u8::from(last == Some(class)).to_string(),
                ));
            }
        }
        family(
            "flinkscale_last_failure",
            "gauge",
            "1 for the class of the application's most recent failure, 0 for every other class (all 0 before its first failure).",
            last_failure,
        );
        family(
            "flinkscale_last_failure_timestamp_seconds",
            "gauge",
            "When the application last failed, in seconds since the Unix epoch; failing now if later than its last evaluation.",
            per_app(&|a| a.last_failure.as_ref().map(|f| seconds(f.at_ms))),
        );
        family(
            "flinkscale_staleness_seconds",
            "gauge",
            "Seconds since the application's last evaluation (since the agent started, before the first).",
            // Never negative: a wall clock stepped back reads as no age.
            per_app(&|a| {
                Some(seconds(
                    now_ms.saturating_sub(a.since_ms(started_ms)).max(0),
                ))
            }),
        );
        family(
            "flinkscale_ready",
            "gauge",
            "1 while GET /readyz counts the application as ready (the agent started, evaluated within 3 x its interval + 60 s, plus the wait a lazy hold chose or a rescale's update timeout and grace period, no panic since, its journal saved at the last attempt, not stood down, and not left unstarted by the last reload; paused: ready unless the last reload could not resume it), 0 otherwise.",
            // The rule of `/readyz` itself, not a copy of it.
            apps.iter()
                .map(|(name, app)| {
                    let ready = !starting && app.not_ready(name, started_ms, now_ms).is_none();
                    (
                        labels(&[("application", name)]),
                        u8::from(ready).to_string(),
                    )
                })
                .collect(),
        );
        family(
            "flinkscale_controller_panics_total",
            "counter",
            "Panics of the application's controller (each one restarted).",
            per_app(&|a| Some(a.panics.to_string())),
        );
        family(
            "flinkscale_kpu",
            "gauge",
            "The application's KPU at its last evaluation.",
            per_app(&|a| {
                a.kpu
                    .filter(|_| a.words == Words::Msf)
                    .map(|k| k.to_string())
            }),
        );
        // A Flink job's capacity is its parallelism, under its own name
        // (the family is written only when a Flink job is configured).
        let flink = apps.values().any(|a| a.words == Words::Flink);
        if flink {
            family(
                "flinkscale_parallelism",
                "gauge",
                "The self-managed Flink job's parallelism at its last evaluation.",
                per_app(&|a| {
                    a.kpu
                        .filter(|_| a.words == Words::Flink)
                        .map(|k| k.to_string())
                }),
            );
        }
        family(
            "flinkscale_last_evaluation_timestamp_seconds",
            "gauge",
            "When the application was last evaluated, in seconds since the Unix epoch.",
            per_app(&|a| a.last_evaluation_ms.map(seconds)),
        );
        let mut plugin_failures = Vec::new();
        for (name, app) in &apps {
            for class in FailureClass::ALL {
                plugin_failures.push((
                    labels(&[("application", name), ("class", class.as_str())]),
                    app.plugin_failures
                        .get(&class)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                ));
            }
        }
        family(
            "flinkscale_plugin_failures_total",
            "counter",
            "Plugin calls that gave no answer, by how the plugin failed (timeout, trap, \
             out_of_memory, resource_limit, guest_error, invalid).",
            plugin_failures,
        );
        let mut modes = Vec::new();
        for (name, app) in &apps {
            for mode in Mode::ALL {
                modes.push((
                    labels(&[("application", name), ("mode", mode.as_str())]),
                    u8::from(app.mode == mode).to_string(),
                ));
            }
        }
        family(
            "flinkscale_application_mode",
            "gauge",
            "1 for the mode the application runs in (active, dry-run or paused: its configured mode, dry-run for an active one under `run --dry-run`), 0 for the others; a paused application is not evaluated and counts as ready.",
            modes,
        );
        family(
            "flinkscale_stood_down",
            "gauge",
            "1 while the agent stands down for the application (another writer kept undoing its rescales: no update is sent until `flinkscale reload --resume` names it), else 0.",
            per_app(&|a| Some(u8::from(a.stood_down.is_some()).to_string())),
        );
        family(
            "flinkscale_plugin_quarantined",
            "gauge",
            "1 while a plugin of the application is quarantined (the application holds), else 0.",
            per_app(&|a| Some(u8::from(!a.quarantined.is_empty()).to_string())),
        );
        family(
            "flinkscale_config_reload_not_applied",
            "gauge",
            "1 while the last SIGHUP reload could not put the application's new settings in force (its plugins did not load, its journal could not be opened): it runs with its previous settings, or not at all (then /readyz says so); else 0.",
            per_app(&|a| Some(u8::from(a.not_applied.is_some()).to_string())),
        );
        let mut reloads = Vec::new();
        for (name, app) in &apps {
            for (outcome, n) in [
                ("reloaded", app.plugin_reloads),
                ("refused", app.plugin_reloads_refused),
            ] {
                reloads.push((
                    labels(&[("application", name), ("outcome", outcome)]),
                    n.to_string(),
                ));
            }
        }
        family(
            "flinkscale_plugin_reloads_total",
            "counter",
            "Replaced plugin files by outcome: reloaded (now running) or refused (the running plugin stayed).",
            reloads,
        );
        let config_reloads = *self
            .config_reloads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        family(
            "flinkscale_config_reloads_total",
            "counter",
            "SIGHUP reloads of the configuration file by outcome: accepted (valid, applied) or refused (invalid: the running configuration stayed).",
            vec![
                (
                    labels(&[("outcome", "accepted")]),
                    config_reloads.accepted.to_string(),
                ),
                (
                    labels(&[("outcome", "refused")]),
                    config_reloads.refused.to_string(),
                ),
            ],
        );
        family(
            "flinkscale_config_reload_refused",
            "gauge",
            "1 while the last SIGHUP reload was refused: the file on disk is invalid, the agent runs the configuration before it, and a restart would exit 78 on it; 0 otherwise.",
            vec![(
                String::new(),
                u8::from(config_reloads.last_refused).to_string(),
            )],
        );
        family(
            "flinkscale_build_info",
            "gauge",
            "Always 1: this agent's version and the plugin contract versions it accepts.",
            vec![(
                labels(&[
                    ("version", env!("CARGO_PKG_VERSION")),
                    (
                        "contract_versions",
                        &crate::plugin::contract_versions().join(","),
                    ),
                ]),
                "1".to_owned(),
            )],
        );
        let mut alarm_states = Vec::new();
        for (name, app) in &apps {
            for (alarm, current) in &app.alarms {
                for state in [
                    AlarmState::Ok,
                    AlarmState::Alarm,
                    AlarmState::InsufficientData,
                ] {
                    alarm_states.push((
                        labels(&[
                            ("application", name),
                            ("alarm", alarm),
                            ("state", &state.to_string()),
                        ]),
                        u8::from(*current == state).to_string(),
                    ));
                }
            }
        }
        family(
            "flinkscale_alarm_state",
            "gauge",
            "1 for each configured alarm's state at the application's last evaluation (OK, ALARM or INSUFFICIENT_DATA), 0 for its other states.",
            alarm_states,
        );
        let mut metric_values = Vec::new();
        for (name, app) in &apps {
            for (metric, value) in &app.latest {
                // A metric with no data point in the window has no value:
                // its series is left out rather than reported as 0.
                if let Some(value) = value.filter(|v| v.is_finite()) {
                    metric_values.push((
                        labels(&[("application", name), ("metric", metric)]),
                        value.to_string(),
                    ));
                }
            }
        }
        family(
            "flinkscale_metric_value",
            "gauge",
            "The latest value of each configured metric at the application's last evaluation (absent while the metric has no data point).",
            metric_values,
        );
        family(
            "flinkscale_target_kpu",
            "gauge",
            "The KPU the application's last decision asked for (its KPU then, on a hold).",
            per_app(&|a| {
                a.target_kpu
                    .filter(|_| a.words == Words::Msf)
                    .map(|k| k.to_string())
            }),
        );
        if flink {
            family(
                "flinkscale_target_parallelism",
                "gauge",
                "The parallelism the self-managed Flink job's last decision asked for (its parallelism then, on a hold).",
                per_app(&|a| {
                    a.target_kpu
                        .filter(|_| a.words == Words::Flink)
                        .map(|k| k.to_string())
                }),
            );
        }
        let aws_lock = AWS_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
        let aws_counts = aws_lock.clone();
        family(
            "flinkscale_aws_calls_total",
            "counter",
            "AWS API calls by operation and outcome (ok, or the failure's class).",
            aws_counts
                .iter()
                .map(|((operation, outcome), n)| {
                    (
                        labels(&[("operation", operation), ("outcome", outcome)]),
                        n.to_string(),
                    )
                })
                .collect(),
        );
        let flink_lock = FLINK_CALLS.counts.lock().unwrap_or_else(|p| p.into_inner());
        family(
            "flinkscale_flink_calls_total",
            "counter",
            "Calls to Flink's REST API (self-managed Flink) by operation (method and route template) and outcome (ok, or the failure's class).",
            flink_lock
                .iter()
                .map(|((operation, outcome), n)| {
                    (
                        labels(&[("operation", operation), ("outcome", outcome)]),
                        n.to_string(),
                    )
                })
                .collect(),
        );
        let moves = JOBMANAGER_MOVES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        family(
            "flinkscale_flink_jobmanager_moves_total",
            "counter",
            "Moves from one JobManager's address in rest_url to the next, because the first did not answer (self-managed Flink with more than one address).",
            moves
                .iter()
                .map(|((from, to), n)| (labels(&[("from", from), ("to", to)]), n.to_string()))
                .collect(),
        );
        // prometheus-client ends each help text with a full stop itself.
        let mut histograms = prometheus_client::registry::Registry::default();
        histograms.register(
            "flinkscale_aws_call_duration_seconds",
            "Duration of AWS API calls by operation, retries included, in seconds",
            AWS_CALLS.durations.clone(),
        );
        histograms.register(
            "flinkscale_flink_call_duration_seconds",
            "Duration of calls to Flink's REST API by operation, in seconds",
            FLINK_CALLS.durations.clone(),
        );
        histograms.register(
            "flinkscale_plugin_call_duration_seconds",
            "Duration of plugin calls by application, plugin and function (decide, interpret), in seconds",
            self.plugin_calls.clone(),
        );
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &histograms);
        drop(flink_lock);
        drop(aws_lock);
        out
    }
}

/// Milliseconds as seconds, exactly (no float rounding).
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// `name="value",...` with each value escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value per the text format: backslash, double quote and line feed
/// escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP docstring per the text format: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AWS call is counted once: with its outcome when it ends, or as
    /// `given_up` when its caller dropped it first (a stop gave up a read
    /// in flight: the call was sent, and maybe billed).
    #[test]
    fn an_aws_call_is_counted_once_ended_or_given_up() {
        // An operation name no other test uses: the counts are this test's.
        let op = "TestOnlyOperation";
        CountedCall::aws(op).ended("ok");
        drop(CountedCall::aws(op));
        let call = CountedCall::aws(op);
        drop(call);
        assert_eq!(aws_calls(op, "ok"), 1);
        assert_eq!(aws_calls(op, "given_up"), 2);
    }

    fn config(names: &[&str]) -> Config {
        let mut text = String::new();
        for name in names {
            let _ = write!(
                text,
                "[[application]]\nname = {name:?}\nevaluation_interval_secs = 10\n\
                 update_timeout_secs = 100\ngrace_period_secs = 20\n\
                 [application.policy]\nplugin = \"step\"\n"
            );
        }
        toml::from_str(&text).expect("a test configuration")
    }

    fn evaluated(app: &str, at_ms: i64, kpu: u32, action: Action) -> Event {
        Event::Evaluated {
            application: app.to_owned(),
            at_ms,
            kpu,
            latest: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
            policy: "test 1.0.0".to_owned(),
            decision: Decision {
                action,
                reason: "test".to_owned(),
                next_evaluation_secs: None,
            },
            dry_run: false,
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("plain-app_1"), "plain-app_1");
    }

    /// `run --dry-run` sends no update for any application, so an active
    /// one is reported as dry-run, also after a reload; a paused one stays
    /// paused. The operator's drill found `mode="active"} 1` under
    /// `--dry-run`.
    #[test]
    fn run_dry_run_reports_active_applications_as_dry_run() {
        let mut two = config(&["a", "b"]);
        two.applications[1].mode = Mode::Paused;
        let registry = Registry::for_config(&two, 0).with_dry_run(true);
        let mode = |text: &str, app: &str, mode: &str| {
            text.contains(&format!(
                "flinkscale_application_mode{{application=\"{app}\",mode=\"{mode}\"}} 1\n"
            ))
        };
        let text = registry.render(1_000);
        assert!(mode(&text, "a", "dry-run"), "{text}");
        assert!(!mode(&text, "a", "active"), "{text}");
        assert!(mode(&text, "b", "paused"), "{text}");
        // A reload resuming `b` and adding `c`: both run as dry-run too.
        registry.set_applications(&config(&["a", "b", "c"]), 2_000);
        let text = registry.render(3_000);
        for app in ["a", "b", "c"] {
            assert!(mode(&text, app, "dry-run"), "{app}: {text}");
        }
        // Without --dry-run the configured mode is the one reported.
        let text = Registry::for_config(&two, 0).render(1_000);
        assert!(mode(&text, "a", "active"), "{text}");
    }

    /// A Flink job's capacity is `flinkscale_parallelism` and
    /// `flinkscale_target_parallelism`, never `flinkscale_kpu`; an MSF
    /// application beside it keeps its KPU gauges, and a configuration
    /// without a Flink job has no parallelism family at all.
    #[test]
    fn a_flink_jobs_capacity_is_reported_as_parallelism() {
        let mut both = config(&["msf-app", "job"]);
        both.applications[1].target = crate::config::TargetKind::Flink;
        let registry = Registry::for_config(&both, 0);
        registry.record(&evaluated("msf-app", 1_500, 4, Action::ScaleTo(6)));
        registry.record(&evaluated("job", 1_500, 2, Action::ScaleTo(3)));
        let text = registry.render(2_000);
        assert!(
            text.contains("flinkscale_kpu{application=\"msf-app\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_target_kpu{application=\"msf-app\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flinkscale_parallelism gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_parallelism{application=\"job\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_target_parallelism{application=\"job\"} 3\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| l.contains("{application=\"job\"}")) {
            assert!(!line.contains("kpu"), "{line}");
        }
        assert!(
            !text.contains("flinkscale_parallelism{application=\"msf-app\"}"),
            "{text}"
        );
        assert_eq!(
            registry.configured(),
            vec![
                ("job".to_owned(), Words::Flink),
                ("msf-app".to_owned(), Words::Msf)
            ]
        );

        let msf_only = Registry::for_config(&config(&["msf-app"]), 0);
        msf_only.record(&evaluated("msf-app", 1_500, 4, Action::Hold));
        let text = msf_only.render(2_000);
        assert!(!text.contains("parallelism"), "{text}");
    }

    /// Moves between JobManagers are one sample per ordered pair of
    /// addresses: a move back is its own series.
    #[test]
    fn jobmanager_moves_are_counted_by_their_two_addresses() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        let (from, to) = ("http://jm-render-a:8081", "http://jm-render-b:8081");
        record_jobmanager_move(from, to);
        record_jobmanager_move(from, to);
        record_jobmanager_move(to, from);
        let text = registry.render(2_000);
        let type_at = text
            .find("# TYPE flinkscale_flink_jobmanager_moves_total counter\n")
            .unwrap_or_else(|| panic!("no TYPE:\n{text}"));
        let sample =
            format!("flinkscale_flink_jobmanager_moves_total{{from=\"{from}\",to=\"{to}\"}} 2\n");
        assert!(text[type_at..].contains(&sample), "{text}");
        let back =
            format!("flinkscale_flink_jobmanager_moves_total{{from=\"{to}\",to=\"{from}\"}} 1\n");
        assert!(text[type_at..].contains(&back), "{text}");
        assert_eq!(jobmanager_moves(from, to), 2);
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        registry.record(&evaluated("app", 1_500, 4, Action::Hold));
        let text = registry.render(2_000);
        for (name, kind) in [
            ("flinkscale_evaluations_total", "counter"),
            ("flinkscale_decisions_total", "counter"),
            ("flinkscale_rescales_total", "counter"),
            ("flinkscale_failures_total", "counter"),
            ("flinkscale_last_failure", "gauge"),
            ("flinkscale_last_failure_timestamp_seconds", "gauge"),
            ("flinkscale_staleness_seconds", "gauge"),
            ("flinkscale_ready", "gauge"),
            ("flinkscale_controller_panics_total", "counter"),
            ("flinkscale_kpu", "gauge"),
            ("flinkscale_last_evaluation_timestamp_seconds", "gauge"),
            ("flinkscale_plugin_quarantined", "gauge"),
            ("flinkscale_stood_down", "gauge"),
            ("flinkscale_config_reload_not_applied", "gauge"),
            ("flinkscale_plugin_failures_total", "counter"),
            ("flinkscale_flink_jobmanager_moves_total", "counter"),
        ] {
            let help = text
                .find(&format!("# HELP {name} "))
                .unwrap_or_else(|| panic!("no HELP for {name}:\n{text}"));
            let kind_at = text
                .find(&format!("# TYPE {name} {kind}\n"))
                .unwrap_or_else(|| panic!("no TYPE {kind} for {name}:\n{text}"));
            assert!(help < kind_at, "HELP after TYPE for {name}");
            if let Some(sample) = text.find(&format!("\n{name}{{")) {
                assert!(kind_at < sample, "a sample of {name} precedes its TYPE");
            }
        }
        assert!(text.contains("flinkscale_evaluations_total{application=\"app\"} 1\n"));
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"hold\"} 1\n")
        );
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"scale\"} 0\n")
        );
        assert!(text.contains("flinkscale_kpu{application=\"app\"} 4\n"));
        assert!(
            text.contains(
                "flinkscale_last_evaluation_timestamp_seconds{application=\"app\"} 1.500\n"
            )
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn odd_application_names_render_as_valid_label_values() {
        let name = "we\"ird\\app\nx";
        let registry = Registry::for_config(&config(&[name]), 0);
        let failures = registry.failure_counts();
        failures.count(name, "plugin");
        let text = registry.render(2_000);
        assert!(
            text.contains(
                "flinkscale_failures_total{application=\"we\\\"ird\\\\app\\nx\",class=\"plugin\"} 1\n"
            ),
            "{text}"
        );
        // Every line is a comment or one sample: no raw line feed leaked.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("flinkscale_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn counters_follow_the_events() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        registry.record(&evaluated("app", 1_000, 2, Action::ScaleTo(4)));
        registry.record(&Event::RescaleStarted {
            application: "app".to_owned(),
            at_ms: 1_100,
            from_kpu: 2,
            to_kpu: 4,
            version_id: 3,
        });
        registry.record(&Event::Failed {
            application: "app".to_owned(),
            at_ms: 1_150,
            class: "plugin".to_owned(),
            plugin_class: Some(FailureClass::Timeout),
            message: "policy step 1 failed".to_owned(),
        });
        registry.record(&Event::PluginQuarantined {
            application: "app".to_owned(),
            at_ms: 1_200,
            plugin: "step 1".to_owned(),
            slot: "policy".to_owned(),
            class: FailureClass::Timeout,
            failures: 3,
            until_ms: 2_000,
        });
        // An interpreter quarantined too: the policy's recovery alone
        // leaves the application quarantined.
        registry.record(&Event::PluginQuarantined {
            application: "app".to_owned(),
            at_ms: 1_300,
            plugin: "lag 1".to_owned(),
            slot: "interpreter 1".to_owned(),
            class: FailureClass::Trap,
            failures: 3,
            until_ms: 2_000,
        });
        let text = registry.render(2_000);
        assert!(
            text.contains(
                "flinkscale_plugin_failures_total{application=\"app\",class=\"timeout\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "flinkscale_plugin_failures_total{application=\"app\",class=\"trap\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("flinkscale_rescales_total{application=\"app\"} 1\n"));
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"scale\"} 1\n")
        );
        assert!(text.contains("flinkscale_plugin_quarantined{application=\"app\"} 1\n"));
        registry.record(&Event::PluginRecovered {
            application: "app".to_owned(),
            at_ms: 2_500,
            plugin: "step 1".to_owned(),
            slot: "policy".to_owned(),
        });
        assert!(
            registry
                .render(3_000)
                .contains("flinkscale_plugin_quarantined{application=\"app\"} 1\n")
        );
        registry.record(&Event::PluginRecovered {
            application: "app".to_owned(),
            at_ms: 2_600,
            plugin: "lag 1".to_owned(),
            slot: "interpreter 1".to_owned(),
        });
        assert!(
            registry
                .render(3_000)
                .contains("flinkscale_plugin_quarantined{application=\"app\"} 0\n")
        );
    }

    #[test]
    fn alarm_states_metric_values_and_the_target_follow_the_last_evaluation() {
        use crate::model::AlarmStatus;
        let registry = Registry::for_config(&config(&["app"]), 0);
        let mut event = evaluated("app", 1_000, 2, Action::ScaleTo(4));
        if let Event::Evaluated { alarms, latest, .. } = &mut event {
            *alarms = vec![AlarmStatus {
                name: "out".to_owned(),
                state: AlarmState::Alarm,
                since_ms: 0,
            }];
            *latest = vec![("cpu".to_owned(), Some(81.5)), ("lag".to_owned(), None)];
        }
        registry.record(&event);
        let text = registry.render(2_000);
        for (state, v) in [("OK", 0), ("ALARM", 1), ("INSUFFICIENT_DATA", 0)] {
            assert!(
                text.contains(&format!(
                    "flinkscale_alarm_state{{application=\"app\",alarm=\"out\",state=\"{state}\"}} {v}\n"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("flinkscale_metric_value{application=\"app\",metric=\"cpu\"} 81.5\n"),
            "{text}"
        );
        // No data point, no value (not a 0 that would look like idle).
        assert!(!text.contains("metric=\"lag\""), "{text}");
        assert!(text.contains("flinkscale_target_kpu{application=\"app\"} 4\n"));
        assert!(text.contains("flinkscale_build_info{version=\""), "{text}");
        // A hold's target is the KPU it holds at.
        registry.record(&evaluated("app", 3_000, 4, Action::Hold));
        let text = registry.render(4_000);
        assert!(text.contains("flinkscale_target_kpu{application=\"app\"} 4\n"));
        registry.record(&evaluated("app", 5_000, 3, Action::Hold));
        assert!(
            registry
                .render(6_000)
                .contains("flinkscale_target_kpu{application=\"app\"} 3\n")
        );
    }

    #[test]
    fn plugin_calls_are_a_histogram() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        registry.plugin_call("app", "step 1", "decide", Duration::from_millis(3));
        registry.plugin_call("app", "step 1", "decide", Duration::from_millis(40));
        let text = registry.render(0);
        let series = "application=\"app\",plugin=\"step 1\",function=\"decide\"";
        let doubled: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# HELP") && l.ends_with(".."))
            .collect();
        assert!(doubled.is_empty(), "a help text ends in '..': {doubled:?}");
        assert!(
            text.contains("# TYPE flinkscale_plugin_call_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "flinkscale_plugin_call_duration_seconds_count{{{series}}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "flinkscale_plugin_call_duration_seconds_bucket{{le=\"0.004\",{series}}} 1\n"
            )),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    /// What a reload put in force is what is reported, whatever a reload
    /// read since or failed before: two reloads in a row (the second read
    /// while the first loads plugins) left a resumed application reported
    /// as paused when the first failed and the second applied.
    #[test]
    fn the_settings_a_reload_put_in_force_are_the_ones_reported() {
        let app = |mode: &str, interval: u32| -> Config {
            toml::from_str(&format!(
                "[[application]]\nname = \"a\"\nmode = \"{mode}\"\n\
                 evaluation_interval_secs = {interval}\n[application.policy]\nplugin = \"hold\"\n"
            ))
            .expect("a configuration")
        };
        let paused = app("paused", 10);
        let resumed = app("active", 20);
        let registry = Registry::for_config(&paused, 0);
        // Reload 2 is read (resumed) before reload 1 (also a resume) fails.
        registry.set_applications(&resumed, 1_000);
        registry.reload_not_applied("a", "boom", 2_000, Some(&paused.applications[0]));
        assert!(
            registry
                .render(2_000)
                .contains("flinkscale_application_mode{application=\"a\",mode=\"paused\"} 1\n")
        );
        assert!(
            registry
                .render(2_000)
                .contains("flinkscale_config_reload_not_applied{application=\"a\"} 1\n")
        );
        // Still paused where a reload asked it to run: not ready, saying why
        // (and not stale: a paused application never is).
        let not_ready = registry.not_ready(900_000);
        assert_eq!(not_ready.len(), 1, "{not_ready:?}");
        assert!(not_ready[0].still_paused && !not_ready[0].stale);
        assert_eq!(
            not_ready[0].not_started.as_ref().map(|n| n.reason.as_str()),
            Some("boom")
        );
        // Reload 2 applies.
        registry.reload_applied("a", &resumed.applications[0], 3_000);
        let text = registry.render(3_000);
        assert!(
            text.contains("flinkscale_application_mode{application=\"a\",mode=\"active\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("flinkscale_config_reload_not_applied{application=\"a\"} 0\n"));
        // Its staleness counts from the resume, at its new interval (3 x 20 s + 60 s).
        assert!(registry.not_ready(3_000 + 120_000).is_empty());
        assert_eq!(registry.not_ready(3_000 + 120_001).len(), 1);
    }

    /// `flinkscale_ready` is 0 exactly while `/readyz` names the
    /// application. It kept a copy of the rule without the reload's part:
    /// a paused application the last reload was to resume (its plugin did
    /// not load, so it stays paused), and one a reload added without
    /// starting it, were 503 on `/readyz` and 1 on the gauge.
    #[test]
    fn the_ready_gauge_is_0_for_an_application_a_reload_could_not_start() {
        let mut paused = config(&["a"]);
        paused.applications[0].mode = Mode::Paused;
        let registry = Registry::for_config(&paused, 0);
        registry.mark_started(0);
        let ready = |now_ms: i64, app: &str| {
            let text = registry.render(now_ms);
            if text.contains(&format!("flinkscale_ready{{application=\"{app}\"}} 1\n")) {
                true
            } else {
                assert!(
                    text.contains(&format!("flinkscale_ready{{application=\"{app}\"}} 0\n")),
                    "{text}"
                );
                false
            }
        };
        assert!(ready(1_000, "a"));
        // The reload removes "a"'s mode and adds "b"; neither's plugin loads:
        // "a" stays paused, "b" runs no controller.
        registry.set_applications(&config(&["a", "b"]), 2_000);
        registry.reload_not_applied(
            "a",
            "plugin did not load",
            2_000,
            Some(&paused.applications[0]),
        );
        registry.reload_not_applied("b", "plugin did not load", 2_000, None);
        let not_ready = registry.not_ready(3_000);
        assert_eq!(not_ready.len(), 2, "{not_ready:?}");
        assert!(not_ready[0].still_paused && not_ready[0].not_started.is_some());
        assert!(!not_ready[1].still_paused && not_ready[1].not_started.is_some());
        assert!(!not_ready[1].stale);
        assert!(!ready(3_000, "a"), "still paused, was to resume");
        assert!(!ready(3_000, "b"), "added, not running");
        // The next reload starts both: ready again, by the same rule.
        let both = config(&["a", "b"]);
        registry.reload_applied("a", &both.applications[0], 4_000);
        registry.reload_applied("b", &both.applications[1], 4_000);
        assert!(registry.not_ready(5_000).is_empty());
        assert!(ready(5_000, "a") && ready(5_000, "b"));
    }

    /// A reload that removes an application drops its call durations,
    /// and a last call of its stopping controller does not bring them
    /// back; the others' stay.
    #[test]
    fn a_removed_applications_plugin_call_durations_go_with_it() {
        let registry = Registry::for_config(&config(&["gone", "kept"]), 0);
        for app in ["gone", "kept"] {
            registry.plugin_call(app, "step 1", "decide", Duration::from_millis(3));
        }
        registry.set_applications(&config(&["kept"]), 1_000);
        registry.plugin_call("gone", "step 1", "decide", Duration::from_millis(3));
        let text = registry.render(1_000);
        assert!(
            text.contains("flinkscale_plugin_call_duration_seconds_count{application=\"kept\""),
            "{text}"
        );
        assert!(
            !text.contains("flinkscale_plugin_call_duration_seconds_count{application=\"gone\""),
            "{text}"
        );
    }

    /// A reload that removes an application drops its failure counters
    /// (renamed applications would otherwise pile them up for ever), and
    /// one last failure of its stopping controller is not reported; the
    /// others' counts stay.
    #[test]
    fn a_removed_applications_failure_counters_go_with_it() {
        let registry = Registry::for_config(&config(&["gone", "kept"]), 0);
        let failures = registry.failure_counts();
        for app in ["gone", "kept"] {
            failures.count(app, "throttled");
        }
        registry.set_applications(&config(&["kept"]), 1_000);
        failures.count("gone", "throttled");
        let text = registry.render(1_000);
        assert!(
            text.contains(
                "flinkscale_failures_total{application=\"kept\",class=\"throttled\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("application=\"gone\""), "{text}");
        // Added again, from 0.
        registry.set_applications(&config(&["gone", "kept"]), 2_000);
        let text = registry.render(2_000);
        assert!(
            text.contains(
                "flinkscale_failures_total{application=\"gone\",class=\"throttled\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_application_is_stale_after_three_intervals_and_a_minute() {
        // Interval 10 s: stale after 90 s without an evaluation.
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        assert!(registry.not_ready(90_000).is_empty());
        let stale = registry.not_ready(90_001);
        assert_eq!(stale.len(), 2);
        assert!(stale[0].stale);
        assert!(!stale[0].ever_evaluated);
        registry.record(&evaluated("a", 80_000, 1, Action::Hold));
        registry.record(&evaluated("b", 80_000, 1, Action::Hold));
        assert!(registry.not_ready(170_000).is_empty());
        let stale = registry.not_ready(170_001);
        assert_eq!(stale.len(), 2);
        assert_eq!(stale[0].application, "a");
        assert_eq!(stale[0].silent_ms, 90_001);
        assert!(stale[0].ever_evaluated);
        assert_eq!(stale[0].failure, None);
    }

    #[test]
    fn a_lazy_hold_moves_the_staleness_limit_by_the_wait_it_chose() {
        // Interval 10 s; a hold that asks for 100 s waits 10 intervals, so
        // the agent is silent 100 s by choice: stale only 9 intervals later
        // than after an ordinary hold (at 80 + 100 + 20 + 60 s).
        let registry = Registry::for_config(&config(&["a"]), 0);
        let mut lazy = evaluated("a", 80_000, 1, Action::Hold);
        if let Event::Evaluated { decision, .. } = &mut lazy {
            decision.next_evaluation_secs = Some(100);
        }
        registry.record(&lazy);
        assert!(registry.not_ready(260_000).is_empty());
        assert!(
            registry
                .render(260_000)
                .contains("flinkscale_ready{application=\"a\"} 1\n")
        );
        let stale = registry.not_ready(260_001);
        assert_eq!(stale.len(), 1);
        assert!(stale[0].stale);
        assert!(
            registry
                .render(260_001)
                .contains("flinkscale_ready{application=\"a\"} 0\n")
        );
        // Never more than the controller's own bound: 15 intervals.
        if let Event::Evaluated {
            decision, at_ms, ..
        } = &mut lazy
        {
            decision.next_evaluation_secs = Some(86_400);
            *at_ms = 300_000;
        }
        registry.record(&lazy);
        assert!(registry.not_ready(300_000 + 150_000 + 80_000).is_empty());
        assert_eq!(registry.not_ready(300_000 + 150_000 + 80_001).len(), 1);
        // The next evaluation, an ordinary hold, sets the limit back.
        registry.record(&evaluated("a", 600_000, 1, Action::Hold));
        assert!(registry.not_ready(690_000).is_empty());
        assert_eq!(registry.not_ready(690_001).len(), 1);
    }

    #[test]
    fn without_lazy_polling_a_hold_asking_for_later_changes_no_limit() {
        // The controller evaluates every interval then, whatever is asked.
        let mut config = config(&["a"]);
        config.applications[0].lazy_polling = Some(false);
        let registry = Registry::for_config(&config, 0);
        let mut lazy = evaluated("a", 80_000, 1, Action::Hold);
        if let Event::Evaluated { decision, .. } = &mut lazy {
            decision.next_evaluation_secs = Some(100);
        }
        registry.record(&lazy);
        assert!(registry.not_ready(170_000).is_empty());
        assert_eq!(registry.not_ready(170_001).len(), 1);
    }

    #[test]
    fn a_reload_adds_and_removes_applications_and_keeps_the_others_counts() {
        let registry = Registry::for_config(&config(&["kept", "gone"]), 0);
        registry.record(&evaluated("kept", 1_000, 2, Action::Hold));
        registry.set_applications(&config(&["kept", "new"]), 500_000);
        // The removed one's last word after the reload is not reported.
        registry.record(&evaluated("gone", 500_001, 2, Action::Hold));
        let text = registry.render(500_000);
        assert!(text.contains("flinkscale_evaluations_total{application=\"kept\"} 1"));
        assert!(text.contains("flinkscale_evaluations_total{application=\"new\"} 0"));
        assert!(!text.contains("flinkscale_evaluations_total{application=\"gone\"}"));
        // The added one's silence counts from the reload, not the start.
        let not_ready: Vec<String> = registry
            .not_ready(500_000 + 90_000)
            .into_iter()
            .map(|n| n.application)
            .collect();
        assert_eq!(not_ready, ["kept"]);
    }

    #[test]
    fn a_refused_configuration_reload_is_counted_and_shown_until_one_is_accepted() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        let text = registry.render(0);
        assert!(text.contains("flinkscale_config_reloads_total{outcome=\"accepted\"} 0\n"));
        assert!(text.contains("flinkscale_config_reloads_total{outcome=\"refused\"} 0\n"));
        assert!(
            text.contains("flinkscale_config_reload_refused 0\n"),
            "{text}"
        );
        registry.config_reloaded(false);
        registry.config_reloaded(false);
        let text = registry.render(0);
        assert!(text.contains("flinkscale_config_reloads_total{outcome=\"refused\"} 2\n"));
        assert!(
            text.contains("flinkscale_config_reload_refused 1\n"),
            "{text}"
        );
        registry.config_reloaded(true);
        let text = registry.render(0);
        assert!(text.contains("flinkscale_config_reloads_total{outcome=\"accepted\"} 1\n"));
        assert!(text.contains("flinkscale_config_reloads_total{outcome=\"refused\"} 2\n"));
        assert!(
            text.contains("flinkscale_config_reload_refused 0\n"),
            "{text}"
        );
    }

    #[test]
    fn a_rescale_in_progress_extends_the_limit_by_timeout_and_grace() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.record(&evaluated("a", 1_000, 1, Action::ScaleTo(2)));
        registry.record(&Event::RescaleStarted {
            application: "a".to_owned(),
            at_ms: 2_000,
            from_kpu: 1,
            to_kpu: 2,
            version_id: 1,
        });
        // 2 s + (100 s + 20 s) + 90 s.
        assert!(registry.not_ready(212_000).is_empty());
        assert_eq!(registry.not_ready(212_001).len(), 1);
    }

    /// Once the rescale completed, only its grace period is allowed: an
    /// agent whose evaluations then fail is not ready 90 s after the grace
    /// period ends, not after the whole update timeout too.
    #[test]
    fn a_completed_rescale_allows_only_its_grace_period() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.record(&evaluated("a", 1_000, 1, Action::ScaleTo(2)));
        registry.record(&Event::RescaleStarted {
            application: "a".to_owned(),
            at_ms: 2_000,
            from_kpu: 1,
            to_kpu: 2,
            version_id: 1,
        });
        registry.record(&Event::RescaleCompleted {
            application: "a".to_owned(),
            at_ms: 30_000,
            kpu: 2,
            update_secs: Some(28),
        });
        // 30 s + 20 s of grace + 90 s.
        assert!(registry.not_ready(140_000).is_empty());
        assert_eq!(registry.not_ready(140_001).len(), 1);
    }

    #[test]
    fn a_grace_held_after_another_writers_update_extends_the_limit_as_a_rescale_does() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.record(&evaluated("a", 1_000, 1, Action::Hold));
        // Somebody else's update is followed, then waited out, without
        // evaluating: 2 s + (100 s + 20 s) + 90 s, as for a rescale.
        registry.record(&Event::GraceHeld {
            application: "a".to_owned(),
            at_ms: 2_000,
            until_ms: None,
            reason: "grace period after another writer's update".to_owned(),
        });
        assert!(registry.not_ready(212_000).is_empty());
        assert_eq!(registry.not_ready(212_001).len(), 1);
    }

    fn resumed(app: &str, at_ms: i64, phase: &str, wait: Option<ResumedWait>) -> Event {
        Event::Resumed {
            application: app.to_owned(),
            at_ms,
            phase: phase.to_owned(),
            resume: "what it does".to_owned(),
            version_id: 3,
            wait,
        }
    }

    /// A restart that resumes a journaled grace period or an update in
    /// flight waits it out without evaluating, as before the restart, and
    /// is allowed the same: it emits only `Resumed` (no RescaleStarted, no
    /// GraceHeld), which the registry ignored, so a restart just after a
    /// rescale completed, with a 200 s grace period, was not ready 101 s
    /// later ("101 s since the agent started, without an evaluation"). What
    /// is allowed is what the controller said it waits, not what the
    /// journal's phase was: a grace period with 30 s left is allowed 30 s,
    /// and a phase resolved by evaluating at once, nothing.
    #[test]
    fn a_restart_resuming_a_grace_period_or_an_update_is_allowed_as_a_rescale() {
        use ResumedWait::{Follow, Until};
        let mut grace_200 = config(&["a"]);
        grace_200.applications[0].grace_period_secs = 200;
        let registry = Registry::for_config(&grace_200, 0);
        registry.mark_started(0);
        registry.record(&resumed("a", 1_000, "grace", Some(Until(201_000))));
        assert!(registry.not_ready(101_000).is_empty());
        assert!(
            registry
                .render(101_000)
                .contains("flinkscale_ready{application=\"a\"} 1\n")
        );
        // Until 201 s (1 s + the whole 200 s at most) + 90 s.
        assert!(registry.not_ready(291_000).is_empty());
        assert_eq!(registry.not_ready(291_001).len(), 1);
        // 30 s left of it: allowed 30 s, not the whole period.
        let registry = Registry::for_config(&grace_200, 0);
        registry.mark_started(0);
        registry.record(&resumed("a", 1_000, "grace", Some(Until(31_000))));
        assert!(registry.not_ready(121_000).is_empty());
        assert_eq!(registry.not_ready(121_001).len(), 1);

        // An update followed after the restart: 1 s + (100 s + 20 s) + 90 s,
        // and, once it completes, its grace period from then.
        for phase in ["sending", "sent", "updating", "unknown", "foreign"] {
            let registry = Registry::for_config(&config(&["a"]), 0);
            registry.mark_started(0);
            registry.record(&resumed("a", 1_000, phase, Some(Follow)));
            assert!(registry.not_ready(211_000).is_empty(), "{phase}");
            assert_eq!(registry.not_ready(211_001).len(), 1, "{phase}");
        }
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.mark_started(0);
        registry.record(&resumed("a", 1_000, "updating", Some(Follow)));
        registry.record(&Event::RescaleCompleted {
            application: "a".to_owned(),
            at_ms: 30_000,
            kpu: 2,
            update_secs: Some(29),
        });
        // 30 s + 20 s of grace + 90 s.
        assert!(registry.not_ready(140_000).is_empty());
        assert_eq!(registry.not_ready(140_001).len(), 1);

        // Resolved by evaluating at once (an update that never took effect,
        // an idle journal): allowed nothing more.
        for phase in ["idle", "decided", "sent"] {
            let registry = Registry::for_config(&config(&["a"]), 0);
            registry.mark_started(0);
            registry.record(&resumed("a", 1_000, phase, None));
            assert!(registry.not_ready(90_000).is_empty(), "{phase}");
            assert_eq!(registry.not_ready(90_001).len(), 1, "{phase}");
        }
        // An evaluation after the resumed grace period counts as ever.
        let registry = Registry::for_config(&grace_200, 0);
        registry.mark_started(0);
        registry.record(&resumed("a", 1_000, "grace", Some(Until(201_000))));
        registry.record(&evaluated("a", 150_000, 1, Action::Hold));
        assert!(registry.not_ready(240_000).is_empty());
        assert_eq!(registry.not_ready(240_001).len(), 1);
    }

    /// An application that stays busy after a restart with an unreadable
    /// journal is said to be followed at every read; the allowance counts
    /// from the first, so that one stuck for good is not ready once its
    /// update timeout and grace period are past. Counted from each, it was
    /// ready for ever.
    #[test]
    fn a_resumed_wait_said_again_counts_from_the_first() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.mark_started(0);
        for at_ms in (1_000..=400_000).step_by(20_000) {
            registry.record(&resumed("a", at_ms, "unknown", Some(ResumedWait::Follow)));
        }
        // 1 s + (100 s + 20 s) + 90 s, whatever was said after.
        assert!(registry.not_ready(211_000).is_empty());
        assert_eq!(registry.not_ready(211_001).len(), 1);
        assert_eq!(registry.not_ready(401_000).len(), 1);
    }

    /// A controller following an update is paused, then resumed by a
    /// reload while the application is still busy: the new controller's
    /// wait counts from the resume, not from the first controller's, from
    /// before the resume (staleness counts from the resume; the old wait
    /// was dropped as before it).
    #[test]
    fn a_wait_said_anew_after_a_resume_from_paused_counts_from_then() {
        let mut config = config(&["a"]);
        let registry = Registry::for_config(&config, 0);
        registry.mark_started(0);
        registry.record(&resumed("a", 1_000, "updating", Some(ResumedWait::Follow)));
        config.applications[0].mode = Mode::Paused;
        registry.reload_applied("a", &config.applications[0], 50_000);
        config.applications[0].mode = Mode::Active;
        registry.reload_applied("a", &config.applications[0], 300_000);
        registry.record(&resumed(
            "a",
            300_500,
            "updating",
            Some(ResumedWait::Follow),
        ));
        // 300.5 s + (100 s + 20 s) + 90 s.
        assert!(registry.not_ready(510_500).is_empty());
        assert_eq!(registry.not_ready(510_501).len(), 1);
    }

    fn failed(app: &str, at_ms: i64, class: &str) -> Event {
        Event::Failed {
            application: app.to_owned(),
            at_ms,
            class: class.to_owned(),
            plugin_class: None,
            message: format!("{class} at {at_ms}"),
        }
    }

    #[test]
    fn every_failure_class_is_counted_from_zero() {
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        let text = registry.render(0);
        for app in ["a", "b"] {
            for class in Failure::ALL {
                let class = class.as_str();
                assert!(
                    text.contains(&format!(
                        "flinkscale_failures_total{{application=\"{app}\",class=\"{class}\"}} 0\n"
                    )),
                    "no zero counter for {app}/{class}:\n{text}"
                );
            }
        }
        assert!(text.contains("class=\"permission\""));
    }

    #[test]
    fn the_last_failure_class_and_its_time_are_exported() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        let before = registry.render(0);
        // Before any failure: every class at 0, no timestamp.
        for class in Failure::ALL {
            assert!(
                before.contains(&format!(
                    "flinkscale_last_failure{{application=\"a\",class=\"{}\"}} 0\n",
                    class.as_str()
                )),
                "{before}"
            );
        }
        assert!(!before.contains("flinkscale_last_failure_timestamp_seconds{"));
        registry.record(&failed("a", 4_000, "metrics"));
        registry.record(&failed("a", 5_250, "permission"));
        let text = registry.render(6_000);
        assert!(
            text.contains("flinkscale_last_failure{application=\"a\",class=\"permission\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_last_failure{application=\"a\",class=\"metrics\"} 0\n"),
            "{text}"
        );
        let ones = text
            .lines()
            .filter(|l| l.starts_with("flinkscale_last_failure{") && l.ends_with(" 1"))
            .count();
        assert_eq!(ones, 1, "{text}");
        assert!(
            text.contains("flinkscale_last_failure_timestamp_seconds{application=\"a\"} 5.250\n"),
            "{text}"
        );
        // A class this build does not know still shows.
        registry.record(&failed("a", 7_000, "brand_new"));
        let text = registry.render(8_000);
        assert!(
            text.contains("flinkscale_last_failure{application=\"a\",class=\"brand_new\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_last_failure{application=\"a\",class=\"permission\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn staleness_counts_from_the_start_then_from_the_last_evaluation() {
        let registry = Registry::for_config(&config(&["a"]), 10_000);
        assert!(
            registry
                .render(25_500)
                .contains("flinkscale_staleness_seconds{application=\"a\"} 15.500\n")
        );
        registry.record(&evaluated("a", 30_000, 1, Action::Hold));
        assert!(
            registry
                .render(31_000)
                .contains("flinkscale_staleness_seconds{application=\"a\"} 1.000\n")
        );
        // The wall clock stepped back past the evaluation: no age, not a
        // negative one.
        assert!(
            registry
                .render(20_000)
                .contains("flinkscale_staleness_seconds{application=\"a\"} 0.000\n")
        );
    }

    #[test]
    fn a_panic_is_counted_and_reported_until_the_next_evaluation() {
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        assert!(
            registry
                .render(0)
                .contains("flinkscale_controller_panics_total{application=\"b\"} 0\n")
        );
        registry.record(&evaluated("a", 1_000, 1, Action::Hold));
        registry.record(&failed("a", 1_500, "metrics"));
        registry.record(&Event::Panicked {
            application: "a".to_owned(),
            at_ms: 2_000,
            message: "boom".to_owned(),
        });
        let text = registry.render(3_000);
        assert!(text.contains("flinkscale_controller_panics_total{application=\"a\"} 1\n"));
        assert!(text.contains("flinkscale_controller_panics_total{application=\"b\"} 0\n"));
        let not_ready = registry.not_ready(3_000);
        assert_eq!(
            not_ready,
            vec![NotReady {
                application: "a".to_owned(),
                silent_ms: 2_000,
                ever_evaluated: true,
                since_reload: false,
                stale: false,
                panicked: Some("boom".to_owned()),
                stood_down: None,
                failure: Some(LastFailure {
                    class: "metrics".to_owned(),
                    message: "metrics at 1500".to_owned(),
                    at_ms: 1_500,
                }),
                journal: None,
                not_started: None,
                still_paused: false,
            }]
        );
        registry.record(&evaluated("a", 4_000, 1, Action::Hold));
        assert!(registry.not_ready(5_000).is_empty());
        // The count stays.
        assert!(
            registry
                .render(5_000)
                .contains("flinkscale_controller_panics_total{application=\"a\"} 1\n")
        );
    }

    #[test]
    fn an_application_whose_journal_cannot_be_saved_is_not_ready_until_a_save_succeeds() {
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        let cause =
            "cannot create /var/lib/flinkscale/.a.json.tmp: No space left on device (os error 28)";
        let failing = |at_ms, held| Event::JournalFailing {
            application: "a".to_owned(),
            at_ms,
            since_ms: 2_000,
            cause: cause.to_owned(),
            held,
            tell: crate::telemetry::failing::Tell::Quiet,
        };
        registry.record(&evaluated("a", 1_000, 1, Action::Hold));
        registry.record(&evaluated("b", 1_000, 1, Action::Hold));
        registry.record(&failing(2_000, 1));
        // It goes on evaluating (it is not stale), and is still not ready:
        // it cannot record an update, so it sends none.
        registry.record(&evaluated("a", 3_000, 1, Action::ScaleTo(2)));
        registry.record(&failing(3_000, 2));
        let not_ready = registry.not_ready(4_000);
        assert_eq!(not_ready.len(), 1, "{not_ready:?}");
        assert_eq!(not_ready[0].application, "a");
        assert!(!not_ready[0].stale);
        assert_eq!(
            not_ready[0].journal,
            Some(JournalTrouble {
                since_ms: 2_000,
                cause: cause.to_owned(),
                held: 2,
            })
        );
        let text = registry.render(4_000);
        assert!(
            text.contains("flinkscale_ready{application=\"a\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_ready{application=\"b\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            registry.journal_trouble().keys().collect::<Vec<_>>(),
            vec!["a"]
        );
        // The first successful save makes it ready again.
        registry.record(&Event::JournalRecovered {
            application: "a".to_owned(),
            at_ms: 5_000,
            since_ms: 2_000,
            held: 2,
        });
        assert!(registry.not_ready(5_000).is_empty());
        assert!(registry.journal_trouble().is_empty());
        assert!(
            registry
                .render(5_000)
                .contains("flinkscale_ready{application=\"a\"} 1\n")
        );
    }

    #[test]
    fn a_stand_down_is_not_ready_and_a_gauge_until_it_is_lifted() {
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        let text = registry.render(0);
        assert!(
            text.contains("flinkscale_stood_down{application=\"a\"} 0\n"),
            "{text}"
        );
        registry.record(&evaluated("a", 1_000, 2, Action::Hold));
        registry.record(&evaluated("b", 1_000, 2, Action::Hold));
        registry.record(&Event::StoodDown {
            application: "a".to_owned(),
            at_ms: 1_000,
            since_ms: 1_000,
            overrides: Vec::new(),
            updates: "version 2 -> 3: 4 KPU -> 2 KPU".to_owned(),
            restarted: false,
        });
        // Evaluating goes on; the application stays not ready.
        registry.record(&evaluated("a", 2_000, 2, Action::Hold));
        let not_ready = registry.not_ready(3_000);
        assert_eq!(not_ready.len(), 1, "{not_ready:?}");
        assert_eq!(not_ready[0].application, "a");
        assert!(!not_ready[0].stale);
        assert_eq!(
            not_ready[0].stood_down,
            Some((1_000, "version 2 -> 3: 4 KPU -> 2 KPU".to_owned()))
        );
        let text = registry.render(3_000);
        assert!(
            text.contains("flinkscale_stood_down{application=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_stood_down{application=\"b\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_ready{application=\"a\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_ready{application=\"b\"} 1\n"),
            "{text}"
        );
        registry.record(&Event::StandDownLifted {
            application: "a".to_owned(),
            at_ms: 4_000,
            since_ms: 1_000,
            reason: "reload".to_owned(),
        });
        assert!(registry.not_ready(5_000).is_empty());
        let text = registry.render(5_000);
        assert!(
            text.contains("flinkscale_stood_down{application=\"a\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("flinkscale_ready{application=\"a\"} 1\n"),
            "{text}"
        );
    }

    /// A reload that replaces a controller clears what the registry knew
    /// from the old one: switched to dry run, a stood-down application
    /// whose journal could not be saved was not ready for good (the new
    /// controller keeps no journal and stands down for nobody, so nothing
    /// would ever lift either). A new controller still standing down says
    /// so again, after the replacement.
    #[test]
    fn a_replaced_controller_leaves_nothing_of_the_old_ones_state() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.record(&evaluated("a", 1_000, 2, Action::Hold));
        registry.record(&Event::StoodDown {
            application: "a".to_owned(),
            at_ms: 1_000,
            since_ms: 1_000,
            overrides: Vec::new(),
            updates: "version 2 -> 3: 4 KPU -> 2 KPU".to_owned(),
            restarted: false,
        });
        registry.record(&Event::JournalFailing {
            application: "a".to_owned(),
            at_ms: 1_500,
            since_ms: 1_500,
            cause: "cannot create /s/.a.json.tmp: Read-only file system (os error 30)".to_owned(),
            held: 1,
            tell: crate::telemetry::failing::Tell::Quiet,
        });
        registry.record(&evaluated("a", 2_000, 2, Action::Hold));
        assert_eq!(registry.not_ready(2_500).len(), 1);
        registry.record(&Event::ControllerReplaced {
            application: "a".to_owned(),
            at_ms: 3_000,
        });
        assert!(
            registry.not_ready(3_500).is_empty(),
            "{:?}",
            registry.not_ready(3_500)
        );
        registry.record(&Event::StoodDown {
            application: "a".to_owned(),
            at_ms: 3_000,
            since_ms: 1_000,
            overrides: Vec::new(),
            updates: "version 2 -> 3: 4 KPU -> 2 KPU".to_owned(),
            restarted: true,
        });
        assert_eq!(registry.not_ready(3_500).len(), 1);
    }
}
