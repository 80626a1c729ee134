//! What the user writes: the agent's TOML configuration.
//!
//! Loading is two steps, as in Vector: serde parses the text into these types
//! (`deny_unknown_fields`, so a misspelt key is an error), then a pure
//! validation step ([`validate`]) checks everything serde cannot and collects
//! *every* error, each located at its file, line and column. Nothing touches
//! the network or the plugins until a configuration has passed both.
//!
//! The doc comment of each field is its user documentation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod load;
#[cfg(test)]
mod tests;
pub mod validate;

pub use load::{ConfigError, ConfigErrors, LoadedConfig, load, load_str, params_json};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings of the agent process.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The applications to scale (`[[application]]`), at least one.
    #[serde(default, rename = "application")]
    pub applications: Vec<ApplicationConfig>,
}

/// `[agent]`: settings of the agent process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Folder where plugins named by `plugin = "NAME"` are found as
    /// `NAME.wasm`; relative to the configuration file's folder.
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: PathBuf,
    /// Folder for the agent's durable state; relative to the configuration
    /// file's folder.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// AWS region; when absent, the SDK's usual chain (AWS_REGION, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Wall-clock deadline of one plugin call, in milliseconds.
    #[serde(default = "default_plugin_timeout_ms")]
    pub plugin_timeout_ms: u64,
    /// Memory cap of one plugin instance, in bytes.
    #[serde(default = "default_plugin_memory_limit_bytes")]
    pub plugin_memory_limit_bytes: u64,
    /// Longest a plugin load waits for its component to compile, in
    /// seconds; a compile that overruns goes on in the background and the
    /// next load of the same file uses it. Compiled components are kept in
    /// `<state_dir>/plugin-cache`, so only a first start compiles.
    #[serde(default = "default_plugin_compile_timeout_secs")]
    pub plugin_compile_timeout_secs: u64,
    /// A plugin (policy or interpreter) whose calls fail this many times in
    /// a row (errors, traps, timeouts, memory cap) is quarantined for that
    /// application: it is not called, and the application holds, until its
    /// quarantine ends or its file changes.
    #[serde(default = "default_plugin_quarantine_after_failures")]
    pub plugin_quarantine_after_failures: u32,
    /// How long a quarantined plugin is left alone before it is tried again,
    /// in seconds; each failed retry doubles it, up to an hour. A plugin
    /// whose `.wasm` file is replaced is tried again at once.
    #[serde(default = "default_plugin_quarantine_secs")]
    pub plugin_quarantine_secs: u32,
    /// Address (`IP:PORT`) where `flinkscale run` serves `GET /metrics`
    /// (Prometheus text format), `GET /livez` (liveness; `/healthz` is the
    /// same) and `GET /readyz` (readiness); when absent, no HTTP
    /// server is started. E.g. `"127.0.0.1:9464"`, or `"0.0.0.0:9464"` to
    /// be scraped from other hosts.
    #[serde(default, deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
    /// Skip the CloudWatch polls that cannot change a decision (the
    /// default, `true`): for an alarm-driven policy (the built-in `step`,
    /// no interpreter, every metric from CloudWatch, no metric math with a
    /// function: see
    /// [`crate::controller::is_alarm_driven`]), the evaluations before any
    /// alarm could change state; for any policy,
    /// the evaluations it asked to skip with `next-evaluation-secs`
    /// (at most 15 evaluation intervals). `false` evaluates every
    /// interval. An application's own `lazy_polling` overrides it.
    #[serde(default = "default_lazy_polling")]
    pub lazy_polling: bool,
}

impl AgentConfig {
    /// The sandbox every plugin of this agent runs in
    /// (`plugin_timeout_ms`, `plugin_memory_limit_bytes`,
    /// `plugin_compile_timeout_secs`).
    pub fn sandbox_limits(&self) -> crate::plugin::SandboxLimits {
        crate::plugin::SandboxLimits {
            call_timeout: std::time::Duration::from_millis(self.plugin_timeout_ms),
            memory_limit_bytes: self.plugin_memory_limit_bytes,
            compile_timeout: std::time::Duration::from_secs(self.plugin_compile_timeout_secs),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            plugin_dir: default_plugin_dir(),
            state_dir: default_state_dir(),
            region: None,
            plugin_timeout_ms: default_plugin_timeout_ms(),
            plugin_memory_limit_bytes: default_plugin_memory_limit_bytes(),
            plugin_compile_timeout_secs: default_plugin_compile_timeout_secs(),
            plugin_quarantine_after_failures: default_plugin_quarantine_after_failures(),
            plugin_quarantine_secs: default_plugin_quarantine_secs(),
            listen: None,
            lazy_polling: default_lazy_polling(),
        }
    }
}

/// `[[application]]`: one application and its scaling rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    /// The MSF application name (as in DescribeApplication); for
    /// `target = "flink"`, the agent's own name for the job (its journal,
    /// logs and metric labels), and the job's name unless `job_name` or
    /// `job_id` says otherwise. Unique.
    pub name: String,
    /// What is scaled: `"msf"` (the default), an application of Managed
    /// Service for Apache Flink, or `"flink"`, a job on a self-managed Flink
    /// cluster reached over its REST API at `rest_url`, rescaled in place
    /// with the adaptive scheduler.
    #[serde(default)]
    pub target: TargetKind,
    /// With `target = "flink"` (and only then): the JobManager's REST API,
    /// `http://host:port`, e.g. `"http://localhost:8081"` for a sidecar;
    /// or, with JobManager high availability and no load balancer in
    /// front, a list of every JobManager's, tried in order
    /// (`["http://jm-a:8081", "http://jm-b:8081"]`).
    #[serde(default)]
    pub rest_url: Option<crate::flink::RestUrl>,
    /// With `target = "flink"`: the name of the job to scale (the newest
    /// job of that name that has not ended, so a job resubmitted under a
    /// new id is found again). Defaults to `name`; not with `job_id`.
    #[serde(default)]
    pub job_name: Option<String>,
    /// With `target = "flink"`: the id of the job to scale (32 hex
    /// digits), instead of `job_name`, for a job that keeps its id.
    #[serde(default)]
    pub job_id: Option<String>,
    /// With `target = "flink"`: the lowest parallelism the agent sets
    /// (every vertex gets the same). One unit of parallelism is one "KPU"
    /// for the policies (`parallelism_per_kpu` = 1), so this is the
    /// Flink spelling of `min_kpu`, which it replaces; default 1.
    #[serde(default)]
    pub min_parallelism: Option<u32>,
    /// With `target = "flink"`: the highest parallelism the agent sets,
    /// the Flink spelling of `max_kpu`; default 10. The cluster needs that
    /// many free task slots (one slot sharing group).
    #[serde(default)]
    pub max_parallelism: Option<u32>,
    /// Lowest KPU the agent sets (reference design: MinKPU). For
    /// `target = "flink"`, use `min_parallelism`.
    #[serde(default = "default_min_kpu")]
    pub min_kpu: u32,
    /// Highest KPU the agent sets (reference design: MaxKPU). For
    /// `target = "flink"`, use `max_parallelism`.
    #[serde(default = "default_max_kpu")]
    pub max_kpu: u32,
    /// Seconds between evaluations while idle; defaults to the shortest
    /// metric period.
    #[serde(default)]
    pub evaluation_interval_secs: Option<u32>,
    /// Seconds between DescribeApplication polls while the application is
    /// UPDATING (reference design: UpdateApplicationWaitingTime).
    #[serde(default = "default_update_poll_secs")]
    pub update_poll_secs: u32,
    /// Give up waiting for an update to finish after this many seconds.
    #[serde(default = "default_update_timeout_secs")]
    pub update_timeout_secs: u32,
    /// Seconds to wait after an update before evaluating again (reference
    /// design: the cooling-down period).
    #[serde(default = "default_grace_period_secs")]
    pub grace_period_secs: u32,
    /// The metrics to collect (`[[application.metric]]`).
    #[serde(default, rename = "metric")]
    pub metrics: Vec<MetricConfig>,
    /// Alarms evaluated locally on those metrics, or read from CloudWatch
    /// (`[[application.alarm]]`).
    #[serde(default, rename = "alarm")]
    pub alarms: Vec<AlarmConfig>,
    /// Interpreter plugins that derive signals (`[[application.interpreter]]`).
    #[serde(default, rename = "interpreter")]
    pub interpreters: Vec<PluginConfig>,
    /// The policy plugin that decides (`[application.policy]`).
    pub policy: PluginConfig,
    /// What the agent does with the application: `"active"` (the default)
    /// evaluates and rescales; `"dry-run"` evaluates, decides and logs but
    /// never calls UpdateApplication; `"paused"` evaluates nothing and calls
    /// nothing for it (as KEDA's paused annotation or the Flink operator's
    /// `scaling.enabled = false`). A SIGHUP reload switches it without
    /// restarting the agent or touching the other applications; `run
    /// --dry-run` makes every active application dry-run (a paused one
    /// stays paused).
    #[serde(default)]
    pub mode: Mode,
    /// This application's `[agent] lazy_polling`; absent, the agent's
    /// (after loading it is always set).
    #[serde(default)]
    pub lazy_polling: Option<bool>,
    /// The MSF-only keys (`min_kpu`, `max_kpu`) the application's table
    /// gives, as the loader saw them: their defaults make `min_kpu = 1`
    /// look absent once read, and a Flink job must be told to use
    /// `min_parallelism` all the same. Not a key of the file.
    #[serde(skip)]
    pub msf_keys: Vec<&'static str>,
}

/// An application's [`ApplicationConfig::target`]: what kind of thing is
/// scaled (also `plugin check --target`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An application of Managed Service for Apache Flink.
    #[default]
    Msf,
    /// A job on a self-managed Flink cluster, over its REST API.
    Flink,
}

/// Which job of a Flink cluster an application is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlinkJob {
    /// The newest job of this name that has not ended.
    Name(String),
    /// The job with this id.
    Id(String),
}

impl std::fmt::Display for FlinkJob {
    /// As the configuration names it: `job_name "orders"` or
    /// `job_id "<32 hex digits>"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => write!(f, "job_name {name:?}"),
            Self::Id(id) => write!(f, "job_id {id:?}"),
        }
    }
}

impl ApplicationConfig {
    /// The application's alarm ids and metric ids, each sorted, once: what
    /// a plugin's params may name, as an error lists them.
    pub fn alarm_and_metric_ids(&self) -> (Vec<&str>, Vec<&str>) {
        fn sorted(mut ids: Vec<&str>) -> Vec<&str> {
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        (
            sorted(self.alarms.iter().map(|a| a.id.as_str()).collect()),
            sorted(self.metrics.iter().map(|m| m.id.as_str()).collect()),
        )
    }

    /// The seconds between evaluations while idle: `evaluation_interval_secs`,
    /// else the shortest metric period, else 60. A signal of an interpreter
    /// has one value per evaluation, so this is its period too.
    pub fn evaluation_interval(&self) -> u32 {
        self.evaluation_interval_secs
            .or_else(|| self.metrics.iter().map(|m| m.period_secs).min())
            .unwrap_or(60)
    }

    /// For `target = "flink"`: the REST URL and the job, as configured
    /// (validation guarantees `rest_url`); `None` for an MSF application.
    pub fn flink(&self) -> Option<(crate::flink::RestUrl, FlinkJob)> {
        if self.target != TargetKind::Flink {
            return None;
        }
        let job = match (&self.job_id, &self.job_name) {
            (Some(id), _) => FlinkJob::Id(id.clone()),
            (None, Some(name)) => FlinkJob::Name(name.clone()),
            (None, None) => FlinkJob::Name(self.name.clone()),
        };
        Some((self.rest_url.clone().unwrap_or_else(|| "".into()), job))
    }

    /// Whether the agent calls AWS for this application: an MSF target
    /// (DescribeApplication, UpdateApplication, and its CloudWatch
    /// metrics), a `source = "cloudwatch"` metric, or an alarm whose state
    /// comes from CloudWatch. A Flink job with Flink metrics and local
    /// alarms only calls its cluster.
    pub fn calls_aws(&self) -> bool {
        self.target == TargetKind::Msf
            || self
                .metrics
                .iter()
                .any(|m| m.source == MetricSourceKind::Cloudwatch)
            || self.alarms.iter().any(|a| a.cloudwatch_name().is_some())
    }

    /// `min_parallelism` and `max_parallelism` with their defaults (those
    /// of `min_kpu` and `max_kpu`).
    pub fn parallelism_bounds(&self) -> (u32, u32) {
        (
            self.min_parallelism.unwrap_or_else(default_min_kpu),
            self.max_parallelism.unwrap_or_else(default_max_kpu),
        )
    }
}

/// An application's [`ApplicationConfig::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Evaluate, decide and rescale.
    #[default]
    Active,
    /// Evaluate, decide and log; never rescale (no UpdateApplication, no PUT
    /// of a Flink job's resource requirements).
    DryRun,
    /// Evaluate nothing, call nothing.
    Paused,
}

impl Mode {
    /// Every mode, as written in the configuration.
    pub const ALL: [Mode; 3] = [Mode::Active, Mode::DryRun, Mode::Paused];

    /// The mode as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::DryRun => "dry-run",
            Mode::Paused => "paused",
        }
    }
}

/// `[[application.metric]]`: one CloudWatch metric, or CloudWatch metric
/// math over other metrics of the application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// Id used by alarms and plugins to name this metric; unique within the
    /// application; letters, digits and `_`, starting with a lower-case
    /// letter (a CloudWatch query id).
    pub id: String,
    /// Where the metric is read: `"cloudwatch"` (the default), or
    /// `"flink"`: the job's own vertex metrics over Flink's REST API (only
    /// in an application with `target = "flink"`). A Flink metric has
    /// `metric_name` (one of `busyTimeMsPerSecond`,
    /// `backPressuredTimeMsPerSecond`, `idleTimeMsPerSecond`,
    /// `numRecordsInPerSecond`, `numRecordsOutPerSecond`,
    /// `pendingRecords`), `statistic` over the subtasks (`Maximum`,
    /// `Average`, `Minimum` or `Sum`), `vertex`, and no namespace or
    /// dimensions; each evaluation samples it once.
    #[serde(default)]
    pub source: MetricSourceKind,
    /// With `source = "flink"`: which vertices: `"all"` (the default;
    /// Maximum/Minimum over every vertex's, Sum over all subtasks, Average
    /// over all subtasks), `"source"` (the vertices with no input), or
    /// the start of a vertex's name as Flink shows it (e.g. `"Calc"`).
    /// For a time metric (`busyTimeMsPerSecond`...), `"all"` and
    /// `"source"` leave out the vertices Flink runs non-parallel
    /// (`maxParallelism` 1), which no rescale changes.
    #[serde(default)]
    pub vertex: Option<String>,
    /// Namespace, e.g. `AWS/KinesisAnalytics`, `AWS/Kafka`, `AWS/Kinesis`,
    /// or a custom one. Required unless `expression` is given.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Metric name, e.g. `containerCPUUtilization`. Required unless
    /// `expression` is given.
    #[serde(default)]
    pub metric_name: Option<String>,
    /// Dimensions, e.g. `{ Application = "my-app" }`.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Statistic: Average, Maximum, Minimum, Sum, SampleCount, or a
    /// percentile pNN or pNN.NN. Required unless `expression` is given.
    #[serde(default)]
    pub statistic: Option<String>,
    /// CloudWatch metric math over the other (plain) metrics of this
    /// application, named by their ids, instead of namespace, metric_name,
    /// dimensions and statistic, e.g. `"SUM([lag_a, lag_b]) / processed"`.
    /// Sent to GetMetricData as an Expression query with its period. The
    /// supported subset: numbers, ids, `+ - * /`, parentheses, `SUM`, `AVG`,
    /// `MIN`, `MAX` of a list `[a, b]`, and `FILL(x, number)`.
    #[serde(default)]
    pub expression: Option<String>,
    /// Period in seconds: 10, 20, 30 or a multiple of 60.
    #[serde(default = "default_period_secs")]
    pub period_secs: u32,
    /// A promise that a period's datapoint is never published sooner than
    /// this many seconds after the period ends (1..=3600; none by
    /// default). With lazy polling, the alarm-driven skip rule then counts
    /// the newest periods no evaluation can see as missing rather than
    /// unknown. Checked on every fetch: a datapoint seen sooner breaks it,
    /// and the application stops relying on it (a `publication_delay`
    /// failure).
    #[serde(default)]
    pub min_publication_delay_secs: Option<u32>,
}

/// A metric's [`MetricConfig::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricSourceKind {
    /// CloudWatch GetMetricData.
    #[default]
    Cloudwatch,
    /// The Flink job's vertex metrics over the REST API.
    Flink,
}

/// A CloudWatch comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Comparison {
    /// value >= threshold.
    GreaterThanOrEqualToThreshold,
    /// value > threshold.
    GreaterThanThreshold,
    /// value < threshold.
    LessThanThreshold,
    /// value <= threshold.
    LessThanOrEqualToThreshold,
}

impl Comparison {
    /// Whether `value` breaches `threshold` under this operator.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::GreaterThanOrEqualToThreshold => value >= threshold,
            Self::GreaterThanThreshold => value > threshold,
            Self::LessThanThreshold => value < threshold,
            Self::LessThanOrEqualToThreshold => value <= threshold,
        }
    }
}

/// CloudWatch's TreatMissingData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    /// Missing points are neither breaching nor not (the default).
    #[default]
    Missing,
    /// Missing points breach.
    Breaching,
    /// Missing points do not breach.
    NotBreaching,
    /// Missing points keep the alarm's current state.
    Ignore,
}

/// Where an alarm's state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmSource {
    /// Evaluated by flinkscale on the fetched metric (the default).
    #[default]
    Local,
    /// The state of an existing CloudWatch alarm (`alarm_name`), read with
    /// DescribeAlarms at every evaluation.
    Cloudwatch,
}

/// `[[application.alarm]]`: an M-of-N alarm on one metric, evaluated locally
/// with CloudWatch's semantics, or (`source = "cloudwatch"`) an existing
/// CloudWatch alarm whose state flinkscale reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// Id that policies use to name this alarm; unique within the application.
    pub id: String,
    /// `"local"` (the default): flinkscale evaluates the alarm on `metric`
    /// with the fields below. `"cloudwatch"`: the alarm is the CloudWatch
    /// alarm `alarm_name`, evaluated by CloudWatch, its state read with
    /// DescribeAlarms at every evaluation (one call for all of the
    /// application's such alarms); `metric`, `comparison`, `threshold`,
    /// `evaluation_periods`, `datapoints_to_alarm` and `treat_missing_data`
    /// are then CloudWatch's and not allowed here.
    #[serde(default)]
    pub source: AlarmSource,
    /// With `source = "cloudwatch"` (and only then): the CloudWatch alarm's
    /// name, e.g. `"ScaleOutAlarm-clickstream"`.
    #[serde(default)]
    pub alarm_name: Option<String>,
    /// The `id` of the metric it watches, or the name of a signal of one of
    /// the application's interpreters (e.g. `seconds_behind`): a signal is
    /// judged on its value at each evaluation, one datapoint per evaluation
    /// interval, with the same M of N and missing-data rules. Required for
    /// a local alarm.
    #[serde(default)]
    pub metric: Option<String>,
    /// Comparison operator (CloudWatch's ComparisonOperator). Required for
    /// a local alarm.
    #[serde(default)]
    pub comparison: Option<Comparison>,
    /// Threshold (reference design: 80 for scale-out, 20 for scale-in).
    /// Required for a local alarm.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// N: how many periods are evaluated (reference design: 5). Required
    /// for a local alarm.
    #[serde(default)]
    pub evaluation_periods: Option<u32>,
    /// M: how many of the N must breach; defaults to `evaluation_periods`.
    #[serde(default)]
    pub datapoints_to_alarm: Option<u32>,
    /// How missing datapoints count (default `"missing"`).
    #[serde(default)]
    pub treat_missing_data: Option<TreatMissingData>,
}

impl AlarmConfig {
    /// The name of the CloudWatch alarm `flinkscale alarms sync` mirrors
    /// this local alarm of `application` to.
    pub fn mirror_name(&self, application: &str) -> String {
        format!("flinkscale-{application}-{}", self.id)
    }

    /// N; 0 for a CloudWatch alarm (whose N is CloudWatch's).
    pub fn evaluation_periods(&self) -> u32 {
        self.evaluation_periods.unwrap_or(0)
    }

    /// M, with its default applied.
    pub fn datapoints_to_alarm(&self) -> u32 {
        self.datapoints_to_alarm
            .unwrap_or_else(|| self.evaluation_periods())
    }

    /// How missing datapoints count, with its default applied.
    pub fn treat_missing_data(&self) -> TreatMissingData {
        self.treat_missing_data.unwrap_or_default()
    }

    /// The CloudWatch alarm's name when the alarm's state comes from
    /// CloudWatch.
    pub fn cloudwatch_name(&self) -> Option<&str> {
        match self.source {
            AlarmSource::Cloudwatch => self.alarm_name.as_deref(),
            AlarmSource::Local => None,
        }
    }
}

/// `[application.policy]` or `[[application.interpreter]]`: a plugin and its
/// parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A plugin name (found as `<plugin_dir>/<name>.wasm`) or a path to a
    /// `.wasm` component (relative to the configuration file's folder).
    pub plugin: String,
    /// Parameters, passed to the plugin as a JSON object. The alarm and
    /// metric ids they name must exist in the application: which keys name
    /// them, a plugin declares (contract 0.2.0); for one that declares
    /// nothing, by convention a key ending in `_alarm` names an alarm id
    /// and one ending in `_metric` a metric id (`_alarms` / `_metrics`: an
    /// array of them). Checked once the plugin is loaded
    /// ([`crate::plugin::params::reference_problems`]).
    #[serde(default)]
    pub params: toml::Table,
    /// Days of 1-minute history of the application's metrics the host
    /// reads once, at the policy instance's first evaluation, and hands
    /// to it with that evaluation's metrics (0 to
    /// [`MAX_HISTORY_DAYS`], default 0: none). Only `[application.policy]`
    /// takes it.
    #[serde(default)]
    pub history_days: u32,
}

/// The most days of history a policy can ask for: CloudWatch keeps
/// 1-minute datapoints for 15 days.
pub const MAX_HISTORY_DAYS: u32 = 15;

fn default_plugin_dir() -> PathBuf {
    PathBuf::from("plugins")
}
/// `$STATE_DIRECTORY` when the service manager provides one (systemd's
/// `StateDirectory=`, the container image's `ENV`), else `state` beside the
/// configuration. systemd lists several directories separated by `:`; the
/// first is the agent's.
fn default_state_dir() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(dirs) if !dirs.is_empty() => {
            let dirs = dirs.to_string_lossy().into_owned();
            PathBuf::from(dirs.split(':').next().unwrap_or(&dirs))
        }
        _ => PathBuf::from("state"),
    }
}
fn default_lazy_polling() -> bool {
    true
}
fn default_plugin_timeout_ms() -> u64 {
    100
}
fn default_plugin_memory_limit_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_plugin_compile_timeout_secs() -> u64 {
    crate::plugin::SandboxLimits::default()
        .compile_timeout
        .as_secs()
}
fn default_plugin_quarantine_after_failures() -> u32 {
    3
}
fn default_plugin_quarantine_secs() -> u32 {
    300
}

/// `[agent] listen`: an `IP:PORT`, with an error that says so (serde's own
/// is "invalid socket address syntax", whatever was wrong).
fn listen_address<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP:PORT address (valid: an IP address and a port, \
             e.g. \"127.0.0.1:9464\", \"0.0.0.0:9464\" or \"[::1]:9464\"; a host name is not resolved)"
        ))
    })
}
fn default_min_kpu() -> u32 {
    1
}
fn default_max_kpu() -> u32 {
    10
}
fn default_update_poll_secs() -> u32 {
    60
}
fn default_update_timeout_secs() -> u32 {
    1800
}
fn default_grace_period_secs() -> u32 {
    300
}
fn default_period_secs() -> u32 {
    60
}
