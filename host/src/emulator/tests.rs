//! Unit tests of the emulator's parts, on explicit clocks: the codecs, the
//! time mapping and aggregation, GetMetricData pages, alarms, MSF updates,
//! faults and routing.

use std::collections::BTreeMap;

use hyper::Method;
use hyper::header::HeaderMap;
use minicbor::Encoder;
use minicbor::data::{IanaTag, Tag};

use super::cloudwatch::{self, MetricStat};
use super::faults::{Answer, FaultSpec, Faults, Injected};
use super::server::{Logged, Route, route, run_call};
use super::value::{AwsError, Value};
use super::{Clock, Core, Protocol, Service, cbor, json};
use crate::metrics::MetricQuery;
use crate::sim::{Scenario, ScenarioApp, Statistic, Trace};

/// The request of a call that names no application.
const NO_INPUT: Value = Value::Map(Vec::new());

/// A whole minute, so 60-second periods start at the model's t = 0.
const T0: i64 = 1_699_999_980_000;

fn app(name: &str, rate: f64) -> ScenarioApp {
    let mut app = ScenarioApp::new(name, Trace::constant(rate));
    app.params.noise_percent = 0.0;
    app
}

fn scenario(apps: Vec<ScenarioApp>) -> Scenario {
    let mut scenario = Scenario::single("test", Trace::constant(0.0), 7200);
    scenario.applications = apps;
    scenario
}

fn core(apps: Vec<ScenarioApp>, speed: f64, page_size: usize) -> Core {
    Core::new(
        &scenario(apps),
        Clock {
            origin_ms: T0,
            speed,
        },
        page_size,
    )
}

/// Runs one operation at wall time `now`, as the server does.
fn call(
    core: &mut Core,
    service: Service,
    op: &str,
    input: Value,
    now: i64,
) -> Result<Value, AwsError> {
    core.sync(now);
    core.call(service, op, &input, now)
}

fn app_dims(name: &str) -> Value {
    Value::List(vec![Value::map([
        ("Name", Value::str("Application")),
        ("Value", Value::str(name)),
    ])])
}

fn metric_stat(app: &str, metric: &str, stat: &str, period: i64) -> Value {
    Value::map([
        (
            "Metric",
            Value::map([
                ("Namespace", Value::str("AWS/KinesisAnalytics")),
                ("MetricName", Value::str(metric)),
                ("Dimensions", app_dims(app)),
            ]),
        ),
        ("Period", Value::Int(period)),
        ("Stat", Value::str(stat)),
    ])
}

fn timestamps(result: &Value) -> Vec<i64> {
    result
        .get("Timestamps")
        .and_then(Value::as_list)
        .expect("timestamps")
        .iter()
        .map(|t| t.as_timestamp_ms().expect("timestamp"))
        .collect()
}

fn values(result: &Value) -> Vec<f64> {
    result
        .get("Values")
        .and_then(Value::as_list)
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("value"))
        .collect()
}

// ---------------------------------------------------------------------------
// Codecs.

#[test]
fn cbor_timestamps_are_tag_1_both_ways() {
    // Whole seconds go out as an integer under tag 1, others as a float.
    let whole = cbor::encode(&Value::timestamp_ms(1_700_000_000_000));
    assert_eq!(whole[0], 0xc1, "tag 1");
    assert_eq!(whole[1], 0x1a, "a 32-bit unsigned integer follows");
    let fractional = cbor::encode(&Value::timestamp_ms(1_700_000_000_250));
    assert_eq!(&fractional[..2], &[0xc1, 0xfb], "tag 1 then a double");

    for bytes in [whole, fractional] {
        let back = cbor::decode(&bytes).expect("decodes");
        assert!(matches!(back, Value::Timestamp(_)), "{back:?}");
    }
    assert_eq!(
        cbor::decode(&cbor::encode(&Value::timestamp_ms(1_700_000_000_250)))
            .expect("decodes")
            .as_timestamp_ms(),
        Some(1_700_000_000_250)
    );

    // What the SDK sends: an indefinite map, a tag-1 double, an integer.
    let mut e = Encoder::new(Vec::new());
    e.begin_map().unwrap();
    e.str("StartTime").unwrap();
    e.tag(Tag::from(IanaTag::Timestamp)).unwrap();
    e.f64(1_700_000_000.5).unwrap();
    e.str("EndTime").unwrap();
    e.tag(Tag::from(IanaTag::Timestamp)).unwrap();
    e.u64(1_700_000_060).unwrap();
    e.str("MaxDatapoints").unwrap();
    e.i32(-3).unwrap();
    e.str("Names").unwrap();
    e.begin_array().unwrap();
    e.str("a").unwrap();
    e.end().unwrap();
    e.end().unwrap();
    let input = cbor::decode(&e.into_writer()).expect("decodes");
    assert_eq!(
        input.get("StartTime").and_then(Value::as_timestamp_ms),
        Some(1_700_000_000_500)
    );
    assert_eq!(
        input.get("EndTime"),
        Some(&Value::Timestamp(1_700_000_060.0))
    );
    assert_eq!(input.get("MaxDatapoints"), Some(&Value::Int(-3)));
    assert_eq!(
        input.get("Names"),
        Some(&Value::List(vec![Value::str("a")]))
    );
}

#[test]
fn cbor_reads_half_floats_and_refuses_garbage() {
    // 0xf9 0x3e00 is 1.5 in half precision.
    assert_eq!(cbor::decode(&[0xf9, 0x3e, 0x00]), Ok(Value::Float(1.5)));
    assert_eq!(cbor::decode(&[0xf9, 0xc0, 0x00]), Ok(Value::Float(-2.0)));
    // A map cut short, an unknown tag, a trailing byte.
    assert!(cbor::decode(&[0xa1, 0x61, b'a']).is_err());
    assert!(cbor::decode(&[0xc2, 0x01]).is_err());
    assert!(cbor::decode(&[0xa0, 0x00]).is_err());
    assert_eq!(cbor::decode(&[]), Ok(Value::Map(Vec::new())));
}

#[test]
fn cbor_answers_use_floats_for_doubles_and_integers_for_integers() {
    let bytes = cbor::encode(&Value::map([
        ("Values", Value::List(vec![Value::Float(2.0)])),
        ("Period", Value::Int(60)),
    ]));
    let mut d = minicbor::Decoder::new(&bytes);
    assert_eq!(d.map().unwrap(), Some(2));
    assert_eq!(d.str().unwrap(), "Values");
    assert_eq!(d.array().unwrap(), Some(1));
    // The SDK reads a double with f64(), which refuses an integer.
    assert_eq!(d.f64().unwrap(), 2.0);
    assert_eq!(d.str().unwrap(), "Period");
    assert_eq!(d.i32().unwrap(), 60);
}

#[test]
fn json_timestamps_are_epoch_second_numbers() {
    let body = json::encode(&Value::map([
        ("A", Value::timestamp_ms(1_700_000_000_000)),
        ("B", Value::timestamp_ms(1_700_000_000_250)),
    ]));
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text, r#"{"A":1700000000,"B":1700000000.25}"#);
    let back = json::decode(text.as_bytes()).unwrap();
    assert_eq!(
        back.get("B").and_then(Value::as_timestamp_ms),
        Some(1_700_000_000_250)
    );
    assert_eq!(json::decode(b"").unwrap(), Value::Map(Vec::new()));
    assert!(json::decode(b"{").is_err());
}

// ---------------------------------------------------------------------------
// Time and aggregation.

#[test]
fn the_clock_is_the_identity_at_speed_one_and_scales_otherwise() {
    let one = Clock {
        origin_ms: T0,
        speed: 1.0,
    };
    assert_eq!(one.to_model_ms(T0 + 12_345), T0 + 12_345);
    assert_eq!(one.model_secs(T0 + 12_345), 12);
    let ten = Clock {
        origin_ms: T0,
        speed: 10.0,
    };
    assert_eq!(ten.to_model_ms(T0 + 1_500), T0 + 15_000);
    assert_eq!(ten.to_wall_ms(T0 + 15_000), T0 + 1_500);
    assert_eq!(ten.model_secs(T0 + 1_500), 15);
    assert_eq!(
        ten.model_secs(T0 - 1_000),
        0,
        "before the start nothing runs"
    );
}

fn stat(app: &str, metric: &str, statistic: &str, period_secs: u32) -> (MetricStat, MetricQuery) {
    let dimensions = BTreeMap::from([("Application".to_owned(), app.to_owned())]);
    (
        MetricStat {
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: metric.to_owned(),
            dimensions: dimensions.clone(),
            statistic: Statistic::parse(statistic).unwrap(),
            period_secs,
        },
        MetricQuery {
            id: "q".to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: metric.to_owned(),
            dimensions,
            statistic: statistic.to_owned(),
            period_secs,
            expression: None,
        },
    )
}

#[test]
fn at_speed_one_datapoints_equal_the_models_own_aggregates() {
    let mut c = core(vec![app("busy", 1500.0), app("calm", 300.0)], 1.0, 100);
    // An update at 10 minutes makes UPDATING gaps and a KPU change.
    c.sync(T0 + 600_000);
    c.world
        .update_application("busy", 1, Some(2), None, None)
        .unwrap();
    let now = T0 + 3_600_000 + 17_000;
    c.sync(now);
    let cases = [
        ("busy", "containerCPUUtilization", "Maximum", 60),
        ("busy", "millisBehindLatest", "Average", 60),
        ("busy", "KPUs", "Sum", 10),
        ("busy", "busyTimeMsPerSecond", "p90", 30),
        ("calm", "numRecordsInPerSecond", "SampleCount", 60),
        ("calm", "records_lag_max", "Minimum", 1),
    ];
    for (app, metric, statistic, period) in cases {
        let (ms, query) = stat(app, metric, statistic, period);
        let ours = cloudwatch::datapoints(&c.world, &c.clock, &ms, T0 - 120_000, now, now);
        let model = c.world.metric_data(&query, T0 - 120_000, now).unwrap();
        assert!(!ours.is_empty(), "{metric}");
        assert_eq!(ours, model, "{app} {metric} {statistic} {period}");
    }
    // The job's own metrics are missing while UPDATING (90 s from 600 s).
    let (ms, _) = stat("busy", "millisBehindLatest", "Average", 30);
    let points = cloudwatch::datapoints(&c.world, &c.clock, &ms, T0, now, now);
    let stamps: Vec<i64> = points.iter().map(|p| p.timestamp_ms).collect();
    assert!(stamps.contains(&(T0 + 570_000)));
    assert!(!stamps.contains(&(T0 + 600_000)) && !stamps.contains(&(T0 + 660_000)));
    assert!(stamps.contains(&(T0 + 690_000)));
}

#[test]
fn at_speed_ten_a_wall_period_aggregates_ten_model_seconds() {
    let mut c = core(vec![app("app", 500.0)], 10.0, 100);
    // 100 wall seconds = 1000 model seconds.
    let now = T0 + 100_000;
    c.sync(now);
    assert_eq!(c.world.now_secs(), 1000);
    let (count, _) = stat("app", "KPUs", "SampleCount", 1);
    let points = cloudwatch::datapoints(&c.world, &c.clock, &count, T0 - 5_000, now, now);
    // The 60 model-second delay is 6 wall seconds: the period [w, w+1) is
    // visible from w+1+6, so the last one visible at now starts at now-7.
    assert_eq!(points.first().map(|p| p.timestamp_ms), Some(T0));
    assert_eq!(points.last().map(|p| p.timestamp_ms), Some(now - 7_000));
    assert_eq!(points.len(), 94);
    assert!(points.iter().all(|p| p.value == 10.0), "{points:?}");
    assert!(points.iter().all(|p| p.timestamp_ms % 1000 == 0));
    // 500 records/s under a capacity of 1000: 5000 records per wall second.
    let (sum, _) = stat("app", "numRecordsInPerSecond", "Sum", 5);
    let points = cloudwatch::datapoints(&c.world, &c.clock, &sum, T0, now, now);
    assert!(
        points.iter().all(|p| (p.value - 25_000.0).abs() < 1e-6),
        "{points:?}"
    );
    assert_eq!(points.last().map(|p| p.timestamp_ms), Some(now - 15_000));
}

// ---------------------------------------------------------------------------
// GetMetricData and ListMetrics through the operation layer.

fn gmd_input(scan: Option<&str>, token: Option<&str>, now: i64) -> Value {
    let mut input = Value::map([
        (
            "MetricDataQueries",
            Value::List(vec![
                Value::map([
                    ("Id", Value::str("cpu")),
                    (
                        "MetricStat",
                        metric_stat("app", "containerCPUUtilization", "Average", 60),
                    ),
                ]),
                Value::map([
                    ("Id", Value::str("hidden")),
                    ("MetricStat", metric_stat("app", "KPUs", "Maximum", 60)),
                    ("ReturnData", Value::Bool(false)),
                ]),
                Value::map([
                    ("Id", Value::str("kpu")),
                    ("MetricStat", metric_stat("app", "KPUs", "Maximum", 60)),
                    ("Label", Value::str("KPU")),
                ]),
            ]),
        ),
        ("StartTime", Value::timestamp_ms(now - 1_800_000)),
        ("EndTime", Value::timestamp_ms(now)),
    ]);
    if let Some(scan) = scan {
        input.insert("ScanBy", Value::str(scan));
    }
    if let Some(token) = token {
        input.insert("NextToken", Value::str(token));
    }
    input
}

#[test]
fn get_metric_data_pages_with_next_token_and_scans_newest_first_by_default() {
    let mut c = core(vec![app("app", 800.0)], 1.0, 7);
    let now = T0 + 7_200_000;
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = call(
            &mut c,
            Service::CloudWatch,
            "GetMetricData",
            gmd_input(None, token.as_deref(), now),
            // Later pages come later: they must still see the first page's data.
            now + pages.len() as i64 * 61_000,
        )
        .unwrap();
        token = out
            .get("NextToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        pages.push(out);
        if token.is_none() {
            break;
        }
        assert!(pages.len() < 20, "pagination does not end");
    }
    // 30 periods of 60 s minus the last one (not visible for 60 s more):
    // 29 per query, two queries, 7 per page.
    assert_eq!(pages.len(), 9);
    let mut cpu = Vec::new();
    let mut kpu = Vec::new();
    for page in &pages {
        let results = page
            .get("MetricDataResults")
            .and_then(Value::as_list)
            .unwrap();
        assert_eq!(results.len(), 2, "ReturnData false is not answered");
        for r in results {
            let n = timestamps(r).len();
            assert!(n <= 7);
            match r.get("Id").and_then(Value::as_str) {
                Some("cpu") => cpu.extend(timestamps(r)),
                Some("kpu") => {
                    assert_eq!(r.get("Label").and_then(Value::as_str), Some("KPU"));
                    kpu.extend(timestamps(r).into_iter().zip(values(r)));
                }
                other => panic!("unexpected id {other:?}"),
            }
        }
    }
    // The first page: 7 cpu datapoints, more to come.
    let first = pages[0]
        .get("MetricDataResults")
        .and_then(Value::as_list)
        .unwrap();
    assert_eq!(
        first[0].get("StatusCode").and_then(Value::as_str),
        Some("PartialData")
    );
    let last = pages[8]
        .get("MetricDataResults")
        .and_then(Value::as_list)
        .unwrap();
    assert_eq!(
        last[1].get("StatusCode").and_then(Value::as_str),
        Some("Complete")
    );
    assert_eq!(cpu.len(), 29);
    assert_eq!(kpu.len(), 29);
    // Newest first, one period apart, ending two periods before now.
    assert_eq!(cpu[0], now - 120_000);
    assert!(cpu.windows(2).all(|w| w[0] - w[1] == 60_000));
    assert!(kpu.iter().all(|(_, v)| *v == 1.0));

    // Ascending when asked; MaxDatapoints shrinks the page.
    let mut input = gmd_input(Some("TimestampAscending"), None, now);
    input.insert("MaxDatapoints", Value::Int(3));
    let out = call(&mut c, Service::CloudWatch, "GetMetricData", input, now).unwrap();
    let results = out
        .get("MetricDataResults")
        .and_then(Value::as_list)
        .unwrap();
    assert_eq!(
        timestamps(&results[0]),
        vec![now - 1_800_000, now - 1_740_000, now - 1_680_000]
    );
    assert!(timestamps(&results[1]).is_empty());
    assert!(out.get("NextToken").is_some());

    // A token the service never gave.
    let err = call(
        &mut c,
        Service::CloudWatch,
        "GetMetricData",
        gmd_input(None, Some("garbage"), now),
        now,
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidNextToken");
}

#[test]
fn get_metric_data_refuses_what_cloudwatch_refuses() {
    let mut c = core(vec![app("app", 800.0)], 1.0, 100);
    let now = T0 + 600_000;
    let mut input = gmd_input(None, None, now);
    input.insert("EndTime", Value::timestamp_ms(now - 1_800_000));
    let err = call(&mut c, Service::CloudWatch, "GetMetricData", input, now).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status),
        ("InvalidParameterValue", 400)
    );

    let bad_stat = Value::map([
        (
            "MetricDataQueries",
            Value::List(vec![Value::map([
                ("Id", Value::str("q")),
                ("MetricStat", metric_stat("app", "KPUs", "Median", 60)),
            ])]),
        ),
        ("StartTime", Value::timestamp_ms(T0)),
        ("EndTime", Value::timestamp_ms(now)),
    ]);
    let err = call(&mut c, Service::CloudWatch, "GetMetricData", bad_stat, now).unwrap_err();
    assert_eq!(err.code, "InvalidParameterValue");

    let no_queries = Value::map([
        ("StartTime", Value::timestamp_ms(T0)),
        ("EndTime", Value::timestamp_ms(now)),
    ]);
    let err = call(
        &mut c,
        Service::CloudWatch,
        "GetMetricData",
        no_queries,
        now,
    )
    .unwrap_err();
    assert_eq!(err.code, "MissingParameter");

    // Times no date-time holds (the audit's crafted request: a start that
    // clamps to i64::MIN overflowed the period arithmetic and panicked the
    // handler) are refused as CloudWatch refuses a malformed one.
    for (start, end) in [(-1e300, -9_223_372_034_000_000.0), (0.0, 1e300)] {
        let mut input = gmd_input(None, None, now);
        input.insert("StartTime", Value::Float(start));
        input.insert("EndTime", Value::Float(end));
        let err = call(&mut c, Service::CloudWatch, "GetMetricData", input, now).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.status),
            ("InvalidParameterValue", 400),
            "{start} .. {end}: {err:?}"
        );
        assert!(
            err.message.contains("a timestamp from year 1 to year 9999"),
            "{}",
            err.message
        );
    }
}

#[test]
fn list_metrics_filters_by_namespace_name_and_dimension() {
    let mut c = core(vec![app("a", 10.0), app("b", 10.0)], 1.0, 100);
    let all = call(
        &mut c,
        Service::CloudWatch,
        "ListMetrics",
        Value::Map(Vec::new()),
        T0,
    )
    .unwrap();
    let n_all = all.get("Metrics").and_then(Value::as_list).unwrap().len();
    assert_eq!(n_all, 20, "ten metrics per application");
    let input = Value::map([
        ("Namespace", Value::str("AWS/KinesisAnalytics")),
        ("MetricName", Value::str("KPUs")),
        (
            "Dimensions",
            Value::List(vec![Value::map([
                ("Name", Value::str("Application")),
                ("Value", Value::str("b")),
            ])]),
        ),
    ]);
    let out = call(&mut c, Service::CloudWatch, "ListMetrics", input, T0).unwrap();
    let metrics = out.get("Metrics").and_then(Value::as_list).unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].get("Dimensions"), Some(&app_dims("b")));
}

// ---------------------------------------------------------------------------
// Alarms.

fn alarm_input(name: &str, app: &str, threshold: f64) -> Value {
    Value::map([
        ("AlarmName", Value::str(name)),
        ("Namespace", Value::str("AWS/KinesisAnalytics")),
        ("MetricName", Value::str("containerCPUUtilization")),
        ("Dimensions", app_dims(app)),
        ("Statistic", Value::str("Maximum")),
        ("Period", Value::Int(60)),
        ("EvaluationPeriods", Value::Int(3)),
        ("Threshold", Value::Float(threshold)),
        ("ComparisonOperator", Value::str("GreaterThanThreshold")),
    ])
}

fn alarm_states(c: &mut Core, now: i64) -> BTreeMap<String, (String, i64)> {
    let out = call(
        c,
        Service::CloudWatch,
        "DescribeAlarms",
        Value::Map(Vec::new()),
        now,
    )
    .unwrap();
    out.get("MetricAlarms")
        .and_then(Value::as_list)
        .unwrap()
        .iter()
        .map(|a| {
            (
                a.get("AlarmName")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_owned(),
                (
                    a.get("StateValue")
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_owned(),
                    a.get("StateUpdatedTimestamp")
                        .and_then(Value::as_timestamp_ms)
                        .unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn alarms_evaluate_on_the_emulated_metrics() {
    // "hot" runs at full capacity (CPU 100 %), "cool" at 10 % (CPU 14.5 %).
    let mut c = core(vec![app("hot", 1500.0), app("cool", 100.0)], 1.0, 100);
    let now = T0 + 1_800_000 + 5_000;
    for input in [
        alarm_input("hot-high", "hot", 80.0),
        alarm_input("cool-high", "cool", 80.0),
        alarm_input("ghost-high", "ghost", 80.0),
    ] {
        call(&mut c, Service::CloudWatch, "PutMetricAlarm", input, now).unwrap();
    }
    let states = alarm_states(&mut c, now);
    assert_eq!(states["hot-high"].0, "ALARM");
    assert_eq!(states["cool-high"].0, "OK");
    assert_eq!(states["ghost-high"].0, "INSUFFICIENT_DATA");

    // StateValue filters.
    let out = call(
        &mut c,
        Service::CloudWatch,
        "DescribeAlarms",
        Value::map([("StateValue", Value::str("ALARM"))]),
        now,
    )
    .unwrap();
    assert_eq!(
        out.get("MetricAlarms")
            .and_then(Value::as_list)
            .unwrap()
            .len(),
        1
    );

    // The hot application's load stops: once its backlog (about 15 minutes
    // of work) is drained and three datapoints are calm (plus the 60 s
    // delay), the alarm goes back to OK at a period boundary.
    c.world.set_load_factor("hot", 0.0).unwrap();
    assert_eq!(alarm_states(&mut c, now + 600_000)["hot-high"].0, "ALARM");
    let later = now + 1_800_000;
    let states = alarm_states(&mut c, later);
    assert_eq!(states["hot-high"].0, "OK");
    let changed = states["hot-high"].1;
    assert!(changed > now && changed <= later && changed % 60_000 == 0);

    // Deleting an alarm that does not exist fails and deletes nothing.
    let err = call(
        &mut c,
        Service::CloudWatch,
        "DeleteAlarms",
        Value::map([(
            "AlarmNames",
            Value::List(vec![Value::str("hot-high"), Value::str("nope")]),
        )]),
        later,
    )
    .unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("ResourceNotFound", 404));
    assert_eq!(alarm_states(&mut c, later).len(), 3);
    call(
        &mut c,
        Service::CloudWatch,
        "DeleteAlarms",
        Value::map([("AlarmNames", Value::List(vec![Value::str("hot-high")]))]),
        later,
    )
    .unwrap();
    assert!(!alarm_states(&mut c, later).contains_key("hot-high"));
}

#[test]
fn put_metric_alarm_refuses_bad_alarms() {
    let mut c = core(vec![app("app", 100.0)], 1.0, 100);
    let mut bad_period = alarm_input("a", "app", 1.0);
    bad_period.insert("Period", Value::Int(45));
    let mut bad_m = alarm_input("a", "app", 1.0);
    bad_m.insert("DatapointsToAlarm", Value::Int(4));
    let mut both = alarm_input("a", "app", 1.0);
    both.insert("ExtendedStatistic", Value::str("p99"));
    let mut band = alarm_input("a", "app", 1.0);
    band.insert("ComparisonOperator", Value::str("LessThanLowerThreshold"));
    // Past u32: refused for its range, not as "at least 1".
    let mut huge = alarm_input("a", "app", 1.0);
    huge.insert("EvaluationPeriods", Value::Int(99_999_999_999));
    // A day and a minute at a one-minute period: past one day, which a
    // period under an hour may not exceed (seven days may, at an hour).
    let mut long = alarm_input("a", "app", 1.0);
    long.insert("Period", Value::Int(60));
    long.insert("EvaluationPeriods", Value::Int(1441));
    for (input, code, says) in [
        (bad_period, "InvalidParameterValue", ""),
        (bad_m, "InvalidParameterValue", ""),
        (both, "InvalidParameterCombination", ""),
        (band, "InvalidParameterValue", ""),
        (huge, "InvalidParameterValue", "must not exceed seven days"),
        (
            long,
            "InvalidParameterValue",
            "must not exceed one day (86400 s)",
        ),
    ] {
        let err = call(&mut c, Service::CloudWatch, "PutMetricAlarm", input, T0).unwrap_err();
        assert_eq!(err.code, code, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    assert!(alarm_states(&mut c, T0).is_empty());
    // One day at a minute, and a week at an hour, are accepted.
    let mut day = alarm_input("day", "app", 1.0);
    day.insert("Period", Value::Int(60));
    day.insert("EvaluationPeriods", Value::Int(1440));
    let mut week = alarm_input("week", "app", 1.0);
    week.insert("Period", Value::Int(3600));
    week.insert("EvaluationPeriods", Value::Int(168));
    for input in [day, week] {
        call(&mut c, Service::CloudWatch, "PutMetricAlarm", input, T0).expect("accepted");
    }
}

// ---------------------------------------------------------------------------
// MSF.

fn update_input(app: &str, version: i64, parallelism: i64) -> Value {
    Value::map([
        ("ApplicationName", Value::str(app)),
        ("CurrentApplicationVersionId", Value::Int(version)),
        (
            "ApplicationConfigurationUpdate",
            Value::map([(
                "FlinkApplicationConfigurationUpdate",
                Value::map([(
                    "ParallelismConfigurationUpdate",
                    Value::map([
                        ("ConfigurationTypeUpdate", Value::str("CUSTOM")),
                        ("ParallelismUpdate", Value::Int(parallelism)),
                        ("ParallelismPerKPUUpdate", Value::Int(1)),
                        ("AutoScalingEnabledUpdate", Value::Bool(false)),
                    ]),
                )]),
            )]),
        ),
    ])
}

fn describe(c: &mut Core, app: &str, now: i64) -> Value {
    let out = call(
        c,
        Service::Kinesis,
        "DescribeApplication",
        Value::map([("ApplicationName", Value::str(app))]),
        now,
    )
    .unwrap();
    out.get("ApplicationDetail").cloned().unwrap()
}

#[test]
fn update_application_follows_msf_semantics_in_wall_time() {
    // At speed 10, the 90 s update lasts 9 wall seconds.
    let mut c = core(vec![app("app", 100.0)], 10.0, 100);
    let t = T0 + 60_000;
    let d = describe(&mut c, "app", t);
    assert_eq!(d.get("ApplicationVersionId"), Some(&Value::Int(1)));
    assert_eq!(
        d.get("ApplicationStatus").and_then(Value::as_str),
        Some("RUNNING")
    );
    assert_eq!(
        d.get("CreateTimestamp").and_then(Value::as_timestamp_ms),
        Some(T0)
    );

    let out = call(
        &mut c,
        Service::Kinesis,
        "UpdateApplication",
        update_input("app", 1, 4),
        t,
    )
    .unwrap();
    let d = out.get("ApplicationDetail").unwrap();
    assert_eq!(d.get("ApplicationVersionId"), Some(&Value::Int(2)));
    assert_eq!(
        d.get("ApplicationStatus").and_then(Value::as_str),
        Some("UPDATING")
    );
    assert_eq!(
        d.get("LastUpdateTimestamp")
            .and_then(Value::as_timestamp_ms),
        Some(t)
    );

    let err = call(
        &mut c,
        Service::Kinesis,
        "UpdateApplication",
        update_input("app", 2, 2),
        t + 8_000,
    )
    .unwrap_err();
    assert_eq!(err.code, "ResourceInUseException");
    let d = describe(&mut c, "app", t + 9_000);
    assert_eq!(
        d.get("ApplicationStatus").and_then(Value::as_str),
        Some("RUNNING")
    );
    let parallelism = d
        .get("ApplicationConfigurationDescription")
        .and_then(|v| v.get("FlinkApplicationConfigurationDescription"))
        .and_then(|v| v.get("ParallelismConfigurationDescription"))
        .unwrap();
    assert_eq!(parallelism.get("Parallelism"), Some(&Value::Int(4)));
    assert_eq!(parallelism.get("CurrentParallelism"), Some(&Value::Int(4)));

    let t = t + 10_000;
    for (input, code) in [
        (update_input("app", 1, 2), "ConcurrentModificationException"),
        (update_input("app", 2, 300), "InvalidArgumentException"),
        (update_input("app", 2, 65), "LimitExceededException"),
        (update_input("nope", 2, 2), "ResourceNotFoundException"),
    ] {
        let err = call(&mut c, Service::Kinesis, "UpdateApplication", input, t).unwrap_err();
        assert_eq!((err.code.as_str(), err.status), (code, 400));
    }
    // None of the refused updates took effect.
    assert_eq!(
        describe(&mut c, "app", t).get("ApplicationVersionId"),
        Some(&Value::Int(2))
    );
}

#[test]
fn list_applications_pages_with_a_limit() {
    let mut c = core(vec![app("a", 1.0), app("b", 1.0), app("c", 1.0)], 1.0, 100);
    let out = call(
        &mut c,
        Service::Kinesis,
        "ListApplications",
        Value::map([("Limit", Value::Int(2))]),
        T0,
    )
    .unwrap();
    assert_eq!(
        out.get("ApplicationSummaries")
            .and_then(Value::as_list)
            .unwrap()
            .len(),
        2
    );
    let token = out
        .get("NextToken")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let out = call(
        &mut c,
        Service::Kinesis,
        "ListApplications",
        Value::map([("Limit", Value::Int(2)), ("NextToken", Value::Str(token))]),
        T0,
    )
    .unwrap();
    let rest = out
        .get("ApplicationSummaries")
        .and_then(Value::as_list)
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        rest[0].get("ApplicationName").and_then(Value::as_str),
        Some("c")
    );
    assert!(out.get("NextToken").is_none());
}

// ---------------------------------------------------------------------------
// Faults, routing, the call log.

#[test]
fn count_faults_end_and_fraction_faults_are_seeded() {
    let mut faults = Faults::default();
    faults
        .add(
            FaultSpec::error("UpdateApplication", "ThrottlingException", 2),
            &[],
        )
        .unwrap();
    assert!(
        faults
            .take(Service::Kinesis, "DescribeApplication", &NO_INPUT)
            .is_none()
    );
    for _ in 0..2 {
        let injected = faults
            .take(Service::Kinesis, "UpdateApplication", &NO_INPUT)
            .expect("faulted");
        let Answer::Error(error) = injected.answer else {
            panic!("an error, not {:?}", injected.answer);
        };
        assert_eq!(
            (error.code.as_str(), error.status),
            ("ThrottlingException", 400)
        );
    }
    assert!(
        faults
            .take(Service::Kinesis, "UpdateApplication", &NO_INPUT)
            .is_none()
    );
    assert!(faults.list().is_empty());

    let half = FaultSpec {
        fraction: Some(0.25),
        count: None,
        seed: Some(7),
        ..FaultSpec::error("*", "InternalFailure", 1)
    };
    let draws = |spec: &FaultSpec| {
        let mut f = Faults::default();
        f.add(spec.clone(), &[]).unwrap();
        (0..1000)
            .map(|_| {
                f.take(Service::CloudWatch, "GetMetricData", &NO_INPUT)
                    .map(|i| match i.answer {
                        Answer::Error(e) => Some(e.status),
                        _ => None,
                    })
            })
            .collect::<Vec<_>>()
    };
    let first = draws(&half);
    assert_eq!(first, draws(&half), "the same seed gives the same faults");
    let hits = first.iter().filter(|d| d.is_some()).count();
    assert!((200..300).contains(&hits), "{hits} of 1000");
    assert!(first.iter().flatten().all(|s| *s == Some(500)));

    let mut f = Faults::default();
    let delay = FaultSpec {
        delay_ms: 0,
        ..FaultSpec::error("GetMetricData", "Delay", 1)
    };
    assert!(f.add(delay, &[]).is_err(), "a Delay needs a delay");
    let both = FaultSpec {
        fraction: Some(0.5),
        ..FaultSpec::error("GetMetricData", "ThrottlingException", 1)
    };
    assert!(f.add(both, &[]).is_err(), "count and fraction together");
    // An operation the emulator does not answer would never strike: it is
    // refused, naming the valid ones.
    let problem = f
        .add(FaultSpec::error("UpdateAplication", "Drop", 1), &[])
        .unwrap_err();
    assert!(
        problem.starts_with(
            "operation \"UpdateAplication\" is not one the emulator answers; valid: \"*\" (every operation), \"DescribeApplication\", \"UpdateApplication\","
        ),
        "{problem}"
    );
    for operation in super::OPERATIONS.iter().chain(&["*"]) {
        assert!(
            f.add(FaultSpec::error(operation, "Drop", 1), &[]).is_ok(),
            "{operation}"
        );
    }
}

/// A GetMetricData request with one CPU query per application of `apps`,
/// as the agent's batcher merges them.
fn gmd_of(apps: &[&str]) -> Value {
    let queries = apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            Value::map([
                ("Id", Value::str(format!("q{i}"))),
                (
                    "MetricStat",
                    metric_stat(app, "containerCPUUtilization", "Average", 60),
                ),
            ])
        })
        .collect();
    Value::map([
        ("MetricDataQueries", Value::List(queries)),
        ("StartTime", Value::timestamp_ms(T0)),
        ("EndTime", Value::timestamp_ms(T0 + 600_000)),
    ])
}

fn describe_of(app: &str) -> Value {
    Value::map([("ApplicationName", Value::str(app))])
}

/// A fault naming an application strikes only the calls that name it: a
/// kinesisanalyticsv2 call by its ApplicationName, a GetMetricData when
/// any of its queries has that `Application` dimension (then the whole
/// call, the other applications' queries with it). Its count and its
/// fraction's draws are spent only on those calls.
#[test]
fn a_fault_naming_an_application_strikes_only_that_applications_calls() {
    let apps = ["a", "b", "c"];
    let mut faults = Faults::default();
    faults
        .add(
            FaultSpec::error("DescribeApplication", "ThrottlingException", 2).for_application("b"),
            &apps,
        )
        .unwrap();
    let describe = |faults: &mut Faults, app: &str| {
        faults.take(Service::Kinesis, "DescribeApplication", &describe_of(app))
    };
    assert!(describe(&mut faults, "a").is_none());
    assert!(describe(&mut faults, "c").is_none());
    assert!(
        faults
            .take(
                Service::Kinesis,
                "UpdateApplication",
                &update_input("b", 1, 2)
            )
            .is_none(),
        "another operation of b"
    );
    assert!(describe(&mut faults, "b").is_some());
    assert!(
        describe(&mut faults, "a").is_none(),
        "a's calls spend no count"
    );
    assert!(describe(&mut faults, "b").is_some());
    assert!(describe(&mut faults, "b").is_none(), "the count is spent");
    assert!(faults.list().is_empty());

    // Every operation naming b: a merged GetMetricData is struck in whole
    // if one of its queries is b's, and not at all otherwise.
    let delay = FaultSpec {
        delay_ms: 3000,
        count: None,
        ..FaultSpec::error("*", "Delay", 1).for_application("b")
    };
    faults.add(delay, &apps).unwrap();
    let gmd = |faults: &mut Faults, of: &[&str]| {
        faults.take(Service::CloudWatch, "GetMetricData", &gmd_of(of))
    };
    assert!(gmd(&mut faults, &["a", "c"]).is_none());
    let struck = gmd(&mut faults, &["a", "b", "c"]).expect("the merged call is struck");
    assert_eq!((struck.delay_ms, struck.answer), (3000, Answer::Normal));
    assert!(gmd(&mut faults, &["b"]).is_some());
    assert!(describe(&mut faults, "b").is_some(), "`*`: any operation");
    assert!(describe(&mut faults, "a").is_none());
    assert_eq!(faults.list()[0].application.as_deref(), Some("b"));

    // A fraction draws on b's calls only: interleaving a's calls changes
    // nothing of which of b's calls are struck.
    let half = FaultSpec {
        fraction: Some(0.5),
        count: None,
        seed: Some(3),
        ..FaultSpec::error("DescribeApplication", "InternalFailure", 1).for_application("b")
    };
    let draws = |interleave: bool| {
        let mut f = Faults::default();
        f.add(half.clone(), &apps).unwrap();
        (0..200)
            .map(|_| {
                if interleave {
                    assert!(describe(&mut f, "a").is_none());
                }
                describe(&mut f, "b").is_some()
            })
            .collect::<Vec<_>>()
    };
    let alone = draws(false);
    assert_eq!(alone, draws(true));
    let hits = alone.iter().filter(|hit| **hit).count();
    assert!((60..140).contains(&hits), "{hits} of 200");
}

/// An `application` is optional (a spec without it is what it was and
/// lists without it); one the scenario does not have, or an empty one, is
/// refused naming the field and the valid names.
#[test]
fn a_fault_application_is_optional_and_must_be_the_scenarios() {
    let plain: FaultSpec =
        serde_json::from_str(r#"{"operation": "DescribeApplication", "error": "Drop"}"#).unwrap();
    assert_eq!(plain.application, None);
    let listed = serde_json::to_value(&plain).unwrap();
    assert!(listed.get("application").is_none(), "{listed}");

    let mut c = core(vec![app("orders", 100.0), app("clicks", 100.0)], 1.0, 100);
    let named: FaultSpec = serde_json::from_str(
        r#"{"operation": "GetMetricData", "application": "clicks", "error": "AccessDenied"}"#,
    )
    .unwrap();
    c.add_fault(named).unwrap();
    assert_eq!(
        serde_json::to_value(c.faults.list()).unwrap()[0]["application"],
        "clicks"
    );
    for wrong in ["nope", ""] {
        let spec = FaultSpec::error("GetMetricData", "AccessDenied", 1).for_application(wrong);
        let problem = c.add_fault(spec).unwrap_err();
        assert_eq!(
            problem,
            format!(
                "application {wrong:?} is not an application of the scenario; valid: \"orders\", \"clicks\""
            )
        );
    }
    let not_text = serde_json::from_str::<FaultSpec>(
        r#"{"operation": "X", "error": "Drop", "application": 7}"#,
    )
    .unwrap_err();
    assert!(
        not_text.to_string().contains("expected a string"),
        "{not_text}"
    );
    assert_eq!(c.faults.list().len(), 1, "nothing refused was added");
}

#[test]
fn requests_are_routed_by_path_and_target() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        route(
            &Method::POST,
            "/service/GraniteServiceVersion20100801/operation/GetMetricData",
            &headers
        ),
        Route::Aws {
            protocol: Protocol::RpcV2Cbor,
            service: Service::CloudWatch,
            operation: "GetMetricData".to_owned()
        }
    );
    headers.insert(
        "x-amz-target",
        "GraniteServiceVersion20100801.DescribeAlarms"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        route(&Method::POST, "/", &headers),
        Route::Aws {
            protocol: Protocol::AwsJson10,
            service: Service::CloudWatch,
            operation: "DescribeAlarms".to_owned()
        }
    );
    headers.insert(
        "x-amz-target",
        "KinesisAnalytics_20180523.UpdateApplication"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        route(&Method::POST, "/", &headers),
        Route::Aws {
            protocol: Protocol::AwsJson11,
            service: Service::Kinesis,
            operation: "UpdateApplication".to_owned()
        }
    );
    assert_eq!(route(&Method::GET, "/", &headers), Route::Unknown);
    assert_eq!(
        route(&Method::GET, "/_emulator/calls", &headers),
        Route::Control
    );
    headers.insert(
        "x-amz-target",
        "Kinesis_20131202.ListStreams".parse().unwrap(),
    );
    assert_eq!(route(&Method::POST, "/", &headers), Route::Unknown);
}

#[test]
fn the_call_log_names_the_application_and_the_outcome() {
    let mut c = core(vec![app("app", 100.0)], 1.0, 100);
    let input = gmd_input(None, None, T0 + 600_000);
    let error = AwsError::new("ThrottlingException", "slow down");
    c.record(
        T0,
        Protocol::RpcV2Cbor,
        Service::CloudWatch,
        "GetMetricData",
        Some(&input),
        Logged::injected(Err(&error), 400, false),
    );
    let record = &c.calls[0];
    assert_eq!(record.seq, 1);
    assert_eq!(record.application.as_deref(), Some("app"));
    assert_eq!(record.outcome, "ThrottlingException");
    assert!(record.injected);
    assert!(!record.took_effect);
    assert_eq!(record.params["StartTime"], serde_json::json!(1_699_998_780));
}

/// Runs one UpdateApplication (to 4 KPU, quoting `version`) at `now`
/// under `fault`, as the server does once the fault is drawn.
fn update_under(
    c: &mut Core,
    version: i64,
    now: i64,
    fault: Option<Injected>,
) -> super::server::Served {
    c.sync(now);
    let input = update_input("app", version, 4);
    run_call(
        c,
        now,
        Protocol::AwsJson11,
        Service::Kinesis,
        "UpdateApplication",
        &input,
        fault,
        None,
    )
}

fn version_and_status(c: &mut Core, now: i64) -> (Option<i64>, String) {
    let d = describe(c, "app", now);
    (
        d.get("ApplicationVersionId").and_then(|v| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        }),
        d.get("ApplicationStatus")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn an_after_effect_fault_applies_the_update_then_loses_the_answer() {
    let error = AwsError::with_status("InternalFailure", "lost", 500);
    let cases = [
        ("500 after the effect", Answer::Error(error.clone()), 0),
        ("a dropped connection", Answer::Drop, 0),
        ("an answer past the deadline", Answer::Normal, 12_000),
    ];
    for (what, answer, delay_ms) in cases {
        let mut c = core(vec![app("app", 100.0)], 10.0, 100);
        let t = T0 + 60_000;
        let served = update_under(
            &mut c,
            1,
            t,
            Some(Injected {
                delay_ms,
                answer: answer.clone(),
                after_effect: true,
                lands_late: false,
                client_gone: false,
            }),
        );
        // The update happened exactly as if it had succeeded...
        assert_eq!(
            version_and_status(&mut c, t),
            (Some(2), "UPDATING".to_owned()),
            "{what}"
        );
        // ...and the call log says so, beside what the client got.
        let record = c.calls.last().unwrap().clone();
        assert_eq!(record.seq, served.seq);
        assert!(record.injected && record.took_effect, "{what}: {record:?}");
        assert_eq!(served.delay_after_ms, delay_ms, "{what}");
        match answer {
            Answer::Error(_) => {
                assert_eq!(served.reply.unwrap().unwrap_err(), error, "{what}");
                assert_eq!(
                    (record.outcome.as_str(), record.http_status),
                    ("InternalFailure", 500)
                );
            }
            Answer::Drop => {
                assert!(served.reply.is_none(), "{what}: nothing is answered");
                assert_eq!((record.outcome.as_str(), record.http_status), ("Drop", 0));
            }
            Answer::Normal => {
                let detail = served.reply.unwrap().unwrap();
                assert_eq!(
                    detail
                        .get("ApplicationDetail")
                        .and_then(|d| d.get("ApplicationVersionId")),
                    Some(&Value::Int(2))
                );
                assert_eq!((record.outcome.as_str(), record.http_status), ("ok", 200));
            }
        }
        // A retry of the same request, as the SDK sends it, finds the
        // application busy: what the client sees of its own first attempt.
        let retry = update_under(&mut c, 1, t + 500, None);
        assert_eq!(
            retry.reply.unwrap().unwrap_err().code,
            "ResourceInUseException",
            "{what}"
        );
        assert!(!c.calls.last().unwrap().took_effect, "{what}");
        assert_eq!(version_and_status(&mut c, t + 500).0, Some(2), "{what}");
    }
}

#[test]
fn a_fault_before_the_effect_changes_nothing_and_the_log_says_which_calls_did() {
    let mut c = core(vec![app("app", 100.0)], 10.0, 100);
    let t = T0 + 60_000;
    for answer in [
        Answer::Error(AwsError::with_status("InternalFailure", "lost", 500)),
        Answer::Drop,
    ] {
        let served = update_under(
            &mut c,
            1,
            t,
            Some(Injected {
                delay_ms: 0,
                answer,
                after_effect: false,
                lands_late: false,
                client_gone: false,
            }),
        );
        assert!(served.reply.is_none_or(|r| r.is_err()));
        let record = c.calls.last().unwrap();
        assert!(record.injected && !record.took_effect, "{record:?}");
        assert_eq!(
            version_and_status(&mut c, t),
            (Some(1), "RUNNING".to_owned())
        );
    }
    // An after-effect fault on an update that fails on its own (a stale
    // version) answers the fault, and the log says nothing changed.
    let served = update_under(
        &mut c,
        7,
        t,
        Some(Injected {
            delay_ms: 0,
            answer: Answer::Drop,
            after_effect: true,
            lands_late: false,
            client_gone: false,
        }),
    );
    assert!(served.reply.is_none());
    let record = c.calls.last().unwrap();
    assert!(record.injected && !record.took_effect, "{record:?}");
    assert_eq!(version_and_status(&mut c, t).0, Some(1));

    // Unfaulted: an accepted update took effect, a DescribeApplication or
    // a refused update did not.
    let first = c.calls.len();
    update_under(&mut c, 1, t, None);
    update_under(&mut c, 1, t, None);
    let served = run_call(
        &mut c,
        t,
        Protocol::AwsJson11,
        Service::Kinesis,
        "DescribeApplication",
        &Value::map([("ApplicationName", Value::str("app"))]),
        None,
        None,
    );
    assert!(served.reply.unwrap().is_ok());
    let flags: Vec<(&str, bool, bool)> = c.calls[first..]
        .iter()
        .map(|r| (r.outcome.as_str(), r.injected, r.took_effect))
        .collect();
    assert_eq!(
        flags,
        [
            ("ok", false, true),
            ("ResourceInUseException", false, false),
            ("ok", false, false)
        ]
    );
    let json = serde_json::to_value(&c.calls[first]).unwrap();
    assert_eq!(json["took_effect"], true);
}

#[test]
fn faults_parse_after_effect_and_drop_and_refuse_what_makes_no_sense() {
    let spec: FaultSpec = serde_json::from_str(
        r#"{"operation": "UpdateApplication", "error": "Drop", "after_effect": true, "fraction": 0.2, "seed": 9}"#,
    )
    .unwrap();
    assert!(spec.after_effect);
    let mut faults = Faults::default();
    faults.add(spec, &[]).unwrap();
    let fired = (0..200)
        .filter_map(|_| faults.take(Service::Kinesis, "UpdateApplication", &NO_INPUT))
        .collect::<Vec<_>>();
    assert!((20..60).contains(&fired.len()), "{} of 200", fired.len());
    assert!(
        fired
            .iter()
            .all(|i| i.after_effect && i.answer == Answer::Drop)
    );
    // The list shows the flag, and only when set.
    assert_eq!(
        serde_json::to_value(&faults.list()[0]).unwrap()["after_effect"],
        true
    );
    let plain = serde_json::to_value(FaultSpec::error("X", "Drop", 1)).unwrap();
    assert!(plain.get("after_effect").is_none(), "{plain}");
    // An after-effect Delay still needs its delay.
    let delay = FaultSpec {
        after_effect: true,
        ..FaultSpec::error("X", "Delay", 1)
    };
    assert!(Faults::default().add(delay, &[]).is_err());
    let unknown = serde_json::from_str::<FaultSpec>(
        r#"{"operation": "X", "error": "Drop", "after_efect": true}"#,
    );
    assert!(unknown.is_err(), "a misspelt field is refused");
}

#[test]
fn permission_faults_answer_as_each_service_does() {
    let answer = |error: &str, service| match FaultSpec::error("*", error, 1)
        .answer(service, "UpdateApplication")
    {
        Answer::Error(e) => (e.code, e.status, e.message),
        other => panic!("{error}: {other:?}"),
    };
    for error in ["AccessDenied", "AccessDeniedException"] {
        let (code, status, message) = answer(error, Service::Kinesis);
        assert_eq!((code.as_str(), status), ("AccessDeniedException", 400));
        assert!(
            message.contains("is not authorized to perform: kinesisanalytics:UpdateApplication"),
            "{message}"
        );
        let (code, status, message) = answer(error, Service::CloudWatch);
        assert_eq!((code.as_str(), status), ("AccessDenied", 403));
        assert!(
            message.contains("cloudwatch:UpdateApplication"),
            "{message}"
        );
    }
    for service in [Service::Kinesis, Service::CloudWatch] {
        let (code, status, _) = answer("UnrecognizedClientException", service);
        assert_eq!(
            (code.as_str(), status),
            ("UnrecognizedClientException", 400)
        );
        let (code, status, message) = answer("ExpiredTokenException", service);
        assert_eq!((code.as_str(), status), ("ExpiredTokenException", 400));
        assert!(message.contains("expired"), "{message}");
    }
    // An explicit status and message win.
    let spec = FaultSpec {
        http_status: Some(401),
        message: Some("no".to_owned()),
        ..FaultSpec::error("*", "AccessDenied", 1)
    };
    assert_eq!(
        spec.answer(Service::Kinesis, "X"),
        Answer::Error(AwsError::with_status("AccessDeniedException", "no", 401))
    );
}

/// A scenario's past through the emulator: the same datapoints as the
/// simulator's over a window reaching from the past into the run, and
/// published late like the run's, at any speed: at speed 10 the 60 model
/// seconds of delay are 6 wall seconds, so the last past minute shows 6 s
/// after t = 0, not at t = 0.
#[test]
fn the_past_is_served_as_the_simulator_serves_it_and_published_late() {
    let mut past = app("app", 500.0);
    past.past = Some(crate::sim::Past {
        secs: 86_400,
        period_secs: 86_400,
    });
    let (ms, query) = stat("app", "numRecordsInPerSecond", "Average", 60);

    let mut c = core(vec![past.clone()], 1.0, 100);
    let now = T0 + 900_000;
    c.sync(now);
    let ours = cloudwatch::datapoints(&c.world, &c.clock, &ms, T0 - 2 * 86_400_000, now, now);
    let model = c
        .world
        .metric_data(&query, T0 - 2 * 86_400_000, now)
        .unwrap();
    assert_eq!(ours, model);
    assert_eq!(ours.first().map(|p| p.timestamp_ms), Some(T0 - 86_400_000));
    assert!(ours.iter().any(|p| p.timestamp_ms >= T0), "and the run's");

    let c = core(vec![past], 10.0, 100);
    let last_minute = T0 - 60_000;
    let shown = |as_of: i64| {
        cloudwatch::datapoints(&c.world, &c.clock, &ms, T0 - 86_400_000, T0, as_of)
            .last()
            .map(|p| p.timestamp_ms)
    };
    assert_eq!(shown(T0), Some(last_minute - 60_000), "not yet at t = 0");
    assert_eq!(shown(T0 + 5_999), Some(last_minute - 60_000));
    assert_eq!(shown(T0 + 6_000), Some(last_minute), "6 wall seconds on");
}

/// A GetMetricData request of one stat query `cpu` and one expression
/// query `e` over `[start_s, end_s)` in epoch seconds.
fn far_input(start_s: f64, end_s: f64, period: i64, expression: &str) -> Value {
    Value::map([
        (
            "MetricDataQueries",
            Value::List(vec![
                Value::map([
                    ("Id", Value::str("cpu")),
                    (
                        "MetricStat",
                        metric_stat("app", "containerCPUUtilization", "Average", period),
                    ),
                ]),
                Value::map([
                    ("Id", Value::str("e")),
                    ("Expression", Value::str(expression)),
                    ("Period", Value::Int(period)),
                ]),
            ]),
        ),
        ("StartTime", Value::Float(start_s)),
        ("EndTime", Value::Float(end_s)),
    ])
}

/// Timestamps at the end of what a service's date-time holds (the last
/// day of year 9999): the periods in range are walked without
/// overflowing; the metric has nothing there, and `FILL` fills the one
/// period that starts in range. Past it (an EndTime of 1e300 s, once read
/// as i64::MAX milliseconds, and a StartTime that clamped to i64::MIN and
/// overflowed the period arithmetic) the request is refused as malformed.
#[test]
fn get_metric_data_at_the_end_of_time_answers_without_overflowing() {
    let mut past = app("app", 500.0);
    past.past = Some(crate::sim::Past {
        secs: 86_400,
        period_secs: 86_400,
    });
    let mut c = core(vec![past], 1.0, 100);
    let now = T0 + 600_000;
    let last_day_s = 253_402_214_400.0; // 9999-12-31T00:00:00Z
    let input = far_input(last_day_s, last_day_s + 86_399.999, 86_400, "FILL(cpu, 0)");
    let out = call(&mut c, Service::CloudWatch, "GetMetricData", input, now)
        .expect("an answer, not a panic");
    let results = out
        .get("MetricDataResults")
        .and_then(Value::as_list)
        .expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(timestamps(&results[0]), Vec::<i64>::new());
    assert_eq!(timestamps(&results[1]), [253_402_214_400_000]);
    assert_eq!(values(&results[1]), [0.0]);
    for (start, end) in [(9.223_372_036_854_7e15, 1e300), (-1e300, last_day_s)] {
        let input = far_input(start, end, 86_400, "FILL(cpu, 0)");
        let err =
            call(&mut c, Service::CloudWatch, "GetMetricData", input, now).expect_err("refused");
        assert_eq!(
            (err.code.as_str(), err.status),
            ("InvalidParameterValue", 400)
        );
    }
}

/// A query whose range holds more periods than CloudWatch answers in a
/// whole call (a number or FILL has a value at each of them) is refused,
/// naming the query and the limit, instead of filling them all while
/// every other call waits.
#[test]
fn get_metric_data_refuses_a_range_of_more_periods_than_cloudwatch_answers() {
    let mut c = core(vec![app("app", 800.0)], 1.0, 100);
    let now = T0 + 600_000;
    // 1970 to now at one second: 1.7 billion periods.
    let input = far_input(0.0, now as f64 / 1000.0, 1, "FILL(cpu, 0)");
    let err = call(&mut c, Service::CloudWatch, "GetMetricData", input, now).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status),
        ("InvalidParameterValue", 400)
    );
    assert!(
        err.message.contains("Query cpu") && err.message.contains("100800"),
        "{}",
        err.message
    );
    // The largest range allowed is answered.
    let start_s = (now / 1000 - 100_800) as f64;
    let input = far_input(start_s, now as f64 / 1000.0, 1, "FILL(cpu, 0)");
    call(&mut c, Service::CloudWatch, "GetMetricData", input, now).expect("an answer");
}

/// Syncing the model to now steps it through every model second since the
/// last call: at a high speed (or with history to play) that is CPU work,
/// done off the runtime so that the server's other tasks (and whatever else
/// shares its runtime: the demo's agent) keep running meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_long_sync_leaves_the_runtime_running() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Enough work to take well over 100 ms on a fast machine (five days
    // of two applications once took 77 ms, too short to tell).
    let mut long = scenario(vec![
        app("a", 500.0),
        app("b", 500.0),
        app("c", 500.0),
        app("d", 500.0),
    ]);
    long.duration_secs = 20 * 86_400;
    let mut options = super::EmulatorOptions::new(long);
    // Nine days of model time to play at the first call.
    options.start_epoch_ms = Some(crate::clock::system_ms() - 9 * 86_400_000);
    let emulator = super::start(options).await.expect("the emulator starts");
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::task::yield_now().await;
    let started = std::time::Instant::now();
    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
    let mut stream = tokio::net::TcpStream::connect(emulator.local_addr())
        .await
        .expect("a connection");
    stream
        .write_all(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("the answer");
    let took = started.elapsed();
    let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
    ticker.abort();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The sync takes long enough to tell (nine days of four applications);
    // a runtime that kept running ticked through a good part of it.
    assert!(took >= std::time::Duration::from_millis(100), "{took:?}");
    let expected = took.as_millis() / 2;
    assert!(
        u128::from(during) * 4 >= expected,
        "the runtime stood still during the sync: {during} ticks of 2 ms in {took:?}"
    );
    emulator.shutdown().await;
}
