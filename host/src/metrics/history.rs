//! History: days of past datapoints read when a policy instance starts.
//!
//! A policy that learns cycles (`predictive`) needs days of the input rate
//! before it can forecast; learning only as it runs leaves its first day
//! reactive. With `[application.policy] history_days = N` the controller
//! reads, at a policy instance's first evaluation (the first of the run,
//! and the first after a reload or a restart: see
//! `Controller::decide`), the last N days of
//! every configured metric (what its usual fetch window does not already
//! hold), at 1-minute resolution
//! (a metric's own period when that is longer; CloudWatch keeps sub-minute
//! datapoints for 3 hours only and 1-minute ones for 15 days, hence
//! [`crate::config::MAX_HISTORY_DAYS`]), and prepends them to that
//! evaluation's series: the plugin contract is unchanged, the first
//! evaluation's `list<datapoint>` is simply longer.
//!
//! GetMetricData returns at most [`MAX_DATAPOINTS_PER_CALL`] datapoints per
//! call and pages the rest with `NextToken` (which
//! [`super::cloudwatch::CloudWatchSource`] follows); 15 days of one metric
//! are 21,600 datapoints, so a handful of metrics already take several
//! pages. A read that fails is the caller's to log: scaling goes on
//! without history.

use super::{Datapoint, MetricQuery, MetricSource, MetricsError, Series};

/// GetMetricData returns at most this many datapoints per call (its
/// `MaxDatapoints` default) and pages the rest with `NextToken`.
pub const MAX_DATAPOINTS_PER_CALL: usize = 100_800;

/// The finest period history is read at: CloudWatch keeps sub-minute
/// datapoints for 3 hours only.
pub const MIN_PERIOD_SECS: u32 = 60;

/// One day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// The span history covers, `[start_ms, end_ms)`: the `days` before the
/// usual fetch window `[window_start_ms, ...)`, measured back from `now_ms`
/// less a minute (the call is made a moment later) and rounded up to a
/// whole hour, so that the oldest minute asked for is within CloudWatch's
/// 15 days of 1-minute datapoints even after the source aligns the start
/// down to a multiple of every period of its call (`aligned_start` in
/// [`super::cloudwatch`]: 5 minutes for 60 s and 300 s periods together;
/// any period dividing an hour leaves a whole hour where it is).
/// GetMetricData returns no datapoints for a start past 15 days at a
/// 60 s period. `None` when there is nothing to read (no days, or a window
/// that already covers them).
pub fn span(now_ms: i64, window_start_ms: i64, days: u32) -> Option<(i64, i64)> {
    const HOUR_MS: i64 = 3_600_000;
    let minute = i64::from(MIN_PERIOD_SECS) * 1000;
    let back = now_ms
        .checked_sub(i64::from(days).checked_mul(DAY_MS)?)?
        .checked_add(minute)?;
    let start = back.div_euclid(HOUR_MS) * HOUR_MS + if back % HOUR_MS == 0 { 0 } else { HOUR_MS };
    (days > 0 && start < window_start_ms).then_some((start, window_start_ms))
}

/// The queries history is read with: the configured ones, each at its own
/// period but at least [`MIN_PERIOD_SECS`] (metric math's inputs too).
pub fn queries(queries: &[MetricQuery]) -> Vec<MetricQuery> {
    fn coarse(query: &MetricQuery) -> MetricQuery {
        MetricQuery {
            period_secs: query.period_secs.max(MIN_PERIOD_SECS),
            expression: query.expression.as_ref().map(|math| super::MetricMath {
                text: math.text.clone(),
                inputs: math.inputs.iter().map(coarse).collect(),
            }),
            ..query.clone()
        }
    }
    queries.iter().map(coarse).collect()
}

/// How many datapoints history of `queries` over `[start_ms, end_ms)` holds
/// at most (every period of every query), and how many GetMetricData pages
/// of [`MAX_DATAPOINTS_PER_CALL`] that takes at least: what the controller
/// logs with each history read (`datapoints_asked`, `pages`), its cost.
pub fn size(queries: &[MetricQuery], start_ms: i64, end_ms: i64) -> (usize, usize) {
    let span_ms = (end_ms - start_ms).max(0);
    let points: usize = queries
        .iter()
        .map(|q| {
            let period_ms = i64::from(q.period_secs.max(1)) * 1000;
            usize::try_from((span_ms + period_ms - 1) / period_ms).unwrap_or(usize::MAX)
        })
        .fold(0, usize::saturating_add);
    (points, points.div_ceil(MAX_DATAPOINTS_PER_CALL))
}

/// Reads the history of `queries` over `[start_ms, end_ms)` from `source`:
/// one series per query, in order, at the periods of [`queries`], oldest
/// first. One fetch over the whole span: the source pages it, and splits
/// by time a call holding metric math, which CloudWatch does not page.
pub async fn read(
    source: &dyn MetricSource,
    queries: &[MetricQuery],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Series>, MetricsError> {
    let asked = self::queries(queries);
    let series = source.fetch_past(&asked, start_ms, end_ms).await?;
    if series.len() != queries.len() {
        return Err(MetricsError::Source(format!(
            "history: {} series for {} queries",
            series.len(),
            queries.len()
        )));
    }
    Ok(series)
}

/// The series an evaluation hands its policy: each of `window` with the
/// points of the same query's `history` before its first point put in
/// front (the window's own points win where both have a period, and the
/// result stays oldest first, one point per timestamp). A query without
/// history keeps its window as it is.
pub fn prepend(history: &[Series], window: &[Series]) -> Vec<Series> {
    window
        .iter()
        .enumerate()
        .map(|(i, series)| {
            let Some(past) = history.get(i) else {
                return series.clone();
            };
            let first = series.points.first().map_or(i64::MAX, |p| p.timestamp_ms);
            let mut points: Vec<Datapoint> = past
                .points
                .iter()
                .filter(|p| p.timestamp_ms < first)
                .copied()
                .collect();
            points.sort_by_key(|p| p.timestamp_ms);
            points.dedup_by_key(|p| p.timestamp_ms);
            points.extend_from_slice(&series.points);
            Series {
                query: series.query.clone(),
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    fn query(id: &str, period_secs: u32) -> MetricQuery {
        MetricQuery {
            id: id.to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: id.to_owned(),
            dimensions: BTreeMap::new(),
            statistic: "Average".to_owned(),
            period_secs,
            expression: None,
        }
    }

    fn points(from_ms: i64, n: i64, step_ms: i64) -> Vec<Datapoint> {
        (0..n)
            .map(|k| Datapoint {
                timestamp_ms: from_ms + k * step_ms,
                value: k as f64,
            })
            .collect()
    }

    #[test]
    fn span_is_whole_hours_within_the_days_and_ends_at_the_window() {
        let now = 1_700_000_012_345;
        let window_start = now - 3_600_000;
        let (start, end) = span(now, window_start, 15).expect("15 days");
        assert_eq!(end, window_start);
        assert_eq!(start % 3_600_000, 0);
        assert!(
            start >= now - 15 * DAY_MS + 60_000,
            "a minute inside 15 days at least"
        );
        assert!(
            start - (now - 15 * DAY_MS) <= 3_660_000,
            "at most an hour and a minute short"
        );
        // Aligned down to 300 s (60 s and 300 s in one call), it stays.
        assert_eq!(start % 300_000, 0);
        // Exactly on an hour once the minute is added: that hour.
        let on_the_hour = 15 * DAY_MS + 3_600_000 * 10 - 60_000;
        assert_eq!(
            span(on_the_hour, on_the_hour, 15).map(|(s, _)| s),
            Some(3_600_000 * 10)
        );
        assert_eq!(span(now, window_start, 0), None);
        // A window longer than the history asked for leaves nothing to read.
        assert_eq!(span(now, now - 2 * DAY_MS, 1), None);
    }

    #[test]
    fn queries_are_read_at_one_minute_at_least() {
        let asked = queries(&[query("fine", 10), query("coarse", 300)]);
        assert_eq!(asked[0].period_secs, 60);
        assert_eq!(asked[1].period_secs, 300);
        assert_eq!(asked[0].id, "fine");
    }

    #[test]
    fn fifteen_days_of_seven_metrics_take_two_pages() {
        let qs: Vec<MetricQuery> = (0..7).map(|i| query(&format!("m{i}"), 60)).collect();
        let (points, pages) = size(&qs, 0, 15 * DAY_MS);
        assert_eq!(points, 7 * 21_600);
        assert_eq!(pages, 2);
        assert_eq!(size(&qs[..4], 0, 15 * DAY_MS), (86_400, 1));
    }

    #[test]
    fn prepend_puts_history_before_the_window_once() {
        let q = query("rate", 60);
        let window = vec![Series {
            query: q.clone(),
            points: points(600_000, 5, 60_000),
        }];
        // History overlapping the window's first two periods, out of order
        // and with a repeated timestamp.
        let mut past = points(0, 12, 60_000);
        past.reverse();
        past.push(past[0]);
        let history = vec![Series {
            query: q.clone(),
            points: past,
        }];
        let merged = prepend(&history, &window);
        let stamps: Vec<i64> = merged[0].points.iter().map(|p| p.timestamp_ms).collect();
        let expected: Vec<i64> = (0..15).map(|k| k * 60_000).collect();
        assert_eq!(stamps, expected);
        // The window's own values are kept where both had the period.
        assert_eq!(merged[0].points[10].value, 0.0);
        assert_eq!(merged[0].points[9].value, 9.0);
        assert_eq!(merged[0].query, q);
    }

    #[test]
    fn prepend_without_history_keeps_the_window() {
        let window = vec![Series {
            query: query("rate", 60),
            points: points(0, 3, 60_000),
        }];
        assert_eq!(prepend(&[], &window), window);
    }

    /// A source that records what it was asked and answers every period.
    struct Recording(Mutex<Vec<(Vec<u32>, i64, i64)>>);

    #[async_trait]
    impl MetricSource for Recording {
        async fn fetch(
            &self,
            queries: &[MetricQuery],
            start_ms: i64,
            end_ms: i64,
        ) -> Result<Vec<Series>, MetricsError> {
            self.0.lock().unwrap().push((
                queries.iter().map(|q| q.period_secs).collect(),
                start_ms,
                end_ms,
            ));
            Ok(queries
                .iter()
                .map(|q| Series {
                    query: q.clone(),
                    points: points(start_ms, 3, i64::from(q.period_secs) * 1000),
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn read_asks_once_at_the_history_periods() {
        let source = Recording(Mutex::new(Vec::new()));
        let series = read(&source, &[query("a", 10), query("b", 60)], 0, DAY_MS)
            .await
            .expect("read");
        assert_eq!(series.len(), 2);
        assert_eq!(
            *source.0.lock().unwrap(),
            vec![(vec![60, 60], 0, DAY_MS)],
            "one fetch over the whole span, paged by the source"
        );
    }
}
