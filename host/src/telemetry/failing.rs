//! A write that keeps failing, told once: the journal of an application
//! (the controller) and the decision history (its thread) are retried at
//! every step, and a full or read-only state folder would otherwise log
//! the same error at every evaluation.
//!
//! [`Failing`] follows one such write as a stretch of failures: it says
//! when to speak ([`Tell`]): when the writes start failing, when the
//! cause changes (as permission failures are reported once per change of
//! message), and at most once per [`REMINDER_INTERVAL`] after that; and
//! what the stretch came to at the first success ([`Recovered`]). It reads
//! no clock (the caller gives the time), so it is tested with plain values.

use std::time::Duration;

/// The shortest time between two reminders that a write still fails.
pub const REMINDER_INTERVAL: Duration = Duration::from_secs(600);

/// What a failed write should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tell {
    /// Writes started failing: warn, with the cause.
    Started,
    /// Still failing, for another cause than the one last told: warn again.
    CauseChanged,
    /// Still failing, and [`REMINDER_INTERVAL`] has passed since the last
    /// warning: remind, saying for how long.
    Reminder,
    /// Still failing, told recently: say nothing.
    Quiet,
}

impl Tell {
    /// Whether a line is logged for it.
    pub fn logs(self) -> bool {
        self != Tell::Quiet
    }
}

/// What a stretch of failures came to, at the first write that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// When the first failure of the stretch was (ms since the epoch).
    pub since_ms: i64,
    /// How long the writes failed, in ms.
    pub failed_ms: i64,
    /// How many things the failures held back (updates not sent).
    pub held: u64,
}

/// One stretch of failures of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stretch {
    since_ms: i64,
    cause: String,
    warned_ms: i64,
    held: u64,
}

/// The state of one write: failing since when and why, or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failing {
    stretch: Option<Stretch>,
}

impl Failing {
    /// A write failed at `now_ms` for `cause`: what to say about it.
    pub fn failed(&mut self, now_ms: i64, cause: &str) -> Tell {
        let Some(stretch) = &mut self.stretch else {
            self.stretch = Some(Stretch {
                since_ms: now_ms,
                cause: cause.to_owned(),
                warned_ms: now_ms,
                held: 0,
            });
            return Tell::Started;
        };
        let tell = if stretch.cause != cause {
            Tell::CauseChanged
        } else if now_ms.saturating_sub(stretch.warned_ms) >= millis(REMINDER_INTERVAL) {
            Tell::Reminder
        } else {
            return Tell::Quiet;
        };
        stretch.cause = cause.to_owned();
        stretch.warned_ms = now_ms;
        tell
    }

    /// Counts one thing the failing write held back (call after
    /// [`Failing::failed`]).
    pub fn held_one(&mut self) {
        if let Some(stretch) = &mut self.stretch {
            stretch.held = stretch.held.saturating_add(1);
        }
    }

    /// A write succeeded at `now_ms`: what the stretch it ends came to,
    /// `None` if the writes were not failing.
    pub fn succeeded(&mut self, now_ms: i64) -> Option<Recovered> {
        let stretch = self.stretch.take()?;
        Some(Recovered {
            since_ms: stretch.since_ms,
            failed_ms: now_ms.saturating_sub(stretch.since_ms).max(0),
            held: stretch.held,
        })
    }

    /// Since when the writes fail (ms since the epoch), if they do.
    pub fn since_ms(&self) -> Option<i64> {
        self.stretch.as_ref().map(|s| s.since_ms)
    }

    /// How many things the current stretch held back (0 when not failing).
    pub fn held(&self) -> u64 {
        self.stretch.as_ref().map_or(0, |s| s.held)
    }
}

/// `ms` as people say a duration: `45 s`, `3 min 12 s`, `2 h 5 min`.
pub fn duration_words(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, m) => format!("{m} min {s} s"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// `n` updates held, as a count people read: `1 update held`, `3 updates
/// held`.
pub fn held_words(n: u64) -> String {
    if n == 1 {
        "1 update held".to_owned()
    } else {
        format!("{n} updates held")
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn a_stretch_of_failures_is_told_once_then_reminded_every_ten_minutes() {
        let mut failing = Failing::default();
        assert_eq!(failing.succeeded(0), None, "nothing was failing");
        let cause = "cannot create /s/.a.json.tmp: Read-only file system (os error 30)";
        assert_eq!(failing.failed(1_000, cause), Tell::Started);
        failing.held_one();
        // Every evaluation retries: quiet until ten minutes have passed
        // since the warning.
        for at in (1..10).map(|m| 1_000 + m * MIN) {
            assert_eq!(failing.failed(at, cause), Tell::Quiet, "at {at}");
        }
        assert_eq!(failing.failed(1_000 + 10 * MIN, cause), Tell::Reminder);
        assert_eq!(failing.failed(1_000 + 11 * MIN, cause), Tell::Quiet);
        assert_eq!(failing.failed(1_000 + 20 * MIN, cause), Tell::Reminder);
        failing.held_one();
        failing.held_one();
        assert_eq!(failing.since_ms(), Some(1_000));
        assert_eq!(failing.held(), 3);
        assert_eq!(
            failing.succeeded(1_000 + 20 * MIN + 12_000),
            Some(Recovered {
                since_ms: 1_000,
                failed_ms: 20 * MIN + 12_000,
                held: 3,
            })
        );
        // Over: the next failure starts a new stretch, counted afresh.
        assert_eq!(failing.since_ms(), None);
        assert_eq!(failing.failed(30 * MIN, cause), Tell::Started);
        assert_eq!(failing.held(), 0);
    }

    #[test]
    fn a_new_cause_is_told_at_once_and_restarts_the_reminder() {
        let mut failing = Failing::default();
        assert_eq!(failing.failed(0, "No space left on device"), Tell::Started);
        assert_eq!(
            failing.failed(MIN, "Read-only file system"),
            Tell::CauseChanged
        );
        // The stretch goes on from its first failure.
        assert_eq!(failing.since_ms(), Some(0));
        assert_eq!(
            failing.failed(10 * MIN, "Read-only file system"),
            Tell::Quiet
        );
        assert_eq!(
            failing.failed(11 * MIN, "Read-only file system"),
            Tell::Reminder
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(0), "0 s");
        assert_eq!(duration_words(45_999), "45 s");
        assert_eq!(duration_words(192_000), "3 min 12 s");
        assert_eq!(duration_words(7_500_000), "2 h 5 min");
        assert_eq!(duration_words(-5), "0 s");
    }
}
