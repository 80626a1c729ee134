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
//! rescale, restart and resubmission, so it only grows; a graph that runs
//! dated before one already read, by a JobManager whose clock went back,
//! reads as 1 ms after it), and `P` is 1 while
//! the resource requirements read back (`GET /jobs/{id}/resource-requirements`)
//! ask for another parallelism than the vertices run at (a rescale was
//! accepted and has not been carried out yet), 0 otherwise. A job that
//! runs below its requirements because the cluster has no slot for more
//! (a TaskManager died) has nothing pending: Flink grows it by itself
//! when slots come back, and until then it is `RUNNING` at what it runs
//! at, so that a scale-out is refused for want of slots (`LimitExceeded`,
//! the free-slots ceiling) instead of waiting on a rescale that cannot
//! happen.
//!
//! So the moment a PUT is accepted the version moves from `2C` to `2C + 1`,
//! and once Flink has rebuilt the graph to `2C'` with `C' > C`. Between the
//! two, Flink may show a placeholder graph dated from the job's submission;
//! it reads as `2C + 1` (`FlinkTarget::graph`), never below. This is
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
//! # Identity, and what the job asks for
//!
//! The version id compares graphs of one job. A job replaced under its
//! name (cancelled and submitted again, or resubmitted by a JobManager
//! restarted without high availability) has a newer graph too, so its
//! version is above any the old job had: [`AppState::identity`] is the job
//! id, so that the controller tells a replacement from an update of the
//! job it was following. [`AppState::asked_kpu`] is the parallelism the
//! requirements read back ask for. Flink keeps them across the job's own
//! restarts, so after a PUT whose answer was lost, a version that moved
//! while they still ask for the old parallelism is a restart (or another
//! writer), not the agent's rescale.
//!
//! # Errors
//!
//! Cluster unreachable, no answer, 5xx: `Transient`, but a 500 saying the
//! job cannot be rescaled in place (the default scheduler, reactive mode):
//! `Invalid`, with the fix. No such job (or the job ended): `NotFound`. Job
//! not RUNNING or a rescale still in progress, or Flink's 409 to an update
//! sent while another is stored: `ResourceInUse`. More task slots than the
//! cluster has (the cluster's total from `GET /overview` less what its
//! other running jobs use; a job takes its parallelism in each of its slot
//! sharing groups, [`SlotShape`]): `LimitExceeded`, with the slot
//! numbers, before anything is sent (not on a cluster that starts
//! TaskManagers on demand, YARN or native Kubernetes, whose slots now are
//! no ceiling); so is more than the job's max parallelism (the lowest
//! `maxParallelism` of its vertices, which Flink would refuse with 400,
//! leaving the controller no ceiling to scale to); a job that Flink accepted but cannot bring to the new
//! parallelism (slots lost after the check) runs, `RUNNING`, at what
//! there is: the controller reports the shortfall (`update_result`) and
//! the next scale-out meets the slot check. A requirement Flink refuses (4xx): `Invalid`, with Flink's
//! error text. A job whose version moved since the decision:
//! `ConcurrentModification` (checked first, so a rescale still pending
//! reads as that).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{AppState, AppStatus, ScalingTarget, TargetError};
use crate::config::FlinkJob;
use crate::flink::{FlinkRest, RestUrl, is_terminal, segment};

/// What [`FlinkTarget::describe_job`] read of a job.
#[derive(Debug, Clone)]
pub struct DescribedJob {
    /// The job as the controller sees it.
    pub state: AppState,
    /// The job's id (the name resolved).
    pub job_id: String,
    /// The lowest `maxParallelism` of its vertices, when Flink says it.
    pub max_parallelism: Option<u64>,
    /// The task slots the job takes at a parallelism.
    pub shape: SlotShape,
}

/// The task slots a job takes at a parallelism: one per subtask of the
/// widest vertex of each slot sharing group (`slotSharingGroupId` of every
/// vertex of `GET /jobs/{id}`; a Flink that does not say it counts as one
/// group, Flink's default). A rescale takes every parallel vertex to the
/// new parallelism and leaves a non-parallel one at 1, so a group with a
/// parallel vertex takes the parallelism and a group of non-parallel
/// vertices alone takes 1 slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotShape {
    /// Groups with a parallel vertex.
    pub scaled: u64,
    /// Groups of non-parallel vertices only.
    pub fixed: u64,
}

impl SlotShape {
    /// The shape of a job of these vertices (as `GET /jobs/{id}` lists
    /// them).
    pub fn of(vertices: &[Value]) -> Self {
        let groups = per_group(vertices, |parallel: &mut bool, vertex| {
            *parallel |= vertex["maxParallelism"].as_u64() != Some(1);
        });
        let scaled = groups.values().filter(|parallel| **parallel).count() as u64;
        Self {
            scaled,
            fixed: groups.len() as u64 - scaled,
        }
    }

    /// The slots the job takes at `parallelism`.
    pub fn slots(self, parallelism: u64) -> u64 {
        self.scaled
            .saturating_mul(parallelism)
            .saturating_add(self.fixed)
    }

    /// The highest parallelism that fits in `slots` (0 when none does;
    /// `u64::MAX` for a job of non-parallel vertices only that fits).
    pub fn parallelism_within(self, slots: u64) -> u64 {
        match slots.checked_sub(self.fixed) {
            None => 0,
            Some(_) if self.scaled == 0 => u64::MAX,
            Some(left) => left / self.scaled,
        }
    }

    /// The slots a running job holds now: its widest vertex of each group.
    fn in_use(vertices: &[Value]) -> u64 {
        let groups = per_group(vertices, |widest: &mut u64, vertex| {
            *widest = (*widest).max(vertex["parallelism"].as_u64().unwrap_or(0));
        });
        groups.values().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// `vertices` folded by slot sharing group (`slotSharingGroupId`; one
/// group when Flink does not say it): each group's value starts at its
/// default and `add` takes in each of its vertices.
fn per_group<T: Default>(vertices: &[Value], add: impl Fn(&mut T, &Value)) -> HashMap<&str, T> {
    let mut groups: HashMap<&str, T> = HashMap::new();
    for vertex in vertices {
        let group = vertex["slotSharingGroupId"].as_str().unwrap_or("");
        add(groups.entry(group).or_default(), vertex);
    }
    groups
}

/// A job of a Flink cluster reached at `http://host:port`.
#[derive(Debug, Clone)]
pub struct FlinkTarget {
    rest: FlinkRest,
    /// The job; `None`: the application name given to each call is the
    /// job's name.
    job: Option<FlinkJob>,
    /// Application -> the id of the job last read for it, so that a job
    /// found by name under a new id (resubmitted, or after a JobManager
    /// restart) is said once in the log.
    followed: Arc<Mutex<HashMap<String, String>>>,
    /// Job id -> its graphs as read and as reported
    /// ([`FlinkTarget::graph`]).
    newest_graph: Arc<Mutex<HashMap<String, Graph>>>,
    /// Once read: the cluster's `execution.target` when it starts
    /// TaskManagers on demand ([`FlinkTarget::on_demand`]).
    on_demand: Arc<Mutex<Option<Option<String>>>>,
}

/// The graph of one job last read, as [`FlinkTarget::graph`] keeps it.
#[derive(Debug, Clone)]
struct Graph {
    /// Its creation time as Flink dates it.
    read: u64,
    /// The creation time reported for it: its own, or, for a graph dated
    /// before one already reported (the JobManager's clock went back), 1 ms
    /// after the newest reported before it.
    reported: u64,
    /// The creation times of the graphs read before it, newest last (at
    /// most [`EARLIER_GRAPHS`]): one read again is a stale answer, not a
    /// new graph.
    earlier: Vec<u64>,
}

/// How many graphs before the last one [`Graph`] remembers.
const EARLIER_GRAPHS: usize = 8;

impl Graph {
    fn first(read: u64) -> Self {
        Self {
            read,
            reported: read,
            earlier: Vec::new(),
        }
    }

    /// Moves on to the graph created at `read`, reported as `reported`.
    fn next(&mut self, read: u64, reported: u64) {
        self.earlier.retain(|r| *r != read);
        self.earlier.push(self.read);
        if self.earlier.len() > EARLIER_GRAPHS {
            self.earlier.remove(0);
        }
        self.read = read;
        self.reported = reported;
    }
}

/// What one read of the job says, beyond [`AppState`].
#[derive(Debug, Clone)]
struct JobView {
    id: String,
    state: AppState,
    /// Vertex id -> its resource requirement, as read back.
    requirements: Map<String, Value>,
    /// The lowest `maxParallelism` of the job's parallel vertices (their
    /// number of key groups, fixed when the job was submitted), when Flink
    /// says it: no vertex runs above its own, and Flink refuses
    /// requirements that ask for more (400). 1 when every vertex is
    /// non-parallel.
    max_parallelism: Option<u64>,
    /// The vertices Flink runs non-parallel (`maxParallelism` 1: a
    /// `windowAll`, a SQL global aggregate or sort, a sink's global
    /// committer): a rescale leaves them at 1, where asking them for more
    /// would have Flink refuse the whole rescale.
    non_parallel: Vec<String>,
    /// The task slots the job takes at a parallelism.
    shape: SlotShape,
}

impl FlinkTarget {
    /// A target for the REST API at `rest_url` (`http://host:port`, or
    /// several: [`RestUrl`]), whose application names are job names.
    pub fn new(rest_url: impl Into<RestUrl>) -> Result<Self, TargetError> {
        Ok(Self {
            rest: FlinkRest::new(rest_url)?,
            job: None,
            followed: Arc::default(),
            newest_graph: Arc::default(),
            on_demand: Arc::default(),
        })
    }

    /// A target for `job` of the cluster at `rest_url`, whatever the
    /// application is called.
    pub fn for_job(rest_url: impl Into<RestUrl>, job: FlinkJob) -> Result<Self, TargetError> {
        Ok(Self {
            rest: FlinkRest::new(rest_url)?,
            job: Some(job),
            followed: Arc::default(),
            newest_graph: Arc::default(),
            on_demand: Arc::default(),
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
        self.follow(application, &id);
        let job = self.rest.get(&format!("/jobs/{}", segment(&id))).await?;
        let requirements = match self
            .rest
            .get(&format!("/jobs/{}/resource-requirements", segment(&id)))
            .await
        {
            // The job was just read, and this route's handler answers a
            // job it no longer knows with 500 (transient): a 404 is the
            // router's (Flink's `RouterHandler`, "Not found: /jobs/...",
            // for a path it has no handler for) or a proxy's. The job is
            // there, the API is not.
            Err(TargetError::NotFound(message)) => {
                return Err(TargetError::Invalid(format!(
                    "{message}: this JobManager has no resource-requirements route, which \
                     flinkscale rescales through: it needs Flink 1.18 or later (with \
                     `jobmanager.scheduler: adaptive`), and a proxy in front of the REST API \
                     must pass /jobs/<id>/resource-requirements"
                )));
            }
            other => other?,
        };
        // Flink answers both as objects; anything else is no job with no
        // vertices or requirements, but an answer this agent cannot read.
        let (Some(requirements), Some(state)) = (requirements.as_object(), job["state"].as_str())
        else {
            return Err(TargetError::Transient(format!(
                "GET /jobs/{id} or its resource-requirements answered without the job's state \
                 or its requirements: not read as a job"
            )));
        };
        let requirements = requirements.clone();
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
        let non_parallel: Vec<String> = vertices
            .iter()
            .filter(|v| v["maxParallelism"].as_u64() == Some(1))
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        // A non-parallel vertex bounds nothing: the job scales around it.
        let max_parallelism = vertices
            .iter()
            .filter_map(|v| v["maxParallelism"].as_u64())
            .filter(|m| *m > 1)
            .min()
            .or_else(|| (!non_parallel.is_empty()).then_some(1));
        // A vertex whose every subtask finished (a bounded source feeding
        // a job that runs on) is as settled as a running one.
        let all_running = vertices
            .iter()
            .all(|v| v["status"] == "RUNNING" || v["status"] == "FINISHED");
        let shape = SlotShape::of(&vertices);
        let mut status = status_of(state);
        if status == AppStatus::Running
            && let Some(problem) = unreadable_parallelism(&vertices)
        {
            // Read as 0 it would be a job "below its minimum" to scale.
            return Err(TargetError::Transient(format!(
                "GET /jobs/{id} answered a running job {problem}: not read as a size"
            )));
        }
        // Short of slots: the job runs (every vertex RUNNING) below what
        // its requirements allow, and the cluster has no slot for it to
        // grow into (a TaskManager died, or another job took its slots).
        // The adaptive scheduler runs it at what there is and grows it by
        // itself once slots come back; until then nothing is under way, so
        // it is RUNNING at the parallelism it runs at, not a rescale
        // pending forever (which the controller would wait on, polling,
        // and never see refused for want of slots).
        let mut pending = pending;
        if pending
            && status == AppStatus::Running
            && all_running
            && !scaling_in(&vertices, &requirements)
        {
            let (usable, _) = self.slots(&id).await?;
            if usable < shape.slots(parallelism.saturating_add(1)) {
                pending = false;
            }
        }
        let created = job["timestamps"]["CREATED"]
            .as_u64()
            .filter(|c| *c > 0)
            .or_else(|| job["start-time"].as_u64())
            .unwrap_or(0);
        let asked_kpu = asked(&requirements);
        // A graph that runs: not a placeholder of one being built.
        let executing = status == AppStatus::Running && all_running;
        if status == AppStatus::Running && (pending || !all_running) {
            status = AppStatus::Updating;
        }
        let Some((created, pending)) = self.graph(&id, created, pending, executing) else {
            // Read as a state, it would be the old size at a version past
            // the newest: another writer's update, or a rescale followed
            // to its end at the size it left.
            return Err(TargetError::Transient(format!(
                "GET /jobs/{id} answered a running graph created at {created}, older than one \
                 already read: a stale answer (a JobManager answering from its cache, \
                 web.refresh-interval); read again"
            )));
        };
        Ok(JobView {
            id: id.clone(),
            state: AppState {
                status,
                parallelism: u32::try_from(parallelism).unwrap_or(u32::MAX),
                parallelism_per_kpu: 1,
                version_id: version_id(created, pending),
                autoscaling_enabled: false,
                // The graph is created anew by every rescale and restart.
                last_update_ms: i64::try_from(created).ok().filter(|c| *c > 0),
                // A job replaced under its name (resubmitted, or after a
                // JobManager restart without HA) has a new id.
                identity: Some(id),
                asked_kpu,
                rolled_back_from: None,
            },
            requirements,
            max_parallelism,
            non_parallel,
            shape,
        })
    }

    /// The graph creation time and pending bit to report for job `id`,
    /// whose graph reads as created at `read`. While Flink builds a job's
    /// next graph (a rescale or a restart under way, state `CREATED` or
    /// `INITIALIZING`), `GET /jobs/{id}` can show a placeholder graph
    /// dated from the job's submission, older than the graph it replaces:
    /// taken as it is, the version id would fall back below the one a
    /// rescale quoted, and the controller, resolving a lost answer or
    /// following the rescale, would conclude that it never took effect and
    /// decide again while Flink carries it out (seen on Flink 2.2 in the
    /// real-Flink test's lost-answer step). So a graph older than one
    /// already read for the same job reads as that one with the pending
    /// bit: a change under way, which it is. (A pending bit that clears on
    /// the same graph still moves the version back: the rescale was
    /// dropped for want of slots.)
    ///
    /// A graph that runs (`executing`: the job and every vertex running)
    /// is no placeholder. Dated before the newest already read, and not
    /// one read before (a JobManager behind a load balancer may answer
    /// from its cache for a few seconds: `web.refresh-interval`), it is a
    /// graph built after a step back of the JobManager's clock (NTP, or a
    /// failover to a JobManager whose clock lags): it reads as created 1 ms
    /// after the newest reported, so that every new graph still moves the
    /// version on. Held at the older graph's with the pending bit, it would
    /// never move again until the clock caught up: a rescale that took
    /// effect would read as one that did not, and be decided again at once.
    /// (What is remembered is this process's: after a restart of the agent
    /// a graph is judged by its own time again.) A running graph that
    /// *was* read before is a stale answer (that cache): `None`, to be read
    /// again. Reported as a state, it was the old size at a pending version
    /// past the newest, which an evaluation took for another writer's
    /// update (a grace period held for nothing).
    fn graph(&self, id: &str, read: u64, pending: bool, executing: bool) -> Option<(u64, bool)> {
        let mut graphs = self.newest_graph.lock().unwrap_or_else(|e| e.into_inner());
        let last = graphs
            .entry(id.to_owned())
            .or_insert_with(|| Graph::first(read));
        if read == last.read {
            Some((last.reported, pending))
        } else if read > last.reported {
            last.next(read, read);
            Some((read, pending))
        } else if executing && last.earlier.contains(&read) {
            None
        } else if executing {
            let reported = last.reported.saturating_add(1);
            tracing::warn!(
                job_id = id,
                created_ms = read,
                newest_created_ms = last.reported,
                "The job's graph is dated before one already read: the JobManager's clock went \
                 back. Its version moves on from the newest read."
            );
            last.next(read, reported);
            Some((reported, pending))
        } else {
            Some((last.reported, true))
        }
    }

    /// Notes `id` as the job of `application`, and logs it when it is
    /// another job than the one read before: the job the agent scales is
    /// not the one it scaled until now (a rescale decided on the old one
    /// is fenced: the new job's version differs).
    fn follow(&self, application: &str, id: &str) {
        let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        let previous = followed.insert(application.to_owned(), id.to_owned());
        if let Some(previous) = previous.filter(|p| p != id) {
            tracing::warn!(
                application,
                job_id = id,
                previous_job_id = previous.as_str(),
                "Following another job: the job of that name has a new id (resubmitted, or the \
                 JobManager restarted)."
            );
        }
    }

    /// [`ScalingTarget::describe`], and from the same read the job's id
    /// and its max parallelism (the lowest of its vertices'), when Flink
    /// says it: the ceiling of every rescale, whatever the slots.
    pub async fn describe_job(&self, application: &str) -> Result<DescribedJob, TargetError> {
        let view = self.view(application).await?;
        Ok(DescribedJob {
            state: view.state,
            job_id: view.id,
            max_parallelism: view.max_parallelism,
            shape: view.shape,
        })
    }

    /// The task slots job `id` could run on: the cluster's total less what
    /// the other running jobs use (each the widest vertex of each of its
    /// slot sharing groups), and the numbers as a sentence (`the
    /// cluster at ... has 4 task slots and its other jobs use 1`, which
    /// `validate --environment` reports for the id
    /// [`FlinkTarget::describe_job`] found). The free
    /// count of `/overview` is no guide: the adaptive scheduler keeps the
    /// slots of a job that scaled in until they time out as idle.
    pub async fn slots(&self, id: &str) -> Result<(u64, String), TargetError> {
        if let Some(target) = self.on_demand().await? {
            return Ok((
                u64::MAX,
                format!(
                    "the cluster at {} starts TaskManagers as its jobs need them (execution.target \
                     {target}), so the task slots running now bound nothing",
                    self.rest.url()
                ),
            ));
        }
        let overview = self.rest.get("/overview").await?;
        // Read as 0 it would be a cluster with no room, and the ceiling
        // of every rescale for an hour: an answer without it is unread.
        let total = overview["slots-total"].as_u64().ok_or_else(|| {
            TargetError::Transient(format!(
                "GET /overview of {} answered no slots-total: the cluster's task slots are unknown",
                self.rest.url()
            ))
        })?;
        let jobs = self.rest.get("/jobs/overview").await?;
        let mut others: u64 = 0;
        for other in jobs["jobs"].as_array().into_iter().flatten() {
            let Some(jid) = other["jid"].as_str().filter(|jid| *jid != id) else {
                continue;
            };
            if is_terminal(other["state"].as_str().unwrap_or("")) {
                continue;
            }
            // Another job gone between the two reads (or failing to
            // answer) uses no slot this job could count on: skipped,
            // rather than failing this job's own read or rescale.
            let Ok(detail) = self.rest.get(&format!("/jobs/{}", segment(jid))).await else {
                continue;
            };
            // Saturating: another job's absurd parallelism (a proxy's or
            // another version's answer) leaves no slot free, not a panic.
            let vertices = detail["vertices"].as_array().cloned().unwrap_or_default();
            others = others.saturating_add(SlotShape::in_use(&vertices));
        }
        Ok((
            total.saturating_sub(others),
            format!(
                "the cluster at {} has {total} task slots and its other jobs use {others}",
                self.rest.url()
            ),
        ))
    }

    /// The cluster's `execution.target` (`GET /jobmanager/config`) when its
    /// resource manager starts TaskManagers as jobs need them and stops
    /// idle ones (`yarn-*`: Flink on YARN, as EMR runs it; `kubernetes-*`:
    /// native Kubernetes). There the slots registered now are no ceiling:
    /// after a scale-in the idle TaskManagers go, and a scale-out refused
    /// for want of them would never be sent. Read once; a failed read
    /// fails the call that needed it (counting a cluster's slots while
    /// its TaskManagers start could read a scale-out under way as done,
    /// or refuse one), and is tried again next time; a 404, a JobManager
    /// without the route, is an answer: slots counted.
    async fn on_demand(&self) -> Result<Option<String>, TargetError> {
        if let Some(known) = self
            .on_demand
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(known);
        }
        let config = match self.rest.get("/jobmanager/config").await {
            Ok(config) => config,
            // A JobManager without the route says nothing of its TaskManagers.
            Err(TargetError::NotFound(_)) => Value::Null,
            Err(error) => return Err(error),
        };
        let target = config
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| entry["key"] == "execution.target")
            .and_then(|entry| entry["value"].as_str())
            .filter(|target| target.starts_with("yarn-") || target.starts_with("kubernetes-"))
            .map(str::to_owned);
        *self.on_demand.lock().unwrap_or_else(|e| e.into_inner()) = Some(target.clone());
        Ok(target)
    }
}

/// What is wrong with the vertices of a running job, if their
/// parallelism cannot be read: none listed, or one whose parallelism is
/// not a whole number from 1 to 2^32 - 1 (a proxy's or another version's
/// answer). A job being built may show a placeholder graph without them;
/// a running one always has them.
fn unreadable_parallelism(vertices: &[Value]) -> Option<String> {
    if vertices.is_empty() {
        return Some("with no vertices".to_owned());
    }
    vertices.iter().find_map(|v| {
        let p = &v["parallelism"];
        let usable = p
            .as_u64()
            .is_some_and(|p| p >= 1 && u32::try_from(p).is_ok());
        (!usable).then(|| {
            format!(
                "with vertex {} at parallelism {p} (valid: a whole number from 1 to {})",
                v["id"],
                u32::MAX
            )
        })
    })
}

/// Whether some vertex runs above its requirement's upper bound: a
/// scale-in is pending, which never waits for slots.
fn scaling_in(vertices: &[Value], requirements: &Map<String, Value>) -> bool {
    vertices.iter().any(|v| {
        let upper = v["id"]
            .as_str()
            .and_then(|vid| requirements.get(vid))
            .and_then(|r| r["parallelism"]["upperBound"].as_u64());
        upper.is_some_and(|u| v["parallelism"].as_u64().is_some_and(|p| p > u))
    })
}

/// The parallelism the requirements ask for: the highest upper bound of
/// any vertex (the agent asks every vertex for the same), `None` when
/// none is listed. The requirements outlive the job's restarts (Flink
/// keeps them with the job), so a restart leaves them as they were and
/// only a PUT, the agent's or anyone's, moves them.
fn asked(requirements: &Map<String, Value>) -> Option<u32> {
    requirements
        .values()
        .filter_map(|r| r["parallelism"]["upperBound"].as_u64())
        .max()
        .map(|upper| u32::try_from(upper).unwrap_or(u32::MAX))
}

/// The version id `2 x C + P` of a graph created at `created` (ms), `P` 1
/// while a rescale is pending. `C` comes from Flink's answer: one no
/// millisecond clock reaches (at or above 2^63) counts as 2^63 - 1, so
/// that the pending bit still moves the version instead of overflowing.
fn version_id(created: u64, pending: bool) -> u64 {
    (created.min(u64::MAX >> 1) << 1) | u64::from(pending)
}

/// Maps a Flink job state onto the controller's statuses.
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
        // Only growth needs slots: a job holds those it runs on, so a
        // scale-in is never refused for want of them (another job counted
        // at slots it does not hold can make the free count look lower
        // than what this job runs at).
        let (usable, slots) = if kpu > now.state.parallelism {
            self.slots(&now.id).await?
        } else {
            (u64::MAX, String::new())
        };
        let needed = now.shape.slots(u64::from(kpu));
        let short_of_slots = needed > usable;
        let above_max = now.max_parallelism.filter(|max| u64::from(kpu) > *max);
        if short_of_slots || above_max.is_some() {
            // Refused here, before anything is sent: Flink would answer
            // 400 to requirements above a vertex's max parallelism, and
            // the controller would know no ceiling to scale to instead.
            let mut why = Vec::new();
            if short_of_slots {
                why.push(format!("needs {needed} task slots, but {slots}"));
            }
            if let Some(max) = above_max {
                why.push(format!(
                    "is above the job's max parallelism {max} (its key groups, fixed when \
                     the job was submitted: pipeline.max-parallelism)"
                ));
            }
            return Err(TargetError::SlotsExceeded {
                usable: u32::try_from(
                    now.shape
                        .parallelism_within(usable)
                        .min(above_max.unwrap_or(u64::MAX)),
                )
                .unwrap_or(u32::MAX),
                message: format!(
                    "parallelism {kpu} for job {application:?} {}",
                    why.join(", and ")
                ),
            });
        }
        let wanted: Map<String, Value> = now
            .requirements
            .keys()
            .map(|vid| {
                let upper = if now.non_parallel.contains(vid) {
                    1
                } else {
                    kpu
                };
                let bounds = json!({"lowerBound": 1, "upperBound": upper});
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
                    Ok(Value::Object(back)) if asks_for(&back, &wanted) => {
                        tracing::warn!(
                            application,
                            parallelism = kpu,
                            error = %error,
                            "PUT answered with an error, but Flink holds the requirements sent: \
                             the rescale was accepted (not sent again)."
                        );
                    }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A JobManager's REST API on loopback that answers each GET from
    /// `answers` (path -> JSON; any other path 404) and each PUT with 202,
    /// recording the PUTs' paths. Returns its `http://host:port`.
    async fn fake_flink(
        answers: Arc<Mutex<HashMap<String, Value>>>,
        puts: Arc<Mutex<Vec<String>>>,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announces.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|l| l.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&raw).into_owned();
                let mut words = text.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let (status, body) = if method == "PUT" {
                    puts.lock().expect("puts").push(path.to_owned());
                    // A PUT is applied (its body becomes what a GET of the
                    // path answers) and answered 202, or as the `PUT` entry
                    // of the answers says: {"status": "502 Bad Gateway",
                    // "apply": true} is a proxy that forwarded it and lost
                    // Flink's answer.
                    let mut answers = answers.lock().expect("answers");
                    let how = answers.get("PUT").cloned().unwrap_or(Value::Null);
                    if how["apply"].as_bool().unwrap_or(true) {
                        let sent = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        let sent = serde_json::from_str(sent).unwrap_or(Value::Null);
                        answers.insert(path.to_owned(), sent);
                    }
                    let status = how["status"].as_str().unwrap_or("202 Accepted").to_owned();
                    (status, r#"{"errors":["upstream"]}"#.to_owned())
                } else {
                    match answers.lock().expect("answers").get(path) {
                        Some(answer) => ("200 OK".to_owned(), answer.to_string()),
                        None => (
                            "404 Not Found".to_owned(),
                            r#"{"errors":["Not found"]}"#.to_owned(),
                        ),
                    }
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    /// The answers of a cluster with `slots` task slots running job `j1`
    /// (`orders`, three vertices, graph created at `created`) with every
    /// vertex RUNNING at `running` and its requirements' upper bound
    /// `upper`.
    fn cluster(slots: u64, created: u64, running: u64, upper: u64) -> HashMap<String, Value> {
        job("j1", "RUNNING", slots, created, running, upper)
    }

    /// [`cluster`]'s answers for a job `jid` (named `orders`) in `state`.
    fn job(
        jid: &str,
        state: &str,
        slots: u64,
        created: u64,
        running: u64,
        upper: u64,
    ) -> HashMap<String, Value> {
        let ids = ["v1", "v2", "v3"];
        let vertices: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "parallelism": running, "status": "RUNNING"}))
            .collect();
        let requirements: Map<String, Value> = ids
            .iter()
            .map(|id| {
                let bounds = json!({"lowerBound": 1, "upperBound": upper});
                ((*id).to_owned(), json!({ "parallelism": bounds }))
            })
            .collect();
        HashMap::from([
            (
                "/overview".to_owned(),
                json!({"slots-total": slots, "taskmanagers": slots}),
            ),
            (
                "/jobs/overview".to_owned(),
                json!({"jobs": [{"jid": jid, "name": "orders", "state": state, "start-time": created}]}),
            ),
            (
                format!("/jobs/{jid}"),
                json!({"jid": jid, "name": "orders", "state": state,
                       "timestamps": {"CREATED": created}, "vertices": vertices}),
            ),
            (
                format!("/jobs/{jid}/resource-requirements"),
                Value::Object(requirements),
            ),
        ])
    }

    /// A TaskManager died: the job runs at 1 of the 2 its requirements
    /// allow, on the one slot left. Nothing is under way (Flink grows it by
    /// itself when slots come back), so it is RUNNING at 1, and a
    /// scale-out to 2 is refused for want of slots, with the slots there
    /// are, before anything is sent. With the slot back, the growth Flink
    /// starts by itself is pending again (the version moves), and a
    /// pending scale-in is pending whatever the slots.
    #[tokio::test]
    async fn a_job_short_of_slots_runs_at_what_it_has_rather_than_updating_forever() {
        let answers = Arc::new(Mutex::new(cluster(1, 1_000, 1, 2)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");

        let state = target.describe("orders").await.expect("described");
        assert_eq!(state.status, AppStatus::Running, "{state:?}");
        assert_eq!(state.parallelism, 1);
        assert_eq!(state.version_id, version_id(1_000, false));
        match target.rescale("orders", 2, &state).await {
            Err(TargetError::SlotsExceeded { usable, message }) => {
                assert_eq!(usable, 1, "{message}");
                assert!(message.contains("has 1 task slots"), "{message}");
            }
            other => panic!("expected SlotsExceeded, got {other:?}"),
        }
        assert!(puts.lock().expect("puts").is_empty());

        // The TaskManager is back: Flink is growing the job to 2.
        *answers.lock().expect("answers") = cluster(2, 1_000, 1, 2);
        let growing = target.describe("orders").await.expect("described");
        assert_eq!(growing.status, AppStatus::Updating, "{growing:?}");
        assert_eq!(growing.version_id, version_id(1_000, true));
        assert!(growing.version_id > state.version_id);

        // A scale-in accepted and not yet carried out is pending, even on
        // a cluster with no slot to spare.
        *answers.lock().expect("answers") = cluster(2, 2_000, 2, 1);
        let shrinking = target.describe("orders").await.expect("described");
        assert_eq!(shrinking.status, AppStatus::Updating, "{shrinking:?}");
        assert_eq!(shrinking.version_id, version_id(2_000, true));
    }

    /// An answer missing what it always carries (a proxy's, another
    /// version's) is unread, not read as zero: an `/overview` without
    /// `slots-total` refuses no rescale for want of slots (it would have
    /// held every scale-out at the running size for an hour), and a job
    /// without its `state` or with requirements that are no object is no
    /// job of unknown status (which dropped the agent's own update as
    /// ended) nor one with no vertices.
    #[tokio::test]
    async fn an_answer_without_what_it_always_carries_is_a_transient_failure() {
        let answers = Arc::new(Mutex::new(cluster(4, 1_000, 2, 2)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let state = target.describe("orders").await.expect("described");

        answers
            .lock()
            .expect("answers")
            .insert("/overview".into(), json!({"taskmanagers": 4}));
        match target.rescale("orders", 3, &state).await {
            Err(TargetError::Transient(message)) => {
                assert!(message.contains("answered no slots-total"), "{message}")
            }
            other => panic!("expected a transient failure, got {other:?}"),
        }
        assert!(puts.lock().expect("puts").is_empty(), "nothing sent");

        for (path, unreadable) in [
            (
                "/jobs/j1",
                json!({"jid": "j1", "name": "orders", "vertices": []}),
            ),
            ("/jobs/j1/resource-requirements", json!([])),
        ] {
            let mut broken = cluster(4, 1_000, 2, 2);
            broken.insert(path.to_owned(), unreadable);
            *answers.lock().expect("answers") = broken;
            match target.describe("orders").await {
                Err(TargetError::Transient(message)) => {
                    assert!(message.contains("not read as a job"), "{path}: {message}")
                }
                other => panic!("{path}: expected a transient failure, got {other:?}"),
            }
        }
    }

    /// A job of two slot sharing groups takes two slots per unit of
    /// parallelism: at 3 on 6 slots it has none to grow into, so a
    /// scale-out to 4 (8 slots) is refused before anything is sent, with 3
    /// as the ceiling, and requirements of 4 it runs below are no rescale
    /// pending forever. Another job's groups count each at its widest
    /// vertex. Counted at its widest vertex alone, the job "fitted" 4 in
    /// 6 slots, the PUT was sent, and the job read UPDATING for good.
    #[tokio::test]
    async fn a_job_of_several_slot_sharing_groups_takes_a_slot_in_each() {
        let mut answers = cluster(6, 1_000, 3, 3);
        for (i, group) in ["a", "a", "b"].iter().enumerate() {
            answers.get_mut("/jobs/j1").expect("the job")["vertices"][i]["slotSharingGroupId"] =
                json!(group);
        }
        let answers = Arc::new(Mutex::new(answers));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let described = target.describe_job("orders").await.expect("described");
        assert_eq!(
            described.shape,
            SlotShape {
                scaled: 2,
                fixed: 0
            }
        );
        let state = described.state;
        assert_eq!((state.status, state.parallelism), (AppStatus::Running, 3));
        match target.rescale("orders", 4, &state).await {
            Err(TargetError::SlotsExceeded { usable, message }) => {
                assert_eq!(usable, 3, "{message}");
                assert!(message.contains("needs 8 task slots"), "{message}");
            }
            other => panic!("expected SlotsExceeded, got {other:?}"),
        }
        assert!(puts.lock().expect("puts").is_empty());

        // Requirements of 4 (sent by hand), which 6 slots cannot carry.
        answers
            .lock()
            .expect("answers")
            .get_mut("/jobs/j1/resource-requirements")
            .expect("requirements")
            .as_object_mut()
            .expect("an object")
            .values_mut()
            .for_each(|r| r["parallelism"]["upperBound"] = json!(4));
        let short = target.describe("orders").await.expect("described");
        assert_eq!(short.status, AppStatus::Running, "{short:?}");
        // With 8 slots it could grow, and Flink grows it: under way.
        answers
            .lock()
            .expect("answers")
            .get_mut("/overview")
            .expect("overview")["slots-total"] = json!(8);
        let growing = target.describe("orders").await.expect("described");
        assert_eq!(growing.status, AppStatus::Updating, "{growing:?}");

        // Another job of groups at 2 and 1 holds 3 of 10.
        let mut answers = cluster(10, 1_000, 2, 2);
        with_another_job(
            &mut answers,
            json!([
                {"id": "w1", "parallelism": 2, "slotSharingGroupId": "x"},
                {"id": "w2", "parallelism": 1, "slotSharingGroupId": "x"},
                {"id": "w3", "parallelism": 1, "slotSharingGroupId": "y"}
            ]),
        );
        let url = fake_flink(Arc::new(Mutex::new(answers)), Arc::default()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let (free, words) = target.slots("j1").await.expect("counted");
        assert_eq!(free, 7, "{words}");
    }

    /// The slots of a job's shape: a group of non-parallel vertices alone
    /// takes one slot at any parallelism; the ceiling within a count of
    /// slots is the highest parallelism that fits.
    #[test]
    fn a_shape_counts_a_slot_per_group_and_one_for_a_non_parallel_group() {
        let vertices = [
            json!({"id": "src", "slotSharingGroupId": "a", "maxParallelism": 128}),
            json!({"id": "map", "slotSharingGroupId": "a", "maxParallelism": 128}),
            json!({"id": "agg", "slotSharingGroupId": "b", "maxParallelism": 128}),
            json!({"id": "commit", "slotSharingGroupId": "c", "maxParallelism": 1}),
        ];
        let shape = SlotShape::of(&vertices);
        assert_eq!(
            shape,
            SlotShape {
                scaled: 2,
                fixed: 1
            }
        );
        assert_eq!(shape.slots(4), 9);
        assert_eq!(shape.parallelism_within(9), 4);
        assert_eq!(shape.parallelism_within(10), 4);
        assert_eq!(shape.parallelism_within(0), 0);
        // Without the field (an older Flink): one group, Flink's default.
        let unsaid = [json!({"id": "v1"}), json!({"id": "v2"})];
        assert_eq!(
            SlotShape::of(&unsaid),
            SlotShape {
                scaled: 1,
                fixed: 0
            }
        );
        let only_fixed = SlotShape::of(&[json!({"id": "g", "maxParallelism": 1})]);
        assert_eq!(only_fixed.parallelism_within(1), u64::MAX);
        assert_eq!(only_fixed.parallelism_within(0), 0);
        assert_eq!(
            SlotShape {
                scaled: 3,
                fixed: 0
            }
            .slots(u64::MAX),
            u64::MAX
        );
    }

    /// On a cluster whose resource manager starts TaskManagers on demand
    /// (`execution.target` `kubernetes-*` or `yarn-*`), the slots
    /// registered now bound nothing: a scale-out past them is sent, and
    /// Flink starts the TaskManagers it needs. A standalone cluster's
    /// (`remote`) are counted as before.
    #[tokio::test]
    async fn a_cluster_that_starts_taskmanagers_on_demand_is_not_held_to_its_slots() {
        for (execution_target, sent) in [
            ("kubernetes-session", true),
            ("yarn-application", true),
            ("remote", false),
        ] {
            let mut answers = cluster(2, 1_000, 2, 2);
            answers.insert(
                "/jobmanager/config".to_owned(),
                json!([{"key": "jobmanager.scheduler", "value": "adaptive"},
                       {"key": "execution.target", "value": execution_target}]),
            );
            let puts = Arc::new(Mutex::new(Vec::new()));
            let url = fake_flink(Arc::new(Mutex::new(answers)), puts.clone()).await;
            let target = FlinkTarget::new(&url).expect("a target");
            let state = target.describe("orders").await.expect("described");
            let rescaled = target.rescale("orders", 4, &state).await;
            assert_eq!(rescaled.is_ok(), sent, "{execution_target}: {rescaled:?}");
            assert_eq!(
                puts.lock().expect("puts").len(),
                usize::from(sent),
                "{execution_target}"
            );
            let (_, words) = target.slots("j1").await.expect("read");
            assert_eq!(
                words.contains("starts TaskManagers as its jobs need them"),
                sent,
                "{execution_target}: {words}"
            );
        }
    }

    /// Adds to `answers` another running job, `j2`, of `vertices`.
    fn with_another_job(answers: &mut HashMap<String, Value>, vertices: Value) {
        answers.insert(
            "/jobs/overview".to_owned(),
            json!({"jobs": [
                {"jid": "j1", "name": "orders", "state": "RUNNING"},
                {"jid": "j2", "name": "other", "state": "RUNNING"}
            ]}),
        );
        answers.insert(
            "/jobs/j2".to_owned(),
            json!({"jid": "j2", "name": "other", "state": "RUNNING", "vertices": vertices}),
        );
    }

    /// Gives vertex `i` of job `j1` in `answers` the max parallelism
    /// `max(i)`.
    fn set_max_parallelism(answers: &mut HashMap<String, Value>, max: impl Fn(usize) -> u64) {
        let job = answers.get_mut("/jobs/j1").expect("the job");
        for (i, vertex) in job["vertices"]
            .as_array_mut()
            .expect("vertices")
            .iter_mut()
            .enumerate()
        {
            vertex["maxParallelism"] = json!(max(i));
        }
    }

    /// A job with a non-parallel vertex (`maxParallelism` 1: a
    /// `windowAll`, a global committer) scales around it: the rescale asks
    /// that vertex for 1 and the others for the new parallelism, and the
    /// job's ceiling is its parallel vertices' (it was 1, which refused
    /// every rescale, scale-ins included, and a PUT asking that vertex for
    /// more would have Flink refuse the whole rescale).
    #[tokio::test]
    async fn a_non_parallel_vertex_stays_at_1_and_bounds_nothing() {
        let mut answers = cluster(16, 1_000, 2, 2);
        set_max_parallelism(&mut answers, |i| if i == 2 { 1 } else { 128 });
        answers.get_mut("/jobs/j1").expect("the job")["vertices"][2]["parallelism"] = json!(1);
        let requirements = answers
            .get_mut("/jobs/j1/resource-requirements")
            .expect("requirements");
        requirements["v3"]["parallelism"]["upperBound"] = json!(1);
        let answers = Arc::new(Mutex::new(answers));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let DescribedJob {
            state,
            max_parallelism,
            ..
        } = target.describe_job("orders").await.expect("described");
        assert_eq!(max_parallelism, Some(128));
        assert_eq!((state.status, state.parallelism), (AppStatus::Running, 2));
        target.rescale("orders", 4, &state).await.expect("sent");
        let sent = answers.lock().expect("answers")["/jobs/j1/resource-requirements"].clone();
        let upper = |vid: &str| sent[vid]["parallelism"]["upperBound"].as_u64();
        assert_eq!(
            (upper("v1"), upper("v2"), upper("v3")),
            (Some(4), Some(4), Some(1))
        );
        assert_eq!(puts.lock().expect("puts").len(), 1);
    }

    /// A scale-in needs no slot: it is sent even when the free count (an
    /// other job counted at slots it does not hold) is below the new
    /// parallelism. It was refused "for want of slots" at every
    /// evaluation, and the job stayed where it was.
    #[tokio::test]
    async fn a_scale_in_is_never_refused_for_want_of_slots() {
        let mut answers = cluster(6, 1_000, 4, 4);
        with_another_job(&mut answers, json!([{"id": "w", "parallelism": 4}]));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(Arc::new(Mutex::new(answers)), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let state = target.describe("orders").await.expect("described");
        assert_eq!(state.parallelism, 4);
        target
            .rescale("orders", 3, &state)
            .await
            .expect("a scale-in is sent");
        assert_eq!(puts.lock().expect("puts").len(), 1);
    }

    /// A vertex whose subtasks all finished (a bounded source feeding a
    /// job that runs on) is settled: the job is RUNNING, not a rescale
    /// pending forever. And another job that cannot be read between the
    /// list and its details (gone, or failing) is skipped by the slot
    /// count instead of failing this job's own read.
    #[tokio::test]
    async fn a_finished_vertex_is_settled_and_an_unreadable_other_job_is_skipped() {
        let mut answers = cluster(8, 1_000, 2, 2);
        answers.get_mut("/jobs/j1").expect("the job")["vertices"][0]["status"] = json!("FINISHED");
        answers.insert(
            "/jobs/overview".to_owned(),
            json!({"jobs": [
                {"jid": "j1", "name": "orders", "state": "RUNNING"},
                {"jid": "gone", "name": "other", "state": "RUNNING"}
            ]}),
        );
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(Arc::new(Mutex::new(answers)), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let state = target.describe("orders").await.expect("described");
        assert_eq!(state.status, AppStatus::Running, "{state:?}");
        let (free, words) = target.slots("j1").await.expect("counted");
        assert_eq!(free, 8, "{words}");
        target.rescale("orders", 4, &state).await.expect("sent");
        assert_eq!(puts.lock().expect("puts").len(), 1);
    }

    /// Other jobs whose parallelism adds up past `u64::MAX` (an answer
    /// no real cluster gives, but a proxy's could) leave no slot free:
    /// the count saturates instead of overflowing.
    #[tokio::test]
    async fn other_jobs_of_absurd_parallelism_leave_no_slot_free() {
        let mut answers = cluster(4, 1_000, 1, 1);
        let mut listed = vec![json!({"jid": "j1", "name": "orders", "state": "RUNNING"})];
        for other in ["j2", "j3"] {
            listed.push(json!({"jid": other, "name": other, "state": "RUNNING"}));
            answers.insert(
                format!("/jobs/{other}"),
                json!({"jid": other, "name": other, "state": "RUNNING",
                       "vertices": [{"id": "v", "parallelism": u64::MAX}]}),
            );
        }
        answers.insert("/jobs/overview".to_owned(), json!({ "jobs": listed }));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(Arc::new(Mutex::new(answers)), puts).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let (free, words) = target.slots("j1").await.expect("counted");
        assert_eq!(free, 0, "{words}");
        assert!(
            words.ends_with(&format!(
                "has 4 task slots and its other jobs use {}",
                u64::MAX
            )),
            "{words}"
        );
    }

    /// A job whose vertices' max parallelism (key groups) is below the
    /// parallelism asked for: refused before anything is sent, with that
    /// max as the ceiling (Flink would answer 400 and leave the controller
    /// none); with too few slots as well, the lower of the two.
    #[tokio::test]
    async fn a_rescale_above_the_jobs_max_parallelism_is_refused_with_it_as_the_ceiling() {
        let with_max = |slots: u64| {
            let mut answers = cluster(slots, 1_000, 2, 2);
            set_max_parallelism(&mut answers, |i| if i == 1 { 6 } else { 128 });
            answers
        };
        let answers = Arc::new(Mutex::new(with_max(16)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let DescribedJob {
            state,
            job_id,
            max_parallelism,
            ..
        } = target.describe_job("orders").await.expect("described");
        assert_eq!(max_parallelism, Some(6));
        assert_eq!(state.identity.as_deref(), Some(job_id.as_str()));
        match target.rescale("orders", 8, &state).await {
            Err(TargetError::SlotsExceeded { usable, message }) => {
                assert_eq!(usable, 6, "{message}");
                assert_eq!(
                    message,
                    "parallelism 8 for job \"orders\" is above the job's max parallelism 6 \
                     (its key groups, fixed when the job was submitted: pipeline.max-parallelism)"
                );
            }
            other => panic!("expected SlotsExceeded, got {other:?}"),
        }
        assert!(puts.lock().expect("puts").is_empty());
        // At the max, the rescale is sent.
        target.rescale("orders", 6, &state).await.expect("sent");
        assert_eq!(puts.lock().expect("puts").len(), 1);

        // Four slots and a max of 6: the slots are the ceiling, both said.
        *answers.lock().expect("answers") = with_max(4);
        let state = target.describe("orders").await.expect("described");
        match target.rescale("orders", 8, &state).await {
            Err(TargetError::SlotsExceeded { usable, message }) => {
                assert_eq!(usable, 4, "{message}");
                assert!(message.contains("needs 8 task slots, but"), "{message}");
                assert!(
                    message.contains(", and is above the job's max parallelism 6"),
                    "{message}"
                );
            }
            other => panic!("expected SlotsExceeded, got {other:?}"),
        }
    }

    /// What the controller tells a replaced job and a lost PUT under
    /// Flink's own restart apart by: the job id is the identity, and the
    /// requirements' upper bound is what the job asks for, which a
    /// restart leaves as it was and a PUT that took moves.
    #[tokio::test]
    async fn the_job_id_is_the_identity_and_the_requirements_say_what_is_asked() {
        let lost = json!({"status": "503 Service Unavailable", "apply": false});
        let answers = Arc::new(Mutex::new(cluster(4, 1_000, 2, 2)));
        answers
            .lock()
            .expect("answers")
            .insert("PUT".to_owned(), lost);
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts.clone()).await;
        let target = FlinkTarget::new(&url).expect("a target");

        let state = target.describe("orders").await.expect("described");
        assert_eq!(state.identity.as_deref(), Some("j1"));
        assert_eq!(state.asked_kpu, Some(2));
        // The PUT never reaches Flink, which restarts the job meanwhile:
        // a new graph, the same requirements.
        match target.rescale("orders", 4, &state).await {
            Err(TargetError::Transient(message)) => assert!(message.contains("503"), "{message}"),
            other => panic!("expected Transient, got {other:?}"),
        }
        *answers.lock().expect("answers") = job("j1", "RESTARTING", 4, 2_000, 2, 2);
        let restarted = target.describe("orders").await.expect("described");
        assert!(restarted.version_id > state.version_id, "{restarted:?}");
        assert_eq!(restarted.status, AppStatus::Updating);
        assert_eq!(restarted.identity.as_deref(), Some("j1"));
        assert_eq!(restarted.asked_kpu, Some(2));

        // A PUT that reaches Flink (its answer lost): the job asks for 4.
        *answers.lock().expect("answers") = cluster(4, 2_000, 2, 2);
        answers.lock().expect("answers").insert(
            "PUT".to_owned(),
            json!({"status": "502 Bad Gateway", "apply": true}),
        );
        let state = target.describe("orders").await.expect("described");
        target.rescale("orders", 4, &state).await.expect("taken");
        let taken = target.describe("orders").await.expect("described");
        assert_eq!(taken.asked_kpu, Some(4));
        assert_eq!(taken.identity.as_deref(), Some("j1"));

        // Submitted again under its name: another job id.
        *answers.lock().expect("answers") = job("j2", "RUNNING", 4, 3_000, 2, 2);
        let replaced = target.describe("orders").await.expect("described");
        assert_eq!(replaced.identity.as_deref(), Some("j2"));
        assert_eq!(replaced.asked_kpu, Some(2));
    }

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

    /// While Flink builds the next graph of a job, `GET /jobs/{id}` may
    /// show a placeholder dated from the job's submission: the version id
    /// does not fall back below the graph read before (which a rescale
    /// quoted), but moves past it as a change under way, and the new graph
    /// moves it further. Another job's graphs are its own.
    #[tokio::test]
    async fn a_placeholder_graph_while_flink_builds_the_next_does_not_move_the_version_back() {
        let answers = Arc::new(Mutex::new(cluster(2, 5_000, 1, 1)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let quoted = target.describe("orders").await.expect("described");
        assert_eq!(quoted.version_id, version_id(5_000, false));

        // Rescaling to 2: the placeholder, dated from the submission.
        *answers.lock().expect("answers") = job("j1", "INITIALIZING", 2, 1_000, 2, 2);
        let building = target.describe("orders").await.expect("described");
        assert_eq!(building.status, AppStatus::Starting, "{building:?}");
        assert_eq!(building.version_id, version_id(5_000, true), "{building:?}");
        assert!(building.version_id > quoted.version_id);
        assert_eq!(building.last_update_ms, Some(5_000));

        *answers.lock().expect("answers") = cluster(2, 6_000, 2, 2);
        let rebuilt = target.describe("orders").await.expect("described");
        assert_eq!(rebuilt.status, AppStatus::Running, "{rebuilt:?}");
        assert_eq!(rebuilt.version_id, version_id(6_000, false));

        // A job submitted again under the name has graphs of its own.
        *answers.lock().expect("answers") = job("j2", "RUNNING", 2, 3_000, 2, 2);
        let other = target.describe("orders").await.expect("described");
        assert_eq!(other.version_id, version_id(3_000, false), "{other:?}");
    }

    /// A JobManager whose clock went back (an NTP step, a failover to one
    /// whose clock lags) dates its new graphs before the ones already
    /// read. Each graph that runs still moves the version on, so a rescale
    /// carried out reads as done (above the version its PUT left), not as
    /// one that never took effect; a placeholder in between still does not
    /// move it; and once the clock passes the newest graph read, the
    /// graphs' own times count again.
    #[tokio::test]
    async fn graphs_dated_before_one_already_read_still_move_the_version_on() {
        let answers = Arc::new(Mutex::new(cluster(2, 5_000, 1, 1)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = fake_flink(answers.clone(), puts).await;
        let target = FlinkTarget::new(&url).expect("a target");
        let describe = || async { target.describe("orders").await.expect("described") };
        let set = |a| *answers.lock().expect("answers") = a;
        assert_eq!(describe().await.version_id, version_id(5_000, false));

        // A rescale to 2 accepted, then a placeholder, then the new graph,
        // dated by a clock that went back 2 s.
        set(cluster(2, 5_000, 1, 2));
        let accepted = describe().await.version_id;
        assert_eq!(accepted, version_id(5_000, true));
        set(job("j1", "INITIALIZING", 2, 1_000, 2, 2));
        assert_eq!(describe().await.version_id, accepted);
        set(cluster(2, 3_000, 2, 2));
        let rebuilt = describe().await;
        assert_eq!(rebuilt.status, AppStatus::Running, "{rebuilt:?}");
        assert_eq!(rebuilt.parallelism, 2);
        assert_eq!(rebuilt.version_id, version_id(5_001, false));
        assert!(rebuilt.version_id > accepted);
        // The same graph read again is the same version.
        assert_eq!(describe().await.version_id, rebuilt.version_id);

        // The next rescale (to 1) moves it on again, still behind.
        set(cluster(2, 3_000, 2, 1));
        assert_eq!(describe().await.version_id, version_id(5_001, true));
        set(cluster(2, 3_500, 1, 1));
        assert_eq!(describe().await.version_id, version_id(5_002, false));

        // The clock caught up: the graph's own time again.
        set(cluster(2, 7_000, 1, 1));
        assert_eq!(describe().await.version_id, version_id(7_000, false));

        // A stale answer of a running graph read before (a JobManager
        // answering from its cache) is no state at all: read again. The
        // version neither falls back nor moves on.
        set(cluster(2, 3_500, 1, 1));
        match target.describe("orders").await {
            Err(TargetError::Transient(message)) => {
                assert!(message.contains("a stale answer"), "{message}");
            }
            other => panic!("a stale graph: {other:?}"),
        }
        set(cluster(2, 7_000, 1, 1));
        let fresh = describe().await;
        assert_eq!(fresh.version_id, version_id(7_000, false));
        assert_eq!(fresh.status, AppStatus::Running, "{fresh:?}");
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

    /// A JobManager without the resource-requirements route (Flink before
    /// 1.18, or a proxy that filters paths) answers its router's 404
    /// `Not found: /jobs/...` (older routers and proxies: `Not found.`)
    /// for a job just read: the API is missing, and the error says so (it
    /// said "not found" and to check `job_name`). A job that is gone is
    /// not found by `GET /jobs/{id}` itself; one that ended between the
    /// two reads is answered 500 by the route's handler, transient.
    #[tokio::test]
    async fn a_jobmanager_without_the_requirements_route_is_named_for_what_it_lacks() {
        let id = "c".repeat(32);
        for (status, error) in [
            (404, format!("Not found: /jobs/{id}/resource-requirements")),
            (404, "Not found.".to_owned()),
            (500, "Internal server error.".to_owned()),
        ] {
            let (id_in, error_in) = (id.clone(), error.clone());
            let stub = crate::flink::stub::Stub::start(move |line| {
                let path = line.split(' ').nth(1).unwrap_or_default();
                if path == format!("/jobs/{id_in}") {
                    (
                        200,
                        json!({
                            "state": "RUNNING",
                            "timestamps": {"CREATED": 1_700_000_000_000_u64},
                            "vertices": [{"id": "v1", "parallelism": 2, "status": "RUNNING"}],
                        }),
                    )
                } else {
                    (status, json!({"errors": [error_in.clone()]}))
                }
            })
            .await;
            let target =
                FlinkTarget::for_job(&stub.url, FlinkJob::Id(id.clone())).expect("a target");
            match (status, target.describe("orders").await) {
                (404, Err(TargetError::Invalid(message))) => assert!(
                    message.contains("no resource-requirements route")
                        && message.contains("Flink 1.18 or later"),
                    "{message}"
                ),
                (500, Err(TargetError::Transient(_))) => {}
                other => panic!("{error}: {other:?}"),
            }
        }
        let gone =
            crate::flink::stub::Stub::start(|_| (404, json!({"errors": ["Job d not found"]})))
                .await;
        let target =
            FlinkTarget::for_job(&gone.url, FlinkJob::Id("d".repeat(32))).expect("a target");
        let missing = target.describe("orders").await;
        assert!(
            matches!(missing, Err(TargetError::NotFound(_))),
            "{missing:?}"
        );
    }

    /// A running job whose vertices' parallelism cannot be read (none
    /// listed, -1, 2.5, "2", 1e20, 0) is an error, not a job at
    /// parallelism 0 that the controller would bring up to its minimum; a
    /// job being built may show them so and is read as busy.
    #[tokio::test]
    async fn a_running_job_whose_parallelism_cannot_be_read_is_not_read_as_zero() {
        let id = "b".repeat(32);
        let answer = Arc::new(Mutex::new(json!(null)));
        let (id_in, answer_in) = (id.clone(), answer.clone());
        let stub = crate::flink::stub::Stub::start(move |line| {
            let path = line.split(' ').nth(1).unwrap_or_default();
            match path {
                p if p == format!("/jobs/{id_in}") => {
                    (200, answer_in.lock().expect("the answer").clone())
                }
                p if p == format!("/jobs/{id_in}/resource-requirements") => (200, json!({})),
                _ => (404, json!({"errors": ["Not found."]})),
            }
        })
        .await;
        let target = FlinkTarget::for_job(&stub.url, FlinkJob::Id(id)).expect("a target");
        let with = |state: &str, vertices: Value| {
            *answer.lock().expect("the answer") = json!({
                "state": state,
                "timestamps": {"CREATED": 1_700_000_000_000_u64},
                "vertices": vertices,
            });
        };
        for parallelism in [json!(-1), json!(2.5), json!("2"), json!(1e20), json!(0)] {
            with(
                "RUNNING",
                json!([
                    {"id": "v1", "parallelism": 2, "status": "RUNNING"},
                    {"id": "v2", "parallelism": parallelism, "status": "RUNNING"},
                ]),
            );
            match target.describe("orders").await {
                Err(TargetError::Transient(message)) => assert!(
                    message.contains(&format!("vertex \"v2\" at parallelism {parallelism}"))
                        && message.contains("not read as a size"),
                    "{message}"
                ),
                other => panic!("parallelism {parallelism}: {other:?}"),
            }
        }
        with("RUNNING", json!([]));
        let none = target.describe("orders").await;
        assert!(
            matches!(&none, Err(TargetError::Transient(m)) if m.contains("with no vertices")),
            "{none:?}"
        );
        with(
            "INITIALIZING",
            json!([{"id": "v1", "parallelism": -1, "status": "CREATED"}]),
        );
        let building = target.describe("orders").await.expect("a job being built");
        assert_eq!(building.status, AppStatus::Starting, "{building:?}");
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

    /// A job that failed (a TaskManager died, no restart strategy) is not
    /// found, and the error says what became of it; a job of that name
    /// submitted again (a new id) is found, and the log says the agent now
    /// follows another job.
    #[test]
    fn a_failed_job_is_named_and_a_new_job_of_its_name_is_said() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let answers = Arc::new(Mutex::new(job("j1", "RUNNING", 2, 1_000, 2, 2)));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = runtime.block_on(fake_flink(answers.clone(), puts));
        let target = FlinkTarget::new(&url).expect("a target");
        let mut failed = None;
        let logs = crate::telemetry::captured_logs(false, || {
            runtime.block_on(async {
                target.describe("orders").await.expect("j1 described");
                *answers.lock().expect("answers") = job("j1", "FAILED", 1, 1_000, 2, 2);
                failed = Some(target.describe("orders").await);
                *answers.lock().expect("answers") = job("j2", "RUNNING", 1, 5_000, 1, 1);
                let state = target.describe("orders").await.expect("j2 described");
                assert_eq!(state.status, AppStatus::Running);
                assert_eq!(state.version_id, version_id(5_000, false));
                target.describe("orders").await.expect("j2 described again");
            });
        });
        match failed {
            Some(Err(TargetError::NotFound(message))) => assert!(
                message.contains("no running job named \"orders\"")
                    && message.contains("(the newest job of that name, j1, is FAILED)"),
                "{message}"
            ),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let following: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("Following another job"))
            .collect();
        assert_eq!(following.len(), 1, "{logs}");
        assert!(
            following[0].contains(" job_id=\"j2\"")
                && following[0].contains(" previous_job_id=\"j1\""),
            "{logs}"
        );
    }

    /// A proxy answers a PUT of the requirements with 502 after Flink took
    /// it: the read-back shows the requirements sent, so the rescale is
    /// accepted (pending), not sent twice, and the log says what the
    /// answer was. One that did not reach Flink is the transient error,
    /// with the proxy's status, and nothing more is sent.
    #[test]
    fn a_5xx_to_a_put_that_took_is_accepted_once_and_logged() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let answers = Arc::new(Mutex::new(cluster(2, 1_000, 1, 1)));
        answers.lock().expect("answers").insert(
            "PUT".to_owned(),
            json!({"status": "502 Bad Gateway", "apply": true}),
        );
        let puts = Arc::new(Mutex::new(Vec::new()));
        let url = runtime.block_on(fake_flink(answers.clone(), puts.clone()));
        let target = FlinkTarget::new(&url).expect("a target");
        let logs = crate::telemetry::captured_logs(false, || {
            runtime.block_on(async {
                let state = target.describe("orders").await.expect("described");
                let version = target.rescale("orders", 2, &state).await.expect("taken");
                assert_eq!(version, version_id(1_000, true));
                assert_eq!(puts.lock().expect("puts").len(), 1);
                // Flink holds it: a retry on the new state sends nothing.
                let pending = target.describe("orders").await.expect("described");
                assert_eq!(pending.version_id, version);
            });
        });
        let taken: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("PUT answered with an error, but Flink holds"))
            .collect();
        assert_eq!(taken.len(), 1, "{logs}");
        assert!(
            taken[0].contains("502") && taken[0].contains("parallelism=2"),
            "{logs}"
        );

        // Not forwarded: the error, one PUT, requirements unchanged.
        *answers.lock().expect("answers") = cluster(2, 1_000, 1, 1);
        answers.lock().expect("answers").insert(
            "PUT".to_owned(),
            json!({"status": "503 Service Unavailable", "apply": false}),
        );
        puts.lock().expect("puts").clear();
        runtime.block_on(async {
            let state = target.describe("orders").await.expect("described");
            match target.rescale("orders", 2, &state).await {
                Err(TargetError::Transient(message)) => {
                    assert!(message.contains("503"), "{message}");
                }
                other => panic!("expected Transient, got {other:?}"),
            }
        });
        assert_eq!(puts.lock().expect("puts").len(), 1);
    }
}
