//! The policy as the agent calls it: parameters as JSON, an evaluation with
//! CloudWatch-shaped series in, a decision out.

use flinkscale_plugin::testing::{check_declarations, configure};
use flinkscale_plugin::{Action, AppStatus, Application, Series};

use super::*;

/// Start of the first period of every test.
const T0: i64 = 1_767_225_600_000;
/// One 60 s period, in ms.
const P: i64 = 60_000;

fn policy(json: &str) -> RatePolicy {
    configure::<RatePolicy>(json)
        .unwrap_or_else(|error| panic!("configure({json}) failed: {error}"))
}

fn configure_error(json: &str) -> String {
    match configure::<RatePolicy>(json) {
        Ok(policy) => panic!("configure({json}) accepted: {policy:?}"),
        Err(error) => error,
    }
}

fn series(id: &str, points: &[(i64, f64)]) -> Series {
    flinkscale_plugin::testing::series("AWS/KinesisAnalytics", "Average", id, points)
}

/// One period as published: records in per second, busy ms per second and
/// the backlog (Maximum).
#[derive(Clone, Copy)]
struct Row {
    records_in: f64,
    busy_ms: f64,
    backlog: f64,
}

/// An evaluation at `now_ms` of an application at `kpu` (parallelism =
/// KPU) that published `rows`, one per period from `first_ms` on.
fn evaluation(kpu: u32, first_ms: i64, rows: &[Row], now_ms: i64) -> Evaluation {
    let at = |i: usize| first_ms + i as i64 * P;
    let column = |f: fn(&Row) -> f64| -> Vec<(i64, f64)> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| (at(i), f(r)))
            .collect()
    };
    Evaluation {
        now_ms,
        app: Application {
            name: "orders".to_owned(),
            status: AppStatus::Running,
            kpu,
            parallelism: kpu,
            parallelism_per_kpu: 1,
            min_kpu: 1,
            max_kpu: 32,
            version_id: 3,
            last_rescale_ms: None,
            last_update_duration_secs: None,
        },
        metrics: vec![
            series("records_in", &column(|r| r.records_in)),
            series("busy", &column(|r| r.busy_ms)),
            series("backlog", &column(|r| r.backlog)),
        ],
        alarms: Vec::new(),
        signals: Vec::new(),
    }
}

/// 4000 records/s arriving at 2 KPU (capacity 1960/s): the backlog grows
/// by 2040 x 60 = 122400 a period. Visible 60 s after the second period.
fn saturated_step() -> Evaluation {
    saturated_from(T0)
}

/// [`saturated_step`] with its first period starting at `first_ms`.
fn saturated_from(first_ms: i64) -> Evaluation {
    let rows = [
        Row {
            records_in: 1960.0,
            busy_ms: 1000.0,
            backlog: 0.0,
        },
        Row {
            records_in: 1960.0,
            busy_ms: 1000.0,
            backlog: 122_400.0,
        },
    ];
    evaluation(2, first_ms, &rows, first_ms + 3 * P)
}

#[test]
fn defaults_are_valid_and_unknown_parameters_are_not() {
    policy("{}");
    let error = configure_error(r#"{"catch_up_sec": 60}"#);
    assert!(
        error.starts_with("unknown parameter `catch_up_sec`")
            && error.contains("did you mean `catch_up_secs`?"),
        "{error}"
    );
}

#[test]
fn parameters_out_of_range_are_named() {
    for (json, name) in [
        (r#"{"target_utilisation": 1.5}"#, "target_utilisation"),
        (r#"{"scale_out_utilisation": 0.5}"#, "scale_out_utilisation"),
        (r#"{"scale_in_utilisation": 0.9}"#, "scale_in_utilisation"),
        (r#"{"settle_utilisation": 0.8}"#, "settle_utilisation"),
        (r#"{"catch_up_secs": 0}"#, "catch_up_secs"),
        (r#"{"jump_utilisation": 0.9}"#, "jump_utilisation"),
        (
            r#"{"jump_target_utilisation": 0}"#,
            "jump_target_utilisation",
        ),
        (r#"{"jump_catch_up_secs": -1}"#, "jump_catch_up_secs"),
        (r#"{"usl_sigma": 1.0}"#, "usl_sigma"),
        (r#"{"catch_up_knee": 1.0}"#, "catch_up_knee"),
        (r#"{"catch_up_knee": -0.1}"#, "catch_up_knee"),
        (
            r#"{"records_per_subtask_per_sec": -5}"#,
            "records_per_subtask_per_sec",
        ),
        (r#"{"max_lag_secs": "a minute"}"#, "max_lag_secs"),
    ] {
        let error = configure_error(json);
        assert!(error.contains(&format!("`{name}`")), "{json}: {error}");
    }
}

#[test]
fn a_saturated_job_jumps_to_carry_the_input_and_drain_the_backlog() {
    // Input 1960 + 122400 / 60 = 4000/s; backlog now 122400 + 2040 x 60 =
    // 244800, plus 90 s x 4000 while restarting = 604800, drained within
    // 120 s: 9040/s, which needs 12 subtasks (C(11) = 9002, C(12) = 9627).
    // (Utilisation 204 %: a jump only from 3x the capacity here.)
    let decision = policy(r#"{"jump_utilisation": 3}"#)
        .decide(&saturated_step())
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(12), "{}", decision.reason);
    assert!(
        decision.reason.contains("input 4000 records/s"),
        "{}",
        decision.reason
    );
    assert!(!decision.reason.contains("a jump"), "{}", decision.reason);
}

#[test]
fn a_jump_is_sized_for_a_slower_catch_up() {
    // The same 4000/s on 1960/s is at least 1.5x the capacity: the 604800
    // records drain within 600 s, 4000 + 1008 = 5008/s, and 4000 / 0.9 =
    // 4444/s is less: 6 subtasks (C(5) = 4612, C(6) = 5425), not 12.
    let decision = policy("{}").decide(&saturated_step()).expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(6), "{}", decision.reason);
    assert!(
        decision
            .reason
            .contains("a jump (input at least 150 % of capacity)")
            && decision.reason.contains("within 600 s"),
        "{}",
        decision.reason
    );
}

#[test]
fn the_measured_update_time_replaces_the_default() {
    let mut evaluation = saturated_step();
    evaluation.app.last_rescale_ms = Some(T0 - P);
    evaluation.app.last_update_duration_secs = Some(30);
    // 244800 + 30 x 4000 = 364800 within 120 s: 7040/s -> 9 subtasks.
    let decision = policy(r#"{"jump_utilisation": 3}"#)
        .decide(&evaluation)
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(9), "{}", decision.reason);
}

#[test]
fn data_from_before_the_last_rescale_is_not_acted_on() {
    let mut evaluation = saturated_step();
    // The rescale ended during the first period: the second alone is
    // fresh, and its backlog difference spans the restart.
    evaluation.app.last_rescale_ms = Some(T0 + P / 2);
    let decision = policy("{}").decide(&evaluation).expect("decides");
    assert_eq!(decision.action, Action::Hold);
    assert!(
        decision.reason.contains("since the last rescale"),
        "{}",
        decision.reason
    );
}

#[test]
fn nothing_is_decided_while_updating() {
    let mut evaluation = saturated_step();
    evaluation.app.status = AppStatus::Updating;
    let decision = policy("{}").decide(&evaluation).expect("decides");
    assert_eq!(decision.action, Action::Hold);
    assert_eq!(decision.reason, "application is UPDATING, not RUNNING");
}

#[test]
fn a_missing_rate_metric_is_an_error_naming_it() {
    let mut evaluation = saturated_step();
    evaluation.metrics.remove(0);
    let error = policy("{}").decide(&evaluation).expect_err("no records_in");
    assert!(error.contains("`records_in`"), "{error}");
}

/// 1000 records/s on 8 KPU, no backlog, for `minutes` periods ending just
/// before `now`.
fn quiet(minutes: usize, now_ms: i64) -> Evaluation {
    with_peak(minutes, now_ms, None)
}

/// As [`quiet`], but 4000 records/s in the period starting at `peak_ms`.
fn with_peak(minutes: usize, now_ms: i64, peak_ms: Option<i64>) -> Evaluation {
    let first = first_published(minutes, now_ms);
    let rates: Vec<f64> = (0..minutes)
        .map(|i| {
            if Some(first + i as i64 * P) == peak_ms {
                4000.0
            } else {
                1000.0
            }
        })
        .collect();
    published(8, &rates, now_ms)
}

/// The start of the first of `periods` periods whose last ends a period
/// before `now_ms` (so it is just published).
fn first_published(periods: usize, now_ms: i64) -> i64 {
    now_ms - 2 * P - (periods as i64 - 1) * P
}

/// An evaluation at `now_ms` of `kpu` (parallelism = KPU), no backlog,
/// that published the input `rates`, one per period, the last one just
/// published; busy time is what the rate costs at `kpu`.
fn published(kpu: u32, rates: &[f64], now_ms: i64) -> Evaluation {
    let rows: Vec<Row> = rates
        .iter()
        .map(|&r| Row {
            records_in: r,
            busy_ms: 1000.0 * r / plan_capacity(kpu),
            backlog: 0.0,
        })
        .collect();
    evaluation(kpu, first_published(rates.len(), now_ms), &rows, now_ms)
}

fn plan_capacity(q: u32) -> f64 {
    Usl {
        sigma: 0.02,
        kappa: 0.0002,
    }
    .capacity(1000.0, q)
}

#[test]
fn scale_in_waits_for_the_window_then_sizes_for_its_peak() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    // The host fetches ten periods (nine rates); the policy remembers the
    // rest. 80 % of the 30-period window is 24 rates: the 16th evaluation.
    let mut now = T0 + 12 * P;
    let mut first_scale = None;
    for i in 0..30 {
        let decision = rate.decide(&quiet(10, now)).expect("decides");
        if decision.action != Action::Hold {
            // 1000/s at 80 % needs 1250/s: 2 subtasks (1960/s).
            assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
            first_scale = Some(i);
            break;
        }
        now += P;
    }
    assert_eq!(first_scale, Some(15));
    // A fresh instance has not seen the window and holds.
    let decision = policy(r#"{"scale_in_window_secs": 1800}"#)
        .decide(&quiet(10, now))
        .expect("decides");
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
}

/// A job too idle to measure its capacity (400 records/s at 16 KPU, about
/// 3 % busy) is scaled in all the same, sized on the capacity it has at
/// least (400 / 5 %): it used to hold at 16 KPU for as long as the load
/// stayed that low.
#[test]
fn an_idle_job_is_scaled_in_on_the_capacity_it_has_at_least() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    let mut now = T0 + 12 * P;
    let mut scaled = None;
    for _ in 0..30 {
        let evaluation = published(16, &[400.0; 10], now);
        let busy = &evaluation.metrics[1].points;
        assert!(busy.iter().all(|p| p.value < 50.0), "{busy:?}");
        let decision = rate.decide(&evaluation).expect("decides");
        if decision.action != Action::Hold {
            scaled = Some(decision);
            break;
        }
        // Waiting for its window, the hold says so (and may wait
        // quietly), as any hold of the plan.
        assert!(
            decision.reason.contains("capacity taken as at least")
                && !decision.reason.contains("sizes a scale-in only"),
            "{}",
            decision.reason
        );
        now += P;
    }
    let decision = scaled.expect("scaled in within the window");
    let Action::ScaleTo(kpu) = decision.action else {
        panic!("{decision:?}");
    };
    assert!((1..16).contains(&kpu), "{}", decision.reason);
    assert!(
        decision
            .reason
            .contains("capacity taken as at least 8000 records/s: the job was under 5 % busy"),
        "{}",
        decision.reason
    );
}

/// A job with no input at all (its source quiet overnight, no backlog)
/// goes to its min KPU once a whole scale-in window has passed: no
/// capacity could be measured, nor bounded from records it processed, and
/// it held at its size for as long as the input stayed at zero.
#[test]
fn a_job_with_no_input_goes_to_its_min_kpu_after_the_window() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    let mut now = T0 + 12 * P;
    let mut scaled = None;
    for _ in 0..30 {
        let evaluation = published(16, &[0.0; 10], now);
        let decision = rate.decide(&evaluation).expect("decides");
        if decision.action != Action::Hold {
            scaled = Some(decision);
            break;
        }
        now += P;
    }
    let decision = scaled.expect("scaled in within the window");
    assert_eq!(decision.action, Action::ScaleTo(1), "{}", decision.reason);
    assert!(
        decision.reason.starts_with(
            "no input for the whole scale-in window (1800 s) and no backlog: no records processed \
             in the periods read"
        ),
        "{}",
        decision.reason
    );
}

/// A job with no input whose backlog metric is configured but silent (a
/// misspelt dimension) is not taken for idle: the backlog is unknown
/// (the review sent a job under 3000 records/s to 1 KPU so).
#[test]
fn a_silent_backlog_metric_is_no_proof_of_idleness() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    let mut now = T0 + 12 * P;
    for _ in 0..40 {
        let mut evaluation = published(16, &[0.0; 10], now);
        evaluation.metrics[2].points.clear();
        let decision = rate.decide(&evaluation).expect("decides");
        assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
        now += P;
    }
}

/// A job busy but processing nothing (a stalled operator, or a records-in
/// metric that reads 0) has a capacity measured as 0, not an idle one:
/// it is never sent to its min KPU on that (the review reproduced 4 -> 1
/// KPU under 3000 records/s, lag past 3800 s).
#[test]
fn a_job_busy_processing_nothing_is_not_taken_for_idle() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    let mut now = T0 + 12 * P;
    for _ in 0..40 {
        let rows: Vec<Row> = (0..10)
            .map(|_| Row {
                records_in: 0.0,
                busy_ms: 800.0,
                backlog: 0.0,
            })
            .collect();
        let evaluation = evaluation(4, first_published(10, now), &rows, now);
        let decision = rate.decide(&evaluation).expect("decides");
        assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
        assert!(
            !decision.reason.contains("already at the least KPU"),
            "{}",
            decision.reason
        );
        now += P;
    }
}

/// The capacity an idle job has at least sizes a scale-in only: a source
/// stalled with its backlog growing (20 records/s processed at 1 % busy,
/// 2000/s piling up) reads as an input of 2020/s on a bound of 400/s,
/// which must not send the job to its max KPU.
#[test]
fn the_capacity_an_idle_job_has_at_least_never_sizes_a_scale_out() {
    let rows: Vec<Row> = (0..10)
        .map(|k| Row {
            records_in: 20.0,
            busy_ms: 10.0,
            backlog: 120_000.0 * k as f64,
        })
        .collect();
    let decision = policy("{}")
        .decide(&evaluation(4, T0, &rows, T0 + 11 * P))
        .expect("decides");
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    assert!(
        decision.reason.contains(
            "no capacity measured since the last rescale yet (utilisation below 5 %): the 400 \
             records/s it has at least sizes a scale-in only"
        ),
        "{}",
        decision.reason
    );
}

/// A backlog metric configured but without a single datapoint (a consumer
/// group misspelt in its dimensions) is taken as no backlog: the input
/// rate is the processed rate, and the reason says so. It used to leave
/// every period without an input rate: no decision at all.
#[test]
fn a_backlog_metric_without_datapoints_is_no_backlog_and_said() {
    let mut evaluation = saturated_step();
    evaluation.metrics[2].points.clear();
    let decision = policy("{}").decide(&evaluation).expect("decides");
    // Judged on the processed rate as without a backlog metric (at
    // capacity, not rising: carried), not held for want of a rate.
    assert!(
        decision
            .reason
            .starts_with("input 1960 records/s on capacity 1960 records/s (utilisation 100 %)"),
        "{decision:?}"
    );
    assert!(
        decision.reason.contains(
            "(the backlog metric `backlog` has no datapoints: the input rate is taken as the \
             processed rate)"
        ),
        "{}",
        decision.reason
    );
}

/// A `backlog_metric` given is required: misspelt (as it may be in
/// `predictive`'s nested `rate` table, which the host does not check), it
/// is an error naming it, not a backlog silently left out.
#[test]
fn a_backlog_metric_given_but_not_configured_is_an_error() {
    let error = policy(r#"{"backlog_metric": "backlgo"}"#)
        .decide(&saturated_step())
        .expect_err("refused");
    assert!(
        error.contains("no metric `backlgo` is configured for application `orders`")
            && error.contains("parameter `backlog_metric`"),
        "{error}"
    );
    // The default id stays optional.
    let mut evaluation = saturated_step();
    evaluation.metrics.truncate(2);
    policy("{}").decide(&evaluation).expect("decides");
}

#[test]
fn a_peak_inside_the_window_blocks_the_scale_in() {
    let mut rate = policy(r#"{"scale_in_window_secs": 1800}"#);
    let mut now = T0 + 12 * P;
    // One period at 4000/s (58 % of capacity) among the quiet ones.
    let peak = Some(now - 6 * P);
    for _ in 0..25 {
        let decision = rate.decide(&with_peak(10, now, peak)).expect("decides");
        assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
        now += P;
    }
    // Once it has left the window, the scale-in goes ahead.
    let mut decision = rate.decide(&with_peak(10, now, peak)).expect("decides");
    for _ in 0..10 {
        if decision.action != Action::Hold {
            break;
        }
        now += P;
        decision = rate.decide(&with_peak(10, now, peak)).expect("decides");
    }
    assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
}

/// 3000 records/s on 8 KPU (43 % of C(8) = 6950), no backlog, for
/// `minutes` periods ending just before `now`.
fn fallen(minutes: usize, now_ms: i64, last_rescale_ms: Option<i64>) -> Evaluation {
    let mut evaluation = published(8, &vec![3000.0; minutes], now_ms);
    evaluation.app.last_rescale_ms = last_rescale_ms;
    evaluation
}

#[test]
fn a_load_that_fell_must_halve_the_capacity_but_a_catch_up_surplus_need_not() {
    // A whole quiet window at 43 %: above the default 35 %, so no
    // scale-in.
    let mut rate = policy("{}");
    let mut now = T0 + 12 * P;
    for _ in 0..40 {
        let decision = rate.decide(&fallen(10, now, None)).expect("decides");
        assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
        now += P;
    }
    // The same 43 % in the settle span after a scale-out (which was sized
    // to catch up) gives the surplus back: 3750/s needs 4 subtasks (at a
    // settle threshold of 50 %, below the 4000/s peak's 58 %).
    let mut rate = policy(r#"{"settle_utilisation": 0.5}"#);
    let rescaled = T0;
    let mut now = T0 + 12 * P;
    asked_to_catch_up(&mut rate);
    let decision = loop {
        let decision = rate
            .decide(&fallen(10, now, Some(rescaled)))
            .expect("decides");
        if decision.action != Action::Hold || now > T0 + 30 * P {
            break decision;
        }
        now += P;
    };
    assert_eq!(decision.action, Action::ScaleTo(4), "{}", decision.reason);
    // At a threshold of 45 % the same fallen load scales in once the
    // window is seen, to the larger of 3000 / 0.8 = 3750/s and 3000 plus
    // the 90 s restart's 270000 records drained within 150 s, 4800/s: 6
    // subtasks (C(5) = 4612, C(6) = 5425).
    let mut rate = policy(r#"{"scale_in_utilisation": 0.45}"#);
    let mut now = T0 + 12 * P;
    let decision = loop {
        let decision = rate.decide(&fallen(10, now, None)).expect("decides");
        if decision.action != Action::Hold || now > T0 + 52 * P {
            break decision;
        }
        now += P;
    };
    assert_eq!(decision.action, Action::ScaleTo(6), "{}", decision.reason);
    assert!(
        decision.reason.contains("drain the 270000 records"),
        "{}",
        decision.reason
    );
}

#[test]
fn the_default_scale_in_threshold_is_the_lesser_of_35_percent_and_half_the_target() {
    assert_eq!(policy("{}").rules().scale_in_utilisation, 0.35);
    assert_eq!(
        policy(r#"{"target_utilisation": 0.6}"#)
            .rules()
            .scale_in_utilisation,
        0.3
    );
}

/// Lets `rate` see the application at `kpu` (at `now_ms`, with nothing to
/// act on), so that a later evaluation at another KPU is a rescale it saw.
fn saw_kpu(rate: &mut RatePolicy, kpu: u32, now_ms: i64) {
    let mut evaluation = evaluation(kpu, now_ms, &[], now_ms);
    evaluation.app.status = AppStatus::Updating;
    rate.decide(&evaluation).expect("decides");
}

/// Has `rate` ask for a scale-out from 2 KPU to catch up on a backlog (the
/// saturated step), so that a later evaluation at more KPU is that
/// scale-out.
fn asked_to_catch_up(rate: &mut RatePolicy) {
    let decision = rate.decide(&saturated_step()).expect("decides");
    assert!(
        matches!(decision.action, Action::ScaleTo(k) if k > 2),
        "{}",
        decision.reason
    );
}

/// An evaluation at `now_ms` of `kpu` (rescaled at `rescaled_ms`) that
/// published the input `rates`, one per period, the last one ending a
/// period before `now_ms` (the host fetches the last ten).
fn after_rescale(kpu: u32, rates: &[f64], now_ms: i64, rescaled_ms: i64) -> Evaluation {
    let shown = &rates[rates.len().saturating_sub(10)..];
    let mut evaluation = published(kpu, shown, now_ms);
    evaluation.app.last_rescale_ms = Some(rescaled_ms);
    evaluation
}

/// Feeds `rate` one period of `load(i)` after another at `kpu`, from a
/// rescale at T0, and returns the first non-hold decision with the number
/// of periods seen by then, or the last hold after `periods`.
fn run_after_rescale(
    rate: &mut RatePolicy,
    kpu: u32,
    periods: usize,
    load: impl Fn(usize) -> f64,
) -> (usize, Decision) {
    let mut rates = Vec::new();
    let mut last = None;
    for i in 0..periods {
        rates.push(load(i));
        // Period i is [T0 + i P, T0 + (i + 1) P), published one period later.
        let now = T0 + (i as i64 + 2) * P;
        let decision = rate
            .decide(&after_rescale(kpu, &rates, now, T0))
            .expect("decides");
        if decision.action != Action::Hold {
            return (rates.len(), decision);
        }
        last = Some(decision);
    }
    (periods, last.expect("at least one period"))
}

#[test]
fn only_a_scale_out_that_caught_up_on_a_backlog_settles() {
    // 2000/s on 8 KPU (29 %): low enough for either rule. The settle span
    // sizes for 2500/s: 3 subtasks (C(3) = 2877); a whole window also for
    // the restart's 180000 records within 150 s, 3200/s: 4 (C(4) = 3765).
    // After a scale-out this policy sized to catch
    // up on a backlog, the settle span (10 periods) suffices; after a
    // scale-in, a scale-out for saturation alone (its surplus is headroom
    // for a load still rising), or from a fresh instance, the whole
    // 30-period window must pass the rescale.
    let mut caught_up = policy("{}");
    asked_to_catch_up(&mut caught_up);
    let (seen, decision) = run_after_rescale(&mut caught_up, 8, 40, |_| 2000.0);
    assert_eq!(decision.action, Action::ScaleTo(3), "{}", decision.reason);
    assert_eq!(seen, 10);
    let mut down = policy("{}");
    saw_kpu(&mut down, 16, T0 - P);
    let (seen, decision) = run_after_rescale(&mut down, 8, 40, |_| 2000.0);
    assert_eq!(decision.action, Action::ScaleTo(4), "{}", decision.reason);
    assert_eq!(seen, 30);
    // Saturation alone: an input rising to the capacity, no backlog.
    let mut saturated = policy("{}");
    let rising: Vec<Row> = [1720.0, 1800.0, 1880.0, 1960.0]
        .into_iter()
        .map(|records_in| Row {
            records_in,
            busy_ms: 1000.0 * records_in / 1960.0,
            backlog: 0.0,
        })
        .collect();
    let full = evaluation(2, T0, &rising, T0 + 5 * P);
    let asked = saturated.decide(&full).expect("decides");
    assert!(
        matches!(asked.action, Action::ScaleTo(_)),
        "{}",
        asked.reason
    );
    let (seen, _) = run_after_rescale(&mut saturated, 8, 40, |_| 2000.0);
    assert_eq!(seen, 30);
    let (seen, _) = run_after_rescale(&mut policy("{}"), 8, 40, |_| 2000.0);
    assert_eq!(seen, 30);
}

#[test]
fn a_burst_that_ended_is_judged_by_the_level_after_it() {
    // Scaled out to 32 KPU (17598/s) for 7500/s, which drops back to
    // 1500/s after 6 periods. The span's peak (7500/s, 43 %) would size
    // 12 KPU; the level after the drop, once 5 periods show it, sizes
    // 1875/s: 2 subtasks, in one rescale.
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let burst = |i: usize| if i < 6 { 7500.0 } else { 1500.0 };
    let (seen, hold) = run_after_rescale(&mut rate, 32, 10, burst);
    assert_eq!(hold.action, Action::Hold);
    assert!(
        hold.reason.contains("dropped 4 period(s) ago"),
        "{}",
        hold.reason
    );
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let (seen_then, decision) = run_after_rescale(&mut rate, 32, 30, burst);
    assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
    assert_eq!((seen, seen_then), (10, 11));
}

#[test]
fn a_burst_that_recurs_within_a_window_of_the_last_one_is_not_sized_lean() {
    // The burst of the test above ends and its surplus is given back
    // (32 -> 2 KPU, decided at T0 + 12 periods). The saturated step from
    // T0 + 20 periods, within the 30-period scale-in window, is a jump
    // (204 %) but a recurring burst: sized as any scale-out, the 604800
    // records within 120 s, 12 subtasks. From T0 + 45 periods, a window
    // later, it is a jump again: 6 subtasks, as in
    // `a_jump_is_sized_for_a_slower_catch_up`.
    let burst = |i: usize| if i < 6 { 7500.0 } else { 1500.0 };
    for (first, kpu) in [(20, 12), (45, 6)] {
        let mut rate = policy("{}");
        asked_to_catch_up(&mut rate);
        let (_, decision) = run_after_rescale(&mut rate, 32, 30, burst);
        assert_eq!(decision.action, Action::ScaleTo(2), "{}", decision.reason);
        saw_kpu(&mut rate, 2, T0 + 13 * P);
        let decision = rate
            .decide(&saturated_from(T0 + first * P))
            .expect("decides");
        assert_eq!(decision.action, Action::ScaleTo(kpu), "{}", decision.reason);
        assert_eq!(
            decision.reason.contains("so a recurring burst"),
            kpu == 12,
            "{}",
            decision.reason
        );
    }
}

#[test]
fn a_jump_whose_level_holds_gives_back_its_catch_up_share() {
    // The saturated step asks for 6 KPU (4000/s at 90 % asks 5, the
    // catch-up share one more). At 6 KPU the level holds at 4000/s (74 %
    // of C(6) = 5425, above the 60 % settle threshold): once the settle
    // span is seen with no backlog, the catch-up share goes back, to the
    // 5 KPU that carry 4000/s at 90 % (C(5) = 4612).
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let (seen, decision) = run_after_rescale(&mut rate, 6, 30, |_| 4000.0);
    assert_eq!(decision.action, Action::ScaleTo(5), "{}", decision.reason);
    assert_eq!(seen, 10);
    assert!(
        decision.reason.contains("giving back the catch-up share"),
        "{}",
        decision.reason
    );
    // A level still rising, by 15/s a minute (too slowly to read as a
    // rising window), is projected past the restart as a scale-out
    // projects it: 4135/s at the end of the settle span fits 5 KPU at 90
    // % (4151/s), but not once projected past a restart, so the 6 KPU
    // are kept instead of given back to be bought again.
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let (_, decision) = run_after_rescale(&mut rate, 6, 30, |i| 4000.0 + 15.0 * i as f64);
    assert!(
        !decision.reason.contains("giving back the catch-up share"),
        "{}",
        decision.reason
    );
    assert_ne!(decision.action, Action::ScaleTo(5), "{}", decision.reason);
    // At a size the jump did not ask for (7 KPU: 64 %), the surplus is
    // not the share this policy chose: held.
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let (seen, decision) = run_after_rescale(&mut rate, 7, 30, |_| 4000.0);
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    assert_eq!(seen, 30);
    // Under `jump_utilisation` 3 the step (204 %) is no jump: it asks for
    // 12 KPU, and its surplus settles by the settle threshold, at 80 %
    // (5000/s: 6 KPU), not as a jump's catch-up share.
    let mut rate = policy(r#"{"jump_utilisation": 3}"#);
    asked_to_catch_up(&mut rate);
    let (_, decision) = run_after_rescale(&mut rate, 12, 30, |_| 4000.0);
    assert_eq!(decision.action, Action::ScaleTo(6), "{}", decision.reason);
    assert!(
        !decision.reason.contains("giving back the catch-up share"),
        "{}",
        decision.reason
    );
}

#[test]
fn a_settle_span_that_rises_again_holds() {
    // Scaled out to 8 KPU (6950/s); the input drops from 6000/s to
    // 1000/s and climbs 125/s a period: low, but coming back.
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let saw = |i: usize| {
        if i < 5 {
            6000.0
        } else {
            1000.0 + 125.0 * (i - 5) as f64
        }
    };
    let (seen, decision) = run_after_rescale(&mut rate, 8, 25, saw);
    assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    assert_eq!(seen, 25);
    assert!(
        decision.reason.contains("rising again") || decision.reason.contains("within bounds"),
        "{}",
        decision.reason
    );
}

#[test]
fn a_load_still_falling_after_a_scale_out_is_judged_on_the_last_settle_span() {
    // Scaled out to 32 KPU (17598/s) for 10000/s that decays by 4 % a
    // period: no period drops by a quarter, and the peak since the rescale
    // stays at 10000/s (57 %). The sliding span's peak falls below half the
    // capacity (8799/s) once the span starts at period 4 (8493/s; period 3
    // is 8847/s), 14 periods in: 8493/s at 80 % needs 10617/s, 14
    // subtasks (C(14) = 10799). (At a settle threshold of 50 %.)
    let mut rate = policy(r#"{"settle_utilisation": 0.5}"#);
    asked_to_catch_up(&mut rate);
    let decay = |i: usize| 10_000.0 * 0.96f64.powi(i as i32);
    let (seen, decision) = run_after_rescale(&mut rate, 32, 30, decay);
    assert_eq!(decision.action, Action::ScaleTo(14), "{}", decision.reason);
    assert_eq!(seen, 14);
}

/// The load of the test above decaying by 4 % a period.
fn decay(i: usize) -> f64 {
    10_000.0 * 0.96f64.powi(i as i32)
}

/// A policy at the default settle threshold that scaled out to 32 KPU to
/// catch up and then asked to give the surplus back on the decay: the
/// periods it saw and the KPU it asked for.
fn settled_once() -> (RatePolicy, usize, u32) {
    let mut rate = policy("{}");
    asked_to_catch_up(&mut rate);
    let (seen, decision) = run_after_rescale(&mut rate, 32, 30, decay);
    let Action::ScaleTo(first) = decision.action else {
        panic!("no settle scale-in: {}", decision.reason)
    };
    assert!(first < 32, "{}", decision.reason);
    (rate, seen, first)
}

#[test]
fn a_load_still_falling_after_a_settle_scale_in_is_followed_down_a_span_at_a_time() {
    // The decay above, at the default settle threshold (60 %): the first
    // scale-in gives the catch-up surplus back; the load goes on falling,
    // and the span after that scale-in is judged as a settle span too, so
    // the next step down comes a settle span later, not a whole 30-period
    // window (by when this load would sit below the 35 % threshold of the
    // size it stopped at).
    let (mut rate, seen, first) = settled_once();
    // The scale-in completes a period later; the load goes on decaying.
    let rescaled = T0 + (seen as i64 + 3) * P;
    let mut rates = Vec::new();
    let mut next = None;
    for j in 0..30 {
        rates.push(decay(seen + 3 + j));
        let now = rescaled + (j as i64 + 2) * P;
        let decision = rate
            .decide(&after_rescale(first, &rates, now, rescaled))
            .expect("decides");
        if decision.action != Action::Hold {
            next = Some((j + 1, decision));
            break;
        }
    }
    let (periods, decision) = next.expect("a second scale-in within the window");
    let Action::ScaleTo(second) = decision.action else {
        unreachable!()
    };
    assert!(second < first, "{first} -> {second}: {}", decision.reason);
    assert!(periods < 20, "after {periods} periods: {}", decision.reason);
    assert!(
        decision.reason.contains("below 60 %"),
        "{}",
        decision.reason
    );
    // A scale-in this policy did not ask for is still judged on a whole
    // window (see only_a_scale_out_that_caught_up_on_a_backlog_settles).
}

#[test]
fn a_settle_scale_in_not_carried_out_before_the_next_decision_does_not_chain() {
    // The settle scale-in of the test above, not carried out: the next
    // evaluation finds the application UPDATING at the same size (another
    // writer's update), which holds; that writer's update ends at the size
    // asked. No longer this policy's ask, so the span after it is not a
    // settle span.
    let (mut rate, seen, first) = settled_once();
    let rates: Vec<f64> = (0..=seen).map(decay).collect();
    let again = T0 + (seen as i64 + 2) * P;
    let mut updating = after_rescale(32, &rates, again, T0);
    updating.app.status = AppStatus::Updating;
    let held = rate.decide(&updating).expect("decides");
    assert_eq!(held.action, Action::Hold, "{}", held.reason);
    let rescaled = again + P;
    let mut rates = Vec::new();
    for j in 0..20 {
        rates.push(decay(seen + 3 + j));
        let now = rescaled + (j as i64 + 2) * P;
        let decision = rate
            .decide(&after_rescale(first, &rates, now, rescaled))
            .expect("decides");
        assert_eq!(
            decision.action,
            Action::Hold,
            "after {j} periods: {}",
            decision.reason
        );
    }
}

#[test]
fn the_default_settle_threshold_stays_below_the_target() {
    // 0.6, or three quarters of a lower target: a target of 0.6 (which
    // the 0.6 default would equal) configures.
    let rate = policy(r#"{"target_utilisation": 0.6}"#);
    assert!((rate.rules.settle_utilisation - 0.45).abs() < 1e-9);
    let rate = policy("{}");
    assert!((rate.rules.settle_utilisation - 0.6).abs() < 1e-9);
}

#[test]
fn declarations_are_well_formed() {
    assert_eq!(check_declarations::<RatePolicy>(), Ok(()));
}

/// When nothing moves (1000/s on 8 KPU: 14 % utilisation, a whole window
/// with a 4000/s peak, above the scale-in threshold) the policy asks to be
/// evaluated one period later; while its scale-in window is incomplete, or
/// when the job is saturated, it asks for nothing (the regular interval).
#[test]
fn a_quiet_hold_asks_for_one_period_and_a_moving_one_does_not() {
    let now = T0 + 12 * P;
    let peak = Some(now - 6 * P);
    let whole = policy(r#"{"scale_in_window_secs": 600}"#)
        .decide(&with_peak(10, now, peak))
        .expect("decides");
    assert_eq!(whole.action, Action::Hold, "{}", whole.reason);
    assert_eq!(whole.next_evaluation_secs, Some(60), "{}", whole.reason);
    let unseen = policy(r#"{"scale_in_window_secs": 1800}"#)
        .decide(&with_peak(10, now, peak))
        .expect("decides");
    assert_eq!(unseen.next_evaluation_secs, None, "{}", unseen.reason);
    let busy = policy("{}").decide(&saturated_step()).expect("decides");
    assert_eq!(busy.next_evaluation_secs, None, "{}", busy.reason);
}

/// The series are joined per period start whatever their order: periods
/// sorted and one per start, a series missing a period leaves its field
/// empty, and a period a series shows twice keeps the later value (as the
/// map this join once was did).
#[test]
fn series_are_joined_per_period_in_any_order() {
    let mut e = evaluation(2, T0, &[], T0 + 10 * P);
    e.metrics = vec![
        series(
            "records_in",
            &[(T0 + 2 * P, 30.0), (T0, 10.0), (T0 + 2 * P, 31.0)],
        ),
        series("busy", &[(T0 + P, 500.0), (T0, 2000.0)]),
        series("backlog", &[(T0 + 2 * P, -5.0), (T0 + P, 7.0)]),
    ];
    let ids = policy("{}").metric_ids().clone();
    let observed = Observed::from_evaluation(&e, &ids).expect("the metrics are there");
    let period = |start_ms, records_in, utilisation, backlog| observe::Period {
        start_ms,
        records_in,
        utilisation,
        backlog,
    };
    assert_eq!(
        observed.periods,
        vec![
            period(T0, Some(10.0), Some(1.0), None),
            period(T0 + P, None, Some(0.5), Some(7.0)),
            period(T0 + 2 * P, Some(31.0), None, Some(0.0)),
        ]
    );
    assert_eq!(observed.period_ms, P);
    assert!(observed.has_backlog);
}

/// A scale-in window or settle span shorter than one period (which
/// `configure` accepts: any whole number of seconds) is the latest period,
/// not a trap: the policy decides at every evaluation.
#[test]
fn windows_shorter_than_a_period_are_the_latest_period() {
    for secs in [0, 1, 30, 59] {
        for json in [
            format!(r#"{{"scale_in_window_secs": {secs}}}"#),
            format!(r#"{{"settle_secs": {secs}}}"#),
        ] {
            let mut rate = policy(&json);
            let mut now = T0 + 12 * P;
            for _ in 0..5 {
                rate.decide(&quiet(10, now))
                    .unwrap_or_else(|e| panic!("{json}: {e}"));
                now += P;
            }
        }
    }
}

/// Two periods of a job saturated at 10 subtasks of a law three times the
/// default's (sigma 0.06, kappa 0.0006, 1000 records/s per subtask):
/// 6273.53 records/s processed, the backlog up by 12000 records in a
/// period, so the input is 6473.53 records/s. With `update_secs` 20 the
/// backlog now (24000) plus the 20 s restart drained in 120 s needs 7752
/// records/s, less than the input at 80 %: 8092 records/s.
const SATURATED_AT_TEN: [Row; 2] = [
    Row {
        records_in: 6_273.525_721_455_458,
        busy_ms: 1000.0,
        backlog: 0.0,
    },
    Row {
        records_in: 6_273.525_721_455_458,
        busy_ms: 1000.0,
        backlog: 12_000.0,
    },
];

/// The same job seen at 2 subtasks `busy_ms` busy (1884.66 records/s of
/// capacity) at two evaluations: periods count toward the fit only from
/// when the policy first saw the parallelism, so only the second's do.
fn seen_at_two(rate: &mut RatePolicy, busy_ms: f64) {
    let at_two = [Row {
        records_in: 1.884_658_876_743_309 * busy_ms,
        busy_ms,
        backlog: 0.0,
    }; 3];
    for (first_ms, now_ms) in [(T0 - 3 * P, T0 + P), (T0 + 2 * P, T0 + 6 * P)] {
        let decision = rate
            .decide(&evaluation(2, first_ms, &at_two, now_ms))
            .expect("decides");
        assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
    }
}

/// The evaluation at 10 subtasks, past the trend window (15 minutes) of
/// the rates at 2, with the last rescale the host reports.
fn saturated_at_ten(last_rescale_ms: Option<i64>) -> Evaluation {
    let mut at_ten = evaluation(10, T0 + 26 * P, &SATURATED_AT_TEN, T0 + 29 * P);
    at_ten.app.last_rescale_ms = last_rescale_ms;
    at_ten
}

#[test]
fn a_law_heavier_than_configured_is_fitted_from_two_sizes() {
    // The law fitted through both capacities is the job's own: 8092
    // records/s take 18 subtasks (C(17) = 8007, C(18) = 8168). The
    // configured law, anchored at 10 (752 records/s per subtask), would
    // say 14 (8116 records/s), where the job reaches 7411.
    let mut rate = policy(r#"{"update_secs": 20}"#);
    seen_at_two(&mut rate, 900.0);
    let decision = rate
        .decide(&saturated_at_ten(Some(T0 + 25 * P)))
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(18), "{}", decision.reason);
    assert!(
        decision.reason.contains(
            "law fitted to the capacities measured at parallelism 2, 10: sigma 0.060, kappa 0.00060"
        ),
        "{}",
        decision.reason
    );
}

#[test]
fn a_capacity_not_known_to_be_at_its_size_is_not_fitted() {
    // The configured law's 14, with no fit: when it is turned off; when
    // the capacity at 2 was measured longer ago than `usl_fit_secs`; when
    // it was measured less than 30 % busy; when another writer set the
    // size (no rescale reported, or only one from before the evaluation
    // at 2), so the first evaluation at 10 counts none of its periods.
    let rescaled = Some(T0 + 25 * P);
    for (params, busy_ms, last_rescale_ms) in [
        (r#"{"update_secs": 20, "usl_fit_secs": 0}"#, 900.0, rescaled),
        (
            r#"{"update_secs": 20, "usl_fit_secs": 60}"#,
            900.0,
            rescaled,
        ),
        (r#"{"update_secs": 20}"#, 200.0, rescaled),
        (r#"{"update_secs": 20}"#, 900.0, None),
        (r#"{"update_secs": 20}"#, 900.0, Some(T0 - 10 * P)),
    ] {
        let mut rate = policy(params);
        seen_at_two(&mut rate, busy_ms);
        let decision = rate
            .decide(&saturated_at_ten(last_rescale_ms))
            .expect("decides");
        let case = format!("{params}, busy {busy_ms}, rescaled {last_rescale_ms:?}");
        assert_eq!(
            decision.action,
            Action::ScaleTo(14),
            "{case}: {}",
            decision.reason
        );
        assert!(
            !decision.reason.contains("law fitted"),
            "{case}: {}",
            decision.reason
        );
    }
    // Two subtasks per KPU now: the same parallelism runs on other
    // resources, and every capacity is forgotten (14 subtasks, 7 KPU).
    let mut rate = policy(r#"{"update_secs": 20}"#);
    seen_at_two(&mut rate, 900.0);
    let mut at_ten = saturated_at_ten(rescaled);
    at_ten.app.kpu = 5;
    at_ten.app.parallelism_per_kpu = 2;
    let decision = rate.decide(&at_ten).expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(7), "{}", decision.reason);
    assert!(
        !decision.reason.contains("law fitted"),
        "{}",
        decision.reason
    );
}

#[test]
fn a_capacity_from_periods_before_the_size_was_seen_is_not_fitted() {
    // Only the first evaluation at 2, whose periods all started before
    // the policy saw that size (they may be of another one): no fit.
    let mut rate = policy(r#"{"update_secs": 20}"#);
    let at_two = [Row {
        records_in: 1000.0,
        busy_ms: 900.0,
        backlog: 0.0,
    }; 3];
    rate.decide(&evaluation(2, T0 - 3 * P, &at_two, T0 + P))
        .expect("decides");
    // The first evaluation at 10 is after the rescale, so its periods
    // count, but one size is no fit: the configured law's 14.
    let decision = rate
        .decide(&saturated_at_ten(Some(T0 + 25 * P)))
        .expect("decides");
    assert_eq!(decision.action, Action::ScaleTo(14), "{}", decision.reason);
    assert!(
        !decision.reason.contains("law fitted"),
        "{}",
        decision.reason
    );
}
