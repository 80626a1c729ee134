//! Every contract version the host supports, with real components: the
//! `declares` fixture (built by `cargo plugins` with wit-bindgen directly
//! against `wit/v0.2.0`) and the committed v0.1.0 components of
//! `tests/fixtures/contract-v0.1.0/`, which must keep deciding and
//! interpreting exactly as the built-ins do, whatever contract the
//! built-ins are on.

mod common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use flinkscale::metrics::{Datapoint, MetricQuery, Series};
use flinkscale::model::{AlarmState, AlarmStatus, Application, Evaluation};
use flinkscale::plugin::{
    Parameter, ParameterKind, PluginError, PluginHost, PluginKind, SandboxLimits,
};
use flinkscale::target::AppStatus;

fn host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> =
        LazyLock::new(|| PluginHost::new(SandboxLimits::default()).expect("the engine starts"));
    &HOST
}

/// The `declares` fixture, where `cargo plugins` put it.
fn declares() -> PathBuf {
    let path = common::plugin_dir().join("declares.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo plugins` first",
        path.display()
    );
    path
}

/// A committed v0.1.0 component.
fn v0_1_0(name: &str) -> PathBuf {
    common::workspace()
        .join("tests/fixtures/contract-v0.1.0")
        .join(format!("{name}.wasm"))
}

/// A built-in plugin, as host/build.rs built it.
fn builtin(name: &str) -> PathBuf {
    let path = Path::new(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR"))
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

const DECLARES_PARAMS: &str = r#"{"threshold": 0.5}"#;

#[test]
fn a_contract_0_2_0_policy_reports_its_summary_and_declared_parameters() {
    let policy = host()
        .load_policy(declares(), DECLARES_PARAMS, "orders")
        .expect("declares loads");
    let metadata = policy.metadata();
    assert_eq!(metadata.contract_version, "0.2.0");
    assert_eq!(metadata.kind, PluginKind::Policy);
    assert_eq!(
        (metadata.name.as_str(), metadata.version.as_str()),
        ("declares", "0.2.0")
    );
    assert_eq!(metadata.summary, "Holds, saying the params it was given.");
    let parameters = metadata.parameters.expect("0.2.0 declares parameters");
    let kinds: Vec<(&str, ParameterKind, bool, Option<&str>)> = parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.kind,
                p.required,
                p.default_json.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("threshold", ParameterKind::Number, true, None),
            ("steps", ParameterKind::Integer, false, Some("2")),
            ("enabled", ParameterKind::Boolean, false, Some("true")),
            ("label", ParameterKind::Text, false, Some("\"declares\"")),
            ("tags", ParameterKind::TextList, false, Some("[]")),
            ("scale_out_alarm", ParameterKind::AlarmId, false, None),
            (
                "watched_metrics",
                ParameterKind::MetricIds,
                false,
                Some("[]")
            ),
            ("extra", ParameterKind::Table, false, None),
        ]
    );
    assert_eq!(
        parameters[0],
        Parameter {
            name: "threshold".to_owned(),
            kind: ParameterKind::Number,
            required: true,
            default_json: None,
            meaning: "The fixture's threshold.".to_owned(),
        }
    );
    // `check` (no configure) reports the same.
    let checked = host().check(declares()).expect("declares checks");
    assert_eq!(checked.contract_version, "0.2.0");
    assert_eq!(checked.parameters.map(|p| p.len()), Some(8));
}

/// `configure` gets the application's params with every declared default
/// filled in for a key left out ("the value used when the key is
/// absent"): `declares` is built from the WIT alone, with no SDK to fill
/// them in, and says what it got.
#[test]
fn a_contract_0_2_0_policy_decides_with_the_params_it_was_given() {
    let mut policy = host()
        .load_policy(declares(), DECLARES_PARAMS, "orders")
        .expect("declares loads");
    let decision = policy.decide(&evaluation(4, 1, 3)).expect("decides");
    assert_eq!(decision.action, flinkscale::model::Action::Hold);
    let given: serde_json::Value = serde_json::from_str(&decision.reason).expect("JSON");
    assert_eq!(
        given,
        serde_json::json!({
            "threshold": 0.5,
            "steps": 2,
            "enabled": true,
            "label": "declares",
            "tags": [],
            "watched_metrics": [],
        })
    );
    // A key given keeps its value; one without a default stays absent.
    let mut policy = host()
        .load_policy(
            declares(),
            r#"{"threshold": 1, "steps": 5, "tags": ["a"]}"#,
            "orders",
        )
        .expect("declares loads");
    let decision = policy.decide(&evaluation(4, 1, 3)).expect("decides");
    let given: serde_json::Value = serde_json::from_str(&decision.reason).expect("JSON");
    assert_eq!(
        given,
        serde_json::json!({
            "threshold": 1,
            "steps": 5,
            "enabled": true,
            "label": "declares",
            "tags": ["a"],
            "watched_metrics": [],
        })
    );
}

#[test]
fn a_contract_0_2_0_policy_is_the_wrong_world_for_an_interpreter() {
    let error = match host().load_interpreter(declares(), "{}", "orders") {
        Ok(_) => panic!("a policy loaded as an interpreter"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            PluginError::WrongWorld {
                expected: PluginKind::Interpreter,
                found: PluginKind::Policy,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("flinkscale:plugin/policy@0.2.0"),
        "{error}"
    );
}

#[test]
fn the_v0_1_0_components_report_contract_0_1_0_and_no_parameters() {
    let step = host()
        .load_policy(v0_1_0("step"), STEP_PARAMS, "orders")
        .expect("v0.1.0 step loads");
    let metadata = step.metadata();
    assert_eq!(metadata.contract_version, "0.1.0");
    assert_eq!(metadata.kind, PluginKind::Policy);
    assert_eq!(metadata.name, "step");
    assert_eq!(metadata.parameters, None);
    assert_eq!(metadata.summary, "");

    let backlog = host()
        .load_interpreter(v0_1_0("backlog-seconds"), BACKLOG_PARAMS, "orders")
        .expect("v0.1.0 backlog-seconds loads");
    let metadata = backlog.metadata();
    assert_eq!(metadata.contract_version, "0.1.0");
    assert_eq!(metadata.kind, PluginKind::Interpreter);
    assert_eq!(metadata.name, "backlog-seconds");
    assert_eq!(metadata.parameters, None);
}

const STEP_PARAMS: &str = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factor": 2, "scale_in_factor": 2}"#;

const BACKLOG_PARAMS: &str = r#"{"backlog_metric": "lag", "processing_rate_metric": "rate_out", "input_rate_metric": "rate_in"}"#;

fn application(kpu: u32, min_kpu: u32, max_kpu: u32) -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu,
        parallelism: kpu * 2,
        parallelism_per_kpu: 2,
        min_kpu,
        max_kpu,
        version_id: 3,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}

fn state(code: u8) -> AlarmState {
    match code {
        0 => AlarmState::Ok,
        1 => AlarmState::Alarm,
        _ => AlarmState::InsufficientData,
    }
}

const NOW_MS: i64 = 1_764_000_000_000;

fn series(id: &str, values: &[f64]) -> Series {
    Series {
        query: MetricQuery {
            id: id.to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: id.to_owned(),
            dimensions: [("Application".to_owned(), "orders".to_owned())].into(),
            statistic: "Average".to_owned(),
            period_secs: 60,
            expression: None,
        },
        points: values
            .iter()
            .enumerate()
            .map(|(i, value)| Datapoint {
                timestamp_ms: NOW_MS - (values.len() - i) as i64 * 60_000,
                value: *value,
            })
            .collect(),
    }
}

/// An evaluation at `kpu` with the scale-out and scale-in alarms in the
/// given states (0 OK, 1 ALARM, 2 INSUFFICIENT_DATA).
fn evaluation(kpu: u32, out: u8, inn: u8) -> Evaluation {
    Evaluation {
        now_ms: NOW_MS,
        app: application(kpu, 1, 16),
        metrics: vec![series("cpu", &[50.0, 60.0, 70.0])],
        alarms: vec![
            AlarmStatus {
                name: "out".to_owned(),
                state: state(out),
                since_ms: NOW_MS - 300_000,
            },
            AlarmStatus {
                name: "in".to_owned(),
                state: state(inn),
                since_ms: NOW_MS - 300_000,
            },
        ],
        signals: vec![],
    }
}

/// The plugin's own error message of a failed call.
fn guest_error(error: PluginError) -> String {
    match error {
        PluginError::Call { detail, .. } => detail,
        other => panic!("expected a call failure, got {other}"),
    }
}

#[test]
fn the_v0_1_0_step_decides_exactly_as_the_built_in_step() {
    let mut old = host()
        .load_policy(v0_1_0("step"), STEP_PARAMS, "orders")
        .expect("v0.1.0 step loads");
    let mut current = host()
        .load_policy(builtin("step"), STEP_PARAMS, "orders")
        .expect("the built-in step loads");
    let mut compared = 0;
    let mut scaled = 0;
    for kpu in [1, 2, 3, 8, 16] {
        for out in 0..3 {
            for inn in 0..3 {
                let mut evaluation = evaluation(kpu, out, inn);
                let expected = current.decide(&evaluation);
                let found = old.decide(&evaluation);
                let (expected, found) = (
                    expected.expect("the built-in decides"),
                    found.expect("v0.1.0 decides"),
                );
                assert_eq!(found, expected, "kpu {kpu}, out {out}, in {inn}");
                compared += 1;
                scaled += usize::from(expected.action != flinkscale::model::Action::Hold);
                // A missing alarm is the plugin's to report, the same way.
                evaluation.alarms.clear();
                assert_eq!(
                    old.decide(&evaluation).map_err(guest_error),
                    current.decide(&evaluation).map_err(guest_error),
                    "kpu {kpu} without alarms"
                );
            }
        }
    }
    assert_eq!(compared, 45);
    // The grid exercises both branches, not only holds.
    assert!(scaled > 5, "only {scaled} of {compared} decisions scaled");
}

#[test]
fn the_v0_1_0_backlog_seconds_interprets_exactly_as_the_built_in() {
    let mut old = host()
        .load_interpreter(v0_1_0("backlog-seconds"), BACKLOG_PARAMS, "orders")
        .expect("v0.1.0 backlog-seconds loads");
    let mut current = host()
        .load_interpreter(builtin("backlog-seconds"), BACKLOG_PARAMS, "orders")
        .expect("the built-in backlog-seconds loads");
    let app = application(4, 1, 16);
    let mut signals_seen = 0;
    for lag in [
        [0.0, 0.0],
        [1_000.0, 2_000.0],
        [5_000.0, 1_000.0],
        [f64::NAN, 10.0],
    ] {
        for rate_out in [0.0, 10.0, 1_000.0] {
            for rate_in in [0.0, 5.0, 2_000.0] {
                let metrics = vec![
                    series("lag", &lag),
                    series("rate_out", &[rate_out, rate_out]),
                    series("rate_in", &[rate_in, rate_in]),
                ];
                let expected = current
                    .interpret(NOW_MS, &app, &metrics)
                    .expect("the built-in interprets");
                let found = old
                    .interpret(NOW_MS, &app, &metrics)
                    .expect("v0.1.0 interprets");
                assert_eq!(found, expected, "lag {lag:?}, out {rate_out}, in {rate_in}");
                signals_seen += expected.len();
            }
        }
    }
    assert!(signals_seen > 20, "only {signals_seen} signals compared");
}

/// The host's own refusal of params against a plugin's declarations.
fn refused(params: &str) -> String {
    match host().load_policy(declares(), params, "orders") {
        Ok(_) => panic!("{params} was accepted"),
        Err(error @ PluginError::Configure { .. }) => {
            let text = error.to_string();
            assert!(text.contains("plugin declares 0.2.0"), "{text}");
            assert!(text.contains("for application \"orders\""), "{text}");
            text
        }
        Err(other) => panic!("expected a configure error, got {other}"),
    }
}

#[test]
fn params_are_checked_against_the_declarations_before_configure() {
    let text = refused(r#"{"threshold": 1, "treshold": 2}"#);
    assert!(
        text.contains("unknown key \"treshold\" (did you mean \"threshold\"?); valid keys: \"threshold\", \"steps\", \"enabled\""),
        "{text}"
    );
    let text = refused(r#"{"steps": 3}"#);
    assert!(
        text.contains("missing required key \"threshold\" (number): The fixture's threshold"),
        "{text}"
    );
    let text = refused(
        r#"{"threshold": 1, "steps": "3", "enabled": 1, "tags": [1], "watched_metrics": "cpu", "extra": []}"#,
    );
    for expected in [
        "\"steps\" must be an integer, not a string (\"3\")",
        "\"enabled\" must be a boolean, not an integer (1)",
        "\"tags\" must be an array of strings, not an array ([1])",
        "\"watched_metrics\" must be an array of metric ids, not a string (\"cpu\")",
        "\"extra\" must be a table, not an array ([])",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    // Every kind accepts its own values, and the plugin gets them as given.
    let good = r#"{"enabled":false,"extra":{"a":1},"label":"x","scale_out_alarm":"out","steps":3,"tags":["a"],"threshold":2,"watched_metrics":["cpu"]}"#;
    let mut policy = host()
        .load_policy(declares(), good, "orders")
        .expect("good params are accepted");
    assert_eq!(
        policy.decide(&evaluation(4, 0, 0)).expect("decides").reason,
        good
    );
}

/// A typical evaluation: 3 metrics x 20 datapoints, 2 alarms, the scale-out
/// one in ALARM (so step computes a step, not only a hold).
fn typical_evaluation() -> Evaluation {
    let mut evaluation = evaluation(4, 1, 0);
    evaluation.app = application(4, 1, 32);
    evaluation.metrics = ["cpu", "busy", "records_in"]
        .into_iter()
        .map(|id| {
            let values: Vec<f64> = (0..20).map(|i| 50.0 + f64::from(i)).collect();
            series(id, &values)
        })
        .collect();
    evaluation
}

/// p50 and p99 of 20,000 warm `decide` calls on `evaluation`.
fn measure(
    policy: &mut flinkscale::plugin::PolicyInstance,
    evaluation: &Evaluation,
) -> (std::time::Duration, std::time::Duration) {
    let mut calls = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = std::time::Instant::now();
        let decision = policy.decide(evaluation).expect("decides");
        calls.push(started.elapsed());
        assert_eq!(decision.action, flinkscale::model::Action::ScaleTo(8));
    }
    calls.sort();
    let at = |q: f64| calls[((calls.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// Warm `decide` of the built-in Rust step (and of the v0.1.0 one) on a
/// typical evaluation, called as the controller calls it: from a thread of
/// tokio's blocking pool. A measurement, not a check.
#[test]
#[ignore = "a measurement: cargo test --release -p flinkscale --test contract_versions -- --ignored --nocapture warm_decide"]
fn warm_decide() {
    use std::time::Duration;
    let typical = typical_evaluation();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a runtime");
    // The host's share: converting the evaluation to the guest's records.
    let mut conversions = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = std::time::Instant::now();
        let converted = flinkscale::plugin::v0_2_0::evaluation(&typical);
        conversions.push(started.elapsed());
        std::hint::black_box(converted);
    }
    conversions.sort();
    println!(
        "converting the evaluation to the guest's records: p50 {:.2} us, p99 {:.2} us",
        conversions[10_000].as_secs_f64() * 1e6,
        conversions[19_800].as_secs_f64() * 1e6
    );
    let mut reused = flinkscale::plugin::v0_2_0::evaluation(&typical);
    let mut fills = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = std::time::Instant::now();
        flinkscale::plugin::v0_2_0::fill_evaluation(&typical, &mut reused);
        fills.push(started.elapsed());
        std::hint::black_box(&reused);
    }
    fills.sort();
    println!(
        "refilling the previous call's records (what decide does): p50 {:.2} us, p99 {:.2} us",
        fills[10_000].as_secs_f64() * 1e6,
        fills[19_800].as_secs_f64() * 1e6
    );
    let mut wasms = vec![
        ("built-in step".to_owned(), builtin("step")),
        ("v0.1.0 step".to_owned(), v0_1_0("step")),
    ];
    // Another build to compare, e.g. step at another opt-level.
    if let Some(other) = std::env::var_os("FLINKSCALE_MEASURE_WASM") {
        wasms.push((
            format!("{}", Path::new(&other).display()),
            PathBuf::from(other),
        ));
    }
    for (label, wasm) in wasms {
        let mut policy = host()
            .load_policy(&wasm, STEP_PARAMS, "orders")
            .expect("step loads");
        let show = |d: Duration| d.as_secs_f64() * 1e6;
        let (p50, p99) = measure(&mut policy, &typical);
        println!(
            "{label}: warm decide, plain thread: p50 {:.2} us, p99 {:.2} us",
            show(p50),
            show(p99)
        );
        let (mut policy, (p50, p99)) = runtime.block_on(async move {
            let typical = typical_evaluation();
            tokio::task::spawn_blocking(move || {
                let result = measure(&mut policy, &typical);
                (policy, result)
            })
            .await
            .expect("the blocking task")
        });
        println!(
            "{label}: warm decide, tokio blocking pool, unmarked (a helper thread a call): \
             p50 {:.2} us, p99 {:.2} us",
            show(p50),
            show(p99)
        );
        let (policy, (p50, p99)) = runtime.block_on(async move {
            let typical = typical_evaluation();
            tokio::task::spawn_blocking(move || {
                flinkscale::plugin::on_plugin_thread(|| {
                    let result = measure(&mut policy, &typical);
                    (policy, result)
                })
            })
            .await
            .expect("the blocking task")
        });
        drop(policy);
        println!(
            "{label}: warm decide, tokio blocking pool, marked as plugin work (as the \
             controller calls): p50 {:.2} us, p99 {:.2} us ({} build)",
            show(p50),
            show(p99),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }
}
