//! The HTTP side: accepting connections (hyper 1, HTTP/1.1), routing a
//! request to its service and protocol, checking that it is signed,
//! injecting faults, logging the call, and encoding the answer (or, for a
//! `Drop` fault, closing the connection without one).
//!
//! Routes: `POST /service/GraniteServiceVersion20100801/operation/<Op>`
//! is CloudWatch over Smithy RPC v2 CBOR; `POST /` with `X-Amz-Target:
//! GraniteServiceVersion20100801.<Op>` is CloudWatch over AWS JSON 1.0;
//! `POST /` with `X-Amz-Target: KinesisAnalytics_20180523.<Op>` is
//! kinesisanalyticsv2 over AWS JSON 1.1; `/_emulator/...` is the control
//! API. A signature is accepted whatever it says (no credentials are real
//! here), but an AWS request without an `Authorization` header is refused
//! as AWS refuses it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::faults::{Answer, Injected};
use super::value::{AwsError, Value};
use super::{Protocol, Service, Shared, cbor, control, json};

/// Request bodies above this size are refused.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// CloudWatch's service name in paths and targets.
const CLOUDWATCH_SERVICE: &str = "GraniteServiceVersion20100801";
/// kinesisanalyticsv2's target prefix.
const KINESIS_TARGET: &str = "KinesisAnalytics_20180523";

type Body = Full<Bytes>;

/// Accepts connections until `shutdown` turns true or its sender is
/// dropped, then lets every open connection finish its request in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let handler = move |request| {
        let shared = shared.clone();
        async move { handle(shared, request).await }
    };
    // As before half-closes were answered: the kill tests count on a
    // killed agent's request dying with its connection (see `serve`).
    crate::http::serve(listener, handler, shutdown, "emulator", false).await;
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The control API.
    Control,
    /// An AWS operation.
    Aws {
        /// The wire protocol.
        protocol: Protocol,
        /// The service.
        service: Service,
        /// The operation's name, e.g. `GetMetricData`.
        operation: String,
    },
    /// Nothing the emulator serves.
    Unknown,
}

/// Routes a request by method, path and `X-Amz-Target`.
pub(crate) fn route(method: &Method, path: &str, headers: &HeaderMap) -> Route {
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Route::Control;
    }
    if method != Method::POST {
        return Route::Unknown;
    }
    if let Some(operation) = path
        .strip_prefix("/service/")
        .and_then(|rest| rest.strip_prefix(CLOUDWATCH_SERVICE))
        .and_then(|rest| rest.strip_prefix("/operation/"))
    {
        return Route::Aws {
            protocol: Protocol::RpcV2Cbor,
            service: Service::CloudWatch,
            operation: operation.to_owned(),
        };
    }
    if path != "/" {
        return Route::Unknown;
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match target.split_once('.') {
        Some((CLOUDWATCH_SERVICE, op)) => Route::Aws {
            protocol: Protocol::AwsJson10,
            service: Service::CloudWatch,
            operation: op.to_owned(),
        },
        Some((KINESIS_TARGET, op)) => Route::Aws {
            protocol: Protocol::AwsJson11,
            service: Service::Kinesis,
            operation: op.to_owned(),
        },
        _ => Route::Unknown,
    }
}

/// Runs `work` on the shared core off the runtime, on tokio's blocking
/// pool: every call syncs the model to now first, which steps it through
/// each model second since the last call (speed x the wall time, up to a
/// million a second; all of `--history-secs` at the first call), CPU work
/// that must not hold a runtime worker. `None` if the work panicked.
async fn off_runtime<R: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&Shared) -> R + Send + 'static,
) -> Option<R> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || work(&shared))
        .await
        .ok()
}

/// The answer when the emulator's own work failed (a panic, a bug).
fn internal_failure() -> Response<Body> {
    json_response(
        500,
        &serde_json::json!({"__type": "InternalFailure", "message": "The emulator failed to serve the request."}),
        &[],
    )
}

/// Answers one request; `None` closes the connection without an answer.
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Option<Response<Body>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Some(json_response(
                413,
                &serde_json::json!({"__type": "SerializationException", "message": format!("Cannot read the request body: {error}")}),
                &[],
            ));
        }
    };
    match route(&parts.method, parts.uri.path(), &parts.headers) {
        Route::Control => {
            let (method, uri) = (parts.method.clone(), parts.uri.clone());
            let answered = off_runtime(&shared, move |shared| {
                control::handle(shared, &method, uri.path(), uri.query(), &body)
            })
            .await;
            Some(match answered {
                Some((status, answer)) => json_response(status, &answer, &[]),
                None => internal_failure(),
            })
        }
        Route::Aws {
            protocol,
            service,
            operation,
        } => aws_call(shared, protocol, service, operation, &parts.headers, body).await,
        Route::Unknown => Some(json_response(
            404,
            &serde_json::json!({
                "__type": "UnknownOperationException",
                "message": format!("The emulator serves no {} {}.", parts.method, parts.uri.path()),
            }),
            &[],
        )),
    }
}

/// Decodes a request body in its protocol.
fn decode(protocol: Protocol, body: &[u8]) -> Result<Value, AwsError> {
    let decoded = match protocol {
        Protocol::RpcV2Cbor => cbor::decode(body).map_err(|e| e.to_string()),
        Protocol::AwsJson10 | Protocol::AwsJson11 => json::decode(body).map_err(|e| e.to_string()),
    };
    match decoded {
        Ok(value @ Value::Map(_)) => Ok(value),
        Ok(_) => Err(AwsError::new(
            "SerializationException",
            "The request body must be a structure.",
        )),
        Err(message) => Err(AwsError::new("SerializationException", message)),
    }
}

/// Serves one AWS call: checks it, draws its fault, runs it (unless a
/// fault strikes first), logs it once, and answers.
async fn aws_call(
    shared: Arc<Shared>,
    protocol: Protocol,
    service: Service,
    operation: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Response<Body>> {
    // Who called: the SDK's User-Agent carries the caller's app name
    // (flinkscale's `app/flinkscale-VERSION`), as CloudTrail records it.
    let user_agent = headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let signed = headers.contains_key(hyper::header::AUTHORIZATION);
    // Decoding, the refusals and the fault draw: one trip off the runtime.
    let op = operation.clone();
    let agent = user_agent.clone();
    let checked = off_runtime(&shared, move |shared| {
        let input = decode(protocol, &body);
        // A refusal is logged as the call log shows any call (with what
        // was decoded of the request), then answered.
        let refuse = |decoded, error: &AwsError| {
            let (mut core, now) = shared.lock_synced();
            let seq = core.record(
                now,
                protocol,
                service,
                &op,
                decoded,
                Logged::answered(Err(error), error.status).with_user_agent(agent.clone()),
            );
            Err(Box::new(error_response(protocol, error, seq)))
        };
        if !signed {
            let error = AwsError::with_status(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token: the request carries no Authorization header.",
                403,
            );
            return refuse(input.as_ref().ok(), &error);
        }
        match input {
            Ok(input) => {
                let injected = shared.lock_synced().0.faults.take(service, &op, &input);
                Ok((input, injected))
            }
            Err(error) => refuse(None, &error),
        }
    })
    .await;
    let (input, injected) = match checked {
        Some(Ok(checked)) => checked,
        Some(Err(refused)) => return Some(*refused),
        None => return Some(internal_failure()),
    };
    let held_ms = injected
        .as_ref()
        .filter(|fault| !fault.after_effect)
        .map_or(0, |fault| fault.delay_ms);
    let lands_late = injected.as_ref().is_some_and(|fault| fault.lands_late);
    let run = move |shared: Arc<Shared>, mut injected: Option<Injected>, client_gone: bool| async move {
        if let Some(fault) = injected.as_mut() {
            fault.client_gone = client_gone;
        }
        off_runtime(&shared, move |shared| {
            let (mut core, now) = shared.lock_synced();
            run_call(
                &mut core, now, protocol, service, &operation, &input, injected, user_agent,
            )
        })
        .await
    };
    let served = if held_ms > 0 && lands_late {
        // The request is held in the network and reaches the service when
        // the wait ends, whether its client is still there or not: run on
        // a task of its own, which a hang-up (dropping this future) does
        // not stop. The guard says whether the client was still there.
        let here = ClientHere(Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let still_here = here.0.clone();
        let shared = shared.clone();
        let landed = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(held_ms)).await;
            let gone = !still_here.load(std::sync::atomic::Ordering::SeqCst);
            run(shared, injected, gone).await
        })
        .await
        .ok()
        .flatten();
        drop(here);
        landed
    } else {
        if held_ms > 0 {
            // A client that hangs up meanwhile drops this future: the call
            // is then neither run nor logged, as a request lost on the
            // network.
            tokio::time::sleep(Duration::from_millis(held_ms)).await;
        }
        run(shared.clone(), injected, false).await
    };
    let Some(served) = served else {
        return Some(internal_failure());
    };
    if served.delay_after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(served.delay_after_ms)).await;
    }
    served
        .reply
        .map(|result| answer(protocol, result, served.seq))
}

/// Set while the client of a held request is there: dropped with the
/// request's future when the client hangs up.
struct ClientHere(Arc<std::sync::atomic::AtomicBool>);

impl Drop for ClientHere {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One call run against the core, its answer still to be sent.
#[derive(Debug)]
pub(crate) struct Served {
    /// Its number in the call log.
    pub(crate) seq: u64,
    /// What to answer, `None` to close the connection without an answer.
    pub(crate) reply: Option<Result<Value, AwsError>>,
    /// How long to wait before answering (an after-effect delay).
    pub(crate) delay_after_ms: u64,
}

/// Runs one decoded call at wall time `now` (the core synced to it) under
/// its fault, if any, and logs it once. A fault without `after_effect`
/// answers instead of the operation, which then never runs (a `Delay`,
/// whose wait is over, lets it run). With `after_effect`, the operation
/// runs and takes effect (or fails on its own), the call is logged at that
/// instant, and the fault's answer replaces the real one, after its wait.
/// `user_agent` is the request's User-Agent, for the log.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_call(
    core: &mut super::Core,
    now: i64,
    protocol: Protocol,
    service: Service,
    operation: &str,
    input: &Value,
    fault: Option<Injected>,
    user_agent: Option<String>,
) -> Served {
    let client_gone = fault.as_ref().is_some_and(|fault| fault.client_gone);
    let (reply, logged, delay_after_ms) = match fault {
        None => {
            let result = core.call(service, operation, input, now);
            let logged = Logged::ran(service, operation, &result, false);
            (Some(result), logged, 0)
        }
        Some(fault) if !fault.after_effect => match fault.answer {
            Answer::Normal => {
                let result = core.call(service, operation, input, now);
                let logged = Logged::ran(service, operation, &result, false);
                (Some(result), logged, 0)
            }
            Answer::Error(error) => {
                let logged = Logged::injected(Err(&error), error.status, false);
                (Some(Err(error)), logged, 0)
            }
            Answer::Drop => (None, Logged::dropped(false), 0),
        },
        Some(fault) => {
            let result = core.call(service, operation, input, now);
            let took_effect = Logged::ran(service, operation, &result, true).took_effect;
            match fault.answer {
                Answer::Normal => {
                    let logged = Logged::ran(service, operation, &result, true);
                    (Some(result), logged, fault.delay_ms)
                }
                Answer::Error(error) => {
                    let logged = Logged::injected(Err(&error), error.status, took_effect);
                    (Some(Err(error)), logged, fault.delay_ms)
                }
                Answer::Drop => (None, Logged::dropped(took_effect), fault.delay_ms),
            }
        }
    };
    let logged = Logged {
        client_gone,
        ..logged.with_user_agent(user_agent)
    };
    let seq = core.record(now, protocol, service, operation, Some(input), logged);
    Served {
        seq,
        reply,
        delay_after_ms,
    }
}

/// What the call log records of one call's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logged {
    /// `ok`, the error code answered, or `Drop`.
    pub(crate) outcome: String,
    /// The HTTP status answered, 0 when none was.
    pub(crate) http_status: u16,
    /// Whether a fault decided the answer.
    pub(crate) injected: bool,
    /// Whether the call changed the emulated state.
    pub(crate) took_effect: bool,
    /// The request's User-Agent header, if any.
    pub(crate) user_agent: Option<String>,
    /// Whether the client had hung up before the call ran (a request held
    /// by a `lands_late` Delay).
    pub(crate) client_gone: bool,
}

impl Logged {
    /// A call answered without running the operation (or after it failed).
    pub(crate) fn answered(outcome: Result<(), &AwsError>, http_status: u16) -> Self {
        Self {
            outcome: outcome.map_or_else(|e| e.code.clone(), |()| "ok".to_owned()),
            http_status,
            injected: false,
            took_effect: false,
            user_agent: None,
            client_gone: false,
        }
    }

    /// The same, with the request's User-Agent.
    pub(crate) fn with_user_agent(self, user_agent: Option<String>) -> Self {
        Self { user_agent, ..self }
    }

    /// A call whose answer a fault chose.
    pub(crate) fn injected(
        outcome: Result<(), &AwsError>,
        http_status: u16,
        took_effect: bool,
    ) -> Self {
        Self {
            injected: true,
            took_effect,
            ..Self::answered(outcome, http_status)
        }
    }

    /// A call whose connection a fault closed without an answer.
    pub(crate) fn dropped(took_effect: bool) -> Self {
        Self {
            outcome: super::faults::DROP.to_owned(),
            http_status: 0,
            injected: true,
            took_effect,
            user_agent: None,
            client_gone: false,
        }
    }

    /// A call the operation answered itself (`injected` when a fault
    /// delayed it after its effect).
    pub(crate) fn ran<T>(
        service: Service,
        operation: &str,
        result: &Result<T, AwsError>,
        injected: bool,
    ) -> Self {
        let status = result.as_ref().map_or_else(|e| e.status, |_| 200);
        Self {
            injected,
            took_effect: result.is_ok() && super::changes_state(service, operation),
            ..Self::answered(result.as_ref().map(|_| ()), status)
        }
    }
}

/// The answer of an operation that ran.
fn answer(protocol: Protocol, result: Result<Value, AwsError>, seq: u64) -> Response<Body> {
    match result {
        Ok(output) => success_response(protocol, &output, seq),
        Err(error) => error_response(protocol, &error, seq),
    }
}

fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::RpcV2Cbor => "application/cbor",
        Protocol::AwsJson10 => "application/x-amz-json-1.0",
        Protocol::AwsJson11 => "application/x-amz-json-1.1",
    }
}

fn encode(protocol: Protocol, value: &Value) -> Vec<u8> {
    match protocol {
        Protocol::RpcV2Cbor => cbor::encode(value),
        Protocol::AwsJson10 | Protocol::AwsJson11 => json::encode(value),
    }
}

fn response(status: u16, body: Vec<u8>, headers: &[(&str, String)]) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let map = response.headers_mut();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    response
}

fn protocol_headers(protocol: Protocol, seq: u64) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (CONTENT_TYPE.as_str(), content_type(protocol).to_owned()),
        ("x-amzn-requestid", format!("flinkscale-emulator-{seq}")),
    ];
    if protocol == Protocol::RpcV2Cbor {
        headers.push(("smithy-protocol", "rpc-v2-cbor".to_owned()));
    }
    headers
}

fn success_response(protocol: Protocol, output: &Value, seq: u64) -> Response<Body> {
    response(
        200,
        encode(protocol, output),
        &protocol_headers(protocol, seq),
    )
}

/// An error in the protocol's shape: a `{__type, message}` structure; the
/// query-compatible CloudWatch also names the code in `x-amzn-query-error`,
/// which both the SDK and boto3 read.
fn error_response(protocol: Protocol, error: &AwsError, seq: u64) -> Response<Body> {
    let mut headers = protocol_headers(protocol, seq);
    match protocol {
        Protocol::RpcV2Cbor | Protocol::AwsJson10 => headers.push((
            "x-amzn-query-error",
            format!("{};{}", error.code, error.fault()),
        )),
        Protocol::AwsJson11 => headers.push(("x-amzn-errortype", error.code.clone())),
    }
    let body = Value::map([
        ("__type", Value::str(&error.code)),
        ("message", Value::str(&error.message)),
    ]);
    response(error.status, encode(protocol, &body), &headers)
}

fn json_response(
    status: u16,
    body: &serde_json::Value,
    headers: &[(&str, String)],
) -> Response<Body> {
    let mut all = vec![(CONTENT_TYPE.as_str(), "application/json".to_owned())];
    all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
    response(status, serde_json::to_vec(body).unwrap_or_default(), &all)
}
