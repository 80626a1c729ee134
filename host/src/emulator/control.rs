//! The control API under `/_emulator/` (JSON in and out, no signature):
//!
//! | request | what it does |
//! |---|---|
//! | `GET /_emulator/health` | `{"status": "ok", ...}` once the emulator serves |
//! | `GET /_emulator/calls[?since=SEQ]` | `{"calls": [...]}`: every AWS call (or those numbered above SEQ): `seq`, `wall_ms`, `model_secs`, `protocol`, `service`, `operation`, `application`, `params`, `outcome` (`ok`, the error code, or `Drop`), `http_status` (0 when dropped), `injected`, `took_effect` (the call changed the state, whatever it answered), `user_agent`, `client_gone` (the client had hung up before the call ran) |
//! | `GET /_emulator/state` | per application: model time, status, KPU, parallelism, version, load factor, lambda, backlog, lag; alarms; faults; the scores so far |
//! | `POST /_emulator/load` `{"application": NAME, "factor": F}` | multiplies the application's trace by F from now on |
//! | `POST /_emulator/faults` `{"operation", "application", "error", "delay_ms", "after_effect", "lands_late", "count" or "fraction", "seed", "http_status", "message"}` | injects a fault ([`super::FaultSpec`]) |
//! | `GET /_emulator/faults` | the faults in force |
//! | `DELETE /_emulator/faults` | removes every fault |

use hyper::Method;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{FaultSpec, Shared};

/// `POST /_emulator/load`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadChange {
    application: String,
    factor: f64,
}

/// Answers one control request with an HTTP status and a JSON body.
pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> (u16, Json) {
    let route = path.trim_end_matches('/');
    let (mut core, now) = shared.lock_synced();
    match (method.as_str(), route) {
        ("GET", "/_emulator/health") => (
            200,
            json!({"status": "ok", "scenario": core.world.scenario_name(), "speed": core.clock.speed}),
        ),
        ("GET", "/_emulator/calls") => {
            let since = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|kv| kv.strip_prefix("since="))
                .map(str::parse::<u64>);
            let since = match since {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return bad_request("since must be a call number"),
            };
            let from = usize::try_from(since).unwrap_or(usize::MAX);
            let calls = core.calls.get(from..).unwrap_or_default();
            (200, json!({ "calls": calls }))
        }
        ("GET", "/_emulator/state") => match serde_json::to_value(core.snapshot(now)) {
            Ok(state) => (200, state),
            Err(error) => (500, json!({"error": error.to_string()})),
        },
        ("POST", "/_emulator/load") => {
            let change: LoadChange = match serde_json::from_slice(body) {
                Ok(c) => c,
                Err(error) => return bad_request(&error.to_string()),
            };
            match core
                .world
                .set_load_factor(&change.application, change.factor)
            {
                Ok(()) => (
                    200,
                    json!({"application": change.application, "factor": change.factor}),
                ),
                Err(error) if error.code() == "ResourceNotFoundException" => {
                    // As the faults route says it: with what would be valid.
                    let valid: Vec<String> = core
                        .world
                        .applications()
                        .iter()
                        .map(|app| format!("{:?}", app.name()))
                        .collect();
                    (
                        404,
                        json!({"error": format!(
                            "{} (valid: {})",
                            error.to_string().trim_end_matches('.'),
                            valid.join(", ")
                        )}),
                    )
                }
                Err(error) => (400, json!({"error": error.to_string()})),
            }
        }
        ("POST", "/_emulator/faults") => {
            let spec: FaultSpec = match serde_json::from_slice(body) {
                Ok(s) => s,
                Err(error) => return bad_request(&error.to_string()),
            };
            match core.add_fault(spec) {
                Ok(()) => (200, json!({ "faults": core.faults.list() })),
                Err(problem) => bad_request(&problem),
            }
        }
        ("GET", "/_emulator/faults") => (200, json!({ "faults": core.faults.list() })),
        ("DELETE", "/_emulator/faults") => {
            let cleared = core.faults.list().len();
            core.faults.clear();
            (200, json!({ "cleared": cleared }))
        }
        _ => (
            404,
            json!({"error": format!("no control route {} {path}", method.as_str())}),
        ),
    }
}

fn bad_request(message: &str) -> (u16, Json) {
    (400, json!({ "error": message }))
}
