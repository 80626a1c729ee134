//! `flinkscale import`: configurations from an existing autoscaler (see
//! [`crate::import`]). Kept apart from the other subcommands so that each
//! family of commands has its own file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::import::cfn::{self, ImportError, ParameterValues};

/// What to import from.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Write the flinkscale configuration equivalent to a stack of the
    /// reference design (CloudWatch alarms -> Step Functions -> Lambda),
    /// from the CloudFormation template it was deployed with and the
    /// stack's parameter values (template defaults for the others).
    Cfn {
        /// The template the stack was deployed from (JSON).
        template: PathBuf,
        /// The stack's parameters: an `aws cloudformation` parameters file
        /// ([{"ParameterKey": ..., "ParameterValue": ...}]) or
        /// `describe-stacks` output for the stack.
        #[arg(long, value_name = "FILE")]
        parameters: Option<PathBuf>,
        /// One parameter value, overriding the file's; repeatable.
        #[arg(long = "parameter", value_name = "KEY=VALUE")]
        parameter: Vec<String>,
        /// Write the configuration to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs `flinkscale import ...`.
pub async fn run(command: ImportCommand) -> anyhow::Result<ExitCode> {
    // Small files, but file I/O all the same: off the async runtime.
    tokio::task::spawn_blocking(move || match command {
        ImportCommand::Cfn {
            template,
            parameters,
            parameter,
            output,
        } => cfn_blocking(
            &template,
            parameters.as_deref(),
            &parameter,
            output.as_deref(),
        ),
    })
    .await?
}

fn read(file: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(file).map_err(|source| ImportError::Read {
        file: file.to_owned(),
        source,
    })
}

fn cfn_blocking(
    template: &Path,
    parameters: Option<&Path>,
    assignments: &[String],
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut values = ParameterValues::new();
    if let Some(file) = parameters {
        values.add_file(file, &read(file)?)?;
    }
    for a in assignments {
        values.add_assignment(a)?;
    }
    let imported = cfn::import(template, &read(template)?, &values)?;
    let text = imported.to_checked_toml()?;
    match output {
        Some(file) => std::fs::write(file, text)
            .with_context(|| format!("{}: cannot write the configuration", file.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
