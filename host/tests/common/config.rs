//! Agent configuration files for the end-to-end tests, written a table at
//! a time: an `[agent]` table and any number of `[[application]]` tables,
//! each with its keys, its sub-tables (metrics, alarms) and its policy.
//! A test says only what differs from a common starting point
//! ([`Application::cpu`] for an MSF application on the emulator's CPU
//! metric, [`Application::named`] for anything else: a Flink job, an
//! application with alarms), so the blocks every test would write out
//! stand here once.

use std::path::{Path, PathBuf};

/// The body of the `[[application.metric]]` `cpu` of an emulator
/// scenario's `application`: its `containerCPUUtilization` from
/// CloudWatch, Average over 10 s periods.
pub fn cpu_metric(application: &str) -> String {
    format!(
        r#"id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = {{ Application = "{application}" }}
statistic = "Average"
period_secs = 10
"#
    )
}

/// The `[agent]` table of a test that runs plugins: the plugins from
/// `plugin_dir`, the state in `state` beside the configuration; the
/// caller's keys may follow it.
pub fn agent_table(plugin_dir: &Path) -> String {
    AgentConfig::new()
        .agent("plugin_dir", plugin_dir.to_string_lossy().as_ref())
        .agent("state_dir", "state")
        .text()
}

/// One `[[application]]` table: its keys in the order first set, then its
/// sub-tables in the order added, then `[application.policy]`.
#[derive(Debug, Clone)]
pub struct Application {
    keys: Vec<(String, String)>,
    /// Lines written as they are after the keys (e.g. `mode = "paused"\n`).
    lines: String,
    tables: Vec<String>,
    policy: Option<String>,
}

impl Application {
    /// An application called `name`, every other key at its default (an
    /// MSF application), with no metric and no policy.
    pub fn named(name: &str) -> Self {
        Self {
            keys: Vec::new(),
            lines: String::new(),
            tables: Vec::new(),
            policy: None,
        }
        .set("name", name)
    }

    /// An MSF application of an emulator scenario, evaluated every
    /// `evaluation_interval_secs` on its CPU from CloudWatch (`cpu`:
    /// Average, 10 s periods), between 1 and 8 KPU, polled every second
    /// while it updates, with a 2 s grace period; no policy yet.
    pub fn cpu(name: &str, evaluation_interval_secs: u32) -> Self {
        Self::named(name)
            .set("min_kpu", 1)
            .set("max_kpu", 8)
            .set("evaluation_interval_secs", evaluation_interval_secs)
            .set("update_poll_secs", 1)
            .set("grace_period_secs", 2)
            .metric(&cpu_metric(name))
    }

    /// Sets `key` to `value` (a string is quoted as TOML quotes it),
    /// where it was if it was set before.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        let value = value.into().to_string();
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.keys.push((key.to_owned(), value)),
        }
        self
    }

    /// Adds `lines` (whole lines of TOML, each ending in a newline) after
    /// the keys.
    pub fn lines(mut self, lines: &str) -> Self {
        self.lines.push_str(lines);
        self
    }

    /// Adds a sub-table: `header` (e.g. `[[application.alarm]]`) and its
    /// `body`.
    pub fn table(mut self, header: &str, body: &str) -> Self {
        self.tables.push(format!("{header}\n{body}"));
        self
    }

    /// Adds an `[[application.metric]]` with `body`.
    pub fn metric(self, body: &str) -> Self {
        self.table("[[application.metric]]", body)
    }

    /// Adds an `[[application.alarm]]` with `body`.
    pub fn alarm(self, body: &str) -> Self {
        self.table("[[application.alarm]]", body)
    }

    /// Sets the `[application.policy]` body (e.g. `plugin = "hold"\n`).
    pub fn policy(mut self, body: &str) -> Self {
        self.policy = Some(body.to_owned());
        self
    }

    /// The table as TOML, starting with a blank line.
    pub fn text(&self) -> String {
        let mut text = String::from("\n[[application]]\n");
        let mut keys = self.keys.iter();
        // The name first, then the lines, as a reader looks for them.
        if let Some((key, value)) = keys.next() {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text.push_str(&self.lines);
        for (key, value) in keys {
            text.push_str(&format!("{key} = {value}\n"));
        }
        for table in &self.tables {
            text.push('\n');
            text.push_str(table);
        }
        if let Some(policy) = &self.policy {
            text.push_str("\n[application.policy]\n");
            text.push_str(policy);
        }
        text
    }
}

/// A whole agent configuration file: the `[agent]` table, then the
/// applications.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    agent: Vec<(String, String)>,
    applications: Vec<Application>,
}

impl AgentConfig {
    /// A configuration with an empty `[agent]` table and no application.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` of the `[agent]` table to `value`.
    pub fn agent(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.agent.push((key.to_owned(), value.into().to_string()));
        self
    }

    /// Adds an application.
    pub fn application(mut self, application: Application) -> Self {
        self.applications.push(application);
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        if !self.agent.is_empty() {
            text.push_str("[agent]\n");
            for (key, value) in &self.agent {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        for application in &self.applications {
            text.push_str(&application.text());
        }
        text
    }

    /// Writes the file at `path` (its folder created) and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("the configuration's folder can be made");
        }
        std::fs::write(path, self.text()).expect("the configuration can be written");
        path.to_owned()
    }
}
