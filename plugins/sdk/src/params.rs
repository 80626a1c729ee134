//! A plugin's parameters: the `params` table of its configuration, which
//! reaches the plugin as a JSON object, read into the plugin's own struct
//! through serde ([`Params::parse`]) or with typed getters; either way an
//! error names the parameter, what was expected and what was found.

mod de;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Parameter;
pub(crate) use crate::evaluation::list_or_none;

/// The parameters of a plugin, as written in the agent's configuration.
///
/// A TOML table such as
/// `params = { scale_out_alarm = "scale-out", scale_out_factor = 2 }`
/// arrives as the JSON object `{"scale_out_alarm": "scale-out",
/// "scale_out_factor": 2}`. Every getter returns `Err` with a message meant
/// for the person who wrote the configuration, so a `configure` can use `?`
/// throughout.
///
/// When the agent (or [`testing::configure`](crate::testing::configure))
/// hands them to `configure`, keys the plugin does not declare have been
/// refused and every absent key with a declared default holds that default,
/// so a plugin reads a declared default like any other value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    map: Map<String, Value>,
    /// The plugin's declarations, once checked against them; they name the
    /// kind of a missing key in [`Params::parse`]'s errors.
    declared: &'static [Parameter],
}

impl Params {
    /// Parses the JSON text the agent passes to `configure`. It must be an
    /// object; `{}` is the empty table.
    pub fn from_json(text: &str) -> Result<Self, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Params::from(map)),
            Ok(other) => Err(format!(
                "parameters must be a table (a JSON object), found {}",
                describe(&other)
            )),
            Err(error) => Err(format!("parameters are not valid JSON: {error}")),
        }
    }

    /// Holds these parameters to the plugin's declarations: refuses a key
    /// not declared (suggesting the closest declared one) and fills in the
    /// declared default of every absent key that has one.
    pub fn declare(mut self, declared: &'static [Parameter]) -> Result<Self, String> {
        let names: Vec<&str> = declared.iter().map(|parameter| parameter.name).collect();
        self.deny_unknown(&names)?;
        for parameter in declared {
            let Some(json) = parameter.default_json else {
                continue;
            };
            if self.map.contains_key(parameter.name) {
                continue;
            }
            // A plugin bug, but one the plugin's author should read in the
            // agent's log rather than a trap.
            let default = serde_json::from_str(json).map_err(|error| {
                format!(
                    "the plugin declares parameter `{}` with the default {json}, which is not \
                     JSON ({error}); this is a bug in the plugin",
                    parameter.name
                )
            })?;
            self.map.insert(parameter.name.to_owned(), default);
        }
        self.declared = declared;
        Ok(self)
    }

    /// Whether the parameter is present.
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The names of the parameters present, in the order of the JSON text.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// The raw value of a parameter, for shapes the typed getters do not
    /// cover.
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// Refuses any parameter not in `known`, so that a misspelt parameter is
    /// an error rather than a setting silently left at its default. The
    /// error lists the valid names and suggests the closest one.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        let unknown: Vec<&str> = self.keys().filter(|key| !known.contains(key)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(unknown_message(&unknown, known))
    }

    /// A required string parameter.
    pub fn get_str(&self, key: &str) -> Result<&str, String> {
        self.get_opt_str(key)?
            .ok_or_else(|| missing(key, "a string"))
    }

    /// A string parameter, or `default` when absent.
    pub fn get_str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, String> {
        Ok(self.get_opt_str(key)?.unwrap_or(default))
    }

    /// An optional string parameter.
    pub fn get_opt_str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A required number parameter (integer or not).
    pub fn get_f64(&self, key: &str) -> Result<f64, String> {
        self.get_opt_f64(key)?
            .ok_or_else(|| missing(key, "a number"))
    }

    /// A number parameter, or `default` when absent.
    pub fn get_f64_or(&self, key: &str, default: f64) -> Result<f64, String> {
        Ok(self.get_opt_f64(key)?.unwrap_or(default))
    }

    /// An optional number parameter.
    pub fn get_opt_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value @ Value::Number(number)) => number
                .as_f64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a number", value)),
            Some(other) => Err(wrong_type(key, "a number", other)),
        }
    }

    /// A required whole-number parameter in `0..=u32::MAX`. `2.0` is
    /// accepted as 2; `2.5` and `-1` are errors.
    pub fn get_u32(&self, key: &str) -> Result<u32, String> {
        self.get_opt_u32(key)?
            .ok_or_else(|| missing(key, "a whole number"))
    }

    /// A whole-number parameter, or `default` when absent.
    pub fn get_u32_or(&self, key: &str, default: u32) -> Result<u32, String> {
        Ok(self.get_opt_u32(key)?.unwrap_or(default))
    }

    /// An optional whole-number parameter; see [`Params::get_u32`].
    pub fn get_opt_u32(&self, key: &str) -> Result<Option<u32>, String> {
        let Some(value) = self.map.get(key) else {
            return Ok(None);
        };
        let expected = "a whole number from 0 to 4294967295";
        let Value::Number(number) = value else {
            return Err(wrong_type(key, expected, value));
        };
        if let Some(whole) = number.as_u64() {
            return u32::try_from(whole)
                .map(Some)
                .map_err(|_| wrong_type(key, expected, value));
        }
        match number.as_f64() {
            Some(float) if float.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&float) => {
                // The range check above makes the conversion exact.
                Ok(Some(float as u32))
            }
            _ => Err(wrong_type(key, expected, value)),
        }
    }

    /// A required boolean parameter.
    pub fn get_bool(&self, key: &str) -> Result<bool, String> {
        self.get_opt_bool(key)?
            .ok_or_else(|| missing(key, "true or false"))
    }

    /// A boolean parameter, or `default` when absent.
    pub fn get_bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        Ok(self.get_opt_bool(key)?.unwrap_or(default))
    }

    /// An optional boolean parameter.
    pub fn get_opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(wrong_type(key, "true or false", other)),
        }
    }

    /// Reads the whole table into the plugin's own `#[derive(Deserialize)]`
    /// type, field by key.
    ///
    /// Errors read like the getters':
    ///
    /// ```text
    /// parameter `scale_out_factor` must be a whole number from 0 to 4294967295, found the number 1.5
    /// missing required parameter `scale_out_alarm` (a string)
    /// parameter `operation` must be "multiply" or "add", found "mul"
    /// ```
    ///
    /// (the last for an enum of unit variants). Nested keys are named by their
    /// path (`signals.busy`, `alarms[1]`). A whole number written as `2.0`
    /// is accepted as 2, as by [`Params::get_u32`].
    ///
    /// A field whose key has a declared default needs no
    /// `#[serde(default)]`: the default is already in the table. An
    /// optional key with no default is an `Option` field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let table = Value::Object(self.map.clone());
        let order: Vec<&str> = self
            .declared
            .iter()
            .map(|parameter| parameter.name)
            .collect();
        let deserializer = de::ValueDeserializer {
            path: String::new(),
            value: &table,
            order: &order,
        };
        T::deserialize(deserializer).map_err(|error| {
            error.into_message(|key| {
                self.declared
                    .iter()
                    .find(|parameter| parameter.name == key)
                    .map(Parameter::expected)
            })
        })
    }
}

impl From<Map<String, Value>> for Params {
    fn from(map: Map<String, Value>) -> Self {
        Params { map, declared: &[] }
    }
}

/// The error for keys not in `known`: lists the valid names and suggests the
/// one closest to the first unknown key.
fn unknown_message(unknown: &[&str], known: &[&str]) -> String {
    let mut message = match unknown {
        [one] => format!("unknown parameter `{one}`"),
        _ => format!(
            "unknown parameters {}",
            unknown
                .iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    message.push_str(&format!(
        "; valid parameters: {}",
        list_or_none(known.iter().copied())
    ));
    if let Some(suggestion) = unknown.first().and_then(|first| closest(first, known)) {
        message.push_str(&format!(" (did you mean `{suggestion}`?)"));
    }
    message
}

fn missing(key: &str, expected: &str) -> String {
    format!("missing required parameter `{key}` ({expected})")
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> String {
    format!(
        "parameter `{key}` must be {expected}, found {}",
        describe(found)
    )
}

/// A value as a configuration author would recognise it: its kind and, for
/// scalars, the value itself.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "a table".to_owned(),
    }
}

/// The known name nearest to `key`, if it is near enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        // A third of the name, but at least 2 so that a swapped pair of
        // letters in a short name still counts as a typo.
        .filter(|(distance, candidate)| {
            *distance <= (candidate.len() / 3).max(2) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Params {
        Params::from_json(json).expect("test JSON is an object")
    }

    #[test]
    fn non_object_parameters_are_refused() {
        assert_eq!(
            Params::from_json("[1]").unwrap_err(),
            "parameters must be a table (a JSON object), found an array"
        );
        assert!(
            Params::from_json("{")
                .unwrap_err()
                .starts_with("parameters are not valid JSON")
        );
    }

    #[test]
    fn missing_required_parameter_names_it_and_its_type() {
        assert_eq!(
            params("{}").get_str("scale_out_alarm").unwrap_err(),
            "missing required parameter `scale_out_alarm` (a string)"
        );
    }

    #[test]
    fn wrong_type_names_parameter_expectation_and_value() {
        assert_eq!(
            params(r#"{"scale_out_factor": "two"}"#)
                .get_f64_or("scale_out_factor", 2.0)
                .unwrap_err(),
            "parameter `scale_out_factor` must be a number, found the string \"two\""
        );
    }

    #[test]
    fn defaults_apply_only_when_absent() {
        let p = params(r#"{"a": 3}"#);
        assert_eq!(p.get_f64_or("a", 2.0), Ok(3.0));
        assert_eq!(p.get_f64_or("b", 2.0), Ok(2.0));
        assert_eq!(p.get_str_or("c", "multiply"), Ok("multiply"));
    }

    #[test]
    fn whole_numbers_accept_integral_floats_only() {
        let p = params(r#"{"a": 2, "b": 2.0, "c": 2.5, "d": -1, "e": 4294967296}"#);
        assert_eq!(p.get_u32("a"), Ok(2));
        assert_eq!(p.get_u32("b"), Ok(2));
        for key in ["c", "d", "e"] {
            assert!(
                p.get_u32(key)
                    .unwrap_err()
                    .contains("must be a whole number"),
                "{key}"
            );
        }
    }

    #[test]
    fn unknown_parameter_lists_valid_names_and_suggests_the_closest() {
        assert_eq!(
            params(r#"{"scale_out_alrm": "x"}"#)
                .deny_unknown(&["scale_out_alarm", "scale_in_alarm"])
                .unwrap_err(),
            "unknown parameter `scale_out_alrm`; valid parameters: scale_out_alarm, \
             scale_in_alarm (did you mean `scale_out_alarm`?)"
        );
        assert_eq!(params(r#"{"a": 1}"#).deny_unknown(&["a"]), Ok(()));
    }

    #[test]
    fn unrelated_unknown_parameter_gets_no_suggestion() {
        let error = params(r#"{"colour": "red"}"#)
            .deny_unknown(&["operation"])
            .unwrap_err();
        assert!(!error.contains("did you mean"), "{error}");
    }

    /// A struct with one field per shape a plugin reads.
    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        factor: u32,
        ratio: f64,
        alarm: String,
        enabled: bool,
        metrics: Vec<String>,
        operation: Operation,
        limit: Option<u32>,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Operation {
        Multiply,
        Add,
    }

    const TYPED: &str = r#"{"factor": 2, "ratio": 0.5, "alarm": "busy", "enabled": true,
        "metrics": ["cpu", "lag"], "operation": "add"}"#;

    /// `TYPED` with `key` set to `json`, parsed; the error if any.
    fn typed_error(key: &str, json: &str) -> String {
        let mut map: Map<String, Value> = serde_json::from_str(TYPED).expect("JSON");
        map.insert(key.to_owned(), serde_json::from_str(json).expect("JSON"));
        Params::from(map)
            .parse::<Typed>()
            .expect_err("the value is wrong")
    }

    #[test]
    fn parse_reads_every_shape() {
        assert_eq!(
            params(TYPED).parse::<Typed>(),
            Ok(Typed {
                factor: 2,
                ratio: 0.5,
                alarm: "busy".to_owned(),
                enabled: true,
                metrics: vec!["cpu".to_owned(), "lag".to_owned()],
                operation: Operation::Add,
                limit: None,
            })
        );
    }

    #[test]
    fn parse_errors_name_the_key_what_was_expected_and_what_was_found() {
        for (key, json, error) in [
            (
                "factor",
                r#""two""#,
                "parameter `factor` must be a whole number from 0 to 4294967295, found the string \"two\"",
            ),
            (
                "factor",
                "1.5",
                "parameter `factor` must be a whole number from 0 to 4294967295, found the number 1.5",
            ),
            (
                "factor",
                "-1",
                "parameter `factor` must be a whole number from 0 to 4294967295, found the number -1",
            ),
            (
                "ratio",
                r#""half""#,
                "parameter `ratio` must be a number, found the string \"half\"",
            ),
            (
                "alarm",
                "3",
                "parameter `alarm` must be a string, found the number 3",
            ),
            (
                "enabled",
                r#""yes""#,
                "parameter `enabled` must be true or false, found the string \"yes\"",
            ),
            (
                "metrics",
                r#""cpu""#,
                "parameter `metrics` must be an array, found the string \"cpu\"",
            ),
            (
                "metrics",
                r#"["cpu", 7]"#,
                "parameter `metrics[1]` must be a string, found the number 7",
            ),
            (
                "operation",
                r#""mul""#,
                "parameter `operation` must be \"multiply\" or \"add\", found \"mul\"",
            ),
            (
                "operation",
                "2",
                "parameter `operation` must be a string, found the number 2",
            ),
            (
                "limit",
                "null",
                "parameter `limit` must be a whole number from 0 to 4294967295, found null",
            ),
            (
                "limit",
                "true",
                "parameter `limit` must be a whole number from 0 to 4294967295, found the boolean true",
            ),
        ] {
            assert_eq!(typed_error(key, json), error, "{key} = {json}");
        }
    }

    #[test]
    fn parse_accepts_integral_floats_as_whole_numbers() {
        let mut map: Map<String, Value> = serde_json::from_str(TYPED).expect("JSON");
        map.insert("factor".to_owned(), serde_json::json!(3.0));
        map.insert("limit".to_owned(), serde_json::json!(7));
        let typed = Params::from(map).parse::<Typed>().expect("valid");
        assert_eq!((typed.factor, typed.limit), (3, Some(7)));
    }

    #[test]
    fn parse_names_a_missing_key_with_its_declared_kind() {
        let error = params(r#"{"ratio": 0.5}"#)
            .parse::<Typed>()
            .expect_err("factor is missing");
        assert_eq!(error, "missing required parameter `factor`");

        const DECLARED: &[Parameter] = &[
            Parameter::integer("factor").required().meaning("m"),
            Parameter::number("ratio").meaning("m"),
        ];
        let error = params(r#"{"ratio": 0.5}"#)
            .declare(DECLARED)
            .expect("declared keys only")
            .parse::<Typed>()
            .expect_err("factor is missing");
        assert_eq!(
            error,
            "missing required parameter `factor` (a whole number)"
        );
    }

    #[test]
    fn parse_reports_the_first_wrong_key_in_declared_order() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            zeta: u32,
            alpha: u32,
        }
        // Declared zeta first: the table's own (alphabetical) order would
        // report alpha.
        const DECLARED: &[Parameter] = &[
            Parameter::integer("zeta").required().meaning("m"),
            Parameter::integer("alpha").required().meaning("m"),
        ];
        let error = params(r#"{"alpha": "a", "zeta": "z"}"#)
            .declare(DECLARED)
            .expect("declared keys only")
            .parse::<P>()
            .expect_err("both are wrong");
        assert!(error.starts_with("parameter `zeta` must be"), "{error}");
    }

    #[test]
    fn parse_names_nested_keys_by_their_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            signals: std::collections::BTreeMap<String, String>,
            window: Window,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Window {
            secs: u32,
        }
        let parse = |json: &str| params(json).parse::<Outer>().expect_err("invalid");
        assert_eq!(
            parse(r#"{"signals": {"busy": 80}, "window": {"secs": 60}}"#),
            "parameter `signals.busy` must be a string, found the number 80"
        );
        assert_eq!(
            parse(r#"{"signals": {}, "window": {}}"#),
            "parameter `window` is missing its required key `secs`"
        );
        assert_eq!(
            parse(r#"{"signals": {}, "window": {"sec": 60}}"#),
            "parameter `window` has no key `sec`; valid keys: secs (did you mean `secs`?)"
        );
        assert_eq!(
            parse(r#"{"signals": {}, "window": {"secs": 60}, "windwo": 1}"#),
            "unknown parameter `windwo`; valid parameters: signals, window (did you mean `window`?)"
        );
    }

    #[test]
    fn parse_passes_on_a_deserialize_impl_s_own_message_with_the_key() {
        /// At least 2, as a `try_from` type.
        #[derive(serde::Deserialize, Debug)]
        #[serde(try_from = "u32")]
        struct Factor(#[allow(dead_code)] u32);
        impl TryFrom<u32> for Factor {
            type Error = String;
            fn try_from(value: u32) -> Result<Self, String> {
                if value >= 2 {
                    Ok(Factor(value))
                } else {
                    Err(format!("must be at least 2, found {value}"))
                }
            }
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            factor: Factor,
        }
        assert_eq!(
            params(r#"{"factor": 1}"#).parse::<P>().unwrap_err(),
            "parameter `factor`: must be at least 2, found 1"
        );
    }

    #[test]
    fn declare_refuses_undeclared_keys_and_fills_defaults() {
        const DECLARED: &[Parameter] = &[
            Parameter::text("operation")
                .default("\"multiply\"")
                .meaning("m"),
            Parameter::integer("factor").default("2").meaning("m"),
        ];
        let declared = params(r#"{"factor": 3}"#)
            .declare(DECLARED)
            .expect("declared");
        assert_eq!(declared.get_str("operation"), Ok("multiply"));
        assert_eq!(declared.get_u32("factor"), Ok(3));
        assert_eq!(
            params(r#"{"factr": 3}"#).declare(DECLARED).unwrap_err(),
            "unknown parameter `factr`; valid parameters: operation, factor (did you mean `factor`?)"
        );
    }
}
