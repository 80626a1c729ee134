//! CloudWatch metric alarms that really evaluate: PutMetricAlarm,
//! DescribeAlarms, DeleteAlarms over the emulated metrics.
//!
//! An alarm is judged with the project's own evaluator
//! ([`crate::alarm::evaluate_range`]) at every boundary of its period, on
//! the datapoints visible at that boundary, so DescribeAlarms shows the
//! state as of now. Evaluation is lazy: each request catches the alarms up
//! on the boundaries passed since the last one. A new alarm starts in
//! INSUFFICIENT_DATA and is judged at once on the latest boundary, as
//! CloudWatch judges a new alarm within its first period.

use std::collections::BTreeMap;

use super::cloudwatch::{self, CODES, MetricStat};
use super::value::{AwsError, Reader, Value};
use super::{AlarmSnapshot, Clock, Core};
use crate::alarm::{AlarmRule, evaluate_range, range_from_series};
use crate::config::{Comparison, TreatMissingData};
use crate::model::AlarmState;
use crate::sim::{Statistic, World};

/// An account holds at most this many alarms here.
const MAX_ALARMS: usize = 10_000;
/// After a long pause the alarms are judged on at most this many of the
/// latest boundaries: older ones could only matter to `ignore`'s memory.
const MAX_CATCH_UP: i64 = 256;
/// The longest evaluation an alarm may ask for, N x period (CloudWatch's
/// seven days), and with a period under an hour, one day (PutMetricAlarm's
/// `Period`).
const MAX_EVALUATION_SECS: i64 = 7 * 24 * 3600;
/// The longest evaluation of an alarm whose period is under an hour.
const MAX_SHORT_EVALUATION_SECS: i64 = 24 * 3600;

/// One metric alarm.
#[derive(Debug, Clone)]
struct Alarm {
    name: String,
    description: Option<String>,
    actions_enabled: bool,
    ok_actions: Vec<String>,
    alarm_actions: Vec<String>,
    insufficient_data_actions: Vec<String>,
    stat: MetricStat,
    /// `Statistic` or `ExtendedStatistic` as given.
    statistic_name: String,
    extended: bool,
    unit: Option<String>,
    rule: AlarmRule,
    state: AlarmState,
    reason: String,
    state_updated_ms: i64,
    configuration_updated_ms: i64,
    /// The last period boundary judged (wall ms).
    evaluated_until_ms: i64,
}

/// Every alarm, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Alarms {
    by_name: BTreeMap<String, Alarm>,
}

impl Alarms {
    /// Judges every alarm at each of its period boundaries up to `now_ms`.
    pub(crate) fn evaluate_until(&mut self, world: &World, clock: &Clock, now_ms: i64) {
        for alarm in self.by_name.values_mut() {
            let period_ms = i64::from(alarm.stat.period_secs) * 1000;
            let latest = now_ms.div_euclid(period_ms) * period_ms;
            let mut boundary =
                (alarm.evaluated_until_ms + period_ms).max(latest - (MAX_CATCH_UP - 1) * period_ms);
            while boundary <= latest {
                alarm.evaluate_at(world, clock, boundary);
                boundary += period_ms;
            }
            alarm.evaluated_until_ms = alarm.evaluated_until_ms.max(latest);
        }
    }

    /// The alarms for the control API.
    pub(crate) fn snapshot(&self) -> Vec<AlarmSnapshot> {
        self.by_name
            .values()
            .map(|a| AlarmSnapshot {
                name: a.name.clone(),
                state: a.state.to_string(),
                state_updated_ms: a.state_updated_ms,
            })
            .collect()
    }
}

impl Alarm {
    /// Judges the alarm on the datapoints visible at wall time `boundary`.
    fn evaluate_at(&mut self, world: &World, clock: &Clock, boundary: i64) {
        let period_ms = i64::from(self.stat.period_secs) * 1000;
        let periods = self.rule.range_periods();
        let window_start = boundary - (periods as i64 + 1) * period_ms;
        let points =
            cloudwatch::datapoints(world, clock, &self.stat, window_start, boundary, boundary);
        let range = range_from_series(&points, self.stat.period_secs, periods, boundary);
        let state = evaluate_range(&range, &self.rule, self.state);
        if state != self.state {
            self.reason = reason(&range, &self.rule, state);
            self.state = state;
            self.state_updated_ms = boundary.max(self.configuration_updated_ms);
        }
    }

    fn arn(&self) -> String {
        format!(
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{}",
            self.name
        )
    }

    fn to_value(&self) -> Value {
        let strings =
            |items: &[String]| Value::List(items.iter().map(|s| Value::str(s.as_str())).collect());
        let mut v = Value::map([
            ("AlarmName", Value::str(&self.name)),
            ("AlarmArn", Value::Str(self.arn())),
            (
                "AlarmConfigurationUpdatedTimestamp",
                Value::timestamp_ms(self.configuration_updated_ms),
            ),
            ("ActionsEnabled", Value::Bool(self.actions_enabled)),
            ("OKActions", strings(&self.ok_actions)),
            ("AlarmActions", strings(&self.alarm_actions)),
            (
                "InsufficientDataActions",
                strings(&self.insufficient_data_actions),
            ),
            ("StateValue", Value::Str(self.state.to_string())),
            ("StateReason", Value::str(&self.reason)),
            (
                "StateUpdatedTimestamp",
                Value::timestamp_ms(self.state_updated_ms),
            ),
            (
                "StateTransitionedTimestamp",
                Value::timestamp_ms(self.state_updated_ms),
            ),
            ("MetricName", Value::str(&self.stat.metric_name)),
            ("Namespace", Value::str(&self.stat.namespace)),
            (
                "Dimensions",
                cloudwatch::dimensions_value(&self.stat.dimensions),
            ),
            ("Period", Value::Int(i64::from(self.stat.period_secs))),
            (
                "EvaluationPeriods",
                Value::Int(i64::from(self.rule.evaluation_periods)),
            ),
            (
                "DatapointsToAlarm",
                Value::Int(i64::from(self.rule.datapoints_to_alarm)),
            ),
            ("Threshold", Value::Float(self.rule.threshold)),
            (
                "ComparisonOperator",
                Value::str(comparison_name(self.rule.comparison)),
            ),
            (
                "TreatMissingData",
                Value::str(treat_missing_name(self.rule.treat_missing)),
            ),
        ]);
        let key = if self.extended {
            "ExtendedStatistic"
        } else {
            "Statistic"
        };
        v.insert(key, Value::str(&self.statistic_name));
        if let Some(description) = &self.description {
            v.insert("AlarmDescription", Value::str(description));
        }
        if let Some(unit) = &self.unit {
            v.insert("Unit", Value::str(unit));
        }
        v
    }
}

/// Why the alarm is in `state`, in CloudWatch's manner.
fn reason(range: &[Option<f64>], rule: &AlarmRule, state: AlarmState) -> String {
    let real: Vec<f64> = range.iter().flatten().copied().collect();
    let breaching = real
        .iter()
        .filter(|v| rule.comparison.breaches(**v, rule.threshold))
        .count();
    let shown: Vec<String> = real.iter().map(|v| format!("{v}")).collect();
    match state {
        AlarmState::InsufficientData => format!(
            "Insufficient Data: {} of the last {} periods had datapoints [{}]; {} needed.",
            real.len(),
            range.len(),
            shown.join(", "),
            rule.evaluation_periods
        ),
        _ => format!(
            "Threshold Crossed: {breaching} of the {} datapoints in the last {} periods [{}] were {} the threshold ({}) (minimum {} of {} for ALARM, missing data treated as {}).",
            real.len(),
            range.len(),
            shown.join(", "),
            comparison_words(rule.comparison),
            rule.threshold,
            rule.datapoints_to_alarm,
            rule.evaluation_periods,
            treat_missing_name(rule.treat_missing)
        ),
    }
}

fn comparison_name(c: Comparison) -> &'static str {
    match c {
        Comparison::GreaterThanOrEqualToThreshold => "GreaterThanOrEqualToThreshold",
        Comparison::GreaterThanThreshold => "GreaterThanThreshold",
        Comparison::LessThanThreshold => "LessThanThreshold",
        Comparison::LessThanOrEqualToThreshold => "LessThanOrEqualToThreshold",
    }
}

fn comparison_words(c: Comparison) -> &'static str {
    match c {
        Comparison::GreaterThanOrEqualToThreshold => "greater than or equal to",
        Comparison::GreaterThanThreshold => "greater than",
        Comparison::LessThanThreshold => "less than",
        Comparison::LessThanOrEqualToThreshold => "less than or equal to",
    }
}

fn parse_comparison(r: &Reader<'_>, s: &str) -> Result<Comparison, AwsError> {
    Ok(match s {
        "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqualToThreshold,
        "GreaterThanThreshold" => Comparison::GreaterThanThreshold,
        "LessThanThreshold" => Comparison::LessThanThreshold,
        "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqualToThreshold,
        _ => {
            return Err(r.invalid(format!(
                "The ComparisonOperator {s:?} is not supported by the emulator (anomaly detection bands are not emulated)."
            )));
        }
    })
}

fn treat_missing_name(t: TreatMissingData) -> &'static str {
    match t {
        TreatMissingData::Missing => "missing",
        TreatMissingData::Breaching => "breaching",
        TreatMissingData::NotBreaching => "notBreaching",
        TreatMissingData::Ignore => "ignore",
    }
}

fn parse_treat_missing(r: &Reader<'_>, s: &str) -> Result<TreatMissingData, AwsError> {
    Ok(match s {
        "missing" => TreatMissingData::Missing,
        "breaching" => TreatMissingData::Breaching,
        "notBreaching" => TreatMissingData::NotBreaching,
        "ignore" => TreatMissingData::Ignore,
        _ => {
            return Err(r.invalid(format!(
                "TreatMissingData {s:?} must be missing, breaching, notBreaching or ignore."
            )));
        }
    })
}

fn strings(r: &Reader<'_>, key: &str) -> Result<Vec<String>, AwsError> {
    r.list(key)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| r.invalid(format!("Every item of {key} must be a string.")))
        })
        .collect()
}

/// Runs one alarm operation.
pub(crate) fn call(
    core: &mut Core,
    operation: &str,
    input: &Value,
    now_ms: i64,
) -> Result<Value, AwsError> {
    match operation {
        "PutMetricAlarm" => {
            put_metric_alarm(core, input, now_ms)?;
            Ok(Value::Map(Vec::new()))
        }
        "DescribeAlarms" => describe_alarms(core, input),
        "DeleteAlarms" => {
            delete_alarms(core, input)?;
            Ok(Value::Map(Vec::new()))
        }
        _ => Err(super::unknown_operation(operation)),
    }
}

fn put_metric_alarm(core: &mut Core, input: &Value, now_ms: i64) -> Result<(), AwsError> {
    let r = Reader::new(input, CODES);
    let name = r.str("AlarmName")?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(r.invalid("AlarmName must be 1 to 255 characters long."));
    }
    if r.opt("Metrics").is_some() || r.opt("ThresholdMetricId").is_some() {
        return Err(r.invalid(
            "Metric math and anomaly detection alarms are not supported by the emulator; give MetricName and Namespace.",
        ));
    }
    let (statistic_name, extended) =
        match (r.opt_str("Statistic")?, r.opt_str("ExtendedStatistic")?) {
            (Some(_), Some(_)) => {
                return Err(AwsError::new(
                    "InvalidParameterCombination",
                    "Give Statistic or ExtendedStatistic, not both.",
                ));
            }
            (Some(s), None) => (s, false),
            (None, Some(s)) => (s, true),
            (None, None) => {
                return Err(AwsError::new(
                    CODES.missing,
                    "The parameter Statistic or ExtendedStatistic is required.",
                ));
            }
        };
    let period = r.i64("Period")?;
    let (statistic, period_secs) = cloudwatch::statistic_and_period(&r, statistic_name, period)?;
    if matches!(statistic, Statistic::Percentile(_)) != extended {
        return Err(r.invalid(if extended {
            "ExtendedStatistic must be a percentile such as p99."
        } else {
            "Statistic must be Average, Maximum, Minimum, Sum or SampleCount."
        }));
    }
    if !(matches!(period_secs, 10 | 20 | 30) || period_secs % 60 == 0) {
        return Err(r.invalid(format!(
            "The alarm period {period_secs} must be 10, 20, 30 or a multiple of 60."
        )));
    }
    let n = r.i64("EvaluationPeriods")?;
    if n < 1 {
        return Err(r.invalid(format!("EvaluationPeriods {n} must be at least 1.")));
    }
    // Past u32, the range is past seven days whatever the period.
    let evaluation_periods = u32::try_from(n).unwrap_or(u32::MAX);
    let evaluation_secs = i64::from(evaluation_periods) * i64::from(period_secs);
    if evaluation_secs > MAX_EVALUATION_SECS {
        return Err(r.invalid("EvaluationPeriods x Period must not exceed seven days."));
    }
    if period_secs < 3600 && evaluation_secs > MAX_SHORT_EVALUATION_SECS {
        return Err(r.invalid(format!(
            "EvaluationPeriods x Period must not exceed one day (86400 s) for a period under \
             an hour; {evaluation_periods} x {period_secs} s is {evaluation_secs} s."
        )));
    }
    let datapoints_to_alarm = match r.opt_i64("DatapointsToAlarm")? {
        None => evaluation_periods,
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|m| (1..=evaluation_periods).contains(m))
            .ok_or_else(|| {
                r.invalid(format!(
                    "DatapointsToAlarm {m} must be between 1 and EvaluationPeriods ({evaluation_periods})."
                ))
            })?,
    };
    let threshold = r
        .opt_f64("Threshold")?
        .ok_or_else(|| AwsError::new(CODES.missing, "The parameter Threshold is required."))?;
    let comparison = parse_comparison(&r, r.str("ComparisonOperator")?)?;
    let treat_missing = match r.opt_str("TreatMissingData")? {
        None => TreatMissingData::Missing,
        Some(s) => parse_treat_missing(&r, s)?,
    };
    let stat = MetricStat {
        namespace: r.str("Namespace")?.to_owned(),
        metric_name: r.str("MetricName")?.to_owned(),
        dimensions: cloudwatch::read_dimensions(&r, "Dimensions")?,
        statistic,
        period_secs,
    };
    let rule = AlarmRule {
        comparison,
        threshold,
        evaluation_periods,
        datapoints_to_alarm,
        treat_missing,
    };
    let period_ms = i64::from(period_secs) * 1000;
    let previous = core.alarms.by_name.get(name);
    if previous.is_none() && core.alarms.by_name.len() >= MAX_ALARMS {
        return Err(AwsError::new(
            "LimitExceeded",
            format!("The emulator holds at most {MAX_ALARMS} alarms."),
        ));
    }
    // Updating an alarm keeps its state, as in CloudWatch.
    let (state, reason, state_updated_ms) = match previous {
        Some(p) => (p.state, p.reason.clone(), p.state_updated_ms),
        None => (
            AlarmState::InsufficientData,
            "Unchecked: Initial alarm creation".to_owned(),
            now_ms,
        ),
    };
    let alarm = Alarm {
        name: name.to_owned(),
        description: r.opt_str("AlarmDescription")?.map(str::to_owned),
        actions_enabled: r.opt_bool("ActionsEnabled")?.unwrap_or(true),
        ok_actions: strings(&r, "OKActions")?,
        alarm_actions: strings(&r, "AlarmActions")?,
        insufficient_data_actions: strings(&r, "InsufficientDataActions")?,
        stat,
        statistic_name: statistic_name.to_owned(),
        extended,
        unit: r.opt_str("Unit")?.map(str::to_owned),
        rule,
        state,
        reason,
        state_updated_ms,
        configuration_updated_ms: now_ms,
        // The boundary before the latest, so the latest is judged at once.
        evaluated_until_ms: now_ms.div_euclid(period_ms) * period_ms - period_ms,
    };
    core.alarms.by_name.insert(name.to_owned(), alarm);
    core.alarms.evaluate_until(&core.world, &core.clock, now_ms);
    Ok(())
}

fn describe_alarms(core: &Core, input: &Value) -> Result<Value, AwsError> {
    let r = Reader::new(input, CODES);
    let names = strings(&r, "AlarmNames")?;
    if names.len() > 100 {
        return Err(r.invalid("AlarmNames holds at most 100 names."));
    }
    let prefix = r.opt_str("AlarmNamePrefix")?;
    if prefix.is_some() && !names.is_empty() {
        return Err(AwsError::new(
            "InvalidParameterCombination",
            "Give AlarmNames or AlarmNamePrefix, not both.",
        ));
    }
    let state = match r.opt_str("StateValue")? {
        None => None,
        Some(s @ ("OK" | "ALARM" | "INSUFFICIENT_DATA")) => Some(s),
        Some(other) => {
            return Err(r.invalid(format!(
                "StateValue {other:?} must be OK, ALARM or INSUFFICIENT_DATA."
            )));
        }
    };
    let action_prefix = r.opt_str("ActionPrefix")?;
    let types = strings(&r, "AlarmTypes")?;
    let metric_alarms_wanted = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
    let max_records = match r.opt_i64("MaxRecords")? {
        None => 50,
        Some(n @ 1..=100) => n as usize,
        Some(n) => return Err(r.invalid(format!("MaxRecords {n} must be between 1 and 100."))),
    };
    let matching: Vec<&Alarm> = core
        .alarms
        .by_name
        .values()
        .filter(|_| metric_alarms_wanted)
        .filter(|a| names.is_empty() || names.contains(&a.name))
        .filter(|a| prefix.is_none_or(|p| a.name.starts_with(p)))
        .filter(|a| state.is_none_or(|s| a.state.to_string() == s))
        .filter(|a| {
            action_prefix.is_none_or(|p| {
                a.ok_actions
                    .iter()
                    .chain(&a.alarm_actions)
                    .chain(&a.insufficient_data_actions)
                    .any(|action| action.starts_with(p))
            })
        })
        .collect();
    let offset = cloudwatch::page_offset(&r, matching.len())?;
    let end = (offset + max_records).min(matching.len());
    let mut output = Value::map([
        (
            "MetricAlarms",
            Value::List(matching[offset..end].iter().map(|a| a.to_value()).collect()),
        ),
        ("CompositeAlarms", Value::List(Vec::new())),
    ]);
    if end < matching.len() {
        output.insert("NextToken", Value::Str(end.to_string()));
    }
    Ok(output)
}

fn delete_alarms(core: &mut Core, input: &Value) -> Result<(), AwsError> {
    let r = Reader::new(input, CODES);
    if r.opt("AlarmNames").is_none() {
        return Err(AwsError::new(
            CODES.missing,
            "The parameter AlarmNames is required.",
        ));
    }
    let names = strings(&r, "AlarmNames")?;
    if names.len() > 100 {
        return Err(r.invalid("AlarmNames holds at most 100 names."));
    }
    if let Some(missing) = names.iter().find(|n| !core.alarms.by_name.contains_key(*n)) {
        return Err(AwsError::with_status(
            "ResourceNotFound",
            format!("The alarm {missing} does not exist."),
            404,
        ));
    }
    for name in &names {
        core.alarms.by_name.remove(name);
    }
    Ok(())
}
