//! A slow plugin stalls only its own application: `flinkscale run` serves
//! three applications, two of whose policies (`misbehave` in `loop` mode)
//! spin until their 5 s deadline on every call, on a host with as many
//! runtime workers as cores. The third application, on the healthy `step`
//! policy, must keep its 1 s evaluation interval (counted from the
//! emulator's call log, not from the agent's own word), and `/healthz` must
//! answer within 100 ms throughout.
//!
//! Needs the plugins built (`cargo plugins`); fails, not skips, without
//! them. Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Emulator, calls_of, http, plugin_dir, start_agent, wait_until, workspace};

/// The application on the healthy policy.
const HEALTHY: &str = "healthy-app";
/// The applications whose policy loops until its deadline.
const SPINNING: [&str; 2] = ["spin-a", "spin-b"];
/// Every application's evaluation interval, in seconds.
const INTERVAL_SECS: u64 = 1;
/// How far past its interval the healthy application's next evaluation may
/// come: the evaluation's own AWS calls plus scheduling on a loaded host.
/// A runtime stalled by a spinning plugin shows gaps of several seconds.
const GAP_TOLERANCE: Duration = Duration::from_millis(1000);
/// What `/healthz` must answer within, every time.
const HEALTHZ_BUDGET: Duration = Duration::from_millis(100);
/// How long the test watches, once every application runs.
const WATCH: Duration = Duration::from_secs(20);

/// The emulator's scenario: three applications at a constant, moderate load.
fn scenario(dir: &Path) -> PathBuf {
    let trace = workspace().join("tests/fixtures/scenarios/e2e-constant.csv");
    let trace = toml_edit::Value::from(trace.to_string_lossy().as_ref()).to_string();
    let mut text = format!(
        "name = \"plugin-isolation\"\n\
         description = \"Two applications with a spinning policy and one with a healthy one.\"\n\
         trace = {trace}\n\
         duration_secs = 86400\n"
    );
    for name in SPINNING.iter().chain([&HEALTHY]) {
        text.push_str(&format!(
            "\n[[application]]\nname = \"{name}\"\nload_factor = 0.4\ninitial_kpu = 2\n\
             min_kpu = 2\nmax_kpu = 7\nupdate_secs = 60\nmetric_delay_secs = 20\n"
        ));
    }
    let file = dir.join("scenario.toml");
    std::fs::write(&file, text).expect("the scenario can be written");
    file
}

/// The agent's configuration: 5 s plugin deadlines, a quarantine that
/// never comes within the test (so the spinning policies keep being
/// called), every application evaluated every second. The healthy
/// application's alarms are set where the load never reaches them, so it
/// holds and never starts an update.
fn config(dir: &Path, listen: SocketAddr) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let cpu = common::config::cpu_metric(HEALTHY);
    let mut text = format!(
        r#"{agent}listen = "{listen}"
plugin_timeout_ms = 5000
plugin_quarantine_after_failures = 1000
"#
    );
    for name in SPINNING {
        text.push_str(&format!(
            r#"
[[application]]
name = "{name}"
evaluation_interval_secs = {INTERVAL_SECS}

[application.policy]
plugin = "misbehave"
params = {{ mode = "loop" }}
"#
        ));
    }
    text.push_str(&format!(
        r#"
[[application]]
name = "{HEALTHY}"
evaluation_interval_secs = {INTERVAL_SECS}
# Its cadence is what the test watches: lazy polling would skip the
# evaluations its clean alarms rule out.
lazy_polling = false

[[application.metric]]
{cpu}
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 99.0
evaluation_periods = 1
datapoints_to_alarm = 1

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanOrEqualToThreshold"
threshold = 0.5
evaluation_periods = 1
datapoints_to_alarm = 1

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "add", scale_out_factor = 1, scale_in_factor = 1 }}
"#
    ));
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// The wall-clock times (ms) of an application's DescribeApplication calls:
/// one per evaluation.
fn evaluations(emulator: &Emulator, application: &str) -> Vec<i64> {
    calls_of(&emulator.calls(), "DescribeApplication", Some(application))
        .iter()
        .filter_map(|c| c["wall_ms"].as_i64())
        .collect()
}

#[test]
fn spinning_plugins_stall_neither_other_applications_nor_healthz() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let emulator = Emulator::start(&scenario(dir.path()), 20.0, &[], dir.path());
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let agent = start_agent(&emulator, &config(dir.path(), listen), &[], dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(40), emulator.call_summary());

    // Every application evaluated at least once (so both spinning policies
    // are inside a call, or about to be) and the healthy one a few times.
    wait_until(
        Duration::from_secs(90),
        "every application evaluated, the healthy one 3 times",
        || {
            agent.assert_running(diagnose);
            SPINNING
                .iter()
                .all(|app| !evaluations(&emulator, app).is_empty())
                && evaluations(&emulator, HEALTHY).len() >= 3
        },
        diagnose,
    );

    let from_ms = common::now_ms();
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < WATCH {
        let asked = Instant::now();
        let response = http(listen, "GET", "/healthz", &[], b"")
            .unwrap_or_else(|e| panic!("/healthz did not answer: {e}\n{}", diagnose()));
        latencies.push(asked.elapsed());
        assert_eq!(response.status, 200, "/healthz: {}", diagnose());
        std::thread::sleep(Duration::from_millis(50));
    }
    let to_ms = common::now_ms();
    agent.assert_running(diagnose);

    let healthy: Vec<i64> = evaluations(&emulator, HEALTHY)
        .into_iter()
        .filter(|t| (from_ms..=to_ms).contains(t))
        .collect();
    let gaps: Vec<i64> = healthy.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().copied().max().unwrap_or(i64::MAX);
    let spun: Vec<usize> = SPINNING
        .iter()
        .map(|app| {
            evaluations(&emulator, app)
                .into_iter()
                .filter(|t| (from_ms..=to_ms).contains(t))
                .count()
        })
        .collect();
    let max_latency = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "watched {:.1} s: healthy evaluations {}, max gap {max_gap} ms; \
         spinning evaluations {spun:?}; /healthz asked {} times, max {:.1} ms",
        (to_ms - from_ms) as f64 / 1000.0,
        healthy.len(),
        latencies.len(),
        max_latency.as_secs_f64() * 1000.0
    );

    // The spinning policies really were called all along (a quarantine or a
    // crash would make this test prove nothing): one call every 5 s + 1 s.
    for (app, count) in SPINNING.iter().zip(&spun) {
        assert!(
            *count >= 2,
            "{app} was evaluated {count} times in {} s\n{}",
            WATCH.as_secs(),
            diagnose()
        );
    }
    let budget = Duration::from_secs(INTERVAL_SECS) + GAP_TOLERANCE;
    assert!(
        u128::try_from(max_gap).unwrap_or(u128::MAX) <= budget.as_millis(),
        "the healthy application's evaluations came up to {max_gap} ms apart \
         (interval {INTERVAL_SECS} s, tolerance {} ms); gaps {gaps:?}\n{}",
        GAP_TOLERANCE.as_millis(),
        diagnose()
    );
    let expected = WATCH.as_millis() / budget.as_millis();
    assert!(
        healthy.len() as u128 >= expected,
        "the healthy application was evaluated {} times in {} s (expected at least {expected})\n{}",
        healthy.len(),
        WATCH.as_secs(),
        diagnose()
    );
    assert!(
        max_latency <= HEALTHZ_BUDGET,
        "/healthz took up to {:.1} ms (budget {} ms) over {} requests\n{}",
        max_latency.as_secs_f64() * 1000.0,
        HEALTHZ_BUDGET.as_millis(),
        latencies.len(),
        diagnose()
    );
}
