//! How long the pure machine waits after a decision, with and without lazy
//! polling: a hold's `next_evaluation_secs` in whole evaluation intervals,
//! at most [`machine::LAZY_MAX_INTERVALS`], never past the end of a KPU
//! limit, and nothing but the interval for a scale decision or with lazy
//! polling off; and which applications the host's skip rule may skip.

use super::*;
use crate::state::KpuLimit;

/// The wait after `decision` at `T0_MS`, from a fresh machine (or `machine`).
fn wait_after(decision: Decision, settings: &Settings, machine: Option<Machine>) -> Duration {
    let mut machine = machine.unwrap_or_else(|| Machine::new(Jitter::new(1)));
    let t = machine.step(
        Observation::Evaluated(Ok(Evaluated {
            state: running(),
            decision,
        })),
        settings,
        T0_MS,
    );
    match t.next {
        Next::Wait(d) => d,
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn hold_asking(secs: u32) -> Decision {
    Decision {
        next_evaluation_secs: Some(secs),
        ..Decision::hold("nothing moves")
    }
}

#[test]
fn a_hold_waits_whole_intervals_up_to_the_cap() {
    let mut settings = Settings::from_config(&test_app(), false);
    settings.evaluation_interval = Duration::from_secs(60);
    settings.lazy_polling = true;
    let secs = |d: Duration| d.as_secs();
    assert_eq!(
        secs(wait_after(Decision::hold("no ask"), &settings, None)),
        60
    );
    assert_eq!(secs(wait_after(hold_asking(250), &settings, None)), 240);
    assert_eq!(secs(wait_after(hold_asking(30), &settings, None)), 60);
    assert_eq!(
        secs(wait_after(hold_asking(86_400), &settings, None)),
        60 * u64::from(machine::LAZY_MAX_INTERVALS)
    );
    // A KPU limit that ends in 90 s: the evaluation 2 intervals on sees it.
    let mut limited = Machine::new(Jitter::new(1));
    limited.record.kpu_limit = Some(KpuLimit {
        refused_kpu: 5,
        at_ms: T0_MS - machine::LIMIT_RETRY_MS + 90_000,
        usable_kpu: None,
    });
    assert_eq!(
        secs(wait_after(hold_asking(600), &settings, Some(limited))),
        120
    );
    // Dry run: a scale decision is not a hold, and repeats every interval.
    let mut dry = settings.clone();
    dry.dry_run = true;
    let scale = Decision {
        action: Action::ScaleTo(4),
        reason: "busy".into(),
        next_evaluation_secs: Some(600),
    };
    assert_eq!(secs(wait_after(scale, &dry, None)), 60);
    // Lazy polling off: every interval, whatever the policy asked.
    settings.lazy_polling = false;
    assert_eq!(secs(wait_after(hold_asking(600), &settings, None)), 60);
}

/// The next evaluation comes an interval after the wake that led to this
/// one, not after its reads and plugin calls ended: evaluations keep their
/// phase (34 ms a tick drifted 49 s a day at 60 s). An evaluation that
/// took an interval or more keeps the whole wait: nothing is hurried.
#[test]
fn the_wait_is_counted_from_the_wake_that_led_to_the_evaluation() {
    let mut settings = Settings::from_config(&test_app(), false);
    settings.evaluation_interval = Duration::from_secs(60);
    settings.lazy_polling = true;
    let after_wake = |taken_ms: i64, decision: Decision| {
        let mut machine = Machine::new(Jitter::new(1));
        let woke = machine.step(Observation::Wake, &settings, T0_MS - taken_ms);
        assert_eq!(woke.next, Next::Run(Command::Evaluate));
        wait_after(decision, &settings, Some(machine))
    };
    let ms = |d: Duration| d.as_millis();
    assert_eq!(ms(after_wake(34, Decision::hold("no ask"))), 59_966);
    assert_eq!(ms(after_wake(34, hold_asking(250))), 239_966);
    assert_eq!(ms(after_wake(59_999, Decision::hold("no ask"))), 1);
    assert_eq!(ms(after_wake(60_000, Decision::hold("no ask"))), 60_000);
    assert_eq!(ms(after_wake(95_000, hold_asking(250))), 240_000);
    // A wall clock stepped back between the wake and the answer.
    assert_eq!(ms(after_wake(-5_000, Decision::hold("no ask"))), 60_000);
}

/// Lazy polling skips the evaluations of an alarm-driven policy that
/// cannot change an alarm's state: safe for CloudWatch, which keeps every
/// datapoint for the next poll, not for a Flink job's metrics, sampled
/// only where an evaluation runs (a skipped interval would be a period
/// with no datapoint for good, and an alarm would fire later than
/// without it). With a metric of `source = "flink"` every interval is
/// evaluated. (A clean CPU of 50 %, neither alarm near: the CloudWatch
/// application skips.)
#[tokio::test(start_paused = true)]
async fn lazy_polling_skips_nothing_when_a_metric_comes_from_flink() {
    let mut evaluated = Vec::new();
    for source in [
        crate::config::MetricSourceKind::Cloudwatch,
        crate::config::MetricSourceKind::Flink,
    ] {
        let mut app = test_app();
        app.policy.plugin = "step".into();
        app.lazy_polling = Some(true);
        app.metrics[0].source = source;
        assert_eq!(
            is_alarm_driven(&app),
            source == crate::config::MetricSourceKind::Cloudwatch
        );
        let target = FakeTarget::new(2, 90);
        let run = Running::launch_app(
            &app,
            target.origin,
            target.clone(),
            constant(50.0),
            Box::new(Doubling),
            Vec::new(),
            |c| c,
        );
        tokio::time::sleep(Duration::from_secs(1200)).await;
        let events = run.stop().await;
        evaluated.push(evaluations(&events).len());
    }
    let (cloudwatch, flink) = (evaluated[0], evaluated[1]);
    assert!(flink >= 20, "every 60 s interval: {evaluated:?}");
    assert!(cloudwatch < flink / 2, "skipped: {evaluated:?}");
}
