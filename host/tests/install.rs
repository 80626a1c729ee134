//! An installed `flinkscale` runs its own policies with no source checkout:
//! `cargo install` it into a temporary root, then run `demo`, `simulate`
//! and `run` (against `flinkscale emulate`) from an empty folder outside
//! the checkout, with no plugin folder anywhere. Each must work and log
//! that the built-in plugin ran, with its sha256.
//!
//! The install reuses this build's target directory (`CARGO_TARGET_DIR`)
//! and its dev profile (`--debug`), so it compiles only the `flinkscale`
//! crate itself, not a second copy of its dependencies; the built-in
//! plugins come from the same `<target>/builtin-plugins` build.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Emulator, Running, aws_env, log_events, scenario, target_dir, wait_until, workspace};
use flinkscale::plugin::builtin;

/// `cargo install --path host --root ROOT`; returns the binary.
fn install(root: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut command = Command::new(cargo);
    // The environment of a user's shell, not of this test: cargo gives a
    // test process variables meant for its own crate (OUT_DIR, CARGO_PKG_*,
    // ...), which would leak into the compiles of crates that do not set
    // them and make cargo rebuild half the dependency tree, twice (once
    // here, once for the next `cargo test`).
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        let keep = matches!(
            key_text.as_ref(),
            "PATH" | "HOME" | "CARGO_HOME" | "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN" | "TMPDIR"
        );
        if keep {
            command.env(key, value);
        }
    }
    let mut child = command
        .args(["install", "--debug", "--locked", "--offline", "--path"])
        .arg(workspace().join("host"))
        .arg("--root")
        .arg(root)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    // A wait that cannot hang the suite: should the target directory be
    // locked by another cargo, say so instead of waiting forever.
    let deadline = Duration::from_secs(900);
    while child.try_wait().expect("cargo can be waited for").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!(
                "cargo install did not finish within {} s",
                deadline.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().expect("cargo's output");
    assert!(
        output.status.success(),
        "cargo install failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "cargo install (incremental, dev profile) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let bin = root.join("bin").join("flinkscale");
    assert!(bin.is_file(), "{} was not installed", bin.display());
    bin
}

/// Runs the installed binary in `dir` with no AWS or plugin environment
/// from this machine.
fn run_in(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(bin);
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    aws_env(&mut command, "http://127.0.0.1:9", dir);
    command.output().expect("the installed binary runs")
}

/// The one "Plugin loaded." event of a JSON log, checked to be the built-in
/// `name` with its sha256.
fn assert_builtin_loaded(log: &str, name: &str) {
    let expected = builtin::find(name).expect("a built-in");
    let loaded = log_events(log, "Plugin loaded.");
    assert!(!loaded.is_empty(), "no \"Plugin loaded.\" event in:\n{log}");
    for event in &loaded {
        assert_eq!(event["plugin"], name, "{event}");
        assert_eq!(event["source"], "built-in", "{event}");
        assert_eq!(
            event["sha256"],
            builtin::sha256_hex(expected.bytes),
            "{event}"
        );
        assert_eq!(event["plugin_version"], "0.1.0", "{event}");
    }
}

#[test]
fn an_installed_binary_runs_demo_simulate_and_run_with_its_built_in_plugins() {
    let root = tempfile::tempdir().expect("install root");
    let bin = install(root.path());
    // Outside the checkout, and empty: no plugins/, no config/, no tests/.
    let empty = tempfile::tempdir().expect("an empty folder");
    assert!(!empty.path().starts_with(workspace()));
    let here = empty.path();

    // `demo`: the bundled scenario and configuration, played fast.
    let demo = run_in(
        &bin,
        here,
        &["--log-format", "json", "demo", "--speed", "100"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&demo.stdout),
        String::from_utf8_lossy(&demo.stderr),
    );
    assert!(demo.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("summary (model version"), "{stdout}");
    // Played this fast on a busy machine, the demo may end before step has
    // a reason to scale (the `run` below checks that it does): here it must
    // have decided, which needs the built-in loaded and called.
    assert!(
        stdout.contains("\n         hold: ") || stdout.contains("\n         SCALE TO "),
        "the built-in step decided at least once: {stdout}"
    );
    assert_builtin_loaded(&stderr, "step");

    // `simulate`: a shipped scenario with the built-in `rate`.
    let step_scenario = workspace().join("tests/scenarios/step.toml");
    let simulate = run_in(
        &bin,
        here,
        &[
            "--log-format",
            "json",
            "simulate",
            "--scenario",
            &step_scenario.to_string_lossy(),
            "--policy",
            "rate",
            "--json",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&simulate.stdout),
        String::from_utf8_lossy(&simulate.stderr),
    );
    assert!(
        simulate.status.success(),
        "simulate failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("simulate --json printed no JSON ({e}): {stdout}"));
    let rate = builtin::find("rate").expect("rate is built in");
    assert_eq!(report["policy"]["plugin"], "rate.wasm", "{report}");
    assert_eq!(
        report["policy"]["wasm_sha256"],
        builtin::sha256_hex(rate.bytes),
        "{report}"
    );
    assert!(
        report["rescales"].as_u64().unwrap_or(0) > 0,
        "rate scaled on the step scenario: {report}"
    );
    assert_builtin_loaded(&stderr, "rate");

    // `run` against `emulate`, with `plugin = "step"` and no plugin_dir.
    let emulator = Emulator::start_bin(&bin, &scenario("e2e-scale.toml"), 20.0, &[], here);
    let config = here.join("agent.toml");
    std::fs::write(
        &config,
        r#"[[application]]
name = "e2e-app"
min_kpu = 2
max_kpu = 7
update_poll_secs = 1
grace_period_secs = 600
evaluation_interval_secs = 2

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = { Application = "e2e-app" }
statistic = "Average"
period_secs = 10

# Always in ALARM (the application runs at ~24 % CPU), so that step
# decides a scale-out the emulator can see.
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 1.0
evaluation_periods = 1
datapoints_to_alarm = 1

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanThreshold"
threshold = 0.5
evaluation_periods = 1
datapoints_to_alarm = 1

[application.policy]
plugin = "step"
params = { scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2 }
"#,
    )
    .expect("the configuration can be written");
    let validate = run_in(&bin, here, &["validate", "agent.toml"]);
    assert!(
        validate.status.success(),
        "validate accepts a built-in name with no plugin file: {}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let mut command = Command::new(&bin);
    command
        .args(["--log-format", "json", "run", "--config", "agent.toml"])
        .current_dir(here)
        .env("RUST_LOG", "info");
    aws_env(&mut command, &emulator.endpoint, here);
    let agent = Running::spawn("installed flinkscale run", command, &here.join("agent.log"));
    wait_until(
        Duration::from_secs(120),
        "the installed agent's step to send UpdateApplication",
        || {
            agent.assert_running(|| agent.log_tail(40));
            emulator
                .calls()
                .iter()
                .any(|call| call["operation"] == "UpdateApplication")
        },
        || format!("{}\n{}", emulator.call_summary(), agent.log_tail(40)),
    );
    assert_builtin_loaded(&agent.log(), "step");
}
