//! `simulate` with interpreter plugins: the shipped example
//! `config/msk-backlog-seconds.toml` (backlog-seconds and expression
//! interpreters, alarms on the `seconds_behind` signal, the step policy),
//! renamed to the `step` scenario's application, scales the application out
//! when the load quadruples, and the decision names the signal's alarm.
//!
//! The plugins are the built-ins.

use std::path::Path;

use flinkscale::config::load_str;
use flinkscale::model::Action;
use flinkscale::sim::Scenario;
use flinkscale::sim::driver::simulate;
use flinkscale::telemetry::Event;

#[test]
fn the_backlog_seconds_example_scales_out_in_simulate() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenario =
        Scenario::load(&repo.join("tests/scenarios/step.toml")).expect("the step scenario");
    let example = repo.join("config/msk-backlog-seconds.toml");
    // The scenario's application is `app`, its MSK source names derive
    // from that (`app-cluster`, `app-group`, `app-topic`).
    let text = std::fs::read_to_string(&example)
        .expect("the example")
        // A debug build on a busy 2-core host may need more than the
        // default 100 ms for a first call; the deadline is not under test.
        .replace("[agent]\n", "[agent]\nplugin_timeout_ms = 5000\n")
        .replace("\"orders-cluster\"", "\"app-cluster\"")
        .replace(
            "\"Consumer Group\" = \"orders-aggregator\"",
            "\"Consumer Group\" = \"app-group\"",
        )
        .replace("\"orders\" }", "\"app-topic\" }")
        .replace("orders-aggregator", "app");
    assert!(!text.contains("orders"), "every name replaced: {text}");
    let loaded = load_str(&text, &example).unwrap_or_else(|e| panic!("{e}"));
    let outcome = simulate(&scenario, &loaded).expect("the simulation runs");

    let scale_outs: Vec<(u32, u32, String)> = outcome
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Evaluated { kpu, decision, .. } => match decision.action {
                Action::ScaleTo(to) if to > *kpu => Some((*kpu, to, decision.reason.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let (from, to, reason) = scale_outs
        .first()
        .unwrap_or_else(|| panic!("no scale-out; scores: {:?}", outcome.scores));
    assert_eq!((*from, *to), (2, 4), "step adds 2 KPU: {reason}");
    assert!(
        reason.contains("`behind`") && reason.contains("ALARM"),
        "the scale-out comes from the alarm on seconds_behind: {reason}"
    );
    assert!(outcome.scores.rescales > 0, "{:?}", outcome.scores);
    // 4000 records/s need 5 subtasks: the agent adds capacity until the
    // backlog stops growing (later `caught-up` may take one back).
    let highest = scale_outs.iter().map(|(_, to, _)| *to).max().unwrap_or(0);
    assert!(highest >= 5, "{scale_outs:?}");
}
