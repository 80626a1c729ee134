//! The pure [`Machine`] against a model of MSF, for every sequence of up
//! to [`DEPTH`] outcomes of the calls it makes, drawn from every outcome
//! production can produce ([`Outcome`]): the first calls get the
//! sequence's outcomes one by one, every later call succeeds, and the run
//! goes on until the application settles.
//!
//! The model plays what AWS does for each outcome (an update that takes
//! effect and then loses its answer, a competing update that makes ours
//! stale, an update that rolls back, ...), and a crash throws the machine
//! away and resumes a new one from the last journaled record. Four
//! invariants are checked at every command, from the model's side, never
//! from the machine's own account:
//! - at most one UpdateApplication per decision (a crash does not reset
//!   this: a restarted machine must decide again before it sends);
//! - none while an update of the agent is in flight or inside the grace
//!   period after it completed, and the `sending` record is journaled
//!   before each one (write-ahead);
//! - no evaluation (so no decision) on metrics that end before the last
//!   rescale completed plus its grace period;
//! - every run settles at the KPU the policy wants (no lost intent), with a
//!   journal that records the last completed rescale and no override of
//!   another writer (none changes the size here: one counted would be an
//!   update of the agent's own that it lost track of).
//!
//! The search shares prefixes: each node is cloned for each next outcome,
//! so a sequence costs only its last outcome's steps and the run to the
//! end. The number of sequences checked is printed.

use std::time::Duration;

use super::super::machine::{Command, Evaluated, Jitter, Machine, Next, Observation};
use super::super::{Failure, QuarantinePolicy, Settings};
use crate::model::{Action, Decision};
use crate::state::{AppRecord, Phase};
use crate::target::{AppState, AppStatus, TargetError};

/// Longest outcome sequence.
const DEPTH: usize = 6;
/// KPU at the start, and the KPU the policy wants (one KPU per decision).
const START_KPU: u32 = 1;
const WANTED_KPU: u32 = 3;
/// How long an update keeps the application UPDATING.
const UPDATE_MS: i64 = 25_000;
/// How long somebody else's operation keeps it busy.
const FOREIGN_BUSY_MS: i64 = 20_000;
/// Steps after which a run that has not settled is a livelock.
const MAX_STEPS: usize = 600;

/// What a call meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Succeeds.
    Ok,
    /// Takes effect; its answer is lost (a timeout, a dropped connection).
    LostAfterEffect,
    /// Lost before it reached the service.
    LostBeforeEffect,
    /// Throttled.
    Throttled,
    /// A 5xx without effect.
    ServerError,
    /// On a read, somebody else's change lands (the version id moves); on
    /// UpdateApplication, the update takes effect and the answer is the
    /// ConcurrentModification a retried attempt would get.
    ConcurrentModification,
    /// On a read, somebody else's operation makes the application busy; on
    /// UpdateApplication, the update takes effect and the answer is the
    /// ResourceInUse a retried attempt would get.
    ResourceInUse,
    /// The agent's permissions are refused.
    AccessDenied,
    /// The application's KPU quota refuses an update.
    LimitExceeded,
    /// An update in flight takes longer (still UPDATING at this read).
    Updating,
    /// An update in flight fails and rolls back.
    RolledBack,
    /// An update in flight ends now.
    Running,
    /// The call runs (and takes effect), then the agent is killed before
    /// it sees the answer; a new one resumes from the journal.
    Crash,
    /// A configuration reload lifts the recorded KPU limit and a held size
    /// while the agent waits ([`Machine::lift_limit`],
    /// [`Machine::lift_refused`], journaled at once, as the driver does); a
    /// call meets it as [`Outcome::Ok`].
    Lift,
}

const OUTCOMES: [Outcome; 14] = [
    Outcome::Ok,
    Outcome::LostAfterEffect,
    Outcome::LostBeforeEffect,
    Outcome::Throttled,
    Outcome::ServerError,
    Outcome::ConcurrentModification,
    Outcome::ResourceInUse,
    Outcome::AccessDenied,
    Outcome::LimitExceeded,
    Outcome::Updating,
    Outcome::RolledBack,
    Outcome::Running,
    Outcome::Crash,
    Outcome::Lift,
];

fn settings() -> Settings {
    Settings {
        name: "app".to_owned(),
        min_kpu: 1,
        max_kpu: 10,
        evaluation_interval: Duration::from_secs(300),
        update_poll: Duration::from_secs(10),
        update_timeout: Duration::from_secs(600),
        grace_period: Duration::from_secs(60),
        dry_run: false,
        words: crate::target::Words::Msf,
        quarantine: QuarantinePolicy::DEFAULT,
        lazy_polling: true,
    }
}

/// The application as MSF keeps it, and what the checks need to know.
#[derive(Debug, Clone)]
struct World {
    now_ms: i64,
    status: AppStatus,
    kpu: u32,
    version: u64,
    /// An update of the agent in flight: its target and end.
    ours: Option<(u32, i64)>,
    /// Somebody else's operation in flight: its end.
    foreign_until: Option<i64>,
    /// The next read shows ROLLED_BACK once, then RUNNING.
    rolled_back: bool,
    /// When the agent's last update completed (RUNNING at its target).
    completed_ms: Option<i64>,
    /// A decision to scale was taken and not yet sent.
    decision_pending: bool,
    updates_sent: usize,
}

impl World {
    fn new() -> Self {
        Self {
            now_ms: 1_700_000_000_000,
            status: AppStatus::Running,
            kpu: START_KPU,
            version: 1,
            ours: None,
            foreign_until: None,
            rolled_back: false,
            completed_ms: None,
            decision_pending: false,
            updates_sent: 0,
        }
    }

    /// Lets time act: updates end when their time has come.
    fn settle(&mut self) {
        if let Some((target, until)) = self.ours
            && self.now_ms >= until
        {
            self.finish(target);
        }
        if let Some(until) = self.foreign_until
            && self.now_ms >= until
            && self.ours.is_none()
        {
            self.foreign_until = None;
            self.status = AppStatus::Running;
        }
    }

    fn finish(&mut self, target: u32) {
        self.ours = None;
        self.kpu = target;
        self.status = AppStatus::Running;
        self.completed_ms = Some(self.now_ms);
    }

    /// Whether `what` may happen now: no update of the agent in flight,
    /// and the grace period after the last one over.
    fn outside_updates(&self, grace_ms: i64, what: &str) -> Result<(), String> {
        if self.ours.is_some() {
            return Err(format!("{what} while an update of the agent was in flight"));
        }
        match self.completed_ms {
            Some(done) if self.now_ms < done + grace_ms => Err(format!(
                "{what} {} ms after the last rescale completed, inside the grace period",
                self.now_ms - done
            )),
            _ => Ok(()),
        }
    }

    fn read(&mut self) -> AppState {
        if self.rolled_back {
            self.rolled_back = false;
            self.status = AppStatus::RolledBack;
        } else if self.status == AppStatus::RolledBack {
            self.status = AppStatus::Running;
        }
        AppState {
            status: self.status,
            parallelism: self.kpu,
            parallelism_per_kpu: 1,
            version_id: self.version,
            autoscaling_enabled: false,
            last_update_ms: None,
            identity: None,
            asked_kpu: None,
            rolled_back_from: None,
        }
    }

    /// What a read meets: its effect on the world, and an error if it
    /// fails.
    fn before_read(&mut self, outcome: Outcome) -> Result<(), TargetError> {
        match outcome {
            Outcome::LostAfterEffect | Outcome::LostBeforeEffect | Outcome::ServerError => {
                Err(TargetError::Transient("500".into()))
            }
            Outcome::Throttled => Err(TargetError::Throttled("slow down".into())),
            Outcome::AccessDenied => Err(TargetError::Permission("denied".into())),
            Outcome::ConcurrentModification => {
                // Somebody changes the configuration (not the size).
                self.version += 1;
                Ok(())
            }
            Outcome::ResourceInUse => {
                if self.ours.is_none() && self.status == AppStatus::Running {
                    self.version += 1;
                    self.status = AppStatus::Maintenance;
                    self.foreign_until = Some(self.now_ms + FOREIGN_BUSY_MS);
                }
                Ok(())
            }
            Outcome::Updating => {
                if let Some((_, until)) = &mut self.ours {
                    *until = (*until).max(self.now_ms + 1);
                }
                Ok(())
            }
            Outcome::RolledBack => {
                if self.ours.take().is_some() {
                    self.rolled_back = true;
                    self.status = AppStatus::Running;
                }
                Ok(())
            }
            Outcome::Running => {
                if let Some((target, _)) = self.ours {
                    self.finish(target);
                }
                Ok(())
            }
            Outcome::Ok | Outcome::LimitExceeded | Outcome::Crash | Outcome::Lift => Ok(()),
        }
    }

    /// UpdateApplication as MSF answers it, under `outcome`.
    fn update(&mut self, target: u32, quoted: u64, outcome: Outcome) -> Result<u64, TargetError> {
        let apply = |w: &mut World| -> Result<u64, TargetError> {
            if w.status != AppStatus::Running {
                return Err(TargetError::ResourceInUse("busy".into()));
            }
            if quoted != w.version {
                return Err(TargetError::ConcurrentModification("stale".into()));
            }
            w.version += 1;
            w.status = AppStatus::Updating;
            w.ours = Some((target, w.now_ms + UPDATE_MS));
            Ok(w.version)
        };
        match outcome {
            Outcome::LostAfterEffect => {
                apply(self)?;
                Err(TargetError::Transient("timed out".into()))
            }
            Outcome::LostBeforeEffect | Outcome::ServerError => {
                Err(TargetError::Transient("500".into()))
            }
            Outcome::Throttled => Err(TargetError::Throttled("slow down".into())),
            // What a retried attempt meets after the first took effect
            // with its answer lost: its quoted version is stale, or the
            // application is UPDATING. (A competing update is played by
            // the same outcome on a read.)
            Outcome::ConcurrentModification => {
                apply(self)?;
                Err(TargetError::ConcurrentModification("stale".into()))
            }
            Outcome::ResourceInUse => {
                apply(self)?;
                Err(TargetError::ResourceInUse("UPDATING".into()))
            }
            Outcome::AccessDenied => Err(TargetError::Permission("denied".into())),
            Outcome::LimitExceeded => Err(TargetError::LimitExceeded("limit".into())),
            _ => apply(self),
        }
    }
}

/// The policy: one KPU more per decision until `WANTED_KPU`, within the
/// bounds it is given.
fn decide(app: &AppState, max_kpu: u32) -> Decision {
    let want = WANTED_KPU.min(max_kpu);
    if app.kpu() < want {
        Decision {
            action: Action::ScaleTo(app.kpu() + 1),
            reason: "below the wanted size".into(),
            next_evaluation_secs: None,
        }
    } else {
        Decision::hold("at the wanted size")
    }
}

/// One agent (machine and journal) against one world, mid-run.
#[derive(Debug, Clone)]
struct Run {
    world: World,
    machine: Machine,
    journal: AppRecord,
    next: Next,
    steps: usize,
}

impl Run {
    fn new(settings: &Settings) -> Self {
        let mut run = Self {
            world: World::new(),
            machine: Machine::new(Jitter::new(7)),
            journal: AppRecord::default(),
            next: Next::Wait(Duration::ZERO),
            steps: 0,
        };
        run.feed(Observation::Wake, settings);
        run
    }

    /// Steps the machine and journals its record, as the driver does.
    fn feed(&mut self, observation: Observation, settings: &Settings) {
        let transition = self.machine.step(observation, settings, self.world.now_ms);
        self.journal = self.machine.record.clone();
        self.next = transition.next;
        self.steps += 1;
    }

    /// Runs what the machine asked for under `outcome`. Errors are the
    /// broken invariants.
    fn advance(&mut self, outcome: Outcome, settings: &Settings) -> Result<(), String> {
        let grace_ms = settings.grace_period.as_millis() as i64;
        let observation = match self.next.clone() {
            Next::Wait(delay) => {
                if outcome == Outcome::Lift {
                    self.machine.lift_limit(settings, self.world.now_ms);
                    self.machine.lift_refused(settings, self.world.now_ms, true);
                    self.journal = self.machine.record.clone();
                }
                self.world.now_ms += delay.as_millis() as i64;
                self.world.settle();
                Observation::Wake
            }
            Next::Run(Command::Describe) => {
                self.world.settle();
                Observation::Described(self.world.before_read(outcome).map(|()| self.world.read()))
            }
            Next::Run(Command::Evaluate) => {
                self.world.settle();
                self.world.outside_updates(grace_ms, "evaluated")?;
                match self.world.before_read(outcome) {
                    Err(error) => {
                        Observation::Evaluated(Err((Failure::of(&error), error.to_string())))
                    }
                    Ok(()) => {
                        let state = self.world.read();
                        let max_kpu =
                            self.machine
                                .max_kpu(settings, state.kpu(), self.world.now_ms);
                        let app = crate::model::Application {
                            name: settings.name.clone(),
                            status: state.status,
                            kpu: state.kpu(),
                            parallelism: state.parallelism,
                            parallelism_per_kpu: 1,
                            min_kpu: settings.min_kpu,
                            max_kpu,
                            version_id: state.version_id,
                            last_rescale_ms: None,
                            last_update_duration_secs: None,
                        };
                        let decision = self.machine.refine(
                            settings,
                            decide(&state, max_kpu),
                            &app,
                            self.world.now_ms,
                        );
                        if matches!(decision.action, Action::ScaleTo(_)) {
                            self.world.decision_pending = true;
                        }
                        Observation::Evaluated(Ok(Evaluated { state, decision }))
                    }
                }
            }
            Next::Run(Command::Update { update, current }) => {
                self.world.settle();
                if !self.world.decision_pending {
                    return Err(format!(
                        "a second UpdateApplication for one decision (to {} KPU)",
                        update.target_kpu
                    ));
                }
                self.world.outside_updates(grace_ms, "UpdateApplication")?;
                if self.journal.phase
                    != (Phase::Sending {
                        update: update.clone(),
                    })
                {
                    return Err(format!(
                        "UpdateApplication without its `sending` record journaled first ({:?})",
                        self.journal.phase
                    ));
                }
                self.world.decision_pending = false;
                self.world.updates_sent += 1;
                Observation::Updated(self.world.update(
                    update.target_kpu,
                    current.version_id,
                    outcome,
                ))
            }
        };
        if outcome == Outcome::Crash && !matches!(observation, Observation::Wake) {
            // The call ran; the agent dies before it sees the answer.
            self.machine = Machine::resume(self.journal.clone(), Jitter::new(7));
            self.feed(Observation::Wake, settings);
        } else {
            self.feed(observation, settings);
        }
        Ok(())
    }

    /// Settled: nothing in flight, at the wanted size, idle and waiting.
    fn settled(&self) -> bool {
        self.world.kpu == WANTED_KPU
            && self.world.ours.is_none()
            && self.world.status == AppStatus::Running
            && self.machine.record.phase == Phase::Idle
            && matches!(self.next, Next::Wait(_))
    }

    /// Runs on with every call succeeding until settled.
    fn finish(mut self, settings: &Settings) -> Result<Run, String> {
        while !self.settled() {
            if self.steps > MAX_STEPS {
                return Err(format!(
                    "not settled after {MAX_STEPS} steps: {:?} / {:?}",
                    self.world, self.machine.record
                ));
            }
            self.advance(Outcome::Ok, settings)?;
        }
        if !self.journal.fight.overrides.is_empty() || self.journal.fight.stood_down_ms.is_some() {
            // Nobody else changes the size here (a competing change moves
            // the version only): an override seen is an update of the
            // agent's own that it lost track of.
            return Err(format!(
                "an override counted without another writer changing the size: {:?}",
                self.journal.fight
            ));
        }
        if let Some(done) = self.world.completed_ms
            && self.journal.last_rescale_ms.is_none_or(|at| at < done)
        {
            return Err(format!(
                "the rescale completed at {done} is not journaled ({:?})",
                self.journal.last_rescale_ms
            ));
        }
        Ok(self)
    }
}

/// Explores every sequence below `run` (which has consumed `path`);
/// returns how many were checked, or the first broken invariant with the
/// sequence that broke it.
fn explore(
    run: &Run,
    path: &mut Vec<Outcome>,
    settings: &Settings,
    stats: &mut Stats,
) -> Result<(), String> {
    let end = run
        .clone()
        .finish(settings)
        .map_err(|e| format!("{path:?}: {e}"))?;
    stats.sequences += 1;
    stats.updates += end.world.updates_sent as u64;
    stats.steps += end.steps as u64;
    if path.len() == DEPTH {
        return Ok(());
    }
    for outcome in OUTCOMES {
        let mut next = run.clone();
        path.push(outcome);
        next.advance(outcome, settings)
            .map_err(|e| format!("{path:?}: {e}"))?;
        explore(&next, path, settings, stats)?;
        path.pop();
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Stats {
    sequences: u64,
    updates: u64,
    steps: u64,
}

#[test]
fn every_sequence_of_outcomes_keeps_the_invariants() {
    let settings = settings();
    // Two workers, each taking every other first outcome.
    let results: Vec<Result<Stats, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let settings = &settings;
                scope.spawn(move || {
                    let mut stats = Stats::default();
                    let root = Run::new(settings);
                    for (i, outcome) in OUTCOMES.iter().enumerate() {
                        if i % 2 != worker {
                            continue;
                        }
                        let mut path = vec![*outcome];
                        let mut next = root.clone();
                        next.advance(*outcome, settings)
                            .map_err(|e| format!("{path:?}: {e}"))?;
                        explore(&next, &mut path, settings, &mut stats)?;
                    }
                    Ok(stats)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    let mut total = Stats::default();
    for result in results {
        let stats = result.unwrap_or_else(|e| panic!("invariant broken: {e}"));
        total.sequences += stats.sequences;
        total.updates += stats.updates;
        total.steps += stats.steps;
    }
    // Every sequence of length 1..=DEPTH over every outcome.
    let expected: u64 = (1..=DEPTH as u32)
        .map(|k| (OUTCOMES.len() as u64).pow(k))
        .sum();
    println!(
        "checked {} outcome sequences (every sequence of 1 to {DEPTH} of {} outcomes): {} UpdateApplication calls, {} machine steps",
        total.sequences,
        OUTCOMES.len(),
        total.updates,
        total.steps
    );
    assert_eq!(total.sequences, expected);
}
