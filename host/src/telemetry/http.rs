//! The agent's own HTTP endpoint (`[agent] listen`), served with hyper 1
//! over HTTP/1.1 like the emulator (and with its limits, `crate::http`):
//! - `GET /metrics` for Prometheus;
//! - `GET /livez` for a liveness probe: the process runs its loops (its
//!   heartbeat is recent); `GET /healthz` is the same, for configurations
//!   written before `/livez`;
//! - `GET /readyz` for a readiness probe: every application evaluated
//!   recently and able to save its journal, or the ones that are not,
//!   named with why; a paused application (`mode = "paused"`) is ready,
//!   and named as paused;
//! - `GET /status` and `GET /explain?application=NAME&last=N`: the JSON of
//!   `flinkscale status --json` and `flinkscale explain --json`, read from
//!   `state_dir` ([`super::history`]) off the async runtime.
//!
//! Everything else is 404.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::prometheus::{HEARTBEAT_INTERVAL, JournalTrouble, NotReady, Registry};
use super::text::one_line;
use crate::target::Words;

pub use crate::http::{HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_DRAIN};

/// The content type of the Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections the kernel queues before the server accepts them. std's
/// 128 lets a burst of connections (a crowd at the connection cap) fill the
/// queue, after which a scraper's connection attempt is dropped and
/// retried only a second later.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` for [`serve`]; fails at start rather than later when the
/// port is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std does: a restarted agent rebinds at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Answers `/metrics`, `/livez`, `/healthz` and `/readyz` from `registry`,
/// and beats the heartbeat `/livez` judges, until `shutdown` turns true or
/// its sender is dropped.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_state(listener, registry, None, shutdown).await;
}

/// As [`serve`], and also `/status` and `/explain` from the files in
/// `state_dir`, for the applications `registry` reports, if given.
pub async fn serve_with_state(
    listener: TcpListener,
    registry: Arc<Registry>,
    state_dir: Option<PathBuf>,
    shutdown: watch::Receiver<bool>,
) {
    // A task of its own, so that it is scheduled like the controllers: when
    // it cannot run, neither can they.
    let heartbeat = tokio::spawn(heartbeat(registry.clone(), shutdown.clone()));
    let state_dir = state_dir.map(Arc::new);
    let handler = move |request: Request<Incoming>| {
        let registry = registry.clone();
        let state_dir = state_dir.clone();
        async move {
            match (&state_dir, request.uri().path()) {
                // HEAD as GET, as the other paths: hyper sends no body.
                (Some(dir), "/status" | "/explain")
                    if matches!(*request.method(), Method::GET | Method::HEAD) =>
                {
                    let dir = dir.clone();
                    let applications = registry.configured();
                    let journal = registry.journal_trouble();
                    let paused = registry.paused();
                    let uri = request.uri().clone();
                    // Reads files: off the async runtime.
                    tokio::task::spawn_blocking(move || {
                        records(&dir, applications, journal, &paused, &uri)
                    })
                    .await
                    .unwrap_or_else(|_| {
                        json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &serde_json::json!({"error": "reading the history failed"}),
                        )
                    })
                }
                _ => handle(&registry, &request, Now::system()),
            }
        }
    };
    crate::http::serve(listener, handler, shutdown, "metrics", true).await;
    let _ = heartbeat.await;
}

/// Beats every [`HEARTBEAT_INTERVAL`] until `shutdown`.
async fn heartbeat(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    // After a freeze, beat once and carry on; no burst of beats.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => registry.beat(Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}

/// The two clocks a request is judged by: the wall clock, as the
/// controllers stamp their events (staleness), and the monotonic clock of
/// the heartbeat (liveness), which a wall-clock step does not move.
#[derive(Debug, Clone, Copy)]
struct Now {
    /// ms since the epoch.
    wall_ms: i64,
    monotonic: Instant,
}

impl Now {
    fn system() -> Self {
        Self {
            wall_ms: crate::clock::system_ms(),
            monotonic: Instant::now(),
        }
    }
}

/// The answer to `request` at `now`.
fn handle<B>(registry: &Registry, request: &Request<B>, now: Now) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(
        path,
        "/metrics" | "/livez" | "/healthz" | "/readyz" | "/status" | "/explain"
    ) {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /livez, /readyz, /healthz, /status or /explain\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if matches!(path, "/status" | "/explain") {
        // Only [`serve_with_state`] answers these, before coming here.
        return text(
            StatusCode::NOT_FOUND,
            "not served: this listener keeps no state_dir\n",
        );
    }
    if path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(registry.render(now.wall_ms))));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        return response;
    }
    let mut body = String::new();
    if let Some(silent) = registry.frozen_for(now.monotonic) {
        body.push_str(&format!(
            "frozen: the agent's heartbeat has not run for {} s\n",
            silent.as_secs()
        ));
    }
    if path == "/readyz" {
        if registry.starting() {
            body.push_str(
                "starting: the agent is loading its plugins (a first compile can take a minute) and journals; no application runs yet\n",
            );
        }
        for app in registry.not_ready(now.wall_ms) {
            body.push_str(&not_ready_line(&app, now.wall_ms));
        }
    }
    if body.is_empty() {
        let mut ok = "ok\n".to_owned();
        if path == "/readyz" {
            // Paused is ready: nothing is expected of it, but the probe's
            // reader learns why it is not evaluated.
            for name in registry.paused() {
                ok.push_str(&format!(
                    "paused: application {name:?}: mode = \"paused\", not evaluated\n"
                ));
            }
        }
        text(StatusCode::OK, &ok)
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, &body)
    }
}

/// The answer to `GET /status` or `GET /explain?application=NAME&last=N`.
/// `/status` adds to what the files say each application whose journal
/// cannot be saved (`journal`, from the registry): the folder that would
/// hold its failure record is the one that cannot be written; and which
/// applications are paused (`paused`, from the registry).
fn records(
    state_dir: &Path,
    applications: Vec<(String, Words)>,
    journal: BTreeMap<String, JournalTrouble>,
    paused: &[String],
    uri: &Uri,
) -> Response<Full<Bytes>> {
    if uri.path() == "/status" {
        let mut status = super::history::status(state_dir, &applications, Now::system().wall_ms);
        super::history::mark_paused(&mut status, paused);
        for app in &mut status.applications {
            app.journal_failing = journal.get(&app.application).cloned();
        }
        let response = json(StatusCode::OK, &status);
        if hyper::body::Body::size_hint(response.body()).lower() <= MAX_STATUS_BYTES {
            return response;
        }
        // An answer waits in memory until the client reads it: past the
        // bound, the signals go (`/explain` has them, within its own).
        status.without_signals();
        return json(StatusCode::OK, &status);
    }
    let mut application = None;
    let mut last = DEFAULT_EXPLAIN_LAST;
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "application" => application = Some(value.into_owned()),
            // At least 1, as `explain --last` takes it; at most
            // MAX_EXPLAIN_LAST, so that what one request makes the agent
            // hold is bounded.
            "last" => match value.parse() {
                Ok(n) if n > MAX_EXPLAIN_LAST => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"error": format!(
                            "last={n} is more than {MAX_EXPLAIN_LAST}, the most one request answers; \
                             `flinkscale explain --last N` reads the whole history"
                        )}),
                    );
                }
                Ok(n) if n > 0 => last = n,
                _ => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"error": format!(
                            "last={value:?} is not a count: give a whole number of at least 1, e.g. last=10"
                        )}),
                    );
                }
            },
            _ => {}
        }
    }
    let Some(application) = application else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": format!(
                "name the application: /explain?application=NAME (configured: {})",
                applications
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )}),
        );
    };
    match super::history::explain(state_dir, &applications, &application, Some(last)) {
        Ok(explanation) => {
            let response = json(StatusCode::OK, &explanation);
            let bytes = hyper::body::Body::size_hint(response.body()).lower();
            if bytes <= MAX_EXPLAIN_BYTES {
                return response;
            }
            // Entries are about the same size: as many as fit.
            let entries = explanation.entries.len().max(1) as u64;
            let fit = (MAX_EXPLAIN_BYTES * entries / bytes).max(1);
            json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!(
                    "the last {entries} evaluations of {application:?} make {bytes} bytes, more \
                     than the {MAX_EXPLAIN_BYTES} one request answers: ask for fewer (last={fit}); \
                     `flinkscale explain` reads the whole history"
                )}),
            )
        }
        Err(error @ super::history::ReadError::UnknownApplication { .. }) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": error.to_string()}),
        ),
        Err(error) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({"error": error.to_string()}),
        ),
    }
}

/// Evaluations `GET /explain` returns without `last=`, as `explain` does.
pub const DEFAULT_EXPLAIN_LAST: usize = 10;

/// The most evaluations one `GET /explain` answers. Anyone who can reach
/// the listener may ask, and an answer waits in the agent's memory until
/// the client reads it: with no bound, 256 connections asking for the
/// whole history (1000 entries, up to 10 MB each with an interpreter's
/// 256 signals) and never reading held gigabytes.
pub const MAX_EXPLAIN_LAST: usize = 100;

/// The largest answer one `GET /explain` gives, in bytes (an entry with an
/// interpreter's 256 signals is some 37 KB: 100 of them would be 3.7 MB).
pub const MAX_EXPLAIN_BYTES: u64 = 512 * 1024;

/// The size past which a `GET /status` answer leaves out the signals of
/// each application's last evaluation (`signals_left_out` says how many):
/// with an interpreter's 256 signals, some 37 KB an application. What is
/// left is bounded by the configuration.
pub const MAX_STATUS_BYTES: u64 = 512 * 1024;

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One line of `/readyz`: the application, what is wrong, and the last
/// failure that explains it.
fn not_ready_line(app: &NotReady, now_ms: i64) -> String {
    let mut why = Vec::new();
    if let Some(message) = &app.panicked {
        why.push(format!("panicked: {}", one_line(message)));
    }
    if let Some((since_ms, updates)) = &app.stood_down {
        why.push(format!(
            "stood down {} s ago: another writer undid this agent's rescales ({}); no update is sent: stop the other writer, then resume it (`flinkscale reload --resume APPLICATION`)",
            now_ms.saturating_sub(*since_ms).max(0) / 1000,
            one_line(updates)
        ));
    }
    if let Some(not_started) = &app.not_started {
        let (state, what) = if app.still_paused {
            ("still paused", "resume it")
        } else {
            ("not running", "start it")
        };
        why.push(format!(
            "{state}: the configuration reload {} s ago could not {what}: {}; fix it and reload again",
            now_ms.saturating_sub(not_started.at_ms).max(0) / 1000,
            one_line(&not_started.reason)
        ));
    }
    if app.stale {
        let since = if app.since_reload {
            "since the reload that added or resumed it, without an evaluation"
        } else if app.ever_evaluated {
            "since its last evaluation"
        } else {
            "since the agent started, without an evaluation"
        };
        why.push(format!("{} s {since}", app.silent_ms / 1000));
    }
    if let Some(journal) = &app.journal {
        why.push(format!(
            "journal cannot be saved since {} ({}), no update is sent: {}; {}",
            super::text::iso(journal.since_ms),
            super::failing::duration_words(now_ms.saturating_sub(journal.since_ms)),
            one_line(&journal.cause),
            super::failing::held_words(journal.held)
        ));
    }
    match &app.failure {
        Some(failure) => why.push(format!(
            "last failure {} s ago: {}: {}",
            now_ms.saturating_sub(failure.at_ms).max(0) / 1000,
            one_line(&failure.class),
            one_line(&failure.message)
        )),
        None if app.stale && app.ever_evaluated => {
            why.push("no failure recorded since".to_owned());
        }
        None if app.stale => why.push("no failure recorded".to_owned()),
        None => {}
    }
    format!(
        "not ready: application {:?}: {}\n",
        app.application,
        why.join("; ")
    )
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;
    use http_body_util::BodyExt;
    use std::time::Duration;

    fn registry() -> Registry {
        let config: crate::config::Config = toml::from_str(
            "[[application]]\nname = \"app\"\nevaluation_interval_secs = 10\n\
             [application.policy]\nplugin = \"step\"\n",
        )
        .expect("a test configuration");
        Registry::for_config(&config, 0)
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("a request")
    }

    /// `wall_ms` on the wall clock, the heartbeat having beaten just now.
    fn at(registry: &Registry, wall_ms: i64) -> Now {
        let monotonic = Instant::now();
        registry.beat(monotonic);
        Now { wall_ms, monotonic }
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn evaluated(at_ms: i64) -> Event {
        Event::Evaluated {
            application: "app".to_owned(),
            at_ms,
            kpu: 2,
            latest: Vec::new(),
            alarms: Vec::new(),
            signals: Vec::new(),
            policy: "test 1.0.0".to_owned(),
            decision: Decision {
                action: crate::model::Action::Hold,
                reason: "test".to_owned(),
                next_evaluation_secs: None,
            },
            dry_run: false,
        }
    }

    fn failed(at_ms: i64, class: &str, message: &str) -> Event {
        Event::Failed {
            application: "app".to_owned(),
            at_ms,
            class: class.to_owned(),
            plugin_class: None,
            message: message.to_owned(),
        }
    }

    use super::super::Event;

    #[tokio::test]
    async fn routes_metrics_probes_and_nothing_else() {
        let registry = registry();
        let metrics = handle(&registry, &get("/metrics"), at(&registry, 0));
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(METRICS_CONTENT_TYPE)
        );
        assert!(
            body(metrics)
                .await
                .contains("flinkscale_evaluations_total{application=\"app\"} 0")
        );
        for probe in ["/livez", "/healthz", "/readyz"] {
            let answer = handle(&registry, &get(probe), at(&registry, 1_000));
            assert_eq!(answer.status(), StatusCode::OK, "{probe}");
            assert_eq!(body(answer).await, "ok\n", "{probe}");
        }
        let missing = handle(&registry, &get("/"), at(&registry, 0));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(body(missing).await.contains("/readyz"));
        assert_eq!(
            handle(&registry, &get("/metrics/x"), at(&registry, 0)).status(),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/readyz").body(()).expect("a request");
        assert_eq!(
            handle(&registry, &post, at(&registry, 0)).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn an_aws_outage_fails_readiness_never_liveness() {
        let registry = registry();
        registry.record(&evaluated(1_000));
        registry.record(&failed(
            5_000,
            "permission",
            "AccessDenied: not authorized to perform: cloudwatch:GetMetricData",
        ));
        registry.record(&failed(85_000, "metrics", "CloudWatch answered 503"));
        // 10 s interval: stale 3 x 10 s + 60 s after the evaluation at 1 s.
        let now = at(&registry, 96_000);
        for probe in ["/livez", "/healthz"] {
            let answer = handle(&registry, &get(probe), now);
            assert_eq!(answer.status(), StatusCode::OK, "{probe}");
            assert_eq!(body(answer).await, "ok\n", "{probe}");
        }
        let ready = handle(&registry, &get("/readyz"), now);
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": 95 s since its last evaluation; \
             last failure 11 s ago: metrics: CloudWatch answered 503\n"
        );
        // The next evaluation makes it ready again.
        registry.record(&evaluated(97_000));
        let ready = handle(&registry, &get("/readyz"), at(&registry, 98_000));
        assert_eq!(ready.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readiness_names_an_application_that_never_evaluated() {
        let registry = registry();
        registry.record(&failed(
            30_000,
            "permission",
            "AccessDenied: not authorized to perform: kinesisanalytics:DescribeApplication",
        ));
        let ready = handle(&registry, &get("/readyz"), at(&registry, 91_000));
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": 91 s since the agent started, without an \
             evaluation; last failure 61 s ago: permission: AccessDenied: not authorized to \
             perform: kinesisanalytics:DescribeApplication\n"
        );
        let fresh = registry_without_failures_ready_line(91_000).await;
        assert_eq!(
            fresh,
            "not ready: application \"app\": 91 s since the agent started, without an \
             evaluation; no failure recorded\n"
        );
    }

    #[tokio::test]
    async fn a_paused_application_is_ready_and_named_and_counts_from_its_resumption() {
        let with_mode = |mode: &str| -> crate::config::Config {
            toml::from_str(&format!(
                "[[application]]\nname = \"app\"\nevaluation_interval_secs = 10\n\
                 mode = \"{mode}\"\n[application.policy]\nplugin = \"step\"\n"
            ))
            .expect("a test configuration")
        };
        let registry = Registry::for_config(&with_mode("paused"), 0);
        // Long past the 90 s an active application would be allowed.
        let ready = handle(&registry, &get("/readyz"), at(&registry, 500_000));
        assert_eq!(ready.status(), StatusCode::OK);
        assert_eq!(
            body(ready).await,
            "ok\npaused: application \"app\": mode = \"paused\", not evaluated\n"
        );
        let metrics = registry.render(500_000);
        assert!(
            metrics.contains("flinkscale_application_mode{application=\"app\",mode=\"paused\"} 1")
                && metrics
                    .contains("flinkscale_application_mode{application=\"app\",mode=\"active\"} 0"),
            "{metrics}"
        );
        // Resumed at 500 s: its silence counts from then, not from 0.
        registry.set_applications(&with_mode("active"), 500_000);
        let ready = handle(&registry, &get("/readyz"), at(&registry, 590_000));
        assert_eq!(ready.status(), StatusCode::OK);
        assert_eq!(body(ready).await, "ok\n");
        let ready = handle(&registry, &get("/readyz"), at(&registry, 590_001));
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": 90 s since the reload that added or resumed it, \
             without an evaluation; no failure recorded\n"
        );
        assert!(
            registry
                .render(590_001)
                .contains("flinkscale_application_mode{application=\"app\",mode=\"active\"} 1")
        );
    }

    async fn registry_without_failures_ready_line(now_ms: i64) -> String {
        let registry = registry();
        body(handle(&registry, &get("/readyz"), at(&registry, now_ms))).await
    }

    #[tokio::test]
    async fn a_frozen_heartbeat_fails_liveness_and_readiness() {
        let registry = registry();
        let beat = Instant::now();
        registry.beat(beat);
        let alive = Now {
            wall_ms: 1_000,
            monotonic: beat + Duration::from_secs(10),
        };
        assert_eq!(
            handle(&registry, &get("/livez"), alive).status(),
            StatusCode::OK
        );
        let frozen = Now {
            wall_ms: 1_000,
            monotonic: beat + Duration::from_secs(12),
        };
        for probe in ["/livez", "/healthz", "/readyz"] {
            let answer = handle(&registry, &get(probe), frozen);
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{probe}");
            assert_eq!(
                body(answer).await,
                "frozen: the agent's heartbeat has not run for 12 s\n",
                "{probe}"
            );
        }
    }

    #[tokio::test]
    async fn a_panic_is_not_ready_until_the_next_evaluation() {
        let registry = registry();
        registry.record(&evaluated(1_000));
        registry.record(&Event::Panicked {
            application: "app".to_owned(),
            at_ms: 2_000,
            message: "index out of bounds\n\u{1b}[31mred".to_owned(),
        });
        // Well within the staleness limit: the panic alone makes it not ready.
        let ready = handle(&registry, &get("/readyz"), at(&registry, 3_000));
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": panicked: index out of bounds\\n\\u{1b}[31mred\n"
        );
        // A panic is not a reason to restart the process.
        assert_eq!(
            handle(&registry, &get("/livez"), at(&registry, 3_000)).status(),
            StatusCode::OK
        );
        registry.record(&evaluated(4_000));
        assert_eq!(
            handle(&registry, &get("/readyz"), at(&registry, 5_000)).status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_saved_is_not_ready_until_a_save_succeeds() {
        let registry = registry();
        registry.record(&evaluated(1_000));
        let failing = |at_ms, held| {
            Event::JournalFailing {
            application: "app".to_owned(),
            at_ms,
            since_ms: 2_000,
            cause: "cannot create /var/lib/flinkscale/.app.json.tmp: No space left on device (os error 28)".to_owned(),
            held,
            tell: crate::telemetry::failing::Tell::Quiet,
        }
        };
        registry.record(&failing(2_000, 0));
        registry.record(&evaluated(150_000));
        registry.record(&failing(150_000, 1));
        // Evaluating all along, so not stale: the journal alone makes it
        // not ready.
        let ready = handle(&registry, &get("/readyz"), at(&registry, 194_000));
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": journal cannot be saved since 1970-01-01T00:00:02Z (3 min 12 s), no update is sent: cannot create /var/lib/flinkscale/.app.json.tmp: No space left on device (os error 28); 1 update held\n"
        );
        registry.record(&Event::JournalRecovered {
            application: "app".to_owned(),
            at_ms: 195_000,
            since_ms: 2_000,
            held: 1,
        });
        assert_eq!(
            handle(&registry, &get("/readyz"), at(&registry, 196_000)).status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_stand_down_is_not_ready_naming_the_updates_and_how_to_resume() {
        let registry = registry();
        registry.record(&evaluated(1_000));
        registry.record(&Event::StoodDown {
            application: "app".to_owned(),
            at_ms: 2_000,
            since_ms: 2_000,
            overrides: Vec::new(),
            updates: "version 2 -> 3: 4 KPU -> 2 KPU".to_owned(),
            restarted: false,
        });
        registry.record(&evaluated(9_000));
        let ready = handle(&registry, &get("/readyz"), at(&registry, 12_000));
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(ready).await,
            "not ready: application \"app\": stood down 10 s ago: another writer undid this agent's rescales (version 2 -> 3: 4 KPU -> 2 KPU); no update is sent: stop the other writer, then resume it (`flinkscale reload --resume APPLICATION`)\n"
        );
        registry.record(&Event::StandDownLifted {
            application: "app".to_owned(),
            at_ms: 13_000,
            since_ms: 2_000,
            reason: "reload".to_owned(),
        });
        assert_eq!(
            handle(&registry, &get("/readyz"), at(&registry, 14_000)).status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn status_names_an_application_whose_journal_cannot_be_saved() {
        let dir = crate::scratch::scratch("http-status");
        let trouble = JournalTrouble {
            since_ms: 2_000,
            cause: "cannot create /s/.app.json.tmp: Read-only file system (os error 30)".to_owned(),
            held: 3,
        };
        let uri: Uri = "/status".parse().expect("a URI");
        let apps = vec![
            ("app".to_owned(), Words::Msf),
            ("other".to_owned(), Words::Msf),
        ];
        let journal = BTreeMap::from([("app".to_owned(), trouble.clone())]);
        let answer = records(&dir, apps, journal, &[], &uri);
        assert_eq!(answer.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body(answer).await).expect("JSON");
        assert_eq!(json["applications"][0]["application"], "app");
        assert_eq!(
            json["applications"][0]["journal_failing"],
            serde_json::json!({
                "since_ms": 2_000,
                "cause": trouble.cause,
                "held": 3,
            })
        );
        assert_eq!(json["applications"][1]["application"], "other");
        assert!(json["applications"][1].get("journal_failing").is_none());
    }

    #[tokio::test]
    async fn explain_names_what_is_wrong_with_its_query() {
        let dir = crate::scratch::scratch("http-explain");
        let (history, writer) =
            super::super::history::spawn(super::super::history::dir(&dir), 10).expect("a history");
        history.record(&evaluated(1_000));
        history.record(&evaluated(2_000));
        drop(history);
        writer.finish();
        let apps = || vec![("app".to_owned(), Words::Msf)];
        let answer = |query: &str| {
            let uri: Uri = query.parse().expect("a URI");
            records(&dir, apps(), BTreeMap::new(), &[], &uri)
        };
        let ok = answer("/explain?application=app&last=1");
        assert_eq!(ok.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body(ok).await).expect("JSON");
        assert_eq!(json["application"], "app");
        assert_eq!(json["entries"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["entries"][0]["at_ms"], 2_000);
        let missing = answer("/explain");
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert!(
            body(missing)
                .await
                .contains("/explain?application=NAME (configured: app)")
        );
        let bad = answer("/explain?application=app&last=many");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(body(bad).await.contains("last=\\\"many\\\" is not a count"));
        let none = answer("/explain?application=app&last=0");
        assert_eq!(none.status(), StatusCode::BAD_REQUEST);
        assert!(body(none).await.contains("last=\\\"0\\\" is not a count"));
        let most = answer("/explain?application=app&last=100");
        assert_eq!(most.status(), StatusCode::OK);
        let too_many = answer("/explain?application=app&last=101");
        assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
        assert!(
            body(too_many)
                .await
                .contains("last=101 is more than 100, the most one request answers")
        );
        let unknown = answer("/explain?application=..%2Fetc");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert!(
            body(unknown)
                .await
                .contains("no application \\\"../etc\\\"")
        );
        let status = answer("/status");
        assert_eq!(status.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body(status).await).expect("JSON");
        assert_eq!(json["applications"][0]["last"]["at_ms"], 2_000);
        // Without a state_dir, the routes are not served.
        let registry = registry();
        let plain = handle(&registry, &get("/status"), at(&registry, 0));
        assert_eq!(plain.status(), StatusCode::NOT_FOUND);
    }

    /// A status of many applications whose last evaluations have 256
    /// signals each passed any bound (`/explain` had one, `/status` none):
    /// past [`MAX_STATUS_BYTES`] the signals are left out, and counted in
    /// `signals_left_out`; a small status keeps them.
    #[tokio::test]
    async fn a_status_answer_past_its_byte_bound_leaves_the_signals_out() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (history, writer) =
            super::super::history::spawn(super::super::history::dir(dir.path()), 10)
                .expect("a history");
        let names: Vec<String> = (0..20).map(|n| format!("app{n:02}")).collect();
        for name in &names {
            let mut event = evaluated(1_000);
            if let Event::Evaluated {
                application,
                signals,
                ..
            } = &mut event
            {
                application.clone_from(name);
                *signals = interpreters_worth_of_signals();
            }
            history.record(&event);
        }
        drop(history);
        writer.finish();
        let uri: Uri = "/status".parse().expect("a URI");
        let apps = |names: &[String]| -> Vec<(String, Words)> {
            names.iter().map(|n| (n.clone(), Words::Msf)).collect()
        };
        let answer = records(dir.path(), apps(&names), BTreeMap::new(), &[], &uri);
        assert_eq!(answer.status(), StatusCode::OK);
        let text = body(answer).await;
        assert!(text.len() as u64 <= MAX_STATUS_BYTES, "{}", text.len());
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        for (i, app) in names.iter().enumerate() {
            let status = &json["applications"][i];
            assert_eq!(status["application"], app.as_str());
            assert_eq!(status["last"]["at_ms"], 1_000, "{status}");
            assert_eq!(status["last"]["signals"], serde_json::json!([]), "{status}");
            assert_eq!(status["signals_left_out"], 256, "{status}");
        }
        // One application's status is well within the bound: all of it.
        let answer = records(dir.path(), apps(&names[..1]), BTreeMap::new(), &[], &uri);
        let json: serde_json::Value = serde_json::from_str(&body(answer).await).expect("JSON");
        let status = &json["applications"][0];
        assert_eq!(
            status["last"]["signals"].as_array().map(Vec::len),
            Some(256)
        );
        assert!(status.get("signals_left_out").is_none(), "{status}");
    }

    /// 256 signals of 64-byte names: what an interpreter may give at most.
    fn interpreters_worth_of_signals() -> Vec<crate::model::Signal> {
        (0..256)
            .map(|n| crate::model::Signal {
                name: format!("signal_with_a_long_name_of_sixty_four_bytes_{n:020}"),
                value: f64::from(n),
            })
            .collect()
    }

    /// Entries an interpreter filled with 256 signals each: 100 of them
    /// would be megabytes held until the client reads them. The answer is
    /// refused with how many fit, and that many are answered.
    #[tokio::test]
    async fn an_explain_answer_past_its_byte_bound_says_how_many_fit() {
        let dir = crate::scratch::scratch("http-explain-big");
        let (history, writer) =
            super::super::history::spawn(super::super::history::dir(&dir), 100).expect("a history");
        for i in 0..40 {
            let mut event = evaluated(1_000 * (i + 1));
            if let Event::Evaluated { signals, .. } = &mut event {
                *signals = interpreters_worth_of_signals();
            }
            history.record(&event);
        }
        drop(history);
        writer.finish();
        let apps = || vec![("app".to_owned(), Words::Msf)];
        let answer = |query: &str| {
            let uri: Uri = query.parse().expect("a URI");
            records(&dir, apps(), BTreeMap::new(), &[], &uri)
        };
        let all = answer("/explain?application=app&last=40");
        assert_eq!(all.status(), StatusCode::BAD_REQUEST);
        let said = body(all).await;
        let fit: usize = said
            .split("ask for fewer (last=")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("says how many fit: {said}"));
        assert!((1..40).contains(&fit), "{said}");
        let fitting = answer(&format!("/explain?application=app&last={fit}"));
        assert_eq!(fitting.status(), StatusCode::OK);
        let text = body(fitting).await;
        assert!(text.len() as u64 <= MAX_EXPLAIN_BYTES, "{}", text.len());
    }
}
