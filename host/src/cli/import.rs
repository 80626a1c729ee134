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
        /// AmazonManagedFlinkApplicationName (or whichever parameter the
        /// template's Lambda reads the name from: ApplicationName in the
        /// CDK app's).
        #[arg(long, value_name = "NAME")]
        application_name: Option<String>,
        /// The template the stack was deployed from (JSON or YAML, or
        /// `get-template --query TemplateBody` output), when it is not the
        /// built-in one (another published version, a local change, the
        /// CDK app's).
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
        /// One parameter value, overriding the file's; repeatable.
        #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = assignment)]
        parameter: Vec<String>,
        /// Write the configuration to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE", value_parser = output_file)]
        output: Option<PathBuf>,
    },
    /// Write `[[application.metric]]` and `[[application.alarm]]` for the
    /// CloudWatch alarms that watch an application (DescribeAlarms):
    /// those with the dimension Application = NAME, and the reference
    /// design's ScaleOutAlarm-NAME / ScaleInAlarm-NAME.
    Alarms {
        /// The MSF application.
        #[arg(long, value_name = "NAME", value_parser = application_name)]
        application: String,
        /// The agent's configuration: DescribeAlarms is called in its
        /// `[agent] region`, and the output keeps that application's
        /// bounds, timings and policy when it has the application.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write the configuration to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE", value_parser = output_file)]
        output: Option<PathBuf>,
    },
}

/// Runs `flinkscale import ...`: exit 0, [`EX_CONFIG`] when the input is
/// wrong (said on stderr), or an error (exit 1) when the output cannot be
/// written.
pub async fn run(command: ImportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImportCommand::Cfn {
            parameters,
            application_name,
            template,
            parameter,
            output,
        } => {
            // Small files, but file I/O all the same: off the async runtime.
            tokio::task::spawn_blocking(move || {
                let inputs = [Some(parameters.as_path()), template.as_deref()];
                if let Some(refused) = overwrites_input(output.as_deref(), &inputs) {
                    eprintln!("error: {refused}");
                    return Ok(ExitCode::from(EX_CONFIG));
                }
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
            })
            .await?
        }
        ImportCommand::Alarms {
            application,
            config,
            output,
        } => alarms(&application, config.as_deref(), output.as_deref()).await,
    }
}

/// Why writing to `output` is refused: it is one of `inputs` (`import cfn
/// p.json -o p.json` replaced the stack's parameters with the
/// configuration; `import alarms --config agent.toml -o agent.toml` the
/// whole agent's configuration with one application's).
fn overwrites_input(output: Option<&Path>, inputs: &[Option<&Path>]) -> Option<String> {
    let output = output?;
    // The same file, whatever the path: a symbolic link, `.` and `..`, or
    // a hard link (one inode under two names).
    let same = |input: &Path| match (std::fs::metadata(output), std::fs::metadata(input)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt as _;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    };
    let input = inputs.iter().flatten().find(|input| same(input))?;
    Some(format!(
        "--output {} is the input file {}: writing the configuration there would replace it; \
         write it to another file",
        output.display(),
        input.display()
    ))
}

/// Reads `--parameter`: `KEY=VALUE` with a key (a command line that is
/// refused before anything runs exits 2, as every wrong flag does).
fn assignment(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => Ok(text.to_owned()),
        _ => Err("not KEY=VALUE (e.g. --parameter MaxKPU=32)".to_owned()),
    }
}

/// Reads `--output`: a file to write, not a folder (which could only
/// fail once the import is done).
fn output_file(text: &str) -> Result<PathBuf, String> {
    if std::path::Path::new(text).is_dir() {
        return Err(format!(
            "{text} is a folder (valid: the file to write the configuration to, e.g. \
             flinkscale.toml)"
        ));
    }
    Ok(PathBuf::from(text))
}

/// Reads `--application`: an MSF application name, 1 to 128 of letters,
/// digits, `_`, `-` and `.` (an empty one called DescribeAlarms for
/// nothing).
fn application_name(text: &str) -> Result<String, String> {
    if crate::config::validate::is_application_name(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an MSF application name (valid: 1 to 128 letters, digits, `_`, \
             `-` and `.`)"
        ))
    }
}

fn read(file: &Path) -> Result<String, ImportError> {
    crate::config::load::read_utf8(file).map_err(|source| ImportError::Read {
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
            cfn::APPLICATION_NAME_PARAMETER,
            name,
            cfn::APPLICATION_NAME_OPTION,
        );
    }
    let imported = match template {
        Some(file) => cfn::import(file, &read(file)?, &values)?,
        None => {
            eprintln!(
                "note: reading the stack's parameters with the built-in template (the design's \
                 current managed-flink-autoscaling.json); if the stack was deployed from another \
                 version, an edited copy or the CDK app, pass it with --template FILE (`aws \
                 cloudformation get-template --stack-name NAME --query TemplateBody > FILE`)"
            );
            cfn::import(
                Path::new(cfn::REFERENCE_TEMPLATE_NAME),
                cfn::REFERENCE_TEMPLATE,
                &values,
            )?
        }
    };
    for warning in imported.warnings() {
        eprintln!("warning: {warning}");
    }
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

/// `text` (an imported configuration) with an `[agent]` table naming
/// `region`, before its first application.
fn with_region(text: &str, region: &str) -> String {
    let agent = format!(
        "\n[agent]\n# The region the alarms were read in (DescribeAlarms).\nregion = {}\n",
        crate::import::cfn::toml_string(region)
    );
    match text.find("\n[[application]]") {
        Some(at) => format!("{}{agent}{}", &text[..at], &text[at..]),
        None => format!("{text}{agent}"),
    }
}

/// `flinkscale import alarms`: exit 0, [`EX_CONFIG`] for an invalid
/// `--config`, or an error (exit 1) when DescribeAlarms fails or no alarm
/// watches the application.
async fn alarms(
    application: &str,
    config: Option<&Path>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if let Some(refused) = overwrites_input(output, &[config]) {
        eprintln!("error: {refused}");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let loaded = match config {
        Some(file) => {
            let file = file.to_owned();
            match tokio::task::spawn_blocking(move || crate::config::load(&file)).await? {
                Ok(loaded) => Some(loaded),
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(EX_CONFIG));
                }
            }
        }
        None => None,
    };
    let region = loaded.as_ref().and_then(|l| l.config.agent.region.clone());
    if !super::aws_environment_ok(region.as_deref()) {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let sdk = crate::aws::sdk_config(region.as_deref()).await;
    if !super::region_found(&sdk, "to read the alarms in", "a --config file") {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let described = crate::metrics::alarms::CloudWatchAlarms::new(&sdk)
        .describe_all()
        .await
        .context("cannot list the CloudWatch alarms")?;
    let existing = loaded
        .as_ref()
        .and_then(|l| l.config.applications.iter().find(|a| a.name == application));
    // Checked as the file it is written to, or else beside --config (its
    // relative plugin paths resolve there: a kept `plugins/x.wasm` must be
    // found from where the output is), under a name that says the lines
    // an error names are the generated text's, not the --config file's.
    let name = format!("<import alarms {application}>.toml");
    let check_as = match (output, loaded.as_ref()) {
        (Some(output), _) => output.with_file_name(&name),
        (None, Some(l)) => l.file.with_file_name(&name),
        (None, None) => crate::import::alarms::default_check_path(),
    };
    let imported = crate::import::alarms::import(application, &described, existing, &check_as)?;
    // What needs the plugins loaded (the ids a kept policy's params name,
    // against the ids made from CloudWatch's names): what the agent would
    // refuse is not written.
    let refused = {
        let (text, check_as) = (imported.toml.clone(), check_as.clone());
        tokio::task::spawn_blocking(
            move || match crate::config::load::load_str(&text, &check_as) {
                Ok(written) => super::commands::plugin_refusals(&written),
                Err(_) => Vec::new(),
            },
        )
        .await?
    };
    if !refused.is_empty() {
        for problem in &refused {
            eprintln!("error: {problem}");
        }
        eprintln!(
            "error: not written: `flinkscale validate` would refuse the imported \
             configuration of {application:?} (its relative plugin paths are read from where it \
             is written; the params kept from --config may name alarms the import named \
             otherwise, from CloudWatch's names: rename them there)"
        );
        return Ok(ExitCode::from(EX_CONFIG));
    }
    for s in &imported.skipped {
        eprintln!(
            "warning: the CloudWatch alarm {:?} watches {application:?} but is not imported: {}",
            s.name, s.reason
        );
    }
    if imported.holds {
        eprintln!(
            "warning: the alarms of {application:?} are not one scale-out / scale-in pair, so the \
             policy written is `hold`, which never rescales: choose one in [application.policy] \
             (`step` with scale_out_alarm and scale_in_alarm, or another; `flinkscale plugin \
             describe NAME` lists a policy's params)"
        );
    }
    // The alarms were read in this region: the agent must watch the same
    // one, whatever AWS_REGION says where it runs.
    let text = match sdk.region() {
        Some(region) => with_region(&imported.toml, region.as_ref()),
        None => imported.toml,
    };
    let output = output.map(Path::to_owned);
    tokio::task::spawn_blocking(move || write_output(output.as_deref(), &text)).await?
}
