//! Standing down when another writer fights the agent over an
//! application's size, as pure logic over the journaled record.
//!
//! Every update the agent did not make is reported (`foreign_update`) and
//! waited out ([`super::machine`]), but two writers that disagree (a second
//! agent with its own state folder, a pipeline that resets the size at
//! every deployment, MSF's own autoscaling) still undo each other's
//! rescales, each a restart of the application, and neither can see the
//! other. So the agent counts **overrides**: an evaluation that finds the
//! application RUNNING at a version id above the one the agent's own last
//! rescale ended at, and moved back the way that rescale came (smaller
//! after a scale-out, larger after a scale-in), within [`window_ms`] of
//! that rescale; or an update of another writer that lands while the agent
//! still follows its own rescale, so that the rescale ends RUNNING moved
//! back the way it came (the same undoing, seen sooner: [`own_rescale`]).
//! Only the first such finding after a rescale of the agent
//! counts, so each override needs a rescale of the agent before it: a
//! person who changes the size once (or several times in a row) counts
//! once; a Flink job's restarts (the version moves, the parallelism does
//! not) and a second agent that agrees (it takes the size further the same
//! way) never count. The size compared is the one the application is asked
//! for where the target says ([`AppState::asked_kpu`]: a Flink job's
//! resource requirements), else the one it runs at: a Flink job that lost
//! a TaskManager runs on fewer slots than it asks for, which nobody wrote. [`OVERRIDES_TO_STAND_DOWN`]
//! overrides within the window are a fight: the agent **stands down** for
//! the application. It goes on evaluating and recording what it would do,
//! as a dry run does, but sends no update, until an operator resumes it
//! with a configuration reload that names it (`flinkscale reload --resume
//! NAME`, [`Resumes`], [`lift`]); a reload that does not name it leaves it
//! in force. The stand-down is journaled, so a restart keeps it.
//!
//! The thresholds are constants: the count is the least that tells a
//! pattern from a one-off, and the window follows the application's own
//! timing; a user who wants two writers wants no autoscaler.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::{Action, Decision};
use crate::state::{AppRecord, Fight, Override, OwnRescale, Update};
use crate::target::{AppState, AppStatus, Words};
use crate::telemetry::Event;
use crate::telemetry::text::iso;

use super::Settings;

/// Overrides within [`window_ms`] that make the agent stand down. One is
/// what a person's single manual change looks like; two mean that the
/// other writer undid a rescale of the agent, the agent rescaled again,
/// and the other writer undid that too: by then the application has
/// restarted four times for nothing.
pub const OVERRIDES_TO_STAND_DOWN: usize = 2;

/// The shortest fight window: an hour.
const WINDOW_MIN_MS: i64 = 3_600_000;

/// How far back overrides count (ms): an hour, or twice the longest cycle
/// of one override (the agent's update and grace period, then the other
/// writer's) if longer, so that a slow application's fight fits too.
pub fn window_ms(settings: &Settings) -> i64 {
    let cycle = settings
        .update_timeout
        .saturating_add(settings.grace_period)
        .saturating_mul(2);
    i64::try_from(cycle.as_millis())
        .unwrap_or(i64::MAX)
        .max(WINDOW_MIN_MS)
}

/// Whether the agent stood down for the application: it sends no update.
pub fn stood_down(record: &AppRecord) -> bool {
    record.fight.stood_down_ms.is_some()
}

/// The size a writer set: what the application is asked for where the
/// target says, else what it runs at.
fn size(app: &AppState) -> u32 {
    app.asked_kpu.unwrap_or_else(|| app.kpu())
}

/// Records a rescale of the agent (`update`, which made the application
/// version `created`) that completed at `now_ms` with the application as
/// `app`: the size another writer's next update may undo. If the
/// application ended at a version id above `created`, moved back the way
/// the rescale came (RUNNING smaller than asked after a scale-out, larger
/// after a scale-in), another writer's update landed while the agent
/// followed its own and undid it: that is counted as an override at once,
/// as [`check`] counts one seen later, and the [`Event::StoodDown`] to
/// report is returned if it makes a fight. Not counted: a Flink job that
/// restarted by itself, or lost a TaskManager, while the agent followed
/// its rescale (it still asks for what the agent asked:
/// [`AppState::asked_kpu`]), and an update whose own version is not known
/// (`created` is `None`: the machine also passes `None` for one resumed
/// from the journal after a gap, when the override's time is not known)
/// or is the one it ended at (an update whose answer was lost, taken to
/// have applied when the version moved: it may not have, and the size
/// the application ended at be the one nobody changed).
pub fn own_rescale(
    record: &mut AppRecord,
    update: &Update,
    created: Option<u64>,
    app: &AppState,
    settings: &Settings,
    now_ms: i64,
) -> Option<Event> {
    let came_from = update.from_kpu.cmp(&update.target_kpu);
    if let Some(created) = created.filter(|created| app.version_id > *created)
        && came_from != Ordering::Equal
        && size(app).cmp(&update.target_kpu) == came_from
    {
        // The agent's rescale as asked, at the version it made: the
        // application's is above it, moved back, so `check` counts it.
        record.fight.own = Some(OwnRescale {
            from_kpu: update.from_kpu,
            kpu: update.target_kpu,
            version_id: created,
            at_ms: now_ms,
        });
        return check(record, app, settings, now_ms);
    }
    record.fight.own = Some(OwnRescale {
        from_kpu: update.from_kpu,
        kpu: size(app),
        version_id: app.version_id,
        at_ms: now_ms,
    });
    None
}

/// An evaluation at `now_ms` found the application as `state`. If it is
/// RUNNING, at a version id above the one the agent's last rescale ended
/// at, and moved back the way that rescale came (smaller after a
/// scale-out, larger after a scale-in), another writer undid it: it is
/// counted (whether the evaluation saw the other update as it happened or
/// only once it ended), and the [`Event::StoodDown`] to report is returned
/// if that makes a fight. Nothing is counted once the agent stood down,
/// nor in a dry run.
pub fn check(
    record: &mut AppRecord,
    state: &AppState,
    settings: &Settings,
    now_ms: i64,
) -> Option<Event> {
    if settings.dry_run || stood_down(record) || state.status != AppStatus::Running {
        return None;
    }
    let window = window_ms(settings);
    let fight = &mut record.fight;
    fight
        .overrides
        .retain(|o| now_ms.saturating_sub(o.seen_ms) <= window);
    let own = fight.own?;
    let came_from = own.from_kpu.cmp(&own.kpu);
    if state.version_id <= own.version_id
        || came_from == Ordering::Equal
        || size(state).cmp(&own.kpu) != came_from
        || state.rolled_back_from == Some(own.version_id)
    {
        // Nobody else updated it, or only restarted it (a Flink job's
        // restart, a configuration change), or took it further the way
        // the agent went (a second agent that agrees), or MSF rolled the
        // agent's rescale back after it was seen running (a failure, not
        // a writer): no override.
        return None;
    }
    fight.own = None;
    if now_ms.saturating_sub(own.at_ms) > window {
        // Long after the agent's rescale: a change of plan, not a fight.
        return None;
    }
    fight.overrides.push(Override {
        seen_ms: now_ms,
        updated_ms: state.last_update_ms,
        from_version_id: own.version_id,
        to_version_id: state.version_id,
        from_kpu: own.kpu,
        to_kpu: size(state),
        own_rescale_ms: own.at_ms,
    });
    if fight.overrides.len() < OVERRIDES_TO_STAND_DOWN {
        return None;
    }
    fight.stood_down_ms = Some(now_ms);
    Some(stood_down_event(record, settings, now_ms, false))
}

/// The [`Event::StoodDown`] that says the agent stands down for the
/// application as `record` says: at the evaluation that found the fight,
/// or (`restarted`) at the start of an agent that read it from the journal.
pub fn stood_down_event(
    record: &AppRecord,
    settings: &Settings,
    now_ms: i64,
    restarted: bool,
) -> Event {
    let fight = &record.fight;
    Event::StoodDown {
        application: settings.name.clone(),
        at_ms: now_ms,
        since_ms: fight.stood_down_ms.unwrap_or(now_ms),
        overrides: fight.overrides.clone(),
        updates: describe_overrides(&fight.overrides, settings.words),
        restarted,
    }
}

/// The overrides for people, in `words`: each one's versions, sizes and
/// times.
pub fn describe_overrides(overrides: &[Override], words: Words) -> String {
    overrides
        .iter()
        .map(|o| {
            let requested = o
                .updated_ms
                .map(|ms| format!(", requested at {}", iso(ms)))
                .unwrap_or_default();
            format!(
                "version {} -> {}: {} -> {} (this agent's rescale to {} completed at {}; the other update seen finished at {}{requested})",
                o.from_version_id,
                o.to_version_id,
                words.capacity(o.from_kpu),
                words.capacity(o.to_kpu),
                words.capacity(o.from_kpu),
                iso(o.own_rescale_ms),
                iso(o.seen_ms),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The decision an evaluation records while the agent stands down: a hold
/// that says what the policy wanted, as a dry run would have asked for
/// it. The machine sends nothing whatever the decision says; this makes
/// the history (`explain`) say so too.
pub fn hold_while_stood_down(
    record: &AppRecord,
    mut decision: Decision,
    settings: &Settings,
) -> Decision {
    let Some(since_ms) = record.fight.stood_down_ms else {
        return decision;
    };
    let Action::ScaleTo(kpu) = decision.action else {
        return decision;
    };
    decision.action = Action::Hold;
    decision.next_evaluation_secs = None;
    decision.reason.push_str(&format!(
        "; stood down since {} (another writer undid this agent's rescales): would have asked for {}, not sent until resumed (`flinkscale reload --resume {}`)",
        iso(since_ms),
        settings.words.capacity(kpu),
        settings.name
    ));
    decision
}

/// Ends a stand-down at an operator's word (`flinkscale reload --resume`:
/// the other writer was stopped), and forgets the overrides and the
/// agent's last rescale, so that a fight must be seen afresh. Returns the
/// [`Event::StandDownLifted`] to report, if the agent had stood down.
pub fn lift(record: &mut AppRecord, settings: &Settings, now_ms: i64) -> Option<Event> {
    let since_ms = record.fight.stood_down_ms?;
    record.fight = Fight::default();
    Some(Event::StandDownLifted {
        application: settings.name.clone(),
        at_ms: now_ms,
        since_ms,
        reason: "resumed by a configuration reload that asked for it (`flinkscale reload \
                 --resume`): updates are sent again"
            .to_owned(),
    })
}

/// The applications a configuration reload resumes (`flinkscale reload
/// --resume NAME`): shared between the agent, which fills it at each
/// reload, and its controllers, each of which takes its own name when the
/// reload reaches it and ends its stand-down ([`lift`]) only then. A
/// reload that does not ask leaves every stand-down in force: a reload
/// made for another application (one added, a threshold changed) must not
/// restart a fight the operator has not ended.
#[derive(Debug, Clone, Default)]
pub struct Resumes(Arc<Mutex<BTreeSet<String>>>);

impl Resumes {
    /// Asks for `names` too. A name stays asked until its controller
    /// takes it: one busy in a step when a reload asks takes it at its
    /// next wait, even if another reload came meanwhile; a paused
    /// application's controller takes it when a reload resumes its
    /// evaluations.
    pub fn ask(&self, names: BTreeSet<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(names);
    }

    /// Whether `name` was asked for, which it no longer is after this.
    pub fn take(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::QuarantinePolicy;
    use std::time::Duration;

    /// Fails before stop 57's review: each reload replaced the names asked,
    /// so a reload that came while the resumed controller was busy in a
    /// step (a slow read) dropped its request, the file already removed.
    #[test]
    fn a_resume_stays_asked_until_its_controller_takes_it() {
        let resumes = Resumes::default();
        resumes.ask(["a".to_owned()].into());
        resumes.ask(BTreeSet::new());
        resumes.ask(["b".to_owned()].into());
        assert!(resumes.take("a"));
        assert!(!resumes.take("a"), "taken once");
        assert!(resumes.take("b"));
        assert!(!resumes.take("c"));
    }

    const T: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;

    fn settings() -> Settings {
        Settings {
            name: "app".to_owned(),
            min_kpu: 1,
            max_kpu: 10,
            evaluation_interval: Duration::from_secs(60),
            update_poll: Duration::from_secs(10),
            update_timeout: Duration::from_secs(600),
            grace_period: Duration::from_secs(300),
            dry_run: false,
            words: Words::Msf,
            quarantine: QuarantinePolicy::DEFAULT,
            lazy_polling: false,
        }
    }

    fn state(kpu: u32, version_id: u64) -> AppState {
        AppState {
            status: AppStatus::Running,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            version_id,
            autoscaling_enabled: false,
            last_update_ms: None,
            identity: None,
            asked_kpu: None,
            rolled_back_from: None,
        }
    }

    #[test]
    fn the_window_is_an_hour_or_two_override_cycles() {
        assert_eq!(window_ms(&settings()), 3_600_000);
        let slow = Settings {
            update_timeout: Duration::from_secs(1800),
            grace_period: Duration::from_secs(900),
            ..settings()
        };
        assert_eq!(window_ms(&slow), 5_400_000);
    }

    /// The agent's update from `from_kpu` to `to_kpu`, quoting `version`.
    fn update(from_kpu: u32, to_kpu: u32, version: u64) -> Update {
        Update {
            target_kpu: to_kpu,
            from_kpu,
            quoted_version_id: version,
            reason: "test".to_owned(),
            started_ms: T - 2 * MIN,
        }
    }

    /// The agent's rescale from 2 KPU to `kpu` ended at version `version`
    /// at `at_ms`.
    fn own(record: &mut AppRecord, kpu: u32, version: u64, at_ms: i64) {
        let ended = own_rescale(
            record,
            &update(2, kpu, version - 1),
            Some(version),
            &state(kpu, version),
            &settings(),
            at_ms,
        );
        assert_eq!(ended, None);
    }

    #[test]
    fn two_overrides_of_the_agents_rescales_stand_it_down() {
        let s = settings();
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        assert_eq!(check(&mut record, &state(4, 2), &s, T + MIN), None);
        assert_eq!(check(&mut record, &state(2, 3), &s, T + 5 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
        assert!(!stood_down(&record));
        own(&mut record, 4, 4, T + 12 * MIN);
        let event = check(&mut record, &state(2, 5), &s, T + 17 * MIN)
            .expect("the second override stands the agent down");
        assert!(stood_down(&record));
        let Event::StoodDown {
            since_ms,
            overrides,
            updates,
            restarted,
            ..
        } = event
        else {
            panic!("{event:?}");
        };
        assert_eq!((since_ms, restarted), (T + 17 * MIN, false));
        assert_eq!(overrides.len(), 2);
        assert_eq!(
            (overrides[1].from_version_id, overrides[1].to_version_id),
            (4, 5)
        );
        assert_eq!(
            updates,
            "version 2 -> 3: 4 KPU -> 2 KPU (this agent's rescale to 4 KPU completed at 2023-11-14T22:13:20Z; the other update seen finished at 2023-11-14T22:18:20Z); \
             version 4 -> 5: 4 KPU -> 2 KPU (this agent's rescale to 4 KPU completed at 2023-11-14T22:25:20Z; the other update seen finished at 2023-11-14T22:30:20Z)"
        );
        // Nothing more is counted once stood down.
        own(&mut record, 4, 6, T + 20 * MIN);
        assert_eq!(check(&mut record, &state(1, 7), &s, T + 25 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 2);
    }

    #[test]
    fn a_flink_job_on_fewer_slots_than_it_asks_for_is_no_override() {
        // After the agent's 2 -> 8, a TaskManager dies: Flink restarts the
        // job (the version moves) on the 4 slots left, still asking for 8.
        // Nobody wrote that size. Another agent's PUT to 2 is an override.
        let s = settings();
        let mut record = AppRecord::default();
        let on = |running: u32, asked: u32, version: u64| AppState {
            asked_kpu: Some(asked),
            rolled_back_from: None,
            ..state(running, version)
        };
        own_rescale(&mut record, &update(2, 8, 1), Some(2), &on(8, 8, 2), &s, T);
        assert_eq!(check(&mut record, &on(4, 8, 3), &s, T + MIN), None);
        assert!(record.fight.overrides.is_empty());
        assert_eq!(check(&mut record, &on(2, 2, 4), &s, T + 2 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
        assert_eq!(
            (
                record.fight.overrides[0].from_kpu,
                record.fight.overrides[0].to_kpu
            ),
            (8, 2)
        );
    }

    #[test]
    fn changes_without_a_rescale_of_the_agent_between_them_count_once() {
        // After the agent's 2 -> 4, a person sets 1 KPU, then 3, then 1
        // again: one override.
        let s = settings();
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        for (i, kpu) in [1, 3, 1].into_iter().enumerate() {
            let v = 3 + i as u64;
            assert_eq!(check(&mut record, &state(kpu, v), &s, T + MIN), None);
        }
        assert_eq!(record.fight.overrides.len(), 1);
        assert!(!stood_down(&record));
    }

    #[test]
    fn restarts_agreeing_writers_and_busy_applications_are_no_override() {
        // A Flink job's restarts: the version moves, the parallelism not.
        let s = settings();
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        for v in 3..10 {
            assert_eq!(check(&mut record, &state(4, v), &s, T + MIN), None);
        }
        // A second agent that agrees takes it further out: no undoing.
        assert_eq!(check(&mut record, &state(8, 10), &s, T + MIN), None);
        // Another writer's update still in progress is judged when it ends.
        let busy = AppState {
            status: AppStatus::Updating,
            ..state(3, 11)
        };
        assert_eq!(check(&mut record, &busy, &s, T + MIN), None);
        assert!(record.fight.overrides.is_empty());
        // The agent's rescale is still the size that counts.
        assert_eq!(record.fight.own.map(|o| o.kpu), Some(4));
        assert_eq!(check(&mut record, &state(3, 11), &s, T + 2 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
        // A rescale of the agent that ended where it started has no way
        // to be undone.
        own_rescale(
            &mut record,
            &update(3, 3, 11),
            Some(12),
            &state(3, 12),
            &s,
            T + 3 * MIN,
        );
        assert_eq!(check(&mut record, &state(1, 13), &s, T + 4 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
    }

    #[test]
    fn overrides_outside_the_window_do_not_count() {
        let s = settings();
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        check(&mut record, &state(2, 3), &s, T + MIN);
        // The second override comes more than an hour after the first.
        own(&mut record, 4, 4, T + 40 * MIN);
        assert_eq!(check(&mut record, &state(2, 5), &s, T + 62 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
        // A change long after the agent's own rescale is no override.
        own(&mut record, 4, 6, T + 70 * MIN);
        assert_eq!(
            check(&mut record, &state(2, 7), &s, T + 70 * MIN + 3_600_001),
            None
        );
        assert_eq!(record.fight.overrides.len(), 0);
        assert!(!stood_down(&record));
    }

    #[test]
    fn a_dry_run_never_stands_down() {
        let s = Settings {
            dry_run: true,
            ..settings()
        };
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        check(&mut record, &state(2, 3), &s, T + MIN);
        own(&mut record, 4, 4, T + 2 * MIN);
        assert_eq!(check(&mut record, &state(2, 5), &s, T + 3 * MIN), None);
        assert!(!stood_down(&record));
    }

    #[test]
    fn another_writers_update_landing_while_the_agent_follows_its_rescale_counts() {
        // The agent asks 2 -> 4 quoting version 1 (its update makes
        // version 2); before its rescale ends, another writer sets 2 KPU
        // (version 3): the rescale ends RUNNING at 2. That undid it as
        // surely as an update seen later.
        let s = settings();
        let mut record = AppRecord::default();
        let ended = own_rescale(&mut record, &update(2, 4, 1), Some(2), &state(2, 3), &s, T);
        assert_eq!(ended, None);
        assert_eq!(record.fight.overrides.len(), 1);
        let o = &record.fight.overrides[0];
        assert_eq!(
            (o.from_version_id, o.to_version_id, o.from_kpu, o.to_kpu),
            (2, 3, 4, 2)
        );
        assert_eq!((o.own_rescale_ms, o.seen_ms), (T, T));
        // Counted once: the evaluations after it find nothing more to
        // count, however often the other writer changes it again.
        assert_eq!(check(&mut record, &state(2, 3), &s, T + 5 * MIN), None);
        assert_eq!(check(&mut record, &state(1, 4), &s, T + 6 * MIN), None);
        assert_eq!(record.fight.overrides.len(), 1);
        // A scale-in undone the same way (4 -> 2 ends at 5 KPU) is the
        // second override: a fight.
        let event = own_rescale(
            &mut record,
            &update(4, 2, 5),
            Some(6),
            &state(5, 7),
            &s,
            T + 12 * MIN,
        )
        .expect("the second override stands the agent down");
        assert!(stood_down(&record));
        let Event::StoodDown { overrides, .. } = event else {
            panic!("{event:?}");
        };
        assert_eq!(
            overrides
                .iter()
                .map(|o| (o.from_version_id, o.to_version_id, o.from_kpu, o.to_kpu))
                .collect::<Vec<_>>(),
            [(2, 3, 4, 2), (6, 7, 2, 5)]
        );
    }

    #[test]
    fn a_rescale_ending_elsewhere_without_an_update_after_its_own_is_no_override() {
        let s = settings();
        let mut record = AppRecord::default();
        // 2 -> 4 ends at 8 (a second agent that agrees): the size to undo
        // is 8.
        assert_eq!(
            own_rescale(&mut record, &update(2, 4, 1), Some(2), &state(8, 3), &s, T),
            None
        );
        assert_eq!(
            record.fight.own.map(|o| (o.kpu, o.version_id)),
            Some((8, 3))
        );
        // An update whose answer was lost, taken to have applied when the
        // version moved (to 5): it ends at 2 KPU at that version, which
        // may be nobody's change of size. Nor is one whose own version is
        // unknown (or, followed across a restart of the agent, when it
        // came is).
        own_rescale(
            &mut record,
            &update(2, 4, 4),
            Some(5),
            &state(2, 5),
            &s,
            T + MIN,
        );
        own_rescale(
            &mut record,
            &update(2, 4, 5),
            None,
            &state(2, 7),
            &s,
            T + MIN,
        );
        assert!(record.fight.overrides.is_empty());
        assert_eq!(
            record.fight.own.map(|o| (o.kpu, o.version_id)),
            Some((2, 7))
        );
        // 2 -> 4 ends at 3: moved back part of the way (another writer's
        // 3 KPU): counted.
        own_rescale(
            &mut record,
            &update(2, 4, 7),
            Some(8),
            &state(3, 9),
            &s,
            T + MIN,
        );
        assert_eq!(record.fight.overrides.len(), 1);
        // A dry run counts nothing.
        let dry = Settings {
            dry_run: true,
            ..settings()
        };
        let mut record = AppRecord::default();
        own_rescale(
            &mut record,
            &update(2, 4, 1),
            Some(2),
            &state(2, 3),
            &dry,
            T,
        );
        assert!(record.fight.overrides.is_empty());
    }

    #[test]
    fn a_flink_job_restarting_or_losing_a_taskmanager_under_the_agents_rescale_is_no_override() {
        // The agent asks a Flink job 2 -> 8. While it follows the rescale,
        // the job restarts by itself (the version moves twice) and a
        // TaskManager dies: it ends RUNNING on 4 slots, still asking for 8.
        let s = settings();
        let mut record = AppRecord::default();
        let on = |running: u32, asked: u32, version: u64| AppState {
            asked_kpu: Some(asked),
            rolled_back_from: None,
            ..state(running, version)
        };
        assert_eq!(
            own_rescale(&mut record, &update(2, 8, 1), Some(2), &on(4, 8, 4), &s, T),
            None
        );
        assert!(record.fight.overrides.is_empty());
        assert_eq!(record.fight.own.map(|o| o.kpu), Some(8));
        // Another writer's PUT to 2 while the agent follows its next
        // rescale (8 -> 16 asked, the job asks for 2): an override.
        own_rescale(
            &mut record,
            &update(8, 16, 5),
            Some(6),
            &on(2, 2, 7),
            &s,
            T + 10 * MIN,
        );
        assert_eq!(record.fight.overrides.len(), 1);
        assert_eq!(
            (
                record.fight.overrides[0].from_kpu,
                record.fight.overrides[0].to_kpu
            ),
            (16, 2)
        );
    }

    #[test]
    fn an_old_journal_loads_and_a_stand_down_survives_a_round_trip() {
        let old: AppRecord =
            serde_json::from_str(r#"{"phase": {"kind": "idle"}, "seen_version_id": 3}"#)
                .expect("a journal written before the fight was kept");
        assert_eq!(old.fight, Fight::default());
        let written = serde_json::to_string(&old).expect("JSON");
        assert!(!written.contains("fight"), "{written}");
        let s = settings();
        let mut record = AppRecord::default();
        own(&mut record, 4, 2, T);
        check(&mut record, &state(2, 3), &s, T + MIN);
        own(&mut record, 4, 4, T + 2 * MIN);
        check(&mut record, &state(2, 5), &s, T + 3 * MIN);
        let text = serde_json::to_string(&record).expect("JSON");
        let back: AppRecord = serde_json::from_str(&text).expect("loads back");
        assert_eq!(back, record);
        assert!(stood_down(&back));
    }

    #[test]
    fn a_stood_down_machine_sends_nothing_whatever_the_decision_says() {
        use crate::controller::machine::{Command, Evaluated, Jitter, Machine, Next, Observation};
        let s = settings();
        let evaluated = |machine: &mut Machine| {
            machine.step(
                Observation::Evaluated(Ok(Evaluated {
                    state: state(2, 3),
                    decision: Decision {
                        action: Action::ScaleTo(4),
                        reason: "high in ALARM".to_owned(),
                        next_evaluation_secs: None,
                    },
                })),
                &s,
                T,
            )
        };
        let mut machine = Machine::new(Jitter::new(1));
        machine.record.seen_version_id = Some(3);
        machine.record.fight.stood_down_ms = Some(T - MIN);
        let step = evaluated(&mut machine);
        assert_eq!(step.next, Next::Wait(s.evaluation_interval));
        assert_eq!(machine.record.phase, crate::state::Phase::Idle);
        // Lifted, the same decision is sent.
        lift(&mut machine.record, &s, T);
        let step = evaluated(&mut machine);
        assert!(
            matches!(step.next, Next::Run(Command::Update { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn the_history_says_what_would_have_been_asked_and_a_reload_lifts_it() {
        let s = settings();
        let mut record = AppRecord::default();
        let wants = Decision {
            action: Action::ScaleTo(4),
            reason: "high in ALARM".to_owned(),
            next_evaluation_secs: None,
        };
        assert_eq!(hold_while_stood_down(&record, wants.clone(), &s), wants);
        assert_eq!(lift(&mut record, &s, T), None);
        record.fight.stood_down_ms = Some(T);
        own(&mut record, 4, 2, T);
        let held = hold_while_stood_down(&record, wants, &s);
        assert_eq!(held.action, Action::Hold);
        assert_eq!(
            held.reason,
            "high in ALARM; stood down since 2023-11-14T22:13:20Z (another writer undid this agent's rescales): would have asked for 4 KPU, not sent until resumed (`flinkscale reload --resume app`)"
        );
        let Some(Event::StandDownLifted { since_ms, .. }) = lift(&mut record, &s, T + MIN) else {
            panic!("a stand-down is lifted");
        };
        assert_eq!(since_ms, T);
        assert_eq!(record.fight, Fight::default());
        assert!(!stood_down(&record));
    }
}
