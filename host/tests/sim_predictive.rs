//! `predictive` in the simulator, with the production controller and the
//! real compiled plugins: on a cycle it has seen for a day it scales out
//! before the rise reaches the capacity, where `rate` waits for it; on a
//! spike, which no cycle forecasts, it decides exactly as `rate`. With the
//! history the scenario publishes before t = 0 read at start, it does so
//! from the first day on.
//!
//! Needs the shipped plugins (built by host/build.rs).

use std::path::PathBuf;

use flinkscale::sim::Scenario;
use flinkscale::sim::bench::{ShippedScenarios, configure};
use flinkscale::sim::driver::{SimulationOutcome, simulate};
use flinkscale::sim::presets::PolicyChoice;

fn run(scenario: &Scenario, policy: &str) -> SimulationOutcome {
    let choice = PolicyChoice {
        name: policy.into(),
        params: serde_json::Map::new(),
    };
    let loaded = configure(scenario, &choice, None).expect("the preset loads");
    simulate(scenario, &loaded).expect("runs")
}

/// The first scale-out at or after `from_secs`: (second, old KPU).
fn first_scale_out(outcome: &SimulationOutcome, from_secs: u64) -> Option<(u64, u32)> {
    let history = outcome.world.history("app").expect("the app");
    history
        .updates
        .iter()
        .find(|u| u.t_secs >= from_secs && u.to_kpu > u.from_kpu)
        .map(|u| (u.t_secs, u.from_kpu))
}

/// The held-out two-day cycle (`diurnal2`): on the second day, with the
/// first one learned, the first scale-out comes while the job still keeps
/// up (no backlog, input below the capacity), the input then passes the
/// old capacity (the rise it was made for), and `rate` scales out only
/// later.
#[test]
fn on_a_learned_cycle_it_scales_out_ahead_of_the_rise() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/holdout/diurnal2.toml");
    let mut scenario = Scenario::load(&path).expect("the diurnal2 scenario");
    // Learned as it runs: no past read at start.
    scenario.applications[0].past = None;
    let predictive = run(&scenario, "predictive");
    let rate = run(&scenario, "rate");
    let day = 86_400;

    let (at, _) = first_scale_out(&predictive, day).expect("predictive scales out on day 2");
    let history = predictive.world.history("app").expect("the app");
    let before = (at - 1) as usize;
    assert!(
        history.backlog[before] < 1.0 && history.lambda[before] < history.capacity[before],
        "at {at} s the job kept up: input {} on capacity {}, backlog {}",
        history.lambda[before],
        history.capacity[before],
        history.backlog[before]
    );
    let old_capacity = history.capacity[before];
    let rise = history.lambda[at as usize..(at as usize + 3 * 3600).min(history.len())]
        .iter()
        .copied()
        .fold(0.0, f64::max);
    assert!(
        rise > old_capacity,
        "the input rose past the old capacity {old_capacity} within 3 h (to {rise})"
    );
    let (rate_at, _) = first_scale_out(&rate, day).expect("rate scales out on day 2");
    assert!(
        at < rate_at,
        "predictive scaled out at {at} s, before rate at {rate_at} s"
    );
}

/// A spike is nothing a cycle forecasts (and the scenario is shorter than
/// a day): every rescale is `rate`'s, at the same second.
#[test]
fn on_a_spike_it_falls_back_to_rate() {
    let shipped = ShippedScenarios::write().expect("the shipped scenarios");
    let scenario = Scenario::load(&shipped.dir().join("spike.toml")).expect("the spike scenario");
    let predictive = run(&scenario, "predictive");
    let rate = run(&scenario, "rate");
    let updates = |o: &SimulationOutcome| o.world.history("app").expect("the app").updates.clone();
    assert!(!updates(&rate).is_empty(), "a run with rescales to compare");
    assert_eq!(updates(&predictive), updates(&rate));
    assert_eq!(predictive.scores, rate.scores);
}

/// The first day of `diurnal2`, whose scenario publishes 8 days of the
/// cycle before t = 0: the preset reads them at the first evaluation, so
/// `predictive` forecasts the first rise instead of reacting to it, and
/// violates the lag objective fewer seconds than the same policy on the
/// same day with no past to read.
#[test]
fn with_history_it_scales_ahead_on_the_first_day() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/holdout/diurnal2.toml");
    let mut with = Scenario::load(&path).expect("the diurnal2 scenario");
    with.duration_secs = 86_400;
    assert!(
        with.applications[0].past.is_some(),
        "the scenario publishes a past"
    );
    let mut without = with.clone();
    without.applications[0].past = None;

    let learned = run(&with, "predictive");
    let reactive = run(&without, "predictive");
    let (at, _) = first_scale_out(&learned, 0).expect("predictive scales out on day 1");
    let history = learned.world.history("app").expect("the app");
    let before = at.saturating_sub(1) as usize;
    assert!(
        history.backlog[before] < 1.0 && history.lambda[before] < history.capacity[before],
        "at {at} s the job kept up: input {} on capacity {}, backlog {}",
        history.lambda[before],
        history.capacity[before],
        history.backlog[before]
    );
    let (with_v, without_v) = (
        learned.scores.slo_violation_secs,
        reactive.scores.slo_violation_secs,
    );
    assert!(
        with_v < without_v,
        "day 1: {with_v} violation seconds with history, {without_v} without"
    );
}
