//! End to end, as a user runs it: `flinkscale emulate` plays MSF and
//! CloudWatch on loopback, and the real agent (`flinkscale run` /
//! `flinkscale once`, the real AWS SDK, the real `step` plugin) is pointed at
//! it with `AWS_ENDPOINT_URL`. Every assertion is on what the emulator saw
//! (its call log) and on the model's state, never on the agent's internals.
//!
//! The tests need the plugins built (`cargo plugins`); they fail, not skip,
//! without them. They run in parallel and take about 100 s of wall time in
//! all on two cores; every wait is bounded and fails with the call log
//! printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    BIN, Emulator, Running, aws_env, calls_of, config_copy, log_events, parallelism_config,
    parallelism_update, plugin_dir, scenario, start_agent, state_text, summarize, wait_until,
    workspace,
};
use serde_json::Value;

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`.
const APP: &str = "e2e-app";
/// Its KPU bounds, as the scenario and the agent's configuration set them.
const MIN_KPU: u64 = 2;
const MAX_KPU: u64 = 7;
/// Model seconds per wall second: a 10 s metric period covers 200 model
/// seconds and the scenario's 60 s UpdateApplication lasts 3 wall seconds.
const SPEED: f64 = 20.0;
/// The scenario's UPDATING time in wall milliseconds (update_secs / SPEED).
const UPDATING_WALL_MS: i64 = 3_000;

/// The agent's configuration for `e2e-scale`: the reference design's step
/// policy on containerCPUUtilization with CloudWatch's shortest alarm
/// period (10 s): scale out (x2) after one datapoint above 75 %, scale in
/// (/2) after two at or below 35 %, between 2 and 7 KPU; poll every second
/// while UPDATING, then 5 s of grace.
///
/// The statistic is Average, not the reference's Maximum: after every
/// restart the job works off the backlog of its UPDATING time at 100 % CPU
/// for a few model seconds, and a Maximum alarm that trips on one datapoint
/// would (rightly) scale out again after each scale-in. The reference
/// design avoids that with 5 of 5 one-minute datapoints, too slow here.
fn scale_config(dir: &Path) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let rules = common::cpu_step_rules(APP);
    let text = format!(
        r#"{agent}
[[application]]
name = "{APP}"
min_kpu = {MIN_KPU}
max_kpu = {MAX_KPU}
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 5

{rules}"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// The call log, the model's state and the agent's log: what a failed
/// end-to-end test prints.
fn diagnostics(emulator: &Emulator, agent: Option<&Running>) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        emulator.call_summary(),
        state_text(emulator),
        agent.map(|a| a.log_tail(80)).unwrap_or_default(),
        emulator.process.log_tail(20),
    )
}

/// The agent's evaluations of `app` numbered above `after_seq`: each
/// evaluation asks GetMetricData once for its first page (further pages
/// carry a NextToken).
fn evaluations(calls: &[Value], app: &str, after_seq: u64) -> usize {
    calls_of(calls, "GetMetricData", Some(app))
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > after_seq)
        .filter(|c| c["params"].get("NextToken").is_none())
        .count()
}

/// The number of the latest call.
fn last_seq(calls: &[Value]) -> u64 {
    calls.last().and_then(|c| c["seq"].as_u64()).unwrap_or(0)
}

/// The KPU an UpdateApplication asks for: ceil(parallelism / per KPU).
fn target_kpu(call: &Value) -> Option<u64> {
    let parallelism = parallelism_update(call)?;
    let per_kpu = parallelism_config(call)?["ParallelismPerKPUUpdate"]
        .as_u64()
        .unwrap_or(1)
        .max(1);
    Some(parallelism.div_ceil(per_kpu))
}

/// How many calls of each operation, for the test's output.
fn call_counts(calls: &[Value]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for call in calls {
        *counts
            .entry(call["operation"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// The longest test (about 95 s); its name sorts first so that libtest, which
// starts tests in name order, runs the two shorter ones beside it.
#[test]
fn agent_scales_out_settles_and_scales_in_within_its_bounds() {
    let test_start = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = scale_config(dir.path());
    let emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    let initial = emu.app(APP);
    assert_eq!(
        initial["kpu"], MIN_KPU,
        "the scenario starts at min_kpu: {initial}"
    );
    assert_eq!(initial["status"], "RUNNING", "{initial}");
    let v0 = initial["version_id"]
        .as_u64()
        .expect("the state shows the version id");

    let agent = start_agent(&emu, &config, &[], dir.path());
    let diag = || diagnostics(&emu, Some(&agent));

    // Low load at min_kpu: the scale-in alarm may fire, but 2 KPU is the
    // floor, so the agent holds.
    wait_until(
        Duration::from_secs(40),
        "two evaluations at low load",
        || {
            agent.assert_running(diag);
            evaluations(&emu.calls(), APP, 0) >= 2
        },
        diag,
    );
    let calls = emu.calls();
    assert!(
        calls_of(&calls, "UpdateApplication", None).is_empty(),
        "the agent rescaled at a load 2 KPU carry at ~24 % CPU\n{}",
        diag()
    );

    // The load rises to 3000 records/s: 2 KPU cannot carry it and 4 KPU run
    // above 75 %, so the step policy doubles to 4 and then to 8, clamped to
    // max_kpu = 7.
    emu.set_load(APP, 3.0);
    let rise = Instant::now();
    wait_until(
        Duration::from_secs(100),
        "the agent to scale out to max_kpu and the update to finish",
        || {
            agent.assert_running(diag);
            let app = emu.app(APP);
            app["kpu"] == MAX_KPU && app["status"] == "RUNNING"
        },
        diag,
    );
    let scaled_out_after = rise.elapsed();

    // Settled: two more evaluations at the same load change nothing, and 7
    // KPU carry the load.
    let at_max = last_seq(&emu.calls());
    wait_until(
        Duration::from_secs(40),
        "two evaluations after the scale-out",
        || {
            agent.assert_running(diag);
            evaluations(&emu.calls(), APP, at_max) >= 2
        },
        diag,
    );
    let calls = emu.calls();
    let late: Vec<_> = calls_of(&calls, "UpdateApplication", Some(APP))
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > at_max)
        .collect();
    assert!(
        late.is_empty(),
        "the agent did not settle at {MAX_KPU} KPU: {} more UpdateApplication\n{}",
        late.len(),
        diag()
    );
    let app = emu.app(APP);
    assert!(
        app["capacity"].as_f64().unwrap_or(0.0) >= app["lambda"].as_f64().unwrap_or(f64::MAX),
        "settled at a capacity below the load: {app}"
    );
    let high_phase_end = last_seq(&calls);

    // The load falls to 300 records/s: 7 KPU run below 15 %, so the policy
    // halves to 3 and then to 1, clamped to min_kpu = 2.
    emu.set_load(APP, 0.3);
    let fall = Instant::now();
    wait_until(
        Duration::from_secs(100),
        "the agent to scale in to min_kpu and the update to finish",
        || {
            agent.assert_running(diag);
            let app = emu.app(APP);
            app["kpu"] == MIN_KPU && app["status"] == "RUNNING"
        },
        diag,
    );
    let scaled_in_after = fall.elapsed();
    // One more evaluation at min_kpu: the scale-in alarm still fires, and the
    // agent must not go below the floor.
    let at_min = last_seq(&emu.calls());
    wait_until(
        Duration::from_secs(30),
        "an evaluation after the scale-in",
        || {
            agent.assert_running(diag);
            evaluations(&emu.calls(), APP, at_min) >= 1
        },
        diag,
    );
    agent.stop();

    let calls = emu.calls();
    let log = summarize(&calls, emu.started_ms);
    let refused: Vec<_> = calls.iter().filter(|c| c["outcome"] != "ok").collect();
    assert!(
        refused.is_empty(),
        "no fault was injected, yet calls were refused (ResourceInUseException = \
         sent while UPDATING, ConcurrentModificationException = a stale version): \
         {refused:#?}\n{log}"
    );
    let updates = calls_of(&calls, "UpdateApplication", Some(APP));
    let mut kpus = Vec::new();
    for (k, update) in updates.iter().enumerate() {
        assert_eq!(
            update["params"]["CurrentApplicationVersionId"].as_u64(),
            Some(v0 + k as u64),
            "UpdateApplication #{k} does not quote the current version\n{log}"
        );
        let p = parallelism_config(update)
            .unwrap_or_else(|| panic!("no ParallelismConfigurationUpdate: {update}"));
        assert_eq!(p["ConfigurationTypeUpdate"], "CUSTOM", "{update}");
        assert_eq!(p["AutoScalingEnabledUpdate"], false, "{update}");
        let kpu = target_kpu(update).unwrap_or_else(|| panic!("no ParallelismUpdate: {update}"));
        assert!(
            (MIN_KPU..=MAX_KPU).contains(&kpu),
            "UpdateApplication to {kpu} KPU, outside [{MIN_KPU}, {MAX_KPU}]\n{log}"
        );
        kpus.push((update["seq"].as_u64().unwrap_or(0), kpu));
    }
    // The application is UPDATING for 3 wall seconds after each update: the
    // next one may come only after that (the emulator would have refused it
    // with ResourceInUseException, which the check above excludes, but the
    // timing is the model's own evidence).
    for pair in updates.windows(2) {
        let gap =
            pair[1]["wall_ms"].as_i64().unwrap_or(0) - pair[0]["wall_ms"].as_i64().unwrap_or(0);
        assert!(
            gap >= UPDATING_WALL_MS,
            "two UpdateApplication {gap} ms apart, while an update lasts {UPDATING_WALL_MS} ms\n{log}"
        );
        let between = calls.iter().any(|c| {
            c["operation"] == "DescribeApplication"
                && c["seq"].as_u64() > pair[0]["seq"].as_u64()
                && c["seq"].as_u64() < pair[1]["seq"].as_u64()
        });
        assert!(
            between,
            "an UpdateApplication without re-reading the application first\n{log}"
        );
    }
    // (seq, kpu) of the updates sent while the load was high, then after.
    let out: Vec<u64> = kpus
        .iter()
        .filter(|(seq, _)| *seq <= high_phase_end)
        .map(|(_, k)| *k)
        .collect();
    let inn: Vec<u64> = kpus
        .iter()
        .filter(|(seq, _)| *seq > high_phase_end)
        .map(|(_, k)| *k)
        .collect();
    assert!(
        out.windows(2).all(|w| w[0] < w[1]) && out.first().is_some_and(|k| *k > MIN_KPU),
        "while the load was high the updates were not a steady scale-out: {out:?}\n{log}"
    );
    assert_eq!(out.last(), Some(&MAX_KPU), "{log}");
    assert!(
        inn.windows(2).all(|w| w[0] > w[1]) && inn.first().is_some_and(|k| *k < MAX_KPU),
        "after the load fell the updates were not a steady scale-in: {inn:?}\n{log}"
    );
    assert_eq!(inn.last(), Some(&MIN_KPU), "{log}");
    let end = emu.app(APP);
    assert_eq!(end["updates"].as_u64(), Some(updates.len() as u64), "{end}");
    assert_eq!(
        end["version_id"].as_u64(),
        Some(v0 + updates.len() as u64),
        "{end}"
    );

    let evaluated = evaluations(&calls, APP, 0);
    let steady: Vec<&Value> = calls
        .iter()
        .filter(|c| c["seq"].as_u64() <= Some(high_phase_end))
        .collect();
    eprintln!(
        "e2e scale: out {:?} in {:.0} s, in {:?} in {:.0} s; {} evaluations; calls: {}; {:.0} s in all; \
         the first {} calls: {}",
        out,
        scaled_out_after.as_secs_f64(),
        inn,
        scaled_in_after.as_secs_f64(),
        evaluated,
        call_counts(&calls),
        test_start.elapsed().as_secs_f64(),
        steady.len(),
        call_counts(&steady.into_iter().cloned().collect::<Vec<_>>()),
    );
}

#[test]
fn dry_run_decides_but_never_calls_update_application() {
    let test_start = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = scale_config(dir.path());
    let emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    // More load than 2 KPU carry from the start: a live agent would scale.
    emu.set_load(APP, 3.0);
    let v0 = emu.app(APP)["version_id"].as_u64().expect("a version id");
    let agent = start_agent(&emu, &config, &["--dry-run"], dir.path());
    let diag = || diagnostics(&emu, Some(&agent));
    let wants_to_scale = || {
        log_events(&agent.log(), "Evaluated.").into_iter().any(|e| {
            e["dry_run"] == true
                && e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("ScaleTo"))
        })
    };
    wait_until(
        Duration::from_secs(60),
        "a dry-run decision to scale out",
        || {
            agent.assert_running(diag);
            wants_to_scale()
        },
        diag,
    );
    // A live agent sends UpdateApplication right after such a decision;
    // give the dry run one more evaluation to misbehave.
    let decided = last_seq(&emu.calls());
    wait_until(
        Duration::from_secs(30),
        "one more evaluation",
        || {
            agent.assert_running(diag);
            evaluations(&emu.calls(), APP, decided) >= 1
        },
        diag,
    );
    agent.stop();
    let calls = emu.calls();
    let log = summarize(&calls, emu.started_ms);
    assert!(
        calls_of(&calls, "UpdateApplication", None).is_empty(),
        "--dry-run sent UpdateApplication\n{log}"
    );
    assert!(
        !calls_of(&calls, "DescribeApplication", Some(APP)).is_empty(),
        "{log}"
    );
    assert!(evaluations(&calls, APP, 0) >= 2, "{log}");
    assert!(calls.iter().all(|c| c["outcome"] == "ok"), "{log}");
    let app = emu.app(APP);
    assert_eq!(app["version_id"].as_u64(), Some(v0), "{app}");
    assert_eq!(app["kpu"], MIN_KPU, "{app}");
    assert_eq!(app["updates"], 0, "{app}");
    eprintln!(
        "e2e dry run: calls: {}; {:.0} s in all",
        call_counts(&calls),
        test_start.elapsed().as_secs_f64()
    );
}

/// One example of `config/` and what its metrics must show.
struct Family {
    /// The file in `config/`.
    file: &'static str,
    /// Whether the emulator publishes its metrics.
    published: bool,
    /// A check of each datapoint's value, with what it means.
    value_ok: fn(f64) -> bool,
    /// What `value_ok` checks, for the failure message.
    expectation: &'static str,
}

#[test]
fn every_metric_family_of_the_examples_works_against_the_emulator() {
    let families = [
        Family {
            file: "msf-cpu.toml",
            published: true,
            // ~77 % at 1500 records/s on 2 KPU; never below the idle 5 %
            // minus noise, never above 100.
            value_ok: |v| (50.0..=100.0).contains(&v),
            expectation: "a busy application's CPU percentage",
        },
        Family {
            file: "msk-lag.toml",
            published: true,
            value_ok: |v| v > 0.0,
            expectation: "a growing consumer lag (3000 records/s on 2 KPU)",
        },
        Family {
            file: "kinesis-iterator-age.toml",
            published: true,
            value_ok: |v| v > 0.0,
            expectation: "a growing iterator age (3000 records/s on 2 KPU)",
        },
        Family {
            file: "kinesis-efo.toml",
            published: true,
            value_ok: |v| v > 0.0,
            expectation: "a growing EFO lag (3000 records/s on 2 KPU)",
        },
        // custom-metric.toml reads a metric the Flink job would publish
        // itself with PutMetricData (Recommendations/Pipeline
        // EndToEndLatencyMs). The emulator publishes only the model's
        // AWS/ metrics and has no PutMetricData, so the metric has no data:
        // `once` must report it as such (an empty series, alarms in
        // INSUFFICIENT_DATA, a hold) instead of failing.
        Family {
            file: "custom-metric.toml",
            published: false,
            value_ok: |_| false,
            expectation: "no datapoint at all",
        },
    ];
    let test_start = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let speed = 10.0;
    const HISTORY_SECS: i64 = 600;
    // Ten wall minutes of history (100 simulated minutes at speed 10): the
    // examples' 60 s periods and 5-period alarms have their datapoints at
    // once.
    let emu = Emulator::start(
        &scenario("e2e-families.toml"),
        speed,
        &["--history-secs", &HISTORY_SECS.to_string()],
        dir.path(),
    );

    for family in &families {
        let source = workspace().join("config").join(family.file);
        let config = config_copy(&source, dir.path());
        let expected: toml::Table = toml::from_str(&std::fs::read_to_string(&source).unwrap())
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", family.file));
        let app_config = &expected["application"].as_array().expect("[[application]]")[0];
        let name = app_config["name"].as_str().expect("a name");
        let (min_kpu, max_kpu) = (
            app_config["min_kpu"].as_integer().unwrap_or(1),
            app_config["max_kpu"].as_integer().unwrap_or(10),
        );
        let before = last_seq(&emu.calls());

        let mut command = Command::new(BIN);
        command
            .args(["once", "--dry-run", "--json", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn");
        aws_env(&mut command, &emu.endpoint, dir.path());
        let output = command.output().expect("`flinkscale once` runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = || {
            format!(
                "{}: `flinkscale once` exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
                family.file,
                output.status.code(),
                diagnostics(&emu, None)
            )
        };
        assert!(output.status.success(), "{}", context());
        let reports: Vec<Value> = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", context()))
            })
            .collect();
        assert_eq!(
            reports.len(),
            1,
            "one application, one report\n{}",
            context()
        );
        let report = &reports[0];
        assert_eq!(report["application"], name, "{}", context());
        assert!(report.get("error").is_none(), "{}", context());
        assert_eq!(report["state"]["status"], "RUNNING", "{}", context());
        assert_eq!(report["evaluation"]["app"]["kpu"], 2, "{}", context());

        // Every configured metric came back, as configured.
        let metrics = report["evaluation"]["metrics"].as_array().expect("metrics");
        let configured = app_config["metric"]
            .as_array()
            .expect("[[application.metric]]");
        assert_eq!(metrics.len(), configured.len(), "{}", context());
        for (series, want) in metrics.iter().zip(configured) {
            let q = &series["query"];
            assert_eq!(q["id"].as_str(), want["id"].as_str(), "{}", context());
            assert_eq!(
                q["namespace"].as_str(),
                want["namespace"].as_str(),
                "{}",
                context()
            );
            assert_eq!(
                q["metric_name"].as_str(),
                want["metric_name"].as_str(),
                "{}",
                context()
            );
            let dims: serde_json::Map<String, Value> = want["dimensions"]
                .as_table()
                .expect("dimensions")
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str().unwrap_or_default())))
                .collect();
            assert_eq!(q["dimensions"], Value::Object(dims), "{}", context());
            let period_ms = want["period_secs"].as_integer().unwrap_or(60) * 1000;
            let points = series["points"].as_array().expect("points");
            if !family.published {
                assert!(
                    points.is_empty(),
                    "{}: {}\n{}",
                    family.expectation,
                    series,
                    context()
                );
                continue;
            }
            assert!(
                !points.is_empty(),
                "{} {}: no datapoints\n{}",
                family.file,
                q["metric_name"],
                context()
            );
            let mut previous = i64::MIN;
            for point in points {
                let t = point["timestamp_ms"].as_i64().expect("a timestamp");
                let v = point["value"].as_f64().expect("a value");
                assert_eq!(
                    t.rem_euclid(period_ms),
                    0,
                    "a timestamp off the period: {point}\n{}",
                    context()
                );
                assert!(t > previous, "timestamps not ascending\n{}", context());
                assert!(
                    t >= emu.started_ms - HISTORY_SECS * 1000 - period_ms,
                    "a datapoint before the emulated history began\n{}",
                    context()
                );
                previous = t;
                assert!(
                    (family.value_ok)(v),
                    "{} {}: {v} is not {}\n{}",
                    family.file,
                    q["metric_name"],
                    family.expectation,
                    context()
                );
            }
        }

        // Every configured alarm has a state.
        let alarms = report["evaluation"]["alarms"].as_array().expect("alarms");
        let alarm_ids: Vec<&str> = app_config["alarm"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            alarms
                .iter()
                .filter_map(|a| a["name"].as_str())
                .collect::<Vec<_>>(),
            alarm_ids,
            "{}",
            context()
        );
        for alarm in alarms {
            let state = alarm["state"].as_str().unwrap_or_default();
            assert!(
                ["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&state),
                "{}",
                context()
            );
            if !family.published {
                assert_eq!(state, "INSUFFICIENT_DATA", "{}", context());
            }
        }

        // A well-formed decision, not acted upon.
        let decision = &report["decision"];
        assert!(
            decision["reason"]
                .as_str()
                .is_some_and(|r| !r.trim().is_empty()),
            "a decision without a reason\n{}",
            context()
        );
        match &decision["action"] {
            Value::String(s) if s == "hold" => {}
            Value::Object(o) if o.len() == 1 && o.contains_key("scale_to") => {
                let k = o["scale_to"].as_i64().expect("a KPU");
                assert!((min_kpu..=max_kpu).contains(&k), "{}", context());
                assert!(
                    family.published,
                    "a scale decision on no data\n{}",
                    context()
                );
            }
            other => panic!("not a decision: {other}\n{}", context()),
        }
        assert_eq!(report["outcome"]["kind"], "held", "{}", context());

        // What the emulator saw of it: reads only, all answered.
        let calls: Vec<Value> = emu
            .calls()
            .into_iter()
            .filter(|c| c["seq"].as_u64().unwrap_or(0) > before)
            .collect();
        let log = summarize(&calls, emu.started_ms);
        assert!(
            calls_of(&calls, "UpdateApplication", None).is_empty(),
            "{log}"
        );
        assert!(
            !calls_of(&calls, "DescribeApplication", Some(name)).is_empty(),
            "{log}"
        );
        assert!(!calls_of(&calls, "GetMetricData", None).is_empty(), "{log}");
        assert!(calls.iter().all(|c| c["outcome"] == "ok"), "{log}");
        eprintln!(
            "e2e families: {}: calls: {}",
            family.file,
            call_counts(&calls)
        );
    }
    eprintln!(
        "e2e families: {:.0} s in all",
        test_start.elapsed().as_secs_f64()
    );
}
