//! Conveniences on the contract's records: look-ups by id on an
//! [`Evaluation`], constructors for [`Decision`], and the display names that
//! reasons and logs use.

use std::fmt;

use crate::{
    Action, Alarm, AlarmState, AppStatus, Datapoint, Decision, Evaluation, Series, Signal,
};

impl Evaluation {
    /// The alarm with this id (`[[application.alarm]] id`), if configured.
    pub fn alarm(&self, id: &str) -> Option<&Alarm> {
        self.alarms.iter().find(|alarm| alarm.name == id)
    }

    /// The alarm with this id, or an error naming it and the alarms that do
    /// exist, ready to return from [`Policy::decide`](crate::Policy::decide).
    pub fn require_alarm(&self, id: &str) -> Result<&Alarm, String> {
        self.alarm(id).ok_or_else(|| {
            format!(
                "no alarm `{id}` is configured for application `{}` (configured: {})",
                self.app.name,
                list_or_none(self.alarms.iter().map(|alarm| alarm.name.as_str())),
            )
        })
    }

    /// The state of the alarm with this id, if configured.
    pub fn alarm_state(&self, id: &str) -> Option<AlarmState> {
        self.alarm(id).map(|alarm| alarm.state)
    }

    /// Whether the alarm with this id is configured and in ALARM.
    pub fn in_alarm(&self, id: &str) -> bool {
        self.alarm_state(id) == Some(AlarmState::Alarm)
    }

    /// The series of the metric with this id (`[[application.metric]] id`),
    /// if configured.
    pub fn metric(&self, id: &str) -> Option<&Series> {
        self.metrics.iter().find(|series| series.id == id)
    }

    /// The value of the interpreter signal with this name, if any
    /// interpreter produced it.
    pub fn signal(&self, name: &str) -> Option<f64> {
        self.signals
            .iter()
            .find(|signal| signal.name == name)
            .map(|signal| signal.value)
    }
}

impl Series {
    /// The most recent datapoint, if the window has any.
    pub fn latest(&self) -> Option<&Datapoint> {
        self.points.last()
    }

    /// The values of the datapoints, oldest first.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = f64> + '_ {
        self.points.iter().map(|point| point.value)
    }
}

impl Signal {
    /// A signal with this name and value.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Signal {
            name: name.into(),
            value,
        }
    }
}

impl Decision {
    /// Keep the current capacity, for this reason. The reason must not be
    /// empty: the host refuses a decision without one as a failed call
    /// (it counts toward quarantine, as an error does).
    pub fn hold(reason: impl Into<String>) -> Self {
        Decision {
            action: Action::Hold,
            reason: reason.into(),
            next_evaluation_secs: None,
        }
    }

    /// Set the capacity to `kpu` KPU, for this reason. The host clamps
    /// `kpu` to the application's [`min_kpu`, `max_kpu`]; 0, like an empty
    /// reason, is refused as a failed call (it counts toward quarantine,
    /// as an error does), so a policy that halves must ask for at least 1.
    pub fn scale_to(kpu: u32, reason: impl Into<String>) -> Self {
        Decision {
            action: Action::ScaleTo(kpu),
            reason: reason.into(),
            next_evaluation_secs: None,
        }
    }

    /// Asks to be evaluated again in `secs` seconds instead of at the
    /// application's regular interval: a way to skip polls, never to be
    /// asked sooner. The host honours it only after a hold, with lazy
    /// polling on (the default), rounded down to whole evaluation intervals
    /// and kept within 1 to 15 of them (never past the end of a KPU limit);
    /// otherwise it evaluates every interval.
    #[must_use]
    pub fn next_evaluation_in(mut self, secs: u32) -> Self {
        self.next_evaluation_secs = Some(secs);
        self
    }
}

impl Action {
    /// The target KPU of a [`Action::ScaleTo`]; `None` for [`Action::Hold`].
    pub fn target(&self) -> Option<u32> {
        match self {
            Action::Hold => None,
            Action::ScaleTo(kpu) => Some(*kpu),
        }
    }
}

impl AlarmState {
    /// The state as CloudWatch spells it: `OK`, `ALARM` or
    /// `INSUFFICIENT_DATA`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AppStatus {
    /// The status as the service spells it, e.g. `RUNNING`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AppStatus::Ready => "READY",
            AppStatus::Starting => "STARTING",
            AppStatus::Running => "RUNNING",
            AppStatus::Updating => "UPDATING",
            AppStatus::Autoscaling => "AUTOSCALING",
            AppStatus::Stopping => "STOPPING",
            AppStatus::ForceStopping => "FORCE_STOPPING",
            AppStatus::RollingBack => "ROLLING_BACK",
            AppStatus::RolledBack => "ROLLED_BACK",
            AppStatus::Maintenance => "MAINTENANCE",
            AppStatus::Deleting => "DELETING",
            AppStatus::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a, b, c`, or `none` for an empty list.
pub(crate) fn list_or_none<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
