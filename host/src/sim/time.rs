//! The world's one time map: where model time stands against wall-clock
//! time, and which model seconds (steps) a span of model time holds.
//!
//! The simulator runs the model at speed 1 from a fixed origin, the
//! emulator at any speed from when it started (`flinkscale emulate
//! --speed`); both ask this map, so a period means the same model seconds
//! in both.

use serde::Serialize;

/// Maps wall-clock time to model time and back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimeMap {
    /// The wall-clock (and model) time of the model's t = 0, ms since the
    /// Unix epoch, a whole second.
    pub origin_ms: i64,
    /// Model seconds per wall second.
    pub speed: f64,
}

impl TimeMap {
    /// Model time runs as wall time from `origin_ms` (rounded down to a
    /// whole second).
    pub fn real_time(origin_ms: i64) -> Self {
        Self {
            origin_ms: origin_ms.div_euclid(1000) * 1000,
            speed: 1.0,
        }
    }

    /// The model time of wall time `wall_ms`.
    pub fn to_model_ms(&self, wall_ms: i64) -> i64 {
        if self.speed == 1.0 {
            return wall_ms;
        }
        // Saturating: a timestamp a request gives may lie anywhere.
        self.origin_ms.saturating_add(
            (wall_ms.saturating_sub(self.origin_ms) as f64 * self.speed).floor() as i64,
        )
    }

    /// The wall time of model time `model_ms`.
    pub fn to_wall_ms(&self, model_ms: i64) -> i64 {
        if self.speed == 1.0 {
            return model_ms;
        }
        self.origin_ms.saturating_add(
            (model_ms.saturating_sub(self.origin_ms) as f64 / self.speed).round() as i64,
        )
    }

    /// The model second the world must have reached at wall time `wall_ms`
    /// (steps before it are done).
    pub fn model_secs(&self, wall_ms: i64) -> u64 {
        u64::try_from((self.to_model_ms(wall_ms) - self.origin_ms).div_euclid(1000)).unwrap_or(0)
    }

    /// The model time at which step `t_secs` starts.
    pub fn step_start_ms(&self, t_secs: u64) -> i64 {
        self.origin_ms + t_secs as i64 * 1000
    }

    /// The steps that start in the model time span `model_ms` (a step
    /// belongs to the period in which it starts), possibly negative or
    /// beyond the steps taken: callers clip to the history.
    pub fn steps(&self, model_ms: std::ops::Range<i64>) -> std::ops::Range<i64> {
        let first_from = |ms: i64| -(-(ms - self.origin_ms)).div_euclid(1000);
        first_from(model_ms.start)..first_from(model_ms.end)
    }
}
