//! Real Flink (issue #13): starts a standalone Flink 2.2 session cluster from
//! the `apache-flink` PyPI package (scripts/flink-cluster.sh), submits a load
//! job (tests/flink/load_job.py), and drives Flink's own REST API: find the
//! job by name, read its vertices, parallelism and per-vertex metrics, and
//! rescale it in place with the adaptive scheduler
//! (`PUT /jobs/{id}/resource-requirements`), following until every vertex
//! runs at the new parallelism; then the same through the `flink` target
//! (fencing, a lost answer resolved by the controller's state machine,
//! every error class) and the `source = "flink"` metric source. Nothing
//! here is an imitation: every answer checked comes from Flink.
//!
//! Needs the `.venv` with tests/flink/requirements.txt and a Java 17 runtime
//! (scripts/test.sh installs both). One test starts the cluster once and runs
//! the steps in order, printing the start-up and rescale times it measured.
//! It ends with the real agent meeting Flink's own failures: a task that
//! throws (Flink restarts the job) and a JobManager killed mid-rescale
//! (no HA: the job is submitted again under a new id), and last a job of
//! one key group, which Flink refuses to run above parallelism 1: the
//! target refuses that rescale before sending it. A second cluster,
//! with JobManager high availability (ZooKeeper), loses its JobManager
//! between taking the agent's rescale and answering it: the job is
//! recovered under its id and the agent completes its rescale, once; then
//! before a second rescale reaches Flink: the agent sends it again, once;
//! then, with a standby JobManager and both addresses in `rest_url`, the
//! leader dies for good after taking a third: the agent completes it
//! through the standby, sending nothing again; last, the TaskManager and
//! the agent die as the leader takes a fourth: the restarted agent waits
//! out the job's placeholder graph and completes it, once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flinkscale::target::flink::FlinkTarget;
use flinkscale::target::{AppStatus, ScalingTarget, TargetError};
use serde_json::{Value, json};

use common::config::{AgentConfig, Application};

/// The repository root, where scripts/ and .venv live.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running cluster; stopped when dropped, so a failing assertion does not
/// leave JVMs behind.
struct Cluster {
    dir: tempfile::TempDir,
    /// The REST API the test's own calls go to: the first JobManager's,
    /// or the standby's once [`Cluster::follow_standby`] says so.
    host_port: std::sync::Mutex<String>,
    /// The first JobManager's REST port.
    port: u16,
}

impl Cluster {
    /// Submits `tests/flink/load_job.py` as `job_name` with its further
    /// arguments (rows per second, then optionally the costly span); the
    /// job id it printed.
    fn submit_load_job(&self, job_name: &str, args: &[&str]) -> String {
        self.submit_load_job_with(&[], job_name, args)
    }

    /// [`Cluster::submit_load_job`] with `load_job.py`'s options
    /// (`--max-parallelism N`) before its arguments.
    fn submit_load_job_with(&self, options: &[&str], job_name: &str, args: &[&str]) -> String {
        let submitted = Command::new(repo_root().join(".venv/bin/python"))
            .arg(repo_root().join("tests/flink/load_job.py"))
            .args(options)
            .args([self.rest_url().as_str(), job_name])
            .args(args)
            .output()
            .expect("running tests/flink/load_job.py");
        assert!(
            submitted.status.success(),
            "load_job.py failed: {}",
            String::from_utf8_lossy(&submitted.stderr)
        );
        String::from_utf8_lossy(&submitted.stdout).trim().to_owned()
    }

    /// Cancels the live job named `job_name`, if there is one, and waits
    /// until Flink says it is CANCELED (its slots free).
    fn cancel_live(&self, job_name: &str) {
        let Some(job) = live_job(self, job_name) else {
            return;
        };
        let (status, answer) = self.call("PATCH", &format!("/jobs/{job}?mode=cancel"), None);
        assert_eq!(status, 202, "cancelling {job}: {answer}");
        wait_for("the job cancelled", Duration::from_secs(60), || {
            (self.get(&format!("/jobs/{job}"))["state"] == "CANCELED").then_some(())
        });
    }

    fn start() -> Cluster {
        Self::start_with_slots(2)
    }

    /// A cluster whose one TaskManager has `slots` task slots.
    fn start_with_slots(slots: u32) -> Cluster {
        Self::start_with(slots, None, false)
    }

    /// Two slots, and a job restarts (up to 3 times) after a failure
    /// instead of ending: Flink's own failover, as a production cluster
    /// with checkpoints has it.
    fn start_restarting() -> Cluster {
        Self::start_with(2, Some(3), false)
    }

    /// As [`Cluster::start_restarting`], with JobManager high availability
    /// (`FLINK_HA=zookeeper`: a ZooKeeper server beside it), so that a
    /// JobManager started after one was killed recovers its jobs.
    fn start_highly_available() -> Cluster {
        Self::start_with(2, Some(3), true)
    }

    fn start_with(slots: u32, restarts: Option<u32>, highly_available: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let port = free_port_run();
        let mut command = Command::new(repo_root().join("scripts/flink-cluster.sh"));
        if let Some(restarts) = restarts {
            command.env("FLINK_RESTARTS", restarts.to_string());
        }
        if highly_available {
            command.env("FLINK_HA", "zookeeper");
        }
        let out = command
            .env("FLINK_SLOTS", slots.to_string())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()
            .expect("running scripts/flink-cluster.sh");
        let cluster = Cluster {
            dir,
            host_port: std::sync::Mutex::new(format!("127.0.0.1:{port}")),
            port,
        };
        assert!(
            out.status.success(),
            "flink-cluster.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// Loses the TaskManager as a crash does (SIGKILL) and starts a new
    /// one in its place.
    fn kill_taskmanager(&self) {
        let out = Command::new(repo_root().join("scripts/flink-cluster.sh"))
            .arg("kill-taskmanager")
            .arg(self.dir.path())
            .output()
            .expect("running scripts/flink-cluster.sh");
        assert!(
            out.status.success(),
            "flink-cluster.sh kill-taskmanager failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `scripts/flink-cluster.sh SUBCOMMAND DIR`
    /// (`kill-jobmanager`, `start-jobmanager`), failing on its failure.
    fn jobmanager(&self, subcommand: &str) {
        let out = Command::new(repo_root().join("scripts/flink-cluster.sh"))
            .arg(subcommand)
            .arg(self.dir.path())
            .output()
            .expect("running scripts/flink-cluster.sh");
        assert!(
            out.status.success(),
            "flink-cluster.sh {subcommand} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a second JobManager (`start-standby`, high availability
    /// only), a standby while the first leads; its `host:port`.
    fn start_standby(&self) -> String {
        self.jobmanager("start-standby");
        self.standby()
    }

    /// The standby's `host:port` (REST port + 3).
    fn standby(&self) -> String {
        format!("127.0.0.1:{}", self.port + 3)
    }

    /// From now on the test's own calls go to the standby JobManager.
    fn follow_standby(&self) {
        *self.host_port.lock().unwrap_or_else(|e| e.into_inner()) = self.standby();
    }

    /// `host:port` of the REST API the test's own calls go to.
    fn host_port(&self) -> String {
        self.host_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn rest_url(&self) -> String {
        format!("http://{}", self.host_port())
    }

    fn startup_ms(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.path().join("startup_ms"))
            .expect("flink-cluster.sh writes startup_ms once ready");
        text.trim().parse().expect("startup_ms holds a number")
    }

    /// One HTTP/1.1 exchange with the REST API; the answer's status and JSON body.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let host_port = self.host_port();
        let mut stream = TcpStream::connect(&host_port).expect("connecting to Flink's REST API");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("setting a read timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            host_port,
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

    /// A GET's body if Flink answers 200 (not while a JobManager is
    /// being elected or recovers its jobs).
    fn answers(&self, path: &str) -> Option<Value> {
        let (status, json) = self.call("GET", path, None);
        (status == 200).then_some(json)
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

/// A REST port whose four successors (the JobManager's RPC port and, with
/// high availability, ZooKeeper's and a standby JobManager's REST and RPC
/// ports) are free too.
fn free_port_run() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = first.local_addr().expect("its address").port();
        let free = |next: u16| {
            port.checked_add(next)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        };
        if (1..=4).all(free) {
            return port;
        }
    }
    panic!("no run of five free adjacent loopback ports");
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
    vertices_of(&cluster.get(&format!("/jobs/{job}")))
}

/// The vertices of a `GET /jobs/{id}` answer as (id, name, parallelism,
/// status).
fn vertices_of(detail: &Value) -> Vec<(String, String, u64, String)> {
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

/// Requirements asking every vertex of `current` (requirements as Flink
/// lists them) for parallelism 1 to `parallelism`, as a PUT sends them.
fn requirements_at(current: &Value, parallelism: u64) -> Value {
    let wanted: serde_json::Map<String, Value> = current
        .as_object()
        .expect("resource requirements per vertex")
        .keys()
        .map(|id| {
            let bounds = json!({"lowerBound": 1, "upperBound": parallelism});
            (id.clone(), json!({ "parallelism": bounds }))
        })
        .collect();
    Value::Object(wanted)
}

/// Every vertex's requirement set to exactly `parallelism`, then followed
/// until the job runs with all vertices at it; returns how long that took.
fn rescale(cluster: &Cluster, job: &str, parallelism: u64) -> Duration {
    let path = format!("/jobs/{job}/resource-requirements");
    let wanted = requirements_at(&cluster.get(&path), parallelism);
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

/// One cluster at a time: two would share the machine's two cores and
/// skew each other's load.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_real_flink_cluster_runs_the_load_job_and_rescales_in_place() {
    let _alone = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start_restarting();
    let startup = cluster.startup_ms();
    let overview = cluster.get("/overview");
    assert_eq!(overview["flink-version"], "2.2.0", "{overview}");
    assert_eq!(overview["taskmanagers"], 1, "{overview}");
    assert_eq!(overview["slots-total"], 2, "{overview}");

    // Submit the load job: 20 rows/s through a costly regex step (about
    // one core at 45 ms a row).
    let job_name = "flinkscale-load";
    let printed_id = cluster.submit_load_job(job_name, &["20"]);

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

    // The same through the `flink` target, as the controller drives it.
    let target_in = through_the_target(&cluster, job_name, &job);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let lost = runtime.block_on(a_lost_answer_is_resolved_as_taken(&cluster, job_name, &job));
    runtime.block_on(errors_are_classified(&cluster, job_name, &job));
    runtime.block_on(metrics_come_from_flink(&cluster, job_name));
    validate_environment_reads_each_job(&cluster, job_name);
    let restart = runtime.block_on(requirements_outlive_a_restart(&cluster, job_name, &job));
    let replaced = a_job_replaced_under_a_rescale_is_another(&cluster, job_name, &job);
    let failures = a_failing_task_and_a_lost_jobmanager(&cluster, job_name);
    cluster.cancel_live(job_name);
    runtime.block_on(a_jobs_key_groups_are_its_ceiling(&cluster));
    runtime.block_on(a_non_parallel_vertex_stays_at_1(&cluster));

    println!(
        "flink: cluster ready in {startup} ms; Calc {rate:.0} records/s, busy {busy:.0} ms/s; \
         rescale 2->1 {} ms, 1->2 {} ms; target 2->1 {} ms; 1->2 with its answer lost {} ms; \
         TaskManager killed to job running again {} ms; {replaced}; {failures}",
        scale_in.as_millis(),
        scale_out.as_millis(),
        target_in.as_millis(),
        lost.as_millis(),
        restart.as_millis()
    );
}

/// A job submitted with one key group (`pipeline.max-parallelism` 1) on
/// the two-slot cluster: Flink refuses parallelism 2 for it (400, naming
/// its maximum), which is why the `flink` target sends no such request.
/// The target reads the job's max parallelism and refuses 2 itself, before
/// anything is sent, with 1 as the ceiling the controller then scales to
/// (`SlotsExceeded`, where Flink's 400 would be `Invalid` and leave it
/// none); the job still runs at 1, asking for 1. `validate --environment`
/// says what the key groups leave of `max_parallelism` 2 (exit 0) and
/// refuses `min_parallelism` 2 (exit 1).
async fn a_jobs_key_groups_are_its_ceiling(cluster: &Cluster) {
    let job_name = "flinkscale-one-key-group";
    let job = cluster.submit_load_job_with(&["--max-parallelism", "1"], job_name, &["20"]);
    let running = wait_for(
        "the one-key-group job RUNNING",
        Duration::from_secs(60),
        || {
            let vs = vertices(cluster, &job);
            vs.iter().all(|v| v.3 == "RUNNING").then_some(vs)
        },
    );
    assert!(running.iter().all(|v| v.2 == 1), "{running:?}");
    let path = format!("/jobs/{job}/resource-requirements");
    let asked = cluster.get(&path);

    // Flink itself: 400 for every vertex, the requirements unchanged.
    let (status, answer) = cluster.call("PUT", &path, Some(&requirements_at(&asked, 2)));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("exceeds its maximum parallelism 1"),
        "{answer}"
    );
    assert_eq!(cluster.get(&path), asked);

    // The target: refused before sending, with the key groups as ceiling.
    let target = FlinkTarget::new(&cluster.rest_url()).expect("a plain http URL");
    let described = target.describe_job(job_name).await.expect("describe");
    assert_eq!(described.max_parallelism, Some(1), "{described:?}");
    let refused = target.rescale(job_name, 2, &described.state).await;
    match &refused {
        Err(TargetError::SlotsExceeded { usable, message }) => {
            assert_eq!(*usable, 1, "{message}");
            assert!(
                message.contains("is above the job's max parallelism 1"),
                "{message}"
            );
        }
        other => panic!("refused before sending, with ceiling 1: {other:?}"),
    }
    assert_eq!(cluster.get(&path), asked);
    let after = target.describe(job_name).await.expect("describe");
    assert_eq!(
        (after.status, after.parallelism, after.version_id),
        (AppStatus::Running, 1, described.state.version_id),
        "{after:?}"
    );

    // validate --environment, with the bounds above and at the key groups.
    let dir = tempfile::tempdir().expect("a folder for the configuration");
    let config = dir.path().join("flinkscale.toml");
    let validate = |bounds: &str| {
        validate_environment(
            &config,
            &flink_app("keyed", &cluster.rest_url(), job_name, bounds),
        )
    };
    let (code, text) = validate("max_parallelism = 2");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "the job's max parallelism is 1, below max_parallelism 2: a rescale above 1 is refused"
        ),
        "{text}"
    );
    let (code, text) = validate("min_parallelism = 2\nmax_parallelism = 2");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "the job's max parallelism is 1, below min_parallelism 2: Flink refuses the floor"
        ),
        "{text}"
    );
    cluster.cancel_live(job_name);
}

/// A job with a vertex the planner runs non-parallel (a global COUNT(*):
/// parallelism and max parallelism 1, as a windowAll or a sink's global
/// committer) between vertices that scale: the target takes the job's
/// ceiling from the parallel vertices, asks the non-parallel one for 1 and
/// the others for the new parallelism, and Flink carries the rescale out,
/// in and out again. (The target took 1 as the job's ceiling and refused
/// every scale-out; asking every vertex for 2, Flink refuses the whole
/// rescale.)
async fn a_non_parallel_vertex_stays_at_1(cluster: &Cluster) {
    let job_name = "flinkscale-non-parallel";
    let job = cluster.submit_load_job_with(&["--non-parallel"], job_name, &["20"]);
    wait_for("the job RUNNING", Duration::from_secs(60), || {
        let vs = vertices(cluster, &job);
        vs.iter().all(|v| v.3 == "RUNNING").then_some(())
    });
    let detail = cluster.get(&format!("/jobs/{job}"));
    let single: Vec<String> = detail["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .filter(|v| v["maxParallelism"].as_u64() == Some(1))
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(single.len(), 1, "one non-parallel vertex: {detail}");
    let target = FlinkTarget::new(&cluster.rest_url()).expect("a plain http URL");
    let described = target.describe_job(job_name).await.expect("describe");
    assert!(
        described.max_parallelism.is_some_and(|max| max > 1),
        "{described:?}"
    );
    let reader = &target;
    let settled_at = |parallelism: u32| async move {
        let started = Instant::now();
        loop {
            let now = reader.describe(job_name).await.expect("describe");
            if now.status == AppStatus::Running && now.parallelism == parallelism {
                return now;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "still {now:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut state = settled_at(2).await;
    for parallelism in [1, 2] {
        target
            .rescale(job_name, parallelism, &state)
            .await
            .unwrap_or_else(|e| panic!("rescale to {parallelism}: {e:?}"));
        state = settled_at(parallelism).await;
        let running = vertices(cluster, &job);
        for (id, name, at, status) in &running {
            let want = if single.contains(id) {
                1
            } else {
                u64::from(parallelism)
            };
            assert_eq!(
                (*at, status.as_str()),
                (want, "RUNNING"),
                "{name}: {running:?}"
            );
        }
        let asked = cluster.get(&format!("/jobs/{job}/resource-requirements"));
        assert_eq!(asked[&single[0]]["parallelism"]["upperBound"], 1, "{asked}");
    }
    cluster.cancel_live(job_name);
}

/// What `AppState::asked_kpu` rests on: Flink keeps a job's resource
/// requirements across the job's own restart, so only a PUT moves them.
/// The requirements are PUT (parallelism 1), then the TaskManager is lost
/// (SIGKILL) and a new one started: Flink restarts the job (same id, a new
/// execution graph, the failure in its exception history), and every read
/// of the requirements before, during and after the restart is what was
/// PUT; the target reads the same job id asking for 1 at a version past
/// the one before. Returns how long the job took to run again.
async fn requirements_outlive_a_restart(cluster: &Cluster, job_name: &str, job: &str) -> Duration {
    rescale(cluster, job, 1);
    let path = format!("/jobs/{job}/resource-requirements");
    let put = cluster.get(&path);
    let target = FlinkTarget::new(&cluster.rest_url()).expect("a plain http URL");
    let before = target.describe(job_name).await.expect("describe");
    assert_eq!(
        (
            before.identity.as_deref(),
            before.asked_kpu,
            before.parallelism
        ),
        (Some(job), Some(1), 1),
        "{before:?}"
    );
    let created_before = graph_created(cluster, job);
    let started = Instant::now();
    cluster.kill_taskmanager();
    let mut states = Vec::new();
    let mut reads = 0;
    wait_for(
        "the job restarted and RUNNING again at 1",
        Duration::from_secs(120),
        || {
            let (status, now) = cluster.call("GET", &path, None);
            if status == 200 {
                assert_eq!(
                    now, put,
                    "the requirements while the job restarts ({states:?})"
                );
                reads += 1;
            }
            let detail = cluster.get(&format!("/jobs/{job}"));
            let state = detail["state"].as_str().unwrap_or_default().to_owned();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            let rebuilt = detail["timestamps"]["CREATED"]
                .as_u64()
                .is_some_and(|c| c > created_before);
            (rebuilt && state == "RUNNING" && running_at(cluster, job, 1)).then_some(())
        },
    );
    let took = started.elapsed();
    let failures = cluster.get(&format!("/jobs/{job}/exceptions"));
    assert!(
        failures["exceptionHistory"]["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "Flink recorded the lost TaskManager as the job's failure: {failures}"
    );
    assert!(
        states.iter().any(|s| s != "RUNNING"),
        "the job went through a restart: {states:?}"
    );
    assert_eq!(cluster.get(&path), put, "after the restart");
    assert!(reads > 0, "the requirements were read during the restart");
    let after = target.describe(job_name).await.expect("describe");
    assert_eq!(
        (
            after.identity.as_deref(),
            after.asked_kpu,
            after.parallelism
        ),
        (Some(job), Some(1), 1),
        "{after:?}"
    );
    assert_eq!(after.status, AppStatus::Running, "{after:?}");
    assert!(after.version_id > before.version_id, "{before:?} {after:?}");
    took
}

/// A job cancelled and submitted again under its name while the real
/// agent follows its own rescale of it: the new job has a new id, the agent
/// reports the replacement (`update_result`, naming both ids) and never
/// that the rescale completed, and nothing is sent to the new job before
/// one grace period has passed (its requirements stay as submitted), after
/// which the agent does rescale it (so the quiet was the grace period's).
/// Returns what it measured, for the test's summary line.
fn a_job_replaced_under_a_rescale_is_another(
    cluster: &Cluster,
    job_name: &str,
    job: &str,
) -> String {
    const GRACE_SECS: u64 = 15;
    rescale(cluster, job, 2);
    let dir = tempfile::tempdir().expect("a folder for the agent");
    let config = dir.path().join("flinkscale.toml");
    // The scale-in alarm always fires: the agent scales 2 -> 1 at once.
    AgentConfig::new()
        .application(
            step_job("replaced", cluster.rest_url(), job_name, GRACE_SECS)
                .alarm(&busy_alarm("scale-out", "GreaterThanThreshold", "1e9", 1))
                .alarm(&busy_alarm("scale-in", "LessThanThreshold", "1e9", 1))
                .policy(STEP_POLICY),
        )
        .write(&config);
    let (agent, log) = start_agent(dir.path(), &config);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    wait_for(
        "the agent's rescale 2 -> 1",
        Duration::from_secs(90),
        || {
            agent.assert_running(read_log);
            let text = read_log();
            (!common::log_events(&text, "Rescale started.").is_empty()).then_some(())
        },
    );
    let first_put = started.elapsed();

    // Cancelled while the rescale is followed, then submitted again.
    let (status, answer) = cluster.call("PATCH", &format!("/jobs/{job}?mode=cancel"), None);
    assert_eq!(status, 202, "cancelling {job}: {answer}");
    assert!(
        common::log_events(&read_log(), "Rescale completed.").is_empty(),
        "the rescale ended before the job was cancelled; the test needs it in flight\n{}",
        read_log()
    );
    let resubmitted = Instant::now();
    let new_job = cluster.submit_load_job(job_name, &["20"]);
    assert_ne!(new_job, job, "a resubmitted job has a new id");
    let path = format!("/jobs/{new_job}/resource-requirements");
    let submitted = wait_for(
        "the new job's requirements",
        Duration::from_secs(60),
        || {
            let (status, now) = cluster.call("GET", &path, None);
            (status == 200).then_some(now)
        },
    );
    let asked = |requirements: &Value| {
        requirements
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, r)| r["parallelism"]["upperBound"].as_u64())
            .max()
    };

    // The agent reports the replacement, naming both ids.
    let replacement = |text: &str| {
        common::log_events(text, "Step failed.")
            .into_iter()
            .find(|e| {
                e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("was replaced while"))
            })
    };
    let reported = wait_for(
        "the agent reporting the replacement",
        Duration::from_secs(60),
        || {
            agent.assert_running(read_log);
            replacement(&read_log())
        },
    );
    let noticed = resubmitted.elapsed();
    let seen_at = Instant::now();
    let message = reported["error"].as_str().unwrap_or_default();
    assert_eq!(reported["class"], "update_result", "{reported}");
    assert!(
        message.contains(&format!("(job id {job}, now {new_job})"))
            && message.contains("a rescale to parallelism 1"),
        "{message}"
    );

    // Nothing sent to the new job within its grace period; then the agent
    // rescales it (the alarm still fires), with no completion ever
    // reported for the old job's rescale. The grace period runs from when
    // the new job runs, so from the report or later: the quiet is counted
    // from the report's own time, not from when this test read it (the
    // test submits the job with PyFlink, whose exit can come seconds after
    // the job started, and the agent's report with it).
    let quiet_until = log_time(&reported) + GRACE_SECS as f64 - 1.0;
    let second_put = wait_for(
        "the agent's rescale of the new job after its grace period",
        Duration::from_secs(GRACE_SECS + 90),
        || {
            agent.assert_running(read_log);
            let text = read_log();
            let now = cluster.get(&path);
            let starts = common::log_events(&text, "Rescale started.").len();
            if unix_secs() < quiet_until {
                assert_eq!(
                    now, submitted,
                    "a PUT to the new job within its grace period\n{text}"
                );
                assert_eq!(
                    starts, 1,
                    "a rescale of the new job within its grace period\n{text}"
                );
            }
            (starts == 2 && asked(&now) == Some(1)).then(|| seen_at.elapsed())
        },
    );
    // In the log's order: no completion before the new job's rescale.
    let text = read_log();
    let before_second: Vec<&str> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .scan(0, |starts, m| {
            *starts += usize::from(m == "Rescale started.");
            (*starts < 2).then_some(m)
        })
        .filter(|m| m == "Rescale completed.")
        .map(|_| "Rescale completed.")
        .collect();
    assert!(
        before_second.is_empty(),
        "the old job's rescale was reported completed\n{text}"
    );
    drop(agent);
    format!(
        "agent's first PUT after {} ms; job replaced, noticed {} ms after the resubmission; \
         new job (asked {:?} as submitted) rescaled {} ms after the notice (grace {GRACE_SECS} s)",
        first_put.as_millis(),
        noticed.as_millis(),
        asked(&submitted),
        second_put.as_millis()
    )
}

/// `flinkscale validate --environment` reads each Flink job over REST and
/// asks for no AWS credentials when nothing calls AWS: a job that is there
/// passes, one that is not fails the check (exit 1) with a message naming
/// it.
fn validate_environment_reads_each_job(cluster: &Cluster, job_name: &str) {
    let dir = tempfile::tempdir().expect("a folder for the configuration");
    let config = dir.path().join("flinkscale.toml");
    let app = |name: &str, job: &str| flink_app(name, &cluster.rest_url(), job, "");
    let run = |text: &str| validate_environment(&config, text);
    let (code, text) = run(&app("load", job_name));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "application \"load\": Flink job (job_name {job_name:?}) at {}: RUNNING, parallelism",
            cluster.rest_url()
        )) && text.contains("AWS credentials: not needed"),
        "{text}"
    );
    let (code, text) = run(&format!(
        "{}{}",
        app("load", job_name),
        app("gone", "no-such-job")
    ));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("application \"gone\": Flink job (job_name \"no-such-job\") not found"),
        "{text}"
    );
}

/// An application `name` of the `flink` target for the job `job` at
/// `rest_url`, with the `hold` policy and `more` (further keys, one per
/// line) as a configuration file's text.
fn flink_app(name: &str, rest_url: &str, job: &str, more: &str) -> String {
    format!(
        "[[application]]\nname = {name:?}\ntarget = \"flink\"\nrest_url = {rest_url:?}\n\
         job_name = {job:?}\n{more}\n[application.policy]\nplugin = \"hold\"\n"
    )
}

/// `flinkscale validate --environment` of `text`, written to `config`,
/// without AWS credentials in the environment: its exit status and its
/// output (standard output, then standard error).
fn validate_environment(config: &Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(config, text).expect("writing the configuration");
    let out = Command::new(common::BIN)
        .args(["validate", "--environment", "--config"])
        .arg(config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("running flinkscale validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The job `job_name` at `rest_url` as the application `name` of an agent
/// of these tests: between parallelism 1 and 2, followed every second
/// while it updates (for at most 120 s), with a grace period of
/// `grace_period_secs`, and Calc's busy time as its metric `busy`; the
/// alarms and the policy are the caller's.
fn step_job(
    name: &str,
    rest_url: impl Into<toml::Value>,
    job_name: &str,
    grace_period_secs: u64,
) -> Application {
    Application::named(name)
        .set("target", "flink")
        .set("rest_url", rest_url)
        .set("job_name", job_name)
        .set("min_parallelism", 1)
        .set("max_parallelism", 2)
        .set("update_poll_secs", 1)
        .set("update_timeout_secs", 120)
        .set("grace_period_secs", grace_period_secs as i64)
        .metric(
            r#"id = "busy"
source = "flink"
metric_name = "busyTimeMsPerSecond"
statistic = "Maximum"
vertex = "Calc"
period_secs = 10
"#,
        )
}

/// An alarm `id` on the metric `busy` of [`step_job`]: `comparison` to
/// `threshold` (a TOML number, as written) for `evaluation_periods`.
fn busy_alarm(id: &str, comparison: &str, threshold: &str, evaluation_periods: u32) -> String {
    format!(
        "id = \"{id}\"\nmetric = \"busy\"\ncomparison = \"{comparison}\"\n\
         threshold = {threshold}\nevaluation_periods = {evaluation_periods}\n"
    )
}

/// The `step` policy doubling on the alarm `scale-out` and halving on
/// `scale-in` (the alarms of [`busy_alarm`]).
const STEP_POLICY: &str = r#"plugin = "step"
params = { scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2, scale_in_factor = 2 }
"#;

/// Starts `flinkscale --log-format json run --config CONFIG` in `dir`,
/// logging at info to `dir/agent.log`: the agent and its log's path.
fn start_agent(dir: &Path, config: &Path) -> (common::Running, PathBuf) {
    let log = dir.join("agent.log");
    let agent = common::Running::spawn("flinkscale run", common::agent_command(config, dir), &log);
    (agent, log)
}

/// What the agent of [`failure_agent_config`] is made to want at every
/// evaluation.
#[derive(Clone, Copy)]
enum Wants {
    /// Neither alarm ever fires: the agent holds.
    Nothing,
    /// The scale-out alarm fires.
    Out,
    /// The scale-in alarm fires.
    In,
}

/// The configuration of the agent of [`a_failing_task_and_a_lost_jobmanager`]:
/// the job at `rest_url` (one URL is written as a string, more as a
/// list), the `step` policy on Calc's busy time, its alarms firing as
/// `wants` says, a state folder, and `/readyz`, `/status` at `listen`.
fn failure_agent_config(
    rest_url: &[String],
    job_name: &str,
    listen: &str,
    wants: Wants,
) -> AgentConfig {
    let rest_url: toml::Value = match rest_url {
        [one] => one.as_str().into(),
        many => many.to_vec().into(),
    };
    let (out_threshold, in_threshold) = match wants {
        Wants::Nothing => ("1e9", "-1.0"),
        Wants::Out => ("-1.0", "-1.0"),
        Wants::In => ("1e9", "1e9"),
    };
    AgentConfig::new().agent("listen", listen).application(
        step_job("failing", rest_url, job_name, FAILURE_GRACE_SECS)
            .set("lazy_polling", false)
            .alarm(&busy_alarm(
                "scale-out",
                "GreaterThanThreshold",
                out_threshold,
                1,
            ))
            .alarm(&busy_alarm(
                "scale-in",
                "LessThanThreshold",
                in_threshold,
                1,
            ))
            .policy(STEP_POLICY),
    )
}

/// The grace period of [`a_failing_task_and_a_lost_jobmanager`]'s agent.
const FAILURE_GRACE_SECS: u64 = 15;

/// The newest job named `job_name` that has not ended, if any.
fn live_job(cluster: &Cluster, job_name: &str) -> Option<String> {
    let jobs = cluster.get("/jobs/overview");
    jobs["jobs"]
        .as_array()?
        .iter()
        .filter(|j| j["name"] == job_name)
        .filter(|j| {
            !matches!(
                j["state"].as_str(),
                Some("CANCELED" | "FAILED" | "FINISHED")
            )
        })
        .max_by_key(|j| j["start-time"].as_i64())
        .and_then(|j| j["jid"].as_str().map(str::to_owned))
}

/// One exchange with the agent's HTTP server: status and body, or `None`
/// when it does not answer.
fn agent_get(listen: &str, path: &str) -> Option<(u16, String)> {
    let addr = listen.parse().expect("a socket address");
    let response = common::http(addr, "GET", path, &[], b"").ok()?;
    Some((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// The sum of the `/metrics` samples named `family` whose labels contain
/// `label` (`class="transient"`).
fn metric_sum(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The real agent of the JobManager tests: `flinkscale run` with
/// [`failure_agent_config`], reaching `cluster` through a
/// [`jobmanager_killing_proxy`], logging to its own folder.
struct ProxiedAgent {
    agent: common::Running,
    log: PathBuf,
    config: PathBuf,
    /// The agent's `rest_url`: the killing proxy's URL, then the standby
    /// proxy's once [`ProxiedAgent::add_standby`] added it.
    rest_url: Vec<String>,
    proxy: std::sync::Arc<std::sync::Mutex<KillingProxy>>,
    /// The proxy in front of a standby JobManager, which kills nothing.
    standby: Option<std::sync::Arc<std::sync::Mutex<KillingProxy>>>,
    /// What the agent logged before its restarts (a restart starts the
    /// log file anew).
    earlier: String,
    job_name: String,
    /// Where the agent's `/livez`, `/readyz` and `/metrics` answer.
    listen: String,
    // Last, so that the agent stops before its folder goes.
    dir: tempfile::TempDir,
}

impl ProxiedAgent {
    /// Starts the agent on the job `job_name` of `cluster`, wanting `wants`.
    fn start(cluster: &Cluster, job_name: &str, wants: Wants) -> ProxiedAgent {
        let dir = tempfile::tempdir().expect("a folder for the agent");
        let config = dir.path().join("flinkscale.toml");
        let (proxy_url, proxy) = jobmanager_killing_proxy(
            cluster.host_port(),
            cluster.dir.path().to_path_buf(),
            true,
            "kill-jobmanager",
        );
        let listen = {
            let free = TcpListener::bind("127.0.0.1:0").expect("a free port");
            free.local_addr().expect("its address").to_string()
        };
        let rest_url = vec![proxy_url];
        failure_agent_config(&rest_url, job_name, &listen, wants).write(&config);
        let (agent, log) = start_agent(dir.path(), &config);
        ProxiedAgent {
            agent,
            log,
            config,
            rest_url,
            proxy,
            standby: None,
            earlier: String::new(),
            job_name: job_name.to_owned(),
            listen,
            dir,
        }
    }

    /// What the proxy has seen so far.
    fn seen(&self) -> std::sync::MutexGuard<'_, KillingProxy> {
        self.proxy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a proxy that kills nothing in front of the standby JobManager
    /// at `host_port` and lists it second in the agent's `rest_url`, from
    /// the next [`ProxiedAgent::reload`] on.
    fn add_standby(&mut self, host_port: String, cluster_dir: PathBuf) {
        let (url, proxy) = jobmanager_killing_proxy(host_port, cluster_dir, false, "kill-standby");
        self.rest_url.push(url);
        self.standby = Some(proxy);
    }

    /// What the standby's proxy has seen so far.
    fn standby_seen(&self) -> std::sync::MutexGuard<'_, KillingProxy> {
        self.standby
            .as_ref()
            .expect("a standby added")
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The PUTs the standby's proxy forwarded.
    fn standby_puts(&self) -> Vec<String> {
        self.standby_seen().puts.clone()
    }

    /// Kills the agent (`kill -9`, as a crash or an OOM kill), unless
    /// it is dead already, and starts it again on the same configuration,
    /// state folder and log.
    fn restart(&mut self) {
        self.agent.kill9();
        self.earlier = self.log();
        self.earlier.push_str("(restarted)\n");
        let (agent, _) = start_agent(self.dir.path(), &self.config);
        self.agent = agent;
    }

    /// The agent's log so far, from before its restarts too.
    fn log(&self) -> String {
        let now = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{}{now}", self.earlier)
    }

    /// How many events of the log so far have `message`.
    fn count(&self, message: &str) -> usize {
        common::log_events(&self.log(), message).len()
    }

    /// Fails, with the log, if the agent has exited.
    fn assert_running(&self) {
        self.agent.assert_running(|| self.log());
    }

    /// Rewrites the configuration to want `wants` and reloads it (SIGHUP).
    fn reload(&self, wants: Wants) {
        failure_agent_config(&self.rest_url, &self.job_name, &self.listen, wants)
            .write(&self.config);
        let pid = self.agent.pid();
        let hup = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("running kill -HUP");
        assert!(hup.success(), "kill -HUP {pid}");
    }

    /// Waits for the agent's `n`th `Rescale completed.` (0-based, over its
    /// restarts too); the event and the time since `since`.
    fn completed(&self, n: usize, what: &str, since: Instant) -> (Value, Duration) {
        wait_for(what, Duration::from_secs(120), || {
            self.assert_running();
            common::log_events(&self.log(), "Rescale completed.")
                .get(n)
                .cloned()
                .map(|event| (event, since.elapsed()))
        })
    }

    /// Runs `check` on the log (it asserts that nothing more was sent or
    /// reported) until a grace period and 5 s have passed: the agent
    /// sends nothing in its grace period and finds nothing to send after.
    fn settles(&self, check: impl Fn(&str)) {
        let from = Instant::now();
        let settle = Duration::from_secs(FAILURE_GRACE_SECS + 5);
        wait_for(
            "a grace period and a little more after the rescale",
            settle + Duration::from_secs(10),
            || {
                self.assert_running();
                check(&self.log());
                (from.elapsed() >= settle).then_some(())
            },
        );
    }

    /// The agent's `/metrics`.
    fn metrics(&self) -> String {
        agent_get(&self.listen, "/metrics")
            .expect("the agent's /metrics")
            .1
    }

    /// Fails unless the agent never stood down, in its log and its
    /// `/metrics`.
    fn assert_never_stood_down(&self) {
        let text = self.log();
        assert!(!text.contains("Stood down"), "{text}");
        let metrics = self.metrics();
        assert!(
            metrics.contains("flinkscale_stood_down{application=\"failing\"} 0"),
            "{metrics}"
        );
    }
}

/// The reasons of the grace periods the agent held in `log` for updates
/// it did not make, in order.
fn foreign_holds(log: &str) -> Vec<&'static str> {
    common::log_events(
        log,
        "Holding a grace period after a restart or update this agent did not make; nothing is decided before it ends.",
    )
    .iter()
    .filter_map(|e| {
        [
            "grace period after the job's restart or another writer's rescale",
            "grace period after the job was replaced (a new job starts as a restart)",
        ]
        .into_iter()
        .find(|r| e["reason"] == *r)
    })
    .collect()
}

/// What the real agent does when the job fails by itself and when the
/// JobManager is lost, on the test's cluster (restart strategy on, no HA):
///
/// 1. A task throws (the load job's row at `FAIL_AT` is cast to a number)
///    and Flink restarts the job: same id, the requirements PUT before
///    read back unchanged throughout. The agent, holding until then (no
///    alarm fires), reports the restart as `foreign_update` (Flink rebuilt
///    its execution graph), not as a rescale of its own and not as an
///    override (it does not stand down). Its configuration is then
///    reloaded (SIGHUP) with the scale-out alarm firing: it holds for one
///    grace period from the restart ("grace period after the job's restart
///    ...", no PUT meanwhile), then rescales 1 -> 2.
/// 2. The agent reaches Flink through a proxy that kills the JobManager
///    once Flink took that PUT, before its answer (dropped): the agent
///    cannot tell whether it took. While no JobManager runs, the agent
///    runs, `/livez` and `/readyz` answer 200 (the outage is shorter than
///    the readiness window), its failures are `transient` and no
///    `foreign_update` is counted for the outage. A new JobManager has no
///    job (no HA); the job is submitted again (a new id, running at 2, as
///    the agent asked of the old one): the agent reports the replacement
///    naming both ids, never reports its rescale completed, and sends no
///    second PUT (the proxy counts them) for a grace period and more (it
///    holds "grace period after the job was replaced"; at 2 it then has
///    nothing to send either).
///
/// Returns what it measured, for the test's summary line.
fn a_failing_task_and_a_lost_jobmanager(cluster: &Cluster, job_name: &str) -> String {
    // The job the previous step left, cancelled to free its slots.
    cluster.cancel_live(job_name);
    // Every row of one second, 45 s from now, fails its task: by then the
    // job runs at 1 and the agent follows it (checked below; submitting
    // takes PyFlink 5-12 s, the rescale to 1 about 6 s).
    let fail_at = unix_secs() as u64 + 45;
    let job = cluster.submit_load_job(
        job_name,
        &["20", "0", "4611686018427387903", "1", &fail_at.to_string()],
    );
    wait_for("the job RUNNING", Duration::from_secs(60), || {
        let vs = vertices(cluster, &job);
        (!vs.is_empty() && vs.iter().all(|v| v.3 == "RUNNING")).then_some(())
    });
    rescale(cluster, &job, 1);
    let path = format!("/jobs/{job}/resource-requirements");
    let put = cluster.get(&path);

    let rig = ProxiedAgent::start(cluster, job_name, Wants::Nothing);
    wait_for(
        "the agent's first evaluation",
        Duration::from_secs(60),
        || {
            rig.assert_running();
            (rig.count("Evaluated.") > 0).then_some(())
        },
    );
    let created_before = graph_created(cluster, &job);
    assert!(
        (unix_secs() as u64) < fail_at,
        "the job and the agent were not ready before the task failed ({fail_at}): \
         the machine is too slow for this test's schedule"
    );

    // 1. The task fails; Flink restarts the job, keeping what was PUT.
    let mut states = Vec::new();
    wait_for(
        "the job restarted after its task failed, RUNNING again",
        Duration::from_secs(90),
        || {
            rig.assert_running();
            let (status, now) = cluster.call("GET", &path, None);
            if status == 200 {
                assert_eq!(
                    now, put,
                    "the requirements while the job restarts ({states:?})"
                );
            }
            let detail = cluster.get(&format!("/jobs/{job}"));
            let state = detail["state"].as_str().unwrap_or_default().to_owned();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            let rebuilt = detail["timestamps"]["CREATED"]
                .as_u64()
                .is_some_and(|c| c > created_before);
            (rebuilt && state == "RUNNING" && running_at(cluster, &job, 1)).then_some(())
        },
    );
    let restarted = Instant::now();
    let failed_after = unix_secs() - fail_at as f64;
    let failures = cluster.get(&format!("/jobs/{job}/exceptions"));
    let history = failures["exceptionHistory"]["entries"].to_string();
    assert!(
        history.contains("not a number"),
        "Flink recorded the task's cast as the job's failure: {failures}"
    );
    // The restart itself is rarely seen: Flink answers GET /jobs/{id}
    // once it is over. The new graph of the same job with the failure in
    // its history and the requirements unchanged are the restart.
    // The agent reports the restart as Flink's, holding its decisions.
    let restart_report = wait_for(
        "the agent reporting the job's restart",
        Duration::from_secs(30),
        || {
            rig.assert_running();
            common::log_events(&rig.log(), "Step failed.")
                .into_iter()
                .find(|e| {
                    e["class"] == "foreign_update"
                        && e["error"]
                            .as_str()
                            .is_some_and(|m| m.contains("Flink rebuilt its execution graph"))
                })
        },
    );
    let text = rig.log();
    assert_eq!(
        rig.count("Rescale started."),
        0,
        "no rescale of the agent yet\n{text}"
    );
    assert_eq!(
        rig.count("Rescale completed."),
        0,
        "the restart taken for a rescale of the agent\n{text}"
    );

    // Reloaded to scale out: held for one grace period after the restart,
    // then rescaled; never stood down.
    rig.reload(Wants::Out);
    let quiet = Duration::from_secs(FAILURE_GRACE_SECS) - Duration::from_secs(1);
    // The PUT 1 -> 2 goes through the proxy, which kills the JobManager
    // once Flink took it and drops the answer.
    let (out_put, killed) = wait_for(
        "the agent's rescale 1 -> 2 after the restart's grace period",
        Duration::from_secs(FAILURE_GRACE_SECS + 90),
        || {
            rig.assert_running();
            let seen = rig.seen();
            if restarted.elapsed() < quiet {
                let text = rig.log();
                assert!(
                    seen.puts.is_empty(),
                    "a PUT within the grace period after the job's restart: {:?}\n{text}",
                    seen.puts
                );
                assert_eq!(
                    cluster.call("GET", &path, None).1,
                    put,
                    "the requirements within the grace period after the job's restart\n{text}"
                );
            }
            Some((seen.puts.first()?.clone(), seen.killed?))
        },
    );
    let out_after = killed - restarted;
    // The metrics as the JobManager died (the agent cannot have read
    // Flink since).
    let metrics = rig.metrics();
    let text = rig.log();
    assert!(
        out_put.contains(r#""upperBound":2"#) && !out_put.contains(r#""upperBound":1"#),
        "{out_put}"
    );
    let answer = rig.seen().killed_answer.clone().unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "Flink took the PUT before the JobManager died: {answer}"
    );
    assert!(
        foreign_holds(&text)
            .contains(&"grace period after the job's restart or another writer's rescale"),
        "the agent held a grace period for the restart\n{text}"
    );
    // The restart not counted as another writer's override.
    rig.assert_never_stood_down();

    // 2. The JobManager died between taking the PUT and answering it.
    let foreign_before = metric_sum(
        &metrics,
        "flinkscale_failures_total",
        "class=\"foreign_update\"",
    );
    let (down_report, noticed) = wait_for(
        "the agent reporting the JobManager unreachable",
        Duration::from_secs(60),
        || {
            rig.assert_running();
            common::log_events(&rig.log(), "Step failed.")
                .into_iter()
                .find(|e| e["class"] == "transient")
                .map(|e| (e, killed.elapsed()))
        },
    );
    let (livez, _) = agent_get(&rig.listen, "/livez").expect("the agent's /livez");
    let (readyz, readyz_body) = agent_get(&rig.listen, "/readyz").expect("the agent's /readyz");
    assert_eq!(livez, 200);
    assert_eq!(
        readyz, 200,
        "ready: evaluated within the window, the outage is shorter: {readyz_body}"
    );
    let metrics = rig.metrics();
    assert!(
        metric_sum(&metrics, "flinkscale_failures_total", "class=\"transient\"") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "flinkscale_failures_total",
            "class=\"foreign_update\""
        ),
        foreign_before,
        "the JobManager's loss counted as another writer\n{metrics}"
    );
    let down_for = killed.elapsed();
    cluster.jobmanager("start-jobmanager");
    let back = killed.elapsed();
    assert_eq!(live_job(cluster, job_name), None, "no HA: the job is gone");
    let new_job = cluster.submit_load_job(job_name, &["20"]);
    assert_ne!(new_job, job, "a resubmitted job has a new id");
    let new_path = format!("/jobs/{new_job}/resource-requirements");
    let submitted = wait_for(
        "the new job's requirements",
        Duration::from_secs(60),
        || {
            let (status, now) = cluster.call("GET", &new_path, None);
            (status == 200).then_some(now)
        },
    );
    let reported = wait_for(
        "the agent reporting the replacement",
        Duration::from_secs(60),
        || {
            rig.assert_running();
            common::log_events(&rig.log(), "Step failed.")
                .into_iter()
                .find(|e| {
                    e["error"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("(job id {job}, now {new_job})")))
                })
        },
    );
    let seen_at = Instant::now();
    // Nothing sent to the new job for a grace period and a little more.
    let settle = Duration::from_secs(FAILURE_GRACE_SECS + 5);
    wait_for(
        "the new job's grace period and a little more",
        settle + Duration::from_secs(10),
        || {
            rig.assert_running();
            let text = rig.log();
            assert_eq!(
                cluster.get(&new_path),
                submitted,
                "a PUT to the new job\n{text}"
            );
            let puts = rig.seen().puts.len();
            assert_eq!(puts, 1, "a PUT to the new job\n{text}");
            assert!(
                common::log_events(&text, "Rescale completed.").is_empty(),
                "the old job's rescale was reported completed\n{text}"
            );
            (seen_at.elapsed() >= settle).then_some(())
        },
    );
    let text = rig.log();
    assert!(
        foreign_holds(&text)
            .contains(&"grace period after the job was replaced (a new job starts as a restart)"),
        "the agent held a grace period for the new job\n{text}"
    );
    rig.assert_never_stood_down();
    drop(rig);
    format!(
        "task failed {failed_after:.1} s after FAIL_AT, reported as {}; rescaled {} ms after the restart \
         (grace {FAILURE_GRACE_SECS} s); JobManager killed: agent reported it ({}) after {} ms, \
         /livez, /readyz and /metrics read while down at {} ms, a new one ready with the TaskManager after {} ms; replacement reported as {}",
        restart_report["class"],
        out_after.as_millis(),
        down_report["class"],
        noticed.as_millis(),
        down_for.as_millis(),
        back.as_millis(),
        reported["class"]
    )
}

/// The JobManager dies between taking the agent's rescale and answering
/// it, on a cluster with high availability (ZooKeeper, as production
/// clusters run): the next JobManager recovers the job under its id, with
/// the requirements the agent PUT, and runs it at the new parallelism.
///
/// The real agent scales a job out 1 -> 2 through
/// [`jobmanager_killing_proxy`], which kills the JobManager once Flink
/// took the PUT and drops the answer. A new JobManager is started: the
/// job comes back with the same id, asking for 2. The agent must resolve
/// its rescale as taken and follow it to the end (one `Rescale
/// completed.` at 2 KPU), with exactly one PUT in all (the proxy counts
/// them), without taking the recovered job for another job or for
/// another writer's rescale (no `Following another job`, no stand-down,
/// no `foreign_update`, no grace period held for a restart), and send
/// nothing more for a grace period and more (at 2 it is at its maximum).
///
/// Then the same fault before the effect: reloaded to scale in, the
/// agent's PUT 2 -> 1 is lost before Flink sees it (the proxy kills the
/// JobManager instead of forwarding it). The recovered job still asks for
/// and runs at 2; the agent must not report a rescale Flink never carried
/// out, must wait the recovery out as a restart (a grace period), and then
/// send the rescale again, once: two PUTs reach Flink in all, and the job
/// ends at 1.
#[test]
fn a_highly_available_jobmanager_lost_mid_rescale_recovers_the_job_and_the_agent_its_rescale() {
    let _alone = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start_highly_available();
    let startup = cluster.startup_ms();
    let job_name = "flinkscale-ha";
    let job = cluster.submit_load_job(job_name, &["20"]);
    wait_for("the job RUNNING", Duration::from_secs(60), || {
        let vs = vertices(&cluster, &job);
        (!vs.is_empty() && vs.iter().all(|v| v.3 == "RUNNING")).then_some(())
    });
    rescale(&cluster, &job, 1);
    let path = format!("/jobs/{job}/resource-requirements");

    let mut rig = ProxiedAgent::start(&cluster, job_name, Wants::Out);

    // The agent's rescale 1 -> 2; Flink takes it and the JobManager dies.
    let started = Instant::now();
    let (put, killed) = wait_for(
        "the agent's rescale 1 -> 2",
        Duration::from_secs(FAILURE_GRACE_SECS + 90),
        || {
            rig.assert_running();
            let seen = rig.seen();
            Some((seen.puts.first()?.clone(), seen.killed?))
        },
    );
    let sent_after = killed - started;
    assert!(
        put.contains(r#""upperBound":2"#) && !put.contains(r#""upperBound":1"#),
        "{put}"
    );
    let answer = rig.seen().killed_answer.clone().unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "Flink took the PUT before the JobManager died: {answer}"
    );

    // A new JobManager recovers the job: same id, asking for 2, running
    // at 2.
    cluster.jobmanager("start-jobmanager");
    let back = killed.elapsed();
    let recovered = wait_for(
        "the job recovered by the new JobManager, RUNNING at 2",
        Duration::from_secs(120),
        || {
            rig.assert_running();
            running_at(&cluster, &job, 2).then(|| killed.elapsed())
        },
    );
    assert_recovered_asking(&cluster, job_name, &job, 2, "the new JobManager");

    // The agent follows its rescale to the end, once.
    let completed = rig.completed(0, "the agent's rescale completed", killed);
    assert_eq!(completed.0["parallelism"], 2, "{}", completed.0);
    rig.settles(|text| {
        assert_eq!(rig.seen().puts.len(), 1, "a second PUT\n{text}");
        assert_eq!(
            common::log_events(text, "Rescale started.").len(),
            1,
            "{text}"
        );
        assert_eq!(
            common::log_events(text, "Rescale completed.").len(),
            1,
            "{text}"
        );
    });
    let text = rig.log();
    assert!(
        !text.contains("Following another job"),
        "the recovered job taken for another\n{text}"
    );
    rig.assert_never_stood_down();
    let metrics = rig.metrics();
    let transient = metric_sum(&metrics, "flinkscale_failures_total", "class=\"transient\"");
    // What the agent said of its steps meanwhile, each class once, in order.
    let mut classes: Vec<String> = Vec::new();
    for event in common::log_events(&text, "Step failed.") {
        let class = event["class"].as_str().unwrap_or_default().to_owned();
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    assert!(
        !classes.iter().any(|c| c == "foreign_update"),
        "the recovery taken for another writer's rescale or a restart ({classes:?})\n{text}"
    );

    const RESTART: &str = "grace period after the job's restart or another writer's rescale";
    let restart_holds = |text: &str| {
        foreign_holds(text)
            .iter()
            .filter(|r| **r == RESTART)
            .count()
    };
    assert_eq!(
        restart_holds(&text),
        0,
        "the recovery of its own rescale held as a restart\n{text}"
    );

    // 2. The same fault before the effect: the agent's rescale 2 -> 1 is
    // lost before Flink sees it, as the JobManager dies.
    rig.seen().kill_before_next_put = true;
    rig.reload(Wants::In);
    let (lost, killed_before) = wait_for(
        "the agent's rescale 2 -> 1, lost with the JobManager",
        Duration::from_secs(FAILURE_GRACE_SECS + 90),
        || {
            rig.assert_running();
            let seen = rig.seen();
            Some((seen.lost.first()?.clone(), seen.killed_before?))
        },
    );
    assert!(
        lost.contains(r#""upperBound":1"#) && !lost.contains(r#""upperBound":2"#),
        "{lost}"
    );
    cluster.jobmanager("start-jobmanager");
    let back_again = killed_before.elapsed();
    // The job comes back as it was: Flink never saw the PUT.
    wait_for(
        "the job recovered again, RUNNING at 2",
        Duration::from_secs(120),
        || {
            rig.assert_running();
            running_at(&cluster, &job, 2).then_some(())
        },
    );
    let recovered_again = Instant::now();
    let still = cluster.get(&path);
    assert!(
        asks_for(&still, 2),
        "the lost PUT never reached Flink: {still}"
    );
    // The agent does not take the recovery for its rescale: it sends the
    // rescale again, once, and it completes at 1.
    let resent = wait_for(
        "the agent's rescale 2 -> 1 sent again and carried out",
        Duration::from_secs(FAILURE_GRACE_SECS + 120),
        || {
            rig.assert_running();
            let text = rig.log();
            let completed = common::log_events(&text, "Rescale completed.");
            assert!(
                completed.len() <= 2,
                "a rescale completed that Flink never carried out\n{text}"
            );
            let puts = rig.seen().puts.len();
            assert!(puts <= 2, "more than one PUT after the lost one\n{text}");
            (completed.len() == 2 && running_at(&cluster, &job, 1))
                .then(|| recovered_again.elapsed())
        },
    );
    let text = rig.log();
    let both = common::log_events(&text, "Rescale completed.");
    assert_eq!(both[1]["parallelism"], 1, "{}", both[1]);
    let puts = rig.seen().puts.clone();
    assert_eq!(puts.len(), 2, "one PUT after the lost one\n{text}");
    assert!(puts[1].contains(r#""upperBound":1"#), "{}", puts[1]);
    // The recovered job moved the version without asking for 1: a
    // restart, waited out for a grace period before the rescale is sent
    // again.
    assert!(
        restart_holds(&text) > 0,
        "no grace period held after the recovery\n{text}"
    );
    assert!(
        !text.contains("Following another job"),
        "the recovered job taken for another\n{text}"
    );
    rig.assert_never_stood_down();

    // 3. A second JobManager, and the agent given both addresses: the
    // leader dies once it took the agent's rescale 1 -> 2, its answer
    // lost, and its address refuses connections from then on; the
    // standby takes over the job.
    let standby = cluster.start_standby();
    let standby_ready = std::fs::read_to_string(cluster.dir.path().join("standby_ms"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    rig.add_standby(standby, cluster.dir.path().to_path_buf());
    {
        let mut seen = rig.seen();
        seen.kill_after_next_put = true;
        seen.close_after_kill = true;
    }
    let started_before = rig.count("Rescale started.");
    let holds_before = restart_holds(&rig.log());
    rig.reload(Wants::Out);
    let (third, killed_leader) = wait_for(
        "the agent's rescale 1 -> 2, taken as the leading JobManager dies",
        Duration::from_secs(FAILURE_GRACE_SECS + 90),
        || {
            rig.assert_running();
            let seen = rig.seen();
            let put = seen.puts.get(2)?.clone();
            Some((put, seen.killed.filter(|k| *k > killed_before)?))
        },
    );
    assert!(
        third.contains(r#""upperBound":2"#) && !third.contains(r#""upperBound":1"#),
        "{third}"
    );
    let answer = rig.seen().killed_answer.clone().unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "Flink took the PUT before the leader died: {answer}"
    );
    cluster.follow_standby();
    let taken_over = wait_for(
        "the standby leading, the job recovered RUNNING at 2",
        Duration::from_secs(120),
        || {
            rig.assert_running();
            let detail = cluster.answers(&format!("/jobs/{job}"))?;
            all_running_at(&vertices_of(&detail), 2).then(|| killed_leader.elapsed())
        },
    );
    assert_recovered_asking(&cluster, job_name, &job, 2, "the standby");
    // The agent moves to the standby and follows its rescale to the end,
    // once; the PUT whose answer was lost is not sent to the standby.
    let followed = rig.completed(
        2,
        "the agent's rescale completed through the standby",
        killed_leader,
    );
    assert_eq!(followed.0["parallelism"], 2, "{}", followed.0);
    rig.settles(|text| {
        assert_eq!(rig.seen().puts.len(), 3, "a PUT to the dead leader\n{text}");
        assert_eq!(
            rig.standby_puts(),
            Vec::<String>::new(),
            "a PUT sent again\n{text}"
        );
        let started = common::log_events(text, "Rescale started.").len();
        assert_eq!(started, started_before + 1, "{text}");
        assert_eq!(
            common::log_events(text, "Rescale completed.").len(),
            3,
            "{text}"
        );
    });
    let text = rig.log();
    let moved = common::log_events(
        &text,
        "Flink's REST API did not answer there; trying the next JobManager.",
    );
    assert!(
        moved.iter().any(|e| e["to"] == rig.rest_url[1]),
        "the agent never moved to the standby\n{text}"
    );
    let metrics = rig.metrics();
    let counted = metric_sum(
        &metrics,
        "flinkscale_flink_jobmanager_moves_total",
        &format!("from=\"{}\",to=\"{}\"", rig.rest_url[0], rig.rest_url[1]),
    );
    assert!(
        counted >= 1.0,
        "the move to the standby not counted in /metrics\n{metrics}"
    );
    assert_eq!(
        restart_holds(&text),
        holds_before,
        "the takeover of its own rescale held as a restart\n{text}"
    );
    assert!(
        !text.contains("Following another job"),
        "the recovered job taken for another\n{text}"
    );
    rig.assert_never_stood_down();

    // 4. The agent itself restarted while its rescale waits for slots:
    // the leader (the standby now) takes the agent's rescale 2 -> 1, its
    // answer is lost, and the TaskManager dies with it. The job restarts
    // and, without slots, shows a placeholder graph (`CREATED`, created
    // at time 0, dated from the job's submission), which a fresh agent
    // reads as a version below the one its journal quoted. The agent is
    // killed and started again once Flink shows it.
    {
        let mut seen = rig.standby_seen();
        seen.kill_after_next_put = true;
        seen.kill_command = "lose-taskmanager";
    }
    let completed_before = rig.count("Rescale completed.");
    rig.reload(Wants::In);
    wait_for(
        "the agent's rescale 2 -> 1, taken as the TaskManager dies",
        Duration::from_secs(FAILURE_GRACE_SECS + 90),
        || {
            rig.assert_running();
            rig.standby_seen().killed
        },
    );
    rig.agent.kill9();
    let fourth = rig.standby_puts();
    assert_eq!(fourth.len(), 1, "{fourth:?}");
    assert!(fourth[0].contains(r#""upperBound":1"#), "{}", fourth[0]);
    wait_for(
        "the job shown CREATED with a placeholder graph",
        Duration::from_secs(60),
        || {
            let detail = cluster.answers(&format!("/jobs/{job}"))?;
            (detail["state"] == "CREATED" && detail["timestamps"]["CREATED"] == 0).then_some(())
        },
    );
    rig.restart();
    let placeholders_before = rig.standby_seen().placeholders;
    wait_for(
        "the restarted agent reading the job's placeholder graph",
        Duration::from_secs(90),
        || {
            rig.assert_running();
            (rig.standby_seen().placeholders >= placeholders_before + 2).then_some(())
        },
    );
    let text = rig.log();
    assert_eq!(
        rig.count("Rescale completed."),
        completed_before,
        "a rescale completed before Flink rebuilt the job\n{text}"
    );
    assert!(
        !text.contains("went back") && !text.contains("update never took effect"),
        "the placeholder taken for a version that went back\n{text}"
    );
    let slots_back = Instant::now();
    cluster.jobmanager("start-taskmanager");
    let rebuilt = wait_for(
        "the job RUNNING at 1 on the new TaskManager",
        Duration::from_secs(120),
        || {
            rig.assert_running();
            let detail = cluster.answers(&format!("/jobs/{job}"))?;
            all_running_at(&vertices_of(&detail), 1).then(|| slots_back.elapsed())
        },
    );
    let resumed = rig.completed(
        completed_before,
        "the restarted agent's rescale completed",
        slots_back,
    );
    assert_eq!(resumed.0["parallelism"], 1, "{}", resumed.0);
    rig.settles(|text| {
        assert_eq!(rig.standby_puts().len(), 1, "a PUT sent again\n{text}");
        let completed = common::log_events(text, "Rescale completed.").len();
        assert_eq!(completed, completed_before + 1, "{text}");
    });
    let text = rig.log();
    assert_eq!(
        restart_holds(&text),
        holds_before,
        "the recovery of its own rescale held as a restart\n{text}"
    );
    assert!(
        !text.contains("Following another job"),
        "the recovered job taken for another\n{text}"
    );
    rig.assert_never_stood_down();
    drop(rig);
    println!(
        "flink HA: cluster with ZooKeeper ready in {startup} ms; the agent's PUT {} ms after its \
         start, JobManager killed with it; a new one ready {} ms later, the job recovered \
         running at 2 after {} ms, the agent's rescale completed after {} ms \
         ({transient} transient failures while it was down; failure classes {classes:?}), \
         1 PUT; then a PUT lost before Flink saw it: a new JobManager ready {} ms after the \
         kill, the job recovered at 2, the agent's rescale to 1 sent again after a grace \
         period and carried out {} ms after the recovery, 2 PUTs in all; then a standby \
         JobManager (ready in {standby_ready} ms) and the agent given both addresses: the \
         leader killed with the agent's PUT taken, the standby running the job at 2 after {} \
         ms, the agent's rescale completed through it after {} ms, no PUT sent again; then \
         the TaskManager killed with the agent's PUT taken, the agent restarted on the \
         job's placeholder graph: running at 1 {} ms after a TaskManager came back, the \
         restarted agent's rescale completed after {} ms, no PUT sent again",
        sent_after.as_millis(),
        back.as_millis(),
        recovered.as_millis(),
        completed.1.as_millis(),
        back_again.as_millis(),
        resent.as_millis(),
        taken_over.as_millis(),
        followed.1.as_millis(),
        rebuilt.as_millis(),
        resumed.1.as_millis(),
    );
}

/// Fails unless the live job named `job_name` is still `job` (recovered
/// under its id, `whose` says by which JobManager) and its requirements
/// ask for `parallelism`, as the agent's PUT did.
fn assert_recovered_asking(
    cluster: &Cluster,
    job_name: &str,
    job: &str,
    parallelism: u64,
    whose: &str,
) {
    assert_eq!(
        live_job(cluster, job_name).as_deref(),
        Some(job),
        "{whose} recovers the job under its id"
    );
    let requirements = cluster.get(&format!("/jobs/{job}/resource-requirements"));
    assert!(
        asks_for(&requirements, parallelism),
        "the recovered job asks for what the agent PUT: {requirements}"
    );
}

/// Whether every vertex of `job` runs, at `parallelism`.
fn running_at(cluster: &Cluster, job: &str, parallelism: u64) -> bool {
    all_running_at(&vertices(cluster, job), parallelism)
}

/// Whether there are vertices and every one runs at `parallelism`.
fn all_running_at(vertices: &[(String, String, u64, String)], parallelism: u64) -> bool {
    !vertices.is_empty()
        && vertices
            .iter()
            .all(|v| v.2 == parallelism && v.3 == "RUNNING")
}

/// Whether the resource requirements read back ask every vertex for
/// `parallelism` at most.
fn asks_for(requirements: &Value, parallelism: u64) -> bool {
    requirements.as_object().is_some_and(|r| {
        !r.is_empty()
            && r.values()
                .all(|v| v["parallelism"]["upperBound"] == parallelism)
    })
}

/// What [`jobmanager_killing_proxy`] saw: the PUTs it forwarded (whole
/// requests), Flink's status line for the last it killed the JobManager
/// after, and when; and, once a test sets `kill_before_next_put`, the PUT
/// it did not forward because it killed the JobManager first.
#[derive(Default)]
struct KillingProxy {
    puts: Vec<String>,
    /// Set at the start and by a test: the next PUT is forwarded, then
    /// the JobManager is killed and the answer dropped.
    kill_after_next_put: bool,
    /// Set by a test: once it killed the JobManager, the proxy stops
    /// listening, so that its address refuses connections as a dead
    /// JobManager's does.
    close_after_kill: bool,
    /// The `flink-cluster.sh` subcommand run after the PUT: it kills
    /// the JobManager behind the proxy (`kill-jobmanager`,
    /// `kill-standby`), or the TaskManager (`lose-taskmanager`).
    kill_command: &'static str,
    /// How many answers to `GET /jobs/{id}` it forwarded that showed a
    /// job `CREATED` with a placeholder graph (created at time 0).
    placeholders: usize,
    killed_answer: Option<String>,
    killed: Option<Instant>,
    /// Set by a test: the next PUT is not forwarded; the JobManager is
    /// killed and the connection closed (the request lost before Flink
    /// saw it).
    kill_before_next_put: bool,
    lost: Vec<String>,
    killed_before: Option<Instant>,
}

/// A loopback proxy in front of Flink that forwards every request, except
/// that, when `kills`, it answers the first PUT with nothing: it forwards
/// it, Flink applies it, and then the JobManager is killed
/// (`kill-jobmanager` on `cluster_dir`) and the connection closed, as a
/// crash between the PUT and its answer loses it. Everything after is
/// forwarded again (refused while no JobManager runs). Returns its
/// `http://` URL and what it saw.
fn jobmanager_killing_proxy(
    upstream: String,
    cluster_dir: PathBuf,
    kills: bool,
    kill_command: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<KillingProxy>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("the proxy's address")
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(KillingProxy {
        kill_after_next_put: kills,
        kill_command,
        ..KillingProxy::default()
    }));
    let shared = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Some(request) = read_request(&mut client) else {
                continue;
            };
            if request.starts_with(b"PUT ") {
                let mut seen = shared.lock().unwrap_or_else(|e| e.into_inner());
                if seen.kill_before_next_put {
                    seen.kill_before_next_put = false;
                    seen.lost
                        .push(String::from_utf8_lossy(&request).into_owned());
                    let _ = Command::new(repo_root().join("scripts/flink-cluster.sh"))
                        .arg(seen.kill_command)
                        .arg(&cluster_dir)
                        .status();
                    seen.killed_before = Some(Instant::now());
                    // Dropped before Flink saw it.
                    continue;
                }
            }
            let Ok(mut flink) = TcpStream::connect(&upstream) else {
                continue;
            };
            let mut answer = Vec::new();
            if flink.write_all(&request).is_err() || flink.read_to_end(&mut answer).is_err() {
                continue;
            }
            let mut seen = shared.lock().unwrap_or_else(|e| e.into_inner());
            if request.starts_with(b"GET /jobs/") && is_placeholder(&answer) {
                seen.placeholders += 1;
            }
            if request.starts_with(b"PUT ") {
                seen.puts
                    .push(String::from_utf8_lossy(&request).into_owned());
                if seen.kill_after_next_put {
                    seen.kill_after_next_put = false;
                    let answer = String::from_utf8_lossy(&answer);
                    seen.killed_answer = answer.lines().next().map(str::to_owned);
                    let _ = Command::new(repo_root().join("scripts/flink-cluster.sh"))
                        .arg(seen.kill_command)
                        .arg(&cluster_dir)
                        .status();
                    seen.killed = Some(Instant::now());
                    if seen.close_after_kill {
                        // The listener goes with the loop: refused from
                        // now on.
                        break;
                    }
                    // Dropped: the client sees its connection closed.
                    continue;
                }
            }
            drop(seen);
            let _ = client.write_all(&answer);
        }
    });
    (url, seen)
}

/// Whether a raw HTTP answer to `GET /jobs/{id}` shows the job `CREATED`
/// with a placeholder graph (`timestamps.CREATED` 0), as a JobManager
/// shows a job it recovered and has no slots to run yet.
fn is_placeholder(answer: &[u8]) -> bool {
    let answer = String::from_utf8_lossy(answer);
    let Some((_, body)) = answer.split_once("\r\n\r\n") else {
        return false;
    };
    serde_json::from_str::<Value>(body).is_ok_and(|job| {
        job["state"] == "CREATED" && job["timestamps"]["CREATED"].as_u64() == Some(0)
    })
}

/// When the job's current execution graph was created: a new value means
/// Flink rebuilt it (a rescale or a restart).
fn graph_created(cluster: &Cluster, job: &str) -> u64 {
    cluster.get(&format!("/jobs/{job}"))["timestamps"]["CREATED"]
        .as_u64()
        .expect("timestamps.CREATED")
}

/// A loopback proxy in front of Flink that forwards every request, and
/// from the first PUT on forwards it but drops Flink's answer (the
/// connection closes without one): the rescale happens, the agent never
/// hears of it, nor of anything after. Returns its `http://` URL.
fn answer_dropping_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("the proxy's address")
    );
    std::thread::spawn(move || {
        let mut dropping = false;
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Some(request) = read_request(&mut client) else {
                continue;
            };
            dropping |= request.starts_with(b"PUT ");
            let Ok(mut flink) = TcpStream::connect(&upstream) else {
                continue;
            };
            let mut answer = Vec::new();
            if flink.write_all(&request).is_err() || flink.read_to_end(&mut answer).is_err() {
                continue;
            }
            if !dropping {
                let _ = client.write_all(&answer);
            }
            // Dropped: the client sees its connection closed, no answer.
        }
    });
    url
}

/// One whole HTTP request (head and Content-Length body) from `client`.
fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(request);
            }
        }
    }
}

/// The controller's state machine drives a rescale 1 -> 2 whose answer is
/// lost after Flink applied it: the target reports a transient failure,
/// the machine reads the job, sees the version moved past the quote, and
/// follows the rescale instead of sending it again; Flink rebuilt the job
/// exactly once. A retry quoting the old version is fenced.
async fn a_lost_answer_is_resolved_as_taken(
    cluster: &Cluster,
    job_name: &str,
    job: &str,
) -> Duration {
    use flinkscale::controller::machine::{Command, Evaluated, Jitter, Machine, Next, Observation};
    use flinkscale::model::{Action, Decision};

    let config = format!(
        "[[application]]\nname = {job_name:?}\ntarget = \"flink\"\nrest_url = {:?}\n\
         max_parallelism = 2\nupdate_poll_secs = 1\ngrace_period_secs = 0\n\
         [application.policy]\nplugin = \"hold\"\n",
        cluster.rest_url()
    );
    let loaded = flinkscale::config::load_str(&config, Path::new("flink.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let app = &loaded.config.applications[0];
    let settings = flinkscale::controller::Settings::from_config(app, false);
    let (rest_url, flink_job) = app.flink().expect("a Flink application");
    let direct = FlinkTarget::for_job(rest_url, flink_job.clone()).expect("a target");
    let proxy = answer_dropping_proxy(cluster.host_port());
    let dropping = FlinkTarget::for_job(&proxy, flink_job).expect("a target via the proxy");

    let before = direct.describe(job_name).await.expect("describe");
    assert_eq!((before.status, before.parallelism), (AppStatus::Running, 1));
    let created_before = graph_created(cluster, job);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let mut machine = Machine::new(Jitter::new(7));
    let first = machine.step(Observation::Wake, &settings, now());
    assert_eq!(first.next, Next::Run(Command::Evaluate), "{first:?}");
    let decided = machine.step(
        Observation::Evaluated(Ok(Evaluated {
            state: before.clone(),
            decision: Decision {
                action: Action::ScaleTo(2),
                reason: "test: scale out".into(),
                next_evaluation_secs: None,
            },
        })),
        &settings,
        now(),
    );
    let Next::Run(Command::Update { update, current }) = decided.next else {
        panic!("expected an update, got {decided:?}");
    };
    let started = Instant::now();
    let answer = dropping
        .rescale(job_name, update.target_kpu, &current)
        .await;
    assert!(
        matches!(answer, Err(TargetError::Transient(_))),
        "the answer (and the read-back) were dropped: {answer:?}"
    );
    let resolving = machine.step(Observation::Updated(answer), &settings, now());
    assert_eq!(
        resolving.next,
        Next::Run(Command::Describe),
        "{resolving:?}"
    );
    // Drive the machine as the controller does, until it says the rescale
    // is over: it must follow it, never send it again nor go back to
    // deciding as if nothing had happened.
    let mut described = Vec::new();
    let mut next = resolving.next;
    loop {
        let step = match next {
            Next::Run(Command::Describe) => {
                let state = direct.describe(job_name).await;
                described.push(state.clone());
                machine.step(Observation::Described(state), &settings, now())
            }
            Next::Wait(wait) => {
                tokio::time::sleep(wait.min(Duration::from_millis(300))).await;
                machine.step(Observation::Wake, &settings, now())
            }
            other => panic!(
                "the machine lost the rescale whose answer was lost: {other:?} after {:?}",
                described.last()
            ),
        };
        if step
            .events
            .iter()
            .any(|e| event_name(e) == "RescaleCompleted")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not resolved in 90 s; last read {:?}",
            described.last()
        );
        next = step.next;
    }
    let took = started.elapsed();
    assert!(
        described
            .first()
            .and_then(|d| d.as_ref().ok())
            .is_some_and(|d| d.version_id > before.version_id),
        "the version moved past the quote at once: {described:?}"
    );
    let settled = vertices(cluster, job);
    assert!(
        settled.iter().all(|v| v.2 == 2 && v.3 == "RUNNING"),
        "{settled:?}"
    );
    let created_after = graph_created(cluster, job);
    assert!(created_after > created_before);

    // Sending it again with the old quote is refused, and changes nothing.
    let again = direct.rescale(job_name, 2, &current).await;
    assert!(
        matches!(again, Err(TargetError::ConcurrentModification(_))),
        "{again:?}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        graph_created(cluster, job),
        created_after,
        "Flink rebuilt the job once"
    );
    took
}

/// The debug name of an event (its variant).
fn event_name(event: &flinkscale::telemetry::Event) -> &'static str {
    let text = format!("{event:?}");
    [
        "RescaleStarted",
        "RescaleCompleted",
        "ScaleFailed",
        "Resumed",
    ]
    .into_iter()
    .find(|n| text.starts_with(n))
    .unwrap_or("other")
}

/// Unreachable, unknown job, not enough slots, and a requirement Flink
/// refuses, each as its class, from real answers.
async fn errors_are_classified(cluster: &Cluster, job_name: &str, job: &str) {
    use flinkscale::config::FlinkJob;
    use flinkscale::flink::FlinkRest;

    let closed = format!("http://127.0.0.1:{}", closed_port());
    let unreachable = FlinkTarget::new(&closed)
        .expect("a URL")
        .describe(job_name)
        .await;
    assert!(
        matches!(unreachable, Err(TargetError::Transient(_))),
        "{unreachable:?}"
    );

    let by_id =
        FlinkTarget::for_job(&cluster.rest_url(), FlinkJob::Id(job.to_owned())).expect("a target");
    let state = by_id.describe("any-name").await.expect("the job by its id");
    assert_eq!((state.status, state.parallelism), (AppStatus::Running, 2));
    let gone = FlinkTarget::for_job(
        &cluster.rest_url(),
        FlinkJob::Id("0123456789abcdef0123456789abcdef".into()),
    )
    .expect("a target")
    .describe("x")
    .await;
    assert!(matches!(gone, Err(TargetError::NotFound(_))), "{gone:?}");

    // Three slots asked of a cluster with two: refused before sending.
    let slots = by_id.rescale("any-name", 3, &state).await;
    let Err(TargetError::SlotsExceeded { usable, message }) = &slots else {
        panic!("expected SlotsExceeded, got {slots:?}");
    };
    assert_eq!(*usable, 2, "the slots the job can have: {message}");
    assert!(
        message.contains("needs 3 task slots")
            && message.contains("has 2 task slots and its other jobs use 0"),
        "{message}"
    );
    assert_eq!(by_id.describe("x").await.expect("describe"), state);

    // A requirement Flink refuses: its own words, without the stack trace.
    let path = format!("/jobs/{job}/resource-requirements");
    let mut wanted = cluster.get(&path);
    for requirement in wanted.as_object_mut().expect("requirements").values_mut() {
        requirement["parallelism"]["upperBound"] = json!(500);
    }
    let refused = FlinkRest::new(&cluster.rest_url())
        .expect("a client")
        .call("PUT", &path, Some(&wanted))
        .await;
    let Err(TargetError::Invalid(message)) = &refused else {
        panic!("expected Invalid, got {refused:?}");
    };
    assert!(
        message.contains("400 The newly requested parallelism 500")
            && message.contains("exceeds its maximum parallelism 128")
            && !message.contains("\tat "),
        "{message}"
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The `source = "flink"` metrics through the metric source the agent
/// uses, against Flink's own numbers.
async fn metrics_come_from_flink(cluster: &Cluster, job_name: &str) {
    use flinkscale::config::FlinkJob;
    use flinkscale::metrics::flink::FlinkMetricSource;
    use flinkscale::metrics::{MetricQuery, MetricSource, MetricsError, Series};

    /// The CloudWatch stand-in: a Flink-only application never calls it.
    struct NoCloudWatch;
    #[async_trait::async_trait]
    impl MetricSource for NoCloudWatch {
        async fn fetch(
            &self,
            _: &[MetricQuery],
            _: i64,
            _: i64,
        ) -> Result<Vec<Series>, MetricsError> {
            Err(MetricsError::Source("CloudWatch was called".into()))
        }
    }
    let config = format!(
        "[[application]]\nname = {job_name:?}\ntarget = \"flink\"\nrest_url = {:?}\n\
         [[application.metric]]\nid = \"busy\"\nsource = \"flink\"\n\
         metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Maximum\"\nvertex = \"Calc\"\n\
         period_secs = 10\n\
         [[application.metric]]\nid = \"rate_in\"\nsource = \"flink\"\n\
         metric_name = \"numRecordsInPerSecond\"\nstatistic = \"Sum\"\nvertex = \"Calc\"\n\
         period_secs = 10\n\
         [[application.metric]]\nid = \"emitted\"\nsource = \"flink\"\n\
         metric_name = \"numRecordsOutPerSecond\"\nstatistic = \"Sum\"\nvertex = \"source\"\n\
         period_secs = 10\n\
         [[application.metric]]\nid = \"backlog\"\nsource = \"flink\"\n\
         metric_name = \"pendingRecords\"\nstatistic = \"Sum\"\nvertex = \"source\"\n\
         period_secs = 10\n\
         [application.policy]\nplugin = \"hold\"\n",
        cluster.rest_url()
    );
    let loaded = flinkscale::config::load_str(&config, Path::new("flink.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let app = &loaded.config.applications[0];
    let queries: Vec<MetricQuery> = app
        .metrics
        .iter()
        .map(|m| MetricQuery::from_config(m, &app.metrics))
        .collect();
    let source = FlinkMetricSource::new(
        &cluster.rest_url(),
        FlinkJob::Name(job_name.to_owned()),
        std::sync::Arc::new(NoCloudWatch),
    )
    .expect("a source");
    // Two fetches one period apart: one datapoint each, on period starts.
    let now = 1_000_000_000_000_i64;
    let first = wait_for_async(|| async {
        let series = source
            .fetch(&queries, now - 600_000, now)
            .await
            .expect("fetch");
        (series[1].points.last().map(|p| p.value) > Some(0.0)).then_some(series)
    })
    .await;
    let later = source
        .fetch(&queries, now - 600_000, now + 10_000)
        .await
        .expect("fetch");
    let busy = first[0].points.last().expect("a busy datapoint").value;
    assert!((0.0..=1000.0).contains(&busy), "busy ms/s {busy}");
    let emitted = first[2].points.last().expect("a source datapoint").value;
    // Flink's rate is over a fixed 60 s window, so for a minute after a
    // (re)start it ramps up towards the 20/s the source emits.
    assert!(
        emitted > 0.0 && emitted <= 25.0,
        "the source emits up to 20/s: {emitted}"
    );
    assert!(
        first[3].points.is_empty(),
        "datagen has no pendingRecords: {:?}",
        first[3]
    );
    assert_eq!(
        first[0].points.last().map(|p| p.timestamp_ms),
        Some(now - 10_000)
    );
    assert_eq!(later[1].points.len(), 2, "{later:?}");
    assert_eq!(later[1].points[1].timestamp_ms, now);

    // A vertex the job does not have: the valid names in the error.
    let mut wrong = queries[0].clone();
    wrong.dimensions.insert("vertex".into(), "Nope".into());
    let refused = source.fetch(&[wrong], now - 600_000, now).await;
    let Err(MetricsError::Invalid(message)) = &refused else {
        panic!("expected Invalid, got {refused:?}");
    };
    assert!(
        message.contains("vertex \"Nope\" matches none") && message.contains("Calc"),
        "{message}"
    );
}

/// Polls `check` until it returns Some, for up to a minute.
async fn wait_for_async<T, F>(mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "timed out");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

/// What one poll of Flink's REST API saw of the end-to-end test's job.
#[derive(Debug, Clone)]
struct Seen {
    /// Seconds since the Unix epoch (fractional).
    at: f64,
    /// The job's state.
    state: String,
    /// The highest upper bound of the vertices' resource requirements.
    requirement: u64,
    /// Each vertex's (parallelism, status).
    vertices: Vec<(u64, String)>,
}

impl Seen {
    /// Every vertex RUNNING at the requirement: no rescale in progress.
    fn settled(&self) -> bool {
        self.state == "RUNNING"
            && self
                .vertices
                .iter()
                .all(|(p, s)| *p == self.requirement && s == "RUNNING")
    }
}

/// When the agent logged `event` (its `timestamp`, RFC 3339 in UTC as
/// the JSON log writes it), in seconds since the Unix epoch.
fn log_time(event: &Value) -> f64 {
    let text = event["timestamp"].as_str().unwrap_or_default();
    let parse = |range: std::ops::Range<usize>| -> i64 {
        text.get(range)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a log timestamp: {event}"))
    };
    let (year, month, day) = (parse(0..4), parse(5..7), parse(8..10));
    let (hour, minute) = (parse(11..13), parse(14..16));
    let seconds: f64 = text
        .get(17..text.len().saturating_sub(1))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a log timestamp: {event}"));
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard
    // Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hour * 3_600 + minute * 60) as f64 + seconds
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The real `flinkscale run` scales a real Flink job with `target =
/// "flink"`, its `source = "flink"` busy time and the `step` policy: the
/// job starts at 2 with cheap rows and is scaled in to 1; then every row
/// becomes costly (more than one slot can do) and it is scaled out to 2;
/// when the rows are cheap again it is scaled in to 1. Everything asserted
/// comes from Flink's own REST answers, polled every 250 ms: the
/// parallelism stays within 1..=2, each requirement change happens only
/// once the previous one was carried out (no rescale while one is in
/// progress), at the right phase of the load, and the agent started
/// exactly as many rescales as Flink saw.
#[test]
fn the_agent_scales_a_real_flink_job_out_and_in_with_its_load() {
    let _alone = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let startup = cluster.startup_ms();
    let job_name = "flinkscale-e2e";
    let t0 = unix_secs();
    let (costly_from, costly_until) = (t0 + 50.0, t0 + 140.0);
    let job = cluster.submit_load_job(
        job_name,
        &[
            "150",
            &format!("{costly_from:.0}"),
            &format!("{costly_until:.0}"),
            "1",
        ],
    );

    let dir = tempfile::tempdir().expect("a folder for the agent");
    let config = dir.path().join("flinkscale.toml");
    AgentConfig::new()
        .application(
            step_job("e2e", cluster.rest_url(), job_name, 15)
                .alarm(&busy_alarm("scale-out", "GreaterThanThreshold", "600.0", 2))
                .alarm(&busy_alarm("scale-in", "LessThanThreshold", "250.0", 2))
                .policy(STEP_POLICY),
        )
        .write(&config);
    let validated = Command::new(common::BIN)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("running flinkscale validate");
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let (agent, log) = start_agent(dir.path(), &config);

    // Poll Flink until it has been scaled in, out and in again.
    let mut seen: Vec<Seen> = Vec::new();
    let deadline = t0 + 270.0;
    let changes = |seen: &[Seen]| {
        seen.windows(2)
            .filter(|w| w[0].requirement != w[1].requirement)
            .count()
    };
    while changes(&seen) < 3 && unix_secs() < deadline {
        agent.assert_running(|| std::fs::read_to_string(&log).unwrap_or_default());
        let detail = cluster.get(&format!("/jobs/{job}"));
        let requirements = cluster.get(&format!("/jobs/{job}/resource-requirements"));
        seen.push(Seen {
            at: unix_secs(),
            state: detail["state"].as_str().unwrap_or_default().to_owned(),
            requirement: requirements
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, r)| r["parallelism"]["upperBound"].as_u64())
                .max()
                .unwrap_or(0),
            vertices: detail["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    (
                        v["parallelism"].as_u64().unwrap_or(0),
                        v["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        });
        std::thread::sleep(Duration::from_millis(250));
    }
    // Wait for the last rescale to be carried out.
    while seen.last().is_some_and(|s| !s.settled()) && unix_secs() < deadline + 60.0 {
        std::thread::sleep(Duration::from_millis(250));
        let detail = cluster.get(&format!("/jobs/{job}"));
        let last = seen.last().cloned().expect("an observation");
        seen.push(Seen {
            at: unix_secs(),
            state: detail["state"].as_str().unwrap_or_default().to_owned(),
            vertices: detail["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    (
                        v["parallelism"].as_u64().unwrap_or(0),
                        v["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            ..last
        });
    }
    drop(agent);
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    let timeline = || {
        let mut lines = Vec::new();
        for w in seen.windows(2) {
            if w[0].requirement != w[1].requirement || w[0].settled() != w[1].settled() {
                lines.push(format!(
                    "t0+{:.1}s requirement {} settled {} {:?}",
                    w[1].at - t0,
                    w[1].requirement,
                    w[1].settled(),
                    w[1].vertices
                ));
            }
        }
        format!(
            "costly from t0+50 s to t0+140 s\n{}\n--- agent log ---\n{agent_log}",
            lines.join("\n")
        )
    };

    // Each requirement change, and the observation just before it.
    let steps: Vec<(&Seen, &Seen)> = seen
        .windows(2)
        .filter(|w| w[0].requirement != w[1].requirement)
        .map(|w| (&w[0], &w[1]))
        .collect();
    let path: Vec<u64> = std::iter::once(seen[0].requirement)
        .chain(steps.iter().map(|(_, after)| after.requirement))
        .collect();
    assert_eq!(path, vec![2, 1, 2, 1], "in, out, in\n{}", timeline());
    for (before, _) in &steps {
        assert!(
            before.settled(),
            "a requirement changed while the previous rescale was in progress: {before:?}\n{}",
            timeline()
        );
    }
    assert!(
        seen.iter()
            .all(|s| (1..=2).contains(&s.requirement) && s.vertices.iter().all(|v| v.0 <= 2)),
        "out of bounds\n{}",
        timeline()
    );
    let (scale_in, scale_out, scale_in_again) = (steps[0].1.at, steps[1].1.at, steps[2].1.at);
    assert!(
        scale_in < costly_from,
        "first scale-in before the load rose\n{}",
        timeline()
    );
    assert!(
        scale_out > costly_from && scale_out < costly_until,
        "scale-out while the load was high\n{}",
        timeline()
    );
    assert!(
        scale_in_again > costly_until,
        "scale-in after the load fell\n{}",
        timeline()
    );
    assert!(seen.last().is_some_and(Seen::settled), "{}", timeline());
    let started = common::log_events(&agent_log, "Rescale started.").len();
    assert_eq!(
        started,
        3,
        "the agent started one rescale per change\n{}",
        timeline()
    );

    // How long Flink took for each: from the requirement change seen to
    // every vertex running at it.
    let durations: Vec<f64> = steps
        .iter()
        .map(|(_, after)| {
            seen.iter()
                .find(|s| s.at >= after.at && s.settled())
                .map_or(f64::NAN, |s| s.at - after.at)
        })
        .collect();
    println!(
        "flink e2e: cluster ready in {startup} ms; scale-in at t0+{:.0} s, out at t0+{:.0} s \
         (load up at t0+50), in at t0+{:.0} s (load down at t0+140); Flink took {:.1} s, \
         {:.1} s, {:.1} s to run at the new parallelism",
        scale_in - t0,
        scale_out - t0,
        scale_in_again - t0,
        durations[0],
        durations[1],
        durations[2]
    );
}

/// Model against reality (issue #13, item 5), a measurement rather than a
/// check, so `#[ignore]`d: on a cluster with 4 slots, the load job's costly
/// step saturated (far more rows than it can take), its throughput at
/// parallelism 1, 2 and 4 from Flink's own `numRecordsIn` counters over
/// 30 s after 15 s of warm-up; the Universal Scalability Law fitted to it
/// (sigma and kappa solved exactly from the three points), beside what the
/// simulator's default model (sigma 0.02, kappa 0.0002) predicts from the
/// same one-subtask throughput, and the rescale durations Flink took
/// (the simulator's MSF default is 90 s). Run with
/// `cargo test -p flinkscale --test flink -- --ignored --nocapture model_against_reality`.
#[test]
#[ignore = "a measurement (about 3 minutes of saturated CPU); see README, Self-managed Flink"]
fn model_against_reality() {
    let _alone = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start_with_slots(4);
    let job_name = "flinkscale-usl";
    let job = cluster.submit_load_job(job_name, &["400"]);
    let running = wait_for("the job RUNNING", Duration::from_secs(60), || {
        let vs = vertices(&cluster, &job);
        vs.iter().all(|v| v.3 == "RUNNING").then_some(vs)
    });
    let calc = running
        .iter()
        .find(|v| v.1.starts_with("Calc"))
        .expect("the costly vertex")
        .0
        .clone();
    let records_in = || {
        let m = cluster.get(&format!(
            "/jobs/{job}/vertices/{calc}/subtasks/metrics?get=numRecordsIn&agg=sum"
        ));
        m.as_array()
            .and_then(|a| a.first())
            .and_then(|x| x["sum"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let mut measured = Vec::new();
    for parallelism in [1_u64, 2, 4] {
        let took = rescale(&cluster, &job, parallelism);
        std::thread::sleep(Duration::from_secs(15));
        let (n0, t0) = (records_in(), Instant::now());
        std::thread::sleep(Duration::from_secs(30));
        let (n1, t1) = (records_in(), Instant::now());
        let throughput = (n1 - n0) / (t1 - t0).as_secs_f64();
        assert!(throughput > 0.0, "no records at parallelism {parallelism}");
        measured.push((parallelism, throughput, took));
    }
    // USL: x(n) = l n / (1 + s (n - 1) + k n (n - 1)), with l = x(1):
    // n l / x(n) - 1 = s (n - 1) + k n (n - 1), two linear equations.
    let l = measured[0].1;
    let lhs = |i: usize| measured[i].0 as f64 * l / measured[i].1 - 1.0;
    let (a1, b1, c1) = (1.0, 2.0, lhs(1));
    let (a2, b2, c2) = (3.0, 12.0, lhs(2));
    let det = a1 * b2 - a2 * b1;
    let sigma = (c1 * b2 - c2 * b1) / det;
    let kappa = (a1 * c2 - a2 * c1) / det;
    let usl = |n: f64, s: f64, k: f64| l * n / (1.0 + s * (n - 1.0) + k * n * (n - 1.0));
    let model = flinkscale::sim::scenario::AppParams {
        records_per_subtask_per_sec: l,
        ..Default::default()
    };
    println!("model vs reality: fitted sigma {sigma:.3}, kappa {kappa:.3}");
    println!(
        "| parallelism | measured records/s | per subtask | USL fit | simulator's model | Flink's rescale |"
    );
    println!("|---|---|---|---|---|---|");
    for (n, x, took) in &measured {
        println!(
            "| {n} | {x:.1} | {:.1} | {:.1} | {:.1} | {:.1} s |",
            x / *n as f64,
            usl(*n as f64, sigma, kappa),
            model.capacity(u32::try_from(*n).unwrap_or(u32::MAX)),
            took.as_secs_f64()
        );
    }
}
