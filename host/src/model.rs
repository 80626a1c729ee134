//! The vocabulary shared by the stages of an evaluation: what a policy is
//! given ([`Evaluation`]) and what it answers ([`Decision`]).
//!
//! These are the host's own types. The plugin host converts them to and from
//! the bindings of whichever contract version a plugin was built against, so
//! the rest of the agent never sees generated code.

use crate::metrics::Series;
use crate::target::AppStatus;

/// State of an alarm, as CloudWatch names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    /// The threshold is not breached.
    Ok,
    /// The threshold is breached.
    Alarm,
    /// Not enough data to tell.
    InsufficientData,
}

impl std::fmt::Display for AlarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        })
    }
}

/// A configured alarm's current state and since when it holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlarmStatus {
    /// The alarm's configured id.
    pub name: String,
    /// Current state.
    pub state: AlarmState,
    /// Since when (milliseconds since the Unix epoch).
    pub since_ms: i64,
}

/// What the policy is told about the application.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Application {
    /// The application's name.
    pub name: String,
    /// Its status.
    pub status: AppStatus,
    /// Current KPU.
    pub kpu: u32,
    /// Current parallelism.
    pub parallelism: u32,
    /// Parallelism per KPU.
    pub parallelism_per_kpu: u32,
    /// Configured lower bound.
    pub min_kpu: u32,
    /// Configured upper bound.
    pub max_kpu: u32,
    /// The service's version id.
    pub version_id: u64,
    /// When the last rescale by this agent completed.
    pub last_rescale_ms: Option<i64>,
    /// How long the last rescale kept the application UPDATING.
    pub last_update_duration_secs: Option<u32>,
}

/// A named number derived by an interpreter plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Signal {
    /// Name.
    pub name: String,
    /// Value (always finite: the host drops the rest).
    pub value: f64,
}

/// Everything a policy decides on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// The application.
    pub app: Application,
    /// The configured metrics over the evaluation window.
    pub metrics: Vec<Series>,
    /// The configured alarms.
    pub alarms: Vec<AlarmStatus>,
    /// Signals from interpreters.
    pub signals: Vec<Signal>,
}

/// What to do with capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the current capacity.
    Hold,
    /// Set capacity to this many KPU.
    ScaleTo(u32),
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The action.
    pub action: Action,
    /// Why, for people.
    pub reason: String,
    /// When to ask again, if sooner or later than the regular interval.
    pub next_evaluation_secs: Option<u32>,
}

impl Decision {
    /// A `hold` with the given reason.
    pub fn hold(reason: impl Into<String>) -> Self {
        Self {
            action: Action::Hold,
            reason: reason.into(),
            next_evaluation_secs: None,
        }
    }
}
