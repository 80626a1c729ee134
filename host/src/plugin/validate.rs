//! The host's check of a policy's decision, before anyone acts on it.
//!
//! A plugin is untrusted: whatever it answers, the agent never sets a
//! capacity of zero or one outside the configured `[min_kpu, max_kpu]`,
//! never asks to be woken up every millisecond or never, and never writes a
//! reason with terminal escapes into the log. Every adjustment is said in the
//! reason, so the record shows what the plugin asked for and what was done.
//!
//! Two kinds of answer are told apart. An answer the contract does not
//! allow ([`contract_violation`]: `scale-to(0)`, no reason) is invalid
//! output: the agent counts it as a plugin failure of class `invalid`
//! (toward quarantine, as a trap is) and `flinkscale plugin check` fails
//! on it. A valid answer the application's bounds adjust (a target outside
//! `[min_kpu, max_kpu]`, the current size) is no failure: the host clamps
//! it and says so ([`validate_decision`]).
//! Pure: plain values in, plain values out.

use crate::model::{Action, Application, Decision};
use crate::target::Words;

/// Longest reason kept from a plugin, in bytes (before the host's own
/// notes are appended).
pub const MAX_REASON_BYTES: usize = 512;
/// Shortest delay a policy may ask for before its next evaluation.
pub const MIN_NEXT_EVALUATION_SECS: u32 = 1;
/// Longest delay a policy may ask for before its next evaluation (a day).
pub const MAX_NEXT_EVALUATION_SECS: u32 = 86_400;

/// Why a policy's `decision` is outside the contract, or `None` when it is
/// within: `scale-to(0)` (a capacity is at least 1 KPU, whatever the
/// bounds) and a reason that is empty once made safe for the log (the
/// contract asks why, for people). The agent and `flinkscale plugin check`
/// both judge an answer by this one rule.
pub fn contract_violation(decision: &Decision) -> Option<String> {
    if decision.action == Action::ScaleTo(0) {
        return Some("scale-to(0): a capacity is at least 1 KPU".to_owned());
    }
    if sanitize_text(&decision.reason, MAX_REASON_BYTES)
        .trim()
        .is_empty()
    {
        return Some("an empty reason (the contract asks why, for the log)".to_owned());
    }
    None
}

/// Checks a policy's `decision` for `app` and returns what the host will do.
/// An answer [`contract_violation`] refuses should not reach it (the agent
/// fails the call instead); if one does, it is made safe all the same:
/// `scale-to(0)` becomes `hold`; a target outside `[min_kpu, max_kpu]` is
/// clamped; a target equal to the current KPU becomes `hold`; the reason is
/// cut to [`MAX_REASON_BYTES`] and rid of control characters; the next
/// evaluation delay is clamped to
/// [`MIN_NEXT_EVALUATION_SECS`]`..=`[`MAX_NEXT_EVALUATION_SECS`].
pub fn validate_decision(decision: Decision, app: &Application) -> Decision {
    validate_decision_in(decision, app, Words::Msf)
}

/// [`validate_decision`], its notes worded in `words` (a Flink job's say
/// `parallelism 4` and `max_parallelism` where an MSF application's say
/// `4 KPU` and `max_kpu`), and the plugin's own reason too: the contract's
/// KPU read as the target's unit ([`Words::plugin_text`]), so that the
/// log, `explain`, `status` and the history say what the user knows. The
/// decision is the same whatever the words.
pub fn validate_decision_in(decision: Decision, app: &Application, words: Words) -> Decision {
    let (min_key, max_key) = words.bounds();
    let mut reason = sanitize_text(&words.plugin_text(&decision.reason), MAX_REASON_BYTES);
    if reason.trim().is_empty() {
        reason = "no reason given".to_owned();
    }
    let mut note = |text: String| {
        reason.push_str("; ");
        reason.push_str(&text);
    };
    let action = match decision.action {
        Action::Hold => Action::Hold,
        Action::ScaleTo(0) => {
            note("refused scale-to(0): capacity cannot be zero, holding".to_owned());
            Action::Hold
        }
        Action::ScaleTo(_) if app.min_kpu > app.max_kpu || app.max_kpu == 0 => {
            // Configuration validation rejects both; never act on them anyway.
            note(format!(
                "refused to scale: {min_key} {} exceeds {max_key} {}, holding",
                app.min_kpu, app.max_kpu
            ));
            Action::Hold
        }
        Action::ScaleTo(asked) => {
            let low = app.min_kpu.max(1);
            let target = asked.clamp(low, app.max_kpu.max(low));
            if target != asked {
                let bound = if target > asked { min_key } else { max_key };
                note(match words {
                    Words::Msf => format!("clamped from {asked} to {target} KPU ({bound})"),
                    Words::Flink => {
                        format!("clamped from parallelism {asked} to {target} ({bound})")
                    }
                });
            }
            if target == app.kpu {
                note(format!("already at {}, holding", words.capacity(target)));
                Action::Hold
            } else {
                Action::ScaleTo(target)
            }
        }
    };
    let next_evaluation_secs = decision
        .next_evaluation_secs
        .map(|secs| secs.clamp(MIN_NEXT_EVALUATION_SECS, MAX_NEXT_EVALUATION_SECS));
    Decision {
        action,
        reason,
        next_evaluation_secs,
    }
}

/// Makes plugin text safe for one log line: control characters (newlines,
/// escapes) become spaces and the text is cut to at most `max_bytes` bytes
/// on a character boundary, ending in `…` when cut.
pub fn sanitize_text(text: &str, max_bytes: usize) -> String {
    const ELLIPSIS: char = '…';
    // The usual text (ASCII, printable, short, no trailing blank) is
    // already clean: copied whole rather than character by character.
    if text.len() <= max_bytes
        && text.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !text.ends_with(' ')
    {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.trim_end().chars() {
        let c = if c.is_control() || is_invisible_format(c) {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > max_bytes {
            while out.len() + ELLIPSIS.len_utf8() > max_bytes {
                if out.pop().is_none() {
                    return out;
                }
            }
            out.push(ELLIPSIS);
            return out;
        }
        out.push(c);
    }
    out
}

/// Whether `c` is a character that changes how a line reads without
/// showing: a line or paragraph separator (a new line to a log viewer), a
/// bidirectional override or isolate (text shown in another order than it
/// is), a zero-width space or joiner, a byte-order mark, a soft hyphen.
/// A plugin's text could fake or hide log lines with them.
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::AppStatus;

    fn app(kpu: u32, min_kpu: u32, max_kpu: u32) -> Application {
        Application {
            name: "orders".to_owned(),
            status: AppStatus::Running,
            kpu,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            min_kpu,
            max_kpu,
            version_id: 7,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        }
    }

    fn scale_to(kpu: u32) -> Decision {
        Decision {
            action: Action::ScaleTo(kpu),
            reason: "asked".to_owned(),
            next_evaluation_secs: None,
        }
    }

    #[test]
    fn only_answers_outside_the_contract_are_violations() {
        assert!(contract_violation(&scale_to(0)).is_some_and(|why| why.contains("scale-to(0)")));
        let silent = Decision {
            reason: " \n\u{7}".to_owned(),
            ..scale_to(3)
        };
        assert!(contract_violation(&silent).is_some_and(|why| why.contains("empty reason")));
        // Within the contract, whatever the bounds make of it.
        assert_eq!(contract_violation(&scale_to(1_000_000)), None);
        assert_eq!(contract_violation(&scale_to(1)), None);
        assert_eq!(contract_violation(&Decision::hold("quiet")), None);
    }

    #[test]
    fn a_valid_scale_passes_unchanged() {
        let d = validate_decision(scale_to(4), &app(2, 1, 10));
        assert_eq!(d, scale_to(4));
    }

    #[test]
    fn scale_to_zero_is_refused() {
        let d = validate_decision(scale_to(0), &app(2, 1, 10));
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.starts_with("asked; "), "{}", d.reason);
        assert!(d.reason.contains("refused scale-to(0)"), "{}", d.reason);
    }

    #[test]
    fn scale_to_zero_is_refused_even_when_min_kpu_is_zero() {
        let d = validate_decision(scale_to(0), &app(2, 0, 10));
        assert_eq!(d.action, Action::Hold);
    }

    #[test]
    fn a_target_above_max_is_clamped_and_said() {
        let d = validate_decision(scale_to(1_000_000), &app(2, 1, 10));
        assert_eq!(d.action, Action::ScaleTo(10));
        assert!(
            d.reason
                .contains("clamped from 1000000 to 10 KPU (max_kpu)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_flink_jobs_notes_speak_of_parallelism_and_its_keys() {
        let flink = |d, a| validate_decision_in(d, &a, Words::Flink);
        let d = flink(scale_to(1_000_000), app(2, 1, 10));
        assert_eq!(d.action, Action::ScaleTo(10), "the same decision as MSF's");
        assert_eq!(
            d.reason,
            "asked; clamped from parallelism 1000000 to 10 (max_parallelism)"
        );
        let d = flink(scale_to(1), app(4, 3, 10));
        assert_eq!(
            d.reason,
            "asked; clamped from parallelism 1 to 3 (min_parallelism)"
        );
        let d = flink(scale_to(12), app(10, 1, 10));
        assert_eq!(d.action, Action::Hold);
        assert_eq!(
            d.reason,
            "asked; clamped from parallelism 12 to 10 (max_parallelism); already at parallelism 10, holding"
        );
        let d = flink(scale_to(4), app(2, 8, 3));
        assert_eq!(
            d.reason,
            "asked; refused to scale: min_parallelism 8 exceeds max_parallelism 3, holding"
        );
        // The plugin's reason, in the contract's KPU, reads in parallelism.
        let step = Decision {
            action: Action::ScaleTo(16),
            reason: "`out` is in ALARM: 8 KPU x 2 = 16 KPU".to_owned(),
            next_evaluation_secs: None,
        };
        let d = flink(step.clone(), app(8, 1, 12));
        assert_eq!(
            d.reason,
            "`out` is in ALARM: parallelism 8 x 2 = parallelism 16; clamped from parallelism 16 to 12 (max_parallelism)"
        );
        let d = validate_decision_in(step, &app(8, 1, 12), Words::Msf);
        assert_eq!(
            d.reason,
            "`out` is in ALARM: 8 KPU x 2 = 16 KPU; clamped from 16 to 12 KPU (max_kpu)"
        );
        // MSF's words are the ones validate_decision always used.
        let d = validate_decision_in(scale_to(12), &app(10, 1, 10), Words::Msf);
        assert_eq!(
            d.reason,
            "asked; clamped from 12 to 10 KPU (max_kpu); already at 10 KPU, holding"
        );
    }

    #[test]
    fn a_target_below_min_is_clamped_and_said() {
        let d = validate_decision(scale_to(1), &app(4, 3, 10));
        assert_eq!(d.action, Action::ScaleTo(3));
        assert!(
            d.reason.contains("clamped from 1 to 3 KPU (min_kpu)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_target_clamped_to_the_current_kpu_holds() {
        let d = validate_decision(scale_to(50), &app(10, 1, 10));
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("clamped from 50 to 10"), "{}", d.reason);
        assert!(d.reason.contains("already at 10 KPU"), "{}", d.reason);
    }

    #[test]
    fn scaling_to_the_current_kpu_holds() {
        let d = validate_decision(scale_to(2), &app(2, 1, 10));
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("already at 2 KPU"), "{}", d.reason);
    }

    #[test]
    fn inverted_bounds_never_scale() {
        let d = validate_decision(scale_to(4), &app(2, 8, 3));
        assert_eq!(d.action, Action::Hold);
        assert!(
            d.reason.contains("min_kpu 8 exceeds max_kpu 3"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn hold_passes_unchanged() {
        let hold = Decision::hold("quiet");
        assert_eq!(validate_decision(hold.clone(), &app(2, 1, 10)), hold);
    }

    #[test]
    fn a_long_reason_is_cut() {
        let mut d = Decision::hold("é".repeat(2000));
        d = validate_decision(d, &app(2, 1, 10));
        assert!(d.reason.len() <= MAX_REASON_BYTES, "{}", d.reason.len());
        assert!(d.reason.ends_with('…'));
    }

    #[test]
    fn control_characters_are_removed_from_the_reason() {
        let d = validate_decision(
            Decision::hold("line one\nline two\u{1b}[31m red\r"),
            &app(2, 1, 10),
        );
        assert_eq!(d.reason, "line one line two [31m red");
    }

    #[test]
    fn an_empty_reason_is_replaced() {
        let d = validate_decision(Decision::hold("  "), &app(2, 1, 10));
        assert_eq!(d.reason, "no reason given");
    }

    #[test]
    fn next_evaluation_is_clamped_to_a_sane_range() {
        let mut d = Decision::hold("soon");
        d.next_evaluation_secs = Some(0);
        assert_eq!(
            validate_decision(d.clone(), &app(2, 1, 10)).next_evaluation_secs,
            Some(1)
        );
        d.next_evaluation_secs = Some(u32::MAX);
        assert_eq!(
            validate_decision(d.clone(), &app(2, 1, 10)).next_evaluation_secs,
            Some(86_400)
        );
        d.next_evaluation_secs = Some(120);
        assert_eq!(
            validate_decision(d, &app(2, 1, 10)).next_evaluation_secs,
            Some(120)
        );
    }

    #[test]
    fn sanitize_cuts_on_a_character_boundary() {
        assert_eq!(sanitize_text("abcdef", 4), "a…");
        assert_eq!(sanitize_text("abc", 4), "abc");
        assert_eq!(sanitize_text("ééé", 5), "é…");
    }

    /// Characters that change how a line reads without showing (a line
    /// separator, a right-to-left override, a zero-width space) become
    /// spaces, as control characters do; other text stays.
    #[test]
    fn sanitize_blanks_invisible_format_characters() {
        assert_eq!(
            sanitize_text("ok\u{2028}fake line \u{202E}desrever\u{200B}.", 64),
            "ok fake line  desrever ."
        );
        assert_eq!(
            sanitize_text("scale to 4 KPU: lag ↑ 12 %", 64),
            "scale to 4 KPU: lag ↑ 12 %"
        );
    }
}
