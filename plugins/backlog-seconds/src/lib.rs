//! `backlog-seconds`: a backlog in records turned into time, so that a
//! policy or an alarm can be written against a time SLO ("never more than
//! five minutes behind") whatever the source counts in.
//!
//! From three series it derives two signals:
//!
//! - `seconds_behind` = backlog / processing rate: how long the records
//!   waiting now would take to process at the rate the application
//!   processes today. 0 when there is no backlog; absent when there is a
//!   backlog and nothing is processed (infinitely behind).
//! - `seconds_to_drain` = backlog / (processing rate - input rate): how long
//!   until the backlog is gone at the current capacity. 0 when there is no
//!   backlog; absent when the backlog is not shrinking (input at or above
//!   processing), since it never drains at this capacity.
//!
//! While there is a backlog the application processes as fast as it can, so
//! the observed processing rate is its processing capacity at the current
//! KPU; that is the capacity these signals assume.
//!
//! # Parameters
//!
//! Declared, with their kinds, defaults and meanings, in
//! [`BacklogSeconds`]'s `PARAMETERS` (`flinkscale plugin describe
//! backlog-seconds` prints them): `backlog_metric` and
//! `processing_rate_metric` (required), `backlog_unit`,
//! `backlog_multiplier`, `input_rate_metric` and `signal_prefix`.
//!
//! With `backlog_unit = "milliseconds"`, `seconds_behind` is the age itself
//! in seconds, and `seconds_to_drain` counts the backlog as the age times
//! the input rate (what arrived during that time), so it needs
//! `input_rate_metric`: an age's growth is not a count of records.
//!
//! Each signal is computed from the latest datapoint of each series; a
//! series with no datapoint leaves the signals that need it absent (the
//! application's own metrics are not published while it is UPDATING).

#![warn(missing_docs)]

use flinkscale_plugin::{
    Application, Interpreter, Parameter, Params, Series, Signal, export_interpreter,
};
use serde::Deserialize;

/// What the backlog metric measures; `backlog_unit` names it in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BacklogUnit {
    /// A count of records waiting.
    Records,
    /// The age of the oldest record waiting, in milliseconds.
    Milliseconds,
}

/// The configured interpreter: its parameters, checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BacklogSeconds {
    backlog_metric: String,
    backlog_unit: BacklogUnit,
    backlog_multiplier: f64,
    processing_rate_metric: String,
    input_rate_metric: Option<String>,
    signal_prefix: String,
}

/// The two signals, each absent when it has no finite value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drain {
    /// Backlog / processing rate.
    pub seconds_behind: Option<f64>,
    /// Backlog / (processing rate - input rate).
    pub seconds_to_drain: Option<f64>,
}

/// The arithmetic, on plain numbers: `backlog` in records, rates in
/// records per second.
pub fn drain(backlog: f64, processing: Option<f64>, input: Option<f64>) -> Drain {
    if backlog <= 0.0 {
        return Drain {
            seconds_behind: Some(0.0),
            seconds_to_drain: Some(0.0),
        };
    }
    let seconds_behind = processing
        .filter(|rate| *rate > 0.0)
        .map(|rate| backlog / rate);
    let seconds_to_drain = match (processing, input) {
        (Some(processing), Some(input)) if processing > input => {
            Some(backlog / (processing - input))
        }
        _ => None,
    };
    Drain {
        seconds_behind,
        seconds_to_drain,
    }
}

impl Interpreter for BacklogSeconds {
    const SUMMARY: &'static str = "Turns a backlog in records (or an age) and the processing and \
         input rates into `seconds_behind` and `seconds_to_drain`, so that an SLO can be written \
         in seconds.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::metric_id("backlog_metric").required().meaning(
            "Metric id of the backlog: `AWS/Kafka` `SumOffsetLag` (records), `MaxOffsetLag` \
             (one partition's lag: use `backlog_multiplier`), `AWS/KinesisAnalytics` \
             `records_lag_max`, or an age (`GetRecords.IteratorAgeMilliseconds`, \
             `millisBehindLatest`) with `backlog_unit = \"milliseconds\"`.",
        ),
        Parameter::text("backlog_unit")
            .default("\"records\"")
            .meaning(
                "\"records\", or \"milliseconds\" when the backlog metric is already an age: \
             `seconds_behind` is then that age, and `seconds_to_drain` needs \
             `input_rate_metric` (none while the input rate is 0: an age says nothing of a \
             backlog's size then).",
            ),
        Parameter::number("backlog_multiplier")
            .default("1")
            .meaning(
                "Multiplies the backlog metric, e.g. by the partition count with `MaxOffsetLag`; \
             positive.",
            ),
        Parameter::metric_id("processing_rate_metric")
            .required()
            .meaning(
                "Metric id of the records the application processes per second, e.g. \
             `AWS/KinesisAnalytics` `numRecordsInPerSecond`.",
            ),
        Parameter::metric_id("input_rate_metric").meaning(
            "Metric id of the records arriving per second. When absent, the processing rate \
             plus the backlog's growth per second between its last two datapoints.",
        ),
        Parameter::text("signal_prefix")
            .default("\"\"")
            .meaning("Prepended to both signal names, to run two instances on two sources."),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let interpreter: BacklogSeconds = params.parse()?;
        let multiplier = interpreter.backlog_multiplier;
        if !(multiplier.is_finite() && multiplier > 0.0) {
            return Err(format!(
                "parameter `backlog_multiplier` must be a positive number, found {multiplier}"
            ));
        }
        for (key, id) in [
            ("backlog_metric", &interpreter.backlog_metric),
            (
                "processing_rate_metric",
                &interpreter.processing_rate_metric,
            ),
        ] {
            if id.is_empty() {
                return Err(format!(
                    "parameter `{key}` must name a metric, found the empty string"
                ));
            }
        }
        Ok(interpreter)
    }

    fn interpret(
        &mut self,
        _now_ms: i64,
        _app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String> {
        let backlog = find(metrics, "backlog_metric", &self.backlog_metric)?;
        let processing = find(
            metrics,
            "processing_rate_metric",
            &self.processing_rate_metric,
        )?;
        let input = match &self.input_rate_metric {
            Some(id) => Some(find(metrics, "input_rate_metric", id)?),
            None => None,
        };
        let Some(latest) = backlog.points.last() else {
            return Ok(Vec::new());
        };
        let backlog_value = latest.value * self.backlog_multiplier;
        let processing_rate = processing.points.last().map(|point| point.value);
        let input_rate = match input {
            Some(series) => series.points.last().map(|point| point.value),
            None => match (processing_rate, self.backlog_unit, &backlog.points[..]) {
                // Records in = records out + backlog growth; an age's
                // growth is not a count of records, so it cannot stand in.
                (Some(processing), BacklogUnit::Records, [.., before, last])
                    if last.timestamp_ms > before.timestamp_ms =>
                {
                    let secs = (last.timestamp_ms - before.timestamp_ms) as f64 / 1000.0;
                    let growth = (last.value - before.value) * self.backlog_multiplier / secs;
                    Some(processing + growth)
                }
                _ => None,
            },
        };
        let result = match self.backlog_unit {
            BacklogUnit::Records => drain(backlog_value, processing_rate, input_rate),
            BacklogUnit::Milliseconds => {
                let seconds = backlog_value / 1000.0;
                // The records behind, estimated as the age times the input
                // rate: with nothing arriving, an age says nothing of how
                // many there are (a stalled job is not a drained one).
                let records = input_rate
                    .filter(|rate| *rate > 0.0 || seconds <= 0.0)
                    .map(|rate| seconds * rate);
                Drain {
                    seconds_behind: Some(seconds.max(0.0)),
                    seconds_to_drain: records.and_then(|records| {
                        drain(records, processing_rate, input_rate).seconds_to_drain
                    }),
                }
            }
        };
        let mut signals = Vec::new();
        for (name, value) in [
            ("seconds_behind", result.seconds_behind),
            ("seconds_to_drain", result.seconds_to_drain),
        ] {
            if let Some(value) = value.filter(|value| value.is_finite()) {
                signals.push(Signal::new(format!("{}{name}", self.signal_prefix), value));
            }
        }
        Ok(signals)
    }
}

fn find<'a>(metrics: &'a [Series], param: &str, id: &str) -> Result<&'a Series, String> {
    metrics
        .iter()
        .find(|series| series.id == id)
        .ok_or_else(|| {
            let known: Vec<&str> = metrics.iter().map(|series| series.id.as_str()).collect();
            format!(
                "parameter `{param}` names the metric `{id}`, which the application does not \
             configure (configured metrics: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
}

export_interpreter!(BacklogSeconds);

#[cfg(test)]
mod tests;
