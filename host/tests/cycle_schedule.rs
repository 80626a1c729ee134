//! The schedule search of `flinkscale::sim::schedule` (the `cycle_schedule`
//! example): a replayed schedule scores exactly as `simulate` scores a
//! policy that made the same decisions; the planning variant of the
//! relaxed programme follows its own optimum, bills what the real model
//! bills and never counts fewer violation seconds than the replay; and the
//! local search and the joint search never make a schedule worse.
//!
//! Needs the shipped plugins (built by host/build.rs).

use flinkscale::sim::bench::{
    BAR_EFFICIENCY_FACTOR, BAR_EXTRA_VIOLATION_SECS, bar_verdict, configure,
};
use flinkscale::sim::bound::{Relaxed, Resolution};
use flinkscale::sim::driver::simulate;
use flinkscale::sim::presets::{PRESETS, PolicyChoice};
use flinkscale::sim::schedule::{self, Found, Rescale};
use flinkscale::sim::{Scenario, Scores, Trace};

/// Three hours of a cycle: 1.5k records/s, up to 6k and back, twice.
fn scenario() -> Scenario {
    let trace = Trace::from_points(vec![
        (0.0, 1500.0),
        (1800.0, 6000.0),
        (3600.0, 1500.0),
        (5400.0, 6000.0),
        (7200.0, 1500.0),
        (10800.0, 1500.0),
    ])
    .expect("a valid trace");
    let mut scenario = Scenario::single("cycle", trace, 10800);
    scenario.applications[0].params.initial_kpu = 2;
    scenario
}

#[test]
fn a_replayed_schedule_scores_as_simulate_scores_the_same_decisions() {
    let scenario = scenario();
    let mut most_rescales = 0;
    for policy in PRESETS {
        let choice = PolicyChoice {
            name: (*policy).into(),
            params: serde_json::Map::new(),
        };
        let loaded = configure(&scenario, &choice, None).expect("the preset loads");
        let outcome = simulate(&scenario, &loaded).expect("runs");
        let history = outcome.world.history("app").expect("the app");
        let rescales: Vec<Rescale> = history
            .updates
            .iter()
            .map(|u| Rescale {
                at_secs: u.t_secs,
                kpu: u.to_kpu,
            })
            .collect();
        most_rescales = most_rescales.max(rescales.len());
        let replayed = schedule::replay(&scenario, &rescales).expect("the schedule replays");
        assert_eq!(replayed, outcome.scores, "{policy}");
    }
    assert!(
        most_rescales >= 2,
        "some policy should rescale on a cycle, the most was {most_rescales}"
    );
}

#[test]
fn a_refused_rescale_is_an_error_naming_it() {
    let scenario = scenario();
    let overlapping = [
        Rescale {
            at_secs: 600,
            kpu: 4,
        },
        Rescale {
            at_secs: 650,
            kpu: 3,
        },
    ];
    let e = schedule::replay(&scenario, &overlapping).expect_err("sent while UPDATING");
    assert!(e.starts_with("rescale 2 (to 3 KPU at 650 s)"), "{e}");
    let backwards = [
        Rescale {
            at_secs: 900,
            kpu: 4,
        },
        Rescale {
            at_secs: 300,
            kpu: 3,
        },
    ];
    let e = schedule::replay(&scenario, &backwards).expect_err("out of order");
    assert!(e.contains("comes before the one before it"), "{e}");
    let late = [Rescale {
        at_secs: 10800,
        kpu: 3,
    }];
    let e = schedule::replay(&scenario, &late).expect_err("at the end");
    assert!(e.contains("at or after the run's end (10800 s)"), "{e}");
}

#[test]
fn the_plan_follows_the_planning_optimum_and_the_replay_is_no_worse() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let mut most_rescales = 0;
    for block_secs in [10, 30] {
        let resolution = Resolution {
            block_secs,
            buckets: 300,
            cap_secs: 300.0,
        };
        for price in [4.0, 16.0, 64.0, 256.0, 1024.0] {
            let at = format!("block {block_secs} s, price {price}");
            let plan = relaxed.plan(resolution, price).expect("fits in memory");
            let optimum = relaxed.plan_optimum(resolution, price);
            // The schedule followed is the one the programme's optimum is of.
            assert!(
                (plan.priced_cost - optimum.priced_cost).abs() <= 1e-9 * optimum.priced_cost,
                "{at}: followed {} against the optimum {}",
                plan.priced_cost,
                optimum.priced_cost
            );
            assert_eq!(plan.kpu_secs, optimum.kpu_secs, "{at}");
            assert_eq!(plan.violation_secs, optimum.violation_secs, "{at}");
            assert_eq!(plan.rescales.len() as u64, optimum.rescales, "{at}");
            // The bound relaxes what planning keeps exact.
            let bound = relaxed.solve(resolution, price);
            assert!(bound.priced_cost <= optimum.priced_cost, "{at}");
            // The block divides the 90 s restart: the real model bills the
            // plan's KPU-seconds and has no more violation seconds.
            let scores = schedule::replay(&scenario, &plan.rescales).expect("the plan replays");
            assert_eq!(scores.rescales, plan.rescales.len() as u64, "{at}");
            assert!(
                (scores.kpu_hours * 3600.0 - plan.kpu_secs).abs() < 1e-6,
                "{at}: replay bills {} KPU-s, the plan {}",
                scores.kpu_hours * 3600.0,
                plan.kpu_secs
            );
            assert!(
                scores.slo_violation_secs <= plan.violation_secs,
                "{at}: replay {} violation s, planned {}",
                scores.slo_violation_secs,
                plan.violation_secs
            );
            most_rescales = most_rescales.max(plan.rescales.len());
        }
    }
    assert!(most_rescales >= 3, "the plans should follow the cycle");
}

#[test]
fn the_price_search_and_the_local_search_only_improve() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let resolution = Resolution {
        block_secs: 30,
        buckets: 200,
        cap_secs: 300.0,
    };
    let budget = 300;
    let mut prices = Vec::new();
    let found = schedule::search_prices(
        &scenario,
        budget,
        64.0,
        6,
        |p| relaxed.plan(resolution, p),
        |p, _, _| prices.push(p),
    )
    .expect("plans");
    assert_eq!(prices.len(), 6);
    assert!(!found.is_empty());
    for pair in found.windows(2) {
        assert!(
            !schedule::better(&pair[1].scores, &pair[0].scores, budget),
            "best first"
        );
    }
    let start = found[0].clone();
    let mut steps: Vec<Found> = Vec::new();
    let end = schedule::improve(&scenario, start.clone(), budget, &[300, 30], 20, |f| {
        steps.push(f.clone())
    });
    let mut last = start;
    for step in &steps {
        assert!(schedule::better(&step.scores, &last.scores, budget));
        assert_eq!(
            schedule::replay(&scenario, &step.rescales).expect("replays"),
            step.scores
        );
        last = step.clone();
    }
    assert_eq!(end, last);
}

#[test]
fn the_per_second_plan_is_what_the_model_does_and_costs_the_optimum() {
    let scenario = scenario();
    let relaxed = Relaxed::from_scenario(&scenario).expect("one application");
    let mut most_rescales = 0;
    // (Lower prices make more rescales and many more states: minutes in a
    // debug build.)
    for price in [16.0, 64.0, 256.0] {
        let plan = relaxed.plan_per_second(price, 0.0);
        let optimum = relaxed.solve_per_second(price, 0.0);
        assert_eq!(plan.priced_cost, optimum.priced_cost, "price {price}");
        assert_eq!(
            plan.rescales.len() as u64,
            optimum.rescales,
            "price {price}"
        );
        // Without merging the programme tracks the model's own backlog, so
        // the replay bills and violates exactly as planned.
        let scores = schedule::replay(&scenario, &plan.rescales).expect("the plan replays");
        assert!(
            (scores.kpu_hours * 3600.0 - plan.kpu_secs).abs() < 1e-6,
            "price {price}: replay bills {} KPU-s, the plan {}",
            scores.kpu_hours * 3600.0,
            plan.kpu_secs
        );
        assert_eq!(
            scores.slo_violation_secs, plan.violation_secs,
            "price {price}"
        );
        most_rescales = most_rescales.max(plan.rescales.len());
    }
    assert!(most_rescales >= 2, "the plans should follow the cycle");
}

#[test]
fn the_joint_search_only_improves_and_reports_its_replays() {
    let scenario = scenario();
    // Following the cycle by hand, late up the first rise and a KPU too
    // many on the second: a start the joint moves can improve, with 60
    // violation seconds to spare.
    let start_rescales = vec![
        Rescale {
            at_secs: 900,
            kpu: 7,
        },
        Rescale {
            at_secs: 3000,
            kpu: 4,
        },
        Rescale {
            at_secs: 4400,
            kpu: 7,
        },
        Rescale {
            at_secs: 6900,
            kpu: 2,
        },
    ];
    let start = Found {
        scores: schedule::replay(&scenario, &start_rescales).expect("replays"),
        rescales: start_rescales,
    };
    let budget = start.scores.slo_violation_secs + 60;
    let search = schedule::JointSearch {
        stages: vec![
            schedule::JointStage {
                span_secs: 600,
                step_secs: 120,
            },
            schedule::JointStage {
                span_secs: 60,
                step_secs: 20,
            },
        ],
        levels: 1,
        verify: 5,
        rounds: 10,
    };
    let mut steps: Vec<Found> = Vec::new();
    let end = schedule::improve_jointly(&scenario, start.clone(), budget, &search, |f| {
        steps.push(f.clone())
    });
    assert!(
        !steps.is_empty(),
        "the joint search should improve the start"
    );
    let mut last = start.clone();
    for step in &steps {
        assert!(schedule::better(&step.scores, &last.scores, budget));
        assert_eq!(step.rescales.len(), last.rescales.len());
        assert_eq!(
            schedule::replay(&scenario, &step.rescales).expect("replays"),
            step.scores
        );
        last = step.clone();
    }
    assert_eq!(end, last);
    assert!(end.scores.slo_violation_secs <= budget);
    // One round of the first stage is never worse than the best move of
    // one rescale on its grid (here every such move of the local search).
    let one_round = schedule::improve_jointly(
        &scenario,
        start.clone(),
        budget,
        &schedule::JointSearch {
            stages: search.stages[..1].to_vec(),
            rounds: 1,
            ..search.clone()
        },
        |_| {},
    );
    let one_move = schedule::improve_keeping(
        &scenario,
        start,
        budget,
        &[120, 240, 360, 480, 600],
        1,
        true,
        |_| {},
    );
    assert!(!schedule::better(
        &one_move.scores,
        &one_round.scores,
        budget
    ));
}

/// The joint bar on a shipped scenario, from the three references' own
/// runs (the operator with `operator_params`): the least violation budget
/// and the greatest efficiency needed, with the references' scores.
fn joint_bar(name: &str, operator_params: &str) -> (Scenario, u64, f64, Vec<Scores>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/scenarios/{name}.toml"));
    let scenario = Scenario::load(&path).expect("the shipped scenario loads");
    let references: Vec<_> = ["seed", "msf-builtin", "flink-operator"]
        .iter()
        .map(|policy| {
            let params = if *policy == "flink-operator" {
                serde_json::from_str(operator_params).expect("a JSON object")
            } else {
                serde_json::Map::new()
            };
            let choice = PolicyChoice {
                name: (*policy).into(),
                params,
            };
            let loaded = configure(&scenario, &choice, None).expect("the preset loads");
            simulate(&scenario, &loaded).expect("runs").scores
        })
        .collect();
    let budget = references
        .iter()
        .map(|r| r.slo_violation_secs + BAR_EXTRA_VIOLATION_SECS)
        .min()
        .expect("three references");
    let needed = references
        .iter()
        .map(|r| BAR_EFFICIENCY_FACTOR * r.efficiency)
        .fold(0.0, f64::max);
    (scenario, budget, needed, references)
}

/// Replays `rescales` (seconds, KPU) on `scenario` and checks it meets the
/// joint bar: within the budget, at the needed efficiency, and "met" by
/// the bar's own verdict against every reference.
fn assert_meets(scenario: &Scenario, rescales: &[(u64, u32)], bar: (u64, f64, &[Scores])) {
    let (budget, needed, references) = bar;
    let rescales: Vec<_> = rescales
        .iter()
        .map(|&(at_secs, kpu)| Rescale { at_secs, kpu })
        .collect();
    let scores = schedule::replay(scenario, &rescales).expect("replays");
    assert!(
        scores.slo_violation_secs <= budget,
        "{} > {budget}",
        scores.slo_violation_secs
    );
    assert!(
        scores.efficiency >= needed,
        "{} < {needed}",
        scores.efficiency
    );
    for reference in references {
        assert_eq!(bar_verdict(&scores, reference), "met");
    }
}

/// The schedule that decides `sawtooth`'s row of the README's bound table
/// (found by `cycle_schedule`): the bar there is possible against operator
/// 1.16.0's default alignment, which `predictive` (0.566) misses.
#[test]
fn sawtooth_has_a_schedule_that_meets_the_joint_bar() {
    let (scenario, budget, needed, references) = joint_bar("sawtooth", "{}");
    assert_eq!(budget, 195, "seed's 165 s + 30");
    assert!((needed - 0.5992).abs() < 1e-4, "{needed}");
    assert_meets(
        &scenario,
        &[(640, 6), (12020, 3), (12930, 6)],
        (budget, needed, &references),
    );
}

/// `diurnal`'s row: the schedule found by `cycle_schedule --joint` from
/// `bar_bound --constrained`'s schedule met the joint bar against the
/// operator's `EVENLY_SPREAD` alignment of releases up to 1.15 (191 s,
/// 0.76485); against 1.16.0's `BALANCED` the efficiency needed is above
/// the bound the README gives within the same budget (0.7717), so the row
/// is ruled out.
#[test]
fn diurnal_met_the_joint_bar_only_against_the_earlier_alignment() {
    let legacy = r#"{"key_group_partitions_adjust_mode": "EVENLY_SPREAD"}"#;
    let (scenario, budget, needed, references) = joint_bar("diurnal", legacy);
    assert_meets(
        &scenario,
        &[(21869, 6), (32509, 12), (79136, 9)],
        (budget, needed, &references),
    );
    let (_, budget_now, needed_now, _) = joint_bar("diurnal", "{}");
    assert_eq!(budget_now, budget, "msf-builtin sets it either way");
    assert!(needed_now > 0.7717, "{needed_now}");
}
