//! Who holds a journal's lock now, read without taking it: `status` tells
//! from it whether an acting agent runs for an application, so that a
//! journal left at `updating` by an agent that stopped is not read as an
//! update being followed.
//!
//! An acting agent holds `<state_dir>/<application>.lock` under an
//! exclusive `flock` for as long as its controller runs ([`super::StateStore`]);
//! the lock goes with the process, however it ends. Trying the lock would
//! tell too, but a `status` that took it for an instant could make an agent
//! starting at that instant find it taken and refuse to start; the kernel's
//! table of locks (`/proc/locks` on Linux) says who holds what without
//! touching it. A lock file is matched by device and inode, as the table
//! writes them (`MAJOR:MINOR:INODE`, the numbers in hex, the inode in
//! decimal), whatever kind of lock it shows (a network file system may
//! turn an `flock` into a POSIX lock). Elsewhere the table is not there
//! and nothing is told.

use std::path::Path;

use serde::Serialize;

/// The kernel's table of locks, read once for every lock file asked about.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    text: String,
}

/// A journal's lock, as [`LockTable::holder`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLock {
    /// The lock file.
    pub path: String,
    /// Whether a process holds it: an acting agent runs for the
    /// application (a dry-run agent, or one where the application is
    /// paused, holds none).
    pub held: bool,
    /// The holder's process id, when this process can see it (not from
    /// another PID namespace, a container's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl LockTable {
    /// Reads the table: `None` where there is none to read (not Linux, no
    /// `/proc`).
    pub fn read() -> Option<Self> {
        Self::read_from(Path::new("/proc/locks"))
    }

    /// Reads the table from `path`.
    fn read_from(path: &Path) -> Option<Self> {
        std::fs::read_to_string(path).ok().map(|text| Self { text })
    }

    /// Who holds the lock file `path`: `None` when that cannot be told (the
    /// file cannot be looked at). A file that does not exist is held by
    /// no one: no acting agent ever ran there, or the folder was replaced.
    pub fn holder(&self, path: &Path) -> Option<JournalLock> {
        let file = match std::fs::symlink_metadata(path) {
            Ok(meta) => Some(device_and_inode(&meta)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        let holder = file.and_then(|id| self.holder_of(&id));
        Some(JournalLock {
            path: path.display().to_string(),
            held: holder.is_some(),
            pid: holder.flatten(),
        })
    }

    /// The holder of a lock on the file `id` (`MAJOR:MINOR:INODE`):
    /// `Some(None)` when held by a process this one cannot see.
    fn holder_of(&self, id: &str) -> Option<Option<u32>> {
        self.text.lines().find_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 1234 fe:00:10010648 0 EOF`; a
            // process waiting for the lock has a line of its own, with
            // `->` after the number, and holds nothing.
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"->") || fields.get(5) != Some(&id) {
                return None;
            }
            // A holder out of this PID namespace shows as 0; an open file
            // description's lock as -1.
            Some(
                fields
                    .get(4)
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .filter(|&pid| pid > 0),
            )
        })
    }
}

/// `MAJOR:MINOR:INODE` of a file, as the table writes them.
#[cfg(target_os = "linux")]
fn device_and_inode(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    Some(format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    ))
}

/// Not told where the table's numbering is not Linux's.
#[cfg(not(target_os = "linux"))]
fn device_and_inode(_meta: &std::fs::Metadata) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> LockTable {
        LockTable {
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_lock_is_found_by_device_and_inode_and_a_waiter_holds_nothing() {
        let locks = table(
            "1: POSIX  ADVISORY  WRITE 812 fe:00:77 0 EOF\n\
             2: FLOCK  ADVISORY  WRITE 4321 fe:00:10010648 0 EOF\n\
             2: -> FLOCK  ADVISORY  WRITE 999 fe:00:10010649 0 EOF\n\
             3: FLOCK  ADVISORY  WRITE 0 103:02:5 0 EOF\n\
             4: OFDLCK ADVISORY  READ  -1 00:1a:6 0 EOF\n",
        );
        assert_eq!(locks.holder_of("fe:00:10010648"), Some(Some(4321)));
        // Another inode on the same device, a prefix of a held one.
        assert_eq!(locks.holder_of("fe:00:1001064"), None);
        // Only a waiter for it.
        assert_eq!(locks.holder_of("fe:00:10010649"), None);
        // Held, by a process out of sight.
        assert_eq!(locks.holder_of("103:02:5"), Some(None));
        assert_eq!(locks.holder_of("00:1a:6"), Some(None));
        // A POSIX lock counts: a network file system's flock.
        assert_eq!(locks.holder_of("fe:00:77"), Some(Some(812)));
        assert_eq!(table("").holder_of("fe:00:77"), None);
    }

    /// The real table, with a real journal lock of this process: held,
    /// by this process, while the journal is; free once it is dropped;
    /// and a lock file that is not there is held by no one.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernels_table_shows_a_journal_held_while_it_is() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = super::super::StateStore::open(dir.path()).expect("the state folder");
        let lock = dir.path().join("orders.lock");
        let journal = state.journal("orders").expect("the journal");
        let held = LockTable::read()
            .expect("/proc/locks")
            .holder(&lock)
            .expect("told");
        assert_eq!(
            held,
            JournalLock {
                path: lock.display().to_string(),
                held: true,
                pid: Some(std::process::id()),
            }
        );
        drop(journal);
        let free = LockTable::read().expect("/proc/locks").holder(&lock);
        assert_eq!(free.map(|l| (l.held, l.pid)), Some((false, None)));
        let none = LockTable::read()
            .expect("/proc/locks")
            .holder(&dir.path().join("never.lock"));
        assert_eq!(none.map(|l| l.held), Some(false));
    }

    #[test]
    fn no_table_tells_nothing() {
        assert!(LockTable::read_from(Path::new("/no/such/locks")).is_none());
    }
}
