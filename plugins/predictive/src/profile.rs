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
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

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
    /// [`Profile::level`] by bucket start, as computed from `rates`;
    /// a bucket's entry goes when one of its rates is learned or
    /// forgotten. Every evaluation asks for hundreds of levels (the
    /// lookahead and the dip in buckets, the fit span point by point), of
    /// buckets that mostly have not changed since the last one.
    levels: RefCell<Levels>,
}

/// Bucket levels by bucket number.
type Levels = HashMap<i64, Option<f64>, BuildHasherDefault<BucketHasher>>;

/// Hashes a bucket number with one multiplication (Fibonacci hashing)
/// rather than the standard library's SipHash: the keys are small
/// consecutive integers the plugin computes itself (no adversary to resist),
/// and SipHash of the hundreds of lookups an evaluation makes was the
/// plugin's largest cost (9 % of a 7-day `simulate` of `predictive`).
#[derive(Default)]
struct BucketHasher(u64);

impl Hasher for BucketHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_i64(&mut self, n: i64) {
        // The product's high bits, which the table reads first, depend on
        // every bit of the key.
        self.0 = (self.0 ^ n as u64).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, odd.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

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
        Profile {
            bucket_ms: i64::from(bucket_secs.max(1)) * 1000,
            keep_ms: i64::from(history_days) * DAY_MS,
            rates: BTreeMap::new(),
            levels: RefCell::new(Levels::default()),
        }
    }

    /// Records the input rates of periods (start ms, records/s); a period
    /// seen again replaces its earlier rate, as overlapping windows show it
    /// every evaluation. Forgets what lies beyond the history span.
    pub fn learn(&mut self, rates: &[(i64, f64)], now_ms: i64) {
        let levels = self.levels.get_mut();
        for &(at_ms, rate) in rates {
            self.rates.insert(at_ms, rate);
            levels.remove(&at_ms.div_euclid(self.bucket_ms));
        }
        if let Some(&first) = self.rates.keys().next()
            && first < now_ms - self.keep_ms
        {
            let keep_from = now_ms - self.keep_ms;
            self.rates = self.rates.split_off(&keep_from);
            // The bucket of the cut lost some rates, those before it all.
            let cut = keep_from.div_euclid(self.bucket_ms);
            levels.retain(|&bucket, _| bucket > cut);
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
        let bucket = at_ms.div_euclid(self.bucket_ms);
        *self.levels.borrow_mut().entry(bucket).or_insert_with(|| {
            let start = bucket * self.bucket_ms;
            let (sum, n) = self
                .rates
                .range(start..start + self.bucket_ms)
                .fold((0.0, 0u32), |(s, n), (_, r)| (s + r, n + 1));
            (n > 0).then(|| sum / f64::from(n))
        })
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
                    .fold(0.0, f64::max);
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
        let mut at = from_ms;
        let mut peak: Option<f64> = None;
        while at <= to_ms {
            if let Some(f) = self.seasonal(at, fit.season_ms) {
                peak = Some(peak.map_or(f, |p: f64| p.max(f)));
            }
            at += self.bucket_ms;
        }
        if let Some(f) = self.seasonal(to_ms, fit.season_ms) {
            peak = Some(peak.map_or(f, |p: f64| p.max(f)));
        }
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
