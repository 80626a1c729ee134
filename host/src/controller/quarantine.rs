//! When a plugin is called: the quarantine of a plugin that keeps failing,
//! as pure logic over wall-clock milliseconds.
//!
//! A plugin failing `after_failures` calls in a row is quarantined for
//! `base`; when that ends it gets one call: a success lifts the quarantine,
//! a failure quarantines it again for twice as long (up to `longest`). A
//! new file ends a quarantine at once and starts the doubling afresh, and
//! the count of failures in a row too: it is new code. The gate is told of
//! new code wherever the controller finds it, at a call or at an
//! evaluation that holds before the call (an interpreter's quarantine), so
//! that a fixed file does not wait for another plugin to recover.

use std::time::Duration;

/// The quarantine rule of one agent (`[agent] plugin_quarantine_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Failures in a row that quarantine a plugin (1 or more).
    pub after_failures: u32,
    /// The first quarantine.
    pub base: Duration,
    /// The longest quarantine.
    pub longest: Duration,
}

impl QuarantinePolicy {
    /// The agent's defaults: after 3 failures, 5 minutes, doubling up to an
    /// hour.
    pub const DEFAULT: Self = Self {
        after_failures: 3,
        base: Duration::from_secs(300),
        longest: Duration::from_secs(3600),
    };

    /// From the configuration's values; the longest quarantine is an hour
    /// (or `base_secs`, if longer).
    pub fn from_config(after_failures: u32, base_secs: u32) -> Self {
        let base = Duration::from_secs(u64::from(base_secs.max(1)));
        Self {
            after_failures: after_failures.max(1),
            base,
            longest: base.max(Self::DEFAULT.longest),
        }
    }

    /// The `level`-th quarantine in a row (0 for the first).
    fn duration(&self, level: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << level.min(16))
            .min(self.longest)
    }
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a quarantined plugin is called again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Its quarantine ended.
    BackoffElapsed,
    /// Its file changed.
    FileChanged,
}

impl RetryReason {
    /// For events and logs.
    pub fn describe(self) -> &'static str {
        match self {
            RetryReason::BackoffElapsed => "its quarantine ended",
            RetryReason::FileChanged => "its file changed",
        }
    }
}

/// Whether to call a plugin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Call it.
    Call,
    /// Call it, ending its quarantine.
    Retry(RetryReason),
    /// Do not call it: quarantined until then (ms since the epoch).
    Skip {
        /// End of the quarantine.
        until_ms: i64,
    },
}

/// What a failure came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Counted; the plugin is still called.
    Counted {
        /// Failures in a row.
        failures: u32,
    },
    /// The plugin is quarantined until then (ms since the epoch).
    Quarantined {
        /// Failures in a row.
        failures: u32,
        /// End of the quarantine.
        until_ms: i64,
    },
}

/// One plugin's health, as its controller sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginHealth {
    failures_in_row: u32,
    until_ms: Option<i64>,
    /// The length of the quarantine `until_ms` ends (ms): it never ends
    /// later than that from now, whatever the wall clock did.
    length_ms: i64,
    /// Quarantines in a row without a success in between.
    level: u32,
    /// The current call ends a quarantine: its failure re-quarantines at
    /// once.
    retrying: bool,
    /// A quarantine ended because the plugin's file brought new code: its
    /// first success is a recovery, but its failures are its own, counted
    /// from zero toward a quarantine as any plugin's.
    renewed: bool,
}

impl PluginHealth {
    /// Whether to call the plugin at `now_ms`; `file_changed` says whether
    /// its file brought new code. New code starts counting its failures
    /// afresh: the failures of the file it replaced are not its own.
    pub fn gate(&mut self, now_ms: i64, file_changed: impl FnOnce() -> bool) -> Gate {
        let Some(until_ms) = self.until_ms else {
            if self.failures_in_row > 0 && file_changed() {
                self.failures_in_row = 0;
                self.level = 0;
            }
            return Gate::Call;
        };
        if file_changed() {
            // New code: the quarantine ends, and the failures of the file
            // it replaced are not its own.
            *self = Self {
                renewed: true,
                ..Self::default()
            };
            return Gate::Retry(RetryReason::FileChanged);
        }
        // A wall clock stepped back would stretch the quarantine by the
        // step: it ends no later than its length from now.
        let until_ms = until_ms.min(now_ms.saturating_add(self.length_ms));
        let reason = if now_ms >= until_ms {
            RetryReason::BackoffElapsed
        } else {
            self.until_ms = Some(until_ms);
            return Gate::Skip { until_ms };
        };
        self.until_ms = None;
        self.retrying = true;
        Gate::Retry(reason)
    }

    /// The health of a new instance put in place of a quarantined one: it
    /// is called at once, its first success is a recovery, and its
    /// failures count from zero (as after a replaced file).
    pub fn renewed() -> Self {
        Self {
            renewed: true,
            ..Self::default()
        }
    }

    /// Records a successful call; true if it ends a quarantine.
    pub fn succeeded(&mut self) -> bool {
        let recovered = self.retrying || self.renewed;
        *self = Self::default();
        recovered
    }

    /// Records a failed call at `now_ms`.
    pub fn failed(&mut self, now_ms: i64, policy: &QuarantinePolicy) -> AfterFailure {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let failures = self.failures_in_row;
        if !self.retrying && failures < policy.after_failures {
            return AfterFailure::Counted { failures };
        }
        let duration = policy.duration(self.level);
        self.level = self.level.saturating_add(1);
        self.retrying = false;
        self.renewed = false;
        self.length_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let until_ms = now_ms.saturating_add(self.length_ms);
        self.until_ms = Some(until_ms);
        AfterFailure::Quarantined { failures, until_ms }
    }

    /// Whether the plugin is quarantined now.
    pub fn is_quarantined(&self) -> bool {
        self.until_ms.is_some()
    }

    /// Whether the plugin is quarantined, or is being retried out of a
    /// quarantine (its back-off ended, its file changed, or it is a new
    /// instance put in place of a quarantined one) and has not answered
    /// yet: what a stopped controller hands over, so that the quarantine
    /// the metrics and `status` still show ends with the next answer.
    pub fn awaiting_recovery(&self) -> bool {
        self.until_ms.is_some() || self.retrying || self.renewed
    }
}
