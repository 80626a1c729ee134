//! The conventions operators expect, end to end with the real binary and
//! the emulator (scenario `tests/fixtures/scenarios/reload.toml`): an
//! application's `mode` switched by a SIGHUP reload.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::{Emulator, Running, http, log_events, scenario, start_agent, wait_until};

/// The emulator's model runs 20x faster than the wall clock.
const SPEED: f64 = 20.0;

/// How long any wait of these tests may take: generous, for a loaded
/// 2-core CI machine compiling plugins.
const PATIENCE: Duration = Duration::from_secs(90);

/// One `[[application]]` evaluated every second on its CPU, in `mode`,
/// deciding with `plugin` and `params` (TOML inline-table body).
fn application(name: &str, mode: &str, plugin: &str, params: &str) -> String {
    common::cpu_application(
        name,
        1,
        &format!("mode = \"{mode}\"\n"),
        &format!("plugin = \"{plugin}\"\nparams = {{ {params} }}\n"),
    )
}

/// `target-tracking` aiming at 15 % CPU: at the scenario's load it wants
/// more KPU at once, so an application in it would call UpdateApplication
/// unless its mode stops it.
fn eager(name: &str, mode: &str) -> String {
    application(
        name,
        mode,
        "target-tracking",
        "target_utilisation = 0.15, tolerance = 0.05, warmup_secs = 0",
    )
}

/// Writes the configuration (the built-in plugins, state in `dir/state`,
/// the HTTP listener on `port`) the way an operator edits it: aside, then
/// renamed over the old file.
fn write_config(dir: &Path, port: u16, applications: &[String]) -> PathBuf {
    let text = format!(
        "[agent]\nplugin_dir = \"no-plugins\"\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\n{}",
        applications.concat()
    );
    let path = dir.join("agent.toml");
    common::replace(&path, text.as_bytes());
    path
}

/// The emulator's calls of `operation` for `application` after `seq`.
fn calls_after(calls: &[Value], operation: &str, application: &str, seq: u64) -> usize {
    calls
        .iter()
        .filter(|c| c["operation"] == operation && c["application"] == application)
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > seq)
        .count()
}

fn last_seq(emulator: &Emulator) -> u64 {
    emulator
        .calls()
        .iter()
        .filter_map(|c| c["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Waits for the `n`th "Configuration reloaded." line.
fn wait_reloads(agent: &Running, n: usize, diagnose: &dyn Fn() -> String) {
    wait_until(
        PATIENCE,
        &format!("reload number {n}"),
        || log_events(&agent.log(), "Configuration reloaded.").len() >= n,
        diagnose,
    );
}

/// `GET path` on the agent's listener (its address is in the log).
fn agent_get(agent: &Running, path: &str) -> (u16, String) {
    let serving = log_events(
        &agent.log(),
        "Serving /metrics, /livez, /readyz, /healthz, /status and /explain.",
    );
    let addr = serving[0]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the listener's address is logged");
    let response = http(addr, "GET", path, &[], b"").expect("the agent answers");
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

#[test]
fn a_reload_switches_an_application_between_dry_run_paused_and_active_alone() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let keep = application("keep", "active", "hold", "");
    let port = common::free_port();
    let config = write_config(
        dir.path(),
        port,
        &[keep.clone(), eager("changed", "dry-run")],
    );
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || {
        if let Some(status) = agent.exited() {
            panic!("the agent exited ({status}):\n{}", agent.log_tail(20));
        }
        format!(
            "{}\n{}\n{}",
            emulator.call_summary(),
            agent.log_tail(60),
            emulator.process.log_tail(20)
        )
    };

    // Dry run: it decides to scale, and says it did not.
    wait_until(
        PATIENCE,
        "two dry-run decisions to scale",
        || {
            log_events(&agent.log(), "Evaluated.")
                .iter()
                .filter(|e| {
                    e["application"] == "changed"
                        && e["dry_run"] == true
                        && e["action"]
                            .as_str()
                            .is_some_and(|a| a.starts_with("ScaleTo"))
                })
                .count()
                >= 2
        },
        diagnose,
    );
    let calls = emulator.calls();
    assert_eq!(
        calls_after(&calls, "UpdateApplication", "changed", 0),
        0,
        "{}",
        diagnose()
    );

    // Paused: nothing is called for it; the other application carries on.
    write_config(
        dir.path(),
        port,
        &[keep.clone(), eager("changed", "paused")],
    );
    common::hangup(&agent);
    wait_reloads(&agent, 1, &diagnose);
    let paused_at = last_seq(&emulator);
    let (status, body) = agent_get(&agent, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("paused: application \"changed\""), "{body}");
    let (_, metrics) = agent_get(&agent, "/metrics");
    assert!(
        metrics.contains("flinkscale_application_mode{application=\"changed\",mode=\"paused\"} 1"),
        "{metrics}"
    );
    wait_until(
        PATIENCE,
        "five evaluations of the other application while one is paused",
        || calls_after(&emulator.calls(), "DescribeApplication", "keep", paused_at) >= 5,
        diagnose,
    );
    let calls = emulator.calls();
    for operation in ["DescribeApplication", "UpdateApplication"] {
        assert_eq!(
            calls_after(&calls, operation, "changed", paused_at),
            0,
            "{operation} while paused\n{}",
            diagnose()
        );
    }
    let resumed_at = last_seq(&emulator);

    // Active again: it evaluates and scales.
    write_config(dir.path(), port, &[keep, eager("changed", "active")]);
    common::hangup(&agent);
    wait_reloads(&agent, 2, &diagnose);
    wait_until(
        PATIENCE,
        "an UpdateApplication once active",
        || {
            calls_after(
                &emulator.calls(),
                "UpdateApplication",
                "changed",
                resumed_at,
            ) >= 1
        },
        diagnose,
    );
    let calls = emulator.calls();
    assert_eq!(
        calls_after(&calls, "UpdateApplication", "changed", 0),
        calls_after(&calls, "UpdateApplication", "changed", resumed_at),
        "an UpdateApplication before it was active\n{}",
        diagnose()
    );
    // Only the switched application was restarted, never the other.
    let restarted: Vec<Value> = log_events(
        &agent.log(),
        "Application changed; its controller restarted with the new settings.",
    )
    .into_iter()
    .map(|e| e["application"].clone())
    .collect();
    assert_eq!(restarted, ["changed"], "{}", diagnose());
    assert!(
        log_events(
            &agent.log(),
            "Application paused: not evaluated until its mode changes."
        )
        .iter()
        .all(|e| e["application"] == "changed")
    );
    agent.assert_running(diagnose);
}

/// Runs the binary with `args` and `FLINKSCALE_CONFIG` set to `env` (or
/// unset), in the workspace: (exit code, stdout, stderr).
fn flinkscale(args: &[&str], env: Option<&Path>) -> (i32, String, String) {
    let mut command = Command::new(common::BIN);
    command
        .args(args)
        .current_dir(common::workspace())
        .env_remove("RUST_LOG")
        .env_remove("FLINKSCALE_CONFIG");
    if let Some(file) = env {
        command.env("FLINKSCALE_CONFIG", file);
    }
    let out = command.output().expect("the flinkscale binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_that_reads_a_configuration_takes_config_or_flinkscale_config() {
    let good = common::workspace().join("config/msf-cpu.toml");
    let shown = good.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.toml");

    // validate: FILE (as before), --config, or the environment.
    for (args, env) in [
        (vec!["validate", shown.as_str()], None),
        (vec!["validate", "--config", shown.as_str()], None),
        (vec!["validate", "-c", shown.as_str()], Some(gone.as_path())),
        (vec!["validate"], Some(good.as_path())),
    ] {
        let (code, stdout, stderr) = flinkscale(&args, env);
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains("msf-cpu.toml: valid"), "{args:?}: {stdout}");
    }

    // A missing file says where its name came from, and exits 78.
    for (args, env, from) in [
        (vec!["validate"], Some(gone.as_path()), "FLINKSCALE_CONFIG"),
        (vec!["run"], Some(gone.as_path()), "FLINKSCALE_CONFIG"),
        (
            vec!["once", "--dry-run"],
            Some(gone.as_path()),
            "FLINKSCALE_CONFIG",
        ),
        (vec!["status"], Some(gone.as_path()), "FLINKSCALE_CONFIG"),
        (
            vec!["explain", "--application", "a"],
            Some(gone.as_path()),
            "FLINKSCALE_CONFIG",
        ),
        (
            vec!["status", "--config", &gone.to_string_lossy()],
            None,
            "--config",
        ),
        (
            vec!["run", "--config", &gone.to_string_lossy()],
            None,
            "--config",
        ),
        (
            vec!["validate", &gone.to_string_lossy()],
            None,
            "the FILE argument",
        ),
    ] {
        let (code, stdout, stderr) = flinkscale(&args, env);
        assert_eq!(code, 78, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: configuration file {} (from {from}) cannot be read",
                gone.display()
            )),
            "{args:?}: {stderr}"
        );
    }

    // Nothing given: every place it looked is named.
    let (code, _, stderr) = flinkscale(&["validate"], None);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "no configuration file: looked at --config (not given), the FILE argument \
             (not given), and FLINKSCALE_CONFIG (not set)"
        ),
        "{stderr}"
    );
    for args in [&["once"][..], &["status"], &["explain", "-a", "a"]] {
        let (code, _, stderr) = flinkscale(args, None);
        assert_eq!(code, 78, "{args:?}: {stderr}");
        assert!(
            stderr.contains("looked at --config (not given), and FLINKSCALE_CONFIG (not set)"),
            "{args:?}: {stderr}"
        );
    }
}

/// One kinesisanalyticsv2 call to the emulator over AWS JSON 1.1, as any
/// client sends it (the emulator accepts any signature); the answer's JSON.
fn msf_call(emulator: &Emulator, operation: &str, body: &Value) -> Value {
    let target = format!("KinesisAnalytics_20180523.{operation}");
    let response = http(
        emulator.addr,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", &target),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/kinesisanalytics/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        body.to_string().as_bytes(),
    )
    .expect("the emulator answers");
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert_eq!(response.status, 200, "{operation}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

/// `flinkscale validate --environment FILE` against the emulator.
fn validate_environment(emulator: &Emulator, config: &Path, dir: &Path) -> (i32, String) {
    let mut command = Command::new(common::BIN);
    command
        .args(["validate", "--environment"])
        .arg(config)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("FLINKSCALE_CONFIG");
    common::aws_env(&mut command, &emulator.endpoint, dir);
    let out = command.output().expect("the flinkscale binary runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn validate_environment_describes_every_application() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    // MSF's own autoscaling switched on for "changed", as a console user would.
    let version = msf_call(
        &emulator,
        "DescribeApplication",
        &serde_json::json!({"ApplicationName": "changed"}),
    )["ApplicationDetail"]["ApplicationVersionId"]
        .as_u64()
        .expect("a version id");
    msf_call(
        &emulator,
        "UpdateApplication",
        &serde_json::json!({
            "ApplicationName": "changed",
            "CurrentApplicationVersionId": version,
            "ApplicationConfigurationUpdate": {"FlinkApplicationConfigurationUpdate": {
                "ParallelismConfigurationUpdate": {
                    "ConfigurationTypeUpdate": "CUSTOM",
                    "AutoScalingEnabledUpdate": true
                }
            }}
        }),
    );
    let config = write_config(
        dir.path(),
        common::free_port(),
        &[
            application("keep", "active", "hold", ""),
            // A namespace with a typo: a metric that never has data.
            application("changed", "active", "hold", "")
                .replace("AWS/KinesisAnalytics", "AWS/KinesisAnalytic"),
            application("unknown", "paused", "hold", ""),
        ],
    );
    let (code, out) = validate_environment(&emulator, &config, dir.path());
    assert_eq!(code, 1, "{out}");
    // The emulator just started: "keep" may not have data yet either.
    let no_data = "warning: no datapoint in the last 3 h in us-east-1 (GetMetricData) for cpu";
    let line = |app: &str| -> String {
        let prefix = format!("{}: application \"{app}\": ", config.display());
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&prefix) && !l.contains("plugin") && !l.contains(no_data))
            .collect();
        assert_eq!(lines.len(), 1, "one finding for {app}:\n{out}");
        lines[0][prefix.len()..].to_owned()
    };
    assert!(
        out.contains(&format!(
            "{}: application \"changed\": {no_data} (AWS/KinesisAnalytic containerCPUUtilization",
            config.display()
        )),
        "{out}"
    );
    // A paused application is not read.
    assert!(
        !out.contains(&format!("application \"unknown\": {no_data}")),
        "{out}"
    );
    assert_eq!(
        line("keep"),
        "DescribeApplication: exists, RUNNING, 2 KPU, MSF's own autoscaling off"
    );
    assert!(
        line("changed").starts_with("MSF's own autoscaling is on (AutoScalingEnabled)"),
        "{out}"
    );
    assert!(
        line("unknown").starts_with("no such application in us-east-1 (DescribeApplication:"),
        "{out}"
    );
    assert!(!out.contains(": valid"), "{out}");

    // Permission refused: each application says so, with the action.
    emulator.add_fault(&serde_json::json!({
        "operation": "DescribeApplication", "error": "AccessDeniedException"
    }));
    let (code, out) = validate_environment(&emulator, &config, dir.path());
    assert_eq!(code, 1, "{out}");
    for app in ["keep", "changed", "unknown"] {
        assert!(
            line_of(&out, &config, app)
                .starts_with("permission denied: DescribeApplication failed with AccessDenied")
                && line_of(&out, &config, app)
                    .contains("needs kinesisanalytics:DescribeApplication"),
            "{app}: {out}"
        );
    }
}

/// The finding line of `app` in `out` (not the plugin's), without its prefix.
fn line_of(out: &str, config: &Path, app: &str) -> String {
    let prefix = format!("{}: application \"{app}\": ", config.display());
    out.lines()
        .find(|l| l.starts_with(&prefix) && !l.contains("plugin"))
        .map(|l| l[prefix.len()..].to_owned())
        .unwrap_or_else(|| panic!("no finding for {app}:\n{out}"))
}

/// The IAM action of an AWS call the emulator logged (kinesisanalyticsv2's
/// IAM prefix is `kinesisanalytics`).
fn iam_action(call: &Value) -> String {
    let prefix = match call["service"].as_str() {
        Some("kinesisanalyticsv2") => "kinesisanalytics",
        Some("cloudwatch") => "cloudwatch",
        other => panic!("a call of an unknown service {other:?}: {call}"),
    };
    format!(
        "{prefix}:{}",
        call["operation"].as_str().unwrap_or_default()
    )
}

/// The resource an AWS call acts on, as IAM matches it: the application's
/// ARN for kinesisanalytics (account 123456789012 is the emulator's),
/// `*` for CloudWatch's GetMetricData (no resource-level permission).
fn iam_resource(call: &Value) -> String {
    if call["service"] == "kinesisanalyticsv2" {
        let application = call["application"]
            .as_str()
            .unwrap_or_else(|| panic!("a kinesisanalytics call with no application: {call}"));
        format!("arn:aws:kinesisanalytics:us-east-1:123456789012:application/{application}")
    } else {
        "*".to_owned()
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The strings of a policy field that is a string or a list of them.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an Allow statement of `policy` grants `action` on `resource`.
fn allows(policy: &Value, action: &str, resource: &str) -> bool {
    policy["Statement"].as_array().is_some_and(|statements| {
        statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && strings(&s["Action"]).iter().any(|a| wildcard(a, action))
                && strings(&s["Resource"])
                    .iter()
                    .any(|r| wildcard(r, resource))
        })
    })
}

#[test]
fn the_printed_iam_policy_allows_every_call_the_agent_makes_and_no_more_and_each_names_flinkscale()
{
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let config = write_config(
        dir.path(),
        common::free_port(),
        &[
            application("keep", "active", "hold", ""),
            eager("changed", "active"),
        ],
    );
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || format!("{}\n{}", emulator.call_summary(), agent.log_tail(40));
    wait_until(
        PATIENCE,
        "a rescale, and two evaluations after it",
        || {
            let calls = emulator.calls();
            let update = calls
                .iter()
                .filter(|c| c["operation"] == "UpdateApplication" && c["outcome"] == "ok")
                .filter_map(|c| c["seq"].as_u64())
                .next();
            update
                .is_some_and(|seq| calls_after(&calls, "DescribeApplication", "changed", seq) >= 2)
        },
        diagnose,
    );
    agent.stop();
    let calls = emulator.calls();

    let out = Command::new(common::BIN)
        .args([
            "iam",
            "--account",
            "123456789012",
            "--region",
            "us-east-1",
            "--config",
        ])
        .arg(&config)
        .env_remove("FLINKSCALE_CONFIG")
        .output()
        .expect("the flinkscale binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: Value = serde_json::from_slice(&out.stdout).expect("the policy is JSON");

    // Every call names its caller, as CloudTrail's userAgent will.
    let app = format!("app/flinkscale-{}", env!("CARGO_PKG_VERSION"));
    for call in &calls {
        let agent = call["user_agent"].as_str().unwrap_or_default();
        assert!(
            agent.starts_with("aws-sdk-rust/") && agent.split(' ').any(|part| part == app),
            "no {app} in the User-Agent of {call}"
        );
    }

    let mut used = std::collections::BTreeSet::new();
    for call in &calls {
        let (action, resource) = (iam_action(call), iam_resource(call));
        assert!(
            allows(&policy, &action, &resource),
            "the policy does not allow {action} on {resource} (call {call})\n{policy:#}"
        );
        used.insert(action);
    }
    assert_eq!(
        used.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "cloudwatch:GetMetricData",
            "kinesisanalytics:DescribeApplication",
            "kinesisanalytics:UpdateApplication",
        ],
        "the run exercised every call the agent makes"
    );
    // Nothing more: every action granted was used, and each application
    // resource is a configured application, by name.
    for statement in policy["Statement"].as_array().expect("statements") {
        for action in strings(&statement["Action"]) {
            assert!(
                used.contains(&action),
                "{action} is granted but never called"
            );
        }
        for resource in strings(&statement["Resource"]) {
            assert!(
                resource == "*" && strings(&statement["Action"]) == ["cloudwatch:GetMetricData"]
                    || ["keep", "changed"].iter().any(|a| resource
                        == format!(
                            "arn:aws:kinesisanalytics:us-east-1:123456789012:application/{a}"
                        )),
                "{resource} is broader than the configured applications\n{policy:#}"
            );
        }
    }
    // Another application's ARN is not allowed.
    assert!(!allows(
        &policy,
        "kinesisanalytics:UpdateApplication",
        "arn:aws:kinesisanalytics:us-east-1:123456789012:application/gone"
    ));

    // `--read-only`, a dry-run agent's policy: every call but the updates
    // is allowed, on its resource; no update is.
    let out = Command::new(common::BIN)
        .args([
            "iam",
            "--read-only",
            "--account",
            "123456789012",
            "--region",
            "us-east-1",
            "--config",
        ])
        .arg(&config)
        .env_remove("FLINKSCALE_CONFIG")
        .output()
        .expect("the flinkscale binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_only: Value = serde_json::from_slice(&out.stdout).expect("the policy is JSON");
    let mut updates = 0;
    for call in &calls {
        let (action, resource) = (iam_action(call), iam_resource(call));
        if action == "kinesisanalytics:UpdateApplication" {
            updates += 1;
            assert!(
                !allows(&read_only, &action, &resource),
                "the read-only policy allows {action} on {resource}\n{read_only:#}"
            );
        } else {
            assert!(
                allows(&read_only, &action, &resource),
                "the read-only policy does not allow {action} on {resource} (call {call})\n{read_only:#}"
            );
        }
    }
    assert!(updates > 0, "the run made no update to check against");
}

/// The resource an alarm call acts on: each alarm it names
/// (DescribeAlarms' `AlarmNames`, PutMetricAlarm's `AlarmName`).
fn alarm_resources(call: &Value) -> Vec<String> {
    let names = match call["operation"].as_str() {
        Some("DescribeAlarms") => strings(&call["params"]["AlarmNames"]),
        Some("PutMetricAlarm") => strings(&call["params"]["AlarmName"]),
        _ => Vec::new(),
    };
    names
        .iter()
        .map(|name| format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"))
        .collect()
}

/// `iam --alarms-sync` allows what `flinkscale alarms sync` calls (the
/// audit found it printed nothing of it: AccessDenied for a role that
/// ran it), on exactly the mirrors; without the flag it is not granted;
/// and an alarm read from CloudWatch is granted on its own name.
#[test]
fn the_iam_policy_with_alarms_sync_allows_what_alarms_sync_and_the_agent_call() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let config = dir.path().join("alarms.toml");
    std::fs::write(
        &config,
        "[[application]]\nname = \"keep\"\n\
         [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
         metric_name = \"containerCPUUtilization\"\nstatistic = \"Maximum\"\n\
         dimensions = { Application = \"keep\" }\n\
         [[application.alarm]]\nid = \"hot\"\nmetric = \"cpu\"\n\
         comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 3\n\
         [[application.alarm]]\nid = \"theirs\"\nsource = \"cloudwatch\"\n\
         alarm_name = \"flinkscale-keep-hot\"\n\
         [application.policy]\nplugin = \"hold\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut command = Command::new(common::BIN);
        command.args(args).arg("--config").arg(&config);
        common::aws_env(&mut command, &emulator.endpoint, dir.path());
        let out = command.output().expect("the flinkscale binary runs");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&["alarms", "sync"]);
    run(&["once", "--dry-run"]);
    let policy_of = |extra: &[&str]| -> Value {
        let mut args = vec!["iam", "--account", "123456789012", "--region", "us-east-1"];
        args.extend(extra);
        serde_json::from_slice(&run(&args)).expect("the policy is JSON")
    };
    let (plain, sync) = (policy_of(&[]), policy_of(&["--alarms-sync"]));
    let calls = emulator.calls();
    let mut operations = std::collections::BTreeSet::new();
    for call in &calls {
        let action = iam_action(call);
        operations.insert(action.clone());
        let resources = match call["service"].as_str() {
            Some("cloudwatch") if action != "cloudwatch:GetMetricData" => alarm_resources(call),
            _ => vec![iam_resource(call)],
        };
        assert!(!resources.is_empty(), "no resource for {call}");
        for resource in &resources {
            assert!(
                allows(&sync, &action, resource),
                "--alarms-sync does not allow {action} on {resource} (call {call})\n{sync:#}"
            );
        }
    }
    assert!(
        operations.contains("cloudwatch:PutMetricAlarm")
            && operations.contains("cloudwatch:DescribeAlarms"),
        "{operations:?}"
    );
    let mirror = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:flinkscale-keep-hot";
    assert!(
        !allows(&plain, "cloudwatch:PutMetricAlarm", mirror),
        "{plain:#}"
    );
    // The agent's own read of the alarm it takes from CloudWatch.
    assert!(
        allows(&plain, "cloudwatch:DescribeAlarms", mirror),
        "{plain:#}"
    );
    assert!(!allows(
        &sync,
        "cloudwatch:PutMetricAlarm",
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:someone-elses"
    ));
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_flat_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    // Text, to a file: no colour codes, the fields as key=value.
    let text = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let log = text.process.log();
    assert!(log.contains("Emulator listening."), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in a log that is not a terminal: {log:?}"
    );
    assert!(log.contains(&format!("addr={}", text.addr)), "{log}");

    // JSON: the event's fields beside timestamp, level and target.
    let json_dir = dir.path().join("json");
    std::fs::create_dir(&json_dir).unwrap();
    let json = Emulator::start(
        &scenario("reload.toml"),
        SPEED,
        &["--log-format", "json"],
        &json_dir,
    );
    let log = json.process.log();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "Emulator listening.")
        .unwrap_or_else(|| panic!("no flat JSON line with the message: {log}"));
    assert_eq!(line["addr"], json.addr.to_string(), "{line}");
    assert_eq!(line["scenario"], "reload", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line.get("fields").is_none() && line["timestamp"].is_string(),
        "{line}"
    );
}

#[test]
fn an_invalid_rust_log_is_a_configuration_error_naming_the_directive() {
    let config = common::workspace().join("config/msf-cpu.toml");
    let run = |rust_log: &str| {
        let out = Command::new(common::BIN)
            .args(["validate"])
            .arg(&config)
            .env("RUST_LOG", rust_log)
            .env_remove("FLINKSCALE_CONFIG")
            .output()
            .expect("the flinkscale binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run("info,flinkscale=loud");
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: RUST_LOG: invalid directive \"flinkscale=loud\": "),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    for fine in ["", "warn,flinkscale=debug"] {
        let (code, stdout, stderr) = run(fine);
        assert_eq!(code, 0, "RUST_LOG={fine:?}: {stdout}{stderr}");
    }
}

/// What bash's programmable completion offers for the last word of `words`
/// (`flinkscale ...`), with the script `flinkscale completions bash` prints
/// loaded, as the shell does when the user presses Tab.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source '{script}'
complete -p flinkscale >/dev/null || exit 3
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
function=$(complete -p flinkscale | sed -E 's/.*-F ([^ ]+).*/\1/')
"$function" flinkscale "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_their_options_from_the_generated_script() {
    let dir = tempfile::tempdir().unwrap();
    let generate = |shell: &str| {
        let out = Command::new(common::BIN)
            .args(["completions", shell])
            .output()
            .expect("the flinkscale binary runs");
        assert!(out.status.success(), "{shell}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let script = dir.path().join("flinkscale.bash");
    std::fs::write(&script, generate("bash")).unwrap();
    assert_eq!(
        bash_completes(&script, &["flinkscale", "val"]),
        ["validate"]
    );
    assert_eq!(
        bash_completes(&script, &["flinkscale", "iam", "--acc"]),
        ["--account"]
    );
    let validate = bash_completes(&script, &["flinkscale", "validate", "--"]);
    for option in ["--config", "--environment", "--log-format"] {
        assert!(validate.iter().any(|o| o == option), "{validate:?}");
    }
    // zsh and fish get their own scripts for the same commands.
    let zsh = generate("zsh");
    assert!(
        zsh.starts_with("#compdef flinkscale") && zsh.contains("validate"),
        "{zsh}"
    );
    let fish = generate("fish");
    assert!(
        fish.contains("complete -c flinkscale") && fish.contains("validate"),
        "{fish}"
    );
}
