//! A metric interpreter in Python or JavaScript derives the same signals as
//! the Rust one.
//!
//! `plugins/python/backlog_seconds.py` (built on the helper module
//! `plugins/python/flinkscale_interpreter.py` by componentize-py) and
//! `plugins/js/backlog-seconds.js` (on `plugins/js/flinkscale-interpreter.js`,
//! by jco), both of the world `metric-interpreter`, reimplement the built-in
//! `backlog-seconds`. The first test loads all three through the real plugin
//! host and requires of each port, over a
//! grid of parameters and metric series that takes every path of the Rust
//! code, the same signals (names, and values bit for bit: both compute in
//! IEEE doubles with the same operations in the same order, and a signal
//! crosses the contract as an `f64`, never as text, so nothing forces a
//! tolerance) or the same error, and the same error texts for refused
//! parameters. The second requires the same declared parameters. The third
//! runs `flinkscale simulate` on the shipped example
//! `config/msk-backlog-seconds.toml` with the built-in and with each port's
//! file as its interpreter, and requires the same decisions, line for line.
//!
//! The fourth loads a misbehaving interpreter written with each helper
//! (`tests/fixtures/polyglot/misbehave_interpreter.py` and
//! `misbehave-interpreter.js`, one component per language, its mode chosen
//! by a parameter) and requires of every mistake (an exception, an answer
//! of the wrong shape, a non-finite value, a bad signal name, an unknown
//! metric, bad parameters, an endless loop) an error that names the plugin
//! and what went wrong, the same words from both helpers, and no panic. A
//! thrown value that is not an exception (`throw {code: 3}`), which only
//! JavaScript allows, is reported written out, and Python's refusal to
//! raise one as its `TypeError`.
//!
//! The components are built by `plugins/python/build.sh backlog_seconds`
//! and `plugins/js/build.sh backlog-seconds`, and the fixtures by
//! `plugins/python/build.sh tests/fixtures/polyglot/misbehave_interpreter.py`
//! and `plugins/js/build.sh tests/fixtures/polyglot/misbehave-interpreter.js`
//! (scripts/test.sh runs all four before the cargo tests); a missing one
//! fails the test with the command to build it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use common::misbehave::{Expected, check_error, compare_languages};
use common::{
    POLYGLOT_COMPILE_TIMEOUT_SECS, polyglot_components, polyglot_host, polyglot_plugin_cache,
    workspace,
};
use flinkscale::metrics::{Datapoint, MetricQuery, Series};
use flinkscale::model::{Application, Signal};
use flinkscale::plugin::{ParameterKind, PluginError, PluginHost};
use flinkscale::target::AppStatus;

/// One host for every test, as in the agent: each component is compiled
/// once and shared by every instance, and with the `simulate` runs
/// (through `polyglot_plugin_cache`).
fn host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> = LazyLock::new(polyglot_host);
    &HOST
}

/// Held by each test while it compiles or simulates: two compiles of an
/// 18 MB component at once on two cores take twice as long, and the second
/// process waits for nothing the first would not have written to the
/// shared cache.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The built-in `backlog-seconds`, as host/build.rs built it.
fn rust_wasm() -> PathBuf {
    PathBuf::from(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR")).join("backlog_seconds.wasm")
}

/// The ports of `backlog-seconds` to other languages, as (label, component);
/// fails (never skips) when one is missing.
fn ports() -> Vec<(&'static str, PathBuf)> {
    polyglot_components([
        (
            "python",
            "polyglot/backlog_seconds-py.wasm",
            "plugins/python/build.sh backlog_seconds",
        ),
        (
            "javascript",
            "polyglot/backlog-seconds-js.wasm",
            "plugins/js/build.sh backlog-seconds",
        ),
    ])
}

/// Every implementation, Rust first, then the ports.
fn implementations() -> Vec<(&'static str, PathBuf)> {
    let rust = rust_wasm();
    assert!(rust.is_file(), "{} is missing", rust.display());
    let mut all = vec![("rust", rust)];
    all.extend(ports());
    all
}

/// A signal as compared: its name and the bits of its value, so that
/// `0.0` and `-0.0` differ and nothing is rounded.
type Compared = Result<Vec<(String, u64)>, String>;

/// What an interpreter answered, with the plugin's own name taken out of
/// errors so that the two implementations' texts can be compared.
fn outcome(result: Result<Vec<Signal>, PluginError>) -> Compared {
    match result {
        Ok(signals) => Ok(signals
            .into_iter()
            .map(|signal| (signal.name, signal.value.to_bits()))
            .collect()),
        Err(PluginError::Configure { message, .. }) => Err(format!("configure: {message}")),
        Err(PluginError::Call {
            function,
            class,
            detail,
            ..
        }) => Err(format!("{function}: {class}: {detail}")),
        Err(other) => panic!("the interpreter did not load: {other}"),
    }
}

const NOW_MS: i64 = 1_764_000_000_000;

fn application() -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu: 4,
        parallelism: 4,
        parallelism_per_kpu: 1,
        min_kpu: 1,
        max_kpu: 32,
        version_id: 7,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}

/// A series of the metric `id` with these `(seconds before now, value)`
/// points.
fn series(id: &str, points: &[(i64, f64)]) -> Series {
    Series {
        query: MetricQuery {
            id: id.to_owned(),
            namespace: "AWS/Kafka".to_owned(),
            metric_name: id.to_owned(),
            dimensions: Default::default(),
            statistic: "Maximum".to_owned(),
            period_secs: 60,
            expression: None,
        },
        points: points
            .iter()
            .map(|&(ago_secs, value)| Datapoint {
                timestamp_ms: NOW_MS - ago_secs * 1000,
                value,
            })
            .collect(),
    }
}

/// Every metric input of the grid: the backlog's points (none, one, two
/// growing, shrinking, at one timestamp, out of order, three; zero, minus
/// zero, negative, overflowing to infinity) times the processing rate's
/// (none, zero, negative, below and above the input) times the input
/// rate's; then series missing from the application, each in turn.
fn metric_grid() -> Vec<Vec<Series>> {
    let backlogs: &[&[(i64, f64)]] = &[
        &[],
        &[(0, 0.0)],
        &[(0, -0.0)],
        &[(0, -5.0)],
        &[(0, 1200.0)],
        &[(60, 1000.0), (0, 1200.0)],
        &[(60, 1500.0), (0, 1200.0)],
        &[(60, 900_000.0), (0, 1200.0)],
        &[(0, 1000.0), (0, 1200.0)],
        &[(0, 1000.0), (60, 1200.0)],
        &[(30, 1000.0), (20, 1.0), (0, 7.5)],
        &[(60, 0.0), (0, 1e308)],
        &[(0, 123_456.789)],
    ];
    let processing: &[&[(i64, f64)]] = &[
        &[],
        &[(0, 0.0)],
        &[(0, -1.0)],
        &[(0, 50.0)],
        &[(0, 3000.5)],
        &[(60, 100.0), (0, 0.1)],
    ];
    let input: &[&[(i64, f64)]] = &[&[], &[(0, 0.0)], &[(0, 40.0)], &[(0, 3000.5)], &[(0, 1e6)]];
    let mut grid = Vec::new();
    for backlog in backlogs {
        for processed in processing {
            for incoming in input {
                grid.push(vec![
                    series("lag", backlog),
                    series("processed", processed),
                    series("incoming", incoming),
                ]);
            }
        }
    }
    let lag = series("lag", &[(60, 1000.0), (0, 1200.0)]);
    let processed = series("processed", &[(0, 50.0)]);
    let incoming = series("incoming", &[(0, 40.0)]);
    let other = series("other", &[(0, 1.0)]);
    grid.push(Vec::new());
    grid.push(vec![other.clone()]);
    grid.push(vec![other.clone(), processed.clone(), incoming.clone()]);
    grid.push(vec![lag.clone(), other, incoming]);
    grid.push(vec![lag, processed]);
    grid
}

/// Every parameter set whose signals are compared: both units, with and
/// without an input rate metric, a multiplier, a prefix.
const ACCEPTED: &[&str] = &[
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed",
        "input_rate_metric": "incoming", "backlog_multiplier": 2.5, "signal_prefix": "msk_"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed",
        "backlog_unit": "milliseconds", "backlog_multiplier": 3}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed",
        "backlog_unit": "milliseconds", "input_rate_metric": "incoming"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed",
        "backlog_multiplier": 1e-7}"#,
];

/// Parameters both must refuse, with the same words: every check of the
/// Rust `configure`, and two mistakes at once where the order of the checks
/// decides which is reported. The host refuses a value of the wrong kind
/// or a missing required key from the declarations, before `configure`
/// (the same words for both, so those cases check the declarations); the
/// unit's spelling, the multiplier's sign (its number as Rust writes it)
/// and the empty ids reach each plugin's own checks.
const REFUSED: &[&str] = &[
    r#"{}"#,
    r#"{"backlog_metric": "lag"}"#,
    r#"{"processing_rate_metric": "processed"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_unit": "Seconds"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_unit": 3}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": 0}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": -0.0}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": -1.5}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": -1e-7}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": -1e21}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_multiplier": "2"}"#,
    r#"{"backlog_metric": "", "processing_rate_metric": "processed"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": ""}"#,
    r#"{"backlog_metric": 3, "processing_rate_metric": "processed"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "input_rate_metric": null}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "input_rate_metric": ["x"]}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "signal_prefix": 1}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "backlog_metrc": "x"}"#,
    r#"{"backlog_metric": "lag", "processing_rate_metric": "processed", "colour": 1, "shape": 2}"#,
    r#"{"backlog_metric": "", "processing_rate_metric": "processed", "backlog_unit": "x"}"#,
    r#"{"processing_rate_metric": "processed", "backlog_multiplier": -1}"#,
    r#"{"backlog_unit": 3, "backlog_metric": 4}"#,
    r#"{"backlog_metric": "", "processing_rate_metric": "", "backlog_multiplier": -2}"#,
    r#"[1]"#,
];

#[test]
fn python_and_javascript_backlog_seconds_derive_exactly_the_signals_of_the_rust_one() {
    let implementations = implementations();
    let _compiling = one_at_a_time();
    let grid = metric_grid();
    let app = application();
    let mut compared = 0;
    let mut rust_answers: Vec<Compared> = Vec::new();
    for json in ACCEPTED {
        let answers: Vec<Vec<Compared>> = implementations
            .iter()
            .map(|(label, wasm)| {
                let started = Instant::now();
                let mut interpreter = host()
                    .load_interpreter(wasm, json, "orders")
                    .unwrap_or_else(|error| panic!("the {label} interpreter loads: {error}"));
                println!(
                    "{label:<7} loaded as {} in {:.2} s",
                    interpreter.label(),
                    started.elapsed().as_secs_f64()
                );
                grid.iter()
                    .map(|metrics| outcome(interpreter.interpret(NOW_MS, &app, metrics)))
                    .collect()
            })
            .collect();
        for ((label, _), port_answers) in implementations.iter().zip(&answers).skip(1) {
            for ((metrics, expected), found) in grid.iter().zip(&answers[0]).zip(port_answers) {
                assert_eq!(
                    found, expected,
                    "the {label} backlog-seconds differs from the Rust one with params {json} \
                     on {metrics:?}"
                );
                compared += 1;
            }
        }
        rust_answers.extend(answers.into_iter().next().expect("the Rust answers"));
    }

    // The grid must take every path, or "the same" says little.
    let signal = |name: &str, test: &dyn Fn(f64) -> bool| {
        rust_answers.iter().any(|answer| {
            answer.as_ref().is_ok_and(|signals| {
                signals
                    .iter()
                    .any(|(n, bits)| n == name && test(f64::from_bits(*bits)))
            })
        })
    };
    let answered = |test: &dyn Fn(&Compared) -> bool| rust_answers.iter().any(test);
    for (path, reached) in [
        ("seconds_behind > 0", signal("seconds_behind", &|v| v > 0.0)),
        (
            "seconds_behind = 0",
            signal("seconds_behind", &|v| v == 0.0),
        ),
        (
            "seconds_to_drain > 0",
            signal("seconds_to_drain", &|v| v > 0.0),
        ),
        (
            "seconds_to_drain = 0",
            signal("seconds_to_drain", &|v| v == 0.0),
        ),
        (
            "a prefixed signal",
            signal("msk_seconds_to_drain", &|_| true),
        ),
        (
            "seconds_behind without seconds_to_drain",
            answered(&|answer| {
                answer
                    .as_ref()
                    .is_ok_and(|s| s.len() == 1 && s[0].0 == "seconds_behind")
            }),
        ),
        (
            "seconds_to_drain without seconds_behind",
            answered(&|answer| {
                answer
                    .as_ref()
                    .is_ok_and(|s| s.len() == 1 && s[0].0 == "seconds_to_drain")
            }),
        ),
        (
            "no signal",
            answered(&|answer| answer.as_ref().is_ok_and(Vec::is_empty)),
        ),
        (
            "a metric the application does not configure",
            answered(&|answer| {
                answer
                    .as_ref()
                    .is_err_and(|e| e.contains("which the application does not configure"))
            }),
        ),
    ] {
        assert!(
            reached,
            "no Rust answer has {path}: the grid misses that path"
        );
    }
    // The input rate derived from the backlog's growth (no input metric,
    // first parameter set): some seconds_to_drain must come from it.
    assert!(
        rust_answers[..grid.len()]
            .iter()
            .any(|answer| answer.as_ref().is_ok_and(|s| s
                .iter()
                .any(|(n, bits)| n == "seconds_to_drain" && f64::from_bits(*bits) > 0.0))),
        "no seconds_to_drain from a derived input rate"
    );
    // milliseconds with an input metric: a drain time from an age.
    let ms_with_input = &rust_answers[3 * grid.len()..4 * grid.len()];
    assert!(
        ms_with_input
            .iter()
            .any(|answer| answer.as_ref().is_ok_and(|s| s
                .iter()
                .any(|(n, bits)| n == "seconds_to_drain" && f64::from_bits(*bits) > 0.0))),
        "no seconds_to_drain from an age"
    );

    // Refused parameters: the same error, word for word.
    for json in REFUSED {
        let errors: Vec<String> = implementations
            .iter()
            .map(
                |(label, wasm)| match host().load_interpreter(wasm, json, "orders") {
                    Ok(_) => panic!("the {label} interpreter accepted {json}"),
                    Err(error) => outcome(Err(error)).unwrap_err(),
                },
            )
            .collect();
        for ((label, _), error) in implementations.iter().zip(&errors).skip(1) {
            assert_eq!(
                error, &errors[0],
                "the {label} backlog-seconds refuses {json} differently from the Rust one"
            );
        }
    }
    println!(
        "{compared} answers and {} refusals identical",
        REFUSED.len()
    );
}

/// A declared parameter as both must agree on it: name, kind, whether
/// required, and the default as a JSON value.
type Declared = (String, ParameterKind, bool, Option<serde_json::Value>);

#[test]
fn python_and_javascript_backlog_seconds_declare_the_parameters_of_the_rust_one() {
    let implementations = implementations();
    let _compiling = one_at_a_time();
    let params = r#"{"backlog_metric": "lag", "processing_rate_metric": "processed"}"#;
    let declared: Vec<Vec<Declared>> = implementations
        .iter()
        .map(|(label, wasm)| {
            let interpreter = host()
                .load_interpreter(wasm, params, "orders")
                .unwrap_or_else(|error| panic!("the {label} interpreter loads: {error}"));
            let metadata = interpreter.metadata();
            assert_eq!(metadata.contract_version, "0.2.0", "{label}");
            assert!(!metadata.summary.trim().is_empty(), "{label}: no summary");
            metadata
                .parameters
                .unwrap_or_else(|| panic!("the {label} interpreter declares no parameters"))
                .into_iter()
                .map(|parameter| {
                    assert!(
                        !parameter.meaning.trim().is_empty(),
                        "{label}: `{}` has no meaning",
                        parameter.name
                    );
                    let default = parameter
                        .default_json
                        .map(|json| serde_json::from_str(&json).expect("the default is JSON"));
                    (parameter.name, parameter.kind, parameter.required, default)
                })
                .collect()
        })
        .collect();
    let names: Vec<&str> = declared[0].iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backlog_metric",
            "backlog_unit",
            "backlog_multiplier",
            "processing_rate_metric",
            "input_rate_metric",
            "signal_prefix"
        ],
        "the Rust backlog-seconds declares other parameters than this test knows"
    );
    for ((label, _), port) in implementations.iter().zip(&declared).skip(1) {
        assert_eq!(port, &declared[0], "the {label} backlog-seconds");
    }
}

/// The evaluations `simulate --decisions` printed, one line each.
fn simulate(scenario: &Path, config: &Path) -> Vec<String> {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .arg("simulate")
        .arg("--scenario")
        .arg(scenario)
        .arg("--config")
        .arg(config)
        .arg("--decisions")
        .arg("--plugin-cache")
        .arg(polyglot_plugin_cache())
        .output()
        .expect("flinkscale runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate --config {} failed: {}\n{}{}",
        config.display(),
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "simulate --config {}: {:.1} s",
        config.display(),
        started.elapsed().as_secs_f64()
    );
    stdout
        .lines()
        .skip_while(|line| *line != "evaluations")
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `config/msk-backlog-seconds.toml`, renamed to the `step` scenario's
/// application and its MSK source (as host/tests/sim_interpreters.rs does),
/// with `interpreter` as the backlog-seconds plugin.
fn msk_example(interpreter: &str) -> String {
    let text = std::fs::read_to_string(workspace().join("config/msk-backlog-seconds.toml"))
        .expect("the example");
    let text = text
        // A debug build on a busy 2-core host may need more than the
        // default 100 ms for a first call, and than the default 60 s for
        // a first compile; the deadlines are not under test.
        .replace(
            "[agent]\n",
            &format!(
                "[agent]\nplugin_timeout_ms = 5000\n\
                 plugin_compile_timeout_secs = {POLYGLOT_COMPILE_TIMEOUT_SECS}\n"
            ),
        )
        .replace("\"orders-cluster\"", "\"app-cluster\"")
        .replace(
            "\"Consumer Group\" = \"orders-aggregator\"",
            "\"Consumer Group\" = \"app-group\"",
        )
        .replace("\"orders\" }", "\"app-topic\" }")
        .replace("orders-aggregator", "app")
        .replace(
            "plugin = \"backlog-seconds\"",
            &format!("plugin = {}", toml_edit::Value::from(interpreter)),
        );
    assert!(!text.contains("orders"), "every name replaced: {text}");
    text
}

#[test]
fn simulate_decides_the_same_with_the_python_and_javascript_backlog_seconds() {
    let ports = ports();
    let _compiling = one_at_a_time();
    let work = tempfile::tempdir().expect("a temporary folder");
    let scenario = workspace().join("tests/scenarios/step.toml");
    let run = |name: &str, interpreter: &str| {
        let text = msk_example(interpreter);
        let plugin = format!("plugin = {}", toml_edit::Value::from(interpreter));
        assert!(text.contains(&plugin), "{plugin} missing from {text}");
        let config = work.path().join(format!("{name}.toml"));
        std::fs::write(&config, text).expect("the configuration is written");
        simulate(&scenario, &config)
    };
    let rust = run("rust", "backlog-seconds");
    // Not vacuous: the run scales out on the alarm over `seconds_behind`.
    assert!(
        rust.iter()
            .any(|line| line.contains("`behind` is in ALARM")),
        "no scale-out on `behind`: {rust:#?}"
    );
    for (label, wasm) in &ports {
        let port = run(label, &wasm.to_string_lossy());
        for (index, (a, b)) in rust.iter().zip(&port).enumerate() {
            assert_eq!(
                b, a,
                "evaluation {index} differs with the {label} backlog-seconds"
            );
        }
        assert_eq!(port.len(), rust.len(), "as many evaluations with {label}");
        println!("{label}: {} evaluations identical", rust.len());
    }
}

/// The misbehaving interpreters written with the Python and JavaScript
/// helpers (tests/fixtures/polyglot), as (label, component); fails (never
/// skips) when one is missing.
fn misbehaving() -> Vec<(&'static str, PathBuf)> {
    polyglot_components([
        (
            "python",
            "polyglot/misbehave_interpreter-py.wasm",
            "plugins/python/build.sh tests/fixtures/polyglot/misbehave_interpreter.py",
        ),
        (
            "javascript",
            "polyglot/misbehave-interpreter-js.wasm",
            "plugins/js/build.sh tests/fixtures/polyglot/misbehave-interpreter.js",
        ),
    ])
}

/// A fixture's signals as (name, value), or the error the host displayed.
type Reported = Result<Vec<(String, f64)>, String>;

/// What the operator reads for a load or a call of the fixture: the
/// signals the agent hands on (NaN and infinities dropped, as the
/// controller drops and reports them), or the whole error as the host
/// displays it, with the component's path (the one difference between the
/// two languages) written `<file>`.
fn reported(wasm: &Path, result: Result<Vec<Signal>, PluginError>) -> Reported {
    result
        .map(|signals| {
            signals
                .into_iter()
                .filter(|signal| signal.value.is_finite())
                .map(|signal| (signal.name, signal.value))
                .collect()
        })
        .map_err(|error| {
            error
                .to_string()
                .replace(&wasm.display().to_string(), "<file>")
        })
}

/// How the fixture is expected to answer in one mode: its signals as
/// (name, value), or an error.
type Mode = Expected<&'static [(&'static str, f64)]>;

const fn fails(params: &'static str, fragments: &'static [&'static str]) -> Mode {
    Expected::fails(params, fragments)
}

/// A value that is neither an exception nor a string, thrown by
/// `interpret` (mode `throw`): JavaScript throws it, and the helper reports
/// it written out (never `[object Object]`); Python cannot raise it and
/// refuses with a `TypeError`, which its helper reports as any exception.
const fn throws(params: &'static str, javascript: &'static [&'static str]) -> Mode {
    Expected::fails_in_own_words(
        params,
        &["failed in interpret: GuestError: "],
        [
            &["GuestError: TypeError: exceptions must derive from BaseException"],
            javascript,
        ],
    )
}

/// Every way the misbehaving fixture fails, with what the host must report.
const MISTAKES: &[Mode] = &[
    Expected::answers(r#"{"mode": "ok"}"#, &[("latest", 1200.0)]),
    fails(
        r#"{"mode": "refuse"}"#,
        &["failed in interpret: GuestError: misbehave: refuse mode"],
    ),
    // A bug is said with its place in the author's file, each
    // language's own.
    Expected::fails_in_own_words(
        r#"{"mode": "bug"}"#,
        &["failed in interpret: GuestError: FixtureBug: misbehave: bug mode (at "],
        [
            &["(at misbehave_interpreter.py:133, in on_interpret)"],
            &["(at misbehave-interpreter.js:139, in interpret)"],
        ],
    ),
    // Each runtime says it its own way, naming what was missing.
    Expected::fails_in_own_words(
        r#"{"mode": "runtime"}"#,
        &["failed in interpret: GuestError: "],
        [
            &["GuestError: KeyError: 'missing'"],
            &["GuestError: TypeError: cannot read property 'missing' of null"],
        ],
    ),
    fails(
        r#"{"mode": "nothing"}"#,
        &["GuestError: the interpreter returned nothing, not a list of signals (name, value)"],
    ),
    fails(
        r#"{"mode": "text"}"#,
        &["GuestError: the interpreter returned a string, not a list of signals (name, value)"],
    ),
    fails(
        r#"{"mode": "bare-number"}"#,
        &["GuestError: signal 1 of 1 is a number, not a signal (name, value)"],
    ),
    fails(
        r#"{"mode": "name-number"}"#,
        &["GuestError: signal 2 of 2 has a name that is a number, not a string"],
    ),
    fails(
        r#"{"mode": "value-text"}"#,
        &["GuestError: signal 2 of 2 (`count`) has a value that is a string, not a number"],
    ),
    fails(
        r#"{"mode": "value-boolean"}"#,
        &["GuestError: signal 1 of 1 (`flag`) has a value that is a boolean, not a number"],
    ),
    // NaN and infinities are absent, not zero, and not an error.
    Expected::answers(r#"{"mode": "non-finite"}"#, &[("finite", 1.5)]),
    fails(
        r#"{"mode": "empty-name"}"#,
        &["failed in interpret: Invalid: signal 1 of 1 has the name \"\"; a signal's name is"],
    ),
    fails(
        r#"{"mode": "twice"}"#,
        &["failed in interpret: Invalid: signal \"same\" is given more than once"],
    ),
    // A name UTF-8 cannot carry: refused by the helper, in the same words
    // (counting the emoji before it as one character in both languages),
    // where Python's bindings would trap lowering it.
    fails(
        r#"{"mode": "surrogate-name"}"#,
        &[
            "failed in interpret: GuestError: signal 2 of 2 has a name with a lone surrogate \
           (\\ud800 at character 2), which a UTF-8 string cannot carry",
        ],
    ),
    fails(
        r#"{"mode": "unknown-metric", "metric": "absent"}"#,
        &[
            "GuestError: `metric` names `absent`, which the application does not configure \
           (configured metrics: lag)",
        ],
    ),
    fails(r#"{"mode": "loop"}"#, &["failed in interpret: Timeout: "]),
    throws(
        r#"{"mode": "throw"}"#,
        &["GuestError: threw a non-Error value: {\"code\":3}"],
    ),
    throws(
        r#"{"mode": "throw", "thrown": "empty"}"#,
        &["GuestError: threw a non-Error value: {}"],
    ),
    throws(
        r#"{"mode": "throw", "thrown": "number"}"#,
        &["GuestError: threw a non-Error value: 42"],
    ),
    throws(
        r#"{"mode": "throw", "thrown": "null"}"#,
        &["GuestError: threw a non-Error value: null"],
    ),
    throws(
        r#"{"mode": "throw", "thrown": "undefined"}"#,
        &["GuestError: threw a non-Error value: undefined"],
    ),
    // JSON.stringify alone throws on a cycle and on a BigInt.
    throws(
        r#"{"mode": "throw", "thrown": "cycle"}"#,
        &["GuestError: threw a non-Error value: {\"code\":3,\"self\":\"[Circular]\"}"],
    ),
    throws(
        r#"{"mode": "throw", "thrown": "bigint"}"#,
        &["GuestError: threw a non-Error value: 1180591620717411303424n"],
    ),
    fails(
        r#"{"mode": "configure-refuse"}"#,
        &["rejected its params: misbehave: configure-refuse mode"],
    ),
    Expected::fails_in_own_words(
        r#"{"mode": "configure-bug"}"#,
        &["rejected its params: FixtureBug: misbehave: configure-bug mode (at "],
        [
            &["(at misbehave_interpreter.py:116, in setup)"],
            &["(at misbehave-interpreter.js:115, in setup)"],
        ],
    ),
    // An endless start fails in the host's words, the same for both, after
    // the start was tried on a second fresh instance.
    fails(
        r#"{"mode": "configure-loop"}"#,
        &[
            "failed in configure: Timeout: no answer within the 1000 ms deadline of an \
             instance's start (ten times `plugin_timeout_ms`, at least 1 s), on two fresh \
             instances in turn",
        ],
    ),
    fails(
        r#"{"mode": "dance"}"#,
        &["rejected its params: unknown mode `dance` (valid: ok, refuse, "],
    ),
    fails(
        r#"{"mode": 3}"#,
        &["rejected its params: \"mode\" must be a string, not an integer (3)"],
    ),
    fails(r#"{}"#, &["rejected its params: ", "\"mode\""]),
    fails(
        r#"{"mode": "ok", "colour": 1}"#,
        &["rejected its params: ", "\"colour\""],
    ),
    fails(
        r#"{"mode": "ok", "metric": 7}"#,
        &["rejected its params: ", "\"metric\""],
    ),
];

#[test]
fn a_misbehaving_python_or_javascript_interpreter_is_reported_in_the_same_words() {
    let fixtures = misbehaving();
    let _compiling = one_at_a_time();
    let app = application();
    let metrics = [series("lag", &[(60, 1000.0), (0, 1200.0)])];
    let answers: Vec<Vec<Reported>> = fixtures
        .iter()
        .map(|(label, wasm)| {
            MISTAKES
                .iter()
                .map(|expected| {
                    let answer = host()
                        .load_interpreter(wasm, expected.params, "orders")
                        .and_then(|mut interpreter| interpreter.interpret(NOW_MS, &app, &metrics));
                    let answer = reported(wasm, answer);
                    println!("{label:<10} {:<50} {answer:?}", expected.params);
                    match (&expected.answer, &answer) {
                        (Ok(signals), Ok(found)) => {
                            let signals: Vec<(String, f64)> = signals
                                .iter()
                                .map(|&(name, value)| (name.to_owned(), value))
                                .collect();
                            assert_eq!(found, &signals, "{label} with {}", expected.params);
                        }
                        (_, Err(text)) => {
                            check_error(label, "misbehave-interpreter 0.1.0", expected, text);
                        }
                        (Err(fragments), Ok(found)) => panic!(
                            "{label} with {}: expected an error with {fragments:?}, found {found:?}",
                            expected.params
                        ),
                    }
                    answer
                })
                .collect()
        })
        .collect();
    compare_languages(MISTAKES, &answers);
}

/// NaN and infinite signals are passed on by the host's conversion to the
/// agent, which drops them as the contract says and reports them
/// (`SignalsDropped`, a WARN and `explain`'s `dropped:`). The conversion
/// dropped them itself, so that report never came for a real plugin.
#[test]
fn non_finite_signals_reach_the_agent_to_be_dropped_and_reported() {
    let app = application();
    let metrics = [series("lag", &[(60, 1000.0), (0, 1200.0)])];
    for (label, wasm) in misbehaving() {
        let _compiling = one_at_a_time();
        let signals = host()
            .load_interpreter(&wasm, r#"{"mode": "non-finite"}"#, "orders")
            .and_then(|mut interpreter| interpreter.interpret(NOW_MS, &app, &metrics))
            .expect("interprets");
        let non_finite: Vec<&str> = signals
            .iter()
            .filter(|s| !s.value.is_finite())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(non_finite, ["nan", "inf", "ninf"], "{label}: {signals:?}");
    }
}

/// `plugin check` shows an interpreter's NaN and infinite signals as they
/// come, each said to be dropped by the agent (in the JSON too, where
/// they read `null`).
#[test]
fn plugin_check_says_the_agent_drops_non_finite_signals() {
    for (label, wasm) in misbehaving() {
        let _compiling = one_at_a_time();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(["plugin", "check"])
            .arg(&wasm)
            .args(["--params", r#"{"mode": "non-finite"}"#, "--json"])
            .output()
            .expect("flinkscale runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{label}: {stdout}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        let dropped: Vec<&str> = report["signals"]
            .as_array()
            .expect("signals")
            .iter()
            .filter(|s| s["dropped"] == "not a finite number: the agent drops it")
            .map(|s| s["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(dropped, ["nan", "inf", "ninf"], "{label}: {stdout}");
    }
}
