use std::collections::BTreeMap;

use super::*;
use crate::config::AlarmSource;

const MINUTE_MS: i64 = 60_000;

/// The tables of `docs/ALARM_CASES.md` (the CloudWatch user guide's cases),
/// copied as written there: datapoints oldest first (`0` not breaching,
/// `X` breaching, `-` missing), then the state for TreatMissingData =
/// missing, ignore, breaching, notBreaching.
const M3_N3: &str = "
| 0 - X - X | OK | OK | OK | OK |
| 0 - - - - | OK | OK | OK | OK |
| - - - - - | INSUFFICIENT_DATA | keep current | ALARM | OK |
| 0 X X - X | ALARM | ALARM | ALARM | ALARM |
| - - - - X | INSUFFICIENT_DATA | keep current | ALARM | OK |
| X - - - - | ALARM | keep current | ALARM | OK |
| - - X - - | ALARM | keep current | ALARM | OK |
| - - - X - | INSUFFICIENT_DATA | keep current | ALARM | OK |
";

const M2_N3: &str = "
| 0 - X - X | ALARM | ALARM | ALARM | ALARM |
| 0 0 X 0 X | ALARM | ALARM | ALARM | ALARM |
| 0 - X - - | OK | OK | ALARM | OK |
| - - - - 0 | OK | OK | ALARM | OK |
| - - - - X | INSUFFICIENT_DATA | keep current | ALARM | OK |
| - - - X - | ALARM | keep current | ALARM | OK |
";

const COLUMNS: [TreatMissingData; 4] = [
    TreatMissingData::Missing,
    TreatMissingData::Ignore,
    TreatMissingData::Breaching,
    TreatMissingData::NotBreaching,
];

const ALL_STATES: [AlarmState; 3] = [
    AlarmState::Ok,
    AlarmState::Alarm,
    AlarmState::InsufficientData,
];

/// An expected cell of a table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    State(AlarmState),
    KeepCurrent,
}

fn rule(comparison: Comparison, m: u32, n: u32, treat_missing: TreatMissingData) -> AlarmRule {
    AlarmRule {
        comparison,
        threshold: 50.0,
        evaluation_periods: n,
        datapoints_to_alarm: m,
        treat_missing,
    }
}

/// The reference design's scale-out alarm: above 80 for 5 of 5,
/// `missing`.
fn reference_scale_out() -> AlarmRule {
    AlarmRule {
        threshold: 80.0,
        ..rule(
            Comparison::GreaterThanThreshold,
            5,
            5,
            TreatMissingData::Missing,
        )
    }
}

/// Parses `0 - X` notation into a range, with `breach` / `calm` standing
/// for `X` / `0`.
fn parse_range(notation: &str, breach: f64, calm: f64) -> Vec<Option<f64>> {
    notation
        .split_whitespace()
        .map(|token| match token {
            "X" => Some(breach),
            "0" => Some(calm),
            "-" => None,
            other => panic!("unknown datapoint {other:?} in {notation:?}"),
        })
        .collect()
}

fn parse_expected(cell: &str) -> Expected {
    match cell {
        "OK" => Expected::State(AlarmState::Ok),
        "ALARM" => Expected::State(AlarmState::Alarm),
        "INSUFFICIENT_DATA" => Expected::State(AlarmState::InsufficientData),
        "keep current" => Expected::KeepCurrent,
        other => panic!("unknown cell {other:?}"),
    }
}

/// Parses a table into (datapoints, one expectation per column).
fn parse_table(table: &str) -> Vec<(String, [Expected; 4])> {
    table
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert_eq!(cells.len(), 5, "row {line:?}");
            let expected = [1, 2, 3, 4].map(|i| parse_expected(cells[i]));
            (cells[0].to_owned(), expected)
        })
        .collect()
}

/// Checks every cell of a table, under an operator where `X` is
/// `breach` and `0` is `calm`. A definite state must come out whatever
/// the current state; "keep current" must return each current state
/// unchanged.
fn check_table(table: &str, m: u32, n: u32, comparison: Comparison, breach: f64, calm: f64) {
    let rows = parse_table(table);
    assert!(!rows.is_empty());
    for (notation, expected) in rows {
        let range = parse_range(&notation, breach, calm);
        assert_eq!(range.len(), n as usize + EXTRA_RANGE_PERIODS, "{notation}");
        for (treat, expected) in COLUMNS.into_iter().zip(expected) {
            let alarm = rule(comparison, m, n, treat);
            for current in ALL_STATES {
                let want = match expected {
                    Expected::State(state) => state,
                    Expected::KeepCurrent => current,
                };
                assert_eq!(
                    evaluate_range(&range, &alarm, current),
                    want,
                    "M={m} N={n} `{notation}` {treat:?} from {current}"
                );
            }
        }
    }
}

#[test]
fn table_m3_n3_matches_the_user_guide() {
    check_table(M3_N3, 3, 3, Comparison::GreaterThanThreshold, 90.0, 10.0);
}

#[test]
fn table_m2_n3_matches_the_user_guide() {
    check_table(M2_N3, 2, 3, Comparison::GreaterThanThreshold, 90.0, 10.0);
}

#[test]
fn tables_hold_for_a_scale_in_operator() {
    // Breaching means "low" here; the outcome depends on breaching, not on size.
    check_table(
        M3_N3,
        3,
        3,
        Comparison::LessThanOrEqualToThreshold,
        10.0,
        90.0,
    );
    check_table(
        M2_N3,
        2,
        3,
        Comparison::LessThanOrEqualToThreshold,
        10.0,
        90.0,
    );
}

#[test]
fn keep_current_really_differs_by_current_state() {
    // Guards the table check: "keep current" cells are proven from both OK
    // and ALARM, so a constant answer would fail one of them.
    let range = parse_range("- - - - -", 90.0, 10.0);
    let alarm = rule(
        Comparison::GreaterThanThreshold,
        3,
        3,
        TreatMissingData::Ignore,
    );
    assert_eq!(
        evaluate_range(&range, &alarm, AlarmState::Ok),
        AlarmState::Ok
    );
    assert_eq!(
        evaluate_range(&range, &alarm, AlarmState::Alarm),
        AlarmState::Alarm
    );
}

#[test]
fn each_operator_at_the_threshold_boundary() {
    let cases = [
        (
            Comparison::GreaterThanOrEqualToThreshold,
            [false, true, true],
        ),
        (Comparison::GreaterThanThreshold, [false, false, true]),
        (Comparison::LessThanThreshold, [true, false, false]),
        (Comparison::LessThanOrEqualToThreshold, [true, true, false]),
    ];
    for (comparison, breaches) in cases {
        let alarm = rule(comparison, 1, 1, TreatMissingData::Missing);
        for (value, breach) in [49.999, 50.0, 50.001].into_iter().zip(breaches) {
            let range = [None, None, Some(value)];
            let want = if breach {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            };
            assert_eq!(
                evaluate_range(&range, &alarm, AlarmState::InsufficientData),
                want,
                "{comparison:?} with {value}"
            );
        }
    }
}

#[test]
fn m_of_n_breaches_need_not_be_consecutive() {
    let alarm = rule(
        Comparison::GreaterThanThreshold,
        3,
        5,
        TreatMissingData::Missing,
    );
    let eval =
        |notation: &str| evaluate_range(&parse_range(notation, 90.0, 10.0), &alarm, AlarmState::Ok);
    assert_eq!(eval("0 0 X 0 X 0 X"), AlarmState::Alarm);
    assert_eq!(eval("0 0 X 0 X 0 0"), AlarmState::Ok);
    // With N real points present only the newest N count: three old
    // breaches outside them do not raise the alarm.
    assert_eq!(eval("X X X 0 0 0 0"), AlarmState::Ok);
    assert_eq!(eval("X X 0 X 0 0 X"), AlarmState::Ok);
    // Missing points are skipped, not counted, when N real ones exist.
    assert_eq!(eval("X - X 0 X 0 -"), AlarmState::Alarm);
}

#[test]
fn missing_counts_a_points_own_period_in_its_age() {
    // The user guide's later rows ("Avoiding premature transitions to
    // alarm state"): with M = 2, `- - - X -` is ALARM under `missing`, so
    // a point with one period after it is two periods old. One period
    // younger is not old enough.
    let alarm = rule(
        Comparison::GreaterThanThreshold,
        2,
        3,
        TreatMissingData::Missing,
    );
    let eval =
        |notation: &str| evaluate_range(&parse_range(notation, 90.0, 10.0), &alarm, AlarmState::Ok);
    assert_eq!(eval("- - X - -"), AlarmState::Alarm);
    assert_eq!(eval("- - - X -"), AlarmState::Alarm);
    assert_eq!(eval("- - - - X"), AlarmState::InsufficientData);
    // Any real non-breaching point, even older, rules the age rule out.
    assert_eq!(eval("0 - X - -"), AlarmState::Ok);
    assert_eq!(eval("0 - - X -"), AlarmState::Ok);
}

#[test]
fn nan_in_the_range_counts_as_missing() {
    let alarm = rule(
        Comparison::LessThanThreshold,
        1,
        1,
        TreatMissingData::Missing,
    );
    // A NaN compared as a number would "not breach" and give OK.
    let range = [None, None, Some(f64::NAN)];
    assert_eq!(
        evaluate_range(&range, &alarm, AlarmState::Alarm),
        AlarmState::InsufficientData
    );
}

#[test]
fn range_is_n_plus_two_periods() {
    let alarm = rule(
        Comparison::GreaterThanThreshold,
        3,
        3,
        TreatMissingData::Missing,
    );
    assert_eq!(alarm.range_periods(), 5);
    let now_ms = 100 * MINUTE_MS;
    let lone_breach = |minutes_back: i64| {
        let points = [Datapoint {
            timestamp_ms: now_ms - minutes_back * MINUTE_MS,
            value: 90.0,
        }];
        let range = range_from_series(&points, 60, alarm.range_periods(), now_ms);
        evaluate_range(&range, &alarm, AlarmState::Ok)
    };
    // The oldest period of the range: `X - - - -`, ALARM by the table.
    assert_eq!(lone_breach(5), AlarmState::Alarm);
    // One period older: out of the range, so no data at all.
    assert_eq!(lone_breach(6), AlarmState::InsufficientData);
}

fn point(timestamp_ms: i64, value: f64) -> Datapoint {
    Datapoint {
        timestamp_ms,
        value,
    }
}

#[test]
fn range_from_series_aligns_to_period_boundaries() {
    // Mid-period: the range is the three whole minutes 7, 8, 9.
    let now_ms = 10 * MINUTE_MS + 30_000;
    let points = [
        point(6 * MINUTE_MS, 6.0),     // before the range
        point(7 * MINUTE_MS, 7.0),     // oldest slot, exactly on its boundary
        point(8 * MINUTE_MS + 1, 8.5), // not on a boundary
        point(9 * MINUTE_MS, 9.0),     // newest slot
        point(10 * MINUTE_MS, 10.0),   // the period still in progress
        point(11 * MINUTE_MS, 11.0),   // newer than now
    ];
    assert_eq!(
        range_from_series(&points, 60, 3, now_ms),
        vec![Some(7.0), None, Some(9.0)]
    );
    // Exactly on a boundary, the period starting now is not yet whole.
    assert_eq!(
        range_from_series(&points, 60, 3, 10 * MINUTE_MS),
        vec![Some(7.0), None, Some(9.0)]
    );
    // A full period later, the range moves by one slot.
    assert_eq!(
        range_from_series(&points, 60, 3, 11 * MINUTE_MS),
        vec![None, Some(9.0), Some(10.0)]
    );
}

#[test]
fn range_from_series_aligns_to_the_epoch_not_to_now() {
    // 5-minute periods: boundaries at multiples of 300 s since the epoch.
    let period_ms = 300_000;
    let now_ms = 1_000 * period_ms + 299_999;
    let points = [
        point(999 * period_ms, 1.0),
        point(999 * period_ms + 60_000, 2.0), // a minute boundary, not a 5-minute one
        point(1_000 * period_ms, 3.0),
    ];
    assert_eq!(
        range_from_series(&points, 300, 2, now_ms),
        vec![None, Some(1.0)]
    );
}

#[test]
fn range_from_series_treats_nan_as_missing() {
    let now_ms = 3 * MINUTE_MS;
    let points = [
        point(0, 1.0),
        point(MINUTE_MS, f64::NAN),
        point(2 * MINUTE_MS, 3.0),
    ];
    assert_eq!(
        range_from_series(&points, 60, 3, now_ms),
        vec![Some(1.0), None, Some(3.0)]
    );
}

#[test]
fn range_from_series_survives_odd_input() {
    let points = [point(i64::MIN, 1.0), point(i64::MAX, 2.0)];
    assert_eq!(range_from_series(&points, 60, 2, 0), vec![None, None]);
    assert_eq!(
        range_from_series(&[point(0, 1.0)], 0, 2, MINUTE_MS),
        vec![None, None]
    );
    assert!(range_from_series(&[point(0, 1.0)], 60, 0, MINUTE_MS).is_empty());
    // Before the epoch the boundaries still fall on multiples of the period.
    assert_eq!(
        range_from_series(&[point(-2 * MINUTE_MS, 4.0)], 60, 1, -1),
        vec![Some(4.0)]
    );
}

fn alarm_config(id: &str, metric: &str, treat: TreatMissingData) -> AlarmConfig {
    AlarmConfig {
        id: id.to_owned(),
        source: AlarmSource::Local,
        alarm_name: None,
        metric: Some(metric.to_owned()),
        comparison: Some(Comparison::GreaterThanThreshold),
        threshold: Some(80.0),
        evaluation_periods: Some(3),
        datapoints_to_alarm: None,
        treat_missing_data: Some(treat),
    }
}

fn metric_config(id: &str, period_secs: u32) -> MetricConfig {
    MetricConfig {
        id: id.to_owned(),
        source: crate::config::MetricSourceKind::Cloudwatch,
        vertex: None,
        namespace: Some("AWS/KinesisAnalytics".to_owned()),
        metric_name: Some("containerCPUUtilization".to_owned()),
        dimensions: BTreeMap::new(),
        statistic: Some("Average".to_owned()),
        expression: None,
        period_secs,
        min_publication_delay_secs: None,
    }
}

fn series(id: &str, period_secs: u32, points: Vec<Datapoint>) -> Series {
    let metric = metric_config(id, period_secs);
    Series {
        query: crate::metrics::MetricQuery::from_config(&metric, &[]),
        points,
    }
}

/// One point per minute in [from, to) minutes, all of `value`.
fn minutes(from: i64, to: i64, value: f64) -> Vec<Datapoint> {
    (from..to).map(|m| point(m * MINUTE_MS, value)).collect()
}

#[test]
fn tracker_starts_insufficient_since_creation() {
    let tracker = AlarmTracker::new(
        &[alarm_config("out", "cpu", TreatMissingData::Missing)],
        1_234,
    );
    assert_eq!(
        tracker.statuses(),
        vec![AlarmStatus {
            name: "out".to_owned(),
            state: AlarmState::InsufficientData,
            since_ms: 1_234,
        }]
    );
}

#[test]
fn tracker_since_moves_only_on_a_state_change() {
    let created = 10 * MINUTE_MS;
    let mut tracker = AlarmTracker::new(
        &[alarm_config("out", "cpu", TreatMissingData::Missing)],
        created,
    );
    let state_since = |statuses: Vec<AlarmStatus>| (statuses[0].state, statuses[0].since_ms);

    // No data yet: still INSUFFICIENT_DATA, since creation.
    let t1 = 11 * MINUTE_MS;
    let got = tracker.update(&[series("cpu", 60, vec![])], t1);
    assert_eq!(state_since(got), (AlarmState::InsufficientData, created));

    // Three breaching minutes: ALARM from now.
    let t2 = 14 * MINUTE_MS;
    let got = tracker.update(&[series("cpu", 60, minutes(11, 14, 95.0))], t2);
    assert_eq!(state_since(got), (AlarmState::Alarm, t2));

    // Still breaching a minute later: the state holds, so does since.
    let t3 = 15 * MINUTE_MS;
    let got = tracker.update(&[series("cpu", 60, minutes(11, 15, 95.0))], t3);
    assert_eq!(state_since(got), (AlarmState::Alarm, t2));

    // A calm minute: OK from now.
    let t4 = 16 * MINUTE_MS;
    let mut points = minutes(11, 15, 95.0);
    points.push(point(15 * MINUTE_MS, 10.0));
    let got = tracker.update(&[series("cpu", 60, points)], t4);
    assert_eq!(state_since(got), (AlarmState::Ok, t4));
}

#[test]
fn tracker_ignore_keeps_the_state_and_its_since() {
    let mut tracker = AlarmTracker::new(&[alarm_config("out", "cpu", TreatMissingData::Ignore)], 0);
    let t1 = 4 * MINUTE_MS;
    tracker.update(&[series("cpu", 60, minutes(1, 4, 95.0))], t1);
    // The metric stops reporting: `ignore` keeps ALARM, and since with it.
    let got = tracker.update(&[series("cpu", 60, vec![])], 20 * MINUTE_MS);
    assert_eq!((got[0].state, got[0].since_ms), (AlarmState::Alarm, t1));
}

#[test]
fn tracker_matches_series_by_id_and_keeps_configuration_order() {
    let mut tracker = AlarmTracker::new(
        &[
            alarm_config("lag-high", "lag", TreatMissingData::Missing),
            alarm_config("cpu-high", "cpu", TreatMissingData::Missing),
            alarm_config("gone", "absent", TreatMissingData::Breaching),
            alarm_config("gone-quiet", "absent", TreatMissingData::Missing),
        ],
        0,
    );
    let now_ms = 5 * MINUTE_MS;
    // Series in another order than the alarms.
    let got = tracker.update(
        &[
            series("cpu", 60, minutes(0, 5, 95.0)),
            series("lag", 60, minutes(0, 5, 5.0)),
        ],
        now_ms,
    );
    let summary: Vec<(&str, AlarmState)> = got.iter().map(|s| (s.name.as_str(), s.state)).collect();
    assert_eq!(
        summary,
        vec![
            ("lag-high", AlarmState::Ok),
            ("cpu-high", AlarmState::Alarm),
            ("gone", AlarmState::Alarm),
            ("gone-quiet", AlarmState::InsufficientData),
        ]
    );
}

#[test]
fn tracker_uses_the_series_period() {
    let mut tracker = AlarmTracker::new(
        &[alarm_config("out", "cpu", TreatMissingData::NotBreaching)],
        0,
    );
    // Three breaching 5-minute periods; read as 60 s periods, only one of
    // them would fall in the range and the filled calm ones would give OK.
    let points = (0..3).map(|p| point(p * 300_000, 95.0)).collect();
    let got = tracker.update(&[series("cpu", 300, points)], 900_000);
    assert_eq!(got[0].state, AlarmState::Alarm);
}

#[test]
fn window_covers_the_longest_alarm() {
    let metrics = [metric_config("cpu", 60), metric_config("lag", 300)];
    let mut lag = alarm_config("lag-high", "lag", TreatMissingData::Missing);
    lag.evaluation_periods = Some(2);
    let cpu = alarm_config("cpu-high", "cpu", TreatMissingData::Missing);
    // cpu: (3 + 2 + 1) x 60 = 360; lag: (2 + 2 + 1) x 300 = 1500.
    assert_eq!(window_secs(&[cpu.clone(), lag.clone()], &metrics), 1_500);
    assert_eq!(window_secs(&[cpu], &metrics), 360);
    assert_eq!(window_secs(&[], &metrics), 0);
}

#[test]
fn a_window_of_huge_periods_saturates_instead_of_overflowing() {
    // (1 + 2 + 1) x 2^31 s and (u32::MAX + 3) x u32::MAX s do not fit in
    // u32 seconds: the window is the longest one expressible, never a
    // panic nor a wrapped, short window.
    for (period_secs, evaluation_periods) in [
        (1 << 31, 1),
        (u32::MAX, 1),
        (u32::MAX, u32::MAX),
        (60, u32::MAX),
    ] {
        let metrics = [metric_config("cpu", period_secs)];
        let mut alarm = alarm_config("cpu-high", "cpu", TreatMissingData::Missing);
        alarm.evaluation_periods = Some(evaluation_periods);
        assert_eq!(
            window_secs(std::slice::from_ref(&alarm), &metrics),
            u32::MAX,
            "{period_secs} s x {evaluation_periods}"
        );
    }
}

#[test]
fn a_window_ending_now_holds_the_oldest_period_of_the_range() {
    let metrics = [metric_config("cpu", 60)];
    let alarm = alarm_config("cpu-high", "cpu", TreatMissingData::Missing);
    let window_ms = i64::from(window_secs(std::slice::from_ref(&alarm), &metrics)) * 1000;
    let periods = AlarmRule::of(&alarm).unwrap().range_periods() as i64;
    for now_ms in [10 * MINUTE_MS, 10 * MINUTE_MS + 1, 11 * MINUTE_MS - 1] {
        let oldest_period_start = (now_ms.div_euclid(MINUTE_MS) - periods) * MINUTE_MS;
        assert!(
            now_ms - window_ms <= oldest_period_start,
            "now {now_ms}: window starts after the range"
        );
    }
}

fn signal(name: &str, value: f64) -> Signal {
    Signal {
        name: name.to_owned(),
        value,
    }
}

/// An alarm whose metric names an interpreter signal is judged on the
/// signal's values, one per evaluation period, with CloudWatch's M of N:
/// three breaching periods in a row give ALARM, one calm period among the
/// last three gives OK, and a period with no value is missing data.
#[test]
fn an_alarm_on_a_signal_uses_its_recent_values_per_period() {
    let alarms = [alarm_config(
        "behind",
        "seconds_behind",
        TreatMissingData::Missing,
    )];
    let mut tracker = AlarmTracker::new(&alarms, 0).with_signal_period(60);
    let cpu = [series("cpu", 60, vec![])];
    let at = |minute: i64| minute * MINUTE_MS + 5_000;
    let state = |statuses: Vec<AlarmStatus>| statuses[0].state;

    assert_eq!(
        state(tracker.update_with_signals(&cpu, &[], at(1))),
        AlarmState::InsufficientData
    );
    // Two breaching periods: not yet N = 3, and `missing` needs M of them.
    for minute in 2..4 {
        let got = tracker.update_with_signals(&cpu, &[signal("seconds_behind", 95.0)], at(minute));
        assert_eq!(state(got), AlarmState::InsufficientData, "minute {minute}");
    }
    // Twice in one period: the last value counts once, still two periods.
    let got = tracker.update_with_signals(&cpu, &[signal("seconds_behind", 96.0)], at(3) + 20_000);
    assert_eq!(state(got), AlarmState::InsufficientData);
    let got = tracker.update_with_signals(&cpu, &[signal("seconds_behind", 97.0)], at(4));
    assert_eq!(state(got), AlarmState::Alarm);
    // A calm period among the last three: OK.
    let got = tracker.update_with_signals(&cpu, &[signal("seconds_behind", 10.0)], at(5));
    assert_eq!(state(got), AlarmState::Ok);
    // Other signals do not feed it, and a metric of the same name wins.
    let got = tracker.update_with_signals(&cpu, &[signal("other", 99.0)], at(6));
    assert_eq!(state(got), AlarmState::Ok);
    let got = tracker.update_with_signals(
        &[series("seconds_behind", 60, vec![])],
        &[signal("seconds_behind", 99.0)],
        at(7),
    );
    assert_eq!(state(got), AlarmState::InsufficientData);
}

#[test]
fn a_cloudwatch_alarm_takes_the_reported_state_and_its_time() {
    let local = alarm_config("cpu-high", "cpu", TreatMissingData::Missing);
    let remote = AlarmConfig {
        id: "lag-high".into(),
        source: AlarmSource::Cloudwatch,
        alarm_name: Some("ScaleOutAlarm-app".into()),
        metric: None,
        comparison: None,
        threshold: None,
        evaluation_periods: None,
        datapoints_to_alarm: None,
        treat_missing_data: None,
    };
    // A CloudWatch alarm needs no fetched history.
    assert_eq!(
        window_secs(std::slice::from_ref(&remote), &[metric_config("cpu", 60)]),
        0
    );
    let mut tracker = AlarmTracker::new(&[local, remote], 0);
    assert_eq!(tracker.cloudwatch_names(), ["ScaleOutAlarm-app"]);
    let reported = [ReportedState {
        alarm_name: "ScaleOutAlarm-app".into(),
        state: AlarmState::Alarm,
        since_ms: Some(5 * MINUTE_MS),
    }];
    let got = tracker.update_all(&[], &[], &reported, 10 * MINUTE_MS);
    assert_eq!(got[0].state, AlarmState::InsufficientData);
    assert_eq!(
        (got[1].name.as_str(), got[1].state, got[1].since_ms),
        ("lag-high", AlarmState::Alarm, 5 * MINUTE_MS)
    );
    // Not reported (CloudWatch said nothing): INSUFFICIENT_DATA, from now.
    let got = tracker.update_all(&[], &[], &[], 11 * MINUTE_MS);
    assert_eq!(
        (got[1].state, got[1].since_ms),
        (AlarmState::InsufficientData, 11 * MINUTE_MS)
    );
}

/// Every way of filling `unknown` slots with a missing, a non-breaching
/// (10) or a breaching (90) datapoint, for a `> 50` alarm.
fn fills(unknown: usize) -> Vec<Vec<Option<f64>>> {
    let mut out = vec![Vec::new()];
    for _ in 0..unknown {
        out = out
            .into_iter()
            .flat_map(|f: Vec<Option<f64>>| {
                [None, Some(10.0), Some(90.0)].map(|v| {
                    let mut g = f.clone();
                    g.push(v);
                    g
                })
            })
            .collect();
    }
    out
}

/// The first shift (0, the range as it is, included) at which some
/// datapoints still to come give `range`'s alarm, in `state`, another
/// state, by brute force: every way of filling
/// the new periods and the periods still empty with a missing, a
/// non-breaching or a breaching datapoint, except the `invisible` newest
/// of the shifted range, which stay missing (the promise), and of
/// revising the `provisional` newest datapoints of `range` as it is now
/// the same way. `None` when no shift up to the whole range changes it.
fn first_change_by_enumeration(
    range: &[Option<f64>],
    rule: &AlarmRule,
    state: AlarmState,
    invisible: usize,
    provisional: usize,
) -> Option<usize> {
    let len = range.len();
    (0..=len).find(|&shift| {
        let mut future: Vec<Option<f64>> = range[shift..].to_vec();
        future.extend(std::iter::repeat_n(None, shift));
        // Slots that may still be filled: empty ones the promise does not
        // hide, and the datapoints kept from the newest `provisional` slots
        // of `range` (their index in `range` is `shift` more).
        let open: Vec<usize> = (0..len)
            .filter(|&i| {
                let revisable =
                    i + shift < len && i + shift + provisional >= len && future[i].is_some();
                (future[i].is_none() && len - 1 - i >= invisible) || revisable
            })
            .collect();
        fills(open.len()).into_iter().any(|fill| {
            let mut outcome = future.clone();
            for (k, &i) in open.iter().enumerate() {
                outcome[i] = fill[k];
            }
            evaluate_range(&outcome, rule, state) != state
        })
    })
}

/// A steady clean range: non-breaching datapoints, then only the newest
/// periods not published yet (the reference design's steady state).
fn steady(range: &[Option<f64>]) -> bool {
    let published = range.iter().take_while(|slot| slot.is_some()).count();
    range[..published].iter().all(|v| *v == Some(10.0))
        && range[published..].iter().all(Option::is_none)
}

/// The skip rule is never too eager, with or without a promise about the
/// publication delay: for every alarm with N <= 3, every range of missing
/// / non-breaching / breaching datapoints (the newest `invisible` empty, as
/// the promise has them), every state it can be in, 0, 1 or 2 periods
/// hidden by the promise and 0 to 4 newest datapoints not final yet
/// (`provisional_periods` gives 2 or 3 for 60 s periods with those
/// promises), no datapoints that may still come, or revisions of the
/// provisional ones, give another state before the shift
/// `periods_until_possible_change` names (compared with
/// [`first_change_by_enumeration`]). It is also exact where the
/// reference design's cost depends on it, OK on a [`steady`] range with
/// `missing` or `notBreaching`, whatever is provisional: there a rule one
/// period less eager would poll needlessly.
#[test]
fn no_datapoints_to_come_change_a_state_before_the_skip_ends() {
    let (mut cases, mut skipped, mut exact) = (0, 0, 0);
    // Provisional: none, the newest slot, and one or two slots behind the
    // hidden ones (`provisional_periods` of 60 s periods: 2 with no
    // promise or a 60 s one, 3 with 120 s).
    let settings = (0..=2usize).flat_map(|i| {
        let mut p = vec![0, 1, i + 1, i + 2];
        p.dedup();
        p.into_iter().map(move |p| (i, p))
    });
    for (invisible, provisional) in settings {
        for n in 1..=3u32 {
            for m in 1..=n {
                for treat in COLUMNS {
                    let rule = AlarmRule {
                        comparison: Comparison::GreaterThanThreshold,
                        threshold: 50.0,
                        evaluation_periods: n,
                        datapoints_to_alarm: m,
                        treat_missing: treat,
                    };
                    let len = rule.range_periods();
                    for range in fills(len) {
                        if range[len.saturating_sub(invisible)..]
                            .iter()
                            .any(Option::is_some)
                        {
                            // Seen sooner than promised: the controller
                            // stops relying on the promise.
                            continue;
                        }
                        for before in ALL_STATES {
                            let state = evaluate_range(&range, &rule, before);
                            let skip = periods_until_possible_change(
                                &range,
                                &rule,
                                state,
                                invisible,
                                provisional,
                            );
                            assert!((0..=len).contains(&skip));
                            let truth = first_change_by_enumeration(
                                &range,
                                &rule,
                                state,
                                invisible,
                                provisional,
                            );
                            assert!(
                                truth.is_none_or(|first| skip <= first),
                                "{m} of {n}, {treat:?}, {invisible} hidden, {provisional} \
                                 provisional: {range:?} in {state:?} skips {skip} periods, but \
                                 datapoints to come change it after {truth:?}"
                            );
                            cases += 1;
                            skipped += skip.saturating_sub(1);
                            if truth == Some(skip) {
                                exact += 1;
                            } else if state == AlarmState::Ok
                                && matches!(
                                    treat,
                                    TreatMissingData::Missing | TreatMissingData::NotBreaching
                                )
                                && steady(&range)
                                && truth.is_some()
                            {
                                panic!(
                                    "{m} of {n}, {treat:?}, {invisible} hidden: {range:?} in OK \
                                     skips {skip} periods, but could skip to {truth:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    // The rule does skip: a test of a rule that never skips proves nothing.
    assert!(skipped > 1000, "only {skipped} skipped periods checked");
    assert!(exact * 2 > cases, "exact in only {exact} of {cases} cases");
}

/// The reference design's alarms (5 of 5, `missing`): a clean range whose
/// newest period is not published yet may first alarm 4 periods on; a full
/// clean one 5 on; one breaching datapoint among them brings it 1 closer;
/// an ALARM of 5 of 5 may end with the next datapoint; and an
/// INSUFFICIENT_DATA alarm is never skipped.
#[test]
fn the_reference_designs_alarms_skip_by_hand() {
    let rule = reference_scale_out();
    let clean = Some(50.0);
    let hot = Some(95.0);
    let mut range = vec![clean; 7];
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, 0, 0),
        5
    );
    range[6] = None;
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, 0, 0),
        4
    );
    range[5] = hot;
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, 0, 0),
        3
    );
    let alarm = vec![hot; 7];
    assert_eq!(
        periods_until_possible_change(&alarm, &rule, AlarmState::Alarm, 0, 0),
        1
    );
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::InsufficientData, 0, 0),
        0
    );
    // With the promise that a datapoint is published no sooner than 60 s
    // after its 60 s period ends, the newest period is never seen by any
    // evaluation: the clean range waits 5 periods, not 4, and no more (4
    // visible new periods and the one now unpublished make 5 of 5).
    let mut range = vec![clean; 7];
    range[6] = None;
    let hidden = invisible_periods(60, 60);
    assert_eq!(hidden, 1);
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, hidden, 0),
        5
    );
    assert_eq!(
        first_change_by_enumeration(&range, &rule, AlarmState::Ok, hidden, 0),
        Some(5)
    );
    assert_eq!(
        first_change_by_enumeration(&range, &rule, AlarmState::Ok, 0, 0),
        Some(4)
    );
}

/// A period may be fetched before its last sample is published (a
/// TaskManager's sample of a 60 s period, a 300 s period's last minute),
/// and a later fetch revises it: the newest visible datapoint is not
/// final. A 1 of 1 alarm on a 300 s metric, clean now, would skip to
/// the next period, where that datapoint is no longer the newest, and an
/// ALARM from its final value would be lost; counted as provisional, the
/// newest keeps every interval evaluated. Older datapoints stay final: 2
/// of 2 with the older one clean waits a period.
#[test]
fn the_newest_visible_datapoint_is_not_final() {
    // The periods that ended less than two minutes ago, or a minute
    // after the promise; a period less than a minute after the promise.
    assert_eq!(provisional_periods(60, 0), 2);
    assert_eq!(provisional_periods(60, 60), 2);
    assert_eq!(provisional_periods(60, 30), 2);
    assert_eq!(provisional_periods(60, 120), 3);
    assert_eq!(provisional_periods(10, 0), 1);
    assert_eq!(provisional_periods(10, 60), 7);
    assert_eq!(provisional_periods(30, 30), 2);
    assert_eq!(provisional_periods(300, 0), 1);
    assert_eq!(provisional_periods(300, 60), 1);
    assert_eq!(provisional_periods(300, 300), 2);
    // A promise never makes the rule take a datapoint as final sooner:
    // it says only when samples may first come.
    for period in [10, 20, 30, 60, 120, 300, 3600] {
        for promise in [0, 10, 30, 59, 60, 61, 120, 300, 3600] {
            assert!(
                provisional_periods(period, promise) >= provisional_periods(period, 0),
                "{period} s with a {promise} s promise"
            );
            assert!(open_secs(period, promise) >= open_secs(period, 0));
        }
    }
    let one_of_one = AlarmRule {
        comparison: Comparison::GreaterThanThreshold,
        threshold: 80.0,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        treat_missing: TreatMissingData::Missing,
    };
    let clean = vec![Some(70.0); one_of_one.range_periods()];
    assert_eq!(
        periods_until_possible_change(&clean, &one_of_one, AlarmState::Ok, 0, 0),
        1
    );
    assert_eq!(
        periods_until_possible_change(&clean, &one_of_one, AlarmState::Ok, 0, 1),
        0
    );
    assert_eq!(
        first_change_by_enumeration(&clean, &one_of_one, AlarmState::Ok, 0, 1),
        Some(0)
    );
    let two_of_two = AlarmRule {
        evaluation_periods: 2,
        datapoints_to_alarm: 2,
        ..one_of_one
    };
    let clean = vec![Some(70.0); two_of_two.range_periods()];
    assert_eq!(
        periods_until_possible_change(&clean, &two_of_two, AlarmState::Ok, 0, 1),
        1
    );
    assert_eq!(
        first_change_by_enumeration(&clean, &two_of_two, AlarmState::Ok, 0, 1),
        Some(1)
    );
}

/// MSF's CPU metric comes from every TaskManager: the first `Maximum`
/// fetched for a 60 s period may lack a TaskManager's sample and rise at
/// the next fetch. The reference design's scale-out alarm (5 of 5 above
/// 80) with three breaching periods and a newest one fetched at 75, whose
/// final value is 90: a poll every interval sees ALARM at the next
/// evaluation (90 x 5 once a new breaching period comes), so the skip
/// rule must not skip it. Taken as final, the newest slot made it skip
/// one evaluation (2 periods), which an audit found; with its 60 s
/// promise the two newest are open.
#[test]
fn a_partly_published_minute_is_not_skipped_over() {
    let rule = reference_scale_out();
    let range = [50.0, 50.0, 50.0, 90.0, 90.0, 90.0, 75.0].map(Some);
    assert_eq!(
        evaluate_range(&range, &rule, AlarmState::Ok),
        AlarmState::Ok
    );
    let open = provisional_periods(60, 0);
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, 0, open),
        1
    );
    assert_eq!(
        periods_until_possible_change(&range, &rule, AlarmState::Ok, 0, 0),
        2,
        "the newest taken as final skips the evaluation that sees 90"
    );
    let mut revised = range;
    revised[6] = Some(90.0);
    let mut next = revised[1..].to_vec();
    next.push(Some(95.0));
    assert_eq!(
        evaluate_range(&next, &rule, AlarmState::Ok),
        AlarmState::Alarm
    );
}

/// A promise hides `delay / period` newest periods, rounded down: a 60 s
/// delay hides one 60 s period, none of 300 s, six of 10 s; 59 s hides
/// none of 60 s (an evaluation 59 s or more into its period sees it).
#[test]
fn a_promise_hides_whole_periods() {
    assert_eq!(invisible_periods(60, 60), 1);
    assert_eq!(invisible_periods(59, 60), 0);
    assert_eq!(invisible_periods(120, 60), 2);
    assert_eq!(invisible_periods(60, 300), 0);
    assert_eq!(invisible_periods(60, 10), 6);
    assert_eq!(invisible_periods(0, 60), 0);
    assert_eq!(invisible_periods(60, 0), 0);
}
