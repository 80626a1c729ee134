//! The plugins that ship inside the binary, and where a plugin comes from.
//!
//! `host/build.rs` builds the shipped plugins (`plugins/step`, `hold`,
//! `target-tracking`, `rate`, `predictive`, `flink-operator`,
//! `backlog-seconds`, `expression`) for wasm32-wasip2 and embeds them, so that an
//! installed `flinkscale` runs `plugin = "rate"` with no plugin folder. A
//! [`PluginSource`] is either such a built-in or a file; configuration
//! loading decides which (a file of the same name in `plugin_dir` wins), and
//! the host loads either the same way, its compiled form cached by the
//! bytes' sha256.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A plugin embedded in the binary.
#[derive(Debug, PartialEq, Eq)]
pub struct BuiltIn {
    /// The name users write: `plugin = "target-tracking"`.
    pub name: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Every built-in plugin, in a stable order.
pub fn all() -> &'static [BuiltIn] {
    BUILT_INS
}

/// The built-in called `name`; Cargo's `_` spelling of a `-` is accepted,
/// as it is for files (`target_tracking` is `target-tracking`).
pub fn find(name: &str) -> Option<&'static BuiltIn> {
    BUILT_INS
        .iter()
        .find(|b| b.name == name || b.name.replace('-', "_") == name)
}

/// The built-ins' names, quoted and comma-separated, for error hints.
pub fn names() -> String {
    BUILT_INS
        .iter()
        .map(|b| format!("{:?}", b.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest plugin file read: a Python component is about 19 MB, a
/// JavaScript one 2 MB.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A `.wasm` file.
    File(PathBuf),
    /// A plugin embedded in the binary.
    BuiltIn(&'static BuiltIn),
}

impl PluginSource {
    /// The component's bytes: the file read now, or the embedded ones.
    /// Only a regular file (a symbolic link to one is followed) of at
    /// most [`MAX_PLUGIN_FILE_BYTES`] is read: a FIFO in its place is
    /// refused at once rather than waited on for ever, and `/dev/zero`
    /// rather than read until memory runs out.
    pub fn bytes(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            PluginSource::File(path) => {
                crate::config::load::read_regular_file(path, MAX_PLUGIN_FILE_BYTES, "a plugin file")
                    .map(Cow::Owned)
            }
            PluginSource::BuiltIn(builtin) => Ok(Cow::Borrowed(builtin.bytes)),
        }
    }

    /// The file, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PluginSource::File(path) => Some(path),
            PluginSource::BuiltIn(_) => None,
        }
    }

    /// Whether it is embedded in the binary.
    pub fn is_builtin(&self) -> bool {
        matches!(self, PluginSource::BuiltIn(_))
    }

    /// A path that names the plugin in errors and identities: the file, or
    /// `<built-in>/NAME.wasm` (whose stem is the plugin's name, like a
    /// file's). Stable, so an error about a built-in reads the same on
    /// every machine.
    pub fn display_path(&self) -> PathBuf {
        match self {
            PluginSource::File(path) => path.clone(),
            PluginSource::BuiltIn(builtin) => {
                PathBuf::from(format!("<built-in>/{}.wasm", builtin.name))
            }
        }
    }

    /// `built-in` or the file's path: what the logs say a plugin was loaded
    /// from.
    pub fn origin(&self) -> String {
        match self {
            PluginSource::File(path) => path.display().to_string(),
            PluginSource::BuiltIn(_) => "built-in".to_owned(),
        }
    }
}

impl From<PathBuf> for PluginSource {
    fn from(path: PathBuf) -> Self {
        PluginSource::File(path)
    }
}

impl From<&PathBuf> for PluginSource {
    fn from(path: &PathBuf) -> Self {
        PluginSource::File(path.clone())
    }
}

impl From<&Path> for PluginSource {
    fn from(path: &Path) -> Self {
        PluginSource::File(path.to_path_buf())
    }
}

impl From<&PluginSource> for PluginSource {
    fn from(source: &PluginSource) -> Self {
        source.clone()
    }
}

/// Lowercase hex of the sha256 of `bytes`, as the logs print it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO or a folder in a plugin file's place is refused at once (a
    /// FIFO's open waited for a writer for ever, holding the controller's
    /// thread and the agent's shutdown); a symbolic link to a regular file,
    /// as a Kubernetes volume mounts one, is read.
    #[test]
    fn only_a_regular_file_is_read_as_a_plugin() {
        let dir = tempfile::tempdir().expect("a folder");
        let fifo = dir.path().join("p.wasm");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = PluginSource::File(fifo).bytes().expect_err("a FIFO");
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let error = PluginSource::File(dir.path().to_path_buf())
            .bytes()
            .expect_err("a folder");
        assert!(
            error.to_string().contains("a folder, not a file"),
            "{error}"
        );

        let real = dir.path().join("real.wasm");
        std::fs::write(&real, b"\0asm").expect("written");
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&real, &link).expect("linked");
        assert_eq!(
            PluginSource::File(link).bytes().expect("read").as_ref(),
            b"\0asm"
        );
    }
}
