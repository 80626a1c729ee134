//! The one HTTP/1.1 server loop (hyper 1) behind the emulator and the
//! agent's `/metrics` endpoint: accept connections, answer each request with
//! the caller's handler, and on shutdown let every open connection finish
//! the request in flight.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

/// Serves `listener` with `handler` until `shutdown` turns true or its
/// sender is dropped. `what` names the server in logs. A handler answers a
/// `Response`, or an `Option` of one where `None` closes the connection
/// without an answer (the emulator's `Drop` fault).
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: Into<Option<Response<Full<Bytes>>>>,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, handler.clone(), shutdown.clone(), what));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    warn!(message = "Accepting a connection failed.", server = what, %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// The handler chose to close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("the handler closed the connection without an answer")]
struct NoAnswer;

async fn serve_connection<H, F>(
    stream: TcpStream,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: Into<Option<Response<Full<Bytes>>>>,
{
    let service = service_fn(move |request| {
        let answer = handler(request);
        // hyper closes the connection, writing nothing, when the service
        // fails.
        async move { answer.await.into().ok_or(NoAnswer) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(message = "Connection ended with an error.", server = what, %error);
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
