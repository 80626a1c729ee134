//! `target-tracking`: keeps the job's utilisation near a target.
//!
//! The utilisation is the share of time the job's subtasks are busy
//! (`busyTimeMsPerSecond` / 1000, Average), or the container CPU
//! (`containerCPUUtilization` / 100) when busy time is not configured. At a
//! utilisation `u` on capacity `C`, the load is `u C`; carrying it at the
//! target takes a capacity of `u C / target`. Capacity does not grow
//! linearly with parallelism, so the parallelism is found through the
//! Universal Scalability Law (`usl_sigma`, `usl_kappa`; both 0 for a
//! linear job): the least `q` with speedup(q) >= speedup(p) u / target.
//!
//! - **Scale-out** as soon as the latest utilisation is above
//!   `target_utilisation + tolerance`. A saturated job reads 100 % busy
//!   however far behind it is, so one step can fall short; the next
//!   evaluation after the rescale steps again. (`rate` sizes for the backlog
//!   too.)
//! - **Scale-in** only when every utilisation over the last
//!   `scale_in_delay_secs` after the last rescale was below
//!   `target_utilisation - tolerance`, sized on the highest of them. The
//!   asymmetry is deliberate: being short costs lag at once, being long
//!   costs only money, and every rescale stops the job.
//! - **Stale data is never used**: only periods that started `warmup_secs`
//!   or more after the last completed rescale count. Older ones describe the
//!   previous capacity or the restart, and the first minutes after a
//!   restart show the job busy draining what piled up while it was down,
//!   which says nothing about the load (Kubernetes' autoscaler skips a
//!   pod's initialisation period for the same reason). Nothing is done
//!   while the application is not RUNNING.
//!
//! # Parameters
//!
//! Declared, with their kinds, defaults and meanings, in
//! [`TargetTracking`]'s `PARAMETERS` (`flinkscale plugin describe
//! target-tracking` prints them): `target_utilisation`, `tolerance`,
//! `scale_in_delay_secs`, `warmup_secs`, `usl_sigma`, `usl_kappa`,
//! `busy_metric` and `cpu_metric`, all optional.
//!
//! # State
//!
//! Utilisations of past periods are cached between evaluations, since the
//! scale-in delay can be longer than the metric window the host fetches. A
//! fresh instance starts empty, which only delays a scale-in.

#![warn(missing_docs)]

use std::collections::BTreeMap;

use flinkscale_plugin::{
    AppStatus, Decision, Evaluation, Parameter, Params, Policy, export_policy,
};
use serde::Deserialize;

pub mod track;
pub use flinkscale_plugin::usl;

use track::{Band, Step};
use usl::Usl;

/// The parameters as written; every key has a declared default.
#[derive(Deserialize)]
struct Config {
    target_utilisation: f64,
    tolerance: f64,
    scale_in_delay_secs: u32,
    warmup_secs: u32,
    usl_sigma: f64,
    usl_kappa: f64,
    busy_metric: String,
    cpu_metric: String,
}

/// A scale-in delay counts as observed when at least this fraction of its
/// periods have a known utilisation.
const DELAY_COVERAGE: f64 = 0.8;

/// The configured policy and its cache of utilisations.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetTracking {
    band: Band,
    usl: Usl,
    scale_in_delay_ms: i64,
    warmup_ms: i64,
    busy_metric: String,
    cpu_metric: String,
    /// Utilisation (0..=1) by period start (ms); a cache, see the crate docs.
    seen: BTreeMap<i64, f64>,
}

impl Policy for TargetTracking {
    const SUMMARY: &'static str = "Keeps the job's utilisation (busy time, else CPU) near a \
         target: scales out as soon as it is above the band, in only after a delay below it, \
         sizing the parallelism through the Universal Scalability Law.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::number("target_utilisation")
            .default("0.7")
            .meaning("The utilisation to keep, in (0, 1)."),
        Parameter::number("tolerance").default("0.1").meaning(
            "No action while the utilisation is within target +- tolerance; in [0, target) \
             and target + tolerance below 1.",
        ),
        Parameter::integer("scale_in_delay_secs")
            .default("900")
            .meaning(
                "How long the utilisation must have stayed below the band, after the last \
             rescale, before a scale-in.",
            ),
        Parameter::integer("warmup_secs").default("300").meaning(
            "Periods starting less than this long after the last rescale are ignored: they \
             show the restart and its catch-up, not the load.",
        ),
        Parameter::number("usl_sigma")
            .default("0.02")
            .meaning("Contention of the Universal Scalability Law, in [0, 1); 0 for a linear job."),
        Parameter::number("usl_kappa")
            .default("0.0002")
            .meaning("Coherency of the Universal Scalability Law, in [0, 1); 0 for a linear job."),
        Parameter::metric_id("busy_metric")
            .default("\"busy\"")
            .meaning("Metric id of `busyTimeMsPerSecond` (Average)."),
        Parameter::metric_id("cpu_metric")
            .default("\"cpu\"")
            .meaning(
                "Metric id of `containerCPUUtilization` (Average), used when the busy metric is \
             not configured.",
            ),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let config: Config = params.parse()?;
        let target = config.target_utilisation;
        if !(target.is_finite() && target > 0.0 && target < 1.0) {
            return Err(format!(
                "parameter `target_utilisation` must be in (0, 1), found {target}"
            ));
        }
        let tolerance = config.tolerance;
        if !(tolerance.is_finite()
            && tolerance >= 0.0
            && tolerance < target
            && target + tolerance < 1.0)
        {
            return Err(format!(
                "parameter `tolerance` must be at least 0, below `target_utilisation` ({target}) \
                 and keep target + tolerance below 1, found {tolerance}"
            ));
        }
        let sigma = config.usl_sigma;
        if !(sigma.is_finite() && (0.0..1.0).contains(&sigma)) {
            return Err(format!(
                "parameter `usl_sigma` must be in [0, 1), found {sigma}"
            ));
        }
        let kappa = config.usl_kappa;
        if !(kappa.is_finite() && (0.0..1.0).contains(&kappa)) {
            return Err(format!(
                "parameter `usl_kappa` must be in [0, 1), found {kappa}"
            ));
        }
        Ok(TargetTracking {
            band: Band { target, tolerance },
            usl: Usl { sigma, kappa },
            scale_in_delay_ms: i64::from(config.scale_in_delay_secs) * 1000,
            warmup_ms: i64::from(config.warmup_secs) * 1000,
            busy_metric: config.busy_metric,
            cpu_metric: config.cpu_metric,
            seen: BTreeMap::new(),
        })
    }

    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        let app = &evaluation.app;
        if app.status != AppStatus::Running {
            return Ok(Decision::hold(format!(
                "application is {}, not RUNNING",
                app.status
            )));
        }
        // Busy time is the job's own measure; CPU includes idle overhead and
        // noise, so it is only the fallback.
        let (series, scale, name) = match evaluation.metric(&self.busy_metric) {
            Some(series) => (series, 1000.0, "busy time"),
            None => match evaluation.metric(&self.cpu_metric) {
                Some(series) => (series, 100.0, "CPU"),
                None => {
                    return Err(format!(
                        "neither `{}` nor `{}` is configured for application `{}`",
                        self.busy_metric, self.cpu_metric, app.name
                    ));
                }
            },
        };
        let period_ms = i64::from(series.period_secs.max(1)) * 1000;
        let fresh_from = app
            .last_rescale_ms
            .map_or(i64::MIN, |at| at.saturating_add(self.warmup_ms));
        let fresh: Vec<(i64, f64)> = series
            .points
            .iter()
            .filter(|p| p.timestamp_ms >= fresh_from)
            .map(|p| (p.timestamp_ms, (p.value / scale).clamp(0.0, 1.0)))
            .collect();
        self.seen.extend(fresh.iter().copied());
        let keep_from = evaluation.now_ms - self.scale_in_delay_ms - 10 * period_ms;
        self.seen = self.seen.split_off(&keep_from);
        let Some(&(latest_ms, utilisation)) = fresh.last() else {
            return Ok(Decision::hold(format!(
                "no {name} measured since the last rescale yet"
            )));
        };
        let window_peak = self.window_peak(latest_ms, period_ms, fresh_from);
        let step = track::step(
            &self.band,
            &self.usl,
            &track::Situation {
                kpu: app.kpu,
                parallelism: app.parallelism,
                per_kpu: app.parallelism_per_kpu,
                min_kpu: app.min_kpu,
                max_kpu: app.max_kpu,
                utilisation,
                window_peak,
            },
        );
        Ok(match step {
            Step::Hold(reason) => Decision::hold(format!("{name} {reason}")),
            Step::To(kpu, reason) => Decision::scale_to(kpu, format!("{name} {reason}")),
        })
    }
}

impl TargetTracking {
    /// The highest utilisation over the scale-in delay ending with the
    /// period at `latest_ms`, if the delay lies after `fresh_from` (the end
    /// of the last rescale's warm-up) and its utilisations are known.
    fn window_peak(&self, latest_ms: i64, period_ms: i64, fresh_from: i64) -> Option<f64> {
        // A delay shorter than one period is the latest period.
        let start = (latest_ms + period_ms - self.scale_in_delay_ms).min(latest_ms);
        if fresh_from > start {
            return None;
        }
        let expected = (self.scale_in_delay_ms / period_ms.max(1)).max(1) as f64;
        let values: Vec<f64> = self
            .seen
            .range(start..=latest_ms)
            .map(|(_, u)| *u)
            .collect();
        if (values.len() as f64) < DELAY_COVERAGE * expected {
            return None;
        }
        values.into_iter().reduce(f64::max)
    }
}

export_policy!(TargetTracking);

#[cfg(test)]
mod tests;
