//! A misbehaving scaling policy written with the Python or the JavaScript
//! policy helper is reported in the same words, and never reaches the
//! agent as a malformed decision.
//!
//! `plugins/python/flinkscale_policy.py` (componentize-py) and
//! `plugins/js/flinkscale-policy.js` (jco) promise a policy's author that
//! any mistake in `decide` or `configure` comes back to the host as the
//! contract's `err`, with a sentence saying what went wrong, rather than a
//! trap, and the shipped ports of `step` (host/tests/polyglot.rs) never
//! make one. The first test loads a policy that makes each mistake on
//! purpose (`tests/fixtures/polyglot/misbehave_policy.py` and its twin
//! `misbehave-policy.js`, one component per language, its mode chosen by a
//! parameter) through the real plugin host, calls `decide` as the agent
//! does (`decide_checked`, then `validate_decision` on a good answer), and
//! requires of every mistake (an exception, a refusal, an answer that is
//! not a decision, a KPU that is not a whole number in `0..=u32::MAX`, a
//! reason that is not a string, a next evaluation before now, a decision
//! built by hand, an endless loop, bad parameters, a misbehaving
//! `configure`) an error that names the plugin and what went wrong, the
//! same words from both helpers, and no panic; and of the good answers
//! (a hold, a scale-to, the largest KPU the contract carries, a KPU built
//! by hand and a next evaluation beyond 2^31, which JavaScript's engine
//! alone would saturate) the decision the policy meant, exactly, and what
//! the host then makes of it. The runtime's own errors differ by language
//! by nature, and so does a thrown value that is not an exception
//! (`throw {code: 3}`), which only JavaScript allows: it is reported
//! written out, and Python's refusal to raise one as its `TypeError`.
//!
//! The second calls the unchecked `decide` for the answers the host must
//! correct or refuse (`scale-to(0)`, an empty reason, a KPU above
//! `max_kpu`) and requires `validate_decision` to make them safe all the
//! same, as it does for any plugin.
//!
//! The third builds `tests/fixtures/polyglot/bad_metadata.py` and
//! `bad-metadata.js`, whose metadata holds lone surrogates, which UTF-8
//! cannot carry, and requires each build to fail with a sentence per
//! mistake, the same from both helpers.
//!
//! The fixtures are built by
//! `plugins/python/build.sh tests/fixtures/polyglot/misbehave_policy.py`
//! and `plugins/js/build.sh tests/fixtures/polyglot/misbehave-policy.js`
//! (scripts/test.sh runs both before the cargo tests); a missing one fails
//! the test with the command to build it.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use common::misbehave::{Expected, check_error, compare_languages};
use common::{polyglot_components, polyglot_host};
use flinkscale::model::{Action, AlarmState, AlarmStatus, Application, Decision, Evaluation};
use flinkscale::plugin::validate::validate_decision;
use flinkscale::plugin::{PluginError, PluginHost};
use flinkscale::target::AppStatus;

/// One host for both tests, as in the agent: each component is compiled
/// once and shared by every instance (through `polyglot_plugin_cache`).
fn host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> = LazyLock::new(polyglot_host);
    &HOST
}

/// Held by each test while it compiles: two compiles of an 18 MB component
/// at once on two cores take twice as long.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The misbehaving policies written with the Python and JavaScript helpers
/// (tests/fixtures/polyglot), as (label, component); fails (never skips)
/// when one is missing.
fn misbehaving() -> Vec<(&'static str, PathBuf)> {
    polyglot_components([
        (
            "python",
            "polyglot/misbehave_policy-py.wasm",
            "plugins/python/build.sh tests/fixtures/polyglot/misbehave_policy.py",
        ),
        (
            "javascript",
            "polyglot/misbehave-policy-js.wasm",
            "plugins/js/build.sh tests/fixtures/polyglot/misbehave-policy.js",
        ),
    ])
}

/// The application every evaluation is about: 4 KPU within [1, 10].
fn application() -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu: 4,
        parallelism: 4,
        parallelism_per_kpu: 1,
        min_kpu: 1,
        max_kpu: 10,
        version_id: 7,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}

/// An evaluation of [`application`] with one alarm in ALARM.
fn evaluation() -> Evaluation {
    let now_ms = 1_764_000_000_000;
    Evaluation {
        now_ms,
        app: application(),
        metrics: Vec::new(),
        alarms: vec![AlarmStatus {
            name: "busy".to_owned(),
            state: AlarmState::Alarm,
            since_ms: now_ms - 300_000,
        }],
        signals: Vec::new(),
    }
}

/// What the operator reads for a load and a `decide` of the fixture: the
/// decision and what the host acts on (`validate_decision` of it), or the
/// whole error as the host displays it, with the component's path (the one
/// difference between the two languages) written `<file>`.
type Reported = Result<(Decision, Decision), String>;

/// Loads the fixture at `wasm` with `params` and asks it once, as the agent
/// does: `decide_checked`, then `validate_decision` on a good answer.
/// A panic in the host fails the test, naming the call.
fn ask(label: &str, wasm: &Path, params: &str) -> Reported {
    let call = || {
        let evaluation = evaluation();
        host()
            .load_policy(wasm, params, "orders")
            .and_then(|mut policy| policy.decide_checked(&evaluation))
            .map(|decision| {
                let acted = validate_decision(decision.clone(), &evaluation.app);
                (decision, acted)
            })
    };
    let result = catch_unwind(AssertUnwindSafe(call))
        .unwrap_or_else(|_| panic!("the host panicked on the {label} policy with {params}"));
    result.map_err(|error: PluginError| {
        error
            .to_string()
            .replace(&wasm.display().to_string(), "<file>")
    })
}

/// A decision as expected: its action, reason and next evaluation.
type Expecting = (Action, &'static str, Option<u32>);

/// A decision with no next evaluation asked for.
const fn decision(action: Action, reason: &'static str) -> Expecting {
    (action, reason, None)
}

/// How the fixture is expected to answer in one mode: the decision and
/// what the host acts on after `validate_decision`, or an error.
type Mode = Expected<(Expecting, Expecting)>;

const fn decides(params: &'static str, decided: Expecting, acted: Expecting) -> Mode {
    Expected::answers(params, (decided, acted))
}

const fn fails(params: &'static str, fragments: &'static [&'static str]) -> Mode {
    Expected::fails(params, fragments)
}

/// The one text of every KPU the helpers refuse, ending with what was
/// found.
macro_rules! bad_kpu {
    ($found:literal) => {
        concat!(
            "failed in decide: GuestError: scale-to needs a whole number of KPU from 0 to \
             4294967295, found ",
            $found
        )
    };
}

/// Every mode of the fixture, with what the host must report.
const MODES: &[Mode] = &[
    decides(
        r#"{"mode": "ok"}"#,
        decision(Action::Hold, "misbehave: ok mode"),
        decision(Action::Hold, "misbehave: ok mode"),
    ),
    decides(
        r#"{"mode": "scale"}"#,
        decision(Action::ScaleTo(3), "misbehave: scale mode"),
        decision(Action::ScaleTo(3), "misbehave: scale mode"),
    ),
    // The largest `u32`: JavaScript's engine would lower it saturated to
    // 2^31 - 1 without the helper's correction.
    decides(
        r#"{"mode": "max"}"#,
        decision(Action::ScaleTo(u32::MAX), "misbehave: max mode"),
        decision(
            Action::ScaleTo(10),
            "misbehave: max mode; clamped from 4294967295 to 10 KPU (max_kpu)",
        ),
    ),
    // Beyond 2^31 too: carried exactly (JavaScript lowers it through the
    // helper), then shortened to a day by the host.
    decides(
        r#"{"mode": "next-large"}"#,
        (
            Action::Hold,
            "misbehave: next-large mode",
            Some(3_000_000_000),
        ),
        (Action::Hold, "misbehave: next-large mode", Some(86_400)),
    ),
    // A decision built by hand beyond 2^31 KPU: carried exactly, where
    // JavaScript's engine alone would saturate it to 2^31 - 1.
    decides(
        r#"{"mode": "hand-large"}"#,
        decision(Action::ScaleTo(3_000_000_000), "misbehave: hand-large mode"),
        decision(
            Action::ScaleTo(10),
            "misbehave: hand-large mode; clamped from 3000000000 to 10 KPU (max_kpu)",
        ),
    ),
    // The helpers let a policy say these; the host refuses them as
    // invalid output (a failure toward quarantine, as a trap is).
    fails(
        r#"{"mode": "zero"}"#,
        &["failed in decide: Invalid: invalid decision: scale-to(0): a capacity is at least 1 KPU"],
    ),
    fails(
        r#"{"mode": "empty-reason"}"#,
        &[
            "failed in decide: Invalid: invalid decision: an empty reason \
             (the contract asks why, for the log)",
        ],
    ),
    fails(
        r#"{"mode": "no-reason"}"#,
        &["failed in decide: GuestError: the decision's reason is nothing, not a string"],
    ),
    fails(r#"{"mode": "kpu-fraction"}"#, &[bad_kpu!("the number 2.5")]),
    fails(r#"{"mode": "kpu-negative"}"#, &[bad_kpu!("the number -1")]),
    fails(
        r#"{"mode": "kpu-huge"}"#,
        &[bad_kpu!("the number 4294967296")],
    ),
    fails(r#"{"mode": "kpu-nan"}"#, &[bad_kpu!("the number NaN")]),
    fails(r#"{"mode": "kpu-text"}"#, &[bad_kpu!("the string \"3\"")]),
    fails(
        r#"{"mode": "next-negative"}"#,
        &[
            "failed in decide: GuestError: next-evaluation-secs needs a whole number of \
             seconds from 0 to 4294967295, found the number -5",
        ],
    ),
    fails(r#"{"mode": "hand-built"}"#, &[bad_kpu!("the number 2.5")]),
    fails(
        r#"{"mode": "action-text"}"#,
        &["failed in decide: GuestError: the decision's action is a string, not hold or scale-to"],
    ),
    fails(
        r#"{"mode": "refuse"}"#,
        &["failed in decide: GuestError: misbehave: refuse mode"],
    ),
    // A bug is said with its place in the author's file, each
    // language's own.
    Expected::fails_in_own_words(
        r#"{"mode": "bug"}"#,
        &["failed in decide: GuestError: FixtureBug: misbehave: bug mode (at "],
        [
            &["(at misbehave_policy.py:162, in on_decide)"],
            &["(at misbehave-policy.js:128, in decide)"],
        ],
    ),
    // Each runtime says it its own way, naming what was missing.
    Expected::fails_in_own_words(
        r#"{"mode": "runtime"}"#,
        &["failed in decide: GuestError: "],
        [
            &["GuestError: KeyError: 'missing'"],
            &["GuestError: TypeError: cannot read property 'missing' of null"],
        ],
    ),
    fails(
        r#"{"mode": "nothing"}"#,
        &[
            "failed in decide: GuestError: the policy returned nothing, not a decision \
             (hold or scale-to)",
        ],
    ),
    fails(
        r#"{"mode": "text"}"#,
        &[
            "failed in decide: GuestError: the policy returned a string, not a decision \
             (hold or scale-to)",
        ],
    ),
    fails(
        r#"{"mode": "list"}"#,
        &[
            "failed in decide: GuestError: the policy returned a list, not a decision \
             (hold or scale-to)",
        ],
    ),
    fails(r#"{"mode": "loop"}"#, &["failed in decide: Timeout: "]),
    // A value that is neither an exception nor a string: JavaScript throws
    // it, and the helper writes it out (never `[object Object]`); Python
    // cannot raise it and refuses with a `TypeError`, which its helper
    // reports as any exception.
    Expected::fails_in_own_words(
        r#"{"mode": "throw"}"#,
        &["failed in decide: GuestError: "],
        [
            &["GuestError: TypeError: exceptions must derive from BaseException"],
            &["GuestError: threw a non-Error value: {\"code\":3}"],
        ],
    ),
    // Text UTF-8 cannot carry, a lone surrogate (after an emoji, one
    // character in both languages): written as its escape by the helpers,
    // where Python's bindings would trap lowering it, and the decision goes
    // through.
    decides(
        r#"{"mode": "surrogate"}"#,
        decision(Action::Hold, "misbehave: \u{1f600} \\ud800 mode"),
        decision(Action::Hold, "misbehave: \u{1f600} \\ud800 mode"),
    ),
    fails(
        r#"{"mode": "surrogate-refuse"}"#,
        &["failed in decide: GuestError: misbehave: \\udc00 refuse mode"],
    ),
    // Logs through the contract (checked by
    // `a_python_or_javascript_policy_logs_through_the_contract`), then holds.
    decides(
        r#"{"mode": "log"}"#,
        decision(Action::Hold, "misbehave: log mode"),
        decision(Action::Hold, "misbehave: log mode"),
    ),
    fails(
        r#"{"mode": "configure-refuse"}"#,
        &["rejected its params: misbehave: configure-refuse mode"],
    ),
    Expected::fails_in_own_words(
        r#"{"mode": "configure-bug"}"#,
        &["rejected its params: FixtureBug: misbehave: configure-bug mode (at "],
        [
            &["(at misbehave_policy.py:120, in setup)"],
            &["(at misbehave-policy.js:79, in setup)"],
        ],
    ),
    // An endless start fails in the host's words, the same for both, after
    // the start was tried on a second fresh instance.
    fails(
        r#"{"mode": "configure-loop"}"#,
        &[
            "failed in configure: Timeout: no answer within the 1000 ms deadline of an \
             instance's start (ten times `plugin_timeout_ms`, at least 1 s), on two fresh \
             instances in turn",
        ],
    ),
    fails(
        r#"{"mode": "dance"}"#,
        &[
            "rejected its params: unknown mode `dance` (valid: ok, scale, max, next-large, hand-large, zero, ",
        ],
    ),
    fails(
        r#"{"mode": 3}"#,
        &["rejected its params: \"mode\" must be a string, not an integer (3)"],
    ),
    fails(r#"{}"#, &["rejected its params: ", "\"mode\""]),
    fails(
        r#"{"mode": "ok", "colour": 1}"#,
        &["rejected its params: ", "\"colour\""],
    ),
];

/// Checks `answer`, the `label` fixture's in the mode `expected`, against
/// what is expected of it.
fn check(label: &str, expected: &Mode, answer: &Reported) {
    let params = expected.params;
    match (&expected.answer, answer) {
        (Ok((decided, acted)), Ok((found, found_acted))) => {
            let want = |(action, reason, next_evaluation_secs): Expecting| Decision {
                action,
                reason: reason.to_owned(),
                next_evaluation_secs,
            };
            assert_eq!(
                found,
                &want(*decided),
                "{label} with {params}: the decision"
            );
            assert_eq!(
                found_acted,
                &want(*acted),
                "{label} with {params}: what the host acts on"
            );
        }
        (_, Err(text)) => check_error(label, "misbehave-policy 0.1.0", expected, text),
        (Err(fragments), Ok((found, _))) => {
            panic!("{label} with {params}: expected an error with {fragments:?}, found {found:?}")
        }
    }
}

#[test]
fn a_misbehaving_python_or_javascript_policy_is_reported_in_the_same_words() {
    let fixtures = misbehaving();
    let _compiling = one_at_a_time();
    let answers: Vec<Vec<Reported>> = fixtures
        .iter()
        .map(|(label, wasm)| {
            let started = Instant::now();
            let answers = MODES
                .iter()
                .map(|expected| {
                    let answer = ask(label, wasm, expected.params);
                    println!("{label:<10} {:<36} {answer:?}", expected.params);
                    check(label, expected, &answer);
                    answer
                })
                .collect();
            println!(
                "{label}: {} modes in {:.1} s",
                MODES.len(),
                started.elapsed().as_secs_f64()
            );
            answers
        })
        .collect();
    compare_languages(MODES, &answers);
}

#[test]
fn the_host_makes_a_python_or_javascript_policys_answer_safe_all_the_same() {
    let fixtures = misbehaving();
    let _compiling = one_at_a_time();
    let evaluation = evaluation();
    for (label, wasm) in &fixtures {
        let unchecked = |mode: &str| {
            let params = format!(r#"{{"mode": "{mode}"}}"#);
            let mut policy = host()
                .load_policy(wasm, &params, "orders")
                .unwrap_or_else(|error| panic!("the {label} policy loads with {params}: {error}"));
            let decided = policy
                .decide(&evaluation)
                .unwrap_or_else(|error| panic!("the {label} policy decides in {mode}: {error}"));
            (decided.clone(), validate_decision(decided, &evaluation.app))
        };

        // scale-to(0) reaches the host (decide_checked would fail it), and
        // is never acted on.
        let (decided, acted) = unchecked("zero");
        assert_eq!(decided.action, Action::ScaleTo(0), "{label}");
        assert_eq!(acted.action, Action::Hold, "{label}: {acted:?}");
        assert_eq!(
            acted.reason,
            "misbehave: zero mode; refused scale-to(0): capacity cannot be zero, holding",
            "{label}"
        );

        // An empty reason is given one.
        let (decided, acted) = unchecked("empty-reason");
        assert_eq!(decided, Decision::hold(""), "{label}");
        assert_eq!(acted, Decision::hold("no reason given"), "{label}");

        // A KPU above max_kpu, carried exactly, is clamped and said so.
        let (decided, acted) = unchecked("max");
        assert_eq!(decided.action, Action::ScaleTo(u32::MAX), "{label}");
        assert_eq!(acted.action, Action::ScaleTo(10), "{label}");
        assert!(
            acted
                .reason
                .ends_with("clamped from 4294967295 to 10 KPU (max_kpu)"),
            "{label}: {}",
            acted.reason
        );

        // A good answer passes unchanged.
        let (decided, acted) = unchecked("scale");
        assert_eq!(decided.action, Action::ScaleTo(3), "{label}");
        assert_eq!(acted, decided, "{label}");
    }
}

/// What each try of `tests/fixtures/polyglot/bad_metadata.py` and
/// `bad-metadata.js` must be refused with, in order, after `refused: `;
/// `{field}` is where the two helpers name a plugin's own field, each in
/// its way. The last try of each fixture is a default that must pass (a
/// backslash before `ud800`, which is text), so it has no line here.
const METADATA_REFUSALS: [&str; 8] = [
    "{NAME} has a lone surrogate (\\ud800 at character 5), which a UTF-8 string cannot carry",
    "{VERSION} has a lone surrogate (\\udfff at character 7), which a UTF-8 string cannot carry",
    "{SUMMARY} has a lone surrogate (\\ud83d at character 13), which a UTF-8 string cannot carry",
    "a parameter's name has a lone surrogate (\\udc00 at character 2), which a UTF-8 string cannot carry",
    "parameter `x`'s meaning has a lone surrogate (\\udc00 at character 6), which a UTF-8 string cannot carry",
    "parameter `x`'s default has a lone surrogate (\\ud800 at character 4), which a UTF-8 string cannot carry",
    "parameter `x`'s default has a lone surrogate (\\udfff at character 14), which a UTF-8 string cannot carry",
    "parameter `x`'s default has a lone surrogate (\\udbff at character 4), which a UTF-8 string cannot carry",
];

/// A lone surrogate in a plugin's metadata (its name, version or summary, a
/// parameter's name, meaning or default) fails the build with a sentence,
/// the same from both helpers, where the Python build used to succeed and
/// the component then trapped each time the host loaded it. The fixtures
/// are built here, into a folder of their own, by the same scripts as every
/// plugin (which scripts/test.sh has already run, so the toolchains are in
/// place): the build is what is tested.
#[test]
fn a_lone_surrogate_in_metadata_fails_the_build_in_the_same_words() {
    let _compiling = one_at_a_time();
    let out = tempfile::tempdir().expect("a temp dir");
    let builds = [
        (
            "python",
            "plugins/python/build.sh",
            "tests/fixtures/polyglot/bad_metadata.py",
            ["Policy.NAME", "Policy.VERSION", "Policy.SUMMARY"],
        ),
        (
            "javascript",
            "plugins/js/build.sh",
            "tests/fixtures/polyglot/bad-metadata.js",
            [
                "definePolicy's `name`",
                "definePolicy's `version`",
                "definePolicy's `summary`",
            ],
        ),
    ];
    for (label, script, fixture, fields) in builds {
        let started = Instant::now();
        let built = std::process::Command::new(common::workspace().join(script))
            .arg(fixture)
            .env("CARGO_TARGET_DIR", out.path())
            .output()
            .unwrap_or_else(|error| panic!("{script} runs: {error}"));
        let stderr = String::from_utf8_lossy(&built.stderr);
        let stdout = String::from_utf8_lossy(&built.stdout);
        println!(
            "{label}: the build failed as it should in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            !built.status.success(),
            "{label}: {script} {fixture} built a component with a lone surrogate in its \
             metadata\n{stdout}\n{stderr}"
        );
        // componentize-py prints the error twice (its traceback and its
        // cause), jco once: the lines in the order of the first.
        let mut refusals: Vec<&str> = Vec::new();
        for line in stderr
            .lines()
            .filter_map(|line| line.strip_prefix("refused: "))
        {
            if refusals.contains(&line) {
                break;
            }
            refusals.push(line);
        }
        let expected: Vec<String> = METADATA_REFUSALS
            .iter()
            .map(|line| {
                line.replace("{NAME}", fields[0])
                    .replace("{VERSION}", fields[1])
                    .replace("{SUMMARY}", fields[2])
            })
            .collect();
        assert_eq!(refusals, expected, "{label}: the build's words\n{stderr}");
        assert!(
            std::fs::read_dir(out.path().join("polyglot"))
                .map(|entries| entries
                    .flatten()
                    .all(|entry| entry.path().extension().is_none_or(|ext| ext != "wasm")))
                .unwrap_or(true),
            "{label}: a failed build left no component behind"
        );
    }
}

/// A JavaScript module that defines a policy but does not export it as
/// `policy` builds, with a warning, into a component whose first call
/// reaches the generated glue's `unreachable`: the host says what is
/// missing instead of the bare trap.
#[test]
fn a_javascript_module_without_its_export_is_told_what_is_missing() {
    let _compiling = one_at_a_time();
    let out = tempfile::tempdir().expect("a temp dir");
    let built = std::process::Command::new(common::workspace().join("plugins/js/build.sh"))
        .arg("tests/fixtures/polyglot/no-export.js")
        .env("CARGO_TARGET_DIR", out.path())
        .output()
        .expect("plugins/js/build.sh runs");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not seem to define `export const policy`"),
        "{stderr}"
    );
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_flinkscale"))
        .args(["plugin", "check"])
        .arg(out.path().join("polyglot/no-export-js.wasm"))
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{said}");
    assert!(
        said.contains(
            "failed in metadata: Trap: wasm trap: wasm `unreachable` instruction executed (the \
             component's own code failed before its first answer: a JavaScript module must \
             `export const policy = definePolicy(...)`"
        ),
        "{said}"
    );
}

/// The README's "Logging", used as it says: a Python or JavaScript policy
/// writes to the agent's log through the contract's `host` interface
/// (Python's `print` too), at the level it asks, tagged with the plugin
/// and the application.
#[test]
fn a_python_or_javascript_policy_logs_through_the_contract() {
    let _compiling = one_at_a_time();
    for (label, wasm) in misbehaving() {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flinkscale"))
            .args(["plugin", "check"])
            .arg(&wasm)
            .args(["--params", r#"{"mode": "log"}"#])
            .env("RUST_LOG", "info")
            .output()
            .expect("the binary runs");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{label}: {log}");
        for (level, line) in [
            ("INFO", "misbehave: info at 4 KPU"),
            ("WARN", "misbehave: warn"),
            ("ERROR", "misbehave: error"),
        ] {
            let expected = format!(
                "{level} flinkscale::plugin::guest: {line} plugin=misbehave-policy \
                 plugin_version=0.1.0 application=canned source=\"log\""
            );
            assert!(
                log.contains(&expected),
                "{label}: no {expected:?} in\n{log}"
            );
        }
        assert!(
            !log.contains("misbehave: debug"),
            "{label}: below RUST_LOG: {log}"
        );
        if label == "python" {
            assert!(
                log.contains("misbehave: printed plugin=misbehave-policy"),
                "{label}: {log}"
            );
        }
    }
}
