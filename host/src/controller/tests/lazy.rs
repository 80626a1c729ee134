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
    let t = step_evaluated(&mut machine, running(), decision, settings, T0_MS);
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

/// [`Doubling`], saying it reads nothing but the alarms' states and the
/// application, as the host's built-in `step` does.
struct StepLike;

impl Decide for StepLike {
    fn decide(&mut self, e: &Evaluation) -> Result<Decision, crate::controller::PluginFailure> {
        Doubling.decide(e)
    }
    fn label(&self) -> String {
        "step-like (test)".into()
    }
    fn reads_only_alarm_states(&self) -> bool {
        true
    }
}

/// Lazy polling skips the evaluations of an alarm-driven policy that
/// cannot change an alarm's state, and only those of a policy the host
/// knows reads nothing else: safe for CloudWatch, which keeps every
/// datapoint for the next poll, not for a Flink job's metrics, sampled
/// only where an evaluation runs (a skipped interval would be a period
/// with no datapoint for good, and an alarm would fire later than
/// without it). With a metric of `source = "flink"`, with an alarm on
/// metric math that calls `FILL` (which gives a period not published yet
/// a value its datapoint later replaces), or with a policy that does not
/// say it reads only alarm states (a file standing in for `step` may read
/// anything), every interval is evaluated. (A clean CPU of 50 %, neither
/// alarm near: only the first skips.)
#[tokio::test(start_paused = true)]
async fn lazy_polling_skips_only_what_cannot_change_a_decision() {
    let mut evaluated = Vec::new();
    for case in ["cloudwatch", "flink", "fill", "unknown policy"] {
        let mut app = test_app();
        app.policy.plugin = "step".into();
        app.lazy_polling = Some(true);
        if case == "flink" {
            app.metrics[0].source = crate::config::MetricSourceKind::Flink;
        }
        if case == "fill" {
            let mut filled = app.metrics[0].clone();
            filled.id = "filled".into();
            filled.namespace = None;
            filled.metric_name = None;
            filled.dimensions.clear();
            filled.statistic = None;
            filled.expression = Some("FILL(cpu, 0)".into());
            app.metrics.push(filled);
            for alarm in &mut app.alarms {
                alarm.metric = Some("filled".into());
            }
        }
        assert_eq!(
            is_alarm_driven(&app),
            matches!(case, "cloudwatch" | "unknown policy"),
            "{case}"
        );
        let policy: Box<dyn Decide> = if case == "unknown policy" {
            Box::new(Doubling)
        } else {
            Box::new(StepLike)
        };
        let target = FakeTarget::new(2, 90);
        let run = Running::launch_app(
            &app,
            target.origin,
            target.clone(),
            constant(50.0),
            policy,
            Vec::new(),
            |c| c,
        );
        tokio::time::sleep(Duration::from_secs(1200)).await;
        let events = run.stop().await;
        evaluated.push(evaluations(&events).len());
    }
    let every = evaluated[1..].iter().min().copied().unwrap_or(0);
    assert!(every >= 20, "every 60 s interval: {evaluated:?}");
    assert!(evaluated[0] < every / 2, "skipped: {evaluated:?}");
}
