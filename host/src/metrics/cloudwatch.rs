//! CloudWatch GetMetricData as a metric source.
//!
//! One [`MetricQuery`] becomes one `MetricDataQuery` with a `MetricStat`
//! (percentiles such as `p99` pass through as the stat). Configured metric
//! ids are unique only within one application, and CloudWatch ids have their
//! own syntax, so every call numbers its queries `q0`, `q1`, ... and maps the
//! answers back by that number. A call holds at most
//! [`MAX_QUERIES_PER_CALL`] queries; more are split over several calls, as
//! are queries whose periods have no common multiple within a day (each
//! call's start is aligned to all of its periods), and each call follows
//! `NextToken` until the service has said everything.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy, StatusCode,
};
use tracing::{debug, warn};

use super::{Datapoint, MetricQuery, MetricSource, MetricsError, Series};
use crate::telemetry::prometheus::CountedCall;

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
    /// `answered` says whether a query of this fetch was answered so far,
    /// in any call; this call sets it when it answers one.
    async fn fetch_call(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
        answered: &mut bool,
    ) -> Result<Vec<Series>, CallFailure> {
        let data_queries: Vec<MetricDataQuery> = queries
            .iter()
            .enumerate()
            .flat_map(|(index, query)| to_data_queries(index, query))
            .collect();
        let mut points: Vec<Vec<Datapoint>> = vec![Vec::new(); queries.len()];
        // The queries whose last page said PartialData.
        let mut partial = vec![false; queries.len()];
        let mut next_token: Option<String> = None;
        // The pages are the service's to give: a token seen before, or
        // more pages than the range holds datapoints (each page but the
        // last brings at least one), would page on for ever.
        let (most_points, _) = super::history::size(queries, start_ms, end_ms);
        let mut tokens = std::collections::HashSet::new();
        loop {
            let call = CountedCall::aws("GetMetricData");
            let result = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(data_queries.clone()))
                .start_time(DateTime::from_millis(start_ms))
                .end_time(DateTime::from_millis(end_ms))
                // Newest first: should an answer stop short (metric math is
                // not paged: PartialData with no NextToken), what is missing
                // is the oldest, not the periods alarms and policies judge.
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|error| classify_error(&error));
            // Each page is a call of its own, counted as one.
            // A failed query is not a failed call (`collect_result`).
            call.ended(result.as_ref().map_or_else(MetricsError::outcome, |_| "ok"));
            let output = result?;
            for message in output.messages() {
                warn!(
                    message = "GetMetricData answered a message about the whole call; what it \
                               answered is used as far as it goes.",
                    code = message.code().unwrap_or(""),
                    value = message.value().unwrap_or("")
                );
            }
            // A query the service failed alone (InternalError) is that
            // query's failure, told apart from the others' (the batcher
            // then fetches each caller apart) only when another query of
            // the call was answered: every query failed is the service's
            // (the batcher learns from a caller that then fails alone
            // while others are answered).
            let mut failed_query = None;
            for result in output.metric_data_results() {
                match collect_result(result, &mut points) {
                    Ok(Some(index)) => {
                        *answered = true;
                        partial[index] = result.status_code() == Some(&StatusCode::PartialData);
                    }
                    Ok(None) => {}
                    Err(MetricsError::Query(text)) => {
                        failed_query.get_or_insert(text);
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            if let Some(text) = failed_query {
                return Err(if *answered {
                    MetricsError::Query(text).into()
                } else {
                    CallFailure::Unanswered(text)
                });
            }
            // An empty token would make the service start over, not go on.
            match output.next_token() {
                Some(token) if !token.is_empty() => {
                    if !tokens.insert(token.to_owned()) {
                        return Err(MetricsError::Source(format!(
                            "GetMetricData answered the NextToken {token:?} a second time: \
                             its pages would never end"
                        ))
                        .into());
                    }
                    if tokens.len() > most_points {
                        return Err(MetricsError::Source(format!(
                            "GetMetricData answered {} pages and still a NextToken for {} \
                             queries holding at most {most_points} datapoints: its pages \
                             would never end",
                            tokens.len(),
                            queries.len()
                        ))
                        .into());
                    }
                    next_token = Some(token.to_owned());
                }
                _ => break,
            }
        }
        for (index, _) in partial.iter().enumerate().filter(|(_, p)| **p) {
            warn!(
                message = "GetMetricData left a query's data partial with no page to follow \
                           (metric math is not paged past 100,800 datapoints); some of its \
                           datapoints are missing.",
                id = query_id(index).as_str(),
                datapoints = points[index].len()
            );
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

/// How one GetMetricData call (with its pages) failed.
enum CallFailure {
    /// Every query it asked failed (per-query `InternalError`) and no
    /// query of the fetch had been answered yet: the service's failure or
    /// these queries', as the fetch's other calls tell.
    Unanswered(String),
    /// Any other failure.
    Failed(MetricsError),
}

impl From<MetricsError> for CallFailure {
    fn from(error: MetricsError) -> Self {
        Self::Failed(error)
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
        // Whether a query of any call was answered, and the first call
        // whose queries all failed (GetMetricData's per-query
        // InternalError): alone, that is the service's failure; beside a
        // call that was answered, its queries' (one caller's, in a merged
        // fetch), said as a query's failure so that the batcher fetches the
        // callers apart instead of failing them all. The calls after it are
        // made to tell which, until one is answered; once both are known
        // the fetch stops: the batcher fetches again apart, and any call
        // made meanwhile would be paid for nothing.
        let mut answered = false;
        let mut unanswered: Option<String> = None;
        // Sequential on purpose: GetMetricData has a per-account call rate,
        // and one agent's tick is not worth spending it in a burst.
        'calls: for chunk in alignable_runs(queries).into_iter().flat_map(chunks) {
            // CloudWatch measures what it keeps back from its own now, not
            // from the end asked for (a history read ends a window before
            // now); read for each chunk, as a long read's calls take time.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(end_ms, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .max(end_ms);
            let calls = retained_calls(chunk, start_ms, end_ms, now_ms);
            // Split: each answer goes back to its query's place.
            let mut placed: Vec<Option<Series>> = chunk.iter().map(|_| None).collect();
            for (indices, start_ms) in calls {
                let part: Vec<MetricQuery> = indices.iter().map(|&i| chunk[i].clone()).collect();
                match self
                    .fetch_spans(&part, start_ms, end_ms, &mut answered)
                    .await
                {
                    Ok(answers) => {
                        for (i, answer) in indices.into_iter().zip(answers) {
                            placed[i] = Some(answer);
                        }
                    }
                    Err(CallFailure::Unanswered(text)) => {
                        unanswered.get_or_insert(text);
                    }
                    Err(CallFailure::Failed(error)) => return Err(error),
                }
                if answered && unanswered.is_some() {
                    break 'calls;
                }
            }
            series.extend(placed.into_iter().flatten());
        }
        match unanswered {
            Some(text) if answered => Err(MetricsError::Query(text)),
            Some(text) => Err(MetricsError::Source(text)),
            None => Ok(series),
        }
    }
}

impl CloudWatchSource {
    /// One call's series over `[start_ms, end_ms)` (`start_ms` aligned),
    /// made in the spans [`unpaged_spans`] gives and joined.
    async fn fetch_spans(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
        answered: &mut bool,
    ) -> Result<Vec<Series>, CallFailure> {
        let mut joined: Vec<Series> = Vec::new();
        for (from_ms, to_ms) in unpaged_spans(queries, start_ms, end_ms) {
            let part = self.fetch_call(queries, from_ms, to_ms, answered).await?;
            if joined.is_empty() {
                joined = part;
                continue;
            }
            for (whole, part) in joined.iter_mut().zip(part) {
                let after = whole.points.last().map_or(i64::MIN, |p| p.timestamp_ms);
                whole
                    .points
                    .extend(part.points.into_iter().filter(|p| p.timestamp_ms > after));
            }
        }
        Ok(joined)
    }
}

/// The calls one chunk of `queries` is fetched in over `[start_ms,
/// end_ms)` at `now_ms`: the positions of their queries in the chunk and
/// each call's start. One call from the chunk's aligned start
/// ([`aligned_start`]), unless that start is further back from now than
/// CloudWatch keeps some query's periods, less a minute for the call to
/// reach it ([`retention_ms`]: it answers such a query with no datapoint
/// at all): the queries of each such retention then go in a call of their
/// own, from the oldest start within it that their own periods align to
/// (none where that is past `end_ms`: nothing of the span is kept).
/// The alignment to a longer period of the same call (a day's at most), or
/// the window of another application batched with them, would otherwise
/// push a window that `validate` let through (a 10 s metric read over 3
/// hours) or a history read that stays within 15 days (60 s periods read
/// with 7200 s ones) past what CloudWatch keeps.
fn retained_calls(
    queries: &[MetricQuery],
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> Vec<(Vec<usize>, i64)> {
    const MARGIN_MS: i64 = 60_000;
    let aligned = aligned_start(queries, start_ms);
    let kept = |q: &MetricQuery| periods_ms(q).map(retention_ms).min().unwrap_or(i64::MAX);
    let oldest = |q: &MetricQuery| now_ms.saturating_sub(kept(q)).saturating_add(MARGIN_MS);
    let lost = |q: &MetricQuery| aligned < oldest(q) && oldest(q) < end_ms;
    if !queries.iter().any(lost) {
        return vec![((0..queries.len()).collect(), aligned)];
    }
    let mut retentions: Vec<i64> = queries.iter().filter(|q| lost(q)).map(kept).collect();
    retentions.sort_unstable();
    retentions.dedup();
    let of = |indices: &[usize]| -> Vec<MetricQuery> {
        indices.iter().map(|&i| queries[i].clone()).collect()
    };
    let mut calls = Vec::new();
    let mut rest: Vec<usize> = (0..queries.len()).filter(|&i| !lost(&queries[i])).collect();
    for retention in retentions {
        let indices: Vec<usize> = (0..queries.len())
            .filter(|&i| lost(&queries[i]) && kept(&queries[i]) == retention)
            .collect();
        let part = of(&indices);
        let oldest_ms = now_ms.saturating_sub(retention).saturating_add(MARGIN_MS);
        let mut start = aligned_start(&part, start_ms.max(oldest_ms));
        if start < oldest_ms {
            start = start.saturating_add(alignment_step(&part));
        }
        if start < end_ms {
            calls.push((indices, start));
        } else {
            // No whole aligned period of the span is kept: asked for as
            // they are, with the others.
            rest.extend(indices);
        }
    }
    rest.sort_unstable();
    if !rest.is_empty() {
        let start = aligned_start(&of(&rest), start_ms);
        calls.push((rest, start));
    }
    calls
}

/// How far back CloudWatch answers a query at a period of `period_ms`
/// (GetMetricData's `Period`): 3 hours for a sub-minute period, 15 days
/// for a whole number of minutes, 63 days for one of 5 minutes, 455 days
/// for one of hours. A query whose start is older gets no datapoint.
fn retention_ms(period_ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    if period_ms < 60_000 {
        3 * 3_600_000
    } else if period_ms % 300_000 != 0 {
        15 * DAY_MS
    } else if period_ms % 3_600_000 != 0 {
        63 * DAY_MS
    } else {
        455 * DAY_MS
    }
}

/// The spans one call of `queries` over `[start_ms, end_ms)` is made in:
/// the whole span, unless a query is metric math and the span holds more
/// than [`super::history::MAX_DATAPOINTS_PER_CALL`] datapoints (a long
/// history read, or several applications' reads batched together):
/// CloudWatch pages no request that performs metric math, answering the
/// first 100,800 datapoints and marking the rest PartialData. Then equal
/// consecutive spans, each a whole number of the call's alignment step
/// (so every span starts aligned, as `start_ms` is), each within the
/// limit.
fn unpaged_spans(queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> Vec<(i64, i64)> {
    use super::history::{MAX_DATAPOINTS_PER_CALL, size};
    if queries.iter().all(|q| q.expression.is_none()) {
        return vec![(start_ms, end_ms)];
    }
    // Counted with the inputs metric math reads (sent with ReturnData
    // false): whether CloudWatch's limit counts them is not documented,
    // and a few more calls cost little.
    let inputs: Vec<MetricQuery> = queries
        .iter()
        .filter_map(|q| q.expression.as_ref())
        .flat_map(|math| math.inputs.iter().cloned())
        .collect();
    let (returned, _) = size(queries, start_ms, end_ms);
    let (read, _) = size(&inputs, start_ms, end_ms);
    let points = returned.saturating_add(read);
    if points <= MAX_DATAPOINTS_PER_CALL {
        return vec![(start_ms, end_ms)];
    }
    let pages = points.div_ceil(MAX_DATAPOINTS_PER_CALL);
    let step = alignment_step(queries);
    // One span more than the datapoints need: rounding each down to whole
    // steps stays within the limit.
    let count = i64::try_from(pages).unwrap_or(i64::MAX).saturating_add(1);
    let length = ((end_ms - start_ms) / count).div_euclid(step).max(1) * step;
    let mut spans = Vec::new();
    let mut from = start_ms;
    while from < end_ms {
        let to = from.saturating_add(length).min(end_ms);
        spans.push((from, to));
        from = to;
    }
    spans
}

/// The most [`aligned_start`] moves a start back: a day.
const MAX_ALIGNMENT_MS: i64 = 86_400_000;

/// `start_ms` moved back to a multiple of every period `queries` ask for
/// (of their least common multiple; of the longest period, should that be
/// over a day), since the Unix epoch.
///
/// CloudWatch rounds a StartTime down to the minute (to the 5, 10, 20 or
/// 30 s division of one for those periods) and lays its periods from
/// there: a 300 s period asked from 12:07 gives datapoints at 12:07,
/// 12:12, ... Alarms judge periods aligned to the epoch
/// ([`crate::alarm::range_from_series`]) and would find none of those. From
/// an aligned start both agree; the range is at most a few periods longer.
fn aligned_start(queries: &[MetricQuery], start_ms: i64) -> i64 {
    let step = alignment_step(queries);
    start_ms.div_euclid(step) * step
}

/// What [`aligned_start`] aligns to, in ms: the least common multiple of
/// every period `queries` ask for, or the longest period should that be
/// over a day.
fn alignment_step(queries: &[MetricQuery]) -> i64 {
    let (step, longest) = queries.iter().fold((1_000, 1_000), |(step, longest), q| {
        (common_step(step, q), longest.max(longest_period_ms(q)))
    });
    if step > MAX_ALIGNMENT_MS {
        longest
    } else {
        step
    }
}

/// The periods `query` asks for, in ms: its own and its metric math
/// inputs'.
fn periods_ms(query: &MetricQuery) -> impl Iterator<Item = i64> + '_ {
    std::iter::once(query.period_secs)
        .chain(
            query
                .expression
                .iter()
                .flat_map(|math| math.inputs.iter().map(|input| input.period_secs)),
        )
        .map(|p| i64::from(p.max(1)) * 1000)
}

/// The longest period `query` asks for, in ms.
fn longest_period_ms(query: &MetricQuery) -> i64 {
    periods_ms(query).max().unwrap_or(1_000)
}

/// The least common multiple of `step` and every period of `query` (ms),
/// capped just past [`MAX_ALIGNMENT_MS`].
fn common_step(step: i64, query: &MetricQuery) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    periods_ms(query).fold(step, |step, period_ms| {
        (step / gcd(step, period_ms))
            .saturating_mul(period_ms)
            .min(MAX_ALIGNMENT_MS + 1)
    })
}

/// Splits `queries`, in order, into runs whose periods have a common
/// multiple of at most a day, so that one aligned start serves every
/// period of a call ([`aligned_start`]). Queries of several applications
/// travel in one call, and two unusual periods (37 and 41 minutes: 25 h)
/// would otherwise leave one of them misaligned, every datapoint of it
/// discarded and its alarms judging missing data. A query whose own
/// periods have none is a run of its own (aligned to its longest).
fn alignable_runs(queries: &[MetricQuery]) -> Vec<&[MetricQuery]> {
    let mut runs = Vec::new();
    let (mut start, mut step) = (0, 1_000);
    for (i, query) in queries.iter().enumerate() {
        let joined = common_step(step, query);
        if joined > MAX_ALIGNMENT_MS && i > start {
            runs.push(&queries[start..i]);
            start = i;
            step = common_step(1_000, query);
        } else {
            step = joined;
        }
    }
    if start < queries.len() {
        runs.push(&queries[start..]);
    }
    runs
}

/// How many GetMetricData queries `query` takes: one, plus its inputs for
/// metric math.
fn weight(query: &MetricQuery) -> usize {
    1 + query
        .expression
        .as_ref()
        .map_or(0, |math| math.inputs.len())
}

/// Splits `queries` into runs of at most [`MAX_QUERIES_PER_CALL`]
/// GetMetricData queries, metric math counted with its inputs (which must
/// travel in the same call).
fn chunks(queries: &[MetricQuery]) -> Vec<&[MetricQuery]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, query) in queries.iter().enumerate() {
        let w = weight(query);
        if used + w > MAX_QUERIES_PER_CALL && i > start {
            out.push(&queries[start..i]);
            (start, used) = (i, 0);
        }
        used += w;
    }
    if start < queries.len() {
        out.push(&queries[start..]);
    }
    out
}

/// The CloudWatch id of the query at `index` in one call.
fn query_id(index: usize) -> String {
    format!("q{index}")
}

/// The index encoded by [`query_id`], if `id` is one of ours.
fn query_index(id: &str) -> Option<usize> {
    id.strip_prefix('q')?.parse().ok()
}

/// The GetMetricData queries of the query at `index`: one MetricStat, or,
/// for metric math, the Expression (with its inputs renamed to this call's
/// ids) and each input as a MetricStat with `ReturnData = false`, named
/// `q<index>_<k>` so that their answers, if any, are never taken for a
/// query's.
fn to_data_queries(index: usize, query: &MetricQuery) -> Vec<MetricDataQuery> {
    let Some(math) = &query.expression else {
        return vec![to_data_query(index, query)];
    };
    let input_id = |k: usize| format!("{}_{k}", query_id(index));
    let text = super::math::rename_ids(&math.text, &|id| {
        math.inputs
            .iter()
            .position(|input| input.id == id)
            .map(input_id)
    });
    let mut out = vec![
        MetricDataQuery::builder()
            .id(query_id(index))
            .expression(text)
            .period(i32::try_from(query.period_secs).unwrap_or(i32::MAX))
            .return_data(true)
            .build(),
    ];
    for (k, input) in math.inputs.iter().enumerate() {
        let mut data_query = to_data_query(index, input);
        data_query.id = Some(input_id(k));
        data_query.return_data = Some(false);
        out.push(data_query);
    }
    out
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

/// Appends one result (one page of one query) to the points of its query;
/// the query's index, or `None` for an id that was not asked for.
fn collect_result(
    result: &MetricDataResult,
    points: &mut [Vec<Datapoint>],
) -> Result<Option<usize>, MetricsError> {
    let id = result.id().unwrap_or_default();
    let Some((index, slot)) =
        query_index(id).and_then(|index| points.get_mut(index).map(|slot| (index, slot)))
    else {
        warn!(
            message = "GetMetricData answered an id that was not asked for.",
            id
        );
        return Ok(None);
    };
    match result.status_code() {
        Some(StatusCode::Forbidden) | Some(StatusCode::InternalError) => {
            let status = result.status_code().map(StatusCode::as_str).unwrap_or("");
            let messages: Vec<String> = result
                .messages()
                .iter()
                .map(|m| format!("{}: {}", m.code().unwrap_or(""), m.value().unwrap_or("")))
                .collect();
            let text = format!(
                "GetMetricData answered {status} for query {id}: {}",
                messages.join("; ")
            );
            // Forbidden is this query's metric refused to the agent's
            // identity (e.g. another account's), and InternalError this
            // query failed: neither is a failed call, so neither need fail
            // the other queries of a batch.
            return Err(if result.status_code() == Some(&StatusCode::Forbidden) {
                MetricsError::Permission(text)
            } else {
                MetricsError::Query(text)
            });
        }
        // PartialData means "more on the next page", which the caller
        // follows with the NextToken; one left on the last page (a
        // request with metric math is not paged) is said there.
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
    Ok(Some(index))
}

/// Drops values that are not numbers, orders oldest first, and keeps one
/// point per timestamp (pages may overlap).
fn normalise(mut points: Vec<Datapoint>) -> Vec<Datapoint> {
    points.retain(|p| p.value.is_finite());
    points.sort_by_key(|p| p.timestamp_ms);
    points.dedup_by_key(|p| p.timestamp_ms);
    points
}

/// The IAM action a GetMetricData call needs.
const ACTION: &str = "cloudwatch:GetMetricData";

/// Maps an SDK failure to its class: slow down ([`MetricsError::Throttled`]),
/// the agent's identity or permissions refused or its credentials missing
/// ([`MetricsError::Permission`]), the request refused as invalid
/// ([`MetricsError::Invalid`]), or failed (anything else, including
/// network errors, timeouts and 5xx: [`MetricsError::Source`]).
fn classify_error(error: &SdkError<GetMetricDataError>) -> MetricsError {
    let code = error.code();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let full = crate::aws::error_text(error);
    let message = error.message().unwrap_or(&full);
    if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == Some(429) {
        return MetricsError::Throttled(format!(
            "{}: {message}",
            code.unwrap_or("TooManyRequests")
        ));
    }
    if crate::aws::is_credentials_failure(error) {
        return MetricsError::Permission(format!(
            "GetMetricData was not sent: the agent has no usable AWS credentials ({}): {full}",
            crate::aws::CREDENTIAL_SOURCES
        ));
    }
    if code.is_some_and(crate::aws::is_permission_code) || status == Some(403) {
        let code = code.unwrap_or("HTTP 403");
        return MetricsError::Permission(format!(
            "GetMetricData refused: {}",
            crate::aws::permission_message(ACTION, code, message)
        ));
    }
    let client_error = status.is_some_and(|s| (400..500).contains(&s));
    if client_error || matches!(error, SdkError::ConstructionFailure(_)) {
        return MetricsError::Invalid(match code {
            Some(code) => format!(
                "GetMetricData failed with {code}: {}",
                error.message().unwrap_or("no message")
            ),
            None => format!("GetMetricData failed: {full}"),
        });
    }
    // With a code, its message alone: the whole error's text adds the
    // SDK's debug rendering of the same code and message.
    match code {
        Some(code) => MetricsError::Source(format!(
            "GetMetricData failed with {code}: {}",
            error.message().unwrap_or("no message")
        )),
        None => MetricsError::Source(format!("GetMetricData failed: {full}")),
    }
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{ProvideCredentials, future};
    use aws_sdk_cloudwatch::config::http::HttpResponse;
    use aws_sdk_cloudwatch::error::{ConnectorError, ErrorMetadata};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    /// A query of MSF's CPU with id `id` and a period of `period_secs`.
    fn cpu_query(id: &str, period_secs: u32) -> MetricQuery {
        MetricQuery {
            id: id.into(),
            namespace: "AWS/KinesisAnalytics".into(),
            metric_name: "containerCPUUtilization".into(),
            dimensions: Default::default(),
            statistic: "Maximum".into(),
            period_secs,
            expression: None,
        }
    }

    /// An audit's case: a 10 s metric read with a 1080 s one over 3
    /// hours exactly (`validate` lets it through) would be asked from the
    /// 1080 s alignment, up to 1070 s past the 3 hours CloudWatch keeps
    /// 10 s data for, and get no datapoint at all. The 10 s query goes in
    /// a call of its own, from the first 10 s boundary within the 3 hours,
    /// its answer in its place; the 1080 s one keeps its aligned start. A
    /// chunk whose start is within the 3 hours, or without a sub-minute
    /// period, is one call.
    #[test]
    fn a_query_is_never_asked_for_past_what_cloudwatch_keeps_of_its_period() {
        let queries = [cpu_query("cpu", 1080), cpu_query("lag", 10)];
        let end_ms: i64 = 1_700_000_000_000 + 500;
        let start_ms = end_ms - 10_800_000;
        let calls = retained_calls(&queries, start_ms, end_ms, end_ms);
        assert_eq!(calls.len(), 2, "{calls:?}");
        let (short, short_start) = &calls[0];
        assert_eq!(short, &vec![1]);
        // A minute's margin for the call to reach CloudWatch.
        let oldest = end_ms - 10_800_000 + 60_000;
        assert!(*short_start >= oldest, "{calls:?}");
        assert!(*short_start < oldest + 10_000, "{calls:?}");
        assert_eq!(short_start % 10_000, 0);
        let (long, long_start) = &calls[1];
        assert_eq!(long, &vec![0]);
        assert_eq!(*long_start, aligned_start(&queries[..1], start_ms));
        assert!(
            *long_start < end_ms - 10_800_000,
            "the case needs the split"
        );

        // A history read of 15 days at 60 s with a 7200 s metric: the
        // 7200 s alignment would take the start past the 15 days CloudWatch
        // keeps minutes for.
        let history = [cpu_query("cpu", 60), cpu_query("slow", 7200)];
        // It ends where the usual window begins, 20 hours (ten periods of
        // the longest) before now: CloudWatch counts the 15 days from now.
        let now_ms = end_ms;
        let window_start = now_ms - 20 * 3_600_000;
        let back = now_ms - 15 * 86_400_000 + 1_800_000;
        let calls = retained_calls(&history, back, window_start, now_ms);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].0, vec![0]);
        assert!(calls[0].1 >= now_ms - 15 * 86_400_000 && calls[0].1 % 60_000 == 0);
        assert_eq!(calls[1], (vec![1], aligned_start(&history[1..], back)));
        // Measured from the end instead, nothing would have been split.
        assert_eq!(
            retained_calls(&history, back, window_start, window_start).len(),
            1
        );
        // A 10 s query whose kept span holds no whole aligned period of
        // the window (its first start within the 3 hours is past the end):
        // asked for with the others, never from after its end.
        let tight = retained_calls(&queries, start_ms, end_ms - 10_800_000 + 65_000, end_ms);
        assert_eq!(tight.len(), 1, "{tight:?}");
        assert_eq!(tight[0].0, vec![0, 1]);
        // A span CloudWatch keeps nothing of is asked for as it is.
        let gone = retained_calls(&queries, start_ms - 86_400_000, end_ms - 86_400_000, end_ms);
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(retention_ms(10_000), 10_800_000);
        assert_eq!(retention_ms(120_000), 15 * 86_400_000);
        assert_eq!(retention_ms(600_000), 63 * 86_400_000);
        assert_eq!(retention_ms(7_200_000), 455 * 86_400_000);

        let recent = retained_calls(&queries, end_ms - 3_600_000, end_ms, end_ms);
        assert_eq!(
            recent,
            vec![(vec![0, 1], aligned_start(&queries, end_ms - 3_600_000))]
        );
        let minutes = [cpu_query("cpu", 1080), cpu_query("in", 60)];
        assert_eq!(retained_calls(&minutes, start_ms, end_ms, end_ms).len(), 1);
    }

    /// A call with metric math over more than 100,800 datapoints (its
    /// inputs counted) is made in consecutive spans of whole alignment
    /// steps, each within the limit, covering the span once; one without
    /// math, or within the limit, in one.
    #[test]
    fn metric_math_past_a_call_s_datapoints_is_split_in_aligned_spans() {
        const DAY_MS: i64 = 86_400_000;
        let mut math = cpu_query("doubled", 60);
        math.expression = Some(crate::metrics::MetricMath {
            text: "m0 * 2".into(),
            inputs: vec![cpu_query("m0", 60)],
        });
        let mut queries: Vec<MetricQuery> = (0..4)
            .map(|i| cpu_query(&format!("m{i}"), if i == 3 { 300 } else { 60 }))
            .collect();
        queries.push(math);
        let start = 20_000 * DAY_MS;
        let end = start + 15 * DAY_MS;
        let spans = unpaged_spans(&queries, start, end);
        assert!(spans.len() >= 2, "{spans:?}");
        assert_eq!(spans.first().map(|s| s.0), Some(start));
        assert_eq!(spans.last().map(|s| s.1), Some(end));
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "contiguous: {spans:?}");
        }
        let inputs = [cpu_query("m0", 60)];
        for (from, to) in &spans {
            assert_eq!(from % 300_000, 0, "aligned to 60 s and 300 s");
            let (points, _) = crate::metrics::history::size(&queries, *from, *to);
            let (read, _) = crate::metrics::history::size(&inputs, *from, *to);
            assert!(points + read <= crate::metrics::history::MAX_DATAPOINTS_PER_CALL);
        }
        assert_eq!(unpaged_spans(&queries[..4], start, end), [(start, end)]);
        assert_eq!(
            unpaged_spans(&queries, start, start + DAY_MS),
            [(start, start + DAY_MS)]
        );
    }

    /// A service error as the SDK hands it over after parsing an answer.
    fn service(status: u16, code: &str, message: &str) -> SdkError<GetMetricDataError> {
        let error = GetMetricDataError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(error, raw)
    }

    /// A 5xx says its code and message, not the SDK's debug rendering of
    /// them (`Error { code: ..., type: "Receiver" }`), in the log,
    /// `/readyz` and `status`.
    #[test]
    fn a_server_error_says_its_code_and_message_only() {
        let error =
            GetMetricDataError::generic(ErrorMetadata::builder().code("InternalFailure").build());
        let raw = HttpResponse::new(500.try_into().expect("status"), SdkBody::empty());
        let class = classify_error(&SdkError::service_error(error, raw));
        assert!(
            matches!(&class, MetricsError::Source(m) if m == "GetMetricData failed with InternalFailure: no message"),
            "{class:?}"
        );
        let class = classify_error(&service(503, "ServiceUnavailable", "try later"));
        assert!(
            matches!(&class, MetricsError::Source(m) if m == "GetMetricData failed with ServiceUnavailable: try later"),
            "{class:?}"
        );
    }

    #[test]
    fn refused_identities_and_actions_are_permission_errors() {
        for code in crate::aws::PERMISSION_CODES {
            for status in [400, 403] {
                let class = classify_error(&service(status, code, "refused"));
                assert!(
                    matches!(&class, MetricsError::Permission(m) if m.contains(code)),
                    "{code} {status}: {class:?}"
                );
            }
        }
        let denied = classify_error(&service(
            403,
            "AccessDenied",
            "User: arn:aws:iam::1:user/agent is not authorized to perform: cloudwatch:GetMetricData because no identity-based policy allows the cloudwatch:GetMetricData action",
        ));
        assert!(
            matches!(&denied, MetricsError::Permission(m) if m.contains("missing permission cloudwatch:GetMetricData")),
            "{denied:?}"
        );
        let plain = classify_error(&service(400, "AccessDeniedException", "Access denied"));
        assert!(
            matches!(&plain, MetricsError::Permission(m) if m.contains("needs cloudwatch:GetMetricData")),
            "{plain:?}"
        );
    }

    #[test]
    fn a_credentials_provider_failure_is_a_permission_error() {
        let error: SdkError<GetMetricDataError> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::not_loaded("no credentials in the chain")),
                None,
            ));
        let class = classify_error(&error);
        assert!(
            matches!(&class, MetricsError::Permission(m) if m.contains("no usable AWS credentials")),
            "{class:?}"
        );
        // A network failure is a dispatch failure too, and stays transient.
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let network: SdkError<GetMetricDataError> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert!(!crate::aws::is_credentials_failure(&network));
        assert!(
            matches!(classify_error(&network), MetricsError::Source(_)),
            "{network:?}"
        );
    }

    #[test]
    fn other_failures_keep_their_classes() {
        let class = |status, code| classify_error(&service(status, code, "m"));
        assert!(matches!(
            class(400, "Throttling"),
            MetricsError::Throttled(_)
        ));
        assert!(matches!(class(429, "Whatever"), MetricsError::Throttled(_)));
        assert!(matches!(
            class(400, "InvalidParameterValue"),
            MetricsError::Invalid(m) if m.contains("InvalidParameterValue")
        ));
        assert!(matches!(
            class(400, "InvalidParameterCombination"),
            MetricsError::Invalid(_)
        ));
        assert!(matches!(
            class(500, "InternalServiceError"),
            MetricsError::Source(_)
        ));
        assert!(matches!(
            class(503, "ServiceUnavailable"),
            MetricsError::Source(_)
        ));
        let timeout: SdkError<GetMetricDataError> = SdkError::timeout_error("attempt timed out");
        assert!(matches!(classify_error(&timeout), MetricsError::Source(_)));
    }

    /// A credentials chain that finds nothing, as on a host with no role.
    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no credentials in the chain",
            )))
        }
    }

    /// The real SDK: a provider that cannot produce credentials fails the
    /// call before anything is sent, and that reads as a permission error,
    /// whatever the endpoint (here one where nothing listens).
    #[tokio::test]
    async fn the_sdk_without_credentials_gives_a_permission_error() {
        let config = crate::aws::config_loader(Some("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(NoCredentials)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .load()
            .await;
        let query = MetricQuery {
            id: "cpu".into(),
            namespace: "AWS/KinesisAnalytics".into(),
            metric_name: "containerCPUUtilization".into(),
            dimensions: Default::default(),
            statistic: "Maximum".into(),
            period_secs: 60,
            expression: None,
        };
        let error = CloudWatchSource::new(&config)
            .fetch(&[query], 0, 60_000)
            .await
            .expect_err("no credentials");
        assert!(
            matches!(&error, MetricsError::Permission(m) if m.contains("no credentials in the chain")),
            "{error:?}"
        );
    }

    /// The start of a call is moved back to a multiple of every period it
    /// asks for, so that CloudWatch's periods (laid from the start) fall
    /// on the epoch-aligned periods the alarms judge.
    #[test]
    fn a_calls_start_is_aligned_to_every_period_it_asks_for() {
        let query = |period_secs: u32| cpu_query("m", period_secs);
        // 12:07:17 on 2026-12-04.
        let start = 1_796_386_037_000_i64;
        assert_eq!(start % 60_000, 17_000);
        let at = |periods: &[u32]| {
            aligned_start(
                &periods.iter().map(|&p| query(p)).collect::<Vec<_>>(),
                start,
            )
        };
        assert_eq!(at(&[60]), start - 17_000);
        assert_eq!(at(&[300]), start - 2 * 60_000 - 17_000, "12:05:00");
        assert_eq!(at(&[10]), start - 7_000);
        // 120 and 180: their least common multiple, 360 s.
        let both = at(&[120, 180]);
        assert_eq!((both % 360_000, start - both < 360_000), (0, true));
        // A math expression's inputs count.
        let mut math = query(60);
        math.expression = Some(crate::metrics::MetricMath {
            text: "m * 2".into(),
            inputs: vec![query(300)],
        });
        assert_eq!(aligned_start(&[math], start) % 300_000, 0);
        // Periods whose common multiple passes a day: the longest one.
        assert_eq!(at(&[86_340, 86_280]) % 86_340_000, 0);
        assert_eq!(at(&[]), start, "no period: a whole second already");
    }

    /// Queries whose periods have no common multiple within a day go in
    /// separate calls, each aligned to all of its periods: 37 and 41
    /// minutes (25 h 17 min) travelled together, aligned to the longer,
    /// and every datapoint of the other was misaligned and discarded.
    #[test]
    fn periods_without_a_common_day_go_in_calls_of_their_own() {
        let query = cpu_query;
        let ids = |queries: &[MetricQuery]| -> Vec<Vec<String>> {
            alignable_runs(queries)
                .iter()
                .map(|run| run.iter().map(|q| q.id.clone()).collect())
                .collect()
        };
        let queries = [
            query("a", 60),
            query("b", 2220),
            query("c", 300),
            query("d", 2460),
            query("e", 60),
        ];
        assert_eq!(ids(&queries), [vec!["a", "b", "c"], vec!["d", "e"]]);
        let start = 1_796_386_037_000_i64;
        for run in alignable_runs(&queries) {
            let aligned = aligned_start(run, start);
            for q in run {
                assert_eq!(aligned % (i64::from(q.period_secs) * 1000), 0, "{}", q.id);
            }
        }
        // Common periods: one run, in order.
        let usual = [query("a", 60), query("b", 300), query("c", 10)];
        assert_eq!(ids(&usual), [vec!["a", "b", "c"]]);
        assert!(alignable_runs(&[]).is_empty());
    }

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
            expression: None,
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
