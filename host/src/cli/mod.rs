//! The command-line interface: `flinkscale run | once | validate | demo |
//! emulate | simulate | bench | import | alarms | status | explain | probe |
//! iam | completions | plugin`.
//!
//! This is the binary's edge: errors become `anyhow` reports and exit codes
//! here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// The most history `emulate --history-secs` plays before serving: 15 days,
/// as long as CloudWatch keeps 1-minute datapoints (and the agent reads
/// history), and a bound on the model steps the first call syncs.
const MAX_EMULATED_HISTORY_SECS: u64 = crate::config::MAX_HISTORY_DAYS as u64 * 86_400;

mod alarms;
mod commands;
mod conventions;
mod example;
mod explain;
mod iam;
mod import;
mod json;
mod kit;
mod plugin;
mod probe;
mod reload;

/// A scaling agent for Apache Flink applications, with sandboxed
/// WebAssembly policy plugins.
#[derive(Debug, Parser)]
#[command(name = "flinkscale", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (`$FLINKSCALE_LOG_FORMAT` when not given).
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        ignore_case = true,
        env = LOG_FORMAT_VARIABLE
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: one controller per `[[application]]`, until SIGTERM or
    /// ctrl-c. SIGHUP reloads the configuration and lifts the KPU ceilings
    /// a LimitExceededException left and the sizes refused as invalid.
    Run {
        /// The configuration file (`--config FILE` or `$FLINKSCALE_CONFIG`).
        #[command(flatten)]
        config: conventions::ConfigFile,
        /// Decide and log, but never rescale (no UpdateApplication, no
        /// PUT of a Flink job's resource requirements).
        #[arg(long)]
        dry_run: bool,
    },
    /// Evaluate every application once, print what was seen and decided, and
    /// act on it unless `--dry-run`.
    Once {
        /// The configuration file (`--config FILE` or `$FLINKSCALE_CONFIG`).
        #[command(flatten)]
        config: conventions::ConfigFile,
        /// Decide and print, but never rescale (no UpdateApplication, no
        /// PUT of a Flink job's resource requirements).
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object per application instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Watch the agent scale an emulated application: starts the built-in
    /// emulator of MSF and CloudWatch and runs the real agent against it
    /// over HTTP with the bundled configuration and the `step` policy.
    Demo {
        /// Model seconds per wall second; lower runs longer (the bundled
        /// scenario is 30 simulated minutes: 2 minutes at 15). The agent
        /// evaluates on the wall clock, so a higher speed gives it fewer
        /// looks at the load: past about 35, too few to follow the bundled
        /// scenario (the demo says so at its end).
        #[arg(long, default_value_t = 15.0, value_parser = commands::parse_speed)]
        speed: f64,
        /// A scenario file, or the name of a shipped scenario (diurnal,
        /// flash-crowd, ramp, sawtooth, spike, step, weekly), instead of the
        /// bundled one.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// An agent configuration instead of the bundled one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A folder of plugin files, instead of the configuration's
        /// plugin_dir; one named like a built-in overrides it.
        #[arg(long, value_parser = commands::parse_existing_folder)]
        plugin_dir: Option<PathBuf>,
    },
    /// Serve the emulator of MSF (kinesisanalyticsv2) and CloudWatch on
    /// loopback, playing a scenario, until ctrl-c or SIGTERM. Prints
    /// `flinkscale emulator listening on URL` once ready.
    Emulate {
        /// The scenario: a .toml or .csv file, or the name of a shipped
        /// scenario (diurnal, flash-crowd, ramp, sawtooth, spike, step,
        /// weekly, and the demo's, demo), which the binary embeds.
        #[arg(long)]
        scenario: PathBuf,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0", value_parser = commands::parse_listen)]
        listen: std::net::SocketAddr,
        /// Model seconds per wall second.
        #[arg(long, default_value_t = 1.0, value_parser = commands::parse_speed)]
        speed: f64,
        /// GetMetricData datapoints per page.
        #[arg(long, default_value_t = crate::emulator::DEFAULT_PAGE_SIZE,
              value_parser = commands::parse_page_size)]
        page_size: usize,
        /// Start with this many wall-clock seconds of history already
        /// played, so that metrics have datapoints at once (at most 15
        /// days, as CloudWatch keeps 1-minute datapoints).
        #[arg(long, default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=MAX_EMULATED_HISTORY_SECS))]
        history_secs: u64,
    },
    /// Replay a scenario against a policy on a virtual clock (the production
    /// controller and plugin host, the workload model of docs/SIMULATION.md) and
    /// print the scores.
    Simulate(commands::SimulateArgs),
    /// Run every scenario with every policy (in one process) and write the
    /// scores as a markdown table and JSON rows.
    Bench(commands::BenchArgs),
    /// CloudWatch alarms mirroring the configuration's local alarms.
    Alarms {
        /// What to do.
        #[command(subcommand)]
        command: alarms::AlarmsCommand,
    },
    /// Write a flinkscale configuration from an existing autoscaler.
    Import {
        /// What to import from.
        #[command(subcommand)]
        from: import::ImportCommand,
    },
    /// Exit 0 if an http:// URL answers 2xx (e.g. the agent's /livez), 1
    /// otherwise: a health check command for the FROM-scratch image, which
    /// has no curl.
    Probe {
        /// The URL, e.g. `http://127.0.0.1:9464/livez`.
        #[arg(value_parser = probe::parse_url)]
        url: String,
        /// Seconds to wait for the connection and for the answer.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_secs: u64,
    },
    /// Print each application's phase, whether an agent acts on it (holds
    /// its journal's lock), KPU, ceiling, grace time left, plugin
    /// quarantine and last decision, from the files in `state_dir`
    /// (whether the agent runs or not).
    Status(explain::StatusArgs),
    /// Print an application's recent evaluations with their inputs (metrics,
    /// alarms, signals, policy), the decision and what was done, newest
    /// last, from the decision history in `state_dir`.
    Explain(explain::ExplainArgs),
    /// Send the running agent a SIGHUP (reload its configuration, lift its
    /// KPU ceilings; with `--resume APP`, end that application's
    /// stand-down) from a shell without `kill`, such as
    /// the container image's: the agent is the process holding the journal
    /// locks in the configuration's `state_dir`; the file is checked first
    /// and nothing is sent if the agent would refuse it.
    Reload(reload::ReloadArgs),
    /// Print the least-privilege IAM policy (JSON) the agent needs for
    /// exactly the configured applications: their ARNs for
    /// kinesisanalytics, `*` for cloudwatch:GetMetricData, the alarms'
    /// ARNs for cloudwatch:DescribeAlarms of `source = "cloudwatch"`
    /// alarms. The operator's commands need more: `alarms sync`
    /// (`--alarms-sync` adds it), `import alarms` (cloudwatch:DescribeAlarms
    /// on `*`).
    Iam {
        /// The configuration file (`--config FILE` or `$FLINKSCALE_CONFIG`).
        #[command(flatten)]
        config: conventions::ConfigFile,
        /// The AWS account id in the ARNs (default: any, `*`).
        #[arg(long, value_name = "ID", value_parser = iam::parse_account)]
        account: Option<String>,
        /// The region in the ARNs (default: [agent] region, else any, `*`).
        #[allow(rustdoc::broken_intra_doc_links)] // `[agent]` is a TOML table in --help
        #[arg(long, value_name = "R", value_parser = iam::parse_region)]
        region: Option<String>,
        /// The policy of a dry-run agent (`run --dry-run`): without
        /// kinesisanalytics:UpdateApplication, for running beside the
        /// reference design before switching.
        #[arg(long)]
        read_only: bool,
        /// Also what `flinkscale alarms sync` calls: cloudwatch:DescribeAlarms
        /// and cloudwatch:PutMetricAlarm on the mirrors of the local alarms
        /// (`flinkscale-APP-ID`), for a role that runs it too.
        #[arg(long)]
        alarms_sync: bool,
    },
    /// Print an example configuration (`flinkscale example NAME >
    /// flinkscale.toml`), or list them without a NAME: the reference
    /// design's metric families, several applications, a time SLO, a
    /// self-managed Flink job.
    Example {
        /// The example, e.g. `msf-cpu` or `msk-lag`; none lists them.
        name: Option<String>,
    },
    /// Print a shell completion script, e.g. `flinkscale completions bash >
    /// /usr/share/bash-completion/completions/flinkscale`.
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
    /// Check a configuration file and its plugins (each loaded with its
    /// params and asked as at the agent's start, locally) and report every
    /// error at once; exit 78 (EX_CONFIG) if there is any.
    Validate {
        /// The configuration file (or --config FILE, or $FLINKSCALE_CONFIG).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// The configuration file (`--config FILE` or `$FLINKSCALE_CONFIG`).
        #[command(flatten)]
        config: conventions::ConfigFile,
        /// Also check the world: that AWS credentials can be found, call
        /// DescribeApplication for each application (exists? readable?
        /// MSF's own autoscaling off?), read the last 3 hours of each
        /// CloudWatch metric (any datapoint?), and read each Flink job over
        /// its REST API (running? slots? vertices?); exit 1 if the world
        /// fails a check.
        #[arg(long)]
        environment: bool,
    },
    /// Inspect a plugin: `check` it on a canned evaluation, `describe` its
    /// parameters, `bench` its compile, instantiation and calls; `sdk DIR`
    /// writes the WIT contract and the Rust, Python and JavaScript SDKs.
    Plugin(plugin::PluginArgs),
}

/// The variable `--log-format` falls back to.
const LOG_FORMAT_VARIABLE: &str = "FLINKSCALE_LOG_FORMAT";

/// Removes every variable of ours that is set but empty, and returns the
/// names of the `AWS_ENDPOINT_URL*` ones among them (to be warned about
/// once logging is up). Empty means unset to whoever wrote `NAME=` in a
/// unit file or a shell:
/// - `AWS_ENDPOINT_URL*`: the AWS SDK takes an empty one for a URL and
///   panics building its first client ("URL was unset"): `validate` died
///   with exit 101, and `run` panicked at every step.
/// - `FLINKSCALE_LOG_FORMAT`: clap takes an empty one for a missing value,
///   and every command, `validate` too, then failed with "a value is
///   required for '--log-format'", naming neither the variable nor why.
///
/// Called first thing in `main`, before the command line is parsed and
/// before any other thread exists, which changing the environment
/// requires.
fn unset_empty_variables() -> Vec<String> {
    let empty: Vec<String> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            ((name.starts_with("AWS_ENDPOINT_URL") || name == LOG_FORMAT_VARIABLE)
                && value.to_string_lossy().trim().is_empty())
            .then_some(name)
        })
        .collect();
    for name in &empty {
        // SAFETY: `main` calls this before it starts any thread (the
        // async runtime, the plugin and history threads come later), so
        // nothing reads the environment meanwhile.
        unsafe { std::env::remove_var(name) };
    }
    empty
        .into_iter()
        .filter(|name| name.starts_with("AWS_ENDPOINT_URL"))
        .collect()
}

/// What is wrong with `FLINKSCALE_LOG_FORMAT` (`value`): clap refuses
/// an invalid one (even beside a `--log-format` that overrides it) as
/// "invalid value for '--log-format'", a flag the user may never have
/// typed, with exit 2; said here as the configuration it is, naming the
/// variable, as an invalid `RUST_LOG` is (exit 78).
fn log_format_variable_problem(value: Option<std::ffi::OsString>) -> Option<String> {
    let value = value?;
    let text = value.to_string_lossy();
    let valid = ["text", "json"].contains(&text.to_ascii_lowercase().as_str());
    (!valid).then(|| {
        format!(
            "{LOG_FORMAT_VARIABLE}: invalid value {text:?} (valid: text or json, in any case; \
             empty or unset is text)"
        )
    })
}

/// What is wrong with the AWS SDK's environment variables among `vars`:
/// the region variable the SDK reads (`AWS_REGION`, else
/// `AWS_DEFAULT_REGION`; neither when `region_set`, `[agent] region`
/// overriding them) that is not a region name, an endpoint
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) that is not an
/// `http(s)://host[:port]` URL. Empty endpoints were unset before
/// ([`unset_empty_variables`]).
pub(crate) fn aws_environment_problems(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    region_set: bool,
) -> Vec<String> {
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(n, v)| Some((n.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect();
    // The SDK reads AWS_REGION, else AWS_DEFAULT_REGION; neither when the
    // configuration sets `[agent] region`.
    let region_variable = if region_set {
        None
    } else if vars.iter().any(|(n, _)| n == "AWS_REGION") {
        Some("AWS_REGION")
    } else {
        Some("AWS_DEFAULT_REGION")
    };
    let mut problems = Vec::new();
    for (name, value) in &vars {
        let (name, value) = (name.as_str(), value.as_str());
        if Some(name) == region_variable {
            if !crate::config::validate::is_region_name(value) {
                problems.push(format!(
                    "{name} {value:?} is not an AWS region (valid: lower-case letters, digits \
                     and '-', a region name such as eu-west-1; or unset it to use [agent] \
                     region or the profile's)"
                ));
            }
        } else if name.starts_with("AWS_ENDPOINT_URL") {
            let uri = value.parse::<hyper::Uri>().ok();
            let usable = uri.as_ref().is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.authority().is_some_and(|a| port_is_valid(a.as_str()))
            });
            // A user name or password in the URL is no credential the SDK
            // sends (it signs with the AWS credentials), and the endpoint
            // is logged as it is: it would only put a secret in the log.
            let userinfo = uri
                .as_ref()
                .and_then(hyper::Uri::authority)
                .is_some_and(|a| a.as_str().contains('@'));
            if !usable {
                problems.push(format!(
                    "{name} {:?} is not an endpoint URL (valid: http://HOST[:PORT] or \
                     https://HOST[:PORT], e.g. http://127.0.0.1:4566 for the emulator)",
                    without_userinfo(value)
                ));
            } else if userinfo {
                problems.push(format!(
                    "{name} holds a user name or password before its host, which the AWS SDK \
                     does not send and the log would show (valid: http://HOST[:PORT] or \
                     https://HOST[:PORT]; requests are signed with the AWS credentials)"
                ));
            }
        }
    }
    problems.sort();
    problems
}

/// `value` with what stands between its scheme and its last `@` (a user
/// name and password) replaced by `***`, so that a message can quote it.
fn without_userinfo(value: &str) -> String {
    let start = value.find("://").map_or(0, |i| i + 3);
    let end = value[start..].find('/').map_or(value.len(), |i| start + i);
    match value[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &value[..start], &value[start + at..]),
        None => value.to_owned(),
    }
}

/// Whether an authority (`host`, `host:port`, `[v6]:port`) has no port or
/// a port from 1 to 65535: the URI parser takes `host:99999` and
/// `host:abc`, which the SDK then refuses at every call.
fn port_is_valid(authority: &str) -> bool {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    match after_host.rsplit_once(':') {
        None => true,
        Some((_, port)) => port.parse::<u16>().is_ok_and(|port| port >= 1),
    }
}

/// Whether the SDK's chain found a region for a one-shot command about to
/// call AWS; says where one comes from when it did not (`for_what`: what
/// the calls are for; `config`: which `[agent]` table counts). Without
/// one, every call fails as 'dispatch failure ... Missing Region'.
pub(crate) fn region_found(sdk: &aws_config::SdkConfig, for_what: &str, config: &str) -> bool {
    let found = sdk.region().is_some();
    if !found {
        eprintln!(
            "error: no AWS region {for_what}: {}",
            crate::aws::region_sources(&format!("[agent] of {config}"))
        );
    }
    found
}

/// Checks the AWS SDK's environment for a command about to call AWS
/// ([`aws_environment_problems`]) and says what is wrong; `false` then
/// (exit 78): taken as they are, each call would fail as a transient
/// network error, retried for ever.
pub(crate) fn aws_environment_ok(region: Option<&str>) -> bool {
    let problems = aws_environment_problems(std::env::vars_os(), region.is_some());
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    problems.is_empty()
}

/// Says why no configuration file can be read; exit 78 (EX_CONFIG), as for
/// an invalid one, but 2 for two files named on one command line (a
/// command line refused).
fn config_path_error(error: &conventions::ConfigPathError) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        // Two files on one command line: the command line is refused.
        conventions::ConfigPathError::Conflict { .. } => ExitCode::from(2),
        _ => ExitCode::from(commands::EX_CONFIG),
    }
}

/// Lets a command that prints and exits die of SIGPIPE, as `cat` does,
/// when its reader goes away (`flinkscale iam ... | head`), instead of
/// panicking in `println!` with "failed printing to stdout: Broken pipe".
/// Rust ignores SIGPIPE by default; the long-running `run` and `emulate`
/// keep that, so that a vanished log reader never stops the agent.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: called at the start of `main`, before any other thread
    // exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The log filter of the commands that say in one line what region or
/// credentials they did not find: the SDK's instance metadata client,
/// and the credentials chain that reports its failure again (900
/// characters), log errors only; the loader's other warnings (a broken
/// ~/.aws/config, with its line) stay.
const QUIET_AWS_CONFIG: &str = "info,aws_config::imds=error,\
     aws_config::meta::credentials::chain=error,aws_config::profile::credentials=error";

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let unset = unset_empty_variables();
    // `--help` and `--version` print whatever the environment holds.
    let asks_help = std::env::args_os().skip(1).any(|a| {
        ["--help", "-h", "--version", "-V", "help"]
            .iter()
            .any(|h| a == *h)
    });
    if !asks_help
        && let Some(problem) = log_format_variable_problem(std::env::var_os(LOG_FORMAT_VARIABLE))
    {
        eprintln!("error: {problem}");
        return ExitCode::from(commands::EX_CONFIG);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. } | Command::Emulate { .. }) {
        die_quietly_on_a_closed_pipe();
    }
    // The demo tells its own story on stdout; the agent inside it speaks
    // up only for warnings, unless RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        // `bench` prints its own progress and table: a "Plugin loaded."
        // line per run (63 for the shipped table) only buries them.
        Command::Bench { .. } => "warn",
        // So does `simulate`: its report is the output, and a "Plugin
        // loaded." line before it only interrupts.
        Command::Simulate { .. } => "warn",
        // `validate --environment` says in its own words whether
        // credentials and a region are found; the SDK's warnings about
        // the instance metadata service it tried on the way (kilobytes
        // each, without credentials) only bury that.
        Command::Validate { .. } => QUIET_AWS_CONFIG,
        // So do the one-shot commands that call AWS: each says in one
        // line when it found no region or no credentials. (The loader's
        // other warnings stay: a broken ~/.aws/config's line is said by
        // aws_config::provider_config alone.)
        Command::Once { .. } | Command::Alarms { .. } | Command::Import { .. } => QUIET_AWS_CONFIG,
        _ => "info",
    };
    // The agent's log lines go through a thread of their own: a stderr
    // that stops draining must not stop the agent.
    let writing = if matches!(cli.command, Command::Run { .. }) {
        telemetry::LogWriting::Queued
    } else {
        telemetry::LogWriting::InPlace
    };
    let log_guard = match telemetry::init_logging(cli.log_format, default_level, writing) {
        Ok(guard) => guard,
        Err(error) => {
            // Silently logging at another level than asked would hide
            // what the operator is looking for: a configuration error.
            eprintln!("error: {error}");
            return ExitCode::from(commands::EX_CONFIG);
        }
    };
    for name in unset {
        tracing::warn!(
            variable = %name,
            "{name} is set but empty: taken as unset (the AWS SDK's default endpoints)."
        );
    }
    // No async runtime around the plugin commands: their guest calls run
    // (and are timed) on this thread.
    let command = match cli.command {
        Command::Plugin(args) => return plugin::run(args),
        command => command,
    };
    // At least two workers, one CPU or not: the AWS SDK reads its
    // configuration files with blocking I/O inside async code, and a
    // second worker keeps a stop signal (and the other applications)
    // answered meanwhile. An idle worker costs a parked thread.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run_command(command));
    // Whatever must be written (journals, the decision history, a file an
    // import writes) is awaited by the command itself; a blocking task
    // still running now is one nobody waits for (a history writer past its
    // deadline, a plugin call or DNS lookup left behind): it does not
    // hold the exit, as dropping the runtime would.
    runtime.shutdown_timeout(LEFTOVER_BLOCKING_TASKS);
    // The queued log lines are written before the last word below.
    drop(log_guard);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            if is_wrong_input(&error) {
                ExitCode::from(commands::EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An input a command was given (a file or a value) is wrong: it exits 78
/// (`EX_CONFIG`), as a configuration error does, not 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WrongInput(pub String);

/// Whether `error` comes from wrong input (a scenario, a configuration,
/// [`WrongInput`]) rather than from the world (AWS, the network, a disk).
fn is_wrong_input(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<WrongInput>()
            || cause.is::<crate::sim::scenario::ScenarioError>()
            || cause.is::<crate::config::load::ConfigErrors>()
            || cause
                .downcast_ref::<crate::sim::bench::BenchError>()
                .is_some_and(crate::sim::bench::BenchError::is_input)
    })
}

/// How long the blocking tasks still running when a command has returned
/// may delay the exit.
const LEFTOVER_BLOCKING_TASKS: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `command` (any but `plugin`) on the async runtime.
async fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, dry_run } => {
            match conventions::config_path(config.config.as_deref(), None, false) {
                Ok(config) => commands::run(&config, dry_run).await,
                Err(error) => Ok(config_path_error(&error)),
            }
        }
        Command::Once {
            config,
            dry_run,
            json,
        } => match conventions::config_path(config.config.as_deref(), None, false) {
            Ok(config) => commands::once(&config, dry_run, json).await,
            Err(error) => Ok(config_path_error(&error)),
        },
        Command::Demo {
            speed,
            scenario,
            config,
            plugin_dir,
        } => crate::demo::run(crate::demo::DemoOptions {
            speed,
            scenario,
            config,
            plugin_dir,
        })
        .await
        .map(|_| ExitCode::SUCCESS),
        Command::Emulate {
            scenario,
            listen,
            speed,
            page_size,
            history_secs,
        } => {
            // The model keeps every second it plays in memory: the history
            // is played at `speed`, all of it at the first call.
            let played = history_secs as f64 * speed;
            if played > crate::sim::scenario::MAX_DURATION_SECS as f64 {
                eprintln!(
                    "error: --history-secs {history_secs} at --speed {speed} plays {played:.0} model \
                     seconds before serving; at most {} (31 days, as a scenario: the model keeps \
                     every second in memory): lower one of them",
                    crate::sim::scenario::MAX_DURATION_SECS
                );
                return Ok(ExitCode::from(2));
            }
            let scenario =
                tokio::task::spawn_blocking(move || crate::sim::bench::load_scenario(&scenario))
                    .await??;
            let mut options = crate::emulator::EmulatorOptions::new(scenario);
            if history_secs > 0 {
                let now_ms = crate::clock::Clock::system().now_ms();
                options.start_epoch_ms =
                        // At most MAX_EMULATED_HISTORY_SECS: no overflow.
                        Some(now_ms.saturating_sub(
                            i64::try_from(history_secs).unwrap_or(i64::MAX).saturating_mul(1000),
                        ));
            }
            options.listen = listen;
            options.speed = speed;
            options.page_size = page_size;
            crate::emulator::serve_until_signal(options)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Simulate(args) => commands::simulate(args).await,
        Command::Bench(args) => commands::bench(args).await,
        Command::Validate {
            file,
            config,
            environment,
        } => match conventions::config_path(config.config.as_deref(), file.as_deref(), true) {
            Ok(config) => commands::validate(&config, environment).await,
            Err(error) => Ok(config_path_error(&error)),
        },
        Command::Example { name } => Ok(example::run(name.as_deref())),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "flinkscale",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Iam {
            config,
            account,
            region,
            read_only,
            alarms_sync,
        } => match conventions::config_path(config.config.as_deref(), None, false) {
            Ok(config) => Ok(iam::run(
                &config,
                account,
                region,
                iam::Grants {
                    read_only,
                    alarms_sync,
                },
            )),
            Err(error) => Ok(config_path_error(&error)),
        },
        Command::Import { from } => import::run(from).await,
        Command::Status(args) => explain::status(args).await,
        Command::Explain(args) => explain::explain(args).await,
        Command::Reload(args) => tokio::task::spawn_blocking(move || reload::run(&args))
            .await
            .map_err(anyhow::Error::from),
        Command::Probe { url, timeout_secs } => {
            let timeout = std::time::Duration::from_secs(timeout_secs);
            tokio::task::spawn_blocking(move || probe::probe(&url, timeout))
                .await
                .map_err(anyhow::Error::from)
        }
        Command::Alarms { command } => alarms::run(command).await,
        Command::Plugin(args) => Ok(plugin::run(args)),
    }
}

/// `error` and its causes, joined by `: ` as `{:#}` does, but without a
/// cause whose text the message already holds: many of the crate's errors
/// put their cause in their own message and also give it as their source,
/// and `{:#}` would print it twice (or three times, one level down).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{aws_environment_problems, error_chain, log_format_variable_problem};

    /// An invalid `FLINKSCALE_LOG_FORMAT` is said by the variable's name.
    #[test]
    fn an_invalid_log_format_variable_is_named() {
        assert_eq!(
            log_format_variable_problem(Some("yaml".into())),
            Some(
                "FLINKSCALE_LOG_FORMAT: invalid value \"yaml\" (valid: text or json, in any \
                 case; empty or unset is text)"
                    .to_owned()
            )
        );
        for fine in ["json", "JSON", "Text"] {
            assert_eq!(
                log_format_variable_problem(Some(fine.into())),
                None,
                "{fine}"
            );
        }
        assert!(log_format_variable_problem(Some(" text ".into())).is_some());
        assert_eq!(log_format_variable_problem(None), None);
    }

    /// A region or endpoint the SDK would only fail on, at every call, as
    /// a network error, is refused at the start, naming the variable.
    #[test]
    fn aws_environment_variables_that_cannot_work_are_named() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
            pairs.iter().map(|(n, v)| (n.into(), v.into())).collect()
        };
        let fine = vars(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-gov-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            (
                "AWS_ENDPOINT_URL_CLOUDWATCH",
                "https://monitoring.example.com",
            ),
            ("HOME", "not checked"),
        ]);
        assert!(aws_environment_problems(fine, false).is_empty());
        let bad = vars(&[
            ("AWS_REGION", "eu west 1"),
            ("AWS_DEFAULT_REGION", ""),
            ("AWS_ENDPOINT_URL", "notaurl"),
            ("AWS_ENDPOINT_URL_KINESIS_ANALYTICS_V2", "ftp://x"),
        ]);
        // Ports the URI parser takes and the SDK does not.
        for url in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:abc",
            "http://h:0",
        ] {
            let problems = aws_environment_problems(vars(&[("AWS_ENDPOINT_URL", url)]), true);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        }
        // A path is the SDK's to use (a proxy's prefix).
        for url in ["http://[::1]:4566", "https://h", "http://h:65535/prefix"] {
            let problems = aws_environment_problems(vars(&[("AWS_ENDPOINT_URL", url)]), true);
            assert!(problems.is_empty(), "{url}: {problems:?}");
        }
        // A user name or password would only reach the log; nor is it
        // repeated when the URL is wrong in another way too.
        for url in [
            "https://user:secret@h:0",
            "ftp://user:secret@h",
            "user:secret@h",
        ] {
            let problems = aws_environment_problems(vars(&[("AWS_ENDPOINT_URL", url)]), true);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert!(!problems[0].contains("secret"), "{problems:?}");
        }
        for url in ["http://u@h:65535", "https://user:secret@h"] {
            let problems = aws_environment_problems(vars(&[("AWS_ENDPOINT_URL", url)]), true);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert!(
                problems[0].starts_with("AWS_ENDPOINT_URL holds a user name or password")
                    && !problems[0].contains("secret"),
                "{problems:?}"
            );
        }
        // A region name is lower case, as `[agent] region` must be.
        let problems = aws_environment_problems(vars(&[("AWS_REGION", "EU-WEST-1")]), false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problems = aws_environment_problems(bad.clone(), false);
        // AWS_DEFAULT_REGION is not read: AWS_REGION is set.
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with(
                "AWS_REGION \"eu west 1\" is not an AWS region (valid: lower-case letters, digits and '-', a region name such as eu-west-1"
            )),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("AWS_ENDPOINT_URL \"notaurl\" is not an endpoint URL")),
            "{problems:?}"
        );
        // [agent] region overrides the region variables: only the endpoints.
        assert_eq!(aws_environment_problems(bad, true).len(), 2);
        // Without AWS_REGION the SDK reads AWS_DEFAULT_REGION.
        let default_only = vars(&[("AWS_DEFAULT_REGION", "")]);
        assert_eq!(aws_environment_problems(default_only, false).len(), 1);
    }

    /// An error whose message holds its source's text, as the crate's
    /// `#[error("...: {source}")]` errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot create /x: {source}")]
    struct Create {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(Create { source: io }).context("cannot start the agent");
        assert_eq!(
            error_chain(&error),
            "cannot start the agent: cannot create /x: No such file"
        );
        let plain = anyhow::anyhow!("No such file").context("reading x");
        assert_eq!(error_chain(&plain), "reading x: No such file");
    }
}
