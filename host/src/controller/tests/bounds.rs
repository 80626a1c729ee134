//! The configured bounds hold what runs, not only what is decided: a size
//! outside `[min_kpu, max_kpu]` (another writer's, or bounds a reload
//! moved) is brought to the nearest bound even when the policy holds. A
//! recorded KPU limit is no such bound: it stops growth, never shrinks.

use super::*;
use crate::state::KpuLimit;

/// One evaluation and its action for an application running at `kpu`
/// under `min_kpu`/`max_kpu`, with CPU at 50 % (neither alarm: the policy
/// holds); the target's updates and the decision's reason.
async fn held_at(kpu: u32, min_kpu: u32, max_kpu: u32, flink: bool) -> (Vec<(u64, u32)>, String) {
    let target = FakeTarget::new(kpu, 90);
    let mut app = test_app();
    app.min_kpu = min_kpu;
    app.max_kpu = max_kpu;
    if flink {
        app.target = crate::config::TargetKind::Flink;
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut controller = Controller::new(
        &app,
        false,
        constant(50.0),
        target.clone(),
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::with_channel(tx),
    );
    let assessment = controller.evaluate().await.expect("evaluates");
    controller.act(&assessment).await;
    (target.updates(), assessment.decision.reason)
}

#[tokio::test(start_paused = true)]
async fn a_size_above_max_kpu_is_brought_down_though_the_policy_holds() {
    let (updates, reason) = held_at(4, 1, 2, false).await;
    assert_eq!(updates, vec![(0, 2)]);
    assert_eq!(
        reason,
        "no alarm; 4 KPU is above max_kpu 2: brought to 2 KPU"
    );
}

#[tokio::test(start_paused = true)]
async fn a_size_below_min_kpu_is_brought_up_though_the_policy_holds() {
    let (updates, reason) = held_at(1, 3, 10, false).await;
    assert_eq!(updates, vec![(0, 3)]);
    assert_eq!(
        reason,
        "no alarm; 1 KPU is below min_kpu 3: brought to 3 KPU"
    );
}

#[tokio::test(start_paused = true)]
async fn min_equal_to_max_holds_a_flink_job_at_that_size_in_its_words() {
    let (updates, reason) = held_at(2, 1, 1, true).await;
    assert_eq!(updates, vec![(0, 1)]);
    assert_eq!(
        reason,
        "no alarm; parallelism 2 is above max_parallelism 1: brought to parallelism 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_size_within_the_bounds_is_held() {
    let (updates, reason) = held_at(4, 1, 10, false).await;
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(reason, "no alarm");
}

/// A Flink cluster short of slots records a ceiling below what the job
/// runs at (a TaskManager died after the job grew): the job is not
/// shrunk to it, only kept from growing.
#[test]
fn a_kpu_limit_below_what_runs_shrinks_nothing() {
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    machine.record.kpu_limit = Some(KpuLimit {
        refused_kpu: 5,
        at_ms: T0_MS,
        usable_kpu: Some(2),
    });
    let app = Application {
        name: "app".into(),
        status: AppStatus::Running,
        kpu: 4,
        parallelism: 4,
        parallelism_per_kpu: 1,
        min_kpu: settings.min_kpu,
        max_kpu: machine.max_kpu(&settings, 4, T0_MS),
        version_id: 1,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    };
    assert_eq!(
        app.max_kpu, 4,
        "the ceiling is below what runs: growth stops there"
    );
    let held = machine.refine(&settings, Decision::hold("no alarm"), &app, T0_MS);
    assert_eq!(held.action, Action::Hold);
}

/// A floor above the free slots a refusal reported is held, even below
/// the parallelism that refusal was for: asked for 8 on 4 free slots,
/// `min_parallelism` 6 would be refused too.
#[test]
fn a_floor_above_the_free_slots_a_refusal_reported_is_held() {
    let mut app_config = test_app();
    app_config.min_kpu = 6;
    let settings = Settings::from_config(&app_config, false);
    let mut machine = Machine::new(Jitter::new(1));
    machine.record.kpu_limit = Some(KpuLimit {
        refused_kpu: 8,
        at_ms: T0_MS,
        usable_kpu: Some(4),
    });
    let app = Application {
        name: "app".into(),
        status: AppStatus::Running,
        kpu: 2,
        parallelism: 2,
        parallelism_per_kpu: 1,
        min_kpu: settings.min_kpu,
        max_kpu: machine.max_kpu(&settings, 2, T0_MS),
        version_id: 1,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    };
    let held = machine.refine(&settings, Decision::hold("no alarm"), &app, T0_MS);
    assert_eq!(held.action, Action::Hold, "{held:?}");
    assert!(
        held.reason
            .contains("refused 8 KPU (at most 4 KPU), below min_kpu 6"),
        "{held:?}"
    );
}

/// A KPU limit journaled while the wall clock ran a day ahead: the first
/// step after the clock stepped back takes it as met no later than now,
/// so that it lifts an hour from then, not a day and an hour.
#[test]
fn a_clock_stepped_back_does_not_stretch_a_kpu_limit() {
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    let day_ms = 86_400_000;
    machine.record.kpu_limit = Some(KpuLimit {
        refused_kpu: 4,
        at_ms: T0_MS + day_ms,
        usable_kpu: None,
    });
    let hour_later = T0_MS + crate::controller::machine::LIMIT_RETRY_MS;
    assert_eq!(machine.max_kpu(&settings, 2, hour_later), 3);
    machine.step(Observation::Wake, &settings, T0_MS);
    assert_eq!(machine.record.kpu_limit.map(|l| l.at_ms), Some(T0_MS));
    assert_eq!(machine.max_kpu(&settings, 2, hour_later - 1), 3);
    assert_eq!(
        machine.max_kpu(&settings, 2, hour_later),
        settings.max_kpu,
        "the limit lifts an hour after the step"
    );
}

/// A held size that the size running shows wrong holds nothing at the
/// evaluation that finds it (an operator set 4 KPU by hand after 2 -> 4
/// was rolled back, and it runs): 4 -> 8 goes out at once, and the step
/// lifts the hold, said once. From the size it was rolled back to, the
/// hold still holds.
#[test]
fn a_held_size_the_running_size_shows_wrong_holds_nothing() {
    use crate::controller::machine::{Command, Next};
    use crate::state::RefusedTarget;
    let settings = Settings::from_config(&test_app(), false);
    let at = |kpu: u32| {
        let mut machine = Machine::new(Jitter::new(1));
        machine.record.refused = Some(RefusedTarget {
            kpu: 4,
            until_ms: T0_MS + 3_600_000,
            rolled_back_to: Some(2),
        });
        let app = Application {
            name: "app".into(),
            status: AppStatus::Running,
            kpu,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            min_kpu: settings.min_kpu,
            max_kpu: settings.max_kpu,
            version_id: 3,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        };
        let wants = Decision {
            action: Action::ScaleTo(8),
            reason: "high in ALARM".to_owned(),
            next_evaluation_secs: None,
        };
        let decision = machine.refine(&settings, wants, &app, T0_MS);
        (machine, decision)
    };
    let (_, held) = at(2);
    assert_eq!(held.action, Action::Hold, "{held:?}");
    assert!(held.reason.contains("was rolled back"), "{held:?}");
    let (mut machine, decided) = at(4);
    assert_eq!(decided.action, Action::ScaleTo(8), "{decided:?}");
    let state = AppState {
        parallelism: 4,
        version_id: 3,
        ..running()
    };
    machine.record.seen_version_id = Some(3);
    let step = step_evaluated(&mut machine, state, decided, &settings, T0_MS);
    assert!(
        matches!(&step.next, Next::Run(Command::Update { update, .. }) if update.target_kpu == 8),
        "{step:?}"
    );
    let lifted = step
        .events
        .iter()
        .filter(|e| matches!(e, Event::RefusalLifted { kpu: 4, .. }))
        .count();
    assert_eq!(lifted, 1, "{step:?}");
    assert_eq!(machine.record.refused, None);
}
