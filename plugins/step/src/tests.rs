//! Every row of the step table, through the policy as the agent calls it
//! (parameters as JSON, an evaluation in, a decision out), plus the
//! arithmetic on its own.

use flinkscale_plugin::testing::{check_declarations, configure};
use flinkscale_plugin::{Action, Alarm, AppStatus, Application};

use super::*;

/// The policy as the agent configures it (declarations included).
fn policy(json: &str) -> StepPolicy {
    configure::<StepPolicy>(json)
        .unwrap_or_else(|error| panic!("configure({json}) failed: {error}"))
}

fn configure_error(json: &str) -> String {
    match configure::<StepPolicy>(json) {
        Ok(policy) => panic!("configure({json}) accepted: {policy:?}"),
        Err(error) => error,
    }
}

const MULTIPLY: &str = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in"}"#;
const ADD: &str = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add",
    "scale_out_factor": 3, "scale_in_factor": 1}"#;

fn evaluation(
    kpu: u32,
    min_kpu: u32,
    max_kpu: u32,
    out: AlarmState,
    r#in: AlarmState,
) -> Evaluation {
    let alarm = |name: &str, state| Alarm {
        name: name.to_owned(),
        state,
        since_ms: 0,
    };
    Evaluation {
        now_ms: 1_700_000_000_000,
        app: Application {
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
        },
        metrics: Vec::new(),
        alarms: vec![alarm("out", out), alarm("in", r#in)],
        signals: Vec::new(),
    }
}

fn decide(json: &str, kpu: u32, min: u32, max: u32, out: AlarmState, r#in: AlarmState) -> Decision {
    policy(json)
        .decide(&evaluation(kpu, min, max, out, r#in))
        .expect("decide succeeds")
}

use AlarmState::{Alarm as A, InsufficientData as I, Ok as O};

#[test]
fn multiply_scales_out_by_the_factor() {
    let decision = decide(MULTIPLY, 4, 1, 16, A, O);
    assert_eq!(decision.action, Action::ScaleTo(8));
    assert_eq!(decision.reason, "`out` is in ALARM: 4 KPU x 2 = 8 KPU");
}

#[test]
fn multiply_scale_out_is_clamped_to_max() {
    let decision = decide(MULTIPLY, 5, 1, 8, A, O);
    assert_eq!(decision.action, Action::ScaleTo(8));
    assert_eq!(
        decision.reason,
        "`out` is in ALARM: 5 KPU x 2 = 10 KPU, clamped to max KPU 8"
    );
}

#[test]
fn multiply_scales_in_with_floor_division() {
    let decision = decide(MULTIPLY, 7, 1, 16, O, A);
    assert_eq!(decision.action, Action::ScaleTo(3));
    assert_eq!(decision.reason, "`in` is in ALARM: 7 KPU / 2 = 3 KPU");
}

#[test]
fn multiply_scale_in_is_clamped_to_min() {
    let decision = decide(MULTIPLY, 5, 4, 16, O, A);
    assert_eq!(decision.action, Action::ScaleTo(4));
    assert_eq!(
        decision.reason,
        "`in` is in ALARM: 5 KPU / 2 = 2 KPU, clamped to min KPU 4"
    );
}

#[test]
fn add_scales_out_by_the_factor() {
    let decision = decide(ADD, 4, 1, 16, A, O);
    assert_eq!(decision.action, Action::ScaleTo(7));
    assert_eq!(decision.reason, "`out` is in ALARM: 4 KPU + 3 = 7 KPU");
}

#[test]
fn add_scale_out_is_clamped_to_max() {
    let decision = decide(ADD, 4, 1, 6, A, O);
    assert_eq!(decision.action, Action::ScaleTo(6));
    assert_eq!(
        decision.reason,
        "`out` is in ALARM: 4 KPU + 3 = 7 KPU, clamped to max KPU 6"
    );
}

#[test]
fn add_scales_in_by_the_factor() {
    let decision = decide(ADD, 4, 1, 16, O, A);
    assert_eq!(decision.action, Action::ScaleTo(3));
    assert_eq!(decision.reason, "`in` is in ALARM: 4 KPU - 1 = 3 KPU");
}

#[test]
fn add_scale_in_is_clamped_to_min() {
    let json = r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "operation": "add", "scale_in_factor": 5}"#;
    let decision = decide(json, 7, 3, 16, O, A);
    assert_eq!(decision.action, Action::ScaleTo(3));
    assert_eq!(
        decision.reason,
        "`in` is in ALARM: 7 KPU - 5 = 2 KPU, clamped to min KPU 3"
    );
}

#[test]
fn at_max_holds() {
    let decision = decide(MULTIPLY, 8, 1, 8, A, O);
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(decision.reason, "already at max KPU (8)");
}

#[test]
fn above_max_holds_rather_than_scaling_in_on_a_scale_out_alarm() {
    let decision = decide(ADD, 10, 1, 8, A, O);
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(decision.reason, "already at max KPU (8)");
}

#[test]
fn at_min_holds() {
    let decision = decide(MULTIPLY, 2, 2, 8, O, A);
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(decision.reason, "already at min KPU (2)");
}

#[test]
fn scale_in_never_goes_below_one_kpu_even_with_min_zero() {
    let decision = decide(MULTIPLY, 1, 0, 8, O, A);
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(decision.reason, "already at min KPU (1)");
    let decision = decide(ADD, 2, 0, 8, O, A);
    assert_eq!(decision.action, Action::ScaleTo(1));
}

#[test]
fn scale_out_wins_when_both_alarms_fire() {
    let decision = decide(MULTIPLY, 4, 1, 16, A, A);
    assert_eq!(decision.action, Action::ScaleTo(8));
    assert_eq!(
        decision.reason,
        "`out` is in ALARM: 4 KPU x 2 = 8 KPU (scale-in `in` is also in ALARM; scale-out wins)"
    );
}

#[test]
fn both_alarms_firing_at_max_holds_rather_than_scaling_in() {
    let decision = decide(MULTIPLY, 16, 1, 16, A, A);
    assert_eq!(decision.action, Action::Hold);
    assert!(
        decision.reason.starts_with("already at max KPU (16)"),
        "{}",
        decision.reason
    );
}

#[test]
fn no_alarm_in_alarm_holds_and_names_both_states() {
    let decision = decide(MULTIPLY, 4, 1, 16, O, I);
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(
        decision.reason,
        "no alarm in ALARM (scale-out `out`: OK, scale-in `in`: INSUFFICIENT_DATA)"
    );
}

#[test]
fn a_missing_alarm_is_an_error_naming_it() {
    let mut evaluation = evaluation(4, 1, 16, A, O);
    evaluation.alarms.retain(|alarm| alarm.name != "in");
    let error = policy(MULTIPLY).decide(&evaluation).unwrap_err();
    assert_eq!(
        error,
        "no alarm `in` is configured for application `orders` (configured: out)"
    );
}

#[test]
fn defaults_are_multiply_by_two() {
    let policy = policy(MULTIPLY);
    assert_eq!(policy.operation, Operation::Multiply);
    assert_eq!((policy.scale_out_factor, policy.scale_in_factor), (2, 2));
}

#[test]
fn alarm_ids_are_required() {
    assert_eq!(
        configure_error(r#"{"scale_in_alarm": "in"}"#),
        "missing required parameter `scale_out_alarm` (a string)"
    );
    assert_eq!(
        configure_error(r#"{"scale_out_alarm": "out"}"#),
        "missing required parameter `scale_in_alarm` (a string)"
    );
}

#[test]
fn an_empty_alarm_id_is_refused() {
    assert_eq!(
        configure_error(r#"{"scale_out_alarm": "", "scale_in_alarm": "in"}"#),
        "parameter `scale_out_alarm` must name an alarm, found the empty string"
    );
}

#[test]
fn the_same_alarm_for_both_directions_is_refused() {
    assert!(
        configure_error(r#"{"scale_out_alarm": "x", "scale_in_alarm": "x"}"#)
            .contains("must name different alarms")
    );
}

#[test]
fn unknown_parameters_are_refused_with_a_suggestion() {
    let error = configure_error(
        r#"{"scale_out_alarm": "out", "scale_in_alarm": "in", "scale_out_factr": 3}"#,
    );
    assert!(
        error.starts_with("unknown parameter `scale_out_factr`"),
        "{error}"
    );
    assert!(
        error.contains("did you mean `scale_out_factor`?"),
        "{error}"
    );
}

#[test]
fn an_unknown_operation_is_refused() {
    assert_eq!(
        configure_error(
            r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "operation": "Multiply/Divide"}"#
        ),
        "parameter `operation` must be \"multiply\" or \"add\", found \"Multiply/Divide\""
    );
}

#[test]
fn an_operation_that_is_not_a_string_is_refused_as_the_getters_refuse_it() {
    // The Python and JavaScript steps give this text word for word
    // (host/tests/polyglot.rs).
    assert_eq!(
        configure_error(r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "operation": 2}"#),
        "parameter `operation` must be a string, found the number 2"
    );
}

#[test]
fn factors_that_never_change_capacity_are_refused() {
    let error =
        configure_error(r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "scale_in_factor": 1}"#);
    assert!(
        error.starts_with(
            "parameter `scale_in_factor` must be at least 2 with operation \"multiply\""
        ),
        "{error}"
    );
    let error = configure_error(
        r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "operation": "add", "scale_out_factor": 0}"#,
    );
    assert!(
        error.starts_with("parameter `scale_out_factor` must be at least 1 with operation \"add\""),
        "{error}"
    );
}

#[test]
fn fractional_factors_are_refused_and_integral_floats_accepted() {
    let error = configure_error(
        r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "scale_out_factor": 1.5}"#,
    );
    assert!(
        error.starts_with("parameter `scale_out_factor` must be a whole number"),
        "{error}"
    );
    let policy =
        policy(r#"{"scale_out_alarm": "o", "scale_in_alarm": "i", "scale_out_factor": 3.0}"#);
    assert_eq!(policy.scale_out_factor, 3);
}

#[test]
fn arithmetic_saturates_instead_of_overflowing() {
    let step = arithmetic::step(
        Operation::Multiply,
        Direction::Out,
        2,
        u32::MAX - 1,
        1,
        u32::MAX,
    );
    assert_eq!(
        step,
        Step::To {
            kpu: u32::MAX,
            arithmetic: format!("{} KPU x 2 = {} KPU", u32::MAX - 1, u32::MAX),
        }
    );
}

#[test]
fn arithmetic_tolerates_max_below_min() {
    // `flinkscale validate` refuses such a configuration; the policy must
    // still not panic if handed one.
    assert_eq!(
        arithmetic::step(Operation::Add, Direction::Out, 1, 3, 5, 2),
        Step::To {
            kpu: 5,
            arithmetic: "3 KPU + 1 = 4 KPU, clamped to min KPU 5".to_owned(),
        }
    );
}

#[test]
fn below_min_scale_out_is_raised_to_min() {
    let decision = decide(ADD, 1, 5, 16, A, O);
    assert_eq!(decision.action, Action::ScaleTo(5));
    assert_eq!(
        decision.reason,
        "`out` is in ALARM: 1 KPU + 3 = 4 KPU, clamped to min KPU 5"
    );
}

#[test]
fn declarations_are_well_formed() {
    assert_eq!(check_declarations::<StepPolicy>(), Ok(()));
}

#[test]
fn push_u32_writes_what_format_writes() {
    for n in [
        0,
        1,
        9,
        10,
        42,
        99,
        100,
        4_096,
        65_535,
        1_000_000_000,
        u32::MAX - 1,
        u32::MAX,
    ] {
        let mut out = String::from("x");
        arithmetic::push_u32(&mut out, n);
        assert_eq!(out, format!("x{n}"));
    }
}
