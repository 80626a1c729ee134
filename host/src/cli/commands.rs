//! The subcommands' bodies.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aws_credential_types::provider::ProvideCredentials;
use tokio::sync::watch;
use tracing::info;

use crate::agent::{Agent, OnceReport};
use crate::config::load::{self, LoadedConfig};
use crate::controller::ActOutcome;
use crate::model::Action;
use crate::plugin::{PluginHost, SandboxLimits};
use crate::telemetry::{self, Events, Registry};

/// Loads and validates `path`, printing every error; `None` if invalid.
fn load_or_report(path: &Path) -> Option<LoadedConfig> {
    match load::load(path) {
        Ok(loaded) => Some(loaded),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

/// `flinkscale run`.
pub async fn run(config: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(config) else {
        return Ok(ExitCode::FAILURE);
    };
    let registry = Arc::new(Registry::for_config(&loaded.config, wall_ms()));
    // Bound before the agent starts, so that a taken port fails at once.
    let listener = match loaded.config.agent.listen {
        Some(addr) => Some(
            telemetry::http::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ([agent] listen)"))?,
        ),
        None => None,
    };
    let events = Events::log_only().with_registry(registry.clone());
    let agent = Agent::on_aws(&loaded, dry_run, events)
        .await
        .context("cannot start the agent")?;
    info!(
        message = "Agent started.",
        applications = loaded.config.applications.len(),
        dry_run,
    );
    let (stop, stopped) = watch::channel(false);
    // Plugins are compiled by now: staleness counts from here.
    registry.mark_started(wall_ms());
    let server = listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            info!(message = "Serving /metrics, /livez, /readyz and /healthz.", %addr);
        }
        tokio::spawn(telemetry::http::serve(
            listener,
            registry.clone(),
            stopped.clone(),
        ))
    });
    let running = tokio::spawn(agent.run(stopped));
    shutdown_signal().await;
    info!(message = "Shutting down.");
    let _ = stop.send(true);
    let _ = running.await;
    if let Some(server) = server {
        let _ = server.await;
    }
    info!(message = "Agent stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Wall-clock now, ms since the epoch, as the controllers stamp events.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `flinkscale once`.
pub async fn once(config: &Path, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(config) else {
        return Ok(ExitCode::FAILURE);
    };
    let mut agent = Agent::on_aws(&loaded, dry_run, Events::log_only())
        .await
        .context("cannot start the agent")?;
    let reports = agent.once().await;
    let mut ok = true;
    for report in &reports {
        ok &= report.result.is_ok();
        if json {
            println!("{}", once_json(report));
        } else {
            print!("{}", once_text(report, dry_run));
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn iso(ms: i64) -> String {
    aws_smithy_types::DateTime::from_millis(ms)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| ms.to_string())
}

/// A value for people: at most three decimals, no trailing zeros.
fn number(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn once_text(report: &OnceReport, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name = &report.application;
    let (assessment, outcome) = match &report.result {
        Ok(r) => r,
        Err(error) => return format!("application {name:?}: evaluation failed: {error}\n"),
    };
    let s = &assessment.state;
    let _ = writeln!(
        out,
        "application {name:?}: {}, {} KPU (parallelism {}, {} per KPU), version {}",
        s.status,
        s.kpu(),
        s.parallelism,
        s.parallelism_per_kpu,
        s.version_id
    );
    let _ = writeln!(out, "  metrics:");
    for series in &assessment.evaluation.metrics {
        let q = &series.query;
        let latest = series
            .points
            .last()
            .map(|p| format!("latest {} at {}", number(p.value), iso(p.timestamp_ms)))
            .unwrap_or_else(|| "no data".to_owned());
        let _ = writeln!(
            out,
            "    {:<12} {} {} {} {}s: {} points, {latest}",
            q.id,
            q.namespace,
            q.metric_name,
            q.statistic,
            q.period_secs,
            series.points.len()
        );
    }
    if !assessment.evaluation.alarms.is_empty() {
        let _ = writeln!(out, "  alarms:");
        for alarm in &assessment.evaluation.alarms {
            let _ = writeln!(
                out,
                "    {:<12} {:<17} since {}",
                alarm.name,
                alarm.state.to_string(),
                iso(alarm.since_ms)
            );
        }
    }
    for signal in &assessment.evaluation.signals {
        let _ = writeln!(out, "  signal {} = {}", signal.name, number(signal.value));
    }
    let d = &assessment.decision;
    let action = match d.action {
        Action::Hold => "hold".to_owned(),
        Action::ScaleTo(k) => format!("scale to {k} KPU"),
    };
    let _ = writeln!(out, "  decision: {action}: {}", d.reason);
    let done = match (outcome, d.action) {
        (ActOutcome::Held, Action::ScaleTo(_)) if dry_run => {
            "dry run: UpdateApplication not sent".to_owned()
        }
        (ActOutcome::Held, _) => "nothing to do".to_owned(),
        (ActOutcome::Started { to_kpu, .. }, _) => {
            format!("UpdateApplication sent: {} -> {to_kpu} KPU", s.kpu())
        }
        (ActOutcome::NotSent { .. }, _) => "UpdateApplication not sent (see the log)".to_owned(),
    };
    let _ = writeln!(out, "  action: {done}");
    out
}

fn once_json(report: &OnceReport) -> serde_json::Value {
    match &report.result {
        Ok((assessment, outcome)) => serde_json::json!({
            "application": report.application,
            "state": assessment.state,
            "evaluation": assessment.evaluation,
            "decision": assessment.decision,
            "outcome": match outcome {
                ActOutcome::Held => serde_json::json!({"kind": "held"}),
                ActOutcome::Started { to_kpu, at_ms } =>
                    serde_json::json!({"kind": "update_sent", "to_kpu": to_kpu, "at_ms": at_ms}),
                ActOutcome::NotSent { retry_after } =>
                    serde_json::json!({"kind": "not_sent", "retry_after_secs": retry_after.as_secs()}),
            },
        }),
        Err(error) => serde_json::json!({
            "application": report.application,
            "error": error.to_string(),
        }),
    }
}

/// `flinkscale validate`.
pub async fn validate(config: &Path, environment: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(config) else {
        return Ok(ExitCode::FAILURE);
    };
    if environment {
        let mut failures = 0;
        let agent = &loaded.config.agent;
        let host = PluginHost::new(SandboxLimits {
            call_timeout: std::time::Duration::from_millis(agent.plugin_timeout_ms),
            memory_limit_bytes: agent.plugin_memory_limit_bytes,
        })
        .context("cannot start the plugin host")?;
        for (app, paths) in loaded.config.applications.iter().zip(&loaded.plugins) {
            let checks = std::iter::once((&app.policy, &paths.policy, true)).chain(
                app.interpreters
                    .iter()
                    .zip(&paths.interpreters)
                    .map(|(c, p)| (c, p, false)),
            );
            for (plugin, path, is_policy) in checks {
                let params = load::params_json(&plugin.params);
                let result = if is_policy {
                    host.load_policy(path, &params, &app.name)
                        .map(|p| p.label())
                } else {
                    host.load_interpreter(path, &params, &app.name)
                        .map(|p| p.label())
                };
                match result {
                    Ok(label) => println!(
                        "{}: application {:?}: plugin {label} loads and accepts its params",
                        config.display(),
                        app.name
                    ),
                    Err(error) => {
                        failures += 1;
                        println!("{}: application {:?}: {error}", config.display(), app.name);
                    }
                }
            }
        }
        let sdk = crate::aws::sdk_config(agent.region.as_deref()).await;
        match sdk.credentials_provider() {
            Some(provider) => match provider.provide_credentials().await {
                Ok(_) => println!("AWS credentials: found"),
                Err(error) => {
                    failures += 1;
                    println!("AWS credentials: not found: {error}");
                }
            },
            None => {
                failures += 1;
                println!("AWS credentials: no provider configured");
            }
        }
        if failures > 0 {
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "{}: valid ({} application{})",
        config.display(),
        loaded.config.applications.len(),
        if loaded.config.applications.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The arguments of `flinkscale simulate`.
pub struct SimulateArgs {
    /// Scenario file.
    pub scenario: std::path::PathBuf,
    /// Preset or plugin.
    pub policy: String,
    /// JSON parameters.
    pub params: Option<String>,
    /// A configuration instead of a preset.
    pub config: Option<std::path::PathBuf>,
    /// Plugin folder.
    pub plugin_dir: Option<std::path::PathBuf>,
    /// JSON output.
    pub json: bool,
    /// Folder for the HTML report.
    pub report: Option<std::path::PathBuf>,
    /// Print every evaluation, not only the rescales.
    pub decisions: bool,
}

/// `flinkscale simulate` (synchronous: the simulation runs its own paused
/// runtime on a plain thread).
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || simulate_blocking(args)).await?
}

fn simulate_blocking(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::{Scenario, presets, report};
    let scenario = Scenario::load(&args.scenario)?;
    let plugin_dir = args.plugin_dir.unwrap_or_else(presets::shipped_plugin_dir);
    let (loaded, name) = match &args.config {
        Some(path) => match load::load(path) {
            Ok(l) => (l, path.display().to_string()),
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => {
            let params = match &args.params {
                None => serde_json::Map::new(),
                Some(text) => match serde_json::from_str(text) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => anyhow::bail!(
                        "--params must be a JSON object, e.g. '{{\"catch_up_secs\": 120}}'"
                    ),
                },
            };
            let choice = presets::PolicyChoice {
                name: args.policy.clone(),
                params,
            };
            match presets::config(&scenario, &choice, &plugin_dir) {
                Ok(l) => (l, args.policy.clone()),
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let started = std::time::Instant::now();
    let outcome = match ProgressLine::on_terminal(&scenario.name) {
        Some(mut bar) => {
            let outcome = crate::sim::driver::simulate_with_progress(
                &scenario,
                &loaded,
                Some(&mut |done, total| bar.draw(done, total)),
            );
            bar.clear();
            outcome?
        }
        None => crate::sim::driver::simulate(&scenario, &loaded)?,
    };
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let first = &loaded.config.applications[0];
    let params = serde_json::from_str(&load::params_json(&first.policy.params))
        .unwrap_or(serde_json::Value::Null);
    let report = report::SimReport {
        scenario: scenario.name.clone(),
        policy: report::PolicyInfo::new(&name, &loaded.plugins[0].policy, params),
        sim_speed: outcome.scores.duration_secs as f64 / wall,
        scores: outcome.scores,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
        let timeline = report::timeline_text(&outcome.world, &outcome.events);
        if !timeline.is_empty() {
            print!("\nrescales\n{timeline}");
        }
        if args.decisions {
            print!("\nevaluations\n{}", report::decisions_text(&outcome.events));
        }
    }
    if let Some(dir) = &args.report {
        simulate_report(dir, &scenario, &report, &outcome.world)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A one-line progress bar on stderr for `simulate`, redrawn at most five
/// times a second, shown only when stderr is a terminal (a log or a pipe
/// gets nothing).
struct ProgressLine {
    label: String,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
}

impl ProgressLine {
    /// A bar labelled `label` if stderr is a terminal.
    fn on_terminal(label: &str) -> Option<Self> {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal().then(|| Self {
            label: label.to_owned(),
            started: std::time::Instant::now(),
            drawn: None,
        })
    }

    /// Redraws the bar for `done` of `total` simulated seconds.
    fn draw(&mut self, done: u64, total: u64) {
        let now = std::time::Instant::now();
        if self
            .drawn
            .is_some_and(|t| now - t < std::time::Duration::from_millis(200))
            && done < total
        {
            return;
        }
        self.drawn = Some(now);
        let fraction = done as f64 / total.max(1) as f64;
        let filled = (fraction * 30.0).round() as usize;
        let speed = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{} [{}{}] {:>3.0} %  {:.1} of {:.1} simulated hours, {:.0} simulated s per s ",
            self.label,
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            100.0 * fraction,
            done as f64 / 3600.0,
            total as f64 / 3600.0,
            speed
        );
    }

    /// Erases the bar.
    fn clear(self) {
        eprint!("\r\x1b[2K");
    }
}

/// Writes the HTML page of `simulate --report DIR` and says where (on
/// stderr, so that `--json` output stays one object).
fn simulate_report(
    dir: &Path,
    scenario: &crate::sim::Scenario,
    report: &crate::sim::report::SimReport,
    world: &crate::sim::World,
) -> anyhow::Result<()> {
    let path = crate::sim::report_html::write_report(dir, scenario, report, world)?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// The arguments of `flinkscale bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A folder of scenarios (every *.toml but demo and e2e-*) or a
    /// scenario file; repeatable. Default: tests/scenarios.
    #[arg(long = "scenarios", value_name = "DIR|FILE")]
    pub scenarios: Vec<std::path::PathBuf>,
    /// The policies, comma-separated (presets, plugin names or .wasm paths).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "seed,msf-builtin,hold,target-tracking,rate"
    )]
    pub policies: Vec<String>,
    /// Where to write bench.json, bench.md and the HTML pages.
    #[arg(long, default_value = "target/bench")]
    pub out: std::path::PathBuf,
    /// Runs at a time (each on its own thread).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Where the plugins are (default: where `cargo plugins` puts them).
    #[arg(long)]
    pub plugin_dir: Option<std::path::PathBuf>,
    /// Do not write an HTML page per run under OUT/reports/.
    #[arg(long)]
    pub no_reports: bool,
}

/// `flinkscale bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || bench_blocking(args)).await?
}

fn bench_blocking(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::{bench, presets};
    let sources = if args.scenarios.is_empty() {
        vec![bench::default_scenario_dir()]
    } else {
        args.scenarios.clone()
    };
    let mut scenarios = Vec::new();
    for source in sources {
        if source.is_dir() {
            scenarios.extend(bench::scenario_files(&source)?);
        } else {
            scenarios.push(source);
        }
    }
    let options = bench::BenchOptions {
        scenarios,
        policies: args.policies.clone(),
        plugin_dir: args.plugin_dir.unwrap_or_else(presets::shipped_plugin_dir),
        jobs: args.jobs.max(1),
        report_dir: (!args.no_reports).then(|| args.out.join("reports")),
    };
    let result = bench::run(&options)?;
    let (json, md) = bench::write(&result, &args.out)?;
    print!("{}", bench::markdown(&result));
    println!("\n{}", bench::speed_line(&result));
    eprintln!(
        "wrote {}, {} and the README's table, {}",
        md.display(),
        json.display(),
        args.out.join("readme.md").display()
    );
    if let Some(dir) = &options.report_dir {
        eprintln!("HTML pages: {}/<scenario>/<policy>.html", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
