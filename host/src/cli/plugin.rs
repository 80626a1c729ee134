//! `flinkscale plugin check | describe | bench | sdk`: a plugin author's tools.
//!
//! `check` loads a plugin as the agent would and asks it one question on a
//! canned evaluation (of an MSF application, or with `--target flink` of a
//! Flink job, whose output then speaks parallelism); `describe` prints what
//! the plugin declares about its parameters (the README's parameter tables
//! are this output, see [`replace_blocks`]; with `--target flink` its texts
//! speak parallelism too); `bench` times compiling, instantiating and
//! calling it; `sdk` writes the contract and the SDKs into a folder
//! (`super::kit`).
//! They run on the calling thread with no async runtime around them:
//! the guest calls are what is measured, not a hop to another thread.
//!
//! Exit codes: 0 when the plugin did all that was asked, 1 when it failed
//! (not a component, refused its params, failed or answered nonsense), 78
//! (`EX_CONFIG`) when the command itself was wrong (bad `--params`, no such
//! plugin).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::commands::{PluginCache, parse_plugin_cache, use_plugin_cache};
use crate::config::load::{is_plugin_path, resolve_plugin};
use crate::config::validate::{
    MAX_PLUGIN_MEMORY_BYTES, MAX_PLUGIN_TIMEOUT_MS, MIN_PLUGIN_MEMORY_BYTES,
};
use crate::config::{AgentConfig, TargetKind};
use crate::model::{Action, Decision, Signal};
use crate::plugin::inspect::{self, Compiler, ComponentFacts};
use crate::plugin::validate::{
    MAX_REASON_BYTES, contract_violation, sanitize_text, validate_decision_in,
};
use crate::plugin::{
    Parameter, PluginError, PluginHost, PluginKind, PluginMetadata, PluginSource, SandboxLimits,
    builtin,
};
use crate::target::Words;

/// Exit code of a plugin that failed.
const EXIT_PLUGIN_FAILED: u8 = 1;
/// Exit code of a usage error (sysexits' `EX_CONFIG`).
const EXIT_USAGE: u8 = 78;

/// The README's marker opening a generated parameter table; the built-in's
/// name follows it.
const BLOCK_OPEN: &str = "<!-- plugin-params ";
/// The README's marker closing a generated parameter table.
const BLOCK_CLOSE: &str = "<!-- /plugin-params -->";

/// `flinkscale plugin ...`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// What to do with the plugin.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The `plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin, configure it and ask it once on a canned evaluation
    /// (3 metrics x 20 datapoints, 2 alarms, one in ALARM); exit 1 if it
    /// fails (it will not load, refuses its params, or answers wrong), 78
    /// if there is no such plugin or `--params` is not a JSON object.
    Check {
        /// The plugin.
        #[command(flatten)]
        plugin: PluginArg,
        /// Its params, as a JSON object (default: for the built-ins that
        /// need to be told an alarm or metric, the canned evaluation's;
        /// else `{}`).
        #[arg(long)]
        params: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// What the canned application is, as `target` in the
        /// configuration: an MSF application (KPU) or a job on a Flink
        /// cluster, whose output reads the plugin's KPU as parallelism,
        /// as the agent's does.
        #[arg(long, value_enum, default_value_t = TargetKind::Msf)]
        target: TargetKind,
        /// Keep compiled plugins in DIR between runs, or not at all
        /// (`off`). Default: $XDG_CACHE_HOME/flinkscale/plugins, else
        /// ~/.cache/flinkscale/plugins.
        #[arg(long, value_name = "DIR|off", value_parser = parse_plugin_cache)]
        plugin_cache: Option<PluginCache>,
        /// The deadline of one call, in ms, as `plugin_timeout_ms` in the
        /// configuration's `[agent]` (1..=60000; the calls that start an
        /// instance get ten times it, at least 1 s).
        #[arg(long, value_name = "MS",
              default_value_t = AgentConfig::default().plugin_timeout_ms,
              value_parser = clap::value_parser!(u64).range(1..=MAX_PLUGIN_TIMEOUT_MS))]
        plugin_timeout_ms: u64,
        /// The memory cap of the instance, in bytes, as
        /// `plugin_memory_limit_bytes` in `[agent]` (1 MiB..=4 GiB).
        #[arg(long, value_name = "BYTES",
              default_value_t = AgentConfig::default().plugin_memory_limit_bytes,
              value_parser = clap::value_parser!(u64)
                  .range(MIN_PLUGIN_MEMORY_BYTES..=MAX_PLUGIN_MEMORY_BYTES))]
        plugin_memory_limit_bytes: u64,
    },
    /// Print a plugin's summary and the parameters it declares.
    Describe {
        /// The plugin, a built-in's name or a .wasm path: required, unless
        /// `--readme` is given (which takes none).
        #[arg(required_unless_present = "readme", conflicts_with = "readme")]
        plugin: Option<String>,
        /// A folder of plugin files; a file named like the plugin wins
        /// over a built-in of that name.
        #[arg(long, value_parser = super::commands::parse_existing_folder)]
        plugin_dir: Option<PathBuf>,
        /// Print the parameter table as markdown, as the README shows it.
        #[arg(long)]
        markdown: bool,
        /// Whom the text is for, as `check`'s `--target`: with `flink`,
        /// the summary and the meanings read the plugin's KPU as
        /// parallelism (a job's unit), as the agent reads its decisions.
        #[arg(long, value_enum, default_value_t = TargetKind::Msf, conflicts_with = "readme")]
        target: TargetKind,
        /// Rewrite, in this file, every block between `<!-- plugin-params
        /// NAME -->` and `<!-- /plugin-params -->` with the markdown table
        /// of the built-in NAME.
        #[arg(long, value_name = "FILE")]
        readme: Option<PathBuf>,
        /// Keep compiled plugins in DIR between runs, or not at all
        /// (`off`). Default: $XDG_CACHE_HOME/flinkscale/plugins, else
        /// ~/.cache/flinkscale/plugins.
        #[arg(long, value_name = "DIR|off", value_parser = parse_plugin_cache)]
        plugin_cache: Option<PluginCache>,
    },
    /// Time a plugin: compile (uncached), a fresh instance from the cached
    /// compiled component, and a warm call on the canned evaluation.
    Bench {
        /// The plugin.
        #[command(flatten)]
        plugin: PluginArg,
        /// Its params, as for `check`.
        #[arg(long)]
        params: Option<String>,
        /// Warm calls to time, at least 1.
        #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
        iterations: usize,
        /// Fresh instances to time, at least 1.
        #[arg(long, default_value_t = 200, value_parser = at_least_one)]
        instances: usize,
        /// Uncached compiles to time, at least 1.
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        compiles: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the plugin author's kit into a folder: the contract's WIT files,
    /// the Rust SDK (crate `flinkscale-plugin`) with the `step` policy as an
    /// example, and the Python and JavaScript helpers with their build
    /// scripts; no source checkout needed.
    Sdk {
        /// The folder to write into (created if missing).
        dir: PathBuf,
        /// Overwrite the kit's files where they already exist.
        #[arg(long)]
        force: bool,
    },
}

/// Which plugin a command is about.
#[derive(Debug, Args)]
pub struct PluginArg {
    /// A built-in name (`step`), a name found in `--plugin-dir`, or a path
    /// to a `.wasm` component (contains `/` or ends in `.wasm`).
    pub plugin: String,
    /// A folder of plugin files; a file named like the plugin wins over a
    /// built-in of that name, as with `plugin_dir` in the configuration.
    #[arg(long, value_parser = super::commands::parse_existing_folder)]
    pub plugin_dir: Option<PathBuf>,
}

/// Why a command stopped.
#[derive(Debug)]
enum Failure {
    /// The command was wrong: exit 78.
    Usage(String),
    /// The plugin failed, or the world did (a disk): exit 1.
    Plugin(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_USAGE)
            }
            Failure::Plugin(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_PLUGIN_FAILED)
            }
        }
    }
}

/// Runs a `plugin` subcommand. Call it outside any async runtime: the
/// guest calls run on this thread.
pub fn run(args: PluginArgs) -> ExitCode {
    let result = match args.command {
        PluginCommand::Check {
            plugin,
            params,
            json,
            target,
            plugin_cache,
            plugin_timeout_ms,
            plugin_memory_limit_bytes,
        } => {
            use_plugin_cache(plugin_cache.as_ref());
            // The sandbox the agent would give it with these two keys.
            let limits = AgentConfig {
                plugin_timeout_ms,
                plugin_memory_limit_bytes,
                ..AgentConfig::default()
            }
            .sandbox_limits();
            check(&plugin, params.as_deref(), json, target.into(), limits)
        }
        PluginCommand::Describe {
            plugin,
            plugin_dir,
            markdown,
            target,
            readme,
            plugin_cache,
        } => match (readme, plugin) {
            (Some(readme), _) => rewrite_readme(&readme),
            (None, Some(plugin)) => {
                use_plugin_cache(plugin_cache.as_ref());
                describe(&PluginArg { plugin, plugin_dir }, markdown, target.into())
            }
            (None, None) => Err(Failure::Usage(
                "name a plugin, or give --readme FILE".to_owned(),
            )),
        },
        PluginCommand::Bench {
            plugin,
            params,
            iterations,
            instances,
            compiles,
            json,
        } => bench(
            &plugin,
            params.as_deref(),
            BenchCounts {
                iterations: iterations.max(1),
                instances: instances.max(1),
                compiles: compiles.max(1),
            },
            json,
        ),
        PluginCommand::Sdk { dir, force } => sdk(&dir, force),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.exit(),
    }
}

/// `plugin sdk DIR`: writes the kit and says what is where and how to
/// use it.
fn sdk(dir: &Path, force: bool) -> Result<ExitCode, Failure> {
    let written = super::kit::write(dir, force).map_err(|error| match error {
        super::kit::KitError::Usage(message) => Failure::Usage(message),
        // A disk that failed is the world's doing: exit 1, as the README's
        // rule says.
        super::kit::KitError::Disk(message) => Failure::Plugin(message),
    })?;
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let root = root.display();
    println!(
        "wrote the flinkscale {} plugin kit to {root} ({} files):\n\
         \x20 wit/v0.2.0/plugin.wit  the contract: worlds scaling-policy and \
         metric-interpreter (wit/v0.1.0: the previous one, still loaded)\n\
         \x20 plugins/sdk            the Rust SDK, crate flinkscale-plugin; in your crate's \
         Cargo.toml:\n\
         \x20                        flinkscale-plugin = {{ path = \"{root}/plugins/sdk\" }}\n\
         \x20 plugins/step           a complete Rust policy with unit tests\n\
         \x20 plugins/python         the Python helpers (policy, interpreter), an example of \
         each and build.sh (componentize-py)\n\
         \x20 plugins/js             the JavaScript helpers (policy, interpreter), an example of \
         each and build.sh (jco)\n\
         Build a Rust plugin with `cargo build --release --target wasm32-wasip2`; a Python or \
         JavaScript one with `{root}/plugins/python/build.sh MODULE` (or js), which writes \
         {root}/target/polyglot/MODULE-py.wasm (-js.wasm).",
        env!("CARGO_PKG_VERSION"),
        written.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Finds the plugin as `plugin = "..."` would (relative paths from the
/// current folder) and reads it; a plugin that is not there is a usage
/// error naming where it was looked for.
fn resolve(arg: &PluginArg) -> Result<(PluginSource, Vec<u8>), Failure> {
    let source = resolve_plugin(&arg.plugin, Path::new(""), arg.plugin_dir.as_deref());
    if let PluginSource::File(path) = &source
        && !path.is_file()
    {
        return Err(Failure::Usage(if path.is_dir() {
            format!(
                "{} is a folder (valid: a plugin's .wasm file, or a built-in's name)",
                path.display()
            )
        } else if is_plugin_path(&arg.plugin) {
            format!("no plugin file {}", path.display())
        } else {
            format!(
                "{:?} is not a built-in plugin (valid: {}, a name in --plugin-dir, or a path to \
                 a .wasm file) and there is no file {}",
                arg.plugin,
                builtin::names(),
                path.display()
            )
        }));
    }
    let bytes = source.bytes().map_err(|error| {
        Failure::Usage(format!(
            "cannot read plugin {}: {error}",
            source.display_path().display()
        ))
    })?;
    Ok((source, bytes.into_owned()))
}

/// Checks `--params`: a JSON object, returned compact.
fn parse_params(text: Option<&str>) -> Result<Option<String>, Failure> {
    let Some(text) = text else {
        return Ok(None);
    };
    let value: Value = super::json::parse(text).map_err(|error| {
        Failure::Usage(format!(
            "--params is not valid JSON: {error} (valid: a JSON object, e.g. \
             '{{\"scale_out_alarm\": \"high\", \"scale_in_alarm\": \"low\"}}')"
        ))
    })?;
    if !value.is_object() {
        return Err(Failure::Usage(format!(
            "--params must be a JSON object (the plugin's params table), found {value}"
        )));
    }
    Ok(Some(value.to_string()))
}

fn host() -> Result<PluginHost, Failure> {
    host_with(SandboxLimits::default())
}

fn host_with(limits: SandboxLimits) -> Result<PluginHost, Failure> {
    PluginHost::new(limits).map_err(|e| Failure::Plugin(e.to_string()))
}

fn compiler() -> Result<Compiler, Failure> {
    Compiler::new()
        .map_err(|e| Failure::Plugin(format!("cannot start the WebAssembly engine: {e}")))
}

/// Compiles the component for its facts; a file that is no loadable
/// component is the plugin's failure.
fn facts(
    compiler: &Compiler,
    source: &PluginSource,
    bytes: &[u8],
) -> Result<ComponentFacts, Failure> {
    compiler.component_facts(bytes).map_err(|detail| {
        Failure::Plugin(format!(
            "plugin {} is not a WebAssembly component this host can load (build a Rust \
             plugin for wasm32-wasip2, a Python or JavaScript one with plugins/python/build.sh \
             or plugins/js/build.sh): {detail}",
            source.display_path().display()
        ))
    })
}

/// What `check` found, in the order it found it; `error` is the first
/// failure, after which nothing more was tried. The plugin's texts (its
/// summary, its decision's reason) are read in `words`.
#[derive(Debug, Default)]
struct CheckReport {
    source: String,
    words: Words,
    facts: Option<ComponentFacts>,
    metadata: Option<PluginMetadata>,
    params: Option<String>,
    params_from: &'static str,
    configure_error: Option<String>,
    configured: bool,
    decision: Option<Decision>,
    /// The policy's answer as at the agent's start
    /// ([`inspect::canned_start_evaluation`]), after `decision`.
    at_start: Option<Decision>,
    /// The length of the reason as the plugin gave it, in bytes.
    reason_bytes: usize,
    validated: Option<Decision>,
    signals: Option<Vec<Signal>>,
    /// The limits the plugin ran under.
    limits: SandboxLimits,
    /// Memory the instance held after its call (its peak: WebAssembly
    /// memory never shrinks), when it got that far.
    memory_bytes: Option<u64>,
    error: Option<String>,
}

fn check(
    arg: &PluginArg,
    params: Option<&str>,
    json: bool,
    words: Words,
    limits: SandboxLimits,
) -> Result<ExitCode, Failure> {
    let params = parse_params(params)?;
    let (source, _) = resolve(arg)?;
    let mut report = CheckReport {
        source: source.origin(),
        words,
        limits,
        ..CheckReport::default()
    };
    run_check(&mut report, &source, params);
    if json {
        println!("{}", check_json(&report));
    } else {
        print!("{}", check_text(&report));
    }
    Ok(match &report.error {
        None => ExitCode::SUCCESS,
        Some(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_PLUGIN_FAILED)
        }
    })
}

fn run_check(report: &mut CheckReport, source: &PluginSource, params: Option<String>) {
    let words = report.words;
    let outcome = (|| -> Result<(), Failure> {
        let host = host_with(report.limits)?;
        report.facts = Some(
            host.component_facts(source)
                .map_err(|e| Failure::Plugin(e.to_string()))?,
        );
        let metadata = host
            .check(source)
            .map_err(|e| Failure::Plugin(e.to_string()))?;
        let (params, from) = match params {
            Some(params) => (params, "--params"),
            None => (inspect::canned_params(&metadata), "canned"),
        };
        report.params = Some(params.clone());
        report.params_from = from;
        // Ids in --params the canned evaluation does not have: the
        // plugin would be asked about alarms and metrics it is not given
        // (a policy that reads an absent alarm as quiet then passes, as
        // `validate` would not let it on the application). Said once the
        // plugin accepted the params (a refusal of them comes first).
        let mut unknown_ids = None;
        if from == "--params"
            && let Ok(serde_json::Value::Object(given)) = serde_json::from_str(&params)
        {
            let evaluation = inspect::canned_evaluation();
            let alarms: Vec<&str> = evaluation.alarms.iter().map(|a| a.name.as_str()).collect();
            let metrics: Vec<&str> = evaluation
                .metrics
                .iter()
                .map(|s| s.query.id.as_str())
                .collect();
            let unknown = crate::plugin::params::check_references(
                metadata.parameters.as_deref().unwrap_or_default(),
                &given,
                &alarms,
                &metrics,
            );
            if !unknown.is_empty() {
                let said: Vec<String> = unknown.iter().map(ToString::to_string).collect();
                unknown_ids = Some(Failure::Plugin(format!(
                    "--params names ids the canned evaluation `check` asks with does not have: \
                     {} (`check` gives the plugin the alarms {} and the metrics {}: name those, \
                     or leave --params out for canned ones; `flinkscale validate` checks the \
                     ids against your configuration)",
                    said.join("; "),
                    alarms.join(", "),
                    metrics.join(", ")
                )));
            }
        }
        let kind = metadata.kind;
        report.metadata = Some(metadata);
        let evaluation = inspect::canned_evaluation();
        let refused = |report: &mut CheckReport, error: PluginError| match error {
            PluginError::Configure { message, .. } => {
                report.configure_error = Some(message.clone());
                Failure::Plugin(format!("configure refused the params {params}: {message}"))
            }
            other => Failure::Plugin(other.to_string()),
        };
        match kind {
            PluginKind::Policy => {
                let mut instance = host
                    .load_policy_in(source, &params, &evaluation.app.name, words)
                    .map_err(|e| refused(report, e))?;
                report.configured = true;
                // The configured instance's metadata: what the agent logs.
                report.metadata = Some(instance.metadata());
                if let Some(failure) = unknown_ids {
                    return Err(failure);
                }
                let decision = instance.decide(&evaluation);
                report.memory_bytes = instance.memory_bytes();
                let decision = decision.map_err(|e| Failure::Plugin(e.to_string()))?;
                let violation = contract_violation(&decision);
                // What the agent does with the answer: it fails the call
                // on one outside the contract, and the evaluation holds.
                let validated = match &violation {
                    Some(problem) => Decision {
                        action: Action::Hold,
                        reason: format!("invalid decision ({problem}): the agent holds"),
                        next_evaluation_secs: None,
                    },
                    None => validate_decision_in(decision.clone(), &evaluation.app, words),
                };
                // Read as the host's is, so that they differ only where
                // the host changed the decision: cut to what the agent
                // keeps and rid of control characters, which would act on
                // the terminal.
                let kept = sanitize_text(&words.plugin_text(&decision.reason), MAX_REASON_BYTES);
                report.decision = Some(Decision {
                    reason: kept,
                    ..decision.clone()
                });
                report.reason_bytes = decision.reason.len();
                report.validated = Some(validated);
                if let Some(problem) = violation {
                    return Err(Failure::Plugin(format!("invalid decision: {problem}")));
                }
                // Asked again as at the agent's start, as `validate` asks
                // it: a policy whose other branches break the contract
                // (a `scale_to(0)` where it means to hold) fails here, not
                // at its first evaluation in the agent. On a fresh
                // instance: one that keeps state would otherwise answer
                // on what the first call showed it.
                let start = inspect::canned_start_evaluation();
                let at_start = instance
                    .restart()
                    .and_then(|()| instance.decide(&start))
                    .map_err(|e| Failure::Plugin(format!("{e} {AS_AT_START}")))?;
                let start_violation = contract_violation(&at_start);
                report.at_start = Some(Decision {
                    reason: sanitize_text(&words.plugin_text(&at_start.reason), MAX_REASON_BYTES),
                    ..at_start
                });
                if let Some(problem) = start_violation {
                    return Err(Failure::Plugin(format!(
                        "invalid decision {AS_AT_START}: {problem}"
                    )));
                }
            }
            PluginKind::Interpreter => {
                let mut instance = host
                    .load_interpreter_in(source, &params, &evaluation.app.name, words)
                    .map_err(|e| refused(report, e))?;
                report.configured = true;
                report.metadata = Some(instance.metadata());
                if let Some(failure) = unknown_ids {
                    return Err(failure);
                }
                let signals =
                    instance.interpret(evaluation.now_ms, &evaluation.app, &evaluation.metrics);
                report.memory_bytes = instance.memory_bytes();
                let signals = signals.map_err(|e| Failure::Plugin(e.to_string()))?;
                report.signals = Some(signals);
            }
        }
        Ok(())
    })();
    if let Err(Failure::Plugin(message) | Failure::Usage(message)) = outcome {
        report.error = Some(message);
    }
}

/// How `check` names its second question.
const AS_AT_START: &str = "(asked as at the agent's start: the metrics without datapoints yet, \
     the alarms INSUFFICIENT_DATA)";

/// The contract's action: `scale-to 8`, or on a Flink job `scale-to
/// parallelism 8`.
fn action_text(action: &Action, words: Words) -> String {
    match (action, words) {
        (Action::Hold, _) => "hold".to_owned(),
        (Action::ScaleTo(kpu), Words::Msf) => format!("scale-to {kpu}"),
        (Action::ScaleTo(kpu), Words::Flink) => format!("scale-to {}", words.capacity(*kpu)),
    }
}

fn decision_json(decision: &Decision) -> Value {
    json!({
        "action": match decision.action {
            Action::Hold => json!("hold"),
            Action::ScaleTo(kpu) => json!({ "scale_to": kpu }),
        },
        "reason": decision.reason,
        "next_evaluation_secs": decision.next_evaluation_secs,
    })
}

/// What `check` says of a NaN or infinite signal.
const DROPPED_SIGNAL: &str = "not a finite number: the agent drops it";

fn check_json(report: &CheckReport) -> Value {
    let meta = report.metadata.as_ref();
    let facts = report.facts.as_ref();
    json!({
        "ok": report.error.is_none(),
        "source": report.source,
        "target": report.words,
        "name": meta.map(|m| m.name.clone()),
        "version": meta.map(|m| m.version.clone()),
        "summary": meta.map(|m| report.words.plugin_text(&m.summary)),
        "world": meta.map(|m| inspect::world_name(m.kind)),
        "contract_version": meta.map(|m| m.contract_version),
        "exports": facts.map(|f| f.exports.clone()),
        "size_bytes": facts.map(|f| f.size_bytes),
        "sha256": facts.map(|f| f.sha256.clone()),
        "compile_ms": facts.map(|f| millis(f.compile)),
        "from_cache": facts.map(|f| f.from_cache),
        "params": report.params.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
        "params_from": (!report.params_from.is_empty()).then_some(report.params_from),
        "configure": if report.configured {
            json!({ "accepted": true })
        } else if let Some(error) = &report.configure_error {
            json!({ "accepted": false, "error": error })
        } else {
            Value::Null
        },
        "decision": report.decision.as_ref().map(decision_json),
        "at_start": report.at_start.as_ref().map(decision_json),
        "host_decision": report.validated.as_ref().map(decision_json),
        "signals": report.signals.as_ref().map(|signals| {
            // A NaN or an infinity (JSON has neither: null) is dropped by
            // the agent, and said so.
            signals
                .iter()
                .map(|s| {
                    let mut signal = json!({ "name": s.name, "value": s.value });
                    if !s.value.is_finite() {
                        signal["dropped"] = json!(DROPPED_SIGNAL);
                    }
                    signal
                })
                .collect::<Vec<_>>()
        }),
        "memory_bytes": report.memory_bytes,
        "memory_limit_bytes": report.limits.memory_limit_bytes,
        "timeout_ms": report.limits.call_timeout.as_millis(),
        "error": report.error,
    })
}

fn check_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: &str| out.push_str(&format!("{key:<12}{value}\n"));
    if let Some(meta) = &report.metadata {
        line("plugin", &format!("{} {}", meta.name, meta.version));
        if !meta.summary.is_empty() {
            line("summary", &report.words.plugin_text(&meta.summary));
        }
    }
    line("source", &report.source);
    if let Some(meta) = &report.metadata {
        line("world", inspect::world_name(meta.kind));
        line("contract", meta.contract_version);
    }
    if let Some(facts) = &report.facts {
        line("exports", &facts.exports.join(", "));
        line("size", &format!("{} bytes", facts.size_bytes));
        line("sha256", &facts.sha256);
        let compile = millis(facts.compile);
        if facts.from_cache {
            line(
                "compile",
                &format!("none: loaded from the plugin cache in {compile:.1} ms"),
            );
        } else {
            line("compile", &format!("{compile:.1} ms"));
        }
    }
    if let Some(params) = &report.params {
        let from = if report.params_from == "canned" {
            " (canned: no --params given)"
        } else {
            ""
        };
        line("params", &format!("{params}{from}"));
    }
    if report.configured {
        line("configure", "accepted");
    } else if let Some(error) = &report.configure_error {
        line("configure", &format!("refused: {error}"));
    }
    if let Some(decision) = &report.decision {
        line(
            "decision",
            &format!(
                "{}: {}",
                action_text(&decision.action, report.words),
                decision.reason
            ),
        );
        if report.reason_bytes > MAX_REASON_BYTES {
            line(
                "",
                &format!(
                    "(the reason is {} bytes; the agent keeps the first {MAX_REASON_BYTES})",
                    report.reason_bytes
                ),
            );
        }
        if let Some(secs) = decision.next_evaluation_secs {
            // The agent waits whole evaluation intervals, at most
            // LAZY_MAX_INTERVALS of them: "in 86400 s" read as a day.
            line(
                "next",
                &format!(
                    "in {secs} s (with lazy polling, a hold waits 1 to {} whole evaluation \
                     intervals)",
                    crate::controller::machine::LAZY_MAX_INTERVALS
                ),
            );
        }
    }
    if let (Some(decision), Some(validated)) = (&report.decision, &report.validated)
        && validated != decision
    {
        // What the host changed: the action or its reason, or only when
        // to ask again (a next evaluation under 1 s is raised to 1 s).
        let next = match validated.next_evaluation_secs {
            Some(secs) if validated.next_evaluation_secs != decision.next_evaluation_secs => {
                format!(" (next in {secs} s)")
            }
            _ => String::new(),
        };
        line(
            "host",
            &format!(
                "{}: {}{next}",
                action_text(&validated.action, report.words),
                validated.reason
            ),
        );
    }
    if let Some(at_start) = &report.at_start {
        line(
            "at start",
            &format!(
                "{}: {} (no datapoints yet, every alarm INSUFFICIENT_DATA)",
                action_text(&at_start.action, report.words),
                at_start.reason
            ),
        );
    }
    if let Some(signals) = &report.signals {
        if signals.is_empty() {
            line("signals", "none");
        }
        for signal in signals {
            let value = compact_number(signal.value);
            let text = if signal.value.is_finite() {
                format!("{} = {value}", signal.name)
            } else {
                format!("{} = {value} ({DROPPED_SIGNAL})", signal.name)
            };
            line("signal", &text);
        }
    }
    if let Some(bytes) = report.memory_bytes {
        let limit = report.limits.memory_limit_bytes;
        line(
            "memory",
            &format!(
                "{} held after the call, of the {} limit (--plugin-memory-limit-bytes, \
                 plugin_memory_limit_bytes in [agent])",
                mebibytes(bytes),
                mebibytes(limit)
            ),
        );
    }
    line(
        "result",
        match &report.error {
            None => "ok",
            Some(_) => "FAILED",
        },
    );
    out
}

fn describe(arg: &PluginArg, markdown: bool, words: Words) -> Result<ExitCode, Failure> {
    let (source, _) = resolve(arg)?;
    // A plugin that will not load is a wrong input (78), as for every
    // command but `plugin check`; a disk or the engine failing is the
    // world's (1).
    let mut metadata = host()?.check(&source).map_err(|e| match e {
        PluginError::Read { .. } | PluginError::Engine(_) | PluginError::CompileTimeout { .. } => {
            Failure::Plugin(e.to_string())
        }
        _ => Failure::Usage(e.to_string()),
    })?;
    // The plugin's own texts, read in the target's unit; names, kinds and
    // defaults are keys and values, left as declared.
    metadata.summary = words.plugin_text(&metadata.summary);
    for parameter in metadata.parameters.iter_mut().flatten() {
        parameter.meaning = words.plugin_text(&parameter.meaning);
    }
    if markdown {
        print!("{}", parameters_markdown(&metadata));
    } else {
        print!("{}", describe_text(&metadata));
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a plugin shows no table: its contract cannot declare parameters.
fn undeclared(metadata: &PluginMetadata) -> String {
    format!(
        "{} {} declares no parameters: its contract ({}) predates parameter declarations \
         (0.2.0); its `configure` checks its params itself.",
        metadata.name, metadata.version, metadata.contract_version
    )
}

fn describe_text(metadata: &PluginMetadata) -> String {
    let mut out = format!(
        "{} {}: {} (world {}, contract {})\n",
        metadata.name,
        metadata.version,
        metadata.kind,
        inspect::world_name(metadata.kind),
        metadata.contract_version
    );
    if !metadata.summary.is_empty() {
        out.push_str(&metadata.summary);
        out.push('\n');
    }
    out.push('\n');
    match &metadata.parameters {
        None => {
            out.push_str(&undeclared(metadata));
            out.push('\n');
        }
        Some(parameters) if parameters.is_empty() => out.push_str("No parameters.\n"),
        Some(parameters) => {
            out.push_str("Parameters:\n");
            for p in parameters {
                let default = match (&p.default_json, p.required) {
                    (_, true) => "required".to_owned(),
                    (Some(default), false) => format!("default {default}"),
                    (None, false) => "optional".to_owned(),
                };
                out.push_str(&format!("  {} ({}, {default})\n", p.name, p.kind));
                out.push_str(&format!(
                    "      {}\n",
                    crate::telemetry::text::spaced(&p.meaning)
                ));
            }
        }
    }
    out
}

/// The parameter table the README shows for a plugin: key, kind, whether
/// required, default and meaning, one row per declared parameter in the
/// plugin's order; a sentence instead when it declares none.
pub fn parameters_markdown(metadata: &PluginMetadata) -> String {
    match &metadata.parameters {
        None => format!("{}\n", undeclared(metadata)),
        Some(parameters) => parameter_table(parameters),
    }
}

fn parameter_table(parameters: &[Parameter]) -> String {
    if parameters.is_empty() {
        return "The plugin takes no parameters (`params` must be empty).\n".to_owned();
    }
    let mut out =
        String::from("| key | kind | required | default | meaning |\n|---|---|---|---|---|\n");
    for p in parameters {
        let default = match (&p.default_json, p.required) {
            (_, true) => "-".to_owned(),
            (Some(default), false) => format!("`{}`", cell(default)),
            (None, false) => "see meaning".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            cell(&p.name),
            p.kind,
            if p.required { "yes" } else { "no" },
            default,
            cell(&p.meaning)
        ));
    }
    out
}

/// Text safe in one markdown table cell.
fn cell(text: &str) -> String {
    crate::telemetry::text::spaced(text).replace('|', "\\|")
}

/// One generated block of a README: the built-in it is for and what it
/// holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The built-in's name, from the opening marker.
    pub name: String,
    /// The text between the markers (after the opening marker's line).
    pub content: String,
}

/// Every `<!-- plugin-params NAME -->` ... `<!-- /plugin-params -->` block
/// of `text`, in order; an opening marker without its close, or a close
/// without an opening, is an error naming its line.
pub fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut found = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix(BLOCK_OPEN) {
            if let Some((at, name, _)) = &open {
                return Err(format!(
                    "line {}: a new block opens before the block for {name:?} of line {at} is \
                     closed with `{BLOCK_CLOSE}`",
                    index + 1
                ));
            }
            let name = rest.trim_end_matches("-->").trim();
            if name.is_empty() {
                return Err(format!(
                    "line {}: `{BLOCK_OPEN}-->` names no plugin (valid: `{BLOCK_OPEN}step -->`)",
                    index + 1
                ));
            }
            open = Some((index + 1, name.to_owned(), String::new()));
        } else if trimmed == BLOCK_CLOSE {
            let Some((_, name, content)) = open.take() else {
                return Err(format!(
                    "line {}: `{BLOCK_CLOSE}` closes no block",
                    index + 1
                ));
            };
            found.push(Block { name, content });
        } else if let Some((_, _, content)) = &mut open {
            content.push_str(line);
        }
    }
    match open {
        Some((at, name, _)) => Err(format!(
            "line {at}: the block for {name:?} is never closed with `{BLOCK_CLOSE}`"
        )),
        None => Ok(found),
    }
}

/// `text` with every generated block's content replaced by `render(name)`;
/// everything outside the blocks is kept byte for byte.
pub fn replace_blocks(
    text: &str,
    mut render: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    blocks(text)?;
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix(BLOCK_OPEN) {
            out.push_str(line);
            out.push_str(&render(rest.trim_end_matches("-->").trim())?);
            inside = true;
        } else if trimmed == BLOCK_CLOSE {
            out.push_str(line);
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// The markdown table of the built-in `name`, as `describe --markdown`
/// prints it.
fn builtin_markdown(host: &PluginHost, name: &str) -> Result<String, String> {
    let builtin = builtin::find(name).ok_or_else(|| {
        format!(
            "{name:?} is not a built-in plugin (valid: {})",
            builtin::names()
        )
    })?;
    host.check(PluginSource::BuiltIn(builtin))
        .map(|metadata| parameters_markdown(&metadata))
        .map_err(|e| e.to_string())
}

/// Reads a count of `plugin bench`: a whole number of at least 1 (0 ran
/// one, silently, where `--jobs 0` elsewhere is refused).
fn at_least_one(text: &str) -> Result<usize, String> {
    super::commands::parse_count(text, "a count")
}

fn rewrite_readme(path: &Path) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let host = host()?;
    let rewritten = replace_blocks(&text, |name| builtin_markdown(&host, name))
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let count = blocks(&rewritten).map(|b| b.len()).unwrap_or(0);
    if rewritten == text {
        println!(
            "{}: {count} parameter tables, all up to date",
            path.display()
        );
    } else {
        std::fs::write(path, &rewritten)
            .map_err(|e| Failure::Plugin(format!("cannot write {}: {e}", path.display())))?;
        println!("{}: {count} parameter tables rewritten", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How many times `bench` does each thing.
#[derive(Debug, Clone, Copy)]
struct BenchCounts {
    iterations: usize,
    instances: usize,
    compiles: usize,
}

/// Percentiles of a set of timings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    p50: Duration,
    p99: Duration,
    count: usize,
}

/// The `q` quantile of `samples` (nearest rank); zero for none.
fn spread(mut samples: Vec<Duration>) -> Spread {
    samples.sort_unstable();
    let rank = |q: f64| {
        let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
        samples.get(index - 1).copied().unwrap_or_default()
    };
    Spread {
        p50: rank(0.50),
        p99: rank(0.99),
        count: samples.len(),
    }
}

/// `bytes` in MiB, to a tenth: `17.3 MiB`.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// A loaded plugin of either world, to call in a loop.
enum Loaded {
    Policy(crate::plugin::PolicyInstance),
    Interpreter(crate::plugin::InterpreterInstance),
}

impl Loaded {
    /// Starts a fresh instance of the compiled component, as the call
    /// after a trap or a timeout does.
    fn restart(&mut self) -> Result<(), PluginError> {
        match self {
            Loaded::Policy(policy) => policy.restart(),
            Loaded::Interpreter(interpreter) => interpreter.restart(),
        }
    }
}

fn load(
    host: &PluginHost,
    source: &PluginSource,
    kind: PluginKind,
    params: &str,
) -> Result<Loaded, PluginError> {
    match kind {
        PluginKind::Policy => host
            .load_policy(source, params, "bench")
            .map(Loaded::Policy),
        PluginKind::Interpreter => host
            .load_interpreter(source, params, "bench")
            .map(Loaded::Interpreter),
    }
}

fn bench(
    arg: &PluginArg,
    params: Option<&str>,
    counts: BenchCounts,
    json: bool,
) -> Result<ExitCode, Failure> {
    let params = parse_params(params)?;
    let (source, bytes) = resolve(arg)?;
    let plugin_failed = |e: PluginError| Failure::Plugin(e.to_string());

    let compiler = compiler()?;
    let mut compiles = Vec::with_capacity(counts.compiles);
    let mut facts_seen = None;
    for _ in 0..counts.compiles {
        let facts = facts(&compiler, &source, &bytes)?;
        compiles.push(facts.compile);
        facts_seen = Some(facts);
    }
    let Some(facts) = facts_seen else {
        return Err(Failure::Plugin("no compile ran".to_owned()));
    };

    let host = host()?;
    let metadata = host.check(&source).map_err(plugin_failed)?;
    let params = params.unwrap_or_else(|| inspect::canned_params(&metadata));
    // The first load compiles into the host's cache; the timed ones do not.
    // Its log (and the plugin's, once) is printed; the timed loads and
    // calls' lines are formatted as the agent would and counted, not
    // printed: a plugin that logs at every call would otherwise bury the
    // result under thousands of lines.
    drop(load(&host, &source, metadata.kind, &params).map_err(plugin_failed)?);
    let guest_lines = LineCounter::default();
    let timed = tracing_subscriber::fmt()
        .with_env_filter(
            crate::telemetry::log_filter(&std::env::var("RUST_LOG").unwrap_or_default())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(guest_lines.clone())
        .finish();
    let Timed {
        instances,
        calls,
        timeouts,
        gave_up,
    } = tracing::subscriber::with_default(timed, || {
        time_loads_and_calls(&host, &source, &metadata, &params, counts)
    })
    .map_err(plugin_failed)?;
    let guest_lines = guest_lines.count();
    let deadline_ms = host.limits().call_timeout.as_millis();
    if gave_up {
        return Err(Failure::Plugin(format!(
            "the first {timeouts} calls all ran past the {deadline_ms} ms deadline, so the \
             bench stopped: nothing to time (the agent would hold at each; `plugin check` \
             shows one call; --plugin-timeout-ms gives it longer)"
        )));
    }
    if calls.is_empty() && timeouts > 0 {
        return Err(Failure::Plugin(format!(
            "every one of the {timeouts} timed calls ran past the {deadline_ms} ms deadline: \
             nothing to time (the agent would hold at each; `plugin check` shows one call)"
        )));
    }

    let compile = spread(compiles);
    let instance = spread(instances);
    let warm = spread(calls);
    let function = match metadata.kind {
        PluginKind::Policy => "decide",
        PluginKind::Interpreter => "interpret",
    };
    if json {
        let timing = |s: Spread| json!({ "p50_us": micros(s.p50), "p99_us": micros(s.p99), "count": s.count });
        println!(
            "{}",
            json!({
                "name": metadata.name,
                "version": metadata.version,
                "world": inspect::world_name(metadata.kind),
                "contract_version": metadata.contract_version,
                "source": source.origin(),
                "size_bytes": facts.size_bytes,
                "sha256": facts.sha256,
                "params": serde_json::from_str::<Value>(&params).ok(),
                "compile_ms": millis(compile.p50),
                "compiles": compile.count,
                "instance": timing(instance),
                "call": { "function": function, "p50_us": micros(warm.p50), "p99_us": micros(warm.p99), "count": warm.count, "timeouts": timeouts, "deadline_ms": deadline_ms },
                "log_lines_not_printed": guest_lines,
                "release_build": !cfg!(debug_assertions),
            })
        );
    } else {
        println!(
            "{} {} ({}, contract {}, {} bytes)",
            metadata.name,
            metadata.version,
            inspect::world_name(metadata.kind),
            metadata.contract_version,
            facts.size_bytes
        );
        println!("params          {params}");
        println!(
            "compile         {:.1} ms (median of {}, uncached)",
            millis(compile.p50),
            compile.count
        );
        println!(
            "fresh instance  p50 {:.1} us, p99 {:.1} us ({} starts of the compiled component, as after a trap or timeout: instantiate, metadata, configure)",
            micros(instance.p50),
            micros(instance.p99),
            instance.count
        );
        println!(
            "warm {function:<10} p50 {:.2} us, p99 {:.2} us ({} calls on the canned evaluation)",
            micros(warm.p50),
            micros(warm.p99),
            warm.count
        );
        if timeouts > 0 {
            println!(
                "timeouts        {timeouts} calls ran past the {deadline_ms} ms deadline (not \
                 timed; each next call ran on a fresh instance): the agent would hold at each"
            );
        }
        if guest_lines > 0 {
            println!(
                "log             {guest_lines} lines during the loads and calls, formatted (and \
                 timed) but not printed; `plugin check` prints a call's"
            );
        }
    }
    if cfg!(debug_assertions) {
        // The host's own code (the marshalling of every call) runs
        // unoptimised: tens of times slower than in the agent people run.
        eprintln!(
            "note: this flinkscale is a debug build: its timings are far slower than a release \
             build's (cargo build --release, cargo install)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What the timed part of `bench` measured.
struct Timed {
    /// Each fresh instance's start.
    instances: Vec<Duration>,
    /// Each warm call that answered.
    calls: Vec<Duration>,
    /// The warm calls that ran past the deadline.
    timeouts: usize,
    /// The first [`GIVE_UP_AFTER`] calls all ran past the deadline, and
    /// the bench stopped there.
    gave_up: bool,
}

/// Calls past the deadline, before any answered, after which `bench`
/// stops: a plugin that never answers would otherwise hold it for every
/// iteration's deadline and its restart (10 000 calls: over half an hour),
/// saying nothing.
const GIVE_UP_AFTER: usize = 5;

/// The timed part of `bench`: `counts.instances` fresh instances of the
/// compiled component (what the call after a trap or timeout starts: the
/// file is not read again), then `counts.iterations` warm calls (after up
/// to 100 untimed ones) on the canned evaluation. A call past the
/// deadline is counted, not fatal (a busy machine makes one now and
/// then), and the next runs on a fresh instance started untimed; any
/// other failure ends the bench.
fn time_loads_and_calls(
    host: &PluginHost,
    source: &PluginSource,
    metadata: &PluginMetadata,
    params: &str,
    counts: BenchCounts,
) -> Result<Timed, PluginError> {
    let evaluation = inspect::canned_evaluation();
    let mut loaded = load(host, source, metadata.kind, params)?;
    let mut instances = Vec::with_capacity(counts.instances);
    for _ in 0..counts.instances {
        let started = Instant::now();
        loaded.restart()?;
        instances.push(started.elapsed());
    }

    // `None` for a call past the deadline.
    let mut call = || -> Result<Option<Duration>, PluginError> {
        let started = Instant::now();
        let answered = match &mut loaded {
            // Checked as the agent checks it: an answer outside the
            // contract fails the bench as it fails `check`.
            Loaded::Policy(policy) => policy.decide_checked(&evaluation).map(drop),
            Loaded::Interpreter(interpreter) => interpreter
                .interpret(evaluation.now_ms, &evaluation.app, &evaluation.metrics)
                .map(drop),
        };
        let took = started.elapsed();
        match answered {
            Ok(()) => Ok(Some(took)),
            Err(error) if error.class() == Some(crate::plugin::FailureClass::Timeout) => {
                loaded.restart()?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    };
    // Timeouts before any call answered: past GIVE_UP_AFTER, nothing will.
    let mut answered = false;
    let mut unanswered = 0;
    let mut never_answers = |took: Option<Duration>| {
        answered |= took.is_some();
        unanswered += usize::from(took.is_none());
        !answered && unanswered >= GIVE_UP_AFTER
    };
    let gave_up = |instances| Timed {
        instances,
        calls: Vec::new(),
        timeouts: GIVE_UP_AFTER,
        gave_up: true,
    };
    // Warm up: the first calls fault in the instance's memory.
    for _ in 0..counts.iterations.min(100) {
        if never_answers(call()?) {
            return Ok(gave_up(instances));
        }
    }
    let mut calls = Vec::with_capacity(counts.iterations);
    let mut timeouts = 0;
    for _ in 0..counts.iterations {
        let took = call()?;
        if never_answers(took) {
            return Ok(gave_up(instances));
        }
        match took {
            Some(took) => calls.push(took),
            None => timeouts += 1,
        }
    }
    Ok(Timed {
        instances,
        calls,
        timeouts,
        gave_up: false,
    })
}

/// `value` as `Display` writes it, or in scientific notation where that
/// would be a wall of digits (`1e308`, not 309 digits).
fn compact_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e15).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// A log writer that counts the lines written to it and keeps none.
#[derive(Clone, Default)]
struct LineCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl LineCounter {
    fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::io::Write for LineCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        self.0
            .fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineCounter {
    type Writer = LineCounter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ParameterKind;

    /// A decision whose only change by the host is when to ask again
    /// (0 s raised to 1 s) shows that on the host line.
    #[test]
    fn the_host_line_says_a_raised_next_evaluation() {
        let asked = Decision {
            action: crate::model::Action::Hold,
            reason: "quiet".to_owned(),
            next_evaluation_secs: Some(0),
        };
        let report = CheckReport {
            decision: Some(asked.clone()),
            validated: Some(Decision {
                next_evaluation_secs: Some(1),
                ..asked
            }),
            configured: true,
            ..CheckReport::default()
        };
        let text = check_text(&report);
        assert!(
            text.contains(
                "next        in 0 s (with lazy polling, a hold waits 1 to 15 whole evaluation \
                 intervals)\n"
            ),
            "{text}"
        );
        assert!(text.contains("hold: quiet (next in 1 s)"), "{text}");
    }

    #[test]
    fn numbers_print_compactly() {
        assert_eq!(compact_number(-5.0), "-5");
        assert_eq!(compact_number(0.25), "0.25");
        assert_eq!(compact_number(0.0), "0");
        assert_eq!(compact_number(1e308), "1e308");
        assert_eq!(compact_number(-2.5e-9), "-2.5e-9");
    }

    fn parameter(
        name: &str,
        kind: ParameterKind,
        required: bool,
        default: Option<&str>,
        meaning: &str,
    ) -> Parameter {
        Parameter {
            name: name.to_owned(),
            kind,
            required,
            default_json: default.map(str::to_owned),
            meaning: meaning.to_owned(),
        }
    }

    fn metadata(
        parameters: Option<Vec<Parameter>>,
        contract_version: &'static str,
    ) -> PluginMetadata {
        PluginMetadata {
            name: "step".to_owned(),
            version: "0.2.0".to_owned(),
            kind: PluginKind::Policy,
            contract_version,
            summary: "Steps capacity on two alarms.".to_owned(),
            parameters,
        }
    }

    #[test]
    fn the_table_has_a_row_per_declared_parameter_in_the_plugins_order() {
        let table = parameters_markdown(&metadata(
            Some(vec![
                parameter(
                    "scale_out_alarm",
                    ParameterKind::AlarmId,
                    true,
                    None,
                    "alarm that asks for more capacity",
                ),
                parameter(
                    "operation",
                    ParameterKind::Text,
                    false,
                    Some("\"multiply\""),
                    "`\"multiply\"` or `\"add\"`",
                ),
                parameter(
                    "input_rate_metric",
                    ParameterKind::MetricId,
                    false,
                    None,
                    "when absent, derived\nfrom the backlog",
                ),
            ]),
            "0.2.0",
        ));
        assert_eq!(
            table,
            "| key | kind | required | default | meaning |\n\
             |---|---|---|---|---|\n\
             | `scale_out_alarm` | alarm id | yes | - | alarm that asks for more capacity |\n\
             | `operation` | string | no | `\"multiply\"` | `\"multiply\"` or `\"add\"` |\n\
             | `input_rate_metric` | metric id | no | see meaning | when absent, derived from the backlog |\n"
        );
    }

    #[test]
    fn a_pipe_in_a_meaning_does_not_split_the_cell() {
        let table = parameter_table(&[parameter(
            "a",
            ParameterKind::Number,
            false,
            Some("1"),
            "x | y",
        )]);
        assert!(table.contains("| x \\| y |"), "{table}");
        assert_eq!(table.lines().count(), 3);
    }

    #[test]
    fn a_contract_0_1_0_plugin_says_its_contract_predates_declarations() {
        let text = parameters_markdown(&metadata(None, "0.1.0"));
        assert!(text.contains("declares no parameters"), "{text}");
        assert!(text.contains("(0.1.0) predates"), "{text}");
        assert!(describe_text(&metadata(None, "0.1.0")).contains("predates"));
    }

    #[test]
    fn a_plugin_declaring_an_empty_list_takes_no_parameters() {
        assert_eq!(
            parameters_markdown(&metadata(Some(Vec::new()), "0.2.0")),
            "The plugin takes no parameters (`params` must be empty).\n"
        );
    }

    const README: &str = "# Title\n\
        text\n\
        <!-- plugin-params step -->\n\
        old table\n\
        <!-- /plugin-params -->\n\
        between\n\
        <!-- plugin-params rate -->\n\
        <!-- /plugin-params -->\n\
        end\n";

    #[test]
    fn blocks_are_found_with_their_content() {
        assert_eq!(
            blocks(README),
            Ok(vec![
                Block {
                    name: "step".to_owned(),
                    content: "old table\n".to_owned()
                },
                Block {
                    name: "rate".to_owned(),
                    content: String::new()
                },
            ])
        );
    }

    #[test]
    fn replacing_blocks_keeps_everything_outside_them() {
        let out =
            replace_blocks(README, |name| Ok(format!("table of {name}\n"))).expect("well formed");
        assert_eq!(
            out,
            "# Title\ntext\n<!-- plugin-params step -->\ntable of step\n<!-- /plugin-params -->\n\
             between\n<!-- plugin-params rate -->\ntable of rate\n<!-- /plugin-params -->\nend\n"
        );
        let again =
            replace_blocks(&out, |name| Ok(format!("table of {name}\n"))).expect("well formed");
        assert_eq!(again, out, "rewriting is idempotent");
    }

    #[test]
    fn a_block_left_open_or_a_stray_close_is_an_error_naming_its_line() {
        let open = blocks("a\n<!-- plugin-params step -->\nx\n").expect_err("unclosed");
        assert!(
            open.contains("line 2") && open.contains("never closed"),
            "{open}"
        );
        let stray = blocks("a\n<!-- /plugin-params -->\n").expect_err("stray");
        assert!(stray.contains("line 2"), "{stray}");
        let nested =
            blocks("<!-- plugin-params a -->\n<!-- plugin-params b -->\n").expect_err("nested");
        assert!(nested.contains("line 2"), "{nested}");
    }

    #[test]
    fn a_render_error_stops_the_rewrite() {
        let error = replace_blocks(README, |name| Err(format!("no {name}"))).expect_err("refused");
        assert_eq!(error, "no step");
    }

    #[test]
    fn params_must_be_a_json_object() {
        assert!(matches!(parse_params(Some("{\"a\": 1}")), Ok(Some(p)) if p == "{\"a\":1}"));
        assert!(
            matches!(parse_params(Some("{a: 1}")), Err(Failure::Usage(m)) if m.contains("not valid JSON"))
        );
        assert!(
            matches!(parse_params(Some("[1]")), Err(Failure::Usage(m)) if m.contains("JSON object"))
        );
        assert!(matches!(parse_params(None), Ok(None)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<_> = (1..=100).map(Duration::from_micros).collect();
        let s = spread(samples);
        assert_eq!(
            (s.p50, s.p99, s.count),
            (Duration::from_micros(50), Duration::from_micros(99), 100)
        );
        let one = spread(vec![Duration::from_micros(7)]);
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_micros(7), Duration::from_micros(7))
        );
        assert_eq!(spread(Vec::new()).p50, Duration::ZERO);
    }
}
