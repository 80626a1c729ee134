//! The agent's notion of "now" in wall-clock milliseconds.
//!
//! Two kinds of time, kept apart on purpose. Everything that waits
//! (intervals, back-off, timeouts) does so on tokio's monotonic time, so
//! that a clock step cannot stretch or cut a wait, and so that the
//! simulator can run the production controller on a paused clock.
//! Timestamps that leave the process (CloudWatch windows, journal records,
//! events) are wall-clock time, and in production they are read from the
//! system clock every time: a step of the wall clock after boot (NTP, a VM
//! resumed from suspend) shows in the next timestamp instead of shifting
//! every metric window until a restart, as a clock pinned at start would.
//!
//! The simulator and tests use a clock that starts at a fixed epoch time
//! and advances with tokio time ([`Clock::starting_at`]), and tests of clock
//! steps inject their own wall source ([`Clock::with_wall`]).

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// A wall-clock source: milliseconds since the Unix epoch.
///
/// `'static` so that [`Clock`] stays `Copy` (every controller gets its own
/// copy); a test leaks its small closure to get one.
pub type WallSource = &'static (dyn Fn() -> i64 + Send + Sync);

/// Milliseconds since the Unix epoch, by the current time.
#[derive(Clone, Copy)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Copy)]
enum Source {
    /// The system's wall clock, read at every call.
    System,
    /// A fixed epoch time at one tokio instant, advancing with tokio time.
    Tokio { origin_ms: i64, origin: Instant },
    /// An injected wall clock.
    Wall(WallSource),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Source::System => f.write_str("Clock::System"),
            Source::Tokio { origin_ms, .. } => f
                .debug_struct("Clock::Tokio")
                .field("origin_ms", &origin_ms)
                .finish_non_exhaustive(),
            Source::Wall(_) => f.write_str("Clock::Wall"),
        }
    }
}

impl Clock {
    /// The system's wall clock, read afresh for every timestamp (the
    /// production clock).
    pub fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    /// A clock that reads `origin_ms` now and advances with tokio time (used
    /// by tests and the simulator, whose runs start at a fixed epoch time on
    /// a paused tokio clock).
    pub fn starting_at(origin_ms: i64) -> Self {
        Self {
            source: Source::Tokio {
                origin_ms,
                origin: Instant::now(),
            },
        }
    }

    /// A clock that reads `wall` for every timestamp: a test's stand-in for
    /// a system clock that steps.
    pub fn with_wall(wall: WallSource) -> Self {
        Self {
            source: Source::Wall(wall),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self.source {
            Source::System => system_ms(),
            Source::Tokio { origin_ms, origin } => {
                let elapsed = i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX);
                origin_ms.saturating_add(elapsed)
            }
            Source::Wall(wall) => wall(),
        }
    }
}

/// The system clock in milliseconds since the Unix epoch; a clock set
/// before 1970 reads as negative, not as a panic. The one reading of the
/// wall clock: [`Clock::system`], the agent's event stamps, `status` and
/// `explain`'s ages, the health endpoints and the emulator all use it.
pub(crate) fn system_ms() -> i64 {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => ms(since),
        Err(before) => -ms(before.duration()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_follows_the_wall_clock_not_monotonic_time() {
        let clock = Clock::system();
        // Monotonic time runs an hour ahead of the wall clock, as after the
        // wall clock was stepped back by an hour.
        tokio::time::advance(Duration::from_millis(HOUR_MS as u64)).await;
        let wall = system_ms();
        let skew = (clock.now_ms() - wall).abs();
        assert!(skew < 60_000, "the clock is {skew} ms off the wall clock");
    }

    #[tokio::test]
    async fn a_stepped_wall_clock_shows_at_once() {
        let wall = Box::leak(Box::new(AtomicI64::new(1_700_000_000_000)));
        let source: &AtomicI64 = wall;
        let clock = Clock::with_wall(Box::leak(Box::new(move || source.load(Ordering::SeqCst))));
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
        source.fetch_sub(HOUR_MS, Ordering::SeqCst);
        assert_eq!(clock.now_ms(), 1_700_000_000_000 - HOUR_MS);
        // Every copy reads the same source.
        let copy = clock;
        source.fetch_add(2 * HOUR_MS, Ordering::SeqCst);
        assert_eq!(copy.now_ms(), 1_700_000_000_000 + HOUR_MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_from_a_fixed_origin_advances_with_tokio_time() {
        let clock = Clock::starting_at(1_700_000_000_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 1_700_000_090_000);
    }
}
