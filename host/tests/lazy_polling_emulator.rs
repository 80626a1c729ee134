//! Lazy polling on the agent's real-AWS path: `flinkscale run` with the real
//! SDK and the real `step` plugin against `flinkscale emulate`, the
//! reference design's alarms (5 of 5, here on 10 s periods). Two agents,
//! each with its own emulator, watch the same steady load (2 KPU at about
//! 24 % CPU: both alarms OK) for the same wall time, one with lazy polling
//! off and one with it on; the emulators' call logs count their
//! GetMetricData requests. The lazy agent must ask at most a third as
//! often (a clean 5-of-5 window rules out ALARM for at least 4 periods),
//! and must still scale out when the load triples.
//!
//! Needs the plugins built (`cargo plugins`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Emulator, calls_of, plugin_dir, scenario, start_agent, wait_until};
use serde_json::Value;

const APP: &str = "e2e-app";
/// Model seconds per wall second, as in e2e.rs: a 10 s period is 200 model
/// seconds, a datapoint shows 1 wall second after its period ends.
const SPEED: f64 = 20.0;

/// The reference design's two alarms on 10 s periods, `lazy_polling` as
/// given, and the metric's `min_publication_delay_secs` if `promise` says.
fn config(dir: &Path, lazy: bool, promise: Option<u32>) -> PathBuf {
    let promise = promise
        .map(|secs| format!("min_publication_delay_secs = {secs}\n"))
        .unwrap_or_default();
    let agent = common::config::agent_table(&plugin_dir());
    let cpu = common::config::cpu_metric(APP);
    let text = format!(
        r#"{agent}lazy_polling = {lazy}

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 7
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 5

[[application.metric]]
{cpu}{promise}
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 80.0
evaluation_periods = 5
datapoints_to_alarm = 5

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanOrEqualToThreshold"
threshold = 20.0
evaluation_periods = 5
datapoints_to_alarm = 5

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2, scale_in_factor = 2 }}
"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// GetMetricData requests (first pages) in `calls`.
fn polls(calls: &[Value]) -> usize {
    calls_of(calls, "GetMetricData", Some(APP))
        .into_iter()
        .filter(|c| c["params"].get("NextToken").is_none())
        .count()
}

#[test]
fn the_agent_polls_cloudwatch_lazily_and_still_scales_out() {
    let eager_dir = tempfile::tempdir().expect("a temp dir");
    let lazy_dir = tempfile::tempdir().expect("a temp dir");
    start_mid_period();
    let eager_emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], eager_dir.path());
    let lazy_emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], lazy_dir.path());
    let eager = start_agent(
        &eager_emu,
        &config(eager_dir.path(), false, None),
        &[],
        eager_dir.path(),
    );
    let lazy = start_agent(
        &lazy_emu,
        &config(lazy_dir.path(), true, None),
        &[],
        lazy_dir.path(),
    );
    let diag = || {
        format!(
            "eager:\n{}\n{}\nlazy:\n{}\n{}",
            eager_emu.call_summary(),
            eager.log_tail(40),
            lazy_emu.call_summary(),
            lazy.log_tail(40)
        )
    };
    // Steady load. The first 80 s fill the alarms' ranges, 7 periods of
    // 10 s (the alarms start in INSUFFICIENT_DATA, which is never skipped,
    // and an empty period, a datapoint that may still come, may make 5 of
    // 5 sooner); the next 60 s are counted. In steady state the newest
    // datapoint may still change (another publisher's sample), so the
    // lazy agent polls every 4 periods, 40 s.
    std::thread::sleep(Duration::from_secs(80));
    let last = |emu: &Emulator| {
        emu.calls()
            .last()
            .and_then(|c| c["seq"].as_u64())
            .unwrap_or(0)
    };
    let (eager_from, lazy_from) = (last(&eager_emu), last(&lazy_emu));
    std::thread::sleep(Duration::from_secs(60));
    eager.assert_running(diag);
    lazy.assert_running(diag);
    let (eager_calls, lazy_calls) = (eager_emu.calls(), lazy_emu.calls());
    let eager_polls = polls(&eager_emu.calls_since(eager_from));
    let lazy_polls = polls(&lazy_emu.calls_since(lazy_from));
    for calls in [&eager_calls, &lazy_calls] {
        assert!(
            calls_of(calls, "UpdateApplication", None).is_empty(),
            "nobody rescales 2 KPU at about 24 % CPU\n{}",
            diag()
        );
    }
    assert!(
        eager_polls >= 5,
        "the eager agent polls every 10 s: {eager_polls} in 60 s\n{}",
        diag()
    );
    assert!(
        lazy_polls >= 1 && lazy_polls * 3 <= eager_polls,
        "in 60 s the lazy agent polled {lazy_polls} times, the eager one {eager_polls}\n{}",
        diag()
    );
    eprintln!("GetMetricData in 60 s of steady load: eager {eager_polls}, lazy {lazy_polls}");
    // Tripled load: 2 KPU cannot keep up (CPU 100 %); five breaching
    // periods later the scale-out alarm fires and the lazy agent scales
    // (about 65 s after the load rose, measured).
    lazy_emu.set_load(APP, 3.0);
    wait_until(
        Duration::from_secs(120),
        "the lazy agent scales out",
        || !calls_of(&lazy_emu.calls(), "UpdateApplication", None).is_empty(),
        diag,
    );
    eager.stop();
    lazy.stop();
}

/// Waits until the wall clock is 5 s into a 10 s metric period (the
/// emulator's periods are aligned to the epoch, its model starts when it
/// does), unless `FLINKSCALE_TEST_START_PHASE` chooses the phase. What an
/// evaluation sees depends on where in its period the run starts: started
/// just after a period boundary, the first period ends 10 s later and
/// shows at 11 s, after the agent's second evaluation (10.4 s), and which
/// evaluations a lazy agent skips shifts with it. A start mid-period makes
/// both tests see the same periods on every run
/// (`FLINKSCALE_TEST_START_PHASE=100/10000` fails both).
fn start_mid_period() {
    if std::env::var_os(common::START_PHASE_VAR).is_none() {
        std::thread::sleep(common::until_phase(5_000, 10_000));
    }
}

/// A broken promise on the SDK path: the emulator shows a datapoint 1 s
/// after its 10 s period ends, the metric promises 30 s. Whenever in its
/// period an evaluation runs, the datapoint of the period before the
/// newest is at most 20 s old: the first fetch with data breaks the
/// promise, and the agent reports it once, as a `publication_delay`
/// failure naming the metric, and keeps running.
#[test]
fn the_agent_reports_a_publication_delay_sooner_than_promised() {
    let dir = tempfile::tempdir().expect("a temp dir");
    start_mid_period();
    let emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    let agent = start_agent(&emu, &config(dir.path(), true, Some(30)), &[], dir.path());
    let diag = || format!("{}\n{}", emu.call_summary(), agent.log_tail(40));
    let broken = || {
        common::log_events(&agent.log(), "Step failed.")
            .into_iter()
            .filter(|e| e["class"] == "publication_delay")
            .collect::<Vec<Value>>()
    };
    wait_until(
        Duration::from_secs(20),
        "a publication_delay failure",
        || !broken().is_empty(),
        diag,
    );
    // Another evaluation or two: still reported once.
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_running(diag);
    let broken = broken();
    assert_eq!(broken.len(), 1, "reported once\n{}", diag());
    let error = broken[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"cpu\"") && error.contains("promises 30 s"),
        "names the metric and the promise: {error}"
    );
    agent.stop();
}
