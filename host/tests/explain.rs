//! `flinkscale explain` and `flinkscale status`, as an operator uses them:
//! the real agent (`flinkscale run`, the real SDK, the real `step` plugin)
//! scales an application of `flinkscale emulate` out, then `explain` shows
//! the evaluation that led to it (the alarm in ALARM, the decision, the
//! accepted UpdateApplication), `status` shows the phase and KPU, before,
//! during and after the agent runs (also from another PID namespace, made
//! with `unshare`, as from a container beside the agent's, where the
//! kernel hides who holds the journal's lock and the lock file names it),
//! a second agent on the same state folder is refused naming the first,
//! and `GET /status` and `GET /explain` on the agent's listener answer the
//! same JSON as the commands.
//!
//! Needs the plugins built (`cargo plugins`); fails, not skips, without.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Emulator, Running, http, plugin_dir, scenario, start_agent, wait_until};
use serde_json::Value;

/// The application of `tests/fixtures/scenarios/e2e-scale.toml`.
const APP: &str = "e2e-app";
/// Model seconds per wall second (as in e2e.rs: a 10 s metric period
/// covers 200 model seconds, an update lasts 3 wall seconds).
const SPEED: f64 = 20.0;

/// The step policy on CPU between 2 and 4 KPU: at the load the test sets,
/// 2 KPU run above 75 % and the policy doubles them to 4 once.
fn config(dir: &Path, listen: SocketAddr) -> PathBuf {
    let agent = common::config::agent_table(&plugin_dir());
    let rules = common::cpu_step_rules(APP);
    let text = format!(
        r#"{agent}listen = "{listen}"

[[application]]
name = "{APP}"
min_kpu = 2
max_kpu = 4
update_poll_secs = 1
update_timeout_secs = 120
grace_period_secs = 5

{rules}"#
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the agent configuration can be written");
    file
}

/// Runs `flinkscale ARGS` (no AWS access: these commands read files) and
/// returns its standard output; fails the test unless it exits 0.
fn flinkscale(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flinkscale runs");
    assert!(
        output.status.success(),
        "flinkscale {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn get(addr: SocketAddr, path: &str) -> Option<Value> {
    let response = http(addr, "GET", path, &[], b"").ok()?;
    assert_eq!(
        response.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice(&response.body).ok()
}

/// `status` JSON without what depends on the instant it was read.
fn timeless(mut status: Value) -> Value {
    if let Some(object) = status.as_object_mut() {
        object.remove("now_ms");
    }
    for app in status["applications"].as_array_mut().into_iter().flatten() {
        if let Some(object) = app.as_object_mut() {
            object.remove("grace_left_secs");
            object.remove("last_age_secs");
        }
    }
    status
}

/// The entry of an evaluation whose update was accepted, if any.
fn accepted(explanation: &Value) -> Option<Value> {
    explanation["entries"]
        .as_array()?
        .iter()
        .find(|e| e["outcome"]["kind"] == "accepted")
        .cloned()
}

#[test]
fn explain_shows_why_the_agent_scaled_and_status_where_it_is() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let config = config(dir.path(), listen);
    let config_arg = config.to_string_lossy().into_owned();
    let explain_args = [
        "explain",
        "--config",
        &config_arg,
        "--application",
        APP,
        "--last",
        "50",
    ];

    // Before the agent ever ran: nothing to show, and it says so.
    let before = flinkscale(dir.path(), &["status", "--config", &config_arg]);
    assert!(
        before.contains("phase:      none")
            && before.contains("no decision recorded yet (the history is empty)"),
        "{before}"
    );
    let empty = flinkscale(dir.path(), &explain_args);
    assert!(empty.contains("the history is empty"), "{empty}");

    let emu = Emulator::start(&scenario("e2e-scale.toml"), SPEED, &[], dir.path());
    // 3000 records/s: 2 KPU cannot carry them.
    emu.set_load(APP, 3.0);
    let agent: Running = start_agent(&emu, &config, &[], dir.path());
    let diag = || format!("{}\n{}", emu.call_summary(), agent.log_tail(60));

    let mut explanation = Value::Null;
    wait_until(
        Duration::from_secs(120),
        "an evaluation whose UpdateApplication was accepted, in `explain --json`",
        || {
            agent.assert_running(diag);
            let mut args = explain_args.to_vec();
            args.push("--json");
            explanation = json(&flinkscale(dir.path(), &args));
            accepted(&explanation).is_some()
        },
        diag,
    );
    let entry = accepted(&explanation).expect("an accepted update");
    assert_eq!(entry["kpu"], 2, "{entry}");
    assert_eq!(entry["decision"]["scale_to_kpu"], 4, "{entry}");
    assert_eq!(entry["outcome"]["kpu"], 4, "{entry}");
    assert!(
        entry["policy"]
            .as_str()
            .is_some_and(|p| p.starts_with("step ")),
        "{entry}"
    );
    let alarm = entry["alarms"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "scale-out"))
        .unwrap_or_else(|| panic!("no scale-out alarm in {entry}"));
    assert_eq!(alarm["state"], "ALARM", "{entry}");
    let cpu = entry["metrics"][0]["value"].as_f64().unwrap_or(0.0);
    assert!(cpu > 75.0, "the alarm fired on {cpu} % CPU: {entry}");
    // The UpdateApplication the emulator saw is the one explained.
    let updates = common::calls_of(&emu.calls(), "UpdateApplication", Some(APP)).len();
    assert_eq!(updates, 1, "{}", diag());

    // The same evaluation as text, one block per evaluation.
    let text = flinkscale(dir.path(), &explain_args);
    let block = text
        .split("\n\n")
        .find(|b| b.contains("UpdateApplication accepted to 4 KPU"))
        .unwrap_or_else(|| panic!("no accepted update in:\n{text}"));
    assert!(
        block.contains(&format!("{APP}  2 KPU  policy step ")),
        "{block}"
    );
    assert!(block.contains("scale-out ALARM for"), "{block}");
    assert!(block.contains("decision: scale to 4 KPU: "), "{block}");
    assert!(block.contains("  metrics:  cpu "), "{block}");

    // Status follows the rescale to its end.
    let mut status = Value::Null;
    wait_until(
        Duration::from_secs(60),
        "status to report 4 KPU after the rescale",
        || {
            status = json(&flinkscale(
                dir.path(),
                &["status", "--config", &config_arg, "--json"],
            ));
            status["applications"][0]["kpu"] == 4
                && matches!(
                    status["applications"][0]["phase"].as_str(),
                    Some("grace" | "idle")
                )
        },
        diag,
    );
    let app = &status["applications"][0];
    assert_eq!(app["application"], APP);
    assert!(app["last"]["decision"]["reason"].is_string(), "{status}");
    assert_eq!(app["ceiling_kpu"], Value::Null, "{status}");
    assert_eq!(app["quarantine"], serde_json::json!([]), "{status}");
    // The running agent holds the journal's lock, and status says which:
    // the kernel's table and the lock file, which the agent told who it is.
    assert_eq!(app["journal_lock"]["held"], true, "{status}");
    assert_eq!(app["journal_lock"]["pid"], agent.pid(), "{status}");
    assert_eq!(app["journal_lock"]["owner"]["pid"], agent.pid(), "{status}");
    let host = app["journal_lock"]["owner"]["host"]
        .as_str()
        .unwrap_or_else(|| panic!("the lock file names the host: {status}"));
    let text = flinkscale(dir.path(), &["status", "--config", &config_arg]);
    assert!(text.contains("  kpu:        4\n"), "{text}");
    assert!(
        text.contains(&format!(
            "  agent:      running (process {} on host {host}, since ",
            agent.pid()
        )),
        "{text}"
    );
    assert!(text.contains(" s ago: "), "{text}");

    // From another PID namespace (a `status` in a container beside the
    // agent's), the kernel's table hides the holder: trying the lock finds
    // it held, and the lock file names the agent.
    let from_another_namespace = |json_too: bool| {
        let mut command = Command::new("unshare");
        command
            .args([
                "--user",
                "--map-root-user",
                "--pid",
                "--fork",
                "--mount-proc",
            ])
            .args([BIN, "status", "--config", &config_arg])
            .current_dir(dir.path());
        if json_too {
            command.arg("--json");
        }
        let output = command.output().expect("unshare (util-linux) runs");
        assert!(
            output.status.success(),
            "status in a new PID namespace: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let hidden = json(&from_another_namespace(true));
    let lock = &hidden["applications"][0]["journal_lock"];
    assert_eq!(lock["held"], true, "{hidden}");
    assert_eq!(
        lock.get("pid"),
        None,
        "the table hides the holder: {hidden}"
    );
    assert_eq!(lock["owner"]["pid"], agent.pid(), "{hidden}");
    assert_eq!(lock["owner"]["host"], host, "{hidden}");
    let text = from_another_namespace(false);
    assert!(
        text.contains(
            "  agent:      running (a process out of sight, in another PID namespace or \
             container, holds "
        ) && text.contains(&format!(
            "; the lock file says: process {} on host {host}, since ",
            agent.pid()
        )),
        "{text}"
    );

    // A second agent on the same state folder (on another port) is
    // refused at start, and says which agent holds the journal.
    let second_config = dir.path().join("second.toml");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    let elsewhere = format!("127.0.0.1:{}", common::free_port());
    std::fs::write(
        &second_config,
        text.replace(&listen.to_string(), &elsewhere),
    )
    .expect("the second configuration");
    let second = common::spawn_agent(
        &emu.endpoint,
        &second_config,
        &[],
        dir.path(),
        "second-agent.log",
        &[],
    );
    wait_until(
        Duration::from_secs(60),
        "a second agent on the same state folder to be refused",
        || second.exited().is_some(),
        || second.log_tail(40),
    );
    let code = second.exited().expect("it ended");
    let refusal = second.log();
    assert!(!code.success(), "{refusal}");
    assert!(
        refusal.contains(&format!(
            "is locked by another process (process {} on host {host}, since ",
            agent.pid()
        )) && refusal.contains("is another agent running with the same state_dir"),
        "{refusal}"
    );
    agent.assert_running(diag);

    // Over HTTP, the same JSON. An evaluation may land between two reads:
    // read until the command's answer sits between two equal HTTP answers.
    let explain_path = format!("/explain?application={APP}&last=50");
    wait_until(
        Duration::from_secs(30),
        "GET /explain and GET /status to answer what the commands print",
        || {
            let mut args = explain_args.to_vec();
            args.push("--json");
            let http_before = get(listen, &explain_path);
            let command = json(&flinkscale(dir.path(), &args));
            let status_http = get(listen, "/status").map(timeless);
            let status_command = timeless(json(&flinkscale(
                dir.path(),
                &["status", "--config", &config_arg, "--json"],
            )));
            let http_after = get(listen, &explain_path);
            http_before.as_ref() == Some(&command)
                && http_after.as_ref() == Some(&command)
                && status_http.as_ref() == Some(&status_command)
        },
        diag,
    );
    let unknown = http(listen, "GET", "/explain?application=nope", &[], b"").expect("an answer");
    assert_eq!(unknown.status, 404);
    assert!(
        String::from_utf8_lossy(&unknown.body).contains(&format!("configured: {APP}")),
        "{}",
        String::from_utf8_lossy(&unknown.body)
    );

    // Stopped, the agent's files still answer.
    agent.stop();
    let after = json(&flinkscale(
        dir.path(),
        &["status", "--config", &config_arg, "--json"],
    ));
    assert_eq!(after["applications"][0]["kpu"], 4, "{after}");
    assert_eq!(
        after["applications"][0]["journal_lock"]["held"], false,
        "{after}"
    );
    let after = json(&flinkscale(dir.path(), &{
        let mut args = explain_args.to_vec();
        args.push("--json");
        args
    }));
    assert!(accepted(&after).is_some(), "{after}");
}

/// `flinkscale once` records its evaluation too, so that `explain` answers
/// for a one-off run; `once --dry-run` only prints and leaves `state_dir`
/// alone.
#[test]
fn once_records_its_evaluation_and_a_dry_once_leaves_state_dir_alone() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Ten wall minutes of history at the scenario's low load: the alarms
    // have datapoints at once, and 2 KPU (the floor) hold.
    let emu = Emulator::start(
        &scenario("e2e-scale.toml"),
        SPEED,
        &["--history-secs", "600"],
        dir.path(),
    );
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let config = config(dir.path(), listen);
    let config_arg = config.to_string_lossy().into_owned();
    let once = |extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["once", "--config", &config_arg])
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn");
        common::aws_env(&mut command, &emu.endpoint, dir.path());
        let output = command.output().expect("`flinkscale once` runs");
        assert!(
            output.status.success(),
            "once {extra:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };

    once(&["--dry-run"]);
    assert!(
        !dir.path().join("state").exists(),
        "a dry `once` wrote into state_dir"
    );

    once(&[]);
    let explain = || {
        json(&flinkscale(
            dir.path(),
            &[
                "explain",
                "--config",
                &config_arg,
                "--application",
                APP,
                "--json",
            ],
        ))
    };
    let explanation = explain();
    let entries = explanation["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{explanation}");
    let entry = &entries[0];
    assert_eq!(entry["kpu"], 2, "{entry}");
    assert_eq!(entry["outcome"]["kind"], "held", "{entry}");
    assert!(entry["metrics"][0]["value"].is_f64(), "{entry}");
    assert!(
        entry["alarms"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["state"] != "INSUFFICIENT_DATA")),
        "{entry}"
    );
    let status = json(&flinkscale(
        dir.path(),
        &["status", "--config", &config_arg, "--json"],
    ));
    assert_eq!(status["applications"][0]["last"], *entry, "{status}");

    // A scale-out alarm that always fires and a long grace period: the
    // first `once` sends an update, the second must wait for it and says
    // so; its entry is "not sent", not an update left without an answer.
    let text = std::fs::read_to_string(&config)
        .expect("the configuration")
        .replace("threshold = 75.0", "threshold = -1.0")
        .replace("grace_period_secs = 5", "grace_period_secs = 3600");
    std::fs::write(&config, text).expect("the configuration can be written");
    once(&[]);
    once(&[]);
    let explanation = explain();
    let entries = explanation["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{explanation}");
    assert_eq!(entries[1]["outcome"]["kind"], "accepted", "{explanation}");
    assert_eq!(entries[2]["decision"]["scale_to_kpu"], 4, "{explanation}");
    assert_eq!(entries[2]["outcome"]["kind"], "not_sent", "{explanation}");
    let reason = entries[2]["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the update to 4 KPU is still in progress")
            || reason.contains("the grace period after the update to 4 KPU has"),
        "{explanation}"
    );
    let text = flinkscale(dir.path(), &["status", "--config", &config_arg]);
    assert!(text.contains("not sent: "), "{text}");
    assert!(!text.contains("no answer"), "{text}");
}

/// An operator beside the systemd unit runs `status` from a shell that
/// lacks the unit's `STATE_DIRECTORY`: it reads `state` beside the
/// configuration, which does not exist, and says so on stderr instead of
/// only "no decision recorded yet" (the drill's finding); stdout stays the
/// same, and with the agent's `STATE_DIRECTORY` there is nothing to note.
/// `dir/agent.toml`: [`APP`] held by the `hold` policy, nothing else.
fn hold_config(dir: &Path) -> PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("[[application]]\nname = \"{APP}\"\n[application.policy]\nplugin = \"hold\"\n"),
    )
    .expect("the configuration can be written");
    config
}

#[test]
fn status_and_explain_say_when_state_dir_does_not_exist() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = hold_config(dir.path());
    let config_arg = config.to_string_lossy().into_owned();
    let run = |args: &[&str], state_directory: Option<&Path>| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .args(["--config", &config_arg])
            .current_dir(dir.path())
            .env_remove("STATE_DIRECTORY");
        if let Some(state) = state_directory {
            command.env("STATE_DIRECTORY", state);
        }
        let output = command.output().expect("flinkscale runs");
        assert!(output.status.success(), "{args:?}: {output:?}");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let absent = dir.path().join("state");
    for args in [&["status"][..], &["explain", "--application", APP]] {
        let (stdout, stderr) = run(args, None);
        assert!(
            stdout.contains("no decision recorded yet"),
            "{args:?}: {stdout}"
        );
        assert!(
            stderr.contains(&format!(
                "note: state_dir {} does not exist",
                absent.display()
            )) && stderr.contains("STATE_DIRECTORY"),
            "{args:?}: {stderr}"
        );
    }
    let kept = dir.path().join("var-lib-flinkscale");
    std::fs::create_dir(&kept).expect("the state folder can be made");
    let (_, stderr) = run(&["status"], Some(&kept));
    assert!(!stderr.contains("note:"), "{stderr}");
    assert!(!absent.exists(), "status and explain create nothing");
}

/// A FIFO planted in the state folder (as the history, the journal, the
/// lock) makes `status` and `explain` say what is unreadable, at once:
/// they hung, waiting for a writer that never came, and `status` said
/// "the history is empty" for a history it could not read.
#[test]
fn status_and_explain_refuse_a_fifo_in_the_state_folder_at_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = hold_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("history")).expect("the folders can be made");
    for fifo in [
        state.join("history").join(format!("{APP}.jsonl")),
        state.join(format!("{APP}.json")),
    ] {
        let made = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
    }
    let config_arg = config.to_string_lossy().into_owned();
    // Bounded: the old code never returned. Its status code and what it
    // said, stdout then stderr.
    let run = |args: &[&str]| {
        let output = Command::new("timeout")
            .args(["20", BIN])
            .args(args)
            .args(["--config", &config_arg])
            .current_dir(dir.path())
            .env_remove("STATE_DIRECTORY")
            .output()
            .expect("flinkscale runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), said)
    };
    for args in [&["status"][..], &["explain", "--application", APP]] {
        let (code, said) = run(args);
        assert_ne!(code, Some(124), "{args:?} hung: {said}");
        assert!(said.contains("not a regular file"), "{args:?}: {said}");
        assert!(!said.contains("the history is empty"), "{args:?}: {said}");
    }
    let (_, said) = run(&["status"]);
    assert!(said.contains("  history:    unreadable: "), "{said}");
    assert!(said.contains("  journal:    unreadable: "), "{said}");
}

/// A journal of `application` in `state_dir` whose update to 4 KPU (from
/// 2, quoting version 1) was accepted and is being followed, as the agent
/// writes it.
fn updating_journal(state_dir: &Path, application: &str) {
    std::fs::create_dir_all(state_dir).expect("the state folder can be made");
    let journal = serde_json::json!({
        "format": 1,
        "application": application,
        "seq": 3,
        "written_ms": 1_700_000_000_000_i64,
        "record": {"phase": {
            "kind": "updating",
            "update": {"target_kpu": 4, "from_kpu": 2, "quoted_version_id": 1,
                       "reason": "cpu above 75 %", "started_ms": 1_700_000_000_000_i64},
            "observed_ms": 1_700_000_001_000_i64,
        }},
    });
    std::fs::write(
        state_dir.join(format!("{application}.json")),
        journal.to_string(),
    )
    .expect("the journal can be written");
}

/// The operator edits the configuration badly and sends SIGHUP; the
/// running agent refuses the file and keeps scaling with its last valid
/// one. `status` and `explain` then still report from the journal (the
/// state_dir as the file says when that part reads, else the default),
/// say the configuration's error, located, on stderr, and exit 0: they
/// reported; `validate` is the command that fails on the file.
#[test]
fn status_and_explain_report_from_the_journal_when_the_configuration_is_invalid() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("agent.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(args)
            .args(["--config", &config_arg])
            .current_dir(dir.path())
            .env_remove("STATE_DIRECTORY")
            .output()
            .expect("flinkscale runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // A field of the wrong type: the TOML reads, the configuration does not.
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"kept\"\n\n[[application]]\nname = \"{APP}\"\n\
             max_kpu = \"eight\"\n[application.policy]\nplugin = \"hold\"\n"
        ),
    )
    .expect("the configuration can be written");
    updating_journal(&dir.path().join("kept"), APP);
    let (code, stdout, stderr) = run(&["status"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("application {APP:?}")) && stdout.contains("updating (to 4 KPU)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("max_kpu") && stderr.contains(":6"),
        "the error, located: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{} is invalid", config.display()))
            && stderr.contains(&dir.path().join("kept").display().to_string()),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&["status", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json(&stdout)["applications"][0]["phase"], "updating");
    let (code, stdout, stderr) = run(&["explain", "--application", APP]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("no decision recorded yet"), "{stdout}");
    assert!(stderr.contains("max_kpu"), "{stderr}");

    // A name that is no application's is no path to read: a journal
    // outside the state folder is not reported as its.
    updating_journal(dir.path(), "secret");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"kept\"\n\n[[application]]\nname = \"../secret\"\n\
             [application.policy]\nplugin = \"hold\"\n\n[[application]]\nname = \"{APP}\"\n\
             max_kpu = \"eight\"\n[application.policy]\nplugin = \"hold\"\n"
        ),
    )
    .expect("the configuration can be written");
    let (code, stdout, stderr) = run(&["status"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("secret"), "{stdout}");
    assert!(stdout.contains(&format!("application {APP:?}")), "{stdout}");

    // Not TOML at all: the default state_dir (`state` beside the file),
    // and the applications that have a journal there.
    std::fs::write(&config, "[agent\nstate_dir = \"kept\"\n").expect("written");
    updating_journal(&dir.path().join("state"), "other-app");
    let (code, stdout, stderr) = run(&["status"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("application \"other-app\"") && stdout.contains("updating (to 4 KPU)"),
        "{stdout}"
    );
    assert!(stderr.contains(":1"), "the syntax error, located: {stderr}");
    assert!(stderr.contains("the default state_dir"), "{stderr}");
    assert_eq!(code, Some(0));
}

/// An agent, an emulator and their configuration, the agent following its
/// rescale of [`APP`] to 4 KPU.
struct Following {
    emu: Emulator,
    agent: Running,
    config: PathBuf,
    listen: SocketAddr,
    dir: PathBuf,
}

impl Following {
    /// `flinkscale status` (`--json` when `json`), as the operator runs it.
    fn status(&self, json: bool) -> String {
        let config = self.config.to_string_lossy().into_owned();
        let mut args = vec!["status", "--config", &config];
        if json {
            args.push("--json");
        }
        flinkscale(&self.dir, &args)
    }

    /// The emulator's calls and the agent's last words, for a failure.
    fn diag(&self) -> String {
        format!("{}\n{}", self.emu.call_summary(), self.agent.log_tail(60))
    }
}

/// Starts the emulator and the agent in `dir`, with an emulated update
/// that lasts 5 wall minutes (so that what a test does lands during it)
/// and a load 2 KPU cannot carry, and waits until `status` reports the
/// rescale to 4 KPU being followed.
fn following_a_slow_update(dir: &Path) -> Following {
    let fixture = std::fs::read_to_string(scenario("e2e-scale.toml")).expect("the scenario");
    std::fs::copy(scenario("e2e-constant.csv"), dir.join("e2e-constant.csv"))
        .expect("the trace can be copied");
    let slow = dir.join("slow-update.toml");
    std::fs::write(
        &slow,
        fixture.replace("update_secs = 60", "update_secs = 6000"),
    )
    .expect("the scenario can be written");
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("an address");
    let config = config(dir, listen);
    let emu = Emulator::start(&slow, SPEED, &[], dir);
    emu.set_load(APP, 3.0);
    let agent: Running = start_agent(&emu, &config, &[], dir);
    let following = Following {
        emu,
        agent,
        config,
        listen,
        dir: dir.to_path_buf(),
    };
    let diag = || following.diag();
    wait_until(
        Duration::from_secs(120),
        "status to report the rescale to 4 KPU being followed",
        || {
            following.agent.assert_running(diag);
            json(&following.status(true))["applications"][0]["phase"] == "updating"
        },
        diag,
    );
    following
}

/// The operator pauses an application (`mode = "paused"`, SIGHUP) while
/// its rescale is being followed: its controller stops, and its journal
/// stays at `updating`, which no one follows any more. `status` says that
/// it is paused, and where the journal was (the controller resumes from
/// there once the mode changes), instead of `updating` as if the agent
/// were following it; `GET /status` says the same. The emulated update
/// lasts 5 wall minutes, so that the pause lands during it.
#[test]
fn status_of_an_application_paused_during_an_update_says_it_is_paused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let following = following_a_slow_update(dir.path());
    let Following {
        emu,
        agent,
        config,
        listen,
        ..
    } = &following;
    let status_json = || json(&following.status(true));
    let diag = || following.diag();

    assert_eq!(emu.app(APP)["status"], "UPDATING", "{}", diag());

    let text = std::fs::read_to_string(config).expect("the configuration");
    let paused = text.replace(
        &format!("name = \"{APP}\"\n"),
        &format!("name = \"{APP}\"\nmode = \"paused\"\n"),
    );
    assert_ne!(paused, text, "the application's table is found");
    common::replace(config, paused.as_bytes());
    common::hangup(agent);
    wait_until(
        Duration::from_secs(30),
        "the agent to pause the application",
        || agent.log().contains("Application paused"),
        diag,
    );

    let text = following.status(false);
    assert!(
        text.contains(
            "  phase:      paused (mode = \"paused\": not evaluated, nothing followed); its journal was at updating (to 4 KPU) when it was paused, and is resumed from there once the mode changes\n"
        ),
        "{text}"
    );
    let status = status_json();
    let app = &status["applications"][0];
    assert_eq!(app["paused"], true, "{status}");
    assert_eq!(app["phase"], "updating", "the journal's phase: {status}");
    let http = get(*listen, "/status").expect("GET /status answers");
    assert_eq!(timeless(http), timeless(status));
    // HEAD answers as GET does, without the body.
    for path in ["/status".to_owned(), format!("/explain?application={APP}")] {
        let answer = http_head(*listen, &path);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "HEAD {path}: {answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\n"),
            "HEAD {path} has a body: {answer}"
        );
    }
    agent.stop();
}

/// The whole answer to `HEAD path`, as text (its head, and a body if it
/// wrongly has one), read until the server closes the connection.
fn http_head(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the agent listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    answer
}

/// The agent dies (`kill -9`) while its rescale is being followed: its
/// journal stays at `updating`, which no one follows any more. `status`
/// says so (no process holds the journal's lock: the phase is where the
/// last agent left it), where it said which process held it before; a
/// restarted agent takes the lock again, `status` names it, and it
/// resumes the rescale without sending another update. The emulated
/// update lasts 5 wall minutes, so that the kill lands during it.
#[test]
fn status_of_an_agent_killed_mid_update_says_no_agent_follows_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let following = following_a_slow_update(dir.path());
    let Following {
        emu, agent, config, ..
    } = &following;
    let status_json = || json(&following.status(true));
    let status_text = || following.status(false);

    assert_eq!(emu.app(APP)["status"], "UPDATING", "{}", following.diag());
    let status = status_json();
    assert_eq!(
        status["applications"][0]["journal_lock"]["pid"],
        agent.pid(),
        "{status}"
    );

    let killed = agent.pid();
    agent.kill9();
    let text = status_text();
    assert!(
        text.contains("  phase:      updating (to 4 KPU)\n"),
        "{text}"
    );
    // The lock went with the process; its file still names the agent
    // that left the update in flight.
    assert!(
        text.contains(
            "  agent:      not acting (no process holds ",
        ) && text.contains(&format!(
            ": no agent runs, or it runs in dry run; the last to hold it was process {killed} on host "
        )) && text.contains(
            "); the phase is where the last agent left it: nothing follows it until an agent starts, which resumes from there\n"
        ),
        "{text}"
    );
    let status = status_json();
    assert_eq!(status["applications"][0]["phase"], "updating", "{status}");
    assert_eq!(
        status["applications"][0]["journal_lock"]["held"], false,
        "{status}"
    );

    let again = common::spawn_agent(&emu.endpoint, config, &[], dir.path(), "again.log", &[]);
    let diag = || format!("{}\n{}", emu.call_summary(), again.log_tail(60));
    wait_until(
        Duration::from_secs(60),
        "status to name the restarted agent as the journal's holder",
        || {
            again.assert_running(diag);
            status_json()["applications"][0]["journal_lock"]["pid"] == again.pid()
        },
        diag,
    );
    let text = status_text();
    assert!(
        text.contains(&format!(
            "  agent:      running (process {} on host ",
            again.pid()
        )),
        "{text}"
    );
    assert_eq!(
        common::calls_of(&emu.calls(), "UpdateApplication", Some(APP)).len(),
        1,
        "the restarted agent follows the update it finds, sending none: {}",
        diag()
    );
    again.stop();
}

/// A configuration file that is not there (a mistyped path) is no
/// invalid configuration to read around: `status` and `explain` say so
/// and exit 78 (EX_CONFIG), reporting nothing from a folder guessed
/// beside it.
#[test]
fn status_and_explain_of_a_missing_configuration_file_exit_78() {
    let dir = tempfile::tempdir().expect("a temp dir");
    updating_journal(&dir.path().join("state"), APP);
    for args in [&["status"][..], &["explain", "--application", APP]] {
        let output = Command::new(BIN)
            .args(args)
            .args(["--config", "no-such.toml"])
            .current_dir(dir.path())
            .env_remove("STATE_DIRECTORY")
            .output()
            .expect("flinkscale runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
        assert!(stderr.contains("no-such.toml"), "{args:?}: {stderr}");
    }
}

/// `explain` of an application the configuration does not have is a
/// wrong value (exit 78, naming the configured ones), not the world
/// failing (1).
#[test]
fn explain_of_an_unknown_application_exits_78_naming_the_configured_ones() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = hold_config(dir.path());
    let output = Command::new(BIN)
        .args(["explain", "--application", "nosuch", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("STATE_DIRECTORY")
        .output()
        .expect("flinkscale runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(
        stderr.contains(&format!(
            "error: no application \"nosuch\" in the configuration; configured: {APP}"
        )),
        "{stderr}"
    );
}
