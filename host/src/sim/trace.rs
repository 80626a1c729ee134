//! Input-rate traces: the load `lambda(t)` a scenario drives an application
//! with, read from a CSV file.
//!
//! Two shapes are accepted, told apart row by row from the first column:
//! the simulator's own `t_secs,records_per_sec` (seconds since the start),
//! and a CloudWatch export (an ISO-8601 timestamp, or epoch seconds or
//! milliseconds, and a value). Exported timestamps are sorted and rebased
//! so that the first is t = 0. Values are records per second, or per-period
//! sums (what CloudWatch's `Sum` statistic gives) divided by the period.

use std::path::Path;

/// The highest input rate a trace may give, records per second: far above
/// any stream (a million records per second is a large one), far below
/// where the model's sums lose their precision.
pub const MAX_RATE: f64 = 1e12;

/// How a trace's values are to be read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TraceValue {
    /// Each value is a rate in records per second.
    PerSecond,
    /// Each value is the number of records of one period of `period_secs`
    /// seconds (e.g. a CloudWatch `Sum` over 60 s); the rate is value / period.
    SumPerPeriod {
        /// Length of one period in seconds.
        period_secs: f64,
    },
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The file.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is unusable.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// A piecewise-linear input rate over time: linear interpolation between
/// points, the first value before the first point and the last value held
/// after the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(t_secs, records_per_sec)`, times non-decreasing, at least one point.
    points: Vec<(f64, f64)>,
}

impl Trace {
    /// A trace from `(t_secs, records_per_sec)` points. Times must be finite,
    /// non-negative and non-decreasing; rates finite and non-negative. Two
    /// points at the same time make a step: from that time on the later one
    /// holds.
    pub fn from_points(points: Vec<(f64, f64)>) -> Result<Self, String> {
        if points.is_empty() {
            return Err("a trace needs at least one point".to_owned());
        }
        let mut previous = f64::NEG_INFINITY;
        for (i, &(t, r)) in points.iter().enumerate() {
            if !t.is_finite() || t < 0.0 {
                return Err(format!("point {i}: time {t} is not a non-negative number"));
            }
            if t < previous {
                return Err(format!("point {i}: time {t} goes back before {previous}"));
            }
            if !r.is_finite() || r < 0.0 {
                return Err(format!("point {i}: rate {r} is not a non-negative number"));
            }
            previous = t;
        }
        Ok(Self { points })
    }

    /// A trace that is `rate` at all times.
    pub fn constant(rate: f64) -> Self {
        Self {
            points: vec![(0.0, rate.max(0.0))],
        }
    }

    /// Reads a trace file (see the module documentation for the formats).
    pub fn load(path: &Path, value: TraceValue) -> Result<Self, TraceError> {
        let file = path.display().to_string();
        let text = crate::config::load::read_utf8(path).map_err(|source| TraceError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, value)
    }

    /// Parses trace text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, value: TraceValue) -> Result<Self, TraceError> {
        let line_error = |line: usize, message: String| TraceError::Line {
            file: file.to_owned(),
            line,
            message,
        };
        let divisor = match value {
            TraceValue::PerSecond => 1.0,
            TraceValue::SumPerPeriod { period_secs } => {
                if !(period_secs.is_finite() && period_secs > 0.0) {
                    return Err(TraceError::File {
                        file: file.to_owned(),
                        message: format!("trace period {period_secs} s is not positive"),
                    });
                }
                period_secs
            }
        };
        let mut rows: Vec<(usize, Stamp, f64)> = Vec::new();
        let mut seen_data = false;
        // A byte-order mark (a spreadsheet's UTF-8 export) is not text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = content
                .split(',')
                .map(|f| f.trim().trim_matches('"').trim())
                .collect();
            let stamp = fields.first().copied().and_then(parse_stamp);
            if let Some(Stamp::EpochMs(ms)) = stamp
                && ms > LAST_EPOCH_MS
            {
                return Err(line_error(
                    line,
                    format!(
                        "time {:?} is past the year 9999: valid epoch seconds from 1e9 or milliseconds from 1e12, up to {LAST_EPOCH_MS} ms",
                        fields.first().copied().unwrap_or_default()
                    ),
                ));
            }
            let Some(stamp) = stamp else {
                // The first row is a header when neither of its first two
                // columns is a number: a row with a value and a time that
                // does not read (`0s,1000`) is a mistake, not a header.
                let value_is_number = fields.get(1).is_some_and(|v| v.parse::<f64>().is_ok());
                if !seen_data && !value_is_number {
                    seen_data = true;
                    continue;
                }
                return Err(line_error(
                    line,
                    format!(
                        "first column {:?} is neither seconds, epoch seconds/milliseconds nor an ISO-8601 timestamp",
                        fields.first().copied().unwrap_or_default()
                    ),
                ));
            };
            seen_data = true;
            if fields.len() < 2 {
                return Err(line_error(
                    line,
                    "expected two columns: time and value".to_owned(),
                ));
            }
            if let Some(extra) = fields[2..].iter().position(|f| !f.is_empty()) {
                return Err(line_error(
                    line,
                    format!(
                        "expected two columns, time and value, found a value in column {} \
                         ({:?}): export one metric per file",
                        extra + 3,
                        fields[extra + 2]
                    ),
                ));
            }
            let cell = fields[1];
            if cell.is_empty() {
                // CloudWatch exports leave a cell empty where a period has no
                // datapoint: interpolate across the gap.
                continue;
            }
            let v: f64 = cell
                .parse()
                .map_err(|_| line_error(line, format!("value {cell:?} is not a number")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(line_error(
                    line,
                    format!("value {cell:?} is not a non-negative rate"),
                ));
            }
            if v / divisor > MAX_RATE {
                return Err(line_error(
                    line,
                    format!(
                        "value {cell:?} is over {MAX_RATE:e} records per second, more than \
                         any stream carries (a unit mixed up?)"
                    ),
                ));
            }
            rows.push((line, stamp, v / divisor));
        }
        if rows.is_empty() {
            return Err(TraceError::File {
                file: file.to_owned(),
                message: "no data rows".to_owned(),
            });
        }
        let absolute = matches!(rows[0].1, Stamp::EpochMs(_));
        if let Some((line, _, _)) = rows
            .iter()
            .find(|(_, s, _)| matches!(s, Stamp::EpochMs(_)) != absolute)
        {
            return Err(line_error(
                *line,
                "mixes relative seconds with absolute timestamps".to_owned(),
            ));
        }
        let points = if absolute {
            // Exports come in either order (GetMetricData defaults to newest
            // first): sort, then rebase to the first timestamp.
            let mut abs: Vec<(i64, f64)> = rows.iter().map(|(_, s, v)| (s.ms(), *v)).collect();
            abs.sort_by_key(|&(ms, _)| ms);
            let first = abs[0].0;
            abs.into_iter()
                .map(|(ms, v)| ((ms - first) as f64 / 1000.0, v))
                .collect()
        } else {
            let mut previous = f64::NEG_INFINITY;
            let mut points = Vec::with_capacity(rows.len());
            for (line, stamp, v) in rows {
                let Stamp::Secs(t) = stamp else { continue };
                if t < 0.0 {
                    return Err(line_error(line, format!("time {t} is negative")));
                }
                if t < previous {
                    return Err(line_error(
                        line,
                        format!("time {t} goes back before the previous row's {previous}"),
                    ));
                }
                previous = t;
                points.push((t, v));
            }
            points
        };
        Self::from_points(points).map_err(|message| TraceError::File {
            file: file.to_owned(),
            message,
        })
    }

    /// The `secs` seconds before this trace's t = 0 when the load repeats
    /// every `period_secs` (the trace taken as one period of a cycle and
    /// run backwards), as a trace of its own over `[0, secs)`: its time u
    /// is this trace's time `(u - secs) mod period_secs`. A trace shorter
    /// than the period holds its last value to the period's end.
    pub fn periodic_before(&self, secs: u64, period_secs: u64) -> Trace {
        let period = period_secs.max(1) as f64;
        let end = secs as f64;
        // Where the past's t = 0 falls in the cycle.
        let phase = (-end).rem_euclid(period);
        let at = |u: f64| self.rate_at((u + phase).rem_euclid(period));
        let mut points = vec![(0.0, at(0.0))];
        let one_period: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|&(t, _)| t < period)
            .collect();
        let mut copy = 0.0;
        while copy * period - phase < end {
            for &(t, r) in &one_period {
                let u = copy * period + t - phase;
                if u > 0.0 && u < end {
                    points.push((u, r));
                }
            }
            // A period ends at the trace's value there; the next starts
            // again at its value at 0.
            let u = (copy + 1.0) * period - phase;
            if u > 0.0 && u < end {
                points.push((u, self.rate_at(period)));
                points.push((u, self.rate_at(0.0)));
            }
            copy += 1.0;
        }
        points.push((end, at(end)));
        Trace { points }
    }

    /// The time of the last point, in seconds.
    pub fn last_secs(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.0)
    }

    /// The points, `(t_secs, records_per_sec)`.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The rate at time `t_secs`.
    pub fn rate_at(&self, t_secs: f64) -> f64 {
        let mut cursor = 0;
        self.rate_at_from(t_secs, &mut cursor)
    }

    /// The rate at `t_secs`, searching forward from `cursor` (an index into
    /// the points that the caller keeps between calls): a run asks for times
    /// in increasing order, so this is O(1) per call instead of a search.
    pub fn rate_at_from(&self, t_secs: f64, cursor: &mut usize) -> f64 {
        let points = &self.points;
        if *cursor >= points.len() || points[*cursor].0 > t_secs {
            *cursor = 0;
        }
        // Advance to the last point whose time is <= t.
        while *cursor + 1 < points.len() && points[*cursor + 1].0 <= t_secs {
            *cursor += 1;
        }
        let (t0, r0) = points[*cursor];
        if t_secs < t0 {
            return r0;
        }
        match points.get(*cursor + 1) {
            Some(&(t1, r1)) if t1 > t0 => r0 + (r1 - r0) * (t_secs - t0) / (t1 - t0),
            _ => r0,
        }
    }
}

/// The first column of a row.
/// The last millisecond of the year 9999, the last an ISO-8601 timestamp
/// names: an epoch time past it is a unit mixed up, not a time.
const LAST_EPOCH_MS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// Seconds since the start of the trace.
    Secs(f64),
    /// An absolute time, milliseconds since the Unix epoch.
    EpochMs(i64),
}

impl Stamp {
    fn ms(self) -> i64 {
        match self {
            Stamp::Secs(s) => (s * 1000.0) as i64,
            Stamp::EpochMs(ms) => ms,
        }
    }
}

/// Numbers of at least 1e9 are taken as epoch seconds (2001 onwards), of at
/// least 1e12 as epoch milliseconds; a relative trace never runs that long
/// (1e9 s is 31 years).
fn parse_stamp(field: &str) -> Option<Stamp> {
    if let Ok(n) = field.parse::<f64>() {
        if !n.is_finite() {
            return None;
        }
        return Some(if n >= 1e12 {
            Stamp::EpochMs(n as i64)
        } else if n >= 1e9 {
            Stamp::EpochMs((n * 1000.0) as i64)
        } else {
            Stamp::Secs(n)
        });
    }
    parse_iso8601_ms(field).map(Stamp::EpochMs)
}

/// Parses `YYYY-MM-DD[T ]hh:mm[:ss[.fff]][Z|±hh:mm|±hhmm]` (no zone means
/// UTC, as CloudWatch exports are).
pub(crate) fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    // The days the month has: 2025-02-31 is no date, not 3 March.
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if b[13] != b':' || !(1..=12).contains(&month) || !(1..=month_days).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut i = 16;
    let mut second = 0;
    let mut millis = 0;
    if b.get(i) == Some(&b':') {
        second = num(i + 1, 2)?;
        if second > 60 {
            return None;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = s.get(start..i)?;
            if digits.is_empty() {
                return None;
            }
            let mut frac = 0i64;
            for (k, c) in digits.bytes().take(3).enumerate() {
                frac += i64::from(c - b'0') * [100, 10, 1][k];
            }
            millis = frac;
        }
    }
    let offset_minutes = match s.get(i..)? {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            // `hh:mm` or `hhmm`, an offset RFC 3339 allows: `+25:00`
            // would move every row a day, silently.
            let (h, m) = match zone.len() {
                6 if zone.as_bytes()[3] == b':' => (&zone[1..3], &zone[4..6]),
                5 => (&zone[1..3], &zone[3..5]),
                _ => return None,
            };
            let digits = |part: &str| -> Option<i64> {
                part.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| part.parse().ok())?
            };
            let (h, m) = (digits(h)?, digits(m)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
