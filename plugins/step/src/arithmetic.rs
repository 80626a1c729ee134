//! The step arithmetic, free of the plugin plumbing so that it is tested
//! with plain numbers.

use std::fmt;

use serde::Deserialize;

/// How a factor is applied, after the reference design's `ScaleOperation`;
/// the `operation` parameter names it in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Out: kpu x factor; in: floor(kpu / factor). Reference: `Multiply/Divide`.
    Multiply,
    /// Out: kpu + factor; in: kpu - factor. Reference: `Add/Subtract`.
    Add,
}

impl Operation {
    /// The smallest factor that changes anything under this operation.
    pub fn min_factor(self) -> u32 {
        match self {
            Operation::Multiply => 2,
            Operation::Add => 1,
        }
    }

    /// Refuses a factor that would never change the capacity.
    pub fn check_factor(self, name: &str, factor: u32) -> Result<(), String> {
        if factor >= self.min_factor() {
            return Ok(());
        }
        Err(format!(
            "parameter `{name}` must be at least {} with operation \"{self}\" \
             (a factor of {factor} would never change the capacity), found {factor}",
            self.min_factor()
        ))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Multiply => "multiply",
            Operation::Add => "add",
        })
    }
}

/// Which way to step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// More capacity.
    Out,
    /// Less capacity.
    In,
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The capacity is already at (or beyond) the limit in this direction;
    /// `limit` is `max_kpu` going out, max(`min_kpu`, 1) going in.
    AtLimit {
        /// The limit reached.
        limit: u32,
    },
    /// Scale to `kpu`; `arithmetic` shows how, e.g. `4 KPU x 2 = 8 KPU,
    /// clamped to max KPU 6`.
    To {
        /// The target, within the limits and different from the current KPU.
        kpu: u32,
        /// The computation, for the decision's reason.
        arithmetic: String,
    },
}

/// One step from `kpu` in `direction`, within [max(`min_kpu`, 1), `max_kpu`].
///
/// A configuration with `max_kpu` below the floor is refused by
/// `flinkscale validate`; here it is treated as `max_kpu` = the floor rather
/// than panicking.
pub fn step(
    operation: Operation,
    direction: Direction,
    factor: u32,
    kpu: u32,
    min_kpu: u32,
    max_kpu: u32,
) -> Step {
    let floor = min_kpu.max(1);
    let ceiling = max_kpu.max(floor);
    let (raw, symbol) = match (operation, direction) {
        (Operation::Multiply, Direction::Out) => (kpu.saturating_mul(factor), "x"),
        (Operation::Add, Direction::Out) => (kpu.saturating_add(factor), "+"),
        // Integer division is the reference's floor; a zero factor is refused
        // at configuration, and `max(1)` keeps this total anyway.
        (Operation::Multiply, Direction::In) => (kpu / factor.max(1), "/"),
        (Operation::Add, Direction::In) => (kpu.saturating_sub(factor), "-"),
    };
    let (limit, at_limit) = match direction {
        Direction::Out => (ceiling, kpu >= ceiling),
        Direction::In => (floor, kpu <= floor),
    };
    if at_limit {
        return Step::AtLimit { limit };
    }
    let target = raw.clamp(floor, ceiling);
    // Built with `push_str` rather than `format!`: this runs on every
    // decision, and the formatting machinery was a tenth of a warm call.
    let mut arithmetic = String::with_capacity(64);
    push_u32(&mut arithmetic, kpu);
    arithmetic.push_str(" KPU ");
    arithmetic.push_str(symbol);
    arithmetic.push(' ');
    push_u32(&mut arithmetic, factor);
    arithmetic.push_str(" = ");
    push_u32(&mut arithmetic, raw);
    arithmetic.push_str(" KPU");
    if target != raw {
        let bound = if raw > ceiling { "max" } else { "min" };
        arithmetic.push_str(", clamped to ");
        arithmetic.push_str(bound);
        arithmetic.push_str(" KPU ");
        push_u32(&mut arithmetic, target);
    }
    Step::To {
        kpu: target,
        arithmetic,
    }
}

/// Appends `n` in decimal to `out`, as `write!(out, "{n}")` would, without
/// the formatting machinery.
pub fn push_u32(out: &mut String, mut n: u32) {
    // u32::MAX has 10 digits.
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10 < 10`, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}
