//! The decision arithmetic: from the estimates to a target KPU, free of the
//! plugin plumbing so that it is tested with plain numbers.
//!
//! Scale-out sizes the capacity for two needs and takes the larger: the
//! input rate at the target utilisation (projected along its trend to
//! when the new capacity will be running), and the input rate plus the
//! backlog that will be waiting when the job restarts, drained within
//! `catch_up_secs`. That backlog is the one seen now plus what arrives
//! during the rescale's own downtime, when nothing is processed. The
//! capacity is turned into a parallelism through the scalability law,
//! anchored on the capacity measured at the current parallelism, and
//! reached in one step. The catch-up share stops at the knee of the law
//! ([`Usl::knee`] at `catch_up_knee`), where one more subtask adds less
//! than that fraction of a subtask's average capacity: the backlog is
//! transient, the subtasks are paid for as long as the new size lasts, and
//! past the knee they buy little drain for their KPU. The backlog then
//! drains more slowly; carrying the input is never limited.
//!
//! A jump (the input rate at least `jump_utilisation` times the capacity:
//! a step, a spike, a crowd) is sized leaner: for `jump_target_utilisation`
//! and a catch-up within `jump_catch_up_secs`. The backlog a jump leaves is
//! large however fast it drains, so draining it a little slower costs few
//! violation seconds, while the capacity sized for a fast drain is paid
//! for the whole time the new level lasts. Not when a scale-out's
//! catch-up surplus was given back within the last scale-in window (a
//! burst ended): a jump then is a burst that recurs, whose level lasts
//! about as briefly, so its surplus is paid for briefly while a slow drain
//! costs the lag; it is sized as any other scale-out.
//!
//! An input past `scale_out_utilisation` of the capacity but not past the
//! capacity itself, with no backlog waiting, is a warning of saturation to
//! come, not saturation: it triggers a scale-out only while the input's
//! trend is rising. A restart costs at least its downtime past the lag
//! objective plus the drain of what arrived meanwhile, and buys nothing
//! while the capacity carries an input that is flat or falling.
//!
//! A backlog below the saturation point triggers a scale-out only when
//! the current capacity would not drain it within `jump_catch_up_secs`
//! (the drain a jump was sized for: rescaling again would undo that
//! sizing), and riding it out would keep the lag above the objective for
//! longer than the rescale would, counting the rescale's downtime, during
//! which the lag grows by one second per second.
//!
//! Scale-in waits until the input rate has stayed below
//! `scale_in_utilisation` of the capacity over a whole window
//! (`settle_utilisation` over the settle span after a scale-out that
//! caught up on a backlog, unless
//! that span's input is rising again or dropped too recently to show its
//! new level), with no backlog left, and then sizes for the window's peak
//! rate at the target utilisation; after a whole window, also for the input
//! that arrives during the scale-in's own restart, drained within
//! `scale_in_catch_up_secs`. When the input now is below the scale-in
//! threshold of the capacity that peak asks for, the peak is history (the
//! load is still falling): sized for it, the scale-in would be followed by
//! another once the peak has left the window, each paying a restart, so it
//! is sized for the input now instead, in one step. And while the input
//! still falls so fast that it will be below the scale-in threshold of the
//! smaller capacity within another window ([`Situation::fall_ahead`]), a
//! scale-in after a whole window waits: it would be followed by another,
//! each paying a restart; it goes, in one step, once the fall ends or has
//! slowed enough. The caller says which window it has seen ([`Window`]).
//! After a jump's scale-out, at the size the jump asked for, a settle span
//! whose peak is above the settle threshold (the level held) gives back
//! the catch-up share once the backlog is gone: to the KPU that carries
//! its peak at `jump_target_utilisation` ([`catch_up_given_back`]).

use flinkscale_plugin::usl::{MAX_PARALLELISM, Usl, kpu_for};

/// The tunable rules (the policy's parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Utilisation a new capacity is sized for.
    pub target_utilisation: f64,
    /// Scale out when the input rate passes this fraction of the capacity.
    pub scale_out_utilisation: f64,
    /// Scale in only when the window's peak rate is below this fraction of
    /// the capacity (a whole window with no rescale in it: the load fell).
    pub scale_in_utilisation: f64,
    /// The same, when the window is the settle span since the last rescale
    /// (the capacity was sized to catch up on a backlog that is gone).
    pub settle_utilisation: f64,
    /// Time to drain the backlog present at the restart.
    pub catch_up_secs: f64,
    /// An input rate at least this many times the capacity is a jump, sized
    /// by the two `jump_` rules instead of `target_utilisation` and
    /// `catch_up_secs`.
    pub jump_utilisation: f64,
    /// Utilisation a capacity is sized for on a jump.
    pub jump_target_utilisation: f64,
    /// Time to drain the backlog present at the restart, on a jump.
    pub jump_catch_up_secs: f64,
    /// Time to drain what arrives during the restart of a scale-in after a
    /// whole low window (the load fell).
    pub scale_in_catch_up_secs: f64,
    /// How far past the restart a rising rate is projected.
    pub horizon_secs: f64,
    /// The lag objective: lag above it is a violation.
    pub max_lag_secs: f64,
    /// The scalability law used to extrapolate the measured capacity.
    pub usl: Usl,
    /// The catch-up share of a scale-out stops where one more subtask adds
    /// less than this fraction of a subtask's average capacity.
    pub catch_up_knee: f64,
}

/// What the policy has seen of the scale-in window (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Not seen yet (too few rates since it began, or a recent rescale
    /// that was not a scale-out).
    Unseen,
    /// A whole `scale_in_window_secs` with no rescale in it, with its peak
    /// input rate.
    Whole(f64),
    /// The settle span after a scale-out, with its peak input rate (since
    /// the last drop in it, if any).
    Settle(f64),
    /// The settle span, but its latest input rate is more than `RISING` (10 %)
    /// above its median (which a stray low period just after a restart does
    /// not move): the load is coming back, so no scale-in. With the peak.
    Rising(f64),
    /// The input dropped by more than `DROP` (25 %) from one period to the next
    /// within the settle span, only this many periods ago: too few to know the new
    /// level, so no scale-in yet.
    Dropped(usize),
}

/// What the policy knows at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    /// Current KPU.
    pub kpu: u32,
    /// Current parallelism.
    pub parallelism: u32,
    /// Subtasks per KPU.
    pub per_kpu: u32,
    /// Lowest KPU allowed.
    pub min_kpu: u32,
    /// Highest KPU allowed.
    pub max_kpu: u32,
    /// The latest input rate, records/s.
    pub input_rate: f64,
    /// Its trend, records/s per second, if known.
    pub slope: Option<f64>,
    /// Where the input will be one scale-in window from now, when it falls
    /// over the whole window ([`crate::estimate::fall_ahead`]); `None`
    /// otherwise.
    pub fall_ahead: Option<f64>,
    /// Seconds from the end of the period of `input_rate` to now.
    pub data_age_secs: f64,
    /// What has been seen of the scale-in window.
    pub window: Window,
    /// Measured capacity at the current parallelism, records/s.
    pub capacity: f64,
    /// Records waiting now.
    pub backlog: f64,
    /// Seconds a rescale keeps the job down.
    pub downtime_secs: f64,
    /// Whether a scale-out's catch-up surplus was given back (a settle
    /// scale-in: the burst it was for ended) within the last scale-in
    /// window: a jump now is a burst that recurs, not a level that lasts.
    pub burst_recurs: bool,
    /// Whether the settle span follows a jump's scale-out to the size the
    /// jump asked for (the level at `jump_target_utilisation` plus a
    /// catch-up share; see [`catch_up_given_back`]).
    pub settle_after_jump: bool,
}

impl Situation {
    /// Whether records are waiting: more than `NEGLIGIBLE_BACKLOG_SECS` of
    /// input (less is what is left of a drained backlog at the resolution
    /// of a per-period Maximum).
    pub fn backlog_waiting(&self) -> bool {
        self.backlog > self.input_rate * NEGLIGIBLE_BACKLOG_SECS
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Keep the capacity, for this reason.
    Hold(String),
    /// Rescale to this KPU, for this reason.
    ScaleTo(u32, String),
}

/// Backlog under this many seconds of input counts as none: what is left
/// of a drained backlog at the resolution of a per-period Maximum.
const NEGLIGIBLE_BACKLOG_SECS: f64 = 5.0;

/// Decides what to do in `situation` under `rules`.
pub fn plan(rules: &Rules, s: &Situation) -> Plan {
    let rate = s.input_rate;
    let capacity = s.capacity.max(f64::MIN_POSITIVE);
    let utilisation = rate / capacity;
    let state = format!(
        "input {rate:.0} records/s on capacity {capacity:.0} records/s (utilisation {:.0} %), backlog {:.0} records",
        100.0 * utilisation,
        s.backlog
    );
    let saturated = utilisation > rules.scale_out_utilisation;
    if saturated
        && !s.backlog_waiting()
        && utilisation <= 1.0
        && !s.slope.is_some_and(|slope| slope > 0.0)
    {
        // Past the scale-out threshold, the input is only a warning of
        // saturation to come; a restart now costs its downtime in lag and
        // buys nothing while the capacity carries an input that is not
        // rising.
        return Plan::Hold(format!(
            "{state}: above {:.0} % of capacity, but carried, with no backlog, and not rising",
            100.0 * rules.scale_out_utilisation
        ));
    }
    if saturated || s.backlog_waiting() {
        // A jump is sized lean because the capacity it buys is paid for as
        // long as the new level lasts; when the last burst's level was
        // given back within a window, the bursts are short and recur, so
        // the surplus is paid for briefly and the drain costs the lag:
        // sized as any other scale-out.
        let jumped = utilisation >= rules.jump_utilisation;
        let jump = is_jump(rules, s);
        let (target_utilisation, catch_up_secs) = if jump {
            (rules.jump_target_utilisation, rules.jump_catch_up_secs)
        } else {
            (rules.target_utilisation, rules.catch_up_secs)
        };
        let projected = projected_past_restart(rules, s, rate);
        let at_restart = s.backlog + rate * s.downtime_secs;
        let for_rate = projected / target_utilisation;
        let for_backlog = rate + at_restart / catch_up_secs;
        // The catch-up is transient: past the knee, a subtask buys too
        // little of it for the KPU it costs, so the drain takes longer. A
        // job already past the knee keeps its capacity for the drain.
        let knee = rules.usl.knee(rules.catch_up_knee).max(s.parallelism);
        let at_knee = rules
            .usl
            .capacity(rules.usl.base_throughput(s.capacity, s.parallelism), knee);
        let limited = for_backlog > for_rate && for_backlog > at_knee;
        let knee_note = if rules.catch_up_knee > 0.0 {
            format!(
                "past parallelism {knee} one more subtask adds less than {:.0} % of a subtask's average capacity",
                100.0 * rules.catch_up_knee
            )
        } else {
            format!("past parallelism {knee}, the law's peak, more subtasks add no capacity")
        };
        if limited && knee == s.parallelism && at_knee > for_rate && capacity > rate {
            return Plan::Hold(format!(
                "{state}: the backlog drains at the current capacity in about {:.0} s ({knee_note})",
                s.backlog / (capacity - rate)
            ));
        }
        let (needed, mut why) = if limited && at_knee > for_rate {
            (
                at_knee,
                format!(
                    "needs {at_knee:.0} records/s to carry the input and drain the {at_restart:.0} records waiting after a {:.0} s restart in about {:.0} s, not {catch_up_secs:.0} s ({knee_note})",
                    s.downtime_secs,
                    at_restart / (at_knee - rate)
                ),
            )
        } else if for_backlog >= for_rate && !limited {
            (
                for_backlog,
                format!(
                    "needs {for_backlog:.0} records/s to carry the input and drain the {at_restart:.0} records waiting after a {:.0} s restart within {catch_up_secs:.0} s",
                    s.downtime_secs
                ),
            )
        } else {
            let mut why = format!(
                "needs {for_rate:.0} records/s to carry {projected:.0} records/s at {:.0} % utilisation",
                100.0 * target_utilisation
            );
            if limited {
                why.push_str(&format!(
                    " (the {at_restart:.0} records waiting after a {:.0} s restart drain on the rest; {knee_note})",
                    s.downtime_secs
                ));
            }
            (for_rate, why)
        };
        if jump {
            why = format!(
                "a jump (input at least {:.0} % of capacity) {why}",
                100.0 * rules.jump_utilisation
            );
        } else if jumped {
            why = format!(
                "a jump (input at least {:.0} % of capacity), but the last burst's surplus was given back within the scale-in window, so a recurring burst: {why}",
                100.0 * rules.jump_utilisation
            );
        }
        let Some((kpu, parallelism, new_capacity)) = target(rules, s, needed) else {
            return Plan::Hold(format!(
                "{state}: {why}, but the capacity measurement is unusable"
            ));
        };
        if kpu <= s.kpu {
            return if s.kpu >= s.max_kpu {
                Plan::Hold(format!(
                    "{state}: {why}, but already at max KPU ({})",
                    s.max_kpu
                ))
            } else if s.capacity < needed && rules.usl.knee(0.0) <= s.parallelism {
                // Below max KPU, and the law's peak is reached: more
                // subtasks would only slow the job.
                Plan::Hold(format!(
                    "{state}: {why}, but past parallelism {}, the scalability law's peak, more subtasks add no capacity (they only slow the job): holding at parallelism {}",
                    rules.usl.knee(0.0),
                    s.parallelism
                ))
            } else if s.capacity < needed && new_capacity >= needed {
                // The job runs below what its KPU allow (a parallelism
                // that is not a multiple of ParallelismPerKPU): the size
                // that carries it is its own KPU, and a rescale to the
                // same KPU is none.
                Plan::Hold(format!(
                    "{state}: {why}, which parallelism {parallelism} would carry, within the {} KPU it runs at (at parallelism {}): no larger KPU is needed, holding",
                    s.kpu, s.parallelism
                ))
            } else if s.capacity < needed {
                // No parallelism carries it, and the most capacity (the
                // law's peak, or the most parallelism sized) is within the
                // KPU it runs at.
                let most = if parallelism >= MAX_PARALLELISM {
                    format!("the most parallelism sized is {parallelism}")
                } else {
                    format!("the scalability law peaks at parallelism {parallelism}")
                };
                Plan::Hold(format!(
                    "{state}: {why}, which no parallelism carries ({most}, within the {} KPU it runs at): holding",
                    s.kpu
                ))
            } else {
                Plan::Hold(format!("{state}: {why}, which the current capacity covers"))
            };
        }
        if !saturated {
            // A restart adds its downtime to the lag at once; it pays only
            // when riding the backlog out would breach the lag objective
            // for longer.
            let lag = s.backlog / rate.max(f64::MIN_POSITIVE);
            if capacity > rate && s.backlog / (capacity - rate) <= rules.jump_catch_up_secs {
                return Plan::Hold(format!(
                    "{state}: the backlog drains at the current capacity within {:.0} s, the catch-up a jump is sized for",
                    rules.jump_catch_up_secs
                ));
            }
            let stay = violation_staying(lag, capacity / rate, rules.max_lag_secs);
            let go = violation_rescaling(
                lag,
                s.downtime_secs,
                new_capacity / rate,
                rules.max_lag_secs,
            );
            if go >= stay {
                return Plan::Hold(format!(
                    "{state}: the backlog (lag about {lag:.0} s) drains at the current capacity with about {stay:.0} s above the {:.0} s lag objective, a rescale would cost about {go:.0} s",
                    rules.max_lag_secs
                ));
            }
        }
        return Plan::ScaleTo(
            kpu,
            format!("{state}: {why}: parallelism {parallelism}, {kpu} KPU"),
        );
    }
    let (peak, below, rising) = match s.window {
        Window::Unseen => {
            return Plan::Hold(format!(
                "{state}: within bounds, scale-in window incomplete"
            ));
        }
        Window::Dropped(periods) => {
            return Plan::Hold(format!(
                "{state}: the input dropped {periods} period(s) ago; waiting to see its new level"
            ));
        }
        Window::Rising(peak) => (peak, rules.settle_utilisation, true),
        Window::Settle(peak) => (peak, rules.settle_utilisation, false),
        Window::Whole(peak) => (peak, rules.scale_in_utilisation, false),
    };
    if let Some((kpu, parallelism, level)) = catch_up_given_back(rules, s) {
        // The level held through the settle span after a jump: what the
        // jump bought beyond carrying it at `jump_target_utilisation` was
        // the catch-up share, and the backlog it was for is gone.
        return Plan::ScaleTo(
            kpu,
            format!(
                "{state}: the level held through the settle span after the jump (about {level:.0} records/s) and the backlog is gone: giving back the catch-up share, to {:.0} records/s at {:.0} % utilisation: parallelism {parallelism}, {kpu} KPU",
                level / rules.jump_target_utilisation,
                100.0 * rules.jump_target_utilisation
            ),
        );
    }
    if s.backlog_waiting() || peak >= capacity * below {
        return Plan::Hold(format!(
            "{state}: within bounds (window peak {peak:.0} records/s)"
        ));
    }
    if rising {
        return Plan::Hold(format!(
            "{state}: low, but rising again since the last rescale (window peak {peak:.0} records/s)"
        ));
    }
    // After the load fell, the smaller capacity must also drain what
    // arrives during its own restart: sized for the target utilisation
    // alone, it would drain that at a quarter of the input, and the lag
    // would stay above the objective for minutes.
    let whole = matches!(s.window, Window::Whole(_));
    let needed_for = |level: f64| {
        let for_level = level / rules.target_utilisation;
        let for_restart = if whole {
            level + rate * s.downtime_secs / rules.scale_in_catch_up_secs
        } else {
            0.0
        };
        (for_level.max(for_restart), for_restart > for_level)
    };
    // The window's peak is history when the input now is below the
    // scale-in threshold of the capacity that peak asks for: sized for the
    // peak, the scale-in would be followed by another once the peak has
    // left the window, and each pays a restart. One scale-in, sized for
    // the input now, goes where the load is.
    let stale_peak = whole
        && target(rules, s, needed_for(peak).0)
            .is_some_and(|(_, _, for_peak)| rate < rules.scale_in_utilisation * for_peak);
    let level = if stale_peak { rate.min(peak) } else { peak };
    let (needed, for_restart) = needed_for(level);
    let sizing = if for_restart {
        format!(
            "{needed:.0} records/s to carry it and drain the {:.0} records of a {:.0} s restart within {:.0} s",
            rate * s.downtime_secs,
            s.downtime_secs,
            rules.scale_in_catch_up_secs
        )
    } else {
        format!(
            "{needed:.0} records/s at {:.0} % utilisation",
            100.0 * rules.target_utilisation
        )
    };
    let sized_for = if stale_peak {
        format!(
            "the input now, {level:.0} records/s, is below {:.0} % of what that peak asks for, so it sets the size: ",
            100.0 * rules.scale_in_utilisation
        )
    } else {
        String::new()
    };
    match target(rules, s, needed) {
        Some((kpu, _, smaller))
            if kpu < s.kpu
                && whole
                && s.fall_ahead
                    .is_some_and(|ahead| ahead < rules.scale_in_utilisation * smaller) =>
        {
            // Another scale-in would follow within a window, each paying a
            // restart: the fall is waited out, and one scale-in goes where
            // it ends.
            Plan::Hold(format!(
                "{state}: the peak over the window was {peak:.0} records/s, below {:.0} % of capacity, but the input is falling, to about {:.0} records/s within a window, below {:.0} % of the {kpu} KPU a scale-in now would leave: waiting for the fall to end",
                100.0 * below,
                s.fall_ahead.unwrap_or_default(),
                100.0 * rules.scale_in_utilisation
            ))
        }
        Some((kpu, parallelism, _)) if kpu < s.kpu => Plan::ScaleTo(
            kpu,
            format!(
                "{state}: the peak over the window was {peak:.0} records/s, below {:.0} % of capacity; {sized_for}{sizing} needs parallelism {parallelism}, {kpu} KPU",
                100.0 * below,
            ),
        ),
        Some(_) => Plan::Hold(format!(
            "{state}: low, but already at the least KPU that carries the window peak {peak:.0} records/s"
        )),
        // A capacity measured as 0 (busy, processing nothing: a stalled
        // operator) sizes nothing.
        None => Plan::Hold(format!(
            "{state}: low, but the capacity measurement is unusable (a job busy processing \
             nothing is stalled, not idle)"
        )),
    }
}

/// Seconds the lag stays above `max_lag` when a backlog of `lag` seconds is
/// drained at `ratio` = capacity / input rate.
pub fn violation_staying(lag: f64, ratio: f64, max_lag: f64) -> f64 {
    if lag <= max_lag {
        0.0
    } else if ratio <= 1.0 {
        f64::INFINITY
    } else {
        (lag - max_lag) / (ratio - 1.0)
    }
}

/// Seconds the lag stays above `max_lag` when the job first stops for
/// `downtime` (the lag grows one second per second) and then drains at
/// `ratio` = new capacity / input rate.
pub fn violation_rescaling(lag: f64, downtime: f64, ratio: f64, max_lag: f64) -> f64 {
    let peak = lag + downtime;
    if peak <= max_lag {
        return 0.0;
    }
    let while_down = (peak - max_lag).min(downtime);
    if ratio <= 1.0 {
        return f64::INFINITY;
    }
    while_down + (peak - max_lag) / (ratio - 1.0)
}

/// `level` projected along a rising trend to `horizon_secs` past the
/// restart a rescale now would make (the data's age and the downtime
/// first); a falling or unknown trend leaves it as it is.
fn projected_past_restart(rules: &Rules, s: &Situation, level: f64) -> f64 {
    let ahead = s.data_age_secs + s.downtime_secs + rules.horizon_secs;
    level + s.slope.unwrap_or(0.0).max(0.0) * ahead
}

/// Whether a scale-out now is a jump, sized lean: the input at least
/// `jump_utilisation` times the capacity, and not a burst that recurs
/// ([`Situation::burst_recurs`]).
pub fn is_jump(rules: &Rules, s: &Situation) -> bool {
    s.input_rate / s.capacity.max(f64::MIN_POSITIVE) >= rules.jump_utilisation && !s.burst_recurs
}

/// After a jump's scale-out, to the size the jump asked for
/// ([`Situation::settle_after_jump`]), a settle span whose peak is still
/// above the settle threshold (the level held: not a burst that ended),
/// with no backlog left: the KPU and parallelism that carry that level at
/// `jump_target_utilisation`, and the level, when that is fewer KPU. The
/// level is the peak, projected along a rising trend past the restart as
/// a scale-out projects it: a load still climbing slowly after the jump
/// keeps what it will need, instead of a restart down and another up. The
/// jump sized the level at that utilisation and added a share to catch up
/// on its backlog; the backlog is gone, so the share is given back. `None`
/// otherwise.
pub fn catch_up_given_back(rules: &Rules, s: &Situation) -> Option<(u32, u32, f64)> {
    let Window::Settle(peak) = s.window else {
        return None;
    };
    let capacity = s.capacity.max(f64::MIN_POSITIVE);
    if !s.settle_after_jump || s.backlog_waiting() || peak < capacity * rules.settle_utilisation {
        return None;
    }
    let level = projected_past_restart(rules, s, peak);
    let (kpu, parallelism, _) = target(rules, s, level / rules.jump_target_utilisation)?;
    (kpu < s.kpu).then_some((kpu, parallelism, level))
}

/// The KPU (within the limits), parallelism and capacity that reach
/// `needed`; `None` when the measured capacity is unusable.
fn target(rules: &Rules, s: &Situation, needed: f64) -> Option<(u32, u32, f64)> {
    let mu = rules.usl.base_throughput(s.capacity, s.parallelism);
    if !(mu.is_finite() && mu > 0.0 && needed.is_finite()) {
        return None;
    }
    let max_q = s
        .max_kpu
        .saturating_mul(s.per_kpu.max(1))
        .min(MAX_PARALLELISM);
    let parallelism = rules.usl.parallelism_for(mu, needed, max_q);
    let kpu = kpu_for(parallelism, s.per_kpu).clamp(s.min_kpu.max(1), s.max_kpu.max(1));
    let parallelism = parallelism.min(kpu.saturating_mul(s.per_kpu.max(1)));
    Some((kpu, parallelism, rules.usl.capacity(mu, parallelism)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        target_utilisation: 0.8,
        scale_out_utilisation: 0.9,
        scale_in_utilisation: 0.4,
        settle_utilisation: 0.5,
        catch_up_secs: 120.0,
        jump_utilisation: f64::INFINITY,
        jump_target_utilisation: 0.9,
        jump_catch_up_secs: 600.0,
        scale_in_catch_up_secs: f64::INFINITY,
        horizon_secs: 0.0,
        max_lag_secs: 60.0,
        usl: Usl {
            sigma: 0.02,
            kappa: 0.0002,
        },
        catch_up_knee: 0.0,
    };

    /// 2 KPU (capacity 1960 records/s) under `rate` with `backlog`.
    fn situation(rate: f64, backlog: f64) -> Situation {
        Situation {
            kpu: 2,
            parallelism: 2,
            per_kpu: 1,
            min_kpu: 1,
            max_kpu: 32,
            input_rate: rate,
            slope: None,
            fall_ahead: None,
            data_age_secs: 60.0,
            window: Window::Unseen,
            capacity: RULES.usl.capacity(1000.0, 2),
            backlog,
            downtime_secs: 90.0,
            burst_recurs: false,
            settle_after_jump: false,
        }
    }

    /// [`situation`] at `kpu` KPU, one subtask each, with their capacity.
    fn situation_at(kpu: u32, rate: f64, backlog: f64) -> Situation {
        Situation {
            kpu,
            parallelism: kpu,
            capacity: RULES.usl.capacity(1000.0, kpu),
            ..situation(rate, backlog)
        }
    }

    fn scale_to(plan: Plan) -> u32 {
        match plan {
            Plan::ScaleTo(kpu, _) => kpu,
            Plan::Hold(reason) => panic!("held: {reason}"),
        }
    }

    #[test]
    fn a_step_is_sized_for_the_rate_plus_the_backlog_in_one_jump() {
        // 4000/s on 1960/s with 242000 waiting: after 90 s down, 602000
        // must drain within 120 s: 4000 + 5017 = 9017/s needs 12 subtasks
        // (C(11) = 9002, C(12) = 9627).
        let plan = plan(&RULES, &situation(4000.0, 242_000.0));
        assert_eq!(scale_to(plan.clone()), 12);
        let Plan::ScaleTo(_, reason) = plan else {
            unreachable!()
        };
        assert!(reason.contains("drain the 602000 records"), "{reason}");
    }

    #[test]
    fn a_catch_up_stops_at_the_knee_of_the_law() {
        // A job three times as contended as the default law: 1000 records/s
        // a subtask, C(2) = 1885, C(8) = 5504, C(9) = 5909, C(27) >= 9017.
        let heavy = Usl {
            sigma: 0.06,
            kappa: 0.0006,
        };
        let at_two = |rate: f64| Situation {
            capacity: heavy.capacity(1000.0, 2),
            ..situation(rate, 242_000.0)
        };
        let unlimited = Rules {
            usl: heavy,
            ..RULES
        };
        let knee = Rules {
            catch_up_knee: 0.6,
            ..unlimited
        };
        // 4000/s with 602000 waiting after the restart: within 120 s needs
        // 9017/s, 27 subtasks. Past 9 a subtask adds less than 0.6 of the
        // average (the 10th adds 365 of 627): 5909/s, more than the 5000/s
        // that carry the input at 80 %, drains it in about 602000 / 1909 =
        // 315 s.
        assert_eq!(scale_to(plan(&unlimited, &at_two(4000.0))), 27);
        let Plan::ScaleTo(kpu, reason) = plan(&knee, &at_two(4000.0)) else {
            panic!("held")
        };
        assert_eq!(kpu, 9, "{reason}");
        assert!(
            reason.contains("needs 5909 records/s")
                && reason.contains("in about 315 s, not 120 s")
                && reason.contains("past parallelism 9 one more subtask adds less than 60 %"),
            "{reason}"
        );
        // 5500/s: carrying it at 80 % (6875/s, 12 subtasks) already passes
        // the knee; the catch-up adds nothing to it.
        let Plan::ScaleTo(kpu, reason) = plan(&knee, &at_two(5500.0)) else {
            panic!("held")
        };
        assert_eq!(kpu, 12, "{reason}");
        assert!(
            reason.contains("needs 6875 records/s to carry 5500 records/s at 80 %")
                && reason.contains("drain on the rest"),
            "{reason}"
        );
        // With `catch_up_knee` 0 the knee is the law's peak (about 40
        // here), past what the catch-up asks.
        let peak = Rules {
            catch_up_knee: 0.0,
            ..unlimited
        };
        assert_eq!(scale_to(plan(&peak, &at_two(4000.0))), 27);
        // A job already past the knee keeps its capacity for the drain: 24
        // subtasks under the default law (knee 21), 70 % busy, with 600 s
        // of input waiting, drains it in 600 x 0.7 / 0.3 = 1400 s.
        let at_24 = RULES.usl.capacity(1000.0, 24);
        let past = Situation {
            kpu: 24,
            parallelism: 24,
            capacity: at_24,
            ..situation(0.7 * at_24, 600.0 * 0.7 * at_24)
        };
        let default_knee = Rules {
            catch_up_knee: 0.6,
            ..RULES
        };
        let Plan::Hold(reason) = plan(&default_knee, &past) else {
            panic!("scaled past the knee")
        };
        assert!(
            reason.contains("the backlog drains at the current capacity in about 1400 s")
                && reason.contains("past parallelism 24 one more subtask adds less than 60 %"),
            "{reason}"
        );
        // Without the knee it scales out for the catch-up.
        assert!(scale_to(plan(&RULES, &past)) > 24);
        // Under the default law the knee (21) is past what the same step
        // asks (12): no change.
        assert_eq!(
            scale_to(plan(&default_knee, &situation(4000.0, 242_000.0))),
            12
        );
    }

    /// Past the law's peak below max KPU, the hold says so: it said "which
    /// the current capacity covers" of an input 20 % above it.
    #[test]
    fn past_the_laws_peak_the_hold_says_so_not_that_the_capacity_covers() {
        // sigma 0.02, kappa 0.01: the curve peaks at parallelism 10.
        let steep = Rules {
            usl: Usl {
                sigma: 0.02,
                kappa: 0.01,
            },
            ..RULES
        };
        let capacity = steep.usl.capacity(1000.0, 12);
        let s = Situation {
            capacity,
            ..situation_at(12, 1.2 * capacity, 100_000.0)
        };
        let Plan::Hold(reason) = plan(&steep, &s) else {
            panic!("scaled past the peak")
        };
        assert!(
            reason.ends_with(
                "but past parallelism 10, the scalability law's peak, more subtasks add no \
                 capacity (they only slow the job): holding at parallelism 12"
            ),
            "{reason}"
        );
    }

    /// A job below the parallelism its KPU allow (7 on 2 KPU x 4) whose
    /// need parallelism 8 carries: no larger KPU is needed, and the hold
    /// says so, not that the current capacity covers it.
    #[test]
    fn a_need_within_the_kpu_it_runs_at_is_said_so() {
        let capacity = RULES.usl.capacity(1000.0, 7);
        let s = Situation {
            kpu: 2,
            parallelism: 7,
            per_kpu: 4,
            capacity,
            downtime_secs: 0.0,
            // 18 s of input waiting: 6750 records/s needed, which
            // parallelism 8 carries (6950) and 7 does not (6203).
            ..situation(5400.0, 100_000.0)
        };
        let Plan::Hold(reason) = plan(&RULES, &s) else {
            panic!("rescaled: {:?}", plan(&RULES, &s))
        };
        assert!(
            reason.ends_with(
                "which parallelism 8 would carry, within the 2 KPU it runs at (at parallelism 7): \
                 no larger KPU is needed, holding"
            ),
            "{reason}"
        );
    }

    /// A need no parallelism carries, the law's peak (10) within the KPU
    /// the job runs at (3 KPU x 4, at parallelism 8): the hold says no
    /// parallelism carries it, not that parallelism 10 would.
    #[test]
    fn a_need_past_the_laws_peak_within_the_kpu_is_said_so() {
        let steep = Rules {
            usl: Usl {
                sigma: 0.02,
                kappa: 0.01,
            },
            ..RULES
        };
        let capacity = steep.usl.capacity(1000.0, 8);
        let s = Situation {
            kpu: 3,
            parallelism: 8,
            per_kpu: 4,
            capacity,
            ..situation(2.0 * capacity, 100_000.0)
        };
        let Plan::Hold(reason) = plan(&steep, &s) else {
            panic!("rescaled: {:?}", plan(&steep, &s))
        };
        assert!(
            reason.ends_with(
                "which no parallelism carries (the scalability law peaks at parallelism 10, \
                 within the 3 KPU it runs at): holding"
            ),
            "{reason}"
        );
    }

    #[test]
    fn a_jump_is_sized_for_the_jump_target_and_catch_up() {
        let rules = Rules {
            jump_utilisation: 1.5,
            ..RULES
        };
        // 4000/s on 1960/s (204 %) with 242000 waiting: 602000 within
        // 600 s is 4000 + 1003 = 5003/s, more than 4000 / 0.9 = 4444/s:
        // 6 subtasks (C(5) = 4612, C(6) = 5425) where the normal rules
        // ask for 12.
        let Plan::ScaleTo(kpu, reason) = plan(&rules, &situation(4000.0, 242_000.0)) else {
            panic!("held on a jump")
        };
        assert_eq!(kpu, 6);
        assert!(
            reason.contains("a jump") && reason.contains("within 600 s"),
            "{reason}"
        );
        // When the restart is short the jump target utilisation sets the
        // size: 8000/s at 90 % is 8889/s, more than 8000 + 30 x 8000 / 600
        // = 8400/s: 11 subtasks (C(11) = 9002), where the normal rules ask
        // for 10000/s, 13 (C(13) = 10227).
        let mut short = situation(8000.0, 0.0);
        short.downtime_secs = 30.0;
        assert_eq!(scale_to(plan(&rules, &short)), 11);
        assert_eq!(scale_to(plan(&RULES, &short)), 13);
        // Below 1.5x the capacity the normal rules apply.
        // 2900/s (148 %): 2900 + 2900 x 90 / 120 = 5075/s -> 6 subtasks.
        assert_eq!(scale_to(plan(&rules, &situation(2900.0, 0.0))), 6);
    }

    #[test]
    fn a_recurring_burst_is_sized_as_any_scale_out() {
        let rules = Rules {
            jump_utilisation: 1.5,
            ..RULES
        };
        // The jump of the test above (6 subtasks), but a burst's surplus
        // was given back within the scale-in window: sized for 120 s and
        // 80 %, as below 1.5x the capacity, 12 subtasks.
        let mut s = situation(4000.0, 242_000.0);
        s.burst_recurs = true;
        let Plan::ScaleTo(kpu, reason) = plan(&rules, &s) else {
            panic!("held on a recurring burst")
        };
        assert_eq!(kpu, 12);
        assert!(
            reason.contains("so a recurring burst") && reason.contains("within 120 s"),
            "{reason}"
        );
    }

    #[test]
    fn without_backlog_the_downtime_alone_sets_the_catch_up() {
        // 1900/s on 1960/s (97 %), rising by 0.1/s per s: 1900 + 1900 x 90
        // / 120 = 3325/s -> 4 subtasks (C(3) = 2877, C(4) = 3765); (1900 +
        // 0.1 x 150) / 0.8 = 2394 is less.
        let mut s = situation(1900.0, 0.0);
        s.slope = Some(0.1);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
    }

    #[test]
    fn a_carried_input_that_is_not_rising_is_not_rescaled() {
        // 1900/s on 1960/s (97 %, past the 90 % scale-out threshold), no
        // backlog: with no trend known, a flat one or a falling one, the
        // capacity carries it and a restart would only cost.
        for slope in [None, Some(0.0), Some(-1.0)] {
            let mut s = situation(1900.0, 0.0);
            s.slope = slope;
            let Plan::Hold(reason) = plan(&RULES, &s) else {
                panic!("rescaled a carried input with trend {slope:?}")
            };
            assert!(
                reason.contains("carried, with no backlog, and not rising"),
                "{reason}"
            );
        }
        // Rising, it scales out as before (4 subtasks, see above).
        let mut s = situation(1900.0, 0.0);
        s.slope = Some(0.5);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
        // Past the capacity it scales out whatever the trend: 2000/s on
        // 1960/s needs 2000 + 2000 x 90 / 120 = 3500/s -> 4 subtasks.
        let mut s = situation(2000.0, 0.0);
        s.slope = Some(-1.0);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
        // So it does with a backlog waiting: 20000 + 1900 x 90 = 191000
        // records within 120 s, 1900 + 1592 = 3492/s -> 4 subtasks.
        let s = situation(1900.0, 20_000.0);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
    }

    #[test]
    fn a_rising_trend_is_projected_past_the_restart() {
        let mut s = situation(1900.0, 0.0);
        // +1 record/s per second over 60 + 90 + 1800 s: 3850/s at 80 %
        // needs 4812/s: 6 subtasks (C(5) = 4612, C(6) = 5425).
        s.slope = Some(1.0);
        let rules = Rules {
            horizon_secs: 1800.0,
            ..RULES
        };
        assert_eq!(scale_to(plan(&rules, &s)), 6);
        // A falling trend is not projected on the way out: 2000/s on
        // 1960/s falling by 1/s per s needs 2000 + 2000 x 90 / 120 =
        // 3500/s -> 4 subtasks.
        let mut s = situation(2000.0, 0.0);
        s.slope = Some(-1.0);
        assert_eq!(scale_to(plan(&rules, &s)), 4);
    }

    #[test]
    fn a_backlog_far_behind_the_objective_scales_out() {
        // 1500/s on 1960/s with 1.5 M waiting (lag 1000 s): riding it out
        // breaches the objective for 940 / 0.31 = 3000 s; a restart to
        // 1500 + (1.5 M + 135000) / 120 = 15125/s costs 90 + 1030 / 9 s.
        assert!(matches!(
            plan(&RULES, &situation(1500.0, 1_500_000.0)),
            Plan::ScaleTo(..)
        ));
    }

    #[test]
    fn a_backlog_that_drains_soon_is_ridden_out() {
        // Lag 90 s (just after a restart) at 1.36 x the input: 30 s over
        // the objective drain in 84 s; another restart would add 90 s.
        let s = situation_at(6, 4000.0, 360_000.0);
        let Plan::Hold(reason) = plan(&RULES, &s) else {
            panic!("restarted to drain a backlog that drains by itself")
        };
        assert!(
            reason.contains("drains at the current capacity"),
            "{reason}"
        );
    }

    #[test]
    fn a_backlog_the_capacity_drains_within_the_jump_catch_up_is_ridden_out() {
        // 4000/s on 6 subtasks (5425/s) with 600000 waiting, as after a
        // jump: the surplus of 1425/s drains it in 421 s, within 600 s.
        let s = situation_at(6, 4000.0, 600_000.0);
        let Plan::Hold(reason) = plan(&RULES, &s) else {
            panic!("rescaled a backlog that drains within the jump catch-up")
        };
        assert!(
            reason.contains("within 600 s, the catch-up a jump is sized for"),
            "{reason}"
        );
        // With a 300 s jump catch-up the same backlog is worth a restart:
        // lag 150 s drains at 1.36x with about 253 s over the objective,
        // a restart to 16 subtasks costs about 180 s.
        let rules = Rules {
            jump_catch_up_secs: 300.0,
            ..RULES
        };
        assert!(matches!(plan(&rules, &s), Plan::ScaleTo(..)));
    }

    #[test]
    fn violation_arithmetic() {
        assert_eq!(violation_staying(50.0, 1.5, 60.0), 0.0);
        assert_eq!(violation_staying(90.0, 1.5, 60.0), 60.0);
        assert_eq!(violation_staying(90.0, 1.0, 60.0), f64::INFINITY);
        // From an empty backlog a 90 s restart breaches a 60 s objective
        // for its last 30 s, then for 30 / (2 - 1) s while draining.
        assert_eq!(violation_rescaling(0.0, 90.0, 2.0, 60.0), 60.0);
        assert_eq!(violation_rescaling(0.0, 50.0, 2.0, 60.0), 0.0);
        assert_eq!(violation_rescaling(100.0, 90.0, 3.0, 60.0), 90.0 + 65.0);
    }

    #[test]
    fn at_max_kpu_it_holds_and_says_so() {
        let mut s = situation(40_000.0, 0.0);
        s.max_kpu = 2;
        let Plan::Hold(reason) = plan(&RULES, &s) else {
            panic!("scaled past max KPU")
        };
        assert!(reason.ends_with("already at max KPU (2)"), "{reason}");
    }

    #[test]
    fn scale_in_waits_for_a_complete_low_window() {
        let mut s = situation_at(8, 1600.0, 0.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(r) if r.contains("window incomplete")));
        // Peak 2700/s over the window is 39 % of C(8) = 6950: scale in to
        // 3375/s -> 4 subtasks (C(4) = 3765), half the capacity. (The input
        // now, 1600/s, is above 40 % of C(4), 1506/s: the peak sets the
        // size.)
        s.window = Window::Whole(2700.0);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
        // A peak above 40 % of the capacity holds: the load fell, but not
        // enough for a scale-in to halve the capacity.
        s.window = Window::Whole(3000.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(_)));
    }

    #[test]
    fn after_a_whole_window_the_scale_in_also_drains_its_restart() {
        let rules = Rules {
            scale_in_catch_up_secs: 150.0,
            ..RULES
        };
        // Peak 2700/s on 8 subtasks: 3375/s at 80 % would be 4 subtasks
        // (C(4) = 3765), which drain the 90 s restart's 243000 records at
        // 1065/s; within 150 s it needs 2700 + 1620 = 4320/s: 5 (C(5) =
        // 4612).
        let mut s = situation_at(8, 2700.0, 0.0);
        s.window = Window::Whole(2700.0);
        let Plan::ScaleTo(kpu, reason) = plan(&rules, &s) else {
            panic!("held")
        };
        assert_eq!(kpu, 5);
        assert!(
            reason.contains("drain the 243000 records of a 90 s restart within 150 s"),
            "{reason}"
        );
        // The settle span (a catch-up surplus) is sized for the peak alone.
        s.window = Window::Settle(2700.0);
        assert_eq!(scale_to(plan(&rules, &s)), 4);
    }

    #[test]
    fn a_scale_in_below_a_stale_peak_is_sized_for_the_input_now() {
        let rules = Rules {
            scale_in_catch_up_secs: 150.0,
            ..RULES
        };
        // 10 subtasks, C(10) = 8347/s; the window's peak 2900/s is under
        // 40 % of it (3339). Sized for the peak: max(2900 / 0.8 = 3625,
        // 2900 + 1200 x 90 / 150 = 3620) -> 4 subtasks (C(4) = 3765), whose
        // threshold is 0.4 x 3765 = 1506/s. The input now, 1200/s, is below
        // it: sized for the input, max(1500, 1200 + 720 = 1920) -> 2
        // subtasks (C(2) = 1960), one scale-in instead of 10 -> 4 -> 2.
        let mut s = situation_at(10, 1200.0, 0.0);
        s.window = Window::Whole(2900.0);
        let Plan::ScaleTo(kpu, reason) = plan(&rules, &s) else {
            panic!("held")
        };
        assert_eq!(kpu, 2);
        assert!(
            reason.contains("the input now, 1200 records/s, is below 40 %")
                && reason.contains("1920 records/s to carry it and drain the 108000 records"),
            "{reason}"
        );
        // At 1900/s the peak asks for max(3625, 2900 + 1900 x 90 / 150 =
        // 4040) -> 5 subtasks (C(5) = 4613), whose threshold is 1845/s:
        // 1900/s is above it, so the peak sets the size.
        let mut s = situation_at(10, 1900.0, 0.0);
        s.window = Window::Whole(2900.0);
        let Plan::ScaleTo(kpu, reason) = plan(&rules, &s) else {
            panic!("held")
        };
        assert_eq!(kpu, 5);
        assert!(!reason.contains("the input now"), "{reason}");
        // The settle span is judged as before: its peak sets the size.
        let mut s = situation_at(10, 1200.0, 0.0);
        s.window = Window::Settle(2900.0);
        assert_eq!(scale_to(plan(&rules, &s)), 4);
    }

    #[test]
    fn a_scale_in_that_another_would_follow_waits_for_the_fall_to_end() {
        let rules = Rules {
            scale_in_catch_up_secs: 150.0,
            ..RULES
        };
        // A steady fall, as `ramp-down`'s: 10 subtasks, the window's peak
        // 2911/s under 40 % of C(10) = 8347, the input now 2065/s. Sized for
        // the peak, max(3639, 2911 + 2065 x 90 / 150 = 4150) -> 5 subtasks
        // (C(5) = 4613), whose threshold is 1845/s; the fall reaches 1190/s
        // within a window, so a second scale-in would follow: hold.
        let mut s = situation_at(10, 2065.0, 0.0);
        s.window = Window::Whole(2911.0);
        s.fall_ahead = Some(1190.0);
        let Plan::Hold(reason) = plan(&rules, &s) else {
            panic!("scaled in with another scale-in a window away")
        };
        assert!(
            reason.contains("to about 1190 records/s within a window")
                && reason.contains("below 40 % of the 5 KPU")
                && reason.contains("waiting for the fall to end"),
            "{reason}"
        );
        // A fall that stays above that threshold, no fall, or a settle
        // span (judged as before): the scale-in goes now.
        s.fall_ahead = Some(1900.0);
        assert_eq!(scale_to(plan(&rules, &s)), 5);
        s.fall_ahead = None;
        assert_eq!(scale_to(plan(&rules, &s)), 5);
        s.fall_ahead = Some(1190.0);
        s.window = Window::Settle(2911.0);
        assert_eq!(scale_to(plan(&rules, &s)), 4);
    }

    #[test]
    fn a_catch_up_surplus_settles_at_the_higher_threshold() {
        // 8 KPU sized to catch up on a backlog that is gone: 3000/s (43 %)
        // is enough to give the surplus back, to 3750/s -> 4 subtasks.
        let mut s = situation_at(8, 3000.0, 0.0);
        s.window = Window::Settle(3000.0);
        assert_eq!(scale_to(plan(&RULES, &s)), 4);
        // A peak above half the capacity holds even then.
        s.window = Window::Settle(3600.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(_)));
        // So does a settle span whose input rises again, or that saw a
        // drop too recently to know the new level.
        s.window = Window::Rising(3000.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(r) if r.contains("rising again")));
        s.window = Window::Dropped(2);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(r) if r.contains("dropped 2 period(s) ago")));
    }

    #[test]
    fn scale_in_never_leaves_a_backlog_behind() {
        let mut s = situation_at(8, 400.0, 50_000.0);
        s.window = Window::Whole(500.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(_)));
    }

    #[test]
    fn scale_in_respects_min_kpu() {
        let mut s = situation_at(4, 100.0, 0.0);
        s.min_kpu = 4;
        s.window = Window::Whole(100.0);
        assert!(matches!(plan(&RULES, &s), Plan::Hold(_)));
    }

    #[test]
    fn parallelism_per_kpu_packs_subtasks() {
        let mut s = situation(4000.0, 242_000.0);
        s.per_kpu = 4;
        s.kpu = 1;
        // 12 subtasks at 4 per KPU.
        assert_eq!(scale_to(plan(&RULES, &s)), 3);
    }
}
