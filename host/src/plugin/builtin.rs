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
    pub fn bytes(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            PluginSource::File(path) => std::fs::read(path).map(Cow::Owned),
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
