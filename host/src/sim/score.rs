//! The scores of a run (`docs/SIMULATION.md`, "Scores of a run"): what it cost,
//! how often it broke the lag SLO, and how close it came to the bounds no
//! policy can beat.

use super::model::History;
use super::scenario::AppParams;

/// The version of the model whose numbers these are. Bump it with every
/// change to `docs/SIMULATION.md`'s model, so old results stay comparable.
pub const MODEL_VERSION: &str = "1";

/// Price of one KPU-hour in US dollars.
pub const USD_PER_KPU_HOUR: f64 = 0.11;

/// The scores of one run, over one or more applications.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scores {
    /// The model version.
    pub model_version: &'static str,
    /// Simulated seconds scored (the longest application's history).
    pub duration_secs: u64,
    /// Integral of KPU over time (while UPDATING, the larger of old and new).
    pub kpu_hours: f64,
    /// kpu_hours plus one orchestration KPU per application, at 0.11 USD per
    /// KPU-hour.
    pub cost_usd: f64,
    /// Seconds with lag above max_lag_secs.
    pub slo_violation_secs: u64,
    /// The largest per-second lag.
    pub max_lag_secs: f64,
    /// Nearest-rank 99th percentile of the per-second lags.
    pub p99_lag_secs: f64,
    /// Successful UpdateApplication calls.
    pub rescales: u64,
    /// Seconds spent UPDATING.
    pub downtime_secs: u64,
    /// Records processed / (mu x parallelism_per_kpu) / 3600.
    pub lower_bound_kpu_hours: f64,
    /// KPU-hours of a per-second perfect scaler with free restarts.
    pub clairvoyant_kpu_hours: f64,
    /// clairvoyant_kpu_hours / kpu_hours.
    pub efficiency: f64,
    /// lower_bound_kpu_hours / kpu_hours.
    pub bound_efficiency: f64,
}

/// Scores runs of one or more applications together: sums, and maxima and
/// percentiles over the pooled seconds of all of them.
pub fn score(runs: &[(&History, &AppParams)]) -> Scores {
    let mut kpu_secs = 0u64;
    let mut orchestration_secs = 0u64;
    let mut slo_violation_secs = 0u64;
    let mut rescales = 0u64;
    let mut downtime_secs = 0u64;
    let mut lower_bound = 0.0;
    let mut clairvoyant_kpu_secs = 0u64;
    let mut duration_secs = 0u64;
    let mut lags: Vec<f64> = Vec::new();
    for (history, params) in runs {
        let n = history.len() as u64;
        duration_secs = duration_secs.max(n);
        orchestration_secs += n;
        kpu_secs += history
            .billed_kpu
            .iter()
            .map(|&k| u64::from(k))
            .sum::<u64>();
        slo_violation_secs += history
            .lag_secs
            .iter()
            .filter(|&&l| l > params.max_lag_secs)
            .count() as u64;
        rescales += history.updates.len() as u64;
        downtime_secs += history.updating.iter().filter(|&&u| u).count() as u64;
        let processed: f64 = history.processed.iter().sum();
        lower_bound += processed
            / (params.records_per_subtask_per_sec * f64::from(params.parallelism_per_kpu.max(1)))
            / 3600.0;
        let clairvoyant = Clairvoyant::new(params);
        clairvoyant_kpu_secs += history
            .lambda
            .iter()
            .map(|&l| u64::from(clairvoyant.kpu(l)))
            .sum::<u64>();
        lags.extend_from_slice(&history.lag_secs);
    }
    let kpu_hours = kpu_secs as f64 / 3600.0;
    let clairvoyant_kpu_hours = clairvoyant_kpu_secs as f64 / 3600.0;
    let ratio = |x: f64| if kpu_hours > 0.0 { x / kpu_hours } else { 0.0 };
    let max_lag_secs = lags.iter().copied().fold(0.0, f64::max);
    let p99_lag_secs = if lags.is_empty() {
        0.0
    } else {
        super::publish::nearest_rank(&mut lags, 99.0)
    };
    Scores {
        model_version: MODEL_VERSION,
        duration_secs,
        kpu_hours,
        cost_usd: USD_PER_KPU_HOUR * (kpu_hours + orchestration_secs as f64 / 3600.0),
        slo_violation_secs,
        max_lag_secs,
        p99_lag_secs,
        rescales,
        downtime_secs,
        lower_bound_kpu_hours: lower_bound,
        clairvoyant_kpu_hours,
        efficiency: ratio(clairvoyant_kpu_hours),
        bound_efficiency: ratio(lower_bound),
    }
}

/// The per-second perfect scaler's KPU for an input rate.
#[derive(Debug, Clone)]
pub struct Clairvoyant {
    /// capacity[q - 1] of parallelism q, for q up to the USL peak (beyond it
    /// more parallelism only loses capacity).
    capacity: Vec<f64>,
    parallelism_per_kpu: u32,
    min_kpu: u32,
    max_kpu: u32,
}

impl Clairvoyant {
    /// The scaler for one application's parameters.
    pub fn new(params: &AppParams) -> Self {
        let mut capacity: Vec<f64> = Vec::new();
        let mut q = 1u32;
        loop {
            let c = params.capacity(q);
            if capacity.last().is_some_and(|&last| c <= last) || q > 65_536 {
                break;
            }
            capacity.push(c);
            q += 1;
        }
        Self {
            capacity,
            parallelism_per_kpu: params.parallelism_per_kpu.max(1),
            min_kpu: params.min_kpu,
            // The application's KPU quota binds a perfect scaler too.
            max_kpu: params
                .max_kpu
                .min(params.account_kpu_limit)
                .max(params.min_kpu),
        }
    }

    /// The least parallelism whose capacity covers `lambda`, `None` when none
    /// does.
    pub fn parallelism(&self, lambda: f64) -> Option<u32> {
        let i = self.capacity.partition_point(|&c| c < lambda);
        (i < self.capacity.len()).then(|| i as u32 + 1)
    }

    /// ceil(p*(lambda) / parallelism_per_kpu) clamped to [min_kpu, max_kpu];
    /// when no parallelism carries lambda, the least KPU that reaches the
    /// highest capacity there is (more would only cost: past the USL peak
    /// or `max_parallelism`, parallelism adds no capacity).
    pub fn kpu(&self, lambda: f64) -> u32 {
        let p = self
            .parallelism(lambda)
            .unwrap_or(self.capacity.len() as u32);
        p.div_ceil(self.parallelism_per_kpu)
            .clamp(self.min_kpu, self.max_kpu)
    }
}
