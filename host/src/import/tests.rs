//! The importer on plain values: the template evaluator's functions, the
//! parameter file shapes, and the cases the binary tests do not reach
//! (alarms on two different series, a value only the loader refuses).

use std::path::Path;

use serde_json::json;

use super::alarms;
use super::cfn::{self, ImportError, ParameterValues, Source, metric_id};
use super::template::{ResolveError, Stack};
use crate::metrics::alarms::DescribedAlarm;

const V2: &str = cfn::REFERENCE_TEMPLATE;

fn given(pairs: &[(&str, &str)]) -> ParameterValues {
    let mut values = ParameterValues::new();
    for (k, v) in pairs {
        values.add_assignment(&format!("{k}={v}")).unwrap();
    }
    values
}

const REQUIRED: &[(&str, &str)] = &[
    ("AmazonManagedFlinkApplicationName", "app"),
    ("ScaleOperation", "Multiply/Divide"),
];

#[test]
fn metric_ids_are_cloudwatch_query_ids() {
    assert_eq!(
        metric_id("containerCPUUtilization"),
        "container_cpu_utilization"
    );
    assert_eq!(metric_id("millisBehindLatest"), "millis_behind_latest");
    assert_eq!(metric_id("MaxOffsetLag"), "max_offset_lag");
    assert_eq!(
        metric_id("GetRecords.IteratorAgeMilliseconds"),
        "get_records_iterator_age_milliseconds"
    );
    assert_eq!(metric_id("99th latency"), "metric_99th_latency");
    assert_eq!(metric_id("..."), "metric");
}

/// A stack of `root` with no parameter values.
fn bare_stack(root: &serde_json::Value) -> Stack<'_> {
    Stack {
        root,
        values: Default::default(),
        stand_ins: Default::default(),
        evaluating: Default::default(),
        known: Default::default(),
        depth: Default::default(),
        placeholders: Default::default(),
    }
}

/// A template is the user's file: conditions that refer to themselves, or
/// nest deeper than any template needs, are refused by name instead of
/// recursing until the stack overflows.
#[test]
fn conditions_in_a_cycle_or_nested_too_deep_are_refused() {
    let mut conditions = serde_json::Map::new();
    conditions.insert("Loop".into(), json!({"Fn::Not": [{"Condition": "Loop"}]}));
    conditions.insert("A".into(), json!({"Condition": "B"}));
    conditions.insert("B".into(), json!({"Fn::And": [{"Condition": "A"}, true]}));
    for i in 0..100_000 {
        conditions.insert(format!("C{i}"), json!({"Condition": format!("C{}", i + 1)}));
    }
    conditions.insert("C100000".into(), json!(true));
    let root = json!({"Parameters": {}, "Conditions": conditions});
    let stack = bare_stack(&root);
    let refused = |name: &str| match stack.resolve(&json!({"Condition": name})) {
        Err(ResolveError::Unsupported(message)) => message,
        other => panic!("{name}: {other:?}"),
    };
    assert!(
        refused("Loop").contains("\"Loop\" refers to itself"),
        "{}",
        refused("Loop")
    );
    assert!(refused("A").contains("A -> B -> A"), "{}", refused("A"));
    assert!(
        refused("C0").contains("more than 64 deep"),
        "{}",
        refused("C0")
    );
    // The stack is usable again after a refusal.
    conditions_resolve_after_a_refusal(&stack);
}

/// Within both older bounds (a chain of 64 conditions, 60 nested
/// functions each, as JSON's nesting limit allows) the recursion still
/// ran about 7,800 frames deep and overflowed the importing thread's
/// 2 MiB stack (the audit's template): one bound on the whole depth
/// refuses it by name, on a stack of that size.
#[test]
fn expressions_nested_deep_across_conditions_are_refused_within_a_small_stack() {
    let mut conditions = serde_json::Map::new();
    for i in 0..63 {
        let mut expr = json!({"Condition": format!("C{}", i + 1)});
        for _ in 0..60 {
            expr = json!({"Fn::Not": [expr]});
        }
        conditions.insert(format!("C{i}"), expr);
    }
    conditions.insert("C63".into(), json!(true));
    let root = json!({"Parameters": {}, "Conditions": conditions});
    let message = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let stack = bare_stack(&root);
            let refused = stack.resolve(&json!({"Condition": "C0"}));
            // Usable again after the refusal: a shallow condition resolves.
            assert_eq!(stack.resolve(&json!({"Condition": "C63"})), Ok(json!(true)));
            assert_eq!(stack.depth.get(), 0);
            refused
        })
        .expect("a thread")
        .join()
        .expect("no stack overflow");
    match message {
        Err(ResolveError::Unsupported(message)) => assert!(
            message.contains("nest more than 256 deep, conditions included"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A condition naming the next one twice, 40 levels deep (a 2 KB
/// template), was evaluated 2^40 times: each condition is evaluated once.
#[test]
fn a_condition_named_many_times_is_evaluated_once() {
    let mut conditions = serde_json::Map::new();
    for i in 0..40 {
        let next = format!("C{}", i + 1);
        conditions.insert(
            format!("C{i}"),
            json!({"Fn::Or": [{"Condition": next}, {"Condition": next}]}),
        );
    }
    conditions.insert("C40".into(), json!({"Fn::Equals": ["a", "b"]}));
    let root = json!({"Parameters": {}, "Conditions": conditions});
    let (sent, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stack = bare_stack(&root);
        let _ = sent.send(stack.resolve(&json!({"Condition": "C0"})));
    });
    let resolved = answer
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("resolved within 20 s (2^40 evaluations would take for ever)");
    assert_eq!(resolved, Ok(json!(false)));
}

fn conditions_resolve_after_a_refusal(stack: &Stack<'_>) {
    assert_eq!(
        stack.resolve(&json!({"Condition": "C99990"})),
        Ok(json!(true))
    );
}

#[test]
fn intrinsic_functions_resolve_with_the_stack_values() {
    let root = json!({
        "Parameters": {"Name": {"Type": "String"}, "Unused": {"Type": "String"}},
        "Conditions": {
            "IsA": {"Fn::Equals": [{"Ref": "Name"}, "a"]},
            "NotA": {"Fn::Not": [{"Condition": "IsA"}]},
            "Both": {"Fn::And": [{"Condition": "IsA"}, {"Fn::Equals": ["1", 1]}]}
        }
    });
    let stack = Stack {
        root: &root,
        values: [("Name".to_owned(), "a".to_owned())].into(),
        stand_ins: Default::default(),
        evaluating: Default::default(),
        known: Default::default(),
        depth: Default::default(),
        placeholders: Default::default(),
    };
    let r = |v: serde_json::Value| stack.resolve(&v);
    assert_eq!(
        r(json!({"Fn::Sub": "x-${Name}-${AWS::Region}"})),
        Ok(json!("x-a-${AWS::Region}"))
    );
    assert_eq!(
        r(json!({"Fn::Sub": ["${Name}${Extra}", {"Extra": {"Ref": "Name"}}]})),
        Ok(json!("aa"))
    );
    assert_eq!(r(json!({"Fn::If": ["NotA", 1, 2]})), Ok(json!(2)));
    assert_eq!(r(json!({"Condition": "Both"})), Ok(json!(true)));
    assert_eq!(
        r(json!({"Fn::Join": ["-", [{"Ref": "Name"}, 5, {"Fn::GetAtt": ["Fn", "Arn"]}]]})),
        Ok(json!("a-5-${Fn.Arn}"))
    );
    // A parameter without a value is an error only where it is used.
    assert_eq!(
        r(json!({"Ref": "Unused"})),
        Err(ResolveError::Missing("Unused".into()))
    );
    assert!(matches!(
        r(json!({"Fn::FindInMap": ["M", "k", "v"]})),
        Err(ResolveError::Unsupported(_))
    ));
}

#[test]
fn parameter_files_in_both_shapes_and_their_mistakes() {
    let file = Path::new("p.json");
    let mut values = ParameterValues::new();
    values
        .add_file(
            file,
            r#"{"Stacks": [{"Parameters": [{"ParameterKey": "MaxKPU", "ParameterValue": "8"}]}]}"#,
        )
        .unwrap();
    values.add_assignment("MaxKPU=9").unwrap();
    let keys: Vec<_> = values
        .given()
        .iter()
        .map(|g| (g.key.as_str(), g.value.as_str(), g.origin.as_str()))
        .collect();
    assert_eq!(
        keys,
        [("MaxKPU", "8", "p.json:1"), ("MaxKPU", "9", "--parameter")]
    );
    // A value is named by the line of its entry, so that an error about
    // it points there; an entry without a key by its place in the list.
    let mut values = ParameterValues::new();
    values
        .add_file(
            file,
            "[\n  {\"ParameterKey\": \"MinKPU\", \"ParameterValue\": \"1\"},\n  {\n    \"ParameterKey\" : \"MaxKPU\",\n    \"ParameterValue\": \"eight\"\n  }\n]",
        )
        .unwrap();
    let origins: Vec<_> = values.given().iter().map(|g| g.origin.as_str()).collect();
    assert_eq!(origins, ["p.json:2", "p.json:4"]);
    let error = ParameterValues::new()
        .add_file(
            file,
            "[\n  {\"ParameterKey\": \"MinKPU\", \"ParameterValue\": \"1\"},\n  {\"ParamKey\": \"MaxKPU\"}\n]",
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "p.json: entry 2 of the parameter list (counting from 1) has no \"ParameterKey\""
        ),
        "{error}"
    );
    let error = ParameterValues::new()
        .add_file(file, "[\n\n  {\"ParameterKey\": \"MaxKPU\"}\n]")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("p.json:3: parameter \"MaxKPU\" has no \"ParameterValue\""),
        "{error}"
    );
    for (text, expected) in [
        (r#"{"Stacks": [{}, {}]}"#, "2 stacks"),
        (
            r#"[{"ParameterKey": "MaxKPU", "UsePreviousValue": true}]"#,
            "UsePreviousValue",
        ),
        (r#"[{"ParameterValue": "1"}]"#, "no \"ParameterKey\""),
        ("{}", "without \"Stacks\""),
        ("[", "not JSON"),
    ] {
        let error = ParameterValues::new().add_file(file, text).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("p.json"), "{message}");
        assert!(message.contains(expected), "{text}: {message}");
    }
}

/// A metric whose alarms need several parameters without a value (the
/// MSK names of `MaxOffsetLag`) names them all in one run, not one per run.
#[test]
fn every_missing_parameter_a_property_needs_is_named_at_once() {
    let error = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[REQUIRED, &[("AutoScaleMetric", "MaxOffsetLag")]].concat()),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, ImportError::Missing { name, .. } if name == "AmazonMSKClusterName"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; it also uses \"KafkaConsumerGroupName\", \"KafkaTopicName\", none given either"
        ),
        "{message}"
    );
}

/// Thresholds that let both alarms be in ALARM at once are warned of, as
/// `validate` warns of them in the configuration written.
#[test]
fn alarms_that_can_both_fire_are_warned_of() {
    let swapped = cfn::import(
        Path::new("t.json"),
        V2,
        &given(
            &[
                REQUIRED,
                &[("ScaleInThreshold", "90"), ("ScaleOutThreshold", "10")],
            ]
            .concat(),
        ),
    )
    .expect("imports");
    let warnings = swapped.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("can be in ALARM together")
            && warnings[0].contains("parameter ScaleInThreshold"),
        "{warnings:?}"
    );
    let usual = cfn::import(Path::new("t.json"), V2, &given(REQUIRED)).expect("imports");
    assert_eq!(usual.warnings(), Vec::<String>::new());
}

/// `{"Ref": "AWS::NoValue"}` removes the property, as CloudFormation
/// does (it was read as the text `${AWS::NoValue}` and refused); a value
/// that names what only a deployed stack knows (`${AWS::StackName}`) is
/// refused, naming the property, where it was written into the
/// configuration as that text.
#[test]
fn no_value_removes_a_property_and_a_stack_placeholder_is_refused() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            resource["Properties"]["TreatMissingData"] = json!({
                "Fn::If": ["ApplicationMetricCondition", {"Ref": "AWS::NoValue"}, "breaching"]
            });
        }
    }
    let imported = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(&[REQUIRED, &[("AutoScaleMetric", "containerCPUUtilization")]].concat()),
    )
    .expect("AWS::NoValue is no value");
    assert!(
        imported
            .alarms
            .iter()
            .all(|a| a.treat_missing_data.value == "missing"),
        "{:?}",
        imported.alarms
    );
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            resource["Properties"]["Dimensions"][0]["Value"] =
                json!({"Fn::Sub": "${AWS::StackName}-orders"});
        }
    }
    let message = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(&[REQUIRED, &[("AutoScaleMetric", "containerCPUUtilization")]].concat()),
    )
    .expect_err("a stack placeholder")
    .to_string();
    assert!(
        message.contains("${AWS::StackName}-orders")
            && message.contains("Dimensions names something only a deployed stack knows"),
        "{message}"
    );
    // `${` in a parameter's value, or written with Fn::Sub's `${!...}`
    // escape, is text like any other.
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            resource["Properties"]["Dimensions"][0]["Value"] =
                json!({"Ref": "AmazonManagedFlinkApplicationName"});
            resource["Properties"]["Namespace"] = json!({"Fn::Sub": "Custom/${!env}"});
        }
    }
    let imported = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(&[REQUIRED, &[("AutoScaleMetric", "containerCPUUtilization")]].concat()),
    )
    .expect("no placeholder");
    assert_eq!(imported.metrics[0].namespace.value, "Custom/${env}");
}

/// A dimension removed by `AWS::NoValue` shifts no other dimension's
/// source: each is named after its own parameter.
#[test]
fn a_dimension_removed_by_no_value_shifts_no_other_source() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            let dims = resource["Properties"]["Dimensions"].as_array_mut().unwrap();
            dims.insert(
                0,
                json!({"Fn::If": ["ApplicationMetricCondition", {"Ref": "AWS::NoValue"}, {"Name": "X", "Value": "x"}]}),
            );
            dims.push(json!({"Name": "Extra", "Value": {"Ref": "MaxKPU"}}));
        }
    }
    let imported = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(&[REQUIRED, &[("AutoScaleMetric", "containerCPUUtilization")]].concat()),
    )
    .expect("imports");
    let dims = &imported.metrics[0].dimensions;
    assert_eq!(dims.len(), 2, "{dims:?}");
    assert_eq!(
        dims[0].1.source,
        Source::Parameter("AmazonManagedFlinkApplicationName".into())
    );
    assert_eq!(dims[1].1.source, Source::Parameter("MaxKPU".into()));
}

/// A parameter passed on through `Fn::Sub` ("${Name}") or the branch an
/// `Fn::If` takes is named as the value's source, in comments and errors
/// (they said "fixed in the template", or named the property as a
/// parameter).
#[test]
fn a_parameter_passed_through_sub_or_if_is_named() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            let props = &mut resource["Properties"];
            props["EvaluationPeriods"] = json!({"Fn::Sub": "${ScaleOutThreshold}"});
            props["Threshold"] = json!({
                "Fn::If": ["ApplicationMetricCondition", {"Ref": "ScaleInThreshold"}, 99]
            });
        }
    }
    let imported = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(
            &[
                REQUIRED,
                &[
                    ("AutoScaleMetric", "containerCPUUtilization"),
                    ("ScaleOutThreshold", "3"),
                ],
            ]
            .concat(),
        ),
    )
    .expect("imports");
    for alarm in &imported.alarms {
        assert_eq!(
            alarm.threshold.source,
            Source::Parameter("ScaleInThreshold".into()),
            "{alarm:?}"
        );
        assert_eq!(
            alarm.evaluation_periods.source,
            Source::Parameter("ScaleOutThreshold".into()),
            "{alarm:?}"
        );
    }
    let message = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(
            &[
                REQUIRED,
                &[
                    ("AutoScaleMetric", "containerCPUUtilization"),
                    ("ScaleOutThreshold", "0"),
                ],
            ]
            .concat(),
        ),
    )
    .expect_err("0 periods")
    .to_string();
    assert!(
        message.starts_with("--parameter: parameter \"ScaleOutThreshold\" = \"0\""),
        "{message}"
    );
}

/// A name that is no application's is refused as the value given, not
/// blamed on the template (a quote broke the state machine's JSON
/// definition: "not the reference design's autoscaling template").
#[test]
fn an_application_name_that_is_none_is_refused_where_it_was_given() {
    let error = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[
            ("AmazonManagedFlinkApplicationName", "ord\"ers"),
            ("ScaleOperation", "Multiply/Divide"),
        ]),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("--parameter: parameter \"AmazonManagedFlinkApplicationName\"")
            && message.contains("is not an MSF application name")
            && message.contains("1 to 128 letters"),
        "{message}"
    );
}

#[test]
fn a_later_value_wins_and_sources_are_named() {
    let imported = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[REQUIRED, &[("MaxKPU", "12"), ("MaxKPU", "14")]].concat()),
    )
    .unwrap();
    assert_eq!(imported.max_kpu.value, 14);
    assert_eq!(imported.max_kpu.source, Source::Parameter("MaxKPU".into()));
    assert_eq!(
        imported.update_poll_secs.source,
        Source::Parameter("UpdateApplicationWaitingTime".into())
    );
    assert_eq!(
        imported.grace_period_secs.source,
        Source::Parameter("ScalingGracingPeriod".into())
    );
    assert_eq!(imported.alarms[0].id, "scale-out");
    assert_eq!(imported.alarms[0].alarm_name, "ScaleOutAlarm-app");
    assert_eq!(imported.alarms[1].id, "scale-in");

    let custom = cfn::import(
        Path::new("t.json"),
        V2,
        &given(
            &[
                REQUIRED,
                &[
                    ("AutoScaleMetric", "Custom Metric"),
                    ("AutoScaleCustomMetric", "ordersPerSecond"),
                    ("UpdateApplicationWaitingTime", "3600"),
                ],
            ]
            .concat(),
        ),
    )
    .unwrap();
    let text = custom.to_checked_toml().unwrap();
    assert!(
        text.contains("# AutoScaleMetric = \"Custom Metric\""),
        "{text}"
    );
    assert!(
        text.contains("metric_name = \"ordersPerSecond\"  # parameter AutoScaleCustomMetric"),
        "{text}"
    );
    // A poll longer than the default update timeout keeps the file valid,
    // and the timeout three polls long: one poll's gave up at the first.
    assert!(text.contains("update_timeout_secs = 10800"), "{text}");
}

#[test]
fn alarms_on_different_series_get_a_metric_each() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    template["Resources"]["ScaleInApplicationAlarm"]["Properties"]["Statistic"] = json!("Minimum");
    let imported = cfn::import(
        Path::new("t.json"),
        &template.to_string(),
        &given(&[REQUIRED, &[("AutoScaleMetric", "containerCPUUtilization")]].concat()),
    )
    .unwrap();
    let ids: Vec<_> = imported.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "container_cpu_utilization_out",
            "container_cpu_utilization_in"
        ]
    );
    assert_eq!(imported.alarms[0].metric, "container_cpu_utilization_out");
    assert_eq!(imported.alarms[1].metric, "container_cpu_utilization_in");
    assert_eq!(imported.metrics[1].statistic.value, "Minimum");
    assert_eq!(imported.metrics[1].statistic.source, Source::Template);
    imported.to_checked_toml().unwrap();
}

#[test]
fn what_only_the_loader_refuses_is_reported_not_written() {
    // M > N: CloudFormation would refuse the alarm too, but nothing in the
    // template says so; the loader's check does.
    let imported = cfn::import(
        Path::new("t.json"),
        V2,
        &given(
            &[
                REQUIRED,
                &[
                    ("ScalingEvaluationperiod", "3"),
                    ("DataPointstoTriggerAlarm", "5"),
                ],
            ]
            .concat(),
        ),
    )
    .unwrap();
    let error = imported.to_checked_toml().unwrap_err();
    assert!(matches!(error, ImportError::Invalid { .. }));
    let message = error.to_string();
    assert!(
        message.starts_with("t.json: the imported configuration is not valid"),
        "{message}"
    );
    assert!(
        message.contains("datapoints_to_alarm 5 is not between 1 and evaluation_periods 3"),
        "{message}"
    );
    // Told by the parameter the value came from, not by a line of a file
    // that was never written.
    assert!(!message.contains("<imported>.toml"), "{message}");
    assert!(
        message.contains("\n--parameter DataPointstoTriggerAlarm: "),
        "{message}"
    );
    // A value from a parameters file is told at its line there.
    let mut from_file = ParameterValues::new();
    from_file
        .add_file(
            Path::new("p.json"),
            "[\n{\"ParameterKey\": \"AmazonManagedFlinkApplicationName\", \"ParameterValue\": \"app\"},\n\
             {\"ParameterKey\": \"ScaleOperation\", \"ParameterValue\": \"Multiply/Divide\"},\n\
             {\"ParameterKey\": \"MinKPU\", \"ParameterValue\": \"10\"},\n\
             {\"ParameterKey\": \"MaxKPU\", \"ParameterValue\": \"8\"}\n]",
        )
        .unwrap();
    let message = cfn::import(Path::new("t.json"), V2, &from_file)
        .unwrap()
        .to_checked_toml()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\np.json:4: parameter MinKPU: application \"app\".min_kpu: min_kpu 10"),
        "{message}"
    );
}

/// An alarm with a Unit judges only the data published in that unit,
/// which flinkscale cannot filter: refused, naming the resource and the
/// fix, not imported without it.
#[test]
fn an_alarm_with_a_unit_is_refused_not_dropped() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            resource["Properties"]["Unit"] = "Percent".into();
        }
    }
    let error = cfn::import(Path::new("t.json"), &template.to_string(), &given(REQUIRED))
        .expect_err("a Unit");
    let message = error.to_string();
    assert!(
        // One line of JSON: the place is line 1.
        message.starts_with("t.json:1: parameter \"Unit\" = \"Percent\": resource Scale")
            && message
                .contains("sets Unit, so CloudWatch judges only the data published in that unit")
            && message.contains("(valid: no Unit"),
        "{message}"
    );
}

/// A percentile alarm that ignores low sample counts holds its state
/// through periods CloudWatch finds too sparse, which flinkscale cannot
/// tell: refused like a Unit; "evaluate", the default, is imported.
#[test]
fn a_percentile_alarm_that_ignores_low_sample_counts_is_refused() {
    let with = |value: &str| {
        let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
        for (_, resource) in template["Resources"].as_object_mut().unwrap() {
            if resource["Type"] == "AWS::CloudWatch::Alarm" {
                resource["Properties"]["EvaluateLowSampleCountPercentile"] = value.into();
            }
        }
        cfn::import(Path::new("t.json"), &template.to_string(), &given(REQUIRED))
    };
    let message = with("ignore").expect_err("ignore").to_string();
    assert!(
        message.contains("\"ignore\": resource Scale")
            && message.contains("too sparse for its percentile")
            && message.contains("(valid: no EvaluateLowSampleCountPercentile"),
        "{message}"
    );
    assert!(with("evaluate").is_ok());
}

#[test]
fn a_whole_number_is_required_where_the_lambda_uses_int() {
    let error = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[REQUIRED, &[("MinKPU", "1.5")]].concat()),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("--parameter: parameter \"MinKPU\" = \"1.5\"")
            && message.contains("int()"),
        "{message}"
    );
    // Given in a parameters file, the error points at its entry there, the
    // place to change it.
    let mut values = given(REQUIRED);
    values
        .add_file(
            Path::new("params.json"),
            "[\n  {\"ParameterKey\": \"MaxKPU\", \"ParameterValue\": \"8\"},\n  {\"ParameterKey\": \"MinKPU\", \"ParameterValue\": \"1.5\"}\n]\n",
        )
        .unwrap();
    let message = cfn::import(Path::new("t.json"), V2, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("params.json:3: parameter \"MinKPU\" = \"1.5\""),
        "{message}"
    );
    // A default of the template is changed in the template.
    let template = V2.replacen(
        "\"MinKPU\": {\n   \"Type\": \"Number\",\n   \"Default\": \"1\"",
        "\"MinKPU\": {\n   \"Type\": \"Number\",\n   \"Default\": \"1.5\"",
        1,
    );
    assert_ne!(template, V2, "MinKPU's default");
    let message = cfn::import(Path::new("t.json"), &template, &given(REQUIRED))
        .unwrap_err()
        .to_string();
    let line = 1 + template[..template.find("\"MinKPU\": {").unwrap()]
        .matches('\n')
        .count();
    assert!(
        message.starts_with(&format!("t.json:{line}: parameter \"MinKPU\" = \"1.5\"")),
        "{message}"
    );
}

fn described(name: &str, app: &str, comparison: &str, period: u32) -> DescribedAlarm {
    DescribedAlarm {
        name: name.into(),
        state: None,
        state_updated_ms: None,
        namespace: Some("AWS/KinesisAnalytics".into()),
        metric_name: Some("containerCPUUtilization".into()),
        dimensions: [("Application".to_owned(), app.to_owned())].into(),
        statistic: Some("Average".into()),
        period_secs: Some(period),
        unit: None,
        comparison: Some(comparison.into()),
        threshold: Some(50.0),
        evaluation_periods: Some(3),
        datapoints_to_alarm: None,
        treat_missing_data: None,
        metric_math: false,
        low_sample_count: None,
    }
}

#[test]
fn alarms_flinkscale_cannot_evaluate_are_skipped_and_said() {
    let math = DescribedAlarm {
        metric_math: true,
        namespace: None,
        metric_name: None,
        statistic: None,
        ..described("math", "app", "GreaterThanThreshold", 60)
    };
    let band = DescribedAlarm {
        threshold: None,
        ..described(
            "band",
            "app",
            "LessThanLowerOrGreaterThanUpperThreshold",
            60,
        )
    };
    let all = [
        described("fast", "app", "GreaterThanThreshold", 5),
        math,
        band,
        described("flinkscale-app-hot", "app", "GreaterThanThreshold", 60),
        described("cold", "app", "LessThanThreshold", 60),
        described("warm", "app", "GreaterThanOrEqualToThreshold", 120),
        described("someone-else", "other", "GreaterThanThreshold", 60),
        // 2 days at hourly periods: CloudWatch allows it, flinkscale
        // evaluates a day at most.
        DescribedAlarm {
            evaluation_periods: Some(48),
            ..described("slow", "app", "GreaterThanThreshold", 3600)
        },
        // A percentile that holds its state on few samples: CloudWatch's
        // choice per period, which the statistic fetched does not show.
        DescribedAlarm {
            statistic: Some("p99".into()),
            low_sample_count: Some("ignore".into()),
            ..described("sparse", "app", "GreaterThanThreshold", 60)
        },
        DescribedAlarm {
            statistic: Some("p90".into()),
            low_sample_count: Some("evaluate".into()),
            ..described("dense", "app", "GreaterThanThreshold", 60)
        },
        // A statistic CloudWatch has and flinkscale does not fetch: skipped,
        // not a failed import.
        DescribedAlarm {
            statistic: Some("tm90".into()),
            ..described("trimmed", "app", "GreaterThanThreshold", 60)
        },
    ];
    let out = alarms::import("app", &all, None, &alarms::default_check_path()).unwrap();
    assert_eq!(out.imported, 4);
    let skipped: Vec<&str> = out.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        skipped,
        ["fast", "math", "band", "slow", "sparse", "trimmed"]
    );
    assert!(
        out.skipped[5].reason.starts_with("the statistic \"tm90\""),
        "{}",
        out.skipped[5].reason
    );
    assert!(
        out.skipped[4]
            .reason
            .starts_with("EvaluateLowSampleCountPercentile = ignore"),
        "{}",
        out.skipped[4].reason
    );
    assert_eq!(
        out.skipped[3].reason,
        "EvaluationPeriods 48 x Period 3600 s = 172800 s, more than the one day flinkscale evaluates"
    );
    assert!(
        out.toml
            .contains("# Not imported: the CloudWatch alarm \"fast\": the period 5 s")
    );
    // A synced alarm gets its id back; M defaults to N.
    assert!(out.toml.contains("id = \"hot\""), "{}", out.toml);
    assert!(out.toml.contains("datapoints_to_alarm = 3"), "{}", out.toml);
    // Two alarms ask for more: no step pair, so `hold`, said.
    assert!(out.toml.contains("plugin = \"hold\""), "{}", out.toml);
    assert!(out.holds);
    assert!(!out.toml.contains("someone-else"));

    let only_skipped = alarms::import("app", &all[..3], None, &alarms::default_check_path());
    let error = only_skipped.unwrap_err().to_string();
    assert!(
        error.contains(
            "no CloudWatch alarm of the 3 in the region watches application \"app\"; skipped: \"fast\""
        ),
        "{error}"
    );
}

/// The reference design's pair beside an alarm of the on-call's on the
/// same application (failed checkpoints, greater than 0): `step` on the
/// pair, the other alarm imported for what it is worth, where any alarm
/// more made the policy `hold` (an outside reviewer's migration).
#[test]
fn the_reference_pair_beside_another_alarm_still_gets_step() {
    let all = [
        described("ScaleOutAlarm-app", "app", "GreaterThanThreshold", 60),
        described("ScaleInAlarm-app", "app", "LessThanThreshold", 60),
        described("app-failed-checkpoints", "app", "GreaterThanThreshold", 300),
    ];
    let out = alarms::import("app", &all, None, &alarms::default_check_path()).unwrap();
    assert_eq!(out.imported, 3);
    assert!(!out.holds);
    assert!(out.toml.contains("plugin = \"step\""), "{}", out.toml);
    assert!(
        out.toml
            .contains("scale_out_alarm = \"scale-out\"\nscale_in_alarm = \"scale-in\""),
        "{}",
        out.toml
    );
}

#[test]
fn mirrors_made_by_alarms_sync_beside_the_reference_pair_are_imported_once() {
    // The reference design's pair, imported, then synced: CloudWatch has
    // both the originals and `alarms sync`'s mirrors of the same two local
    // alarms. The mirror of scale-out has a threshold edited locally since.
    let all = [
        described("ScaleOutAlarm-app", "app", "GreaterThanThreshold", 60),
        described("ScaleInAlarm-app", "app", "LessThanOrEqualToThreshold", 60),
        DescribedAlarm {
            threshold: Some(75.0),
            ..described(
                "flinkscale-app-scale-out",
                "app",
                "GreaterThanThreshold",
                60,
            )
        },
        described(
            "flinkscale-app-scale-in",
            "app",
            "LessThanOrEqualToThreshold",
            60,
        ),
    ];
    let out = alarms::import("app", &all, None, &alarms::default_check_path()).unwrap();
    assert_eq!(out.imported, 2, "{}", out.toml);
    let skipped: Vec<&str> = out.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["ScaleOutAlarm-app", "ScaleInAlarm-app"]);
    assert!(
        out.skipped[0]
            .reason
            .contains("\"scale-out\" is the local alarm \"flinkscale-app-scale-out\" mirrors"),
        "{:?}",
        out.skipped
    );
    assert!(out.toml.contains("id = \"scale-out\""), "{}", out.toml);
    assert!(out.toml.contains("id = \"scale-in\""), "{}", out.toml);
    assert!(!out.toml.contains("scale-out-2"), "{}", out.toml);
    // The mirror's settings, not the original's.
    assert!(out.toml.contains("threshold = 75.0"), "{}", out.toml);
    // One pair: the step policy, not `hold`.
    assert!(out.toml.contains("plugin = \"step\""), "{}", out.toml);

    // Without the mirrors, the reference pair is imported as before.
    let out = alarms::import("app", &all[..2], None, &alarms::default_check_path()).unwrap();
    assert_eq!(out.imported, 2);
    assert!(out.skipped.is_empty());
    assert!(out.toml.contains("plugin = \"step\""), "{}", out.toml);

    // The mirrors of application app-v2 (`flinkscale-app-v2-...`) begin as
    // app's would: their Application dimension says they are not app's.
    let mut beside = all[..2].to_vec();
    beside.push(described(
        "flinkscale-app-v2-scale-out",
        "app-v2",
        "GreaterThanThreshold",
        60,
    ));
    beside.push(described(
        "flinkscale-app-v2-scale-in",
        "app-v2",
        "LessThanOrEqualToThreshold",
        60,
    ));
    let out = alarms::import("app", &beside, None, &alarms::default_check_path()).unwrap();
    assert_eq!(out.imported, 2, "{}", out.toml);
    assert!(!out.toml.contains("app-v2"), "{}", out.toml);
    assert!(out.toml.contains("plugin = \"step\""), "{}", out.toml);
}

/// The same template in YAML, long or short form, or as the one JSON
/// string `get-template --query TemplateBody` writes for a YAML stack,
/// imports as the JSON one does (the design's CDK app deploys YAML).
#[test]
fn a_template_in_yaml_or_in_a_json_string_imports_as_in_json() {
    let values = given(&[REQUIRED, &[("MaxKPU", "12")]].concat());
    let toml = |text: &str| {
        cfn::import(Path::new("t"), text, &values)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_checked_toml()
            .unwrap()
    };
    let from_json = toml(V2);
    let root: serde_json::Value = serde_json::from_str(V2).unwrap();
    let long_form = serde_norway::to_string(&root).unwrap();
    assert!(long_form.contains("Ref: ScaleOutThreshold"), "{long_form}");
    assert_eq!(toml(&long_form), from_json);
    // Short forms, as a hand-written YAML template has them.
    let short_form = long_form
        .replace("Ref: ", "!Ref ")
        .replace("Fn::Equals:", "!Equals")
        .replace("Fn::Join:", "!Join");
    assert!(
        short_form.contains("!Ref ScaleOutThreshold"),
        "{short_form}"
    );
    assert_ne!(short_form, long_form);
    assert_eq!(toml(&short_form), from_json);
    // As a JSON string (with a byte order mark in front).
    let body = format!("\u{feff}{}", serde_json::Value::String(long_form.clone()));
    assert_eq!(toml(&body), from_json);
    // YAML that is not a template says where.
    let broken = long_form.replacen("Parameters:", "Parameters: [", 1);
    let message = cfn::import(Path::new("t.yaml"), &broken, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("t.yaml:") && message.contains("not a template in YAML"),
        "{message}"
    );
    // Broken JSON is not read as YAML with another meaning (`010`, `0x10`,
    // `+10`, `.5`), and a template past CloudFormation's 1 MB is refused.
    for number in ["010", "0x10", "0o12", "+10", ".5"] {
        let broken = V2.replacen("\"Default\": \"10\"", &format!("\"Default\": {number}"), 1);
        assert_ne!(broken, V2);
        let message = cfn::import(Path::new("t.json"), &broken, &values)
            .unwrap_err()
            .to_string();
        assert!(message.contains(": not JSON: "), "{number}: {message}");
    }
    let huge = format!("{}{}", " ".repeat(1024 * 1024), V2);
    let message = cfn::import(Path::new("t.json"), &huge, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("CloudFormation's limit for a template"),
        "{message}"
    );
    // YAML in flow style starts as JSON does; read as YAML when not JSON.
    let message = cfn::import(
        Path::new("t.yaml"),
        "{Parameters: {A: {Type: String}}}",
        &values,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("declares no such parameter (declared: A)"),
        "{message}"
    );
    // So is one whose values are unquoted.
    let message = cfn::import(
        Path::new("t.yaml"),
        "{\"Parameters\": {\"A\": {\"Type\": String}}}",
        &values,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("declares no such parameter (declared: A)"),
        "{message}"
    );
    // A JSON string's YAML: its errors' lines are the string's text's.
    let broken_body = serde_json::Value::String(broken.clone()).to_string();
    let message = cfn::import(Path::new("t.json"), &broken_body, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("t.json (the template its JSON string holds):"),
        "{message}"
    );
    let tagged = long_form.replacen("Ref: ScaleOutThreshold", "!Reff ScaleOutThreshold", 1);
    let message = cfn::import(Path::new("t.yaml"), &tagged, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("the tag !Reff is not one of CloudFormation's intrinsic functions"),
        "{message}"
    );
}

/// `--application-name` sets whichever parameter the Lambda reads the name
/// from: the CDK app's template calls it `ApplicationName`.
#[test]
fn the_application_name_option_sets_the_parameter_the_lambda_reads() {
    let renamed = V2.replace("AmazonManagedFlinkApplicationName", "ApplicationName");
    let mut values = given(&[
        ("ApplicationName", "app"),
        ("ScaleOperation", "Add/Substract"),
    ]);
    values.add_named(
        cfn::APPLICATION_NAME_PARAMETER,
        "orders-v2",
        cfn::APPLICATION_NAME_OPTION,
    );
    let imported = cfn::import(Path::new("t.json"), &renamed, &values).unwrap();
    assert_eq!(imported.application.value, "orders-v2");
    assert_eq!(imported.alarms[0].alarm_name, "ScaleOutAlarm-orders-v2");
    // Still checked as a name.
    let mut values = given(&[
        ("ApplicationName", "app"),
        ("ScaleOperation", "Add/Substract"),
    ]);
    values.add_named(
        cfn::APPLICATION_NAME_PARAMETER,
        "ord ers",
        cfn::APPLICATION_NAME_OPTION,
    );
    let message = cfn::import(Path::new("t.json"), &renamed, &values)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("--application-name: parameter \"ApplicationName\" = \"ord ers\"")
            && message.contains("is not an MSF application name"),
        "{message}"
    );
}

/// An application whose name holds "ScaleOut" keeps its alarms' roles (the
/// import went by the word anywhere in the name, and refused the stack as
/// two scale-out alarms), and is warned of: the reference Lambda, which
/// does, scaled such a stack out on its scale-in alarm.
#[test]
fn an_application_named_scale_out_something_keeps_its_alarms_roles() {
    let imported = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[
            ("AmazonManagedFlinkApplicationName", "ScaleOutTest"),
            ("ScaleOperation", "Multiply/Divide"),
        ]),
    )
    .unwrap();
    assert_eq!(imported.alarms[0].id, "scale-out");
    assert_eq!(imported.alarms[0].alarm_name, "ScaleOutAlarm-ScaleOutTest");
    assert_eq!(imported.alarms[1].id, "scale-in");
    assert_eq!(imported.alarms[1].alarm_name, "ScaleInAlarm-ScaleOutTest");
    let warnings = imported.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "the scale-in alarm \"ScaleInAlarm-ScaleOutTest\" has \"ScaleOut\" in its name"
        ),
        "{warnings:?}"
    );
}

/// Bounds below 1 (or negative) are refused for what they are, not as
/// numbers `int()` could not read; a parameters file may start with a
/// byte order mark.
#[test]
fn bounds_below_one_say_so_and_a_byte_order_mark_is_skipped() {
    for (value, problem) in [
        ("0", "minKPU must be at least 1"),
        ("-3", "minKPU must be at least 1"),
        ("99999999999", "minKPU must be at most 4294967295"),
        ("1.5", "with int(), so it must be a whole number"),
    ] {
        let message = cfn::import(
            Path::new("t.json"),
            V2,
            &given(&[REQUIRED, &[("MinKPU", value)]].concat()),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains(problem), "{value}: {message}");
    }
    let mut values = given(REQUIRED);
    values
        .add_file(
            Path::new("params.json"),
            "\u{feff}[{\"ParameterKey\": \"MaxKPU\", \"ParameterValue\": \"8\"}]",
        )
        .unwrap();
    let imported = cfn::import(Path::new("t.json"), V2, &values).unwrap();
    assert_eq!(imported.max_kpu.value, 8);
}

/// `import alarms --config` keeps what the application has beyond its
/// alarms: a metric an imported alarm watches keeps its id (its policy
/// and expressions may name it) and its `min_publication_delay_secs`,
/// the metrics no alarm watches stay, and so do `mode`, `lazy_polling`
/// and the policy's `history_days`. They were dropped, silently, or
/// with a refusal that blamed renamed ids.
#[test]
fn the_configs_metrics_and_settings_are_kept_beside_the_imported_alarms() {
    let config = crate::config::load::load_str(
        r#"
[[application]]
name = "app"
mode = "dry-run"
lazy_polling = false

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
statistic = "Average"
period_secs = 60
min_publication_delay_secs = 60
dimensions = { Application = "app" }

[[application.metric]]
id = "container_cpu_utilization"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
statistic = "Maximum"
dimensions = { Application = "app" }

[[application.metric]]
id = "records_in"
namespace = "AWS/KinesisAnalytics"
metric_name = "numRecordsInPerSecond"
statistic = "Sum"
dimensions = { Application = "app" }

[[application.metric]]
id = "doubled"
expression = "cpu * 2"

[application.policy]
plugin = "hold"
history_days = 2
"#,
        Path::new("agent.toml"),
    )
    .unwrap();
    let existing = &config.config.applications[0];
    // The 300 s alarm comes first: its series is made the id the kept
    // Maximum metric has, and is renamed.
    let all = [
        described("app-slow-cpu", "app", "GreaterThanThreshold", 300),
        described("ScaleOutAlarm-app", "app", "GreaterThanThreshold", 60),
        described("ScaleInAlarm-app", "app", "LessThanThreshold", 60),
    ];
    let out = alarms::import("app", &all, Some(existing), Path::new("agent.toml")).unwrap();
    let text = &out.toml;
    let has = |needle: &str| assert!(text.contains(needle), "{needle:?} not in\n{text}");
    has("mode = \"dry-run\"\nlazy_polling = false\n");
    has("plugin = \"hold\"\nhistory_days = 2\n");
    has(
        "id = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\nstatistic = \"Average\"\nperiod_secs = 60\nmin_publication_delay_secs = 60",
    );
    has("id = \"scale-out\"\nmetric = \"cpu\"");
    has("id = \"scale-in\"\nmetric = \"cpu\"");
    has(
        "id = \"container_cpu_utilization_2\"\nnamespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\nstatistic = \"Average\"\nperiod_secs = 300",
    );
    has("metric = \"container_cpu_utilization_2\"");
    has("# Kept from the agent's configuration.\nid = \"container_cpu_utilization\"\nnamespace");
    has("statistic = \"Maximum\"");
    has("id = \"records_in\"");
    has("id = \"doubled\"\nexpression = \"cpu * 2\"");
    // Written once each, and the whole loads as the agent would.
    assert_eq!(text.matches("id = \"cpu\"").count(), 1, "{text}");
    let loaded = crate::config::load::load_str(text, Path::new("agent.toml")).unwrap();
    let app = &loaded.config.applications[0];
    let ids: Vec<&str> = app.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "container_cpu_utilization_2",
            "cpu",
            "container_cpu_utilization",
            "records_in",
            "doubled"
        ]
    );
    assert_eq!(app.policy.history_days, 2);
}

/// A value given for a parameter no resource uses (the CDK app's
/// `MetricPeriod`: the alarms' period is fixed when the template is
/// generated) is warned of, not silently taken; a key that nearly names a
/// declared parameter gets a suggestion.
#[test]
fn an_unused_parameter_is_warned_of_and_a_near_miss_named() {
    let template = V2.replacen(
        "\"Parameters\": {",
        "\"Parameters\": {\n  \"MetricPeriod\": {\"Type\": \"Number\", \"Default\": 60},",
        1,
    );
    assert_ne!(template, V2);
    let quiet = cfn::import(Path::new("t.json"), &template, &given(REQUIRED)).unwrap();
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
    // Its default given (describe-stacks lists every parameter) is no news.
    let listed = cfn::import(
        Path::new("t.json"),
        &template,
        &given(&[REQUIRED, &[("MetricPeriod", "60")]].concat()),
    )
    .unwrap();
    assert!(listed.warnings().is_empty(), "{:?}", listed.warnings());
    let imported = cfn::import(
        Path::new("t.json"),
        &template,
        &given(&[REQUIRED, &[("MetricPeriod", "120")]].concat()),
    )
    .unwrap();
    assert_eq!(
        imported.warnings(),
        [
            "--parameter: parameter \"MetricPeriod\" is used by no resource of the template t.json: \
          its value changed nothing the stack did, nor the import"
        ]
    );
    let message = cfn::import(
        Path::new("t.json"),
        V2,
        &given(&[REQUIRED, &[("AutoScalemetric", "containerCPUUtilization")]].concat()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("declares no such parameter (did you mean \"AutoScaleMetric\"? declared:"),
        "{message}"
    );
}

/// An error about a part of the template names its line: the property of
/// the resource, found by its keys in JSON and in YAML (serde's values
/// carry no position); a parameter's default, its declaration's.
#[test]
fn template_errors_name_the_line_of_the_part() {
    let error = |text: &str, values: &ParameterValues| {
        cfn::import(Path::new("t"), text, values)
            .unwrap_err()
            .to_string()
    };
    // JSON: the scale-out alarm's Statistic, line 258 of the built-in.
    let find_in_map = V2.replacen(
        "\"Statistic\": {\n     \"Ref\": \"Statistic\"",
        "\"Statistic\": {\n     \"Fn::FindInMap\": [\"M\", \"a\", \"b\"]",
        1,
    );
    assert_ne!(find_in_map, V2);
    let message = error(&find_in_map, &given(REQUIRED));
    assert!(
        message.starts_with("t:258: not the reference design's autoscaling template: resource ScaleOutFlowAlarm's Statistic: the intrinsic function Fn::FindInMap"),
        "{message}"
    );
    // YAML: the CDK template's alarm, its Unit set.
    let cdk =
        include_str!("../../../tests/fixtures/cfn/cdk-kda-containerCPUUtilization-Average.yaml");
    let with_unit = cdk.replacen(
        "      Statistic: Average\n",
        "      Statistic: Average\n      Unit: Percent\n",
        1,
    );
    assert_ne!(with_unit, cdk);
    let line = 1 + with_unit[..with_unit.find("Unit: Percent").unwrap()]
        .matches('\n')
        .count();
    let values = given(&[
        ("ApplicationName", "app"),
        ("ScaleOperation", "Add/Subtract"),
    ]);
    let message = error(&with_unit, &values);
    assert!(
        message.starts_with(&format!(
            "t:{line}: parameter \"Unit\" = \"Percent\": resource Scaleoutalarmon"
        )),
        "{message}"
    );
    // A default of the template: its parameter's line.
    let default = V2.replacen(
        "\"MinKPU\": {\n   \"Type\": \"Number\",\n   \"Default\": \"1\"",
        "\"MinKPU\": {\n   \"Type\": \"Number\",\n   \"Default\": \"0\"",
        1,
    );
    assert_ne!(default, V2);
    let line = 1 + V2[..V2.find("\"MinKPU\": {").unwrap()]
        .matches('\n')
        .count();
    let message = error(&default, &given(REQUIRED));
    assert!(
        message.starts_with(&format!(
            "t:{line}: parameter \"MinKPU\" = \"0\": minKPU must be at least 1"
        )),
        "{message}"
    );
}

/// An alarm with both Statistic and ExtendedStatistic (which
/// CloudFormation refuses) is refused, not imported with the first.
#[test]
fn an_alarm_with_both_statistics_is_refused() {
    let mut template: serde_json::Value = serde_json::from_str(V2).unwrap();
    for (_, resource) in template["Resources"].as_object_mut().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            resource["Properties"]["ExtendedStatistic"] = "p99".into();
        }
    }
    let message = cfn::import(Path::new("t.json"), &template.to_string(), &given(REQUIRED))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(": both Statistic and ExtendedStatistic (expected one of them"),
        "{message}"
    );
}

/// `import alarms --config` with the application as a self-managed Flink
/// job is refused, naming why: the output, an MSF application, lost its
/// REST URL and job and kept its Flink metrics, and failed validation at
/// lines of the generated text reported as the --config file's.
#[test]
fn a_flink_job_of_the_config_is_refused_not_turned_into_an_msf_application() {
    let loaded = crate::config::load::load_str(
        include_str!("../../../deploy/flink-ec2/config.toml"),
        Path::new("agent.toml"),
    )
    .unwrap();
    let app = &loaded.config.applications[0];
    assert_eq!(app.target, crate::config::TargetKind::Flink);
    let all = [described(
        "ScaleOutAlarm-x",
        &app.name,
        "GreaterThanThreshold",
        60,
    )];
    let message = alarms::import(&app.name, &all, Some(app), Path::new("agent.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("is a self-managed Flink job (target = \"flink\") in the --config file"),
        "{message}"
    );
}

/// The line found is the part's own, not a look-alike: a resource's name
/// in a description before `Resources`, a property of the next resource
/// when this one spells it in single quotes, a parameter's label in the
/// metadata before `Parameters` (the second review found all three).
#[test]
fn template_error_lines_are_not_fooled_by_look_alikes() {
    let cdk = include_str!("../../../tests/fixtures/cfn/cdk-msk-MaxOffsetLag-Maximum.yaml");
    let values = given(&[
        ("ApplicationName", "app"),
        ("ScaleOperation", "Add/Subtract"),
        ("MSKClusterName", "c"),
        ("KafkaTopicName", "t"),
        ("KafkaConsumerGroupName", "g"),
    ]);
    let line_of =
        |text: &str, needle: &str| 1 + text[..text.find(needle).unwrap()].matches('\n').count();
    let error = |text: &str, values: &ParameterValues| {
        cfn::import(Path::new("t"), text, values)
            .unwrap_err()
            .to_string()
    };
    // The first alarm's Period, single-quoted and wrong, after a
    // description that names the resource as a key.
    let text = cdk
        .replacen(
            "Description: ",
            "Description: |\n  ScaleoutalarmonMaxOffsetLag: in a description\nX: ",
            1,
        )
        .replacen("      Period: 60\n", "      'Period': abc\n", 1);
    let message = error(&text, &values);
    let line = line_of(&text, "'Period': abc");
    assert!(
        message.starts_with(&format!("t:{line}: ")),
        "{line}: {message}"
    );
    // A parameter's label in the metadata, before its declaration.
    let labelled = V2.replacen(
        "\"Parameters\": {",
        "\"Metadata\": {\"Labels\": {\"MaxKPU\": {\"default\": \"Upper bound\"}}},\n \"Parameters\": {",
        1,
    )
    .replacen("\"Default\": \"10\"", "\"Default\": \"abc\"", 1);
    let message = error(&labelled, &given(REQUIRED));
    let line = line_of(&labelled, "\"MaxKPU\": {\n");
    assert!(
        message.starts_with(&format!("t:{line}: parameter \"MaxKPU\"")),
        "{line}: {message}"
    );
}
