//! The world's one seeded random source: numbers that depend only on a
//! seed and an index (a simulated second, a request count), never on what
//! was drawn before, so a run replays to the record whatever order the
//! questions come in. The model's CPU noise and the emulator's injected
//! faults both draw here.

/// splitmix64's output function: a bijective mix of 64 bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) that depends only on (seed, n).
pub fn uniform(seed: u64, n: u64) -> f64 {
    (splitmix64(seed ^ splitmix64(n)) >> 11) as f64 / (1u64 << 53) as f64
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
