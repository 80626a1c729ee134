//! flinkscale and the CloudWatch alarms an operator already has, against
//! `flinkscale emulate` (whose alarms really evaluate) with the real AWS
//! SDK on both sides: alarms are created with PutMetricAlarm through the
//! SDK, and the binary reads them with DescribeAlarms.
//!
//! - `import alarms` writes the metrics and alarms of the alarms that watch
//!   an application, and the result passes `validate`.
//! - An alarm with `source = "cloudwatch"` takes its state from the
//!   CloudWatch alarm: an agent whose `step` policy watches one scales out
//!   when CloudWatch (the emulator's evaluator) puts it in ALARM, reading
//!   the states of all such alarms in one DescribeAlarms per evaluation.
//! - `alarms sync` creates CloudWatch alarms that mirror the local ones
//!   (read back through the SDK), updates one whose settings changed, and
//!   changes nothing on a second run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, StateValue, Statistic};
use common::{BIN, Emulator, aws_env, calls_of, scenario, start_agent, wait_until};
use serde_json::Value;

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`.
const APP: &str = "e2e-app";

/// A CloudWatch client aimed at the emulator, as the tests' own SDK.
async fn cloudwatch(emulator: &Emulator) -> aws_sdk_cloudwatch::Client {
    let config = flinkscale::aws::config_loader(Some("us-east-1"))
        .endpoint_url(&emulator.endpoint)
        .test_credentials()
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&config)
}

/// `flinkscale ARGS` against the emulator, in `dir`: (exit code, stdout,
/// stderr).
fn flinkscale(emulator: &Emulator, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir).env_remove("RUST_LOG");
    aws_env(&mut command, &emulator.endpoint, dir);
    let out = command.output().expect("the flinkscale binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn application(app: &str) -> Dimension {
    Dimension::builder().name("Application").value(app).build()
}

/// One of the reference design's alarms on containerCPUUtilization.
#[allow(clippy::too_many_arguments)]
async fn put_cpu_alarm(
    cw: &aws_sdk_cloudwatch::Client,
    name: &str,
    app: &str,
    comparison: ComparisonOperator,
    threshold: f64,
    n: i32,
    m: i32,
    treat_missing: Option<&str>,
) {
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/KinesisAnalytics")
        .metric_name("containerCPUUtilization")
        .dimensions(application(app))
        .statistic(Statistic::Maximum)
        .period(60)
        .evaluation_periods(n)
        .datapoints_to_alarm(m)
        .threshold(threshold)
        .comparison_operator(comparison)
        .set_treat_missing_data(treat_missing.map(str::to_owned))
        .send()
        .await
        .expect("PutMetricAlarm");
}

/// How many `[[header]]` lines `text` has.
fn tables(text: &str, header: &str) -> usize {
    text.lines().filter(|l| *l == header).count()
}

fn validate(emulator: &Emulator, dir: &Path, file: &Path) {
    let (code, stdout, stderr) = flinkscale(emulator, dir, &["validate", &file.to_string_lossy()]);
    assert_eq!(
        code,
        0,
        "{}\n{stdout}{stderr}",
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

#[tokio::test]
async fn import_alarms_writes_the_applications_alarms_as_local_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let emu = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    let cw = cloudwatch(&emu).await;
    // The reference design's pair, and an alarm of another application.
    put_cpu_alarm(
        &cw,
        &format!("ScaleOutAlarm-{APP}"),
        APP,
        ComparisonOperator::GreaterThanThreshold,
        80.0,
        5,
        4,
        None,
    )
    .await;
    put_cpu_alarm(
        &cw,
        &format!("ScaleInAlarm-{APP}"),
        APP,
        ComparisonOperator::LessThanOrEqualToThreshold,
        20.0,
        5,
        5,
        Some("notBreaching"),
    )
    .await;
    put_cpu_alarm(
        &cw,
        "other-app-cpu-high",
        "other-app",
        ComparisonOperator::GreaterThanThreshold,
        90.0,
        3,
        3,
        None,
    )
    .await;

    let out = dir.join("imported.toml");
    let (code, stdout, stderr) = flinkscale(
        &emu,
        dir,
        &[
            "import",
            "alarms",
            "--application",
            APP,
            "--output",
            &out.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    validate(&emu, dir, &out);
    let text = std::fs::read_to_string(&out).unwrap();
    // One metric for both alarms (the same series), the two alarms with
    // CloudWatch's settings, and the step policy on the pair.
    assert_eq!(tables(&text, "[[application.metric]]"), 1, "{text}");
    assert_eq!(tables(&text, "[[application.alarm]]"), 2, "{text}");
    for expected in [
        "name = \"e2e-app\"",
        "namespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\nstatistic = \"Maximum\"\nperiod_secs = 60",
        "Application = \"e2e-app\"",
        "# The CloudWatch alarm \"ScaleOutAlarm-e2e-app\".\nid = \"scale-out\"\nmetric = \"container_cpu_utilization\"\ncomparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 5\ndatapoints_to_alarm = 4\ntreat_missing_data = \"missing\"",
        "# The CloudWatch alarm \"ScaleInAlarm-e2e-app\".\nid = \"scale-in\"\nmetric = \"container_cpu_utilization\"\ncomparison = \"LessThanOrEqualToThreshold\"\nthreshold = 20.0\nevaluation_periods = 5\ndatapoints_to_alarm = 5\ntreat_missing_data = \"notBreaching\"",
        "plugin = \"step\"",
        "scale_out_alarm = \"scale-out\"\nscale_in_alarm = \"scale-in\"",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("other-app"), "{text}");
    // The region the alarms were read in, for the agent to watch the same.
    assert!(
        text.contains("[agent]\n# The region the alarms were read in (DescribeAlarms).\nregion = \"us-east-1\"\n\n[[application]]"),
        "{text}"
    );

    // A third alarm on another series, and the agent's configuration: the
    // output keeps the configuration's bounds and policy.
    cw.put_metric_alarm()
        .alarm_name("e2e-app backlog")
        .namespace("AWS/KinesisAnalytics")
        .metric_name("millisBehindLatest")
        .dimensions(application(APP))
        .extended_statistic("p99")
        .period(120)
        .evaluation_periods(3)
        .datapoints_to_alarm(2)
        .threshold(60_000.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    // An alarm with a Unit judges only the data published in it, which no
    // local alarm can do: left out, saying why.
    cw.put_metric_alarm()
        .alarm_name("e2e-app cpu percent")
        .namespace("AWS/KinesisAnalytics")
        .metric_name("cpuUtilization")
        .dimensions(application(APP))
        .statistic(Statistic::Average)
        .unit(aws_sdk_cloudwatch::types::StandardUnit::Percent)
        .period(60)
        .evaluation_periods(3)
        .threshold(75.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
region = "us-east-1"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 24
grace_period_secs = 600

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "{APP}" }}
statistic = "Maximum"

[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 70.0
evaluation_periods = 1

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanThreshold"
threshold = 10.0
evaluation_periods = 1

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "add", scale_out_factor = 3, scale_in_factor = 1 }}
"#
        ),
    )
    .unwrap();
    let out = dir.join("merged.toml");
    let (code, stdout, stderr) = flinkscale(
        &emu,
        dir,
        &[
            "import",
            "alarms",
            "--application",
            APP,
            "--config",
            &config.to_string_lossy(),
            "--output",
            &out.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    validate(&emu, dir, &out);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(tables(&text, "[[application.metric]]"), 2, "{text}");
    assert_eq!(tables(&text, "[[application.alarm]]"), 3, "{text}");
    for expected in [
        "min_kpu = 2\nmax_kpu = 24",
        "grace_period_secs = 600",
        "metric_name = \"millisBehindLatest\"\nstatistic = \"p99\"\nperiod_secs = 120",
        "# The CloudWatch alarm \"e2e-app backlog\".\nid = \"e2e-app-backlog\"\nmetric = \"millis_behind_latest\"\ncomparison = \"GreaterThanOrEqualToThreshold\"\nthreshold = 60000.0\nevaluation_periods = 3\ndatapoints_to_alarm = 2",
        // The imported thresholds, not the configuration's.
        "threshold = 80.0",
        "operation = \"add\"",
        "scale_out_factor = 3",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("threshold = 70.0"), "{text}");
    assert!(
        text.contains("# Not imported: the CloudWatch alarm \"e2e-app cpu percent\": the Unit \"Percent\": CloudWatch judges only the data published in that unit"),
        "{text}"
    );
    assert!(!text.contains("cpuUtilization\""), "{text}");

    // A kept policy that names an alarm the import does not make (the
    // configuration's own `paused`, replaced by CloudWatch's alarms): the
    // agent would refuse what would be written, so nothing is.
    let kept = std::fs::read_to_string(&config).unwrap().replace(
        "scale_in_alarm = \"scale-in\"",
        "scale_in_alarm = \"paused\"",
    ) + "\n[[application.alarm]]\nid = \"paused\"\nmetric = \"cpu\"\n\
         comparison = \"LessThanThreshold\"\nthreshold = 1.0\nevaluation_periods = 1\n";
    let config_kept = dir.join("kept.toml");
    std::fs::write(&config_kept, kept).unwrap();
    validate(&emu, dir, &config_kept);
    let refused = dir.join("refused.toml");
    let (code, stdout, stderr) = flinkscale(
        &emu,
        dir,
        &[
            "import",
            "alarms",
            "--application",
            APP,
            "--config",
            &config_kept.to_string_lossy(),
            "--output",
            &refused.to_string_lossy(),
        ],
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains("policy.params.scale_in_alarm: no alarm with id \"paused\"")
            && stderr.contains("not written: `flinkscale validate` would refuse"),
        "{stderr}"
    );
    assert!(!refused.exists());

    // A kept policy named by a path relative to --config: checked from
    // where the output goes, so an output elsewhere, where the path finds
    // nothing, is refused, not written to fail at the agent's start.
    let rel = dir.join("rel");
    std::fs::create_dir_all(rel.join("plugins")).unwrap();
    std::fs::copy(
        common::plugin_dir().join("misbehave.wasm"),
        rel.join("plugins/mine.wasm"),
    )
    .unwrap();
    let config_rel = rel.join("agent.toml");
    std::fs::write(
        &config_rel,
        std::fs::read_to_string(&config).unwrap().replace(
            "plugin = \"step\"\nparams = { scale_out_alarm = \"scale-out\", scale_in_alarm = \"scale-in\", operation = \"add\", scale_out_factor = 3, scale_in_factor = 1 }",
            "plugin = \"plugins/mine.wasm\"\nparams = { mode = \"ok\" }",
        ),
    )
    .unwrap();
    validate(&emu, dir, &config_rel);
    for (output, expected) in [(rel.join("here.toml"), 0), (dir.join("elsewhere.toml"), 78)] {
        let (code, stdout, stderr) = flinkscale(
            &emu,
            dir,
            &[
                "import",
                "alarms",
                "--application",
                APP,
                "--config",
                &config_rel.to_string_lossy(),
                "--output",
                &output.to_string_lossy(),
            ],
        );
        assert_eq!(code, expected, "{}: {stdout}{stderr}", output.display());
        assert_eq!(output.exists(), expected == 0);
        if expected != 0 {
            assert!(
                stderr.contains("cannot read plugin")
                    && stderr.contains("plugins/mine.wasm: No such file")
                    && stderr.contains("relative plugin paths are read from where it is written"),
                "{stderr}"
            );
        }
    }

    // An application no alarm watches: an error naming what was looked for.
    let (code, stdout, stderr) =
        flinkscale(&emu, dir, &["import", "alarms", "--application", "nobody"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr
            .contains("no CloudWatch alarm of the 5 in the region watches application \"nobody\"")
            && stderr.contains("ScaleOutAlarm-nobody"),
        "{stderr}"
    );
}

/// The alarms' names a DescribeAlarms call asked for.
fn asked_names(call: &Value) -> Vec<String> {
    call["params"]["AlarmNames"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_scales_out_when_the_cloudwatch_alarm_its_policy_watches_fires() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // 20 model seconds per wall second: a 10 s alarm period is 200 model
    // seconds, an update 3 wall seconds.
    let emu = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    let cw = cloudwatch(&emu).await;
    // CloudWatch's alarms, evaluated by the emulator: above 75 % CPU for
    // one 10 s period asks for more, at or below 5 % for two for less.
    for (name, comparison, threshold, n) in [
        (
            "e2e-cpu-high",
            ComparisonOperator::GreaterThanThreshold,
            75.0,
            1,
        ),
        (
            "e2e-cpu-low",
            ComparisonOperator::LessThanOrEqualToThreshold,
            5.0,
            2,
        ),
    ] {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/KinesisAnalytics")
            .metric_name("containerCPUUtilization")
            .dimensions(application(APP))
            .statistic(Statistic::Average)
            .period(10)
            .evaluation_periods(n)
            .datapoints_to_alarm(n)
            .threshold(threshold)
            .comparison_operator(comparison)
            .send()
            .await
            .expect("PutMetricAlarm");
    }
    // The agent has no local alarm at all: the policy's two alarms are
    // CloudWatch's. The metric is fetched for the record only.
    let config = dir.join("agent.toml");
    let cpu = common::config::cpu_metric(APP);
    std::fs::write(
        &config,
        format!(
            r#"[agent]
state_dir = "state"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 7
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 5

[[application.metric]]
{cpu}
[[application.alarm]]
id = "scale-out"
source = "cloudwatch"
alarm_name = "e2e-cpu-high"

[[application.alarm]]
id = "scale-in"
source = "cloudwatch"
alarm_name = "e2e-cpu-low"

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2, scale_in_factor = 2 }}
"#
        ),
    )
    .unwrap();
    validate(&emu, dir, &config);
    let agent = start_agent(&emu, &config, &[], dir);
    let diag = || {
        format!(
            "{}\n{}\n{}",
            emu.call_summary(),
            agent.log_tail(60),
            emu.process.log_tail(20)
        )
    };
    let agent_describes = |calls: &[Value]| -> Vec<Value> {
        calls_of(calls, "DescribeAlarms", None)
            .into_iter()
            .filter(|c| !asked_names(c).is_empty())
            .cloned()
            .collect()
    };

    // Low load (about 24 % CPU at 2 KPU): neither alarm fires, nothing is
    // sent, and the agent asks CloudWatch for both alarms in each call.
    wait_until(
        Duration::from_secs(40),
        "three DescribeAlarms calls of the agent",
        || {
            agent.assert_running(diag);
            agent_describes(&emu.calls()).len() >= 3
        },
        diag,
    );
    let calls = emu.calls();
    assert!(
        calls_of(&calls, "UpdateApplication", None).is_empty(),
        "rescaled while no alarm fired\n{}",
        diag()
    );
    let describes = agent_describes(&calls);
    for call in &describes {
        assert_eq!(
            asked_names(call),
            ["e2e-cpu-high", "e2e-cpu-low"],
            "one call for both alarms: {call}"
        );
    }
    // One DescribeAlarms per evaluation, not one per alarm: as many as
    // the evaluations' GetMetricData calls (first pages), give or take the
    // one in flight.
    let evaluations = calls_of(&calls, "GetMetricData", Some(APP))
        .into_iter()
        .filter(|c| c["params"].get("NextToken").is_none())
        .count();
    assert!(
        describes.len() <= evaluations + 1 && evaluations <= describes.len() + 1,
        "{} DescribeAlarms for {evaluations} evaluations\n{}",
        describes.len(),
        diag()
    );

    // The load rises to 3000 records/s: CloudWatch's alarm goes to ALARM
    // and the agent scales out.
    emu.set_load(APP, 3.0);
    wait_until(
        Duration::from_secs(60),
        "an UpdateApplication after the CloudWatch alarm fired",
        || {
            agent.assert_running(diag);
            !calls_of(&emu.calls(), "UpdateApplication", None).is_empty()
        },
        diag,
    );
    let high = cw
        .describe_alarms()
        .alarm_names("e2e-cpu-high")
        .send()
        .await
        .expect("DescribeAlarms");
    let calls = emu.calls();
    let update = calls_of(&calls, "UpdateApplication", None)[0].clone();
    assert_eq!(
        update["params"]["ApplicationConfigurationUpdate"]["FlinkApplicationConfigurationUpdate"]["ParallelismConfigurationUpdate"]
            ["ParallelismUpdate"],
        4,
        "2 KPU x 2: {update}"
    );
    // The agent saw the alarm in ALARM before it sent the update.
    let seen_alarm = calls.iter().any(|c| {
        c["operation"] == "DescribeAlarms"
            && c["seq"].as_u64() < update["seq"].as_u64()
            && !asked_names(c).is_empty()
    });
    assert!(seen_alarm, "{}", diag());
    assert!(
        high.metric_alarms()[0].state_value() == Some(&StateValue::Alarm)
            || emu.app(APP)["kpu"].as_u64() > Some(2),
        "{}",
        diag()
    );
    let log = agent.log();
    assert!(
        log.contains("`scale-out` is in ALARM"),
        "the decision names the alarm: {}",
        agent.log_tail(40)
    );

    // An alarm that disappears from CloudWatch fails the evaluation (the
    // application holds) with the alarm named, rather than reading as OK.
    cw.delete_alarms()
        .alarm_names("e2e-cpu-low")
        .send()
        .await
        .expect("DeleteAlarms");
    wait_until(
        Duration::from_secs(60),
        "the agent to report the missing alarm",
        || {
            agent.assert_running(diag);
            agent.log().contains(
                r#"the CloudWatch alarm \"e2e-cpu-low\" (source = \"cloudwatch\") does not exist"#,
            )
        },
        diag,
    );
}

/// `flinkscale alarms sync --config CONFIG [extra]`: its stdout.
fn sync(emulator: &Emulator, dir: &Path, config: &Path, extra: &[&str]) -> String {
    let mut args = vec!["alarms", "sync", "--config"];
    let config = config.to_string_lossy().into_owned();
    args.push(&config);
    args.extend(extra);
    let (code, stdout, stderr) = flinkscale(emulator, dir, &args);
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    stdout
}

fn sync_config(scale_out_threshold: &str) -> String {
    format!(
        r#"[[application]]
name = "{APP}"

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "{APP}" }}
statistic = "Maximum"
period_secs = 60

[[application.metric]]
id = "lag"
namespace = "AWS/KinesisAnalytics"
metric_name = "millisBehindLatest"
dimensions = {{ Application = "{APP}" }}
statistic = "p99"
period_secs = 120

[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = {scale_out_threshold}
evaluation_periods = 5
datapoints_to_alarm = 4

[[application.alarm]]
id = "scale-in"
metric = "lag"
comparison = "LessThanOrEqualToThreshold"
threshold = 1000.0
evaluation_periods = 3
treat_missing_data = "notBreaching"

[[application.alarm]]
id = "theirs"
source = "cloudwatch"
alarm_name = "someone-elses-alarm"

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in" }}
"#
    )
}

#[tokio::test]
async fn alarms_sync_mirrors_the_local_alarms_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let emu = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    let cw = cloudwatch(&emu).await;
    let config = dir.join("agent.toml");
    std::fs::write(&config, sync_config("80.0")).unwrap();
    let puts = || calls_of(&emu.calls(), "PutMetricAlarm", None).len();

    // A dry run says what it would do and does nothing.
    let out = sync(&emu, dir, &config, &["--dry-run"]);
    assert!(
        out.contains("would create flinkscale-e2e-app-scale-out: AWS/KinesisAnalytics containerCPUUtilization Maximum {Application=e2e-app} GreaterThanThreshold 80 for 4 of 5 x 60 s")
            && out.contains("would create flinkscale-e2e-app-scale-in:")
            && out.contains("not mirrored: application \"e2e-app\" alarm \"theirs\": it already is a CloudWatch alarm")
            && out.contains("2 to create, 0 to update, 0 unchanged (dry run: nothing changed)"),
        "{out}"
    );
    assert_eq!(puts(), 0);
    let none = cw.describe_alarms().send().await.expect("DescribeAlarms");
    assert!(none.metric_alarms().is_empty());

    let out = sync(&emu, dir, &config, &[]);
    assert!(
        out.contains("created flinkscale-e2e-app-scale-out:")
            && out.contains("created flinkscale-e2e-app-scale-in:")
            && out.contains("2 created, 0 updated, 0 unchanged"),
        "{out}"
    );
    // Read back through the SDK: the local alarms' settings.
    let alarms = cw.describe_alarms().send().await.expect("DescribeAlarms");
    let by_name = |name: &str| {
        alarms
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .unwrap_or_else(|| panic!("no alarm {name}: {alarms:?}"))
            .clone()
    };
    let out_alarm = by_name("flinkscale-e2e-app-scale-out");
    assert_eq!(out_alarm.namespace(), Some("AWS/KinesisAnalytics"));
    assert_eq!(out_alarm.metric_name(), Some("containerCPUUtilization"));
    assert_eq!(out_alarm.dimensions(), [application(APP)]);
    assert_eq!(out_alarm.statistic(), Some(&Statistic::Maximum));
    assert_eq!(out_alarm.period(), Some(60));
    assert_eq!(
        out_alarm.comparison_operator(),
        Some(&ComparisonOperator::GreaterThanThreshold)
    );
    assert_eq!(out_alarm.threshold(), Some(80.0));
    assert_eq!(out_alarm.evaluation_periods(), Some(5));
    assert_eq!(out_alarm.datapoints_to_alarm(), Some(4));
    assert_eq!(out_alarm.treat_missing_data(), Some("missing"));
    let in_alarm = by_name("flinkscale-e2e-app-scale-in");
    assert_eq!(in_alarm.metric_name(), Some("millisBehindLatest"));
    assert_eq!(in_alarm.extended_statistic(), Some("p99"));
    assert_eq!(in_alarm.statistic(), None);
    assert_eq!(in_alarm.period(), Some(120));
    assert_eq!(
        in_alarm.comparison_operator(),
        Some(&ComparisonOperator::LessThanOrEqualToThreshold)
    );
    assert_eq!(in_alarm.threshold(), Some(1000.0));
    assert_eq!(in_alarm.evaluation_periods(), Some(3));
    assert_eq!(in_alarm.datapoints_to_alarm(), Some(3));
    assert_eq!(in_alarm.treat_missing_data(), Some("notBreaching"));
    assert_eq!(alarms.metric_alarms().len(), 2, "nothing else created");

    // Idempotent: the second run writes nothing.
    let before = puts();
    assert_eq!(before, 2);
    let out = sync(&emu, dir, &config, &[]);
    assert!(
        out.contains("unchanged flinkscale-e2e-app-scale-out")
            && out.contains("unchanged flinkscale-e2e-app-scale-in")
            && out.contains("0 created, 0 updated, 2 unchanged"),
        "{out}"
    );
    assert_eq!(puts(), before, "the second run called PutMetricAlarm");

    // A changed threshold updates that alarm only, saying what changed.
    std::fs::write(&config, sync_config("90.0")).unwrap();
    let out = sync(&emu, dir, &config, &[]);
    assert!(
        out.contains("updated flinkscale-e2e-app-scale-out: threshold: 80 -> 90")
            && out.contains("unchanged flinkscale-e2e-app-scale-in")
            && out.contains("0 created, 1 updated, 1 unchanged"),
        "{out}"
    );
    assert_eq!(puts(), before + 1);
    let updated = cw
        .describe_alarms()
        .alarm_names("flinkscale-e2e-app-scale-out")
        .send()
        .await
        .expect("DescribeAlarms");
    assert_eq!(updated.metric_alarms()[0].threshold(), Some(90.0));

    // `import alarms` gives the synced alarms their ids back.
    let (code, imported, stderr) =
        flinkscale(&emu, dir, &["import", "alarms", "--application", APP]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        imported.contains(
            "# The CloudWatch alarm \"flinkscale-e2e-app-scale-out\".\nid = \"scale-out\""
        ) && imported.contains("id = \"scale-in\""),
        "{imported}"
    );
}
