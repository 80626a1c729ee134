//! Stopping the agent: `flinkscale run` against `flinkscale emulate`
//! (scenario `tests/fixtures/scenarios/resilience-cycles.toml`) exits
//! promptly on SIGTERM, with its journal and decision history written;
//! a SIGTERM during its start stops it gracefully too.
//! The budget (500 ms from the signal to the exit, a debug build on a
//! shared machine) is generous against the few milliseconds the agent
//! takes, and tight against anything it might wait for after it logged
//! `Agent stopped.` (a thread joined, the async runtime's drop waiting on
//! a blocking task).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Emulator, calls_of, cpu_step_rules, free_port, scenario, spawn_agent, wait_until};

/// The application of the scenario.
const APP: &str = "res-app";
/// The longest SIGTERM may take to end the process.
const EXIT_BUDGET: Duration = Duration::from_millis(500);

/// One application on the end-to-end tests' `step` rules
/// ([`cpu_step_rules`]), evaluated every second, with the metrics listener
/// on (its server is stopped too).
fn write_config(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "[agent]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[application]]\nname = \"{APP}\"\nmin_kpu = 1\nmax_kpu = 6\n\
         evaluation_interval_secs = 1\nupdate_poll_secs = 1\ngrace_period_secs = 2\n\n{rules}",
        // A port free now (the agent refuses port 0).
        port = free_port(),
        rules = cpu_step_rules(APP),
    );
    let file = dir.join("agent.toml");
    std::fs::write(&file, text).expect("the configuration can be written");
    file
}

/// Waits (up to a minute) until `agent` has logged an evaluation.
fn wait_first_evaluation(agent: &common::Running, diagnose: &dyn Fn() -> String) {
    wait_until(
        Duration::from_secs(60),
        "the agent's first evaluation",
        || {
            agent.assert_running(diagnose);
            agent.log().contains("\"message\":\"Evaluated.\"")
        },
        diagnose,
    );
}

#[test]
fn run_exits_promptly_on_sigterm_with_its_journal_and_history_written() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let emulator = Emulator::start(&scenario("resilience-cycles.toml"), 20.0, &[], dir.path());
    let config = write_config(dir.path());
    let mut timings = Vec::new();
    // Stopped at different points: right after its first evaluations, and
    // later, in the middle of whatever it is doing.
    for (round, settle) in [(0, 0u64), (1, 2_500)].into_iter() {
        let log = format!("agent-{round}.log");
        let agent = spawn_agent(&emulator.endpoint, &config, &[], dir.path(), &log, &[]);
        let diagnose = || agent.log_tail(40);
        wait_first_evaluation(&agent, &diagnose);
        std::thread::sleep(Duration::from_millis(settle));
        let signalled = Instant::now();
        let status = agent.terminate(Duration::from_secs(10));
        let took = signalled.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!(
                "round {round}: no exit within 10 s of SIGTERM\n{}",
                diagnose()
            )
        });
        assert!(status.success(), "round {round}: {status}\n{}", diagnose());
        let text = agent.log();
        assert!(
            text.contains("\"message\":\"Agent stopped.\""),
            "round {round}\n{}",
            diagnose()
        );
        assert!(
            took <= EXIT_BUDGET,
            "round {round}: SIGTERM to exit took {} ms (budget {} ms)\n{}",
            took.as_millis(),
            EXIT_BUDGET.as_millis(),
            diagnose()
        );
        timings.push(took.as_millis());
        // Nothing that must be written was given up for the speed.
        let state = dir.path().join("state");
        let journal = std::fs::read_to_string(state.join(format!("{APP}.json")))
            .expect("the journal is written");
        assert!(
            serde_json::from_str::<serde_json::Value>(&journal).is_ok(),
            "{journal}"
        );
        let history = std::fs::read_to_string(state.join("history").join(format!("{APP}.jsonl")))
            .expect("the decision history is written");
        assert!(
            history
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
            "{history}"
        );
        assert!(history.lines().count() > round, "{history}");
    }
    println!("SIGTERM to exit: {timings:?} ms");
}

/// SIGTERM while the agent waits for a GetMetricData that CloudWatch does
/// not answer (the emulator holds it 30 s) ends the process within the
/// same budget: the read is given up, where the SDK would have held the
/// stop for up to its 35 s deadline (after which systemd or a container
/// runtime sends SIGKILL).
#[test]
fn run_gives_up_a_hanging_read_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let emulator = Emulator::start(&scenario("resilience-cycles.toml"), 20.0, &[], dir.path());
    let config = write_config(dir.path());
    let agent = spawn_agent(
        &emulator.endpoint,
        &config,
        &[],
        dir.path(),
        "agent.log",
        &[],
    );
    let diagnose = || format!("{}\n{}", agent.log_tail(40), emulator.call_summary());
    wait_first_evaluation(&agent, &diagnose);
    emulator.add_fault(&serde_json::json!({
        "operation": "GetMetricData", "error": "Delay", "delay_ms": 30_000, "count": 1000,
    }));
    // The fault's count goes down as a GetMetricData reaches the
    // emulator, which then holds it.
    wait_until(
        Duration::from_secs(60),
        "a GetMetricData held by the emulator",
        || {
            let faults = emulator.control("GET", "/_emulator/faults", None);
            faults["faults"][0]["count"].as_u64() != Some(1000)
        },
        diagnose,
    );
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    let status = agent.terminate(Duration::from_secs(40));
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("no exit within 40 s of SIGTERM\n{}", diagnose()));
    assert!(status.success(), "{status}\n{}", diagnose());
    assert!(
        took <= EXIT_BUDGET,
        "SIGTERM to exit took {} ms (budget {} ms) with a GetMetricData held\n{}",
        took.as_millis(),
        EXIT_BUDGET.as_millis(),
        diagnose()
    );
    assert_whole(&dir.path().join("state"), "after a read given up");
    println!("SIGTERM to exit with a read held: {} ms", took.as_millis());
}

/// The `[agent] listen` address of the configuration [`write_config`]
/// wrote.
fn listen_addr(config: &Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(config).expect("the configuration is readable");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = "))
        .expect("a listen line");
    line.trim_matches('"').parse().expect("an address")
}

/// The journal and the decision history of [`APP`] under `state`, where
/// they exist, are whole: a JSON journal, and JSON lines.
fn assert_whole(state: &Path, context: &str) {
    let journal = state.join(format!("{APP}.json"));
    if let Ok(text) = std::fs::read_to_string(&journal) {
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{context}: {}: {text}",
            journal.display()
        );
    }
    let history = state.join("history").join(format!("{APP}.jsonl"));
    if let Ok(text) = std::fs::read_to_string(&history) {
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
            "{context}: {}: {text}",
            history.display()
        );
    }
}

/// A SIGTERM while `run` starts (here: while the AWS SDK reads its
/// configuration file, a FIFO that no one writes, so that the start is
/// caught in the middle every time, however loaded the machine) ends it
/// with status 0 and "Stopped during start." instead of the signal's
/// default action (status 143); the next `run` on the same state folder
/// starts, evaluates and stops cleanly.
#[test]
fn run_stops_gracefully_on_sigterm_during_its_start() {
    use std::os::unix::fs::OpenOptionsExt;

    let dir = tempfile::tempdir().expect("a temp dir");
    let emulator = Emulator::start(&scenario("resilience-cycles.toml"), 20.0, &[], dir.path());
    let config = write_config(dir.path());
    let fifo = dir.path().join("aws-config-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}: {made}", fifo.display());
    let fifo_text = fifo.to_str().expect("a UTF-8 temp path");
    let agent = spawn_agent(
        &emulator.endpoint,
        &config,
        &[],
        dir.path(),
        "starting.log",
        &[("AWS_CONFIG_FILE", fifo_text)],
    );
    let diagnose = || agent.log_tail(40);
    // Opening a FIFO's writing end without blocking succeeds only once a
    // reader has it open: then the agent is inside its start, blocked.
    let mut writer = None;
    wait_until(
        Duration::from_secs(60),
        "the agent to open its AWS configuration file",
        || {
            agent.assert_running(diagnose);
            writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some()
        },
        diagnose,
    );
    assert!(
        !agent.log().contains("\"message\":\"Agent started.\""),
        "the start was not blocked\n{}",
        diagnose()
    );
    // Served during the start: alive, not ready, and saying why; an
    // orchestrator's liveness probe must not kill a start that compiles.
    let addr = listen_addr(&config);
    let get = |path: &str| {
        let answer = common::http(addr, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path} during the start: {e}\n{}", diagnose()));
        (
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        )
    };
    assert_eq!(get("/livez"), (200, "ok\n".to_owned()));
    let (status, body) = get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("starting: the agent is loading its plugins"),
        "{body}"
    );
    let (status, metrics) = get("/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains(&format!("flinkscale_ready{{application=\"{APP}\"}} 0")),
        "{metrics}"
    );
    let signalled = Instant::now();
    let status = agent.terminate(Duration::from_secs(10));
    let took = signalled.elapsed();
    // Held open until the agent is gone: an end of file would let its
    // start go on.
    drop(writer);
    let status = status.unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", diagnose()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", diagnose());
    let text = agent.log();
    assert!(
        text.contains("\"message\":\"Stopped during start.\""),
        "{}",
        diagnose()
    );
    assert!(
        !text.contains("\"message\":\"Agent started.\""),
        "{}",
        diagnose()
    );
    assert!(
        took <= EXIT_BUDGET,
        "SIGTERM during the start to exit took {} ms (budget {} ms)\n{}",
        took.as_millis(),
        EXIT_BUDGET.as_millis(),
        diagnose()
    );
    let state = dir.path().join("state");
    assert_whole(&state, "after the stop during start");

    // The same state folder, the usual AWS configuration: a clean start.
    let agent = spawn_agent(
        &emulator.endpoint,
        &config,
        &[],
        dir.path(),
        "after.log",
        &[],
    );
    let diagnose = || agent.log_tail(40);
    wait_until(
        Duration::from_secs(60),
        "the next agent's first evaluation",
        || {
            agent.assert_running(diagnose);
            agent.log().contains("\"message\":\"Evaluated.\"")
        },
        diagnose,
    );
    let status = agent
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", diagnose()));
    assert!(status.success(), "{status}\n{}", diagnose());
    assert!(
        agent.log().contains("\"message\":\"Agent stopped.\""),
        "{}",
        diagnose()
    );
    assert!(
        !agent.log().contains("\"level\":\"ERROR\""),
        "{}",
        diagnose()
    );
    assert_whole(&state, "after the next run");
    assert!(
        state.join(format!("{APP}.json")).is_file(),
        "the next run keeps its journal"
    );
    println!("SIGTERM during the start to exit: {} ms", took.as_millis());
}

/// A process killed when dropped (a failed test leaves none behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stderr that does not drain (a log reader that stopped reading the
/// agent's pipe) does not stop the agent: its log lines are written by a
/// thread of their own, which is what waits, and the evaluations go on; a
/// SIGTERM still stops it. The async workers wrote the lines themselves
/// before: once the 64 KiB pipe was full (debug logs: kilobytes per AWS
/// call), the next line blocked a worker, then the other, and the agent
/// stood still, deaf to SIGTERM.
#[test]
fn run_keeps_evaluating_and_stops_when_its_stderr_does_not_drain() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().expect("a temp dir");
    let emulator = Emulator::start(&scenario("resilience-cycles.toml"), 20.0, &[], dir.path());
    let config = write_config(dir.path());
    let mut command = common::agent_command(&config, dir.path());
    common::aws_env(&mut command, &emulator.endpoint, dir.path());
    command
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut agent = Child(command.spawn().expect("the agent starts"));
    // Held open, never read.
    let stderr = agent.0.stderr.take().expect("its stderr");
    let unread = || {
        let mut bytes: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through a valid pointer, on a
        // pipe this test holds open.
        unsafe { libc::ioctl(stderr.as_raw_fd(), libc::FIONREAD, &mut bytes) };
        bytes
    };
    let evaluations = || calls_of(&emulator.calls(), "DescribeApplication", Some(APP)).len();
    let diagnose = || {
        format!(
            "{} bytes unread on the agent's stderr\n{}",
            unread(),
            emulator.call_summary()
        )
    };
    // A pipe holds 64 KiB (unless /proc/sys/fs/pipe-* changed it); past
    // 60 KiB a JSON line of the debug log's (up to 4 KiB written at once)
    // no longer fits.
    wait_until(
        Duration::from_secs(60),
        "the agent's stderr pipe full",
        || unread() >= 60 * 1024,
        diagnose,
    );
    let full = evaluations();
    wait_until(
        Duration::from_secs(30),
        "five more evaluations with the pipe full",
        || evaluations() >= full + 5,
        diagnose,
    );
    // Stopped by SIGTERM all the same; the queued lines it cannot write
    // hold the exit up for a second at most.
    let pid = libc::pid_t::try_from(agent.0.id()).expect("a pid");
    // SAFETY: signals the child this test started and has not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = agent.0.try_wait().expect("the agent can be waited for") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM\n{}",
            diagnose()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", diagnose());
    println!(
        "stderr full at {full} evaluations, more after; stopped {:?} after SIGTERM",
        signalled.elapsed()
    );
}
