//! Tests of the workload model with hand-computed numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::publish::nearest_rank;
use super::score::{Clairvoyant, score};
use super::*;
use crate::metrics::MetricQuery;
use crate::target::AppStatus;

/// 2023-11-14T22:13:00Z, a whole minute.
const START_MS: i64 = 1_699_999_980_000;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(close(actual, expected), "{what}: {actual} != {expected}");
}

/// One application "app" under `trace`, no noise, everything else default.
fn world_with(trace: Trace, tune: impl FnOnce(&mut AppParams)) -> World {
    let mut scenario = Scenario::single("test", trace, 3600);
    scenario.applications[0].params.noise_percent = 0.0;
    tune(&mut scenario.applications[0].params);
    World::from_scenario(&scenario, START_MS)
}

fn query(
    namespace: &str,
    name: &str,
    dims: &[(&str, &str)],
    stat: &str,
    period: u32,
) -> MetricQuery {
    MetricQuery {
        id: "q".to_owned(),
        namespace: namespace.to_owned(),
        metric_name: name.to_owned(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        statistic: stat.to_owned(),
        period_secs: period,
        expression: None,
    }
}

fn msf(name: &str, stat: &str, period: u32) -> MetricQuery {
    query(
        "AWS/KinesisAnalytics",
        name,
        &[("Application", "app")],
        stat,
        period,
    )
}

/// Per-second values of a metric over the whole run so far, period 1.
fn per_second(world: &World, q: &MetricQuery) -> Vec<(i64, f64)> {
    world
        .metric_data(q, START_MS, world.now_ms())
        .expect("valid query")
        .into_iter()
        .map(|d| ((d.timestamp_ms - START_MS) / 1000, d.value))
        .collect()
}

#[test]
fn constant_overload_gives_backlog_500t_and_lag_t_over_3() {
    let mut world = world_with(Trace::constant(1500.0), |_| {});
    world.advance_to(600);
    let h = world.history("app").expect("app exists");
    for i in 0..600 {
        let t = (i + 1) as f64; // sampled at the step's end
        assert_close(h.backlog[i], 500.0 * t, "backlog");
        assert_close(h.lag_secs[i], t / 3.0, "lag");
        assert_close(h.processed[i], 1000.0, "processed");
    }
    // Published as milliseconds by MSF and Kinesis alike.
    let lag = per_second(&world, &{
        let mut q = msf("millisBehindLatest", "Maximum", 1);
        q.period_secs = 60;
        q
    });
    // Visible up to now - 60 s delay: periods [0,60) .. [480,540).
    assert_eq!(lag.len(), 9);
    assert_close(lag[0].1, 1000.0 * 60.0 / 3.0, "max lag of the first minute");
}

#[test]
fn fifo_lag_is_exact_across_a_pause_in_arrivals() {
    // lambda: 3000 at step 0, 0 at 1 and 2, 3000 at 3, then 0. Capacity 1000,
    // UPDATING during steps 1..=3. The oldest unprocessed record at each end:
    // t=1: P=1000 of 3000 arrived uniformly in [0,1) -> arrived at 1/3.
    // t=4: P=1000 still -> 1/3, lag 11/3.
    // t=5: P=2000 -> 2/3, lag 13/3.
    // t=6: P=3000, all of [0,1) done; the next arrived at 3 -> lag 3.
    // t=7: P=4000 -> 3 + 1/3, lag 11/3.
    let trace = Trace::from_points(vec![
        (0.0, 3000.0),
        (1.0, 0.0),
        (2.0, 0.0),
        (3.0, 3000.0),
        (4.0, 0.0),
    ])
    .expect("valid trace");
    let mut world = world_with(trace, |p| p.update_secs = 3);
    world.advance_to(1);
    assert_close(
        world.history("app").expect("app").lag_secs[0],
        2.0 / 3.0,
        "lag at 1",
    );
    world
        .update_application("app", 1, Some(1), None, None)
        .expect("update accepted");
    world.advance_to(10);
    let h = world.history("app").expect("app");
    let expected = [
        (0, 2.0 / 3.0, 2000.0),
        (1, 5.0 / 3.0, 2000.0),
        (2, 8.0 / 3.0, 2000.0),
        (3, 11.0 / 3.0, 5000.0),
        (4, 13.0 / 3.0, 4000.0),
        (5, 3.0, 3000.0),
        (6, 11.0 / 3.0, 2000.0),
        (7, 13.0 / 3.0, 1000.0),
        (8, 0.0, 0.0),
    ];
    for (i, lag, backlog) in expected {
        assert_close(h.lag_secs[i], lag, &format!("lag at {}", i + 1));
        assert_close(h.backlog[i], backlog, &format!("backlog at {}", i + 1));
    }
}

#[test]
fn usl_capacity_matches_hand_computation() {
    let params = AppParams::default();
    assert_close(params.capacity(1), 1000.0, "C(1)");
    // 2000 / (1 + 0.02 + 0.0002*2*1)
    assert_close(params.capacity(2), 2000.0 / 1.0204, "C(2)");
    // 10000 / (1 + 0.02*9 + 0.0002*10*9)
    assert_close(params.capacity(10), 10000.0 / 1.198, "C(10)");
    let capped = AppParams {
        max_parallelism: 4,
        ..AppParams::default()
    };
    // Beyond max_parallelism more subtasks add nothing.
    assert_close(capped.capacity(8), capped.capacity(4), "C(8) at max 4");
    assert_close(capped.capacity(4), 4000.0 / 1.0624, "C(4)");
}

#[test]
fn step_capacity_follows_the_parallelism_in_effect() {
    let mut world = world_with(Trace::constant(100_000.0), |p| {
        p.initial_kpu = 2;
        p.parallelism_per_kpu = 2;
    });
    world.advance_to(1);
    let h = world.history("app").expect("app");
    assert_close(
        h.capacity[0],
        AppParams::default().capacity(4),
        "p = kpu x ppk",
    );
    assert_eq!(h.kpu[0], 2);
}

/// An update past `rollback_above_parallelism` is accepted, then rolled
/// back: its record says so (the report draws it hollow and the text
/// timeline says it), and one that starts says it took.
#[test]
fn a_rolled_back_update_is_recorded_as_rolled_back() {
    let mut world = world_with(Trace::constant(500.0), |p| {
        p.update_secs = 5;
        p.rollback_above_parallelism = Some(3);
    });
    world.advance_to(10);
    world
        .update_application("app", 1, Some(4), None, None)
        .expect("accepted");
    world.advance_to(30);
    let after = world.describe("app").expect("app");
    assert_eq!((after.status, after.kpu), (AppStatus::Running, 1));
    world
        .update_application("app", after.version_id, Some(2), None, None)
        .expect("accepted");
    world.advance_to(40);
    let updates = &world.history("app").expect("app").updates;
    assert_eq!(
        updates
            .iter()
            .map(|u| (u.to_kpu, u.rolled_back))
            .collect::<Vec<_>>(),
        [(4, true), (2, false)]
    );
}

#[test]
fn updating_processes_nothing_and_hides_the_jobs_metrics() {
    let sources = SourceNames::derived("app");
    let mut world = world_with(Trace::constant(1500.0), |p| {
        p.update_secs = 5;
        p.metric_delay_secs = 0;
    });
    world.advance_to(10);
    let before = world.describe("app").expect("app");
    assert_eq!(
        (before.status, before.kpu, before.version_id),
        (AppStatus::Running, 1, 1)
    );
    let during = world
        .update_application("app", 1, Some(4), None, None)
        .expect("update accepted");
    assert_eq!(
        (during.status, during.kpu, during.version_id),
        (AppStatus::Updating, 1, 2)
    );
    world.advance_to(14);
    assert_eq!(
        world.describe("app").expect("app").status,
        AppStatus::Updating
    );
    world.advance_to(15);
    let after = world.describe("app").expect("app");
    assert_eq!(
        (after.status, after.parallelism, after.kpu),
        (AppStatus::Running, 4, 4)
    );
    world.advance_to(20);

    let h = world.history("app").expect("app");
    for i in 10..15 {
        assert!(h.updating[i], "step {i} is UPDATING");
        assert_eq!(h.processed[i], 0.0, "nothing processed at step {i}");
        assert_eq!(h.billed_kpu[i], 4, "billed the larger KPU at step {i}");
    }
    // The backlog is kept: 500/s for 10 s, then 1500/s for 5 s.
    assert_close(h.backlog[14], 5000.0 + 7500.0, "backlog after the update");
    assert!(
        !h.updating[15] && h.processed[15] > 1500.0,
        "catches up after"
    );
    // KPU is sampled at the step's end: the last UPDATING step ends RUNNING.
    assert_eq!(&h.kpu[9..16], &[1, 1, 1, 1, 1, 4, 4]);

    let seconds = |q: &MetricQuery| -> Vec<i64> {
        per_second(&world, q).into_iter().map(|(t, _)| t).collect()
    };
    let running: Vec<i64> = (0..10).chain(15..20).collect();
    let all: Vec<i64> = (0..20).collect();
    for name in [
        "containerCPUUtilization",
        "busyTimeMsPerSecond",
        "numRecordsInPerSecond",
        "millisBehindLatest",
        "records_lag_max",
    ] {
        assert_eq!(seconds(&msf(name, "Average", 1)), running, "{name}");
    }
    assert_eq!(seconds(&msf("KPUs", "Average", 1)), all, "KPUs");
    let kinesis = query(
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
        &[("StreamName", &sources.stream_name)],
        "Maximum",
        1,
    );
    assert_eq!(seconds(&kinesis), all);
    let efo = query(
        "AWS/Kinesis",
        "SubscribeToShardEvent.MillisBehindLatest",
        &[
            ("StreamName", &sources.stream_name),
            ("ConsumerName", &sources.consumer_name),
        ],
        "Maximum",
        1,
    );
    assert_eq!(seconds(&efo), all);
    let kafka_dims = [
        ("Cluster Name", sources.cluster_name.as_str()),
        ("Consumer Group", sources.consumer_group.as_str()),
        ("Topic", sources.topic.as_str()),
    ];
    let sum_lag = per_second(
        &world,
        &query("AWS/Kafka", "SumOffsetLag", &kafka_dims, "Maximum", 1),
    );
    assert_eq!(sum_lag.len(), 20);
    assert_close(sum_lag[14].1, 12_500.0, "SumOffsetLag during the update");
    let max_lag = per_second(
        &world,
        &query("AWS/Kafka", "MaxOffsetLag", &kafka_dims, "Maximum", 1),
    );
    assert_close(
        max_lag[14].1,
        12_500.0 / 256.0,
        "MaxOffsetLag = backlog / 256",
    );
}

#[test]
fn a_period_becomes_visible_only_after_the_delay() {
    let mut world = world_with(Trace::constant(500.0), |_| {});
    let q = msf("numRecordsInPerSecond", "Sum", 60);
    world.advance_to(119);
    assert!(per_second(&world, &q).is_empty(), "[0,60) hidden until 120");
    world.advance_to(120);
    assert_eq!(per_second(&world, &q), vec![(0, 30_000.0)]);
    world.advance_to(179);
    assert_eq!(per_second(&world, &q).len(), 1);
    world.advance_to(180);
    assert_eq!(per_second(&world, &q).len(), 2);
}

#[test]
fn periods_are_aligned_to_the_epoch() {
    // Start 30 s into a minute: the first minute holds 30 samples.
    let mut scenario = Scenario::single("t", Trace::constant(500.0), 600);
    scenario.applications[0].params.metric_delay_secs = 0;
    let mut world = World::from_scenario(&scenario, START_MS + 30_000);
    world.advance_to(150);
    let points = world
        .metric_data(&msf("KPUs", "SampleCount", 60), START_MS, world.now_ms())
        .expect("valid");
    let got: Vec<(i64, f64)> = points
        .iter()
        .map(|d| (d.timestamp_ms - START_MS, d.value))
        .collect();
    assert_eq!(got, vec![(0, 30.0), (60_000, 60.0), (120_000, 60.0)]);
}

#[test]
fn statistics_aggregate_the_per_second_samples() {
    // lambda = 10 t with ample capacity: numRecordsInPerSecond is 10 t.
    let trace = Trace::from_points(vec![(0.0, 0.0), (100.0, 1000.0)]).expect("valid");
    let mut world = world_with(trace, |p| {
        p.initial_kpu = 4;
        p.metric_delay_secs = 0;
    });
    world.advance_to(20);
    let value = |stat: &str| -> Vec<f64> {
        per_second(&world, &msf("numRecordsInPerSecond", stat, 10))
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    // Samples of [0,10): 0, 10, ..., 90; of [10,20): 100, ..., 190.
    assert_eq!(value("Average"), vec![45.0, 145.0]);
    assert_eq!(value("Maximum"), vec![90.0, 190.0]);
    assert_eq!(value("Minimum"), vec![0.0, 100.0]);
    assert_eq!(value("Sum"), vec![450.0, 1450.0]);
    assert_eq!(value("SampleCount"), vec![10.0, 10.0]);
    assert_eq!(value("p99"), vec![90.0, 190.0]);
    assert_eq!(value("p50"), vec![40.0, 140.0]);
    assert_eq!(value("p12.5"), vec![10.0, 110.0]);
    assert_eq!(value("p0"), vec![0.0, 100.0]);

    for bad in ["Avg", "p101", "p99.999", "p", "tm99"] {
        let err = world
            .metric_data(&msf("KPUs", bad, 60), START_MS, world.now_ms())
            .expect_err(bad);
        assert_eq!(err.code(), "InvalidParameterValue", "{bad}");
    }
    for bad in [0, 7, 45, 90] {
        let err = world
            .metric_data(&msf("KPUs", "Average", bad), START_MS, world.now_ms())
            .expect_err("bad period");
        assert_eq!(err.code(), "InvalidParameterValue", "period {bad}");
    }
}

#[test]
fn nearest_rank_percentile_of_one_to_hundred() {
    let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    assert_eq!(nearest_rank(&mut values, 99.0), 99.0);
    assert_eq!(nearest_rank(&mut values, 99.5), 100.0);
    assert_eq!(nearest_rank(&mut values, 50.0), 50.0);
    assert_eq!(nearest_rank(&mut values, 0.0), 1.0);
}

#[test]
fn unknown_metric_or_dimensions_give_no_datapoints() {
    let mut world = world_with(Trace::constant(500.0), |p| p.metric_delay_secs = 0);
    world.advance_to(120);
    let wrong_app = query(
        "AWS/KinesisAnalytics",
        "KPUs",
        &[("Application", "other")],
        "Average",
        60,
    );
    let extra_dim = query(
        "AWS/KinesisAnalytics",
        "KPUs",
        &[("Application", "app"), ("Id", "x")],
        "Average",
        60,
    );
    for q in [wrong_app, extra_dim] {
        assert!(
            world
                .metric_data(&q, START_MS, world.now_ms())
                .expect("valid")
                .is_empty()
        );
    }
}

#[test]
fn list_metrics_names_every_published_metric() {
    let world = world_with(Trace::constant(1.0), |_| {});
    let all = world.list_metrics();
    assert_eq!(all.len(), 10);
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|m| (m.namespace.as_str(), m.metric_name.as_str()))
        .collect();
    for expected in [
        ("AWS/KinesisAnalytics", "containerCPUUtilization"),
        ("AWS/KinesisAnalytics", "KPUs"),
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"),
        ("AWS/Kinesis", "SubscribeToShardEvent.MillisBehindLatest"),
        ("AWS/Kafka", "MaxOffsetLag"),
        ("AWS/Kafka", "SumOffsetLag"),
    ] {
        assert!(names.contains(&expected), "{expected:?} listed");
    }
    let kafka = all
        .iter()
        .find(|m| m.metric_name == "SumOffsetLag")
        .expect("listed");
    assert_eq!(
        kafka.dimensions.keys().collect::<Vec<_>>(),
        vec!["Cluster Name", "Consumer Group", "Topic"]
    );
    assert!(kafka.matches(Some("AWS/Kafka"), None, &[("Topic".to_owned(), None)]));
    assert!(!kafka.matches(
        None,
        None,
        &[("Topic".to_owned(), Some("elsewhere".to_owned()))]
    ));
}

#[test]
fn update_application_errors() {
    let mut world = world_with(Trace::constant(100.0), |p| p.update_secs = 10);
    world.advance_to(5);
    let code = |r: Result<AppView, ApiError>| r.expect_err("refused").code();
    assert_eq!(
        code(world.update_application("nope", 1, Some(2), None, None)),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(world.update_application("app", 7, Some(2), None, None)),
        "ConcurrentModificationException"
    );
    for (p, ppk) in [
        (Some(0), None),
        (Some(257), None),
        (None, Some(0)),
        (None, Some(9)),
    ] {
        assert_eq!(
            code(world.update_application("app", 1, p, ppk, None)),
            "InvalidArgumentException",
            "{p:?} {ppk:?}"
        );
    }
    // 65 KPU > the KPU quota of 64; 256 / 4 = 64 is fine.
    assert_eq!(
        code(world.update_application("app", 1, Some(65), None, None)),
        "LimitExceededException"
    );
    assert_eq!(
        world.describe("app").expect("app").version_id,
        1,
        "errors change nothing"
    );
    let ok = world
        .update_application("app", 1, Some(256), Some(4), Some(true))
        .expect("64 KPU is within the limit");
    assert_eq!(
        (ok.version_id, ok.status, ok.autoscaling_enabled),
        (2, AppStatus::Updating, true)
    );
    assert_eq!(
        code(world.update_application("app", 2, Some(2), None, None)),
        "ResourceInUseException"
    );
    world.advance_to(15);
    let view = world.describe("app").expect("app");
    assert_eq!(
        (
            view.status,
            view.parallelism,
            view.parallelism_per_kpu,
            view.kpu
        ),
        (AppStatus::Running, 256, 4, 64)
    );
    assert_eq!(view.last_update_timestamp_ms, Some(START_MS + 5000));
    assert_eq!(
        view.arn,
        "arn:aws:kinesisanalytics:us-east-1:123456789012:application/app"
    );
}

#[test]
fn load_factor_changes_the_load_from_now_on() {
    let mut world = world_with(Trace::constant(100.0), |_| {});
    world.advance_to(5);
    world.set_load_factor("app", 3.0).expect("app");
    world.advance_to(10);
    let h = world.history("app").expect("app");
    assert_eq!(&h.lambda[3..7], &[100.0, 100.0, 300.0, 300.0]);
    assert!(world.set_load_factor("app", -1.0).is_err());
}

#[test]
fn same_seed_gives_the_same_cpu_samples() {
    let run = |seed: u64| -> Vec<f64> {
        let mut scenario = Scenario::single("t", Trace::constant(500.0), 600);
        scenario.applications[0].params.seed = seed;
        let mut world = World::from_scenario(&scenario, START_MS);
        world.advance_to(300);
        let history = world.history("app").expect("app");
        (0..history.len())
            .map(|i| history.cpu_percent(i).expect("a step"))
            .collect()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43));
    // Noise of 2 % around 5 + 95 * 0.5 = 52.5.
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let sd = (a.iter().map(|&c| (c - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    assert!((mean - 52.5).abs() < 0.5, "mean {mean}");
    assert!((sd - 2.0).abs() < 0.4, "sd {sd}");
}

#[test]
fn scores_of_a_hand_made_history() {
    let params = AppParams::default();
    let history = History {
        lambda: vec![1500.0, 500.0, 0.0, 3000.0],
        capacity: vec![1000.0; 4],
        processed: vec![1000.0, 1000.0, 0.0, 1000.0],
        backlog: vec![500.0, 0.0, 0.0, 2000.0],
        lag_secs: vec![0.0, 61.0, 60.0, 120.0],
        kpu: vec![1, 2, 2, 1],
        billed_kpu: vec![1, 2, 2, 1],
        updating: vec![false, true, false, false],
        cpu: CpuNoise::default(),
        updates: vec![UpdateEvent {
            t_secs: 1,
            from_kpu: 1,
            to_kpu: 2,
            from_parallelism: 1,
            to_parallelism: 2,
            rolled_back: false,
        }],
    };
    let s = score(&[(&history, &params)]);
    assert_eq!(s.model_version, "1");
    assert_close(s.kpu_hours, 6.0 / 3600.0, "kpu_hours");
    // Plus one orchestration KPU for the 4 seconds.
    assert_close(s.cost_usd, 0.11 * 10.0 / 3600.0, "cost");
    // 61 and 120 are above 60; 60 is not.
    assert_eq!(s.slo_violation_secs, 2);
    assert_eq!(s.max_lag_secs, 120.0);
    assert_eq!(s.p99_lag_secs, 120.0);
    assert_eq!((s.rescales, s.downtime_secs), (1, 1));
    assert_close(
        s.lower_bound_kpu_hours,
        3000.0 / 1000.0 / 3600.0,
        "lower bound",
    );
    // p*(1500) = 2 (C(2) = 1960), p*(500) = p*(0) = 1, p*(3000) = 4
    // (C(3) = 2882 < 3000 <= C(4) = 3765): 2 + 1 + 1 + 4 KPU-seconds.
    assert_close(s.clairvoyant_kpu_hours, 8.0 / 3600.0, "clairvoyant");
    assert_close(s.efficiency, 8.0 / 6.0, "efficiency");
    assert_close(s.bound_efficiency, 3.0 / 6.0, "bound efficiency");

    let capped = AppParams {
        max_kpu: 3,
        parallelism_per_kpu: 1,
        ..AppParams::default()
    };
    assert_close(
        score(&[(&history, &capped)]).clairvoyant_kpu_hours,
        7.0 / 3600.0,
        "clamped to max_kpu",
    );
    let two_per_kpu = AppParams {
        parallelism_per_kpu: 2,
        ..AppParams::default()
    };
    // ceil(2/2) + 1 + 1 + ceil(4/2); the lower bound halves.
    let s2 = score(&[(&history, &two_per_kpu)]);
    assert_close(s2.clairvoyant_kpu_hours, 5.0 / 3600.0, "two per KPU");
    assert_close(s2.lower_bound_kpu_hours, 1.5 / 3600.0, "two per KPU bound");
}

#[test]
fn clairvoyant_kpu_beyond_what_any_parallelism_carries_is_the_least_that_reaches_the_peak() {
    let params = AppParams {
        max_kpu: 20,
        ..AppParams::default()
    };
    let c = Clairvoyant::new(&params);
    assert_eq!(c.parallelism(1000.0), Some(1));
    assert_eq!(c.parallelism(1000.5), Some(2));
    // The default USL peaks at 70 subtasks with about 20 900 records/s.
    assert_eq!(c.parallelism(1e6), None);
    assert_eq!(c.kpu(1e6), 20);

    // Where no parallelism carries the load, the least KPU that reaches
    // the highest capacity: with max_parallelism 1, one KPU, not max_kpu
    // (more parallelism adds nothing); and never above the account's
    // KPU limit, which binds a perfect scaler too.
    let capped = Clairvoyant::new(&AppParams {
        max_parallelism: 1,
        ..params.clone()
    });
    assert_eq!((capped.parallelism(3000.0), capped.kpu(3000.0)), (None, 1));
    let two_per_kpu = Clairvoyant::new(&AppParams {
        max_parallelism: 3,
        parallelism_per_kpu: 2,
        ..params.clone()
    });
    assert_eq!(two_per_kpu.kpu(1e6), 2, "parallelism 3 at 2 a KPU");
    let limited = Clairvoyant::new(&AppParams {
        account_kpu_limit: 10,
        ..params
    });
    assert_eq!(limited.kpu(1e6), 10);
    assert_eq!(
        limited.kpu(5000.0),
        c.kpu(5000.0),
        "under the limit, as before"
    );
}

#[test]
fn kpu_hours_of_a_run_with_an_update_in_the_middle() {
    let mut world = world_with(Trace::constant(500.0), |p| p.update_secs = 5);
    world.advance_to(10);
    world
        .update_application("app", 1, Some(4), None, None)
        .expect("accepted");
    world.advance_to(20);
    // 10 s at 1 KPU, 5 s UPDATING billed at max(1, 4), 5 s at 4 KPU.
    let s = world.scores();
    assert_close(s.kpu_hours, (10.0 + 20.0 + 20.0) / 3600.0, "kpu_hours");
    assert_eq!((s.rescales, s.downtime_secs), (1, 5));
    // The 2500 records held during the update wait at most 5 s.
    assert_close(s.max_lag_secs, 5.0, "max lag");
    assert_eq!(s.slo_violation_secs, 0);
}

#[test]
fn trace_interpolates_and_holds() {
    let t = Trace::parse(
        "t_secs,records_per_sec\n0,100\n10,200\n10,1000\n20,1000\n",
        "x.csv",
        TraceValue::PerSecond,
    )
    .expect("valid");
    assert_eq!(t.rate_at(0.0), 100.0);
    assert_eq!(t.rate_at(5.0), 150.0);
    assert_eq!(t.rate_at(9.5), 195.0);
    assert_eq!(t.rate_at(10.0), 1000.0, "two rows at one time make a step");
    assert_eq!(t.rate_at(1e6), 1000.0, "last value held");
    assert_eq!(t.last_secs(), 20.0);
}

#[test]
fn trace_reads_a_cloudwatch_export() {
    let iso = "Timestamp,IncomingRecords\n\
               2025-03-01T12:02:00Z,1800\n\
               2025-03-01T12:01:00.000Z,\n\
               2025-03-01T12:00:00Z,600\n";
    let t = Trace::parse(
        iso,
        "cw.csv",
        TraceValue::SumPerPeriod { period_secs: 60.0 },
    )
    .expect("valid");
    assert_eq!(t.points(), &[(0.0, 10.0), (120.0, 30.0)]);
    assert_eq!(t.rate_at(60.0), 20.0);
    let epoch_ms = "1740830400000,5\n1740830460000,7\n";
    let t = Trace::parse(epoch_ms, "ms.csv", TraceValue::PerSecond).expect("valid");
    assert_eq!(t.points(), &[(0.0, 5.0), (60.0, 7.0)]);
    let epoch_s = "1740830400,5\n1740830430,7\n";
    let t = Trace::parse(epoch_s, "s.csv", TraceValue::PerSecond).expect("valid");
    assert_eq!(t.points(), &[(0.0, 5.0), (30.0, 7.0)]);
    let zoned = "2025-03-01 13:00:00+01:00,5\n2025-03-01T12:00:10Z,7\n";
    let t = Trace::parse(zoned, "z.csv", TraceValue::PerSecond).expect("valid");
    assert_eq!(t.points(), &[(0.0, 5.0), (10.0, 7.0)]);
    let compact = "2025-03-01T06:30:00-0530,5\n2025-03-01T12:00:10Z,7\n";
    let t = Trace::parse(compact, "z.csv", TraceValue::PerSecond).expect("valid");
    assert_eq!(t.points(), &[(0.0, 5.0), (10.0, 7.0)]);
    // An offset no clock has (it would move the row a day or more,
    // silently) or a mangled one is no time.
    for zone in [
        "+25:00",
        "+99:99",
        "+05:60",
        "+1:200",
        "+:0500",
        "+05:00:00",
        "+0",
    ] {
        let text = format!("2025-03-01T12:00:00Z,1\n2025-03-01T13:00:00{zone},2\n");
        let error = Trace::parse(&text, "z.csv", TraceValue::PerSecond)
            .expect_err(zone)
            .to_string();
        assert!(
            error.starts_with("z.csv:2: first column"),
            "{zone}: {error}"
        );
    }
}

#[test]
fn trace_errors_name_the_file_and_line() {
    let cases = [
        ("t,r\n0,1\n5,abc\n", "f.csv:3:", "not a number"),
        ("0,1\n10,2\n5,3\n", "f.csv:3:", "goes back"),
        ("0,1\nnoon,2\n", "f.csv:2:", "neither seconds"),
        ("0,1\n3\n", "f.csv:2:", "two columns"),
        ("0,1\n3,-4\n", "f.csv:2:", "non-negative"),
        ("t,r\n", "f.csv:", "no data rows"),
        ("0,1\n60,2,7\n", "f.csv:2:", "a value in column 3 (\"7\")"),
        (
            "0,1\n60,1e300\n",
            "f.csv:2:",
            "over 1e12 records per second",
        ),
        // An epoch time past what a timestamp can be (a unit mixed up, or
        // 1e300) is refused where it stands, not rebased into an overflow
        // or a run of millions of years.
        ("0000-01-01T00:00:00Z,1\n1e300,2\n", "f.csv:2:", "year 9999"),
        (
            "2025-03-01T12:00:00Z,1\n1.7e18,2\n",
            "f.csv:2:",
            "year 9999",
        ),
    ];
    // A first row that is data with a time that does not read is an
    // error, not a header; a byte-order mark before a first row of data
    // is skipped, and that row read.
    let typo = Trace::parse("0s,8000\n600,1000\n", "f.csv", TraceValue::PerSecond)
        .expect_err("a typo")
        .to_string();
    assert!(
        typo.starts_with("f.csv:1: first column \"0s\" is neither"),
        "{typo}"
    );
    let bom =
        Trace::parse("\u{feff}0,8000\n600,1000\n", "f.csv", TraceValue::PerSecond).expect("a BOM");
    assert_eq!(bom.rate_at(0.0), 8000.0);
    // A day the month does not have is no date (it rolled into the next
    // month); 29 February of a leap year is one.
    let bad_day = Trace::parse(
        "2025-02-28T00:00:00Z,1\n2025-02-31T00:00:00Z,2\n",
        "f.csv",
        TraceValue::PerSecond,
    )
    .expect_err("31 February")
    .to_string();
    assert!(
        bad_day.starts_with("f.csv:2: first column \"2025-02-31T00:00:00Z\""),
        "{bad_day}"
    );
    assert!(
        Trace::parse(
            "2024-02-28T00:00:00Z,1\n2024-02-29T00:00:00Z,2\n",
            "f.csv",
            TraceValue::PerSecond
        )
        .is_ok()
    );
    // A trailing comma leaves an empty third column: still two.
    assert!(Trace::parse("0,1,\n60,2,\n", "f.csv", TraceValue::PerSecond).is_ok());
    for (text, place, what) in cases {
        let err = Trace::parse(text, "f.csv", TraceValue::PerSecond)
            .expect_err(text)
            .to_string();
        assert!(
            err.starts_with(place) && err.contains(what),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn a_trace_csv_is_a_scenario_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("Export.CSV");
    std::fs::write(
        &csv,
        "Timestamp,Value\n2025-03-01T12:00:00Z,800\n2025-03-01T13:00:00Z,2400\n",
    )
    .expect("write");
    let s = Scenario::load(&csv).expect("valid");
    assert_eq!((s.name.as_str(), s.duration_secs), ("Export", 3600));
    assert_eq!(s.applications.len(), 1);
    let app = &s.applications[0];
    assert_eq!(
        (
            app.name.as_str(),
            app.params.initial_kpu,
            app.params.max_kpu
        ),
        ("app", 1, 32)
    );
    assert_eq!(app.trace.rate_at(1800.0), 1600.0);
    assert!(s.description.contains("Export.CSV"), "{}", s.description);
    // Any file name is quoted as TOML wants it.
    let odd = dir.path().join("it's \"q\\uoted\"\u{1b}.csv");
    std::fs::write(&odd, "0,5\n60,5\n").expect("write");
    let s = Scenario::load(&odd).expect("an odd name is still a name");
    assert_eq!(s.name, "it's \"q\\uoted\"\u{1b}");
    // A trace that is not one names its file and line.
    std::fs::write(&csv, "0,1\nnoon,2\n").expect("write");
    let err = Scenario::load(&csv).expect_err("bad row").to_string();
    assert!(err.contains("Export.CSV:2:"), "{err}");
}

/// A scenario longer than 31 days, given or implied by its trace, is
/// refused naming the file and the limit, instead of filling memory with
/// its per-second history; 31 days is still accepted.
#[test]
fn a_scenario_longer_than_the_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ok.csv"), "0,1000\n60,1000\n").expect("write");
    let scenario = dir.path().join("long.toml");
    for (duration, refused) in [
        ("18446744073709551615", true),
        ("2678401", true),
        ("2678400", false),
    ] {
        std::fs::write(
            &scenario,
            format!("name = \"long\"\ntrace = \"ok.csv\"\nduration_secs = {duration}\n[[application]]\nname = \"app\"\n"),
        )
        .expect("write");
        match Scenario::load(&scenario) {
            Err(error) if refused => {
                let text = error.to_string();
                assert!(
                    text.contains("long.toml:3:1: ")
                        && text.contains(&format!("duration_secs {duration} is longer than a scenario may run: at most 2678400 s")),
                    "{text}"
                );
            }
            Ok(s) if !refused => assert_eq!(s.duration_secs, 2_678_400),
            other => panic!("{duration}: {other:?}"),
        }
    }
    // A CSV of one row has no duration_secs to give: the fix is said
    // in words that fit it.
    let short = dir.path().join("short.csv");
    std::fs::write(&short, "0,1000\n").expect("write");
    let text = Scenario::load(&short).expect_err("no duration").to_string();
    assert!(
        text.contains("the trace ends at t = 0: give the trace a row at a later time"),
        "{text}"
    );
    let csv = dir.path().join("long.csv");
    std::fs::write(&csv, "0,1000\n99999999,1000\n").expect("write");
    let text = Scenario::load(&csv).expect_err("too long").to_string();
    assert!(
        text.contains("the trace ends at t = 99999999 s, which is longer than a scenario may run"),
        "{text}"
    );
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios")
}

#[test]
fn scenario_defaults_and_derived_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("load.csv"), "0,100\n600,100\n").expect("write");
    let text = "trace = \"load.csv\"\n[[application]]\nname = \"orders\"\nmax_kpu = 8\n\
                [[application]]\nname = \"clicks\"\nload_factor = 2.5\ntopic = \"clickstream\"\n";
    let s = Scenario::from_toml(text, "s.toml", "mine", dir.path()).expect("valid");
    assert_eq!((s.name.as_str(), s.duration_secs), ("mine", 600));
    let orders = &s.applications[0];
    assert_eq!(
        orders.params,
        AppParams {
            max_kpu: 8,
            ..AppParams::default()
        }
    );
    assert_eq!(orders.sources, SourceNames::derived("orders"));
    assert_eq!(orders.sources.stream_name, "orders-stream");
    let clicks = &s.applications[1];
    assert_eq!(
        (clicks.load_factor, clicks.sources.topic.as_str()),
        (2.5, "clickstream")
    );
    assert!(
        std::sync::Arc::ptr_eq(&orders.trace, &clicks.trace),
        "shared trace read once"
    );

    let defaults = AppParams::default();
    assert_eq!(
        (
            defaults.records_per_subtask_per_sec,
            defaults.parallelism_per_kpu,
            defaults.usl_sigma,
            defaults.usl_kappa,
            defaults.max_parallelism,
            defaults.account_kpu_limit,
        ),
        (1000.0, 1, 0.02, 0.0002, 256, 64)
    );
    assert_eq!(
        (
            defaults.initial_kpu,
            defaults.min_kpu,
            defaults.max_kpu,
            defaults.update_secs,
            defaults.metric_delay_secs,
            defaults.seed,
        ),
        (1, 1, 32, 90, 60, 42)
    );
    assert_eq!(
        (
            defaults.cpu_idle_percent,
            defaults.noise_percent,
            defaults.max_lag_secs
        ),
        (5.0, 2.0, 60.0)
    );
}

#[test]
fn scenario_reports_every_problem() {
    let text = "trace = \"x.csv\"\ntrace_value = \"sum_per_period\"\n\
                [[application]]\nmin_kpu = 4\nmax_kpu = 2\nparallelism_per_kpu = 9\n\
                [[application]]\n";
    let err = Scenario::from_toml(text, "bad.toml", "bad", Path::new("."))
        .expect_err("invalid")
        .to_string();
    // Each at the line and column of its key.
    for expected in [
        "bad.toml:2:1: scenario: trace_value = \"sum_per_period\" needs trace_period_secs",
        "bad.toml:4:1: application \"app\": min_kpu 4 must not exceed max_kpu (2)",
        "bad.toml:6:1: application \"app\": parallelism_per_kpu must be in 1..=8",
        "\"app\" is defined twice",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    // A max_kpu under the default min_kpu, or of 0, is the max_kpu's
    // mistake; a min_kpu over the application's KPU quota could never be reached.
    for (apps, expected) in [
        (
            "max_kpu = 0\n",
            "t.toml:3:1: application \"app\": max_kpu must be at least 1",
        ),
        (
            "min_kpu = 70\nmax_kpu = 80\n",
            "t.toml:3:1: application \"app\": min_kpu must not exceed account_kpu_limit",
        ),
        (
            "load_factor = 1e300\n",
            "t.toml:3:1: application \"app\": load_factor must be from 0 to 1000",
        ),
        (
            "update_secs = 4294967295\n",
            "t.toml:3:1: application \"app\": update_secs must be at most 86400 (a day)",
        ),
        (
            "noise_percent = 1e308\n",
            "t.toml:3:1: application \"app\": noise_percent must be in 0..=100",
        ),
        (
            "trace_value = \"sum_per_period\"\ntrace_period_secs = 1e-300\ntrace = \"x.csv\"\n",
            "t.toml:4:1: application \"app\": trace_period_secs 0.",
        ),
    ] {
        let err = Scenario::from_toml(
            &format!("trace = \"x.csv\"\n[[application]]\n{apps}"),
            "t.toml",
            "t",
            Path::new("."),
        )
        .expect_err(apps)
        .to_string();
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    let refused = |text: &str, file: &str| {
        Scenario::from_toml(text, file, "s", Path::new("."))
            .expect_err(text)
            .to_string()
    };
    let unnamed = refused("name = \" \"\ntrace = \"x\"\n", "n.toml");
    assert!(
        unnamed.contains("n.toml:1:1: scenario: name must not be empty"),
        "{unnamed}"
    );
    // A key given twice is named, as a configuration's is.
    let twice = refused(
        "trace = \"x\"\n[[application]]\nmax_kpu = 3\nmax_kpu = 4\n",
        "d.toml",
    );
    assert!(
        twice.contains("d.toml:4:1: duplicate key `max_kpu` (a key is given once in a table"),
        "{twice}"
    );
    let unknown = refused("trace = \"x\"\nmax_kpus = 3\n", "u.toml");
    // Where, which key, and the one meant: as a configuration's errors say.
    assert!(
        unknown.contains("u.toml:2:1: max_kpus: unknown field `max_kpus` (expected one of"),
        "{unknown}"
    );
    let typo = refused("trace = \"x\"\n[[application]]\nmax_kpus = 3\n", "u.toml");
    assert!(
        typo.contains(
            "u.toml:3:1: application[0].max_kpus: unknown field `max_kpus` (did you mean `max_kpu`?"
        ),
        "{typo}"
    );
    let wrong_type = refused(
        "trace = \"x\"\n[[application]]\nname = \"a\"\nmin_kpu = \"two\"\n",
        "w.toml",
    );
    assert!(
        wrong_type.contains("w.toml:4:11: application \"a\".min_kpu: invalid type: string \"two\""),
        "{wrong_type}"
    );
    assert!(
        wrong_type.contains("valid: 1 to 4294967295"),
        "{wrong_type}"
    );
}

#[test]
fn shipped_scenarios_load() {
    for path in [
        scenarios_dir().join("../fixtures/scenarios/demo.toml"),
        scenarios_dir().join("step.toml"),
    ] {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.name, name);
        assert!(!s.description.is_empty(), "{name} describes itself");
    }
}

#[test]
fn step_scenario_quadruples_the_load_and_stays() {
    let s = Scenario::load(&scenarios_dir().join("step.toml")).expect("valid");
    let trace = &s.applications[0].trace;
    let before = trace.rate_at(0.0);
    let end = s.duration_secs as f64;
    assert!(before > 0.0);
    assert_eq!(trace.rate_at(end), 4.0 * before);
    assert_eq!(trace.rate_at(end * 0.6), 4.0 * before);
}

/// The per-period columns behind `metric_data` answer every window as a
/// period-by-period aggregation of the history would, however the world
/// got there: windows that start before step 0 or mid-period, end
/// mid-period or beyond now, asked while the world advances in uneven
/// steps (so columns grow between questions) and once more from a fresh
/// world (columns built in one go).
#[test]
fn cached_periods_answer_every_window_as_the_history_says() {
    let start_ms = START_MS + 30_000;
    let trace = Trace::from_points(vec![(0.0, 100.0), (1800.0, 900.0), (3600.0, 50.0)])
        .expect("a valid trace");
    let mut scenario = Scenario::single("t", trace, 3600);
    let app = &mut scenario.applications[0];
    app.params.noise_percent = 0.0;
    app.params.metric_delay_secs = 7;
    let mut world = World::from_scenario(&scenario, start_ms);
    let q = msf("numRecordsInPerSecond", "Sum", 60);
    let expected = |world: &World, from_ms: i64, to_ms: i64| -> Vec<(i64, f64)> {
        let processed = &world.history("app").expect("app").processed;
        let visible_until = world.now_ms() - 7_000;
        let mut out = Vec::new();
        let mut ps = from_ms.div_euclid(60_000) * 60_000;
        while ps < to_ms {
            let steps = ((ps - start_ms).div_euclid(1000).max(0) as usize)
                ..((ps + 60_000 - start_ms).div_euclid(1000).max(0) as usize).min(processed.len());
            if ps + 60_000 <= visible_until && !steps.is_empty() {
                out.push((ps, processed[steps].iter().sum::<f64>()));
            }
            ps += 60_000;
        }
        out
    };
    let windows = [
        (START_MS - 600_000, START_MS + 10_000_000),
        (START_MS, START_MS + 60_000),
        (start_ms + 45_000, start_ms + 301_000),
        (START_MS + 1_200_000, START_MS + 1_260_001),
        (START_MS + 3_000_000, START_MS + 2_000_000),
    ];
    let check = |world: &World| {
        for (from, to) in windows {
            let got: Vec<(i64, f64)> = world
                .metric_data(&q, from, to)
                .expect("valid")
                .iter()
                .map(|d| (d.timestamp_ms, d.value))
                .collect();
            let want = expected(world, from, to);
            assert_eq!(
                got.len(),
                want.len(),
                "window {from}..{to} at {}",
                world.now_secs()
            );
            for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
                assert_eq!(gt, wt, "window {from}..{to}");
                assert_close(*gv, *wv, &format!("period {gt} of {from}..{to}"));
            }
        }
    };
    for t in [5, 66, 67, 68, 127, 128, 500, 1801, 3600] {
        world.advance_to(t);
        check(&world);
    }
    let mut fresh = World::from_scenario(&scenario, start_ms);
    fresh.advance_to(3600);
    check(&fresh);
    assert!(
        !fresh
            .metric_data(&q, START_MS, fresh.now_ms())
            .expect("valid")
            .is_empty(),
        "the run publishes datapoints: the comparison is not vacuous"
    );
}

#[test]
fn a_trace_repeated_backwards_is_the_cycle_before_t_zero() {
    // A daily cycle: 100 at midnight, 300 at noon.
    let day = Trace::from_points(vec![(0.0, 100.0), (43_200.0, 300.0), (86_400.0, 100.0)])
        .expect("trace");
    let past = day.periodic_before(2 * 86_400 + 21_600, 86_400);
    // The past's t = 0 is 18:00 (2.25 days before the trace's midnight).
    assert_close(past.rate_at(0.0), 200.0, "18:00");
    assert_close(past.rate_at(21_600.0), 100.0, "midnight");
    assert_close(past.rate_at(64_800.0), 300.0, "noon");
    assert_close(past.rate_at(86_400.0), 200.0, "18:00 a day later");
    assert_close(
        past.rate_at(2.0 * 86_400.0 + 21_599.0),
        day.rate_at(86_399.0),
        "the end",
    );
    assert_eq!(past.last_secs(), 2.0 * 86_400.0 + 21_600.0);
}

#[test]
fn scenario_history_keys_are_checked() {
    let bad = |text: &str| {
        Scenario::from_toml(text, "h.toml", "h", Path::new("."))
            .expect_err("invalid")
            .to_string()
    };
    let err = bad("trace = \"x.csv\"\nhistory_days = 16\nhistory_period_secs = 86400\n");
    assert!(
        err.contains("h.toml") && err.contains("history_days 16 is out of range"),
        "{err}"
    );
    let err = bad("trace = \"x.csv\"\nhistory_days = 3\n");
    assert!(err.contains("needs history_period_secs"), "{err}");
    let err = bad("trace = \"x.csv\"\nhistory_period_secs = 86400\n");
    assert!(err.contains("needs history_days"), "{err}");
    let err = bad("trace = \"x.csv\"\nhistory_days = 1\nhistory_period_secs = 30\n");
    assert!(
        err.contains("history_period_secs 30 is out of range"),
        "{err}"
    );
}

#[test]
fn the_past_is_served_before_t_zero_and_the_run_after() {
    let mut scenario = Scenario::single("test", Trace::constant(1000.0), 3600);
    scenario.applications[0].params.noise_percent = 0.0;
    scenario.applications[0].past = Some(Past {
        secs: 86_400,
        period_secs: 86_400,
    });
    let mut world = World::from_scenario(&scenario, START_MS);
    world.advance_to(600);
    let q = msf("numRecordsInPerSecond", "Average", 60);
    let points = world
        .metric_data(&q, START_MS - 2 * 86_400_000, world.now_ms())
        .expect("data");
    // A day of past minutes (none before it), then the run's published
    // minutes (the last ones still within the publication delay).
    assert_eq!(points[0].timestamp_ms, START_MS - 86_400_000);
    assert!(
        points
            .windows(2)
            .all(|w| w[1].timestamp_ms - w[0].timestamp_ms == 60_000)
    );
    assert!(points.iter().all(|p| close(p.value, 1000.0)));
    let past = points.iter().filter(|p| p.timestamp_ms < START_MS).count();
    assert_eq!(past, 1440);
    assert!(points.len() > 1440 + 5);
    // The past is published with the run's delay (60 s): at t = 0 the
    // last minute before it is not there yet, at t = 60 it is; a
    // `min_publication_delay_secs` promise of 60 s holds for the past too.
    let world = World::from_scenario(&scenario, START_MS);
    let at_zero = world
        .metric_data(&q, START_MS - 86_400_000, START_MS)
        .expect("data");
    assert_eq!(at_zero.len(), 1439);
    assert_eq!(
        at_zero.last().map(|p| p.timestamp_ms),
        Some(START_MS - 120_000)
    );
    let mut world = World::from_scenario(&scenario, START_MS);
    world.advance_to(60);
    let at_one_minute = world
        .metric_data(&q, START_MS - 86_400_000, START_MS)
        .expect("data");
    assert_eq!(at_one_minute.len(), 1440);
    // Without a past, nothing comes from before t = 0.
    scenario.applications[0].past = None;
    let mut world = World::from_scenario(&scenario, START_MS);
    world.advance_to(600);
    let points = world
        .metric_data(&q, START_MS - 2 * 86_400_000, world.now_ms())
        .expect("data");
    assert_eq!(points[0].timestamp_ms, START_MS);
}

#[test]
fn unplayed_names_the_first_application_the_scenario_lacks_and_what_it_plays() {
    let mut scenario = Scenario::single("t", Trace::constant(500.0), 600);
    scenario
        .applications
        .push(super::scenario::ScenarioApp::new("b", Trace::constant(1.0)));
    assert_eq!(scenario.unplayed(["app", "b"]), None);
    assert_eq!(
        scenario.unplayed(["b", "x", "y"]),
        Some(("x", "\"app\", \"b\"".to_owned()))
    );
}
