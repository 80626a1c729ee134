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
    fn kpu_rounds_parallelism_up() {
        assert_eq!(kpu_for(5, 1), 5);
        assert_eq!(kpu_for(5, 2), 3);
        assert_eq!(kpu_for(8, 4), 2);
        assert_eq!(kpu_for(1, 8), 1);
    }
}
