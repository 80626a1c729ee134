//! Drop-in and hot reload, end to end: the real `flinkscale run` against
//! `flinkscale emulate` (scenario `tests/fixtures/scenarios/reload.toml`).
//!
//! A plugin file replaced under a running agent decides from the next
//! evaluation once it loads and accepts the application's parameters, and
//! a broken one is refused while the running plugin keeps deciding. A
//! SIGHUP reloads the configuration: applications added start, removed
//! stop (no more AWS calls, journal lock released), changed restart with
//! their new settings, and the others carry on; an invalid file changes
//! nothing but the log, which names every error where it is. A SIGHUP
//! also lifts the KPU ceiling a LimitExceededException left (scenario
//! `e2e-scale.toml`), and the next decision asks for more again; a limit
//! far below the size asked for is found a few seconds a size.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{Emulator, Running, log_events, plugin_dir, scenario, start_agent, wait_until};

/// The emulator's model runs 20x faster than the wall clock.
const SPEED: f64 = 20.0;

/// How long any wait of these tests may take: generous, for a loaded
/// 2-core CI machine compiling plugins.
const PATIENCE: Duration = Duration::from_secs(90);

/// One `[[application]]` evaluated every second on its CPU, deciding with
/// `plugin` (no parameters).
fn application(name: &str, plugin: &str, evaluation_interval_secs: u32) -> String {
    common::cpu_application(
        name,
        evaluation_interval_secs,
        "",
        &format!("plugin = \"{plugin}\"\n"),
    )
}

/// Writes the agent's configuration (plugins from `plugins`, state in
/// `dir/state`) with `applications`, the way an operator edits it: aside,
/// then renamed over the old file.
fn write_config(dir: &Path, plugins: &Path, applications: &[String]) -> std::path::PathBuf {
    let text = format!(
        "{}{}",
        common::config::agent_table(plugins),
        applications.concat()
    );
    write_text(&dir.join("agent.toml"), &text);
    dir.join("agent.toml")
}

/// Replaces `path` with `bytes` atomically (written aside, then renamed).
fn write_text(path: &Path, text: &str) {
    common::replace(path, text.as_bytes());
}

/// Sends `agent` SIGHUP and waits for its `Configuration reloaded.` line.
fn reload_and_wait(agent: &Running, diagnose: impl Fn() -> String) {
    common::hangup(agent);
    wait_until(
        PATIENCE,
        "the reload",
        || !log_events(&agent.log(), "Configuration reloaded.").is_empty(),
        diagnose,
    );
}

fn diagnostics(emulator: &Emulator, agent: &Running) -> String {
    format!(
        "{}\n{}\n{}",
        emulator.call_summary(),
        agent.log_tail(80),
        emulator.process.log_tail(20)
    )
}

/// The DescribeApplication calls of `application` (every evaluation starts
/// with one), as (seq, wall ms).
fn describes(calls: &[Value], application: &str) -> Vec<(u64, i64)> {
    calls
        .iter()
        .filter(|c| c["operation"] == "DescribeApplication" && c["application"] == application)
        .map(|c| {
            (
                c["seq"].as_u64().unwrap_or(0),
                c["wall_ms"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// The reasons of the application's decisions, in order.
fn reasons(log: &str, application: &str) -> Vec<String> {
    log_events(log, "Evaluated.")
        .into_iter()
        .filter(|e| e["application"] == application)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A shipped plugin's component, where host/build.rs built it (the same
/// bytes as the built-in of that name).
fn shipped(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_replaced_plugin_decides_from_the_next_evaluation_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    // The plugin_dir is the test's own: its files are replaced under the
    // agent. `policy.wasm` starts as target-tracking.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let policy = plugins.join("policy.wasm");
    std::fs::copy(shipped("target_tracking"), &policy).unwrap();
    let config = write_config(dir.path(), &plugins, &[application("keep", "policy", 1)]);
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);

    wait_until(
        PATIENCE,
        "two decisions of target-tracking",
        || reasons(&agent.log(), "keep").len() >= 2,
        diagnose,
    );
    assert!(
        reasons(&agent.log(), "keep")
            .iter()
            .all(|r| r != "observe only"),
        "target-tracking decides first\n{}",
        diagnose()
    );

    // hold over the file the application runs: its decisions from the
    // next evaluation on, and the log names the new file's sha256.
    let hold = std::fs::read(shipped("hold")).unwrap();
    common::replace(&policy, &hold);
    wait_until(
        PATIENCE,
        "the reload",
        || !log_events(&agent.log(), "Plugin reloaded.").is_empty(),
        diagnose,
    );
    let reloaded = log_events(&agent.log(), "Plugin reloaded.");
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0]["sha256"], sha256_hex(&hold), "{reloaded:?}");
    assert!(
        reloaded[0]["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("target-tracking"))
            && reloaded[0]["to"]
                .as_str()
                .is_some_and(|t| t.starts_with("hold")),
        "{reloaded:?}"
    );
    let before = reasons(&agent.log(), "keep").len();
    wait_until(
        PATIENCE,
        "two decisions of hold",
        || reasons(&agent.log(), "keep").len() >= before + 2,
        diagnose,
    );
    // Hold decides at the evaluation that swapped it in once it had loaded
    // beside target-tracking (logged after the reload line), and at every
    // one after it.
    let log = agent.log();
    let after_reload = log
        .split_once("Plugin reloaded.")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    let since = reasons(&after_reload, "keep");
    assert!(
        !since.is_empty() && since.iter().all(|r| r == "observe only"),
        "{since:?}\n{}",
        diagnose()
    );

    // A reload that moves the application's lines and changes nothing
    // else leaves its controller running; the refusal below is said at
    // the line the file has now (before stop 57: at the line it had at
    // start).
    write_config(
        dir.path(),
        &plugins,
        &[
            "# The orders team's application,\n# moved down by a comment.\n\n".to_owned(),
            application("keep", "policy", 1),
        ],
    );
    reload_and_wait(&agent, diagnose);
    let reloaded = log_events(&agent.log(), "Configuration reloaded.");
    assert_eq!(reloaded[0]["changed"], "", "{reloaded:?}");

    // Random bytes: refused, with the reason, and hold keeps deciding.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    common::replace(&policy, &garbage);
    wait_until(
        PATIENCE,
        "the refusal",
        || {
            !log_events(
                &agent.log(),
                "Plugin reload refused; the running plugin stays.",
            )
            .is_empty()
        },
        diagnose,
    );
    let refused = log_events(
        &agent.log(),
        "Plugin reload refused; the running plugin stays.",
    );
    assert_eq!(refused[0]["sha256"], sha256_hex(&garbage), "{refused:?}");
    assert!(
        refused[0]["plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("hold")),
        "{refused:?}"
    );
    // Said at the field to change, as `validate` says it: the file is
    // no component, so the `plugin` that names it.
    let text = std::fs::read_to_string(&config).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("plugin = \"policy\""))
        .expect("the policy's plugin line");
    let place = format!("agent.toml:{line}:10: application \"keep\".policy.plugin: ");
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&place) && e.len() > place.len() + 20),
        "{place}\n{refused:?}"
    );
    // Hold decides at two more evaluations after the newest refusal, and
    // at no other; the log then.
    let hold_keeps_deciding = || {
        let before = reasons(&agent.log(), "keep").len();
        wait_until(
            PATIENCE,
            "two more decisions",
            || reasons(&agent.log(), "keep").len() >= before + 2,
            diagnose,
        );
        let log = agent.log();
        let (_, after_refusal) = log
            .rsplit_once("Plugin reload refused")
            .expect("the refusal is logged");
        let since = reasons(after_refusal, "keep");
        assert!(
            since.len() >= 2 && since.iter().all(|r| r == "observe only"),
            "{since:?}\n{}",
            diagnose()
        );
        log
    };
    let log = hold_keeps_deciding();
    // Refused once: the same broken file is not tried at every evaluation.
    assert_eq!(
        log_events(&log, "Plugin reload refused; the running plugin stays.").len(),
        1
    );

    // A file that loads and accepts the params, but whose declared metric
    // parameters (`rate`'s, by their defaults) name no metric this
    // application has: refused as `validate` and a start refuse it, at the
    // params, and hold keeps deciding (before stop 59 it replaced hold and
    // would have failed at every evaluation).
    let rate = std::fs::read(shipped("rate")).unwrap();
    common::replace(&policy, &rate);
    let refusals = || {
        log_events(
            &agent.log(),
            "Plugin reload refused; the running plugin stays.",
        )
    };
    wait_until(
        PATIENCE,
        "the second refusal",
        || refusals().len() >= 2,
        diagnose,
    );
    let refused = refusals();
    assert_eq!(refused[1]["sha256"], sha256_hex(&rate), "{refused:?}");
    assert!(
        refused[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("application \"keep\".policy.params")
                && e.contains("\"records_in\"")),
        "{refused:?}"
    );
    let log = hold_keeps_deciding();
    assert!(
        log_events(&log, "Plugin reloaded.").len() == 1,
        "rate never ran\n{}",
        diagnose()
    );
    agent.assert_running(diagnose);
}

/// Whether another process could lock the journal of `application` now.
/// A reload that moves plugin_dir to a folder holding another file of the
/// same name: the application runs the new folder's file, and keeps
/// running it. It went back to the old folder's at the first evaluation
/// (its files were still the ones followed), logged as a plugin reload.
#[test]
fn a_reload_that_moves_plugin_dir_runs_the_new_folders_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let (v1, v2) = (dir.path().join("plugins-v1"), dir.path().join("plugins-v2"));
    for (folder, plugin) in [(&v1, "target_tracking"), (&v2, "hold")] {
        std::fs::create_dir(folder).unwrap();
        std::fs::copy(shipped(plugin), folder.join("policy.wasm")).unwrap();
    }
    let config = write_config(dir.path(), &v1, &[application("keep", "policy", 1)]);
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    wait_until(
        PATIENCE,
        "two decisions of target-tracking",
        || reasons(&agent.log(), "keep").len() >= 2,
        diagnose,
    );

    write_config(dir.path(), &v2, &[application("keep", "policy", 1)]);
    reload_and_wait(&agent, diagnose);
    let after = || {
        let log = agent.log();
        let (_, rest) = log
            .split_once("Configuration reloaded.")
            .unwrap_or_default();
        reasons(rest, "keep")
    };
    wait_until(
        PATIENCE,
        "four decisions after the reload",
        || after().len() >= 4,
        diagnose,
    );
    let since = after();
    assert!(
        since.iter().all(|r| r == "observe only"),
        "hold (plugins-v2) decides from the reload on: {since:?}\n{}",
        diagnose()
    );
    assert!(
        log_events(&agent.log(), "Plugin reloaded.").is_empty(),
        "nothing swaps the old folder's file back\n{}",
        diagnose()
    );
}

fn journal_lockable(dir: &Path, application: &str) -> bool {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("state").join(format!("{application}.lock")))
        .expect("the lock file exists");
    file.try_lock().is_ok()
}

#[test]
fn sighup_starts_added_stops_removed_restarts_changed_and_leaves_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let plugins = plugin_dir();
    let config = write_config(
        dir.path(),
        &plugins,
        &[
            application("keep", "hold", 1),
            application("gone", "hold", 1),
            application("changed", "hold", 1),
        ],
    );
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    wait_until(
        PATIENCE,
        "three evaluations of each application",
        || {
            let calls = emulator.calls();
            ["keep", "gone", "changed"]
                .iter()
                .all(|a| describes(&calls, a).len() >= 3)
        },
        diagnose,
    );
    assert!(!journal_lockable(dir.path(), "gone"), "the agent holds it");

    write_config(
        dir.path(),
        &plugins,
        &[
            application("keep", "hold", 1),
            application("changed", "target-tracking", 2),
            application("added", "hold", 1),
        ],
    );
    reload_and_wait(&agent, diagnose);
    // Everything the removed controller did is in the log by now.
    let reloaded_at = emulator
        .calls()
        .iter()
        .filter_map(|c| c["seq"].as_u64())
        .max()
        .unwrap_or(0);
    let summary = &log_events(&agent.log(), "Configuration reloaded.")[0];
    assert_eq!(summary["added"], "added", "{summary}");
    assert_eq!(summary["removed"], "gone", "{summary}");
    assert_eq!(summary["changed"], "changed", "{summary}");
    assert!(journal_lockable(dir.path(), "gone"), "released on removal");
    assert!(!journal_lockable(dir.path(), "keep"));

    wait_until(
        PATIENCE,
        "three evaluations of the added application and two of the changed one after the reload",
        || {
            let calls = emulator.calls();
            describes(&calls, "added").len() >= 3
                && describes(&calls, "changed")
                    .iter()
                    .filter(|(seq, _)| *seq > reloaded_at)
                    .count()
                    >= 2
        },
        diagnose,
    );
    let calls = emulator.calls();
    let gone_after: Vec<_> = describes(&calls, "gone")
        .into_iter()
        .filter(|(seq, _)| *seq > reloaded_at)
        .collect();
    assert!(
        gone_after.is_empty(),
        "the removed application is still called: {gone_after:?}\n{}",
        diagnose()
    );
    // The changed one decides with its new policy.
    let log = agent.log();
    let changed = reasons(&log, "changed");
    assert!(
        changed.first().is_some_and(|r| r == "observe only")
            && changed.last().is_some_and(|r| r != "observe only"),
        "{changed:?}"
    );
    // The unchanged one was not restarted, and its once-a-second
    // evaluations went on through the reload: no silence of more than a
    // few intervals (a restart would have stopped and recompiled it).
    let restarted: Vec<_> = log_events(
        &log,
        "Application changed; its controller restarted with the new settings.",
    )
    .into_iter()
    .map(|e| e["application"].clone())
    .collect();
    assert_eq!(restarted, ["changed"]);
    let keep = describes(&calls, "keep");
    let longest_gap = keep.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or(0);
    assert!(
        keep.iter().any(|(seq, _)| *seq > reloaded_at) && longest_gap < 5_000,
        "keep's evaluations stopped for {longest_gap} ms\n{}",
        diagnose()
    );
    agent.assert_running(diagnose);
}

#[test]
fn sighup_with_an_invalid_file_keeps_the_running_configuration_and_logs_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let plugins = plugin_dir();
    let config = write_config(dir.path(), &plugins, &[application("keep", "hold", 1)]);
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    wait_until(
        PATIENCE,
        "an evaluation",
        || !describes(&emulator.calls(), "keep").is_empty(),
        diagnose,
    );

    // Two errors, in two applications: bounds the wrong way round, and a
    // field that does not exist in an application that would be added if
    // the file were valid.
    let broken = application("keep", "hold", 1).replace("min_kpu = 1", "min_kpu = 9")
        + &application("added", "hold", 1).replace(
            "grace_period_secs = 2",
            "grace_period_secs = 2\ngrace_secs = 2",
        );
    write_config(dir.path(), &plugins, &[broken]);
    common::hangup(&agent);
    let message = "Invalid configuration; keeping the running one.";
    wait_until(
        PATIENCE,
        "the refusal",
        || {
            !log_events(
                &agent.log(),
                "Configuration reload refused; the running configuration stays.",
            )
            .is_empty()
        },
        diagnose,
    );
    let errors: Vec<String> = log_events(&agent.log(), message)
        .into_iter()
        .map(|e| e["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    // Each one located: file:line:column.
    let located = format!("{}:", config.display());
    assert!(errors.iter().all(|e| e.starts_with(&located)), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("grace_secs")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("min_kpu")), "{errors:?}");

    // The running configuration carries on; nothing was added.
    let seen = emulator
        .calls()
        .iter()
        .filter_map(|c| c["seq"].as_u64())
        .max()
        .unwrap_or(0);
    wait_until(
        PATIENCE,
        "evaluations after the refused reload",
        || {
            describes(&emulator.calls(), "keep")
                .iter()
                .filter(|(seq, _)| *seq > seen)
                .count()
                >= 2
        },
        diagnose,
    );
    assert!(describes(&emulator.calls(), "added").is_empty());
    assert!(log_events(&agent.log(), "Configuration reloaded.").is_empty());
    agent.assert_running(diagnose);
}

/// What a policy was handed: per call, the first series' length and first
/// timestamp.
type Handed = std::sync::Arc<std::sync::Mutex<Vec<(usize, Option<i64>)>>>;

/// The agent's decide stage for a policy plugin, noting what each call is
/// handed before the plugin decides.
struct Noting(flinkscale::agent::PluginPolicy, Handed);

impl flinkscale::controller::Decide for Noting {
    fn decide(
        &mut self,
        evaluation: &flinkscale::model::Evaluation,
    ) -> Result<flinkscale::model::Decision, flinkscale::controller::PluginFailure> {
        let first = evaluation.metrics.first();
        self.1.lock().unwrap().push((
            first.map_or(0, |s| s.points.len()),
            first.and_then(|s| s.points.first()).map(|p| p.timestamp_ms),
        ));
        self.0.decide(evaluation)
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn refresh(&mut self) -> flinkscale::plugin::Refresh {
        self.0.refresh()
    }
    fn starts_afresh(&self) -> bool {
        self.0.starts_afresh()
    }
}

/// A component with one more custom section at its end: the same plugin,
/// a new file (another sha256), as a rebuild would give.
fn with_custom_section(wasm: &[u8], text: &str) -> Vec<u8> {
    let name = b"rebuilt";
    let payload_len = 1 + name.len() + text.len();
    assert!(payload_len < 128, "one LEB128 byte");
    let mut out = wasm.to_vec();
    out.extend_from_slice(&[0, payload_len as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(text.as_bytes());
    out
}

/// `history_days` across a hot reload, with the real parts: the emulator
/// over HTTP (its scenario publishes a day before t = 0), GetMetricData
/// through the SDK, the misbehave fixture plugin loaded as the agent does.
/// The first decision is handed the day before the window; the next the
/// window alone; and once the plugin file is replaced, the new instance's
/// first decision is handed the day again, read up to its own window.
#[tokio::test]
async fn a_reloaded_policy_is_handed_its_history_again() {
    use std::sync::{Arc, Mutex};

    use flinkscale::clock::Clock;
    use flinkscale::controller::Controller;
    use flinkscale::emulator::{self, EmulatorOptions, Service};
    use flinkscale::metrics::cloudwatch::CloudWatchSource;
    use flinkscale::plugin::{PluginHost, Reloading, SandboxLimits};
    use flinkscale::target::msf::MsfTarget;
    use flinkscale::telemetry::Events;

    let dir = tempfile::tempdir().expect("a temp dir");
    let file = common::history_scenario(dir.path(), 1);
    let mut options = EmulatorOptions::new(file);
    options.start_epoch_ms = Some(common::now_ms() - 3_600_000);
    let emu = emulator::start(options).await.expect("emulator starts");
    let sdk = flinkscale::aws::config_loader(Some("us-east-1"))
        .endpoint_url(emu.endpoint_url())
        .test_credentials()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;

    let plugin = dir.path().join("forgetful.wasm");
    let original = std::fs::read(plugin_dir().join("misbehave.wasm")).expect("misbehave.wasm");
    common::replace(&plugin, &original);
    let text = r#"[[application]]
name = "app"
min_kpu = 1
max_kpu = 8

[[application.metric]]
id = "rate"
namespace = "AWS/KinesisAnalytics"
metric_name = "numRecordsInPerSecond"
dimensions = { Application = "app" }
statistic = "Average"
period_secs = 60

[application.policy]
plugin = "forgetful"
params = { mode = "ok" }
history_days = 1
"#;
    let loaded = flinkscale::config::load_str(text, &dir.path().join("agent.toml"))
        .expect("the configuration is valid");
    let app = &loaded.config.applications[0];
    let host = Arc::new(PluginHost::new(SandboxLimits::default()).expect("the engine starts"));
    let policy = Reloading::policy(
        host,
        plugin.clone(),
        r#"{"mode": "ok"}"#.to_owned(),
        "app".to_owned(),
    )
    .expect("the plugin loads");
    let handed: Handed = Arc::new(Mutex::new(Vec::new()));
    let mut controller = Controller::new(
        app,
        true,
        Arc::new(CloudWatchSource::new(&sdk)),
        Arc::new(MsfTarget::new(&sdk)),
        Box::new(Noting(
            flinkscale::agent::PluginPolicy(policy),
            handed.clone(),
        )),
        Vec::new(),
        Clock::system(),
        Events::default(),
    );
    let mut evaluate = async |label: &str| {
        let before = common::now_ms();
        let assessment = controller.evaluate().await.expect("evaluates");
        assert_eq!(assessment.decision.reason, "fine", "{label}");
        (
            before,
            handed.lock().unwrap().last().copied().expect("handed"),
        )
    };
    const DAY_MS: i64 = 86_400_000;
    // Whole minutes of the day before the evaluation at `at_ms`, the
    // window's included: its first point is the first whole hour a minute
    // within it (a start that stays inside CloudWatch's retention once
    // aligned).
    let check_day = |(at_ms, (points, first)): (i64, (usize, Option<i64>)), label: &str| {
        let first = first.expect("points");
        assert!(
            first >= at_ms - DAY_MS + 60_000 && first < at_ms - DAY_MS + 3_720_000,
            "{label}: first point {first}, {} ms after the day began",
            first - (at_ms - DAY_MS)
        );
        assert_eq!(first % 3_600_000, 0, "{label}: a whole hour");
        assert!((1378..=1439).contains(&points), "{label}: {points} points");
    };
    let first = evaluate("first").await;
    check_day(first, "first");
    let (_, (window, _)) = evaluate("second").await;
    assert!(window < 100, "the window alone: {window} points");

    // A new file: the reloaded instance remembers nothing, so its first
    // decision gets the day again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    common::replace(&plugin, &with_custom_section(&original, "again"));
    let reloaded = evaluate("after the reload").await;
    check_day(reloaded, "after the reload");
    assert!(reloaded.1.1 >= first.1.1, "read up to the new window");
    let (_, (window_again, _)) = evaluate("the next").await;
    assert_eq!(window_again, window);

    // Two history reads (the first decision's, the reloaded instance's),
    // each reaching a day back; the four windows' reach back minutes.
    let reaches: Vec<i64> = emu
        .calls()
        .iter()
        .filter(|c| c.service == Service::CloudWatch && c.operation == "GetMetricData")
        // First pages only: the emulator pages its answers.
        .filter(|c| c.params.get("NextToken").is_none())
        .filter_map(|c| {
            let start_secs = c.params.get("StartTime")?.as_f64()?;
            Some(c.wall_ms - (start_secs * 1000.0) as i64)
        })
        .collect();
    let history_reads = reaches.iter().filter(|&&ms| ms > DAY_MS / 2).count();
    assert_eq!((reaches.len(), history_reads), (6, 2), "{reaches:?}");
    emu.shutdown().await;
}

/// `dir/agent.toml`: the application `app` between 2 and `max_kpu` KPU,
/// evaluated every `evaluation_interval_secs`, following its updates every
/// second with a 2 s grace period, with `rules` (its metrics, alarms and
/// policy); the journal in `dir/state`.
fn scaling_config(
    dir: &Path,
    app: &str,
    max_kpu: u32,
    evaluation_interval_secs: u32,
    rules: &str,
) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    write_text(
        &config,
        &format!(
            "[agent]\nstate_dir = \"state\"\n\n[[application]]\nname = \"{app}\"\n\
             min_kpu = 2\nmax_kpu = {max_kpu}\nevaluation_interval_secs = {evaluation_interval_secs}\n\
             update_poll_secs = 1\ngrace_period_secs = 2\n\n{rules}"
        ),
    );
    config
}

/// The end-to-end scenario (`e2e-scale.toml`, with its trace) copied into
/// `dir` with `line` added to its application; the copy's path.
fn e2e_scenario_with(dir: &Path, line: &str) -> std::path::PathBuf {
    let fixture = scenario("e2e-scale.toml");
    let text = std::fs::read_to_string(&fixture)
        .expect("the scenario reads")
        .replace("initial_kpu = 2\n", &format!("initial_kpu = 2\n{line}\n"));
    assert!(text.contains(line), "{text}");
    let copy = dir.join("e2e-scale.toml");
    write_text(&copy, &text);
    std::fs::copy(
        fixture.with_file_name("e2e-constant.csv"),
        dir.join("e2e-constant.csv"),
    )
    .expect("the trace copies");
    copy
}

/// The UpdateApplication calls of `application`: the parallelism each
/// asked for, its outcome (`ok` or the error code) and when it ran
/// (wall-clock ms).
fn updates_of(calls: &[Value], application: &str) -> Vec<(u64, String, i64)> {
    common::calls_of(calls, "UpdateApplication", Some(application))
        .into_iter()
        .map(|c| {
            (
                common::parallelism_update(c).unwrap_or(0),
                c["outcome"].as_str().unwrap_or("?").to_owned(),
                c["wall_ms"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// The emulator's KPU quota of 5 KPU (`account_kpu_limit`, not an
/// injected fault) under an agent that evaluates every 30 s and whose step
/// policy multiplies by 8: from 2 KPU it asks for 10 (its `max_kpu`), and
/// 10, 9, 8, 7 and 6 are refused a few seconds apart, not 30 s, each a
/// decision of the real agent with lazy polling on; 5 is accepted, once.
#[test]
fn a_kpu_limit_far_below_the_ask_is_found_in_seconds() {
    const APP: &str = "e2e-app";
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(
        &e2e_scenario_with(dir.path(), "account_kpu_limit = 5"),
        SPEED,
        &[],
        dir.path(),
    );
    let rules = common::cpu_step_rules(APP).replace("scale_out_factor = 2", "scale_out_factor = 8");
    let config = scaling_config(dir.path(), APP, 10, 30, &rules);
    emulator.set_load(APP, 3.0);
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    wait_until(
        PATIENCE,
        "an UpdateApplication to 5 KPU accepted",
        || {
            agent.assert_running(diagnose);
            updates_of(&emulator.calls(), APP)
                .iter()
                .any(|(kpu, outcome, _)| *kpu == 5 && outcome == "ok")
        },
        diagnose,
    );
    let updates = updates_of(&emulator.calls(), APP);
    let asked: Vec<(u64, &str)> = updates.iter().map(|(k, o, _)| (*k, o.as_str())).collect();
    let refused = "LimitExceededException";
    assert_eq!(
        asked,
        [
            (10, refused),
            (9, refused),
            (8, refused),
            (7, refused),
            (6, refused),
            (5, "ok")
        ],
        "{}",
        diagnose()
    );
    let gaps: Vec<i64> = updates.windows(2).map(|w| w[1].2 - w[0].2).collect();
    assert!(
        gaps.iter().all(|gap| (4_000..15_000).contains(gap)),
        "ms between the tries, 5 s each where the interval is 30 s: {gaps:?}\n{}",
        diagnose()
    );
    agent.stop();
}

/// An update MSF accepts and then rolls back (the emulator's
/// `rollback_above_parallelism`: the job does not start above 3) is not
/// sent again: the scale-out from 2 to 4 KPU goes UPDATING, then
/// ROLLING_BACK, and the application runs at 2 again, a version further,
/// with `ApplicationVersionRolledBackFrom` naming the failed version. The
/// agent says the update was rolled back and, while the scale-out alarm
/// keeps firing, holds and says why, instead of restarting the
/// application into the same failure after every grace period (2 s here);
/// nor does it take the rollback for another writer undoing its rescale.
/// A reload of the same file keeps the hold; one that changes the
/// application lifts it: the size is asked for once more.
#[test]
fn an_update_msf_rolls_back_is_not_sent_again() {
    const APP: &str = "e2e-app";
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(
        &e2e_scenario_with(dir.path(), "rollback_above_parallelism = 3"),
        SPEED,
        &[],
        dir.path(),
    );
    let config = scaling_config(dir.path(), APP, 7, 1, &common::cpu_step_rules(APP));
    // 3000 records/s: 2 KPU cannot keep up, the scale-out alarm fires on.
    emulator.set_load(APP, 3.0);
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    let held = "; the update to 4 KPU was rolled back (it did not start), not asked again for \
                another ";
    // Two decisions held for it, 10 s apart (a new CPU datapoint each):
    // past several grace periods.
    wait_until(
        PATIENCE,
        "two decisions held after the rollback",
        || {
            agent.assert_running(diagnose);
            reasons(&agent.log(), APP)
                .iter()
                .filter(|r| r.contains(held))
                .count()
                >= 2
        },
        diagnose,
    );
    assert_eq!(
        updates_of(&emulator.calls(), APP)
            .into_iter()
            .map(|(kpu, outcome, _)| (kpu, outcome))
            .collect::<Vec<_>>(),
        [(4, "ok".to_owned())],
        "{}",
        diagnose()
    );
    let log = agent.log();
    let failed: Vec<String> = common::log_events(&log, "Step failed.")
        .into_iter()
        .filter(|e| e["class"] == "update_failed")
        .map(|e| e["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        failed,
        [
            "the update to 4 KPU was rolled back: version 2 did not start, and the application \
          runs at 2 KPU again (version 3); 4 KPU or more is not asked for again for 3600 s \
          (why it failed: aws kinesisanalyticsv2 list-application-operations)"
        ],
        "{}",
        diagnose()
    );
    assert!(!log.contains("Stood down"), "{}", diagnose());
    assert!(
        !log.contains("not the 4 KPU requested"),
        "a rollback is said as one: {}",
        diagnose()
    );
    // A reload that leaves the application as it was keeps the hold: a
    // restart into the same failure is not what it was sent for.
    common::hangup(&agent);
    let held_before = reasons(&agent.log(), APP)
        .iter()
        .filter(|r| r.contains(held))
        .count();
    wait_until(
        PATIENCE,
        "the reload, and two more decisions held",
        || {
            agent.assert_running(diagnose);
            let log = agent.log();
            log.contains("Configuration reloaded.")
                && reasons(&log, APP)
                    .iter()
                    .filter(|r| r.contains(held))
                    .count()
                    >= held_before + 2
        },
        diagnose,
    );
    assert!(!agent.log().contains("Held size lifted"), "{}", diagnose());
    assert_eq!(
        updates_of(&emulator.calls(), APP).len(),
        1,
        "{}",
        diagnose()
    );
    // The operator changes the application (having fixed nothing here) and
    // reloads: the hold is lifted and journaled, and the next decision
    // asks for 4 KPU again, which rolls back again and is held again.
    scaling_config(dir.path(), APP, 6, 1, &common::cpu_step_rules(APP));
    common::hangup(&agent);
    wait_until(
        PATIENCE,
        "a second UpdateApplication to 4 KPU after the reload, and its rollback",
        || {
            agent.assert_running(diagnose);
            common::log_events(&agent.log(), "Step failed.")
                .iter()
                .filter(|e| e["class"] == "update_failed")
                .count()
                >= 2
        },
        diagnose,
    );
    let log = agent.log();
    let lifted = common::log_events(&log, "Held size lifted; it may be asked for again.");
    assert_eq!(lifted.len(), 1, "{}", diagnose());
    assert_eq!(lifted[0]["application"], APP);
    assert_eq!(lifted[0]["kpu"], 4);
    assert_eq!(lifted[0]["rolled_back_to_kpu"], 2);
    assert_eq!(
        lifted[0]["reason"],
        "lifted by a configuration reload (SIGHUP)",
        "{}",
        diagnose()
    );
    assert_eq!(
        updates_of(&emulator.calls(), APP)
            .into_iter()
            .map(|(kpu, outcome, _)| (kpu, outcome))
            .collect::<Vec<_>>(),
        [(4, "ok".to_owned()), (4, "ok".to_owned())],
        "{}",
        diagnose()
    );
    agent.stop();
    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state").join(format!("{APP}.json")))
            .expect("the journal is written"),
    )
    .expect("the journal is JSON");
    assert_eq!(
        journal["record"]["refused"]["kpu"], 4,
        "held again after the second rollback: {journal}"
    );
}

/// The application's KPU quota (an injected LimitExceededException) refuses
/// the scale-out from 2 to 4 KPU: 3 is the ceiling, and the agent holds
/// there. The operator raises the limit and reloads: the log says the
/// ceiling is lifted, the next decision asks for 6 KPU and gets them, and
/// the journal no longer holds the ceiling.
#[test]
fn sighup_lifts_a_kpu_ceiling_and_the_next_decision_asks_for_more() {
    const APP: &str = "e2e-app";
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    let config = scaling_config(dir.path(), APP, 7, 1, &common::cpu_step_rules(APP));
    // 3000 records/s: 2, 3 and 4 KPU cannot keep up, 6 run at ~55 % CPU.
    emulator.set_load(APP, 3.0);
    emulator.add_fault(&serde_json::json!({
        "operation": "UpdateApplication",
        "error": "LimitExceededException",
        "count": 1,
    }));
    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    let updates = |calls: &[Value]| -> Vec<(u64, String)> {
        updates_of(calls, APP)
            .into_iter()
            .map(|(kpu, outcome, _)| (kpu, outcome))
            .collect()
    };
    // The decision is logged before its UpdateApplication is sent: wait
    // for both, or the call log may be read between the two.
    wait_until(
        PATIENCE,
        "a scale-out to the 3 KPU ceiling",
        || {
            agent.assert_running(diagnose);
            reasons(&agent.log(), APP).iter().any(|r| {
                r.contains("max lowered to 3 KPU: the application's KPU quota refused 4 KPU")
            }) && updates(&emulator.calls()).len() >= 2
        },
        diagnose,
    );
    assert_eq!(
        updates(&emulator.calls()),
        [
            (4, "LimitExceededException".to_owned()),
            (3, "ok".to_owned())
        ],
        "{}",
        diagnose()
    );

    common::hangup(&agent);
    wait_until(
        PATIENCE,
        "an UpdateApplication to 6 KPU after the reload",
        || {
            agent.assert_running(diagnose);
            updates(&emulator.calls()).len() >= 3
        },
        diagnose,
    );
    assert_eq!(
        updates(&emulator.calls()),
        [
            (4, "LimitExceededException".to_owned()),
            (3, "ok".to_owned()),
            (6, "ok".to_owned())
        ],
        "{}",
        diagnose()
    );
    let log = agent.log();
    let lifted = log_events(&log, "KPU limit lifted.");
    assert_eq!(lifted.len(), 1, "{}", diagnose());
    assert_eq!(lifted[0]["application"], APP);
    assert_eq!(lifted[0]["refused_kpu"], 4);
    assert_eq!(
        lifted[0]["reason"],
        "lifted by a configuration reload (SIGHUP); the limit may have been raised"
    );
    agent.stop();
    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state").join(format!("{APP}.json")))
            .expect("the journal is written"),
    )
    .expect("the journal is JSON");
    assert!(journal["record"]["kpu_limit"].is_null(), "{journal}");
}

/// `flinkscale reload`, the SIGHUP of a shell without `kill` (the
/// container image's): it finds the agent by the journal locks it holds
/// in the file's `state_dir`, and the agent reloads. A file the agent
/// would refuse is refused here (exit 78, located) and nothing is sent;
/// with no agent holding the folder, it says so (exit 1).
#[test]
fn flinkscale_reload_signals_the_agent_holding_the_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let plugins = plugin_dir();
    let config = write_config(dir.path(), &plugins, &[application("keep", "hold", 1)]);
    let reload = || {
        std::process::Command::new(common::BIN)
            .args(["reload", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .expect("flinkscale runs")
    };
    // A --resume that names no application of the file: a usage error,
    // nothing written, nothing sent.
    let unknown = std::process::Command::new(common::BIN)
        .args(["reload", "--resume", "kep", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("flinkscale runs");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .starts_with("error: --resume \"kep\": no application of that name in ")
            && String::from_utf8_lossy(&unknown.stderr)
                .ends_with("agent.toml (valid: \"keep\"): not sent\n"),
        "{unknown:?}"
    );
    assert!(!dir.path().join("state/kep.resume").exists());
    let nobody = reload();
    assert_eq!(nobody.status.code(), Some(1), "{nobody:?}");
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("no running agent holds a journal lock"),
        "{nobody:?}"
    );

    let agent = start_agent(&emulator, &config, &[], dir.path());
    let diagnose = || diagnostics(&emulator, &agent);
    wait_until(
        PATIENCE,
        "the application's journal locked",
        || dir.path().join("state/keep.lock").exists() && !journal_lockable(dir.path(), "keep"),
        diagnose,
    );
    write_config(
        dir.path(),
        &plugins,
        &[
            application("keep", "hold", 1),
            application("added", "hold", 1),
        ],
    );
    let sent = reload();
    let said = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{sent:?}");
    assert!(
        said.contains(&format!(
            "Sent SIGHUP to the agent (process {}",
            agent.pid()
        )),
        "{said}"
    );
    wait_until(
        PATIENCE,
        "the reload",
        || !log_events(&agent.log(), "Configuration reloaded.").is_empty(),
        diagnose,
    );
    assert_eq!(
        log_events(&agent.log(), "Configuration reloaded.")[0]["added"],
        "added"
    );

    // A file that pauses every application still finds the agent, by the
    // locks it holds for the file it runs (it looked only at the new
    // file's active applications, and found none).
    let paused =
        |name: &str| common::cpu_application(name, 1, "mode = \"paused\"\n", "plugin = \"hold\"\n");
    write_config(dir.path(), &plugins, &[paused("keep"), paused("added")]);
    let sent = reload();
    assert!(sent.status.success(), "{sent:?}");
    wait_until(
        PATIENCE,
        "the second reload",
        || log_events(&agent.log(), "Configuration reloaded.").len() >= 2,
        diagnose,
    );

    // A file the agent would refuse: nothing sent.
    write_text(&config, "[[application]]\nname = \"keep\"\nmax_kpu = 0\n");
    let refused = reload();
    assert_eq!(refused.status.code(), Some(78), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not sent: the agent would refuse"),
        "{refused:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        log_events(&agent.log(), "Configuration reload refused").is_empty(),
        "{}",
        diagnose()
    );
    assert!(agent.terminate(Duration::from_secs(15)).is_some());
}
