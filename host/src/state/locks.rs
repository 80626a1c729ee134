//! Who holds a journal's lock now: `status` tells from it whether an
//! acting agent runs for an application, so that a journal left at
//! `updating` by an agent that stopped is not read as an update being
//! followed.
//!
//! An acting agent holds `<state_dir>/<application>.lock` under an
//! exclusive `flock` for as long as its controller runs
//! ([`super::StateStore`]); the lock goes with the process, however it
//! ends. The kernel's table of locks (`/proc/locks` on Linux) says who
//! holds what, with the holder's process id, without touching the lock. A
//! lock file is matched there by device and inode, as the table writes them
//! (`MAJOR:MINOR:INODE`, the numbers in hex, the inode in decimal),
//! whatever kind of lock it shows (a network file system may turn an
//! `flock` into a POSIX lock).
//!
//! The table leaves out the locks of processes out of the reader's PID
//! namespace: an agent in one container, `status` in another beside it on
//! the same volume. So a lock the table does not show is tried: taken
//! shared, without waiting, and let go at once. An agent starting at that
//! instant finds its lock taken for a few microseconds, which it waits out
//! (`take_lock` tries for 250 ms before it calls the lock another agent's).
//! Off Linux there is no table, and trying is all there is.
//!
//! Where the table cannot name the holder, the lock file does: an agent
//! that takes a lock writes into the file who it is ([`LockOwner`]: its
//! process id, its host name, since when), and a lock is told with it:
//! its holder, or, when no one holds it, the last agent that did. In a
//! container the host name is the container's, which is what finds the
//! agent from another one.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The kernel's table of locks, read once for every lock file asked about
/// (empty where there is none).
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
    /// The holder's process id, when the kernel's table shows it (not for
    /// a holder in another PID namespace, another container's, or off
    /// Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Who the lock file names: the holder, when it is held; else the last
    /// agent that held it (the file keeps its words after the agent
    /// stops, however it stopped). Its process id is that agent's own
    /// namespace's: a reader outside a container sees the container's
    /// agent under another number in `pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<LockOwner>,
}

/// Who holds a journal's lock, in the holder's own words: what an agent
/// writes into the lock file when it takes the lock, one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Its process id, as its own PID namespace numbers it (a container's
    /// agent is often 1).
    pub pid: u32,
    /// Its host name (a container's own, often the container's id).
    pub host: String,
    /// When it took the lock, in ms since the epoch.
    pub since_ms: i64,
}

/// The most of a lock file that is read for its owner: a line of a process
/// id, a host name (at most 255 bytes) and a time.
const OWNER_MAX_BYTES: usize = 1024;

impl LockOwner {
    /// This process, taking a lock now.
    pub fn this_process() -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            since_ms: crate::clock::Clock::system().now_ms(),
        }
    }

    /// Writes this owner into the lock file `file`, replacing what was
    /// there (a previous holder's words).
    pub fn write_to(&self, file: &std::fs::File) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let mut line = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = file;
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.write_all(&line)
    }

    /// The owner the lock file at `path` names, if it can be read and
    /// names one (an agent before this one wrote nothing; a holder that
    /// is writing it just now may leave half a line, which names none).
    /// At most 1 KiB is read (more names no one), and a symbolic link is not
    /// followed.
    pub fn read(path: &Path) -> Option<Self> {
        use std::io::Read;
        let mut bytes = Vec::new();
        super::open_no_follow(path)
            .ok()?
            .take(OWNER_MAX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() > OWNER_MAX_BYTES {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// The owner in words: `process 48213 on host ip-10-0-0-5, since
    /// 2026-12-04T02:30:00Z`.
    pub fn words(&self) -> String {
        format!(
            "{}, since {}",
            self.who(),
            crate::telemetry::text::iso(self.since_ms)
        )
    }

    /// Who, without when: `process 48213 on host ip-10-0-0-5`.
    pub fn who(&self) -> String {
        format!(
            "process {} on host {}",
            self.pid,
            crate::telemetry::text::one_line(&self.host)
        )
    }
}

/// This machine's (or container's) host name; `unknown` where it cannot
/// be told.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is writable for its whole length, which is
        // passed; the name is cut at its first NUL below, and a name that
        // fills the buffer without one is cut at its end.
        if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0 {
            let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
            let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl LockTable {
    /// Reads the table; an empty one where there is none to read (not
    /// Linux, no `/proc`).
    pub fn read() -> Self {
        Self::read_from(Path::new("/proc/locks"))
    }

    /// Reads the table from `path`.
    fn read_from(path: &Path) -> Self {
        Self {
            text: std::fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// Who holds the lock file `path`: the table's holder, else what
    /// trying the lock finds; `None` when neither tells (the file cannot
    /// be opened or locked). A file that does not exist is held by no one:
    /// no acting agent ever ran there, or the folder was replaced.
    pub fn holder(&self, path: &Path) -> Option<JournalLock> {
        let shown = std::fs::symlink_metadata(path)
            .ok()
            .and_then(|meta| device_and_inode(&meta))
            .and_then(|id| self.holder_of(&id));
        let (held, pid) = match shown {
            Some(pid) => (true, pid),
            None => (tried(path)?, None),
        };
        let owner = LockOwner::read(path);
        Some(JournalLock {
            path: path.display().to_string(),
            held,
            pid,
            owner,
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

/// Whether a process holds the lock file `path`, found by taking its lock
/// shared without waiting and letting it go at once: `Some(false)` for a
/// file that is not there, `None` when it cannot be opened or locked.
fn tried(path: &Path) -> Option<bool> {
    let file = match super::open_no_follow(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    match file.try_lock_shared() {
        // Let go when `file` closes, at once.
        Ok(()) => Some(false),
        Err(std::fs::TryLockError::WouldBlock) => Some(true),
        Err(std::fs::TryLockError::Error(_)) => None,
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
        let before = LockOwner::this_process().since_ms;
        let journal = state.journal("orders").expect("the journal");
        let held = LockTable::read().holder(&lock).expect("told");
        let owner = held.owner.clone().expect("the agent wrote who it is");
        assert_eq!(
            held,
            JournalLock {
                path: lock.display().to_string(),
                held: true,
                pid: Some(std::process::id()),
                owner: Some(owner.clone()),
            }
        );
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.host, host_name());
        assert!(
            owner.since_ms >= before && owner.since_ms <= LockOwner::this_process().since_ms,
            "{owner:?} took the lock between {before} and now"
        );
        // A table that does not show it (the holder in another PID
        // namespace): trying the lock finds it held, by no one in sight,
        // and the file names it.
        let hidden = LockTable::default().holder(&lock).expect("told");
        assert_eq!(
            (hidden.held, hidden.pid, hidden.owner),
            (true, None, Some(owner.clone()))
        );
        // Another agent for the same journal is refused, told by whom.
        let refused = state.journal("orders").expect_err("held");
        assert!(
            matches!(
                &refused,
                super::super::StateError::Locked { holder: Some(h), .. } if *h == owner
            ),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains(&format!(
                "is locked by another process (process {} on host {}, since ",
                owner.pid, owner.host
            )),
            "{refused}"
        );
        drop(journal);
        for table in [LockTable::read(), LockTable::default()] {
            // The file still names the last holder, which holds nothing
            // now.
            let free = table.holder(&lock);
            assert_eq!(
                free.map(|l| (l.held, l.pid, l.owner)),
                Some((false, None, Some(owner.clone())))
            );
            let none = table.holder(&dir.path().join("never.lock"));
            assert_eq!(none.map(|l| l.held), Some(false));
        }
    }

    /// An agent that starts while `status` tries its lock waits the moment
    /// out instead of calling the lock another agent's; another agent's
    /// lock, held for good, is refused all the same (after the patience).
    #[test]
    fn a_journal_waits_out_a_lock_tried_for_a_moment() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = super::super::StateStore::open(dir.path()).expect("the state folder");
        let lock = dir.path().join("orders.lock");
        std::fs::write(&lock, b"").expect("the lock file");
        let tried = std::fs::File::open(&lock).expect("opened");
        tried.try_lock_shared().expect("taken shared");
        let let_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(tried);
        });
        let journal = state.journal("orders").expect("the lock, once let go");
        let_go.join().expect("the thread ends");
        let started = std::time::Instant::now();
        let refused = state.journal("orders").expect_err("held by the first");
        assert!(
            matches!(refused, super::super::StateError::Locked { .. }),
            "{refused:?}"
        );
        assert!(started.elapsed() >= super::super::LOCK_PATIENCE);
        drop(journal);
    }

    /// A lock file is read for its owner only when it holds one JSON line
    /// of one: nothing (an older agent's), half a line (being written),
    /// anything else or too much names no one; a new holder's line
    /// replaces a longer old one whole.
    #[test]
    fn a_lock_file_names_its_owner_only_when_it_says_so_whole() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("orders.lock");
        let owner = LockOwner {
            pid: 1,
            host: "7f9c2a1b".to_owned(),
            since_ms: 1_764_817_200_000,
        };
        let line = format!("{}\n", serde_json::to_string(&owner).unwrap());
        for (text, named) in [
            (String::new(), false),
            (line[..line.len() / 2].to_owned(), false),
            ("not json\n".to_owned(), false),
            (
                format!(
                    "{{\"pid\": 1, \"host\": \"{}\", \"since_ms\": 0}}",
                    "x".repeat(2000)
                ),
                false,
            ),
            (line.clone(), true),
        ] {
            std::fs::write(&path, &text).unwrap();
            assert_eq!(
                LockOwner::read(&path),
                named.then(|| owner.clone()),
                "{text:?}"
            );
        }
        assert_eq!(
            owner.words(),
            "process 1 on host 7f9c2a1b, since 2025-12-04T03:00:00Z"
        );

        let long = LockOwner {
            host: "h".repeat(200),
            ..owner.clone()
        };
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        long.write_to(&file).unwrap();
        owner.write_to(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        assert_eq!(LockOwner::read(&dir.path().join("none.lock")), None);
    }

    #[test]
    fn no_table_shows_nothing() {
        let table = LockTable::read_from(Path::new("/no/such/locks"));
        assert_eq!(table.holder_of("fe:00:77"), None);
    }
}
