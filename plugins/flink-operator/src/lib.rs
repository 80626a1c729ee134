//! `flink-operator`: the autoscaler of the Apache Flink Kubernetes Operator
//! (its `flink-autoscaler` module), ported with its **default**
//! configuration, as a reference for the benchmark: the autoscaler Flink
//! users know, next to the reference design (`seed`) and MSF's own rule
//! (`msf-builtin`).
//!
//! # What it follows
//!
//! The port follows these upstream files of `apache/flink-kubernetes-operator`
//! (`flink-autoscaler/src/main/java/org/apache/flink/autoscaler/`), in the
//! revision where `JobVertexScaler.ParallelismChange` carries
//! `outsideUtilizationBound` and `DelayedScaleDown` keeps the
//! recommendations of the past `scale-down.interval`, and the
//! parallelism alignment of operator 1.16.0 (released 2026-08-06; FLIP-586,
//! `alignment/ParallelismAligner.java` at `649590d`,
//! `alignment/BuiltInAlignmentMode.java` and `JobVertexScaler.scale` at
//! `921ac1e`), whose default, `BALANCED`, replaced `EVENLY_SPREAD`.
//!
//! - `config/AutoScalerOptions.java`: every option and default below.
//! - `ScalingMetricCollector.java`: no metrics while the job stabilises
//!   after a (re)start (`job.autoscaler.stabilization.interval`, 5 min),
//!   and no decision until a whole metric window
//!   (`job.autoscaler.metrics.window`, 15 min) has been collected since;
//!   a restart clears the collected metrics. Upstream's collector samples
//!   Flink at every reconcile and asks only that its samples span the
//!   window; the port reads CloudWatch's periods, which may lack one, and
//!   counts the window as collected when it spans the window and at least
//!   80 % of its periods (`WINDOW_COVERAGE`) have records in and busy time.
//! - `ScalingMetricEvaluator.java`: over the window, the true processing
//!   rate from busy time (TPR = numRecordsInPerSecond /
//!   (busyTimeMsPerSecond / 1000), infinite with no input; 1.16's mean of
//!   `NUM_RECORDS_IN_PER_SECOND` as the numerator, FLINK-39306, applies to
//!   non-source vertices only, so a source's stays the rate of its
//!   records in), switched to the
//!   observed TPR when the busy-time one is more than
//!   `observed-true-processing-rate.switch-threshold` (0.15) above it. The
//!   observed TPR of a period (`ScalingMetrics.getObservedTpr`, stored by
//!   `ScalingMetricCollector`) is, when its lag is at least
//!   `observed-true-processing-rate.lag-threshold` (30 s) of input, its
//!   processed rate over the fraction of the time the source was not
//!   back-pressured (`computeObservedTprWithBackpressure`, the source's
//!   mean `backPressuredTimeMsPerSecond`), infinite with no input, and
//!   otherwise (or back-pressured throughout) the average of those
//!   collected before it since the job's (re)start, so a measurement
//!   carries forward;
//!   the window averages them (`getAverage`: infinite values only count
//!   when there is nothing else, and fewer than
//!   `observed-true-processing-rate.min-observations`, 2, is none). The
//!   target data rate = average records in + growth of the source's lag
//!   over the window; the catch-up rate = lag /
//!   `catch-up.duration` (30 min); processing a backlog when lag / rate >
//!   `backlog-processing.lag-threshold` (5 min); and the scale-up and
//!   scale-down thresholds at utilisation `utilization.target` (0.7,
//!   formerly `target.utilization`) plus and minus
//!   `target.utilization.boundary` (0.3), i.e. 1.0 and 0.4 (1.0 and 0.0,
//!   no scale-down, while processing a backlog).
//! - `utils/AutoScalerUtils.java` `getTargetProcessingCapacity`: LAG /
//!   CATCH_UP + INPUT_RATE x RESTART / CATCH_UP + INPUT_RATE / utilisation,
//!   with `restart.time` (5 min; `restart.time-tracking.enabled` is false
//!   by default, so the observed restart time is not used).
//! - `ScalingTracking.java` (as of upstream commit `0a7588c`), with
//!   `ScalingHistoryUtils.getTrimmedScalingTracking` (`cdf32de`) and
//!   `JobAutoScalerImpl.runScalingLogic` (`68c8c46`): with
//!   `restart.time-tracking.enabled`, RESTART is the longest restart
//!   measured over the rescales kept, capped by
//!   `restart.time-tracking.limit` (15 min), and `restart.time` while none
//!   is measured. Every rescale made is recorded; at every evaluation
//!   while RUNNING the records are trimmed to those of the past
//!   `history.max.age` (24 h) and the newest `history.max.count` (3),
//!   always keeping the latest, whose restart is then measured, from its
//!   decision until the job runs again, once the job runs at the
//!   parallelism it set (`recordRestartDurationIfTrackedAndParallelismMatches`;
//!   see the `tracking` module).
//! - `JobVertexScaler.java`: scale factor = target capacity / TPR, capped
//!   by `scale-down.max-factor` (0.6: at least 0.4 x the parallelism) and
//!   `scale-up.max-factor` (100000); new parallelism = ceil(factor x
//!   current) within `vertex.min-parallelism` (1) and
//!   `vertex.max-parallelism` (200) and the key groups; when that changes
//!   the parallelism, aligned to the key groups (or to
//!   `source_partitions`, below) by
//!   `scaling.parallelism-alignment.mode` (default `BALANCED`: scanning up
//!   from it, to the key groups for a scale-up and to the current
//!   parallelism for a scale-down, the first divisor of the key groups or
//!   parallelism with fewer key groups per subtask; none found, it stays;
//!   see [`scale::Alignment`] for the other modes and the deprecated
//!   `scaling.key-group.partitions.adjust.mode`, whose `EVENLY_SPREAD`
//!   was the default up to 1.15). Every
//!   scale-down recommendation is recorded with whether the TPR was
//!   outside the utilisation boundary; none is made within
//!   `scale-down.interval` (1 h, formerly `scale-up.grace-period`) of the
//!   first, and then the highest recommendation of the past interval is
//!   taken, with its own verdict (`applyScaleDownInterval`,
//!   `DelayedScaleDown.java`); with the interval at 0 the current
//!   recommendation is.
//!   Ineffective-scaling detection
//!   (`scaling.effectiveness.detection.enabled`) is off by default, so it
//!   never blocks a scale-up and is not ported.
//! - `ScalingExecutor.java`: no rescale unless the parallelism changes for
//!   a rate outside the two thresholds (for a delayed scale-down, the
//!   verdict recorded with the recommendation taken); a rescale it makes
//!   clears the delayed scale-downs (`delayedScaleDown.clearAll()` after
//!   scaling), and only that: a change of size by another writer (by hand,
//!   another autoscaler) leaves them, so a scale-down first asked for
//!   before it may be made less than `scale-down.interval` after it.
//!   Upstream re-applies its own size at every reconcile, so it never
//!   meets a recommendation at or above a size someone else set; the port
//!   drops those (taken, they would turn the scale-down into a scale-up).
//!
//! # Mapping to MSF
//!
//! MSF runs a job at one parallelism, KPU x ParallelismPerKPU. The job is
//! taken as one keyed vertex (its source): the operator's per-vertex
//! arithmetic gives one parallelism, which becomes ceil(parallelism /
//! ParallelismPerKPU) KPU. The key groups are the job's max parallelism,
//! Flink's default 128 for a job of parallelism up to 85 (`max_parallelism`),
//! so a scale-up asks for a parallelism `BALANCED` aligns to 128 (1, 2, 4,
//! 6, 7, 8, 10, 11, 12, 13, 15, 16, 19, 22, 26, 32, 43, 64 or 128; a
//! scale-down, which stops at the current one, may end between them) and
//! with one subtask per KPU so are the KPU; with more subtasks per
//! KPU the KPU round up, and the running parallelism is a multiple of
//! ParallelismPerKPU (rounded up past the key groups, which Flink would
//! refuse, they round down instead; a job running above `max_parallelism`
//! has more key groups than the parameter says, and its parallelism is
//! taken as them). That is how upstream aligns a vertex with a keyBy
//! input.
//!
//! Upstream aligns a source vertex to its partitions instead, when it can
//! count them (`NUM_SOURCE_PARTITIONS`: the distinct partitions of a Kafka
//! or Pulsar source's topics, from its per-partition metrics, in
//! `ScalingMetricCollector`), keeping a target above them unaligned, and
//! one whose partitions it cannot count (Kinesis, say) not at all
//! (`ParallelismAlignmentMode.isApplicable`). With `source_partitions`
//! set, the port aligns the job as upstream aligns such a source (where
//! upstream would still align the keyed vertices after it to the key
//! groups: the job has one parallelism); `alignment_mode = "OFF"` models
//! a source upstream cannot count.
//!
//! Busy time: upstream's default
//! `metrics.busy-time.aggregator` is `MAX`, the busiest subtask of a
//! vertex; the port reads one series, `busy_metric`, as its `Average` over
//! each period. MSF publishes `busyTimeMsPerSecond` per task and operator
//! (metrics level `TASK` or finer), not per application; the emulator's
//! and the simulator's one-vertex job publish one value for the job, the
//! mean of its subtasks, which share the load evenly. Read as the mean of
//! unevenly loaded subtasks it gives a higher TPR than upstream would, so
//! the port scales out less.
//!
//! The lag is the source's backlog in records (`SumOffsetLag`).
//! Back-pressure: MSF publishes
//! `backPressuredTimeMsPerSecond` per task and operator too, and Flink's
//! REST API per vertex (`source = "flink"`); `backpressure_metric` names
//! the source's, read as its `Average`. The model's job is one vertex, which
//! nothing downstream back-pressures, so the simulator and the emulator
//! publish none, and without it an observed TPR is the processed rate.
//!
//! The operator's reconcile loop (default 60 s) is the
//! evaluation interval; a rescale is a restart, after which the
//! stabilisation interval runs from the host's `last-rescale-ms`.
//!
//! # State
//!
//! The window is longer than what the host fetches, so the periods seen are
//! cached, as are the delayed scale-down and the rescales tracked (the
//! operator keeps both in its state store). A fresh instance starts all
//! over: for the cache and the delayed scale-down that delays a decision,
//! never causes one; with restart-time tracking on, the restart is
//! `restart_secs` again until a rescale made by the new instance is
//! measured.

#![warn(missing_docs)]

use std::collections::{BTreeMap, VecDeque};

use flinkscale_plugin::{
    AppStatus, Decision, Evaluation, Parameter, Params, Policy, Series, export_policy,
};
use serde::Deserialize;

pub mod scale;
mod tracking;

use scale::{Alignment, Options, WindowMetrics};
use tracking::Tracking;

/// The parameters as written; every key has a declared default.
#[derive(Deserialize)]
struct Config {
    metrics_window_secs: u32,
    stabilization_secs: u32,
    target_utilisation: f64,
    utilisation_boundary: f64,
    catch_up_secs: f64,
    restart_secs: f64,
    restart_time_tracking: bool,
    restart_time_tracking_limit_secs: f64,
    history_max_age_secs: u32,
    history_max_count: u32,
    scale_down_interval_secs: u32,
    scale_up_max_factor: f64,
    scale_down_max_factor: f64,
    vertex_min_parallelism: u32,
    vertex_max_parallelism: u32,
    max_parallelism: u32,
    source_partitions: u32,
    alignment_mode: Option<AlignmentMode>,
    key_group_partitions_adjust_mode: Option<AdjustMode>,
    backlog_lag_threshold_secs: f64,
    observed_tpr_lag_threshold_secs: f64,
    observed_tpr_switch_threshold: f64,
    observed_tpr_min_observations: u32,
    records_in_metric: String,
    busy_metric: String,
    backlog_metric: String,
    backpressure_metric: String,
}

/// `job.autoscaler.scaling.parallelism-alignment.mode`'s built-in modes,
/// as written (a custom mode class cannot be loaded here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum AlignmentMode {
    Balanced,
    EvenlySpread,
    Off,
}

/// The deprecated `job.autoscaler.scaling.key-group.partitions.adjust.mode`,
/// as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum AdjustMode {
    EvenlySpread,
    MaximizeUtilisation,
}

/// `ParallelismAligner.resolve`: the new key when set, else the deprecated
/// key when set, else `BALANCED`.
fn resolve_alignment(mode: Option<AlignmentMode>, legacy: Option<AdjustMode>) -> Alignment {
    match (mode, legacy) {
        (Some(AlignmentMode::Balanced), _) | (None, None) => Alignment::Balanced,
        (Some(AlignmentMode::EvenlySpread), _) => Alignment::EvenlySpread,
        (Some(AlignmentMode::Off), _) => Alignment::Off,
        (None, Some(AdjustMode::EvenlySpread)) => Alignment::LegacyEvenlySpread,
        (None, Some(AdjustMode::MaximizeUtilisation)) => Alignment::LegacyMaximizeUtilisation,
    }
}

/// A window counts as collected when at least this fraction of its periods
/// were published: CloudWatch may miss one, the operator's own collector
/// would only sample less often.
const WINDOW_COVERAGE: f64 = 0.8;

/// What one period published.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Sample {
    records_in: Option<f64>,
    busy_ms: Option<f64>,
    backlog: Option<f64>,
    /// The source's back-pressured ms per second.
    backpressure_ms: Option<f64>,
    /// The period's `OBSERVED_TPR` once derived (NaN: none), see
    /// [`FlinkOperatorPolicy::observe`].
    observed_tpr: Option<f64>,
}

/// One recommended scale-down (`DelayedScaleDown.RecommendedParallelism`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Recommendation {
    at_ms: i64,
    parallelism: u32,
    /// Whether the true processing rate lay outside the utilisation
    /// boundary when this was recommended.
    outside_bound: bool,
}

/// A scale-down waiting for `scale-down.interval`
/// (`DelayedScaleDown.VertexDelayedScaleDownInfo`): when it was first
/// triggered, and the recommendations of the past interval, kept strictly
/// decreasing in parallelism so that the first one is the highest.
#[derive(Debug, Clone, PartialEq)]
struct Delayed {
    first_trigger_ms: i64,
    recommendations: VecDeque<Recommendation>,
}

impl Delayed {
    /// `recordRecommendedParallelism`: a recommendation evicts the older
    /// ones it equals or exceeds, which can no longer be the highest.
    fn record(&mut self, recommendation: Recommendation) {
        while self
            .recommendations
            .back()
            .is_some_and(|r| r.parallelism <= recommendation.parallelism)
        {
            self.recommendations.pop_back();
        }
        self.recommendations.push_back(recommendation);
    }

    /// `getMaxRecommendedParallelism`: the highest recommendation made at
    /// or after `window_start_ms`, forgetting the older ones.
    fn highest_since(&mut self, window_start_ms: i64) -> Option<Recommendation> {
        while self
            .recommendations
            .front()
            .is_some_and(|r| r.at_ms < window_start_ms)
        {
            self.recommendations.pop_front();
        }
        self.recommendations.front().copied()
    }
}

/// The configured policy, its cache of periods and its delayed scale-down.
#[derive(Debug, Clone, PartialEq)]
pub struct FlinkOperatorPolicy {
    options: Options,
    window_ms: i64,
    stabilization_ms: i64,
    restart_secs: f64,
    restart_time_tracking: bool,
    restart_time_tracking_limit_secs: f64,
    history_max_age_ms: i64,
    history_max_count: usize,
    scale_down_interval_ms: i64,
    observed_tpr_lag_threshold_secs: f64,
    observed_tpr_min_observations: usize,
    records_in: String,
    busy: String,
    backlog: String,
    backpressure: String,
    /// Samples by period start (ms); a cache, see the crate docs.
    samples: BTreeMap<i64, Sample>,
    delayed: Option<Delayed>,
    /// The rescales decided and their measured restarts.
    tracking: Tracking,
}

impl Policy for FlinkOperatorPolicy {
    const SUMMARY: &'static str = "The Apache Flink Kubernetes Operator's autoscaler with its \
         default configuration (true processing rate from busy time, target utilisation 0.7 +- \
         0.3, 15 min window, 1 h scale-down interval), for one job-wide parallelism.";

    const PARAMETERS: &'static [Parameter] = &[
        Parameter::integer("metrics_window_secs")
            .default("900")
            .meaning(
                "`job.autoscaler.metrics.window`: the metrics a decision averages; at least 60.",
            ),
        Parameter::integer("stabilization_secs")
            .default("300")
            .meaning(
                "`job.autoscaler.stabilization.interval`: no metrics are collected this long after \
             a rescale.",
            ),
        Parameter::number("target_utilisation")
            .default("0.7")
            .meaning("`job.autoscaler.utilization.target`, in (0, 1]."),
        Parameter::number("utilisation_boundary")
            .default("0.3")
            .meaning(
                "`job.autoscaler.target.utilization.boundary`: no rescale while the utilisation is \
             within the target plus or minus this; in [0, 1].",
            ),
        Parameter::number("catch_up_secs").default("1800").meaning(
            "`job.autoscaler.catch-up.duration`: the backlog and the restart's own backlog are \
             sized to drain within this; 0 disables backlog-based scaling.",
        ),
        Parameter::number("restart_secs")
            .default("300")
            .meaning("`job.autoscaler.restart.time`: the downtime of a rescale; at least 0."),
        Parameter::boolean("restart_time_tracking")
            .default("false")
            .meaning(
                "`job.autoscaler.restart.time-tracking.enabled`: use the longest restart measured \
             over the rescales kept (from the decision until the update that made it completed, \
             counted once the application runs at the parallelism it set), capped by \
             `restart_time_tracking_limit_secs`, instead of `restart_secs`, which stays while \
             none is measured.",
            ),
        Parameter::number("restart_time_tracking_limit_secs")
            .default("900")
            .meaning(
                "`job.autoscaler.restart.time-tracking.limit`: cap on the measured restart, in \
             whole seconds.",
            ),
        Parameter::integer("history_max_age_secs")
            .default("86400")
            .meaning(
                "`job.autoscaler.history.max.age`: rescales decided longer ago are forgotten, \
             with their measured restarts (the latest is always kept).",
            ),
        Parameter::integer("history_max_count")
            .default("3")
            .meaning(
                "`job.autoscaler.history.max.count`: at most this many rescales are kept, the \
             latest ones (the latest always).",
            ),
        Parameter::integer("scale_down_interval_secs")
            .default("3600")
            .meaning(
                "`job.autoscaler.scale-down.interval`: a scale-down waits this long from its first \
             trigger, then takes the highest parallelism recommended since; 0 scales down at once.",
            ),
        Parameter::number("scale_up_max_factor")
            .default("100000")
            .meaning("`job.autoscaler.scale-up.max-factor`: at most (1 + this) x the parallelism."),
        Parameter::number("scale_down_max_factor")
            .default("0.6")
            .meaning(
                "`job.autoscaler.scale-down.max-factor`: at least (1 - this) x the parallelism; in \
             [0, 1].",
            ),
        Parameter::integer("vertex_min_parallelism")
            .default("1")
            .meaning("`job.autoscaler.vertex.min-parallelism`; at least 1."),
        Parameter::integer("vertex_max_parallelism")
            .default("200")
            .meaning("`job.autoscaler.vertex.max-parallelism`; at least `vertex_min_parallelism`."),
        Parameter::integer("max_parallelism")
            .default("128")
            .meaning(
                "The job's key groups (`pipeline.max-parallelism`, 128 by default for a job up to \
             parallelism 85): the parallelism is aligned to it (`alignment_mode`; to \
             `source_partitions` instead when set) and never exceeds it, nor do the KPU rounded \
             up; a job running above it is taken to have its running parallelism as key groups; \
             at least 1.",
            ),
        Parameter::integer("source_partitions")
            .default("0")
            .meaning(
                "The source's partitions over all its topics (a Kafka or Pulsar source's, which \
             upstream counts from its per-partition metrics as `NUM_SOURCE_PARTITIONS`): when \
             more than 0, the parallelism is aligned to them as upstream aligns a source vertex, \
             instead of to the key groups; a target above them is kept as it is (the legacy \
             modes fall back to them). 0: aligned to the key groups, as upstream aligns a vertex \
             with a keyBy input (a source whose partitions upstream cannot count, Kinesis say, \
             it leaves unaligned: `alignment_mode = \"OFF\"`).",
            ),
        Parameter::text("alignment_mode").meaning(
            "`job.autoscaler.scaling.parallelism-alignment.mode`: how the parallelism is aligned to \
             the key groups: \"BALANCED\" (the first parallelism from the computed one that divides \
             the key groups or lowers the key groups per subtask), \"EVENLY_SPREAD\" (the first \
             divisor), \"OFF\" (none); within the scaling direction, else the computed one. \
             Absent: `key_group_partitions_adjust_mode` if set, else \"BALANCED\" (upstream's \
             default since 1.16.0).",
        ),
        Parameter::text("key_group_partitions_adjust_mode").meaning(
            "The deprecated `job.autoscaler.scaling.key-group.partitions.adjust.mode`, read only \
             when `alignment_mode` is absent: \"EVENLY_SPREAD\" (upstream's default up to 1.15) or \
             \"MAXIMIZE_UTILISATION\"; with no aligned parallelism within the scaling direction \
             it falls back below the computed one, and keeps the current parallelism when that \
             would reverse the direction.",
        ),
        Parameter::number("backlog_lag_threshold_secs")
            .default("300")
            .meaning(
                "`job.autoscaler.backlog-processing.lag-threshold`: with more lag than this many \
             seconds of input, utilisation up to 1 is allowed and no scale-down is triggered.",
            ),
        Parameter::number("observed_tpr_lag_threshold_secs")
            .default("30")
            .meaning(
                "`job.autoscaler.observed-true-processing-rate.lag-threshold`: a period with this \
             many seconds of input waiting measures the observed processing rate.",
            ),
        Parameter::number("observed_tpr_switch_threshold")
            .default("0.15")
            .meaning(
                "`job.autoscaler.observed-true-processing-rate.switch-threshold`: use the observed \
             rate when the busy-time one is this fraction above it; at least 0.",
            ),
        Parameter::integer("observed_tpr_min_observations")
            .default("2")
            .meaning(
                "`job.autoscaler.observed-true-processing-rate.min-observations`; at least 1.",
            ),
        Parameter::metric_id("records_in_metric")
            .default("\"records_in\"")
            .meaning("Metric id of `numRecordsInPerSecond` (Average)."),
        Parameter::metric_id("busy_metric")
            .default("\"busy\"")
            .meaning("Metric id of `busyTimeMsPerSecond` (Average)."),
        Parameter::metric_id("backlog_metric")
            .default("\"backlog\"")
            .meaning(
                "Metric id of the source's lag in records (`AWS/Kafka` `SumOffsetLag`, Maximum); \
             when the application does not configure it, the lag is 0.",
            ),
        Parameter::metric_id("backpressure_metric")
            .default("\"backpressure\"")
            .meaning(
                "Metric id of the source's `backPressuredTimeMsPerSecond` (Average, the mean of \
             its subtasks, as upstream reads it): an observed processing rate is the records in \
             over the fraction of the time not back-pressured. When the application does not \
             configure it, the source is taken as never back-pressured.",
            ),
    ];

    fn configure(params: Params) -> Result<Self, String> {
        let c: Config = params.parse()?;
        let mut problems = Vec::new();
        let mut check = |ok: bool, name: &str, valid: &str, found: String| {
            if !ok {
                problems.push(format!("parameter `{name}` must be {valid}, found {found}"));
            }
        };
        let finite_at_least = |v: f64, low: f64| v.is_finite() && v >= low;
        check(
            c.metrics_window_secs >= 60,
            "metrics_window_secs",
            "at least 60",
            c.metrics_window_secs.to_string(),
        );
        check(
            c.target_utilisation.is_finite()
                && c.target_utilisation > 0.0
                && c.target_utilisation <= 1.0,
            "target_utilisation",
            "in (0, 1]",
            c.target_utilisation.to_string(),
        );
        check(
            finite_at_least(c.utilisation_boundary, 0.0) && c.utilisation_boundary <= 1.0,
            "utilisation_boundary",
            "in [0, 1]",
            c.utilisation_boundary.to_string(),
        );
        for (name, value) in [
            ("catch_up_secs", c.catch_up_secs),
            ("restart_secs", c.restart_secs),
            (
                "restart_time_tracking_limit_secs",
                c.restart_time_tracking_limit_secs,
            ),
            ("scale_up_max_factor", c.scale_up_max_factor),
            ("backlog_lag_threshold_secs", c.backlog_lag_threshold_secs),
            (
                "observed_tpr_lag_threshold_secs",
                c.observed_tpr_lag_threshold_secs,
            ),
            (
                "observed_tpr_switch_threshold",
                c.observed_tpr_switch_threshold,
            ),
        ] {
            check(
                finite_at_least(value, 0.0),
                name,
                "a number of at least 0",
                value.to_string(),
            );
        }
        check(
            finite_at_least(c.scale_down_max_factor, 0.0) && c.scale_down_max_factor <= 1.0,
            "scale_down_max_factor",
            "in [0, 1]",
            c.scale_down_max_factor.to_string(),
        );
        check(
            c.vertex_min_parallelism >= 1,
            "vertex_min_parallelism",
            "at least 1",
            c.vertex_min_parallelism.to_string(),
        );
        check(
            c.vertex_max_parallelism >= c.vertex_min_parallelism,
            "vertex_max_parallelism",
            "at least `vertex_min_parallelism`",
            c.vertex_max_parallelism.to_string(),
        );
        check(
            c.max_parallelism >= 1,
            "max_parallelism",
            "at least 1",
            c.max_parallelism.to_string(),
        );
        check(
            c.observed_tpr_min_observations >= 1,
            "observed_tpr_min_observations",
            "at least 1",
            c.observed_tpr_min_observations.to_string(),
        );
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(FlinkOperatorPolicy {
            options: Options {
                target_utilisation: c.target_utilisation,
                utilisation_boundary: c.utilisation_boundary,
                catch_up_secs: c.catch_up_secs,
                backlog_lag_threshold_secs: c.backlog_lag_threshold_secs,
                observed_tpr_switch_threshold: c.observed_tpr_switch_threshold,
                scale_up_max_factor: c.scale_up_max_factor,
                scale_down_max_factor: c.scale_down_max_factor,
                vertex_min_parallelism: c.vertex_min_parallelism,
                vertex_max_parallelism: c.vertex_max_parallelism,
                max_parallelism: c.max_parallelism,
                source_partitions: c.source_partitions,
                alignment: resolve_alignment(c.alignment_mode, c.key_group_partitions_adjust_mode),
            },
            window_ms: i64::from(c.metrics_window_secs) * 1000,
            stabilization_ms: i64::from(c.stabilization_secs) * 1000,
            restart_secs: c.restart_secs,
            restart_time_tracking: c.restart_time_tracking,
            restart_time_tracking_limit_secs: c.restart_time_tracking_limit_secs,
            history_max_age_ms: i64::from(c.history_max_age_secs) * 1000,
            history_max_count: c.history_max_count as usize,
            scale_down_interval_ms: i64::from(c.scale_down_interval_secs) * 1000,
            observed_tpr_lag_threshold_secs: c.observed_tpr_lag_threshold_secs,
            observed_tpr_min_observations: c.observed_tpr_min_observations as usize,
            records_in: c.records_in_metric,
            busy: c.busy_metric,
            backlog: c.backlog_metric,
            backpressure: c.backpressure_metric,
            samples: BTreeMap::new(),
            delayed: None,
            tracking: Tracking::default(),
        })
    }

    fn decide(&mut self, evaluation: &Evaluation) -> Result<Decision, String> {
        let app = &evaluation.app;
        let now_ms = evaluation.now_ms;
        let period_ms = self.remember(evaluation)?;
        if app.status != AppStatus::Running {
            return Ok(Decision::hold(format!(
                "application is {}, not RUNNING",
                app.status
            )));
        }
        // `JobAutoScalerImpl.runScalingLogic`, which runs only while the job
        // is RUNNING: the trimmed tracking, then the restart of the latest
        // rescale once the job runs at its parallelism.
        self.tracking
            .remove_old(now_ms, self.history_max_age_ms, self.history_max_count);
        self.tracking.record_restart(
            now_ms,
            self.history_max_age_ms,
            app.last_rescale_ms,
            app.parallelism,
        );
        let stable_ms = app
            .last_rescale_ms
            .map_or(i64::MIN, |at| at.saturating_add(self.stabilization_ms));
        if now_ms < stable_ms {
            return Ok(Decision::hold(format!(
                "stabilising for {} s after the rescale",
                (stable_ms - now_ms + 999) / 1000
            )));
        }
        let Some(window) = self.window(stable_ms, period_ms) else {
            return Ok(Decision::hold(format!(
                "metric window of {} s not yet collected since the job became stable",
                self.window_ms / 1000
            )));
        };
        let restart_secs = self.tracking.max_restart_secs_or(
            self.restart_time_tracking,
            self.restart_secs,
            self.restart_time_tracking_limit_secs,
        );
        let evaluated = scale::evaluate(&window, &self.options, restart_secs);
        let current = app.parallelism.max(1);
        let wanted = scale::target_parallelism(&evaluated, &self.options, restart_secs, current);
        let mut measured = format!(
            "TPR {:.0}/s, input {:.0}/s, lag {:.0} records, thresholds {:.0}..{:.0}/s",
            evaluated.true_processing_rate,
            evaluated.target_data_rate,
            window.lag,
            evaluated.scale_up_threshold,
            evaluated.scale_down_threshold
        );
        if current > self.options.max_parallelism {
            measured.push_str(&format!(
                " (the job runs above `max_parallelism` {}, so its key groups are taken as \
                 {current}: set `max_parallelism` to the job's)",
                self.options.max_parallelism
            ));
        }
        let outside_bound = !evaluated.within_target();
        let (target, outside_bound) = if wanted == current {
            self.delayed = None;
            return Ok(Decision::hold(format!(
                "{measured}: parallelism {current} is the target"
            )));
        } else if wanted > current {
            self.delayed = None;
            (wanted, outside_bound)
        } else if self.scale_down_interval_ms <= 0 {
            (wanted, outside_bound)
        } else {
            // `JobVertexScaler.applyScaleDownInterval`: every scale-down
            // is recorded; none is made within the interval from the
            // first; then the highest recommendation of the past interval
            // is taken, with its own utilisation verdict.
            let delayed = self.delayed.get_or_insert_with(|| Delayed {
                first_trigger_ms: now_ms,
                recommendations: VecDeque::new(),
            });
            // Recommended at a larger size, before another writer set this
            // one: no longer a scale-down, and upstream, which re-applies
            // its own size at every reconcile, never keeps one.
            delayed.recommendations.retain(|r| r.parallelism < current);
            delayed.record(Recommendation {
                at_ms: now_ms,
                parallelism: wanted,
                outside_bound,
            });
            let window_start_ms = now_ms.saturating_sub(self.scale_down_interval_ms);
            if window_start_ms < delayed.first_trigger_ms {
                return Ok(Decision::hold(format!(
                    "{measured}: scale-down to {wanted} delayed {} s more (scale-down interval)",
                    (delayed.first_trigger_ms - window_start_ms + 999) / 1000
                )));
            }
            // The recommendation just recorded lies in the window, so there
            // is always one.
            delayed
                .highest_since(window_start_ms)
                .map_or((wanted, outside_bound), |highest| {
                    (highest.parallelism, highest.outside_bound)
                })
        };
        // `ScalingExecutor`: no rescale unless the parallelism is changed
        // for a rate outside the utilisation boundary.
        if !outside_bound {
            return Ok(Decision::hold(format!(
                "{measured}: within the utilisation target (parallelism {target} not needed)"
            )));
        }
        let per_kpu = app.parallelism_per_kpu.max(1);
        // The host runs KPU x ParallelismPerKPU subtasks: rounded up, that
        // may pass the key groups, which Flink refuses (the update fails
        // and is rolled back). Then the most KPU within them.
        let key_groups = scale::key_groups(&self.options, current);
        let mut kpu = target.div_ceil(per_kpu);
        let mut within = String::new();
        if kpu.saturating_mul(per_kpu) > key_groups {
            let most = key_groups / per_kpu;
            // The most KPU within the key groups, unless that is none, or
            // fewer than now for a scale-up (a parallelism set by hand
            // need not be a multiple of ParallelismPerKPU): then hold.
            if most == 0 || (target > current && most <= app.kpu) {
                return Ok(Decision::hold(format!(
                    "{measured}: parallelism {target} is {kpu} KPU x {per_kpu}, past the \
                     {key_groups} key groups (`max_parallelism`), and no more KPU stay within \
                     them: holding at {} KPU",
                    app.kpu
                )));
            }
            kpu = most;
            within = format!(
                ", {kpu} KPU x {per_kpu} to stay within the {key_groups} key groups \
                 (`max_parallelism`)"
            );
        }
        if kpu == app.kpu {
            return Ok(Decision::hold(format!(
                "{measured}: parallelism {target} is the current {} KPU{within}",
                app.kpu
            )));
        }
        self.delayed = None;
        // `ScalingExecutor.scaleResource`: the rescale is recorded, for the
        // parallelism the host sets for these KPU.
        self.tracking.add(now_ms, kpu.saturating_mul(per_kpu));
        Ok(Decision::scale_to(
            kpu,
            format!("{measured}: parallelism {current} -> {target} ({kpu} KPU{within})"),
        ))
    }
}

impl FlinkOperatorPolicy {
    /// Adds the evaluation's periods to the cache, forgets what no window
    /// needs, and returns the period length in ms.
    fn remember(&mut self, evaluation: &Evaluation) -> Result<i64, String> {
        let records_in = evaluation.metric(&self.records_in).ok_or_else(|| {
            format!(
                "no metric `{}` is configured for application `{}` (parameter \
                 `records_in_metric`)",
                self.records_in, evaluation.app.name
            )
        })?;
        let busy = evaluation.metric(&self.busy).ok_or_else(|| {
            format!(
                "no metric `{}` is configured for application `{}` (parameter `busy_metric`)",
                self.busy, evaluation.app.name
            )
        })?;
        let period_ms = i64::from(records_in.period_secs.max(1)) * 1000;
        // Each metric's datapoints into the samples of their periods: the
        // optional ones where configured, of the records' period, as
        // periods are matched by their start, one for one.
        type Set = fn(&mut Sample, f64);
        let mut columns: Vec<(&Series, Set)> = vec![
            (records_in, |s, v| s.records_in = Some(v.max(0.0))),
            (busy, |s, v| s.busy_ms = Some(v.clamp(0.0, 1000.0))),
        ];
        let optional: [(&String, &str, Set); 2] = [
            (&self.backlog, "backlog_metric", |s, v| {
                s.backlog = Some(v.max(0.0));
            }),
            (&self.backpressure, "backpressure_metric", |s, v| {
                s.backpressure_ms = Some(v.clamp(0.0, 1000.0));
            }),
        ];
        for (id, parameter, set) in optional {
            let Some(series) = evaluation.metric(id) else {
                continue;
            };
            if series.period_secs != records_in.period_secs {
                return Err(format!(
                    "metric `{id}` (parameter `{parameter}`) has a {} s period and `{}` \
                     (`records_in_metric`) {} s: give them the same `period_secs`, as the \
                     policy reads them period by period",
                    series.period_secs, self.records_in, records_in.period_secs
                ));
            }
            columns.push((series, set));
        }
        for (series, set) in columns {
            for p in &series.points {
                set(self.samples.entry(p.timestamp_ms).or_default(), p.value);
            }
        }
        self.observe(evaluation.app.last_rescale_ms);
        let keep_from = evaluation.now_ms - self.window_ms - 10 * period_ms;
        self.samples = self.samples.split_off(&keep_from);
        Ok(period_ms)
    }

    /// Derives `OBSERVED_TPR` for the periods that lack it, oldest first, as
    /// `ScalingMetrics.computeDataRateMetrics` does when the collector
    /// stores a period: infinite with no input (`getObservedTpr`); when
    /// the lag is at least `observed-true-processing-rate.lag-threshold`
    /// seconds of input, the processed rate over the fraction of the time
    /// the source was not back-pressured
    /// ([`scale::observed_tpr_with_backpressure`]); otherwise, or when it
    /// was back-pressured throughout, the average of the values already
    /// collected (`ScalingMetricCollector.observedTprAvg`, NaN with fewer
    /// than `min-observations`), so that a measured rate carries forward.
    /// The collected history starts at the job's last (re)start and, once
    /// full, spans one metric window. A period without a lag waits while
    /// that of an earlier period is the latest published; with none
    /// published at all, or a later one, its lag is 0 (upstream's missing
    /// `pendingRecords`). A catching-up period without a back-pressure
    /// waits the same way; with none published at all the source is never
    /// back-pressured, and with a later one published (a gap) it measures
    /// nothing.
    fn observe(&mut self, running_since_ms: Option<i64>) {
        let running_since_ms = running_since_ms.unwrap_or(i64::MIN);
        let latest = |has: fn(&Sample) -> bool| {
            self.samples
                .iter()
                .rev()
                .find(|(_, s)| has(s))
                .map(|(t, _)| *t)
        };
        let latest_lag = latest(|s| s.backlog.is_some());
        let latest_backpressure = latest(|s| s.backpressure_ms.is_some());
        let pending: Vec<i64> = self
            .samples
            .iter()
            .filter(|(_, s)| s.observed_tpr.is_none() && s.records_in.is_some())
            .map(|(t, _)| *t)
            .collect();
        for t in pending {
            let sample = self.samples[&t];
            if sample.backlog.is_none() && latest_lag.is_some_and(|l| l < t) {
                break;
            }
            let rate = sample.records_in.unwrap_or(0.0);
            let lag = sample.backlog.unwrap_or(0.0);
            let catching_up = rate > 0.0 && lag >= self.observed_tpr_lag_threshold_secs * rate;
            let measured = if !catching_up {
                None
            } else {
                match sample.backpressure_ms {
                    Some(ms) => scale::observed_tpr_with_backpressure(rate, ms),
                    // Not published yet: wait for it.
                    None if latest_backpressure.is_some_and(|l| l < t) => break,
                    // A gap in a series that goes on: upstream, which
                    // requires the metric of a source, measures nothing.
                    None if latest_backpressure.is_some() => None,
                    // None published: a source never back-pressured.
                    None => Some(rate),
                }
            };
            let value = if rate == 0.0 {
                f64::INFINITY
            } else if let Some(measured) = measured {
                measured
            } else {
                // A period published before the (re)start belongs to the
                // job before it: its history is empty.
                let from = running_since_ms.max(t - self.window_ms).min(t);
                let before = self
                    .samples
                    .range(from..t)
                    .filter_map(|(_, s)| s.observed_tpr);
                scale::average(before, self.observed_tpr_min_observations).unwrap_or(f64::NAN)
            };
            if let Some(s) = self.samples.get_mut(&t) {
                s.observed_tpr = Some(value);
            }
        }
    }

    /// The metrics of the window ending with the latest period that has
    /// records in and busy time, once the whole window lies after
    /// `stable_ms` and was published (`ScalingMetricCollector`'s "metric
    /// window full").
    fn window(&self, stable_ms: i64, period_ms: i64) -> Option<WindowMetrics> {
        let latest = self
            .samples
            .iter()
            .rev()
            .find(|(_, s)| s.records_in.is_some() && s.busy_ms.is_some())
            .map(|(t, _)| *t)?;
        // A window shorter than one period is the latest period.
        let start = (latest + period_ms - self.window_ms).min(latest);
        if start < stable_ms {
            return None;
        }
        let periods: Vec<(i64, Sample)> = self
            .samples
            .range(start..=latest)
            .map(|(t, s)| (*t, *s))
            .collect();
        let job: Vec<(f64, f64)> = periods
            .iter()
            .filter_map(|(_, s)| Some((s.records_in?, s.busy_ms?)))
            .collect();
        let expected = (self.window_ms / period_ms.max(1)).max(1) as f64;
        if (job.len() as f64) < WINDOW_COVERAGE * expected {
            return None;
        }
        let n = job.len() as f64;
        let input_rate_avg = job.iter().map(|(r, _)| r).sum::<f64>() / n;
        let busy_ms_avg = job.iter().map(|(_, b)| b).sum::<f64>() / n;
        let lags: Vec<(i64, f64)> = periods
            .iter()
            .filter_map(|(t, s)| Some((*t, s.backlog?)))
            .collect();
        let lag_rate = match (lags.first(), lags.last()) {
            (Some(&(t0, l0)), Some(&(t1, l1))) if t1 > t0 => {
                (l1 - l0) / ((t1 - t0) as f64 / 1000.0)
            }
            _ => 0.0,
        };
        let lag = lags.last().map_or(0.0, |(_, l)| *l);
        // `ScalingMetricEvaluator.computeTrueProcessingRate`: the window's
        // average of the periods' observed TPR.
        let observed_tpr_avg = scale::average(
            periods.iter().filter_map(|(_, s)| s.observed_tpr),
            self.observed_tpr_min_observations,
        );
        Some(WindowMetrics {
            input_rate_avg,
            busy_ms_avg,
            lag_rate,
            lag,
            observed_tpr_avg,
        })
    }
}

export_policy!(FlinkOperatorPolicy);

#[cfg(test)]
mod tests;
