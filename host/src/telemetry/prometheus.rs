//! What `GET /metrics` and `GET /healthz` report: one small [`Registry`]
//! that [`super::Events`] updates as every event passes, rendered in the
//! Prometheus text exposition format 0.0.4.
//!
//! The registry knows the configured applications from the start, so each
//! counter exists (at 0) before the first evaluation, and a dashboard sees
//! an application that never evaluates rather than nothing at all.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use super::{Event, FailureCounts};
use crate::config::Config;
use crate::controller::Settings;
use crate::model::Action;

/// Slack added to three evaluation intervals before an application counts
/// as stale: a slow CloudWatch answer must not fail the health check.
const STALE_SLACK_MS: i64 = 60_000;

/// How long an application may go without evaluating, and what it counted.
#[derive(Debug, Clone, Default)]
struct AppMetrics {
    /// 3 x the evaluation interval + 60 s.
    stale_after_ms: i64,
    /// While a rescale is followed the controller does not evaluate: the
    /// update timeout plus the grace period are allowed on top.
    rescale_allowance_ms: i64,
    evaluations: u64,
    holds: u64,
    scales: u64,
    rescales: u64,
    kpu: Option<u32>,
    last_evaluation_ms: Option<i64>,
    last_rescale_ms: Option<i64>,
    quarantined: bool,
}

/// The agent's counters and gauges by application; shared between the
/// controllers' [`super::Events`] and the HTTP server.
#[derive(Debug)]
pub struct Registry {
    apps: Mutex<BTreeMap<String, AppMetrics>>,
    failures: Arc<FailureCounts>,
    started_ms: Mutex<i64>,
}

/// Why `GET /healthz` answers 503: an application that has not evaluated
/// for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// Application name.
    pub application: String,
    /// Milliseconds since its last evaluation (or since the agent started,
    /// if it never evaluated).
    pub silent_ms: i64,
    /// Whether it has evaluated at all.
    pub ever_evaluated: bool,
}

impl Registry {
    /// A registry for the applications of `config`, their staleness limits
    /// derived from their evaluation intervals, counting from `started_ms`
    /// (ms since the epoch).
    pub fn for_config(config: &Config, started_ms: i64) -> Self {
        let apps = config
            .applications
            .iter()
            .map(|app| {
                let settings = Settings::from_config(app, false);
                let interval_ms =
                    i64::try_from(settings.evaluation_interval.as_millis()).unwrap_or(i64::MAX);
                let metrics = AppMetrics {
                    stale_after_ms: interval_ms.saturating_mul(3).saturating_add(STALE_SLACK_MS),
                    rescale_allowance_ms: i64::from(app.update_timeout_secs)
                        .saturating_add(i64::from(app.grace_period_secs))
                        .saturating_mul(1000),
                    ..AppMetrics::default()
                };
                (app.name.clone(), metrics)
            })
            .collect();
        Self {
            apps: Mutex::new(apps),
            failures: Arc::default(),
            started_ms: Mutex::new(started_ms),
        }
    }

    /// Restarts the clock of applications that never evaluated (call it
    /// when the controllers start, after the plugins are compiled).
    pub fn mark_started(&self, now_ms: i64) {
        *self.started_ms.lock().unwrap_or_else(|p| p.into_inner()) = now_ms;
    }

    /// The failure counters this registry reports; [`super::Events`] with
    /// this registry counts into them.
    pub fn failure_counts(&self) -> Arc<FailureCounts> {
        self.failures.clone()
    }

    /// Updates the counters from `event`. Failures are counted by
    /// [`FailureCounts`], not here.
    pub fn record(&self, event: &Event) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let application = match event {
            Event::Evaluated { application, .. }
            | Event::RescaleStarted { application, .. }
            | Event::PluginQuarantined { application, .. }
            | Event::PluginRecovered { application, .. }
            | Event::Panicked { application, .. } => application,
            _ => return,
        };
        let app = apps.entry(application.clone()).or_default();
        match event {
            Event::Evaluated {
                at_ms,
                kpu,
                decision,
                ..
            } => {
                app.evaluations += 1;
                match decision.action {
                    Action::Hold => app.holds += 1,
                    Action::ScaleTo(_) => app.scales += 1,
                }
                app.kpu = Some(*kpu);
                app.last_evaluation_ms = Some(*at_ms);
            }
            Event::RescaleStarted { at_ms, .. } => {
                app.rescales += 1;
                app.last_rescale_ms = Some(*at_ms);
            }
            Event::PluginQuarantined { .. } => app.quarantined = true,
            Event::PluginRecovered { .. } => app.quarantined = false,
            _ => {}
        }
    }

    /// The applications that have not evaluated within their limit at
    /// `now_ms`; empty when the agent is healthy.
    pub fn stale(&self, now_ms: i64) -> Vec<Stale> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let started_ms = *self.started_ms.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .filter_map(|(name, app)| {
                let since = app.last_evaluation_ms.unwrap_or(started_ms);
                let mut deadline = since.saturating_add(app.stale_after_ms);
                // A rescale started after the last evaluation is followed
                // without evaluating, for up to the update timeout + grace.
                if let Some(rescale_ms) = app.last_rescale_ms
                    && rescale_ms >= since
                {
                    deadline = deadline.max(
                        rescale_ms
                            .saturating_add(app.rescale_allowance_ms)
                            .saturating_add(app.stale_after_ms),
                    );
                }
                (now_ms > deadline).then(|| Stale {
                    application: name.clone(),
                    silent_ms: now_ms.saturating_sub(since),
                    ever_evaluated: app.last_evaluation_ms.is_some(),
                })
            })
            .collect()
    }

    /// Every metric in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let failures = self.failures.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let per_app = |value: &dyn Fn(&AppMetrics) -> Option<String>| -> Vec<(String, String)> {
            apps.iter()
                .filter_map(|(name, app)| value(app).map(|v| (labels(&[("application", name)]), v)))
                .collect()
        };
        family(
            "flinkscale_evaluations_total",
            "counter",
            "Evaluations that ended with a validated decision.",
            per_app(&|a| Some(a.evaluations.to_string())),
        );
        let mut decisions = Vec::new();
        for (name, app) in &apps {
            for (action, n) in [("hold", app.holds), ("scale", app.scales)] {
                decisions.push((
                    labels(&[("application", name), ("action", action)]),
                    n.to_string(),
                ));
            }
        }
        family(
            "flinkscale_decisions_total",
            "counter",
            "Decisions by action (hold or scale), dry runs included.",
            decisions,
        );
        family(
            "flinkscale_rescales_total",
            "counter",
            "UpdateApplication requests that MSF accepted.",
            per_app(&|a| Some(a.rescales.to_string())),
        );
        family(
            "flinkscale_failures_total",
            "counter",
            "Failures by class (metrics, plugin, throttled, update_timeout, ...).",
            failures
                .iter()
                .map(|(app, class, n)| {
                    (
                        labels(&[("application", app), ("class", class)]),
                        n.to_string(),
                    )
                })
                .collect(),
        );
        family(
            "flinkscale_kpu",
            "gauge",
            "The application's KPU at its last evaluation.",
            per_app(&|a| a.kpu.map(|k| k.to_string())),
        );
        family(
            "flinkscale_last_evaluation_timestamp_seconds",
            "gauge",
            "When the application was last evaluated, in seconds since the Unix epoch.",
            per_app(&|a| a.last_evaluation_ms.map(seconds)),
        );
        family(
            "flinkscale_plugin_quarantined",
            "gauge",
            "1 while a plugin of the application is quarantined (the application holds), else 0.",
            per_app(&|a| Some(u8::from(a.quarantined).to_string())),
        );
        out
    }
}

/// Milliseconds as seconds, exactly (no float rounding).
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// `name="value",...` with each value escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value per the text format: backslash, double quote and line feed
/// escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP docstring per the text format: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    fn config(names: &[&str]) -> Config {
        let mut text = String::new();
        for name in names {
            let _ = write!(
                text,
                "[[application]]\nname = {name:?}\nevaluation_interval_secs = 10\n\
                 update_timeout_secs = 100\ngrace_period_secs = 20\n\
                 [application.policy]\nplugin = \"step\"\n"
            );
        }
        toml::from_str(&text).expect("a test configuration")
    }

    fn evaluated(app: &str, at_ms: i64, kpu: u32, action: Action) -> Event {
        Event::Evaluated {
            application: app.to_owned(),
            at_ms,
            kpu,
            latest: Vec::new(),
            alarms: Vec::new(),
            decision: Decision {
                action,
                reason: "test".to_owned(),
                next_evaluation_secs: None,
            },
            dry_run: false,
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("plain-app_1"), "plain-app_1");
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        registry.record(&evaluated("app", 1_500, 4, Action::Hold));
        let text = registry.render();
        for (name, kind) in [
            ("flinkscale_evaluations_total", "counter"),
            ("flinkscale_decisions_total", "counter"),
            ("flinkscale_rescales_total", "counter"),
            ("flinkscale_failures_total", "counter"),
            ("flinkscale_kpu", "gauge"),
            ("flinkscale_last_evaluation_timestamp_seconds", "gauge"),
            ("flinkscale_plugin_quarantined", "gauge"),
        ] {
            let help = text
                .find(&format!("# HELP {name} "))
                .unwrap_or_else(|| panic!("no HELP for {name}:\n{text}"));
            let kind_at = text
                .find(&format!("# TYPE {name} {kind}\n"))
                .unwrap_or_else(|| panic!("no TYPE {kind} for {name}:\n{text}"));
            assert!(help < kind_at, "HELP after TYPE for {name}");
            if let Some(sample) = text.find(&format!("\n{name}{{")) {
                assert!(kind_at < sample, "a sample of {name} precedes its TYPE");
            }
        }
        assert!(text.contains("flinkscale_evaluations_total{application=\"app\"} 1\n"));
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"hold\"} 1\n")
        );
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"scale\"} 0\n")
        );
        assert!(text.contains("flinkscale_kpu{application=\"app\"} 4\n"));
        assert!(
            text.contains(
                "flinkscale_last_evaluation_timestamp_seconds{application=\"app\"} 1.500\n"
            )
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn odd_application_names_render_as_valid_label_values() {
        let name = "we\"ird\\app\nx";
        let registry = Registry::for_config(&config(&[name]), 0);
        let failures = registry.failure_counts();
        failures.count(name, "plugin");
        let text = registry.render();
        assert!(
            text.contains(
                "flinkscale_failures_total{application=\"we\\\"ird\\\\app\\nx\",class=\"plugin\"} 1\n"
            ),
            "{text}"
        );
        // Every line is a comment or one sample: no raw line feed leaked.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("flinkscale_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn counters_follow_the_events() {
        let registry = Registry::for_config(&config(&["app"]), 0);
        registry.record(&evaluated("app", 1_000, 2, Action::ScaleTo(4)));
        registry.record(&Event::RescaleStarted {
            application: "app".to_owned(),
            at_ms: 1_100,
            from_kpu: 2,
            to_kpu: 4,
            version_id: 3,
        });
        registry.record(&Event::PluginQuarantined {
            application: "app".to_owned(),
            at_ms: 1_200,
            plugin: "step 1".to_owned(),
            failures: 3,
            until_ms: 2_000,
        });
        let text = registry.render();
        assert!(text.contains("flinkscale_rescales_total{application=\"app\"} 1\n"));
        assert!(
            text.contains("flinkscale_decisions_total{application=\"app\",action=\"scale\"} 1\n")
        );
        assert!(text.contains("flinkscale_plugin_quarantined{application=\"app\"} 1\n"));
        registry.record(&Event::PluginRecovered {
            application: "app".to_owned(),
            at_ms: 2_500,
            plugin: "step 1".to_owned(),
        });
        assert!(
            registry
                .render()
                .contains("flinkscale_plugin_quarantined{application=\"app\"} 0\n")
        );
    }

    #[test]
    fn an_application_is_stale_after_three_intervals_and_a_minute() {
        // Interval 10 s: stale after 90 s without an evaluation.
        let registry = Registry::for_config(&config(&["a", "b"]), 0);
        assert!(registry.stale(90_000).is_empty());
        let stale = registry.stale(90_001);
        assert_eq!(stale.len(), 2);
        assert!(!stale[0].ever_evaluated);
        registry.record(&evaluated("a", 80_000, 1, Action::Hold));
        registry.record(&evaluated("b", 80_000, 1, Action::Hold));
        assert!(registry.stale(170_000).is_empty());
        let stale = registry.stale(170_001);
        assert_eq!(stale.len(), 2);
        assert_eq!(stale[0].application, "a");
        assert_eq!(stale[0].silent_ms, 90_001);
        assert!(stale[0].ever_evaluated);
    }

    #[test]
    fn a_rescale_in_progress_extends_the_limit_by_timeout_and_grace() {
        let registry = Registry::for_config(&config(&["a"]), 0);
        registry.record(&evaluated("a", 1_000, 1, Action::ScaleTo(2)));
        registry.record(&Event::RescaleStarted {
            application: "a".to_owned(),
            at_ms: 2_000,
            from_kpu: 1,
            to_kpu: 2,
            version_id: 1,
        });
        // 2 s + (100 s + 20 s) + 90 s.
        assert!(registry.stale(212_000).is_empty());
        assert_eq!(registry.stale(212_001).len(), 1);
    }
}
