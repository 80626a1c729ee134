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

use flinkscale::config::LoadedConfig;
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

/// The preset `policy` with its default parameters.
fn choice(policy: &str) -> PolicyChoice {
    PolicyChoice {
        name: policy.to_owned(),
        params: serde_json::Map::new(),
    }
}

/// Sets every metric's `min_publication_delay_secs` of `loaded`.
fn promise(loaded: &mut LoadedConfig, secs: Option<u32>) {
    for app in &mut loaded.config.applications {
        for metric in &mut app.metrics {
            metric.min_publication_delay_secs = secs;
        }
    }
}

fn run(scenario: &Scenario, policy: &str, lazy: bool) -> SimulationOutcome {
    let (_, outcome) = bench::run_one_polling(scenario, &choice(policy), None, lazy)
        .unwrap_or_else(|e| {
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

/// Lazy polling changes no decision when the evaluation interval is
/// shorter than the metric's period: `seed` with its CPU metric at 300 s
/// periods, evaluated every 60 s, on the shipped scenarios that rescale.
/// A period's datapoint lands a minute after it ends, so the evaluation at
/// its end sees it empty; a skip to the next period would miss the four
/// evaluations that see it land (and the scale-out they decide).
#[test]
fn lazy_polling_changes_no_decision_when_evaluations_outpace_the_period() {
    let mut rescaled = 0;
    for name in ["step", "spike", "flash-crowd", "sawtooth"] {
        let scenario = shipped(name);
        let mut loaded =
            bench::configure(&scenario, &choice("seed"), None).expect("seed configures");
        promise(&mut loaded, None);
        for app in &mut loaded.config.applications {
            app.evaluation_interval_secs = Some(60);
            for metric in &mut app.metrics {
                metric.period_secs = 300;
            }
        }
        let (eager, lazy) = eager_and_lazy(&scenario, &mut loaded);
        assert_eq!(
            rescales(&lazy),
            rescales(&eager),
            "seed on {name}, 300 s periods every 60 s: lazy polling changed the decisions"
        );
        assert!(
            lazy.calls.cloudwatch_metric_requests < eager.calls.cloudwatch_metric_requests,
            "seed on {name}: lazy polling saved nothing"
        );
        rescaled += rescales(&eager).len();
    }
    assert!(
        rescaled > 0,
        "no run rescaled: identical lists would be empty"
    );
}

/// `loaded` run on `scenario` with lazy polling off, then on.
fn eager_and_lazy(
    scenario: &Scenario,
    loaded: &mut LoadedConfig,
) -> (SimulationOutcome, SimulationOutcome) {
    let mut run = |lazy: bool| {
        flinkscale::sim::driver::set_lazy_polling(loaded, lazy);
        flinkscale::sim::driver::simulate(scenario, loaded).expect("the configuration runs")
    };
    (run(false), run(true))
}

fn failures(outcome: &SimulationOutcome, wanted: &str) -> Vec<String> {
    outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Failed { class, message, .. } if class == wanted => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn shipped(name: &str) -> Scenario {
    let shipped = ShippedScenarios::write().expect("the shipped scenarios");
    Scenario::load(&shipped.dir().join(format!("{name}.toml"))).expect("a shipped scenario loads")
}

/// The reference design's configuration: `seed` (whose metric promises
/// the model's 60 s publication delay) on `weekly` polls every 4 minutes
/// in steady state, about $0.11 of CloudWatch per application-month
/// lazily (10,800 polls of one metric in 30 days, and a few more around
/// its rescales: 3 minutes would be $0.144, 5 minutes $0.086), where the
/// reference design pays $0.20 for its two alarms; the promise is never
/// broken. Without the promise it polls every 3 minutes: the two newest
/// periods may still change (a datapoint is taken as final two minutes
/// after its period), and the newest may also still come, where with the
/// promise no evaluation of this period can see it: one unknown fewer.
#[test]
fn seed_polls_every_four_minutes_in_steady_state_and_three_without_the_promise() {
    let scenario = shipped("weekly");
    let (report, outcome) = bench::run_one_polling(&scenario, &choice("seed"), None, true)
        .expect("seed runs (build the plugins with `cargo plugins`)");
    let usd = report.api.cloudwatch_usd_per_app_month;
    assert!(
        (0.105..0.115).contains(&usd),
        "seed on weekly costs ${usd:.3} per app-month"
    );
    assert_eq!(
        failures(&outcome, "publication_delay"),
        Vec::<String>::new()
    );
    let mut loaded = bench::configure(&scenario, &choice("seed"), None).expect("seed configures");
    promise(&mut loaded, None);
    let unpromised = flinkscale::sim::driver::simulate(&scenario, &loaded).expect("seed runs");
    let unpromised_usd = unpromised
        .calls
        .usd_per_app_month(unpromised.scores.duration_secs, scenario.applications.len());
    assert!(
        (0.140..0.150).contains(&unpromised_usd),
        "without the promise ${unpromised_usd:.3}, with it ${usd:.3}"
    );
    assert_eq!(rescales(&unpromised), rescales(&outcome));
    eprintln!("seed on weekly: ${usd:.3} with the promise, ${unpromised_usd:.3} without");
}

/// A broken promise costs no decision: the model publishes at once (0 s)
/// while `seed`'s metric promises 60 s. The first datapoint seen sooner is
/// reported once as a `publication_delay` failure, the controller polls
/// without the promise from then on, and it rescales exactly as the eager
/// run does (same instants, sizes and reasons).
#[test]
fn a_broken_publication_promise_is_reported_and_loses_no_decision() {
    for name in ["step", "spike"] {
        let mut scenario = shipped(name);
        for app in &mut scenario.applications {
            app.params.metric_delay_secs = 0;
        }
        let mut loaded =
            bench::configure(&scenario, &choice("seed"), None).expect("seed configures");
        promise(&mut loaded, Some(60));
        flinkscale::sim::driver::set_lazy_polling(&mut loaded, true);
        let lazy = flinkscale::sim::driver::simulate(&scenario, &loaded).expect("seed runs");
        flinkscale::sim::driver::set_lazy_polling(&mut loaded, false);
        let eager = flinkscale::sim::driver::simulate(&scenario, &loaded).expect("seed runs");
        let broken = failures(&lazy, "publication_delay");
        assert_eq!(broken.len(), 1, "{name}: reported once: {broken:?}");
        assert!(
            broken[0].contains("\"cpu\"") && broken[0].contains("promises 60 s"),
            "{name}: names the metric and the promise: {}",
            broken[0]
        );
        assert!(
            !rescales(&eager).is_empty(),
            "{name}: the eager run rescales"
        );
        assert_eq!(
            rescales(&lazy),
            rescales(&eager),
            "{name}: a broken promise changed the decisions to rescale"
        );
        assert!(
            lazy.calls.cloudwatch_metric_requests < eager.calls.cloudwatch_metric_requests,
            "{name}: still lazy without the promise"
        );
    }
}

/// Fetching only the metrics a policy reads changes none of its decisions:
/// every shipped scenario, with each metric-driven preset and `hold`, run
/// with the seven standard metrics and with the preset's own (fewer), makes
/// the same decisions at the same instants for the same reasons (and sees
/// the same alarm states), and the preset's own set asks CloudWatch for
/// fewer metrics.
#[test]
fn fetching_only_the_metrics_a_policy_reads_changes_no_decision() {
    use flinkscale::sim::presets::{self, MetricSet};
    let shipped = ShippedScenarios::write().expect("the shipped scenarios");
    let files = bench::scenario_files(shipped.dir()).expect("the shipped scenarios");
    let mut rescaled = 0;
    for file in &files {
        let scenario = Scenario::load(file).expect("a shipped scenario loads");
        for policy in [
            "hold",
            "target-tracking",
            "rate",
            "predictive",
            "flink-operator",
        ] {
            let run = |set| {
                let loaded = presets::config_with(&scenario, &choice(policy), None, set)
                    .unwrap_or_else(|e| panic!("{policy} configures: {e}"));
                flinkscale::sim::driver::simulate(&scenario, &loaded)
                    .unwrap_or_else(|e| panic!("{policy} on {} runs: {e}", scenario.name))
            };
            let read = run(MetricSet::Read);
            let standard = run(MetricSet::Standard);
            let what = format!("{policy} on {}", scenario.name);
            assert_eq!(
                seen(&read),
                seen(&standard),
                "{what}: fewer metrics changed a decision"
            );
            assert!(
                read.calls.cloudwatch_metric_requests < standard.calls.cloudwatch_metric_requests,
                "{what}: fewer metrics saved nothing"
            );
            rescaled += rescales(&read).len();
        }
    }
    assert!(
        rescaled > 0,
        "no run rescaled: identical empty lists prove nothing"
    );
}

/// `seed`'s scale-out alarm, 1 of 1, on `FILL(cpu, 0)` of its CPU at 60 s
/// periods, evaluated every 30 s with the model publishing a period 30 s
/// after it ends: lazy polling changes no decision. `FILL` gives the
/// period not published yet a 0 that its datapoint replaces later, so a
/// value fetched there is not final, which the skip rule assumes: an
/// application whose metric math calls a function is evaluated every
/// interval. (Before, the evaluation early in a period took its filled 0
/// as final and skipped the one later in the period that saw the real
/// value; by the next period that value was no longer the newest, and the
/// alarm never fired.)
#[test]
fn lazy_polling_changes_no_decision_with_an_alarm_on_fill() {
    let mut rescaled = 0;
    for name in ["step", "spike", "flash-crowd"] {
        let mut scenario = shipped(name);
        for app in &mut scenario.applications {
            app.params.metric_delay_secs = 30;
        }
        let mut loaded =
            bench::configure(&scenario, &choice("seed"), None).expect("seed configures");
        promise(&mut loaded, None);
        for app in &mut loaded.config.applications {
            app.evaluation_interval_secs = Some(30);
            let mut filled = app.metrics[0].clone();
            filled.id = "filled".into();
            filled.namespace = None;
            filled.metric_name = None;
            filled.dimensions.clear();
            filled.statistic = None;
            filled.expression = Some(format!("FILL({}, 0)", app.metrics[0].id));
            app.metrics.push(filled);
            for alarm in &mut app.alarms {
                alarm.metric = Some("filled".into());
                alarm.evaluation_periods = Some(1);
                alarm.datapoints_to_alarm = Some(1);
                // A filled 0 would fire the scale-in alarm at every
                // evaluation: this one never fires.
                if alarm.comparison.is_some_and(|c| c.breaches(0.0, 20.0)) {
                    alarm.threshold = Some(-1.0);
                }
            }
        }
        let (eager, lazy) = eager_and_lazy(&scenario, &mut loaded);
        assert_eq!(
            rescales(&lazy),
            rescales(&eager),
            "seed on FILL on {name}: lazy polling changed the decisions"
        );
        assert_eq!(
            lazy.calls.cloudwatch_metric_requests, eager.calls.cloudwatch_metric_requests,
            "nothing is skipped on metric math with a function"
        );
        rescaled += rescales(&eager).len();
    }
    assert!(
        rescaled > 0,
        "no run rescaled: identical lists would be empty"
    );
}

/// A `step.wasm` in the plugin folder stands in for the built-in `step`,
/// and may read anything (the metrics, the time): the host cannot know
/// that it decides on alarm states alone, so lazy polling skips none of
/// its evaluations, where the built-in's are skipped. The file here is
/// `step` rebuilt (its bytes and a custom section, as a rebuild with
/// other tools differs: the same code, another sha256), so the decisions
/// are `seed`'s either way. A file of exactly the built-in's bytes is the
/// same code, and is skipped as the built-in is.
#[test]
fn a_file_standing_in_for_step_is_evaluated_every_interval() {
    let scenario = shipped("spike");
    let step = flinkscale::plugin::builtin::find("step").expect("step is built in");
    let rebuilt = tempfile::tempdir().expect("a temporary folder");
    let mut bytes = step.bytes.to_vec();
    // A custom section (id 0): name "flinkscale-test", one byte of data.
    let name = b"flinkscale-test";
    bytes.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.push(b'x');
    std::fs::write(rebuilt.path().join("step.wasm"), &bytes).expect("step.wasm written");
    let same = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(same.path().join("step.wasm"), step.bytes).expect("step.wasm written");
    let mut calls = Vec::new();
    for plugin_dir in [None, Some(rebuilt.path()), Some(same.path())] {
        for lazy in [false, true] {
            let (_, outcome) = bench::run_one_polling(&scenario, &choice("seed"), plugin_dir, lazy)
                .expect("seed runs");
            calls.push((rescales(&outcome), outcome.calls.cloudwatch_metric_requests));
        }
    }
    let [
        built_in_eager,
        built_in_lazy,
        file_eager,
        file_lazy,
        same_eager,
        same_lazy,
    ] = &calls[..]
    else {
        unreachable!("six runs");
    };
    assert!(
        built_in_lazy.1 < built_in_eager.1,
        "the built-in skips: {calls:?}"
    );
    assert_eq!(
        file_lazy.1, file_eager.1,
        "the rebuilt file skips nothing: {calls:?}"
    );
    assert_eq!(
        same_lazy.1, built_in_lazy.1,
        "the same bytes skip: {calls:?}"
    );
    assert_eq!(same_eager.1, built_in_eager.1);
    for run in &calls {
        assert_eq!(run.0, built_in_eager.0, "the same decisions: {calls:?}");
    }
}
