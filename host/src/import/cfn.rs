//! `flinkscale import cfn`: the reference design's CloudFormation stack as
//! a flinkscale configuration.
//!
//! The reference autoscaler (`infrastructure/AutoScaling/managed-flink-autoscaling.json`
//! in `aws-samples/amazon-managed-service-for-apache-flink-examples`) is
//! read as CloudFormation would deploy it, not from a table of what its
//! parameters usually mean: the alarms that the metric parameter's
//! conditions create (namespace, dimensions, statistic, period, comparison,
//! threshold, N and M), the Lambda's environment (application, bounds,
//! operation, factors) and the Step Functions definition's two waits (poll
//! while UPDATING, cooling-down period). So every published version of the
//! template (`AutoScalemetric` or `AutoScaleMetric`, with or without the
//! `Period`, `Statistic` and `UpdateApplicationWaitingTime` parameters, the
//! custom metric) imports as it was deployed, and every value in the output
//! names the parameter it came from.
//!
//! What the design does differently from flinkscale is said in the README
//! ("Migrating from the reference design"); what cannot be represented is
//! an error naming the parameter and what would be valid, and the output is
//! checked by the configuration loader before it is returned, so an import
//! never writes a file that `flinkscale validate` refuses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::template::{self, Declared, ResolveError, Stack};

/// Everything that can go wrong reading a template or its parameters.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{}: cannot read it: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not JSON.
    #[error("{}:{line}:{column}: not JSON: {message} ({expected})", file.display())]
    NotJson {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
        /// What the file should be.
        expected: &'static str,
    },
    /// A template that is not JSON is not YAML either (or holds what no
    /// CloudFormation template does).
    #[error("{}{}: not a template in YAML: {message} ({TEMPLATE_FORMAT})", file.display(), at(*line, *column))]
    NotYaml {
        /// The file.
        file: PathBuf,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A parameters file is JSON but not one of the accepted shapes.
    #[error("{}{}: {message} (expected {PARAMETERS_FORMAT})", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    ParametersFile {
        /// The file.
        file: PathBuf,
        /// The line of the entry at fault (1-based), when there is one.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A `--parameter` argument is not `KEY=VALUE`.
    #[error("--parameter {given:?}: not KEY=VALUE (e.g. --parameter MaxKPU=32)")]
    Assignment {
        /// The argument.
        given: String,
    },
    /// A value is given for a parameter the template does not declare.
    #[error("{origin}: parameter {name:?}: the template {} declares no such parameter ({suggestion}declared: {declared}); a stack of another version of the design's template needs that template: write it with `aws cloudformation get-template --stack-name NAME --query TemplateBody > template.json` and pass --template template.json", template.display())]
    UnknownParameter {
        /// Where the value came from (a file, or `--parameter`).
        origin: String,
        /// The template.
        template: PathBuf,
        /// The key given.
        name: String,
        /// `did you mean "X"? ` for a declared parameter of nearly that
        /// name (`AutoScaleMetric` where the earlier template spells it
        /// `AutoScalemetric`), else empty.
        suggestion: String,
        /// The template's parameters.
        declared: String,
    },
    /// A value outside the parameter's `AllowedValues`.
    #[error(
        "{origin}: parameter {name:?}: {value:?} is not one of its AllowedValues in {} (allowed: {allowed})", template.display()
    )]
    NotAllowed {
        /// Where the value came from.
        origin: String,
        /// The template.
        template: PathBuf,
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// The allowed values, quoted and comma-separated.
        allowed: String,
    },
    /// A `Number` parameter given something else.
    #[error("{origin}: parameter {name:?}: {value:?} is not a number (its Type is Number)")]
    NotANumber {
        /// Where the value came from.
        origin: String,
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
    },
    /// A parameter that the deployed resources use has no value.
    #[error("{}: parameter {name:?} has no Default and no value was given, and {needed_by} uses it: give it in the parameters file or as --parameter {name}=VALUE{allowed}{also}", template.display())]
    Missing {
        /// The template.
        template: PathBuf,
        /// The parameter.
        name: String,
        /// `; so do ... (none given either)` for the other parameters the
        /// same property needs that have no value, so that one run names
        /// them all; empty when there are none.
        also: String,
        /// Which resource property needs it.
        needed_by: String,
        /// ` (allowed: ...)` when the parameter has AllowedValues.
        allowed: String,
    },
    /// The template is not the reference design (or a part of it cannot be
    /// evaluated).
    #[error("{}: not the reference design's autoscaling template: {found} (expected {expected})", template.display())]
    NotTheDesign {
        /// The template.
        template: PathBuf,
        /// What was found.
        found: String,
        /// What the reference design has there.
        expected: String,
    },
    /// A value the reference design accepts but flinkscale cannot run as it
    /// is.
    #[error("{at}: parameter {name:?} = {value:?}: {problem} (valid: {valid})")]
    Unsupported {
        /// Where to change the value: the template for one of its defaults
        /// or literals, else where it was given (a parameters file and
        /// line, or `--parameter`).
        at: String,
        /// The parameter (or template property) the value came from.
        name: String,
        /// The value.
        value: String,
        /// Why it cannot be imported.
        problem: String,
        /// What would be.
        valid: String,
    },
    /// The generated configuration does not pass validation: a value
    /// flinkscale refuses that no earlier check named.
    #[error("{}: the imported configuration is not valid:\n{errors}", template.display())]
    Invalid {
        /// The template.
        template: PathBuf,
        /// The loader's report.
        errors: String,
    },
}

/// The accepted parameter file shapes, for error messages.
pub const PARAMETERS_FORMAT: &str = "the `aws cloudformation` parameters file, [{\"ParameterKey\": \"MaxKPU\", \"ParameterValue\": \"32\"}, ...], or `aws cloudformation describe-stacks` output with one stack";

/// One value given for a template parameter, and where it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenValue {
    /// The parameter key.
    pub key: String,
    /// Its value, as CloudFormation receives it (text).
    pub value: String,
    /// A parameters file's path, or `--parameter`.
    pub origin: String,
}

/// The stack's parameter values, in the order given: a later value for the
/// same key wins (so `--parameter` overrides the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterValues {
    given: Vec<GivenValue>,
}

impl ParameterValues {
    /// No values: every parameter takes its template default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the values of a parameters file: the `aws cloudformation`
    /// parameter list, or `describe-stacks` output with exactly one stack.
    /// Each value is named by the file and the line of its entry's
    /// `"ParameterKey"`, so that an error about it points there.
    pub fn add_file(&mut self, file: &Path, text: &str) -> Result<(), ImportError> {
        let json: Value = parse_json(file, text, PARAMETERS_FORMAT)?;
        let shape_error = |message: String| ImportError::ParametersFile {
            file: file.to_owned(),
            line: None,
            message,
        };
        let entry_error = |line: Option<usize>, message: String| ImportError::ParametersFile {
            file: file.to_owned(),
            line,
            message,
        };
        let list = match &json {
            Value::Array(list) => list,
            Value::Object(o) => match o.get("Stacks").and_then(Value::as_array) {
                Some(stacks) if stacks.len() == 1 => stacks[0]
                    .get("Parameters")
                    .and_then(Value::as_array)
                    .ok_or_else(|| shape_error("the stack has no \"Parameters\" list".into()))?,
                Some(stacks) => {
                    return Err(shape_error(format!(
                        "{} stacks in \"Stacks\"; give the output of describe-stacks --stack-name NAME for one",
                        stacks.len()
                    )));
                }
                None => return Err(shape_error("an object without \"Stacks\"".into())),
            },
            _ => return Err(shape_error("neither a list nor an object".into())),
        };
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let key = entry
                .get("ParameterKey")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    shape_error(format!(
                        "entry {} of the parameter list (counting from 1) has no \"ParameterKey\" text",
                        i + 1
                    ))
                })?;
            let line = key_line(text, key);
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                // CloudFormation refuses a list that gives a key twice;
                // taking either value would be a guess.
                return Err(entry_error(
                    line,
                    format!(
                        "parameter {key:?} is given twice, in entries {} and {} of the list (counting from 1); give it once",
                        first + 1,
                        i + 1
                    ),
                ));
            }
            seen.push((key, i));
            if entry.get("UsePreviousValue").and_then(Value::as_bool) == Some(true) {
                return Err(entry_error(
                    line,
                    format!(
                        "parameter {key:?} says UsePreviousValue, which only the deployed stack knows; give its value"
                    ),
                ));
            }
            let value = entry
                .get("ParameterValue")
                .and_then(template::scalar_text)
                .ok_or_else(|| {
                    entry_error(line, format!("parameter {key:?} has no \"ParameterValue\""))
                })?;
            let origin = match line {
                Some(line) => format!("{}:{line}", file.display()),
                None => file.display().to_string(),
            };
            self.given.push(GivenValue {
                key: key.to_owned(),
                value,
                origin,
            });
        }
        Ok(())
    }

    /// Adds one `KEY=VALUE` (a `--parameter` argument).
    pub fn add_assignment(&mut self, text: &str) -> Result<(), ImportError> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                self.given.push(GivenValue {
                    key: key.trim().to_owned(),
                    value: value.to_owned(),
                    origin: "--parameter".into(),
                });
                Ok(())
            }
            _ => Err(ImportError::Assignment {
                given: text.to_owned(),
            }),
        }
    }

    /// Adds `key`'s value given by a named option (`origin`, e.g.
    /// `--application-name`), after, and so over, every earlier value.
    pub fn add_named(&mut self, key: &str, value: &str, origin: &str) {
        self.given.push(GivenValue {
            key: key.to_owned(),
            value: value.to_owned(),
            origin: origin.to_owned(),
        });
    }

    /// The values given, in order.
    pub fn given(&self) -> &[GivenValue] {
        &self.given
    }
}

/// Where an imported value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A template parameter (its given value or its default).
    Parameter(String),
    /// A value written in the template itself.
    Template,
    /// Not set by the template: the default of CloudWatch, or of flinkscale,
    /// which is said in the text.
    Unset(&'static str),
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

/// The metric one or both alarms watch.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedMetric {
    /// The metric id in the configuration.
    pub id: String,
    /// CloudWatch namespace.
    pub namespace: Sourced<String>,
    /// Metric name.
    pub metric_name: Sourced<String>,
    /// Dimensions, in the template's order.
    pub dimensions: Vec<(String, Sourced<String>)>,
    /// `Statistic` or `ExtendedStatistic`.
    pub statistic: Sourced<String>,
    /// Period in seconds.
    pub period_secs: Sourced<u32>,
}

/// One of the two alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAlarm {
    /// `scale-out` or `scale-in`.
    pub id: &'static str,
    /// The template's logical id of the alarm resource.
    pub resource: String,
    /// The CloudWatch alarm's name in the deployed stack.
    pub alarm_name: String,
    /// The id of the metric it watches.
    pub metric: String,
    /// `ComparisonOperator`.
    pub comparison: Sourced<String>,
    /// `Threshold`.
    pub threshold: Sourced<f64>,
    /// `EvaluationPeriods` (N).
    pub evaluation_periods: Sourced<u32>,
    /// `DatapointsToAlarm` (M).
    pub datapoints_to_alarm: Sourced<u32>,
    /// `TreatMissingData`.
    pub treat_missing_data: Sourced<String>,
}

/// The stack, as flinkscale will run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The template file, as named to [`import`].
    pub template: PathBuf,
    /// The template parameter that chose the metric (whose AllowedValues
    /// pick the alarms): `AutoScaleMetric` (any case) when the template has
    /// it, else the parameter the alarms' `MetricName` refers to.
    pub metric_parameter: Option<Sourced<String>>,
    /// The MSF application.
    pub application: Sourced<String>,
    /// MinKPU.
    pub min_kpu: Sourced<u32>,
    /// MaxKPU.
    pub max_kpu: Sourced<u32>,
    /// The Step Functions wait between DescribeApplication calls while
    /// UPDATING.
    pub update_poll_secs: Sourced<u32>,
    /// The Step Functions wait after an update before the alarm is looked at
    /// again.
    pub grace_period_secs: Sourced<u32>,
    /// The metrics (one when both alarms watch the same).
    pub metrics: Vec<ImportedMetric>,
    /// Scale-out, then scale-in.
    pub alarms: Vec<ImportedAlarm>,
    /// The reference's ScaleOperation, as given.
    pub scale_operation: Sourced<String>,
    /// `multiply` or `add`, as the `step` policy calls it.
    pub operation: &'static str,
    /// ScaleOutFactor.
    pub scale_out_factor: Sourced<u32>,
    /// ScaleInFactor.
    pub scale_in_factor: Sourced<u32>,
    /// Where each parameter was given (`p.json:5`, `--parameter
    /// MinKPU=10`), the last time, for errors about its value.
    pub given_at: BTreeMap<String, String>,
    /// Whether the template's Lambda counts KPU as flinkscale does (the
    /// CDK app's `scaling.py`: parallelism / ParallelismPerKPU, rounded
    /// up), rather than comparing the bounds with the parallelism (the
    /// JSON templates' Lambda, and the built-in template, which does not
    /// carry its code).
    pub lambda_counts_kpu: bool,
    /// The parameters given a value (and where) that no resource or
    /// condition of the template uses: their values change nothing (the
    /// CDK app's `MetricPeriod`).
    pub unused: Vec<(String, String)>,
}

/// The reference design's template, built into the binary so that an
/// operator needs only the stack's parameters: a restatement of the parts
/// the importer reads (see tests/fixtures/cfn/README.md), current shape.
pub const REFERENCE_TEMPLATE: &str = include_str!("reference-template.json");

/// How [`REFERENCE_TEMPLATE`] is named in errors and in the output's header.
pub const REFERENCE_TEMPLATE_NAME: &str = "built-in managed-flink-autoscaling.json";

/// What a template is expected to be.
const TEMPLATE_FORMAT: &str = "a CloudFormation template in JSON or YAML, or `aws cloudformation \
     get-template --query TemplateBody` output, the template as one JSON string";

/// CloudFormation's limit for a template (uploaded to S3; 51,200 bytes
/// passed inline): a larger text is no stack's, and is refused before
/// a parse whose time grows with it.
const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

/// Whether the JSON parse of `text` stopped (at 1-based `line`, `column`)
/// at a letter or `!` that follows no digit: the start of an unquoted
/// YAML word or tag, not a number JSON refuses (`0x10`, `0o7`).
fn stopped_at_a_word(text: &str, line: usize, column: usize) -> bool {
    let Some(row) = text.lines().nth(line.saturating_sub(1)) else {
        return false;
    };
    let chars: Vec<char> = row.chars().collect();
    let at = column.saturating_sub(1);
    let Some(&c) = chars.get(at) else {
        return false;
    };
    let after_digit = at > 0 && chars[at - 1].is_ascii_digit();
    (c.is_alphabetic() || c == '!') && !after_digit
}

/// `:line:column`, `:line` or nothing, for an error's place.
fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// A template's text as JSON: a JSON object; YAML ([`super::yaml`]);
/// or one JSON string holding either (what `get-template --query
/// TemplateBody` writes for a stack deployed from YAML). A leading byte
/// order mark is skipped.
fn parse_template(file: &Path, text: &str) -> Result<Value, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    if first != Some('"') && text.len() > MAX_TEMPLATE_BYTES {
        return Err(ImportError::NotTheDesign {
            template: file.to_owned(),
            found: format!("{} bytes", text.len()),
            expected: format!(
                "at most {MAX_TEMPLATE_BYTES} bytes, CloudFormation's limit for a template"
            ),
        });
    }
    match first {
        // JSON, or YAML in flow style (which CloudFormation reads too):
        // the JSON error is the one said when neither reads it.
        Some('{' | '[') => parse_json(file, text, TEMPLATE_FORMAT).or_else(|json_error| {
            // Flow-style YAML (a key or value without quotes, `!Ref`) is
            // read as YAML: JSON stopped at a letter or `!` that follows
            // no digit. A number JSON refuses is not (a JSON template with
            // `010`, `0x10` or `+70` must not pass as YAML's 10, 16, 70).
            match &json_error {
                ImportError::NotJson { line, column, .. }
                    if stopped_at_a_word(text, *line, *column) =>
                {
                    super::yaml::to_json(text).map_err(|_| json_error)
                }
                _ => Err(json_error),
            }
        }),
        Some('"') => {
            let inner = match parse_json(file, text, TEMPLATE_FORMAT)? {
                Value::String(inner) if !inner.trim_start().starts_with('"') => inner,
                _ => {
                    return Err(ImportError::NotTheDesign {
                        template: file.to_owned(),
                        found: "a JSON string holding another JSON string".into(),
                        expected: TEMPLATE_FORMAT.into(),
                    });
                }
            };
            // The lines an error names are those of the text the string
            // holds, not the file's.
            let holder = PathBuf::from(format!(
                "{} (the template its JSON string holds)",
                file.display()
            ));
            parse_template(&holder, &inner)
        }
        _ => super::yaml::to_json(text).map_err(|e| ImportError::NotYaml {
            // The place goes in front, as for every error.
            message: match (e.line, e.column) {
                (Some(l), Some(c)) => {
                    e.message
                        .replacen(&format!(" at line {l} column {c}"), "", 1)
                }
                _ => e.message.clone(),
            },
            file: file.to_owned(),
            line: e.line,
            column: e.column,
        }),
    }
}

fn parse_json(file: &Path, text: &str, expected: &'static str) -> Result<Value, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| ImportError::NotJson {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
        expected,
    })
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameter that names the application in the JSON templates; what
/// `--application-name` sets when the template does not say another.
pub const APPLICATION_NAME_PARAMETER: &str = "AmazonManagedFlinkApplicationName";

/// The option whose value [`import`] gives to the parameter the template's
/// Lambda reads the application's name from, whatever its name.
pub const APPLICATION_NAME_OPTION: &str = "--application-name";

/// The parameter the template's Lambda reads the application's name from
/// (`flinkApplicationName: {"Ref": P}`), else
/// [`APPLICATION_NAME_PARAMETER`].
fn application_parameter(root: &Value) -> String {
    root.get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|resources| resources.values())
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Lambda::Function"))
        .find_map(|r| {
            r.pointer("/Properties/Environment/Variables/flinkApplicationName/Ref")
                .and_then(Value::as_str)
        })
        .unwrap_or(APPLICATION_NAME_PARAMETER)
        .to_owned()
}

/// The import's `update_timeout_secs` for polls `poll_secs` apart: the
/// agent's default, 1800 s, or three polls when they are longer apart
/// (a timeout of one poll gave up at the first poll; the reference waits
/// for ever).
fn update_timeout_secs(poll_secs: u32) -> u32 {
    poll_secs.saturating_mul(3).max(1800)
}

/// Which way an alarm of the design scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Out,
    In,
}

/// The direction of the design's alarm `name` (`ScaleOutAlarm-APP`,
/// `ScaleInAlarm-APP`): by its first word, so that an application whose
/// name holds the other (`ScaleOutTest`) is read right. (The reference
/// Lambda looks for "ScaleOut" anywhere in the name, so such a stack
/// scales out on its scale-in alarm: [`Imported::warnings`] says so.)
/// Names of another shape go by which word they hold.
fn direction(name: &str) -> Option<Direction> {
    if name.starts_with("ScaleOut") {
        Some(Direction::Out)
    } else if name.starts_with("ScaleIn") {
        Some(Direction::In)
    } else if name.contains("ScaleOut") {
        Some(Direction::Out)
    } else if name.contains("ScaleIn") {
        Some(Direction::In)
    } else {
        None
    }
}

/// The environment variables the reference Lambda reads.
const LAMBDA_VARIABLES: [&str; 6] = [
    "flinkApplicationName",
    "scaleInFactor",
    "scaleOutFactor",
    "scaleOperation",
    "minKPU",
    "maxKPU",
];

/// Imports the reference design's template `text` (read from `file`) with
/// the stack's parameter values.
pub fn import(file: &Path, text: &str, given: &ParameterValues) -> Result<Imported, ImportError> {
    let root = parse_template(file, text)?;
    // `--application-name` names the parameter the Lambda reads the name
    // from: `AmazonManagedFlinkApplicationName` in the JSON templates,
    // `ApplicationName` in the CDK app's.
    let name_parameter = application_parameter(&root);
    let given = &ParameterValues {
        given: given
            .given()
            .iter()
            .map(|g| GivenValue {
                key: if g.key == APPLICATION_NAME_PARAMETER && g.origin == APPLICATION_NAME_OPTION {
                    name_parameter.clone()
                } else {
                    g.key.clone()
                },
                ..g.clone()
            })
            .collect(),
    };
    // The name goes into the state machine's definition, a JSON text: one
    // that is not an application's name (a quote, a space) would break it
    // and read as a template that is not the reference design's.
    if let Some(name) = given.given().iter().rev().find(|g| g.key == name_parameter)
        && !crate::config::validate::is_application_name(&name.value)
    {
        return Err(ImportError::Unsupported {
            at: name.origin.clone(),
            name: name.key.clone(),
            value: name.value.clone(),
            problem: "is not an MSF application name".to_owned(),
            valid: "1 to 128 letters, digits, `_`, `-` and `.`".to_owned(),
        });
    }
    let imported = import_template(file, &root, given).map_err(|error| match error {
        // A value the user gave is changed where it was given.
        ImportError::Unsupported {
            at,
            name,
            value,
            problem,
            valid,
        } => ImportError::Unsupported {
            at: given
                .given()
                .iter()
                .rev()
                .find(|g| g.key == name)
                .map_or(at, |g| g.origin.clone()),
            name,
            value,
            problem,
            valid,
        },
        other => other,
    });
    let imported = imported.map_err(|error| with_line(error, file, text, &root));
    imported.map(|mut imported| {
        for g in given.given() {
            imported.given_at.insert(g.key.clone(), g.origin.clone());
        }
        // A value no resource uses, unless it is the default anyway
        // (describe-stacks lists every parameter of the stack).
        let referenced = referenced_parameters(&root);
        let declared = template::declared(&root).unwrap_or_default();
        let last: BTreeMap<&str, &GivenValue> =
            given.given().iter().map(|g| (g.key.as_str(), g)).collect();
        imported.unused = last
            .into_iter()
            .filter(|(key, g)| {
                !referenced.contains(key)
                    && declared.get(*key).and_then(|d| d.default.as_deref())
                        != Some(g.value.as_str())
            })
            .map(|(key, g)| (key.to_owned(), g.origin.clone()))
            .collect();
        imported
    })
}

/// `error` about a part of the template `text` (read from `file`) with
/// the line of that part: a resource's property (`resource X's Statistic`)
/// or a parameter's default. serde_json's values carry no position, so
/// the line is found in the text by the keys: the resource's, then the
/// property's after it. Unchanged when the part is not found, and for a
/// template given as one JSON string (its lines are the string's).
fn with_line(error: ImportError, file: &Path, text: &str, root: &Value) -> ImportError {
    if text.trim_start().starts_with('"') {
        return error;
    }
    let resources: Vec<&str> = root
        .get("Resources")
        .and_then(Value::as_object)
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let at_file = file.display().to_string();
    let placed = |line: usize| format!("{at_file}:{line}");
    let mut error = error;
    match &mut error {
        ImportError::NotTheDesign {
            template, found, ..
        } if template == file => {
            if let Some(line) = resource_line(text, found, None, &resources) {
                *template = PathBuf::from(placed(line));
            }
        }
        ImportError::Missing {
            template,
            needed_by,
            ..
        } if template == file => {
            if let Some(line) = resource_line(text, needed_by, None, &resources) {
                *template = PathBuf::from(placed(line));
            }
        }
        ImportError::Unsupported {
            at, name, problem, ..
        } if *at == at_file => {
            let line = resource_line(text, problem, Some(name), &resources)
                .or_else(|| parameter_line(text, name));
            if let Some(line) = line {
                *at = placed(line);
            }
        }
        _ => {}
    }
    error
}

/// The line of the part `said` names (`resource X's P ...`, `resource
/// X: ...`): property P of resource X (else `property`, when given), or X
/// itself. X is looked for under the template's `Resources`, and P
/// within X: up to the next of `resources` (the template's resources)
/// after it.
fn resource_line(
    text: &str,
    said: &str,
    property: Option<&str>,
    resources: &[&str],
) -> Option<usize> {
    let rest = &said[said.find("resource ")? + "resource ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .unwrap_or(rest.len());
    let (resource, after) = rest.split_at(end);
    let from = section(text, "Resources").unwrap_or(0);
    let offset = key_offsets(text, resource)
        .into_iter()
        .find(|o| *o >= from)?;
    let until = resources
        .iter()
        .filter(|r| **r != resource)
        .filter_map(|r| key_offsets(text, r).into_iter().find(|o| *o > offset))
        .min()
        .unwrap_or(text.len());
    let named = after.strip_prefix("'s ").map(|p| {
        let end = p
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(p.len());
        &p[..end]
    });
    let found = named.or(property).filter(|p| !p.is_empty()).and_then(|p| {
        key_offsets(text, p)
            .into_iter()
            .find(|o| (offset..until).contains(o))
    });
    Some(line_at(text, found.unwrap_or(offset)))
}

/// The line of parameter `name`'s declaration, under the template's
/// `Parameters` (not a label of it in the metadata).
fn parameter_line(text: &str, name: &str) -> Option<usize> {
    let from = section(text, "Parameters").unwrap_or(0);
    let offset = key_offsets(text, name).into_iter().find(|o| *o >= from)?;
    Some(line_at(text, offset))
}

/// The offset of the top-level key `name`: of its occurrences as a key,
/// the least indented (the first of those).
fn section(text: &str, name: &str) -> Option<usize> {
    key_offsets(text, name)
        .into_iter()
        .min_by_key(|o| o - text[..*o].rfind('\n').map_or(0, |n| n + 1))
}

/// The 1-based line of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Every byte offset of `key` as a key in `text`: `"key":` (JSON, or
/// quoted YAML), `'key':`, or `key:` after a YAML line's indentation (or
/// its `- `).
fn key_offsets(text: &str, key: &str) -> Vec<usize> {
    if key.is_empty() {
        return Vec::new();
    }
    let mut offsets = Vec::new();
    for quote in ['"', '\''] {
        let quoted = format!("{quote}{key}{quote}");
        offsets.extend(
            text.match_indices(&quoted)
                .filter(|(at, _)| text[at + quoted.len()..].trim_start().starts_with(':'))
                .map(|(at, _)| at),
        );
    }
    offsets.extend(
        text.match_indices(key)
            .filter(|(at, _)| {
                let line_start = text[..*at].rfind('\n').map_or(0, |n| n + 1);
                let before = text[line_start..*at].trim();
                (before.is_empty() || before == "-") && text[at + key.len()..].starts_with(':')
            })
            .map(|(at, _)| at),
    );
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// The names `Ref` or `${...}` (in `Fn::Sub`) point at anywhere in the
/// template's resources and conditions: the parameters the stack uses.
fn referenced_parameters(root: &Value) -> std::collections::BTreeSet<&str> {
    fn walk<'v>(value: &'v Value, found: &mut std::collections::BTreeSet<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("Ref", Value::String(name)) => {
                            found.insert(name);
                        }
                        ("Fn::Sub", Value::String(text)) => subs(text, found),
                        ("Fn::Sub", Value::Array(items)) => {
                            if let Some(Value::String(text)) = items.first() {
                                subs(text, found);
                            }
                            items.iter().skip(1).for_each(|i| walk(i, found));
                        }
                        _ => walk(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    fn subs<'v>(text: &'v str, found: &mut std::collections::BTreeSet<&'v str>) {
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                break;
            };
            found.insert(&after[..end]);
            rest = &after[end..];
        }
    }
    let mut found = std::collections::BTreeSet::new();
    for part in ["Resources", "Conditions"] {
        if let Some(value) = root.get(part) {
            walk(value, &mut found);
        }
    }
    found
}

/// [`import`], its errors naming the template.
fn import_template(
    file: &Path,
    root: &Value,
    given: &ParameterValues,
) -> Result<Imported, ImportError> {
    let not_design = |found: String, expected: &str| ImportError::NotTheDesign {
        template: file.to_owned(),
        found,
        expected: expected.to_owned(),
    };
    let declared = template::declared(root).ok_or_else(|| {
        not_design(
            "no \"Parameters\" object".into(),
            "the template's Parameters: AmazonManagedFlinkApplicationName, the metric, MinKPU, MaxKPU, thresholds, factors, ScaleOperation",
        )
    })?;
    let values = parameter_values(file, &declared, given)?;
    let stack = Stack {
        root,
        values,
        stand_ins: BTreeMap::new(),
        evaluating: Default::default(),
        known: Default::default(),
        depth: Default::default(),
        placeholders: Default::default(),
    };
    let resources = root
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            not_design(
                "no \"Resources\" object".into(),
                "two CloudWatch alarms, a Lambda function and a Step Functions state machine",
            )
        })?;
    let mut live = Vec::new();
    for (logical, resource) in resources {
        let exists = stack.resource_exists(resource).map_err(|e| {
            resolve_error(
                file,
                &declared,
                e,
                &format!("resource {logical}'s Condition"),
            )
        })?;
        if exists {
            live.push((logical.as_str(), resource));
        }
    }
    let of_type = |kind: &str| -> Vec<(&str, &Value)> {
        live.iter()
            .copied()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .collect()
    };

    // The alarms: the Lambda tells scale-out from scale-in by "ScaleOut" /
    // "ScaleIn" in the alarm's name, and so does the import.
    let mut out_alarm: Option<(ImportedAlarm, ImportedMetric)> = None;
    let mut in_alarm: Option<(ImportedAlarm, ImportedMetric)> = None;
    let mut metric_parameter = None;
    for (logical, resource) in of_type("AWS::CloudWatch::Alarm") {
        let alarm = read_alarm(file, &declared, &stack, logical, resource)?;
        let slot = match direction(&alarm.0.alarm_name) {
            Some(Direction::Out) => &mut out_alarm,
            Some(Direction::In) => &mut in_alarm,
            None => continue,
        };
        if let Some((previous, _)) = slot.as_ref() {
            return Err(not_design(
                format!(
                    "two alarms for the same direction exist with these parameters: {} and {}",
                    previous.resource, logical
                ),
                "one ScaleOut and one ScaleIn alarm, chosen by the metric parameter's conditions",
            ));
        }
        if let Source::Parameter(p) = &alarm.1.metric_name.source {
            metric_parameter = Some(Sourced {
                value: stack.values.get(p).cloned().unwrap_or_default(),
                source: Source::Parameter(p.clone()),
            });
        }
        *slot = Some(alarm);
    }
    // The parameter that picks the alarm pair names the choice better than
    // the metric name does (`Custom Metric` -> AutoScaleCustomMetric).
    if let Some(name) = declared
        .keys()
        .find(|k| k.eq_ignore_ascii_case("autoscalemetric"))
    {
        metric_parameter = Some(Sourced {
            value: stack.values.get(name).cloned().unwrap_or_default(),
            source: Source::Parameter(name.clone()),
        });
    }
    let (Some((mut out_alarm, out_metric)), Some((mut in_alarm, in_metric))) =
        (out_alarm, in_alarm)
    else {
        let chosen = metric_choice(&declared, &stack);
        return Err(not_design(
            format!(
                "no pair of ScaleOut/ScaleIn CloudWatch alarms exists with these parameters{chosen}"
            ),
            "an AWS::CloudWatch::Alarm named \"ScaleOutAlarm-...\" and one named \"ScaleInAlarm-...\" whose Conditions hold for the chosen metric",
        ));
    };
    let mut metrics = vec![out_metric.clone()];
    if in_metric.same_series(&out_metric) {
        in_alarm.metric = out_metric.id.clone();
    } else {
        metrics[0].id = format!("{}_out", out_metric.id);
        out_alarm.metric = metrics[0].id.clone();
        let mut second = in_metric;
        second.id = format!("{}_in", second.id);
        in_alarm.metric = second.id.clone();
        metrics.push(second);
    }

    // The Lambda's environment: what it scales and by how much.
    let lambdas: Vec<_> = of_type("AWS::Lambda::Function")
        .into_iter()
        .filter(|(_, r)| {
            let vars = r.pointer("/Properties/Environment/Variables");
            LAMBDA_VARIABLES
                .iter()
                .all(|v| vars.and_then(|vars| vars.get(*v)).is_some())
        })
        .collect();
    let [(lambda, lambda_resource)] = lambdas.as_slice() else {
        return Err(not_design(
            format!(
                "{} Lambda functions with the scaling environment",
                lambdas.len()
            ),
            &format!(
                "one AWS::Lambda::Function whose Environment.Variables has {}",
                LAMBDA_VARIABLES.join(", ")
            ),
        ));
    };
    let variable = |name: &str| -> Result<Sourced<String>, ImportError> {
        let raw = lambda_resource
            .pointer(&format!("/Properties/Environment/Variables/{name}"))
            .unwrap_or(&Value::Null);
        let context = format!("resource {lambda}'s environment variable {name}");
        let value = stack
            .resolve(raw)
            .map_err(|e| resolve_error(file, &declared, e, &context))?;
        let value = template::scalar_text(&value)
            .ok_or_else(|| not_design(format!("{context} is {value}"), "a text or number"))?;
        Ok(Sourced {
            value,
            source: source_of(raw, &declared, &stack),
        })
    };
    let application = variable("flinkApplicationName")?;
    let whole = |s: Sourced<String>, what: &str, min: u32| -> Result<Sourced<u32>, ImportError> {
        let parsed = s.value.trim().parse::<i64>().ok();
        let problem = match parsed.map(|n| (n, u32::try_from(n))) {
            Some((_, Ok(value))) if value >= min => {
                return Ok(Sourced {
                    value,
                    source: s.source,
                });
            }
            Some((n, _)) if n < i64::from(min) => {
                format!("{what} must be at least {min}")
            }
            Some(_) => format!("{what} must be at most {}", u32::MAX),
            None => {
                format!(
                    "the reference Lambda reads {what} with int(), so it must be a whole number"
                )
            }
        };
        Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&s.source, what),
            value: s.value,
            problem,
            valid: format!("a whole number from {min} to {}", u32::MAX),
        })
    };
    let min_kpu = whole(variable("minKPU")?, "minKPU", 1)?;
    let max_kpu = whole(variable("maxKPU")?, "maxKPU", 1)?;
    let scale_operation = variable("scaleOperation")?;
    // The Lambda multiplies on exactly "Multiply/Divide" and adds on
    // anything else.
    let operation = if scale_operation.value == "Multiply/Divide" {
        "multiply"
    } else {
        "add"
    };
    let least = if operation == "multiply" { 2 } else { 1 };
    let factor = |name: &str| -> Result<Sourced<u32>, ImportError> {
        let s = variable(name)?;
        let value = s.value.clone();
        whole(s, name, 0).and_then(|f| {
            if f.value >= least {
                Ok(f)
            } else {
                Err(ImportError::Unsupported {
                    at: file.display().to_string(),
                    name: source_name(&f.source, name),
                    value,
                    problem: format!(
                        "with ScaleOperation {:?} this factor never changes the capacity, and the `step` policy refuses it",
                        scale_operation.value
                    ),
                    valid: format!("a whole number >= {least}"),
                })
            }
        })
    };
    let scale_out_factor = factor("scaleOutFactor")?;
    let scale_in_factor = factor("scaleInFactor")?;

    // The state machine's two waits.
    let machines = of_type("AWS::StepFunctions::StateMachine");
    let [(machine, machine_resource)] = machines.as_slice() else {
        return Err(not_design(
            format!("{} Step Functions state machines", machines.len()),
            "one AWS::StepFunctions::StateMachine",
        ));
    };
    let waits = state_machine_waits(file, &declared, &stack, machine, machine_resource)?;

    Ok(Imported {
        template: file.to_owned(),
        metric_parameter,
        application,
        min_kpu,
        max_kpu,
        update_poll_secs: waits.poll,
        grace_period_secs: waits.grace,
        metrics,
        alarms: vec![out_alarm, in_alarm],
        scale_operation,
        operation,
        scale_out_factor,
        scale_in_factor,
        given_at: BTreeMap::new(),
        lambda_counts_kpu: counts_kpu(lambda_resource),
        unused: Vec::new(),
    })
}

/// Whether a scaling Lambda's inline code counts KPU from the parallelism
/// (`(parallelism + parallelismPerKPU - 1) // parallelismPerKPU`, the CDK
/// app's `scaling.py`).
fn counts_kpu(lambda: &Value) -> bool {
    lambda
        .pointer("/Properties/Code/ZipFile")
        .and_then(Value::as_str)
        .is_some_and(|code| code.contains("// parallelismPerKPU"))
}

/// The line (1-based) of the first `"ParameterKey": "KEY"` in `text`, the
/// entry that gives `key` in a parameters file: serde_json's values carry
/// no position, and errors about a value should name its line.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let quoted = serde_json::to_string(key).ok()?;
    text.match_indices("\"ParameterKey\"")
        .find_map(|(at, name)| {
            let rest = text[at + name.len()..].trim_start();
            let rest = rest.strip_prefix(':')?.trim_start();
            rest.starts_with(&quoted)
                .then(|| text[..at].matches('\n').count() + 1)
        })
}

/// The given values checked against the declarations, over the defaults.
fn parameter_values(
    file: &Path,
    declared: &BTreeMap<String, Declared>,
    given: &ParameterValues,
) -> Result<BTreeMap<String, String>, ImportError> {
    let mut values: BTreeMap<String, String> = declared
        .iter()
        .filter_map(|(name, d)| d.default.clone().map(|v| (name.clone(), v)))
        .collect();
    for g in given.given() {
        let Some(decl) = declared.get(&g.key) else {
            let nearest = declared
                .keys()
                .map(|k| {
                    let distance = crate::config::load::edit_distance(
                        &g.key.to_lowercase(),
                        &k.to_lowercase(),
                    );
                    (distance, k)
                })
                .filter(|(distance, k)| *distance <= 2.max(k.len() / 4))
                .min_by_key(|(distance, _)| *distance);
            return Err(ImportError::UnknownParameter {
                origin: g.origin.clone(),
                template: file.to_owned(),
                name: g.key.clone(),
                suggestion: nearest
                    .map(|(_, k)| format!("did you mean {k:?}? "))
                    .unwrap_or_default(),
                declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if !decl.allowed.is_empty() && !decl.allowed.contains(&g.value) {
            return Err(ImportError::NotAllowed {
                origin: g.origin.clone(),
                template: file.to_owned(),
                name: g.key.clone(),
                value: g.value.clone(),
                allowed: quoted_list(&decl.allowed),
            });
        }
        if decl.kind == "Number" && g.value.trim().parse::<f64>().is_err() {
            return Err(ImportError::NotANumber {
                origin: g.origin.clone(),
                name: g.key.clone(),
                value: g.value.clone(),
            });
        }
        values.insert(g.key.clone(), g.value.clone());
    }
    Ok(values)
}

/// The parameters `value` refers to (`{"Ref": NAME}`, anywhere in it)
/// that have no value in `stack`, in the order found, each once.
fn missing_refs(value: &Value, stack: &Stack<'_>) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(name)) = map.get("Ref")
                    && !found.contains(name)
                {
                    found.push(name.clone());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(value, &mut refs);
    refs.into_iter()
        .filter(|name| {
            matches!(
                stack.resolve(&serde_json::json!({ "Ref": name })),
                Err(template::ResolveError::Missing(_))
            )
        })
        .collect()
}

fn resolve_error(
    file: &Path,
    declared: &BTreeMap<String, Declared>,
    error: ResolveError,
    context: &str,
) -> ImportError {
    match error {
        ResolveError::Missing(name) => {
            let allowed = declared
                .get(&name)
                .filter(|d| !d.allowed.is_empty())
                .map(|d| format!(" (allowed: {})", quoted_list(&d.allowed)))
                .unwrap_or_default();
            ImportError::Missing {
                template: file.to_owned(),
                name,
                also: String::new(),
                needed_by: context.to_owned(),
                allowed,
            }
        }
        ResolveError::Unsupported(what) => ImportError::NotTheDesign {
            template: file.to_owned(),
            found: format!("{context}: {what}"),
            expected:
                "Ref, Fn::Join, Fn::Sub, Fn::If and conditions, as the reference template uses"
                    .into(),
        },
    }
}

/// `Parameter(P)` for `{"Ref": P}` of a declared parameter, else `Template`.
fn source_of(raw: &Value, declared: &BTreeMap<String, Declared>, stack: &Stack<'_>) -> Source {
    source_within(raw, declared, stack, 0)
}

/// [`source_of`], looking through the functions that pass one parameter's
/// value on unchanged: the branch an `Fn::If` takes, an `Fn::Sub` of
/// `"${Name}"` alone, an `Fn::Join` of one part. A value made of more than
/// one parameter's, or of text around one, is the template's (naming the
/// parameter would say it has a value it does not).
fn source_within(
    raw: &Value,
    declared: &BTreeMap<String, Declared>,
    stack: &Stack<'_>,
    depth: usize,
) -> Source {
    let parameter = |name: &str| {
        declared
            .contains_key(name)
            .then(|| Source::Parameter(name.to_owned()))
    };
    let Some((function, arg)) = raw
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return Source::Template;
    };
    if depth > 8 {
        return Source::Template;
    }
    let found = match function.as_str() {
        "Ref" => arg.as_str().and_then(parameter),
        "Fn::If" => arg.as_array().filter(|a| a.len() == 3).and_then(|a| {
            let holds = stack.condition(a[0].as_str()?).ok()?;
            Some(source_within(
                &a[if holds { 1 } else { 2 }],
                declared,
                stack,
                depth + 1,
            ))
        }),
        "Fn::Sub" => arg
            .as_str()
            .or_else(|| arg.as_array()?.first()?.as_str())
            .and_then(|text| text.trim().strip_prefix("${")?.strip_suffix('}'))
            .filter(|name| !name.contains(['$', '{', '}']))
            // A variable of the `Fn::Sub` map shadows a parameter.
            .filter(|name| {
                arg.as_array()
                    .and_then(|a| a.get(1))
                    .and_then(Value::as_object)
                    .is_none_or(|vars| !vars.contains_key(*name))
            })
            .and_then(parameter),
        "Fn::Join" => match arg
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(Value::as_array)
        {
            Some(parts) if parts.len() == 1 => {
                Some(source_within(&parts[0], declared, stack, depth + 1))
            }
            _ => None,
        },
        _ => None,
    };
    found.unwrap_or(Source::Template)
}

fn source_name(source: &Source, property: &str) -> String {
    match source {
        Source::Parameter(p) => p.clone(),
        _ => property.to_owned(),
    }
}

/// ` (AutoScaleMetric = "x")` for error messages, when the template has a
/// parameter that looks like the metric choice.
fn metric_choice(declared: &BTreeMap<String, Declared>, stack: &Stack<'_>) -> String {
    declared
        .keys()
        .find(|k| k.eq_ignore_ascii_case("autoscalemetric"))
        .map(|k| {
            format!(
                " ({k} = {:?})",
                stack.values.get(k).map(String::as_str).unwrap_or("")
            )
        })
        .unwrap_or_default()
}

impl ImportedMetric {
    fn same_series(&self, other: &Self) -> bool {
        self.namespace.value == other.namespace.value
            && self.metric_name.value == other.metric_name.value
            && self.statistic.value == other.statistic.value
            && self.period_secs.value == other.period_secs.value
            && self
                .dimensions
                .iter()
                .map(|(k, v)| (k, &v.value))
                .eq(other.dimensions.iter().map(|(k, v)| (k, &v.value)))
    }
}

/// A metric id (lower-case letter first, then letters, digits, `_`) from a
/// metric name: `containerCPUUtilization` -> `container_cpu_utilization`.
pub fn metric_id(name: &str) -> String {
    let mut id = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            let boundary = c.is_ascii_uppercase()
                && i > 0
                && (chars[i - 1].is_ascii_lowercase()
                    || chars[i - 1].is_ascii_digit()
                    || (chars[i - 1].is_ascii_uppercase()
                        && chars.get(i + 1).is_some_and(char::is_ascii_lowercase)));
            if boundary && !id.ends_with('_') {
                id.push('_');
            }
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('_') {
            id.push('_');
        }
    }
    let id = id.trim_end_matches('_').to_owned();
    if id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id
    } else {
        format!("metric_{id}").trim_end_matches('_').to_owned()
    }
}

fn read_alarm(
    file: &Path,
    declared: &BTreeMap<String, Declared>,
    stack: &Stack<'_>,
    logical: &str,
    resource: &Value,
) -> Result<(ImportedAlarm, ImportedMetric), ImportError> {
    let empty = Value::Null;
    let props = resource.get("Properties").unwrap_or(&empty);
    let raw = |key: &str| props.get(key).unwrap_or(&empty);
    // A value, and whether its resolution put in it a placeholder of what
    // only a deployed stack knows (a pseudo parameter, another resource).
    let resolve_marked = |r: &Value, key: &str| -> Result<Option<(Value, bool)>, ImportError> {
        if r.is_null() {
            return Ok(None);
        }
        let before = stack.placeholders();
        // `{"Ref": "AWS::NoValue"}` (say in an `Fn::If`) removes the
        // property, as CloudFormation does.
        let resolved = stack
            .resolve(r)
            .map(|v| (!template::is_no_value(&v)).then(|| (v, stack.placeholders() > before)));
        resolved.map_err(|e| {
            let mut error =
                resolve_error(file, declared, e, &format!("resource {logical}'s {key}"));
            if let ImportError::Missing { name, also, .. } = &mut error {
                let others = missing_refs(r, stack).into_iter().filter(|o| o != name);
                let others: Vec<String> = others.map(|o| format!("{o:?}")).collect();
                if !others.is_empty() {
                    *also = format!("; it also uses {}, none given either", others.join(", "));
                }
            }
            error
        })
    };
    let not_design = |found: String, expected: &str| ImportError::NotTheDesign {
        template: file.to_owned(),
        found: format!("resource {logical}: {found}"),
        expected: expected.to_owned(),
    };
    // A value naming what only a deployed stack knows (`${AWS::StackName}`,
    // a resource's attribute) would be watched as that text: refused.
    let known = |key: &str,
                 value: String,
                 source: Source,
                 marked: bool|
     -> Result<Sourced<String>, ImportError> {
        if marked {
            return Err(ImportError::Unsupported {
                at: file.display().to_string(),
                name: source_name(&source, key),
                value,
                problem: format!(
                    "resource {logical}'s {key} names something only a deployed stack knows (a pseudo parameter such as AWS::StackName, or another resource)"
                ),
                valid: "a literal or a template parameter (write the deployed value into the template, or give it as a parameter)".into(),
            });
        }
        Ok(Sourced { value, source })
    };
    let text = |key: &str| -> Result<Option<Sourced<String>>, ImportError> {
        let Some((value, marked)) = resolve_marked(raw(key), key)?
            .and_then(|(v, marked)| Some((template::scalar_text(&v)?, marked)))
        else {
            return Ok(None);
        };
        let source = source_of(raw(key), declared, stack);
        if key == "AlarmName" {
            // Only read for its ScaleOut / ScaleIn and named in a comment.
            return Ok(Some(Sourced { value, source }));
        }
        known(key, value, source, marked).map(Some)
    };
    let required = |key: &str| -> Result<Sourced<String>, ImportError> {
        text(key)?.ok_or_else(|| {
            not_design(
                format!("no {key}"),
                "a single-metric alarm with MetricName, Namespace, Statistic, Period, Threshold, EvaluationPeriods",
            )
        })
    };
    let number = |key: &str, s: Sourced<String>| -> Result<Sourced<f64>, ImportError> {
        match s.value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Sourced {
                value: v,
                source: s.source,
            }),
            _ => Err(ImportError::Unsupported {
                at: file.display().to_string(),
                name: source_name(&s.source, key),
                value: s.value,
                problem: format!("resource {logical}'s {key} is not a finite number"),
                valid: "a number".into(),
            }),
        }
    };
    let count = |key: &str, s: Sourced<String>| -> Result<Sourced<u32>, ImportError> {
        match s.value.trim().parse::<u32>() {
            Ok(v) if v >= 1 => Ok(Sourced {
                value: v,
                source: s.source,
            }),
            _ => Err(ImportError::Unsupported {
                at: file.display().to_string(),
                name: source_name(&s.source, key),
                value: s.value,
                problem: format!("resource {logical}'s {key} is not a whole number of at least 1"),
                valid: "1, 2, 3, ...".into(),
            }),
        }
    };
    if !raw("Metrics").is_null() {
        return Err(not_design(
            "a metric math alarm (Metrics)".into(),
            "an alarm on one metric (MetricName, Namespace, Dimensions)",
        ));
    }
    // A Unit makes CloudWatch judge only the data published in it, a
    // filter flinkscale's metrics do not have: refused, not dropped.
    if let Some(unit) = text("Unit")? {
        return Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&unit.source, "Unit"),
            value: unit.value,
            problem: format!(
                "resource {logical} sets Unit, so CloudWatch judges only the data published in that unit; flinkscale's metrics have no unit filter"
            ),
            valid: "no Unit (a metric published in one unit, as MSF's are, gives the same alarm without it)".into(),
        });
    }
    // Nor can it tell the periods a percentile alarm that ignores low
    // sample counts holds its state through.
    if let Some(ignore) =
        text("EvaluateLowSampleCountPercentile")?.filter(|v| v.value.eq_ignore_ascii_case("ignore"))
    {
        return Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&ignore.source, "EvaluateLowSampleCountPercentile"),
            value: ignore.value,
            problem: format!(
                "resource {logical} keeps its state through periods CloudWatch finds too sparse for its percentile, which flinkscale cannot tell from the statistic it fetches"
            ),
            valid: "no EvaluateLowSampleCountPercentile, or \"evaluate\" (CloudWatch's default)"
                .into(),
        });
    }
    let alarm_name = text("AlarmName")?
        .map(|s| s.value)
        .unwrap_or_else(|| logical.to_owned());
    let metric_name = required("MetricName")?;
    let namespace = required("Namespace")?;
    let statistic = match (text("Statistic")?, text("ExtendedStatistic")?) {
        (Some(_), Some(_)) => {
            // CloudFormation refuses such an alarm: which one was meant
            // is not known.
            return Err(not_design(
                "both Statistic and ExtendedStatistic".into(),
                "one of them, as CloudWatch allows",
            ));
        }
        (Some(s), None) => s,
        (None, _) => required("ExtendedStatistic")?,
    };
    let period = required("Period")?;
    let period_secs = count("Period", period)?;
    if !matches!(period_secs.value, 10 | 20 | 30) && period_secs.value % 60 != 0 {
        return Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&period_secs.source, "Period"),
            value: period_secs.value.to_string(),
            problem: "flinkscale fetches standard-resolution periods only (high-resolution 1 s and 5 s alarms are not supported)".into(),
            valid: "10, 20, 30 or a multiple of 60".into(),
        });
    }
    // Each dimension resolved on its own, so that one removed by
    // `AWS::NoValue` shifts no other's source; a list made by a function
    // (an `Fn::If` choosing one) is the template's.
    let mut dims: Vec<(Value, Source, bool)> = Vec::new();
    match raw("Dimensions").as_array() {
        Some(items) => {
            for item in items {
                // An error is the whole list's: it names every parameter
                // the list needs without a value, not only this item's.
                let resolved = resolve_marked(item, "Dimensions").map_err(|error| {
                    resolve_marked(raw("Dimensions"), "Dimensions")
                        .err()
                        .unwrap_or(error)
                })?;
                if let Some((d, marked)) = resolved {
                    let source = item
                        .get("Value")
                        .map_or(Source::Template, |r| source_of(r, declared, stack));
                    dims.push((d, source, marked));
                }
            }
        }
        None => {
            if let Some((Value::Array(items), marked)) =
                resolve_marked(raw("Dimensions"), "Dimensions")?
            {
                dims.extend(items.into_iter().map(|d| (d, Source::Template, marked)));
            }
        }
    }
    let mut dimensions = Vec::new();
    for (i, (d, source, marked)) in dims.into_iter().enumerate() {
        let name = d.get("Name").and_then(template::scalar_text);
        let value = d.get("Value").and_then(template::scalar_text);
        let (Some(name), Some(value)) = (name, value) else {
            return Err(not_design(
                format!("dimension {i} is {d}"),
                "{\"Name\": ..., \"Value\": ...}",
            ));
        };
        dimensions.push((name, known("Dimensions", value, source, marked)?));
    }
    let evaluation_periods = count("EvaluationPeriods", required("EvaluationPeriods")?)?;
    let datapoints_to_alarm = match text("DatapointsToAlarm")? {
        Some(s) => count("DatapointsToAlarm", s)?,
        None => Sourced {
            value: evaluation_periods.value,
            source: Source::Unset("not set in the template: CloudWatch uses EvaluationPeriods"),
        },
    };
    let treat_missing_data = text("TreatMissingData")?.unwrap_or(Sourced {
        value: "missing".into(),
        source: Source::Unset("not set in the template: CloudWatch's default"),
    });
    let comparison = required("ComparisonOperator")?;
    const COMPARISONS: [&str; 4] = [
        "GreaterThanOrEqualToThreshold",
        "GreaterThanThreshold",
        "LessThanThreshold",
        "LessThanOrEqualToThreshold",
    ];
    if !COMPARISONS.contains(&comparison.value.as_str()) {
        return Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&comparison.source, "ComparisonOperator"),
            value: comparison.value,
            problem: format!("resource {logical}: an anomaly-detection comparison"),
            valid: COMPARISONS.join(", "),
        });
    }
    let threshold = number("Threshold", required("Threshold")?)?;
    let metric = ImportedMetric {
        id: metric_id(&metric_name.value),
        namespace,
        metric_name,
        dimensions,
        statistic,
        period_secs,
    };
    let alarm = ImportedAlarm {
        id: if direction(&alarm_name) == Some(Direction::Out) {
            "scale-out"
        } else {
            "scale-in"
        },
        resource: logical.to_owned(),
        alarm_name,
        metric: metric.id.clone(),
        comparison,
        threshold,
        evaluation_periods,
        datapoints_to_alarm,
        treat_missing_data,
    };
    Ok((alarm, metric))
}

struct Waits {
    poll: Sourced<u32>,
    grace: Sourced<u32>,
}

/// The state machine's wait before it describes the application again while
/// UPDATING (the poll), and its wait before it describes the alarm again
/// (the cooling-down period), with the parameters they came from.
fn state_machine_waits(
    file: &Path,
    declared: &BTreeMap<String, Declared>,
    stack: &Stack<'_>,
    logical: &str,
    resource: &Value,
) -> Result<Waits, ImportError> {
    let not_design = |found: String| {
        ImportError::NotTheDesign {
        template: file.to_owned(),
        found: format!("resource {logical}: {found}"),
        expected: "a state machine that waits (Type Wait, Seconds) before DescribeApplication while UPDATING and before DescribeAlarms after an update".into(),
    }
    };
    let props = resource.get("Properties").unwrap_or(&Value::Null);
    let raw = props
        .get("DefinitionString")
        .or_else(|| props.get("Definition"))
        .ok_or_else(|| not_design("no DefinitionString".into()))?;
    let definition = |stack: &Stack<'_>| -> Result<Value, ImportError> {
        match stack.resolve(raw).map_err(|e| {
            resolve_error(
                file,
                declared,
                e,
                &format!("resource {logical}'s definition"),
            )
        })? {
            Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| not_design(format!("its definition is not JSON: {e}"))),
            object @ Value::Object(_) => Ok(object),
            other => Err(not_design(format!("its definition is {other}"))),
        }
    };
    let real = definition(stack)?;
    // The same definition with every Number parameter replaced by a
    // stand-in number, to learn which parameter each wait's Seconds is.
    let stand_ins: BTreeMap<String, String> = declared
        .iter()
        .filter(|(_, d)| d.kind == "Number")
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), (987_654_000 + i).to_string()))
        .collect();
    let marked = definition(&Stack {
        root: stack.root,
        values: stack.values.clone(),
        stand_ins: stand_ins.clone(),
        evaluating: Default::default(),
        known: Default::default(),
        depth: Default::default(),
        placeholders: Default::default(),
    })
    .ok();
    let wait_before = |resource_suffix: &str| -> Result<Sourced<u32>, ImportError> {
        let states = real
            .get("States")
            .and_then(Value::as_object)
            .ok_or_else(|| not_design("its definition has no States".into()))?;
        let target = |next: &str| {
            states
                .get(next)
                .and_then(|s| s.get("Resource"))
                .and_then(Value::as_str)
                .is_some_and(|r| r.to_ascii_lowercase().ends_with(resource_suffix))
        };
        let (name, state) = states
            .iter()
            .find(|(_, s)| {
                s.get("Type").and_then(Value::as_str) == Some("Wait")
                    && s.get("Next").and_then(Value::as_str).is_some_and(target)
            })
            .ok_or_else(|| not_design(format!("no Wait state before a Task {resource_suffix}")))?;
        let marked_seconds = marked
            .as_ref()
            .and_then(|m| {
                m.pointer(&format!(
                    "/States/{}/Seconds",
                    name.replace('~', "~0").replace('/', "~1")
                ))
            })
            .and_then(template::scalar_text);
        let source = stand_ins
            .iter()
            .find(|(_, stand_in)| marked_seconds.as_deref() == Some(stand_in.as_str()))
            .map_or(Source::Template, |(p, _)| Source::Parameter(p.clone()));
        let text = state.get("Seconds").and_then(template::scalar_text);
        let seconds = match (text.as_deref().and_then(whole_seconds), &source) {
            (Some(seconds), _) => seconds,
            // The parameter's value is wrong, not the template.
            (None, Source::Parameter(parameter)) => {
                return Err(ImportError::Unsupported {
                    at: file.display().to_string(),
                    name: parameter.clone(),
                    value: text.unwrap_or_default(),
                    problem: format!(
                        "it is the Seconds of the Step Functions Wait state {name:?}, which takes a whole number"
                    ),
                    valid: "a whole number of seconds, 0 to 4294967295".into(),
                });
            }
            (None, _) => {
                return Err(not_design(format!(
                    "the Wait state {name:?} has no whole number of Seconds"
                )));
            }
        };
        Ok(Sourced {
            value: seconds,
            source,
        })
    };
    let poll = wait_before(":describeapplication")?;
    let grace = wait_before(":describealarms")?;
    if poll.value == 0 {
        return Err(ImportError::Unsupported {
            at: file.display().to_string(),
            name: source_name(&poll.source, "the wait before DescribeApplication"),
            value: "0".into(),
            problem: "flinkscale polls an update at least every second".into(),
            valid: "a whole number of seconds >= 1".into(),
        });
    }
    Ok(Waits { poll, grace })
}

/// A Wait state's Seconds as a whole number: `300`, or a number written
/// otherwise that is one (`1e3`, `300.0`, as a Number parameter may be).
fn whole_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    text.parse::<u32>().ok().or_else(|| {
        let value = text.parse::<f64>().ok()?;
        (value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value))
            .then_some(value as u32)
    })
}

/// A TOML string.
pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when it can be.
pub(super) fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml_string(k)
    }
}

/// The loader's `errors` about the generated `text`, each located at a
/// line of a file that is never written (`<imported>.toml`) and told
/// instead by what that line's comment names: `parameter MinKPU: ...`,
/// or `the template's value: ...`.
fn name_the_parameters(
    errors: &crate::config::load::ConfigErrors,
    text: &str,
    given_at: &BTreeMap<String, String>,
) -> String {
    let lines: Vec<&str> = text.lines().collect();
    errors
        .errors()
        .iter()
        .map(|error| {
            let comment = error
                .position
                .and_then(|at| lines.get(at.line.checked_sub(1)?))
                .and_then(|l| l.rsplit_once(" # ").map(|(_, c)| c.trim()));
            let said = match comment {
                Some(c) if c.starts_with("parameter ") => {
                    // Where the value was given, when it was.
                    let name = c["parameter ".len()..].split_whitespace().next();
                    match name.and_then(|n| Some((n, given_at.get(n)?))) {
                        Some((n, at)) if at == "--parameter" => format!("--parameter {n}"),
                        Some((n, at)) if at.starts_with("--") => format!("{at} (parameter {n})"),
                        Some((_, at)) => format!("{at}: {c}"),
                        None => c.to_owned(),
                    }
                }
                Some("fixed in the template") => "the template's value".to_owned(),
                _ => "the imported configuration".to_owned(),
            };
            format!("{said}: {}", error.what())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn note(source: &Source) -> String {
    match source {
        Source::Parameter(p) => format!("# parameter {p}"),
        Source::Template => "# fixed in the template".into(),
        Source::Unset(why) => format!("# {why}"),
    }
}

impl Imported {
    /// The flinkscale configuration, each value commented with the template
    /// parameter it came from.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let template = self.template.file_name().map_or_else(
            || self.template.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let _ = writeln!(
            out,
            "# Imported by `flinkscale import cfn` (flinkscale {}) from the reference\n\
             # design's CloudFormation template {}:\n\
             # the same alarms on the same metric, the same Lambda arithmetic (the\n\
             # `step` policy), the same bounds and waits. \"# parameter X\" names the\n\
             # template parameter a value came from.\n\
             #\n\
             # Check it with `flinkscale validate FILE`; run it beside the old stack with\n\
             # `flinkscale run --config FILE --dry-run` before switching (README:\n\
             # \"Migrating from the reference design\").",
            env!("CARGO_PKG_VERSION"),
            toml_string(&template),
        );
        if let Some(m) = &self.metric_parameter {
            let _ = writeln!(
                out,
                "# {} = {}",
                source_name(&m.source, "metric"),
                toml_string(&m.value)
            );
        }
        let _ = writeln!(out, "\n[[application]]");
        let line = |out: &mut String, key: &str, value: String, source: &Source| {
            let _ = writeln!(out, "{key} = {value}  {}", note(source));
        };
        line(
            &mut out,
            "name",
            toml_string(&self.application.value),
            &self.application.source,
        );
        let _ = writeln!(
            out,
            "{}",
            if self.lambda_counts_kpu {
                "# The reference Lambda counts KPU as flinkscale does (Parallelism /\n\
                 # ParallelismPerKPU, rounded up): the same bounds at any ParallelismPerKPU."
            } else {
                "# The reference Lambda compares MinKPU / MaxKPU with the application's\n\
                 # Parallelism and sets Parallelism; flinkscale counts KPU (Parallelism /\n\
                 # ParallelismPerKPU). They are the same with ParallelismPerKPU = 1."
            }
        );
        line(
            &mut out,
            "min_kpu",
            self.min_kpu.value.to_string(),
            &self.min_kpu.source,
        );
        line(
            &mut out,
            "max_kpu",
            self.max_kpu.value.to_string(),
            &self.max_kpu.source,
        );
        let _ = writeln!(
            out,
            "# The state machine's wait between DescribeApplication calls while UPDATING."
        );
        line(
            &mut out,
            "update_poll_secs",
            self.update_poll_secs.value.to_string(),
            &self.update_poll_secs.source,
        );
        let _ = writeln!(
            out,
            "# The state machine's wait after an update before it looks at the alarm again."
        );
        line(
            &mut out,
            "grace_period_secs",
            self.grace_period_secs.value.to_string(),
            &self.grace_period_secs.source,
        );
        let _ = writeln!(
            out,
            "# The reference waits for an update forever; flinkscale gives up after this.\n\
             update_timeout_secs = {}",
            update_timeout_secs(self.update_poll_secs.value)
        );
        for m in &self.metrics {
            let _ = writeln!(out, "\n[[application.metric]]\nid = {}", toml_string(&m.id));
            line(
                &mut out,
                "namespace",
                toml_string(&m.namespace.value),
                &m.namespace.source,
            );
            line(
                &mut out,
                "metric_name",
                toml_string(&m.metric_name.value),
                &m.metric_name.source,
            );
            line(
                &mut out,
                "statistic",
                toml_string(&m.statistic.value),
                &m.statistic.source,
            );
            line(
                &mut out,
                "period_secs",
                m.period_secs.value.to_string(),
                &m.period_secs.source,
            );
            if !m.dimensions.is_empty() {
                let _ = writeln!(out, "[application.metric.dimensions]");
                for (k, v) in &m.dimensions {
                    line(&mut out, &toml_key(k), toml_string(&v.value), &v.source);
                }
            }
        }
        for a in &self.alarms {
            let _ = writeln!(
                out,
                "\n[[application.alarm]]\n# The CloudWatch alarm {} (resource {}).\nid = {}\nmetric = {}",
                toml_string(&a.alarm_name),
                a.resource,
                toml_string(a.id),
                toml_string(&a.metric)
            );
            line(
                &mut out,
                "comparison",
                toml_string(&a.comparison.value),
                &a.comparison.source,
            );
            line(
                &mut out,
                "threshold",
                toml::Value::Float(a.threshold.value).to_string(),
                &a.threshold.source,
            );
            line(
                &mut out,
                "evaluation_periods",
                a.evaluation_periods.value.to_string(),
                &a.evaluation_periods.source,
            );
            line(
                &mut out,
                "datapoints_to_alarm",
                a.datapoints_to_alarm.value.to_string(),
                &a.datapoints_to_alarm.source,
            );
            line(
                &mut out,
                "treat_missing_data",
                toml_string(&a.treat_missing_data.value),
                &a.treat_missing_data.source,
            );
        }
        let _ = writeln!(
            out,
            "\n[application.policy]\n# The reference Lambda's arithmetic: out x factor (or + factor) up to\n\
             # max_kpu, in floor(/ factor) (or - factor) down to min_kpu.\nplugin = \"step\"\n\n\
             [application.policy.params]\nscale_out_alarm = \"scale-out\"\nscale_in_alarm = \"scale-in\""
        );
        let _ = writeln!(
            out,
            "operation = {}  {} = {}",
            toml_string(self.operation),
            note(&self.scale_operation.source),
            toml_string(&self.scale_operation.value)
        );
        line(
            &mut out,
            "scale_out_factor",
            self.scale_out_factor.value.to_string(),
            &self.scale_out_factor.source,
        );
        line(
            &mut out,
            "scale_in_factor",
            self.scale_in_factor.value.to_string(),
            &self.scale_in_factor.source,
        );
        out
    }

    /// What `flinkscale validate` would warn of in the configuration: a
    /// scale-out and a scale-in alarm on one metric that can be in ALARM
    /// together (the policy would ask for more and for less by turns).
    /// And a scale-in alarm whose name holds "ScaleOut" (an application
    /// named `ScaleOutTest`): the reference Lambda scales such a stack
    /// out on it, so the import does not do what the stack did.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .alarms
            .iter()
            .filter(|alarm| alarm.id == "scale-in" && alarm.alarm_name.contains("ScaleOut"))
            .map(|alarm| {
                format!(
                    "the scale-in alarm {:?} has \"ScaleOut\" in its name, and the reference \
                     Lambda scales out on any alarm whose name holds it: the stack scaled out \
                     when this alarm fired, where the imported configuration scales in",
                    alarm.alarm_name
                )
            })
            .collect();
        warnings.extend(self.overlap_warning());
        warnings.extend(self.unused.iter().map(|(key, origin)| {
            format!(
                "{origin}: parameter {key:?} is used by no resource of the template {}: its \
                 value changed nothing the stack did, nor the import",
                self.template.display()
            )
        }));
        warnings
    }

    /// [`Imported::warnings`]' alarms that can be in ALARM together.
    fn overlap_warning(&self) -> Option<String> {
        let [out, down] = self.alarms.as_slice() else {
            return None;
        };
        let (up_cmp, down_cmp) = (
            out.comparison.value.as_str(),
            down.comparison.value.as_str(),
        );
        let (a, b) = (out.threshold.value, down.threshold.value);
        let overlap = out.metric == down.metric
            && up_cmp.starts_with("GreaterThan")
            && down_cmp.starts_with("LessThan")
            && (a < b
                || (a == b
                    && up_cmp == "GreaterThanOrEqualToThreshold"
                    && down_cmp == "LessThanOrEqualToThreshold"));
        let named = |source: &Source| match source {
            Source::Parameter(name) => format!(" (parameter {name})"),
            _ => String::new(),
        };
        overlap.then(|| {
            format!(
                "the scale-out alarm ({up_cmp} {a}{}) and the scale-in alarm ({down_cmp} {b}{}) \
                 on metric {:?} can be in ALARM together: the policy would ask for more and for \
                 less by turns; the scale-in threshold should be below the scale-out one",
                named(&out.threshold.source),
                named(&down.threshold.source),
                out.metric
            )
        })
    }

    /// [`Imported::to_toml`], checked by the configuration loader: the
    /// text, or every error `flinkscale validate` would report.
    pub fn to_checked_toml(&self) -> Result<String, ImportError> {
        let text = self.to_toml();
        let origin = PathBuf::from("<imported>.toml");
        match crate::config::load::load_str(&text, &origin) {
            Ok(_) => Ok(text),
            Err(errors) => Err(ImportError::Invalid {
                template: self.template.clone(),
                errors: name_the_parameters(&errors, &text, &self.given_at),
            }),
        }
    }
}
