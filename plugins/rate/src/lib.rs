//! `rate`: a DS2-style policy that sizes the capacity for the true input
//! rate plus the backlog, and gets there in one rescale.
//!
//! Threshold policies (`step`, MSF's own rule) see only that the job is
//! busy, not how far behind it is, so they step up by a factor and look
//! again, paying a restart each time. This policy measures what is needed:
//!
//! - **Input rate**: the processed rate (`numRecordsInPerSecond`) plus the
//!   growth of the source's backlog (`SumOffsetLag`), per period. A
//!   saturated job processes its capacity, not its input; what it does not
//!   process piles up in the source.
//! - **Capacity at the current parallelism**: processed rate / utilisation
//!   (`busyTimeMsPerSecond` / 1000). Extrapolated to another parallelism
//!   through the Universal Scalability Law (`usl_sigma`, `usl_kappa`), so
//!   the job's sub-linear scaling is accounted for. Once capacities have
//!   been measured at parallelisms at least 1.5 times apart (within
//!   `usl_fit_secs`, on periods known to be at that size and at least 30 %
//!   busy), the law is the one of the configured shape that fits them
//!   ([`usl::Usl::fitted`]; moved only partly when the sizes are close,
//!   and never so far that the curve stops rising where the job is): a
//!   job that scales worse than configured is sized for what it does,
//!   from its second size on.
//! - **Backlog now**: the latest backlog datapoint, carried forward to now
//!   at (input - capacity).
//!
//! **Scale-out**, when the input passes `scale_out_utilisation` of the
//! capacity, or a backlog is waiting that riding out at the current
//! capacity would keep the lag above `max_lag_secs` for longer than a
//! rescale would (a restart adds its own downtime to the lag at once, so a
//! backlog that is draining is usually best left to drain): the capacity
//! needed is the larger of (a) the input rate, projected along its trend
//! to `horizon_secs` past the restart, at `target_utilisation`, and (b) the
//! input rate plus the backlog waiting at the restart drained within
//! `catch_up_secs`, where that backlog includes what arrives during the
//! rescale's own downtime (the host's measured `last-update-duration-secs`,
//! else `update_secs`), when nothing is processed. One rescale goes there.
//! The catch-up share (what (b) asks beyond (a)) stops at the knee of the
//! law, where one more subtask adds less than `catch_up_knee` of a
//! subtask's average capacity: the backlog is transient, and subtasks that
//! add little drain it at a high price in KPU for as long as the new size
//! lasts, so past the knee it drains more slowly.
//! On a jump (the input at least `jump_utilisation` times the capacity)
//! the sizing is leaner, `jump_target_utilisation` and
//! `jump_catch_up_secs`: a jump leaves a large backlog however fast it is
//! drained, so a slower drain costs few violation seconds, while capacity
//! sized for a fast one is paid for as long as the new level lasts. (Not
//! within `scale_in_window_secs` of giving back a scale-out's catch-up
//! surplus: the burst it was for ended, so a new jump is a burst that
//! recurs, and its level lasts about as briefly; it is sized as any other
//! scale-out.) A backlog that the current capacity drains within
//! `jump_catch_up_secs` is ridden out (a second rescale would undo the
//! jump's sizing). An input past `scale_out_utilisation` but still within
//! the capacity, with no backlog waiting, is only a warning of saturation
//! to come: it triggers a scale-out only while its trend (over
//! `trend_window_secs`) is rising. Every rescale costs its downtime in lag, and a flat or falling input
//! that the capacity carries gains nothing from one (a load that starts
//! near the capacity and then falls would otherwise pay for a scale-out
//! and for every scale-in after it).
//!
//! **Scale-in**, only when no backlog is left and the peak input over a
//! window is below a fraction of the capacity: to the least capacity that
//! carries that peak at `target_utilisation`. Which window, and which
//! fraction, depends on why the capacity is too large:
//!
//! - **The load fell**: a whole `scale_in_window_secs` with no rescale in
//!   it, and `scale_in_utilisation`, by default 0.35 (under half of
//!   the default `target_utilisation`), so a scale-in more than halves the
//!   capacity. The smaller capacity also drains what arrives during the
//!   scale-in's own restart within `scale_in_catch_up_secs` (sized for
//!   the target utilisation alone it drains that at a quarter of the
//!   input, and the lag stays above the objective for minutes).
//!   Every rescale costs at least `update_secs - max_lag_secs` of violation
//!   plus its drain, and a scale-out without backlog roughly doubles the
//!   capacity (the input at `scale_out_utilisation`, plus what arrives
//!   during the restart drained within `catch_up_secs`); a scale-in of the
//!   same size keeps the number of rescales over a slow cycle proportional
//!   to the logarithm of its range rather than to its length, and leaves
//!   room for the input to turn up again before the next scale-out. After
//!   a scale-in, this is the only way further down: following a falling
//!   load by a rescale every few minutes would pay a restart each time.
//!   For the same reason a scale-in goes where the load is, in one step:
//!   when the latest input is below `scale_in_utilisation` of the capacity
//!   the window's peak asks for, the load is still falling and the peak is
//!   history (sized for it, a second scale-in would follow as soon as the
//!   peak left the window), so the latest input sets the size. For the
//!   same reason it waits while the input falls: when the fall over the
//!   window, projected one more window ahead, goes below
//!   `scale_in_utilisation` of the smaller capacity, a second scale-in
//!   would follow, so it waits for the fall to end and then goes there in
//!   one. The projection takes the fall as an approach to a floor (from the
//!   slopes of the window's two halves), so a fall that slows, as a crowd
//!   dispersing, is not carried past where it levels out.
//! - **A scale-out was sized to catch up on a backlog** (this policy asked
//!   for it, with a backlog waiting): the settle span, the last
//!   `settle_secs` (all after the scale-out), and `settle_utilisation`,
//!   closer to the target. That surplus is the catch-up share the
//!   scale-out chose on purpose, and it is known to be transient once the
//!   backlog is gone. (A scale-out for saturation alone has only its own
//!   downtime to catch up on; its surplus is the headroom of a load that
//!   is still rising, and stays until a whole window says otherwise.) The span slides, so a load still falling after the
//!   scale-out (a flash crowd dispersing) is judged by where it is now, not
//!   by the peak it fell from. When the input dropped by more than a
//!   quarter from one period to the next within the span (a burst that
//!   ended), only the periods since the drop count, once they are half the
//!   span: the burst's level is history. When the latest input rate is more
//!   than 10 % above the median of the span, the load is coming back (a
//!   sawtooth's next ramp): no scale-in. A scale-in on the settle span
//!   leaves the next span judged the same way: a load still falling after
//!   it (a crowd dispersing) is followed down a settle span at a time,
//!   each step sized at `target_utilisation`, so the next comes only once
//!   the input has fallen by about a quarter again, instead of a whole
//!   `scale_in_window_secs` later, by when it may sit below the
//!   `scale_in_utilisation` threshold of the size it stopped at for good.
//!   After a jump's scale-out, at the size the jump asked for, a settle
//!   span whose peak stays above `settle_utilisation` (the level held: a
//!   step that stays, not a burst that ended) still gives back the
//!   catch-up share once no backlog is left: the jump sized its level at
//!   `jump_target_utilisation` and added the rest to drain the backlog
//!   that is now gone, so it goes to the KPU that carries the span's peak
//!   at `jump_target_utilisation`. That costs a restart at a high
//!   utilisation (a slow drain), bought back as long as the level lasts.
//!   It is not a burst that ended (a jump after it is still sized lean),
//!   and the span after it is judged as a settle span too.
//!
//! **Stale data is never used.** A job metric of a period that started
//! before the last restart for an update (`last-rescale-ms`: the host's
//! last completed rescale, or the service's later update) describes the
//! old capacity, or the
//! restart, when the job published nothing; only periods that started after
//! it count. The policy therefore holds after a rescale until the first
//! fresh periods are visible (CloudWatch publishes a period only after it
//! ends, plus its delay). The policy holds while the application is not
//! RUNNING.
//!
//! # Parameters
//!
//! Declared, with their kinds, defaults and meanings, in [`RatePolicy`]'s
//! `PARAMETERS` (`flinkscale plugin describe rate` prints them); all are
//! optional. The utilisations (`target_utilisation`,
//! `scale_out_utilisation`, `scale_in_utilisation`, `settle_utilisation`,
//! and on a jump `jump_utilisation` and `jump_target_utilisation`)
//! shape when and how far it rescales, and `catch_up_knee` how far a
//! catch-up goes; the durations (`catch_up_secs`,
//! `jump_catch_up_secs`,
//! `scale_in_window_secs`, `settle_secs`, `horizon_secs`,
//! `trend_window_secs`, `update_secs`, `max_lag_secs`) how fast; the
//! scalability law (`usl_sigma`, `usl_kappa`, `usl_fit_secs`,
//! `records_per_subtask_per_sec`) how capacity grows with parallelism; and
//! `records_in_metric`, `busy_metric` and `backlog_metric` name the metrics.
//!
//! # State
//!
//! The input rates of past periods are cached between evaluations, since
//! the scale-in window is longer than the metric window the host fetches,
//! and so are the KPU seen at the last evaluation and whether the last
//! scale-out asked for was to catch up on a backlog, to tell which rule a
//! rescale leaves in force, and when the policy last asked to give a
//! catch-up surplus back, to tell a recurring burst from a jump (and
//! whether its last rescale was that, to judge the span after it as a
//! settle span too), and the
//! capacity last measured at each parallelism, to fit the law. A fresh
//! instance starts with an empty cache and knows of no scale-out, which
//! only delays a scale-in (and sizes a recurring burst as a jump): it
//! never causes one; it sizes by the configured law until it has measured
//! two sizes again.

#![warn(missing_docs)]

use std::collections::BTreeMap;

use flinkscale_plugin::{AppStatus, Decision, Evaluation, Parameter, Params, Policy};
use serde::Deserialize;

pub mod estimate;
pub mod observe;
pub mod plan;
pub use flinkscale_plugin::usl;

use observe::{MetricIds, Observed};
use plan::{Plan, Rules, Situation, Window};
use usl::Usl;

/// The parameters as written; every key but three has a declared default.
#[derive(Deserialize)]
struct Config {
    target_utilisation: f64,
    scale_out_utilisation: f64,
    /// Absent: `DEFAULT_SCALE_IN_UTILISATION`, or half of
    /// `target_utilisation` when that is lower.
    scale_in_utilisation: Option<f64>,
    /// Absent: `DEFAULT_SETTLE_UTILISATION`, or three quarters of
    /// `target_utilisation` when that is lower.
    settle_utilisation: Option<f64>,
    catch_up_secs: f64,
    jump_utilisation: f64,
    jump_target_utilisation: f64,
    jump_catch_up_secs: f64,
    scale_in_catch_up_secs: f64,
    scale_in_window_secs: u32,
    settle_secs: u32,
    horizon_secs: f64,
    trend_window_secs: u32,
    update_secs: f64,
    max_lag_secs: f64,
    usl_sigma: f64,
    usl_kappa: f64,
    usl_fit_secs: u32,
    catch_up_knee: f64,
    records_per_subtask_per_sec: Option<f64>,
    records_in_metric: String,
    busy_metric: String,
    backlog_metric: String,
}

/// `scale_in_utilisation` when absent (unless half of
/// `target_utilisation` is lower).
const DEFAULT_SCALE_IN_UTILISATION: f64 = 0.35;

/// `settle_utilisation` when absent (unless three quarters of
/// `target_utilisation` is lower).
const DEFAULT_SETTLE_UTILISATION: f64 = 0.6;

/// A scale-in window counts as seen when at least this fraction of its
/// periods have a known input rate.
const WINDOW_COVERAGE: f64 = 0.8;

/// The configured policy and its cache of input rates.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePolicy {
    rules: Rules,
    scale_in_window_ms: i64,
    settle_ms: i64,
    trend_window_ms: i64,
    update_secs: f64,
    records_per_subtask: Option<f64>,
    /// The law as configured; `rules.usl` is the one in force, fitted to
    /// `capacities` when they tell it.
    prior: Usl,
    /// How long a measured capacity counts toward the fit (0: no fit).
    usl_fit_ms: i64,
    /// The capacity last measured at each parallelism, and when (ms).
    capacities: BTreeMap<u32, (f64, i64)>,
    /// The parallelism at the previous evaluation of a running
    /// application: only periods known to be at it count toward the fit.
    parallelism_seen: Option<Seen>,
    ids: MetricIds,
    /// Input rate by period start (ms); a cache, see the crate docs.
    rates: BTreeMap<i64, f64>,
    /// The KPU seen at the previous evaluation.
    seen_kpu: Option<u32>,
    /// Whether the last scale-out this policy asked for (if it has not been
    /// seen to happen yet) was sized to catch up on a backlog, not only on
    /// its own downtime.
    asked_up: Option<bool>,
    /// Whether the last change of KPU seen was a scale-out that this
    /// policy sized to catch up on a backlog: only its surplus settles.
    settle_allowed: bool,
    /// When this policy last asked to give back a catch-up surplus (a
    /// scale-in on the settle span: the burst it was for ended).
    burst_ended_ms: Option<i64>,
    /// The KPU of the settle scale-in (a catch-up surplus given back) this
    /// policy asked for at its last decision, if it was one: once the
    /// application is at that size, the span after it is judged as a
    /// settle span too, so a load still falling (a crowd dispersing) is
    /// followed down without a whole window's wait. Any other decision
    /// forgets it, and so does any other size (another writer's, a
    /// rollback's).
    asked_settle: Option<u32>,
    /// The KPU of the last scale-out asked for, when it was a jump's.
    asked_jump: Option<u32>,
    /// Whether the settle span in force follows a jump's scale-out, to the
    /// size the jump asked for: its surplus over the level is the
    /// catch-up share this policy chose.
    settle_after_jump: bool,
}

impl Policy for RatePolicy {
    const SUMMARY: &'static str = "Sizes the capacity for the true input rate plus the backlog \
         (DS2-style) and gets there in one rescale; scales in only when the load has stayed low.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::number("target_utilisation")
            .default("0.8")
            .meaning("The utilisation a new capacity is sized for, in (0, 1]."),
        Parameter::number("scale_out_utilisation")
            .default("0.95")
            .meaning(
                "Scale out when the input passes this fraction of the capacity and is rising \
             (or passes the capacity, or a backlog waits); in [`target_utilisation`, 1].",
            ),
        Parameter::number("scale_in_utilisation").meaning(
            "Scale in, after a whole `scale_in_window_secs` with no rescale, only when the \
             window's peak input is below this fraction of the capacity; in (0, \
             `target_utilisation`). When absent, 0.35, or half of `target_utilisation` when \
             that is lower.",
        ),
        Parameter::number("settle_utilisation").meaning(
            "The same, when the window is the settle span after a scale-out sized to catch up \
             on a backlog, or after a scale-in on such a span (a load still falling); in (0, \
             `target_utilisation`). When absent, 0.6, or three quarters of \
             `target_utilisation` when that is lower.",
        ),
        Parameter::number("catch_up_secs").default("120").meaning(
            "Drain the backlog waiting at the restart within this many seconds; positive.",
        ),
        Parameter::number("jump_utilisation")
            .default("1.5")
            .meaning(
                "An input rate at least this many times the capacity is a jump (a step, a spike, a \
             crowd), sized by `jump_target_utilisation` and `jump_catch_up_secs` instead of \
             `target_utilisation` and `catch_up_secs` (unless a catch-up surplus was given \
             back within `scale_in_window_secs`: a recurring burst); at least \
             `scale_out_utilisation`.",
            ),
        Parameter::number("jump_target_utilisation")
            .default("0.9")
            .meaning("The utilisation a capacity is sized for on a jump, in (0, 1]."),
        Parameter::number("jump_catch_up_secs")
            .default("600")
            .meaning(
                "On a jump, drain the backlog waiting at the restart within this many seconds; \
             a backlog that the current capacity drains within it is ridden out, not rescaled \
             for; positive.",
            ),
        Parameter::number("scale_in_catch_up_secs")
            .default("150")
            .meaning(
                "A scale-in after a whole `scale_in_window_secs` is sized to also drain what \
             arrives during its own restart within this many seconds; positive.",
            ),
        Parameter::number("catch_up_knee").default("0.6").meaning(
            "The catch-up share of a scale-out (draining a backlog, beyond carrying the input) \
             adds subtasks only while one more adds at least this fraction of a subtask's \
             average capacity under the law; past that the drain takes longer. In [0, 1); 0 \
             for no limit.",
        ),
        Parameter::integer("scale_in_window_secs")
            .default("1800")
            .meaning("How long the input must have stayed low before a scale-in."),
        Parameter::integer("settle_secs").default("600").meaning(
            "The settle span after a scale-out sized to catch up on a backlog; at most \
             `scale_in_window_secs` (a longer one is cut to it).",
        ),
        Parameter::number("horizon_secs").default("0").meaning(
            "On scale-out, project a rising input rate this far past the restart; in [0, 86400].",
        ),
        Parameter::integer("trend_window_secs")
            .default("900")
            .meaning("The input rates the trend is fitted on, in seconds up to the latest."),
        Parameter::number("update_secs")
            .default("90")
            .meaning("Downtime of a rescale, until the agent has measured one; in [0, 86400]."),
        Parameter::number("max_lag_secs").default("60").meaning(
            "The lag objective: a backlog below the saturation point triggers a rescale only \
             when riding it out would keep the lag above this for longer than the rescale \
             would; positive.",
        ),
        Parameter::number("usl_sigma")
            .default("0.02")
            .meaning("Contention of the Universal Scalability Law, in [0, 1); 0 for a linear job."),
        Parameter::number("usl_kappa")
            .default("0.0002")
            .meaning("Coherency of the Universal Scalability Law, in [0, 1); 0 for a linear job."),
        Parameter::integer("usl_fit_secs").default("86400").meaning(
            "Capacities measured (on periods at least 30 % busy) at parallelisms at least 1.5 \
             times apart within this many seconds scale the law (`usl_sigma` and `usl_kappa` \
             together; a linear law gets the default's shape) to fit them: at most five times, \
             less when the sizes are close, and never so far that the curve stops rising where \
             the job is. 0 keeps the law as given.",
        ),
        Parameter::number("records_per_subtask_per_sec").meaning(
            "One subtask's throughput in records per second, used only until the utilisation \
             has been measured; positive. When absent, the policy holds until it has (a job too \
             idle to measure, under 5 % busy, may be scaled in on the capacity it has at least; \
             one with no input at all, to its min KPU).",
        ),
        Parameter::metric_id("records_in_metric")
            .default("\"records_in\"")
            .meaning("Metric id of `numRecordsInPerSecond` (Average)."),
        Parameter::metric_id("busy_metric")
            .default("\"busy\"")
            .meaning("Metric id of `busyTimeMsPerSecond` (Average)."),
        Parameter::metric_id("backlog_metric")
            .default("\"backlog\"")
            .meaning(
                "Metric id of the source's backlog in records (`AWS/Kafka` `SumOffsetLag`, \
             Maximum); when the application does not configure it, or it has no datapoint, the \
             input rate is the processed rate. An id other than \"backlog\" must be configured.",
            ),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let config: Config = params.parse()?;
        let target_utilisation = config.target_utilisation;
        in_range(
            "target_utilisation",
            target_utilisation,
            0.0,
            false,
            1.0,
            true,
        )?;
        let scale_out_utilisation = config.scale_out_utilisation;
        in_range(
            "scale_out_utilisation",
            scale_out_utilisation,
            target_utilisation,
            true,
            1.0,
            true,
        )?;
        let scale_in_utilisation = config
            .scale_in_utilisation
            .unwrap_or((target_utilisation / 2.0).min(DEFAULT_SCALE_IN_UTILISATION));
        in_range(
            "scale_in_utilisation",
            scale_in_utilisation,
            0.0,
            false,
            target_utilisation,
            false,
        )?;
        let settle_utilisation = config
            .settle_utilisation
            .unwrap_or((target_utilisation * 0.75).min(DEFAULT_SETTLE_UTILISATION));
        in_range(
            "settle_utilisation",
            settle_utilisation,
            0.0,
            false,
            target_utilisation,
            false,
        )?;
        let catch_up_secs = config.catch_up_secs;
        positive("catch_up_secs", catch_up_secs)?;
        let jump_utilisation = config.jump_utilisation;
        at_least("jump_utilisation", jump_utilisation, scale_out_utilisation)?;
        let jump_target_utilisation = config.jump_target_utilisation;
        in_range(
            "jump_target_utilisation",
            jump_target_utilisation,
            0.0,
            false,
            1.0,
            true,
        )?;
        let jump_catch_up_secs = config.jump_catch_up_secs;
        positive("jump_catch_up_secs", jump_catch_up_secs)?;
        let scale_in_catch_up_secs = config.scale_in_catch_up_secs;
        positive("scale_in_catch_up_secs", scale_in_catch_up_secs)?;
        let scale_in_window_secs = config.scale_in_window_secs;
        let settle_secs = config.settle_secs.min(scale_in_window_secs);
        let horizon_secs = config.horizon_secs;
        in_range("horizon_secs", horizon_secs, 0.0, true, 86_400.0, true)?;
        let trend_window_secs = config.trend_window_secs;
        let update_secs = config.update_secs;
        in_range("update_secs", update_secs, 0.0, true, 86_400.0, true)?;
        let max_lag_secs = config.max_lag_secs;
        positive("max_lag_secs", max_lag_secs)?;
        let sigma = config.usl_sigma;
        in_range("usl_sigma", sigma, 0.0, true, 1.0, false)?;
        let kappa = config.usl_kappa;
        in_range("usl_kappa", kappa, 0.0, true, 1.0, false)?;
        let catch_up_knee = config.catch_up_knee;
        in_range("catch_up_knee", catch_up_knee, 0.0, true, 1.0, false)?;
        let records_per_subtask = config.records_per_subtask_per_sec;
        if let Some(mu) = records_per_subtask {
            positive("records_per_subtask_per_sec", mu)?;
        }
        let ids = MetricIds {
            records_in: config.records_in_metric,
            busy: config.busy_metric,
            backlog: config.backlog_metric,
        };
        Ok(RatePolicy {
            rules: Rules {
                target_utilisation,
                scale_out_utilisation,
                scale_in_utilisation,
                settle_utilisation,
                catch_up_secs,
                jump_utilisation,
                jump_target_utilisation,
                jump_catch_up_secs,
                scale_in_catch_up_secs,
                horizon_secs,
                max_lag_secs,
                usl: Usl { sigma, kappa },
                catch_up_knee,
            },
            prior: Usl { sigma, kappa },
            usl_fit_ms: i64::from(config.usl_fit_secs) * 1000,
            capacities: BTreeMap::new(),
            parallelism_seen: None,
            scale_in_window_ms: i64::from(scale_in_window_secs) * 1000,
            settle_ms: i64::from(settle_secs) * 1000,
            trend_window_ms: i64::from(trend_window_secs) * 1000,
            update_secs,
            records_per_subtask,
            ids,
            rates: BTreeMap::new(),
            seen_kpu: None,
            asked_up: None,
            settle_allowed: false,
            burst_ended_ms: None,
            asked_settle: None,
            asked_jump: None,
            settle_after_jump: false,
        })
    }

    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        self.decide_observing(evaluation)
            .map(|(decision, _)| decision)
    }
}

impl RatePolicy {
    /// [`Policy::decide`], and the series it joined to decide: a policy
    /// that builds on this one reads the same periods without joining them
    /// again. When the application is not running the decision is a hold,
    /// and the series are there as far as they join (none if they do not),
    /// for a policy that learns from them.
    pub fn decide_observing(
        &mut self,
        evaluation: &Evaluation,
    ) -> Result<(Decision, Option<Observed>), String> {
        let app = &evaluation.app;
        // Any decision since forgets a settle scale-in asked for: one not
        // carried out before it (held, refused, a dry run) is no longer
        // the policy's.
        let asked_settle = self.asked_settle.take();
        if let Some(seen) = self.seen_kpu
            && seen != app.kpu
        {
            self.settle_allowed = (app.kpu > seen && self.asked_up == Some(true))
                || (app.kpu < seen && asked_settle == Some(app.kpu));
            self.settle_after_jump =
                app.kpu > seen && self.asked_up == Some(true) && self.asked_jump == Some(app.kpu);
            self.asked_up = None;
        }
        self.seen_kpu = Some(app.kpu);
        if app.status != AppStatus::Running {
            let hold = Decision::hold(format!("application is {}, not RUNNING", app.status));
            // The series still go to a policy that learns from them: the
            // history handed with the first call may come at an update.
            return Ok((hold, Observed::from_evaluation(evaluation, &self.ids).ok()));
        }
        let observed = Observed::from_evaluation(evaluation, &self.ids)?;
        let mut decision = self.decide_on(evaluation, &observed)?;
        if observed.backlog_silent {
            decision.reason.push_str(&format!(
                " (the backlog metric `{}` has no datapoints: the input rate is taken as the \
                 processed rate)",
                self.ids.backlog
            ));
        }
        Ok((decision, Some(observed)))
    }

    /// A job with no input at all (its source quiet: no records processed
    /// since the last rescale, an input rate of 0, no backlog) for a whole
    /// scale-in window goes to its min KPU: no capacity can be measured
    /// or bounded from records it did not process, so the plan cannot
    /// size it, and it held at its size for as long as the input stayed
    /// at zero. `None` otherwise (the caller holds for want of a
    /// capacity). Only for a job whose capacity is unknown: one measured
    /// as 0 (busy, processing nothing: a stalled operator) is not idle.
    fn no_input(
        &self,
        evaluation: &Evaluation,
        observed: &Observed,
        input_rate: f64,
        latest_ms: i64,
        fresh_from: i64,
    ) -> Option<Decision> {
        let app = &evaluation.app;
        let least = app.min_kpu.max(1);
        // A backlog metric configured but silent (a misspelt dimension)
        // says nothing of a backlog: not quiet.
        let quiet = input_rate == 0.0
            && !observed.backlog_silent
            && observed
                .latest_backlog()
                .is_none_or(|(_, records)| records == 0.0)
            && estimate::processed_nothing(observed, fresh_from);
        let window = self.window(latest_ms, observed.period_ms, app.last_rescale_ms);
        (quiet && app.kpu > least && window == Window::Whole(0.0)).then(|| {
            Decision::scale_to(
                least,
                format!(
                    "no input for the whole scale-in window ({:.0} s) and no backlog: no \
                     records processed in the periods read, so no capacity measured; to the min \
                     KPU ({least})",
                    self.scale_in_window_ms as f64 / 1000.0
                ),
            )
        })
    }

    /// The decision on the periods joined from a running application's
    /// evaluation.
    fn decide_on(
        &mut self,
        evaluation: &Evaluation,
        observed: &Observed,
    ) -> Result<Decision, String> {
        let app = &evaluation.app;
        let period_ms = observed.period_ms;
        let fresh_from = app.last_rescale_ms.unwrap_or(i64::MIN);
        let fresh_rates = estimate::input_rates(observed, fresh_from);
        self.remember(&fresh_rates, evaluation.now_ms, period_ms);
        self.measure_for_the_law(evaluation, observed);
        let Some(&(latest_ms, input_rate)) = fresh_rates.last() else {
            return Ok(Decision::hold(
                "no input rate measured since the last rescale yet",
            ));
        };
        let measured = estimate::capacity(observed, fresh_from);
        let capacity = measured.or_else(|| {
            self.records_per_subtask
                .map(|mu| self.rules.usl.capacity(mu, app.parallelism))
        });
        // An idle job: no capacity measured, but at least this much.
        let at_least = capacity
            .is_none()
            .then(|| estimate::capacity_at_least(observed, fresh_from))
            .flatten();
        let Some(capacity) = capacity.or(at_least) else {
            if let Some(decision) =
                self.no_input(evaluation, observed, input_rate, latest_ms, fresh_from)
            {
                return Ok(decision);
            }
            return Ok(Decision::hold(format!(
                "input {input_rate:.0} records/s, but no capacity measured since the last \
                 rescale yet (utilisation below {:.0} %)",
                100.0 * estimate::MIN_UTILISATION
            )));
        };
        let backlog = estimate::backlog_now(
            observed.latest_backlog(),
            period_ms,
            evaluation.now_ms,
            input_rate,
            capacity,
        );
        let trend_points: Vec<(i64, f64)> = self
            .rates
            .range(latest_ms - self.trend_window_ms + period_ms..)
            .map(|(t, r)| (*t, *r))
            .collect();
        let window = self.window(latest_ms, period_ms, app.last_rescale_ms);
        let fall_ahead = if matches!(window, Window::Whole(_)) {
            let window_points: Vec<(i64, f64)> = self
                .rates
                .range(latest_ms - self.scale_in_window_ms + period_ms..)
                .map(|(t, r)| (*t, *r))
                .collect();
            estimate::fall_ahead(&window_points, self.scale_in_window_ms as f64 / 1000.0)
        } else {
            None
        };
        let situation = Situation {
            kpu: app.kpu,
            parallelism: app.parallelism,
            per_kpu: app.parallelism_per_kpu,
            min_kpu: app.min_kpu,
            max_kpu: app.max_kpu,
            input_rate,
            slope: estimate::trend(&trend_points),
            fall_ahead,
            data_age_secs: (evaluation.now_ms - latest_ms - period_ms).max(0) as f64 / 1000.0,
            window,
            capacity,
            backlog,
            downtime_secs: app
                .last_update_duration_secs
                .map_or(self.update_secs, f64::from),
            burst_recurs: self
                .burst_ended_ms
                .is_some_and(|at| evaluation.now_ms - at < self.scale_in_window_ms),
            settle_after_jump: self.settle_after_jump,
        };
        let plan = plan::plan(&self.rules, &situation);
        // A lower bound of the capacity sizes a scale-in safely, and
        // nothing else: it overstates what a scale-out needs (a source
        // stalled with a backlog growing reads as a job at 1 % busy). A
        // hold keeps its own reason (and its quiet wait).
        if at_least.is_some() && matches!(plan, Plan::ScaleTo(kpu, _) if kpu >= app.kpu) {
            return Ok(Decision::hold(format!(
                "input {input_rate:.0} records/s, but no capacity measured since the last rescale \
                 yet (utilisation below {:.0} %): the {capacity:.0} records/s it has at least \
                 sizes a scale-in only",
                100.0 * estimate::MIN_UTILISATION
            )));
        }
        let mut decision = match plan {
            Plan::Hold(reason) => Decision {
                next_evaluation_secs: quiet_for(&self.rules, &situation, period_ms),
                ..Decision::hold(reason)
            },
            Plan::ScaleTo(kpu, reason) => {
                let reason = match self.law_fitted() {
                    Some(fitted) => format!("{reason} ({fitted})"),
                    None => reason,
                };
                if kpu > app.kpu {
                    self.asked_up = Some(situation.backlog_waiting());
                    self.asked_jump = plan::is_jump(&self.rules, &situation).then_some(kpu);
                } else if matches!(situation.window, Window::Settle(_)) {
                    // A settle scale-in: the span after it is judged as a
                    // settle span too. Unless it gives back a jump's
                    // catch-up share while the level holds, the burst the
                    // scale-out was for ended.
                    if plan::catch_up_given_back(&self.rules, &situation).is_none() {
                        self.burst_ended_ms = Some(evaluation.now_ms);
                    }
                    self.asked_settle = Some(kpu);
                }
                Decision::scale_to(kpu, reason)
            }
        };
        if at_least.is_some() {
            decision.reason.push_str(&format!(
                " (capacity taken as at least {capacity:.0} records/s: the job was under {:.0} % \
                 busy, too idle to measure it)",
                100.0 * estimate::MIN_UTILISATION
            ));
        }
        Ok(decision)
    }
}

/// Capacities measured on periods less busy than this do not count toward
/// the fitted law.
pub const FIT_MIN_UTILISATION: f64 = 0.3;

/// A parallelism as this policy saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    /// The parallelism.
    parallelism: u32,
    /// Subtasks per KPU.
    per_kpu: u32,
    /// Since when the application is known to have run at it (ms).
    since_ms: i64,
    /// The evaluation that saw it last (ms).
    evaluated_ms: i64,
}

/// How far below a threshold the load must sit for nothing to be moving:
/// the utilisation under this fraction of the scale-out one, the window's
/// peak over 1 / this fraction of the scale-in one.
const QUIET_MARGIN: f64 = 0.75;

/// When nothing moves, one metric period (in seconds) as
/// `next-evaluation-secs`: the host then skips the evaluations in between
/// (in whole evaluation intervals), which could at most see one new
/// period. `None` otherwise (the regular interval).
///
/// Nothing moves when no backlog waits, the utilisation is well below the
/// scale-out threshold, and a whole scale-in window is seen whose peak is
/// well above the scale-in threshold: no datapoint of the next period can
/// make a scale-in, and only a jump of more than a third of the input in
/// one period can make a scale-out (which is then seen up to one period
/// later than at the regular interval; `bench` shows what that costs).
fn quiet_for(rules: &Rules, s: &Situation, period_ms: i64) -> Option<u32> {
    let capacity = s.capacity.max(f64::MIN_POSITIVE);
    let Window::Whole(peak) = s.window else {
        return None;
    };
    let quiet = !s.backlog_waiting()
        && s.input_rate / capacity < rules.scale_out_utilisation * QUIET_MARGIN
        && peak * QUIET_MARGIN > capacity * rules.scale_in_utilisation;
    if !quiet {
        return None;
    }
    u32::try_from(period_ms / 1000)
        .ok()
        .filter(|&secs| secs > 0)
}

impl RatePolicy {
    /// The sizing rules in force, for a policy that builds on this one
    /// (`predictive` sizes its forecasts by the same utilisations and law).
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The metric ids the policy reads.
    pub fn metric_ids(&self) -> &MetricIds {
        &self.ids
    }

    /// The downtime of a rescale assumed until one has been measured.
    pub fn update_secs(&self) -> f64 {
        self.update_secs
    }

    /// Remembers the capacity at the current parallelism, measured on the
    /// periods known to be at it, and fits the law in force to the
    /// capacities measured within `usl_fit_secs`, forgetting older ones.
    ///
    /// The periods known to be at a parallelism are those after the
    /// rescale that set it, or after this policy first saw it: a fresh
    /// agent does not know when the application last changed size, nor
    /// the policy when another writer changed it, and a window that mixes
    /// two sizes would skew the fit. Only periods at least
    /// [`FIT_MIN_UTILISATION`] busy count (a job that idles reports a busy
    /// time that its fixed overhead inflates). A change of subtasks per
    /// KPU forgets every capacity: the same parallelism then runs on other
    /// resources.
    fn measure_for_the_law(&mut self, evaluation: &Evaluation, observed: &Observed) {
        let app = &evaluation.app;
        let now_ms = evaluation.now_ms;
        let since_ms = match self.parallelism_seen {
            Some(seen)
                if seen.parallelism == app.parallelism
                    && seen.per_kpu == app.parallelism_per_kpu =>
            {
                seen.since_ms
            }
            // Changed since the previous evaluation: by the update the
            // host reports (the end of its own rescale, or the request of
            // another writer's), when after that evaluation; else at a
            // time not known, at the latest now.
            Some(seen) => app
                .last_rescale_ms
                .filter(|at| *at > seen.evaluated_ms)
                .unwrap_or(now_ms),
            None => now_ms,
        };
        if self
            .parallelism_seen
            .is_some_and(|seen| seen.per_kpu != app.parallelism_per_kpu)
        {
            self.capacities.clear();
        }
        self.parallelism_seen = Some(Seen {
            parallelism: app.parallelism,
            per_kpu: app.parallelism_per_kpu,
            since_ms,
            evaluated_ms: now_ms,
        });
        if self.usl_fit_ms == 0 {
            return;
        }
        let from = app.last_rescale_ms.unwrap_or(i64::MIN).max(since_ms);
        if let Some(capacity) = estimate::capacity_busy_from(observed, from, FIT_MIN_UTILISATION) {
            self.capacities.insert(app.parallelism, (capacity, now_ms));
        }
        let forget_before = now_ms - self.usl_fit_ms;
        self.capacities.retain(|_, (_, at)| *at >= forget_before);
        let measured: Vec<(u32, f64)> = self
            .capacities
            .iter()
            .map(|(&q, &(capacity, _))| (q, capacity))
            .collect();
        self.rules.usl = self.prior.fitted(&measured, app.parallelism);
    }

    /// How the law in force was fitted, when it differs from the one
    /// configured: said in a scale's reason.
    fn law_fitted(&self) -> Option<String> {
        if self.rules.usl == self.prior {
            return None;
        }
        let sizes: Vec<String> = self
            .capacities
            .iter()
            .filter(|(_, (capacity, _))| *capacity > 0.0)
            .map(|(q, _)| q.to_string())
            .collect();
        Some(format!(
            "law fitted to the capacities measured at parallelism {}: sigma {:.3}, kappa {:.5}",
            sizes.join(", "),
            self.rules.usl.sigma,
            self.rules.usl.kappa
        ))
    }

    /// Adds fresh rates to the cache and forgets what no window needs.
    fn remember(&mut self, fresh: &[(i64, f64)], now_ms: i64, period_ms: i64) {
        self.rates.extend(fresh.iter().copied());
        let keep_ms = self.scale_in_window_ms.max(self.trend_window_ms) + 10 * period_ms;
        let keep_from = now_ms - keep_ms;
        if self
            .rates
            .first_key_value()
            .is_some_and(|(&t, _)| t < keep_from)
        {
            self.rates = self.rates.split_off(&keep_from);
        }
    }

    /// The scale-in window that ends with the period starting at
    /// `latest_ms`, once it is known (see [`Window`]).
    ///
    /// The window is the last `scale_in_window_secs` with no rescale in it,
    /// or, after a scale-out this policy sized to catch up on a backlog,
    /// the settle span: the last `settle_secs`, all of them after the
    /// rescale. A scale-out sized to catch up on a backlog leaves a surplus
    /// as soon as the backlog is gone, and rates seen at the new capacity
    /// are all there is to judge it by. The span slides, so a load that
    /// keeps falling after the scale-out (a flash crowd dispersing) is
    /// judged by where it is now, not by the peak it fell from. After any
    /// other rescale, or when the last one is unknown (a fresh instance),
    /// only a whole window counts: following a falling load down by a
    /// rescale every `settle_secs` would pay a restart each time.
    fn window(&self, latest_ms: i64, period_ms: i64, last_rescale_ms: Option<i64>) -> Window {
        let end = latest_ms + period_ms;
        let full_start = end - self.scale_in_window_ms;
        let (start, settling) = match last_rescale_ms {
            Some(at) if at > full_start => {
                if end - at < self.settle_ms || !self.settle_allowed {
                    return Window::Unseen;
                }
                ((end - self.settle_ms).max(at), true)
            }
            _ => (full_start, false),
        };
        // A window shorter than one period is the latest period.
        let start = start.min(latest_ms);
        let expected = ((end - start) / period_ms.max(1)).max(1) as f64;
        let points: Vec<f64> = self
            .rates
            .range(start..=latest_ms)
            .map(|(_, r)| *r)
            .collect();
        if (points.len() as f64) < WINDOW_COVERAGE * expected {
            return Window::Unseen;
        }
        if !settling {
            return peak_of(&points).map_or(Window::Unseen, Window::Whole);
        }
        // A load that dropped within the settle span is judged by the rates
        // since the drop, once there are enough of them to show a level.
        let since_drop = points
            .windows(2)
            .rposition(|w| w[1] < (1.0 - DROP) * w[0])
            .map(|i| &points[i + 1..]);
        let judged = match since_drop {
            None => &points[..],
            Some(level) if (level.len() as f64) >= LEVEL_SHARE * expected => level,
            Some(level) => return Window::Dropped(level.len()),
        };
        let Some(peak) = peak_of(judged) else {
            return Window::Unseen;
        };
        let mut sorted = judged.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        if judged.last().is_some_and(|r| *r > (1.0 + RISING) * median) {
            return Window::Rising(peak);
        }
        Window::Settle(peak)
    }
}

/// The highest of `rates`.
fn peak_of(rates: &[f64]) -> Option<f64> {
    rates.iter().copied().reduce(f64::max)
}

/// An input rate this fraction below the period before is a drop (a burst
/// that ended); a smooth decay loses far less from one period to the next.
const DROP: f64 = 0.25;

/// After a drop, this share of the settle span must have been seen at the
/// new level before it is judged (five minutes of the default ten).
const LEVEL_SHARE: f64 = 0.5;

/// A settle span whose latest input rate is this fraction above its median
/// is rising.
const RISING: f64 = 0.10;

/// Checks that `value` lies in the range, naming the parameter otherwise.
fn in_range(
    name: &str,
    value: f64,
    low: f64,
    low_inclusive: bool,
    high: f64,
    high_inclusive: bool,
) -> Result<(), String> {
    let above = if low_inclusive {
        value >= low
    } else {
        value > low
    };
    let below = if high_inclusive {
        value <= high
    } else {
        value < high
    };
    if value.is_finite() && above && below {
        return Ok(());
    }
    Err(format!(
        "parameter `{name}` must be in {}{low}, {high}{}, found {value}",
        if low_inclusive { "[" } else { "(" },
        if high_inclusive { "]" } else { ")" },
    ))
}

/// Checks that `value` is a finite number of at least `low`.
fn at_least(name: &str, value: f64, low: f64) -> Result<(), String> {
    if value.is_finite() && value >= low {
        return Ok(());
    }
    Err(format!(
        "parameter `{name}` must be a number of at least {low}, found {value}"
    ))
}

/// Checks that `value` is a positive finite number.
fn positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(format!(
        "parameter `{name}` must be a positive number, found {value}"
    ))
}

#[cfg(feature = "component")]
flinkscale_plugin::export_policy!(RatePolicy);

#[cfg(test)]
mod tests;
