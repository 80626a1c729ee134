//! `flinkscale demo`: the whole agent against the built-in emulator, with
//! nothing to set up.
//!
//! The emulator (MSF and CloudWatch over their real wire protocols, played
//! by the workload model) starts in-process on a free loopback port; the
//! real agent is pointed at it through the real AWS SDK clients over HTTP,
//! with the bundled configuration (`config/demo.toml`) and the built-in
//! `step` policy. Everything it needs is embedded, so it runs from any
//! folder. While it runs, each evaluation is printed with the load,
//! capacity and lag the emulator sees; at the end, a summary of the run's
//! scores and of the AWS calls the agent made.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use aws_credential_types::Credentials;
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::config::load;
use crate::emulator::{self, EmulatorOptions, EmulatorState};
use crate::model::Action;
use crate::sim::Scenario;
use crate::telemetry::{Event, Events};

/// The bundled agent configuration.
const CONFIG: &str = include_str!("../../config/demo.toml");
/// The application the bundled configuration scales (its `name` and its
/// metric's `Application` dimension).
const BUNDLED_APPLICATION: &str = "demo-app";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Model seconds per wall second (15: the bundled 30-minute scenario
    /// plays in two minutes).
    pub speed: f64,
    /// Another scenario file instead of the bundled one.
    pub scenario: Option<PathBuf>,
    /// Another agent configuration instead of the bundled one; its
    /// applications must exist in the scenario.
    pub config: Option<PathBuf>,
    /// Where the plugins are, overriding the configuration's `plugin_dir`.
    pub plugin_dir: Option<PathBuf>,
}

/// How the demo went, for the summary and for tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoSummary {
    /// The emulator's scores of the run.
    pub scores: crate::sim::Scores,
    /// AWS calls the agent made, by operation.
    pub calls: BTreeMap<String, usize>,
    /// Evaluations the agent made.
    pub evaluations: usize,
    /// Wall-clock length of the run.
    pub wall_secs: f64,
}

/// Runs the demo, printing as it goes; returns the summary.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    // Listening first, and once: a ctrl-c or SIGTERM during the start, or
    // between two lines, ends the demo with its summary.
    let mut stops = crate::shutdown::Signals::listen();
    let scenario = match &options.scenario {
        // A user's trace can be megabytes of CSV: parsed off the async
        // runtime, as `emulate` does.
        Some(path) => {
            let owned = path.clone();
            tokio::task::spawn_blocking(move || crate::sim::bench::load_scenario(&owned))
                .await?
                .with_context(|| format!("loading {}", path.display()))?
        }
        None => bundled_scenario()?,
    };
    let duration_secs = scenario.duration_secs;
    let mut loaded = match &options.config {
        Some(path) => load::load(path)?,
        None => {
            // The bundled configuration uses the built-in plugins only,
            // whatever folder the demo runs in.
            // With a scenario of one application, the bundled
            // configuration scales that application, whatever its name.
            let text = match scenario.applications.as_slice() {
                [app] if app.name != BUNDLED_APPLICATION => CONFIG.replace(
                    &format!("{BUNDLED_APPLICATION:?}"),
                    &toml::Value::String(app.name.clone()).to_string(),
                ),
                _ => CONFIG.to_owned(),
            };
            let mut loaded = load::load_str(&text, Path::new("<bundled demo.toml>"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            loaded.resolve_plugins_in(None);
            loaded
        }
    };
    if let Some(dir) = &options.plugin_dir {
        loaded.resolve_plugins_in(Some(dir));
    }
    // An application the emulator does not play would only fail every
    // DescribeApplication: say so before starting.
    let configured = loaded.config.applications.iter().map(|a| a.name.as_str());
    if let Some((name, played)) = scenario.unplayed(configured) {
        return Err(crate::cli::WrongInput(format!(
            "{}: application {name:?} is not in scenario {:?} (valid: an application it plays: {played}); \
             rename it, or give a scenario with an application of that name",
            loaded.file.display(),
            scenario.name,
        ))
        .into());
    }
    // The emulator plays MSF: an application of a Flink cluster would be
    // scaled on the cluster its `rest_url` names, which is no demo.
    if let Some(app) = loaded
        .config
        .applications
        .iter()
        .find(|app| app.target == crate::config::TargetKind::Flink)
    {
        return Err(crate::cli::WrongInput(format!(
            "{}: application {:?} has target = \"flink\": the demo plays MSF applications only, \
             against its emulator, and would scale the cluster its rest_url names (valid: \
             target = \"msf\"; try a Flink application with `flinkscale once --dry-run`)",
            loaded.file.display(),
            app.name,
        ))
        .into());
    }
    for paths in &loaded.plugins {
        let files = std::iter::once(&paths.policy)
            .chain(&paths.interpreters)
            .filter_map(|source| source.file());
        for file in files {
            anyhow::ensure!(
                file.is_file(),
                "plugin {} is missing (built-in plugins: {})",
                file.display(),
                crate::plugin::builtin::names()
            );
        }
    }

    let mut emulator_options = EmulatorOptions::new(scenario);
    emulator_options.speed = options.speed;
    let emulator = emulator::start(emulator_options)
        .await
        .context("starting the emulator")?;
    let endpoint = emulator.endpoint_url();
    println!(
        "flinkscale demo: emulator on {endpoint}, model {}x real time; scenario {:?}, {} simulated seconds (~{:.0} s here).\n[mm:ss] is simulated time; each line is one evaluation by the agent.",
        options.speed,
        emulator.state_off_runtime().await.scenario,
        duration_secs,
        duration_secs as f64 / options.speed
    );

    let sdk = crate::aws::config_loader(Some("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new(
            "demo",
            "demo",
            None,
            None,
            "flinkscale-demo",
        ))
        .load()
        .await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let start = Agent::on_sdk(&loaded, false, Events::with_channel(tx), &sdk);
    let agent = tokio::select! {
        agent = start => Some(agent.context("starting the agent")?),
        () = stops.recv() => {
            println!("Stopped during start.");
            None
        }
    };
    let (stop, stopped) = watch::channel(false);
    let started = std::time::Instant::now();
    let running = agent.map(|agent| tokio::spawn(agent.run(stopped)));

    let wall = wall_time(duration_secs, options.speed);
    let deadline = tokio::time::sleep(wall);
    tokio::pin!(deadline);
    let mut evaluations = 0;
    while running.is_some() {
        tokio::select! {
            _ = &mut deadline => break,
            () = stops.recv() => break,
            event = events.recv() => match event {
                Some(event) => {
                    if matches!(event, Event::Evaluated { .. }) {
                        evaluations += 1;
                    }
                    let state = emulator.state_off_runtime().await;
                    if let Some(line) = describe(&event, &state) {
                        println!("{line}");
                    }
                }
                None => break,
            },
        }
    }
    let _ = stop.send(true);
    if let Some(running) = running {
        let _ = running.await;
    }

    let state = emulator.state_off_runtime().await;
    let mut calls = BTreeMap::new();
    for call in emulator.calls() {
        *calls.entry(call.operation).or_insert(0) += 1;
    }
    emulator.shutdown().await;
    let summary = DemoSummary {
        scores: state.scores,
        calls,
        evaluations,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    print!("{}", summary_text(&summary));
    if let Some(warning) = outran_warning(&summary, duration_secs, options.speed) {
        eprintln!("{warning}");
    }
    Ok(summary)
}

/// The demo's own scenario, embedded in the binary.
fn bundled_scenario() -> anyhow::Result<Scenario> {
    let (name, _, _) = crate::sim::bench::DEMO_SCENARIO;
    let loaded = crate::sim::bench::embedded_scenario(name);
    Ok(loaded.ok_or_else(|| anyhow::anyhow!("the demo's scenario is not embedded"))??)
}

/// One line per event worth a person's attention, with what the emulator
/// knows of the application at that moment (`state`).
fn describe(event: &Event, state: &EmulatorState) -> Option<String> {
    let t = |app: &str| {
        state
            .applications
            .iter()
            .find(|a| a.name == app)
            .map(|a| {
                (
                    format!(
                        "{:>2}:{:02}",
                        a.model_time_secs / 60,
                        a.model_time_secs % 60
                    ),
                    format!(
                        "load {:>5.0} rec/s  capacity {:>5.0}  {} KPU  lag {:>5.1} s",
                        a.lambda, a.capacity, a.kpu, a.lag_secs
                    ),
                )
            })
            .unwrap_or_default()
    };
    match event {
        Event::Evaluated {
            application,
            alarms,
            decision,
            latest,
            ..
        } => {
            let (at, app) = t(application);
            let mut line = format!("[{at}] {app}");
            for (id, value) in latest {
                match value {
                    Some(v) => {
                        let _ = write!(line, "  {id} {v:.0}");
                    }
                    None => {
                        let _ = write!(line, "  {id} -");
                    }
                }
            }
            let firing: Vec<&str> = alarms
                .iter()
                .filter(|a| a.state == crate::model::AlarmState::Alarm)
                .map(|a| a.name.as_str())
                .collect();
            if !firing.is_empty() {
                let _ = write!(line, "  ALARM: {}", firing.join(", "));
            }
            match decision.action {
                Action::Hold => {
                    let _ = write!(line, "\n         hold: {}", decision.reason);
                }
                Action::ScaleTo(k) => {
                    let _ = write!(line, "\n         SCALE TO {k} KPU: {}", decision.reason);
                }
            }
            Some(line)
        }
        Event::RescaleStarted {
            application,
            from_kpu,
            to_kpu,
            version_id,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!(
                "[{at}] UpdateApplication {from_kpu} -> {to_kpu} KPU (version {version_id}); the application is UPDATING"
            ))
        }
        Event::RescaleCompleted {
            application,
            kpu,
            update_secs,
            ..
        } => {
            let (at, _) = t(application);
            let after = match update_secs {
                Some(secs) => format!(" after {secs} s (wall)"),
                None => String::new(),
            };
            Some(format!(
                "[{at}] RUNNING again at {kpu} KPU{after}; grace period starts"
            ))
        }
        Event::Failed {
            application,
            class,
            message,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!("[{at}] {class}: {message}"))
        }
        Event::LimitRecorded {
            application,
            refused_kpu,
            ceiling_kpu,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!(
                "[{at}] the application's KPU quota refused {refused_kpu} KPU; staying at or below {ceiling_kpu}"
            ))
        }
        Event::PluginQuarantined {
            application,
            plugin,
            failures,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!(
                "[{at}] plugin {plugin} quarantined after {failures} failures; holding"
            ))
        }
        Event::Panicked {
            application,
            message,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!("[{at}] the controller panicked: {message}"))
        }
        Event::StoodDown {
            application,
            updates,
            ..
        } => {
            let (at, _) = t(application);
            Some(format!(
                "[{at}] stood down: another writer undid the agent's rescales ({updates}); no update is sent until a reload"
            ))
        }
        Event::Resumed { .. }
        | Event::ControllerReplaced { .. }
        | Event::StandDownLifted { .. }
        | Event::GraceHeld { .. }
        | Event::NotSent { .. }
        | Event::UpdateInDoubt { .. }
        | Event::LimitLifted { .. }
        | Event::RefusalLifted { .. }
        | Event::PluginRetried { .. }
        | Event::SignalsDropped { .. }
        | Event::PluginRecovered { .. }
        | Event::PluginReloaded { .. }
        | Event::PluginReloadRefused { .. }
        | Event::JournalFailing { .. }
        | Event::JournalRecovered { .. } => None,
    }
}

fn summary_text(s: &DemoSummary) -> String {
    let sc = &s.scores;
    let calls: Vec<String> = s.calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    format!(
        "\nsummary (model version {}): {} rescales, {} s updating, peak lag {:.1} s, p99 lag {:.1} s, {} s with lag above the SLO\n\
         capacity: {:.3} KPU-hours (${:.3}); a per-second perfect scaler needs {:.3} (efficiency {:.2}), the physical bound is {:.3}\n\
         agent: {} in {:.0} s; AWS calls: {}\n",
        sc.model_version,
        sc.rescales,
        sc.downtime_secs,
        sc.max_lag_secs,
        sc.p99_lag_secs,
        sc.slo_violation_secs,
        sc.kpu_hours,
        sc.cost_usd,
        sc.clairvoyant_kpu_hours,
        sc.efficiency,
        sc.lower_bound_kpu_hours,
        evaluations(s.evaluations),
        s.wall_secs,
        calls.join(", "),
    )
}

/// `1 evaluation`, `9 evaluations`.
fn evaluations(n: usize) -> String {
    format!("{n} evaluation{}", if n == 1 { "" } else { "s" })
}

/// Fewer evaluations than this in a demo cannot follow a load: an alarm
/// needs a few datapoints to fire, and a rescale a few evaluations to be
/// seen through (the bundled demo makes about 10 at its default speed).
const MIN_EVALUATIONS: usize = 5;

/// A warning when `--speed` outran the agent: the model ran well past the
/// scenario before the demo could stop it (its scores then cover more
/// than the scenario), the agent made no evaluation at all, or too few to
/// follow the load (it evaluates on the wall clock, so each evaluation
/// spans `speed` times more model time). `None` for a run that kept up.
fn outran_warning(summary: &DemoSummary, duration_secs: u64, speed: f64) -> Option<String> {
    let ran = summary.scores.duration_secs;
    let past = ran as f64 > 1.1 * duration_secs as f64 + 60.0;
    if !past && (1..MIN_EVALUATIONS).contains(&summary.evaluations) {
        return Some(format!(
            "warning: at --speed {speed} the agent made only {} in the {duration_secs} \
             s scenario (it evaluates on the wall clock, so each one spans {speed} times more \
             model time): too few to follow the load, so the scores say little of the policy \
             (an efficiency above 1 means the load was not carried: see the lag); lower \
             --speed (the default, 15, gives the bundled scenario about 10)",
            evaluations(summary.evaluations)
        ));
    }
    (past || summary.evaluations == 0).then(|| {
        format!(
            "warning: at --speed {speed} the model ran {ran} s of a {duration_secs} s scenario \
             and the agent made {}: the speed outran the agent, and the summary \
             covers {}; lower --speed (the default, 15, plays the bundled scenario as the agent \
             sees it)",
            evaluations(summary.evaluations),
            if past {
                "more than the scenario"
            } else {
                "a scenario the agent never saw"
            }
        )
    })
}

/// How long `duration_secs` of model time take at `speed` (the emulator
/// accepts any speed above 0): at most [`Duration::MAX`].
fn wall_time(duration_secs: u64, speed: f64) -> Duration {
    Duration::try_from_secs_f64(duration_secs as f64 / speed).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speed_that_outran_the_agent_is_said() {
        let summary = |ran: u64, evaluations: usize| DemoSummary {
            scores: crate::sim::Scores {
                duration_secs: ran,
                ..crate::sim::score::score(&[])
            },
            calls: BTreeMap::new(),
            evaluations,
            wall_secs: 1.0,
        };
        // Kept up: the model stopped near the scenario's end.
        assert_eq!(outran_warning(&summary(1830, 120), 1800, 60.0), None);
        // 1e6x: the model ran far past it, and the agent saw nothing.
        let warning = outran_warning(&summary(300_000, 0), 1800, 1e6).expect("said");
        assert!(
            warning.contains("the model ran 300000 s of a 1800 s scenario and the agent made 0")
                && warning.contains("covers more than the scenario"),
            "{warning}"
        );
        assert!(outran_warning(&summary(1800, 0), 1800, 1e4).is_some());
        // Too few evaluations to follow the load (--speed 60: 3).
        let warning = outran_warning(&summary(1800, 3), 1800, 60.0).expect("said");
        assert!(
            warning.contains("the agent made only 3 evaluations") && warning.contains("too few"),
            "{warning}"
        );
        assert_eq!(outran_warning(&summary(1800, 12), 1800, 15.0), None);
    }

    /// `--speed` is the user's: any speed the emulator accepts (above 0,
    /// however small) gives a wall time, the longest one when the scenario
    /// would outlast what a `Duration` holds.
    #[test]
    fn any_accepted_speed_gives_a_wall_time() {
        assert_eq!(wall_time(1800, 10.0), Duration::from_secs(180));
        assert_eq!(wall_time(1800, 1e-300), Duration::MAX);
        assert_eq!(wall_time(1800, f64::MIN_POSITIVE), Duration::MAX);
    }
}
