//! Lazy polling changes no decision: every shipped scenario, run with the
//! reference design's policy (`seed`) and MSF's own rule (`msf-builtin`)
//! through the production controller and the real `step` plugin in
//! wasmtime, once with lazy polling on and once off, scales at the same
//! instants, from and to the same KPU, for the same reasons, and every
//! evaluation the lazy run made saw the same alarm states (and their
//! `since`) as the evaluation of the eager run at the same instant. The
//! lazy run must also have asked CloudWatch for fewer metrics, or the test
//! would prove nothing.
//!
//! Needs the shipped plugins (`cargo plugins`).

use std::collections::BTreeMap;

use flinkscale::model::{Action, AlarmStatus, Decision};
use flinkscale::sim::Scenario;
use flinkscale::sim::bench::{self, ShippedScenarios};
use flinkscale::sim::driver::SimulationOutcome;
use flinkscale::sim::presets::PolicyChoice;
use flinkscale::telemetry::Event;

/// A decision to rescale: (application, when, from KPU, to KPU, reason).
type Rescale = (String, i64, u32, u32, String);

/// One evaluation, by (application, when): the alarm states it saw and its
/// decision's action and reason.
type Seen = BTreeMap<(String, i64), (Vec<AlarmStatus>, Action, String)>;

fn run(scenario: &Scenario, policy: &str, lazy: bool) -> SimulationOutcome {
    let choice = PolicyChoice {
        name: policy.to_owned(),
        params: serde_json::Map::new(),
    };
    let (_, outcome) = bench::run_one_polling(scenario, &choice, None, lazy).unwrap_or_else(|e| {
        panic!(
            "{policy} on {} runs (build the plugins with `cargo plugins`): {e}",
            scenario.name
        )
    });
    outcome
}

fn rescales(outcome: &SimulationOutcome) -> Vec<Rescale> {
    outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated {
                application,
                at_ms,
                kpu,
                decision:
                    Decision {
                        action: Action::ScaleTo(to),
                        reason,
                        ..
                    },
                ..
            } => Some((application.clone(), *at_ms, *kpu, *to, reason.clone())),
            _ => None,
        })
        .collect()
}

fn seen(outcome: &SimulationOutcome) -> Seen {
    outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated {
                application,
                at_ms,
                alarms,
                decision,
                ..
            } => Some((
                (application.clone(), *at_ms),
                (alarms.clone(), decision.action, decision.reason.clone()),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn lazy_polling_changes_no_decision_of_the_alarm_driven_presets() {
    let shipped = ShippedScenarios::write().expect("the shipped scenarios");
    let files = bench::scenario_files(shipped.dir()).expect("the shipped scenarios");
    assert!(files.len() >= 7, "every shipped scenario: {files:?}");
    let mut report = Vec::new();
    for file in &files {
        let scenario = Scenario::load(file).expect("a shipped scenario loads");
        for policy in ["seed", "msf-builtin"] {
            let eager = run(&scenario, policy, false);
            let lazy = run(&scenario, policy, true);
            let what = format!("{policy} on {}", scenario.name);
            assert_eq!(
                rescales(&lazy),
                rescales(&eager),
                "{what}: lazy polling changed the decisions to rescale"
            );
            assert_eq!(
                lazy.world.applications()[0].history().updates,
                eager.world.applications()[0].history().updates,
                "{what}: lazy polling changed the updates"
            );
            let eager_seen = seen(&eager);
            for (at, lazy_view) in seen(&lazy) {
                let eager_view = eager_seen.get(&at).unwrap_or_else(|| {
                    panic!("{what}: the lazy run evaluated at {at:?}, where the eager one did not")
                });
                assert_eq!(
                    &lazy_view, eager_view,
                    "{what}: the evaluation at {at:?} saw other alarm states or decided otherwise"
                );
            }
            assert_eq!(
                lazy.scores.slo_violation_secs,
                eager.scores.slo_violation_secs
            );
            assert_eq!(lazy.scores.kpu_hours, eager.scores.kpu_hours);
            assert!(
                lazy.calls.cloudwatch_metric_requests < eager.calls.cloudwatch_metric_requests,
                "{what}: lazy polling saved nothing ({:?} vs {:?})",
                lazy.calls,
                eager.calls
            );
            report.push(format!(
                "{what}: {} rescales, metrics requested {} lazy vs {} eager",
                rescales(&lazy).len(),
                lazy.calls.cloudwatch_metric_requests,
                eager.calls.cloudwatch_metric_requests
            ));
        }
    }
    // Some scenario must rescale, or identical lists would be empty ones.
    assert!(
        report.iter().any(|l| !l.contains(": 0 rescales")),
        "no run rescaled: {report:#?}"
    );
    eprintln!("{}", report.join("\n"));
}
