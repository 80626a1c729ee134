//! Real Flink (issue #13, first slice): starts a standalone Flink 2.2 session
//! cluster from the `apache-flink` PyPI package (scripts/flink-cluster.sh),
//! submits a load job (tests/flink/load_job.py), and drives Flink's own REST
//! API the way the coming `flink` target will: find the job by name, read its
//! vertices, parallelism and per-vertex metrics, and rescale it in place with
//! the adaptive scheduler (`PUT /jobs/{id}/resource-requirements`), following
//! until every vertex runs at the new parallelism. Nothing here is an
//! imitation: every answer checked comes from Flink.
//!
//! Needs the `.venv` with tests/flink/requirements.txt and a Java 17 runtime
//! (scripts/test.sh installs both). One test starts the cluster once and runs
//! the steps in order, printing the start-up and rescale times it measured.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flinkscale::target::flink::FlinkTarget;
use flinkscale::target::{AppStatus, ScalingTarget, TargetError};
use serde_json::{Value, json};

/// The repository root, where scripts/ and .venv live.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running cluster; stopped when dropped, so a failing assertion does not
/// leave JVMs behind.
struct Cluster {
    dir: tempfile::TempDir,
    host_port: String,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let port = free_port_pair();
        let out = Command::new(repo_root().join("scripts/flink-cluster.sh"))
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()
            .expect("running scripts/flink-cluster.sh");
        let cluster = Cluster {
            dir,
            host_port: format!("127.0.0.1:{port}"),
        };
        assert!(
            out.status.success(),
            "flink-cluster.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn rest_url(&self) -> String {
        format!("http://{}", self.host_port)
    }

    fn startup_ms(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.path().join("startup_ms"))
            .expect("flink-cluster.sh writes startup_ms once ready");
        text.trim().parse().expect("startup_ms holds a number")
    }

    /// One HTTP/1.1 exchange with the REST API; the answer's status and JSON body.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut stream =
            TcpStream::connect(&self.host_port).expect("connecting to Flink's REST API");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("setting a read timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host_port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("sending the request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("reading the answer");
        let raw = String::from_utf8(raw).expect("Flink answers in UTF-8");
        let (head, payload) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("an HTTP status line");
        let json = serde_json::from_str(payload)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {payload}"));
        (status, json)
    }

    fn get(&self, path: &str) -> Value {
        let (status, json) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {json}");
        json
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/flink-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A REST port whose successor (the JobManager's RPC port) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = first.local_addr().expect("its address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no pair of free adjacent loopback ports");
}

/// Polls `check` until it returns Some, or fails naming `what`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The job's vertices as (id, name, parallelism, status).
fn vertices(cluster: &Cluster, job: &str) -> Vec<(String, String, u64, String)> {
    let detail = cluster.get(&format!("/jobs/{job}"));
    detail["vertices"]
        .as_array()
        .expect("a job's vertices")
        .iter()
        .map(|v| {
            (
                v["id"].as_str().expect("vertex id").to_owned(),
                v["name"].as_str().expect("vertex name").to_owned(),
                v["parallelism"].as_u64().expect("vertex parallelism"),
                v["status"].as_str().expect("vertex status").to_owned(),
            )
        })
        .collect()
}

/// Every vertex's requirement set to exactly `parallelism`, then followed
/// until the job runs with all vertices at it; returns how long that took.
fn rescale(cluster: &Cluster, job: &str, parallelism: u64) -> Duration {
    let path = format!("/jobs/{job}/resource-requirements");
    let current = cluster.get(&path);
    let wanted: serde_json::Map<String, Value> = current
        .as_object()
        .expect("resource requirements per vertex")
        .keys()
        .map(|id| {
            let bounds = json!({"lowerBound": 1, "upperBound": parallelism});
            (id.clone(), json!({ "parallelism": bounds }))
        })
        .collect();
    let wanted = Value::Object(wanted);
    let started = Instant::now();
    let (status, answer) = cluster.call("PUT", &path, Some(&wanted));
    assert_eq!(status, 200, "PUT {path}: {answer}");
    assert_eq!(
        cluster.get(&path),
        wanted,
        "Flink reads back the requirements just set"
    );
    wait_for(
        &format!("every vertex RUNNING at parallelism {parallelism}"),
        Duration::from_secs(90),
        || {
            let state = cluster.get(&format!("/jobs/{job}"))["state"].clone();
            let all = vertices(cluster, job)
                .iter()
                .all(|(_, _, p, s)| *p == parallelism && s == "RUNNING");
            (state == "RUNNING" && all).then_some(())
        },
    );
    started.elapsed()
}

#[test]
fn a_real_flink_cluster_runs_the_load_job_and_rescales_in_place() {
    let cluster = Cluster::start();
    let startup = cluster.startup_ms();
    let overview = cluster.get("/overview");
    assert_eq!(overview["flink-version"], "2.2.0", "{overview}");
    assert_eq!(overview["taskmanagers"], 1, "{overview}");
    assert_eq!(overview["slots-total"], 2, "{overview}");

    // Submit the load job: 200 rows/s through a costly regex step.
    let job_name = "flinkscale-load";
    let submitted = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/flink/load_job.py"))
        .args([&cluster.rest_url(), job_name, "200"])
        .output()
        .expect("running tests/flink/load_job.py");
    assert!(
        submitted.status.success(),
        "load_job.py failed: {}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let printed_id = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();

    // The job id found by name, as the target will find a restarted job.
    let jobs = cluster.get("/jobs/overview");
    let by_name: Vec<&str> = jobs["jobs"]
        .as_array()
        .expect("a list of jobs")
        .iter()
        .filter(|j| j["name"] == job_name && j["state"] != "CANCELED")
        .map(|j| j["jid"].as_str().expect("a job id"))
        .collect();
    assert_eq!(by_name, vec![printed_id.as_str()], "{jobs}");
    let job = printed_id;

    // Three vertices (chaining is off), all running; the adaptive scheduler
    // gives each every slot the cluster has, as no upper bound was set.
    let running = wait_for(
        "the job's vertices RUNNING",
        Duration::from_secs(60),
        || {
            let vs = vertices(&cluster, &job);
            vs.iter().all(|v| v.3 == "RUNNING").then_some(vs)
        },
    );
    let names: Vec<&str> = running.iter().map(|v| v.1.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("Source: src"), "{names:?}");
    assert!(names[1].starts_with("Calc"), "{names:?}");
    assert!(names[2].starts_with("snk"), "{names:?}");
    let requirements = cluster.get(&format!("/jobs/{job}/resource-requirements"));
    let mut listed: Vec<&String> = requirements
        .as_object()
        .expect("requirements")
        .keys()
        .collect();
    let mut ids: Vec<&String> = running.iter().map(|v| &v.0).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "the requirements list every vertex");

    // Metrics per vertex, aggregated over subtasks: records flow into the
    // costly step and its busy time is a measured number.
    let calc = running[1].0.clone();
    let metrics_path = format!(
        "/jobs/{job}/vertices/{calc}/subtasks/metrics?get=busyTimeMsPerSecond,numRecordsInPerSecond"
    );
    let (busy, rate) = wait_for("records flowing into Calc", Duration::from_secs(60), || {
        let m = cluster.get(&metrics_path);
        let sum = |id: &str| m.as_array()?.iter().find(|x| x["id"] == id)?["sum"].as_f64();
        match (sum("busyTimeMsPerSecond"), sum("numRecordsInPerSecond")) {
            (Some(busy), Some(rate)) if rate > 0.0 => Some((busy, rate)),
            _ => None,
        }
    });
    assert!(
        (0.0..=2000.0).contains(&busy),
        "busy ms/s over 2 subtasks: {busy}"
    );

    // In-place rescale, in then out, each followed to the end.
    let start_parallelism = running[0].2;
    assert_eq!(start_parallelism, 2, "{running:?}");
    let scale_in = rescale(&cluster, &job, 1);
    let scale_out = rescale(&cluster, &job, 2);
    assert_eq!(cluster.get(&format!("/jobs/{job}"))["state"], "RUNNING");

    // The same through the `flink` target, as the controller will drive it.
    let target_in = through_the_target(&cluster, job_name, &job);

    println!(
        "flink: cluster ready in {startup} ms; Calc {rate:.0} records/s, busy {busy:.0} ms/s; \
         rescale 2->1 {} ms, 1->2 {} ms; target 2->1 {} ms",
        scale_in.as_millis(),
        scale_out.as_millis(),
        target_in.as_millis()
    );
}

/// Drives the `flink` target against the running job: describe, a fenced
/// rescale from a stale state refused, a rescale 2 -> 1 followed through
/// describe until settled, as Flink's own REST answers confirm.
fn through_the_target(cluster: &Cluster, job_name: &str, job: &str) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let target = FlinkTarget::new(&cluster.rest_url()).expect("a plain http URL");
    runtime.block_on(async {
        let missing = target.describe("no-such-job").await;
        assert!(
            matches!(missing, Err(TargetError::NotFound(_))),
            "{missing:?}"
        );
        let before = target.describe(job_name).await.expect("describe");
        assert_eq!(before.status, AppStatus::Running, "{before:?}");
        assert_eq!(before.parallelism, 2, "{before:?}");

        let stale = flinkscale::target::AppState {
            parallelism: 1,
            ..before.clone()
        };
        let fenced = target.rescale(job_name, 1, &stale).await;
        assert!(
            matches!(fenced, Err(TargetError::ConcurrentModification(_))),
            "{fenced:?}"
        );
        let zero = target.rescale(job_name, 0, &before).await;
        assert!(matches!(zero, Err(TargetError::Request(_))), "{zero:?}");

        let started = Instant::now();
        target
            .rescale(job_name, 1, &before)
            .await
            .expect("rescale to 1");
        loop {
            let now = target
                .describe(job_name)
                .await
                .expect("describe while rescaling");
            if now.status == AppStatus::Running && now.parallelism == 1 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "still {now:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let elapsed = started.elapsed();
        let settled = vertices(cluster, job);
        assert!(
            settled.iter().all(|v| v.2 == 1 && v.3 == "RUNNING"),
            "{settled:?}"
        );
        elapsed
    })
}
