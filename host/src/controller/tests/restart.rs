//! A controller killed at each point of a scaling cycle and started again
//! on the same journal: it resumes where it was. An update already sent is
//! never sent again, a grace period continues, a decision that never left
//! is decided again, and a journal that is corrupt or cannot be written
//! never leads to a blind update.

use std::path::Path;

use super::*;
use crate::state::{Journal, JournalFile, Phase, StateStore};
use crate::telemetry::failing::Tell;

fn journal(dir: &Path) -> Journal {
    StateStore::open(dir)
        .expect("state folder")
        .journal("app")
        .expect("journal")
}

fn journaled(dir: &Path) -> JournalFile {
    let text = std::fs::read_to_string(dir.join("app.json")).expect("a journal");
    serde_json::from_str(&text).expect("a valid journal")
}

fn resumed(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Resumed { phase, resume, .. } => Some((phase.clone(), resume.clone())),
            _ => None,
        })
        .collect()
}

/// Starts a controller on the journal in `dir`, deciding with [`Doubling`]
/// at 95 % CPU.
fn launch(target: &Arc<FakeTarget>, dir: &Path) -> Running {
    launch_on(target.origin, target.clone(), dir)
}

/// [`launch`], the controller configured further by `configure` once its
/// journal is given.
fn launch_with(
    target: &Arc<FakeTarget>,
    dir: &Path,
    configure: impl FnOnce(Controller) -> Controller,
) -> Running {
    let mut journal = journal(dir);
    let loaded = journal.load();
    Running::launch(
        target.origin,
        target.clone(),
        constant(95.0),
        Box::new(Doubling),
        Vec::new(),
        |c| configure(c.with_journal(journal, loaded)),
    )
}

fn launch_on(origin: Instant, target: Arc<dyn ScalingTarget>, dir: &Path) -> Running {
    let mut journal = journal(dir);
    let loaded = journal.load();
    Running::launch(
        origin,
        target,
        constant(95.0),
        Box::new(Doubling),
        Vec::new(),
        |c| c.with_journal(journal, loaded),
    )
}

/// A target whose UpdateApplication never answers: with `forward`, the
/// request reaches the service first (the answer is lost); without, the
/// agent dies before the request leaves.
struct Stuck {
    inner: Arc<FakeTarget>,
    forward: bool,
}

#[async_trait]
impl ScalingTarget for Stuck {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        self.inner.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        if self.forward {
            let _ = self.inner.rescale(a, kpu, c).await;
        }
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn an_uninterrupted_run_journals_every_phase_and_settles_idle() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let run = launch(&target, dir.path());
    let mut phases = Vec::new();
    // Sample the journal inside each phase of the first cycle.
    for at in [30, 70, 200] {
        let now = target.at_secs();
        tokio::time::sleep(Duration::from_secs(at - now)).await;
        phases.push(journaled(dir.path()).record.phase.name());
    }
    assert_eq!(phases, ["sent", "updating", "grace"]);
    tokio::time::sleep(Duration::from_secs(2000)).await;
    run.stop().await;
    // At max KPU the policy holds: settled.
    let file = journaled(dir.path());
    assert_eq!(file.record.phase, Phase::Idle);
    assert!(file.record.last_rescale_ms.is_some());
    assert_eq!(
        target.updates(),
        vec![(0, 2), (420, 4), (840, 8), (1260, 10)]
    );
}

/// A KPU limit a reload lifted is lifted in the journal too: the agent
/// restarted afterwards does not read the ceiling back, and its first
/// decision asks for more than the refused size.
#[tokio::test(start_paused = true)]
async fn a_lifted_kpu_limit_stays_lifted_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().kpu_limit = Some(3);
    let (lift, lifts) = watch::channel(0u64);
    let first = launch_with(&target, dir.path(), |c| c.with_ceiling_lifts(lifts));
    // Refused 4 at 0, scaled to 3 at 5, held at the ceiling since.
    tokio::time::sleep(Duration::from_secs(610)).await;
    let limit = journaled(dir.path()).record.kpu_limit;
    assert_eq!(limit.map(|l| l.refused_kpu), Some(4));
    target.state.lock().unwrap().kpu_limit = None;
    lift.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(journaled(dir.path()).record.kpu_limit, None);
    first.kill().await;

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    second.stop().await;
    assert_eq!(target.updates(), vec![(0, 4), (5, 3), (611, 6)]);
}

/// The controller a reload starts (the application changed, or resumed)
/// lifts the KPU limit its journal holds before its first decision, as
/// the reload lifts every running controller's: that decision asks for
/// more than the refused size at once. One started without it (an agent's
/// restart) keeps the ceiling, and its first decision stays under it,
/// which made a reload cost two restarts: to the old ceiling, then past it.
#[tokio::test(start_paused = true)]
async fn a_controller_a_reload_starts_lifts_its_journal_s_ceiling_before_deciding() {
    for at_start in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let target = FakeTarget::new(2, 90);
        target.state.lock().unwrap().kpu_limit = Some(3);
        let first = launch(&target, dir.path());
        // Refused 4 at 0, scaled to 3 at 5, held at the ceiling since.
        tokio::time::sleep(Duration::from_secs(610)).await;
        first.kill().await;
        assert_eq!(
            journaled(dir.path())
                .record
                .kpu_limit
                .map(|l| l.refused_kpu),
            Some(4)
        );
        target.state.lock().unwrap().kpu_limit = None;
        let (_lift, lifts) = watch::channel(0u64);
        let second = launch_with(&target, dir.path(), |c| {
            let c = c.with_ceiling_lifts(lifts);
            if at_start { c.lifting_at_start() } else { c }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        let events = second.stop().await;
        let lifted = events
            .iter()
            .filter(|e| matches!(e, Event::LimitLifted { .. }))
            .count();
        if at_start {
            assert_eq!(target.updates(), vec![(0, 4), (5, 3), (610, 6)]);
            assert_eq!(lifted, 1);
            assert_eq!(journaled(dir.path()).record.kpu_limit, None);
        } else {
            assert_eq!(target.updates(), vec![(0, 4), (5, 3)], "held at 3");
            assert_eq!(lifted, 0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_updating_follows_the_update_instead_of_resending_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    // Killed after its poll at 60 s saw UPDATING.
    tokio::time::sleep(Duration::from_secs(70)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "updating");

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(1000)).await;
    let events = second.stop().await;
    // The restarted controller polls at 130 s (RUNNING), waits the grace
    // period, and only then scales again: the update of 0 s is not sent
    // twice, and the cycle keeps the uninterrupted rhythm shifted by the
    // restart.
    assert_eq!(target.updates(), vec![(0, 2), (430, 4), (850, 8)]);
    assert_eq!(
        resumed(&events),
        [(
            "updating".to_owned(),
            "follow the update in progress".to_owned()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_grace_waits_out_the_rest_of_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(200)).await;
    first.kill().await;
    let phase = journaled(dir.path()).record.phase;
    assert_eq!(
        phase,
        Phase::Grace {
            kpu: 2,
            until_ms: T0_MS + 420_000,
            after: None,
        }
    );

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(700)).await;
    let events = second.stop().await;
    // Exactly as without the restart: the next update at 420 s.
    assert_eq!(target.updates(), vec![(0, 2), (420, 4), (840, 8)]);
    let first_evaluation = evaluations(&events).first().map(|(t, _)| *t);
    assert_eq!(
        first_evaluation,
        Some(420),
        "no evaluation during the grace"
    );
    assert_eq!(
        resumed(&events),
        [("grace".to_owned(), "continue the grace period".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_before_the_call_left_decides_again_and_sends_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let stuck = Arc::new(Stuck {
        inner: target.clone(),
        forward: false,
    });
    let first = launch_on(target.origin, stuck, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.kill().await;
    let file = journaled(dir.path());
    let Phase::Sending { update } = &file.record.phase else {
        panic!("journaled before the call: {:?}", file.record.phase);
    };
    assert_eq!((update.target_kpu, update.quoted_version_id), (2, 1));
    assert!(target.updates().is_empty());

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(100)).await;
    let events = second.stop().await;
    // The version id did not move: the update never happened, and the
    // restarted controller decides again (here the same) and sends once.
    assert_eq!(target.updates(), vec![(10, 2)]);
    assert_eq!(
        resumed(&events),
        [(
            "sending".to_owned(),
            "update never took effect: re-evaluate".to_owned()
        )]
    );
}

/// A target on which the request a killed agent left in the network
/// lands late: after every read the restarted agent made, just before its
/// own UpdateApplication arrives. Real services finish a request whose
/// client is gone.
struct LandsLate {
    inner: Arc<FakeTarget>,
    /// The request in the network: its KPU and the state it quoted.
    in_flight: Mutex<Option<(u32, AppState)>>,
}

#[async_trait]
impl ScalingTarget for LandsLate {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        self.inner.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        let late = self.in_flight.lock().unwrap().take();
        if let Some((late_kpu, quoted)) = late {
            self.inner
                .rescale(a, late_kpu, &quoted)
                .await
                .expect("the late request takes effect");
        }
        self.inner.rescale(a, kpu, c).await
    }
}

/// The agent is killed with its UpdateApplication (1 -> 3 KPU) in the
/// network; the restarted agent reads the application before that
/// request lands (it lands just before the restarted agent's own update),
/// so concludes it never took effect and decides again (1 -> 2). Its
/// update quotes the version the late one moved past, so the service
/// refuses it: the application is rescaled once, not twice. The agent
/// follows the late update to its end, reports the size it came to (3,
/// not the 2 it asked for), waits out the grace period and only then
/// scales again, from 3.
#[tokio::test(start_paused = true)]
async fn a_killed_agents_request_landing_after_the_restart_read_is_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let lost = Arc::new(Stuck {
        inner: target.clone(),
        forward: false,
    });
    let first = launch_on(target.origin, lost, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "sending");
    assert!(target.updates().is_empty(), "the request is in the network");

    let quoted = target.describe("app").await.expect("the state it quoted");
    let late = Arc::new(LandsLate {
        inner: target.clone(),
        in_flight: Mutex::new(Some((3, quoted))),
    });
    let second = launch_on(target.origin, late, dir.path());
    tokio::time::sleep(Duration::from_secs(900)).await;
    let events = second.stop().await;
    assert_eq!(
        resumed(&events),
        [(
            "sending".to_owned(),
            "update never took effect: re-evaluate".to_owned()
        )],
        "the restart read the application before the request landed"
    );
    let updates: Vec<(u64, u32, u64)> = target
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Update {
                at_secs,
                parallelism,
                version_id,
            } => Some((at_secs, parallelism, version_id)),
            Call::Describe { .. } => None,
        })
        .collect();
    // (s, KPU, version quoted): the late request, then the restarted
    // agent's, refused (UPDATING at version 2); the next one at 430 s
    // (RUNNING at the poll at 130 s, plus 300 s of grace), from 3 KPU.
    assert_eq!(
        updates,
        [(10, 3, 1), (10, 2, 1), (430, 6, 2), (850, 10, 3)],
        "{events:?}"
    );
    let completed: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::RescaleCompleted { kpu, .. } => Some(*kpu),
            _ => None,
        })
        .collect();
    assert_eq!(completed[..1], [3], "the late update followed to its end");
    let refused = events.iter().any(|e| {
        matches!(e, Event::Failed { class, message, .. }
            if class == "resource_in_use" && message.contains("so an update took effect"))
    });
    assert!(refused, "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restart_after_the_call_before_the_answer_follows_the_update() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let stuck = Arc::new(Stuck {
        inner: target.clone(),
        forward: true,
    });
    let first = launch_on(target.origin, stuck, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "sending");
    assert_eq!(target.updates(), vec![(0, 2)]);

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let events = second.stop().await;
    // The version id moved past the quoted one: the update took effect.
    // Followed (RUNNING at the poll at 130 s), grace, then the next step.
    assert_eq!(target.updates(), vec![(0, 2), (430, 4)]);
    assert_eq!(
        resumed(&events),
        [(
            "sending".to_owned(),
            "follow the update in progress".to_owned()
        )]
    );
    let completed = events.iter().any(
        |e| matches!(e, Event::RescaleCompleted { kpu: 2, at_ms, .. } if *at_ms == T0_MS + 130_000),
    );
    assert!(completed, "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn an_update_that_finished_while_the_agent_was_down_starts_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    first.kill().await;
    // Down for a while; the update ends at 90 s meanwhile.
    tokio::time::sleep(Duration::from_secs(170)).await;

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = second.stop().await;
    assert_eq!(target.updates(), vec![(0, 2), (500, 4)]);
    assert_eq!(
        resumed(&events),
        [(
            "sent".to_owned(),
            "update finished: grace period".to_owned()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn an_update_that_rolled_back_while_the_agent_was_down_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    target.state.lock().unwrap().end_status = AppStatus::RolledBack;
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    first.kill().await;
    tokio::time::sleep(Duration::from_secs(100)).await;

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(300)).await;
    let events = second.stop().await;
    // Never updated again while the application is not RUNNING.
    assert_eq!(target.updates(), vec![(0, 2)]);
    let failed = failures(&events, "update_failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(failed[0].contains("ROLLED_BACK"), "{failed:?}");
    assert_eq!(journaled(dir.path()).record.phase.name(), "decided");
}

/// A journal whose read fails (here a symbolic link, never followed; on
/// a real host a disk error too) is kept as well, not saved over: the
/// link is set aside, and the file it points to is untouched.
#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_read_is_set_aside_not_saved_over() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let pointed = elsewhere.path().join("app.json");
    std::fs::write(&pointed, b"what the link points to").unwrap();
    std::os::unix::fs::symlink(&pointed, dir.path().join("app.json")).unwrap();
    let target = FakeTarget::new(1, 90);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let events = run.stop().await;
    let reported = failures(&events, "journal");
    assert_eq!(reported.len(), 1, "{events:?}");
    assert!(
        reported[0].contains("cannot read") && reported[0].contains("app.json.corrupt.1"),
        "{reported:?}"
    );
    let aside = dir.path().join("app.json.corrupt.1");
    assert_eq!(std::fs::read_link(&aside).unwrap(), pointed);
    assert_eq!(std::fs::read(&pointed).unwrap(), b"what the link points to");
    assert_eq!(journaled(dir.path()).record.phase.name(), "grace");
    assert!(target.updates().is_empty(), "{:?}", target.updates());
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_journal_fails_closed_holding_one_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), b"{\"format\": 1, \"reco").unwrap();
    let target = FakeTarget::new(1, 90);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let events = run.stop().await;
    let reported = failures(&events, "journal");
    assert_eq!(reported.len(), 1, "{events:?}");
    assert!(
        reported[0].contains("app.json.corrupt.1")
            && reported[0].contains("outcome of anything in flight is unknown"),
        "{reported:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("app.json.corrupt.1")).unwrap(),
        b"{\"format\": 1, \"reco"
    );
    // Fails closed: the unknown outcome is journaled at once, the
    // application read, and a whole grace period (300 s) held before the
    // first decision; only then is it scaled as usual.
    assert!(target.updates().is_empty(), "{:?}", target.updates());
    // Held after not knowing, not "after the update to 1 KPU" (`status`
    // and later `once` runs say what it is after).
    let phase = journaled(dir.path()).record.phase;
    assert!(
        matches!(&phase, Phase::Grace { after: Some(after), .. }
            if after == "grace period after a journal that could not be read (an update's outcome was unknown)"),
        "{phase:?}"
    );
    assert!(events.iter().any(|e| matches!(e,
        Event::Resumed { phase, resume, .. } if phase == "unknown" && resume.contains("grace"))));
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(300)).await;
    run.stop().await;
    assert_eq!(target.updates(), vec![(300, 2)]);
    assert_eq!(journaled(dir.path()).record.phase.name(), "sent");
}

/// The journal's events: each failed save's `tell` with its time (s
/// since the origin) and the updates held so far, and each recovery's
/// time and updates held.
#[allow(clippy::type_complexity)]
fn journal_events(events: &[Event]) -> (Vec<(i64, Tell, u64)>, Vec<(i64, u64)>) {
    let mut failing = Vec::new();
    let mut recovered = Vec::new();
    for event in events {
        match event {
            Event::JournalFailing {
                at_ms, tell, held, ..
            } => failing.push(((at_ms - T0_MS) / 1000, *tell, *held)),
            Event::JournalRecovered { at_ms, held, .. } => {
                recovered.push(((at_ms - T0_MS) / 1000, *held));
            }
            _ => {}
        }
    }
    (failing, recovered)
}

/// [`Doubling`], stopping its controller from inside the call: the stop
/// arrives between a decision and its UpdateApplication.
struct StopWhileDeciding(Arc<watch::Sender<bool>>);

impl Decide for StopWhileDeciding {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        let _ = self.0.send(true);
        Doubling.decide(e)
    }
    fn label(&self) -> String {
        "stop while deciding (test)".into()
    }
}

/// A stop between the journaled `sending` record and the call sends
/// nothing, and the journal says so: the next controller decides afresh,
/// once, instead of reading the application to resolve an update that
/// never left (which it did safely, but said "an update in flight").
#[tokio::test(start_paused = true)]
async fn a_stop_between_a_decision_and_its_call_leaves_nothing_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let (stop, stopped) = watch::channel(false);
    let mut journal = journal(dir.path());
    let loaded = journal.load();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let controller = Controller::new(
        &test_app(),
        false,
        constant(95.0),
        target.clone(),
        Box::new(StopWhileDeciding(Arc::new(stop))),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::with_channel(tx),
    )
    .with_journal(journal, loaded);
    let kept = tokio::spawn(controller.run(stopped)).await.unwrap();
    drop(kept);
    let mut decided = Vec::new();
    while let Ok(event) = rx.try_recv() {
        decided.push(event);
    }
    assert!(
        evaluations(&decided)
            .iter()
            .any(|(_, d)| d.action == Action::ScaleTo(2)),
        "{decided:?}"
    );
    assert!(target.updates().is_empty(), "{:?}", target.updates());
    assert_eq!(journaled(dir.path()).record.phase, Phase::Idle);
    // The decision's fate is said: the history resolves it as not sent.
    let not_sent: Vec<&str> = decided
        .iter()
        .filter_map(|e| match e {
            Event::NotSent { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        not_sent,
        ["the agent stopped before sending UpdateApplication"]
    );

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let events = second.stop().await;
    assert!(resumed(&events).is_empty(), "{events:?}");
    assert_eq!(target.updates(), vec![(0, 2)]);
}

/// A Flink job's update that the journal held back is named by its REST
/// call, not by MSF's UpdateApplication.
#[tokio::test(start_paused = true)]
async fn a_flink_job_s_update_held_by_the_journal_is_named_by_its_rest_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".app.json.tmp")).unwrap();
    let target = FakeTarget::new(1, 90);
    let mut app = test_app();
    app.target = crate::config::TargetKind::Flink;
    let mut journal = journal(dir.path());
    let loaded = journal.load();
    let run = Running::launch_app(
        &app,
        target.origin,
        target.clone(),
        constant(95.0),
        Box::new(Doubling),
        Vec::new(),
        |c| c.with_journal(journal, loaded),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let events = run.stop().await;
    assert!(target.updates().is_empty(), "{:?}", target.updates());
    let reported = failures(&events, "journal");
    assert!(
        !reported.is_empty()
            && reported.iter().all(|m| m.starts_with(
                "PUT /jobs/{id}/resource-requirements to parallelism 2 not sent, since the \
                 journal cannot record it first: cannot "
            )),
        "{reported:?}"
    );
}

/// The intent a failed save held back is not lost and not sent twice: the
/// save of the `sending` record fails after a successful decision (a
/// folder where its temporary file goes), nothing is sent, and once the
/// journal can be written the next evaluation decides again and sends it
/// once. Each update held is one `journal` failure; the saves retried in
/// between are not counted, and the stretch is logged once when it starts
/// and once when it ends.
#[tokio::test(start_paused = true)]
async fn no_update_is_sent_when_the_journal_cannot_record_it() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the temporary file should go: every save fails, even
    // for root.
    let blocker = dir.path().join(".app.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let target = FakeTarget::new(1, 90);
    let mut run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(target.updates().is_empty(), "{:?}", target.updates());
    let mut events = run.drain();
    // Every evaluation decided to scale, and each decision was held: one
    // failure each, no more.
    let decided = evaluations(&events)
        .iter()
        .filter(|(_, d)| matches!(d.action, Action::ScaleTo(2)))
        .count();
    assert!(decided >= 2, "{events:?}");
    assert_eq!(run.counts.get("app", "journal"), decided as u64);
    assert_eq!(failures(&events, "journal").len(), decided);
    // Once the journal works again, the update goes out.
    std::fs::remove_dir(&blocker).unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
    events.extend(run.stop().await);
    assert_eq!(target.updates().len(), 1, "{:?}", target.updates());
    assert_eq!(target.updates()[0].1, 2);
    let reported = failures(&events, "journal");
    assert_eq!(reported.len(), decided, "{reported:?}");
    // The operator is told that the update was held back, not only that a
    // file could not be written.
    assert!(
        reported.iter().all(|m| m.starts_with(
            "UpdateApplication to 2 KPU not sent, since the journal cannot record it first: cannot "
        ) && m.contains(".app.json.tmp")),
        "{reported:?}"
    );
    let (failing, recovered) = journal_events(&events);
    // The first failed save is the journal written at start, before any
    // decision: told once, with its cause; every later one is quiet.
    assert_eq!(failing[0], (0, Tell::Started, 0), "{failing:?}");
    assert!(
        failing[1..].iter().all(|(_, tell, _)| *tell == Tell::Quiet),
        "{failing:?}"
    );
    assert_eq!(failing.last().map(|f| f.2), Some(decided as u64));
    let cause = events.iter().find_map(|e| match e {
        Event::JournalFailing { cause, .. } => Some(cause.clone()),
        _ => None,
    });
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains(".app.json.tmp") && c.contains("os error")),
        "{cause:?}"
    );
    // One recovery, at the save that let the update go out, counting the
    // updates held.
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].0, target.updates()[0].0 as i64);
    assert_eq!(recovered[0].1, decided as u64);
}

/// A journal that stays unwritable is reminded of at most every 10 min,
/// not at every evaluation.
#[tokio::test(start_paused = true)]
async fn a_journal_that_stays_unwritable_is_reminded_of_every_ten_minutes_at_most() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".app.json.tmp")).unwrap();
    let target = FakeTarget::new(1, 90);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(45 * 60)).await;
    let events = run.stop().await;
    assert!(target.updates().is_empty());
    let (failing, recovered) = journal_events(&events);
    assert!(recovered.is_empty());
    let told: Vec<_> = failing.iter().filter(|(_, tell, _)| tell.logs()).collect();
    assert_eq!(told[0].1, Tell::Started);
    assert!(
        told[1..].iter().all(|(_, tell, _)| *tell == Tell::Reminder),
        "{told:?}"
    );
    // Retried at every back-off (5 min at most), reminded three or four
    // times in 45 min, never twice within 10 min.
    assert!(failing.len() > told.len() + 5, "{failing:?}");
    assert!((3..=5).contains(&told.len()), "{told:?}");
    for pair in told.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 600, "{told:?}");
    }
    // Each evaluation that decided held one update: the count grows.
    assert!(
        told.last().is_some_and(|(_, _, held)| *held >= 8),
        "{told:?}"
    );
}

/// A target whose first UpdateApplication takes effect, after which the
/// state folder stops taking writes (a folder where the journal's
/// temporary file goes): the save of the `sent` record fails after the
/// effect.
struct BlockAfterUpdate {
    inner: Arc<FakeTarget>,
    blocker: std::path::PathBuf,
    blocked: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl ScalingTarget for BlockAfterUpdate {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        self.inner.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        let answer = self.inner.rescale(a, kpu, c).await;
        if !self.blocked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::create_dir(&self.blocker).expect("the blocker can be made");
        }
        answer
    }
}

/// The save of the `sent` record fails after UpdateApplication succeeded:
/// the update happened, and the agent follows it as its own (it holds the
/// accepted answer and the new version id in memory): it is not sent
/// again, not reported as another writer's, and its grace period is held.
/// Nothing was held back, so no `journal` failure is counted, but the
/// application is not ready until a save succeeds; the next one (at the
/// end of the grace period) writes the record in force.
#[tokio::test(start_paused = true)]
async fn a_sent_record_that_cannot_be_saved_does_not_send_the_update_again() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let blocker = dir.path().join(".app.json.tmp");
    let blocking = Arc::new(BlockAfterUpdate {
        inner: target.clone(),
        blocker: blocker.clone(),
        blocked: Default::default(),
    });
    let mut run = launch_on(target.origin, blocking, dir.path());
    tokio::time::sleep(Duration::from_secs(200)).await;
    // Mid-grace: the journal still holds the record written before the
    // call.
    assert_eq!(journaled(dir.path()).record.phase.name(), "sending");
    let mut events = run.drain();
    assert_eq!(target.updates(), vec![(0, 2)]);
    std::fs::remove_dir(&blocker).unwrap();
    tokio::time::sleep(Duration::from_secs(400)).await;
    events.extend(run.stop().await);
    // The same timeline as without the fault: followed, completed at the
    // poll at 120 s, grace to 420 s, then the next step.
    assert_eq!(target.updates(), vec![(0, 2), (420, 4)]);
    let completed = events.iter().any(
        |e| matches!(e, Event::RescaleCompleted { kpu: 2, at_ms, .. } if *at_ms == T0_MS + 120_000),
    );
    assert!(completed, "{events:?}");
    assert!(failures(&events, "foreign_update").is_empty(), "{events:?}");
    assert!(failures(&events, "journal").is_empty(), "{events:?}");
    let (failing, recovered) = journal_events(&events);
    assert_eq!(failing[0], (0, Tell::Started, 0), "{failing:?}");
    assert_eq!(recovered, vec![(420, 0)]);
    // The journal follows again: the second update ended at 540 s.
    assert_eq!(journaled(dir.path()).record.phase.name(), "grace");
}

/// As above, but the agent dies while the `sent` record cannot be saved:
/// the journal says `sending`, and the restarted agent finds the version
/// moved past the one quoted, so follows the update as its own (the resume
/// table cannot tell it from another writer's, and need not: either way it
/// is followed and waited out, never sent again). No second update at
/// 2 KPU, no `foreign_update`.
#[tokio::test(start_paused = true)]
async fn a_restart_after_a_sent_record_could_not_be_saved_follows_the_update() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let blocker = dir.path().join(".app.json.tmp");
    let blocking = Arc::new(BlockAfterUpdate {
        inner: target.clone(),
        blocker: blocker.clone(),
        blocked: Default::default(),
    });
    let first = launch_on(target.origin, blocking, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "sending");
    std::fs::remove_dir(&blocker).unwrap();

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let events = second.stop().await;
    assert_eq!(
        resumed(&events),
        [(
            "sending".to_owned(),
            "follow the update in progress".to_owned()
        )]
    );
    let updates = target.updates();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0], (0, 2));
    assert_eq!(updates[1].1, 4, "{updates:?}");
    assert!(updates[1].0 >= 30 + 90, "{updates:?}");
    assert!(failures(&events, "foreign_update").is_empty(), "{events:?}");
    assert!(failures(&events, "journal").is_empty(), "{events:?}");
}

/// A metric source that records the window of every fetch, and when (in
/// tokio seconds since `origin`) it was asked.
struct Recording {
    inner: Arc<ConstantSource>,
    origin: Instant,
    windows: Mutex<Vec<(u64, i64, i64)>>,
}

#[async_trait]
impl MetricSource for Recording {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let at = self.origin.elapsed().as_secs();
        self.windows.lock().unwrap().push((at, start_ms, end_ms));
        self.inner.fetch(queries, start_ms, end_ms).await
    }
}

thread_local! {
    /// The stepping wall clock of the test below: tokio time since its
    /// origin, plus a step (the controller runs on the test's thread).
    static WALL: std::cell::Cell<Option<(Instant, i64)>> = const { std::cell::Cell::new(None) };
}

fn stepping_wall() -> i64 {
    let (origin, step) = WALL
        .with(|w| w.get())
        .expect("the test sets the wall clock");
    T0_MS + origin.elapsed().as_millis() as i64 + step
}

/// Fails on main before #9, where the wall clock was read once at start:
/// after NTP steps the clock back an hour, every CloudWatch window stayed
/// an hour ahead until a restart. Now the window follows the stepped wall
/// clock at once, while the grace period, an interval, still ends on
/// monotonic time (it is not stretched by the hour).
#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_moves_the_metric_window_but_not_the_grace_period() {
    let target = FakeTarget::new(1, 90);
    let origin = target.origin;
    WALL.with(|w| w.set(Some((origin, 0))));
    let source = Arc::new(Recording {
        inner: constant(95.0),
        origin,
        windows: Mutex::new(Vec::new()),
    });
    let (tx, _events) = mpsc::unbounded_channel();
    let mut app = test_app();
    app.max_kpu = 2;
    // 95 % from the start: one rescale (1 -> 2), then max.
    let controller = Controller::new(
        &app,
        false,
        source.clone(),
        target.clone(),
        Box::new(Doubling),
        Vec::new(),
        Clock::with_wall(&stepping_wall),
        Events::with_channel(tx),
    );
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(controller.run(rx));
    // The update (0 s) is RUNNING at the 120 s poll; grace until 420 s. At
    // 200 s the wall clock steps back an hour.
    tokio::time::sleep(Duration::from_secs(200)).await;
    WALL.with(|w| w.set(Some((origin, -3_600_000))));
    tokio::time::sleep(Duration::from_secs(300)).await;
    shutdown.send(true).unwrap();
    task.await.unwrap();
    let windows = source.windows.lock().unwrap().clone();
    assert_eq!(target.updates(), vec![(0, 2)]);
    let after: Vec<_> = windows.iter().filter(|(at, _, _)| *at > 0).collect();
    let &&(at, start_ms, end_ms) = after.first().expect("an evaluation after the grace period");
    assert_eq!(
        at, 420,
        "the grace period ends on monotonic time: {windows:?}"
    );
    assert_eq!(
        end_ms,
        T0_MS + 420_000 - 3_600_000,
        "the window ends at the stepped wall clock: {windows:?}"
    );
    assert!(start_ms < end_ms);
}

/// A journal save (write, fsync, rename, fsync of the folder) may take as
/// long as the disk likes: it runs off the runtime, whose other tasks (the
/// other controllers, the metrics batcher, the HTTP listener) keep running
/// meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_journal_save_leaves_the_runtime_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path()).with_save_delay(Duration::from_millis(300));
    let loaded = journal.load();
    let (tx, _events) = mpsc::unbounded_channel();
    let mut controller = Controller::new(
        &test_app(),
        false,
        constant(50.0),
        FakeTarget::new(1, 90),
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::with_channel(tx),
    )
    .with_journal(journal, loaded);
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::task::yield_now().await;
    controller.machine.record.last_rescale_ms = Some(T0_MS);
    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(controller.persist(None).await);
    let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
    ticker.abort();
    assert_eq!(
        journaled(dir.path()).record.last_rescale_ms,
        Some(T0_MS),
        "the save took effect"
    );
    // 300 ms at one tick per 5 ms: 60 ticks on an idle machine; a third of
    // that leaves room for a loaded one, none is a runtime that stood still.
    assert!(
        during >= 20,
        "the runtime stood still during the save: {during} ticks of 5 ms in 300 ms"
    );
}

/// A journal is a file on disk: a write counter or a time no clock
/// reaches (edited by hand, or damaged) is refused as corrupt, naming the
/// field and the valid range, rather than overflowing the next save or the
/// machine's time arithmetic. The controller then fails closed as for any
/// unreadable journal: it reads the application and holds a grace period.
#[test]
fn a_journal_with_a_counter_or_time_out_of_range_is_corrupt() {
    let update = r#"{"target_kpu": 2, "from_kpu": 1, "quoted_version_id": 1, "reason": "r", "started_ms": STARTED}"#;
    let file = |seq: &str, started: &str| {
        let update = update.replace("STARTED", started);
        format!(
            r#"{{"format": 1, "application": "app", "seq": {seq}, "written_ms": 1700000000000,
               "record": {{"phase": {{"kind": "sending", "update": {update}}}}}}}"#
        )
    };
    let cases = [
        (
            file("18446744073709551615", "1700000000000"),
            "seq 18446744073709551615",
        ),
        (
            file("3", "-9223372036854775808"),
            "started_ms -9223372036854775808",
        ),
        (
            file("3", "9223372036854775807"),
            "started_ms 9223372036854775807",
        ),
    ];
    for (text, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.json"), &text).unwrap();
        match journal(dir.path()).load() {
            Err(StateError::Corrupt { detail, .. }) => {
                assert!(detail.contains(what), "{what}: {detail}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // In range, it loads.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), file("3", "1700000000000")).unwrap();
    assert!(matches!(journal(dir.path()).load(), Ok(Some(_))));
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_the_grace_period_after_another_writers_update_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    // The agent's own update (0 s, to 2 KPU) and its grace period end at
    // 420 s; at 200 s somebody else sets 3 KPU (version 3).
    tokio::time::sleep(Duration::from_secs(200)).await;
    {
        let mut s = target.state.lock().unwrap();
        s.version_id = 3;
        s.parallelism = 3;
        s.pending_parallelism = 3;
    }
    tokio::time::sleep(Duration::from_secs(300)).await;
    first.kill().await;
    // The evaluation at 420 s found it: a grace period to 720 s, journaled
    // with why.
    assert_eq!(
        journaled(dir.path()).record.phase,
        Phase::Grace {
            kpu: 3,
            until_ms: T0_MS + 720_000,
            after: Some("grace period after another writer's update".to_owned()),
        }
    );

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(300)).await;
    let events = second.stop().await;
    // Its rest is waited out: nothing decided before 720 s.
    assert_eq!(target.updates(), vec![(0, 2), (720, 6)]);
    assert_eq!(
        resumed(&events),
        [("grace".to_owned(), "continue the grace period".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_another_writers_update_is_followed_follows_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    // At 400 s somebody else starts an update to 3 KPU that runs to 600 s.
    tokio::time::sleep(Duration::from_secs(400)).await;
    {
        let mut s = target.state.lock().unwrap();
        s.version_id = 3;
        s.status = AppStatus::Updating;
        s.pending_parallelism = 3;
        s.updating_until = Some(Instant::now() + Duration::from_secs(200));
    }
    tokio::time::sleep(Duration::from_secs(80)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "foreign");

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(520)).await;
    let events = second.stop().await;
    // Followed again, RUNNING at 600 s, grace period to 900 s.
    assert_eq!(target.updates(), vec![(0, 2), (900, 6)]);
    assert_eq!(
        resumed(&events),
        [(
            "foreign".to_owned(),
            "a restart or update this agent did not make: follow it, then a grace period"
                .to_owned()
        )]
    );
}

/// The drill: an agent started with an empty state folder on an
/// application (at 2 KPU) whose last update was requested
/// `last_update_secs_ago` before; the updates it made in `run_secs`, its
/// events and its journaled phase.
async fn fresh_start(
    last_update_secs_ago: i64,
    run_secs: u64,
) -> (Vec<(u64, u32)>, Vec<Event>, Phase) {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().last_update_ms = Some(T0_MS - last_update_secs_ago * 1000);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(run_secs)).await;
    let events = run.stop().await;
    (target.updates(), events, journaled(dir.path()).record.phase)
}

#[tokio::test(start_paused = true)]
async fn a_start_without_a_journal_just_after_an_update_holds_a_grace_period() {
    // The update ended ~1 s before the start (requested 91 s before, it
    // took 90 s): the first evaluation's metrics are its restart's. Before,
    // 2 -> 4 went out at 0 s. Now one grace period (300 s) from the start:
    // the update ended at the latest now.
    let (updates, events, phase) = fresh_start(91, 120).await;
    assert!(updates.is_empty(), "{updates:?}");
    let reason = Words::Msf.grace_after_recent_update().to_owned();
    assert!(reason.contains("LastUpdateTimestamp"), "{reason}");
    assert_eq!(
        super::graces_held(&events),
        [(0, Some(300), reason.clone())]
    );
    assert_eq!(
        phase,
        Phase::Grace {
            kpu: 2,
            until_ms: T0_MS + 300_000,
            after: Some(reason),
        }
    );
    let (updates, _, _) = fresh_start(91, 400).await;
    assert_eq!(updates, vec![(300, 4)]);
}

/// A dry run keeps no journal: it starts as a run that acts starts
/// without one, and decides as that run would. Just after an update, both
/// hold the same grace period from the start and first ask for more at
/// 300 s. Before, the dry run recorded 2 -> 4 at 0 s, on the update's
/// restart metrics, a grace period before the run it previews would.
#[tokio::test(start_paused = true)]
async fn a_dry_run_started_just_after_an_update_decides_when_a_run_that_acts_would() {
    let (updates, acting, _) = fresh_start(91, 310).await;
    assert_eq!(updates, vec![(300, 4)]);
    let dry = super::Harness::start(95.0, 2, true, Box::new(Doubling));
    dry.target.state.lock().unwrap().last_update_ms = Some(T0_MS - 91_000);
    tokio::time::sleep(Duration::from_secs(310)).await;
    let (target, dry) = dry.stop().await;
    assert!(target.updates().is_empty());
    let decided = |events: &[Event]| -> Vec<(i64, Action)> {
        evaluations(events)
            .into_iter()
            .map(|(at, decision)| (at, decision.action))
            .collect()
    };
    assert_eq!(
        decided(&acting),
        [(0, Action::Hold), (300, Action::ScaleTo(4))]
    );
    assert_eq!(decided(&dry), decided(&acting));
    assert_eq!(super::graces_held(&dry), super::graces_held(&acting));
}

#[tokio::test(start_paused = true)]
async fn a_start_without_a_journal_long_after_an_update_decides_at_once() {
    // Requested 2 100 s ago: even an update that took the whole update
    // timeout (1 800 s) ended more than a grace period (300 s) ago.
    let (updates, events, _) = fresh_start(2_100, 30).await;
    assert_eq!(updates, vec![(0, 4)]);
    assert!(
        !events.iter().any(|e| matches!(e, Event::GraceHeld { .. })),
        "{events:?}"
    );
    // Requested 1 900 s ago: it may have ended as late as 1 800 s after
    // its request, 100 s ago; the rest of a grace period (200 s) is held.
    let (updates, _, phase) = fresh_start(1_900, 250).await;
    assert_eq!(updates, vec![(200, 4)]);
    assert_eq!(phase.name(), "sent");
}

#[tokio::test(start_paused = true)]
async fn a_start_with_a_journal_is_not_held_for_the_last_update() {
    // The journal says idle: the agent knows nothing was in flight, and a
    // recent update would be its own (with its grace period journaled) or
    // somebody else's, seen by the version id at the next evaluations.
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    journal
        .save(&crate::state::AppRecord::default(), T0_MS)
        .unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().last_update_ms = Some(T0_MS - 91_000);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(30)).await;
    run.stop().await;
    assert_eq!(target.updates(), vec![(0, 4)]);
}

/// The hold on a size whose update was rolled back outlives a restart of
/// the agent (or a reload of the application, which restarts its
/// controller from the journal): the size is not asked for again within
/// the hour. Before, the hold lived only in memory, and the size was asked
/// for again as soon as the grace period ended: a second restart of the
/// application into the same failure.
#[tokio::test(start_paused = true)]
async fn a_rolled_back_size_is_still_held_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().rolls_back = true;
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(200)).await;
    first.stop().await;
    assert_eq!(target.updates(), vec![(0, 4)]);
    let held = journaled(dir.path()).record.refused.expect("journaled");
    assert_eq!((held.kpu, held.rolled_back_to), (4, Some(2)));

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(1800)).await;
    second.stop().await;
    assert_eq!(target.updates(), vec![(0, 4)]);
}

/// A journal written while the wall clock ran a day ahead holds a rolled
/// back size until a day from now: after NTP steps the clock back (or on a
/// host whose clock is behind), the hold still ends an hour from the
/// restart at the latest. It lasted the day before.
#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_does_not_stretch_a_held_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let day_ms = 86_400_000;
    let record = crate::state::AppRecord {
        seen_version_id: Some(1),
        refused: Some(crate::state::RefusedTarget {
            kpu: 4,
            until_ms: T0_MS + day_ms,
            rolled_back_to: Some(2),
        }),
        ..Default::default()
    };
    journal.save(&record, T0_MS).unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let held = journaled(dir.path()).record.refused.expect("still held");
    assert!(
        held.until_ms <= T0_MS + 3_600_000,
        "the hold ends an hour from the restart at the latest: {held:?}"
    );
    tokio::time::sleep(Duration::from_secs(3640)).await;
    run.stop().await;
    let updates = target.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(
        (3600..=3660).contains(&updates[0].0) && updates[0].1 == 4,
        "{updates:?}"
    );
}

/// A fresh start (no journal) whose first evaluations fail, restarted
/// before one succeeds: the journal it leaves says so, and the restarted
/// agent still holds the grace period of an update that ended moments
/// before. It forgot it before: the journal of the first start said only
/// "idle", and the restart decided at once on the restart's metrics.
#[tokio::test(start_paused = true)]
async fn a_restart_before_the_first_good_evaluation_still_holds_the_fresh_grace() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.last_update_ms = Some(T0_MS - 91_000);
        s.fail_describes = (0..20)
            .map(|_| TargetError::Transient("connection reset".into()))
            .collect();
    }
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(20)).await;
    first.stop().await;
    assert!(target.updates().is_empty());
    assert!(journaled(dir.path()).record.fresh_start);

    target.state.lock().unwrap().fail_describes.clear();
    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = second.stop().await;
    // The update ended by now (20 s on) at the latest: a grace period of
    // 300 s from then.
    let updates = target.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(updates[0].0 >= 320, "{updates:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::GraceHeld { .. })),
        "{events:?}"
    );
    assert!(!journaled(dir.path()).record.fresh_start);
}

/// A journal at idle that saw version 1, and the application at version 2
/// after somebody else's update, asked for `asked_secs_ago` before the
/// start, made while the agent was down: the updates and events of the
/// first 400 s after the restart.
async fn restart_after_an_update_made_while_down(
    asked_secs_ago: i64,
) -> (Vec<(u64, u32)>, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let record = crate::state::AppRecord {
        seen_version_id: Some(1),
        ..Default::default()
    };
    journal.save(&record, T0_MS).unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.version_id = 2;
        s.last_update_ms = Some(T0_MS - asked_secs_ago * 1000);
    }
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = run.stop().await;
    (target.updates(), events)
}

#[tokio::test(start_paused = true)]
async fn an_update_made_while_the_agent_was_down_is_waited_out_after_the_restart() {
    // The journal kept the version the agent last saw, so the first
    // evaluation finds the move: reported, and a grace period from now
    // (the update, asked for 91 s ago, ended by now at the latest).
    let (updates, events) = restart_after_an_update_made_while_down(91).await;
    assert_eq!(updates, vec![(300, 4)]);
    assert_eq!(failures(&events, "foreign_update").len(), 1, "{events:?}");
    let reason = Words::Msf.grace_after_other_writer().to_owned();
    assert_eq!(super::graces_held(&events), [(0, Some(300), reason)]);
}

#[tokio::test(start_paused = true)]
async fn an_update_long_past_made_while_the_agent_was_down_is_reported_not_waited_out() {
    // Asked for 3 h ago: it ended by update_timeout (30 min) after that,
    // and its grace period is long over. Reported, and decided at once.
    let (updates, events) = restart_after_an_update_made_while_down(3 * 3600).await;
    assert_eq!(updates, vec![(0, 4)]);
    assert_eq!(failures(&events, "foreign_update").len(), 1, "{events:?}");
    assert!(super::graces_held(&events).is_empty(), "{events:?}");
}

/// The agent stopped in the grace period after its own rescale; while it
/// was down somebody else rescaled the application (the reference
/// design's Lambda, not yet switched off). The restart's read resumes the
/// grace period, and must not take the moved version as seen: the first
/// evaluation after it reports the other update and waits out its grace
/// period, instead of deciding on metrics its restart just disturbed.
#[tokio::test(start_paused = true)]
async fn an_update_made_while_the_agent_was_down_in_its_grace_period_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    // 1 -> 2 at 0, RUNNING from 90, grace to 420.
    tokio::time::sleep(Duration::from_secs(200)).await;
    first.kill().await;
    assert!(matches!(
        journaled(dir.path()).record.phase,
        Phase::Grace { .. }
    ));
    // At 300 s somebody else sets 1 KPU (at once: the fake needs no time).
    tokio::time::sleep(Duration::from_secs(100)).await;
    {
        let mut s = target.state.lock().unwrap();
        s.last_update_ms = Some(T0_MS + 300_000);
    }
    super::set_by_another_writer(&target, 1);
    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(700)).await;
    let events = second.stop().await;
    assert_eq!(failures(&events, "foreign_update").len(), 1, "{events:?}");
    // The agent's own grace ends at 420 s, where it finds the other
    // update (asked at 300, so over by 420 at the latest): a grace period
    // from then, and the next update at 720 (from 1 KPU), not at 420.
    let updates = target.updates();
    assert_eq!(updates[..2], [(0, 2), (720, 2)], "{updates:?}");
}

#[tokio::test(start_paused = true)]
async fn a_start_without_a_journal_during_an_update_follows_it_then_holds_a_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    {
        // Somebody's update, requested 40 s before the start, ends at 50 s.
        let mut s = target.state.lock().unwrap();
        s.status = AppStatus::Updating;
        s.version_id = 2;
        s.updating_until = Some(Instant::now() + Duration::from_secs(50));
        s.last_update_ms = Some(T0_MS - 40_000);
    }
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = run.stop().await;
    // Followed (polled at 60 s: RUNNING), then a grace period to 360 s.
    assert_eq!(target.updates(), vec![(360, 4)]);
    let reason = Words::Msf.grace_after_recent_update().to_owned();
    assert_eq!(
        super::graces_held(&events),
        [(0, None, reason.clone()), (60, Some(360), reason)]
    );
    assert!(failures(&events, "not_running").is_empty(), "{events:?}");
}

/// Killed while following its update; while the agent was down the
/// application was replaced under its name (here an MSF application
/// deleted and created again, at a higher version). The journal keeps the
/// identity the update was made on, so the restarted agent does not take
/// the new application for the update completed: it says so, gives the
/// update up, waits the new one out, and journals its identity.
#[tokio::test(start_paused = true)]
async fn an_application_replaced_while_the_agent_was_down_mid_update_is_not_its_update() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.identity = Some("c1".to_owned());
        s.reports_asked = true;
    }
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(70)).await;
    first.kill().await;
    let record = journaled(dir.path()).record;
    assert_eq!(record.phase.name(), "updating");
    assert_eq!(record.seen_identity.as_deref(), Some("c1"));
    {
        let mut s = target.state.lock().unwrap();
        s.identity = Some("c2".to_owned());
        s.version_id += 10;
        s.status = AppStatus::Running;
        s.parallelism = 1;
        s.pending_parallelism = 1;
        s.updating_until = None;
    }

    let second = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = second.stop().await;
    assert_eq!(
        resumed(&events),
        [(
            "updating".to_owned(),
            "the application was replaced: the update is given up, the new one waited out"
                .to_owned()
        )]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RescaleCompleted { .. })),
        "{events:?}"
    );
    let said = failures(&events, "update_result");
    assert_eq!(said.len(), 1, "{events:?}");
    assert!(
        said[0].contains("(creation time c1, now c2)")
            && said[0]
                .contains("the rescale did not carry over: the new application asks for 1 KPU"),
        "{}",
        said[0]
    );
    assert_eq!(
        graces_held(&events),
        [(
            70,
            Some(370),
            "grace period after the application was re-created".to_owned()
        )]
    );
    assert_eq!(target.updates(), vec![(0, 2), (370, 2)]);
    assert_eq!(
        journaled(dir.path()).record.seen_identity.as_deref(),
        Some("c2")
    );
}

/// What the `once` command does on the journal in `dir`
/// ([`crate::agent::Agent::once`]): resolve what the journal left, then
/// evaluate (the doubling policy at 95 % CPU, which always wants more) and
/// act, or report why not. Returns the wait found, the outcome and the
/// events.
async fn once(target: &Arc<FakeTarget>, dir: &Path) -> (Option<Waiting>, ActOutcome, Vec<Event>) {
    let mut journal = journal(dir);
    let loaded = journal.load();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let clock = Clock::starting_at(T0_MS + target.origin.elapsed().as_millis() as i64);
    let mut controller = Controller::new(
        &test_app(),
        false,
        constant(95.0),
        target.clone(),
        Box::new(Doubling),
        Vec::new(),
        clock,
        Events::with_channel(tx),
    )
    .with_journal(journal, loaded);
    let waiting = controller.resolve().await;
    let assessment = controller.evaluate().await.expect("evaluates");
    let outcome = match waiting.clone() {
        Some(waiting) => controller.held(&assessment, waiting),
        None => controller.act(&assessment).await,
    };
    drop(controller);
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (waiting, outcome, events)
}

/// `once` after `run` stopped mid-grace: the grace period is waited out as
/// `run` would, not acted through (a rescale on the restart's metrics is
/// the double action the grace period exists to prevent); after it ends,
/// `once` acts.
#[tokio::test(start_paused = true)]
async fn once_during_a_journaled_grace_period_holds_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let first = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(200)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "grace");

    let (waiting, outcome, _) = once(&target, dir.path()).await;
    let waiting = waiting.expect("the grace period holds");
    assert_eq!(waiting.retry_after, Duration::from_secs(220));
    assert_eq!(
        waiting.reason,
        "the grace period after the update to 2 KPU has 220 s left"
    );
    assert_eq!(
        outcome,
        ActOutcome::NotSent {
            retry_after: Duration::from_secs(220),
            reason: Some(waiting.reason.clone()),
        }
    );
    assert_eq!(target.updates(), vec![(0, 2)]);
    assert_eq!(journaled(dir.path()).record.phase.name(), "grace");

    tokio::time::sleep(Duration::from_secs(230)).await;
    let (waiting, outcome, _) = once(&target, dir.path()).await;
    assert_eq!(waiting, None);
    assert!(
        matches!(outcome, ActOutcome::Started { to_kpu: 4, .. }),
        "{outcome:?}"
    );
    assert_eq!(target.updates(), vec![(0, 2), (430, 4)]);
}

/// `once` after `run` was killed between UpdateApplication's arrival and
/// its answer: the update is found to have taken effect and followed, not
/// sent again nor taken for another writer's; its end is journaled, and
/// the grace period after it holds.
#[tokio::test(start_paused = true)]
async fn once_after_a_kill_mid_call_follows_the_update_instead_of_resending_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let stuck = Arc::new(Stuck {
        inner: target.clone(),
        forward: true,
    });
    let first = launch_on(target.origin, stuck, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.kill().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "sending");

    // Still UPDATING: followed, nothing sent.
    let (waiting, outcome, events) = once(&target, dir.path()).await;
    let waiting = waiting.expect("the update in progress holds");
    assert_eq!(
        waiting.reason,
        format!(
            "the update to 2 KPU is still in progress; read again in {} s",
            waiting.retry_after.as_secs()
        )
    );
    assert!(matches!(outcome, ActOutcome::NotSent { .. }), "{outcome:?}");
    assert_eq!(
        resumed(&events),
        [(
            "sending".to_owned(),
            "follow the update in progress".to_owned()
        )]
    );
    assert!(failures(&events, "foreign_update").is_empty(), "{events:?}");
    assert_eq!(journaled(dir.path()).record.phase.name(), "updating");

    // After it ended (at 90 s): its completion is recorded and the grace
    // period (300 s from the read that saw it end) holds.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let (waiting, _, _) = once(&target, dir.path()).await;
    assert_eq!(
        waiting.map(|w| w.reason),
        Some("the grace period after the update to 2 KPU has 300 s left".to_owned())
    );
    let record = journaled(dir.path()).record;
    assert_eq!(record.last_rescale_ms, Some(T0_MS + 110_000));
    assert_eq!(target.updates(), vec![(0, 2)]);
}

/// `once` on a journal it cannot read fails closed as `run` does: the
/// outcome of anything in flight is unknown, so one grace period is held
/// before anything is sent.
#[tokio::test(start_paused = true)]
async fn once_on_a_corrupt_journal_holds_one_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), b"{\"format\": 1, \"reco").unwrap();
    let target = FakeTarget::new(1, 90);
    let (waiting, outcome, _) = once(&target, dir.path()).await;
    let waiting = waiting.expect("fails closed");
    assert_eq!(waiting.retry_after, Duration::from_secs(300));
    assert!(
        waiting.reason.starts_with("the journal could not be read"),
        "{}",
        waiting.reason
    );
    assert!(matches!(outcome, ActOutcome::NotSent { .. }), "{outcome:?}");
    assert!(target.updates().is_empty());
}

/// A log that keeps what is written to it, for the tests that read the
/// agent's log lines.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<u8>>>);

impl Kept {
    /// A log kept for this thread's events until the guard is dropped.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let kept = Self::default();
        let writer = kept.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (kept, tracing::subscriber::set_default(subscriber))
    }

    /// What was written so far.
    fn said(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Kept {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stop while an update is followed says that the journal keeps it for
/// the next start; a stop with nothing in flight says nothing of it.
#[tokio::test(start_paused = true)]
async fn a_stop_with_an_update_in_flight_says_the_journal_keeps_it() {
    let (kept, _log) = Kept::capture();
    let said = || kept.said();
    const WORDS: &str = "Stopping with an update in flight; the journal keeps it";

    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(1, 90);
    let running = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    running.stop().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "sent");
    let log = said();
    let line = log
        .lines()
        .find(|l| l.contains(WORDS))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("WARN") && line.contains("phase=\"sent\"") && line.contains("to=2 KPU"),
        "{line}"
    );

    // Mid-grace (the update over at 130 s), nothing is in flight.
    kept.0.lock().unwrap().clear();
    let idle = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(200)).await;
    idle.stop().await;
    assert_eq!(journaled(dir.path()).record.phase.name(), "grace");
    assert!(!said().contains(WORDS), "{}", said());
}

/// What each evaluation said: when the last rescale was, and how long the
/// last update took.
type LastRescales = Arc<Mutex<Vec<(Option<i64>, Option<u32>)>>>;

/// A policy that holds, noting [`LastRescales`].
struct SeesLastRescale(LastRescales);

impl Decide for SeesLastRescale {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        self.0
            .lock()
            .unwrap()
            .push((e.app.last_rescale_ms, e.app.last_update_duration_secs));
        Ok(Decision::hold("seeing"))
    }
    fn label(&self) -> String {
        "sees-last-rescale (test)".into()
    }
}

/// Starts a controller on the journal in `dir` with [`SeesLastRescale`];
/// returns what it saw.
fn launch_seeing(target: &Arc<FakeTarget>, dir: &Path) -> (Running, LastRescales) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut journal = journal(dir);
    let loaded = journal.load();
    let running = Running::launch(
        target.origin,
        target.clone(),
        constant(50.0),
        Box::new(SeesLastRescale(seen.clone())),
        Vec::new(),
        |c| c.with_journal(journal, loaded),
    );
    (running, seen)
}

/// A journal written while the wall clock ran a day ahead says the last
/// rescale was a day from now. The policies read their metrics from the
/// last rescale on (those before it are of the old size), so `rate` and
/// `predictive` held at every evaluation for the day ("no input rate
/// measured since the last rescale yet"). It is taken as no later than
/// now, as the journal's holds are.
#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_does_not_put_the_last_rescale_in_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let day_ms = 86_400_000;
    let record = crate::state::AppRecord {
        seen_version_id: Some(1),
        last_rescale_ms: Some(T0_MS + day_ms),
        last_update_duration_secs: Some(90),
        ..Default::default()
    };
    journal.save(&record, T0_MS).unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    let (run, seen) = launch_seeing(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(130)).await;
    run.stop().await;
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (last_rescale_ms, _) in &seen {
        assert!(
            last_rescale_ms.is_some_and(|ms| ms <= T0_MS + 130_000),
            "{seen:?}"
        );
    }
    let journaled = journaled(dir.path()).record.last_rescale_ms;
    assert!(
        journaled.is_some_and(|ms| ms <= T0_MS + 130_000),
        "{journaled:?}"
    );
}

/// An update found in the journal at the start, asked for an hour before
/// (the agent was down, or the application paused, meanwhile), and over by
/// now: its start-to-end time is no measure of how long an update takes,
/// so the last one measured (90 s) stays what the policies see, and the
/// completion says no duration. It was
/// recorded as 3600 s, and `rate` and `predictive`, taking that as the
/// next restart's length, sized the next scale-out for an hour's backlog.
#[tokio::test(start_paused = true)]
async fn an_update_resolved_after_a_restart_keeps_the_last_measured_duration() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let update = crate::state::Update {
        target_kpu: 4,
        from_kpu: 2,
        quoted_version_id: 1,
        reason: "high in ALARM".into(),
        started_ms: T0_MS - 3_600_000,
    };
    let record = crate::state::AppRecord {
        phase: Phase::Updating {
            update,
            observed_ms: T0_MS - 3_590_000,
            new_version_id: None,
        },
        seen_version_id: Some(1),
        last_rescale_ms: Some(T0_MS - 7_200_000),
        last_update_duration_secs: Some(90),
        ..Default::default()
    };
    journal.save(&record, T0_MS - 3_590_000).unwrap();
    drop(journal);
    // The update took effect while nothing followed it.
    let target = FakeTarget::new(4, 90);
    target.state.lock().unwrap().version_id = 2;
    let (run, seen) = launch_seeing(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = run.stop().await;
    // Completed, with no duration said: an hour since it was sent is not
    // how long it took.
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::RescaleCompleted {
                kpu: 4,
                update_secs: None,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(
        journaled(dir.path()).record.last_update_duration_secs,
        Some(90)
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "evaluated after the grace period");
    assert!(seen.iter().all(|(_, secs)| *secs == Some(90)), "{seen:?}");
}

/// Launches a controller that decides to scale out, and stops it once its
/// journal says the application is UPDATING (its first poll, 60 s after
/// the update); fails if it never does within 85 s.
async fn stopped_once_updating(target: &Arc<FakeTarget>, dir: &Path) {
    let first = launch(target, dir);
    let mut updating = false;
    for _ in 0..85 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        updating = matches!(journaled(dir).record.phase, Phase::Updating { .. });
        if updating {
            break;
        }
    }
    first.stop().await;
    assert!(updating, "{:?}", journaled(dir).record.phase);
}

/// An agent stopped while its accepted update was under way, started again
/// once the update had been rolled back (MSF's system rollback, the
/// version moved on or restored): it knows the version its update made,
/// journaled with the phase, so the rollback is said and the size held,
/// not asked for again at the next evaluation. The version was in the
/// journal only until the application was seen UPDATING, and a restart
/// took a rollback that restored the version for an update that never took
/// effect (no failure said), one that moved it on for a plain end: either
/// way the same failing size was asked for again.
#[tokio::test(start_paused = true)]
async fn a_rollback_while_the_agent_was_down_is_still_its_updates() {
    for restores_version in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let target = FakeTarget::new(2, 90);
        {
            let mut s = target.state.lock().unwrap();
            s.rolls_back = true;
            s.rollback_restores_version = restores_version;
        }
        stopped_once_updating(&target, dir.path()).await;
        assert_eq!(target.updates(), vec![(0, 4)]);
        let phase = journaled(dir.path()).record.phase;
        assert!(
            matches!(
                phase,
                Phase::Updating {
                    new_version_id: Some(2),
                    ..
                }
            ),
            "{phase:?}"
        );
        // The update ends 90 s after it was sent, rolled back, while
        // nothing runs.
        tokio::time::sleep(Duration::from_secs(200)).await;
        let second = launch(&target, dir.path());
        tokio::time::sleep(Duration::from_secs(1800)).await;
        let events = second.stop().await;
        assert_eq!(
            target.updates(),
            vec![(0, 4)],
            "restores {restores_version}"
        );
        let held = journaled(dir.path()).record.refused.expect("held");
        assert_eq!((held.kpu, held.rolled_back_to), (4, Some(2)));
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Failed { message, .. } if message.contains("was rolled back")
            )),
            "restores {restores_version}: {events:?}"
        );
    }
}

/// A journal in `updating` for an update to 4 KPU asked for six hours
/// before the start, quoting version 1 and making version 2; the target
/// at `version` and `kpu`, last updated `last_update_ago_ms` before the
/// start, rolled back from `rolled_back_from`: the record after 60 s.
async fn resumed_six_hours_on(
    version: u64,
    kpu: u32,
    rolled_back_from: Option<u64>,
    last_update_ago_ms: i64,
) -> crate::state::AppRecord {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let record = crate::state::AppRecord {
        phase: Phase::Updating {
            update: crate::state::Update {
                target_kpu: 4,
                from_kpu: 2,
                quoted_version_id: 1,
                reason: "high in ALARM".into(),
                started_ms: T0_MS - 6 * 3_600_000,
            },
            observed_ms: T0_MS - 6 * 3_600_000 + 60_000,
            new_version_id: Some(2),
        },
        seen_version_id: Some(1),
        ..Default::default()
    };
    journal
        .save(&record, T0_MS - 6 * 3_600_000 + 60_000)
        .unwrap();
    drop(journal);
    let target = FakeTarget::new(kpu, 90);
    {
        let mut s = target.state.lock().unwrap();
        s.version_id = version;
        s.rolled_back_from = rolled_back_from;
        s.last_update_ms = Some(T0_MS - last_update_ago_ms);
    }
    let (run, _) = launch_seeing(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(60)).await;
    run.stop().await;
    journaled(dir.path()).record
}

/// Found across a gap of hours, the end of an update says nothing of when
/// what followed it came: an operator's RollbackApplication of the size
/// an hour before the start (five hours after the update) is no failure
/// of the update (no size held), and another writer's update back to 2
/// KPU is no override within the fight window (the window would count
/// from the start). A rollback within the update's timeout still is its
/// failure.
#[tokio::test(start_paused = true)]
async fn what_followed_an_update_across_a_gap_is_not_dated_by_the_restart() {
    let operator_rollback = resumed_six_hours_on(3, 2, Some(2), 3_600_000).await;
    assert_eq!(operator_rollback.refused, None, "{operator_rollback:?}");
    let system_rollback = resumed_six_hours_on(3, 2, Some(2), 6 * 3_600_000 - 120_000).await;
    assert_eq!(
        system_rollback.refused.map(|r| r.kpu),
        Some(4),
        "{system_rollback:?}"
    );
    let overridden = resumed_six_hours_on(3, 2, None, 3_600_000).await;
    assert!(
        overridden.fight.overrides.is_empty(),
        "{:?}",
        overridden.fight
    );
}

/// An agent restarted a minute into its update (a reload of the
/// application restarts its controller the same way) follows the rest of
/// the update live: a rollback it sees at 35 minutes, past the update
/// timeout, is still the update's failure, and the size is held. Only an
/// update found over at the first read after the restart has its
/// rollback dated: taking every update resumed from the journal so, the
/// size was asked for again.
#[tokio::test(start_paused = true)]
async fn a_rollback_seen_live_after_a_restart_is_the_updates() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 2_100);
    target.state.lock().unwrap().rolls_back = true;
    stopped_once_updating(&target, dir.path()).await;
    let second = launch(&target, dir.path());
    // MSF dates the application's last update by the rollback.
    target.state.lock().unwrap().last_update_ms = Some(T0_MS + 2_100_000);
    tokio::time::sleep(Duration::from_secs(3_000)).await;
    let events = second.stop().await;
    assert_eq!(target.updates(), vec![(0, 4)], "{events:?}");
    let held = journaled(dir.path()).record.refused.expect("held");
    assert_eq!((held.kpu, held.rolled_back_to), (4, Some(2)));
}

/// What a restart says it waits out is what it waits: a journaled grace
/// period with 30 s left, until its end (readiness allowed the whole
/// period); an application found busy with an unreadable journal, said
/// once while it stays busy (each read said it again, and each pushed
/// readiness's allowance on).
#[tokio::test(start_paused = true)]
async fn a_restart_says_the_wait_it_resumes_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = journal(dir.path());
    let record = crate::state::AppRecord {
        phase: Phase::Grace {
            kpu: 2,
            until_ms: T0_MS + 30_000,
            after: None,
        },
        seen_version_id: Some(1),
        ..Default::default()
    };
    journal.save(&record, T0_MS).unwrap();
    drop(journal);
    let target = FakeTarget::new(2, 90);
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let events = run.stop().await;
    let waits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Resumed { wait, .. } => Some(*wait),
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        [Some(crate::telemetry::ResumedWait::Until(T0_MS + 30_000))]
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), b"{\"format\": 1, \"applic").unwrap();
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().status = AppStatus::Updating;
    let run = launch(&target, dir.path());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let events = run.stop().await;
    let said: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Resumed { phase, wait, .. } => Some((phase.clone(), *wait)),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [(
            "unknown".to_owned(),
            Some(crate::telemetry::ResumedWait::Follow)
        )],
        "{events:?}"
    );
    assert!(target.calls().len() >= 10, "read at every poll");
}

/// Started without a journal, the controller tells its policy the
/// service's last update (MSF's `LastUpdateTimestamp`) as the last
/// rescale: the policies take the periods from it on as the current
/// size's. It told them nothing, and `rate` measured its capacity over
/// the periods of the size before too (the application resized minutes
/// before the agent started). One dated after the agent's clock is not
/// taken: read as now at every evaluation, it kept the policies from
/// every period for as long as the clocks differ.
#[tokio::test(start_paused = true)]
async fn a_fresh_agent_tells_its_policy_the_services_last_update_as_the_last_rescale() {
    for (service_ms, expected) in [
        (T0_MS - 600_000, Some(T0_MS - 600_000)),
        (T0_MS + 86_400_000, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let target = FakeTarget::new(2, 90);
        target.state.lock().unwrap().last_update_ms = Some(service_ms);
        let (run, seen) = launch_seeing(&target, dir.path());
        tokio::time::sleep(Duration::from_secs(130)).await;
        run.stop().await;
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        for (last_rescale_ms, _) in &seen {
            assert_eq!(*last_rescale_ms, expected, "{seen:?}");
        }
    }
}

/// MSF's own autoscaling is warned of from the first step's own read,
/// once: a controller's start reads DescribeApplication once, not twice
/// (the warning had a read of its own: 200 more calls at the start of 200
/// applications, again at every restart and for each one a reload adds).
#[tokio::test(start_paused = true)]
async fn msf_autoscaling_is_warned_of_once_from_the_first_read() {
    let (kept, _log) = Kept::capture();
    let said = || kept.said();
    let describes = |target: &FakeTarget| {
        let s = target.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|c| matches!(c, Call::Describe { .. }))
            .count()
    };

    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::new(2, 90);
    target.state.lock().unwrap().autoscaling_enabled = true;
    let (run, seen) = launch_seeing(&target, dir.path());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "the first evaluation");
    assert_eq!(describes(&target), 1, "{}", said());
    tokio::time::sleep(Duration::from_secs(130)).await;
    run.stop().await;
    let evaluations = seen.lock().unwrap().len();
    assert!(evaluations > 1);
    assert_eq!(describes(&target), evaluations);
    assert_eq!(
        said().matches("MSF autoscaling is enabled").count(),
        1,
        "{}",
        said()
    );
}
