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
//! a rescale earlier or later, one KPU more or less, or none; or by
//! moving all rescales at once ([`improve_jointly`]), which crosses ridges
//! where every single move is worse. What it
//! finds is a real schedule, so it shows a bar possible; it never shows
//! one impossible (the bound in [`super::bound`] does that).

use std::collections::BTreeMap;

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

/// One stage of [`improve_jointly`]: each rescale tried at every `step`
/// seconds within `span` seconds either side of where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JointStage {
    /// How far either side of its time a rescale is tried (seconds).
    pub span_secs: u64,
    /// The spacing of the times tried (seconds, at least 1).
    pub step_secs: u64,
}

/// What [`improve_jointly`] tries: its stages and how far each goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JointSearch {
    /// The stages, in order (coarse to fine).
    pub stages: Vec<JointStage>,
    /// How many KPU more or less than its own each rescale is tried at.
    pub levels: u32,
    /// How many of the added-up combinations are replayed per round.
    pub verify: usize,
    /// The most rounds per stage.
    pub rounds: usize,
}

/// Improves `found` on the real model by moving all its rescales at once,
/// where [`improve`] moves one at a time and so cannot cross a ridge on
/// which every single move is worse (e.g. over the budget, two moves that
/// each save one violation second only together cost less than a third
/// move that saves two).
///
/// For each of the search's stages in turn, a round replays, for each
/// rescale alone, every option within the stage: each time within
/// `span_secs` either side at `step_secs`, at its KPU or up to `levels`
/// KPU more or less. It keeps, per rescale and per change in violation
/// seconds, the option of least KPU-seconds, and adds the rescales'
/// changes up by a knapsack over the violation seconds (as if the
/// rescales' effects did not interact, which holds when the backlog
/// drains between them). The `verify` most promising combinations (see
/// [`better`], on the added-up scores) are replayed on the real model,
/// and the best of these replays and of the single options' own replays
/// is taken if it beats `found` (so a round is never worse than the best
/// move of one rescale on its grid): every accepted step is a real
/// schedule, scored as [`replay`] scores it, and only ever an
/// improvement. Rounds repeat up to `rounds` times while they improve;
/// `log` hears of each accepted step. The number of rescales never
/// changes.
pub fn improve_jointly(
    scenario: &Scenario,
    mut found: Found,
    budget: u64,
    search: &JointSearch,
    mut log: impl FnMut(&Found),
) -> Found {
    for stage in &search.stages {
        for _ in 0..search.rounds {
            match joint_round(
                scenario,
                &found,
                budget,
                *stage,
                search.levels,
                search.verify,
            ) {
                Some(next) => {
                    log(&next);
                    found = next;
                }
                None => break,
            }
        }
    }
    found
}

/// The KPU-seconds billed by a run: an integer, as the model bills whole
/// KPU for whole seconds.
fn kpu_secs(scores: &Scores) -> i64 {
    (scores.kpu_hours * 3600.0).round() as i64
}

/// One round of [`improve_jointly`]: the best of the single options and
/// the verified combinations, if it beats `found`.
fn joint_round(
    scenario: &Scenario,
    found: &Found,
    budget: u64,
    stage: JointStage,
    levels: u32,
    verify: usize,
) -> Option<Found> {
    let base = &found.rescales;
    let (v0, c0) = (
        found.scores.slo_violation_secs as i64,
        kpu_secs(&found.scores),
    );
    let step = stage.step_secs.max(1);
    // Per rescale: change in violation seconds -> (least change in
    // KPU-seconds, the rescale that gives it). Keeping it unchanged is
    // always an option.
    let mut options: Vec<BTreeMap<i64, (i64, Rescale)>> = Vec::new();
    // The best schedule seen, starting with the options themselves: each is
    // a real replay, so a round never does worse than the best single move.
    let mut best: Option<Found> = None;
    let mut consider = |rescales: Vec<Rescale>, scores: Scores| {
        let beats = |s: &Scores| better(&scores, s, budget);
        if beats(&found.scores) && best.as_ref().is_none_or(|b| beats(&b.scores)) {
            best = Some(Found { rescales, scores });
        }
    };
    for (i, r) in base.iter().enumerate() {
        let mut least = BTreeMap::new();
        least.insert(0i64, (0i64, *r));
        let earliest = r.at_secs.saturating_sub(stage.span_secs);
        let latest = r.at_secs.saturating_add(stage.span_secs);
        let low_kpu = r.kpu.saturating_sub(levels).max(1);
        for kpu in low_kpu..=r.kpu.saturating_add(levels) {
            let mut at = earliest + (r.at_secs - earliest) % step;
            while at <= latest {
                let option = Rescale { at_secs: at, kpu };
                at += step;
                if option == *r {
                    continue;
                }
                let mut candidate = base.clone();
                candidate[i] = option;
                let Ok(scores) = replay(scenario, &candidate) else {
                    continue;
                };
                let dv = scores.slo_violation_secs as i64 - v0;
                let dc = kpu_secs(&scores) - c0;
                if least.get(&dv).is_none_or(|&(c, _)| dc < c) {
                    least.insert(dv, (dc, option));
                }
                consider(candidate, scores);
            }
        }
        options.push(least);
    }
    // Knapsack over the violation seconds: total change -> least total
    // change in KPU-seconds and the rescales giving it.
    let mut totals: BTreeMap<i64, (i64, Vec<Rescale>)> = BTreeMap::from([(0, (0, Vec::new()))]);
    for least in &options {
        let mut next: BTreeMap<i64, (i64, Vec<Rescale>)> = BTreeMap::new();
        for (dv, (dc, chosen)) in &totals {
            for (odv, (odc, option)) in least {
                let (v, c) = (dv + odv, dc + odc);
                if next.get(&v).is_none_or(|&(least, _)| c < least) {
                    let mut with = chosen.clone();
                    with.push(*option);
                    next.insert(v, (c, with));
                }
            }
        }
        totals = next;
    }
    // The most promising first: within the budget by fewest KPU-seconds,
    // then over it by fewest violation seconds.
    let mut ranked: Vec<(i64, i64, Vec<Rescale>)> = totals
        .into_iter()
        .map(|(dv, (dc, rescales))| (v0 + dv, c0 + dc, rescales))
        .filter(|(_, _, rescales)| {
            rescales != base && rescales.windows(2).all(|w| w[0].at_secs < w[1].at_secs)
        })
        .collect();
    ranked.sort_by_key(|&(v, c, _)| {
        if v <= budget as i64 {
            (0, c, v)
        } else {
            (1, v, c)
        }
    });
    for (_, _, rescales) in ranked.into_iter().take(verify) {
        if let Ok(scores) = replay(scenario, &rescales) {
            consider(rescales, scores);
        }
    }
    best
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
