//! The target-tracking arithmetic, free of the plugin plumbing so that it is
//! tested with plain numbers.

use flinkscale_plugin::usl::{MAX_PARALLELISM, Usl, kpu_for};

/// The utilisation band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// The utilisation to keep.
    pub target: f64,
    /// Half-width of the band in which nothing is done.
    pub tolerance: f64,
}

/// What the policy knows at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    /// Current KPU.
    pub kpu: u32,
    /// Current parallelism.
    pub parallelism: u32,
    /// Subtasks per KPU.
    pub per_kpu: u32,
    /// Lowest KPU allowed.
    pub min_kpu: u32,
    /// Highest KPU allowed.
    pub max_kpu: u32,
    /// The latest fresh utilisation, 0..=1.
    pub utilisation: f64,
    /// The highest utilisation over the scale-in delay, if the delay has
    /// been observed whole since the last rescale.
    pub window_peak: Option<f64>,
}

/// What to do; the reason starts with the utilisation, after the metric's
/// name.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep the capacity.
    Hold(String),
    /// Rescale to this KPU.
    To(u32, String),
}

/// Decides in `s` for `band`.
pub fn step(band: &Band, usl: &Usl, s: &Situation) -> Step {
    let u = s.utilisation;
    let high = band.target + band.tolerance;
    let low = band.target - band.tolerance;
    let pct = |x: f64| 100.0 * x;
    if u > high {
        let (kpu, q) = sized(band, usl, s, u);
        if kpu > s.kpu {
            return Step::To(
                kpu,
                format!(
                    "{:.0} % is above {:.0} %: {:.0} % of parallelism {} at {:.0} % needs parallelism {q}, {kpu} KPU",
                    pct(u),
                    pct(high),
                    pct(u),
                    s.parallelism,
                    pct(band.target)
                ),
            );
        }
        if s.kpu >= s.max_kpu {
            return Step::Hold(format!(
                "{:.0} % is above {:.0} %, but already at max KPU ({})",
                pct(u),
                pct(high),
                s.max_kpu
            ));
        }
        // Below max KPU: the law's peak is reached, and more subtasks
        // would only slow the job.
        return Step::Hold(format!(
            "{:.0} % is above {:.0} %, but past parallelism {q} the scalability law adds no \
             capacity (more subtasks only slow the job): holding at parallelism {}",
            pct(u),
            pct(high),
            s.parallelism
        ));
    }
    if u >= low {
        return Step::Hold(format!(
            "{:.0} % is within {:.0} % +- {:.0} %",
            pct(u),
            pct(band.target),
            pct(band.tolerance)
        ));
    }
    let Some(peak) = s.window_peak else {
        return Step::Hold(format!(
            "{:.0} % is below {:.0} %, waiting out the scale-in delay",
            pct(u),
            pct(low)
        ));
    };
    if peak >= low {
        return Step::Hold(format!(
            "{:.0} % is below {:.0} %, but reached {:.0} % within the scale-in delay",
            pct(u),
            pct(low),
            pct(peak)
        ));
    }
    let (kpu, q) = sized(band, usl, s, peak);
    if kpu < s.kpu {
        return Step::To(
            kpu,
            format!(
                "stayed below {:.0} % for the whole scale-in delay (peak {:.0} %): parallelism {q}, {kpu} KPU keeps it at or below {:.0} %",
                pct(low),
                pct(peak),
                pct(band.target)
            ),
        );
    }
    Step::Hold(format!(
        "{:.0} % is below {:.0} %, but already at the least KPU for the peak {:.0} %",
        pct(u),
        pct(low),
        pct(peak)
    ))
}

/// The KPU and parallelism that carry utilisation `u` of the current
/// capacity at the target, within the limits.
fn sized(band: &Band, usl: &Usl, s: &Situation, u: f64) -> (u32, u32) {
    let needed = usl.speedup(s.parallelism) * u / band.target;
    let max_q = s
        .max_kpu
        .saturating_mul(s.per_kpu.max(1))
        .min(MAX_PARALLELISM);
    let q = usl.parallelism_for(1.0, needed, max_q);
    let kpu = kpu_for(q, s.per_kpu).clamp(s.min_kpu.max(1), s.max_kpu.max(1));
    (kpu, q.min(kpu.saturating_mul(s.per_kpu.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAND: Band = Band {
        target: 0.7,
        tolerance: 0.1,
    };
    const USL: Usl = Usl {
        sigma: 0.02,
        kappa: 0.0002,
    };
    const LINEAR: Usl = Usl {
        sigma: 0.0,
        kappa: 0.0,
    };

    fn at(kpu: u32, utilisation: f64, window_peak: Option<f64>) -> Situation {
        Situation {
            kpu,
            parallelism: kpu,
            per_kpu: 1,
            min_kpu: 1,
            max_kpu: 32,
            utilisation,
            window_peak,
        }
    }

    fn to(step: Step) -> u32 {
        match step {
            Step::To(kpu, _) => kpu,
            Step::Hold(reason) => panic!("held: {reason}"),
        }
    }

    #[test]
    fn above_the_band_scales_out_at_once() {
        // Linear: 4 x 0.9 / 0.7 = 5.14 -> 6.
        assert_eq!(to(step(&BAND, &LINEAR, &at(4, 0.9, None))), 6);
        // Sub-linear needs more: speedup(4) = 3.77, x 0.9 / 0.7 = 4.84,
        // speedup(5) = 4.61, speedup(6) = 5.43 -> 6; at 8 KPU:
        // speedup(8) = 6.95 x 1.0 / 0.7 = 9.93 -> 13 (speedup(12) = 9.63).
        assert_eq!(to(step(&BAND, &USL, &at(4, 0.9, None))), 6);
        assert_eq!(to(step(&BAND, &USL, &at(8, 1.0, None))), 13);
        assert_eq!(to(step(&BAND, &LINEAR, &at(8, 1.0, None))), 12);
    }

    #[test]
    fn inside_the_band_holds() {
        for u in [0.61, 0.7, 0.79] {
            assert!(
                matches!(step(&BAND, &USL, &at(4, u, Some(u))), Step::Hold(_)),
                "{u}"
            );
        }
    }

    #[test]
    fn below_the_band_waits_for_the_whole_delay() {
        assert!(matches!(
            step(&BAND, &USL, &at(8, 0.3, None)),
            Step::Hold(r) if r.contains("waiting out the scale-in delay")
        ));
        // A peak inside the band within the delay holds.
        assert!(matches!(
            step(&BAND, &USL, &at(8, 0.3, Some(0.65))),
            Step::Hold(_)
        ));
        // Sized on the peak: speedup(8) = 6.95 x 0.4 / 0.7 = 3.97 -> 5.
        assert_eq!(to(step(&BAND, &USL, &at(8, 0.3, Some(0.4)))), 5);
    }

    #[test]
    fn limits_are_respected() {
        let mut s = at(32, 1.0, None);
        assert!(matches!(step(&BAND, &USL, &s), Step::Hold(r) if r.contains("max KPU (32)")));
        s = at(2, 0.05, Some(0.05));
        s.min_kpu = 2;
        assert!(matches!(step(&BAND, &USL, &s), Step::Hold(_)));
    }

    /// Past the law's peak below max KPU, the hold says so: it said
    /// "already at max KPU (32)" at 12 KPU.
    #[test]
    fn past_the_laws_peak_the_hold_says_so_not_max_kpu() {
        // sigma 0.02, kappa 0.01: the curve peaks at parallelism 10.
        let steep = Usl {
            sigma: 0.02,
            kappa: 0.01,
        };
        let Step::Hold(reason) = step(&BAND, &steep, &at(12, 0.95, None)) else {
            panic!("a scale past the peak");
        };
        assert_eq!(
            reason,
            "95 % is above 80 %, but past parallelism 10 the scalability law adds no capacity \
             (more subtasks only slow the job): holding at parallelism 12"
        );
    }

    #[test]
    fn parallelism_per_kpu_packs_subtasks() {
        let mut s = at(2, 0.9, None);
        s.parallelism = 8;
        s.per_kpu = 4;
        // Linear: 8 x 0.9 / 0.7 = 10.3 -> 11 subtasks -> 3 KPU.
        assert_eq!(to(step(&BAND, &LINEAR, &s)), 3);
    }
}
