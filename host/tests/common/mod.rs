//! The end-to-end harness: `flinkscale emulate` and the agent as separate
//! processes on loopback, a minimal HTTP/1.1 client for the emulator's
//! control API, and waits that fail with the call log printed.
//!
//! Every process is owned by a [`Running`] guard that stops it when dropped,
//! including while a failed assertion unwinds, so no test leaves an
//! emulator or an agent behind.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub mod config;
pub mod misbehave;

/// The `flinkscale` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_flinkscale");

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf()
}

/// The cargo target folder these tests were built in, honouring
/// `CARGO_TARGET_DIR` (relative to the workspace, as the build scripts
/// read it, or absolute).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// The compiled-component cache that the polyglot tests' plugin host and
/// the `simulate` processes they start (`--plugin-cache`) share, so that a
/// Python or JavaScript component is compiled once per test run, not once
/// per process: a debug build of the host takes 20-40 s for a Python one.
/// In the target folder, so that `cargo clean` empties it.
pub fn polyglot_plugin_cache() -> PathBuf {
    target_dir().join("tmp").join("polyglot-plugin-cache")
}

/// The compile deadline (`plugin_compile_timeout_secs`) of the polyglot
/// tests, in their host and their `simulate` runs: the default 60 s is met
/// by a debug build of the host compiling a Python component, but not
/// always on two cores busy with other tests. How long a compile takes is
/// not what these tests check.
pub const POLYGLOT_COMPILE_TIMEOUT_SECS: u64 = 600;

/// The plugin host of a polyglot test: default limits but
/// [`POLYGLOT_COMPILE_TIMEOUT_SECS`], and [`polyglot_plugin_cache`] as the
/// process's compiled-component cache (build it before any other host).
pub fn polyglot_host() -> flinkscale::plugin::PluginHost {
    assert!(
        flinkscale::plugin::share_cache_dir(polyglot_plugin_cache()),
        "a plugin host was built before the polyglot test's: it would not share the cache"
    );
    flinkscale::plugin::PluginHost::new(flinkscale::plugin::SandboxLimits {
        compile_timeout: Duration::from_secs(POLYGLOT_COMPILE_TIMEOUT_SECS),
        ..Default::default()
    })
    .expect("the engine starts")
}

/// Components built into the target folder by the Python and JavaScript
/// build scripts, as (label, component), from (label, file under the target
/// folder, the command that builds it); fails (never skips) when one is
/// missing, naming the command.
pub fn polyglot_components(
    components: [(&'static str, &str, &str); 2],
) -> Vec<(&'static str, PathBuf)> {
    components
        .into_iter()
        .map(|(label, file, build)| {
            let wasm = target_dir().join(file);
            assert!(
                wasm.is_file(),
                "{} is missing: run `{build}` from the workspace root before this test \
                 (scripts/test.sh does)",
                wasm.display()
            );
            (label, wasm)
        })
        .collect()
}

/// A scenario of `tests/fixtures/scenarios/`.
pub fn scenario(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/scenarios").join(name)
}

/// Where `cargo plugins` puts the test fixture plugins (`misbehave`): the
/// workspace's target directory (or `CARGO_TARGET_DIR`),
/// `wasm32-wasip2/release`. The shipped policies are built into the binary,
/// so `plugin = "step"` with this folder runs the built-in. Fails the test
/// when `misbehave.wasm` is not there: a test without its fixture proves
/// nothing, so it must not skip.
pub fn plugin_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    let dir = target.join("wasm32-wasip2/release");
    let fixture = dir.join("misbehave.wasm");
    assert!(
        fixture.is_file(),
        "{} is missing: run `cargo plugins` first (it builds the test fixture plugins to wasm32-wasip2)",
        fixture.display()
    );
    dir
}

/// Wall-clock now, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes, in `dir`, a one-day scenario that also publishes `days` days
/// before t = 0 (its trace, 1000 records/s at midnight, 3000 at noon,
/// repeated backwards daily) for one noise-free application `app`, and
/// returns the scenario file: the past that `history_days` reads.
pub fn history_scenario(dir: &Path, days: u32) -> PathBuf {
    std::fs::write(
        dir.join("load.csv"),
        "t_secs,records_per_sec\n0,1000\n43200,3000\n86400,1000\n",
    )
    .expect("trace");
    let file = dir.join("history.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"history\"\ntrace = \"load.csv\"\nduration_secs = 86400\nhistory_days = {days}\nhistory_period_secs = 86400\n\n[[application]]\nname = \"app\"\nnoise_percent = 0.0\n"
        ),
    )
    .expect("scenario");
    file
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a few
/// seconds) when the guard is dropped.
pub struct Running {
    name: String,
    // Behind a lock so that a wait's condition and its diagnostics can both
    // look at the process.
    child: Mutex<Child>,
    log: PathBuf,
}

impl Running {
    /// Spawns `command` with stdout and stderr written to `log`, which is
    /// created anew.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let out = File::create(log).expect("the log file can be created");
        let err = out.try_clone().expect("the log file handle can be cloned");
        command.stdout(out).stderr(err).stdin(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
        }
    }

    /// `None` while the process runs; its exit status once it has ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// Fails the test, with `diagnose()`, if the process has ended.
    pub fn assert_running(&self, diagnose: impl Fn() -> String) {
        if let Some(status) = self.exited() {
            panic!("{} exited early ({status})\n{}", self.name, diagnose());
        }
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ({}) ---\n{}",
            all.len() - from,
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }

    /// Its whole output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// `kill -9`: ends it at once, whatever it was doing, and reaps it.
    pub fn kill9(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // Child::kill is SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for it to end: its exit status,
    /// or `None` if it had to be killed (or had already ended before).
    pub fn terminate(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if self.exited().is_some() {
            return None;
        }
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Stops it: SIGTERM (a graceful shutdown), then SIGKILL.
    pub fn stop(&self) {
        if self.exited().is_some() {
            return;
        }
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // std has no SIGTERM; `kill` by this process's own pid is the
        // portable way without a libc dependency.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// One HTTP/1.1 request over a fresh loopback connection
/// (`Connection: close`, so the body ends where the stream does).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let eol = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text =
                std::str::from_utf8(&rest[at..at + eol]).map_err(|_| bad("bad chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            at += eol + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size).ok_or_else(|| bad("short chunk"))?);
            at += size + 2;
        }
        body
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len).ok_or_else(|| bad("short body"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A running `flinkscale emulate`.
pub struct Emulator {
    /// The process.
    pub process: Running,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// Wall-clock ms just before it was started (its model's t = 0 is this,
    /// rounded down to a second, or a little later).
    pub started_ms: i64,
    /// The model's speed.
    pub speed: f64,
}

impl Emulator {
    /// Starts `flinkscale emulate --scenario SCENARIO --speed SPEED` (plus
    /// `extra` arguments) and reads its endpoint from the line it prints.
    pub fn start(scenario: &Path, speed: f64, extra: &[&str], dir: &Path) -> Self {
        Self::start_bin(Path::new(BIN), scenario, speed, extra, dir)
    }

    /// [`Emulator::start`] with another `flinkscale` binary (an installed
    /// one).
    pub fn start_bin(bin: &Path, scenario: &Path, speed: f64, extra: &[&str], dir: &Path) -> Self {
        let log = dir.join("emulator.log");
        std::thread::sleep(until_start_phase());
        let started_ms = now_ms();
        let mut command = Command::new(bin);
        command
            .arg("emulate")
            .arg("--scenario")
            .arg(scenario)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--speed")
            .arg(speed.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("the log file can be created"))
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `flinkscale emulate`: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the first line for the endpoint, then keeps draining so the
        // emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let process = Running {
            name: "flinkscale emulate".to_owned(),
            child: Mutex::new(child),
            log,
        };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => panic!(
                "`flinkscale emulate` printed no endpoint within 30 s\n{}",
                process.log_tail(40)
            ),
        };
        let endpoint = line
            .strip_prefix("flinkscale emulator listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line from `flinkscale emulate`: {line:?}\n{}",
                    process.log_tail(40)
                )
            })
            .trim()
            .to_owned();
        let addr: SocketAddr = endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the endpoint {endpoint:?} is not http://IP:PORT"));
        let emulator = Self {
            process,
            addr,
            endpoint,
            started_ms,
            speed,
        };
        let health = emulator.get("/_emulator/health");
        assert_eq!(health["status"], "ok", "health: {health}");
        emulator
    }

    /// A control-API request; panics (with the emulator's log) on a
    /// transport error or a status other than 200.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let response = http(self.addr, method, path, headers, &bytes).unwrap_or_else(|e| {
            panic!("{method} {path} failed: {e}\n{}", self.process.log_tail(40))
        });
        let text = String::from_utf8_lossy(&response.body).into_owned();
        assert_eq!(
            response.status, 200,
            "{method} {path} answered {}: {text}",
            response.status
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} answered no JSON ({e}): {text}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Value {
        self.control("GET", path, None)
    }

    /// Every AWS call received so far.
    pub fn calls(&self) -> Vec<Value> {
        match self
            .get("/_emulator/calls")
            .get_mut("calls")
            .map(Value::take)
        {
            Some(Value::Array(calls)) => calls,
            other => panic!("GET /_emulator/calls has no calls array: {other:?}"),
        }
    }

    /// The AWS calls numbered above `seq`.
    pub fn calls_since(&self, seq: u64) -> Vec<Value> {
        match self
            .get(&format!("/_emulator/calls?since={seq}"))
            .get_mut("calls")
            .map(Value::take)
        {
            Some(Value::Array(calls)) => calls,
            other => panic!("GET /_emulator/calls?since={seq} has no calls array: {other:?}"),
        }
    }

    /// Injects a fault (`POST /_emulator/faults`; see the README for the
    /// fields).
    pub fn add_fault(&self, fault: &Value) {
        self.control("POST", "/_emulator/faults", Some(fault));
    }

    /// The model's state.
    pub fn state(&self) -> Value {
        self.get("/_emulator/state")
    }

    /// One application's entry of the state.
    pub fn app(&self, name: &str) -> Value {
        let state = self.state();
        state["applications"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no application {name:?} in the state: {state}"))
    }

    /// Multiplies an application's trace by `factor` from now on.
    pub fn set_load(&self, application: &str, factor: f64) {
        self.control(
            "POST",
            "/_emulator/load",
            Some(&json!({"application": application, "factor": factor})),
        );
    }

    /// The call log in one line per call, for failure messages.
    pub fn call_summary(&self) -> String {
        let calls = match http(self.addr, "GET", "/_emulator/calls", &[], b"") {
            Ok(r) => serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null)["calls"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            Err(e) => return format!("(the call log is unreadable: {e})"),
        };
        summarize(&calls, self.started_ms)
    }
}

/// One line per call: number, seconds since `origin_ms`, operation,
/// application, outcome, for UpdateApplication the version and target, and
/// whether a fault chose the answer, whether the call took effect, and
/// whether it ran after its client had hung up.
pub fn summarize(calls: &[Value], origin_ms: i64) -> String {
    let mut out = format!("--- call log ({} calls) ---\n", calls.len());
    let from = calls.len().saturating_sub(300);
    if from > 0 {
        out.push_str(&format!("({from} earlier calls left out)\n"));
    }
    for call in &calls[from..] {
        let t = (call["wall_ms"].as_i64().unwrap_or(0) - origin_ms) as f64 / 1000.0;
        let mut line = format!(
            "#{} +{t:.1}s model {}s {} {} {} -> {}",
            call["seq"],
            call["model_secs"],
            call["service"].as_str().unwrap_or("?"),
            call["operation"].as_str().unwrap_or("?"),
            call["application"].as_str().unwrap_or("-"),
            call["outcome"].as_str().unwrap_or("?"),
        );
        if call["operation"] == "UpdateApplication" {
            line.push_str(&format!(
                " (version {}, parallelism {})",
                call["params"]["CurrentApplicationVersionId"],
                parallelism_update(call).map_or("-".to_owned(), |p| p.to_string())
            ));
        }
        if call["injected"] == true {
            line.push_str(" [injected]");
        }
        if call["took_effect"] == true {
            line.push_str(" [took effect]");
        }
        if call["client_gone"] == true {
            line.push_str(" [landed after its client gave up]");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The `ParallelismUpdate` of an UpdateApplication call.
pub fn parallelism_update(call: &Value) -> Option<u64> {
    parallelism_config(call)?["ParallelismUpdate"].as_u64()
}

/// The `ParallelismConfigurationUpdate` of an UpdateApplication call.
pub fn parallelism_config(call: &Value) -> Option<&Value> {
    call["params"]
        .get("ApplicationConfigurationUpdate")?
        .get("FlinkApplicationConfigurationUpdate")?
        .get("ParallelismConfigurationUpdate")
}

/// The calls of one operation (and, if given, one application).
pub fn calls_of<'a>(
    calls: &'a [Value],
    operation: &str,
    application: Option<&str>,
) -> Vec<&'a Value> {
    calls
        .iter()
        .filter(|c| c["operation"] == operation)
        .filter(|c| application.is_none_or(|a| c["application"] == a))
        .collect()
}

/// Sets the AWS environment of a flinkscale process pointed at the
/// emulator: endpoint, region, static credentials, no profile, no
/// instance metadata, and no shared config files of this machine.
pub fn aws_env(command: &mut Command, endpoint: &str, dir: &Path) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEE2E")
        .env("AWS_SECRET_ACCESS_KEY", "e2e-secret-not-real")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
}

/// `flinkscale --log-format json run --config CONFIG` in `dir`, with
/// `RUST_LOG=info`; the rest of the environment is the test's, for the
/// caller to change.
pub fn agent_command(config: &Path, dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("RUST_LOG", "info");
    command
}

/// Starts `flinkscale --log-format json run --config CONFIG [args]`
/// against the emulator.
pub fn start_agent(emulator: &Emulator, config: &Path, args: &[&str], dir: &Path) -> Running {
    spawn_agent(&emulator.endpoint, config, args, dir, "agent.log", &[])
}

/// Starts `flinkscale --log-format json run --config CONFIG [args]` in
/// `dir` against `endpoint` (the emulator, or a [`TagProxy`] in front of
/// it), logging to `dir/log_name`, with `RUST_LOG=info` and the emulator's
/// AWS environment, then `env` on top (e.g. other credentials or
/// `RUST_LOG`).
pub fn spawn_agent(
    endpoint: &str,
    config: &Path,
    args: &[&str],
    dir: &Path,
    log_name: &str,
    env: &[(&str, &str)],
) -> Running {
    let mut command = agent_command(config, dir);
    command.args(args);
    aws_env(&mut command, endpoint, dir);
    for (key, value) in env {
        command.env(key, value);
    }
    Running::spawn("flinkscale run", command, &dir.join(log_name))
}

/// A loopback HTTP proxy in front of the emulator that writes
/// `"_agent": TAG` into the JSON body of every kinesisanalyticsv2 request
/// (AWS JSON 1.1) it forwards. The emulator ignores the unknown member but
/// keeps it in the call log's `params`, so two agents pointed at two
/// proxies can be told apart there. Other requests (CloudWatch's CBOR)
/// pass unchanged. One request per connection: the proxy answers with
/// `Connection: close`. It can also hold this agent's requests of one MSF
/// operation for a while before forwarding them ([`TagProxy::hold`]), as a
/// slow network path of one agent only.
pub struct TagProxy {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds to hold each request of an operation, by its name.
    holds: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

impl TagProxy {
    /// Starts a proxy to `upstream` that tags requests with `tag`.
    pub fn start(upstream: SocketAddr, tag: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the proxy can listen on loopback");
        let addr = listener.local_addr().expect("the proxy has an address");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let holds = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let holding = holds.clone();
        let tag = tag.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let tag = tag.clone();
                let holds = holding.lock().map(|h| h.clone()).unwrap_or_default();
                std::thread::spawn(move || {
                    let _ = proxy_one(stream, upstream, &tag, &holds);
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            addr,
            stop,
            holds,
        }
    }

    /// From now on, holds each request of the MSF `operation` (e.g.
    /// `"UpdateApplication"`) `ms` milliseconds before forwarding it (0:
    /// not at all).
    pub fn hold(&self, operation: &str, ms: u64) {
        if let Ok(mut holds) = self.holds.lock() {
            holds.insert(operation.to_owned(), ms);
        }
    }
}

impl Drop for TagProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Forwards one request from `client` to `upstream`, tagged (and, for an
/// operation `holds` names, after holding it that many milliseconds), and
/// its answer back.
fn proxy_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    tag: &str,
    holds: &BTreeMap<String, u64>,
) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Err(bad("the client closed before a whole request"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| bad("headers not UTF-8"))?
        .to_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Err(bad("the client closed mid-body"));
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    let json = header("content-type").is_some_and(|v| v.contains("amz-json"));
    if json && body.first() == Some(&b'{') {
        let member = format!("{}:{}", Value::from("_agent"), Value::from(tag));
        let rest = &body[1..];
        let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
        let mut tagged = format!("{{{member}").into_bytes();
        if !empty {
            tagged.push(b',');
        }
        tagged.extend_from_slice(rest);
        body = tagged;
    }
    let mut forward = format!("{request_line}\r\n");
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        forward.push_str(&format!("{name}: {value}\r\n"));
    }
    forward.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let operation = header("x-amz-target").and_then(|t| t.rsplit_once('.'));
    if let Some(ms) = operation.and_then(|(_, op)| holds.get(op)) {
        std::thread::sleep(Duration::from_millis(*ms));
    }
    let mut server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    server.write_all(forward.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    // The client must not reuse this connection: say so if the emulator
    // did not.
    if let Some(at) = answer.windows(2).position(|w| w == b"\r\n") {
        let head_len = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(answer.len());
        let says_close = String::from_utf8_lossy(&answer[..head_len])
            .to_ascii_lowercase()
            .contains("connection: close");
        if !says_close {
            answer.splice(at + 2..at + 2, b"connection: close\r\n".iter().copied());
        }
    }
    client.write_all(&answer)?;
    client.flush()?;
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Makes each test start its first emulator at a chosen phase of the
/// emulator's metric periods, which are aligned to the Unix epoch while
/// its model starts when it is launched: `AT_MS/PERIOD_MS`, e.g.
/// `100/10000` (0.1 s into a 10 s period) or `59900/60000` (0.1 s before
/// a minute ends). For audits of start-phase sensitivity, e.g.
/// `FLINKSCALE_TEST_START_PHASE=100/10000 cargo test -p flinkscale --test e2e`;
/// with it set, a test that picks its own phase (lazy_polling_emulator's
/// mid-period start) leaves the phase to it.
pub const START_PHASE_VAR: &str = "FLINKSCALE_TEST_START_PHASE";

thread_local! {
    /// Whether this test (libtest runs each on its own thread) has had its
    /// start phase.
    static PHASED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The phase [`START_PHASE_VAR`] asks for, as (at, period) in ms; panics
/// with the variable, its value and the valid form when it is malformed.
fn start_phase() -> Option<(i64, i64)> {
    let value = std::env::var(START_PHASE_VAR).ok()?;
    let parsed = value.split_once('/').and_then(|(at, period)| {
        let (at, period) = (
            at.trim().parse::<i64>().ok()?,
            period.trim().parse::<i64>().ok()?,
        );
        (period > 0 && (0..period).contains(&at)).then_some((at, period))
    });
    Some(parsed.unwrap_or_else(|| {
        panic!(
            "{START_PHASE_VAR}={value:?} is not AT_MS/PERIOD_MS with 0 <= AT_MS < PERIOD_MS (e.g. 100/10000)"
        )
    }))
}

/// How long to wait until the wall clock is `at_ms` into a period of
/// `period_ms` aligned to the Unix epoch, as the emulator's periods are.
pub fn until_phase(at_ms: i64, period_ms: i64) -> Duration {
    let wait = (at_ms - now_ms().rem_euclid(period_ms)).rem_euclid(period_ms);
    Duration::from_millis(wait as u64)
}

/// How long the current test must wait before it starts its first
/// emulator for the phase [`START_PHASE_VAR`] asks for: zero when it is
/// unset or this test already started one.
pub fn until_start_phase() -> Duration {
    match start_phase() {
        Some((at, period)) if !PHASED.with(|p| p.replace(true)) => {
            // Printed with a failing test's output: the phase it ran at.
            eprintln!("{START_PHASE_VAR}: starting {at} ms into a {period} ms period");
            until_phase(at, period)
        }
        _ => Duration::ZERO,
    }
}

/// Polls `condition` every 250 ms until it holds; after `timeout`, fails
/// with `what` and the diagnostics `diagnose` gives (the call log, the
/// state, the agent's log).
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
    diagnose: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {:.0} s waiting for {what}\n{}",
                timeout.as_secs_f64(),
                diagnose()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent's JSON log lines whose message is `message`: each an object
/// with the event's fields at the top level (`--log-format json` flattens
/// them beside `timestamp`, `level` and `target`).
pub fn log_events(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|event| event["message"] == message)
        .collect()
}

/// The state as text for failure messages, without failing again if the
/// emulator is gone.
pub fn state_text(emulator: &Emulator) -> String {
    match http(emulator.addr, "GET", "/_emulator/state", &[], b"") {
        Ok(r) => format!("--- state ---\n{}", String::from_utf8_lossy(&r.body)),
        Err(e) => format!("(the state is unreadable: {e})"),
    }
}

/// Writes a copy of the configuration `source` into `dir` with
/// `[agent] plugin_dir` set to the absolute plugin directory (a relative
/// `state_dir` then lands in `dir`), and returns its path.
pub fn config_copy(source: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", source.display()));
    let plugins = plugin_dir();
    doc["agent"]["plugin_dir"] = toml_edit::value(plugins.to_string_lossy().as_ref());
    let file = dir.join(source.file_name().expect("a file name"));
    std::fs::write(&file, doc.to_string()).expect("the config copy can be written");
    file
}

/// The end-to-end tests' rules for `application`, after its `[[application]]`
/// table: CPU (Average, 10 s periods), scale out above 75 % on one
/// datapoint, scale in at or below 35 % on two, and `step` doubling or
/// halving between them.
pub fn cpu_step_rules(application: &str) -> String {
    let cpu = config::cpu_metric(application);
    format!(
        r#"[[application.metric]]
{cpu}
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 75.0
evaluation_periods = 1
datapoints_to_alarm = 1

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanOrEqualToThreshold"
threshold = 35.0
evaluation_periods = 2
datapoints_to_alarm = 2

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2, scale_in_factor = 2 }}
"#
    )
}

/// A loopback port free at the time of asking (bound, then released), for
/// a listener a test gives the agent.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One MSF `[[application]]` of an emulator scenario, evaluated every
/// `evaluation_interval_secs` on its CPU from CloudWatch (Average, 10 s
/// periods), between 1 and 8 KPU, with `extra` lines in its table (e.g.
/// `mode = "paused"\n`) and `policy` as its `[application.policy]` body
/// (e.g. `plugin = "hold"\n`): [`config::Application::cpu`] as text.
pub fn cpu_application(
    name: &str,
    evaluation_interval_secs: u32,
    extra: &str,
    policy: &str,
) -> String {
    config::Application::cpu(name, evaluation_interval_secs)
        .lines(extra)
        .policy(policy)
        .text()
}

/// Sends SIGHUP to `agent` (a configuration reload).
pub fn hangup(agent: &Running) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(agent.pid().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -HUP failed");
}

/// Writes `bytes` to `path` the way an operator deploys a file: aside,
/// then renamed over the old one, so a reader never sees half of it.
pub fn replace(path: &Path, bytes: &[u8]) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, bytes).expect("the staged file can be written");
    std::fs::rename(&staged, path).expect("the staged file can be renamed");
}

/// One sample line of the Prometheus text format (the agent's `/metrics`):
/// `name{labels} value`.
#[derive(Debug)]
pub struct Sample {
    /// The metric name (a histogram's with its suffix).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses the samples of a text-format exposition, checking that each
/// family's `# TYPE` comes before its samples; panics on a malformed line.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut typed = Vec::<String>::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest
                .split_whitespace()
                .next()
                .expect("a TYPE names a metric");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(body))
            }
            None => (series, BTreeMap::new()),
        };
        // A histogram's samples are its name with a suffix.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| typed.iter().any(|t| t == base))
            })
            .unwrap_or(name);
        assert!(
            typed.iter().any(|t| t == family),
            "{name} has a sample before its # TYPE"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// `a="x",b="y\"z"` with the format's escapes undone.
pub fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "a label value is quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("a label value ends with a quote") {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("a dangling escape"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of `name` with exactly `labels`.
pub fn metric_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Every sample of `name` whose labels include `labels`.
pub fn metric_samples<'a>(
    samples: &'a [Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}
