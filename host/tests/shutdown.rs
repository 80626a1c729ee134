//! Stopping the agent: `flinkscale run` against `flinkscale emulate`
//! (scenario `tests/fixtures/scenarios/resilience-cycles.toml`) exits
//! promptly on SIGTERM, with its journal and decision history written.
//! The budget (500 ms from the signal to the exit, a debug build on a
//! shared machine) is generous against the few milliseconds the agent
//! takes, and tight against anything it might wait for after it logged
//! `Agent stopped.` (a thread joined, the async runtime's drop waiting on
//! a blocking task).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Emulator, cpu_step_rules, free_port, scenario, spawn_agent, wait_until};

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
        wait_until(
            Duration::from_secs(60),
            "the agent's first evaluation",
            || {
                agent.assert_running(diagnose);
                agent.log().contains("\"message\":\"Evaluated.\"")
            },
            diagnose,
        );
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
