//! The workload simulator's model: simulated MSF applications under a load
//! trace, with the metrics they publish to CloudWatch (`docs/SIMULATION.md`).
//!
//! A [`World`] holds every application of a [`Scenario`] and a simulated
//! clock in whole seconds. Drivers advance it (the HTTP emulator in real
//! time, the benchmark on a paused clock) and put MSF's and CloudWatch's
//! questions to it: [`World::describe`], [`World::update_application`],
//! [`World::metric_data`], [`World::list_metrics`]. The model is pure: the
//! only I/O is reading scenario and trace files. [`score`] turns a finished
//! run into the scores every report states.

pub mod bench;
pub mod bound;
pub mod driver;
pub mod model;
pub mod presets;
pub mod publish;
pub mod report;
pub mod report_html;
pub mod scenario;
pub mod schedule;
pub mod score;
pub mod time;
pub mod trace;

#[cfg(test)]
mod tests;

use crate::metrics::{Datapoint, MetricQuery};

pub use model::{
    ApiError, ApiErrorKind, AppModel, AppView, CpuNoise, History, Sample, UpdateEvent,
};
pub use publish::{MetricDescriptor, MetricKind, Statistic};
pub use scenario::{AppParams, Past, Scenario, ScenarioApp, ScenarioError, SourceNames};
pub use score::{MODEL_VERSION, Scores};
pub use time::TimeMap;
pub use trace::{Trace, TraceError, TraceValue};

/// The most a scenario's or the emulator's load factor multiplies its
/// trace by: a thousandfold is far past any crowd, and keeps rates well
/// inside what the model's sums hold.
pub const MAX_LOAD_FACTOR: f64 = 1000.0;

/// Every application of a scenario on one simulated clock.
#[derive(Debug, Clone)]
pub struct World {
    scenario_name: String,
    duration_secs: u64,
    time: TimeMap,
    now_secs: u64,
    apps: Vec<AppModel>,
    aggregates: AggregateCache,
}

/// Key of one aggregated series: application index, metric, statistic
/// (an index into [`Aggregates::statistics`]) and period.
type SeriesKey = (usize, MetricKind, usize, u32);

/// The cache's contents.
#[derive(Debug, Default, Clone)]
struct Aggregates {
    /// Statistics as asked (`p99`, `Maximum`), interned.
    statistics: Vec<String>,
    series: std::collections::HashMap<SeriesKey, PeriodSeries>,
}

impl Aggregates {
    fn statistic(&mut self, name: &str) -> usize {
        match self.statistics.iter().position(|s| s == name) {
            Some(i) => i,
            None => {
                self.statistics.push(name.to_owned());
                self.statistics.len() - 1
            }
        }
    }
}

/// The values of one series, period after period from the first period
/// that holds step 0 up to the last period that has become visible; `None`
/// where a period has no sample.
#[derive(Debug, Clone, Default)]
struct PeriodSeries {
    values: Vec<Option<f64>>,
}

/// The datapoints already computed. A visible period is complete and the
/// history is append-only, so its value never changes: each period of each
/// series asked for is aggregated once, when it becomes visible, and a
/// policy that looks at six hours of one-minute datapoints every minute
/// reads them from a column instead of aggregating 360 periods again.
#[derive(Debug, Default)]
struct AggregateCache(std::sync::Mutex<Aggregates>);

impl Clone for AggregateCache {
    fn clone(&self) -> Self {
        let map = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        Self(std::sync::Mutex::new(map))
    }
}

impl World {
    /// The applications of `scenario` at t = 0, which is `start_epoch_ms`
    /// (rounded down to a whole second) in wall-clock terms.
    pub fn from_scenario(scenario: &Scenario, start_epoch_ms: i64) -> Self {
        let time = TimeMap::real_time(start_epoch_ms);
        Self {
            scenario_name: scenario.name.clone(),
            duration_secs: scenario.duration_secs,
            time,
            now_secs: 0,
            apps: scenario
                .applications
                .iter()
                .map(|a| AppModel::new(a, time.origin_ms))
                .collect(),
            aggregates: AggregateCache::default(),
        }
    }

    /// The scenario's name.
    pub fn scenario_name(&self) -> &str {
        &self.scenario_name
    }

    /// The scenario's run length in seconds (the world steps on beyond it if
    /// asked, with the traces' last values held).
    pub fn duration_secs(&self) -> u64 {
        self.duration_secs
    }

    /// Steps every application up to simulated second `t_secs` (steps
    /// 0..t_secs are then done). Asking for a time already passed does
    /// nothing.
    pub fn advance_to(&mut self, t_secs: u64) {
        if t_secs <= self.now_secs {
            return;
        }
        for app in &mut self.apps {
            app.advance_to(t_secs);
        }
        self.now_secs = t_secs;
    }

    /// The simulated time in seconds since the start.
    pub fn now_secs(&self) -> u64 {
        self.now_secs
    }

    /// The simulated time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.time.step_start_ms(self.now_secs)
    }

    /// Wall-clock milliseconds of the start (t = 0).
    pub fn start_epoch_ms(&self) -> i64 {
        self.time.origin_ms
    }

    /// The applications' names, in scenario order.
    pub fn application_names(&self) -> Vec<String> {
        self.apps.iter().map(|a| a.name().to_owned()).collect()
    }

    /// One application's model (parameters, history, sources).
    pub fn application(&self, name: &str) -> Result<&AppModel, ApiError> {
        self.apps
            .iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| not_found(name))
    }

    fn application_mut(&mut self, name: &str) -> Result<&mut AppModel, ApiError> {
        self.apps
            .iter_mut()
            .find(|a| a.name() == name)
            .ok_or_else(|| not_found(name))
    }

    /// Every application's model, in scenario order.
    pub fn applications(&self) -> &[AppModel] {
        &self.apps
    }

    /// DescribeApplication.
    pub fn describe(&self, name: &str) -> Result<AppView, ApiError> {
        self.application(name).map(AppModel::view)
    }

    /// UpdateApplication at the current simulated time, with the semantics
    /// and errors of `docs/SIMULATION.md`.
    pub fn update_application(
        &mut self,
        name: &str,
        current_version_id: u64,
        parallelism: Option<u32>,
        parallelism_per_kpu: Option<u32>,
        autoscaling_enabled: Option<bool>,
    ) -> Result<AppView, ApiError> {
        let now_ms = self.now_ms();
        self.application_mut(name)?.update(
            current_version_id,
            parallelism,
            parallelism_per_kpu,
            autoscaling_enabled,
            now_ms,
        )
    }

    /// Changes an application's load factor from now on.
    pub fn set_load_factor(&mut self, name: &str, factor: f64) -> Result<(), ApiError> {
        if !(factor.is_finite() && (0.0..=MAX_LOAD_FACTOR).contains(&factor)) {
            return Err(ApiError::new(
                ApiErrorKind::InvalidArgument,
                format!("The load factor {factor} must be a number from 0 to {MAX_LOAD_FACTOR}."),
            ));
        }
        self.application_mut(name)?.set_load_factor(factor);
        Ok(())
    }

    /// One application's per-second history (for scores and plots).
    pub fn history(&self, name: &str) -> Result<&History, ApiError> {
        self.application(name).map(AppModel::history)
    }

    /// Every metric the world publishes, sorted.
    pub fn list_metrics(&self) -> Vec<MetricDescriptor> {
        let mut all: Vec<MetricDescriptor> = self
            .apps
            .iter()
            .flat_map(|app| {
                MetricKind::ALL.iter().map(move |kind| MetricDescriptor {
                    namespace: kind.namespace().to_owned(),
                    metric_name: kind.metric_name().to_owned(),
                    dimensions: kind.dimensions(app.name(), app.sources()),
                })
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The application (its index and model) and metric that publish a
    /// metric; dimensions must match exactly, as in CloudWatch.
    pub fn publisher(
        &self,
        namespace: &str,
        metric_name: &str,
        dimensions: &std::collections::BTreeMap<String, String>,
    ) -> Option<(usize, &AppModel, MetricKind)> {
        self.apps.iter().enumerate().find_map(|(index, app)| {
            MetricKind::ALL
                .iter()
                .find(|kind| {
                    kind.namespace() == namespace
                        && kind.metric_name() == metric_name
                        && kind.has_dimensions(app.name(), app.sources(), dimensions)
                })
                .map(|kind| (index, app, *kind))
        })
    }

    /// GetMetricData for one MetricStat over `[start_ms, end_ms)`: the
    /// datapoints visible now, oldest first, one per epoch-aligned period
    /// whose start lies in the window (the start rounded down to the
    /// period) and that has at least one sample. A period [t, t+P) is
    /// visible from t+P+metric_delay_secs on. A metric nobody publishes
    /// gives no datapoints (as in CloudWatch); a bad statistic or period is
    /// an error. The dimensions must match exactly.
    pub fn metric_data(
        &self,
        query: &MetricQuery,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Datapoint>, ApiError> {
        let statistic = Statistic::parse(&query.statistic)?;
        publish::validate_period(query.period_secs)?;
        let Some((index, app, kind)) =
            self.publisher(&query.namespace, &query.metric_name, &query.dimensions)
        else {
            return Ok(Vec::new());
        };
        let period_ms = i64::from(query.period_secs.max(1)) * 1000;
        let step0_ms = self.time.origin_ms;
        let first_ms = step0_ms.div_euclid(period_ms) * period_ms;
        let visible_until = self.now_ms() - i64::from(app.params().metric_delay_secs) * 1000;
        // Periods [first_ms + k P, ...) for k < visible are complete and
        // published.
        let visible = (visible_until - first_ms).div_euclid(period_ms).max(0) as usize;
        let mut cache = self
            .aggregates
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stat = cache.statistic(&query.statistic);
        let series = cache
            .series
            .entry((index, kind, stat, query.period_secs))
            .or_default();
        if series.values.len() < visible {
            // A period's seconds, but never more than the run has: a
            // period of years must not reserve gigabytes.
            let capacity = usize::try_from(query.period_secs)
                .unwrap_or(usize::MAX)
                .min(app.history().len());
            let mut buffer = Vec::with_capacity(capacity);
            for k in series.values.len()..visible {
                let ps = first_ms + k as i64 * period_ms;
                series.values.push(publish::period_value(
                    app.history(),
                    app.params(),
                    kind,
                    statistic,
                    self.time.steps(ps..ps + period_ms),
                    &mut buffer,
                ));
            }
        }
        // The past the scenario publishes, read once (an agent's history),
        // so not cached.
        let mut out = app.past_datapoints(
            kind,
            statistic,
            period_ms,
            (start_ms, end_ms),
            self.time.to_model_ms(self.now_ms()),
            &self.time,
        );
        // The periods whose start lies in [start_ms, end_ms).
        let period_index = |ms: i64| (ms - first_ms).div_euclid(period_ms).max(0) as usize;
        let from = period_index(start_ms.div_euclid(period_ms) * period_ms);
        let to = period_index(end_ms + period_ms - 1).min(series.values.len());
        out.extend((from..to.max(from)).filter_map(|k| {
            series.values[k].map(|value| Datapoint {
                timestamp_ms: first_ms + k as i64 * period_ms,
                value,
            })
        }));
        Ok(out)
    }

    /// The scores of the run so far, over every application.
    pub fn scores(&self) -> Scores {
        let runs: Vec<(&History, &AppParams)> = self
            .apps
            .iter()
            .map(|a| (a.history(), a.params()))
            .collect();
        score::score(&runs)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::ResourceNotFound,
        format!("Application {name} does not exist."),
    )
}
