//! What a contract 0.2.0 plugin declares about its `params`, checked by the
//! host: the declarations themselves (a plugin is untrusted, and its
//! declarations end up in logs and documentation), and an application's
//! params against them, before `configure`, so that a typo is reported the
//! same way whichever plugin it is for, with the valid keys and the closest
//! one. Pure: plain values in, plain values out.

use std::collections::HashSet;

use serde_json::Value;

use super::validate::sanitize_text;
use super::{Parameter, ParameterKind, PluginMetadata};
use crate::config::load::edit_distance;
use crate::config::validate::{FieldPath, Problem, valid_list, with_article};
use crate::config::{ApplicationConfig, PluginConfig};

/// Most parameters a plugin may declare.
pub const MAX_PARAMETERS: usize = 64;
/// Longest parameter name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest parameter meaning, in bytes.
pub const MAX_MEANING_BYTES: usize = 1024;

/// The longest default a plugin may declare for a parameter, as JSON
/// text: `describe` prints it and `validate` shows it.
const MAX_DEFAULT_BYTES: usize = 4096;

/// Checks a plugin's declared parameters: at most [`MAX_PARAMETERS`], each
/// named (at most [`MAX_NAME_BYTES`], no spaces or control characters) and
/// once, a meaning of at most [`MAX_MEANING_BYTES`] (its control characters
/// become spaces), and a default that is JSON of the declared kind, given
/// only for an optional key. The error says what is wrong with every
/// parameter that is (the first problem of each, joined by `; `), so that
/// an author fixes them in one build, for a `FailureClass::Invalid`.
pub(crate) fn check_declarations(declared: Vec<Parameter>) -> Result<Vec<Parameter>, String> {
    if declared.len() > MAX_PARAMETERS {
        return Err(format!(
            "the plugin declares {} parameters; at most {MAX_PARAMETERS} are allowed",
            declared.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    let mut checked = Vec::with_capacity(declared.len());
    for mut parameter in declared {
        match declaration_problem(&parameter, &mut seen) {
            Some(problem) => problems.push(problem),
            None => {
                parameter.meaning = sanitize_text(&parameter.meaning, MAX_MEANING_BYTES);
                checked.push(parameter);
            }
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems.join("; "))
    }
}

/// What is wrong with one declared parameter, if anything: the first
/// problem found. `seen` holds the names declared before it.
fn declaration_problem(parameter: &Parameter, seen: &mut HashSet<String>) -> Option<String> {
    let shown = sanitize_text(&parameter.name, MAX_NAME_BYTES);
    if parameter.name.is_empty() {
        return Some("the plugin declares a parameter with an empty name".to_owned());
    }
    if parameter.name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "the plugin declares parameter {shown:?}, whose name is {} bytes long; at most \
             {MAX_NAME_BYTES} are allowed",
            parameter.name.len()
        ));
    }
    if parameter
        .name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Some(format!(
            "the plugin declares parameter {shown:?}, whose name has spaces or control \
             characters; a name is one word, e.g. scale_out_factor"
        ));
    }
    if !seen.insert(parameter.name.clone()) {
        return Some(format!(
            "the plugin declares parameter {shown:?} twice; each name may be declared once"
        ));
    }
    if parameter.meaning.len() > MAX_MEANING_BYTES {
        return Some(format!(
            "the plugin declares parameter {shown:?} with a meaning of {} bytes; at most \
             {MAX_MEANING_BYTES} are allowed",
            parameter.meaning.len()
        ));
    }
    let default = parameter.default_json.as_ref()?;
    if default.len() > MAX_DEFAULT_BYTES {
        return Some(format!(
            "the plugin declares parameter {shown:?} with a default of {} bytes; at most \
             {MAX_DEFAULT_BYTES} are allowed",
            default.len()
        ));
    }
    if parameter.required {
        return Some(format!(
            "the plugin declares parameter {shown:?} required and with a default; a required \
             key has no default"
        ));
    }
    match serde_json::from_str::<Value>(default) {
        Err(error) => Some(format!(
            "the plugin declares parameter {shown:?} with a default that is not JSON \
             ({error}): {}",
            sanitize_text(default, 128)
        )),
        Ok(value) if !kind_matches(parameter.kind, &value) => Some(format!(
            "the plugin declares parameter {shown:?} of kind {} with a default of the wrong \
             kind: {}",
            parameter.kind,
            sanitize_text(default, 128)
        )),
        Ok(_) => None,
    }
}

/// Checks an application's `params` (the JSON object `configure` will get)
/// against what the plugin declares: every key declared, every required
/// key present, every value of the declared kind. Returns every problem,
/// each naming the key, what was found and what would be valid.
pub(crate) fn check_params(declared: &[Parameter], params_json: &str) -> Vec<String> {
    let params: serde_json::Map<String, Value> = match serde_json::from_str(params_json) {
        Ok(Value::Object(params)) => params,
        // The host always passes an object; anything else is for the
        // plugin's own `configure` to refuse.
        _ => return Vec::new(),
    };
    // A plugin that declares nothing refuses every key: one problem names
    // them all, rather than one per key repeating that.
    if declared.is_empty() && params.len() > 1 {
        let keys: Vec<String> = params.keys().map(|k| format!("{k:?}")).collect();
        return vec![format!(
            "unknown keys {}; the plugin accepts no params",
            keys.join(", ")
        )];
    }
    let valid = || {
        if declared.is_empty() {
            "the plugin accepts no params".to_owned()
        } else {
            let names: Vec<String> = declared.iter().map(|p| format!("{:?}", p.name)).collect();
            format!("valid keys: {}", names.join(", "))
        }
    };
    let mut problems = Vec::new();
    for (key, value) in &params {
        let Some(parameter) = declared.iter().find(|p| &p.name == key) else {
            let suggestion = closest(key, declared)
                .map(|name| format!(" (did you mean {name:?}?)"))
                .unwrap_or_default();
            // Quoted as given, spaces and all (escaped, and cut at the
            // name limit): trimmed, `"factor "` read as unknown `"factor"`,
            // did-you-mean `"factor"`.
            let mut shown = String::new();
            for c in key.chars() {
                if shown.len() + c.len_utf8() > MAX_NAME_BYTES {
                    break;
                }
                shown.push(c);
            }
            let cut = if shown.len() < key.len() { "…" } else { "" };
            problems.push(format!(
                "unknown key {shown:?}{cut}{suggestion}; {}",
                valid()
            ));
            continue;
        };
        if !kind_matches(parameter.kind, value) {
            problems.push(format!(
                "{key:?} must be {}, not {}",
                with_article(parameter.kind.label()),
                describe_value(value)
            ));
        }
    }
    for parameter in declared.iter().filter(|p| p.required) {
        if !params.contains_key(&parameter.name) {
            // Without its full stop: the problems are joined by "; ".
            problems.push(format!(
                "missing required key {:?} ({}): {}",
                parameter.name,
                parameter.kind,
                parameter.meaning.trim_end().trim_end_matches('.')
            ));
        }
    }
    problems
}

/// The `params` `configure` gets: the application's, with every declared
/// default filled in for a key it leaves out, as the contract says a
/// default is "the value used when the key is absent" (a plugin built
/// from the WIT alone finds it there; the SDKs fill the same value in
/// themselves). Anything but an object is passed as it is, for the
/// plugin's own `configure` to refuse.
pub(crate) fn with_defaults(declared: &[Parameter], params_json: &str) -> String {
    let Ok(Value::Object(mut params)) = serde_json::from_str::<Value>(params_json) else {
        return params_json.to_owned();
    };
    let mut filled = false;
    for parameter in declared {
        if params.contains_key(&parameter.name) {
            continue;
        }
        let Some(default) = parameter
            .default_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<Value>(json).ok())
        else {
            continue;
        };
        params.insert(parameter.name.clone(), default);
        filled = true;
    }
    if filled {
        Value::Object(params).to_string()
    } else {
        params_json.to_owned()
    }
}

/// The declared name nearest to `given`, if near enough to be a typo.
fn closest<'d>(given: &str, declared: &'d [Parameter]) -> Option<&'d str> {
    declared
        .iter()
        .map(|p| (edit_distance(given, &p.name), p.name.as_str()))
        .filter(|&(distance, name)| {
            distance <= 2.max(name.len() / 3) || (given.len() >= 4 && name.starts_with(given))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

/// A found value for an error: its JSON type and, cut short, the value.
fn describe_value(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    };
    format!("{kind} ({})", sanitize_text(&value.to_string(), 64))
}

/// An id a declared `alarm-id(s)` or `metric-id(s)` parameter names that
/// the application does not configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownId {
    /// The parameter.
    pub key: String,
    /// Where the id is in the parameter's list, for an `-ids` kind.
    pub item: Option<usize>,
    /// What is wrong, with the valid ids.
    pub message: String,
}

impl std::fmt::Display for UnknownId {
    /// `params.KEY: ...`, or `params.KEY[I]: ...` for an item of a list.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "params.{}", self.key)?;
        if let Some(item) = self.item {
            write!(f, "[{item}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The ids a plugin's declared `alarm-id(s)` and `metric-id(s)` params name
/// that the application does not configure, one per id, each with the
/// valid ids. Only keys present in `params` are checked: a declared
/// default may be a fallback the application need not configure.
pub fn check_references(
    declared: &[Parameter],
    params: &serde_json::Map<String, Value>,
    alarms: &[&str],
    metrics: &[&str],
) -> Vec<UnknownId> {
    let mut problems = Vec::new();
    for parameter in declared {
        let Some(value) = params.get(&parameter.name) else {
            continue;
        };
        let (what, valid) = match parameter.kind {
            ParameterKind::AlarmId | ParameterKind::AlarmIds => ("alarm", alarms),
            ParameterKind::MetricId | ParameterKind::MetricIds => ("metric", metrics),
            _ => continue,
        };
        let items: Vec<(Option<usize>, &str)> = match value {
            Value::String(id) => vec![(None, id.as_str())],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| Some((Some(i), item.as_str()?)))
                .collect(),
            _ => Vec::new(),
        };
        for (item, id) in items {
            if !valid.contains(&id) {
                // Worded as the `_alarm` / `_metric` naming convention
                // words it, with its list of valid ids.
                problems.push(UnknownId {
                    key: parameter.name.clone(),
                    item,
                    message: format!(
                        "no {what} with id {id:?} in this application ({})",
                        valid_list(valid.iter().copied(), what)
                    ),
                });
            }
        }
    }
    problems
}

/// The ids the params of `plugin` (an `[application.policy]` or
/// `[[application.interpreter]]` of `app`, its table's `params` at
/// `params_at`) name that `app` does not configure, as problems at the
/// key (and item) that names them. A plugin that declares its parameters
/// is judged by the kinds it declares ([`check_references`], then
/// [`check_metric_reach`], said at `params`); one that declares none
/// (contract 0.1.0) by the `_alarm` / `_metric` naming convention
/// ([`crate::config::validate::conventional_references`]). Both need the
/// plugin loaded: `validate`, `simulate`, `reload` and the agent's start
/// and reload check them.
pub fn reference_problems(
    metadata: &PluginMetadata,
    plugin: &PluginConfig,
    app: &ApplicationConfig,
    params_at: &FieldPath,
) -> Vec<Problem> {
    let Some(declared) = metadata.parameters.as_deref() else {
        return crate::config::validate::conventional_references(params_at, &plugin.params, app);
    };
    let (alarms, metrics) = app.alarm_and_metric_ids();
    let params: serde_json::Map<String, Value> =
        match crate::config::load::params_value(&plugin.params) {
            Value::Object(params) => params,
            _ => serde_json::Map::new(),
        };
    let unknown = check_references(declared, &params, &alarms, &metrics);
    if unknown.is_empty() {
        return check_metric_reach(declared, &params, &metrics)
            .into_iter()
            .map(|message| Problem {
                path: params_at.clone(),
                message,
                hint: None,
                assumes: None,
            })
            .collect();
    }
    unknown
        .into_iter()
        .map(|unknown| {
            let at = params_at.key(&unknown.key);
            Problem {
                path: match unknown.item {
                    Some(i) => at.index(i),
                    None => at,
                },
                message: unknown.message,
                hint: None,
                assumes: None,
            }
        })
        .collect()
}

/// The alarm ids the plugin's declared alarm parameters name in `params`
/// (as given; a default names an alarm only if the application has it,
/// which the caller checks), each once, in declaration order.
pub fn alarm_ids_named(
    declared: &[Parameter],
    params: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut named: Vec<String> = Vec::new();
    for parameter in declared {
        if !matches!(
            parameter.kind,
            ParameterKind::AlarmId | ParameterKind::AlarmIds
        ) {
            continue;
        }
        let value = match params.get(&parameter.name) {
            Some(value) => value.clone(),
            None => match parameter
                .default_json
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            {
                Some(value) => value,
                None => continue,
            },
        };
        for id in ids_in(&value) {
            if !named.iter().any(|n| n == id) {
                named.push(id.to_owned());
            }
        }
    }
    named
}

/// The ids an id parameter's value names: the string, or the strings of
/// the list (what is not a string names none).
fn ids_in(value: &Value) -> Vec<&str> {
    match value {
        Value::String(id) => vec![id.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// When a plugin declares metric-id parameters and none of them, as given
/// or by its default, names a metric the application configures, the
/// problem, naming each with its value and the valid ids. Such a plugin
/// reads no metric at all: `target-tracking` with its defaults `busy` and
/// `cpu` on an application whose metric is called `load` fails at every
/// evaluation. One unresolved default beside one that resolves is
/// nothing: a default may be a fallback (see [`check_references`]).
pub fn check_metric_reach(
    declared: &[Parameter],
    params: &serde_json::Map<String, Value>,
    metrics: &[&str],
) -> Option<String> {
    let mut named = Vec::new();
    for parameter in declared {
        if !matches!(
            parameter.kind,
            ParameterKind::MetricId | ParameterKind::MetricIds
        ) {
            continue;
        }
        let (value, by_default) = match params.get(&parameter.name) {
            Some(value) => (value.clone(), false),
            None => match parameter
                .default_json
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            {
                Some(value) => (value, true),
                None => continue,
            },
        };
        let ids = ids_in(&value);
        if ids.iter().any(|id| metrics.contains(id)) {
            return None;
        }
        if !ids.is_empty() {
            named.push(format!(
                "{} = {}{}",
                parameter.name,
                sanitize_text(&value.to_string(), 64),
                if by_default { " (its default)" } else { "" }
            ));
        }
    }
    (!named.is_empty()).then(|| {
        format!(
            "none of the plugin's metric parameters names a metric of this application: \
             {} ({}); set one of them to a metric id",
            named.join(", "),
            valid_list(metrics.iter().copied(), "metric")
        )
    })
}

/// Whether `value` is a JSON value of `kind`. An integer is a number too;
/// a number with a fraction is not an integer, but a whole one written with
/// a decimal point (`2.0`, which TOML makes a float) is, as the plugin SDK's
/// `Params::get_u32` reads it: the host must not refuse what the plugin
/// itself would accept.
pub(crate) fn kind_matches(kind: ParameterKind, value: &Value) -> bool {
    let strings = |v: &Value| {
        v.as_array()
            .is_some_and(|items| items.iter().all(Value::is_string))
    };
    match kind {
        ParameterKind::Boolean => value.is_boolean(),
        ParameterKind::Integer => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        ParameterKind::Number => value.is_number(),
        ParameterKind::Text | ParameterKind::AlarmId | ParameterKind::MetricId => value.is_string(),
        ParameterKind::TextList | ParameterKind::AlarmIds | ParameterKind::MetricIds => {
            strings(value)
        }
        ParameterKind::Table => value.is_object(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, kind: ParameterKind, default_json: Option<&str>) -> Parameter {
        Parameter {
            name: name.to_owned(),
            kind,
            required: false,
            default_json: default_json.map(str::to_owned),
            meaning: "what it means".to_owned(),
        }
    }

    #[test]
    fn good_declarations_pass_and_meanings_lose_control_characters() {
        let mut p = param("factor", ParameterKind::Number, Some("2"));
        p.meaning = "line one\nline two".to_owned();
        let checked = check_declarations(vec![
            p,
            param("ids", ParameterKind::AlarmIds, Some("[\"a\"]")),
            param("on", ParameterKind::Boolean, None),
        ])
        .expect("valid");
        assert_eq!(checked.len(), 3);
        assert_eq!(checked[0].meaning, "line one line two");
    }

    #[test]
    fn too_many_parameters_are_invalid() {
        let many = (0..=MAX_PARAMETERS)
            .map(|i| param(&format!("p{i}"), ParameterKind::Text, None))
            .collect();
        let error = check_declarations(many).expect_err("too many");
        assert!(error.contains("65 parameters"), "{error}");
        assert!(error.contains("at most 64"), "{error}");
    }

    #[test]
    fn a_long_or_empty_or_spaced_name_is_invalid() {
        let error = check_declarations(vec![param(&"n".repeat(65), ParameterKind::Text, None)])
            .expect_err("long");
        assert!(error.contains("65 bytes long"), "{error}");
        let error =
            check_declarations(vec![param("", ParameterKind::Text, None)]).expect_err("empty");
        assert!(error.contains("empty name"), "{error}");
        let error = check_declarations(vec![param("a b\n", ParameterKind::Text, None)])
            .expect_err("spaced");
        assert!(error.contains("spaces or control"), "{error}");
    }

    #[test]
    fn a_long_meaning_is_invalid() {
        let mut p = param("x", ParameterKind::Text, None);
        p.meaning = "m".repeat(MAX_MEANING_BYTES + 1);
        let error = check_declarations(vec![p]).expect_err("long meaning");
        assert!(error.contains("1025 bytes"), "{error}");
    }

    #[test]
    fn a_long_default_is_invalid() {
        let long = format!("\"{}\"", "d".repeat(MAX_DEFAULT_BYTES - 2));
        let fits = param("x", ParameterKind::Text, Some(&long));
        assert!(check_declarations(vec![fits]).is_ok());
        let longer = format!("\"{}\"", "d".repeat(MAX_DEFAULT_BYTES - 1));
        let error = check_declarations(vec![param("x", ParameterKind::Text, Some(&longer))])
            .expect_err("long default");
        assert!(
            error.contains("a default of 4097 bytes; at most 4096"),
            "{error}"
        );
    }

    /// An author sees every bad declaration at once, in the order declared,
    /// and the good ones are not mentioned.
    #[test]
    fn every_bad_declaration_is_reported_not_only_the_first() {
        let error = check_declarations(vec![
            param("", ParameterKind::Text, None),
            param("fine", ParameterKind::Text, None),
            param("x", ParameterKind::Integer, Some("2.5")),
            param("fine", ParameterKind::Number, None),
        ])
        .expect_err("three bad");
        let problems: Vec<&str> = error.split("; the plugin").collect();
        assert_eq!(problems.len(), 3, "{error}");
        assert!(problems[0].contains("empty name"), "{error}");
        assert!(problems[1].contains("\"x\" of kind integer"), "{error}");
        assert!(problems[2].contains("\"fine\" twice"), "{error}");
    }

    #[test]
    fn a_duplicate_name_is_invalid() {
        let error = check_declarations(vec![
            param("x", ParameterKind::Text, None),
            param("x", ParameterKind::Number, None),
        ])
        .expect_err("duplicate");
        assert!(error.contains("\"x\" twice"), "{error}");
    }

    #[test]
    fn a_default_must_be_json_of_the_declared_kind() {
        let error = check_declarations(vec![param("x", ParameterKind::Integer, Some("two"))])
            .expect_err("not json");
        assert!(error.contains("not JSON"), "{error}");
        let error = check_declarations(vec![param("x", ParameterKind::Integer, Some("2.5"))])
            .expect_err("not an integer");
        assert!(error.contains("kind integer"), "{error}");
        assert!(error.contains("2.5"), "{error}");
        let error = check_declarations(vec![param("x", ParameterKind::AlarmIds, Some("[1]"))])
            .expect_err("not strings");
        assert!(error.contains("array of alarm ids"), "{error}");
        let mut required = param("x", ParameterKind::Text, Some("\"a\""));
        required.required = true;
        let error = check_declarations(vec![required]).expect_err("required with default");
        assert!(error.contains("required and with a default"), "{error}");
    }

    fn declared() -> Vec<Parameter> {
        let mut threshold = param("threshold", ParameterKind::Number, None);
        threshold.required = true;
        threshold.meaning = "Above it, scale out.".to_owned();
        vec![
            threshold,
            param("steps", ParameterKind::Integer, Some("2")),
            param("scale_out_alarm", ParameterKind::AlarmId, None),
        ]
    }

    #[test]
    fn params_that_match_their_declarations_pass() {
        assert!(check_params(&declared(), r#"{"threshold": 1}"#).is_empty());
        assert!(
            check_params(
                &declared(),
                r#"{"threshold": 0.5, "steps": 3, "scale_out_alarm": "high"}"#
            )
            .is_empty()
        );
    }

    #[test]
    fn an_unknown_key_lists_the_valid_ones_and_suggests_the_closest() {
        let problems = check_params(&declared(), r#"{"threshold": 1, "stpes": 3}"#);
        assert_eq!(
            problems,
            [
                "unknown key \"stpes\" (did you mean \"steps\"?); valid keys: \"threshold\", \"steps\", \"scale_out_alarm\""
            ]
        );
        let problems = check_params(&[], r#"{"x": 1}"#);
        assert_eq!(
            problems,
            ["unknown key \"x\"; the plugin accepts no params"]
        );
        // Quoted as given: a space at its end is the mistake to see, not
        // trimmed into a suggestion of the very name shown.
        let problems = check_params(&declared(), r#"{"steps ": 3}"#);
        assert!(
            problems[0].starts_with("unknown key \"steps \" (did you mean \"steps\"?)"),
            "{problems:?}"
        );
        let long = format!(r#"{{"{}\n": 3}}"#, "k".repeat(300));
        let problems = check_params(&declared(), &long);
        assert!(
            problems[0].starts_with(&format!("unknown key \"{}\"…", "k".repeat(MAX_NAME_BYTES))),
            "{problems:?}"
        );
        let problems = check_params(&[], r#"{"x": 1, "y": 2}"#);
        assert_eq!(
            problems,
            ["unknown keys \"x\", \"y\"; the plugin accepts no params"]
        );
    }

    #[test]
    fn a_missing_required_key_is_named_with_its_kind_and_meaning() {
        let problems = check_params(&declared(), r#"{"steps": 3}"#);
        assert_eq!(
            problems,
            ["missing required key \"threshold\" (number): Above it, scale out"]
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_says_what_was_found_and_what_is_valid() {
        let problems = check_params(
            &declared(),
            r#"{"threshold": "high", "steps": 2.5, "scale_out_alarm": ["a"]}"#,
        );
        assert_eq!(
            problems,
            [
                "\"scale_out_alarm\" must be an alarm id, not an array ([\"a\"])",
                "\"steps\" must be an integer, not a number with a fraction (2.5)",
                "\"threshold\" must be a number, not a string (\"high\")",
            ]
        );
    }

    #[test]
    fn declared_alarm_and_metric_ids_must_name_what_the_application_configures() {
        use ParameterKind::*;
        let declared = vec![
            param("watch", AlarmId, None),
            param("inputs", MetricIds, Some("[]")),
            param("fallback", MetricId, Some("\"busy\"")),
            param("steps", Integer, Some("2")),
        ];
        let params: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"watch": "hot", "inputs": ["cpu", "lagg"], "steps": 3}"#)
                .expect("json");
        assert_eq!(
            check_references(&declared, &params, &["hot"], &["cpu", "lagg"]),
            Vec::<UnknownId>::new(),
            "every id named is configured; the absent `fallback` is not checked"
        );
        assert_eq!(
            check_references(&declared, &params, &[], &["cpu"])
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "params.watch: no alarm with id \"hot\" in this application (this application defines no alarms)",
                "params.inputs[1]: no metric with id \"lagg\" in this application (valid: \"cpu\")",
            ]
        );
    }

    /// A plugin that declares its parameters is judged by the kinds it
    /// declares, whatever their names: its `display_metric` may be text
    /// and its `page_alarms` a number. One that declares none (contract
    /// 0.1.0) is judged by the `_alarm` / `_metric` convention. Validation
    /// applied the convention to every plugin, and refused such a plugin's
    /// params though the plugin accepted them.
    #[test]
    fn declared_kinds_overrule_the_naming_convention() {
        use ParameterKind::*;
        let loaded = crate::config::load::load_str(
            "[[application]]\nname = \"a\"\n\
             [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
             metric_name = \"cpuUtilization\"\nstatistic = \"Average\"\n\
             [[application.alarm]]\nid = \"high\"\nmetric = \"cpu\"\n\
             comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 1\n\
             [application.policy]\nplugin = \"hold\"\n\
             params = { display_metric = \"CPU load\", page_alarms = 5, watch = \"nope\" }\n",
            std::path::Path::new("x.toml"),
        )
        .expect("valid: loading does not apply the convention");
        let app = &loaded.config.applications[0];
        let at = FieldPath::root().key("params");
        let mut metadata = PluginMetadata {
            name: "mine".to_owned(),
            version: "1.0.0".to_owned(),
            kind: super::super::PluginKind::Policy,
            contract_version: "0.2.0",
            summary: String::new(),
            parameters: Some(vec![
                param("display_metric", Text, None),
                param("page_alarms", Integer, None),
                param("watch", AlarmId, None),
            ]),
        };
        let said = |metadata: &PluginMetadata| -> Vec<String> {
            reference_problems(metadata, &app.policy, app, &at)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            said(&metadata),
            ["params.watch: no alarm with id \"nope\" in this application (valid: \"high\")"]
        );
        metadata.parameters = None;
        assert_eq!(
            said(&metadata),
            [
                "params.display_metric: no metric with id \"CPU load\" in this application (valid: \"cpu\")",
                "params.page_alarms: page_alarms must be an array of alarm ids, not an integer (valid: \"high\")",
            ]
        );
    }

    /// `target-tracking`'s two defaults, `busy` and `cpu`, on an
    /// application whose one metric is `load`: it would read nothing. One
    /// of them configured, or given, is enough.
    #[test]
    fn a_plugin_none_of_whose_metric_parameters_resolves_is_named() {
        use ParameterKind::*;
        let declared = vec![
            param("busy_metric", MetricId, Some("\"busy\"")),
            param("cpu_metric", MetricId, Some("\"cpu\"")),
            param("inputs", MetricIds, Some("[]")),
            param("target", Number, Some("0.7")),
        ];
        let none = serde_json::Map::new();
        assert_eq!(
            check_metric_reach(&declared, &none, &["load"]).as_deref(),
            Some(
                "none of the plugin's metric parameters names a metric of this \
                 application: busy_metric = \"busy\" (its default), cpu_metric = \"cpu\" (its \
                 default) (valid: \"load\"); set one of them to a metric id"
            )
        );
        assert_eq!(check_metric_reach(&declared, &none, &["load", "cpu"]), None);
        let given: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"busy_metric": "load"}"#).expect("json");
        assert_eq!(check_metric_reach(&declared, &given, &["load"]), None);
        // A plugin that names no metric by default claims nothing.
        let quiet = vec![param("inputs", MetricIds, Some("[]"))];
        assert_eq!(check_metric_reach(&quiet, &none, &["load"]), None);
    }

    #[test]
    fn kinds_match_their_json() {
        use ParameterKind::*;
        let cases: &[(ParameterKind, &str, bool)] = &[
            (Boolean, "true", true),
            (Boolean, "1", false),
            (Integer, "3", true),
            (Integer, "-3", true),
            (Integer, "3.5", false),
            (Integer, "3.0", true),
            (Number, "3", true),
            (Number, "3.5", true),
            (Number, "\"3\"", false),
            (Text, "\"a\"", true),
            (AlarmId, "\"a\"", true),
            (MetricId, "[\"a\"]", false),
            (TextList, "[]", true),
            (MetricIds, "[\"a\", \"b\"]", true),
            (AlarmIds, "\"a\"", false),
            (Table, "{}", true),
            (Table, "[]", false),
        ];
        for (kind, json, expected) in cases {
            let value: Value = serde_json::from_str(json).expect("json");
            assert_eq!(kind_matches(*kind, &value), *expected, "{kind} {json}");
        }
    }
}
