//! The deployment files in `deploy/`, checked with the tools that will run
//! them: the systemd unit with `systemd-analyze verify` and `systemd-analyze
//! security`, and the container image built by `deploy/container/build.sh`
//! and run with podman against `flinkscale emulate` on loopback.
//!
//! The ECS task definition and the Kubernetes manifest are checked by
//! `tests/peer/test_deploy.py` (Python parses their JSON and YAML).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Emulator, http, scenario, wait_until, workspace};

/// Runs a command to completion and returns its output.
fn output(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unit with its binary path pointed at the binary under test:
/// `systemd-analyze verify` checks that every `Exec*=` program exists.
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(workspace().join("deploy/systemd/flinkscale.service"))
        .expect("deploy/systemd/flinkscale.service");
    let path = dir.join("flinkscale.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/flinkscale", BIN)).expect("unit copy");
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_for_test(dir.path());
    let text_of_unit = std::fs::read_to_string(&unit).expect("unit");
    for line in [
        "DynamicUser=yes",
        "StateDirectory=flinkscale",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestartPreventExitStatus=78",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            text_of_unit.lines().any(|l| l == line),
            "the unit has `{line}`"
        );
    }
    // `run` refuses a bad file itself (exit 78, every error located);
    // RestartPreventExitStatus applies to the main process only, so a
    // validating ExecStartPre that fails would be restarted for good.
    assert!(
        !text_of_unit.lines().any(|l| l.starts_with("ExecStartPre=")),
        "a failing ExecStartPre escapes RestartPreventExitStatus=78: a restart loop"
    );

    // `verify` exits 0 on an unknown value and only warns; a clean unit
    // has nothing to say at all.
    let verify = output(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}{}",
        verify.status,
        text(&verify.stdout),
        text(&verify.stderr)
    );

    // The exposure score, 0 (locked down) to 10 (unprotected), is checked
    // against 2.0; the same check at 1.0 must fail, or the threshold would
    // not be doing anything.
    let security = |threshold: &str| {
        output(
            Command::new("systemd-analyze")
                .args(["security", "--offline=yes", "--no-pager"])
                .arg(format!("--threshold={threshold}"))
                .arg(&unit),
        )
    };
    let hardened = security("20");
    let report = text(&hardened.stdout);
    assert!(
        hardened.status.success(),
        "exposure above 2.0:\n{report}{}",
        text(&hardened.stderr)
    );
    assert!(
        report.contains("Overall exposure level for flinkscale.service: 1."),
        "{report}"
    );
    assert!(
        !security("10").status.success(),
        "an exposure of 1.x passes a threshold of 1.0: the check is not checking"
    );
}

#[test]
fn the_binary_exits_78_on_a_configuration_error_so_systemd_does_not_restart_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[agent]\nbogus = 1\n").expect("config");
    for args in [
        vec!["validate".to_owned(), config.display().to_string()],
        vec![
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ],
    ] {
        let out = output(Command::new(BIN).args(&args).current_dir(dir.path()));
        assert_eq!(
            out.status.code(),
            Some(78),
            "flinkscale {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("config.toml:2:1: agent.bogus"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// podman, set up for the machines this runs on; fails the test with what
/// to install when it is missing (scripts/test.sh installs it).
struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn new() -> Self {
        let found = Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "podman is not installed: `apt-get install podman runc` (scripts/test.sh does)"
        );
        Podman {
            conf: workspace().join("tests/fixtures/podman/containers.conf"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", &self.conf);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        output(self.command().args(args))
    }
}

/// Removes a container, its volume and its image however the test ends.
struct Cleanup<'a> {
    podman: &'a Podman,
    container: String,
    image: String,
    volume: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .run(&["rm", "--force", "--time", "2", &self.container]);
        let _ = self.podman.run(&["volume", "rm", "--force", &self.volume]);
        let _ = self.podman.run(&["rmi", "--force", &self.image]);
    }
}

#[test]
fn the_container_image_runs_the_agent_as_an_unprivileged_user_against_the_emulator() {
    /// The container's host name, which the agent writes into its lock
    /// file.
    const AGENT_HOST: &str = "flinkscale-test-agent";
    let podman = Podman::new();
    let id = std::process::id();
    let image = format!("localhost/flinkscale-test:{id}");
    let container = format!("flinkscale-test-{id}");
    let volume = format!("flinkscale-test-state-{id}");
    let _cleanup = Cleanup {
        podman: &podman,
        container: container.clone(),
        image: image.clone(),
        volume: volume.clone(),
    };

    let build = output(
        Command::new(workspace().join("deploy/container/build.sh"))
            .arg(BIN)
            .arg(&image)
            .env("CONTAINERS_CONF", &podman.conf),
    );
    assert!(
        build.status.success(),
        "deploy/container/build.sh: {}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let user = podman.run(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(
        text(&user.stdout).trim(),
        "65532:65532",
        "the image is not root"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let emulator = Emulator::start(&scenario("e2e-scale.toml"), 20.0, &[], dir.path());
    let port = common::free_port();
    let config = dir.path().join("config.toml");
    let cpu = common::config::cpu_metric("e2e-app");
    let config_text = format!(
        r#"[agent]
listen = "127.0.0.1:{port}"

[[application]]
name = "e2e-app"
min_kpu = 2
max_kpu = 7
update_poll_secs = 1
grace_period_secs = 600
evaluation_interval_secs = 2

[[application.metric]]
{cpu}
[[application.alarm]]
id = "scale-out"
metric = "cpu"
comparison = "GreaterThanThreshold"
threshold = 1.0
evaluation_periods = 1
datapoints_to_alarm = 1

[[application.alarm]]
id = "scale-in"
metric = "cpu"
comparison = "LessThanThreshold"
threshold = 0.5
evaluation_periods = 1
datapoints_to_alarm = 1

[application.policy]
plugin = "step"
params = {{ scale_out_alarm = "scale-out", scale_in_alarm = "scale-in", operation = "multiply", scale_out_factor = 2 }}
"#
    );
    std::fs::write(&config, &config_text).expect("config");
    // The documented mount points: the state directory is a named volume,
    // which starts as a copy of the image's directory (its owner and mode
    // too: nobody prepares it, as a user would not).
    let config_mount = format!("{}:/etc/flinkscale/config.toml:ro", config.display());
    let state_mount = format!("{volume}:/var/lib/flinkscale");

    let validate = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        &config_mount,
        &image,
        "validate",
        "/etc/flinkscale/config.toml",
    ]);
    assert!(
        validate.status.success(),
        "validate in the image: {}{}",
        text(&validate.stdout),
        text(&validate.stderr)
    );

    // The image's own command (`run --config /etc/flinkscale/config.toml`),
    // on the host's loopback, where the emulator listens.
    let endpoint = format!("AWS_ENDPOINT_URL={}", emulator.endpoint);
    let started = podman.run(&[
        "run",
        "--detach",
        "--name",
        &container,
        "--network",
        "host",
        "--hostname",
        AGENT_HOST,
        "--volume",
        &config_mount,
        "--volume",
        &state_mount,
        "--env",
        &endpoint,
        "--env",
        "AWS_REGION=us-east-1",
        "--env",
        "AWS_ACCESS_KEY_ID=AKIDEXAMPLEIMAGE",
        "--env",
        "AWS_SECRET_ACCESS_KEY=image-secret-not-real",
        "--env",
        "AWS_EC2_METADATA_DISABLED=true",
        &image,
    ]);
    assert!(
        started.status.success(),
        "podman run: {}",
        text(&started.stderr)
    );
    let logs = || text(&podman.run(&["logs", &container]).stderr);
    wait_until(
        Duration::from_secs(120),
        "the agent in the image to send UpdateApplication",
        || {
            let running = podman.run(&["inspect", "--format", "{{.State.Running}}", &container]);
            assert_eq!(
                text(&running.stdout).trim(),
                "true",
                "the agent in the image stopped:\n{}",
                logs()
            );
            emulator
                .calls()
                .iter()
                .any(|call| call["operation"] == "UpdateApplication")
        },
        || format!("{}\n{}", emulator.call_summary(), logs()),
    );
    let live =
        http(([127, 0, 0, 1], port).into(), "GET", "/livez", &[], b"").expect("/livez answers");
    assert_eq!(
        live.status,
        200,
        "/livez from the image: {}",
        text(&live.body)
    );

    // The health check the ECS example runs inside the image, which has
    // no curl: the agent's own `probe`.
    let livez = format!("http://127.0.0.1:{port}/livez");
    let probe = podman.run(&[
        "exec",
        &container,
        "/usr/local/bin/flinkscale",
        "probe",
        &livez,
    ]);
    assert!(
        probe.status.success(),
        "probe /livez: {}",
        text(&probe.stderr)
    );
    let closed = format!("http://127.0.0.1:{}/livez", common::free_port());
    let probe = podman.run(&[
        "exec",
        &container,
        "/usr/local/bin/flinkscale",
        "probe",
        &closed,
    ]);
    assert_eq!(probe.status.code(), Some(1), "probe of a closed port fails");
    assert!(
        text(&probe.stderr).contains("cannot connect"),
        "{}",
        text(&probe.stderr)
    );

    // The volume, as the image made it: the agent's user's, mode 0700.
    let mountpoint = podman.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
    let state = PathBuf::from(text(&mountpoint.stdout).trim());
    let made = std::fs::metadata(&state).expect("the volume's folder");
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (made.uid(), made.gid(), made.mode() & 0o777),
            (65532, 65532, 0o700),
            "the image's state directory, copied into the volume"
        );
    }

    // From the host, `status` names the agent in the container: the
    // kernel's table shows it under the host's process id, and the lock
    // file, written from inside, says who it is there: its own process id
    // and the container's host name.
    let host_config = dir.path().join("status.toml");
    let state_dir = toml_edit::Value::from(state.display().to_string());
    std::fs::write(
        &host_config,
        config_text.replacen(
            "[agent]\n",
            &format!("[agent]\nstate_dir = {state_dir}\n"),
            1,
        ),
    )
    .expect("the host's configuration");
    let status = |json: bool| {
        let mut command = Command::new(BIN);
        command.args(["status", "--config"]).arg(&host_config);
        if json {
            command.arg("--json");
        }
        let status = output(&mut command);
        assert!(status.status.success(), "status: {}", text(&status.stderr));
        text(&status.stdout)
    };
    let told: serde_json::Value = serde_json::from_str(&status(true)).expect("status --json");
    let lock = &told["applications"][0]["journal_lock"];
    assert_eq!(lock["held"], true, "{told}");
    assert_eq!(lock["owner"]["host"], AGENT_HOST, "{told}");
    let (outside, inside) = (lock["pid"].as_u64(), lock["owner"]["pid"].as_u64());
    assert!(
        outside.is_some() && inside.is_some() && outside != inside,
        "the host and the container number the agent differently: {told}"
    );
    let inside = inside.unwrap_or_default();
    let words = status(false);
    assert!(
        words.contains(&format!(
            "; the lock file says: process {inside} on host {AGENT_HOST}, since "
        )),
        "{words}"
    );

    // It stops on SIGTERM, and what it wrote belongs to its user.
    let stopped = podman.run(&["stop", "--time", "20", &container]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let code = podman.run(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
    assert_eq!(
        text(&code.stdout).trim(),
        "0",
        "exit code after SIGTERM\n{}",
        logs()
    );
    let written: Vec<_> = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
        .collect();
    assert!(
        !written.is_empty(),
        "the agent wrote its state to the volume"
    );
    for entry in written {
        use std::os::unix::fs::MetadataExt;
        let owner = entry.metadata().expect("metadata").uid();
        assert_eq!(
            owner,
            65532,
            "{} is owned by uid {owner}",
            entry.path().display()
        );
    }
}
