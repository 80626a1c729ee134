//! What one agent costs with many applications, in steady state: resident
//! memory, CPU per evaluation, threads, open files, how late evaluations
//! come when every application falls due at once, AWS calls per minute
//! and log volume (README "Sizing: many applications").
//!
//! A measurement, not a pass/fail test of speed: it is ignored by default
//! and prints its figures. Run it on a release build:
//!
//! ```text
//! cargo test --release -p flinkscale --test sizing -- --ignored --nocapture
//! ```
//!
//! For each number of applications (`FLINKSCALE_SIZING_APPS`, default
//! `10,50,200`) and each policy (`FLINKSCALE_SIZING_POLICIES`, default
//! `step,rate`) it starts `flinkscale emulate` with that many applications
//! at a constant load (twenty minutes of history, so every metric has
//! datapoints at once; GetMetricData pages of 100,800 datapoints, as
//! CloudWatch's) and the real binary `flinkscale run` against it, every
//! application evaluated every minute (`lazy_polling = false`: with it,
//! `step` would poll every 3 or 4 minutes and the window below would hold no
//! evaluation). All applications start together, so all fall due at the
//! same instant, every minute. After a 30 s settling time it measures
//! `FLINKSCALE_SIZING_MINUTES` (default 2) whole minutes, sampling
//! `/proc/PID/status` and `/proc/PID/stat` every second, and reads every
//! `Evaluated.` event from the agent's JSON log as it arrives and every
//! AWS call from the emulator's call log. What it asserts is what makes
//! the figures mean something: every application is evaluated once a
//! minute in the window.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Emulator, aws_env, now_ms, workspace};
use serde_json::Value;

/// Settling time after the agent started, before the measured window.
const SETTLE: Duration = Duration::from_secs(30);
/// The evaluation interval (every metric's period).
const INTERVAL: Duration = Duration::from_secs(60);

fn app_name(i: usize) -> String {
    format!("sizing-{i:03}")
}

/// A comma-separated list from the environment, or `default`.
fn list<T: std::str::FromStr>(key: &str, default: &str) -> Vec<T> {
    let text = std::env::var(key).unwrap_or_else(|_| default.to_owned());
    text.split(',')
        .map(|item| {
            item.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key}: {item:?} is not valid"))
        })
        .collect()
}

/// A scenario of `n` applications on the constant end-to-end trace.
fn write_scenario(dir: &Path, n: usize) -> PathBuf {
    let trace = workspace().join("tests/fixtures/scenarios/e2e-constant.csv");
    let trace = toml_edit::Value::from(trace.to_string_lossy().as_ref()).to_string();
    let mut text = format!(
        "name = \"sizing\"\n\
         description = \"Many applications at a constant load, for the sizing measurement.\"\n\
         trace = {trace}\n\
         duration_secs = 86400\n"
    );
    for i in 0..n {
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

/// One metric of `app` at a 60 s period.
fn metric(app: &str, id: &str, name: &str, statistic: &str) -> String {
    format!(
        r#"
[[application.metric]]
id = "{id}"
namespace = "AWS/KinesisAnalytics"
metric_name = "{name}"
dimensions = {{ Application = "{app}" }}
statistic = "{statistic}"
period_secs = 60
"#
    )
}

/// The agent's configuration: `n` applications with `policy`: `step`
/// with the reference design's CPU metric and two alarms, or `rate` with
/// `numRecordsInPerSecond` and `busyTimeMsPerSecond`.
fn write_config(dir: &Path, n: usize, policy: &str) -> PathBuf {
    let state = dir.join("state");
    let state = toml_edit::Value::from(state.to_string_lossy().as_ref()).to_string();
    let mut text = format!("[agent]\nstate_dir = {state}\nlazy_polling = false\n");
    for i in 0..n {
        let app = app_name(i);
        text.push_str(&format!(
            "\n[[application]]\nname = \"{app}\"\nmin_kpu = 1\nmax_kpu = 8\n"
        ));
        match policy {
            "step" => {
                text.push_str(&metric(&app, "cpu", "containerCPUUtilization", "Maximum"));
                text.push_str(
                    r#"
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
params = { scale_out_alarm = "scale-out", scale_in_alarm = "scale-in" }
"#,
                );
            }
            "rate" => {
                text.push_str(&metric(
                    &app,
                    "records_in",
                    "numRecordsInPerSecond",
                    "Average",
                ));
                text.push_str(&metric(&app, "busy", "busyTimeMsPerSecond", "Average"));
                text.push_str("\n[application.policy]\nplugin = \"rate\"\n");
            }
            other => panic!("FLINKSCALE_SIZING_POLICIES: {other:?} is not step or rate"),
        }
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

/// What the agent's JSON log said, as it arrived.
#[derive(Default)]
struct Log {
    /// When `Agent started.` arrived.
    started: Option<Instant>,
    /// Per application, when each `Evaluated.` arrived.
    evaluated: HashMap<String, Vec<Instant>>,
    /// Lines and bytes of the log.
    lines: u64,
    bytes: u64,
    /// The last lines, for a failure message.
    tail: Vec<String>,
}

/// What `/proc` says of a process at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// utime + stime, seconds.
    cpu_secs: f64,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Sample {
        cpu_secs: ticks / hz,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        fds,
    }
}

/// The figures of one run.
struct Figures {
    n: usize,
    policy: String,
    rss_mib: f64,
    hwm_mib: f64,
    threads: u64,
    fds: u64,
    cpu_ms_per_evaluation: f64,
    cpu_percent: f64,
    evaluations: usize,
    late_max_ms: f64,
    late_p99_ms: f64,
    spread_max_ms: f64,
    calls_per_minute: BTreeMap<String, f64>,
    log_bytes_per_evaluation: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn measure(n: usize, policy: &str, minutes: u32) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let scenario = write_scenario(dir.path(), n);
    let emulator = Emulator::start(
        &scenario,
        1.0,
        &["--history-secs", "1200", "--page-size", "100800"],
        dir.path(),
    );
    let config = write_config(dir.path(), n, policy);

    let mut command = common::agent_command(&config, dir.path());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    aws_env(&mut command, &emulator.endpoint, dir.path());
    let mut child = command.spawn().expect("the agent starts");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr is piped");
    let agent = Agent(child);
    let log = Arc::new(Mutex::new(Log::default()));
    let reader = std::thread::spawn({
        let log = log.clone();
        move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let fields = serde_json::from_str::<Value>(&line).unwrap_or_default();
                let mut log = log.lock().expect("the log");
                log.lines += 1;
                log.bytes += line.len() as u64 + 1;
                match fields["message"].as_str() {
                    Some("Agent started.") => log.started = Some(at),
                    Some("Evaluated.") => {
                        if let Some(app) = fields["application"].as_str() {
                            log.evaluated.entry(app.to_owned()).or_default().push(at);
                        }
                    }
                    _ => {}
                }
                if log.tail.len() >= 20 {
                    log.tail.remove(0);
                }
                log.tail.push(line);
            }
        }
    });

    // Wait for the start, then settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        if let Some(at) = log.lock().expect("the log").started {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not start: {:?}",
            log.lock().expect("the log").tail
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep((started + SETTLE).saturating_duration_since(Instant::now()));
    let from = Instant::now();
    let from_ms = now_ms();
    let first = sample(pid);
    let (mut threads, mut fds) = (first.threads, first.fds);
    let until = from + INTERVAL * minutes;
    let mut last = first;
    while Instant::now() < until {
        std::thread::sleep(
            Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())),
        );
        last = sample(pid);
        threads = threads.max(last.threads);
        fds = fds.max(last.fds);
    }
    let to_ms = now_ms();
    let window_minutes = (to_ms - from_ms) as f64 / 60_000.0;

    let calls = emulator.calls();
    drop(agent);
    let _ = reader.join();
    let log = log.lock().expect("the log");

    let mut calls_per_minute = BTreeMap::new();
    for call in &calls {
        let at = call["wall_ms"].as_i64().unwrap_or(0);
        if (from_ms..to_ms).contains(&at) {
            let operation = call["operation"].as_str().unwrap_or("?").to_owned();
            *calls_per_minute.entry(operation).or_insert(0.0) += 1.0 / window_minutes;
        }
    }

    // Lateness: how much longer than the interval each evaluation in the
    // window came after the same application's previous one; spread: from
    // the first to the last application of each round.
    let mut late = Vec::new();
    let mut evaluations = 0;
    let mut rounds: BTreeMap<usize, (Instant, Instant)> = BTreeMap::new();
    for i in 0..n {
        let times = log.evaluated.get(&app_name(i)).cloned().unwrap_or_default();
        let in_window = times.iter().filter(|t| (from..until).contains(*t)).count();
        assert_eq!(
            in_window,
            minutes as usize,
            "{} was evaluated {in_window} times in {minutes} minutes; the agent's log ends:\n{}",
            app_name(i),
            log.tail.join("\n")
        );
        evaluations += in_window;
        for (round, pair) in times.windows(2).enumerate() {
            if (from..until).contains(&pair[1]) {
                let gap = pair[1] - pair[0];
                late.push((gap.as_secs_f64() - INTERVAL.as_secs_f64()) * 1e3);
            }
            let entry = rounds.entry(round + 1).or_insert((pair[1], pair[1]));
            entry.0 = entry.0.min(pair[1]);
            entry.1 = entry.1.max(pair[1]);
        }
    }
    late.sort_by(f64::total_cmp);
    let spread_max_ms = rounds
        .values()
        .filter(|(first, _)| (from..until).contains(first))
        .map(|(first, last)| (*last - *first).as_secs_f64() * 1e3)
        .fold(0.0, f64::max);
    let cpu = last.cpu_secs - first.cpu_secs;
    let elapsed = (until - from).as_secs_f64();
    Figures {
        n,
        policy: policy.to_owned(),
        rss_mib: last.rss_kib as f64 / 1024.0,
        hwm_mib: last.hwm_kib as f64 / 1024.0,
        threads,
        fds,
        cpu_ms_per_evaluation: cpu * 1e3 / evaluations as f64,
        cpu_percent: cpu * 100.0 / elapsed,
        evaluations,
        late_max_ms: late.last().copied().unwrap_or(f64::NAN),
        late_p99_ms: percentile(&late, 0.99),
        spread_max_ms,
        calls_per_minute,
        log_bytes_per_evaluation: log.bytes as f64
            / log.evaluated.values().map(Vec::len).sum::<usize>() as f64,
    }
}

#[test]
#[ignore = "a measurement: run it on a release build with --ignored --nocapture"]
fn steady_state_cost_of_many_applications() {
    let sizes: Vec<usize> = list("FLINKSCALE_SIZING_APPS", "10,50,200");
    let policies: Vec<String> = list("FLINKSCALE_SIZING_POLICIES", "step,rate");
    let minutes: u32 = list("FLINKSCALE_SIZING_MINUTES", "2")[0];
    assert!(minutes >= 1, "FLINKSCALE_SIZING_MINUTES must be at least 1");
    let mut all = Vec::new();
    for policy in &policies {
        for &n in &sizes {
            let f = measure(n, policy, minutes);
            println!(
                "{} x {}: RSS {:.1} MiB (peak {:.1}), threads {}, fds {}, CPU {:.2} ms/evaluation ({:.2} % of a core), \
                 {} evaluations, lateness p99 {:.0} ms max {:.0} ms, round spread max {:.1} ms, \
                 calls/min {:?}, log {:.0} B/evaluation",
                f.n,
                f.policy,
                f.rss_mib,
                f.hwm_mib,
                f.threads,
                f.fds,
                f.cpu_ms_per_evaluation,
                f.cpu_percent,
                f.evaluations,
                f.late_p99_ms,
                f.late_max_ms,
                f.spread_max_ms,
                f.calls_per_minute,
                f.log_bytes_per_evaluation
            );
            all.push(f);
        }
    }
    println!();
    println!(
        "| applications | policy | RSS MiB (peak) | threads | open files | CPU ms per evaluation | CPU % of a core | lateness p99 / max ms | round spread ms | DescribeApplication/min | GetMetricData/min | log bytes per evaluation |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &all {
        let per = |op: &str| f.calls_per_minute.get(op).copied().unwrap_or(0.0);
        println!(
            "| {} | `{}` | {:.1} ({:.1}) | {} | {} | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |",
            f.n,
            f.policy,
            f.rss_mib,
            f.hwm_mib,
            f.threads,
            f.fds,
            f.cpu_ms_per_evaluation,
            f.cpu_percent,
            f.late_p99_ms,
            f.late_max_ms,
            f.spread_max_ms,
            per("DescribeApplication"),
            per("GetMetricData"),
            f.log_bytes_per_evaluation
        );
    }
}
