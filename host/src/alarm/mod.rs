//! Evaluate: local alarm evaluation with CloudWatch semantics.
//!
//! An alarm watches one configured metric and is evaluated, like a
//! CloudWatch metric alarm, over an *evaluation range* of recent whole
//! periods: N (`evaluation_periods`) of them must be judged, M
//! (`datapoints_to_alarm`) of those must breach, and `treat_missing_data`
//! says what a missing period counts as. The evaluator ([`evaluate_range`])
//! is pure; [`range_from_series`] turns a fetched series into the range it
//! reads, and [`AlarmTracker`] keeps each alarm's state between
//! evaluations for the controller.
//!
//! An alarm's `metric` may also name a signal of one of the application's
//! interpreters. A signal is one value per evaluation, not a fetched
//! series, so the tracker keeps its recent values as a series of its own:
//! one datapoint per period of the application's evaluation interval, the
//! value computed during a period standing for the period before it (the
//! last whole period of the metrics it was derived from), the last value
//! of a period winning. Those datapoints are then judged exactly as a
//! metric's, with the same periods, M of N and missing-data rules; a period
//! in which no evaluation produced the signal is missing. The cases it reproduces, and the rule
//! derived from them, are in `docs/ALARM_CASES.md` (taken from the
//! CloudWatch user guide, "How alarm state is evaluated when data is
//! missing").

use crate::config::{AlarmConfig, Comparison, MetricConfig, TreatMissingData};
use std::collections::{BTreeMap, VecDeque};

use crate::metrics::{Datapoint, Series};
use crate::model::{AlarmState, AlarmStatus, Signal};

#[cfg(test)]
mod tests;

/// How many periods the evaluation range holds beyond the N evaluated ones.
///
/// CloudWatch does not document the size of its evaluation range; the
/// user guide's examples use 5 datapoints for N = 3, so the range here is
/// N + 2 periods, for every N.
pub const EXTRA_RANGE_PERIODS: usize = 2;

/// What the evaluator needs to know about one alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRule {
    /// How a value is compared with the threshold.
    pub comparison: Comparison,
    /// The threshold.
    pub threshold: f64,
    /// N: how many datapoints are judged.
    pub evaluation_periods: u32,
    /// M: how many of the N must breach for ALARM.
    pub datapoints_to_alarm: u32,
    /// What a missing period counts as.
    pub treat_missing: TreatMissingData,
}

impl AlarmRule {
    /// Length of the evaluation range: N + [`EXTRA_RANGE_PERIODS`] periods.
    pub fn range_periods(&self) -> usize {
        self.evaluation_periods as usize + EXTRA_RANGE_PERIODS
    }
}

impl AlarmRule {
    /// The rule of a local alarm; `None` for one whose state comes from
    /// CloudWatch (or, before validation, one missing a required field).
    pub fn of(config: &AlarmConfig) -> Option<Self> {
        if config.cloudwatch_name().is_some() {
            return None;
        }
        Some(Self {
            comparison: config.comparison?,
            threshold: config.threshold?,
            evaluation_periods: config.evaluation_periods?,
            datapoints_to_alarm: config.datapoints_to_alarm(),
            treat_missing: config.treat_missing_data(),
        })
    }
}

/// Evaluates one alarm over its evaluation range and returns its new state.
///
/// `range` holds one slot per period, oldest first, `None` (or NaN) where
/// the period has no datapoint; it is meant to be N + 2 periods long (see
/// [`EXTRA_RANGE_PERIODS`]). `current` is the alarm's state before this
/// evaluation, which `ignore` may keep.
///
/// With k real datapoints in the range, exactly N datapoints are judged
/// and fewer than M breaching gives OK, otherwise ALARM:
/// - k >= N: the most recent N real datapoints are judged, whatever
///   `treat_missing_data` says.
/// - k < N, `breaching` / `notBreaching`: the k real ones (however old)
///   plus N - k filled ones of that kind.
/// - k < N, `missing`: no real datapoint gives INSUFFICIENT_DATA; at least
///   M real breaching ones give ALARM; with no real non-breaching one, a
///   breaching one at least M periods old (its own period counted: M - 1
///   or more periods of the range come after it) gives ALARM; a real
///   non-breaching one gives OK; anything else is INSUFFICIENT_DATA.
/// - k < N, `ignore`: as `missing`, except that where `missing` would give
///   INSUFFICIENT_DATA or decide by the age of a breaching datapoint, the
///   current state is kept.
///
/// CloudWatch documents cases and, for the age, a sentence ("Avoiding
/// premature transitions to alarm state": ALARM "when the oldest available
/// breaching datapoint ... is at least as old as the value of Datapoints to
/// Alarm, and all other more recent data points are breaching or
/// missing"); the rule is the simplest one that reproduces every documented
/// case (`docs/ALARM_CASES.md`).
pub fn evaluate_range(range: &[Option<f64>], alarm: &AlarmRule, current: AlarmState) -> AlarmState {
    let n = alarm.evaluation_periods as usize;
    let m = alarm.datapoints_to_alarm as usize;
    // (periods after it in the range, breaches?) for every real datapoint, oldest first.
    let real: Vec<(usize, bool)> = range
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| {
            let value = slot.filter(|value| !value.is_nan())?;
            let age = range.len() - 1 - index;
            Some((age, alarm.comparison.breaches(value, alarm.threshold)))
        })
        .collect();
    let verdict = |breaching: usize| {
        if breaching >= m {
            AlarmState::Alarm
        } else {
            AlarmState::Ok
        }
    };
    let k = real.len();
    if k >= n {
        return verdict(real[k - n..].iter().filter(|(_, b)| *b).count());
    }
    let real_breaching = real.iter().filter(|(_, b)| *b).count();
    match alarm.treat_missing {
        TreatMissingData::Breaching => verdict(real_breaching + (n - k)),
        TreatMissingData::NotBreaching => verdict(real_breaching),
        TreatMissingData::Missing => match sparse_verdict(&real, m) {
            Sparse::Alarm | Sparse::AgedAlarm => AlarmState::Alarm,
            Sparse::Ok => AlarmState::Ok,
            Sparse::Undecided => AlarmState::InsufficientData,
        },
        TreatMissingData::Ignore => match sparse_verdict(&real, m) {
            Sparse::Alarm => AlarmState::Alarm,
            Sparse::Ok => AlarmState::Ok,
            Sparse::AgedAlarm | Sparse::Undecided => current,
        },
    }
}

/// What fewer than N real datapoints say when missing ones are not filled.
enum Sparse {
    /// At least M of them breach.
    Alarm,
    /// None is non-breaching and a breaching one is at least M periods old
    /// (the newest period is one period old).
    AgedAlarm,
    /// One of them does not breach.
    Ok,
    /// They do not tell.
    Undecided,
}

/// The `missing` / `ignore` part of the rule of [`evaluate_range`]; `real`
/// is (periods of the range after it, breaches) per real datapoint, oldest
/// first.
fn sparse_verdict(real: &[(usize, bool)], m: usize) -> Sparse {
    let breaching = real.iter().filter(|(_, b)| *b).count();
    let any_non_breaching = real.iter().any(|(_, b)| !*b);
    let oldest_breaching_age = real.iter().find(|(_, b)| *b).map(|(age, _)| *age);
    if real.is_empty() {
        Sparse::Undecided
    } else if breaching >= m {
        Sparse::Alarm
    } else if !any_non_breaching && oldest_breaching_age.is_some_and(|after| after + 1 >= m) {
        Sparse::AgedAlarm
    } else if any_non_breaching {
        Sparse::Ok
    } else {
        Sparse::Undecided
    }
}

/// How many periods from now the state of an alarm in `state`, whose
/// evaluation range is now `range`, may first change: the smallest shift s
/// for which some datapoints still to come make [`evaluate_range`] give
/// another state on the range s periods later. 0 when it may change
/// before the range moves at all (always from INSUFFICIENT_DATA, which any
/// datapoint may end): a datapoint published late for one of its empty
/// periods is seen by the next evaluation of this period, which comes
/// before the next period when the evaluation interval is shorter than
/// the metric's period.
///
/// After s periods the range keeps the newest `len - s` slots of `range`
/// and gains s new ones. A new slot, and a kept slot that is empty now (a
/// datapoint may still be published late), is unknown: breaching, not
/// breaching or missing. A datapoint already there is taken as final (a
/// whole period's value; the period in progress is never judged), but for
/// the `provisional` newest (below).
/// - OK stays OK while even breaching unknowns reach fewer than M
///   breaching datapoints (with `breaching`, missing ones count too) and,
///   for `missing`, a kept non-breaching datapoint rules out
///   INSUFFICIENT_DATA and an ALARM from a breaching datapoint's age.
/// - ALARM stays ALARM while at least M kept breaching datapoints are
///   young enough (at most N - 1 periods after the shift) to be among the
///   N newest real ones whatever comes, which also decides every case of
///   fewer than N real datapoints.
///
/// `invisible` is how many of the newest periods of a range no evaluation
/// can see yet, whenever in its period it runs: with a promise that a
/// period's datapoint is never published sooner than D after the period
/// ends, `D / period` (rounded down; see [`invisible_periods`]), else 0.
/// An empty or new slot among them is missing, not unknown, after every
/// shift. A datapoint already there counts as it is, even there (seeing
/// one there breaks the promise, which the controller checks on every
/// fetch and stops relying on).
///
/// `provisional` is how many of the newest slots of `range` as it is now
/// may hold a value that is not final yet (see [`provisional_periods`]):
/// a datapoint there is unknown too, wherever the shift keeps it, since
/// the evaluation that would see its final value is the one skipped.
pub fn periods_until_possible_change(
    range: &[Option<f64>],
    alarm: &AlarmRule,
    state: AlarmState,
    invisible: usize,
    provisional: usize,
) -> usize {
    let n = alarm.evaluation_periods as usize;
    let m = alarm.datapoints_to_alarm as usize;
    let len = range.len();
    let forced = |shift: usize| -> bool {
        let kept = &range[shift.min(len)..];
        // New slots take positions 0..shift from the newest; the ones the
        // promise hides are missing.
        let mut unknown = shift.saturating_sub(invisible);
        let (mut real, mut breaching, mut clean, mut young_breaching) = (0, 0, 0, 0);
        for (index, slot) in kept.iter().enumerate() {
            // Position from the newest slot of the shifted range.
            let position = kept.len() - 1 - index + shift;
            match slot.filter(|v| !v.is_nan()) {
                None if position < invisible => {}
                None => unknown += 1,
                // Its place in the range as it is now: `shift` newer.
                Some(_) if position - shift < provisional => unknown += 1,
                Some(value) => {
                    real += 1;
                    if alarm.comparison.breaches(value, alarm.threshold) {
                        breaching += 1;
                        // Age in the shifted range: slots after it.
                        if position < n {
                            young_breaching += 1;
                        }
                    } else {
                        clean += 1;
                    }
                }
            }
        }
        match state {
            AlarmState::Ok => {
                let filled = match alarm.treat_missing {
                    TreatMissingData::Breaching => unknown.max(n.saturating_sub(real)),
                    _ => unknown,
                };
                let no_alarm = breaching + filled < m;
                match alarm.treat_missing {
                    TreatMissingData::Missing => no_alarm && clean > 0,
                    _ => no_alarm,
                }
            }
            AlarmState::Alarm => young_breaching >= m && m > 0,
            AlarmState::InsufficientData => false,
        }
    };
    if m == 0 || n == 0 {
        return 0;
    }
    // Without a promise, at a shift of the whole range every slot is
    // unknown, which never forces a state: the search ends there at the
    // latest. With one, slots it hides may force a state for good (no
    // shift beyond the whole range differs from it); the whole range is
    // then as far as it goes.
    (0..=len)
        .find(|&shift| !forced(shift))
        .unwrap_or(len.max(1))
}

/// How many of the newest datapoints of a range of a metric with periods
/// of `period_secs` may not be final when fetched, when none of a
/// period's samples is published sooner than `min_delay_secs` after the
/// period ends (a promise; 0 without one): every period that ended less
/// than [`open_secs`] before the evaluation, which may run at the very
/// start of its period. For 60 s periods: the two newest, with or without
/// a 60 s promise; for 300 s periods: the newest; for 10 s periods: the
/// newest, or seven with a 60 s promise.
///
/// CloudWatch answers a period with what was published for it so far,
/// and a period's datapoint is rarely one sample: Managed Service for
/// Apache Flink publishes `containerCPUUtilization` twice a minute for
/// each TaskManager and `cpuUtilization` once a reporting interval for
/// each, Kinesis and MSK per shard and per broker, each publisher on its
/// own. The first value fetched for a period, 60 s included, may lack
/// samples that the next fetch adds (a `Maximum` that rises, an `Average`
/// that moves either way). The rule counts the datapoints that may still
/// lack some as unknown, as a poll every interval would have seen them
/// change.
pub fn provisional_periods(period_secs: u32, min_delay_secs: u32) -> usize {
    let period = period_secs.max(1);
    open_secs(period, min_delay_secs).div_ceil(period).max(1) as usize
}

/// How long after its period ends a datapoint may still gain samples, as
/// the skip rule assumes: for a period of a minute or more, two minutes,
/// or a minute after the promise when that is later (AWS publishes a
/// minute's samples up to a reporting interval, a minute, after it, and
/// CloudWatch takes a moment more to show them; a promise that nothing
/// comes before D moves the minute in which samples come to after D); for
/// a shorter period, which only a metric of the user's own has, one
/// period after the promise.
pub fn open_secs(period_secs: u32, min_delay_secs: u32) -> u32 {
    if period_secs < 60 {
        min_delay_secs.saturating_add(period_secs)
    } else {
        min_delay_secs.saturating_add(60).max(120)
    }
}

/// How many of the newest periods of an evaluation range no evaluation can
/// see, whenever in its period it runs, when a period's datapoint is never
/// published sooner than `min_delay_secs` after the period ends.
///
/// An evaluation at t in [E, E + period), whose range ends at E, sees the
/// period i places before the newest (ending at E - i x period) only from
/// E - i x period + D on; at every such t it cannot see it while
/// (i + 1) x period <= D. So `D / period`, rounded down: 0 with no promise
/// or a period of 0.
pub fn invisible_periods(min_delay_secs: u32, period_secs: u32) -> usize {
    if period_secs == 0 {
        return 0;
    }
    (min_delay_secs / period_secs) as usize
}

/// Lays a fetched series out as an evaluation range: the last `periods`
/// whole periods before `now_ms`, oldest first, one slot per period.
///
/// Periods are aligned to multiples of `period_secs` since the Unix epoch,
/// as CloudWatch aligns them, and the range ends at the period boundary at
/// or before `now_ms`, so the period still in progress is never judged. A
/// slot holds the value of the datapoint whose timestamp is that period's
/// start; it is `None` where there is none, where the value is NaN, or
/// when `period_secs` is 0. Datapoints off the boundaries or outside the
/// range are ignored.
pub fn range_from_series(
    points: &[Datapoint],
    period_secs: u32,
    periods: usize,
    now_ms: i64,
) -> Vec<Option<f64>> {
    let mut range = vec![None; periods];
    if period_secs == 0 {
        return range;
    }
    // i128 so that no timestamp, however far off, can overflow.
    let period_ms = i128::from(period_secs) * 1000;
    let end = i128::from(now_ms).div_euclid(period_ms) * period_ms;
    for point in points {
        if point.value.is_nan() {
            continue;
        }
        let before_end = end - i128::from(point.timestamp_ms);
        if before_end <= 0 || before_end % period_ms != 0 {
            continue;
        }
        let back = before_end / period_ms;
        if let Some(slot) = usize::try_from(back)
            .ok()
            .and_then(|back| periods.checked_sub(back))
        {
            range[slot] = Some(point.value);
        }
    }
    range
}

/// How many seconds of history the controller must fetch so that every
/// alarm's evaluation range is covered: (N + 2) x period for the longest
/// alarm, plus one period.
///
/// The extra period is there because a range ends at the period boundary
/// at or before now, not at now, so a window that simply ends at now must
/// reach up to one period further back to hold the range's oldest period.
/// An alarm whose metric is not among `metrics` is skipped (validation
/// rejects it). 0 when there is no alarm.
pub fn window_secs(alarms: &[AlarmConfig], metrics: &[MetricConfig]) -> u32 {
    alarms
        .iter()
        .filter_map(|alarm| {
            let rule = AlarmRule::of(alarm)?;
            let metric = metrics
                .iter()
                .find(|metric| Some(&metric.id) == alarm.metric.as_ref())?;
            let periods = u64::from(rule.evaluation_periods) + EXTRA_RANGE_PERIODS as u64 + 1;
            Some(periods.saturating_mul(u64::from(metric.period_secs)))
        })
        .max()
        .map_or(0, |secs| u32::try_from(secs).unwrap_or(u32::MAX))
}

/// One tracked alarm.
#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    how: Judged,
    state: AlarmState,
    since_ms: i64,
}

/// Who judges an alarm.
#[derive(Debug, Clone)]
enum Judged {
    /// flinkscale, on `metric` (a metric id or a signal name).
    Locally { metric: String, rule: AlarmRule },
    /// CloudWatch: the alarm of that name.
    ByCloudWatch { alarm_name: String },
}

/// The state of a CloudWatch alarm as DescribeAlarms reported it, for
/// [`AlarmTracker::update_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedState {
    /// The CloudWatch alarm's name.
    pub alarm_name: String,
    /// Its state.
    pub state: AlarmState,
    /// When CloudWatch last changed it (ms since the Unix epoch), if said.
    pub since_ms: Option<i64>,
}

impl Tracked {
    fn status(&self) -> AlarmStatus {
        AlarmStatus {
            name: self.id.clone(),
            state: self.state,
            since_ms: self.since_ms,
        }
    }
}

/// The states of one application's alarms between evaluations.
///
/// Every alarm starts in INSUFFICIENT_DATA, since the tracker's creation,
/// as a new CloudWatch alarm does. `since_ms` moves only when the state
/// changes, so a policy can tell how long an alarm has held its state.
#[derive(Debug, Clone)]
pub struct AlarmTracker {
    alarms: Vec<Tracked>,
    /// The period of the datapoints kept for signals, in seconds.
    signal_period_secs: u32,
    /// Recent values of the signals alarms watch, oldest first, at most one
    /// per period and no more than the longest range needs.
    signal_history: BTreeMap<String, VecDeque<Datapoint>>,
}

/// The period of signal datapoints when none is set: CloudWatch's standard
/// resolution.
pub const DEFAULT_SIGNAL_PERIOD_SECS: u32 = 60;

impl AlarmTracker {
    /// A tracker for `alarms` (a validated configuration's), created at
    /// `now_ms`.
    pub fn new(alarms: &[AlarmConfig], now_ms: i64) -> Self {
        Self {
            alarms: alarms
                .iter()
                .filter_map(|alarm| {
                    let how = match (alarm.cloudwatch_name(), AlarmRule::of(alarm)) {
                        (Some(name), _) => Judged::ByCloudWatch {
                            alarm_name: name.to_owned(),
                        },
                        (None, Some(rule)) => Judged::Locally {
                            metric: alarm.metric.clone().unwrap_or_default(),
                            rule,
                        },
                        // Not a valid configuration's alarm.
                        (None, None) => return None,
                    };
                    Some(Tracked {
                        id: alarm.id.clone(),
                        how,
                        state: AlarmState::InsufficientData,
                        since_ms: now_ms,
                    })
                })
                .collect(),
            signal_period_secs: DEFAULT_SIGNAL_PERIOD_SECS,
            signal_history: BTreeMap::new(),
        }
    }

    /// Sets the period of the datapoints kept for signals: the
    /// application's evaluation interval, since a signal gets one value per
    /// evaluation. 0 is taken as 1.
    pub fn with_signal_period(mut self, period_secs: u32) -> Self {
        self.signal_period_secs = period_secs.max(1);
        self
    }

    /// Evaluates every alarm on the fetched `series` at `now_ms` and returns
    /// the statuses in configuration order.
    ///
    /// An alarm's series is the one whose query id is the alarm's metric; an
    /// alarm whose series is absent sees a range with every period missing.
    pub fn update(&mut self, series: &[Series], now_ms: i64) -> Vec<AlarmStatus> {
        self.update_with_signals(series, &[], now_ms)
    }

    /// As [`AlarmTracker::update`], and records this evaluation's `signals`
    /// first, so that an alarm whose metric names a signal (and no fetched
    /// series) is evaluated on the signal's recent values.
    pub fn update_with_signals(
        &mut self,
        series: &[Series],
        signals: &[Signal],
        now_ms: i64,
    ) -> Vec<AlarmStatus> {
        self.update_all(series, signals, &[], now_ms)
    }

    /// The names of the CloudWatch alarms whose states
    /// [`AlarmTracker::update_all`] needs, in configuration order.
    pub fn cloudwatch_names(&self) -> Vec<String> {
        self.alarms
            .iter()
            .filter_map(|a| match &a.how {
                Judged::ByCloudWatch { alarm_name } => Some(alarm_name.clone()),
                Judged::Locally { .. } => None,
            })
            .collect()
    }

    /// As [`AlarmTracker::update_with_signals`], and takes the state of
    /// every `source = "cloudwatch"` alarm from `reported` (an alarm not
    /// reported is INSUFFICIENT_DATA: CloudWatch said nothing about it).
    /// Such an alarm's `since_ms` is CloudWatch's when it says one.
    pub fn update_all(
        &mut self,
        series: &[Series],
        signals: &[Signal],
        reported: &[ReportedState],
        now_ms: i64,
    ) -> Vec<AlarmStatus> {
        self.record_signals(series, signals, now_ms);
        let period_secs = self.signal_period_secs;
        for alarm in &mut self.alarms {
            let (state, since_ms) = match &alarm.how {
                Judged::Locally { metric, rule } => {
                    let periods = rule.range_periods();
                    let range = match series.iter().find(|s| &s.query.id == metric) {
                        Some(s) => {
                            range_from_series(&s.points, s.query.period_secs, periods, now_ms)
                        }
                        None => match self.signal_history.get(metric) {
                            Some(points) => {
                                let points: Vec<Datapoint> = points.iter().copied().collect();
                                range_from_series(&points, period_secs, periods, now_ms)
                            }
                            None => vec![None; periods],
                        },
                    };
                    (evaluate_range(&range, rule, alarm.state), now_ms)
                }
                Judged::ByCloudWatch { alarm_name } => {
                    match reported.iter().find(|r| &r.alarm_name == alarm_name) {
                        Some(r) => (r.state, r.since_ms.unwrap_or(now_ms)),
                        None => (AlarmState::InsufficientData, now_ms),
                    }
                }
            };
            if state != alarm.state {
                alarm.state = state;
                alarm.since_ms = since_ms;
            }
        }
        self.statuses()
    }

    /// Keeps the value of every watched signal, at the start of the last
    /// whole period before `now_ms`, replacing a value already kept for that
    /// period, and forgets what no range reaches any more.
    fn record_signals(&mut self, series: &[Series], signals: &[Signal], now_ms: i64) {
        let period_ms = i64::from(self.signal_period_secs.max(1)) * 1000;
        // Saturating: `now_ms` is whatever the clock says, extremes included.
        let stamp = now_ms
            .div_euclid(period_ms)
            .saturating_mul(period_ms)
            .saturating_sub(period_ms);
        for alarm in &self.alarms {
            let Judged::Locally { metric, .. } = &alarm.how else {
                continue;
            };
            if series.iter().any(|s| &s.query.id == metric) {
                continue;
            }
            let Some(signal) = signals.iter().find(|s| &s.name == metric) else {
                continue;
            };
            if !signal.value.is_finite() {
                continue;
            }
            let keep = self
                .alarms
                .iter()
                .filter_map(|a| match &a.how {
                    Judged::Locally { metric: m, rule } if m == metric => {
                        Some(rule.range_periods())
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            let history = self.signal_history.entry(metric.clone()).or_default();
            if history.back().is_some_and(|p| p.timestamp_ms == stamp) {
                history.pop_back();
            }
            history.push_back(Datapoint {
                timestamp_ms: stamp,
                value: signal.value,
            });
            let oldest = stamp
                .saturating_sub(period_ms.saturating_mul(i64::try_from(keep).unwrap_or(i64::MAX)));
            while history.front().is_some_and(|p| p.timestamp_ms < oldest) {
                history.pop_front();
            }
        }
    }

    /// The earliest time (ms since the epoch) at which an evaluation may
    /// find any alarm in another state than the last update left it, given
    /// the `series` that update judged at `now_ms` (see
    /// [`periods_until_possible_change`]); an evaluation before it finds
    /// every state unchanged. `None` when that cannot be known: no alarm,
    /// an alarm read from CloudWatch, or one on a signal (signals exist
    /// only where an evaluation runs).
    ///
    /// `min_delay_secs` gives the promised publication delay of a metric by
    /// id (`min_publication_delay_secs`; 0 for none, or for a promise no
    /// longer trusted).
    pub fn earliest_change_ms(
        &self,
        series: &[Series],
        now_ms: i64,
        min_delay_secs: impl Fn(&str) -> u32,
    ) -> Option<i64> {
        let mut earliest: Option<i64> = None;
        for alarm in &self.alarms {
            let Judged::Locally { metric, rule } = &alarm.how else {
                return None;
            };
            let s = series.iter().find(|s| &s.query.id == metric)?;
            let period_ms = i64::from(s.query.period_secs.max(1)) * 1000;
            let range =
                range_from_series(&s.points, s.query.period_secs, rule.range_periods(), now_ms);
            let promised = min_delay_secs(metric);
            let invisible = invisible_periods(promised, s.query.period_secs);
            let provisional = provisional_periods(s.query.period_secs, promised);
            let shift =
                periods_until_possible_change(&range, rule, alarm.state, invisible, provisional);
            let boundary = now_ms.div_euclid(period_ms);
            let at = boundary
                .saturating_add(i64::try_from(shift).unwrap_or(i64::MAX))
                .saturating_mul(period_ms);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        earliest
    }

    /// The statuses as of the last update, in configuration order.
    pub fn statuses(&self) -> Vec<AlarmStatus> {
        self.alarms.iter().map(Tracked::status).collect()
    }
}
