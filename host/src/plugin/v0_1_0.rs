//! Bindings and conversions for contract version 0.1.0 (`wit/v0.1.0`).
//!
//! One module per released contract version, as Zed's extension host does:
//! the generated types never leave this module, so a later version adds a
//! sibling module and the rest of the host keeps speaking [`crate::model`].

use crate::metrics::Series;
use crate::model;
use crate::target::AppStatus;

/// The generated bindings of world `scaling-policy`.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "scaling-policy",
    });
}

/// The generated bindings of world `metric-interpreter`; its shared
/// interfaces are those of [`policy`], so one conversion serves both worlds.
pub mod interpreter {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "metric-interpreter",
        with: {
            "flinkscale:plugin/types": super::policy::flinkscale::plugin::types,
            "flinkscale:plugin/host": super::policy::flinkscale::plugin::host,
        },
    });
}

pub use policy::flinkscale::plugin::host::{Host, Level};
pub use policy::flinkscale::plugin::types as wit;

/// The contract version these bindings implement.
pub const VERSION: &str = "0.1.0";
/// The export naming a scaling policy of this version.
pub const POLICY_EXPORT: &str = "flinkscale:plugin/policy@0.1.0";
/// The export naming a metric interpreter of this version.
pub const INTERPRETER_EXPORT: &str = "flinkscale:plugin/interpreter@0.1.0";

/// Converts the host's evaluation to the guest's.
pub fn evaluation(e: &model::Evaluation) -> wit::Evaluation {
    wit::Evaluation {
        now_ms: e.now_ms,
        app: application(&e.app),
        metrics: e.metrics.iter().map(series).collect(),
        alarms: e.alarms.iter().map(alarm).collect(),
        signals: e
            .signals
            .iter()
            .map(|s| wit::Signal {
                name: s.name.clone(),
                value: s.value,
            })
            .collect(),
    }
}

/// Converts the host's application record to the guest's.
pub fn application(a: &model::Application) -> wit::Application {
    wit::Application {
        name: a.name.clone(),
        status: app_status(a.status),
        kpu: a.kpu,
        parallelism: a.parallelism,
        parallelism_per_kpu: a.parallelism_per_kpu,
        min_kpu: a.min_kpu,
        max_kpu: a.max_kpu,
        version_id: a.version_id,
        last_rescale_ms: a.last_rescale_ms,
        last_update_duration_secs: a.last_update_duration_secs,
    }
}

/// Converts one metric series to the guest's record, dropping NaN values
/// (the contract promises the guest a value is never NaN).
pub fn series(s: &Series) -> wit::Series {
    wit::Series {
        id: s.query.id.clone(),
        namespace: s.query.namespace.clone(),
        metric_name: s.query.metric_name.clone(),
        statistic: s.query.statistic.clone(),
        period_secs: s.query.period_secs,
        points: s
            .points
            .iter()
            .filter(|p| !p.value.is_nan())
            .map(|p| wit::Datapoint {
                timestamp_ms: p.timestamp_ms,
                value: p.value,
            })
            .collect(),
    }
}

fn alarm(a: &model::AlarmStatus) -> wit::Alarm {
    wit::Alarm {
        name: a.name.clone(),
        state: match a.state {
            model::AlarmState::Ok => wit::AlarmState::Ok,
            model::AlarmState::Alarm => wit::AlarmState::Alarm,
            model::AlarmState::InsufficientData => wit::AlarmState::InsufficientData,
        },
        since_ms: a.since_ms,
    }
}

fn app_status(s: AppStatus) -> wit::AppStatus {
    match s {
        AppStatus::Ready => wit::AppStatus::Ready,
        AppStatus::Starting => wit::AppStatus::Starting,
        AppStatus::Running => wit::AppStatus::Running,
        AppStatus::Updating => wit::AppStatus::Updating,
        AppStatus::Autoscaling => wit::AppStatus::Autoscaling,
        AppStatus::Stopping => wit::AppStatus::Stopping,
        AppStatus::ForceStopping => wit::AppStatus::ForceStopping,
        AppStatus::RollingBack => wit::AppStatus::RollingBack,
        AppStatus::RolledBack => wit::AppStatus::RolledBack,
        AppStatus::Maintenance => wit::AppStatus::Maintenance,
        AppStatus::Deleting => wit::AppStatus::Deleting,
        AppStatus::Unknown => wit::AppStatus::Unknown,
    }
}

/// Converts the guest's decision to the host's (unvalidated: see
/// [`super::validate`]).
pub fn decision(d: wit::Decision) -> model::Decision {
    model::Decision {
        action: match d.action {
            wit::Action::Hold => model::Action::Hold,
            wit::Action::ScaleTo(kpu) => model::Action::ScaleTo(kpu),
        },
        reason: d.reason,
        next_evaluation_secs: d.next_evaluation_secs,
    }
}

/// Converts the guest's signals, dropping NaN and infinities as the
/// contract says.
pub fn signals(s: Vec<wit::Signal>) -> Vec<model::Signal> {
    s.into_iter()
        .filter(|s| s.value.is_finite())
        .map(|s| model::Signal {
            name: s.name,
            value: s.value,
        })
        .collect()
}
