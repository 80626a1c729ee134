//! The one HTTP/1.1 server loop (hyper 1) behind the emulator and the
//! agent's `/metrics` endpoint: accept connections, answer each request with
//! the caller's handler, and on shutdown let every request in flight finish.
//!
//! Neither server may be held hostage by its clients, so that a stuck or
//! hostile client can neither keep the agent from stopping nor lock the
//! scraper out:
//! - a new connection must send its first request head whole within
//!   [`HEADER_READ_TIMEOUT`], and a keep-alive connection is closed after
//!   [`IDLE_TIMEOUT`] without a whole request head;
//! - at most [`MAX_CONNECTIONS`] are served at once; at the cap, a new
//!   connection takes over the place of the one that has waited longest
//!   without a request in progress, at once (that one closes as soon as its
//!   task runs), so a crowd of slow clients neither delays a new one nor
//!   slows the accept loop;
//! - on shutdown, a connection that has not sent a whole request is closed
//!   at once (nothing was asked, nothing is lost), and a request in flight
//!   gets at most [`SHUTDOWN_DRAIN`] to be answered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

/// How long a new connection may take to send its first whole request head
/// (request line and headers) before it is closed. Every client of these
/// servers (an AWS SDK, a Prometheus scraper, a probe) sends its head in one
/// write right after connecting, so this only ever ends slow or stuck
/// clients.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive connection may wait for its next whole request
/// head (hyper's header-read timeout, whose clock also runs between
/// requests). Were it [`HEADER_READ_TIMEOUT`], a client asking every 10 s
/// would send each request just as the server closes the connection.
/// Longer than the AWS SDK's 90 s pool idle timeout, so that the emulator
/// never closes a connection the SDK may be reusing, and than the usual
/// scrape intervals, so that a scraper's connection lasts.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(100);

/// The most connections a server keeps open at once. A scraper, a probe
/// and an agent's SDK clients need a handful; the cap bounds the memory and
/// file descriptors a crowd of clients can take.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a shutdown waits for requests in flight before dropping their
/// connections: SIGTERM always completes within it.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// How often the accept loop, at the cap with every connection busy, looks
/// again for one it may close.
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// A connection accepted that has not yet sent a whole request head.
const FRESH: u8 = 0;
/// A connection whose request is being answered.
const BUSY: u8 = 1;
/// A keep-alive connection between requests.
const IDLE: u8 = 2;

/// One open connection, as the accept loop sees it when it must choose one
/// to close. Only the connection's own task changes `state` (the service is
/// called from inside that task's poll), so the task can trust what it
/// reads; the accept loop only reads it and asks.
#[derive(Debug)]
struct Slot {
    /// [`FRESH`], [`BUSY`] or [`IDLE`].
    state: AtomicU8,
    /// When it entered its state, in ms since the server started: the one
    /// that has waited longest is closed first.
    since_ms: AtomicU64,
    /// Set once the accept loop has asked it to close, so that it is not
    /// asked twice.
    closing: AtomicBool,
    /// Wakes the connection's task to close.
    close: Notify,
    /// Its place among the [`MAX_CONNECTIONS`]: released when the task ends,
    /// or handed to a new connection when this one is evicted.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

/// The open connections of one server.
#[derive(Debug)]
struct Connections {
    origin: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Connections {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection holding `permit`.
    fn add(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: AtomicU8::new(FRESH),
            since_ms: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            permit: Mutex::new(Some(permit)),
        });
        self.lock().insert(id, slot.clone());
        (id, slot)
    }

    fn enter(&self, slot: &Slot, state: u8) {
        slot.since_ms.store(self.now_ms(), Ordering::Relaxed);
        slot.state.store(state, Ordering::Release);
    }

    /// Asks the connection that has waited longest without a request in
    /// progress to close, and takes its place; `None` if every connection
    /// is busy or already closing.
    ///
    /// The place is handed over before the evicted connection's task has
    /// run, so for a moment a few more sockets than the cap may be open (one
    /// per eviction not yet carried out): the price of an accept loop that
    /// never waits on another task.
    fn evict_one(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.lock();
        // Times are in whole milliseconds: of those that entered their
        // state in the same one, the connection opened first goes (the
        // map's order would pick any).
        let (_, oldest) = slots
            .iter()
            .filter(|(_, s)| {
                s.state.load(Ordering::Acquire) != BUSY && !s.closing.load(Ordering::Relaxed)
            })
            .min_by_key(|(id, s)| (s.since_ms.load(Ordering::Relaxed), **id))?;
        oldest.closing.store(true, Ordering::Relaxed);
        // notify_one keeps the wake-up if the task is not waiting right now.
        oldest.close.notify_one();
        oldest
            .permit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Holds a connection's slot, and its permit unless it was handed over,
/// until its task ends or is aborted.
struct Place {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(slot) = self.connections.lock().remove(&self.id) {
            drop(slot.permit.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
    }
}

/// The handler chose to close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("the handler closed the connection without an answer")]
struct NoAnswer;

/// Serves `listener` with `handler` until `shutdown` turns true or its
/// sender is dropped, then drains (see the module's documentation). `what`
/// names the server in logs. A handler answers a `Response`, or an `Option`
/// of one where `None` closes the connection without an answer (the
/// emulator's `Drop` fault). With `half_close`, a client that shuts its
/// writing side after its request (`nc -N`) is still answered; without,
/// the connection ends at that EOF and the request in flight is dropped,
/// which the emulator keeps: a request of an agent killed mid-call then
/// takes effect only through an injected fault, as its tests expect.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    half_close: bool,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: Into<Option<Response<Full<Bytes>>>>,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = Arc::new(Connections::new());
    let mut tasks = tokio::task::JoinSet::new();
    'accept: loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    warn!(message = "Accepting a connection failed.", server = what, %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // At the cap, take the place of a connection without a request in
        // progress. If every one is busy, wait for one to end or become
        // idle (requests are answered in bounded time).
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match connections.evict_one() {
                Some(permit) => permit,
                None => {
                    debug!(
                        message = "Every connection is busy; a new one waits.",
                        server = what
                    );
                    loop {
                        tokio::select! {
                            permit = permits.clone().acquire_owned() => match permit {
                                Ok(permit) => break permit,
                                // The semaphore is never closed.
                                Err(_) => break 'accept,
                            },
                            _ = tokio::time::sleep(EVICT_RETRY) => {
                                if let Some(permit) = connections.evict_one() {
                                    break permit;
                                }
                            }
                            _ = shutdown.changed() => break 'accept,
                        }
                    }
                }
            },
        };
        let (id, slot) = connections.add(permit);
        let place = Place {
            connections: connections.clone(),
            id,
        };
        tasks.spawn(serve_connection(
            stream,
            handler.clone(),
            place,
            slot,
            shutdown.clone(),
            what,
            half_close,
        ));
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    // Refuse new connections from now on.
    drop(listener);
    // Every connection bounds its own drain; this only guards against a
    // task that does not (it is aborted with the set).
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_DRAIN + Duration::from_secs(1), all)
        .await
        .is_err()
    {
        warn!(
            message = "Connections still open after the shutdown drain; dropping them.",
            server = what,
            open = tasks.len(),
        );
        tasks.shutdown().await;
    }
}

async fn serve_connection<H, F>(
    stream: TcpStream,
    handler: H,
    place: Place,
    slot: Arc<Slot>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    half_close: bool,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future + Send + 'static,
    F::Output: Into<Option<Response<Full<Bytes>>>>,
{
    let service = {
        let connections = place.connections.clone();
        let slot = slot.clone();
        service_fn(move |request| {
            connections.enter(&slot, BUSY);
            let answer = handler(request);
            let connections = connections.clone();
            let slot = slot.clone();
            async move {
                let response = answer.await.into();
                connections.enter(&slot, IDLE);
                // hyper closes the connection, writing nothing, when the
                // service fails: how a handler answers nothing at all.
                response.ok_or(NoAnswer)
            }
        })
    };
    let mut builder = http1::Builder::new();
    // A client may shut its side after sending the request (`nc -N`, a
    // probe that says it has nothing more to send): it still waits for
    // the answer, which hyper would otherwise drop at the EOF.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .half_close(half_close);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let first_head = tokio::time::sleep(HEADER_READ_TIMEOUT);
    let mut first_head = std::pin::pin!(first_head);
    let mut awaiting_first_head = true;
    let stopping = loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(message = "Connection ended with an error.", server = what, %error);
                }
                return;
            }
            _ = first_head.as_mut(), if awaiting_first_head => {
                if slot.state.load(Ordering::Acquire) == FRESH {
                    debug!(message = "No request head within the header read timeout; closing.", server = what);
                    return;
                }
                awaiting_first_head = false;
            }
            _ = slot.close.notified() => break false,
            _ = shutdown.changed() => break true,
        }
    };
    // The service runs inside this task's polls of `connection`, so the
    // state read here is final until `connection` is polled again.
    if slot.state.load(Ordering::Acquire) == FRESH {
        // No whole request yet: nothing to answer. hyper's graceful
        // shutdown would wait for the first request, however long the
        // client takes.
        return;
    }
    // Between requests hyper closes at once; a request in flight is
    // answered first, within the drain.
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(SHUTDOWN_DRAIN, connection).await {
        Ok(Err(error)) => {
            debug!(message = "Connection ended with an error.", server = what, %error);
        }
        Ok(Ok(())) => {}
        Err(_) => warn!(
            message =
                "A request was still in flight at the end of the drain; its connection is dropped.",
            server = what,
            stopping,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server whose every answer takes `delay`, and its shutdown switch.
    async fn slow_server(
        delay: Duration,
    ) -> (
        std::net::SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = watch::channel(false);
        let handler = move |_request: Request<Incoming>| async move {
            tokio::time::sleep(delay).await;
            Response::new(Full::new(Bytes::from_static(b"done")))
        };
        let server = tokio::spawn(serve(listener, handler, stopped, "test", true));
        (addr, stop, server)
    }

    async fn send_request(addr: std::net::SocketAddr) -> TcpStream {
        let mut client = TcpStream::connect(addr).await.expect("a connection");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("a request");
        client
    }

    async fn read_all(client: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        // A reset after a drop counts as the end.
        let _ = client.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_keep_alive_connection_outlives_the_first_head_timeout() {
        let (addr, _stop, _server) = slow_server(Duration::ZERO).await;
        let mut client = send_request(addr).await;
        let mut first = vec![0u8; 1024];
        let n = client.read(&mut first).await.expect("an answer");
        assert!(
            String::from_utf8_lossy(&first[..n]).ends_with("done"),
            "{:?}",
            String::from_utf8_lossy(&first[..n])
        );
        // A client asking at the pace of the first-head timeout must find
        // its connection open.
        tokio::time::sleep(HEADER_READ_TIMEOUT + Duration::from_millis(500)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("the connection is still open for writing");
        let answer = read_all(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("done"),
            "the second request on the connection got {answer:?}"
        );
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_keep_alive_connection_makes_room() {
        let (addr, _stop, _server) = slow_server(Duration::ZERO).await;
        // Fill every place with a keep-alive connection that has been
        // answered once and now idles.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut client = send_request(addr).await;
            let mut answer = vec![0u8; 1024];
            let n = client.read(&mut answer).await.expect("an answer");
            assert!(String::from_utf8_lossy(&answer[..n]).ends_with("done"));
            idle.push(client);
        }
        let mut newcomer = TcpStream::connect(addr).await.expect("a connection");
        newcomer
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("a request");
        // Well under IDLE_TIMEOUT (100 s), which would also make room, and
        // wide enough for 256 connections on a loaded 2-core machine.
        let answer = tokio::time::timeout(Duration::from_secs(30), read_all(&mut newcomer))
            .await
            .expect("the newcomer is answered without waiting for a timeout");
        assert!(answer.ends_with("done"), "{answer:?}");
        // The one idle longest was closed, cleanly, to make room.
        let mut byte = [0u8; 1];
        let oldest = tokio::time::timeout(Duration::from_secs(30), idle[0].read(&mut byte))
            .await
            .expect("the oldest idle connection is closed");
        assert_eq!(
            oldest.ok(),
            Some(0),
            "the oldest idle connection ends cleanly"
        );
        let last = idle.last_mut().expect("idle connections");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), last.read(&mut byte))
                .await
                .is_err(),
            "the most recently used idle connection was closed"
        );
    }

    /// A client that shuts its writing side after its request (as `nc -N`
    /// does) is answered, even when the answer takes a while.
    #[tokio::test]
    async fn a_client_that_half_closes_after_its_request_is_answered() {
        let (addr, _stop, _server) = slow_server(Duration::from_millis(200)).await;
        let mut client = send_request(addr).await;
        client.shutdown().await.expect("the writing side closes");
        let answer = tokio::time::timeout(Duration::from_secs(5), read_all(&mut client))
            .await
            .expect("an answer in time");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("done"),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_request_in_flight_is_answered_through_shutdown() {
        let (addr, stop, server) = slow_server(Duration::from_millis(500)).await;
        let mut client = send_request(addr).await;
        // The handler has the request by now; shut down under it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).expect("the server listens");
        let answer = read_all(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("done"),
            "{answer:?}"
        );
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops once the request is answered")
            .expect("the server task does not panic");
    }

    #[tokio::test]
    async fn a_request_longer_than_the_drain_is_dropped() {
        let (addr, stop, server) = slow_server(Duration::from_secs(3600)).await;
        let mut client = send_request(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = Instant::now();
        stop.send(true).expect("the server listens");
        tokio::time::timeout(SHUTDOWN_DRAIN + Duration::from_secs(2), server)
            .await
            .expect("the server stops within the drain")
            .expect("the server task does not panic");
        assert!(
            asked.elapsed() >= SHUTDOWN_DRAIN,
            "the request was dropped before the drain ended"
        );
        assert_eq!(read_all(&mut client).await, "", "no answer was due");
    }
}
