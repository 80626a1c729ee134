//! The emulator driven by the real AWS SDK clients over HTTP: the Rust SDK
//! is one of the two independent checks (boto3 is the other) that its wire
//! protocols are right, and that its answers mean what AWS's would.
//!
//! Each test starts its own emulator in-process on 127.0.0.1:0. Most start
//! the model an hour or more in the past, so there is history to read at
//! once and nothing waits on the clock.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use aws_config::retry::RetryConfig;
use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StateValue,
    Statistic,
};
use aws_sdk_kinesisanalyticsv2::types::{
    ApplicationConfigurationUpdate, ConfigurationType, FlinkApplicationConfigurationUpdate,
    ParallelismConfigurationUpdate,
};
use common::now_ms;
use flinkscale::emulator::{self, EmulatorHandle, EmulatorOptions, FaultSpec};
use flinkscale::metrics::cloudwatch::CloudWatchSource;
use flinkscale::metrics::{MetricMath, MetricQuery, MetricSource, MetricsError};
use flinkscale::target::msf::MsfTarget;
use flinkscale::target::{AppStatus, ScalingTarget, TargetError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOUR_MS: i64 = 3_600_000;

/// Two applications: "busy" gets more than its 1 KPU can process, "calm"
/// a tenth of it. No CPU noise, so thresholds are clear-cut.
const SCENARIO: &str = r#"
name = "sdk-test"
trace = "load.csv"
duration_secs = 86400

[[application]]
name = "busy"
load_factor = 1.5
noise_percent = 0.0

[[application]]
name = "calm"
load_factor = 0.1
noise_percent = 0.0
"#;

/// Writes the scenario into a temporary directory and starts an emulator
/// on it whose model began `history_ms` ago.
async fn start(
    history_ms: i64,
    speed: f64,
    page_size: usize,
) -> (EmulatorHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("load.csv"),
        "t_secs,records_per_sec\n0,1000\n",
    )
    .expect("trace");
    let file = dir.path().join("sdk-test.toml");
    std::fs::write(&file, SCENARIO).expect("scenario");
    tokio::time::sleep(common::until_start_phase()).await;
    let mut options = EmulatorOptions::new(file);
    options.speed = speed;
    options.page_size = page_size;
    options.start_epoch_ms = Some(now_ms() - history_ms);
    let handle = emulator::start(options).await.expect("emulator starts");
    (handle, dir)
}

/// The agent's own SDK configuration (its retries and timeouts) aimed at
/// the emulator, with static credentials, in us-east-1; a test overrides
/// what it needs before loading it.
fn sdk_loader(handle: &EmulatorHandle) -> ConfigLoader {
    flinkscale::aws::config_loader(Some("us-east-1"))
        .endpoint_url(handle.endpoint_url())
        .test_credentials()
}

/// An SDK configuration aimed at the emulator: static credentials,
/// us-east-1, one attempt per call (so every error reaches the test).
async fn sdk_config(handle: &EmulatorHandle) -> SdkConfig {
    sdk_loader(handle)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

fn app_dimension(app: &str) -> Dimension {
    Dimension::builder().name("Application").value(app).build()
}

fn data_query(id: &str, app: &str, metric: &str, stat: &str, period: i32) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/KinesisAnalytics")
                        .metric_name(metric)
                        .dimensions(app_dimension(app))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

fn model_query(app: &str, metric: &str, stat: &str, period: u32) -> MetricQuery {
    MetricQuery {
        id: metric.to_owned(),
        namespace: "AWS/KinesisAnalytics".to_owned(),
        metric_name: metric.to_owned(),
        dimensions: BTreeMap::from([("Application".to_owned(), app.to_owned())]),
        statistic: stat.to_owned(),
        period_secs: period,
        expression: None,
    }
}

/// A 60 s metric-math query `id` of `text` over `inputs`.
fn math_query(id: &str, text: &str, inputs: Vec<MetricQuery>) -> MetricQuery {
    MetricQuery {
        id: id.to_owned(),
        namespace: String::new(),
        metric_name: String::new(),
        dimensions: BTreeMap::new(),
        statistic: String::new(),
        period_secs: 60,
        expression: Some(MetricMath {
            text: text.to_owned(),
            inputs,
        }),
    }
}

fn parallelism_update(parallelism: i32) -> ApplicationConfigurationUpdate {
    ApplicationConfigurationUpdate::builder()
        .flink_application_configuration_update(
            FlinkApplicationConfigurationUpdate::builder()
                .parallelism_configuration_update(
                    ParallelismConfigurationUpdate::builder()
                        .configuration_type_update(ConfigurationType::Custom)
                        .parallelism_update(parallelism)
                        .parallelism_per_kpu_update(1)
                        .auto_scaling_enabled_update(false)
                        .build(),
                )
                .build(),
        )
        .build()
}

// ---------------------------------------------------------------------------
// kinesisanalyticsv2.

#[tokio::test]
async fn msf_describe_update_and_every_error_through_the_sdk() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_config(&emu).await;
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);

    let out = msf
        .describe_application()
        .application_name("busy")
        .send()
        .await
        .expect("DescribeApplication");
    let detail = out.application_detail().expect("detail");
    assert_eq!(detail.application_name(), "busy");
    assert_eq!(detail.application_status().as_str(), "RUNNING");
    assert_eq!(detail.application_version_id(), 1);
    assert!(detail.application_arn().ends_with(":application/busy"));
    let created = detail
        .create_timestamp()
        .expect("CreateTimestamp")
        .to_millis()
        .unwrap();
    assert_eq!(created, emu.clock().origin_ms);
    let p = detail
        .application_configuration_description()
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.parallelism_configuration_description())
        .expect("parallelism configuration");
    assert_eq!(p.configuration_type(), Some(&ConfigurationType::Custom));
    assert_eq!(
        (
            p.parallelism(),
            p.parallelism_per_kpu(),
            p.current_parallelism()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(p.auto_scaling_enabled(), Some(false));

    // The project's own adapter reads the same answer.
    let target = MsfTarget::new(&config);
    let state = target.describe("busy").await.expect("MsfTarget describe");
    assert_eq!(
        (state.status, state.parallelism, state.version_id),
        (AppStatus::Running, 1, 1)
    );

    // A successful update: new version, UPDATING.
    let out = msf
        .update_application()
        .application_name("busy")
        .current_application_version_id(1)
        .application_configuration_update(parallelism_update(2))
        .send()
        .await
        .expect("UpdateApplication");
    let detail = out.application_detail().expect("detail");
    assert_eq!(detail.application_version_id(), 2);
    assert_eq!(detail.application_status().as_str(), "UPDATING");
    assert!(detail.last_update_timestamp().is_some());

    // While UPDATING (90 s at speed 1): ResourceInUseException.
    let err = msf
        .update_application()
        .application_name("busy")
        .current_application_version_id(2)
        .application_configuration_update(parallelism_update(3))
        .send()
        .await
        .expect_err("refused while UPDATING")
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");

    // On the other application: a stale version, a bad parallelism, too
    // many KPU. Each is the SDK's typed error, and none takes effect.
    let update = |version: i64, parallelism: i32| {
        msf.update_application()
            .application_name("calm")
            .current_application_version_id(version)
            .application_configuration_update(parallelism_update(parallelism))
            .send()
    };
    let err = update(7, 2)
        .await
        .expect_err("stale version")
        .into_service_error();
    assert!(err.is_concurrent_modification_exception(), "{err:?}");
    let err = update(1, 300)
        .await
        .expect_err("parallelism 300")
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    let err = update(1, 65)
        .await
        .expect_err("65 KPU")
        .into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");
    let calm = msf
        .describe_application()
        .application_name("calm")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        calm.application_detail()
            .map(|d| d.application_version_id()),
        Some(1)
    );

    let err = msf
        .describe_application()
        .application_name("nope")
        .send()
        .await
        .expect_err("unknown application")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let list = msf
        .list_applications()
        .send()
        .await
        .expect("ListApplications");
    let names: Vec<&str> = list
        .application_summaries()
        .iter()
        .map(|s| s.application_name())
        .collect();
    assert_eq!(names, ["busy", "calm"]);
    assert_eq!(
        list.application_summaries()[0]
            .application_status()
            .as_str(),
        "UPDATING"
    );

    // The call log saw all of it, in order, with the outcomes.
    let calls = emu.calls();
    let outcomes: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.operation.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("DescribeApplication", "ok"),
            ("DescribeApplication", "ok"),
            ("UpdateApplication", "ok"),
            ("UpdateApplication", "ResourceInUseException"),
            ("UpdateApplication", "ConcurrentModificationException"),
            ("UpdateApplication", "InvalidArgumentException"),
            ("UpdateApplication", "LimitExceededException"),
            ("DescribeApplication", "ok"),
            ("DescribeApplication", "ResourceNotFoundException"),
            ("ListApplications", "ok"),
        ]
    );
    assert_eq!(calls[2].application.as_deref(), Some("busy"));
    assert_eq!(
        calls[2].params["ApplicationConfigurationUpdate"]["FlinkApplicationConfigurationUpdate"]["ParallelismConfigurationUpdate"]
            ["ParallelismUpdate"],
        2
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------
// CloudWatch metrics.

#[tokio::test]
async fn get_metric_data_matches_the_model_with_pages_and_wall_timestamps() {
    let (emu, _dir) = start(3 * HOUR_MS, 1.0, 10).await;
    let config = sdk_config(&emu).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    // A window safely in the past, so what is visible cannot change while
    // the test runs: the last hour up to ten minutes ago.
    let end = now_ms().div_euclid(60_000) * 60_000 - 600_000;
    let start = end - HOUR_MS;

    let mut by_id: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let out = cw
            .get_metric_data()
            .metric_data_queries(data_query(
                "cpu",
                "busy",
                "containerCPUUtilization",
                "Maximum",
                60,
            ))
            .metric_data_queries(data_query(
                "recs",
                "calm",
                "numRecordsInPerSecond",
                "Sum",
                60,
            ))
            .start_time(DateTime::from_millis(start))
            .end_time(DateTime::from_millis(end))
            .set_next_token(token.take())
            .send()
            .await
            .expect("GetMetricData");
        pages += 1;
        for result in out.metric_data_results() {
            let points = by_id
                .entry(result.id().unwrap_or_default().to_owned())
                .or_default();
            for (t, v) in result.timestamps().iter().zip(result.values()) {
                points.push((t.to_millis().unwrap(), *v));
            }
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    // 60 periods per query, 10 datapoints per page.
    assert_eq!(pages, 12);
    for (id, app, metric, stat) in [
        ("cpu", "busy", "containerCPUUtilization", "Maximum"),
        ("recs", "calm", "numRecordsInPerSecond", "Sum"),
    ] {
        let got = &by_id[id];
        assert_eq!(got.len(), 60, "{id}");
        // Newest first by default, on minute boundaries.
        assert_eq!(got[0].0, end - 60_000);
        assert!(got.windows(2).all(|w| w[0].0 - w[1].0 == 60_000), "{id}");
        let mut expected = emu.with_world(|w| {
            w.metric_data(&model_query(app, metric, stat, 60), start, end)
                .unwrap()
        });
        expected.reverse();
        let got: Vec<(i64, f64)> = got.clone();
        let expected: Vec<(i64, f64)> =
            expected.iter().map(|p| (p.timestamp_ms, p.value)).collect();
        assert_eq!(got, expected, "{id}");
    }
    // "busy" runs flat out, "calm" processes its 100 records/s.
    assert!(by_id["cpu"].iter().all(|(_, v)| *v == 100.0));
    assert!(
        by_id["recs"]
            .iter()
            .all(|(_, v)| (*v - 6000.0).abs() < 1e-6)
    );

    // Oldest first when asked.
    let out = cw
        .get_metric_data()
        .metric_data_queries(data_query("kpu", "busy", "KPUs", "Average", 300))
        .start_time(DateTime::from_millis(start))
        .end_time(DateTime::from_millis(end))
        .scan_by(ScanBy::TimestampAscending)
        .send()
        .await
        .expect("GetMetricData ascending");
    let first = &out.metric_data_results()[0];
    let stamps: Vec<i64> = first
        .timestamps()
        .iter()
        .map(|t| t.to_millis().unwrap())
        .collect();
    // Periods align to the epoch: the first one starts at or before the
    // window's start.
    let first_period = start.div_euclid(300_000) * 300_000;
    assert_eq!(stamps[0], first_period);
    // 12 or 13 periods: a page of 10, and more to come.
    assert_eq!(stamps.len(), 10);
    assert_eq!(first.status_code().map(|s| s.as_str()), Some("PartialData"));
    assert!(out.next_token().is_some());
    assert!(stamps.windows(2).all(|w| w[1] - w[0] == 300_000));

    // The project's adapter follows the pages to the same series.
    let source = CloudWatchSource::new(&config);
    let query = model_query("busy", "millisBehindLatest", "Average", 60);
    let series = source
        .fetch(std::slice::from_ref(&query), start, end)
        .await
        .expect("fetch");
    let expected = emu.with_world(|w| w.metric_data(&query, start, end).unwrap());
    assert_eq!(series[0].points, expected);
    assert!(
        expected.len() == 60 && expected.windows(2).all(|w| w[1].value > w[0].value),
        "the lag grows"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn at_speed_ten_a_one_second_period_holds_ten_model_seconds() {
    // 100 wall seconds of history are 1000 model seconds.
    let (emu, _dir) = start(100_000, 10.0, 1000).await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&emu).await);
    let before = now_ms();
    let out = cw
        .get_metric_data()
        .metric_data_queries(data_query("n", "calm", "KPUs", "SampleCount", 1))
        .start_time(DateTime::from_millis(before - 60_000))
        .end_time(DateTime::from_millis(before + 60_000))
        .send()
        .await
        .expect("GetMetricData");
    let after = now_ms();
    let result = &out.metric_data_results()[0];
    assert!(result.values().len() >= 50, "{result:?}");
    assert!(result.values().iter().all(|v| *v == 10.0), "{result:?}");
    let newest = result.timestamps()[0].to_millis().unwrap();
    assert_eq!(newest % 1000, 0, "wall-clock period starts");
    // The 60 s publication delay is 6 wall seconds at speed 10.
    assert!(newest + 1000 + 6000 <= after, "{newest} vs {after}");
    assert!(newest + 1000 + 6000 > before - 2000, "{newest} vs {before}");
    emu.shutdown().await;
}

#[tokio::test]
async fn list_metrics_through_the_sdk() {
    let (emu, _dir) = start(0, 1.0, 100).await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&emu).await);
    let out = cw
        .list_metrics()
        .namespace("AWS/KinesisAnalytics")
        .dimensions(
            aws_sdk_cloudwatch::types::DimensionFilter::builder()
                .name("Application")
                .value("calm")
                .build(),
        )
        .send()
        .await
        .expect("ListMetrics");
    let mut names: Vec<&str> = out
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "KPUs",
            "busyTimeMsPerSecond",
            "containerCPUUtilization",
            "millisBehindLatest",
            "numRecordsInPerSecond",
            "records_lag_max"
        ]
    );
    assert!(
        out.metrics()
            .iter()
            .all(|m| m.dimensions() == [app_dimension("calm")])
    );
    let kafka = cw
        .list_metrics()
        .namespace("AWS/Kafka")
        .send()
        .await
        .expect("ListMetrics");
    assert_eq!(kafka.metrics().len(), 4, "two metrics per application");
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------
// Alarms.

#[tokio::test]
async fn alarms_evaluate_on_emulated_metrics_through_the_sdk() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&emu).await);
    for (name, app) in [("busy-cpu-high", "busy"), ("calm-cpu-high", "calm")] {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/KinesisAnalytics")
            .metric_name("containerCPUUtilization")
            .dimensions(app_dimension(app))
            .statistic(Statistic::Maximum)
            .period(60)
            .evaluation_periods(5)
            .datapoints_to_alarm(5)
            .threshold(80.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .expect("PutMetricAlarm");
    }
    let out = cw.describe_alarms().send().await.expect("DescribeAlarms");
    let states: BTreeMap<&str, &StateValue> = out
        .metric_alarms()
        .iter()
        .map(|a| {
            (
                a.alarm_name().unwrap_or_default(),
                a.state_value().expect("state"),
            )
        })
        .collect();
    assert_eq!(states["busy-cpu-high"], &StateValue::Alarm);
    assert_eq!(states["calm-cpu-high"], &StateValue::Ok);
    let busy = &out.metric_alarms()[0];
    assert_eq!(busy.threshold(), Some(80.0));
    assert_eq!(busy.period(), Some(60));
    assert_eq!(busy.evaluation_periods(), Some(5));
    assert_eq!(
        busy.comparison_operator(),
        Some(&ComparisonOperator::GreaterThanThreshold)
    );
    assert!(
        busy.alarm_arn()
            .is_some_and(|a| a.ends_with(":alarm:busy-cpu-high"))
    );
    let updated = busy
        .state_updated_timestamp()
        .expect("StateUpdatedTimestamp")
        .to_millis()
        .unwrap();
    assert!(
        updated <= now_ms() && updated > now_ms() - 120_000,
        "{updated}"
    );

    let alarming = cw
        .describe_alarms()
        .state_value(StateValue::Alarm)
        .send()
        .await
        .expect("DescribeAlarms by state");
    let names: Vec<_> = alarming
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name())
        .collect();
    assert_eq!(names, ["busy-cpu-high"]);

    cw.delete_alarms()
        .alarm_names("calm-cpu-high")
        .send()
        .await
        .expect("DeleteAlarms");
    let err = cw
        .delete_alarms()
        .alarm_names("calm-cpu-high")
        .send()
        .await
        .expect_err("already deleted")
        .into_service_error();
    assert!(err.is_resource_not_found(), "{err:?}");
    let left = cw
        .describe_alarms()
        .alarm_name_prefix("calm")
        .send()
        .await
        .expect("DescribeAlarms");
    assert!(left.metric_alarms().is_empty());
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------
// Authentication, faults, the control API, and boto3's JSON 1.0 path.

/// One HTTP/1.1 request on a fresh connection: (status, lower-case
/// headers, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// Sets a fault through the emulator's control API, as a test harness in
/// another language would: (status, body).
async fn post_fault(addr: SocketAddr, fault: &serde_json::Value) -> (u16, String) {
    let (status, _, body) = http(
        addr,
        "POST",
        "/_emulator/faults",
        &[],
        fault.to_string().as_bytes(),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One GetMetricData of the last ten minutes before `end_ms`, with one
/// `containerCPUUtilization` query per application.
fn cpu_of(
    cw: &aws_sdk_cloudwatch::Client,
    apps: &[&str],
    end_ms: i64,
) -> aws_sdk_cloudwatch::operation::get_metric_data::builders::GetMetricDataFluentBuilder {
    let mut call = cw
        .get_metric_data()
        .start_time(DateTime::from_millis(end_ms - 600_000))
        .end_time(DateTime::from_millis(end_ms));
    for (i, app) in apps.iter().enumerate() {
        call = call.metric_data_queries(data_query(
            &format!("q{i}"),
            app,
            "containerCPUUtilization",
            "Average",
            60,
        ));
    }
    call
}

#[tokio::test]
async fn a_request_without_authorization_is_refused() {
    let (emu, _dir) = start(0, 1.0, 100).await;
    let (status, _, body) = http(
        emu.local_addr(),
        "POST",
        "/",
        &[
            (
                "x-amz-target",
                "KinesisAnalytics_20180523.DescribeApplication",
            ),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        br#"{"ApplicationName":"busy"}"#,
    )
    .await;
    assert_eq!(status, 403);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");

    // The same request signed (any signature will do) is answered.
    let (status, _, body) = http(
        emu.local_addr(),
        "POST",
        "/",
        &[
            (
                "x-amz-target",
                "KinesisAnalytics_20180523.DescribeApplication",
            ),
            ("content-type", "application/x-amz-json-1.1"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=z",
            ),
        ],
        br#"{"ApplicationName":"busy"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["ApplicationDetail"]["ApplicationStatus"], "RUNNING");

    let calls = emu.calls();
    assert_eq!(calls[0].outcome, "MissingAuthenticationTokenException");
    assert_eq!(calls[0].http_status, 403);
    assert_eq!(calls[1].outcome, "ok");
    emu.shutdown().await;
}

/// A fault naming an application, set through the control API, strikes
/// only that application's calls as the SDK sees them: "busy"'s
/// DescribeApplication is refused, "calm"'s answered; a GetMetricData of
/// calm's queries runs undisturbed, one that also carries a query of busy
/// is struck in whole (the call log says which calls were). An application
/// the scenario does not have is refused with a 400 naming the field and
/// the valid names.
#[tokio::test]
async fn a_fault_for_one_application_strikes_only_its_calls() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_config(&emu).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
    let addr = emu.local_addr();
    let post = |fault: serde_json::Value| async move { post_fault(addr, &fault).await };

    let (status, body) = post(serde_json::json!({
        "operation": "DescribeApplication", "application": "nope", "error": "AccessDenied"
    }))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(r#"application \"nope\" is not an application of the scenario; valid: \"busy\", \"calm\""#),
        "{body}"
    );

    let (status, body) = post(serde_json::json!({
        "operation": "DescribeApplication", "application": "busy", "error": "AccessDenied"
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(serde_json::json!({
        "operation": "GetMetricData", "application": "busy", "error": "ThrottlingException"
    }))
    .await;
    assert_eq!(status, 200, "{body}");

    let describe = |app: &'static str| msf.describe_application().application_name(app).send();
    let err = describe("busy").await.expect_err("busy is refused");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
    describe("calm").await.expect("calm is answered");
    describe("calm")
        .await
        .expect("and again: no count was spent on it");

    let end = now_ms();
    let get = |apps: &[&str]| cpu_of(&cw, apps, end).send();
    let calm = get(&["calm"]).await.expect("calm's queries alone");
    assert_eq!(calm.metric_data_results().len(), 1);
    let merged = get(&["calm", "busy"])
        .await
        .expect_err("busy's query in it");
    assert_eq!(merged.code(), Some("ThrottlingException"));

    let struck: Vec<(String, Option<String>, bool)> = emu
        .calls()
        .iter()
        .map(|c| (c.operation.clone(), c.application.clone(), c.injected))
        .collect();
    let expected = [
        ("DescribeApplication", "busy", true),
        ("DescribeApplication", "calm", false),
        ("DescribeApplication", "calm", false),
        ("GetMetricData", "calm", false),
        ("GetMetricData", "calm", true),
    ]
    .map(|(op, app, injected)| (op.to_owned(), Some(app.to_owned()), injected));
    assert_eq!(struck, expected);
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_faults_show_in_the_sdk_error_and_in_the_call_log() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_config(&emu).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
    let addr = emu.local_addr();

    // Through the control API: the next GetMetricData is throttled.
    let fault = serde_json::json!({"operation": "GetMetricData", "error": "ThrottlingException", "count": 1});
    let (status, body) = post_fault(addr, &fault).await;
    assert_eq!(status, 200, "{body}");
    let end = now_ms();
    let get = || cpu_of(&cw, &["busy"], end).send();
    let err = get().await.expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert!(
        !get()
            .await
            .expect("the fault was for one call")
            .metric_data_results()
            .is_empty()
    );

    // A faulted UpdateApplication does not take effect.
    emu.inject_fault(FaultSpec::error(
        "UpdateApplication",
        "ConcurrentModificationException",
        1,
    ))
    .expect("fault");
    let err = msf
        .update_application()
        .application_name("calm")
        .current_application_version_id(1)
        .application_configuration_update(parallelism_update(2))
        .send()
        .await
        .expect_err("injected")
        .into_service_error();
    assert!(err.is_concurrent_modification_exception(), "{err:?}");
    let d = msf
        .describe_application()
        .application_name("calm")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        d.application_detail().map(|d| d.application_version_id()),
        Some(1)
    );

    // A 500 reaches the SDK as a server error.
    emu.inject_fault(FaultSpec::error(
        "DescribeApplication",
        "InternalFailure",
        1,
    ))
    .expect("fault");
    let err = msf
        .describe_application()
        .application_name("calm")
        .send()
        .await
        .expect_err("injected 500");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));

    // A Delay answers normally, after the delay.
    emu.inject_fault(FaultSpec {
        delay_ms: 300,
        ..FaultSpec::error("ListMetrics", "Delay", 1)
    })
    .expect("fault");
    let started = std::time::Instant::now();
    let listed = cw.list_metrics().send().await.expect("delayed, not failed");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(!listed.metrics().is_empty());

    // The call log, read over HTTP as a test harness would.
    let (status, _, body) = http(addr, "GET", "/_emulator/calls", &[], b"").await;
    assert_eq!(status, 200);
    let log: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let calls = log["calls"].as_array().expect("calls");
    let summary: Vec<(String, String, bool, u64)> = calls
        .iter()
        .map(|c| {
            (
                c["operation"].as_str().unwrap_or_default().to_owned(),
                c["outcome"].as_str().unwrap_or_default().to_owned(),
                c["injected"].as_bool().unwrap_or_default(),
                c["http_status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("GetMetricData", "ThrottlingException", true, 400),
        ("GetMetricData", "ok", false, 200),
        (
            "UpdateApplication",
            "ConcurrentModificationException",
            true,
            400,
        ),
        ("DescribeApplication", "ok", false, 200),
        ("DescribeApplication", "InternalFailure", true, 500),
        ("ListMetrics", "ok", false, 200),
    ];
    let expected: Vec<(String, String, bool, u64)> = expected
        .iter()
        .map(|(o, c, i, s)| (o.to_string(), c.to_string(), *i, *s))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(calls[0]["protocol"], "rpcv2Cbor");
    assert_eq!(calls[0]["application"], "busy");
    assert_eq!(calls[2]["protocol"], "awsJson1_1");

    // No fault is left.
    let (_, _, body) = http(addr, "GET", "/_emulator/faults", &[], b"").await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["faults"],
        serde_json::json!([])
    );
    emu.shutdown().await;
}

/// The version and status DescribeApplication shows of `app`.
async fn version_and_status(msf: &aws_sdk_kinesisanalyticsv2::Client, app: &str) -> (i64, String) {
    let d = msf
        .describe_application()
        .application_name(app)
        .send()
        .await
        .expect("describe");
    let d = d.application_detail().expect("a detail");
    (
        d.application_version_id(),
        d.application_status().as_str().to_owned(),
    )
}

#[tokio::test]
async fn an_after_effect_fault_fails_the_sdk_call_of_an_update_that_took_effect() {
    // Each loss on a fresh emulator: calm at version 1, RUNNING.
    let losses = [
        (
            "500 after the effect",
            serde_json::json!({"operation": "UpdateApplication", "error": "InternalFailure", "after_effect": true, "count": 1}),
            "InternalFailure",
        ),
        (
            "the connection dropped after the effect",
            serde_json::json!({"operation": "UpdateApplication", "error": "Drop", "after_effect": true, "count": 1}),
            "Drop",
        ),
        (
            "the answer held past the attempt timeout",
            serde_json::json!({"operation": "UpdateApplication", "error": "Delay", "delay_ms": 1500, "after_effect": true, "count": 1}),
            "ok",
        ),
    ];
    for (what, fault, logged) in losses {
        let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
        let config = sdk_loader(&emu)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(std::time::Duration::from_millis(400))
                    .build(),
            )
            .load()
            .await;
        let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
        let (status, body) = post_fault(emu.local_addr(), &fault).await;
        assert_eq!(status, 200, "{what}: {body}");
        let err = msf
            .update_application()
            .application_name("calm")
            .current_application_version_id(1)
            .application_configuration_update(parallelism_update(2))
            .send()
            .await
            .expect_err(what);
        match logged {
            "InternalFailure" => assert_eq!(
                err.raw_response().map(|r| r.status().as_u16()),
                Some(500),
                "{what}: {err:?}"
            ),
            "Drop" => assert!(
                matches!(
                    err,
                    aws_sdk_kinesisanalyticsv2::error::SdkError::DispatchFailure(_)
                ),
                "{what}: the SDK sees no answer at all: {err:?}"
            ),
            _ => assert!(
                matches!(
                    err,
                    aws_sdk_kinesisanalyticsv2::error::SdkError::TimeoutError(_)
                ),
                "{what}: {err:?}"
            ),
        }
        // The SDK call failed, yet the update took effect.
        assert_eq!(
            version_and_status(&msf, "calm").await,
            (2, "UPDATING".to_owned()),
            "{what}"
        );
        let calls = emu.calls();
        let update = calls
            .iter()
            .find(|c| c.operation == "UpdateApplication")
            .expect("the update is logged");
        assert_eq!(
            (update.outcome.as_str(), update.injected, update.took_effect),
            (logged, true, true),
            "{what}"
        );
        assert!(
            calls
                .iter()
                .filter(|c| c.operation != "UpdateApplication")
                .all(|c| !c.took_effect && !c.injected),
            "{what}: {calls:?}"
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn the_sdks_own_retry_of_an_update_whose_answer_was_lost_is_refused() {
    // What defect 1 of issue 9 is made of: with the agent's retry policy
    // (3 attempts), attempt 1 takes effect and its answer is lost, attempt
    // 2 quotes the same version and finds the application UPDATING.
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_loader(&emu)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
    emu.inject_fault(FaultSpec {
        after_effect: true,
        ..FaultSpec::error("UpdateApplication", "InternalFailure", 1)
    })
    .expect("fault");
    let err = msf
        .update_application()
        .application_name("calm")
        .current_application_version_id(1)
        .application_configuration_update(parallelism_update(2))
        .send()
        .await
        .expect_err("the retry is refused")
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");
    assert_eq!(
        version_and_status(&msf, "calm").await,
        (2, "UPDATING".to_owned())
    );
    let updates: Vec<(String, bool, bool)> = emu
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateApplication")
        .map(|c| (c.outcome.clone(), c.injected, c.took_effect))
        .collect();
    assert_eq!(
        updates,
        [
            ("InternalFailure".to_owned(), true, true),
            ("ResourceInUseException".to_owned(), false, false)
        ]
    );
    emu.shutdown().await;
}

/// The fix of defect 1 of issue 9, through the real SDK: with the agent's
/// own configuration (3 attempts for every other call), the MSF target
/// sends UpdateApplication once; a lost answer is a transient error for the
/// controller to resolve, never a retried attempt's ResourceInUse.
#[tokio::test]
async fn the_msf_target_sends_update_application_once_even_when_its_answer_is_lost() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_loader(&emu).load().await;
    let target = MsfTarget::new(&config);
    // One application per round, so that no round waits for an update.
    for (app, error) in [("calm", "InternalFailure"), ("busy", "ThrottlingException")] {
        emu.inject_fault(FaultSpec {
            after_effect: true,
            ..FaultSpec::error("UpdateApplication", error, 1)
        })
        .expect("fault");
        let current = target.describe(app).await.expect("describe");
        let kpu = current.kpu() + 1;
        let failed = target
            .rescale(app, kpu, &current)
            .await
            .expect_err("the answer is lost");
        assert!(
            matches!(
                failed,
                TargetError::Transient(_) | TargetError::Throttled(_)
            ),
            "{error}: {failed:?}"
        );
        let after = target.describe(app).await.expect("describe");
        assert_eq!(after.version_id, current.version_id + 1, "{error}");
        assert_eq!(after.status, AppStatus::Updating, "{error}");
    }
    let updates: Vec<(String, bool)> = emu
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateApplication")
        .map(|c| (c.outcome.clone(), c.took_effect))
        .collect();
    assert_eq!(
        updates,
        [
            ("InternalFailure".to_owned(), true),
            ("ThrottlingException".to_owned(), true)
        ],
        "one attempt each"
    );
    // DescribeApplication still gets the SDK's retries.
    emu.inject_fault(FaultSpec::error(
        "DescribeApplication",
        "InternalFailure",
        1,
    ))
    .expect("fault");
    target.describe("calm").await.expect("retried past one 500");
    emu.shutdown().await;
}

/// A request held in the network past its client's deadline still reaches
/// the service (`lands_late`): it runs when the wait ends, and the call log
/// marks its client gone. Whichever arrives first, it or the update
/// decided again after a read-back found nothing moved, both quote the
/// same version id, so the service takes the first and refuses the other:
/// one update takes effect, never two.
#[tokio::test]
async fn a_request_landing_after_its_client_gave_up_is_fenced_by_the_version_id() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_loader(&emu)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(std::time::Duration::from_millis(300))
                .build(),
        )
        .load()
        .await;
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
    // Only a request held before the effect can land late.
    let (status, body) = post_fault(
        emu.local_addr(),
        &serde_json::json!({
            "operation": "UpdateApplication", "error": "Drop", "after_effect": true,
            "lands_late": true
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(
            r#"lands_late is for a Delay before the effect (error \"Delay\", no after_effect)"#
        ),
        "{body}"
    );
    let update = |app: &'static str| {
        msf.update_application()
            .application_name(app)
            .current_application_version_id(1)
            .application_configuration_update(parallelism_update(2))
            .send()
    };
    for (app, late_first) in [("calm", false), ("busy", true)] {
        emu.inject_fault(FaultSpec {
            delay_ms: 1_500,
            lands_late: true,
            ..FaultSpec::error("UpdateApplication", "Delay", 1).for_application(app)
        })
        .expect("fault");
        update(app)
            .await
            .expect_err("the client gives up after 300 ms");
        assert_eq!(
            version_and_status(&msf, app).await,
            (1, "RUNNING".to_owned()),
            "{app}: read back before the request lands, nothing moved"
        );
        if late_first {
            tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
            assert_eq!(version_and_status(&msf, app).await.0, 2, "{app}: landed");
            update(app)
                .await
                .expect_err("the update decided again is refused: the late one took effect");
        } else {
            update(app)
                .await
                .expect("the update decided again takes effect");
            tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
        }
        assert_eq!(
            version_and_status(&msf, app).await.0,
            2,
            "{app}: one update took effect"
        );
    }
    let updates: Vec<(Option<String>, bool, bool, bool)> = emu
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateApplication")
        .map(|c| {
            let fenced = ["ResourceInUseException", "ConcurrentModificationException"]
                .contains(&c.outcome.as_str());
            assert!(fenced || c.outcome == "ok", "{c:?}");
            (c.application.clone(), c.took_effect, fenced, c.client_gone)
        })
        .collect();
    let calm = Some("calm".to_owned());
    let busy = Some("busy".to_owned());
    assert_eq!(
        updates,
        [
            // The update decided again, then the late one, fenced.
            (calm.clone(), true, false, false),
            (calm, false, true, true),
            // The late one, landing first, then the update decided again,
            // fenced.
            (busy.clone(), true, false, true),
            (busy, false, true, false),
        ]
    );
    emu.shutdown().await;
}

/// A refused identity is the `permission` class for the MSF target too,
/// naming the action to grant.
#[tokio::test]
async fn the_msf_target_classifies_refused_permissions() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let target = MsfTarget::new(&sdk_config(&emu).await);
    let mut denied = FaultSpec::error("DescribeApplication", "AccessDeniedException", 1);
    denied.message = Some(
        "User: arn:aws:iam::123456789012:user/a is not authorized to perform: kinesisanalytics:DescribeApplication on resource: calm".to_owned(),
    );
    emu.inject_fault(denied).expect("fault");
    let error = target.describe("calm").await.expect_err("denied");
    assert!(
        matches!(&error, TargetError::Permission(m)
            if m.contains("missing permission kinesisanalytics:DescribeApplication")),
        "{error:?}"
    );
    for code in ["UnrecognizedClientException", "ExpiredTokenException"] {
        emu.inject_fault(FaultSpec::error("DescribeApplication", code, 1))
            .expect("fault");
        let error = target.describe("calm").await.expect_err(code);
        assert!(
            matches!(&error, TargetError::Permission(m) if m.contains(code)),
            "{error:?}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn permission_faults_reach_the_sdk_as_aws_answers_them() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let config = sdk_config(&emu).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let msf = aws_sdk_kinesisanalyticsv2::Client::new(&config);
    for (error, status) in [
        ("AccessDenied", 400),
        ("UnrecognizedClientException", 400),
        ("ExpiredTokenException", 400),
    ] {
        emu.inject_fault(FaultSpec::error("DescribeApplication", error, 1))
            .expect("fault");
        let err = msf
            .describe_application()
            .application_name("calm")
            .send()
            .await
            .expect_err(error);
        let code = if error == "AccessDenied" {
            "AccessDeniedException"
        } else {
            error
        };
        assert_eq!(err.code(), Some(code));
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(status)
        );
        if error == "AccessDenied" {
            assert!(
                err.message()
                    .is_some_and(|m| m.contains("kinesisanalytics:DescribeApplication")),
                "{err:?}"
            );
        }
    }
    for (error, code, status) in [
        ("AccessDeniedException", "AccessDenied", 403),
        (
            "UnrecognizedClientException",
            "UnrecognizedClientException",
            400,
        ),
        ("ExpiredTokenException", "ExpiredTokenException", 400),
    ] {
        emu.inject_fault(FaultSpec::error("ListMetrics", error, 1))
            .expect("fault");
        let err = cw.list_metrics().send().await.expect_err(error);
        assert_eq!(err.code(), Some(code), "{err:?}");
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(status)
        );
        if code == "AccessDenied" {
            assert!(
                err.message()
                    .is_some_and(|m| m.contains("cloudwatch:ListMetrics")),
                "{err:?}"
            );
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn the_control_api_changes_the_load_and_shows_the_state() {
    let (emu, _dir) = start(600_000, 1.0, 100).await;
    let addr = emu.local_addr();
    let (status, _, body) = http(addr, "GET", "/_emulator/health", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );

    let (status, _, _) = http(
        addr,
        "POST",
        "/_emulator/load",
        &[],
        br#"{"application": "calm", "factor": 0.5}"#,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) = http(
        addr,
        "POST",
        "/_emulator/load",
        &[],
        br#"{"application": "nope", "factor": 2}"#,
    )
    .await;
    assert_eq!(status, 404);
    let error = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    let error = error["error"].as_str().unwrap_or_default();
    assert!(
        error
            == "ResourceNotFoundException: Application nope does not exist (valid: \"busy\", \"calm\")",
        "{error}"
    );
    let (status, _, _) = http(
        addr,
        "POST",
        "/_emulator/faults",
        &[],
        br#"{"operation": "UpdateApplication", "error": "Delay"}"#,
    )
    .await;
    assert_eq!(status, 400, "a Delay without delay_ms");

    // Two seconds later the new load shows in the model.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = http(addr, "GET", "/_emulator/state", &[], b"").await;
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let calm = state["applications"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["name"] == "calm"))
        .expect("calm");
    assert_eq!(calm["load_factor"], 0.5);
    assert_eq!(calm["lambda"], 500.0);
    assert_eq!(calm["status"], "RUNNING");
    assert!(calm["model_time_secs"].as_u64().unwrap() >= 602);
    let busy = state["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "busy")
        .unwrap();
    assert!(
        busy["backlog"].as_f64().unwrap() > 290_000.0,
        "1.5 x capacity for 10 minutes"
    );
    assert!(state["scores"]["kpu_hours"].as_f64().unwrap() > 0.0);
    emu.shutdown().await;
}

#[tokio::test]
async fn cloudwatch_speaks_json_1_0_as_boto3_sends_it() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let end = now_ms().div_euclid(60_000) * 60_000 - 600_000;
    let body = serde_json::json!({
        "MetricDataQueries": [{
            "Id": "cpu",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/KinesisAnalytics",
                    "MetricName": "containerCPUUtilization",
                    "Dimensions": [{"Name": "Application", "Value": "calm"}]
                },
                "Period": 60,
                "Stat": "Average"
            }
        }],
        "StartTime": (end - 600_000) as f64 / 1000.0,
        "EndTime": end / 1000,
        "ScanBy": "TimestampAscending"
    });
    let headers = [
        (
            "x-amz-target",
            "GraniteServiceVersion20100801.GetMetricData",
        ),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amzn-query-mode", "true"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=z",
        ),
    ];
    let (status, response_headers, answer) = http(
        emu.local_addr(),
        "POST",
        "/",
        &headers,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        response_headers["content-type"],
        "application/x-amz-json-1.0"
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    let result = &answer["MetricDataResults"][0];
    assert_eq!(result["Id"], "cpu");
    assert_eq!(result["StatusCode"], "Complete");
    let stamps: Vec<i64> = result["Timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(stamps.len(), 10);
    assert_eq!(stamps[0] * 1000, end - 600_000, "epoch seconds");
    // 100 records/s against a capacity of 1000: CPU 5 + 95 x 0.1.
    assert!(
        result["Values"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| (v.as_f64().unwrap() - 14.5).abs() < 1e-9)
    );

    // An error: HTTP 400, __type, and the query-compatible header.
    let bad = serde_json::json!({"MetricDataQueries": [], "StartTime": end / 1000, "EndTime": end / 1000 - 60});
    let (status, response_headers, answer) = http(
        emu.local_addr(),
        "POST",
        "/",
        &headers,
        bad.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        response_headers["x-amzn-query-error"],
        "InvalidParameterValue;Sender"
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(answer["__type"], "InvalidParameterValue");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("StartTime"))
    );
    emu.shutdown().await;
}

/// A refused identity is its own class through the real SDK, with the
/// action to grant named, and is told apart from throttling and 5xx.
#[tokio::test]
async fn permission_faults_reach_the_adapter_as_permission_errors() {
    let (emu, _dir) = start(HOUR_MS, 1.0, 100).await;
    let source = CloudWatchSource::new(&sdk_config(&emu).await);
    let query = model_query("busy", "containerCPUUtilization", "Average", 60);
    let end = now_ms();
    let fetch = || source.fetch(std::slice::from_ref(&query), end - 600_000, end);

    let mut denied = FaultSpec::error("GetMetricData", "AccessDeniedException", 1);
    denied.http_status = Some(403);
    denied.message = Some(
        "User: arn:aws:sts::123456789012:assumed-role/flinkscale/i-0 is not authorized to perform: cloudwatch:GetMetricData because no identity-based policy allows the cloudwatch:GetMetricData action".to_owned(),
    );
    emu.inject_fault(denied).expect("fault");
    let error = fetch().await.expect_err("denied");
    assert!(
        matches!(&error, MetricsError::Permission(m)
            // CloudWatch spells it AccessDenied (query-compatible), as the
            // emulator now answers.
            if m.contains("AccessDenied: missing permission cloudwatch:GetMetricData")),
        "{error:?}"
    );

    emu.inject_fault(FaultSpec::error(
        "GetMetricData",
        "ExpiredTokenException",
        1,
    ))
    .expect("fault");
    let error = fetch().await.expect_err("expired");
    assert!(
        matches!(&error, MetricsError::Permission(m) if m.contains("ExpiredTokenException")),
        "{error:?}"
    );

    emu.inject_fault(FaultSpec::error("GetMetricData", "InternalFailure", 1))
        .expect("fault");
    let error = fetch().await.expect_err("5xx");
    assert!(matches!(&error, MetricsError::Source(_)), "{error:?}");

    // The faults were for one call each.
    assert!(!fetch().await.expect("clean")[0].points.is_empty());
    let outcomes: Vec<_> = emu.calls().iter().map(|c| c.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            "AccessDenied",
            "ExpiredTokenException",
            "InternalFailure",
            "ok"
        ]
    );
    emu.shutdown().await;
}

/// CloudWatch metric math through the project's adapter and the real SDK:
/// a metric configured as an `expression` goes out as an Expression query
/// with its inputs as `ReturnData = false` MetricStat queries, and the
/// emulator answers it with the arithmetic of the model's own series.
/// Fails on main, where the adapter had no expression queries and the
/// emulator refused every Expression.
#[tokio::test]
async fn metric_math_expressions_through_the_sdk() {
    let (emu, _dir) = start(3 * HOUR_MS, 1.0, 500).await;
    let config = sdk_config(&emu).await;
    let end = now_ms().div_euclid(60_000) * 60_000 - 600_000;
    let start = end - HOUR_MS;
    let busy = model_query("busy", "numRecordsInPerSecond", "Sum", 60);
    let calm = MetricQuery {
        id: "calm".to_owned(),
        ..model_query("calm", "numRecordsInPerSecond", "Sum", 60)
    };
    let math = |id: &str, text: &str| math_query(id, text, vec![busy.clone(), calm.clone()]);
    let queries = [
        math("total", "numRecordsInPerSecond + calm"),
        math("share", "calm / SUM([numRecordsInPerSecond, calm]) * 100"),
        math("filled", "FILL(calm, 7) - calm"),
    ];
    let source = CloudWatchSource::new(&config);
    let series = source
        .fetch(&queries, start, end)
        .await
        .expect("an expression query is answered");
    let (b, c) = emu.with_world(|w| {
        (
            w.metric_data(&busy, start, end).unwrap(),
            w.metric_data(&calm, start, end).unwrap(),
        )
    });
    assert_eq!(b.len(), 60);
    let total: Vec<(i64, f64)> = series[0]
        .points
        .iter()
        .map(|p| (p.timestamp_ms, p.value))
        .collect();
    let expected: Vec<(i64, f64)> = b
        .iter()
        .zip(&c)
        .map(|(x, y)| (x.timestamp_ms, x.value + y.value))
        .collect();
    assert_eq!(total, expected);
    // calm processes 100 records/s, busy about 1000 (its 1 KPU's capacity).
    for (p, (x, y)) in series[1].points.iter().zip(b.iter().zip(&c)) {
        let share = y.value / (x.value + y.value) * 100.0;
        assert!((p.value - share).abs() < 1e-9, "{p:?} vs {share}");
    }
    assert_eq!(series[1].points.len(), 60);
    assert!(series[2].points.iter().all(|p| p.value == 0.0));

    // What the emulator does not support is refused by name.
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let error = cw
        .get_metric_data()
        .metric_data_queries(
            data_query("m1", "busy", "KPUs", "Average", 60).to_builder_return_false(),
        )
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("e1")
                .expression("RATE(m1)")
                .period(60)
                .build(),
        )
        .start_time(DateTime::from_millis(start))
        .end_time(DateTime::from_millis(end))
        .send()
        .await
        .expect_err("an unknown function");
    assert_eq!(error.code(), Some("InvalidParameterValue"));
    assert!(
        error
            .message()
            .is_some_and(|m| m.contains("unknown function `RATE`")),
        "{error:?}"
    );
    emu.shutdown().await;
}

trait ReturnFalse {
    fn to_builder_return_false(self) -> MetricDataQuery;
}

impl ReturnFalse for MetricDataQuery {
    /// The same query with `ReturnData = false`.
    fn to_builder_return_false(mut self) -> MetricDataQuery {
        self.return_data = Some(false);
        self
    }
}

/// An emulator publishing 15 days of history (started a whole period
/// phase in, so the test's minutes are whole), with `page_size` if given,
/// and a CloudWatch source over the SDK against it.
async fn history_emulator(
    dir: &std::path::Path,
    page_size: Option<usize>,
) -> (EmulatorHandle, CloudWatchSource) {
    let file = common::history_scenario(dir, 15);
    tokio::time::sleep(common::until_start_phase()).await;
    let mut options = EmulatorOptions::new(file);
    if let Some(page_size) = page_size {
        options.page_size = page_size;
    }
    options.start_epoch_ms = Some(now_ms() - HOUR_MS);
    let emu = emulator::start(options).await.expect("emulator starts");
    let source = CloudWatchSource::new(&sdk_config(&emu).await);
    (emu, source)
}

/// Five of the model's metrics, each its 60 s Average.
fn five_model_queries() -> Vec<MetricQuery> {
    [
        "containerCPUUtilization",
        "busyTimeMsPerSecond",
        "numRecordsInPerSecond",
        "millisBehindLatest",
        "KPUs",
    ]
    .iter()
    .map(|m| model_query("app", m, "Average", 60))
    .collect()
}

/// The history span the controller reads for 15 days now: up to its usual
/// window, the last half hour of whole minutes.
fn fifteen_days() -> (i64, i64) {
    let now = now_ms();
    let window_start = now.div_euclid(60_000) * 60_000 - 1_800_000;
    flinkscale::metrics::history::span(now, window_start, 15).expect("15 days to read")
}

/// Every series of `history` has every minute of `[start, end)` once,
/// oldest first.
fn every_minute(history: &[flinkscale::metrics::Series], start: i64, end: i64) {
    let minutes = (end - start) / 60_000;
    for series in history {
        let id = &series.query.id;
        let stamps: Vec<i64> = series.points.iter().map(|p| p.timestamp_ms).collect();
        assert_eq!(stamps.len() as i64, minutes, "{id}: one point a minute");
        assert!(
            stamps.windows(2).all(|w| w[1] - w[0] == 60_000),
            "{id}: oldest first, no gap, no repeat"
        );
        assert_eq!(stamps.first(), Some(&start), "{id}");
    }
}

/// 15 days of history through the SDK, as the controller reads it at a
/// policy's first evaluation: the emulator serves the past the scenario
/// publishes before t = 0 and the run since, GetMetricData pages at the
/// real 100,800 datapoints and the source follows NextToken, and every
/// 1-minute period of the span comes back once, oldest first.
#[tokio::test]
async fn fifteen_days_of_history_come_back_in_pages_through_the_sdk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (emu, source) = history_emulator(
        dir.path(),
        Some(flinkscale::metrics::history::MAX_DATAPOINTS_PER_CALL),
    )
    .await;
    let queries = five_model_queries();
    let (start, end) = fifteen_days();
    let (expected, pages) = flinkscale::metrics::history::size(&queries, start, end);
    assert!(pages >= 2, "{expected} datapoints need {pages} pages");

    let history = flinkscale::metrics::history::read(&source, &queries, start, end)
        .await
        .expect("history read");
    every_minute(&history, start, end);
    // The past follows the daily cycle: its input peaks at noon of the
    // trace (3000 records/s) and is lowest at midnight.
    let rates = &history[2].points;
    let peak = rates.iter().map(|p| p.value).fold(0.0, f64::max);
    let low = rates.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    assert!((peak - 3000.0).abs() < 60.0, "peak {peak}");
    assert!((low - 1000.0).abs() < 60.0, "low {low}");
    let calls = emu
        .calls()
        .into_iter()
        .filter(|c| c.operation == "GetMetricData")
        .count();
    assert_eq!(calls, pages, "one call per page of 100,800");
}

/// 15 days of history with metric math: CloudWatch pages no request that
/// performs metric math (the emulator, as it does, answers the first
/// 100,800 datapoints, PartialData, and no NextToken), so five metrics and
/// an expression over 15 days (129,600 datapoints) would lose a fifth of
/// their past in one call. The source makes such a call in spans within
/// the limit, and every 1-minute period of every series comes back once,
/// oldest first, the expression's included.
#[tokio::test]
async fn fifteen_days_of_history_with_metric_math_come_back_whole_through_the_sdk() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The emulator's default page size (100) pages plain requests; one
    // with metric math is answered whole up to 100,800, as CloudWatch's.
    let (emu, source) = history_emulator(dir.path(), None).await;
    let mut queries = five_model_queries();
    queries.push(math_query(
        "doubled",
        "numRecordsInPerSecond * 2",
        vec![model_query("app", "numRecordsInPerSecond", "Average", 60)],
    ));
    let (start, end) = fifteen_days();
    let (expected, _) = flinkscale::metrics::history::size(&queries, start, end);
    assert!(
        expected > flinkscale::metrics::history::MAX_DATAPOINTS_PER_CALL,
        "{expected} datapoints: more than one call answers"
    );

    let history = flinkscale::metrics::history::read(&source, &queries, start, end)
        .await
        .expect("history read");
    every_minute(&history, start, end);
    for (rate, doubled) in history[2].points.iter().zip(&history[5].points) {
        assert_eq!(doubled.value, rate.value * 2.0, "at {}", rate.timestamp_ms);
    }
    let calls = emu
        .calls()
        .into_iter()
        .filter(|c| c.operation == "GetMetricData")
        .count();
    assert!(calls >= 2, "{calls} calls");
}
