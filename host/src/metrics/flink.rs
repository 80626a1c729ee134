//! A Flink job's own vertex metrics, read over the JobManager's REST API
//! (`[[application.metric]] source = "flink"`).
//!
//! Flink's REST API answers what the metrics are *now* (each per-second
//! rate is Flink's own moving average, over 60 s by default, for
//! `numRecords*PerSecond` and the `*TimeMsPerSecond` gauges alike), not
//! a history. So each fetch samples every Flink query
//! once, keeps the sample as the datapoint of the period that just ended
//! (the one the alarms judge next), and answers from the samples kept over
//! the fetch window: alarms, interpreters and policies see the same series
//! model as from CloudWatch, one datapoint per evaluation. A period with no
//! evaluation in it has no datapoint (alarms treat it as missing data), so
//! a Flink metric's `period_secs` is best the evaluation interval.
//!
//! A query is `metric_name` over the subtasks of the vertices `vertex`
//! names, with the statistic as Flink's `agg` (`Maximum` = `max`,
//! `Average` = `avg`, `Minimum` = `min`, `Sum` = `sum`) from
//! `GET /jobs/{id}/vertices/{vid}/subtasks/metrics?get=..&agg=max,avg,sum,min`.
//! Over several vertices: the maximum of the maxima, the minimum of the
//! minima, the sum of the sums, and the average weighted by each vertex's
//! parallelism. `pendingRecords` is an operator metric of sources that have
//! it (Kafka, Kinesis), listed as `<operator>.pendingRecords`; it is summed
//! over the operators of the vertex. A metric a vertex does not have, or
//! whose value is NaN (a legacy source thread has no busy time), gives no
//! value for that vertex rather than a wrong one: over several vertices,
//! the statistic is of those that have one, and with none there is no
//! datapoint.
//!
//! Queries of other namespaces go to the fallback source (CloudWatch), so a
//! Flink application can mix both.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{Datapoint, MetricQuery, MetricSource, MetricsError, Series};
use crate::config::FlinkJob;
use crate::flink::{FlinkRest, query_value, segment};
use crate::target::TargetError;

/// The namespace of a query that a `source = "flink"` metric becomes.
pub const NAMESPACE: &str = "flink";
/// The dimension that holds the query's `vertex`.
pub const VERTEX: &str = "vertex";

/// Samples kept per query: far more than any alarm or policy window reads
/// at one sample per evaluation, bounded so memory does not grow.
const MAX_SAMPLES: usize = 1440;

/// One vertex of the job, as the REST API lists it.
#[derive(Debug, Clone)]
struct Vertex {
    id: String,
    name: String,
    parallelism: u64,
    /// No input edge in the job's plan.
    is_source: bool,
    /// Rescaled by the agent: any `maxParallelism` but 1 (a vertex Flink
    /// runs non-parallel, such as a sink's global committer, stays at 1
    /// whatever the agent asks).
    rescaled: bool,
}

/// One vertex's aggregates of one metric over its subtasks.
#[derive(Debug, Clone, Copy)]
struct Aggregates {
    min: f64,
    max: f64,
    avg: f64,
    sum: f64,
    parallelism: u64,
}

/// Reads `source = "flink"` metrics of one job; the rest from `fallback`.
pub struct FlinkMetricSource {
    rest: FlinkRest,
    job: FlinkJob,
    fallback: Arc<dyn MetricSource>,
    /// Query id -> its samples, oldest first.
    samples: Mutex<HashMap<String, VecDeque<Datapoint>>>,
}

impl FlinkMetricSource {
    /// A source of `job`'s metrics at `rest_url`, passing other queries to
    /// `fallback`.
    pub fn new(
        rest_url: impl Into<crate::flink::RestUrl>,
        job: FlinkJob,
        fallback: Arc<dyn MetricSource>,
    ) -> Result<Self, TargetError> {
        Ok(Self {
            rest: FlinkRest::new(rest_url)?,
            job,
            fallback,
            samples: Mutex::new(HashMap::new()),
        })
    }

    /// The job's vertices, with which are sources.
    async fn vertices(&self, job_id: &str) -> Result<Vec<Vertex>, TargetError> {
        job_vertices(&self.rest, job_id).await
    }

    /// The aggregates of `metric` on `vertex`, `None` when it has no such
    /// metric or Flink has no value yet.
    async fn aggregates(
        &self,
        job_id: &str,
        vertex: &Vertex,
        metric: &str,
    ) -> Result<Option<Aggregates>, TargetError> {
        let base = format!(
            "/jobs/{}/vertices/{}/subtasks/metrics",
            segment(job_id),
            segment(&vertex.id)
        );
        // One unknown name empties Flink's whole answer, so a metric is
        // asked for only under the names the vertex lists.
        let listed = self.rest.get(&base).await?;
        let names: Vec<&str> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .filter(|id| {
                if metric == "pendingRecords" {
                    id.ends_with(".pendingRecords")
                } else {
                    *id == metric
                }
            })
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        let answer = self
            .rest
            .get(&format!(
                "{base}?get={}&agg=min,max,avg,sum",
                names
                    .iter()
                    .map(|name| query_value(name))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .await?;
        let number = |v: &Value| {
            match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            }
            .filter(|x| x.is_finite())
        };
        let mut total: Option<Aggregates> = None;
        for m in answer.as_array().into_iter().flatten() {
            let (Some(min), Some(max), Some(avg), Some(sum)) = (
                number(&m["min"]),
                number(&m["max"]),
                number(&m["avg"]),
                number(&m["sum"]),
            ) else {
                continue;
            };
            // Several operators' pendingRecords on one vertex add up.
            total = Some(match total {
                None => Aggregates {
                    min,
                    max,
                    avg,
                    sum,
                    parallelism: vertex.parallelism,
                },
                Some(t) => Aggregates {
                    min: t.min + min,
                    max: t.max + max,
                    avg: t.avg + avg,
                    sum: t.sum + sum,
                    parallelism: t.parallelism,
                },
            });
        }
        Ok(total)
    }

    /// One sample of `query` now, `None` when no vertex has a value.
    async fn sample(
        &self,
        job_id: &str,
        vertices: &[Vertex],
        query: &MetricQuery,
    ) -> Result<Option<f64>, MetricsError> {
        let selector = query
            .dimensions
            .get(VERTEX)
            .map(String::as_str)
            .unwrap_or("all");
        let chosen = choose(vertices, selector, &query.metric_name);
        if chosen.is_empty() {
            return Err(MetricsError::Invalid(format!(
                "metric {:?}: {}",
                query.id,
                no_vertex(selector, vertices)
            )));
        }
        let mut found = Vec::new();
        for vertex in chosen {
            if let Some(a) = self
                .aggregates(job_id, vertex, &query.metric_name)
                .await
                .map_err(metrics_error)?
            {
                found.push(a);
            }
        }
        Ok(combine(&found, &query.statistic))
    }

    /// Samples the Flink queries and answers each from its samples over
    /// `[start_ms, end_ms)`.
    async fn fetch_flink(
        &self,
        queries: &[&MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let job_id = self.rest.job_id(&self.job).await.map_err(metrics_error)?;
        let vertices = self.vertices(&job_id).await.map_err(metrics_error)?;
        let mut values = Vec::with_capacity(queries.len());
        for query in queries {
            values.push(self.sample(&job_id, &vertices, query).await?);
        }
        {
            let mut samples = self.samples()?;
            for (query, value) in queries.iter().zip(values) {
                if let Some(value) = value {
                    let kept = samples.entry(query.id.clone()).or_default();
                    let period_ms = i64::from(query.period_secs.max(1)) * 1000;
                    // The period that just ended: the sample describes the
                    // recent past, and that is the period judged next.
                    let stamp = end_ms.div_euclid(period_ms) * period_ms - period_ms;
                    keep_sample(kept, stamp, value, &query.id);
                }
            }
        }
        self.kept(queries, start_ms, end_ms)
    }

    /// The sample store, locked.
    fn samples(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, VecDeque<Datapoint>>>, MetricsError> {
        self.samples
            .lock()
            .map_err(|_| MetricsError::Source("the Flink sample store was poisoned".into()))
    }

    /// Answers each of the Flink queries from the samples kept for it over
    /// `[start_ms, end_ms)`, sampling nothing.
    fn kept(
        &self,
        queries: &[&MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let samples = self.samples()?;
        let empty = VecDeque::new();
        Ok(queries
            .iter()
            .map(|query| {
                let kept = samples.get(&query.id).unwrap_or(&empty);
                Series {
                    query: (*query).clone(),
                    points: kept
                        .iter()
                        .filter(|p| p.timestamp_ms >= start_ms && p.timestamp_ms < end_ms)
                        .copied()
                        .collect(),
                }
            })
            .collect())
    }
}

/// The statistic over several vertices' aggregates.
fn combine(found: &[Aggregates], statistic: &str) -> Option<f64> {
    if found.is_empty() {
        return None;
    }
    let fold =
        |f: fn(f64, f64) -> f64, pick: fn(&Aggregates) -> f64| found.iter().map(pick).reduce(f);
    // Parallelisms and values are Flink's answer: weights add up as
    // floats (no u64 overflow), and a sum past f64's range is no sample.
    let combined = match statistic {
        "Maximum" => fold(f64::max, |a| a.max),
        "Minimum" => fold(f64::min, |a| a.min),
        "Sum" => fold(|a, b| a + b, |a| a.sum),
        "Average" => {
            let weight: f64 = found.iter().map(|a| a.parallelism.max(1) as f64).sum();
            let weighted: f64 = found
                .iter()
                .map(|a| a.avg * a.parallelism.max(1) as f64)
                .sum();
            Some(weighted / weight)
        }
        _ => None,
    };
    combined.filter(|v| v.is_finite())
}

/// The vertices of the job `job_id`, with which are sources.
async fn job_vertices(rest: &FlinkRest, job_id: &str) -> Result<Vec<Vertex>, TargetError> {
    let job = rest.get(&format!("/jobs/{}", segment(job_id))).await?;
    let with_inputs: Vec<&str> = job["plan"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["inputs"].as_array().is_some_and(|i| !i.is_empty()))
        .filter_map(|n| n["id"].as_str())
        .collect();
    Ok(job["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let id = v["id"].as_str()?.to_owned();
            Some(Vertex {
                is_source: !with_inputs.contains(&id.as_str()),
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                parallelism: v["parallelism"].as_u64().unwrap_or(0),
                rescaled: v["maxParallelism"].as_u64() != Some(1),
                id,
            })
        })
        .collect())
}

/// For each `(metric id, vertex selector)` of `selectors`, whether the
/// selector matches a vertex of `job` at `rest_url` now: `None` when it
/// does, else what is wrong and what is valid (the job's vertex names).
/// The check `validate --environment` makes, so that a `vertex` naming
/// none of the job's vertices is found before `run` fails every
/// evaluation on it.
pub async fn unmatched_vertices(
    rest_url: impl Into<crate::flink::RestUrl>,
    job: &FlinkJob,
    selectors: &[(String, String)],
) -> Result<Vec<(String, Option<String>)>, TargetError> {
    let rest = FlinkRest::new(rest_url)?;
    let job_id = rest.job_id(job).await?;
    let vertices = job_vertices(&rest, &job_id).await?;
    Ok(selectors
        .iter()
        .map(|(id, selector)| {
            let unmatched = choose(&vertices, selector, "")
                .is_empty()
                .then(|| no_vertex(selector, &vertices));
            (id.clone(), unmatched)
        })
        .collect())
}

/// The vertices `selector` (a metric's `vertex`) names for `metric`:
/// every one for `"all"`, those without inputs for `"source"`, else those
/// whose name starts with it.
///
/// For a time metric (`busyTimeMsPerSecond`, `backPressuredTimeMsPerSecond`,
/// `idleTimeMsPerSecond`), `"all"` and `"source"` leave out the vertices
/// Flink runs non-parallel (`maxParallelism` 1), unless no other is
/// chosen: no rescale changes such a vertex's capacity, so how busy it is
/// says nothing of the job's size, and a busy one (a global committer at
/// 1000 ms/s) read as the job's Maximum would scale the job out to its
/// limit for nothing. Records and `pendingRecords` count every vertex
/// chosen: a non-parallel source's records go through the vertices the
/// agent rescales. A prefix naming a vertex reads it.
fn choose<'a>(vertices: &'a [Vertex], selector: &str, metric: &str) -> Vec<&'a Vertex> {
    let picked = |rescaled_only: bool| -> Vec<&'a Vertex> {
        vertices
            .iter()
            .filter(|v| !rescaled_only || v.rescaled)
            .filter(|v| match selector {
                "all" => true,
                "source" => v.is_source,
                prefix => v.name.starts_with(prefix),
            })
            .collect()
    };
    let time_metric = metric.ends_with("TimeMsPerSecond");
    match selector {
        "all" | "source" if time_metric => {
            let rescaled = picked(true);
            if rescaled.is_empty() {
                picked(false)
            } else {
                rescaled
            }
        }
        _ => picked(false),
    }
}

/// Why `selector` chose no vertex, with the job's vertex names.
fn no_vertex(selector: &str, vertices: &[Vertex]) -> String {
    let names: Vec<&str> = vertices.iter().map(|v| v.name.as_str()).collect();
    format!(
        "vertex {selector:?} matches none of the job's vertices {names:?} \
         (valid: \"all\", \"source\", or the start of a vertex name)"
    )
}

/// A target-side failure as a metric source's.
fn metrics_error(error: TargetError) -> MetricsError {
    match error {
        TargetError::Throttled(m) => MetricsError::Throttled(m),
        TargetError::Invalid(m) | TargetError::Request(m) => MetricsError::Invalid(m),
        other => MetricsError::Source(other.to_string()),
    }
}

#[async_trait]
impl MetricSource for FlinkMetricSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        self.answer(queries, start_ms, end_ms, false).await
    }

    /// Flink keeps no history: its queries are answered from the samples
    /// kept, and none is taken (dated by a span that ended in the past, a
    /// sample taken now would replace the newest ones).
    async fn fetch_past(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        self.answer(queries, start_ms, end_ms, true).await
    }
}

impl FlinkMetricSource {
    /// Answers the Flink queries of `queries` from Flink (sampled now, or,
    /// for a read of the `past`, from the samples kept) and the others
    /// from the fallback source, in the order of `queries`.
    async fn answer(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
        past: bool,
    ) -> Result<Vec<Series>, MetricsError> {
        /// Queries with their places in `queries`.
        type Placed<'a> = Vec<(usize, &'a MetricQuery)>;
        let (flink, other): (Placed, Placed) = queries
            .iter()
            .enumerate()
            .partition(|(_, q)| q.namespace == NAMESPACE);
        let mut answers: BTreeMap<usize, Series> = BTreeMap::new();
        if !other.is_empty() {
            let asked: Vec<MetricQuery> = other.iter().map(|(_, q)| (*q).clone()).collect();
            let series = if past {
                self.fallback.fetch_past(&asked, start_ms, end_ms).await?
            } else {
                self.fallback.fetch(&asked, start_ms, end_ms).await?
            };
            answers.extend(other.iter().map(|(i, _)| *i).zip(series));
        }
        if !flink.is_empty() {
            let asked: Vec<&MetricQuery> = flink.iter().map(|(_, q)| *q).collect();
            let series = if past {
                self.kept(&asked, start_ms, end_ms)?
            } else {
                self.fetch_flink(&asked, start_ms, end_ms).await?
            };
            answers.extend(flink.iter().map(|(i, _)| *i).zip(series));
        }
        Ok(answers.into_values().collect())
    }
}

/// Keeps a sample of the period starting at `stamp` in `kept` (oldest
/// first): it replaces one of the same period, and one dated later, which
/// only a wall clock that went back (an NTP step) leaves there, since
/// samples are dated by the agent's clock as they are taken (a read of the
/// past, a policy's history, takes none: `fetch_past`). Those are
/// dropped, said once per step: kept, they would be judged as the newest
/// periods while every new sample was refused for being older, and the
/// alarms would see no new sample until the clock caught up.
fn keep_sample(kept: &mut VecDeque<Datapoint>, stamp: i64, value: f64, metric: &str) {
    if kept.back().is_some_and(|p| p.timestamp_ms > stamp) {
        let ahead = kept.iter().filter(|p| p.timestamp_ms > stamp).count();
        tracing::warn!(
            metric,
            dropped_samples = ahead,
            "The agent's clock went back: the Flink samples dated after now are dropped."
        );
    }
    while kept.back().is_some_and(|p| p.timestamp_ms >= stamp) {
        kept.pop_back();
    }
    kept.push_back(Datapoint {
        timestamp_ms: stamp,
        value,
    });
    while kept.len() > MAX_SAMPLES {
        kept.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample replaces one of its own period; after the agent's clock
    /// went back, the samples dated after the new one are dropped and the
    /// new one is kept (it was refused until the clock caught up, so the
    /// alarms judged the old samples as the newest).
    #[test]
    fn a_clock_that_went_back_drops_the_samples_dated_ahead() {
        let mut kept = VecDeque::new();
        let stamps = |kept: &VecDeque<Datapoint>| -> Vec<(i64, f64)> {
            kept.iter().map(|p| (p.timestamp_ms, p.value)).collect()
        };
        for (stamp, value) in [(0, 1.0), (60_000, 2.0), (120_000, 3.0), (120_000, 4.0)] {
            keep_sample(&mut kept, stamp, value, "lag");
        }
        assert_eq!(stamps(&kept), [(0, 1.0), (60_000, 2.0), (120_000, 4.0)]);
        // The clock steps back 2 minutes.
        keep_sample(&mut kept, 60_000, 5.0, "lag");
        assert_eq!(stamps(&kept), [(0, 1.0), (60_000, 5.0)]);
        keep_sample(&mut kept, 120_000, 6.0, "lag");
        assert_eq!(stamps(&kept), [(0, 1.0), (60_000, 5.0), (120_000, 6.0)]);
        // Bounded.
        for k in 0..(MAX_SAMPLES as i64 + 10) {
            keep_sample(&mut kept, 180_000 + k * 60_000, 7.0, "lag");
        }
        assert_eq!(kept.len(), MAX_SAMPLES);
    }

    fn agg(min: f64, max: f64, avg: f64, sum: f64, parallelism: u64) -> Aggregates {
        Aggregates {
            min,
            max,
            avg,
            sum,
            parallelism,
        }
    }

    /// The job and vertex ids of Flink's answers each stay one segment of
    /// the metrics path, and the metric names it lists one value of its
    /// query.
    #[tokio::test]
    async fn ids_and_names_from_flink_s_answers_are_encoded() {
        let stub = crate::flink::stub::Stub::start(|line| {
            if line.starts_with("GET /jobs/j%2Fk/vertices/v%3F1%23/subtasks/metrics ") {
                (
                    200,
                    serde_json::json!([{"id": "0.Source: a&b.pendingRecords"}]),
                )
            } else {
                (404, serde_json::json!({"errors": ["Not found."]}))
            }
        })
        .await;
        let source = FlinkMetricSource::new(
            &stub.url,
            FlinkJob::Name("orders".into()),
            Arc::new(NoSource),
        )
        .expect("a valid rest_url");
        let vertex = Vertex {
            id: "v?1#".into(),
            name: "Source: a".into(),
            is_source: true,
            parallelism: 1,
            rescaled: true,
        };
        let _ = source.aggregates("j/k", &vertex, "pendingRecords").await;
        assert_eq!(
            stub.requests(),
            [
                "GET /jobs/j%2Fk/vertices/v%3F1%23/subtasks/metrics HTTP/1.1",
                "GET /jobs/j%2Fk/vertices/v%3F1%23/subtasks/metrics\
                 ?get=0.Source%3A%20a%26b.pendingRecords&agg=min,max,avg,sum HTTP/1.1"
            ]
        );
    }

    /// `validate --environment`'s check: a metric's `vertex` that names no
    /// vertex of the job is reported with the job's vertex names, one that
    /// names some (by the start of a name, "all", "source") is not.
    #[tokio::test]
    async fn a_vertex_naming_none_of_the_job_s_is_reported_with_their_names() {
        let stub = crate::flink::stub::Stub::start(|line| {
            if line.starts_with("GET /jobs/overview ") {
                (
                    200,
                    serde_json::json!({"jobs": [
                        {"jid": "a1", "name": "orders", "state": "RUNNING", "start-time": 5}
                    ]}),
                )
            } else if line.starts_with("GET /jobs/a1 ") {
                (
                    200,
                    serde_json::json!({
                        "state": "RUNNING",
                        "vertices": [
                            {"id": "v1", "name": "Source: src[1]", "parallelism": 2},
                            {"id": "v2", "name": "Calc[2]", "parallelism": 2}
                        ],
                        "plan": {"nodes": [
                            {"id": "v1", "inputs": []},
                            {"id": "v2", "inputs": [{"id": "v1"}]}
                        ]}
                    }),
                )
            } else {
                (404, serde_json::json!({"errors": ["Not found."]}))
            }
        })
        .await;
        let selectors: Vec<(String, String)> = [
            ("busy", "Calc"),
            ("typo", "Clac"),
            ("every", "all"),
            ("backlog", "source"),
        ]
        .iter()
        .map(|(id, v)| ((*id).to_owned(), (*v).to_owned()))
        .collect();
        let checked = unmatched_vertices(&stub.url, &FlinkJob::Name("orders".into()), &selectors)
            .await
            .expect("the stub answers");
        assert_eq!(
            checked,
            vec![
                ("busy".to_owned(), None),
                (
                    "typo".to_owned(),
                    Some(
                        "vertex \"Clac\" matches none of the job's vertices \
                         [\"Source: src[1]\", \"Calc[2]\"] \
                         (valid: \"all\", \"source\", or the start of a vertex name)"
                            .to_owned()
                    )
                ),
                ("every".to_owned(), None),
                ("backlog".to_owned(), None),
            ]
        );
        let missing = unmatched_vertices(&stub.url, &FlinkJob::Name("gone".into()), &selectors)
            .await
            .expect_err("no job named gone");
        assert!(matches!(missing, TargetError::NotFound(_)), "{missing}");
    }

    /// A read of the past (a policy's history at its start) answers from
    /// the samples kept and asks Flink nothing; the samples the alarms
    /// judge are still there after it, and no later sample is dropped for
    /// it (a sample dated by the past span would have replaced them all).
    #[tokio::test]
    async fn a_read_of_the_past_takes_no_sample() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let stub = crate::flink::stub::Stub::start(move |line| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = line.split(' ').nth(1).unwrap_or_default();
            match path {
                "/jobs/a1" => (
                    200,
                    serde_json::json!({
                        "state": "RUNNING",
                        "vertices": [{"id": "v1", "name": "Calc", "parallelism": 2}],
                        "plan": {"nodes": [{"id": "v1", "inputs": []}]}
                    }),
                ),
                "/jobs/a1/vertices/v1/subtasks/metrics" => {
                    (200, serde_json::json!([{"id": "busyTimeMsPerSecond"}]))
                }
                p if p.starts_with("/jobs/a1/vertices/v1/subtasks/metrics?get=") => (
                    200,
                    serde_json::json!([{"id": "busyTimeMsPerSecond",
                        "min": 500, "max": 700, "avg": 600, "sum": 1200}]),
                ),
                _ => (404, serde_json::json!({"errors": ["Not found."]})),
            }
        })
        .await;
        let source =
            FlinkMetricSource::new(&stub.url, FlinkJob::Id("a1".into()), Arc::new(NoSource))
                .expect("a valid rest_url");
        let query = MetricQuery {
            id: "busy".into(),
            namespace: NAMESPACE.into(),
            metric_name: "busyTimeMsPerSecond".into(),
            dimensions: BTreeMap::new(),
            statistic: "Maximum".into(),
            period_secs: 60,
            expression: None,
        };
        let minute = 60_000;
        let now = 100 * minute;
        for k in 0..3 {
            source
                .fetch(std::slice::from_ref(&query), 0, now + k * minute)
                .await
                .expect("sampled");
        }
        let stamps = |series: &[Series]| -> Vec<i64> {
            series[0].points.iter().map(|p| p.timestamp_ms).collect()
        };
        let asked = calls.load(std::sync::atomic::Ordering::SeqCst);
        let past = source
            .fetch_past(std::slice::from_ref(&query), 0, now + minute)
            .await
            .expect("the past");
        assert_eq!(stamps(&past), [99 * minute, 100 * minute]);
        assert_eq!(past[0].points[0].value, 700.0);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), asked);
        let window = source
            .fetch(std::slice::from_ref(&query), 0, now + 3 * minute)
            .await
            .expect("sampled");
        assert_eq!(
            stamps(&window),
            [99 * minute, 100 * minute, 101 * minute, 102 * minute]
        );
    }

    /// A fallback that is never asked.
    struct NoSource;

    #[async_trait::async_trait]
    impl MetricSource for NoSource {
        async fn fetch(
            &self,
            _: &[MetricQuery],
            _: i64,
            _: i64,
        ) -> Result<Vec<Series>, MetricsError> {
            Err(MetricsError::Source("not asked".into()))
        }
    }

    /// For a time metric, `"all"` and `"source"` leave out the vertices
    /// Flink runs non-parallel (a committer at `maxParallelism` 1, busy
    /// 1000 ms/s, would be the job's Maximum at every size), unless there
    /// is no other; records count every source (a non-parallel source's
    /// records go through the rescaled vertices); a prefix names any
    /// vertex.
    #[test]
    fn busy_time_over_all_and_source_is_the_vertices_the_agent_rescales() {
        let vertex = |id: &str, is_source: bool, rescaled: bool| Vertex {
            id: id.into(),
            name: format!("{id}[1]"),
            parallelism: 2,
            is_source,
            rescaled,
        };
        let job = [
            vertex("Source: kafka", true, true),
            vertex("Source: config", true, false),
            vertex("Calc", false, true),
            vertex("Committer", false, false),
        ];
        let ids = |chosen: Vec<&Vertex>| -> Vec<String> {
            chosen.into_iter().map(|v| v.id.clone()).collect()
        };
        let busy = "busyTimeMsPerSecond";
        assert_eq!(ids(choose(&job, "all", busy)), ["Source: kafka", "Calc"]);
        assert_eq!(ids(choose(&job, "source", busy)), ["Source: kafka"]);
        assert_eq!(
            ids(choose(&job, "source", "backPressuredTimeMsPerSecond")),
            ["Source: kafka"]
        );
        assert_eq!(ids(choose(&job, "Committer", busy)), ["Committer"]);
        assert_eq!(
            ids(choose(&job, "Source", busy)),
            ["Source: kafka", "Source: config"]
        );
        for records in ["numRecordsInPerSecond", "pendingRecords"] {
            assert_eq!(
                ids(choose(&job, "source", records)),
                ["Source: kafka", "Source: config"]
            );
            assert_eq!(ids(choose(&job, "all", records)).len(), 4);
        }
        let fixed = [
            vertex("Source: a", true, false),
            vertex("Sink", false, false),
        ];
        assert_eq!(ids(choose(&fixed, "all", busy)), ["Source: a", "Sink"]);
        assert_eq!(ids(choose(&fixed, "source", busy)), ["Source: a"]);
    }

    #[test]
    fn statistics_combine_over_vertices_as_documented() {
        let found = [agg(1.0, 9.0, 5.0, 10.0, 2), agg(2.0, 4.0, 2.0, 2.0, 1)];
        assert_eq!(combine(&found, "Maximum"), Some(9.0));
        assert_eq!(combine(&found, "Minimum"), Some(1.0));
        assert_eq!(combine(&found, "Sum"), Some(12.0));
        // (5 x 2 + 2 x 1) / 3 subtasks.
        assert_eq!(combine(&found, "Average"), Some(4.0));
        assert_eq!(combine(&[], "Maximum"), None);
    }

    /// Parallelisms and values are Flink's answer: whatever they are, the
    /// combination neither overflows nor yields an infinity as a sample.
    #[test]
    fn what_flink_answers_cannot_overflow_the_combination() {
        let huge = [
            agg(1.0, 2.0, 3.0, 4.0, u64::MAX),
            agg(1.0, 2.0, 3.0, 4.0, u64::MAX),
        ];
        assert_eq!(combine(&huge, "Average"), Some(3.0));
        let big = [
            agg(1.0, 1e308, 1.0, 1e308, 1),
            agg(1.0, 1e308, 1.0, 1e308, 1),
        ];
        assert_eq!(combine(&big, "Sum"), None, "1e308 + 1e308 is no sample");
        assert_eq!(combine(&big, "Maximum"), Some(1e308));
    }
}
