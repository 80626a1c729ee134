//! What a simulated run reports: the model version (in the scores), the scenario, the policy
//! (name, plugin, wasm hash, parameters) and the scores of docs/SIMULATION.md, as
//! one JSON object for machines and a short table for people.

use crate::plugin::PluginSource;
use serde::Serialize;

use super::Scores;
use super::driver::{ApiCalls, REFERENCE_USD_PER_APP_MONTH};

/// What the agent's own AWS calls came to in a run, beside the KPU cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ApiCost {
    /// Whether lazy polling was on.
    pub lazy_polling: bool,
    /// The calls, by kind.
    #[serde(flatten)]
    pub calls: ApiCalls,
    /// CloudWatch's bill for them (GetMetricData), scaled to one
    /// application over 30 days.
    pub cloudwatch_usd_per_app_month: f64,
    /// What the reference design pays per application-month for its two
    /// CloudWatch alarms, for comparison.
    pub reference_usd_per_app_month: f64,
}

impl ApiCost {
    /// The cost of `calls` over a run of `duration_secs` with
    /// `applications` applications.
    pub fn new(
        calls: ApiCalls,
        lazy_polling: bool,
        duration_secs: u64,
        applications: usize,
    ) -> Self {
        Self {
            lazy_polling,
            calls,
            cloudwatch_usd_per_app_month: calls.usd_per_app_month(duration_secs, applications),
            reference_usd_per_app_month: REFERENCE_USD_PER_APP_MONTH,
        }
    }

    /// The cost of the finished run `outcome` of the agent `loaded`.
    pub fn of_run(
        loaded: &crate::config::load::LoadedConfig,
        outcome: &super::driver::SimulationOutcome,
    ) -> Self {
        Self::new(
            outcome.calls,
            super::driver::lazy_polling(loaded),
            outcome.scores.duration_secs,
            loaded.config.applications.len(),
        )
    }
}

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
    pub fn new(name: &str, plugin: &PluginSource, params: serde_json::Value) -> Self {
        let wasm_sha256 = plugin
            .bytes()
            .map(|bytes| crate::plugin::builtin::sha256_hex(&bytes))
            .unwrap_or_else(|_| "unreadable".to_owned());
        Self {
            name: name.to_owned(),
            plugin: plugin
                .display_path()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            wasm_sha256,
            params,
        }
    }
}

/// One application's policy, in a run of several: the report's `policy`
/// is the first application's (or, with `--config`, the file's), so each
/// one's plugin and params are listed too.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationPolicy {
    /// The application's name.
    pub application: String,
    /// Its policy: `name` is the plugin the configuration names.
    pub policy: PolicyInfo,
}

impl ApplicationPolicy {
    /// Each application's policy when `loaded` has several applications;
    /// none for one (the report's `policy` says it all).
    pub fn of_config(loaded: &crate::config::load::LoadedConfig) -> Vec<Self> {
        if loaded.config.applications.len() < 2 {
            return Vec::new();
        }
        loaded
            .config
            .applications
            .iter()
            .zip(&loaded.plugins)
            .map(|(app, plugins)| Self {
                application: app.name.clone(),
                policy: PolicyInfo::new(
                    &app.policy.plugin,
                    &plugins.policy,
                    crate::config::load::params_value(&app.policy.params),
                ),
            })
            .collect()
    }
}

/// How often the plugins of a run failed (a trap, a timeout, an answer the
/// host refused: each a `plugin` failure, which holds the evaluation): a
/// run whose policy failed is scored as one that held, so the scores alone
/// do not say it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginFailures {
    /// The `plugin` failures of the run.
    pub plugin_failures: u64,
    /// The first one's message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_plugin_failure: Option<String>,
}

impl PluginFailures {
    /// The `plugin` failures among a run's events.
    pub fn of_events(events: &[crate::telemetry::Event]) -> Self {
        let mut failures = events.iter().filter_map(|event| match event {
            crate::telemetry::Event::Failed { class, message, .. } if class == "plugin" => {
                Some(message)
            }
            _ => None,
        });
        let first_plugin_failure = failures.next().cloned();
        Self {
            plugin_failures: u64::from(first_plugin_failure.is_some()) + failures.count() as u64,
            first_plugin_failure,
        }
    }

    /// A warning for people when the run had any, else `None`.
    pub fn warning(&self, scenario: &str, policy: &str) -> Option<String> {
        let first = self.first_plugin_failure.as_deref()?;
        Some(format!(
            "warning: {scenario} / {policy}: the plugins failed {} times (a failure holds the evaluation, and a plugin that keeps failing is quarantined, holding every evaluation meanwhile), so the scores are of a run that held, and the exit status is 1; the first: {first}",
            self.plugin_failures
        ))
    }

    /// The exit status of a command whose run had these failures: 1 when
    /// the plugins failed at all (the scores are printed, but are not the
    /// policy's: a script comparing policies, or testing a plugin, must
    /// not take them for a result), else 0.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.plugin_failures == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
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
    /// Each application's policy, when the run had several (else empty,
    /// and left out of the JSON).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<ApplicationPolicy>,
    /// The scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// Simulated seconds per wall-clock second of this run.
    pub sim_speed: f64,
    /// The agent's own AWS calls and their CloudWatch cost.
    #[serde(flatten)]
    pub api: ApiCost,
    /// The plugins' failures in the run.
    #[serde(flatten)]
    pub failures: PluginFailures,
}

impl SimReport {
    /// A human-readable table of the run.
    pub fn text(&self) -> String {
        let s = &self.scores;
        let applications: String = self
            .applications
            .iter()
            .map(|a| {
                format!(
                    "application {}: policy {} ({}, sha256 {}), params {}\n",
                    a.application,
                    a.policy.name,
                    a.policy.plugin,
                    &a.policy.wasm_sha256[..a.policy.wasm_sha256.len().min(12)],
                    a.policy.params
                )
            })
            .collect();
        format!(
            "scenario {} (model version {}), policy {} ({}, sha256 {})\n\
             params {}\n\
             {}\
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
             plugin_failures        {:>10}\n\
             \n\
             agent's own AWS calls (lazy polling {}):\n\
             cloudwatch_get_metric_data_requests {:>3}\n\
             cloudwatch_metric_requests   {:>10}\n\
             describe_application_calls   {:>10}\n\
             update_application_calls     {:>10}\n\
             cloudwatch_usd_per_app_month {:>10.3}  (reference design's two alarms: {:.2})\n\
             \n\
             {} simulated seconds at {:.0} simulated seconds per wall second\n",
            self.scenario,
            self.scores.model_version,
            self.policy.name,
            self.policy.plugin,
            &self.policy.wasm_sha256[..self.policy.wasm_sha256.len().min(12)],
            self.policy.params,
            applications,
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
            self.failures.plugin_failures,
            if self.api.lazy_polling { "on" } else { "off" },
            self.api.calls.cloudwatch_get_metric_data_requests,
            self.api.calls.cloudwatch_metric_requests,
            self.api.calls.describe_application_calls,
            self.api.calls.update_application_calls,
            self.api.cloudwatch_usd_per_app_month,
            self.api.reference_usd_per_app_month,
            s.duration_secs,
            self.sim_speed,
        )
    }
}

/// The rescales of a simulated run, one line each, for people: when (h:mm:ss
/// of simulated time), from and to which KPU, the input rate then, and the
/// reason the policy gave (the last non-hold decision at or before it).
pub fn timeline_text(world: &crate::sim::World, events: &[crate::telemetry::Event]) -> String {
    use crate::model::Action;
    use crate::telemetry::Event;
    let mut out = String::new();
    for app in world.applications() {
        let history = app.history();
        for update in &history.updates {
            let at_ms = crate::sim::driver::SIM_EPOCH_MS + (update.t_secs as i64) * 1000;
            let reason = events
                .iter()
                .filter_map(|e| match e {
                    Event::Evaluated {
                        application,
                        at_ms: t,
                        decision,
                        ..
                    } if application == app.name()
                        && *t <= at_ms
                        && decision.action != Action::Hold =>
                    {
                        Some(decision.reason.as_str())
                    }
                    _ => None,
                })
                .next_back()
                .unwrap_or("");
            let lambda = history.get(update.t_secs).map_or(0.0, |s| s.lambda);
            let t = update.t_secs;
            out.push_str(&format!(
                "{} {}  {:>3} -> {:<3} KPU  input {:>8.0}/s  {}{}\n",
                app.name(),
                clock(t),
                update.from_kpu,
                update.to_kpu,
                lambda,
                if update.rolled_back {
                    "(rolled back: it did not start at that size) "
                } else {
                    ""
                },
                reason
            ));
        }
    }
    out
}

/// Every evaluation of a simulated run, one line each: when (h:mm:ss of
/// simulated time), the application, its KPU, the decision and its reason.
pub fn decisions_text(events: &[crate::telemetry::Event]) -> String {
    use crate::model::Action;
    use crate::telemetry::Event;
    let mut out = String::new();
    for event in events {
        if let Event::Evaluated {
            application,
            at_ms,
            kpu,
            decision,
            ..
        } = event
        {
            let t = u64::try_from((at_ms - crate::sim::driver::SIM_EPOCH_MS) / 1000).unwrap_or(0);
            let action = match decision.action {
                Action::Hold => "hold".to_owned(),
                Action::ScaleTo(k) => format!("scale to {k}"),
            };
            out.push_str(&format!(
                "{application} {}  {kpu:>3} KPU  {action:<12}  {}\n",
                clock(t),
                decision.reason
            ));
        }
    }
    out
}

/// Simulated seconds as h:mm:ss, the hours right-aligned to two places
/// (a week runs to 168:00:00).
fn clock(t: u64) -> String {
    format!("{:>2}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Decision};
    use crate::sim::driver::SIM_EPOCH_MS;
    use crate::sim::{Scenario, Trace, World};
    use crate::telemetry::Event;

    /// A run's plugin failures are counted from its events, the first
    /// kept; other failures are not the plugins'.
    #[test]
    fn plugin_failures_are_counted_and_the_first_kept() {
        let failed = |class: &str, message: &str| Event::Failed {
            application: "app".into(),
            at_ms: 0,
            class: class.into(),
            plugin_class: None,
            message: message.into(),
        };
        let events = [
            evaluated(60, Action::Hold, "fine"),
            failed("metrics", "throttled"),
            failed("plugin", "policy rate failed: trap"),
            failed("plugin", "policy rate failed: again"),
        ];
        let failures = PluginFailures::of_events(&events);
        assert_eq!(failures.plugin_failures, 2);
        assert_eq!(
            failures.first_plugin_failure.as_deref(),
            Some("policy rate failed: trap")
        );
        let warning = failures.warning("spike", "rate").expect("a warning");
        assert!(
            warning.starts_with("warning: spike / rate: the plugins failed 2 times")
                && warning.contains("and the exit status is 1")
                && warning.ends_with("the first: policy rate failed: trap"),
            "{warning}"
        );
        assert_eq!(failures.exit_code(), std::process::ExitCode::FAILURE);
        let clean = PluginFailures::of_events(&events[..2]);
        assert_eq!(clean, PluginFailures::default());
        assert_eq!(clean.warning("spike", "rate"), None);
        assert_eq!(clean.exit_code(), std::process::ExitCode::SUCCESS);
        assert_eq!(
            serde_json::to_value(&clean).unwrap(),
            serde_json::json!({"plugin_failures": 0})
        );
    }

    fn evaluated(at_secs: i64, action: Action, reason: &str) -> Event {
        Event::Evaluated {
            application: "app".into(),
            at_ms: SIM_EPOCH_MS + at_secs * 1000,
            kpu: 1,
            latest: vec![],
            alarms: vec![],
            signals: Vec::new(),
            policy: "test 1.0.0".to_owned(),
            decision: Decision {
                action,
                reason: reason.into(),
                next_evaluation_secs: None,
            },
            dry_run: false,
        }
    }

    #[test]
    fn the_timeline_names_each_rescale_with_the_reason_that_led_to_it() {
        let scenario = Scenario::single("t", Trace::constant(1500.0), 7200);
        let mut world = World::from_scenario(&scenario, SIM_EPOCH_MS);
        world.advance_to(3725);
        let version = world.describe("app").expect("app").version_id;
        world
            .update_application("app", version, Some(2), None, None)
            .expect("accepted");
        world.advance_to(7200);
        let events = [
            evaluated(60, Action::ScaleTo(4), "an older decision"),
            evaluated(3720, Action::ScaleTo(2), "input 1500 on 980"),
            evaluated(3725, Action::Hold, "a hold says nothing"),
            evaluated(3780, Action::ScaleTo(8), "a later decision"),
        ];
        let text = timeline_text(&world, &events);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with("app  1:02:05    1 -> 2   KPU  input     1500/s  input 1500 on 980"),
            "{text}"
        );
        assert_eq!(
            timeline_text(&World::from_scenario(&scenario, SIM_EPOCH_MS), &events),
            ""
        );
    }
}
