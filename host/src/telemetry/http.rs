//! The agent's own HTTP endpoint (`[agent] listen`): `GET /metrics` for
//! Prometheus and `GET /healthz` for a liveness probe, served with hyper 1
//! over HTTP/1.1 like the emulator (and with its limits, [`crate::http`]).
//! Everything else is 404.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use super::prometheus::Registry;

pub use crate::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_DRAIN};

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

/// Answers `/metrics` and `/healthz` from `registry` until `shutdown` turns
/// true or its sender is dropped.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
) {
    let handler = move |request: Request<Incoming>| {
        let registry = registry.clone();
        async move { handle(&registry, &request, wall_ms()) }
    };
    crate::http::serve(listener, handler, shutdown, "metrics").await;
}

/// Wall-clock now in ms since the epoch: the controllers stamp their events
/// with the system clock, so staleness is measured against it.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The answer to `request` at `now_ms`.
fn handle<B>(registry: &Registry, request: &Request<B>, now_ms: i64) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(registry.render())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        return response;
    }
    let stale = registry.stale(now_ms);
    if stale.is_empty() {
        return text(StatusCode::OK, "ok\n");
    }
    let mut body = String::new();
    for s in &stale {
        let since = if s.ever_evaluated {
            "since its last evaluation"
        } else {
            "since the agent started, without an evaluation"
        };
        body.push_str(&format!(
            "stale: application {:?}: {} s {since}\n",
            s.application,
            s.silent_ms / 1000
        ));
    }
    text(StatusCode::SERVICE_UNAVAILABLE, &body)
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
    use http_body_util::BodyExt;

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

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn routes_metrics_health_and_nothing_else() {
        let registry = registry();
        let metrics = handle(&registry, &get("/metrics"), 0);
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
        let health = handle(&registry, &get("/healthz"), 1_000);
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(body(health).await, "ok\n");
        assert_eq!(
            handle(&registry, &get("/"), 0).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&registry, &get("/metrics/x"), 0).status(),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/metrics").body(()).expect("a request");
        assert_eq!(
            handle(&registry, &post, 0).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn health_names_the_stale_application() {
        let registry = registry();
        // 10 s interval: 3 x 10 s + 60 s without an evaluation.
        let health = handle(&registry, &get("/healthz"), 91_000);
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(health).await;
        assert!(text.contains("\"app\""), "{text}");
        assert!(text.contains("91 s"), "{text}");
    }
}
