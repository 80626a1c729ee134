//! What a simulated run reports: the model version (in the scores), the scenario, the policy
//! (name, plugin, wasm hash, parameters) and the scores of SIMULATION.md, as
//! one JSON object for machines and a short table for people.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Scores;

/// Identifies the policy of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// The name the user gave (`seed`, `rate`, a path).
    pub name: String,
    /// The plugin file that decided.
    pub plugin: String,
    /// sha256 of that file.
    pub wasm_sha256: String,
    /// The parameters it was configured with.
    pub params: serde_json::Value,
}

impl PolicyInfo {
    /// Describes the policy `name` loaded from `plugin` with `params`.
    pub fn new(name: &str, plugin: &Path, params: serde_json::Value) -> Self {
        let wasm_sha256 = std::fs::read(plugin)
            .map(|bytes| {
                Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .unwrap_or_else(|_| "unreadable".to_owned());
        Self {
            name: name.to_owned(),
            plugin: plugin
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            wasm_sha256,
            params,
        }
    }
}

/// One simulated run, as `simulate --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The scenario's name.
    pub scenario: String,
    /// The policy.
    pub policy: PolicyInfo,
    /// The scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// Simulated seconds per wall-clock second of this run.
    pub sim_speed: f64,
}

impl SimReport {
    /// A human-readable table of the run.
    pub fn text(&self) -> String {
        let s = &self.scores;
        format!(
            "scenario {} (model version {}), policy {} ({}, sha256 {})\n\
             params {}\n\
             \n\
             kpu_hours              {:>10.3}\n\
             cost_usd               {:>10.3}\n\
             slo_violation_secs     {:>10}\n\
             max_lag_secs           {:>10.1}\n\
             p99_lag_secs           {:>10.1}\n\
             rescales               {:>10}\n\
             downtime_secs          {:>10}\n\
             lower_bound_kpu_hours  {:>10.3}\n\
             clairvoyant_kpu_hours  {:>10.3}\n\
             efficiency             {:>10.3}\n\
             bound_efficiency       {:>10.3}\n\
             \n\
             {} simulated seconds at {:.0} simulated seconds per wall second\n",
            self.scenario,
            self.scores.model_version,
            self.policy.name,
            self.policy.plugin,
            &self.policy.wasm_sha256[..self.policy.wasm_sha256.len().min(12)],
            self.policy.params,
            s.kpu_hours,
            s.cost_usd,
            s.slo_violation_secs,
            s.max_lag_secs,
            s.p99_lag_secs,
            s.rescales,
            s.downtime_secs,
            s.lower_bound_kpu_hours,
            s.clairvoyant_kpu_hours,
            s.efficiency,
            s.bound_efficiency,
            s.duration_secs,
            self.sim_speed,
        )
    }
}
