//! `simulate`'s progress reports: about 200 of them, in order, ending at the
//! scenario's length, and a run that reports progress is the same run, to
//! the record, as one that does not.
//!
//! Needs the shipped plugins (`cargo plugins`).

use flinkscale::sim::Scenario;
use flinkscale::sim::bench::{ShippedScenarios, configure};
use flinkscale::sim::driver::{simulate, simulate_with_progress};
use flinkscale::sim::presets::PolicyChoice;

#[test]
fn progress_is_reported_in_order_and_changes_nothing() {
    let shipped = ShippedScenarios::write().expect("the shipped scenarios");
    let scenario = Scenario::load(&shipped.dir().join("step.toml")).expect("the step scenario");
    let choice = PolicyChoice {
        name: "rate".into(),
        params: serde_json::Map::new(),
    };
    let loaded = configure(&scenario, &choice, None)
        .expect("the rate preset (build the plugins with `cargo plugins`)");
    let quiet = simulate(&scenario, &loaded).expect("runs");
    let mut reports = Vec::new();
    let watched = simulate_with_progress(
        &scenario,
        &loaded,
        Some(&mut |done, total| reports.push((done, total))),
    )
    .expect("runs");
    assert_eq!(watched.scores, quiet.scores);
    assert_eq!(
        watched.world.history("app").map(|h| h.kpu.clone()).ok(),
        quiet.world.history("app").map(|h| h.kpu.clone()).ok()
    );
    assert!(quiet.scores.rescales > 0, "a run with something to compare");
    let total = scenario.duration_secs;
    assert_eq!(reports.len(), 200, "7200 s in 36 s stretches");
    assert!(reports.iter().all(|&(_, t)| t == total));
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    assert_eq!(reports.last(), Some(&(total, total)));
}
