//! The process's open-files limit, raised at the start of `flinkscale run`.
//!
//! An agent holds one journal file open per application, and its AWS
//! clients one connection per call in flight (a tick of 200 applications
//! opens about 140 to the emulator): about two files per application. The
//! usual soft limit of 1024 (most shells', and systemd's for a service)
//! would stop an agent of about 450 applications with "Too many open
//! files" while the kernel would allow far more. Like Go's runtime and most
//! servers, the agent raises its soft limit to the hard one (the most an
//! unprivileged process may take) and warns when even that is short of
//! what its applications need.

/// Files the agent opens beyond its applications' (the runtime, the
/// state folder's lock, the metrics server, the plugin cache).
const BASE_FILES: u64 = 64;

/// Files one application takes: its journal and a connection.
const FILES_PER_APPLICATION: u64 = 2;

/// The open files `applications` applications need, roughly.
pub fn files_needed(applications: usize) -> u64 {
    BASE_FILES.saturating_add(FILES_PER_APPLICATION.saturating_mul(applications as u64))
}

/// The soft limit on open files before and after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now.
    pub after: u64,
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit
/// (to 2^20, Linux's default `nr_open`, when the hard limit is unlimited),
/// and says what it was and is. Never lowers it. Without `setrlimit` (not
/// Unix) it changes nothing and says so with `None`.
pub fn raise_open_files() -> std::io::Result<Option<OpenFiles>> {
    #[cfg(unix)]
    {
        unix::raise().map(Some)
    }
    #[cfg(not(unix))]
    {
        Ok(None)
    }
}

#[cfg(unix)]
mod unix {
    use super::OpenFiles;

    /// The most a process may ask for when its hard limit is unlimited.
    const UNLIMITED_CAP: u64 = 1 << 20;

    fn get() -> std::io::Result<libc::rlimit> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(limit)
    }

    pub(super) fn raise() -> std::io::Result<OpenFiles> {
        let limit = get()?;
        let before = limit.rlim_cur as u64;
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            UNLIMITED_CAP
        } else {
            limit.rlim_max as u64
        };
        if limit.rlim_cur == libc::RLIM_INFINITY || before >= target {
            return Ok(OpenFiles {
                before,
                after: before,
            });
        }
        let raised = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OpenFiles {
            before,
            after: get()?.rlim_cur as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn limit() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into the struct it is given.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_never_lowered() {
        let hard = limit().rlim_max;
        // Lowered a little first (allowed to anyone, and still far above
        // what the tests of this process use), so that there is something
        // to raise.
        if hard != libc::RLIM_INFINITY && hard > 4096 {
            let lowered = libc::rlimit {
                rlim_cur: hard - 1,
                rlim_max: hard,
            };
            // SAFETY: setrlimit reads the struct it is given.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
            let raised = raise_open_files()
                .expect("the limit can be raised")
                .expect("on Unix");
            assert_eq!(
                raised,
                OpenFiles {
                    before: hard - 1,
                    after: hard
                }
            );
        }
        let first = raise_open_files()
            .expect("the limit can be read")
            .expect("on Unix");
        assert!(first.after >= first.before);
        assert_eq!(limit().rlim_cur, first.after);
        if hard != libc::RLIM_INFINITY {
            assert_eq!(limit().rlim_cur, hard, "the soft limit is the hard one");
        }
        // A second call finds it raised and leaves it.
        let second = raise_open_files().expect("again").expect("on Unix");
        assert_eq!(
            second,
            OpenFiles {
                before: first.after,
                after: first.after
            }
        );
    }

    #[test]
    fn two_files_per_application_beside_the_agents_own() {
        assert_eq!(files_needed(0), 64);
        assert_eq!(files_needed(200), 464);
        assert_eq!(files_needed(480), 1024);
    }
}
