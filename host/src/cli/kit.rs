//! `flinkscale plugin sdk DIR`: the plugin author's kit, from the binary.
//!
//! Writing a plugin needs the contract (`wit/`), and in Rust the SDK crate,
//! in Python or JavaScript the helper module and its build script. An
//! installed `flinkscale` carries them (`host/build.rs` embeds them as
//! `$OUT_DIR/kit.rs`) and this writes them into a folder, at the paths they
//! have in the repository: the SDK's `wit_bindgen::generate!` reads
//! `../../wit`, and the build scripts run from the kit's root, exactly as in
//! a checkout. The kit's crates inherit their version, edition and
//! dependency versions from the workspace's `Cargo.toml`; outside the
//! workspace those are written out ([`standalone_manifest`]).

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/kit.rs"));

/// One file of the kit, as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitFile {
    /// Its path in the kit, with `/`.
    pub path: &'static str,
    /// Whether it is a script to run (mode 0755, else 0644).
    pub executable: bool,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// The kit's files, the crates' manifests made standalone; an error names
/// the manifest and the line that could not be (a build of the kit that
/// would not compile).
pub fn files() -> Result<Vec<KitFile>, String> {
    KIT_FILES
        .iter()
        .map(|&(path, executable, bytes)| {
            let bytes = if path.ends_with("/Cargo.toml") {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| format!("the kit's {path} is not UTF-8: {e}"))?;
                standalone_manifest(text, WORKSPACE_MANIFEST)
                    .map_err(|e| format!("the kit's {path}: {e}"))?
                    .into_bytes()
            } else {
                bytes.to_vec()
            };
            Ok(KitFile {
                path,
                executable,
                bytes,
            })
        })
        .collect()
}

/// `manifest` (a workspace member's `Cargo.toml`) with every value it
/// inherits from `workspace` (`version.workspace = true`, `serde = {
/// workspace = true }`) written out, so that it builds outside the
/// workspace. An inherited key the workspace does not define is an error
/// naming the line.
pub fn standalone_manifest(manifest: &str, workspace: &str) -> Result<String, String> {
    let workspace: toml::Table = toml::from_str(workspace)
        .map_err(|e| format!("the workspace's Cargo.toml does not parse: {e}"))?;
    let section = |name: &str| {
        workspace
            .get("workspace")
            .and_then(|w| w.get(name))
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let package = section("package");
    let dependencies = section("dependencies");
    let mut out = String::with_capacity(manifest.len() + 256);
    for (index, line) in manifest.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if let Some(key) = trimmed.strip_suffix(".workspace = true") {
            let value = package.get(key).ok_or_else(|| {
                format!("line {number}: `{trimmed}`, but the workspace has no package.{key}")
            })?;
            out.push_str(&format!("{key} = {value}\n"));
        } else if trimmed.contains("workspace = true") {
            let entry: toml::Table = toml::from_str(trimmed)
                .map_err(|e| format!("line {number}: `{trimmed}` does not parse: {e}"))?;
            let (name, value) = entry
                .into_iter()
                .next()
                .ok_or_else(|| format!("line {number}: `{trimmed}` has no key"))?;
            let mut own = value
                .as_table()
                .cloned()
                .ok_or_else(|| format!("line {number}: `{trimmed}` is not an inline table"))?;
            own.remove("workspace");
            let mut inherited = match dependencies.get(&name) {
                Some(toml::Value::String(version)) => {
                    toml::Table::from_iter([("version".to_owned(), version.clone().into())])
                }
                Some(toml::Value::Table(table)) => table.clone(),
                _ => {
                    return Err(format!(
                        "line {number}: `{trimmed}`, but the workspace has no dependency {name}"
                    ));
                }
            };
            // Cargo adds a member's features to the workspace's.
            if let Some(toml::Value::Array(features)) = own.remove("features") {
                let all = inherited
                    .entry("features")
                    .or_insert_with(|| toml::Value::Array(Vec::new()));
                if let toml::Value::Array(all) = all {
                    all.extend(features);
                }
            }
            inherited.extend(own);
            out.push_str(&format!("{name} = {}\n", toml::Value::Table(inherited)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Why the kit was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KitError {
    /// The folder named cannot take it (a file, or the kit's files there
    /// already without `--force`): the command was wrong.
    Usage(String),
    /// Writing failed (permissions, a full disk).
    Disk(String),
}

/// Writes the kit into `dir` (created if missing). A file of the kit that
/// already exists there is an error naming it unless `force`. Returns the
/// files written.
pub fn write(dir: &Path, force: bool) -> Result<Vec<PathBuf>, KitError> {
    let files = files().map_err(KitError::Disk)?;
    if dir.exists() && !dir.is_dir() {
        return Err(KitError::Usage(format!(
            "{} is a file, not a folder (valid: a new folder, or an existing one)",
            dir.display()
        )));
    }
    // A folder to make under a file: the name is wrong, not the disk.
    if !dir.exists()
        && let Some(file) = dir
            .ancestors()
            .skip(1)
            .find(|a| !a.as_os_str().is_empty() && a.exists())
            .filter(|a| !a.is_dir())
    {
        return Err(KitError::Usage(format!(
            "{} is a file, so no folder {} can be made under it (valid: a new folder, or an \
             existing one)",
            file.display(),
            dir.display()
        )));
    }
    if !force
        && let Some(existing) = files
            .iter()
            .map(|f| dir.join(f.path))
            .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(KitError::Usage(format!(
            "{} already exists; the kit overwrites nothing unless given --force (or name an \
             empty or new folder)",
            existing.display()
        )));
    }
    let mut written = Vec::with_capacity(files.len());
    for file in &files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                KitError::Disk(format!("cannot create folder {}: {e}", parent.display()))
            })?;
        }
        std::fs::write(&path, &file.bytes)
            .map_err(|e| KitError::Disk(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if file.executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(
                |e| KitError::Disk(format!("cannot set the mode of {}: {e}", path.display())),
            )?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_holds_the_contracts_sdk_and_helpers() {
        let files = files().unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
        for needed in [
            "wit/v0.1.0/plugin.wit",
            "wit/v0.2.0/plugin.wit",
            "plugins/sdk/Cargo.toml",
            "plugins/sdk/src/lib.rs",
            "plugins/step/Cargo.toml",
            "plugins/step/src/lib.rs",
            "plugins/build-module.sh",
            "plugins/python/flinkscale_policy.py",
            "plugins/python/step.py",
            "plugins/python/flinkscale_interpreter.py",
            "plugins/python/backlog_seconds.py",
            "plugins/python/build.sh",
            "plugins/python/requirements.txt",
            "plugins/js/flinkscale-policy.js",
            "plugins/js/step.js",
            "plugins/js/flinkscale-interpreter.js",
            "plugins/js/backlog-seconds.js",
            "plugins/js/build.sh",
            "plugins/js/package.json",
            "plugins/js/package-lock.json",
        ] {
            assert!(paths.contains(&needed), "{needed} missing from {paths:?}");
        }
        assert!(
            paths
                .iter()
                .all(|p| !p.contains("node_modules") && !p.contains("/target/")),
            "build output in the kit: {paths:?}"
        );
        let scripts: Vec<&str> = files
            .iter()
            .filter(|f| f.executable)
            .map(|f| f.path)
            .collect();
        assert_eq!(
            scripts,
            ["plugins/js/build.sh", "plugins/python/build.sh"],
            "the build scripts, and only they, are executable (plugins/build-module.sh is \
             sourced by them)"
        );
    }

    #[test]
    fn kit_manifests_build_outside_the_workspace() {
        let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST).unwrap();
        let workspace = &workspace["workspace"];
        for file in files().unwrap() {
            if !file.path.ends_with("Cargo.toml") {
                continue;
            }
            let text = String::from_utf8(file.bytes).unwrap();
            assert!(!text.contains("workspace"), "{}:\n{text}", file.path);
            let manifest: toml::Table = toml::from_str(&text).unwrap();
            let package = &manifest["package"];
            assert_eq!(package["version"], workspace["package"]["version"]);
            assert_eq!(package["edition"], workspace["package"]["edition"]);
            let serde = &manifest["dependencies"]["serde"];
            assert_eq!(
                serde["version"], workspace["dependencies"]["serde"]["version"],
                "{}",
                file.path
            );
            assert_eq!(
                serde["features"], workspace["dependencies"]["serde"]["features"],
                "{}",
                file.path
            );
        }
    }

    #[test]
    fn standalone_manifest_writes_out_inherited_values() {
        let workspace = r#"
[workspace.package]
version = "1.2.3"
edition = "2024"
[workspace.dependencies]
serde = { version = "1", features = ["derive"] }
wit-bindgen = "0.61"
"#;
        let member = "[package]\nname = \"x\"\nversion.workspace = true\n\
                      edition.workspace = true\n[dependencies]\n\
                      serde = { workspace = true, features = [\"rc\"] }\n\
                      wit-bindgen = { workspace = true }\nother = \"2\"\n";
        let out: toml::Table =
            toml::from_str(&standalone_manifest(member, workspace).unwrap()).unwrap();
        assert_eq!(out["package"]["version"].as_str(), Some("1.2.3"));
        assert_eq!(out["package"]["edition"].as_str(), Some("2024"));
        let serde = &out["dependencies"]["serde"];
        assert_eq!(serde["version"].as_str(), Some("1"));
        assert_eq!(
            serde["features"],
            toml::Value::Array(vec!["derive".into(), "rc".into()])
        );
        assert_eq!(
            out["dependencies"]["wit-bindgen"]["version"].as_str(),
            Some("0.61")
        );
        assert_eq!(out["dependencies"]["other"].as_str(), Some("2"));

        let error =
            standalone_manifest("[package]\nlicense.workspace = true\n", workspace).unwrap_err();
        assert_eq!(
            error,
            "line 2: `license.workspace = true`, but the workspace has no package.license"
        );
        let error = standalone_manifest("[dependencies]\nnope = { workspace = true }\n", workspace)
            .unwrap_err();
        assert_eq!(
            error,
            "line 2: `nope = { workspace = true }`, but the workspace has no dependency nope"
        );
    }

    #[test]
    fn write_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), false).unwrap();
        assert_eq!(written.len(), KIT_FILES.len());
        let wit = dir.path().join("wit/v0.2.0/plugin.wit");
        assert_eq!(
            std::fs::read(&wit).unwrap(),
            KIT_FILES
                .iter()
                .find(|f| f.0 == "wit/v0.2.0/plugin.wit")
                .unwrap()
                .2
        );
        let KitError::Usage(error) = write(dir.path(), false).unwrap_err() else {
            panic!("a usage error");
        };
        assert!(error.contains("already exists"), "{error}");
        assert!(error.contains("--force"), "{error}");
        std::fs::write(&wit, "changed").unwrap();
        write(dir.path(), true).unwrap();
        assert_ne!(std::fs::read(&wit).unwrap(), b"changed");

        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            write(&file, true).unwrap_err(),
            KitError::Usage(format!(
                "{} is a file, not a folder (valid: a new folder, or an existing one)",
                file.display()
            ))
        );
        // Under a file: the same kind of error (it was the disk's, exit 1).
        let under = file.join("kit");
        assert_eq!(
            write(&under, true).unwrap_err(),
            KitError::Usage(format!(
                "{} is a file, so no folder {} can be made under it (valid: a new folder, or an \
                 existing one)",
                file.display(),
                under.display()
            ))
        );
    }
}
