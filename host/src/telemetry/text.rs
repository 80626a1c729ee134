//! Text for people, shared by everything that prints what the agent saw
//! and did (`once`, `explain`, `status`, the agent's HTTP pages): times as
//! ISO 8601, numbers without noise, and strings that come from outside
//! (a plugin's reason, an AWS error) kept on one line.

/// `ms` since the epoch as an ISO 8601 UTC time (`2026-12-01T18:00:00Z`,
/// or with three digits of milliseconds, `2026-12-01T18:00:00.940Z`, so
/// that times line up in a column), or the bare number when it is out of
/// the representable range.
pub fn iso(ms: i64) -> String {
    // Whole seconds, then the milliseconds: the formatter drops a
    // fraction's trailing zeros (`.94Z`).
    let millis = ms.rem_euclid(1000);
    let Some(seconds) = ms.checked_sub(millis) else {
        return ms.to_string();
    };
    let Ok(text) = aws_smithy_types::DateTime::from_millis(seconds)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
    else {
        return ms.to_string();
    };
    match text.strip_suffix('Z') {
        Some(whole) if millis != 0 => format!("{whole}.{millis:03}Z"),
        _ => text,
    }
}

/// A value for people: at most three decimals, no trailing zeros (from
/// 1e15 on, four significant digits and an exponent).
pub fn number(v: f64) -> String {
    // From 1e15 on, three decimals would be a wall of digits (an
    // interpreter may well give 1e308): scientific notation instead.
    if v.abs() >= 1e15 {
        let text = format!("{v:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exponent}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// `text` on one line: control characters (line breaks, terminal escapes)
/// written as escapes, so that each record stays one line and a plugin's
/// reason or a peer's message cannot drive the reader's terminal.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every run of white space (line breaks included) made one
/// space: a multi-line cause or description read on one line.
pub fn spaced(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_their_noise_and_lines_their_controls() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.12345), "0.123");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(one_line("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(
            spaced("expected=[\n    0x0,\n    0x61,\n] actual"),
            "expected=[ 0x0, 0x61, ] actual"
        );
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        // Three digits of milliseconds whenever there are any, as `explain`
        // prints them in a column (the formatter alone gave `.94Z`).
        assert_eq!(iso(1_796_162_301_940), "2026-12-01T21:58:21.940Z");
        assert_eq!(iso(1_796_162_301_900), "2026-12-01T21:58:21.900Z");
        assert_eq!(iso(1_796_162_301_007), "2026-12-01T21:58:21.007Z");
        assert_eq!(iso(1_796_162_301_000), "2026-12-01T21:58:21Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso(i64::MAX), i64::MAX.to_string());
    }
}
