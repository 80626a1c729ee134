//! The project's one seeded random source, splitmix64, in two shapes.
//!
//! Numbers that depend only on a seed and an index (a simulated second, a
//! request count), never on what was drawn before, so a run replays to the
//! record whatever order the questions come in: the model's CPU noise and
//! the emulator's injected faults draw here ([`uniform`], [`gaussian`]).
//! And a stream ([`SplitMix64`]) for draws whose order is fixed: the
//! controller's retry jitter and the tests' seeded choices (kill points).

/// splitmix64's output function: a bijective mix of 64 bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64's increment: 2^64 divided by the golden ratio, odd.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A uniform number in [0, 1) from the top 53 bits of `bits`.
fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform number in [0, 1) that depends only on (seed, n).
pub fn uniform(seed: u64, n: u64) -> f64 {
    unit_of(splitmix64(seed ^ splitmix64(n)))
}

/// A standard normal deviate that depends only on (seed, t) (Box-Muller
/// over two splitmix64 draws).
pub fn gaussian(seed: u64, t: u64) -> f64 {
    let a = splitmix64(seed ^ splitmix64(t.wrapping_mul(2)));
    let b = splitmix64(seed ^ splitmix64(t.wrapping_mul(2).wrapping_add(1)));
    // Uniforms in (0, 1]: never log(0).
    let u1 = ((a >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// splitmix64 as a stream: a tiny seeded generator whose whole state is
/// one number, so a sequence of choices is printed as its seed and
/// replayed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from `name` (FNV-1a of its bytes), so that two
    /// names draw differently and one name the same every run.
    pub fn seeded(name: &str) -> Self {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let bits = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        bits
    }

    /// A uniform number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: no modulo bias worth speaking of for small n.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit_of(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is splitmix64's reference sequence (seed 1234567, the
    /// values of the algorithm's published C implementation).
    #[test]
    fn the_stream_is_splitmix64() {
        let mut rng = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn below_stays_below_and_zero_gives_zero() {
        let mut rng = SplitMix64::new(7);
        assert!((0..1000).all(|_| rng.below(10) < 10));
        assert_eq!(rng.below(0), 0);
        assert!(
            (0..1000)
                .map(|_| rng.unit())
                .all(|u| (0.0..1.0).contains(&u))
        );
    }
}
