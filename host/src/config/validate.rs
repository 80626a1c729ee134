//! Validation of a parsed configuration: everything serde cannot check.
//!
//! This step is pure: it reads a [`Config`] and returns every [`Problem`] it
//! finds, each naming the field by its path in the file (as indices and
//! keys). It knows nothing of text or spans; [`super::load`](mod@super::load) turns each
//! path into a file, line and column, and renders it with the names a user
//! wrote (`application "clickstream".alarm "scale-out".metric`).
//!
//! Conventions checked here that serde cannot express:
//! - a plugin parameter whose key ends in `_alarm` is a string naming an
//!   alarm `id` of the same application, one ending in `_alarms` an array of
//!   such strings; likewise `_metric` / `_metrics` name metric ids. This is
//!   how the `step` policy's `scale_out_alarm` / `scale_in_alarm` are
//!   checked without the host knowing the policy;
//! - `grace_period_secs = 0` is accepted (evaluate again as soon as the
//!   update has finished), while a zero poll interval, update timeout or
//!   evaluation interval would make the agent spin and is refused.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::{
    AgentConfig, AlarmConfig, AlarmSource, ApplicationConfig, Config, FlinkJob, MAX_HISTORY_DAYS,
    MetricConfig, MetricSourceKind, PluginConfig, TargetKind,
};

/// One step of a [`FieldPath`]: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key of a table, as written in the file (`alarm`, not `alarms`).
    Key(String),
    /// An index into an array (0-based).
    Index(usize),
}

/// Where a value lives in the file: the keys and indices leading to it, as
/// written in the TOML (`application`, 0, `alarm`, 1, `metric`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The path of the whole document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path followed by a table key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path followed by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    /// The index form, `application[0].alarm[1].metric`; the loader renders
    /// the friendlier named form from the document.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{}", display_key(key))?,
                Segment::Key(key) => write!(f, ".{}", display_key(key))?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A key as a user would write it: bare when TOML allows, quoted otherwise
/// (`dimensions."Cluster Name"`).
pub(crate) fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// One thing wrong with a configuration, not yet located in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The field at fault; when it is absent from the file (defaulted), the
    /// loader points at the table that would hold it.
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
    /// What would be valid, when that can be said briefly.
    pub hint: Option<String>,
    /// The field whose value the problem follows from, when that is
    /// another one: a value refused there (the loader's own error) makes
    /// the problem a consequence, not reported (`target = "Flink"` refused
    /// is not also "rest_url is for target = flink").
    pub assumes: Option<FieldPath>,
}

impl Problem {
    fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
            hint: None,
            assumes: None,
        }
    }

    fn assuming(mut self, field: FieldPath) -> Self {
        self.assumes = Some(field);
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The longest an alarm of the agent's evaluates, evaluation_periods x
/// period_secs: one day, CloudWatch's limit for periods under an hour
/// (with an hour or more it allows 7 days; `import alarms` leaves such
/// alarms out, saying why).
pub const MAX_ALARM_RANGE_SECS: u64 = 86_400;
/// Below this a component cannot even hold its stack and data.
pub(crate) const MIN_PLUGIN_MEMORY_BYTES: u64 = 1024 * 1024;
/// wasm32 linear memory cannot exceed 4 GiB.
pub(crate) const MAX_PLUGIN_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// A policy answering slower than this stalls its controller; a deadline
/// beyond it is a mistake rather than a choice.
pub(crate) const MAX_PLUGIN_TIMEOUT_MS: u64 = 60_000;
/// A compile longer than an hour is a hung compile, not a slow host.
const MAX_PLUGIN_COMPILE_TIMEOUT_SECS: u64 = 3600;
/// Beyond this many failures in a row, a plugin would never be quarantined
/// in practice: a typo rather than a choice.
const MAX_QUARANTINE_AFTER_FAILURES: u32 = 1000;
/// The longest quarantine (doubling stops there), so also the longest first
/// one.
const MAX_QUARANTINE_SECS: u32 = 3600;
/// CloudWatch limits on query ids, names and dimensions.
const MAX_CLOUDWATCH_NAME_CHARS: usize = 255;
const MAX_DIMENSIONS: usize = 30;
/// MSF application names: 1 to 128 of `[a-zA-Z0-9_.-]`.
const MAX_APPLICATION_NAME_CHARS: usize = 128;

const STATISTICS: [&str; 5] = ["Average", "Maximum", "Minimum", "Sum", "SampleCount"];

/// Checks a whole configuration and returns every problem found (empty when
/// it is valid).
pub fn validate(config: &Config) -> Vec<Problem> {
    let applications: Vec<(usize, &ApplicationConfig)> =
        config.applications.iter().enumerate().collect();
    let mut problems = validate_parts(Some(&config.agent), &applications);
    if applications.is_empty() {
        problems.push(no_application());
    }
    problems
}

/// Checks the parts of a configuration that serde could read: `agent` when
/// it parsed, and the applications that parsed, each with its index in the
/// file. Parts that failed to parse are left out rather than guessed at, so
/// one typo does not cascade into errors about fields that are fine.
pub(crate) fn validate_parts(
    agent: Option<&AgentConfig>,
    applications: &[(usize, &ApplicationConfig)],
) -> Vec<Problem> {
    let mut problems = agent.map(validate_agent).unwrap_or_default();
    let names: Vec<(usize, &str)> = applications
        .iter()
        .map(|&(i, app)| (i, app.name.as_str()))
        .collect();
    problems.extend(validate_application_names(&names));
    problems.extend(validate_one_application_per_flink_job(applications));
    for &(i, app) in applications {
        problems.extend(validate_application(i, app));
    }
    problems
}

/// The problem of a file with no `[[application]]`.
pub(crate) fn no_application() -> Problem {
    Problem::new(
        FieldPath::root().key("application"),
        "no application is configured",
    )
    .hint("add an [[application]] table with a name and an [application.policy]")
}

/// Checks `[agent]`.
fn validate_agent(agent: &AgentConfig) -> Vec<Problem> {
    let at = FieldPath::root().key("agent");
    let mut problems = Vec::new();
    if agent.plugin_dir.as_os_str().is_empty() {
        problems.push(
            Problem::new(at.key("plugin_dir"), "plugin_dir is empty")
                .hint("a folder, relative to the configuration file's folder"),
        );
    }
    if agent.state_dir.as_os_str().is_empty() {
        problems.push(
            Problem::new(at.key("state_dir"), "state_dir is empty")
                .hint("a folder, relative to the configuration file's folder"),
        );
    }
    if let Some(region) = &agent.region
        && !is_region_name(region)
    {
        problems.push(
            Problem::new(at.key("region"), format!("{region:?} is not an AWS region"))
                .hint("lower-case letters, digits and '-', e.g. \"eu-west-1\"; or leave it out to use AWS_REGION or the profile"),
        );
    }
    if agent.plugin_timeout_ms == 0 || agent.plugin_timeout_ms > MAX_PLUGIN_TIMEOUT_MS {
        problems.push(
            Problem::new(
                at.key("plugin_timeout_ms"),
                format!(
                    "plugin_timeout_ms {} is out of range",
                    agent.plugin_timeout_ms
                ),
            )
            .hint(range_of("plugin_timeout_ms")),
        );
    }
    let compile = agent.plugin_compile_timeout_secs;
    if !(1..=MAX_PLUGIN_COMPILE_TIMEOUT_SECS).contains(&compile) {
        problems.push(
            Problem::new(
                at.key("plugin_compile_timeout_secs"),
                format!("plugin_compile_timeout_secs {compile} is out of range"),
            )
            .hint(range_of("plugin_compile_timeout_secs")),
        );
    }
    let memory = agent.plugin_memory_limit_bytes;
    if !(MIN_PLUGIN_MEMORY_BYTES..=MAX_PLUGIN_MEMORY_BYTES).contains(&memory) {
        problems.push(
            Problem::new(
                at.key("plugin_memory_limit_bytes"),
                format!("plugin_memory_limit_bytes {memory} is out of range"),
            )
            .hint(range_of("plugin_memory_limit_bytes")),
        );
    }
    let after = agent.plugin_quarantine_after_failures;
    if !(1..=MAX_QUARANTINE_AFTER_FAILURES).contains(&after) {
        problems.push(
            Problem::new(
                at.key("plugin_quarantine_after_failures"),
                format!("plugin_quarantine_after_failures {after} is out of range"),
            )
            .hint(range_of("plugin_quarantine_after_failures")),
        );
    }
    let secs = agent.plugin_quarantine_secs;
    if !(1..=MAX_QUARANTINE_SECS).contains(&secs) {
        problems.push(
            Problem::new(
                at.key("plugin_quarantine_secs"),
                format!("plugin_quarantine_secs {secs} is out of range"),
            )
            .hint(range_of("plugin_quarantine_secs")),
        );
    }
    // Port 0 would bind a port nobody knows, so nothing could scrape it.
    if let Some(listen) = agent.listen
        && listen.port() == 0
    {
        problems.push(
            Problem::new(at.key("listen"), format!("listen {listen} has port 0"))
                .hint("a fixed port that Prometheus can scrape, e.g. \"127.0.0.1:9464\""),
        );
    }
    problems
}

/// Whether `name` is a well-formed MSF application name: 1 to 128
/// letters, digits, `_`, `.` or `-` (so never a path of another folder).
pub(crate) fn is_application_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_APPLICATION_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks that application names are well formed and unique; `names` pairs
/// each name with its application's index in the file.
fn validate_application_names(names: &[(usize, &str)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for &(index, name) in names {
        let at = FieldPath::root()
            .key("application")
            .index(index)
            .key("name");
        if !is_application_name(name) {
            problems.push(
                Problem::new(
                    at.clone(),
                    format!("{name:?} is not an MSF application name"),
                )
                .hint("1 to 128 letters, digits, '_', '.' or '-'"),
            );
        }
        match first.get(name) {
            Some(&earlier) => problems.push(
                Problem::new(at, format!("application {name:?} is configured twice")).hint(
                    format!("each application appears once; first at application[{earlier}]"),
                ),
            ),
            None => {
                first.insert(name, index);
            }
        }
    }
    problems
}

/// Checks that no two `target = "flink"` applications scale the same job:
/// the same `job_id`, or the same `job_name` (given or implied by `name`),
/// on clusters that share a REST URL (`http://host:port`, compared as
/// [`crate::flink::parse_rest_url`] spells it: without a trailing slash,
/// case or leading zeros). Their controllers, each with its own
/// journal, would rescale the job against each other. A `job_name` and a
/// `job_id` that name the same job, or two URLs that reach one cluster,
/// cannot be told apart here; the agent's fight detection stands down
/// then.
fn validate_one_application_per_flink_job(
    applications: &[(usize, &ApplicationConfig)],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    // Each Flink application so far: its index, itself, its clusters'
    // `host:port`s and its job.
    let mut seen: Vec<(usize, &ApplicationConfig, Vec<String>, FlinkJob)> = Vec::new();
    for &(index, app) in applications {
        let Some((rest_url, job)) = app.flink() else {
            continue;
        };
        let urls: Vec<String> = rest_url
            .urls()
            .iter()
            .filter_map(|url| crate::flink::parse_rest_url(url).ok())
            .collect();
        let same = |other: &FlinkJob| match (&job, other) {
            (FlinkJob::Name(a), FlinkJob::Name(b)) => a == b,
            (FlinkJob::Id(a), FlinkJob::Id(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        let earlier = seen.iter().find(|(_, _, other_urls, other_job)| {
            same(other_job) && urls.iter().any(|url| other_urls.contains(url))
        });
        if let Some((earlier_index, earlier_app, _, _)) = earlier {
            let key = match (&app.job_id, &app.job_name) {
                (Some(_), _) => "job_id",
                (None, Some(_)) => "job_name",
                (None, None) => "name",
            };
            let at = FieldPath::root().key("application").index(index).key(key);
            problems.push(
                Problem::new(
                    at,
                    format!(
                        "application {:?} scales the same Flink job as application {:?} ({job} on a cluster they share): two controllers would rescale it against each other",
                        app.name, earlier_app.name
                    ),
                )
                .hint(format!(
                    "give each job one [[application]]; the other is application[{earlier_index}]"
                )),
            );
        }
        seen.push((index, app, urls, job));
    }
    problems
}

/// `text` quoted, cut to its first 120 characters (with `...` after the
/// quote) when longer: an error about a whole expression need not repeat
/// all of it.
fn quoted_start(text: &str) -> String {
    const SHOWN: usize = 120;
    if text.chars().count() <= SHOWN {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(SHOWN).collect();
    format!("{start:?}...")
}

/// What is valid for a whole-number field that must be 1 or more, by its
/// key; the same words whether the file gives 0 (found here) or a value of
/// the wrong type (found by the parser, `load.rs`). `None` for any other
/// key.
pub(super) fn valid_positive(key: &str) -> Option<&'static str> {
    Some(match key {
        "min_kpu" | "max_kpu" => {
            "valid: 1 to 4294967295; an MSF application runs on at least 1 KPU"
        }
        "min_parallelism" | "max_parallelism" => {
            "valid: 1 to 4294967295; a Flink job runs at parallelism 1 at least"
        }
        "evaluation_interval_secs" => {
            "valid: 1 to 86400 (a day), or leave it out to use the shortest metric period"
        }
        "update_poll_secs" => {
            "valid: 1 to 4294967295; the reference template's default UpdateApplicationWaitingTime is 15"
        }
        "update_timeout_secs" => "valid: 1 to 4294967295; default 1800",
        "evaluation_periods" => {
            "valid: 1 or more, with evaluation_periods x period_secs <= 86400 (a day); the reference design uses 5"
        }
        _ => return None,
    })
}

/// Whether `region` is spelt as an AWS region name: lower-case letters,
/// digits and '-', starting with a letter. "EU-WEST-1" signs every
/// request for a region AWS does not know, each refused.
pub(crate) fn is_region_name(region: &str) -> bool {
    region.starts_with(|c: char| c.is_ascii_lowercase())
        && !region.ends_with('-')
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What is valid for any whole-number field, by its key: the words of
/// [`valid_positive`], or the field's own range as its check says it, so
/// that a value of the wrong type or sign (`"100"`, `-5`, `100.5`, found by
/// the parser) is told the same range as one out of it. `None` for a key
/// that takes no whole number.
pub(super) fn valid_whole_number(key: &str) -> Option<String> {
    if let Some(valid) = valid_positive(key) {
        return Some(valid.to_owned());
    }
    Some(match key {
        "plugin_timeout_ms" => format!("valid: 1 to {MAX_PLUGIN_TIMEOUT_MS}; default 100"),
        "plugin_compile_timeout_secs" => {
            format!("valid: 1 to {MAX_PLUGIN_COMPILE_TIMEOUT_SECS}; default 60")
        }
        "plugin_memory_limit_bytes" => format!(
            "valid: {MIN_PLUGIN_MEMORY_BYTES} (1 MiB) to {MAX_PLUGIN_MEMORY_BYTES} (4 GiB); default 67108864 (64 MiB)"
        ),
        "plugin_quarantine_after_failures" => {
            format!("valid: 1 to {MAX_QUARANTINE_AFTER_FAILURES}; default 3")
        }
        "plugin_quarantine_secs" => format!(
            "valid: 1 to {MAX_QUARANTINE_SECS} (an hour, the longest quarantine); default 300"
        ),
        "grace_period_secs" => "valid: 0 to 4294967295 seconds; default 300".to_owned(),
        "period_secs" => "valid: 10, 20, 30 or a multiple of 60; default 60".to_owned(),
        "min_publication_delay_secs" => format!(
            "valid: 1 to {MAX_PUBLICATION_DELAY_SECS} seconds, or leave it out for no promise"
        ),
        "datapoints_to_alarm" => {
            "valid: 1 to evaluation_periods, or leave it out for evaluation_periods".to_owned()
        }
        "history_days" => format!(
            "valid: 0 to {MAX_HISTORY_DAYS} (CloudWatch keeps 1-minute datapoints for 15 days); default 0"
        ),
        _ => return None,
    })
}

/// The range of `key` as [`valid_whole_number`] says it (every caller
/// names a key it knows).
fn range_of(key: &str) -> String {
    valid_whole_number(key).unwrap_or_else(|| "valid: 1 or more".to_owned())
}

/// What to write for a required `field` that a table `table` (its key in
/// the file: `application`, `metric`, `alarm`, `policy`, `interpreter`)
/// lacks, as serde reports it (`missing field`). `None` when nothing more
/// than the field's name helps.
pub(super) fn missing_field_hint(table: &str, field: &str) -> Option<&'static str> {
    Some(match (table, field) {
        ("application", "name") => {
            "every [[application]] needs name = \"...\": the MSF application's name, or with \
             target = \"flink\" the agent's name for the job (1 to 128 letters, digits, '_', '.' or '-')"
        }
        ("application", "policy") => {
            "every application needs an [application.policy] table with a plugin, e.g. \
             plugin = \"step\" (the reference design) or plugin = \"predictive\""
        }
        ("policy" | "interpreter", "plugin") => {
            "plugin = a built-in (policies step, hold, target-tracking, rate, predictive, \
             flink-operator; interpreters backlog-seconds, expression), a plugin name in \
             plugin_dir, or a path to a .wasm component"
        }
        ("metric", "id") => {
            "the name alarms and plugins use: a lower-case letter, then letters, digits or '_', \
             e.g. id = \"cpu\""
        }
        ("alarm", "id") => {
            "the name policies use (scale_out_alarm, scale_in_alarm): letters, digits, '_', '-' \
             or '.', e.g. id = \"scale-out\""
        }
        _ => return None,
    })
}

/// Checks one `[[application]]`, at index `index` in the file.
fn validate_application(index: usize, app: &ApplicationConfig) -> Vec<Problem> {
    let at = FieldPath::root().key("application").index(index);
    let mut problems = validate_target(&at, app);

    let mut bounds_ok = true;
    for (field, value) in [("min_kpu", app.min_kpu), ("max_kpu", app.max_kpu)] {
        if value == 0 {
            bounds_ok = false;
            problems
                .push(Problem::new(at.key(field), format!("{field} is 0")).hint(range_of(field)));
        }
    }
    if bounds_ok && app.min_kpu > app.max_kpu {
        problems.push(
            Problem::new(
                at.key("min_kpu"),
                format!(
                    "min_kpu {} is greater than max_kpu {}",
                    app.min_kpu, app.max_kpu
                ),
            )
            .hint("valid: min_kpu <= max_kpu"),
        );
    }

    if app.evaluation_interval_secs == Some(0) {
        problems.push(
            Problem::new(
                at.key("evaluation_interval_secs"),
                "evaluation_interval_secs is 0",
            )
            .hint(range_of("evaluation_interval_secs")),
        );
    } else if let Some(secs) = app
        .evaluation_interval_secs
        .filter(|s| u64::from(*s) > MAX_ALARM_RANGE_SECS)
    {
        problems.push(
            Problem::new(
                at.key("evaluation_interval_secs"),
                format!("evaluation_interval_secs {secs} is more than one day"),
            )
            .hint(format!(
                "valid: 1 to {MAX_ALARM_RANGE_SECS}, or leave it out to use the shortest metric period"
            )),
        );
    }
    if app.update_poll_secs == 0 {
        problems.push(
            Problem::new(at.key("update_poll_secs"), "update_poll_secs is 0")
                .hint(range_of("update_poll_secs")),
        );
    }
    if app.update_timeout_secs == 0 {
        problems.push(
            Problem::new(at.key("update_timeout_secs"), "update_timeout_secs is 0")
                .hint(range_of("update_timeout_secs")),
        );
    } else if app.update_poll_secs > 0 && app.update_timeout_secs < app.update_poll_secs {
        problems.push(
            Problem::new(
                at.key("update_timeout_secs"),
                format!(
                    "update_timeout_secs {} is shorter than update_poll_secs {}, so an update would time out before its first poll",
                    app.update_timeout_secs, app.update_poll_secs
                ),
            )
            .hint("valid: update_timeout_secs >= update_poll_secs"),
        );
    }

    let mut metric_ids: BTreeMap<&str, &MetricConfig> = BTreeMap::new();
    for (i, metric) in app.metrics.iter().enumerate() {
        let at = at.key("metric").index(i);
        problems.extend(validate_metric(&at, metric, &app.metrics));
        if metric.source == MetricSourceKind::Flink && app.target != TargetKind::Flink {
            problems.push(
                Problem::new(
                    at.key("source"),
                    "source = \"flink\" reads the metrics of a Flink job, but this application's target is \"msf\"",
                )
                .hint("valid here: source = \"cloudwatch\" (the default), or set the application's target = \"flink\""),
            );
        }
        if metric_ids.insert(metric.id.as_str(), metric).is_some() {
            problems.push(
                Problem::new(
                    at.key("id"),
                    format!(
                        "metric id {:?} is used twice in this application",
                        metric.id
                    ),
                )
                .hint("metric ids are unique within an application"),
            );
        }
    }

    // Every metric is read over one window; CloudWatch gives nothing of
    // a sub-minute period from further back than 3 hours.
    let window = crate::controller::fetch_window_secs(app);
    if window > SUB_MINUTE_RETENTION_SECS {
        for (i, metric) in app.metrics.iter().enumerate() {
            if metric.source == MetricSourceKind::Cloudwatch && metric.period_secs < 60 {
                problems.push(
                    Problem::new(
                        at.key("metric").index(i).key("period_secs"),
                        format!(
                            "a {} s period, which CloudWatch keeps for {SUB_MINUTE_RETENTION_SECS} s \
                             (3 hours), in an application whose metrics are read over the last \
                             {window} s (the longest alarm's range, and ten periods of the longest \
                             metric): CloudWatch would answer with no datapoint",
                            metric.period_secs
                        ),
                    )
                    .hint(format!(
                        "valid: period_secs = 60 here, or every alarm's (evaluation_periods + \
                         3) x period_secs and ten times every period_secs within \
                         {SUB_MINUTE_RETENTION_SECS} s"
                    )),
                );
            }
        }
    }

    // A signal has a value per evaluation: its period is the interval
    // (60 s with no metric and no interval set, as the agent runs it).
    let signal_period = Some(app.evaluation_interval()).filter(|p| *p > 0);
    let mut alarm_ids: Vec<&str> = Vec::new();
    for (i, alarm) in app.alarms.iter().enumerate() {
        let at = at.key("alarm").index(i);
        problems.extend(validate_alarm(
            &at,
            alarm,
            &metric_ids,
            !app.interpreters.is_empty(),
            signal_period,
        ));
        // `alarms sync` names its CloudWatch mirror after both, and
        // CloudWatch refuses an alarm name past 255 characters.
        let mirror = alarm.mirror_name(&app.name);
        if alarm.source != AlarmSource::Cloudwatch && mirror.chars().count() > MAX_ALARM_NAME {
            problems.push(
                Problem::new(
                    at.key("id"),
                    format!(
                        "alarm id {:?} is too long: the CloudWatch alarm `flinkscale alarms sync` \
                         makes of it, flinkscale-<application>-<id>, would be {} characters, and \
                         CloudWatch takes at most {MAX_ALARM_NAME}",
                        alarm.id,
                        mirror.chars().count()
                    ),
                )
                .hint(format!(
                    "an id of at most {} characters for application {:?}",
                    MAX_ALARM_NAME
                        .saturating_sub(mirror.chars().count() - alarm.id.chars().count()),
                    app.name
                )),
            );
        }
        if alarm_ids.contains(&alarm.id.as_str()) {
            problems.push(
                Problem::new(
                    at.key("id"),
                    format!("alarm id {:?} is used twice in this application", alarm.id),
                )
                .hint("alarm ids are unique within an application"),
            );
        } else {
            alarm_ids.push(&alarm.id);
        }
    }

    problems.extend(validate_plugin(&at.key("policy"), &app.policy));
    let days = app.policy.history_days;
    if days > MAX_HISTORY_DAYS {
        problems.push(
            Problem::new(
                at.key("policy").key("history_days"),
                format!("history_days {days} is out of range"),
            )
            .hint(range_of("history_days")),
        );
    }
    for (i, interpreter) in app.interpreters.iter().enumerate() {
        let at = at.key("interpreter").index(i);
        if interpreter.history_days != 0 {
            problems.push(
                Problem::new(
                    at.key("history_days"),
                    "history_days is read only for [application.policy]",
                )
                .hint("remove it here; set it in [application.policy]"),
            );
        }
        problems.extend(validate_plugin(&at, interpreter));
    }
    problems
}

/// Whether `name` can be an interpreter signal's name, by the convention
/// the shipped interpreters enforce.
pub(crate) fn is_signal_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `id` is a CloudWatch GetMetricData query id.
fn is_query_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= MAX_CLOUDWATCH_NAME_CHARS
}

/// Whether `statistic` is one GetMetricData accepts here: a named statistic
/// or a percentile `pNN` / `pNN.NN` with 0 < NN <= 100.
pub(crate) fn is_statistic(statistic: &str) -> bool {
    if STATISTICS.contains(&statistic) {
        return true;
    }
    let Some(number) = statistic.strip_prefix('p') else {
        return false;
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_digit())
    };
    if !digits(whole, 3) || fraction.is_some_and(|f| !digits(f, 2)) {
        return false;
    }
    number.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0)
}

/// Whether CloudWatch accepts `period_secs` as a metric period.
fn is_period(period_secs: u32) -> bool {
    matches!(period_secs, 10 | 20 | 30) || (period_secs > 0 && period_secs.is_multiple_of(60))
}

/// The longest `min_publication_delay_secs` a metric may promise: an hour.
pub const MAX_PUBLICATION_DELAY_SECS: u32 = 3600;

fn validate_metric(at: &FieldPath, metric: &MetricConfig, all: &[MetricConfig]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !is_query_id(&metric.id) {
        problems.push(
            Problem::new(
                at.key("id"),
                format!("{:?} is not a valid metric id", metric.id),
            )
            .hint("a lower-case letter, then letters, digits or '_' (a CloudWatch query id), e.g. \"cpu\" or \"max_lag\""),
        );
    }
    if let Some(delay) = metric.min_publication_delay_secs
        && !(1..=MAX_PUBLICATION_DELAY_SECS).contains(&delay)
    {
        problems.push(
            Problem::new(
                at.key("min_publication_delay_secs"),
                format!("min_publication_delay_secs {delay} is out of range"),
            )
            .hint(range_of("min_publication_delay_secs")),
        );
    }
    if metric.source == MetricSourceKind::Flink {
        problems.extend(validate_flink_metric(at, metric));
        return problems;
    }
    if metric.vertex.is_some() {
        problems.push(
            Problem::new(
                at.key("vertex"),
                "vertex names a Flink vertex, but this metric's source is CloudWatch",
            )
            .hint("valid: vertex only with source = \"flink\""),
        );
    }
    if let Some(expression) = &metric.expression {
        problems.extend(validate_expression(at, metric, expression, all));
        return problems;
    }
    let statistic = metric.statistic.as_deref();
    let (Some(namespace), Some(metric_name), Some(statistic)) =
        (&metric.namespace, &metric.metric_name, statistic)
    else {
        // What serde said while these fields were required, so that a
        // forgotten field reads the same.
        for (field, value) in [
            ("namespace", metric.namespace.is_some()),
            ("metric_name", metric.metric_name.is_some()),
            ("statistic", metric.statistic.is_some()),
        ] {
            if !value {
                problems.push(
                    Problem::new(at.clone(), format!("missing field `{field}`")).hint(
                        "a CloudWatch metric needs namespace, metric_name and statistic, e.g. \
                         namespace = \"AWS/KinesisAnalytics\", metric_name = \"containerCPUUtilization\", \
                         statistic = \"Maximum\"; or give expression = \"...\" (metric math over this \
                         application's other metrics) instead of all three",
                    ),
                );
            }
        }
        return problems;
    };
    for (field, value) in [("namespace", namespace), ("metric_name", metric_name)] {
        if value.is_empty() || value.chars().count() > MAX_CLOUDWATCH_NAME_CHARS {
            problems.push(
                Problem::new(at.key(field), format!("{field} {value:?} is not valid"))
                    .hint("1 to 255 characters"),
            );
        }
    }
    if metric.dimensions.len() > MAX_DIMENSIONS {
        problems.push(
            Problem::new(
                at.key("dimensions"),
                format!("{} dimensions are too many", metric.dimensions.len()),
            )
            .hint("CloudWatch accepts at most 30"),
        );
    }
    for (name, value) in &metric.dimensions {
        let valid = |s: &str| !s.is_empty() && s.chars().count() <= MAX_CLOUDWATCH_NAME_CHARS;
        if !valid(name) || !valid(value) {
            problems.push(
                Problem::new(
                    at.key("dimensions").key(name),
                    format!("dimension {name:?} = {value:?} is not valid"),
                )
                .hint("names and values of 1 to 255 characters"),
            );
        }
    }
    if !is_statistic(statistic) {
        problems.push(
            Problem::new(
                at.key("statistic"),
                format!("{statistic:?} is not a statistic"),
            )
            .hint("valid: \"Average\", \"Maximum\", \"Minimum\", \"Sum\", \"SampleCount\", or a percentile \"pNN\" or \"pNN.NN\" above 0 and up to 100, e.g. \"p99\""),
        );
    }
    if !is_period(metric.period_secs) {
        problems.push(
            Problem::new(
                at.key("period_secs"),
                format!(
                    "period_secs {} is not a CloudWatch period",
                    metric.period_secs
                ),
            )
            .hint("valid: 10, 20, 30 or a multiple of 60"),
        );
    } else {
        problems.extend(period_within_a_day(at, metric));
    }
    problems
}

/// The longest metric period: a day. The agent evaluates every shortest
/// period and reads ten periods of the longest metric, so a longer one
/// would make it read weeks of data (more than CloudWatch keeps at a
/// minute's resolution, 15 days) to evaluate once a week.
pub const MAX_PERIOD_SECS: u32 = 86_400;

/// How long CloudWatch keeps datapoints of a period under a minute: 3
/// hours. A GetMetricData query of such a period that starts earlier
/// gets no datapoint at all.
pub const SUB_MINUTE_RETENTION_SECS: u32 = 3 * 3600;

/// A period longer than [`MAX_PERIOD_SECS`], as a problem.
fn period_within_a_day(at: &FieldPath, metric: &MetricConfig) -> Option<Problem> {
    (metric.period_secs > MAX_PERIOD_SECS).then(|| {
        Problem::new(
            at.key("period_secs"),
            format!("period_secs {} is more than one day", metric.period_secs),
        )
        .hint(format!(
            "valid: 10, 20, 30 or a multiple of 60 up to {MAX_PERIOD_SECS}"
        ))
    })
}

/// Warnings, not errors: each CloudWatch metric of an AWS service
/// (`AWS/...`) read in periods under a minute, of the applications given
/// with their index in the file. AWS services publish their metrics once
/// a minute at best (standard resolution), so on AWS five periods of 10 s
/// in six have no datapoint and the alarms see them missing. Sub-minute
/// periods are for a metric of one's own published at high resolution,
/// and for the emulator (which publishes every model second, and whose
/// demo plays faster than the wall clock).
pub fn period_warnings<'a>(
    applications: impl Iterator<Item = (usize, &'a ApplicationConfig)>,
) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (index, app) in applications {
        for (i, metric) in app.metrics.iter().enumerate() {
            // Only an AWS service's metric read from CloudWatch is published
            // as AWS publishes.
            let Some(namespace) = metric
                .namespace
                .as_deref()
                .filter(|n| n.starts_with("AWS/") && metric.source == MetricSourceKind::Cloudwatch)
            else {
                continue;
            };
            let at = FieldPath::root()
                .key("application")
                .index(index)
                .key("metric")
                .index(i);
            if metric.period_secs < 60 {
                warnings.push(
                    Problem::new(
                        at.key("period_secs"),
                        format!(
                            "a {} s period on {namespace}, which AWS publishes once a minute: on \
                             AWS most periods would have no datapoint, and the alarms would see \
                             them missing",
                            metric.period_secs
                        ),
                    )
                    .hint(
                        "use 60 or a multiple of it; periods under a minute are for a metric of \
                         your own published at high resolution, or for the emulator (the demo)",
                    ),
                );
            }
            // Each minute's samples come about a minute after it, so a
            // longer period shows in part before it ends.
            if let Some(delay) = metric.min_publication_delay_secs
                && metric.period_secs > 60
            {
                warnings.push(
                    Problem::new(
                        at.key("min_publication_delay_secs"),
                        format!(
                            "a promise of {delay} s on a {} s period of {namespace}, which AWS \
                             publishes every minute: a longer period's datapoint shows, in part, \
                             before the period ends, so the first fetch breaks the promise (a \
                             publication_delay failure) and lazy polling goes on without it",
                            metric.period_secs
                        ),
                    )
                    .hint(
                        "leave min_publication_delay_secs out here, or read the metric at \
                         period_secs = 60",
                    ),
                );
            }
        }
    }
    warnings
}

/// Warnings, not errors: each policy of the applications given (with
/// their index in the file) whose `history_days` reads nothing, because
/// the application has no metric or every one comes from Flink, which
/// keeps no history. Harmless (the policy learns as it runs), but not what
/// the setting promises.
pub fn history_warnings<'a>(
    applications: impl Iterator<Item = (usize, &'a ApplicationConfig)>,
) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (index, app) in applications {
        let days = app.policy.history_days;
        if days == 0
            || days > MAX_HISTORY_DAYS
            || app
                .metrics
                .iter()
                .any(|m| m.source == MetricSourceKind::Cloudwatch)
        {
            continue;
        }
        let at = FieldPath::root()
            .key("application")
            .index(index)
            .key("policy")
            .key("history_days");
        warnings.push(
            Problem::new(
                at,
                format!(
                    "history_days {days} reads the history CloudWatch keeps, but {}: nothing is \
                     read",
                    if app.metrics.is_empty() {
                        "this application defines no metrics"
                    } else {
                        "every metric of this application comes from Flink, which keeps none"
                    }
                ),
            )
            .hint("leave it out; the policy learns from what it sees while it runs"),
        );
    }
    warnings
}

/// The Flink vertex metrics a `source = "flink"` metric can name.
pub const FLINK_METRICS: [&str; 6] = [
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
    "pendingRecords",
];

/// The statistics over subtasks that Flink's REST API aggregates.
pub const FLINK_STATISTICS: [&str; 4] = ["Maximum", "Average", "Minimum", "Sum"];

/// A `source = "flink"` metric: a known metric name and statistic, a
/// vertex, and none of CloudWatch's fields.
fn validate_flink_metric(at: &FieldPath, metric: &MetricConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (field, given) in [
        ("namespace", metric.namespace.is_some()),
        ("dimensions", !metric.dimensions.is_empty()),
        ("expression", metric.expression.is_some()),
        // A Flink metric is sampled at each evaluation: nothing is published.
        (
            "min_publication_delay_secs",
            metric.min_publication_delay_secs.is_some(),
        ),
    ] {
        if given {
            problems.push(
                Problem::new(
                    at.key(field),
                    format!("{field} is CloudWatch's, but this metric's source is \"flink\""),
                )
                .hint("a Flink metric is metric_name, statistic and vertex"),
            );
        }
    }
    match metric.metric_name.as_deref() {
        Some(name) if FLINK_METRICS.contains(&name) => {}
        Some(name) => problems.push(
            Problem::new(
                at.key("metric_name"),
                format!("{name:?} is not a Flink vertex metric flinkscale reads"),
            )
            .hint(format!("valid: {}", quoted_list(&FLINK_METRICS))),
        ),
        None => problems.push(
            Problem::new(at.clone(), "missing field `metric_name`")
                .hint(format!("valid: {}", quoted_list(&FLINK_METRICS))),
        ),
    }
    match metric.statistic.as_deref() {
        Some(statistic) if FLINK_STATISTICS.contains(&statistic) => {}
        Some(statistic) => problems.push(
            Problem::new(
                at.key("statistic"),
                format!("{statistic:?} is not a statistic Flink aggregates over subtasks"),
            )
            .hint(format!("valid: {}", quoted_list(&FLINK_STATISTICS))),
        ),
        None => problems.push(
            Problem::new(at.clone(), "missing field `statistic`")
                .hint(format!("valid: {}", quoted_list(&FLINK_STATISTICS))),
        ),
    }
    if metric
        .vertex
        .as_deref()
        .is_some_and(|v| v.trim().is_empty())
    {
        problems.push(
            Problem::new(at.key("vertex"), "vertex is empty").hint(
                "valid: \"all\" (the default), \"source\", or the start of a vertex name, e.g. \"Calc\"",
            ),
        );
    }
    if !is_period(metric.period_secs) {
        problems.push(
            Problem::new(
                at.key("period_secs"),
                format!("period_secs {} is not a metric period", metric.period_secs),
            )
            .hint("valid: 10, 20, 30 or a multiple of 60"),
        );
    } else {
        problems.extend(period_within_a_day(at, metric));
    }
    problems
}

/// `"a", "b" or "c"`.
fn quoted_list(items: &[&str]) -> String {
    or_joined(items.iter().map(|i| format!("{i:?}")).collect())
}

/// `a, b or c` of words already quoted as a message writes them.
pub(super) fn or_joined(quoted: Vec<String>) -> String {
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The target's own keys: `rest_url` and the job for `target = "flink"`
/// (and the parallelism bounds instead of KPU ones), none of them for MSF.
fn validate_target(at: &FieldPath, app: &ApplicationConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let flink_keys = [
        ("rest_url", app.rest_url.is_some()),
        ("job_name", app.job_name.is_some()),
        ("job_id", app.job_id.is_some()),
        ("min_parallelism", app.min_parallelism.is_some()),
        ("max_parallelism", app.max_parallelism.is_some()),
    ];
    if app.target == TargetKind::Msf {
        for (field, given) in flink_keys {
            if given {
                problems.push(
                    Problem::new(
                        at.key(field),
                        format!("{field} is for target = \"flink\", but this application's target is \"msf\""),
                    )
                    .hint("set target = \"flink\" to scale a job of a self-managed Flink cluster, or remove it")
                    .assuming(at.key("target")),
                );
            }
        }
        return problems;
    }
    match app.rest_url.as_ref().map(crate::flink::RestUrl::urls) {
        None => problems.push(
            Problem::new(at.clone(), "missing field `rest_url`")
                .hint("target = \"flink\" needs the JobManager's REST API, e.g. rest_url = \"http://localhost:8081\""),
        ),
        Some([]) => problems.push(
            Problem::new(at.key("rest_url"), "rest_url is an empty list")
                .hint("give the JobManager's REST API, e.g. \"http://localhost:8081\", or a list of every JobManager's"),
        ),
        Some(urls) => {
            let one = urls.len() == 1;
            for (i, url) in urls.iter().enumerate() {
                let path = if one {
                    at.key("rest_url")
                } else {
                    at.key("rest_url").index(i)
                };
                if let Err(error) = crate::flink::parse_rest_url(url) {
                    problems.push(
                        Problem::new(path, error)
                            .hint("valid: http://host:port, e.g. \"http://localhost:8081\""),
                    );
                } else if urls[..i]
                    .iter()
                    .any(|earlier| crate::flink::parse_rest_url(earlier) == crate::flink::parse_rest_url(url))
                {
                    problems.push(
                        Problem::new(path, format!("rest_url {url:?} is listed twice"))
                            .hint("list each JobManager once"),
                    );
                }
            }
        }
    }
    if app.job_name.is_some() && app.job_id.is_some() {
        problems.push(
            Problem::new(at.key("job_id"), "both job_name and job_id are given")
                .hint("give one: job_name finds a resubmitted job again, job_id names one job"),
        );
    }
    if app.job_name.as_deref().is_some_and(str::is_empty) {
        problems.push(
            Problem::new(at.key("job_name"), "job_name is empty")
                .hint("valid: the job's name as Flink shows it, or leave it out to use `name`"),
        );
    }
    if let Some(id) = &app.job_id
        && !(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push(
            Problem::new(at.key("job_id"), format!("{id:?} is not a Flink job id"))
                .hint("valid: 32 hexadecimal digits, as GET /jobs lists them"),
        );
    }
    let given = |field: &str| {
        // The loader says which keys the file gives; a configuration read
        // otherwise (by serde alone) shows a key only by a value other
        // than its default.
        app.msf_keys.contains(&field)
            || (field == "min_kpu" && app.min_kpu != 1)
            || (field == "max_kpu" && app.max_kpu != 10)
    };
    for (kpu, parallelism, meaning) in [
        (
            "min_kpu",
            "min_parallelism",
            "the lowest parallelism the agent sets, default 1",
        ),
        (
            "max_kpu",
            "max_parallelism",
            "the highest parallelism the agent sets, default 10",
        ),
    ] {
        if given(kpu) {
            problems.push(
                Problem::new(
                    at.key(kpu),
                    format!("{kpu} is MSF's; a Flink job is bounded by {parallelism}"),
                )
                .hint(format!(
                    "valid: remove {kpu} and set {parallelism}, {meaning}"
                )),
            );
        }
    }
    for (field, value) in [
        ("min_parallelism", app.min_parallelism),
        ("max_parallelism", app.max_parallelism),
    ] {
        if value == Some(0) {
            problems
                .push(Problem::new(at.key(field), format!("{field} is 0")).hint(range_of(field)));
        }
    }
    let (min, max) = app.parallelism_bounds();
    if min > 0 && max > 0 && min > max {
        problems.push(
            Problem::new(
                at.key("min_parallelism"),
                format!("min_parallelism {min} is greater than max_parallelism {max}"),
            )
            .hint("valid: min_parallelism <= max_parallelism"),
        );
    }
    problems
}

/// An `expression` metric: no MetricStat fields beside it, an expression
/// in the supported subset, reading only plain metrics of the application.
fn validate_expression(
    at: &FieldPath,
    metric: &MetricConfig,
    expression: &str,
    all: &[MetricConfig],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (field, given) in [
        ("namespace", metric.namespace.is_some()),
        ("metric_name", metric.metric_name.is_some()),
        ("dimensions", !metric.dimensions.is_empty()),
        ("statistic", metric.statistic.is_some()),
    ] {
        if given {
            problems.push(
                Problem::new(
                    at.key(field),
                    format!("{field} is given beside expression"),
                )
                .hint("a metric is either namespace, metric_name, dimensions and statistic, or an expression over other metrics"),
            );
        }
    }
    let parsed = match crate::metrics::math::parse(expression) {
        Ok(parsed) => parsed,
        Err(error) => {
            problems.push(
                Problem::new(
                    at.key("expression"),
                    format!("expression {}: {error}", quoted_start(expression)),
                )
                .hint(format!(
                    "supported: numbers, metric ids, + - * /, parentheses, {}([a, b]), FILL(x, number)",
                    crate::metrics::math::FUNCTIONS
                        .iter()
                        .filter(|f| **f != "FILL")
                        .copied()
                        .collect::<Vec<_>>()
                        .join("/")
                )),
            );
            return problems;
        }
    };
    // CloudWatch computes the expression, so a Flink metric is no input.
    let plain: Vec<&str> = all
        .iter()
        .filter(|m| m.expression.is_none() && m.source == MetricSourceKind::Cloudwatch)
        .map(|m| m.id.as_str())
        .collect();
    for id in parsed.ids() {
        if !plain.contains(&id) {
            problems.push(
                Problem::new(
                    at.key("expression"),
                    format!("expression {expression:?} reads {id:?}, which is not a plain metric of this application"),
                )
                .hint(valid_list(plain.iter().copied(), "plain metric")),
            );
        }
    }
    problems
}

/// The longest alarm name CloudWatch takes (`PutMetricAlarm`'s
/// `AlarmName`: 1 to 255 characters).
const MAX_ALARM_NAME: usize = 255;

fn validate_alarm(
    at: &FieldPath,
    alarm: &AlarmConfig,
    metrics: &BTreeMap<&str, &MetricConfig>,
    has_interpreters: bool,
    signal_period: Option<u32>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let valid_id = !alarm.id.is_empty()
        && alarm
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_id {
        problems.push(
            Problem::new(
                at.key("id"),
                format!("{:?} is not a valid alarm id", alarm.id),
            )
            .hint("letters, digits, '_', '-' or '.', e.g. \"scale-out\""),
        );
    }
    if alarm.source == AlarmSource::Cloudwatch {
        problems.extend(validate_cloudwatch_alarm(at, alarm));
        return problems;
    }
    if alarm.alarm_name.is_some() {
        problems.push(
            Problem::new(
                at.key("alarm_name"),
                "alarm_name is only for an alarm whose state comes from CloudWatch",
            )
            .hint("add source = \"cloudwatch\" to use that CloudWatch alarm's state, or remove alarm_name to evaluate the alarm locally"),
        );
    }
    // What serde said while these fields were required, so that a
    // forgotten field reads the same.
    for (field, given) in [
        ("metric", alarm.metric.is_some()),
        ("comparison", alarm.comparison.is_some()),
        ("threshold", alarm.threshold.is_some()),
        ("evaluation_periods", alarm.evaluation_periods.is_some()),
    ] {
        if !given {
            problems.push(
                Problem::new(at.clone(), format!("missing field `{field}`"))
                    .hint("a local alarm needs metric, comparison, threshold and evaluation_periods; or give source = \"cloudwatch\" and alarm_name to use an existing CloudWatch alarm"),
            );
        }
    }
    let Some(metric_id) = alarm.metric.as_deref() else {
        return problems;
    };
    let metric = metrics.get(metric_id);
    // With interpreters, a name that is no metric id is one of their
    // signals: which signals a plugin produces is known only when it runs.
    let signal = has_interpreters && is_signal_name(metric_id);
    if metric.is_none() && has_interpreters && !signal {
        problems.push(
            Problem::new(
                at.key("metric"),
                format!(
                    "no metric with id {metric_id:?} in this application, and not a signal name"
                ),
            )
            .hint(format!(
                "{}, or a signal of one of its interpreters (letters, digits and '_', starting with a letter)",
                valid_list(metrics.keys().copied(), "metric")
            )),
        );
    } else if metric.is_none() && !signal {
        problems.push(
            Problem::new(
                at.key("metric"),
                format!("no metric with id {metric_id:?} in this application"),
            )
            .hint(valid_list(metrics.keys().copied(), "metric")),
        );
    }
    if let Some(threshold) = alarm.threshold
        && !threshold.is_finite()
    {
        problems.push(
            Problem::new(
                at.key("threshold"),
                format!("threshold {threshold} is not a finite number"),
            )
            .hint("a number such as 80.0"),
        );
    }
    let Some(n) = alarm.evaluation_periods else {
        return problems;
    };
    if n == 0 {
        problems.push(
            Problem::new(at.key("evaluation_periods"), "evaluation_periods is 0")
                .hint(range_of("evaluation_periods")),
        );
    } else if let Some(metric) = metric {
        let range = u64::from(n) * u64::from(metric.period_secs);
        if range > MAX_ALARM_RANGE_SECS {
            problems.push(
                Problem::new(
                    at.key("evaluation_periods"),
                    format!(
                        "evaluation_periods {n} x period_secs {} of metric {:?} = {range} s, more than one day",
                        metric.period_secs, metric.id
                    ),
                )
                .hint(match MAX_ALARM_RANGE_SECS / u64::from(metric.period_secs.max(1)) {
                    // The period alone is longer than a day: no N helps.
                    0 => format!(
                        "valid: evaluation_periods x period_secs <= {MAX_ALARM_RANGE_SECS}; \
                         period_secs {} alone is longer, so shorten the metric's period",
                        metric.period_secs
                    ),
                    most => format!(
                        "valid: evaluation_periods x period_secs <= {MAX_ALARM_RANGE_SECS}, \
                         here evaluation_periods <= {most}"
                    ),
                }),
            );
        }
    } else if let Some(period) =
        signal_period.filter(|p| metric.is_none() && u64::from(*p) <= MAX_ALARM_RANGE_SECS)
    {
        // On a signal: one value per evaluation.
        let range = u64::from(n) * u64::from(period);
        if range > MAX_ALARM_RANGE_SECS {
            problems.push(
                Problem::new(
                    at.key("evaluation_periods"),
                    format!(
                        "evaluation_periods {n} x the evaluation interval {period} s of signal {:?} = {range} s, more than one day",
                        alarm.metric.as_deref().unwrap_or_default()
                    ),
                )
                .hint(format!(
                    "valid: evaluation_periods x evaluation interval <= {MAX_ALARM_RANGE_SECS}, here evaluation_periods <= {}",
                    MAX_ALARM_RANGE_SECS / u64::from(period.max(1))
                )),
            );
        }
    }
    if let Some(m) = alarm.datapoints_to_alarm
        && n > 0
        && (m == 0 || m > n)
    {
        problems.push(
            Problem::new(
                at.key("datapoints_to_alarm"),
                format!("datapoints_to_alarm {m} is not between 1 and evaluation_periods {n}"),
            )
            .hint(format!("valid: 1 to {n}")),
        );
    }
    problems
}

/// An alarm whose state comes from CloudWatch: a name, and none of the
/// fields CloudWatch's alarm already has.
fn validate_cloudwatch_alarm(at: &FieldPath, alarm: &AlarmConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    match alarm.alarm_name.as_deref() {
        None => problems.push(
            Problem::new(at.clone(), "missing field `alarm_name`")
                .hint("source = \"cloudwatch\" reads the state of an existing CloudWatch alarm: give its name, e.g. alarm_name = \"ScaleOutAlarm-my-app\""),
        ),
        Some(name) if name.is_empty() || name.chars().count() > MAX_CLOUDWATCH_NAME_CHARS => {
            problems.push(
                Problem::new(at.key("alarm_name"), format!("alarm_name {name:?} is not valid"))
                    .hint("a CloudWatch alarm name: 1 to 255 characters"),
            );
        }
        Some(_) => {}
    }
    for (field, given) in [
        ("metric", alarm.metric.is_some()),
        ("comparison", alarm.comparison.is_some()),
        ("threshold", alarm.threshold.is_some()),
        ("evaluation_periods", alarm.evaluation_periods.is_some()),
        ("datapoints_to_alarm", alarm.datapoints_to_alarm.is_some()),
        ("treat_missing_data", alarm.treat_missing_data.is_some()),
    ] {
        if given {
            problems.push(
                Problem::new(
                    at.key(field),
                    format!("{field} is not allowed with source = \"cloudwatch\": CloudWatch evaluates the alarm with its own settings"),
                )
                .hint("remove it (change the CloudWatch alarm instead), or remove source to evaluate the alarm locally"),
            );
        }
    }
    problems
}

fn validate_plugin(at: &FieldPath, plugin: &PluginConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if plugin.plugin.trim().is_empty() {
        problems.push(
            Problem::new(at.key("plugin"), "plugin is empty")
                .hint("a plugin name such as \"step\" (found as <plugin_dir>/step.wasm) or a path to a .wasm file"),
        );
    }
    let params = at.key("params");
    for (key, value) in &plugin.params {
        problems.extend(non_finite_floats(&params.key(key), value));
    }
    problems
}

/// For a plugin that declares no parameters (contract 0.1.0), the ids its
/// `params` at `params_at` name by the naming convention that `app` does
/// not configure: a key ending in `_alarm` names an alarm id, one in
/// `_metric` a metric id, `_alarms` and `_metrics` an array of them. A
/// plugin that declares its parameters is judged by the kinds it declares
/// instead ([`crate::plugin::params::check_references`]): its
/// `display_metric` may be text. So this needs the plugin loaded, and is
/// not part of [`validate`].
pub fn conventional_references(
    params_at: &FieldPath,
    params: &toml::Table,
    app: &ApplicationConfig,
) -> Vec<Problem> {
    let (alarms, metrics) = app.alarm_and_metric_ids();
    let mut problems = Vec::new();
    for (key, value) in params {
        let at = params_at.key(key);
        let Some(kind) = referenced_kind(key) else {
            continue;
        };
        let (ids, noun) = match kind {
            Reference::Alarm => (&alarms, "alarm"),
            Reference::Metric => (&metrics, "metric"),
        };
        let check = |at: FieldPath, value: &toml::Value| match value.as_str() {
            Some(id) if ids.contains(&id) => None,
            Some(id) => Some(
                Problem::new(at, format!("no {noun} with id {id:?} in this application"))
                    .hint(valid_list(ids.iter().copied(), noun)),
            ),
            None => Some(
                Problem::new(
                    at,
                    format!(
                        "{key} must be a string naming an {noun} id, not {}",
                        with_article(value.type_str())
                    ),
                )
                .hint(valid_list(ids.iter().copied(), noun)),
            ),
        };
        if key.ends_with('s') {
            match value.as_array() {
                Some(items) => problems.extend(
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| check(at.index(i), item)),
                ),
                None => problems.push(
                    Problem::new(
                        at.clone(),
                        format!(
                            "{key} must be an array of {noun} ids, not {}",
                            with_article(value.type_str())
                        ),
                    )
                    .hint(valid_list(ids.iter().copied(), noun)),
                ),
            }
        } else {
            problems.extend(check(at.clone(), value));
        }
    }
    problems
}

/// What a parameter key names, by the `_alarm(s)` / `_metric(s)` convention.
enum Reference {
    Alarm,
    Metric,
}

fn referenced_kind(key: &str) -> Option<Reference> {
    if key.ends_with("_alarm") || key.ends_with("_alarms") {
        Some(Reference::Alarm)
    } else if key.ends_with("_metric") || key.ends_with("_metrics") {
        Some(Reference::Metric)
    } else {
        None
    }
}

/// NaN and infinities have no JSON form, so they cannot reach a plugin.
fn non_finite_floats(at: &FieldPath, value: &toml::Value) -> Vec<Problem> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => vec![
            Problem::new(at.clone(), format!("{f} cannot be passed to a plugin"))
                .hint("plugin parameters are JSON, which has no nan or inf"),
        ],
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| non_finite_floats(&at.index(i), item))
            .collect(),
        toml::Value::Table(table) => table
            .iter()
            .flat_map(|(key, item)| non_finite_floats(&at.key(key), item))
            .collect(),
        _ => Vec::new(),
    }
}

/// "an integer", "a string".
pub(crate) fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// `valid: "a", "b"`, or a note that there is nothing to name.
pub(crate) fn valid_list<'a>(ids: impl Iterator<Item = &'a str>, noun: &str) -> String {
    let ids: Vec<String> = ids.map(|id| format!("{id:?}")).collect();
    if ids.is_empty() {
        format!("this application defines no {noun}s")
    } else {
        format!("valid: {}", ids.join(", "))
    }
}
