//! The command-line interface: `flinkscale run | once | validate`.
//!
//! This is the binary's edge: errors become `anyhow` reports and exit codes
//! here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

mod commands;

/// A scaling agent for Apache Flink applications, with sandboxed
/// WebAssembly policy plugins.
#[derive(Debug, Parser)]
#[command(name = "flinkscale", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: one controller per `[[application]]`, until SIGTERM or
    /// ctrl-c.
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Decide and log, but never call UpdateApplication.
        #[arg(long)]
        dry_run: bool,
    },
    /// Evaluate every application once, print what was seen and decided, and
    /// act on it unless `--dry-run`.
    Once {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Decide and print, but never call UpdateApplication.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object per application instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay a scenario against a policy on a virtual clock (the production
    /// controller and plugin host, the workload model of SIMULATION.md) and
    /// print the scores.
    Simulate {
        /// The scenario file (see tests/scenarios/).
        #[arg(long)]
        scenario: PathBuf,
        /// A policy preset (seed, msf-builtin, hold, target-tracking, rate),
        /// or a plugin name or .wasm path with the standard metrics.
        #[arg(long, default_value = "rate")]
        policy: String,
        /// Parameters overriding the preset's, as a JSON object.
        #[arg(long)]
        params: Option<String>,
        /// An agent configuration instead of a preset (its applications
        /// must be in the scenario).
        #[arg(long, conflicts_with_all = ["policy", "params"])]
        config: Option<PathBuf>,
        /// Where the plugins are (default: where `cargo plugins` puts them).
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and report every error at once; exit 1 if
    /// there is any.
    Validate {
        /// The configuration file.
        config: PathBuf,
        /// Also instantiate and configure every plugin, and check that AWS
        /// credentials can be found.
        #[arg(long)]
        environment: bool,
    },
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config, dry_run } => commands::run(&config, dry_run).await,
            Command::Once {
                config,
                dry_run,
                json,
            } => commands::once(&config, dry_run, json).await,
            Command::Simulate {
                scenario,
                policy,
                params,
                config,
                plugin_dir,
                json,
            } => {
                commands::simulate(commands::SimulateArgs {
                    scenario,
                    policy,
                    params,
                    config,
                    plugin_dir,
                    json,
                })
                .await
            }
            Command::Validate {
                config,
                environment,
            } => commands::validate(&config, environment).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
