//! Record: a bounded history of each application's decisions, so that
//! `flinkscale explain` and `flinkscale status` (and `GET /explain`,
//! `GET /status`) can answer "why did it scale?" after the fact, whether
//! the agent still runs or not.
//!
//! The history is one more listener of the controllers' [`Event`]s: an
//! evaluation ([`Event::Evaluated`]) becomes an [`Entry`] with its inputs
//! (each metric's latest value, the alarm states, the interpreters'
//! signals and those dropped as not finite ([`Event::SignalsDropped`]),
//! the policy's name and version), the decision and its reason,
//! and what was done: held, dry run, or the update's fate, which the
//! events that follow an evaluation tell ([`Event::RescaleStarted`],
//! [`Event::Failed`]). Entries go to `<state_dir>/history/<application>.jsonl`,
//! one JSON object a line, newest last.
//!
//! Files are written by one dedicated thread fed through a channel
//! ([`spawn`]): a controller's `emit` only sends, it never waits for a
//! disk. A file holds at most the bound's entries (1000 by default): the
//! line that would exceed it makes the thread rewrite the file with the
//! newest nine tenths, atomically (a temporary file renamed over it), so
//! that trimming is paid once every hundred evaluations, not at each, and
//! a reader never sees a half-trimmed file. A reader skips a line it cannot
//! parse (a last line being appended).
//!
//! Plugin quarantines, which outlive evaluations, are kept beside the
//! history in `<application>.quarantine.json`, rewritten atomically; so is
//! the failure an application is in now (`<application>.failure.json`: a
//! permission refusal, throttling, ... since when), which the next
//! evaluation or accepted update ends.
//!
//! A folder that cannot be written (full, read-only) fails these writes
//! at every evaluation: that is logged when it starts, when the error
//! changes and every 10 minutes, and once when a write succeeds again
//! ([`super::failing`]), not at every entry. On a nearly full disk an
//! append can fit where a rewrite's temporary copy does not: the entry is
//! then appended all the same, and a rewrite that could not be made (a
//! trim, or an entry's outcome amended) is made by a later append, not
//! lost while the agent runs (an amendment still owed at a stop is); a
//! temporary copy cut short is removed at once, not left to hold the
//! space the appends need.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Event;
use super::failing::{Failing, Tell};
use super::text::{iso, number, one_line};
use crate::model::Action;
use crate::state::{JournalFile, JournalLock, LockTable, Phase, Resume};
use crate::target::Words;

/// Entries kept per application unless told otherwise.
pub const DEFAULT_BOUND: usize = 1000;

/// The folder of the histories inside `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("history")
}

/// One evaluation: its inputs, the decision, and what was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was evaluated (ms since the epoch).
    pub at_ms: i64,
    /// The application's KPU at evaluation time.
    pub kpu: u32,
    /// The policy that decided (`name version`).
    pub policy: String,
    /// Each configured metric's latest value (`null`: no datapoint).
    pub metrics: Vec<MetricValue>,
    /// The alarms' states.
    pub alarms: Vec<AlarmEntry>,
    /// The interpreters' signals.
    pub signals: Vec<SignalEntry>,
    /// The signals dropped because their value was not a finite number
    /// (absent before this field was written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_signals: Vec<DroppedSignalEntry>,
    /// The decision after host validation.
    pub decision: DecisionEntry,
    /// What was done about it.
    pub outcome: Outcome,
}

/// A metric's latest value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    /// The metric's configured id.
    pub id: String,
    /// Its latest value, if it had a datapoint in the window.
    pub value: Option<f64>,
}

/// An alarm's state at evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEntry {
    /// The alarm's configured id.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// Since when it holds (ms since the epoch).
    pub since_ms: i64,
}

/// An interpreter's signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalEntry {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// A signal an interpreter answered with a value that is not a finite
/// number, dropped from the evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedSignalEntry {
    /// Its name.
    pub name: String,
    /// Its value as text: `NaN`, `inf` or `-inf` (JSON has no such number).
    pub value: String,
    /// The interpreter that gave it (`name version`).
    pub plugin: String,
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    /// The KPU asked for; `None` holds.
    pub scale_to_kpu: Option<u32>,
    /// The policy's reason (or the host's, when it overrode it).
    pub reason: String,
    /// For a hold, the next evaluation it asked for, in seconds (lazy
    /// polling: nothing can change the decision sooner). The controller
    /// waits that long rounded down to whole evaluation intervals, at
    /// least one and at most 15, and never past the end of a hold on a
    /// size; with `lazy_polling = false` one interval. Absent when it asked
    /// for none, and in entries written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_evaluation_secs: Option<u32>,
}

impl DecisionEntry {
    /// `"; next evaluation asked for N s after it"` when the hold asked for
    /// one, else nothing. What was asked, not what the controller waits
    /// (see [`DecisionEntry::next_evaluation_secs`]).
    fn asked_later(&self) -> String {
        match (self.scale_to_kpu, self.next_evaluation_secs) {
            (None, Some(secs)) => format!("; next evaluation asked for {secs} s after it"),
            _ => String::new(),
        }
    }
}

/// What was done about a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing: the decision held.
    Held,
    /// Nothing: the agent runs with `--dry-run`.
    DryRun {
        /// The KPU it would have asked for.
        kpu: u32,
    },
    /// Nothing: the evaluation found another writer fighting the agent,
    /// which stood down (`crate::controller::fight`).
    StoodDown {
        /// The KPU it would have asked for.
        kpu: u32,
    },
    /// UpdateApplication was accepted.
    Accepted {
        /// KPU requested.
        kpu: u32,
    },
    /// The update was not sent or not accepted.
    Failed {
        /// The failure class (as in `flinkscale_failures_total`).
        class: String,
        /// What happened.
        message: String,
    },
    /// Nothing: the application had to wait first (an update in
    /// progress, or its grace period).
    NotSent {
        /// Why, in the target's words.
        reason: String,
    },
    /// The agent stopped, or evaluated again, before the update's fate was
    /// known.
    Unknown,
    /// The update's answer was an error, and the DescribeApplication that
    /// would tell whether it took effect all the same failed too: the
    /// outcome was being resolved when the entry was written (the agent
    /// stopped).
    InDoubt {
        /// The update's answer.
        error: String,
        /// Why it could not be resolved (the last DescribeApplication
        /// failure).
        message: String,
    },
}

impl Outcome {
    /// The outcome for people, in the words of the application's target
    /// (`UpdateApplication accepted to 4 KPU`, or `PUT
    /// /jobs/{id}/resource-requirements accepted to parallelism 4`).
    pub fn said(&self, words: Words) -> String {
        match self {
            Outcome::Held => "held".to_owned(),
            Outcome::DryRun { kpu } => {
                format!("dry run: would have asked for {}", words.capacity(*kpu))
            }
            Outcome::StoodDown { kpu } => format!(
                "stood down (another writer undid this agent's rescales): would have asked for {}, not sent",
                words.capacity(*kpu)
            ),
            Outcome::Accepted { kpu } => format!(
                "{} accepted to {}",
                words.rescale_call(),
                words.capacity(*kpu)
            ),
            Outcome::Failed { class, message } => {
                format!("not scaled ({class}): {}", one_line(message))
            }
            Outcome::NotSent { reason } => format!("not sent: {}", one_line(reason)),
            Outcome::Unknown => format!(
                "no answer: the agent stopped before {} answered (the next start replaces this with what became of the update, unless it never took effect)",
                words.rescale_call()
            ),
            Outcome::InDoubt { error, message } => format!(
                "outcome unknown, being resolved: {} answered {}, and whether it took effect could not be read yet: {}",
                words.rescale_call(),
                one_line(error),
                one_line(message)
            ),
        }
    }
}

impl std::fmt::Display for Outcome {
    /// In MSF's words ([`Outcome::said`] with [`Words::Msf`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.said(Words::Msf))
    }
}

/// A plugin in quarantine, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The plugin (`name version`).
    pub plugin: String,
    /// Which of the application's plugins it is
    /// ([`crate::telemetry::plugin_slot`]: `policy`, `interpreter N`);
    /// empty in a file written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slot: String,
    /// How its last call failed (`timeout`, `trap`, ...; empty in a
    /// file written before the class was recorded).
    #[serde(default)]
    pub class: String,
    /// Failures in a row that led to it.
    pub failures: u32,
    /// When it began (ms since the epoch).
    pub at_ms: i64,
    /// When the plugin is called again (ms since the epoch).
    pub until_ms: i64,
}

impl Quarantine {
    /// Whether this is the quarantine of the plugin `plugin` at `slot`: by
    /// its place, or, in a file written before places were recorded, by
    /// its name.
    fn is_of(&self, plugin: &str, slot: &str) -> bool {
        if self.slot.is_empty() {
            self.plugin == plugin
        } else {
            self.slot == slot
        }
    }
}

/// The failure an application is in now, as `status` reports it: the
/// last [`Event::Failed`] since its last evaluation or accepted update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentFailure {
    /// Its class (`permission`, `throttled`, ...; see
    /// [`crate::controller::Failure`]).
    pub class: String,
    /// What happened, the last time.
    pub message: String,
    /// When the failures of this class in a row began (ms since the
    /// epoch).
    pub since_ms: i64,
    /// When it last happened (ms since the epoch).
    pub last_ms: i64,
    /// How many times in a row.
    pub count: u64,
}

/// How many events the history's thread may be behind by. Past it (its
/// folder's disk hung or far too slow for the events: at one evaluation a
/// minute that is a week of 1 application, or about 50 minutes of 200),
/// an event is dropped from the history and counted, never queued without
/// end in the agent's memory nor waited for.
pub const QUEUE_BOUND: usize = 10_000;

/// Where the controllers' events go to be kept: a cheap, cloneable sender
/// to the history's thread.
#[derive(Debug, Clone)]
pub struct History {
    tx: SyncSender<Event>,
    /// Events dropped because the thread was [`QUEUE_BOUND`] behind.
    dropped: Arc<AtomicU64>,
}

impl History {
    /// Hands `event` to the history's thread if it is one the history
    /// keeps; never blocks: with the thread [`QUEUE_BOUND`] events behind,
    /// the event is dropped, counted and logged (at the 1st, 2nd, 4th,
    /// 8th... drop).
    pub fn record(&self, event: &Event) {
        if !matters(event) {
            return;
        }
        match self.tx.try_send(event.clone()) {
            // A writer that went away (it logged why) loses the history,
            // never a controller step.
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(
                        message = "The decision history's writer is behind (its folder's disk is hung or too slow): events are dropped from the history, not queued in memory.",
                        dropped,
                        queued = QUEUE_BOUND,
                    );
                }
            }
        }
    }

    /// How many events were dropped for a writer [`QUEUE_BOUND`] behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The application an event the history keeps is about.
fn event_application(event: &Event) -> Option<&str> {
    match event {
        Event::Evaluated { application, .. }
        | Event::RescaleStarted { application, .. }
        | Event::Failed { application, .. }
        | Event::UpdateInDoubt { application, .. }
        | Event::PluginQuarantined { application, .. }
        | Event::PluginRecovered { application, .. }
        | Event::PluginReloaded { application, .. }
        | Event::SignalsDropped { application, .. }
        | Event::StoodDown { application, .. }
        | Event::GraceHeld { application, .. }
        | Event::NotSent { application, .. }
        | Event::Resumed { application, .. } => Some(application),
        _ => None,
    }
}

/// When an event the history keeps happened (ms since the epoch).
fn event_at_ms(event: &Event) -> Option<i64> {
    match event {
        Event::Evaluated { at_ms, .. }
        | Event::RescaleStarted { at_ms, .. }
        | Event::Failed { at_ms, .. }
        | Event::UpdateInDoubt { at_ms, .. }
        | Event::PluginQuarantined { at_ms, .. }
        | Event::PluginRecovered { at_ms, .. }
        | Event::PluginReloaded { at_ms, .. }
        | Event::SignalsDropped { at_ms, .. }
        | Event::GraceHeld { at_ms, .. }
        | Event::NotSent { at_ms, .. }
        | Event::Resumed { at_ms, .. } => Some(*at_ms),
        _ => None,
    }
}

fn matters(event: &Event) -> bool {
    event_application(event).is_some()
}

/// The history's thread; [`Writer::finish`] waits for it to write what it
/// was sent.
#[derive(Debug)]
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Waits until every [`History`] is dropped and the thread has written
    /// what they sent. Blocks: call it off the async runtime.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}

/// Starts the thread that keeps at most `bound` entries per application in
/// `dir` (created, readable by the agent's user only).
pub fn spawn(dir: PathBuf, bound: usize) -> std::io::Result<(History, Writer)> {
    spawn_files(Files::new(dir, bound))
}

/// [`spawn`] for a dry-run agent: an application whose journal an acting
/// agent holds (the same `state_dir`) gets nothing from it, so that what
/// the dry run would do never reads as what the acting agent did. Its
/// other applications' histories are kept as [`spawn`] keeps them.
pub fn spawn_dry_run(dir: PathBuf, bound: usize) -> std::io::Result<(History, Writer)> {
    let mut files = Files::new(dir, bound);
    files.dry_run = true;
    spawn_files(files)
}

fn spawn_files(files: Files) -> std::io::Result<(History, Writer)> {
    create_private_dir(&files.dir)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
    let thread = std::thread::Builder::new()
        .name("flinkscale-history".to_owned())
        .spawn(move || files.run(rx))?;
    let history = History {
        tx,
        dropped: Arc::default(),
    };
    Ok((history, Writer { thread }))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The thread's state: the files, and each application's evaluation whose
/// update's fate is not known yet.
struct Files {
    dir: PathBuf,
    bound: usize,
    /// Lines in each file this thread wrote to (read once, then counted).
    lines: BTreeMap<String, usize>,
    pending: BTreeMap<String, Entry>,
    /// Each application's signals dropped at an evaluation (its time),
    /// for that evaluation's entry, which follows.
    dropped: BTreeMap<String, (i64, Vec<DroppedSignalEntry>)>,
    /// The applications whose next [`Event::Failed`] is the failure that
    /// left their update in doubt ([`Event::UpdateInDoubt`]), not the
    /// update's outcome.
    in_doubt: std::collections::BTreeSet<String>,
    quarantines: BTreeMap<String, Vec<Quarantine>>,
    failures: BTreeMap<String, CurrentFailure>,
    /// Whether writes in the folder fail, since when: told once, not at
    /// every entry ([`Files::written`]).
    failing: Failing,
    /// When the first write that went through after a failure did, while
    /// no second one has: the folder is said to be writable again only at
    /// the second write in a row that goes through. On a full disk an
    /// append to the history can succeed between two failure records that
    /// cannot be made, and saying "writable again" for it told a recovery
    /// at every evaluation.
    first_ok_ms: Option<i64>,
    /// The applications whose current failure is an update's (refused,
    /// failed): an evaluation deciding to scale again does not end it.
    update_failing: std::collections::BTreeSet<String>,
    /// The applications whose ended failure's record could not be removed.
    owed_removals: std::collections::BTreeSet<String>,
    /// Each application's history as it should read where a rewrite of it
    /// (an amended outcome) could not be made: appends still go through
    /// on a nearly full disk where the rewrite's temporary copy does not
    /// fit, and the amendment is made with the next append that can write
    /// the whole file, instead of being lost.
    owed_rewrites: BTreeMap<String, String>,
    /// The time of the event being taken (ms since the epoch): the clock
    /// of [`Files::failing`], so that a simulated run reads simulated time.
    now_ms: i64,
    /// Whether the agent runs dry ([`spawn_dry_run`]).
    dry_run: bool,
    /// In a dry run, the applications whose journal an acting agent held
    /// at their last evaluation: their events are left out.
    beside_acting: std::collections::BTreeSet<String>,
    /// In a dry run, the applications whose lock was looked up.
    looked_up: std::collections::BTreeSet<String>,
}

impl Files {
    fn new(dir: PathBuf, bound: usize) -> Self {
        Self {
            dir,
            bound: bound.max(1),
            lines: BTreeMap::new(),
            pending: BTreeMap::new(),
            dropped: BTreeMap::new(),
            in_doubt: std::collections::BTreeSet::new(),
            quarantines: BTreeMap::new(),
            failures: BTreeMap::new(),
            failing: Failing::default(),
            first_ok_ms: None,
            update_failing: std::collections::BTreeSet::new(),
            owed_removals: std::collections::BTreeSet::new(),
            owed_rewrites: BTreeMap::new(),
            now_ms: 0,
            dry_run: false,
            beside_acting: std::collections::BTreeSet::new(),
            looked_up: std::collections::BTreeSet::new(),
        }
    }

    /// In a dry run, whether `application`'s events are left out: looked
    /// up at each evaluation (and at the first event), said when it
    /// changes. The signals an evaluation dropped come before its
    /// [`Event::Evaluated`], so they look it up too: the first entry after
    /// an acting agent lets go keeps them.
    fn left_out(&mut self, application: &str, event: &Event) -> bool {
        if !self.dry_run {
            return false;
        }
        let known = self.beside_acting.contains(application);
        let evaluation = matches!(
            event,
            Event::Evaluated { .. } | Event::SignalsDropped { .. }
        );
        if !evaluation && self.looked_up.contains(application) {
            return known;
        }
        let Some(state_dir) = self.dir.parent() else {
            return false;
        };
        let held = LockTable::read()
            .holder(&crate::state::lock_path(state_dir, application))
            .is_some_and(|lock| lock.held);
        // Looked up again only at the next evaluation.
        self.looked_up.insert(application.to_owned());
        if held && !known {
            self.beside_acting.insert(application.to_owned());
            self.pending.remove(application);
            warn!(
                message = "An acting agent holds this application's journal in the same state_dir: this dry run writes none of its decisions into the history there (give the dry run a state_dir of its own).",
                application = %application,
                state_dir = %state_dir.display(),
            );
        } else if !held && known {
            self.beside_acting.remove(application);
            info!(
                message = "No acting agent holds this application's journal any more: this dry run writes its decisions into the history again.",
                application = %application,
            );
        }
        held
    }

    fn run(mut self, rx: Receiver<Event>) {
        while let Ok(event) = rx.recv() {
            self.take(event);
        }
        // Every sender is gone: the agent stops.
        let pending = std::mem::take(&mut self.pending);
        for (application, entry) in pending {
            self.append(&application, &entry);
        }
    }

    fn take(&mut self, event: Event) {
        let Some(application) = event_application(&event) else {
            return;
        };
        if self.left_out(application, &event) {
            return;
        }
        if let Some(at_ms) = event_at_ms(&event) {
            self.now_ms = at_ms;
        }
        if !self.quarantines.contains_key(application) {
            // Quarantines live in the controllers' memory: this agent's
            // first word on the application ends the last agent's.
            self.quarantines.insert(application.to_owned(), Vec::new());
            let path = self.quarantine_path(application);
            if path.exists() {
                self.save_quarantines(application);
            }
            // Likewise its failure: not happening any more unless this
            // agent meets it again.
            self.clear_failure(application);
        }
        match &event {
            // An evaluation that decides to scale again does not end the
            // refusal of the update it decided before (a role that may read
            // but not update): that streak goes on until an update is
            // accepted or a decision holds.
            Event::Evaluated {
                application,
                decision,
                dry_run,
                ..
            } if self.failures.contains_key(application)
                && !(self.update_failing.contains(application)
                    && !dry_run
                    && matches!(decision.action, Action::ScaleTo(_))) =>
            {
                self.clear_failure(application);
            }
            Event::RescaleStarted { application, .. }
                if self.failures.contains_key(application) =>
            {
                self.clear_failure(application);
            }
            Event::Failed {
                application,
                at_ms,
                class,
                message,
                ..
            } => {
                // A failure that ends a decision to scale still pending is
                // its update's.
                if self
                    .pending
                    .get(application)
                    .is_some_and(|entry| entry.decision.scale_to_kpu.is_some())
                {
                    self.update_failing.insert(application.clone());
                } else {
                    self.update_failing.remove(application);
                }
                self.note_failure(application, *at_ms, class, message);
            }
            _ => {}
        }
        match event {
            Event::SignalsDropped {
                application,
                at_ms,
                plugin,
                signals,
                ..
            } => {
                let kept = self.dropped.entry(application).or_default();
                if kept.0 != at_ms {
                    // Left by an evaluation that gave no entry.
                    *kept = (at_ms, Vec::new());
                }
                kept.1
                    .extend(signals.into_iter().map(|s| DroppedSignalEntry {
                        name: s.name,
                        value: s.value.to_string(),
                        plugin: plugin.clone(),
                    }));
            }
            Event::Evaluated {
                application,
                at_ms,
                kpu,
                latest,
                alarms,
                signals,
                policy,
                decision,
                dry_run,
            } => {
                self.in_doubt.remove(&application);
                let dropped_signals = match self.dropped.remove(&application) {
                    Some((at, dropped)) if at == at_ms => dropped,
                    _ => Vec::new(),
                };
                if let Some(earlier) = self.pending.remove(&application) {
                    self.append(&application, &earlier);
                }
                let scale_to_kpu = match decision.action {
                    Action::Hold => None,
                    Action::ScaleTo(kpu) => Some(kpu),
                };
                let outcome = match scale_to_kpu {
                    None => Outcome::Held,
                    Some(kpu) if dry_run => Outcome::DryRun { kpu },
                    Some(_) => Outcome::Unknown,
                };
                let entry = Entry {
                    at_ms,
                    kpu,
                    policy,
                    metrics: latest
                        .into_iter()
                        .map(|(id, value)| MetricValue { id, value })
                        .collect(),
                    alarms: alarms
                        .into_iter()
                        .map(|a| AlarmEntry {
                            name: a.name,
                            state: a.state.to_string(),
                            since_ms: a.since_ms,
                        })
                        .collect(),
                    signals: signals
                        .into_iter()
                        .map(|s| SignalEntry {
                            name: s.name,
                            value: s.value,
                        })
                        .collect(),
                    dropped_signals,
                    decision: DecisionEntry {
                        scale_to_kpu,
                        reason: decision.reason,
                        next_evaluation_secs: decision
                            .next_evaluation_secs
                            .filter(|_| scale_to_kpu.is_none()),
                    },
                    outcome,
                };
                if entry.outcome == Outcome::Unknown {
                    self.pending.insert(application, entry);
                } else {
                    self.append(&application, &entry);
                }
            }
            Event::RescaleStarted {
                application,
                to_kpu,
                ..
            } => self.resolve(&application, Outcome::Accepted { kpu: to_kpu }),
            Event::Failed {
                application,
                class,
                message,
                ..
            } => {
                if self.in_doubt.remove(&application) {
                    // Why the update is still in doubt, not its fate.
                    if let Some(entry) = self.pending.get_mut(&application)
                        && let Outcome::InDoubt { message: why, .. } = &mut entry.outcome
                    {
                        *why = message;
                    }
                } else if self.pending.contains_key(&application) {
                    // Somebody else's update, noticed by the evaluation,
                    // is no fate of the evaluation's decision.
                    if class != crate::controller::Failure::ForeignUpdate.as_str() {
                        self.resolve(&application, Outcome::Failed { class, message });
                    }
                } else if [
                    // The fates of an accepted update (one past its
                    // timeout may still end well: not one of them).
                    crate::controller::Failure::UpdateFailed,
                    crate::controller::Failure::UpdateResult,
                ]
                .iter()
                .any(|f| f.as_str() == class)
                {
                    self.amend_accepted(&application, &class, &message);
                }
            }
            // The evaluation found the application busy with an update this
            // agent did not make, or in its grace period: its decision is
            // not sent, which is its fate.
            Event::GraceHeld {
                application,
                reason,
                ..
            }
            | Event::NotSent {
                application,
                reason,
                ..
            } if self
                .pending
                .get(&application)
                .is_some_and(|entry| entry.decision.scale_to_kpu.is_some()) =>
            {
                self.resolve(&application, Outcome::NotSent { reason });
            }
            Event::StoodDown { application, .. } => {
                // The evaluation that found the fight: its decision is
                // not sent.
                if let Some(kpu) = self
                    .pending
                    .get(&application)
                    .and_then(|entry| entry.decision.scale_to_kpu)
                {
                    self.resolve(&application, Outcome::StoodDown { kpu });
                }
            }
            Event::Resumed {
                application,
                phase,
                resume,
                ..
            } if phase == "sending" && !self.pending.contains_key(&application) => {
                self.amend_unsent_answer(&application, &resume);
            }
            Event::UpdateInDoubt {
                application, error, ..
            } => {
                if let Some(entry) = self.pending.get_mut(&application) {
                    entry.outcome = Outcome::InDoubt {
                        error,
                        message: String::new(),
                    };
                    self.in_doubt.insert(application);
                }
            }
            Event::PluginQuarantined {
                application,
                at_ms,
                plugin,
                slot,
                class,
                failures,
                until_ms,
            } => {
                let list = self.quarantines.entry(application.clone()).or_default();
                list.retain(|q| !q.is_of(&plugin, &slot));
                list.push(Quarantine {
                    plugin,
                    slot,
                    class: class.as_str().to_owned(),
                    failures,
                    at_ms,
                    until_ms,
                });
                self.save_quarantines(&application);
            }
            // The plugin that answered ends the quarantine of its place,
            // also one a reload gave it from another plugin.
            Event::PluginRecovered {
                application,
                plugin,
                slot,
                ..
            } => {
                let list = self.quarantines.entry(application.clone()).or_default();
                let before = list.len();
                list.retain(|q| !q.is_of(&plugin, &slot));
                if list.len() != before {
                    self.save_quarantines(&application);
                }
            }
            Event::PluginReloaded {
                application,
                from: plugin,
                ..
            } => {
                let list = self.quarantines.entry(application.clone()).or_default();
                let before = list.len();
                list.retain(|q| q.plugin != plugin);
                if list.len() != before {
                    self.save_quarantines(&application);
                }
            }
            _ => {}
        }
    }

    /// Completes the application's pending evaluation, if any, with
    /// `outcome`. A failure without a pending evaluation (an evaluation
    /// that failed, a rescale that failed later) is not an evaluation's.
    fn resolve(&mut self, application: &str, outcome: Outcome) {
        if let Some(mut entry) = self.pending.remove(application) {
            entry.outcome = outcome;
            self.append(application, &entry);
        }
    }

    /// A restarted agent found what became of the update the last one
    /// stopped sending (`resume`, a [`Resume`] name): the newest entry, the
    /// evaluation that decided it, written with no outcome at the stop,
    /// gets the outcome the application shows, as `explain` would have
    /// said had the answer come. An update that never took effect keeps
    /// [`Outcome::Unknown`] ("no answer"): it was neither accepted nor
    /// refused.
    fn amend_unsent_answer(&mut self, application: &str, resume: &str) {
        self.amend_newest(application, |entry| {
            let kpu = entry
                .decision
                .scale_to_kpu
                .filter(|_| entry.outcome == Outcome::Unknown)?;
            match resume {
                Resume::FOLLOW | Resume::FINISHED => Some(Outcome::Accepted { kpu }),
                Resume::FAILED => Some(Outcome::Failed {
                    class: crate::controller::Failure::UpdateFailed.as_str().to_owned(),
                    message: "the agent stopped before the answer; restarted, it found the \
                              update applied and the application not running"
                        .to_owned(),
                }),
                _ => None,
            }
        });
    }

    /// An accepted update that then failed (it ended in another status or
    /// at another size, or the job was replaced under it): the newest entry, the evaluation that decided
    /// it, says so, where it said the update was accepted and `explain`
    /// showed a rescale that never came to be.
    fn amend_accepted(&mut self, application: &str, class: &str, message: &str) {
        self.amend_newest(application, |entry| match entry.outcome {
            Outcome::Accepted { .. } => Some(Outcome::Failed {
                class: class.to_owned(),
                message: format!("accepted, then: {message}"),
            }),
            _ => None,
        });
    }

    /// Rewrites the outcome of `application`'s newest entry to what
    /// `change` makes of the entry, if anything. A rewrite that fails is
    /// owed ([`Files::owed_rewrites`]): the next append makes it.
    fn amend_newest(&mut self, application: &str, change: impl FnOnce(&Entry) -> Option<Outcome>) {
        let path = self.path(application);
        let text = match self.owed_rewrites.get(application) {
            Some(owed) => owed.clone(),
            None => match read_text(&path) {
                Ok(text) => text,
                Err(_) => return,
            },
        };
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let Some(mut entry) = lines
            .last()
            .and_then(|last| serde_json::from_str::<Entry>(last).ok())
        else {
            return;
        };
        let Some(outcome) = change(&entry) else {
            return;
        };
        entry.outcome = outcome;
        let Ok(line) = serde_json::to_string(&entry) else {
            return;
        };
        lines.pop();
        lines.push(&line);
        let mut text = lines.join("\n");
        text.push('\n');
        self.rewrite(application, text);
    }

    /// Replaces `application`'s history with `text` (its lines, each
    /// ended); what cannot be written is owed to the next append.
    fn rewrite(&mut self, application: &str, text: String) {
        let path = self.path(application);
        let written = replace(&path, text.as_bytes());
        if written.is_ok() {
            self.owed_rewrites.remove(application);
            self.lines
                .insert(application.to_owned(), text.matches('\n').count());
        } else {
            self.owed_rewrites.insert(application.to_owned(), text);
        }
        self.written(
            written,
            "Cannot write the decision history.",
            application,
            &path,
        );
    }

    /// Records the failure `class` of `application` at `at_ms`: a new
    /// one, or one more of the same class in a row.
    fn note_failure(&mut self, application: &str, at_ms: i64, class: &str, message: &str) {
        let failure = match self.failures.remove(application) {
            Some(same) if same.class == class => CurrentFailure {
                message: message.to_owned(),
                last_ms: at_ms,
                count: same.count.saturating_add(1),
                ..same
            },
            _ => CurrentFailure {
                class: class.to_owned(),
                message: message.to_owned(),
                since_ms: at_ms,
                last_ms: at_ms,
                count: 1,
            },
        };
        let path = self.failure_path(application);
        let written = serde_json::to_vec_pretty(&failure)
            .map_err(std::io::Error::other)
            .and_then(|bytes| replace(&path, &bytes));
        self.written(
            written,
            "Cannot write the current failure record.",
            application,
            &path,
        );
        self.failures.insert(application.to_owned(), failure);
    }

    /// Ends the failure of `application`, if a record of one exists.
    fn clear_failure(&mut self, application: &str) {
        self.failures.remove(application);
        self.update_failing.remove(application);
        self.remove_failure_record(application);
    }

    /// Removes `application`'s failure record; one that cannot be removed
    /// is owed, and removed at the next write that succeeds (else
    /// `status` would go on showing a failure that ended).
    fn remove_failure_record(&mut self, application: &str) {
        let path = self.failure_path(application);
        let removed = match std::fs::remove_file(&path) {
            // Nothing there, nothing written: no sign the folder is
            // writable.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            removed => removed,
        };
        if removed.is_err() {
            self.owed_removals.insert(application.to_owned());
        }
        self.written(
            removed,
            "Cannot remove the current failure record.",
            application,
            &path,
        );
    }

    fn failure_path(&self, application: &str) -> PathBuf {
        failure_file(&self.dir, application)
    }

    fn quarantine_path(&self, application: &str) -> PathBuf {
        quarantine_file(&self.dir, application)
    }

    fn path(&self, application: &str) -> PathBuf {
        self.dir.join(format!("{application}.jsonl"))
    }

    fn append(&mut self, application: &str, entry: &Entry) {
        let line = match serde_json::to_string(entry) {
            Ok(line) => line + "\n",
            Err(error) => {
                warn!(message = "Cannot encode a history entry.", application = %application, %error);
                return;
            }
        };
        let path = self.path(application);
        if let Some(owed) = self.owed_rewrites.get(application) {
            // An amendment owed: the whole file, amended, with this entry
            // (trimmed to the bound); if that still cannot be written, the
            // entry is appended as it would be, and the whole stays owed.
            let (text, _) = self.with_line(owed, &line, self.bound);
            self.rewrite(application, text);
            if !self.owed_rewrites.contains_key(application) {
                return;
            }
        }
        let (lines, torn) = match self.lines.get(application) {
            Some(n) => (*n, false),
            None => crate::state::read_no_follow(&path).map_or((0, false), |b| {
                // A line cut short (a crash while appending) must not
                // swallow the next one.
                let torn = b.last().is_some_and(|c| *c != b'\n');
                (b.iter().filter(|c| **c == b'\n').count(), torn)
            }),
        };
        let line = if torn { format!("\n{line}") } else { line };
        let written = if lines < self.bound {
            append_line(&path, &line).map(|()| lines + 1)
        } else {
            // On a nearly full disk the trimmed copy may not fit where the
            // line does: the line is appended, and the trim made by a
            // later append (the file stays longer than the bound meanwhile).
            self.trim_and_append(&path, &line)
                .or_else(|_| append_line(&path, &line).map(|()| lines + 1))
        };
        match written {
            Ok(n) => {
                self.lines.insert(application.to_owned(), n);
                self.written(
                    Ok(()),
                    "Cannot write the decision history.",
                    application,
                    &path,
                );
            }
            Err(error) => {
                self.lines.remove(application);
                self.written(
                    Err(error),
                    "Cannot write the decision history.",
                    application,
                    &path,
                );
            }
        }
    }

    /// Rewrites `path` with its newest lines and `line`, keeping nine
    /// tenths of the bound, atomically; returns the lines now in it. A
    /// history that cannot be read (a disk error, a link planted there) is
    /// not rewritten: the error is returned, and the caller appends.
    fn trim_and_append(&self, path: &Path, line: &str) -> std::io::Result<usize> {
        let old = match read_text(path) {
            Ok(text) => text,
            // Removed since it was counted: the line starts it again.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            // What it holds is not known: read as empty, the rewrite would
            // replace the whole history with this one line.
            Err(error) => return Err(error),
        };
        let (text, kept) = self.with_line(&old, line, 0);
        replace(path, text.as_bytes())?;
        Ok(kept)
    }

    /// A history's text `old` with `line` appended, each line ended, and
    /// how many lines that is: when there are more than `limit`, only the
    /// newest [`Files::bound`] less a tenth are kept (room for a tenth more
    /// before the next trim).
    fn with_line(&self, old: &str, line: &str, limit: usize) -> (String, usize) {
        let keep = (self.bound - self.bound / 10).max(1);
        let mut lines: Vec<&str> = old.lines().filter(|l| !l.is_empty()).collect();
        lines.push(line.trim_end());
        let start = if lines.len() > limit {
            lines.len().saturating_sub(keep)
        } else {
            0
        };
        let mut text = lines[start..].join("\n");
        text.push('\n');
        (text, lines.len() - start)
    }

    fn save_quarantines(&mut self, application: &str) {
        let list = self
            .quarantines
            .get(application)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let path = self.quarantine_path(application);
        let written = serde_json::to_vec_pretty(list)
            .map_err(std::io::Error::other)
            .and_then(|bytes| replace(&path, &bytes));
        self.written(
            written,
            "Cannot write the plugin quarantine record.",
            application,
            &path,
        );
    }

    /// Reports what came of a write to `path` for `application`: a
    /// failure (`what` says which file) is logged when the folder starts
    /// failing, when the error changes and every
    /// [`REMINDER_INTERVAL`](super::failing::REMINDER_INTERVAL), not at
    /// every entry; the second write in a row that goes through after
    /// failures says the folder is writable again (since the first). A
    /// full or read-only state folder would otherwise repeat the same
    /// warning at every evaluation.
    fn written(
        &mut self,
        written: std::io::Result<()>,
        what: &'static str,
        application: &str,
        path: &Path,
    ) {
        let now_ms = self.now_ms;
        let error = match written {
            Ok(()) => {
                // A write went through: the removals owed are tried again.
                for owed in std::mem::take(&mut self.owed_removals) {
                    if !self.failures.contains_key(&owed) {
                        self.remove_failure_record(&owed);
                    }
                }
                if self.failing.since_ms().is_none() {
                    return;
                }
                let Some(first_ok_ms) = self.first_ok_ms else {
                    // One write in a row: wait for another.
                    self.first_ok_ms = Some(now_ms);
                    return;
                };
                self.first_ok_ms = None;
                if let Some(recovered) = self.failing.succeeded(first_ok_ms) {
                    info!(
                        message = %format!(
                            "History folder writable again after {}.",
                            super::failing::duration_words(recovered.failed_ms)
                        ),
                        path = %self.dir.display(),
                        failing_secs = recovered.failed_ms / 1000,
                    );
                }
                return;
            }
            Err(error) => error,
        };
        // The error alone, not the file: the history, failure and
        // quarantine files fail together when the folder does.
        self.first_ok_ms = None;
        match self.failing.failed(now_ms, &error.to_string()) {
            Tell::Started => warn!(
                message = what,
                application = %application,
                path = %path.display(),
                %error,
                note = "said again only if the error changes, or in 10 min if it lasts",
            ),
            Tell::CauseChanged | Tell::Reminder => warn!(
                message = "The history folder still cannot be written; no decision history or status record is kept.",
                application = %application,
                path = %path.display(),
                failing_for = %super::failing::duration_words(
                    now_ms.saturating_sub(self.failing.since_ms().unwrap_or(now_ms))
                ),
                %error,
            ),
            Tell::Quiet => {}
        }
    }
}

/// Options for the history files the agent appends to: 0600, never
/// through a symbolic link (`O_NOFOLLOW`: a link planted in the folder
/// would have the agent append to a file elsewhere), and non-blocking, so
/// that a FIFO planted there is refused at once
/// ([`crate::state::open_regular`]) instead of holding the history's
/// thread for good.
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options
}

/// Runs `write` on `path`; if its folder is gone (an operator's `rm -rf`
/// of the state folder, a volume mounted over it), creates the folder
/// again, 0700, and runs it once more, so that the history comes back by
/// itself instead of failing at every entry until a restart.
fn in_folder(path: &Path, write: impl Fn() -> std::io::Result<()>) -> std::io::Result<()> {
    match write() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(folder) = path.parent().filter(|folder| !folder.is_dir()) else {
                return Err(e);
            };
            create_private_dir(folder)?;
            warn!(
                message = "The history folder was gone; created it again.",
                path = %folder.display(),
            );
            write()
        }
        written => written,
    }
}

/// Appends `line` in one write, so that a reader sees it whole or not at
/// all in practice (and skips it if not).
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    in_folder(path, || {
        let mut file =
            crate::state::open_regular(private_options().append(true).create(true), path)?;
        file.write_all(line.as_bytes())
    })
}

/// Replaces `path` with `bytes`: written beside it, then renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    in_folder(path, || replace_in_place(path, bytes))
}

fn replace_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    // Made new, as the journal's temporary file is: no link is followed
    // to truncate another file.
    crate::state::remove_stale(&temp)?;
    let mut file: File = crate::state::private_file(&temp, crate::state::Create::New)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        // A copy cut short by a full disk would keep its space until the
        // next rewrite, and fail the appends meanwhile.
        drop(file);
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Why the history or the journal of an application could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The application is not in the configuration.
    #[error("no application {name:?} in the configuration; configured: {configured}")]
    UnknownApplication {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated, or `none`.
        configured: String,
    },
    /// A file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The state file `path` (a quarantine or failure record) as `T`: `None`
/// when it does not exist, and when it cannot be read or parsed, which
/// is said in `unreadable` (naming the file), not taken for none.
fn read_state_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    unreadable: &mut Vec<String>,
) -> Option<T> {
    let bytes = match crate::state::read_no_follow(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            unreadable.push(format!("{}: {error}", path.display()));
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            unreadable.push(format!("{}: {error}", path.display()));
            None
        }
    }
}

/// The newest `last` entries of `application` in `dir` (all of them if
/// `None`), newest last; no file is no entry.
pub fn read(dir: &Path, application: &str, last: Option<usize>) -> Result<Vec<Entry>, ReadError> {
    read_counted(dir, application, last).map(|(entries, _)| entries)
}

/// [`read`], and how many of the lines read could not be read as an
/// entry (damaged, or written by a newer flinkscale): they are left out.
///
/// The file is read from its end, a chunk at a time, only as far back as
/// the `last` entries go: the agent bounds a history to its newest
/// [`DEFAULT_BOUND`] entries, but a file grown by hand or by another
/// program would otherwise be read whole by every `status` and `/status`
/// (a 520 MB file took 14.6 s and 2.4 GB). The unreadable lines counted
/// are those among the lines read.
fn read_counted(
    dir: &Path,
    application: &str,
    last: Option<usize>,
) -> Result<(Vec<Entry>, usize), ReadError> {
    let path = dir.join(format!("{application}.jsonl"));
    let mut file = match crate::state::open_no_follow(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => return Err(ReadError::Io { path, source }),
    };
    // A file cut short while it is read (truncated in place by hand or by
    // a log rotation's copytruncate; the agent itself replaces it whole)
    // ends before a chunk does: read it again from its new end.
    let mut tries = 0;
    loop {
        match read_tail(&mut file, last.unwrap_or(usize::MAX)) {
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && tries < 3 => {
                tries += 1;
            }
            read => return read.map_err(|source| ReadError::Io { path, source }),
        }
    }
}

/// Bytes read at a time by [`read_tail`].
const TAIL_CHUNK: usize = 64 * 1024;

/// The longest line [`read_tail`] reads: an entry is a few kilobytes (its
/// texts are cut to 512 bytes); a longer line is counted unreadable
/// without being kept, so that a file of one huge line is neither held in
/// memory nor copied again at each chunk.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The newest `want` entries of the history `file`, newest last, and how
/// many of the lines read on the way could not be read as an entry;
/// reading backwards from the end, [`TAIL_CHUNK`] bytes at a time, and
/// stopping once `want` entries are found. Bytes that are not UTF-8 (a
/// damaged disk, a hand edit) spoil only their own line, which then does
/// not parse and is counted like any other damaged line.
fn read_tail(file: &mut File, want: usize) -> std::io::Result<(Vec<Entry>, usize)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut entries = Vec::new();
    let mut unreadable = 0;
    // A line, or `None` for one longer than MAX_LINE_BYTES.
    let mut take = |line: Option<&[u8]>, entries: &mut Vec<Entry>| {
        let Some(line) = line else {
            unreadable += 1;
            return;
        };
        let line = String::from_utf8_lossy(line);
        if line.trim().is_empty() {
            return;
        }
        match serde_json::from_str(&line) {
            Ok(entry) => entries.push(entry),
            Err(_) => unreadable += 1,
        }
    };
    let mut pos = file.seek(SeekFrom::End(0))?;
    // The start of a line that began before `pos`, not yet taken, unless
    // that line is already too long (`overlong`).
    let mut carry: Vec<u8> = Vec::new();
    let mut overlong = false;
    while entries.len() < want && pos > 0 {
        let n = usize::try_from(pos).map_or(TAIL_CHUNK, |p| p.min(TAIL_CHUNK));
        pos -= n as u64;
        let mut chunk = vec![0; n];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&carry);
        let mut lines = chunk.rsplit(|b| *b == b'\n').peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                // The chunk's first line may have begun before it.
                overlong |= line.len() > MAX_LINE_BYTES;
                carry = if overlong { Vec::new() } else { line.to_vec() };
                break;
            }
            let readable = !std::mem::take(&mut overlong) && line.len() <= MAX_LINE_BYTES;
            take(readable.then_some(line), &mut entries);
            if entries.len() == want {
                break;
            }
        }
    }
    if entries.len() < want && pos == 0 {
        take((!overlong).then_some(&carry[..]), &mut entries);
    }
    entries.reverse();
    Ok((entries, unreadable))
}

/// A history file's text. Bytes that are not UTF-8 (a damaged disk, a
/// hand edit) spoil only their own line, which then does not parse and
/// is skipped like any other damaged line: reading the file as a string
/// would fail it whole, and a rewrite would drop every other line.
fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = crate::state::read_no_follow(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// What `explain` reports (`--json` and `GET /explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The application.
    pub application: String,
    /// Its target (`msf` or `flink`), whose words the text uses.
    pub target: Words,
    /// Its recent evaluations, newest last.
    pub entries: Vec<Entry>,
    /// Lines of its history that could not be read as an evaluation
    /// (damaged, or written by a newer flinkscale), left out of `entries`:
    /// those among the lines read, from the newest back to the oldest of
    /// `entries` (all of them when fewer entries were found than asked
    /// for); absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub unreadable_lines: usize,
}

/// Whether `n` is 0 (a count left out of the JSON then).
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `application`'s quarantines, in the history folder `dir`.
fn quarantine_file(dir: &Path, application: &str) -> PathBuf {
    dir.join(format!("{application}.quarantine.json"))
}

/// The failure `application` is in now, in the history folder `dir`.
fn failure_file(dir: &Path, application: &str) -> PathBuf {
    dir.join(format!("{application}.failure.json"))
}

/// The explanation of `application`'s last `last` evaluations, if it is one
/// of `configured` (each application's name and its target's words).
pub fn explain(
    state_dir: &Path,
    configured: &[(String, Words)],
    application: &str,
    last: Option<usize>,
) -> Result<Explanation, ReadError> {
    let Some((_, words)) = configured.iter().find(|(c, _)| c == application) else {
        let names: Vec<&str> = configured.iter().map(|(c, _)| c.as_str()).collect();
        return Err(ReadError::UnknownApplication {
            name: application.to_owned(),
            configured: if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
        });
    };
    let (entries, unreadable_lines) = read_counted(&dir(state_dir), application, last)?;
    Ok(Explanation {
        application: application.to_owned(),
        target: *words,
        entries,
        unreadable_lines,
    })
}

/// `explain` as text: one block per evaluation, newest last.
pub fn explain_text(explanation: &Explanation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let words = explanation.target;
    const WHY: &str = "(damaged, or written by a newer flinkscale)";
    let unreadable = match explanation.unreadable_lines {
        0 => None,
        1 => Some(format!(
            "1 line of the history could not be read {WHY} and is left out"
        )),
        n => Some(format!(
            "{n} lines of the history could not be read {WHY} and are left out"
        )),
    };
    if explanation.entries.is_empty() {
        let _ = match &unreadable {
            Some(said) => writeln!(
                out,
                "application {:?}: no decision could be read: {said}",
                explanation.application
            ),
            None => writeln!(
                out,
                "application {:?}: no decision recorded yet (the history is empty)",
                explanation.application
            ),
        };
        return out;
    }
    for (i, e) in explanation.entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{}  {}  {}  policy {}",
            iso(e.at_ms),
            explanation.application,
            words.capacity(e.kpu),
            one_line(&e.policy)
        );
        let metrics: Vec<String> = e
            .metrics
            .iter()
            .map(|m| match m.value {
                Some(v) => format!("{} {}", m.id, number(v)),
                None => format!("{} (no data)", m.id),
            })
            .collect();
        // Names and states come from a file: one line each, control
        // characters escaped, as the reason is.
        let _ = writeln!(out, "  metrics:  {}", one_line(&list(&metrics)));
        let alarms: Vec<String> = e
            .alarms
            .iter()
            .map(|a| {
                format!(
                    "{} {} for {} s",
                    a.name,
                    a.state,
                    e.at_ms.saturating_sub(a.since_ms).max(0) / 1000
                )
            })
            .collect();
        let _ = writeln!(out, "  alarms:   {}", one_line(&list(&alarms)));
        let signals: Vec<String> = e
            .signals
            .iter()
            .map(|s| format!("{} {}", s.name, number(s.value)))
            .collect();
        let _ = writeln!(out, "  signals:  {}", one_line(&list(&signals)));
        if !e.dropped_signals.is_empty() {
            let dropped: Vec<String> = e
                .dropped_signals
                .iter()
                .map(|s| format!("{} {} from {}", s.name, s.value, one_line(&s.plugin)))
                .collect();
            let _ = writeln!(
                out,
                "  dropped:  {} (not finite numbers)",
                one_line(&list(&dropped))
            );
        }
        let decision = match e.decision.scale_to_kpu {
            Some(kpu) => format!("scale to {}", words.capacity(kpu)),
            None => "hold".to_owned(),
        };
        let _ = writeln!(
            out,
            "  decision: {decision}: {}{}",
            one_line(&e.decision.reason),
            e.decision.asked_later()
        );
        let _ = writeln!(out, "  done:     {}", one_line(&e.outcome.said(words)));
    }
    if let Some(said) = unreadable {
        let _ = writeln!(out, "\nnote: {said}");
    }
    out
}

/// What `status` reports (`--json` and `GET /status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// When it was read (ms since the epoch); the `*_secs` fields count
    /// from here.
    pub now_ms: i64,
    /// One per configured application, sorted by name.
    pub applications: Vec<AppStatus>,
}

/// One application's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppStatus {
    /// The application.
    pub application: String,
    /// Its target (`msf` or `flink`), whose words the text uses.
    pub target: Words,
    /// The journal's phase (`idle`, `sending`, `updating`, `grace`, ...);
    /// `none` before the agent ever ran it (no journal); `unreadable` when
    /// its journal is there but cannot be read (`journal_error` says why).
    pub phase: String,
    /// Who holds the journal's lock now: an acting agent does while it
    /// runs, so with `held` false the phase is where the last one left it,
    /// and nothing follows it until an agent starts. Absent where that
    /// cannot be told (the lock file cannot be opened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_lock: Option<JournalLock>,
    /// The KPU last seen (at the last evaluation, or the end of the last
    /// rescale).
    pub kpu: Option<u32>,
    /// The KPU an update in flight asked for.
    pub updating_to_kpu: Option<u32>,
    /// In phase `decided`, the KPU decided and not sent (the application
    /// was not RUNNING): the next evaluation decides again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_kpu: Option<u32>,
    /// The agent started without a journal and no read has found the
    /// application running yet: the first that does holds a grace period
    /// if its last update is recent. Absent while false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh_start: bool,
    /// The highest KPU decisions may ask for, when the application's KPU quota
    /// refused an update.
    pub ceiling_kpu: Option<u32>,
    /// The KPU the application's KPU quota refused, with the ceiling.
    pub ceiling_refused_kpu: Option<u32>,
    /// When the ceiling ends at the latest (ms since the epoch): an hour
    /// after the refusal, the limit may have been raised. It ends sooner
    /// once the application runs at the refused KPU.
    pub ceiling_until_ms: Option<i64>,
    /// A size not asked for again until `until_ms` (AWS refused it as
    /// invalid, or its update was rolled back: `rolled_back_to` then says
    /// to what, and sizes beyond it the same way are held too), as the
    /// journal keeps it; absent when there is none or it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<crate::state::RefusedTarget>,
    /// End of the grace period (ms since the epoch), in grace.
    pub grace_until_ms: Option<i64>,
    /// Seconds of grace left.
    pub grace_left_secs: Option<i64>,
    /// Why the grace period is held, when it follows an update the agent
    /// did not make (`grace period after another writer's update`, ...):
    /// in phase `grace`, and in phase `foreign` (the update is followed,
    /// the grace period comes after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_after: Option<String>,
    /// Plugins in quarantine.
    pub quarantine: Vec<Quarantine>,
    /// The failure it is in now (since its last evaluation or accepted
    /// update), if any.
    pub failure: Option<CurrentFailure>,
    /// The decision whose update is being sent: journaled before the call,
    /// its answer not known yet, so the history (which records an
    /// evaluation with what became of it) does not have it; `last` is then
    /// the evaluation before it. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending: Option<Sending>,
    /// The last evaluation recorded, if any.
    pub last: Option<Entry>,
    /// Seconds since the last evaluation.
    pub last_age_secs: Option<i64>,
    /// A journal that could not be read, and why.
    pub journal_error: Option<String>,
    /// A decision history that could not be read, and why (`last` is then
    /// unknown, not empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
    /// Lines of the decision history read on the way to `last` that could
    /// not be read as an entry (damaged, or written by a newer
    /// flinkscale): left out, so `last` may not be the newest decision.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_unreadable_lines: usize,
    /// Files of the application's state beside its history (quarantine,
    /// failure) that exist but could not be read, and why: what they
    /// would say is unknown, not none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// A journal the running agent cannot save, since when and why: it
    /// sends no update meanwhile. Only `GET /status` knows it (from the
    /// agent's memory: the folder that would hold a record of it is the
    /// one that cannot be written); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_failing: Option<super::prometheus::JournalTrouble>,
    /// Whether the application's `mode` is `"paused"`: it has no
    /// controller, so nothing is evaluated or followed, and `phase` is
    /// where its journal was when it was paused (a controller resumes from
    /// there once the mode changes), not where the application is now.
    /// Absent when not paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Whether the agent stands down for the application: another writer
    /// kept undoing its rescales, and no update is sent until a
    /// configuration reload (see [`crate::controller::fight`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stood_down: Option<StandDown>,
    /// How many signals (`signals` and `dropped_signals`) of `last` were
    /// left out of a `GET /status` answer that would have been larger than
    /// [`crate::telemetry::http::MAX_STATUS_BYTES`] with them
    /// ([`Status::without_signals`]); `GET /explain` has them. Absent when
    /// none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signals_left_out: usize,
}

/// A decision being sent, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sending {
    /// The KPU asked for.
    pub scale_to_kpu: u32,
    /// The KPU it was decided at.
    pub from_kpu: u32,
    /// The policy's reason.
    pub reason: String,
    /// When it was decided and the update about to be sent (ms since the
    /// epoch).
    pub at_ms: i64,
}

/// A stand-down, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandDown {
    /// Since when (ms since the epoch).
    pub since_ms: i64,
    /// The other writer's updates that made it.
    pub overrides: Vec<crate::state::Override>,
}

/// Reads the status of each of `applications` (its name and its target's
/// words) from `state_dir` at `now_ms`.
pub fn status(state_dir: &Path, applications: &[(String, Words)], now_ms: i64) -> Status {
    let history = dir(state_dir);
    let locks = LockTable::read();
    let mut names = applications.to_vec();
    names.sort();
    let applications = names
        .iter()
        .map(|(name, words)| {
            let (journal, journal_error) = read_journal(state_dir, name);
            let phase = journal.as_ref().map(|j| &j.record.phase);
            let limit = journal.as_ref().and_then(|j| j.record.kpu_limit);
            let (last, history_unreadable_lines, history_error) =
                match read_counted(&history, name, Some(1)) {
                    Ok((mut entries, unreadable)) => (entries.pop(), unreadable, None),
                    Err(error) => (None, 0, Some(error.to_string())),
                };
            let grace_until_ms = match phase {
                Some(Phase::Grace { until_ms, .. }) => Some(*until_ms),
                _ => None,
            };
            let grace_after = match phase {
                Some(Phase::Grace { after, .. }) => after.clone(),
                Some(Phase::Foreign { after, .. }) => Some(after.clone()),
                _ => None,
            };
            let kpu = match phase {
                Some(Phase::Grace { kpu, .. }) => Some(*kpu),
                _ => last.as_ref().map(|e| e.kpu),
            };
            // An evaluation's entry is written once its update is answered
            // (or the agent stops): one dated from the update on is its own,
            // and so is one without an outcome for the same decision (the
            // entry a stop wrote for the update it left unanswered, dated
            // from the evaluation, just before the update).
            let own = |e: &Entry, update: &crate::state::Update| {
                e.at_ms >= update.started_ms
                    || (e.outcome == Outcome::Unknown
                        && e.kpu == update.from_kpu
                        && e.decision.scale_to_kpu == Some(update.target_kpu)
                        && e.decision.reason == update.reason)
            };
            let sending = match phase {
                Some(Phase::Sending { update })
                    if last.as_ref().is_none_or(|e| !own(e, update)) =>
                {
                    Some(Sending {
                        scale_to_kpu: update.target_kpu,
                        from_kpu: update.from_kpu,
                        reason: update.reason.clone(),
                        at_ms: update.started_ms,
                    })
                }
                _ => None,
            };
            let mut unreadable = Vec::new();
            let quarantine = read_state_file(&quarantine_file(&history, name), &mut unreadable)
                .unwrap_or_default();
            let failure = read_state_file(&failure_file(&history, name), &mut unreadable);
            AppStatus {
                application: name.clone(),
                target: *words,
                // A journal there that cannot be read is no sign that the
                // agent never ran: its phase is not known.
                phase: match (phase, &journal_error) {
                    (Some(phase), _) => phase.name(),
                    (None, Some(_)) => "unreadable",
                    (None, None) => "none",
                }
                .to_owned(),
                journal_lock: locks.holder(&crate::state::lock_path(state_dir, name)),
                kpu,
                updating_to_kpu: phase.and_then(Phase::update).map(|u| u.target_kpu),
                decided_kpu: match phase {
                    Some(Phase::Decided { target_kpu, .. }) => Some(*target_kpu),
                    _ => None,
                },
                fresh_start: journal.as_ref().is_some_and(|j| j.record.fresh_start),
                ceiling_kpu: limit.map(|l| l.ceiling()),
                ceiling_refused_kpu: limit.map(|l| l.refused_kpu),
                ceiling_until_ms: limit
                    .as_ref()
                    .map(crate::controller::machine::limit_until_ms),
                // The journal keeps an ended hold until something replaces
                // it: only one in force is shown.
                refused: journal
                    .as_ref()
                    .and_then(|j| j.record.refused)
                    .filter(|r| r.until_ms > now_ms),
                grace_until_ms,
                grace_left_secs: grace_until_ms
                    .map(|until| (until.saturating_sub(now_ms) / 1000).max(0)),
                grace_after,
                quarantine,
                failure,
                // The history is a file: its times may be anything.
                last_age_secs: last
                    .as_ref()
                    .map(|e| (now_ms.saturating_sub(e.at_ms) / 1000).max(0)),
                sending,
                last,
                journal_error,
                history_error,
                history_unreadable_lines,
                unreadable,
                journal_failing: None,
                paused: false,
                stood_down: journal.as_ref().and_then(|j| {
                    let fight = &j.record.fight;
                    fight.stood_down_ms.map(|since_ms| StandDown {
                        since_ms,
                        overrides: fight.overrides.clone(),
                    })
                }),
                signals_left_out: 0,
            }
        })
        .collect();
    Status {
        now_ms,
        applications,
    }
}

impl Status {
    /// Leaves out the signals of each application's last evaluation,
    /// counting them in its `signals_left_out`: an interpreter may give
    /// hundreds, which make the bulk of a large status; what is left is
    /// bounded by the configuration (its applications, metrics, alarms).
    pub fn without_signals(&mut self) {
        for app in &mut self.applications {
            if let Some(last) = &mut app.last {
                app.signals_left_out += last.signals.len() + last.dropped_signals.len();
                last.signals.clear();
                last.dropped_signals.clear();
            }
        }
    }
}

/// Marks the applications of `status` named in `paused` (their `mode` is
/// `"paused"`), which the files cannot tell.
pub fn mark_paused(status: &mut Status, paused: &[String]) {
    for app in &mut status.applications {
        app.paused = paused.contains(&app.application);
    }
}

/// The journal, read without its lock (the agent may hold it): the agent
/// replaces it by renaming, so the file read is always a whole record.
/// What the agent refuses ([`crate::state::parse_journal`]: a newer
/// format, another application's, a counter or time out of range) is an
/// error here too, in the agent's words.
fn read_journal(state_dir: &Path, application: &str) -> (Option<JournalFile>, Option<String>) {
    let path = state_dir.join(format!("{application}.json"));
    match crate::state::read_no_follow(&path) {
        Ok(bytes) => match crate::state::parse_journal(&path, application, &bytes) {
            Ok(journal) => (Some(journal), None),
            Err(error) => (None, Some(error.to_string())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(error) => (None, Some(format!("{}: {error}", path.display()))),
    }
}

/// `status` as text: one block per application.
pub fn status_text(status: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, app) in status.applications.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let words = app.target;
        let _ = writeln!(out, "application {:?}", app.application);
        let mut phase = app.phase.clone();
        if let Some(kpu) = app.updating_to_kpu {
            let _ = write!(phase, " (to {})", words.capacity(kpu));
        }
        if let Some(kpu) = app.decided_kpu {
            let _ = write!(
                phase,
                " ({} decided, not sent: the {} was not running; the next evaluation decides again)",
                words.capacity(kpu),
                words.thing()
            );
        }
        if app.fresh_start {
            let _ = write!(
                phase,
                " (started without a journal: the first read that finds the {} running holds a grace period if its last update is recent)",
                words.thing()
            );
        }
        match (app.grace_left_secs, app.grace_until_ms) {
            // The journal keeps the phase until the next evaluation
            // replaces it: an agent stopped (or not yet at its next
            // evaluation) left a grace period that is over.
            (Some(_), Some(until)) if until <= status.now_ms => {
                let _ = write!(
                    phase,
                    " (over {} s ago: the next evaluation may act)",
                    (status.now_ms - until) / 1000
                );
            }
            (Some(left), _) => {
                let _ = write!(phase, " ({left} s of grace left)");
            }
            (None, _) => {}
        }
        if app.phase == "foreign" {
            // What comes after the update, and why (a restart streak's
            // warning too), when the journal says.
            let then = app.grace_after.as_deref().map_or_else(
                || "a grace period comes after it".to_owned(),
                |after| format!("then the {}", one_line(after)),
            );
            let _ = write!(
                phase,
                " (a restart or update this agent did not make is followed while the {} is busy; {then})",
                words.thing()
            );
        } else if let Some(after) = &app.grace_after {
            let _ = write!(phase, ": {}", one_line(after));
        }
        if app.paused {
            phase = if matches!(app.phase.as_str(), "none" | "idle" | "unreadable") {
                "paused (mode = \"paused\": not evaluated)".to_owned()
            } else {
                format!(
                    "paused (mode = \"paused\": not evaluated, nothing followed); its journal was at {phase} when it was paused, and is resumed from there once the mode changes"
                )
            };
        }
        let _ = writeln!(out, "  phase:      {phase}");
        if let Some(lock) = &app.journal_lock {
            let _ = writeln!(out, "  agent:      {}", agent_words(app, lock));
        }
        if let Some(stand_down) = &app.stood_down {
            let _ = writeln!(
                out,
                "  stood down: since {} ({} s): another writer undid this agent's rescales: {}; no update is sent (decisions are recorded): stop the other writer, then resume it (`flinkscale reload --resume APPLICATION`)",
                iso(stand_down.since_ms),
                (status.now_ms.saturating_sub(stand_down.since_ms) / 1000).max(0),
                crate::controller::fight::describe_overrides(&stand_down.overrides, words)
            );
        }
        // `kpu:` for MSF as always; `parallelism:` for a Flink job.
        let label = format!("{}:", words.unit().to_lowercase());
        let _ = writeln!(
            out,
            "  {label:<11} {}",
            app.kpu.map_or("unknown".to_owned(), |k| k.to_string())
        );
        let _ = writeln!(
            out,
            "  ceiling:    {}",
            match (
                app.ceiling_kpu,
                app.ceiling_refused_kpu,
                app.ceiling_until_ms
            ) {
                (Some(k), Some(refused), Some(until)) if until > status.now_ms => format!(
                    "{} ({} refused {}); until {} at the latest, or once the {} runs at {}",
                    words.capacity(k),
                    words.limit(),
                    words.capacity(refused),
                    iso(until),
                    words.thing(),
                    words.capacity(refused)
                ),
                (Some(k), Some(refused), Some(_)) => format!(
                    "{} ({} refused {}); its hour is over: lifted at the next evaluation",
                    words.capacity(k),
                    words.limit(),
                    words.capacity(refused)
                ),
                (Some(k), ..) => format!("{} ({})", words.capacity(k), words.limit()),
                (None, ..) => format!("none ({})", words.limit_never_met()),
            }
        );
        if let Some(refused) = app.refused.filter(|r| r.until_ms > status.now_ms) {
            let (sizes, why) = match refused.rolled_back_to {
                Some(from) => (
                    match refused.kpu.cmp(&from) {
                        std::cmp::Ordering::Greater => {
                            format!("{} or more", words.capacity(refused.kpu))
                        }
                        std::cmp::Ordering::Less => {
                            format!("{} or less", words.capacity(refused.kpu))
                        }
                        std::cmp::Ordering::Equal => words.capacity(refused.kpu),
                    },
                    format!(
                        "the update to it was rolled back to {} (it did not start)",
                        words.capacity(from)
                    ),
                ),
                None => (
                    words.capacity(refused.kpu),
                    format!("{} refused it as invalid", words.rescale_call()),
                ),
            };
            let _ = writeln!(
                out,
                "  held:       {sizes} not asked for until {} ({} s): {why}",
                iso(refused.until_ms),
                refused.until_ms.saturating_sub(status.now_ms) / 1000
            );
        }
        let quarantine: Vec<String> = app
            .quarantine
            .iter()
            .map(|q| {
                let left = q.until_ms.saturating_sub(status.now_ms) / 1000;
                if left > 0 {
                    format!("{} for another {left} s", one_line(&q.plugin))
                } else {
                    format!("{} (back-off over, retrying)", one_line(&q.plugin))
                }
            })
            .collect();
        let _ = writeln!(out, "  quarantine: {}", list(&quarantine));
        if let Some(f) = &app.failure {
            let times = if f.count == 1 {
                "once".to_owned()
            } else {
                format!("{} times", f.count)
            };
            let _ = writeln!(
                out,
                "  failing:    {} since {} ({} s, {times}, last {} s ago): {}",
                one_line(&f.class),
                iso(f.since_ms),
                (status.now_ms.saturating_sub(f.since_ms) / 1000).max(0),
                (status.now_ms.saturating_sub(f.last_ms) / 1000).max(0),
                one_line(&f.message)
            );
        }
        if let Some(sending) = &app.sending {
            let _ = writeln!(
                out,
                "  last:       scale to {} {} s ago: {}; being sent: {}'s answer is not known yet",
                words.capacity(sending.scale_to_kpu),
                (status.now_ms.saturating_sub(sending.at_ms) / 1000).max(0),
                one_line(&sending.reason),
                words.rescale_call()
            );
        }
        // With a decision being sent, the one recorded before it.
        let label = if app.sending.is_some() {
            "before:"
        } else {
            "last:"
        };
        match (&app.last, app.last_age_secs) {
            (Some(last), Some(age)) => {
                let decision = match last.decision.scale_to_kpu {
                    Some(kpu) => format!("scale to {}", words.capacity(kpu)),
                    None => "hold".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  {label:<11} {decision} {age} s ago: {}; {}{}",
                    one_line(&last.decision.reason),
                    one_line(&last.outcome.said(words)),
                    last.decision.asked_later()
                );
            }
            _ if app.sending.is_some() => {}
            _ if app.history_error.is_some() || app.history_unreadable_lines > 0 => {}
            _ => {
                let _ = writeln!(
                    out,
                    "  last:       no decision recorded yet (the history is empty)"
                );
            }
        }
        if let Some(error) = &app.journal_error {
            let _ = writeln!(out, "  journal:    unreadable: {}", one_line(error));
        }
        if let Some(error) = &app.history_error {
            let _ = writeln!(out, "  history:    unreadable: {}", one_line(error));
        }
        if app.history_unreadable_lines > 0 {
            let _ = writeln!(
                out,
                "  history:    {} line{} could not be read (damaged, or written by a newer flinkscale) and {} left out{}",
                app.history_unreadable_lines,
                if app.history_unreadable_lines == 1 {
                    ""
                } else {
                    "s"
                },
                if app.history_unreadable_lines == 1 {
                    "is"
                } else {
                    "are"
                },
                if app.last.is_some() {
                    ": `last` is the newest entry that could"
                } else {
                    ""
                }
            );
        }
        for error in &app.unreadable {
            let _ = writeln!(out, "  unreadable: {}", one_line(error));
        }
        if let Some(failing) = &app.journal_failing {
            let _ = writeln!(
                out,
                "  journal:    cannot be saved since {} ({}), no update is sent: {}; {}",
                iso(failing.since_ms),
                super::failing::duration_words(status.now_ms.saturating_sub(failing.since_ms)),
                one_line(&failing.cause),
                super::failing::held_words(failing.held)
            );
        }
    }
    out
}

/// The `agent:` line of `status`: whether an acting agent holds `app`'s
/// journal and which (the kernel's process id, and what the lock file
/// says); when none does, the last agent that held it, and that a phase in
/// flight is only where that one left it.
fn agent_words(app: &AppStatus, lock: &JournalLock) -> String {
    let path = one_line(&lock.path);
    // What the lock file says of its holder, after what the kernel says.
    let says = || {
        lock.owner.as_ref().map_or_else(String::new, |owner| {
            format!("; the lock file says: {}", owner.words())
        })
    };
    match (lock.held, lock.pid) {
        // The two name the same process: said once.
        (true, Some(pid)) => match &lock.owner {
            Some(owner) if owner.pid == pid => format!("running ({}, holds {path})", owner.words()),
            _ => format!("running (process {pid} holds {path}{})", says()),
        },
        (true, None) => {
            format!(
                "running (a process out of sight, in another PID namespace or container, holds {path}{})",
                says()
            )
        }
        // A running agent holds no journal of a paused application.
        (false, _) if app.paused => {
            format!("not acting (no process holds {path}: the application is paused)")
        }
        (false, _) => {
            // The last agent that held it, which the file still names.
            let last = lock.owner.as_ref().map_or_else(String::new, |owner| {
                format!(
                    "; the last to hold it was {}, from {}",
                    owner.who(),
                    iso(owner.since_ms)
                )
            });
            let mut words = format!(
                "not acting (no process holds {path}: no agent runs, or it runs in dry run{last})"
            );
            if !matches!(app.phase.as_str(), "none" | "idle" | "unreadable") {
                words.push_str(
                    "; the phase is where the last agent left it: nothing follows it until an agent starts, which resumes from there",
                );
            }
            words
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
