//! Scenarios: what a simulated run plays (applications, their parameters,
//! and the load), read from a TOML file.
//!
//! # The scenario format
//!
//! A scenario is a TOML file plus the trace CSV files it names. Paths are
//! relative to the scenario file. A trace CSV given where a scenario is
//! expected is a scenario of its own: that trace, one application `app`,
//! every default below.
//!
//! ```toml
//! name = "demo"                      # defaults to the file's stem
//! description = "Load rises from 800 to 3500 records/s, holds, falls back."
//! trace = "demo.csv"                 # the load of every application without its own
//! trace_value = "per_second"         # or "sum_per_period" (then trace_period_secs is required)
//! trace_period_secs = 60             # the period of a "sum_per_period" trace, 1 s to 31 days
//! duration_secs = 1800               # defaults to the last timestamp of the traces
//! history_days = 15                  # days published before t = 0 (0 to 15, default 0)
//! history_period_secs = 86400        # the period the trace repeats with before t = 0
//!
//! [[application]]                    # one table per application; none means one named "app"
//! name = "app"
//! load_factor = 1.0                  # multiplies the trace
//! # trace, trace_value, trace_period_secs: this application's own trace
//! records_per_subtask_per_sec = 1000.0
//! parallelism_per_kpu = 1
//! usl_sigma = 0.02
//! usl_kappa = 0.0002
//! max_parallelism = 256
//! account_kpu_limit = 64
//! # rollback_above_parallelism = 8  # updates above it are rolled back
//! initial_kpu = 1
//! min_kpu = 1
//! max_kpu = 32
//! update_secs = 90
//! metric_delay_secs = 60
//! cpu_idle_percent = 5.0
//! noise_percent = 2.0                # 0 to 100
//! seed = 42
//! max_lag_secs = 60.0
//! stream_name = "app-stream"         # AWS/Kinesis StreamName
//! consumer_name = "app-efo"          # AWS/Kinesis ConsumerName (enhanced fan-out)
//! cluster_name = "app-cluster"       # AWS/Kafka "Cluster Name"
//! consumer_group = "app-group"       # AWS/Kafka "Consumer Group"
//! topic = "app-topic"                # AWS/Kafka "Topic"
//! ```
//!
//! Every value above except `trace` is the default and may be left out; the
//! parameters mean what `docs/SIMULATION.md` says. Unknown keys are errors.
//!
//! The trace is a CSV file with rows `t_secs,records_per_sec` (an optional
//! header line, `#` comments and blank lines are skipped): the rate is
//! interpolated linearly between rows, held before the first and after the
//! last; two rows with the same time make a step. A CloudWatch export works
//! as it is: rows of a timestamp (ISO-8601 such as `2025-03-01T12:00:00Z`,
//! or epoch seconds or milliseconds) and a value, in any order; the first
//! timestamp becomes t = 0 and empty values are skipped. A value that is a
//! per-period `Sum` (e.g. `IncomingRecords` Sum over 60 s) needs
//! `trace_value = "sum_per_period"` and `trace_period_secs = 60`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::trace::{Trace, TraceError, TraceValue};
use crate::config::MAX_HISTORY_DAYS;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {file}: {error}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error (in the message, not a source: it would be
        /// printed twice).
        error: std::io::Error,
    },
    /// No file at that path, and no shipped scenario of that name.
    #[error(
        "cannot read scenario {file}: no such file, and no shipped scenario of that name (valid: a scenario .toml file, a trace .csv file, or a shipped scenario: {shipped})"
    )]
    NotFound {
        /// The path as given.
        file: String,
        /// The shipped scenarios' names, comma-separated.
        shipped: String,
    },
    /// The file is not valid TOML for a scenario.
    #[error("invalid scenario {file}:\n  {error}")]
    Parse {
        /// The file.
        file: String,
        /// The error, with its line and column, the field and what would be
        /// valid (in the message, not a source: it would be printed twice).
        error: String,
    },
    /// A trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The scenario is well-formed but some values are wrong: every problem
    /// found, one per line.
    #[error("invalid scenario {file}:\n  {}", problems.join("\n  "))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// The parameters of one simulated application (`docs/SIMULATION.md`, "Model").
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppParams {
    /// Throughput of one parallel subtask, records/s (mu).
    pub records_per_subtask_per_sec: f64,
    /// ParallelismPerKPU at the start.
    pub parallelism_per_kpu: u32,
    /// USL contention.
    pub usl_sigma: f64,
    /// USL coherency.
    pub usl_kappa: f64,
    /// Beyond this many subtasks more add nothing (source partitions).
    pub max_parallelism: u32,
    /// UpdateApplication above this KPU fails with LimitExceededException.
    pub account_kpu_limit: u32,
    /// An update to a parallelism above this is accepted, but the job
    /// fails to start at it (an operator's `maxParallelism` below it, a
    /// subnet out of addresses) and MSF's system rollback restores the
    /// previous version: ROLLING_BACK for another `update_secs`, then
    /// RUNNING at the old size, a version id further, with
    /// `ApplicationVersionRolledBackFrom` naming the failed version.
    /// `None`: every accepted update takes.
    pub rollback_above_parallelism: Option<u32>,
    /// KPU at t = 0.
    pub initial_kpu: u32,
    /// The lower KPU limit the agent is configured with.
    pub min_kpu: u32,
    /// The upper KPU limit the agent is configured with.
    pub max_kpu: u32,
    /// Seconds an UpdateApplication keeps the application UPDATING.
    pub update_secs: u32,
    /// A datapoint of the period [t, t+P) becomes visible at t+P+delay.
    pub metric_delay_secs: u32,
    /// CPU of an idle application, percent.
    pub cpu_idle_percent: f64,
    /// Standard deviation of the Gaussian noise on CPU samples, percent.
    pub noise_percent: f64,
    /// PRNG seed.
    pub seed: u64,
    /// The SLO: lag above it is a violation, seconds.
    pub max_lag_secs: f64,
}

impl Default for AppParams {
    fn default() -> Self {
        Self {
            records_per_subtask_per_sec: 1000.0,
            parallelism_per_kpu: 1,
            usl_sigma: 0.02,
            usl_kappa: 0.0002,
            max_parallelism: 256,
            account_kpu_limit: 64,
            rollback_above_parallelism: None,
            initial_kpu: 1,
            min_kpu: 1,
            max_kpu: 32,
            update_secs: 90,
            metric_delay_secs: 60,
            cpu_idle_percent: 5.0,
            noise_percent: 2.0,
            seed: 42,
            max_lag_secs: 60.0,
        }
    }
}

impl AppParams {
    /// The USL capacity in records/s of `parallelism` subtasks.
    pub fn capacity(&self, parallelism: u32) -> f64 {
        let q = f64::from(parallelism.min(self.max_parallelism));
        if q <= 0.0 {
            return 0.0;
        }
        self.records_per_subtask_per_sec
            / (1.0 + self.usl_sigma * (q - 1.0) + self.usl_kappa * q * (q - 1.0))
            * q
    }
}

/// The names of the source system's metric dimensions of one application.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceNames {
    /// Kinesis `StreamName`.
    pub stream_name: String,
    /// Kinesis enhanced fan-out `ConsumerName`.
    pub consumer_name: String,
    /// Kafka `Cluster Name`.
    pub cluster_name: String,
    /// Kafka `Consumer Group`.
    pub consumer_group: String,
    /// Kafka `Topic`.
    pub topic: String,
}

impl SourceNames {
    /// The default names derived from an application's name.
    pub fn derived(app: &str) -> Self {
        Self {
            stream_name: format!("{app}-stream"),
            consumer_name: format!("{app}-efo"),
            cluster_name: format!("{app}-cluster"),
            consumer_group: format!("{app}-group"),
            topic: format!("{app}-topic"),
        }
    }
}

/// One application of a validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioApp {
    /// The application's name (unique in the scenario).
    pub name: String,
    /// Its parameters.
    pub params: AppParams,
    /// Its load before the load factor.
    pub trace: Arc<Trace>,
    /// Multiplier on the trace.
    pub load_factor: f64,
    /// Source-system dimension values.
    pub sources: SourceNames,
    /// What the model publishes from before t = 0, if anything.
    pub past: Option<Past>,
}

/// The longest a scenario may run, in simulated seconds: 31 days, over
/// four times the longest shipped one (a week), whose per-second history
/// takes tens of megabytes; a longer run would take gigabytes.
pub const MAX_DURATION_SECS: u64 = 31 * 86_400;

/// The past the model publishes before t = 0 (scenario keys
/// `history_days` and `history_period_secs`): the application ran under
/// the trace repeated backwards with the given period, at the smallest KPU
/// that carried its peak, with no scaling. An agent reading history (`[application.policy]
/// history_days`) finds it as CloudWatch would have kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Past {
    /// How far back, seconds (whole days).
    pub secs: u64,
    /// The period the trace repeats with, seconds.
    pub period_secs: u64,
}

impl ScenarioApp {
    /// An application with default parameters and names.
    pub fn new(name: &str, trace: Trace) -> Self {
        Self {
            name: name.to_owned(),
            params: AppParams::default(),
            trace: Arc::new(trace),
            load_factor: 1.0,
            sources: SourceNames::derived(name),
            past: None,
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Length of a run in seconds.
    pub duration_secs: u64,
    /// Its applications, at least one, names unique.
    pub applications: Vec<ScenarioApp>,
}

/// The scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    #[serde(default)]
    description: String,
    trace: Option<PathBuf>,
    trace_value: Option<TraceValueName>,
    trace_period_secs: Option<f64>,
    duration_secs: Option<u64>,
    history_days: Option<u32>,
    history_period_secs: Option<u64>,
    #[serde(default)]
    application: Vec<AppFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum TraceValueName {
    PerSecond,
    SumPerPeriod,
}

/// One `[[application]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppFile {
    name: Option<String>,
    trace: Option<PathBuf>,
    trace_value: Option<TraceValueName>,
    trace_period_secs: Option<f64>,
    load_factor: Option<f64>,
    records_per_subtask_per_sec: Option<f64>,
    parallelism_per_kpu: Option<u32>,
    usl_sigma: Option<f64>,
    usl_kappa: Option<f64>,
    max_parallelism: Option<u32>,
    account_kpu_limit: Option<u32>,
    rollback_above_parallelism: Option<u32>,
    initial_kpu: Option<u32>,
    min_kpu: Option<u32>,
    max_kpu: Option<u32>,
    update_secs: Option<u32>,
    metric_delay_secs: Option<u32>,
    cpu_idle_percent: Option<f64>,
    noise_percent: Option<f64>,
    seed: Option<u64>,
    max_lag_secs: Option<f64>,
    stream_name: Option<String>,
    consumer_name: Option<String>,
    cluster_name: Option<String>,
    consumer_group: Option<String>,
    topic: Option<String>,
}

impl Scenario {
    /// Loads a scenario file and its traces. A `.csv` file is a scenario of
    /// its own: that trace (records per second), one application `app`
    /// with every default, named after the file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new("."));
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_owned());
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            // TOML's own quoting: a file name may hold quotes, backslashes
            // or control characters.
            let quoted = |text: String| toml::Value::String(text).to_string();
            let text = format!(
                "description = {}\ntrace = {}\n",
                quoted(format!(
                    "The trace {name} on one application with the default parameters."
                )),
                quoted(name)
            );
            // Its problems are the trace's: no line of this text to name.
            return Self::from_text(&text, &file, &stem, base, false);
        }
        let text = crate::config::load::read_utf8(path).map_err(|error| ScenarioError::Io {
            file: file.clone(),
            error,
        })?;
        Self::from_toml(&text, &file, &stem, base)
    }

    /// Parses scenario text; `file` names it in errors, `default_name` is the
    /// scenario's name when it gives none, and trace paths are relative to
    /// `base_dir`.
    pub fn from_toml(
        text: &str,
        file: &str,
        default_name: &str,
        base_dir: &Path,
    ) -> Result<Self, ScenarioError> {
        Self::from_text(text, file, default_name, base_dir, true)
    }

    /// [`Scenario::from_toml`]; with `located`, each problem names its
    /// line and column in `text` (not for the text a CSV scenario stands
    /// for).
    fn from_text(
        text: &str,
        file: &str,
        default_name: &str,
        base_dir: &Path,
        located: bool,
    ) -> Result<Self, ScenarioError> {
        let raw: ScenarioFile = toml::from_str(text).map_err(|error| ScenarioError::Parse {
            file: file.to_owned(),
            error: if located {
                crate::config::load::locate_toml_error(Path::new(file), text, &error).to_string()
            } else {
                error.message().to_owned()
            },
        })?;
        let mut problems: Vec<Problem> = Vec::new();
        let apps = if raw.application.is_empty() {
            vec![AppFile::default()]
        } else {
            raw.application
        };
        let scenario_value = trace_value(
            raw.trace_value,
            raw.trace_period_secs,
            "scenario",
            None,
            &mut problems,
        );
        let past = past(raw.history_days, raw.history_period_secs, &mut problems);
        // The name titles the reports and names bench's report folder.
        if raw
            .name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            problems.push(Problem::new(
                At::Scenario("name"),
                "scenario: name must not be empty (it titles the reports; leave it out for the file's name)".to_owned(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut validated = Vec::new();
        let mut traces_to_load = Vec::new();
        for (i, app) in apps.into_iter().enumerate() {
            let name = app.name.clone().unwrap_or_else(|| "app".to_owned());
            let label = format!("application {name:?}");
            if name.is_empty()
                || name.len() > 128
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                problems.push(Problem::new(
                    At::Application(i, "name"),
                    format!(
                        "application {i}: name {name:?} must be 1-128 of [A-Za-z0-9_.-] as in MSF"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                problems.push(Problem::new(
                    At::Application(i, "name"),
                    format!("{label} is defined twice"),
                ));
            }
            let (trace_path, value) = match (&app.trace, &raw.trace) {
                (Some(own), _) => (
                    Some(own.clone()),
                    trace_value(
                        app.trace_value,
                        app.trace_period_secs,
                        &label,
                        Some(i),
                        &mut problems,
                    ),
                ),
                (None, Some(shared)) => {
                    if app.trace_value.is_some() || app.trace_period_secs.is_some() {
                        problems.push(Problem::new(
                            At::Application(i, "trace_value"),
                            format!(
                                "{label}: trace_value and trace_period_secs need the application's own trace"
                            ),
                        ));
                    }
                    (Some(shared.clone()), scenario_value)
                }
                (None, None) => {
                    problems.push(Problem::new(
                        At::Application(i, "trace"),
                        format!("{label} has no trace and the scenario gives none"),
                    ));
                    (None, TraceValue::PerSecond)
                }
            };
            traces_to_load.push(trace_path.map(|p| (base_dir.join(p), value)));
            let (params, load_factor, sources) = app_params(app, &name, &label, i, &mut problems);
            validated.push(ScenarioApp {
                name,
                params,
                trace: Arc::new(Trace::constant(0.0)),
                load_factor,
                sources,
                past,
            });
        }
        match raw.duration_secs {
            Some(0) => problems.push(Problem::new(
                At::Scenario("duration_secs"),
                "duration_secs must be at least 1".to_owned(),
            )),
            Some(d) if d > MAX_DURATION_SECS => problems.push(Problem::new(
                At::Scenario("duration_secs"),
                format!(
                    "duration_secs {d} is longer than a scenario may run: at most {MAX_DURATION_SECS} s (31 days; the model keeps every second in memory)"
                ),
            )),
            _ => {}
        }
        if !problems.is_empty() {
            return Err(ScenarioError::Invalid {
                file: file.to_owned(),
                problems: locate(text, file, located, &problems),
            });
        }
        // I/O only after validation; a trace shared by all is read once.
        let mut loaded: Vec<(PathBuf, TraceValue, Arc<Trace>)> = Vec::new();
        for (app, to_load) in validated.iter_mut().zip(traces_to_load) {
            let Some((path, value)) = to_load else {
                continue;
            };
            if let Some((_, _, t)) = loaded.iter().find(|(p, v, _)| *p == path && *v == value) {
                app.trace = t.clone();
                continue;
            }
            // Said with the scenario and the application that names it:
            // the trace's own path alone does not tell which file to fix.
            let trace = Trace::load(&path, value).map_err(|error| ScenarioError::Invalid {
                file: file.to_owned(),
                problems: vec![format!("application {:?}: trace: {error}", app.name)],
            })?;
            let trace = Arc::new(trace);
            loaded.push((path, value, trace.clone()));
            app.trace = trace;
        }
        let duration_secs = match raw.duration_secs {
            Some(d) => d,
            None => {
                let last = validated
                    .iter()
                    .map(|a| a.trace.last_secs())
                    .fold(0.0, f64::max)
                    .ceil() as u64;
                if last == 0 {
                    // A CSV alone has no duration_secs to give.
                    let fix = if located {
                        "give duration_secs"
                    } else {
                        "give the trace a row at a later time, or play it from a scenario TOML with duration_secs"
                    };
                    return Err(ScenarioError::Invalid {
                        file: file.to_owned(),
                        problems: vec![format!("the trace ends at t = 0: {fix}")],
                    });
                }
                last
            }
        };
        if duration_secs > MAX_DURATION_SECS {
            let given = if raw.duration_secs.is_some() {
                format!("duration_secs {duration_secs}")
            } else {
                format!("the trace ends at t = {duration_secs} s, which")
            };
            return Err(ScenarioError::Invalid {
                file: file.to_owned(),
                problems: vec![format!(
                    "{given} is longer than a scenario may run: at most {MAX_DURATION_SECS} s (31 days; the model keeps every second in memory)"
                )],
            });
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| default_name.to_owned()),
            description: raw.description,
            duration_secs,
            applications: validated,
        })
    }

    /// A one-application scenario with default parameters (for tests and
    /// programmatic runs).
    pub fn single(name: &str, trace: Trace, duration_secs: u64) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            duration_secs,
            applications: vec![ScenarioApp::new("app", trace)],
        }
    }

    /// The first of `names` (a configuration's applications) that this
    /// scenario does not play, with the names it does play, quoted and
    /// comma-separated, for the error that says what would be valid.
    pub fn unplayed<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Option<(&'a str, String)> {
        let played = |name: &str| self.applications.iter().any(|a| a.name == name);
        let missing = names.into_iter().find(|name| !played(name))?;
        let valid = self
            .applications
            .iter()
            .map(|a| format!("{:?}", a.name))
            .collect::<Vec<_>>()
            .join(", ");
        Some((missing, valid))
    }
}

/// A problem of a scenario's values, and the key it is about.
struct Problem {
    at: At,
    message: String,
}

impl Problem {
    fn new(at: At, message: String) -> Self {
        Self { at, message }
    }
}

/// The key of a scenario file a [`Problem`] is about.
#[derive(Debug, Clone, Copy)]
enum At {
    /// A key of the scenario itself.
    Scenario(&'static str),
    /// A key of the `[[application]]` at this index (its table, when the
    /// key is not written: a default that conflicts with another value).
    Application(usize, &'static str),
}

/// `problems` as lines: each `FILE:LINE:COLUMN: message` when `located`
/// and the key (or its application's table) is found in `text`, else the
/// message alone.
fn locate(text: &str, file: &str, located: bool, problems: &[Problem]) -> Vec<String> {
    let root = located
        .then(|| toml::de::DeTable::parse(text).ok())
        .flatten();
    let key_in = |table: &toml::de::DeTable<'_>, key: &str| {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(k, _)| k.span().start)
    };
    let offset = |at: At| -> Option<usize> {
        let root = root.as_ref()?.get_ref();
        match at {
            At::Scenario(key) => key_in(root, key),
            At::Application(i, key) => {
                let (_, applications) = root.iter().find(|(k, _)| k.get_ref() == "application")?;
                let toml::de::DeValue::Array(items) = applications.get_ref() else {
                    return None;
                };
                let item = items.get(i)?;
                match item.get_ref() {
                    toml::de::DeValue::Table(table) => {
                        key_in(table, key).or(Some(item.span().start))
                    }
                    _ => Some(item.span().start),
                }
            }
        }
    };
    problems
        .iter()
        .map(|problem| match offset(problem.at) {
            Some(offset) => {
                let before = text.get(..offset).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
                    .chars()
                    .count()
                    + 1;
                format!("{file}:{line}:{column}: {}", problem.message)
            }
            None => problem.message.clone(),
        })
        .collect()
}

/// The scenario's past from its `history_days` and `history_period_secs`,
/// at most [`MAX_HISTORY_DAYS`]: the agent's own bound, as CloudWatch keeps
/// 1-minute datapoints for 15 days.
fn past(days: Option<u32>, period_secs: Option<u64>, problems: &mut Vec<Problem>) -> Option<Past> {
    let days = days.unwrap_or(0);
    if days > MAX_HISTORY_DAYS {
        problems.push(Problem::new(
            At::Scenario("history_days"),
            format!(
                "history_days {days} is out of range: valid 0 to {MAX_HISTORY_DAYS} (CloudWatch keeps 1-minute datapoints for 15 days); default 0"
            ),
        ));
        return None;
    }
    match (days, period_secs) {
        (0, None) => None,
        (0, Some(_)) => {
            problems.push(Problem::new(
                At::Scenario("history_period_secs"),
                "history_period_secs needs history_days of at least 1".to_owned(),
            ));
            None
        }
        (_, None) => {
            problems.push(Problem::new(
                At::Scenario("history_days"),
                format!(
                    "history_days = {days} needs history_period_secs: the period the trace repeats with before t = 0 (e.g. 86400 for a daily cycle, 604800 for a weekly one)"
                ),
            ));
            None
        }
        (_, Some(p)) if !(60..=MAX_HISTORY_DAYS as u64 * 86_400).contains(&p) => {
            problems.push(Problem::new(
                At::Scenario("history_period_secs"),
                format!(
                    "history_period_secs {p} is out of range: valid 60 to {}",
                    MAX_HISTORY_DAYS as u64 * 86_400
                ),
            ));
            None
        }
        (_, Some(p)) => Some(Past {
            secs: u64::from(days) * 86_400,
            period_secs: p,
        }),
    }
}

/// The trace's value kind from `trace_value` and `trace_period_secs` of
/// the scenario (`application` `None`) or of the application at that
/// index.
fn trace_value(
    name: Option<TraceValueName>,
    period: Option<f64>,
    label: &str,
    application: Option<usize>,
    problems: &mut Vec<Problem>,
) -> TraceValue {
    let at = |key| match application {
        Some(i) => At::Application(i, key),
        None => At::Scenario(key),
    };
    match (name.unwrap_or(TraceValueName::PerSecond), period) {
        (TraceValueName::PerSecond, None) => TraceValue::PerSecond,
        (TraceValueName::PerSecond, Some(_)) => {
            problems.push(Problem::new(
                at("trace_period_secs"),
                format!(
                    "{label}: trace_period_secs is only meaningful with trace_value = \"sum_per_period\""
                ),
            ));
            TraceValue::PerSecond
        }
        // CloudWatch's periods: a second (high resolution) at least, and
        // no period longer than a scenario may run. Outside them the
        // rates it gives read as 0 or as past 1e12 records/s, which the
        // trace's rows would be blamed for.
        (TraceValueName::SumPerPeriod, Some(p))
            if (1.0..=MAX_DURATION_SECS as f64).contains(&p) =>
        {
            TraceValue::SumPerPeriod { period_secs: p }
        }
        (TraceValueName::SumPerPeriod, Some(p)) => {
            problems.push(Problem::new(
                at("trace_period_secs"),
                format!(
                    "{label}: trace_period_secs {p} must be from 1 to {MAX_DURATION_SECS} (the \
                     period of the trace's sums, e.g. 60)"
                ),
            ));
            TraceValue::PerSecond
        }
        (TraceValueName::SumPerPeriod, None) => {
            problems.push(Problem::new(
                at("trace_value"),
                format!("{label}: trace_value = \"sum_per_period\" needs trace_period_secs"),
            ));
            TraceValue::PerSecond
        }
    }
}

/// Applies the defaults and checks the ranges of one application's values.
fn app_params(
    app: AppFile,
    name: &str,
    label: &str,
    index: usize,
    problems: &mut Vec<Problem>,
) -> (AppParams, f64, SourceNames) {
    let d = AppParams::default();
    let p = AppParams {
        records_per_subtask_per_sec: app
            .records_per_subtask_per_sec
            .unwrap_or(d.records_per_subtask_per_sec),
        parallelism_per_kpu: app.parallelism_per_kpu.unwrap_or(d.parallelism_per_kpu),
        usl_sigma: app.usl_sigma.unwrap_or(d.usl_sigma),
        usl_kappa: app.usl_kappa.unwrap_or(d.usl_kappa),
        max_parallelism: app.max_parallelism.unwrap_or(d.max_parallelism),
        account_kpu_limit: app.account_kpu_limit.unwrap_or(d.account_kpu_limit),
        rollback_above_parallelism: app.rollback_above_parallelism,
        initial_kpu: app.initial_kpu.unwrap_or(d.initial_kpu),
        min_kpu: app.min_kpu.unwrap_or(d.min_kpu),
        max_kpu: app.max_kpu.unwrap_or(d.max_kpu),
        update_secs: app.update_secs.unwrap_or(d.update_secs),
        metric_delay_secs: app.metric_delay_secs.unwrap_or(d.metric_delay_secs),
        cpu_idle_percent: app.cpu_idle_percent.unwrap_or(d.cpu_idle_percent),
        noise_percent: app.noise_percent.unwrap_or(d.noise_percent),
        seed: app.seed.unwrap_or(d.seed),
        max_lag_secs: app.max_lag_secs.unwrap_or(d.max_lag_secs),
    };
    let mut bad = |field: &'static str, why: &str| {
        problems.push(Problem::new(
            At::Application(index, field),
            format!("{label}: {field} {why}"),
        ));
    };
    if !(p.records_per_subtask_per_sec.is_finite() && p.records_per_subtask_per_sec > 0.0) {
        bad("records_per_subtask_per_sec", "must be positive");
    }
    if !(1..=8).contains(&p.parallelism_per_kpu) {
        bad("parallelism_per_kpu", "must be in 1..=8 as in MSF");
    }
    if !(p.usl_sigma.is_finite() && (0.0..=1.0).contains(&p.usl_sigma)) {
        bad("usl_sigma", "must be in 0..=1");
    }
    if !(p.usl_kappa.is_finite() && (0.0..=1.0).contains(&p.usl_kappa)) {
        bad("usl_kappa", "must be in 0..=1");
    }
    if p.max_parallelism == 0 {
        bad("max_parallelism", "must be at least 1");
    }
    if p.account_kpu_limit == 0 {
        bad("account_kpu_limit", "must be at least 1");
    }
    if p.rollback_above_parallelism == Some(0) {
        bad("rollback_above_parallelism", "must be at least 1");
    }
    if p.min_kpu == 0 {
        bad("min_kpu", "must be at least 1");
    }
    if p.max_kpu == 0 {
        bad("max_kpu", "must be at least 1");
    } else if p.min_kpu > p.max_kpu {
        // (The default min_kpu is 1: only a max_kpu of 0 is under it.)
        bad(
            "min_kpu",
            &format!("{} must not exceed max_kpu ({})", p.min_kpu, p.max_kpu),
        );
    }
    let initial_parallelism = u64::from(p.initial_kpu) * u64::from(p.parallelism_per_kpu);
    if p.initial_kpu == 0 || initial_parallelism > 256 {
        bad(
            "initial_kpu",
            "must give a parallelism (initial_kpu x parallelism_per_kpu) in 1..=256",
        );
    }
    if p.min_kpu > p.account_kpu_limit {
        bad(
            "min_kpu",
            "must not exceed account_kpu_limit (every update to it would be refused)",
        );
    }
    if p.initial_kpu > p.account_kpu_limit {
        bad("initial_kpu", "must not exceed account_kpu_limit");
    }
    if !(p.cpu_idle_percent.is_finite() && (0.0..=100.0).contains(&p.cpu_idle_percent)) {
        bad("cpu_idle_percent", "must be in 0..=100");
    }
    if !(0.0..=100.0).contains(&p.noise_percent) {
        bad(
            "noise_percent",
            "must be in 0..=100 (a standard deviation in CPU percent)",
        );
    }
    if !(p.max_lag_secs.is_finite() && p.max_lag_secs >= 0.0) {
        bad("max_lag_secs", "must be non-negative");
    }
    let load_factor = app.load_factor.unwrap_or(1.0);
    if !(load_factor.is_finite() && (0.0..=super::MAX_LOAD_FACTOR).contains(&load_factor)) {
        bad(
            "load_factor",
            &format!("must be from 0 to {}", super::MAX_LOAD_FACTOR),
        );
    }
    // A day: an update or a metric delay longer than that is a unit
    // mixed up, and would hold a run of days still.
    if p.update_secs > 86_400 {
        bad("update_secs", "must be at most 86400 (a day)");
    }
    if p.metric_delay_secs > 86_400 {
        bad("metric_delay_secs", "must be at most 86400 (a day)");
    }
    let derived = SourceNames::derived(name);
    let sources = SourceNames {
        stream_name: app.stream_name.unwrap_or(derived.stream_name),
        consumer_name: app.consumer_name.unwrap_or(derived.consumer_name),
        cluster_name: app.cluster_name.unwrap_or(derived.cluster_name),
        consumer_group: app.consumer_group.unwrap_or(derived.consumer_group),
        topic: app.topic.unwrap_or(derived.topic),
    };
    (p, load_factor, sources)
}
