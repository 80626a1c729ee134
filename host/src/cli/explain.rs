//! `flinkscale status` and `flinkscale explain`: what the agent did and
//! why, read from the files it keeps in `state_dir` (the journals and the
//! decision history, [`crate::telemetry::history`]), so that they answer
//! whether the agent runs or not. `GET /status` and `GET /explain` answer
//! the same JSON over the agent's listener.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::commands::EX_CONFIG;
use crate::config::load;
use crate::target::Words;
use crate::telemetry::history;

/// `flinkscale status`'s arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration file (its `state_dir` and applications).
    #[arg(long, short, env = "FLINKSCALE_CONFIG")]
    pub config: PathBuf,
    /// Print one JSON object (as `GET /status` answers) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `flinkscale explain`'s arguments.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The configuration file (its `state_dir` and applications).
    #[arg(long, short, env = "FLINKSCALE_CONFIG")]
    pub config: PathBuf,
    /// The application, as named in the configuration.
    #[arg(long, short)]
    pub application: String,
    /// How many of the most recent evaluations to show.
    #[arg(long, default_value_t = 10)]
    pub last: usize,
    /// Print one JSON object (as `GET /explain` answers) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `flinkscale status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Small files, but file I/O all the same: off the async runtime.
    tokio::task::spawn_blocking(move || {
        let loaded = match load::load(&args.config) {
            Ok(loaded) => loaded,
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::from(EX_CONFIG));
            }
        };
        note_absent_state_dir(&loaded.state_dir);
        let names = application_names(&loaded.config);
        let status = history::status(&loaded.state_dir, &names, wall_ms());
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
        let loaded = match load::load(&args.config) {
            Ok(loaded) => loaded,
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::from(EX_CONFIG));
            }
        };
        note_absent_state_dir(&loaded.state_dir);
        let names = application_names(&loaded.config);
        let explanation = history::explain(
            &loaded.state_dir,
            &names,
            &args.application,
            Some(args.last),
        )?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&explanation)?);
        } else {
            print!("{}", history::explain_text(&explanation));
        }
        Ok(ExitCode::SUCCESS)
    })
    .await?
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

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
