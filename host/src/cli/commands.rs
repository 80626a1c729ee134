//! The subcommands' bodies.
//!
//! What they print to a terminal never carries a plugin's or AWS's control
//! characters: every such string goes through [`printable`] first, so a
//! decision reason cannot clear the screen or rewrite a line it follows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aws_credential_types::provider::ProvideCredentials;
use tokio::sync::watch;
use tracing::info;

use crate::agent::{Agent, AgentError, OnceReport};
use crate::clock::system_ms;
use crate::config::load::{self, LoadedConfig};
use crate::config::validate::{FieldPath, Problem};
use crate::controller::ActOutcome;
use crate::metrics::{MetricQuery, Series};
use crate::model::{Action, Application};
use crate::plugin::{PluginError, PluginHost};
use crate::state::StateError;
use crate::target::{AppStatus, Words};
use crate::telemetry::text::{iso, number};
use crate::telemetry::{self, Events, Registry};

/// The exit status for a configuration error (`EX_CONFIG` in sysexits.h):
/// the agent refuses to start, and restarting it as it is will not help.
pub const EX_CONFIG: u8 = 78;

/// The exit status of `run` or `once` when the agent could not be
/// assembled from `loaded`: [`EX_CONFIG`] (after saying why on stderr)
/// for a journal written by a newer agent, which this one must neither
/// read nor replace, for applications that call AWS when the SDK's chain
/// found no region (unless this is an EC2 instance, whose metadata
/// service may answer at the next start: exit 1 then), and for a plugin the configuration names that will
/// not load or refuses its params (said as `validate` says it, with the
/// file, line and field: [`plugin_problems`]); any other failure is
/// returned as an error (exit status 1).
async fn startup_failure(error: AgentError, loaded: &LoadedConfig) -> anyhow::Result<ExitCode> {
    match &error {
        AgentError::NoRegion { .. } if crate::aws::region_may_come_later() => {
            eprintln!(
                "error: cannot start the agent: {error}; {}",
                crate::aws::METADATA_REGION_HINT
            );
            return Ok(ExitCode::FAILURE);
        }
        AgentError::State(StateError::Newer { .. }) | AgentError::NoRegion { .. } => {
            eprintln!("error: cannot start the agent: {error}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
        _ if error.is_plugin_configuration() => {
            let tried = loaded.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::plugin::on_plugin_thread(|| plugin_problems(&tried, true))
            })
            .await;
            match found {
                Ok(Ok(check)) if !check.problems.is_empty() => {
                    for problem in load::locate(loaded, &check.problems) {
                        eprintln!("{}", printable(&problem.to_string()));
                    }
                }
                // Not found again (a file fixed meanwhile): said as it
                // was met.
                _ => eprintln!(
                    "error: cannot start the agent: {}",
                    printable(&error.to_string())
                ),
            }
            return Ok(ExitCode::from(EX_CONFIG));
        }
        _ => {}
    }
    Err(anyhow::Error::new(error).context("cannot start the agent"))
}

/// `text` fit for a terminal: control characters (escape, carriage return,
/// newline, ...) and the invisible characters that reorder or hide text
/// (bidirectional overrides, zero-width marks) are shown escaped (`\u{1b}`,
/// `\r`) instead of acting on the terminal. Unlike
/// [`crate::plugin::validate::sanitize_text`] (which blanks them for log
/// lines), escaping shows the operator what was sent.
fn printable(text: &str) -> String {
    if !text.chars().any(acts_on_terminals) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts_on_terminals(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is a control character or one that reorders or hides text.
fn acts_on_terminals(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `value` as one line of JSON fit for a terminal: serde_json escapes the
/// C0 controls only, so DEL, the C1 controls (U+009B is a CSI to some
/// terminals) and the characters [`printable`] escapes are written as
/// `\uXXXX` escapes too. They occur only inside strings, so the JSON means
/// exactly the same.
fn json_line(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !text.chars().any(acts_on_terminals) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts_on_terminals(c) {
            // All of them are in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

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

/// Raises the open-files limit for `applications` applications (see
/// [`crate::limits`]): logged when raised, a warning when what it allows
/// is short of what they need, or when it cannot be read or raised.
fn open_files(applications: usize) {
    let needed = crate::limits::files_needed(applications);
    match crate::limits::raise_open_files() {
        Ok(Some(limit)) => {
            if limit.after > limit.before {
                tracing::debug!(
                    message = "Open files limit raised.",
                    from = limit.before,
                    to = limit.after,
                );
            }
            if limit.after < needed {
                tracing::warn!(
                    message = "The open files limit is lower than the applications need (about two files each); raise the hard limit (ulimit -Hn, systemd LimitNOFILE, the container's nofile ulimit).",
                    limit = limit.after,
                    needed,
                    applications,
                );
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(
            message = "Cannot raise the open files limit.",
            %error,
            needed,
            applications,
        ),
    }
}

/// `flinkscale run`.
pub async fn run(config: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    // First: a SIGTERM or ctrl-c from here on, during the start too, stops
    // the agent gracefully.
    let mut stops = crate::shutdown::Signals::listen();
    let Some(loaded) = load_or_report(config) else {
        return Ok(ExitCode::from(EX_CONFIG));
    };
    if !aws_environment_ok(&loaded) {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    open_files(loaded.config.applications.len());
    let registry =
        Arc::new(Registry::for_config(&loaded.config, system_ms()).with_dry_run(dry_run));
    // Bound before the agent starts, so that a taken port fails at once.
    let listener = match loaded.config.agent.listen {
        Some(addr) => Some(
            telemetry::http::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ([agent] listen)"))?,
        ),
        None => None,
    };
    // Served from now: a liveness probe gets its answer while the plugins
    // compile (a minute for a Python one on a cold cache), where an
    // unanswered one would have the orchestrator kill the agent mid-compile
    // for good; /readyz says `starting` meanwhile.
    let (stop, stopped) = watch::channel(false);
    registry.mark_starting();
    let server = listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            info!(message = "Serving /metrics, /livez, /readyz, /healthz, /status and /explain.", %addr);
        }
        tokio::spawn(telemetry::http::serve_with_state(
            listener,
            registry.clone(),
            Some(loaded.state_dir.clone()),
            stopped.clone(),
        ))
    });
    // Stops the server on a return during the start.
    let stop_server = |server: Option<tokio::task::JoinHandle<()>>| {
        let _ = stop.send(true);
        async move {
            if let Some(server) = server {
                let _ = server.await;
            }
        }
    };
    // Listening before the agent starts: a SIGHUP sent while it starts
    // reloads (once it runs) instead of ending the process.
    let hangups = hangup_signals();
    let (events, history) = with_history(
        Events::log_only().with_registry(registry.clone()),
        &loaded,
        dry_run,
    );
    // A task of its own: the AWS SDK reads its profile files with blocking
    // I/O, which must not hold the thread that waits for a stop.
    let mut start = {
        let loaded = loaded.clone();
        tokio::spawn(async move { Agent::on_aws(&loaded, dry_run, events).await })
    };
    let agent = tokio::select! {
        agent = &mut start => match agent {
            Ok(Ok(agent)) => agent,
            Ok(Err(error)) => {
                stop_server(server).await;
                return startup_failure(error, &loaded).await;
            }
            Err(error) => {
                stop_server(server).await;
                return startup_failure(AgentError::Assembly(error.to_string()), &loaded).await;
            }
        },
        () = stops.recv() => {
            // The start is given up where it is: it has only read (the
            // AWS configuration, the journals, loaded and locked, and the
            // plugins) and sent nothing to the history, whose thread is
            // idle. A plugin compile on the blocking pool may still hold
            // the history's sender, so that thread is not waited for:
            // there is nothing for it to finish.
            start.abort();
            drop(history);
            stop_server(server).await;
            info!(message = "Stopped during start.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    info!(
        message = "Agent started.",
        applications = loaded.config.applications.len(),
        dry_run,
    );
    // Plugins are compiled by now: staleness counts from here.
    registry.mark_started(system_ms());
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn(agent.run_reloading(stopped, reloads));
    let reloader = tokio::spawn(reload_on_hangup(
        hangups,
        config.to_path_buf(),
        registry.clone(),
        reload,
    ));
    stops.recv().await;
    reloader.abort();
    info!(message = "Shutting down.");
    let _ = stop.send(true);
    let _ = running.await;
    if let Some(server) = server {
        let _ = server.await;
    }
    // The controllers are gone, and with them the history's senders.
    finish_history(history).await;
    info!(message = "Agent stopped.");
    Ok(ExitCode::SUCCESS)
}

/// `events`, also kept in the decision history of `loaded`'s `state_dir`
/// (`flinkscale explain`), and the history's writer. Without a history the
/// agent still scales: a folder it cannot write is logged, not fatal. A
/// `dry_run` agent's history leaves out the applications an acting agent
/// holds there ([`telemetry::history::spawn_dry_run`]).
fn with_history(
    events: Events,
    loaded: &LoadedConfig,
    dry_run: bool,
) -> (Events, Option<telemetry::history::Writer>) {
    let spawn = if dry_run {
        telemetry::history::spawn_dry_run
    } else {
        telemetry::history::spawn
    };
    match spawn(
        telemetry::history::dir(&loaded.state_dir),
        telemetry::history::DEFAULT_BOUND,
    ) {
        Ok((history, writer)) => (events.with_history(history), Some(writer)),
        Err(error) => {
            tracing::warn!(
                message = "Cannot keep the decision history; `flinkscale explain` will have nothing to show.",
                state_dir = %loaded.state_dir.display(),
                %error,
            );
            (events, None)
        }
    }
}

/// Waits until the history's thread has written what it was sent (every
/// [`Events`] must be dropped by then), at most 5 s: a sender kept alive by
/// mistake must not stop the exit.
async fn finish_history(writer: Option<telemetry::history::Writer>) {
    if let Some(writer) = writer {
        let finished = tokio::task::spawn_blocking(move || writer.finish());
        if tokio::time::timeout(std::time::Duration::from_secs(5), finished)
            .await
            .is_err()
        {
            tracing::warn!(message = "The decision history did not finish writing in 5 s.");
        }
    }
}

/// The SIGHUPs to come, or `None` where they cannot be listened for (the
/// configuration is then not reloadable, and the log says so).
#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|error| {
            tracing::warn!(
                message = "Cannot listen for SIGHUP; the configuration is not reloadable.",
                %error,
            );
        })
        .ok()
}

/// No SIGHUP off Unix.
#[cfg(not(unix))]
fn hangup_signals() -> Option<std::convert::Infallible> {
    None
}

/// On every SIGHUP, loads and validates the configuration file again: a
/// valid one goes to the agent (and the metrics registry learns its
/// applications); an invalid one is logged, every located error, and the
/// running configuration stays.
#[cfg(unix)]
async fn reload_on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    config: std::path::PathBuf,
    registry: Arc<Registry>,
    reload: tokio::sync::mpsc::UnboundedSender<LoadedConfig>,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        info!(message = "SIGHUP: reloading the configuration.", file = %config.display());
        // Reading and validating may touch a slow disk: off the runtime.
        let path = config.clone();
        let loaded = match tokio::task::spawn_blocking(move || load::load(&path)).await {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(message = "Configuration reload failed.", %error);
                continue;
            }
        };
        match loaded {
            Ok(loaded) => {
                registry.config_reloaded(true);
                registry.set_applications(&loaded.config, system_ms());
                if reload.send(loaded).is_err() {
                    return;
                }
            }
            Err(errors) => {
                registry.config_reloaded(false);
                for error in errors.errors() {
                    tracing::error!(
                        message = "Invalid configuration; keeping the running one.",
                        error = %error,
                    );
                }
                tracing::error!(
                    message = "Configuration reload refused; the running configuration stays.",
                    file = %config.display(),
                    errors = errors.len(),
                );
            }
        }
    }
}

/// No SIGHUP off Unix: nothing to reload on.
#[cfg(not(unix))]
async fn reload_on_hangup(
    _hangups: Option<std::convert::Infallible>,
    _config: std::path::PathBuf,
    _registry: Arc<Registry>,
    _reload: tokio::sync::mpsc::UnboundedSender<LoadedConfig>,
) {
}

/// `flinkscale once`.
pub async fn once(config: &Path, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(config) else {
        return Ok(ExitCode::from(EX_CONFIG));
    };
    if !aws_environment_ok(&loaded) {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    // A dry `once` only prints: it leaves `state_dir` alone.
    let (events, history) = if dry_run {
        (Events::log_only(), None)
    } else {
        with_history(Events::log_only(), &loaded, false)
    };
    let mut agent = match Agent::on_aws(&loaded, dry_run, events).await {
        Ok(agent) => agent,
        Err(error) => return startup_failure(error, &loaded).await,
    };
    let reports = agent.once().await;
    let paused = agent.paused().to_vec();
    // The agent holds the history's sender: drop it so the history's
    // thread can finish writing.
    drop(agent);
    finish_history(history).await;
    let mut ok = true;
    for report in &reports {
        ok &= report.result.is_ok();
        if json {
            println!("{}", json_line(&once_json(report)));
        } else {
            print!("{}", once_text(report));
        }
    }
    for name in paused {
        if json {
            println!(
                "{}",
                json_line(&serde_json::json!({"application": name, "mode": "paused"}))
            );
        } else {
            println!("application {name:?}: paused (mode = \"paused\"): not evaluated");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `validate --environment` prints when the SDK's chain finds no
/// credentials: the SDK's reason (often only "the credential provider was
/// not enabled"), and where the chain looks, so that the operator knows
/// what to provide.
fn credentials_not_found(reason: &str) -> String {
    format!(
        "AWS credentials: not found: {}; the SDK's chain looks at AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, AWS_PROFILE (~/.aws/config and ~/.aws/credentials), a web \
         identity token (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN: EKS IRSA), the ECS \
         task role and the EC2 instance role: give the agent one of them",
        printable(reason)
    )
}

fn once_text(report: &OnceReport) -> String {
    let dry_run = report.dry_run;
    use std::fmt::Write;
    let mut out = String::new();
    let name = &report.application;
    let (assessment, outcome) = match &report.result {
        Ok(r) => r,
        Err(error) => {
            return format!(
                "application {name:?}: evaluation failed: {}\n",
                printable(&error.to_string())
            );
        }
    };
    let s = &assessment.state;
    let words = report.words;
    let _ = match words {
        Words::Msf => writeln!(
            out,
            "application {name:?}: {}, {} KPU (parallelism {}, {} per KPU), version {}",
            s.status,
            s.kpu(),
            s.parallelism,
            s.parallelism_per_kpu,
            s.version_id
        ),
        // One unit of parallelism is one KPU: the KPU would say it twice.
        Words::Flink => writeln!(
            out,
            "application {name:?}: {}, parallelism {}, version {}",
            s.status, s.parallelism, s.version_id
        ),
    };
    if s.autoscaling_enabled {
        let _ = writeln!(
            out,
            "  warning: {}",
            crate::cli::conventions::AUTOSCALING_ON
        );
    }
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
            printable(&q.id),
            printable(&q.namespace),
            printable(&q.metric_name),
            printable(&q.statistic),
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
                printable(&alarm.name),
                alarm.state.to_string(),
                iso(alarm.since_ms)
            );
        }
    }
    for signal in &assessment.evaluation.signals {
        let _ = writeln!(
            out,
            "  signal {} = {}",
            printable(&signal.name),
            number(signal.value)
        );
    }
    let d = &assessment.decision;
    let action = match d.action {
        Action::Hold => "hold".to_owned(),
        Action::ScaleTo(k) => format!("scale to {}", words.capacity(k)),
    };
    let _ = writeln!(out, "  decision: {action}: {}", printable(&d.reason));
    let call = words.rescale_call();
    let done = match (outcome, d.action) {
        (ActOutcome::Held, Action::ScaleTo(_)) if dry_run => format!("dry run: {call} not sent"),
        (ActOutcome::Held, _) => "nothing to do".to_owned(),
        (ActOutcome::Started { to_kpu, .. }, _) => match words {
            Words::Msf => format!("{call} sent: {} -> {to_kpu} KPU", s.kpu()),
            Words::Flink => format!("{call} sent: parallelism {} -> {to_kpu}", s.parallelism),
        },
        (ActOutcome::NotSent { reason: None, .. }, _) => {
            format!("{call} not sent (see the log)")
        }
        (
            ActOutcome::NotSent {
                reason: Some(reason),
                ..
            },
            _,
        ) => format!("{call} not sent: {}", printable(reason)),
    };
    let _ = writeln!(out, "  action: {done}");
    out
}

fn once_json(report: &OnceReport) -> serde_json::Value {
    match &report.result {
        Ok((assessment, outcome)) => serde_json::json!({
            "application": report.application,
            "target": report.words,
            "state": assessment.state,
            "evaluation": assessment.evaluation,
            "decision": assessment.decision,
            "outcome": match outcome {
                ActOutcome::Held => serde_json::json!({"kind": "held"}),
                ActOutcome::Started { to_kpu, at_ms } =>
                    serde_json::json!({"kind": "update_sent", "to_kpu": to_kpu, "at_ms": at_ms}),
                ActOutcome::NotSent { retry_after, reason } =>
                    serde_json::json!({"kind": "not_sent", "retry_after_secs": retry_after.as_secs(), "reason": reason}),
            },
        }),
        Err(error) => serde_json::json!({
            "application": report.application,
            "target": report.words,
            "error": error.to_string(),
        }),
    }
}

/// What `validate` refuses of the plugins `loaded` names (one that will
/// not load, refuses its params, or names an alarm or metric its
/// application lacks), not located: `import alarms` checks what it is
/// about to write, which is no file yet. Nothing when the plugin host
/// cannot start (whoever runs the plugins will say so).
pub(crate) fn plugin_refusals(loaded: &LoadedConfig) -> Vec<Problem> {
    match crate::plugin::on_plugin_thread(|| plugin_problems(loaded, true)) {
        Ok(check) => check.problems,
        Err(_) => Vec::new(),
    }
}

/// Loads every application's policy with its params, as the agent will
/// at start (with `policies`; without, `validate --environment` says
/// their loads with [`print_plugin_loads`] instead of refusing at once),
/// then tries every interpreter on its params and on the
/// application's configured series (with no datapoints yet), as the agent
/// will at its first evaluation, so that a plugin that will not load (not
/// a component, the other world, a truncated file) or refuses its params
/// (a bad expression, a series id the application does not configure) is
/// a located configuration error before the agent runs. Local only: no
/// AWS call. Blocking (compiles and calls plugins): run it off the
/// runtime.
fn plugin_problems(loaded: &LoadedConfig, policies: bool) -> Result<PluginCheck, PluginError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut loads = Vec::new();
    let agent = &loaded.config.agent;
    let host = PluginHost::new(agent.sandbox_limits())?;
    for (k, (app, paths)) in loaded.applications().enumerate() {
        // Where the application is in the file.
        let i = loaded.file_index(k);
        let policy_at = FieldPath::root().key("application").index(i).key("policy");
        let params = load::params_json(&app.policy.params);
        let loaded_policy =
            host.load_policy_in(&paths.policy, &params, &app.name, Words::from(app.target));
        let load = PluginLoad::of(
            app,
            &app.policy,
            &policy_at,
            loaded_policy.as_ref().map(|p| (p.label(), p.metadata())),
        );
        if policies {
            problems.extend(load.problems.iter().cloned());
        }
        // Asked below when it names only the application's ids.
        let policy = loaded_policy.ok().filter(|_| load.problems.is_empty());
        loads.push(load);
        let series: Vec<Series> = app
            .metrics
            .iter()
            .map(|m| Series {
                query: MetricQuery::from_config(m, &app.metrics),
                points: Vec::new(),
            })
            .collect();
        let kpu = app.min_kpu.max(1);
        let application = Application {
            name: app.name.clone(),
            status: AppStatus::Running,
            kpu,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            min_kpu: app.min_kpu,
            max_kpu: app.max_kpu,
            version_id: 1,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        };
        let now_ms = system_ms();
        let samples = [
            sample_series(&series, now_ms, [1.0, 1.0, 1.0]),
            sample_series(&series, now_ms, [3.0, 2.0, 1.0]),
            sample_series(&series, now_ms, [1.0, 2.0, 3.0]),
        ];
        // The signals the interpreters give on sample data, and whether
        // every interpreter could be asked.
        let mut signals: Vec<String> = Vec::new();
        // Each signal name with the interpreter (index, label) that gave it.
        let mut given_by: Vec<(String, usize, String)> = Vec::new();
        // The signals given on the series without data, for the policy's
        // first decision.
        let mut start_signals = Vec::new();
        let mut all_asked = true;
        for (j, (interpreter, path)) in app.interpreters.iter().zip(&paths.interpreters).enumerate()
        {
            let at = FieldPath::root()
                .key("application")
                .index(i)
                .key("interpreter")
                .index(j);
            let params = load::params_json(&interpreter.params);
            let words = Words::from(app.target);
            let outcome = host.load_interpreter_in(path, &params, &app.name, words);
            let load = PluginLoad::of(
                app,
                interpreter,
                &at,
                outcome.as_ref().map(|i| (i.label(), i.metadata())),
            );
            // A load's error is said below, with the interpreter's other
            // problems.
            if outcome.is_ok() {
                problems.extend(load.problems.iter().cloned());
            }
            loads.push(load);
            let (path_at, message) = match outcome {
                Ok(mut instance) => match instance.interpret(now_ms, &application, &series) {
                    Ok(given) => {
                        // As the agent hands them on: NaN and infinities
                        // dropped.
                        start_signals.extend(given.into_iter().filter(|s| s.value.is_finite()));
                        let mut own: Vec<String> = Vec::new();
                        for sample in &samples {
                            match instance.interpret(now_ms, &application, sample) {
                                Ok(given) => {
                                    for name in given.into_iter().map(|s| s.name) {
                                        if !own.contains(&name) {
                                            own.push(name);
                                        }
                                    }
                                }
                                Err(_) => all_asked = false,
                            }
                        }
                        let (refused, odd) = signal_name_problems(
                            &own,
                            &given_by,
                            at.key("params"),
                            &instance.label(),
                        );
                        problems.extend(refused);
                        warnings.extend(odd);
                        for name in &own {
                            given_by.push((name.clone(), j, instance.label()));
                        }
                        signals.extend(own);
                        continue;
                    }
                    Err(error) => (at.key("params"), error.to_string()),
                },
                Err(error) => (at.key(error.config_field()), error.to_string()),
            };
            all_asked = false;
            problems.push(Problem {
                path: path_at,
                message,
                hint: None,
                assumes: None,
            });
        }
        if all_asked && !app.interpreters.is_empty() {
            warnings.extend(unmatched_alarm_signals(i, app, &signals));
        }
        // The policy asked once as at the agent's start: every configured
        // metric without datapoints yet, every alarm without enough data,
        // no signal. A policy must hold then; one that fails fails at
        // every evaluation until data comes (a metric parameter whose
        // default names no metric of the application: `rate` without
        // `records_in`), which the agent would only log as it runs.
        if let Some(mut policy) = policy {
            let params: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&params).unwrap_or_default();
            let named = crate::plugin::params::alarm_ids_named(
                policy.metadata().parameters.as_deref().unwrap_or_default(),
                &params,
            );
            warnings.extend(overlapping_alarms(app, &named, policy_at.key("params")));
            warnings.extend(reversed_scale_alarms(
                app,
                policy.metadata().parameters.as_deref().unwrap_or_default(),
                &params,
                &policy_at.key("params"),
            ));
            let evaluation = crate::model::Evaluation {
                now_ms,
                app: application.clone(),
                metrics: series.clone(),
                alarms: app
                    .alarms
                    .iter()
                    .map(|a| crate::model::AlarmStatus {
                        name: a.id.clone(),
                        state: crate::model::AlarmState::InsufficientData,
                        since_ms: now_ms,
                    })
                    .collect(),
                signals: start_signals,
            };
            if let Err(error) = policy.decide_checked(&evaluation) {
                problems.push(Problem {
                    path: policy_at.key("params"),
                    message: format!(
                        "{error} (asked as at the agent's start: the metrics without \
                         datapoints yet, the alarms INSUFFICIENT_DATA, the interpreters' \
                         signals on that)"
                    ),
                    hint: Some(
                        match error.class() {
                            // The plugin's own error: most often a
                            // parameter it could not find among the
                            // application's ids.
                            Some(crate::plugin::FailureClass::GuestError) => {
                                "a policy must hold until data comes; a metric parameter that \
                                 names no metric of the application (`flinkscale plugin describe \
                                 NAME` lists them) is the usual cause"
                            }
                            _ => {
                                "a policy must hold until data comes; this one failed on its own \
                                 (a trap, a panic, a timeout, its memory, or an answer outside the \
                                 contract): `flinkscale plugin check NAME --params JSON` runs it \
                                 alone"
                            }
                        }
                        .to_owned(),
                    ),
                    assumes: None,
                });
            }
        }
    }
    Ok(PluginCheck {
        problems,
        warnings,
        loads,
    })
}

/// What is wrong with the signal names an interpreter (`label`, at
/// `params_at`) gave on sample data: an error for one an earlier
/// interpreter gives too (one of the two values would be lost), a warning
/// for one no alarm can name (not a letter, then letters, digits and `_`:
/// a `signal_prefix` with a space), which a policy may still read.
fn signal_name_problems(
    own: &[String],
    given_by: &[(String, usize, String)],
    params_at: FieldPath,
    label: &str,
) -> (Vec<Problem>, Vec<Problem>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for name in own {
        if let Some((_, index, other)) = given_by.iter().find(|(n, _, _)| n == name) {
            problems.push(Problem {
                path: params_at.clone(),
                message: format!(
                    "plugin {}: gives signal {name:?}, which interpreter[{index}] ({}) gives too: \
                     one value would be lost",
                    printable(label),
                    printable(other)
                ),
                hint: Some("valid: each signal name from one interpreter".to_owned()),
                assumes: None,
            });
        } else if !crate::config::validate::is_signal_name(name) {
            warnings.push(Problem {
                path: params_at.clone(),
                message: format!(
                    "plugin {}: gives signal {:?}, a name no alarm can name",
                    printable(label),
                    printable(name)
                ),
                hint: Some(
                    "valid: a letter, then letters, digits and `_` (check signal_prefix)"
                        .to_owned(),
                ),
                assumes: None,
            });
        }
    }
    (problems, warnings)
}

/// The alarms among `named` (those the policy's parameters name) that
/// watch one metric and can be in ALARM together: one that asks for more
/// (greater than `a`) and one for less (less than `b`, with `b` above
/// `a`, or equal and both inclusive). A `step` policy on them would scale
/// out and in by turns at every value between. A warning at `params_at`.
fn overlapping_alarms(
    app: &crate::config::ApplicationConfig,
    named: &[String],
    params_at: FieldPath,
) -> Vec<Problem> {
    use crate::config::Comparison::{
        GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanOrEqualToThreshold,
        LessThanThreshold,
    };
    let alarms: Vec<&crate::config::AlarmConfig> = app
        .alarms
        .iter()
        .filter(|a| named.contains(&a.id))
        .collect();
    let mut warnings = Vec::new();
    for up in &alarms {
        for down in &alarms {
            let (Some(metric), Some(up_cmp), Some(a), Some(down_cmp), Some(b)) = (
                up.metric.as_deref(),
                up.comparison,
                up.threshold,
                down.comparison,
                down.threshold,
            ) else {
                continue;
            };
            if down.metric.as_deref() != Some(metric) {
                continue;
            }
            let both_inclusive = matches!(
                (up_cmp, down_cmp),
                (GreaterThanOrEqualToThreshold, LessThanOrEqualToThreshold)
            );
            let overlap = matches!(up_cmp, GreaterThanThreshold | GreaterThanOrEqualToThreshold)
                && matches!(down_cmp, LessThanThreshold | LessThanOrEqualToThreshold)
                && (a < b || (a == b && both_inclusive));
            if overlap {
                warnings.push(Problem {
                    path: params_at.clone(),
                    message: format!(
                        "alarms {:?} ({up_cmp:?} {a}) and {:?} ({down_cmp:?} {b}) on metric \
                         {metric:?} can be in ALARM together: the policy would ask for more and \
                         for less by turns",
                        up.id, down.id
                    ),
                    hint: Some("valid: the scale-in threshold below the scale-out one".to_owned()),
                    assumes: None,
                });
            }
        }
    }
    warnings
}

/// The parameters that name, by the convention `step` follows, the alarm
/// that asks for more and the one that asks for less, and which way of
/// comparing each must have.
const SCALE_ALARM_PARAMETERS: [(&str, bool); 2] =
    [("scale_out_alarm", true), ("scale_in_alarm", false)];

/// The alarms a policy's `scale_out_alarm` / `scale_in_alarm` parameter
/// names (given, or its declared default) whose comparison points the
/// other way: a scale-out alarm that fires when its value is low (a
/// `LessThan...` comparison), or a scale-in alarm that fires when it is
/// high (swapped names, a copied alarm whose comparison was not changed).
/// The policy would scale out on a low value and in on a high one. A
/// warning at `params_at`'s parameter.
fn reversed_scale_alarms(
    app: &crate::config::ApplicationConfig,
    declared: &[crate::plugin::Parameter],
    params: &serde_json::Map<String, serde_json::Value>,
    params_at: &FieldPath,
) -> Vec<Problem> {
    use crate::config::Comparison::{GreaterThanOrEqualToThreshold, GreaterThanThreshold};
    let mut warnings = Vec::new();
    for (name, out) in SCALE_ALARM_PARAMETERS {
        let Some(parameter) = declared.iter().find(|p| p.name == name) else {
            continue;
        };
        let given = params.get(name).cloned();
        let value = given.clone().or_else(|| {
            parameter
                .default_json
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
        });
        let Some(id) = value.as_ref().and_then(serde_json::Value::as_str) else {
            continue;
        };
        let Some(alarm) = app.alarms.iter().find(|a| a.id == id) else {
            continue;
        };
        let (Some(comparison), Some(threshold)) = (alarm.comparison, alarm.threshold) else {
            continue;
        };
        let fires_high = matches!(
            comparison,
            GreaterThanThreshold | GreaterThanOrEqualToThreshold
        );
        // On a metric where low means busy (idle time), the way round is
        // the other.
        let low_means_busy = alarm.metric.as_deref().is_some_and(|id| {
            app.metrics
                .iter()
                .find(|m| m.id == id)
                .and_then(|m| m.metric_name.as_deref())
                .is_some_and(|name| name.to_ascii_lowercase().contains("idle"))
        });
        if fires_high == out || low_means_busy {
            continue;
        }
        let watched = alarm.metric.as_deref().unwrap_or("its metric");
        warnings.push(Problem {
            path: if given.is_some() {
                params_at.key(name)
            } else {
                params_at.clone()
            },
            message: format!(
                "{name} is alarm {id:?}, which is in ALARM when {watched} is {} {threshold} \
                 ({comparison:?}): the policy would ask for {}, right only if {} means {}",
                comparison_words(comparison),
                if out {
                    "more when the value is low"
                } else {
                    "less when the value is high"
                },
                if out { "low" } else { "high" },
                if out { "busy" } else { "idle" },
            ),
            hint: Some(format!(
                "valid: for {name}, an alarm with a {} comparison",
                if out { "GreaterThan..." } else { "LessThan..." },
            )),
            assumes: None,
        });
    }
    warnings
}

/// A comparison as words: `above`, `at or below`, ...
fn comparison_words(comparison: crate::config::Comparison) -> &'static str {
    use crate::config::Comparison::{
        GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanOrEqualToThreshold,
        LessThanThreshold,
    };
    match comparison {
        GreaterThanThreshold => "above",
        GreaterThanOrEqualToThreshold => "at or above",
        LessThanThreshold => "below",
        LessThanOrEqualToThreshold => "at or below",
    }
}

/// What [`plugin_problems`] found: errors, and warnings that do not stop
/// the agent.
struct PluginCheck {
    /// Plugins that will not load, refuse their params, or fail on the
    /// application's series.
    problems: Vec<Problem>,
    /// Alarms on a name that is no metric and no signal the interpreters
    /// gave on sample data ([`unmatched_alarm_signals`]).
    warnings: Vec<Problem>,
    /// Every plugin as it loaded, in the file's order (each application's
    /// policy, then its interpreters): `validate --environment`'s lines.
    loads: Vec<PluginLoad>,
}

/// One plugin as [`plugin_problems`] loaded it.
struct PluginLoad {
    /// The application's name.
    application: String,
    /// The plugin's label, when it loaded.
    label: Option<String>,
    /// Why it would not load, refused its params, or names ids the
    /// application does not configure; empty when it loaded and accepts
    /// its params.
    problems: Vec<Problem>,
}

impl PluginLoad {
    /// The plugin of `app`'s table at `at`, configured as `plugin` says, as
    /// it `loaded` (its label and metadata): a load refused is a problem at
    /// `params` when the plugin refused them, at `plugin` when it would not
    /// load; a plugin that loaded must name only the application's alarm
    /// and metric ids ([`crate::plugin::params::reference_problems`]).
    fn of(
        app: &crate::config::ApplicationConfig,
        plugin: &crate::config::PluginConfig,
        at: &FieldPath,
        loaded: Result<(String, crate::plugin::PluginMetadata), &PluginError>,
    ) -> Self {
        let (label, problems) = match loaded {
            Ok((label, metadata)) => {
                let found = crate::plugin::params::reference_problems(
                    &metadata,
                    plugin,
                    app,
                    &at.key("params"),
                );
                (Some(label), found)
            }
            Err(error) => (
                None,
                vec![Problem {
                    path: at.key(error.config_field()),
                    message: error.to_string(),
                    hint: None,
                    assumes: None,
                }],
            ),
        };
        Self {
            application: app.name.clone(),
            label,
            problems,
        }
    }
}

/// `series` with three datapoints each, of `values` (oldest first), the
/// last a period before `now_ms`: data on which an interpreter says which
/// signals it gives (steady, falling and rising, since some are given only
/// when something moves: a backlog's time to drain while it falls).
fn sample_series(series: &[Series], now_ms: i64, values: [f64; 3]) -> Vec<Series> {
    series
        .iter()
        .map(|s| {
            let period_ms = i64::from(s.query.period_secs.max(1)) * 1000;
            Series {
                query: s.query.clone(),
                points: (0_i64..)
                    .zip(values)
                    .map(|(k, value)| crate::metrics::Datapoint {
                        timestamp_ms: now_ms - (4 - k) * period_ms,
                        value,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The alarms of the application at index `i` that watch a name which is
/// no metric id and none of `signals` (what its interpreters gave on
/// sample data): most often a typo, which would leave the alarm
/// INSUFFICIENT_DATA for good. A warning, not an error: an interpreter may
/// give a signal only on some data.
fn unmatched_alarm_signals(
    i: usize,
    app: &crate::config::ApplicationConfig,
    signals: &[String],
) -> Vec<Problem> {
    let mut given: Vec<&str> = signals.iter().map(String::as_str).collect();
    given.sort_unstable();
    given.dedup();
    app.alarms
        .iter()
        .enumerate()
        .filter_map(|(k, alarm)| {
            let name = alarm.metric.as_deref()?;
            let known = app.metrics.iter().any(|m| m.id == name) || given.contains(&name);
            (!known).then(|| Problem {
                path: FieldPath::root()
                    .key("application")
                    .index(i)
                    .key("alarm")
                    .index(k)
                    .key("metric"),
                message: format!(
                    "no metric is called {name:?}, and the interpreters gave no signal of that name on sample data; if it is a typo, the alarm stays INSUFFICIENT_DATA"
                ),
                hint: Some(if given.is_empty() {
                    "the interpreters gave no signal".to_owned()
                } else {
                    format!(
                        "signals given: {}",
                        given
                            .iter()
                            .map(|g| format!("{g:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }),
                assumes: None,
            })
        })
        .collect()
}

/// Prints the errors of a configuration `validate` refused, in file order,
/// with those of the plugins of its applications that have none of
/// their own ([`load::Refused::unaffected`], tried as the agent would at
/// start by [`plugin_problems`]), so that one run shows both; and the
/// warnings of those plugins.
async fn report_refused(refused: load::Refused) -> anyhow::Result<()> {
    let mut errors: Vec<load::ConfigError> = refused.errors.into_iter().collect();
    let mut warnings = Vec::new();
    if let Some(part) = refused.unaffected {
        let check = tokio::task::spawn_blocking(move || {
            crate::plugin::on_plugin_thread(|| {
                plugin_problems(&part, true).map(|check| {
                    (
                        load::locate(&part, &check.problems),
                        load::locate(&part, &check.warnings),
                    )
                })
            })
        })
        .await
        .context("the plugin check stopped")?
        .context("cannot start the plugin host")?;
        errors.extend(check.0);
        warnings = check.1;
    }
    // Stable: errors at one spot keep the order they were found in.
    errors.sort_by_key(|e| e.position);
    for error in errors {
        eprintln!("{}", printable(&error.to_string()));
    }
    for warning in warnings {
        eprintln!("warning: {}", printable(&warning.to_string()));
    }
    Ok(())
}

/// `validate --environment`'s plugin lines, from what [`plugin_problems`]
/// loaded: one line for each plugin that loads and accepts its params,
/// the located problems of each other (`file:line:column: application
/// "a".policy.params: ...`, as plain `validate` says them). Returns how
/// many plugins failed.
fn print_plugin_loads(loaded: &LoadedConfig, loads: &[PluginLoad], config: &Path) -> usize {
    let mut failures = 0;
    for load in loads {
        match (&load.label, load.problems.is_empty()) {
            (Some(label), true) => println!(
                "{}: application {:?}: plugin {} loads and accepts its params",
                config.display(),
                load.application,
                printable(label)
            ),
            _ => {
                failures += 1;
                for error in load::locate(loaded, &load.problems) {
                    println!("{}", printable(&error.to_string()));
                }
            }
        }
    }
    failures
}

/// `flinkscale validate`.
pub async fn validate(config: &Path, environment: bool) -> anyhow::Result<ExitCode> {
    let loaded = match load::load_checkable(config) {
        Ok(loaded) => loaded,
        Err(refused) => {
            report_refused(refused).await?;
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let tried = loaded.clone();
    let check = tokio::task::spawn_blocking(move || {
        crate::plugin::on_plugin_thread(|| plugin_problems(&tried, !environment))
    })
    .await
    .context("the plugin check stopped")?
    .context("cannot start the plugin host")?;
    if !check.problems.is_empty() {
        for error in load::locate(&loaded, &check.problems) {
            eprintln!("{}", printable(&error.to_string()));
        }
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let mut warnings = check.warnings.clone();
    let indexed = || {
        loaded
            .applications()
            .enumerate()
            .map(|(k, (app, _))| (loaded.file_index(k), app))
    };
    warnings.extend(crate::config::validate::period_warnings(indexed()));
    warnings.extend(crate::config::validate::history_warnings(indexed()));
    for warning in load::locate(&loaded, &warnings) {
        eprintln!("warning: {}", printable(&warning.to_string()));
    }
    if environment {
        // A plugin that will not load or refuses its params is a
        // configuration error (exit 78); missing credentials, an
        // application AWS does not show the agent, or MSF's own autoscaling
        // left on are the environment's (exit 1).
        let mut failures = 0;
        let agent = &loaded.config.agent;
        // The plugins as loaded above, off the async runtime.
        let plugin_failures = print_plugin_loads(&loaded, &check.loads, config);
        for finding in super::conventions::flink_findings(&loaded.config).await {
            failures += usize::from(finding.problem);
            println!(
                "{}: application {:?}: {}",
                config.display(),
                finding.application,
                printable(&finding.message)
            );
        }
        // A configuration of Flink jobs with Flink metrics only calls no
        // AWS API, so it needs no credentials either.
        let needs_aws = super::iam::policy(&loaded.config, "*", "*")["Statement"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        // Loaded only when needed: the SDK's chain looks for a region and
        // credentials (the instance metadata service included), which a
        // Flink-only configuration has no use for.
        if needs_aws && !super::aws_environment_ok(agent.region.as_deref()) {
            return Ok(ExitCode::from(EX_CONFIG));
        }
        let sdk = if needs_aws {
            Some(crate::aws::sdk_config(agent.region.as_deref()).await)
        } else {
            None
        };
        let credentials = match &sdk {
            None => {
                println!("AWS credentials: not needed (no application calls AWS)");
                false
            }
            Some(sdk) => match sdk.credentials_provider() {
                Some(provider) => match provider.provide_credentials().await {
                    Ok(_) => {
                        println!("AWS credentials: found");
                        true
                    }
                    Err(error) => {
                        println!("{}", credentials_not_found(&error.to_string()));
                        false
                    }
                },
                None => {
                    println!(
                        "{}",
                        credentials_not_found("no credentials provider configured")
                    );
                    false
                }
            },
        };
        // No call can be sent without a region: then none is tried.
        let region = sdk.as_ref().is_some_and(|sdk| sdk.region().is_some());
        if sdk.is_some() && !region {
            println!(
                "AWS region: not found: {}",
                crate::aws::region_sources(&format!("[agent] in {}", config.display()))
            );
        }
        if let Some(sdk) = sdk.as_ref().filter(|_| credentials && region) {
            let target = crate::target::msf::MsfTarget::new(sdk);
            let region = sdk
                .region()
                .map_or_else(|| "no region".to_owned(), |r| r.to_string());
            let source = crate::metrics::cloudwatch::CloudWatchSource::new(sdk);
            let metrics =
                super::conventions::metric_findings(&loaded.config, &source, &region, system_ms())
                    .await;
            for finding in super::conventions::describe_findings(&loaded.config, &target, &region)
                .await
                .into_iter()
                .chain(metrics)
            {
                failures += usize::from(finding.problem);
                println!(
                    "{}: application {:?}: {}",
                    config.display(),
                    finding.application,
                    printable(&finding.message)
                );
            }
        } else if needs_aws {
            failures += 1;
        }
        if plugin_failures > 0 {
            return Ok(ExitCode::from(EX_CONFIG));
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

/// `bench --jobs`'s default: the cores this process may use (its CPU
/// set or quota, as the standard library reads them), 2 when unknown.
fn default_jobs() -> u16 {
    std::thread::available_parallelism().map_or(2, |n| u16::try_from(n.get()).unwrap_or(u16::MAX))
}

/// The arguments of `flinkscale simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The scenario: a .toml or .csv file, or the name of a shipped
    /// scenario (diurnal, flash-crowd, ramp, sawtooth, spike, step,
    /// weekly, and the demo's, demo), which the binary embeds.
    #[arg(long)]
    pub scenario: PathBuf,
    /// A policy preset (seed, msf-builtin, flink-operator, hold,
    /// target-tracking, rate, predictive), or a plugin name or .wasm
    /// path with the standard metrics.
    #[arg(long, default_value = "rate")]
    pub policy: String,
    /// Parameters overriding the preset's, as a JSON object.
    #[arg(long)]
    pub params: Option<String>,
    /// An agent configuration instead of a preset (its applications
    /// must be in the scenario).
    #[arg(long, conflicts_with_all = ["policy", "params"])]
    pub config: Option<PathBuf>,
    /// A folder of plugin files; one named like a built-in overrides it
    /// (default: the built-ins alone).
    #[arg(long, value_parser = parse_existing_folder)]
    pub plugin_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML page with plots of the run to DIR/report.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also print every evaluation (time, KPU, decision and its reason),
    /// not only the ones that led to a rescale.
    #[arg(long)]
    pub decisions: bool,
    /// Skip the polls that cannot change a decision (`on`), or poll at
    /// every evaluation interval (`off`), for every application.
    /// Default: on for a preset, the configuration's `lazy_polling`
    /// with --config.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub lazy_polling: Option<bool>,
    /// Keep compiled plugins in DIR between runs, or not at all
    /// (`off`). Default: $XDG_CACHE_HOME/flinkscale/plugins, else
    /// ~/.cache/flinkscale/plugins.
    #[arg(long, value_name = "DIR|off", value_parser = parse_plugin_cache)]
    pub plugin_cache: Option<PluginCache>,
}

/// Where `simulate`, `bench`, `plugin check` and `plugin describe` keep
/// compiled plugins between runs (`--plugin-cache DIR|off`), so that only
/// the first run on a machine pays the compile (about 0.2 s of a 7-day
/// `simulate`, 15 s for a Python plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginCache {
    /// Compile in every process; keep nothing on disk.
    Off,
    /// Keep them in this folder (created 0700 if missing).
    Dir(std::path::PathBuf),
}

/// Whether the AWS SDK's environment can serve `loaded`, if any of its
/// applications calls AWS ([`super::aws_environment_ok`]): a Flink-only
/// configuration never reads it.
fn aws_environment_ok(loaded: &LoadedConfig) -> bool {
    let calls_aws = loaded
        .config
        .applications
        .iter()
        .any(|a| a.mode != crate::config::Mode::Paused && a.calls_aws());
    !calls_aws || super::aws_environment_ok(loaded.config.agent.region.as_deref())
}

/// A warning for each CloudWatch metric of `loaded` that no application of
/// the simulated `world` publishes: it had no datapoint in the whole run
/// (as CloudWatch answers a metric nobody publishes), so its alarms stayed
/// INSUFFICIENT_DATA and the policy decided without it, with nothing else
/// to say so. The warning names what the model does publish.
fn unpublished_metrics(loaded: &LoadedConfig, world: &crate::sim::World) -> Vec<String> {
    let published = world.list_metrics();
    let mut warnings = Vec::new();
    for app in &loaded.config.applications {
        for metric in &app.metrics {
            let (Some(namespace), Some(metric_name)) = (&metric.namespace, &metric.metric_name)
            else {
                continue;
            };
            if metric.source != crate::config::MetricSourceKind::Cloudwatch
                || world
                    .publisher(namespace, metric_name, &metric.dimensions)
                    .is_some()
            {
                continue;
            }
            let dimensions = super::conventions::dimension_list;
            let mut names: Vec<String> = published
                .iter()
                .filter(|p| p.namespace == *namespace)
                .map(|p| format!("{} ({})", p.metric_name, dimensions(&p.dimensions)))
                .collect();
            names.dedup();
            let offer = if names.is_empty() {
                let mut spaces: Vec<&str> =
                    published.iter().map(|p| p.namespace.as_str()).collect();
                spaces.dedup();
                format!(
                    "it publishes nothing in {namespace}; its namespaces: {}",
                    spaces.join(", ")
                )
            } else {
                format!("in {namespace} it publishes {}", names.join("; "))
            };
            warnings.push(format!(
                "warning: application {:?} metric {:?} ({namespace} {metric_name}, {}) is published \
                 by no application of the scenario: it had no datapoint in the whole run, its \
                 alarms stayed INSUFFICIENT_DATA and the policy decided without it (the metric \
                 name and dimensions must match exactly; {offer})",
                app.name,
                metric.id,
                dimensions(&metric.dimensions),
            ));
        }
    }
    warnings
}

/// Reads `--plugin-dir`: a folder that exists. A mistyped one would
/// otherwise leave every plugin to the built-ins without a word.
pub fn parse_existing_folder(text: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(text);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(format!(
            "{text} is a file (valid: a folder of plugin files)"
        )),
        Err(error) => Err(format!("cannot read folder {text}: {error}")),
    }
}

/// Reads `--listen`: an IP address and a port, with an example of what
/// is valid when it is not one (a host name is not resolved).
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        "not an IP address and port (valid: e.g. 127.0.0.1:4566, 0.0.0.0:4566, [::1]:4566, or \
         port 0 for any free port)"
            .to_owned()
    })
}

/// Reads `--speed`: model seconds per wall second, above 0 and at most
/// the emulator's [`crate::emulator::MAX_SPEED`].
pub fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number (valid: above 0, at most 1000000)"))?;
    crate::emulator::check_speed(speed)?;
    Ok(speed)
}

/// Reads `--page-size`: datapoints per GetMetricData page, at least 1.
pub fn parse_page_size(text: &str) -> Result<usize, String> {
    parse_count(text, "a page size")
}

/// Reads a count of at least 1; `what` names it in the error ("a page
/// size": `"0" is not a page size (valid: a whole number, at least 1)`).
pub fn parse_count(text: &str, what: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(format!(
            "{text:?} is not {what} (valid: a whole number, at least 1)"
        )),
    }
}

/// Reads one of `--policies`: not empty (`--policies ''`, `a,,b`).
pub fn parse_policy_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "an empty policy name (valid: a preset, a built-in plugin, a plugin in \
                    --plugin-dir or a .wasm path, comma-separated)"
                .to_owned(),
        );
    }
    Ok(text.to_owned())
}

/// Reads `--plugin-cache`: `off` or a folder.
pub fn parse_plugin_cache(text: &str) -> Result<PluginCache, String> {
    match text {
        "" => Err("expected a folder or `off`".to_owned()),
        "off" => Ok(PluginCache::Off),
        // A folder that is not there yet is made; something else in its
        // place would only warn at every load and cache nothing.
        dir if std::fs::metadata(dir).is_ok_and(|meta| !meta.is_dir()) => Err(format!(
            "{dir} is not a folder (valid: a folder for the compiled plugins, made if missing, \
             or `off`)"
        )),
        dir => Ok(PluginCache::Dir(dir.into())),
    }
}

/// The user's cache folder for compiled plugins, the XDG way:
/// `$XDG_CACHE_HOME/flinkscale/plugins`, else
/// `$HOME/.cache/flinkscale/plugins`; none when neither names an absolute
/// folder.
pub fn default_plugin_cache() -> Option<std::path::PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(std::path::PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("flinkscale").join("plugins"))
}

/// Points this process's shared plugin cache at `choice`'s folder (the
/// default one when not given) before any plugin is loaded.
pub(crate) fn use_plugin_cache(choice: Option<&PluginCache>) {
    let dir = match choice {
        Some(PluginCache::Off) => None,
        Some(PluginCache::Dir(dir)) => Some(dir.clone()),
        None => default_plugin_cache(),
    };
    if let Some(dir) = dir {
        crate::plugin::share_cache_dir(dir);
    }
}

/// Reads `on` or `off` (a command-line switch's value).
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} is neither `on` nor `off`")),
    }
}

/// `flinkscale simulate` (synchronous: the simulation runs its own paused
/// runtime on a plain thread).
/// What of a configuration the simulator cannot play, one line each: it
/// models MSF applications and CloudWatch metrics, not CloudWatch's own
/// alarms nor a Flink cluster, and such an application would only hold
/// (every evaluation failing) for the whole run.
fn unsimulated(loaded: &LoadedConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for app in &loaded.config.applications {
        if app.target == crate::config::TargetKind::Flink {
            problems.push(format!(
                "application {:?} has target = \"flink\": the simulator plays MSF applications \
                 only (valid: target = \"msf\", or the real-cluster test of the README's \
                 \"Self-managed Flink\")",
                app.name
            ));
        }
        for alarm in &app.alarms {
            if alarm.source == crate::config::AlarmSource::Cloudwatch {
                problems.push(format!(
                    "application {:?}: alarm {:?} has source = \"cloudwatch\": the simulator \
                     has no CloudWatch alarms (import it as a local alarm with `flinkscale \
                     import alarms` to simulate it)",
                    app.name, alarm.id
                ));
            }
        }
    }
    problems
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || simulate_blocking(args)).await?
}

fn simulate_blocking(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::{presets, report};
    use_plugin_cache(args.plugin_cache.as_ref());
    // What the user gave is wrong (the scenario, the configuration, the
    // policy or its params): said, and exit 78, as `validate` does.
    if let Some(dir) = args.report.as_ref().filter(|d| d.exists() && !d.is_dir()) {
        // Said before the run, not after it.
        eprintln!(
            "error: --report {}: a file, not a folder (valid: a folder, made if missing)",
            dir.display()
        );
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let scenario = match crate::sim::bench::load_scenario(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let (mut loaded, name) = match &args.config {
        Some(path) => match load::load(path) {
            Ok(l) => {
                // What `validate` refuses, simulate refuses too: a plugin
                // that will not load or refuses its params, a policy or
                // interpreter that fails on the application's series.
                let tried = crate::plugin::on_plugin_thread(|| plugin_problems(&l, true));
                if let Ok(check) = &tried
                    && !check.problems.is_empty()
                {
                    for problem in load::locate(&l, &check.problems) {
                        eprintln!("{}", printable(&problem.to_string()));
                    }
                    return Ok(ExitCode::from(EX_CONFIG));
                }
                let unplayable = unsimulated(&l);
                if !unplayable.is_empty() {
                    for problem in &unplayable {
                        eprintln!("error: {}: {problem}", path.display());
                    }
                    return Ok(ExitCode::from(EX_CONFIG));
                }
                for app in &l.config.applications {
                    if app.mode != crate::config::Mode::Active {
                        eprintln!(
                            "warning: {}: application {:?} is in mode {:?}: simulated as configured, it \
                             {} (set mode = \"active\" in a copy to see it scale)",
                            path.display(),
                            app.name,
                            app.mode.as_str(),
                            if app.mode == crate::config::Mode::Paused {
                                "is never evaluated"
                            } else {
                                "decides but never rescales"
                            }
                        );
                    }
                }
                (l, path.display().to_string())
            }
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::from(EX_CONFIG));
            }
        },
        None => {
            let params = match &args.params {
                None => serde_json::Map::new(),
                Some(text) => match super::json::parse(text) {
                    // TOML has no null: it would reach the plugin as "".
                    Ok(serde_json::Value::Object(m))
                        if m.values().any(serde_json::Value::is_null) =>
                    {
                        let nulls: Vec<&str> = m
                            .iter()
                            .filter(|(_, v)| v.is_null())
                            .map(|(k, _)| k.as_str())
                            .collect();
                        eprintln!(
                            "error: --params: {} is null (valid: a value, or leave the key out \
                             for its default)",
                            nulls.join(", ")
                        );
                        return Ok(ExitCode::from(EX_CONFIG));
                    }
                    Ok(serde_json::Value::Object(m)) => m,
                    // A usage error, as every --params simulate cannot use.
                    Ok(_) => {
                        eprintln!(
                            "error: --params must be a JSON object, e.g. '{{\"catch_up_secs\": 120}}'"
                        );
                        return Ok(ExitCode::from(EX_CONFIG));
                    }
                    Err(error) => {
                        eprintln!(
                            "error: --params is not valid JSON: {error} (valid: a JSON object, \
                             e.g. '{{\"catch_up_secs\": 120}}')"
                        );
                        return Ok(ExitCode::from(EX_CONFIG));
                    }
                },
            };
            let choice = presets::PolicyChoice {
                name: args.policy.clone(),
                params,
            };
            match presets::config(&scenario, &choice, args.plugin_dir.as_deref()) {
                Ok(l) => {
                    // A name that is neither a built-in nor a file: say so
                    // once, with what would be valid, before the run.
                    let missing = l.plugins.iter().find_map(|p| {
                        std::iter::once(&p.policy)
                            .chain(&p.interpreters)
                            .filter_map(|source| source.file())
                            .find(|file| !file.is_file())
                    });
                    if let Some(file) = missing {
                        eprintln!(
                            "error: policy {:?}: not a preset ({}), and plugin {} not found \
                             and not a built-in ({}); give --plugin-dir with the folder of its \
                             .wasm file, or a path to the .wasm as the policy",
                            args.policy,
                            presets::PRESETS.join(", "),
                            file.display(),
                            crate::plugin::builtin::names()
                        );
                        return Ok(ExitCode::from(EX_CONFIG));
                    }
                    (l, args.policy.clone())
                }
                Err(errors) => {
                    // The preset's TOML is made here, not the user's: its
                    // errors are said in the words the user gave them in
                    // (`--params`, `--policy`), not at a file that does
                    // not exist.
                    for error in errors {
                        eprintln!(
                            "error: {}",
                            presets::in_flags(&error, &args.policy, args.params.is_some())
                        );
                    }
                    return Ok(ExitCode::from(EX_CONFIG));
                }
            }
        }
    };
    if let Some(on) = args.lazy_polling {
        crate::sim::driver::set_lazy_polling(&mut loaded, on);
    }
    let started = std::time::Instant::now();
    let outcome = match ProgressLine::on_terminal(&scenario.name) {
        Some(mut bar) => {
            let outcome = crate::sim::driver::simulate_with_progress(
                &scenario,
                &loaded,
                Some(&mut |done, total| bar.draw(done, total)),
            );
            bar.clear();
            outcome
        }
        None => crate::sim::driver::simulate(&scenario, &loaded),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // A plugin that will not load or refuses its params (`--params`)
        // is the user's input: said as `validate` says it, in the flags'
        // words for a preset.
        Err(crate::sim::driver::SimulateError::Agent(error)) if error.is_plugin_configuration() => {
            let found = crate::plugin::on_plugin_thread(|| plugin_problems(&loaded, true));
            match found {
                Ok(check) if !check.problems.is_empty() => {
                    for problem in load::locate(&loaded, &check.problems) {
                        let said = match args.config {
                            Some(_) => problem.to_string(),
                            None => format!(
                                "error: {}",
                                presets::in_flags(&problem, &args.policy, args.params.is_some())
                            ),
                        };
                        eprintln!("{}", printable(&said));
                    }
                }
                _ => eprintln!("error: {}", printable(&error.to_string())),
            }
            return Ok(ExitCode::from(EX_CONFIG));
        }
        // A configuration that names an application the scenario does
        // not play is the user's input too.
        Err(error @ crate::sim::driver::SimulateError::UnknownApplication(..)) => {
            eprintln!("error: {}", printable(&error.to_string()));
            return Ok(ExitCode::from(EX_CONFIG));
        }
        Err(error) => return Err(error.into()),
    };
    for warning in unpublished_metrics(&loaded, &outcome.world) {
        eprintln!("{}", printable(&warning));
    }
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let first = &loaded.config.applications[0];
    let params = load::params_value(&first.policy.params);
    let report = report::SimReport {
        scenario: scenario.name.clone(),
        policy: report::PolicyInfo::new(&name, &loaded.plugins[0].policy, params),
        applications: report::ApplicationPolicy::of_config(&loaded),
        sim_speed: outcome.scores.duration_secs as f64 / wall,
        api: report::ApiCost::of_run(&loaded, &outcome),
        scores: outcome.scores.clone(),
        failures: report::PluginFailures::of_events(&outcome.events),
    };
    if let Some(warning) = report.failures.warning(&scenario.name, &name) {
        eprintln!("{warning}");
    }
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
    Ok(report.failures.exit_code())
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
    /// A folder of scenarios (every *.toml in it), a scenario file
    /// (.toml, or a trace .csv) or a shipped scenario's name (`step`);
    /// repeatable. Default: the shipped scenarios (the checkout's
    /// tests/scenarios, embedded in the binary).
    #[arg(long = "scenarios", value_name = "DIR|FILE|NAME")]
    pub scenarios: Vec<std::path::PathBuf>,
    /// The policies, comma-separated (presets, plugin names or .wasm paths).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = crate::sim::bench::DEFAULT_POLICIES_ARG,
        value_parser = parse_policy_name
    )]
    pub policies: Vec<String>,
    /// Where to write bench.json, bench.md and the HTML pages.
    #[arg(long, default_value = "target/bench")]
    pub out: std::path::PathBuf,
    /// Runs at a time (each on its own thread), 1 or more. Default: the
    /// cores this process may use.
    #[arg(long, default_value_t = default_jobs(), value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// A folder of plugin files; one named like a built-in overrides it
    /// (default: the built-ins alone).
    #[arg(long, value_parser = parse_existing_folder)]
    pub plugin_dir: Option<std::path::PathBuf>,
    /// Do not write an HTML page per run under OUT/reports/.
    #[arg(long)]
    pub no_reports: bool,
    /// Skip the polls that cannot change a decision (`on`, the default),
    /// or poll at every evaluation interval (`off`), to compare the
    /// agent's CloudWatch bill.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub lazy_polling: bool,
    /// Keep compiled plugins in DIR between runs, or not at all (`off`).
    /// Default: $XDG_CACHE_HOME/flinkscale/plugins, else
    /// ~/.cache/flinkscale/plugins.
    #[arg(long, value_name = "DIR|off", value_parser = parse_plugin_cache)]
    pub plugin_cache: Option<PluginCache>,
}

/// `flinkscale bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || bench_blocking(args)).await?
}

fn bench_blocking(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::bench;
    // A refused command line (exit 2), before anything is read or run.
    if let Some(twice) = bench::policy_given_twice(&args.policies)
        .or_else(|| bench::scenario_given_twice(&args.scenarios))
    {
        eprintln!("error: {twice}");
        return Ok(ExitCode::from(2));
    }
    use_plugin_cache(args.plugin_cache.as_ref());
    // Kept until the benchmark is done: it removes its folder when dropped.
    let shipped;
    let sources = if args.scenarios.is_empty() {
        shipped = bench::ShippedScenarios::write()
            .context("cannot write the shipped scenarios to a temporary folder")?;
        vec![shipped.dir().to_path_buf()]
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
        plugin_dir: args.plugin_dir,
        jobs: usize::from(args.jobs),
        report_dir: (!args.no_reports).then(|| args.out.join("reports")),
        lazy_polling: args.lazy_polling,
    };
    let result = bench::run(&options)?;
    let (json, md) = bench::write(&result, &args.out)?;
    print!("{}", bench::markdown(&result));
    println!("\n{}", bench::speed_line(&result));
    eprintln!(
        "wrote {}, {} and the tables as flinkscale's README shows them, {}",
        md.display(),
        json.display(),
        args.out.join("readme.md").display()
    );
    if let Some(dir) = &options.report_dir {
        eprintln!("HTML pages: {}/<scenario>/<policy>.html", dir.display());
    }
    let mut code = ExitCode::SUCCESS;
    for row in &result.rows {
        if let Some(warning) = row.failures.warning(&row.scenario, &row.policy.name) {
            eprintln!("{warning}");
            code = row.failures.exit_code();
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::controller::{Assessment, EvaluateError};
    use crate::metrics::MetricsError;
    use crate::model::{Application, Decision, Evaluation, Signal};
    use crate::target::{AppState, AppStatus};

    fn report(reason: &str, signal: &str) -> OnceReport {
        let state = AppState {
            status: AppStatus::Running,
            parallelism: 2,
            parallelism_per_kpu: 1,
            version_id: 3,
            autoscaling_enabled: false,
            last_update_ms: None,
            identity: None,
            asked_kpu: None,
            rolled_back_from: None,
        };
        let app = Application {
            name: "orders".into(),
            status: AppStatus::Running,
            kpu: 2,
            parallelism: 2,
            parallelism_per_kpu: 1,
            min_kpu: 1,
            max_kpu: 8,
            version_id: 3,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        };
        let assessment = Assessment {
            state,
            evaluation: Evaluation {
                now_ms: 1_700_000_000_000,
                app,
                metrics: Vec::new(),
                alarms: Vec::new(),
                signals: vec![Signal {
                    name: signal.into(),
                    value: 1.5,
                }],
            },
            decision: Decision {
                action: Action::ScaleTo(4),
                reason: reason.into(),
                next_evaluation_secs: None,
            },
        };
        OnceReport {
            application: "orders".into(),
            words: Words::Msf,
            dry_run: true,
            result: Ok((assessment, ActOutcome::Held)),
        }
    }

    fn assert_inert(text: &str) {
        assert!(
            !text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{202E}'),
            "{text:?}"
        );
    }

    #[test]
    fn once_prints_plugin_text_without_terminal_controls() {
        let text = once_text(&report(
            "backlog\x1b[2J\rall good \u{202E}evil",
            "lag\x1b]0;title\x07",
        ));
        assert_inert(&text);
        assert!(
            text.contains(r"decision: scale to 4 KPU: backlog\u{1b}[2J\rall good \u{202e}evil"),
            "{text}"
        );
        assert!(
            text.contains(r"signal lag\u{1b}]0;title\u{7} = 1.5"),
            "{text}"
        );
        // Every line the report prints is its own line.
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    /// `once` tells of a Flink job in its words: parallelism and the REST
    /// call, never KPU or UpdateApplication; MSF's report is unchanged.
    #[test]
    fn once_speaks_a_flink_jobs_words() {
        let flink = |outcome: ActOutcome, dry_run: bool| {
            let mut report = report("busy", "lag");
            report.words = Words::Flink;
            report.dry_run = dry_run;
            if let Ok((_, held)) = &mut report.result {
                *held = outcome;
            }
            once_text(&report)
        };
        let text = flink(ActOutcome::Held, true);
        assert_eq!(
            text,
            "application \"orders\": RUNNING, parallelism 2, version 3\n\
             \x20 metrics:\n\
             \x20 signal lag = 1.5\n\
             \x20 decision: scale to parallelism 4: busy\n\
             \x20 action: dry run: PUT /jobs/{id}/resource-requirements not sent\n"
        );
        let started = ActOutcome::Started {
            to_kpu: 4,
            at_ms: 0,
        };
        assert!(
            flink(started.clone(), false).ends_with(
                "  action: PUT /jobs/{id}/resource-requirements sent: parallelism 2 -> 4\n"
            ),
            "{}",
            flink(started, false)
        );
        let refused = ActOutcome::NotSent {
            retry_after: std::time::Duration::from_secs(60),
            reason: Some("limit_exceeded: too few slots".into()),
        };
        assert!(
            flink(refused, false).ends_with(
                "  action: PUT /jobs/{id}/resource-requirements not sent: limit_exceeded: too few slots\n"
            )
        );
        let mut report = report("busy", "lag");
        report.words = Words::Flink;
        assert_eq!(once_json(&report)["target"], "flink");

        let msf = once_text(&report_with(Words::Msf));
        assert!(
            msf.starts_with(
                "application \"orders\": RUNNING, 2 KPU (parallelism 2, 1 per KPU), version 3\n"
            ),
            "{msf}"
        );
        assert!(msf.contains("  decision: scale to 4 KPU: busy\n"), "{msf}");
        assert!(
            msf.ends_with("  action: dry run: UpdateApplication not sent\n"),
            "{msf}"
        );
    }

    fn report_with(words: Words) -> OnceReport {
        let mut report = report("busy", "lag");
        report.words = words;
        report
    }

    #[test]
    fn missing_credentials_say_where_the_chain_looked() {
        let text = credentials_not_found("the credential provider was not enabled");
        assert!(
            text.starts_with(
                "AWS credentials: not found: the credential provider was not enabled; "
            ),
            "{text}"
        );
        for place in [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "ECS task role",
            "EC2 instance role",
        ] {
            assert!(text.contains(place), "{place}: {text}");
        }
        assert!(!credentials_not_found("a\nb").contains('\n'));
    }

    #[test]
    fn once_warns_when_msf_autoscaling_is_on() {
        let quiet = once_text(&report("r", "s"));
        assert!(!quiet.contains("warning"), "{quiet}");
        let mut on = report("r", "s");
        if let Ok((assessment, _)) = &mut on.result {
            assessment.state.autoscaling_enabled = true;
        }
        let text = once_text(&on);
        let second = text.lines().nth(1).unwrap_or_default();
        assert!(
            second.starts_with("  warning: MSF's own autoscaling is on (AutoScalingEnabled)")
                && second.contains("AutoScalingEnabledUpdate = false"),
            "{text}"
        );
        assert_eq!(text.lines().count(), quiet.lines().count() + 1, "{text}");
    }

    #[test]
    fn once_prints_aws_errors_without_terminal_controls() {
        let report = OnceReport {
            application: "orders".into(),
            words: Words::Msf,
            dry_run: false,
            result: Err(EvaluateError::Metrics(MetricsError::Source(
                "GetMetricData failed: \x1b[31mred\x1b[0m\nforged line".into(),
            ))),
        };
        let text = once_text(&report);
        assert_inert(&text);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"\u{1b}[31mred"), "{text}");
    }

    /// `validate --environment` loads each plugin with its params off the
    /// async runtime: on a current-thread runtime, a task spawned while
    /// the plugin loads runs before the load ends.
    #[test]
    fn validate_environment_loads_plugins_off_the_async_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let probe = crate::plugin::load_probe::RuntimeFree::install(
            "load-probe-validate",
            runtime.handle().clone(),
        );
        let dir = tempfile::tempdir().expect("a scratch folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[[application]]\nname = \"load-probe-validate\"\ntarget = \"flink\"\n\
                 rest_url = \"http://127.0.0.1:{port}\"\n\n[application.policy]\nplugin = \"hold\"\n"
            ),
        )
        .expect("written");
        runtime
            .block_on(validate(&config, true))
            .expect("validate runs");
        // Loaded once, off the runtime, for its first decision and its
        // finding (`plugin_problems`).
        assert_eq!(probe.counts(), (1, 0), "(free, held)");
    }

    #[test]
    fn plain_text_is_printed_as_it_is() {
        let text = "p99 lag over 30 s: scale to 4 (é, ✓)";
        assert_eq!(printable(text), text);
    }

    /// `run` and `once` exit 78 (`EX_CONFIG`, which systemd does not
    /// restart on) for what starting again would meet the same way: a
    /// journal written by a newer agent, a plugin that is not a component,
    /// or one that refuses its params, the last two located as `validate`
    /// locates them; a held lock is an error (exit 1).
    #[tokio::test]
    async fn configuration_failures_at_start_exit_with_the_configuration_status() {
        let dir = tempfile::tempdir().expect("a scratch folder");
        std::fs::write(dir.path().join("broken.wasm"), b"\0asm truncated").expect("written");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"broken.wasm\"\n\n\
             [[application]]\nname = \"payments\"\n[application.policy]\nplugin = \"rate\"\n\
             params = { target_utilisation = 0 }\n",
        )
        .expect("written");
        let loaded = load::load(&config).expect("a configuration that parses");
        let newer = AgentError::State(StateError::Newer {
            path: PathBuf::from("/var/lib/flinkscale/orders.json"),
            format: 2,
        });
        assert_eq!(
            startup_failure(newer, &loaded)
                .await
                .expect("an exit status"),
            ExitCode::from(78)
        );
        let check = plugin_problems(&loaded, true).expect("the plugin host starts");
        let located: Vec<String> = load::locate(&loaded, &check.problems)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(located.len(), 2, "{located:?}");
        assert!(
            located[0].contains("agent.toml:4:10: application \"orders\".policy.plugin: ")
                && located[0].contains("broken.wasm"),
            "{located:?}"
        );
        assert!(
            located[1].contains("agent.toml:10:10: application \"payments\".policy.params: ")
                && located[1].contains("target_utilisation"),
            "{located:?}"
        );
        let not_a_component = PluginHost::new(loaded.config.agent.sandbox_limits())
            .expect("a host")
            .load_policy(dir.path().join("broken.wasm"), "{}", "orders")
            .err()
            .expect("refused");
        let plugin = AgentError::Plugin {
            application: "orders".into(),
            interpreter: None,
            error: not_a_component,
        };
        assert_eq!(
            startup_failure(plugin, &loaded)
                .await
                .expect("an exit status"),
            ExitCode::from(78)
        );
        let other = AgentError::State(StateError::Locked {
            path: PathBuf::from("/var/lib/flinkscale/orders.lock"),
            holder: None,
        });
        let error = startup_failure(other, &loaded)
            .await
            .expect_err("an error, exit status 1");
        assert!(
            format!("{error:#}").contains("cannot start the agent"),
            "{error:#}"
        );
    }

    #[test]
    fn once_json_escapes_what_serde_json_leaves_raw() {
        let reason = "scale\u{9b}2J\u{7f} \u{202E}olleh \x1b[2J\r";
        let value = once_json(&report(reason, "lag"));
        let line = json_line(&value);
        assert_inert(&line);
        assert!(
            !line.contains('\u{9b}') && !line.contains('\u{7f}') && !line.contains('\n'),
            "{line:?}"
        );
        assert!(line.contains(r"\u009b2J\u007f \u202eolleh"), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(back, value);
        assert_eq!(back["decision"]["reason"], reason);
    }
}
