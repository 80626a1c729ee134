//! The `flinkscale` binary as a user runs it: `validate` on the shipped
//! examples and on a broken file, and `--help`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn flinkscale(args: &[&str]) -> (i32, String, String) {
    flinkscale_in(&repo(), args)
}

/// The binary run with `args` in `dir`: (exit code, stdout, stderr).
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

/// The binary run with `args` in `dir` with AWS's region and (fake)
/// credentials set, and no instance metadata to look for: (exit code,
/// stderr).
fn flinkscale_with_aws(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(args)
        .current_dir(dir)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("FLINKSCALE_CONFIG")
        .output()
        .expect("flinkscale runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An empty folder of the test's own, named after it and removed when the
/// test ends, passed or failed.
struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A new [`Scratch`] folder.
fn scratch(name: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("flinkscale-cli-{name}-"))
            .tempdir()
            .expect("temp dir"),
    )
}

/// `flinkscale example` lists every configuration of `config/` (and the
/// self-managed Flink one of `deploy/flink-ec2/`), prints each exactly as
/// the file is, run from an empty folder (the binary carries them), and
/// each printed one validates where it was written; an unknown name exits
/// 2 naming the valid ones.
#[test]
fn every_example_is_in_the_binary_as_its_file_is_and_validates() {
    let dir = scratch("example");
    let run = |args: &[&str]| flinkscale_in(&dir, args);
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(repo().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.push((
        "flink-ec2".to_owned(),
        repo().join("deploy/flink-ec2/config.toml"),
    ));
    files.sort();

    let (code, listed, stderr) = run(&["example"]);
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = listed
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "{listed}"
    );
    for (name, path) in &files {
        let (code, text, stderr) = run(&["example", name]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(text, std::fs::read_to_string(path).unwrap(), "{name}");
        let written = dir.join(format!("{name}.toml"));
        std::fs::write(&written, &text).unwrap();
        let (code, stdout, stderr) = run(&["validate", &written.to_string_lossy()]);
        assert_eq!(code, 0, "{name} as written by `example`: {stdout}{stderr}");
    }

    let (code, _, stderr) = run(&["example", "nope"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no example named \"nope\"; valid: msf-cpu, msk-lag"),
        "{stderr}"
    );
}

#[test]
fn every_shipped_example_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let shown = path.to_string_lossy().into_owned();
            let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
            assert_eq!(code, 0, "{shown}: {stdout}{stderr}");
            assert!(stdout.contains("valid"), "{stdout}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "expected the six examples, found {checked}");
}

/// A period under a minute on an AWS service's metric is valid (the
/// emulator and a high-resolution metric of one's own have them) but
/// would find most periods empty on AWS: `validate` warns, at the line,
/// and still exits 0; the same period on a custom namespace is quiet.
#[test]
fn a_sub_minute_period_on_an_aws_metric_is_warned_about() {
    let shown = repo()
        .join("config/demo.toml")
        .to_string_lossy()
        .into_owned();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "warning: {shown}:27:15: application \"demo-app\".metric \"cpu\".period_secs: a 10 s \
             period on AWS/KinesisAnalytics, which AWS publishes once a minute: on AWS most \
             periods would have no datapoint, and the alarms would see them missing (use 60 or \
             a multiple of it; periods under a minute are for a metric of your own published at \
             high resolution, or for the emulator (the demo))"
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom.toml");
    let text = std::fs::read_to_string(repo().join("config/demo.toml"))
        .unwrap()
        .replace(
            "namespace = \"AWS/KinesisAnalytics\"",
            "namespace = \"Mine/Pipeline\"",
        );
    std::fs::write(&custom, text).unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &custom.to_string_lossy()]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
}

/// A publication promise on an AWS metric read at a period longer than a
/// minute cannot hold (each minute's samples come about a minute after
/// it, within the period): `validate` warns at the promise and exits 0;
/// the same promise at 60 s is quiet.
#[test]
fn a_publication_promise_on_a_long_aws_period_is_warned_about() {
    let dir = scratch("promise-period");
    let (code, example, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    let minute = example.replacen(
        "period_secs = 60\n",
        "period_secs = 60\nmin_publication_delay_secs = 60\n",
        1,
    );
    assert_ne!(minute, example, "the example has a 60 s metric");
    std::fs::write(dir.join("minute.toml"), &minute).expect("written");
    let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", "minute.toml"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    std::fs::write(
        dir.join("five.toml"),
        minute.replacen("period_secs = 60\n", "period_secs = 300\n", 1),
    )
    .expect("written");
    let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", "five.toml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let line = 1 + minute
        .lines()
        .position(|l| l.starts_with("min_publication_delay_secs"))
        .expect("the promise's line");
    assert!(
        stderr.starts_with(&format!(
            "warning: five.toml:{line}:30: application \"clickstream-enricher\".metric \"cpu\".\
             min_publication_delay_secs: a promise of 60 s on a 300 s period of \
             AWS/KinesisAnalytics, which AWS publishes every minute: "
        )) && stderr.contains("(leave min_publication_delay_secs out here"),
        "{stderr}"
    );
}

#[test]
fn a_broken_file_gets_every_error_located_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"[[application]]
name = "a"
min_kpu = 5
max_kpu = 2

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
statistic = "Maximum"
period_secs = 45

[[application.alarm]]
id = "hi"
metric = "cpuu"
comparison = "GreaterThanThreshold"
threshold = 80.0
evaluation_periods = 3
datapoints_to_alarm = 4

[application.policy]
plugin = "step"
params = { scale_out_alarm = "hii", scale_in_alarm = "hi" }
"#,
    )
    .unwrap();
    let shown = file.to_string_lossy().into_owned();
    let (code, _, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stderr}");
    for expected in [
        format!("{shown}:3:11: application \"a\".min_kpu"),
        format!("{shown}:11:15: application \"a\".metric \"cpu\".period_secs"),
        format!("{shown}:15:10: application \"a\".alarm \"hi\".metric"),
        format!("{shown}:19:23: application \"a\".alarm \"hi\".datapoints_to_alarm"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    // Which params name an alarm is the plugin's to say, once loaded: the
    // plugins of an application the file's own errors are about are tried
    // once those are fixed, and the id is then located.
    let fixed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("min_kpu = 5", "min_kpu = 1")
        .replace("period_secs = 45", "period_secs = 60")
        .replace("metric = \"cpuu\"", "metric = \"cpu\"")
        .replace("datapoints_to_alarm = 4", "datapoints_to_alarm = 3");
    std::fs::write(&file, fixed).unwrap();
    let (code, _, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "{shown}:23:30: application \"a\".policy.params.scale_out_alarm: no alarm with id \
             \"hii\" in this application (valid: \"hi\")"
        )
    );
}

#[test]
fn a_missing_plugin_is_reported_with_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("config/msf-cpu.toml"))
        .unwrap()
        .replace("plugin = \"step\"", "plugin = \"stepp\"");
    // The example's plugin_dir is `plugins`, beside the configuration.
    assert!(text.contains("plugin_dir = \"plugins\""), "{text}");
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/step.wasm"), b"\0asm").unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let (code, _, stderr) = flinkscale(&["validate", &file.to_string_lossy()]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("policy.plugin"), "{stderr}");
    assert!(stderr.contains("stepp"), "{stderr}");
    assert!(
        stderr.contains("in plugin_dir: \"step\")") && stderr.contains("built-in: \"step\""),
        "lists what exists: {stderr}"
    );
}

#[test]
fn validate_environment_instantiates_the_plugin_and_checks_its_params() {
    let dir = tempfile::tempdir().unwrap();
    // An empty plugin folder: `step` is the built-in.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let text = std::fs::read_to_string(repo().join("config/msf-cpu.toml"))
        .unwrap()
        .replace("operation = \"multiply\"", "operation = \"multiplY\"");
    assert!(text.contains("plugin_dir = \"plugins\""), "{text}");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let (code, stdout, stderr) =
        flinkscale(&["validate", "--environment", &file.to_string_lossy()]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stdout.contains("step 0.1.0"), "names the plugin: {stdout}");
    assert!(
        stdout.contains("multiplY"),
        "the plugin's own message: {stdout}"
    );
    // Located as plain `validate` locates its errors: file, line, column,
    // field.
    let line = stdout
        .lines()
        .find(|l| l.contains("multiplY"))
        .expect("the refusal");
    let text = std::fs::read_to_string(&file).unwrap();
    let params_line = text
        .lines()
        .position(|l| l.trim_start().starts_with("params"))
        .map(|n| n + 1)
        .expect("a params line");
    assert!(
        line.starts_with(&format!("{}:{params_line}:", file.display())),
        "{line}"
    );
    assert!(line.contains(".policy.params: "), "{line}");
}

/// A file with a configuration error still has the plugins of its other
/// applications tried in the same run: the errors of both stages come
/// together, in file order, where `validate` used to stop at the first
/// stage and show the plugin's refusal only once the file was mended.
#[test]
fn validate_reports_configuration_and_plugin_errors_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let shown = file.to_string_lossy().into_owned();
    std::fs::write(
        &file,
        "[[application]]\nname = \"orders\"\nmin_kpu = 4\nmax_kpu = 2\n\
         [application.policy]\nplugin = \"rate\"\n\n\
         [[application]]\nname = \"payments\"\n\
         [application.policy]\nplugin = \"rate\"\nparams = { target_utilisation = 0 }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{shown}:3:11: application \"orders\".min_kpu: min_kpu 4 is greater than max_kpu 2"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{shown}:12:10: application \"payments\".policy.params: plugin rate 0.1.0"
        )) && lines[1].ends_with("parameter `target_utilisation` must be in (0, 1], found 0"),
        "{stderr}"
    );
}

/// `validate` (no AWS, no `--environment`) tries each interpreter on its
/// params and on the configured series, so a bad expression or an unknown
/// series id is a located configuration error naming the interpreter's
/// params, what is wrong and where in the expression. Fails on main, where
/// `validate` never ran an interpreter and said "valid".
#[test]
fn validate_reports_a_bad_expression_located_at_its_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    // `expression` and `hold` are built-ins: no plugin_dir.
    let config = |signals: &str| {
        format!(
            r#"[[application]]
name = "orders"

[[application.metric]]
id = "lag"
namespace = "AWS/Kafka"
metric_name = "SumOffsetLag"
statistic = "Maximum"

[[application.interpreter]]
plugin = "expression"
params.signals = {{ {signals} }}

[application.policy]
plugin = "hold"
"#
        )
    };
    let file = dir.path().join("c.toml");
    let shown = file.to_string_lossy().into_owned();

    std::fs::write(&file, config(r#"growth = "rate(lag", ok = "lag""#)).unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    // Line 12 is `params.signals = ...` in the interpreter's table.
    let stderr = stderr.trim();
    assert!(
        stderr.starts_with(&format!(
            "{shown}:12:1: application \"orders\".interpreter[0].params: plugin expression 0.1.0"
        )) && stderr.ends_with(
            "rejected its params: signals.growth = \"rate(lag\": at column 9: unbalanced \
             parenthesis: the `(` at column 5 is not closed (found the end of the \
             expression, expected `)`)"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    std::fs::write(&file, config(r#"growth = "rate(lgg)""#)).unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "{shown}:12:1: application \"orders\".interpreter[0].params: "
        )) && stderr.contains("at column 6: unknown series id `lgg` (configured series: lag)"),
        "{stderr}"
    );

    std::fs::write(&file, config(r#"growth = "rate(lag)""#)).unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// Plain `validate` checks the ids a plugin declares as alarm or metric
/// ids against the application's, as `--environment` did, and a plugin
/// none of whose metric parameters names a metric: `target-tracking` on a
/// metric called `load` (its defaults `busy` and `cpu` name nothing)
/// passed, and failed at every evaluation of the agent.
#[test]
fn validate_checks_the_ids_a_plugin_declares() {
    let dir = tempfile::tempdir().unwrap();
    let config = |interpreter: &str, policy: &str| {
        format!(
            r#"[[application]]
name = "orders"

[[application.metric]]
id = "load"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
statistic = "Average"
{interpreter}
[application.policy]
{policy}
"#
        )
    };
    let file = dir.path().join("c.toml");
    let shown = file.to_string_lossy().into_owned();

    std::fs::write(&file, config("", "plugin = \"target-tracking\"")).unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "application \"orders\".policy.params: none of the plugin's metric parameters \
             names a metric of this application: busy_metric = \"busy\" (its default), \
             cpu_metric = \"cpu\" (its default) (valid: \"load\"); set one of them to a \
             metric id"
        ),
        "{stderr}"
    );
    std::fs::write(
        &file,
        config(
            "",
            "plugin = \"target-tracking\"\nparams = { cpu_metric = \"load\" }",
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = flinkscale(&["validate", &shown]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A journal written by a newer agent stops `run` before anything is read
/// or sent, with exit code 78 (EX_CONFIG) and the file untouched: an older
/// agent must neither misread nor replace what the newer one knew. Fails
/// on main before #9, where the file was set aside as corrupt and the
/// agent started with no state.
#[test]
fn a_journal_of_a_newer_format_stops_run_with_exit_78_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let journal = state.join("orders.json");
    let newer = r#"{"format": 9, "application": "orders", "something": "new"}"#;
    std::fs::write(&journal, newer).unwrap();
    let plugins = common::plugin_dir();
    let quoted = |p: &Path| toml_edit::Value::from(p.to_string_lossy().as_ref()).to_string();
    let (plugins, state_quoted) = (quoted(&plugins), quoted(&state));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
plugin_dir = {plugins}
state_dir = {state_quoted}
region = "us-east-1"

[[application]]
name = "orders"
min_kpu = 1
max_kpu = 4

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "orders" }}
statistic = "Maximum"
period_secs = 60

[application.policy]
plugin = "hold"
"#,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        // Nowhere to go: the agent must stop before any AWS call.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .expect("the flinkscale binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("newer flinkscale") && stderr.contains("orders.json"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), newer);
    let names: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// `simulate --policy NAME` with a name that is neither a preset, a
/// built-in nor a file says so once, naming the built-ins and the fix,
/// instead of failing the run with the OS error three times over.
#[test]
fn simulate_names_the_built_ins_when_a_policy_is_not_found() {
    let scenario = repo().join("tests/scenarios/step.toml");
    let (code, stdout, stderr) = flinkscale(&[
        "simulate",
        "--scenario",
        &scenario.to_string_lossy(),
        "--policy",
        "no-such-policy",
    ]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error: {stderr}");
    for expected in [
        "policy \"no-such-policy\"",
        "not a built-in (\"step\", \"hold\", \"target-tracking\", \"rate\", \"backlog-seconds\", \"expression\", \"flink-operator\", \"predictive\")",
        "--plugin-dir",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

/// `simulate` keeps the plugin it compiled in `--plugin-cache DIR` (one
/// verified artifact), and the next run loads it from there instead of
/// compiling; without the switch it uses `$XDG_CACHE_HOME/flinkscale/plugins`;
/// `--plugin-cache off` keeps nothing.
#[test]
fn simulate_keeps_compiled_plugins_in_its_plugin_cache() {
    let dir = scratch("cache");
    let scenario = repo().join("tests/scenarios/spike.toml");
    let xdg = dir.join("xdg");
    let run = |cache: Option<&str>| {
        let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(["simulate", "--scenario", &scenario.to_string_lossy()])
            .args(["--policy", "seed"])
            .args(cache.map(|c| ["--plugin-cache", c]).into_iter().flatten())
            .env("XDG_CACHE_HOME", &xdg)
            .env("RUST_LOG", "flinkscale::plugin::cache=debug")
            .output()
            .expect("the flinkscale binary runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let artifacts = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };

    let mine = dir.join("mine");
    let first = run(Some(&mine.to_string_lossy()));
    assert!(first.contains("origin=Some(Compiled)"), "{first}");
    let kept = artifacts(&mine);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].extension().is_some_and(|e| e == "cwasm"),
        "{kept:?}"
    );

    let second = run(Some(&mine.to_string_lossy()));
    assert!(second.contains("origin=Some(Disk)"), "{second}");
    assert!(!second.contains("origin=Some(Compiled)"), "{second}");

    let off = run(Some("off"));
    assert!(off.contains("origin=Some(Compiled)"), "{off}");
    assert!(!xdg.exists(), "`off` wrote {:?}", artifacts(&xdg));

    run(None);
    let default = artifacts(&xdg.join("flinkscale").join("plugins"));
    assert_eq!(default.len(), 1, "{default:?}");
}

/// The demo tells its story on stdout; the agent inside it logs warnings
/// only, unless RUST_LOG asks for more (the install test runs it at info).
#[test]
fn the_demo_prints_its_narrative_and_no_agent_info_logs_by_default() {
    let (code, stdout, stderr) = flinkscale(&["demo", "--speed", "200"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("summary (model version"), "{stdout}");
    assert!(
        !stderr.contains(" INFO "),
        "info lines on stderr without RUST_LOG:\n{stderr}"
    );
}

/// `simulate --policy step` cannot work from flags alone (a policy given
/// by name gets the standard metrics and no alarm, and `step` needs two):
/// the error says which presets are `step` with alarms, or `--config`.
#[test]
fn simulate_of_a_policy_that_needs_alarms_points_to_the_presets_that_have_them() {
    for params in [
        None,
        Some(r#"{"scale_out_alarm": "hi", "scale_in_alarm": "lo"}"#),
    ] {
        let mut args = vec!["simulate", "--scenario", "step", "--policy", "step"];
        args.extend(params.iter().flat_map(|p| ["--params", *p]));
        let (code, _, stderr) = flinkscale(&args);
        assert_eq!(code, 78, "{stderr}");
        assert!(
            stderr.contains(
                "a policy given by name or file gets the standard metrics but no alarm: \
                 --policy seed is `step` with the reference design's alarms"
            ),
            "{stderr}"
        );
        assert!(!stderr.contains(".;"), "{stderr}");
    }
}

/// The demo shows the built-in `step` whatever folder it runs in: a
/// `plugins/step.wasm` there (here `hold`'s bytes, which never scale)
/// was taken for a drop-in, since the bundled configuration's
/// `plugin_dir` is `plugins` relative to the current folder, and swapped
/// in at the first evaluation.
#[test]
fn the_demo_ignores_a_plugins_folder_where_it_runs() {
    let dir = scratch("demo-cwd");
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins/");
    let hold = flinkscale::plugin::builtin::find("hold").expect("hold is built in");
    std::fs::write(dir.join("plugins/step.wasm"), hold.bytes).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["--log-format", "json", "demo", "--speed", "100"])
        .current_dir(&dir)
        .env("RUST_LOG", "flinkscale=info")
        .output()
        .expect("the flinkscale binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("Plugin loaded.") && stderr.contains("\"source\":\"built-in\""),
        "{stderr}"
    );
    assert!(!stderr.contains("plugins/step.wasm"), "{stderr}");
    // Every decision is step's: `hold` says "observe only".
    let decisions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("         hold: ") || l.contains("SCALE TO"))
        .collect();
    assert!(decisions.len() >= 2, "{stdout}");
    assert!(
        decisions
            .iter()
            .all(|l| l.contains("no alarm in ALARM") || l.contains("SCALE TO")),
        "{stdout}"
    );
    assert!(!stdout.contains("observe only"), "{stdout}");
}

/// `emulate --history-secs` is a number a user types: one past what the
/// emulator plays (15 days, as CloudWatch keeps 1-minute datapoints) is
/// refused by name with the valid range, not overflowed into a start time
/// or played for hours before the first answer.
#[test]
fn emulate_refuses_a_history_it_cannot_play() {
    for history in ["99999999999999999", "1296001"] {
        let (code, _, stderr) = flinkscale(&[
            "emulate",
            "--scenario",
            "tests/fixtures/scenarios/e2e-scale.toml",
            "--history-secs",
            history,
        ]);
        assert_eq!(code, 2, "{history}: {stderr}");
        assert!(
            stderr.contains("--history-secs") && stderr.contains("0..=1296000"),
            "{history}: {stderr}"
        );
    }
    // Within its range, but played at a speed that makes it more model
    // time than a scenario may run (the model keeps every second: 15 days
    // at 100000x asked a terabyte and aborted): refused before serving.
    let (code, _, stderr) = flinkscale(&[
        "emulate",
        "--scenario",
        "tests/fixtures/scenarios/e2e-scale.toml",
        "--history-secs",
        "1296000",
        "--speed",
        "100000",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr
            .contains("--history-secs 1296000 at --speed 100000 plays 129600000000 model seconds")
            && stderr.contains("at most 2678400"),
        "{stderr}"
    );
}

/// A scenario, a trace or a template that is a device is refused as
/// wrong input, at once: `/dev/zero` was read until memory ran out
/// (7.5 GB in 15 s, never ending), as the configuration loader already
/// refused it.
#[test]
fn an_input_that_is_no_regular_file_is_refused_not_read_for_ever() {
    let dir = scratch("devzero");
    std::fs::write(dir.join("s.toml"), "trace = \"/dev/zero\"\n").expect("scenario");
    let scenario = dir.join("s.toml");
    for args in [
        vec!["simulate", "--scenario", "/dev/zero", "--policy", "hold"],
        vec![
            "simulate",
            "--scenario",
            scenario.to_str().expect("utf-8"),
            "--policy",
            "hold",
        ],
        vec!["import", "cfn", "/dev/zero"],
    ] {
        let started = std::time::Instant::now();
        let (code, _, stderr) = flinkscale(&args);
        assert_eq!(code, 78, "{args:?}: {stderr}");
        assert!(
            stderr.contains("/dev/zero") && stderr.contains("not a regular file"),
            "{args:?}: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{args:?}"
        );
    }
}

/// `--scenario NAME` plays a shipped scenario from any folder (the binary
/// embeds them), as the README's `simulate --scenario weekly` does; a name
/// that is neither a file nor a shipped scenario is one error line that
/// lists the shipped ones.
#[test]
fn simulate_plays_a_shipped_scenario_by_name_from_any_folder() {
    let dir = scratch("shipped");
    let run = |scenario: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(["simulate", "--scenario", scenario, "--policy", "hold"])
            .args(["--json", "--plugin-cache", "off"])
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .output()
            .expect("the flinkscale binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = run("spike");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["scenario"], "spike", "{stdout}");
    assert_eq!(report["rescales"], 0, "hold never rescales: {stdout}");

    let (code, stdout, stderr) = run("spikes");
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error: {stderr}");
    for expected in [
        "cannot read scenario spikes: no such file",
        "a shipped scenario: diurnal, flash-crowd, ramp, sawtooth, spike, step, weekly, demo",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }

    // A folder of the name (what `--report spike` makes) is no scenario:
    // the shipped one still plays.
    std::fs::create_dir(dir.join("spike")).expect("a folder");
    let (code, stdout, stderr) = run("spike");
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// `--params` that is not a JSON object is a usage error (exit 78), as
/// every --params simulate cannot use.
#[test]
fn simulate_params_that_are_not_an_object_are_a_usage_error() {
    for (params, says) in [
        ("[1]", "--params must be a JSON object"),
        (
            "nojson",
            "--params is not valid JSON: expected ident at line 1 column 2",
        ),
        // An object, but a number JSON cannot hold: the parser's reason,
        // not "must be a JSON object".
        (
            r#"{"catch_up_secs": 1e400}"#,
            "--params is not valid JSON: number out of range at line 1 column 23",
        ),
    ] {
        let (code, stdout, stderr) = flinkscale(&[
            "simulate",
            "--scenario",
            "step",
            "--policy",
            "rate",
            "--params",
            params,
        ]);
        assert_eq!(code, 78, "{params}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{params}: {stderr}");
    }
}

/// A command that prints and exits, piped into a reader that goes away
/// (`flinkscale completions bash | head -1`), ends as `cat` does, killed
/// by SIGPIPE, instead of panicking with "failed printing to stdout".
#[test]
fn a_closed_pipe_ends_a_printing_command_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    for args in [
        &["completions", "bash"][..],
        &["plugin", "describe", "rate"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(args)
            .current_dir(repo())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the flinkscale binary runs");
        // The reader goes away before the command has printed anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("it ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}

/// Every whole configuration the README shows (a ```toml block that starts
/// with `[agent]` or `[[application]]`), saved to a file as a user would,
/// passes `flinkscale validate`.
#[test]
fn every_whole_configuration_in_the_readme_validates() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let dir = scratch("readme");
    let mut checked = 0;
    for rest in readme.split("```toml\n").skip(1) {
        let block = rest.split("\n```").next().expect("a closed block");
        let first = block.lines().next().unwrap_or_default().trim();
        if first != "[agent]" && first != "[[application]]" {
            continue;
        }
        let file = dir.join(format!("readme-{checked}.toml"));
        std::fs::write(&file, block).expect("written");
        let (code, stdout, stderr) = flinkscale(&["validate", &file.to_string_lossy()]);
        assert_eq!(
            code, 0,
            "the README's configuration\n{block}\n{stdout}{stderr}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "the README shows whole configurations");
}

/// `demo --scenario` plays a user's scenario with the bundled
/// configuration: a scenario of one application, whatever its name (a
/// trace CSV's is `app`), is the one the bundled configuration scales. A
/// `--config` whose application the scenario does not play is refused
/// before anything starts, naming both, and so is one of a Flink job.
#[test]
fn demo_plays_a_users_scenario_and_refuses_an_application_it_does_not_play() {
    let dir = scratch("demo");
    std::fs::write(
        dir.join("mine.csv"),
        "t_secs,records_per_sec\n0,600\n300,2400\n",
    )
    .expect("written");
    let demo = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .arg("demo")
            .args(args)
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .output()
            .expect("the flinkscale binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = demo(&["--scenario", "mine.csv", "--speed", "60"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("not_found"), "{stderr}");
    let evaluations = stdout.lines().filter(|l| l.contains(" load ")).count();
    assert!(
        evaluations >= 1,
        "the agent evaluated the application: {stdout}"
    );

    std::fs::write(
        dir.join("other.toml"),
        "[[application]]\nname = \"other\"\n[application.policy]\nplugin = \"hold\"\n",
    )
    .expect("written");
    let (code, stdout, stderr) = demo(&["--scenario", "mine.csv", "--config", "other.toml"]);
    assert_eq!(code, 78, "wrong input: {stdout}{stderr}");
    assert!(
        stderr.contains(
            "application \"other\" is not in scenario \"mine\" (valid: an application it plays: \"app\")"
        ),
        "{stderr}"
    );

    // A Flink job of the scenario's name: the demo would have scaled the
    // cluster its rest_url names (no cluster here; refused before any
    // call all the same).
    std::fs::write(
        dir.join("flink.toml"),
        "[[application]]\nname = \"app\"\ntarget = \"flink\"\nrest_url = \"http://127.0.0.1:9\"\n\
         [application.policy]\nplugin = \"hold\"\n",
    )
    .expect("written");
    let (code, stdout, stderr) = demo(&["--scenario", "mine.csv", "--config", "flink.toml"]);
    assert_eq!(code, 78, "wrong input: {stdout}{stderr}");
    assert!(
        stderr
            .contains("flink.toml: application \"app\" has target = \"flink\": the demo plays MSF")
            && stderr.contains("valid: target = \"msf\""),
        "{stderr}"
    );
}

/// A plugin file that is not a component stops `run` with the loader's
/// reason said once, not repeated by the error chain, located at the
/// field as `validate` locates it, with the configuration's exit status
/// (78, which systemd does not restart on).
#[test]
fn a_plugin_that_does_not_load_is_reported_once() {
    let dir = scratch("junk");
    std::fs::write(dir.join("junk.wasm"), "junk").expect("written");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nstate_dir = \"state\"\nregion = \"us-east-1\"\n\n[[application]]\nname = \"a\"\n\n\
         [application.policy]\nplugin = \"junk.wasm\"\n",
    )
    .expect("written");
    let (code, stdout, stderr) = flinkscale(&["run", "--config", &config.to_string_lossy()]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains("agent.toml:9:10: application \"a\".policy.plugin: plugin ")
            && stderr.contains("junk.wasm is not a WebAssembly component"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("is not a WebAssembly component").count(),
        1,
        "said once: {stderr}"
    );
}

/// `validate --environment` on a configuration of Flink jobs only reads
/// the jobs over REST and leaves AWS alone: no region or credential
/// lookup (which would log the instance metadata service's warnings),
/// and an unreachable cluster is named with the job as configured.
#[test]
fn validate_environment_of_flink_jobs_only_leaves_aws_alone() {
    let dir = scratch("flink");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.join("flink.toml");
    std::fs::write(
        &config,
        format!(
            "[[application]]\nname = \"orders\"\ntarget = \"flink\"\n\
             rest_url = \"http://127.0.0.1:{port}\"\n\n[application.policy]\nplugin = \"hold\"\n"
        ),
    )
    .expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["validate", "--environment", &config.to_string_lossy()])
        .env_remove("RUST_LOG")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .expect("the flinkscale binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "application \"orders\": Flink job (job_name \"orders\") at http://127.0.0.1:{port} cannot be read"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("AWS credentials: not needed (no application calls AWS)"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("aws_config"),
        "the AWS SDK's chain ran: {stderr}"
    );
}

/// A state folder that cannot be created (under a file) stops `run` as an
/// error of the configuration, at its line, with the reason said once
/// (before, `validate` passed it and `run` failed at its start, exit 1,
/// naming no setting).
#[test]
fn a_state_folder_that_cannot_be_made_is_reported_once() {
    let dir = scratch("state");
    std::fs::write(dir.join("a-file"), "").expect("written");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nstate_dir = \"a-file/state\"\nregion = \"us-east-1\"\n\n[[application]]\n\
         name = \"a\"\n\n[application.policy]\nplugin = \"hold\"\n",
    )
    .expect("written");
    for command in ["run", "validate"] {
        let (code, stdout, stderr) = flinkscale(&[command, "--config", &config.to_string_lossy()]);
        assert_eq!(code, 78, "{command}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "agent.toml:2:13: agent.state_dir: state_dir {0}/a-file/state cannot be \
                 created: {0}/a-file is a file, not a folder",
                dir.display()
            )),
            "{command}: {stderr}"
        );
        assert_eq!(
            stderr.matches("cannot be created").count(),
            1,
            "said once: {stderr}"
        );
    }
}

/// The fields the README lists for `simulate --json` are the ones it
/// prints, no more and no fewer.
#[test]
fn simulate_json_has_the_fields_the_readme_lists() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find("(`--json`: one object\nwith ")
        .expect("the README describes simulate --json");
    let listed = &readme[start..];
    let listed = &listed[..listed.find("; see").expect("the list ends")];
    let documented: std::collections::BTreeSet<&str> = listed
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| *w != "--json")
        .collect();

    let (code, stdout, stderr) = flinkscale(&[
        "simulate",
        "--scenario",
        "spike",
        "--policy",
        "hold",
        "--json",
        "--plugin-cache",
        "off",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let printed: std::collections::BTreeSet<&str> = report
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, printed, "README list vs simulate --json");
}

/// `iam` for self-managed Flink jobs only: the agent calls no AWS API for
/// them (it loads no AWS client at all), so there is no policy to print.
/// Stdout stays empty (a policy without statements is one IAM refuses),
/// stderr says that none is needed and why, and the exit is 0: nothing is
/// wrong. Beside an MSF application, the policy names only that one.
#[test]
fn iam_of_flink_jobs_only_says_no_policy_is_needed() {
    let dir = scratch("iam-flink");
    let flink = "[[application]]\nname = \"jobs\"\ntarget = \"flink\"\n\
                 rest_url = \"http://127.0.0.1:8081\"\n\
                 [application.policy]\nplugin = \"hold\"\n";
    let config = dir.join("flink.toml");
    std::fs::write(&config, flink).expect("written");
    let config_arg = config.to_string_lossy().into_owned();
    for extra in [&[][..], &["--read-only"]] {
        let mut args = vec!["iam", "--config", &config_arg];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = flinkscale_in(&dir, &args);
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert_eq!(stdout, "", "{args:?}: no policy document");
        assert!(
            stderr.contains("the agent needs no IAM policy")
                && stderr.contains("no AWS permission is needed for them"),
            "{args:?}: {stderr}"
        );
    }
    let mixed = dir.join("mixed.toml");
    std::fs::write(
        &mixed,
        format!(
            "{flink}[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"step\"\n"
        ),
    )
    .expect("written");
    let (code, stdout, stderr) =
        flinkscale_in(&dir, &["iam", "--config", &mixed.to_string_lossy()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let policy: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON policy");
    assert_eq!(
        policy["Statement"][0]["Resource"],
        serde_json::json!(["arn:*:kinesisanalytics:*:*:application/orders"])
    );
    assert!(!stdout.contains("jobs"), "{stdout}");
    assert!(!stderr.contains("needs no IAM policy"), "{stderr}");
}

/// `validate --environment` without credentials says so in one line of
/// its own: the SDK's warnings about the instance metadata service it
/// tried on the way (kilobytes each) are not printed unless RUST_LOG asks
/// for them.
#[test]
fn validate_environment_without_credentials_is_not_buried_in_sdk_warnings() {
    let dir = scratch("no-credentials");
    let (code, config, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.join("agent.toml"), config).expect("written");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("a home");
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["validate", "--environment", "agent.toml"])
        .current_dir(&dir)
        .env_clear()
        .env("HOME", &home)
        // No region either: the SDK asks the metadata service for one.
        // Nothing listens there: it is refused at once.
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .expect("the flinkscale binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("AWS credentials: not found"), "{stdout}");
    assert!(
        stdout.contains("AWS region: not found: set `region` under [agent] in agent.toml"),
        "{stdout}"
    );
    assert!(!stderr.contains("aws_config"), "{stderr}");
}

/// With credentials and no region anywhere (no `[agent] region`, no
/// AWS_REGION, no profile, no instance metadata: `aws_env` sets
/// AWS_EC2_METADATA_DISABLED, so even on an EC2 instance no answer can
/// come), `run` and `once` refuse to start (exit 78) naming the
/// applications and where a region comes from: every call would fail as
/// "Missing Region", a transient failure retried for ever.
#[test]
fn run_and_once_without_a_region_refuse_to_start() {
    let dir = scratch("no-region");
    let (code, config, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.join("agent.toml"), config).expect("written");
    for command in ["run", "once"] {
        // Bounded: an agent that starts anyway runs until stopped.
        let mut run = Command::new("timeout");
        common::aws_env(&mut run, "http://127.0.0.1:9", &dir);
        let out = run
            .args(["60", env!("CARGO_BIN_EXE_flinkscale")])
            .args([command, "--config", "agent.toml"])
            .current_dir(&dir)
            .env_remove("AWS_REGION")
            .env_remove("FLINKSCALE_CONFIG")
            .env("HOME", &*dir)
            .output()
            .expect("the flinkscale binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{command}: {stderr}");
        assert!(
            stderr.contains(
                "error: cannot start the agent: no AWS region for application \
                 \"clickstream-enricher\": set `region` under [agent], or AWS_REGION"
            ),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("Missing Region"), "{command}: {stderr}");
    }
}

/// An alarm on a name that is no metric and no signal the interpreters
/// give (a typo: `seconds_behindd`) passes `validate` with a located
/// warning naming the signals they do give, since it would stay
/// INSUFFICIENT_DATA for good; the example as shipped gets none.
#[test]
fn validate_warns_of_an_alarm_on_a_signal_no_interpreter_gives() {
    let dir = scratch("signal-typo");
    let (code, example, stderr) = flinkscale_in(&dir, &["example", "msk-backlog-seconds"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.join("as-shipped.toml"), &example).expect("written");
    let typo = example.replacen(
        "metric = \"seconds_behind\"",
        "metric = \"seconds_behindd\"",
        1,
    );
    assert_ne!(typo, example, "the example has an alarm on seconds_behind");
    std::fs::write(dir.join("typo.toml"), typo).expect("written");

    let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", "as-shipped.toml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", "typo.toml"]);
    assert_eq!(code, 0, "a warning, not an error: {stdout}{stderr}");
    assert!(stdout.contains("typo.toml: valid"), "{stdout}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(".metric: no metric is called \"seconds_behindd\"")
            && warnings[0].contains("\"seconds_behind\", \"seconds_to_drain\""),
        "{stderr}"
    );
}

/// `simulate --policy PATH` takes a path as a plugin author types it,
/// relative to the folder the command runs in, with or without `./` and
/// folders (it was resolved against a made-up preset folder, so any
/// relative path with a `/` was not found).
#[test]
fn simulate_takes_a_relative_plugin_path_from_the_current_folder() {
    let dir = scratch("relative-policy");
    let fixture = common::plugin_dir().join("misbehave.wasm");
    std::fs::create_dir_all(dir.join("build/out")).expect("a folder");
    std::fs::copy(&fixture, dir.join("build/out/mine.wasm")).expect("copied");
    for path in ["./build/out/mine.wasm", "build/out/mine.wasm"] {
        let (code, stdout, stderr) = flinkscale_in(
            &dir,
            &[
                "simulate",
                "--scenario",
                "spike",
                "--policy",
                path,
                "--params",
                r#"{"mode": "ok"}"#,
                "--json",
                "--plugin-cache",
                "off",
            ],
        );
        assert_eq!(code, 0, "{path}: {stdout}{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
        assert_eq!(report["policy"]["plugin"], "mine.wasm", "{stdout}");
        assert_eq!(report["plugin_failures"], 0, "{stdout}");
    }
}

/// `AWS_ENDPOINT_URL=` (set, empty) is taken as unset, and said once: the
/// AWS SDK took it for a URL and panicked building its first client
/// (`validate --environment` exited 101; `run` panicked at every step).
/// Checked here through plain `validate`, which builds no client; by hand,
/// `validate --environment` with fake credentials then reaches the default
/// endpoint instead of panicking.
#[test]
fn an_empty_aws_endpoint_url_is_taken_as_unset() {
    let dir = scratch("empty-endpoint");
    let (code, config, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.join("agent.toml"), config).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["validate", "agent.toml"])
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .env("AWS_ENDPOINT_URL", "")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", " ")
        .output()
        .expect("the flinkscale binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"] {
        assert!(
            stderr.contains(&format!("{name} is set but empty: taken as unset")),
            "{stderr}"
        );
    }
}

/// Exit statuses by cause: a `--plugin-dir` that is not a folder is
/// refused on the command line (2) before anything runs, rather than
/// leaving every plugin to the built-ins without a word; a scenario that
/// does not exist is wrong input (78) for `emulate` as for `simulate`.
#[test]
fn a_mistyped_plugin_dir_or_scenario_is_refused_by_cause() {
    let dir = scratch("exit-status");
    std::fs::write(dir.join("afile"), "").expect("written");
    let commands: [&[&str]; 10] = [
        &[
            "simulate",
            "--scenario",
            "step",
            "--policy",
            "hold",
            "--plugin-dir",
            "myplugin",
        ],
        &["plugin", "check", "hold", "--plugin-dir", "afile"],
        &["bench", "--jobs", "0"],
        &["demo", "--speed", "0"],
        &["emulate", "--scenario", "step", "--speed", "inf"],
        &["emulate", "--scenario", "step", "--page-size", "0"],
        &["probe", "--timeout-secs", "0", "http://127.0.0.1:9/livez"],
        &[
            "emulate",
            "--scenario",
            "step",
            "--listen",
            "localhost:4566",
        ],
        // A health check's typo is a command line refused, not an agent
        // found unhealthy (exit 1).
        &["probe", "http://127.0.0.1:99999/livez"],
        &[
            "simulate",
            "--scenario",
            "step",
            "--policy",
            "hold",
            "--plugin-cache",
            "afile",
        ],
    ];
    for args in commands {
        let (code, stdout, stderr) = flinkscale_in(&dir, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("error: invalid value"),
            "{args:?}: {stderr}"
        );
    }
    let (_, _, stderr) = flinkscale_in(&dir, commands[1]);
    assert!(
        stderr.contains("afile is a file (valid: a folder of plugin files)"),
        "{stderr}"
    );
    let (_, _, stderr) = flinkscale_in(&dir, commands[3]);
    assert!(
        stderr.contains("speed 0 must be a number above 0 and at most 1000000"),
        "{stderr}"
    );
    let (_, _, stderr) = flinkscale_in(&dir, commands[7]);
    assert!(
        stderr.contains("not an IP address and port (valid: e.g. 127.0.0.1:4566"),
        "{stderr}"
    );
    let (_, _, stderr) = flinkscale_in(&dir, commands[8]);
    assert!(
        stderr.contains("\"127.0.0.1:99999\" is not HOST:PORT with a port from 1 to 65535"),
        "{stderr}"
    );
    let (_, _, stderr) = flinkscale_in(&dir, commands[9]);
    assert!(
        stderr.contains("afile is not a folder (valid: a folder for the compiled plugins"),
        "{stderr}"
    );
    for command in ["emulate", "simulate"] {
        let (code, stdout, stderr) = flinkscale_in(&dir, &[command, "--scenario", "nosuch"]);
        assert_eq!(code, 78, "{command}: {stdout}{stderr}");
        assert!(
            stderr.contains("no shipped scenario of that name"),
            "{stderr}"
        );
    }
    // A report folder that is a file is said before the run, not after.
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "weekly",
            "--policy",
            "hold",
            "--report",
            "afile",
        ],
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(
        stderr.contains("--report afile: a file, not a folder"),
        "{stderr}"
    );
    // A folder given as a plugin is said to be one.
    let (code, _, stderr) = flinkscale_in(&dir, &["plugin", "check", &dir.to_string_lossy()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("is a folder (valid: a plugin's .wasm file"),
        "{stderr}"
    );
}

/// `validate` asks the policy once as the agent's first evaluation would
/// (no datapoints yet, alarms without enough data): `rate` on an
/// application without its default `records_in` metric, or `predictive`
/// whose nested `rate` names metrics that do not exist, failed at every
/// evaluation of a file `validate` called valid.
#[test]
fn validate_finds_a_policy_that_fails_on_the_applications_metrics() {
    let dir = scratch("trial-decision");
    let app = "[[application]]\nname = \"app\"\n[[application.metric]]\nid = \"backlog\"\n\
               namespace = \"AWS/Kafka\"\nmetric_name = \"SumOffsetLag\"\n\
               dimensions = { \"Cluster Name\" = \"c\", \"Consumer Group\" = \"g\", Topic = \"t\" }\n\
               statistic = \"Maximum\"\n[application.policy]\n";
    let cases = [
        (
            "rate.toml",
            "plugin = \"rate\"\n",
            "no metric `records_in` is configured",
        ),
        (
            "predictive.toml",
            "plugin = \"predictive\"\n\
             params = { rate = { busy_metric = \"nope\", records_in_metric = \"nope2\" } }\n",
            "no metric `nope2` is configured",
        ),
    ];
    for (file, policy, said) in cases {
        std::fs::write(dir.join(file), format!("{app}{policy}")).expect("written");
        let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", file]);
        assert_eq!(code, 78, "{file}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("{file}:9:1: application \"app\".policy.params: "))
                || stderr.contains(&format!(
                    "{file}:11:10: application \"app\".policy.params: "
                )),
            "{stderr}"
        );
        assert!(
            stderr.contains(said) && stderr.contains("asked as at the agent's start"),
            "{stderr}"
        );
    }
    // With the metrics it reads, the same policy is valid.
    let fine = app.replace("id = \"backlog\"", "id = \"records_in\"")
        + "plugin = \"rate\"\nparams = { busy_metric = \"records_in\" }\n";
    std::fs::write(dir.join("fine.toml"), fine).expect("written");
    let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", "fine.toml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// `simulate --params` and `bench --policies` mistakes are said in the
/// flags' words, not at the line of a preset file that does not exist
/// (`<preset seed>.toml:39:112`), and exit 78; a scenario name or a
/// policy given twice to `bench` is refused (their rows and report pages
/// would mix up), naming both.
#[test]
fn simulate_and_bench_say_wrong_flags_in_the_flags_words() {
    let dir = scratch("flags-words");
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "spike",
            "--policy",
            "seed",
            "--params",
            r#"{"scale_out_alarm":"nope"}"#,
        ],
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    // The ids a plugin names are checked once it is loaded (its load is
    // logged first).
    let said: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains(" INFO flinkscale::plugin::reload: Plugin loaded."))
        .collect();
    assert_eq!(
        said,
        [
            "error: --params: scale_out_alarm: no alarm with id \"nope\" in this application \
          (valid: \"scale-in\", \"scale-out\")"
        ]
    );
    // Params the plugin refuses that nobody gave with --params are not
    // blamed on it: they are the preset's, or none.
    let misbehave = common::plugin_dir().join("misbehave.wasm");
    let (code, _, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "spike",
            "--policy",
            &misbehave.to_string_lossy(),
        ],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the params of policy {:?} (no --params given): plugin misbehave",
            misbehave.to_string_lossy()
        )) && stderr.contains("missing required key \"mode\"")
            && !stderr.contains("--params:"),
        "{stderr}"
    );
    // A run whose plugin failed says so on its page too, first, and
    // counts the failures in its scores.
    let (code, _, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "spike",
            "--policy",
            &misbehave.to_string_lossy(),
            "--params",
            r#"{"mode":"trap"}"#,
            "--report",
            "trapped",
        ],
    );
    // Scores of a run that held are no result: printed, and exit 1.
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the plugins failed ") && stderr.contains("and the exit status is 1"),
        "{stderr}"
    );
    let page = std::fs::read_dir(dir.join("trapped"))
        .expect("the report folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "html"))
        .expect("a page");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(
        html.contains("<p class=\"warning\" role=\"alert\"><strong>The plugins failed "),
        "{html:.2000}"
    );
    assert!(
        !html.contains("<td><code>plugin_failures</code></td><td class=\"num\">0</td>"),
        "counted"
    );
    // TOML has no null: it would reach the plugin as "".
    let (code, _, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "spike",
            "--policy",
            "rate",
            "--params",
            r#"{"catch_up_secs":null}"#,
        ],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("--params: catch_up_secs is null"),
        "{stderr}"
    );
    // A key given twice is refused, as in a TOML table, not the last kept.
    let (code, _, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "spike",
            "--policy",
            "rate",
            "--params",
            r#"{"catch_up_secs": 1, "catch_up_secs": 2}"#,
        ],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("the key \"catch_up_secs\" is given twice"),
        "{stderr}"
    );
    std::fs::create_dir_all(dir.join("twice")).expect("a folder");
    std::fs::write(
        dir.join("t.csv"),
        "t_secs,records_per_sec\n0,100\n3600,100\n",
    )
    .expect("written");
    for file in ["a.toml", "b.toml"] {
        std::fs::write(
            dir.join("twice").join(file),
            "name = \"same\"\ntrace = \"../t.csv\"\n",
        )
        .expect("written");
    }
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "bench",
            "--scenarios",
            "twice",
            "--policies",
            "hold",
            "--out",
            "out",
        ],
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains("scenario name \"same\" is given twice: twice/a.toml and twice/b.toml"),
        "{stderr}"
    );
    // Names that differ only where a report's file name cannot are
    // refused too (one's pages were written over the other's); names
    // with a dot are two folders (orders.v1 and orders.v2 were one).
    std::fs::create_dir_all(dir.join("near")).expect("a folder");
    for (file, name) in [("a.toml", "orders v1"), ("b.toml", "orders_v1")] {
        std::fs::write(
            dir.join("near").join(file),
            format!("name = \"{name}\"\ntrace = \"../t.csv\"\n"),
        )
        .expect("written");
    }
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "bench",
            "--scenarios",
            "near",
            "--policies",
            "hold",
            "--out",
            "near-out",
        ],
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "scenarios \"orders v1\" and \"orders_v1\" make the same report file name \"orders_v1\""
        ),
        "{stderr}"
    );
    std::fs::create_dir_all(dir.join("dots")).expect("a folder");
    for (file, name) in [("a.toml", "orders.v1"), ("b.toml", "orders.v2")] {
        std::fs::write(
            dir.join("dots").join(file),
            format!("name = \"{name}\"\ntrace = \"../t.csv\"\n"),
        )
        .expect("written");
    }
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "bench",
            "--scenarios",
            "dots",
            "--policies",
            "hold",
            "--out",
            "dots-out",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    for name in ["orders.v1", "orders.v2"] {
        assert!(
            dir.join("dots-out/reports")
                .join(name)
                .join("hold.html")
                .is_file(),
            "{name}: {stdout}{stderr}"
        );
    }
    // The bounds per scenario, as bench.md's second table has them.
    let bounds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("dots-out/bench-bounds.json")).expect("bounds written"),
    )
    .expect("JSON");
    let bounds = bounds.as_array().expect("an array");
    assert_eq!(bounds.len(), 2, "{bounds:?}");
    assert_eq!(bounds[0]["scenario"], "orders.v1");
    assert!(
        bounds[0]["lower_bound_kpu_hours"]
            .as_f64()
            .expect("a number")
            > 0.0
    );
    assert!(bounds[0]["clairvoyant_kpu_hours"].as_f64().is_some());
    // A command line refused, as every other flag's wrong value is.
    for (args, said) in [
        (
            &[
                "bench",
                "--scenarios",
                "twice/a.toml",
                "--policies",
                "hold,hold",
                "--out",
                "out",
            ][..],
            "policy \"hold\" is given twice",
        ),
        (
            &[
                "bench",
                "--scenarios",
                "step",
                "--scenarios",
                "step",
                "--out",
                "out",
            ][..],
            "scenario \"step\" is given twice in --scenarios",
        ),
    ] {
        let (code, stdout, stderr) = flinkscale_in(&dir, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!dir.join("out").exists(), "nothing written");
    }
    // A shipped scenario by its name, as `simulate --scenario` takes it,
    // from a folder that holds no file of that name.
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "bench",
            "--scenarios",
            "step",
            "--policies",
            "hold",
            "--out",
            "out",
            "--no-reports",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("| step | hold |"), "{stdout}");
    // bench logs at warn, so a plugin file standing in for a built-in of
    // its name is said by bench itself, once.
    std::fs::create_dir_all(dir.join("pd")).expect("a folder");
    std::fs::copy(
        common::plugin_dir().join("misbehave.wasm"),
        dir.join("pd/hold.wasm"),
    )
    .expect("copied");
    let (_, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "bench",
            "--scenarios",
            "step",
            "--policies",
            "hold",
            "--plugin-dir",
            "pd",
            "--out",
            "out",
            "--no-reports",
        ],
    );
    let said = format!(
        "bench: policy hold runs the plugin file {}",
        dir.join("pd/hold.wasm").display()
    );
    assert_eq!(stderr.matches(&said).count(), 1, "{stdout}{stderr}");
    assert!(!stderr.contains("Plugin loaded."), "{stderr}");
}

/// Two interpreters giving one signal name (one value would be lost) is a
/// configuration error, and one giving a name no alarm can name (a
/// `signal_prefix` with a space) a warning, that `validate` finds by
/// asking them on sample data.
#[test]
fn validate_refuses_signal_names_that_collide_or_cannot_be_named() {
    let dir = scratch("signal-names");
    let (code, example, stderr) = flinkscale_in(&dir, &["example", "msk-backlog-seconds"]);
    assert_eq!(code, 0, "{stderr}");
    let cases = [
        (
            "dup.toml",
            example.replace(
                "params.signals = { lag_growing = \"fill(rate(lag), 0) > 0\" }",
                "params.signals = { seconds_behind = \"lag\" }",
            ),
            "interpreter[1].params: plugin expression 0.1.0: gives signal \"seconds_behind\", \
             which interpreter[0] (backlog-seconds 0.1.0) gives too",
        ),
        (
            "prefix.toml",
            example.replace(
                "processing_rate_metric = \"processed\" }",
                "processing_rate_metric = \"processed\", signal_prefix = \"has space\" }",
            ),
            "interpreter[0].params: plugin backlog-seconds 0.1.0: gives signal \
             \"has spaceseconds_behind\", a name no alarm can name",
        ),
    ];
    // The first an error; the second a warning (a policy may read a
    // signal of any name; no alarm can).
    for ((file, text, said), code_wanted) in cases.into_iter().zip([78, 0]) {
        assert_ne!(text, example, "{file}: the example changed");
        std::fs::write(dir.join(file), text).expect("written");
        let (code, stdout, stderr) = flinkscale_in(&dir, &["validate", file]);
        assert_eq!(code, code_wanted, "{file}: {stdout}{stderr}");
        assert!(stderr.contains(said), "{file}: {stderr}");
    }
}

/// Scale-out and scale-in alarms of a policy on one metric that can be in
/// ALARM together (scale in at or below 90 %, out above 80 %): a warning,
/// the application would flap (an outside reviewer's simulation: 12
/// rescales on a step); the shipped example, 80 / 20, has none.
#[test]
fn validate_warns_of_scale_out_and_in_alarms_that_overlap() {
    let dir = scratch("overlap");
    let (code, example, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.join("fine.toml"), &example).expect("written");
    let (code, _, stderr) = flinkscale_in(&dir, &["validate", "fine.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let overlapping = example.replacen("threshold = 20.0", "threshold = 90.0", 1);
    assert_ne!(overlapping, example, "the example changed");
    std::fs::write(dir.join("flaps.toml"), overlapping).expect("written");
    let (code, _, stderr) = flinkscale_in(&dir, &["validate", "flaps.toml"]);
    assert_eq!(code, 0, "a warning only: {stderr}");
    assert!(
        stderr.contains(
            "alarms \"scale-out\" (GreaterThanThreshold 80) and \"scale-in\" \
             (LessThanOrEqualToThreshold 90) on metric \"cpu\" can be in ALARM together"
        ),
        "{stderr}"
    );
}

/// A policy whose scale-out alarm fires on a low value (the two swapped),
/// or whose scale-in alarm fires on a high one (copied from the scale-out
/// alarm, comparison unchanged), would scale the wrong way: a warning at
/// the parameter, naming the alarm and its comparison. Neither is an
/// overlap of one "more" and one "less" alarm, so nothing warned before.
#[test]
fn validate_warns_of_scale_alarms_that_point_the_wrong_way() {
    let dir = scratch("reversed");
    let (code, example, stderr) = flinkscale_in(&dir, &["example", "msf-cpu"]);
    assert_eq!(code, 0, "{stderr}");
    let swapped = example.replace(
        "scale_out_alarm = \"scale-out\", scale_in_alarm = \"scale-in\"",
        "scale_out_alarm = \"scale-in\", scale_in_alarm = \"scale-out\"",
    );
    let copied = example.replace(
        "comparison = \"LessThanOrEqualToThreshold\"",
        "comparison = \"GreaterThanThreshold\"",
    );
    for (file, text, said) in [
        (
            "swapped.toml",
            &swapped,
            vec![
                "policy.params.scale_out_alarm: scale_out_alarm is alarm \"scale-in\", which is \
                 in ALARM when cpu is at or below 20 (LessThanOrEqualToThreshold): the policy \
                 would ask for more when the value is low, right only if low means busy (valid: \
                 for scale_out_alarm, an alarm with a GreaterThan... comparison)",
                "policy.params.scale_in_alarm: scale_in_alarm is alarm \"scale-out\", which is \
                 in ALARM when cpu is above 80 (GreaterThanThreshold): the policy would ask for \
                 less when the value is high, right only if high means idle",
            ],
        ),
        (
            "copied.toml",
            &copied,
            vec![
                "policy.params.scale_in_alarm: scale_in_alarm is alarm \"scale-in\", which is \
                 in ALARM when cpu is above 20 (GreaterThanThreshold)",
            ],
        ),
    ] {
        assert_ne!(text, &example, "{file}: the example changed");
        std::fs::write(dir.join(file), text).expect("written");
        let (code, _, stderr) = flinkscale_in(&dir, &["validate", file]);
        assert_eq!(code, 0, "{file}: a warning only: {stderr}");
        for said in &said {
            assert!(stderr.contains(said), "{file}: {said}\n{stderr}");
        }
        assert_eq!(
            stderr.matches("warning: ").count(),
            said.len(),
            "{file}: {stderr}"
        );
    }
    // On idle time low means busy: the swapped comparisons are right.
    let idle = swapped
        .replace("containerCPUUtilization", "idleTimeMsPerSecond")
        .replace("threshold = 80.0", "threshold = 800.0")
        .replace("threshold = 20.0", "threshold = 200.0");
    assert_ne!(idle, swapped, "the example changed");
    std::fs::write(dir.join("idle.toml"), idle).expect("written");
    let (code, _, stderr) = flinkscale_in(&dir, &["validate", "idle.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("scale_out_alarm is alarm"), "{stderr}");
}

/// A metric period of decades once made the simulator reserve a buffer of
/// one slot per second of the period, 14 GB here, and abort where memory
/// is limited; the simulator then reserved at most what the run has, and
/// now such a period (more than a day) is refused before anything runs,
/// located, exit 78, under a 10 GB address-space limit all the same.
#[test]
fn a_metric_period_of_decades_is_refused_before_anything_is_reserved() {
    let dir = scratch("long-period");
    let config = dir.join("cfg.toml");
    std::fs::write(
        &config,
        "[[application]]\nname = \"app\"\nevaluation_interval_secs = 60\n\
         [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
         metric_name = \"containerCPUUtilization\"\ndimensions = { Application = \"app\" }\n\
         statistic = \"Average\"\nperiod_secs = 1767229200\n\
         [application.policy]\nplugin = \"hold\"\n",
    )
    .expect("written");
    let out = Command::new("sh")
        .args(["-c", "ulimit -v 10000000 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["simulate", "--scenario", "step", "--config"])
        .arg(&config)
        .current_dir(&dir)
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains(
            "cfg.toml:10:15: application \"app\".metric \"cpu\".period_secs: period_secs \
             1767229200 is more than one day (valid: 10, 20, 30 or a multiple of 60 up to 86400)"
        ),
        "{stderr}"
    );
}

/// A policy that refuses its params stops `once` and `run` before the AWS
/// SDK is loaded: the located error is the first thing said, not after
/// the SDK's search for a region and credentials (seconds, and warnings,
/// off EC2).
#[test]
fn refused_params_are_said_before_the_aws_sdk_is_loaded() {
    let dir = scratch("params-before-aws");
    std::fs::write(
        dir.join("bad.toml"),
        "[[application]]\nname = \"orders\"\n[[application.metric]]\nid = \"cpu\"\n\
         namespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\n\
         dimensions = { Application = \"orders\" }\nstatistic = \"Maximum\"\n\
         [application.policy]\nplugin = \"target-tracking\"\n\
         params = { cpu_metric = \"cpu\", target = \"high\" }\n",
    )
    .expect("written");
    for command in ["once", "run"] {
        let (code, stderr) =
            flinkscale_with_aws(&dir, &[command, "--dry-run", "--config", "bad.toml"]);
        assert_eq!(code, Some(78), "{command}: {stderr}");
        assert!(
            stderr.starts_with(
                "bad.toml:11:10: application \"orders\".policy.params: plugin target-tracking"
            ) && stderr.contains("unknown key \"target\""),
            "{command}: {stderr}"
        );
        assert!(
            !stderr.contains("AWS SDK configuration loaded"),
            "{command}: {stderr}"
        );
    }
}

/// `once` and `run` refuse what `validate` refuses of the ids a plugin's
/// declared params name: `step`'s `scale_in_alarm` naming no alarm of the
/// application started the agent before, every evaluation failing.
#[test]
fn an_alarm_a_policy_names_and_the_application_lacks_stops_run_as_validate() {
    let dir = scratch("unconfigured-alarm");
    std::fs::write(
        dir.join("bad.toml"),
        "[[application]]\nname = \"orders\"\n[[application.metric]]\nid = \"cpu\"\n\
         namespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\n\
         dimensions = { Application = \"orders\" }\nstatistic = \"Maximum\"\n\
         [[application.alarm]]\nid = \"high\"\nmetric = \"cpu\"\n\
         comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 1\n\
         [application.policy]\nplugin = \"step\"\n\
         params = { scale_out_alarm = \"high\", scale_in_alarm = \"low\" }\n",
    )
    .expect("written");
    for command in ["validate", "once", "run"] {
        let mut args = vec![command, "--config", "bad.toml"];
        if command != "validate" {
            args.insert(1, "--dry-run");
        }
        let (code, stderr) = flinkscale_with_aws(&dir, &args);
        assert_eq!(code, Some(78), "{command}: {stderr}");
        assert!(
            stderr.lines().any(|line| line
                == "bad.toml:17:55: application \"orders\".policy.params.scale_in_alarm: no \
                    alarm with id \"low\" in this application (valid: \"high\")"),
            "{command}: {stderr}"
        );
    }
}

/// `simulate --config` refuses what `validate` refuses (an interpreter
/// whose expression names a series the application lacks ran before, every
/// evaluation failing, exit 0) and an application the scenario does not
/// play (exit 1 before), both with exit 78; and a metric the scenario
/// does not publish (a misspelt name) is said after the run, with what is
/// published, where the run held for want of data without a word.
/// Fails before stop 57: a configuration of several applications with
/// their own policies was reported under the first one's plugin and
/// params alone, in the text, `--json` and the HTML page.
#[test]
fn simulate_names_each_applications_policy_in_a_run_of_several() {
    let dir = scratch("simulate-several");
    std::fs::copy(
        common::workspace().join("tests/scenarios/step.csv"),
        dir.join("step.csv"),
    )
    .expect("copied");
    std::fs::write(
        dir.join("two.toml"),
        "name = \"two\"\ntrace = \"step.csv\"\nduration_secs = 600\n\
         [[application]]\nname = \"orders\"\n[[application]]\nname = \"payments\"\n",
    )
    .expect("written");
    let app = |name: &str, policy: &str| {
        format!(
            "[[application]]\nname = \"{name}\"\n[[application.metric]]\nid = \"cpu\"\n\
             namespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\n\
             dimensions = {{ Application = \"{name}\" }}\nstatistic = \"Maximum\"\n\
             [application.policy]\n{policy}\n"
        )
    };
    std::fs::write(
        dir.join("several.toml"),
        app("orders", "plugin = \"hold\"")
            + &app(
                "payments",
                "plugin = \"target-tracking\"\nparams = { cpu_metric = \"cpu\", target_utilisation = 0.6 }",
            ),
    )
    .expect("written");
    let args = [
        "simulate",
        "--scenario",
        "two.toml",
        "--config",
        "several.toml",
    ];
    let (code, stdout, stderr) = flinkscale_in(&dir, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("application orders: policy hold (hold.wasm, sha256 ")
            && stdout.contains(
                "application payments: policy target-tracking (target-tracking.wasm, sha256 "
            )
            && stdout.contains(r#"params {"cpu_metric":"cpu","target_utilisation":0.6}"#),
        "{stdout}"
    );
    let (code, stdout, stderr) = flinkscale_in(&dir, &[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let policies: Vec<(&str, &str, String)> = report["applications"]
        .as_array()
        .expect("an array of applications")
        .iter()
        .map(|a| {
            (
                a["application"].as_str().unwrap_or_default(),
                a["policy"]["plugin"].as_str().unwrap_or_default(),
                a["policy"]["params"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        policies,
        [
            ("orders", "hold.wasm", "{}".to_owned()),
            (
                "payments",
                "target-tracking.wasm",
                r#"{"cpu_metric":"cpu","target_utilisation":0.6}"#.to_owned()
            ),
        ],
        "{stdout}"
    );
    // One application: the report's policy says it all, as before.
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "step",
            "--policy",
            "hold",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert!(report.get("applications").is_none(), "{stdout}");
}

#[test]
fn simulate_checks_its_configuration_as_validate_does_and_names_unpublished_metrics() {
    let dir = scratch("simulate-config");
    let config = |name: &str, metric_name: &str, interpreter: &str| {
        format!(
            "[[application]]\nname = \"{name}\"\n[[application.metric]]\nid = \"cpu\"\n\
             namespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"{metric_name}\"\n\
             dimensions = {{ Application = \"{name}\" }}\nstatistic = \"Maximum\"\n\
             {interpreter}[application.policy]\nplugin = \"hold\"\n"
        )
    };
    let expression = "[[application.interpreter]]\nplugin = \"expression\"\n\
                      params = { signals = { hot = \"cpuu > 50\" } }\n";
    let cases = [
        (
            "interpreter.toml",
            config("app", "containerCPUUtilization", expression),
            "interpreter[0].params: ",
            "unknown series id `cpuu` (configured series: cpu)",
        ),
        (
            "other-app.toml",
            config("orders", "containerCPUUtilization", ""),
            "error: application \"orders\" of the configuration is not in the scenario",
            "(it has: \"app\"); rename it in a copy of the configuration",
        ),
        // What the simulator cannot play was a run that held throughout,
        // exit 0, not a word.
        (
            "cloudwatch-alarm.toml",
            config("app", "containerCPUUtilization", "")
                + "[[application.alarm]]\nid = \"hot\"\nsource = \"cloudwatch\"\n\
                   alarm_name = \"app-hot\"\n",
            "cloudwatch-alarm.toml: application \"app\": alarm \"hot\" has source = \"cloudwatch\"",
            "import it as a local alarm with `flinkscale import alarms`",
        ),
    ];
    for (file, text, first, second) in cases {
        std::fs::write(dir.join(file), text).expect("written");
        let (code, stdout, stderr) =
            flinkscale_in(&dir, &["simulate", "--scenario", "step", "--config", file]);
        assert_eq!(code, 78, "{file}: {stdout}{stderr}");
        assert!(
            stderr.contains(first) && stderr.contains(second),
            "{file}: {stderr}"
        );
    }
    std::fs::write(
        dir.join("misspelt.toml"),
        config("app", "containerCpuUtilisation", ""),
    )
    .expect("written");
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &[
            "simulate",
            "--scenario",
            "step",
            "--config",
            "misspelt.toml",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("simulated as configured"), "{stderr}");
    assert!(
        stderr.contains(
            "warning: application \"app\" metric \"cpu\" (AWS/KinesisAnalytics \
             containerCpuUtilisation, Application=app) is published by no application of the \
             scenario: it had no datapoint in the whole run"
        ) && stderr.contains("containerCPUUtilization (Application=app)"),
        "{stderr}"
    );
    // A dry-run application is simulated as configured, and said to be.
    std::fs::write(
        dir.join("dry-run.toml"),
        config("app", "containerCPUUtilization", "").replace(
            "[[application.metric]]",
            "mode = \"dry-run\"\n[[application.metric]]",
        ),
    )
    .expect("written");
    let (code, stdout, stderr) = flinkscale_in(
        &dir,
        &["simulate", "--scenario", "step", "--config", "dry-run.toml"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "warning: dry-run.toml: application \"app\" is in mode \"dry-run\": simulated as \
             configured, it decides but never rescales"
        ),
        "{stderr}"
    );
}

/// `FLINKSCALE_LOG_FORMAT=json` does what `--log-format json` does, for a
/// container or unit that sets the environment and not the command line;
/// the flag wins over it, and a value that is no format is refused.
#[test]
fn the_log_format_can_come_from_the_environment() {
    let dir = scratch("log-format-env");
    std::fs::write(
        dir.join("flink.toml"),
        "[[application]]\nname = \"orders\"\ntarget = \"flink\"\n\
         rest_url = \"http://127.0.0.1:9\"\n[application.policy]\nplugin = \"hold\"\n",
    )
    .expect("written");
    let once = |format: &str, flag: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(flag)
            .args(["once", "--dry-run", "--config", "flink.toml"])
            .current_dir(&dir)
            .env("FLINKSCALE_LOG_FORMAT", format)
            .env_remove("FLINKSCALE_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .expect("flinkscale runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, stderr) = once("json", &[]);
    let loaded = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "Plugin loaded.")
        .unwrap_or_else(|| panic!("no JSON line: {stderr}"));
    assert_eq!(loaded["plugin"], "hold", "{loaded}");
    let (_, stderr) = once("json", &["--log-format", "text"]);
    assert!(
        stderr.contains("INFO flinkscale::plugin::reload: Plugin loaded."),
        "{stderr}"
    );
    // Refused by the variable's name, a configuration error (clap named
    // only '--log-format', exit 2), even beside the flag.
    for flags in [&[][..], &["--log-format", "text"][..]] {
        let (code, stderr) = once("xml", flags);
        assert_eq!(code, Some(78), "{stderr}");
        assert!(
            stderr.contains(
                "error: FLINKSCALE_LOG_FORMAT: invalid value \"xml\" (valid: text or json"
            ),
            "{stderr}"
        );
    }
    // Any case; and empty is unset (it failed every command, `validate`
    // too, with "a value is required for '--log-format'").
    let (_, stderr) = once("JSON", &[]);
    assert!(stderr.lines().any(|l| l.starts_with('{')), "{stderr}");
    let (_, stderr) = once("", &[]);
    assert!(
        stderr.contains("INFO flinkscale::plugin::reload: Plugin loaded."),
        "{stderr}"
    );
}

/// Counts and names a command cannot use are refused before anything runs
/// (exit 2, naming the flag and what is valid): `plugin bench
/// --iterations 0` ran one call silently, and `import alarms
/// --application ""` called DescribeAlarms for an application no name
/// can have.
#[test]
fn counts_of_zero_and_empty_application_names_are_refused_as_usage() {
    for (args, says) in [
        (
            vec!["plugin", "bench", "hold", "--iterations", "0"],
            "invalid value '0' for '--iterations <ITERATIONS>'",
        ),
        (
            vec!["plugin", "bench", "hold", "--compiles", "0"],
            "invalid value '0' for '--compiles <COMPILES>'",
        ),
        (
            vec!["import", "alarms", "--application", ""],
            "\"\" is not an MSF application name (valid: 1 to 128 letters",
        ),
    ] {
        let (code, _, stderr) = flinkscale(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `validate a.toml --config b.toml` names two files: the command line is
/// refused (exit 2, as the README's exit statuses say), not the
/// configuration (78).
#[test]
fn two_configuration_files_on_one_command_line_are_a_usage_error() {
    let (code, _, stderr) = flinkscale(&["validate", "a.toml", "--config", "b.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr
            .contains("two configuration files: a.toml (the FILE argument) and b.toml (--config)"),
        "{stderr}"
    );
}
