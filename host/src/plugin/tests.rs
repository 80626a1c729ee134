//! Unit tests of the plugin host that need no plugin file: contract
//! dispatch errors, the host's own plumbing, and the built-ins against
//! their overrides. Tests with the real `step` and `misbehave` components
//! as files are in `host/tests/plugin_host.rs`.

use std::path::{Path, PathBuf};

use super::*;
use crate::plugin::builtin::{self, PluginSource};
use crate::target::Words;

fn host() -> PluginHost {
    PluginHost::new(SandboxLimits::default()).expect("the engine starts")
}

/// Writes `bytes` as a `.wasm` file in a fresh directory.
fn wasm_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, bytes).expect("write wasm");
    (dir, path)
}

/// A component that exports one empty instance under `name`: the smallest
/// thing that looks like a plugin of some contract version.
fn component_exporting(name: &str) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    // Instance section: one instance made of zero inline exports.
    bytes.extend([0x05, 0x03, 0x01, 0x01, 0x00]);
    // Export section: that instance under `name`, no type ascription.
    let name = name.as_bytes();
    let mut export = vec![0x01, 0x00, u8::try_from(name.len()).expect("short name")];
    export.extend(name);
    export.extend([0x05, 0x00, 0x00]);
    bytes.push(0x0b);
    bytes.push(u8::try_from(export.len()).expect("short section"));
    bytes.extend(export);
    bytes
}

fn load_error(path: &Path) -> PluginError {
    match host().load_policy(path, "{}", "orders") {
        Ok(_) => panic!("{} loaded as a policy", path.display()),
        Err(error) => error,
    }
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = load_error(Path::new("/nonexistent/step.wasm"));
    assert!(matches!(error, PluginError::Read { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/step.wasm"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_wasm_is_refused_with_the_file_named() {
    let (_dir, path) = wasm_file(b"#!/bin/sh\necho hello\n");
    let error = load_error(&path);
    assert!(
        matches!(error, PluginError::NotAComponent { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("wasm32-wasip2"), "{text}");
}

#[test]
fn a_core_module_is_not_a_component() {
    // The smallest valid core module: magic and version 1.
    let (_dir, path) = wasm_file(&[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    let error = load_error(&path);
    assert!(
        matches!(error, PluginError::NotAComponent { .. }),
        "{error:?}"
    );
}

#[test]
fn a_component_without_the_contract_lists_what_it_exports_and_what_is_supported() {
    let (_dir, path) = wasm_file(&component_exporting("example:other/thing"));
    let error = load_error(&path);
    let PluginError::UnsupportedContract {
        found, supported, ..
    } = &error
    else {
        panic!("expected an unsupported contract, got {error:?}");
    };
    assert_eq!(found, &["example:other/thing".to_owned()]);
    assert!(supported.contains(&"flinkscale:plugin/policy@0.1.0".to_owned()));
    let text = error.to_string();
    assert!(text.contains("example:other/thing"), "{text}");
    assert!(text.contains("flinkscale:plugin/policy@0.1.0"), "{text}");
    // Not flinkscale's at all: no hint to guess with.
    assert!(
        text.ends_with("flinkscale:plugin/interpreter@0.1.0]"),
        "{text}"
    );
}

/// A component that exports nothing (a Rust plugin without its export
/// macro) is told how a plugin exports its world.
#[test]
fn a_component_exporting_nothing_is_told_how_to_export() {
    let (_dir, path) = wasm_file(&[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    let error = load_error(&path);
    assert!(
        matches!(&error, PluginError::UnsupportedContract { found, .. } if found.is_empty()),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("found exports []")
            && text.contains("; it exports nothing: a Rust plugin registers its type with `flinkscale_plugin::export_policy!`"),
        "{text}"
    );
}

#[test]
fn a_future_contract_version_is_refused_naming_the_versions() {
    let (_dir, path) = wasm_file(&component_exporting("flinkscale:plugin/policy@9.0.0"));
    let error = load_error(&path);
    assert!(
        matches!(error, PluginError::UnsupportedContract { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("flinkscale:plugin/policy@9.0.0"), "{text}");
    assert!(text.contains("flinkscale:plugin/policy@0.1.0"), "{text}");
    assert!(
        text.ends_with("; it was built against a contract version this agent does not know (a newer one?): upgrade flinkscale, or rebuild the plugin against a version above (`flinkscale plugin sdk DIR` writes the WIT files)"),
        "{text}"
    );
    // `check` dispatches the same way.
    assert!(matches!(
        host().check(&path),
        Err(PluginError::UnsupportedContract { .. })
    ));
}

#[test]
fn an_interpreter_export_is_the_wrong_world_for_a_policy() {
    let (_dir, path) = wasm_file(&component_exporting("flinkscale:plugin/interpreter@0.1.0"));
    let error = load_error(&path);
    let PluginError::WrongWorld {
        expected, found, ..
    } = &error
    else {
        panic!("expected the wrong world, got {error:?}");
    };
    assert_eq!(
        (*expected, *found),
        (PluginKind::Policy, PluginKind::Interpreter)
    );
    assert!(error.to_string().contains("metric interpreter"), "{error}");
}

#[test]
fn an_export_of_the_right_name_but_the_wrong_shape_fails_to_link() {
    // The empty instance has none of the policy's functions.
    let (_dir, path) = wasm_file(&component_exporting("flinkscale:plugin/policy@0.1.0"));
    let error = load_error(&path);
    assert!(matches!(error, PluginError::Link { .. }), "{error:?}");
}

#[test]
fn the_deadline_is_never_shorter_than_the_timeout() {
    use std::time::Duration;
    let tick = engine::EPOCH_TICK.as_millis() as u64;
    for ms in [1, 9, 10, 11, 100, 250] {
        let ticks = engine::deadline_ticks(Duration::from_millis(ms));
        // The first tick may come at once, so one tick is not counted.
        assert!((ticks - 1) * tick >= ms, "{ms} ms -> {ticks} ticks");
        assert!(
            (ticks - 2) * tick < ms,
            "{ms} ms -> {ticks} ticks is too many"
        );
    }
}

#[test]
fn instances_can_move_to_controller_tasks() {
    fn assert_send<T: Send>() {}
    assert_send::<PolicyInstance>();
    assert_send::<InterpreterInstance>();
    fn assert_shared<T: Send + Sync>() {}
    assert_shared::<PluginHost>();
}

/// Collects everything logged through `tracing` while `f` runs, as text.
fn captured_logs(f: impl FnOnce()) -> String {
    crate::telemetry::captured_logs(false, f)
}

#[test]
fn a_flood_of_plugin_log_lines_is_cut_per_call_and_counted() {
    use sandbox::{GuestLog, MAX_LOG_LINES_PER_CALL};
    let log = GuestLog::new("chatty", "orders", Words::Msf);
    let logs = captured_logs(|| {
        for _call in 0..2 {
            log.begin_call();
            for i in 0..1000 {
                log.line(tracing::Level::INFO, "log", format!("line {i}").as_bytes());
            }
            log.end_call();
        }
    });
    let kept = logs.lines().filter(|l| l.contains("line ")).count();
    assert_eq!(kept, 2 * MAX_LOG_LINES_PER_CALL as usize);
    let notices: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("Plugin log lines suppressed."))
        .collect();
    assert_eq!(notices.len(), 2, "{logs}");
    let dropped = 1000 - MAX_LOG_LINES_PER_CALL;
    assert!(
        notices[0].contains(&format!("suppressed={dropped}")),
        "{}",
        notices[0]
    );
}

#[test]
fn blank_guest_lines_are_not_logged() {
    use sandbox::{GuestLog, Stream};
    let log = GuestLog::new("panicky", "orders", Words::Msf);
    let logs = captured_logs(|| {
        log.begin_call();
        // What a Rust guest's panic writes to stderr.
        log.write(
            Stream::Stderr,
            b"\nthread '<unnamed>' (1) panicked at src/lib.rs:18:24:\nboom\n  \n",
        );
        log.line(tracing::Level::INFO, "log", b"");
        log.end_call();
    });
    let lines: Vec<_> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].contains(": thread '<unnamed>' (1) panicked at"),
        "{logs}"
    );
    assert!(lines[1].contains(": boom plugin=panicky"), "{logs}");
    // What the call said on stderr stays until the next call, for a trap's
    // description.
    assert_eq!(
        log.stderr_tail(),
        [
            "thread '<unnamed>' (1) panicked at src/lib.rs:18:24:",
            "boom"
        ]
    );
    log.begin_call();
    assert!(log.stderr_tail().is_empty());
}

/// What a plugin logs through `log` for a Flink job reads in parallelism,
/// tagged as the plugin's as before; its stdout and stderr are left as
/// written, and an MSF application's lines as they are.
#[test]
fn a_plugins_log_lines_read_in_the_jobs_unit_on_a_flink_job() {
    use sandbox::{GuestLog, Stream};
    let said = |words: Words| {
        let log = GuestLog::new("step", "orders", words);
        captured_logs(|| {
            log.begin_call();
            log.line(tracing::Level::INFO, "log", b"scale out from 2 to 4 KPU");
            log.write(Stream::Stdout, b"printed 4 KPU\n");
            log.end_call();
        })
    };
    let flink = said(Words::Flink);
    let lines: Vec<_> = flink.lines().collect();
    assert_eq!(lines.len(), 2, "{flink}");
    assert!(
        lines[0].contains(
            "flinkscale::plugin::guest: scale out from 2 to parallelism 4 plugin=step \
             plugin_version=? application=orders source=\"log\""
        ),
        "{flink}"
    );
    assert!(lines[1].contains(": printed 4 KPU plugin=step"), "{flink}");
    let msf = said(Words::Msf);
    assert!(
        msf.contains(": scale out from 2 to 4 KPU plugin=step"),
        "{msf}"
    );
    assert!(msf.contains(": printed 4 KPU plugin=step"), "{msf}");
}

#[test]
fn guest_stdout_is_logged_line_by_line_and_long_lines_are_cut() {
    use sandbox::{GuestLog, MAX_LOG_LINE_BYTES, Stream};
    let log = GuestLog::new("printer", "orders", Words::Msf);
    let logs = captured_logs(|| {
        log.begin_call();
        log.write(Stream::Stdout, b"first li");
        log.write(Stream::Stdout, b"ne\nsecond line\nunterminated");
        log.write(Stream::Stderr, &[b'x'; 5000]);
        log.end_call();
    });
    let lines: Vec<_> = logs.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(": first line plugin=printer")),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(": second line plugin=printer")),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(": unterminated plugin=printer")),
        "{logs}"
    );
    let long = lines
        .iter()
        .find(|l| l.contains("xxxx"))
        .unwrap_or_else(|| panic!("no stderr line in {logs}"));
    let xs = long.chars().filter(|c| *c == 'x').count();
    assert!(xs < MAX_LOG_LINE_BYTES, "{xs} bytes kept");
    assert!(long.contains("WARN"), "{long}");
    // 5000 bytes make at most a handful of cut lines, not 5000 lines.
    assert!(
        lines.iter().filter(|l| l.contains("xxxx")).count() <= 5,
        "{logs}"
    );
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

/// A section: its id, its size, its content.
fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb128(content.len(), out);
    out.extend(content);
}

/// A component holding one core module whose one function is 50,000
/// `i32.const 0; drop` pairs: valid, and far from instant to compile.
fn slow_to_compile_component() -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[0x01, 0x60, 0x00, 0x00], &mut module); // type: [] -> []
    section(3, &[0x01, 0x00], &mut module); // one function of type 0
    let mut body = vec![0x00]; // no locals
    for _ in 0..50_000 {
        body.extend([0x41, 0x00, 0x1a]);
    }
    body.push(0x0b);
    let mut code = vec![0x01];
    leb128(body.len(), &mut code);
    code.extend(body);
    section(10, &code, &mut module);
    let mut component = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    section(1, &module, &mut component); // core module section
    component
}

/// A compile that panics (a compiler bug) fails its load at once with
/// what it said, and is tried again by the next load: before stop 59 its
/// slot was never finished, so every load of those bytes waited its
/// whole compile timeout and was told the compile was still under way.
#[test]
fn a_compile_that_panics_fails_at_once_and_the_next_load_tries_again() {
    use cache::{CacheError, ComponentCache, PANICS_IN_THE_COMPILER};
    use std::time::{Duration, Instant};
    let engine = wasmtime::Engine::default();
    let cache = ComponentCache::new(&engine, None);
    for attempt in 0..2 {
        let started = Instant::now();
        match cache.get_or_compile(&engine, PANICS_IN_THE_COMPILER, Duration::from_secs(60)) {
            Err(CacheError::Compile(message)) => assert!(
                message.contains("the compiler panicked (an injected compiler panic)"),
                "{attempt}: {message}"
            ),
            other => panic!("{attempt}: {:?}", other.err()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{attempt}: waited {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_compile_past_its_deadline_is_a_typed_error_and_is_not_started_twice() {
    use cache::{CacheError, ComponentCache, Origin};
    use std::time::{Duration, Instant};
    let engine = wasmtime::Engine::default();
    let cache = ComponentCache::new(&engine, None);
    let wasm = slow_to_compile_component();
    // Nothing compiles in no time: the load gives up at once, typed.
    assert_eq!(
        cache.get_or_compile(&engine, &wasm, Duration::ZERO).err(),
        Some(CacheError::TimedOut(Duration::ZERO))
    );
    // The compile went on in the background; a later load takes its result
    // rather than compiling again.
    let started = Instant::now();
    let origin = loop {
        match cache.get_or_compile(&engine, &wasm, Duration::ZERO) {
            Ok((_, origin)) => break origin,
            Err(CacheError::TimedOut(_)) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("{error:?}"),
        }
    };
    assert_eq!(origin, Origin::Memory);
}

#[test]
fn the_cache_prunes_idle_artifacts_sooner_for_other_engines_and_nothing_else() {
    use cache::{MAX_ARTIFACT_IDLE, MAX_OTHER_ENGINE_IDLE, MAX_PARTIAL_IDLE, prune};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let engine = "0123456789abcdef";
    let wasm = |c: char| c.to_string().repeat(64);
    let current = format!("{}-{engine}.cwasm", wasm('a'));
    let idle = format!("{}-{engine}.cwasm", wasm('b'));
    // Another version sharing the folder, in use: it renews its own.
    let other_engine = format!("{}-fedcba9876543210.cwasm", wasm('c'));
    // An older version's, not run for longer than a week.
    let other_engine_idle = format!("{}-fedcba9876543210.cwasm", wasm('e'));
    let not_ours = ["notes.txt", "x-0123456789abcdef.cwasm"];
    let partial = format!("{}-{engine}.tmp-1-0", wasm('d'));
    // Left by a write killed before its rename, more than an hour ago.
    let partial_left = format!("{}-{engine}.tmp-7-3", wasm('f'));
    for name in [
        current.as_str(),
        &idle,
        &other_engine,
        &other_engine_idle,
        &partial,
        &partial_left,
    ]
    .into_iter()
    .chain(not_ours)
    {
        let path = dir.path().join(name);
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let now = SystemTime::now();
    let age = |name: &str, by: Duration| {
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
            .unwrap()
            .set_modified(now - by)
            .unwrap();
    };
    age(&idle, MAX_ARTIFACT_IDLE + Duration::from_secs(60));
    age(
        &other_engine,
        MAX_OTHER_ENGINE_IDLE - Duration::from_secs(60),
    );
    age(
        &other_engine_idle,
        MAX_OTHER_ENGINE_IDLE + Duration::from_secs(60),
    );
    age(&partial, MAX_PARTIAL_IDLE - Duration::from_secs(60));
    age(&partial_left, MAX_PARTIAL_IDLE + Duration::from_secs(60));

    assert_eq!(prune(dir.path(), engine, now), 3);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = vec![
        current,
        other_engine,
        partial,
        not_ours[0].to_owned(),
        not_ours[1].to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected);

    // A folder others may write to is not the agent's: nothing is touched.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(prune(dir.path(), "ffffffffffffffff", now), 0);
}

#[test]
fn an_artifact_loaded_from_disk_is_renewed() {
    use cache::{ComponentCache, Origin};
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().expect("a temporary folder");
    let cache_dir = dir.path().join("plugin-cache");
    let engine = wasmtime::Engine::default();
    // The empty component: magic, component version and layer.
    let wasm = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let first = ComponentCache::new(&engine, Some(cache_dir.clone()));
    assert_eq!(origin(&first, &engine, &wasm), Some(Origin::Compiled));
    let artifact = the_artifact(&cache_dir);
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86_400);
    set_modified(&artifact, ten_days_ago);

    let second = ComponentCache::new(&engine, Some(cache_dir));
    assert_eq!(origin(&second, &engine, &wasm), Some(Origin::Disk));
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    assert!(
        modified > ten_days_ago + Duration::from_secs(86_400),
        "loading it renewed it: {modified:?}"
    );

    // Loaded again from memory (a restarted instance, a reload of the
    // same bytes): renewed too, so that an agent running longer than
    // MAX_ARTIFACT_IDLE does not have its plugins' artifacts pruned at its
    // next start.
    set_modified(&artifact, ten_days_ago);
    assert_eq!(origin(&second, &engine, &wasm), Some(Origin::Memory));
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    assert!(
        modified > ten_days_ago + Duration::from_secs(86_400),
        "a load from memory renewed it: {modified:?}"
    );
}

/// At most [`cache::MAX_IN_MEMORY`] compiled components stay in memory:
/// the least recently asked for go first (each file version a drop-in
/// replaced stayed for the life of the agent before), and one asked for
/// again is compiled (or read from the disk cache) again.
#[test]
fn the_memory_cache_forgets_the_least_recently_used_components() {
    use cache::{ComponentCache, MAX_IN_MEMORY, Origin};
    let engine = wasmtime::Engine::default();
    // The empty component with a custom section naming `i`: a distinct
    // wasm (and sha256) for each.
    let wasm = |i: usize| {
        let name = format!("v{i}");
        let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        bytes.extend([0, (name.len() + 1) as u8, name.len() as u8]);
        bytes.extend(name.as_bytes());
        bytes
    };
    let cache = ComponentCache::new(&engine, None);
    let origin = |i: usize| {
        cache
            .get_or_compile(&engine, &wasm(i), cache::COMPILE_TIMEOUT)
            .map(|(_, origin)| origin)
            .expect("compiles")
    };
    for i in 0..MAX_IN_MEMORY {
        assert_eq!(origin(i), Origin::Compiled, "{i}");
    }
    // 0 asked for again: the most recently used now; 1 is the oldest.
    assert_eq!(origin(0), Origin::Memory);
    assert_eq!(origin(MAX_IN_MEMORY), Origin::Compiled);
    assert_eq!(origin(0), Origin::Memory, "kept: used lately");
    assert_eq!(origin(2), Origin::Memory, "kept: one was forgotten");
    assert_eq!(origin(1), Origin::Compiled, "forgotten, compiled again");
}

#[test]
fn a_compile_timeout_names_the_plugin_and_what_happens_next() {
    let error = PluginError::CompileTimeout {
        path: PathBuf::from("/plugins/big.wasm"),
        timeout: std::time::Duration::from_secs(60),
    };
    let text = error.to_string();
    assert!(text.contains("/plugins/big.wasm"), "{text}");
    assert!(text.contains("60 s"), "{text}");
    // A slow host is told what to raise.
    assert!(text.contains("plugin_compile_timeout_secs"), "{text}");
    assert_eq!(error.class(), None);
}

/// A `plugin = "hold"` configuration in `dir`, with `dir/plugins` as its
/// plugin folder, loaded and started like the agent does.
fn load_hold_from(dir: &Path) -> (crate::config::load::LoadedConfig, String) {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"hold\"\n",
    )
    .expect("config written");
    let loaded = crate::config::load::load(&path).expect("valid: hold is built in");
    let source = loaded.plugins[0].policy.clone();
    let host = std::sync::Arc::new(host());
    let logs = captured_logs(|| {
        Reloading::policy(host, source, "{}".to_owned(), "orders".to_owned()).expect("loads");
    });
    (loaded, logs)
}

/// `plugin = "hold"` with no file runs the embedded `hold`, and the log
/// says so with its version and sha256; a `hold.wasm` in `plugin_dir`
/// overrides it, and the log names that file and its sha256 instead.
#[test]
fn a_file_in_plugin_dir_overrides_the_built_in_and_the_log_says_which_runs() {
    let hold = builtin::find("hold").expect("hold is built in");
    let dir = tempfile::tempdir().expect("temp dir");

    let (loaded, logs) = load_hold_from(dir.path());
    assert_eq!(loaded.plugins[0].policy, PluginSource::BuiltIn(hold));
    let line = logs
        .lines()
        .find(|l| l.contains("Plugin loaded."))
        .unwrap_or_else(|| panic!("no load line in:\n{logs}"));
    for expected in [
        "plugin=hold",
        "plugin_version=0.1.0",
        &format!("sha256={}", builtin::sha256_hex(hold.bytes)),
        "source=built-in",
        "application=orders",
    ] {
        assert!(line.contains(expected), "{expected:?} in {line}");
    }

    // Another real component under the built-in's name: `rate`, which also
    // accepts no parameters and names itself differently.
    let rate = builtin::find("rate").expect("rate is built in");
    let file = dir.path().join("plugins/hold.wasm");
    std::fs::create_dir(dir.path().join("plugins")).expect("plugin dir");
    std::fs::write(&file, rate.bytes).expect("override written");
    let (loaded, logs) = load_hold_from(dir.path());
    assert_eq!(loaded.plugins[0].policy, PluginSource::File(file.clone()));
    let line = logs
        .lines()
        .find(|l| l.contains("Plugin loaded."))
        .unwrap_or_else(|| panic!("no load line in:\n{logs}"));
    for expected in [
        "plugin=rate".to_owned(),
        format!("sha256={}", builtin::sha256_hex(rate.bytes)),
        format!("source={}", file.display()),
    ] {
        assert!(line.contains(&expected), "{expected:?} in {line}");
    }
    assert!(!line.contains("built-in"), "{line}");
}

/// An evaluation with `n` series of `points` points, and names that
/// differ with `tag`, so that a reused record must change everywhere.
fn varied_evaluation(n: usize, points: usize, tag: &str) -> crate::model::Evaluation {
    use crate::metrics::{Datapoint, MetricQuery, Series};
    use crate::model::{AlarmState, AlarmStatus, Application, Evaluation, Signal};
    Evaluation {
        now_ms: 1_000 + n as i64,
        app: Application {
            name: format!("app-{tag}"),
            status: crate::target::AppStatus::Running,
            kpu: n as u32 + 1,
            parallelism: 4,
            parallelism_per_kpu: 1,
            min_kpu: 1,
            max_kpu: 9,
            version_id: 2,
            last_rescale_ms: Some(5),
            last_update_duration_secs: None,
        },
        metrics: (0..n)
            .map(|i| Series {
                query: MetricQuery {
                    id: format!("m{i}-{tag}"),
                    namespace: format!("ns-{tag}"),
                    metric_name: format!("name-{tag}"),
                    dimensions: Default::default(),
                    statistic: format!("stat-{tag}"),
                    period_secs: 60 + i as u32,
                    expression: None,
                },
                points: (0..points)
                    .map(|p| Datapoint {
                        timestamp_ms: p as i64,
                        value: if p == 1 { f64::NAN } else { p as f64 },
                    })
                    .collect(),
            })
            .collect(),
        alarms: (0..n)
            .map(|i| AlarmStatus {
                name: format!("a{i}-{tag}"),
                state: [AlarmState::Ok, AlarmState::Alarm][i % 2],
                since_ms: i as i64,
            })
            .collect(),
        signals: (0..n)
            .map(|i| Signal {
                name: format!("s{i}-{tag}"),
                value: i as f64,
            })
            .collect(),
    }
}

#[test]
fn a_reused_guest_evaluation_is_exactly_a_fresh_conversion() {
    // Longer, then shorter, then longer again than the record it reuses.
    let mut reused = v0_2_0::evaluation(&varied_evaluation(2, 3, "first"));
    for (n, points, tag) in [(5, 20, "second"), (1, 0, "third"), (3, 4, "fourth")] {
        let evaluation = varied_evaluation(n, points, tag);
        v0_2_0::fill_evaluation(&evaluation, &mut reused);
        assert_eq!(
            format!("{reused:?}"),
            format!("{:?}", v0_2_0::evaluation(&evaluation)),
            "{n} series of {points} points"
        );
    }
}

/// The points reach a real guest as written, one block per series: the
/// built-in target-tracking reads the latest CPU value of the `cpu`
/// series, placed after a series of another length, with a NaN last (the
/// host drops it) and then with no points at all.
#[test]
fn a_policy_reads_the_datapoints_the_host_lowers() {
    use crate::metrics::Datapoint;
    let target_tracking = builtin::find("target-tracking").expect("a built-in target-tracking");
    let mut policy = host()
        .load_policy(
            PluginSource::BuiltIn(target_tracking),
            r#"{"target_utilisation": 0.5, "tolerance": 0.1, "warmup_secs": 0}"#,
            "orders",
        )
        .expect("target-tracking loads");
    let mut evaluation = varied_evaluation(2, 7, "points");
    evaluation.app.kpu = 1;
    evaluation.app.parallelism = 1;
    evaluation.app.last_rescale_ms = None;
    evaluation.now_ms = 240_000;
    evaluation.metrics[1].query.id = "cpu".to_owned();
    let point = |timestamp_ms: i64, value: f64| Datapoint {
        timestamp_ms,
        value,
    };
    for (points, expected) in [
        (
            vec![
                point(60_000, 40.0),
                point(120_000, 83.0),
                point(180_000, f64::NAN),
            ],
            "CPU 83 % is above 60 %",
        ),
        (
            vec![point(60_000, 97.0), point(120_000, 55.0)],
            "CPU 55 % is within 50 % +- 10 %",
        ),
        (Vec::new(), "no CPU measured since the last rescale yet"),
    ] {
        evaluation.metrics[1].points = points;
        let decision = policy.decide(&evaluation).expect("target-tracking decides");
        assert!(
            decision.reason.starts_with(expected),
            "{expected:?} in {:?}",
            decision.reason
        );
    }
}

/// Hosts of one process share their compiled components: a second host
/// loading a plugin the first loaded compiles nothing (`bench` assembles a
/// host per run, and each compiled its plugin again).
#[test]
fn a_second_host_reuses_the_components_the_first_compiled() {
    let step = builtin::find("step").expect("a built-in step");
    let params = r#"{"scale_out_alarm": "cpu-high", "scale_in_alarm": "cpu-low"}"#;
    host()
        .load_policy(PluginSource::BuiltIn(step), params, "orders")
        .expect("step loads");
    let logs = captured_logs(|| {
        host()
            .load_policy(PluginSource::BuiltIn(step), params, "orders")
            .expect("step loads again");
    });
    assert!(
        !logs.contains("Plugin component ready."),
        "the second host compiled step again: {logs}"
    );
}

/// A real plugin file replaced under a policy loading in the background:
/// the call that notices it returns at once and the running `hold` keeps
/// deciding; once the new component (`rate`) is compiled and configured,
/// the next refresh swaps it in; the same file is not loaded again.
#[test]
fn a_replaced_file_compiles_beside_the_running_policy_and_runs_from_the_next_refresh() {
    let (hold, rate) = (
        builtin::find("hold").expect("hold is built in"),
        builtin::find("rate").expect("rate is built in"),
    );
    let (_dir, path) = wasm_file(hold.bytes);
    let host = std::sync::Arc::new(host());
    let mut policy = Reloading::policy(host, path.clone(), "{}".to_owned(), "orders".to_owned())
        .expect("hold loads")
        .in_background();
    let evaluation = varied_evaluation(1, 3, "bg");
    assert_eq!(policy.refresh(), Refresh::Unchanged);

    std::fs::write(&path, rate.bytes).expect("rate written over hold");
    assert_eq!(policy.refresh(), Refresh::Unchanged, "noticed, loading");
    assert!(policy.is_loading());
    let decision = policy
        .get()
        .expect("hold runs")
        .decide(&evaluation)
        .expect("hold decides while rate loads");
    assert_eq!(decision.reason, "observe only");
    assert!(policy.label().starts_with("hold"), "{}", policy.label());

    policy.wait_for_load();
    let Refresh::Reloaded { from, to, sha256 } = policy.refresh() else {
        panic!("rate runs from the first refresh after its load");
    };
    assert!(
        from.starts_with("hold") && to.starts_with("rate"),
        "{from} -> {to}"
    );
    assert_eq!(sha256, builtin::sha256_hex(rate.bytes));
    assert!(policy.get().expect("rate runs").label().starts_with("rate"));
    assert_eq!(policy.refresh(), Refresh::Unchanged);
    assert!(!policy.is_loading());
}

/// The prune that follows each artifact written keeps the artifacts of the
/// components in use from memory, however long ago they were loaded from
/// the folder: an agent running a plugin for longer than
/// [`cache::MAX_ARTIFACT_IDLE`] without reloading it keeps its artifact
/// for its next start.
#[test]
fn the_prune_after_a_write_keeps_the_components_in_use() {
    use cache::{ComponentCache, MAX_ARTIFACT_IDLE, Origin};
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().expect("a temporary folder");
    let cache_dir = dir.path().join("plugin-cache");
    let engine = wasmtime::Engine::default();
    // The empty component, and one with a custom section: two components.
    let first = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let mut second = first.to_vec();
    second.extend_from_slice(&[0, 6, 5, b'n', b'o', b't', b'e', b'!']);
    let cache = ComponentCache::new(&engine, Some(cache_dir.clone()));
    assert_eq!(origin(&cache, &engine, &first), Some(Origin::Compiled));
    let artifact = the_artifact(&cache_dir);
    let long_ago = SystemTime::now() - MAX_ARTIFACT_IDLE - Duration::from_secs(86_400);
    set_modified(&artifact, long_ago);
    assert_eq!(origin(&cache, &engine, &second), Some(Origin::Compiled));
    let modified = std::fs::metadata(&artifact)
        .expect("the artifact in use is kept")
        .modified()
        .unwrap();
    assert!(
        modified > long_ago + Duration::from_secs(86_400),
        "renewed: {modified:?}"
    );
}

/// Sets the modification time of `path` to `when`.
fn set_modified(path: &std::path::Path, when: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Where `cache` had the component of `wasm` from, if it had it.
fn origin(
    cache: &cache::ComponentCache,
    engine: &wasmtime::Engine,
    wasm: &[u8],
) -> Option<cache::Origin> {
    cache
        .get_or_compile(engine, wasm, cache::COMPILE_TIMEOUT)
        .map(|(_, origin)| origin)
        .ok()
}

/// The one artifact written in the cache folder `dir`.
fn the_artifact(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("an artifact was written")
}

/// Invalid metadata (an empty name, a parameter past the host's limits)
/// is the file's fault and fails the same way every time: a configuration
/// error (the agent exits 78 and names the `plugin` field; a hot reload
/// does not try it again until the file changes), while the same class
/// from a later call, or any other class from `metadata`, may pass on
/// another try.
#[test]
fn invalid_metadata_is_a_configuration_error() {
    let call = |function: &'static str, class: FailureClass| PluginError::Call {
        plugin: Box::new(PluginIdentity {
            name: "odd".to_owned(),
            version: "?".to_owned(),
            path: PathBuf::from("odd.wasm"),
            application: "orders".to_owned(),
        }),
        function,
        class,
        detail: "a parameter's meaning is over 1024 bytes".to_owned(),
    };
    let metadata = call("metadata", FailureClass::Invalid);
    assert!(metadata.is_configuration());
    assert_eq!(metadata.config_field(), "plugin");
    assert!(!call("metadata", FailureClass::Trap).is_configuration());
    assert!(!call("metadata", FailureClass::Timeout).is_configuration());
    assert!(!call("decide", FailureClass::Invalid).is_configuration());
}
