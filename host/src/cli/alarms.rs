//! `flinkscale alarms sync`: CloudWatch alarms that mirror the
//! configuration's local alarms.
//!
//! An operator who moves to local alarms keeps seeing them where they look
//! today (CloudWatch's console, dashboards, alarm actions): each local alarm
//! on a CloudWatch metric gets a CloudWatch alarm named
//! `flinkscale-<application>-<alarm id>` with the same metric, statistic,
//! period, threshold, comparison, N, M and missing-data rule. The plan
//! ([`plan`]) is pure: it compares what the configuration wants with what
//! DescribeAlarms returned, so a second run changes nothing, and
//! `--dry-run` prints the same plan without PutMetricAlarm. Alarms that
//! have no CloudWatch counterpart to write are said, not dropped silently:
//! those on an interpreter's signal (no CloudWatch metric), on metric math,
//! and those that already are CloudWatch's (`source = "cloudwatch"`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::commands::EX_CONFIG;
use crate::config::{AlarmConfig, ApplicationConfig, Config};
use crate::metrics::alarms::{
    AlarmSpec, CloudWatchAlarms, DescribedAlarm, comparison_name, treat_missing_name,
};

/// What to do with CloudWatch alarms.
#[derive(Debug, Subcommand)]
pub enum AlarmsCommand {
    /// Create or update a CloudWatch alarm `flinkscale-<application>-<id>`
    /// for every local alarm of the configuration on a CloudWatch metric,
    /// with the same settings; print what changed. A second run changes
    /// nothing.
    Sync {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `flinkscale alarms ...`: exit 0, [`EX_CONFIG`] for an invalid
/// configuration, or an error (exit 1) when a CloudWatch call fails.
pub async fn run(command: AlarmsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlarmsCommand::Sync { config, dry_run } => sync(&config, dry_run).await,
    }
}

/// A local alarm that gets no CloudWatch mirror, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotMirrored {
    /// The application.
    pub application: String,
    /// The alarm id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// What one mirror needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// No alarm of that name: create it.
    Create(AlarmSpec),
    /// The alarm differs: replace it; the differences, `field: old -> new`.
    Update(AlarmSpec, Vec<String>),
    /// Already the same.
    Unchanged(AlarmSpec),
}

/// The mirrors the configuration wants, and the alarms that get none.
pub fn wanted(config: &Config) -> (Vec<AlarmSpec>, Vec<NotMirrored>) {
    let mut specs: Vec<AlarmSpec> = Vec::new();
    let mut skipped = Vec::new();
    // Whose each name is: `flinkscale-app-v2-hot` is app's `v2-hot` and
    // app-v2's `hot` alike, and one CloudWatch alarm cannot mirror both.
    let mut owners: std::collections::BTreeMap<String, (&str, &str)> = Default::default();
    for app in &config.applications {
        for alarm in &app.alarms {
            let reason = match mirror(app, alarm) {
                Ok(spec) => match owners.get(&spec.name) {
                    Some((owner, id)) => format!(
                        "its CloudWatch name {} is also that of application {owner:?}'s alarm {id:?}, which is mirrored: rename one of the two",
                        spec.name
                    ),
                    None => {
                        owners.insert(spec.name.clone(), (&app.name, &alarm.id));
                        specs.push(spec);
                        continue;
                    }
                },
                Err(reason) => reason.to_owned(),
            };
            skipped.push(NotMirrored {
                application: app.name.clone(),
                id: alarm.id.clone(),
                reason,
            });
        }
    }
    (specs, skipped)
}

/// The CloudWatch alarm mirroring `alarm` of a validated `app`.
fn mirror(app: &ApplicationConfig, alarm: &AlarmConfig) -> Result<AlarmSpec, &'static str> {
    if alarm.cloudwatch_name().is_some() {
        return Err("it already is a CloudWatch alarm (source = \"cloudwatch\")");
    }
    let incomplete = "it lacks a local alarm's settings";
    let metric_id = alarm.metric.as_deref().ok_or(incomplete)?;
    let Some(metric) = app.metrics.iter().find(|m| m.id == metric_id) else {
        return Err("it watches an interpreter's signal, which is no CloudWatch metric");
    };
    if metric.expression.is_some() {
        return Err("it watches metric math, which `alarms sync` does not write");
    }
    let (Some(namespace), Some(metric_name), Some(statistic)) =
        (&metric.namespace, &metric.metric_name, &metric.statistic)
    else {
        return Err(incomplete);
    };
    let evaluation_periods = alarm.evaluation_periods.ok_or(incomplete)?;
    Ok(AlarmSpec {
        name: alarm.mirror_name(&app.name),
        description: format!(
            "Mirrors alarm {:?} of application {:?} in flinkscale's configuration; written by `flinkscale alarms sync`.",
            alarm.id, app.name
        ),
        namespace: namespace.clone(),
        metric_name: metric_name.clone(),
        dimensions: metric.dimensions.clone(),
        statistic: statistic.clone(),
        period_secs: metric.period_secs,
        comparison: alarm.comparison.ok_or(incomplete)?,
        threshold: alarm.threshold.ok_or(incomplete)?,
        evaluation_periods,
        datapoints_to_alarm: alarm.datapoints_to_alarm(),
        treat_missing_data: alarm.treat_missing_data(),
    })
}

/// What each wanted mirror needs, given the alarms of those names that
/// exist.
pub fn plan(wanted: Vec<AlarmSpec>, existing: &[DescribedAlarm]) -> Vec<Change> {
    wanted
        .into_iter()
        .map(|spec| match existing.iter().find(|e| e.name == spec.name) {
            None => Change::Create(spec),
            Some(found) => {
                let diffs = differences(&spec, found);
                if diffs.is_empty() {
                    Change::Unchanged(spec)
                } else {
                    Change::Update(spec, diffs)
                }
            }
        })
        .collect()
}

/// `field: old -> new` for every mirrored setting that differs.
fn differences(spec: &AlarmSpec, found: &DescribedAlarm) -> Vec<String> {
    fn text<T: std::fmt::Display>(v: Option<T>) -> String {
        v.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
    }
    let dimensions =
        |d: &BTreeMap<String, String>| format!("{{{}}}", super::conventions::dimension_list(d));
    let n = found.evaluation_periods;
    let pairs = [
        (
            "namespace",
            text(found.namespace.as_deref()),
            spec.namespace.clone(),
        ),
        (
            "metric_name",
            text(found.metric_name.as_deref()),
            spec.metric_name.clone(),
        ),
        (
            "dimensions",
            dimensions(&found.dimensions),
            dimensions(&spec.dimensions),
        ),
        (
            "statistic",
            text(found.statistic.as_deref()),
            spec.statistic.clone(),
        ),
        (
            "period_secs",
            text(found.period_secs),
            spec.period_secs.to_string(),
        ),
        (
            "comparison",
            text(found.comparison.as_deref()),
            comparison_name(spec.comparison).to_owned(),
        ),
        (
            "threshold",
            text(found.threshold),
            spec.threshold.to_string(),
        ),
        (
            "evaluation_periods",
            text(n),
            spec.evaluation_periods.to_string(),
        ),
        (
            // CloudWatch's default M is N.
            "datapoints_to_alarm",
            text(found.datapoints_to_alarm.or(n)),
            spec.datapoints_to_alarm.to_string(),
        ),
        (
            "treat_missing_data",
            found
                .treat_missing_data
                .clone()
                .unwrap_or_else(|| "missing".into()),
            treat_missing_name(spec.treat_missing_data).to_owned(),
        ),
    ];
    let mut out = Vec::new();
    if found.metric_math {
        out.push("metric math -> one metric".to_owned());
    }
    // The mirror sets no unit: one set by hand would make CloudWatch judge
    // only the data published in it.
    if let Some(unit) = &found.unit {
        out.push(format!("unit: {unit} -> (none)"));
    }
    // Nor does it ignore low sample counts: set by hand on a percentile,
    // CloudWatch would hold the mirror's state where the local alarm
    // judges (and `import alarms` would no longer read the mirror).
    if let Some(ignore) = found
        .low_sample_count
        .as_ref()
        .filter(|v| v.eq_ignore_ascii_case("ignore"))
    {
        out.push(format!(
            "evaluate_low_sample_count_percentile: {ignore} -> (none)"
        ));
    }
    for (field, old, new) in pairs {
        if old != new {
            out.push(format!("{field}: {old} -> {new}"));
        }
    }
    out
}

/// The report of a plan: one line per alarm, then a summary.
pub fn report(changes: &[Change], skipped: &[NotMirrored], dry_run: bool) -> String {
    let mut out = String::new();
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for change in changes {
        match change {
            Change::Create(spec) => {
                created += 1;
                let _ = writeln!(
                    out,
                    "{} {}: {} {} {}{} {} {} for {} of {} x {} s",
                    if dry_run { "would create" } else { "created" },
                    spec.name,
                    spec.namespace,
                    spec.metric_name,
                    spec.statistic,
                    if spec.dimensions.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " {{{}}}",
                            super::conventions::dimension_list(&spec.dimensions)
                        )
                    },
                    comparison_name(spec.comparison),
                    spec.threshold,
                    spec.datapoints_to_alarm,
                    spec.evaluation_periods,
                    spec.period_secs
                );
            }
            Change::Update(spec, diffs) => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{} {}: {}",
                    if dry_run { "would update" } else { "updated" },
                    spec.name,
                    diffs.join(", ")
                );
            }
            Change::Unchanged(spec) => {
                unchanged += 1;
                let _ = writeln!(out, "unchanged {}", spec.name);
            }
        }
    }
    for s in skipped {
        let _ = writeln!(
            out,
            "not mirrored: application {:?} alarm {:?}: {}",
            s.application, s.id, s.reason
        );
    }
    let _ = writeln!(
        out,
        "{created} {}, {updated} {}, {unchanged} unchanged{}",
        if dry_run { "to create" } else { "created" },
        if dry_run { "to update" } else { "updated" },
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    out
}

/// `flinkscale alarms sync`.
async fn sync(config: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let file = config.to_owned();
    let loaded = match tokio::task::spawn_blocking(move || crate::config::load(&file)).await? {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let (wanted, skipped) = wanted(&loaded.config);
    if !super::aws_environment_ok(loaded.config.agent.region.as_deref()) {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let sdk = crate::aws::sdk_config(loaded.config.agent.region.as_deref()).await;
    if !super::region_found(&sdk, "for the alarms", "the --config file") {
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let client = CloudWatchAlarms::new(&sdk);
    let names: Vec<String> = wanted.iter().map(|s| s.name.clone()).collect();
    let existing = if names.is_empty() {
        Vec::new()
    } else {
        client
            .describe_named(&names)
            .await
            .context("cannot read the CloudWatch alarms")?
    };
    let changes = plan(wanted, &existing);
    if !dry_run {
        for change in &changes {
            if let Change::Create(spec) | Change::Update(spec, _) = change {
                client
                    .put(spec)
                    .await
                    .with_context(|| format!("cannot write the CloudWatch alarm {}", spec.name))?;
            }
        }
    }
    print!("{}", report(&changes, &skipped, dry_run));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Comparison, TreatMissingData};

    fn spec() -> AlarmSpec {
        AlarmSpec {
            name: "flinkscale-app-scale-out".into(),
            description: String::new(),
            namespace: "AWS/KinesisAnalytics".into(),
            metric_name: "containerCPUUtilization".into(),
            dimensions: [("Application".to_owned(), "app".to_owned())].into(),
            statistic: "Maximum".into(),
            period_secs: 60,
            comparison: Comparison::GreaterThanThreshold,
            threshold: 80.0,
            evaluation_periods: 5,
            datapoints_to_alarm: 5,
            treat_missing_data: TreatMissingData::Missing,
        }
    }

    fn described(spec: &AlarmSpec) -> DescribedAlarm {
        DescribedAlarm {
            name: spec.name.clone(),
            state: None,
            state_updated_ms: None,
            namespace: Some(spec.namespace.clone()),
            metric_name: Some(spec.metric_name.clone()),
            dimensions: spec.dimensions.clone(),
            statistic: Some(spec.statistic.clone()),
            period_secs: Some(spec.period_secs),
            unit: None,
            comparison: Some(comparison_name(spec.comparison).into()),
            threshold: Some(spec.threshold),
            evaluation_periods: Some(spec.evaluation_periods),
            // CloudWatch's defaults, unset: the same as M = N, "missing".
            datapoints_to_alarm: None,
            treat_missing_data: None,
            metric_math: false,
            low_sample_count: None,
        }
    }

    /// Application app's alarm `v2-hot` and application app-v2's `hot`
    /// would both be `flinkscale-app-v2-hot`: the first is mirrored, the
    /// second is not, with the reason, instead of both writing one alarm
    /// in turn.
    #[test]
    fn two_alarms_of_one_cloudwatch_name_are_not_both_mirrored() {
        let app = |name: &str, alarm: &str| {
            format!(
                "[[application]]\nname = \"{name}\"\n\
                 [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
                 metric_name = \"containerCPUUtilization\"\n\
                 dimensions = {{ Application = \"{name}\" }}\nstatistic = \"Maximum\"\n\
                 [[application.alarm]]\nid = \"{alarm}\"\nmetric = \"cpu\"\n\
                 comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 5\n\
                 [application.policy]\nplugin = \"hold\"\n"
            )
        };
        let text = format!("{}{}", app("app", "v2-hot"), app("app-v2", "hot"));
        let loaded =
            crate::config::load::load_str(&text, std::path::Path::new("two.toml")).expect("valid");
        let (specs, skipped) = wanted(&loaded.config);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["flinkscale-app-v2-hot"]);
        assert_eq!(specs[0].dimensions["Application"], "app");
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            (skipped[0].application.as_str(), skipped[0].id.as_str()),
            ("app-v2", "hot")
        );
        assert_eq!(
            skipped[0].reason,
            "its CloudWatch name flinkscale-app-v2-hot is also that of application \"app\"'s alarm \"v2-hot\", which is mirrored: rename one of the two"
        );
    }

    #[test]
    fn an_alarm_with_cloudwatchs_defaults_for_the_same_values_is_unchanged() {
        let want = spec();
        let changes = plan(vec![want.clone()], &[described(&want)]);
        assert_eq!(changes, [Change::Unchanged(want)]);
    }

    #[test]
    fn every_difference_is_named_with_its_old_and_new_value() {
        let want = spec();
        let mut found = described(&want);
        found.threshold = Some(70.0);
        found.datapoints_to_alarm = Some(3);
        found.dimensions.clear();
        // A unit set by hand: the mirror sets none, so sync takes it off;
        // likewise a percentile's ignored low sample counts.
        found.unit = Some("Percent".into());
        found.low_sample_count = Some("ignore".into());
        let changes = plan(vec![want.clone()], &[found]);
        assert_eq!(
            changes,
            [Change::Update(
                want.clone(),
                vec![
                    "unit: Percent -> (none)".to_owned(),
                    "evaluate_low_sample_count_percentile: ignore -> (none)".to_owned(),
                    "dimensions: {} -> {Application=app}".to_owned(),
                    "threshold: 70 -> 80".to_owned(),
                    "datapoints_to_alarm: 3 -> 5".to_owned(),
                ]
            )]
        );
        assert_eq!(plan(vec![want.clone()], &[]), [Change::Create(want)]);
    }
}
