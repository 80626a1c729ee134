//! The learned profile of the input rate, and forecasts from it.
//!
//! Cycles of load repeat by the day and by the week. The profile keeps the
//! input rate of every period seen (up to `history_days`) and forecasts a
//! time by the mean rate of the same `bucket` one season earlier (a
//! seasonal-naive forecast: the simplest that follows a cycle of any
//! shape, a weekend or a lunch dip included, with nothing to fit). Which
//! season, a day or a week, is chosen by how well each has forecast the
//! recent past, and the forecast is scaled by the ratio of the recent past
//! to its forecast, so a day busier or quieter than the one before keeps
//! its shape; a ratio within its own standard error of 1 is the recent
//! past's noise, and leaves the forecast as it is. The same recent error says when the load has left the
//! forecast (a burst, a crowd, a holiday's first hours).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

/// A bucket's only rate above this many times the bucket's median is an
/// outlier, left out of its level (see [`Profile::level`]).
pub const OUTLIER_FACTOR: f64 = 4.0;

/// One day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// One week, in milliseconds.
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// A forecast is fitted on a recent span only when at least this share of
/// its periods have both a rate and a forecast.
const COVERAGE: f64 = 0.8;

/// The scale of a forecast to the recent past is kept within this factor
/// either way: beyond it the load is not the cycle any more.
const MAX_SCALE: f64 = 2.0;

/// Input rates by period start, forgotten after the history span.
#[derive(Debug, Clone)]
pub struct Profile {
    bucket_ms: i64,
    keep_ms: i64,
    rates: BTreeMap<i64, f64>,
    /// [`Profile::level`] by bucket, as computed from `rates`; a bucket's
    /// entry goes when one of its rates changes or is forgotten. Every
    /// evaluation asks for hundreds of levels (the lookahead and the dip in
    /// buckets, the fit span point by point), of buckets that mostly have
    /// not changed since the last one.
    levels: RefCell<Levels>,
    /// The latest answers of [`Profile::fit`] and [`Profile::peak`], each
    /// kept until a rate it reads changes. An evaluation comes more often
    /// than a period is published, and the periods it learns are ones no
    /// forecast of it reads.
    answers: RefCell<Answers>,
}

/// Answers kept by [`Profile`], with what each was asked.
#[derive(Debug, Clone, Default)]
struct Answers {
    /// The last fit: `(from_ms, latest_ms, latest_periods)` and its answer.
    fit: Option<((i64, i64, usize), Option<Fit>)>,
    /// Unscaled peaks: the season, the first and the last bucket, and the
    /// highest level of those buckets.
    peaks: Vec<(i64, i64, i64, Option<f64>)>,
}

/// At most this many peaks are kept (an evaluation asks for three).
const KEPT_PEAKS: usize = 8;

impl Answers {
    /// Forgets the answers that read a bucket in `changed` (the first and
    /// last bucket of the rates learned anew) or at or before `cut` (the
    /// bucket of the history's new start, when rates were forgotten);
    /// `len` is how many rates the profile keeps now.
    fn forget(
        &mut self,
        changed: Option<(i64, i64)>,
        cut: Option<i64>,
        len: usize,
        bucket_ms: i64,
    ) {
        let reads = |first: i64, last: i64| {
            changed.is_some_and(|(lo, hi)| lo <= last && first <= hi)
                || cut.is_some_and(|cut| first <= cut)
        };
        self.peaks
            .retain(|&(_, first, last, _)| !reads(first, last));
        if let Some(((from_ms, _, _), _)) = self.fit {
            // A fit reads the rates of its span, the levels a day and a week
            // before it, and the newest sixteen rates (for the period): a
            // rate learned anew may be any of those; forgotten ones are none
            // of them when all lie before the week-old levels and sixteen
            // rates are left.
            let kept = changed.is_none()
                && cut
                    .is_none_or(|cut| cut < (from_ms - WEEK_MS).div_euclid(bucket_ms) && len >= 16);
            if !kept {
                self.fit = None;
            }
        }
    }
}

/// Bucket levels by bucket number, kept in one run from the first bucket
/// of the profile: the buckets asked for are consecutive integers near the
/// history, so an index replaces the hash table their lookups (hundreds
/// an evaluation) went through.
#[derive(Debug, Clone, Default)]
struct Levels {
    /// The bucket of `slots[0]`.
    base: i64,
    /// A level computed (`Some`, itself `None` for a bucket without a
    /// rate), or `None` when not computed since the bucket last changed.
    slots: VecDeque<Option<Option<f64>>>,
    /// At most this many slots; a bucket past them is computed each time.
    limit: usize,
}

impl Levels {
    /// The slot of `bucket`, if the run holds it or can grow to it.
    fn slot(&mut self, bucket: i64) -> Option<&mut Option<Option<f64>>> {
        let index = self.index(bucket)?;
        if index >= self.limit {
            return None;
        }
        if index >= self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        self.slots.get_mut(index)
    }

    /// Forgets the level of `bucket`.
    fn invalidate(&mut self, bucket: i64) {
        if let Some(index) = self.index(bucket)
            && let Some(slot) = self.slots.get_mut(index)
        {
            *slot = None;
        }
    }

    /// Where `bucket` is, or would be, in the run; `None` before it.
    fn index(&self, bucket: i64) -> Option<usize> {
        usize::try_from(bucket.checked_sub(self.base)?).ok()
    }

    /// Starts the run at `bucket`, dropping the slots before it (a run
    /// that has not started yet starts there).
    fn start_at(&mut self, bucket: i64) {
        if self.slots.is_empty() {
            self.base = bucket;
            return;
        }
        while self.base < bucket && self.slots.pop_front().is_some() {
            self.base += 1;
        }
        if self.slots.is_empty() {
            self.base = bucket;
        }
    }
}

impl Profile {
    /// The same profile with nothing kept but its rates: every answer of
    /// it is computed afresh.
    #[cfg(test)]
    pub fn afresh(&self) -> Profile {
        Profile {
            levels: RefCell::new(Levels {
                limit: self.levels.borrow().limit,
                ..Levels::default()
            }),
            answers: RefCell::new(Answers::default()),
            ..self.clone()
        }
    }
}

impl PartialEq for Profile {
    /// The cache of levels is not part of what a profile is.
    fn eq(&self, other: &Self) -> bool {
        (self.bucket_ms, self.keep_ms, &self.rates)
            == (other.bucket_ms, other.keep_ms, &other.rates)
    }
}

/// A forecast fitted to the recent past.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// The season, in milliseconds: [`DAY_MS`] or [`WEEK_MS`].
    pub season_ms: i64,
    /// Recent rates over their seasonal forecast; 1 when that ratio is
    /// within its standard error of 1 (the span's noise, not a busier or
    /// quieter day).
    pub scale: f64,
    /// Mean relative error of the scaled forecast over the recent span.
    pub error: f64,
    /// The largest relative error over the latest periods.
    pub latest_error: f64,
}

impl Profile {
    /// An empty profile averaging over `bucket_secs` and keeping
    /// `history_days` of rates.
    pub fn new(bucket_secs: u32, history_days: u32) -> Self {
        let bucket_ms = i64::from(bucket_secs.max(1)) * 1000;
        let keep_ms = i64::from(history_days) * DAY_MS;
        // The history and the farthest look past it (a lead and a
        // lookahead of a day each, a dip of a week), with room to spare.
        let limit = usize::try_from((keep_ms + 16 * DAY_MS) / bucket_ms + 2).unwrap_or(0);
        Profile {
            bucket_ms,
            keep_ms,
            rates: BTreeMap::new(),
            levels: RefCell::new(Levels {
                limit,
                ..Levels::default()
            }),
            answers: RefCell::new(Answers::default()),
        }
    }

    /// Records the input rates of periods (start ms, records/s); a period
    /// seen again replaces its earlier rate, as overlapping windows show it
    /// every evaluation. Forgets what lies beyond the history span.
    pub fn learn(&mut self, rates: &[(i64, f64)], now_ms: i64) {
        let levels = self.levels.get_mut();
        let mut changed: Option<(i64, i64)> = None;
        // The usual evaluation shows only periods already learned, with the
        // same rates (windows overlap): one walk over the span tells, where
        // an insertion per period would search the whole history each.
        let known = match (rates.first(), rates.last()) {
            (Some(&(first, _)), Some(&(last, _))) if first <= last => self
                .rates
                .range(first..=last)
                .map(|(&t, &r)| (t, r))
                .eq(rates.iter().copied()),
            _ => rates.is_empty(),
        };
        if !known {
            for &(at_ms, rate) in rates {
                // A rate seen again unchanged leaves its bucket's level as
                // it was.
                if self.rates.insert(at_ms, rate) != Some(rate) {
                    let bucket = at_ms.div_euclid(self.bucket_ms);
                    levels.invalidate(bucket);
                    changed = Some(changed.map_or((bucket, bucket), |(lo, hi)| {
                        (lo.min(bucket), hi.max(bucket))
                    }));
                }
            }
        }
        let mut cut = None;
        if let Some(&first) = self.rates.keys().next()
            && first < now_ms - self.keep_ms
        {
            let keep_from = now_ms - self.keep_ms;
            self.rates = self.rates.split_off(&keep_from);
            // The bucket of the cut lost some rates, those before it all.
            let bucket = keep_from.div_euclid(self.bucket_ms);
            levels.start_at(bucket + 1);
            cut = Some(bucket);
        }
        if let Some(&first) = self.rates.keys().next() {
            levels.start_at(first.div_euclid(self.bucket_ms));
        }
        if changed.is_some() || cut.is_some() {
            let len = self.rates.len();
            self.answers
                .get_mut()
                .forget(changed, cut, len, self.bucket_ms);
        }
    }

    /// How many periods are known.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether no period is known.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The mean rate of the bucket (aligned to `bucket_secs` since the
    /// epoch) that holds `at_ms`, if any period in it is known.
    pub fn level(&self, at_ms: i64) -> Option<f64> {
        self.bucket_level(at_ms.div_euclid(self.bucket_ms))
    }

    /// The mean rate of bucket number `bucket`, if any period in it is
    /// known.
    fn bucket_level(&self, bucket: i64) -> Option<f64> {
        self.cached_level(&mut self.levels.borrow_mut(), bucket)
    }

    /// The level of `bucket` from `levels`, computed and kept there when
    /// it is not.
    fn cached_level(&self, levels: &mut Levels, bucket: i64) -> Option<f64> {
        match levels.slot(bucket) {
            Some(slot) => *slot.get_or_insert_with(|| self.computed_level(bucket)),
            None => self.computed_level(bucket),
        }
    }

    /// The level of `bucket`, from the rates: their mean, without the one
    /// above [`OUTLIER_FACTOR`] times their median when it is the only
    /// one (with three rates or more). A minute of one-off input, such as
    /// a jump of the backlog (an offset reset, a restore from an old
    /// snapshot) read as a minute of huge input, would otherwise raise the
    /// bucket's level, and with it the forecast of that time of every
    /// later day and week; a load that steps up within the bucket (a
    /// market's opening, a batch job's start) has several such minutes,
    /// and keeps them.
    fn computed_level(&self, bucket: i64) -> Option<f64> {
        let start = bucket.saturating_mul(self.bucket_ms);
        let mut rates: Vec<f64> = self
            .rates
            .range(start..start.saturating_add(self.bucket_ms))
            .map(|(_, &r)| r)
            .collect();
        if rates.is_empty() {
            return None;
        }
        if rates.len() >= 3 {
            let mut sorted = rates.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let above = |r: f64| r > OUTLIER_FACTOR * median;
            if rates.iter().filter(|&&r| above(r)).count() == 1 {
                rates.retain(|&r| !above(r));
            }
        }
        // The median itself always stays: never empty.
        Some(rates.iter().sum::<f64>() / rates.len() as f64)
    }

    /// The unscaled forecast of `at_ms` by `season_ms`.
    pub fn seasonal(&self, at_ms: i64, season_ms: i64) -> Option<f64> {
        self.level(at_ms - season_ms)
    }

    /// The best of a day and a week fitted on the rates of `[from_ms,
    /// latest_ms]` (the latest `latest_periods` of them for the latest
    /// error), or `None` when neither season has been seen over enough of
    /// the span.
    pub fn fit(&self, from_ms: i64, latest_ms: i64, latest_periods: usize) -> Option<Fit> {
        let asked = (from_ms, latest_ms, latest_periods);
        if let Some((last, fit)) = self.answers.borrow().fit
            && last == asked
        {
            return fit;
        }
        let fit = self.fit_afresh(from_ms, latest_ms, latest_periods);
        self.answers.borrow_mut().fit = Some((asked, fit));
        fit
    }

    /// [`Profile::fit`], computed.
    fn fit_afresh(&self, from_ms: i64, latest_ms: i64, latest_periods: usize) -> Option<Fit> {
        let recent: Vec<(i64, f64)> = self
            .rates
            .range(from_ms..=latest_ms)
            .map(|(t, r)| (*t, *r))
            .collect();
        let period_ms = self.period_ms()?;
        let expected = ((latest_ms - from_ms) / period_ms + 1).max(1) as f64;
        [DAY_MS, WEEK_MS]
            .into_iter()
            .filter_map(|season_ms| {
                let pairs: Vec<(f64, f64)> = recent
                    .iter()
                    .filter_map(|&(t, r)| self.seasonal(t, season_ms).map(|f| (r, f)))
                    .collect();
                if (pairs.len() as f64) < COVERAGE * expected {
                    return None;
                }
                let actual: f64 = pairs.iter().map(|p| p.0).sum();
                let forecast: f64 = pairs.iter().map(|p| p.1).sum();
                if forecast <= 0.0 {
                    return None;
                }
                let ratio = actual / forecast;
                // A ratio within its own standard error of 1 is the noise
                // of the span, not a busier or quieter day: scaling the
                // coming peak by it would size the capacity on that noise.
                let scale = if (ratio - 1.0).abs() <= ratio_standard_error(&pairs, ratio) {
                    1.0
                } else {
                    ratio.clamp(1.0 / MAX_SCALE, MAX_SCALE)
                };
                let relative = |&(r, f): &(f64, f64)| (r - scale * f).abs() / (scale * f).max(1.0);
                let error = pairs.iter().map(relative).sum::<f64>() / pairs.len() as f64;
                let latest_error = pairs
                    .iter()
                    .rev()
                    .take(latest_periods.max(1))
                    .map(relative)
                    .fold(0.0, larger);
                Some(Fit {
                    season_ms,
                    scale,
                    error,
                    latest_error,
                })
            })
            .min_by(|a, b| a.error.total_cmp(&b.error))
    }

    /// The highest scaled forecast over `[from_ms, to_ms]`, bucket by
    /// bucket; `None` when no bucket of it was seen a season earlier.
    pub fn peak(&self, fit: &Fit, from_ms: i64, to_ms: i64) -> Option<f64> {
        if to_ms < from_ms {
            return None;
        }
        let season = fit.season_ms;
        let first = (from_ms - season).div_euclid(self.bucket_ms);
        let last = (to_ms - season).div_euclid(self.bucket_ms);
        let kept = self
            .answers
            .borrow()
            .peaks
            .iter()
            .find(|&&(s, f, l, _)| (s, f, l) == (season, first, last))
            .map(|&(_, _, _, peak)| peak);
        let peak = kept.unwrap_or_else(|| {
            let mut levels = self.levels.borrow_mut();
            let peak = (first..=last)
                .filter_map(|bucket| self.cached_level(&mut levels, bucket))
                .reduce(larger);
            let peaks = &mut self.answers.borrow_mut().peaks;
            if peaks.len() == KEPT_PEAKS {
                peaks.remove(0);
            }
            peaks.push((season, first, last, peak));
            peak
        });
        peak.map(|p| p * fit.scale)
    }

    /// The spacing of the periods learned: the smallest gap between two.
    fn period_ms(&self) -> Option<i64> {
        let mut keys = self.rates.keys().rev().take(16);
        let mut previous = *keys.next()?;
        let mut best: Option<i64> = None;
        for &k in keys {
            let gap = previous - k;
            best = Some(best.map_or(gap, |b| b.min(gap)));
            previous = k;
        }
        best.filter(|g| *g > 0).or(Some(60_000))
    }
}

/// The larger of two numbers, a NaN ignored as by [`f64::max`], which in
/// WebAssembly is a call (to `fmax`, for its treatment of NaN and signed
/// zeros) rather than a comparison: it was a tenth of this plugin's time.
fn larger(a: f64, b: f64) -> f64 {
    if b > a || a.is_nan() { b } else { a }
}

/// The standard error of `ratio`, the ratio estimator sum(rate) /
/// sum(forecast) over `pairs` of (rate, forecast):
/// sqrt(sum((rate - ratio forecast)^2) / (n (n - 1))) / mean(forecast).
/// Infinite with fewer than two pairs (nothing to tell noise by).
fn ratio_standard_error(pairs: &[(f64, f64)], ratio: f64) -> f64 {
    let n = pairs.len() as f64;
    let mean_forecast = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    if n < 2.0 || mean_forecast <= 0.0 {
        return f64::INFINITY;
    }
    let spread: f64 = pairs.iter().map(|&(r, f)| (r - ratio * f).powi(2)).sum();
    (spread / (n * (n - 1.0))).sqrt() / mean_forecast
}
