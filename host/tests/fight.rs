//! Two writers fighting over one application, end to end: two real
//! `flinkscale run` agents with state folders of their own against
//! `flinkscale emulate` (scenario `tests/fixtures/scenarios/reload.toml`),
//! one holding the application at 4 KPU and the other at 2 (`min_kpu` =
//! `max_kpu`). Before the stand-down they flapped it for as long as they
//! ran; now the first agent to see its rescales undone twice stands down,
//! says so (ERROR log, `/readyz`, `flinkscale_stood_down`), and sends
//! nothing more, leaving the other as the only writer; a SIGHUP lifts it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use common::config::{AgentConfig, Application};
use common::{Emulator, Running, TagProxy, log_events, scenario, spawn_agent, wait_until};

/// The emulator's model runs 20x faster than the wall clock.
const SPEED: f64 = 20.0;

/// How long any wait of this test may take: generous, for a loaded 2-core
/// CI machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// The ERROR an agent logs when it stands down.
const STOOD_DOWN: &str = "Stood down: another writer keeps undoing this agent's rescales, so it sends no update for the application. It still evaluates and records what it would do. Stop the other writer (run one agent per application), then resume it: flinkscale reload --resume APPLICATION.";

const APP: &str = "keep";

/// An agent's configuration in `home`: `keep` held at `kpu` by the
/// built-in `hold` policy and the bounds, evaluated every second, serving
/// `/readyz` and `/metrics` on `listen`.
fn config(home: &Path, kpu: u32, listen: SocketAddr) -> PathBuf {
    // No plugin file: `hold` is built in.
    std::fs::create_dir_all(home.join("plugins")).unwrap();
    // A resume request left by a reload that never reached an agent: the
    // agent drops it at start (a later reload made for another reason
    // would otherwise end a stand-down nobody asked to end then).
    let state = home.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(state.join(format!("{APP}.resume")), b"").unwrap();
    AgentConfig::new()
        .agent("plugin_dir", "plugins")
        .agent("state_dir", "state")
        .agent("listen", listen.to_string())
        .application(
            Application::cpu(APP, 1)
                .set("min_kpu", kpu)
                .set("max_kpu", kpu)
                .policy("plugin = \"hold\"\n"),
        )
        .write(&home.join("agent.toml"))
}

fn get(listen: SocketAddr, path: &str) -> (u16, String) {
    let response = common::http(listen, "GET", path, &[], b"").expect("the agent answers");
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// The accepted UpdateApplication calls of `keep`, as (agent tag, seq).
fn accepted(emulator: &Emulator) -> Vec<(String, u64)> {
    emulator
        .calls()
        .iter()
        .filter(|c| {
            c["operation"] == "UpdateApplication" && c["application"] == APP && c["outcome"] == "ok"
        })
        .map(|c| {
            (
                c["params"]["_agent"].as_str().unwrap_or("?").to_owned(),
                c["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn two_agents_that_disagree_end_with_one_standing_down_and_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&scenario("reload.toml"), SPEED, &[], dir.path());
    let wants = [("a", 4u32), ("b", 2u32)];
    let proxies: Vec<TagProxy> = wants
        .iter()
        .map(|(tag, _)| TagProxy::start(emulator.addr, tag))
        .collect();
    let listens: Vec<SocketAddr> = wants
        .iter()
        .map(|_| {
            format!("127.0.0.1:{}", common::free_port())
                .parse()
                .unwrap()
        })
        .collect();
    let agents: Vec<Running> = wants
        .iter()
        .zip(&proxies)
        .zip(&listens)
        .map(|(((tag, kpu), proxy), listen)| {
            let home = dir.path().join(tag);
            let config = config(&home, *kpu, *listen);
            spawn_agent(&proxy.endpoint, &config, &[], &home, "agent.log", &[])
        })
        .collect();
    let diagnose = || {
        format!(
            "{}\n--- a ---\n{}\n--- b ---\n{}",
            emulator.call_summary(),
            agents[0].log_tail(40),
            agents[1].log_tail(40)
        )
    };
    let stood = || -> Vec<usize> {
        (0..2)
            .filter(|i| !log_events(&agents[*i].log(), STOOD_DOWN).is_empty())
            .collect()
    };
    wait_until(
        PATIENCE,
        "an agent to stand down",
        || !stood().is_empty(),
        diagnose,
    );
    let down = stood()[0];
    for (agent, (tag, _)) in agents.iter().zip(&wants) {
        let dropped = log_events(
            &agent.log(),
            "Resume requests found at start, dropped: a restart keeps every stand-down; ask again with `flinkscale reload --resume`.",
        );
        assert_eq!(dropped.len(), 1, "{tag}\n{}", diagnose());
        assert_eq!(dropped[0]["applications"], APP);
        assert!(
            !dir.path()
                .join(tag)
                .join("state")
                .join(format!("{APP}.resume"))
                .exists()
        );
    }
    let up = 1 - down;
    let (down_tag, _) = wants[down];
    let (up_tag, up_kpu) = wants[up];

    // The ERROR names the application and each override.
    let said = &log_events(&agents[down].log(), STOOD_DOWN)[0];
    assert_eq!(said["level"], "ERROR", "{said}");
    assert_eq!(said["application"], APP, "{said}");
    let updates = said["updates"].as_str().unwrap_or_default().to_owned();
    assert_eq!(updates.matches("version ").count(), 2, "{updates}");
    // `/readyz` names it; the gauge is 1.
    let (status, body) = get(listens[down], "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("not ready: application \"{APP}\": stood down ")),
        "{body}"
    );
    let (_, metrics) = get(listens[down], "/metrics");
    assert!(
        metrics.contains(&format!(
            "flinkscale_stood_down{{application=\"{APP}\"}} 1\n"
        )),
        "{metrics}"
    );

    // The other agent brings the application to its size and stays the
    // only writer: nothing more from the one that stood down.
    let sent_before = accepted(&emulator)
        .iter()
        .filter(|(tag, _)| tag == down_tag)
        .count();
    wait_until(
        PATIENCE,
        "the remaining agent's size",
        || {
            let app = emulator.app(APP);
            app["kpu"] == up_kpu && app["status"] == "RUNNING"
        },
        diagnose,
    );
    let settled = accepted(&emulator).len();
    std::thread::sleep(Duration::from_secs(10));
    let all = accepted(&emulator);
    assert_eq!(
        all.iter().filter(|(tag, _)| tag == down_tag).count(),
        sent_before,
        "the agent that stood down sent an update\n{}",
        diagnose()
    );
    assert_eq!(all.len(), settled, "the fight went on\n{}", diagnose());
    assert_eq!(emulator.app(APP)["kpu"], up_kpu);
    assert_eq!(stood(), [down], "both stood down\n{}", diagnose());
    eprintln!(
        "two agents that disagree: {} accepted updates ({:?}), agent {down_tag} stood down, {up_tag} keeps {up_kpu} KPU",
        all.len(),
        all.iter().map(|(tag, _)| tag.as_str()).collect::<Vec<_>>()
    );

    // A reload that does not ask to resume leaves the stand-down (before
    // stop 57 it ended it: a reload made for another application restarted
    // the fight).
    common::hangup(&agents[down]);
    wait_until(
        PATIENCE,
        "the reload",
        || !log_events(&agents[down].log(), "Configuration reloaded.").is_empty(),
        diagnose,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        log_events(
            &agents[down].log(),
            "Stand-down lifted; updates are sent again."
        )
        .is_empty(),
        "a reload that did not ask lifted it\n{}",
        diagnose()
    );
    // `flinkscale reload --resume` asks, and lifts it.
    let home = dir.path().join(down_tag);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["reload", "--resume", APP, "--config"])
        .arg(home.join("agent.toml"))
        .current_dir(&home)
        .output()
        .expect("flinkscale reload runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        PATIENCE,
        "the stand-down to be lifted",
        || {
            !log_events(
                &agents[down].log(),
                "Stand-down lifted; updates are sent again.",
            )
            .is_empty()
        },
        diagnose,
    );
    let lifted: Vec<Value> = log_events(
        &agents[down].log(),
        "Stand-down lifted; updates are sent again.",
    );
    assert_eq!(lifted[0]["application"], APP);
    assert!(
        !home.join("state").join(format!("{APP}.resume")).exists(),
        "the request is taken"
    );
    for agent in &agents {
        agent.stop();
    }
}
