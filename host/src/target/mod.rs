//! Act and follow: the thing being scaled.
//!
//! A [`ScalingTarget`] reports an application's status and capacity and
//! applies a new capacity. Implementations: Managed Service for Apache Flink
//! ([`msf`]), a job on a self-managed Flink cluster over its REST API
//! ([`flink`], `target = "flink"`), and the simulator's model. What the
//! agent's output calls capacity, the calls and the ceiling for each is
//! [`words`].

pub mod flink;
pub mod msf;
pub mod words;

pub use words::Words;

use async_trait::async_trait;

/// Lifecycle status of an application (MSF's `ApplicationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppStatus {
    /// Created or stopped.
    Ready,
    /// Starting.
    Starting,
    /// Running: the only status in which the agent rescales.
    Running,
    /// An update is being applied.
    Updating,
    /// MSF's own autoscaling is acting.
    Autoscaling,
    /// Stopping.
    Stopping,
    /// Force-stopping.
    ForceStopping,
    /// Rolling back a failed update.
    RollingBack,
    /// A failed update was rolled back.
    RolledBack,
    /// Under maintenance.
    Maintenance,
    /// Being deleted.
    Deleting,
    /// Anything else.
    Unknown,
}

impl AppStatus {
    /// Parses MSF's spelling (`RUNNING`, `ROLLED_BACK`, ...).
    pub fn from_msf(s: &str) -> Self {
        match s {
            "READY" => Self::Ready,
            "STARTING" => Self::Starting,
            "RUNNING" => Self::Running,
            "UPDATING" => Self::Updating,
            "AUTOSCALING" => Self::Autoscaling,
            "STOPPING" => Self::Stopping,
            "FORCE_STOPPING" => Self::ForceStopping,
            "ROLLING_BACK" => Self::RollingBack,
            "ROLLED_BACK" => Self::RolledBack,
            "MAINTENANCE" => Self::Maintenance,
            "DELETING" => Self::Deleting,
            _ => Self::Unknown,
        }
    }

    /// Whether the status is one an update passes through on its way back to
    /// RUNNING (the controller keeps polling while it is).
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            Self::Updating
                | Self::Autoscaling
                | Self::Starting
                | Self::RollingBack
                | Self::Maintenance
        )
    }
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("UNKNOWN"))
    }
}

/// What DescribeApplication says about capacity and status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppState {
    /// Status.
    pub status: AppStatus,
    /// Current parallelism.
    pub parallelism: u32,
    /// Parallelism per KPU (1..=8).
    pub parallelism_per_kpu: u32,
    /// The version id that UpdateApplication must quote.
    pub version_id: u64,
    /// Whether MSF's own autoscaling is enabled.
    pub autoscaling_enabled: bool,
    /// When the application's last update was requested (ms since the
    /// epoch): MSF's `LastUpdateTimestamp`, a Flink job's graph creation
    /// time (`timestamps.CREATED`). `None` when the target does not say
    /// (or never updated it): an agent starting without a journal then
    /// cannot tell a restart that just ended, and decides at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_ms: Option<i64>,
    /// Which application this is under its name: a value that changes
    /// when the application is replaced and never otherwise, so that a
    /// replacement is not taken for an update of the old one. A Flink
    /// job's id (a job cancelled and submitted again, or resubmitted by a
    /// JobManager restarted without high availability, has a new one);
    /// MSF's `CreateTimestamp` (an application deleted and created again
    /// under its name keeps its ARN, and its version id starts again at
    /// 1, so neither says it). `None` when the target does not say:
    /// nothing is compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The capacity the application was last asked to run at (KPU), where
    /// the target keeps it apart from what runs and says it at once: the
    /// upper bound of a Flink job's resource requirements (MSF: not said).
    /// An update whose answer was lost took
    /// effect only if this is what it asked for: a version id that moved
    /// while this asks for something else moved for another reason (the
    /// job restarted, another writer). `None` when the target does not
    /// say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked_kpu: Option<u32>,
    /// The version id the application's latest rollback reverted from:
    /// MSF's `ApplicationVersionRolledBackFrom`, set when MSF's system
    /// rollback (or a `RollbackApplication`) undid the update that made
    /// that version. An update the agent made whose version this is did
    /// not take, whatever the version id did next. `None` when the target
    /// does not say (a Flink job) or there was no rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u64>,
}

impl AppState {
    /// KPU = ceil(parallelism / parallelism_per_kpu).
    pub fn kpu(&self) -> u32 {
        self.parallelism.div_ceil(self.parallelism_per_kpu.max(1))
    }
}

/// How a call to the target failed, classified by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Throttled: retry later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The version id was stale: re-read and re-decide.
    #[error("concurrent modification: {0}")]
    ConcurrentModification(String),
    /// The application is busy (not RUNNING): wait and re-check.
    #[error("resource in use: {0}")]
    ResourceInUse(String),
    /// The application's KPU quota was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A Flink cluster has too few task slots for the parallelism asked
    /// for, or the job's max parallelism is below it; `usable` is the most
    /// the job can have (the cluster's slots less what its other running
    /// jobs use, and no more than its max parallelism), so the ceiling is
    /// known exactly rather than found one refusal at a time.
    #[error("limit exceeded: {message}")]
    SlotsExceeded {
        /// The parallelism (KPU) the job can be given.
        usable: u32,
        /// The slot numbers or the max parallelism, for the log.
        message: String,
    },
    /// The request was invalid: do not retry.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No such application.
    #[error("not found: {0}")]
    NotFound(String),
    /// The agent's identity or permissions were refused (AccessDenied,
    /// UnrecognizedClient, ExpiredToken), or no credentials could be loaded.
    #[error("permission denied: {0}")]
    Permission(String),
    /// The request could not be built, so it never left the agent (a KPU
    /// count out of the API's range): certainly not applied.
    #[error("request not sent: {0}")]
    Request(String),
    /// Network failures, timeouts, 5xx: retry later.
    #[error("transient failure: {0}")]
    Transient(String),
}

/// The thing being scaled.
#[async_trait]
pub trait ScalingTarget: Send + Sync {
    /// Reads the application's status, capacity and version id.
    async fn describe(&self, application: &str) -> Result<AppState, TargetError>;

    /// Sets the application's capacity to `kpu` (parallelism = kpu x
    /// parallelism per KPU, which is left unchanged), quoting the version id
    /// of `current`. Returns the new version id.
    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError>;
}
