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
/// peaks near 30 subtasks). A larger scale would most likely be the
/// capacity changing for another reason (the records got costlier), and a
/// law that says more subtasks do not help would stop a needed scale-out.
pub const MAX_FIT_SCALE: f64 = 5.0;

/// Two parallelisms must differ by at least this ratio for their
/// capacities to say anything about the law: between close ones, a few
/// percent of measurement noise is all the difference.
pub const MIN_FIT_SPAN: f64 = 1.5;

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
    /// shape and `s` its scale: a straight line in `g(q)`, fitted by least
    /// squares, whose slope over its intercept is `s`. It needs
    /// parallelisms at least [`MIN_FIT_SPAN`] apart (the highest over the
    /// lowest); `s` is kept within `[0, MAX_FIT_SCALE]` and contention below
    /// 1. Capacities that are not positive and finite are left out.
    pub fn fitted(&self, measured: &[(u32, f64)]) -> Usl {
        let shape = if self.sigma > 0.0 || self.kappa > 0.0 {
            *self
        } else {
            LINEAR_FIT_SHAPE
        };
        let valid: Vec<(u32, f64)> = measured
            .iter()
            .copied()
            .filter(|(q, c)| *q >= 1 && c.is_finite() && *c > 0.0)
            .collect();
        let low = valid.iter().map(|p| p.0).min().unwrap_or(0);
        let high = valid.iter().map(|p| p.0).max().unwrap_or(0);
        let points: Vec<(f64, f64)> = valid
            .iter()
            .map(|&(q, c)| {
                let q = f64::from(q);
                let g = shape.sigma * (q - 1.0) + shape.kappa * q * (q - 1.0);
                (g, q / c)
            })
            .collect();
        if points.len() < 2 || f64::from(high) < MIN_FIT_SPAN * f64::from(low) {
            return *self;
        }
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
        let scale = slope / intercept;
        if !(intercept > 0.0 && scale.is_finite()) {
            return *self;
        }
        let most = if shape.sigma > 0.0 {
            MAX_FIT_SCALE.min(0.99 / shape.sigma)
        } else {
            MAX_FIT_SCALE
        };
        let scale = scale.clamp(0.0, most);
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
        let linear = Usl {
            sigma: 0.0,
            kappa: 0.0,
        };
        assert_eq!(linear.parallelism_for(500.0, 10_000.0, 256), 20);
        assert_eq!(linear.parallelism_for(500.0, 10_001.0, 256), 21);
    }

    #[test]
    fn a_law_three_times_heavier_is_fitted_from_two_sizes() {
        // Capacities a job with three times the default law's contention
        // and coherency has at 2 and 6 subtasks of 1000 records/s.
        let heavy = Usl {
            sigma: 0.06,
            kappa: 0.0006,
        };
        let measured = [
            (2, heavy.capacity(1000.0, 2)),
            (6, heavy.capacity(1000.0, 6)),
        ];
        let fit = MODEL.fitted(&measured);
        assert!((fit.sigma - 0.06).abs() < 1e-9, "{fit:?}");
        assert!((fit.kappa - 0.0006).abs() < 1e-11, "{fit:?}");
        // A lighter one, and a linear one, as well.
        let light = Usl {
            sigma: 0.01,
            kappa: 0.0001,
        };
        let measured = [(3, light.capacity(700.0, 3)), (9, light.capacity(700.0, 9))];
        assert!((MODEL.fitted(&measured).sigma - 0.01).abs() < 1e-9);
        let measured = [(2, 2000.0), (4, 4000.0), (8, 8000.0)];
        assert_eq!(
            MODEL.fitted(&measured),
            Usl {
                sigma: 0.0,
                kappa: 0.0
            }
        );
    }

    #[test]
    fn a_linear_prior_is_fitted_with_the_default_shape() {
        let linear = Usl {
            sigma: 0.0,
            kappa: 0.0,
        };
        let measured = [(2, MODEL.capacity(500.0, 2)), (8, MODEL.capacity(500.0, 8))];
        let fit = linear.fitted(&measured);
        assert!((fit.sigma - 0.02).abs() < 1e-9, "{fit:?}");
    }

    #[test]
    fn capacities_that_do_not_tell_the_law_leave_it_as_it_was() {
        // One size, sizes too close, capacities that are no numbers.
        assert_eq!(MODEL.fitted(&[]), MODEL);
        assert_eq!(MODEL.fitted(&[(4, 3900.0)]), MODEL);
        assert_eq!(MODEL.fitted(&[(4, 3900.0), (5, 4000.0)]), MODEL);
        assert_eq!(MODEL.fitted(&[(2, f64::NAN), (8, 7000.0)]), MODEL);
        assert_eq!(MODEL.fitted(&[(2, 0.0), (8, -1.0)]), MODEL);
        // Capacity that falls from 2 to 8 subtasks would be a scale far
        // past the bound: kept at it.
        let fit = MODEL.fitted(&[(2, 2000.0), (8, 1500.0)]);
        assert!((fit.sigma - 0.02 * MAX_FIT_SCALE).abs() < 1e-12, "{fit:?}");
        // Capacity that grows faster than linear: no contention at all.
        let fit = MODEL.fitted(&[(2, 2000.0), (8, 9000.0)]);
        assert_eq!(fit.sigma, 0.0);
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
        let heavy = Usl {
            sigma: 0.06,
            kappa: 0.0006,
        };
        assert_eq!(heavy.knee(0.6), 9);
        let linear = Usl {
            sigma: 0.0,
            kappa: 0.0,
        };
        assert_eq!(linear.knee(0.99), MAX_PARALLELISM);
    }

    #[test]
    fn kpu_rounds_parallelism_up() {
        assert_eq!(kpu_for(5, 1), 5);
        assert_eq!(kpu_for(5, 2), 3);
        assert_eq!(kpu_for(8, 4), 2);
        assert_eq!(kpu_for(1, 8), 1);
    }
}
