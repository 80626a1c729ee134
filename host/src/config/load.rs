//! Loading a configuration file: read, parse, validate, resolve paths.
//!
//! The text is parsed once into toml's spanned document ([`DeTable`]); serde
//! then reads the typed [`Config`] from that same document piece by piece
//! (`[agent]`, each application, each of its metrics, alarms and
//! interpreters), so that one mistake does not hide the next: every piece
//! that fails is reported, and the pieces that parse are validated. A piece
//! with an entry of the wrong type is read again without it (its default
//! standing in) and validated too, so a wrong type is reported together
//! with the piece's other mistakes; what only the stand-in default trips
//! is not reported. Because
//! the document keeps the span of every key and value, each error, whether
//! from the parser, from serde or from [`validate`], is
//! located at its file, line and column and named by its field path as the
//! user wrote it: `application "clickstream".alarm "scale-out".metric`.
//!
//! [`load_str`] is pure (no filesystem but looking for plugin files).
//! [`load`] reads the file and checks the environment: that every plugin
//! named is a file or a built-in, for every application of a valid file,
//! and for those of a file with errors that have none of their own (when
//! `[agent]` has none). [`load_checkable`] also gives those applications
//! of a refused file, for `validate` to try their plugins in the same run.
//!
//! A plugin name resolves to `<plugin_dir>/<name>.wasm` when that file
//! exists (so a file overrides the built-in of the same name), else to the
//! built-in of that name (see [`crate::plugin::builtin`]); a value that is a
//! path is always that file.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::validate::{self, FieldPath, Problem, Segment, display_key};
use super::{AgentConfig, ApplicationConfig, Config, PluginConfig};
use crate::plugin::PluginSource;
use crate::plugin::builtin;

/// A 1-based line and column (in characters) in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// One located error in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file, as it was named to the loader.
    pub file: PathBuf,
    /// Where in the file; `None` when the file could not be read at all.
    pub position: Option<Position>,
    /// The field as a user reads it, e.g.
    /// `application "clickstream".alarm "scale-out".metric`; empty for
    /// syntax errors and file-level errors.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What would be valid, when known.
    pub hint: Option<String>,
}

impl ConfigError {
    /// Where the error is, without what: `file:line:column: field` (the
    /// position and the field left out where unknown).
    pub fn place(&self) -> String {
        let mut place = self.file.display().to_string();
        if let Some(Position { line, column }) = self.position {
            place.push_str(&format!(":{line}:{column}"));
        }
        if !self.field.is_empty() {
            place.push_str(": ");
            place.push_str(&self.field);
        }
        place
    }

    /// The error without where it is: `field: message (hint)`, or
    /// `message (hint)` without a field.
    pub fn what(&self) -> String {
        let mut what = String::new();
        if !self.field.is_empty() {
            what.push_str(&self.field);
            what.push_str(": ");
        }
        what.push_str(&self.message);
        if let Some(hint) = &self.hint {
            what.push_str(&format!(" ({hint})"));
        }
        what
    }
}

impl fmt::Display for ConfigError {
    /// `file:line:column: field: message (hint)`, as compilers print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.what())
    }
}

/// Every error found in a configuration, in file order. Displays one error
/// per line, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn new(mut errors: Vec<ConfigError>) -> Self {
        // Stable, so errors at one spot keep the order they were found in.
        errors.sort_by_key(|e| e.position);
        Self { errors }
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` is only made from at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// The resolved plugins of one application, in the order of its
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSources {
    /// The policy's component.
    pub policy: PluginSource,
    /// Each interpreter's component, in configuration order.
    pub interpreters: Vec<PluginSource>,
}

/// A validated configuration with its paths resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration, valid.
    pub config: Config,
    /// The configuration file, as it was named to the loader.
    pub file: PathBuf,
    /// The absolute folder of the configuration file; relative paths in the
    /// file are relative to it.
    pub base_dir: PathBuf,
    /// `[agent].plugin_dir`, absolute.
    pub plugin_dir: PathBuf,
    /// `[agent].state_dir`, absolute.
    pub state_dir: PathBuf,
    /// Per application (same order as `config.applications`), the
    /// plugins: `plugin = "step"` is `<plugin_dir>/step.wasm` if that file
    /// exists (a `-` in the name also finds Cargo's `_` spelling), else the
    /// built-in `step`; a value containing `/` or ending in `.wasm` is a
    /// path relative to `base_dir`.
    pub plugins: Vec<PluginSources>,
    /// For the part of a configuration with errors that can still be
    /// checked ([`Refused::unaffected`]), each application's index among
    /// the file's `[[application]]` tables; `None`: they are all there,
    /// in order.
    file_indices: Option<Vec<usize>>,
    /// The plugins were resolved against the built-ins alone
    /// ([`Self::resolve_plugins_in`] with `None`): no folder is followed
    /// for files dropped in later ([`Self::drop_in_dir`]).
    builtins_only: bool,
}

impl LoadedConfig {
    /// The folder whose files, dropped in while the agent runs, replace
    /// the plugins of their name: `plugin_dir`, or none when the plugins
    /// were resolved against the built-ins alone (the demo's bundled
    /// configuration: a `plugins/step.wasm` in the folder the demo runs in
    /// must not replace the built-in `step` it shows).
    pub fn drop_in_dir(&self) -> Option<&Path> {
        (!self.builtins_only).then_some(self.plugin_dir.as_path())
    }

    /// Each application with its plugins, in the file's order.
    pub fn applications(&self) -> impl Iterator<Item = (&ApplicationConfig, &PluginSources)> {
        self.config.applications.iter().zip(&self.plugins)
    }

    /// The index in the file's `[[application]]` tables of application
    /// `k` of `config.applications` (where a problem with it is): `k`,
    /// but in a [`Refused::unaffected`] part, which leaves out the
    /// applications with errors.
    pub fn file_index(&self, k: usize) -> usize {
        self.file_indices
            .as_ref()
            .and_then(|indices| indices.get(k).copied())
            .unwrap_or(k)
    }

    /// Resolves the plugin names again with `plugin_dir` instead of the
    /// configuration's (`demo --plugin-dir`), or against the built-ins
    /// alone when `None` (a simulation given no plugin folder must not pick
    /// up whatever `plugins/` the current folder holds).
    pub fn resolve_plugins_in(&mut self, plugin_dir: Option<&Path>) {
        if let Some(dir) = plugin_dir {
            self.plugin_dir = dir.to_path_buf();
        }
        self.builtins_only = plugin_dir.is_none();
        let base_dir = &self.base_dir;
        let plugin = |p: &PluginConfig| resolve_plugin(&p.plugin, base_dir, plugin_dir);
        self.plugins = self
            .config
            .applications
            .iter()
            .map(|app| PluginSources {
                policy: plugin(&app.policy),
                interpreters: app.interpreters.iter().map(plugin).collect(),
            })
            .collect();
    }
}

/// Reads, parses and validates the configuration at `path`, then checks
/// that every plugin named is a file or a built-in. Returns every error
/// found.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_checkable(path).map_err(|refused| refused.errors)
}

/// A configuration refused by [`load_checkable`].
#[derive(Debug)]
pub struct Refused {
    /// Every error found.
    pub errors: ConfigErrors,
    /// The part of the configuration no error is about, when `[agent]`
    /// and the file's top level have none: the applications without an
    /// error of their own (and, their plugins named, found), which can be
    /// checked further (`validate` tries their plugins);
    /// [`LoadedConfig::file_index`] says where each is in the file. `None`
    /// after a syntax error, an error outside the applications (but for a
    /// `state_dir` that is a file, which leaves the plugins alone), or when
    /// every application has one.
    pub unaffected: Option<Box<LoadedConfig>>,
}

/// [`load`], and for a configuration with errors the part of it that can
/// still be checked, so that `validate` shows the plugins' mistakes in
/// the same run as the configuration's.
pub fn load_checkable(path: &Path) -> Result<LoadedConfig, Refused> {
    let text = read_utf8(path).map_err(|error| Refused {
        errors: ConfigErrors::new(vec![ConfigError {
            file: path.to_path_buf(),
            position: None,
            field: String::new(),
            message: format!("cannot read the configuration: {error}"),
            hint: None,
        }]),
        unaffected: None,
    })?;
    load_text(&text, path, true)
}

/// The largest text file read (a configuration, a scenario, a trace, a
/// template): a per-second trace of 31 days is about 60 MB.
pub const MAX_TEXT_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads the regular file at `path` (a symbolic link to one is
/// followed), of at most `max_bytes`, which is `what` (`a text input`) in
/// the error past it. Opened non-blocking, so that a FIFO in its place is
/// refused at once rather than waited on for a writer for ever, and
/// bounded, so that `/dev/zero` is refused rather than read until memory
/// runs out.
pub fn read_regular_file(path: &Path, max_bytes: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is a folder, not a file",
        ));
    }
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a pipe or a device); write it to a file first",
        ));
    }
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes, the most {what} may be"),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grows while read stops at the bound as well.
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads `path` as UTF-8 text. A file that is not says where its first
/// byte that is not UTF-8 is (`line 33, column 21: byte 0xE9 is not
/// UTF-8`), as an `InvalidData` error: a file saved as Latin-1 is found by
/// its line, not searched for. Only a regular file of at most
/// [`MAX_TEXT_FILE_BYTES`] is read: `/dev/zero` or a pipe that never ends
/// is refused, not read until memory runs out.
pub fn read_utf8(path: &Path) -> std::io::Result<String> {
    let bytes = read_regular_file(path, MAX_TEXT_FILE_BYTES, "a text input")?;
    String::from_utf8(bytes).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        let bytes = error.as_bytes();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        // Characters, as the configuration's columns are counted.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "line {line}, column {column}: byte 0x{:02X} is not UTF-8 (save the file as UTF-8)",
                bytes.get(at).copied().unwrap_or_default()
            ),
        )
    })
}

/// Parses and validates `text` as if read from `origin` (which names the file
/// in errors and anchors relative paths), without touching the filesystem.
pub fn load_str(text: &str, origin: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_text(text, origin, false).map_err(|refused| refused.errors)
}

/// Locates problems found after loading by a check the loader cannot make
/// itself (`flinkscale validate` trying each interpreter on its params), in
/// the text of the file `loaded` was read from, as the loader's own errors
/// are. A file that cannot be read again gives unlocated errors.
pub fn locate(loaded: &LoadedConfig, problems: &[Problem]) -> Vec<ConfigError> {
    let text = std::fs::read_to_string(&loaded.file).unwrap_or_default();
    let (root, _) = DeTable::parse_recoverable(&text);
    let root_span = root.span();
    let document = Document {
        file: &loaded.file,
        text: &text,
        root: Spanned::new(root_span, DeValue::Table(root.into_inner())),
        deferred: Default::default(),
        removed: Default::default(),
    };
    problems.iter().map(|p| document.locate(p)).collect()
}

/// A plugin's parameters as the JSON object text its `configure` receives
/// ([`params_value`] written out).
pub fn params_json(table: &toml::Table) -> String {
    params_value(table).to_string()
}

/// A plugin's parameters as the JSON object its `configure` receives.
///
/// Datetimes become their RFC 3339 strings; non-finite floats (refused by
/// validation, since JSON has none) become `null`.
pub fn params_value(table: &toml::Table) -> serde_json::Value {
    fn convert(value: &toml::Value) -> serde_json::Value {
        match value {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(convert).collect())
            }
            toml::Value::Table(table) => object(table),
        }
    }
    fn object(table: &toml::Table) -> serde_json::Value {
        serde_json::Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), convert(value)))
                .collect(),
        )
    }
    object(table)
}

fn load_text(text: &str, origin: &Path, check_environment: bool) -> Result<LoadedConfig, Refused> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let root_span = root.span();
    let document = Document {
        file: origin,
        text,
        root: Spanned::new(root_span, DeValue::Table(root.into_inner())),
        deferred: Default::default(),
        removed: Default::default(),
    };
    if !syntax_errors.is_empty() {
        // The recovered document is a guess; validating it would report
        // consequences of the syntax error as errors of their own.
        let errors = syntax_report(&document, &syntax_errors);
        return Err(Refused {
            errors: ConfigErrors::new(errors),
            unaffected: None,
        });
    }

    let parsed = document.deserialize();
    let applications: Vec<(usize, &ApplicationConfig)> = parsed
        .applications
        .iter()
        .map(|(i, app)| (*i, app))
        .collect();
    let mut problems = validate::validate_parts(parsed.agent.as_ref(), &applications);
    if !parsed.has_applications {
        problems.push(validate::no_application());
    }
    let Parsed {
        agent,
        agent_settled,
        applications,
        mut with_errors,
        mut errors,
        ..
    } = parsed;
    let removed = document.removed.borrow().clone();
    errors.extend(
        problems
            .iter()
            .filter(|p| {
                let at = document.span_of(p);
                let refused = |at: &Range<usize>| removed.iter().any(|r| r.contains(&at.start));
                // A consequence of a value refused elsewhere is not said.
                let assumes_refused = p.assumes.as_ref().is_some_and(|field| {
                    let (node, whole) = document.deepest(field);
                    whole && refused(&node.span())
                });
                !refused(&at) && !assumes_refused && !document.gives_missing_field(p)
            })
            .map(|p| document.locate(p)),
    );
    if !errors.is_empty() {
        // The applications no error is about, under an `[agent]` read as
        // written, can still be checked further (`validate` tries their
        // plugins): one run shows more than one stage's mistakes.
        let mut unaffected = None;
        let settled = agent
            .filter(|_| agent_settled)
            .filter(|_| problems.iter().all(|p| application_of(p).is_some()));
        if let Some(agent) = settled {
            with_errors.extend(problems.iter().filter_map(application_of));
            let part = |left_out: &[usize]| part_of(&agent, &applications, left_out, origin);
            unaffected = part(&with_errors);
            if let Some(loaded) = unaffected.as_ref().filter(|_| check_environment) {
                // As for a valid file: each plugin named must be there.
                let missing = missing_plugins(loaded);
                with_errors.extend(missing.iter().filter_map(application_of));
                errors.extend(
                    missing
                        .iter()
                        .chain(&state_dir_problem(loaded))
                        .chain(&plugin_dir_problem(loaded))
                        .map(|p| document.locate(p)),
                );
                if !missing.is_empty() {
                    unaffected = part(&with_errors);
                }
            }
        }
        return Err(Refused {
            errors: ConfigErrors::new(errors),
            unaffected,
        });
    }
    let config = Config {
        // `agent` is only `None` alongside an error, returned above.
        agent: agent.unwrap_or_default(),
        applications: applications.into_iter().map(|(_, app)| app).collect(),
    };
    let loaded = resolve(config, origin);
    if check_environment {
        let missing = missing_plugins(&loaded);
        let errors = missing
            .iter()
            .chain(&state_dir_problem(&loaded))
            .chain(&plugin_dir_problem(&loaded))
            .map(|p| document.locate(p))
            .collect::<Vec<_>>();
        if !errors.is_empty() {
            // The applications whose plugins are there can be tried.
            let left_out: Vec<usize> = missing.iter().filter_map(application_of).collect();
            let applications: Vec<_> = loaded.config.applications.into_iter().enumerate().collect();
            return Err(Refused {
                errors: ConfigErrors::new(errors),
                unaffected: part_of(&loaded.config.agent, &applications, &left_out, origin),
            });
        }
    }
    Ok(loaded)
}

/// The most syntax errors (other than keys given twice) reported for one
/// file: past them the parser's guesses make most of what follows.
const MAX_SYNTAX_ERRORS_SHOWN: usize = 5;

/// The configuration errors for a file that does not parse as TOML. A
/// key or table given twice is an error of its own, each reported (a
/// table header given twice as such, not as a "key", and not also for
/// the keys under it that then repeat). Of the other syntax errors the
/// first [`MAX_SYNTAX_ERRORS_SHOWN`] are reported, and only the first when
/// an array or inline table was left open: the parser recovers by
/// guessing, and a bracket left open makes an error of every line after
/// it (107 for one missing `]`), the cause last and at the end of the
/// file. The last one shown says how many more were left out, and names
/// the bracket left open.
fn syntax_report(document: &Document<'_>, errors: &[toml::de::Error]) -> Vec<ConfigError> {
    let text = document.text;
    let line_start = |offset: usize| {
        let before = text.get(..offset).unwrap_or(text);
        before.rfind('\n').map_or(0, |i| i + 1)
    };
    let mut report = Vec::new();
    // The byte ranges of tables given twice: their keys repeat too.
    let mut repeated_tables: Vec<Range<usize>> = Vec::new();
    let mut others: Vec<&toml::de::Error> = Vec::new();
    for error in errors {
        // The parser says "duplicate key" without the key; its span holds it.
        let key = error
            .span()
            .and_then(|span| text.get(span))
            .map(str::trim)
            .filter(|key| !key.is_empty() && !key.contains('\n'));
        match key {
            Some(key) if error.message() == "duplicate key" => {
                let span = error.span().unwrap_or_default();
                if repeated_tables
                    .iter()
                    .any(|table| table.contains(&span.start))
                {
                    continue;
                }
                let start = line_start(span.start);
                let line = text[start..].lines().next().unwrap_or("").trim();
                if line.starts_with('[') {
                    let header = line.split('#').next().unwrap_or(line).trim();
                    let body = start
                        + text[start..]
                            .find('\n')
                            .map_or(text.len() - start, |i| i + 1);
                    let next_header = text[body..]
                        .match_indices('\n')
                        .map(|(i, _)| body + i + 1)
                        .find(|&at| text[at..].trim_start_matches([' ', '\t']).starts_with('['))
                        .unwrap_or(text.len());
                    repeated_tables.push(body..next_header);
                    // `[[application.metric]]` (or another table of an
                    // application) above the first `[[application]]` made
                    // `application` a table, though no `[application]` is
                    // written: say that one.
                    let sub_table_first = (header == "[[application]]"
                        && !writes_application_table(text))
                    .then(|| {
                        text[..start].lines().map(str::trim_start).find(|l| {
                            l.starts_with("[application.") || l.starts_with("[[application.")
                        })
                    })
                    .flatten()
                    .map(|l| l.split('#').next().unwrap_or(l).trim().to_owned());
                    let merge = "give each table once, merging the two; a list of tables takes \
                                 [[...]] for every entry, never [...]";
                    let (message, hint) = match sub_table_first {
                        Some(sub) => (
                            format!("{header} comes after {sub}, which belongs to an application"),
                            "put each [[application.metric]], [[application.alarm]], \
                             [[application.interpreter]] and [application.policy] below the \
                             [[application]] it belongs to",
                        ),
                        None if header.starts_with("[[") => (
                            format!("{header} follows a table of that name written [...]"),
                            merge,
                        ),
                        None => (format!("table {header} is given twice"), merge),
                    };
                    report.push(document.error_at(
                        Some(span),
                        String::new(),
                        &message,
                        Some(hint.to_owned()),
                    ));
                } else {
                    report.push(document.error_at(
                        Some(span),
                        String::new(),
                        &format!("duplicate key `{key}`"),
                        Some("a key is given once in a table; keep one of them".to_owned()),
                    ));
                }
            }
            _ => others.push(error),
        }
    }
    // An array or inline table left open: every error after the first
    // follows from it.
    let left_open = others.iter().skip(1).find_map(|error| {
        let message = error.message();
        if message.starts_with("unclosed array") {
            Some("an array `[` before this point is not closed with `]`")
        } else if message.starts_with("unclosed inline table") {
            Some("an inline table `{` before this point is not closed with `}`")
        } else {
            None
        }
    });
    let shown = if left_open.is_some() {
        1
    } else {
        others.len().min(MAX_SYNTAX_ERRORS_SHOWN)
    };
    for (i, error) in others.iter().take(shown).enumerate() {
        let mut notes: Vec<String> = Vec::new();
        if i + 1 == shown {
            notes.extend(left_open.map(str::to_owned));
            let more = others.len() - shown;
            if more > 0 {
                let (these, them) = if shown == 1 {
                    ("this one", "it")
                } else {
                    ("these", "them")
                };
                notes.push(format!(
                    "{more} more syntax error{} after it, most from {these}, not shown: fix {them} and validate again",
                    if more == 1 { "" } else { "s" }
                ));
            }
        }
        let hint = (!notes.is_empty()).then(|| notes.join("; "));
        report.push(document.error_at(error.span(), String::new(), error.message(), hint));
    }
    report
}

/// Locates an error serde made reading `text`, a TOML file other than the
/// configuration (a scenario), as a configuration error is located: its
/// line and column, the field as a user reads it, the message, and what
/// would be valid.
pub(crate) fn locate_toml_error(file: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let document = Document {
        file,
        text,
        root: Spanned::new(root.span(), DeValue::Table(root.into_inner())),
        deferred: Default::default(),
        removed: Default::default(),
    };
    if syntax_errors.is_empty() {
        document.serde_error(error)
    } else {
        // A syntax error has no field to name; the first one, said as a
        // configuration's is (a duplicate key named, a bracket left open
        // found).
        syntax_report(&document, &syntax_errors)
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                document.error_at(error.span(), String::new(), error.message(), None)
            })
    }
}

/// The file index of the application `problem` is about, if it is about
/// one.
fn application_of(problem: &Problem) -> Option<usize> {
    match problem.path.segments() {
        [Segment::Key(key), Segment::Index(i), ..] if key == "application" => Some(*i),
        _ => None,
    }
}

/// The checkable part of a configuration with errors: its `applications`
/// (each with its index in the file) but those at the file indices
/// `left_out`, under `agent`; `None` when none is left.
fn part_of(
    agent: &AgentConfig,
    applications: &[(usize, ApplicationConfig)],
    left_out: &[usize],
    origin: &Path,
) -> Option<Box<LoadedConfig>> {
    let (indices, applications): (Vec<usize>, Vec<ApplicationConfig>) = applications
        .iter()
        .filter(|(i, _)| !left_out.contains(i))
        .cloned()
        .unzip();
    if applications.is_empty() {
        return None;
    }
    let mut loaded = resolve(
        Config {
            agent: agent.clone(),
            applications,
        },
        origin,
    );
    loaded.file_indices = Some(indices);
    Some(Box::new(loaded))
}

/// Resolves a configuration's relative paths against the folder of
/// `origin`, and its settings: each application carries the
/// `lazy_polling` in force for it (so that its controller needs nothing
/// but its own table), a Flink job its parallelism bounds as KPU bounds.
fn resolve(mut config: Config, origin: &Path) -> LoadedConfig {
    for app in &mut config.applications {
        app.lazy_polling.get_or_insert(config.agent.lazy_polling);
    }
    // A Flink job's parallelism bounds are its KPU bounds
    // (parallelism_per_kpu = 1): the controller knows only the latter.
    for app in &mut config.applications {
        if app.target == super::TargetKind::Flink {
            (app.min_kpu, app.max_kpu) = app.parallelism_bounds();
        }
    }
    let absolute = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
    let base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let plugin_dir = base_dir.join(&config.agent.plugin_dir);
    let state_dir = base_dir.join(&config.agent.state_dir);
    let plugin = |p: &PluginConfig| resolve_plugin(&p.plugin, &base_dir, Some(&plugin_dir));
    let plugins = config
        .applications
        .iter()
        .map(|app| PluginSources {
            policy: plugin(&app.policy),
            interpreters: app.interpreters.iter().map(plugin).collect(),
        })
        .collect();
    LoadedConfig {
        file: origin.to_path_buf(),
        base_dir: base_dir.clone(),
        plugin_dir,
        state_dir,
        plugins,
        config,
        file_indices: None,
        builtins_only: false,
    }
}

/// Whether a `plugin` value is a path rather than a name.
pub fn is_plugin_path(value: &str) -> bool {
    value.contains('/') || value.ends_with(".wasm")
}

/// The files in `plugin_dir` the plugin named `name` may be, best first:
/// `<name>.wasm`, then Cargo's spelling of it. Cargo names a component
/// after its library, with `_` for `-` (the crate `target-tracking` builds
/// `target_tracking.wasm`), and componentize-py after the module: the name
/// users know is accepted when only that spelling exists.
pub fn plugin_files(name: &str, plugin_dir: &Path) -> Vec<PathBuf> {
    let named = plugin_dir.join(format!("{name}.wasm"));
    let cargo_spelling = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
    if cargo_spelling == named {
        vec![named]
    } else {
        vec![named, cargo_spelling]
    }
}

/// Where the plugin `value` comes from: a path is that file; a name is the
/// file of that name in `plugin_dir` if there is one (an operator's build
/// overrides the shipped one), else the built-in, else the file that
/// should have been there (reported missing by the environment check).
pub fn resolve_plugin(value: &str, base_dir: &Path, plugin_dir: Option<&Path>) -> PluginSource {
    if is_plugin_path(value) {
        return PluginSource::File(base_dir.join(value));
    }
    if let Some(plugin_dir) = plugin_dir
        && let Some(file) = plugin_files(value, plugin_dir)
            .into_iter()
            .find(|file| file.exists())
    {
        return PluginSource::File(file);
    }
    match builtin::find(value) {
        Some(builtin) => PluginSource::BuiltIn(builtin),
        None => PluginSource::File(plugin_dir.unwrap_or(base_dir).join(format!("{value}.wasm"))),
    }
}

/// The environment step: the state folder, if it exists, must be a
/// folder; if it does not, the agent must be able to create it: its
/// nearest existing ancestor must be a folder, and the path must be one
/// the system takes (no NUL).
fn state_dir_problem(loaded: &LoadedConfig) -> Option<Problem> {
    let path = &loaded.state_dir;
    let problem = |message: String| Problem {
        path: FieldPath::root().key("agent").key("state_dir"),
        message,
        hint: Some(
            "valid: a folder the agent may create or write; without [agent] state_dir, \
             $STATE_DIRECTORY, else `state` beside the configuration"
                .to_owned(),
        ),
        assumes: None,
    };
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Some(problem(format!(
            "state_dir {:?} holds a NUL character, which no path may",
            path.display().to_string()
        )));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        return (!meta.is_dir()).then(|| {
            problem(format!(
                "state_dir {} is a file, not a folder",
                path.display()
            ))
        });
    }
    // Not there yet: the agent creates it with its missing parents, which
    // fails under a file.
    let ancestor = path
        .ancestors()
        .skip(1)
        .find_map(|a| std::fs::metadata(a).ok().map(|meta| (a, meta)))?;
    (!ancestor.1.is_dir()).then(|| {
        problem(format!(
            "state_dir {} cannot be created: {} is a file, not a folder",
            path.display(),
            ancestor.0.display()
        ))
    })
}

/// The environment step: the plugin folder, if it exists, must be a
/// folder. A file there left every plugin to the built-ins without a
/// word (`--plugin-dir` with a file is refused).
fn plugin_dir_problem(loaded: &LoadedConfig) -> Option<Problem> {
    let meta = std::fs::metadata(&loaded.plugin_dir).ok()?;
    (!meta.is_dir()).then(|| Problem {
        path: FieldPath::root().key("agent").key("plugin_dir"),
        message: format!(
            "plugin_dir {} is a file, not a folder",
            loaded.plugin_dir.display()
        ),
        hint: Some(
            "valid: a folder of plugin files (NAME.wasm), relative to the configuration's \
             folder; default `plugins`, which may be missing"
                .to_owned(),
        ),
        assumes: None,
    })
}

/// The environment step: every plugin must be a file that exists or a
/// built-in.
fn missing_plugins(loaded: &LoadedConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (k, (app, paths)) in loaded.applications().enumerate() {
        let at = FieldPath::root()
            .key("application")
            .index(loaded.file_index(k));
        let plugins = std::iter::once((at.key("policy"), &app.policy, &paths.policy)).chain(
            app.interpreters
                .iter()
                .zip(&paths.interpreters)
                .enumerate()
                .map(|(j, (config, path))| (at.key("interpreter").index(j), config, path)),
        );
        for (at, config, source) in plugins {
            let Some(path) = source.file() else {
                continue;
            };
            let found = std::fs::metadata(path);
            if found.as_ref().is_ok_and(std::fs::Metadata::is_file) {
                continue;
            }
            let hint = if is_plugin_path(&config.plugin) {
                "a path is relative to the configuration file's folder".to_owned()
            } else {
                match suggested_plugin(&config.plugin, &loaded.plugin_dir) {
                    Some(name) => format!(
                        "did you mean {name:?}? {}",
                        available_plugins(&loaded.plugin_dir)
                    ),
                    None => available_plugins(&loaded.plugin_dir),
                }
            };
            let (plugin, shown) = (&config.plugin, path.display());
            let message = match found {
                Ok(meta) if meta.is_dir() => {
                    format!("plugin {plugin:?} is {shown}, a folder, not a component file")
                }
                Ok(_) => format!(
                    "plugin {plugin:?} is {shown}, not a regular file (a device, a FIFO or a \
                     socket), not a component file"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("plugin {plugin:?} not found at {shown}")
                }
                Err(e) => format!("plugin {plugin:?} at {shown} cannot be read: {e}"),
            };
            problems.push(Problem {
                path: at.key("plugin"),
                message,
                hint: Some(hint),
                assumes: None,
            });
        }
    }
    problems
}

/// The plugin name nearest `given` (a built-in, or a `.wasm` in
/// `plugin_dir`), when it is near enough to be a typo: `stpe` -> `step`.
fn suggested_plugin(given: &str, plugin_dir: &Path) -> Option<String> {
    let in_dir: Vec<String> = std::fs::read_dir(plugin_dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "wasm")
                .then(|| path.file_stem()?.to_str().map(str::to_owned))
                .flatten()
        })
        .collect();
    builtin::BUILT_INS
        .iter()
        .map(|b| b.name.to_owned())
        .chain(in_dir)
        .map(|name| (edit_distance(given, &name), name))
        .filter(|(distance, name)| *distance > 0 && *distance <= 2.max(name.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// What `plugin_dir` offers, for the hint of a plugin that is not there.
fn available_plugins(plugin_dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(plugin_dir) else {
        return format!(
            "built-in: {}; plugin_dir {} does not exist",
            builtin::names(),
            plugin_dir.display()
        );
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "wasm" && path.is_file())
                .then(|| path.file_stem()?.to_str().map(|s| format!("{s:?}")))
                .flatten()
        })
        .collect();
    names.sort();
    if names.is_empty() {
        format!(
            "built-in: {}; no .wasm file in plugin_dir {}",
            builtin::names(),
            plugin_dir.display()
        )
    } else {
        format!(
            "built-in: {}; in plugin_dir: {}",
            builtin::names(),
            names.join(", ")
        )
    }
}

/// Whether `offset` falls in `node` or anything below it.
fn subtree_contains(node: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    node.span().contains(&offset)
        || match node.get_ref() {
            DeValue::Table(table) => table.iter().any(|(key, value)| {
                key.span().contains(&offset) || subtree_contains(value, offset)
            }),
            DeValue::Array(items) => items.iter().any(|item| subtree_contains(item, offset)),
            _ => false,
        }
}

/// A stand-in `[application.policy]` while the real one is read separately.
fn placeholder_plugin<'a>(span: Range<usize>) -> DeValue<'a> {
    let mut table = DeTable::default();
    table.insert(
        Spanned::new(span.clone(), "plugin".into()),
        Spanned::new(span, DeValue::String("".into())),
    );
    DeValue::Table(table)
}

/// What serde could read, and what it could not.
struct Parsed {
    agent: Option<AgentConfig>,
    /// Whether `[agent]` and the file's top level were read without an
    /// error: what the applications' plugins resolve against is what the
    /// file says.
    agent_settled: bool,
    /// The applications that parsed, with their index in the file.
    applications: Vec<(usize, ApplicationConfig)>,
    /// The file indices of those of them read with an entry left out (a
    /// wrong type, an unknown key): parsed, but with an error.
    with_errors: Vec<usize>,
    /// Whether the file has a non-empty `application` entry at all.
    has_applications: bool,
    errors: Vec<ConfigError>,
}

/// Whether `text` writes an `[application]` header (single brackets): then
/// `application` is a table because the user wrote one, not because a
/// sub-table such as `[[application.metric]]` came before any
/// `[[application]]`.
fn writes_application_table(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("[application]"))
}

/// The tables an `[[application]]` holds under its own header.
const SUB_TABLES: [&str; 4] = ["metric", "alarm", "interpreter", "policy"];

/// A key that says what kind of thing its table is, so what its other
/// keys may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An application's `target`.
    Application,
    /// A metric's or an alarm's `source`.
    Source,
}

/// Which kind-giving key of `T`'s table is among the keys `removed` (left
/// out of it for a refused value), if any: `target` of an
/// `[[application]]`, `source` of a metric or an alarm. A key of that
/// name in any other table is no such key.
fn refused_kind<T: 'static>(removed: &[String]) -> Option<Kind> {
    use std::any::TypeId;
    let has = |key: &str| removed.iter().any(|k| k == key);
    let of = TypeId::of::<T>();
    if of == TypeId::of::<ApplicationConfig>() && has("target") {
        Some(Kind::Application)
    } else if (of == TypeId::of::<super::MetricConfig>()
        || of == TypeId::of::<super::AlarmConfig>())
        && has("source")
    {
        Some(Kind::Source)
    } else {
        None
    }
}

/// The configuration text and its spanned document.
struct Document<'a> {
    file: &'a Path,
    text: &'a str,
    root: Spanned<DeValue<'a>>,
    /// Errors of entries [`Self::collect`] left out of a piece that then
    /// parsed: the piece is still validated, so that a wrong type does not
    /// hide the piece's other mistakes.
    deferred: std::cell::RefCell<Vec<ConfigError>>,
    /// The spans (key to end of value) of the entries left out that way: a
    /// validation problem located there is a consequence of the default
    /// that stood in for the entry, not a mistake of its own.
    removed: std::cell::RefCell<Vec<Range<usize>>>,
}

impl<'a> Document<'a> {
    /// Reads the typed configuration piece by piece (see the module doc).
    fn deserialize(&self) -> Parsed {
        let mut errors = Vec::new();
        let mut rest = match self.root.get_ref() {
            DeValue::Table(table) => table.clone(),
            _ => DeTable::default(),
        };
        let applications_value = rest.remove("application");
        let agent_value = rest.remove("agent");
        let deferred = || self.deferred.borrow().len();
        let before = deferred();
        // What remains can only hold unknown top-level keys.
        if let Err(root_errors) = self.collect::<Config>(self.root.span(), rest) {
            errors.extend(root_errors);
        }
        let agent = match agent_value {
            None => Some(AgentConfig::default()),
            Some(value) => self
                .table_or_value::<AgentConfig>(value)
                .map_err(|agent_errors| errors.extend(agent_errors))
                .ok(),
        };
        // A mistyped `[agnet]` or `plugin_dirr` leaves defaults standing
        // in for what the file meant.
        let agent_settled = errors.is_empty() && agent.is_some() && deferred() == before;

        let mut applications = Vec::new();
        let mut with_errors = Vec::new();
        let mut has_applications = false;
        if let Some(value) = applications_value {
            match value.get_ref() {
                DeValue::Array(items) => {
                    has_applications = !items.is_empty();
                    for (i, item) in items.iter().enumerate() {
                        let before = deferred();
                        match self.application(item) {
                            Ok(app) => {
                                if deferred() > before {
                                    // Read with an entry left out.
                                    with_errors.push(i);
                                }
                                applications.push((i, app));
                            }
                            Err(app_errors) => errors.extend(app_errors),
                        }
                    }
                }
                // `[[application.metric]]` (or `.alarm`, `.interpreter`,
                // `[application.policy]`) with no `[[application]]` above
                // it makes `application` a table holding only that.
                DeValue::Table(table)
                    if !table.contains_key("name")
                        && !writes_application_table(self.text)
                        && let Some((key, sub)) = table
                            .iter()
                            .find(|(key, _)| SUB_TABLES.contains(&key.get_ref().as_ref())) =>
                {
                    has_applications = true;
                    // As written: a list of tables, or one table.
                    let header = match sub.get_ref() {
                        DeValue::Array(_) => format!("[[application.{}]]", key.get_ref()),
                        _ => format!("[application.{}]", key.get_ref()),
                    };
                    errors.push(self.error_at(
                        Some(key.span()),
                        "application".to_owned(),
                        &format!("{header} belongs to an application, and none comes before it"),
                        Some(format!(
                            "write [[application]] with its name (name = \"...\") above {header}"
                        )),
                    ));
                }
                _ => {
                    // Not an array of tables: let serde say what it expected.
                    has_applications = true;
                    if let Err(error) =
                        Vec::<ApplicationConfig>::deserialize(ValueDeserializer::from(value))
                    {
                        errors.push(self.serde_error(&error));
                    }
                }
            }
        }
        errors.extend(self.deferred.borrow_mut().drain(..));
        Parsed {
            agent,
            agent_settled,
            applications,
            with_errors,
            has_applications,
            errors,
        }
    }

    /// Reads one `[[application]]`, each sub-table on its own.
    fn application(
        &self,
        item: &Spanned<DeValue<'a>>,
    ) -> Result<ApplicationConfig, Vec<ConfigError>> {
        let DeValue::Table(table) = item.get_ref() else {
            return self.table_or_value(item.clone());
        };
        let mut rest = table.clone();
        let metrics = rest.remove("metric");
        let alarms = rest.remove("alarm");
        let interpreters = rest.remove("interpreter");
        let mut errors = Vec::new();
        // The policy is read on its own so that its errors and the
        // application's are all reported; a placeholder keeps serde from
        // calling it missing meanwhile.
        let policy = match rest.get_key_value("policy") {
            Some((key, value)) => {
                let (key, value) = (key.clone(), value.clone());
                rest.insert(
                    key,
                    Spanned::new(value.span(), placeholder_plugin(value.span())),
                );
                self.table_or_value::<PluginConfig>(value)
                    .map_err(|policy_errors| errors.extend(policy_errors))
                    .ok()
            }
            None => None,
        };
        let msf_keys: Vec<&'static str> = ["min_kpu", "max_kpu"]
            .into_iter()
            .filter(|key| rest.contains_key(*key))
            .collect();
        let app = self
            .collect::<ApplicationConfig>(item.span(), rest)
            .map_err(|app_errors| errors.extend(app_errors))
            .ok()
            .map(|app| ApplicationConfig { msf_keys, ..app });
        let metrics = self.list(metrics, &mut errors);
        let alarms = self.list(alarms, &mut errors);
        let interpreters = self.list(interpreters, &mut errors);
        match (app, policy) {
            (Some(mut app), Some(policy)) if errors.is_empty() => {
                app.policy = policy;
                app.metrics = metrics;
                app.alarms = alarms;
                app.interpreters = interpreters;
                Ok(app)
            }
            _ => Err(errors),
        }
    }

    /// Reads an array of tables element by element.
    fn list<T: DeserializeOwned + 'static>(
        &self,
        value: Option<Spanned<DeValue<'a>>>,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<T> {
        let Some(value) = value else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Vec::<T>::deserialize(ValueDeserializer::from(value))
                .map_err(|error| errors.push(self.serde_error(&error)))
                .unwrap_or_default();
        };
        items
            .iter()
            .filter_map(|item| {
                self.table_or_value::<T>(item.clone())
                    .map_err(|item_errors| errors.extend(item_errors))
                    .ok()
            })
            .collect()
    }

    /// Reads a table with [`Self::collect`], or anything else as serde does
    /// (which reports the wrong type).
    fn table_or_value<T: DeserializeOwned + 'static>(
        &self,
        value: Spanned<DeValue<'a>>,
    ) -> Result<T, Vec<ConfigError>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(table) => self.collect(span, table),
            other => T::deserialize(ValueDeserializer::from(Spanned::new(span, other)))
                .map_err(|error| vec![self.serde_error(&error)]),
        }
    }

    /// Reads a struct from a table, reporting every bad entry, not only the
    /// first: serde stops at the first error, so the entry at fault is
    /// removed and the table read again until it parses or nothing is left
    /// to remove. A "missing field" error for an entry removed that way is a
    /// consequence, not news, and is dropped.
    fn collect<T: DeserializeOwned + 'static>(
        &self,
        span: Range<usize>,
        mut table: DeTable<'a>,
    ) -> Result<T, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        // The table's whole text: a header's span need not cover the keys
        // below it.
        let extent = table.iter().fold(span.clone(), |all, (key, value)| {
            all.start.min(key.span().start)..all.end.max(value.span().end)
        });
        loop {
            let result = T::deserialize(ValueDeserializer::from(Spanned::new(
                span.clone(),
                DeValue::Table(table.clone()),
            )));
            let error = match result {
                // The key that says what kind of application this is, its
                // `target`, was refused: what is valid for every other key
                // and table of it depends on that, and the default
                // standing in ("msf") would report its own mistakes (a
                // Flink metric or `rest_url` on an MSF application). Only
                // the key's error is said for the application.
                Ok(_) if refused_kind::<T>(&removed) == Some(Kind::Application) => {
                    return Err(errors);
                }
                // A metric's or an alarm's `source` was refused: the
                // default standing in (CloudWatch, a local alarm) would
                // report its own mistakes in that table (an alarm's
                // `metric` missing, `alarm_name` out of place), which are
                // not said; the rest of the application is validated.
                Ok(value) if refused_kind::<T>(&removed) == Some(Kind::Source) => {
                    self.removed.borrow_mut().push(extent.clone());
                    self.deferred.borrow_mut().extend(errors);
                    return Ok(value);
                }
                Ok(value) => {
                    // Parsed once the bad entries were left out: report
                    // them, and let the piece be validated.
                    self.deferred.borrow_mut().extend(errors);
                    return Ok(value);
                }
                Err(error) => error,
            };
            let consequence = missing_field(error.message())
                .is_some_and(|field| removed.iter().any(|r| r == field));
            if !consequence {
                errors.push(self.serde_error(&error));
            }
            let culprit = error.span().and_then(|at| {
                table
                    .iter()
                    .find(|(key, value)| {
                        key.span().contains(&at.start) || subtree_contains(value, at.start)
                    })
                    .map(|(key, _)| key.get_ref().to_string())
            });
            match culprit {
                Some(key) if !consequence => {
                    if let Some((k, v)) = table.get_key_value(key.as_str()) {
                        self.removed
                            .borrow_mut()
                            .push(k.span().start..v.span().end.max(k.span().end));
                    }
                    table.remove(key.as_str());
                    removed.push(key);
                }
                _ => return Err(errors),
            }
        }
    }

    /// Where a validation problem points: the span of its field, or of the
    /// nearest table that exists.
    fn span_of(&self, problem: &Problem) -> Range<usize> {
        self.deepest(&problem.path).0.span()
    }

    /// The node at `path`, or the deepest one along it that the file has,
    /// and whether that is the whole path.
    fn deepest(&self, path: &FieldPath) -> (&Spanned<DeValue<'_>>, bool) {
        let mut node = &self.root;
        for segment in path.segments() {
            let next = match (segment, node.get_ref()) {
                (Segment::Key(key), DeValue::Table(table)) => table.get(key.as_str()),
                (Segment::Index(index), DeValue::Array(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// Whether `problem` calls a field missing that the file gives: its
    /// value was wrong, reported as such, and left out for the piece to be
    /// validated, so "missing" would be a second, false report of it.
    fn gives_missing_field(&self, problem: &Problem) -> bool {
        let Some(field) = missing_field(&problem.message) else {
            return false;
        };
        let (node, whole) = self.deepest(&problem.path);
        whole && matches!(node.get_ref(), DeValue::Table(table) if table.contains_key(field))
    }

    /// Locates a validation problem: at the field, or at the nearest table
    /// that exists when the field was left out.
    fn locate(&self, problem: &Problem) -> ConfigError {
        self.error_at(
            Some(self.span_of(problem)),
            self.render(&problem.path),
            &problem.message,
            problem.hint.clone(),
        )
    }

    /// Locates a serde error at its span, naming the field found there.
    fn serde_error(&self, error: &toml::de::Error) -> ConfigError {
        let mut span = error.span();
        let mut path = span.as_ref().map(|span| self.path_at(span.start));
        // A word-valued field given a table (`mode = { paused = true }`):
        // the parser reads the table as the enum's variant and complains
        // inside it; the mistake is the table itself.
        if let Some(inner) = &path
            && let Some((_, outer)) = inner.0.split_last()
            && let outer = FieldPath(outer.to_vec())
            && enum_words(&outer).is_some()
            && let (node, true) = self.deepest(&outer)
            && matches!(node.get_ref(), DeValue::Table(_))
        {
            span = Some(node.span());
            path = Some(outer);
            return self.enum_type_error(span, path.as_ref());
        }
        let field = path.as_ref().map(|p| self.render(p)).unwrap_or_default();
        let (message, mut hint) = explain_serde(error.message());
        // A whole number of the wrong type or sign: say the field's own
        // range, not the integer type's (0 to 4294967295).
        let key = path.as_ref().and_then(|p| match p.0.last() {
            Some(Segment::Key(key)) => Some(key.as_str()),
            _ => None,
        });
        if let (Some(valid), Some(h)) = (key.and_then(validate::valid_whole_number), &hint)
            && h.starts_with("expected an integer from 0")
        {
            hint = Some(format!("expected a whole number; {valid}"));
        }
        // The parser reads a number too large for any integer as i128:
        // not the file's words.
        let message = message.replace("` as i128", "`");
        // A word-valued field (`mode`, `comparison`, ...) given a number,
        // a boolean, a list or a table: the parser says only "wanted
        // string or table"; say what was given and the words it takes.
        if (message == "wanted string or table" || message.starts_with("wanted exactly 1 element"))
            && path.as_ref().and_then(enum_words).is_some()
        {
            return self.enum_type_error(span, path.as_ref());
        }
        // `[[application.policy]]` makes a list of one table, which the
        // parser reads as a list of plugin names.
        if let Some(segments) = path.as_ref().map(|p| p.0.as_slice())
            && let [.., Segment::Key(key), Segment::Index(_)] = segments
            && key == "policy"
        {
            hint = Some(
                "an application has one policy: write its table as [application.policy], not [[application.policy]]"
                    .to_owned(),
            );
        }
        let segments = path.as_ref().map_or(&[][..], |p| p.0.as_slice());
        // `[[agent]]`, the agent's one table written as a list.
        if let [Segment::Key(key), Segment::Index(_), ..] = segments
            && key == "agent"
        {
            hint =
                Some("the agent's settings are one table: write [agent], not [[agent]]".to_owned());
        }
        // A list of tables written with single brackets: `[application]`,
        // `[application.metric]`.
        if let [.., Segment::Key(key)] = segments
            && message == "invalid type: map"
            && hint.as_deref() == Some("expected a sequence")
            && let Some(header) = match key.as_str() {
                "application" if segments.len() == 1 => Some("application".to_owned()),
                "metric" | "alarm" | "interpreter" => Some(format!("application.{key}")),
                _ => None,
            }
        {
            hint = Some(format!(
                "a list of tables: write [[{header}]] (double brackets) for each one, not [{header}]"
            ));
        }
        // A table given another value: the parser names the Rust type it
        // meant (`expected struct AgentConfig`), not the file's words.
        if hint
            .as_deref()
            .is_some_and(|h| h.starts_with("expected struct "))
        {
            let header = segments
                .iter()
                .filter_map(|segment| match segment {
                    Segment::Key(key) => Some(key.as_str()),
                    Segment::Index(_) => None,
                })
                .collect::<Vec<_>>()
                .join(".");
            // An element of a list of tables is written [[header]].
            let header = if matches!(segments.last(), Some(Segment::Index(_))) {
                format!("[[{header}]]")
            } else {
                format!("[{header}]")
            };
            hint = Some(format!(
                "expected a table: write {header} with its keys below it, or an inline table {{ key = value, ... }}"
            ));
        }
        // A required field left out: what to write, where it helps.
        let table = segments.iter().rev().find_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        });
        if let Some(field) = missing_field(&message)
            && let Some(help) = table.and_then(|table| validate::missing_field_hint(table, field))
        {
            hint = Some(help.to_owned());
        }
        // The TOML parser hands a date-time over as a map: say what the
        // file has.
        let written = span.as_ref().and_then(|span| self.text.get(span.clone()));
        let message = match written {
            Some(text) if message == "invalid type: map" && looks_like_a_date(text) => {
                format!("invalid type: date-time {}", text.trim())
            }
            _ => message,
        };
        self.error_at(span, field, &message, hint)
    }

    /// A word-valued field (see [`enum_words`]) at `path` given a value
    /// of another type: what was given, and the words it takes.
    fn enum_type_error(&self, span: Option<Range<usize>>, path: Option<&FieldPath>) -> ConfigError {
        let field = path.map(|p| self.render(p)).unwrap_or_default();
        let given = match path.map(|p| self.deepest(p)) {
            Some((node, true)) => value_kind(node.get_ref()),
            _ => "value",
        };
        let hint = path
            .and_then(enum_words)
            .map(|words| format!("expected {}", quoted_list(words)));
        self.error_at(
            span,
            field,
            &format!("invalid type: {given}, not a word"),
            hint,
        )
    }

    fn error_at(
        &self,
        span: Option<Range<usize>>,
        field: String,
        message: &str,
        hint: Option<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: Some(self.position(span.map_or(0, |s| s.start))),
            field,
            message: message.to_owned(),
            hint,
        }
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The path of the innermost key or value at byte `offset`. A table
    /// written with a header has its header as span and its entries
    /// elsewhere, so every node is searched, not just those containing the
    /// offset; the deepest match wins.
    fn path_at(&self, offset: usize) -> FieldPath {
        fn contains(span: &Range<usize>, offset: usize) -> bool {
            span.contains(&offset) || (span.is_empty() && span.start == offset)
        }
        fn search(
            node: &Spanned<DeValue<'_>>,
            at: &FieldPath,
            offset: usize,
            best: &mut FieldPath,
        ) {
            if contains(&node.span(), offset) && at.segments().len() >= best.segments().len() {
                *best = at.clone();
            }
            match node.get_ref() {
                DeValue::Table(table) => {
                    for (key, value) in table.iter() {
                        let at = at.key(key.get_ref());
                        if contains(&key.span(), offset)
                            && at.segments().len() >= best.segments().len()
                        {
                            *best = at.clone();
                        }
                        search(value, &at, offset, best);
                    }
                }
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        search(item, &at.index(i), offset, best);
                    }
                }
                _ => {}
            }
        }
        let mut best = FieldPath::root();
        search(&self.root, &FieldPath::root(), offset, &mut best);
        best
    }

    /// Renders a path with the names the user gave: an application by its
    /// `name`, a metric or alarm by its `id`, anything else by index.
    fn render(&self, path: &FieldPath) -> String {
        let mut out = String::new();
        let mut node = Some(&self.root);
        for (depth, segment) in path.segments().iter().enumerate() {
            let parent_key = match depth.checked_sub(1).map(|d| &path.segments()[d]) {
                Some(Segment::Key(key)) => Some(key.as_str()),
                _ => None,
            };
            match segment {
                Segment::Key(key) => {
                    if depth > 0 {
                        out.push('.');
                    }
                    out.push_str(&display_key(key));
                    node = node.and_then(|n| match n.get_ref() {
                        DeValue::Table(table) => table.get(key.as_str()),
                        _ => None,
                    });
                }
                Segment::Index(index) => {
                    node = node.and_then(|n| match n.get_ref() {
                        DeValue::Array(items) => items.get(*index),
                        _ => None,
                    });
                    let label_key = match (depth, parent_key) {
                        (1, Some("application")) => Some("name"),
                        (3, Some("metric" | "alarm")) => Some("id"),
                        _ => None,
                    };
                    let label = label_key.and_then(|k| match node.map(Spanned::get_ref) {
                        Some(DeValue::Table(table)) => {
                            table.get(k).and_then(|v| v.get_ref().as_str())
                        }
                        _ => None,
                    });
                    match label {
                        Some(label) => out.push_str(&format!(" {label:?}")),
                        None => out.push_str(&format!("[{index}]")),
                    }
                }
            }
        }
        out
    }
}

/// Splits serde's "X, expected Y" into a message and a hint, and says Rust's
/// integer types in words.
fn explain_serde(message: &str) -> (String, Option<String>) {
    // The parser's word for a number past an f64 (1e309): say the range.
    if message == "floating-point number overflowed" {
        return (
            "the number is too large for a floating-point number".to_owned(),
            Some("expected a finite number, up to about 1.8e308 in size".to_owned()),
        );
    }
    let Some((what, expected)) = message.split_once(", expected ") else {
        return (message.to_owned(), None);
    };
    let expected = match expected {
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" => "an integer from 0 to 18446744073709551615".to_owned(),
        "f64" => "a number".to_owned(),
        // A whole number past TOML's integers, in a table that takes
        // any value (a plugin's params).
        "any valid TOML value" if what.starts_with("invalid type: integer") => {
            "an integer from -9223372036854775808 to 9223372036854775807 (TOML's), or a \
             number with a decimal point or an exponent, e.g. 1e20"
                .to_owned()
        }
        other => other.to_owned(),
    };
    let suggestion = what
        .strip_prefix("unknown field `")
        .or_else(|| what.strip_prefix("unknown variant `"))
        .and_then(|rest| rest.strip_suffix('`'))
        .and_then(|given| closest(given, &expected));
    let hint = match suggestion {
        Some(name) => format!("did you mean `{name}`? expected {expected}"),
        None => format!("expected {expected}"),
    };
    (what.to_owned(), Some(hint))
}

/// The words a word-valued field at `path` takes (its enum's variants, as
/// serde names them), or `None` for any other field.
fn enum_words(path: &FieldPath) -> Option<&'static [&'static str]> {
    use super::{AlarmSource, Comparison, MetricSourceKind, Mode, TargetKind, TreatMissingData};
    let segments = path.segments();
    let [.., parent, Segment::Key(key)] = segments else {
        return None;
    };
    let list_of = |name: &str| {
        segments.len() >= 3
            && matches!(parent, Segment::Index(_))
            && matches!(&segments[segments.len() - 3], Segment::Key(k) if k == name)
    };
    Some(match key.as_str() {
        "mode" => variants::<Mode>(),
        "target" => variants::<TargetKind>(),
        "comparison" => variants::<Comparison>(),
        "treat_missing_data" => variants::<TreatMissingData>(),
        "source" if list_of("metric") => variants::<MetricSourceKind>(),
        "source" if list_of("alarm") => variants::<AlarmSource>(),
        _ => return None,
    })
}

/// The variant names serde knows for the enum `T` (what its derived
/// `Deserialize` passes to `deserialize_enum`), so that a message lists
/// exactly the words the file may use.
fn variants<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the variants it is asked for.
    struct Names<'n>(&'n mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not an enum"))
        }
        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(serde::de::Error::custom("names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut names));
    names
}

/// `` `a`, `b` or `c` ``.
fn quoted_list(words: &[&str]) -> String {
    validate::or_joined(words.iter().map(|w| format!("`{w}`")).collect())
}

/// What kind of TOML value `value` is, as a message says it.
fn value_kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "date-time",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

/// The field a "missing field `NAME`" message (serde's, and the
/// validator's in its words) names.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// Whether `text` (a value as the file writes it) is a TOML date, time or
/// date-time: `1979-05-27`, `07:32:00`, `1979-05-27T07:32:00Z`.
pub(super) fn looks_like_a_date(text: &str) -> bool {
    let b = text.trim().as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let date = b.len() >= 10 && digits(&b[..4]) && b[4] == b'-' && digits(&b[5..7]) && b[7] == b'-';
    let time = b.len() >= 8 && digits(&b[..2]) && b[2] == b':';
    date || time
}

/// The candidate in serde's backquoted list nearest to `given`, if near
/// enough to be a typo.
fn closest<'e>(given: &str, expected: &'e str) -> Option<&'e str> {
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        // Case aside: `FLINK` is `flink`.
        .map(|candidate| {
            let distance = edit_distance(&given.to_lowercase(), &candidate.to_lowercase());
            (distance, candidate)
        })
        .filter(|&(distance, candidate)| {
            distance <= 2.max(candidate.len() / 3)
                || (given.len() >= 4 && candidate.starts_with(given))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, in characters (also suggests plugin parameter names).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
