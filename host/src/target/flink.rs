//! A job on a self-managed Flink cluster, scaled through the JobManager's
//! REST API (`[[application]] target = "flink"`).
//!
//! The job is found by name (the newest job of that name that has not
//! ended, so a job resubmitted under a new id is found again) or by id.
//! Rescaling is in place with the adaptive scheduler:
//! `PUT /jobs/{id}/resource-requirements` lists every vertex with lower
//! bound 1 and upper bound the new parallelism, after which Flink restarts
//! the job's tasks at it. [`ScalingTarget::describe`] reports `UPDATING`
//! until every vertex runs at its requirement's upper bound, so the
//! controller's follow loop waits it out as it waits out an MSF update.
//! One unit of parallelism is one KPU for the policies
//! (`parallelism_per_kpu` = 1); every vertex gets the same parallelism.
//!
//! # Fencing without a version id
//!
//! MSF quotes a version id that every update moves; Flink has none, so the
//! version id reported here is made from what the REST API does offer, such
//! that it moves whenever a rescale (ours or anyone's) or a restart takes
//! effect and never otherwise:
//!
//! `version_id = 2 x C + P`, where `C` is the time (ms) at which the job's
//! current execution graph was created (`timestamps.CREATED` of
//! `GET /jobs/{id}`: the adaptive scheduler builds a new graph for every
//! rescale, restart and resubmission, so it only grows), and `P` is 1 while
//! the resource requirements read back (`GET /jobs/{id}/resource-requirements`)
//! ask for another parallelism than the vertices run at (a rescale was
//! accepted and has not been carried out yet), 0 otherwise.
//!
//! So the moment a PUT is accepted the version moves from `2C` to `2C + 1`,
//! and once Flink has rebuilt the graph to `2C'` with `C' > C`. This is
//! what the controller's write-ahead journal needs: after a lost answer (a
//! timeout, a dropped connection after the PUT reached Flink) it reads the
//! job, and a version above the quoted one means the rescale took effect
//! and is followed, never sent again; a version that did not move means it
//! did not. On top of that, [`FlinkTarget::rescale`]:
//! - refuses (ConcurrentModification) when the job's version is not the one
//!   the decision was made on: someone else rescaled, or the job restarted;
//! - reads the requirements back before sending and does not send when they
//!   already ask for the wanted parallelism;
//! - after a PUT whose answer was lost, reads the requirements back and
//!   reports success when they are the ones it sent.
//!
//! A second PUT of the same requirements could not rescale twice anyway:
//! the requirements are a set value, not an increment, and Flink rescales
//! only when the requirements differ from what runs.
//!
//! # Errors
//!
//! Cluster unreachable, no answer, 5xx: `Transient`. No such job (or the
//! job ended): `NotFound`. Job not RUNNING or a rescale still in progress:
//! `ResourceInUse`. More parallelism than the cluster has task slots for
//! (the cluster's total from `GET /overview` less what its other running
//! jobs use): `LimitExceeded`, with the slot numbers, before anything is
//! sent; a job that Flink accepted but cannot bring to the new
//! parallelism stays `UPDATING` and is reported by the controller's update
//! timeout. A requirement Flink refuses (4xx): `Invalid`, with Flink's
//! error text. A job whose version moved since the decision:
//! `ConcurrentModification` (checked first, so a rescale still pending
//! reads as that).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{AppState, AppStatus, ScalingTarget, TargetError};
use crate::config::FlinkJob;
use crate::flink::{FlinkRest, is_terminal, segment};

/// A job of a Flink cluster reached at `http://host:port`.
#[derive(Debug, Clone)]
pub struct FlinkTarget {
    rest: FlinkRest,
    /// The job; `None`: the application name given to each call is the
    /// job's name.
    job: Option<FlinkJob>,
}

/// What one read of the job says, beyond [`AppState`].
#[derive(Debug, Clone)]
struct JobView {
    id: String,
    state: AppState,
    /// Vertex id -> its resource requirement, as read back.
    requirements: Map<String, Value>,
}

impl FlinkTarget {
    /// A target for the REST API at `rest_url` (`http://host:port`), whose
    /// application names are job names.
    pub fn new(rest_url: &str) -> Result<Self, TargetError> {
        Ok(Self {
            rest: FlinkRest::new(rest_url)?,
            job: None,
        })
    }

    /// A target for `job` of the cluster at `rest_url`, whatever the
    /// application is called.
    pub fn for_job(rest_url: &str, job: FlinkJob) -> Result<Self, TargetError> {
        Ok(Self {
            rest: FlinkRest::new(rest_url)?,
            job: Some(job),
        })
    }

    fn job(&self, application: &str) -> FlinkJob {
        self.job
            .clone()
            .unwrap_or_else(|| FlinkJob::Name(application.to_owned()))
    }

    /// Reads the job, its vertices and its requirements.
    async fn view(&self, application: &str) -> Result<JobView, TargetError> {
        let id = self.rest.job_id(&self.job(application)).await?;
        let job = self.rest.get(&format!("/jobs/{}", segment(&id))).await?;
        let requirements = self
            .rest
            .get(&format!("/jobs/{}/resource-requirements", segment(&id)))
            .await?;
        let requirements = requirements.as_object().cloned().unwrap_or_default();
        let vertices = job["vertices"].as_array().cloned().unwrap_or_default();
        let parallelism = vertices
            .iter()
            .filter_map(|v| v["parallelism"].as_u64())
            .max()
            .unwrap_or(0);
        // Settled: every vertex running, at its requirement's upper bound.
        let pending = vertices.iter().any(|v| {
            let upper = v["id"]
                .as_str()
                .and_then(|vid| requirements.get(vid))
                .and_then(|r| r["parallelism"]["upperBound"].as_u64());
            upper.is_some_and(|u| v["parallelism"].as_u64() != Some(u))
        });
        let all_running = vertices.iter().all(|v| v["status"] == "RUNNING");
        let mut status = status_of(job["state"].as_str().unwrap_or(""));
        if status == AppStatus::Running && (pending || !all_running) {
            status = AppStatus::Updating;
        }
        let created = job["timestamps"]["CREATED"]
            .as_u64()
            .filter(|c| *c > 0)
            .or_else(|| job["start-time"].as_u64())
            .unwrap_or(0);
        Ok(JobView {
            id,
            state: AppState {
                status,
                parallelism: u32::try_from(parallelism).unwrap_or(u32::MAX),
                parallelism_per_kpu: 1,
                version_id: version_id(created, pending),
                autoscaling_enabled: false,
                // The graph is created anew by every rescale and restart.
                last_update_ms: i64::try_from(created).ok().filter(|c| *c > 0),
            },
            requirements,
        })
    }

    /// The task slots the job of `application` could run on (the
    /// cluster's total less what its other running jobs use), and those
    /// numbers as a sentence (`the cluster at ... has 4 task slots and its
    /// other jobs use 1`): what `validate --environment` reports.
    pub async fn slots_for(&self, application: &str) -> Result<(u64, String), TargetError> {
        let id = self.rest.job_id(&self.job(application)).await?;
        self.slots(&id).await
    }

    /// The task slots job `id` could run on: the cluster's total less what
    /// the other running jobs use (each its highest vertex parallelism:
    /// one slot sharing group), and the numbers for a message. The free
    /// count of `/overview` is no guide: the adaptive scheduler keeps the
    /// slots of a job that scaled in until they time out as idle.
    async fn slots(&self, id: &str) -> Result<(u64, String), TargetError> {
        let overview = self.rest.get("/overview").await?;
        let total = overview["slots-total"].as_u64().unwrap_or(0);
        let jobs = self.rest.get("/jobs/overview").await?;
        let mut others = 0;
        for other in jobs["jobs"].as_array().into_iter().flatten() {
            let Some(jid) = other["jid"].as_str().filter(|jid| *jid != id) else {
                continue;
            };
            if is_terminal(other["state"].as_str().unwrap_or("")) {
                continue;
            }
            let detail = self.rest.get(&format!("/jobs/{}", segment(jid))).await?;
            others += detail["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["parallelism"].as_u64())
                .max()
                .unwrap_or(0);
        }
        Ok((
            total.saturating_sub(others),
            format!(
                "the cluster at {} has {total} task slots and its other jobs use {others}",
                self.rest.url()
            ),
        ))
    }
}

/// Maps a Flink job state onto the controller's statuses.
/// The version id `2 x C + P` of a graph created at `created` (ms), `P` 1
/// while a rescale is pending. `C` comes from Flink's answer: one no
/// millisecond clock reaches (at or above 2^63) counts as 2^63 - 1, so
/// that the pending bit still moves the version instead of overflowing.
fn version_id(created: u64, pending: bool) -> u64 {
    (created.min(u64::MAX >> 1) << 1) | u64::from(pending)
}

fn status_of(job_state: &str) -> AppStatus {
    match job_state {
        "RUNNING" => AppStatus::Running,
        "CREATED" | "INITIALIZING" | "RECONCILING" => AppStatus::Starting,
        "RESTARTING" => AppStatus::Updating,
        "CANCELLING" | "FAILING" => AppStatus::Stopping,
        _ => AppStatus::Unknown,
    }
}

/// Whether `requirements` (as read back) ask for exactly `wanted`.
fn asks_for(requirements: &Map<String, Value>, wanted: &Map<String, Value>) -> bool {
    requirements.len() == wanted.len()
        && wanted.iter().all(|(vid, want)| {
            requirements.get(vid).map(|r| &r["parallelism"]) == Some(&want["parallelism"])
        })
}

#[async_trait]
impl ScalingTarget for FlinkTarget {
    async fn describe(&self, application: &str) -> Result<AppState, TargetError> {
        Ok(self.view(application).await?.state)
    }

    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError> {
        if kpu == 0 {
            return Err(TargetError::Request(
                "parallelism 0: a Flink job needs at least 1".to_owned(),
            ));
        }
        let now = self.view(application).await?;
        if now.state.version_id != current.version_id
            || now.state.parallelism != current.parallelism
        {
            return Err(TargetError::ConcurrentModification(format!(
                "job {application:?} changed since the decision: it runs at parallelism {} \
                 (version {}), the decision was made at {} (version {})",
                now.state.parallelism,
                now.state.version_id,
                current.parallelism,
                current.version_id
            )));
        }
        if now.state.status != AppStatus::Running {
            return Err(TargetError::ResourceInUse(format!(
                "job {application:?} is {} (a rescale needs RUNNING, settled)",
                now.state.status
            )));
        }
        let path = format!("/jobs/{}/resource-requirements", segment(&now.id));
        if now.requirements.is_empty() {
            return Err(TargetError::Invalid(format!(
                "job {application:?} lists no vertices in {path} (is jobmanager.scheduler: adaptive set?)"
            )));
        }
        let (usable, slots) = self.slots(&now.id).await?;
        if u64::from(kpu) > usable {
            return Err(TargetError::SlotsExceeded {
                usable: u32::try_from(usable).unwrap_or(u32::MAX),
                message: format!(
                    "parallelism {kpu} for job {application:?} needs {kpu} task slots, but {slots}"
                ),
            });
        }
        let wanted: Map<String, Value> = now
            .requirements
            .keys()
            .map(|vid| {
                let bounds = json!({"lowerBound": 1, "upperBound": kpu});
                (vid.clone(), json!({ "parallelism": bounds }))
            })
            .collect();
        // Read back first: requirements that already ask for this are not
        // sent again (they would change nothing, and the version says the
        // rescale is under way).
        if asks_for(&now.requirements, &wanted) {
            return Ok(now.state.version_id);
        }
        let body = Value::Object(wanted.clone());
        match self.rest.call("PUT", &path, Some(&body)).await {
            Ok(_) => {}
            Err(error @ TargetError::Transient(_)) => {
                // The answer may be lost after the effect: what Flink holds
                // now says whether it took.
                match self.rest.get(&path).await {
                    Ok(Value::Object(back)) if asks_for(&back, &wanted) => {}
                    _ => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
        // Accepted: pending from here on, until the new graph runs.
        Ok(now.state.version_id | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_id_of_any_creation_time_flink_answers_is_2c_plus_p() {
        assert_eq!(version_id(1_700_000_000_000, false), 3_400_000_000_000);
        assert_eq!(version_id(1_700_000_000_000, true), 3_400_000_000_001);
        // Past what a millisecond clock reaches: no overflow, and the
        // pending bit still tells the two apart.
        assert_eq!(version_id(u64::MAX, false), u64::MAX - 1);
        assert_eq!(version_id(u64::MAX, true), u64::MAX);
        assert_eq!(version_id(1 << 63, true), u64::MAX);
    }

    /// The graph's creation time is the job's last update (a rescale or
    /// a restart creates a new graph): what an agent without a journal
    /// holds its grace period after.
    #[tokio::test]
    async fn the_graphs_creation_time_is_the_last_update() {
        let id = "a".repeat(32);
        let id_in = id.clone();
        let stub = crate::flink::stub::Stub::start(move |line| {
            let path = line.split(' ').nth(1).unwrap_or_default();
            let answer = match path {
                p if p == format!("/jobs/{id_in}") => json!({
                    "state": "RUNNING",
                    "timestamps": {"CREATED": 1_700_000_000_123_u64},
                    "vertices": [{"id": "v1", "parallelism": 2, "status": "RUNNING"}],
                }),
                p if p == format!("/jobs/{id_in}/resource-requirements") => {
                    json!({"v1": {"parallelism": {"lowerBound": 1, "upperBound": 2}}})
                }
                _ => return (404, json!({"errors": ["Not found."]})),
            };
            (200, answer)
        })
        .await;
        let target = FlinkTarget::for_job(&stub.url, FlinkJob::Id(id)).expect("a target");
        let state = target.describe("orders").await.expect("describe");
        assert_eq!(state.last_update_ms, Some(1_700_000_000_123));
        assert_eq!(state.version_id, version_id(1_700_000_000_123, false));
    }

    #[test]
    fn requirements_are_compared_on_the_parallelism_of_every_vertex() {
        let want = |u: u32| {
            let bounds = json!({"parallelism": {"lowerBound": 1, "upperBound": u}});
            json!({"a": bounds.clone(), "b": bounds})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        assert!(asks_for(&want(2), &want(2)));
        assert!(!asks_for(&want(1), &want(2)));
        let mut fewer = want(2);
        fewer.remove("b");
        assert!(!asks_for(&fewer, &want(2)));
    }
}
