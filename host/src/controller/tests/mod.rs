//! The whole loop over in-process fakes, on tokio's paused clock: scale out,
//! poll while UPDATING, wait the grace period, re-check, scale again, stop at
//! max; plus dry run, an application busy with somebody else's update, a
//! failing policy and a stale version id. The submodules restart the
//! controller from its journal ([`restart`]), inject each class of AWS
//! failure ([`faults`]), quarantine real misbehaving plugins
//! ([`quarantine`]), and stand down when another writer fights the agent
//! ([`fight`]).

mod bounds;
mod exhaustive;
mod faults;
mod fight;
mod identity;
mod lazy;
mod quarantine;
mod restart;
mod stop;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;
use crate::config::{ApplicationConfig, Config};
use crate::metrics::Datapoint;
use crate::model::AlarmState;
use crate::target::AppStatus;
use crate::telemetry::Event;

/// A period-aligned epoch time, so that metric periods start at t = 0.
const T0_MS: i64 = 1_700_000_100_000;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Describe {
        at_secs: u64,
        status: AppStatus,
    },
    Update {
        at_secs: u64,
        parallelism: u32,
        version_id: u64,
    },
}

struct TargetState {
    status: AppStatus,
    parallelism: u32,
    parallelism_per_kpu: u32,
    version_id: u64,
    updating_until: Option<Instant>,
    pending_parallelism: u32,
    calls: Vec<Call>,
    /// Fail the next UpdateApplication with this error.
    fail_next_update: Option<TargetError>,
    /// Fail the next DescribeApplication calls with these errors.
    fail_describes: Vec<TargetError>,
    /// The application's KPU quota: every UpdateApplication to more KPU is
    /// refused with LimitExceeded (and does not take effect).
    kpu_limit: Option<u32>,
    /// The status an update ends in (RUNNING unless a test says otherwise).
    end_status: AppStatus,
    /// How long an update takes.
    update_secs: u64,
    /// Whether DescribeApplication says MSF's own autoscaling is on.
    autoscaling_enabled: bool,
    /// What DescribeApplication answers as the last update's time
    /// (`LastUpdateTimestamp`); unknown unless a test sets it.
    last_update_ms: Option<i64>,
    /// The application's identity (a Flink job's id, an MSF application's
    /// creation time); unknown unless a test sets it.
    identity: Option<String>,
    /// Whether describe says what the application was last asked for
    /// (`pending_parallelism`), as the Flink target does.
    reports_asked: bool,
    /// Whether an update, once over, is rolled back (MSF's system
    /// rollback: the old size again, a version further, and
    /// `rolled_back_from` the update's version).
    rolls_back: bool,
    /// `ApplicationVersionRolledBackFrom`.
    rolled_back_from: Option<u64>,
    /// Whether a rollback restores the version id it rolled back to
    /// instead of moving it on.
    rollback_restores_version: bool,
}

/// An application that takes `update_secs` to apply an update, with MSF's
/// rules: updates only while RUNNING and only with the current version id.
struct FakeTarget {
    origin: Instant,
    state: Mutex<TargetState>,
}

impl FakeTarget {
    fn new(kpu: u32, update_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            state: Mutex::new(TargetState {
                status: AppStatus::Running,
                parallelism: kpu,
                parallelism_per_kpu: 1,
                version_id: 1,
                updating_until: None,
                pending_parallelism: kpu,
                calls: Vec::new(),
                fail_next_update: None,
                fail_describes: Vec::new(),
                kpu_limit: None,
                end_status: AppStatus::Running,
                update_secs,
                autoscaling_enabled: false,
                last_update_ms: None,
                identity: None,
                reports_asked: false,
                rolls_back: false,
                rolled_back_from: None,
                rollback_restores_version: false,
            }),
        })
    }

    fn at_secs(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    fn settle(&self, s: &mut TargetState) {
        if let Some(until) = s.updating_until
            && Instant::now() >= until
        {
            s.status = s.end_status;
            if s.rolls_back {
                s.rolled_back_from = Some(s.version_id);
                if s.rollback_restores_version {
                    s.version_id -= 1;
                } else {
                    s.version_id += 1;
                }
            } else if s.end_status == AppStatus::Running {
                s.parallelism = s.pending_parallelism;
            }
            s.updating_until = None;
        }
    }

    fn begin_update(&self, s: &mut TargetState, parallelism: u32) {
        s.status = AppStatus::Updating;
        s.version_id += 1;
        s.pending_parallelism = parallelism;
        s.updating_until = Some(Instant::now() + Duration::from_secs(s.update_secs));
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    fn updates(&self) -> Vec<(u64, u32)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Update {
                    at_secs,
                    parallelism,
                    ..
                } => Some((at_secs, parallelism)),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl ScalingTarget for FakeTarget {
    async fn describe(&self, _application: &str) -> Result<AppState, TargetError> {
        let mut s = self.state.lock().unwrap();
        if !s.fail_describes.is_empty() {
            return Err(s.fail_describes.remove(0));
        }
        self.settle(&mut s);
        let at_secs = self.at_secs();
        let status = s.status;
        s.calls.push(Call::Describe { at_secs, status });
        Ok(AppState {
            status,
            parallelism: s.parallelism,
            parallelism_per_kpu: s.parallelism_per_kpu,
            version_id: s.version_id,
            autoscaling_enabled: s.autoscaling_enabled,
            last_update_ms: s.last_update_ms,
            identity: s.identity.clone(),
            asked_kpu: s
                .reports_asked
                .then(|| s.pending_parallelism.div_ceil(s.parallelism_per_kpu)),
            rolled_back_from: s.rolled_back_from,
        })
    }

    async fn rescale(
        &self,
        _application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError> {
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        let at_secs = self.at_secs();
        let parallelism = kpu * current.parallelism_per_kpu;
        s.calls.push(Call::Update {
            at_secs,
            parallelism,
            version_id: current.version_id,
        });
        if let Some(error) = s.fail_next_update.take() {
            return Err(error);
        }
        if let Some(limit) = s.kpu_limit
            && kpu > limit
        {
            return Err(TargetError::LimitExceeded(format!(
                "{kpu} KPU exceeds the application's KPU quota of {limit}"
            )));
        }
        if s.status != AppStatus::Running {
            return Err(TargetError::ResourceInUse("not RUNNING".into()));
        }
        if current.version_id != s.version_id {
            return Err(TargetError::ConcurrentModification("stale version".into()));
        }
        self.begin_update(&mut s, parallelism);
        Ok(s.version_id)
    }
}

/// Publishes `value` for every complete period up to the last one, as a
/// CloudWatch metric would with no delay.
struct ConstantSource {
    value: Mutex<f64>,
}

#[async_trait]
impl MetricSource for ConstantSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let value = *self.value.lock().unwrap();
        Ok(queries
            .iter()
            .map(|q| {
                let period_ms = i64::from(q.period_secs) * 1000;
                let first = start_ms.div_euclid(period_ms) * period_ms;
                let points = (0..)
                    .map(|i| first + i * period_ms)
                    .take_while(|t| t + period_ms <= end_ms)
                    .filter(|t| *t >= start_ms)
                    .map(|timestamp_ms| Datapoint {
                        timestamp_ms,
                        value,
                    })
                    .collect();
                Series {
                    query: q.clone(),
                    points,
                }
            })
            .collect())
    }
}

/// The reference rule in Rust: double on "high" in ALARM, halve on "low".
struct Doubling;

impl Decide for Doubling {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        let state = |id: &str| e.alarms.iter().find(|a| a.name == id).map(|a| a.state);
        let kpu = e.app.kpu;
        let (action, reason) = if state("high") == Some(AlarmState::Alarm) {
            (Action::ScaleTo(kpu * 2), "high in ALARM")
        } else if state("low") == Some(AlarmState::Alarm) {
            (Action::ScaleTo(kpu / 2), "low in ALARM")
        } else {
            (Action::Hold, "no alarm")
        };
        Ok(Decision {
            action,
            reason: reason.into(),
            next_evaluation_secs: None,
        })
    }
    fn label(&self) -> String {
        "doubling (test)".into()
    }
}

struct Failing;

impl Decide for Failing {
    fn decide(&mut self, _: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        Err(crate::controller::PluginFailure::new(
            crate::plugin::FailureClass::GuestError,
            "boom",
        ))
    }
    fn label(&self) -> String {
        "failing (test)".into()
    }
}

const CONFIG: &str = r#"
[[application]]
name = "app"
min_kpu = 1
max_kpu = 10
update_poll_secs = 60
grace_period_secs = 300

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = { Application = "app" }
statistic = "Maximum"
period_secs = 60

[[application.alarm]]
id = "high"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 80.0
evaluation_periods = 5

[[application.alarm]]
id = "low"
metric = "cpu"
comparison = "LessThanOrEqualToThreshold"
threshold = 20.0
evaluation_periods = 5

[application.policy]
plugin = "doubling"
"#;

struct Harness {
    target: Arc<FakeTarget>,
    source: Arc<ConstantSource>,
    events: mpsc::UnboundedReceiver<Event>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<Journal>>,
}

impl Harness {
    fn start(cpu: f64, kpu: u32, dry_run: bool, policy: Box<dyn Decide>) -> Self {
        let config: Config = toml::from_str(CONFIG).expect("test config parses");
        let app = &config.applications[0];
        let target = FakeTarget::new(kpu, 90);
        let source = Arc::new(ConstantSource {
            value: Mutex::new(cpu),
        });
        let (tx, events) = mpsc::unbounded_channel();
        let controller = Controller::new(
            app,
            dry_run,
            source.clone(),
            target.clone(),
            policy,
            Vec::new(),
            Clock::starting_at(T0_MS),
            Events::with_channel(tx),
        );
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(controller.run(rx));
        Self {
            target,
            source,
            events,
            shutdown,
            task,
        }
    }

    async fn stop(mut self) -> (Arc<FakeTarget>, Vec<Event>) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap();
        let mut events = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            events.push(e);
        }
        (self.target, events)
    }
}

/// The application of [`CONFIG`].
fn test_app() -> ApplicationConfig {
    let config: Config = toml::from_str(CONFIG).expect("test config parses");
    config.applications[0].clone()
}

fn constant(cpu: f64) -> Arc<ConstantSource> {
    Arc::new(ConstantSource {
        value: Mutex::new(cpu),
    })
}

/// A controller running over the fakes, started at any tokio time: its
/// wall clock reads `T0_MS` plus the time since `origin` (the fake
/// target's), as a restarted agent's would.
struct Running {
    events: mpsc::UnboundedReceiver<Event>,
    counts: Arc<crate::telemetry::FailureCounts>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<Journal>>,
}

impl Running {
    /// [`Running::launch_app`] for [`test_app`].
    fn launch(
        origin: Instant,
        target: Arc<dyn ScalingTarget>,
        source: Arc<ConstantSource>,
        policy: Box<dyn Decide>,
        interpreters: Vec<Box<dyn Interpret>>,
        configure: impl FnOnce(Controller) -> Controller,
    ) -> Self {
        Self::launch_app(
            &test_app(),
            origin,
            target,
            source,
            policy,
            interpreters,
            configure,
        )
    }

    /// [`Running::launch`] of the doubling policy over `cpu` % CPU with
    /// `interpreter` as its one interpreter, the controller as it comes.
    fn launch_interpreted(
        target: &Arc<FakeTarget>,
        cpu: f64,
        interpreter: Box<dyn Interpret>,
    ) -> Self {
        Self::launch(
            target.origin,
            target.clone(),
            constant(cpu),
            Box::new(Doubling),
            vec![interpreter],
            |c| c,
        )
    }

    /// [`Running::launch_app`] of `app` over `target` from `origin`: the
    /// doubling policy at 95 % CPU (so it wants to scale out at every
    /// evaluation), no interpreter, the controller as it comes.
    fn launch_doubling(
        app: &ApplicationConfig,
        target: Arc<dyn ScalingTarget>,
        origin: Instant,
    ) -> Self {
        Self::launch_app(
            app,
            origin,
            target,
            constant(95.0),
            Box::new(Doubling),
            Vec::new(),
            |c| c,
        )
    }

    /// A controller of `app` over the fakes, as `configure` finishes it.
    fn launch_app(
        app: &ApplicationConfig,
        origin: Instant,
        target: Arc<dyn ScalingTarget>,
        source: Arc<ConstantSource>,
        policy: Box<dyn Decide>,
        interpreters: Vec<Box<dyn Interpret>>,
        configure: impl FnOnce(Controller) -> Controller,
    ) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let events_out = Events::with_channel(tx);
        let counts = events_out.failure_counts();
        let clock = Clock::starting_at(T0_MS + origin.elapsed().as_millis() as i64);
        let controller = configure(Controller::new(
            app,
            false,
            source,
            target,
            policy,
            interpreters,
            clock,
            events_out,
        ));
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(controller.run(rx));
        Self {
            events,
            counts,
            shutdown,
            task,
        }
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            events.push(e);
        }
        events
    }

    /// Stops the controller as `kill -9` would: wherever it is, with no
    /// chance to write anything more.
    async fn kill(mut self) -> Vec<Event> {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.drain()
    }

    /// Stops the controller through its shutdown signal.
    async fn stop(mut self) -> Vec<Event> {
        self.shutdown.send(true).unwrap();
        (&mut self.task).await.unwrap();
        self.drain()
    }
}

/// The application RUNNING at 2 KPU, version 1, as MSF describes it.
fn running() -> AppState {
    AppState {
        status: AppStatus::Running,
        parallelism: 2,
        parallelism_per_kpu: 1,
        version_id: 1,
        autoscaling_enabled: false,
        last_update_ms: None,
        identity: None,
        asked_kpu: None,
        rolled_back_from: None,
    }
}

/// Somebody else sets `kpu` at once (the console, a second agent): the
/// version id moves; the new one is returned. With `kpu` as it is, a
/// restart (a Flink job's).
fn set_by_another_writer(target: &FakeTarget, kpu: u32) -> u64 {
    let mut s = target.state.lock().unwrap();
    assert_eq!(s.status, AppStatus::Running, "the fake is busy");
    s.version_id += 1;
    s.parallelism = kpu;
    s.pending_parallelism = kpu;
    s.version_id
}

/// The one failure event of `class` (there must be exactly one).
fn the_failure<'a>(events: &'a [Event], class: &str) -> &'a str {
    let said = failures(events, class);
    assert_eq!(said.len(), 1, "{class}: {events:?}");
    said[0]
}

/// Sleeps until `at_secs` since the target's origin.
async fn until(target: &FakeTarget, at_secs: u64) {
    let now = target.at_secs();
    tokio::time::sleep(Duration::from_secs(at_secs.saturating_sub(now))).await;
}

/// The failure events of `class`.
fn failures<'a>(events: &'a [Event], class: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Failed {
                class: c, message, ..
            } if c == class => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// Seconds since `origin` of each Evaluated event, with its decision.
fn evaluations(events: &[Event]) -> Vec<(i64, Decision)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated {
                at_ms, decision, ..
            } => Some(((at_ms - T0_MS) / 1000, decision.clone())),
            _ => None,
        })
        .collect()
}

/// The decision of the evaluation at `t` s among `decided` (as
/// [`evaluations`] lists them); fails the test if there was none.
fn decision_at(decided: &[(i64, Decision)], t: i64) -> Decision {
    decided
        .iter()
        .find(|(at, _)| *at == t)
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| panic!("no evaluation at {t} s: {decided:?}"))
}

#[tokio::test(start_paused = true)]
async fn scales_out_follows_update_waits_grace_and_stops_at_max() {
    let h = Harness::start(95.0, 1, false, Box::new(Doubling));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let (target, events) = h.stop().await;

    // Every rescale is 60 s poll (UPDATING) + 60 s poll (RUNNING, 90 s update
    // done) + 300 s grace = 420 s after the previous one; 8 -> 16 is clamped
    // to max 10, and at 10 the loop settles.
    assert_eq!(
        target.updates(),
        vec![(0, 2), (420, 4), (840, 8), (1260, 10)]
    );
    let calls = target.calls();
    let first_update = calls
        .iter()
        .position(|c| matches!(c, Call::Update { .. }))
        .unwrap();
    assert_eq!(
        calls[first_update + 1..first_update + 3],
        [
            Call::Describe {
                at_secs: 60,
                status: AppStatus::Updating
            },
            Call::Describe {
                at_secs: 120,
                status: AppStatus::Running
            },
        ],
        "polls every update_poll_secs while UPDATING"
    );
    // Never an UpdateApplication while the application was UPDATING.
    let mut updating = false;
    for c in &calls {
        match c {
            Call::Describe { status, .. } => updating = *status == AppStatus::Updating,
            Call::Update { .. } => assert!(!updating, "update sent while UPDATING: {calls:?}"),
        }
    }
    let clamped = events.iter().any(|e| matches!(e,
        Event::Evaluated { decision, .. } if decision.action == Action::ScaleTo(10) && decision.reason.contains("clamped")));
    assert!(
        clamped,
        "the 8 -> 16 decision is clamped to 10 with a reason"
    );
    let completed = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::RescaleCompleted {
                    update_secs: Some(120),
                    ..
                }
            )
        })
        .count();
    assert_eq!(completed, 4);
}

#[tokio::test(start_paused = true)]
async fn scales_in_to_min_and_settles() {
    let h = Harness::start(5.0, 8, false, Box::new(Doubling));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let (target, _) = h.stop().await;
    assert_eq!(target.updates(), vec![(0, 4), (420, 2), (840, 1)]);
}

#[tokio::test(start_paused = true)]
async fn holds_when_no_alarm_fires_and_reacts_when_load_rises() {
    let h = Harness::start(50.0, 2, false, Box::new(Doubling));
    tokio::time::sleep(Duration::from_secs(630)).await;
    assert!(h.target.updates().is_empty());
    *h.source.value.lock().unwrap() = 90.0;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (target, _) = h.stop().await;
    // Evaluations every 60 s (the metric period); the first one after the
    // change (at 660 s) sees 5 of 5 breaching periods.
    assert_eq!(target.updates(), vec![(660, 4)]);
}

#[tokio::test(start_paused = true)]
async fn dry_run_decides_but_never_updates() {
    let h = Harness::start(95.0, 1, true, Box::new(Doubling));
    tokio::time::sleep(Duration::from_secs(1800)).await;
    let (target, events) = h.stop().await;
    assert!(target.updates().is_empty());
    let dry = events
        .iter()
        .filter(|e| matches!(e, Event::Evaluated { dry_run: true, decision, .. } if decision.action == Action::ScaleTo(2)))
        .count();
    assert!(dry >= 30, "one dry-run decision a minute, got {dry}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_policy_holds() {
    let h = Harness::start(95.0, 1, false, Box::new(Failing));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let (target, events) = h.stop().await;
    assert!(target.updates().is_empty());
    assert!(events.iter().any(|e| matches!(e,
        Event::Failed { class, message, .. } if class == "plugin" && message.contains("boom"))));
    assert!(events.iter().any(|e| matches!(e,
        Event::Evaluated { decision, .. } if decision.action == Action::Hold && decision.reason.contains("failing (test)"))));
}

#[tokio::test(start_paused = true)]
async fn never_updates_an_application_that_is_not_running() {
    let target_busy = {
        let h = Harness::start(95.0, 1, false, Box::new(Doubling));
        // Somebody else starts an update before our first evaluation.
        {
            let mut s = h.target.state.lock().unwrap();
            h.target.begin_update(&mut s, 3);
        }
        tokio::time::sleep(Duration::from_secs(200)).await;
        h.stop().await.0
    };
    let updates = target_busy.updates();
    // The foreign update ends at 90 s; the controller re-checks every
    // update_poll_secs (60 s) and sends its own at 120 s, from 3 KPU.
    assert_eq!(updates, vec![(120, 6)]);
}

#[tokio::test(start_paused = true)]
async fn a_stale_version_is_re_read_not_retried_blindly() {
    let h = Harness::start(95.0, 2, false, Box::new(Doubling));
    h.target.state.lock().unwrap().fail_next_update =
        Some(TargetError::ConcurrentModification("stale".into()));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (target, events) = h.stop().await;
    let calls = target.calls();
    // The failed update is followed by a fresh DescribeApplication before the
    // next update.
    let updates: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Call::Update { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(updates.len(), 2, "{calls:?}");
    assert!(
        calls[updates[0] + 1..updates[1]]
            .iter()
            .any(|c| matches!(c, Call::Describe { .. }))
    );
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Failed { class, .. } if class == "concurrent_modification")
        )
    );
}

#[tokio::test(start_paused = true)]
async fn an_application_re_created_under_a_followed_update_is_reported_and_decided_afresh() {
    let h = Harness::start(95.0, 2, false, Box::new(Doubling));
    // The update to 4 KPU goes out at 0 s, quoting version 1 (accepted as
    // 2). At 30 s, while it is UPDATING, the application is re-created (a
    // stack re-deployed, an emulator restarted): version 1, RUNNING at
    // 2 KPU.
    tokio::time::sleep(Duration::from_secs(30)).await;
    {
        let mut s = h.target.state.lock().unwrap();
        assert_eq!((s.status, s.version_id), (AppStatus::Updating, 2));
        s.status = AppStatus::Running;
        s.version_id = 1;
        s.parallelism = 2;
        s.pending_parallelism = 2;
        s.updating_until = None;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (target, events) = h.stop().await;
    // The poll at 60 s finds it; the operator is told why the update is
    // no longer followed, once ...
    let reported = failures(&events, "update_result");
    assert_eq!(reported.len(), 1, "{events:?}");
    assert!(
        reported[0].contains("version id went back to 1")
            && reported[0].contains("update to 4 KPU (quoting version 1)")
            && reported[0].contains("replaced or re-created"),
        "{}",
        reported[0]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RescaleCompleted { .. })),
        "no rescale completed: {events:?}"
    );
    // ... and the intent is decided afresh at once, from what runs now.
    assert_eq!(target.updates(), vec![(0, 4), (60, 4)]);
}

/// The grace periods held for updates the agent did not make: when (s
/// since `T0_MS`), until when (s), and why.
fn graces_held(events: &[Event]) -> Vec<(i64, Option<i64>, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::GraceHeld {
                at_ms,
                until_ms,
                reason,
                ..
            } => Some((
                (at_ms - T0_MS) / 1000,
                until_ms.map(|u| (u - T0_MS) / 1000),
                reason.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// Doubling at 95 % CPU from 2 KPU (a dry run or not), and somebody else
/// (a second agent, the console) who sets 3 KPU at 200 s, making version
/// `version_id`: the run until 900 s.
async fn another_writer_sets_3_kpu_at_200_s(
    dry_run: bool,
    version_id: u64,
) -> (Arc<FakeTarget>, Vec<Event>) {
    let h = Harness::start(95.0, 2, dry_run, Box::new(Doubling));
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(set_by_another_writer(&h.target, 3), version_id);
    tokio::time::sleep(Duration::from_secs(700)).await;
    h.stop().await
}

#[tokio::test(start_paused = true)]
async fn another_writers_update_is_reported_and_waited_out_with_a_grace_period() {
    // The agent's update to 4 KPU goes out at 0 s (version 1 -> 2), ends
    // at 90 s; its grace period runs to 420 s. At 200 s somebody else
    // sets 3 KPU: version 3.
    let (target, events) = another_writer_sets_3_kpu_at_200_s(false, 3).await;
    // The evaluation at 420 s finds version 3: the metrics it decided on
    // are those of that update's restart, so it is not acted on (before,
    // 3 -> 6 went out at once, at 420 s). A grace period counts from then,
    // as after the agent's own update, and 3 -> 6 goes out at 720 s. The
    // agent's own updates (1 -> 2, 3 -> 4) are never taken for somebody
    // else's.
    assert_eq!(target.updates(), vec![(0, 4), (720, 6)]);
    assert_eq!(
        graces_held(&events),
        [(
            420,
            Some(720),
            "grace period after another writer's update".to_owned()
        )]
    );
    let at_420: Vec<_> = evaluations(&events)
        .into_iter()
        .filter(|(t, _)| *t == 420)
        .collect();
    assert_eq!(at_420.len(), 1, "{at_420:?}");
    assert_eq!(at_420[0].1.action, Action::Hold, "{at_420:?}");
    assert!(
        at_420[0].1.reason.ends_with(
            "; grace period after another writer's update: not acted on for 300 s, holding"
        ),
        "{at_420:?}"
    );
    // Reported once, as before.
    let reported = failures(&events, "foreign_update");
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(
        reported[0].starts_with(
            "the application's version id moved from 2 to 3 without an update of this agent: somebody else updated it"
        ) && reported[0].contains("it now runs at 3 KPU")
            && reported[0].contains("run one agent per application"),
        "{}",
        reported[0]
    );
}

/// Another writer's update met while it is still UPDATING: the report
/// says the size read is the one the update leaves (not that it "now
/// runs" there), and the hold says how long it lasts in plain words.
#[test]
fn another_writers_update_met_mid_way_is_said_as_it_is() {
    use super::machine::{Jitter, Machine};
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    machine.record.seen_version_id = Some(1);
    let state = AppState {
        status: AppStatus::Updating,
        parallelism: 5,
        version_id: 2,
        ..running()
    };
    let wants = Decision {
        action: Action::ScaleTo(8),
        reason: "high in ALARM".to_owned(),
        next_evaluation_secs: None,
    };
    let held = machine.assess(wants, &state, &settings, T0_MS);
    assert_eq!(held.action, Action::Hold);
    assert!(
        held.reason.ends_with(
            ": not acted on while the application is UPDATING, nor for 300 s after, holding"
        ),
        "{held:?}"
    );
    let step = step_evaluated(&mut machine, state, held, &settings, T0_MS);
    let reported: Vec<&str> = step
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Failed { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 1, "{step:?}");
    assert!(
        reported[0].contains("; it is UPDATING, from 5 KPU. Two writers"),
        "{}",
        reported[0]
    );
}

/// An update that ends past its timeout backs its polls off (one more
/// failed step each); once it ends, that count is over: the next failure
/// (a throttled read, say) backs off from 5 s again, not from minutes.
#[test]
fn an_update_that_ended_late_leaves_no_back_off_behind() {
    use super::machine::{Jitter, Machine, Next, Observation};
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    let now = T0_MS;
    let step = step_evaluated(
        &mut machine,
        running(),
        Decision {
            action: Action::ScaleTo(4),
            reason: "high in ALARM".to_owned(),
            next_evaluation_secs: None,
        },
        &settings,
        now,
    );
    assert!(matches!(step.next, Next::Run(_)), "{step:?}");
    machine.step(Observation::Updated(Ok(2)), &settings, now + 1_000);
    let updating = AppState {
        status: AppStatus::Updating,
        version_id: 2,
        ..running()
    };
    let late = now + settings.update_timeout.as_millis() as i64;
    for k in 1..=6 {
        machine.step(
            Observation::Described(Ok(updating.clone())),
            &settings,
            late + k * 60_000,
        );
    }
    assert!(machine.failures() >= 5, "{}", machine.failures());
    let done = AppState {
        parallelism: 4,
        version_id: 2,
        ..running()
    };
    let step = machine.step(Observation::Described(Ok(done)), &settings, late + 420_000);
    assert!(
        step.events
            .iter()
            .any(|e| matches!(e, Event::RescaleCompleted { kpu: 4, .. })),
        "{step:?}"
    );
    assert_eq!(machine.failures(), 0);
}

/// The grace owed is found once per evaluation, when the decision is
/// assessed: the step that the evaluation answers holds what the history
/// says even when that grace period ended while the plugin decided.
#[test]
fn the_step_holds_the_grace_owed_that_the_assessment_found() {
    use super::machine::{Jitter, Machine};
    let settings = Settings::from_config(&test_app(), false);
    let now = T0_MS;
    // Started without a journal; the last update was asked for so long
    // ago that 1 s of its grace period is left.
    let since = settings.update_timeout + settings.grace_period - Duration::from_secs(1);
    let state = AppState {
        version_id: 3,
        last_update_ms: Some(now - since.as_millis() as i64),
        ..running()
    };
    let wants = Decision {
        action: Action::ScaleTo(4),
        reason: "high in ALARM".to_owned(),
        next_evaluation_secs: None,
    };
    let fresh = || {
        let mut machine = Machine::new(Jitter::new(1));
        machine.started_without_journal();
        machine
    };
    let mut machine = fresh();
    let held = machine.assess(wants.clone(), &state, &settings, now);
    assert_eq!(held.action, Action::Hold);
    assert!(
        held.reason.ends_with("not acted on for 1 s, holding"),
        "{held:?}"
    );
    // The decision took 5 s: the grace period is over by the step, which
    // still holds it as the history says (and says so), once.
    let step = step_evaluated(&mut machine, state.clone(), held, &settings, now + 5_000);
    let graces: Vec<_> = step
        .events
        .iter()
        .filter_map(|e| match e {
            Event::GraceHeld { until_ms, .. } => Some(*until_ms),
            _ => None,
        })
        .collect();
    assert_eq!(graces, [Some(now + 1_000)], "{step:?}");
    assert!(
        matches!(machine.record.phase, crate::state::Phase::Grace { until_ms, .. } if until_ms == now + 1_000),
        "{:?}",
        machine.record.phase
    );
    // Stepped without an assessment, the machine finds it itself, at its
    // own time: nothing is owed by then, and the decision is sent.
    let mut machine = fresh();
    let step = step_evaluated(&mut machine, state, wants, &settings, now + 5_000);
    assert!(
        matches!(
            step.next,
            super::machine::Next::Run(super::machine::Command::Update { .. })
        ),
        "{step:?}"
    );
}

/// A dry run meets another writer's update as a run that acts does: it
/// reports it (the same `foreign_update` failure, so the same log line
/// and count) and waits out the grace period owed before it records a
/// decision to act again. Before, it reported nothing and went on
/// recording `ScaleTo` on the metrics of the other update's restart.
#[tokio::test(start_paused = true)]
async fn a_dry_run_reports_and_waits_out_another_writers_update() {
    // Nothing is sent: the dry run would ask for 4 KPU every minute. At
    // 200 s somebody else sets 3 KPU (version 1 -> 2).
    let (target, events) = another_writer_sets_3_kpu_at_200_s(true, 2).await;
    assert!(target.updates().is_empty());
    // Found at 240 s: a grace period to 540 s, as a run that acts holds.
    assert_eq!(
        graces_held(&events),
        [(
            240,
            Some(540),
            "grace period after another writer's update".to_owned()
        )]
    );
    let reported = failures(&events, "foreign_update");
    assert_eq!(reported.len(), 1, "{events:?}");
    assert!(
        reported[0].starts_with(
            "the application's version id moved from 1 to 2 without an update of this agent: somebody else updated it"
        ) && reported[0].contains("it now runs at 3 KPU"),
        "{}",
        reported[0]
    );
    let decided = evaluations(&events);
    let at = |t: i64| decision_at(&decided, t);
    assert_eq!(at(180).action, Action::ScaleTo(4));
    let held = at(240);
    assert_eq!(held.action, Action::Hold, "{held:?}");
    assert!(
        held.reason.ends_with(
            "; grace period after another writer's update: not acted on for 300 s, holding"
        ),
        "{held:?}"
    );
    assert!(
        !decided.iter().any(|(t, _)| (241..540).contains(t)),
        "evaluated while another writer's update was waited out: {decided:?}"
    );
    assert_eq!(at(540).action, Action::ScaleTo(6));
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Event::Evaluated { dry_run: false, .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn another_writers_update_still_in_progress_is_followed_before_its_grace_period() {
    let h = Harness::start(95.0, 2, false, Box::new(Doubling));
    // The agent's own update (0 s, to 4 KPU) and its grace period end at
    // 420 s. At 400 s somebody else starts an update to 3 KPU that runs
    // until 600 s.
    tokio::time::sleep(Duration::from_secs(400)).await;
    {
        let mut s = h.target.state.lock().unwrap();
        assert_eq!((s.status, s.version_id), (AppStatus::Running, 2));
        s.version_id = 3;
        s.status = AppStatus::Updating;
        s.pending_parallelism = 3;
        s.updating_until = Some(Instant::now() + Duration::from_secs(200));
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    let (target, events) = h.stop().await;
    // Seen UPDATING at 420 s: followed (nothing decided, no `not_running`
    // deferral), RUNNING at 600 s, grace period to 900 s, then 3 -> 6.
    assert_eq!(target.updates(), vec![(0, 4), (900, 6)]);
    let reason = "grace period after another writer's update".to_owned();
    assert_eq!(
        graces_held(&events),
        [(420, None, reason.clone()), (600, Some(900), reason)]
    );
    assert!(failures(&events, "not_running").is_empty(), "{events:?}");
    let decided: Vec<_> = evaluations(&events).into_iter().map(|(t, _)| t).collect();
    assert!(
        !decided.iter().any(|t| (421..900).contains(t)),
        "evaluated while another writer's update was followed or waited out: {decided:?}"
    );
    assert_eq!(failures(&events, "foreign_update").len(), 1, "{events:?}");
}

/// A restart that keeps the version id (StartApplication after a stop,
/// MSF's maintenance) is followed and waited out like another writer's
/// update: its first metrics are a restart's (the backlog built while it
/// was down), not a reason to restart it again minutes later.
#[tokio::test(start_paused = true)]
async fn a_restart_that_keeps_the_version_id_is_followed_then_waited_out() {
    for status in [AppStatus::Starting, AppStatus::Maintenance] {
        let h = Harness::start(95.0, 2, false, Box::new(Doubling));
        // The agent's own update (0 s, to 4 KPU) and its grace period end
        // at 420 s. At 400 s the application restarts, version 2 kept,
        // until 600 s.
        tokio::time::sleep(Duration::from_secs(400)).await;
        {
            let mut s = h.target.state.lock().unwrap();
            assert_eq!((s.status, s.version_id), (AppStatus::Running, 2));
            s.status = status;
            s.pending_parallelism = 4;
            s.updating_until = Some(Instant::now() + Duration::from_secs(200));
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
        let (target, events) = h.stop().await;
        // Seen busy at 420 s: followed (no `not_running` deferral), RUNNING
        // at 600 s, grace period to 900 s, then 4 -> 8. Before, 4 -> 8 went
        // out at the first RUNNING read, on the restart's metrics.
        assert_eq!(target.updates(), vec![(0, 4), (900, 8)], "{status}");
        let reason =
            "grace period after the application restarted without an update (a start or maintenance)"
                .to_owned();
        assert_eq!(
            graces_held(&events),
            [(420, None, reason.clone()), (600, Some(900), reason)],
            "{status}"
        );
        assert!(failures(&events, "not_running").is_empty(), "{events:?}");
        // Nobody else updated it: nothing is reported as a foreign update.
        assert!(failures(&events, "foreign_update").is_empty(), "{events:?}");
    }
}

/// Which busy readings owe the grace of a restart that keeps the version
/// id: STARTING or MAINTENANCE at the version last seen. Not UPDATING (a
/// Flink job RESTARTING), ROLLING_BACK or AUTOSCALING, which come with a
/// version move reported as another writer's when it is read (following
/// them would take that move in unreported), and not a version below the
/// one seen (a Flink job's placeholder graph after the agent's restart).
#[test]
fn only_a_start_or_maintenance_at_the_version_seen_owes_a_restarts_grace() {
    use super::machine::{Jitter, Machine};
    let settings = Settings::from_config(&test_app(), false);
    let mut machine = Machine::new(Jitter::new(1));
    machine.record.seen_version_id = Some(5);
    let owed = |status, version_id| {
        machine
            .grace_owed(
                &AppState {
                    status,
                    version_id,
                    ..running()
                },
                &settings,
                T0_MS,
            )
            .map(|owed| owed.reason)
    };
    let restart = Some(
        "grace period after the application restarted without an update (a start or maintenance)",
    );
    assert_eq!(owed(AppStatus::Starting, 5), restart);
    assert_eq!(owed(AppStatus::Maintenance, 5), restart);
    assert_eq!(owed(AppStatus::Starting, 4), None);
    for status in [
        AppStatus::Updating,
        AppStatus::RollingBack,
        AppStatus::Autoscaling,
        AppStatus::Running,
        AppStatus::Ready,
    ] {
        assert_eq!(owed(status, 5), None, "{status}");
    }
}

/// A Flink job that restarts (a task keeps failing) more often than the
/// grace period lasts is never rescaled: each restart moves the version
/// id, and the evaluation that finds it owes a new grace period. That is
/// right (a restarting job's metrics are its restarts'), but the user is
/// told: from the second restart in a row the log line of the move, the
/// held decision (`explain`, the history) and the grace period (`status`)
/// say how many restarts in how long and that nothing is rescaled until
/// the job runs a grace period without one. Once it does, it is rescaled
/// as before.
#[tokio::test(start_paused = true)]
async fn a_flink_job_restarting_within_every_grace_period_is_said_not_to_be_rescaled() {
    let mut app = test_app();
    app.target = crate::config::TargetKind::Flink;
    let target = FakeTarget::new(2, 90);
    let run = Running::launch_doubling(&app, target.clone(), target.origin);
    // The agent's rescale 2 -> 4 at 0 s is RUNNING at 120 s (grace to 420
    // s); the job restarts every 200 s from 150 s to 1550 s.
    for at in (150..=1550).step_by(200) {
        until(&target, at).await;
        set_by_another_writer(&target, 4);
    }
    until(&target, 2000).await;
    let events = run.stop().await;
    // Evaluations at 420, 720, 1020, 1320 and 1620 each find a restart;
    // the one at 1920 none, and acts.
    assert_eq!(target.updates(), vec![(0, 4), (1920, 8)]);
    let streak = |n: u32, secs: u32| {
        format!(
            "the job restarted (or was rescaled by another writer) {n} times in {secs} s: each starts the grace period (300 s) again, so it is not rescaled until it runs 300 s without one (a task that keeps failing restarts the job: see GET /jobs/{{id}}/exceptions)"
        )
    };
    let moves = failures(&events, "foreign_update");
    assert_eq!(moves.len(), 5, "{moves:?}");
    assert!(!moves[0].contains("times in"), "{}", moves[0]);
    assert!(moves[1].ends_with(&streak(2, 300)), "{}", moves[1]);
    assert!(moves[4].ends_with(&streak(5, 1200)), "{}", moves[4]);
    let decided = evaluations(&events);
    let at = |t: i64| decision_at(&decided, t);
    assert_eq!(at(420).action, Action::Hold);
    assert!(!at(420).reason.contains("times in"), "{:?}", at(420));
    let held = at(720);
    assert_eq!(held.action, Action::Hold);
    assert!(held.reason.ends_with(&streak(2, 300)), "{held:?}");
    assert_eq!(at(1920).action, Action::ScaleTo(8));
    let graces = graces_held(&events);
    let after = Words::Flink.grace_after_other_writer();
    assert_eq!(graces[0], (420, Some(720), after.to_owned()));
    assert_eq!(
        graces[1],
        (720, Some(1020), format!("{after}; {}", streak(2, 300)))
    );
    assert_eq!(graces.len(), 5, "{graces:?}");
}

/// A target whose UpdateApplication takes effect but whose answer is lost:
/// the agent sees a connection reset after the effect.
struct Lossy(Arc<FakeTarget>);

#[async_trait]
impl ScalingTarget for Lossy {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        self.0.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        self.0.rescale(a, kpu, c).await?;
        Err(TargetError::Transient("connection reset".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_an_accepted_update_is_not_sent_again() {
    let config: Config = toml::from_str(CONFIG).unwrap();
    let target = FakeTarget::new(2, 90);
    let source = Arc::new(ConstantSource {
        value: Mutex::new(95.0),
    });
    let controller = Controller::new(
        &config.applications[0],
        false,
        source,
        Arc::new(Lossy(target.clone())),
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::log_only(),
    );
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(controller.run(rx));
    tokio::time::sleep(Duration::from_secs(400)).await;
    tx.send(true).unwrap();
    task.await.unwrap();
    // One update only: the controller saw the new version id and followed it.
    assert_eq!(target.updates(), vec![(0, 4)]);
}

/// Records how many datapoints each call's first series held.
struct Counting(Arc<Mutex<Vec<usize>>>);

impl Decide for Counting {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        self.0
            .lock()
            .unwrap()
            .push(e.metrics.first().map_or(0, |s| s.points.len()));
        Ok(Decision::hold("counting"))
    }
    fn label(&self) -> String {
        "counting (test)".into()
    }
}

/// [`ConstantSource`], but a fetch reaching further back than `fails_before_ms`
/// fails (CloudWatch refusing the history read).
struct NoHistory {
    inner: ConstantSource,
    fails_before_ms: i64,
}

#[async_trait]
impl MetricSource for NoHistory {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        if start_ms < self.fails_before_ms {
            return Err(MetricsError::Source("no history here".into()));
        }
        self.inner.fetch(queries, start_ms, end_ms).await
    }
}

/// With `history_days`, the first decision sees the days before the
/// window too, once; a history read that fails leaves the decision as it
/// would have been.
#[tokio::test(start_paused = true)]
async fn history_is_handed_to_the_first_decision_only_and_a_failed_read_is_no_failure() {
    let mut app = test_app();
    app.policy.history_days = 2;
    let run = |source: Arc<dyn MetricSource>| {
        let app = app.clone();
        async move {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let mut controller = Controller::new(
                &app,
                true,
                source,
                FakeTarget::new(2, 90),
                Box::new(Counting(seen.clone())),
                Vec::new(),
                Clock::starting_at(T0_MS),
                Events::default(),
            );
            for _ in 0..2 {
                let assessment = controller.evaluate().await.expect("evaluates");
                assert_eq!(assessment.decision.action, Action::Hold);
            }
            seen.lock().unwrap().clone()
        }
    };
    let seen = run(constant(50.0)).await;
    let window = seen[1];
    assert!(window > 0);
    // The last two days of minutes (the window's and the history's, from
    // the first whole hour a minute within them), then the window alone
    // again.
    assert!(
        (2 * 1440 - 61..2 * 1440).contains(&seen[0]) && seen[1] == window,
        "{seen:?}"
    );

    let failing = Arc::new(NoHistory {
        inner: ConstantSource {
            value: Mutex::new(50.0),
        },
        fails_before_ms: T0_MS - 86_400_000,
    });
    assert_eq!(run(failing).await, vec![window, window]);
}

/// [`ConstantSource`], but its first `failures` history reads (fetches of
/// more than a day) fail, as a throttled or timed-out read does; counts
/// them.
struct FlakyHistory {
    inner: ConstantSource,
    failures: u32,
    reads: Mutex<u32>,
    /// The history read (1-based) that answers only after a minute.
    slow_read: Option<u32>,
}

#[async_trait]
impl MetricSource for FlakyHistory {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        if end_ms - start_ms > 86_400_000 {
            let read = {
                let mut reads = self.reads.lock().unwrap();
                *reads += 1;
                *reads
            };
            if read <= self.failures {
                return Err(MetricsError::Throttled("Rate exceeded".into()));
            }
            if self.slow_read == Some(read) {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        self.inner.fetch(queries, start_ms, end_ms).await
    }
}

/// Fails before stop 57: a failed history read was never tried again, so
/// one throttled read at start cost a learning policy its past for good
/// (a day of `rate` for `predictive`, a week for its weekly season). It is
/// tried again 5 minutes on, then 10, 20, 40 and 60 (each drawn between
/// half and all of that), and handed with the first call after a read that
/// succeeds; after [`HISTORY_READS`] failed reads it is not tried again.
#[tokio::test(start_paused = true)]
async fn a_failed_history_read_is_tried_again_later() {
    let mut app = test_app();
    app.policy.history_days = 2;
    // Every 60 s for `minutes`: the points of each call's first series,
    // and the history reads made.
    let run = |failures: u32, minutes: u32, slow_read: Option<u32>| {
        let app = app.clone();
        async move {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let source = Arc::new(FlakyHistory {
                inner: ConstantSource {
                    value: Mutex::new(50.0),
                },
                failures,
                reads: Mutex::new(0),
                slow_read,
            });
            let mut controller = Controller::new(
                &app,
                true,
                source.clone(),
                FakeTarget::new(2, 90),
                Box::new(Counting(seen.clone())),
                Vec::new(),
                Clock::starting_at(T0_MS),
                Events::default(),
            );
            let mut longest = Duration::ZERO;
            for _ in 0..minutes {
                let started = tokio::time::Instant::now();
                controller.evaluate().await.expect("evaluates");
                longest = longest.max(started.elapsed());
                tokio::time::advance(Duration::from_secs(60)).await;
            }
            let reads = *source.reads.lock().unwrap();
            (seen.lock().unwrap().clone(), reads, longest)
        }
    };
    let (seen, reads, _) = run(1, 8, None).await;
    let window = seen[1];
    let with_history: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, points)| **points > window)
        .map(|(minute, _)| minute)
        .collect();
    // Read again 2.5 to 5 minutes on (jittered), and handed with that call.
    assert!(
        with_history.len() == 1 && (3..=5).contains(&with_history[0]),
        "{seen:?}"
    );
    assert_eq!(reads, 2);
    assert!(seen[with_history[0]] > 2 * 1440 - 61, "{seen:?}");

    // A read that keeps failing: six reads within 135 minutes, then never
    // again.
    let (seen, reads, _) = run(u32::MAX, 200, None).await;
    assert!(seen.iter().all(|&points| points == window), "{seen:?}");
    assert_eq!(reads, HISTORY_READS);
    let waits: Vec<i64> = (1..HISTORY_READS).map(history_retry_ms).collect();
    assert_eq!(
        waits,
        [300_000, 600_000, 1_200_000, 2_400_000, 3_600_000],
        "5, 10, 20, 40, 60 minutes"
    );

    // A retry that hangs holds its evaluation HISTORY_RETRY_TIMEOUT at
    // most, and counts as failed: the next one (5 to 10 minutes on) is
    // handed. The first read (which failed at once here) has no such
    // bound: it is the start's.
    let (seen, reads, longest) = run(1, 20, Some(2)).await;
    assert!(
        longest <= HISTORY_RETRY_TIMEOUT + Duration::from_secs(1),
        "{longest:?}"
    );
    assert_eq!(reads, 3);
    assert_eq!(
        seen.iter().filter(|&&points| points > window).count(),
        1,
        "{seen:?}"
    );
}

/// A policy that forgets: it starts afresh when `restart` is set (a trap
/// or timeout restarted it) and, with `fails_on_history`, traps on any
/// series longer than `window`. Records the first series' length of every
/// call, failed or not.
struct Forgetting {
    seen: Arc<Mutex<Vec<usize>>>,
    restart: Arc<std::sync::atomic::AtomicBool>,
    fails_on_history: Option<usize>,
}

impl Decide for Forgetting {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        use std::sync::atomic::Ordering;
        let points = e.metrics.first().map_or(0, |s| s.points.len());
        self.seen.lock().unwrap().push(points);
        self.restart.store(false, Ordering::SeqCst);
        if self.fails_on_history.is_some_and(|window| points > window) {
            self.restart.store(true, Ordering::SeqCst);
            return Err(crate::controller::PluginFailure::new(
                FailureClass::Trap,
                "too long a series",
            ));
        }
        Ok(Decision::hold("forgetting"))
    }
    fn label(&self) -> String {
        "forgetting (test)".into()
    }
    fn starts_afresh(&self) -> bool {
        self.restart.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Evaluates a controller of `app` deciding with a [`Forgetting`] policy
/// `times` times, restarting it before the evaluations `restarts` names;
/// returns the series lengths it saw.
async fn forgetting_run(
    app: &ApplicationConfig,
    fails_on_history: Option<usize>,
    times: usize,
    restarts: &[usize],
) -> Vec<usize> {
    forgetting_run_on(constant(50.0), app, fails_on_history, times, restarts).await
}

/// [`forgetting_run`] reading from `source`.
async fn forgetting_run_on(
    source: Arc<dyn MetricSource>,
    app: &ApplicationConfig,
    fails_on_history: Option<usize>,
    times: usize,
    restarts: &[usize],
) -> Vec<usize> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let restart = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut controller = Controller::new(
        app,
        true,
        source,
        FakeTarget::new(2, 90),
        Box::new(Forgetting {
            seen: seen.clone(),
            restart: restart.clone(),
            fails_on_history,
        }),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::default(),
    );
    for i in 0..times {
        if restarts.contains(&i) {
            restart.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        controller.evaluate().await.expect("evaluates");
        tokio::time::advance(Duration::from_secs(60)).await;
    }
    seen.lock().unwrap().clone()
}

/// A policy instance started again (after a trap, a timeout or a reload)
/// remembers nothing: its first call gets the history again, read up to
/// that evaluation's window; the calls between get the window alone.
#[tokio::test(start_paused = true)]
async fn history_is_handed_again_to_a_policy_that_starts_afresh() {
    let mut app = test_app();
    app.policy.history_days = 2;
    let seen = forgetting_run(&app, None, 5, &[3]).await;
    let window = seen[1];
    assert!((2 * 1440 - 61..2 * 1440).contains(&seen[0]), "{seen:?}");
    assert_eq!(seen[1..3], [window, window], "{seen:?}");
    assert!((2 * 1440 - 61..2 * 1440).contains(&seen[3]), "{seen:?}");
    assert_eq!(seen[4], window, "{seen:?}");

    // Without history_days, a restart changes nothing.
    let seen = forgetting_run(&test_app(), None, 3, &[1]).await;
    assert_eq!(seen, vec![seen[0]; 3]);
}

/// A policy that fails on its history (it traps and so starts afresh) is
/// not handed it again by every restart: it decides on the window from the
/// next call on.
#[tokio::test(start_paused = true)]
async fn history_is_not_handed_again_after_a_call_with_it_failed() {
    let mut app = test_app();
    app.policy.history_days = 2;
    let window = forgetting_run(&app, None, 2, &[]).await[1];
    let seen = forgetting_run(&app, Some(window), 4, &[2]).await;
    assert!(seen[0] > window, "{seen:?}");
    assert_eq!(seen[1..], [window, window, window], "{seen:?}");
}

/// A policy that fails at every call and starts afresh after each (a trap
/// every time) while the history read fails too: the history is tried
/// once, not at every evaluation.
#[tokio::test(start_paused = true)]
async fn a_policy_failing_at_once_does_not_have_the_history_read_at_every_evaluation() {
    let mut app = test_app();
    app.policy.history_days = 2;
    // A source whose history reads (more than half a day) fail, counted.
    let tried = Arc::new(Mutex::new(0usize));
    struct CountingHistory(Arc<Mutex<usize>>);
    #[async_trait]
    impl MetricSource for CountingHistory {
        async fn fetch(
            &self,
            queries: &[MetricQuery],
            start_ms: i64,
            end_ms: i64,
        ) -> Result<Vec<Series>, MetricsError> {
            if end_ms - start_ms > 86_400_000 / 2 {
                *self.0.lock().unwrap() += 1;
                return Err(MetricsError::Source("no history here".into()));
            }
            ConstantSource {
                value: Mutex::new(50.0),
            }
            .fetch(queries, start_ms, end_ms)
            .await
        }
    }
    let seen = forgetting_run_on(
        Arc::new(CountingHistory(tried.clone())),
        &app,
        Some(0),
        3,
        &[],
    )
    .await;
    // Three failures in a row: then the quarantine would skip the policy.
    assert_eq!(seen.len(), 3, "every evaluation asks the policy: {seen:?}");
    assert_eq!(*tried.lock().unwrap(), 1, "one history read");
}

/// An interpreter that answers one finite signal and two that are not
/// (NaN, infinity); its file is replaced (new code) before its fourth call.
struct NotFinite {
    refreshes: u32,
}

impl Interpret for NotFinite {
    fn interpret(
        &mut self,
        _now_ms: i64,
        _app: &Application,
        _metrics: &[Series],
    ) -> Result<Vec<Signal>, PluginFailure> {
        let signal = |name: &str, value: f64| Signal {
            name: name.to_owned(),
            value,
        };
        Ok(vec![
            signal("backlog", f64::NAN),
            signal("lag", 5.0),
            signal("rate", f64::INFINITY),
        ])
    }
    fn label(&self) -> String {
        "lag (test)".into()
    }
    fn file(&self) -> String {
        "plugins/lag.wasm".into()
    }
    fn refresh(&mut self) -> crate::plugin::Refresh {
        self.refreshes += 1;
        match self.refreshes {
            4 => crate::plugin::Refresh::Reloaded {
                from: "lag (test)".into(),
                to: "lag (test)".into(),
                sha256: "new".into(),
            },
            _ => crate::plugin::Refresh::Unchanged,
        }
    }
}

/// Signals that are not finite numbers are dropped from the evaluation,
/// and said so at every evaluation (for its history entry); only the
/// first of each plugin file is told at WARN (`first`), and a new file is
/// told again.
#[tokio::test(start_paused = true)]
async fn signals_that_are_not_finite_are_dropped_and_told_once_per_file() {
    let target = FakeTarget::new(1, 90);
    let run = Running::launch_interpreted(&target, 50.0, Box::new(NotFinite { refreshes: 0 }));
    tokio::time::sleep(Duration::from_secs(250)).await;
    let events = run.stop().await;
    let dropped: Vec<(i64, String, String, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::SignalsDropped {
                at_ms,
                plugin,
                file,
                signals,
                first,
                ..
            } => Some((
                (at_ms - T0_MS) / 1000,
                format!("{plugin} ({file})"),
                crate::telemetry::dropped_signals_text(signals),
                *first,
            )),
            _ => None,
        })
        .collect();
    let told = |t: i64, first: bool| {
        (
            t,
            "lag (test) (plugins/lag.wasm)".to_owned(),
            "backlog NaN, rate inf".to_owned(),
            first,
        )
    };
    assert_eq!(
        dropped,
        [
            told(0, true),
            told(60, false),
            told(120, false),
            told(180, true),
            told(240, false)
        ]
    );
    // Each evaluation goes on with the finite signal alone.
    let signals: Vec<Vec<Signal>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated { signals, .. } => Some(signals.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(signals.len(), 5);
    assert!(
        signals.iter().all(|s| s
            == &[Signal {
                name: "lag".to_owned(),
                value: 5.0
            }]),
        "{signals:?}"
    );
}

/// [`ConstantSource`] that also answers the period under way, as
/// CloudWatch does when EndTime is now: a value over the part seen so far
/// (here 1.0, a Sum's few seconds of a minute).
struct WithPeriodUnderWay(ConstantSource);

#[async_trait]
impl MetricSource for WithPeriodUnderWay {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let mut series = self.0.fetch(queries, start_ms, end_ms).await?;
        for s in &mut series {
            let period_ms = i64::from(s.query.period_secs) * 1000;
            s.points.push(Datapoint {
                timestamp_ms: end_ms.div_euclid(period_ms) * period_ms,
                value: 1.0,
            });
        }
        Ok(series)
    }
}

/// The evaluation's time, a series' period and its newest datapoint.
type NewestSeen = (i64, u32, Option<Datapoint>);

/// Records the newest datapoint of every series of each evaluation.
struct Newest(Arc<Mutex<Vec<NewestSeen>>>);

impl Decide for Newest {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        let mut seen = self.0.lock().unwrap();
        for series in &e.metrics {
            seen.push((
                e.now_ms,
                series.query.period_secs,
                series.points.last().copied(),
            ));
        }
        Ok(Decision::hold("newest"))
    }
    fn label(&self) -> String {
        "newest (test)".into()
    }
}

/// A policy is handed whole periods only: the period under way, which
/// CloudWatch answers when asked up to now, is left out (its value is
/// over a part of the period), and the last whole period is kept.
#[tokio::test(start_paused = true)]
async fn the_period_under_way_is_not_handed_to_the_policy() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut controller = Controller::new(
        &test_app(),
        true,
        Arc::new(WithPeriodUnderWay(ConstantSource {
            value: Mutex::new(50.0),
        })),
        FakeTarget::new(2, 90),
        Box::new(Newest(seen.clone())),
        Vec::new(),
        // 17 s into a minute.
        Clock::starting_at(T0_MS + 17_000),
        Events::default(),
    );
    controller.evaluate().await.expect("evaluates");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (now_ms, period_secs, newest) in seen {
        let newest = newest.expect("whole periods are handed");
        let period_ms = i64::from(period_secs) * 1000;
        assert_eq!(newest.value, 50.0, "{newest:?}");
        assert!(
            newest.timestamp_ms + period_ms <= now_ms,
            "{newest:?} at {now_ms}"
        );
        assert!(
            newest.timestamp_ms + 2 * period_ms > now_ms,
            "{newest:?} at {now_ms}"
        );
    }
}

/// A decision deferred because the application is not RUNNING is read
/// again soon while it is busy (it may run in moments), at the evaluation
/// interval while it is stopped or rolled back (it stays so until
/// somebody acts): not a read and a warning every few seconds.
#[test]
fn a_stopped_application_is_read_again_at_the_evaluation_interval() {
    use super::machine::{Jitter, Machine, Next};
    let mut app = test_app();
    app.update_poll_secs = 10;
    let settings = Settings::from_config(&app, false);
    assert!(settings.update_poll < settings.evaluation_interval);
    for (status, wait) in [
        (AppStatus::Ready, settings.evaluation_interval),
        (AppStatus::RolledBack, settings.evaluation_interval),
        (AppStatus::Updating, settings.update_poll),
    ] {
        let mut machine = Machine::new(Jitter::new(1));
        machine.record.seen_version_id = Some(1);
        let step = step_evaluated(
            &mut machine,
            AppState {
                status,
                ..running()
            },
            Decision {
                action: Action::ScaleTo(4),
                reason: "high in ALARM".to_owned(),
                next_evaluation_secs: None,
            },
            &settings,
            T0_MS,
        );
        assert_eq!(step.next, Next::Wait(wait), "{status}: {step:?}");
        assert_eq!(
            failures(&step.events, "not_running"),
            [format!(
                "application is {status}, not RUNNING; rescale to 4 KPU deferred"
            )],
            "{status}"
        );
    }
}

/// `machine`'s step on the answer of an evaluation that read `state` and
/// decided `decision`, at `at_ms`.
fn step_evaluated(
    machine: &mut Machine,
    state: AppState,
    decision: Decision,
    settings: &Settings,
    at_ms: i64,
) -> super::machine::Transition {
    machine.step(
        Observation::Evaluated(Ok(Evaluated { state, decision })),
        settings,
        at_ms,
    )
}

/// Publishes `value` at the given period starts for every query, taking
/// `fetch_ms` of tokio time to answer (the clock moves meanwhile).
struct SlowPublisher {
    starts: Vec<i64>,
    fetch_ms: u64,
}

#[async_trait]
impl MetricSource for SlowPublisher {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        _start_ms: i64,
        _end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        tokio::time::sleep(Duration::from_millis(self.fetch_ms)).await;
        Ok(queries
            .iter()
            .map(|q| Series {
                query: q.clone(),
                points: self
                    .starts
                    .iter()
                    .map(|&timestamp_ms| Datapoint {
                        timestamp_ms,
                        value: 50.0,
                    })
                    .collect(),
            })
            .collect())
    }
}

/// The 60 s publication promise, checked on a fetch begun 59.9 s into a
/// minute E that takes 0.3 s: the datapoint of the period ending at E,
/// allowed from E + 60 s, was published while the fetch ran. That keeps
/// the promise (no failure), but the skip rule, reckoning from the
/// evaluation's start, counts that period as hidden where evaluations at
/// this phase see it: it goes on without the promise. A datapoint of the
/// period in progress, seen before its promise even at the fetch's end,
/// breaks it (the failure), though the older one comes first.
#[tokio::test(start_paused = true)]
async fn a_datapoint_published_during_the_fetch_drops_the_promise_without_a_failure() {
    let minute_ms = 60_000;
    let e = (T0_MS.div_euclid(minute_ms) + 10) * minute_ms;
    let mut app = test_app();
    app.metrics[0].min_publication_delay_secs = Some(60);
    let run = |starts: Vec<i64>| {
        let app = app.clone();
        async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut controller = Controller::new(
                &app,
                true,
                Arc::new(SlowPublisher {
                    starts,
                    fetch_ms: 300,
                }),
                FakeTarget::new(2, 50),
                Box::new(Newest(Arc::new(Mutex::new(Vec::new())))),
                Vec::new(),
                Clock::starting_at(e + 59_900),
                Events::with_channel(tx),
            );
            controller.evaluate().await.expect("evaluates");
            let mut failures = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Failed { class, message, .. } = event
                    && class == "publication_delay"
                {
                    failures.push(message);
                }
            }
            (controller.promise_broken, failures)
        }
    };
    // Periods ending at E - 60 s and E: the latter's allowed at E + 60 s.
    let (dropped, failures) = run(vec![e - 2 * minute_ms, e - minute_ms]).await;
    assert!(dropped, "the rule goes on without the promise");
    assert_eq!(failures, Vec::<String>::new(), "kept, so no failure");
    // And the period ending at E + 60 s, seen at E + 60.2 s: broken.
    let (dropped, failures) = run(vec![e - 2 * minute_ms, e - minute_ms, e]).await;
    assert!(dropped);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains(&format!(
            "the datapoint of the period starting at {e} ms was seen 0.2 s after the period \
             ended, but min_publication_delay_secs promises 60 s"
        )),
        "{failures:?}"
    );
    // A fetch that sees nothing early keeps the promise.
    let (dropped, failures) = run(vec![e - 3 * minute_ms, e - 2 * minute_ms]).await;
    assert!(!dropped);
    assert!(failures.is_empty());
}
