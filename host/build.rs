//! Builds the shipped plugins for `wasm32-wasip2` and embeds them in the
//! binary, so that an installed `flinkscale` runs its own policies without
//! a source checkout (`src/plugin/builtin.rs` reads what this writes).
//!
//! The plugins are built by a nested `cargo build --release --target
//! wasm32-wasip2` of this workspace (so the workspace's release profile and
//! lockfile apply) into `<target>/builtin-plugins`: a target directory of
//! its own, because the outer cargo holds the lock on its own one and
//! sharing it would deadlock. Then `$OUT_DIR/builtin.rs` lists them with
//! `include_bytes!`; nothing is committed as a blob.
//!
//! It also lists, in `$OUT_DIR/kit.rs`, the files of the plugin author's
//! kit (the WIT contract, the SDKs and helpers) that `flinkscale plugin sdk
//! DIR` writes (`src/cli/kit.rs`), so that an author needs no checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The built-in plugins: the name users write in `plugin = "..."`, which is
/// also the crate's package name under `plugins/`. Adding a plugin is one
/// line here (and the crate in the workspace's `members`).
const BUILT_INS: &[&str] = &[
    "step",
    "hold",
    "target-tracking",
    "rate",
    "backlog-seconds",
    "expression",
    "flink-operator",
    "predictive",
];

/// The built-ins (of [`BUILT_INS`]) that link another built-in's crate as a
/// library, turning its component exports off: each is built by a cargo
/// invocation of its own (see `build_plugins`).
const BUILT_ALONE: &[&str] = &["predictive"];

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));

    for name in BUILT_INS {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("plugins").join(name).display()
        );
    }
    for path in ["plugins/sdk", "wit", "Cargo.lock", "Cargo.toml"]
        .iter()
        .chain(KIT_HELPER_FILES)
    {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_NET_OFFLINE");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    require_wasm_target(&rustc);

    let target_dir = target_dir(&out_dir).join("builtin-plugins");
    // A plugin that links another built-in as a library (without that
    // one's component exports) is built by an invocation of its own: within
    // one, cargo unifies the library's features with the built-in's own
    // and the two sets of exports would not link. Those go first: cargo
    // also writes the library's export-less component under the library's
    // own name, which the build of the rest then puts right.
    let (alone, together): (Vec<&str>, Vec<&str>) = BUILT_INS
        .iter()
        .copied()
        .partition(|name| BUILT_ALONE.contains(name));
    for name in alone {
        build_plugins(&workspace, &target_dir, &[name]);
    }
    build_plugins(&workspace, &target_dir, &together);

    let release = target_dir.join(WASM_TARGET).join("release");
    let mut table = String::from(
        "/// The built-in plugins, in the order of host/build.rs's table.\n\
         pub(crate) const BUILT_INS: &[BuiltIn] = &[\n",
    );
    for name in BUILT_INS {
        // Cargo names a component after its library: `-` becomes `_`.
        let file = release.join(format!("{}.wasm", name.replace('-', "_")));
        if !file.is_file() {
            fail(&format!(
                "the built-in plugin {name} was built but {} is missing",
                file.display()
            ));
        }
        table.push_str(&format!(
            "    BuiltIn {{ name: {name:?}, bytes: include_bytes!({:?}) }},\n",
            file.display().to_string()
        ));
    }
    table.push_str("];\n");
    // For tests that need the shipped plugins as files (copying one over
    // another, loading by path): they read them where this build put them
    // instead of building them a second time. Nothing outside tests reads
    // it: an installed binary has only the embedded bytes.
    println!(
        "cargo:rustc-env=FLINKSCALE_BUILTIN_PLUGIN_DIR={}",
        release.display()
    );
    std::fs::write(out_dir.join("builtin.rs"), table)
        .unwrap_or_else(|e| fail(&format!("cannot write builtin.rs to OUT_DIR: {e}")));
    write_kit(&workspace, &out_dir);
}

/// The folders of the plugin author's kit (`flinkscale plugin sdk DIR`,
/// `src/cli/kit.rs`), relative to the workspace: the contract and the Rust
/// SDK with `step` as its example (the Python and JavaScript helpers are
/// [`KIT_HELPER_FILES`]). The kit keeps these paths, so that the SDK's
/// `wit_bindgen::generate!` and the build scripts find the WIT where they
/// do in a checkout.
const KIT_FOLDERS: &[&str] = &["wit", "plugins/sdk", "plugins/step"];

/// The Python and JavaScript helpers' files of the kit, with their
/// examples (the policy `step` and the interpreter `backlog-seconds`) and
/// the argument parsing their build scripts share, one by one: their
/// folders also hold what their builds make (`__pycache__`,
/// `node_modules`), which belongs neither in the kit nor among what
/// rebuilds the host.
const KIT_HELPER_FILES: &[&str] = &[
    "plugins/README.md",
    "plugins/build-module.sh",
    "plugins/python/flinkscale_policy.py",
    "plugins/python/step.py",
    "plugins/python/flinkscale_interpreter.py",
    "plugins/python/backlog_seconds.py",
    "plugins/python/requirements.txt",
    "plugins/python/build.sh",
    "plugins/js/flinkscale-policy.js",
    "plugins/js/step.js",
    "plugins/js/flinkscale-interpreter.js",
    "plugins/js/backlog-seconds.js",
    "plugins/js/package.json",
    "plugins/js/package-lock.json",
    "plugins/js/build.sh",
];

/// Names under [`KIT_FOLDERS`] that are build output, never sources: left
/// out of the kit.
const KIT_SKIPPED: &[&str] = &["target"];

/// Writes `$OUT_DIR/kit.rs`: every file of [`KIT_FOLDERS`] and
/// [`KIT_HELPER_FILES`] as `(path, executable, include_bytes!)`, sorted by
/// path, plus the workspace's
/// `Cargo.toml` (the kit's crates inherit from it).
fn write_kit(workspace: &Path, out_dir: &Path) {
    let mut files = Vec::new();
    for folder in KIT_FOLDERS {
        collect_kit_files(workspace, &workspace.join(folder), &mut files);
    }
    for file in KIT_HELPER_FILES {
        let path = workspace.join(file);
        let metadata = std::fs::metadata(&path)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
        files.push((
            (*file).to_owned(),
            is_executable(&metadata),
            path.display().to_string(),
        ));
    }
    files.sort();
    let mut table = String::from(
        "/// The kit's files, in the order of their paths: (path relative to the \
         kit, executable, bytes).\n\
         pub(crate) const KIT_FILES: &[(&str, bool, &[u8])] = &[\n",
    );
    for (relative, executable, absolute) in &files {
        table.push_str(&format!(
            "    ({relative:?}, {executable}, include_bytes!({absolute:?})),\n"
        ));
    }
    table.push_str("];\n");
    table.push_str(&format!(
        "/// The workspace's `Cargo.toml`, whose `[workspace.package]` and \
         `[workspace.dependencies]` the kit's crates inherit.\n\
         pub(crate) const WORKSPACE_MANIFEST: &str = include_str!({:?});\n",
        workspace.join("Cargo.toml").display().to_string()
    ));
    std::fs::write(out_dir.join("kit.rs"), table)
        .unwrap_or_else(|e| fail(&format!("cannot write kit.rs to OUT_DIR: {e}")));
}

/// Adds every file under `folder` (recursively, skipping [`KIT_SKIPPED`])
/// to `files` as (path relative to `workspace` with `/`, executable,
/// absolute path).
fn collect_kit_files(workspace: &Path, folder: &Path, files: &mut Vec<(String, bool, String)>) {
    let entries = std::fs::read_dir(folder)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", folder.display())));
    for entry in entries {
        let entry =
            entry.unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", folder.display())));
        let path = entry.path();
        let name = entry.file_name();
        if KIT_SKIPPED.iter().any(|skipped| name == *skipped) {
            continue;
        }
        let metadata = std::fs::metadata(&path)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
        if metadata.is_dir() {
            collect_kit_files(workspace, &path, files);
        } else if metadata.is_file() {
            let relative = path
                .strip_prefix(workspace)
                .expect("the kit's folders are in the workspace")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((
                relative,
                is_executable(&metadata),
                path.display().to_string(),
            ));
        }
    }
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &std::fs::Metadata) -> bool {
    false
}

/// Builds the plugins `names` for wasm32-wasip2 in one nested cargo
/// invocation into `target_dir`, or stops the build saying which failed.
fn build_plugins(workspace: &Path, target_dir: &Path, names: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--release")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build has already resolved the workspace and written its
    // lockfile: the nested one must build exactly those versions, never
    // resolve again.
    if workspace.join("Cargo.lock").is_file() {
        build.arg("--locked");
    }
    if outer_build_is_offline() {
        build.arg("--offline");
    }
    for name in names {
        build.args(["-p", name]);
    }
    // What cargo hands a build script is meant for the outer build: host
    // flags (RUSTFLAGS may say `-C target-cpu=native`), its target folder,
    // and clippy's wrapper, which would make every `cargo clippy` rebuild the
    // plugins with other flags. The jobserver (CARGO_MAKEFLAGS) stays, so
    // the nested build shares the outer one's job slots.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let status = build.status().unwrap_or_else(|e| {
        fail(&format!(
            "cannot run cargo to build the built-in plugins: {e}"
        ))
    });
    if !status.success() {
        fail(&format!(
            "building the built-in plugins ({}) for {WASM_TARGET} failed ({status}); \
             the errors are above",
            names.join(", ")
        ));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

/// Stops the build with `message` (cargo prints a build script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Fails with the fix when the standard library for wasm32-wasip2 is not
/// installed: otherwise the nested build's first error is an obscure
/// "can't find crate for `core`".
fn require_wasm_target(rustc: &str) {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        // Cannot tell; let the nested build say what is wrong.
        return;
    };
    if !sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        fail(&format!(
            "the {WASM_TARGET} target is not installed for {}; flinkscale embeds its \
             built-in plugins built for it. Install it with `rustup target add {WASM_TARGET}`",
            sysroot.display()
        ));
    }
}

/// The outer build's target directory, from `OUT_DIR`
/// (`<target>[/<triple>]/<profile>/build/<package>-<hash>/out`): cargo
/// tells a build script no other way, and `CARGO_TARGET_DIR` is unset in
/// the common case.
fn target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent);
    let Some(profile_dir) = profile_dir else {
        return out_dir.to_path_buf();
    };
    let above = profile_dir.parent().unwrap_or(profile_dir);
    // With `--target <triple>`, profiles sit one folder deeper.
    match std::env::var("TARGET") {
        Ok(triple) if above.file_name().is_some_and(|n| n == triple.as_str()) => {
            above.parent().unwrap_or(above).to_path_buf()
        }
        _ => above.to_path_buf(),
    }
}

/// Whether the outer cargo runs offline. Cargo does not tell build scripts,
/// so this reads `CARGO_NET_OFFLINE` and, on Linux, the outer cargo's own
/// command line (`--offline`, `--frozen`).
fn outer_build_is_offline() -> bool {
    if std::env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true" || v == "1") {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(ppid) = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .map(str::trim)
    else {
        return false;
    };
    std::fs::read(format!("/proc/{ppid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == b"--offline" || arg == b"--frozen")
    })
}
