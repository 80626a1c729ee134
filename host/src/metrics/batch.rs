//! Batches the metric queries of many controllers into few GetMetricData calls.
//!
//! Every application has its own controller task, and each asks for its own
//! metrics on its own tick. Ticks of one agent tend to fall together, and a
//! GetMetricData call costs the same for 1 query as for 500, so a
//! [`BatchingSource`] holds the first request of a batch for a short window
//! (20 ms by default), merges every request that arrives meanwhile into one
//! fetch from the inner source over the union of their windows (earliest
//! start, latest end), and hands each caller only its own series, trimmed to
//! its own window, in its own order. Identical queries of different callers
//! are fetched once. The inner source splits the merged queries by its own
//! per-call limit.
//!
//! A failed merged fetch fails every request of the batch only when the
//! failure cannot be any one caller's: throttling, 5xx, network errors. A
//! failure that may come from one caller's queries (a request refused as
//! invalid, a metric the agent may not read, a query the service failed
//! alone: [`MetricsError::Invalid`], [`MetricsError::Permission`],
//! [`MetricsError::Query`]) is not visited on the others: each request
//! of the batch is then fetched on its own (a few at a time), so only the
//! caller whose queries are at fault gets the error. The queries of a
//! request that then fails on its own are remembered as suspect: while they
//! are, that request is fetched apart from the start, so one bad
//! application costs one extra call per batch, not one per application.
//! A suspect request that succeeds on its own is merged again.
//!
//! Only requests of comparable windows are merged: a request whose window
//! would stretch a group's span past twice its shortest window and an hour
//! beyond it (see `fits`) is fetched in a group of its own. Without that,
//! one application's long read (a policy's 15 days of history, an hourly
//! metric's ten hours) would make every other application's queries of
//! that batch fetch the whole span too: thousands of datapoints each, many
//! pages, and every caller waiting for them.
//!
//! The batching runs in one tokio task, started on the first fetch (so a
//! source can be built outside a runtime) and stopped when the source is
//! dropped. It gathers batches and hands each group to a task of its own,
//! up to [`FETCHES_IN_FLIGHT`] at once, so that a slow fetch (a long read,
//! an answer the SDK retries after throttling) does not hold the batches
//! of the applications that fall due while it runs. It waits on tokio
//! time, so it runs unchanged on a paused clock.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{MetricQuery, MetricSource, MetricsError, Series};

/// How long the first request of a batch waits for others by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(20);

/// Bound of the request queue; callers wait for room beyond it.
const QUEUE_CAPACITY: usize = 1024;

/// How many requests of a failed batch are fetched on their own at once:
/// enough that a large batch is not served one round trip at a time, few
/// enough not to spend the account's GetMetricData call rate in a burst.
const APART_CONCURRENCY: usize = 4;

/// How many merged fetches run at once. A new batch waits (queued, not
/// dropped) only while this many are in flight; one is enough to keep
/// the applications' ticks flowing past a slow fetch, a few keep a burst
/// from spending the account's GetMetricData call rate at once.
pub const FETCHES_IN_FLIGHT: usize = 4;

/// The slack a group's span may have beyond its shortest window: twice
/// that window, or that window and an hour, whichever is longer.
const SPAN_SLACK_MS: i64 = 3_600_000;

/// One caller's request and where its answer goes.
struct Request {
    queries: Vec<MetricQuery>,
    start_ms: i64,
    end_ms: i64,
    reply: oneshot::Sender<Result<Vec<Series>, MetricsError>>,
}

/// A [`MetricSource`] that merges concurrent fetches into one fetch of an
/// inner source. See the module documentation.
pub struct BatchingSource {
    inner: Arc<dyn MetricSource>,
    window: Duration,
    sender: OnceLock<mpsc::Sender<Request>>,
}

impl std::fmt::Debug for BatchingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingSource")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl BatchingSource {
    /// Batches fetches to `inner` with the [`DEFAULT_WINDOW`].
    pub fn new<S: MetricSource + 'static>(inner: S) -> Self {
        Self::with_window(Arc::new(inner), DEFAULT_WINDOW)
    }

    /// Batches fetches to a shared `inner`, holding the first request of each
    /// batch for `window` (zero merges only requests already queued).
    pub fn with_window(inner: Arc<dyn MetricSource>, window: Duration) -> Self {
        Self {
            inner,
            window,
            sender: OnceLock::new(),
        }
    }

    /// The queue to the batching task, which is started on first use.
    fn sender(&self) -> &mpsc::Sender<Request> {
        self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(run_batches(self.inner.clone(), self.window, receiver));
            sender
        })
    }
}

#[async_trait]
impl MetricSource for BatchingSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            queries: queries.to_vec(),
            start_ms,
            end_ms,
            reply,
        };
        let stopped = || MetricsError::Source("the metric batching task has stopped".into());
        self.sender().send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The batching task: collects a batch, splits it into groups of
/// comparable windows, hands each group's fetch to a task of its own (at
/// most [`FETCHES_IN_FLIGHT`] at once), and repeats until every sender is
/// gone; then waits for the fetches in flight.
async fn run_batches(
    inner: Arc<dyn MetricSource>,
    window: Duration,
    mut receiver: mpsc::Receiver<Request>,
) {
    let suspects = Arc::new(Mutex::new(HashSet::new()));
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + window;
        loop {
            tokio::select! {
                biased;
                request = receiver.recv() => match request {
                    Some(request) => batch.push(request),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Requests already queued at the deadline join too: they cost nothing
        // to add, and waiting for the next batch would cost them a window.
        while let Ok(request) = receiver.try_recv() {
            batch.push(request);
        }
        for group in by_window(batch) {
            while in_flight.try_join_next().is_some() {}
            if in_flight.len() >= FETCHES_IN_FLIGHT {
                in_flight.join_next().await;
            }
            let (inner, suspects) = (inner.clone(), suspects.clone());
            in_flight.spawn(async move { serve(&inner, group, &suspects).await });
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Whether a group of requests whose windows span `start_ms..end_ms`, the
/// shortest of them `shortest_ms` long, may be fetched over that span:
/// at most twice the shortest window, or the shortest window and an hour
/// ([`SPAN_SLACK_MS`]), whichever is longer. Each query of the group then
/// fetches at most that much more than its caller asked for.
fn fits(start_ms: i64, end_ms: i64, shortest_ms: i64) -> bool {
    let slack = shortest_ms.max(SPAN_SLACK_MS);
    end_ms.saturating_sub(start_ms) <= shortest_ms.saturating_add(slack)
}

/// Splits `batch` into groups whose merged span [`fits`]: shortest
/// windows first, each request joining the first group it fits in, so
/// that the evaluations' windows of one tick are one group and a long
/// read goes alone (or with the reads like it).
fn by_window(mut batch: Vec<Request>) -> Vec<Vec<Request>> {
    batch.sort_by_key(|request| request.end_ms.saturating_sub(request.start_ms));
    // Per group: its span, its shortest window, its requests.
    let mut groups: Vec<(i64, i64, i64, Vec<Request>)> = Vec::new();
    for request in batch {
        let length = request.end_ms.saturating_sub(request.start_ms);
        let joined = groups.iter_mut().find(|(start, end, shortest, _)| {
            fits(
                (*start).min(request.start_ms),
                (*end).max(request.end_ms),
                *shortest,
            )
        });
        match joined {
            Some((start, end, _, requests)) => {
                *start = (*start).min(request.start_ms);
                *end = (*end).max(request.end_ms);
                requests.push(request);
            }
            None => groups.push((request.start_ms, request.end_ms, length, vec![request])),
        }
    }
    groups
        .into_iter()
        .map(|(_, _, _, requests)| requests)
        .collect()
}

/// A query as fetched: the configured id is the caller's name for the
/// metric, not part of what is fetched.
fn fetch_key(query: &MetricQuery) -> MetricQuery {
    MetricQuery {
        id: String::new(),
        ..query.clone()
    }
}

/// Answers a batch: requests holding a `suspects` query are fetched apart,
/// the rest in one merged fetch, itself split apart when it fails in a way
/// that may be one caller's fault. `suspects` learns from every request
/// fetched on its own.
async fn serve(
    inner: &Arc<dyn MetricSource>,
    batch: Vec<Request>,
    suspects: &Mutex<HashSet<MetricQuery>>,
) {
    // Never held across an await: other groups' fetches share it.
    let suspects = || suspects.lock().unwrap_or_else(PoisonError::into_inner);
    let (mut apart, together): (Vec<Request>, Vec<Request>) = {
        let known = suspects();
        batch.into_iter().filter(still_asked).partition(|request| {
            request
                .queries
                .iter()
                .any(|query| known.contains(&fetch_key(query)))
        })
    };
    match serve_merged(inner, together).await {
        Merged::Answered => {}
        Merged::Refused(keys) => suspects().extend(keys),
        Merged::Split(requests) => apart.extend(requests),
    }
    let outcomes = serve_apart(inner, apart).await;
    // A request that failed on its own while others were answered failed
    // for its own queries, whatever the class (GetMetricData failing
    // every query of a call is a `Source` error, though the queries were
    // one caller's); with none answered, it may be the service's.
    let some_answered = outcomes
        .iter()
        .any(|(_, outcome)| matches!(outcome, Outcome::Fetched));
    for (keys, outcome) in outcomes {
        let mut suspects = suspects();
        match outcome {
            Outcome::Fetched => keys.iter().for_each(|key| {
                suspects.remove(key);
            }),
            Outcome::Refused => suspects.extend(keys),
            Outcome::Broken if some_answered => suspects.extend(keys),
            Outcome::Broken | Outcome::Failed => {}
        }
    }
}

/// Whether the caller of `request` still waits for its answer: one whose
/// read was given up (its controller stopped, or restarted by a reload)
/// costs no fetch, nor a fetch slot the other applications wait for.
fn still_asked(request: &Request) -> bool {
    !request.reply.is_closed()
}

/// What [`serve_merged`] did with its batch.
enum Merged {
    /// Every request was answered.
    Answered,
    /// The lone request was answered with a refusal only its own queries
    /// can cause: these fetch keys are suspect.
    Refused(Vec<MetricQuery>),
    /// The merged fetch of several requests failed in a way one of them may
    /// cause: none was answered; fetch them apart.
    Split(Vec<Request>),
}

/// Fetches the union of `batch`'s requests once and answers each request,
/// unless that fails in a way one of several callers may cause (see
/// [`Merged`]).
async fn serve_merged(inner: &Arc<dyn MetricSource>, batch: Vec<Request>) -> Merged {
    if batch.is_empty() {
        return Merged::Answered;
    }
    let mut merged: Vec<MetricQuery> = Vec::new();
    let mut index_of: HashMap<MetricQuery, usize> = HashMap::new();
    // For each request, the merged index of each of its queries.
    let mut positions: Vec<Vec<usize>> = Vec::with_capacity(batch.len());
    for request in &batch {
        let mut indices = Vec::with_capacity(request.queries.len());
        for query in &request.queries {
            let index = *index_of.entry(fetch_key(query)).or_insert_with(|| {
                merged.push(query.clone());
                merged.len() - 1
            });
            indices.push(index);
        }
        positions.push(indices);
    }
    let start_ms = batch.iter().map(|r| r.start_ms).min().unwrap_or(0);
    let end_ms = batch.iter().map(|r| r.end_ms).max().unwrap_or(0);

    let answer = fetch_checked(inner.as_ref(), &merged, start_ms, end_ms).await;
    let refused = answer.as_ref().is_err_and(may_be_one_callers);
    if refused && batch.len() > 1 {
        tracing::debug!(
            message = "A merged metric fetch failed in a way one caller may cause; fetching each caller apart.",
            callers = batch.len(),
        );
        return Merged::Split(batch);
    }
    for (request, indices) in batch.into_iter().zip(positions) {
        let reply = match &answer {
            Ok(series) => Ok(request
                .queries
                .into_iter()
                .zip(indices)
                .map(|(query, index)| Series {
                    query,
                    points: series[index]
                        .points
                        .iter()
                        .filter(|p| (request.start_ms..request.end_ms).contains(&p.timestamp_ms))
                        .copied()
                        .collect(),
                })
                .collect()),
            Err(error) => Err(copy_error(error)),
        };
        // A caller that gave up (its task was cancelled) needs no answer.
        let _ = request.reply.send(reply);
    }
    if refused {
        Merged::Refused(merged.iter().map(fetch_key).collect())
    } else {
        Merged::Answered
    }
}

/// Whether a failed fetch may be due to some of its queries rather than to
/// the service or the network, so that the same queries split between
/// callers may fail for some and succeed for the others.
fn may_be_one_callers(error: &MetricsError) -> bool {
    match error {
        MetricsError::Invalid(_) | MetricsError::Permission(_) | MetricsError::Query(_) => true,
        MetricsError::Throttled(_) | MetricsError::Source(_) => false,
    }
}

/// How a request fetched on its own fared.
enum Outcome {
    /// It was answered: its queries are fine.
    Fetched,
    /// It was refused in a way only its queries can cause.
    Refused,
    /// It failed as the service or the network fails (a 5xx, a reset):
    /// its own fault only if other requests fetched apart with it were
    /// answered.
    Broken,
    /// Anything else (throttling): nothing learnt.
    Failed,
}

/// Fetches every request of `batch` on its own, at most
/// [`APART_CONCURRENCY`] at a time, answers each with its own result, and
/// says how each fared (by its fetch keys).
async fn serve_apart(
    inner: &Arc<dyn MetricSource>,
    batch: Vec<Request>,
) -> Vec<(Vec<MetricQuery>, Outcome)> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut waiting = batch.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < APART_CONCURRENCY {
            let Some(request) = waiting.by_ref().find(still_asked) else {
                break;
            };
            let inner = inner.clone();
            running.spawn(async move {
                let (start_ms, end_ms) = (request.start_ms, request.end_ms);
                // Trimmed to the caller's window, as a merged answer is.
                let answer = fetch_checked(inner.as_ref(), &request.queries, start_ms, end_ms)
                    .await
                    .map(|series| {
                        series
                            .into_iter()
                            .map(|mut s| {
                                s.points
                                    .retain(|p| (start_ms..end_ms).contains(&p.timestamp_ms));
                                s
                            })
                            .collect()
                    });
                let outcome = match &answer {
                    Ok(_) => Outcome::Fetched,
                    Err(error) if may_be_one_callers(error) => Outcome::Refused,
                    Err(MetricsError::Source(_)) => Outcome::Broken,
                    Err(_) => Outcome::Failed,
                };
                let keys = request.queries.iter().map(fetch_key).collect();
                let _ = request.reply.send(answer);
                (keys, outcome)
            });
        }
        match running.join_next().await {
            Some(Ok(done)) => outcomes.push(done),
            // A panicked fetch dropped its reply: its caller hears that the
            // batching failed, and nothing is learnt.
            Some(Err(_)) => {}
            None => break,
        }
    }
    outcomes
}

/// One fetch of the inner source, checked to answer one series per query.
async fn fetch_checked(
    inner: &dyn MetricSource,
    queries: &[MetricQuery],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Series>, MetricsError> {
    match inner.fetch(queries, start_ms, end_ms).await {
        Ok(series) if series.len() == queries.len() => Ok(series),
        Ok(series) => Err(MetricsError::Source(format!(
            "the metric source answered {} series for {} queries",
            series.len(),
            queries.len()
        ))),
        Err(error) => Err(error),
    }
}

/// The same error for another caller ([`MetricsError`] holds no source, so
/// nothing is lost).
fn copy_error(error: &MetricsError) -> MetricsError {
    match error {
        MetricsError::Throttled(message) => MetricsError::Throttled(message.clone()),
        MetricsError::Source(message) => MetricsError::Source(message.clone()),
        MetricsError::Permission(message) => MetricsError::Permission(message.clone()),
        MetricsError::Invalid(message) => MetricsError::Invalid(message.clone()),
        MetricsError::Query(message) => MetricsError::Query(message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metrics::Datapoint;

    type MakeError = fn() -> MetricsError;

    /// An inner source that records its calls and answers every query with
    /// one point per minute over the window, valued by metric name so that
    /// a mix-up between callers shows.
    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        seen: Mutex<Vec<(usize, i64, i64)>>,
        fail: Option<MakeError>,
        /// Fails any fetch that holds a query of this metric name, with
        /// that error, as CloudWatch refuses a whole call for one bad query.
        reject: Option<(&'static str, MakeError)>,
        /// Stops the rejecting (the query was fixed, the permission granted).
        healed: std::sync::atomic::AtomicBool,
        /// Answers a fetch that holds a query of this metric name only
        /// after this long (tokio time): a slow call.
        slow: Option<(&'static str, Duration)>,
        /// Fails the queries of this metric name as GetMetricData's
        /// per-query InternalError does: `Query` when other queries of the
        /// call are answered, `Source` when none is.
        internal: Option<&'static str>,
        /// Answers from the start aligned down to 5 minutes, as CloudWatch
        /// answers a call whose start it aligns: points before the start.
        aligned: bool,
    }

    fn value_of(query: &MetricQuery) -> f64 {
        query
            .metric_name
            .trim_start_matches('m')
            .parse()
            .unwrap_or(f64::NAN)
    }

    #[async_trait]
    impl MetricSource for Fake {
        async fn fetch(
            &self,
            queries: &[MetricQuery],
            start_ms: i64,
            end_ms: i64,
        ) -> Result<Vec<Series>, MetricsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.seen
                .lock()
                .expect("lock")
                .push((queries.len(), start_ms, end_ms));
            if let Some((name, delay)) = self.slow
                && queries.iter().any(|q| q.metric_name == name)
            {
                tokio::time::sleep(delay).await;
            }
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            if let Some((name, error)) = self.reject
                && !self.healed.load(Ordering::SeqCst)
                && queries.iter().any(|q| q.metric_name == name)
            {
                return Err(error());
            }
            if let Some(name) = self.internal
                && !self.healed.load(Ordering::SeqCst)
                && queries.iter().any(|q| q.metric_name == name)
            {
                let text = format!("InternalError for {name}");
                return Err(if queries.iter().all(|q| q.metric_name == name) {
                    MetricsError::Source(text)
                } else {
                    MetricsError::Query(text)
                });
            }
            let first_ms = if self.aligned {
                start_ms.div_euclid(300_000) * 300_000
            } else {
                start_ms
            };
            Ok(queries
                .iter()
                .map(|q| Series {
                    query: q.clone(),
                    points: (first_ms..end_ms)
                        .step_by(60_000)
                        .map(|timestamp_ms| Datapoint {
                            timestamp_ms,
                            value: value_of(q),
                        })
                        .collect(),
                })
                .collect())
        }
    }

    fn query(id: &str, metric: usize) -> MetricQuery {
        MetricQuery {
            id: id.into(),
            namespace: "AWS/KinesisAnalytics".into(),
            metric_name: format!("m{metric}"),
            dimensions: Default::default(),
            statistic: "Maximum".into(),
            period_secs: 60,
            expression: None,
        }
    }

    fn batching(fake: Fake) -> (Arc<Fake>, BatchingSource) {
        let fake = Arc::new(fake);
        let source = BatchingSource::with_window(fake.clone(), DEFAULT_WINDOW);
        (fake, source)
    }

    /// One tick of three callers at once: `cpu` of metric 1, `odd` of
    /// metric 666 (the one a test makes fail), `cpu` of metric 3. The two
    /// others must be answered; whether the third was, then a second on.
    async fn three_callers(source: &BatchingSource) -> bool {
        let a = [query("cpu", 1)];
        let bad = [query("odd", 666)];
        let c = [query("cpu", 3)];
        let (ra, rbad, rc) = tokio::join!(
            source.fetch(&a, 0, 60_000),
            source.fetch(&bad, 0, 60_000),
            source.fetch(&c, 0, 60_000),
        );
        assert_eq!(ra.expect("a")[0].points[0].value, 1.0);
        assert_eq!(rc.expect("c")[0].points[0].value, 3.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        rbad.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_gone_before_its_batch_is_served_costs_no_fetch() {
        let (fake, source) = batching(Fake::default());
        let a = [query("cpu", 1), query("lag", 3)];
        let b = [query("cpu", 2)];
        // `a` gives up within the batching window (its controller
        // stopped); `b` waits for its answer.
        let given_up = tokio::time::timeout(DEFAULT_WINDOW / 2, source.fetch(&a, 0, 300_000));
        let (gone, kept) = tokio::join!(given_up, source.fetch(&b, 0, 300_000));
        assert!(gone.is_err(), "given up");
        assert_eq!(kept.expect("b")[0].query.id, "cpu");
        // One call, for `b`'s one query: none of `a`'s was fetched.
        assert_eq!(fake.seen.lock().expect("lock")[..], [(1, 0, 300_000)]);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_inner_call() {
        let (fake, source) = batching(Fake::default());
        let a = [query("cpu", 1)];
        let b = [query("cpu", 2), query("lag", 3)];
        let c = [query("cpu", 4)];
        let (ra, rb, rc) = tokio::join!(
            source.fetch(&a, 0, 300_000),
            source.fetch(&b, 0, 300_000),
            source.fetch(&c, 0, 300_000),
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        let (ra, rb, rc) = (ra.expect("a"), rb.expect("b"), rc.expect("c"));
        assert_eq!(ra[0].points[0].value, 1.0);
        assert_eq!(rb[0].points[0].value, 2.0);
        assert_eq!(rb[1].query.id, "lag");
        assert_eq!(rb[1].points[0].value, 3.0);
        assert_eq!(rc[0].points[0].value, 4.0);
        assert_eq!(rc[0].points.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_further_apart_than_the_window_make_separate_calls() {
        let (fake, source) = batching(Fake::default());
        source
            .fetch(&[query("a", 1)], 0, 60_000)
            .await
            .expect("first");
        tokio::time::sleep(Duration::from_secs(1)).await;
        source
            .fetch(&[query("a", 1)], 0, 60_000)
            .await
            .expect("second");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn many_queries_come_back_to_their_callers_in_order() {
        let (fake, source) = batching(Fake::default());
        // 1200 distinct metrics over three callers, each in its own order.
        let first: Vec<_> = (0..400).map(|i| query(&format!("x{i}"), i)).collect();
        let second: Vec<_> = (400..800)
            .rev()
            .map(|i| query(&format!("y{i}"), i))
            .collect();
        let third: Vec<_> = (800..1200).map(|i| query(&format!("z{i}"), i)).collect();
        let (r1, r2, r3) = tokio::join!(
            source.fetch(&first, 0, 120_000),
            source.fetch(&second, 0, 120_000),
            source.fetch(&third, 0, 120_000),
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert_eq!(fake.seen.lock().expect("lock")[0].0, 1200);
        for (asked, answered) in [(first, r1), (second, r2), (third, r3)] {
            let answered = answered.expect("answer");
            assert_eq!(answered.len(), asked.len());
            for (q, s) in asked.iter().zip(&answered) {
                assert_eq!(&s.query, q);
                assert_eq!(s.points.len(), 2);
                assert!(s.points.iter().all(|p| p.value == value_of(q)));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn identical_queries_of_different_callers_are_fetched_once() {
        let (fake, source) = batching(Fake::default());
        let a = [query("cpu", 7)];
        let b = [query("load", 7), query("other", 8)];
        let (ra, rb) = tokio::join!(source.fetch(&a, 0, 60_000), source.fetch(&b, 0, 60_000));
        assert_eq!(fake.seen.lock().expect("lock")[0].0, 2);
        assert_eq!(ra.expect("a")[0].query.id, "cpu");
        let rb = rb.expect("b");
        assert_eq!(rb[0].query.id, "load");
        assert_eq!(rb[0].points[0].value, 7.0);
        assert_eq!(rb[1].points[0].value, 8.0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_caller_gets_only_its_own_window() {
        let (fake, source) = batching(Fake::default());
        let a = [query("a", 1)];
        let b = [query("b", 1)];
        let (short, long) = tokio::join!(
            source.fetch(&a, 240_000, 360_000),
            source.fetch(&b, 0, 600_000),
        );
        assert_eq!(fake.seen.lock().expect("lock")[..], [(1, 0, 600_000)]);
        let times = |s: &[Series]| {
            s[0].points
                .iter()
                .map(|p| p.timestamp_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(&short.expect("short")), [240_000, 300_000]);
        assert_eq!(times(&long.expect("long")).len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_read_is_fetched_apart_from_the_ticks_windows() {
        const DAY_MS: i64 = 86_400_000;
        let (fake, source) = batching(Fake::default());
        let now = 15 * DAY_MS;
        let (a, b, history, hourly) = (
            [query("cpu", 1)],
            [query("cpu", 2)],
            [query("records_in", 3)],
            [query("hourly", 4)],
        );
        // Two evaluations' 20-minute windows (ending a few ms apart), a
        // policy's 15 days of history and a 10-hour window, all at once.
        let (ra, rb, rh, rt) = tokio::join!(
            source.fetch(&a, now - 1_200_000, now),
            source.fetch(&b, now - 1_200_000 + 5, now + 5),
            source.fetch(&history, 0, now - 1_200_000),
            source.fetch(&hourly, now - 36_000_000, now),
        );
        let mut seen = fake.seen.lock().expect("lock").clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                (1, 0, now - 1_200_000),
                (1, now - 36_000_000, now),
                (2, now - 1_200_000, now + 5),
            ],
            "the evaluations' windows are one fetch over their own span"
        );
        assert_eq!(ra.expect("a")[0].points.len(), 20);
        assert_eq!(rb.expect("b")[0].points.len(), 20);
        assert_eq!(rh.expect("history")[0].points.len(), 15 * 1440 - 20);
        assert_eq!(rt.expect("hourly")[0].points.len(), 600);
    }

    #[test]
    fn a_group_spans_at_most_twice_its_shortest_window_or_an_hour_more() {
        let minute = 60_000;
        // Ten minutes merged with up to an hour and ten minutes.
        assert!(fits(0, 70 * minute, 10 * minute));
        assert!(!fits(0, 70 * minute + 1, 10 * minute));
        // Ten hours merged with up to twenty.
        assert!(fits(0, 1200 * minute, 600 * minute));
        assert!(!fits(0, 1200 * minute + 1, 600 * minute));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_fetch_does_not_hold_the_batches_after_it() {
        let (fake, source) = batching(Fake {
            slow: Some(("m9", Duration::from_secs(30))),
            ..Fake::default()
        });
        let source = Arc::new(source);
        let started = Instant::now();
        let slow = tokio::spawn({
            let source = source.clone();
            async move {
                let answer = source.fetch(&[query("slow", 9)], 0, 600_000).await;
                (answer, started.elapsed())
            }
        });
        // The next applications fall due while the slow fetch runs.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for metric in 1..=3 {
            let asked = Instant::now();
            let answer = source.fetch(&[query("cpu", metric)], 0, 600_000).await;
            assert_eq!(answer.expect("answered")[0].points[0].value, metric as f64);
            assert!(
                asked.elapsed() <= DEFAULT_WINDOW,
                "a fetch waited {:?} behind a slow one",
                asked.elapsed()
            );
        }
        let (answer, took) = slow.await.expect("the slow caller");
        assert_eq!(answer.expect("slow answered")[0].points[0].value, 9.0);
        assert!(took >= Duration::from_secs(30));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_reaches_every_caller_of_the_batch() {
        let (fake, source) = batching(Fake {
            fail: Some(|| MetricsError::Throttled("Throttling: slow down".into())),
            ..Fake::default()
        });
        let a = [query("a", 1)];
        let b = [query("b", 2)];
        let (ra, rb) = tokio::join!(source.fetch(&a, 0, 60_000), source.fetch(&b, 0, 60_000));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        for result in [ra, rb] {
            match result {
                Err(MetricsError::Throttled(message)) => assert!(message.contains("slow down")),
                other => panic!("expected Throttled, got {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_callers_bad_query_fails_only_that_caller() {
        let errors: [MakeError; 3] = [
            || MetricsError::Invalid("InvalidParameterValue: bad stat".into()),
            || MetricsError::Permission("AccessDenied: not for you".into()),
            || MetricsError::Query("InternalError for query q1".into()),
        ];
        for error in errors {
            let (fake, source) = batching(Fake {
                reject: Some(("m666", error)),
                ..Fake::default()
            });
            let a = [query("cpu", 1)];
            let bad = [query("cpu", 2), query("odd", 666)];
            let c = [query("cpu", 3), query("lag", 4)];
            let (ra, rbad, rc) = tokio::join!(
                source.fetch(&a, 0, 120_000),
                source.fetch(&bad, 0, 120_000),
                source.fetch(&c, 60_000, 180_000),
            );
            let ra = ra.expect("the first caller is not at fault");
            assert_eq!(ra[0].points.len(), 2);
            assert!(ra[0].points.iter().all(|p| p.value == 1.0));
            let rc = rc.expect("the third caller is not at fault");
            assert_eq!(rc[0].query.id, "cpu");
            assert_eq!(rc[1].query.id, "lag");
            assert_eq!(rc[1].points[0].value, 4.0);
            assert_eq!(rc[1].points[0].timestamp_ms, 60_000);
            match (rbad, error()) {
                (Err(MetricsError::Invalid(got)), MetricsError::Invalid(want))
                | (Err(MetricsError::Permission(got)), MetricsError::Permission(want))
                | (Err(MetricsError::Query(got)), MetricsError::Query(want)) => {
                    assert_eq!(got, want)
                }
                (other, want) => panic!("expected {want:?}, got {other:?}"),
            }
            // One merged call, then one per caller.
            assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_of_the_service_is_not_retried_per_caller() {
        let (fake, source) = batching(Fake {
            fail: Some(|| MetricsError::Source("InternalServiceError: boom".into())),
            ..Fake::default()
        });
        let a = [query("a", 1)];
        let b = [query("b", 2)];
        let (ra, rb) = tokio::join!(source.fetch(&a, 0, 60_000), source.fetch(&b, 0, 60_000));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        for result in [ra, rb] {
            assert!(matches!(result, Err(MetricsError::Source(_))), "{result:?}");
        }
    }

    /// A caller whose queries the service fails every time (its merged
    /// call fails them as `Query`, its own call, where nothing is
    /// answered, as `Source`) is learnt from all the same: once the others
    /// were answered apart, it is fetched apart, at one call a tick, not
    /// split from the others' every tick; healed, it is merged again.
    #[tokio::test(start_paused = true)]
    async fn a_caller_whose_queries_always_fail_is_fetched_apart_until_they_succeed() {
        let (fake, source) = batching(Fake {
            internal: Some("m666"),
            ..Fake::default()
        });
        let round = || three_callers(&source);
        let calls = || fake.calls.load(Ordering::SeqCst);
        // Merged, failed for one query, then each apart.
        assert!(!round().await);
        assert_eq!(calls(), 4);
        // Then the others merged and the failing caller apart, each tick.
        assert!(!round().await);
        assert_eq!(calls(), 6);
        assert!(!round().await);
        assert_eq!(calls(), 8);
        fake.healed.store(true, Ordering::SeqCst);
        assert!(round().await);
        assert_eq!(calls(), 10);
        assert!(round().await);
        assert_eq!(calls(), 11);
    }

    /// Every query of a merged call failed (an outage, `Source`): one
    /// call a tick, never split into one per caller.
    #[tokio::test(start_paused = true)]
    async fn every_query_failed_costs_one_call_a_tick() {
        let (fake, source) = batching(Fake {
            internal: Some("m7"),
            ..Fake::default()
        });
        let a = [query("cpu", 7)];
        let b = [query("lag", 7)];
        for tick in 1..=3 {
            let (ra, rb) = tokio::join!(source.fetch(&a, 0, 60_000), source.fetch(&b, 0, 60_000));
            assert!(matches!(ra, Err(MetricsError::Source(_))), "{ra:?}");
            assert!(matches!(rb, Err(MetricsError::Source(_))), "{rb:?}");
            assert_eq!(fake.calls.load(Ordering::SeqCst), tick);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Fails before stop 57: a caller fetched apart (its queries suspect)
    /// got what the source answered before its start too, where a merged
    /// fetch trims each caller's answer to its window, so the points a
    /// policy saw changed with the batching.
    #[tokio::test(start_paused = true)]
    async fn a_caller_fetched_apart_gets_only_its_own_window_too() {
        let (fake, source) = batching(Fake {
            reject: Some(("m666", || MetricsError::Invalid("bad stat".into()))),
            aligned: true,
            ..Fake::default()
        });
        let times = |s: &[Series]| {
            s[0].points
                .iter()
                .map(|p| p.timestamp_ms)
                .collect::<Vec<_>>()
        };
        let a = [query("a", 1)];
        let bad = [query("odd", 666)];
        let fetch_both = || async {
            tokio::join!(
                source.fetch(&a, 420_000, 540_000),
                source.fetch(&bad, 420_000, 540_000)
            )
        };
        // Merged and refused; then each apart, and `odd` is suspect.
        let (merged, refused) = fetch_both().await;
        assert_eq!(times(&merged.expect("a")), [420_000, 480_000]);
        assert!(refused.is_err());
        fake.healed.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = fake.calls.load(Ordering::SeqCst);
        let (together, apart) = fetch_both().await;
        // `odd` fetched apart from `a` (suspect), each trimmed.
        assert_eq!(fake.calls.load(Ordering::SeqCst), calls + 2);
        assert_eq!(times(&together.expect("a")), [420_000, 480_000]);
        assert_eq!(times(&apart.expect("odd, healed")), [420_000, 480_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_refused_on_its_own_is_fetched_apart_until_it_succeeds() {
        let (fake, source) = batching(Fake {
            reject: Some(("m666", || MetricsError::Invalid("bad stat".into()))),
            ..Fake::default()
        });
        let round = || three_callers(&source);
        let calls = || fake.calls.load(Ordering::SeqCst);
        // Merged, refused, then each apart.
        assert!(!round().await);
        assert_eq!(calls(), 4);
        // The refused caller is now fetched apart from the start.
        assert!(!round().await);
        assert_eq!(calls(), 6);
        // Fixed: it succeeds on its own, and is merged again after that.
        fake.healed.store(true, Ordering::SeqCst);
        assert!(round().await);
        assert_eq!(calls(), 8);
        assert!(round().await);
        assert_eq!(calls(), 9);
        // A lone refused request is suspect at once, at the cost of its
        // one call.
        fake.healed.store(false, Ordering::SeqCst);
        let bad = [query("odd", 666)];
        assert!(source.fetch(&bad, 0, 60_000).await.is_err());
        assert_eq!(calls(), 10);
        assert!(!round().await);
        assert_eq!(calls(), 12);
    }
}
