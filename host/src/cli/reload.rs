//! `flinkscale reload`: sends the running agent a SIGHUP (a configuration
//! reload, which also lifts KPU ceilings and refused sizes, and with
//! `--resume NAME` ends that application's stand-down) from a shell that
//! has no `kill`, the container image's
//! (`FROM scratch`): `kubectl exec deploy/flinkscale -- flinkscale reload
//! --config FILE`, or ECS Exec. The agent is the process that holds the
//! journal locks of the configuration's applications in its `state_dir`, as
//! the kernel's lock table shows it; the file is checked first, as the
//! agent will check it, so that a file the agent would refuse is refused
//! here, with its errors located, and no signal is sent. Plugins are not
//! loaded here: the agent does not refuse a file for an application whose
//! plugin will not load or names ids the application lacks, it keeps that
//! application's previous settings and says so (its log, `/readyz`,
//! `flinkscale_config_reload_not_applied`); `validate` checks them.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;

use super::commands::EX_CONFIG;
use crate::config::load;
use crate::state::LockTable;

/// `flinkscale reload`'s arguments.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The configuration file the agent runs with (`--config FILE` or
    /// `$FLINKSCALE_CONFIG`): checked, and its `state_dir` searched for
    /// the agent.
    #[command(flatten)]
    pub config: super::conventions::ConfigFile,
    /// Ends the stand-down of this application (repeat for several) with
    /// the reload: the other writer that kept undoing the agent's rescales
    /// was stopped. A reload without it leaves every stand-down in force.
    #[arg(long, value_name = "APPLICATION")]
    pub resume: Vec<String>,
}

/// Runs `flinkscale reload`: 0 once the signal is sent; 78 when the file
/// is invalid (nothing sent); 2 when `--resume` names no application of
/// the file (nothing sent); 1 when no agent (or more than one) holds the
/// state folder's locks, a resume request cannot be written, or the
/// signal cannot be sent.
pub fn run(args: &ReloadArgs) -> ExitCode {
    let path = match super::conventions::config_path(args.config.config.as_deref(), None, false) {
        Ok(path) => path,
        Err(error) => return super::config_path_error(&error),
    };
    let loaded = match load::load(&path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("error: not sent: the agent would refuse this file and keep the one it runs");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let names: Vec<&str> = loaded
        .config
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    if let Some(unknown) = args.resume.iter().find(|r| !names.contains(&r.as_str())) {
        eprintln!(
            "error: --resume {unknown:?}: no application of that name in {} (valid: {}): not sent",
            path.display(),
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(2);
    }
    let locks = LockTable::read();
    let mut holders = BTreeSet::new();
    let mut unseen = false;
    // Every journal lock in the folder, not only those of the file's
    // applications: the agent holds the locks of the configuration it
    // runs, and the new file may pause, rename or drop every one of them.
    let lock_files: Vec<std::path::PathBuf> = std::fs::read_dir(&loaded.state_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "lock"))
                .collect()
        })
        .unwrap_or_default();
    for lock_file in &lock_files {
        match locks.holder(lock_file) {
            Some(lock) if lock.held => match lock.pid {
                Some(pid) => {
                    holders.insert(pid);
                }
                None => unseen = true,
            },
            _ => {}
        }
    }
    let pid = match holders.len() {
        1 => holders.into_iter().next().unwrap_or_default(),
        0 if unseen => {
            eprintln!(
                "error: the agent holding {}'s locks runs in another PID namespace (another \
                 container): run this command inside its container (kubectl exec, ECS Exec)",
                loaded.state_dir.display()
            );
            return ExitCode::FAILURE;
        }
        0 => {
            eprintln!(
                "error: no running agent holds a journal lock in {} (an agent holds one for each \
                 application it acts on; a dry-run agent, or one whose applications are all \
                 paused, holds none: send it SIGHUP with kill)",
                loaded.state_dir.display()
            );
            return ExitCode::FAILURE;
        }
        _ => {
            let pids: Vec<String> = holders.iter().map(u32::to_string).collect();
            eprintln!(
                "error: several processes hold the locks in {} ({}): not sent",
                loaded.state_dir.display(),
                pids.join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    // Asked before the signal, which reads them; taken back if it is not
    // sent, lest a later reload (one made for another reason) take them.
    let requests: Vec<std::path::PathBuf> = args
        .resume
        .iter()
        .map(|name| crate::state::resume_request_path(&loaded.state_dir, name))
        .collect();
    let take_back = |written: &[std::path::PathBuf]| {
        for request in written {
            let _ = std::fs::remove_file(request);
        }
    };
    for (k, request) in requests.iter().enumerate() {
        if let Err(error) = std::fs::write(request, b"") {
            take_back(&requests[..k]);
            eprintln!(
                "error: --resume {:?}: cannot write {}: {error} (run it as the agent's user, \
                 or as root): not sent",
                args.resume[k],
                request.display()
            );
            return ExitCode::FAILURE;
        }
    }
    match send_hangup(pid) {
        Ok(()) => {
            if !args.resume.is_empty() {
                println!(
                    "Asked to resume {}: the log says `Stand-down lifted; updates are sent \
                     again.` for each that had stood down.",
                    args.resume.join(", ")
                );
            }
            println!(
                "Sent SIGHUP to the agent (process {pid}, holding the locks in {}): it reloads \
                 its configuration file; its log says `Configuration reloaded.` or `Configuration \
                 reload refused`. The plugins were not tried here (`flinkscale validate` tries \
                 them): an application whose new plugins do not load keeps its previous \
                 settings, and the log's `not_applied` names it.",
                loaded.state_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            take_back(&requests);
            eprintln!("error: cannot send SIGHUP to process {pid}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sends SIGHUP to process `pid`.
fn send_hangup(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
