//! How long the agent takes from its start to its first decisions, with 10
//! applications and compiled plugins already in the on-disk cache (issue
//! #10's bar: 300 ms, AWS latency excluded, so against `flinkscale
//! emulate` on loopback).
//!
//! A measurement, not a pass/fail test of speed (timings belong in
//! benchmarks): it is ignored by default and prints its numbers. Run it on
//! a release build:
//!
//! ```text
//! cargo test --release -p flinkscale --test startup -- --ignored --nocapture
//! ```
//!
//! It starts the emulator with 10 applications, runs the agent once to fill
//! the plugin cache, then starts the real binary `RUNS` times, each with a
//! fresh state folder holding only a copy of that cache (a journal left by
//! an earlier run would make the controllers resume their schedule instead
//! of evaluating at once), and reads from the JSON log on its stderr when
//! each application's first `Evaluated.` event arrives. What it does
//! assert is what a user would notice: every application is evaluated.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Emulator, aws_env, workspace};
use serde_json::Value;

/// Applications in the configuration and the scenario.
const APPLICATIONS: usize = 10;
/// Timed agent starts.
const RUNS: usize = 7;
/// Longest wait for every application's first decision; a bound, not the
/// measurement.
const WAIT: Duration = Duration::from_secs(60);

fn app_name(i: usize) -> String {
    format!("startup-{i:02}")
}

/// A scenario of 10 applications on the constant end-to-end trace.
fn write_scenario(dir: &Path) -> PathBuf {
    let trace = workspace().join("tests/fixtures/scenarios/e2e-constant.csv");
    let trace = toml_edit::Value::from(trace.to_string_lossy().as_ref()).to_string();
    let mut text = format!(
        "name = \"startup\"\n\
         description = \"Ten applications at a constant load, for the startup measurement.\"\n\
         trace = {trace}\n\
         duration_secs = 86400\n"
    );
    for i in 0..APPLICATIONS {
        text.push_str(&format!(
            "\n[[application]]\nname = \"{}\"\nload_factor = 0.4\ninitial_kpu = 2\n\
             min_kpu = 1\nmax_kpu = 8\nupdate_secs = 60\nmetric_delay_secs = 20\n",
            app_name(i)
        ));
    }
    let file = dir.join("scenario.toml");
    std::fs::write(&file, text).expect("the scenario can be written");
    file
}

/// The agent's configuration: each application with two metrics, the
/// reference design's two alarms and the built-in `step`, state in
/// `state_dir` (whose `plugin-cache` is the compiled-plugin cache).
fn write_config(dir: &Path, state_dir: &Path) -> PathBuf {
    let state = toml_edit::Value::from(state_dir.to_string_lossy().as_ref()).to_string();
    let mut text = format!("[agent]\nstate_dir = {state}\n");
    for i in 0..APPLICATIONS {
        let app = app_name(i);
        text.push_str(&format!(
            r#"
[[application]]
name = "{app}"
min_kpu = 1
max_kpu = 8

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "{app}" }}
statistic = "Maximum"
period_secs = 60

[[application.metric]]
id = "records_in"
namespace = "AWS/KinesisAnalytics"
metric_name = "numRecordsInPerSecond"
dimensions = {{ Application = "{app}" }}
statistic = "Average"
period_secs = 60

[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanOrEqualToThreshold"
threshold = 75.0
evaluation_periods = 5
datapoints_to_alarm = 5

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanThreshold"
threshold = 20.0
evaluation_periods = 5
datapoints_to_alarm = 5

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in" }}
"#
        ));
    }
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the configuration can be written");
    file
}

/// An agent process, killed when dropped (also while a failed assertion
/// unwinds).
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one start took, from just before the process was spawned.
struct Run {
    /// Until the `Agent started.` event (plugins loaded, controllers about
    /// to start).
    started: Duration,
    /// Until the first application's first decision.
    first: Duration,
    /// Until every application's first decision.
    all: Duration,
    /// Where the compiled `step` came from (`Some(Disk)`, `Some(Compiled)`),
    /// as the cache's `Plugin component ready.` event says.
    origin: String,
}

/// Starts `flinkscale --log-format json run` against the emulator and
/// waits for every application's first `Evaluated.` event.
fn start_and_time(emulator: &Emulator, config: &Path, dir: &Path) -> Run {
    let mut command = common::agent_command(config, dir);
    command
        // The cache's debug event says where each compiled plugin came from.
        .env("RUST_LOG", "info,flinkscale::plugin::cache=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    aws_env(&mut command, &emulator.endpoint, dir);
    let spawned = Instant::now();
    let mut child = command.spawn().expect("the agent starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let agent = Agent(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });

    let mut started = None;
    let mut origin = String::new();
    let mut first_decisions = std::collections::BTreeMap::new();
    let mut log = Vec::new();
    let deadline = spawned + WAIT;
    while first_decisions.len() < APPLICATIONS {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((at, line)) = rx.recv_timeout(left) else {
            panic!(
                "{} of {APPLICATIONS} applications decided within {WAIT:?}; the agent's log:\n{}",
                first_decisions.len(),
                log.join("\n")
            );
        };
        // The JSON log flattens an event's fields into the line itself
        // (`flatten_event`), beside `timestamp`, `level` and `target`.
        let fields = serde_json::from_str::<Value>(&line).unwrap_or_default();
        match fields["message"].as_str() {
            Some("Agent started.") => started = Some(at - spawned),
            Some("Plugin component ready.") => {
                origin = fields["origin"].as_str().unwrap_or("?").to_owned();
            }
            Some("Evaluated.") => {
                if let Some(app) = fields["application"].as_str() {
                    first_decisions
                        .entry(app.to_owned())
                        .or_insert(at - spawned);
                }
            }
            _ => {}
        }
        log.push(line);
    }
    drop(agent);
    let mut times: Vec<Duration> = first_decisions.values().copied().collect();
    times.sort();
    Run {
        started: started.unwrap_or_default(),
        first: times[0],
        all: times[times.len() - 1],
        origin,
    }
}

/// Copies the compiled-plugin cache into a fresh state folder, keeping its
/// owner-only permissions (the cache refuses a folder others can write).
fn copy_cache(from: &Path, state_dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let to = state_dir.join("plugin-cache");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&to)
        .expect("the cache folder can be created");
    let mut copied = 0;
    for entry in std::fs::read_dir(from).expect("the warm cache is readable") {
        let entry = entry.expect("a cache entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("an artifact copies");
            copied += 1;
        }
    }
    assert!(
        copied > 0,
        "the warm-up run left no compiled plugin in {}",
        from.display()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "a measurement: run it on a release build with --ignored --nocapture"]
fn agent_start_to_first_decision_with_ten_applications_and_cached_plugins() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let scenario = write_scenario(dir.path());
    // Twenty minutes of history: every metric has datapoints at once.
    let emulator = Emulator::start(&scenario, 1.0, &["--history-secs", "1200"], dir.path());

    let warm_state = dir.path().join("warm-state");
    let config = write_config(dir.path(), &warm_state);
    let cold = start_and_time(&emulator, &config, dir.path());
    println!(
        "cold start (compiles step into the cache): all {APPLICATIONS} decided after {:.1} ms",
        ms(cold.all)
    );
    assert_eq!(
        cold.origin, "Some(Compiled)",
        "the first start compiles step"
    );

    let mut runs = Vec::new();
    for run in 0..RUNS {
        let state = dir.path().join(format!("state-{run}"));
        copy_cache(&warm_state.join("plugin-cache"), &state);
        let config = write_config(dir.path(), &state);
        let timed = start_and_time(&emulator, &config, dir.path());
        assert_eq!(
            timed.origin, "Some(Disk)",
            "run {run} did not load step from the copied cache"
        );
        println!(
            "run {run}: agent started {:.1} ms, first decision {:.1} ms, all {APPLICATIONS} {:.1} ms",
            ms(timed.started),
            ms(timed.first),
            ms(timed.all)
        );
        runs.push(timed);
    }
    let mut all: Vec<f64> = runs.iter().map(|r| ms(r.all)).collect();
    all.sort_by(f64::total_cmp);
    let mut started: Vec<f64> = runs.iter().map(|r| ms(r.started)).collect();
    started.sort_by(f64::total_cmp);
    println!(
        "start to every application's first decision, {RUNS} runs: median {:.1} ms, min {:.1} ms, \
         max {:.1} ms (agent started: median {:.1} ms)",
        all[RUNS / 2],
        all[0],
        all[RUNS - 1],
        started[RUNS / 2]
    );
}
