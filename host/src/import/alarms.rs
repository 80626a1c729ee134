//! `flinkscale import alarms`: the CloudWatch alarms that watch an
//! application, as `[[application.metric]]` and `[[application.alarm]]`.
//!
//! An alarm belongs to the application when one of its dimensions is
//! `Application = NAME` (every MSF metric), or when it has one of the names
//! the reference design gives its alarms (`ScaleOutAlarm-NAME`,
//! `ScaleInAlarm-NAME`: its Kafka and Kinesis alarms carry no `Application`
//! dimension), or the name `alarms sync` gives the alarms it creates
//! (`flinkscale-NAME-ID`). Each becomes a local alarm with the same metric,
//! statistic, period, comparison, threshold, N, M and missing-data rule; the
//! reference design's pair keeps the ids `scale-out` / `scale-in` (and a
//! synced alarm its id), so the configuration that created them reads the
//! same. When both a synced alarm and the alarm its local one came from
//! exist (the reference pair and their mirrors, during a migration), the
//! mirror is imported and the other is listed as skipped. What flinkscale cannot evaluate locally (metric math, anomaly
//! detection, periods other than 10, 20, 30 s or a multiple of 60, a
//! unit filter, a percentile alarm that ignores low sample counts) is
//! listed as skipped, not dropped silently. Like [`super::cfn`], the result is checked by the loader before
//! it is returned. This module is pure: the caller calls DescribeAlarms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::cfn::{metric_id, toml_key, toml_string};
use crate::config::{
    ApplicationConfig, MetricConfig, MetricSourceKind, Mode, PluginConfig, TargetKind,
};
use crate::metrics::alarms::{DescribedAlarm, is_percentile};

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportAlarmsError {
    /// No alarm watches the application.
    #[error(
        "no CloudWatch alarm of the {described} in the region watches application {application:?}{skipped} (looked for the dimension Application = {application:?}, and the names ScaleOutAlarm-{application}, ScaleInAlarm-{application} and flinkscale-{application}-*)"
    )]
    NoAlarms {
        /// The application.
        application: String,
        /// How many alarms DescribeAlarms returned.
        described: usize,
        /// `; skipped: ...` when some of the application's alarms cannot be
        /// imported.
        skipped: String,
    },
    /// `--config` has the application as a self-managed Flink job, whose
    /// target (REST URL, job, parallelism bounds) the import does not
    /// write.
    #[error(
        "application {application:?} is a self-managed Flink job (target = \"flink\") in the \
         --config file: `import alarms` writes an application of Managed Service for Apache \
         Flink; add the alarms to the job's [[application]] by hand (README, \
         \"CloudWatch alarms as they are\")"
    )]
    FlinkTarget {
        /// The application.
        application: String,
    },
    /// The generated configuration does not pass validation.
    #[error("the imported configuration is not valid:\n{errors}")]
    Invalid {
        /// The loader's report.
        errors: String,
    },
}

/// An alarm that belongs to the application but cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The CloudWatch alarm's name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// The imported configuration and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAlarms {
    /// The configuration text, valid.
    pub toml: String,
    /// How many alarms were imported.
    pub imported: usize,
    /// The application's alarms that could not be.
    pub skipped: Vec<Skipped>,
    /// Whether the policy written is `hold` (no configuration to keep, and
    /// no scale-out / scale-in pair among the alarms): the application
    /// would never be rescaled until one is chosen.
    pub holds: bool,
}

/// Whether `alarm` watches `application` (see the module's documentation).
pub fn belongs_to(alarm: &DescribedAlarm, application: &str) -> bool {
    alarm
        .dimensions
        .get("Application")
        .is_some_and(|a| a == application)
        || alarm.name == format!("ScaleOutAlarm-{application}")
        || alarm.name == format!("ScaleInAlarm-{application}")
        || is_mirror(alarm, application)
}

/// Whether `alarm` is named as `alarms sync` names a mirror of one of
/// `application`'s local alarms (`flinkscale-<application>-<id>`) and
/// watches no other application: `flinkscale-app-v2-hot` may be app's
/// `v2-hot` or app-v2's `hot`, and its `Application` dimension, when it
/// has one, tells which.
fn is_mirror(alarm: &DescribedAlarm, application: &str) -> bool {
    alarm
        .name
        .strip_prefix(&format!("flinkscale-{application}-"))
        .is_some_and(|id| !id.is_empty())
        && alarm
            .dimensions
            .get("Application")
            .is_none_or(|a| a == application)
}

/// The local alarm id for the CloudWatch alarm `name`.
fn alarm_id(name: &str, application: &str) -> String {
    if name == format!("ScaleOutAlarm-{application}") {
        return "scale-out".into();
    }
    if name == format!("ScaleInAlarm-{application}") {
        return "scale-in".into();
    }
    let base = name
        .strip_prefix(&format!("flinkscale-{application}-"))
        .filter(|id| !id.is_empty())
        .unwrap_or(name);
    let id: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() { "alarm".into() } else { id }
}

/// `base`, or `base` + `sep` + 2, 3, ... when `base` is taken.
fn unique(base: String, sep: &str, taken: &[String]) -> String {
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{sep}{n}"))
        .find(|c| !taken.contains(c))
        .unwrap_or(base)
}

/// The series an alarm watches.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    id: String,
    namespace: String,
    metric_name: String,
    dimensions: BTreeMap<String, String>,
    statistic: String,
    period_secs: u32,
    /// Kept from the `--config` metric of the same series.
    min_publication_delay_secs: Option<u32>,
}

/// A local alarm.
#[derive(Debug, Clone, PartialEq)]
struct Local {
    id: String,
    cloudwatch_name: String,
    metric: String,
    comparison: String,
    threshold: f64,
    evaluation_periods: u32,
    datapoints_to_alarm: u32,
    treat_missing_data: String,
}

const COMPARISONS: [&str; 4] = [
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];

/// The alarm as a local one, or why it cannot be.
fn readable(a: &DescribedAlarm) -> Result<(Series, Local), String> {
    if a.metric_math {
        return Err("a metric math alarm (flinkscale alarms watch one metric)".into());
    }
    let (Some(namespace), Some(metric_name), Some(statistic)) =
        (&a.namespace, &a.metric_name, &a.statistic)
    else {
        return Err("no Namespace, MetricName and Statistic".into());
    };
    if !crate::config::validate::is_statistic(statistic) {
        return Err(format!(
            "the statistic {statistic:?} (flinkscale fetches Average, Maximum, Minimum, Sum, \
             SampleCount and percentiles pNN or pNN.NN)"
        ));
    }
    let comparison = a.comparison.clone().unwrap_or_default();
    if !COMPARISONS.contains(&comparison.as_str()) {
        return Err(format!(
            "the comparison {comparison:?} (anomaly detection) is not one of {}",
            COMPARISONS.join(", ")
        ));
    }
    let Some(threshold) = a.threshold.filter(|t| t.is_finite()) else {
        return Err("no Threshold".into());
    };
    let period_secs = a.period_secs.unwrap_or(0);
    if !(matches!(period_secs, 10 | 20 | 30) || (period_secs > 0 && period_secs.is_multiple_of(60)))
    {
        return Err(format!(
            "the period {period_secs} s (flinkscale fetches 10, 20, 30 s or multiples of 60)"
        ));
    }
    if a.statistic.as_deref().is_some_and(is_percentile)
        && a.low_sample_count
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("ignore"))
    {
        return Err(
            "EvaluateLowSampleCountPercentile = ignore: CloudWatch keeps the alarm's state through a period with too few samples for its percentile, which flinkscale cannot tell from the statistic it fetches (it evaluates every period)".into(),
        );
    }
    if let Some(unit) = &a.unit {
        return Err(format!(
            "the Unit {unit:?}: CloudWatch judges only the data published in that unit, and flinkscale's metrics have no unit filter (a metric published in one unit, as MSF's are, gives the same alarm without it)"
        ));
    }
    let Some(n) = a.evaluation_periods.filter(|n| *n >= 1) else {
        return Err("no EvaluationPeriods".into());
    };
    // CloudWatch allows up to 7 days with periods of an hour or more.
    let range = u64::from(n) * u64::from(period_secs);
    if range > crate::config::validate::MAX_ALARM_RANGE_SECS {
        return Err(format!(
            "EvaluationPeriods {n} x Period {period_secs} s = {range} s, more than the one day flinkscale evaluates"
        ));
    }
    let series = Series {
        id: String::new(),
        namespace: namespace.clone(),
        metric_name: metric_name.clone(),
        dimensions: a.dimensions.clone(),
        statistic: statistic.clone(),
        period_secs,
        min_publication_delay_secs: None,
    };
    let local = Local {
        id: String::new(),
        cloudwatch_name: a.name.clone(),
        metric: String::new(),
        comparison,
        threshold,
        evaluation_periods: n,
        datapoints_to_alarm: a.datapoints_to_alarm.unwrap_or(n),
        treat_missing_data: a
            .treat_missing_data
            .clone()
            .unwrap_or_else(|| "missing".into()),
    };
    Ok((series, local))
}

/// Imports the alarms of `described` that watch `application`. With
/// `existing` (that application in the agent's configuration), the output
/// keeps its bounds, timings, interpreters and policy; otherwise it gets
/// the `step` policy when exactly one alarm asks for more capacity
/// (greater than) and one for less, else `hold`. `check_as` is the file
/// the result is validated as (relative plugin paths resolve beside it).
pub fn import(
    application: &str,
    described: &[DescribedAlarm],
    existing: Option<&ApplicationConfig>,
    check_as: &Path,
) -> Result<ImportedAlarms, ImportAlarmsError> {
    if let Some(app) = existing
        && app.target == TargetKind::Flink
    {
        return Err(ImportAlarmsError::FlinkTarget {
            application: application.to_owned(),
        });
    }
    let mut series: Vec<Series> = Vec::new();
    let mut locals: Vec<Local> = Vec::new();
    let mut skipped = Vec::new();
    let mine: Vec<&DescribedAlarm> = described
        .iter()
        .filter(|a| belongs_to(a, application))
        .collect();
    // The ids of the mirrors `alarms sync` made (and that can be read
    // back): the local alarms the agent ran with.
    let mirrored: BTreeMap<String, &str> = mine
        .iter()
        .filter(|a| is_mirror(a, application) && readable(a).is_ok())
        .map(|a| (alarm_id(&a.name, application), a.name.as_str()))
        .collect();
    for a in mine {
        if !is_mirror(a, application)
            && let Some(mirror) = mirrored.get(&alarm_id(&a.name, application))
        {
            // The original of a mirror (the reference design's alarm the
            // local one was imported from, ...): importing both would make
            // the one local alarm two, `scale-out` and `scale-out-2`.
            skipped.push(Skipped {
                name: a.name.clone(),
                reason: format!(
                    "its id {:?} is the local alarm {mirror:?} mirrors (made by `flinkscale alarms sync`), which is imported instead",
                    alarm_id(&a.name, application)
                ),
            });
            continue;
        }
        let (s, mut local) = match readable(a) {
            Ok(found) => found,
            Err(reason) => {
                skipped.push(Skipped {
                    name: a.name.clone(),
                    reason,
                });
                continue;
            }
        };
        let same = |x: &Series| {
            x.namespace == s.namespace
                && x.metric_name == s.metric_name
                && x.dimensions == s.dimensions
                && x.statistic == s.statistic
                && x.period_secs == s.period_secs
        };
        local.metric = match series.iter().find(|x| same(x)) {
            Some(existing) => existing.id.clone(),
            None => {
                let taken: Vec<String> = series.iter().map(|x| x.id.clone()).collect();
                let id = unique(metric_id(&s.metric_name), "_", &taken);
                series.push(Series {
                    id: id.clone(),
                    ..s
                });
                id
            }
        };
        let taken: Vec<String> = locals.iter().map(|l| l.id.clone()).collect();
        local.id = unique(alarm_id(&local.cloudwatch_name, application), "-", &taken);
        locals.push(local);
    }
    if locals.is_empty() {
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped: {}", skipped_list(&skipped))
        };
        return Err(ImportAlarmsError::NoAlarms {
            application: application.to_owned(),
            described: described.len(),
            skipped,
        });
    }
    let kept = match existing {
        Some(app) => keep_metrics(app, &mut series, &mut locals),
        None => Vec::new(),
    };
    let text = to_toml(application, &series, &kept, &locals, &skipped, existing);
    match crate::config::load::load_str(&text, check_as) {
        Ok(_) => Ok(ImportedAlarms {
            toml: text,
            imported: locals.len(),
            skipped,
            holds: existing.is_none() && step_pair(&locals).is_none(),
        }),
        Err(errors) => Err(ImportAlarmsError::Invalid {
            errors: errors.to_string(),
        }),
    }
}

/// With `--config`, what its application keeps: a series the import
/// reads that the application already has takes that metric's id (which
/// its policy, interpreters and expressions may name) and its
/// `min_publication_delay_secs`; the application's metrics no imported
/// alarm watches (a policy's own, an expression) are given back to be
/// written as they are. Series ids the kept metrics use are renamed
/// (alarms follow). They used to be dropped: the params of a `rate`
/// policy named metrics that were gone.
fn keep_metrics<'a>(
    app: &'a ApplicationConfig,
    series: &mut [Series],
    locals: &mut [Local],
) -> Vec<&'a MetricConfig> {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut matched: Vec<&str> = Vec::new();
    let mut is_matched = vec![false; series.len()];
    for (s, is_matched) in series.iter_mut().zip(&mut is_matched) {
        let same = app.metrics.iter().find(|m| {
            m.source == MetricSourceKind::Cloudwatch
                && m.expression.is_none()
                && m.namespace.as_deref() == Some(s.namespace.as_str())
                && m.metric_name.as_deref() == Some(s.metric_name.as_str())
                && m.dimensions == s.dimensions
                && m.statistic.as_deref() == Some(s.statistic.as_str())
                && m.period_secs == s.period_secs
                && !matched.contains(&m.id.as_str())
        });
        if let Some(m) = same {
            matched.push(&m.id);
            *is_matched = true;
            s.min_publication_delay_secs = m.min_publication_delay_secs;
            if s.id != m.id {
                renamed.insert(s.id.clone(), m.id.clone());
                s.id = m.id.clone();
            }
        }
    }
    let kept: Vec<&MetricConfig> = app
        .metrics
        .iter()
        .filter(|m| !matched.contains(&m.id.as_str()))
        .collect();
    // The series no metric matched keep their ids unless a matched one
    // or a kept metric has it.
    let mut taken: Vec<String> = series
        .iter()
        .zip(&is_matched)
        .filter(|(_, m)| **m)
        .map(|(s, _)| s.id.clone())
        .chain(kept.iter().map(|m| m.id.clone()))
        .collect();
    for (s, _) in series.iter_mut().zip(&is_matched).filter(|(_, m)| !**m) {
        if taken.contains(&s.id) {
            let id = unique(s.id.clone(), "_", &taken);
            renamed.insert(s.id.clone(), id.clone());
            s.id = id;
        }
        taken.push(s.id.clone());
    }
    for l in locals.iter_mut() {
        if let Some(id) = renamed.get(&l.metric) {
            l.metric = id.clone();
        }
    }
    kept
}

/// A kept `[[application.metric]]` as it was written.
fn metric_lines(out: &mut String, m: &MetricConfig) {
    let _ = writeln!(
        out,
        "\n[[application.metric]]\n# Kept from the agent's configuration.\nid = {}",
        toml_string(&m.id)
    );
    if m.source == MetricSourceKind::Flink {
        let _ = writeln!(out, "source = \"flink\"");
    }
    let optional = [
        ("vertex", &m.vertex),
        ("namespace", &m.namespace),
        ("metric_name", &m.metric_name),
        ("statistic", &m.statistic),
        ("expression", &m.expression),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            let _ = writeln!(out, "{key} = {}", toml_string(value));
        }
    }
    let _ = writeln!(out, "period_secs = {}", m.period_secs);
    if let Some(secs) = m.min_publication_delay_secs {
        let _ = writeln!(out, "min_publication_delay_secs = {secs}");
    }
    if !m.dimensions.is_empty() {
        let _ = writeln!(out, "[application.metric.dimensions]");
        for (k, v) in &m.dimensions {
            let _ = writeln!(out, "{} = {}", toml_key(k), toml_string(v));
        }
    }
}

fn skipped_list(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|s| format!("{:?}: {}", s.name, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `key = value` lines of a plugin's params, each value inline.
fn params_lines(out: &mut String, params: &toml::Table) {
    for (k, v) in params {
        let _ = writeln!(out, "{} = {}", toml_key(k), inline(v));
    }
}

/// `v` as an inline TOML value (tables as `{ ... }`).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        toml::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn plugin_section(out: &mut String, header: &str, params_header: &str, plugin: &PluginConfig) {
    let _ = writeln!(out, "\n{header}\nplugin = {}", toml_string(&plugin.plugin));
    if plugin.history_days > 0 {
        let _ = writeln!(out, "history_days = {}", plugin.history_days);
    }
    if !plugin.params.is_empty() {
        let _ = writeln!(out, "{params_header}");
        params_lines(out, &plugin.params);
    }
}

fn to_toml(
    application: &str,
    series: &[Series],
    kept: &[&MetricConfig],
    locals: &[Local],
    skipped: &[Skipped],
    existing: Option<&ApplicationConfig>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `flinkscale import alarms` (flinkscale {}) from the CloudWatch\n\
         # alarms that watch application {}: each [[application.alarm]] is\n\
         # evaluated locally with CloudWatch's rules on the same metric, statistic,\n\
         # period, threshold, N of M and missing-data rule as the alarm it names.\n\
         # Check it with `flinkscale validate FILE`.",
        env!("CARGO_PKG_VERSION"),
        toml_string(application)
    );
    for s in skipped {
        let _ = writeln!(
            out,
            "# Not imported: the CloudWatch alarm {}: {}.",
            toml_string(&s.name),
            s.reason
        );
    }
    let _ = writeln!(
        out,
        "\n[[application]]\nname = {}",
        toml_string(application)
    );
    match existing {
        Some(app) => {
            let _ = writeln!(
                out,
                "# Kept from the agent's configuration.\nmin_kpu = {}\nmax_kpu = {}\nupdate_poll_secs = {}\nupdate_timeout_secs = {}\ngrace_period_secs = {}",
                app.min_kpu,
                app.max_kpu,
                app.update_poll_secs,
                app.update_timeout_secs,
                app.grace_period_secs
            );
            if let Some(secs) = app.evaluation_interval_secs {
                let _ = writeln!(out, "evaluation_interval_secs = {secs}");
            }
            if app.mode != Mode::Active {
                let _ = writeln!(out, "mode = {}", toml_string(app.mode.as_str()));
            }
            if let Some(lazy) = app.lazy_polling {
                let _ = writeln!(out, "lazy_polling = {lazy}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "# The alarms do not say the bounds: set them (defaults: 1 and 10 KPU).\n# min_kpu = 1\n# max_kpu = 10\n\
                 # Nor the grace period and the poll while UPDATING: the defaults hold\n\
                 # (the reference template's are ScalingGracingPeriod 200 and\n\
                 # UpdateApplicationWaitingTime 15; `import cfn` reads them from the stack).\n\
                 # grace_period_secs = 300\n# update_poll_secs = 60"
            );
        }
    }
    for s in series {
        let _ = writeln!(
            out,
            "\n[[application.metric]]\nid = {}\nnamespace = {}\nmetric_name = {}\nstatistic = {}\nperiod_secs = {}",
            toml_string(&s.id),
            toml_string(&s.namespace),
            toml_string(&s.metric_name),
            toml_string(&s.statistic),
            s.period_secs
        );
        if let Some(secs) = s.min_publication_delay_secs {
            let _ = writeln!(
                out,
                "min_publication_delay_secs = {secs}  # kept from the agent's configuration"
            );
        }
        if !s.dimensions.is_empty() {
            let _ = writeln!(out, "[application.metric.dimensions]");
            for (k, v) in &s.dimensions {
                let _ = writeln!(out, "{} = {}", toml_key(k), toml_string(v));
            }
        }
    }
    for m in kept {
        metric_lines(&mut out, m);
    }
    for l in locals {
        let _ = writeln!(
            out,
            "\n[[application.alarm]]\n# The CloudWatch alarm {}.\nid = {}\nmetric = {}\ncomparison = {}\nthreshold = {}\nevaluation_periods = {}\ndatapoints_to_alarm = {}\ntreat_missing_data = {}",
            toml_string(&l.cloudwatch_name),
            toml_string(&l.id),
            toml_string(&l.metric),
            toml_string(&l.comparison),
            toml::Value::Float(l.threshold),
            l.evaluation_periods,
            l.datapoints_to_alarm,
            toml_string(&l.treat_missing_data)
        );
    }
    match existing {
        Some(app) => {
            for i in &app.interpreters {
                plugin_section(
                    &mut out,
                    "[[application.interpreter]]",
                    "[application.interpreter.params]",
                    i,
                );
            }
            plugin_section(
                &mut out,
                "[application.policy]\n# Kept from the agent's configuration.",
                "[application.policy.params]",
                &app.policy,
            );
        }
        None => {
            if let Some((up, down)) = step_pair(locals) {
                let _ = writeln!(
                    out,
                    "\n[application.policy]\n# The reference design's step scaling. The factors are not in the alarms\n\
                     # (the reference Lambda's ScaleOperation, ScaleOutFactor, ScaleInFactor):\n\
                     # set them here, or use `flinkscale import cfn` with the stack's parameters.\n\
                     plugin = \"step\"\n\n[application.policy.params]\nscale_out_alarm = {}\nscale_in_alarm = {}\noperation = \"multiply\"\nscale_out_factor = 2\nscale_in_factor = 2",
                    toml_string(&up.id),
                    toml_string(&down.id)
                );
            } else {
                let _ = writeln!(
                    out,
                    "\n[application.policy]\n# The alarms are not one scale-out / scale-in pair: choose a policy\n\
                     # (README, \"Configuration reference\": `step` and the others; `flinkscale\n\
                     # plugin describe NAME` lists a policy's params); `hold` never rescales.\n\
                     plugin = \"hold\""
                );
            }
        }
    }
    out
}

/// The scale-out and scale-in alarms a `step` policy is given: the
/// reference design's pair (`ScaleOutAlarm-APP` and `ScaleInAlarm-APP`,
/// ids `scale-out` and `scale-in`) whatever other alarms watch the
/// application (a checkpoint alarm for the on-call), else the one alarm
/// that asks for more capacity (greater than) and the one that asks for
/// less; `None` when neither is there.
fn step_pair(locals: &[Local]) -> Option<(&Local, &Local)> {
    let up = |l: &&Local| l.comparison.starts_with("Greater");
    let down = |l: &&Local| l.comparison.starts_with("Less");
    let named = |id: &str| locals.iter().find(|l| l.id == id);
    if let (Some(out), Some(in_)) = (named("scale-out"), named("scale-in"))
        && up(&out)
        && down(&in_)
    {
        return Some((out, in_));
    }
    let ups: Vec<&Local> = locals.iter().filter(up).collect();
    let downs: Vec<&Local> = locals.iter().filter(down).collect();
    match (ups.as_slice(), downs.as_slice()) {
        ([out], [in_]) => Some((out, in_)),
        _ => None,
    }
}

/// The file an import without `--config` is checked as.
pub fn default_check_path() -> PathBuf {
    PathBuf::from("<imported>.toml")
}
