//! The policy as the agent calls it: parameters as JSON, an evaluation with
//! CloudWatch-shaped series in, a decision out.

use flinkscale_plugin::testing::{check_declarations, configure};
use flinkscale_plugin::{Action, AppStatus, Application, Datapoint, Series};

use super::*;

const T0: i64 = 1_767_225_600_000;
const P: i64 = 60_000;

fn policy(json: &str) -> TargetTracking {
    configure::<TargetTracking>(json)
        .unwrap_or_else(|error| panic!("configure({json}) failed: {error}"))
}

fn configure_error(json: &str) -> String {
    match configure::<TargetTracking>(json) {
        Ok(policy) => panic!("configure({json}) accepted: {policy:?}"),
        Err(error) => error,
    }
}

/// An evaluation at `now_ms` of 4 KPU whose metric `id` read `values`, one
/// per period, the last one ending 60 s before `now_ms`.
fn evaluation(id: &str, values: &[f64], now_ms: i64) -> Evaluation {
    let first = now_ms - 2 * P - (values.len() as i64 - 1) * P;
    Evaluation {
        now_ms,
        app: Application {
            name: "orders".to_owned(),
            status: AppStatus::Running,
            kpu: 4,
            parallelism: 4,
            parallelism_per_kpu: 1,
            min_kpu: 1,
            max_kpu: 32,
            version_id: 3,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        },
        metrics: vec![Series {
            id: id.to_owned(),
            namespace: "AWS/KinesisAnalytics".to_owned(),
            metric_name: id.to_owned(),
            statistic: "Average".to_owned(),
            period_secs: 60,
            points: values
                .iter()
                .enumerate()
                .map(|(i, &value)| Datapoint {
                    timestamp_ms: first + i as i64 * P,
                    value,
                })
                .collect(),
        }],
        alarms: Vec::new(),
        signals: Vec::new(),
    }
}

#[test]
fn parameters_are_checked() {
    policy("{}");
    assert!(configure_error(r#"{"target": 0.7}"#).starts_with("unknown parameter `target`"));
    assert!(configure_error(r#"{"target_utilisation": 1.0}"#).contains("`target_utilisation`"));
    assert!(configure_error(r#"{"tolerance": 0.4}"#).contains("`tolerance`"));
}

#[test]
fn busy_above_the_band_scales_out_at_once() {
    // 90 % of speedup(4) = 3.77 at 70 % needs 4.84: 6 subtasks.
    let decision = policy("{}")
        .decide(&evaluation("busy", &[500.0, 900.0], T0))
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(6), "{}", decision.reason);
    assert!(
        decision.reason.starts_with("busy time 90 %"),
        "{}",
        decision.reason
    );
}

#[test]
fn cpu_is_the_fallback_without_busy_time() {
    let decision = policy("{}")
        .decide(&evaluation("cpu", &[90.0], T0))
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(6), "{}", decision.reason);
    assert!(decision.reason.starts_with("CPU"), "{}", decision.reason);
}

#[test]
fn the_warm_up_after_a_rescale_is_ignored() {
    let mut evaluation = evaluation("busy", &[1000.0, 1000.0, 1000.0], T0);
    // The rescale ended 4 minutes before the oldest period: all three
    // periods fall in the 5-minute warm-up, busy draining the backlog.
    evaluation.app.last_rescale_ms = Some(evaluation.metrics[0].points[0].timestamp_ms - 60_000);
    let decision = policy("{}").decide(&evaluation).expect("decides");
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    assert!(
        decision.reason.contains("since the last rescale"),
        "{}",
        decision.reason
    );
    // Without a warm-up the same data scales out.
    let decision = policy(r#"{"warmup_secs": 0}"#)
        .decide(&evaluation)
        .expect("decides");
    assert!(
        matches!(decision.action, Action::ScaleTo(_)),
        "{}",
        decision.reason
    );
}

#[test]
fn scale_in_only_after_the_whole_delay_below_the_band() {
    let mut tracking = policy(r#"{"scale_in_delay_secs": 600}"#);
    let mut now = T0;
    // Ten periods at 30 %: one evaluation sees them all, which is the
    // whole delay at 80 % coverage only from the eighth period on.
    let low = [300.0; 10];
    let decision = tracking
        .decide(&evaluation("busy", &low[..5], now))
        .expect("decides");
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    now += 5 * P;
    let decision = tracking
        .decide(&evaluation("busy", &low, now))
        .expect("decides");
    // speedup(4) = 3.77 x 30 % / 70 % = 1.61: 2 subtasks.
    assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
}

#[test]
fn nothing_is_decided_while_updating() {
    let mut evaluation = evaluation("busy", &[1000.0], T0);
    evaluation.app.status = AppStatus::Updating;
    let decision = policy("{}").decide(&evaluation).expect("decides");
    assert_eq!(decision.action, Action::Hold);
}

#[test]
fn without_a_utilisation_metric_it_is_an_error() {
    let error = policy("{}")
        .decide(&evaluation("lag", &[1.0], T0))
        .expect_err("no busy, no cpu");
    assert!(
        error.contains("`busy`") && error.contains("`cpu`"),
        "{error}"
    );
}

#[test]
fn declarations_are_well_formed() {
    assert_eq!(check_declarations::<TargetTracking>(), Ok(()));
}

/// A scale-in delay shorter than one period (which `configure` accepts:
/// any whole number of seconds) is the latest period, not a trap.
#[test]
fn a_scale_in_delay_shorter_than_a_period_is_the_latest_period() {
    for delay in [0, 1, 30, 59] {
        let mut tracking = policy(&format!(r#"{{"scale_in_delay_secs": {delay}}}"#));
        let decision = tracking
            .decide(&evaluation("busy", &[300.0; 3], T0))
            .expect("decides");
        assert_eq!(
            decision.action,
            Action::ScaleTo(2),
            "{delay}: {}",
            decision.reason
        );
    }
}
