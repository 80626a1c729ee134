//! A plugin's parameters: the `params` table of its configuration, which
//! reaches the plugin as a JSON object, with typed getters whose errors name
//! the parameter, what was expected and what was found.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::evaluation::list_or_none;

/// The parameters of a plugin, as written in the agent's configuration.
///
/// A TOML table such as
/// `params = { scale_out_alarm = "scale-out", scale_out_factor = 2 }`
/// arrives as the JSON object `{"scale_out_alarm": "scale-out",
/// "scale_out_factor": 2}`. Every getter returns `Err` with a message meant
/// for the person who wrote the configuration, so a `configure` can use `?`
/// throughout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    map: Map<String, Value>,
}

impl Params {
    /// Parses the JSON text the agent passes to `configure`. It must be an
    /// object; `{}` is the empty table.
    pub fn from_json(text: &str) -> Result<Self, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Params { map }),
            Ok(other) => Err(format!(
                "parameters must be a table (a JSON object), found {}",
                describe(&other)
            )),
            Err(error) => Err(format!("parameters are not valid JSON: {error}")),
        }
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
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let mut message = if unknown.len() == 1 {
            format!("unknown parameter `{first}`")
        } else {
            format!(
                "unknown parameters {}",
                unknown
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        message.push_str(&format!(
            "; valid parameters: {}",
            list_or_none(known.iter().copied())
        ));
        if let Some(suggestion) = closest(first, known) {
            message.push_str(&format!(" (did you mean `{suggestion}`?)"));
        }
        Err(message)
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

    /// Deserializes the whole table into `T`, for plugins that prefer
    /// `#[derive(Deserialize)]` (with `#[serde(deny_unknown_fields)]`) to the
    /// getters.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(Value::Object(self.map.clone()))
            .map_err(|error| format!("invalid parameters: {error}"))
    }
}

impl From<Map<String, Value>> for Params {
    fn from(map: Map<String, Value>) -> Self {
        Params { map }
    }
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

    #[test]
    fn deserialize_reports_serde_errors() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            mode: String,
        }
        assert!(params(r#"{"mode": "x"}"#).deserialize::<P>().is_ok());
        assert!(
            params(r#"{"mood": "x"}"#)
                .deserialize::<P>()
                .unwrap_err()
                .starts_with("invalid parameters: unknown field `mood`")
        );
    }
}
