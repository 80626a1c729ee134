//! Property tests of the agent's front doors for untrusted input: the
//! configuration loader (any text a user may write), the host's check of a
//! policy's decision (anything a plugin may answer), the alarm evaluator
//! (any datapoints CloudWatch may return), and the other files a user hands
//! the tools: a simulator scenario and its trace, a metric-math expression,
//! a CloudFormation template to import. None of them may panic, and each
//! keeps the promise a user relies on: a refused configuration, scenario,
//! trace or template says which file and what; a scenario the loader takes
//! runs, with finite scores and the KPU within its bounds; a decision never
//! leaves `[min_kpu, max_kpu]` and never asks for zero; an alarm reads a
//! NaN datapoint as a missing one.
//!
//! Bounded and reproducible: 256 cases per property from a fixed seed, no
//! failure files, whatever `PROPTEST_*` says in the environment.

use std::path::Path;

use flinkscale::alarm::{AlarmRule, AlarmTracker, evaluate_range, range_from_series};
use flinkscale::config::{AlarmConfig, Comparison, TreatMissingData, load_str};
use flinkscale::import::cfn::{ParameterValues, REFERENCE_TEMPLATE, import};
use flinkscale::metrics::math;
use flinkscale::metrics::{Datapoint, MetricQuery, Series};
use flinkscale::model::{Action, AlarmState, Application, Decision};
use flinkscale::plugin::validate::{
    MAX_NEXT_EVALUATION_SECS, MAX_REASON_BYTES, MIN_NEXT_EVALUATION_SECS, validate_decision,
};
use flinkscale::sim::presets::PolicyChoice;
use flinkscale::sim::{Scenario, Trace, TraceValue, bench};
use flinkscale::target::AppStatus;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// A valid configuration to mutate: the reference design's example.
const EXAMPLE: &str = include_str!("../../config/msf-cpu.toml");

/// 256 cases from a fixed seed, no persistence, no environment influence on
/// the settings that matter.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5EED_F11C_5CA1_E000),
        max_shrink_iters: 2048,
        max_global_rejects: 4096,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- config --

/// Loads `text` and checks what any outcome must satisfy: every error is
/// located (a line and column, or at least a field), and an accepted
/// configuration keeps the rules `flinkscale validate` documents.
fn check_load(text: &str) -> Result<(), TestCaseError> {
    match load_str(text, Path::new("fuzz.toml")) {
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an Err without any error");
            for error in errors.errors() {
                prop_assert!(
                    error.position.is_some() || !error.field.is_empty(),
                    "an error with neither a location nor a field: {error:?}\n--- text ---\n{text}"
                );
                prop_assert!(
                    !error.message.trim().is_empty(),
                    "an empty message: {error:?}"
                );
                if let Some(p) = error.position {
                    prop_assert!(
                        p.line >= 1 && p.column >= 1,
                        "positions are 1-based: {error:?}"
                    );
                    prop_assert!(
                        p.line <= text.lines().count().max(1) + 1,
                        "a line past the end of the text: {error:?}\n--- text ---\n{text}"
                    );
                }
            }
        }
        Ok(loaded) => {
            let config = &loaded.config;
            prop_assert!(
                !config.applications.is_empty(),
                "accepted without an application:\n{text}"
            );
            for app in &config.applications {
                prop_assert!(
                    app.min_kpu >= 1 && app.min_kpu <= app.max_kpu,
                    "accepted min_kpu {} / max_kpu {}:\n{text}",
                    app.min_kpu,
                    app.max_kpu
                );
                prop_assert!(
                    app.update_poll_secs >= 1,
                    "accepted update_poll_secs 0:\n{text}"
                );
                prop_assert!(
                    app.update_timeout_secs >= app.update_poll_secs,
                    "accepted an update timeout shorter than its poll:\n{text}"
                );
                prop_assert!(
                    app.evaluation_interval_secs != Some(0),
                    "accepted evaluation_interval_secs 0:\n{text}"
                );
                for metric in &app.metrics {
                    let p = metric.period_secs;
                    prop_assert!(
                        matches!(p, 10 | 20 | 30) || (p > 0 && p % 60 == 0),
                        "accepted period_secs {p}:\n{text}"
                    );
                }
                for alarm in &app.alarms {
                    if alarm.cloudwatch_name().is_some() {
                        // CloudWatch evaluates it: none of the fields below.
                        prop_assert!(
                            alarm.metric.is_none() && alarm.threshold.is_none(),
                            "accepted a CloudWatch alarm with local settings:\n{text}"
                        );
                        continue;
                    }
                    let (Some(metric_id), Some(threshold), Some(n)) =
                        (&alarm.metric, alarm.threshold, alarm.evaluation_periods)
                    else {
                        prop_assert!(
                            false,
                            "accepted a local alarm without its settings:\n{text}"
                        );
                        continue;
                    };
                    let metric = app.metrics.iter().find(|m| &m.id == metric_id);
                    // An alarm may watch an interpreter's signal, whose
                    // name is known only when the interpreter runs: without
                    // a metric of that id, only an application with an
                    // interpreter, and a name a signal can have, is valid.
                    let signal = !app.interpreters.is_empty()
                        && metric_id.starts_with(|c: char| c.is_ascii_alphabetic())
                        && metric_id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_');
                    prop_assert!(
                        metric.is_some() || signal,
                        "accepted an alarm on a missing metric:\n{text}"
                    );
                    prop_assert!(
                        threshold.is_finite(),
                        "accepted threshold {threshold}:\n{text}"
                    );
                    let m = alarm.datapoints_to_alarm();
                    prop_assert!(
                        n >= 1 && (1..=n).contains(&m),
                        "accepted M {m} of N {n}:\n{text}"
                    );
                    if let Some(metric) = metric {
                        prop_assert!(
                            u64::from(n) * u64::from(metric.period_secs) <= 86_400,
                            "accepted an alarm range over a day:\n{text}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// A TOML literal for `s`.
fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

/// Any TOML value, of any type: what a user may write in the wrong place.
fn junk_value() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-3i64..=3).prop_map(|i| i.to_string()),
        prop_oneof![
            Just("nan".to_owned()),
            Just("inf".to_owned()),
            Just("-inf".to_owned()),
            Just("1e308".to_owned()),
            Just("-0.0".to_owned()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
        ],
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,12}".prop_map(|s| toml_str(&s)),
        Just("1979-05-27T07:32:00Z".to_owned()),
        prop::collection::vec(-2i64..100, 0..4).prop_map(|v| format!("{v:?}")),
        Just("{ a = 1, b = \"x\" }".to_owned()),
        Just("[]".to_owned()),
    ]
    .boxed()
}

/// Fields without a default: absent, they make an error.
const REQUIRED: &[&str] = &[
    "name",
    "id",
    "namespace",
    "metric_name",
    "statistic",
    "metric",
    "comparison",
    "threshold",
    "evaluation_periods",
    "plugin",
];

/// A field: mostly a valid value, sometimes one just off (out of range, a
/// wrong name), sometimes any value of any type; sometimes absent.
fn field(
    key: &'static str,
    valid: BoxedStrategy<String>,
    off: BoxedStrategy<String>,
) -> BoxedStrategy<Option<String>> {
    let presence = if REQUIRED.contains(&key) { 0.98 } else { 0.7 };
    prop::option::weighted(
        presence,
        prop_oneof![40 => valid, 2 => off, 1 => junk_value()]
            .prop_map(move |v| format!("{key} = {v}")),
    )
    .boxed()
}

fn strings(options: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(options).prop_map(toml_str).boxed()
}

fn ints(options: &'static [i64]) -> BoxedStrategy<String> {
    prop::sample::select(options)
        .prop_map(|i| i.to_string())
        .boxed()
}

fn literals(options: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(options)
        .prop_map(str::to_owned)
        .boxed()
}

/// A table's lines: some of its fields.
fn table(fields: Vec<BoxedStrategy<Option<String>>>) -> BoxedStrategy<Vec<String>> {
    fields
        .prop_map(|fields| fields.into_iter().flatten().collect())
        .boxed()
}

fn agent_table() -> BoxedStrategy<Vec<String>> {
    table(vec![
        field(
            "plugin_dir",
            strings(&["plugins", "/opt/plugins"]),
            strings(&["", "a\tb"]),
        ),
        field(
            "state_dir",
            strings(&["state", "/var/lib/flinkscale"]),
            strings(&[""]),
        ),
        field(
            "region",
            strings(&["us-east-1", "eu-west-3", "cn-north-1"]),
            strings(&["", "not a region", "US-EAST-1"]),
        ),
        field(
            "plugin_timeout_ms",
            ints(&[1, 100, 60_000]),
            ints(&[0, 60_001, -1, i64::MAX]),
        ),
        field(
            "plugin_compile_timeout_secs",
            ints(&[1, 60, 3600]),
            ints(&[0, 3601, -1]),
        ),
        field(
            "plugin_memory_limit_bytes",
            ints(&[1_048_576, 67_108_864, 4_294_967_296]),
            ints(&[0, 1_048_575, 4_294_967_297]),
        ),
        field(
            "plugin_quarantine_after_failures",
            ints(&[1, 3]),
            ints(&[0, 4_294_967_296]),
        ),
        field(
            "plugin_quarantine_secs",
            ints(&[1, 300, 3600]),
            ints(&[0, -5, 86_400]),
        ),
    ])
}

fn application_lines() -> BoxedStrategy<Vec<String>> {
    table(vec![
        field("name", strings(&["app", "orders"]), strings(&["", "a b"])),
        field(
            "min_kpu",
            ints(&[1, 2]),
            ints(&[0, 11, 4_294_967_295, 4_294_967_296]),
        ),
        field("max_kpu", ints(&[10, 64]), ints(&[0, 1, 4_294_967_295])),
        field("evaluation_interval_secs", ints(&[1, 10, 60]), ints(&[0])),
        field("update_poll_secs", ints(&[1, 60]), ints(&[0, 1800])),
        field(
            "update_timeout_secs",
            ints(&[1800, 3600]),
            ints(&[0, 1, 59]),
        ),
        field("grace_period_secs", ints(&[0, 1, 300]), ints(&[-1])),
    ])
}

fn metric_lines() -> BoxedStrategy<Vec<String>> {
    table(vec![
        field("id", strings(&["cpu"]), strings(&["lag", "Cpu", "1x", ""])),
        field(
            "namespace",
            strings(&["AWS/KinesisAnalytics", "AWS/Kafka", "Custom/Ns"]),
            strings(&[""]),
        ),
        field(
            "metric_name",
            strings(&["containerCPUUtilization", "MaxOffsetLag"]),
            strings(&[""]),
        ),
        field(
            "dimensions",
            literals(&[
                "{ Application = \"app\" }",
                "{}",
                "{ \"Cluster Name\" = \"c\", Topic = \"t\" }",
            ]),
            literals(&["{ Application = 1 }"]),
        ),
        field(
            "statistic",
            strings(&["Average", "Maximum", "Sum", "p99", "p99.99"]),
            strings(&["p100", "p101", "pxx", "avg"]),
        ),
        field(
            "period_secs",
            ints(&[10, 20, 30, 60, 120]),
            ints(&[45, 0, 86_460, -60]),
        ),
    ])
}

fn alarm_lines() -> BoxedStrategy<Vec<String>> {
    table(vec![
        field(
            "id",
            strings(&["scale-out", "scale-in", "hi.lo_1"]),
            strings(&["a b", ""]),
        ),
        field("metric", strings(&["cpu"]), strings(&["nope", ""])),
        field(
            "comparison",
            strings(&[
                "GreaterThanOrEqualToThreshold",
                "GreaterThanThreshold",
                "LessThanThreshold",
                "LessThanOrEqualToThreshold",
            ]),
            strings(&["Greater"]),
        ),
        field(
            "threshold",
            literals(&["80.0", "20", "-3.5", "1e308"]),
            literals(&["nan", "inf", "-inf"]),
        ),
        field(
            "evaluation_periods",
            ints(&[1, 2, 5]),
            ints(&[0, 8641, 4_294_967_295]),
        ),
        field("datapoints_to_alarm", ints(&[1]), ints(&[0, 6])),
        field(
            "treat_missing_data",
            strings(&["missing", "notBreaching", "breaching", "ignore"]),
            strings(&["zero"]),
        ),
    ])
}

fn plugin_lines() -> BoxedStrategy<Vec<String>> {
    table(vec![
        field(
            "plugin",
            strings(&["step", "../x.wasm"]),
            strings(&["", "dir/"]),
        ),
        field(
            "params",
            literals(&["{}", "{ operation = \"add\", when = 1979-05-27T07:32:00Z }"]),
            literals(&[
                "{ scale_out_alarm = \"nope\" }",
                "{ watch_metrics = [\"cpu\", \"lag\"], x = nan }",
                "{ a_alarm = 3 }",
            ]),
        ),
    ])
}

/// A configuration file built from the real tables and field names with
/// random values and types, in a valid TOML layout (a table's own keys
/// before its sub-tables).
fn structured_config() -> BoxedStrategy<String> {
    let application = (
        application_lines(),
        prop::collection::vec(metric_lines(), 0..2),
        prop::collection::vec(alarm_lines(), 0..3),
        prop::option::weighted(0.95, plugin_lines()),
        prop::collection::vec(plugin_lines(), 0..2),
    )
        .prop_map(|(app, metrics, alarms, policy, interpreters)| {
            let mut text = String::from("[[application]]\n");
            for line in app {
                text.push_str(&line);
                text.push('\n');
            }
            for (header, tables) in [
                ("[[application.metric]]", metrics),
                ("[[application.alarm]]", alarms),
                ("[[application.interpreter]]", interpreters),
            ] {
                for lines in tables {
                    text.push_str(header);
                    text.push('\n');
                    for line in lines {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            }
            if let Some(lines) = policy {
                text.push_str("[application.policy]\n");
                for line in lines {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        });
    (
        prop::option::weighted(0.8, agent_table()),
        prop_oneof![1 => Just(0usize), 6 => Just(1usize), 2 => Just(2usize)]
            .prop_flat_map(move |n| prop::collection::vec(application.clone(), n)),
        prop::option::weighted(0.05, (any::<prop::sample::Index>(), "[a-z_]{1,12}")),
        prop::option::weighted(0.05, any::<prop::sample::Index>()),
    )
        .prop_map(|(agent, applications, unknown, duplicate)| {
            let mut text = String::new();
            if let Some(lines) = agent {
                text.push_str("[agent]\n");
                for line in lines {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            for app in applications {
                text.push_str(&app);
            }
            // A misspelt key after some header, or one line written twice.
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if let Some((at, key)) = unknown {
                let headers: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].starts_with('['))
                    .collect();
                if !headers.is_empty() {
                    lines.insert(headers[at.index(headers.len())] + 1, format!("{key} = 1"));
                }
            }
            if let Some(at) = duplicate
                && !lines.is_empty()
            {
                let i = at.index(lines.len());
                lines.insert(i, lines[i].clone());
            }
            lines.join("\n")
        })
        .boxed()
}

/// An edit of a text: delete a span, insert random characters, or
/// duplicate a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, String),
    DuplicateLine(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (
            any::<prop::sample::Index>(),
            "[ -~\n\t\u{e9}\u{1F600}]{1,12}"
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
        any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        match edit {
            Edit::Delete(at, n) if !chars.is_empty() => {
                let from = at.index(chars.len());
                let to = (from + n).min(chars.len());
                chars.drain(from..to);
            }
            Edit::Delete(..) => {}
            Edit::Insert(at, s) => {
                let from = at.index(chars.len() + 1);
                chars.splice(from..from, s.chars());
            }
            Edit::DuplicateLine(at) => {
                let owned: String = chars.iter().collect();
                let mut lines: Vec<&str> = owned.lines().collect();
                if !lines.is_empty() {
                    let i = at.index(lines.len());
                    lines.insert(i, lines[i]);
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_loader_survives_printable_text(text in "[ -~\t\n]{0,400}") {
        check_load(&text)?;
    }

    #[test]
    fn config_loader_survives_any_unicode_text(text in "\\PC{0,200}(\n\\PC{0,60}){0,6}") {
        check_load(&text)?;
    }

    #[test]
    fn config_loader_survives_random_tables_of_real_fields(text in structured_config()) {
        check_load(&text)?;
    }

    #[test]
    fn config_loader_survives_edits_of_a_valid_example(edits in prop::collection::vec(edit(), 1..6)) {
        check_load(&apply(EXAMPLE, &edits))?;
    }
}

#[test]
fn the_mutated_example_is_valid_before_mutation() {
    // Otherwise the edits above would start from an error and explore little.
    let loaded = load_str(EXAMPLE, Path::new("msf-cpu.toml"));
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

// ------------------------------------------- scenarios, traces, imports --

/// A shipped scenario to mutate: one application with 15 days of past.
const WEEKLY: &str = include_str!("../../tests/scenarios/weekly.toml");

/// A short scenario that names every application key, to run once its
/// numbers are swapped for extremes.
const SHORT: &str = r#"name = "short"
duration_secs = 1800
history_days = 1
history_period_secs = 3600

[[application]]
name = "app"
trace = "diurnal.csv"
load_factor = 1.0
records_per_subtask_per_sec = 1000.0
parallelism_per_kpu = 1
usl_sigma = 0.05
usl_kappa = 0.0005
max_parallelism = 64
account_kpu_limit = 32
initial_kpu = 2
min_kpu = 1
max_kpu = 16
update_secs = 60
metric_delay_secs = 60
cpu_idle_percent = 5.0
noise_percent = 3.0
seed = 7
max_lag_secs = 300.0
"#;

/// Numbers a user may write by mistake, or on purpose at the edges.
const EXTREMES: &[&str] = &[
    "0",
    "1",
    "3",
    "-1",
    "0.0000001",
    "1e-320",
    "99.999",
    "100.0",
    "256",
    "257",
    "100000",
    "4294967295",
    "18446744073709551615",
    "1e308",
    "nan",
    "inf",
];

/// The folder of the shipped scenarios and their traces.
fn scenarios_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios")
}

/// `text` with its `which`-th number (digits, dots and underscores) made
/// `with`; the text itself when it has none.
fn swap_number(text: &str, which: prop::sample::Index, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || matches!(bytes[i], b'.' | b'_'))
            {
                i += 1;
            }
            numbers.push(start..i);
        } else {
            i += 1;
        }
    }
    if numbers.is_empty() {
        return text.to_owned();
    }
    let range = numbers[which.index(numbers.len())].clone();
    format!("{}{with}{}", &text[..range.start], &text[range.end..])
}

/// Loads scenario text as `fuzz.toml`: a refusal names the file.
fn check_scenario(text: &str) -> Result<Option<Scenario>, TestCaseError> {
    match Scenario::from_toml(text, "fuzz.toml", "fuzz", &scenarios_dir()) {
        Ok(scenario) => {
            prop_assert!(!scenario.applications.is_empty());
            prop_assert!(scenario.duration_secs >= 1);
            Ok(Some(scenario))
        }
        Err(error) => {
            prop_assert!(
                error.to_string().contains("fuzz.toml"),
                "the error does not name the file: {error}\n--- text ---\n{text}"
            );
            Ok(None)
        }
    }
}

/// 64 cases, of which about a third are scenarios the loader takes, each
/// run for up to 30 simulated minutes: every policy meets many swapped
/// numbers, in a few seconds of a debug build.
fn run_config() -> Config {
    Config {
        cases: 64,
        ..config()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scenario_loader_survives_edits_of_a_shipped_scenario(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check_scenario(&apply(WEEKLY, &edits))?;
    }

    #[test]
    fn trace_parser_survives_any_text_and_keeps_rates_finite(
        text in "[-0-9.,:eETZ ainf#\n]{0,200}",
        period in prop::sample::select(vec![0.0, -1.0, f64::NAN, 1e-300, 60.0, 1e300]),
    ) {
        for value in [TraceValue::PerSecond, TraceValue::SumPerPeriod { period_secs: period }] {
            match Trace::parse(&text, "fuzz.csv", value) {
                Ok(trace) => {
                    for &(t, rate) in trace.points() {
                        prop_assert!(t.is_finite() && rate.is_finite() && rate >= 0.0,
                            "point ({t}, {rate}) from {text:?}");
                    }
                }
                Err(error) => prop_assert!(error.to_string().contains("fuzz.csv"), "{error}"),
            }
        }
    }

    #[test]
    fn metric_math_parser_survives_any_text(text in r"[-+*/()0-9.eE a-zA-Z_,\[\]]{0,60}") {
        if let Err(error) = math::parse(&text) {
            prop_assert!(!error.message.trim().is_empty(), "{error:?}");
            prop_assert!(error.column <= text.chars().count() + 1, "{error:?} in {text:?}");
        }
    }

    #[test]
    fn import_of_an_edited_reference_template_writes_a_valid_configuration_or_says_why(
        edits in prop::collection::vec(edit(), 1..4),
        which in any::<prop::sample::Index>(),
        with in prop::sample::select(EXTREMES.to_vec()),
    ) {
        let edited = apply(REFERENCE_TEMPLATE, &edits);
        for text in [edited, swap_number(REFERENCE_TEMPLATE, which, with)] {
            match import(Path::new("fuzz.json"), &text, &ParameterValues::new()) {
                // Either the configuration it writes loads, or the errors
                // validate would report are given, naming the template.
                Ok(imported) => if let Err(error) = imported.to_checked_toml() {
                    prop_assert!(error.to_string().contains("fuzz.json"), "{error}");
                },
                Err(error) => prop_assert!(error.to_string().contains("fuzz.json"), "{error}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(run_config())]

    #[test]
    fn a_scenario_the_loader_takes_runs_with_finite_scores_within_its_bounds(
        first in any::<prop::sample::Index>(),
        second in prop::option::of(any::<prop::sample::Index>()),
        with in prop::sample::select(EXTREMES.to_vec()),
        policy in prop::sample::select(vec![
            "seed", "msf-builtin", "flink-operator", "rate", "predictive", "target-tracking",
        ]),
    ) {
        let mut text = swap_number(SHORT, first, with);
        if let Some(second) = second {
            text = swap_number(&text, second, with);
        }
        let Some(mut scenario) = check_scenario(&text)? else {
            return Ok(());
        };
        // A swapped duration may be days long; half an hour shows the same.
        scenario.duration_secs = scenario.duration_secs.min(1800);
        let choice = PolicyChoice { name: policy.to_owned(), params: serde_json::Map::new() };
        let (report, outcome) = bench::run_one(&scenario, &choice, None)
            .map_err(|error| TestCaseError::fail(format!("{policy} on\n{text}\n: {error}")))?;
        let scores = &report.scores;
        for (name, value) in [
            ("kpu_hours", scores.kpu_hours),
            ("cost_usd", scores.cost_usd),
            ("max_lag_secs", scores.max_lag_secs),
            ("p99_lag_secs", scores.p99_lag_secs),
            ("efficiency", scores.efficiency),
        ] {
            prop_assert!(value.is_finite() && value >= 0.0, "{name} = {value} with {policy} on\n{text}");
        }
        let params = &scenario.applications[0].params;
        let (low, high) = (
            params.min_kpu.min(params.initial_kpu),
            params.max_kpu.max(params.initial_kpu),
        );
        let app = &outcome.world.applications()[0];
        for &kpu in &app.history().kpu {
            prop_assert!((low..=high).contains(&kpu), "{kpu} KPU outside {low}..={high} with {policy} on\n{text}");
        }
    }
}

#[test]
fn the_scenarios_to_mutate_are_valid_before_mutation() {
    // Otherwise the properties above would explore only the refusals.
    for (text, name) in [(WEEKLY, "weekly.toml"), (SHORT, "short.toml")] {
        let loaded = Scenario::from_toml(text, name, "fuzz", &scenarios_dir());
        assert!(loaded.is_ok(), "{name}: {:?}", loaded.err());
    }
}

// -------------------------------------------------------------- decisions --

fn status() -> impl Strategy<Value = AppStatus> {
    prop::sample::select(vec![
        AppStatus::Ready,
        AppStatus::Starting,
        AppStatus::Running,
        AppStatus::Updating,
        AppStatus::Autoscaling,
        AppStatus::Stopping,
        AppStatus::ForceStopping,
        AppStatus::RollingBack,
        AppStatus::RolledBack,
        AppStatus::Maintenance,
        AppStatus::Deleting,
        AppStatus::Unknown,
    ])
}

/// A u32 from anywhere, with the edges and small values well represented.
fn any_kpu() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        0u32..40,
        any::<u32>(),
    ]
}

fn application() -> impl Strategy<Value = Application> {
    (
        status(),
        any_kpu(),
        any_kpu(),
        any_kpu(),
        any_kpu(),
        any::<u64>(),
        any::<Option<i64>>(),
        any::<Option<u32>>(),
    )
        .prop_map(
            |(status, kpu, min_kpu, max_kpu, per_kpu, version_id, last_ms, last_secs)| {
                Application {
                    name: "fuzz".to_owned(),
                    status,
                    kpu,
                    parallelism: kpu.saturating_mul(per_kpu),
                    parallelism_per_kpu: per_kpu,
                    min_kpu,
                    max_kpu,
                    version_id,
                    last_rescale_ms: last_ms,
                    last_update_duration_secs: last_secs,
                }
            },
        )
}

/// Reasons a plugin may write: control characters, escapes, long text,
/// multi-byte characters at the cut.
fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{1b}[31mred\u{1b}[0m\r\nforged log line".to_owned()),
        "[\u{0}-\u{1f}\u{7f}\u{85}\u{2028} a-z]{0,40}",
        "\\PC{0,700}",
        "[\u{e9}\u{1F600}\u{0}\n]{0,600}",
        ".{0,64}",
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    (
        prop_oneof![
            1 => Just(Action::Hold),
            3 => any_kpu().prop_map(Action::ScaleTo),
        ],
        reason(),
        prop_oneof![
            Just(None),
            Just(Some(0u32)),
            Just(Some(u32::MAX)),
            any::<u32>().prop_map(Some),
        ],
    )
        .prop_map(|(action, reason, next_evaluation_secs)| Decision {
            action,
            reason,
            next_evaluation_secs,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decision_validation_keeps_every_answer_within_bounds(
        app in application(),
        asked in decision(),
    ) {
        let checked = validate_decision(asked.clone(), &app);
        match checked.action {
            Action::Hold => {}
            Action::ScaleTo(kpu) => {
                prop_assert!(kpu != 0, "scale-to(0) let through: {asked:?} on {app:?}");
                prop_assert!(
                    app.min_kpu <= app.max_kpu,
                    "scaled although min_kpu > max_kpu: {checked:?} on {app:?}"
                );
                prop_assert!(
                    (app.min_kpu.max(1)..=app.max_kpu).contains(&kpu),
                    "{kpu} KPU outside [{}, {}]: {asked:?} -> {checked:?}",
                    app.min_kpu,
                    app.max_kpu
                );
                prop_assert!(kpu != app.kpu, "a scale-to the current KPU: {checked:?} on {app:?}");
                prop_assert!(
                    matches!(asked.action, Action::ScaleTo(_)),
                    "a hold became a scale: {asked:?} -> {checked:?}"
                );
            }
        }
        // A target the policy may have is passed through untouched.
        if let Action::ScaleTo(want) = asked.action
            && want != 0
            && app.min_kpu <= app.max_kpu
            && (app.min_kpu.max(1)..=app.max_kpu).contains(&want)
            && want != app.kpu
        {
            prop_assert_eq!(checked.action, Action::ScaleTo(want));
        }
        prop_assert!(
            !checked.reason.chars().any(char::is_control),
            "a control character in the reason: {:?}",
            checked.reason
        );
        prop_assert!(!checked.reason.trim().is_empty(), "an empty reason");
        // The plugin's text is cut at MAX_REASON_BYTES; the host's own notes
        // (clamping, holding) add a few hundred bytes at most.
        prop_assert!(
            checked.reason.len() <= MAX_REASON_BYTES + 256,
            "a reason of {} bytes",
            checked.reason.len()
        );
        match (asked.next_evaluation_secs, checked.next_evaluation_secs) {
            (None, None) => {}
            (Some(_), Some(secs)) => prop_assert!(
                (MIN_NEXT_EVALUATION_SECS..=MAX_NEXT_EVALUATION_SECS).contains(&secs),
                "next evaluation in {secs} s"
            ),
            (asked, got) => prop_assert!(false, "next_evaluation_secs {asked:?} became {got:?}"),
        }
    }
}

// ------------------------------------------------------------------ alarms --

/// Any f64 including NaN, infinities, zeros of both signs and subnormals.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 2.0),
        -200.0f64..200.0,
        any::<f64>(),
    ]
}

fn comparison() -> impl Strategy<Value = Comparison> {
    prop::sample::select(vec![
        Comparison::GreaterThanOrEqualToThreshold,
        Comparison::GreaterThanThreshold,
        Comparison::LessThanThreshold,
        Comparison::LessThanOrEqualToThreshold,
    ])
}

fn treat_missing() -> impl Strategy<Value = TreatMissingData> {
    prop::sample::select(vec![
        TreatMissingData::Missing,
        TreatMissingData::Breaching,
        TreatMissingData::NotBreaching,
        TreatMissingData::Ignore,
    ])
}

fn alarm_state() -> impl Strategy<Value = AlarmState> {
    prop::sample::select(vec![
        AlarmState::Ok,
        AlarmState::Alarm,
        AlarmState::InsufficientData,
    ])
}

fn rule() -> impl Strategy<Value = AlarmRule> {
    (
        comparison(),
        any_value(),
        prop_oneof![0u32..8, any::<u32>()],
        prop_oneof![0u32..8, any::<u32>()],
        treat_missing(),
    )
        .prop_map(
            |(comparison, threshold, evaluation_periods, datapoints_to_alarm, treat_missing)| {
                AlarmRule {
                    comparison,
                    threshold,
                    evaluation_periods,
                    datapoints_to_alarm,
                    treat_missing,
                }
            },
        )
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        // Around now, on and off 10 s boundaries.
        (1_790_000_000_000i64..1_790_000_600_000).prop_map(|t| t - t % 10_000),
        1_790_000_000_000i64..1_790_000_600_000,
        any::<i64>(),
    ]
}

fn datapoints() -> impl Strategy<Value = Vec<Datapoint>> {
    prop::collection::vec(
        (timestamp(), any_value()).prop_map(|(timestamp_ms, value)| Datapoint {
            timestamp_ms,
            value,
        }),
        0..24,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn alarm_evaluation_reads_nan_as_missing_and_never_panics(
        range in prop::collection::vec(prop::option::of(any_value()), 0..16),
        rule in rule(),
        current in alarm_state(),
    ) {
        let state = evaluate_range(&range, &rule, current);
        let cleaned: Vec<Option<f64>> =
            range.iter().map(|slot| slot.filter(|v| !v.is_nan())).collect();
        prop_assert_eq!(
            state,
            evaluate_range(&cleaned, &rule, current),
            "a NaN datapoint is not read as a missing one: {:?}",
            range
        );
        let real = cleaned.iter().flatten().count();
        if real >= rule.evaluation_periods as usize && rule.evaluation_periods > 0 {
            // Enough real datapoints: CloudWatch judges them, whatever
            // treat_missing_data and the previous state say.
            prop_assert_ne!(state, AlarmState::InsufficientData);
            for other in [TreatMissingData::Missing, TreatMissingData::Ignore, TreatMissingData::Breaching] {
                let again = evaluate_range(
                    &cleaned,
                    &AlarmRule { treat_missing: other, ..rule },
                    AlarmState::InsufficientData,
                );
                prop_assert_eq!(state, again);
            }
        }
    }

    #[test]
    fn a_series_becomes_a_range_of_its_own_values(
        points in datapoints(),
        period_secs in prop_oneof![Just(0u32), Just(10u32), Just(60u32), Just(u32::MAX), any::<u32>()],
        periods in 0usize..64,
        now_ms in timestamp(),
    ) {
        let range = range_from_series(&points, period_secs, periods, now_ms);
        prop_assert_eq!(range.len(), periods);
        for value in range.iter().flatten() {
            prop_assert!(!value.is_nan(), "a NaN slot");
            prop_assert!(
                points.iter().any(|p| p.value.to_bits() == value.to_bits()),
                "{} is not one of the datapoints",
                value
            );
        }
    }

    #[test]
    fn the_alarm_tracker_survives_any_datapoints(
        alarms in prop::collection::vec(
            (comparison(), -200.0f64..200.0, 1u32..6, 0u32..6, treat_missing(), any::<bool>()),
            1..4,
        ),
        series in prop::collection::vec(datapoints(), 0..3),
        now_ms in prop::collection::vec(timestamp(), 1..5),
    ) {
        let configs: Vec<AlarmConfig> = alarms
            .iter()
            .enumerate()
            .map(|(i, (comparison, threshold, n, m, treat, on_a))| AlarmConfig {
                id: format!("alarm-{i}"),
                source: Default::default(),
                alarm_name: None,
                metric: Some(if *on_a { "a".to_owned() } else { "b".to_owned() }),
                comparison: Some(*comparison),
                threshold: Some(*threshold),
                evaluation_periods: Some(*n),
                datapoints_to_alarm: (*m > 0).then_some((*m).min(*n)),
                treat_missing_data: Some(*treat),
            })
            .collect();
        let series: Vec<Series> = series
            .into_iter()
            .enumerate()
            .map(|(i, points)| Series {
                query: MetricQuery {
                    id: if i == 0 { "a".to_owned() } else { "b".to_owned() },
                    namespace: "AWS/KinesisAnalytics".to_owned(),
                    metric_name: "containerCPUUtilization".to_owned(),
                    dimensions: Default::default(),
                    statistic: "Average".to_owned(),
                    period_secs: 10,
                    expression: None,
                },
                points,
            })
            .collect();
        let mut tracker = AlarmTracker::new(&configs, now_ms[0]);
        for now in &now_ms {
            let statuses = tracker.update(&series, *now);
            prop_assert_eq!(statuses.len(), configs.len());
            for (status, config) in statuses.iter().zip(&configs) {
                prop_assert_eq!(&status.name, &config.id);
            }
        }
    }
}
