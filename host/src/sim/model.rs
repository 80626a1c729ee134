//! The workload model of one application, one step per simulated second
//! (`docs/SIMULATION.md`, "Model"), and its UpdateApplication semantics.
//!
//! Step t covers [t, t+1): its input rate is the trace at t, its arrivals are
//! uniform within the step, and its lag, backlog and KPU are sampled at its
//! end. The lag is the exact FIFO age of the oldest unprocessed record,
//! found by inverting the piecewise-linear cumulative arrivals; only the
//! breakpoints not yet passed by the processed count are kept, so a long
//! run costs memory only while a backlog lasts.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use super::publish::{self, MetricKind, Statistic};
use super::scenario::{AppParams, Past, ScenarioApp, SourceNames};
use super::trace::Trace;
use crate::random::gaussian;
use crate::target::AppStatus;

/// An error of the MSF API, as AWS names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct ApiError {
    /// Which error.
    pub kind: ApiErrorKind,
    /// The human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The AWS error code, e.g. `ResourceInUseException`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// The errors the model can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// No application of that name.
    ResourceNotFound,
    /// The application is not RUNNING.
    ResourceInUse,
    /// The version id given is not the current one.
    ConcurrentModification,
    /// A parameter is out of range.
    InvalidArgument,
    /// The KPU asked for is above the application's KPU quota.
    LimitExceeded,
    /// A CloudWatch parameter is invalid (statistic, period).
    InvalidParameterValue,
}

impl ApiErrorKind {
    /// The AWS error code (the `__type` of a JSON error).
    pub fn code(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::ConcurrentModification => "ConcurrentModificationException",
            Self::InvalidArgument => "InvalidArgumentException",
            Self::LimitExceeded => "LimitExceededException",
            Self::InvalidParameterValue => "InvalidParameterValue",
        }
    }

    /// The HTTP status AWS answers this error with.
    pub fn http_status(self) -> u16 {
        400
    }
}

/// What DescribeApplication (and UpdateApplication) shows of an application.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppView {
    /// The application's name.
    pub name: String,
    /// `arn:aws:kinesisanalytics:us-east-1:123456789012:application/NAME`.
    pub arn: String,
    /// Status: the model is only ever RUNNING, UPDATING or (after an update
    /// past `rollback_above_parallelism`) ROLLING_BACK.
    pub status: AppStatus,
    /// The runtime, `FLINK-1_20`.
    pub runtime_environment: &'static str,
    /// The parallelism in effect (the old one while UPDATING).
    pub parallelism: u32,
    /// The ParallelismPerKPU in effect.
    pub parallelism_per_kpu: u32,
    /// The KPU in effect: ceil(parallelism / parallelism_per_kpu).
    pub kpu: u32,
    /// ApplicationVersionId.
    pub version_id: u64,
    /// ApplicationVersionRolledBackFrom: the version the latest system
    /// rollback reverted from, if any.
    pub rolled_back_from: Option<u64>,
    /// MSF's own AutoScalingEnabled flag (stored and reported; the model does
    /// not autoscale).
    pub autoscaling_enabled: bool,
    /// CreateTimestamp, milliseconds since the Unix epoch.
    pub create_timestamp_ms: i64,
    /// LastUpdateTimestamp, milliseconds since the Unix epoch.
    pub last_update_timestamp_ms: Option<i64>,
}

/// One successful UpdateApplication.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct UpdateEvent {
    /// The simulated second at which it was accepted (the first UPDATING step).
    pub t_secs: u64,
    /// KPU before.
    pub from_kpu: u32,
    /// KPU after.
    pub to_kpu: u32,
    /// Parallelism before.
    pub from_parallelism: u32,
    /// Parallelism after.
    pub to_parallelism: u32,
    /// It did not start at its size: MSF's system rollback restored the
    /// old one (`rollback_above_parallelism`). Its downtime was paid all
    /// the same (twice: UPDATING, then ROLLING_BACK).
    pub rolled_back: bool,
}

/// One second of a run, as sampled at its end.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sample {
    /// The step: it covers [t, t+1).
    pub t_secs: u64,
    /// Input rate, records/s.
    pub lambda: f64,
    /// Capacity, records/s (of the parallelism in effect during the step).
    pub capacity: f64,
    /// Records processed in the step.
    pub processed: f64,
    /// Backlog at the end of the step, records.
    pub backlog: f64,
    /// FIFO lag at the end of the step, seconds.
    pub lag_secs: f64,
    /// KPU at the end of the step.
    pub kpu: u32,
    /// KPU billed for the step (while UPDATING the larger of old and new).
    pub billed_kpu: u32,
    /// Whether the step was UPDATING (nothing processed).
    pub updating: bool,
    /// The containerCPUUtilization sample, percent.
    pub cpu_percent: f64,
}

impl Sample {
    /// Utilisation processed / capacity (0 while UPDATING).
    pub fn utilisation(&self) -> f64 {
        utilisation(self.processed, self.capacity, self.updating)
    }
}

/// Utilisation processed / capacity of a step (0 while UPDATING or
/// without capacity).
fn utilisation(processed: f64, capacity: f64, updating: bool) -> f64 {
    if updating || capacity <= 0.0 {
        0.0
    } else {
        processed / capacity
    }
}

/// The per-second history of one application, column by column (compact:
/// a 7-day run is 604800 rows).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct History {
    /// Input rate per step, records/s.
    pub lambda: Vec<f64>,
    /// Capacity per step, records/s.
    pub capacity: Vec<f64>,
    /// Records processed per step.
    pub processed: Vec<f64>,
    /// Backlog at the end of each step.
    pub backlog: Vec<f64>,
    /// FIFO lag at the end of each step, seconds.
    pub lag_secs: Vec<f64>,
    /// KPU at the end of each step.
    pub kpu: Vec<u32>,
    /// KPU billed for each step.
    pub billed_kpu: Vec<u32>,
    /// Whether each step was UPDATING.
    pub updating: Vec<bool>,
    /// How the containerCPUUtilization samples are drawn from the other
    /// columns ([`History::cpu_percent`]).
    pub cpu: CpuNoise,
    /// Every successful UpdateApplication.
    pub updates: Vec<UpdateEvent>,
}

/// The containerCPUUtilization model: idle plus the busy share of the rest,
/// plus seeded Gaussian noise, per step. A sample is computed when read
/// rather than stored: most policies never read CPU, and a Gaussian per
/// simulated second (a logarithm and a cosine) was 6 % of a 7-day
/// `simulate` of `predictive`, which also models 15 days of history.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CpuNoise {
    /// CPU percent of an idle job.
    pub idle_percent: f64,
    /// Standard deviation of the noise, percent.
    pub noise_percent: f64,
    /// The noise's seed.
    pub seed: u64,
}

impl CpuNoise {
    /// The CPU model of `params`.
    pub fn of(params: &AppParams) -> Self {
        Self {
            idle_percent: params.cpu_idle_percent,
            noise_percent: params.noise_percent,
            seed: params.seed,
        }
    }

    /// The sample of step `t` at utilisation `u`, as a percent in [0, 100]
    /// (kept to `f32`, the precision the model has always published).
    pub fn sample(&self, t: u64, u: f64) -> f64 {
        let idle = self.idle_percent;
        let cpu = (idle + (100.0 - idle) * u + self.noise_percent * gaussian(self.seed, t))
            .clamp(0.0, 100.0);
        f64::from(cpu as f32)
    }
}

impl History {
    /// Number of steps recorded.
    pub fn len(&self) -> usize {
        self.lambda.len()
    }

    /// Whether no step was recorded.
    pub fn is_empty(&self) -> bool {
        self.lambda.is_empty()
    }

    /// The sample of step `t_secs`.
    pub fn get(&self, t_secs: u64) -> Option<Sample> {
        let i = usize::try_from(t_secs).ok()?;
        Some(Sample {
            t_secs,
            lambda: *self.lambda.get(i)?,
            capacity: *self.capacity.get(i)?,
            processed: *self.processed.get(i)?,
            backlog: *self.backlog.get(i)?,
            lag_secs: *self.lag_secs.get(i)?,
            kpu: *self.kpu.get(i)?,
            billed_kpu: *self.billed_kpu.get(i)?,
            updating: *self.updating.get(i)?,
            cpu_percent: self.cpu_percent(i)?,
        })
    }

    /// The containerCPUUtilization sample of step `i` (meaningless while
    /// UPDATING), from its utilisation and [`History::cpu`].
    pub fn cpu_percent(&self, i: usize) -> Option<f64> {
        let u = utilisation(
            *self.processed.get(i)?,
            *self.capacity.get(i)?,
            *self.updating.get(i)?,
        );
        Some(self.cpu.sample(i as u64, u))
    }

    /// The last step's sample.
    pub fn last(&self) -> Option<Sample> {
        self.len().checked_sub(1).and_then(|i| self.get(i as u64))
    }
}

/// An update in progress.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// First step that is RUNNING again.
    until_secs: u64,
    parallelism: u32,
    parallelism_per_kpu: u32,
    /// Whether this is the system rollback of a failed update (ROLLING_BACK
    /// to `parallelism`, the old size), not an update (UPDATING).
    rollback: bool,
}

/// The state of one simulated application.
#[derive(Debug, Clone)]
pub struct AppModel {
    name: String,
    params: AppParams,
    sources: SourceNames,
    trace: Arc<Trace>,
    trace_cursor: usize,
    load_factor: f64,
    create_timestamp_ms: i64,
    last_update_timestamp_ms: Option<i64>,
    parallelism: u32,
    parallelism_per_kpu: u32,
    version_id: u64,
    /// ApplicationVersionRolledBackFrom: the version the latest rollback
    /// reverted from.
    rolled_back_from: Option<u64>,
    autoscaling_enabled: bool,
    pending: Option<Pending>,
    /// Steps done: the model stands at time `now_secs`.
    now_secs: u64,
    backlog: f64,
    /// Cumulative arrivals A(now).
    arrived: f64,
    /// Breakpoints (time, A(time)) of the arrivals, from the segment holding
    /// the oldest unprocessed record to now.
    arrivals: VecDeque<(f64, f64)>,
    /// Capacity of each parallelism 1..=256, so a step does no division.
    capacity_by_parallelism: Vec<f64>,
    history: History,
    /// What the scenario says the application published before t = 0, and
    /// its history, run on first use (only an agent that reads history
    /// pays for it).
    past: Option<(Past, OnceLock<Arc<History>>)>,
}

/// Largest parallelism MSF accepts.
pub const MAX_PARALLELISM_API: u32 = 256;
/// Largest ParallelismPerKPU MSF accepts.
pub const MAX_PARALLELISM_PER_KPU_API: u32 = 8;

impl AppModel {
    /// An application at t = 0 as the scenario describes it; `start_epoch_ms`
    /// is its CreateTimestamp.
    pub fn new(app: &ScenarioApp, start_epoch_ms: i64) -> Self {
        let params = app.params.clone();
        let capacity_by_parallelism = (0..=MAX_PARALLELISM_API)
            .map(|p| params.capacity(p))
            .collect();
        let parallelism =
            (params.initial_kpu * params.parallelism_per_kpu).clamp(1, MAX_PARALLELISM_API);
        Self {
            name: app.name.clone(),
            parallelism_per_kpu: params.parallelism_per_kpu,
            params,
            sources: app.sources.clone(),
            trace: app.trace.clone(),
            trace_cursor: 0,
            load_factor: app.load_factor,
            create_timestamp_ms: start_epoch_ms,
            last_update_timestamp_ms: None,
            parallelism,
            version_id: 1,
            rolled_back_from: None,
            autoscaling_enabled: false,
            pending: None,
            now_secs: 0,
            backlog: 0.0,
            arrived: 0.0,
            arrivals: VecDeque::from([(0.0, 0.0)]),
            capacity_by_parallelism,
            history: History {
                cpu: CpuNoise::of(&app.params),
                ..History::default()
            },
            past: app.past.map(|p| (p, OnceLock::new())),
        }
    }

    /// The statistic of `kind` over the model time `model_ms` from the past
    /// the scenario publishes before t = 0 (see [`Past`]): `None` when the
    /// span is not wholly before t = 0, the scenario has no past, or no
    /// sample of it lies in the span.
    pub fn past_value(
        &self,
        kind: MetricKind,
        statistic: Statistic,
        model_ms: std::ops::Range<i64>,
        buffer: &mut Vec<f64>,
    ) -> Option<f64> {
        let (past, history) = self.past.as_ref()?;
        if model_ms.end > self.create_timestamp_ms {
            return None;
        }
        let past_start_ms = self.create_timestamp_ms - past.secs as i64 * 1000;
        let history = history.get_or_init(|| Arc::new(self.run_past(*past)));
        let step = |ms: i64| -(-(ms - past_start_ms)).div_euclid(1000);
        publish::period_value(
            history,
            &self.params,
            kind,
            statistic,
            step(model_ms.start)..step(model_ms.end),
            buffer,
        )
    }

    /// Whether the scenario publishes a past before t = 0.
    pub fn has_past(&self) -> bool {
        self.past.is_some()
    }

    /// GetMetricData's datapoints from the past the scenario publishes (see
    /// [`Past`]): one per `period_ms` period (wall time, epoch-aligned)
    /// whose start lies in `[start_ms, end_ms)`, that ends by step 0 (a
    /// period straddling it is the run's) and that is published by the
    /// model time `as_of_model_ms` (its end plus the publication delay, as
    /// the run's periods are: the last minute before step 0 is not there
    /// yet at step 0). Oldest first; empty without a past.
    pub fn past_datapoints(
        &self,
        kind: MetricKind,
        statistic: Statistic,
        period_ms: i64,
        (start_ms, end_ms): (i64, i64),
        as_of_model_ms: i64,
        time: &super::TimeMap,
    ) -> Vec<crate::metrics::Datapoint> {
        let mut out = Vec::new();
        if self.past.is_none() {
            return out;
        }
        let delay_ms = i64::from(self.params.metric_delay_secs) * 1000;
        let mut buffer = Vec::new();
        // Periods wholly before the past hold nothing: skip them unvisited.
        let past_start = self
            .past
            .as_ref()
            .map_or(self.create_timestamp_ms, |(past, _)| {
                self.create_timestamp_ms - past.secs as i64 * 1000
            });
        let first = time.to_wall_ms(past_start).div_euclid(period_ms) * period_ms;
        let mut period_start = (start_ms.div_euclid(period_ms) * period_ms).max(first);
        while period_start < end_ms {
            // A range at the end of what i64 milliseconds hold has no
            // period past it.
            let Some(period_end) = period_start.checked_add(period_ms) else {
                break;
            };
            let model = time.to_model_ms(period_start)..time.to_model_ms(period_end);
            if model.end > self.create_timestamp_ms
                || model.end.saturating_add(delay_ms) > as_of_model_ms
            {
                break;
            }
            if let Some(value) = self.past_value(kind, statistic, model, &mut buffer) {
                out.push(crate::metrics::Datapoint {
                    timestamp_ms: period_start,
                    value,
                });
            }
            period_start = period_end;
        }
        out
    }

    /// Runs the application through its past: under the trace repeated
    /// backwards, at the smallest KPU (within its bounds) that carries the
    /// past's peak, with no update: a past in which it kept up, whose
    /// metrics show the input rate as it was.
    fn run_past(&self, past: Past) -> History {
        let trace = self.trace.periodic_before(past.secs, past.period_secs);
        let peak = self.load_factor * trace.points().iter().map(|p| p.1).fold(0.0, f64::max);
        let per_kpu = self.params.parallelism_per_kpu.max(1);
        let carries = |kpu: u32| {
            let parallelism = kpu.saturating_mul(per_kpu).clamp(1, MAX_PARALLELISM_API);
            self.params.capacity(parallelism) >= peak
        };
        let mut params = self.params.clone();
        params.initial_kpu = (params.min_kpu..=params.max_kpu)
            .find(|&kpu| carries(kpu))
            .unwrap_or(params.max_kpu);
        let app = ScenarioApp {
            name: self.name.clone(),
            params,
            trace: Arc::new(trace),
            load_factor: self.load_factor,
            sources: self.sources.clone(),
            past: None,
        };
        let mut model = AppModel::new(&app, self.create_timestamp_ms - past.secs as i64 * 1000);
        model.advance_to(past.secs);
        model.history
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its parameters.
    pub fn params(&self) -> &AppParams {
        &self.params
    }

    /// Its source-system dimension values.
    pub fn sources(&self) -> &SourceNames {
        &self.sources
    }

    /// Its history so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The load factor in effect.
    pub fn load_factor(&self) -> f64 {
        self.load_factor
    }

    /// Changes the load factor for the steps still to come.
    pub fn set_load_factor(&mut self, factor: f64) {
        if factor.is_finite() && factor >= 0.0 {
            self.load_factor = factor;
        }
    }

    /// The simulated second the model stands at (steps done).
    pub fn now_secs(&self) -> u64 {
        self.now_secs
    }

    /// The current status.
    pub fn status(&self) -> AppStatus {
        match self.pending {
            Some(Pending { rollback: true, .. }) => AppStatus::RollingBack,
            Some(_) => AppStatus::Updating,
            None => AppStatus::Running,
        }
    }

    /// The KPU of a parallelism.
    pub fn kpu_of(parallelism: u32, parallelism_per_kpu: u32) -> u32 {
        parallelism.div_ceil(parallelism_per_kpu.max(1))
    }

    /// What DescribeApplication shows now.
    pub fn view(&self) -> AppView {
        AppView {
            name: self.name.clone(),
            arn: format!(
                "arn:aws:kinesisanalytics:us-east-1:123456789012:application/{}",
                self.name
            ),
            status: self.status(),
            runtime_environment: "FLINK-1_20",
            parallelism: self.parallelism,
            parallelism_per_kpu: self.parallelism_per_kpu,
            kpu: Self::kpu_of(self.parallelism, self.parallelism_per_kpu),
            version_id: self.version_id,
            rolled_back_from: self.rolled_back_from,
            autoscaling_enabled: self.autoscaling_enabled,
            create_timestamp_ms: self.create_timestamp_ms,
            last_update_timestamp_ms: self.last_update_timestamp_ms,
        }
    }

    /// UpdateApplication at the current time (`docs/SIMULATION.md`: only while
    /// RUNNING, matching version id, parallelism 1..=256, ParallelismPerKPU
    /// 1..=8, KPU within the KPU quota). `now_ms` is its
    /// LastUpdateTimestamp.
    pub fn update(
        &mut self,
        current_version_id: u64,
        parallelism: Option<u32>,
        parallelism_per_kpu: Option<u32>,
        autoscaling_enabled: Option<bool>,
        now_ms: i64,
    ) -> Result<AppView, ApiError> {
        if self.pending.is_some() {
            return Err(ApiError::new(
                ApiErrorKind::ResourceInUse,
                format!(
                    "Application {} is in {} status; it must be RUNNING to be updated.",
                    self.name,
                    self.status()
                ),
            ));
        }
        if current_version_id != self.version_id {
            return Err(ApiError::new(
                ApiErrorKind::ConcurrentModification,
                format!(
                    "Current application version id {current_version_id} does not match the latest application version id {}.",
                    self.version_id
                ),
            ));
        }
        if parallelism.is_none() && parallelism_per_kpu.is_none() && autoscaling_enabled.is_none() {
            return Err(ApiError::new(
                ApiErrorKind::InvalidArgument,
                "The update changes nothing: give Parallelism, ParallelismPerKPU or AutoScalingEnabled.",
            ));
        }
        let new_parallelism = parallelism.unwrap_or(self.parallelism);
        let new_ppk = parallelism_per_kpu.unwrap_or(self.parallelism_per_kpu);
        if !(1..=MAX_PARALLELISM_API).contains(&new_parallelism) {
            return Err(ApiError::new(
                ApiErrorKind::InvalidArgument,
                format!(
                    "Parallelism {new_parallelism} must be between 1 and {MAX_PARALLELISM_API}."
                ),
            ));
        }
        if !(1..=MAX_PARALLELISM_PER_KPU_API).contains(&new_ppk) {
            return Err(ApiError::new(
                ApiErrorKind::InvalidArgument,
                format!(
                    "ParallelismPerKPU {new_ppk} must be between 1 and {MAX_PARALLELISM_PER_KPU_API}."
                ),
            ));
        }
        let new_kpu = Self::kpu_of(new_parallelism, new_ppk);
        if new_kpu > self.params.account_kpu_limit {
            return Err(ApiError::new(
                ApiErrorKind::LimitExceeded,
                format!(
                    "The requested {new_kpu} KPU exceed the application's KPU quota of {} KPU.",
                    self.params.account_kpu_limit
                ),
            ));
        }
        if let Some(flag) = autoscaling_enabled {
            self.autoscaling_enabled = flag;
        }
        self.version_id += 1;
        self.last_update_timestamp_ms = Some(now_ms);
        self.history.updates.push(UpdateEvent {
            t_secs: self.now_secs,
            from_kpu: Self::kpu_of(self.parallelism, self.parallelism_per_kpu),
            to_kpu: new_kpu,
            from_parallelism: self.parallelism,
            to_parallelism: new_parallelism,
            rolled_back: false,
        });
        self.pending = Some(Pending {
            until_secs: self.now_secs + u64::from(self.params.update_secs),
            parallelism: new_parallelism,
            parallelism_per_kpu: new_ppk,
            rollback: false,
        });
        self.settle();
        Ok(self.view())
    }

    /// Ends an update whose time is up: it takes, or (past
    /// `rollback_above_parallelism`) the system rollback starts, a version
    /// further, and restores the old size when its own time is up.
    fn settle(&mut self) {
        let Some(p) = self.pending.filter(|p| self.now_secs >= p.until_secs) else {
            return;
        };
        let fails = !p.rollback
            && self
                .params
                .rollback_above_parallelism
                .is_some_and(|limit| p.parallelism > limit);
        if fails {
            if let Some(update) = self.history.updates.last_mut() {
                update.rolled_back = true;
            }
            self.rolled_back_from = Some(self.version_id);
            self.version_id += 1;
            self.pending = Some(Pending {
                until_secs: self.now_secs + u64::from(self.params.update_secs),
                parallelism: self.parallelism,
                parallelism_per_kpu: self.parallelism_per_kpu,
                rollback: true,
            });
            return;
        }
        self.parallelism = p.parallelism;
        self.parallelism_per_kpu = p.parallelism_per_kpu;
        self.pending = None;
    }

    /// Runs every step up to (not including) `t_secs`.
    pub fn advance_to(&mut self, t_secs: u64) {
        if t_secs > self.now_secs {
            let n = usize::try_from(t_secs - self.now_secs).unwrap_or(0);
            self.reserve(n);
        }
        while self.now_secs < t_secs {
            self.step();
        }
    }

    fn reserve(&mut self, n: usize) {
        let h = &mut self.history;
        h.lambda.reserve(n);
        h.capacity.reserve(n);
        h.processed.reserve(n);
        h.backlog.reserve(n);
        h.lag_secs.reserve(n);
        h.kpu.reserve(n);
        h.billed_kpu.reserve(n);
        h.updating.reserve(n);
    }

    /// One step: [now, now+1).
    fn step(&mut self) {
        let t = self.now_secs;
        let tf = t as f64;
        let lambda = self.load_factor * self.trace.rate_at_from(tf, &mut self.trace_cursor);
        let updating = self.pending.is_some();
        let capacity = self.capacity_by_parallelism[self.parallelism as usize];
        let old_kpu = Self::kpu_of(self.parallelism, self.parallelism_per_kpu);
        let billed_kpu = match self.pending {
            Some(p) => old_kpu.max(Self::kpu_of(p.parallelism, p.parallelism_per_kpu)),
            None => old_kpu,
        };
        let available = self.backlog + lambda;
        let processed = if updating {
            0.0
        } else {
            capacity.min(available)
        };
        self.backlog = available - processed;
        self.arrived += lambda;
        let end = tf + 1.0;
        let lag = self.fifo_lag(end);
        self.now_secs = t + 1;
        self.settle();
        let kpu = Self::kpu_of(self.parallelism, self.parallelism_per_kpu);
        let h = &mut self.history;
        h.lambda.push(lambda);
        h.capacity.push(capacity);
        h.processed.push(processed);
        h.backlog.push(self.backlog);
        h.lag_secs.push(lag);
        h.kpu.push(kpu);
        h.billed_kpu.push(billed_kpu);
        h.updating.push(updating);
    }

    /// Appends the breakpoint (end, A(end)) and returns the age at `end` of
    /// the oldest unprocessed record: end - A^-1(A(end) - backlog).
    fn fifo_lag(&mut self, end: f64) -> f64 {
        let arrivals = &mut self.arrivals;
        let n = arrivals.len();
        // A flat segment (no arrivals) needs no breakpoint of its own:
        // extend it, keeping the deque short through idle periods.
        if n >= 2 && arrivals[n - 1].1 == self.arrived && arrivals[n - 2].1 == self.arrived {
            arrivals[n - 1].0 = end;
        } else {
            arrivals.push_back((end, self.arrived));
        }
        if self.backlog <= 0.0 {
            arrivals.clear();
            arrivals.push_back((end, self.arrived));
            return 0.0;
        }
        // Processed so far, expressed through the backlog so that lag and
        // backlog agree exactly.
        let processed = self.arrived - self.backlog;
        // Drop segments that end at or before `processed`: the oldest
        // unprocessed record arrived after them (for a flat segment, after
        // its end, which keeps the FIFO age exact through idle periods).
        while arrivals.len() >= 2 && arrivals[1].1 <= processed {
            arrivals.pop_front();
        }
        let (t0, a0) = arrivals[0];
        let tau = match arrivals.get(1) {
            Some(&(t1, a1)) if a1 > a0 => t0 + (t1 - t0) * ((processed - a0) / (a1 - a0)),
            _ => t0,
        };
        (end - tau.clamp(t0, end)).max(0.0)
    }
}
