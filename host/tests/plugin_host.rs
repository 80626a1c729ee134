//! The plugin host with the real compiled plugins: the `step` policy (as
//! host/build.rs built it) and the `misbehave` fixture, built by `cargo
//! plugins` into `target/wasm32-wasip2/release/`. Each misbehaviour is shown to be
//! contained: the agent gets an error naming the plugin (or a decision the
//! host's validation fixes), never a crash, a hang or a leak.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use flinkscale::metrics::{Datapoint, MetricQuery, Series};
use flinkscale::model::{Action, AlarmState, AlarmStatus, Application, Decision, Evaluation};
use flinkscale::plugin::validate::validate_decision;
use flinkscale::plugin::{
    FailureClass, PluginError, PluginHost, PluginKind, PolicyInstance, SandboxLimits,
};
use flinkscale::target::{AppStatus, Words};

const STEP_PARAMS: &str = r#"{"scale_out_alarm": "cpu-high", "scale_in_alarm": "cpu-low"}"#;

/// The folder `cargo plugins` writes to, honouring `CARGO_TARGET_DIR`.
fn wasm_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("wasm32-wasip2").join("release")
}

/// A compiled plugin: a shipped one where the build put it (host/build.rs),
/// a fixture where `cargo plugins` put it; fails the test (never skips it)
/// when it is absent.
fn plugin(name: &str) -> PathBuf {
    let builtin = Path::new(env!("FLINKSCALE_BUILTIN_PLUGIN_DIR"))
        .join(format!("{}.wasm", name.replace('-', "_")));
    if builtin.is_file() {
        return builtin;
    }
    let path = wasm_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo plugins` (from the workspace root) to build the plugins \
         before running these tests",
        path.display()
    );
    path
}

/// One host for the tests, as in the agent: each component is compiled
/// once (compiling is slow in a debug build) and shared by every instance.
fn host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> =
        LazyLock::new(|| PluginHost::new(SandboxLimits::default()).expect("the engine starts"));
    &HOST
}

/// A host with the default memory cap but a deadline far from anything a
/// test measures: filling 64 MiB in a debug build on a busy 2-core host can
/// take longer than the default 100 ms, and then the deadline, not the
/// cap, would stop the plugin.
fn patient_host() -> &'static PluginHost {
    static HOST: LazyLock<PluginHost> = LazyLock::new(|| {
        PluginHost::new(SandboxLimits {
            call_timeout: Duration::from_secs(10),
            ..SandboxLimits::default()
        })
        .expect("the engine starts")
    });
    &HOST
}

fn app(kpu: u32, min_kpu: u32, max_kpu: u32) -> Application {
    Application {
        name: "orders".to_owned(),
        status: AppStatus::Running,
        kpu,
        parallelism: kpu * 2,
        parallelism_per_kpu: 2,
        min_kpu,
        max_kpu,
        version_id: 3,
        last_rescale_ms: None,
        last_update_duration_secs: None,
    }
}

fn evaluation(app: Application, scale_out: AlarmState, scale_in: AlarmState) -> Evaluation {
    let now_ms = 1_764_000_000_000;
    Evaluation {
        now_ms,
        app,
        metrics: vec![Series {
            query: MetricQuery {
                id: "cpu".to_owned(),
                namespace: "AWS/KinesisAnalytics".to_owned(),
                metric_name: "containerCPUUtilization".to_owned(),
                dimensions: [("Application".to_owned(), "orders".to_owned())].into(),
                statistic: "Average".to_owned(),
                period_secs: 60,
                expression: None,
            },
            points: (0..5)
                .map(|i| Datapoint {
                    timestamp_ms: now_ms - (5 - i) * 60_000,
                    value: 85.0,
                })
                .collect(),
        }],
        alarms: vec![
            AlarmStatus {
                name: "cpu-high".to_owned(),
                state: scale_out,
                since_ms: now_ms - 300_000,
            },
            AlarmStatus {
                name: "cpu-low".to_owned(),
                state: scale_in,
                since_ms: now_ms - 300_000,
            },
        ],
        signals: vec![],
    }
}

fn quiet() -> Evaluation {
    evaluation(app(2, 1, 10), AlarmState::Ok, AlarmState::Ok)
}

fn step() -> PolicyInstance {
    host()
        .load_policy(plugin("step"), STEP_PARAMS, "orders")
        .expect("step loads")
}

fn misbehave(host: &PluginHost, mode: &str) -> Result<PolicyInstance, PluginError> {
    host.load_policy(
        plugin("misbehave"),
        &format!(r#"{{"mode": "{mode}"}}"#),
        "orders",
    )
}

fn misbehaving(mode: &str) -> PolicyInstance {
    misbehave(host(), mode).unwrap_or_else(|e| panic!("misbehave {mode} loads: {e}"))
}

/// The class and detail of a failed call, with the error's text checked to
/// name the plugin, its version and the application.
fn call_failure(result: Result<Decision, PluginError>) -> (FailureClass, String) {
    let error = match result {
        Ok(decision) => panic!("expected a failure, got {decision:?}"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(text.contains("plugin misbehave 0.1.0"), "{text}");
    assert!(text.contains("\"orders\""), "{text}");
    match error {
        PluginError::Call { class, detail, .. } => {
            assert!(text.contains(&class.to_string()), "{text}");
            (class, detail)
        }
        other => panic!("expected a call failure, got {other:?}"),
    }
}

/// Registers, once per process, an inert subscriber that keeps tracing
/// from caching a callsite's interest as "never". While at most one
/// dispatcher is registered, tracing-core computes a callsite's interest
/// from the default dispatcher of the thread that first reaches it, and
/// caches it for every thread: a test thread with no subscriber that
/// reaches a log line first silences it for a capturing test running
/// beside it (seen as a missing line in about one run in three of the
/// whole file). With this one registered too, the interest is the union
/// over the registered dispatchers, and this one answers "sometimes", so
/// each event asks its own thread's subscriber.
fn register_interest_anchor() {
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, span};

    struct Inert;
    impl tracing::Subscriber for Inert {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(Inert));
}

/// Collects everything logged through `tracing` while `f` runs.
fn captured_logs(f: impl FnOnce()) -> String {
    register_interest_anchor();
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---- step, the reference policy ----

#[test]
fn step_scales_out_when_the_scale_out_alarm_is_in_alarm() {
    let mut step = step();
    let raw = step
        .decide(&evaluation(
            app(2, 1, 10),
            AlarmState::Alarm,
            AlarmState::Ok,
        ))
        .expect("step decides");
    let decision = validate_decision(raw, &app(2, 1, 10));
    assert_eq!(decision.action, Action::ScaleTo(4), "{}", decision.reason);
    assert!(decision.reason.contains("cpu-high"), "{}", decision.reason);
    assert_eq!(step.consecutive_failures(), 0);
}

#[test]
fn step_holds_at_max_kpu() {
    let mut step = step();
    let decision = step
        .decide(&evaluation(
            app(10, 1, 10),
            AlarmState::Alarm,
            AlarmState::Ok,
        ))
        .expect("step decides");
    assert_eq!(decision.action, Action::Hold);
    assert!(
        decision.reason.contains("already at max"),
        "{}",
        decision.reason
    );
}

#[test]
fn step_scales_in_when_the_scale_in_alarm_is_in_alarm() {
    let mut step = step();
    let decision = step
        .decide(&evaluation(
            app(4, 1, 10),
            AlarmState::Ok,
            AlarmState::Alarm,
        ))
        .expect("step decides");
    assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
}

#[test]
fn step_holds_when_no_alarm_fires() {
    let mut step = step();
    let decision = step.decide(&quiet()).expect("step decides");
    assert_eq!(decision.action, Action::Hold);
}

#[test]
fn step_reports_its_name_version_and_contract() {
    let step = step();
    assert_eq!(step.label(), "step 0.1.0");
    let metadata = host().check(plugin("step")).expect("step checks");
    assert_eq!(metadata.name, "step");
    assert_eq!(metadata.kind, PluginKind::Policy);
    assert_eq!(metadata.contract_version, "0.2.0");
    assert!(!metadata.summary.is_empty(), "{metadata:?}");
    let declared: Vec<&str> = metadata
        .parameters
        .as_deref()
        .expect("a 0.2.0 plugin declares its parameters")
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for name in ["scale_out_alarm", "scale_in_alarm", "operation"] {
        assert!(declared.contains(&name), "{name} in {declared:?}");
    }
}

#[test]
fn step_rejects_a_missing_parameter_with_its_own_message() {
    let error = match host().load_policy(
        plugin("step"),
        r#"{"scale_out_alarm": "cpu-high"}"#,
        "orders",
    ) {
        Ok(_) => panic!("step accepted params without scale_in_alarm"),
        Err(error) => error,
    };
    let PluginError::Configure { message, .. } = &error else {
        panic!("expected a configure error, got {error:?}");
    };
    assert!(message.contains("scale_in_alarm"), "{message}");
    assert!(error.to_string().contains("plugin step 0.1.0"), "{error}");
}

#[test]
fn a_policy_is_not_accepted_as_an_interpreter() {
    let error = match host().load_interpreter(plugin("step"), "{}", "orders") {
        Ok(_) => panic!("step loaded as an interpreter"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            PluginError::WrongWorld {
                expected: PluginKind::Interpreter,
                found: PluginKind::Policy,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("step.wasm"), "{error}");
}

#[test]
fn compiled_components_are_reused_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = PluginHost::with_cache_dir(SandboxLimits::default(), dir.path().to_owned())
        .expect("engine");
    first
        .load_policy(plugin("step"), STEP_PARAMS, "orders")
        .expect("step loads");
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"), "{cached:?}");

    // A second agent loads the artifact instead of compiling, and it works.
    let second = PluginHost::with_cache_dir(SandboxLimits::default(), dir.path().to_owned())
        .expect("engine");
    let mut step = second
        .load_policy(plugin("step"), STEP_PARAMS, "orders")
        .expect("step loads from the cache");
    let decision = step
        .decide(&evaluation(
            app(2, 1, 10),
            AlarmState::Alarm,
            AlarmState::Ok,
        ))
        .expect("step decides");
    assert_eq!(decision.action, Action::ScaleTo(4));
}

/// The compiled artifact of `name` in a cache folder (named by the sha256
/// of the wasm).
fn artifact_of(dir: &std::path::Path, name: &str) -> PathBuf {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(std::fs::read(plugin(name)).expect("the wasm"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::read_dir(dir)
        .expect("the cache folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&hash))
        })
        .unwrap_or_else(|| panic!("no artifact of {name} in {}", dir.display()))
}

/// Loads step with a fresh host over `cache` (as a restarted agent would)
/// and checks it decides as step does; returns what was logged.
fn step_from_cache(cache: &std::path::Path) -> String {
    captured_logs(|| {
        let host =
            PluginHost::with_cache_dir(SandboxLimits::default(), cache.to_owned()).expect("engine");
        let mut step = host
            .load_policy(plugin("step"), STEP_PARAMS, "orders")
            .expect("step loads");
        assert_eq!(step.metadata().name, "step");
        let decision = step
            .decide(&evaluation(
                app(2, 1, 10),
                AlarmState::Alarm,
                AlarmState::Ok,
            ))
            .expect("step decides");
        assert_eq!(decision.action, Action::ScaleTo(4));
    })
}

const REFUSED: &str = "Refusing a compiled plugin from the cache";

/// A cache folder holding the artifacts of step and hold, written by a
/// first agent.
fn filled_cache() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("plugin-cache");
    let host = PluginHost::with_cache_dir(SandboxLimits::default(), cache.clone()).expect("engine");
    host.load_policy(plugin("step"), STEP_PARAMS, "orders")
        .expect("step loads");
    host.load_policy(plugin("hold"), "{}", "orders")
        .expect("hold loads");
    (dir, cache)
}

#[test]
fn the_cache_is_private_to_the_agent() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, cache) = filled_cache();
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&artifact_of(&cache, "step")), 0o600);
    assert_eq!(mode(&artifact_of(&cache, "hold")), 0o600);
    // An intact cache is used without complaint.
    let logs = step_from_cache(&cache);
    assert!(!logs.contains(REFUSED), "{logs}");
}

#[test]
fn a_swapped_artifact_is_detected_and_recompiled() {
    let (_dir, cache) = filled_cache();
    let step = artifact_of(&cache, "step");
    let hold = std::fs::read(artifact_of(&cache, "hold")).expect("hold's artifact");

    // A valid artifact, but of another plugin, under step's name: loading
    // it would run hold's code as step.
    std::fs::write(&step, &hold).expect("swap");
    let logs = step_from_cache(&cache);
    assert!(logs.contains(REFUSED), "{logs}");
    assert!(logs.contains("digest does not match"), "{logs}");
    // Replaced by a good one, used by the next agent without complaint.
    assert_ne!(std::fs::read(&step).expect("step's artifact"), hold);
    let logs = step_from_cache(&cache);
    assert!(!logs.contains(REFUSED), "{logs}");

    // Random bytes with the right name.
    std::fs::write(&step, [0x5a; 4096]).expect("overwrite");
    let logs = step_from_cache(&cache);
    assert!(logs.contains(REFUSED), "{logs}");
    let logs = step_from_cache(&cache);
    assert!(!logs.contains(REFUSED), "{logs}");
}

#[test]
fn a_torn_artifact_is_detected_and_replaced() {
    let (_dir, cache) = filled_cache();
    let step = artifact_of(&cache, "step");
    let whole = std::fs::read(&step).expect("step's artifact");
    std::fs::write(&step, &whole[..whole.len() / 2]).expect("truncate");
    let logs = step_from_cache(&cache);
    assert!(logs.contains(REFUSED), "{logs}");
    assert!(logs.contains("digest does not match"), "{logs}");
    assert_eq!(
        std::fs::read(&step).expect("step's artifact").len(),
        whole.len(),
        "the torn artifact was not replaced"
    );
}

#[test]
fn a_cache_writable_by_others_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, cache) = filled_cache();
    let step = artifact_of(&cache, "step");

    // Anyone could have put (or will put) native code in there.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let logs = step_from_cache(&cache);
    assert!(logs.contains(REFUSED), "{logs}");
    assert!(logs.contains("mode 777"), "{logs}");

    // A file writable by the group, in a private folder.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o664)).expect("chmod");
    let logs = step_from_cache(&cache);
    assert!(logs.contains(REFUSED), "{logs}");
    assert!(logs.contains("mode 664"), "{logs}");
}

// ---- misbehave: every misbehaviour is contained ----

#[test]
fn misbehave_ok_answers() {
    let mut plugin = misbehaving("ok");
    let decision = plugin.decide(&quiet()).expect("ok mode decides");
    assert_eq!(decision, Decision::hold("fine"));
}

#[test]
fn an_endless_loop_times_out_near_the_deadline_and_the_next_call_gets_a_fresh_instance() {
    let mut plugin = misbehaving("loop");
    for attempt in 1..=2 {
        let started = Instant::now();
        let (class, detail) = call_failure(plugin.decide(&quiet()));
        let elapsed = started.elapsed();
        assert_eq!(class, FailureClass::Timeout, "{detail}");
        assert!(detail.contains("100 ms"), "{detail}");
        assert!(
            elapsed >= Duration::from_millis(100),
            "stopped early: {elapsed:?}"
        );
        // Generous: the deadline is 100 ms plus one 10 ms tick, but the
        // machine running the tests may be busy.
        assert!(
            elapsed < Duration::from_secs(2),
            "stopped late: {elapsed:?}"
        );
        assert_eq!(plugin.consecutive_failures(), attempt);
    }
}

#[test]
fn a_trapped_instance_is_rebuilt_for_the_next_call() {
    // The same trap twice means the second call ran on a fresh instance: a
    // poisoned store would refuse entry with a different trap ("cannot
    // enter component instance").
    let mut plugin = misbehaving("trap");
    let (_, first) = call_failure(plugin.decide(&quiet()));
    let (class, second) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::Trap);
    assert_eq!(first, second);
    assert!(second.contains("unreachable"), "{second}");
    assert_eq!(plugin.consecutive_failures(), 2);
}

/// Taken by the tests that fill memory, so that they do not run at the
/// same time: each is heavy enough to push another's 100 ms memory bomb
/// past its deadline on a small host.
static MEMORY_HEAVY: Mutex<()> = Mutex::new(());

fn memory_heavy() -> std::sync::MutexGuard<'static, ()> {
    MEMORY_HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap() {
    let _heavy = memory_heavy();
    let mut plugin = misbehave(patient_host(), "memory").expect("misbehave memory loads");
    let (class, detail) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::OutOfMemory, "{detail}");
    assert!(detail.contains(&(64 * 1024 * 1024).to_string()), "{detail}");
    // And again on the rebuilt instance: the cap holds every time.
    let (class, _) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::OutOfMemory);
}

#[test]
fn a_smaller_memory_cap_is_honoured() {
    let host = PluginHost::new(SandboxLimits {
        memory_limit_bytes: 16 * 1024 * 1024,
        ..SandboxLimits::default()
    })
    .expect("engine");
    let mut plugin = misbehave(&host, "memory").expect("loads");
    let (class, detail) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::OutOfMemory);
    assert!(detail.contains(&(16 * 1024 * 1024).to_string()), "{detail}");
}

fn leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A binary section: id, size, content.
fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb128(content.len(), out);
    out.extend(content);
}

/// The `misbehave` component with a core `module` and `count` instances of
/// it appended: a valid policy (its exports are untouched) that creates
/// those instances when it is instantiated. Built here rather than as a
/// fixture crate because Rust can neither grow a table nor create extra
/// core instances; componentize-py and ComponentizeJS components can.
fn misbehave_with_instances(module: &[u8], count: usize) -> Vec<u8> {
    let mut component = std::fs::read(plugin("misbehave")).expect("misbehave.wasm");
    // The new module's index: the component's own core modules come first.
    // (wasm-component-ld writes them as top-level module sections, and
    // aliases none.)
    let mut modules = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        at += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let byte = component[at];
            at += 1;
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        if id == 1 {
            modules += 1;
        }
        at += size;
    }
    section(1, module, &mut component);
    let mut instances = Vec::new();
    leb128(count, &mut instances);
    for _ in 0..count {
        instances.push(0x00); // instantiate
        leb128(modules, &mut instances);
        instances.push(0x00); // with no arguments
    }
    section(2, &instances, &mut component);
    component
}

/// A core module whose start function grows its one table to 100,000
/// elements (the most one table may have) and writes every element.
fn table_bomb_module() -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[0x01, 0x60, 0x00, 0x00], &mut module); // type [] -> []
    section(3, &[0x01, 0x00], &mut module); // one function
    section(4, &[0x01, 0x70, 0x00, 0x00], &mut module); // table funcref, min 0
    section(8, &[0x00], &mut module); // start: function 0
    let elements = [0x41, 0xa0, 0x8d, 0x06]; // i32.const 100000
    let mut body = vec![0x00]; // no locals
    body.extend([0xd0, 0x70]); // ref.null func
    body.extend(elements);
    body.extend([0xfc, 0x0f, 0x00, 0x1a]); // table.grow 0, drop
    body.extend([0x41, 0x00, 0xd0, 0x70]); // i32.const 0, ref.null func
    body.extend(elements);
    body.extend([0xfc, 0x11, 0x00, 0x0b]); // table.fill 0, end
    let mut code = vec![0x01];
    leb128(body.len(), &mut code);
    code.extend(body);
    section(10, &code, &mut module);
    module
}

/// The limits for hostile components: the default memory cap, and a
/// deadline long enough that a slow (loaded, debug-built) host never turns
/// a memory refusal into a timeout.
fn bomb_limits() -> SandboxLimits {
    SandboxLimits {
        call_timeout: Duration::from_secs(30),
        ..SandboxLimits::default()
    }
}

/// Loads `wasm` as the misbehave policy in mode `ok`.
fn load_component(wasm: &[u8]) -> Result<PolicyInstance, PluginError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hostile.wasm");
    std::fs::write(&path, wasm).expect("write the component");
    PluginHost::new(bomb_limits()).expect("engine").load_policy(
        &path,
        r#"{"mode": "ok"}"#,
        "orders",
    )
}

/// A `/proc/self/status` field, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Loads `wasm` as a policy the way the agent does (following its file,
/// as the controller's decide stage) and fails it `after` times; returns
/// the errors and whether the controller's quarantine took it out.
fn fail_until_quarantined(wasm: &[u8], after: u32) -> (Vec<String>, bool) {
    use flinkscale::agent::PluginPolicy;
    use flinkscale::controller::{AfterFailure, Decide, PluginHealth, QuarantinePolicy};
    use flinkscale::plugin::Reloading;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hostile.wasm");
    std::fs::write(&path, wasm).expect("write the component");
    let host = Arc::new(PluginHost::new(bomb_limits()).expect("engine"));
    let mut policy = PluginPolicy(Reloading::policy_deferred(
        host,
        path,
        r#"{"mode": "ok"}"#.to_owned(),
        "orders".to_owned(),
    ));
    let quarantine = QuarantinePolicy::from_config(after, 60);
    let mut health = PluginHealth::default();
    let mut errors = Vec::new();
    for call in 0..after {
        let error = match policy.decide(&quiet()) {
            // Not a failure: the caller's assertions say what was expected.
            Ok(decision) => {
                errors.push(format!(
                    "call {call}: the hostile plugin answered {decision:?}"
                ));
                continue;
            }
            Err(error) => error,
        };
        errors.push(format!("{}: {error}", error.class.as_str()));
        if let AfterFailure::Quarantined { .. } = health.failed(0, &quarantine) {
            return (errors, true);
        }
    }
    (errors, false)
}

#[test]
fn a_table_bomb_is_stopped_at_the_memory_cap_and_the_plugin_quarantined() {
    let _heavy = memory_heavy();
    // 900 instances of a 100,000-element table: 720 MB of table under a
    // 64 MiB cap, if tables were not counted.
    let wasm = misbehave_with_instances(&table_bomb_module(), 900);

    // Peak resident memory, from here on (Linux: 5 resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let (rss_before, peak_before) = (status_kb("VmRSS"), status_kb("VmHWM"));
    let loaded = load_component(&wasm);
    let (errors, quarantined) = fail_until_quarantined(&wasm, 3);
    let (rss_after, peak_after) = (status_kb("VmRSS"), status_kb("VmHWM"));
    println!(
        "table bomb: VmRSS {rss_before} -> {rss_after} kB, peak {peak_before} -> {peak_after} kB"
    );
    // Four tries at 64 MiB each at most, one after the other; other tests
    // of this binary run alongside, hence the margin. Uncounted tables
    // reach about 720 MB.
    let grown_mib = peak_after.saturating_sub(peak_before) / 1024;
    assert!(grown_mib < 256, "peak RSS grew by {grown_mib} MiB");

    let error = match loaded {
        Ok(_) => panic!("the table bomb loaded"),
        Err(error) => error,
    };
    assert_eq!(error.class(), Some(FailureClass::OutOfMemory), "{error}");
    assert!(error.to_string().contains("instantiate"), "{error}");
    assert!(quarantined, "{errors:?}");
    for error in &errors {
        assert!(error.starts_with("out_of_memory: "), "{error}");
        assert!(error.contains("OutOfMemory"), "{error}");
    }
}

#[test]
fn an_instance_bomb_is_stopped_at_the_instance_cap() {
    let _heavy = memory_heavy();
    let empty = b"\0asm\x01\0\0\0".to_vec();
    let wasm = misbehave_with_instances(&empty, 900);
    let (errors, quarantined) = fail_until_quarantined(&wasm, 3);
    assert!(quarantined, "{errors:?}");
    for error in &errors {
        assert!(error.starts_with("resource_limit: "), "{error}");
        assert!(error.contains("ResourceLimit"), "{error}");
        assert!(error.contains("instance count too high"), "{error}");
    }
    // A plugin that needs a few more instances than a Rust one (as a
    // componentize-py one does) still loads.
    let wasm = misbehave_with_instances(&empty, 40);
    let mut plugin = load_component(&wasm).expect("40 more instances are fine");
    let decision = plugin.decide(&quiet()).expect("decides");
    assert_eq!(decision.reason, "fine");
}

#[test]
fn a_trap_is_reported_as_a_trap() {
    let mut plugin = misbehaving("trap");
    let (class, detail) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::Trap);
    assert!(detail.contains("unreachable"), "{detail}");
}

#[test]
fn a_panic_is_a_trap_and_its_message_reaches_the_log() {
    let mut plugin = misbehaving("panic");
    let mut result = None;
    let logs = captured_logs(|| result = Some(plugin.decide(&quiet())));
    let (class, _) = call_failure(result.expect("ran"));
    assert_eq!(class, FailureClass::Trap);
    assert!(logs.contains("misbehave: panic mode"), "{logs}");
    assert!(logs.contains("source=\"stderr\""), "{logs}");
    assert!(logs.contains("application=orders"), "{logs}");
}

#[test]
fn scale_to_zero_is_refused_by_validation() {
    let mut plugin = misbehaving("zero");
    let raw = plugin.decide(&quiet()).expect("zero mode answers");
    assert_eq!(raw.action, Action::ScaleTo(0));
    let decision = validate_decision(raw, &app(2, 1, 10));
    assert_eq!(decision.action, Action::Hold);
    assert!(
        decision.reason.contains("refused scale-to(0)"),
        "{}",
        decision.reason
    );
}

/// What the agent's decide stage makes of an answer outside the contract:
/// a failure of class `invalid` whose message names the plugin, the file
/// to fix and the application, as a trap's does (it used to say only
/// `invalid decision: ...` with the plugin's name, leaving an operator to
/// guess which file a hot reload had brought in).
#[test]
fn an_invalid_answer_fails_naming_the_plugins_file() {
    use flinkscale::controller::Decide;
    let host = Arc::new(PluginHost::new(SandboxLimits::default()).expect("the engine starts"));
    let path = plugin("misbehave");
    let policy = flinkscale::plugin::Reloading::policy(
        host,
        path.clone(),
        r#"{"mode": "zero"}"#.to_owned(),
        "orders".to_owned(),
    )
    .expect("misbehave loads");
    let mut policy = flinkscale::agent::PluginPolicy(policy);
    let failure = match policy.decide(&quiet()) {
        Ok(decision) => panic!("scale-to(0) must fail, got {decision:?}"),
        Err(failure) => failure,
    };
    assert_eq!(failure.class, FailureClass::Invalid, "{failure}");
    for part in [
        "plugin misbehave 0.1.0",
        &path.display().to_string(),
        "\"orders\"",
        "invalid decision: scale-to(0)",
    ] {
        assert!(failure.message.contains(part), "{part}: {failure}");
    }
}

#[test]
fn a_huge_target_is_clamped_to_max_kpu() {
    let mut plugin = misbehaving("huge");
    let raw = plugin.decide(&quiet()).expect("huge mode answers");
    let decision = validate_decision(raw, &app(2, 1, 10));
    assert_eq!(decision.action, Action::ScaleTo(10));
    assert!(
        decision.reason.contains("clamped from 1000000 to 10"),
        "{}",
        decision.reason
    );
}

/// An answer bigger than the host copies out of one call (16 MiB: a
/// 24 MiB reason, within the plugin's 64 MiB of memory) fails the call,
/// before the host holds a copy; wasmtime's own bound was 128 MiB, twice
/// the sandbox's memory.
#[test]
fn an_answer_past_what_the_host_copies_out_fails_the_call() {
    let mut plugin = misbehaving("bulky");
    let (class, detail) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::Trap, "{detail}");
    assert!(detail.contains("too much data"), "{detail}");
    assert!(detail.contains("more than 16 MiB in one call"), "{detail}");
}

#[test]
fn a_guest_error_is_reported_with_its_message_and_keeps_the_instance() {
    let mut plugin = misbehaving("error");
    for attempt in 1..=2 {
        let (class, detail) = call_failure(plugin.decide(&quiet()));
        assert_eq!(class, FailureClass::GuestError);
        assert_eq!(detail, "misbehave: error mode");
        assert_eq!(plugin.consecutive_failures(), attempt);
    }
}

#[test]
fn the_filesystem_is_out_of_reach() {
    let escape = std::path::Path::new("/tmp/flinkscale-misbehave");
    let _ = std::fs::remove_file(escape);
    let mut plugin = misbehaving("file");
    let raw = plugin.decide(&quiet()).expect("file mode answers");
    let decision = validate_decision(raw, &app(2, 1, 10));
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    assert!(
        decision.reason.contains("read failed"),
        "{}",
        decision.reason
    );
    assert!(
        decision.reason.contains("write failed"),
        "{}",
        decision.reason
    );
    assert!(!escape.exists(), "the plugin wrote {}", escape.display());
}

#[test]
fn the_environment_is_out_of_reach() {
    // Cargo gives every test process variables of its own.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert!(std::env::vars_os().count() > 0);
    let mut plugin = misbehaving("env");
    let decision = plugin.decide(&quiet()).expect("env mode answers");
    assert_eq!(decision, Decision::hold("no environment"));
}

/// A plugin has no clock but the evaluation's `now_ms`: its wall clock
/// reads the Unix epoch and its monotonic clock stands still, so a
/// decision cannot depend on when (or how fast) it runs, in the agent or
/// in a simulation.
#[test]
fn the_clocks_are_out_of_reach() {
    let mut plugin = misbehaving("clock");
    let decision = plugin.decide(&quiet()).expect("clock mode answers");
    assert_eq!(decision, Decision::hold("no clock"));
}

/// A plugin's randomness is repeatable: every instance of one file draws
/// the same bytes (here, the keys of two `HashMap`s), so that a
/// simulation, or a restarted agent, repeats the plugin's decisions.
#[test]
fn randomness_repeats_in_every_instance_of_one_file() {
    let draw = || {
        let mut plugin = misbehaving("random");
        match plugin.decide(&quiet()).expect("random mode answers").action {
            Action::Hold => {}
            other => panic!("random mode holds, got {other:?}"),
        }
        plugin.decide(&quiet()).expect("answers again").reason
    };
    let (first, second) = (draw(), draw());
    assert_eq!(first, second);
    let drawn: Vec<&str> = first
        .strip_prefix("random ")
        .unwrap_or_else(|| panic!("{first}"))
        .split(' ')
        .collect();
    // Two draws in one instance differ: randomness, not a constant.
    assert_eq!(drawn.len(), 2, "{first}");
    assert_ne!(drawn[0], drawn[1], "{first}");
}

#[test]
fn a_configure_error_reaches_the_user_with_the_plugins_message() {
    let error = match misbehave(host(), "configure-error") {
        Ok(_) => panic!("configure-error mode loaded"),
        Err(error) => error,
    };
    let PluginError::Configure { message, plugin } = &error else {
        panic!("expected a configure error, got {error:?}");
    };
    assert_eq!(message, "misbehave: configure-error mode, refusing 2 KPU");
    assert_eq!(plugin.application, "orders");
    assert!(error.to_string().contains("misbehave 0.1.0"), "{error}");
}

/// A Flink job's user reads the refusal in parallelism, as the plugin's
/// decisions and log lines are read: the contract's unit is KPU.
#[test]
fn a_configure_error_reads_in_parallelism_on_a_flink_job() {
    let error = match host().load_policy_in(
        plugin("misbehave"),
        r#"{"mode": "configure-error"}"#,
        "orders",
        Words::Flink,
    ) {
        Ok(_) => panic!("configure-error mode loaded"),
        Err(error) => error,
    };
    let PluginError::Configure { message, .. } = &error else {
        panic!("expected a configure error, got {error:?}");
    };
    assert_eq!(
        message,
        "misbehave: configure-error mode, refusing parallelism 2"
    );
    assert!(!error.to_string().contains("KPU"), "{error}");
}

#[test]
fn an_unknown_mode_is_a_configure_error() {
    let error = misbehave(host(), "sideways").err().expect("refused");
    assert!(error.to_string().contains("sideways"), "{error}");
}

#[test]
fn a_configure_that_never_returns_is_retried_once_then_times_out_at_load() {
    // Compiled beforehand, so that only the load is timed.
    host().check(plugin("misbehave")).expect("misbehave checks");
    let started = Instant::now();
    let mut outcome = None;
    let logs = captured_logs(|| outcome = Some(misbehave(host(), "slow-configure")));
    let elapsed = started.elapsed();
    let error = outcome.expect("ran").err().expect("refused");
    // A start call's deadline is ten times a call's (100 ms here) and at
    // least 1 s; a start past it is tried once more on a fresh instance.
    assert!(
        elapsed >= Duration::from_secs(2),
        "one deadline only: {elapsed:?}"
    );
    // Generous: the machine running the tests may be busy.
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    // The error names the deadline, the setting it comes from and the retry.
    for words in [
        "1000 ms deadline of an instance's start",
        "`plugin_timeout_ms`",
        "on two fresh instances in turn",
    ] {
        assert!(
            error.to_string().contains(words),
            "`{words}` missing: {error}"
        );
    }
    let PluginError::Call {
        function, class, ..
    } = &error
    else {
        panic!("expected a call failure, got {error:?}");
    };
    assert_eq!((*function, *class), ("configure", FailureClass::Timeout));
    assert!(error.to_string().contains("misbehave 0.1.0"), "{error}");
    let retried: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("retrying once on a fresh instance"))
        .collect();
    assert_eq!(retried.len(), 1, "{logs}");
    assert!(
        retried[0].contains("WARN")
            && retried[0].contains("plugin=misbehave")
            && retried[0].contains("application=orders")
            && retried[0].contains("configure"),
        "{}",
        retried[0]
    );
}

#[test]
fn plugin_log_lines_reach_the_agent_log_tagged() {
    let mut plugin = misbehaving("log");
    let mut decision = None;
    let logs = captured_logs(|| decision = Some(plugin.decide(&quiet())));
    assert_eq!(
        decision.expect("ran").expect("log mode answers"),
        Decision::hold("logged")
    );
    for level in ["trace", "debug", "info", "warn", "error"] {
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("misbehave: {level}")))
            .unwrap_or_else(|| panic!("no {level} line in:\n{logs}"));
        assert!(line.contains(&level.to_uppercase()), "{line}");
        assert!(line.contains("plugin=misbehave"), "{line}");
        assert!(line.contains("plugin_version=0.1.0"), "{line}");
        assert!(line.contains("application=orders"), "{line}");
    }
    // An MSF application's line says what the plugin wrote.
    assert!(
        logs.contains("misbehave: info at 2 KPU of max KPU 10 plugin=misbehave"),
        "{logs}"
    );
}

/// What a plugin logs through `log` reads in the job's unit on a Flink
/// job, as its reasons do: the agent (here the simulator's, over the same
/// assembly) loads the plugin for the application's target. The line is
/// still the plugin's (its target, plugin, version, application and
/// source); an MSF application's is unchanged.
#[test]
fn a_plugins_log_lines_read_in_parallelism_on_a_flink_job() {
    let info_lines = |target: &str| {
        let config = format!(
            "[agent]\nplugin_timeout_ms = 5000\n\n[[application]]\nname = \"app\"\n{target}\
             [application.policy]\nplugin = {:?}\nparams = {{ mode = \"log\" }}\n",
            plugin("misbehave").display().to_string()
        );
        let loaded = flinkscale::config::load_str(&config, Path::new("agent.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{config}"));
        let trace = flinkscale::sim::Trace::from_points(vec![(0.0, 1000.0), (300.0, 1000.0)])
            .expect("a valid trace");
        let mut scenario = flinkscale::sim::Scenario::single("log", trace, 300);
        scenario.applications[0].params.initial_kpu = 2;
        let logs = captured_logs(|| {
            flinkscale::sim::driver::simulate(&scenario, &loaded).expect("the simulation runs");
        });
        let lines: Vec<String> = logs
            .lines()
            .filter(|l| l.contains("misbehave: info"))
            .map(str::to_owned)
            .collect();
        assert!(!lines.is_empty(), "no info line logged:\n{logs}");
        lines
    };
    let flink = info_lines(
        "target = \"flink\"\nrest_url = \"http://127.0.0.1:9\"\nmax_parallelism = 10\n\n",
    );
    for line in &flink {
        assert!(
            line.contains(
                "flinkscale::plugin::guest: misbehave: info at parallelism 2 of max parallelism \
                 10 plugin=misbehave plugin_version=0.1.0 application=app source=\"log\""
            ),
            "{line}"
        );
    }
    let msf = info_lines("max_kpu = 10\n\n");
    for line in &msf {
        assert!(
            line.contains(
                "flinkscale::plugin::guest: misbehave: info at 2 KPU of max KPU 10 \
                 plugin=misbehave plugin_version=0.1.0 application=app source=\"log\""
            ),
            "{line}"
        );
    }
}

#[tokio::test]
async fn plugins_can_be_called_from_inside_a_tokio_runtime() {
    // Guest stderr goes through wasmtime-wasi's synchronous bindings, which
    // block on a runtime: the host must not do that on a runtime thread.
    let mut plugin = misbehaving("panic");
    let (class, _) = call_failure(plugin.decide(&quiet()));
    assert_eq!(class, FailureClass::Trap);
    let mut step = step();
    let decision = step
        .decide(&evaluation(
            app(2, 1, 10),
            AlarmState::Alarm,
            AlarmState::Ok,
        ))
        .expect("step decides");
    assert_eq!(decision.action, Action::ScaleTo(4));
}

/// Calls plugins that write to stdout and stderr (`declares`, on contract
/// 0.2.0), log through the host (`misbehave log`) and panic (`misbehave
/// panic`, its message on stderr) and checks each answer.
fn call_chatty_plugins() {
    let declares = wasm_dir().join("declares.wasm");
    let mut chatty = host()
        .load_policy(&declares, r#"{"threshold": 1}"#, "orders")
        .expect("declares loads");
    for _ in 0..3 {
        let decision = chatty.decide(&quiet()).expect("declares decides");
        // With the declared defaults the host fills in.
        assert!(
            decision.reason.contains(r#""threshold":1"#)
                && decision.reason.contains(r#""steps":2"#),
            "{}",
            decision.reason
        );
    }
    let decision = misbehaving("log").decide(&quiet()).expect("log decides");
    assert_eq!(decision.reason, "logged");
    let (class, _) = call_failure(misbehaving("panic").decide(&quiet()));
    assert_eq!(class, FailureClass::Trap);
}

/// Runs `f` on its own thread and fails the test if it does not finish in
/// time (a deadlock) or panics.
fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => worker.join().expect("no panic"),
        Err(_) if worker.is_finished() => {
            let panic = worker.join().expect_err("it ended without finishing");
            std::panic::resume_unwind(panic)
        }
        Err(_) => panic!("{what}: no answer within a minute (a deadlock?)"),
    }
}

#[test]
fn guest_stdio_works_from_async_code_and_from_the_blocking_pool() {
    within_a_minute("a current-thread runtime's task", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async { call_chatty_plugins() });
    });
    within_a_minute("a multi-thread runtime's worker", || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            tokio::spawn(async { call_chatty_plugins() })
                .await
                .expect("the task");
        });
    });
    within_a_minute("the blocking pool, marked as plugin work", || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            tokio::task::spawn_blocking(|| {
                flinkscale::plugin::on_plugin_thread(call_chatty_plugins)
            })
            .await
            .expect("the blocking task");
        });
    });
    within_a_minute("the blocking pool, unmarked", || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            tokio::task::spawn_blocking(call_chatty_plugins)
                .await
                .expect("the blocking task");
        });
    });
    within_a_minute("a plain thread, marked", || {
        flinkscale::plugin::on_plugin_thread(call_chatty_plugins)
    });
}

/// The simulator calls guests inline on the thread that drives its
/// runtime. There a guest that writes to stdout and stderr, panics (its
/// message on stderr), tries to sleep or opens sockets must get its answer
/// or its error, and its lines must reach the log: wasmtime-wasi's own
/// synchronous stdio and socket functions enter the current runtime
/// (`in_tokio`), which panicked the host there. The log is captured for
/// this thread only, so a line found in it was written on this thread.
#[test]
fn guests_run_inline_on_a_thread_that_drives_a_runtime() {
    within_a_minute("inline on a current-thread runtime's thread", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let logs = captured_logs(|| {
            runtime.block_on(async {
                flinkscale::plugin::on_plugin_thread(|| {
                    call_chatty_plugins();
                    let (class, detail) = call_failure(misbehaving("sleep").decide(&quiet()));
                    assert_eq!(class, FailureClass::Trap, "{detail}");
                    assert!(detail.contains("cannot sleep"), "{detail}");
                    let decision = misbehaving("net").decide(&quiet()).expect("net decides");
                    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
                    assert!(
                        decision.reason.contains("udp failed"),
                        "{}",
                        decision.reason
                    );
                })
            })
        });
        for line in [
            "declares: decide",
            "declares: decide (stderr)",
            "misbehave: panic mode",
            "misbehave: sleeping",
        ] {
            assert!(
                logs.contains(line),
                "{line:?} not logged on this thread: {logs}"
            );
        }
    });
}

#[test]
#[ignore = "a measurement, not a check: cargo test --test plugin_host -- --ignored --nocapture"]
fn measure_step_latency() {
    let path = plugin("step");
    let alarm = evaluation(app(2, 1, 10), AlarmState::Alarm, AlarmState::Ok);

    let started = Instant::now();
    let host = PluginHost::new(SandboxLimits::default()).expect("the engine starts");
    let engine = started.elapsed();

    let started = Instant::now();
    let mut first = host
        .load_policy(&path, STEP_PARAMS, "orders")
        .expect("loads");
    let compile_and_load = started.elapsed();

    // Cold: a new instance (compiled component cached) and its first call.
    let started = Instant::now();
    let mut cold = host
        .load_policy(&path, STEP_PARAMS, "orders")
        .expect("loads");
    let decision = cold.decide(&alarm).expect("decides");
    let cold_time = started.elapsed();
    assert_eq!(decision.action, Action::ScaleTo(4));

    let rounds = 10_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let decision = first.decide(&alarm).expect("decides");
        assert_eq!(decision.action, Action::ScaleTo(4));
    }
    let warm = started.elapsed() / rounds;

    // As the agent calls it: from tokio's blocking pool, marked as plugin
    // work (see `guarded` in plugin/instance.rs).
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let alarm_in_runtime = alarm.clone();
    let (first, warm_blocking) = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            flinkscale::plugin::on_plugin_thread(|| {
                let started = Instant::now();
                for _ in 0..rounds {
                    let decision = first.decide(&alarm_in_runtime).expect("decides");
                    assert_eq!(decision.action, Action::ScaleTo(4));
                }
                (first, started.elapsed() / rounds)
            })
        })
        .await
        .expect("the blocking task")
    });
    drop(first);

    // A restarted agent: the compiled artifact comes from the disk cache.
    let dir = tempfile::tempdir().expect("temp dir");
    PluginHost::with_cache_dir(SandboxLimits::default(), dir.path().to_owned())
        .expect("engine")
        .load_policy(&path, STEP_PARAMS, "orders")
        .expect("loads");
    let restarted = PluginHost::with_cache_dir(SandboxLimits::default(), dir.path().to_owned())
        .expect("engine");
    let started = Instant::now();
    restarted
        .load_policy(&path, STEP_PARAMS, "orders")
        .expect("loads");
    let from_disk = started.elapsed();
    println!(
        "step: engine start {engine:?}; compile + instantiate + configure {compile_and_load:?}; \
         cold instantiate + configure + first decide (compiled) {cold_time:?}; \
         verify + deserialize cached artifact + instantiate + configure {from_disk:?}; \
         warm decide {warm:?} (mean of {rounds}); \
         warm decide from tokio's blocking pool {warm_blocking:?}"
    );
}

/// An instance starts afresh (remembering nothing of earlier calls) until
/// its first call, and again after a trap: the next call starts the plugin
/// again. The controller hands such a call the policy's history.
#[test]
fn an_instance_starts_afresh_before_its_first_call_and_after_a_trap() {
    let mut fine = misbehaving("ok");
    assert!(fine.starts_afresh(), "loaded, not called");
    fine.decide(&quiet()).expect("decides");
    assert!(!fine.starts_afresh(), "called once");
    fine.decide(&quiet()).expect("decides");
    assert!(!fine.starts_afresh());

    let mut trapping = misbehaving("trap");
    assert!(trapping.starts_afresh());
    let error = trapping.decide(&quiet()).expect_err("traps");
    assert_eq!(error.class(), Some(FailureClass::Trap), "{error}");
    assert!(trapping.starts_afresh(), "the trapped instance is gone");

    // A guest error keeps the instance: it is not fresh.
    let mut erring = misbehaving("error");
    erring.decide(&quiet()).expect_err("errs");
    assert!(!erring.starts_afresh());
}
