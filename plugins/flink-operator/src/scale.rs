//! The autoscaler's arithmetic, free of time and state: from the metrics
//! of one full window to a recommended parallelism, line by line as the
//! upstream classes compute it (each function names the method it ports).
//!
//! The operator evaluates every vertex of the job graph; MSF has one
//! job-wide parallelism, so the job is treated as its source vertex, whose
//! input is the whole job's input and whose busy time is the job's.

/// The options the arithmetic reads, with the operator's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// `job.autoscaler.utilization.target` (formerly `target.utilization`).
    pub target_utilisation: f64,
    /// `job.autoscaler.target.utilization.boundary`.
    pub utilisation_boundary: f64,
    /// `job.autoscaler.catch-up.duration`, seconds.
    pub catch_up_secs: f64,
    /// `job.autoscaler.backlog-processing.lag-threshold`, seconds.
    pub backlog_lag_threshold_secs: f64,
    /// `job.autoscaler.observed-true-processing-rate.switch-threshold`.
    pub observed_tpr_switch_threshold: f64,
    /// `job.autoscaler.scale-up.max-factor`.
    pub scale_up_max_factor: f64,
    /// `job.autoscaler.scale-down.max-factor`.
    pub scale_down_max_factor: f64,
    /// `job.autoscaler.vertex.min-parallelism`.
    pub vertex_min_parallelism: u32,
    /// `job.autoscaler.vertex.max-parallelism`.
    pub vertex_max_parallelism: u32,
    /// The job's key groups (`pipeline.max-parallelism`), which the new
    /// parallelism is aligned to.
    pub max_parallelism: u32,
    /// The source's partitions (`NUM_SOURCE_PARTITIONS`), aligned to
    /// instead of the key groups when known; 0: not known.
    pub source_partitions: u32,
    /// How the new parallelism is aligned to the key groups (or to
    /// `source_partitions`).
    pub alignment: Alignment,
}

/// How a computed parallelism is aligned to the key groups, or to the
/// source's partitions when known (`alignment/ParallelismAligner.java`):
/// the mode
/// `job.autoscaler.scaling.parallelism-alignment.mode` selects
/// (`alignment/BuiltInAlignmentMode.java`), or the one the deprecated
/// `job.autoscaler.scaling.key-group.partitions.adjust.mode` selects when
/// only that key is set (`alignment/KeyGroupOrPartitionsAdjustMode.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// `BALANCED`, the default since operator 1.16.0: the first
    /// parallelism of the direction's region that divides the key groups
    /// or lowers the key groups per subtask (12 for 11 of 128 key groups,
    /// where `EVENLY_SPREAD` takes 16); none found, the computed target.
    Balanced,
    /// `EVENLY_SPREAD`: the first divisor of the key groups in the
    /// direction's region; none found, the computed target.
    EvenlySpread,
    /// `OFF`: the computed target as it is.
    Off,
    /// The deprecated key's `EVENLY_SPREAD`, the default up to operator
    /// 1.15: as [`Alignment::EvenlySpread`], but with no divisor in the
    /// region it falls back below the target, and a result that would
    /// reverse the direction keeps the current parallelism (the scale is
    /// blocked).
    LegacyEvenlySpread,
    /// The deprecated key's `MAXIMIZE_UTILISATION`: as
    /// [`Alignment::Balanced`] in the region, with the legacy fallback.
    LegacyMaximizeUtilisation,
}

/// What one full metric window measured (`ScalingMetricEvaluator`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMetrics {
    /// Average of `numRecordsInPerSecond` over the window.
    pub input_rate_avg: f64,
    /// Average of `busyTimeMsPerSecond` over the window.
    pub busy_ms_avg: f64,
    /// Growth of the source's backlog over the window, records/s (the
    /// operator's `getRate(LAG)`).
    pub lag_rate: f64,
    /// The latest backlog, records (`LAG`).
    pub lag: f64,
    /// Average of the observed true processing rate of the periods the job
    /// was catching up in, when there were enough of them
    /// (`OBSERVED_TPR`, `observed-true-processing-rate.min-observations`).
    pub observed_tpr_avg: Option<f64>,
}

/// The evaluated metrics of the window, as `ScalingMetricEvaluator`
/// leaves them for `JobVertexScaler`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluated {
    /// `TRUE_PROCESSING_RATE`: the rate the job could process at its
    /// current parallelism, records/s.
    pub true_processing_rate: f64,
    /// `TARGET_DATA_RATE`: the input rate, processed plus backlog growth.
    pub target_data_rate: f64,
    /// `CATCH_UP_DATA_RATE`: the backlog drained within the catch-up
    /// duration, records/s.
    pub catch_up_data_rate: f64,
    /// Whether the source is processing a backlog (`isProcessingBacklog`).
    pub processing_backlog: bool,
    /// `SCALE_UP_RATE_THRESHOLD`: below this TPR the job scales up.
    pub scale_up_threshold: f64,
    /// `SCALE_DOWN_RATE_THRESHOLD`: above this TPR the job scales down.
    pub scale_down_threshold: f64,
}

impl Evaluated {
    /// Whether the true processing rate lies inside the utilisation
    /// boundary (`ScalingExecutor.allChangedVerticesWithinUtilizationTarget`),
    /// where no rescale is made.
    pub fn within_target(&self) -> bool {
        !(self.true_processing_rate < self.scale_up_threshold
            || self.true_processing_rate > self.scale_down_threshold)
    }
}

/// `ScalingMetricEvaluator.getAverage` with `minElements`: the mean of
/// the finite values, NaN ones skipped; infinite when there are only
/// infinite ones; none with fewer than `min_observations` finite ones.
pub fn average(values: impl IntoIterator<Item = f64>, min_observations: usize) -> Option<f64> {
    let (mut sum, mut n, mut any_infinite) = (0.0, 0usize, false);
    for v in values {
        if v.is_nan() {
            continue;
        }
        if v.is_infinite() {
            any_infinite = true;
            continue;
        }
        sum += v;
        n += 1;
    }
    if n == 0 {
        return any_infinite.then_some(f64::INFINITY);
    }
    (n >= min_observations).then(|| sum / n as f64)
}

/// `ScalingMetricEvaluator.computeTprFromBusyTime`: records in / busy
/// fraction; infinite when nothing comes in.
pub fn tpr_from_busy_time(busy_ms_per_sec: f64, rate: f64) -> f64 {
    if rate == 0.0 {
        return f64::INFINITY;
    }
    rate / (busy_ms_per_sec / 1000.0)
}

/// `ScalingMetrics.computeObservedTprWithBackpressure`: the records in
/// per second over the fraction of each second the source was not
/// back-pressured (`backPressuredTimeMsPerSecond`, the mean of its
/// subtasks); none when it was back-pressured the whole second, as
/// upstream's NaN, which `getObservedTpr` turns into no measurement.
pub fn observed_tpr_with_backpressure(rate: f64, backpressure_ms_per_sec: f64) -> Option<f64> {
    if backpressure_ms_per_sec >= 1000.0 {
        return None;
    }
    Some(rate / (1.0 - backpressure_ms_per_sec / 1000.0))
}

/// `ScalingMetricEvaluator.computeTrueProcessingRate` and
/// `selectTprMetric`: the busy-time TPR, unless an observed TPR exists and
/// the busy-time one is more than `switch_threshold` above it (or not a
/// number).
pub fn true_processing_rate(busy_tpr: f64, observed: Option<f64>, switch_threshold: f64) -> f64 {
    let Some(observed) = observed.filter(|o| !o.is_nan()) else {
        return busy_tpr;
    };
    if busy_tpr.is_infinite() || busy_tpr.is_nan() || busy_tpr > observed * (1.0 + switch_threshold)
    {
        observed
    } else {
        busy_tpr
    }
}

/// `AutoScalerUtils.getTargetProcessingCapacity`: LAG / CATCH_UP +
/// INPUT_RATE x RESTART / CATCH_UP (when `with_restart`) + INPUT_RATE /
/// utilisation, rounded to the record.
pub fn target_capacity(
    evaluated: &Evaluated,
    catch_up_secs: f64,
    utilisation: f64,
    with_restart: bool,
    restart_secs: f64,
) -> f64 {
    let utilisation = utilisation.clamp(0.0, 1.0);
    if utilisation == 0.0 {
        return f64::INFINITY;
    }
    let input = evaluated.target_data_rate;
    let restart_catch_up = if !with_restart || catch_up_secs == 0.0 {
        0.0
    } else {
        input * restart_secs / catch_up_secs
    };
    (evaluated.catch_up_data_rate + restart_catch_up + input / utilisation).round()
}

/// `ScalingMetricEvaluator.evaluateMetrics` for a source vertex:
/// `computeTargetDataRate`, the true processing rate, `isProcessingBacklog`
/// and `computeProcessingRateThresholds`.
pub fn evaluate(window: &WindowMetrics, options: &Options, restart_secs: f64) -> Evaluated {
    let target_data_rate = (window.input_rate_avg + window.lag_rate).max(0.0);
    let catch_up_data_rate = if options.catch_up_secs == 0.0 {
        0.0
    } else {
        window.lag / options.catch_up_secs
    };
    let busy_tpr = tpr_from_busy_time(window.busy_ms_avg, window.input_rate_avg);
    let true_processing_rate = true_processing_rate(
        busy_tpr,
        window.observed_tpr_avg,
        options.observed_tpr_switch_threshold,
    );
    // lag / rate: a lag with nothing processed is an infinite backlog.
    let processing_backlog =
        window.lag / window.input_rate_avg > options.backlog_lag_threshold_secs;
    let (upper, lower) = if processing_backlog {
        // While a backlog drains, full utilisation is allowed and no
        // scale-down is triggered (it would only make more lag).
        (1.0, 0.0)
    } else {
        (
            options.target_utilisation + options.utilisation_boundary,
            options.target_utilisation - options.utilisation_boundary,
        )
    };
    let mut evaluated = Evaluated {
        true_processing_rate,
        target_data_rate,
        catch_up_data_rate,
        processing_backlog,
        scale_up_threshold: 0.0,
        scale_down_threshold: 0.0,
    };
    evaluated.scale_up_threshold = target_capacity(
        &evaluated,
        options.catch_up_secs,
        upper,
        false,
        restart_secs,
    );
    evaluated.scale_down_threshold =
        target_capacity(&evaluated, options.catch_up_secs, lower, true, restart_secs);
    evaluated
}

/// The job's key groups: `max_parallelism`, or the running parallelism
/// when that is higher. Flink never runs a job above its max parallelism,
/// so a higher one means the job's own is higher than the parameter says
/// (left at its default, say); taking the parameter would cap every
/// scale-up below the running size and turn it into a scale-down, which
/// upstream, reading the real value from the job, never does.
pub fn key_groups(options: &Options, current: u32) -> u32 {
    options.max_parallelism.max(current)
}

/// `JobVertexScaler.computeScaleTargetParallelism` up to the delayed
/// scale-down: the parallelism the window asks for, with the scale factor
/// capped by the max factors.
pub fn target_parallelism(
    evaluated: &Evaluated,
    options: &Options,
    restart_secs: f64,
    current: u32,
) -> u32 {
    let target = target_capacity(
        evaluated,
        options.catch_up_secs,
        options.target_utilisation,
        true,
        restart_secs,
    );
    let min_factor = 1.0 - options.scale_down_max_factor;
    let max_factor = 1.0 + options.scale_up_max_factor;
    let factor = (target / evaluated.true_processing_rate)
        .max(min_factor)
        .min(max_factor);
    scale(
        current,
        key_groups(options, current),
        options.source_partitions,
        factor,
        current.min(options.vertex_min_parallelism),
        current.max(options.vertex_max_parallelism),
        options.alignment,
    )
}

/// `JobVertexScaler.scale` for the job's vertex: ceil(factor x current)
/// within the limits and the key groups (the job's max parallelism);
/// unchanged, that is the answer, otherwise it is aligned by `alignment`
/// (`ParallelismAligner.align`) to the source's `partitions` when known
/// (more than 0), as upstream aligns a source vertex, else to the key
/// groups, as it aligns a keyed one (`numKeyGroupsOrPartitions`). A target
/// above the partitions is not aligned but kept (by `BALANCED` and
/// `EVENLY_SPREAD`; the legacy modes fall back to the partitions).
pub fn scale(
    current: u32,
    key_groups: u32,
    partitions: u32,
    factor: f64,
    lower: u32,
    upper: u32,
    alignment: Alignment,
) -> u32 {
    let wanted = (factor * f64::from(current))
        .ceil()
        .min(f64::from(u32::MAX));
    // A NaN factor (nothing measured) keeps the current parallelism.
    let wanted = if wanted.is_nan() {
        current
    } else {
        wanted as u32
    };
    let upper_bound = key_groups.min(upper);
    let target = wanted.max(lower).min(upper_bound).max(1);
    if target == current {
        return target;
    }
    let n = if partitions > 0 {
        partitions
    } else {
        key_groups
    };
    let region = Region {
        current,
        target,
        n,
        upper_bound: n.min(upper_bound),
    };
    match alignment {
        Alignment::Off => target,
        Alignment::Balanced => region.first_aligned(true).unwrap_or(target),
        Alignment::EvenlySpread => region.first_aligned(false).unwrap_or(target),
        Alignment::LegacyEvenlySpread => region.legacy(false, lower),
        Alignment::LegacyMaximizeUtilisation => region.legacy(true, lower),
    }
}

/// What `ParallelismAligner`'s static helpers read of a vertex.
struct Region {
    current: u32,
    /// The computed target, within the limits.
    target: u32,
    /// `numKeyGroupsOrPartitions`: what the parallelism is aligned to.
    n: u32,
    /// `upperBoundForAlignment`: `n` capped by the key groups and the
    /// upper limit.
    upper_bound: u32,
}

impl Region {
    /// `firstAlignedInRegion`: scanning up from the target, to the upper
    /// bound for a scale-up and to the current parallelism for a
    /// scale-down, the first divisor of the key groups, or (with
    /// `accept_load_reducing`) the first parallelism with fewer key groups
    /// per subtask than the target has.
    fn first_aligned(&self, accept_load_reducing: bool) -> Option<u32> {
        let n = self.n;
        let end = if self.target > self.current {
            self.upper_bound
        } else {
            self.current.min(self.upper_bound)
        };
        (self.target..=end)
            .find(|&p| n.is_multiple_of(p) || (accept_load_reducing && n / p < n / self.target))
    }

    /// `KeyGroupOrPartitionsAdjustMode.alignParallelism`: the region's
    /// first aligned parallelism, else `relaxedDownwardFallback` through
    /// `applyBlockingFallback`.
    fn legacy(&self, accept_load_reducing: bool, lower: u32) -> u32 {
        if let Some(p) = self.first_aligned(accept_load_reducing) {
            return p;
        }
        let candidate = self.relaxed_downward().max(lower);
        let scale_up = self.target > self.current;
        if (scale_up && candidate <= self.current) || (!scale_up && candidate >= self.current) {
            self.current
        } else {
            candidate
        }
    }

    /// `relaxedDownwardFallback` before its clamp to the lower limit: down
    /// from the target to the least parallelism that keeps its key groups
    /// per subtask, snapped up to a divisor.
    fn relaxed_downward(&self) -> u32 {
        let n = self.n;
        let mut p = self.target;
        while p > 0 {
            if n / p > n / self.target {
                if !n.is_multiple_of(p) {
                    p += 1;
                }
                break;
            }
            p -= 1;
        }
        p
    }
}
