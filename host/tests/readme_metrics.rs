//! The README's metric names are the agent's: every `flinkscale_*` name in
//! "Metrics and health" and in the alerts of "Health, metrics and alerts"
//! is a family `GET /metrics` exports, so an alert copied from the README
//! watches a series that exists.

use std::collections::BTreeSet;
use std::path::Path;

use flinkscale::telemetry::Registry;

/// The README's text.
fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join("README.md")).expect("README.md")
}

/// The lines of the README section headed exactly `heading`, up to the next
/// heading of any level.
fn section<'a>(readme: &'a str, heading: &str) -> Vec<&'a str> {
    readme
        .lines()
        .skip_while(|line| line.trim() != heading)
        .skip(1)
        .take_while(|line| !line.starts_with('#'))
        .collect()
}

/// Every `flinkscale_<name>` word of `lines`.
fn metric_names(lines: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in lines {
        for (at, _) in line.match_indices("flinkscale_") {
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn every_metric_the_readme_names_is_exported() {
    let readme = readme();
    let documented = section(&readme, "### Metrics and health");
    let alerts = section(&readme, "### Health, metrics and alerts");
    let alert_rows: Vec<&str> = alerts
        .iter()
        .copied()
        .filter(|line| line.starts_with('|'))
        .collect();
    let mut names = metric_names(&documented);
    let alert_names = metric_names(&alert_rows);
    assert!(
        alert_names.len() >= 4,
        "found only {alert_names:?} in the alerts"
    );
    names.extend(alert_names);
    assert!(names.len() >= 20, "found only {names:?}");

    // An MSF application and a Flink job: each target has its own gauges.
    let loaded = flinkscale::config::load_str(
        "[[application]]\nname = \"orders\"\n\
         [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
         metric_name = \"containerCPUUtilization\"\nstatistic = \"Maximum\"\n\
         [[application.alarm]]\nid = \"hot\"\nmetric = \"cpu\"\n\
         comparison = \"GreaterThanThreshold\"\nthreshold = 80\nevaluation_periods = 3\n\
         [application.policy]\nplugin = \"hold\"\n\
         [[application]]\nname = \"clicks\"\ntarget = \"flink\"\n\
         rest_url = \"http://localhost:8081\"\n\
         [application.policy]\nplugin = \"hold\"\n",
        Path::new("agent.toml"),
    )
    .expect("a valid configuration");
    let registry = Registry::for_config(&loaded.config, 0);
    // Histograms are listed from their first observation on.
    let took = std::time::Duration::from_millis(3);
    registry.plugin_call("orders", "hold 0.1.0", "decide", took);
    flinkscale::telemetry::prometheus::record_aws_call("DescribeApplication", "ok", took);
    flinkscale::telemetry::prometheus::record_flink_call("GET /jobs/{id}", "ok", took);
    let text = registry.render(1_000);
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the README names metrics /metrics does not export: {missing:?} (exported: {exported:?})"
    );
}
