//! The Universal Scalability Law: how the capacity of a job grows with its
//! parallelism, and the inverse (the least parallelism for a capacity).
//!
//! A Flink job does not scale linearly: subtasks contend for shared
//! resources (`sigma`) and pay for keeping each other coherent (`kappa`,
//! shuffles, checkpoint barriers). With `q` subtasks of base throughput
//! `mu` the capacity is `mu q / (1 + sigma (q - 1) + kappa q (q - 1))`,
//! which peaks and then falls. A policy measures the capacity at the
//! current parallelism and uses the law only to extrapolate to another one.

/// The highest parallelism MSF accepts; the search for a parallelism stops
/// there.
pub const MAX_PARALLELISM: u32 = 256;

/// The shape of the scalability curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usl {
    /// Contention: the serial fraction of the work.
    pub sigma: f64,
    /// Coherency: the pairwise cost between subtasks.
    pub kappa: f64,
}

impl Usl {
    /// Capacity of `q` subtasks relative to one (`q` for a linear job).
    pub fn speedup(&self, q: u32) -> f64 {
        let q = f64::from(q.max(1));
        q / (1.0 + self.sigma * (q - 1.0) + self.kappa * q * (q - 1.0))
    }

    /// Capacity of `q` subtasks of base throughput `mu`.
    pub fn capacity(&self, mu: f64, q: u32) -> f64 {
        mu * self.speedup(q)
    }

    /// The base throughput of one subtask, from a capacity measured at
    /// parallelism `q`.
    pub fn base_throughput(&self, measured: f64, q: u32) -> f64 {
        measured / self.speedup(q)
    }

    /// The knee of the curve: the largest parallelism (up to
    /// [`MAX_PARALLELISM`]) at which one more subtask still adds at least
    /// `ratio` of a subtask's average capacity (`C(q + 1) - C(q) >= ratio
    /// C(q + 1) / (q + 1)`). With `ratio` 0, the curve's peak; for a linear
    /// job, [`MAX_PARALLELISM`] whatever the ratio below 1.
    pub fn knee(&self, ratio: f64) -> u32 {
        let mut q = 1;
        while q < MAX_PARALLELISM {
            let next = f64::from(q + 1);
            let marginal = self.speedup(q + 1) - self.speedup(q);
            if marginal < ratio * self.speedup(q + 1) / next {
                break;
            }
            q += 1;
        }
        q
    }

    /// The least parallelism in `1..=max_q` whose capacity reaches `needed`.
    /// When none does, the parallelism of the largest capacity in that
    /// range, since past the curve's peak more subtasks only slow the job.
    pub fn parallelism_for(&self, mu: f64, needed: f64, max_q: u32) -> u32 {
        let max_q = max_q.clamp(1, MAX_PARALLELISM);
        let mut best = 1;
        for q in 1..=max_q {
            let capacity = self.capacity(mu, q);
            if capacity >= needed {
                return q;
            }
            if capacity > self.capacity(mu, best) {
                best = q;
            }
        }
        best
    }
}

/// The most a fit may scale the law's shape: contention and coherency at
/// most five times the prior's (with the default shape, the curve then
/// peaks near 30 subtasks).
pub const MAX_FIT_SCALE: f64 = 5.0;

/// Two parallelisms must differ by at least this ratio for their
/// capacities to say anything about the law: between close ones, a few
/// percent of measurement noise is all the difference.
pub const MIN_FIT_SPAN: f64 = 1.5;

/// A fit gets its full weight when the configured law puts the
/// efficiencies (capacity per subtask) of the lowest and the highest
/// parallelism measured this far apart (10 %); closer sizes move the
/// law from the configured one only in proportion. Between 2 and 4
/// subtasks the default law differs by 4 %, so a 5 % error in one
/// measured capacity could otherwise turn the law linear or five times
/// heavier.
pub const FULL_FIT_SPREAD: f64 = 0.1;

/// At the highest parallelism measured (or the one the caller is at,
/// when higher), a fitted law still has one more subtask add at least
/// this fraction of a subtask's average capacity. Capacity that grows
/// less than that from one size to the next is more likely the records
/// getting costlier between the two measurements than the law, and a
/// law whose curve has peaked there would refuse every scale-out.
pub const MIN_FITTED_RISE: f64 = 0.25;

/// The shape fitted when the prior is linear (no contention, no
/// coherency): the default law's.
const LINEAR_FIT_SHAPE: Usl = Usl {
    sigma: 0.02,
    kappa: 0.0002,
};

impl Usl {
    /// The law of this one's shape (contention and coherency in the same
    /// ratio; the default shape when this one is linear), scaled to fit
    /// `measured` capacities `(parallelism, records/s)`, and this one when
    /// they do not tell it.
    ///
    /// With `q` subtasks of base throughput `mu`, `q / C(q) = (1 + s
    /// g(q)) / mu`, where `g(q) = sigma (q - 1) + kappa q (q - 1)` is the
    /// shape and `s` its scale (1 for this law, 0 for a linear one): a
    /// straight line in `g(q)`, fitted by least squares, whose slope over
    /// its intercept is `s`. It needs parallelisms at least
    /// [`MIN_FIT_SPAN`] apart (the highest over the lowest). The fitted
    /// scale then moves this law's only in proportion to how far apart
    /// this law puts their efficiencies ([`FULL_FIT_SPREAD`]), is kept
    /// within `[0, MAX_FIT_SCALE]`, and is lowered (never below this law's)
    /// until the curve still rises by [`MIN_FITTED_RISE`] at the highest
    /// parallelism measured or at `rising_to`, whichever is higher.
    /// Capacities that are not positive and finite are left out.
    pub fn fitted(&self, measured: &[(u32, f64)], rising_to: u32) -> Usl {
        let linear = self.sigma <= 0.0 && self.kappa <= 0.0;
        let (shape, prior_scale) = if linear {
            (LINEAR_FIT_SHAPE, 0.0)
        } else {
            (*self, 1.0)
        };
        let g = |q: u32| {
            let q = f64::from(q);
            shape.sigma * (q - 1.0) + shape.kappa * q * (q - 1.0)
        };
        let valid: Vec<(u32, f64)> = measured
            .iter()
            .copied()
            .filter(|(q, c)| *q >= 1 && c.is_finite() && *c > 0.0)
            .collect();
        let low = valid.iter().map(|p| p.0).min().unwrap_or(0);
        let high = valid.iter().map(|p| p.0).max().unwrap_or(0);
        if valid.len() < 2 || f64::from(high) < MIN_FIT_SPAN * f64::from(low) {
            return *self;
        }
        let points: Vec<(f64, f64)> = valid
            .iter()
            .map(|&(q, c)| (g(q), f64::from(q) / c))
            .collect();
        let n = points.len() as f64;
        let mean_g = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_g).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_g) * (p.1 - mean_y)).sum();
        if sxx <= 0.0 {
            return *self;
        }
        let slope = sxy / sxx;
        let intercept = mean_y - slope * mean_g;
        let most = if shape.sigma > 0.0 {
            MAX_FIT_SCALE.min(0.99 / shape.sigma)
        } else {
            MAX_FIT_SCALE
        };
        // A line through positive points with no positive intercept is
        // steeper than any scale: the most.
        let raw = if intercept > 0.0 {
            slope / intercept
        } else {
            most
        };
        if !raw.is_finite() {
            return *self;
        }
        let raw = raw.clamp(0.0, most);
        // How far apart this law puts the efficiencies, 1 / (1 + g), of
        // the lowest and the highest size.
        let spread = (g(high) - g(low)) / (1.0 + g(high));
        let weight = (spread / FULL_FIT_SPREAD).clamp(0.0, 1.0);
        let scale = prior_scale + weight * (raw - prior_scale);
        // The largest scale at which the marginal capacity at `top`,
        // (1 - sigma - kappa q^2) / (1 + sigma (q - 1) + kappa q (q - 1))
        // of the average, is still MIN_FITTED_RISE.
        let top = f64::from(high.max(rising_to));
        let r = MIN_FITTED_RISE;
        let rising = (1.0 - r)
            / (shape.sigma
                + shape.kappa * top * top
                + r * (shape.sigma * (top - 1.0) + shape.kappa * top * (top - 1.0)));
        let scale = scale.min(rising.max(prior_scale)).clamp(0.0, most);
        Usl {
            sigma: shape.sigma * scale,
            kappa: (shape.kappa * scale).min(0.99),
        }
    }
}

/// KPU for parallelism `p` at `per_kpu` subtasks per KPU: ceil(p / per_kpu).
pub fn kpu_for(p: u32, per_kpu: u32) -> u32 {
    p.div_ceil(per_kpu.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: Usl = Usl {
        sigma: 0.02,
        kappa: 0.0002,
    };

    /// Three times the model's contention and coherency.
    const HEAVY: Usl = Usl {
        sigma: 0.06,
        kappa: 0.0006,
    };

    /// No contention, no coherency.
    const LINEAR: Usl = Usl {
        sigma: 0.0,
        kappa: 0.0,
    };

    #[test]
    fn capacity_matches_the_simulation_model() {
        // The scenarios quote C(5) = 4612, C(9) = 7663, C(13) = 10227 to the record.
        assert!((MODEL.capacity(1000.0, 1) - 1000.0).abs() < 1e-9);
        assert!((MODEL.capacity(1000.0, 5) - 4612.0).abs() < 1.0);
        assert!((MODEL.capacity(1000.0, 9) - 7663.0).abs() < 1.0);
        assert!((MODEL.capacity(1000.0, 13) - 10227.0).abs() < 1.0);
    }

    #[test]
    fn base_throughput_inverts_capacity() {
        let measured = MODEL.capacity(850.0, 7);
        assert!((MODEL.base_throughput(measured, 7) - 850.0).abs() < 1e-9);
    }

    #[test]
    fn parallelism_for_is_the_least_that_suffices() {
        assert_eq!(MODEL.parallelism_for(1000.0, 4000.0, 256), 5);
        assert_eq!(MODEL.parallelism_for(1000.0, 4612.0, 256), 5);
        assert_eq!(MODEL.parallelism_for(1000.0, 4613.0, 256), 6);
        assert_eq!(MODEL.parallelism_for(1000.0, 0.0, 256), 1);
    }

    #[test]
    fn unreachable_capacity_gets_the_peak_not_the_maximum() {
        // The curve peaks near sqrt((1 - sigma) / kappa) = 70 subtasks.
        let q = MODEL.parallelism_for(1000.0, 1e9, 256);
        assert!((69..=71).contains(&q), "{q}");
        assert_eq!(MODEL.parallelism_for(1000.0, 1e9, 12), 12);
    }

    #[test]
    fn linear_job_needs_proportional_parallelism() {
        assert_eq!(LINEAR.parallelism_for(500.0, 10_000.0, 256), 20);
        assert_eq!(LINEAR.parallelism_for(500.0, 10_001.0, 256), 21);
    }

    #[test]
    fn a_law_three_times_heavier_is_fitted_from_two_sizes() {
        // Capacities a job with three times the default law's contention
        // and coherency has at 2 and 10 subtasks of 1000 records/s (the
        // default law puts their efficiencies 15 % apart: full weight).
        let measured = [
            (2, HEAVY.capacity(1000.0, 2)),
            (10, HEAVY.capacity(1000.0, 10)),
        ];
        let fit = MODEL.fitted(&measured, 10);
        assert!((fit.sigma - 0.06).abs() < 1e-9, "{fit:?}");
        assert!((fit.kappa - 0.0006).abs() < 1e-11, "{fit:?}");
        // A lighter one, and a linear one, as well.
        let light = Usl {
            sigma: 0.01,
            kappa: 0.0001,
        };
        let measured = [(3, light.capacity(700.0, 3)), (9, light.capacity(700.0, 9))];
        assert!((MODEL.fitted(&measured, 9).sigma - 0.01).abs() < 1e-9);
        let measured = [(2, 2000.0), (4, 4000.0), (8, 8000.0)];
        assert_eq!(MODEL.fitted(&measured, 8), LINEAR);
    }

    #[test]
    fn sizes_close_together_move_the_law_only_partly() {
        // The same heavy job at 2 and 4: the default law puts their
        // efficiencies 3.95 % apart ((g(4) - g(2)) / (1 + g(4)), g(2) =
        // 0.0204, g(4) = 0.0624), so the fitted scale of 3 moves the
        // default's 1 by 0.395 of the way: 1.79.
        let measured = [
            (2, HEAVY.capacity(1000.0, 2)),
            (4, HEAVY.capacity(1000.0, 4)),
        ];
        let fit = MODEL.fitted(&measured, 4);
        let weight = (0.0624 - 0.0204) / 1.0624 / FULL_FIT_SPREAD;
        assert!(
            (fit.sigma - 0.02 * (1.0 + 2.0 * weight)).abs() < 1e-9,
            "{fit:?}"
        );
        // So 5 % of noise on one capacity moves the law by 2/5 of what a
        // full-weight fit would: the scale stays within 0.6 and 2.
        for error in [0.95, 1.05] {
            let noisy = [
                (2, MODEL.capacity(1000.0, 2)),
                (4, MODEL.capacity(1000.0, 4) * error),
            ];
            let scale = MODEL.fitted(&noisy, 4).sigma / 0.02;
            assert!((0.6..2.0).contains(&scale), "{error}: {scale}");
        }
    }

    #[test]
    fn a_linear_prior_is_fitted_with_the_default_shape() {
        let measured = [(2, MODEL.capacity(500.0, 2)), (8, MODEL.capacity(500.0, 8))];
        let fit = LINEAR.fitted(&measured, 8);
        assert!((fit.sigma - 0.02).abs() < 1e-9, "{fit:?}");
        // Linear capacities keep it linear.
        assert_eq!(LINEAR.fitted(&[(2, 1000.0), (8, 4000.0)], 8), LINEAR);
    }

    #[test]
    fn capacities_that_do_not_tell_the_law_leave_it_as_it_was() {
        // One size, sizes too close, capacities that are no numbers.
        assert_eq!(MODEL.fitted(&[], 1), MODEL);
        assert_eq!(MODEL.fitted(&[(4, 3900.0)], 4), MODEL);
        assert_eq!(MODEL.fitted(&[(4, 3900.0), (5, 4000.0)], 5), MODEL);
        assert_eq!(MODEL.fitted(&[(2, f64::NAN), (8, 7000.0)], 8), MODEL);
        assert_eq!(MODEL.fitted(&[(2, 0.0), (8, -1.0)], 8), MODEL);
        // Capacity that falls from 2 to 8 subtasks would be a scale far
        // past the bound, however far it falls (a line with no positive
        // intercept is steeper than any scale): kept at the bound.
        for at_eight in [1500.0, 400.0] {
            let fit = MODEL.fitted(&[(2, 2000.0), (8, at_eight)], 8);
            assert!((fit.sigma - 0.02 * MAX_FIT_SCALE).abs() < 1e-12, "{fit:?}");
        }
        // Capacity that grows faster than linear: no contention at all.
        let fit = MODEL.fitted(&[(2, 2000.0), (8, 9000.0)], 8);
        assert_eq!(fit.sigma, 0.0);
    }

    #[test]
    fn a_fitted_law_still_rises_where_the_job_is() {
        // Capacity that did not grow from 8 to 16 subtasks (the records
        // got costlier between the two): the fit would say five times the
        // default, which peaks near 31 and adds almost nothing at 16.
        // Kept where one more subtask at 16 still adds a quarter of the
        // average: s = 0.75 / (sigma + 16^2 kappa + 0.25 (15 sigma + 240
        // kappa)) = 4.74.
        let fit = MODEL.fitted(&[(8, 6000.0), (16, 6000.0)], 16);
        let scale = fit.sigma / 0.02;
        assert!((scale - 4.7408).abs() < 1e-3, "{scale}");
        let marginal = fit.speedup(17) - fit.speedup(16);
        // (The quarter is of the derivative; the next whole subtask adds 0.23.)
        assert!(marginal > 0.2 * fit.speedup(16) / 16.0, "{marginal}");
        // At 48 the default law itself adds less than a quarter: a fit can
        // be no heavier than it, so a saturated job there still scales out
        // as far as the default law says (its peak near 70).
        let fit = MODEL.fitted(&[(32, 12_000.0), (48, 12_500.0)], 48);
        assert_eq!(fit, MODEL);
        assert!(fit.parallelism_for(300.0, 1e9, 256) > 48);
        // The parallelism the caller is at counts as well.
        let fit = MODEL.fitted(&[(8, 6000.0), (16, 6000.0)], 48);
        assert_eq!(fit, MODEL);
    }

    #[test]
    fn the_knee_is_where_a_subtask_adds_less_than_its_share() {
        // Per 1000 records/s a subtask: C(20) = 13736.3, C(21) = 14150.9,
        // C(22) = 14546.4. The 21st subtask adds 414.7, 0.615 of the
        // average at 21 (673.9); the 22nd adds 395.5, 0.598 of the average
        // at 22 (661.2): the knee at 0.6 is 21.
        for (ratio, knee) in [(0.5, 27), (0.6, 21), (0.7, 16)] {
            assert_eq!(MODEL.knee(ratio), knee, "ratio {ratio}");
        }
        // With ratio 0 the knee is the peak (about 70 subtasks).
        assert_eq!(MODEL.knee(0.0), MODEL.parallelism_for(1000.0, 1e9, 256));
        assert_eq!(HEAVY.knee(0.6), 9);
        assert_eq!(LINEAR.knee(0.99), MAX_PARALLELISM);
    }

    #[test]
    fn kpu_rounds_parallelism_up() {
        assert_eq!(kpu_for(5, 1), 5);
        assert_eq!(kpu_for(5, 2), 3);
        assert_eq!(kpu_for(8, 4), 2);
        assert_eq!(kpu_for(1, 8), 1);
    }
}
