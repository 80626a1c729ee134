//! End to end with interpreter plugins: `flinkscale emulate` plays MSF,
//! MSK and CloudWatch, and the real agent (real SDK, real `backlog-seconds`,
//! `expression` and `step` components, CloudWatch metric math) scales on
//! alarms that watch interpreter signals rather than metrics. Assertions are on what the
//! emulator saw and on the agent's own decision log.
//!
//! Needs the plugins built (`cargo plugins`); fails, not skips, without
//! them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Emulator, calls_of, log_events, plugin_dir, scenario, start_agent, state_text, summarize,
    wait_until,
};

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`; its MSK
/// source has the names the scenario derives from it.
const APP: &str = "e2e-app";
const MIN_KPU: u64 = 2;
const MAX_KPU: u64 = 7;
/// Model seconds per wall second (see e2e.rs): a 10 s period is 200 model
/// seconds.
const SPEED: f64 = 20.0;

/// Step on two alarms that watch signals only: `behind` on
/// `backlog-seconds`' `seconds_behind` (SumOffsetLag / numRecordsInPerSecond)
/// above 30 s, `idle` on the `expression` signal `backlog_per_record_in`
/// at or below 1 s for two periods. That signal reads `lag_per_processed`,
/// the same ratio as CloudWatch metric math, which the agent sends as an
/// Expression query and the emulator evaluates. No alarm watches a metric,
/// so any rescale comes from the interpreters.
fn config(dir: &Path) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let text = format!(
        r#"{agent}
[[application]]
name = "{APP}"
min_kpu = {MIN_KPU}
max_kpu = {MAX_KPU}
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 5

[[application.metric]]
id = "lag"
namespace = "AWS/Kafka"
metric_name = "SumOffsetLag"
dimensions = {{ "Cluster Name" = "{APP}-cluster", "Consumer Group" = "{APP}-group", Topic = "{APP}-topic" }}
statistic = "Maximum"
period_secs = 10

[[application.metric]]
id = "processed"
namespace = "AWS/KinesisAnalytics"
metric_name = "numRecordsInPerSecond"
dimensions = {{ Application = "{APP}" }}
statistic = "Average"
period_secs = 10

[[application.metric]]
id = "lag_per_processed"
expression = "FILL(lag, 0) / processed"
period_secs = 10

[[application.interpreter]]
plugin = "backlog-seconds"
params = {{ backlog_metric = "lag", processing_rate_metric = "processed" }}

[[application.interpreter]]
plugin = "expression"
params.signals = {{ backlog_per_record_in = "fill(lag_per_processed, 0)" }}

[[application.alarm]]
id = "behind"
metric = "seconds_behind"
comparison = "GreaterThanThreshold"
threshold = 30.0
evaluation_periods = 1

[[application.alarm]]
id = "idle"
metric = "backlog_per_record_in"
comparison = "LessThanOrEqualToThreshold"
threshold = 1.0
evaluation_periods = 2

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "behind", scale_in_alarm = "idle" }}
"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

#[test]
fn agent_scales_out_on_an_alarm_that_watches_an_interpreter_signal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = config(dir.path());
    let emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    let agent = start_agent(&emu, &config, &[], dir.path());
    let diag = || {
        format!(
            "{}\n{}\n{}",
            emu.call_summary(),
            state_text(&emu),
            agent.log_tail(80)
        )
    };
    // At low load there is no backlog: `idle` fires (through the metric
    // math and the expression signal), but 2 KPU is the floor, so the agent
    // holds, saying so.
    wait_until(
        Duration::from_secs(60),
        "a decision naming both signal alarms as known",
        || {
            agent.assert_running(diag);
            log_events(&agent.log(), "Evaluated.").iter().any(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("already at min KPU"))
            })
        },
        diag,
    );
    assert!(
        calls_of(&emu.calls(), "UpdateApplication", None).is_empty(),
        "the agent rescaled with no backlog\n{}",
        diag()
    );

    // 3000 records/s: 2 KPU (C(2) = 1960) fall behind by about 1000
    // records/s, so the backlog is minutes of processing within a period.
    emu.set_load(APP, 3.0);
    wait_until(
        Duration::from_secs(90),
        "the agent to scale out on `behind`",
        || {
            agent.assert_running(diag);
            let app = emu.app(APP);
            app["kpu"].as_u64().is_some_and(|kpu| kpu > MIN_KPU)
        },
        diag,
    );
    agent.stop();

    let calls = emu.calls();
    let log = summarize(&calls, emu.started_ms);
    let math_sent = calls_of(&calls, "GetMetricData", None).iter().any(|c| {
        c["params"]["MetricDataQueries"]
            .as_array()
            .is_some_and(|qs| {
                qs.iter().any(|q| {
                    q["Expression"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("FILL("))
                })
            })
    });
    assert!(math_sent, "no Expression query reached the emulator\n{log}");
    let updates = calls_of(&calls, "UpdateApplication", Some(APP));
    assert!(!updates.is_empty(), "{log}");
    let decisions = log_events(&agent.log(), "Evaluated.");
    let scale_out = decisions
        .iter()
        .find(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("ScaleTo"))
        })
        .unwrap_or_else(|| panic!("no scaling decision in the log\n{}", diag()));
    let reason = scale_out["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("behind") && reason.contains("ALARM"),
        "the scale-out was not driven by the `behind` alarm on seconds_behind: {reason}"
    );
    let app = emu.app(APP);
    assert!(app["kpu"].as_u64().is_some_and(|k| k <= MAX_KPU), "{app}");
    assert!(calls.iter().all(|c| c["outcome"] == "ok"), "{log}");
}
