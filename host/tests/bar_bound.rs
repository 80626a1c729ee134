//! The relaxed bound of `flinkscale::sim::bound` (the `bar_bound` example)
//! is an upper bound: on a short jump-and-fall scenario it is at or above
//! the efficiency of every shipped policy's run and of hand-made and
//! pseudo-random schedules (rescales at any second, not on the relaxed
//! model's blocks), each at its own violation seconds; and the searched
//! price's bound is at or below every fixed price's. The programme with
//! the budget in its state is at or below every run within the budget and
//! at or above what the priced optima imply, and its unmerged schedule
//! replays to exactly its KPU-seconds and violation seconds. Its prune by
//! a needed efficiency drops states yet keeps the optimum when the needed
//! efficiency is just below it, and rules it out just above.
//!
//! Needs the shipped plugins (built by host/build.rs).

use flinkscale::sim::bench::configure;
use flinkscale::sim::bound::{NeededPrune, PriceSearch, Relaxed, Resolution, SearchStop};
use flinkscale::sim::driver::simulate;
use flinkscale::sim::presets::{PRESETS, PolicyChoice};
use flinkscale::sim::schedule::{self, Rescale};
use flinkscale::sim::{Scenario, Scores, Trace};

/// 40 minutes: 1.5k records/s, a jump to 6k for 10 minutes, a fall to 2.5k.
fn scenario() -> Scenario {
    let trace = Trace::from_points(vec![
        (0.0, 1500.0),
        (599.0, 1500.0),
        (600.0, 6000.0),
        (1199.0, 6000.0),
        (1200.0, 2500.0),
        (2400.0, 2500.0),
    ])
    .expect("a valid trace");
    let mut scenario = Scenario::single("jump", trace, 2400);
    scenario.applications[0].params.initial_kpu = 2;
    scenario
}

/// (violation seconds, efficiency) of a schedule of (second, KPU) rescales.
fn replay(scenario: &Scenario, schedule: &[(u64, u32)]) -> (u64, f64) {
    let s = replay_scores(scenario, schedule);
    (s.slo_violation_secs, s.efficiency)
}

/// The scores of a schedule of (second, KPU) rescales, replayed as
/// `simulate` scores a policy's decisions.
fn replay_scores(scenario: &Scenario, pairs: &[(u64, u32)]) -> Scores {
    let rescales: Vec<Rescale> = pairs
        .iter()
        .map(|&(at_secs, kpu)| Rescale { at_secs, kpu })
        .collect();
    schedule::replay(scenario, &rescales).expect("the updates are accepted")
}

/// Hand-made schedules and 40 pseudo-random ones of up to three rescales
/// at any second.
fn schedules() -> Vec<Vec<(u64, u32)>> {
    let mut schedules: Vec<Vec<(u64, u32)>> = vec![
        vec![],
        vec![(601, 7)],
        vec![(613, 8), (1207, 3)],
        vec![(655, 6), (1283, 3)],
        vec![(700, 9), (900, 6), (1250, 3)],
        vec![(100, 1), (610, 7), (1230, 3)],
    ];
    // Pseudo-random schedules of up to three rescales at any second.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..40 {
        let mut at = next(900);
        let mut schedule = Vec::new();
        for _ in 0..1 + next(3) {
            if at >= 2400 {
                break;
            }
            schedule.push((at, 1 + next(10) as u32));
            at += 90 + next(900);
        }
        schedules.push(schedule);
    }
    schedules
}

/// The bound, the least over a few prices, within `budget`.
fn bound(relaxed: &Relaxed, optima: &[flinkscale::sim::bound::PricedOptimum], budget: u64) -> f64 {
    optima
        .iter()
        .map(|o| o.efficiency_ceiling(relaxed.clairvoyant_kpu_secs, budget))
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn the_bound_is_at_or_above_every_run_at_its_own_violations() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let resolution = Resolution {
        block_secs: 10,
        buckets: 300,
        cap_secs: 300.0,
    };
    let optima: Vec<_> = [4.0, 16.0, 64.0, 256.0, 1024.0]
        .iter()
        .map(|&p| relaxed.solve(resolution, p))
        .collect();

    let mut runs: Vec<(String, u64, f64)> = Vec::new();
    for policy in PRESETS {
        let choice = PolicyChoice {
            name: (*policy).into(),
            params: serde_json::Map::new(),
        };
        let loaded = configure(&scenario, &choice, None).expect("the preset loads");
        let outcome = simulate(&scenario, &loaded).expect("runs");
        let s = outcome.world.scores();
        runs.push(((*policy).into(), s.slo_violation_secs, s.efficiency));
    }
    let schedules = schedules();
    for schedule in &schedules {
        let (violations, efficiency) = replay(&scenario, schedule);
        runs.push((format!("{schedule:?}"), violations, efficiency));
    }
    for (name, violations, efficiency) in &runs {
        let b = bound(&relaxed, &optima, *violations);
        assert!(
            b >= *efficiency - 1e-12,
            "{name}: efficiency {efficiency:.4} in {violations} violation s is above the bound {b:.4}"
        );
    }
    // The searched price: within each preset's and the best run's
    // violations, its bound is at or below every fixed price's, at or above
    // its own floor, and at or above every run within that budget.
    let best_run = runs
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("runs");
    let mut budgets: Vec<u64> = runs[..PRESETS.len()].iter().map(|r| r.1).collect();
    budgets.push(best_run.1);
    for budget in budgets {
        let search = PriceSearch {
            tolerance: 1e-9,
            max_solves: 40,
            ..PriceSearch::default()
        };
        let searched = relaxed.least_ceiling(resolution, budget, &search);
        assert_eq!(searched.stop, SearchStop::Converged, "budget {budget}");
        let fixed = bound(&relaxed, &optima, budget);
        assert!(
            searched.ceiling <= fixed * (1.0 + 1e-9),
            "budget {budget}: searched bound {:.4} above the fixed prices' {fixed:.4}",
            searched.ceiling
        );
        assert!(
            searched.floor <= searched.ceiling + 1e-12,
            "budget {budget}: floor {:.4} above the bound {:.4}",
            searched.floor,
            searched.ceiling
        );
        for (name, violations, efficiency) in runs.iter().filter(|r| r.1 <= budget) {
            assert!(
                searched.ceiling >= *efficiency - 1e-12,
                "{name}: efficiency {efficiency:.4} in {violations} violation s is above the searched bound {:.4} within {budget} s",
                searched.ceiling
            );
        }
    }
    // The bound says something: within the best run's violations it is
    // finite, and not far above the best efficiency seen.
    let (name, violations, efficiency) = runs
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("runs");
    let b = bound(&relaxed, &optima, *violations);
    assert!(
        b.is_finite() && b < 1.5 * efficiency,
        "bound {b:.4} at {violations} s against {name}'s {efficiency:.4}"
    );
}

#[test]
fn the_per_second_programme_is_at_or_below_every_run_and_above_the_blocks() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let resolution = Resolution {
        block_secs: 10,
        buckets: 300,
        cap_secs: 300.0,
    };
    let mut runs: Vec<(String, Scores)> = Vec::new();
    for policy in PRESETS {
        let choice = PolicyChoice {
            name: (*policy).into(),
            params: serde_json::Map::new(),
        };
        let loaded = configure(&scenario, &choice, None).expect("the preset loads");
        let outcome = simulate(&scenario, &loaded).expect("runs");
        runs.push(((*policy).into(), outcome.world.scores()));
    }
    for schedule in schedules() {
        runs.push((format!("{schedule:?}"), replay_scores(&scenario, &schedule)));
    }
    for price in [4.0, 16.0, 64.0, 256.0, 1024.0] {
        // The planning variant's schedule at this price is a real schedule
        // close to the optimum: the exact programme must be at or below it.
        let plan = relaxed.plan(resolution, price).expect("fits");
        let schedule: Vec<(u64, u32)> = plan.rescales.iter().map(|r| (r.at_secs, r.kpu)).collect();
        runs.push((
            format!("plan at {price}: {schedule:?}"),
            replay_scores(&scenario, &schedule),
        ));
        let exact = relaxed.solve_per_second(price, 0.0);
        let merged = relaxed.solve_per_second(price, 0.01);
        let blocks = relaxed.solve(resolution, price);
        assert!(
            merged.priced_cost <= exact.priced_cost * (1.0 + 1e-12),
            "price {price}"
        );
        assert!(
            blocks.priced_cost <= exact.priced_cost * (1.0 + 1e-12),
            "price {price}"
        );
        for (name, s) in &runs {
            let cost = s.kpu_hours * 3600.0 + price * s.slo_violation_secs as f64;
            assert!(
                cost >= merged.priced_cost * (1.0 - 1e-12),
                "price {price}, {name}: priced cost {cost} below the per-second optimum {}",
                merged.priced_cost
            );
        }
    }
}

#[test]
fn the_budget_constrained_programme_is_between_the_priced_bound_and_every_run() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let resolution = Resolution {
        block_secs: 10,
        buckets: 300,
        cap_secs: 300.0,
    };
    let prices = [4.0, 16.0, 64.0, 256.0, 1024.0];
    let mut runs: Vec<(String, Scores)> = Vec::new();
    for policy in PRESETS {
        let choice = PolicyChoice {
            name: (*policy).into(),
            params: serde_json::Map::new(),
        };
        let loaded = configure(&scenario, &choice, None).expect("the preset loads");
        let outcome = simulate(&scenario, &loaded).expect("runs");
        runs.push(((*policy).into(), outcome.world.scores()));
    }
    for schedule in schedules() {
        runs.push((format!("{schedule:?}"), replay_scores(&scenario, &schedule)));
    }
    for &price in &prices {
        let plan = relaxed.plan(resolution, price).expect("fits");
        let schedule: Vec<(u64, u32)> = plan.rescales.iter().map(|r| (r.at_secs, r.kpu)).collect();
        runs.push((
            format!("plan at {price}: {schedule:?}"),
            replay_scores(&scenario, &schedule),
        ));
    }
    // Not at price 4: its optimum lets the backlog build, and its states
    // take two minutes in a debug build.
    let priced: Vec<_> = prices[1..]
        .iter()
        .map(|&p| relaxed.solve_per_second(p, 0.0))
        .collect();
    // The violations of the runs with the fewest, and two budgets near
    // them. (The states grow with the budget: 90 s takes two minutes in
    // a debug build.)
    let mut budgets: Vec<u64> = runs.iter().map(|r| r.1.slo_violation_secs).collect();
    budgets.sort_unstable();
    budgets.truncate(3);
    budgets.extend([30, 50]);
    budgets.sort_unstable();
    budgets.dedup();
    let (mut within, mut feasible) = (0, 0);
    for budget in budgets {
        let exact = relaxed.solve_within_budget(budget, 0.0, true);
        let merged = relaxed.solve_within_budget(budget, 0.01, false);
        // No state within the budget (every rescale costs violations): then
        // no run may be within it either, which the loop below checks.
        if exact.kpu_secs.is_finite() {
            assert!(exact.violation_secs <= budget, "budget {budget}");
        }
        assert!(
            merged.kpu_secs <= exact.kpu_secs * (1.0 + 1e-12),
            "budget {budget}: merged {} above unmerged {}",
            merged.kpu_secs,
            exact.kpu_secs
        );
        // At or below every real run within the budget.
        for (name, s) in runs.iter().filter(|r| r.1.slo_violation_secs <= budget) {
            within += 1;
            let kpu_secs = s.kpu_hours * 3600.0;
            assert!(
                kpu_secs >= merged.kpu_secs * (1.0 - 1e-12),
                "budget {budget}, {name}: {kpu_secs} KPU-s in {} violation s, below the constrained optimum {}",
                s.slo_violation_secs,
                merged.kpu_secs
            );
            assert!(
                merged.efficiency_ceiling(relaxed.clairvoyant_kpu_secs) >= s.efficiency - 1e-12,
                "budget {budget}, {name}"
            );
        }
        // At or above what every price implies: L(p) - p x budget.
        for o in &priced {
            let implied = o.priced_cost - o.price * budget as f64;
            assert!(
                exact.kpu_secs >= implied * (1.0 - 1e-12),
                "budget {budget}, price {}: constrained {} below L(p) - p x budget = {implied}",
                o.price,
                exact.kpu_secs
            );
        }
        if !exact.kpu_secs.is_finite() {
            continue;
        }
        feasible += 1;
        // Its schedule is real: the model bills and violates exactly as
        // planned.
        let scores = schedule::replay(&scenario, &exact.rescales).expect("the schedule replays");
        assert_eq!(exact.rescales.len() as u64, exact.rescale_count);
        assert!(
            (scores.kpu_hours * 3600.0 - exact.kpu_secs).abs() < 1e-6,
            "budget {budget}: replay bills {} KPU-s, the programme {}",
            scores.kpu_hours * 3600.0,
            exact.kpu_secs
        );
        assert_eq!(
            scores.slo_violation_secs, exact.violation_secs,
            "budget {budget}"
        );
    }
    assert!(within >= 3, "only {within} runs within the budgets");
    assert!(feasible >= 3, "only {feasible} budgets with a schedule");
}

#[test]
fn the_needed_prune_keeps_the_optimum_just_below_it_and_rules_out_just_above() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let clairvoyant = relaxed.clairvoyant_kpu_secs;
    let budget = 39;
    let exact = relaxed.solve_within_budget(budget, 0.0, false);
    assert!(exact.kpu_secs.is_finite(), "a schedule within {budget} s");
    let optimum = exact.efficiency_ceiling(clairvoyant);
    let prune = |needed: f64| NeededPrune {
        needed,
        resolution: Resolution {
            block_secs: 10,
            buckets: 300,
            cap_secs: 300.0,
        },
        prices: vec![16.0, 64.0, 256.0],
        every_secs: 60,
    };
    // Just below the optimum's efficiency: the optimum (a real schedule,
    // nothing merged) survives every prune, and nothing cheaper exists.
    let below =
        relaxed.decide_within_budget(budget, 0.0, &prune(optimum * (1.0 - 1e-6)), false, false);
    assert!(!below.below_needed, "ruled out below the optimum {optimum}");
    assert!(
        (below.kpu_secs - exact.kpu_secs).abs() < 1e-6,
        "pruned optimum {} against {}",
        below.kpu_secs,
        exact.kpu_secs
    );
    assert_eq!(below.violation_secs, exact.violation_secs);
    assert!(below.pruned > 0, "the prune dropped no state");
    // Just above: no schedule within the budget reaches it.
    let above =
        relaxed.decide_within_budget(budget, 0.0, &prune(optimum * (1.0 + 1e-6)), false, false);
    assert!(
        above.below_needed,
        "not ruled out above the optimum {optimum}"
    );
}
