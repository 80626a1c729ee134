//! `flinkscale import`: configurations from an existing autoscaler (see
//! [`crate::import`]). Kept apart from the other subcommands so that each
//! family of commands has its own file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::commands::EX_CONFIG;
use crate::import::cfn::{self, ImportError, ParameterValues};

/// What to import from.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Write the flinkscale configuration equivalent to a stack of the
    /// reference design (CloudWatch alarms -> Step Functions -> Lambda)
    /// from the stack's parameter values; the design's template is built
    /// in (its defaults fill the parameters not given).
    Cfn {
        /// The stack's parameters: an `aws cloudformation` parameters file
        /// ([{"ParameterKey": ..., "ParameterValue": ...}]) or
        /// `describe-stacks` output for the stack.
        #[arg(value_name = "PARAMS.json")]
        parameters: PathBuf,
        /// The MSF application to scale, instead of the file's
        /// AmazonManagedFlinkApplicationName.
        #[arg(long, value_name = "NAME")]
        application_name: Option<String>,
        /// The template the stack was deployed from (JSON), when it is not
        /// the built-in one (another published version, a local change).
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
        /// One parameter value, overriding the file's; repeatable.
        #[arg(long = "parameter", value_name = "KEY=VALUE")]
        parameter: Vec<String>,
        /// Write the configuration to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs `flinkscale import ...`: exit 0, [`EX_CONFIG`] when the input is
/// wrong (said on stderr), or an error (exit 1) when the output cannot be
/// written.
pub async fn run(command: ImportCommand) -> anyhow::Result<ExitCode> {
    // Small files, but file I/O all the same: off the async runtime.
    tokio::task::spawn_blocking(move || match command {
        ImportCommand::Cfn {
            parameters,
            application_name,
            template,
            parameter,
            output,
        } => {
            let text = match cfn_text(
                &parameters,
                application_name.as_deref(),
                template.as_deref(),
                &parameter,
            ) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(EX_CONFIG));
                }
            };
            write_output(output.as_deref(), &text)
        }
    })
    .await?
}

fn read(file: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(file).map_err(|source| ImportError::Read {
        file: file.to_owned(),
        source,
    })
}

/// The configuration, or what is wrong with the input.
fn cfn_text(
    parameters: &Path,
    application_name: Option<&str>,
    template: Option<&Path>,
    assignments: &[String],
) -> Result<String, ImportError> {
    let mut values = ParameterValues::new();
    values.add_file(parameters, &read(parameters)?)?;
    for a in assignments {
        values.add_assignment(a)?;
    }
    if let Some(name) = application_name {
        values.add_named(
            "AmazonManagedFlinkApplicationName",
            name,
            "--application-name",
        );
    }
    let imported = match template {
        Some(file) => cfn::import(file, &read(file)?, &values)?,
        None => cfn::import(
            Path::new(cfn::REFERENCE_TEMPLATE_NAME),
            cfn::REFERENCE_TEMPLATE,
            &values,
        )?,
    };
    imported.to_checked_toml()
}

/// Writes `text` to `output`, or to standard output without one.
fn write_output(output: Option<&Path>, text: &str) -> anyhow::Result<ExitCode> {
    match output {
        Some(file) => std::fs::write(file, text)
            .with_context(|| format!("{}: cannot write the configuration", file.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
