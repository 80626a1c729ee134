//! The rescales this policy decided and how long each one's restart took,
//! for `job.autoscaler.restart.time-tracking.enabled`: upstream's
//! `ScalingTracking` (`ScalingTracking.java`, trimmed by
//! `ScalingHistoryUtils.getTrimmedScalingTracking` and filled in by
//! `JobAutoScalerImpl.runScalingLogic`), free of I/O and of a clock: every
//! method is given the time.
//!
//! MSF's counterparts: a rescale's target is the parallelism the host sets
//! for the KPU asked (KPU x ParallelismPerKPU, what upstream's parallelism
//! override is), and the job's return to RUNNING is the host's
//! `last-rescale-ms`: when the update it made for the rescale completed
//! (or, when later, the service's last update: another writer's request).

use std::collections::BTreeMap;

/// One rescale (`ScalingRecord`), keyed by when it was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Record {
    /// The parallelism the rescale sets: its scaling summary's
    /// `newParallelism`.
    pub(crate) parallelism: u32,
    /// Whole seconds from the decision until the job ran again
    /// (`restartDuration`, read with `Duration.toSeconds`); none until
    /// then.
    pub(crate) restart_secs: Option<i64>,
}

/// The rescales kept, oldest first (`ScalingTracking.scalingRecords`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tracking {
    pub(crate) records: BTreeMap<i64, Record>,
}

impl Tracking {
    /// `addScalingRecord`: a rescale decided at `at_ms` for `parallelism`.
    pub(crate) fn add(&mut self, at_ms: i64, parallelism: u32) {
        self.records.insert(
            at_ms,
            Record {
                parallelism,
                restart_secs: None,
            },
        );
    }

    /// `removeOldRecords(now, history.max.age, history.max.count)`: forgets
    /// the records decided before `now - max_age`, then the oldest beyond
    /// `max_count`, but always keeps the latest.
    pub(crate) fn remove_old(&mut self, now_ms: i64, max_age_ms: i64, max_count: usize) {
        let latest = self.records.last_key_value().map(|(at, r)| (*at, *r));
        self.records = self.records.split_off(&now_ms.saturating_sub(max_age_ms));
        while self.records.len() > max_count {
            self.records.pop_first();
        }
        if let Some((at, record)) = latest {
            self.records.insert(at, record);
        }
    }

    /// `recordRestartDurationIfTrackedAndParallelismMatches`: the latest
    /// record without a restart time gets one when the job runs at its
    /// parallelism, measured to `running_since_ms`. The target is read from
    /// the scaling history, which forgets a rescale after `max_age_ms`
    /// (its count limit always keeps this, the latest one): a record older
    /// than that has no target left to compare, and upstream then takes
    /// the job as matching (`allMatch` of nothing). MSF only tells when the
    /// job last restarted for an update (`last-rescale-ms`): a record is
    /// only measured by one at or after its decision. Returns whether one
    /// was set.
    pub(crate) fn record_restart(
        &mut self,
        now_ms: i64,
        max_age_ms: i64,
        running_since_ms: Option<i64>,
        parallelism: u32,
    ) -> bool {
        let Some((&at_ms, record)) = self.records.iter_mut().next_back() else {
            return false;
        };
        if record.restart_secs.is_some() {
            return false;
        }
        let target_known = at_ms >= now_ms.saturating_sub(max_age_ms);
        if target_known && record.parallelism != parallelism {
            return false;
        }
        let Some(running_since_ms) = running_since_ms.filter(|t| *t >= at_ms) else {
            return false;
        };
        record.restart_secs = Some((running_since_ms - at_ms).div_euclid(1000));
        true
    }

    /// `getMaxRestartTimeOrDefault`: with tracking on, the longest restart
    /// measured over the records kept, capped by `limit_secs` (in whole
    /// seconds, as `Duration.toSeconds` reads it); `default_secs`
    /// (`restart.time`) with tracking off or nothing measured.
    pub(crate) fn max_restart_secs_or(
        &self,
        enabled: bool,
        default_secs: f64,
        limit_secs: f64,
    ) -> f64 {
        let longest = if enabled {
            self.records
                .values()
                .filter_map(|r| r.restart_secs)
                .fold(-1, i64::max)
        } else {
            -1
        };
        if longest == -1 {
            default_secs
        } else {
            (longest as f64).min(limit_secs.trunc())
        }
    }
}
