//! Another writer fighting the agent over the application's size: the
//! agent stands down after the second override of its rescales and sends
//! nothing more, also after a restart, until a reload that asks to resume
//! it; one manual change
//! and restarts that keep the size never make it stand down.

use std::path::Path;

use super::*;
use crate::state::{AppRecord, Fight, JournalFile, Override, StateStore};

/// Starts a controller on the journal in `dir`, deciding with [`Doubling`]
/// at 95 % CPU; with `lifts`, a reload is a change sent on it, which
/// resumes the application if its [`crate::controller::fight::Resumes`] names it.
fn launch(
    target: &Arc<FakeTarget>,
    dir: &Path,
    lifts: Option<(watch::Receiver<u64>, crate::controller::fight::Resumes)>,
) -> Running {
    let mut journal = StateStore::open(dir)
        .expect("state folder")
        .journal("app")
        .expect("journal");
    let loaded = journal.load();
    Running::launch(
        target.origin,
        target.clone(),
        constant(95.0),
        Box::new(Doubling),
        Vec::new(),
        |c| {
            let c = c.with_journal(journal, loaded);
            match lifts {
                Some((lifts, resumes)) => c.with_ceiling_lifts(lifts).with_resumes(resumes),
                None => c,
            }
        },
    )
}

fn journaled(dir: &Path) -> JournalFile {
    let text = std::fs::read_to_string(dir.join("app.json")).expect("a journal");
    serde_json::from_str(&text).expect("a valid journal")
}

/// Each stand-down said: when (s), the overrides (versions and sizes),
/// and whether an agent's start read it from the journal.
type Said = (i64, Vec<(u64, u64, u32, u32)>, bool);

fn stood_down(events: &[Event]) -> Vec<Said> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StoodDown {
                at_ms,
                overrides,
                restarted,
                ..
            } => Some((
                (at_ms - T0_MS) / 1000,
                overrides
                    .iter()
                    .map(|o| (o.from_version_id, o.to_version_id, o.from_kpu, o.to_kpu))
                    .collect(),
                *restarted,
            )),
            _ => None,
        })
        .collect()
}

/// The agent (Doubling, from 2 KPU) against somebody who sets 2 KPU back
/// at 200 s and at 1 000 s, inside the agent's grace periods after its
/// rescales to 4 KPU: the run's events until `end_secs`, with the
/// controller killed at `kill_secs` and started again on its journal.
async fn fight(dir: &Path, target: &Arc<FakeTarget>, kill_secs: u64, end_secs: u64) -> Vec<Event> {
    let run = launch(target, dir, None);
    // The agent: 2 -> 4 at 0 s (version 2), RUNNING at 120 s, grace to
    // 420 s. The other writer: 2 KPU at 200 s (version 3).
    until(target, 200).await;
    assert_eq!(set_by_another_writer(target, 2), 3);
    // 420 s: the first override (4 -> 2), waited out to 720 s; the agent
    // scales to 4 again (version 4), RUNNING at 840 s, grace to 1 140 s.
    // The other writer: 2 KPU again at 1 000 s (version 5).
    until(target, 1000).await;
    assert_eq!(set_by_another_writer(target, 2), 5);
    until(target, kill_secs).await;
    let mut events = run.kill().await;
    let again = launch(target, dir, None);
    until(target, end_secs).await;
    events.extend(again.stop().await);
    events
}

#[tokio::test(start_paused = true)]
async fn the_second_override_stands_the_agent_down_and_nothing_more_is_sent_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    let events = fight(dir.path(), &target, 1200, 4000).await;
    // The first override leaves the agent acting (its second update goes
    // out at 720 s); the second, seen at 1 140 s, stands it down: nothing
    // is sent after, though the policy wants 4 KPU at every evaluation,
    // and the agent restarted at 1 200 s says so again from its journal.
    assert_eq!(target.updates(), vec![(0, 4), (720, 4)]);
    assert_eq!(
        stood_down(&events),
        [
            (1140, vec![(2, 3, 4, 2), (4, 5, 4, 2)], false),
            (1200, vec![(2, 3, 4, 2), (4, 5, 4, 2)], true),
        ]
    );
    assert_eq!(failures(&events, "foreign_update").len(), 2, "{events:?}");
    let said = events
        .iter()
        .find_map(|e| match e {
            Event::StoodDown { updates, .. } => Some(updates.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        said.starts_with(
            "version 2 -> 3: 4 KPU -> 2 KPU (this agent's rescale to 4 KPU completed at "
        ) && said.contains("; version 4 -> 5: 4 KPU -> 2 KPU"),
        "{said}"
    );
    // It goes on evaluating, and the history says what it would have done.
    let later: Vec<_> = evaluations(&events)
        .into_iter()
        .filter(|(t, _)| *t >= 1440)
        .collect();
    assert!(later.len() > 30, "{later:?}");
    for (t, decision) in &later {
        assert_eq!(decision.action, Action::Hold, "{t}: {decision:?}");
        assert!(
            decision.reason.contains(
                "would have asked for 4 KPU, not sent until resumed (`flinkscale reload --resume app`)"
            ),
            "{t}: {decision:?}"
        );
    }
    let fight = journaled(dir.path()).record.fight;
    assert_eq!(fight.stood_down_ms, Some(T0_MS + 1_140_000));
    assert_eq!(fight.overrides.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn one_manual_change_does_not_stand_the_agent_down() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path(), None);
    until(&target, 200).await;
    set_by_another_writer(&target, 2);
    until(&target, 2500).await;
    let events = run.stop().await;
    // Waited out, then the agent goes on: 2 -> 4 at 720 s, 4 -> 8 at
    // 1 140 s, 8 -> 10 (its max) at 1 560 s.
    assert_eq!(
        target.updates(),
        vec![(0, 4), (720, 4), (1140, 8), (1560, 10)]
    );
    assert!(stood_down(&events).is_empty(), "{events:?}");
    let fight = journaled(dir.path()).record.fight;
    assert_eq!(fight.overrides.len(), 1, "{fight:?}");
    assert_eq!(fight.stood_down_ms, None);
}

#[tokio::test(start_paused = true)]
async fn restarts_that_keep_the_size_never_stand_the_agent_down() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path(), None);
    // A restart inside every grace period after the agent's rescales (a
    // Flink job's: the version moves, the parallelism stays).
    for at in [200, 1000, 1700] {
        until(&target, at).await;
        let kpu = target.state.lock().unwrap().parallelism;
        set_by_another_writer(&target, kpu);
    }
    until(&target, 3000).await;
    let events = run.stop().await;
    // Each is waited out (a grace period), and the agent goes on.
    assert_eq!(target.updates(), vec![(0, 4), (720, 8), (1440, 10)]);
    assert_eq!(failures(&events, "foreign_update").len(), 3, "{events:?}");
    assert!(stood_down(&events).is_empty(), "{events:?}");
    assert!(journaled(dir.path()).record.fight.overrides.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_configuration_reload_resumes_a_stood_down_agent_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    // A journal that stood down an hour ago (the agent was stopped since).
    let overrides = vec![Override {
        seen_ms: T0_MS - 3_600_000,
        updated_ms: None,
        from_version_id: 4,
        to_version_id: 5,
        from_kpu: 4,
        to_kpu: 2,
        own_rescale_ms: T0_MS - 3_900_000,
    }];
    let record = AppRecord {
        seen_version_id: Some(1),
        fight: Fight {
            own: None,
            overrides,
            stood_down_ms: Some(T0_MS - 3_600_000),
        },
        ..AppRecord::default()
    };
    let mut journal = StateStore::open(dir.path())
        .unwrap()
        .journal("app")
        .unwrap();
    journal.save(&record, T0_MS).unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    let (reload, reloads) = watch::channel(0u64);
    let resumes = crate::controller::fight::Resumes::default();
    let run = launch(&target, dir.path(), Some((reloads, resumes.clone())));
    until(&target, 270).await;
    // Stood down: evaluated every minute, nothing sent.
    assert!(target.updates().is_empty());
    assert!(journaled(dir.path()).record.fight.stood_down_ms.is_some());
    // Fails before stop 57: a reload that does not ask (made for another
    // application, say) ended the stand-down, and the fight went on.
    resumes.ask(["other".to_owned()].into());
    reload.send_modify(|n| *n += 1);
    until(&target, 330).await;
    assert!(target.updates().is_empty());
    assert!(journaled(dir.path()).record.fight.stood_down_ms.is_some());
    resumes.ask(["app".to_owned()].into());
    reload.send_modify(|n| *n += 1);
    until(&target, 400).await;
    let events = run.stop().await;
    // The reload that asks (at 330 s) lifts it, the journal forgets the
    // fight, and the next evaluation (360 s) acts.
    assert_eq!(target.updates(), vec![(360, 4)]);
    let lifted: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::StandDownLifted {
                at_ms, since_ms, ..
            } => Some(((at_ms - T0_MS) / 1000, (since_ms - T0_MS) / 1000)),
            _ => None,
        })
        .collect();
    assert_eq!(lifted, [(330, -3600)]);
    assert_eq!(stood_down(&events), [(0, vec![(4, 5, 4, 2)], true)]);
    let file = journaled(dir.path());
    assert_eq!(file.record.fight.stood_down_ms, None);
    assert!(file.record.fight.overrides.is_empty());
}

/// Somebody else sets `kpu` while the application is UPDATING for the
/// agent's rescale: the version id moves, and the update ends at `kpu`.
fn set_during_the_agents_rescale(target: &FakeTarget, kpu: u32) -> u64 {
    let mut s = target.state.lock().unwrap();
    assert_eq!(s.status, AppStatus::Updating, "the agent's rescale is over");
    s.version_id += 1;
    s.pending_parallelism = kpu;
    s.version_id
}

/// Another writer whose updates land while the agent still follows its
/// own rescales: each rescale ends RUNNING at the other writer's size
/// ("RUNNING at 2 KPU, not the 4 KPU requested"). Before, that was said
/// but never counted, so this fight went on for as long as both ran; now
/// each counts once, and the second stands the agent down.
#[tokio::test(start_paused = true)]
async fn updates_landing_while_the_agent_follows_its_rescales_stand_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path(), None);
    // The agent: 2 -> 4 at 0 s (version 2), under way until 90 s. The
    // other writer: 2 KPU at 30 s (version 3). Seen RUNNING at 2 KPU at
    // the poll at 120 s; grace to 420 s.
    until(&target, 30).await;
    assert_eq!(set_during_the_agents_rescale(&target, 2), 3);
    // The agent: 2 -> 4 again at 420 s (version 4), under way until
    // 510 s; the other writer: 2 KPU at 450 s (version 5), seen at 540 s.
    until(&target, 450).await;
    assert_eq!(set_during_the_agents_rescale(&target, 2), 5);
    until(&target, 2000).await;
    let events = run.stop().await;
    assert_eq!(target.updates(), vec![(0, 4), (420, 4)]);
    let ended = failures(&events, "update_result");
    assert_eq!(
        ended,
        [
            "application is RUNNING at 2 KPU, not the 4 KPU requested",
            "application is RUNNING at 2 KPU, not the 4 KPU requested"
        ],
        "{events:?}"
    );
    // Counted from the version each rescale made to the one it ended at.
    assert_eq!(
        stood_down(&events),
        [(540, vec![(2, 3, 4, 2), (4, 5, 4, 2)], false)]
    );
    let fight = journaled(dir.path()).record.fight;
    assert_eq!(fight.stood_down_ms, Some(T0_MS + 540_000));
}

/// A restart that keeps the size while the agent follows its rescale (the
/// version moves again, the update ends at the size asked): no override,
/// however often.
#[tokio::test(start_paused = true)]
async fn restarts_under_the_agents_rescales_never_stand_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path(), None);
    for at in [30, 450, 870] {
        until(&target, at).await;
        let asked = target.state.lock().unwrap().pending_parallelism;
        set_during_the_agents_rescale(&target, asked);
    }
    until(&target, 2000).await;
    let events = run.stop().await;
    assert_eq!(
        target.updates(),
        vec![(0, 4), (420, 8), (840, 10)],
        "{events:?}"
    );
    assert!(failures(&events, "update_result").is_empty(), "{events:?}");
    assert!(stood_down(&events).is_empty(), "{events:?}");
    assert!(journaled(dir.path()).record.fight.overrides.is_empty());
}
