//! The application replaced under the agent (a Flink job resubmitted, or
//! resubmitted by a JobManager restarted without HA; an MSF application
//! deleted and created again), and a version id moved by something other
//! than the agent's update whose answer was lost (a Flink job's own
//! restart): neither is taken for the agent's rescale.

use super::*;

/// [`test_app`] as a self-managed Flink job.
fn flink_app() -> ApplicationConfig {
    let mut app = test_app();
    app.target = crate::config::TargetKind::Flink;
    app
}

/// A Flink job at parallelism `kpu`, job id `j1`, that says what its
/// requirements ask for, as [`crate::target::flink::FlinkTarget`] does.
fn flink_job(kpu: u32) -> Arc<FakeTarget> {
    let target = FakeTarget::new(kpu, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.identity = Some("j1".to_owned());
        s.reports_asked = true;
    }
    target
}

/// The agent on a Flink job `j1` at parallelism 2 (Doubling at 95 % CPU):
/// its first rescale, to 4, goes out at 0 s and is under way until 90 s.
fn on_a_flink_job() -> (Arc<FakeTarget>, Running) {
    let target = flink_job(2);
    let run = Running::launch_doubling(&flink_app(), target.clone(), target.origin);
    (target, run)
}

/// The grace period held after a job was replaced.
const AFTER_REPLACED: &str =
    "grace period after the job was replaced (a new job starts as a restart)";

/// Replaces the job with `id`: a newer graph (so a higher version id, as
/// the Flink target makes it), at `parallelism`, its requirements asking
/// for that, starting for `starting_secs` (0: RUNNING at once).
fn replace(target: &FakeTarget, id: &str, parallelism: u32, starting_secs: u64) {
    let mut s = target.state.lock().unwrap();
    s.identity = Some(id.to_owned());
    s.version_id += 10;
    s.parallelism = parallelism;
    s.pending_parallelism = parallelism;
    s.end_status = AppStatus::Running;
    if starting_secs == 0 {
        s.status = AppStatus::Running;
        s.updating_until = None;
    } else {
        s.status = AppStatus::Starting;
        s.updating_until = Some(Instant::now() + Duration::from_secs(starting_secs));
    }
}

fn completed(events: &[Event]) -> Vec<(i64, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RescaleCompleted { at_ms, kpu, .. } => Some(((at_ms - T0_MS) / 1000, *kpu)),
            _ => None,
        })
        .collect()
}

/// The defect: the poll after the job was replaced found the new job
/// RUNNING with a newer version and logged "Rescale completed." for it.
/// Now the rescale is given up, the log says the job was replaced and the
/// rescale did not carry over, and the new job is waited out as a restart
/// (one grace period) before it is decided for afresh.
#[tokio::test(start_paused = true)]
async fn a_job_replaced_during_the_agents_rescale_is_said_and_waited_out() {
    let (target, run) = on_a_flink_job();
    // At 30 s, while the rescale is under way, the job is cancelled and
    // submitted again at parallelism 2.
    until(&target, 30).await;
    assert_eq!(target.state.lock().unwrap().status, AppStatus::Updating);
    replace(&target, "j2", 2, 0);
    until(&target, 430).await;
    let counts = run.counts.clone();
    let events = run.stop().await;

    assert!(completed(&events).is_empty(), "{events:?}");
    let said = the_failure(&events, "update_result");
    assert!(
        said.starts_with(
            "the job was replaced while a rescale to parallelism 4 was followed (job id j1, now j2): the job was cancelled and submitted again"
        ) && said.contains(
            "the rescale did not carry over: the new job asks for parallelism 2; nothing is decided for the new job before a grace period"
        ),
        "{said}"
    );
    // Found at the poll at 60 s; a grace period to 360 s, then decided
    // afresh for the new job: 2 -> 4 again.
    assert_eq!(
        graces_held(&events),
        [(60, Some(360), AFTER_REPLACED.to_owned())]
    );
    assert_eq!(target.updates(), vec![(0, 4), (360, 4)]);
    // Said once: the evaluation after it does not report it again.
    assert!(failures(&events, "foreign_update").is_empty(), "{events:?}");
    assert_eq!(counts.snapshot().len(), 1, "{:?}", counts.snapshot());
}

/// A job submitted again at the parallelism the agent asked for: the
/// rescale carried over, and is said to have; the new job is followed
/// while it starts and its grace period held from when it runs.
#[tokio::test(start_paused = true)]
async fn a_replacement_at_the_asked_parallelism_is_said_to_carry_over() {
    let (target, run) = on_a_flink_job();
    // Submitted at 4 at 30 s; it starts until 130 s.
    until(&target, 30).await;
    replace(&target, "j2", 4, 100);
    until(&target, 530).await;
    let events = run.stop().await;

    assert!(completed(&events).is_empty(), "{events:?}");
    let said = the_failure(&events, "update_result");
    assert!(
        said.contains("the new job asks for parallelism 4: the rescale carried over"),
        "{said}"
    );
    // Seen STARTING at 60 s (followed), RUNNING at 180 s (the poll after
    // 130 s): grace to 480 s, then 4 -> 8.
    assert_eq!(
        graces_held(&events),
        [
            (60, None, AFTER_REPLACED.to_owned()),
            (180, Some(480), AFTER_REPLACED.to_owned())
        ]
    );
    assert_eq!(target.updates(), vec![(0, 4), (480, 8)]);
}

/// A job replaced while the agent was between rescales is reported at the
/// next evaluation as a replacement (not as a version that moved), and
/// waited out as a restart.
#[tokio::test(start_paused = true)]
async fn a_job_replaced_between_rescales_is_reported_as_replaced() {
    let (target, run) = on_a_flink_job();
    // The agent's rescale to 4 ends at 90 s (seen at 120 s); its grace
    // period runs to 420 s. At 200 s the job is resubmitted at 3.
    until(&target, 200).await;
    replace(&target, "j2", 3, 0);
    until(&target, 800).await;
    let events = run.stop().await;

    assert_eq!(completed(&events), vec![(120, 4)]);
    let said = the_failure(&events, "foreign_update");
    assert!(
        said.starts_with("the job was replaced under the agent (job id j1, now j2)")
            && said.contains("it now runs at parallelism 3"),
        "{said}"
    );
    assert_eq!(
        graces_held(&events),
        [(420, Some(720), AFTER_REPLACED.to_owned())]
    );
    assert_eq!(target.updates(), vec![(0, 4), (720, 6)]);
}

/// The MSF application of `target` deleted and created again under its
/// name, with the creation time `identity`: at version 1, at 2 KPU.
fn re_create(target: &FakeTarget, identity: &str) {
    let mut s = target.state.lock().unwrap();
    s.identity = Some(identity.to_owned());
    s.version_id = 1;
    s.parallelism = 2;
    s.pending_parallelism = 2;
}

/// A size held because its update was rolled back is a fact about the
/// application that refused it: the one re-created under its name may be
/// asked for it once the replacement is waited out.
#[tokio::test(start_paused = true)]
async fn a_refused_size_is_not_held_against_a_re_created_application() {
    let target = FakeTarget::new(2, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.identity = Some("1700000000000".to_owned());
        s.rolls_back = true;
    }
    let run = Running::launch_doubling(&test_app(), target.clone(), target.origin);
    until(&target, 200).await;
    re_create(&target, "1700000200000");
    {
        let mut s = target.state.lock().unwrap();
        s.rolls_back = false;
        s.rolled_back_from = None;
    }
    until(&target, 1000).await;
    let events = run.stop().await;
    assert!(the_failure(&events, "update_failed").contains("was rolled back"));
    let updates = target.updates();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1].1, 4, "{updates:?}");
}

/// An MSF application deleted and created again under its name starts
/// again at version 1, so its version id never said so: its creation
/// time does. Reported and waited out, not decided on at once.
#[tokio::test(start_paused = true)]
async fn an_msf_application_re_created_between_updates_is_reported() {
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().identity = Some("1700000000000".to_owned());
    let run = Running::launch_doubling(&test_app(), target.clone(), target.origin);
    until(&target, 200).await;
    re_create(&target, "1700000200000");
    until(&target, 800).await;
    let events = run.stop().await;

    let said = the_failure(&events, "foreign_update");
    assert!(
        said.starts_with(
            "the application was replaced under the agent (creation time 1700000000000, now 1700000200000): the application was deleted and created again under its name"
        ),
        "{said}"
    );
    assert_eq!(
        graces_held(&events),
        [(
            420,
            Some(720),
            "grace period after the application was re-created".to_owned()
        )]
    );
    assert_eq!(target.updates(), vec![(0, 4), (720, 4)]);
}

/// A PUT whose answer is lost, at the moment Flink restarts the job by
/// itself. With `took`, the PUT reached Flink first (the effect, then the
/// lost answer); without, it never did. Either way Flink's restart builds
/// a new graph (the version moves) and the job is RESTARTING for 60 s.
struct RestartsUnderPut {
    inner: Arc<FakeTarget>,
    took: bool,
    /// Whether the next PUT is the one that meets the restart.
    armed: Mutex<bool>,
}

#[async_trait]
impl ScalingTarget for RestartsUnderPut {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        self.inner.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        if !std::mem::take(&mut *self.armed.lock().unwrap()) {
            return self.inner.rescale(a, kpu, c).await;
        }
        if self.took {
            self.inner.rescale(a, kpu, c).await?;
        } else {
            // Sent, never applied.
            self.inner.state.lock().unwrap().calls.push(Call::Update {
                at_secs: self.inner.at_secs(),
                parallelism: kpu,
                version_id: c.version_id,
            });
        }
        // Flink's own restart: a new graph, RESTARTING for 60 s (or as
        // long as the rescale that took).
        let mut s = self.inner.state.lock().unwrap();
        s.version_id += 1;
        s.status = AppStatus::Updating;
        let until = Instant::now() + Duration::from_secs(60);
        s.updating_until = Some(s.updating_until.map_or(until, |u| u.max(until)));
        Err(TargetError::Transient("connection reset".into()))
    }
}

async fn restart_under_put(took: bool, reports_asked: bool) -> (Arc<FakeTarget>, Vec<Event>) {
    let inner = flink_job(2);
    inner.state.lock().unwrap().reports_asked = reports_asked;
    let target = Arc::new(RestartsUnderPut {
        inner: inner.clone(),
        took,
        armed: Mutex::new(true),
    });
    let run = Running::launch_doubling(&flink_app(), target, inner.origin);
    until(&inner, 450).await;
    let counts = run.counts.clone();
    let events = run.stop().await;
    let mut expected: Vec<(String, u64)> = Vec::new();
    for e in &events {
        if let Event::Failed { class, .. } = e {
            match expected.iter_mut().find(|(c, _)| c == class) {
                Some((_, n)) => *n += 1,
                None => expected.push((class.clone(), 1)),
            }
        }
    }
    let mut counted: Vec<(String, u64)> = counts
        .snapshot()
        .into_iter()
        .map(|(_, class, n)| (class, n))
        .collect();
    counted.sort();
    expected.sort();
    assert_eq!(counted, expected);
    (inner, events)
}

/// The PUT never reached Flink, and Flink restarted the job meanwhile:
/// the version moved, but the requirements still ask for 2, so the
/// rescale is not taken for the agent's. It is said so, the restart is
/// followed and waited out (one grace period), and only then is the
/// rescale decided again.
#[tokio::test(start_paused = true)]
async fn a_lost_put_under_flinks_own_restart_is_not_counted_as_the_agents_rescale() {
    let (target, events) = restart_under_put(false, true).await;
    // Started once, at 360 s: the rescale sent then, not the lost one.
    let started: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            Event::RescaleStarted { at_ms, .. } => Some((at_ms - T0_MS) / 1000),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![360], "{events:?}");
    assert!(completed(&events).is_empty(), "{events:?}");
    let said = the_failure(&events, "transient");
    assert!(
        said.starts_with(
            "PUT /jobs/{id}/resource-requirements to parallelism 4 failed: transient failure: connection reset; the version id moved to 2, but the job asks for parallelism 2, not parallelism 4: Flink rebuilt its execution graph"
        ) && said.ends_with("a rescale did not take effect"),
        "{said}"
    );
    assert!(failures(&events, "update_result").is_empty(), "{events:?}");
    // Followed while RESTARTING (0 s), RUNNING at 60 s: grace to 360 s;
    // then the rescale, once.
    let reason = "grace period after the job's restart or another writer's rescale";
    assert_eq!(
        graces_held(&events),
        [
            (0, None, reason.to_owned()),
            (60, Some(360), reason.to_owned())
        ]
    );
    assert_eq!(target.updates(), vec![(0, 4), (360, 4)]);
}

/// The same without a target that says what the job asks for: the two
/// cannot be told apart, and the safe reading is taken. The move is
/// followed as the agent's rescale (nothing sent again while unsure), a
/// grace period is held after it, and its end at another size is
/// reported; the next PUT goes out no sooner than above.
#[tokio::test(start_paused = true)]
async fn without_what_the_job_asks_for_a_lost_put_takes_the_safe_reading() {
    let (target, events) = restart_under_put(false, false).await;
    assert_eq!(completed(&events), vec![(60, 2)]);
    let said = the_failure(&events, "update_result");
    assert!(
        said.contains("job is RUNNING at parallelism 2, not the parallelism 4 requested"),
        "{said}"
    );
    assert_eq!(target.updates(), vec![(0, 4), (360, 4)]);
}

/// The PUT reached Flink (the effect), its answer was lost, and Flink
/// restarted the job too: the requirements ask for 4, so it took. It is
/// followed as the agent's, never sent again.
#[tokio::test(start_paused = true)]
async fn a_lost_put_that_took_under_a_restart_is_the_agents_rescale() {
    let (target, events) = restart_under_put(true, true).await;
    assert_started_2_to_4(&events);
    // The rescale takes 90 s (seen done at the poll at 120 s); 4 -> 8
    // after its grace period.
    assert_eq!(completed(&events), vec![(120, 4)]);
    assert!(failures(&events, "update_result").is_empty(), "{events:?}");
    assert!(graces_held(&events).is_empty(), "{events:?}");
    assert_eq!(target.updates(), vec![(0, 4), (420, 8)]);
}

/// The agent started its rescale from 2 to 4.
fn assert_started_2_to_4(events: &[Event]) {
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::RescaleStarted {
                from_kpu: 2,
                to_kpu: 4,
                ..
            }
        )),
        "{events:?}"
    );
}

/// The application as a Flink job `j1` (or `id`) reports it: RUNNING at
/// `parallelism`, its requirements asking for `asked`.
fn job_state(id: &str, version_id: u64, parallelism: u32, asked: u32) -> AppState {
    AppState {
        status: AppStatus::Running,
        parallelism,
        parallelism_per_kpu: 1,
        version_id,
        autoscaling_enabled: false,
        last_update_ms: None,
        identity: Some(id.to_owned()),
        asked_kpu: Some(asked),
        rolled_back_from: None,
    }
}

/// An update from 2 to 4, quoting version 10, asked for at `T0_MS`.
fn update_2_to_4() -> crate::state::Update {
    crate::state::Update {
        target_kpu: 4,
        from_kpu: 2,
        quoted_version_id: 10,
        reason: "test".to_owned(),
        started_ms: T0_MS,
    }
}

/// A machine restarted on a `sending` record of job `j1` (2 -> 4, quoting
/// version 10).
fn resumed_sending() -> Machine {
    let update = update_2_to_4();
    Machine::resume(
        AppRecord {
            phase: Phase::Sending { update },
            seen_version_id: Some(10),
            seen_identity: Some("j1".to_owned()),
            ..AppRecord::default()
        },
        Jitter::new(1),
    )
}

/// Restarted on a `sending` record (was the PUT sent?), the agent finds
/// the version moved while the job asks for the old parallelism: Flink
/// restarted it. Not the agent's rescale (nothing started, nothing sent
/// again), said so, and the restart waited out; the grace period is
/// journaled.
#[test]
fn a_sending_record_met_by_the_job_s_own_restart_is_not_the_agents_rescale() {
    let settings = Settings::from_config(&flink_app(), false);
    let mut machine = resumed_sending();
    let now = T0_MS + 5_000;
    let wake = machine.step(Observation::Wake, &settings, now);
    assert_eq!(wake.next, Next::Run(Command::Describe));
    let step = machine.step(
        Observation::Described(Ok(job_state("j1", 12, 2, 2))),
        &settings,
        now,
    );
    assert_eq!(step.next, Next::Wait(Duration::from_secs(300)));
    let reason = "grace period after the job's restart or another writer's rescale";
    assert_eq!(
        machine.record.phase,
        Phase::Grace {
            kpu: 2,
            until_ms: now + 300_000,
            after: Some(reason.to_owned()),
        }
    );
    assert!(
        !step
            .events
            .iter()
            .any(|e| matches!(e, Event::RescaleStarted { .. })),
        "{:?}",
        step.events
    );
    assert!(
        step.events
            .iter()
            .any(|e| matches!(e, Event::Resumed { phase, resume, .. }
            if phase == "sending" && resume.starts_with("update never took effect"))),
        "{:?}",
        step.events
    );
    let said = the_failure(&step.events, "foreign_update");
    assert!(
        said.contains(
            "to parallelism 4 (version 10): the version id moved to 12, but the job asks for parallelism 2, not parallelism 4"
        ),
        "{said}"
    );
}

/// Restarted on a `sending` record while the job waits for slots (its
/// TaskManager lost during the rescale): Flink shows a placeholder graph
/// dated from the job's submission, which a fresh target reads as a
/// version below the quote, the job starting. That is no verdict: the
/// agent reads again, sending nothing and saying only once that it waits
/// (for readiness), until the job is rebuilt. The rebuilt graph moved past the
/// quote and asks for the rescale's parallelism: the agent's rescale took
/// effect, and it completes once; no grace period is held for a restart.
#[test]
fn a_restart_that_meets_a_job_waiting_for_slots_waits_for_its_rebuilt_graph() {
    let settings = Settings::from_config(&flink_app(), false);
    let mut machine = resumed_sending();
    let mut now = T0_MS + 5_000;
    let wake = machine.step(Observation::Wake, &settings, now);
    assert_eq!(wake.next, Next::Run(Command::Describe));
    let placeholder = AppState {
        status: AppStatus::Starting,
        // The placeholder: below the quoted version (10).
        version_id: 1,
        ..job_state("j1", 1, 0, 4)
    };
    for read in 0..3 {
        let step = machine.step(
            Observation::Described(Ok(placeholder.clone())),
            &settings,
            now,
        );
        assert_eq!(
            step.next,
            Next::Wait(settings.update_poll),
            "{:?}",
            step.events
        );
        // Said once, for readiness to allow for the wait: no verdict yet.
        if read == 0 {
            assert!(
                matches!(
                    &step.events[..],
                    [Event::Resumed {
                        wait: Some(crate::telemetry::ResumedWait::Follow),
                        ..
                    }]
                ),
                "{:?}",
                step.events
            );
        } else {
            assert!(step.events.is_empty(), "{:?}", step.events);
        }
        assert!(matches!(machine.record.phase, Phase::Sending { .. }));
        now += 1_000;
        let wake = machine.step(Observation::Wake, &settings, now);
        assert_eq!(wake.next, Next::Run(Command::Describe));
    }
    let rebuilt = machine.step(
        Observation::Described(Ok(job_state("j1", 30, 4, 4))),
        &settings,
        now,
    );
    assert!(
        rebuilt
            .events
            .iter()
            .any(|e| matches!(e, Event::RescaleCompleted { kpu: 4, .. })),
        "{:?}",
        rebuilt.events
    );
    assert!(
        failures(&rebuilt.events, "foreign_update").is_empty(),
        "{:?}",
        rebuilt.events
    );
    assert!(
        matches!(
            &machine.record.phase,
            Phase::Grace {
                kpu: 4,
                after: None,
                ..
            }
        ),
        "{:?}",
        machine.record.phase
    );
}

/// The job was replaced between the decision and the PUT: the target
/// fenced it (the new job's version is not the quoted one), and the read
/// that resolves the refusal finds another job id. The refusal is told
/// with the replacement, not as a rescale that took effect, and the new
/// job is waited out.
#[test]
fn a_put_refused_because_the_job_was_replaced_is_told_as_a_replacement() {
    let settings = Settings::from_config(&flink_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    let now = T0_MS;
    machine.step(Observation::Wake, &settings, now);
    let decided = step_evaluated(
        &mut machine,
        job_state("j1", 10, 2, 2),
        Decision {
            action: Action::ScaleTo(4),
            reason: "test".into(),
            next_evaluation_secs: None,
        },
        &settings,
        now,
    );
    assert!(
        matches!(decided.next, Next::Run(Command::Update { .. })),
        "{decided:?}"
    );
    let refused = machine.step(
        Observation::Updated(Err(TargetError::ConcurrentModification(
            "job changed since the decision".into(),
        ))),
        &settings,
        now,
    );
    assert_eq!(refused.next, Next::Run(Command::Describe));
    let step = machine.step(
        Observation::Described(Ok(job_state("j2", 40, 2, 2))),
        &settings,
        now + 1_000,
    );
    assert!(
        !step
            .events
            .iter()
            .any(|e| matches!(e, Event::RescaleStarted { .. })),
        "{:?}",
        step.events
    );
    let said = the_failure(&step.events, "update_result");
    assert!(
        said.starts_with(
            "the job was replaced while a rescale to parallelism 4 was followed (PUT /jobs/{id}/resource-requirements answered: concurrent modification: job changed since the decision) (job id j1, now j2)"
        ),
        "{said}"
    );
    assert_eq!(machine.record.seen_identity.as_deref(), Some("j2"));
    assert!(
        matches!(&machine.record.phase, Phase::Grace { after: Some(after), .. }
            if after.starts_with("grace period after the job was replaced")),
        "{:?}",
        machine.record.phase
    );
}

/// A PUT to 4 that Flink took, whose answer was lost, on a cluster short
/// of slots: the job runs, settled, at 3, its requirements asking for 4.
struct TookShortOfSlots {
    inner: Arc<FakeTarget>,
    /// Whether the next PUT is the one whose answer is lost.
    armed: Mutex<bool>,
}

#[async_trait]
impl ScalingTarget for TookShortOfSlots {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        let mut state = self.inner.describe(a).await?;
        // Short of slots: the job runs at 3 where its requirements ask 4.
        if state.parallelism == 4 {
            state.parallelism = 3;
        }
        Ok(state)
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        let lost = std::mem::take(&mut *self.armed.lock().unwrap());
        let accepted = self.inner.rescale(a, kpu, c).await?;
        if lost {
            return Err(TargetError::Transient("connection reset".into()));
        }
        Ok(accepted)
    }
}

/// The review's finding: a PUT whose answer was lost took, but the job
/// runs, settled, below it (short of slots), its requirements asking for
/// the parallelism sent. That is the agent's rescale, followed as such
/// (started, then a grace period), not one that "did not apply" (which
/// decided again at once, on the metrics of the restart, with no grace).
#[tokio::test(start_paused = true)]
async fn a_lost_put_that_took_short_of_slots_is_the_agents_rescale() {
    let inner = flink_job(2);
    // Carried out before the agent reads the job again (its read-back
    // failed too, or the JobManager it reads was failing over).
    inner.state.lock().unwrap().update_secs = 0;
    let target = Arc::new(TookShortOfSlots {
        inner: inner.clone(),
        armed: Mutex::new(true),
    });
    let run = Running::launch_doubling(&flink_app(), target, inner.origin);
    until(&inner, 300).await;
    let events = run.stop().await;
    assert_started_2_to_4(&events);
    assert!(
        !failures(&events, "transient")
            .iter()
            .any(|said| said.contains("did not take effect")),
        "{events:?}"
    );
    // Sent once; nothing else within the grace period after it.
    assert_eq!(inner.updates(), vec![(0, 4)], "{events:?}");
}

/// A machine resumed on `updating` (an MSF application, 2 -> 4 KPU,
/// quoting version 10 and making 11, asked for at `T0_MS`) that reads the
/// update under way, panics in a step, and then reads the update over,
/// rolled back from 11 an hour after it was asked for: seen live, it is
/// the update's failure, the size held. The panic's doubt was taken for a
/// first read after a restart, and the rollback dated away.
#[test]
fn a_rollback_read_after_a_panic_is_seen_live() {
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::resume(
        AppRecord {
            phase: Phase::Updating {
                update: update_2_to_4(),
                observed_ms: T0_MS + 60_000,
                new_version_id: Some(11),
            },
            seen_version_id: Some(10),
            ..AppRecord::default()
        },
        Jitter::new(1),
    );
    let msf = |status: AppStatus, kpu: u32, rolled_back_from: Option<u64>| AppState {
        status,
        parallelism: kpu,
        parallelism_per_kpu: 1,
        version_id: 12,
        autoscaling_enabled: false,
        last_update_ms: Some(T0_MS + 3_600_000),
        identity: None,
        asked_kpu: None,
        rolled_back_from,
    };
    let mut now = T0_MS + 120_000;
    machine.step(Observation::Wake, &settings, now);
    let busy = machine.step(
        Observation::Described(Ok(msf(AppStatus::Updating, 2, None))),
        &settings,
        now,
    );
    assert_eq!(busy.next, Next::Wait(settings.update_poll), "{busy:?}");
    machine.step(Observation::Panicked("injected".into()), &settings, now);
    now += 3_600_000;
    machine.step(Observation::Wake, &settings, now);
    let over = machine.step(
        Observation::Described(Ok(msf(AppStatus::Running, 2, Some(11)))),
        &settings,
        now,
    );
    assert_eq!(
        machine.record.refused.as_ref().map(|r| r.kpu),
        Some(4),
        "{:?}",
        over.events
    );
}
