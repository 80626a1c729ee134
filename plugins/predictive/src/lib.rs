//! `predictive`: a policy for cycles. It learns the daily and weekly
//! profile of the input rate, scales out ahead of a predictable rise by the
//! time a rescale takes, holds capacity through predictable dips, and falls
//! back to [`rate`] whenever the load leaves the forecast.
//!
//! Under the model a rescale costs at least its downtime past the lag
//! objective in violation (90 s UPDATING against a 60 s SLO: 30 s) plus the
//! drain of what arrived meanwhile, however it is timed. On a smooth cycle
//! a reactive policy pays that once per step of the rise, each time after
//! the load has already passed the capacity; the cycle is predictable, so
//! fewer rescales, each done before the load arrives and sized for the
//! next stretch of the rise, cost less.
//!
//! - **Learning**: every evaluation adds the true input rate of the
//!   periods it sees (processed rate plus backlog growth, `rate`'s own
//!   estimator) to a [`profile::Profile`] of up to `history_days`.
//! - **Forecast**: the rate one season ago, a day or a week, whichever
//!   forecast the last `fit_secs` better, scaled by how the last `fit_secs`
//!   compared with it (a busier day keeps its shape; a ratio within its
//!   standard error of 1 is noise, and does not scale it).
//! - **On the forecast** (its mean relative error over `fit_secs` at most
//!   `tolerance`, and none of the latest three periods off by more than
//!   twice that): when the forecast within the rescale's downtime (the
//!   host's measured `last-update-duration-secs`, else `rate`'s
//!   `update_secs`) plus `lead_secs` passes `scale_out_utilisation` of the
//!   capacity, scale out now, to carry the forecast peak over the next
//!   `lookahead_secs` at `target_utilisation`, and at least the latest
//!   input plus what arrives during the restart drained within `rate`'s
//!   `catch_up_secs` (the sizing `rate` gives its own scale-outs: a
//!   restart stops the job, and a scale-out that comes when the load is
//!   already close to the capacity, as on a day busier than the forecast,
//!   would otherwise drain that slowly, above the lag objective). A
//!   scale-out `rate` asks for is widened to the same peak. A scale-in
//!   `rate` asks for is held when the forecast comes back above the
//!   smaller capacity's `scale_out_utilisation` within `dip_secs` (a dip
//!   shorter than that is not worth two rescales). Otherwise it goes, in
//!   one step, to where the forecast says the load stays: the KPU that
//!   carries the forecast peak of the next `lookahead_secs` and drains the
//!   restart's input within `rate`'s `scale_in_catch_up_secs`, not
//!   `rate`'s target, which is sized for the past window's peak and on a
//!   falling load would be followed by another scale-in, each paying a
//!   restart.
//! - **Off the forecast**, or before a season has been seen: `rate`'s
//!   decision, unchanged (bursts, crowds, anything not seen before).
//!
//! The capacities are `rate`'s: measured from busy time and extrapolated
//! through its scalability law (`usl_sigma`, `usl_kappa`, fitted to the
//! capacities measured at different sizes within `usl_fit_secs`), with its
//! `target_utilisation` and `scale_out_utilisation`.
//!
//! # Parameters
//!
//! Declared in [`PredictivePolicy`]'s `PARAMETERS` (`flinkscale plugin
//! describe predictive` prints them); all optional:
//!
//! - `rate` (table, `{}`): the parameters of the reactive half, exactly as
//!   `rate` takes them (metric ids, utilisations, scalability law).
//! - `bucket_secs` (600): the profile's resolution; a forecast is the mean
//!   rate of a bucket one season earlier.
//! - `history_days` (15): how many days of rates the profile keeps, in
//!   [1, 60]; a week needs 8 to be chosen over a day.
//! - `fit_secs` (3600): the recent span a season is chosen and judged on.
//! - `tolerance` (0.25): the mean relative error beyond which the load has
//!   left the forecast, in (0, 1].
//! - `lead_secs` (3600): how long past the rescale's downtime a rise is
//!   acted on ahead (publication delay and evaluation interval included).
//! - `lookahead_secs` (43200): a scale-out carries the forecast peak this
//!   far past the lead.
//! - `dip_secs` (86400): a scale-in is held when the forecast comes back
//!   within this.
//!
//! # State
//!
//! The profile lives in the plugin instance and grows with each
//! evaluation: every input rate an evaluation's series show is learned
//! (but that of the first period after the job was down, which is the
//! restart's catch-up, not the load), so
//! when the host reads history at start (`[application.policy]
//! history_days`), the first evaluation's longer series fill the profile at
//! once; the host reads it again for the first evaluation of a new
//! instance (after a plugin reload, or a plugin stopped for exceeding its
//! deadline or memory). Otherwise (no history read, or the read failed)
//! it starts with an empty profile and
//! decides exactly as `rate` until it has seen one whole day (a week for
//! the weekly season): it never acts on a forecast it has not learned.

#![warn(missing_docs)]

use flinkscale_plugin::usl::kpu_for;
use flinkscale_plugin::{
    Action, AppStatus, Decision, Evaluation, Parameter, Params, Policy, export_policy,
};
use rate::RatePolicy;
use rate::estimate;
use serde::Deserialize;

pub mod profile;

use profile::{Fit, Profile};

/// The input rates of `rates` the profile learns: those of periods whose
/// previous period (the one shown just before it) is no further than
/// [`LEARN_GAP_MS`] or a metric period back and had the job processing
/// records. The first period after a restart (a rescale's, or any other:
/// the job publishes no records in while it is down) processes the
/// backlog the restart left at full capacity, and its rate, 2x the input
/// and more, is the restart's, not the load's: learned, it would raise
/// the forecast at that time of every later day. (History comes at 60 s
/// periods even for a sub-minute metric, and AWS publishes most metrics
/// once a minute: a minute between periods is no gap.)
///
/// With `records_in` at a longer period than the other metrics (300 s
/// beside 60 s), the periods between two of its datapoints are the
/// others' alone, no sign of a restart: the previous period is then the
/// previous one with records in, as far back as `records_in`'s own
/// spacing.
fn learnable(rates: &[(i64, f64)], observed: &rate::observe::Observed) -> Vec<(i64, f64)> {
    let longest_gap = observed.period_ms.max(LEARN_GAP_MS);
    let with_records = || observed.periods.iter().filter(|p| p.records_in.is_some());
    let spacing = with_records()
        .zip(with_records().skip(1))
        .map(|(a, b)| b.start_ms - a.start_ms)
        .min()
        .filter(|&spacing| spacing > longest_gap);
    let longest_gap = spacing.unwrap_or(longest_gap);
    let mut periods = observed.periods.iter().peekable();
    let mut previous: Option<&rate::observe::Period> = None;
    rates
        .iter()
        .filter(|(start_ms, _)| {
            while let Some(period) = periods.next_if(|p| p.start_ms < *start_ms) {
                if spacing.is_none() || period.records_in.is_some() {
                    previous = Some(period);
                }
            }
            previous.is_some_and(|p| p.records_in.is_some() && start_ms - p.start_ms <= longest_gap)
        })
        .copied()
        .collect()
}

/// The gap between two periods that still counts as none (see
/// [`learnable`]): a minute, CloudWatch's usual resolution.
const LEARN_GAP_MS: i64 = 60_000;

/// The latest periods whose error alone can put the load off the forecast.
const LATEST_PERIODS: usize = 3;

/// The parameters as written; every key has a declared default.
#[derive(Deserialize)]
struct Config {
    rate: serde_json::Map<String, serde_json::Value>,
    bucket_secs: u32,
    history_days: u32,
    fit_secs: u32,
    tolerance: f64,
    lead_secs: u32,
    lookahead_secs: u32,
    dip_secs: u32,
}

/// The configured policy: `rate`, the learned profile and the last
/// measured capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictivePolicy {
    rate: RatePolicy,
    profile: Profile,
    fit_ms: i64,
    tolerance: f64,
    lead_ms: i64,
    lookahead_ms: i64,
    dip_ms: i64,
    /// The capacity last measured, and the parallelism it was measured
    /// at: one subtask's throughput (the law's `mu`) is read from it by
    /// the law in force at each evaluation, which `rate` may fit anew.
    measured: Option<(f64, u32)>,
}

impl Policy for PredictivePolicy {
    const SUMMARY: &'static str = "Learns the daily and weekly profile of the input rate and \
         scales ahead of a predictable rise; falls back to `rate` when the load leaves the forecast.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::table("rate")
            .default("{}")
            .meaning("Parameters of the reactive half, exactly as the `rate` policy takes them."),
        Parameter::integer("bucket_secs")
            .default("600")
            .meaning("Resolution of the learned profile, in seconds; in [60, 3600]."),
        Parameter::integer("history_days")
            .default("15")
            .meaning("Days of input rates the profile keeps; in [1, 60]."),
        Parameter::integer("fit_secs").default("3600").meaning(
            "The recent span, in seconds, on which the season (a day or a week) is chosen and \
             the forecast judged; in [600, 86400].",
        ),
        Parameter::number("tolerance").default("0.25").meaning(
            "Mean relative error of the forecast over `fit_secs` beyond which the load has left \
             it and `rate` decides alone; in (0, 1].",
        ),
        Parameter::integer("lead_secs").default("3600").meaning(
            "A rise forecast within the rescale's downtime plus this many seconds is acted on \
             now; at most 86400.",
        ),
        Parameter::integer("lookahead_secs")
            .default("43200")
            .meaning(
                "A scale-out carries the forecast peak this many seconds past the lead; at most \
             86400.",
            ),
        Parameter::integer("dip_secs").default("86400").meaning(
            "A scale-in is held when the forecast comes back above the smaller capacity within \
             this many seconds; at most 604800.",
        ),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let config: Config = params.parse()?;
        let rate_params = Params::from(config.rate)
            .declare(RatePolicy::PARAMETERS)
            .and_then(RatePolicy::configure)
            .map_err(|e| format!("parameter `rate`: {e}"))?;
        within("bucket_secs", config.bucket_secs, 60, 3600)?;
        within("history_days", config.history_days, 1, 60)?;
        within("fit_secs", config.fit_secs, 600, 86_400)?;
        within("lead_secs", config.lead_secs, 0, 86_400)?;
        within("lookahead_secs", config.lookahead_secs, 0, 86_400)?;
        within("dip_secs", config.dip_secs, 0, 604_800)?;
        let tolerance = config.tolerance;
        if !(tolerance.is_finite() && tolerance > 0.0 && tolerance <= 1.0) {
            return Err(format!(
                "parameter `tolerance` must be in (0, 1], found {tolerance}"
            ));
        }
        Ok(PredictivePolicy {
            rate: rate_params,
            profile: Profile::new(config.bucket_secs, config.history_days),
            fit_ms: i64::from(config.fit_secs) * 1000,
            tolerance,
            lead_ms: i64::from(config.lead_secs) * 1000,
            lookahead_ms: i64::from(config.lookahead_secs) * 1000,
            dip_ms: i64::from(config.dip_secs) * 1000,
            measured: None,
        })
    }

    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        // `rate` sees every evaluation, so its own caches stay current
        // whichever half decides.
        let (reactive, observed) = self.rate.decide_observing(evaluation)?;
        let app = &evaluation.app;
        let Some(observed) = observed else {
            return Ok(reactive);
        };
        let rates = estimate::input_rates(&observed, i64::MIN);
        self.profile
            .learn(&learnable(&rates, &observed), evaluation.now_ms);
        // Learnt, but not decided on: `rate` holds an application that is
        // not running (the history handed with the first call, at an
        // update, would otherwise be lost with it).
        if app.status != AppStatus::Running {
            return Ok(reactive);
        }
        let usl = self.rate.rules().usl;
        let fresh_from = app.last_rescale_ms.unwrap_or(i64::MIN);
        if let Some(capacity) = estimate::capacity(&observed, fresh_from) {
            self.measured = Some((capacity, app.parallelism));
        }
        let Some(&(latest_ms, latest_rate)) = rates.last() else {
            return Ok(reactive);
        };
        let Some(mu) = self
            .measured
            .map(|(capacity, parallelism)| usl.base_throughput(capacity, parallelism))
        else {
            return Ok(fallback(reactive, "no capacity measured yet"));
        };
        let fit = match self.on_forecast(latest_ms) {
            Ok(fit) => fit,
            Err(why) => return Ok(fallback(reactive, &why)),
        };
        let now = evaluation.now_ms;
        let downtime_ms = app
            .last_update_duration_secs
            .map_or(self.rate.update_secs(), f64::from)
            * 1000.0;
        let lead_end = now + downtime_ms as i64 + self.lead_ms;
        let (Some(near), Some(ahead)) = (
            self.profile.peak(&fit, now, lead_end),
            self.profile.peak(&fit, now, lead_end + self.lookahead_ms),
        ) else {
            return Ok(fallback(reactive, "no forecast for the next hours"));
        };
        let ahead = ahead.max(latest_rate);
        let rules = *self.rate.rules();
        let per_kpu = app.parallelism_per_kpu.max(1);
        let kpu_carrying = |rate: f64| {
            let q = usl.parallelism_for(
                mu,
                rate / rules.target_utilisation,
                app.max_kpu.saturating_mul(per_kpu),
            );
            kpu_for(q, per_kpu).clamp(app.min_kpu, app.max_kpu)
        };
        // The KPU that carries the latest input and drains what arrives
        // during the rescale's own downtime within `catch_up_secs`: a
        // restart stops the job, and on a smaller surplus the lag it
        // leaves stays above the objective for longer.
        let downtime_secs = downtime_ms / 1000.0;
        let kpu_draining = |catch_up_secs: f64| {
            let needed = latest_rate + latest_rate * downtime_secs / catch_up_secs;
            let q = usl.parallelism_for(mu, needed, app.max_kpu.saturating_mul(per_kpu));
            kpu_for(q, per_kpu).clamp(app.min_kpu, app.max_kpu)
        };
        let season = if fit.season_ms == profile::WEEK_MS {
            "week"
        } else {
            "day"
        };
        match reactive.action {
            Action::ScaleTo(k) if k > app.kpu => {
                let target = k.max(kpu_carrying(ahead));
                Ok(Decision::scale_to(
                    target,
                    format!(
                        "{}; sized for the forecast peak {ahead:.0} records/s (by the {season}) \
                         over the next {} min",
                        reactive.reason,
                        (lead_end + self.lookahead_ms - now) / 60_000
                    ),
                ))
            }
            Action::ScaleTo(k) if k < app.kpu => {
                let smaller = usl.capacity(mu, k.saturating_mul(per_kpu));
                if let Some(back) = self.profile.peak(&fit, now, now + self.dip_ms)
                    && back > rules.scale_out_utilisation * smaller
                {
                    return Ok(Decision::hold(format!(
                        "{}, but the forecast (by the {season}) is back to {back:.0} records/s \
                         within {} min: holding through the dip",
                        reactive.reason,
                        self.dip_ms / 60_000
                    )));
                }
                // One scale-in to where the forecast says the load stays,
                // not `rate`'s step, which sizes for the window's past peak
                // and would be followed by another.
                let target = kpu_carrying(ahead).max(kpu_draining(rules.scale_in_catch_up_secs));
                if target >= app.kpu {
                    return Ok(Decision::hold(format!(
                        "{}, but the forecast peak {ahead:.0} records/s needs {target} KPU",
                        reactive.reason
                    )));
                }
                Ok(Decision::scale_to(
                    target,
                    format!(
                        "{}; to {target} KPU instead, for the forecast peak {ahead:.0} records/s \
                         and the drain of the restart",
                        reactive.reason
                    ),
                ))
            }
            _ => {
                let capacity = usl.capacity(mu, app.parallelism);
                let target = kpu_carrying(ahead).max(kpu_draining(rules.catch_up_secs));
                if near > rules.scale_out_utilisation * capacity && target > app.kpu {
                    return Ok(Decision::scale_to(
                        target,
                        format!(
                            "forecast (by the {season}) rises to {near:.0} records/s within the \
                             rescale time, past {:.0} % of the capacity {capacity:.0}: scaling \
                             ahead for the peak {ahead:.0} records/s",
                            100.0 * rules.scale_out_utilisation
                        ),
                    ));
                }
                Ok(reactive)
            }
        }
    }
}

impl PredictivePolicy {
    /// The forecast fitted to the recent past, or why there is none to act
    /// on.
    fn on_forecast(&self, latest_ms: i64) -> Result<Fit, String> {
        let Some(fit) = self
            .profile
            .fit(latest_ms - self.fit_ms, latest_ms, LATEST_PERIODS)
        else {
            return Err(format!(
                "learning the cycle ({} periods seen, a day needed)",
                self.profile.len()
            ));
        };
        if fit.error > self.tolerance || fit.latest_error > 2.0 * self.tolerance {
            return Err(format!(
                "the load left the forecast (error {:.0} %, latest {:.0} %)",
                100.0 * fit.error,
                100.0 * fit.latest_error
            ));
        }
        Ok(fit)
    }

    /// The profile learned so far.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

/// `rate`'s decision, saying why the forecast was not used.
fn fallback(reactive: Decision, why: &str) -> Decision {
    Decision {
        reason: format!("{} (rate alone: {why})", reactive.reason),
        ..reactive
    }
}

/// Checks that a whole-number parameter lies in `[low, high]`.
fn within(name: &str, value: u32, low: u32, high: u32) -> Result<(), String> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "parameter `{name}` must be in [{low}, {high}], found {value}"
    ))
}

export_policy!(PredictivePolicy);

#[cfg(test)]
mod tests;
