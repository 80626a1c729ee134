//! The metrics a simulated application publishes (`docs/SIMULATION.md`,
//! "Published metrics") and their aggregation into CloudWatch periods.
//!
//! Nothing is stored per metric: every metric is a function of the
//! per-second [`History`], computed when asked for. Periods are aligned to
//! the Unix epoch, a period with no sample is absent, and a period
//! [t, t+P) is visible only from t+P+metric_delay_secs on.

use std::collections::BTreeMap;

use super::model::{ApiError, ApiErrorKind, History};
use super::scenario::{AppParams, SourceNames};

/// The MSF namespace.
pub const NAMESPACE_MSF: &str = "AWS/KinesisAnalytics";
/// The Kinesis Data Streams namespace.
pub const NAMESPACE_KINESIS: &str = "AWS/Kinesis";
/// The Amazon MSK namespace.
pub const NAMESPACE_KAFKA: &str = "AWS/Kafka";

/// Every metric a simulated application publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// `AWS/KinesisAnalytics containerCPUUtilization`, percent.
    ContainerCpuUtilization,
    /// `AWS/KinesisAnalytics busyTimeMsPerSecond` = 1000 u.
    BusyTimeMsPerSecond,
    /// `AWS/KinesisAnalytics numRecordsInPerSecond` = processed.
    NumRecordsInPerSecond,
    /// `AWS/KinesisAnalytics millisBehindLatest` = 1000 lag.
    MillisBehindLatest,
    /// `AWS/KinesisAnalytics records_lag_max` = backlog / max_parallelism.
    RecordsLagMax,
    /// `AWS/KinesisAnalytics KPUs` = kpu (the only one published while UPDATING).
    Kpus,
    /// `AWS/Kinesis GetRecords.IteratorAgeMilliseconds` = 1000 lag.
    IteratorAgeMilliseconds,
    /// `AWS/Kinesis SubscribeToShardEvent.MillisBehindLatest` = 1000 lag.
    SubscribeToShardMillisBehindLatest,
    /// `AWS/Kafka MaxOffsetLag` = backlog / max_parallelism.
    MaxOffsetLag,
    /// `AWS/Kafka SumOffsetLag` = backlog.
    SumOffsetLag,
}

impl MetricKind {
    /// All of them.
    pub const ALL: [MetricKind; 10] = [
        Self::ContainerCpuUtilization,
        Self::BusyTimeMsPerSecond,
        Self::NumRecordsInPerSecond,
        Self::MillisBehindLatest,
        Self::RecordsLagMax,
        Self::Kpus,
        Self::IteratorAgeMilliseconds,
        Self::SubscribeToShardMillisBehindLatest,
        Self::MaxOffsetLag,
        Self::SumOffsetLag,
    ];

    /// The CloudWatch namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::IteratorAgeMilliseconds | Self::SubscribeToShardMillisBehindLatest => {
                NAMESPACE_KINESIS
            }
            Self::MaxOffsetLag | Self::SumOffsetLag => NAMESPACE_KAFKA,
            _ => NAMESPACE_MSF,
        }
    }

    /// The metric name.
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::ContainerCpuUtilization => "containerCPUUtilization",
            Self::BusyTimeMsPerSecond => "busyTimeMsPerSecond",
            Self::NumRecordsInPerSecond => "numRecordsInPerSecond",
            Self::MillisBehindLatest => "millisBehindLatest",
            Self::RecordsLagMax => "records_lag_max",
            Self::Kpus => "KPUs",
            Self::IteratorAgeMilliseconds => "GetRecords.IteratorAgeMilliseconds",
            Self::SubscribeToShardMillisBehindLatest => "SubscribeToShardEvent.MillisBehindLatest",
            Self::MaxOffsetLag => "MaxOffsetLag",
            Self::SumOffsetLag => "SumOffsetLag",
        }
    }

    /// The dimensions this metric carries for one application.
    pub fn dimensions(self, application: &str, sources: &SourceNames) -> BTreeMap<String, String> {
        self.with_dimensions(application, sources, |pairs| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
    }

    /// Whether `dimensions` are exactly this metric's for one application,
    /// as CloudWatch matches them. Asked once per metric and application on
    /// every GetMetricData query, so it builds nothing.
    pub fn has_dimensions(
        self,
        application: &str,
        sources: &SourceNames,
        dimensions: &BTreeMap<String, String>,
    ) -> bool {
        self.with_dimensions(application, sources, |pairs| {
            pairs.len() == dimensions.len()
                && pairs
                    .iter()
                    .all(|(k, v)| dimensions.get(*k).is_some_and(|d| d == v))
        })
    }

    /// Hands this metric's dimension pairs for one application to `f`.
    fn with_dimensions<R>(
        self,
        application: &str,
        sources: &SourceNames,
        f: impl FnOnce(&[(&str, &str)]) -> R,
    ) -> R {
        match self {
            Self::IteratorAgeMilliseconds => f(&[("StreamName", &sources.stream_name)]),
            Self::SubscribeToShardMillisBehindLatest => f(&[
                ("StreamName", &sources.stream_name),
                ("ConsumerName", &sources.consumer_name),
            ]),
            Self::MaxOffsetLag | Self::SumOffsetLag => f(&[
                ("Cluster Name", &sources.cluster_name),
                ("Consumer Group", &sources.consumer_group),
                ("Topic", &sources.topic),
            ]),
            _ => f(&[("Application", application)]),
        }
    }

    /// Whether the metric is missing while the application is UPDATING (the
    /// job's own metrics; the source system and billing keep publishing).
    pub fn missing_while_updating(self) -> bool {
        self.namespace() == NAMESPACE_MSF && self != Self::Kpus
    }

    /// The sample of step `i`, `None` when it is not published.
    pub fn sample(self, history: &History, params: &AppParams, i: usize) -> Option<f64> {
        let updating = *history.updating.get(i)?;
        if updating && self.missing_while_updating() {
            return None;
        }
        let max_parallelism = f64::from(params.max_parallelism.max(1));
        Some(match self {
            Self::ContainerCpuUtilization => history.cpu_percent(i)?,
            Self::BusyTimeMsPerSecond => {
                let c = history.capacity[i];
                if c > 0.0 {
                    1000.0 * history.processed[i] / c
                } else {
                    0.0
                }
            }
            Self::NumRecordsInPerSecond => history.processed[i],
            Self::MillisBehindLatest
            | Self::IteratorAgeMilliseconds
            | Self::SubscribeToShardMillisBehindLatest => 1000.0 * history.lag_secs[i],
            Self::RecordsLagMax | Self::MaxOffsetLag => history.backlog[i] / max_parallelism,
            Self::Kpus => f64::from(history.kpu[i]),
            Self::SumOffsetLag => history.backlog[i],
        })
    }
}

/// One metric the world publishes, as ListMetrics shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct MetricDescriptor {
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions, name -> value.
    pub dimensions: BTreeMap<String, String>,
}

impl MetricDescriptor {
    /// Whether it passes ListMetrics' filters: namespace, metric name, and
    /// dimension filters (a name, with or without a value) that must all
    /// match.
    pub fn matches(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dimension_filters: &[(String, Option<String>)],
    ) -> bool {
        namespace.is_none_or(|n| n == self.namespace)
            && metric_name.is_none_or(|n| n == self.metric_name)
            && dimension_filters.iter().all(|(name, value)| {
                self.dimensions
                    .get(name)
                    .is_some_and(|v| value.as_ref().is_none_or(|want| want == v))
            })
    }
}

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// Mean of the samples.
    Average,
    /// Largest sample.
    Maximum,
    /// Smallest sample.
    Minimum,
    /// Sum of the samples.
    Sum,
    /// Number of samples.
    SampleCount,
    /// Nearest-rank percentile, `pNN` or `pNN.NN` (0..=100).
    Percentile(f64),
}

impl Statistic {
    /// Parses CloudWatch's spelling.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::new(
                ApiErrorKind::InvalidParameterValue,
                format!(
                    "The statistic {s:?} is not one of Average, Maximum, Minimum, Sum, SampleCount, pNN or pNN.NN."
                ),
            )
        };
        Ok(match s {
            "Average" => Self::Average,
            "Maximum" => Self::Maximum,
            "Minimum" => Self::Minimum,
            "Sum" => Self::Sum,
            "SampleCount" => Self::SampleCount,
            _ => {
                let digits = s.strip_prefix('p').ok_or_else(bad)?;
                let well_formed = match digits.split_once('.') {
                    Some((int, frac)) => {
                        !int.is_empty()
                            && (1..=2).contains(&frac.len())
                            && frac.bytes().all(|c| c.is_ascii_digit())
                            && int.bytes().all(|c| c.is_ascii_digit())
                    }
                    None => !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()),
                };
                let p: f64 = digits.parse().map_err(|_| bad())?;
                if !well_formed || !(0.0..=100.0).contains(&p) {
                    return Err(bad());
                }
                Self::Percentile(p)
            }
        })
    }

    /// The statistic of a non-empty set of samples (reordered in place for
    /// percentiles).
    pub fn of(self, values: &mut [f64]) -> f64 {
        let n = values.len();
        match self {
            Self::Average => values.iter().sum::<f64>() / n as f64,
            Self::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Self::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Sum => values.iter().sum(),
            Self::SampleCount => n as f64,
            Self::Percentile(p) => nearest_rank(values, p),
        }
    }
}

/// The nearest-rank percentile: the smallest sample with at least p% of the
/// samples at or below it.
pub fn nearest_rank(values: &mut [f64], p: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
    let (_, v, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
    *v
}

/// Checks a period: 1, 5, 10, 20, 30, or a multiple of 60 seconds.
pub fn validate_period(period_secs: u32) -> Result<(), ApiError> {
    if matches!(period_secs, 1 | 5 | 10 | 20 | 30)
        || (period_secs > 0 && period_secs.is_multiple_of(60))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiErrorKind::InvalidParameterValue,
            format!("The period {period_secs} must be 1, 5, 10, 20, 30 or a multiple of 60."),
        ))
    }
}

/// The statistic of one metric over the model seconds `steps` of a
/// history (clipped to the steps taken), `None` when none of them published
/// a sample. The one aggregation of the world: the simulator's source and
/// the emulator's GetMetricData and alarms all come here, each with its own
/// map from a CloudWatch period to model seconds. `buffer` is scratch space,
/// kept by the caller so that a run of periods allocates once.
pub fn period_value(
    history: &History,
    params: &AppParams,
    kind: MetricKind,
    statistic: Statistic,
    steps: std::ops::Range<i64>,
    buffer: &mut Vec<f64>,
) -> Option<f64> {
    let len = history.len() as i64;
    let (from, to) = (steps.start.max(0), steps.end.min(len));
    buffer.clear();
    buffer.extend((from..to).filter_map(|i| kind.sample(history, params, i as usize)));
    (!buffer.is_empty()).then(|| statistic.of(buffer))
}
