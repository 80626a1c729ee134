//! Collect: where metric datapoints come from.
//!
//! The controller asks a [`MetricSource`] for the configured metrics of one
//! application over a time window. Sources: CloudWatch `GetMetricData`
//! ([`cloudwatch`]), batched across applications ([`batch`]), and, in later
//! stages, the simulator and the Flink REST API.

pub mod batch;
pub mod cloudwatch;

use std::collections::BTreeMap;

use async_trait::async_trait;

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
#[derive(Debug, thiserror::Error)]
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
    /// Any other failure of the source (network, 5xx, malformed answer).
    #[error("metric source failed: {0}")]
    Source(String),
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
}
