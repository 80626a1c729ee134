//! Record: logging set-up and the events a controller emits.
//!
//! Every step that matters is an [`Event`]. A controller logs each event as
//! one structured line and, when somebody listens (the `once` command, the
//! demo, tests), also sends it down a channel, so that the printed summary
//! and the log can never disagree.

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use crate::model::{AlarmStatus, Decision};
use crate::target::AppStatus;

/// Something a controller did or saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// One evaluation finished with a (validated) decision.
    Evaluated {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// The application's KPU at evaluation time.
        kpu: u32,
        /// The latest value of each configured metric, if any, by metric id.
        latest: Vec<(String, Option<f64>)>,
        /// Alarm states.
        alarms: Vec<AlarmStatus>,
        /// The decision after host validation.
        decision: Decision,
        /// Whether the action was skipped because of `--dry-run`.
        dry_run: bool,
    },
    /// UpdateApplication was accepted.
    RescaleStarted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// KPU before.
        from_kpu: u32,
        /// KPU requested.
        to_kpu: u32,
        /// The version id quoted in the request.
        version_id: u64,
    },
    /// The application is RUNNING again after a rescale.
    RescaleCompleted {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// KPU now.
        kpu: u32,
        /// How long it was not RUNNING, in seconds.
        update_secs: u32,
    },
    /// A failure, classified.
    Failed {
        /// Application name.
        application: String,
        /// When (ms since the epoch).
        at_ms: i64,
        /// Failure class (e.g. `metrics`, `plugin`, `throttled`, `update_timeout`).
        class: String,
        /// What happened.
        message: String,
    },
}

/// Where a controller's events go: the log always, a channel when given.
#[derive(Debug, Clone, Default)]
pub struct Events {
    tx: Option<UnboundedSender<Event>>,
    quiet: bool,
}

impl Events {
    /// Events that are only logged.
    pub fn log_only() -> Self {
        Self {
            tx: None,
            quiet: false,
        }
    }

    /// Events that are logged and also sent to `tx`.
    pub fn with_channel(tx: UnboundedSender<Event>) -> Self {
        Self {
            tx: Some(tx),
            quiet: false,
        }
    }

    /// Events that are only sent to `tx`, not logged (the simulator records
    /// thousands of them per run and reports them itself).
    pub fn quiet_with_channel(tx: UnboundedSender<Event>) -> Self {
        Self {
            tx: Some(tx),
            quiet: true,
        }
    }

    /// Logs `event` and forwards it to the listener, if any.
    pub fn emit(&self, event: Event) {
        if !self.quiet {
            log_event(&event);
        }
        if let Some(tx) = &self.tx {
            // A listener that went away is not the controller's problem.
            let _ = tx.send(event);
        }
    }
}

/// Writes `event` as one structured log line.
fn log_event(event: &Event) {
    {
        match event {
            Event::Evaluated {
                application,
                kpu,
                decision,
                dry_run,
                ..
            } => info!(
                message = "Evaluated.",
                application = %application,
                kpu,
                action = ?decision.action,
                reason = %decision.reason,
                dry_run,
            ),
            Event::RescaleStarted {
                application,
                from_kpu,
                to_kpu,
                version_id,
                ..
            } => info!(
                message = "Rescale started.",
                application = %application,
                from_kpu,
                to_kpu,
                version_id,
            ),
            Event::RescaleCompleted {
                application,
                kpu,
                update_secs,
                ..
            } => info!(
                message = "Rescale completed.",
                application = %application,
                kpu,
                update_secs,
            ),
            Event::Failed {
                application,
                class,
                message,
                ..
            } => {
                if class == "plugin" || class == "update_timeout" || class == "rejected" {
                    error!(message = "Step failed.", application = %application, class = %class, error = %message)
                } else {
                    warn!(message = "Step failed.", application = %application, class = %class, error = %message)
                }
            }
        }
    }
}

/// Warns that an application has MSF's own autoscaling enabled, which fights
/// any external scaler (the reference design says to disable it).
pub fn warn_autoscaling_enabled(application: &str, status: AppStatus) {
    warn!(
        message = "MSF autoscaling is enabled; it will fight flinkscale. Disable it (the agent's updates set AutoScalingEnabled = false).",
        application = %application,
        status = %status,
    );
}

/// Output format of the agent's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber, writing to stderr. The level comes
/// from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
