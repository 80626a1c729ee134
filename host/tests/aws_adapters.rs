//! The AWS adapters ([`CloudWatchSource`], [`MsfTarget`]) driven through the
//! real SDK clients over HTTP against a small stub server on 127.0.0.1.
//!
//! The stub speaks just enough of each wire protocol for these tests:
//! Smithy RPC v2 CBOR for CloudWatch, AWS JSON 1.1 for kinesisanalyticsv2.
//! It records every request so the tests can check what the agent sent, and
//! answers with whatever the test's handler says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use flinkscale::metrics::alarms::CloudWatchAlarms;
use flinkscale::metrics::cloudwatch::CloudWatchSource;
use flinkscale::metrics::{Datapoint, MetricQuery, MetricSource, MetricsError, Series};
use flinkscale::target::msf::MsfTarget;
use flinkscale::target::{AppState, AppStatus, ScalingTarget, TargetError};
use minicbor::data::{Tag, Type};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------
// The stub server.

/// One request as the stub received it.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What the stub answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Stub {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    /// Serves `handler` on a fresh port until the test's runtime ends.
    async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                tokio::spawn(async move {
                    // A broken connection only fails the request on it, which
                    // the test then sees from the client side.
                    let _ = serve_connection(stream, handler, recorded).await;
                });
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Reads one HTTP/1.1 request, answers it, and closes the connection (the
/// `Connection: close` header keeps the client from pooling it).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: Handler,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let request = Recorded {
        path,
        headers,
        body,
    };
    recorded.lock().expect("lock").push(request.clone());
    let reply = handler(&request);
    let mut head = format!(
        "HTTP/1.1 {} Stub\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&reply.body).await?;
    stream.shutdown().await
}

/// An SDK configuration aimed at `url`, with test credentials and a single
/// attempt per call, built on the agent's own loader.
async fn sdk_config(url: &str) -> SdkConfig {
    flinkscale::aws::config_loader(Some("us-east-1"))
        .endpoint_url(url)
        .test_credentials()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

// ---------------------------------------------------------------------------
// CBOR, enough for CloudWatch.

/// Decodes one CBOR item as JSON; tags are dropped (timestamps become their
/// epoch seconds).
fn cbor_item(d: &mut minicbor::Decoder<'_>) -> Value {
    let ty = d.datatype().expect("CBOR type");
    match ty {
        Type::Map | Type::MapIndef => {
            let len = d.map().expect("map");
            let mut map = serde_json::Map::new();
            let mut n = 0;
            while len.is_none_or(|len| n < len) {
                if len.is_none() && d.datatype().expect("type") == Type::Break {
                    d.skip().expect("break");
                    break;
                }
                let key = d.str().expect("map key").to_owned();
                map.insert(key, cbor_item(d));
                n += 1;
            }
            Value::Object(map)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().expect("array");
            let mut items = Vec::new();
            while len.is_none_or(|len| (items.len() as u64) < len) {
                if len.is_none() && d.datatype().expect("type") == Type::Break {
                    d.skip().expect("break");
                    break;
                }
                items.push(cbor_item(d));
            }
            Value::Array(items)
        }
        Type::String => Value::from(d.str().expect("string")),
        Type::StringIndef => Value::from(
            d.str_iter()
                .expect("string")
                .map(|s| s.expect("chunk"))
                .collect::<String>(),
        ),
        Type::Bool => Value::from(d.bool().expect("bool")),
        Type::Null | Type::Undefined => {
            d.skip().expect("null");
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().expect("uint")),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            Value::from(d.i64().expect("int"))
        }
        Type::F16 | Type::F32 | Type::F64 => Value::from(d.f64().expect("float")),
        Type::Tag => {
            d.tag().expect("tag");
            cbor_item(d)
        }
        other => panic!("unexpected CBOR type {other:?}"),
    }
}

fn decode_cbor(body: &[u8]) -> Value {
    cbor_item(&mut minicbor::Decoder::new(body))
}

/// One `MetricDataResult` to answer.
struct PageResult {
    id: String,
    /// (epoch milliseconds, value)
    points: Vec<(i64, f64)>,
    status: &'static str,
}

/// A GetMetricData answer, as CloudWatch's CBOR protocol spells it.
fn get_metric_data_reply(results: &[PageResult], next_token: Option<&str>) -> Reply {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.map(if next_token.is_some() { 2 } else { 1 })
        .expect("cbor");
    e.str("MetricDataResults").expect("cbor");
    e.array(results.len() as u64).expect("cbor");
    for r in results {
        e.map(4).expect("cbor");
        e.str("Id").expect("cbor").str(&r.id).expect("cbor");
        e.str("Timestamps").expect("cbor");
        e.array(r.points.len() as u64).expect("cbor");
        for (ms, _) in &r.points {
            e.tag(Tag::new(1)).expect("cbor");
            e.f64(*ms as f64 / 1000.0).expect("cbor");
        }
        e.str("Values").expect("cbor");
        e.array(r.points.len() as u64).expect("cbor");
        for (_, value) in &r.points {
            e.f64(*value).expect("cbor");
        }
        e.str("StatusCode")
            .expect("cbor")
            .str(r.status)
            .expect("cbor");
    }
    if let Some(token) = next_token {
        e.str("NextToken").expect("cbor").str(token).expect("cbor");
    }
    cbor_reply(200, e.into_writer(), None)
}

/// A CloudWatch error: `__type` in the body and, as CloudWatch is
/// query-compatible, the query error code in a header.
fn cloudwatch_error(status: u16, code: &str, message: &str) -> Reply {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.map(2).expect("cbor");
    e.str("__type")
        .expect("cbor")
        .str(&format!("com.amazonaws.cloudwatch#{code}"))
        .expect("cbor");
    e.str("message").expect("cbor").str(message).expect("cbor");
    cbor_reply(status, e.into_writer(), Some(format!("{code};Sender")))
}

fn cbor_reply(status: u16, body: Vec<u8>, query_error: Option<String>) -> Reply {
    let mut headers = vec![
        ("smithy-protocol", "rpc-v2-cbor".to_owned()),
        ("content-type", "application/cbor".to_owned()),
    ];
    if let Some(code) = query_error {
        headers.push(("x-amzn-query-error", code));
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// The `MetricDataQueries` of a recorded GetMetricData request.
/// A 10 s query batched with 1080 s ones over 3 hours: the call's start,
/// aligned to 1080 s, would be past the 3 hours CloudWatch keeps 10 s
/// data for (no datapoint at all), so the 10 s query is asked in a call of
/// its own from within them; every answer still comes back in its
/// query's place.
#[tokio::test]
async fn a_sub_minute_query_gets_a_call_within_three_hours_and_its_place() {
    let stub = Stub::start(numbered_answers).await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);
    let period = |mut q: MetricQuery, secs| {
        q.period_secs = secs;
        q
    };
    let queries = vec![
        period(metric("cpu", "m0", "Maximum"), 1080),
        period(metric("lag", "m1", "Maximum"), 10),
        period(metric("in", "m2", "Sum"), 1080),
    ];
    // CloudWatch counts the 3 hours back from its now: the span ends now.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("a clock after 1970");
    let series = source
        .fetch(&queries, end - 3 * 60 * MINUTE, end)
        .await
        .expect("fetch");

    let requests = stub.requests();
    let calls: Vec<(Vec<String>, f64)> = requests
        .iter()
        .map(|r| {
            let names = data_queries(r)
                .iter()
                .map(|q| {
                    q["MetricStat"]["Metric"]["MetricName"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            let start = decode_cbor(&r.body)["StartTime"].as_f64().expect("a start");
            (names, start * 1000.0)
        })
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    // Within the 3 hours by a minute, for the call to reach CloudWatch.
    let oldest = (end - 3 * 60 * MINUTE + MINUTE) as f64;
    let (short, short_start) = &calls[0];
    assert_eq!(short, &["m1"], "{calls:?}");
    assert!(*short_start >= oldest, "{calls:?}");
    let (long, long_start) = &calls[1];
    assert_eq!(long, &["m0", "m2"], "{calls:?}");
    assert!(
        *long_start < oldest && *long_start % 1_080_000.0 == 0.0,
        "{calls:?}"
    );
    assert_numbered(&series, &queries);
}

/// Answers each query of a GetMetricData call with one datapoint at T0
/// holding the number in its metric name (`m7`: 7), so that a mix-up
/// between queries or calls shows in the values.
fn numbered_answers(request: &Recorded) -> Reply {
    let results: Vec<PageResult> = data_queries(request)
        .iter()
        .map(|q| PageResult {
            id: q["Id"].as_str().unwrap_or_default().to_owned(),
            points: vec![(
                T0,
                q["MetricStat"]["Metric"]["MetricName"]
                    .as_str()
                    .and_then(|n| n.trim_start_matches('m').parse().ok())
                    .unwrap_or(f64::NAN),
            )],
            status: "Complete",
        })
        .collect();
    get_metric_data_reply(&results, None)
}

/// Each of `series` is the answer [`numbered_answers`] gives the query
/// in its place: that query, and its number.
fn assert_numbered(series: &[Series], queries: &[MetricQuery]) {
    assert_eq!(series.len(), queries.len());
    for (i, s) in series.iter().enumerate() {
        assert_eq!(s.query, queries[i]);
        assert_eq!(
            s.points,
            [Datapoint {
                timestamp_ms: T0,
                value: i as f64
            }]
        );
    }
}

fn data_queries(request: &Recorded) -> Vec<Value> {
    decode_cbor(&request.body)["MetricDataQueries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn metric(id: &str, name: &str, statistic: &str) -> MetricQuery {
    MetricQuery {
        id: id.into(),
        namespace: "AWS/KinesisAnalytics".into(),
        metric_name: name.into(),
        dimensions: [("Application".to_owned(), "orders".to_owned())].into(),
        statistic: statistic.into(),
        period_secs: 60,
        expression: None,
    }
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

// ---------------------------------------------------------------------------
// CloudWatch.

#[tokio::test]
async fn get_metric_data_pages_are_concatenated_in_time_order() {
    let stub = Stub::start(|request| {
        let body = decode_cbor(&request.body);
        match body.get("NextToken").and_then(Value::as_str) {
            None => get_metric_data_reply(
                &[PageResult {
                    id: "q0".into(),
                    points: vec![(T0, 10.0), (T0 + MINUTE, 11.0)],
                    status: "PartialData",
                }],
                Some("page-2"),
            ),
            Some("page-2") => get_metric_data_reply(
                &[
                    PageResult {
                        id: "q0".into(),
                        // Overlaps the first page and carries a NaN.
                        points: vec![
                            (T0 + 3 * MINUTE, 13.0),
                            (T0 + MINUTE, 11.0),
                            (T0 + 2 * MINUTE, f64::NAN),
                        ],
                        status: "Complete",
                    },
                    PageResult {
                        id: "q1".into(),
                        points: vec![(T0, 99.5)],
                        status: "Complete",
                    },
                ],
                None,
            ),
            Some(other) => cloudwatch_error(400, "InvalidNextToken", &format!("bad token {other}")),
        }
    })
    .await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);
    let queries = [
        metric("cpu", "containerCPUUtilization", "Maximum"),
        metric("lag", "millisBehindLatest", "p99"),
    ];

    let series = source
        .fetch(&queries, T0, T0 + 5 * MINUTE)
        .await
        .expect("fetch");

    let points = |values: &[(i64, f64)]| {
        values
            .iter()
            .map(|&(timestamp_ms, value)| Datapoint {
                timestamp_ms,
                value,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].query, queries[0]);
    assert_eq!(
        series[0].points,
        points(&[(T0, 10.0), (T0 + MINUTE, 11.0), (T0 + 3 * MINUTE, 13.0)])
    );
    assert_eq!(series[1].query, queries[1]);
    assert_eq!(series[1].points, points(&[(T0, 99.5)]));

    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(
        first.path,
        "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    );
    assert_eq!(first.header("smithy-protocol"), Some("rpc-v2-cbor"));
    let body = decode_cbor(&first.body);
    assert_eq!(body["ScanBy"], "TimestampDescending");
    assert_eq!(body["StartTime"].as_f64(), Some(T0 as f64 / 1000.0));
    assert_eq!(
        body["EndTime"].as_f64(),
        Some((T0 + 5 * MINUTE) as f64 / 1000.0)
    );
    assert_eq!(
        body["MetricDataQueries"][1],
        json!({
            "Id": "q1",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/KinesisAnalytics",
                    "MetricName": "millisBehindLatest",
                    "Dimensions": [{"Name": "Application", "Value": "orders"}],
                },
                "Period": 60,
                "Stat": "p99",
            },
            "ReturnData": true,
        })
    );
    assert_eq!(decode_cbor(&requests[1].body)["NextToken"], "page-2");
}

/// A service whose pages never end (the same NextToken again, or a new one
/// on every page) fails the fetch after a bounded number of calls, naming
/// why, instead of paging and collecting for ever.
#[tokio::test]
async fn get_metric_data_pages_that_never_end_fail_the_fetch() {
    let page = |token: String| {
        get_metric_data_reply(
            &[PageResult {
                id: "q0".into(),
                points: vec![(T0, 10.0)],
                status: "PartialData",
            }],
            Some(&token),
        )
    };
    let queries = [metric("cpu", "containerCPUUtilization", "Maximum")];

    let again = Stub::start(move |_| page("again".to_owned())).await;
    let source = CloudWatchSource::new(&sdk_config(&again.url).await);
    let error = source
        .fetch(&queries, T0, T0 + 5 * MINUTE)
        .await
        .expect_err("no end");
    assert!(
        matches!(&error, MetricsError::Source(m) if m.contains("\"again\" a second time")),
        "{error:?}"
    );
    assert_eq!(again.requests().len(), 2);

    let counter = Arc::new(AtomicUsize::new(0));
    let fresh =
        Stub::start(move |_| page(format!("page-{}", counter.fetch_add(1, Ordering::Relaxed))))
            .await;
    let source = CloudWatchSource::new(&sdk_config(&fresh.url).await);
    let error = source
        .fetch(&queries, T0, T0 + 5 * MINUTE)
        .await
        .expect_err("no end");
    // Five periods of one query: at most five datapoints, so a sixth page
    // still asking for more is refused.
    assert!(
        matches!(&error, MetricsError::Source(m) if m.contains("6 pages")),
        "{error:?}"
    );
    assert_eq!(fresh.requests().len(), 6);
}

/// DescribeAlarms pages are the service's to give as well: the same
/// NextToken again fails the read, naming why, instead of paging for ever.
#[tokio::test]
async fn describe_alarms_pages_that_never_end_fail_the_read() {
    let stub = Stub::start(|_| {
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(2).expect("cbor");
        e.str("MetricAlarms").expect("cbor").array(0).expect("cbor");
        e.str("NextToken")
            .expect("cbor")
            .str("again")
            .expect("cbor");
        cbor_reply(200, e.into_writer(), None)
    })
    .await;
    let alarms = CloudWatchAlarms::new(&sdk_config(&stub.url).await);
    let error = alarms.describe_all().await.expect_err("no end");
    assert!(
        matches!(&error, MetricsError::Source(m) if m.contains("\"again\" a second time")),
        "{error:?}"
    );
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn six_hundred_queries_take_two_calls_and_map_back_by_position() {
    let stub = Stub::start(numbered_answers).await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);
    // The same configured id for every query, as when many applications
    // each name their metric "cpu".
    let queries: Vec<_> = (0..600)
        .map(|i| metric("cpu", &format!("m{i}"), "Average"))
        .collect();

    let series = source
        .fetch(&queries, T0, T0 + MINUTE)
        .await
        .expect("fetch");

    let requests = stub.requests();
    let sizes: Vec<_> = requests.iter().map(|r| data_queries(r).len()).collect();
    assert_eq!(sizes, [500, 100]);
    assert_numbered(&series, &queries);
}

#[tokio::test]
async fn throttling_maps_to_throttled() {
    let stub = Stub::start(|_| cloudwatch_error(400, "Throttling", "Rate exceeded")).await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);

    let error = source
        .fetch(&[metric("cpu", "cpu", "Maximum")], T0, T0 + MINUTE)
        .await
        .expect_err("throttled");

    assert!(
        matches!(&error, MetricsError::Throttled(m) if m.contains("Rate exceeded")),
        "{error:?}"
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn other_service_errors_map_to_source_with_code() {
    let stub = Stub::start(|_| cloudwatch_error(500, "InternalServiceError", "boom")).await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);

    let error = source
        .fetch(&[metric("cpu", "cpu", "Maximum")], T0, T0 + MINUTE)
        .await
        .expect_err("failed");

    assert!(
        matches!(&error, MetricsError::Source(m) if m.contains("InternalServiceError") && m.contains("boom")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_forbidden_result_is_a_permission_error() {
    let stub = Stub::start(|_| {
        get_metric_data_reply(
            &[PageResult {
                id: "q0".into(),
                points: vec![],
                status: "Forbidden",
            }],
            None,
        )
    })
    .await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);

    let error = source
        .fetch(&[metric("cpu", "cpu", "Maximum")], T0, T0 + MINUTE)
        .await
        .expect_err("forbidden");

    assert!(
        matches!(&error, MetricsError::Permission(m) if m.contains("Forbidden")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_internal_error_of_one_query_is_that_querys_failure() {
    // GetMetricData answers the call, but fails one of its queries.
    let stub = Stub::start(|_| {
        get_metric_data_reply(
            &[
                PageResult {
                    id: "q0".into(),
                    points: vec![(T0, 1.0)],
                    status: "Complete",
                },
                PageResult {
                    id: "q1".into(),
                    points: vec![],
                    status: "InternalError",
                },
            ],
            None,
        )
    })
    .await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);

    let error = source
        .fetch(
            &[
                metric("cpu", "cpu", "Maximum"),
                metric("lag", "lag", "Maximum"),
            ],
            T0,
            T0 + MINUTE,
        )
        .await
        .expect_err("a query failed");

    // Not `Source`, which would fail every application of a merged batch:
    // `Query` has the batching fetch each caller apart.
    assert!(
        matches!(&error, MetricsError::Query(m) if m.contains("InternalError") && m.contains("q1")),
        "{error:?}"
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn an_internal_error_of_every_query_is_the_services_failure() {
    // Nothing answered: an outage, not one caller's query, so the batcher
    // does not fetch every caller apart for it.
    let stub = Stub::start(|_| {
        get_metric_data_reply(
            &["q0", "q1"].map(|id| PageResult {
                id: id.into(),
                points: vec![],
                status: "InternalError",
            }),
            None,
        )
    })
    .await;
    let source = CloudWatchSource::new(&sdk_config(&stub.url).await);

    let error = source
        .fetch(
            &[
                metric("cpu", "cpu", "Maximum"),
                metric("lag", "lag", "Maximum"),
            ],
            T0,
            T0 + MINUTE,
        )
        .await
        .expect_err("every query failed");

    assert!(
        matches!(&error, MetricsError::Source(m) if m.contains("InternalError")),
        "{error:?}"
    );
}

/// The metric name of a GetMetricData request's first query.
fn first_metric_name(request: &Recorded) -> String {
    data_queries(request)[0]["MetricStat"]["Metric"]["MetricName"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A CloudWatch whose answer to a call fails its one query
/// (`InternalError`, no datapoint) where `fails` says so of the call's
/// metric name, and gives it one datapoint otherwise.
async fn failing_calls(fails: impl Fn(&str) -> bool + Send + Sync + 'static) -> Stub {
    Stub::start(move |request| {
        let fails = fails(&first_metric_name(request));
        get_metric_data_reply(
            &[PageResult {
                id: "q0".into(),
                points: if fails { vec![] } else { vec![(T0, 1.0)] },
                status: if fails { "InternalError" } else { "Complete" },
            }],
            None,
        )
    })
    .await
}

/// Fails before stop 57: a fetch made in several calls (periods with no
/// common multiple within a day: 3600 s and 2820 s) whose one call had
/// every query failed was the service's failure (`Source`) although the
/// other call was answered, so a merged batch failed every application in
/// it for one application's query. Now that is the query's failure, in
/// either order of the calls, and only every call failing is the
/// service's.
#[tokio::test]
async fn a_call_whose_queries_all_failed_beside_an_answered_one_is_a_querys_failure() {
    let period = |mut q: MetricQuery, secs| {
        q.period_secs = secs;
        q
    };
    let hourly = period(metric("cpu", "hourly", "Maximum"), 3600);
    let odd = period(metric("lag", "odd", "Maximum"), 2820);
    for (failing, queries) in [
        ("odd", vec![hourly.clone(), odd.clone()]),
        ("hourly", vec![hourly.clone(), odd.clone()]),
        ("both", vec![hourly.clone(), odd.clone()]),
    ] {
        let stub = failing_calls(move |name| failing == "both" || name == failing).await;
        let source = CloudWatchSource::new(&sdk_config(&stub.url).await);
        let error = source
            .fetch(&queries, T0, T0 + 60 * MINUTE)
            .await
            .expect_err("a call failed");
        assert_eq!(stub.requests().len(), 2, "{failing}: one call per period");
        if failing == "both" {
            assert!(
                matches!(&error, MetricsError::Source(m) if m.contains("InternalError")),
                "{failing}: {error:?}"
            );
        } else {
            assert!(
                matches!(&error, MetricsError::Query(m) if m.contains("InternalError")),
                "{failing}: {error:?}"
            );
        }
    }
}

/// Fails before stop 58: once a fetch knew that one call's queries all
/// failed beside an answered call (a query's failure, which the batcher
/// answers by fetching each caller apart), it still made its remaining
/// calls, each paid for and then fetched again apart. Three calls (3600 s,
/// 2820 s and 2940 s periods: no two with a common multiple within a day),
/// made in that order: the fetch stops at the first call that settles it.
#[tokio::test]
async fn a_fetch_stops_once_a_querys_failure_is_known() {
    let period = |mut q: MetricQuery, secs| {
        q.period_secs = secs;
        q
    };
    let queries = vec![
        period(metric("cpu", "hourly", "Maximum"), 3600),
        period(metric("lag", "odd", "Maximum"), 2820),
        period(metric("rate", "other", "Maximum"), 2940),
    ];
    for (failing, made, query_failure) in [
        // Unanswered, then answered: settled at the second call.
        (&["hourly"][..], &["hourly", "odd"][..], true),
        // Answered, then unanswered: settled at the second call.
        (&["odd"][..], &["hourly", "odd"][..], true),
        (&["other"][..], &["hourly", "odd", "other"][..], true),
        // Every call unanswered: each is made, to tell.
        (
            &["hourly", "odd", "other"][..],
            &["hourly", "odd", "other"][..],
            false,
        ),
    ] {
        let stub = failing_calls(move |name| failing.contains(&name)).await;
        let source = CloudWatchSource::new(&sdk_config(&stub.url).await);
        let error = source
            .fetch(&queries, T0, T0 + 60 * MINUTE)
            .await
            .expect_err("a call failed");
        let names: Vec<String> = stub.requests().iter().map(first_metric_name).collect();
        assert_eq!(names, made, "{failing:?}");
        if query_failure {
            assert!(
                matches!(&error, MetricsError::Query(m) if m.contains("InternalError")),
                "{failing:?}: {error:?}"
            );
        } else {
            assert!(
                matches!(&error, MetricsError::Source(m) if m.contains("InternalError")),
                "{failing:?}: {error:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// kinesisanalyticsv2.

fn json_reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/x-amz-json-1.1".to_owned())],
        body: body.to_string().into_bytes(),
    }
}

fn application_detail(status: &str, version: i64) -> Value {
    json!({
        "ApplicationARN": "arn:aws:kinesisanalytics:us-east-1:123456789012:application/orders",
        "ApplicationName": "orders",
        "RuntimeEnvironment": "FLINK-1_20",
        "ApplicationStatus": status,
        "ApplicationVersionId": version,
        "ApplicationConfigurationDescription": {
            "FlinkApplicationConfigurationDescription": {
                "ParallelismConfigurationDescription": {
                    "ConfigurationType": "CUSTOM",
                    "Parallelism": 4,
                    "ParallelismPerKPU": 2,
                    "CurrentParallelism": 6,
                    "AutoScalingEnabled": true,
                }
            }
        }
    })
}

fn running_state() -> AppState {
    AppState {
        status: AppStatus::Running,
        parallelism: 6,
        parallelism_per_kpu: 2,
        version_id: 17,
        autoscaling_enabled: true,
        last_update_ms: None,
        identity: None,
        asked_kpu: None,
        rolled_back_from: None,
    }
}

fn msf_stub_handler(request: &Recorded) -> Reply {
    match request.header("x-amz-target") {
        Some("KinesisAnalytics_20180523.DescribeApplication") => json_reply(
            200,
            json!({"ApplicationDetail": application_detail("RUNNING", 17)}),
        ),
        Some("KinesisAnalytics_20180523.UpdateApplication") => json_reply(
            200,
            json!({"ApplicationDetail": application_detail("UPDATING", 18), "OperationId": "op-1"}),
        ),
        _ => json_reply(400, json!({"__type": "UnknownOperationException"})),
    }
}

#[tokio::test]
async fn describe_reads_status_parallelism_and_version() {
    let stub = Stub::start(msf_stub_handler).await;
    let target = MsfTarget::new(&sdk_config(&stub.url).await);

    let state = target.describe("orders").await.expect("describe");

    assert_eq!(state, running_state());
    assert_eq!(state.kpu(), 3);
    let requests = stub.requests();
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    let body: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(body["ApplicationName"], "orders");
}

#[tokio::test]
async fn describe_reads_the_last_updates_time() {
    // awsJson 1.1 sends timestamps as epoch seconds, fractions allowed.
    let stub = Stub::start(|request: &Recorded| match request.header("x-amz-target") {
        Some("KinesisAnalytics_20180523.DescribeApplication") => {
            let mut detail = application_detail("RUNNING", 17);
            detail["LastUpdateTimestamp"] = json!(1_700_000_000.25);
            json_reply(200, json!({ "ApplicationDetail": detail }))
        }
        _ => json_reply(400, json!({"__type": "UnknownOperationException"})),
    })
    .await;
    let target = MsfTarget::new(&sdk_config(&stub.url).await);

    let state = target.describe("orders").await.expect("describe");

    assert_eq!(state.last_update_ms, Some(1_700_000_000_250));
    assert_eq!(
        state,
        AppState {
            last_update_ms: Some(1_700_000_000_250),
            ..running_state()
        }
    );
}

/// An application deleted and created again under its name keeps its
/// ARN, and its version id starts again at 1: its creation time is what
/// tells it from the old one.
#[tokio::test]
async fn describe_reads_the_creation_time_as_the_application_s_identity() {
    let stub = Stub::start(|request: &Recorded| match request.header("x-amz-target") {
        Some("KinesisAnalytics_20180523.DescribeApplication") => {
            let mut detail = application_detail("RUNNING", 1);
            detail["CreateTimestamp"] = json!(1_700_000_500.5);
            json_reply(200, json!({ "ApplicationDetail": detail }))
        }
        _ => json_reply(400, json!({"__type": "UnknownOperationException"})),
    })
    .await;
    let target = MsfTarget::new(&sdk_config(&stub.url).await);

    let state = target.describe("orders").await.expect("describe");

    assert_eq!(state.identity.as_deref(), Some("1700000500500"));
}

#[tokio::test]
async fn rescale_sends_the_reference_update_and_returns_the_new_version() {
    let stub = Stub::start(msf_stub_handler).await;
    let target = MsfTarget::new(&sdk_config(&stub.url).await);

    let version = target
        .rescale("orders", 5, &running_state())
        .await
        .expect("rescale");

    assert_eq!(version, 18);
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("x-amz-target"),
        Some("KinesisAnalytics_20180523.UpdateApplication")
    );
    let body: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(
        body,
        json!({
            "ApplicationName": "orders",
            "CurrentApplicationVersionId": 17,
            "ApplicationConfigurationUpdate": {
                "FlinkApplicationConfigurationUpdate": {
                    "ParallelismConfigurationUpdate": {
                        "ConfigurationTypeUpdate": "CUSTOM",
                        "ParallelismUpdate": 10,
                        "ParallelismPerKPUUpdate": 2,
                        "AutoScalingEnabledUpdate": false,
                    }
                }
            }
        })
    );
}

/// Builds a [`TargetError`] of one class.
type Class = fn(String) -> TargetError;

#[tokio::test]
async fn update_errors_map_to_their_classes() {
    let cases: [(&str, u16, Class); 11] = [
        ("ThrottlingException", 400, TargetError::Throttled),
        ("TooManyRequestsException", 400, TargetError::Throttled),
        (
            "ConcurrentModificationException",
            400,
            TargetError::ConcurrentModification,
        ),
        ("ResourceInUseException", 400, TargetError::ResourceInUse),
        ("LimitExceededException", 400, TargetError::LimitExceeded),
        ("InvalidArgumentException", 400, TargetError::Invalid),
        (
            "InvalidApplicationConfigurationException",
            400,
            TargetError::Invalid,
        ),
        ("InvalidRequestException", 400, TargetError::Invalid),
        ("UnsupportedOperationException", 400, TargetError::Invalid),
        ("ResourceNotFoundException", 400, TargetError::NotFound),
        ("InternalFailure", 500, TargetError::Transient),
    ];
    for (code, status, class) in cases {
        let stub = Stub::start(move |_| {
            json_reply(
                status,
                json!({"__type": code, "message": format!("stub says {code}")}),
            )
        })
        .await;
        let target = MsfTarget::new(&sdk_config(&stub.url).await);

        let error = target
            .rescale("orders", 2, &running_state())
            .await
            .expect_err(code);

        assert_eq!(
            std::mem::discriminant(&error),
            std::mem::discriminant(&class(String::new())),
            "{code} gave {error:?}"
        );
        assert!(error.to_string().contains(code), "{error}");
    }
}

/// A `LimitExceededException` that speaks of a request rate (the code
/// Kinesis Data Streams throttles with) is throttling, not a KPU limit: a
/// ceiling recorded from it would hold the application below the size
/// asked for an hour. One that does not speak of a rate stays a limit.
#[tokio::test]
async fn a_limit_exceeded_about_a_rate_is_throttling() {
    for (message, throttled) in [
        ("Rate exceeded for application orders", true),
        ("Request rate limit exceeded", true),
        ("Too Many Requests", true),
        (
            "Number of KPUs exceeds the limit of 64 for the account",
            false,
        ),
    ] {
        let stub = Stub::start(move |_| {
            json_reply(
                400,
                json!({"__type": "LimitExceededException", "message": message}),
            )
        })
        .await;
        let target = MsfTarget::new(&sdk_config(&stub.url).await);
        let error = target
            .rescale("orders", 2, &running_state())
            .await
            .expect_err(message);
        assert_eq!(
            matches!(error, TargetError::Throttled(_)),
            throttled,
            "{message}: {error:?}"
        );
        if !throttled {
            assert!(matches!(error, TargetError::LimitExceeded(_)), "{error:?}");
        }
        assert!(error.to_string().contains(message), "{error}");
    }
}

#[tokio::test]
async fn describe_of_a_missing_application_is_not_found() {
    let stub = Stub::start(|_| {
        json_reply(
            400,
            json!({"__type": "ResourceNotFoundException", "message": "no such app"}),
        )
    })
    .await;
    let target = MsfTarget::new(&sdk_config(&stub.url).await);

    let error = target.describe("ghost").await.expect_err("missing");

    assert!(matches!(error, TargetError::NotFound(_)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // Bind and drop to get a port that nobody listens on.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").port()
    };
    let target = MsfTarget::new(&sdk_config(&format!("http://127.0.0.1:{port}")).await);

    let error = target.describe("orders").await.expect_err("unreachable");

    assert!(matches!(error, TargetError::Transient(_)), "{error:?}");
}

// ---------------------------------------------------------------------------
// The standard endpoint variables, through `flinkscale::aws::sdk_config`.

/// Set in the child process that [`endpoint_variables_reach_every_client`]
/// starts; the child test does nothing without it.
const CHILD_MARKER: &str = "FLINKSCALE_AWS_ADAPTERS_CHILD";

#[tokio::test]
async fn endpoint_variables_reach_every_client() {
    let calls = Arc::new(AtomicUsize::new(0));
    let msf = Stub::start(msf_stub_handler).await;
    let cloudwatch = Stub::start({
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            get_metric_data_reply(&[], None)
        }
    })
    .await;
    // Environment variables are process-wide, so the clients run in a child
    // process (this test binary, running only the child test).
    let exe = std::env::current_exe().expect("test binary");
    let (msf_url, cloudwatch_url) = (msf.url.clone(), cloudwatch.url.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--exact", "child_clients_follow_the_environment"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, "1")
            // The generic variable for every service, the specific one wins.
            .env("AWS_ENDPOINT_URL", &msf_url)
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &cloudwatch_url)
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-west-2")
            .env("AWS_CONFIG_FILE", "/nonexistent/flinkscale/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/flinkscale/credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL_KINESIS_ANALYTICS_V2")
            .output()
            .expect("child runs")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "child test did not run"
    );

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let msf_requests = msf.requests();
    assert_eq!(msf_requests.len(), 1);
    // The configured region overrides AWS_REGION in the signature scope.
    let authorization = msf_requests[0].header("authorization").unwrap_or_default();
    assert!(
        authorization.contains("/eu-west-1/kinesisanalytics/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("Credential=AKIDTEST/"),
        "{authorization}"
    );
}

/// The child half of [`endpoint_variables_reach_every_client`].
#[tokio::test]
#[ignore = "run by endpoint_variables_reach_every_client in a child process"]
async fn child_clients_follow_the_environment() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let config = flinkscale::aws::sdk_config(Some("eu-west-1")).await;
    let state = MsfTarget::new(&config)
        .describe("orders")
        .await
        .expect("describe through AWS_ENDPOINT_URL");
    assert_eq!(state.version_id, 17);
    CloudWatchSource::new(&config)
        .fetch(&[metric("cpu", "cpu", "Maximum")], T0, T0 + MINUTE)
        .await
        .expect("fetch through AWS_ENDPOINT_URL_CLOUDWATCH");
}
