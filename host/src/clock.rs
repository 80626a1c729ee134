//! The agent's notion of "now" in wall-clock milliseconds.
//!
//! Everything that waits does so on tokio time, so that the simulator can run
//! the production controller on a paused clock. Wall-clock timestamps (for
//! metric windows and plugin evaluations) are derived from the same tokio
//! clock: a [`Clock`] pins one epoch timestamp to one tokio instant and
//! advances with tokio time from there.

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Maps tokio time to milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_ms: i64,
    origin: Instant,
}

impl Clock {
    /// A clock that starts at the system's current time.
    pub fn system() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self::starting_at(ms)
    }

    /// A clock that reads `origin_ms` now and advances with tokio time (used
    /// by tests and the simulator, whose runs start at a fixed epoch time).
    pub fn starting_at(origin_ms: i64) -> Self {
        Self {
            origin_ms,
            origin: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.origin_ms + self.origin.elapsed().as_millis() as i64
    }
}
