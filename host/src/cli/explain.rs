//! `flinkscale status` and `flinkscale explain`: what the agent did and
//! why, read from the files it keeps in `state_dir` (the journals and the
//! decision history, [`crate::telemetry::history`]), so that they answer
//! whether the agent runs or not. `GET /status` and `GET /explain` answer
//! the same JSON over the agent's listener.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::commands::EX_CONFIG;

use crate::clock::system_ms;
use crate::config::load;
use crate::target::Words;
use crate::telemetry::history;

/// `flinkscale status`'s arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration file, for its `state_dir` and applications
    /// (`--config FILE` or `$FLINKSCALE_CONFIG`).
    #[command(flatten)]
    pub config: super::conventions::ConfigFile,
    /// Print one JSON object (as `GET /status` answers) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `flinkscale explain`'s arguments.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The configuration file, for its `state_dir` and applications
    /// (`--config FILE` or `$FLINKSCALE_CONFIG`).
    #[command(flatten)]
    pub config: super::conventions::ConfigFile,
    /// The application, as named in the configuration.
    #[arg(long, short)]
    pub application: String,
    /// How many of the most recent evaluations to show (1 or more).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub last: u32,
    /// Print one JSON object (as `GET /explain` answers) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `flinkscale status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Small files, but file I/O all the same: off the async runtime.
    tokio::task::spawn_blocking(move || {
        let Some(Reading {
            state_dir,
            names,
            paused,
        }) = reading(args.config.config.as_deref())
        else {
            return Ok(ExitCode::from(EX_CONFIG));
        };
        note_absent_state_dir(&state_dir);
        let mut status = history::status(&state_dir, &names, system_ms());
        history::mark_paused(&mut status, &paused);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", history::status_text(&status));
        }
        Ok(ExitCode::SUCCESS)
    })
    .await?
}

/// Runs `flinkscale explain`.
pub async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || {
        let Some(Reading {
            state_dir, names, ..
        }) = reading(args.config.config.as_deref())
        else {
            return Ok(ExitCode::from(EX_CONFIG));
        };
        note_absent_state_dir(&state_dir);
        let explanation = match history::explain(
            &state_dir,
            &names,
            &args.application,
            Some(usize::try_from(args.last).unwrap_or(usize::MAX)),
        ) {
            Ok(explanation) => explanation,
            // A name the configuration does not have is a wrong value,
            // not the world failing: exit 78 as for any such value.
            Err(error @ history::ReadError::UnknownApplication { .. }) => {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(EX_CONFIG));
            }
            Err(error) => return Err(error.into()),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&explanation)?);
        } else {
            print!("{}", history::explain_text(&explanation));
        }
        Ok(ExitCode::SUCCESS)
    })
    .await?
}

/// Where `status` and `explain` read, and for which applications.
struct Reading {
    /// The state folder, absolute.
    state_dir: PathBuf,
    /// The applications' names and their targets' words.
    names: Vec<(String, Words)>,
    /// The applications whose `mode` is `"paused"`.
    paused: Vec<String>,
}

/// What `status` and `explain` read for the configuration file `flag`
/// (`--config`), else `$FLINKSCALE_CONFIG`, found as every command that
/// reads one finds it ([`super::conventions::config_path`]).
/// A valid file gives its `state_dir` and applications. An invalid one
/// (say, edited badly and sent a SIGHUP that the running agent refused,
/// keeping its last valid configuration) is no reason to report nothing
/// when the operator most needs to know where the agent is: its errors go
/// to stderr, located as `validate` locates them, and the state is read
/// from whatever of the file still reads ([`lenient_reading`]). A file
/// that cannot be read at all (a mistyped path) is `None` after saying
/// why: its folder is no better guess than the current one.
fn reading(flag: Option<&Path>) -> Option<Reading> {
    let config = match super::conventions::config_path(flag, None, false) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return None;
        }
    };
    let config = config.as_path();
    match load::load(config) {
        Ok(loaded) => Some(Reading {
            names: application_names(&loaded.config),
            paused: loaded
                .config
                .applications
                .iter()
                .filter(|a| a.mode == crate::config::Mode::Paused)
                .map(|a| a.name.clone())
                .collect(),
            state_dir: loaded.state_dir,
        }),
        Err(errors) => {
            eprintln!("{errors}");
            let (reading, how) = lenient_reading(config);
            eprintln!(
                "note: {} is invalid (a running agent refuses it and keeps its last valid configuration; `flinkscale validate` checks the file): reporting from state_dir {} ({how})",
                config.display(),
                reading.state_dir.display()
            );
            Some(reading)
        }
    }
}

/// [`Reading`] from an invalid configuration file, and how it was found:
/// `[agent] state_dir` if the file is TOML and that value a path, else the
/// documented default (`$STATE_DIRECTORY`, else `state` beside the file);
/// the `[[application]]` tables that have a name (a `target = "flink"`
/// one in a Flink job's words; a `mode = "paused"` one paused), else
/// every journal in the folder.
fn lenient_reading(config: &Path) -> (Reading, &'static str) {
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let document = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok());
    let configured = document
        .as_ref()
        .and_then(|d| d.get("agent")?.get("state_dir")?.as_str())
        .filter(|dir| !dir.is_empty());
    let state_dir = base_dir.join(configured.map_or_else(
        || crate::config::AgentConfig::default().state_dir,
        PathBuf::from,
    ));
    let tables = document
        .as_ref()
        .and_then(|d| d.get("application")?.as_array())
        .into_iter()
        .flatten();
    let paused = tables
        .clone()
        .filter(|app| app.get("mode").and_then(toml::Value::as_str) == Some("paused"))
        .filter_map(|app| Some(app.get("name")?.as_str()?.to_owned()))
        .collect();
    let mut names: Vec<(String, Words)> = tables
        .filter_map(|app| {
            let name = app.get("name")?.as_str()?.to_owned();
            // A name that is no application's (`../secret`) would make a
            // path out of the state folder: left out.
            if !crate::config::validate::is_application_name(&name) {
                return None;
            }
            let words = match app.get("target").and_then(toml::Value::as_str) {
                Some("flink") => Words::Flink,
                _ => Words::Msf,
            };
            Some((name, words))
        })
        .collect();
    let from_file = !names.is_empty();
    if !from_file {
        names = journal_names(&state_dir);
    }
    let how = match (configured.is_some(), from_file) {
        (true, true) => "the file's state_dir and applications",
        (true, false) => "the file's state_dir; the applications of its journals",
        (false, true) => "the default state_dir; the file's applications",
        (false, false) => "the default state_dir; the applications of its journals",
    };
    (
        Reading {
            state_dir,
            names,
            paused,
        },
        how,
    )
}

/// The applications that have a journal (`NAME.json`, NAME an
/// application name: not `.json`, not a temporary) in `state_dir`,
/// counted in KPU: a journal does not say its target.
fn journal_names(state_dir: &Path) -> Vec<(String, Words)> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut names: Vec<(String, Words)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
            crate::config::validate::is_application_name(&name).then_some((name, Words::Msf))
        })
        .collect();
    names.sort();
    names
}

/// Says on stderr that `state_dir` does not exist, so that "no decision
/// recorded yet" is not taken for the agent's word: beside a systemd unit
/// or in the image, whose agent keeps its state in `$STATE_DIRECTORY`, a
/// shell without that variable reads `state` beside the configuration.
fn note_absent_state_dir(state_dir: &Path) {
    if !state_dir.exists() {
        eprintln!(
            "note: state_dir {} does not exist: no agent has kept its state there. An agent \
             whose configuration sets no state_dir keeps it in $STATE_DIRECTORY when its \
             service manager sets one (the systemd unit's /var/lib/flinkscale): run this \
             command with the same STATE_DIRECTORY, or set state_dir",
            state_dir.display()
        );
    }
}

/// The configured applications' names and their targets' words, in the
/// configuration's order.
pub fn application_names(config: &crate::config::Config) -> Vec<(String, Words)> {
    config
        .applications
        .iter()
        .map(|a| (a.name.clone(), Words::from(a.target)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_application_names_are_taken_for_journals() {
        let dir = tempfile::tempdir().expect("a temp dir");
        for file in [
            "orders.json",
            ".json",
            "a b.json",
            "payments.json",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(file), "{}").expect("written");
        }
        let names: Vec<String> = journal_names(dir.path())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["orders", "payments"]);
    }
}
