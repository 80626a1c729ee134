//! Record: logging set-up and the events a controller emits.
//!
//! Every step that matters is an [`Event`]. A controller logs each event as
//! one structured line and, when somebody listens (the `once` command, the
//! demo, tests), also sends it down a channel, so that the printed summary
//! and the log can never disagree. With a [`Registry`] attached
//! ([`Events::with_registry`]) the same events feed the agent's
//! `GET /metrics` and `GET /readyz` ([`http`]); with a [`history::History`]
//! ([`Events::with_history`]) they are kept for `flinkscale explain`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use crate::model::{AlarmStatus, Decision, Signal};
use crate::plugin::FailureClass;
use crate::target::{AppStatus, Words};
use failing::Tell;

pub mod failing;
pub mod history;
pub mod http;
pub mod prometheus;
pub mod text;

pub use prometheus::Registry;

/// Which of an application's plugins a quarantine is about: `policy`, or
/// `interpreter N`, N its place (from 1) among the application's
/// interpreters. A quarantine is kept, shown and ended by it rather than by
/// the plugin's name: a reload may put another plugin in its place (the
/// quarantined one's successor, whose first answer ends the quarantine),
/// and an application may have several plugins quarantined at once.
pub fn plugin_slot(interpreter: Option<usize>) -> String {
    match interpreter {
        None => "policy".to_owned(),
        Some(index) => format!("interpreter {}", index + 1),
    }
}

/// What a controller that resumed a journaled phase ([`Event::Resumed`])
/// waits out without evaluating, which readiness allows for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumedWait {
    /// An update (its own, in doubt, or another writer's), followed while
    /// the application is busy: up to the update timeout, then a grace
    /// period.
    Follow,
    /// A grace period, until this time (ms since the epoch).
    Until(i64),
}

/// Something a controller did or saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// One evaluation finished with a (validated) decision.
    Evaluated {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The application's KPU at evaluation time.
        kpu: u32,
        /// The latest value of each configured metric, if any, by metric id.
        latest: Vec<(String, Option<f64>)>,
        /// Alarm states.
        alarms: Vec<AlarmStatus>,
        /// The interpreters' signals this evaluation was decided on.
        signals: Vec<Signal>,
        /// The policy that decided (`name version`).
        policy: String,
        /// The decision after host validation.
        decision: Decision,
        /// Whether the action was skipped because of `--dry-run`.
        dry_run: bool,
    },
    /// UpdateApplication was accepted.
    RescaleStarted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// KPU before.
        from_kpu: u32,
        /// KPU requested.
        to_kpu: u32,
        /// The version id quoted in the request.
        version_id: u64,
    },
    /// The application is RUNNING again after a rescale.
    RescaleCompleted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// KPU now.
        kpu: u32,
        /// How long it was not RUNNING, in seconds; `None` when the update
        /// was found in flight in the journal at a start (of the agent, or
        /// of an application resumed from `paused`): the time since it was
        /// sent would include however long nothing followed it.
        #[serde(skip_serializing_if = "Option::is_none")]
        update_secs: Option<u32>,
    },
    /// A failure, classified.
    Failed {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// Failure class (e.g. `metrics`, `plugin`, `throttled`,
        /// `update_timeout`; the list is [`crate::controller::Failure`]).
        class: String,
        /// For a `plugin` failure, how the plugin failed (timeout, trap,
        /// ...); absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        plugin_class: Option<FailureClass>,
        /// What happened.
        message: String,
    },
    /// An update whose answer was an error (it may have taken effect all
    /// the same) cannot be resolved yet: the DescribeApplication that would
    /// tell failed. Followed by that failure's [`Event::Failed`], which is
    /// not the update's outcome: that is known once a later
    /// DescribeApplication answers ([`Event::RescaleStarted`] if it took
    /// effect, a [`Event::Failed`] about the update if not).
    UpdateInDoubt {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The KPU the update asked for.
        to_kpu: u32,
        /// The update's answer, an error.
        error: String,
    },
    /// A controller resolved a phase in doubt: one found in its journal at
    /// start, or an update whose answer was lost.
    Resumed {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The journaled phase (`idle`, `decided`, `sending`, `sent`,
        /// `updating`, `grace`).
        phase: String,
        /// What the controller does about it.
        resume: String,
        /// The application's version id now, as DescribeApplication says.
        version_id: u64,
        /// What the controller waits out before it evaluates again; none
        /// when it evaluates at once.
        #[serde(skip_serializing_if = "Option::is_none")]
        wait: Option<ResumedWait>,
    },
    /// A restart or update this agent did not make (another writer's, or one that
    /// ended just before an agent without a journal started) is waited out
    /// as the agent's own: followed while the application is busy
    /// (`until_ms` absent), then a grace period to `until_ms`. Nothing is
    /// decided meanwhile.
    GraceHeld {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// End of the grace period (ms since the epoch); absent while the
        /// update is still followed.
        until_ms: Option<i64>,
        /// Why, in the target's words.
        reason: String,
    },
    /// UpdateApplication was refused for the application's KPU quota: decisions
    /// stay at or below `ceiling_kpu` until the limit is lifted.
    LimitRecorded {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The KPU that was refused.
        refused_kpu: u32,
        /// The highest KPU the agent now asks for.
        ceiling_kpu: u32,
    },
    /// A recorded KPU limit no longer applies.
    LimitLifted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The KPU that had been refused.
        refused_kpu: u32,
        /// Why it was lifted.
        reason: String,
    },
    /// A held size (refused as invalid, or rolled back) may be asked for
    /// again before its hour is out.
    RefusalLifted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The KPU that had been held.
        kpu: u32,
        /// The KPU the update to it was rolled back to, when it was rolled
        /// back rather than refused as invalid.
        rolled_back_to: Option<u32>,
        /// Why it was lifted.
        reason: String,
    },
    /// A plugin failed too often in a row and is not called for this
    /// application until `until_ms` (or until its file changes); the
    /// application holds meanwhile.
    PluginQuarantined {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The plugin (`name version`).
        plugin: String,
        /// Which of the application's plugins it is ([`plugin_slot`]): a
        /// reload may put another plugin in its place, whose recovery
        /// ends this quarantine.
        slot: String,
        /// How its last call failed.
        class: FailureClass,
        /// Failures in a row that led here.
        failures: u32,
        /// End of the quarantine (ms since the epoch).
        until_ms: i64,
    },
    /// A quarantined plugin is called again.
    PluginRetried {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The plugin (`name version`).
        plugin: String,
        /// Why now: its back-off ended, or its file changed.
        reason: String,
    },
    /// An interpreter answered signals whose value is not a finite number
    /// (NaN or an infinity): the evaluation goes on without them, as the
    /// contract says (a signal with no value). Logged at WARN the first
    /// time a plugin file does it (a new file is told again), at DEBUG
    /// after; the decision history keeps them with the evaluation's entry
    /// (`flinkscale explain`).
    SignalsDropped {
        /// Application name.
        application: String,
        /// When (ms since the epoch): the evaluation's time.
        at_ms: i64,
        /// The interpreter (`name version`).
        plugin: String,
        /// The interpreter's file.
        file: String,
        /// The signals dropped, with their values.
        signals: Vec<Signal>,
        /// Whether this plugin file gave none before.
        first: bool,
    },
    /// A plugin answered again after a quarantine.
    PluginRecovered {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The plugin (`name version`).
        plugin: String,
        /// Which of the application's plugins it is ([`plugin_slot`]).
        slot: String,
    },
    /// A plugin's file was replaced, and the new file loaded and accepted
    /// the application's parameters: it decides (or interprets) from this
    /// evaluation on.
    PluginReloaded {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The plugin replaced (`name version`).
        from: String,
        /// The plugin now running (`name version`).
        to: String,
        /// The new file's sha256, in hex.
        sha256: String,
    },
    /// A plugin's file was replaced, but the new file did not load or
    /// refused the application's parameters: the running plugin stays,
    /// and the file is tried again when it changes again.
    PluginReloadRefused {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The plugin that keeps running (`name version`).
        plugin: String,
        /// The refused file's sha256, in hex.
        sha256: String,
        /// Why it was refused.
        reason: String,
    },
    /// Saving the application's journal failed: nothing is sent until a
    /// save succeeds ([`Event::JournalRecovered`]), and `/readyz` reports
    /// the application as not ready meanwhile. Emitted at every failed
    /// save, so that the registry always knows the cause and the count;
    /// logged only when `tell` says so (the first failure, a new cause, a
    /// reminder every [`failing::REMINDER_INTERVAL`]).
    JournalFailing {
        /// Application name.
        application: String,
        /// When this save failed (ms since the epoch).
        at_ms: i64,
        /// When the first save of this stretch failed (ms since the epoch).
        since_ms: i64,
        /// Why: the journal's error, naming the file and the OS error.
        cause: String,
        /// Updates held (not sent) since `since_ms`, this one included.
        held: u64,
        /// Whether and how this failure is logged.
        tell: failing::Tell,
    },
    /// The journal could be saved again after [`Event::JournalFailing`].
    JournalRecovered {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// When the saves started failing (ms since the epoch).
        since_ms: i64,
        /// Updates held (not sent) while they failed; each was decided
        /// again at a later evaluation, never sent as it was.
        held: u64,
    },
    /// Another writer undid the agent's rescales again and again (see
    /// [`crate::controller::fight`]): the agent stands down for the
    /// application. It evaluates and records what it would do, but sends no
    /// update until a configuration reload asks to resume it (`flinkscale
    /// reload --resume`). Also said at the start
    /// of an agent that reads the stand-down from its journal.
    StoodDown {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// Since when it stands down (ms since the epoch).
        since_ms: i64,
        /// The other writer's updates that made it.
        overrides: Vec<crate::state::Override>,
        /// The same, for people (versions, sizes, times).
        updates: String,
        /// Whether this is an agent's start that read it from the journal.
        restarted: bool,
    },
    /// A configuration reload stopped the application's controller to
    /// start another in its place: what the metrics registry knew from the
    /// old one (a stand-down, a journal it could not save, a panic) is the
    /// new one's to say again, or not (a controller now in dry run keeps no
    /// journal and stands down for nobody). Not logged.
    ControllerReplaced {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
    },
    /// A configuration reload that asked to resume the application ended
    /// its stand-down: updates are sent again.
    StandDownLifted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// Since when the agent had stood down (ms since the epoch).
        since_ms: i64,
        /// Why.
        reason: String,
    },
    /// A decision to scale was not sent because the application must wait
    /// first (its grace period, an update in progress): the `once`
    /// command, which evaluates whatever the phase, says so; or because
    /// the agent stopped between the decision and its call.
    NotSent {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// Why, in the target's words.
        reason: String,
    },
    /// A controller step panicked (a bug in flinkscale); the controller
    /// carries on, resolving whatever was in flight again, and `/readyz`
    /// reports the application as not ready until its next evaluation.
    Panicked {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The panic's message.
        message: String,
    },
}

/// How many failures of each class each application had: the numbers behind
/// `flinkscale_failures_total{application, class}`. Shared by every clone of
/// an [`Events`].
#[derive(Debug, Default)]
pub struct FailureCounts {
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl FailureCounts {
    /// Starts the counter of `class` for an application the agent starts
    /// serving, at 0: a class that never happened is reported as 0, not
    /// left out, and an application added again by a reload counts from
    /// 0, whatever the controller stopping for its removal counted after.
    fn start(&self, application: &str, class: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.insert((application.to_owned(), class.to_owned()), 0);
    }

    fn count(&self, application: &str, class: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts
            .entry((application.to_owned(), class.to_owned()))
            .or_insert(0) += 1;
    }

    /// Failures of `class` for `application` so far.
    pub fn get(&self, application: &str, class: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(&(application.to_owned(), class.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Keeps the counters of the applications `keep` says, forgets the
    /// others' (a reload removed them).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|(application, _), _| keep(application));
    }

    /// Every (application, class, count), sorted by application then class.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .map(|((app, class), n)| (app.clone(), class.clone(), *n))
            .collect()
    }
}

/// Where a controller's events go: the log always, a channel when given;
/// failures are also counted.
#[derive(Debug, Clone, Default)]
pub struct Events {
    tx: Option<UnboundedSender<Event>>,
    quiet: bool,
    failures: Arc<FailureCounts>,
    registry: Option<Arc<Registry>>,
    history: Option<history::History>,
    /// How the log names capacity, calls and the ceiling: the target's
    /// vocabulary of the application whose controller emits.
    words: Words,
}

impl Events {
    /// Events that are only logged.
    pub fn log_only() -> Self {
        Self {
            tx: None,
            quiet: false,
            failures: Arc::default(),
            registry: None,
            history: None,
            words: Words::Msf,
        }
    }

    /// Events that are logged and also sent to `tx`.
    pub fn with_channel(tx: UnboundedSender<Event>) -> Self {
        Self {
            tx: Some(tx),
            quiet: false,
            failures: Arc::default(),
            registry: None,
            history: None,
            words: Words::Msf,
        }
    }

    /// Events that are only sent to `tx`, not logged (the simulator records
    /// thousands of them per run and reports them itself).
    pub fn quiet_with_channel(tx: UnboundedSender<Event>) -> Self {
        Self {
            tx: Some(tx),
            quiet: true,
            failures: Arc::default(),
            registry: None,
            history: None,
            words: Words::Msf,
        }
    }

    /// These events, also recorded in `registry` (which then reports the
    /// failures these events count).
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.failures = registry.failure_counts();
        self.registry = Some(registry);
        self
    }

    /// These events, also kept in the decision history ([`history`]).
    pub fn with_history(mut self, history: history::History) -> Self {
        self.history = Some(history);
        self
    }

    /// These events, logged (and labelled in the registry) in `words`:
    /// the vocabulary of the application's target.
    pub fn with_words(mut self, words: Words) -> Self {
        self.words = words;
        self
    }

    /// The vocabulary these events are logged in.
    pub fn words(&self) -> Words {
        self.words
    }

    /// The failure counters, shared by every clone of these events.
    pub fn failure_counts(&self) -> Arc<FailureCounts> {
        self.failures.clone()
    }

    /// Observes a plugin call that took `elapsed` in the registry's
    /// `flinkscale_plugin_call_duration_seconds`, if there is a registry.
    pub fn plugin_call(
        &self,
        application: &str,
        plugin: &str,
        function: &str,
        elapsed: std::time::Duration,
    ) {
        if let Some(registry) = &self.registry {
            registry.plugin_call(application, plugin, function, elapsed);
        }
    }

    /// Logs `event`, counts it if it is a failure, and forwards it to the
    /// listener, if any.
    pub fn emit(&self, event: Event) {
        self.send(event, true);
    }

    /// As [`Events::emit`], but without the log line: for a failure whose
    /// emitter logs it in its own, rate-limited way (a journal that cannot
    /// be saved: [`Event::JournalFailing`]), so that it is counted and
    /// recorded at every occurrence without repeating the same line.
    pub fn emit_unlogged(&self, event: Event) {
        self.send(event, false);
    }

    /// The metrics registry the events feed, if any: the agent tells it
    /// directly what a configuration reload put in force.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.as_ref()
    }

    fn send(&self, event: Event, log: bool) {
        if let Event::Failed {
            application, class, ..
        } = &event
        {
            self.failures.count(application, class);
        }
        if let Some(registry) = &self.registry {
            registry.record(&event);
        }
        if let Some(history) = &self.history {
            history.record(&event);
        }
        if log && !self.quiet {
            match self.words {
                Words::Msf => log_event(&event),
                Words::Flink => log_flink_event(&event),
            }
        }
        if let Some(tx) = &self.tx {
            // A listener that went away is not the controller's problem.
            let _ = tx.send(event);
        }
    }
}

/// Failure classes logged at error level: they need a person (a plugin to
/// fix, an update that did not go through, a request AWS will never accept,
/// a journal that cannot be written, a permission to grant).
const ERROR_CLASSES: &[&str] = &[
    "plugin",
    "update_failed",
    "update_timeout",
    "invalid",
    "not_found",
    "limit_exceeded",
    "journal",
    "permission",
];

/// `name value` of each signal, comma-separated: `lag NaN, backlog inf`.
pub(crate) fn dropped_signals_text(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|s| format!("{} {}", s.name, s.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `event` as one structured log line.
fn log_event(event: &Event) {
    {
        match event {
            Event::Evaluated {
                application,
                kpu,
                decision,
                dry_run,
                ..
            } => info!(
                message = "Evaluated.",
                application = %application,
                kpu,
                action = ?decision.action,
                reason = %decision.reason,
                dry_run,
            ),
            Event::RescaleStarted {
                application,
                from_kpu,
                to_kpu,
                version_id,
                ..
            } => info!(
                message = "Rescale started.",
                application = %application,
                from_kpu,
                to_kpu,
                version_id,
            ),
            Event::RescaleCompleted {
                application,
                kpu,
                update_secs,
                ..
            } => info!(
                message = "Rescale completed.",
                application = %application,
                kpu,
                update_secs,
            ),
            Event::Failed {
                application,
                class,
                message,
                ..
            } => {
                // A peer's text (a JobManager's, AWS's) on one line: a
                // line break in it cannot forge a record of the text log.
                let message = text::one_line(message);
                // Errors need a person; warnings are expected to pass.
                if ERROR_CLASSES.contains(&class.as_str()) {
                    error!(message = "Step failed.", application = %application, class = %class, error = %message)
                } else {
                    warn!(message = "Step failed.", application = %application, class = %class, error = %message)
                }
            }
            Event::UpdateInDoubt {
                application,
                to_kpu,
                error,
                ..
            } => warn!(
                message = "The update's answer was an error and whether it took effect is not known yet; resolving it.",
                application = %application,
                to_kpu,
                error = %text::one_line(error),
            ),
            Event::Resumed {
                application,
                phase,
                resume,
                version_id,
                ..
            } => info!(
                // A journaled grace period or idle phase is nothing in
                // doubt, only resumed.
                message = if matches!(phase.as_str(), "idle" | "grace") {
                    "Resumed the phase the journal kept."
                } else if resume.starts_with("no verdict yet") {
                    "A phase in doubt: no verdict yet."
                } else {
                    "Resolved a phase in doubt."
                },
                application = %application,
                phase = %phase,
                resume = %resume,
                version_id,
            ),
            Event::GraceHeld {
                application,
                until_ms,
                reason,
                ..
            } => info!(
                message = "Holding a grace period after a restart or update this agent did not make; nothing is decided before it ends.",
                application = %application,
                // Absent while the update is still followed.
                until_ms = *until_ms,
                reason = %reason,
            ),
            Event::NotSent {
                application,
                reason,
                ..
            } => info!(
                message = "The decision to scale was not sent.",
                application = %application,
                reason = %reason,
            ),
            Event::LimitRecorded {
                application,
                refused_kpu,
                ceiling_kpu,
                ..
            } => error!(
                message = "The application's KPU quota refused the update; decisions now stay at or below the ceiling.",
                application = %application,
                refused_kpu,
                ceiling_kpu,
            ),
            Event::LimitLifted {
                application,
                refused_kpu,
                reason,
                ..
            } => info!(
                message = "KPU limit lifted.",
                application = %application,
                refused_kpu,
                reason = %reason,
            ),
            Event::RefusalLifted {
                application,
                kpu,
                rolled_back_to,
                reason,
                ..
            } => info!(
                message = "Held size lifted; it may be asked for again.",
                application = %application,
                kpu,
                rolled_back_to_kpu = rolled_back_to,
                reason = %reason,
            ),
            Event::PluginQuarantined {
                application,
                plugin,
                slot,
                class,
                failures,
                until_ms,
                at_ms,
            } => error!(
                message = "Plugin quarantined; the application holds.",
                application = %application,
                plugin = %plugin,
                slot = %slot,
                class = class.as_str(),
                failures,
                quarantine_secs = (until_ms - at_ms).max(0) / 1000,
            ),
            Event::PluginRetried {
                application,
                plugin,
                reason,
                ..
            } => info!(
                message = "Retrying a quarantined plugin.",
                application = %application,
                plugin = %plugin,
                reason = %reason,
            ),
            Event::SignalsDropped {
                application,
                plugin,
                file,
                signals,
                first,
                ..
            } => {
                let signals = dropped_signals_text(signals);
                if *first {
                    warn!(
                        message = "Interpreter signals are not finite numbers; dropped (told once per plugin file).",
                        application = %application,
                        plugin = %plugin,
                        file = %file,
                        signals = %signals,
                    )
                } else {
                    debug!(
                        message = "Interpreter signals are not finite numbers; dropped.",
                        application = %application,
                        plugin = %plugin,
                        file = %file,
                        signals = %signals,
                    )
                }
            }
            Event::PluginRecovered {
                application,
                plugin,
                slot,
                ..
            } => info!(
                message = "Plugin recovered.",
                application = %application,
                plugin = %plugin,
                slot = %slot,
            ),
            Event::PluginReloaded {
                application,
                from,
                to,
                sha256,
                ..
            } => info!(
                message = "Plugin reloaded.",
                application = %application,
                from = %from,
                to = %to,
                sha256 = %sha256,
            ),
            Event::PluginReloadRefused {
                application,
                plugin,
                sha256,
                reason,
                ..
            } => error!(
                message = "Plugin reload refused; the running plugin stays.",
                application = %application,
                plugin = %plugin,
                sha256 = %sha256,
                error = %reason,
            ),
            Event::JournalFailing {
                application,
                at_ms,
                since_ms,
                cause,
                held,
                tell,
            } => match tell {
                Tell::Started => warn!(
                    message = "Cannot save the journal; no update is sent until it can be saved.",
                    application = %application,
                    error = %cause,
                ),
                Tell::CauseChanged => warn!(
                    message = "The journal still cannot be saved, now for another cause; no update is sent until it can be saved.",
                    application = %application,
                    failing_for = %failing::duration_words(at_ms - since_ms),
                    held,
                    error = %cause,
                ),
                Tell::Reminder => warn!(
                    message = "The journal still cannot be saved; no update is sent until it can be saved.",
                    application = %application,
                    failing_for = %failing::duration_words(at_ms - since_ms),
                    held,
                    error = %cause,
                ),
                Tell::Quiet => {}
            },
            Event::JournalRecovered {
                application,
                at_ms,
                since_ms,
                held,
            } => info!(
                message = %format!(
                    "Journal writable again after {}; {held} {} held.",
                    failing::duration_words(at_ms - since_ms),
                    if *held == 1 { "update was" } else { "updates were" }
                ),
                application = %application,
                failing_secs = (at_ms - since_ms).max(0) / 1000,
                held,
            ),
            Event::StoodDown {
                application,
                since_ms,
                updates,
                restarted,
                ..
            } => error!(
                message = "Stood down: another writer keeps undoing this agent's rescales, so it sends no update for the application. It still evaluates and records what it would do. Stop the other writer (run one agent per application), then resume it: flinkscale reload --resume APPLICATION.",
                application = %application,
                since = %text::iso(*since_ms),
                updates = %updates,
                journaled = restarted,
            ),
            Event::ControllerReplaced { application, .. } => debug!(
                message = "Controller replaced by a reload.",
                application = %application,
            ),
            Event::StandDownLifted {
                application,
                since_ms,
                reason,
                ..
            } => warn!(
                message = "Stand-down lifted; updates are sent again.",
                application = %application,
                since = %text::iso(*since_ms),
                reason = %reason,
            ),
            Event::Panicked {
                application,
                message,
                ..
            } => error!(
                message = "Controller step panicked; resolving what was in flight again.",
                application = %application,
                panic = %message,
            ),
        }
    }
}

/// Writes `event` of a Flink job as one structured log line: what
/// [`log_event`] writes for an MSF application, in Flink's words (fields
/// `parallelism`, `from_parallelism`, `to_parallelism`, the REST call
/// that rescaled, the cluster's free slots as the ceiling). Events that
/// name no capacity are logged as for MSF.
fn log_flink_event(event: &Event) {
    let words = Words::Flink;
    match event {
        Event::Evaluated {
            application,
            kpu,
            decision,
            dry_run,
            ..
        } => info!(
            message = "Evaluated.",
            application = %application,
            parallelism = kpu,
            action = %flink_action(decision.action),
            reason = %decision.reason,
            dry_run,
        ),
        Event::RescaleStarted {
            application,
            from_kpu,
            to_kpu,
            version_id,
            ..
        } => info!(
            message = "Rescale started.",
            application = %application,
            from_parallelism = from_kpu,
            to_parallelism = to_kpu,
            call = words.rescale_call(),
            version_id,
        ),
        Event::RescaleCompleted {
            application,
            kpu,
            update_secs,
            ..
        } => info!(
            message = "Rescale completed.",
            application = %application,
            parallelism = kpu,
            update_secs,
        ),
        Event::LimitRecorded {
            application,
            refused_kpu,
            ceiling_kpu,
            ..
        } => error!(
            message = "The cluster's free slots or the job's max parallelism refused the parallelism; decisions now stay at or below the ceiling.",
            application = %application,
            refused_parallelism = refused_kpu,
            ceiling_parallelism = ceiling_kpu,
        ),
        Event::LimitLifted {
            application,
            refused_kpu,
            reason,
            ..
        } => info!(
            message = "Slot ceiling lifted.",
            application = %application,
            refused_parallelism = refused_kpu,
            reason = %reason,
        ),
        Event::RefusalLifted {
            application,
            kpu,
            rolled_back_to,
            reason,
            ..
        } => info!(
            message = "Held parallelism lifted; it may be asked for again.",
            application = %application,
            parallelism = kpu,
            rolled_back_to_parallelism = rolled_back_to,
            reason = %reason,
        ),
        other => log_event(other),
    }
}

/// A decision's action as a Flink job's log says it: `Hold`, or
/// `ScaleTo(parallelism 4)`.
fn flink_action(action: crate::model::Action) -> String {
    match action {
        crate::model::Action::Hold => "Hold".to_owned(),
        crate::model::Action::ScaleTo(n) => format!("ScaleTo({})", Words::Flink.capacity(n)),
    }
}

/// Warns that an application has MSF's own autoscaling enabled, which fights
/// any external scaler (the reference design says to disable it).
pub fn warn_autoscaling_enabled(application: &str, status: AppStatus) {
    warn!(
        message = "MSF autoscaling is enabled; it will fight flinkscale. Disable it (the agent's updates set AutoScalingEnabled = false).",
        application = %application,
        status = %status,
    );
}

/// Output format of the agent's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why `RUST_LOG` cannot be used: the first directive that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "RUST_LOG: invalid directive {directive:?}: {reason} (valid: comma-separated directives, \
     each a level (error, warn, info, debug, trace, off) or TARGET=LEVEL, e.g. \
     \"info,flinkscale=debug\")"
)]
pub struct LogFilterError {
    /// The directive as written.
    pub directive: String,
    /// What the parser said.
    pub reason: String,
}

/// The filter `RUST_LOG` asks for (`info` when it is empty), each of its
/// comma-separated directives checked on its own, as the filter splits
/// them, so that the bad one is named instead of the whole filter silently
/// falling back to `info`. The plugin compiler's code generator stays at
/// `warn` unless a directive names `cranelift`.
pub fn log_filter(asked: &str) -> Result<tracing_subscriber::EnvFilter, LogFilterError> {
    log_filter_or(asked, "info")
}

/// [`log_filter`] with `default` (e.g. `warn`) as the level when `asked`
/// names none.
pub fn log_filter_or(
    asked: &str,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter, LogFilterError> {
    use tracing_subscriber::filter::Directive;
    let directives: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let mut filter = tracing_subscriber::EnvFilter::new(default);
    if !directives.is_empty() {
        filter = tracing_subscriber::EnvFilter::new("");
        for text in &directives {
            let directive: Directive =
                text.parse()
                    .map_err(
                        |error: tracing_subscriber::filter::ParseError| LogFilterError {
                            directive: (*text).to_owned(),
                            reason: error.to_string(),
                        },
                    )?;
            filter = filter.add_directive(directive);
        }
    }
    // Cranelift logs hundreds of megabytes per plugin compile at trace
    // level: keep it to warnings unless the user names it.
    if !asked.contains("cranelift") {
        for target in [
            "cranelift_codegen",
            "cranelift_frontend",
            "wasmtime_internal_cranelift",
        ] {
            if let Ok(directive) = format!("{target}=warn").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    Ok(filter)
}

/// Whether text logs on stderr get ANSI colours: only on a terminal, and
/// not when `NO_COLOR` is set (<https://no-color.org>). A file, a pipe or
/// the journal gets plain text.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How log lines reach stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriting {
    /// Written by the thread that logs: a command that runs and ends.
    InPlace,
    /// Queued to a thread of their own, which writes them; past
    /// [`LOG_QUEUE_LINES`] lines waiting, a line is dropped, never waited
    /// for. For the
    /// long-running agent, whose async workers must not block on a stderr
    /// that does not drain (a pipe whose reader stopped reading, a log
    /// collector that hangs): every evaluation, stop signal and HTTP
    /// answer would wait on it.
    Queued,
}

/// How many log lines may wait for a stderr that does not drain
/// ([`LogWriting::Queued`]): a few megabytes at most.
pub const LOG_QUEUE_LINES: usize = 10_000;

/// What keeps the queued log writer ([`LogWriting::Queued`]) running:
/// dropping it writes out what is queued and ends the thread (waiting for it at most about a second). Hold it until
/// the command ends.
#[derive(Debug)]
#[must_use = "dropping it ends the log writer"]
pub struct LogGuard {
    /// Held only to be dropped: none when lines are written in place.
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global tracing subscriber, writing to stderr as `writing`
/// says: text (coloured on a terminal only) or one JSON object per line
/// with the event's fields at the top level beside `timestamp`, `level`
/// and `target`. The filter comes from `RUST_LOG` ([`log_filter_or`]), at
/// level `default` when it names none; an invalid one is returned as an
/// error and nothing is installed.
pub fn init_logging(
    format: LogFormat,
    default: &str,
    writing: LogWriting,
) -> Result<LogGuard, LogFilterError> {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = log_filter_or(&asked, default)?;
    let (writer, guard) = match writing {
        LogWriting::InPlace => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
        ),
        LogWriting::Queued => {
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .thread_name("flinkscale-log")
                .finish(std::io::stderr());
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(writer),
                Some(guard),
            )
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(LogGuard { _worker: guard })
}

#[cfg(test)]
/// Registers, once per process, an inert subscriber that keeps tracing
/// from caching a callsite's interest as "never". While at most one
/// dispatcher is registered, tracing-core computes a callsite's interest
/// from the default dispatcher of the thread that first reaches it, and
/// caches it for every thread: a test thread with no subscriber that
/// reaches a log line first silences it for a capturing test running
/// beside it (seen as a missing line in about one run in three of the
/// whole file). With this one registered too, the interest is the union
/// over the registered dispatchers, and this one answers "sometimes", so
/// each event asks its own thread's subscriber.
fn register_interest_anchor() {
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, span};

    struct Inert;
    impl tracing::Subscriber for Inert {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(Inert));
}

/// Everything logged through `tracing` while `f` runs: as text (every
/// level, no colours), or with `json` as one JSON object a line with the
/// event's fields flattened. For tests.
#[cfg(test)]
pub(crate) fn captured_logs(json: bool, f: impl FnOnce()) -> String {
    register_interest_anchor();
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone());
    if json {
        let subscriber = subscriber.json().flatten_event(true).finish();
        tracing::subscriber::with_default(subscriber, f);
    } else {
        let subscriber = subscriber
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
    }
    let bytes = buffer.0.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything logged (as JSON lines) while `f` runs.
    fn captured_json(f: impl FnOnce()) -> Vec<serde_json::Value> {
        captured_logs(true, f)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }

    /// A failure's message carries a peer's text (a JobManager's answer):
    /// a line break in it stays inside its record of the text log instead
    /// of starting a record of its own.
    #[test]
    fn a_line_break_in_a_failure_cannot_forge_a_log_record() {
        let failed = Event::Failed {
            application: "orders".to_owned(),
            at_ms: 0,
            class: "not_found".to_owned(),
            plugin_class: None,
            message: "job x is FAILED\n2026-12-06T00:00:00Z  INFO Rescale started.".to_owned(),
        };
        let text = captured_logs(false, || log_event(&failed));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("job x is FAILED\\n2026"), "{text}");
    }

    /// The first time a plugin file gives signals that are not finite
    /// numbers is a WARN naming the file, the signals and their values;
    /// later times are DEBUG.
    #[test]
    fn dropped_signals_are_a_warning_the_first_time_only() {
        let dropped = |first: bool| Event::SignalsDropped {
            application: "orders".to_owned(),
            at_ms: 0,
            plugin: "lag 0.1.0".to_owned(),
            file: "/etc/flinkscale/plugins/lag.wasm".to_owned(),
            signals: vec![
                Signal {
                    name: "backlog".to_owned(),
                    value: f64::NAN,
                },
                Signal {
                    name: "rate".to_owned(),
                    value: f64::INFINITY,
                },
            ],
            first,
        };
        let lines = captured_json(|| log_event(&dropped(true)));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["application"], "orders", "{line}");
        assert_eq!(line["plugin"], "lag 0.1.0", "{line}");
        assert_eq!(line["file"], "/etc/flinkscale/plugins/lag.wasm", "{line}");
        assert_eq!(line["signals"], "backlog NaN, rate inf", "{line}");
        // Every level, as text.
        let later = captured_logs(false, || log_event(&dropped(false)));
        assert_eq!(later.lines().count(), 1, "{later}");
        assert!(
            later.contains("DEBUG") && later.contains("signals=backlog NaN, rate inf"),
            "{later}"
        );
    }

    fn rescale_events() -> Vec<Event> {
        let application = "orders".to_owned();
        vec![
            Event::Evaluated {
                application: application.clone(),
                at_ms: 0,
                kpu: 2,
                latest: Vec::new(),
                alarms: Vec::new(),
                signals: Vec::new(),
                policy: "step 0.1.0".to_owned(),
                decision: Decision {
                    action: crate::model::Action::ScaleTo(4),
                    reason: "busy".to_owned(),
                    next_evaluation_secs: None,
                },
                dry_run: false,
            },
            Event::RescaleStarted {
                application: application.clone(),
                at_ms: 0,
                from_kpu: 2,
                to_kpu: 4,
                version_id: 6,
            },
            Event::RescaleCompleted {
                application: application.clone(),
                at_ms: 0,
                kpu: 4,
                update_secs: Some(6),
            },
            Event::LimitRecorded {
                application: application.clone(),
                at_ms: 0,
                refused_kpu: 8,
                ceiling_kpu: 6,
            },
            Event::LimitLifted {
                application,
                at_ms: 0,
                refused_kpu: 8,
                reason: "3600 s have passed".to_owned(),
            },
        ]
    }

    #[test]
    fn a_flink_jobs_log_lines_speak_of_parallelism_and_the_rest_call() {
        let lines = captured_json(|| {
            let events = Events::log_only().with_words(Words::Flink);
            for event in rescale_events() {
                events.emit(event);
            }
        });
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[0]["parallelism"], 2);
        assert_eq!(lines[0]["action"], "ScaleTo(parallelism 4)");
        assert_eq!(lines[1]["from_parallelism"], 2);
        assert_eq!(lines[1]["to_parallelism"], 4);
        assert_eq!(lines[1]["call"], "PUT /jobs/{id}/resource-requirements");
        assert_eq!(lines[2]["parallelism"], 4);
        assert_eq!(
            lines[3]["message"],
            "The cluster's free slots or the job's max parallelism refused the parallelism; decisions now stay at or below the ceiling."
        );
        assert_eq!(lines[3]["refused_parallelism"], 8);
        assert_eq!(lines[3]["ceiling_parallelism"], 6);
        assert_eq!(lines[4]["message"], "Slot ceiling lifted.");
        for line in &lines {
            let text = line.to_string();
            assert!(
                !text.contains("kpu") && !text.contains("KPU"),
                "a Flink job's log line names KPU: {text}"
            );
        }
    }

    #[test]
    fn an_msf_applications_log_lines_keep_msfs_words() {
        let lines = captured_json(|| {
            let events = Events::log_only();
            for event in rescale_events() {
                events.emit(event);
            }
        });
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[0]["kpu"], 2);
        assert_eq!(lines[0]["action"], "ScaleTo(4)");
        assert_eq!(
            (&lines[1]["from_kpu"], &lines[1]["to_kpu"]),
            (&2.into(), &4.into())
        );
        assert_eq!(lines[2]["kpu"], 4);
        assert_eq!(
            lines[3]["message"],
            "The application's KPU quota refused the update; decisions now stay at or below the ceiling."
        );
        assert_eq!(lines[4]["message"], "KPU limit lifted.");
    }

    #[test]
    fn a_journal_that_keeps_failing_is_logged_when_it_starts_when_reminded_and_when_it_recovers() {
        let failing = |at_ms: i64, tell| Event::JournalFailing {
            application: "orders".to_owned(),
            at_ms,
            since_ms: 0,
            cause: "cannot create /s/.orders.json.tmp: Read-only file system (os error 30)"
                .to_owned(),
            held: 2,
            tell,
        };
        let events = Events::log_only();
        let lines = captured_json(|| {
            events.emit(failing(0, Tell::Started));
            // The retries in between, and the update each one held, are
            // counted but not logged.
            for at_ms in [60_000, 120_000] {
                events.emit(failing(at_ms, Tell::Quiet));
                events.emit_unlogged(Event::Failed {
                    application: "orders".to_owned(),
                    at_ms,
                    class: "journal".to_owned(),
                    plugin_class: None,
                    message: "UpdateApplication to 4 KPU not sent".to_owned(),
                });
            }
            events.emit(failing(600_000, Tell::Reminder));
            events.emit(Event::JournalRecovered {
                application: "orders".to_owned(),
                at_ms: 792_000,
                since_ms: 0,
                held: 2,
            });
        });
        assert_eq!(events.failure_counts().get("orders", "journal"), 2);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(
            lines[0]["message"],
            "Cannot save the journal; no update is sent until it can be saved."
        );
        assert!(
            lines[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("Read-only file system (os error 30)")),
            "{lines:?}"
        );
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["failing_for"], "10 min 0 s");
        assert_eq!(lines[1]["held"], 2);
        assert_eq!(lines[2]["level"], "INFO");
        assert_eq!(
            lines[2]["message"],
            "Journal writable again after 13 min 12 s; 2 updates were held."
        );
    }

    #[test]
    fn rust_log_names_its_bad_directive() {
        for good in [
            "",
            " ",
            "info",
            "warn,flinkscale=debug",
            "flinkscale::agent=trace",
        ] {
            assert!(log_filter(good).is_ok(), "{good:?}");
        }
        for (asked, bad) in [
            ("flinkscale=loud", "flinkscale=loud"),
            ("info, flinkscale=debug ,aws=noisy", "aws=noisy"),
            ("info,[unclosed", "[unclosed"),
        ] {
            let error = log_filter(asked).expect_err(asked);
            assert_eq!(error.directive, bad, "{asked:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("RUST_LOG: invalid directive {bad:?}: ")),
                "{error}"
            );
        }
    }
}
