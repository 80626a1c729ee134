//! Plugin quarantine: the rule as plain values, then the real `misbehave`
//! fixture, built by `cargo plugins` into `target/wasm32-wasip2/release/`
//! (and `step`, as host/build.rs built it), driven through the controller
//! over the fakes on the paused clock. A failing plugin never scales anything.

use std::path::PathBuf;
use std::sync::LazyLock;

use super::*;
use crate::agent::PluginPolicy;
use crate::plugin::{FailureClass, PluginHost, Reloading, SandboxLimits};

const MINUTE_MS: i64 = 60_000;

/// A file that replaces a failing (not yet quarantined) plugin starts with
/// no failures: the old code's do not count against it.
#[test]
fn new_code_starts_counting_failures_afresh() {
    let policy = QuarantinePolicy::from_config(3, 600);
    let mut health = PluginHealth::default();
    assert_eq!(health.gate(0, || false), Gate::Call);
    health.failed(0, &policy);
    health.failed(0, &policy);
    assert_eq!(health.gate(0, || true), Gate::Call);
    assert_eq!(
        health.failed(0, &policy),
        AfterFailure::Counted { failures: 1 }
    );
    // The same file goes on counting.
    assert_eq!(health.gate(0, || false), Gate::Call);
    assert_eq!(
        health.failed(0, &policy),
        AfterFailure::Counted { failures: 2 }
    );
}

/// A wall clock stepped back a day during a 10-minute quarantine: the
/// quarantine still ends 10 minutes from the step at the latest (it lasted
/// a day and 10 minutes before).
#[test]
fn a_clock_stepped_back_does_not_stretch_a_quarantine() {
    let policy = QuarantinePolicy::from_config(1, 600);
    let mut health = PluginHealth::default();
    let day = 24 * 60 * MINUTE_MS;
    assert_eq!(
        health.failed(day, &policy),
        AfterFailure::Quarantined {
            failures: 1,
            until_ms: day + 600_000
        }
    );
    assert_eq!(
        health.gate(60_000, || false),
        Gate::Skip { until_ms: 660_000 }
    );
    assert_eq!(
        health.gate(659_999, || false),
        Gate::Skip { until_ms: 660_000 }
    );
    assert_eq!(
        health.gate(660_000, || false),
        Gate::Retry(RetryReason::BackoffElapsed)
    );
}

#[test]
fn quarantine_after_n_failures_then_double_up_to_the_longest() {
    let policy = QuarantinePolicy::from_config(3, 600);
    let mut health = PluginHealth::default();
    let now = 0;
    assert_eq!(
        health.failed(now, &policy),
        AfterFailure::Counted { failures: 1 }
    );
    assert_eq!(
        health.failed(now, &policy),
        AfterFailure::Counted { failures: 2 }
    );
    assert_eq!(
        health.failed(now, &policy),
        AfterFailure::Quarantined {
            failures: 3,
            until_ms: 600_000
        }
    );
    assert_eq!(
        health.gate(599_999, || false),
        Gate::Skip { until_ms: 600_000 }
    );
    let mut until = 600_000;
    for expected_secs in [1200, 2400, 3600, 3600] {
        assert_eq!(
            health.gate(until, || false),
            Gate::Retry(RetryReason::BackoffElapsed)
        );
        // One failed retry is enough to go back.
        let AfterFailure::Quarantined { until_ms, .. } = health.failed(until, &policy) else {
            panic!("a failed retry quarantines again");
        };
        assert_eq!(until_ms - until, expected_secs * 1000);
        until = until_ms;
    }
    // A new file is tried at once, and is new code: its failures count
    // from zero toward a quarantine, which starts the doubling afresh.
    assert_eq!(
        health.gate(until - 1, || true),
        Gate::Retry(RetryReason::FileChanged)
    );
    assert!(!health.is_quarantined());
    assert_eq!(
        health.failed(until, &policy),
        AfterFailure::Counted { failures: 1 }
    );
    assert_eq!(health.gate(until, || false), Gate::Call);
    assert_eq!(
        health.failed(until, &policy),
        AfterFailure::Counted { failures: 2 }
    );
    let AfterFailure::Quarantined { until_ms, .. } = health.failed(until, &policy) else {
        panic!("its third failure in a row quarantines it");
    };
    assert_eq!(until_ms - until, 600_000);
    // A success ends it all.
    assert_eq!(
        health.gate(until_ms, || false),
        Gate::Retry(RetryReason::BackoffElapsed)
    );
    assert!(health.succeeded(), "the retry's success is a recovery");
    assert!(!health.is_quarantined());
    assert!(!health.succeeded(), "later successes are not");
    assert_eq!(
        health.failed(0, &policy),
        AfterFailure::Counted { failures: 1 }
    );
}

#[test]
fn new_code_that_ends_a_quarantine_recovers_at_its_first_success() {
    let policy = QuarantinePolicy::DEFAULT;
    let mut health = PluginHealth::default();
    for _ in 0..policy.after_failures {
        health.failed(0, &policy);
    }
    assert!(health.is_quarantined());
    assert_eq!(
        health.gate(1, || true),
        Gate::Retry(RetryReason::FileChanged)
    );
    // One failure of the new file is counted, not a quarantine; its first
    // success then ends the stretch as a recovery.
    assert_eq!(
        health.failed(1, &policy),
        AfterFailure::Counted { failures: 1 }
    );
    assert!(health.awaiting_recovery() && !health.is_quarantined());
    assert!(
        health.succeeded(),
        "the new file's first success is a recovery"
    );
    assert!(!health.awaiting_recovery());
    assert!(!health.succeeded());
}

#[test]
fn a_plugin_retried_after_its_back_off_awaits_its_recovery_until_it_answers() {
    let policy = QuarantinePolicy::DEFAULT;
    let mut health = PluginHealth::default();
    assert!(!health.awaiting_recovery());
    for _ in 0..policy.after_failures {
        health.failed(0, &policy);
    }
    let Gate::Skip { until_ms } = health.gate(1, || false) else {
        panic!("quarantined")
    };
    assert_eq!(
        health.gate(until_ms, || false),
        Gate::Retry(RetryReason::BackoffElapsed)
    );
    // Out of quarantine, not yet recovered: a stop now hands it on.
    assert!(!health.is_quarantined() && health.awaiting_recovery());
    assert!(health.succeeded());
    assert!(!health.awaiting_recovery());
}

#[test]
fn the_file_is_only_looked_at_while_quarantined() {
    let mut health = PluginHealth::default();
    let mut asked = false;
    assert_eq!(
        health.gate(0, || {
            asked = true;
            true
        }),
        Gate::Call
    );
    assert!(!asked);
}

/// A compiled plugin: a shipped one where host/build.rs put it, a fixture
/// in the folder `cargo plugins` writes to, honouring `CARGO_TARGET_DIR`.
fn wasm(name: &str) -> PathBuf {
    let builtin = PathBuf::from(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR")).join(format!("{name}.wasm"));
    if builtin.is_file() {
        return builtin;
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let path = target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo plugins` (from the workspace root) first",
        path.display()
    );
    path
}

/// One plugin host for these tests: each component is compiled once.
fn host() -> Arc<PluginHost> {
    static HOST: LazyLock<Arc<PluginHost>> = LazyLock::new(|| {
        Arc::new(PluginHost::new(SandboxLimits::default()).expect("the engine starts"))
    });
    HOST.clone()
}

fn misbehaving(mode: &str) -> Box<dyn Decide> {
    let policy = Reloading::policy(
        host(),
        wasm("misbehave"),
        format!(r#"{{"mode": "{mode}"}}"#),
        "app".into(),
    )
    .expect("misbehave loads");
    Box::new(PluginPolicy(policy))
}

fn launch(
    target: &Arc<FakeTarget>,
    policy: Box<dyn Decide>,
    quarantine: QuarantinePolicy,
) -> Running {
    Running::launch(
        target.origin,
        target.clone(),
        constant(95.0),
        policy,
        Vec::new(),
        move |c| c.with_quarantine(quarantine),
    )
}

/// (seconds, failures, quarantine seconds) of each PluginQuarantined.
fn quarantines(events: &[Event]) -> Vec<(i64, u32, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PluginQuarantined {
                at_ms,
                failures,
                until_ms,
                ..
            } => Some(((at_ms - T0_MS) / 1000, *failures, (until_ms - at_ms) / 1000)),
            _ => None,
        })
        .collect()
}

/// The class of each PluginQuarantined, and the plugin class of each
/// plugin failure.
fn classes(events: &[Event]) -> (Vec<FailureClass>, Vec<Option<FailureClass>>) {
    let quarantined = events
        .iter()
        .filter_map(|e| match e {
            Event::PluginQuarantined { class, .. } => Some(*class),
            _ => None,
        })
        .collect();
    let failed = events
        .iter()
        .filter_map(|e| match e {
            Event::Failed {
                class,
                plugin_class,
                ..
            } if class == "plugin" => Some(*plugin_class),
            _ => None,
        })
        .collect();
    (quarantined, failed)
}

/// (seconds, reason) of each PluginRetried.
fn retries(events: &[Event]) -> Vec<(i64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PluginRetried { at_ms, reason, .. } => {
                Some(((at_ms - T0_MS) / 1000, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn failure_times(events: &[Event], class: &str) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Failed {
                class: c, at_ms, ..
            } if c == class => Some((at_ms - T0_MS) / 1000),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_erroring_policy_is_quarantined_holds_and_is_retried_after_its_back_off() {
    let target = FakeTarget::new(1, 90);
    let run = launch(&target, misbehaving("error"), QuarantinePolicy::DEFAULT);
    tokio::time::sleep(Duration::from_secs(1100)).await;
    let counts = run.counts.clone();
    let events = run.stop().await;

    assert!(target.updates().is_empty(), "a failing policy never scales");
    // Called at 0, 60, 120 (quarantined for 300 s), retried at 420
    // (again, for 600 s) and at 1020 (for 1200 s).
    assert_eq!(failure_times(&events, "plugin"), [0, 60, 120, 420, 1020]);
    assert_eq!(counts.get("app", "plugin"), 5);
    // The class travels typed from the sandbox to the events.
    assert_eq!(
        classes(&events),
        (
            vec![FailureClass::GuestError; 3],
            vec![Some(FailureClass::GuestError); 5]
        )
    );
    assert_eq!(
        quarantines(&events),
        [(120, 3, 300), (420, 4, 600), (1020, 5, 1200)]
    );
    assert_eq!(
        retries(&events),
        [
            (420, "its quarantine ended".to_owned()),
            (1020, "its quarantine ended".to_owned())
        ]
    );
    // Meanwhile the application holds, and says why.
    let quarantined: Vec<i64> = evaluations(&events)
        .into_iter()
        .filter(|(_, d)| d.action == Action::Hold && d.reason.contains("is quarantined"))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(quarantined[..4], [180, 240, 300, 360]);
    let first = evaluations(&events)
        .into_iter()
        .find(|(t, _)| *t == 180)
        .expect("an evaluation at 180 s");
    assert!(
        first.1.reason.contains("misbehave") && first.1.reason.contains("another 240 s"),
        "{}",
        first.1.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_trapping_policy_is_quarantined_after_the_configured_failures() {
    let target = FakeTarget::new(1, 90);
    let rule = QuarantinePolicy::from_config(2, 60);
    let run = launch(&target, misbehaving("trap"), rule);
    tokio::time::sleep(Duration::from_secs(450)).await;
    let events = run.stop().await;
    assert!(target.updates().is_empty());
    // Quarantined after 2 failures for 60 s, then 120, 240, ...
    assert_eq!(
        quarantines(&events),
        [(60, 2, 60), (120, 3, 120), (240, 4, 240)]
    );
    let trapped = failures(&events, "plugin");
    assert!(trapped.iter().all(|m| m.contains("Trap")), "{trapped:?}");
    let (quarantined, failed) = classes(&events);
    assert_eq!(quarantined, [FailureClass::Trap; 3]);
    assert!(
        !failed.is_empty() && failed.iter().all(|c| *c == Some(FailureClass::Trap)),
        "{failed:?}"
    );
}

/// An answer outside the contract is invalid output: counted as a plugin
/// failure of class `invalid` and quarantined after the configured
/// failures, as a trap is (`flinkscale plugin check` fails on it too).
#[tokio::test(start_paused = true)]
async fn a_policy_answering_scale_to_zero_fails_as_invalid_and_is_quarantined() {
    let target = FakeTarget::new(1, 90);
    let rule = QuarantinePolicy::from_config(2, 60);
    let run = launch(&target, misbehaving("zero"), rule);
    tokio::time::sleep(Duration::from_secs(450)).await;
    let counts = run.counts.clone();
    let events = run.stop().await;
    assert!(target.updates().is_empty(), "scale-to(0) never scales");
    // Called at 0 and 60 (quarantined for 60 s), retried at 120 (then
    // quarantined for 120 s) and at 240 (240 s), as a trap is.
    assert_eq!(failure_times(&events, "plugin"), [0, 60, 120, 240]);
    assert_eq!(counts.get("app", "plugin"), 4);
    assert_eq!(
        quarantines(&events),
        [(60, 2, 60), (120, 3, 120), (240, 4, 240)]
    );
    assert_eq!(
        classes(&events),
        (
            vec![FailureClass::Invalid; 3],
            vec![Some(FailureClass::Invalid); 4]
        )
    );
    let invalid = failures(&events, "plugin");
    assert!(
        invalid
            .iter()
            .all(|m| m.contains("misbehave") && m.contains("invalid decision: scale-to(0)")),
        "{invalid:?}"
    );
}

/// A valid answer the bounds clamp is no failure: the host clamps it,
/// says so, and acts on it.
#[tokio::test(start_paused = true)]
async fn a_policy_answering_above_max_kpu_is_clamped_not_failed() {
    let target = FakeTarget::new(1, 90);
    let rule = QuarantinePolicy::from_config(2, 60);
    let run = launch(&target, misbehaving("huge"), rule);
    tokio::time::sleep(Duration::from_secs(150)).await;
    let events = run.stop().await;
    assert!(failures(&events, "plugin").is_empty());
    assert!(quarantines(&events).is_empty());
    let max_kpu = test_app().max_kpu;
    assert_eq!(target.updates().first(), Some(&(0, max_kpu)));
    let (_, first) = evaluations(&events)
        .into_iter()
        .next()
        .expect("an evaluation");
    assert!(
        first
            .reason
            .contains(&format!("clamped from 1000000 to {max_kpu} KPU (max_kpu)")),
        "{}",
        first.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_quarantined_policy_is_retried_at_once_when_its_file_is_replaced() {
    let (_dir, path) = misbehave_file();
    // The application's parameters are step's: the deployed file is the
    // wrong plugin, and refuses them at every load.
    let policy = Reloading::policy_deferred(
        host(),
        path.clone(),
        r#"{"scale_out_alarm": "high", "scale_in_alarm": "low"}"#.into(),
        "app".into(),
    );
    let target = FakeTarget::new(1, 90);
    let run = launch(
        &target,
        Box::new(PluginPolicy(policy)),
        QuarantinePolicy::DEFAULT,
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert!(target.updates().is_empty());

    // The right plugin is deployed, the way deployments should: written
    // aside, then renamed over the old file.
    deploy(&path, &std::fs::read(wasm("step")).unwrap());
    tokio::time::sleep(Duration::from_secs(100)).await;
    let events = run.stop().await;

    assert_eq!(failure_times(&events, "plugin"), [0, 60, 120]);
    assert_eq!(quarantines(&events), [(120, 3, 300)]);
    // Retried at the first evaluation after the change, not at 420 s.
    assert_eq!(retries(&events), [(180, "its file changed".to_owned())]);
    assert!(events.iter().any(|e| matches!(e,
        Event::PluginRecovered { plugin, at_ms, .. } if plugin.starts_with("step") && *at_ms == T0_MS + 3 * MINUTE_MS)));
    assert_eq!(target.updates(), [(180, 2)]);
}

#[tokio::test(start_paused = true)]
async fn touching_the_file_without_changing_it_does_not_end_a_quarantine() {
    let (_dir, path) = misbehave_file();
    let policy = misbehave_policy(&path, "error");
    let target = FakeTarget::new(1, 90);
    let run = launch(
        &target,
        Box::new(PluginPolicy(policy)),
        QuarantinePolicy::DEFAULT,
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    // Same bytes, new modification time.
    let bytes = std::fs::read(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, &bytes).unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
    let events = run.stop().await;
    assert_eq!(retries(&events), [(420, "its quarantine ended".to_owned())]);
}

/// An interpreter that always fails.
struct BrokenInterpreter;

impl Interpret for BrokenInterpreter {
    fn interpret(
        &mut self,
        _now_ms: i64,
        _app: &Application,
        _metrics: &[Series],
    ) -> Result<Vec<Signal>, crate::controller::PluginFailure> {
        Err(crate::controller::PluginFailure::new(
            crate::plugin::FailureClass::GuestError,
            "lag series malformed",
        ))
    }
    fn label(&self) -> String {
        "lag (test)".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_interpreter_holds_the_application_and_is_quarantined() {
    let target = FakeTarget::new(1, 90);
    let run = Running::launch_interpreted(&target, 95.0, Box::new(BrokenInterpreter));
    tokio::time::sleep(Duration::from_secs(400)).await;
    let events = run.stop().await;
    // The policy would scale (95 % CPU), but not on half the picture.
    assert!(target.updates().is_empty());
    assert_eq!(quarantines(&events), [(120, 3, 300)]);
    let reasons: Vec<String> = evaluations(&events)
        .into_iter()
        .map(|(_, d)| d.reason)
        .collect();
    assert!(reasons[0].contains("interpreter lag (test) failed: lag series malformed"));
    assert!(reasons[3].contains("interpreter lag (test) is quarantined"));
    assert!(
        reasons.iter().all(|r| r.ends_with("holding")),
        "{reasons:?}"
    );
}

/// An interpreter that fails from 150 s after `T0_MS` on (so at the
/// evaluations of 180, 240 and 300 s, and is quarantined at 300 s for
/// 300 s) and answers before.
struct FailingFrom150s;

impl Interpret for FailingFrom150s {
    fn interpret(
        &mut self,
        now_ms: i64,
        _app: &Application,
        _metrics: &[Series],
    ) -> Result<Vec<Signal>, crate::controller::PluginFailure> {
        if now_ms < T0_MS + 150_000 {
            return Ok(Vec::new());
        }
        Err(crate::controller::PluginFailure::new(
            crate::plugin::FailureClass::GuestError,
            "lag series malformed",
        ))
    }
    fn label(&self) -> String {
        "lag (test)".into()
    }
}

/// `policy` and the interpreter [`FailingFrom150s`], under the default
/// quarantine rule.
fn launch_with_failing_interpreter(target: &Arc<FakeTarget>, policy: Box<dyn Decide>) -> Running {
    Running::launch(
        target.origin,
        target.clone(),
        constant(95.0),
        policy,
        vec![Box::new(FailingFrom150s)],
        |c| c.with_quarantine(QuarantinePolicy::DEFAULT),
    )
}

/// A policy file replaced while an interpreter is quarantined (so that
/// every evaluation holds before the decide stage) is followed all the
/// same: the new code ends the policy's quarantine at the first
/// evaluation after the change, not once the interpreter recovers.
#[tokio::test(start_paused = true)]
async fn a_quarantined_policy_is_retried_at_once_when_replaced_while_an_interpreter_holds() {
    let (_dir, path) = misbehave_file();
    // Step's parameters: the deployed file is the wrong plugin.
    let policy = Reloading::policy_deferred(
        host(),
        path.clone(),
        r#"{"scale_out_alarm": "high", "scale_in_alarm": "low"}"#.into(),
        "app".into(),
    );
    let target = FakeTarget::new(1, 90);
    let run = launch_with_failing_interpreter(&target, Box::new(PluginPolicy(policy)));
    // The policy fails at 0, 60 and 120 s (quarantined until 420 s); the
    // interpreter at 180, 240 and 300 s (quarantined until 600 s).
    tokio::time::sleep(Duration::from_secs(310)).await;
    deploy(&path, &std::fs::read(wasm("step")).unwrap());
    tokio::time::sleep(Duration::from_secs(100)).await;
    let events = run.stop().await;

    assert_eq!(quarantines(&events), [(120, 3, 300), (300, 3, 300)]);
    // Retried at the first evaluation after the change (which still
    // holds for the interpreter), not at 600 s.
    assert_eq!(retries(&events), [(360, "its file changed".to_owned())]);
    let held: Vec<(i64, Decision)> = evaluations(&events)
        .into_iter()
        .filter(|(t, _)| *t >= 360)
        .collect();
    assert!(
        held.iter().all(|(_, d)| d.action == Action::Hold
            && d.reason.contains("interpreter lag (test) is quarantined")),
        "{held:?}"
    );
    assert!(target.updates().is_empty());
}

/// A running policy's new file, loaded in the background, is swapped in
/// while an interpreter holds the application: the reload is reported
/// then, not once the interpreter recovers.
#[tokio::test(start_paused = true)]
async fn a_policy_file_replaced_while_an_interpreter_holds_is_loaded_and_swapped_in() {
    let (_dir, path) = misbehave_file();
    let policy = misbehave_policy(&path, "ok").in_background();
    let target = FakeTarget::new(1, 90);
    let run =
        launch_with_failing_interpreter(&target, Box::new(SettledLoads(PluginPolicy(policy))));
    tokio::time::sleep(Duration::from_secs(310)).await;
    deploy(&path, &rebuilt_misbehave());
    tokio::time::sleep(Duration::from_secs(150)).await;
    let events = run.stop().await;

    // Noticed at 360 s, where the load starts; swapped in at 420 s.
    let (reloaded, refused) = reloads(&events);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        reloaded,
        [(
            420,
            "misbehave 0.1.0".to_owned(),
            "misbehave 0.1.0".to_owned()
        )]
    );
    // A healthy policy: no quarantine to end.
    assert!(retries(&events).is_empty(), "{:?}", retries(&events));
    assert_eq!(quarantines(&events), [(300, 3, 300)]);
}

/// `misbehave`, copied to `policy.wasm` in a folder of its own, where a
/// test may replace it; the folder lasts as long as the guard returned.
fn misbehave_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(wasm("misbehave"), &path).unwrap();
    (dir, path)
}

/// `misbehave` loaded from `path` as the application's policy, in `mode`.
fn misbehave_policy(
    path: &std::path::Path,
    mode: &str,
) -> Reloading<crate::plugin::PolicyInstance> {
    Reloading::policy(
        host(),
        path.to_path_buf(),
        format!(r#"{{"mode": "{mode}"}}"#),
        "app".into(),
    )
    .expect("misbehave loads")
}

/// Another build of `misbehave`: the same code with a custom section
/// appended, so that its file (and digest) differ.
fn rebuilt_misbehave() -> Vec<u8> {
    let mut rebuilt = std::fs::read(wasm("misbehave")).unwrap();
    rebuilt.extend_from_slice(&[0, 6, 5, b'n', b'o', b't', b'e', b'!']);
    rebuilt
}

/// Deploys `plugin` over `path` as a deployment should: written aside,
/// then renamed over the old file.
fn deploy(path: &std::path::Path, bytes: &[u8]) {
    let staged = path.with_extension("wasm.new");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// (seconds, from, to) of each PluginReloaded, and (seconds, running,
/// reason) of each PluginReloadRefused.
#[allow(clippy::type_complexity)]
fn reloads(events: &[Event]) -> (Vec<(i64, String, String)>, Vec<(i64, String, String)>) {
    let mut reloaded = Vec::new();
    let mut refused = Vec::new();
    for event in events {
        match event {
            Event::PluginReloaded {
                at_ms, from, to, ..
            } => reloaded.push(((at_ms - T0_MS) / 1000, from.clone(), to.clone())),
            Event::PluginReloadRefused {
                at_ms,
                plugin,
                reason,
                ..
            } => refused.push(((at_ms - T0_MS) / 1000, plugin.clone(), reason.clone())),
            _ => {}
        }
    }
    (reloaded, refused)
}

#[tokio::test(start_paused = true)]
async fn a_healthy_policy_replaced_on_disk_runs_the_new_file_from_the_next_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(wasm("hold"), &path).unwrap();
    let policy =
        Reloading::policy(host(), path.clone(), "{}".into(), "app".into()).expect("hold loads");
    let target = FakeTarget::new(1, 90);
    let run = launch(
        &target,
        Box::new(PluginPolicy(policy)),
        QuarantinePolicy::DEFAULT,
    );
    // Evaluations every 60 s. Not a component at all: refused.
    tokio::time::sleep(Duration::from_secs(90)).await;
    deploy(&path, b"\x00asm but not really a component");
    // A policy that refuses these (empty) parameters: refused.
    tokio::time::sleep(Duration::from_secs(60)).await;
    deploy(&path, &std::fs::read(wasm("step")).unwrap());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(target.updates().is_empty(), "hold still decides");
    // One that accepts them: runs from the next evaluation on.
    deploy(&path, &std::fs::read(wasm("target_tracking")).unwrap());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let events = run.stop().await;

    let (reloaded, refused) = reloads(&events);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!((refused[0].0, refused[1].0), (120, 180));
    assert!(
        refused
            .iter()
            .all(|(_, running, _)| running.starts_with("hold"))
    );
    assert!(
        refused[1].2.contains("scale_out_alarm"),
        "the refusal says which parameter: {}",
        refused[1].2
    );
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0].0, 240);
    assert!(reloaded[0].1.starts_with("hold") && reloaded[0].2.starts_with("target-tracking"));
    // Every decision before the reload is hold's; from it on, the new
    // policy's, which scales on 95 % CPU at once.
    for (t, decision) in evaluations(&events) {
        assert_eq!(
            decision.reason == "observe only",
            t < 240,
            "at {t} s: {decision:?}"
        );
    }
    assert_eq!(target.updates().first().map(|(t, _)| *t), Some(240));
    assert!(
        failures(&events, "plugin").is_empty(),
        "a refused file is not a failure of the running plugin"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_file_does_not_end_a_quarantine_and_a_good_one_does() {
    let (_dir, path) = misbehave_file();
    let policy = misbehave_policy(&path, "error");
    let target = FakeTarget::new(1, 90);
    let run = launch(
        &target,
        Box::new(PluginPolicy(policy)),
        QuarantinePolicy::DEFAULT,
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    // Quarantined at 120 s. Step refuses `mode`: still quarantined.
    deploy(&path, &std::fs::read(wasm("step")).unwrap());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(target.updates().is_empty());
    // Another build of the plugin that accepts `mode` (here: a custom
    // section appended, new bytes but still a valid component).
    let mut fixed = std::fs::read(wasm("misbehave")).unwrap();
    fixed.extend_from_slice(&[0, 6, 5, b'n', b'o', b't', b'e', b'!']);
    deploy(&path, &fixed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let events = run.stop().await;

    let (reloaded, refused) = reloads(&events);
    assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), [180]);
    assert_eq!(reloaded.iter().map(|r| r.0).collect::<Vec<_>>(), [240]);
    assert_eq!(quarantines(&events)[0], (120, 3, 300));
    // The refused file left the quarantine alone; the accepted one ended it.
    assert_eq!(retries(&events), [(240, "its file changed".to_owned())]);
}

/// An interpreter whose file is replaced twice: first by one that is
/// refused, then by one that loads.
struct ReplacedInterpreter {
    refreshes: u32,
}

impl Interpret for ReplacedInterpreter {
    fn interpret(
        &mut self,
        _now_ms: i64,
        _app: &Application,
        _metrics: &[Series],
    ) -> Result<Vec<Signal>, crate::controller::PluginFailure> {
        Ok(Vec::new())
    }
    fn label(&self) -> String {
        "lag (test)".into()
    }
    fn refresh(&mut self) -> crate::plugin::Refresh {
        use crate::plugin::Refresh;
        self.refreshes += 1;
        match self.refreshes {
            2 => Refresh::Refused {
                running: "lag 1".into(),
                sha256: "bad".into(),
                reason: "not a component".into(),
            },
            3 => Refresh::Reloaded {
                from: "lag 1".into(),
                to: "lag 2".into(),
                sha256: "good".into(),
            },
            _ => Refresh::Unchanged,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_interpreter_file_replaced_is_reported_like_a_policy_file() {
    let target = FakeTarget::new(1, 90);
    let run = Running::launch_interpreted(
        &target,
        50.0,
        Box::new(ReplacedInterpreter { refreshes: 0 }),
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    let events = run.stop().await;
    let (reloaded, refused) = reloads(&events);
    assert_eq!(
        refused,
        [(60, "lag 1".to_owned(), "not a component".to_owned())]
    );
    assert_eq!(reloaded, [(120, "lag 1".to_owned(), "lag 2".to_owned())]);
}

/// The agent's policy, loading a new file in the background, made
/// deterministic on the paused clock: the call that starts a load waits
/// for it to finish before it returns (the load itself still runs on its
/// own thread, and the instance is swapped in at the next refresh only).
struct SettledLoads(PluginPolicy);

impl Decide for SettledLoads {
    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, PluginFailure> {
        self.0.decide(evaluation)
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn refresh(&mut self) -> crate::plugin::Refresh {
        let refresh = self.0.refresh();
        self.0.0.wait_for_load();
        refresh
    }
    fn starts_afresh(&self) -> bool {
        self.0.starts_afresh()
    }
}

/// A file loaded in the background ends a quarantine at the evaluation
/// that swaps it in, not at the one that noticed it (which still finds the
/// old code quarantined); the new code is called at once, its failures
/// are counted from zero (they are its own, not the old file's), and
/// when it is quarantined in turn, its back-off starts over.
#[tokio::test(start_paused = true)]
async fn a_file_loaded_in_the_background_ends_a_quarantine_when_it_is_swapped_in() {
    let (_dir, path) = misbehave_file();
    let policy = misbehave_policy(&path, "error").in_background();
    let target = FakeTarget::new(1, 90);
    let run = launch(
        &target,
        Box::new(SettledLoads(PluginPolicy(policy))),
        QuarantinePolicy::DEFAULT,
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    // Quarantined at 120 s. Another build of the plugin (still erroring):
    // noticed at 180 s, where the load starts; swapped in at 240 s.
    deploy(&path, &rebuilt_misbehave());
    tokio::time::sleep(Duration::from_secs(250)).await;
    let events = run.stop().await;

    let (reloaded, refused) = reloads(&events);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(reloaded.iter().map(|r| r.0).collect::<Vec<_>>(), [240]);
    assert_eq!(retries(&events), [(240, "its file changed".to_owned())]);
    // Skipped at 180 s while the rebuild loaded; the new code fails at
    // 240, 300 and 360 s, and its third failure in a row quarantines it
    // for 300 s, not the doubled 600 s; skipped at 420 s.
    assert_eq!(
        failure_times(&events, "plugin"),
        [0, 60, 120, 240, 300, 360]
    );
    assert_eq!(quarantines(&events), [(120, 3, 300), (360, 3, 300)]);
    assert!(target.updates().is_empty());
}

/// A reload that restarts an application whose policy was quarantined
/// (the author's finding: the gauge, `status` and the history kept the
/// quarantine of a plugin the new settings had replaced, and
/// `flinkscale_plugin_quarantined == 1` alerted on a healthy
/// application): the stopped controller says which plugins were
/// quarantined, and the next one's first answer ends it.
#[tokio::test(start_paused = true)]
async fn a_quarantine_ends_with_the_first_answer_after_a_restart() {
    let target = FakeTarget::new(1, 90);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let controller = Controller::new(
        &test_app(),
        false,
        constant(95.0),
        target.clone(),
        misbehaving("error"),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::with_channel(tx.clone()),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(controller.run_until_stopped(stopped));
    tokio::time::sleep(Duration::from_secs(150)).await;
    stop.send(true).unwrap();
    let before = task.await.unwrap().quarantined;
    assert_eq!(
        before,
        QuarantinedPlugins {
            policy: true,
            interpreters: Vec::new()
        }
    );

    // The reload's new controller: another policy, told of the quarantine.
    let controller = Controller::new(
        &test_app(),
        false,
        constant(50.0),
        target.clone(),
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS + 150_000),
        Events::with_channel(tx),
    )
    .after_quarantine(&before);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(controller.run_until_stopped(stopped));
    tokio::time::sleep(Duration::from_secs(130)).await;
    stop.send(true).unwrap();
    assert_eq!(
        task.await.unwrap().quarantined,
        QuarantinedPlugins::default()
    );
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    assert_eq!(quarantines(&events), [(120, 3, 300)]);
    let recovered: Vec<(i64, String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::PluginRecovered {
                at_ms,
                plugin,
                slot,
                ..
            } => Some(((at_ms - T0_MS) / 1000, plugin.clone(), slot.clone())),
            _ => None,
        })
        .collect();
    // Said of the policy's place, which the quarantine was kept under.
    assert_eq!(
        recovered,
        [(150, "doubling (test)".to_owned(), "policy".to_owned())]
    );
    assert!(retries(&events).is_empty(), "{events:?}");
}

/// A controller started in place of a quarantined one and stopped before
/// its plugin answered (a second reload, or a stop during its first read)
/// hands the quarantine on: the next controller's first answer ends it,
/// where it was forgotten and `flinkscale_plugin_quarantined` stayed 1.
#[tokio::test(start_paused = true)]
async fn a_quarantine_is_handed_on_by_a_controller_stopped_before_its_first_answer() {
    let target = FakeTarget::new(1, 90);
    let before = QuarantinedPlugins {
        policy: true,
        interpreters: Vec::new(),
    };
    let controller = Controller::new(
        &test_app(),
        false,
        constant(50.0),
        target.clone(),
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::log_only(),
    )
    .after_quarantine(&before);
    let (stop, stopped) = watch::channel(false);
    stop.send(true).unwrap();
    let handed = controller.run_until_stopped(stopped).await.quarantined;
    assert_eq!(handed, before);
}

/// A reload that removed a quarantined interpreter's place: nothing will
/// answer there, so its quarantine ends at once (it stayed in
/// `flinkscale_plugin_quarantined` and `status` until the agent restarted).
#[tokio::test(start_paused = true)]
async fn a_quarantine_whose_place_a_reload_removed_ends_at_once() {
    let target = FakeTarget::new(1, 90);
    let before = QuarantinedPlugins {
        policy: false,
        interpreters: vec![false, true],
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _controller = Controller::new(
        &test_app(),
        false,
        constant(50.0),
        target,
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::with_channel(tx),
    )
    .after_quarantine(&before);
    let mut ended = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let Event::PluginRecovered { slot, plugin, .. } = event {
            ended.push((slot, plugin));
        }
    }
    assert_eq!(
        ended,
        [(
            "interpreter 2".to_owned(),
            "none (the reload removed it)".to_owned()
        )]
    );
}
