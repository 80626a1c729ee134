//! Record: the controller's durable state, one journal file per application
//! in `[agent].state_dir`, so that a restarted agent resumes each
//! application where it was instead of guessing.
//!
//! A journal holds one [`AppRecord`]: the phase of the scaling cycle
//! ([`Phase`]: idle, decision taken, UpdateApplication about to be sent,
//! sent, UPDATING observed, grace period) and what outlives a cycle (when
//! the last rescale ended, the application's KPU quota met). It is rewritten
//! whole at each step that matters, atomically: a temporary file in the
//! same folder is written and fsynced, renamed over the journal, and the
//! folder is fsynced, so a crash at any instant leaves either the old
//! record or the new one, never a mix. The `Sending` record is written
//! *before* UpdateApplication goes out, which is what makes "never scale
//! twice" hold across a `kill -9`: on restart, [`resume`] compares the
//! version id quoted in that record with the one DescribeApplication reports
//! now, and only a version that did not move means the update never
//! happened (and is then decided again, never re-sent blindly).
//!
//! The folder is created readable by the agent's user only (0700, files
//! 0600), no symbolic link in it is followed, and each journal is held
//! under an exclusive advisory lock for the life of its controller, so two
//! agents sharing a state folder cannot interleave their records for one
//! application. Every save first checks that the lock is still the
//! folder's: a folder removed or replaced under the agent (an `rm -rf`, a
//! volume mounted over it) is created again if missing and its lock taken
//! again, or the save fails if another agent took it meanwhile. The
//! simulator and dry runs keep no journal at all.
//!
//! A journal this agent cannot read is evidence, never discarded: an
//! unreadable one is set aside under a new number
//! (`<app>.json.corrupt.1`, `.2`, ...), and one written by a newer agent
//! ([`StateError::Newer`]) is not touched at all.

mod locks;
/// The journal of `application` from the bytes of its file at `path`:
/// [`Journal::load`]'s reading, and `status`'s. A newer format is
/// [`StateError::Newer`] (recognised before anything else is read, since
/// a newer agent may have changed the rest); an older or unknown one, a
/// record that does not parse, one of another application or with a
/// counter or time out of range is [`StateError::Corrupt`].
pub(crate) fn parse_journal(
    path: &Path,
    application: &str,
    text: &[u8],
) -> Result<JournalFile, StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    #[derive(Deserialize)]
    struct Probe {
        format: u64,
    }
    let probe: Probe = serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
    if probe.format > u64::from(FORMAT_VERSION) {
        return Err(StateError::Newer {
            path: path.to_path_buf(),
            format: probe.format,
        });
    }
    if probe.format != u64::from(FORMAT_VERSION) {
        return Err(corrupt(format!(
            "format {} (this agent reads format {FORMAT_VERSION})",
            probe.format
        )));
    }
    let file: JournalFile = serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
    if file.application != application {
        return Err(corrupt(format!(
            "it belongs to application {:?}",
            file.application
        )));
    }
    out_of_range(&file).map_or(Ok(()), |problem| Err(corrupt(problem)))?;
    Ok(file)
}

#[cfg(test)]
mod tests;

pub use locks::{JournalLock, LockOwner, LockTable};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::target::{AppState, AppStatus};

/// The journal format written by this version. A file with a higher number
/// comes from a newer agent and is refused untouched
/// ([`StateError::Newer`]); one with a lower number is unreadable.
pub const FORMAT_VERSION: u32 = 1;

/// How many `.corrupt.N` files [`Journal::set_aside`] numbers before it
/// gives up: far more than a sane folder holds, few enough that a full or
/// hostile folder cannot keep it looping.
const MAX_SET_ASIDE: u32 = 10_000;

/// An UpdateApplication of this agent: what it asked for and on what basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// KPU requested.
    pub target_kpu: u32,
    /// KPU when the decision was taken.
    pub from_kpu: u32,
    /// The version id quoted in the request (`CurrentApplicationVersionId`):
    /// a version id above it later means the update took effect.
    pub quoted_version_id: u64,
    /// The policy's reason.
    pub reason: String,
    /// When the update was about to be sent (ms since the epoch); the
    /// update timeout counts from here.
    pub started_ms: i64,
}

/// Where an application is in its scaling cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Phase {
    /// Nothing in flight: the last evaluation held (settled), or the agent
    /// never acted.
    #[default]
    Idle,
    /// A policy decided to scale, but the update was not sent (the
    /// application was not RUNNING). On restart it is decided again.
    Decided {
        /// KPU decided.
        target_kpu: u32,
        /// The policy's reason.
        reason: String,
        /// When (ms since the epoch).
        at_ms: i64,
    },
    /// UpdateApplication is about to be sent, or was sent and its answer
    /// is not known: written before the call.
    Sending {
        /// The update.
        update: Update,
    },
    /// UpdateApplication was accepted.
    Sent {
        /// The update.
        update: Update,
        /// The version id the service answered.
        new_version_id: u64,
    },
    /// The application was seen UPDATING after the update.
    Updating {
        /// The update.
        update: Update,
        /// When UPDATING was first seen (ms since the epoch).
        observed_ms: i64,
        /// The version id the service answered when it accepted the
        /// update, when the agent heard it (not after a lost answer): an
        /// agent restarted mid-update still knows a rollback of this
        /// version for a rollback of its own update.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_version_id: Option<u64>,
    },
    /// The journal could not be read: whatever was in flight has an
    /// unknown outcome. The application is read and one grace period held
    /// before anything is decided.
    Unknown {
        /// When the agent found the journal unreadable (ms since the epoch).
        since_ms: i64,
    },
    /// A restart or update this agent did not make is being followed: another
    /// writer's (a second agent, a deployment, the console, MSF's own
    /// autoscaling, a Flink job's restart), or one found in progress by an
    /// agent that started without a journal. Nothing is decided while the
    /// application is busy; once it is RUNNING a grace period is held, as
    /// after the agent's own update.
    Foreign {
        /// The version id the update was seen at.
        version_id: u64,
        /// When it was seen (ms since the epoch).
        since_ms: i64,
        /// Why the grace period after it is held (`grace period after
        /// another writer's update`, ...).
        after: String,
    },
    /// The update finished; no evaluation before `until_ms`.
    Grace {
        /// KPU the update ended at.
        kpu: u32,
        /// End of the grace period (ms since the epoch, wall clock).
        until_ms: i64,
        /// Why, when the update was not this agent's (`grace period after
        /// another writer's update`, ...); absent after its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

impl Phase {
    /// The phase's name in the journal (`idle`, `sending`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Decided { .. } => "decided",
            Phase::Sending { .. } => "sending",
            Phase::Sent { .. } => "sent",
            Phase::Updating { .. } => "updating",
            Phase::Grace { .. } => "grace",
            Phase::Unknown { .. } => "unknown",
            Phase::Foreign { .. } => "foreign",
        }
    }

    /// The update this phase is about, if one may be in flight.
    pub fn update(&self) -> Option<&Update> {
        match self {
            Phase::Sending { update }
            | Phase::Sent { update, .. }
            | Phase::Updating { update, .. } => Some(update),
            Phase::Idle
            | Phase::Decided { .. }
            | Phase::Grace { .. }
            | Phase::Unknown { .. }
            | Phase::Foreign { .. } => None,
        }
    }
}

/// A KPU count UpdateApplication refused with LimitExceededException: the
/// application's KPU quota, which later decisions stay below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpuLimit {
    /// The KPU that was refused.
    pub refused_kpu: u32,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The most the refusal said is available, when it said (a Flink
    /// cluster's task slots for the job); absent in journals written
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_kpu: Option<u32>,
}

impl KpuLimit {
    /// The highest KPU decisions may ask for while this limit holds: what
    /// the refusal said is available, else one below the refused KPU; at
    /// least 1.
    pub fn ceiling(&self) -> u32 {
        self.usable_kpu
            .map_or(self.refused_kpu.saturating_sub(1), |usable| {
                usable.min(self.refused_kpu.saturating_sub(1))
            })
            .max(1)
    }
}

/// What a journal holds about one application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AppRecord {
    /// The phase of the scaling cycle.
    pub phase: Phase,
    /// When the last rescale by this agent completed (ms since the epoch).
    #[serde(default)]
    pub last_rescale_ms: Option<i64>,
    /// How long the last rescale kept the application from RUNNING.
    #[serde(default)]
    pub last_update_duration_secs: Option<u32>,
    /// The application's KPU quota met, if any.
    #[serde(default)]
    pub kpu_limit: Option<KpuLimit>,
    /// The application's version id as this agent last saw or caused it:
    /// an evaluation that finds a higher one meets somebody else's update,
    /// also one made while the agent was down. Absent in journals written
    /// before it was kept (nothing is compared then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_version_id: Option<u64>,
    /// The application's identity as this agent last saw it
    /// ([`AppState::identity`]: a Flink job's id, an MSF application's
    /// creation time): a read that finds another one meets a replacement
    /// (a job resubmitted, an application re-created), never an update of
    /// the one the agent was following, also one replaced while the agent
    /// was down. Absent in journals written before it was kept, and for a
    /// target that does not say (nothing is compared then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_identity: Option<String>,
    /// What the agent saw of another writer changing the size its own
    /// rescales set, and whether it stood down for it
    /// (`crate::controller::fight`). Absent in journals written before it
    /// was kept, and while there is nothing to say.
    #[serde(default, skip_serializing_if = "Fight::is_empty")]
    pub fight: Fight,
    /// The agent started without a journal for the application (a first
    /// start, an emptied state folder), and no evaluation has found it
    /// RUNNING or busy yet: the first that does holds a grace period if
    /// its last update is recent (`crate::controller::machine`). Journaled
    /// so that a restart or reload before that evaluation still asks.
    /// Absent while false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh_start: bool,
    /// A size refused as invalid, or whose update was rolled back, and not
    /// asked for again until it ends: journaled, so that a restart or a
    /// reload of the application does not ask for it again at once.
    /// Absent while there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedTarget>,
}

/// A size AWS refused as invalid, or whose update MSF rolled back, not
/// asked for again before `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedTarget {
    /// The size refused.
    pub kpu: u32,
    /// When the refusal ends (ms since the epoch).
    pub until_ms: i64,
    /// The size the update was rolled back to, when it was accepted and
    /// then rolled back (it failed to start at `kpu`), rather than refused
    /// as invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u32>,
}

/// The size the agent's last own rescale set, and when it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnRescale {
    /// KPU it started from.
    pub from_kpu: u32,
    /// KPU it ended at.
    pub kpu: u32,
    /// The application's version id when it ended.
    pub version_id: u64,
    /// When it completed (ms since the epoch).
    pub at_ms: i64,
}

/// An update of another writer that moved the size the agent's own last
/// rescale had set back the way it came: the evidence of a fight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// When an evaluation of the agent saw it (ms since the epoch).
    pub seen_ms: i64,
    /// When the target says it was requested (ms since the epoch), if it
    /// says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_ms: Option<i64>,
    /// The version id the agent's rescale ended at (or made, when the
    /// other update landed while the agent followed it).
    pub from_version_id: u64,
    /// The version id it was seen at.
    pub to_version_id: u64,
    /// The KPU the agent's rescale had set.
    pub from_kpu: u32,
    /// The KPU the other writer set.
    pub to_kpu: u32,
    /// When the agent's rescale it undid completed (ms since the epoch).
    pub own_rescale_ms: i64,
}

/// Another writer fighting the agent over the application's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fight {
    /// The agent's last own rescale, until an update of another writer
    /// changes its size (each override needs a rescale of the agent
    /// before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnRescale>,
    /// The overrides seen within the fight window, oldest first; when the
    /// agent stood down, the ones that made it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// Since when the agent sends no update for the application (ms since
    /// the epoch): it stood down, until a reload resumes it (`flinkscale
    /// reload --resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stood_down_ms: Option<i64>,
}

impl Fight {
    /// Nothing to journal.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A journal file: the record and what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFile {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The application it belongs to.
    pub application: String,
    /// Write counter, 1 for the first record of a journal.
    pub seq: u64,
    /// When it was written (ms since the epoch).
    pub written_ms: i64,
    /// The record.
    pub record: AppRecord,
}

/// What a restarted controller does first, given the journaled phase and
/// the application as DescribeApplication reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was in flight: evaluate.
    Evaluate,
    /// A decision was taken but never sent: evaluate again (its inputs are
    /// stale), never send it as it was.
    Reevaluate {
        /// KPU that had been decided.
        decided_kpu: u32,
    },
    /// The update may have been sent, but the version id did not move past
    /// the one it quoted: it never took effect. Evaluate again.
    NotApplied {
        /// The update.
        update: Update,
    },
    /// The update took effect and the application is still on its way:
    /// follow it (poll while UPDATING), then the grace period.
    Follow {
        /// The update.
        update: Update,
    },
    /// The update took effect and finished while the agent was away: start
    /// the grace period now.
    Finished {
        /// The update.
        update: Update,
    },
    /// The update took effect but the application ended in a status other
    /// than RUNNING (ROLLED_BACK, READY, ...): an error, then back off.
    Failed {
        /// The update.
        update: Update,
        /// The status found.
        status: AppStatus,
    },
    /// A grace period is running: wait out the rest, then evaluate.
    Grace {
        /// What is left of it.
        remaining: Duration,
    },
}

impl Resume {
    /// [`Resume::Follow`]'s name.
    pub const FOLLOW: &'static str = "follow the update in progress";
    /// [`Resume::Finished`]'s name.
    pub const FINISHED: &'static str = "update finished: grace period";
    /// [`Resume::Failed`]'s name.
    pub const FAILED: &'static str = "update failed: back off";

    /// A short name for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            Resume::Evaluate => "evaluate",
            Resume::Reevaluate { .. } => "re-evaluate the unsent decision",
            Resume::NotApplied { .. } => "update never took effect: re-evaluate",
            Resume::Follow { .. } => Self::FOLLOW,
            Resume::Finished { .. } => Self::FINISHED,
            Resume::Failed { .. } => Self::FAILED,
            Resume::Grace { .. } => "continue the grace period",
        }
    }
}

/// The resume decision table: what to do on restart for the journaled
/// `phase`, the application as it is now (`app`), the current wall time
/// and the configured grace period (a grace period is never resumed for
/// longer than that, whatever the clock did meanwhile).
///
/// | phase                     | version id now vs quoted | status now         | resume |
/// |---------------------------|--------------------------|--------------------|--------|
/// | idle                      | -                        | -                  | evaluate |
/// | decided                   | -                        | -                  | re-evaluate |
/// | sending / sent / updating | not above                | any                | not applied: re-evaluate |
/// | sending / sent / updating | above                    | UPDATING (or other transitional) | follow |
/// | sending / sent / updating | above                    | RUNNING            | finished: grace now |
/// | sending / sent / updating | above                    | ROLLED_BACK, READY, ... | failed: error, back off |
/// | grace                     | -                        | -                  | wait until - now (capped at the grace period), or evaluate if past |
/// | unknown (unreadable journal) | -                     | -                  | hold one whole grace period |
/// | foreign (a restart or update the agent did not make) | -                | -                  | hold one whole grace period (the controller follows the update while the application is busy) |
///
/// A restart's first reads get one exception before this table, in the
/// controller: with an update in flight, a version id not above the quote
/// while the application is busy is no verdict, and it is read again until
/// the application settles (a Flink job that restarts for want of slots
/// shows a placeholder graph dated from its submission, older than the
/// quote, until it is rebuilt).
///
/// A version id above the quoted one may also come from somebody else's
/// update; following it is then still right (the application is busy, and
/// a grace period after it is harmless), and the only way to be sure the
/// agent's own update is never sent twice.
pub fn resume(phase: &Phase, app: &AppState, now_ms: i64, grace_period: Duration) -> Resume {
    match phase {
        Phase::Idle => Resume::Evaluate,
        // Nothing is known: hold a whole grace period (the controller
        // waits first while the application is busy).
        Phase::Unknown { .. } | Phase::Foreign { .. } => Resume::Grace {
            remaining: grace_period,
        },
        Phase::Decided { target_kpu, .. } => Resume::Reevaluate {
            decided_kpu: *target_kpu,
        },
        Phase::Grace { until_ms, .. } => {
            let left_ms = until_ms.saturating_sub(now_ms);
            if left_ms <= 0 {
                Resume::Evaluate
            } else {
                let remaining = Duration::from_millis(left_ms.unsigned_abs()).min(grace_period);
                Resume::Grace { remaining }
            }
        }
        Phase::Sending { update } | Phase::Sent { update, .. } | Phase::Updating { update, .. } => {
            let update = update.clone();
            if app.version_id <= update.quoted_version_id {
                Resume::NotApplied { update }
            } else if app.status == AppStatus::Running {
                Resume::Finished { update }
            } else if app.status.is_transitional() {
                Resume::Follow { update }
            } else {
                Resume::Failed {
                    update,
                    status: app.status,
                }
            }
        }
    }
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `rename`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The journal file is not a journal this agent can read.
    #[error("journal {} is unreadable: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The journal was written by a newer agent, in a format this one
    /// cannot read. It is left as it is: renaming or overwriting it would
    /// lose what the newer agent knew (an update in flight, a grace period).
    #[error(
        "journal {} was written by a newer flinkscale (format {format}, this agent reads {}): upgrade the agent or remove the file",
        path.display(),
        FORMAT_VERSION
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// The format it declares.
        format: u64,
    },
    /// Another process holds the application's journal.
    #[error(
        "journal {} is locked by another process{}: is another agent running with the same state_dir for this application?",
        path.display(),
        holder.as_ref().map_or_else(String::new, |owner| format!(" ({})", owner.words()))
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who the lock file says holds it, when it says.
        holder: Option<LockOwner>,
    },
    /// The application name cannot be a file name.
    #[error("application name {0:?} cannot name a journal file")]
    BadName(String),
}

/// Where `flinkscale reload --resume NAME` asks the agent to end the
/// stand-down of `application` (see [`crate::controller::fight`]) at the
/// reload it signals: a file beside the journal, which the agent removes
/// when the reload reads it.
pub fn resume_request_path(state_dir: &Path, application: &str) -> PathBuf {
    state_dir.join(format!("{application}.resume"))
}

/// The state folder: where every application's journal lives.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens `dir`, creating it (and its parents) readable by this user
    /// only when missing. An existing folder is used as it is; a warning
    /// says so if others may read it.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |action| {
            move |source| StateError::Io {
                action,
                path: dir.to_owned(),
                source,
            }
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io("create"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)
                .map_err(io("inspect"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    message = "The state folder is readable by other users; 0700 is advised.",
                    path = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                );
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The applications among `names` whose stand-down a resume request
    /// ([`resume_request_path`]) asks to end, each request removed as it
    /// is read. One that cannot be removed is not taken (and is said): it
    /// would otherwise end the stand-downs of every later reload.
    pub fn take_resume_requests<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> std::collections::BTreeSet<String> {
        names
            .into_iter()
            .filter(|name| {
                let path = resume_request_path(&self.dir, name);
                match std::fs::remove_file(&path) {
                    Ok(()) => true,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
                    Err(error) => {
                        tracing::warn!(
                            message = "Cannot remove a resume request; not taken (remove it, then ask again).",
                            path = %path.display(),
                            %error,
                        );
                        false
                    }
                }
            })
            .map(str::to_owned)
            .collect()
    }

    /// The journal of `application`, locked for this process until the
    /// returned [`Journal`] is dropped.
    pub fn journal(&self, application: &str) -> Result<Journal, StateError> {
        let safe = !application.is_empty()
            && application != "."
            && application != ".."
            && application
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !safe {
            return Err(StateError::BadName(application.to_owned()));
        }
        let lock_path = lock_path(&self.dir, application);
        let lock = private_file(&lock_path, Create::OrOpen).map_err(|source| StateError::Io {
            action: "open",
            path: lock_path.clone(),
            source,
        })?;
        take_lock(&lock, &lock_path)?;
        Ok(Journal {
            dir: self.dir.clone(),
            lock_path,
            application: application.to_owned(),
            path: self.dir.join(format!("{application}.json")),
            temp: self.dir.join(format!(".{application}.json.tmp")),
            seq: 0,
            newer: None,
            #[cfg(test)]
            save_delay: std::time::Duration::ZERO,
            lock,
        })
    }
}

/// How long [`take_lock`] tries a lock that is taken before it gives up:
/// far longer than `status` holds it ([`LockTable::holder`] may take it
/// shared for an instant), far shorter than anything an agent holding it
/// would notice.
const LOCK_PATIENCE: Duration = Duration::from_millis(250);

/// Takes the exclusive lock of `file` (the lock file `path`), trying again
/// every few milliseconds for [`LOCK_PATIENCE`] while another holds it:
/// [`StateError::Locked`], naming the holder the file names, after that.
/// A `status` run at the instant an agent starts may hold the lock shared
/// for a moment; another agent holds it for good. Once taken, the file is
/// told who holds it ([`LockOwner`]), for `status` and for an agent that
/// finds it taken.
fn take_lock(file: &File, path: &Path) -> Result<(), StateError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => {
                // Only words for people: the lock holds without them.
                if let Err(error) = LockOwner::this_process().write_to(file) {
                    tracing::warn!(
                        message = "Could not write who holds the journal's lock into its file; status will not name this agent.",
                        path = %path.display(),
                        error = %error,
                    );
                }
                return Ok(());
            }
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: path.to_owned(),
                    holder: LockOwner::read(path),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    action: "lock",
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// The lock file of `application`'s journal in the state folder `dir`,
/// which an acting agent holds while it runs ([`LockTable::holder`] tells
/// who).
pub fn lock_path(dir: &Path, application: &str) -> PathBuf {
    dir.join(format!("{application}.lock"))
}

/// One application's journal, exclusively held.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    // The lock file, checked at every save: a folder removed or replaced
    // under the agent takes the lock with it ([`Journal::relock`]).
    lock_path: PathBuf,
    application: String,
    path: PathBuf,
    temp: PathBuf,
    seq: u64,
    // The format of a journal found written by a newer agent: once seen,
    // this journal is never written over.
    newer: Option<u64>,
    // How long every save stands still before writing: a slow disk, for
    // the tests that check no save holds a runtime worker.
    #[cfg(test)]
    save_delay: std::time::Duration,
    // Held for the advisory lock; released when the journal is dropped
    // (or the process dies, however it dies).
    lock: File,
}

impl Journal {
    /// Makes every save wait `delay` first, as on a slow disk.
    #[cfg(test)]
    pub(crate) fn with_save_delay(mut self, delay: std::time::Duration) -> Self {
        self.save_delay = delay;
        self
    }

    /// Whether this is the journal of `application` in the state folder
    /// `dir` (what a reload checks before it hands a running controller's
    /// journal to the next one).
    pub fn is_of(&self, dir: &Path, application: &str) -> bool {
        self.dir == dir && self.application == application
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the journal: `None` when there is none yet.
    pub fn load(&mut self) -> Result<Option<JournalFile>, StateError> {
        let text = match read_no_follow(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let file = parse_journal(&self.path, &self.application, &text).inspect_err(|error| {
            if let StateError::Newer { format, .. } = error {
                self.newer = Some(*format);
            }
        })?;
        self.seq = file.seq;
        Ok(Some(file))
    }

    /// Keeps an unreadable journal as `<name>.json.corrupt.N` for
    /// inspection, N the first number not yet taken, so that the next
    /// [`Journal::save`] does not destroy the evidence and no earlier
    /// `.corrupt` file is ever overwritten.
    ///
    /// The name is claimed with a hard link, which (unlike a rename) fails
    /// when the name exists; the journal is removed only once the link
    /// holds. A crash in between leaves the journal in place as well, and
    /// the next start sets it aside again under the next number: a copy too
    /// many, never one too few.
    pub fn set_aside(&self) -> Result<PathBuf, StateError> {
        for n in 1..=MAX_SET_ASIDE {
            let aside = self
                .dir
                .join(format!("{}.json.corrupt.{n}", self.application));
            match std::fs::hard_link(&self.path, &aside) {
                Ok(()) => {
                    std::fs::remove_file(&self.path).map_err(|source| StateError::Io {
                        action: "remove the set-aside journal",
                        path: self.path.clone(),
                        source,
                    })?;
                    return Ok(aside);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(StateError::Io {
                        action: "set aside",
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        Err(StateError::Io {
            action: "set aside",
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "{MAX_SET_ASIDE} set-aside copies exist already: remove old {}.json.corrupt.N files",
                self.application
            )),
        })
    }

    /// Replaces the journal with `record`, atomically and durably: when
    /// this returns Ok, the record survives a crash or power loss.
    ///
    /// A journal that [`Journal::load`] found written by a newer agent is
    /// never replaced: every save fails with [`StateError::Newer`], so that
    /// a caller that goes on regardless still cannot destroy it.
    pub fn save(&mut self, record: &AppRecord, now_ms: i64) -> Result<(), StateError> {
        if let Some(format) = self.newer {
            return Err(StateError::Newer {
                path: self.path.clone(),
                format,
            });
        }
        let file = JournalFile {
            format: FORMAT_VERSION,
            application: self.application.clone(),
            seq: self.seq + 1,
            written_ms: now_ms,
            record: record.clone(),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            detail: format!("cannot encode the record: {e}"),
        })?;
        text.push(b'\n');
        #[cfg(test)]
        std::thread::sleep(self.save_delay);
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        self.relock()?;
        // A leftover temporary (a crash mid-save), or anything planted in
        // its place, is removed first; `remove_file` removes a symbolic link
        // itself, never what it points to. The new one is then created
        // exclusively, so a link planted in between fails the save instead
        // of redirecting the write.
        remove_stale(&self.temp).map_err(io("remove the stale", &self.temp))?;
        let mut temp = private_file(&self.temp, Create::New).map_err(io("create", &self.temp))?;
        temp.write_all(&text).map_err(io("write", &self.temp))?;
        temp.sync_all().map_err(io("fsync", &self.temp))?;
        drop(temp);
        std::fs::rename(&self.temp, &self.path).map_err(io("rename", &self.temp))?;
        // The rename is durable only once the folder's entry is.
        sync_folder(&self.dir).map_err(io("fsync", &self.dir))?;
        self.seq = file.seq;
        Ok(())
    }

    /// Makes sure the lock this journal holds is still the state folder's:
    /// an operator's `rm -rf` or a volume mounted over the folder leaves the
    /// agent holding the lock of a file nobody can see, so that a second
    /// agent could take the folder's new lock file and share the journal.
    ///
    /// A missing folder is created again (0700, as [`StateStore::open`]
    /// does) and a missing or replaced lock file is locked again, so that
    /// the agent goes on journaling, by itself, once the folder is back.
    /// If another process holds the new lock, it is
    /// [`StateError::Locked`]: this agent saves nothing, so sends nothing,
    /// until the other one lets go.
    fn relock(&mut self) -> Result<(), StateError> {
        if self.holds_the_lock_file() {
            return Ok(());
        }
        if !self.dir.is_dir() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(&self.dir).map_err(|source| StateError::Io {
                action: "create the missing state folder",
                path: self.dir.clone(),
                source,
            })?;
            tracing::warn!(
                message = "The state folder was gone; created it again.",
                application = %self.application,
                path = %self.dir.display(),
            );
        }
        let lock =
            private_file(&self.lock_path, Create::OrOpen).map_err(|source| StateError::Io {
                action: "open",
                path: self.lock_path.clone(),
                source,
            })?;
        take_lock(&lock, &self.lock_path)?;
        tracing::warn!(
            message = "The journal's lock file was removed or replaced under the agent; locked it again.",
            application = %self.application,
            path = %self.lock_path.display(),
        );
        self.lock = lock;
        Ok(())
    }

    /// Whether the file at the lock path is the one this journal holds
    /// locked (same device and inode; the path is not followed).
    fn holds_the_lock_file(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match (
                std::fs::symlink_metadata(&self.lock_path),
                self.lock.metadata(),
            ) {
                (Ok(on_disk), Ok(held)) => {
                    on_disk.dev() == held.dev() && on_disk.ino() == held.ino()
                }
                _ => false,
            }
        }
        #[cfg(not(unix))]
        {
            self.lock_path.exists()
        }
    }
}

/// The last millisecond of the year 9999: a journal time past it (or
/// before the epoch) was never written by an agent.
const LAST_MS: i64 = 253_402_300_799_999;

/// What in `file` no agent writes: a write counter at its end (the next
/// save would overflow it) or a time outside the epoch to the year 9999
/// (the machine subtracts and adds journal times). `None` when all is in
/// range.
pub(crate) fn out_of_range(file: &JournalFile) -> Option<String> {
    if file.seq == u64::MAX {
        return Some(format!("seq {} is the last a counter holds", file.seq));
    }
    let record = &file.record;
    let mut times = vec![("written_ms", file.written_ms)];
    times.extend(record.last_rescale_ms.map(|ms| ("last_rescale_ms", ms)));
    times.extend(
        record
            .kpu_limit
            .map(|limit| ("kpu_limit.at_ms", limit.at_ms)),
    );
    times.extend(
        record
            .refused
            .map(|refused| ("refused.until_ms", refused.until_ms)),
    );
    match &record.phase {
        Phase::Idle => {}
        Phase::Decided { at_ms, .. } => times.push(("phase.at_ms", *at_ms)),
        Phase::Sending { update } | Phase::Sent { update, .. } => {
            times.push(("phase.update.started_ms", update.started_ms));
        }
        Phase::Updating {
            update,
            observed_ms,
            ..
        } => {
            times.push(("phase.update.started_ms", update.started_ms));
            times.push(("phase.observed_ms", *observed_ms));
        }
        Phase::Unknown { since_ms } | Phase::Foreign { since_ms, .. } => {
            times.push(("phase.since_ms", *since_ms));
        }
        Phase::Grace { until_ms, .. } => times.push(("phase.until_ms", *until_ms)),
    }
    let fight = &record.fight;
    times.extend(fight.own.map(|own| ("fight.own.at_ms", own.at_ms)));
    times.extend(fight.stood_down_ms.map(|ms| ("fight.stood_down_ms", ms)));
    for seen in &fight.overrides {
        times.push(("fight.overrides.seen_ms", seen.seen_ms));
        times.push(("fight.overrides.own_rescale_ms", seen.own_rescale_ms));
        times.extend(seen.updated_ms.map(|ms| ("fight.overrides.updated_ms", ms)));
    }
    times
        .into_iter()
        .find(|(_, ms)| !(0..=LAST_MS).contains(ms))
        .map(|(field, ms)| {
            format!("{field} {ms} is no time: valid 0 to {LAST_MS} (ms since the epoch)")
        })
}

/// Fsyncs the folder `dir` after a rename into it, so that the rename
/// survives a crash. The folder is opened as a folder (`O_DIRECTORY`:
/// anything else put in its place fails), and an error opening it fails.
/// A file system that cannot fsync a folder answers the fsync itself with
/// `EINVAL` (or `EBADF` where a folder opened for reading cannot be
/// fsynced: the two PostgreSQL's `fsync_fname` allows for a folder); the
/// rename is then as durable as that file system makes it, and the write
/// stands, with a warning the first time. Failing it would fail every
/// journal save, and no update would ever be sent. Any other error of the
/// fsync is the write's.
pub(crate) fn sync_folder(dir: &Path) -> std::io::Result<()> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK);
    }
    let folder = options.open(dir)?;
    folder_synced(folder.sync_all(), dir, &WARNED)
}

/// The outcome of a folder's fsync ([`sync_folder`]): `EINVAL` and
/// `EBADF` stand for "this file system cannot", said once (`warned`).
fn folder_synced(
    result: std::io::Result<()>,
    dir: &Path,
    warned: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    match result {
        Err(error) if matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EBADF)) => {
            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    message = "The state folder's file system cannot fsync a folder; a rename into it is as durable as that file system makes it (told once).",
                    path = %dir.display(),
                    error = %error,
                );
            }
            Ok(())
        }
        other => other,
    }
}

/// Reads the whole file at `path`, refusing a symbolic link (`ELOOP`)
/// rather than reading whatever it points to.
pub(crate) fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut open_no_follow(path)?, &mut text)?;
    Ok(text)
}

/// Opens the file at `path` for reading, refusing a symbolic link
/// (`ELOOP`) and anything but a regular file ([`regular`]).
pub(crate) fn open_no_follow(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    open_regular(&options, path)
}

/// `file` if it is a regular file; otherwise an error saying so. Opened
/// with `O_NONBLOCK`, so that a FIFO planted in the state folder is
/// refused at once: opened as it is, a read or write waits for a peer
/// that never comes, and `status`, `explain`, the agent's start or a
/// `/status` request would hang with it (on a regular file the flag
/// changes nothing).
fn regular(file: File) -> std::io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(not_regular())
    }
}

/// Opens `path` with `options` (which must hold `O_NONBLOCK`) and
/// refuses anything but a regular file ([`regular`]); a FIFO without a
/// reader refuses a non-blocking open for writing with `ENXIO`, said the
/// same way.
pub(crate) fn open_regular(options: &OpenOptions, path: &Path) -> std::io::Result<File> {
    let opened = options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENXIO) {
            not_regular()
        } else {
            e
        }
    });
    regular(opened?)
}

/// The error of a path in the state folder that is no regular file.
fn not_regular() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "not a regular file (a folder, a FIFO, a device or a socket in the state folder)",
    )
}

/// Removes whatever is at `path` (a leftover temporary file, or a link
/// planted in its place: the link itself, never what it points to);
/// nothing there is no error. What [`private_file`] with [`Create::New`]
/// then creates is the agent's own.
pub(crate) fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        // A read-only file system refuses the removal of a file that is
        // not there too (EROFS before ENOENT): nothing stale, and the
        // write that follows says what is wrong.
        Err(e)
            if e.kind() != std::io::ErrorKind::NotFound
                && std::fs::symlink_metadata(path).is_ok() =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

/// How [`private_file`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Fail if anything exists at the path (the journal's temporary).
    New,
    /// Open an existing regular file as it is, or create it (the lock).
    OrOpen,
}

/// Opens `path` for writing, readable and writable by this user only.
///
/// A symbolic link at `path` is never followed (`O_NOFOLLOW`, and
/// `O_EXCL` for [`Create::New`]): the state folder's files must be the
/// agent's own, not a write or a `chmod` redirected to a file elsewhere.
pub(crate) fn private_file(path: &Path, create: Create) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    match create {
        Create::New => options.create_new(true),
        Create::OrOpen => options.create(true).truncate(false),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = open_regular(&options, path)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; a leftover from
        // elsewhere is tightened too (it is the file itself: no link was
        // followed to reach it).
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
