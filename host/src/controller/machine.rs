//! The control loop of one application as a pure state machine.
//!
//! [`Machine::step`] takes what the driver observed (a timer ran out, an
//! answer of DescribeApplication or UpdateApplication, an evaluation's
//! decision) and the time, and returns what to do next: run one
//! [`Command`] (read the application, evaluate, send an update) or wait.
//! It changes its durable [`AppRecord`] on the way and says what happened
//! as [`Event`]s. It does no I/O and reads no clock, so every path through
//! it can be tested with plain values, exhaustively (see the tests'
//! `exhaustive` module), and the driver in [`super`] stays a thin loop:
//! persist the record, emit the events, run the command or sleep.
//!
//! The rules that make it safe:
//! - **Write ahead.** The `sending` record is changed before
//!   [`Command::Update`] is returned; the driver persists it before it
//!   sends, and answers [`Observation::NotJournaled`] instead when it
//!   cannot (nothing was sent).
//! - **Every failed update is resolved before anything is decided.** Any
//!   error of UpdateApplication except one raised before the request left
//!   the agent ([`TargetError::Request`]) may hide an update that took
//!   effect (a lost answer, a timeout, or the ConcurrentModification /
//!   ResourceInUse that a retried attempt gets from the first one's
//!   effect). The machine keeps the `sending` record and reads the
//!   application: a version id above the quoted one means it took effect
//!   (it is then followed and its grace period waited out like any
//!   other); only one that did not move lets the error's own consequence
//!   apply. The resolution is journaled. Where the target says what the
//!   application was last asked for ([`AppState::asked_kpu`]), a version
//!   id that moved while it asks for something else moved for another
//!   reason (a Flink job's own restart, another writer): the update did
//!   not take effect, and the move is waited out as another writer's.
//!   Where it does not say, the two cannot be told apart, and the safe
//!   reading is taken: the update is followed as the agent's (never sent
//!   a second time while unsure), one grace period is held after it, and
//!   an end at another size is reported (`update_result`).
//! - **A replaced application is another one.** The target says which
//!   application answers under the name ([`AppState::identity`]: a Flink
//!   job's id, an MSF application's creation time), and the identity last
//!   seen is journaled. A replacement met while an update is followed (or
//!   in doubt) gives that update up: the new application is never taken
//!   to have completed it, the log says whether it carried over (the new
//!   one asks for what was asked), and the new one is waited out as a
//!   restart (followed while busy, then one grace period) before anything
//!   is decided for it. One met at an evaluation is reported and waited
//!   out the same way.
//! - **Nothing is decided while an update of the agent is in flight or in
//!   its grace period**: evaluating happens only from `idle`, `decided`,
//!   or a `grace` whose end has passed. A restart or update the agent did
//!   not make (another writer's, the last one before an agent without a
//!   journal started, or a start or maintenance that keeps the version
//!   id: [`Machine::grace_owed`]) is waited out the same way: the
//!   evaluation that finds it is not acted on, a busy application is
//!   followed (`foreign`), then a grace period is held. An update that does not end within
//!   `update_timeout` is reported, then still followed (at a backed-off
//!   pace) until the application leaves its transitional status.
//! - **One error policy** (`Machine::failed`) maps each failure class to
//!   its delay: exponential back-off with jitter for most, the poll
//!   interval for a busy application; permission failures are reported once
//!   per change of message, not at every retry.

use std::time::Duration;

use super::{Failure, Settings, fight};
use crate::model::{Action, Application, Decision};
use crate::random::SplitMix64;
use crate::state::{AppRecord, KpuLimit, Phase, RefusedTarget, Resume, Update};
use crate::target::{AppState, AppStatus, TargetError};
use crate::telemetry::{Event, ResumedWait};

/// What to tell the user when `moves` ([`Machine`]'s count of the moves
/// of the version id without this agent found at consecutive evaluations)
/// are two or more: each came within the grace period owed to the one
/// before, so the grace period keeps starting again and nothing is
/// rescaled. On a Flink job a task that keeps failing restarts the job
/// more often than the grace period lasts; the Flink Kubernetes
/// operator's autoscaler does the same (its stabilization interval counts
/// from the job's last switch to RUNNING, and its metrics are cleared at
/// each), and leaves a restart loop to the operator's health check.
/// Waiting is right (a restarting job's metrics are its restarts'); only
/// saying so was missing.
fn restart_streak(moves: Option<Moves>, settings: &Settings, now_ms: i64) -> Option<String> {
    let moves = moves.filter(|m| m.count >= 2)?;
    let words = settings.words;
    Some(format!(
        "the {thing} {} {} times in {} s: each starts the grace period ({} s) again, so it is not rescaled until it runs {} s without one ({})",
        words.moved_again(),
        moves.count,
        secs_until(now_ms, moves.since_ms),
        settings.grace_period.as_secs(),
        settings.grace_period.as_secs(),
        words.moved_again_cause(),
        thing = words.thing(),
    ))
}

/// The longest lazy wait, in evaluation intervals: a policy's
/// `next_evaluation_secs`, or the host's skip for an alarm-driven policy,
/// never leaves an application unread longer than this (15 minutes at a 60
/// s interval, MSF's own scale-out window).
pub const LAZY_MAX_INTERVALS: u32 = 15;

/// Shortest and longest back-off after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The longest wait between two reads of an update past its timeout
/// (still followed: nothing is decided until it ends).
const OVERDUE_POLL_MAX: Duration = Duration::from_secs(60);

#[cfg(test)]
thread_local! {
    /// Test-only fault: the next step that observes an accepted update
    /// panics halfway through it, after the effect (the controller's
    /// tests and the step run on the test's one thread).
    pub static PANIC_ON_ACCEPTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What the grace period held after a journal that could not be read is
/// after, as `status` and `once` say it.
const UNKNOWN_OUTCOME_GRACE: &str =
    "grace period after a journal that could not be read (an update's outcome was unknown)";

/// How long a target that AWS refused as invalid is not asked for again:
/// the same request would be refused the same way, and an hour lets a
/// fixed application configuration be picked up without a restart.
pub const REFUSED_TARGET_HOLD_MS: i64 = 3_600_000;

/// How long a KPU limit met holds before the agent dares the refused size
/// again: other applications may have scaled in, or the quota been raised.
/// One refused call an hour is not a loop.
pub const LIMIT_RETRY_MS: i64 = 3_600_000;

/// How soon a scale-out refused by a limit that does not say its size
/// (MSF's LimitExceededException) is decided again, under the ceiling one
/// below it, while that ceiling is still above the size that runs. The
/// limit is found one refused KPU at a time, and none of those requests
/// restarts the application, so a scale-out far above it would otherwise
/// hold the application at its old size for one evaluation interval per
/// KPU (36 minutes from 100 down to a limit of 64 at a 60 s interval).
/// At this pace that takes 3 minutes, one request every 5 s: each try is
/// still a whole decision (metrics, alarms, the policy asked again), and a
/// policy that no longer wants more ends it.
pub const LIMIT_PROBE: Duration = Duration::from_secs(5);

/// The configured bound (`min_kpu` or `max_kpu`) nearest to `kpu` when
/// `kpu` lies outside them, `None` inside. A recorded KPU limit is no
/// bound here: it only stops growth, never shrinks what runs.
fn outside_bounds(settings: &Settings, kpu: u32) -> Option<u32> {
    let min = settings.min_kpu.max(1);
    let max = settings.max_kpu.max(min);
    (!(min..=max).contains(&kpu)).then(|| kpu.clamp(min, max))
}

/// When the KPU limit `limit` stops holding at the latest:
/// [`LIMIT_RETRY_MS`] after it was met (ms since the epoch).
pub fn limit_until_ms(limit: &KpuLimit) -> i64 {
    limit.at_ms.saturating_add(LIMIT_RETRY_MS)
}

/// What a controller waits out, without evaluating, after an update that
/// is not its own (another writer's, or an application replaced under its
/// update), as [`Event::Resumed`] says it: followed while `app` is busy,
/// one grace period once it runs, nothing in another status (it evaluates).
fn waited_out(app: &AppState, settings: &Settings, now_ms: i64) -> Option<ResumedWait> {
    if app.status.is_transitional() {
        Some(ResumedWait::Follow)
    } else if app.status == AppStatus::Running {
        Some(ResumedWait::Until(
            now_ms.saturating_add(millis(settings.grace_period)),
        ))
    } else {
        None
    }
}

/// With lazy polling, the whole evaluation intervals a hold that asks to
/// be evaluated again in `asked_secs` waits: rounded down (so that
/// evaluations fall where they would without it), within [1,
/// [`LAZY_MAX_INTERVALS`]]. The controller may wait less (before a KPU
/// limit or a refused target ends), never more.
pub fn lazy_intervals(asked_secs: u32, interval: Duration) -> u32 {
    let interval_ms = interval.as_millis().max(1);
    let intervals =
        (u128::from(asked_secs) * 1000 / interval_ms).clamp(1, u128::from(LAZY_MAX_INTERVALS));
    u32::try_from(intervals).unwrap_or(LAZY_MAX_INTERVALS)
}

/// The back-off after `failures` consecutive failed steps (1 or more):
/// 5 s, 10 s, 20 s, ... up to 5 minutes, with "equal jitter": half of it
/// fixed, the other half scaled by `unit` (in `[0, 1)`), so that
/// controllers that failed together do not retry together, and none
/// retries sooner than half its back-off.
pub fn backoff_delay(failures: u32, unit: f64) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    equal_jitter((BACKOFF_MIN * factor).min(BACKOFF_MAX), unit)
}

/// A wait of at most `ceiling` with "equal jitter": half of it fixed, the
/// other half scaled by `unit` (in `[0, 1)`), in whole milliseconds, so
/// that runs on a paused clock are reproducible.
pub fn equal_jitter(ceiling: Duration, unit: f64) -> Duration {
    let half = ceiling / 2;
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    half + Duration::from_millis((half.as_millis() as f64 * unit) as u64)
}

/// A deterministic jitter source (the project's splitmix64 stream):
/// seeded from the application's name, so two applications draw
/// differently while a test (or a replay) draws the same numbers every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jitter(SplitMix64);

impl Jitter {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// A source seeded from `name` (FNV-1a).
    pub fn seeded(name: &str) -> Self {
        Self(SplitMix64::seeded(name))
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0.unit()
    }
}

/// What the driver runs for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read the application (DescribeApplication): to follow an update or
    /// to resolve a phase whose outcome is unknown. Answered with
    /// [`Observation::Described`].
    Describe,
    /// Collect, interpret, evaluate alarms and decide. Answered with
    /// [`Observation::Evaluated`].
    Evaluate,
    /// Send UpdateApplication for `update`, quoting the version id of
    /// `current`. The `sending` record is already in the machine's record:
    /// the driver must persist it first, and answer
    /// [`Observation::NotJournaled`] without sending if it cannot.
    /// Otherwise answered with [`Observation::Updated`].
    Update {
        /// What is asked for.
        update: Update,
        /// The application as the decision saw it.
        current: AppState,
    },
}

/// What the machine wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run this command now and step with its answer.
    Run(Command),
    /// Step with [`Observation::Wake`] after this long.
    Wait(Duration),
}

/// An evaluation's result, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The application as DescribeApplication reported it.
    pub state: AppState,
    /// The decision, validated and refined by [`Machine::refine`].
    pub decision: Decision,
}

/// What the driver observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The wait ran out, or the controller starts.
    Wake,
    /// The answer to [`Command::Describe`].
    Described(Result<AppState, TargetError>),
    /// The answer to [`Command::Evaluate`]: the decision, or the class and
    /// message of why there is none.
    Evaluated(Result<Evaluated, (Failure, String)>),
    /// The answer to [`Command::Update`]: the new version id, or the error.
    Updated(Result<u64, TargetError>),
    /// The `sending` record could not be journaled, so the update was not
    /// sent.
    NotJournaled,
    /// The driver caught a panic while running the machine's last command
    /// (the message says where): whatever was in flight is resolved again.
    Panicked(String),
}

/// What one step came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What to do next.
    pub next: Next,
    /// What happened, to log and count.
    pub events: Vec<Event>,
}

/// Why a phase must be resolved against DescribeApplication before
/// anything else is done.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doubt {
    /// The phase comes from the journal of a previous life (or the driver
    /// panicked mid-command).
    Restart,
    /// UpdateApplication answered this error: it may have taken effect.
    Answer(TargetError),
}

impl RefusedTarget {
    /// Whether a decision for `kpu` is one this refusal stops: the size
    /// refused as invalid; after a rollback, that size and any beyond it
    /// the same way (a job that cannot start at 8 after a scale-out from
    /// 4, its operators' maximum parallelism or the addresses of its
    /// subnet short, cannot start at 9 either; a scale-in alike, below).
    fn stops(&self, kpu: u32) -> bool {
        match self.rolled_back_to {
            Some(from) if self.kpu > from => kpu >= self.kpu,
            Some(from) if self.kpu < from => kpu <= self.kpu,
            _ => kpu == self.kpu,
        }
    }

    /// Whether an application in `status` at `kpu` shows this refusal
    /// wrong: RUNNING at a size it stops (set by hand, and started).
    fn disproved_by(&self, status: AppStatus, kpu: u32) -> bool {
        status == AppStatus::Running && self.stops(kpu)
    }
}

/// The state of one application's loop: the durable record plus what a
/// restart may forget.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// What the journal holds (or would hold, without one).
    pub record: AppRecord,
    doubt: Option<Doubt>,
    failures: u32,
    /// The back-off's exponent: the failed steps that backed off since the
    /// last success. A busy application's answers (polled at the update
    /// poll) neither count nor reset it: a failure after a long streak of
    /// them backs off from where the back-off was, not from the ceiling
    /// they counted up to, and failures that take turns with them still
    /// double.
    backoff_streak: u32,
    jitter: Jitter,
    /// The permission failure last reported, so that a retry with the same
    /// answer is not reported again.
    permission: Option<String>,
    /// Whether the update being followed was reported as timed out.
    timed_out: bool,
    /// What [`Machine::assess`] found for the evaluation whose answer is
    /// the next step, so that it is computed once; `None` when no
    /// assessment was made (the step then computes it).
    assessed: Option<Assessment>,
    /// The version id the update being followed made, as its accepted
    /// answer said (journaled with the phase, so known across a restart
    /// too); unknown when it was taken to have applied from a version id
    /// that moved (which may have moved for another reason). An end above
    /// it was another writer's ([`fight::own_rescale`]).
    created_version_id: Option<u64>,
    /// The update in flight was found in the journal at the start (of the
    /// agent, or of an application resumed from `paused`): the time from
    /// its start to its end includes however long nothing followed it,
    /// so it is not recorded as `last_update_duration_secs` (which
    /// `rate` and `predictive` take as the next restart's length: an
    /// agent down for an hour mid-update sized the next scale-out for an
    /// hour's backlog).
    followed_from_journal: bool,
    /// A restart found its update in flight with the application busy and
    /// the version not above the quote, and said so ([`Event::Resumed`]):
    /// it reads again until there is a verdict, without saying it again.
    awaiting_verdict: bool,
    /// Resumed from the journal with something in flight, and no read of
    /// the application made since: what the first read finds over was
    /// over at a time not known ([`Machine::completed`]'s `found_over`).
    first_read_after_resume: bool,
    /// The moves of the version id without this agent (a Flink job's
    /// restarts, another writer's updates) that the evaluations since the
    /// last one owed nothing have found, each owed a grace period
    /// ([`restart_streak`]). Not journaled: an agent restarted
    /// counts afresh.
    moves: Option<Moves>,
    /// When the last wake came: the next evaluation comes an interval
    /// after it, not an interval after the evaluation's own reads and
    /// plugin calls ended (those took ~34 ms a tick, and evaluations
    /// drifted 49 s a day off their phase at a 60 s interval).
    woke_at_ms: Option<i64>,
}

/// Moves of the version id without this agent found at consecutive
/// evaluations: each came before the grace period owed to the one before
/// had let an evaluation act, so the grace period keeps starting again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Moves {
    /// How many.
    count: u32,
    /// When the evaluation that found the first one ran.
    since_ms: i64,
}

/// What an evaluation owes, found once for it ([`Machine::assessment`]):
/// the grace period, if one is owed, and the moves of the version id
/// without this agent counted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assessment {
    /// The grace period owed, if any ([`Machine::grace_owed`]).
    owed: Option<Owed>,
    /// The moves counted with this evaluation ([`Machine::moves_at`]).
    moves: Option<Moves>,
}

/// A grace period owed for a restart or update this agent did not make: somebody
/// else's, or the last update before an agent without a journal started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// When it ends (ms since the epoch); `None` while the application is
    /// busy: the update is followed first, and the grace period counts from
    /// when the application is RUNNING, as after the agent's own update.
    pub until_ms: Option<i64>,
    /// Why, in the target's words.
    pub reason: &'static str,
}

impl Machine {
    /// A machine with nothing in flight.
    pub fn new(jitter: Jitter) -> Self {
        Self {
            record: AppRecord::default(),
            doubt: None,
            failures: 0,
            backoff_streak: 0,
            jitter,
            permission: None,
            timed_out: false,
            assessed: None,
            created_version_id: None,
            followed_from_journal: false,
            awaiting_verdict: false,
            first_read_after_resume: false,
            moves: None,
            woke_at_ms: None,
        }
    }

    /// Marks a machine whose agent found no journal for the application (a
    /// first start, or an emptied state folder): its first evaluation of a
    /// RUNNING (or busy) application holds a grace period if the last
    /// update is recent ([`Machine::grace_owed`]). A dry run, which keeps
    /// no journal, starts so too: it decides what a run that acts would
    /// from the same start. Not for the simulator, whose applications
    /// start with no update behind them.
    pub fn started_without_journal(&mut self) {
        self.record.fresh_start = true;
    }

    /// The grace period owed at an evaluation that found `state` at
    /// `now_ms`, if any; the evaluation's decision is then not acted on.
    ///
    /// - **Another writer's update**: the version id is above the last one
    ///   this machine saw or caused. Its metrics are those of a restart
    ///   (backlog, CPU catching up), so it is waited out as the agent's
    ///   own: followed while the application is busy, then one grace
    ///   period from when it is seen RUNNING. The version last seen is
    ///   journaled, so an update made while the agent was down is found at
    ///   its first evaluation after the restart; that one is owed what is
    ///   left of a grace period counted as for a start without a journal
    ///   (below), none if it is long past.
    /// - **A start without a journal**: the application's last update was
    ///   requested at `state.last_update_ms`. It ended at the latest now
    ///   (the application is RUNNING), and, if it took no longer than
    ///   `update_timeout`, by that time plus the update timeout. The grace
    ///   period is held until the earlier of the two plus `grace_period`:
    ///   never longer than one grace period from now, and none once
    ///   `update_timeout + grace_period` have passed since the update. Too
    ///   long a wait after a fresh start costs one grace period once; a
    ///   decision on a restart's metrics may cost a double rescale. An
    ///   update still in progress is followed first. Unknown
    ///   (`last_update_ms` absent) keeps deciding at once, as before.
    /// - **A restart that keeps the version id**: an application seen
    ///   STARTING (after StartApplication; a Flink job initializing or
    ///   reconciling) or under MAINTENANCE at the version last seen is
    ///   followed, then held one grace period from when it is seen
    ///   RUNNING, as another writer's update is.
    ///
    /// Nothing is owed to an application in another status (it is not
    /// updated anyway). A dry run is owed the same as a run that acts: it
    /// decides, and records, what that run would.
    pub fn grace_owed(&self, state: &AppState, settings: &Settings, now_ms: i64) -> Option<Owed> {
        let busy = state.status.is_transitional();
        if !(busy || state.status == AppStatus::Running) {
            return None;
        }
        // When the last update ended at the latest: now (the application
        // runs), or, if it took no longer than `update_timeout`, by that
        // long after it was asked for.
        let ended_by_ms =
            |last_ms: i64| now_ms.min(last_ms.saturating_add(millis(settings.update_timeout)));
        let grace_ms = millis(settings.grace_period);
        let owed = |reason: &'static str, ended_by_ms: i64| {
            let until_ms = ended_by_ms.saturating_add(grace_ms);
            if busy {
                Some(Owed {
                    until_ms: None,
                    reason,
                })
            } else {
                (until_ms > now_ms).then_some(Owed {
                    until_ms: Some(until_ms),
                    reason,
                })
            }
        };
        if self.replaced(state).is_some() {
            // A new application starts as after a restart: waited out as
            // another writer's update, from its creation (none if that is
            // long past: replaced while the agent was down).
            let ended = state.last_update_ms.map_or(now_ms, ended_by_ms);
            return owed(settings.words.grace_after_replacement(), ended);
        }
        if self.moved_without_us(state).is_some() {
            // Seen at once while the agent runs (a grace period from now),
            // or at the first evaluation after a restart, the update made
            // while the agent was down: owed only if it is recent.
            let ended = state.last_update_ms.map_or(now_ms, ended_by_ms);
            return owed(settings.words.grace_after_other_writer(), ended);
        }
        if let Some(last_ms) = state.last_update_ms.filter(|_| self.record.fresh_start) {
            return owed(
                settings.words.grace_after_recent_update(),
                ended_by_ms(last_ms),
            );
        }
        // Starting or under maintenance at the version last seen: a
        // restart that does not move the version id (StartApplication
        // after a stop, MSF's patching). Its first metrics are a
        // restart's as well. Not a version below it (a Flink job's
        // placeholder graph read after the agent's restart, whose new
        // graph must be reported as a move), and not UPDATING,
        // ROLLING_BACK or AUTOSCALING, which come with a version move that
        // is reported as another writer's when it is read (a Flink job
        // RESTARTING reads as UPDATING).
        let restarting = matches!(state.status, AppStatus::Starting | AppStatus::Maintenance)
            && self
                .record
                .seen_version_id
                .is_none_or(|seen| seen == state.version_id);
        restarting.then_some(Owed {
            until_ms: None,
            reason: settings.words.grace_after_busy(),
        })
    }

    /// A decision taken at `now_ms` on the application as `state` as it is
    /// recorded: a hold, saying why, while a grace period is owed
    /// ([`Machine::grace_owed`]). The grace owed is computed here, once per
    /// evaluation, and kept for the step that the evaluation answers
    /// ([`Observation::Evaluated`]), so that the machine holds what the
    /// history says, found at the same time; a step of anything else
    /// drops it. The machine holds it whatever the decision said.
    pub fn assess(
        &mut self,
        mut decision: Decision,
        state: &AppState,
        settings: &Settings,
        now_ms: i64,
    ) -> Decision {
        let assessment = self.assessment(state, settings, now_ms);
        self.assessed = Some(assessment.clone());
        let Assessment { owed, moves } = assessment;
        let Some(owed) = owed else {
            return decision;
        };
        let wait = match owed.until_ms {
            Some(until_ms) => format!("for {} s", secs_until(until_ms, now_ms)),
            None => format!(
                "while the {} is {}, nor for {} s after",
                settings.words.thing(),
                state.status,
                settings.grace_period.as_secs()
            ),
        };
        decision.action = Action::Hold;
        decision.next_evaluation_secs = None;
        decision
            .reason
            .push_str(&format!("; {}: not acted on {wait}, holding", owed.reason));
        if let Some(streak) = restart_streak(moves, settings, now_ms) {
            decision.reason.push_str("; ");
            decision.reason.push_str(&streak);
        }
        decision
    }

    /// What the evaluation of `state` at `now_ms` owes: the grace period
    /// and the moves counted with it.
    fn assessment(&self, state: &AppState, settings: &Settings, now_ms: i64) -> Assessment {
        let owed = self.grace_owed(state, settings, now_ms);
        let moves = self.moves_at(state, owed.as_ref(), now_ms);
        Assessment { owed, moves }
    }

    /// The moves of the version id without this agent counted with the
    /// evaluation of `state` at `now_ms`, which owes `owed`: one more when
    /// it owes a grace period for such a move; none when it owes nothing
    /// (the grace periods ended, and an evaluation could act).
    fn moves_at(&self, state: &AppState, owed: Option<&Owed>, now_ms: i64) -> Option<Moves> {
        owed?;
        if self.replaced(state).is_none() && self.moved_without_us(state).is_none() {
            // Owed for a fresh start's last update: no move of another's.
            return self.moves;
        }
        Some(match self.moves {
            Some(moves) => Moves {
                count: moves.count.saturating_add(1),
                ..moves
            },
            None => Moves {
                count: 1,
                since_ms: now_ms,
            },
        })
    }

    /// A machine resuming from a journaled record: anything but `idle` is
    /// resolved against DescribeApplication at the first step.
    pub fn resume(record: AppRecord, jitter: Jitter) -> Self {
        let doubt = (record.phase != Phase::Idle).then_some(Doubt::Restart);
        let followed_from_journal = record.phase.update().is_some();
        // The version the update made, as the accepted answer said: a
        // rollback from it is one of this update.
        let created_version_id = match &record.phase {
            Phase::Sent { new_version_id, .. } => Some(*new_version_id),
            Phase::Updating { new_version_id, .. } => *new_version_id,
            _ => None,
        };
        Self {
            first_read_after_resume: doubt.is_some(),
            record,
            doubt,
            followed_from_journal,
            created_version_id,
            ..Self::new(jitter)
        }
    }

    /// A machine whose journal could not be read: the outcome of whatever
    /// was in flight is unknown, so it is resolved against
    /// DescribeApplication and one grace period is held before deciding.
    pub fn unknown(since_ms: i64, jitter: Jitter) -> Self {
        Self::resume(
            AppRecord {
                phase: Phase::Unknown { since_ms },
                ..AppRecord::default()
            },
            jitter,
        )
    }

    /// Reseeds the back-off jitter.
    pub fn set_jitter(&mut self, jitter: Jitter) {
        self.jitter = jitter;
    }

    /// The next draw of the back-off's jitter, in `[0, 1)`, for another
    /// wait that applications must not all end at once.
    pub fn jitter_unit(&mut self) -> f64 {
        self.jitter.next_unit()
    }

    /// Consecutive failed steps so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Lifts the recorded KPU limit at an operator's word (a configuration
    /// reload: the application's KPU quota was raised, TaskManagers were added),
    /// whatever its age: the next decision may ask for the refused size
    /// again. Only the durable record changes: nothing in flight, no wait
    /// and no grace period is cut short, so nothing is decided or sent
    /// sooner than it would have been. A limit that still holds is found
    /// again as any is, a refused size at a time ([`LIMIT_PROBE`]): a
    /// refusal above the old limit says only that the limit is below the
    /// size refused, not that it has not moved. Returns the
    /// [`Event::LimitLifted`] to report, if there was a limit.
    pub fn lift_limit(&mut self, settings: &Settings, now_ms: i64) -> Option<Event> {
        let limit = self.record.kpu_limit.take()?;
        Some(Event::LimitLifted {
            application: settings.name.clone(),
            at_ms: now_ms,
            refused_kpu: limit.refused_kpu,
            reason: format!(
                "lifted by a configuration reload (SIGHUP); {}",
                settings.words.limit_may_have_moved()
            ),
        })
    }

    /// Lifts a held size ([`RefusedTarget`]: AWS refused it as invalid, or
    /// its update was rolled back) at an operator's word, a configuration
    /// reload: whoever fixed what made it fail (an application
    /// configuration, a `maxParallelism`) need not wait out the hour. A
    /// rolled-back size only with `rolled_back_too` (a reload that changed
    /// the application's settings): asking for it again restarts the job
    /// into what may be the same failure, and a reload for anything else
    /// (another application, a KPU limit) must not cost that; a size
    /// refused as invalid costs a refused call at most. Like
    /// [`Machine::lift_limit`], only the durable record changes: nothing in
    /// flight, no wait and no grace period is cut short. A size that still
    /// fails fails again as at first, and is held again. Returns the
    /// [`Event::RefusalLifted`] to report, if a size was held at `now_ms`.
    pub fn lift_refused(
        &mut self,
        settings: &Settings,
        now_ms: i64,
        rolled_back_too: bool,
    ) -> Option<Event> {
        self.record
            .refused
            .filter(|held| rolled_back_too || held.rolled_back_to.is_none())?;
        self.take_refused(settings, now_ms, || {
            "lifted by a configuration reload (SIGHUP)".to_owned()
        })
    }

    /// Drops the held size; returns the [`Event::RefusalLifted`] to report,
    /// saying `reason`, if it was still held at `now_ms`.
    fn take_refused(
        &mut self,
        settings: &Settings,
        now_ms: i64,
        reason: impl FnOnce() -> String,
    ) -> Option<Event> {
        let refused = self.record.refused.take()?;
        (now_ms < refused.until_ms).then(|| Event::RefusalLifted {
            application: settings.name.clone(),
            at_ms: now_ms,
            kpu: refused.kpu,
            rolled_back_to: refused.rolled_back_to,
            reason: reason(),
        })
    }

    /// The highest KPU decisions may reach at `now_ms` for an application
    /// running at `kpu`: `max_kpu`, or below a KPU the application's KPU quota
    /// refused while that limit still holds, but never below `kpu`: a
    /// limit stops growth, it does not shrink what runs. (MSF's ceiling is
    /// never below what runs; a Flink cluster's free slots can be, when
    /// another job is counted at slots it does not hold, and a policy that
    /// asked for more was then clamped to a scale-in.)
    pub fn max_kpu(&self, settings: &Settings, kpu: u32, now_ms: i64) -> u32 {
        match self.limit_in_force(kpu, now_ms) {
            Some(limit) => limit
                .ceiling()
                .max(kpu)
                .min(settings.max_kpu)
                .max(settings.min_kpu),
            None => settings.max_kpu,
        }
    }

    /// The recorded KPU limit, unless it no longer says anything: the
    /// application runs at or above the refused size, or the limit is old.
    fn limit_in_force(&self, kpu: u32, now_ms: i64) -> Option<KpuLimit> {
        self.record
            .kpu_limit
            .filter(|limit| kpu < limit.refused_kpu && now_ms < limit_until_ms(limit))
    }

    /// Says why a decision stops below `max_kpu` (a KPU limit met), and
    /// holds instead of asking again for a target AWS refused as invalid.
    /// `app` is what the policy was given.
    pub fn refine(
        &self,
        settings: &Settings,
        mut decision: Decision,
        app: &Application,
        now_ms: i64,
    ) -> Decision {
        if let Some(bound) = outside_bounds(settings, app.kpu)
            && decision.action == Action::Hold
        {
            // The bounds are the operator's: a size outside them (set by
            // another writer, or the bounds changed by a reload) is brought
            // to the nearest one even when the policy would hold, so that
            // setting `min_kpu` = `max_kpu` holds an application at a size.
            let words = settings.words;
            let (min_key, max_key) = words.bounds();
            let (side, key) = if bound < app.kpu {
                ("above", max_key)
            } else {
                ("below", min_key)
            };
            decision.action = Action::ScaleTo(bound);
            decision.reason.push_str(&format!(
                "; {} is {side} {key} {bound}: brought to {}",
                words.capacity(app.kpu),
                words.capacity(bound)
            ));
        }
        if let Some(limit) = self.limit_in_force(app.kpu, now_ms) {
            let at_ceiling = match decision.action {
                Action::ScaleTo(kpu) => kpu == app.max_kpu,
                Action::Hold => app.kpu == app.max_kpu,
            };
            if let Action::ScaleTo(kpu) = decision.action
                && kpu > app.kpu
                && kpu > limit.ceiling()
            {
                // Only the floor asks for more than the ceiling (which
                // stops every other decision at it): asking at every
                // evaluation would be refused every time. On MSF the
                // ceiling is one below the KPU refused; on Flink it is the
                // slots the refusal said were free, which may be fewer.
                let words = settings.words;
                decision.action = Action::Hold;
                decision.reason.push_str(&format!(
                    "; held: {} refused {} (at most {}), below {} {}; asked again when the \
                     limit is {} s old or a configuration reload (SIGHUP) lifts it",
                    words.limit(),
                    words.capacity(limit.refused_kpu),
                    words.capacity(limit.ceiling()),
                    words.bounds().0,
                    settings.min_kpu,
                    LIMIT_RETRY_MS / 1000
                ));
            } else if at_ceiling && app.max_kpu < settings.max_kpu {
                let words = settings.words;
                decision.reason.push_str(&format!(
                    "; max lowered to {}: {} refused {}",
                    words.capacity(app.max_kpu),
                    words.limit(),
                    words.capacity(limit.refused_kpu)
                ));
            }
        }
        // A hold the size that runs shows wrong holds nothing: the step
        // lifts it ([`Machine::review_refused`]).
        if let (Action::ScaleTo(kpu), Some(refused)) = (decision.action, self.record.refused)
            && refused.stops(kpu)
            && !refused.disproved_by(app.status, app.kpu)
            && now_ms < refused.until_ms
        {
            decision.action = Action::Hold;
            let words = settings.words;
            let what = if refused.rolled_back_to.is_some() {
                format!(
                    "the update to {} was rolled back (it did not start)",
                    words.capacity(refused.kpu)
                )
            } else {
                format!(
                    "{} refused {} as invalid",
                    words.rescale_call(),
                    words.capacity(kpu)
                )
            };
            decision.reason.push_str(&format!(
                "; {what}, not asked again for another {} s, holding",
                secs_until(refused.until_ms, now_ms)
            ));
        }
        decision
    }

    /// Keeps the journaled holds that end on the wall clock within their
    /// length from `now_ms`: a clock stepped back (NTP correcting a clock
    /// that ran ahead, a restart on a host whose clock is behind) would
    /// otherwise stretch each by the step, a day's step holding a refused
    /// size for a day and an hour. A refused size is held at most
    /// [`REFUSED_TARGET_HOLD_MS`] from now, a KPU limit and the times the
    /// fight window counts from are taken as no later than now, and so are
    /// the last rescale (from which the policies read their metrics: one
    /// in the future would blind them until the clock caught up) and the
    /// times of the phase (an update's start, from which its timeout
    /// counts). The record changes only after such a step (and is
    /// journaled then).
    fn keep_holds_within(&mut self, now_ms: i64) {
        let record = &mut self.record;
        if let Some(last) = &mut record.last_rescale_ms {
            *last = (*last).min(now_ms);
        }
        match &mut record.phase {
            Phase::Decided { at_ms: at, .. }
            | Phase::Unknown { since_ms: at }
            | Phase::Foreign { since_ms: at, .. } => *at = (*at).min(now_ms),
            Phase::Sending { update } | Phase::Sent { update, .. } => {
                update.started_ms = update.started_ms.min(now_ms);
            }
            Phase::Updating {
                update,
                observed_ms,
                ..
            } => {
                update.started_ms = update.started_ms.min(now_ms);
                *observed_ms = (*observed_ms).min(now_ms);
            }
            Phase::Idle | Phase::Grace { .. } => {}
        }
        if let Some(refused) = &mut record.refused {
            refused.until_ms = refused
                .until_ms
                .min(now_ms.saturating_add(REFUSED_TARGET_HOLD_MS));
        }
        if let Some(limit) = &mut record.kpu_limit {
            limit.at_ms = limit.at_ms.min(now_ms);
        }
        if let Some(own) = &mut record.fight.own {
            own.at_ms = own.at_ms.min(now_ms);
        }
        if let Some(stood_down) = &mut record.fight.stood_down_ms {
            *stood_down = (*stood_down).min(now_ms);
        }
        for seen in &mut record.fight.overrides {
            seen.seen_ms = seen.seen_ms.min(now_ms);
        }
    }

    /// One step: what `observation` at `now_ms` changes, and what to do
    /// next.
    pub fn step(
        &mut self,
        observation: Observation,
        settings: &Settings,
        now_ms: i64,
    ) -> Transition {
        let mut out = Out {
            name: &settings.name,
            now_ms,
            events: Vec::new(),
        };
        self.keep_holds_within(now_ms);
        let assessed = self.assessed.take();
        let next = match observation {
            Observation::Wake => {
                self.woke_at_ms = Some(now_ms);
                self.wake()
            }
            Observation::Described(Ok(app)) => self.described(app, settings, &mut out),
            Observation::Described(Err(error)) => {
                let words = settings.words;
                let what = match self.record.phase.update() {
                    Some(update) => format!(
                        "{} while following the update to {} failed",
                        words.describe_call(),
                        words.capacity(update.target_kpu)
                    ),
                    None => format!(
                        "cannot resolve the {} phase: {} failed",
                        self.record.phase.name(),
                        words.describe_call()
                    ),
                };
                let class = Failure::of(&error);
                if let (Some(Doubt::Answer(answer)), Some(update)) =
                    (&self.doubt, self.record.phase.update())
                {
                    // Whether the update took effect is still unknown:
                    // said before the failure, so that it is not taken
                    // for the update's outcome.
                    out.events.push(Event::UpdateInDoubt {
                        application: settings.name.clone(),
                        at_ms: now_ms,
                        to_kpu: update.target_kpu,
                        error: answer.to_string(),
                    });
                }
                self.check_timeout(settings, &mut out);
                Next::Wait(self.failed(class, format!("{what}: {error}"), settings, &mut out))
            }
            Observation::Evaluated(Ok(evaluated)) => {
                self.evaluated(evaluated, assessed, settings, &mut out)
            }
            Observation::Evaluated(Err((class, message))) => {
                Next::Wait(self.failed(class, message, settings, &mut out))
            }
            Observation::Updated(Ok(new_version_id)) => {
                let Phase::Sending { update } = self.record.phase.clone() else {
                    // Only a `sending` phase runs the command; anything
                    // else is a driver bug, best resolved by a fresh read.
                    self.doubt = Some(Doubt::Restart);
                    return out.done(Next::Run(Command::Describe));
                };
                self.failures = 0;
                self.record.seen_version_id = Some(new_version_id);
                #[cfg(test)]
                if PANIC_ON_ACCEPTED.with(|armed| armed.replace(false)) {
                    panic!("injected: a bug in the step after an update was accepted");
                }
                self.started(update, new_version_id, &mut out);
                self.created_version_id = Some(new_version_id);
                Next::Wait(settings.update_poll)
            }
            Observation::Updated(Err(error)) => self.update_failed(error, settings, &mut out),
            Observation::NotJournaled => {
                // Without the record a crash after the call could not tell
                // whether it went out: it was not sent at all.
                self.record.phase = Phase::Idle;
                Next::Wait(self.backoff())
            }
            Observation::Panicked(message) => {
                out.events.push(Event::Panicked {
                    application: settings.name.clone(),
                    at_ms: now_ms,
                    message,
                });
                if self.record.phase != Phase::Idle && self.doubt.is_none() {
                    self.doubt = Some(Doubt::Restart);
                }
                Next::Wait(self.backoff())
            }
        };
        out.done(next)
    }

    /// The wait ran out: resolve, follow, wait out the grace period, or
    /// evaluate.
    fn wake(&mut self) -> Next {
        if self.doubt.is_some() {
            return Next::Run(Command::Describe);
        }
        match &self.record.phase {
            Phase::Sending { .. }
            | Phase::Sent { .. }
            | Phase::Updating { .. }
            | Phase::Unknown { .. }
            | Phase::Foreign { .. } => Next::Run(Command::Describe),
            // A grace period is waited out on monotonic time: the wait
            // that ends here was the grace period (or what a resumed one
            // had left), so a wall clock stepped back meanwhile does not
            // stretch it. Only a restart reads the journaled end.
            Phase::Grace { .. } | Phase::Idle | Phase::Decided { .. } => {
                Next::Run(Command::Evaluate)
            }
        }
    }

    /// DescribeApplication answered: resolve a phase in doubt, or follow
    /// the update in flight.
    fn described(&mut self, app: AppState, settings: &Settings, out: &mut Out) -> Next {
        self.permission = None;
        let replaced = self.replaced(&app).map(str::to_owned);
        let phase = self.record.phase.clone();
        // With nothing of the agent's in flight (a restart resuming a
        // grace period), a replacement or another writer's update (made
        // while the agent was down) is the next evaluation's to report and
        // wait out ([`Machine::notice_foreign_update`],
        // [`Machine::grace_owed`]): what was seen before stays as it was.
        if !matches!(
            phase,
            Phase::Idle | Phase::Decided { .. } | Phase::Grace { .. }
        ) {
            self.record.seen_version_id = Some(app.version_id);
            if app.identity.is_some() {
                self.record.seen_identity = app.identity.clone();
            }
        }
        let doubt = self.doubt.take();
        let first_read = std::mem::take(&mut self.first_read_after_resume);
        let was_awaiting = std::mem::take(&mut self.awaiting_verdict);
        if let (Some(previous), Some(update)) = (&replaced, phase.update()) {
            let update = update.clone();
            return self.replaced_under_update(&update, previous, &app, doubt, settings, out);
        }
        if let (Phase::Sending { update }, Some(asked_kpu)) = (&phase, app.asked_kpu)
            && app.version_id > update.quoted_version_id
            && asked_kpu != update.target_kpu
        {
            let update = update.clone();
            return self.moved_by_another(&update, asked_kpu, &app, doubt, settings, out);
        }
        if let Phase::Unknown { .. } = phase {
            let busy = app.status.is_transitional();
            // Said once while the application stays busy, and when it
            // is not: readiness allows for the wait from the first.
            if doubt == Some(Doubt::Restart) || !busy {
                out.events.push(Event::Resumed {
                    application: settings.name.clone(),
                    at_ms: out.now_ms,
                    phase: phase.name().to_owned(),
                    resume: if busy {
                        "outcome unknown: wait while the application is busy".to_owned()
                    } else {
                        "outcome unknown: hold one grace period".to_owned()
                    },
                    version_id: app.version_id,
                    wait: Some(if busy {
                        ResumedWait::Follow
                    } else {
                        ResumedWait::Until(out.now_ms.saturating_add(millis(settings.grace_period)))
                    }),
                });
            }
            if app.status.is_transitional() {
                return Next::Wait(settings.update_poll);
            }
            // Not after an update of this agent's ("after the update to
            // N KPU" would name one it did not make): after not knowing.
            let after = Some(UNKNOWN_OUTCOME_GRACE.to_owned());
            return Next::Wait(self.grace(app.kpu(), after, settings, out.now_ms));
        }
        if let Phase::Foreign { after, .. } = &phase {
            let restart = doubt == Some(Doubt::Restart);
            return self.follow_foreign(&app, after, restart, settings, out);
        }
        if doubt == Some(Doubt::Restart)
            && app.status.is_transitional()
            && phase
                .update()
                .is_some_and(|update| app.version_id <= update.quoted_version_id)
        {
            // Just restarted, with an update in flight, and the version is
            // not above the quote while the application is busy: no verdict
            // yet. A Flink job that restarts for want of slots (its
            // TaskManager lost during the rescale) shows a placeholder
            // graph dated from its submission until it is rebuilt, and a
            // fresh agent has not read the newer graph that would keep its
            // version from falling back; the rebuilt graph tells whether
            // the update took. Read again until it settles; said once.
            self.awaiting_verdict = true;
            if !was_awaiting {
                out.events.push(Event::Resumed {
                    application: settings.name.clone(),
                    at_ms: out.now_ms,
                    phase: phase.name().to_owned(),
                    resume: "no verdict yet: read again while the application is busy".to_owned(),
                    version_id: app.version_id,
                    wait: Some(ResumedWait::Follow),
                });
            }
            self.doubt = Some(Doubt::Restart);
            // These reads saw nothing of the update: the verdict's read is
            // the first that does.
            self.first_read_after_resume = first_read;
            if self.check_timeout(settings, out) {
                return Next::Wait(self.overdue_poll(settings));
            }
            return Next::Wait(settings.update_poll);
        }
        let mut resume = crate::state::resume(&phase, &app, out.now_ms, settings.grace_period);
        if let (Some(Doubt::Answer(_)), Resume::Finished { update }) = (&doubt, &resume)
            && app.kpu() != update.target_kpu
            // A target that says what it was asked for (a Flink job's
            // requirements) and asks for this update's size took it: a job
            // short of slots runs below it, but the rescale was ours.
            && app.asked_kpu != Some(update.target_kpu)
        {
            // The version moved, but the application runs, settled, at
            // another size: somebody else's update, and the error was
            // about it (a ConcurrentModification), or ours, rolled back
            // while DescribeApplication failed after a lost answer (which
            // version it made is not known). Either way it did not apply,
            // and the move is no update of this agent's: the next
            // evaluation reports it and waits out its restart (one grace
            // period from its end), instead of deciding on its metrics.
            self.record.seen_version_id = Some(update.quoted_version_id);
            resume = Resume::NotApplied {
                update: update.clone(),
            };
        }
        // An update of this agent's, accepted (it knows the version it
        // made), rolled back to a version id at or below the one it quoted:
        // AWS's documentation does not say whether a rollback moves the
        // version id on or restores the old one. The rollback is said and
        // held as in `completed`, not taken for a version that went back
        // under the agent (which would ask for the same size at once).
        if let Resume::NotApplied { update } = &resume
            && !matches!(doubt, Some(Doubt::Answer(_)))
            && app.status == AppStatus::Running
            && self
                .created_version_id
                .is_some_and(|made| app.rolled_back_from == Some(made))
        {
            resume = Resume::Finished {
                update: update.clone(),
            };
        }
        if doubt == Some(Doubt::Restart) {
            let grace_until =
                |wait: Duration| ResumedWait::Until(out.now_ms.saturating_add(millis(wait)));
            out.events.push(Event::Resumed {
                application: settings.name.clone(),
                at_ms: out.now_ms,
                phase: phase.name().to_owned(),
                resume: resume.name().to_owned(),
                version_id: app.version_id,
                wait: match &resume {
                    Resume::Follow { .. } => Some(ResumedWait::Follow),
                    Resume::Finished { .. } => Some(grace_until(settings.grace_period)),
                    Resume::Grace { remaining } => Some(grace_until(*remaining)),
                    Resume::Evaluate
                    | Resume::Reevaluate { .. }
                    | Resume::NotApplied { .. }
                    | Resume::Failed { .. } => None,
                },
            });
        }
        // Following an update seen through (not resolving one in doubt).
        let followed = doubt.is_none();
        // Found over at the first read after a resume from the journal
        // that saw the update (not after a panic while following it).
        let found_over = first_read && doubt == Some(Doubt::Restart);
        let answer = match doubt {
            Some(Doubt::Answer(error)) => Some(error),
            _ => None,
        };
        // The version moved past the quote: an update whose answer was an
        // error took effect all the same, whatever came of it since.
        if let (
            Some(error),
            Resume::Follow { update } | Resume::Finished { update } | Resume::Failed { update, .. },
        ) = (&answer, &resume)
        {
            self.took_effect(update, error, app.version_id, settings, out);
        }
        match resume {
            Resume::Evaluate | Resume::Reevaluate { .. } => {
                self.record.phase = Phase::Idle;
                Next::Run(Command::Evaluate)
            }
            Resume::Grace { remaining } => Next::Wait(remaining),
            Resume::NotApplied { update } => match answer {
                Some(error) => self.not_applied(&update, &error, settings, out),
                None => {
                    if followed {
                        // An accepted update being followed, and the
                        // version id fell back to or below the one it
                        // quoted: the application was re-created or
                        // restored under the agent. Nothing is left to
                        // follow; the operator hears why it stopped.
                        out.failed(
                            Failure::UpdateResult,
                            format!(
                                "the {thing}'s version id went back to {} while the update to {} (quoting version {}) was followed: {}; the update is given up and the next evaluation decides afresh",
                                app.version_id,
                                settings.words.capacity(update.target_kpu),
                                update.quoted_version_id,
                                settings.words.version_went_back(),
                                thing = settings.words.thing(),
                            ),
                        );
                    }
                    self.record.phase = Phase::Idle;
                    Next::Run(Command::Evaluate)
                }
            },
            Resume::Follow { update } => {
                if !matches!(self.record.phase, Phase::Updating { .. }) {
                    self.record.phase = Phase::Updating {
                        update: update.clone(),
                        observed_ms: out.now_ms,
                        new_version_id: self.created_version_id,
                    };
                }
                if self.check_timeout(settings, out) {
                    Next::Wait(self.overdue_poll(settings))
                } else {
                    Next::Wait(settings.update_poll)
                }
            }
            Resume::Finished { update } => {
                Next::Wait(self.completed(&update, &app, found_over, settings, out))
            }
            Resume::Failed { update, status } => {
                self.timed_out = false;
                self.record.phase = Phase::Idle;
                let to = settings.words.capacity(update.target_kpu);
                let what = settings.words.update_ended_in(status);
                let message = if followed {
                    format!("update to {to} ended in {status}{what}")
                } else {
                    format!(
                        "the update to {to} (version {}) ended in {status}{what}",
                        update.quoted_version_id
                    )
                };
                Next::Wait(self.failed(Failure::UpdateFailed, message, settings, out))
            }
        }
    }

    /// An evaluation's decision: hold, defer, or send. `assessed` is what
    /// [`Machine::assess`] found for it, if it was asked.
    fn evaluated(
        &mut self,
        evaluated: Evaluated,
        assessed: Option<Assessment>,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        self.permission = None;
        let Evaluated { state, decision } = evaluated;
        let Assessment { owed, moves } =
            assessed.unwrap_or_else(|| self.assessment(&state, settings, out.now_ms));
        if state.status == AppStatus::Running || state.status.is_transitional() {
            self.record.fresh_start = false;
        }
        self.moves = moves;
        let streak = restart_streak(self.moves, settings, out.now_ms);
        self.notice_foreign_update(&state, streak.as_deref(), settings, out);
        if let Some(event) = fight::check(&mut self.record, &state, settings, out.now_ms) {
            out.events.push(event);
        }
        self.review_limit(state.kpu(), settings, out);
        self.review_refused(&state, settings, out);
        if let Some(owed) = owed {
            self.failures = 0;
            return self.hold_owed(owed, streak, &state, settings, out);
        }
        let hold_for = self.hold_for(&decision, settings, out.now_ms);
        if settings.dry_run {
            // Nothing is sent, so nothing is in flight (a grace period
            // held for another writer's update has ended).
            self.failures = 0;
            self.record.phase = Phase::Idle;
            return Next::Wait(hold_for);
        }
        if fight::stood_down(&self.record) {
            // Another writer fights the agent: what would have been sent
            // is recorded (the controller's decision says it), nothing is.
            self.failures = 0;
            self.record.phase = Phase::Idle;
            return Next::Wait(hold_for);
        }
        let Action::ScaleTo(to_kpu) = decision.action else {
            // Settled (or still holding): nothing is in flight.
            self.failures = 0;
            self.record.phase = Phase::Idle;
            return Next::Wait(hold_for);
        };
        if state.status != AppStatus::Running {
            let already = matches!(&self.record.phase,
                Phase::Decided { target_kpu, .. } if *target_kpu == to_kpu);
            if !already {
                self.record.phase = Phase::Decided {
                    target_kpu: to_kpu,
                    reason: decision.reason.clone(),
                    at_ms: out.now_ms,
                };
            }
            out.failed(
                Failure::NotRunning,
                format!(
                    "{} is {}, not RUNNING; rescale to {} deferred",
                    settings.words.thing(),
                    state.status,
                    settings.words.capacity(to_kpu)
                ),
            );
            // Busy (starting, updating): it may run in moments. Stopped
            // or rolled back: it stays so until somebody acts, so it is
            // read at the evaluation interval, not every few seconds.
            return Next::Wait(if state.status.is_transitional() {
                settings.update_poll
            } else {
                hold_for
            });
        }
        let update = Update {
            target_kpu: to_kpu,
            from_kpu: state.kpu(),
            quoted_version_id: state.version_id,
            reason: decision.reason,
            started_ms: out.now_ms,
        };
        self.followed_from_journal = false;
        self.record.phase = Phase::Sending {
            update: update.clone(),
        };
        Next::Run(Command::Update {
            update,
            current: state,
        })
    }

    /// Holds what [`Machine::grace_owed`] found owed: follows a busy
    /// application (journaled as `foreign`), or starts the grace period.
    /// `streak` says, if so, that such grace periods keep starting again
    /// ([`restart_streak`]): `status` shows it with the phase.
    fn hold_owed(
        &mut self,
        owed: Owed,
        streak: Option<String>,
        state: &AppState,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        let after = match streak {
            Some(streak) => format!("{}; {streak}", owed.reason),
            None => owed.reason.to_owned(),
        };
        out.events.push(Event::GraceHeld {
            application: settings.name.clone(),
            at_ms: out.now_ms,
            until_ms: owed.until_ms,
            reason: after.clone(),
        });
        match owed.until_ms {
            None => {
                self.record.phase = Phase::Foreign {
                    version_id: state.version_id,
                    since_ms: out.now_ms,
                    after,
                };
                Next::Wait(settings.update_poll)
            }
            Some(until_ms) => {
                self.record.phase = Phase::Grace {
                    kpu: state.kpu(),
                    until_ms,
                    after: Some(after),
                };
                let left = until_ms.saturating_sub(out.now_ms).max(0);
                Next::Wait(Duration::from_millis(left.unsigned_abs()))
            }
        }
    }

    /// Follows a restart or update this agent did not make (phase `foreign`): polls
    /// while the application is busy, then holds one grace period from
    /// when it is RUNNING; an application that ends in another status is
    /// evaluated (which defers any rescale while it is not RUNNING).
    /// `restart` says the phase came from the journal.
    fn follow_foreign(
        &mut self,
        app: &AppState,
        after: &str,
        restart: bool,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        let busy = app.status.is_transitional();
        if restart {
            out.events.push(Event::Resumed {
                application: settings.name.clone(),
                at_ms: out.now_ms,
                phase: self.record.phase.name().to_owned(),
                resume: if busy {
                    "a restart or update this agent did not make: follow it, then a grace period"
                        .to_owned()
                } else if app.status == AppStatus::Running {
                    "a restart or update this agent did not make ended: grace period".to_owned()
                } else {
                    "a restart or update this agent did not make ended, not RUNNING: evaluate"
                        .to_owned()
                },
                version_id: app.version_id,
                wait: waited_out(app, settings, out.now_ms),
            });
        }
        if busy {
            return Next::Wait(settings.update_poll);
        }
        if app.status != AppStatus::Running {
            self.record.phase = Phase::Idle;
            return Next::Run(Command::Evaluate);
        }
        let until_ms = out.now_ms.saturating_add(millis(settings.grace_period));
        self.failures = 0;
        out.events.push(Event::GraceHeld {
            application: settings.name.clone(),
            at_ms: out.now_ms,
            until_ms: Some(until_ms),
            reason: after.to_owned(),
        });
        self.record.phase = Phase::Grace {
            kpu: app.kpu(),
            until_ms,
            after: Some(after.to_owned()),
        };
        Next::Wait(settings.grace_period)
    }

    /// The version id last seen, if `state`'s is above it: somebody else
    /// updated the application since ([`Machine::grace_owed`] waits it
    /// out, [`Machine::notice_foreign_update`] reports it).
    fn moved_without_us(&self, state: &AppState) -> Option<u64> {
        self.record
            .seen_version_id
            .filter(|seen| state.version_id > *seen)
    }

    /// The identity last seen, if `state` has another one: the
    /// application was replaced under its name (a Flink job resubmitted, an
    /// MSF application re-created). Nothing is compared while either is
    /// unknown.
    fn replaced(&self, state: &AppState) -> Option<&str> {
        let seen = self.record.seen_identity.as_deref()?;
        let now = state.identity.as_deref()?;
        (seen != now).then_some(seen)
    }

    /// The application was replaced while an update of this agent was in
    /// flight (or in doubt): the update was to the old one, so nothing of
    /// it is followed on the new one, which is never taken to have
    /// completed it. Whether it carried over is said (the new one asks for
    /// what was asked: submitted at that size), and the new application is
    /// waited out as after a restart (followed while busy, then one grace
    /// period), journaled as such, before anything is decided for it.
    fn replaced_under_update(
        &mut self,
        update: &Update,
        previous: &str,
        app: &AppState,
        doubt: Option<Doubt>,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        let words = settings.words;
        // A size refused to the old application says nothing of the new.
        self.record.refused = None;
        if doubt == Some(Doubt::Restart) {
            out.events.push(Event::Resumed {
                application: settings.name.clone(),
                at_ms: out.now_ms,
                phase: self.record.phase.name().to_owned(),
                resume: format!(
                    "the {} was replaced: the update is given up, the new one waited out",
                    words.thing()
                ),
                version_id: app.version_id,
                wait: waited_out(app, settings, out.now_ms),
            });
        }
        // What the new one was asked for where the target says, else what
        // it runs at.
        let (asked_kpu, asks) = match app.asked_kpu {
            Some(asked_kpu) => (asked_kpu, "asks for"),
            None => (app.kpu(), "runs at"),
        };
        let carried = if asked_kpu == update.target_kpu {
            format!(
                "the new {} {asks} {}: the rescale carried over",
                words.thing(),
                words.capacity(asked_kpu)
            )
        } else {
            format!(
                "the rescale did not carry over: the new {} {asks} {}",
                words.thing(),
                words.capacity(asked_kpu)
            )
        };
        let answer = match &doubt {
            Some(Doubt::Answer(error)) => format!(" ({} answered: {error})", words.rescale_call()),
            _ => String::new(),
        };
        out.failed(
            Failure::UpdateResult,
            format!(
                "the {thing} was replaced while {} to {} was followed{answer} ({} {previous}, now {}): {}; {carried}; nothing is decided for the new {thing} before a grace period",
                words.rescale(),
                words.capacity(update.target_kpu),
                words.identity(),
                app.identity.as_deref().unwrap_or_default(),
                words.replaced(),
                thing = words.thing(),
            ),
        );
        self.timed_out = false;
        self.failures = 0;
        self.after_another(app, words.grace_after_replacement(), settings, out)
    }

    /// The `sending` update's answer is unknown and the version id moved
    /// past its quote, but the application asks for `asked_kpu`, not what
    /// the update asked for: the version moved for another reason (a
    /// Flink job's own restart, another writer), and the update did not
    /// take effect. It is not sent again while that is waited out: the
    /// move is followed while the application is busy, then one grace
    /// period is held, as after another writer's update.
    fn moved_by_another(
        &mut self,
        update: &Update,
        asked_kpu: u32,
        app: &AppState,
        doubt: Option<Doubt>,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        let words = settings.words;
        let why = format!(
            "the version id moved to {}, but the {} asks for {}, not {}: {}; {} did not take effect",
            app.version_id,
            words.thing(),
            words.capacity(asked_kpu),
            words.capacity(update.target_kpu),
            words.other_writers(),
            words.rescale(),
        );
        match doubt {
            Some(Doubt::Answer(error)) => out.failed(
                Failure::of(&error),
                format!(
                    "{} to {} failed: {error}; {why}",
                    words.rescale_call(),
                    words.capacity(update.target_kpu)
                ),
            ),
            _ => {
                out.events.push(Event::Resumed {
                    application: settings.name.clone(),
                    at_ms: out.now_ms,
                    phase: self.record.phase.name().to_owned(),
                    resume: "update never took effect, the version moved for another reason: wait it out".to_owned(),
                    version_id: app.version_id,
                    wait: waited_out(app, settings, out.now_ms),
                });
                out.failed(
                    Failure::ForeignUpdate,
                    format!(
                        "{} to {} (version {}): {why}",
                        words.rescale_call(),
                        words.capacity(update.target_kpu),
                        update.quoted_version_id
                    ),
                );
            }
        }
        self.after_another(app, words.grace_after_other_writer(), settings, out)
    }

    /// Waits out what somebody else did to `app` (a replacement, a
    /// restart, another writer's update): followed while it is busy, one
    /// grace period (`after`) once it is RUNNING, and an evaluation at
    /// once in any other status (which defers any rescale).
    fn after_another(
        &mut self,
        app: &AppState,
        after: &'static str,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        if app.status.is_transitional() {
            let owed = Owed {
                until_ms: None,
                reason: after,
            };
            return self.hold_owed(owed, None, app, settings, out);
        }
        if app.status == AppStatus::Running {
            let owed = Owed {
                until_ms: Some(out.now_ms.saturating_add(millis(settings.grace_period))),
                reason: after,
            };
            return self.hold_owed(owed, None, app, settings, out);
        }
        self.record.phase = Phase::Idle;
        Next::Run(Command::Evaluate)
    }

    /// Reports an evaluation that finds the version id above the last one
    /// this machine saw or caused: somebody else updated the application
    /// (another agent, the reference design's scaling not yet switched
    /// off, a deployment, the console, MSF's own autoscaling), or, on a
    /// Flink job, Flink rebuilt its graph (a restart).
    /// Two writers undo each other's rescales, and nothing else tells the
    /// operator: the version check refuses only updates decided on the same
    /// version at once. Reported once per move; the grace period it owes is
    /// [`Machine::grace_owed`]'s. A dry run reports it too: it meets what
    /// a run that acts would meet (beside the autoscaler it is to replace,
    /// that autoscaler's rescales).
    /// `streak` is said with the move when such moves keep restarting the
    /// grace period ([`restart_streak`]).
    fn notice_foreign_update(
        &mut self,
        state: &AppState,
        streak: Option<&str>,
        settings: &Settings,
        out: &mut Out,
    ) {
        let replaced = self.replaced(state).map(str::to_owned);
        let moved = self.moved_without_us(state);
        self.record.seen_version_id = Some(state.version_id);
        if state.identity.is_some() {
            self.record.seen_identity = state.identity.clone();
        }
        // Mid-update the size read is the one the update leaves, not the
        // one it goes to.
        let runs = if state.status == AppStatus::Running {
            format!("it now runs at {}", settings.words.capacity(state.kpu()))
        } else {
            format!(
                "it is {}, from {}",
                state.status,
                settings.words.capacity(state.kpu())
            )
        };
        if let Some(previous) = replaced {
            // A size refused to the old application says nothing of the
            // new one.
            self.record.refused = None;
            // Its version id says nothing next to the old one's.
            out.failed(
                Failure::ForeignUpdate,
                format!(
                    "the {thing} was replaced under the agent ({identity} {previous}, now {}): {}; {runs}, and is waited out as a restart",
                    state.identity.as_deref().unwrap_or_default(),
                    settings.words.replaced(),
                    thing = settings.words.thing(),
                    identity = settings.words.identity(),
                ),
            );
        } else if let Some(seen) = moved {
            let mut message = format!(
                "the {thing}'s version id moved from {seen} to {} without {} of this agent: {}; {runs}. Two writers undo each other's rescales: run one agent per {thing}",
                state.version_id,
                settings.words.rescale(),
                settings.words.other_writers(),
                thing = settings.words.thing(),
            );
            if let Some(streak) = streak {
                message.push_str(". ");
                message.push_str(streak);
            }
            out.failed(Failure::ForeignUpdate, message);
        }
    }

    /// How long to wait after a decision before evaluating again: the
    /// evaluation interval, or, with lazy polling, a hold's
    /// `next_evaluation_secs` rounded down to whole intervals (so that
    /// evaluations fall where they would without it) and kept within
    /// [1, [`LAZY_MAX_INTERVALS`]] intervals. Never past the end of a KPU
    /// limit or a refused target, which change what may be decided: the
    /// evaluation that would have seen the change still runs. Counted from
    /// the wake that led to the evaluation ([`Machine::less_the_evaluation`]).
    fn hold_for(&self, decision: &Decision, settings: &Settings, now_ms: i64) -> Duration {
        let interval = settings.evaluation_interval;
        let Some(asked) = decision.next_evaluation_secs else {
            return self.less_the_evaluation(interval, interval, now_ms);
        };
        if !settings.lazy_polling || decision.action != Action::Hold || interval.is_zero() {
            return self.less_the_evaluation(interval, interval, now_ms);
        }
        let interval_ms = interval.as_millis().max(1);
        let mut intervals = u128::from(lazy_intervals(asked, interval));
        let deadlines = [
            self.record.kpu_limit.as_ref().map(limit_until_ms),
            self.record.refused.map(|refused| refused.until_ms),
        ];
        for deadline in deadlines.into_iter().flatten() {
            if deadline > now_ms {
                let until = u128::try_from(deadline - now_ms).unwrap_or(u128::MAX);
                intervals = intervals.min(until.div_ceil(interval_ms).max(1));
            }
        }
        let wait = interval * u32::try_from(intervals).unwrap_or(1);
        self.less_the_evaluation(wait, interval, now_ms)
    }

    /// `wait` less the time since the wake that led to this evaluation, so
    /// that evaluations keep their phase: unchanged when that time is not
    /// below one `interval` (a wall clock stepped, or reads that timed
    /// out: the phase is lost either way, and the next evaluation is not
    /// hurried).
    fn less_the_evaluation(&self, wait: Duration, interval: Duration, now_ms: i64) -> Duration {
        let Some(woke_at_ms) = self.woke_at_ms else {
            return wait;
        };
        let taken = Duration::from_millis(u64::try_from(now_ms - woke_at_ms).unwrap_or(u64::MAX));
        if taken < interval { wait - taken } else { wait }
    }

    /// UpdateApplication failed. Unless the request never left the agent,
    /// whether it took effect is resolved first.
    fn update_failed(&mut self, error: TargetError, settings: &Settings, out: &mut Out) -> Next {
        let Phase::Sending { update } = self.record.phase.clone() else {
            self.doubt = Some(Doubt::Restart);
            return Next::Run(Command::Describe);
        };
        if let TargetError::Request(_) = error {
            return self.not_applied(&update, &error, settings, out);
        }
        self.doubt = Some(Doubt::Answer(error));
        Next::Run(Command::Describe)
    }

    /// An update whose answer was an error took effect all the same (the
    /// version id moved past the one it quoted). The rescale is reported
    /// started before the error: a listener that takes the first of the
    /// two as the evaluation's outcome (the decision history) records the
    /// update as accepted, as it was.
    fn took_effect(
        &mut self,
        update: &Update,
        error: &TargetError,
        version_id: u64,
        settings: &Settings,
        out: &mut Out,
    ) {
        self.started(update.clone(), version_id, out);
        // The version may have moved for another reason.
        self.created_version_id = None;
        out.failed(
            Failure::of(error),
            format!(
                "{} to {} failed: {error}; the version id moved to {version_id}, so an update took effect (this one, its answer lost, or another request); following it",
                settings.words.rescale_call(),
                settings.words.capacity(update.target_kpu)
            ),
        );
        self.failures = 0;
    }

    /// What an update that certainly did not take effect leaves behind.
    fn not_applied(
        &mut self,
        update: &Update,
        error: &TargetError,
        settings: &Settings,
        out: &mut Out,
    ) -> Next {
        self.record.phase = Phase::Idle;
        let class = Failure::of(error);
        let message = format!(
            "{} to {} failed: {error}",
            settings.words.rescale_call(),
            settings.words.capacity(update.target_kpu)
        );
        match error {
            TargetError::LimitExceeded(_) | TargetError::SlotsExceeded { .. }
                if update.target_kpu > update.from_kpu =>
            {
                // Only a scale-out says where the ceiling is; asking for
                // less than now and being refused says nothing about more.
                // A Flink cluster says how many slots it has; MSF's account
                // limit does not, so one below the refused KPU is tried.
                out.failed(class, message);
                let usable_kpu = match error {
                    TargetError::SlotsExceeded { usable, .. } => Some(*usable),
                    _ => None,
                };
                let limit = KpuLimit {
                    refused_kpu: update.target_kpu,
                    at_ms: out.now_ms,
                    usable_kpu,
                };
                self.record.kpu_limit = Some(limit);
                out.events.push(Event::LimitRecorded {
                    application: settings.name.clone(),
                    at_ms: out.now_ms,
                    refused_kpu: limit.refused_kpu,
                    ceiling_kpu: limit.ceiling(),
                });
                // A limit that did not say its size may lie anywhere
                // between the size that runs and the ceiling: the next
                // size down is tried soon (see LIMIT_PROBE).
                let probing = usable_kpu.is_none() && limit.ceiling() > update.from_kpu;
                Next::Wait(if probing {
                    LIMIT_PROBE.min(settings.evaluation_interval)
                } else {
                    settings.evaluation_interval
                })
            }
            TargetError::Invalid(_) | TargetError::NotFound(_) | TargetError::Request(_) => {
                self.record.refused = Some(RefusedTarget {
                    kpu: update.target_kpu,
                    until_ms: out.now_ms + REFUSED_TARGET_HOLD_MS,
                    rolled_back_to: None,
                });
                Next::Wait(self.failed(class, message, settings, out))
            }
            _ => Next::Wait(self.failed(class, message, settings, out)),
        }
    }

    /// UpdateApplication was accepted (or its effect seen).
    fn started(&mut self, update: Update, new_version_id: u64, out: &mut Out) {
        out.events.push(Event::RescaleStarted {
            application: out.name.to_owned(),
            at_ms: out.now_ms,
            from_kpu: update.from_kpu,
            to_kpu: update.target_kpu,
            version_id: update.quoted_version_id,
        });
        self.timed_out = false;
        self.record.phase = Phase::Sent {
            update,
            new_version_id,
        };
    }

    /// The update is over and the application RUNNING: records it and
    /// starts the grace period, whose length is returned.
    /// `found_over`: the update was found over at the first read after a
    /// resume from the journal (a restart of the agent, or of a paused
    /// application), so what came after it came at a time not known.
    fn completed(
        &mut self,
        update: &Update,
        app: &AppState,
        found_over: bool,
        settings: &Settings,
        out: &mut Out,
    ) -> Duration {
        let update_secs =
            u32::try_from((out.now_ms - update.started_ms).max(0) / 1000).unwrap_or(u32::MAX);
        // The update is over: the polls past its timeout, and any failed
        // read while it was followed, are not failures of the next step.
        self.failures = 0;
        self.timed_out = false;
        self.record.last_rescale_ms = Some(out.now_ms);
        // Not known when it was found in flight at a start: the time
        // since it was sent includes however long nothing followed it.
        let update_secs = (!std::mem::take(&mut self.followed_from_journal)).then_some(update_secs);
        if update_secs.is_some() {
            self.record.last_update_duration_secs = update_secs;
        }
        out.events.push(Event::RescaleCompleted {
            application: settings.name.clone(),
            at_ms: out.now_ms,
            kpu: app.kpu(),
            update_secs,
        });
        // The version the update made, as its accepted answer said, is the
        // one a rollback reverted from: the update failed to start, and
        // MSF's system rollback (or somebody's RollbackApplication)
        // restored the old version. Asking again for the same size would
        // restart the application into the same failure, every grace
        // period. Only a version the agent knows it made says so: one
        // taken from a version id that moved (an answer lost) may be
        // another writer's, whose rollback is no word on this size (it is
        // then reported as running at another size, below). Found over
        // after a gap (the agent down, the application paused) the
        // rollback must also have come while the update could still fail:
        // an operator's RollbackApplication of the size, hours after it
        // ran, is no word on whether it starts.
        let in_time = |app: &AppState| {
            !found_over
                || app.last_update_ms.is_none_or(|at| {
                    at <= update
                        .started_ms
                        .saturating_add(millis(settings.update_timeout))
                })
        };
        let rolled_back_from = self
            .created_version_id
            .filter(|made| app.rolled_back_from == Some(*made) && in_time(app));
        let rolled_back = rolled_back_from.is_some();
        if let Some(made) = rolled_back_from {
            self.record.refused = Some(RefusedTarget {
                kpu: update.target_kpu,
                until_ms: out.now_ms + REFUSED_TARGET_HOLD_MS,
                rolled_back_to: Some(update.from_kpu),
            });
            out.failed(
                Failure::UpdateFailed,
                format!(
                    "the update to {} was rolled back: version {made} did not start, and the {} \
                     runs at {} again (version {}); {} or {} is not asked for again for {} s (why \
                     it failed: aws kinesisanalyticsv2 list-application-operations)",
                    settings.words.capacity(update.target_kpu),
                    settings.words.thing(),
                    settings.words.capacity(app.kpu()),
                    app.version_id,
                    settings.words.capacity(update.target_kpu),
                    if update.target_kpu > update.from_kpu {
                        "more"
                    } else {
                        "less"
                    },
                    REFUSED_TARGET_HOLD_MS / 1000
                ),
            );
        } else if app.kpu() != update.target_kpu {
            out.failed(
                Failure::UpdateResult,
                format!(
                    "{} is RUNNING at {}, not the {} requested",
                    settings.words.thing(),
                    settings.words.capacity(app.kpu()),
                    settings.words.capacity(update.target_kpu)
                ),
            );
        }
        // Another writer's update that landed meanwhile and undid the
        // rescale counts toward standing down; a rollback of the rescale
        // is no other writer, and neither is one found over after a gap
        // (when it came is not known: the window would count from now).
        let created = self
            .created_version_id
            .take()
            .filter(|_| !rolled_back && !found_over);
        if let Some(event) =
            fight::own_rescale(&mut self.record, update, created, app, settings, out.now_ms)
        {
            out.events.push(event);
        }
        self.grace(app.kpu(), None, settings, out.now_ms)
    }

    /// Starts a grace period now, held after `after` (`None`: the agent's
    /// own update, as `status` says it); returns its length.
    fn grace(
        &mut self,
        kpu: u32,
        after: Option<String>,
        settings: &Settings,
        now_ms: i64,
    ) -> Duration {
        let grace = settings.grace_period;
        self.record.phase = Phase::Grace {
            kpu,
            until_ms: now_ms.saturating_add(millis(grace)),
            after,
        };
        grace
    }

    /// Reports an update still not over after `update_timeout` (once per
    /// update). Returns whether it has timed out.
    fn check_timeout(&mut self, settings: &Settings, out: &mut Out) -> bool {
        let Some(update) = self.record.phase.update() else {
            return false;
        };
        if matches!(self.record.phase, Phase::Sending { .. }) {
            return false;
        }
        let timeout_ms = i64::try_from(settings.update_timeout.as_millis()).unwrap_or(i64::MAX);
        if out.now_ms - update.started_ms < timeout_ms {
            return false;
        }
        if !self.timed_out {
            // Said with the time it has really taken: a restarted agent (or
            // a reload) finds it later than the timeout.
            self.timed_out = true;
            out.failed(
                Failure::UpdateTimeout,
                format!(
                    "{} not RUNNING {} s after the update to {} (update_timeout_secs {}); \
                     still following it",
                    settings.words.thing(),
                    (out.now_ms - update.started_ms) / 1000,
                    settings.words.capacity(update.target_kpu),
                    settings.update_timeout.as_secs()
                ),
            );
        }
        true
    }

    /// How long to wait before reading an update past its timeout again:
    /// backing off from `update_poll` up to [`OVERDUE_POLL_MAX`], so that
    /// an update that ends late is seen within a minute of its end (and
    /// its logged duration is about true), not up to 5 min after it.
    fn overdue_poll(&mut self, settings: &Settings) -> Duration {
        self.backoff()
            .min(OVERDUE_POLL_MAX)
            .max(settings.update_poll)
    }

    /// Lifts a recorded KPU limit that no longer says anything.
    fn review_limit(&mut self, kpu: u32, settings: &Settings, out: &mut Out) {
        let Some(limit) = self.record.kpu_limit else {
            return;
        };
        if self.limit_in_force(kpu, out.now_ms).is_some() {
            return;
        }
        let reason = if kpu >= limit.refused_kpu {
            format!(
                "the {} runs at {}, not below the {} refused",
                settings.words.thing(),
                settings.words.capacity(kpu),
                settings.words.capacity(limit.refused_kpu)
            )
        } else {
            format!(
                "{} s have passed; {}",
                LIMIT_RETRY_MS / 1000,
                settings.words.limit_may_have_moved()
            )
        };
        self.record.kpu_limit = None;
        out.events.push(Event::LimitLifted {
            application: settings.name.clone(),
            at_ms: out.now_ms,
            refused_kpu: limit.refused_kpu,
            reason,
        });
    }

    /// Lifts a held size ([`RefusedTarget`]) that the application, as
    /// `state` reads it, shows wrong ([`RefusedTarget::disproved_by`]): it
    /// runs at a size the refusal stops (an operator set it by hand, a
    /// deployment did), so that size starts, and holding it would keep
    /// the application out of its bounds or away from sizes between it
    /// and the refused one.
    fn review_refused(&mut self, state: &AppState, settings: &Settings, out: &mut Out) {
        let kpu = state.kpu();
        if !self
            .record
            .refused
            .is_some_and(|refused| refused.disproved_by(state.status, kpu))
        {
            return;
        }
        let lifted = self.take_refused(settings, out.now_ms, || {
            format!(
                "the {} runs at {}, a size the hold stopped: it starts there",
                settings.words.thing(),
                settings.words.capacity(kpu)
            )
        });
        out.events.extend(lifted);
    }

    /// The error policy: reports a failed step (a permission failure only
    /// when its message changed) and returns how long to wait before the
    /// next one. A busy application is polled; everything else backs off.
    fn failed(
        &mut self,
        class: Failure,
        message: String,
        settings: &Settings,
        out: &mut Out,
    ) -> Duration {
        if class == Failure::Permission {
            if self.permission.as_deref() != Some(message.as_str()) {
                self.permission = Some(message.clone());
                out.failed(class, message);
            }
        } else {
            // Reported again after another failure: the metrics mark only
            // the latest class, so a permission failure remembered across
            // a transient one would leave the permission alert silent
            // while the refusal goes on.
            self.permission = None;
            out.failed(class, message);
        }
        match class {
            Failure::ResourceInUse | Failure::NotRunning => {
                self.count_failure();
                settings.update_poll
            }
            _ => self.backoff(),
        }
    }

    /// Counts one more consecutive failed step; the first since a success
    /// starts the back-off's exponent afresh.
    fn count_failure(&mut self) {
        if self.failures == 0 {
            self.backoff_streak = 0;
        }
        self.failures = self.failures.saturating_add(1);
    }

    /// The next back-off after one more consecutive failed step; see
    /// [`backoff_delay`].
    fn backoff(&mut self) -> Duration {
        self.count_failure();
        self.backoff_streak = self.backoff_streak.saturating_add(1);
        backoff_delay(self.backoff_streak, self.jitter.next_unit())
    }
}

/// The events of one step, and what they are stamped with.
struct Out<'a> {
    name: &'a str,
    now_ms: i64,
    events: Vec<Event>,
}

impl Out<'_> {
    fn failed(&mut self, class: Failure, message: String) {
        self.events.push(Event::Failed {
            application: self.name.to_owned(),
            at_ms: self.now_ms,
            class: class.as_str().to_owned(),
            plugin_class: None,
            message,
        });
    }

    fn done(self, next: Next) -> Transition {
        Transition {
            next,
            events: self.events,
        }
    }
}

/// `duration` in whole milliseconds, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Whole seconds from `now_ms` to `until_ms`, rounded up.
pub fn secs_until(until_ms: i64, now_ms: i64) -> i64 {
    (until_ms.saturating_sub(now_ms).max(0) + 999) / 1000
}

#[cfg(test)]
mod tests {
    use super::RefusedTarget;

    /// A size refused as invalid stops only itself; a rolled-back update
    /// stops its size and those beyond it the way it went (a job that did
    /// not start at 8 after a scale-out from 4 would not start at 9), and
    /// never the sizes between.
    #[test]
    fn a_rollback_stops_its_size_and_those_beyond_it() {
        let at = |kpu, rolled_back_to| RefusedTarget {
            kpu,
            until_ms: 0,
            rolled_back_to,
        };
        let invalid = at(8, None);
        assert_eq!(
            (invalid.stops(8), invalid.stops(9), invalid.stops(7)),
            (true, false, false)
        );
        let out = at(8, Some(4));
        assert_eq!(
            [5, 7, 8, 9, 64].map(|kpu| out.stops(kpu)),
            [false, false, true, true, true]
        );
        let r#in = at(2, Some(6));
        assert_eq!(
            [1, 2, 3, 5, 7].map(|kpu| r#in.stops(kpu)),
            [true, true, false, false, false]
        );
    }
}
