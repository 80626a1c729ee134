//! Conventions every command that reads a configuration shares: where the
//! file comes from (`--config FILE`, `validate`'s `FILE` argument, or
//! `FLINKSCALE_CONFIG`), and what is said when none of them gives one that
//! exists.
//!
//! `demo` and `simulate` take `--config` as an optional override of their
//! own bundled or preset configuration and deliberately ignore
//! `FLINKSCALE_CONFIG`: an operator's shell that points the agent at its
//! production file must not silently change what the demo or a simulation
//! runs.

use std::path::{Path, PathBuf};

use crate::config::{Config, MetricSourceKind};
use crate::target::flink::{DescribedJob, FlinkTarget};
use crate::target::{ScalingTarget, TargetError};

/// The environment variable naming the configuration file when no
/// `--config` is given.
pub const CONFIG_ENV: &str = "FLINKSCALE_CONFIG";

/// `--config FILE` of a command that needs a configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFile {
    /// The configuration file (default: $FLINKSCALE_CONFIG).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where the configuration file's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--config FILE`.
    Flag,
    /// `validate FILE`.
    Argument,
    /// `$FLINKSCALE_CONFIG`.
    Environment,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--config",
            Origin::Argument => "the FILE argument",
            Origin::Environment => CONFIG_ENV,
        })
    }
}

/// Why no configuration file could be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigPathError {
    /// None of the places a file can be named gave one.
    #[error(
        "no configuration file: looked at --config (not given){argument}, and {CONFIG_ENV} ({env}); give --config FILE or set {CONFIG_ENV}=FILE"
    )]
    NotGiven {
        /// `, the FILE argument (not given)` for `validate`, else empty.
        argument: &'static str,
        /// `not set`, or `set but empty`.
        env: &'static str,
    },
    /// `validate FILE --config OTHER`: two different files.
    #[error(
        "two configuration files: {argument} (the FILE argument) and {flag} (--config); give one"
    )]
    Conflict {
        /// The FILE argument.
        argument: PathBuf,
        /// `--config`.
        flag: PathBuf,
    },
    /// The named file does not exist (or cannot be seen).
    #[error("configuration file {path} (from {origin}) cannot be read: {reason}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Where its name came from.
        origin: Origin,
        /// The operating system's answer.
        reason: String,
    },
}

/// The configuration file to read: `flag` (`--config`), else `argument`
/// (`validate FILE`; `None` for commands without one), else
/// `$FLINKSCALE_CONFIG` as `env` gives it; checked to exist, so that a
/// wrong name is reported with where it came from.
pub fn resolve(
    flag: Option<&Path>,
    argument: Option<&Path>,
    env: Option<&std::ffi::OsStr>,
    takes_argument: bool,
) -> Result<(PathBuf, Origin), ConfigPathError> {
    let chosen = match (flag, argument) {
        (Some(flag), Some(argument)) if flag != argument => {
            return Err(ConfigPathError::Conflict {
                argument: argument.to_path_buf(),
                flag: flag.to_path_buf(),
            });
        }
        (Some(flag), _) => (flag.to_path_buf(), Origin::Flag),
        (None, Some(argument)) => (argument.to_path_buf(), Origin::Argument),
        (None, None) => match env.filter(|v| !v.is_empty()) {
            Some(value) => (PathBuf::from(value), Origin::Environment),
            None => {
                return Err(ConfigPathError::NotGiven {
                    argument: if takes_argument {
                        ", the FILE argument (not given)"
                    } else {
                        ""
                    },
                    env: if env.is_some() {
                        "set but empty"
                    } else {
                        "not set"
                    },
                });
            }
        },
    };
    match std::fs::metadata(&chosen.0) {
        Ok(meta) if meta.is_file() => Ok(chosen),
        Ok(meta) => Err(ConfigPathError::Missing {
            path: chosen.0,
            origin: chosen.1,
            reason: if meta.is_dir() {
                "it is a folder; give the configuration file in it".to_owned()
            } else {
                // A pipe, a device: read once, it could not be read again
                // to locate a plugin's errors, nor at a SIGHUP.
                "not a regular file (a pipe or a device: the agent reads the file \
                 again to locate errors and at every SIGHUP); write it to a file first"
                    .to_owned()
            },
        }),
        Err(error) => Err(ConfigPathError::Missing {
            path: chosen.0,
            origin: chosen.1,
            reason: error.to_string(),
        }),
    }
}

/// [`resolve`] with the process's `$FLINKSCALE_CONFIG`.
pub fn config_path(
    flag: Option<&Path>,
    argument: Option<&Path>,
    takes_argument: bool,
) -> Result<PathBuf, ConfigPathError> {
    let env = std::env::var_os(CONFIG_ENV);
    resolve(flag, argument, env.as_deref(), takes_argument).map(|(path, _)| path)
}

/// What `validate --environment` found out about one application from
/// DescribeApplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The application.
    pub application: String,
    /// Whether it stops the agent from working as configured.
    pub problem: bool,
    /// What was found, and what to do about a problem.
    pub message: String,
}

/// What `validate --environment` and `once` say about an application
/// whose MSF autoscaling is on, and how to turn it off.
pub const AUTOSCALING_ON: &str = "MSF's own autoscaling is on (AutoScalingEnabled): it would \
     rescale the application too, fighting the agent; turn it off (UpdateApplication with \
     ParallelismConfigurationUpdate.AutoScalingEnabledUpdate = false, or \"Automatic scaling\" \
     off in the console)";

/// How far back `validate --environment` looks for each CloudWatch
/// metric's datapoints (at least two periods of the longest).
pub const METRIC_LOOKBACK_MS: i64 = 3 * 3600 * 1000;

/// Reads the last [`METRIC_LOOKBACK_MS`] of every CloudWatch metric of
/// `config` (not metric math, not Flink's) through `source`, one
/// GetMetricData per application: a metric without a datapoint in that
/// time is a finding (not a problem: a metric not published yet, a custom
/// one, may come). A namespace, name (case-sensitive) or dimension that
/// names nothing, or the wrong region, gives no data either, and the
/// alarms on it stay `INSUFFICIENT_DATA` for good: the agent would never
/// scale on it, and say nothing more than that.
pub async fn metric_findings(
    config: &Config,
    source: &dyn crate::metrics::MetricSource,
    region: &str,
    now_ms: i64,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for app in config
        .applications
        .iter()
        .filter(|a| a.mode != crate::config::Mode::Paused)
    {
        let queries: Vec<crate::metrics::MetricQuery> = app
            .metrics
            .iter()
            .filter(|m| m.source == crate::config::MetricSourceKind::Cloudwatch)
            .map(|m| crate::metrics::MetricQuery::from_config(m, &app.metrics))
            .filter(|q| q.expression.is_none())
            .collect();
        if queries.is_empty() {
            continue;
        }
        // At least two periods of the longest metric.
        let lookback_ms = queries
            .iter()
            .map(|q| 2 * i64::from(q.period_secs) * 1000)
            .fold(METRIC_LOOKBACK_MS, i64::max);
        let (problem, message) = match source.fetch(&queries, now_ms - lookback_ms, now_ms).await {
            Ok(series) => {
                let empty: Vec<String> = series
                    .iter()
                    .zip(&queries)
                    .filter(|(s, _)| s.points.is_empty())
                    .map(|(_, q)| {
                        format!(
                            "{} ({} {} {}, {})",
                            q.id,
                            q.namespace,
                            q.metric_name,
                            q.statistic,
                            dimension_list(&q.dimensions)
                        )
                    })
                    .collect();
                if empty.is_empty() {
                    continue;
                }
                let hints: String = series
                    .iter()
                    .zip(&queries)
                    .filter(|(s, _)| s.points.is_empty())
                    .filter_map(|(_, q)| msf_task_level_hint(q))
                    .map(|hint| format!("; {hint}"))
                    .collect();
                (
                    false,
                    format!(
                        "warning: no datapoint in the last {} in {region} (GetMetricData) for {}: \
                         check the namespace, the metric name (case-sensitive), the dimensions \
                         and the region; until it has data, the alarms on it stay \
                         INSUFFICIENT_DATA and nothing is decided on it{hints}",
                        if lookback_ms % 3_600_000 == 0 {
                            format!("{} h", lookback_ms / 3_600_000)
                        } else {
                            crate::telemetry::failing::duration_words(lookback_ms)
                        },
                        empty.join("; ")
                    ),
                )
            }
            Err(error) => (true, format!("GetMetricData failed: {error}")),
        };
        findings.push(Finding {
            application: app.name.clone(),
            problem,
            message,
        });
    }
    findings
}

/// MSF's metrics that it publishes per task and operator only, never per
/// application (AWS's "Metrics and dimensions in Managed Service for
/// Apache Flink": level Task, Operator, Parallelism).
const MSF_TASK_LEVEL_METRICS: [&str; 3] = [
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
];

/// Why `query` finds nothing when it asks MSF for a task-level metric
/// with the `Application` dimension alone, and what to do; `None` for any
/// other query.
fn msf_task_level_hint(query: &crate::metrics::MetricQuery) -> Option<String> {
    let application_only = query.dimensions.keys().all(|k| k == "Application");
    (query.namespace == "AWS/KinesisAnalytics"
        && MSF_TASK_LEVEL_METRICS.contains(&query.metric_name.as_str())
        && application_only)
        .then(|| {
            format!(
                "{}: MSF publishes {} per task and operator, not per application: set the \
                 application's metrics level to TASK or finer (MonitoringConfiguration \
                 MetricsLevel; the change restarts it) and give the metric the dimensions of \
                 its busiest task beside Application (aws cloudwatch list-metrics --namespace \
                 AWS/KinesisAnalytics --metric-name {} lists them)",
                query.id, query.metric_name, query.metric_name
            )
        })
}

/// What `min_kpu`..`max_kpu` come to in parallelism when the application
/// runs `per_kpu` subtasks per KPU (above 1): the reference design's
/// MinKPU and MaxKPU bound its Parallelism, and an imported configuration
/// keeps the numbers, so the same bounds allow `per_kpu` times the size.
fn parallelism_note(min_kpu: u32, max_kpu: u32, per_kpu: u32) -> String {
    if per_kpu <= 1 {
        return String::new();
    }
    let times = |kpu: u32| u64::from(kpu) * u64::from(per_kpu);
    format!(
        "; ParallelismPerKPU is {per_kpu}: min_kpu..max_kpu {min_kpu}..{max_kpu} allow \
         parallelism {}..{} (the reference design's MinKPU and MaxKPU bound its Parallelism: \
         for the same bounds, divide them by {per_kpu})",
        times(min_kpu),
        times(max_kpu)
    )
}

/// What the first evaluation does to an application running at `kpu`
/// outside `min_kpu`..`max_kpu`: the bounds bind what runs, so it is
/// brought to the nearest one with no alarm firing (the reference design
/// only clamps the sizes it computes). Empty inside them.
fn bounds_note(min_kpu: u32, max_kpu: u32, kpu: u32) -> String {
    let (bound, name) = if kpu > max_kpu {
        (max_kpu, "above max_kpu")
    } else if kpu < min_kpu {
        (min_kpu, "below min_kpu")
    } else {
        return String::new();
    };
    format!(
        "; it runs {name} {bound}: the first evaluation brings it to {bound} KPU whatever the \
         alarms say (the bounds bind what runs); set the bounds first if that is not meant"
    )
}

/// Calls DescribeApplication for every application of `config` on
/// `target`: does it exist (in `region`), may the agent read it, and is
/// MSF's own autoscaling on (which would rescale it behind the agent's
/// back until the agent's first UpdateApplication turns it off)?
pub async fn describe_findings(
    config: &Config,
    target: &dyn ScalingTarget,
    region: &str,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let msf = config
        .applications
        .iter()
        .filter(|app| app.target == crate::config::TargetKind::Msf);
    for app in msf {
        let (problem, message) = match target.describe(&app.name).await {
            Ok(state) if state.autoscaling_enabled => (true, AUTOSCALING_ON.to_owned()),
            Ok(state) => (
                false,
                format!(
                    "DescribeApplication: exists, {}, {} KPU, MSF's own autoscaling off{}{}",
                    state.status,
                    state.kpu(),
                    parallelism_note(app.min_kpu, app.max_kpu, state.parallelism_per_kpu),
                    bounds_note(app.min_kpu, app.max_kpu, state.kpu())
                ),
            ),
            Err(TargetError::NotFound(error)) => (
                true,
                format!(
                    "no such application in {region} (DescribeApplication: {error}); check \
                     its name and the region"
                ),
            ),
            Err(TargetError::Permission(error)) => (
                true,
                format!(
                    "permission denied: {error}; the agent's role needs \
                     kinesisanalytics:DescribeApplication on this application (see \
                     `flinkscale iam`)"
                ),
            ),
            Err(error) => (true, format!("DescribeApplication failed: {error}")),
        };
        findings.push(Finding {
            application: app.name.clone(),
            problem,
            message,
        });
    }
    findings
}

/// Reads the job of every `target = "flink"` application of `config` over
/// its cluster's REST API: is the cluster reachable, is the job there and
/// running, and can it be rescaled in place (the adaptive scheduler lists
/// its vertices' resource requirements)?
pub async fn flink_findings(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for app in &config.applications {
        let Some((rest_url, job)) = app.flink() else {
            continue;
        };
        let target = FlinkTarget::for_job(&rest_url, job.clone());
        let described = match &target {
            Ok(target) => target.describe_job(&app.name).await,
            Err(error) => Err(error.clone()),
        };
        let (problem, message) = match described {
            Ok(DescribedJob {
                state,
                job_id,
                max_parallelism: job_max,
                shape,
            }) => {
                let (min, max) = app.parallelism_bounds();
                let mut problem = false;
                let mut message = format!(
                    "Flink job ({job}) at {rest_url}: {}, parallelism {} (max_parallelism {max})",
                    state.status, state.parallelism
                );
                // The slots are the ceiling of every rescale: say them, and
                // what they leave of max_parallelism.
                // Of the job just read, by its id: not resolved again.
                let slots = match &target {
                    Ok(target) => target.slots(&job_id).await,
                    Err(error) => Err(error.clone()),
                };
                match slots {
                    Ok((free, sentence)) => {
                        message.push_str(&format!("; {sentence}"));
                        if shape.scaled > 1 && free < u64::MAX {
                            message.push_str(&format!(
                                ", and the job takes {} task slots per unit of parallelism \
                                 (one in each of its {} slot sharing groups with a parallel \
                                 vertex)",
                                shape.scaled, shape.scaled
                            ));
                        }
                        let usable = shape.parallelism_within(free);
                        if u64::from(min) > usable {
                            // The agent would bring the job up to the
                            // floor and be refused at every evaluation.
                            problem = true;
                            message.push_str(&format!(
                                ", below min_parallelism {min}: the job cannot be brought \
                                 to it; lower min_parallelism or add task slots"
                            ));
                        } else if u64::from(max) > usable {
                            message.push_str(&format!(
                                ", so a rescale above parallelism {usable} is refused \
                                 until slots are freed or added"
                            ));
                        }
                    }
                    Err(error) => {
                        message.push_str(&format!("; its task slots cannot be read: {error}"));
                    }
                }
                // The job's key groups bound it whatever the slots: Flink
                // refuses requirements above them.
                if let Some(job_max) = job_max {
                    if u64::from(min) > job_max {
                        problem = true;
                        message.push_str(&format!(
                            "; the job's max parallelism is {job_max}, below min_parallelism \
                             {min}: Flink refuses the floor; lower min_parallelism or resubmit \
                             the job with a higher pipeline.max-parallelism"
                        ));
                    } else if u64::from(max) > job_max {
                        message.push_str(&format!(
                            "; the job's max parallelism is {job_max}, below max_parallelism \
                             {max}: a rescale above {job_max} is refused (resubmit the job with \
                             a higher pipeline.max-parallelism to go further)"
                        ));
                    }
                }
                (problem, message)
            }
            Err(TargetError::NotFound(error)) => (
                true,
                format!(
                    "Flink job ({job}) not found at {rest_url}: {error}; check job_name / job_id and that the job is running"
                ),
            ),
            Err(error) => (
                true,
                format!("Flink job ({job}) at {rest_url} cannot be read: {error}"),
            ),
        };
        let found = !problem;
        findings.push(Finding {
            application: app.name.clone(),
            problem,
            message,
        });
        if found {
            findings.extend(vertex_findings(app, &rest_url, &job).await);
        }
    }
    findings
}

/// Checks that the `vertex` of each `source = "flink"` metric of `app`
/// names a vertex of its job (read at `rest_url`): one finding per metric
/// whose `vertex` matches none, naming the job's vertices.
async fn vertex_findings(
    app: &crate::config::ApplicationConfig,
    rest_url: &crate::flink::RestUrl,
    job: &crate::config::FlinkJob,
) -> Vec<Finding> {
    let selectors: Vec<(String, String)> = app
        .metrics
        .iter()
        .filter(|m| m.source == MetricSourceKind::Flink)
        .map(|m| {
            (
                m.id.clone(),
                m.vertex.clone().unwrap_or_else(|| "all".to_owned()),
            )
        })
        .collect();
    if selectors.is_empty() {
        return Vec::new();
    }
    let finding = |problem, message| Finding {
        application: app.name.clone(),
        problem,
        message,
    };
    match crate::metrics::flink::unmatched_vertices(rest_url, job, &selectors).await {
        Ok(checked) => checked
            .into_iter()
            .filter_map(|(id, unmatched)| {
                unmatched.map(|why| finding(true, format!("metric {id:?}.vertex: {why}")))
            })
            .collect(),
        Err(error) => vec![finding(
            true,
            format!("the vertices of Flink job ({job}) at {rest_url} cannot be read: {error}"),
        )],
    }
}

/// A metric's dimensions as the messages write them: `Name=value`, comma
/// separated, in name order.
pub(super) fn dimension_list(dimensions: &std::collections::BTreeMap<String, String>) -> String {
    dimensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSF publishes busy time per task: asked for per application it has
    /// no datapoint on AWS, and the warning says why and what to do; a
    /// query that names a task, or another metric, gets no such hint.
    #[test]
    fn a_task_level_metric_asked_per_application_is_explained() {
        let query = |name: &str, dimensions: &[(&str, &str)]| crate::metrics::MetricQuery {
            id: "busy".to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: name.to_owned(),
            dimensions: dimensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            statistic: "Average".to_owned(),
            period_secs: 60,
            expression: None,
        };
        let hint = msf_task_level_hint(&query("busyTimeMsPerSecond", &[("Application", "a")]))
            .expect("a hint");
        assert!(
            hint.starts_with("busy: MSF publishes busyTimeMsPerSecond per task and operator")
                && hint.contains("metrics level to TASK or finer")
                && hint.contains("--metric-name busyTimeMsPerSecond lists them"),
            "{hint}"
        );
        assert!(msf_task_level_hint(&query("busyTimeMsPerSecond", &[])).is_some());
        assert_eq!(
            msf_task_level_hint(&query(
                "busyTimeMsPerSecond",
                &[("Application", "a"), ("TaskName", "t")]
            )),
            None
        );
        assert_eq!(
            msf_task_level_hint(&query("numRecordsInPerSecond", &[("Application", "a")])),
            None
        );
    }

    #[test]
    fn bounds_are_said_in_parallelism_when_a_kpu_runs_several_subtasks() {
        assert_eq!(parallelism_note(1, 8, 1), "");
        assert_eq!(
            parallelism_note(1, 8, 4),
            "; ParallelismPerKPU is 4: min_kpu..max_kpu 1..8 allow parallelism 4..32 (the \
             reference design's MinKPU and MaxKPU bound its Parallelism: for the same bounds, \
             divide them by 4)"
        );
    }

    #[test]
    fn a_size_outside_the_bounds_is_said_to_be_brought_inside() {
        assert_eq!(bounds_note(1, 10, 10), "");
        assert_eq!(bounds_note(2, 10, 2), "");
        assert_eq!(
            bounds_note(1, 10, 16),
            "; it runs above max_kpu 10: the first evaluation brings it to 10 KPU whatever the \
             alarms say (the bounds bind what runs); set the bounds first if that is not meant"
        );
        assert!(
            bounds_note(4, 10, 2)
                .contains("below min_kpu 4: the first evaluation brings it to 4 KPU")
        );
    }

    #[test]
    fn the_flag_wins_then_the_argument_then_the_environment() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "").expect("writable");
        std::fs::write(&b, "").expect("writable");
        let env = Some(b.as_os_str());
        assert_eq!(
            resolve(Some(&a), None, env, false),
            Ok((a.clone(), Origin::Flag))
        );
        assert_eq!(
            resolve(None, Some(&a), env, true),
            Ok((a.clone(), Origin::Argument))
        );
        assert_eq!(
            resolve(None, None, env, false),
            Ok((b.clone(), Origin::Environment))
        );
        assert_eq!(
            resolve(Some(&a), Some(&a), None, true),
            Ok((a.clone(), Origin::Flag))
        );
        assert!(matches!(
            resolve(Some(&a), Some(&b), None, true),
            Err(ConfigPathError::Conflict { .. })
        ));
    }

    /// A folder, or a pipe or device (`/dev/stdin`), given as the
    /// configuration is refused with what to give instead.
    #[test]
    fn a_folder_or_a_pipe_is_not_a_configuration_file() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let folder = resolve(Some(dir.path()), None, None, false).unwrap_err();
        assert!(
            folder
                .to_string()
                .ends_with("cannot be read: it is a folder; give the configuration file in it"),
            "{folder}"
        );
        let device = resolve(Some(Path::new("/dev/null")), None, None, false).unwrap_err();
        assert_eq!(
            device.to_string(),
            "configuration file /dev/null (from --config) cannot be read: not a regular file \
             (a pipe or a device: the agent reads the file again to locate errors and at every \
             SIGHUP); write it to a file first"
        );
    }

    /// A configuration of one Flink application, job `orders` at `url`,
    /// bounded to `min`..=`max` parallelism.
    fn flink_orders(url: &str, min: u32, max: u32) -> Config {
        toml::from_str(&format!(
            "[[application]]\nname = \"orders\"\ntarget = \"flink\"\n\
             rest_url = {url:?}\nmin_parallelism = {min}\nmax_parallelism = {max}\n\
             [application.policy]\nplugin = \"hold\"\n"
        ))
        .expect("a test configuration")
    }

    /// `validate --environment` reports a Flink job's parallelism beside
    /// its `max_parallelism` and the cluster's task slots, and says when
    /// the slots are the lower ceiling.
    #[tokio::test]
    async fn a_flink_jobs_finding_names_its_parallelism_and_the_clusters_slots() {
        let ours = "a".repeat(32);
        let other = "b".repeat(32);
        let (ours_in, other_in) = (ours.clone(), other.clone());
        let stub = crate::flink::stub::Stub::start(move |line| {
            let job = |parallelism: u32| {
                serde_json::json!({
                    "state": "RUNNING",
                    "timestamps": {"CREATED": 1000},
                    "vertices": [{"id": "v1", "parallelism": parallelism, "status": "RUNNING"}],
                })
            };
            let path = line.split(' ').nth(1).unwrap_or_default();
            let answer = match path {
                "/jobs/overview" => serde_json::json!({"jobs": [
                    {"jid": ours_in, "name": "orders", "state": "RUNNING", "start-time": 1},
                    {"jid": other_in, "name": "other", "state": "RUNNING", "start-time": 1},
                ]}),
                "/overview" => serde_json::json!({"slots-total": 4}),
                p if p == format!("/jobs/{ours_in}") => job(2),
                p if p == format!("/jobs/{other_in}") => job(1),
                p if p == format!("/jobs/{ours_in}/resource-requirements") => {
                    serde_json::json!({"v1": {"parallelism": {"lowerBound": 1, "upperBound": 2}}})
                }
                _ => return (404, serde_json::json!({"errors": ["Not found."]})),
            };
            (200, answer)
        })
        .await;
        let bounded = |min: u32, max: u32| flink_orders(&stub.url, min, max);
        let config = |max: u32| bounded(1, max);
        let findings = flink_findings(&config(8)).await;
        assert_eq!(findings.len(), 1, "{:?}", findings.len());
        assert!(!findings[0].problem);
        // The job's name is resolved once: its slots are read by the id
        // the job's read found (the other `/jobs/overview` lists the other
        // jobs' slots).
        let requests = stub.requests();
        let overviews = requests
            .iter()
            .filter(|r| r.starts_with("GET /jobs/overview "))
            .count();
        assert_eq!(overviews, 2, "{requests:#?}");
        let url = &stub.url;
        assert_eq!(
            findings[0].message,
            format!(
                "Flink job (job_name \"orders\") at {url}: RUNNING, parallelism 2 \
                 (max_parallelism 8); the cluster at {url} has 4 task slots and its other \
                 jobs use 1, so a rescale above parallelism 3 is refused until slots are \
                 freed or added"
            )
        );
        let findings = flink_findings(&config(3)).await;
        assert_eq!(
            findings[0].message,
            format!(
                "Flink job (job_name \"orders\") at {url}: RUNNING, parallelism 2 \
                 (max_parallelism 3); the cluster at {url} has 4 task slots and its other \
                 jobs use 1"
            )
        );
        for finding in &findings {
            assert!(!finding.message.contains("KPU"), "{}", finding.message);
        }
        // A floor above the free slots: the agent would be refused at
        // every evaluation, so it is a problem.
        let findings = flink_findings(&bounded(4, 8)).await;
        assert!(findings[0].problem, "{}", findings[0].message);
        assert!(
            findings[0].message.ends_with(
                "jobs use 1, below min_parallelism 4: the job cannot be brought to it; lower \
                 min_parallelism or add task slots"
            ),
            "{}",
            findings[0].message
        );
    }

    /// `validate --environment` compares the bounds with the job's max
    /// parallelism (the lowest of its vertices'): above it, a rescale is
    /// refused whatever the slots; a floor above it is a problem.
    #[tokio::test]
    async fn a_flink_jobs_finding_compares_the_bounds_with_its_max_parallelism() {
        let ours = "c".repeat(32);
        let ours_in = ours.clone();
        let stub = crate::flink::stub::Stub::start(move |line| {
            let path = line.split(' ').nth(1).unwrap_or_default();
            let answer = match path {
                "/jobs/overview" => serde_json::json!({"jobs": [
                    {"jid": ours_in, "name": "orders", "state": "RUNNING", "start-time": 1},
                ]}),
                "/overview" => serde_json::json!({"slots-total": 16}),
                p if p == format!("/jobs/{ours_in}") => serde_json::json!({
                    "state": "RUNNING",
                    "timestamps": {"CREATED": 1000},
                    "vertices": [
                        {"id": "v1", "parallelism": 2, "maxParallelism": 128, "status": "RUNNING"},
                        {"id": "v2", "parallelism": 2, "maxParallelism": 6, "status": "RUNNING"},
                    ],
                }),
                p if p == format!("/jobs/{ours_in}/resource-requirements") => serde_json::json!({
                    "v1": {"parallelism": {"lowerBound": 1, "upperBound": 2}},
                    "v2": {"parallelism": {"lowerBound": 1, "upperBound": 2}},
                }),
                _ => return (404, serde_json::json!({"errors": ["Not found."]})),
            };
            (200, answer)
        })
        .await;
        let bounded = |min: u32, max: u32| flink_orders(&stub.url, min, max);
        let within = flink_findings(&bounded(1, 6)).await;
        assert!(!within[0].problem);
        assert!(
            !within[0].message.contains("max parallelism is"),
            "{}",
            within[0].message
        );
        let above = flink_findings(&bounded(1, 8)).await;
        assert!(!above[0].problem, "{}", above[0].message);
        assert!(
            above[0].message.ends_with(
                "has 16 task slots and its other jobs use 0; the job's max parallelism is 6, \
                 below max_parallelism 8: a rescale above 6 is refused (resubmit the job with a \
                 higher pipeline.max-parallelism to go further)"
            ),
            "{}",
            above[0].message
        );
        let floor = flink_findings(&bounded(7, 8)).await;
        assert!(floor[0].problem, "{}", floor[0].message);
        assert!(
            floor[0].message.ends_with(
                "the job's max parallelism is 6, below min_parallelism 7: Flink refuses \
                            the floor; lower min_parallelism or resubmit the job with a higher \
                            pipeline.max-parallelism"
            ),
            "{}",
            floor[0].message
        );
    }

    #[test]
    fn a_missing_file_names_where_it_came_from() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let gone = dir.path().join("gone.toml");
        let message = resolve(None, None, Some(gone.as_os_str()), false)
            .expect_err("missing")
            .to_string();
        assert!(
            message.starts_with(&format!(
                "configuration file {} (from FLINKSCALE_CONFIG) cannot be read:",
                gone.display()
            )),
            "{message}"
        );
        let message = resolve(None, None, Some("".as_ref()), true)
            .expect_err("nothing given")
            .to_string();
        assert_eq!(
            message,
            "no configuration file: looked at --config (not given), the FILE argument \
             (not given), and FLINKSCALE_CONFIG (set but empty); give --config FILE or set \
             FLINKSCALE_CONFIG=FILE"
        );
        let message = resolve(None, None, None, false)
            .expect_err("nothing given")
            .to_string();
        assert!(message.contains("FLINKSCALE_CONFIG (not set)"), "{message}");
    }
}
