//! The policy's arithmetic against cases computed by hand from the
//! upstream formulas (quoted in each test), and its timing rules as the
//! agent calls it: parameters as JSON, CloudWatch-shaped series in.

use flinkscale_plugin::testing::{check_declarations, configure};
use flinkscale_plugin::{Action, Application, Series};

use super::scale::{Evaluated, evaluate, scale, target_capacity, target_parallelism};
use super::tracking::Tracking;
use super::*;

/// Start of the first period of every test.
const T0: i64 = 1_767_225_600_000;
/// One 60 s period, in ms.
const P: i64 = 60_000;

fn policy(json: &str) -> FlinkOperatorPolicy {
    configure::<FlinkOperatorPolicy>(json)
        .unwrap_or_else(|error| panic!("configure({json}) failed: {error}"))
}

fn defaults() -> Options {
    policy("{}").options
}

fn series(id: &str, points: &[(i64, f64)]) -> Series {
    flinkscale_plugin::testing::series("AWS/KinesisAnalytics", "Average", id, points)
}

/// One period: records in per second, busy ms per second, backlog.
type Row = (f64, f64, f64);

/// An evaluation at `now_ms` of an application at `kpu` (one subtask per
/// KPU) that published `rows`, one per period from T0 on.
fn evaluation(kpu: u32, rows: &[Row], now_ms: i64) -> Evaluation {
    let column = |f: fn(&Row) -> f64| -> Vec<(i64, f64)> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| (T0 + i as i64 * P, f(r)))
            .collect()
    };
    Evaluation {
        now_ms,
        app: Application {
            max_kpu: 64,
            ..flinkscale_plugin::testing::application(kpu, 1, 64)
        },
        metrics: vec![
            series("records_in", &column(|r| r.0)),
            series("busy", &column(|r| r.1)),
            series("backlog", &column(|r| r.2)),
        ],
        alarms: Vec::new(),
        signals: Vec::new(),
    }
}

/// Two periods catching up (800/s, saturated, a lag of 30000 >= 30 s x
/// 800), then `steady` at 500/s and 250 ms busy with no lag.
fn caught_up_rows(steady: usize) -> Vec<Row> {
    let mut rows = vec![(800.0, 1000.0, 30_000.0); 2];
    rows.extend(std::iter::repeat_n((500.0, 250.0, 0.0), steady));
    rows
}

/// When the last of `n` periods from T0 is visible (a minute after it ends).
fn visible(n: usize) -> i64 {
    T0 + n as i64 * P + P
}

fn decide(policy: &mut FlinkOperatorPolicy, evaluation: &Evaluation) -> Decision {
    policy
        .decide(evaluation)
        .unwrap_or_else(|error| panic!("decide failed: {error}"))
}

fn steady(input: f64, busy_ms: f64) -> Evaluated {
    evaluate(
        &WindowMetrics {
            input_rate_avg: input,
            busy_ms_avg: busy_ms,
            lag_rate: 0.0,
            lag: 0.0,
            observed_tpr_avg: None,
        },
        &defaults(),
        300.0,
    )
}

#[test]
fn declarations_are_complete_and_defaults_are_upstreams() {
    check_declarations::<FlinkOperatorPolicy>().expect("declarations");
    let p = policy("{}");
    assert_eq!(p.window_ms, 900_000, "metrics.window 15 min");
    assert_eq!(p.stabilization_ms, 300_000, "stabilization.interval 5 min");
    assert_eq!(p.restart_secs, 300.0, "restart.time 5 min");
    assert_eq!(
        p.restart_time_tracking_limit_secs, 900.0,
        "restart.time-tracking.limit 15 min"
    );
    assert_eq!(
        (p.history_max_age_ms, p.history_max_count),
        (86_400_000, 3),
        "history.max.age 24 h, history.max.count 3"
    );
    assert!(
        !p.restart_time_tracking,
        "restart.time-tracking.enabled false"
    );
    assert_eq!(
        p.scale_down_interval_ms, 3_600_000,
        "scale-down.interval 1 h"
    );
    let o = p.options;
    assert_eq!(
        (o.target_utilisation, o.utilisation_boundary),
        (0.7, 0.3),
        "utilization.target, target.utilization.boundary"
    );
    assert_eq!(o.catch_up_secs, 1800.0, "catch-up.duration 30 min");
    assert_eq!(
        (o.scale_up_max_factor, o.scale_down_max_factor),
        (100_000.0, 0.6)
    );
    assert_eq!(
        (
            o.vertex_min_parallelism,
            o.vertex_max_parallelism,
            o.max_parallelism
        ),
        (1, 200, 128)
    );
}

#[test]
fn every_bad_parameter_is_named_at_once() {
    let error = configure::<FlinkOperatorPolicy>(
        r#"{"target_utilisation": 1.5, "scale_down_max_factor": 2, "vertex_min_parallelism": 0}"#,
    )
    .expect_err("refused");
    assert_eq!(
        error,
        "parameter `target_utilisation` must be in (0, 1], found 1.5; parameter \
         `scale_down_max_factor` must be in [0, 1], found 2; parameter \
         `vertex_min_parallelism` must be at least 1, found 0"
    );
}

/// getTargetProcessingCapacity: LAG / CATCH_UP plus INPUT x RESTART /
/// CATCH_UP plus INPUT / UTIL. Input 1000/s, lag 180000: 100 plus 1000 x
/// 300 / 1800 (166.67) plus 1000 / 0.7 (1428.57) = 1695.24, rounded 1695.
#[test]
fn target_capacity_adds_catch_up_restart_and_utilisation() {
    let e = Evaluated {
        true_processing_rate: 1000.0,
        target_data_rate: 1000.0,
        catch_up_data_rate: 180_000.0 / 1800.0,
        processing_backlog: false,
        scale_up_threshold: 0.0,
        scale_down_threshold: 0.0,
    };
    assert_eq!(target_capacity(&e, 1800.0, 0.7, true, 300.0), 1695.0);
    // Without the restart term (the scale-up threshold): 100 + 1000 / 1.0.
    assert_eq!(target_capacity(&e, 1800.0, 1.0, false, 300.0), 1100.0);
    // Utilisation 0 (the lower bound while processing a backlog): never.
    assert_eq!(target_capacity(&e, 1800.0, 0.0, true, 300.0), f64::INFINITY);
}

/// Input 1000/s at 500 ms busy: TPR 2000. Thresholds: scale up below
/// 1000 / (0.7 + 0.3) = 1000, scale down above 1000 x 300 / 1800 + 1000 /
/// (0.7 - 0.3) = 2666.67, rounded 2667. 2000 is inside: no rescale.
#[test]
fn utilisation_boundary_thresholds() {
    let e = steady(1000.0, 500.0);
    assert_eq!(e.true_processing_rate, 2000.0);
    assert_eq!(e.scale_up_threshold, 1000.0);
    assert_eq!(e.scale_down_threshold, 2667.0);
    assert!(e.within_target());
    // Busy 370 ms: TPR 2702.7 > 2667, outside.
    assert!(!steady(1000.0, 370.0).within_target());
    // Busy 1000 ms and nothing waiting: TPR 1000 is not below 1000.
    assert!(steady(1000.0, 1000.0).within_target());
}

/// Inside the boundary a rescale the target asks for is not made: input
/// 1000 at 900 ms busy (TPR 1111) at parallelism 4 wants 1595 / 1111 x 4 =
/// 5.74 -> 6 -> 7 (BALANCED: 128 / 6 = 21, 128 / 7 = 18), but 1111 >= 1000
/// (the scale-up threshold).
#[test]
fn no_rescale_within_the_utilisation_boundary() {
    let rows = vec![(1000.0, 900.0, 0.0); 15];
    let mut p = policy("{}");
    let d = decide(&mut p, &evaluation(4, &rows, visible(15)));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert!(
        d.reason
            .contains("within the utilisation target (parallelism 7 not needed)"),
        "{}",
        d.reason
    );
    assert_eq!(
        target_parallelism(&steady(1000.0, 900.0), &defaults(), 300.0, 4),
        7
    );
}

/// A saturated job with a growing backlog: 15 periods at 1000 records/s,
/// 1000 ms busy (TPR 1000), the backlog 30000 k in period k. Lag rate
/// 420000 / 840 s = 500/s, target data rate 1500/s; lag 420000 -> catch-up
/// 233.33/s; lag / rate 420 s > 300 s: processing a backlog. Target
/// capacity 233.33 + 1500 x 300 / 1800 (250) + 1500 / 0.7 (2142.86) =
/// 2626.19 -> 2626; factor 2.626 x 4 = 10.5 -> 11 -> 12 (BALANCED: 128 /
/// 11 = 11, 128 / 12 = 10): 12 KPU; 16, the next divisor of 128, with
/// EVENLY_SPREAD.
#[test]
fn saturated_job_scales_to_the_catch_up_capacity_rounded_to_key_groups() {
    let rows: Vec<Row> = (0..15)
        .map(|k| (1000.0, 1000.0, 30_000.0 * k as f64))
        .collect();
    let mut p = policy("{}");
    let d = decide(&mut p, &evaluation(4, &rows, visible(15)));
    assert_eq!(d.action.target(), Some(12), "{}", d.reason);
    assert!(d.reason.contains("parallelism 4 -> 12"), "{}", d.reason);
    let mut even = policy(r#"{"alignment_mode": "EVENLY_SPREAD"}"#);
    let d = decide(&mut even, &evaluation(4, &rows, visible(15)));
    assert_eq!(d.action.target(), Some(16), "{}", d.reason);
    // scale-up.max-factor 1: at most 2 x 4 = 8.
    let mut capped = policy(r#"{"scale_up_max_factor": 1.0}"#);
    let d = decide(&mut capped, &evaluation(4, &rows, visible(15)));
    assert_eq!(d.action.target(), Some(8), "{}", d.reason);
}

/// With 3 subtasks per KPU, the parallelism `BALANCED` aligns to, the 128
/// key groups, is 42 2/3 KPU: rounded up, 43 KPU would run 129 subtasks,
/// which Flink refuses. It asks for the 42 KPU (126) within them.
#[test]
fn kpu_rounded_up_never_pass_the_key_groups() {
    // Saturated at parallelism 3 (TPR 1000/s) with 5e7 records of lag:
    // the catch-up alone needs about 28 x the capacity: 89 subtasks,
    // aligned up to 128.
    let rows: Vec<Row> = (0..15).map(|_| (1000.0, 1000.0, 5e7)).collect();
    let mut evaluation = evaluation(1, &rows, visible(15));
    evaluation.app.parallelism = 3;
    evaluation.app.parallelism_per_kpu = 3;
    let mut p = policy("{}");
    let d = decide(&mut p, &evaluation);
    assert_eq!(d.action.target(), Some(42), "{}", d.reason);
    assert!(
        d.reason
            .contains("parallelism 3 -> 128 (42 KPU, 42 KPU x 3 to stay within the 128 key groups"),
        "{}",
        d.reason
    );
    // Running at parallelism 127 (43 KPU, set by hand), saturated: 128
    // would be 43 KPU x 3 = 129, and 42 KPU is fewer than now. It holds,
    // never scaling a saturated job in.
    let mut at_127 = evaluation.clone();
    at_127.app.kpu = 43;
    at_127.app.parallelism = 127;
    at_127.app.max_kpu = 64;
    let rows_127: Vec<Row> = (0..15).map(|_| (127_000.0, 1000.0, 5e7)).collect();
    at_127.metrics = super::tests::evaluation(1, &rows_127, visible(15)).metrics;
    let d = decide(&mut policy("{}"), &at_127);
    assert_eq!(d.action.target(), None, "{}", d.reason);
    assert!(
        d.reason.contains("past the 128 key groups (`max_parallelism`), and no more KPU stay within them: holding at 43 KPU"),
        "{}",
        d.reason
    );
    // One subtask per KPU: 128 KPU, as before.
    let mut evaluation = super::tests::evaluation(3, &rows, visible(15));
    evaluation.app.max_kpu = 200;
    let d = decide(&mut policy("{}"), &evaluation);
    assert_eq!(d.action.target(), Some(128), "{}", d.reason);
}

/// A job running above `max_parallelism` (left at 128 for a job whose own
/// is higher) is not scaled down for a load it cannot keep up with: its
/// running parallelism is taken as its key groups, and the reason says to
/// set the parameter.
#[test]
fn a_job_above_max_parallelism_is_not_scaled_down_when_saturated() {
    // 160 subtasks (40 KPU x 4), saturated, the lag growing.
    let rows: Vec<Row> = (0..15)
        .map(|k| (1000.0, 1000.0, 30_000.0 * k as f64))
        .collect();
    let mut evaluation = evaluation(40, &rows, visible(15));
    evaluation.app.parallelism = 160;
    evaluation.app.parallelism_per_kpu = 4;
    let d = decide(&mut policy("{}"), &evaluation);
    assert!(
        d.action.target().is_none_or(|kpu| kpu >= 40),
        "{:?}: {}",
        d.action,
        d.reason
    );
    assert!(
        d.reason.contains("set `max_parallelism` to the job's"),
        "{}",
        d.reason
    );
    // Told the job's own key groups, it scales up.
    let d = decide(&mut policy(r#"{"max_parallelism": 1024}"#), &evaluation);
    assert!(
        d.action.target().is_some_and(|kpu| kpu > 40),
        "{:?}: {}",
        d.action,
        d.reason
    );
}

/// Observed TPR: the busy-time TPR (4000 = 1000 / 0.25) is more than 15 %
/// above the processed rate of the periods catching up (lag >= 30 s of
/// input), 1000/s, so the observed one is used.
#[test]
fn observed_tpr_replaces_an_inflated_busy_time_tpr() {
    let window = WindowMetrics {
        input_rate_avg: 1000.0,
        busy_ms_avg: 250.0,
        lag_rate: 0.0,
        lag: 40_000.0,
        observed_tpr_avg: Some(1000.0),
    };
    assert_eq!(
        evaluate(&window, &defaults(), 300.0).true_processing_rate,
        1000.0
    );
    let within = WindowMetrics {
        busy_ms_avg: 900.0,
        ..window
    };
    // 1111 is within 15 % of 1000: busy time stays.
    let tpr = evaluate(&within, &defaults(), 300.0).true_processing_rate;
    assert!((tpr - 1111.11).abs() < 0.01, "{tpr}");
}

/// scale-down.max-factor 0.6: input 100/s at TPR 1000 wants 100 x 300 /
/// 1800 + 100 / 0.7 = 159.5 -> 160, factor 0.16, capped at 0.4: 32 x 0.4 =
/// 12.8 -> 13 -> 15 (BALANCED, scanning [13, 32]: 128 / 13 = 128 / 14 = 9,
/// 128 / 15 = 8). Uncapped (factor 1): 32 x 0.16 = 5.12 -> 6 -> 7.
#[test]
fn scale_down_is_capped_by_the_max_factor() {
    let e = steady(100.0, 100.0);
    assert_eq!(target_parallelism(&e, &defaults(), 300.0, 32), 15);
    let uncapped = Options {
        scale_down_max_factor: 1.0,
        ..defaults()
    };
    assert_eq!(target_parallelism(&e, &uncapped, 300.0, 32), 7);
}

/// (current, key groups, factor, lower limit, upper limit) of a `scale`.
type Case = (u32, u32, f64, u32, u32);

/// Every alignment mode, in the order the tables of expected results use.
const MODES: [Alignment; 5] = [
    Alignment::Balanced,
    Alignment::EvenlySpread,
    Alignment::Off,
    Alignment::LegacyEvenlySpread,
    Alignment::LegacyMaximizeUtilisation,
];

/// `JobVertexScaler.scale` and `ParallelismAligner`, by hand, in every
/// mode: (current, key groups, factor, lower, upper) and what BALANCED,
/// EVENLY_SPREAD, OFF and the deprecated key's EVENLY_SPREAD and
/// MAXIMIZE_UTILISATION give.
#[test]
fn parallelism_is_aligned_to_key_groups_in_every_mode() {
    let cases: &[(Case, [u32; 5])] = &[
        // Up: 4 x 2.626 -> 11 of 128. BALANCED: 128 / 11 = 11, 128 / 12 =
        // 10 < 11, so 12; EVENLY_SPREAD: the next divisor, 16.
        ((4, 128, 2.626, 1, 200), [12, 16, 11, 16, 12]),
        // Down: 10 x 0.55 -> 6 of 100, region [6, 10]. BALANCED: 100 / 6 =
        // 16, 100 / 7 = 14, so 7; EVENLY_SPREAD: 10, the current (no change).
        ((10, 100, 0.55, 1, 200), [7, 10, 6, 10, 7]),
        // Down: 16 x 0.7 -> 12 of 128, region [12, 16]: 128 / 12 = 10,
        // 128 / 13 = 9, so 13; the first divisor is 16, the current.
        ((16, 128, 0.7, 1, 200), [13, 16, 12, 16, 13]),
        // Never above the key groups: 64 x 4 -> 128, a divisor.
        ((64, 128, 4.0, 1, 200), [128; 5]),
        // Up to 90 (upper limit 100): no divisor of 128 in [90, 100] and no
        // fewer key groups per subtask than 128 / 90 = 1; the new modes keep
        // 90; the legacy ones fall back down from 90 to where the key groups
        // per subtask grow, 64 (128 / 64 = 2 > 1), a divisor: above 60, kept.
        ((60, 128, 1.5, 1, 100), [90, 90, 90, 64, 64]),
        // The same from 70: 64 would turn the scale-up into a scale-down,
        // so the legacy modes keep 70 (the scale is blocked).
        ((70, 128, 1.3, 1, 100), [91, 91, 91, 70, 70]),
        // Down from 100 to 95: nothing in [95, 100]; the legacy fallback
        // goes down to 64 (the single-pass alignment before 1.16 scanned up
        // to the key groups and turned this into 128).
        ((100, 128, 0.95, 1, 200), [95, 95, 95, 64, 64]),
        // 100 key groups, 40 wanted, upper limit 45: no divisor in [40, 45];
        // legacy: 100 / 33 = 3 > 100 / 40 = 2 and 33 does not divide 100,
        // so 34.
        ((20, 100, 2.0, 1, 45), [40, 40, 40, 34, 34]),
        // The lower limit wins over a tiny factor: 4 divides 128.
        ((8, 128, 0.01, 4, 200), [4; 5]),
        // Unchanged: no alignment at all (20 does not divide 128).
        ((20, 128, 1.0, 1, 200), [20; 5]),
    ];
    for &((current, key_groups, factor, lower, upper), expected) in cases {
        for (mode, want) in MODES.into_iter().zip(expected) {
            assert_eq!(
                scale(current, key_groups, 0, factor, lower, upper, mode),
                want,
                "scale({current}, {key_groups}, {factor}, {lower}, {upper}, {mode:?})"
            );
        }
    }
}

/// `ParallelismAligner.numKeyGroupsOrPartitions` and
/// `upperBoundForAlignment`: with the source's partitions known, they
/// are what a target is aligned to, within min(partitions, key groups,
/// upper limit); the clamp stays at the key groups.
///
/// From 4 to 7 (factor 1.75) with 12 partitions: 12 / 7 = 1 and no
/// parallelism up to 12 has fewer partitions per subtask in integer
/// division, so `BALANCED` and `EVENLY_SPREAD` take the first divisor, 12
/// (with the 128 key groups, 8: 128 / 8 = 16 < 128 / 7 = 18). From 4 to
/// 20 (factor 5): the region [20, 12] is empty, so the new modes keep 20,
/// and the legacy ones fall back down to 12 (12 / 12 = 1 > 12 / 20 = 0, a
/// divisor). Down from 12 to 8 (factor 0.66): in [8, 12] the first
/// divisor of 12 is 12, the current one, and `BALANCED` finds nothing
/// sooner (12 / 8 to 12 / 11 are all 1): no scale-down but with `OFF`, as
/// upstream.
#[test]
fn a_known_source_partition_count_is_aligned_to() {
    // (current, partitions, factor) and the result of each mode.
    type Case = ((u32, u32, f64), [u32; 5]);
    let cases: &[Case] = &[
        ((4, 12, 1.75), [12, 12, 7, 12, 12]),
        ((4, 0, 1.75), [8, 8, 7, 8, 8]),
        ((4, 12, 5.0), [20, 20, 20, 12, 12]),
        ((12, 12, 0.66), [12, 12, 8, 12, 12]),
    ];
    for &((current, partitions, factor), expected) in cases {
        for (mode, want) in MODES.into_iter().zip(expected) {
            assert_eq!(
                scale(current, 128, partitions, factor, 1, 200, mode),
                want,
                "scale({current}, 128, {partitions}, {factor}, 1, 200, {mode:?})"
            );
        }
    }
    // Through the policy: input 1000/s at 1000 ms busy (TPR 1000) while
    // the lag grows 100/s to 84000: target data rate 1100, scale-up
    // threshold 84000 / 1800 + 1100 / 1.0 = 1146.7 > 1000; target
    // 46.7 + 1100 x 300 / 1800 + 1100 / 0.7 = 1801.4, factor 1.8, 4 x 1.8
    // = 7.2 -> 8: 12 with 12 partitions (12 / 8 to 12 / 11 are all 1), 8
    // with the key groups (a divisor).
    let rows: Vec<Row> = (0..15)
        .map(|k| (1000.0, 1000.0, 6000.0 * k as f64))
        .collect();
    for (params, kpu) in [(r#"{"source_partitions": 12}"#, 12), ("{}", 8)] {
        let d = decide(&mut policy(params), &evaluation(4, &rows, visible(15)));
        assert_eq!(d.action.target(), Some(kpu), "{params}: {}", d.reason);
    }
}

/// `ParallelismAligner.resolve`: the new key, else the deprecated one,
/// else BALANCED; an unknown mode is refused naming the valid ones.
#[test]
fn the_alignment_mode_resolves_as_upstream() {
    let mode = |params: &str| policy(params).options.alignment;
    assert_eq!(mode("{}"), Alignment::Balanced);
    assert_eq!(
        mode(r#"{"alignment_mode": "EVENLY_SPREAD"}"#),
        Alignment::EvenlySpread
    );
    assert_eq!(mode(r#"{"alignment_mode": "OFF"}"#), Alignment::Off);
    assert_eq!(
        mode(r#"{"key_group_partitions_adjust_mode": "EVENLY_SPREAD"}"#),
        Alignment::LegacyEvenlySpread
    );
    assert_eq!(
        mode(r#"{"key_group_partitions_adjust_mode": "MAXIMIZE_UTILISATION"}"#),
        Alignment::LegacyMaximizeUtilisation
    );
    assert_eq!(
        mode(
            r#"{"alignment_mode": "BALANCED", "key_group_partitions_adjust_mode": "EVENLY_SPREAD"}"#
        ),
        Alignment::Balanced
    );
    let err = configure::<FlinkOperatorPolicy>(r#"{"alignment_mode": "balanced"}"#).unwrap_err();
    assert!(
        err.contains("alignment_mode") && err.contains("BALANCED") && err.contains("EVENLY_SPREAD"),
        "{err}"
    );
}

/// A scale-down waits scale-down.interval (1 h) from its first trigger and
/// then takes the highest parallelism recommended in between.
/// At 32 KPU and TPR 1000 (busy = input ms), with scale-down.max-factor 1:
/// input 100/s wants 7 (above: 5.12 -> 6 -> 7); input 300/s wants 50 +
/// 428.57 = 478.57 -> 479, 32 x 0.479 = 15.3 -> 16, a divisor.
#[test]
fn scale_down_waits_the_interval_and_takes_the_highest_recommendation() {
    let mut p = policy(r#"{"scale_down_max_factor": 1.0}"#);
    let low = (100.0, 100.0, 0.0);
    let high = (300.0, 300.0, 0.0);
    let mut rows = vec![low; 15];
    let first = visible(15);
    let d = decide(&mut p, &evaluation(32, &rows, first));
    assert_eq!(d.action, Action::Hold);
    assert!(
        d.reason.contains("scale-down to 7 delayed 3600 s"),
        "{}",
        d.reason
    );
    // Half an hour later, a quarter hour of 300/s: 16 recommended.
    rows.extend(std::iter::repeat_n(high, 30));
    let d = decide(&mut p, &evaluation(32, &rows, first + 30 * P));
    assert!(
        d.reason.contains("scale-down to 16 delayed 1800 s"),
        "{}",
        d.reason
    );
    // Back to 100/s; a second before the hour, still waiting.
    rows.extend(std::iter::repeat_n(low, 30));
    let d = decide(&mut p, &evaluation(32, &rows, first + 60 * P - 1000));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    let d = decide(&mut p, &evaluation(32, &rows, first + 60 * P));
    assert_eq!(d.action.target(), Some(16), "{}", d.reason);
}

/// `JobVertexScaler.applyScaleDownInterval` takes, once the interval from
/// the first trigger has passed, the highest parallelism recommended within
/// the past `scale-down.interval` (`windowStartTime = now - interval`,
/// `DelayedScaleDown.VertexDelayedScaleDownInfo.getMaxRecommendedParallelism`
/// evicts the older ones) and `ParallelismChange.build(max.getParallelism(),
/// max.isOutsideUtilizationBound())`: the verdict recorded with that
/// recommendation, not the current one, decides whether `ScalingExecutor`
/// rescales (upstream's `DelayedScaleDownEndToEndTest`
/// `testScaleDownNeverHappenWhenMaxRecommendedParallelismWithinUtilizationBoundary`).
///
/// 96 key groups, 32 KPU, TPR 1000 (busy = input ms), with
/// scale-down.max-factor 1. Input 400/s: 400 x 300 / 1800 + 400 / 0.7 =
/// 638.1 -> 638, 32 x 0.638 = 20.4 -> 21 -> 24 (a divisor of 96);
/// thresholds 400 and 66.7 + 400 / 0.4 = 1067, TPR 1000 within. Input
/// 300/s: 50 + 428.6 = 478.6 -> 479, 32 x 0.479 = 15.3 -> 16; scale-down
/// threshold 50 + 750 = 800 < 1000, outside.
#[test]
fn scale_down_takes_the_highest_recommendation_of_the_past_interval_with_its_verdict() {
    let mut p = policy(r#"{"scale_down_max_factor": 1.0, "max_parallelism": 96}"#);
    let within = (400.0, 400.0, 0.0);
    let outside = (300.0, 300.0, 0.0);
    let mut rows = vec![within; 15];
    let first = visible(15);
    let d = decide(&mut p, &evaluation(32, &rows, first));
    assert!(
        d.reason.contains("scale-down to 24 delayed 3600 s"),
        "{}",
        d.reason
    );
    rows.extend(std::iter::repeat_n(outside, 30));
    let d = decide(&mut p, &evaluation(32, &rows, first + 30 * P));
    assert!(
        d.reason.contains("scale-down to 16 delayed 1800 s"),
        "{}",
        d.reason
    );
    // The hour is over; the highest recommendation of the past hour is the
    // first one, 24, made within the utilisation boundary: no rescale,
    // although the current window (300/s) is outside it.
    rows.extend(std::iter::repeat_n(outside, 30));
    let d = decide(&mut p, &evaluation(32, &rows, first + 60 * P));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert!(
        d.reason
            .contains("within the utilisation target (parallelism 24"),
        "{}",
        d.reason
    );
    // A minute later 24 has left the past hour: the highest is 16, outside.
    rows.push(outside);
    let d = decide(&mut p, &evaluation(32, &rows, first + 61 * P));
    assert_eq!(d.action.target(), Some(16), "{}", d.reason);
}

/// `applyScaleDownInterval` with `scale-down.interval` <= 0: "don't block
/// scaling", `ParallelismChange.build(newParallelism, ...)`, nothing
/// recorded: the scale-down goes to this window's recommendation, not to a
/// higher one made before. Same loads as above: 400/s recommends 24 within
/// the boundary (no rescale), then 300/s recommends 16, outside.
#[test]
fn without_a_scale_down_interval_the_current_recommendation_is_taken() {
    let mut p = policy(
        r#"{"scale_down_interval_secs": 0, "scale_down_max_factor": 1.0, "max_parallelism": 96}"#,
    );
    let mut rows = vec![(400.0, 400.0, 0.0); 15];
    let d = decide(&mut p, &evaluation(32, &rows, visible(15)));
    assert!(
        d.reason
            .contains("within the utilisation target (parallelism 24"),
        "{}",
        d.reason
    );
    rows.extend(std::iter::repeat_n((300.0, 300.0, 0.0), 15));
    let d = decide(&mut p, &evaluation(32, &rows, visible(30)));
    assert_eq!(d.action.target(), Some(16), "{}", d.reason);
}

/// `ScalingMetricEvaluator.getAverage(metric, vertex, history, minElements)`:
/// NaN skipped, infinite skipped unless there is nothing else (then
/// infinite, whatever `minElements`), fewer finite values than
/// `minElements` is NaN.
#[test]
fn observed_tpr_average_skips_nan_and_infinity() {
    use super::scale::average;
    let inf = f64::INFINITY;
    assert_eq!(average([f64::NAN, inf, 900.0, 1100.0], 2), Some(1000.0));
    assert_eq!(average([inf, 900.0], 2), None);
    assert_eq!(average([inf, inf], 2), Some(inf));
    assert_eq!(average([f64::NAN], 1), None);
}

/// The observed TPR carries forward: `ScalingMetricCollector` stores, for a
/// period that is not catching up, `getObservedTpr(...).orElseGet(
/// observedTprAvg)`, the average of the values already collected
/// (min-observations 2), so the window's `OBSERVED_TPR` average exists
/// after the catch-up has left the window.
///
/// Periods 0 and 1 catch up: 800/s with a lag of 30000 >= 30 s x 800, so
/// OBSERVED_TPR 800 each. Periods 2 to 16: 500/s at 250 ms busy (busy-time
/// TPR 2000), no lag: each stores the average so far, 800. The window
/// (periods 2 to 16) averages 800; 2000 > 800 x 1.15, so TPR = 800
/// (`selectTprMetric`). Target 500 x 300 / 1800 + 500 / 0.7 = 797.6 ->
/// 798, 4 x 798 / 800 = 3.99 -> 4: the current parallelism. With the
/// busy-time TPR (2000) it would be a scale-down (factor 0.399, capped at
/// 0.4: 1.6 -> 2).
#[test]
fn a_measured_processing_rate_carries_forward() {
    let mut p = policy("{}");
    let rows = caught_up_rows(15);
    let d = decide(&mut p, &evaluation(4, &rows, visible(17)));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert!(
        d.reason.contains("TPR 800/s") && d.reason.contains("parallelism 4 is the target"),
        "{}",
        d.reason
    );
}

/// `ScalingMetrics.computeObservedTprWithBackpressure`: numRecordsIn /
/// (1 - backPressure / 1000), NaN (no measurement) at 1000 ms or more.
#[test]
fn backpressure_raises_the_observed_processing_rate() {
    use super::scale::observed_tpr_with_backpressure;
    assert_eq!(observed_tpr_with_backpressure(800.0, 0.0), Some(800.0));
    // 800 / (1 - 0.2) = 1000.
    assert_eq!(observed_tpr_with_backpressure(800.0, 200.0), Some(1000.0));
    // 600 / (1 - 0.75) = 2400.
    assert_eq!(observed_tpr_with_backpressure(600.0, 750.0), Some(2400.0));
    assert_eq!(observed_tpr_with_backpressure(800.0, 1000.0), None);
}

/// The periods of `a_measured_processing_rate_carries_forward` at 16
/// subtasks, with the source back-pressured 200 ms per second while it
/// caught up (`backpressure_metric`): OBSERVED_TPR 800 / 0.8 = 1000 in
/// periods 0 and 1, carried forward. TPR = 1000 (2000 > 1000 x 1.15);
/// target 797.6 -> 798, 16 x 798 / 1000 = 12.77 -> 13, which `BALANCED`
/// aligns to 15 (scanning up, `firstAlignedInRegion`'s integer division
/// gives 128 / 13 = 128 / 14 = 9, and 128 / 15 = 8 < 9): a scale-down,
/// delayed by the interval. Without the back-pressure the TPR is 800,
/// 16 x 798 / 800 = 15.96 -> 16, the current parallelism.
/// Back-pressured throughout (1000 ms), a catching-up period measures
/// nothing and takes the average before it, as one not catching up.
#[test]
fn a_back_pressured_source_measures_its_processing_rate_above_its_input() {
    let rows = caught_up_rows(15);
    let backpressure = |values: &[f64]| {
        let points: Vec<(i64, f64)> = (0..rows.len())
            .map(|i| (T0 + i as i64 * P, values.get(i).copied().unwrap_or(0.0)))
            .collect();
        series("backpressure", &points)
    };
    let mut e = evaluation(16, &rows, visible(17));
    e.metrics.push(backpressure(&[200.0, 200.0]));
    let d = decide(&mut policy("{}"), &e);
    assert!(
        d.reason.contains("TPR 1000/s") && d.reason.contains("scale-down to 15 delayed 3600 s"),
        "{}",
        d.reason
    );
    let d = decide(&mut policy("{}"), &evaluation(16, &rows, visible(17)));
    assert!(
        d.reason.contains("TPR 800/s") && d.reason.contains("parallelism 16 is the target"),
        "{}",
        d.reason
    );
    // Renamed, and back-pressured throughout in period 1: only period 0
    // measures (1000), one observation, fewer than min-observations (2),
    // so no observed TPR and the busy-time one, 2000, stands.
    let mut e = evaluation(16, &rows, visible(17));
    let mut renamed = backpressure(&[200.0, 1000.0]);
    renamed.id = "bp".into();
    e.metrics.push(renamed);
    let d = decide(&mut policy(r#"{"backpressure_metric": "bp"}"#), &e);
    assert!(d.reason.contains("TPR 2000/s"), "{}", d.reason);
}

/// A period whose back-pressure is not published yet, while an earlier
/// one's is, waits for it before its observed TPR is derived (and
/// cached): published a minute later, it still counts.
#[test]
fn a_period_waits_for_its_back_pressure() {
    let rows = caught_up_rows(15);
    let backpressure = |n: usize| {
        let points: Vec<(i64, f64)> = (0..n)
            .map(|i| (T0 + i as i64 * P, if i < 2 { 200.0 } else { 0.0 }))
            .collect();
        series("backpressure", &points)
    };
    let mut p = policy("{}");
    // Period 1's back-pressure comes a minute late.
    let mut early = evaluation(8, &rows[..2], visible(2));
    early.metrics.push(backpressure(1));
    decide(&mut p, &early);
    let mut e = evaluation(8, &rows, visible(17));
    e.metrics.push(backpressure(rows.len()));
    let d = decide(&mut p, &e);
    assert!(d.reason.contains("TPR 1000/s"), "{}", d.reason);
}

/// Back-pressure is read for catching-up periods only, and a gap in it
/// is no measurement. The periods of
/// `a_back_pressured_source_measures_its_processing_rate_above_its_input`
/// (16 subtasks; 0 and 1 catch up at 800/s), with the back-pressure
/// series (200 ms) published for periods 0 and 1 only: the later periods,
/// not catching up, do not wait for it and carry 1000 forward (TPR 1000).
/// Published for periods 0 and 2 on but not 1: period 1 measures nothing
/// (upstream requires the metric), so only one observation, fewer than
/// min-observations, and the busy-time TPR (2000) stands; read as 0 it
/// would have measured 800 (TPR 900).
#[test]
fn back_pressure_counts_where_a_period_catches_up() {
    let rows = caught_up_rows(15);
    let with = |points: Vec<(i64, f64)>| {
        let mut e = evaluation(16, &rows, visible(17));
        e.metrics.push(series("backpressure", &points));
        decide(&mut policy("{}"), &e)
    };
    let d = with(vec![(T0, 200.0), (T0 + P, 200.0)]);
    assert!(d.reason.contains("TPR 1000/s"), "{}", d.reason);
    let gap: Vec<(i64, f64)> = (0..17)
        .filter(|&i| i != 1)
        .map(|i| (T0 + i * P, if i == 0 { 200.0 } else { 0.0 }))
        .collect();
    let d = with(gap);
    assert!(d.reason.contains("TPR 2000/s"), "{}", d.reason);
}

/// Periods are matched one for one, so a back-pressure or backlog metric
/// of another period than the records in is refused, naming both.
#[test]
fn a_back_pressure_of_another_period_is_refused() {
    let rows = vec![(800.0, 1000.0, 30_000.0); 15];
    for id in ["backpressure", "backlog"] {
        let mut e = evaluation(16, &rows, visible(15));
        e.metrics.retain(|m| m.id != id);
        let mut other = series(id, &[(T0, 200.0)]);
        other.period_secs = 300;
        e.metrics.push(other);
        let error = policy("{}").decide(&e).expect_err("refused");
        assert!(
            error.contains(&format!("metric `{id}`"))
                && error.contains("300 s period")
                && error.contains("`records_in` (`records_in_metric`) 60 s"),
            "{error}"
        );
    }
}

/// A restart clears what carries forward: `ScalingMetricCollector` clears
/// the collected history when the job's RUNNING timestamp is after its
/// first entry ("Job updated ... Clearing metrics"), so the supplier of the
/// average sees no measurement from before. The same periods as above, with
/// a rescale completed at period 3: periods 0 and 1 measured 800 before it,
/// every later period has no observed TPR, and the window (periods 8 to 22,
/// after the 5 min stabilisation) keeps the busy-time TPR, 2000: factor
/// 798 / 2000 = 0.399, capped at 0.4, 4 x 0.4 = 1.6 -> 2, a scale-down.
#[test]
fn a_restart_clears_the_carried_processing_rate() {
    let mut p = policy("{}");
    let rows = caught_up_rows(21);
    let mut e = evaluation(4, &rows, visible(23));
    e.app.last_rescale_ms = Some(T0 + 3 * P);
    let d = decide(&mut p, &e);
    assert!(
        d.reason.contains("TPR 2000/s") && d.reason.contains("scale-down to 2 delayed 3600 s"),
        "{}",
        d.reason
    );
}

/// A recommendation back at the current parallelism cancels the delayed
/// scale-down: the interval starts over.
#[test]
fn a_recovered_load_cancels_the_delayed_scale_down() {
    let mut p = policy("{}");
    let mut rows = vec![(100.0, 100.0, 0.0); 15];
    let first = visible(15);
    decide(&mut p, &evaluation(32, &rows, first));
    // 1000/s at 600 ms busy (TPR 1667) wants 1595 / 1667 x 32 = 30.6 -> 31 -> 32.
    rows.extend(std::iter::repeat_n((1000.0, 600.0, 0.0), 15));
    let d = decide(&mut p, &evaluation(32, &rows, first + 15 * P));
    assert!(
        d.reason.contains("parallelism 32 is the target"),
        "{}",
        d.reason
    );
    rows.extend(std::iter::repeat_n((100.0, 100.0, 0.0), 45));
    let d = decide(&mut p, &evaluation(32, &rows, first + 60 * P));
    assert!(d.reason.contains("delayed 3600 s"), "{}", d.reason);
}

/// Only a rescale the autoscaler makes clears the delayed scale-down
/// (`ScalingExecutor`: `delayedScaleDown.clearAll()` after scaling); one
/// made by another writer leaves it. At 32 KPU, 100/s at 100 ms busy asks
/// for a scale-down, first at T0 + 16 min (delayed 3600 s). Someone sets
/// 24 KPU at T0 + 26 min; stable from T0 + 31 min, the window of periods
/// 31 to 45 is seen at T0 + 48 min, asking for a scale-down again: the
/// interval still counts from T0 + 16 min, 1680 s more (it started over,
/// 3600 s, before stop 58).
#[test]
fn a_rescale_by_another_writer_keeps_the_delayed_scale_down() {
    let mut p = policy("{}");
    let rows = vec![(100.0, 100.0, 0.0); 47];
    let d = decide(&mut p, &evaluation(32, &rows[..15], visible(15)));
    assert!(d.reason.contains("delayed 3600 s"), "{}", d.reason);
    let mut e = evaluation(24, &rows, T0 + 48 * P);
    e.app.last_rescale_ms = Some(T0 + 26 * P);
    let d = decide(&mut p, &e);
    assert!(d.reason.contains("delayed 1680 s more"), "{}", d.reason);
}

/// A scale-down recommended at a larger size is dropped once another
/// writer sets a smaller one: at 32 KPU the first recommendation (capped
/// at 0.4 x 32) is far above 4, which someone sets at T0 + 26 min; an
/// hour after the first request (T0 + 76 min, the window after the
/// rescale full), 4 asks for 2 (factor 0.16, capped at 0.4: 1.6 -> 2), and
/// 2 is what is taken, not the old recommendation, which would have been
/// a scale-up.
#[test]
fn a_recommendation_above_a_size_set_by_hand_is_dropped() {
    let mut p = policy("{}");
    let rows = vec![(100.0, 100.0, 0.0); 75];
    let d = decide(&mut p, &evaluation(32, &rows[..15], visible(15)));
    assert!(d.reason.contains("delayed 3600 s"), "{}", d.reason);
    let mut e = evaluation(4, &rows, T0 + 76 * P);
    e.app.last_rescale_ms = Some(T0 + 26 * P);
    let d = decide(&mut p, &e);
    assert_eq!(d.action.target(), Some(2), "{}", d.reason);
}

/// No decision while stabilising (5 min after a rescale), nor before a
/// whole 15 min window was published after that.
#[test]
fn waits_for_stabilisation_then_a_full_window() {
    let rows: Vec<Row> = (0..40)
        .map(|k| (1000.0, 1000.0, 30_000.0 * k as f64))
        .collect();
    let rescaled = T0 + 10 * P;
    let at = |now: i64| {
        let mut e = evaluation(4, &rows[..((now - T0) / P - 1) as usize], now);
        e.app.last_rescale_ms = Some(rescaled);
        e
    };
    let mut p = policy("{}");
    let d = decide(&mut p, &at(rescaled + 4 * P));
    assert!(d.reason.contains("stabilising for 60 s"), "{}", d.reason);
    // Stable from period 15; its window of 15 periods ends with period 29,
    // visible at the start of period 31.
    let d = decide(&mut p, &at(T0 + 30 * P + 59_000));
    assert!(d.reason.contains("metric window of 900 s"), "{}", d.reason);
    let d = decide(&mut p, &at(T0 + 31 * P));
    assert!(d.action.target().is_some_and(|k| k > 4), "{}", d.reason);
}

#[test]
fn holds_while_not_running_and_names_a_missing_metric() {
    let mut p = policy("{}");
    let mut e = evaluation(4, &[(1000.0, 1000.0, 0.0); 15], visible(15));
    e.app.status = AppStatus::Updating;
    assert_eq!(decide(&mut p, &e).action, Action::Hold);
    let mut p = policy(r#"{"busy_metric": "busy_ms"}"#);
    let error = p
        .decide(&evaluation(4, &[(1000.0, 1000.0, 0.0)], visible(1)))
        .expect_err("no such metric");
    assert!(
        error.contains("`busy_ms`") && error.contains("busy_metric"),
        "{error}"
    );
}

/// `ScalingTracking.getMaxRestartTimeOrDefault`: with tracking on, the
/// longest restart measured over the records (a record not yet measured
/// does not count), capped by `restart.time-tracking.limit`; with none
/// measured, or tracking off, `restart.time`.
#[test]
fn tracked_restart_time_is_the_longest_measured_capped_by_the_limit() {
    let mut t = Tracking::default();
    assert_eq!(t.max_restart_secs_or(true, 300.0, 900.0), 300.0);
    t.add(T0, 8);
    assert_eq!(t.max_restart_secs_or(true, 300.0, 900.0), 300.0);
    // Job at 8 again 600.9 s after the decision: 600 whole seconds.
    assert!(t.record_restart(T0 + 11 * P, 86_400_000, Some(T0 + 600_900), 8));
    t.add(T0 + 60 * P, 16);
    assert!(t.record_restart(T0 + 61 * P, 86_400_000, Some(T0 + 60 * P + 120_000), 16));
    t.add(T0 + 120 * P, 8);
    // The latest not measured yet: the longest of 600 and 120, not the
    // last measured.
    assert_eq!(t.max_restart_secs_or(true, 300.0, 900.0), 600.0);
    assert_eq!(t.max_restart_secs_or(true, 300.0, 450.0), 450.0);
    assert_eq!(t.max_restart_secs_or(false, 300.0, 900.0), 300.0);
}

/// `recordRestartDurationIfTrackedAndParallelismMatches`: only the latest
/// record, only once, and only when the job runs at its parallelism, as
/// long as the scaling history still holds that target (24 h); past that
/// there is nothing to compare and upstream's `allMatch` holds.
#[test]
fn a_restart_is_measured_only_at_the_parallelism_the_rescale_set() {
    let day = 86_400_000;
    let mut t = Tracking::default();
    t.add(T0, 16);
    // The update completed at 8 (say the host capped it): not measured.
    assert!(!t.record_restart(T0 + 5 * P, day, Some(T0 + 3 * P), 8));
    // A completion from before the decision measures nothing.
    assert!(!t.record_restart(T0 + 5 * P, day, Some(T0 - P), 16));
    assert!(t.record_restart(T0 + 5 * P, day, Some(T0 + 3 * P), 16));
    assert_eq!(t.records[&T0].restart_secs, Some(180));
    // Measured once.
    assert!(!t.record_restart(T0 + 9 * P, day, Some(T0 + 8 * P), 16));
    assert_eq!(t.records[&T0].restart_secs, Some(180));
    // A day and a minute on, the target of a rescale left at 8 is gone
    // from the history: the restart is taken from its completion.
    let later = T0 + 10 * P;
    t.add(later, 16);
    assert!(!t.record_restart(later + day, day, Some(later + 4 * P), 8));
    assert!(t.record_restart(later + day + P, day, Some(later + 4 * P), 8));
    assert_eq!(t.records[&later].restart_secs, Some(240));
}

/// `ScalingTracking.removeOldRecords(now, history.max.age,
/// history.max.count)`: records decided before now - 24 h go, then the
/// oldest beyond 3, but the latest always stays.
#[test]
fn tracking_keeps_the_past_day_at_most_three_and_always_the_latest() {
    let hour = 3_600_000;
    let day = 24 * hour;
    let now = T0 + 100 * hour;
    let mut t = Tracking::default();
    for h in [30, 20, 5, 3, 1] {
        t.add(now - h * hour, 8);
    }
    t.remove_old(now, day, 3);
    let kept: Vec<i64> = t.records.keys().map(|at| (now - at) / hour).collect();
    assert_eq!(kept, vec![5, 3, 1]);
    // Exactly 24 h old is kept (`headMap(cutoff)` is before it).
    let mut t = Tracking::default();
    t.add(now - day, 8);
    t.add(now - 30 * hour, 8);
    t.remove_old(now, day, 3);
    assert_eq!(
        t.records.keys().copied().collect::<Vec<_>>(),
        vec![now - day]
    );
    // Everything older than a day, or a count of 0: the latest stays.
    t.remove_old(now + hour, day, 3);
    assert_eq!(t.records.len(), 1);
    t.add(now + hour, 8);
    t.remove_old(now + hour, day, 0);
    assert_eq!(
        t.records.keys().copied().collect::<Vec<_>>(),
        vec![now + hour]
    );
}

/// Tracking as the agent drives it: a rescale decided, its update
/// completed, the next decision sized with the measured restart.
///
/// 60 key groups (divisors 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60), no
/// scale-down interval. Periods 0 to 14 saturate 4 KPU as in
/// `saturated_job_scales_to_the_catch_up_capacity_rounded_to_key_groups`:
/// capacity 2626 with `restart.time` 300 (nothing measured yet), 4 x 2.626
/// = 10.5 -> 11 -> 12. The update completes 20 min after the decision
/// (period 36), at 12 KPU: a restart of 1200 s, capped at 900. Then 300/s
/// at TPR 1000 (busy = input ms), no lag; the window after the 5 min
/// stabilisation is periods 41 to 55. Scale-down threshold 300 x 900 /
/// 1800 + 300 / 0.4 = 900 < 1000: outside. Target 150 + 428.57 = 578.57 ->
/// 579, 12 x 0.579 = 6.95 -> 7 -> 8 (BALANCED: 60 / 7 = 8, 60 / 8 = 7).
/// With `restart.time` (tracking off,
/// or the update completed at another parallelism, so nothing measured):
/// 50 + 428.57 -> 479, 12 x 0.479 = 5.75 -> 6.
#[test]
fn the_next_decision_is_sized_with_the_measured_restart() {
    let decide_twice = |params: &str, kpu_after: u32| {
        let mut p = policy(params);
        let mut rows: Vec<Row> = (0..15)
            .map(|k| (1000.0, 1000.0, 30_000.0 * k as f64))
            .collect();
        let d = decide(&mut p, &evaluation(4, &rows, visible(15)));
        assert_eq!(d.action.target(), Some(12), "{}", d.reason);
        rows.extend(std::iter::repeat_n((300.0, 300.0, 0.0), 41));
        let mut e = evaluation(kpu_after, &rows, visible(56));
        e.app.last_rescale_ms = Some(visible(15) + 20 * P);
        let d = decide(&mut p, &e);
        (d, p.tracking.records[&visible(15)].restart_secs)
    };
    let tracked = r#"{"restart_time_tracking": true, "max_parallelism": 60,
        "scale_down_interval_secs": 0}"#;
    let (d, measured) = decide_twice(tracked, 12);
    assert_eq!(measured, Some(1200));
    assert_eq!(d.action.target(), Some(8), "{}", d.reason);
    assert!(d.reason.contains("parallelism 12 -> 8"), "{}", d.reason);
    let untracked = r#"{"max_parallelism": 60, "scale_down_interval_secs": 0}"#;
    let (d, _) = decide_twice(untracked, 12);
    assert_eq!(d.action.target(), Some(6), "{}", d.reason);
    // Completed at 10 KPU instead of 12: not measured, so 300 s: 10 x
    // 0.479 = 4.79 -> 5.
    let (d, measured) = decide_twice(tracked, 10);
    assert_eq!(measured, None);
    assert_eq!(d.action.target(), Some(5), "{}", d.reason);
}

/// A metric window shorter than one period (`configure` takes 60 s, and
/// metrics may come every 5 minutes) is the latest period, not a trap.
#[test]
fn a_metric_window_shorter_than_a_period_is_the_latest_period() {
    let mut p = policy(r#"{"metrics_window_secs": 60}"#);
    let rows = vec![(100.0, 100.0, 0.0); 15];
    let mut evaluation = evaluation(32, &rows, visible(15) + 4 * P);
    for series in &mut evaluation.metrics {
        series.period_secs = 300;
    }
    decide(&mut p, &evaluation);
}
