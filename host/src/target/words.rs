//! The words the agent's output uses for what it scales, per target: what
//! a user reads in the log, `once`, `status`, `explain`, `validate
//! --environment`, `/metrics` and error messages.
//!
//! The controller and the policies count capacity in KPU whatever the
//! target (the WIT contract has one unit; a Flink job maps one unit of
//! parallelism to one KPU, `parallelism_per_kpu` = 1). Only what is said
//! about it differs: MSF's user knows KPU, `DescribeApplication`,
//! `UpdateApplication` and the application's KPU quota; a Flink user knows
//! parallelism, the REST calls (`GET /jobs/{id}`, `PUT
//! /jobs/{id}/resource-requirements`) and the cluster's task slots. Every
//! string that names one of these asks [`Words`] instead of spelling it,
//! so that no message tests the target itself.

use crate::config::TargetKind;
use crate::target::AppStatus;

/// The vocabulary of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Words {
    /// Managed Service for Apache Flink: KPU, `DescribeApplication`,
    /// `UpdateApplication`, the application's KPU quota.
    #[default]
    Msf,
    /// A job of a self-managed Flink cluster: parallelism, the REST calls,
    /// the cluster's free task slots.
    Flink,
}

impl From<TargetKind> for Words {
    fn from(kind: TargetKind) -> Self {
        match kind {
            TargetKind::Msf => Words::Msf,
            TargetKind::Flink => Words::Flink,
        }
    }
}

impl Words {
    /// A capacity of `n` units: `4 KPU`, or `parallelism 4`.
    pub fn capacity(self, n: u32) -> String {
        match self {
            Words::Msf => format!("{n} KPU"),
            Words::Flink => format!("parallelism {n}"),
        }
    }

    /// The unit's name: `KPU`, or `parallelism` (as in "max KPU" / "max
    /// parallelism", and `status`'s field label).
    pub fn unit(self) -> &'static str {
        match self {
            Words::Msf => "KPU",
            Words::Flink => "parallelism",
        }
    }

    /// The configuration keys of the bounds: `min_kpu`/`max_kpu`, or
    /// `min_parallelism`/`max_parallelism`.
    pub fn bounds(self) -> (&'static str, &'static str) {
        match self {
            Words::Msf => ("min_kpu", "max_kpu"),
            Words::Flink => ("min_parallelism", "max_parallelism"),
        }
    }

    /// What is scaled: `application`, or `job`.
    pub fn thing(self) -> &'static str {
        match self {
            Words::Msf => "application",
            Words::Flink => "job",
        }
    }

    /// The call that reads it: `DescribeApplication`, or `GET /jobs/{id}`.
    pub fn describe_call(self) -> &'static str {
        match self {
            Words::Msf => "DescribeApplication",
            Words::Flink => "GET /jobs/{id}",
        }
    }

    /// The call that rescales it: `UpdateApplication`, or the adaptive
    /// scheduler's `PUT /jobs/{id}/resource-requirements`.
    pub fn rescale_call(self) -> &'static str {
        match self {
            Words::Msf => "UpdateApplication",
            Words::Flink => "PUT /jobs/{id}/resource-requirements",
        }
    }

    /// What refuses a larger capacity: `the application's KPU quota`, or `the
    /// cluster's free slots` (its task slots less what its other jobs use).
    pub fn limit(self) -> &'static str {
        match self {
            Words::Msf => "the application's KPU quota",
            Words::Flink => "the cluster's free slots or the job's max parallelism",
        }
    }

    /// What `status` says while no ceiling is recorded: `no KPU limit
    /// met`, or `never short of free slots`.
    pub fn limit_never_met(self) -> &'static str {
        match self {
            Words::Msf => "no KPU limit met",
            Words::Flink => "never short of free slots",
        }
    }

    /// One rescale, as the target's user says it: `an update`, or `a
    /// rescale`.
    pub fn rescale(self) -> &'static str {
        match self {
            Words::Msf => "an update",
            Words::Flink => "a rescale",
        }
    }

    /// Who else moves the version id, said when an evaluation finds it
    /// moved without this agent: on MSF another writer; on a Flink job
    /// also Flink itself, which builds a new execution graph for every
    /// restart (the version id is made from the graph's creation time).
    pub fn other_writers(self) -> &'static str {
        match self {
            Words::Msf => {
                "somebody else updated it (another agent, the reference design's scaling not yet switched off, a deployment, the console, MSF's own autoscaling)"
            }
            Words::Flink => {
                "Flink rebuilt its execution graph: the job restarted (a task failed, a TaskManager was lost or came back) or somebody else rescaled it (another agent, a PUT by hand)"
            }
        }
    }

    /// Why the version id fell back under an update being followed: on
    /// MSF the application was re-created; on a Flink job the same, or the
    /// rescale was dropped with nothing to grow into (its version id is
    /// made from the graph and a pending flag, which clears when the
    /// requirements can no longer be met).
    pub fn version_went_back(self) -> &'static str {
        match self {
            Words::Msf => "the application was replaced or re-created under the agent",
            Words::Flink => {
                "the job was replaced under the agent, or the slots it was to grow into are gone"
            }
        }
    }

    /// What tells one application from another of the same name
    /// ([`crate::target::AppState::identity`]): `creation time`, or `job id`.
    pub fn identity(self) -> &'static str {
        match self {
            Words::Msf => "creation time",
            Words::Flink => "job id",
        }
    }

    /// How an application comes to be replaced under its name, said when
    /// its identity changed.
    pub fn replaced(self) -> &'static str {
        match self {
            Words::Msf => "the application was deleted and created again under its name",
            Words::Flink => {
                "the job was cancelled and submitted again under its name, or the JobManager restarted without high availability and the job was submitted anew"
            }
        }
    }

    /// Why a grace period is held after the application was replaced: a
    /// new application starts as after a restart.
    pub fn grace_after_replacement(self) -> &'static str {
        match self {
            Words::Msf => "grace period after the application was re-created",
            Words::Flink => {
                "grace period after the job was replaced (a new job starts as a restart)"
            }
        }
    }

    /// Why a grace period is held after a restart or update this agent did not make
    /// (see [`Words::other_writers`]): its metrics are those of a restart.
    pub fn grace_after_other_writer(self) -> &'static str {
        match self {
            Words::Msf => "grace period after another writer's update",
            Words::Flink => "grace period after the job's restart or another writer's rescale",
        }
    }

    /// What an update that ended in `status` (not RUNNING) means, and
    /// where to find why, said after the status; empty where the status
    /// says it.
    pub fn update_ended_in(self, status: AppStatus) -> &'static str {
        match (self, status) {
            (Words::Msf, AppStatus::Ready) => {
                ": the application is stopped (the update failed, and MSF's system rollback is off or failed too); nothing is rescaled until it runs again (why it failed: aws kinesisanalyticsv2 list-application-operations)"
            }
            (Words::Msf, AppStatus::RolledBack) => {
                " (why it failed: aws kinesisanalyticsv2 list-application-operations)"
            }
            _ => "",
        }
    }

    /// Why a grace period is held after the application was seen starting
    /// or under maintenance with no update to explain it: a restart that
    /// keeps the version id.
    pub fn grace_after_busy(self) -> &'static str {
        match self {
            Words::Msf => {
                "grace period after the application restarted without an update (a start or maintenance)"
            }
            Words::Flink => {
                "grace period after the job restarted without a rescale (it was initializing or reconciling)"
            }
        }
    }

    /// Why an agent that started without a journal holds a grace period:
    /// the application's last update (its restart) ended moments ago.
    pub fn grace_after_recent_update(self) -> &'static str {
        match self {
            Words::Msf => {
                "grace period after the application's last update (LastUpdateTimestamp), which may have ended as late as this agent's start (it started without a journal)"
            }
            Words::Flink => {
                "grace period after the job's last restart or rescale (its graph's creation time), which may have ended as late as this agent's start (it started without a journal)"
            }
        }
    }

    /// What moved the version id without this agent, as a verb after the
    /// thing, said when it keeps doing so: `was updated without this
    /// agent`, or `restarted (or was rescaled by another writer)`.
    pub fn moved_again(self) -> &'static str {
        match self {
            Words::Msf => "was updated without this agent",
            Words::Flink => "restarted (or was rescaled by another writer)",
        }
    }

    /// Why it keeps moving, and where to look.
    pub fn moved_again_cause(self) -> &'static str {
        match self {
            Words::Msf => "another writer keeps updating it: stop the other writer",
            Words::Flink => {
                "a task that keeps failing restarts the job: see GET /jobs/{id}/exceptions"
            }
        }
    }

    /// A policy's text (its decision's reason) as the target's user reads
    /// it. The plugin contract counts capacity in KPU whatever the target
    /// (a Flink job's parallelism is its KPU, `parallelism_per_kpu` = 1),
    /// so a plugin written to it, shipped or third-party, says `4 KPU`,
    /// `max KPU (8)` where a Flink job's user knows `parallelism 4`, `max
    /// parallelism (8)`. The contract cannot tell a plugin its target's
    /// unit without a new version, and a plugin built against an old one
    /// would still say KPU; so the host translates what it shows. On a
    /// Flink job `N KPU` becomes `parallelism N` and any other `KPU` (the
    /// word, not a part of one: `lag_per_kpu`, `ParallelismPerKPU` and
    /// `KPUs` stay) becomes `parallelism`; a `parallelism N` that then
    /// only repeats the number before it (`parallelism 4, 4 KPU`, `2 -> 4
    /// (4 KPU)`) is dropped. An MSF application's text is unchanged.
    pub fn plugin_text(self, text: &str) -> String {
        match self {
            Words::Msf => text.to_owned(),
            Words::Flink => kpu_as_parallelism(text),
        }
    }

    /// Why a recorded ceiling is tried again after a while: `the limit
    /// may have been raised`, or `slots may have been freed or added`.
    pub fn limit_may_have_moved(self) -> &'static str {
        match self {
            Words::Msf => "the limit may have been raised",
            Words::Flink => "slots may have been freed or added",
        }
    }
}

/// [`Words::plugin_text`] for a Flink job.
fn kpu_as_parallelism(text: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find("KPU") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "KPU".len()..];
        if is_word(out.chars().next_back()) || is_word(rest.chars().next()) {
            out.push_str("KPU");
            continue;
        }
        match take_number(&mut out) {
            None => out.push_str("parallelism"),
            Some(number) => {
                // `parallelism 4, 4 KPU`, `2 -> 4 (4 KPU)`: the number
                // said again in the contract's unit says nothing more.
                let repeated = [(", ", ""), (" (", ")")].into_iter().find(|(open, close)| {
                    rest.starts_with(close)
                        && out
                            .strip_suffix(open)
                            .and_then(|head| head.strip_suffix(number.as_str()))
                            .is_some_and(|head| head.ends_with(' '))
                });
                match repeated {
                    Some((open, close)) => {
                        out.truncate(out.len() - open.len());
                        rest = &rest[close.len()..];
                    }
                    None => {
                        out.push_str("parallelism ");
                        out.push_str(&number);
                    }
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// The most digits of a capacity: the contract's are `u32`s.
const MAX_CAPACITY_DIGITS: usize = 10;

/// Takes a whole number and the spaces after it off the end of `out`
/// (`to 4 ` leaves `to `), if it ends so; `1.5 `, `x4 ` and a number of
/// more than [`MAX_CAPACITY_DIGITS`] digits (no capacity) are left. Only
/// that many digits are looked at: a number taken is written back after
/// `parallelism `, so a text of one long number followed by many `KPU`
/// would otherwise have it read again for each (quadratic in what a
/// plugin says, in host code no call deadline stops).
fn take_number(out: &mut String) -> Option<String> {
    let trimmed = out.trim_end_matches(' ');
    if trimmed.len() == out.len() {
        return None;
    }
    let digits = trimmed
        .bytes()
        .rev()
        .take(MAX_CAPACITY_DIGITS + 1)
        .take_while(u8::is_ascii_digit)
        .count();
    let head = &trimmed[..trimmed.len() - digits];
    let glued = head
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
    if digits == 0 || digits > MAX_CAPACITY_DIGITS || glued {
        return None;
    }
    let number = trimmed[head.len()..].to_owned();
    let keep = head.len();
    out.truncate(keep);
    Some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msf_keeps_its_words_and_flink_speaks_flinks() {
        let msf = Words::from(TargetKind::Msf);
        assert_eq!(msf, Words::default());
        assert_eq!(msf.capacity(4), "4 KPU");
        assert_eq!(msf.unit(), "KPU");
        assert_eq!(msf.bounds(), ("min_kpu", "max_kpu"));
        assert_eq!(msf.thing(), "application");
        assert_eq!(msf.describe_call(), "DescribeApplication");
        assert_eq!(msf.rescale_call(), "UpdateApplication");
        assert_eq!(msf.limit(), "the application's KPU quota");
        assert_eq!(msf.limit_never_met(), "no KPU limit met");
        assert_eq!(msf.limit_may_have_moved(), "the limit may have been raised");
        assert_eq!(msf.rescale(), "an update");
        assert!(msf.version_went_back().contains("re-created"));
        assert!(msf.other_writers().contains("MSF's own autoscaling"));
        assert_eq!(msf.identity(), "creation time");
        assert!(msf.replaced().contains("created again"));
        assert_eq!(msf.moved_again(), "was updated without this agent");
        assert!(msf.moved_again_cause().contains("stop the other writer"));

        let flink = Words::from(TargetKind::Flink);
        assert_eq!(flink.capacity(4), "parallelism 4");
        assert_eq!(flink.unit(), "parallelism");
        assert_eq!(flink.bounds(), ("min_parallelism", "max_parallelism"));
        assert_eq!(flink.thing(), "job");
        assert_eq!(flink.describe_call(), "GET /jobs/{id}");
        assert_eq!(flink.rescale_call(), "PUT /jobs/{id}/resource-requirements");
        assert_eq!(
            flink.limit(),
            "the cluster's free slots or the job's max parallelism"
        );
        assert_eq!(flink.limit_never_met(), "never short of free slots");
        assert_eq!(
            flink.limit_may_have_moved(),
            "slots may have been freed or added"
        );
        assert_eq!(flink.rescale(), "a rescale");
        assert!(
            flink
                .version_went_back()
                .contains("slots it was to grow into")
        );
        assert!(flink.other_writers().contains("the job restarted"));
        assert_eq!(flink.identity(), "job id");
        assert!(flink.replaced().contains("submitted again"));
        assert!(flink.grace_after_replacement().contains("job was replaced"));
        // Nothing of Flink's says KPU or names an MSF call.
        let said = [
            flink.capacity(4),
            flink.unit().to_owned(),
            flink.thing().to_owned(),
            flink.describe_call().to_owned(),
            flink.rescale_call().to_owned(),
            flink.limit().to_owned(),
            flink.limit_may_have_moved().to_owned(),
            flink.limit_never_met().to_owned(),
            flink.moved_again().to_owned(),
            flink.moved_again_cause().to_owned(),
        ];
        for text in said {
            assert!(
                !text.contains("KPU") && !text.contains("Application"),
                "{text}"
            );
        }
    }

    /// What the shipped plugins say in the contract's unit reads, on a
    /// Flink job, in parallelism; an MSF application's is left as it is.
    #[test]
    fn a_plugins_kpu_reads_as_parallelism_on_a_flink_job() {
        let cases = [
            // step
            (
                "`out` is in ALARM: 4 KPU x 2 = 8 KPU, clamped to max KPU 6",
                "`out` is in ALARM: parallelism 4 x 2 = parallelism 8, clamped to max parallelism 6",
            ),
            ("already at max KPU (8)", "already at max parallelism (8)"),
            (
                "scale out from 2 to 3 KPU",
                "scale out from 2 to parallelism 3",
            ),
            // rate, target-tracking: the KPU only repeat the parallelism
            ("needs parallelism 4, 4 KPU", "needs parallelism 4"),
            (
                "low, but already at the least KPU that carries the window peak 700 records/s",
                "low, but already at the least parallelism that carries the window peak 700 records/s",
            ),
            // flink-operator
            (
                "busy: parallelism 2 -> 4 (4 KPU)",
                "busy: parallelism 2 -> 4",
            ),
            // Not the unit, or not a repeat: left, or said in full.
            (
                "lag_per_kpu 3, ParallelismPerKPU 2, KPUs 4, 1.5 KPU",
                "lag_per_kpu 3, ParallelismPerKPU 2, KPUs 4, 1.5 parallelism",
            ),
            ("parallelism 8, 4 KPU", "parallelism 8, parallelism 4"),
            ("KPU", "parallelism"),
            // The largest capacity, and a number that is none.
            ("4294967295 KPU", "parallelism 4294967295"),
            ("12345678901 KPU", "12345678901 parallelism"),
        ];
        for (plugin, reads) in cases {
            assert_eq!(Words::Flink.plugin_text(plugin), reads, "{plugin}");
            assert_eq!(Words::Msf.plugin_text(plugin), plugin);
        }
    }

    #[test]
    fn words_serialize_as_the_target_key_spells_it() {
        assert_eq!(serde_json::to_value(Words::Msf).ok(), Some("msf".into()));
        assert_eq!(
            serde_json::to_value(Words::Flink).ok(),
            Some("flink".into())
        );
    }
}
