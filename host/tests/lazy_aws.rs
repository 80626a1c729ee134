//! The AWS SDK only when an application calls AWS: the real `flinkscale
//! run` on a configuration of Flink jobs only starts without loading the
//! SDK's configuration (no region or credential lookup, so no instance
//! metadata service asked and waited for, and none of its warnings), and a
//! SIGHUP that adds MSF applications loads it then, once, and the MSF
//! applications it adds are evaluated against the emulator.
//!
//! The Flink cluster is a loopback stub that knows no job: the Flink
//! application's controller runs, finds no job and backs off, which is all
//! these tests need of it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Emulator, Running, aws_env, log_events, scenario, wait_until};

/// How long any wait of these tests may take: generous, for a loaded
/// 2-core CI machine compiling plugins.
const PATIENCE: Duration = Duration::from_secs(90);

/// The message the agent logs when it loads the AWS SDK's configuration.
const SDK_LOADED: &str = "AWS SDK configuration loaded.";

/// A loopback listener that accepts connections and never answers, as an
/// instance metadata service that hangs would: it counts the connections.
struct Silent {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            // Held open, unanswered, until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { port, connections }
    }
}

/// A Flink REST API on loopback that runs no job: `GET /jobs/overview`
/// lists none, anything else is 404. It keeps every request line.
struct NoJobsFlink {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl NoJobsFlink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(line) = answer(stream) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reads one request's head and answers it; its request line.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next()?.to_owned();
    let (status, body) = if line.starts_with("GET /jobs/overview ") {
        ("200 OK", r#"{"jobs":[]}"#)
    } else {
        ("404 Not Found", r#"{"errors":["Not found."]}"#)
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    Some(line)
}

/// The `[[application]]` of a Flink job at `rest_url`, evaluated every
/// second.
fn flink_application(rest_url: &str) -> String {
    format!(
        r#"
[[application]]
name = "orders"
target = "flink"
rest_url = "{rest_url}"
evaluation_interval_secs = 1
update_poll_secs = 1

[application.policy]
plugin = "hold"
"#
    )
}

/// An MSF `[[application]]` of the emulator's reload scenario, evaluated
/// every second on its CPU from CloudWatch.
fn msf_application(name: &str) -> String {
    common::cpu_application(name, 1, "", "plugin = \"hold\"\n")
}

/// Writes `dir/agent.toml` (state in `dir/state`) with `applications`,
/// aside and renamed over the old file as an operator would.
fn write_config(dir: &Path, applications: &[String]) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!("[agent]\nstate_dir = \"state\"\n{}", applications.concat());
    common::replace(&path, text.as_bytes());
    path
}

/// `flinkscale --log-format json run` on `config` in `dir`, with no AWS
/// environment of this machine and `env` on top.
fn run_agent(config: &Path, dir: &Path, env: &[(&str, String)]) -> Running {
    let mut command = common::agent_command(config, dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    Running::spawn("flinkscale run", command, &dir.join("agent.log"))
}

/// The log lines the AWS SDK wrote (its crates' targets), and any line
/// that speaks of the instance metadata service.
fn sdk_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| {
            let target = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|e| e["target"].as_str().map(str::to_owned))
                .unwrap_or_default();
            target.starts_with("aws_")
                || line.contains("IMDS")
                || line.to_ascii_lowercase().contains("metadata")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_flink_only_configuration_starts_without_touching_aws() {
    let dir = tempfile::tempdir().unwrap();
    let imds = Silent::start();
    let flink = NoJobsFlink::start();
    let config = write_config(dir.path(), &[flink_application(&flink.url)]);
    let started = Instant::now();
    let agent = run_agent(
        &config,
        dir.path(),
        &[
            // No region, no credentials; the instance metadata service, had
            // the SDK asked it, would hang.
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://127.0.0.1:{}", imds.port),
            ),
            (
                "AWS_CONFIG_FILE",
                dir.path().join("no-aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-aws-credentials").display().to_string(),
            ),
        ],
    );
    let diagnose = || agent.log_tail(40);
    let until_started = wait_until(
        PATIENCE,
        "the agent's start",
        || !log_events(&agent.log(), "Agent started.").is_empty(),
        diagnose,
    );
    wait_until(
        PATIENCE,
        "the Flink application's controller to ask the cluster for its job",
        || {
            flink
                .requests()
                .iter()
                .any(|l| l.starts_with("GET /jobs/overview "))
        },
        diagnose,
    );
    eprintln!(
        "started {:.0} ms after spawn",
        until_started.as_secs_f64() * 1000.0
    );
    agent.assert_running(diagnose);
    let log = agent.log();
    assert_eq!(
        imds.connections.load(Ordering::SeqCst),
        0,
        "the instance metadata service was asked\n{log}"
    );
    assert_eq!(sdk_lines(&log), Vec::<String>::new(), "{log}");
    assert!(log_events(&log, SDK_LOADED).is_empty(), "{log}");
    // Nothing was waited for: the start took what compiling the plugin
    // takes, well under one instance metadata timeout on top.
    assert!(
        started.elapsed() < PATIENCE,
        "{:?} to start",
        started.elapsed()
    );
}

/// The DescribeApplication calls of `application` in the emulator's log.
fn describes(emulator: &Emulator, application: &str) -> usize {
    emulator
        .calls()
        .iter()
        .filter(|c| c["operation"] == "DescribeApplication" && c["application"] == application)
        .count()
}

#[test]
fn sighup_adding_msf_applications_loads_the_sdk_once_and_scales_them() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), 20.0, &[], dir.path());
    let flink = NoJobsFlink::start();
    let config = write_config(dir.path(), &[flink_application(&flink.url)]);
    let mut command = Command::new("true");
    aws_env(&mut command, &emulator.endpoint, dir.path());
    let env: Vec<(String, String)> = command
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let agent = run_agent(&config, dir.path(), &env);
    let diagnose = || {
        format!(
            "{}\n{}\n{}",
            emulator.call_summary(),
            agent.log_tail(60),
            emulator.process.log_tail(20)
        )
    };
    wait_until(
        PATIENCE,
        "the Flink application's first evaluation",
        || {
            !log_events(&agent.log(), "Agent started.").is_empty()
                && flink
                    .requests()
                    .iter()
                    .any(|l| l.starts_with("GET /jobs/overview "))
        },
        diagnose,
    );
    assert!(log_events(&agent.log(), SDK_LOADED).is_empty());

    write_config(
        dir.path(),
        &[flink_application(&flink.url), msf_application("added")],
    );
    common::hangup(&agent);
    wait_until(
        PATIENCE,
        "two evaluations of the MSF application the reload added",
        || describes(&emulator, "added") >= 2,
        diagnose,
    );
    let summary = &log_events(&agent.log(), "Configuration reloaded.")[0];
    assert_eq!(summary["added"], "added", "{summary}");

    // A second MSF application shares the SDK configuration and clients
    // the first reload made.
    write_config(
        dir.path(),
        &[
            flink_application(&flink.url),
            msf_application("added"),
            msf_application("keep"),
        ],
    );
    common::hangup(&agent);
    wait_until(
        PATIENCE,
        "two evaluations of the second MSF application",
        || describes(&emulator, "keep") >= 2,
        diagnose,
    );
    let log = agent.log();
    assert!(
        emulator
            .calls()
            .iter()
            .any(|c| c["operation"] == "GetMetricData"),
        "CloudWatch was read\n{}",
        diagnose()
    );
    assert_eq!(
        log_events(&log, SDK_LOADED).len(),
        1,
        "one SDK configuration per agent\n{}",
        diagnose()
    );
    agent.assert_running(diagnose);
}

/// A SIGHUP that adds an MSF application to an agent whose SDK chain finds
/// no region (none set, no profile, no instance metadata) leaves that
/// application out, saying why, and the agent and its Flink job running:
/// each of its calls would have failed as "Missing Region", for ever.
#[test]
fn sighup_adding_an_msf_application_without_a_region_leaves_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let flink = NoJobsFlink::start();
    let config = write_config(dir.path(), &[flink_application(&flink.url)]);
    let mut command = Command::new("true");
    aws_env(&mut command, "http://127.0.0.1:9", dir.path());
    let env: Vec<(String, String)> = command
        .get_envs()
        .filter(|(k, _)| *k != "AWS_REGION")
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let agent = run_agent(&config, dir.path(), &env);
    let diagnose = || agent.log_tail(40);
    wait_until(
        PATIENCE,
        "the agent's start",
        || !log_events(&agent.log(), "Agent started.").is_empty(),
        diagnose,
    );
    write_config(
        dir.path(),
        &[flink_application(&flink.url), msf_application("added")],
    );
    common::hangup(&agent);
    wait_until(
        PATIENCE,
        "the reload",
        || !log_events(&agent.log(), "Configuration reloaded.").is_empty(),
        diagnose,
    );
    let log = agent.log();
    let refused = log_events(&log, "Application not (re)started.");
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(refused[0]["application"], "added", "{log}");
    let error = refused[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("no AWS region for application \"added\": set `region` under [agent]"),
        "{error}"
    );
    let hint = refused[0]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("restart the agent"), "{hint}");
    assert_eq!(
        log_events(&log, "Configuration reloaded.")[0]["added"],
        "",
        "{log}"
    );
    let asked = flink.requests().len();
    wait_until(
        PATIENCE,
        "the Flink application's next evaluation",
        || flink.requests().len() > asked,
        diagnose,
    );
    assert!(!log.contains("Missing Region"), "{log}");
    agent.assert_running(diagnose);
}
