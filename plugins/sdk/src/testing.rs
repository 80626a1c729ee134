//! For a plugin's own unit tests: the agent's `configure` and `metadata`
//! run natively, a check of the plugin's declarations, and builders for a
//! series from `(timestamp_ms, value)` pairs and a running application, so
//! that each plugin's tests write only what differs between their cases.

use std::collections::HashSet;

use crate::declare::fits;
use crate::export::{Component, Registered};
use crate::{AppStatus, Application, Datapoint, Parameter, PluginMetadata, Series};

/// Configures `T` from the `params` JSON exactly as the agent's call to the
/// component's `configure` does: the text must be a JSON object, keys `T`
/// does not declare are refused, absent keys take their declared default,
/// then `T`'s own `configure`. `T` is a type registered with
/// [`export_policy!`](crate::export_policy) or
/// [`export_interpreter!`](crate::export_interpreter).
pub fn configure<T: Registered>(params_json: &str) -> Result<T, String> {
    crate::export::configure::<T>(params_json)
}

/// The metadata the component's `metadata` export answers for `T`.
pub fn metadata<T: Registered>() -> PluginMetadata {
    crate::export::metadata::<T>()
}

/// Most parameters the host lets a plugin declare.
pub const MAX_PARAMETERS: usize = 64;
/// The host's longest parameter name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// The host's longest parameter meaning, in bytes.
pub const MAX_MEANING_BYTES: usize = 1024;
/// The host's longest default, as JSON text, in bytes.
pub const MAX_DEFAULT_BYTES: usize = 4096;

/// Checks `T`'s declarations: a one-sentence summary; for every parameter a
/// unique `snake_case` name, a meaning, and either `required` or not; a
/// required parameter has no default; a default is JSON of the declared
/// kind; and the host's limits ([`MAX_PARAMETERS`], [`MAX_NAME_BYTES`],
/// [`MAX_MEANING_BYTES`], [`MAX_DEFAULT_BYTES`]), past which the plugin
/// does not load. Every mistake is listed, one per line.
pub fn check_declarations<T: Registered>() -> Result<(), String> {
    declaration_problems(
        <T::Export as Component>::SUMMARY,
        <T::Export as Component>::PARAMETERS,
    )
}

/// What [`check_declarations`] finds in a summary and parameters.
fn declaration_problems(summary: &str, declared: &[Parameter]) -> Result<(), String> {
    let mut problems = Vec::new();
    if summary.trim().is_empty() || summary.contains('\n') {
        problems.push(format!("the summary must be one line, found {summary:?}"));
    }
    if declared.len() > MAX_PARAMETERS {
        problems.push(format!(
            "{} parameters are declared; the host loads at most {MAX_PARAMETERS}",
            declared.len()
        ));
    }
    let mut seen = HashSet::new();
    for parameter in declared {
        let name = parameter.name;
        if name.len() > MAX_NAME_BYTES {
            problems.push(format!(
                "parameter `{name}`: the name is {} bytes; at most {MAX_NAME_BYTES}",
                name.len()
            ));
        }
        if parameter.meaning.len() > MAX_MEANING_BYTES {
            problems.push(format!(
                "parameter `{name}`: the meaning is {} bytes; at most {MAX_MEANING_BYTES}",
                parameter.meaning.len()
            ));
        }
        if let Some(json) = parameter.default_json
            && json.len() > MAX_DEFAULT_BYTES
        {
            problems.push(format!(
                "parameter `{name}`: the default is {} bytes; at most {MAX_DEFAULT_BYTES}",
                json.len()
            ));
        }
        let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !snake {
            problems.push(format!("parameter {name:?}: the name must be snake_case"));
        }
        if !seen.insert(name) {
            problems.push(format!("parameter `{name}` is declared twice"));
        }
        if parameter.meaning.trim().is_empty() {
            problems.push(format!("parameter `{name}` has no meaning"));
        }
        match (parameter.required, parameter.default_json) {
            (true, Some(json)) => problems.push(format!(
                "parameter `{name}` is required and has the default {json}; it can be only one"
            )),
            (_, Some(json)) => match serde_json::from_str::<serde_json::Value>(json) {
                Ok(value) if fits(parameter.kind, &value) => {}
                Ok(value) => problems.push(format!(
                    "parameter `{name}`: the default {value} is not {}",
                    parameter.expected()
                )),
                Err(error) => problems.push(format!(
                    "parameter `{name}`: the default {json} is not JSON ({error})"
                )),
            },
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A series `id` of `namespace`'s metric of the same name, by `statistic`
/// over 60 s periods, with `points` as `(timestamp_ms, value)`.
pub fn series(namespace: &str, statistic: &str, id: &str, points: &[(i64, f64)]) -> Series {
    Series {
        id: id.to_owned(),
        namespace: namespace.to_owned(),
        metric_name: id.to_owned(),
        statistic: statistic.to_owned(),
        period_secs: 60,
        points: points
            .iter()
            .map(|&(timestamp_ms, value)| Datapoint {
                timestamp_ms,
                value,
            })
            .collect(),
    }
}

/// Application `orders`, RUNNING at `kpu` (one subtask per KPU) within
/// `[min_kpu, max_kpu]`, never rescaled.
pub fn application(kpu: u32, min_kpu: u32, max_kpu: u32) -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu,
        parallelism: kpu,
        parallelism_per_kpu: 1,
        min_kpu,
        max_kpu,
        version_id: 1,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decision, Evaluation, Parameter, Params, Policy};

    /// Declares every mistake `check_declarations` knows.
    struct Sloppy;

    impl Policy for Sloppy {
        const SUMMARY: &'static str = "";
        const PARAMETERS: &'static [Parameter] = &[
            Parameter::integer("Factor").meaning("m"),
            Parameter::integer("factor").default("1.5").meaning("m"),
            Parameter::integer("factor").meaning("m"),
            Parameter::alarm_id("alarm").required().default("\"busy\""),
            Parameter::text("mode").default("multiply").meaning("m"),
        ];

        fn configure(_params: Params) -> Result<Self, String> {
            Ok(Sloppy)
        }

        fn decide(&mut self, _evaluation: &Evaluation) -> Result<Decision, String> {
            Ok(Decision::hold(""))
        }
    }

    crate::export_policy!(Sloppy);

    #[test]
    fn check_declarations_lists_every_mistake() {
        let problems = check_declarations::<Sloppy>().expect_err("sloppy");
        let problems: Vec<&str> = problems.lines().collect();
        assert_eq!(
            problems,
            [
                "the summary must be one line, found \"\"",
                "parameter \"Factor\": the name must be snake_case",
                "parameter `factor`: the default 1.5 is not a whole number",
                "parameter `factor` is declared twice",
                "parameter `alarm` has no meaning",
                "parameter `alarm` is required and has the default \"busy\"; it can be only one",
                "parameter `mode`: the default multiply is not JSON (expected value at line 1 column 1)",
            ]
        );
    }

    /// Declarations past the host's limits, which would not load, are
    /// found here first, with the limit.
    #[test]
    fn check_declarations_knows_the_hosts_limits() {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let long_name = leak("n".repeat(MAX_NAME_BYTES + 1));
        let long_meaning = leak("m".repeat(MAX_MEANING_BYTES + 1));
        let long_default = leak(format!("\"{}\"", "d".repeat(MAX_DEFAULT_BYTES)));
        let params = [
            Parameter::integer(long_name).meaning("m"),
            Parameter::integer("wordy").meaning(long_meaning),
            Parameter::text("label").default(long_default).meaning("m"),
        ];
        let problems = declaration_problems("Holds.", &params).expect_err("too long");
        let problems: Vec<&str> = problems.lines().collect();
        assert_eq!(
            problems,
            [
                format!("parameter `{long_name}`: the name is 65 bytes; at most 64"),
                "parameter `wordy`: the meaning is 1025 bytes; at most 1024".to_owned(),
                "parameter `label`: the default is 4098 bytes; at most 4096".to_owned(),
            ]
        );
        let many: Vec<Parameter> = (0..=MAX_PARAMETERS)
            .map(|i| Parameter::integer(leak(format!("p{i}"))).meaning("m"))
            .collect();
        assert_eq!(
            declaration_problems("Holds.", &many),
            Err("65 parameters are declared; the host loads at most 64".to_owned())
        );
        assert_eq!(
            declaration_problems("Holds.", &many[..MAX_PARAMETERS]),
            Ok(())
        );
    }
}
