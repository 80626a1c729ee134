//! Agent configurations for simulated runs: which metrics, alarms, timings
//! and parameters a policy gets when `flinkscale simulate` or `bench` is
//! given only a policy name.
//!
//! A preset is written as the TOML a user would write, then loaded through
//! the normal validation, so a simulated agent is configured exactly like a
//! real one. Every application of the scenario gets the same preset, with
//! its own name, bounds and source-system dimensions.

use std::fmt::Write as _;
use std::path::Path;

use super::{Scenario, ScenarioApp};
use crate::config::load::{self, ConfigErrors, LoadedConfig};

/// The policies with a preset, by the name users give.
pub const PRESETS: &[&str] = &[
    "seed",
    "msf-builtin",
    "flink-operator",
    "hold",
    "target-tracking",
    "rate",
    "predictive",
];

/// A policy to simulate: a preset name, or a plugin name/path with the
/// standard metrics and no alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChoice {
    /// The name given (`seed`, `rate`, `./my.wasm`, ...).
    pub name: String,
    /// Parameters that override the preset's, as a JSON object.
    pub params: serde_json::Map<String, serde_json::Value>,
}

struct Preset {
    plugin: String,
    /// The ids of the standard metrics the policy reads, the only ones it
    /// fetches (GetMetricData is billed per metric): `cpu` for the
    /// alarm-driven presets (the reference design fetches one metric, and
    /// so does its preset), none for `hold`. `None`: all of them (a plugin
    /// the presets do not know).
    reads: Option<&'static [&'static str]>,
    /// `evaluation_interval_secs`; `None` for the default (the shortest
    /// metric period).
    evaluation_interval_secs: Option<u32>,
    update_poll_secs: u32,
    grace_period_secs: u32,
    /// `[[application.alarm]]` tables (metric ids of the standard set).
    alarms: &'static str,
    params: serde_json::Map<String, serde_json::Value>,
    /// `[application.policy] history_days`: days of history read at the
    /// first evaluation (a scenario without a past has none to give).
    history_days: u32,
}

fn params(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// The reference design's alarms: CPU Maximum > 80 for 5 of 5 minutes, <= 20
/// for 5 of 5.
const SEED_ALARMS: &str = r#"
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 80.0
evaluation_periods = 5
datapoints_to_alarm = 5

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanOrEqualToThreshold"
threshold = 20.0
evaluation_periods = 5
datapoints_to_alarm = 5
"#;

/// MSF's own rule: CPU Maximum >= 75 for 15 consecutive minutes doubles,
/// < 10 for 6 hours halves.
const MSF_ALARMS: &str = r#"
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanOrEqualToThreshold"
threshold = 75.0
evaluation_periods = 15
datapoints_to_alarm = 15

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanThreshold"
threshold = 10.0
evaluation_periods = 360
datapoints_to_alarm = 360
"#;

fn preset(name: &str) -> Preset {
    let step = |factor: u32| {
        params(serde_json::json!({
            "scale_out_alarm": "scale-out",
            "scale_in_alarm": "scale-in",
            "operation": "multiply",
            "scale_out_factor": factor,
            "scale_in_factor": factor,
        }))
    };
    match name {
        "seed" => Preset {
            plugin: "step".into(),
            reads: Some(&["cpu"]),
            evaluation_interval_secs: None,
            update_poll_secs: 60,
            grace_period_secs: 300,
            alarms: SEED_ALARMS,
            params: step(2),
            history_days: 0,
        },
        "msf-builtin" => Preset {
            plugin: "step".into(),
            reads: Some(&["cpu"]),
            evaluation_interval_secs: None,
            update_poll_secs: 60,
            grace_period_secs: 300,
            alarms: MSF_ALARMS,
            params: step(2),
            history_days: 0,
        },
        // The Flink Kubernetes Operator's autoscaler: it reads busy time,
        // records in and the source's lag (`backlog`), and keeps its own
        // stabilisation interval and metric window after a rescale, so the
        // grace period only covers the restart. It evaluates once a
        // minute, the operator's default reconcile interval.
        "flink-operator" => Preset {
            plugin: "flink-operator".into(),
            reads: Some(RATE_METRICS),
            evaluation_interval_secs: Some(60),
            update_poll_secs: 15,
            grace_period_secs: 15,
            alarms: "",
            params: serde_json::Map::new(),
            history_days: 0,
        },
        // The observe-only baseline: nothing to time, nothing to read.
        "hold" => Preset {
            plugin: "hold".into(),
            reads: Some(&[]),
            evaluation_interval_secs: None,
            update_poll_secs: 15,
            grace_period_secs: 60,
            alarms: "",
            params: serde_json::Map::new(),
            history_days: 0,
        },
        // The metric-driven policies ignore datapoints from before the last
        // rescale themselves, so the grace period only has to cover the
        // restart; a 15 s poll sees the end of an update (and a 15 s
        // evaluation a newly published period) without waiting a whole
        // minute.
        "target-tracking" => Preset {
            plugin: "target-tracking".into(),
            // Busy time; CPU is its fallback where busy time is not
            // configured.
            reads: Some(&["busy"]),
            evaluation_interval_secs: Some(15),
            update_poll_secs: 15,
            grace_period_secs: 15,
            alarms: "",
            params: serde_json::Map::new(),
            history_days: 0,
        },
        // `rate` with a forecast on top: the same metrics and timings, and
        // the 15 days of history CloudWatch keeps, read at start.
        "rate" | "predictive" => Preset {
            plugin: name.into(),
            reads: Some(RATE_METRICS),
            evaluation_interval_secs: Some(15),
            update_poll_secs: 15,
            grace_period_secs: 15,
            alarms: "",
            params: serde_json::Map::new(),
            history_days: if name == "predictive" { 15 } else { 0 },
        },
        other => Preset {
            plugin: other.into(),
            reads: None,
            evaluation_interval_secs: None,
            update_poll_secs: 15,
            grace_period_secs: 60,
            alarms: "",
            params: serde_json::Map::new(),
            history_days: 0,
        },
    }
}

/// What `rate`, `predictive` and `flink-operator` read: records in, busy
/// time and the source's backlog (by their default metric ids).
const RATE_METRICS: &[&str] = &["records_in", "busy", "backlog"];

/// Which of the standard metrics a preset's configuration fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricSet {
    /// Those its policy reads (the presets' default): a metric nobody
    /// reads is a metric paid for. A policy whose parameters rename a
    /// metric (`*_metric`) gets them all.
    Read,
    /// All seven standard metrics, whatever the policy reads (to show that
    /// the others change no decision).
    Standard,
}

/// The standard metrics every simulated application publishes, by id: all
/// of them, or the ones in `only`, each with the model's publication delay
/// as its `min_publication_delay_secs` promise (the simulator publishes a
/// period exactly `metric_delay_secs` after it ends; none when that is 0).
fn metrics(app: &ScenarioApp, only: Option<&[&str]>) -> String {
    let n = &app.name;
    let s = &app.sources;
    let delay = app.params.metric_delay_secs;
    let promise = if (1..=crate::config::validate::MAX_PUBLICATION_DELAY_SECS).contains(&delay) {
        format!("min_publication_delay_secs = {delay}\n")
    } else {
        String::new()
    };
    let wanted = |id: &str| only.is_none_or(|ids| ids.contains(&id));
    let msf = format!("Application = {n:?}");
    let kafka = format!(
        "\"Cluster Name\" = {:?}, \"Consumer Group\" = {:?}, Topic = {:?}",
        s.cluster_name, s.consumer_group, s.topic
    );
    let kinesis = format!("StreamName = {:?}", s.stream_name);
    let mut out = String::new();
    for (id, namespace, metric, stat, dimensions) in [
        (
            "cpu",
            "AWS/KinesisAnalytics",
            "containerCPUUtilization",
            "Maximum",
            &msf,
        ),
        (
            "busy",
            "AWS/KinesisAnalytics",
            "busyTimeMsPerSecond",
            "Average",
            &msf,
        ),
        (
            "records_in",
            "AWS/KinesisAnalytics",
            "numRecordsInPerSecond",
            "Average",
            &msf,
        ),
        (
            "lag_ms",
            "AWS/KinesisAnalytics",
            "millisBehindLatest",
            "Maximum",
            &msf,
        ),
        ("kpus", "AWS/KinesisAnalytics", "KPUs", "Maximum", &msf),
        ("backlog", "AWS/Kafka", "SumOffsetLag", "Maximum", &kafka),
        (
            "iterator_age_ms",
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            "Maximum",
            &kinesis,
        ),
    ] {
        if wanted(id) {
            let _ = write!(
                out,
                "\n[[application.metric]]\nid = {id:?}\nnamespace = {namespace:?}\nmetric_name = {metric:?}\ndimensions = {{ {dimensions} }}\nstatistic = {stat:?}\nperiod_secs = 60\n{promise}"
            );
        }
    }
    out
}

fn toml_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "\"\"".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k:?} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// The configuration text for `choice` on every application of
/// `scenario`, with `plugin_dir` if one is given (else the default, which
/// [`config`] then ignores in favour of the built-ins).
pub fn config_text(
    scenario: &Scenario,
    choice: &PolicyChoice,
    plugin_dir: Option<&Path>,
) -> String {
    config_text_with(scenario, choice, plugin_dir, MetricSet::Read)
}

/// [`config_text`] with the metrics of `set`.
pub fn config_text_with(
    scenario: &Scenario,
    choice: &PolicyChoice,
    plugin_dir: Option<&Path>,
    set: MetricSet,
) -> String {
    let preset = preset(&choice.name);
    let mut params = preset.params.clone();
    params.extend(choice.params.clone());
    let renamed = choice.params.keys().any(|key| key.ends_with("_metric"));
    let only = match set {
        MetricSet::Read if !renamed => preset.reads,
        _ => None,
    };
    let mut out = String::from("[agent]\n");
    if let Some(dir) = plugin_dir {
        let _ = writeln!(out, "plugin_dir = {:?}", dir.to_string_lossy());
    }
    out.push_str("plugin_timeout_ms = 1000\n");
    for app in &scenario.applications {
        let p = &app.params;
        let _ = write!(
            out,
            "\n[[application]]\nname = {:?}\nmin_kpu = {}\nmax_kpu = {}\nupdate_poll_secs = {}\nupdate_timeout_secs = 3600\ngrace_period_secs = {}\n",
            app.name, p.min_kpu, p.max_kpu, preset.update_poll_secs, preset.grace_period_secs
        );
        if let Some(secs) = preset.evaluation_interval_secs {
            let _ = writeln!(out, "evaluation_interval_secs = {secs}");
        }
        out.push_str(&metrics(app, only));
        out.push_str(preset.alarms);
        let _ = write!(
            out,
            "\n[application.policy]\nplugin = {:?}\nparams = {}\n",
            preset.plugin,
            toml_value(&serde_json::Value::Object(params.clone()))
        );
        if preset.history_days > 0 {
            let _ = writeln!(out, "history_days = {}", preset.history_days);
        }
    }
    out
}

/// The validated configuration for `choice` on `scenario`, with plugin
/// names looked up in `plugin_dir` (a file there overrides the built-in of
/// its name), or among the built-ins alone when it is `None`.
pub fn config(
    scenario: &Scenario,
    choice: &PolicyChoice,
    plugin_dir: Option<&Path>,
) -> Result<LoadedConfig, ConfigErrors> {
    config_with(scenario, choice, plugin_dir, MetricSet::Read)
}

/// [`config`] with the metrics of `set`.
pub fn config_with(
    scenario: &Scenario,
    choice: &PolicyChoice,
    plugin_dir: Option<&Path>,
    set: MetricSet,
) -> Result<LoadedConfig, ConfigErrors> {
    let text = config_text_with(scenario, choice, plugin_dir, set);
    // A made-up file in the current folder: a plugin path the user gave
    // (`./mine.wasm`, `target/.../mine.wasm`) is relative to where they
    // run the command.
    let origin = std::env::current_dir()
        .unwrap_or_default()
        .join(format!("<preset {}>.toml", choice.name.replace('/', "_")));
    let mut loaded = load::load_str(&text, &origin)?;
    if plugin_dir.is_none() {
        loaded.resolve_plugins_in(None);
    }
    Ok(loaded)
}

/// An error of the configuration made from `--policy` and `--params`
/// (`simulate`, `bench`), in those words: `--params: KEY: ...` for a parameter
/// when `--params` was given (else `the params of policy NAME ...`: the
/// preset's, or none), `--policy: ...` for the plugin, else the
/// field as it is.
pub fn in_flags(
    error: &crate::config::load::ConfigError,
    policy: &str,
    params_given: bool,
) -> String {
    let params = if !params_given {
        format!("the params of policy {policy:?} (no --params given): ")
    } else {
        "--params: ".to_owned()
    };
    let mut what = error.what();
    for (prefix, flag) in [
        (".policy.params.", params.as_str()),
        (".policy.params: ", params.as_str()),
        (".policy.plugin: ", "--policy: "),
    ] {
        if let Some(at) = what.find(prefix) {
            what = format!("{flag}{}", &what[at + prefix.len()..]);
            break;
        }
    }
    // A plugin given by name runs with the standard metrics and no alarm:
    // one that needs alarms (`step`) cannot be configured by flags alone.
    if !PRESETS.contains(&policy) && what.contains("alarm") {
        what.push_str(
            "; a policy given by name or file gets the standard metrics but no alarm: \
             --policy seed is `step` with the reference design's alarms (msf-builtin with \
             MSF's), or give --config FILE with your alarms (`flinkscale example msf-cpu` \
             has two; name its application `app`, as the shipped scenarios do)",
        );
    }
    what
}
