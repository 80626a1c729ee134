//! The arithmetic on plain numbers, and the interpreter as the agent calls
//! it, on the series the simulator and the emulator publish for an MSK and
//! a Kinesis source.

use flinkscale_plugin::testing::{check_declarations, configure};

use super::*;

fn series(id: &str, points: &[(i64, f64)]) -> Series {
    flinkscale_plugin::testing::series("AWS/Kafka", "Maximum", id, points)
}

fn app() -> Application {
    flinkscale_plugin::testing::application(2, 1, 8)
}

fn interpreter(json: &str) -> BacklogSeconds {
    configure::<BacklogSeconds>(json).unwrap_or_else(|error| panic!("{json} refused: {error}"))
}

fn signals(json: &str, metrics: &[Series]) -> Vec<(String, f64)> {
    interpreter(json)
        .interpret(0, &app(), metrics)
        .unwrap()
        .into_iter()
        .map(|signal| (signal.name, signal.value))
        .collect()
}

#[test]
fn drain_arithmetic() {
    let both = |behind, to_drain| Drain {
        seconds_behind: behind,
        seconds_to_drain: to_drain,
    };
    assert_eq!(
        drain(6000.0, Some(100.0), Some(40.0)),
        both(Some(60.0), Some(100.0))
    );
    assert_eq!(
        drain(0.0, Some(100.0), Some(400.0)),
        both(Some(0.0), Some(0.0))
    );
    assert_eq!(
        drain(6000.0, Some(100.0), Some(100.0)),
        both(Some(60.0), None),
        "not draining"
    );
    assert_eq!(
        drain(6000.0, Some(100.0), Some(150.0)),
        both(Some(60.0), None),
        "growing"
    );
    assert_eq!(
        drain(6000.0, Some(0.0), Some(0.0)),
        both(None, None),
        "nothing processed"
    );
    assert_eq!(drain(6000.0, None, None), both(None, None));
}

const MSK: &str = r#"{"backlog_metric": "lag", "processing_rate_metric": "processed"}"#;

#[test]
fn msk_sum_offset_lag_with_the_input_rate_from_the_backlog_growth() {
    // The backlog shrank by 1200 records in 60 s while 100/s were
    // processed: 80/s arrived, so 4800 records drain at 20/s.
    let metrics = [
        series("lag", &[(0, 6000.0), (60_000, 4800.0)]),
        series("processed", &[(0, 100.0), (60_000, 100.0)]),
    ];
    assert_eq!(
        signals(MSK, &metrics),
        vec![
            ("seconds_behind".to_owned(), 48.0),
            ("seconds_to_drain".to_owned(), 240.0)
        ]
    );
    // Growing: behind, but never drains at this capacity.
    let metrics = [
        series("lag", &[(0, 4800.0), (60_000, 6000.0)]),
        series("processed", &[(60_000, 100.0)]),
    ];
    assert_eq!(
        signals(MSK, &metrics),
        vec![("seconds_behind".to_owned(), 60.0)]
    );
}

#[test]
fn max_offset_lag_with_a_multiplier_and_an_input_rate_metric() {
    let json = r#"{"backlog_metric": "lag", "backlog_multiplier": 4,
        "processing_rate_metric": "processed", "input_rate_metric": "arriving",
        "signal_prefix": "orders_"}"#;
    let metrics = [
        series("lag", &[(60_000, 1500.0)]),
        series("processed", &[(60_000, 100.0)]),
        series("arriving", &[(60_000, 50.0)]),
    ];
    assert_eq!(
        signals(json, &metrics),
        vec![
            ("orders_seconds_behind".to_owned(), 60.0),
            ("orders_seconds_to_drain".to_owned(), 120.0)
        ]
    );
}

#[test]
fn kinesis_iterator_age_is_already_time() {
    let json = r#"{"backlog_metric": "age", "backlog_unit": "milliseconds",
        "processing_rate_metric": "processed", "input_rate_metric": "arriving"}"#;
    let metrics = [
        series("age", &[(60_000, 30_000.0)]),
        series("processed", &[(60_000, 100.0)]),
        series("arriving", &[(60_000, 40.0)]),
    ];
    // 30 s of 40/s = 1200 records, draining at 60/s.
    assert_eq!(
        signals(json, &metrics),
        vec![
            ("seconds_behind".to_owned(), 30.0),
            ("seconds_to_drain".to_owned(), 20.0)
        ]
    );
}

/// An age with nothing arriving (a stalled job: nothing processed
/// either) is behind, not drained: `seconds_to_drain` is absent, as in
/// records mode, not 0 from an estimate of 60 s x 0/s = 0 records.
#[test]
fn a_stalled_age_is_not_read_as_drained() {
    let json = r#"{"backlog_metric": "age", "backlog_unit": "milliseconds",
        "processing_rate_metric": "processed", "input_rate_metric": "arriving"}"#;
    for processed in [0.0, 100.0] {
        let metrics = [
            series("age", &[(60_000, 60_000.0)]),
            series("processed", &[(60_000, processed)]),
            series("arriving", &[(60_000, 0.0)]),
        ];
        assert_eq!(
            signals(json, &metrics),
            vec![("seconds_behind".to_owned(), 60.0)],
            "processing {processed}/s"
        );
    }
    // No age: nothing behind, drained, whatever arrives.
    let metrics = [
        series("age", &[(60_000, 0.0)]),
        series("processed", &[(60_000, 0.0)]),
        series("arriving", &[(60_000, 0.0)]),
    ];
    assert_eq!(
        signals(json, &metrics),
        vec![
            ("seconds_behind".to_owned(), 0.0),
            ("seconds_to_drain".to_owned(), 0.0)
        ]
    );
}

#[test]
fn missing_data_gives_no_signal_instead_of_a_made_up_one() {
    assert_eq!(
        signals(MSK, &[series("lag", &[]), series("processed", &[])]),
        vec![]
    );
    // UPDATING: the job's own metrics are missing, the source's are not.
    let metrics = [series("lag", &[(60_000, 600.0)]), series("processed", &[])];
    assert_eq!(signals(MSK, &metrics), vec![]);
}

#[test]
fn an_unconfigured_metric_is_an_error_naming_the_parameter() {
    let error = interpreter(MSK)
        .interpret(0, &app(), &[series("lag", &[])])
        .unwrap_err();
    assert_eq!(
        error,
        "parameter `processing_rate_metric` names the metric `processed`, which the \
         application does not configure (configured metrics: lag)"
    );
}

#[test]
fn configure_refuses_bad_parameters() {
    let refuse = |json: &str| configure::<BacklogSeconds>(json).unwrap_err();
    assert!(refuse("{}").contains("`backlog_metric`"));
    assert!(refuse(r#"{"backlog_metric": "lag"}"#).contains("`processing_rate_metric`"));
    assert!(
        refuse(r#"{"backlog_metric": "", "processing_rate_metric": "p"}"#).contains("empty string")
    );
    assert!(
        refuse(
            r#"{"backlog_metric": "l", "processing_rate_metric": "p", "backlog_unit": "bytes"}"#
        )
        .contains(r#"must be "records" or "milliseconds", found "bytes""#)
    );
    assert!(
        refuse(
            r#"{"backlog_metric": "l", "processing_rate_metric": "p", "backlog_multiplier": 0}"#
        )
        .contains("positive number")
    );
    assert!(refuse(r#"{"backlog_metrc": "l"}"#).contains("did you mean `backlog_metric`?"));
}

#[test]
fn declarations_are_well_formed() {
    assert_eq!(check_declarations::<BacklogSeconds>(), Ok(()));
}
