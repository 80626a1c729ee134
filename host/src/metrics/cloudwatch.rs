//! CloudWatch GetMetricData as a metric source.
//!
//! One [`MetricQuery`] becomes one `MetricDataQuery` with a `MetricStat`
//! (percentiles such as `p99` pass through as the stat). Configured metric
//! ids are unique only within one application, and CloudWatch ids have their
//! own syntax, so every call numbers its queries `q0`, `q1`, ... and maps the
//! answers back by that number. A call holds at most
//! [`MAX_QUERIES_PER_CALL`] queries; more are split over several calls, and
//! each call follows `NextToken` until the service has said everything.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy, StatusCode,
};
use tracing::{debug, warn};

use super::{Datapoint, MetricQuery, MetricSource, MetricsError, Series};

/// GetMetricData accepts at most this many queries per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// Error codes with which AWS services say "slow down" (the same list the
/// SDK's retry classifier uses, minus codes that mean a quota, not a rate).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
];

/// Reads metrics with CloudWatch `GetMetricData`.
#[derive(Debug, Clone)]
pub struct CloudWatchSource {
    client: Client,
}

impl CloudWatchSource {
    /// A source using a CloudWatch client built from `config` (endpoint,
    /// region, credentials, retries and timeouts all come from there).
    pub fn new(config: &SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    /// A source over an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// Runs one GetMetricData call (with its pages) for at most
    /// [`MAX_QUERIES_PER_CALL`] queries.
    async fn fetch_call(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let data_queries: Vec<MetricDataQuery> = queries
            .iter()
            .enumerate()
            .map(|(index, query)| to_data_query(index, query))
            .collect();
        let mut points: Vec<Vec<Datapoint>> = vec![Vec::new(); queries.len()];
        let mut next_token: Option<String> = None;
        loop {
            let output = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(data_queries.clone()))
                .start_time(DateTime::from_millis(start_ms))
                .end_time(DateTime::from_millis(end_ms))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|error| classify_error(&error))?;
            for result in output.metric_data_results() {
                collect_result(result, &mut points)?;
            }
            // An empty token would make the service start over, not go on.
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(queries
            .iter()
            .zip(points)
            .map(|(query, points)| Series {
                query: query.clone(),
                points: normalise(points),
            })
            .collect())
    }
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let mut series = Vec::with_capacity(queries.len());
        // Sequential on purpose: GetMetricData has a per-account call rate,
        // and one agent's tick is not worth spending it in a burst.
        for chunk in queries.chunks(MAX_QUERIES_PER_CALL) {
            series.extend(self.fetch_call(chunk, start_ms, end_ms).await?);
        }
        Ok(series)
    }
}

/// The CloudWatch id of the query at `index` in one call.
fn query_id(index: usize) -> String {
    format!("q{index}")
}

/// The index encoded by [`query_id`], if `id` is one of ours.
fn query_index(id: &str) -> Option<usize> {
    id.strip_prefix('q')?.parse().ok()
}

fn to_data_query(index: usize, query: &MetricQuery) -> MetricDataQuery {
    let dimensions = query
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let metric = Metric::builder()
        .namespace(&query.namespace)
        .metric_name(&query.metric_name)
        .set_dimensions(Some(dimensions))
        .build();
    let stat = MetricStat::builder()
        .metric(metric)
        .period(i32::try_from(query.period_secs).unwrap_or(i32::MAX))
        .stat(&query.statistic)
        .build();
    MetricDataQuery::builder()
        .id(query_id(index))
        .metric_stat(stat)
        .return_data(true)
        .build()
}

/// Appends one result (one page of one query) to the points of its query.
fn collect_result(
    result: &MetricDataResult,
    points: &mut [Vec<Datapoint>],
) -> Result<(), MetricsError> {
    let id = result.id().unwrap_or_default();
    let Some(slot) = query_index(id).and_then(|index| points.get_mut(index)) else {
        warn!(
            message = "GetMetricData answered an id that was not asked for.",
            id
        );
        return Ok(());
    };
    match result.status_code() {
        Some(StatusCode::Forbidden) | Some(StatusCode::InternalError) => {
            let status = result.status_code().map(StatusCode::as_str).unwrap_or("");
            let messages: Vec<String> = result
                .messages()
                .iter()
                .map(|m| format!("{}: {}", m.code().unwrap_or(""), m.value().unwrap_or("")))
                .collect();
            return Err(MetricsError::Source(format!(
                "GetMetricData answered {status} for query {id}: {}",
                messages.join("; ")
            )));
        }
        // PartialData only means "more on the next page", which the caller
        // follows with the NextToken.
        Some(StatusCode::PartialData) => debug!(message = "Partial data; paging on.", id),
        _ => {}
    }
    if result.timestamps().len() != result.values().len() {
        return Err(MetricsError::Source(format!(
            "GetMetricData answered {} timestamps and {} values for query {id}",
            result.timestamps().len(),
            result.values().len()
        )));
    }
    for (timestamp, value) in result.timestamps().iter().zip(result.values()) {
        let timestamp_ms = timestamp.to_millis().map_err(|error| {
            MetricsError::Source(format!("GetMetricData answered a bad timestamp: {error}"))
        })?;
        slot.push(Datapoint {
            timestamp_ms,
            value: *value,
        });
    }
    Ok(())
}

/// Drops values that are not numbers, orders oldest first, and keeps one
/// point per timestamp (pages may overlap).
fn normalise(mut points: Vec<Datapoint>) -> Vec<Datapoint> {
    points.retain(|p| p.value.is_finite());
    points.sort_by_key(|p| p.timestamp_ms);
    points.dedup_by_key(|p| p.timestamp_ms);
    points
}

/// Maps an SDK failure to the controller's two classes: slow down, or failed.
fn classify_error(error: &SdkError<GetMetricDataError>) -> MetricsError {
    let code = error.code();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let full = DisplayErrorContext(error).to_string();
    if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == Some(429) {
        return MetricsError::Throttled(format!(
            "{}: {}",
            code.unwrap_or("TooManyRequests"),
            error.message().unwrap_or(&full)
        ));
    }
    match code {
        Some(code) => MetricsError::Source(format!("GetMetricData failed with {code}: {full}")),
        None => MetricsError::Source(format!("GetMetricData failed: {full}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ids_round_trip_and_reject_foreign_ids() {
        assert_eq!(query_index(&query_id(0)), Some(0));
        assert_eq!(query_index(&query_id(499)), Some(499));
        assert_eq!(query_index("cpu"), None);
        assert_eq!(query_index("q"), None);
    }

    #[test]
    fn normalise_drops_nan_sorts_and_dedupes() {
        let p = |timestamp_ms, value| Datapoint {
            timestamp_ms,
            value,
        };
        let points = vec![
            p(120, 3.0),
            p(0, 1.0),
            p(60, f64::NAN),
            p(120, 3.0),
            p(60, 2.0),
        ];
        assert_eq!(normalise(points), vec![p(0, 1.0), p(60, 2.0), p(120, 3.0)]);
    }

    #[test]
    fn data_query_carries_metric_stat_and_percentile() {
        let query = MetricQuery {
            id: "lag".into(),
            namespace: "AWS/Kafka".into(),
            metric_name: "MaxOffsetLag".into(),
            dimensions: [("Cluster Name".to_owned(), "c1".to_owned())].into(),
            statistic: "p99".into(),
            period_secs: 60,
        };
        let q = to_data_query(7, &query);
        assert_eq!(q.id(), Some("q7"));
        assert_eq!(q.return_data(), Some(true));
        let stat = q.metric_stat().expect("metric stat");
        assert_eq!(stat.stat(), Some("p99"));
        assert_eq!(stat.period(), Some(60));
        let metric = stat.metric().expect("metric");
        assert_eq!(metric.namespace(), Some("AWS/Kafka"));
        assert_eq!(metric.metric_name(), Some("MaxOffsetLag"));
        assert_eq!(metric.dimensions()[0].name(), Some("Cluster Name"));
        assert_eq!(metric.dimensions()[0].value(), Some("c1"));
    }
}
