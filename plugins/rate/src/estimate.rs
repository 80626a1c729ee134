//! Estimates from the observed periods: the true input rate, the capacity
//! at the current parallelism, the backlog now, and the rate's trend.
//!
//! The processed rate alone under-reads the load whenever the job is
//! saturated (it processes its capacity, not its input). What it does not
//! process piles up in the source, so the input rate of a period is its
//! processed rate plus the growth of the backlog over it (DS2's "true
//! rate"). The capacity comes from the job's own busy time: a job busy a
//! fraction `u` of the time while processing `r` records/s could process
//! `r / u`.

use crate::observe::Observed;

/// Below this utilisation the ratio processed / utilisation is dominated by
/// rounding and idle overhead, so it is not used to measure capacity.
pub const MIN_UTILISATION: f64 = 0.05;

/// The input rate of each fresh period whose rate can be told, as (period
/// start, records/s), oldest first.
///
/// With a backlog series, the rate of period k is its processed rate plus
/// (B(k) - B(j)) / (t(k) - t(j)), j the latest earlier period with a
/// backlog value, and both periods must be fresh: the backlog is a
/// per-period Maximum, which on a falling backlog is the value at the
/// period's start, so the difference spans the periods between, which
/// must have run at the same capacity. j is the previous period, or, for
/// a metric of a period under a minute whose datapoints come a minute
/// apart (most AWS metrics are published once a minute, and history is
/// read at 60 s), the one a minute before: no further back than
/// [`MAX_BACKLOG_GAP_MS`] or one period. Without a backlog series the
/// processed rate is all there is.
pub fn input_rates(observed: &Observed, fresh_from_ms: i64) -> Vec<(i64, f64)> {
    let longest_gap = observed.period_ms.max(MAX_BACKLOG_GAP_MS);
    let mut rates = Vec::new();
    // The latest period so far with a backlog value: (start, backlog).
    let mut before: Option<(i64, f64)> = None;
    for period in &observed.periods {
        let previous = before;
        if let Some(backlog) = period.backlog {
            before = Some((period.start_ms, backlog));
        }
        if period.start_ms < fresh_from_ms {
            continue;
        }
        let Some(processed) = period.records_in else {
            continue;
        };
        if !observed.has_backlog {
            rates.push((period.start_ms, processed));
            continue;
        }
        let (Some(now), Some((previous_ms, backlog_before))) = (period.backlog, previous) else {
            continue;
        };
        let gap_ms = period.start_ms - previous_ms;
        if previous_ms < fresh_from_ms || gap_ms <= 0 || gap_ms > longest_gap {
            continue;
        }
        rates.push((
            period.start_ms,
            (processed + (now - backlog_before) / (gap_ms as f64 / 1000.0)).max(0.0),
        ));
    }
    rates
}

/// How far back (ms) the backlog a period's input rate is measured against
/// may be, at most, beyond one period: a minute (see [`input_rates`]).
pub const MAX_BACKLOG_GAP_MS: i64 = 60_000;

/// The capacity at the current parallelism, in records/s: processed /
/// utilisation over the fresh periods busy enough to tell.
pub fn capacity(observed: &Observed, fresh_from_ms: i64) -> Option<f64> {
    capacity_busy_from(observed, fresh_from_ms, MIN_UTILISATION)
}

/// [`capacity`] over the periods at least `min_utilisation` busy.
pub fn capacity_busy_from(
    observed: &Observed,
    fresh_from_ms: i64,
    min_utilisation: f64,
) -> Option<f64> {
    let (mut processed, mut busy) = (0.0, 0.0);
    for period in &observed.periods {
        if period.start_ms < fresh_from_ms {
            continue;
        }
        if let (Some(r), Some(u)) = (period.records_in, period.utilisation)
            && u >= min_utilisation
        {
            processed += r;
            busy += u;
        }
    }
    (busy > 0.0).then(|| processed / busy)
}

/// A lower bound of the capacity at the current parallelism when no fresh
/// period is busy enough to measure it ([`capacity`] is `None`): a job
/// busy less than [`MIN_UTILISATION`] while processing `r` records/s
/// could process more than `r / MIN_UTILISATION`. `None` without a fresh
/// period that processed records and reported its busy time.
///
/// Without it a job that idles (overnight, or sized far above its load)
/// is never scaled in: its capacity is never measured. Sized on the bound,
/// a scale-in is smaller than the true capacity allows, and the next size,
/// busier, measures it.
pub fn capacity_at_least(observed: &Observed, fresh_from_ms: i64) -> Option<f64> {
    let (mut processed, mut n) = (0.0, 0.0);
    for period in &observed.periods {
        if period.start_ms < fresh_from_ms {
            continue;
        }
        if let (Some(r), Some(_)) = (period.records_in, period.utilisation) {
            processed += r;
            n += 1.0;
        }
    }
    (processed > 0.0).then(|| processed / n / MIN_UTILISATION)
}

/// Whether the fresh periods (from `fresh_from_ms`) report their records
/// and busy time, at least one does, and none processed a record: a job
/// with no input at all, whose capacity nothing can measure or bound.
pub fn processed_nothing(observed: &Observed, fresh_from_ms: i64) -> bool {
    let mut reported = observed
        .periods
        .iter()
        .filter(|p| p.start_ms >= fresh_from_ms)
        .filter_map(|p| p.records_in.zip(p.utilisation))
        .peekable();
    reported.peek().is_some() && reported.all(|(records, _)| records == 0.0)
}

/// The backlog now, extrapolated from the latest datapoint `(start_ms,
/// records)`: it grows by the input rate and shrinks by the capacity for
/// the time since that period ended, and never goes below zero.
pub fn backlog_now(
    latest: Option<(i64, f64)>,
    period_ms: i64,
    now_ms: i64,
    input_rate: f64,
    capacity: f64,
) -> f64 {
    let Some((start_ms, records)) = latest else {
        return 0.0;
    };
    let elapsed_secs = (now_ms - start_ms - period_ms).max(0) as f64 / 1000.0;
    (records + (input_rate - capacity) * elapsed_secs).max(0.0)
}

/// The least-squares slope of the rates, in records/s per second; `None`
/// with fewer than three points.
pub fn trend(rates: &[(i64, f64)]) -> Option<f64> {
    if rates.len() < 3 {
        return None;
    }
    let n = rates.len() as f64;
    let t0 = rates[0].0;
    let xs = rates.iter().map(|(t, _)| (t - t0) as f64 / 1000.0);
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = rates.iter().map(|(_, y)| y).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, (_, y)) in xs.zip(rates) {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Where a falling input will be `ahead_secs` after the latest of `rates`,
/// or `None` unless both halves of them fall (by time; at least three
/// rates in each).
///
/// The fall is taken as an approach to a floor, `floor + a exp(-t / tau)`,
/// of which a steady fall is the limit: the two halves' slopes give its
/// decay (a slope that shrinks from the older half to the latest one is
/// a fall slowing down, as a crowd dispersing towards its base load), and
/// the latest half's slope, carried to the latest rate along that decay,
/// gives its speed. A fall that does not slow is projected as steady. A
/// straight line through a decaying fall would carry it below its floor.
pub fn fall_ahead(rates: &[(i64, f64)], ahead_secs: f64) -> Option<f64> {
    let (&(first_ms, _), &(latest_ms, latest)) = (rates.first()?, rates.last()?);
    let middle_ms = first_ms + (latest_ms - first_ms) / 2;
    let split = rates.partition_point(|(t, _)| *t < middle_ms);
    let (older, newer) = rates.split_at(split);
    let (old_slope, new_slope) = (trend(older)?, trend(newer)?);
    if old_slope >= 0.0 || new_slope >= 0.0 {
        return None;
    }
    let centre = |half: &[(i64, f64)]| {
        half.iter().map(|(t, _)| *t as f64 / 1000.0).sum::<f64>() / half.len() as f64
    };
    let gap_secs = centre(newer) - centre(older);
    let ratio = new_slope / old_slope;
    if ratio >= 1.0 || gap_secs <= 0.0 {
        return Some(latest + new_slope * ahead_secs);
    }
    let tau = gap_secs / (1.0 / ratio).ln();
    let since_secs = latest_ms as f64 / 1000.0 - centre(newer);
    let slope_now = new_slope * (-since_secs / tau).exp();
    Some(latest + slope_now * tau * (1.0 - (-ahead_secs / tau).exp()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Period;

    const P: i64 = 60_000;

    fn period(i: i64, records_in: Option<f64>, busy: Option<f64>, backlog: f64) -> Period {
        Period {
            start_ms: i * P,
            records_in,
            utilisation: busy,
            backlog: Some(backlog),
        }
    }

    fn observed(periods: Vec<Period>) -> Observed {
        Observed {
            period_ms: P,
            periods,
            has_backlog: true,
            backlog_silent: false,
        }
    }

    #[test]
    fn saturated_job_reads_processed_plus_backlog_growth() {
        // Capacity 1960, input 4000: the backlog grows by 2040 x 60 a period.
        let o = observed(vec![
            period(0, Some(1960.0), Some(1.0), 0.0),
            period(1, Some(1960.0), Some(1.0), 122_400.0),
        ]);
        assert_eq!(input_rates(&o, 0), vec![(P, 4000.0)]);
    }

    /// A 10 s metric whose datapoints come a minute apart (published once
    /// a minute, or history read at 60 s) is measured against the backlog
    /// a minute before; two minutes apart is a gap, as one missing 60 s
    /// period is. It gave no rate at all (the period exactly 10 s before
    /// was never there): `rate` never decided, and `predictive` learned
    /// none of its history.
    #[test]
    fn a_sub_minute_metric_a_minute_apart_is_measured_over_the_minute() {
        let at = |minute: i64, backlog: f64| Period {
            start_ms: minute * P,
            records_in: Some(1960.0),
            utilisation: Some(1.0),
            backlog: Some(backlog),
        };
        let o = Observed {
            period_ms: 10_000,
            periods: vec![at(0, 0.0), at(1, 122_400.0), at(3, 367_200.0)],
            has_backlog: true,
            backlog_silent: false,
        };
        assert_eq!(input_rates(&o, 0), vec![(P, 4000.0)]);
    }

    #[test]
    fn draining_backlog_lowers_the_rate_below_processed() {
        let o = observed(vec![
            period(0, Some(9000.0), Some(1.0), 600_000.0),
            period(1, Some(9000.0), Some(1.0), 300_000.0),
        ]);
        assert_eq!(input_rates(&o, 0), vec![(P, 4000.0)]);
    }

    #[test]
    fn periods_before_the_rescale_are_not_used() {
        // Period 1 was UPDATING (no records in; the backlog grew by 4000/s
        // to 340000). Period 2 is the first after the restart, draining at
        // 9000 - 4000 = 5000/s: its Maximum is its first second, so its
        // difference to period 1 spans the downtime.
        let o = observed(vec![
            period(0, Some(2000.0), Some(1.0), 100_000.0),
            period(1, None, None, 340_000.0),
            period(2, Some(9000.0), Some(1.0), 340_000.0),
            period(3, Some(9000.0), Some(1.0), 40_000.0),
        ]);
        let fresh_from = 2 * P - 5_000;
        assert_eq!(input_rates(&o, fresh_from), vec![(3 * P, 4000.0)]);
        assert_eq!(capacity(&o, fresh_from), Some(9000.0));
        // Without the freshness rule the restart would read as 9000/s.
        assert_eq!(input_rates(&o, 0)[0], (2 * P, 9000.0));
    }

    #[test]
    fn without_a_backlog_series_the_processed_rate_is_the_input() {
        let mut o = observed(vec![period(0, Some(1500.0), Some(0.5), 0.0)]);
        o.has_backlog = false;
        assert_eq!(input_rates(&o, 0), vec![(0, 1500.0)]);
    }

    #[test]
    fn capacity_is_processed_over_utilisation() {
        let o = observed(vec![
            period(0, Some(1000.0), Some(0.5), 0.0),
            period(1, Some(1500.0), Some(0.75), 0.0),
            // Idle periods say nothing about capacity.
            period(2, Some(10.0), Some(0.01), 0.0),
        ]);
        assert_eq!(capacity(&o, 0), Some(2000.0));
        assert_eq!(capacity(&o, 3 * P), None);
    }

    #[test]
    fn backlog_is_extrapolated_to_now() {
        // Latest period [0, 60 s): 60 s later a 2000/s shortfall added 120000.
        assert_eq!(
            backlog_now(Some((0, 100_000.0)), P, 2 * P, 4000.0, 2000.0),
            220_000.0
        );
        // A spare capacity empties it, but not below zero.
        assert_eq!(
            backlog_now(Some((0, 10_000.0)), P, 2 * P, 1000.0, 2000.0),
            0.0
        );
        assert_eq!(backlog_now(None, P, 2 * P, 4000.0, 2000.0), 0.0);
    }

    #[test]
    fn trend_is_the_least_squares_slope() {
        let rising: Vec<(i64, f64)> = (0..5).map(|i| (i * P, 1000.0 + 60.0 * i as f64)).collect();
        let slope = trend(&rising).expect("five points");
        assert!((slope - 1.0).abs() < 1e-9, "{slope}");
        assert_eq!(trend(&rising[..2]), None);
    }

    #[test]
    fn a_steady_fall_is_projected_along_its_line() {
        // 2500/s falling by 0.5/s per s over 30 minutes: at the latest
        // period (1630/s), 1800 s ahead is 730/s.
        let falling: Vec<(i64, f64)> = (0..30).map(|i| (i * P, 2500.0 - 30.0 * i as f64)).collect();
        let ahead = fall_ahead(&falling, 1800.0).expect("a fall");
        assert!((ahead - 730.0).abs() < 1e-6, "{ahead}");
    }

    #[test]
    fn a_fall_that_slows_is_projected_to_its_floor_not_past_it() {
        // A crowd dispersing: 1000 + 11000 exp(-t / 1200 s), seen from 40
        // to 69 minutes. 1800 s after the latest period it is 1000 + 11000
        // exp(-5940 / 1200) = 1078/s; the latest half's line would say
        // 595/s, and the true slope at the latest period, carried
        // straight, 825/s: both below the floor of 1000/s.
        let rate = |secs: f64| 1000.0 + 11_000.0 * (-secs / 1200.0).exp();
        let crowd: Vec<(i64, f64)> = (40..70).map(|i| (i * P, rate(i as f64 * 60.0))).collect();
        let ahead = fall_ahead(&crowd, 1800.0).expect("a fall");
        let truth = rate(69.0 * 60.0 + 1800.0);
        assert!((ahead - truth).abs() < 0.03 * truth, "{ahead} vs {truth}");
        // Flat, rising, or falling in one half only: no fall to project.
        let flat: Vec<(i64, f64)> = (0..30).map(|i| (i * P, 1000.0)).collect();
        assert_eq!(fall_ahead(&flat, 1800.0), None);
        let turned: Vec<(i64, f64)> = (0..30)
            .map(|i| (i * P, 1000.0 + 10.0 * (i - 15_i64).abs() as f64))
            .collect();
        assert_eq!(fall_ahead(&turned, 1800.0), None);
        assert_eq!(fall_ahead(&crowd[..4], 1800.0), None);
    }
}
