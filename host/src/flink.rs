//! The JobManager's REST API as the `flink` target and the `source =
//! "flink"` metric source both use it (as [`crate::aws`] serves the AWS
//! ones): a minimal HTTP/1.1 client (one connection per call, JSON in and
//! out, every failure classified as a [`TargetError`], moving on to the
//! next JobManager of a list only where that cannot act twice), the
//! `rest_url` syntax, how a job is found by name or id, and how the ids Flink
//! answers with are put into paths ([`segment`]). Every call is counted
//! in `flinkscale_flink_calls_total` by its route template ([`route`]).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::FlinkJob;
use crate::target::TargetError;
use crate::telemetry::prometheus::{CountedCall, record_jobmanager_move};

/// Flink answers larger than this are refused rather than buffered.
const MAX_ANSWER: u64 = 8 << 20;

/// `host:port` of a `rest_url`, which must be `http://host:port` (TLS is
/// not supported yet), in one spelling per address: the host in lower
/// case and the port as a number (`HOST:08081/` is `host:8081`), so
/// that two spellings of one JobManager compare equal; the error says
/// what is wrong.
pub fn parse_rest_url(rest_url: &str) -> Result<String, String> {
    let wrong = |what: &str| format!("rest_url {rest_url:?}: expected http://host:port: {what}");
    let Some(rest) = rest_url.strip_prefix("http://") else {
        return Err(wrong(if rest_url.starts_with("https://") {
            "https is not supported yet"
        } else {
            "the scheme must be http://"
        }));
    };
    let hp = rest.trim_end_matches('/');
    if hp.contains('/') {
        return Err(wrong("no path after the port"));
    }
    match hp.rsplit_once(':') {
        None => Err(wrong(
            "no port (Flink's REST API listens on 8081 by default)",
        )),
        Some(("", _)) => Err(wrong("no host")),
        Some((host, port)) => match port.parse::<u16>() {
            // Digits only: `+8081` is no port a URL parser takes.
            Ok(number) if number > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {
                match host_problem(host) {
                    Some(problem) => Err(wrong(&problem)),
                    None => Ok(format!("{}:{number}", host.to_ascii_lowercase())),
                }
            }
            _ => Err(wrong(&format!(
                "the port {port:?} is not a number from 1 to 65535"
            ))),
        },
    }
}

/// What is wrong with `host` as the host of a `rest_url`, if anything: it
/// must be a DNS name (letters, digits, `-`, `_` and `.`), an IPv4 address,
/// or an IPv6 address in brackets (`[::1]`). A space, `#`, `?` or `@`
/// there, or a bracket left open, made an address that could never be
/// reached, found only at run time, at every evaluation.
fn host_problem(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => None,
            _ => Some(format!(
                "the host {host:?} is not an IPv6 address in brackets, e.g. [::1]"
            )),
        };
    }
    // Digits and dots only is an IPv4 address or a mistake (no top-level
    // domain is all digits): 300.1.1.1 would fail only at run time.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && host.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Some(format!(
            "the host {host:?} is not an IPv4 address (four numbers from 0 to 255, e.g. 10.0.0.7)"
        ));
    }
    let name = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!name).then(|| {
        format!(
            "the host {host:?} is not a DNS name or an IP address (letters, digits, '-', '_' \
             and '.'; an IPv6 address in brackets)"
        )
    })
}

/// The values of the header `name` (any case) in an HTTP answer's `head`
/// (its status line, then its header lines), in order.
fn header_values<'a>(head: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    head.lines().skip(1).filter_map(move |line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then_some(value)
    })
}

/// What `rest_url` names: one JobManager's REST API (`"http://host:port"`)
/// or, for a cluster with JobManager high availability and no load
/// balancer in front, every JobManager's (`["http://jm-a:8081",
/// "http://jm-b:8081"]`), tried in order. Each is `http://host:port`
/// ([`parse_rest_url`] checks them; validation reports each that is not,
/// and one listed twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestUrl(Vec<String>);

impl RestUrl {
    /// The URLs, as written, in the order they are tried.
    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for RestUrl {
    fn from(url: &str) -> Self {
        Self(vec![url.to_owned()])
    }
}

impl From<&String> for RestUrl {
    fn from(url: &String) -> Self {
        Self(vec![url.clone()])
    }
}

impl From<&RestUrl> for RestUrl {
    fn from(rest_url: &RestUrl) -> Self {
        rest_url.clone()
    }
}

impl From<Vec<String>> for RestUrl {
    fn from(urls: Vec<String>) -> Self {
        Self(urls)
    }
}

impl std::fmt::Display for RestUrl {
    /// The URL, or the URLs in order joined by `" or "`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" or "))
    }
}

impl<'de> serde::Deserialize<'de> for RestUrl {
    /// A string, or an array of strings.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> serde::de::Visitor<'de> for Urls {
            type Value = RestUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a URL such as \"http://localhost:8081\", or a list of them, one per JobManager",
                )
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<RestUrl, E> {
                Ok(RestUrl::from(url))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RestUrl, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(RestUrl(urls))
            }
        }
        deserializer.deserialize_any(Urls)
    }
}

/// A minimal HTTP/1.1 client for Flink's REST API (one connection per
/// call, JSON in and out), shared by the target and the metric source.
///
/// Given several JobManagers' addresses, it sticks to the one that last
/// answered and moves on to the next (in order, around) only when that
/// one cannot be reached: a refused or timed-out connection, so nothing
/// was sent, for any call; and, for a GET, which changes nothing, also an
/// answer lost after the request was sent. A PUT whose answer is lost is
/// never sent again here: the caller reads the job back to learn whether
/// it took, as with one address.
#[derive(Debug, Clone)]
pub struct FlinkRest {
    /// `host:port` of each JobManager, in order.
    addresses: std::sync::Arc<[String]>,
    /// The index into `addresses` of the one that last answered (shared
    /// by clones).
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    timeout: Duration,
}

/// Why one exchange with one address failed: before anything was sent
/// (the next address may be tried for any call), or after.
enum Missed {
    /// The connection could not be made.
    Unreached(TargetError),
    /// The request was (or may have been) sent, and no answer came.
    Sent(TargetError),
    /// An answer came: an HTTP error, final whichever address gave it.
    Answered(TargetError),
}

impl FlinkRest {
    /// A client of the REST API at `rest_url`: one URL or several, each
    /// `http://host:port`.
    pub fn new(rest_url: impl Into<RestUrl>) -> Result<Self, TargetError> {
        let rest_url = rest_url.into();
        let addresses = rest_url
            .urls()
            .iter()
            .map(|url| parse_rest_url(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TargetError::Invalid)?;
        if addresses.is_empty() {
            return Err(TargetError::Invalid(
                "rest_url is an empty list; give at least one http://host:port".into(),
            ));
        }
        Ok(Self {
            addresses: addresses.into(),
            current: std::sync::Arc::default(),
            timeout: Duration::from_secs(10),
        })
    }

    /// `http://host:port` of the JobManager in use, for messages.
    pub fn url(&self) -> String {
        format!("http://{}", self.address(self.current_index()))
    }

    fn current_index(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed) % self.addresses.len()
    }

    fn address(&self, index: usize) -> &str {
        &self.addresses[index % self.addresses.len()]
    }

    /// One HTTP/1.1 exchange; the status and the JSON body. 404 is
    /// `NotFound`, 429 `Throttled`, 409 (another update under way)
    /// `ResourceInUse`, another 4xx `Invalid` (with Flink's error text), a
    /// 5xx that says the job cannot be rescaled in place (the default
    /// scheduler, reactive mode) `Invalid` with the fix, and anything that
    /// is not an answer, or another 5xx, `Transient`. Counted in `flinkscale_flink_calls_total` and its
    /// duration histogram by [`route`] and outcome.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), TargetError> {
        let call = CountedCall::flink(route(method, path));
        let result = self.exchange_any(method, path, body).await;
        call.ended(match &result {
            Ok(_) => "ok",
            Err(error) => crate::controller::Failure::of(error).as_str(),
        });
        result
    }

    /// [`FlinkRest::call`], uncounted: with the address in use, then, as
    /// long as that fails as [`FlinkRest`] says a call may move on, with
    /// each other address once. The address that answered is kept for
    /// the next call.
    async fn exchange_any(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), TargetError> {
        let first = self.current_index();
        let count = self.addresses.len();
        let mut tried = 0;
        loop {
            let index = (first + tried) % count;
            tried += 1;
            let missed = match self.exchange(self.address(index), method, path, body).await {
                Ok(answer) => Ok(answer),
                Err(Missed::Unreached(error)) => Err((error, true)),
                Err(Missed::Sent(error)) => Err((error, method == "GET")),
                Err(Missed::Answered(error)) => Err((error, false)),
            };
            match missed {
                Err((error, may_move_on)) if may_move_on && tried < count => {
                    let from = format!("http://{}", self.address(index));
                    let to = format!("http://{}", self.address(index + 1));
                    tracing::warn!(
                        from = %from,
                        to = %to,
                        error = %error,
                        "Flink's REST API did not answer there; trying the next JobManager."
                    );
                    record_jobmanager_move(&from, &to);
                    self.current
                        .store((index + 1) % count, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(answer) => return Ok(answer),
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// One exchange with the JobManager at `host_port`; an answer that
    /// is an HTTP error is classified as [`FlinkRest::call`] says.
    async fn exchange(
        &self,
        host_port: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Missed> {
        let what = format!("{method} http://{host_port}{path}");
        let deadline = tokio::time::Instant::now() + self.timeout;
        let no_answer =
            || TargetError::Transient(format!("{what}: no answer in {:?}", self.timeout));
        let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(host_port))
            .await
            .map_err(|_| Missed::Unreached(no_answer()))?
            .map_err(|e| Missed::Unreached(TargetError::Transient(format!("{what}: {e}"))))?;
        let exchange = async {
            let body = body.map(Value::to_string).unwrap_or_default();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| Missed::Sent(no_answer()))?
            .map_err(|e| Missed::Sent(TargetError::Transient(format!("{what}: {e}"))))?;
        if raw.len() as u64 >= MAX_ANSWER {
            return Err(Missed::Answered(TargetError::Transient(format!(
                "{what}: the answer is {} MiB or more, more than the agent reads",
                MAX_ANSWER >> 20
            ))));
        }
        if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(Missed::Sent(TargetError::Transient(format!(
                "{what}: no complete HTTP answer (connection closed)"
            ))));
        }
        Self::answer(&what, &raw).map_err(Missed::Answered)
    }

    /// The status and JSON body of the raw HTTP answer to `what`, or its
    /// failure classified.
    fn answer(what: &str, raw: &[u8]) -> Result<(u16, Value), TargetError> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| TargetError::Transient(format!("{what}: no complete HTTP answer")))?;
        let head = String::from_utf8_lossy(&raw[..end]);
        let body = &raw[end + 4..];
        // Flink's own server says Content-Length; a proxy or an ingress
        // in front of it may chunk the answer (HTTP/1.1 allows it, even to
        // a request that closes the connection).
        let chunked = header_values(&head, "transfer-encoding")
            .any(|value| value.to_ascii_lowercase().contains("chunked"));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TargetError::Transient(format!("{what}: no HTTP status line")))?;
        let dechunked;
        let body = match chunked.then(|| dechunk(body)) {
            Some(Some(whole)) => {
                dechunked = whole;
                &dechunked[..]
            }
            // A success must be read whole; a refusal is one whatever its
            // body says (a 404 stays a job not found), shown as it came.
            Some(None) if (200..=299).contains(&status) => {
                return Err(TargetError::Transient(format!(
                    "{what}: a chunked answer cut short or malformed"
                )));
            }
            Some(None) | None => body,
        };
        // A success cut short must not be read as what it holds so far
        // (an empty or partial answer reads as a job with no state, a
        // cluster of no slots). A chunked answer was checked whole above.
        let success = (200..=299).contains(&status);
        if success && !chunked {
            let promised = header_values(&head, "content-length")
                .find_map(|value| value.trim().parse::<usize>().ok());
            if promised.is_some_and(|length| body.len() < length) {
                return Err(TargetError::Transient(format!(
                    "{what}: {status} with {} of the {} bytes its Content-Length promised \
                     (the connection closed early)",
                    body.len(),
                    promised.unwrap_or_default()
                )));
            }
        }
        let payload = String::from_utf8_lossy(body);
        let payload = payload.as_ref();
        let json: Value = match serde_json::from_str(payload) {
            Ok(json) => json,
            // Every GET of Flink's REST API answers a JSON document: an
            // empty success is an answer lost on the way (a proxy's), not
            // one that says nothing. A PUT's may be empty.
            Err(_) if payload.trim().is_empty() && success && what.starts_with("GET ") => {
                return Err(TargetError::Transient(format!(
                    "{what}: {status} with an empty body"
                )));
            }
            Err(_) if payload.trim().is_empty() => Value::Null,
            // A success that says nothing readable (a proxy's page, an
            // answer cut short) must not be taken for an empty one: a
            // job with no vertices, or an update in doubt resolved.
            Err(error) if (200..=299).contains(&status) => {
                let shown: String = payload.chars().take(120).collect();
                return Err(TargetError::Transient(format!(
                    "{what}: {status} with a body that is not JSON ({error}): {shown:?}"
                )));
            }
            Err(_) => Value::String(payload.chars().take(500).collect()),
        };
        let flink_says = || match json["errors"].as_array() {
            Some(errors) => errors
                .iter()
                .filter_map(Value::as_str)
                .map(flink_message)
                .collect::<Vec<_>>()
                .join("; "),
            None => json.to_string(),
        };
        match status {
            200..=299 => Ok((status, json)),
            404 => Err(TargetError::NotFound(format!("{what}: {}", flink_says()))),
            429 => Err(TargetError::Throttled(format!("{what}: {}", flink_says()))),
            // The Dispatcher's answer to requirements sent while an earlier
            // update of them is still being stored: this one was not taken,
            // the earlier one may be. Busy, to be read again, like MSF's
            // ResourceInUse; not a refusal of the size asked for.
            409 => Err(TargetError::ResourceInUse(format!(
                "{what}: {status} {}",
                flink_says()
            ))),
            400..=499 => Err(TargetError::Invalid(format!(
                "{what}: {status} {}",
                flink_says()
            ))),
            _ => {
                let says = flink_says();
                match unsupported(&says) {
                    Some(fix) => Err(TargetError::Invalid(format!(
                        "{what}: {status} {says}: {fix}"
                    ))),
                    None => Err(TargetError::Transient(format!("{what}: {status} {says}"))),
                }
            }
        }
    }

    /// A GET's JSON body.
    pub async fn get(&self, path: &str) -> Result<Value, TargetError> {
        Ok(self.call("GET", path, None).await?.1)
    }

    /// The id of `job`: the newest job of the name that has not reached a
    /// terminal state, or the given id when Flink knows it.
    pub async fn job_id(&self, job: &FlinkJob) -> Result<String, TargetError> {
        match job {
            FlinkJob::Id(id) => {
                let detail = self.get(&format!("/jobs/{}", segment(id))).await?;
                match detail["state"].as_str() {
                    Some(state) if is_terminal(state) => Err(TargetError::NotFound(format!(
                        "job {id} at {} has ended ({state})",
                        self.url()
                    ))),
                    _ => Ok(id.clone()),
                }
            }
            FlinkJob::Name(name) => {
                let jobs = self.get("/jobs/overview").await?;
                let named: Vec<&Value> = jobs["jobs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|j| j["name"] == name.as_str())
                    .collect();
                let newest = |alive: bool| {
                    named
                        .iter()
                        .filter(|j| alive != is_terminal(j["state"].as_str().unwrap_or("")))
                        .max_by_key(|j| j["start-time"].as_i64().unwrap_or(0))
                };
                if let Some(id) = newest(true).and_then(|j| j["jid"].as_str()) {
                    return Ok(id.to_owned());
                }
                // Say what became of it: an operator reading "not found"
                // after a TaskManager died wants to know the job failed.
                let ended = match newest(false) {
                    Some(job) => format!(
                        " (the newest job of that name, {}, is {})",
                        job["jid"].as_str().unwrap_or("?"),
                        job["state"].as_str().unwrap_or("?")
                    ),
                    // None of that name at all: a typo in job_name, or
                    // the wrong cluster. Say what runs there.
                    None => running_names(&jobs),
                };
                Err(TargetError::NotFound(format!(
                    "no running job named {name:?} at {}{ended}",
                    self.url()
                )))
            }
        }
    }
}

/// The names of the jobs of a `GET /jobs/overview` answer that have not
/// ended, as a parenthesised note: ` (running: "a", "b")`, at most ten
/// named, or ` (no job is running there)`.
fn running_names(overview: &Value) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = overview["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| !is_terminal(j["state"].as_str().unwrap_or("")))
        .filter_map(|j| j["name"].as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return " (no job is running there)".to_owned();
    }
    let shown: Vec<String> = names.iter().take(SHOWN).map(|n| format!("{n:?}")).collect();
    let more = match names.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(" (running: {}{more})", shown.join(", "))
}

/// The REST route template of a call, for metrics: the method and the
/// path without its query, each id a placeholder
/// (`GET /jobs/{id}/vertices/{vid}/subtasks/metrics`), so that a counter
/// has one series per route, never one per job. A segment after `jobs`
/// (but `overview`) is `{id}`, after `vertices` `{vid}`, after
/// `taskmanagers` (but `metrics`) `{tmid}`; any other segment that is not
/// lowercase letters and hyphens (a route's own words) is `{}`.
pub fn route(method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = format!("{method} ");
    let mut previous = "";
    for (i, segment) in path.split('/').enumerate() {
        if i == 0 && segment.is_empty() {
            continue;
        }
        let word =
            !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        let template = match previous {
            _ if segment.is_empty() => "",
            "jobs" if segment != "overview" => "{id}",
            "vertices" => "{vid}",
            "taskmanagers" if segment != "metrics" => "{tmid}",
            _ if word => segment,
            _ => "{}",
        };
        out.push('/');
        out.push_str(template);
        previous = segment;
    }
    out
}

/// What to change when Flink's error text says the job cannot be rescaled
/// in place at all: a 500 that no retry will turn into an answer. The
/// default scheduler has no resource requirements to read or set, and a
/// job in reactive mode takes every slot there is (checked against Flink
/// 2.2's `SchedulerNG` and `AdaptiveScheduler`).
fn unsupported(says: &str) -> Option<&'static str> {
    if says.contains("does not support changing the parallelism without a job restart") {
        Some(
            "the job runs on Flink's default scheduler; set `jobmanager.scheduler: adaptive` in \
             Flink's config.yaml and resubmit it (flinkscale rescales in place, which only the \
             adaptive scheduler offers)",
        )
    } else if says.contains("Cannot change the parallelism of a job running in reactive mode") {
        Some(
            "the job runs in reactive mode (`scheduler-mode: reactive`), where Flink gives it \
             every task slot there is: scale the TaskManagers instead, or leave reactive mode \
             for flinkscale to rescale it",
        )
    } else {
        None
    }
}

/// What a Flink REST error says, without its Java stack trace and
/// exception class: `org...RestHandlerException: The requested lower
/// bound ...\n\tat ...` becomes `The requested lower bound ...`.
fn flink_message(error: &str) -> String {
    let text: Vec<&str> = error
        .lines()
        .take_while(|line| !line.starts_with('\t'))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let text = text.join(" ");
    match text.split_once("Exception: ") {
        Some((class, rest)) if !class.contains(' ') => rest.to_owned(),
        _ => text,
    }
}

/// `text` as one segment of a REST path: every byte but ASCII letters,
/// digits, `-`, `_` and `~` percent-encoded, `.` included (so that `..` is
/// no step up). Job and vertex ids read from Flink's answers go through it
/// before they are put in a path: whatever an answer holds, it stays one
/// segment, with no `/`, `?` or `#` of its own. Flink's own ids (32 hex
/// digits) are unchanged by it.
pub fn segment(text: &str) -> String {
    percent_encoded(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
    })
}

/// `text` as one value of a query string: every byte but RFC 3986's
/// unreserved ones (ASCII letters, digits, `-`, `.`, `_`, `~`)
/// percent-encoded, so that it cannot end the value (`&`, `,`), the query
/// (`#`) or start another parameter. Metric names read from Flink's
/// answers go through it.
pub fn query_value(text: &str) -> String {
    percent_encoded(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    })
}

fn percent_encoded(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a Flink job state is one a job never leaves.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "FINISHED" | "CANCELED" | "FAILED" | "SUSPENDED")
}

/// The body of a `Transfer-Encoding: chunked` answer, its chunks joined
/// (extensions and trailers ignored); `None` when it is cut short or not
/// chunked as RFC 9112 says: a body read to the end of the connection is
/// whole only with its last, empty chunk.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        let chunk = body.get(..size)?;
        if body.get(size..size.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        out.extend_from_slice(chunk);
        body = &body[size + 2..];
    }
}

/// A Flink REST API on loopback for unit tests: answers each request from
/// its request line and keeps the lines.
#[cfg(test)]
pub(crate) mod stub {
    use std::sync::{Arc, Mutex, PoisonError};

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The stub's address and the request lines it got.
    pub(crate) struct Stub {
        /// `http://127.0.0.1:PORT`.
        pub(crate) url: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Stub {
        /// Serves until the test's runtime ends, answering each request
        /// line (`GET /jobs/overview HTTP/1.1`) with `answer`'s status and
        /// JSON body.
        pub(crate) async fn start(
            answer: impl Fn(&str) -> (u16, Value) + Send + Sync + 'static,
        ) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("an address"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = requests.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    let (status, body) = answer(&line);
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                    let body = body.to_string();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                }
            });
            Self { url, requests }
        }

        /// The request lines so far, in order.
        pub(crate) fn requests(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::telemetry::prometheus::jobmanager_moves;

    /// A chunked answer (a proxy's in front of the JobManager) is read
    /// whole, its chunk sizes, extensions and trailers taken out; one cut
    /// short or malformed is a transient failure, not JSON misread.
    #[test]
    fn a_chunked_answer_is_read_whole_and_one_cut_short_is_a_failure() {
        let what = "GET http://127.0.0.1:8081/jobs/1";
        let chunked = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ntransfer-encoding: Chunked\r\n\r\n{body}"
            )
        };
        let whole = chunked(
            "c\r\n{\"jid\": \"1\",\r\n6;ext=1\r\n \"x\":2\r\n1\r\n}\r\n0\r\nTrailer: t\r\n\r\n",
        );
        let (status, json) = FlinkRest::answer(what, whole.as_bytes()).expect("read whole");
        assert_eq!(status, 200);
        assert_eq!(json, serde_json::json!({"jid": "1", "x": 2}));
        for cut in [
            "c\r\n{\"jid\": \"1\",\r\n",
            "c\r\n{\"jid\": \"1\"",
            "zz\r\n{}\r\n0\r\n\r\n",
            "2\r\n{}XX0\r\n\r\n",
        ] {
            match FlinkRest::answer(what, chunked(cut).as_bytes()) {
                Err(TargetError::Transient(message)) => {
                    assert!(message.contains("chunked answer cut short"), "{message}")
                }
                other => panic!("{cut:?}: {other:?}"),
            }
        }
        // A refusal is one whatever its body: a 404 cut short is still a
        // job not found, not a failure to retry.
        let refused = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                       1f\r\n{\"errors\": [\"Job not found.\"]}";
        match FlinkRest::answer(what, refused.as_bytes()) {
            Err(TargetError::NotFound(message)) => {
                assert!(message.contains("Job not found."), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Not chunked: the body as it comes, chunk sizes and all.
        let plain = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            FlinkRest::answer(what, plain.as_bytes()).expect("plain").1,
            serde_json::json!({})
        );
    }

    /// A success whose body is not JSON (a proxy's HTML page, an answer
    /// cut short) is a transient failure, not an empty object that would
    /// read as a job without vertices; an empty body is nothing to a PUT
    /// and a failure to a GET; an error's body that is not JSON is shown
    /// as text.
    #[test]
    fn a_success_that_is_not_json_is_a_failure_not_an_empty_answer() {
        let what = "GET http://jm:8081/jobs/1";
        let answer = |raw: &str| FlinkRest::answer(what, raw.as_bytes());
        match answer("HTTP/1.1 200 OK\r\n\r\n<html>login</html>") {
            Err(TargetError::Transient(message)) => assert!(
                message
                    .starts_with("GET http://jm:8081/jobs/1: 200 with a body that is not JSON (")
                    && message.ends_with("\"<html>login</html>\""),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        match answer("HTTP/1.1 200 OK\r\n\r\n{\"jid\": \"1\", \"vertices\": [") {
            Err(TargetError::Transient(_)) => {}
            other => panic!("a cut answer: {other:?}"),
        }
        // An empty answer to a PUT is nothing; to a GET (every GET of the
        // API answers a document) an answer lost on the way, as is a
        // success shorter than its Content-Length: read as they are, a
        // job without a state, a cluster without slots.
        let put = "PUT http://jm:8081/jobs/1/resource-requirements";
        assert_eq!(
            FlinkRest::answer(put, b"HTTP/1.1 202 Accepted\r\n\r\n").expect("an empty success"),
            (202, Value::Null)
        );
        for cut in [
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{}",
        ] {
            match answer(cut) {
                Err(TargetError::Transient(message)) => assert!(
                    message.ends_with("200 with an empty body")
                        || message.contains("200 with 2 of the 40 bytes its Content-Length"),
                    "{message}"
                ),
                other => panic!("{cut:?}: {other:?}"),
            }
        }
        match FlinkRest::answer(put, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}") {
            Err(TargetError::Transient(message)) => {
                assert!(message.contains("2 of the 9 bytes"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match answer("HTTP/1.1 502 Bad Gateway\r\n\r\n<html>bad gateway</html>") {
            Err(TargetError::Transient(message)) => {
                assert!(
                    message.contains("502 \"<html>bad gateway</html>\""),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Flink's 409 to requirements sent while an earlier update of them is
    /// stored is a busy job (read again, the earlier update resolved), not
    /// a refusal of the size; a 500 that says the job cannot be rescaled in
    /// place (the default scheduler, reactive mode), in the body Flink 2.2
    /// gives an exception a handler did not expect, is a refusal naming
    /// the fix, where any other 500 is transient.
    #[test]
    fn a_conflict_is_busy_and_a_scheduler_that_cannot_rescale_is_named() {
        let what = "PUT http://jm:8081/jobs/1/resource-requirements";
        let answer = |status: &str, body: Value| {
            FlinkRest::answer(what, format!("HTTP/1.1 {status}\r\n\r\n{body}").as_bytes())
        };
        let conflict = json!({"errors": [
            "org.apache.flink.runtime.rest.handler.RestHandlerException: Another update to the job [1] resource requirements is in progress.\n\tat org.apache.flink.runtime.dispatcher.Dispatcher.updateJobResourceRequirements(Dispatcher.java:1)"
        ]});
        match answer("409 Conflict", conflict) {
            Err(TargetError::ResourceInUse(message)) => assert!(
                message.ends_with(
                    "409 Another update to the job [1] resource requirements is in progress."
                ),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        let server_side = |exception: &str| {
            json!({"errors": [
                "Internal server error.",
                format!("<Exception on server side:\njava.util.concurrent.CompletionException: java.lang.UnsupportedOperationException: {exception}\n\tat org.apache.flink.runtime.scheduler.SchedulerNG.requestJobResourceRequirements(SchedulerNG.java:1)\nEnd of exception on server side>")
            ]})
        };
        match answer(
            "500 Internal Server Error",
            server_side(
                "The DefaultScheduler does not support changing the parallelism without a job restart. This feature is currently only expected to work with the AdaptiveScheduler.",
            ),
        ) {
            Err(TargetError::Invalid(message)) => assert!(
                message.contains("DefaultScheduler does not support")
                    && message.contains("set `jobmanager.scheduler: adaptive`"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        match answer(
            "500 Internal Server Error",
            server_side("Cannot change the parallelism of a job running in reactive mode."),
        ) {
            Err(TargetError::Invalid(message)) => {
                assert!(message.contains("`scheduler-mode: reactive`"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match answer(
            "500 Internal Server Error",
            server_side("Something else went wrong."),
        ) {
            Err(TargetError::Transient(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A job_name no job has (the operator's drill: a typo, or the wrong
    /// cluster) is reported with the names of the jobs that do run there,
    /// or that none does; a name of an ended job is not offered.
    #[tokio::test]
    async fn a_job_name_not_found_lists_the_running_jobs() {
        for (jobs, expected) in [
            (
                serde_json::json!([
                    {"jid": "1", "name": "sessionizr", "state": "RUNNING", "start-time": 1},
                    {"jid": "2", "name": "billing", "state": "RESTARTING", "start-time": 2},
                    {"jid": "3", "name": "old", "state": "CANCELED", "start-time": 3},
                ]),
                "no running job named \"sessionizer\" at URL (running: \"billing\", \"sessionizr\")",
            ),
            (
                serde_json::json!([]),
                "no running job named \"sessionizer\" at URL (no job is running there)",
            ),
        ] {
            let stub = stub::Stub::start(move |line| {
                if line.starts_with("GET /jobs/overview ") {
                    (200, serde_json::json!({ "jobs": jobs.clone() }))
                } else {
                    (404, serde_json::json!({"errors": ["Not found."]}))
                }
            })
            .await;
            let rest = FlinkRest::new(&stub.url).expect("a valid rest_url");
            match rest.job_id(&FlinkJob::Name("sessionizer".into())).await {
                Err(TargetError::NotFound(message)) => {
                    assert_eq!(message.replace(&rest.url(), "URL"), expected);
                }
                other => panic!("expected NotFound, got {other:?}"),
            }
        }
    }

    /// Whatever an id holds, it becomes one path segment: no separator,
    /// query, fragment, space or dot step of its own, and it decodes back
    /// to itself.
    #[test]
    fn an_id_becomes_one_encoded_path_segment() {
        let id = "../a/b?c=1#d e..";
        let encoded = segment(id);
        assert_eq!(encoded, "%2E%2E%2Fa%2Fb%3Fc%3D1%23d%20e%2E%2E");
        for forbidden in ["/", "?", "#", " ", ".."] {
            assert!(!encoded.contains(forbidden), "{forbidden:?} in {encoded}");
        }
        let decoded: Vec<u8> = encoded
            .split('%')
            .enumerate()
            .flat_map(|(i, part)| {
                if i == 0 {
                    part.as_bytes().to_vec()
                } else {
                    let mut bytes = vec![u8::from_str_radix(&part[..2], 16).expect("hex")];
                    bytes.extend_from_slice(&part.as_bytes()[2..]);
                    bytes
                }
            })
            .collect();
        assert_eq!(decoded, id.as_bytes());
        // Flink's own ids, and non-ASCII text byte by byte.
        assert_eq!(
            segment("0123456789abcdef0123456789ABCDEF"),
            "0123456789abcdef0123456789ABCDEF"
        );
        assert_eq!(segment("é"), "%C3%A9");
        // A query value keeps its dots (metric names have them) but not
        // what would end it.
        assert_eq!(
            query_value("0.Source: x.pendingRecords&a=b,c#d"),
            "0.Source%3A%20x.pendingRecords%26a%3Db%2Cc%23d"
        );
    }

    /// A job id a job named so is listed with (`GET /jobs/overview`) is
    /// put into the next path as one encoded segment.
    #[tokio::test]
    async fn a_listed_job_id_is_one_segment_of_the_job_s_path() {
        let stub = stub::Stub::start(|line| {
            if line.starts_with("GET /jobs/overview ") {
                (
                    200,
                    serde_json::json!({"jobs": [{"jid": "../../x?y#z w", "name": "orders", "state": "RUNNING", "start-time": 1}]}),
                )
            } else {
                (404, serde_json::json!({"errors": ["Not found."]}))
            }
        })
        .await;
        let target =
            crate::target::flink::FlinkTarget::for_job(&stub.url, FlinkJob::Name("orders".into()))
                .expect("a valid rest_url");
        let described = crate::target::ScalingTarget::describe(&target, "orders").await;
        assert!(described.is_err(), "the stub knows no such job");
        assert_eq!(
            stub.requests(),
            [
                "GET /jobs/overview HTTP/1.1",
                "GET /jobs/%2E%2E%2F%2E%2E%2Fx%3Fy%23z%20w HTTP/1.1"
            ]
        );
    }

    #[test]
    fn a_route_names_no_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let vid = "cbc357ccb763df2852fee8c4fc7d55f2";
        for (method, path, expected) in [
            ("GET", "/overview".to_owned(), "GET /overview"),
            ("GET", "/jobs/overview".to_owned(), "GET /jobs/overview"),
            ("GET", format!("/jobs/{id}"), "GET /jobs/{id}"),
            (
                "PUT",
                format!("/jobs/{id}/resource-requirements"),
                "PUT /jobs/{id}/resource-requirements",
            ),
            (
                "GET",
                format!("/jobs/{id}/vertices/{vid}/subtasks/metrics?get=a.b&agg=min,max"),
                "GET /jobs/{id}/vertices/{vid}/subtasks/metrics",
            ),
            // An id that is all letters, or encoded, is still an id.
            ("GET", "/jobs/abcdef".to_owned(), "GET /jobs/{id}"),
            (
                "GET",
                format!("/jobs/{}", segment("../x y")),
                "GET /jobs/{id}",
            ),
            (
                "GET",
                "/taskmanagers/tm-1_2".to_owned(),
                "GET /taskmanagers/{tmid}",
            ),
            (
                "GET",
                "/taskmanagers/metrics".to_owned(),
                "GET /taskmanagers/metrics",
            ),
            // Elsewhere, what is not a route's word is not kept either.
            ("GET", "/other/42/ok".to_owned(), "GET /other/{}/ok"),
            ("GET", "/".to_owned(), "GET /"),
        ] {
            assert_eq!(route(method, &path), expected, "{path}");
        }
    }

    /// A call its caller stops waiting for (a stop gives up a read in
    /// flight) is counted all the same, as `given_up`: it was sent.
    #[tokio::test]
    async fn a_call_given_up_is_counted_as_given_up() {
        // A JobManager that takes the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let rest = FlinkRest::new(&url).expect("a valid rest_url");
        let given_up =
            || crate::telemetry::prometheus::flink_calls("GET /given-up-test", "given_up");
        assert_eq!(given_up(), 0);
        let call = rest.get("/given-up-test");
        let gave_up = tokio::time::timeout(Duration::from_millis(200), call).await;
        assert!(gave_up.is_err(), "the stub never answers");
        assert_eq!(given_up(), 1);
    }

    /// Each call is counted by route and outcome, ids left out, and the
    /// counter is on `/metrics`.
    #[tokio::test]
    async fn every_rest_call_is_counted_by_route_and_outcome() {
        let id = "feedfeedfeedfeedfeedfeedfeed0429";
        let stub = stub::Stub::start(|line| {
            if line.starts_with("GET /jobs/feedfeed") {
                // No other test answers 429: these counts are this test's.
                (429, serde_json::json!({"errors": ["Too many requests."]}))
            } else {
                (200, serde_json::json!({"slots-total": 4}))
            }
        })
        .await;
        let rest = FlinkRest::new(&stub.url).expect("a valid rest_url");
        let throttled =
            |n| crate::telemetry::prometheus::flink_calls("GET /jobs/{id}", "throttled") == n;
        assert!(throttled(0));
        let overview_before = crate::telemetry::prometheus::flink_calls("GET /overview", "ok");
        for _ in 0..2 {
            let error = rest.get(&format!("/jobs/{id}")).await.expect_err("429");
            assert!(matches!(error, TargetError::Throttled(_)), "{error}");
        }
        rest.get("/overview").await.expect("200");
        assert!(throttled(2));
        // Other tests may call `GET /overview` meanwhile: at least this one.
        assert!(crate::telemetry::prometheus::flink_calls("GET /overview", "ok") > overview_before);

        let config: crate::config::Config = toml::from_str(
            "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"hold\"\n",
        )
        .expect("a test configuration");
        let text = crate::telemetry::prometheus::Registry::for_config(&config, 0).render(0);
        assert!(
            text.contains("# TYPE flinkscale_flink_calls_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "flinkscale_flink_calls_total{operation=\"GET /jobs/{id}\",outcome=\"throttled\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "flinkscale_flink_call_duration_seconds_count{operation=\"GET /jobs/{id}\"}"
            ),
            "{text}"
        );
        assert!(!text.contains(id), "a raw id in /metrics:\n{text}");
    }

    #[test]
    fn rest_url_must_be_plain_http_host_port() {
        assert_eq!(
            parse_rest_url("http://localhost:8081").as_deref(),
            Ok("localhost:8081")
        );
        assert!(FlinkRest::new("http://localhost:8081/").is_ok());
        for bad in [
            "https://h:8081",
            "localhost:8081",
            "http://",
            "http://h:1/x",
            "http://h",
            "http://:8081",
            "http://h:99999",
        ] {
            let err = FlinkRest::new(bad).expect_err(bad);
            assert!(
                err.to_string().contains("expected http://host:port"),
                "{err}"
            );
        }
        // Each says what is wrong, not that https is unsupported.
        let why = |bad: &str| {
            let err = parse_rest_url(bad).expect_err(bad);
            err.split_once("expected http://host:port: ")
                .map(|(_, why)| why.to_owned())
                .unwrap_or(err)
        };
        assert_eq!(why("https://h:8081"), "https is not supported yet");
        assert_eq!(why("ftp://x:1"), "the scheme must be http://");
        assert_eq!(
            why("http://localhost"),
            "no port (Flink's REST API listens on 8081 by default)"
        );
        assert_eq!(why("http://h:1/x"), "no path after the port");
        assert_eq!(why("http://:8081"), "no host");
        assert_eq!(
            why("http://h:99999"),
            "the port \"99999\" is not a number from 1 to 65535"
        );
        assert_eq!(
            why("http://h:0"),
            "the port \"0\" is not a number from 1 to 65535"
        );
        assert_eq!(parse_rest_url("http://h:8081/").as_deref(), Ok("h:8081"));
        // One spelling per address: two spellings of one JobManager are
        // one (the same job configured twice is found).
        assert_eq!(
            parse_rest_url("http://JM-0.Flink:08081/").as_deref(),
            Ok("jm-0.flink:8081")
        );
        assert_eq!(
            why("http://h:+8081"),
            "the port \"+8081\" is not a number from 1 to 65535"
        );
        // Hosts that could never be reached: said at validation, not at
        // every evaluation.
        for bad in [
            "http://a b:8081",
            "http://h#x:8081",
            "http://u@h:8081",
            "http://h?q:8081",
        ] {
            assert!(
                why(bad).contains("is not a DNS name or an IP address"),
                "{bad}: {}",
                why(bad)
            );
        }
        assert!(why("http://[::1:8081").contains("not an IPv6 address in brackets"));
        assert!(why("http://[zz]:8081").contains("not an IPv6 address in brackets"));
        for bad in [
            "http://300.1.1.1:8081",
            "http://10.0.0:8081",
            "http://1.2.3.4.5:8081",
        ] {
            assert!(
                why(bad).contains("is not an IPv4 address"),
                "{bad}: {}",
                why(bad)
            );
        }
        for good in [
            "http://jm-0.flink.svc.cluster.local:8081",
            "http://10.0.0.7:8081",
            "http://[::1]:8081",
            "http://flink_jobmanager:8081",
        ] {
            assert!(parse_rest_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn flink_errors_lose_their_stack_trace_and_class() {
        let error = "org.apache.flink.runtime.rest.handler.RestHandlerException: The requested \
                     lower bound [3] is higher than the upper bound [1].\nThe request is \
                     incomplete.\n\tat org.apache.flink.X.y(X.java:1)\n";
        assert_eq!(
            flink_message(error),
            "The requested lower bound [3] is higher than the upper bound [1]. The request is incomplete."
        );
        assert_eq!(flink_message("Job not found."), "Job not found.");
    }

    /// A loopback port nothing listens on.
    fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        drop(listener);
        url
    }

    /// Reads a request's head from `stream`: whether it came whole (not
    /// cut by the connection's end).
    async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    /// A JobManager that dies with each request: it reads the request,
    /// then closes the connection without an answer. Its URL and how
    /// many requests it read.
    async fn answerless() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let read = Arc::new(AtomicUsize::new(0));
        let count = read.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                read_head(&mut stream).await;
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        (url, read)
    }

    /// An answer that fills the most the agent reads ([`MAX_ANSWER`]: a
    /// runaway body, a stream that never ends) is a failure that says so,
    /// not a document parsed cut short; one just under it is read.
    #[tokio::test]
    async fn an_answer_as_large_as_the_agent_reads_is_refused() {
        async fn serving(body_len: usize) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("an address"));
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.expect("the call");
                if !read_head(&mut stream).await {
                    return;
                }
                // A JSON string of `body_len` bytes, quotes included.
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n\"");
                let mut answer = head.into_bytes();
                answer.resize(answer.len() + body_len - 2, b'a');
                answer.push(b'"');
                let _ = stream.write_all(&answer).await;
            });
            url
        }
        let head_len = "HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n".len();
        let limit = usize::try_from(MAX_ANSWER).expect("fits");
        let big = FlinkRest::new(RestUrl::from(vec![serving(limit).await])).expect("valid");
        match big.get("/jobs/overview").await {
            Err(TargetError::Transient(message)) => {
                assert!(
                    message.ends_with(": the answer is 8 MiB or more, more than the agent reads"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let under = limit - head_len - 1;
        let fits = FlinkRest::new(RestUrl::from(vec![serving(under).await])).expect("valid");
        let read = fits.get("/jobs/overview").await.expect("read whole");
        assert_eq!(read.as_str().map(str::len), Some(under - 2));
    }

    /// The job stub of the failover tests: `/jobs/overview` lists one
    /// job, a PUT is taken, anything else is 503.
    async fn jobmanager() -> stub::Stub {
        stub::Stub::start(|line| {
            if line.starts_with("GET /jobs/overview ") {
                (200, serde_json::json!({"jobs": [{"jid": "j1", "name": "orders", "state": "RUNNING", "start-time": 1}]}))
            } else if line.starts_with("PUT ") {
                (200, serde_json::json!({}))
            } else {
                (503, serde_json::json!({"errors": ["Service temporarily unavailable."]}))
            }
        })
        .await
    }

    /// With several JobManagers, a call that cannot reach the one in use
    /// goes to the next, which is then kept: the first address is not
    /// tried again while the second answers.
    #[tokio::test]
    async fn an_unreachable_jobmanager_is_passed_over_for_the_next() {
        let down = closed_port_url();
        let up = jobmanager().await;
        let rest =
            FlinkRest::new(RestUrl::from(vec![down.clone(), up.url.clone()])).expect("valid URLs");
        assert_eq!(rest.url(), down);
        let job = FlinkJob::Name("orders".into());
        assert_eq!(rest.job_id(&job).await.expect("found at the second"), "j1");
        assert_eq!(rest.url(), up.url, "the one that answered is kept");
        assert_eq!(jobmanager_moves(&down, &up.url), 1, "the move counted");
        // A PUT reaches it too, and a clone shares the choice.
        let clone = rest.clone();
        // (No body: the stub reads the head only, and closing on an unread
        // body would reset the connection.)
        clone
            .call("PUT", "/jobs/j1/resource-requirements", None)
            .await
            .expect("taken");
        assert_eq!(
            up.requests(),
            [
                "GET /jobs/overview HTTP/1.1",
                "PUT /jobs/j1/resource-requirements HTTP/1.1"
            ]
        );
        // With every one down, the call fails as one address does.
        let all_down = FlinkRest::new(RestUrl::from(vec![closed_port_url(), closed_port_url()]))
            .expect("valid URLs");
        match all_down.get("/jobs/overview").await {
            Err(TargetError::Transient(message)) => {
                assert!(message.starts_with("GET http://127.0.0.1:"), "{message}")
            }
            other => panic!("expected Transient, got {other:?}"),
        }
    }

    /// A PUT whose answer is lost (the JobManager took it, or not, and
    /// died) is never sent to the next JobManager: the caller reads the
    /// job back to learn whether it took. A GET whose answer is lost is
    /// asked of the next, as it changes nothing.
    #[tokio::test]
    async fn a_put_whose_answer_is_lost_is_not_sent_again_elsewhere() {
        let (dying, read) = answerless().await;
        let up = jobmanager().await;
        let rest =
            FlinkRest::new(RestUrl::from(vec![dying.clone(), up.url.clone()])).expect("valid URLs");
        let put = rest
            .call(
                "PUT",
                "/jobs/j1/resource-requirements",
                Some(&serde_json::json!({})),
            )
            .await;
        match put {
            Err(TargetError::Transient(message)) => {
                assert!(message.contains("no complete HTTP answer"), "{message}")
            }
            other => panic!("expected Transient, got {other:?}"),
        }
        assert_eq!(read.load(Ordering::SeqCst), 1);
        assert!(up.requests().is_empty(), "{:?}", up.requests());
        assert_eq!(rest.url(), dying, "a lost PUT moves nothing");
        assert_eq!(jobmanager_moves(&dying, &up.url), 0);
        rest.get("/jobs/overview").await.expect("asked of the next");
        assert_eq!(read.load(Ordering::SeqCst), 2);
        assert_eq!(up.requests(), ["GET /jobs/overview HTTP/1.1"]);
        assert_eq!(rest.url(), up.url);
        assert_eq!(jobmanager_moves(&dying, &up.url), 1);
    }

    /// An answer, even an error, is final: a JobManager that answers 503
    /// or 404 is not passed over for the next.
    #[tokio::test]
    async fn an_error_answer_is_not_asked_again_elsewhere() {
        let first = jobmanager().await;
        let second = jobmanager().await;
        let rest = FlinkRest::new(RestUrl::from(vec![first.url.clone(), second.url.clone()]))
            .expect("valid URLs");
        match rest.get("/jobs/j1").await {
            Err(TargetError::Transient(message)) => assert!(message.contains("503"), "{message}"),
            other => panic!("expected Transient, got {other:?}"),
        }
        assert_eq!(first.requests(), ["GET /jobs/j1 HTTP/1.1"]);
        assert!(second.requests().is_empty());
        assert_eq!(rest.url(), first.url);
        assert_eq!(jobmanager_moves(&first.url, &second.url), 0);
    }

    /// An empty list, or an entry that is not `http://host:port`, is refused.
    #[test]
    fn every_listed_url_must_be_valid() {
        assert!(matches!(
            FlinkRest::new(RestUrl::from(Vec::new())),
            Err(TargetError::Invalid(m)) if m.contains("empty list")
        ));
        assert!(matches!(
            FlinkRest::new(RestUrl::from(vec!["http://a:1".to_owned(), "https://b:2".to_owned()])),
            Err(TargetError::Invalid(m)) if m.contains("\"https://b:2\"")
        ));
        assert_eq!(
            RestUrl::from(vec!["http://a:1".to_owned(), "http://b:2".to_owned()]).to_string(),
            "http://a:1 or http://b:2"
        );
    }
}
