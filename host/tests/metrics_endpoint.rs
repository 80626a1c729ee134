//! `[agent] listen`: `flinkscale run` against `flinkscale emulate` serves
//! `GET /livez`, `GET /readyz`, `GET /healthz` and `GET /metrics`
//! (Prometheus text format) on the configured address; an AWS outage fails
//! readiness, never liveness; slow or stuck clients neither lock the
//! scraper out nor keep SIGTERM from stopping the agent; and the
//! configuration refuses addresses nobody could scrape.
//!
//! Needs the plugins built (`cargo plugins`); fails, not skips, without
//! them. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Emulator, Running, http, plugin_dir, scenario, start_agent, wait_until};
use flinkscale::telemetry::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_DRAIN};
use serde_json::json;

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`.
const APP: &str = "e2e-app";

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}

/// The agent's configuration: the `hold` policy on CPU, evaluated every
/// 2 s, serving on `listen`.
fn config(dir: &Path, listen: SocketAddr) -> PathBuf {
    let plugins = toml_edit::Value::from(plugin_dir().to_string_lossy().as_ref()).to_string();
    let text = format!(
        r#"[agent]
plugin_dir = {plugins}
state_dir = "state"
listen = "{listen}"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 7
evaluation_interval_secs = 2

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "{APP}" }}
statistic = "Average"
period_secs = 10

[application.policy]
plugin = "hold"
"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// One sample line of the text format: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the samples of a text-format exposition, checking that each
/// family's `# TYPE` comes before its samples; panics on a malformed line.
fn parse(text: &str) -> Vec<Sample> {
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
        assert!(
            typed.iter().any(|t| t == name),
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
fn parse_labels(body: &str) -> BTreeMap<String, String> {
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
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

fn get(addr: SocketAddr, path: &str) -> Option<common::Response> {
    http(addr, "GET", path, &[], b"").ok()
}

#[test]
fn run_serves_health_and_prometheus_metrics() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir.path());
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let agent: Running = start_agent(&emulator, &config(dir.path(), listen), &[], dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));

    // Two evaluations at a 2 s interval, after the plugin compiles.
    let mut samples = Vec::new();
    wait_until(
        Duration::from_secs(90),
        "flinkscale_evaluations_total >= 2 on /metrics",
        || {
            agent.assert_running(diagnose);
            let Some(response) = get(listen, "/metrics") else {
                return false;
            };
            assert_eq!(
                response.status, 200,
                "/metrics answered {}",
                response.status
            );
            samples = parse(&String::from_utf8_lossy(&response.body));
            value(
                &samples,
                "flinkscale_evaluations_total",
                &[("application", APP)],
            )
            .is_some_and(|n| n >= 2.0)
        },
        diagnose,
    );

    let metrics = get(listen, "/metrics").expect("/metrics answers");
    let content_type = metrics
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let samples = parse(&text);
    let app = [("application", APP)];
    let holds = value(
        &samples,
        "flinkscale_decisions_total",
        &[("application", APP), ("action", "hold")],
    )
    .unwrap_or_else(|| panic!("no hold decisions counted:\n{text}"));
    let evaluations = value(&samples, "flinkscale_evaluations_total", &app)
        .unwrap_or_else(|| panic!("no evaluations counted:\n{text}"));
    assert!(evaluations >= 2.0, "{text}");
    // The hold policy never scales: every evaluation is a hold.
    assert!(holds >= 2.0, "{text}");
    assert_eq!(
        value(
            &samples,
            "flinkscale_decisions_total",
            &[("application", APP), ("action", "scale")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "flinkscale_rescales_total", &app),
        Some(0.0),
        "{text}"
    );
    // The scenario starts the application at 2 KPU.
    assert_eq!(value(&samples, "flinkscale_kpu", &app), Some(2.0), "{text}");
    assert_eq!(
        value(&samples, "flinkscale_plugin_quarantined", &app),
        Some(0.0),
        "{text}"
    );
    let last = value(
        &samples,
        "flinkscale_last_evaluation_timestamp_seconds",
        &app,
    )
    .unwrap_or_else(|| panic!("no last evaluation time:\n{text}"));
    let now_secs = common::now_ms() as f64 / 1000.0;
    assert!(
        last <= now_secs && last > now_secs - 60.0,
        "last evaluation at {last}, now {now_secs}"
    );
    for family in [
        "flinkscale_evaluations_total",
        "flinkscale_decisions_total",
        "flinkscale_rescales_total",
        "flinkscale_failures_total",
        "flinkscale_kpu",
        "flinkscale_last_evaluation_timestamp_seconds",
        "flinkscale_plugin_quarantined",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{text}");
    }

    for probe in ["/healthz", "/livez", "/readyz"] {
        let answer = get(listen, probe).unwrap_or_else(|| panic!("{probe} did not answer"));
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, 200, "{probe}: {body}");
        assert_eq!(body.trim(), "ok", "{probe}");
    }

    let other = get(listen, "/").expect("/ answers");
    assert_eq!(other.status, 404);

    // A graceful stop closes the port.
    assert!(
        agent.terminate(Duration::from_secs(15)).is_some(),
        "the agent did not stop on SIGTERM\n{}",
        agent.log_tail(40)
    );
    assert!(
        get(listen, "/healthz").is_none(),
        "still serving after exit"
    );
}

#[test]
fn listen_must_be_a_scrapable_address() {
    let base = "[[application]]\nname = \"a\"\n[application.policy]\nplugin = \"hold\"\n";
    let origin = Path::new("config/x.toml");
    let load = |listen: &str| {
        flinkscale::config::load_str(&format!("[agent]\nlisten = {listen}\n{base}"), origin)
    };
    let loaded = load("\"127.0.0.1:9464\"").expect("a valid address is accepted");
    assert_eq!(
        loaded.config.agent.listen,
        Some("127.0.0.1:9464".parse().expect("an address"))
    );
    let no_listen = flinkscale::config::load_str(base, origin).expect("listen is optional");
    assert_eq!(no_listen.config.agent.listen, None);

    for (bad, expected) in [
        ("\"localhost\"", "listen"),
        ("\"127.0.0.1\"", "listen"),
        ("9464", "listen"),
        ("\"127.0.0.1:0\"", "port 0"),
    ] {
        let errors = load(bad)
            .err()
            .unwrap_or_else(|| panic!("listen = {bad} was accepted"))
            .to_string();
        assert!(
            errors.contains("config/x.toml:2:") && errors.contains(expected),
            "listen = {bad}: {errors}"
        );
    }
}

/// The emulator and an agent serving on a free port, once the agent has
/// evaluated at least once (its plugin compiled, its server up).
fn serving(dir: &Path) -> (Emulator, Running, SocketAddr) {
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let agent = start_agent(&emulator, &config(dir, listen), &[], dir);
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));
    wait_until(
        Duration::from_secs(90),
        "a first evaluation on /metrics",
        || {
            agent.assert_running(diagnose);
            get(listen, "/metrics").is_some_and(|r| {
                value(
                    &parse(&String::from_utf8_lossy(&r.body)),
                    "flinkscale_evaluations_total",
                    &[("application", APP)],
                )
                .is_some_and(|n| n >= 1.0)
            })
        },
        diagnose,
    );
    (emulator, agent, listen)
}

/// A connection that has sent half a request line and nothing more: a
/// slow or stuck client.
fn half_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .write_all(b"GET /metr")
        .expect("half a request line can be sent");
    stream
        .set_nonblocking(true)
        .expect("the stream can be made non-blocking");
    stream
}

/// Whether the server still holds `stream` open: nothing to read yet, no
/// end of stream, no reset. (An answer, e.g. a 408, also counts as ended.)
fn still_open(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// The soft limit on open files of this process, where the system says
/// (`/proc/self/limits`); `None` if unknown or unlimited.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn sigterm_stops_the_agent_despite_a_half_sent_request() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, agent, listen) = serving(dir.path());
    let _slow = half_request(listen);
    // Connections are accepted in order: once a later one is answered, the
    // slow one is held by the server.
    let metrics = get(listen, "/metrics").expect("/metrics answers");
    assert_eq!(metrics.status, 200);

    let asked = Instant::now();
    let status = agent.terminate(Duration::from_secs(30));
    let took = asked.elapsed();
    eprintln!("SIGTERM to exit with a half-sent request open: {took:?}");
    let status = status.unwrap_or_else(|| {
        panic!(
            "the agent did not stop within 30 s of SIGTERM with a half-sent request open\n{}\n{}",
            agent.log_tail(40),
            emulator.process.log_tail(10)
        )
    });
    assert!(status.success(), "the agent exited with {status}");
    // The server drains requests in flight for at most SHUTDOWN_DRAIN, and
    // a half-sent request is not one: it must not wait for it, nor for the
    // header timeout to end it.
    assert!(
        took < SHUTDOWN_DRAIN,
        "the agent took {took:?} to stop, more than the {SHUTDOWN_DRAIN:?} drain\n{}",
        agent.log_tail(40)
    );
}

#[test]
fn a_thousand_half_requests_neither_starve_metrics_nor_stay_open() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, agent, listen) = serving(dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));

    // Each slow connection is a descriptor here and one in the agent (which
    // inherits this limit); keep a margin for everything else.
    let wanted = 1_000;
    let slow_count = match open_file_limit() {
        Some(limit) if limit < wanted + 300 => {
            let n = usize::try_from(limit.saturating_sub(300)).unwrap_or(0);
            eprintln!(
                "the open-file limit is {limit}: opening {n} half-request connections, not {wanted}"
            );
            n
        }
        _ => usize::try_from(wanted).unwrap_or(usize::MAX),
    };
    assert!(
        slow_count > MAX_CONNECTIONS + 100,
        "the open-file limit leaves room for only {slow_count} connections, too few to pass the \
         cap of {MAX_CONNECTIONS}: raise it (ulimit -n 2048)"
    );

    let opened_at = Instant::now();
    let mut slow: Vec<TcpStream> = (0..slow_count).map(|_| half_request(listen)).collect();
    let opening = opened_at.elapsed();
    let asked = Instant::now();
    let metrics = get(listen, "/metrics").unwrap_or_else(|| {
        panic!(
            "/metrics did not answer beside the slow connections\n{}",
            diagnose()
        )
    });
    let answered_in = asked.elapsed();
    eprintln!(
        "{slow_count} half-request connections opened in {opening:?}; /metrics answered in {answered_in:?}"
    );
    assert_eq!(metrics.status, 200, "/metrics answered {}", metrics.status);
    // Not by waiting for the header timeout to free a place.
    assert!(
        opened_at.elapsed() < HEADER_READ_TIMEOUT,
        "/metrics answered only after {answered_in:?}\n{}",
        diagnose()
    );

    // The cap: the server holds at most MAX_CONNECTIONS, having closed the
    // ones that waited longest, long before any header timeout.
    let mut open = Vec::new();
    wait_until(
        Duration::from_secs(5),
        "the server to hold at most MAX_CONNECTIONS of the slow connections",
        || {
            open = slow.iter_mut().map(still_open).collect();
            open.iter().filter(|o| **o).count() <= MAX_CONNECTIONS
        },
        diagnose,
    );
    let held = open.iter().filter(|o| **o).count();
    eprintln!("the server holds {held} of {slow_count} slow connections");
    assert!(
        opened_at.elapsed() < HEADER_READ_TIMEOUT,
        "the slow connections were closed only by the header timeout: no cap"
    );
    assert!(
        held + 2 >= MAX_CONNECTIONS,
        "the server closed more than it needed to: {held} held, cap {MAX_CONNECTIONS}"
    );
    assert!(!open[0], "the oldest slow connection is still open");
    assert!(
        open[slow_count - 1],
        "the newest slow connection was closed, not the ones waiting longest"
    );

    // The header timeout ends the rest.
    wait_until(
        HEADER_READ_TIMEOUT + Duration::from_secs(10),
        "the header read timeout to close every slow connection",
        || slow.iter_mut().all(|s| !still_open(s)),
        diagnose,
    );
    let metrics = get(listen, "/metrics").expect("/metrics answers after the crowd");
    assert_eq!(metrics.status, 200);
}

#[test]
fn an_aws_outage_fails_readiness_never_liveness() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, agent, listen) = serving(dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));

    // CloudWatch answers 500 to every call from now on.
    emulator.add_fault(&json!({"operation": "GetMetricData", "error": "InternalFailure"}));
    // Evaluated every 2 s: not ready after 3 x 2 s + 60 s without an
    // evaluation. Alive all along.
    let mut ready = None;
    wait_until(
        Duration::from_secs(120),
        "/readyz to answer 503",
        || {
            agent.assert_running(diagnose);
            for probe in ["/livez", "/healthz"] {
                let answer = get(listen, probe).unwrap_or_else(|| panic!("{probe} did not answer"));
                assert_eq!(
                    answer.status,
                    200,
                    "{probe} failed during a CloudWatch outage: {}",
                    String::from_utf8_lossy(&answer.body)
                );
            }
            ready = get(listen, "/readyz");
            ready.as_ref().is_some_and(|r| r.status == 503)
        },
        diagnose,
    );
    let body = ready
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    assert!(
        body.starts_with(&format!("not ready: application \"{APP}\": "))
            && body.contains(" s since its last evaluation; last failure ")
            && body.contains(" ago: metrics: "),
        "{body}"
    );

    let text = String::from_utf8_lossy(&get(listen, "/metrics").expect("/metrics answers").body)
        .into_owned();
    let samples = parse(&text);
    let app = [("application", APP)];
    let class = |class| [("application", APP), ("class", class)];
    assert_eq!(
        value(&samples, "flinkscale_last_failure", &class("metrics")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "flinkscale_last_failure", &class("permission")),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(&samples, "flinkscale_failures_total", &class("metrics")).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "flinkscale_failures_total", &class("permission")),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(&samples, "flinkscale_staleness_seconds", &app).is_some_and(|s| s > 66.0),
        "{text}"
    );
    assert!(
        value(&samples, "flinkscale_last_failure_timestamp_seconds", &app).is_some_and(|t| t
            > value(
                &samples,
                "flinkscale_last_evaluation_timestamp_seconds",
                &app
            )
            .unwrap_or(f64::MAX)),
        "{text}"
    );
}
