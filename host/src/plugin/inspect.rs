//! What `flinkscale plugin check | describe | bench` need beyond loading and
//! calling a plugin: the component's own facts (size, sha256, exports, how
//! long it takes to compile) and a canned evaluation to call it on.
//!
//! The facts come from compiling the component once more, outside the
//! [`super::PluginHost`], with an engine configured as the host's: the host
//! caches what it compiles and keeps the compiled component to itself, and
//! an uncached compile is exactly the number `check` and `bench` report.
//! The canned evaluation is fixed (3 metrics of 20 datapoints, 2 alarms, one
//! of them in ALARM) so that every run of `check` or `bench` asks the same
//! question, and its ids are those the built-ins read by default, so that
//! [`canned_params`] can point the built-ins that must be told an alarm or a
//! metric at it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{ParameterKind, PluginKind, PluginMetadata};
use crate::metrics::{Datapoint, MetricQuery, Series};
use crate::model::{AlarmState, AlarmStatus, Application, Evaluation};
use crate::target::AppStatus;

/// What the canned evaluation's "now" is: a fixed instant (2026-01-01
/// 00:00:00 UTC), so that a plugin's answer does not depend on the day it
/// was checked.
pub const CANNED_NOW_MS: i64 = 1_767_225_600_000;

/// The period of the canned series, in seconds.
const CANNED_PERIOD_SECS: u32 = 60;

/// Datapoints per canned series.
const CANNED_POINTS: usize = 20;

/// The canned alarm in ALARM: the one a policy told to scale out on it
/// should act on.
pub const CANNED_SCALE_OUT_ALARM: &str = "scale_out";

/// The canned alarm in OK.
pub const CANNED_SCALE_IN_ALARM: &str = "scale_in";

/// What is known about a component file without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFacts {
    /// Its size in bytes.
    pub size_bytes: usize,
    /// Lowercase hex sha256 of its bytes (what the agent's logs print).
    pub sha256: String,
    /// The names of everything it exports, e.g.
    /// `flinkscale:plugin/policy@0.1.0`.
    pub exports: Vec<String>,
    /// How long one compile took, or (`from_cache`) getting an earlier
    /// compile from the plugin cache.
    pub compile: Duration,
    /// Whether the compiled component came from the plugin cache (this
    /// process's, or the cache folder's) instead of a compile.
    pub from_cache: bool,
}

impl ComponentFacts {
    /// The facts of `component`, compiled by `engine` from `bytes` in
    /// `compile` (or taken from the plugin cache, `from_cache`).
    pub(crate) fn of(
        engine: &Engine,
        component: &Component,
        bytes: &[u8],
        compile: Duration,
        from_cache: bool,
    ) -> Self {
        let exports = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        Self {
            size_bytes: bytes.len(),
            sha256: super::builtin::sha256_hex(bytes),
            exports,
            compile,
            from_cache,
        }
    }
}

/// A compiler for [`Self::component_facts`]: a wasmtime engine configured as the
/// plugin host's (component model, epoch interruption), so that compile
/// times are the host's. Build it once to time several compiles.
pub struct Compiler {
    engine: Engine,
}

impl Compiler {
    /// Starts the engine.
    pub fn new() -> Result<Self, String> {
        Engine::new(&super::engine::engine_config())
            .map(|engine| Self { engine })
            .map_err(|e| format!("{e:#}"))
    }

    /// Compiles `bytes` (no cache: wasmtime is built without one) and
    /// reports the component's facts; the error is the compiler's, for a
    /// file that is not a component this host can load.
    pub fn component_facts(&self, bytes: &[u8]) -> Result<ComponentFacts, String> {
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| super::engine::describe_compile_error(bytes, &e))?;
        let compile = started.elapsed();
        Ok(ComponentFacts::of(
            &self.engine,
            &component,
            bytes,
            compile,
            false,
        ))
    }
}

/// The WIT name of the world a plugin kind exports.
pub fn world_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Policy => "scaling-policy",
        PluginKind::Interpreter => "metric-interpreter",
    }
}

/// The params `check` and `bench` give a plugin when the user gives none.
/// The built-ins that must be told which alarm or metric to read are
/// pointed at the canned evaluation's. Any other plugin that declares its
/// parameters (contract 0.2.0) gets each alarm or metric id it declares as
/// required or with a default pointed there too (a default id such as
/// `"hot"` names an alarm the canned evaluation does not have), by
/// meaning where it shows: a default that is a canned id is kept
/// (`busy_metric = "busy"`), else a canned id in the key's name is taken
/// (`records_in_metric` gets `records_in`, `scale_in_alarm` gets
/// `scale_in`), else the ids no key took are given in turn (alarms
/// [`CANNED_SCALE_OUT_ALARM`] then [`CANNED_SCALE_IN_ALARM`], metrics the
/// canned series in their order; once all are taken, in turn again), so
/// that a new plugin that reads an alarm passes `check` as written. Every
/// other key is left out, so the plugin holds its defaults (or refuses,
/// naming a required key that `--params` must give); an optional id with
/// no default stays absent, as it would in a configuration that does not
/// use it.
pub fn canned_params(metadata: &PluginMetadata) -> String {
    let builtin = match metadata.name.as_str() {
        "step" => Some(r#"{"scale_out_alarm":"scale_out","scale_in_alarm":"scale_in"}"#),
        "backlog-seconds" => {
            Some(r#"{"backlog_metric":"backlog","processing_rate_metric":"records_in"}"#)
        }
        "expression" => Some(
            r#"{"signals":{"backlog_growth":"rate(backlog)","hot":"(avg(busy) > 800) * (backlog > 1e5)"}}"#,
        ),
        _ => None,
    };
    if let Some(params) = builtin {
        return params.to_owned();
    }
    let alarms: Vec<String> = [CANNED_SCALE_OUT_ALARM, CANNED_SCALE_IN_ALARM]
        .map(str::to_owned)
        .to_vec();
    let metrics: Vec<String> = canned_series().into_iter().map(|s| s.query.id).collect();
    let declared: Vec<&super::Parameter> = metadata
        .parameters
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.required || p.default_json.is_some())
        .collect();
    let ids_of = |kind: ParameterKind| match kind {
        ParameterKind::AlarmId => Some(&alarms),
        ParameterKind::MetricId => Some(&metrics),
        _ => None,
    };
    // By meaning first, so that an id a key means is not taken by a key
    // that only gets one in turn.
    let mut chosen: BTreeMap<&str, String> = BTreeMap::new();
    for parameter in &declared {
        if let Some(id) = ids_of(parameter.kind).and_then(|ids| meant(parameter, ids)) {
            chosen.insert(parameter.name.as_str(), id);
        }
    }
    let mut params = serde_json::Map::new();
    let mut next = [0usize; 2];
    for parameter in &declared {
        let value = match parameter.kind {
            ParameterKind::AlarmIds => serde_json::json!(alarms),
            ParameterKind::MetricIds => serde_json::json!(metrics),
            kind => {
                let Some(ids) = ids_of(kind) else {
                    continue;
                };
                let id = match chosen.get(parameter.name.as_str()) {
                    Some(id) => id.clone(),
                    None => {
                        let turn = &mut next[usize::from(kind == ParameterKind::MetricId)];
                        let id = in_turn(ids, &chosen, turn);
                        chosen.insert(parameter.name.as_str(), id.clone());
                        id
                    }
                };
                serde_json::json!(id)
            }
        };
        params.insert(parameter.name.clone(), value);
    }
    serde_json::Value::Object(params).to_string()
}

/// The canned id `parameter` means, if it shows: its default when that is
/// one of `ids`, else the longest of them its name holds.
fn meant(parameter: &super::Parameter, ids: &[String]) -> Option<String> {
    let default = parameter
        .default_json
        .as_deref()
        .and_then(|d| serde_json::from_str::<String>(d).ok());
    if let Some(default) = default.filter(|d| ids.contains(d)) {
        return Some(default);
    }
    ids.iter()
        .filter(|id| parameter.name.contains(id.as_str()))
        .max_by_key(|id| id.len())
        .cloned()
}

/// The next of `ids` in turn that no key has taken yet (`chosen`), or,
/// when every one is taken, the next in turn.
fn in_turn(ids: &[String], chosen: &BTreeMap<&str, String>, turn: &mut usize) -> String {
    let free = ids.iter().find(|id| !chosen.values().any(|c| c == *id));
    let id = free
        .cloned()
        .unwrap_or_else(|| ids[*turn % ids.len()].clone());
    *turn += 1;
    id
}

/// The application of the canned evaluation: running at 4 KPU of 1..=16.
pub fn canned_application() -> Application {
    Application {
        name: "canned".to_owned(),
        status: AppStatus::Running,
        kpu: 4,
        parallelism: 4,
        parallelism_per_kpu: 1,
        min_kpu: 1,
        max_kpu: 16,
        version_id: 7,
        last_rescale_ms: Some(CANNED_NOW_MS - 3_600_000),
        last_update_duration_secs: Some(75),
    }
}

/// The canned series, ending one period before [`CANNED_NOW_MS`]: a busy
/// job (`busy`, busy time in ms per second, about 900), its input
/// (`records_in`, records per second, about 4 000) and a growing backlog
/// (`backlog`, records).
pub fn canned_series() -> Vec<Series> {
    let period_ms = i64::from(CANNED_PERIOD_SECS) * 1000;
    let first_ms = CANNED_NOW_MS - period_ms * (CANNED_POINTS as i64 + 1);
    let series =
        |id: &str, metric_name: &str, statistic: &str, value: &dyn Fn(f64) -> f64| Series {
            query: MetricQuery {
                id: id.to_owned(),
                namespace: "AWS/KinesisAnalytics".to_owned(),
                metric_name: metric_name.to_owned(),
                dimensions: BTreeMap::from([("Application".to_owned(), "canned".to_owned())]),
                statistic: statistic.to_owned(),
                period_secs: CANNED_PERIOD_SECS,
                expression: None,
            },
            points: (0..CANNED_POINTS)
                .map(|i| Datapoint {
                    timestamp_ms: first_ms + period_ms * i as i64,
                    value: value(i as f64),
                })
                .collect(),
        };
    vec![
        series("busy", "busyTimeMsPerSecond", "Average", &|i| {
            880.0 + (i * 7.0) % 40.0
        }),
        series("records_in", "numRecordsInPerSecond", "Sum", &|i| {
            4_000.0 + (i * 131.0) % 500.0
        }),
        series("backlog", "records_lag_max", "Maximum", &|i| {
            50_000.0 + i * 12_000.0
        }),
    ]
}

/// The canned evaluation: [`canned_application`], [`canned_series`], the
/// alarm [`CANNED_SCALE_OUT_ALARM`] in ALARM for the last 3 minutes and
/// [`CANNED_SCALE_IN_ALARM`] in OK, and no signals.
pub fn canned_evaluation() -> Evaluation {
    Evaluation {
        now_ms: CANNED_NOW_MS,
        app: canned_application(),
        metrics: canned_series(),
        alarms: vec![
            AlarmStatus {
                name: CANNED_SCALE_OUT_ALARM.to_owned(),
                state: AlarmState::Alarm,
                since_ms: CANNED_NOW_MS - 180_000,
            },
            AlarmStatus {
                name: CANNED_SCALE_IN_ALARM.to_owned(),
                state: AlarmState::Ok,
                since_ms: CANNED_NOW_MS - 7_200_000,
            },
        ],
        signals: Vec::new(),
    }
}

/// The canned evaluation as the agent's first one sees an application:
/// the same application, no datapoint in any series yet, every alarm
/// `INSUFFICIENT_DATA` (`validate` asks a policy so too). A policy must
/// hold then, or at least answer within the contract.
pub fn canned_start_evaluation() -> Evaluation {
    let mut evaluation = canned_evaluation();
    for series in &mut evaluation.metrics {
        series.points.clear();
    }
    for alarm in &mut evaluation.alarms {
        alarm.state = AlarmState::InsufficientData;
        alarm.since_ms = evaluation.now_ms;
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Parameter;

    #[test]
    fn the_canned_evaluation_is_three_series_of_twenty_and_two_alarms_one_firing() {
        let evaluation = canned_evaluation();
        assert_eq!(evaluation.metrics.len(), 3);
        assert!(evaluation.metrics.iter().all(|s| s.points.len() == 20));
        let last = evaluation.metrics[0].points.last().map(|p| p.timestamp_ms);
        assert!(last.is_some_and(|t| t < evaluation.now_ms));
        let firing: Vec<_> = evaluation
            .alarms
            .iter()
            .filter(|a| a.state == AlarmState::Alarm)
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(firing, [CANNED_SCALE_OUT_ALARM]);
        assert_eq!(evaluation.alarms.len(), 2);
    }

    /// Metadata of a plugin called `name` declaring `parameters`.
    fn declaring(name: &str, parameters: Vec<Parameter>) -> PluginMetadata {
        PluginMetadata {
            name: name.to_owned(),
            version: "0.1.0".to_owned(),
            kind: PluginKind::Policy,
            contract_version: "0.2.0",
            summary: String::new(),
            parameters: Some(parameters),
        }
    }

    fn parameter(
        name: &str,
        kind: ParameterKind,
        required: bool,
        default: Option<&str>,
    ) -> Parameter {
        Parameter {
            name: name.to_owned(),
            kind,
            required,
            default_json: default.map(str::to_owned),
            meaning: "m".to_owned(),
        }
    }

    #[test]
    fn canned_params_name_only_what_the_canned_evaluation_has() {
        let evaluation = canned_evaluation();
        for name in ["step", "backlog-seconds"] {
            let params: serde_json::Value =
                serde_json::from_str(&canned_params(&declaring(name, Vec::new())))
                    .expect("canned params are JSON");
            for (key, value) in params.as_object().expect("an object") {
                let id = value.as_str().expect("an id");
                let known = if key.ends_with("_alarm") {
                    evaluation.alarms.iter().any(|a| a.name == id)
                } else {
                    evaluation.metrics.iter().any(|s| s.query.id == id)
                };
                assert!(
                    known,
                    "{name}: {key} = {id:?} is not in the canned evaluation"
                );
            }
        }
        assert_eq!(canned_params(&declaring("some-plugin", Vec::new())), "{}");
    }

    /// A new plugin that reads an alarm (the README's `plus-one`, in Rust
    /// required, in Python and JavaScript with the default `busy`) passes
    /// `check` with no `--params`: its ids point at the canned
    /// evaluation's, and nothing else is made up.
    #[test]
    fn a_plugins_required_alarm_and_metric_ids_point_at_the_canned_evaluation() {
        let metadata = declaring(
            "plus-one",
            vec![
                parameter("alarm", ParameterKind::AlarmId, true, None),
                parameter("calm_alarm", ParameterKind::AlarmId, true, None),
                parameter("rate_metric", ParameterKind::MetricId, true, None),
                parameter("all", ParameterKind::MetricIds, true, None),
                parameter("step", ParameterKind::Integer, false, Some("1")),
                parameter("optional", ParameterKind::AlarmId, false, None),
                parameter(
                    "busy_alarm",
                    ParameterKind::AlarmId,
                    false,
                    Some("\"busy\""),
                ),
                parameter("label", ParameterKind::Text, true, None),
            ],
        );
        let params: serde_json::Value =
            serde_json::from_str(&canned_params(&metadata)).expect("JSON");
        assert_eq!(
            params,
            serde_json::json!({
                "alarm": CANNED_SCALE_OUT_ALARM,
                "calm_alarm": CANNED_SCALE_IN_ALARM,
                "rate_metric": "busy",
                "all": ["busy", "records_in", "backlog"],
                "busy_alarm": CANNED_SCALE_OUT_ALARM,
            })
        );
    }

    /// Ids go by meaning where it shows: `rate`'s `records_in_metric`
    /// declared before its `busy_metric` got `busy` (busy time read as an
    /// input rate of 1093 records/s, a decision of parallelism 16). A key
    /// that gets an id in turn gets one no other key took, whatever the
    /// order: `input`, declared before `busy_metric`, gets `backlog`.
    #[test]
    fn canned_ids_go_by_the_default_or_the_name_before_their_turn() {
        let metadata = declaring(
            "some-rate",
            vec![
                parameter(
                    "records_in_metric",
                    ParameterKind::MetricId,
                    false,
                    Some("\"records_in\""),
                ),
                parameter("input", ParameterKind::MetricId, true, None),
                parameter(
                    "busy_metric",
                    ParameterKind::MetricId,
                    false,
                    Some("\"busy\""),
                ),
                parameter("scale_in_alarm", ParameterKind::AlarmId, true, None),
                parameter("scale_out_alarm", ParameterKind::AlarmId, true, None),
            ],
        );
        let params: serde_json::Value =
            serde_json::from_str(&canned_params(&metadata)).expect("JSON");
        assert_eq!(
            params,
            serde_json::json!({
                "records_in_metric": "records_in",
                "busy_metric": "busy",
                "input": "backlog",
                "scale_in_alarm": CANNED_SCALE_IN_ALARM,
                "scale_out_alarm": CANNED_SCALE_OUT_ALARM,
            })
        );
    }

    #[test]
    fn a_file_that_is_not_a_component_is_refused_with_the_compilers_reason() {
        let compiler = Compiler::new().expect("the engine starts");
        let error = compiler
            .component_facts(b"not wasm")
            .expect_err("text is no component");
        assert!(!error.is_empty());
    }
}
