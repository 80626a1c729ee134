//! `flinkscale plugin check | describe | bench | sdk`, run as a user runs them:
//! the real binary, the built-ins embedded in it, the committed contract
//! 0.1.0 fixtures and the `misbehave` fixture plugin. Also keeps the
//! README's generated parameter tables equal to what `describe --markdown`
//! prints for each built-in.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, plugin_dir, workspace};
use flinkscale::plugin::builtin;
use serde_json::Value;

/// The command that regenerates the README's parameter tables.
const REGENERATE: &str = "cargo run -p flinkscale -- plugin describe --readme README.md";

fn flinkscale(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("the binary runs")
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `plugin check ... --json`, parsed, with its exit code.
fn check_json(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["plugin", "check", "--json"];
    all.extend_from_slice(args);
    let output = flinkscale(&all);
    let json = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| {
        panic!(
            "`flinkscale {}` printed no JSON ({e}):\n{}\n{}",
            all.join(" "),
            stdout(&output),
            stderr(&output)
        )
    });
    (code(&output), json, stderr(&output))
}

fn misbehave() -> String {
    plugin_dir()
        .join("misbehave.wasm")
        .to_string_lossy()
        .into_owned()
}

fn v0_1_0_fixture(name: &str) -> PathBuf {
    workspace()
        .join("tests/fixtures/contract-v0.1.0")
        .join(format!("{name}.wasm"))
}

#[test]
fn check_of_the_built_in_step_scales_out_on_the_firing_alarm() {
    let (code, json, err) = check_json(&["step"]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    let step = builtin::find("step").expect("step is built in");
    assert_eq!(json["ok"], true);
    assert_eq!(json["source"], "built-in");
    assert_eq!(json["name"], "step");
    assert_eq!(json["world"], "scaling-policy");
    assert_eq!(json["contract_version"], "0.2.0", "{json}");
    assert!(
        json["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "a contract 0.2.0 plugin has a summary: {json}"
    );
    let exports: Vec<&str> = json["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        exports
            .iter()
            .any(|e| e.starts_with("flinkscale:plugin/policy@")),
        "{exports:?}"
    );
    assert_eq!(json["size_bytes"], step.bytes.len());
    assert_eq!(json["sha256"], builtin::sha256_hex(step.bytes));
    assert!(
        json["compile_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{json}"
    );
    assert_eq!(json["configure"]["accepted"], true);
    // The canned application runs 4 KPU; the canned params point step's
    // scale-out alarm at the one in ALARM: multiply by 2.
    assert_eq!(json["decision"]["action"]["scale_to"], 8, "{json}");
    assert_eq!(json["host_decision"]["action"]["scale_to"], 8, "{json}");
}

/// `check` runs the plugin under the agent's limits, its defaults or the
/// ones given as the configuration's keys are, and says how much memory
/// the instance holds, so that an author can size
/// `plugin_memory_limit_bytes` before deploying.
#[test]
fn check_runs_under_the_limits_given_and_says_the_memory_held() {
    let (exit, json, err) = check_json(&["step"]);
    assert_eq!(exit, Some(0), "{json}\n{err}");
    assert_eq!(json["memory_limit_bytes"], 64 * 1024 * 1024, "{json}");
    assert_eq!(json["timeout_ms"], 100, "{json}");
    let held = json["memory_bytes"].as_u64().expect("memory_bytes");
    assert!((64 * 1024..16 * 1024 * 1024).contains(&held), "{json}");
    let output = flinkscale(&["plugin", "check", "step"]);
    let text = stdout(&output);
    assert!(
        text.lines().any(|l| l.starts_with("memory      ")
            && l.ends_with(
                "MiB held after the call, of the 64.0 MiB limit \
                 (--plugin-memory-limit-bytes, plugin_memory_limit_bytes in [agent])"
            )),
        "{text}"
    );

    // Under a cap smaller than what it holds, it fails as in the agent.
    let cap = (1024 * 1024).max(held / 2).to_string();
    let (exit, json, err) = check_json(&["step", "--plugin-memory-limit-bytes", &cap]);
    assert_eq!(exit, Some(1), "{json}\n{err}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("memory limit of {cap} bytes")),
        "{error}"
    );

    // A deadline given is the one a slow call meets.
    let plugin = misbehave();
    let (exit, json, err) = check_json(&[
        &plugin,
        "--params",
        r#"{"mode": "loop"}"#,
        "--plugin-timeout-ms",
        "250",
    ]);
    assert_eq!(exit, Some(1), "{json}\n{err}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no answer within the 250 ms deadline"),
        "{error}"
    );

    // Out of the configuration's range: refused before anything runs.
    let output = flinkscale(&["plugin", "check", "step", "--plugin-timeout-ms", "60001"]);
    assert_eq!(code(&output), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not in 1..=60000"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_prints_the_same_facts_as_text() {
    let output = flinkscale(&["plugin", "check", "step"]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for key in [
        "plugin ",
        "world ",
        "contract ",
        "exports ",
        "size ",
        "sha256 ",
        "compile ",
        "configure ",
        "decision ",
        "result ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "no `{key}` line:\n{text}"
        );
    }
    assert!(text.contains("decision    scale-to 8"), "{text}");
    assert!(text.contains("result      ok"), "{text}");
}

/// `--target flink` asks as a Flink job's agent would: the plugin's
/// decision, summary and log lines, and the host's clamp, speak
/// parallelism where the default (an MSF application) says KPU; the
/// numbers are the same.
#[test]
fn check_with_target_flink_speaks_parallelism() {
    let flink = flinkscale(&["plugin", "check", "step", "--target", "flink"]);
    assert_eq!(code(&flink), Some(0), "{}", stderr(&flink));
    let text = stdout(&flink);
    assert!(
        text.contains(
            "decision    scale-to parallelism 8: `scale_out` is in ALARM: parallelism 4 x 2 = \
             parallelism 8\n"
        ),
        "{text}"
    );
    assert!(!text.contains("KPU"), "{text}");
    let msf = flinkscale(&["plugin", "check", "step"]);
    let text = stdout(&msf);
    assert!(
        text.contains("decision    scale-to 8: `scale_out` is in ALARM: 4 KPU x 2 = 8 KPU\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "summary     The reference design's step scaling: multiply (or add to) the KPU"
        ),
        "{text}"
    );

    let plugin = misbehave();
    let (exit, json, err) = check_json(&[
        &plugin,
        "--params",
        r#"{"mode": "huge"}"#,
        "--target",
        "flink",
    ]);
    assert_eq!(exit, Some(0), "{json}\n{err}");
    assert_eq!(json["target"], "flink", "{json}");
    assert_eq!(json["decision"]["action"]["scale_to"], 1_000_000, "{json}");
    assert_eq!(json["host_decision"]["action"]["scale_to"], 16, "{json}");
    assert_eq!(
        json["host_decision"]["reason"],
        "huge on purpose; clamped from parallelism 1000000 to 16 (max_parallelism)",
        "{json}"
    );

    // What the plugin logs through the contract's `log`, at the canned
    // application's size.
    let logged = |target: &str| {
        let output = Command::new(BIN)
            .args(["plugin", "check", &plugin, "--params", r#"{"mode": "log"}"#])
            .args(["--target", target])
            .env("RUST_LOG", "info")
            .current_dir(workspace())
            .output()
            .expect("the binary runs");
        assert_eq!(code(&output), Some(0), "{}", stderr(&output));
        stderr(&output)
    };
    let flink = logged("flink");
    assert!(
        flink.contains(
            "flinkscale::plugin::guest: misbehave: info at parallelism 4 of max parallelism 16 \
             plugin=misbehave"
        ),
        "{flink}"
    );
    let msf = logged("msf");
    assert!(
        msf.contains(
            "flinkscale::plugin::guest: misbehave: info at 4 KPU of max KPU 16 plugin=misbehave"
        ),
        "{msf}"
    );

    // A refusal of the params, which the agent's log would show the same.
    let (exit, json, err) = check_json(&[
        &plugin,
        "--params",
        r#"{"mode": "configure-error"}"#,
        "--target",
        "flink",
    ]);
    assert_eq!(exit, Some(1), "{json}\n{err}");
    assert_eq!(
        json["configure"]["error"], "misbehave: configure-error mode, refusing parallelism 2",
        "{json}"
    );
    assert!(
        err.contains("misbehave: configure-error mode, refusing parallelism 2"),
        "{err}"
    );
    assert!(!err.contains("KPU"), "{err}");
}

#[test]
fn check_of_an_interpreter_prints_the_signals_it_derives() {
    let (code, json, err) = check_json(&["backlog-seconds"]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    assert_eq!(json["world"], "metric-interpreter");
    let signals = json["signals"].as_array().expect("signals");
    let behind = signals
        .iter()
        .find(|s| s["name"] == "seconds_behind")
        .unwrap_or_else(|| panic!("no seconds_behind in {json}"));
    // The canned backlog ends at 278 000 records, processed at about
    // 4 000 records/s: about a minute behind.
    let seconds = behind["value"].as_f64().expect("a number");
    assert!((40.0..90.0).contains(&seconds), "{json}");
    assert!(json["decision"].is_null());
}

#[test]
fn params_the_plugin_refuses_exit_1_with_its_reason() {
    let (code, json, err) = check_json(&["step", "--params", r#"{"scale_out_alarm": "high"}"#]);
    assert_eq!(code, Some(1), "{json}\n{err}");
    assert_eq!(json["ok"], false);
    assert_eq!(json["configure"]["accepted"], false, "{json}");
    assert!(err.contains("configure refused"), "{err}");
    assert!(json["decision"].is_null());
}

/// A policy is asked a second time as at the agent's start (no datapoint,
/// every alarm INSUFFICIENT_DATA), as `validate` asks it: one that answers
/// the canned evaluation well and breaks the contract in its other branch
/// fails `check`, where it passed and then failed at the agent's first
/// evaluation. The built-in `step` holds then, and says so.
#[test]
fn check_asks_a_policy_as_at_the_agents_start_too() {
    let (code, json, err) = check_json(&["step"]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    assert_eq!(json["at_start"]["action"], "hold", "{json}");
    // On a fresh instance: `flink-operator` keeps a metric window, and
    // asked again on the one the first call filled it answered on that.
    let (code, json, err) = check_json(&["flink-operator"]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    let reason = json["at_start"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not yet collected"), "{json}");
    let plugin = misbehave();
    let (code, json, err) = check_json(&[&plugin, "--params", r#"{"mode": "zero-when-quiet"}"#]);
    assert_eq!(code, Some(1), "{json}\n{err}");
    assert_eq!(json["decision"]["action"], "hold", "{json}");
    assert!(
        err.contains(
            "invalid decision (asked as at the agent's start: the metrics without datapoints \
             yet, the alarms INSUFFICIENT_DATA): scale-to(0)"
        ),
        "{err}"
    );
}

/// `--params` naming alarms or metrics the canned evaluation does not have
/// (the configuration's `scale-out` for the canned `scale_out`) was
/// accepted, and a policy that reads an absent alarm as quiet passed:
/// refused, naming the ids `check` gives, once the plugin accepted them.
#[test]
fn check_refuses_params_that_name_ids_it_does_not_give() {
    let (code, json, err) = check_json(&[
        "step",
        "--params",
        r#"{"scale_out_alarm": "scale-out", "scale_in_alarm": "scale_in"}"#,
    ]);
    assert_eq!(code, Some(1), "{json}\n{err}");
    assert_eq!(json["configure"]["accepted"], true, "{json}");
    assert!(
        err.contains(
            "--params names ids the canned evaluation `check` asks with does not have: \
             params.scale_out_alarm: no alarm with id \"scale-out\""
        ) && err
            .contains("the alarms scale_out, scale_in and the metrics busy, records_in, backlog"),
        "{err}"
    );
}

#[test]
fn a_plugin_that_traps_errs_or_answers_zero_exits_1() {
    let plugin = misbehave();
    for (mode, expected) in [
        ("trap", "Trap"),
        // A Rust panic traps as `unreachable`; its message, written to
        // stderr just before, is in the error.
        ("panic", "its stderr before: thread "),
        ("panic", "panicked at"),
        ("panic", "misbehave: panic mode"),
        ("error", "misbehave: error mode"),
        ("zero", "scale-to(0)"),
    ] {
        let params = format!(r#"{{"mode": "{mode}"}}"#);
        let (code, json, err) = check_json(&[&plugin, "--params", &params]);
        assert_eq!(code, Some(1), "mode {mode}: {json}\n{err}");
        assert_eq!(json["configure"]["accepted"], true, "mode {mode}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "mode {mode}: {error}");
    }
    // What the agent does with an answer outside the contract: it holds.
    let (_, json, err) = check_json(&[&plugin, "--params", r#"{"mode": "zero"}"#]);
    assert_eq!(json["host_decision"]["action"], "hold", "{json}\n{err}");
    // A reason is shown as the agent keeps it: cut, and without the
    // control characters that would act on the terminal.
    let output = flinkscale(&[
        "plugin",
        "check",
        &plugin,
        "--params",
        r#"{"mode": "ugly"}"#,
    ]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(
        text.contains("decision    hold:  [31mred [0m forged line xxx"),
        "{text}"
    );
    assert!(
        text.contains("(the reason is 4025 bytes; the agent keeps the first 512)"),
        "{text}"
    );
    // A target above max_kpu is the host's to clamp, not a failure.
    let (code, json, err) = check_json(&[&plugin, "--params", r#"{"mode": "huge"}"#]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    assert_eq!(json["host_decision"]["action"]["scale_to"], 16, "{json}");
}

#[test]
fn usage_errors_exit_78_naming_what_is_wrong() {
    let bad_json = flinkscale(&[
        "plugin",
        "check",
        "step",
        "--params",
        "{scale_out_alarm: 1}",
    ]);
    assert_eq!(code(&bad_json), Some(78));
    assert!(
        stderr(&bad_json).contains("--params is not valid JSON"),
        "{}",
        stderr(&bad_json)
    );

    let not_object = flinkscale(&["plugin", "check", "step", "--params", "[1, 2]"]);
    assert_eq!(code(&not_object), Some(78));
    assert!(
        stderr(&not_object).contains("JSON object"),
        "{}",
        stderr(&not_object)
    );

    let missing = flinkscale(&["plugin", "check", "no/such/plugin.wasm"]);
    assert_eq!(code(&missing), Some(78));
    assert!(
        stderr(&missing).contains("no/such/plugin.wasm"),
        "{}",
        stderr(&missing)
    );

    let unknown = flinkscale(&["plugin", "describe", "no-such-plugin"]);
    assert_eq!(code(&unknown), Some(78));
    let message = stderr(&unknown);
    assert!(
        message.contains("\"no-such-plugin\" is not a built-in"),
        "{message}"
    );
    assert!(
        message.contains("\"step\""),
        "the valid names are listed: {message}"
    );
}

#[test]
fn a_file_that_is_not_a_component_fails_the_check() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("broken.wasm");
    std::fs::write(&file, b"not a component").expect("written");
    let (code, json, err) = check_json(&[file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{json}\n{err}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("wasm32-wasip2"),
        "{json}"
    );
}

/// `describe` answers 78 to a plugin that will not load, as every
/// command but `check` does (it answered 1).
#[test]
fn describe_refuses_a_file_that_is_not_a_component_as_bad_input() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("broken.wasm");
    std::fs::write(&file, b"not a component").expect("written");
    let output = flinkscale(&["plugin", "describe", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), Some(78), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("broken.wasm"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_file_in_plugin_dir_overrides_the_built_in_of_its_name() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("step.wasm");
    std::fs::copy(v0_1_0_fixture("step"), &file).expect("the fixture copies");
    let (code, json, err) =
        check_json(&["step", "--plugin-dir", dir.path().to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{json}\n{err}");
    assert_eq!(json["source"], file.to_string_lossy().as_ref());
    assert_eq!(json["contract_version"], "0.1.0");
}

#[test]
fn describe_lists_what_step_declares() {
    let output = flinkscale(&["plugin", "describe", "step"]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("step "), "{text}");
    assert!(text.contains("contract 0.2.0"), "{text}");
    for line in [
        "  scale_out_alarm (alarm id, required)",
        "  scale_in_alarm (alarm id, required)",
        "  operation (string, default \"multiply\")",
        "  scale_out_factor (integer, default 2)",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let markdown = stdout(&flinkscale(&["plugin", "describe", "--markdown", "step"]));
    assert!(
        markdown.contains("| `scale_out_alarm` | alarm id | yes | - |"),
        "{markdown}"
    );
}

/// `describe --target flink` reads the plugin's texts as a Flink job's
/// agent reads its decisions: KPU as parallelism; keys and defaults as
/// declared.
#[test]
fn describe_with_target_flink_speaks_parallelism() {
    let msf = stdout(&flinkscale(&["plugin", "describe", "step"]));
    assert!(
        msf.contains("multiply (or add to) the KPU while the scale-out alarm fires"),
        "{msf}"
    );
    let output = flinkscale(&["plugin", "describe", "step", "--target", "flink"]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let flink = stdout(&output);
    assert!(
        flink.contains("multiply (or add to) the parallelism while the scale-out alarm fires"),
        "{flink}"
    );
    assert!(!flink.contains("KPU"), "{flink}");
    assert!(
        flink
            .lines()
            .any(|l| l == "  scale_out_factor (integer, default 2)"),
        "{flink}"
    );
}

#[test]
fn an_undeclared_key_is_refused_naming_the_declared_ones() {
    let (code, json, err) = check_json(&[
        "step",
        "--params",
        r#"{"scale_out_alarm": "scale_out", "scale_in_alarm": "scale_in", "scale_out_factr": 3}"#,
    ]);
    assert_eq!(code, Some(1), "{json}\n{err}");
    assert_eq!(json["configure"]["accepted"], false, "{json}");
    let error = json["configure"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("scale_out_factr"), "{error}");
    assert!(
        error.contains("scale_out_factor"),
        "the valid key is named: {error}"
    );
}

#[test]
fn describe_of_a_contract_0_1_0_plugin_says_it_predates_declarations() {
    let fixture = v0_1_0_fixture("backlog-seconds");
    let fixture = fixture.to_str().expect("utf-8");
    for args in [
        vec!["plugin", "describe", fixture],
        vec!["plugin", "describe", "--markdown", fixture],
    ] {
        let output = flinkscale(&args);
        assert_eq!(code(&output), Some(0), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains("declares no parameters"), "{text}");
        assert!(text.contains("contract (0.1.0) predates"), "{text}");
    }
}

#[test]
fn bench_reports_compile_instance_and_warm_call_timings() {
    let output = flinkscale(&[
        "plugin",
        "bench",
        "step",
        "--iterations",
        "50",
        "--instances",
        "3",
        "--compiles",
        "1",
        "--json",
    ]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert!(
        json["compile_ms"].as_f64().is_some_and(|v| v > 0.0),
        "{json}"
    );
    assert_eq!(json["instance"]["count"], 3);
    assert_eq!(json["call"]["function"], "decide");
    assert_eq!(json["call"]["count"], 50);
    let p50 = json["call"]["p50_us"].as_f64().expect("p50");
    let p99 = json["call"]["p99_us"].as_f64().expect("p99");
    assert!(p50 > 0.0 && p99 >= p50, "{json}");

    let refused = flinkscale(&[
        "plugin",
        "bench",
        "step",
        "--params",
        "{}",
        "--iterations",
        "5",
    ]);
    assert_eq!(
        code(&refused),
        Some(1),
        "a plugin refusing its params cannot be timed"
    );
}

/// `bench` checks each answer as the agent does: a policy answering
/// outside the contract fails it (exit 1), as it fails `check`, instead
/// of being timed as if it worked.
#[test]
fn bench_fails_on_an_answer_outside_the_contract() {
    let plugin = misbehave();
    let output = flinkscale(&[
        "plugin",
        "bench",
        &plugin,
        "--params",
        r#"{"mode": "zero"}"#,
        "--iterations",
        "5",
        "--instances",
        "1",
        "--compiles",
        "1",
    ]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("scale-to(0)"),
        "{}",
        stderr(&output)
    );
}

/// A call past the deadline is counted and the bench goes on, on a fresh
/// instance, instead of throwing the run away at the first slow call; a
/// plugin none of whose calls answers has nothing to time (exit 1, saying
/// so).
#[test]
fn bench_counts_calls_past_the_deadline() {
    let plugin = misbehave();
    let output = flinkscale(&[
        "plugin",
        "bench",
        &plugin,
        "--params",
        r#"{"mode": "loop"}"#,
        "--iterations",
        "2",
        "--instances",
        "1",
        "--compiles",
        "1",
    ]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "every one of the 2 timed calls ran past the 100 ms deadline: nothing to time"
        ),
        "{}",
        stderr(&output)
    );
    // With the default 10 000 iterations it ran for over half an hour,
    // saying nothing: it stops once 5 calls in a row, and none before,
    // ran past the deadline.
    let started = std::time::Instant::now();
    let output = flinkscale(&[
        "plugin",
        "bench",
        &plugin,
        "--params",
        r#"{"mode": "loop"}"#,
    ]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "the first 5 calls all ran past the 100 ms deadline, so the bench stopped: nothing \
             to time"
        ),
        "{}",
        stderr(&output)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// A plugin that logs at every call does not bury `bench`'s result: the
/// timed calls' lines are counted (at the level `RUST_LOG` asks for) and
/// not printed.
#[test]
fn bench_counts_the_log_lines_of_timed_calls_instead_of_printing_them() {
    let plugin = misbehave();
    let output = Command::new(BIN)
        .args([
            "plugin",
            "bench",
            &plugin,
            "--params",
            r#"{"mode": "log"}"#,
            "--iterations",
            "50",
            "--instances",
            "2",
            "--compiles",
            "1",
            "--json",
        ])
        .env("RUST_LOG", "info")
        .current_dir(workspace())
        .output()
        .expect("the binary runs");
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    // 50 warm-up and 50 timed calls, each logging info, warn and error
    // (trace and debug are below `info`).
    assert_eq!(json["log_lines_not_printed"], 300, "{json}");
    // The binary is built in the tests' profile, and says which it is.
    assert_eq!(json["release_build"], !cfg!(debug_assertions), "{json}");
    let printed = stderr(&output).matches("misbehave: info").count();
    assert!(
        printed <= 1,
        "{printed} guest lines printed:\n{}",
        stderr(&output)
    );
}

/// The README with the generated blocks emptied.
fn without_tables(readme: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in readme.split_inclusive('\n') {
        if line.trim() == "<!-- /plugin-params -->" {
            inside = false;
        }
        if !inside {
            out.push_str(line);
        }
        if line.trim().starts_with("<!-- plugin-params ") {
            inside = true;
        }
    }
    out
}

fn readme_blocks(readme: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in readme.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- plugin-params ") {
            current = Some((
                rest.trim_end_matches("-->").trim().to_owned(),
                String::new(),
            ));
        } else if trimmed == "<!-- /plugin-params -->" {
            found.extend(current.take());
        } else if let Some((_, content)) = &mut current {
            content.push_str(line);
        }
    }
    found
}

#[test]
fn the_readme_parameter_tables_are_what_describe_prints_for_every_built_in() {
    let readme_path = workspace().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("the README is readable");
    let blocks = readme_blocks(&readme);
    let mut stale = Vec::new();
    for builtin in builtin::all() {
        let ours: Vec<_> = blocks
            .iter()
            .filter(|(name, _)| name == builtin.name)
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "the README needs exactly one `<!-- plugin-params {} -->` block",
            builtin.name
        );
        let output = flinkscale(&["plugin", "describe", "--markdown", builtin.name]);
        assert_eq!(code(&output), Some(0), "{}", stderr(&output));
        if stdout(&output) != ours[0].1 {
            stale.push(format!(
                "--- README block for {} ---\n{}--- `plugin describe --markdown {}` ---\n{}",
                builtin.name,
                ours[0].1,
                builtin.name,
                stdout(&output)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "the README's parameter tables differ from the plugins' declarations; regenerate \
         them with `{REGENERATE}`\n{}",
        stale.join("\n")
    );
}

#[test]
fn describe_readme_rewrites_the_blocks_in_place_and_nothing_else() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("readable");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let copy = dir.path().join("README.md");
    std::fs::write(&copy, without_tables(&readme)).expect("written");
    let output = flinkscale(&["plugin", "describe", "--readme", path(&copy)]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let rewritten = std::fs::read_to_string(&copy).expect("readable");
    assert_eq!(without_tables(&rewritten), without_tables(&readme));
    for (name, content) in readme_blocks(&rewritten) {
        let described = stdout(&flinkscale(&["plugin", "describe", "--markdown", &name]));
        assert_eq!(content, described, "block {name}");
    }
    assert!(!readme_blocks(&rewritten).is_empty());

    let broken = dir.path().join("broken.md");
    std::fs::write(
        &broken,
        "<!-- plugin-params no-such -->\n<!-- /plugin-params -->\n",
    )
    .expect("written");
    let output = flinkscale(&["plugin", "describe", "--readme", path(&broken)]);
    assert_eq!(code(&output), Some(78));
    assert!(
        stderr(&output).contains("\"no-such\" is not a built-in"),
        "{}",
        stderr(&output)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every place the README lists the built-in plugins (the install note,
/// the `plugin` field of the configuration reference, "How plugins are
/// found") names each plugin the binary embeds, so that a user reading
/// any of them knows `plugin = "predictive"` needs no file.
#[test]
fn the_readme_lists_every_built_in_wherever_it_lists_them() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("readable");
    for anchor in [
        "`cargo install --path host` installs a self-contained",
        "| `plugin` | required | a name:",
        "- **Built-ins.**",
    ] {
        let start = readme
            .find(anchor)
            .unwrap_or_else(|| panic!("the README has {anchor:?}"));
        let paragraph = readme[start..].split("\n\n").next().expect("a paragraph");
        let paragraph = paragraph.split("\n- ").next().expect("one list item");
        for builtin in builtin::all() {
            let name = format!("`{}`", builtin.name);
            assert!(
                paragraph.contains(&name),
                "the README's list at {anchor:?} leaves out {name}:\n{paragraph}"
            );
        }
    }
}

/// `plugin sdk DIR` gives an author everything a checkout would: the
/// contract's WIT files as committed, the SDK and helpers at the paths the
/// README names, the build scripts executable and with all they source;
/// and it overwrites nothing without `--force`.
#[test]
fn sdk_writes_the_contract_and_the_sdks_without_a_checkout() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["plugin", "sdk", "kit"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("the binary runs")
    };
    let output = run(&[]);
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    let kit = dir.path().join("kit");
    assert!(
        stdout(&output).contains(&format!(
            "flinkscale-plugin = {{ path = \"{}\" }}",
            kit.canonicalize().unwrap().join("plugins/sdk").display()
        )),
        "the dependency line to paste is printed: {}",
        stdout(&output)
    );
    for wit in ["wit/v0.1.0/plugin.wit", "wit/v0.2.0/plugin.wit"] {
        assert_eq!(
            std::fs::read(kit.join(wit)).unwrap(),
            std::fs::read(workspace().join(wit)).unwrap(),
            "{wit} differs from the committed contract"
        );
    }
    for helper in [
        "plugins/sdk/src/lib.rs",
        "plugins/build-module.sh",
        "plugins/python/flinkscale_policy.py",
        "plugins/python/flinkscale_interpreter.py",
        "plugins/python/backlog_seconds.py",
        "plugins/js/flinkscale-policy.js",
        "plugins/js/flinkscale-interpreter.js",
        "plugins/js/backlog-seconds.js",
    ] {
        assert_eq!(
            std::fs::read(kit.join(helper)).unwrap(),
            std::fs::read(workspace().join(helper)).unwrap(),
            "{helper}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for script in ["plugins/python/build.sh", "plugins/js/build.sh"] {
            let mode = std::fs::metadata(kit.join(script))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755, "{script}");
        }
    }
    // The build scripts find what they source in the kit: run from
    // elsewhere, each reads its arguments and names the module it lacks
    // (before it would install a toolchain or build anything).
    for (lang, ext) in [("python", "py"), ("js", "js")] {
        let script = kit.join(format!("plugins/{lang}/build.sh"));
        let output = Command::new("bash")
            .arg(&script)
            .arg("nosuch")
            .current_dir(dir.path())
            .output()
            .expect("bash runs");
        assert_eq!(code(&output), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!(
                "no module plugins/{lang}/nosuch.{ext} (MODULE is a file in plugins/{lang}/"
            )),
            "{}",
            stderr(&output)
        );
    }

    let again = run(&[]);
    assert_eq!(code(&again), Some(78));
    assert!(
        stderr(&again).contains("already exists") && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    let forced = run(&["--force"]);
    assert_eq!(code(&forced), Some(0), "{}", stderr(&forced));
    // A folder that cannot be made is the disk's failure, not the
    // command's: exit 1 (it was 78).
    let unwritable = Command::new(BIN)
        .args(["plugin", "sdk", "/proc/flinkscale-kit"])
        .output()
        .expect("the binary runs");
    assert_eq!(code(&unwritable), Some(1), "{}", stderr(&unwritable));
    assert!(
        stderr(&unwritable).contains("cannot create folder /proc/flinkscale-kit"),
        "{}",
        stderr(&unwritable)
    );
}

/// `plugin check` keeps the component it compiled in the plugin cache
/// (`--plugin-cache DIR`, as `simulate` does): the second check of the same
/// file compiles nothing and says so; with `off` it compiles every time.
#[test]
fn a_second_check_of_a_plugin_loads_it_from_the_plugin_cache() {
    let cache = tempfile::tempdir().expect("a temp dir");
    let dir = cache.path().to_string_lossy().into_owned();
    const MODE_OK: &str = r#"{"mode": "ok"}"#;
    let plugin = misbehave();
    let (code, first, err) = check_json(&[&plugin, "--params", MODE_OK, "--plugin-cache", &dir]);
    assert_eq!(code, Some(0), "{first}\n{err}");
    assert_eq!(
        first["from_cache"], false,
        "the first check compiles: {first}"
    );
    let artifacts = std::fs::read_dir(cache.path())
        .expect("the cache folder was made")
        .count();
    assert!(artifacts > 0, "the compiled component was kept");

    let (code, second, err) = check_json(&[&plugin, "--params", MODE_OK, "--plugin-cache", &dir]);
    assert_eq!(code, Some(0), "{second}\n{err}");
    assert_eq!(second["from_cache"], true, "{second}");
    assert_eq!(second["sha256"], first["sha256"]);
    assert!(
        second["compile_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{second}"
    );
    let text = stdout(&flinkscale(&[
        "plugin",
        "check",
        &plugin,
        "--params",
        MODE_OK,
        "--plugin-cache",
        &dir,
    ]));
    assert!(
        text.contains("none: loaded from the plugin cache"),
        "{text}"
    );

    let (code, off, err) = check_json(&[&plugin, "--params", MODE_OK, "--plugin-cache", "off"]);
    assert_eq!(code, Some(0), "{off}\n{err}");
    assert_eq!(off["from_cache"], false, "{off}");
}
