//! The in-process simulator: the workload model behind the controller's own
//! ports, on tokio's paused clock.
//!
//! [`SimSource`] and [`SimTarget`] put the controller's questions to a
//! shared [`World`], first advancing it to the current tokio time, so the
//! production controller and plugin host run unchanged while a week of
//! workload replays in seconds. [`simulate`] runs a whole scenario that way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{ApiError, ApiErrorKind, Scenario, Scores, World};
use crate::agent::{Agent, AgentError};
use crate::clock::Clock;
use crate::config::load::LoadedConfig;
use crate::controller::PluginThreads;
use crate::metrics::{MetricQuery, MetricSource, MetricsError, Series};
use crate::target::{AppState, ScalingTarget, TargetError};
use crate::telemetry::{Event, Events};

/// The wall-clock time of t = 0 in every simulation (2026-01-01T00:00:00Z):
/// fixed, so that runs are reproducible to the record.
pub const SIM_EPOCH_MS: i64 = 1_767_225_600_000;

/// CloudWatch's price of GetMetricData: USD per metric requested ($0.01 per
/// 1,000 metrics, us-east-1 list price, checked 2026-11-30; the first
/// million API requests of the free tier do not cover GetMetricData).
pub const GET_METRIC_DATA_USD_PER_METRIC: f64 = 0.01 / 1000.0;

/// CloudWatch's price of one standard-resolution metric alarm per month
/// (us-east-1 list price, checked 2026-11-30): what the reference design
/// pays for each of its two alarms.
pub const ALARM_USD_PER_MONTH: f64 = 0.10;

/// What the reference design pays CloudWatch per application-month: two
/// standard-resolution alarms. DescribeApplication and UpdateApplication
/// cost nothing in either design.
pub const REFERENCE_USD_PER_APP_MONTH: f64 = 2.0 * ALARM_USD_PER_MONTH;

/// The month an application-month means: 30 days.
pub const MONTH_SECS: u64 = 30 * 86_400;

/// The AWS calls the agent made through the simulator's ports, as AWS would
/// bill them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ApiCalls {
    /// GetMetricData requests.
    pub cloudwatch_get_metric_data_requests: u64,
    /// Metrics requested over all GetMetricData requests, the unit
    /// CloudWatch bills: one per plain query, and one per input of a
    /// metric-math query (each travels as its own MetricStat; the
    /// expression itself is not a metric).
    pub cloudwatch_metric_requests: u64,
    /// DescribeApplication calls (free).
    pub describe_application_calls: u64,
    /// UpdateApplication calls (free).
    pub update_application_calls: u64,
}

impl ApiCalls {
    /// CloudWatch's bill for these calls over `duration_secs` of
    /// `applications` applications, scaled to one application and 30 days.
    pub fn usd_per_app_month(&self, duration_secs: u64, applications: usize) -> f64 {
        let app_secs = duration_secs as f64 * applications.max(1) as f64;
        if app_secs <= 0.0 {
            return 0.0;
        }
        self.cloudwatch_metric_requests as f64 * GET_METRIC_DATA_USD_PER_METRIC * MONTH_SECS as f64
            / app_secs
    }
}

/// The counters behind [`ApiCalls`], shared by the ports.
#[derive(Debug, Default)]
struct CallCounters {
    get_metric_data: AtomicU64,
    metrics: AtomicU64,
    describe: AtomicU64,
    update: AtomicU64,
}

/// A [`World`] shared by the simulator's ports, advanced lazily to tokio
/// time.
#[derive(Clone)]
pub struct SharedWorld {
    world: Arc<Mutex<World>>,
    origin: Instant,
    calls: Arc<CallCounters>,
}

impl SharedWorld {
    /// Shares `world`; its t = 0 is the current tokio instant.
    pub fn new(world: World) -> Self {
        Self {
            world: Arc::new(Mutex::new(world)),
            origin: Instant::now(),
            calls: Arc::default(),
        }
    }

    /// The AWS calls made through the ports so far.
    pub fn calls(&self) -> ApiCalls {
        let c = &self.calls;
        ApiCalls {
            cloudwatch_get_metric_data_requests: c.get_metric_data.load(Ordering::Relaxed),
            cloudwatch_metric_requests: c.metrics.load(Ordering::Relaxed),
            describe_application_calls: c.describe.load(Ordering::Relaxed),
            update_application_calls: c.update.load(Ordering::Relaxed),
        }
    }

    /// The world, advanced to the current tokio time.
    pub fn now(&self) -> MutexGuard<'_, World> {
        let t = self.origin.elapsed().as_secs();
        let mut world = self.lock();
        world.advance_to(t);
        world
    }

    /// The world as it stands.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves a world that is still
        // consistent at a step boundary: keep using it.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// CloudWatch, played by the model.
pub struct SimSource(pub SharedWorld);

#[async_trait]
impl MetricSource for SimSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        let calls = &self.0.calls;
        calls.get_metric_data.fetch_add(1, Ordering::Relaxed);
        let metrics: usize = queries
            .iter()
            .map(|q| q.expression.as_ref().map_or(1, |math| math.inputs.len()))
            .sum();
        calls.metrics.fetch_add(metrics as u64, Ordering::Relaxed);
        let world = self.0.now();
        queries
            .iter()
            .map(|q| {
                let fetch = |q: &MetricQuery| {
                    world
                        .metric_data(q, start_ms, end_ms)
                        .map_err(|e| MetricsError::Source(e.to_string()))
                };
                let points = match &q.expression {
                    None => fetch(q)?,
                    // Metric math, evaluated as the emulator does.
                    Some(math) => {
                        let mut inputs = std::collections::BTreeMap::new();
                        for input in &math.inputs {
                            inputs.insert(input.id.as_str(), fetch(input)?);
                        }
                        let expr = crate::metrics::math::parse(&math.text)
                            .map_err(|e| MetricsError::Invalid(e.to_string()))?;
                        let grid = crate::metrics::math::Grid {
                            start_ms,
                            end_ms,
                            period_secs: q.period_secs,
                        };
                        crate::metrics::math::evaluate(&expr, &|id| inputs.get(id).cloned(), grid)
                            .map_err(|e| MetricsError::Invalid(e.to_string()))?
                    }
                };
                Ok(Series {
                    query: q.clone(),
                    points,
                })
            })
            .collect()
    }
}

/// MSF, played by the model.
pub struct SimTarget(pub SharedWorld);

fn target_error(e: ApiError) -> TargetError {
    let message = e.to_string();
    match e.kind {
        ApiErrorKind::ResourceNotFound => TargetError::NotFound(message),
        ApiErrorKind::ResourceInUse => TargetError::ResourceInUse(message),
        ApiErrorKind::ConcurrentModification => TargetError::ConcurrentModification(message),
        ApiErrorKind::LimitExceeded => TargetError::LimitExceeded(message),
        ApiErrorKind::InvalidArgument | ApiErrorKind::InvalidParameterValue => {
            TargetError::Invalid(message)
        }
    }
}

#[async_trait]
impl ScalingTarget for SimTarget {
    async fn describe(&self, application: &str) -> Result<AppState, TargetError> {
        self.0.calls.describe.fetch_add(1, Ordering::Relaxed);
        let view = self.0.now().describe(application).map_err(target_error)?;
        Ok(AppState {
            status: view.status,
            parallelism: view.parallelism,
            parallelism_per_kpu: view.parallelism_per_kpu,
            version_id: view.version_id,
            autoscaling_enabled: view.autoscaling_enabled,
            last_update_ms: view.last_update_timestamp_ms,
            identity: None,
            asked_kpu: None,
            rolled_back_from: view.rolled_back_from,
        })
    }

    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError> {
        self.0.calls.update.fetch_add(1, Ordering::Relaxed);
        let parallelism = kpu.saturating_mul(current.parallelism_per_kpu);
        let view = self
            .0
            .now()
            .update_application(
                application,
                current.version_id,
                Some(parallelism),
                Some(current.parallelism_per_kpu),
                Some(false),
            )
            .map_err(target_error)?;
        Ok(view.version_id)
    }
}

/// Turns lazy polling on or off for every application of `loaded`,
/// whatever its configuration says (`simulate`/`bench --lazy-polling`).
pub fn set_lazy_polling(loaded: &mut LoadedConfig, on: bool) {
    loaded.config.agent.lazy_polling = on;
    for app in &mut loaded.config.applications {
        app.lazy_polling = Some(on);
    }
}

/// Whether every application of `loaded` polls lazily.
pub fn lazy_polling(loaded: &LoadedConfig) -> bool {
    loaded
        .config
        .applications
        .iter()
        .all(|app| app.lazy_polling.unwrap_or(loaded.config.agent.lazy_polling))
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The agent could not be assembled (plugin loading).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// An application of the configuration is not in the scenario.
    #[error(
        "application {0:?} of the configuration is not in the scenario (it has: {1}); rename it in \
         a copy of the configuration (its metrics' Application dimension too), or give a \
         scenario with an application of that name"
    )]
    UnknownApplication(String, String),
    /// The async runtime could not start.
    #[error("cannot start the simulation runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What a simulated run came to.
#[derive(Debug, Clone)]
pub struct SimulationOutcome {
    /// The scores of docs/SIMULATION.md.
    pub scores: Scores,
    /// The finished world (per-second history for plots).
    pub world: World,
    /// Every event the agent emitted, in order.
    pub events: Vec<Event>,
    /// The AWS calls the agent made.
    pub calls: ApiCalls,
}

/// Plays `scenario` against the agent of `loaded` (production controller and
/// plugin host) on a paused tokio clock, for the scenario's duration.
///
/// Blocking: it runs its own single-threaded runtime, so call it from plain
/// threads, not from inside another runtime.
pub fn simulate(
    scenario: &Scenario,
    loaded: &LoadedConfig,
) -> Result<SimulationOutcome, SimulateError> {
    simulate_with_progress(scenario, loaded, None)
}

/// Receives the simulated seconds done and the scenario's total, about 200
/// times over a run (see [`simulate_with_progress`]).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// [`simulate`], calling `progress` (when given) as simulated time passes:
/// the run is cut into about 200 equal stretches of simulated time. The
/// outcome is the same with or without it: the agent's timers fire at the
/// same simulated instants, and the world advances only when the agent
/// asks it something.
pub fn simulate_with_progress(
    scenario: &Scenario,
    loaded: &LoadedConfig,
    mut progress: Option<Progress<'_>>,
) -> Result<SimulationOutcome, SimulateError> {
    let configured = loaded.config.applications.iter().map(|a| a.name.as_str());
    if let Some((name, played)) = scenario.unplayed(configured) {
        return Err(SimulateError::UnknownApplication(name.to_owned(), played));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(SimulateError::Runtime)?;
    runtime.block_on(async {
        let shared = SharedWorld::new(World::from_scenario(scenario, SIM_EPOCH_MS));
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Plugins are loaded and called inline on this thread, marked as
        // plugin work: this runtime runs nothing else, and the paused clock
        // stands still meanwhile, so the run is the same to the record,
        // without a hand-off to another thread a call (no WASI function a
        // plugin reaches enters a runtime: see `plugin::on_plugin_thread`).
        let agent = crate::plugin::on_plugin_thread(|| {
            Agent::assemble(
                loaded,
                false,
                Events::quiet_with_channel(tx),
                Arc::new(SimSource(shared.clone())),
                Arc::new(SimTarget(shared.clone())),
                Clock::starting_at(SIM_EPOCH_MS),
            )
        })?
        .with_plugin_threads(PluginThreads::Simulation);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(agent.run(stopped));
        let total = scenario.duration_secs;
        match progress.as_mut() {
            None => tokio::time::sleep(Duration::from_secs(total)).await,
            Some(report) => {
                let stretch = (total / 200).max(1);
                let start = Instant::now();
                let mut done = 0;
                while done < total {
                    done = (done + stretch).min(total);
                    tokio::time::sleep_until(start + Duration::from_secs(done)).await;
                    report(done, total);
                }
            }
        }
        let _ = stop.send(true);
        let _ = task.await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        // Taken out, not cloned: the world holds every second of the run
        // and of its past, tens of megabytes (a copy was a fifth of the
        // page faults of a 7-day `simulate`).
        let mut world = std::mem::replace(
            &mut *shared.lock(),
            World::from_scenario(scenario, SIM_EPOCH_MS),
        );
        world.advance_to(scenario.duration_secs);
        Ok(SimulationOutcome {
            scores: world.scores(),
            world,
            events,
            calls: shared.calls(),
        })
    })
}
