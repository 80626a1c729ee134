//! Fixed schedules of rescales, replayed on a scenario's own model, and a
//! search for a good one within a budget of SLO-violation seconds
//! (`cycle_schedule` in `host/examples/` is its command line).
//!
//! A schedule says at which simulated seconds UpdateApplication is sent and
//! to which KPU. [`replay`] plays it on the [`World`] that `simulate` and
//! `bench` score, sending each update as the agent's target does, so its
//! scores are those of any policy that made the same decisions. The search
//! takes candidates from a variant of the relaxed programme that returns
//! its schedule ([`Relaxed::plan`], [`Relaxed::plan_per_second`]) over a
//! range of prices ([`search_prices`]) and then
//! improves the best one on the real model by local moves ([`improve`]):
//! a rescale earlier or later, one KPU more or less, or none. What it
//! finds is a real schedule, so it shows a bar possible; it never shows
//! one impossible (the bound in [`super::bound`] does that).

use super::bound::Plan;
#[cfg(doc)]
use super::bound::Relaxed;
use super::driver::SIM_EPOCH_MS;
use super::{Scenario, Scores, World};

/// One UpdateApplication of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rescale {
    /// The simulated second it is sent at (its first UPDATING step).
    pub at_secs: u64,
    /// The KPU asked for (parallelism KPU x the application's
    /// ParallelismPerKPU).
    pub kpu: u32,
}

/// A schedule and its scores on the real model.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The rescales, in time order.
    pub rescales: Vec<Rescale>,
    /// Their scores, as [`replay`] gives them.
    pub scores: Scores,
}

/// Plays `rescales` (in time order) on the scenario's model from t = 0 to
/// its end and scores the run. The scenario must have one application; a
/// rescale the model refuses (sent while UPDATING, out of order, at or
/// after the run's end, to a KPU out of range) is an error naming it.
pub fn replay(scenario: &Scenario, rescales: &[Rescale]) -> Result<Scores, String> {
    let [app] = scenario.applications.as_slice() else {
        return Err(format!(
            "scenario {}: a schedule needs exactly one application, it has {}",
            scenario.name,
            scenario.applications.len()
        ));
    };
    let ppk = app.params.parallelism_per_kpu.max(1);
    let mut world = World::from_scenario(scenario, SIM_EPOCH_MS);
    for (i, r) in rescales.iter().enumerate() {
        let refused = |why: String| {
            format!(
                "rescale {} (to {} KPU at {} s): {why}",
                i + 1,
                r.kpu,
                r.at_secs
            )
        };
        if r.at_secs >= scenario.duration_secs {
            return Err(refused(format!(
                "comes at or after the run's end ({} s)",
                scenario.duration_secs
            )));
        }
        if r.at_secs < world.now_secs() {
            return Err(refused(format!(
                "comes before the one before it ({} s)",
                world.now_secs()
            )));
        }
        world.advance_to(r.at_secs);
        let view = world
            .describe(&app.name)
            .map_err(|e| refused(e.to_string()))?;
        world
            .update_application(
                &app.name,
                view.version_id,
                Some(r.kpu.saturating_mul(ppk)),
                Some(ppk),
                None,
            )
            .map_err(|e| refused(e.to_string()))?;
    }
    world.advance_to(scenario.duration_secs);
    Ok(world.scores())
}

/// Whether scores `a` beat `b` within `budget` violation seconds: within
/// it beats over it; within it, the higher efficiency wins; over it, the
/// fewer violation seconds.
pub fn better(a: &Scores, b: &Scores, budget: u64) -> bool {
    let (a_in, b_in) = (
        a.slo_violation_secs <= budget,
        b.slo_violation_secs <= budget,
    );
    match (a_in, b_in) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => a.efficiency > b.efficiency,
        (false, false) => {
            a.slo_violation_secs < b.slo_violation_secs
                || (a.slo_violation_secs == b.slo_violation_secs && a.efficiency > b.efficiency)
        }
    }
}

/// Plans at up to `solves` prices with `plan_at` (e.g. [`Relaxed::plan`]
/// or [`Relaxed::plan_per_second`]) and replays each plan, calling `log`
/// with each price's replay and planned violation seconds; returns every
/// distinct schedule found, best first (see [`better`]). From `start`, the
/// price is multiplied by 4 while the replay is over the budget and divided
/// by 4 while it is within, until it is bracketed; then the bracket is
/// halved geometrically.
pub fn search_prices(
    scenario: &Scenario,
    budget: u64,
    start: f64,
    solves: usize,
    mut plan_at: impl FnMut(f64) -> Result<Plan, String>,
    mut log: impl FnMut(f64, &Found, u64),
) -> Result<Vec<Found>, String> {
    let mut all: Vec<Found> = Vec::new();
    let (mut low, mut high): (Option<f64>, Option<f64>) = (None, None);
    let mut price = start.max(1e-3);
    for _ in 0..solves {
        let plan = plan_at(price)?;
        let scores = replay(scenario, &plan.rescales)?;
        let found = Found {
            rescales: plan.rescales,
            scores,
        };
        log(price, &found, plan.violation_secs);
        if found.scores.slo_violation_secs <= budget {
            high = Some(price);
        } else {
            low = Some(price);
        }
        if !all.iter().any(|f| f.rescales == found.rescales) {
            all.push(found);
        }
        price = match (low, high) {
            (Some(l), Some(h)) => (l * h).sqrt(),
            (Some(l), None) => l * 4.0,
            (None, Some(h)) => h / 4.0,
            (None, None) => price,
        };
    }
    all.sort_by(|a, b| {
        if better(&a.scores, &b.scores, budget) {
            std::cmp::Ordering::Less
        } else if better(&b.scores, &a.scores, budget) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    Ok(all)
}

/// Improves `found` on the real model by local moves until none helps or
/// `rounds` passes are done: each rescale moved earlier or later by each of
/// `shifts` seconds, one KPU more or less, or dropped. Each pass takes the
/// best move over all of them (see [`better`]); `log` hears of each
/// accepted move.
pub fn improve(
    scenario: &Scenario,
    found: Found,
    budget: u64,
    shifts: &[u64],
    rounds: usize,
    log: impl FnMut(&Found),
) -> Found {
    improve_keeping(scenario, found, budget, shifts, rounds, false, log)
}

/// [`improve`], and with `keep` never dropping a rescale (to search among
/// schedules of as many rescales as the start).
pub fn improve_keeping(
    scenario: &Scenario,
    mut found: Found,
    budget: u64,
    shifts: &[u64],
    rounds: usize,
    keep: bool,
    mut log: impl FnMut(&Found),
) -> Found {
    for _ in 0..rounds {
        let mut best: Option<Found> = None;
        for candidate in neighbours(&found.rescales, shifts, keep) {
            let Ok(scores) = replay(scenario, &candidate) else {
                continue;
            };
            let beats = |s: &Scores| better(&scores, s, budget);
            if beats(&found.scores) && best.as_ref().is_none_or(|b| beats(&b.scores)) {
                best = Some(Found {
                    rescales: candidate,
                    scores,
                });
            }
        }
        match best {
            Some(b) => {
                log(&b);
                found = b;
            }
            None => break,
        }
    }
    found
}

/// The schedules one move from `rescales` (see [`improve`]), each still
/// in time order with no two rescales at the same second.
fn neighbours(rescales: &[Rescale], shifts: &[u64], keep: bool) -> Vec<Vec<Rescale>> {
    let mut out = Vec::new();
    for i in 0..rescales.len() {
        let r = rescales[i];
        let earliest = if i == 0 {
            0
        } else {
            rescales[i - 1].at_secs + 1
        };
        let latest = rescales.get(i + 1).map_or(u64::MAX, |n| n.at_secs - 1);
        let mut with = |changed: Rescale| {
            let mut s = rescales.to_vec();
            s[i] = changed;
            out.push(s);
        };
        for &d in shifts {
            if r.at_secs >= earliest + d {
                with(Rescale {
                    at_secs: r.at_secs - d,
                    ..r
                });
            }
            if r.at_secs.saturating_add(d) <= latest {
                with(Rescale {
                    at_secs: r.at_secs + d,
                    ..r
                });
            }
        }
        with(Rescale {
            kpu: r.kpu + 1,
            ..r
        });
        if r.kpu > 1 {
            with(Rescale {
                kpu: r.kpu - 1,
                ..r
            });
        }
        if !keep {
            let mut s = rescales.to_vec();
            s.remove(i);
            out.push(s);
        }
    }
    out
}

/// `h:mm:ss` of a simulated second.
pub fn clock(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A schedule in short: `-> 6 KPU at 5:30:00, -> 4 KPU at 9:00:00`.
pub fn describe(rescales: &[Rescale]) -> String {
    if rescales.is_empty() {
        return "no rescale".into();
    }
    rescales
        .iter()
        .map(|r| format!("{} KPU at {}", r.kpu, clock(r.at_secs)))
        .collect::<Vec<_>>()
        .join(", ")
}
