//! What the policy reads from an evaluation: the configured series joined
//! per period, and which of those periods are fresh.
//!
//! A period is fresh when it started at or after the last completed
//! rescale. Job metrics (records in, busy time) of an older period describe
//! the previous capacity, or the restart itself, and must not size the new
//! one; the backlog comes from the source system and is valid in every
//! period, including while the application was UPDATING.

use std::collections::BTreeMap;

use flinkscale_plugin::{Evaluation, Series};

/// The configured metrics of one period.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Period {
    /// Start of the period, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Records processed per second (`numRecordsInPerSecond` Average).
    pub records_in: Option<f64>,
    /// Utilisation in 0..=1 (`busyTimeMsPerSecond` Average / 1000).
    pub utilisation: Option<f64>,
    /// Records waiting in the source (`SumOffsetLag` Maximum).
    pub backlog: Option<f64>,
}

/// The series ids the policy reads, from its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricIds {
    /// Records processed per second.
    pub records_in: String,
    /// Busy time in ms per second.
    pub busy: String,
    /// The source's backlog in records.
    pub backlog: String,
}

/// The joined series of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Length of one period in milliseconds.
    pub period_ms: i64,
    /// The periods, oldest first, each with at least one value.
    pub periods: Vec<Period>,
    /// Whether the backlog series is configured at all (when it is not,
    /// the input rate is taken to be the processed rate).
    pub has_backlog: bool,
}

impl Observed {
    /// Joins the series named in `ids`. The records-in series is required:
    /// without it there is no rate to act on.
    pub fn from_evaluation(evaluation: &Evaluation, ids: &MetricIds) -> Result<Self, String> {
        let records_in = require(evaluation, &ids.records_in)?;
        let busy = require(evaluation, &ids.busy)?;
        let backlog = evaluation.metric(&ids.backlog);
        let period_ms = i64::from(records_in.period_secs.max(1)) * 1000;
        let mut periods: BTreeMap<i64, Period> = BTreeMap::new();
        for point in &records_in.points {
            periods
                .entry(point.timestamp_ms)
                .or_insert_with(|| empty(point.timestamp_ms))
                .records_in = Some(point.value.max(0.0));
        }
        for point in &busy.points {
            periods
                .entry(point.timestamp_ms)
                .or_insert_with(|| empty(point.timestamp_ms))
                .utilisation = Some((point.value / 1000.0).clamp(0.0, 1.0));
        }
        if let Some(backlog) = backlog {
            for point in &backlog.points {
                periods
                    .entry(point.timestamp_ms)
                    .or_insert_with(|| empty(point.timestamp_ms))
                    .backlog = Some(point.value.max(0.0));
            }
        }
        Ok(Observed {
            period_ms,
            periods: periods.into_values().collect(),
            has_backlog: backlog.is_some(),
        })
    }

    /// The latest backlog datapoint: (period start, records).
    pub fn latest_backlog(&self) -> Option<(i64, f64)> {
        self.periods
            .iter()
            .rev()
            .find_map(|p| p.backlog.map(|b| (p.start_ms, b)))
    }
}

fn empty(start_ms: i64) -> Period {
    Period {
        start_ms,
        ..Period::default()
    }
}

fn require<'a>(evaluation: &'a Evaluation, id: &str) -> Result<&'a Series, String> {
    evaluation.metric(id).ok_or_else(|| {
        format!(
            "no metric `{id}` is configured for application `{}`",
            evaluation.app.name
        )
    })
}
