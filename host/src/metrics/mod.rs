//! Collect: where metric datapoints come from.
//!
//! The controller asks a [`MetricSource`] for the configured metrics of one
//! application over a time window. Sources: CloudWatch `GetMetricData`
//! ([`cloudwatch`]), batched across applications ([`batch`]), a Flink job's
//! own vertex metrics over its REST API ([`flink`], a metric configured
//! with `source = "flink"` becomes a query in the reserved namespace
//! [`flink::NAMESPACE`]), and the simulator's model. [`history`] reads
//! days of the past once, for a policy that learns from it.

pub mod alarm_batch;
pub mod alarms;
pub mod batch;
pub mod cloudwatch;
pub mod flink;
pub mod history;
pub mod math;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::config::{MetricConfig, MetricSourceKind};

/// One metric to fetch, in CloudWatch's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MetricQuery {
    /// The configured metric id (unique within one application).
    pub id: String,
    /// Namespace, e.g. `AWS/KinesisAnalytics`.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions, name -> value.
    pub dimensions: BTreeMap<String, String>,
    /// Statistic: Average, Maximum, Minimum, Sum, SampleCount or pNN(.NN).
    pub statistic: String,
    /// Period in seconds.
    pub period_secs: u32,
    /// CloudWatch metric math, for a metric configured with `expression`:
    /// then `namespace`, `metric_name`, `dimensions` and `statistic` are
    /// empty, and the expression's inputs are fetched beside it.
    pub expression: Option<MetricMath>,
}

/// A metric-math query: an expression over other metrics (see [`math`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MetricMath {
    /// The expression as configured, naming its inputs by their configured
    /// ids.
    pub text: String,
    /// The metrics it reads, each a plain metric with its configured id.
    pub inputs: Vec<MetricQuery>,
}

impl MetricQuery {
    /// The query for the configured `metric` of an application whose
    /// metrics are `all` (where an expression finds its inputs). A
    /// validated configuration's expression reads only plain metrics of
    /// `all`; anything else is left out and fails at the source.
    pub fn from_config(metric: &MetricConfig, all: &[MetricConfig]) -> Self {
        let plain = |m: &MetricConfig| MetricQuery {
            id: m.id.clone(),
            namespace: match m.source {
                MetricSourceKind::Cloudwatch => m.namespace.clone().unwrap_or_default(),
                MetricSourceKind::Flink => flink::NAMESPACE.to_owned(),
            },
            metric_name: m.metric_name.clone().unwrap_or_default(),
            dimensions: match m.source {
                MetricSourceKind::Cloudwatch => m.dimensions.clone(),
                MetricSourceKind::Flink => BTreeMap::from([(
                    flink::VERTEX.to_owned(),
                    m.vertex.clone().unwrap_or_else(|| "all".to_owned()),
                )]),
            },
            statistic: m.statistic.clone().unwrap_or_default(),
            period_secs: m.period_secs,
            expression: None,
        };
        let Some(text) = &metric.expression else {
            return plain(metric);
        };
        let ids = math::parse(text).map(|e| {
            let mut ids: Vec<String> = e.ids().into_iter().map(str::to_owned).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let inputs = ids
            .unwrap_or_default()
            .iter()
            .filter_map(|id| all.iter().find(|m| &m.id == id && m.expression.is_none()))
            .map(|m| MetricQuery {
                period_secs: metric.period_secs,
                ..plain(m)
            })
            .collect();
        MetricQuery {
            expression: Some(MetricMath {
                text: text.clone(),
                inputs,
            }),
            ..plain(metric)
        }
    }
}

/// One aggregated value for one period.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Datapoint {
    /// Start of the period, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// The datapoints of one query, oldest first, one per period at most.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    /// What was asked for.
    pub query: MetricQuery,
    /// What came back, oldest first.
    pub points: Vec<Datapoint>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    /// The service throttled the request.
    #[error("metric source throttled the request: {0}")]
    Throttled(String),
    /// The agent's identity or permissions were refused, or no credentials
    /// could be loaded.
    #[error("metric source refused the agent's permissions: {0}")]
    Permission(String),
    /// The service refused the request itself as invalid (a 4xx other than
    /// throttling and permissions, e.g. a malformed query): the queries
    /// are at fault, and sending them again unchanged will not help.
    #[error("metric source refused the request as invalid: {0}")]
    Invalid(String),
    /// The call worked, but the service failed some of its queries
    /// (GetMetricData's per-query `InternalError`): those queries may be
    /// one caller's, and asking again may answer them.
    #[error("metric source failed a query: {0}")]
    Query(String),
    /// Any other failure of the source (network, 5xx, malformed answer).
    #[error("metric source failed: {0}")]
    Source(String),
}

impl MetricsError {
    /// The outcome a call that failed so is counted with in
    /// `flinkscale_aws_calls_total` (a failed query, `Query`, counts as
    /// the source's: the call itself went through).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "throttled",
            Self::Permission(_) => "permission",
            Self::Invalid(_) => "invalid",
            Self::Source(_) | Self::Query(_) => "source",
        }
    }
}

/// A place that answers metric queries.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Fetches every query over `[start_ms, end_ms)`. The answer holds one
    /// [`Series`] per query, in the order of `queries`.
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError>;

    /// Fetches every query over `[start_ms, end_ms)`, a span that ended
    /// before now (a policy's history, read at its start), as
    /// [`MetricSource::fetch`] does. A source that samples the present
    /// instead of reading a store (Flink's REST API) answers from what it
    /// kept and samples nothing: a sample taken now is no value of that
    /// past.
    async fn fetch_past(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        self.fetch(queries, start_ms, end_ms).await
    }
}
