//! Policies in other languages make the same decisions as the Rust `step`.
//!
//! `plugins/python/step.py` (componentize-py) and `plugins/js/step.js`
//! (jco with its QuickJS engine) reimplement the Rust `step` policy. This test runs the
//! real `flinkscale simulate --config ... --decisions` with the Rust
//! component and with each of the two, under the same configuration, and
//! requires the three lists of evaluations (time, KPU, decision, reason) to
//! be identical, line for line.
//!
//! A component is compiled once per test run: the tests' plugin host and
//! every `simulate` process share one compiled-component cache
//! (`common::polyglot_plugin_cache`). Still, in a debug build of the host
//! a Python component's compile takes 20-40 s and each simulated run
//! seconds, so the seven shipped scenarios with all three policies would
//! take minutes on two cores. The test instead runs the one scenario whose load both rises and
//! falls within two hours, `flash-crowd`, under three configurations chosen
//! so that together they take every decision path of `step`:
//! - the `seed` preset (the reference design's alarms, `multiply` by 2,
//!   the scenario's bounds [1, 32]): scale-out, scale-in (divide), hold at
//!   max, hold with no alarm in ALARM;
//! - the same with the bounds narrowed to [12, 32]: a target clamped to
//!   max, one clamped to min, hold at min;
//! - `add` (out +3, in -1) within [2, 12]: add and subtract steps, a target
//!   clamped to max, hold at max.
//!
//! The test checks that the Rust decisions do include each of these paths,
//! so that "identical" is never vacuous. Both alarms in ALARM at once cannot
//! happen with these alarms on one metric; that branch, every other one and
//! every configuration error are compared by the second test, which calls
//! the three components in the plugin host over a grid of evaluations.
//! A third test requires the three to declare, through contract 0.2.0's
//! `metadata`, the same parameters: names, kinds, required flags and
//! defaults.
//!
//! The components are built by `plugins/python/build.sh` and
//! `plugins/js/build.sh` (scripts/test.sh runs both before the cargo tests);
//! a missing one fails the test with the command to build it. The compile
//! time and size of each component are printed (`--nocapture`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{
    POLYGLOT_COMPILE_TIMEOUT_SECS, polyglot_host, polyglot_plugin_cache, target_dir, workspace,
};
use flinkscale::model::{AlarmState, AlarmStatus, Application, Decision, Evaluation};
use flinkscale::plugin::{ParameterKind, PluginError, PluginHost, SandboxLimits};
use flinkscale::sim::Scenario;
use flinkscale::sim::presets::{self, PolicyChoice};
use flinkscale::target::AppStatus;

const STEP_PARAMS: &str = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in"}"#;

/// One host for both tests, as in the agent: each component is compiled
/// once and shared by every instance, and with the `simulate` runs
/// (through `polyglot_plugin_cache`).
fn host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> = LazyLock::new(polyglot_host);
    &HOST
}

/// One of the three implementations of `step`.
struct Implementation {
    label: &'static str,
    wasm: PathBuf,
}

/// The three components; fails (never skips) when one is missing.
fn implementations() -> Vec<Implementation> {
    let candidates = [
        (
            "rust",
            // The built-in step, as host/build.rs built it.
            PathBuf::from(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR")).join("step.wasm"),
            "cargo build -p flinkscale",
        ),
        (
            "python",
            target_dir().join("polyglot/step-py.wasm"),
            "plugins/python/build.sh",
        ),
        (
            "javascript",
            target_dir().join("polyglot/step-js.wasm"),
            "plugins/js/build.sh",
        ),
    ];
    candidates
        .into_iter()
        .map(|(label, wasm, build)| {
            assert!(
                wasm.is_file(),
                "{} is missing: run `{build}` from the workspace root to build the {label} \
                 step policy before this test (scripts/test.sh does)",
                wasm.display()
            );
            Implementation { label, wasm }
        })
        .collect()
}

/// A configuration of the step policy for one simulated run.
struct Variant {
    name: &'static str,
    /// Parameters over the `seed` preset's.
    params: serde_json::Value,
    /// KPU bounds replacing the scenario's, if any.
    bounds: Option<(u32, u32)>,
}

/// The scenario every variant runs; see the module's documentation.
const SCENARIO: &str = "flash-crowd";

fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "seed",
            params: serde_json::json!({}),
            bounds: None,
        },
        // Both start at 2 KPU, below their min: the host brings them to
        // min at the first evaluation (the bounds hold what runs). From 12
        // the flash crowd's quiet start and tail find the policy at min;
        // from 10, doubling passes max (10, 20, 40 -> 32) and halving
        // passes min (32, 16, 8 -> 10).
        Variant {
            name: "seed within [12, 32]",
            params: serde_json::json!({}),
            bounds: Some((12, 32)),
        },
        Variant {
            name: "seed within [10, 32]",
            params: serde_json::json!({}),
            bounds: Some((10, 32)),
        },
        Variant {
            name: "add +3/-1 within [2, 12]",
            params: serde_json::json!({
                "operation": "add",
                "scale_out_factor": 3,
                "scale_in_factor": 1,
            }),
            bounds: Some((2, 12)),
        },
    ]
}

/// Held by each test while it compiles components: on two cores, two
/// compiles of a 12-18 MB component at once (plus the simulated runs) can
/// pass the host's 60 s compile deadline in a debug build.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the other test can still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The agent configuration of `variant` on `scenario`, with `wasm` as the
/// policy: the `seed` preset's own text, so that all three run exactly the
/// configuration the Rust `step` is simulated with.
fn config_text(scenario: &Scenario, variant: &Variant, wasm: &Path) -> String {
    let serde_json::Value::Object(params) = variant.params.clone() else {
        unreachable!("variant parameters are written as objects above");
    };
    let choice = PolicyChoice {
        name: "seed".to_owned(),
        params,
    };
    let text = presets::config_text(scenario, &choice, Some(wasm.parent().expect("a folder")));
    let mut doc: toml_edit::DocumentMut = text.parse().expect("the preset is valid TOML");
    // The compile deadline is not under test (see common).
    doc["agent"]["plugin_compile_timeout_secs"] =
        toml_edit::value(POLYGLOT_COMPILE_TIMEOUT_SECS as i64);
    let apps = doc["application"]
        .as_array_of_tables_mut()
        .expect("the preset has [[application]] tables");
    for app in apps.iter_mut() {
        app["policy"]["plugin"] = toml_edit::value(wasm.to_string_lossy().as_ref());
        if let Some((min, max)) = variant.bounds {
            app["min_kpu"] = toml_edit::value(i64::from(min));
            app["max_kpu"] = toml_edit::value(i64::from(max));
        }
    }
    doc.to_string()
}

/// The evaluations `simulate --decisions` printed, one line each (time,
/// KPU, decision, reason), and how long the run took.
fn simulate(scenario: &Path, config: &Path) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .arg("simulate")
        .arg("--scenario")
        .arg(scenario)
        .arg("--config")
        .arg(config)
        .arg("--decisions")
        // Every evaluation, to compare the three decision by decision:
        // lazy polling skips the holds of the built-in `step`'s code,
        // which the Rust file is (the same bytes), and not the ports',
        // which for all the host knows may read anything.
        .arg("--lazy-polling")
        .arg("off")
        .arg("--plugin-cache")
        .arg(polyglot_plugin_cache())
        .output()
        .expect("flinkscale runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate --config {} failed: {}\n{}{}",
        config.display(),
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let evaluations: Vec<String> = stdout
        .lines()
        .skip_while(|line| *line != "evaluations")
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !evaluations.is_empty(),
        "simulate --config {} printed no evaluations:\n{stdout}",
        config.display()
    );
    (evaluations, elapsed)
}

/// The first line where two decision lists differ, for the failure message.
fn first_difference(expected: &[String], found: &[String]) -> String {
    for (index, (a, b)) in expected.iter().zip(found).enumerate() {
        if a != b {
            return format!("evaluation {index}:\n  rust: {a}\n  port: {b}");
        }
    }
    format!(
        "rust made {} evaluations, the port {}",
        expected.len(),
        found.len()
    )
}

#[test]
fn python_and_javascript_step_decide_exactly_as_the_rust_step() {
    let implementations = implementations();
    let _compiling = one_at_a_time();
    let work = tempfile::tempdir().expect("a temporary folder");
    let scenario_path = workspace().join(format!("tests/scenarios/{SCENARIO}.toml"));
    let scenario = Scenario::load(&scenario_path).expect("a shipped scenario loads");
    let mut rust_lines: Vec<String> = Vec::new();
    for (index, variant) in variants().iter().enumerate() {
        // One run at a time: each is a process that mostly compiles its
        // component (see ONE_AT_A_TIME).
        let results: Vec<(Vec<String>, Duration)> = implementations
            .iter()
            .map(|implementation| {
                let config = work
                    .path()
                    .join(format!("{index}-{}.toml", implementation.label));
                std::fs::write(
                    &config,
                    config_text(&scenario, variant, &implementation.wasm),
                )
                .expect("the configuration is written");
                simulate(&scenario_path, &config)
            })
            .collect();
        let (expected, _) = &results[0];
        for (implementation, (found, elapsed)) in implementations.iter().zip(&results) {
            println!(
                "{SCENARIO} {:<26} {:<10} {:>4} evaluations, run in {:>5.1} s (its load from the shared cache included)",
                variant.name,
                implementation.label,
                found.len(),
                elapsed.as_secs_f64()
            );
            assert!(
                found == expected,
                "scenario {SCENARIO}, configuration {}: the {} step decided differently from \
                 the Rust step at {}",
                variant.name,
                implementation.label,
                first_difference(expected, found)
            );
        }
        rust_lines.extend(expected.iter().cloned());
    }

    // "Identical" must cover every path of the policy, not only holds.
    let count = |needle: &str| rust_lines.iter().filter(|l| l.contains(needle)).count();
    for (path, needle) in [
        ("a scale-out", "`scale-out` is in ALARM: "),
        ("a scale-in", "`scale-in` is in ALARM: "),
        ("a multiply step", " KPU x 2 = "),
        ("a divide step", " KPU / 2 = "),
        ("an add step", " KPU + 3 = "),
        ("a subtract step", " KPU - 1 = "),
        ("a target clamped to max", "clamped to max KPU"),
        ("a target clamped to min", "clamped to min KPU"),
        ("a hold at max", "already at max KPU"),
        ("a hold at min", "already at min KPU"),
        ("a hold with no alarm", "no alarm in ALARM"),
    ] {
        assert!(
            count(needle) > 0,
            "no evaluation took {path} (`{needle}`): the comparison does not cover it"
        );
    }
}

/// What a policy answered, with the plugin's own name taken out of errors
/// so that the three implementations' texts can be compared.
fn outcome(result: Result<Decision, PluginError>) -> Result<Decision, String> {
    result.map_err(|error| match error {
        PluginError::Configure { message, .. } => format!("configure: {message}"),
        PluginError::Call {
            function,
            class,
            detail,
            ..
        } => format!("{function}: {class}: {detail}"),
        other => panic!("the policy did not load: {other}"),
    })
}

/// An evaluation of the application `orders` with the alarms `out` and `in`
/// (either may be left out).
fn evaluation(
    kpu: u32,
    (min_kpu, max_kpu): (u32, u32),
    out: Option<AlarmState>,
    r#in: Option<AlarmState>,
) -> Evaluation {
    let now_ms = 1_764_000_000_000;
    let alarm = |name: &str, state: Option<AlarmState>| {
        state.map(|state| AlarmStatus {
            name: name.to_owned(),
            state,
            since_ms: now_ms - 300_000,
        })
    };
    Evaluation {
        now_ms,
        app: Application {
            name: "orders".to_owned(),
            status: AppStatus::Running,
            kpu,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            min_kpu,
            max_kpu,
            version_id: 7,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        },
        metrics: Vec::new(),
        alarms: [alarm("out", out), alarm("in", r#in)]
            .into_iter()
            .flatten()
            .collect(),
        signals: Vec::new(),
    }
}

/// Every branch of `step`, through the real components in the plugin host:
/// both operations, factors that clamp, bounds that are reached, crossed,
/// zero or inverted, KPU near `u32::MAX` (saturation), every pair of alarm
/// states (both in ALARM included, which no simulated scenario reaches),
/// a missing alarm, and every configuration error. The Python and
/// JavaScript answers, decisions and error texts, must be the Rust one's.
#[test]
fn every_branch_and_error_of_step_is_the_same_in_python_and_javascript() {
    let implementations = implementations();
    let _compiling = one_at_a_time();
    // Each component loads as the agent loads it (compile, instantiate,
    // `configure`) and names itself; later loads reuse the compiled code.
    for implementation in &implementations {
        let size = std::fs::metadata(&implementation.wasm)
            .expect("the component is readable")
            .len();
        let started = Instant::now();
        let policy = host()
            .load_policy(&implementation.wasm, STEP_PARAMS, "orders")
            .unwrap_or_else(|error| panic!("the {} step loads: {error}", implementation.label));
        println!(
            "{:<10} {}: {:.1} MB, compiled and configured in {:.2} s ({} host), runs as {}",
            implementation.label,
            implementation.wasm.display(),
            size as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            policy.label()
        );
    }
    let params = [
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in"}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add",
            "scale_out_factor": 3, "scale_in_factor": 1}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add",
            "scale_out_factor": 5, "scale_in_factor": 5}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "multiply",
            "scale_out_factor": 3, "scale_in_factor": 4}"#,
    ];
    let bounds = [(1, 8), (0, 8), (3, 8), (5, 2), (1, u32::MAX)];
    let kpus = [0, 1, 2, 3, 4, 5, 7, 8, 10, 16, u32::MAX - 1, u32::MAX];
    let states = [
        Some(AlarmState::Ok),
        Some(AlarmState::Alarm),
        Some(AlarmState::InsufficientData),
        None,
    ];
    let mut evaluations = Vec::new();
    for bound in bounds {
        for kpu in kpus {
            for out in states {
                for r#in in states {
                    evaluations.push(evaluation(kpu, bound, out, r#in));
                }
            }
        }
    }
    let mut compared = 0;
    let mut rust_answers = Vec::new();
    for json in params {
        let mut answers: Vec<Vec<Result<Decision, String>>> = Vec::new();
        for implementation in &implementations {
            let mut policy = host()
                .load_policy(&implementation.wasm, json, "orders")
                .unwrap_or_else(|error| panic!("the {} step loads: {error}", implementation.label));
            answers.push(
                evaluations
                    .iter()
                    .map(|evaluation| outcome(policy.decide(evaluation)))
                    .collect(),
            );
        }
        for (implementation, found) in implementations.iter().zip(&answers).skip(1) {
            for ((evaluation, expected), found) in evaluations.iter().zip(&answers[0]).zip(found) {
                assert_eq!(
                    found,
                    expected,
                    "the {} step differs from the Rust step with params {json} on KPU {} in \
                     [{}, {}], alarms {:?}",
                    implementation.label,
                    evaluation.app.kpu,
                    evaluation.app.min_kpu,
                    evaluation.app.max_kpu,
                    evaluation.alarms
                );
                compared += 1;
            }
        }
        rust_answers.extend(answers.swap_remove(0));
    }
    // The grid must reach every branch for "the same" to mean anything.
    for needle in [
        "scale-out wins",
        "clamped to max KPU",
        "clamped to min KPU",
        "already at max KPU",
        "already at min KPU",
        " KPU x ",
        " KPU / ",
        " KPU + ",
        " KPU - ",
        "no alarm in ALARM",
        "no alarm `in` is configured",
        "no alarm `out` is configured",
        &format!("= {} KPU", u32::MAX),
    ] {
        assert!(
            rust_answers.iter().any(|answer| match answer {
                Ok(decision) => decision.reason.contains(needle),
                Err(error) => error.contains(needle),
            }),
            "no Rust answer contains `{needle}`: the grid misses that branch"
        );
    }

    // A whole number written with a fraction part (TOML's `5.0` is a
    // float): an integer for the host's check of declared kinds, as for
    // the SDK's getters, and the same answer from all three.
    let written_as_float = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in",
        "operation": "add", "scale_out_factor": 5.0}"#;
    let outcomes: Vec<Result<(), String>> = implementations
        .iter()
        .map(|implementation| {
            host()
                .load_policy(&implementation.wasm, written_as_float, "orders")
                .map(|_| ())
                .map_err(|error| outcome(Err(error)).unwrap_err())
        })
        .collect();
    assert_eq!(
        outcomes[0],
        Ok(()),
        "5.0 is a whole number: the Rust step accepts it"
    );
    for (implementation, found) in implementations.iter().zip(&outcomes).skip(1) {
        assert_eq!(
            found, &outcomes[0],
            "the {} step answers {written_as_float} differently from the Rust step",
            implementation.label
        );
    }

    // Refused parameters: the same error, word for word.
    let refused = [
        r#"{}"#,
        r#"{"scale_out_alarm": "out"}"#,
        r#"{"scale_out_alarm": "", "scale_in_alarm": "in"}"#,
        r#"{"scale_out_alarm": "x", "scale_in_alarm": "x"}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factr": 3}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "colour": 1, "shape": 2}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "Multiply/Divide"}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": 2}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_in_factor": 1}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add", "scale_out_factor": 0}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factor": 1.5}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factor": -1}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factor": 4294967296}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factor": "2"}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": true}"#,
        r#"{"scale_out_alarm": ["out"], "scale_in_alarm": "in"}"#,
        // Two mistakes: every value's type is checked, in declared order,
        // before how the values go together.
        r#"{"scale_out_alarm": "", "scale_in_alarm": "in", "operation": "x"}"#,
        r#"{"scale_out_alarm": "x", "scale_in_alarm": "x", "scale_in_factor": 1.5}"#,
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add",
            "scale_out_factor": 0, "scale_in_factor": "1"}"#,
        r#"[1]"#,
    ];
    for json in refused {
        let errors: Vec<String> = implementations
            .iter()
            .map(
                |implementation| match host().load_policy(&implementation.wasm, json, "orders") {
                    Ok(_) => panic!("the {} step accepted {json}", implementation.label),
                    Err(error) => outcome(Err(error)).unwrap_err(),
                },
            )
            .collect();
        for (implementation, error) in implementations.iter().zip(&errors).skip(1) {
            assert_eq!(
                error, &errors[0],
                "the {} step refuses {json} differently from the Rust step",
                implementation.label
            );
        }
    }
    println!(
        "{compared} decisions and {} refusals identical",
        refused.len() * 2
    );
}

/// A declared parameter as the three implementations must agree on it:
/// name, kind, whether required, and the default as a JSON value (so that
/// `2` and `2 ` are the same default). The meaning is prose, each
/// language's own.
type Declared = (String, ParameterKind, bool, Option<serde_json::Value>);

/// The Python and JavaScript steps declare, through contract 0.2.0's
/// `metadata`, the parameters the Rust `step` declares: the same keys in
/// the same order, kinds, required flags and defaults, and a summary.
#[test]
fn python_and_javascript_step_declare_the_parameters_of_the_rust_step() {
    let implementations = implementations();
    let _compiling = one_at_a_time();
    let mut declared: Vec<Vec<Declared>> = Vec::new();
    for implementation in &implementations {
        let policy = host()
            .load_policy(&implementation.wasm, STEP_PARAMS, "orders")
            .unwrap_or_else(|error| panic!("the {} step loads: {error}", implementation.label));
        let metadata = policy.metadata();
        assert_eq!(
            metadata.contract_version, "0.2.0",
            "the {} step is built against contract {}, not 0.2.0",
            implementation.label, metadata.contract_version
        );
        assert!(
            !metadata.summary.trim().is_empty(),
            "the {} step declares no summary",
            implementation.label
        );
        let parameters = metadata
            .parameters
            .unwrap_or_else(|| panic!("the {} step declares no parameters", implementation.label));
        for parameter in &parameters {
            assert!(
                !parameter.meaning.trim().is_empty(),
                "the {} step does not say what `{}` means",
                implementation.label,
                parameter.name
            );
        }
        declared.push(
            parameters
                .into_iter()
                .map(|parameter| {
                    let default = parameter.default_json.map(|json| {
                        serde_json::from_str(&json).unwrap_or_else(|error| {
                            panic!(
                                "the {} step's default for `{}` is not JSON ({error}): {json}",
                                implementation.label, parameter.name
                            )
                        })
                    });
                    (parameter.name, parameter.kind, parameter.required, default)
                })
                .collect(),
        );
    }
    // The Rust declarations must be the real ones, or "the same" says nothing.
    let names: Vec<&str> = declared[0].iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "scale_out_alarm",
            "scale_in_alarm",
            "operation",
            "scale_out_factor",
            "scale_in_factor"
        ],
        "the Rust step declares other parameters than this test knows"
    );
    for (implementation, found) in implementations.iter().zip(&declared).skip(1) {
        assert_eq!(
            found, &declared[0],
            "the {} step declares its parameters differently from the Rust step",
            implementation.label
        );
    }
}

/// A typical evaluation: 3 metrics x 20 datapoints, 2 alarms, the scale-out
/// one in ALARM (so the policy computes a step, not only a hold).
fn typical_evaluation() -> Evaluation {
    let mut evaluation = evaluation(4, (1, 32), Some(AlarmState::Alarm), Some(AlarmState::Ok));
    evaluation.metrics = ["cpu", "busy", "records_in"]
        .into_iter()
        .map(|id| flinkscale::metrics::Series {
            query: flinkscale::metrics::MetricQuery {
                id: id.to_owned(),
                namespace: "AWS/KinesisAnalytics".to_owned(),
                metric_name: id.to_owned(),
                dimensions: [("Application".to_owned(), "orders".to_owned())].into(),
                statistic: "Average".to_owned(),
                period_secs: 60,
                expression: None,
            },
            points: (0..20)
                .map(|i| flinkscale::metrics::Datapoint {
                    timestamp_ms: evaluation.now_ms - (20 - i) * 60_000,
                    value: 50.0 + f64::from(i as u32),
                })
                .collect(),
        })
        .collect();
    evaluation
}

/// Compile time, fresh instance and warm `decide` of each language's step.
#[test]
#[ignore = "a measurement, not a check: cargo test --release --test polyglot -- --ignored --nocapture"]
fn measure_polyglot_step() {
    let params = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in"}"#;
    let typical = typical_evaluation();
    for implementation in implementations() {
        let size = std::fs::metadata(&implementation.wasm)
            .expect("readable")
            .len();
        // A host of its own, so that the first load really compiles.
        let host = PluginHost::new(SandboxLimits::default()).expect("the engine starts");
        let started = Instant::now();
        let mut warm = host
            .load_policy(&implementation.wasm, params, "orders")
            .expect("loads");
        let compile = started.elapsed();

        // A fresh instance from the compiled component (what a failed
        // plugin or a new application costs): instantiate, configure,
        // first decide.
        let mut fresh = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let mut policy = host
                .load_policy(&implementation.wasm, params, "orders")
                .expect("loads");
            policy.decide(&typical).expect("decides");
            fresh.push(started.elapsed());
        }
        fresh.sort();

        let mut calls = Vec::new();
        for _ in 0..2_000 {
            let started = Instant::now();
            let decision = warm.decide(&typical).expect("decides");
            calls.push(started.elapsed());
            assert_eq!(decision.action, flinkscale::model::Action::ScaleTo(8));
        }
        calls.sort();
        let at = |sorted: &[Duration], q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
        println!(
            "{:<10} size {:.1} MB; compile + instantiate + configure {:.2} s; fresh instance + \
             configure + first decide p50 {:.2} ms; warm decide p50 {:.1} us, p99 {:.1} us \
             ({} build)",
            implementation.label,
            size as f64 / 1e6,
            compile.as_secs_f64(),
            at(&fresh, 0.5).as_secs_f64() * 1e3,
            at(&calls, 0.5).as_secs_f64() * 1e6,
            at(&calls, 0.99).as_secs_f64() * 1e6,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        );
    }
}
