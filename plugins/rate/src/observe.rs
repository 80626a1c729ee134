//! What the policy reads from an evaluation: the configured series joined
//! per period, and which of those periods are fresh.
//!
//! A period is fresh when it started at or after the job's last restart
//! for an update (`last-rescale-ms`: the host's last completed rescale,
//! or the service's later update). Job metrics (records in, busy time) of an older period describe
//! the previous capacity, or the restart itself, and must not size the new
//! one; the backlog comes from the source system and is valid in every
//! period, including while the application was UPDATING.

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
    /// Whether the backlog series is configured and has datapoints (when
    /// it has none, the input rate is taken to be the processed rate).
    pub has_backlog: bool,
    /// Whether the backlog series is configured but has no datapoint at
    /// all (a source that publishes none, or dimensions naming no such
    /// consumer group): said in the decision's reason.
    pub backlog_silent: bool,
}

/// The backlog's metric id when `backlog_metric` is not given: optional,
/// where one given is required.
pub const DEFAULT_BACKLOG_METRIC: &str = "backlog";

impl Observed {
    /// Joins the series named in `ids`. The records-in and busy-time
    /// series are required: without them there is no rate to act on. The
    /// backlog is optional under its default id; one named otherwise
    /// (`backlog_metric`) is required, so that a misspelt id is an error,
    /// not a backlog silently left out.
    pub fn from_evaluation(evaluation: &Evaluation, ids: &MetricIds) -> Result<Self, String> {
        let records_in = require(evaluation, &ids.records_in)?;
        let busy = require(evaluation, &ids.busy)?;
        let backlog = if ids.backlog == DEFAULT_BACKLOG_METRIC {
            evaluation.metric(&ids.backlog)
        } else {
            Some(require(evaluation, &ids.backlog).map_err(|e| {
                format!(
                    "{e} (parameter `backlog_metric`; leave it out when the application has no \
                     backlog metric)"
                )
            })?)
        };
        let backlog_silent = backlog.is_some_and(|b| b.points.is_empty());
        let backlog = backlog.filter(|b| !b.points.is_empty());
        let period_ms = i64::from(records_in.period_secs.max(1)) * 1000;
        // Each datapoint as a period of its own, then sorted by start (a
        // stable sort: per start, the series' order is kept) and merged, a
        // later value of a field replacing an earlier one. The series come
        // oldest first, so the sort only merges three runs: cheaper than a
        // map built for every evaluation, and never quadratic on series in
        // any other order.
        let backlog_points = backlog.map_or(&[][..], |b| &b.points[..]);
        let mut points: Vec<Period> =
            Vec::with_capacity(records_in.points.len() + busy.points.len() + backlog_points.len());
        points.extend(records_in.points.iter().map(|p| Period {
            records_in: Some(p.value.max(0.0)),
            ..empty(p.timestamp_ms)
        }));
        points.extend(busy.points.iter().map(|p| Period {
            utilisation: Some((p.value / 1000.0).clamp(0.0, 1.0)),
            ..empty(p.timestamp_ms)
        }));
        points.extend(backlog_points.iter().map(|p| Period {
            backlog: Some(p.value.max(0.0)),
            ..empty(p.timestamp_ms)
        }));
        points.sort_by_key(|p| p.start_ms);
        let mut periods: Vec<Period> = Vec::with_capacity(points.len());
        for point in points {
            match periods.last_mut() {
                Some(last) if last.start_ms == point.start_ms => {
                    last.records_in = point.records_in.or(last.records_in);
                    last.utilisation = point.utilisation.or(last.utilisation);
                    last.backlog = point.backlog.or(last.backlog);
                }
                _ => periods.push(point),
            }
        }
        Ok(Observed {
            period_ms,
            periods,
            has_backlog: backlog.is_some(),
            backlog_silent,
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
