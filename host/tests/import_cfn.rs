//! `flinkscale import cfn` as an operator runs it, on the reference
//! design's template (the built-in one, host/src/import/, and the earlier
//! version and the CDK app's YAML in tests/fixtures/cfn/ through
//! `--template`): every metric the
//! template offers, with both operations, imports into a configuration
//! that the real binary's `validate` accepts; wrong input is refused (exit
//! 78) with the file, the parameter and what would be valid; and the
//! imported configuration, simulated, decides exactly as the simulator's
//! `seed` preset (the reference design with the same settings).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The current template (`AutoScaleMetric`, with `Period`, `Statistic`,
/// `UpdateApplicationWaitingTime` and the custom metric): the one built
/// into the binary, used when no `--template` is given.
const V2: &str = "host/src/import/reference-template.json";
/// The earlier template (`AutoScalemetric`; period, statistic and the
/// 15 s poll fixed in the template).
const V1: &str = "tests/fixtures/cfn/managed-flink-autoscaling-v1.json";

fn flinkscale(args: &[&str]) -> (i32, String, String) {
    flinkscale_in(&repo(), args)
}

fn flinkscale_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the flinkscale binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `params` as the `aws cloudformation` parameters file, in `file`.
fn parameters_file(params: &[(&str, &str)], file: &Path) -> PathBuf {
    let list: Vec<serde_json::Value> = params
        .iter()
        .map(|(k, v)| serde_json::json!({"ParameterKey": k, "ParameterValue": v}))
        .collect();
    std::fs::write(file, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    file.to_owned()
}

/// `import cfn PARAMS.json [--template TEMPLATE] --output OUT`, the
/// parameters written as the `aws cloudformation` parameters file beside
/// `out`; the output file. `V2` is the built-in template (no `--template`).
fn import(template: &str, params: &[(&str, &str)], out: &Path) -> PathBuf {
    let file = parameters_file(params, &out.with_extension("params.json"));
    let mut args = vec![
        "import".to_owned(),
        "cfn".to_owned(),
        file.to_string_lossy().into_owned(),
    ];
    if template != V2 {
        args.push("--template".into());
        args.push(template.to_owned());
    }
    args.push("--output".into());
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = flinkscale(&refs);
    assert_eq!(code, 0, "import {params:?}: {stdout}{stderr}");
    out.to_owned()
}

fn validate(file: &Path) {
    let (code, stdout, stderr) = flinkscale(&["validate", &file.to_string_lossy()]);
    assert_eq!(
        code,
        0,
        "{}:\n{}\n{stdout}{stderr}",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    assert!(stdout.contains("valid (1 application)"), "{stdout}");
}

/// The `AllowedValues` of the metric parameter, read from the template.
fn allowed_metrics(template: &str, parameter: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(template)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["Parameters"][parameter]["AllowedValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// `key = value` lines of a configuration, comments and blank lines left
/// out, so that two imports can be compared value by value.
fn values(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split("  #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_metric_with_both_operations_imports_into_a_valid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        ("KinesisDataStreamName", "orders-stream"),
        ("AmazonMSKClusterName", "orders-cluster"),
        ("KafkaTopicName", "orders"),
        ("KafkaConsumerGroupName", "enricher"),
    ];
    let mut checked = 0;
    for (template, metric_parameter) in [(V2, "AutoScaleMetric"), (V1, "AutoScalemetric")] {
        let metrics = allowed_metrics(template, metric_parameter);
        assert!(metrics.len() >= 8, "{template}: {metrics:?}");
        for metric in &metrics {
            for operation in ["Multiply/Divide", "Add/Substract"] {
                let mut params = vec![
                    ("AmazonManagedFlinkApplicationName", "orders-enricher"),
                    (metric_parameter, metric.as_str()),
                    ("ScaleOperation", operation),
                ];
                params.extend(sources);
                if template == V2 {
                    params.push(("AutoScaleCustomMetric", "ordersPerSecond"));
                }
                let out = dir.path().join(format!("{checked}.toml"));
                import(template, &params, &out);
                validate(&out);
                let text = std::fs::read_to_string(&out).unwrap();
                let expected_name = if metric == "Custom Metric" {
                    "ordersPerSecond"
                } else {
                    metric
                };
                assert!(
                    text.contains(&format!(
                        "metric_name = \"{expected_name}\"  # parameter {}",
                        if metric == "Custom Metric" {
                            "AutoScaleCustomMetric"
                        } else {
                            metric_parameter
                        }
                    )),
                    "{metric}: {text}"
                );
                let step_operation = if operation == "Multiply/Divide" {
                    "multiply"
                } else {
                    "add"
                };
                assert!(
                    text.contains(&format!(
                        "operation = \"{step_operation}\"  # parameter ScaleOperation = \"{operation}\""
                    )),
                    "{text}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * (11 + 8), "every metric of both templates");
}

/// A CDK template's file, the source parameters it needs, and lines its
/// import must have.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// The YAML templates of the design's CDK app (`generateautoscaler.sh`,
/// what upstream now recommends; restated in tests/fixtures/cfn/cdk-*.yaml
/// in the shape `cdk synth` prints): imported from the file, or from the
/// one JSON string `get-template --query TemplateBody` writes for a YAML
/// stack, with `--application-name` setting the CDK app's
/// `ApplicationName`; the output validates and says that this Lambda
/// counts KPU as flinkscale does.
#[test]
fn the_cdk_apps_yaml_templates_import_from_the_file_or_the_template_body() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [Case; 3] = [
        (
            "cdk-kda-containerCPUUtilization-Average.yaml",
            &[],
            &[
                "namespace = \"AWS/KinesisAnalytics\"  # fixed in the template",
                "metric_name = \"containerCPUUtilization\"  # fixed in the template",
                "statistic = \"Average\"  # fixed in the template",
                "Application = \"orders-v2\"  # parameter ApplicationName",
            ],
        ),
        (
            "cdk-msk-MaxOffsetLag-Maximum.yaml",
            &[
                ("MSKClusterName", "orders-cluster"),
                ("KafkaTopicName", "orders"),
                ("KafkaConsumerGroupName", "enricher"),
            ],
            &[
                "metric_name = \"MaxOffsetLag\"  # fixed in the template",
                "statistic = \"Maximum\"  # fixed in the template",
                "\"Consumer Group\" = \"enricher\"  # parameter KafkaConsumerGroupName",
            ],
        ),
        (
            "cdk-kinesisefo-SubscribeToShardEvent.MillisBehindLatest-Maximum.yaml",
            &[
                ("KinesisDataStreamName", "orders-stream"),
                ("KinesisConsumerName", "enricher"),
            ],
            &[
                "metric_name = \"SubscribeToShardEvent.MillisBehindLatest\"  # fixed in the template",
                "ConsumerName = \"enricher\"  # parameter KinesisConsumerName",
            ],
        ),
    ];
    for (file, sources, expected) in cases {
        let template = repo().join("tests/fixtures/cfn").join(file);
        let mut params = vec![
            ("ApplicationName", "orders"),
            ("ScaleOperation", "Add/Subtract"),
        ];
        params.extend(sources);
        let params = parameters_file(&params, &dir.path().join("stack.json"));
        let import = |template: &Path| {
            let (code, stdout, stderr) = flinkscale_in(
                dir.path(),
                &[
                    "import",
                    "cfn",
                    &params.to_string_lossy(),
                    "--application-name",
                    "orders-v2",
                    "--template",
                    &template.to_string_lossy(),
                ],
            );
            assert_eq!(code, 0, "{file}: {stdout}{stderr}");
            stdout
        };
        let text = import(&template);
        for line in expected.iter().chain(&[
            "name = \"orders-v2\"  # parameter ApplicationName",
            "operation = \"add\"  # parameter ScaleOperation = \"Add/Subtract\"",
            "# The reference Lambda counts KPU as flinkscale does",
            "grace_period_secs = 300  # parameter ScalingCoolingDownPeriod",
            "update_poll_secs = 60  # parameter UpdateApplicationWaitingTime",
        ]) {
            assert!(text.contains(line), "{file}: {line:?} not in\n{text}");
        }
        let out = dir.path().join("out.toml");
        std::fs::write(&out, &text).unwrap();
        validate(&out);
        // The same template as `get-template --query TemplateBody` wrote it.
        let body = dir.path().join("body.json");
        let yaml = std::fs::read_to_string(&template).unwrap();
        std::fs::write(&body, serde_json::Value::String(yaml).to_string()).unwrap();
        assert_eq!(values(&import(&body)), values(&text), "{file}");
    }
}

#[test]
fn the_template_defaults_import_as_the_template_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(
        V2,
        &[
            ("AmazonManagedFlinkApplicationName", "app"),
            ("ScaleOperation", "Multiply/Divide"),
        ],
        &dir.path().join("defaults.toml"),
    );
    validate(&out);
    let text = std::fs::read_to_string(&out).unwrap();
    for expected in [
        "min_kpu = 1  # parameter MinKPU",
        "max_kpu = 10  # parameter MaxKPU",
        "update_poll_secs = 15  # parameter UpdateApplicationWaitingTime",
        "grace_period_secs = 200  # parameter ScalingGracingPeriod",
        "namespace = \"AWS/KinesisAnalytics\"  # fixed in the template",
        "metric_name = \"millisBehindLatest\"  # parameter AutoScaleMetric",
        "statistic = \"Average\"  # parameter Statistic",
        "period_secs = 60  # parameter Period",
        "Application = \"app\"  # parameter AmazonManagedFlinkApplicationName",
        "comparison = \"GreaterThanThreshold\"  # fixed in the template",
        "threshold = 70.0  # parameter ScaleOutThreshold",
        "comparison = \"LessThanOrEqualToThreshold\"  # fixed in the template",
        "threshold = 0.0  # parameter ScaleInThreshold",
        "evaluation_periods = 5  # parameter ScalingEvaluationperiod",
        "datapoints_to_alarm = 5  # parameter DataPointstoTriggerAlarm",
        "scale_out_factor = 3  # parameter ScaleOutFactor",
        "scale_in_factor = 2  # parameter ScaleInFactor",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }

    // The earlier template fixes the poll, the period and the statistic, and
    // its flow alarm also has the Flow and Id dimensions.
    let out = import(
        V1,
        &[
            ("AmazonManagedFlinkApplicationName", "app"),
            ("ScaleOperation", "Multiply/Divide"),
            ("KinesisDataStreamName", "s"),
        ],
        &dir.path().join("v1.toml"),
    );
    validate(&out);
    let text = std::fs::read_to_string(&out).unwrap();
    for expected in [
        "update_poll_secs = 15  # fixed in the template",
        "statistic = \"Average\"  # fixed in the template",
        "period_secs = 60  # fixed in the template",
        "Flow = \"Input\"  # fixed in the template",
        "Id = \"s\"  # parameter KinesisDataStreamName",
        "metric_name = \"millisBehindLatest\"  # parameter AutoScalemetric",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn a_parameters_file_is_read_and_parameter_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("params.json");
    std::fs::write(
        &list,
        r#"[
  {"ParameterKey": "AmazonManagedFlinkApplicationName", "ParameterValue": "orders"},
  {"ParameterKey": "AutoScaleMetric", "ParameterValue": "containerCPUUtilization"},
  {"ParameterKey": "ScaleOperation", "ParameterValue": "Add/Substract"},
  {"ParameterKey": "MaxKPU", "ParameterValue": "24"}
]"#,
    )
    .unwrap();
    // describe-stacks output names the same values under Stacks[0].Parameters.
    let described = dir.path().join("described.json");
    std::fs::write(
        &described,
        format!(
            r#"{{"Stacks": [{{"StackName": "autoscaler", "Parameters": {}}}]}}"#,
            std::fs::read_to_string(&list).unwrap()
        ),
    )
    .unwrap();
    for file in [&list, &described] {
        let (code, stdout, stderr) = flinkscale(&[
            "import",
            "cfn",
            &file.to_string_lossy(),
            "--parameter",
            "MaxKPU=48",
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("max_kpu = 48  # parameter MaxKPU"),
            "{stdout}"
        );
        assert!(stdout.contains("name = \"orders\""), "{stdout}");
        assert!(
            stdout.contains("metric_name = \"containerCPUUtilization\""),
            "{stdout}"
        );
        assert!(stdout.contains("operation = \"add\""), "{stdout}");
    }
}

/// `-o` naming the parameters file (or the template) is refused: the
/// configuration replaced the stack's parameters, exit 0.
#[test]
fn the_output_may_not_be_an_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("params.json");
    let text =
        r#"[{"ParameterKey": "AmazonManagedFlinkApplicationName", "ParameterValue": "orders"}]"#;
    std::fs::write(&params, text).unwrap();
    let (code, _, stderr) = flinkscale(&[
        "import",
        "cfn",
        &params.to_string_lossy(),
        "-o",
        &dir.path().join(".").join("params.json").to_string_lossy(),
    ]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("is the input file") && stderr.contains("params.json"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&params).unwrap(), text);
    // Nor under another name (a hard link).
    let linked = dir.path().join("linked.toml");
    std::fs::hard_link(&params, &linked).unwrap();
    let (code, _, stderr) = flinkscale(&[
        "import",
        "cfn",
        &params.to_string_lossy(),
        "-o",
        &linked.to_string_lossy(),
    ]);
    assert_eq!(code, 78, "{stderr}");
    assert_eq!(std::fs::read_to_string(&params).unwrap(), text);
    // Nor the agent's configuration `import alarms` reads, before any
    // AWS call.
    let config = dir.path().join("agent.toml");
    let agent = "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"hold\"\n";
    std::fs::write(&config, agent).unwrap();
    let config = config.to_string_lossy();
    let (code, _, stderr) = flinkscale_in(
        dir.path(),
        &[
            "import",
            "alarms",
            "--application",
            "orders",
            "--config",
            &config,
            "--output",
            "agent.toml",
        ],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("is the input file"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("agent.toml")).unwrap(),
        agent
    );
}

#[test]
fn the_built_in_template_needs_no_file_and_the_application_name_overrides() {
    // Run outside the source tree: the template is in the binary.
    let dir = tempfile::tempdir().unwrap();
    let params = parameters_file(
        &[
            ("AmazonManagedFlinkApplicationName", "orders"),
            ("ScaleOperation", "Multiply/Divide"),
        ],
        &dir.path().join("stack.json"),
    );
    let params = params.to_string_lossy().into_owned();
    let (code, built_in, stderr) = flinkscale_in(
        dir.path(),
        &["import", "cfn", &params, "--application-name", "orders-v2"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        built_in.contains("name = \"orders-v2\"  # parameter AmazonManagedFlinkApplicationName")
            && built_in.contains("Application = \"orders-v2\"")
            && !built_in.contains("\"orders\""),
        "{built_in}"
    );
    assert!(
        built_in.contains("template \"built-in managed-flink-autoscaling.json\""),
        "{built_in}"
    );
    // Which template was assumed is said where it is seen, not only in the
    // output's header.
    assert!(
        stderr.starts_with("note: reading the stack's parameters with the built-in template")
            && stderr.contains("pass it with --template FILE"),
        "{stderr}"
    );
    // --template with the same template's file decides the same values.
    let template = repo().join(V2).to_string_lossy().into_owned();
    let (code, from_file, stderr) = flinkscale_in(
        dir.path(),
        &[
            "import",
            "cfn",
            &params,
            "--application-name",
            "orders-v2",
            "--template",
            &template,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(values(&from_file), values(&built_in));
    assert!(!stderr.contains("note:"), "{stderr}");
}

#[test]
fn wrong_input_names_the_file_the_parameter_and_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_template = dir.path().join("stack.json");
    std::fs::write(
        &not_a_template,
        r#"{"Parameters": {"MaxKPU": {"Type": "Number"}}, "Resources": {}}"#,
    )
    .unwrap();
    let shown = not_a_template.to_string_lossy().into_owned();
    // No values at all: every parameter takes the template's default.
    let empty = parameters_file(&[], &dir.path().join("empty.json"));
    let empty = empty.to_string_lossy().into_owned();
    let missing = dir.path().join("absent.json");
    let missing = missing.to_string_lossy().into_owned();
    let not_yaml = dir.path().join("broken.yaml");
    std::fs::write(&not_yaml, "Parameters:\n  A: [1, 2\nResources: {}\n").unwrap();
    let not_yaml = not_yaml.to_string_lossy().into_owned();
    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{\n}}\n").unwrap();
    let not_json = not_json.to_string_lossy().into_owned();
    let yaml_error =
        format!("{not_yaml}:3:10: not a template in YAML: did not find expected ',' or ']', while");
    let json_error = format!("{not_json}:2:2: not JSON");
    let twice = parameters_file(
        &[
            ("AmazonManagedFlinkApplicationName", "app"),
            ("ScaleOperation", "Multiply/Divide"),
            ("AmazonManagedFlinkApplicationName", "other"),
        ],
        &dir.path().join("twice.json"),
    );
    let twice = twice.to_string_lossy().into_owned();
    const BUILT_IN: &str = "built-in managed-flink-autoscaling.json";
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![&empty, "--parameter", "AutoScaleMetric=cpu"],
            vec![
                "--parameter: parameter \"AutoScaleMetric\": \"cpu\" is not one of its AllowedValues in built-in managed-flink-autoscaling.json",
                "\"containerCPUUtilization\"",
                "\"IncomingRecords\"",
            ],
        ),
        (
            vec![&empty, "--parameter", "MaxKpu=5"],
            vec![
                BUILT_IN,
                "declares no such parameter",
                "MaxKPU",
                "get-template --stack-name NAME --query TemplateBody",
            ],
        ),
        (
            vec![&empty, "--parameter", "MaxKPU=many"],
            vec!["parameter \"MaxKPU\": \"many\" is not a number"],
        ),
        (
            vec![&empty, "--parameter", "ScaleOperation=Multiply/Divide"],
            vec![
                BUILT_IN,
                "parameter \"AmazonManagedFlinkApplicationName\" has no Default",
                "--parameter AmazonManagedFlinkApplicationName=VALUE",
            ],
        ),
        (
            vec![&empty, "--application-name", "app"],
            vec![
                BUILT_IN,
                "parameter \"ScaleOperation\" has no Default",
                "--parameter ScaleOperation=VALUE (allowed: \"Multiply/Divide\", \"Add/Substract\")",
            ],
        ),
        (
            vec![
                &empty,
                "--application-name",
                "app",
                "--parameter",
                "AutoScaleMetric=MaxOffsetLag",
                "--parameter",
                "ScaleOperation=Multiply/Divide",
            ],
            vec![
                "parameter \"AmazonMSKClusterName\" has no Default",
                "Dimensions",
            ],
        ),
        (
            vec![
                &empty,
                "--application-name",
                "app",
                "--parameter",
                "ScaleOperation=Multiply/Divide",
                "--parameter",
                "ScaleOutFactor=1",
            ],
            vec![
                "parameter \"ScaleOutFactor\" = \"1\"",
                "never changes the capacity",
                "valid: a whole number >= 2",
            ],
        ),
        (
            vec![
                &empty,
                "--application-name",
                "app",
                "--parameter",
                "ScaleOperation=Multiply/Divide",
                "--parameter",
                "Period=5",
            ],
            vec![
                "parameter \"Period\" = \"5\"",
                "valid: 10, 20, 30 or a multiple of 60",
            ],
        ),
        (
            vec![&empty, "--template", &shown],
            vec![
                &shown,
                "not the reference design's autoscaling template",
                "expected",
            ],
        ),
        (
            vec![&empty, "--template", &not_yaml],
            vec![&yaml_error, "CloudFormation template in JSON or YAML"],
        ),
        (
            vec![&empty, "--template", &not_json],
            vec![&json_error, "CloudFormation template in JSON or YAML"],
        ),
        (
            vec!["README.md"],
            vec![
                "README.md:1:1: not JSON",
                "the `aws cloudformation` parameters file",
            ],
        ),
        (vec![&missing], vec![&missing, "cannot read it"]),
        (
            vec![&twice],
            vec![
                "twice.json:3: parameter \"AmazonManagedFlinkApplicationName\" is given twice, in entries 1 and 3",
            ],
        ),
        (
            vec![
                &empty,
                "--application-name",
                "app",
                "--parameter",
                "ScaleOperation=Multiply/Divide",
                "--parameter",
                "ScalingGracingPeriod=-5",
            ],
            vec![
                // Where the value was given, the place to change it.
                "--parameter: parameter \"ScalingGracingPeriod\" = \"-5\"",
                "Wait state",
                "valid: a whole number of seconds, 0 to 4294967295",
            ],
        ),
        (
            vec![
                &empty,
                "--application-name",
                "app",
                "--parameter",
                "ScaleOperation=Multiply/Divide",
                "--parameter",
                "MaxKPU=4294967296",
            ],
            vec![
                "parameter \"MaxKPU\" = \"4294967296\"",
                "valid: a whole number from 1 to 4294967295",
            ],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["import", "cfn"];
        all.extend(&args);
        let (code, stdout, stderr) = flinkscale(&all);
        assert_eq!(code, 78, "{args:?} (EX_CONFIG): {stdout}{stderr}");
        assert!(
            stdout.is_empty(),
            "{args:?} printed a configuration: {stdout}"
        );
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: {e:?} not in {stderr}");
        }
    }
    // A malformed flag is a command line refused before anything runs:
    // exit 2, as for every wrong flag.
    let (code, stdout, stderr) = flinkscale(&["import", "cfn", &empty, "--parameter", "nothing"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("invalid value 'nothing' for '--parameter <KEY=VALUE>': not KEY=VALUE"),
        "{stderr}"
    );
    // So is an --output that is a folder (it failed after the import,
    // with exit 1).
    let folder = std::env::temp_dir().to_string_lossy().into_owned();
    let (code, stdout, stderr) = flinkscale(&["import", "cfn", &empty, "--output", &folder]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{folder} is a folder (valid: the file to write")),
        "{stderr}"
    );
}

/// The simulator's text output for the scenario, without the line naming
/// the policy (a preset name or the configuration file) and the speed.
fn simulated(scenario: &str, how: &[&str]) -> String {
    let mut args = vec!["simulate", "--scenario", scenario, "--decisions"];
    args.extend(how);
    let (code, stdout, stderr) = flinkscale(&args);
    assert_eq!(code, 0, "{how:?}: {stdout}{stderr}");
    stdout
        .lines()
        .filter(|l| !l.starts_with("scenario ") && !l.contains("simulated seconds per wall second"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `seed` preset's settings, as the stack's parameters: CPU Maximum
/// over 60 s, > 80 and <= 20 for 5 of 5, x2 / 2, the scenario's bounds
/// (1..=32), 60 s poll, 300 s cooling down.
const SEED_SETTINGS: &[(&str, &str)] = &[
    ("AmazonManagedFlinkApplicationName", "app"),
    ("AutoScaleMetric", "containerCPUUtilization"),
    ("Statistic", "Maximum"),
    ("Period", "60"),
    ("MinKPU", "1"),
    ("MaxKPU", "32"),
    ("ScaleOutThreshold", "80"),
    ("ScaleInThreshold", "20"),
    ("ScalingEvaluationperiod", "5"),
    ("DataPointstoTriggerAlarm", "5"),
    ("ScaleOperation", "Multiply/Divide"),
    ("ScaleOutFactor", "2"),
    ("ScaleInFactor", "2"),
    ("ScalingGracingPeriod", "300"),
    ("UpdateApplicationWaitingTime", "60"),
];

/// `config` with the promise the simulator's presets make for every
/// metric (`min_publication_delay_secs = 60`: the model publishes a period
/// 60 s after it ends), written next to it. An imported stack makes no
/// such promise, since CloudWatch does not; without it lazy polling skips
/// fewer evaluations, which changes the calls and the evaluations listed,
/// never a decision to rescale.
fn with_the_models_promise(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let promised = text.replace(
        "[[application.metric]]\n",
        "[[application.metric]]\nmin_publication_delay_secs = 60\n",
    );
    assert_ne!(promised, text, "the configuration has a metric table");
    let out = config.with_extension("promised.toml");
    std::fs::write(&out, promised).unwrap();
    out
}

/// The scores and the decisions to rescale of `simulated`'s output: what
/// lazy polling must not change.
fn scores_and_rescales(output: &str) -> String {
    let scores = &output[..output.find("agent's own AWS calls").unwrap_or(output.len())];
    let rescales = output
        .find("\nrescales\n")
        .map(|start| &output[start..output.find("\nevaluations").unwrap_or(output.len())])
        .unwrap_or("");
    format!("{scores}{rescales}")
}

#[test]
fn an_imported_stack_decides_as_the_seed_preset_decision_for_decision() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(V2, SEED_SETTINGS, &dir.path().join("seed.toml"));
    let config = out.to_string_lossy().into_owned();
    let promised = with_the_models_promise(&out).to_string_lossy().into_owned();
    for scenario in ["tests/scenarios/step.toml", "tests/scenarios/spike.toml"] {
        let imported = simulated(scenario, &["--config", &config]);
        let seed = simulated(scenario, &["--policy", "seed"]);
        assert!(
            imported.contains("scale to") && imported.contains("`scale-out` is in ALARM"),
            "{scenario}: the run should rescale, or it proves little:\n{imported}"
        );
        // With the preset's promise, everything is the same: scores,
        // rescales, every evaluation and every call.
        assert_eq!(
            simulated(scenario, &["--config", &promised]),
            seed,
            "{scenario}"
        );
        // Without it, the scores and the rescales are.
        assert_eq!(
            scores_and_rescales(&imported),
            scores_and_rescales(&seed),
            "{scenario}"
        );
    }
}

#[test]
fn the_earlier_template_differs_from_seed_only_by_its_fixed_statistic_and_poll() {
    // The earlier template fixes Statistic = Average and a 15 s poll, where
    // `seed` (like the current template's Statistic and
    // UpdateApplicationWaitingTime parameters) uses Maximum and 60 s. Those
    // two values are the whole difference: with them set as `seed` has
    // them, the decisions are the same.
    let dir = tempfile::tempdir().unwrap();
    let v1_settings: Vec<(&str, &str)> = SEED_SETTINGS
        .iter()
        .filter(|(k, _)| !matches!(*k, "Statistic" | "Period" | "UpdateApplicationWaitingTime"))
        .map(|(k, v)| {
            (
                if *k == "AutoScaleMetric" {
                    "AutoScalemetric"
                } else {
                    *k
                },
                *v,
            )
        })
        .collect();
    let v1 =
        std::fs::read_to_string(import(V1, &v1_settings, &dir.path().join("v1.toml"))).unwrap();
    let v2 =
        std::fs::read_to_string(import(V2, SEED_SETTINGS, &dir.path().join("v2.toml"))).unwrap();
    let (v1_values, v2_values) = (values(&v1), values(&v2));
    let differing: Vec<(&String, &String)> = v1_values
        .iter()
        .zip(&v2_values)
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(v1_values.len(), v2_values.len());
    assert_eq!(
        differing,
        vec![
            (
                &"update_poll_secs = 15".to_owned(),
                &"update_poll_secs = 60".to_owned()
            ),
            (
                &"statistic = \"Average\"".to_owned(),
                &"statistic = \"Maximum\"".to_owned()
            ),
        ]
    );
    let aligned = v1
        .replace("update_poll_secs = 15", "update_poll_secs = 60")
        .replace("statistic = \"Average\"", "statistic = \"Maximum\"");
    let aligned_file = dir.path().join("v1-aligned.toml");
    std::fs::write(&aligned_file, aligned).unwrap();
    let scenario = "tests/scenarios/step.toml";
    let promised = with_the_models_promise(&aligned_file);
    assert_eq!(
        simulated(scenario, &["--config", &promised.to_string_lossy()]),
        simulated(scenario, &["--policy", "seed"])
    );
}

#[test]
fn the_template_defaults_scale_by_the_lambda_arithmetic() {
    // With its own defaults (millisBehindLatest Average > 70 / <= 0, x3 / 2,
    // 1..=10 KPU) the template is not `seed`: every rescale must still be
    // the Lambda's arithmetic on those numbers.
    let dir = tempfile::tempdir().unwrap();
    let out = import(
        V2,
        &[
            ("AmazonManagedFlinkApplicationName", "app"),
            ("ScaleOperation", "Multiply/Divide"),
        ],
        &dir.path().join("defaults.toml"),
    );
    let text = simulated(
        "tests/scenarios/step.toml",
        &["--config", &out.to_string_lossy()],
    );
    let rescales: Vec<(u32, u32)> = text
        .split("\nrescales\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let arrow = words.iter().position(|w| *w == "->")?;
            Some((
                words[arrow - 1].parse().ok()?,
                words[arrow + 1].parse().ok()?,
            ))
        })
        .collect();
    assert!(rescales.len() >= 2, "{text}");
    let (mut outs, mut ins) = (0, 0);
    for (from, to) in rescales {
        if to > from {
            assert_eq!(to, (from * 3).min(10), "scale out {from} -> {to}");
            outs += 1;
        } else {
            assert_eq!(to, (from / 2).max(1), "scale in {from} -> {to}");
            ins += 1;
        }
    }
    assert!(outs >= 1 && ins >= 1, "{text}");
}
