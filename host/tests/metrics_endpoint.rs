//! `[agent] listen`: `flinkscale run` against `flinkscale emulate` serves
//! `GET /livez`, `GET /readyz`, `GET /healthz` and `GET /metrics`
//! (Prometheus text format) on the configured address; an AWS outage fails
//! readiness, never liveness; so does a state folder where the journal
//! cannot be saved (a blocked file, a real full disk), until it can; slow or stuck clients neither lock the
//! scraper out nor keep SIGTERM from stopping the agent; and the
//! configuration refuses addresses nobody could scrape.
//!
//! Needs the plugins built (`cargo plugins`); fails, not skips, without
//! them. Every wait is bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Emulator, Running, calls_of, http, metric_samples, metric_value, parse_metrics, plugin_dir,
    scenario, start_agent, wait_until,
};
use flinkscale::telemetry::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_DRAIN};
use serde_json::json;

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`.
const APP: &str = "e2e-app";

/// The agent's configuration: the `hold` policy on CPU, evaluated every
/// 2 s, serving on `listen`.
fn config(dir: &Path, listen: SocketAddr) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let cpu = common::config::cpu_metric(APP);
    let text = format!(
        r#"{agent}listen = "{listen}"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 7
evaluation_interval_secs = 2

[[application.metric]]
{cpu}
[application.policy]
plugin = "hold"
"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// The `e2e-scale.toml` emulator at 20x, a free loopback port for the
/// agent to serve on, and the agent's configuration ([`config`]) serving
/// there.
fn emulated(dir: &Path) -> (Emulator, SocketAddr, PathBuf) {
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let file = config(dir, listen);
    (emulator, listen, file)
}

fn get(addr: SocketAddr, path: &str) -> Option<common::Response> {
    http(addr, "GET", path, &[], b"").ok()
}

#[test]
fn run_serves_health_and_prometheus_metrics() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir.path());
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
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
            samples = parse_metrics(&String::from_utf8_lossy(&response.body));
            metric_value(
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
    let samples = parse_metrics(&text);
    let app = [("application", APP)];
    let holds = metric_value(
        &samples,
        "flinkscale_decisions_total",
        &[("application", APP), ("action", "hold")],
    )
    .unwrap_or_else(|| panic!("no hold decisions counted:\n{text}"));
    let evaluations = metric_value(&samples, "flinkscale_evaluations_total", &app)
        .unwrap_or_else(|| panic!("no evaluations counted:\n{text}"));
    assert!(evaluations >= 2.0, "{text}");
    // The hold policy never scales: every evaluation is a hold.
    assert!(holds >= 2.0, "{text}");
    assert_eq!(
        metric_value(
            &samples,
            "flinkscale_decisions_total",
            &[("application", APP), ("action", "scale")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "flinkscale_rescales_total", &app),
        Some(0.0),
        "{text}"
    );
    // The scenario starts the application at 2 KPU.
    assert_eq!(
        metric_value(&samples, "flinkscale_kpu", &app),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "flinkscale_plugin_quarantined", &app),
        Some(0.0),
        "{text}"
    );
    let last = metric_value(
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

/// A quarantined policy replaced by a reload (SIGHUP, new params) ends
/// its quarantine with the new instance's first answer: the gauge the
/// README's alert watches goes back to 0 and `/status` no longer shows it
/// (it stayed 1, alerting on a healthy application, until this was fixed).
#[test]
fn a_reload_that_replaces_a_quarantined_policy_ends_the_quarantine() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, listen, file) = emulated(dir.path());
    let text = std::fs::read_to_string(&file).expect("the configuration");
    let failing = text.replace(
        "plugin = \"hold\"",
        "plugin = \"misbehave\"\nparams = { mode = \"error\" }",
    );
    std::fs::write(&file, &failing).expect("written");
    let agent: Running = start_agent(&emulator, &file, &[], dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));
    let quarantined = |want: f64| {
        get(listen, "/metrics").is_some_and(|response| {
            let samples = parse_metrics(&String::from_utf8_lossy(&response.body));
            metric_value(
                &samples,
                "flinkscale_plugin_quarantined",
                &[("application", APP)],
            ) == Some(want)
        })
    };
    wait_until(
        Duration::from_secs(90),
        "the failing policy quarantined",
        || {
            agent.assert_running(diagnose);
            quarantined(1.0)
        },
        diagnose,
    );
    // The same plugin, other params: it answers now.
    std::fs::write(&file, failing.replace("mode = \"error\"", "mode = \"ok\"")).expect("written");
    common::hangup(&agent);
    wait_until(
        Duration::from_secs(60),
        "the quarantine ended after the reload",
        || {
            agent.assert_running(diagnose);
            quarantined(0.0)
        },
        diagnose,
    );
    assert!(
        agent.log_tail(200).contains("Plugin recovered."),
        "{}",
        diagnose()
    );
    let status = get(listen, "/status").expect("/status answers");
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    let text = status.to_string();
    assert!(text.contains("\"quarantine\":[]"), "{text}");
    assert!(agent.terminate(Duration::from_secs(15)).is_some());
}

/// A reload whose settings cannot be put in force for an application
/// (the policy refuses its new params) says so: the gauge is 1 for it, a
/// changed application keeps running (ready) with its previous settings,
/// reported in its previous mode, and an added one runs nowhere, which
/// `/readyz` names with the error. A later reload that applies clears
/// both. (The reload counted as accepted, the new mode reported, and the
/// added application said only "never evaluated" once stale.)
#[test]
fn a_reload_whose_settings_do_not_load_says_so_until_one_does() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, listen, file) = emulated(dir.path());
    let good = std::fs::read_to_string(&file).expect("the configuration");
    let agent: Running = start_agent(&emulator, &file, &[], dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));
    let ready = || get(listen, "/readyz").is_some_and(|r| r.status == 200);
    wait_until(Duration::from_secs(90), "/readyz ready", ready, diagnose);

    let refused = "plugin = \"rate\"\nparams = { target_utilisation = 5.0 }";
    let bad = good.replace("plugin = \"hold\"", refused).replace(
        &format!("name = \"{APP}\"\n"),
        &format!("name = \"{APP}\"\nmode = \"dry-run\"\n"),
    ) + &format!(
        "\n[[application]]\nname = \"added\"\n[[application.metric]]\n{}[application.policy]\n{refused}\n",
        common::config::cpu_metric("added")
    );
    common::replace(&file, bad.as_bytes());
    common::hangup(&agent);
    wait_until(
        Duration::from_secs(60),
        "the reload",
        || agent.log_tail(400).contains("Configuration reloaded."),
        diagnose,
    );
    // The summary names them as not in force, at WARN, and neither as
    // changed nor as added.
    let log = agent.log_tail(400);
    let summary: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "Configuration reloaded.")
        .expect("the summary");
    assert_eq!(summary["level"], "WARN", "{summary}");
    assert_eq!(summary["not_applied"], format!("added,{APP}"), "{summary}");
    assert_eq!(
        (&summary["changed"], &summary["added"]),
        (&"".into(), &"".into()),
        "{summary}"
    );
    let samples = parse_metrics(&String::from_utf8_lossy(
        &get(listen, "/metrics").expect("/metrics answers").body,
    ));
    for app in [APP, "added"] {
        assert_eq!(
            metric_value(
                &samples,
                "flinkscale_config_reload_not_applied",
                &[("application", app)]
            ),
            Some(1.0),
            "{app}\n{}",
            diagnose()
        );
    }
    assert_eq!(
        metric_value(
            &samples,
            "flinkscale_application_mode",
            &[("application", APP), ("mode", "active")]
        ),
        Some(1.0),
        "the previous settings run"
    );
    let readyz = get(listen, "/readyz").expect("/readyz answers");
    let body = String::from_utf8_lossy(&readyz.body).to_string();
    assert_eq!(readyz.status, 503, "{body}");
    assert!(
        body.contains("application \"added\": not running: the configuration reload")
            && body.contains("its plugins did not load")
            && body.contains("target_utilisation"),
        "{body}"
    );
    assert!(!body.contains(&format!("\"{APP}\"")), "{body}");

    common::replace(&file, good.as_bytes());
    common::hangup(&agent);
    wait_until(
        Duration::from_secs(60),
        "a reload that applies clears both",
        || {
            get(listen, "/metrics").is_some_and(|response| {
                let samples = parse_metrics(&String::from_utf8_lossy(&response.body));
                metric_value(
                    &samples,
                    "flinkscale_config_reload_not_applied",
                    &[("application", APP)],
                ) == Some(0.0)
            }) && ready()
        },
        diagnose,
    );
    assert!(agent.terminate(Duration::from_secs(15)).is_some());
}

/// A paused application that a reload asks to run, with settings that do
/// not load, stays paused: `/readyz` no longer counts it as ready (it was
/// "paused, nothing expected" while the operator asked for scaling), and
/// says why.
#[test]
fn a_paused_application_a_reload_could_not_resume_is_not_ready() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, listen, file) = emulated(dir.path());
    let active = std::fs::read_to_string(&file).expect("the configuration");
    let named = format!("name = \"{APP}\"\n");
    let paused = active.replace(&named, &format!("{named}mode = \"paused\"\n"));
    common::replace(&file, paused.as_bytes());
    let agent: Running = start_agent(&emulator, &file, &[], dir.path());
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));
    let readyz = || get(listen, "/readyz");
    wait_until(
        Duration::from_secs(90),
        "/readyz ready, naming the paused application",
        || {
            readyz().is_some_and(|r| {
                r.status == 200 && String::from_utf8_lossy(&r.body).contains("paused: application")
            })
        },
        diagnose,
    );
    let bad = active.replace(
        "plugin = \"hold\"",
        "plugin = \"rate\"\nparams = { target_utilisation = 5.0 }",
    );
    common::replace(&file, bad.as_bytes());
    common::hangup(&agent);
    wait_until(
        Duration::from_secs(60),
        "/readyz not ready after the reload",
        || readyz().is_some_and(|r| r.status == 503),
        diagnose,
    );
    let body = String::from_utf8_lossy(&readyz().expect("/readyz answers").body).to_string();
    assert!(
        body.contains(&format!(
            "application \"{APP}\": still paused: the configuration reload"
        )) && body.contains("could not resume it: its plugins did not load")
            && body.contains("target_utilisation"),
        "{body}"
    );
    // Located in the file, as `validate` says it: the file, its line and
    // the field.
    let prefix = format!("{}:", file.display());
    let at = body
        .find(&prefix)
        .map(|i| &body[i + prefix.len()..])
        .unwrap_or_else(|| panic!("the file is named: {body}"));
    let mut parts = at.splitn(3, ':');
    let line = parts.next().and_then(|l| l.parse::<u32>().ok());
    let column = parts.next().and_then(|c| c.parse::<u32>().ok());
    assert!(line.is_some() && column.is_some(), "{body}");
    assert!(
        parts.next().is_some_and(
            |rest| rest.starts_with(&format!(" application \"{APP}\".policy.params: "))
        ),
        "{body}"
    );
    assert!(!body.contains("paused: application"), "{body}");
    assert!(agent.terminate(Duration::from_secs(15)).is_some());
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
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
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
                metric_value(
                    &parse_metrics(&String::from_utf8_lossy(&r.body)),
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
    let samples = parse_metrics(&text);
    let app = [("application", APP)];
    let class = |class| [("application", APP), ("class", class)];
    assert_eq!(
        metric_value(&samples, "flinkscale_last_failure", &class("metrics")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "flinkscale_last_failure", &class("permission")),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric_value(&samples, "flinkscale_failures_total", &class("metrics"))
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&samples, "flinkscale_failures_total", &class("permission")),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric_value(&samples, "flinkscale_staleness_seconds", &app).is_some_and(|s| s > 66.0),
        "{text}"
    );
    assert!(
        metric_value(&samples, "flinkscale_last_failure_timestamp_seconds", &app).is_some_and(
            |t| t > metric_value(
                &samples,
                "flinkscale_last_evaluation_timestamp_seconds",
                &app
            )
            .unwrap_or(f64::MAX)
        ),
        "{text}"
    );
}

/// The step policy with a scale-out alarm above 75 % CPU and a scale-in
/// alarm at or below 35 %, evaluated every 2 s, serving on `listen`.
fn scaling_config(dir: &Path, listen: SocketAddr) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let rules = common::cpu_step_rules(APP);
    let text = format!(
        r#"{agent}listen = "{listen}"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 7
evaluation_interval_secs = 2
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 2

{rules}"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// How many calls of `operation` the emulator logged.
fn emulated_calls(emulator: &Emulator, operation: &str) -> f64 {
    emulator
        .calls()
        .iter()
        .filter(|c| c["operation"] == operation)
        .count() as f64
}

/// After a rescale and a few evaluations, `/metrics` reports the build,
/// each alarm's state, the latest metric value, the target KPU, every AWS
/// call by operation and outcome with its duration histogram (matching the
/// emulator's own call log), and each plugin call's duration.
#[test]
fn metrics_report_build_alarms_target_aws_calls_and_plugin_calls() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir.path());
    // 1700 records/s: 2 KPU run above 75 %, the scale-out alarm fires.
    emulator.set_load(APP, 1.7);
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let agent = start_agent(
        &emulator,
        &scaling_config(dir.path(), listen),
        &[],
        dir.path(),
    );
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));
    let scrape = || {
        let response = get(listen, "/metrics")?;
        assert_eq!(
            response.status, 200,
            "/metrics answered {}",
            response.status
        );
        let text = String::from_utf8_lossy(&response.body).into_owned();
        Some((parse_metrics(&text), text))
    };
    let app = [("application", APP)];

    wait_until(
        Duration::from_secs(120),
        "one rescale on /metrics",
        || {
            agent.assert_running(diagnose);
            scrape().is_some_and(|(samples, _)| {
                metric_value(&samples, "flinkscale_rescales_total", &app).is_some_and(|n| n >= 1.0)
            })
        },
        diagnose,
    );
    let mut evaluations_at_rescale = 0.0;
    if let Some((samples, _)) = scrape() {
        evaluations_at_rescale =
            metric_value(&samples, "flinkscale_evaluations_total", &app).unwrap_or(0.0);
    }
    wait_until(
        Duration::from_secs(90),
        "three evaluations after the rescale",
        || {
            agent.assert_running(diagnose);
            scrape().is_some_and(|(samples, _)| {
                metric_value(&samples, "flinkscale_evaluations_total", &app)
                    .is_some_and(|n| n >= evaluations_at_rescale + 3.0)
            })
        },
        diagnose,
    );

    let updates_before = emulated_calls(&emulator, "UpdateApplication");
    let describes_before = emulated_calls(&emulator, "DescribeApplication");
    let fetches_before = emulated_calls(&emulator, "GetMetricData");
    let (samples, text) = scrape().expect("/metrics answers");
    let describes_after = emulated_calls(&emulator, "DescribeApplication");
    let updates_after = emulated_calls(&emulator, "UpdateApplication");
    let fetches_after = emulated_calls(&emulator, "GetMetricData");

    // The build.
    let build = metric_samples(&samples, "flinkscale_build_info", &[]);
    assert_eq!(build.len(), 1, "{text}");
    assert_eq!(build[0].value, 1.0);
    assert_eq!(build[0].labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        build[0].labels["contract_versions"]
            .split(',')
            .any(|v| v == "0.1.0"),
        "{text}"
    );

    // Exactly one state at 1 per configured alarm, and it is a known one.
    for alarm in ["scale-out", "scale-in"] {
        let states = metric_samples(
            &samples,
            "flinkscale_alarm_state",
            &[("application", APP), ("alarm", alarm)],
        );
        assert_eq!(states.len(), 3, "{alarm}:\n{text}");
        let current: Vec<&str> = states
            .iter()
            .filter(|s| s.value == 1.0)
            .map(|s| s.labels["state"].as_str())
            .collect();
        assert_eq!(current.len(), 1, "{alarm}: {current:?}\n{text}");
        assert!(
            ["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&current[0]),
            "{text}"
        );
        assert!(states.iter().all(|s| s.value == 0.0 || s.value == 1.0));
    }

    // The CPU metric's latest value is a percentage.
    let cpu = metric_value(
        &samples,
        "flinkscale_metric_value",
        &[("application", APP), ("metric", "cpu")],
    )
    .unwrap_or_else(|| panic!("no cpu value:\n{text}"));
    assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}\n{text}");

    // The last decision's target: the KPU on a hold, else the step
    // policy's x2 or /2 within 2..=7.
    let kpu = metric_value(&samples, "flinkscale_kpu", &app).expect("a KPU");
    let target = metric_value(&samples, "flinkscale_target_kpu", &app)
        .unwrap_or_else(|| panic!("no target KPU:\n{text}"));
    assert!(
        [kpu, (kpu * 2.0).min(7.0), (kpu / 2.0).ceil().max(2.0)].contains(&target),
        "target {target} at {kpu} KPU\n{text}"
    );

    // AWS calls: the one UpdateApplication, ok; the others as many as the
    // emulator saw (it logs a call as it answers, so between two reads of
    // its log).
    let calls = |operation: &str, outcome: &str| {
        metric_value(
            &samples,
            "flinkscale_aws_calls_total",
            &[("operation", operation), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    let updates = calls("UpdateApplication", "ok");
    assert!(updates >= 1.0, "{text}");
    assert_eq!(
        Some(updates),
        metric_value(&samples, "flinkscale_rescales_total", &app),
        "each accepted UpdateApplication is a rescale\n{text}"
    );
    assert!(
        updates_before <= updates && updates <= updates_after,
        "UpdateApplication: {updates} counted, {updates_before}..{updates_after} emulated\n{text}"
    );
    let describes = calls("DescribeApplication", "ok");
    assert!(
        describes_before <= describes && describes <= describes_after && describes >= 1.0,
        "DescribeApplication: {describes} counted, {describes_before}..{describes_after} emulated\n{text}"
    );
    let fetches = calls("GetMetricData", "ok");
    assert!(
        fetches_before <= fetches && fetches <= fetches_after && fetches >= 3.0,
        "GetMetricData: {fetches} counted, {fetches_before}..{fetches_after} emulated\n{text}"
    );
    // Each operation's histogram counts its calls, whatever their outcome,
    // and its +Inf bucket is its count.
    for operation in ["DescribeApplication", "UpdateApplication", "GetMetricData"] {
        let total: f64 = metric_samples(
            &samples,
            "flinkscale_aws_calls_total",
            &[("operation", operation)],
        )
        .iter()
        .map(|s| s.value)
        .sum();
        let labels = [("operation", operation)];
        let count = metric_value(
            &samples,
            "flinkscale_aws_call_duration_seconds_count",
            &labels,
        );
        assert_eq!(count, Some(total), "{operation}:\n{text}");
        let inf = metric_value(
            &samples,
            "flinkscale_aws_call_duration_seconds_bucket",
            &[("operation", operation), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(total), "{operation}:\n{text}");
        let sum = metric_value(
            &samples,
            "flinkscale_aws_call_duration_seconds_sum",
            &labels,
        )
        .unwrap_or_else(|| panic!("no sum for {operation}:\n{text}"));
        assert!(sum > 0.0 && sum < total * 30.0, "{operation} sum {sum}");
    }

    // The policy is asked once per evaluation (one more may be in flight).
    let decides = metric_samples(
        &samples,
        "flinkscale_plugin_call_duration_seconds_count",
        &[("application", APP), ("function", "decide")],
    );
    assert_eq!(decides.len(), 1, "{text}");
    assert!(decides[0].labels["plugin"].starts_with("step "), "{text}");
    let evaluations =
        metric_value(&samples, "flinkscale_evaluations_total", &app).expect("evaluations");
    assert!(
        decides[0].value == evaluations || decides[0].value == evaluations + 1.0,
        "{} decide calls, {evaluations} evaluations\n{text}",
        decides[0].value
    );

    // Every failure class exists, at 0 here.
    for class in flinkscale::controller::Failure::ALL {
        assert_eq!(
            metric_value(
                &samples,
                "flinkscale_failures_total",
                &[("application", APP), ("class", class.as_str())]
            ),
            Some(0.0),
            "{text}"
        );
    }
    agent.stop();
}

/// A journal that cannot be saved (a folder where its temporary file goes:
/// every save fails, even for root) holds every update back and fails
/// readiness, naming the file and the OS error; the agent evaluates all
/// along. Once the folder is fixed, the next evaluation decides again and
/// the update goes out once, and `/readyz` is ready again. The log says it
/// once when it starts and once when it ends, not at every evaluation.
#[test]
fn a_journal_that_cannot_be_saved_holds_updates_and_fails_readiness_until_it_can() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, config, listen) = scaling_out(dir.path());
    let blocker = dir.path().join("state").join(format!(".{APP}.json.tmp"));
    std::fs::create_dir_all(&blocker).expect("the blocker can be made");
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let body = held_until_saved(&emulator, &agent, listen, || {
        std::fs::remove_dir(&blocker).expect("the blocker can be removed");
    });
    assert!(body.contains(&format!(".{APP}.json.tmp")), "{body}");
}

/// The same on a real full disk: the state folder is a 1 MiB tmpfs, filled
/// to the last block before the agent starts, in the agent's own user and
/// mount namespaces (`unshare`: no privilege needed, nothing mounted
/// outside). Every save fails with ENOSPC where it really does, in the
/// middle of writing the temporary file. Once the filler is removed
/// (through `/proc/PID/root`, the agent's view of its mounts), the update
/// goes out once and the agent is ready again.
#[test]
fn a_full_disk_holds_updates_and_fails_readiness_until_space_is_freed() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (emulator, config, listen) = scaling_out(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("the state folder can be made");
    // The agent as start_agent runs it, exec'd by a shell that first
    // mounts and fills the state folder.
    let agent_run = common::agent_command(&config, dir.path());
    let mut command = Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "set -e; mount -t tmpfs -o size=1m tmpfs \"$1\"; \
             dd if=/dev/zero of=\"$1/filler\" bs=4096 2>/dev/null || true; \
             shift; exec \"$@\"",
        )
        .arg("sh")
        .arg(&state)
        .arg(agent_run.get_program())
        .args(agent_run.get_args())
        .current_dir(dir.path());
    for (key, value) in agent_run.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    common::aws_env(&mut command, &emulator.endpoint, dir.path());
    let agent = Running::spawn(
        "flinkscale run (full disk)",
        command,
        &dir.path().join("agent.log"),
    );
    // The agent is the process unshare and sh exec'd into.
    let filler = PathBuf::from(format!("/proc/{}/root", agent.pid()))
        .join(state.strip_prefix("/").expect("an absolute path"))
        .join("filler");
    let body = held_until_saved(&emulator, &agent, listen, || {
        std::fs::remove_file(&filler).expect("the filler can be removed");
    });
    assert!(body.contains("(os error 28)"), "ENOSPC: {body}");
    // The decision history, in the same folder, met the full disk too.
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("Cannot write the decision history.")
                && l.contains("No space left on device")),
        "{log}"
    );
}

/// The emulator with its application under a load the step policy scales
/// out of (3000 records/s: 2 KPU run above 75 % CPU), the agent's
/// configuration and its `listen` address; the journal goes to
/// `dir/state`.
fn scaling_out(dir: &Path) -> (Emulator, PathBuf, SocketAddr) {
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir);
    emulator.set_load(APP, 3.0);
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let agent = common::config::agent_table(&plugin_dir());
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "{agent}listen = \"{listen}\"\n\n\
             [[application]]\nname = \"{APP}\"\nmin_kpu = 2\nmax_kpu = 7\n\
             update_poll_secs = 1\ngrace_period_secs = 5\n\n{}",
            common::cpu_step_rules(APP)
        ),
    )
    .expect("the agent configuration can be written");
    (emulator, config, listen)
}

/// What both journal tests check of `agent`, whose journal cannot be
/// saved from the start: `/readyz` fails, saying that an update was held,
/// and nothing is sent; then `fix` makes saving possible, the held update
/// goes out and `/readyz` is ready again; the log says each once. Returns
/// the body `/readyz` failed with.
fn held_until_saved(
    emulator: &Emulator,
    agent: &Running,
    listen: SocketAddr,
    fix: impl FnOnce(),
) -> String {
    let diagnose = || format!("{}\n{}", agent.log_tail(60), emulator.process.log_tail(20));

    // Not ready from the first save, and once a scale-out was decided and
    // held, it says so.
    let mut body = String::new();
    wait_until(
        Duration::from_secs(120),
        "/readyz to say that an update was held",
        || {
            agent.assert_running(diagnose);
            let Some(ready) = get(listen, "/readyz") else {
                return false;
            };
            body = String::from_utf8_lossy(&ready.body).into_owned();
            // Past the start's own 503 (`starting: ...`): the journal's.
            ready.status == 503
                && body.contains("journal cannot be saved")
                && !body.contains("; 0 updates held")
        },
        diagnose,
    );
    assert!(
        body.starts_with(&format!(
            "not ready: application \"{APP}\": journal cannot be saved since "
        )) && body.contains("(os error")
            && body.contains("no update is sent"),
        "{body}"
    );
    assert!(
        calls_of(&emulator.calls(), "UpdateApplication", None).is_empty(),
        "an update went out that the journal could not record\n{}",
        diagnose()
    );
    let samples = parse_metrics(&String::from_utf8_lossy(
        &get(listen, "/metrics").expect("/metrics answers").body,
    ));
    let held = metric_value(
        &samples,
        "flinkscale_failures_total",
        &[("application", APP), ("class", "journal")],
    )
    .unwrap_or(0.0);
    assert!(held >= 1.0, "{held}");
    assert_eq!(
        metric_value(&samples, "flinkscale_ready", &[("application", APP)]),
        Some(0.0)
    );

    fix();
    wait_until(
        Duration::from_secs(60),
        "the held update to go out and /readyz to be ready",
        || {
            agent.assert_running(diagnose);
            !calls_of(&emulator.calls(), "UpdateApplication", None).is_empty()
                && get(listen, "/readyz").is_some_and(|r| r.status == 200)
        },
        diagnose,
    );
    let log = agent.log();
    let said = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(said("Cannot save the journal"), 1, "{}", diagnose());
    assert_eq!(said("still cannot be saved"), 0, "{}", diagnose());
    assert_eq!(said("Journal writable again after"), 1, "{}", diagnose());
    assert_eq!(said("\"class\":\"journal\""), 0, "{}", diagnose());
    body
}
