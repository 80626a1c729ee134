//! Tests of configuration loading and validation: the example files, each
//! class of error with the line, column and field a user would see, and the
//! environment step.

use std::path::{Path, PathBuf};

use super::validate::{FieldPath, is_statistic, validate};
use super::*;
use crate::plugin::{PluginSource, builtin};

/// The rendered errors of `text`, one per line, or a failure if it is valid.
fn errors(text: &str) -> Vec<String> {
    match load_str(text, Path::new("config/x.toml")) {
        Ok(_) => panic!("expected errors, the configuration is valid:\n{text}"),
        Err(errors) => errors.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts that `text` is rejected with exactly the error `expected` among
/// its errors.
#[track_caller]
fn assert_error(text: &str, expected: &str) {
    let errors = errors(text);
    assert!(
        errors.iter().any(|e| e == expected),
        "missing error:\n  {expected}\ngot:\n  {}",
        errors.join("\n  ")
    );
}

fn valid(text: &str) -> LoadedConfig {
    match load_str(text, Path::new("config/x.toml")) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

const EXAMPLES: [&str; 6] = [
    "msf-cpu.toml",
    "msk-lag.toml",
    "kinesis-iterator-age.toml",
    "kinesis-efo.toml",
    "custom-metric.toml",
    "multi-app.toml",
];

#[test]
fn every_example_in_config_passes_validation() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(config_dir()).expect("config/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable example");
        let loaded = match load_str(&text, &path) {
            Ok(loaded) => loaded,
            Err(errors) => panic!("{} is invalid:\n{errors}", path.display()),
        };
        assert!(
            validate(&loaded.config).is_empty(),
            "{}: the pure validator disagrees with the loader",
            path.display()
        );
        assert!(
            loaded
                .config
                .applications
                .iter()
                .all(|a| a.policy.plugin == "step"),
            "{}: the examples use the step policy",
            path.display()
        );
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for example in EXAMPLES {
        assert!(
            seen.iter().any(|s| s == example),
            "config/{example} is missing"
        );
    }
}

#[test]
fn examples_cover_each_metric_family() {
    let families = [
        (
            "msf-cpu.toml",
            "AWS/KinesisAnalytics",
            "containerCPUUtilization",
            vec!["Application"],
        ),
        (
            "msk-lag.toml",
            "AWS/Kafka",
            "MaxOffsetLag",
            vec!["Cluster Name", "Consumer Group", "Topic"],
        ),
        (
            "kinesis-iterator-age.toml",
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            vec!["StreamName"],
        ),
        (
            "kinesis-efo.toml",
            "AWS/Kinesis",
            "SubscribeToShardEvent.MillisBehindLatest",
            vec!["ConsumerName", "StreamName"],
        ),
    ];
    for (file, namespace, metric_name, dimensions) in families {
        let path = config_dir().join(file);
        let text = std::fs::read_to_string(&path).expect("readable example");
        let loaded = load_str(&text, &path).expect("valid example");
        let metric = &loaded.config.applications[0].metrics[0];
        assert_eq!(
            (metric.namespace.as_deref(), metric.metric_name.as_deref()),
            (Some(namespace), Some(metric_name)),
            "{file}"
        );
        assert_eq!(
            metric
                .dimensions
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            dimensions,
            "{file}"
        );
    }
    let text = std::fs::read_to_string(config_dir().join("custom-metric.toml")).unwrap();
    let loaded = load_str(&text, Path::new("config/custom-metric.toml")).unwrap();
    assert!(
        !loaded.config.applications[0].metrics[0]
            .namespace
            .as_deref()
            .is_some_and(|n| n.starts_with("AWS/"))
    );
    let text = std::fs::read_to_string(config_dir().join("multi-app.toml")).unwrap();
    let loaded = load_str(&text, Path::new("config/multi-app.toml")).unwrap();
    assert!(loaded.config.applications.len() >= 2);
    assert!(
        loaded
            .config
            .applications
            .iter()
            .all(|a| a.metrics.len() >= 2)
    );
}

#[test]
fn msf_cpu_example_has_the_reference_defaults() {
    let path = config_dir().join("msf-cpu.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let loaded = load_str(&text, &path).unwrap();
    let app = &loaded.config.applications[0];
    assert_eq!((app.min_kpu, app.max_kpu), (1, 10));
    assert_eq!((app.update_poll_secs, app.grace_period_secs), (60, 300));
    let metric = &app.metrics[0];
    assert_eq!(
        (metric.statistic.as_deref(), metric.period_secs),
        (Some("Maximum"), 60)
    );
    let out = app.alarms.iter().find(|a| a.id == "scale-out").unwrap();
    let inn = app.alarms.iter().find(|a| a.id == "scale-in").unwrap();
    assert_eq!(
        (out.comparison, out.threshold),
        (Some(Comparison::GreaterThanThreshold), Some(80.0))
    );
    assert_eq!(
        (inn.comparison, inn.threshold),
        (Some(Comparison::LessThanOrEqualToThreshold), Some(20.0))
    );
    for alarm in [out, inn] {
        assert_eq!(
            (alarm.evaluation_periods, alarm.datapoints_to_alarm()),
            (Some(5), 5)
        );
    }
    let params: serde_json::Value = serde_json::from_str(&params_json(&app.policy.params)).unwrap();
    assert_eq!(
        params,
        serde_json::json!({
            "scale_out_alarm": "scale-out", "scale_in_alarm": "scale-in",
            "operation": "multiply", "scale_out_factor": 2, "scale_in_factor": 2
        })
    );
    // No step.wasm in its plugin_dir: the built-in.
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::BuiltIn(builtin::find("step").expect("step is built in"))
    );
}

/// A minimal valid application; tests append to it or change it.
const APP: &str = r#"[[application]]
name = "a"
[application.policy]
plugin = "step"
"#;

#[test]
fn minimal_application_is_valid_with_defaults() {
    let loaded = valid(APP);
    let app = &loaded.config.applications[0];
    assert_eq!(
        (
            app.min_kpu,
            app.max_kpu,
            app.update_poll_secs,
            app.grace_period_secs
        ),
        (1, 10, 60, 300)
    );
    assert!(loaded.base_dir.is_absolute());
    assert_eq!(loaded.plugin_dir, loaded.base_dir.join("plugins"));
    assert_eq!(loaded.state_dir, loaded.base_dir.join("state"));
    // `step` is built in and the (nonexistent) plugin folder has no file
    // to override it.
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::BuiltIn(builtin::find("step").expect("step is built in"))
    );
}

#[test]
fn plugin_names_and_paths_resolve_against_the_right_folders() {
    let text = r#"[agent]
plugin_dir = "../wasm"
state_dir = "/var/lib/flinkscale"
[[application]]
name = "a"
[application.policy]
plugin = "policies/target.wasm"
[[application.interpreter]]
plugin = "no-such-plugin"
[[application.interpreter]]
plugin = "local.wasm"
"#;
    let loaded = load_str(text, Path::new("/etc/flinkscale/agent.toml")).unwrap();
    assert_eq!(loaded.base_dir, Path::new("/etc/flinkscale"));
    assert_eq!(loaded.plugin_dir, Path::new("/etc/flinkscale/../wasm"));
    assert_eq!(loaded.state_dir, Path::new("/var/lib/flinkscale"));
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::File("/etc/flinkscale/policies/target.wasm".into())
    );
    assert_eq!(
        loaded.plugins[0].interpreters,
        vec![
            PluginSource::File("/etc/flinkscale/../wasm/no-such-plugin.wasm".into()),
            PluginSource::File("/etc/flinkscale/local.wasm".into())
        ]
    );
}

/// A key given twice is named: the parser's "duplicate key" says not
/// which.
#[test]
fn a_duplicate_key_is_named() {
    let text = "[[application]]\nname = \"a\"\ngrace_period_secs = 300\ngrace_period_secs = 200\n\
                dimensions = { Application = \"a\", Application = \"b\" }\n";
    assert_eq!(
        errors(text),
        [
            "config/x.toml:4:1: duplicate key `grace_period_secs` (a key is given once in a table; keep one of them)",
            "config/x.toml:5:35: duplicate key `Application` (a key is given once in a table; keep one of them)",
        ]
    );
}

/// A date-time where a number belongs is called one (the parser hands it
/// over as a map), and a policy written as a list of tables is told how
/// to write it.
#[test]
fn a_date_or_a_list_of_policies_is_called_what_it_is() {
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\ngrace_period_secs = 1979-05-27",
    );
    let errors = errors(&text);
    assert!(
        errors.iter().any(|e| e.contains(
            "grace_period_secs: invalid type: date-time 1979-05-27 (expected a whole number; valid: 0 to 4294967295"
        )),
        "{errors:?}"
    );
    let errors =
        super::tests::errors(&APP.replace("[application.policy]", "[[application.policy]]"));
    assert!(
        errors.iter().any(|e| e.ends_with(
            "(an application has one policy: write its table as [application.policy], not [[application.policy]])"
        )),
        "{errors:?}"
    );
    assert!(super::load::looks_like_a_date("07:32:00"));
    assert!(!super::load::looks_like_a_date("é1979-05-27"));
    assert!(!super::load::looks_like_a_date("{ a = 1 }"));
}

/// A bracket left open makes the parser report every line after it (107
/// errors for one `]`, the cause last, at the end of the file): only the
/// first is shown, saying what was left open and how many were left out.
/// A table given twice is called a table, once, not also its keys.
#[test]
fn a_bracket_left_open_or_a_table_given_twice_is_said_once() {
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\nrest_url = [\"http://h:8081\"",
    );
    let open = errors(&text);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].starts_with("config/x.toml:4:1: ")
            && open[0].contains("(an array `[` before this point is not closed with `]`; ")
            && open[0].contains(" more syntax errors after it, most from this one, not shown: fix it and validate again)"),
        "{open:?}"
    );
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\n[application.policy]\nplugin = \"step\"",
    );
    assert_eq!(
        errors(&text),
        [format!(
            "config/x.toml:{}:14: table [application.policy] is given twice (give each table once, merging \
             the two; a list of tables takes [[...]] for every entry, never [...])",
            text.lines()
                .enumerate()
                .filter(|(_, l)| *l == "[application.policy]")
                .nth(1)
                .map(|(i, _)| i + 1)
                .unwrap_or(0)
        )]
    );
    let text = format!("[agent]\nplugin_dir = \"p\"\n[agent]\nstate_dir = \"s\"\n{APP}");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:3:2: table [agent] is given twice (give each table once, merging the two; a \
          list of tables takes [[...]] for every entry, never [...])"
        ]
    );
}

/// Single and double brackets mixed up, and a required field left out, say
/// what to write.
#[test]
fn brackets_mixed_up_or_a_required_field_left_out_say_what_to_write() {
    assert_error(
        &format!("[[agent]]\nplugin_dir = \"p\"\n{APP}"),
        "config/x.toml:1:1: agent[0]: invalid type: map (the agent's settings are one table: write \
         [agent], not [[agent]])",
    );
    assert_error(
        &APP.replace("[[application]]", "[application]"),
        "config/x.toml:1:1: application: invalid type: map (a list of tables: write [[application]] \
         (double brackets) for each one, not [application])",
    );
    assert_error(
        &format!("{APP}[application.metric]\nid = \"m\"\nexpression = \"1\"\n"),
        &format!(
            "config/x.toml:{}:1: application \"a\".metric: invalid type: map (a list of tables: write \
             [[application.metric]] (double brackets) for each one, not [application.metric])",
            APP.lines().count() + 1
        ),
    );
    assert_error(
        &APP.replace("name = \"a\"", ""),
        "config/x.toml:1:1: application[0]: missing field `name` (every [[application]] needs name = \
         \"...\": the MSF application's name, or with target = \"flink\" the agent's name for the job \
         (1 to 128 letters, digits, '_', '.' or '-'))",
    );
    assert_error(
        &APP.replace("plugin = \"step\"", ""),
        "config/x.toml:3:1: application \"a\".policy: missing field `plugin` (plugin = a built-in \
         (policies step, hold, target-tracking, rate, predictive, flink-operator; interpreters \
         backlog-seconds, expression), a plugin name in plugin_dir, or a path to a .wasm component)",
    );
}

#[test]
fn syntax_errors_are_all_located() {
    let errors = errors("[[application]\nname = = \"a\"\n");
    assert_eq!(
        errors,
        [
            "config/x.toml:1:15: unclosed array table, expected `]`",
            "config/x.toml:2:8: extra `=`, expected nothing",
            "config/x.toml:2:10: unexpected key or value, expected newline, `#`",
        ]
    );
}

#[test]
fn unknown_field_is_located_with_the_valid_names() {
    let text = format!(
        "{APP}[[application.alarm]]\nid = \"x\"\nmetric = \"m\"\ncomparison = \"GreaterThanThreshold\"\nthreshold = 1.0\nevaluation_periods = 1\ntreat_missing = \"ignore\"\n"
    );
    assert_error(
        &text,
        "config/x.toml:11:1: application \"a\".alarm \"x\".treat_missing: unknown field `treat_missing` (did you mean `treat_missing_data`? expected one of `id`, `source`, `alarm_name`, `metric`, `comparison`, `threshold`, `evaluation_periods`, `datapoints_to_alarm`, `treat_missing_data`)",
    );
    assert_error(
        "[agnet]\nplugin_dir = \"p\"\n",
        "config/x.toml:1:2: agnet: unknown field `agnet` (did you mean `agent`? expected `agent` or `application`)",
    );
}

#[test]
fn wrong_type_is_located() {
    let text = APP.replace("name = \"a\"", "name = \"a\"\nmax_kpu = \"ten\"");
    assert_error(
        &text,
        "config/x.toml:3:11: application \"a\".max_kpu: invalid type: string \"ten\" (expected a whole number; valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
    );
    let text = format!(
        "{APP}[[application.metric]]\nid = \"m\"\nnamespace = \"N\"\nmetric_name = \"M\"\nstatistic = \"Sum\"\ndimensions = [\"Application\"]\n"
    );
    assert_error(
        &text,
        "config/x.toml:10:14: application \"a\".metric \"m\".dimensions: invalid type: sequence (expected a map)",
    );
}

/// A word-valued field given a number, a boolean, a list or a table says
/// what was given and the words it takes, at the field (the parser said
/// "wanted string or table", or complained inside the table it read as
/// the enum's variant).
#[test]
fn a_word_field_of_another_type_lists_its_words() {
    let app = |line: &str| APP.replace("name = \"a\"", &format!("name = \"a\"\n{line}"));
    let modes = "(expected `active`, `dry-run` or `paused`)";
    for (line, given) in [
        ("mode = 5", "integer"),
        ("mode = true", "boolean"),
        ("mode = [\"paused\"]", "array"),
        ("mode = { paused = true }", "table"),
        ("mode = {}", "table"),
    ] {
        assert_eq!(
            errors(&app(line)),
            [format!(
                "config/x.toml:3:8: application \"a\".mode: invalid type: {given}, not a word {modes}"
            )],
            "{line}"
        );
    }
    assert_eq!(
        errors(&app("target = 1")),
        [
            "config/x.toml:3:10: application \"a\".target: invalid type: integer, not a word (expected `msf` or `flink`)"
        ]
    );
    let alarm = format!(
        "{APP}[[application.metric]]\nid = \"m\"\nnamespace = \"N\"\nmetric_name = \"M\"\n\
         statistic = \"Sum\"\n[[application.alarm]]\nid = \"x\"\nmetric = \"m\"\n\
         comparison = 1\nthreshold = 1.0\nevaluation_periods = 1\n"
    );
    assert_error(
        &alarm,
        "config/x.toml:13:14: application \"a\".alarm \"x\".comparison: invalid type: integer, not a word (expected `GreaterThanOrEqualToThreshold`, `GreaterThanThreshold`, `LessThanThreshold` or `LessThanOrEqualToThreshold`)",
    );
}

/// A metric, alarm, interpreter or policy table with no `[[application]]`
/// before it is said as that, at its header, not as "application.metric[0]:
/// invalid type: map".
#[test]
fn a_sub_table_before_any_application_says_what_is_missing() {
    assert_eq!(
        errors("[[application.metric]]\nid = \"cpu\"\n"),
        [
            "config/x.toml:1:15: application: [[application.metric]] belongs to an application, and none comes before it (write [[application]] with its name (name = \"...\") above [[application.metric]])"
        ]
    );
    assert_eq!(
        errors("[application.policy]\nplugin = \"hold\"\n"),
        [
            "config/x.toml:1:14: application: [application.policy] belongs to an application, and none comes before it (write [[application]] with its name (name = \"...\") above [application.policy])"
        ]
    );
    // Before an [[application]] that comes later: the parser's "given
    // twice" is said as what happened.
    assert_eq!(
        errors("[[application.metric]]\nid = \"cpu\"\n\n[[application]]\nname = \"a\"\n"),
        [
            "config/x.toml:4:3: [[application]] comes after [[application.metric]], which belongs to an application (put each [[application.metric]], [[application.alarm]], [[application.interpreter]] and [application.policy] below the [[application]] it belongs to)"
        ]
    );
    // An [application] written with single brackets keeps its own hint.
    assert_eq!(
        errors("[application]\n[application.policy]\nplugin = \"hold\"\n"),
        [
            "config/x.toml:1:1: application: invalid type: map (a list of tables: write [[application]] (double brackets) for each one, not [application])"
        ]
    );
}

/// A metric's or an alarm's `source` refused is the one error of that
/// table: the default standing in (CloudWatch, a local alarm) would
/// report its own mistakes (a `namespace` missing, an alarm's `metric`
/// missing, `alarm_name` out of place) that the user never made. The
/// application's other mistakes are still said.
#[test]
fn a_source_refused_is_the_one_error_of_its_table() {
    let text = format!(
        "{APP}[[application.alarm]]\nid = \"x\"\nsource = \"Cloudwatch\"\nalarm_name = \"cpu-high\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:7:10: application \"a\".alarm \"x\".source: unknown variant `Cloudwatch` (did you mean `cloudwatch`? expected `local` or `cloudwatch`)"
        ]
    );
    // A mistake elsewhere in the application, and another table's
    // refused `source`, are said beside it.
    let text = text.replace("name = \"a\"", "name = \"a\"\nmin_kpu = 3\nmax_kpu = 2")
        + "[[application.metric]]\nid = \"m\"\nsource = \"Flink\"\nnamespace = \"N\"\n";
    let said = errors(&text);
    assert!(
        said.iter()
            .any(|e| e.contains("min_kpu 3 is greater than max_kpu 2"))
            && said
                .iter()
                .any(|e| e.contains("alarm \"x\".source: unknown variant"))
            && said
                .iter()
                .any(|e| e.contains("metric \"m\".source: unknown variant `Flink`")),
        "{said:#?}"
    );
    assert_eq!(said.len(), 3, "{said:#?}");
}

/// A wrong type does not hide the other mistakes of the same table: the
/// entry is left out, the table read with its default, and validated; what
/// the default itself would trip (here min_kpu 1 > max_kpu 0) is not
/// reported, since the user never wrote it.
#[test]
fn a_wrong_type_is_reported_with_the_other_errors_of_its_table() {
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\nmin_kpu = \"two\"\nmax_kpu = 0\ngrace_period_secs = -5",
    );
    let errors = errors(&text);
    assert_eq!(
        errors,
        [
            "config/x.toml:3:11: application \"a\".min_kpu: invalid type: string \"two\" (expected a whole number; valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
            "config/x.toml:4:11: application \"a\".max_kpu: max_kpu is 0 (valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
            "config/x.toml:5:21: application \"a\".grace_period_secs: invalid value: integer `-5` (expected a whole number; valid: 0 to 4294967295 seconds; default 300)",
        ],
        "{errors:#?}"
    );
}

#[test]
fn negative_values_are_located() {
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\nmin_kpu = -1\ngrace_period_secs = -5",
    );
    let errors = errors(&text);
    assert_eq!(
        errors,
        [
            "config/x.toml:3:11: application \"a\".min_kpu: invalid value: integer `-1` (expected a whole number; valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
            "config/x.toml:4:21: application \"a\".grace_period_secs: invalid value: integer `-5` (expected a whole number; valid: 0 to 4294967295 seconds; default 300)",
        ]
    );
}

#[test]
fn missing_required_field_points_at_its_table() {
    assert_error(
        "[[application]]\nname = \"a\"\n",
        "config/x.toml:1:1: application \"a\": missing field `policy` (every application needs an \
         [application.policy] table with a plugin, e.g. plugin = \"step\" (the reference design) or \
         plugin = \"predictive\")",
    );
    let text = format!(
        "{APP}[[application.metric]]\nid = \"m\"\nnamespace = \"N\"\nstatistic = \"Sum\"\n"
    );
    assert_error(
        &text,
        "config/x.toml:5:1: application \"a\".metric \"m\": missing field `metric_name` (a CloudWatch \
         metric needs namespace, metric_name and statistic, e.g. namespace = \"AWS/KinesisAnalytics\", \
         metric_name = \"containerCPUUtilization\", statistic = \"Maximum\"; or give expression = \
         \"...\" (metric math over this application's other metrics) instead of all three)",
    );
}

#[test]
fn a_required_field_of_the_wrong_type_is_reported_once_not_also_as_missing() {
    // The operator's drill: `threshold = "80"` was reported as a wrong type
    // and, at the alarm's header, as `missing field `threshold``.
    let text = format!(
        r#"{APP}[[application.metric]]
id = "m"
namespace = "N"
metric_name = 5
statistic = "Sum"
[[application.alarm]]
id = "hi"
metric = "m"
comparison = "GreaterThanThreshold"
threshold = "80"
evaluation_periods = "5"
[[application.alarm]]
id = "lo"
metric = "m"
comparison = "LessThanThreshold"
"#
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:8:15: application \"a\".metric \"m\".metric_name: invalid type: integer `5` (expected a string)",
            "config/x.toml:14:13: application \"a\".alarm \"hi\".threshold: invalid type: string \"80\" (expected a number)",
            "config/x.toml:15:22: application \"a\".alarm \"hi\".evaluation_periods: invalid type: string \"5\" (expected a whole number; valid: 1 or more, with evaluation_periods x period_secs <= 86400 (a day); the reference design uses 5)",
            "config/x.toml:16:1: application \"a\".alarm \"lo\": missing field `threshold` (a local alarm needs metric, comparison, threshold and evaluation_periods; or give source = \"cloudwatch\" and alarm_name to use an existing CloudWatch alarm)",
            "config/x.toml:16:1: application \"a\".alarm \"lo\": missing field `evaluation_periods` (a local alarm needs metric, comparison, threshold and evaluation_periods; or give source = \"cloudwatch\" and alarm_name to use an existing CloudWatch alarm)",
        ],
        "a field given with a wrong value is not missing; one left out still is"
    );
}

#[test]
fn no_application_is_an_error() {
    assert_eq!(
        errors("[agent]\nplugin_dir = \"p\"\n"),
        [
            "config/x.toml:1:1: application: no application is configured (add an [[application]] table with a name and an [application.policy])"
        ]
    );
    assert_eq!(errors("").len(), 1);
}

#[test]
fn duplicate_application_names_are_reported_at_the_second() {
    let text = format!("{APP}{APP}");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:6:8: application \"a\".name: application \"a\" is configured twice (each application appears once; first at application[0])"
        ]
    );
}

#[test]
fn kpu_bounds_are_checked() {
    let text = APP.replace("name = \"a\"", "name = \"a\"\nmin_kpu = 0");
    assert_error(
        &text,
        "config/x.toml:3:11: application \"a\".min_kpu: min_kpu is 0 (valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
    );
    let text = APP.replace("name = \"a\"", "name = \"a\"\nmin_kpu = 12");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:3:11: application \"a\".min_kpu: min_kpu 12 is greater than max_kpu 10 (valid: min_kpu <= max_kpu)"
        ]
    );
}

#[test]
fn zero_intervals_are_refused_but_a_zero_grace_period_is_allowed() {
    let text = APP.replace(
        "name = \"a\"",
        "name = \"a\"\nupdate_poll_secs = 0\nupdate_timeout_secs = 0\nevaluation_interval_secs = 0",
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:3:20: application \"a\".update_poll_secs: update_poll_secs is 0 (valid: 1 to 4294967295; the reference template's default UpdateApplicationWaitingTime is 15)",
            "config/x.toml:4:23: application \"a\".update_timeout_secs: update_timeout_secs is 0 (valid: 1 to 4294967295; default 1800)",
            "config/x.toml:5:28: application \"a\".evaluation_interval_secs: evaluation_interval_secs is 0 (valid: 1 to 86400 (a day), or leave it out to use the shortest metric period)",
        ]
    );
    valid(&APP.replace("name = \"a\"", "name = \"a\"\ngrace_period_secs = 0"));
}

#[test]
fn a_defaulted_field_in_error_points_at_its_table_header() {
    // update_timeout_secs is left at its default (1800), shorter than the poll.
    let text = APP.replace("name = \"a\"", "name = \"a\"\nupdate_poll_secs = 3600");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:1:1: application \"a\".update_timeout_secs: update_timeout_secs 1800 is shorter than update_poll_secs 3600, so an update would time out before its first poll (valid: update_timeout_secs >= update_poll_secs)"
        ]
    );
}

/// APP with one metric `cpu`, then `extra` lines appended.
fn with_metric(metric: &str, extra: &str) -> String {
    format!(
        "{APP}[[application.metric]]\nnamespace = \"AWS/KinesisAnalytics\"\nmetric_name = \"containerCPUUtilization\"\n{metric}\n{extra}"
    )
}

#[test]
fn metric_ids_must_be_query_ids_and_unique() {
    let text = with_metric("id = \"Cpu\"\nstatistic = \"Maximum\"", "");
    assert_error(
        &text,
        "config/x.toml:8:6: application \"a\".metric \"Cpu\".id: \"Cpu\" is not a valid metric id (a lower-case letter, then letters, digits or '_' (a CloudWatch query id), e.g. \"cpu\" or \"max_lag\")",
    );
    for id in ["1cpu", "cpu-max", "", "c\u{e9}"] {
        let text = with_metric(&format!("id = {id:?}\nstatistic = \"Maximum\""), "");
        assert_eq!(errors(&text).len(), 1, "{id:?} accepted");
    }
    valid(&with_metric(
        "id = \"cpu_Max2\"\nstatistic = \"Maximum\"",
        "",
    ));
    let twice = with_metric(
        "id = \"cpu\"\nstatistic = \"Maximum\"",
        "[[application.metric]]\nid = \"cpu\"\nnamespace = \"N\"\nmetric_name = \"M\"\nstatistic = \"Sum\"\n",
    );
    assert_eq!(
        errors(&twice),
        [
            "config/x.toml:11:6: application \"a\".metric \"cpu\".id: metric id \"cpu\" is used twice in this application (metric ids are unique within an application)"
        ]
    );
}

#[test]
fn statistics_are_the_named_ones_or_percentiles() {
    for ok in [
        "Average",
        "Maximum",
        "Minimum",
        "Sum",
        "SampleCount",
        "p99",
        "p50",
        "p100",
        "p99.9",
        "p99.99",
        "p0.1",
        "p1",
    ] {
        assert!(is_statistic(ok), "{ok} refused");
    }
    for bad in [
        "maximum", "Max", "p", "p0", "p0.00", "p100.01", "p101", "p99.999", "p-1", "p 99", "p99.",
        "p.5", "P99", "",
    ] {
        assert!(!is_statistic(bad), "{bad} accepted");
    }
    assert_error(
        &with_metric("id = \"cpu\"\nstatistic = \"max\"", ""),
        "config/x.toml:9:13: application \"a\".metric \"cpu\".statistic: \"max\" is not a statistic (valid: \"Average\", \"Maximum\", \"Minimum\", \"Sum\", \"SampleCount\", or a percentile \"pNN\" or \"pNN.NN\" above 0 and up to 100, e.g. \"p99\")",
    );
}

#[test]
fn periods_are_those_cloudwatch_accepts() {
    for ok in [10, 20, 30, 60, 120, 300, 3600, 86400] {
        valid(&with_metric(
            &format!("id = \"cpu\"\nstatistic = \"Sum\"\nperiod_secs = {ok}"),
            "",
        ));
    }
    for bad in [0, 1, 5, 15, 45, 90, 61] {
        let errors = errors(&with_metric(
            &format!("id = \"cpu\"\nstatistic = \"Sum\"\nperiod_secs = {bad}"),
            "",
        ));
        assert_eq!(
            errors,
            [format!(
                "config/x.toml:10:15: application \"a\".metric \"cpu\".period_secs: period_secs {bad} is not a CloudWatch period (valid: 10, 20, 30 or a multiple of 60)"
            )]
        );
    }
}

#[test]
fn a_publication_delay_promise_is_1_to_3600_seconds() {
    for ok in [1, 60, 3600] {
        valid(&with_metric(
            &format!("id = \"cpu\"\nstatistic = \"Sum\"\nmin_publication_delay_secs = {ok}"),
            "",
        ));
    }
    for bad in [0, 3601, 86400] {
        let errors = errors(&with_metric(
            &format!("id = \"cpu\"\nstatistic = \"Sum\"\nmin_publication_delay_secs = {bad}"),
            "",
        ));
        assert_eq!(
            errors,
            [format!(
                "config/x.toml:10:30: application \"a\".metric \"cpu\".min_publication_delay_secs: min_publication_delay_secs {bad} is out of range (valid: 1 to 3600 seconds, or leave it out for no promise)"
            )]
        );
    }
}

/// APP with metric `cpu` (60 s) and one alarm made of `alarm` lines.
fn with_alarm(alarm: &str) -> String {
    with_metric(
        "id = \"cpu\"\nstatistic = \"Maximum\"",
        &format!(
            "[[application.alarm]]\nid = \"scale-out\"\ncomparison = \"GreaterThanThreshold\"\n{alarm}\n"
        ),
    )
}

#[test]
fn an_alarm_must_name_an_existing_metric() {
    let text = with_alarm("metric = \"cpuu\"\nthreshold = 80.0\nevaluation_periods = 5");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:13:10: application \"a\".alarm \"scale-out\".metric: no metric with id \"cpuu\" in this application (valid: \"cpu\")"
        ]
    );
}

#[test]
fn alarm_periods_and_datapoints_are_checked() {
    let text = with_alarm(
        "metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 5\ndatapoints_to_alarm = 6",
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:16:23: application \"a\".alarm \"scale-out\".datapoints_to_alarm: datapoints_to_alarm 6 is not between 1 and evaluation_periods 5 (valid: 1 to 5)"
        ]
    );
    let text = with_alarm(
        "metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 5\ndatapoints_to_alarm = 0",
    );
    assert_eq!(errors(&text).len(), 1);
    let text = with_alarm("metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 0");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:15:22: application \"a\".alarm \"scale-out\".evaluation_periods: evaluation_periods is 0 (valid: 1 or more, with evaluation_periods x period_secs <= 86400 (a day); the reference design uses 5)"
        ]
    );
    valid(&with_alarm(
        "metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 1440",
    ));
    let text = with_alarm("metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 1441");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:15:22: application \"a\".alarm \"scale-out\".evaluation_periods: evaluation_periods 1441 x period_secs 60 of metric \"cpu\" = 86460 s, more than one day (valid: evaluation_periods x period_secs <= 86400, here evaluation_periods <= 1440)"
        ]
    );
    // A period longer than a day: no evaluation_periods helps ("here
    // evaluation_periods <= 0" said an impossible range).
    let text = with_metric(
        "id = \"cpu\"\nstatistic = \"Maximum\"\nperiod_secs = 172800",
        "[[application.alarm]]\nid = \"scale-out\"\ncomparison = \"GreaterThanThreshold\"\n\
         metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 1\n",
    );
    let errors = errors(&text);
    assert!(
        errors.iter().any(|e| e.ends_with(
            "(valid: evaluation_periods x period_secs <= 86400; period_secs 172800 alone is \
             longer, so shorten the metric's period)"
        )),
        "{errors:?}"
    );
}

/// An interval of more than a day (1e8 s) is refused, and an alarm on a
/// signal (one value per evaluation) is held to the one-day window as an
/// alarm on a metric is: the rule skipped alarms on signals.
#[test]
fn intervals_and_signal_alarm_windows_are_held_to_one_day() {
    let text = std::fs::read_to_string(config_dir().join("msk-backlog-seconds.toml"))
        .expect("the example");
    let with_interval = |secs: u32| {
        text.replacen(
            "[[application]]\n",
            &format!("[[application]]\nevaluation_interval_secs = {secs}\n"),
            1,
        )
    };
    valid(&with_interval(3600));
    let found = errors(&with_interval(100_000_000));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with(
            "evaluation_interval_secs: evaluation_interval_secs 100000000 is more than one day \
             (valid: 1 to 86400, or leave it out to use the shortest metric period)"
        ),
        "{found:?}"
    );
    let found = errors(&with_interval(36_000));
    assert!(
        found.iter().any(|e| e.contains(
            "alarm \"behind\".evaluation_periods: evaluation_periods 5 x the evaluation \
             interval 36000 s of signal \"seconds_behind\" = 180000 s, more than one day \
             (valid: evaluation_periods x evaluation interval <= 86400, here \
             evaluation_periods <= 2)"
        )),
        "{found:?}"
    );
}

/// With no metric and no `evaluation_interval_secs`, a signal's period is
/// the 60 s the agent evaluates at: the one-day rule holds there too. It
/// was skipped, and an alarm of 4000000000 periods passed validation and
/// ended the agent at its first evaluation (a range that size could not be
/// allocated).
#[test]
fn a_signal_alarm_with_no_metric_is_held_to_one_day_at_60_s() {
    let text = |n: u64| {
        format!(
            "[[application]]\nname = \"app\"\n\
             [[application.interpreter]]\nplugin = \"expression\"\n\
             params = {{ signals = {{ one = \"1\" }} }}\n\
             [[application.alarm]]\nid = \"big\"\nmetric = \"one\"\n\
             comparison = \"GreaterThanThreshold\"\nthreshold = 0.0\n\
             evaluation_periods = {n}\n\
             [application.policy]\nplugin = \"hold\"\n"
        )
    };
    valid(&text(1440));
    for n in [1441, 4_000_000_000] {
        let found = errors(&text(n));
        assert_eq!(found.len(), 1, "{n}: {found:?}");
        assert!(
            found[0].contains(&format!(
                "alarm \"big\".evaluation_periods: evaluation_periods {n} x the evaluation \
                 interval 60 s of signal \"one\" = {} s, more than one day",
                n * 60
            )),
            "{n}: {found:?}"
        );
    }
}

/// A metric period is at most a day: ten periods of a year's made the agent
/// ask for ten years of every metric at each evaluation (refused by the
/// emulator, more than CloudWatch keeps), and validation let it through.
#[test]
fn a_metric_period_is_at_most_a_day() {
    let metric = |period: u32| {
        with_metric(
            &format!("id = \"cpu\"\nstatistic = \"Maximum\"\nperiod_secs = {period}"),
            "",
        )
    };
    valid(&metric(86_400));
    for period in [86_460, 604_800, 31_536_000] {
        assert_eq!(
            errors(&metric(period)),
            [format!(
                "config/x.toml:10:15: application \"a\".metric \"cpu\".period_secs: period_secs \
                 {period} is more than one day (valid: 10, 20, 30 or a multiple of 60 up to 86400)"
            )]
        );
    }
}

/// CloudWatch keeps datapoints of a period under a minute for 3 hours, and
/// answers a query of such a period that starts earlier with none. Every
/// metric of an application is read over one window (the longest alarm's
/// range, ten periods of the longest metric): a 10 s metric beside an
/// hourly one, or under an alarm of 8000 periods, passed validation and
/// could never be read on AWS.
#[test]
fn a_sub_minute_metric_is_read_within_the_three_hours_cloudwatch_keeps_it() {
    let fast = "id = \"cpu\"\nstatistic = \"Maximum\"\nperiod_secs = 10";
    let slow = "[[application.metric]]\nid = \"slow\"\nnamespace = \"Mine\"\n\
                metric_name = \"Backlog\"\nstatistic = \"Maximum\"\nperiod_secs = ";
    valid(&with_metric(fast, &format!("{slow}1080")));
    let found = errors(&with_metric(fast, &format!("{slow}3600")));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "config/x.toml:10:15: application \"a\".metric \"cpu\".period_secs: a 10 s period, \
             which CloudWatch keeps for 10800 s (3 hours), in an application whose metrics are \
             read over the last 36000 s"
        ),
        "{found:?}"
    );
    let alarm = |n: u32| {
        format!(
            "[[application.alarm]]\nid = \"hot\"\nmetric = \"cpu\"\n\
             comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = {n}\n"
        )
    };
    // 1077 + 3 periods of 10 s: the whole range within 3 hours.
    valid(&with_metric(fast, &alarm(1077)));
    let found = errors(&with_metric(fast, &alarm(8000)));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("read over the last 80030 s"), "{found:?}");
    // A Flink metric is sampled by the agent: CloudWatch keeps nothing.
    let flink = "[[application]]\nname = \"a\"\ntarget = \"flink\"\n\
                 rest_url = \"http://127.0.0.1:8081\"\n\
                 [[application.metric]]\nid = \"busy\"\nsource = \"flink\"\n\
                 metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Maximum\"\nperiod_secs = 10\n\
                 [[application.metric]]\nid = \"slow\"\nsource = \"flink\"\n\
                 metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Maximum\"\nperiod_secs = 3600\n\
                 [application.policy]\nplugin = \"hold\"\n";
    valid(flink);
    // Nor does Flink keep a history to read: a warning, the setting is
    // harmless.
    let loaded = valid(&flink.replace(
        "plugin = \"hold\"\n",
        "plugin = \"hold\"\nhistory_days = 7\n",
    ));
    let warned: Vec<String> =
        super::validate::history_warnings(loaded.config.applications.iter().enumerate())
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(
        warned,
        [
            "application[0].policy.history_days: history_days 7 reads the history CloudWatch \
          keeps, but every metric of this application comes from Flink, which keeps none: \
          nothing is read (leave it out; the policy learns from what it sees while it runs)"
        ]
    );
}

/// Numbers past what TOML or an f64 holds are said with the range, not
/// in the parser's words alone.
#[test]
fn numbers_too_large_for_toml_say_the_range() {
    let text = with_alarm("metric = \"cpu\"\nthreshold = 1e309\nevaluation_periods = 5");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:14:13: application \"a\".alarm \"scale-out\".threshold: the number is too large for a floating-point number (expected a finite number, up to about 1.8e308 in size)"
        ]
    );
    let text = format!("{APP}params = {{ big = 99999999999999999999 }}\n");
    let errors = errors(&text);
    assert!(
        errors.len() == 1
            && errors[0].contains(".policy.params.big: invalid type: integer `99999999999999999999` (expected an integer from -9223372036854775808 to 9223372036854775807 (TOML's), or a number with a decimal point"),
        "{errors:?}"
    );
}

/// An alarm id whose CloudWatch mirror (`alarms sync`'s
/// `flinkscale-<application>-<id>`) CloudWatch would refuse is refused
/// here, with the longest id that fits; one at that length is valid.
#[test]
fn an_alarm_id_must_fit_its_cloudwatch_mirror_name() {
    let body = "metric = \"cpu\"\nthreshold = 80.0\nevaluation_periods = 5";
    // flinkscale-a-<id>: 13 characters before the id.
    let fits = "x".repeat(242);
    let text = with_alarm(body).replace("\"scale-out\"", &format!("{fits:?}"));
    valid(&text);
    let long = "x".repeat(243);
    let text = with_alarm(body).replace("\"scale-out\"", &format!("{long:?}"));
    assert_eq!(
        errors(&text),
        [format!(
            "config/x.toml:11:6: application \"a\".alarm {long:?}.id: alarm id {long:?} is too \
             long: the CloudWatch alarm `flinkscale alarms sync` makes of it, \
             flinkscale-<application>-<id>, would be 256 characters, and CloudWatch takes at \
             most 255 (an id of at most 242 characters for application \"a\")"
        )]
    );
}

#[test]
fn thresholds_must_be_finite() {
    for value in ["nan", "inf", "-inf"] {
        let text = with_alarm(&format!(
            "metric = \"cpu\"\nthreshold = {value}\nevaluation_periods = 5"
        ));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{value}: {errors:?}");
        assert!(
            errors[0].starts_with(
                "config/x.toml:14:13: application \"a\".alarm \"scale-out\".threshold: threshold "
            ),
            "{}",
            errors[0]
        );
    }
}

#[test]
fn alarm_ids_must_be_unique() {
    let alarm = "[[application.alarm]]\nid = \"out\"\nmetric = \"cpu\"\ncomparison = \"GreaterThanThreshold\"\nthreshold = 1.0\nevaluation_periods = 1\n";
    let text = with_metric(
        "id = \"cpu\"\nstatistic = \"Sum\"",
        &format!("{alarm}{alarm}"),
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:17:6: application \"a\".alarm \"out\".id: alarm id \"out\" is used twice in this application (alarm ids are unique within an application)"
        ]
    );
}

/// APP with a metric `cpu`, alarms `high` and `low`, and the policy params
/// replaced by `params`.
fn with_params(params: &str) -> String {
    let alarms = "[[application.alarm]]\nid = \"high\"\nmetric = \"cpu\"\ncomparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 5\n\
                  [[application.alarm]]\nid = \"low\"\nmetric = \"cpu\"\ncomparison = \"LessThanOrEqualToThreshold\"\nthreshold = 20.0\nevaluation_periods = 5\n";
    with_metric("id = \"cpu\"\nstatistic = \"Maximum\"", alarms).replace(
        "plugin = \"step\"\n",
        &format!("plugin = \"step\"\nparams = {params}\n"),
    )
}

/// The problems of the `_alarm` / `_metric` naming convention in the params
/// of `text`'s first application's policy (or, with `interpreter`, of that
/// interpreter), located: what `validate` says of a plugin that declares no
/// parameters (contract 0.1.0), once it has loaded it.
fn conventional_problems(text: &str, interpreter: Option<usize>) -> Vec<String> {
    // Located in the file read again, as `validate` locates them.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("x.toml");
    std::fs::write(&file, text).expect("the file is written");
    let loaded = load::load(&file).expect("a valid configuration");
    let app = &loaded.config.applications[0];
    let at = FieldPath::root().key("application").index(0);
    let (at, plugin) = match interpreter {
        None => (at.key("policy"), &app.policy),
        Some(k) => (at.key("interpreter").index(k), &app.interpreters[k]),
    };
    let problems = super::validate::conventional_references(&at.key("params"), &plugin.params, app);
    let mut located: Vec<String> = load::locate(&loaded, &problems)
        .iter()
        .map(|e| {
            e.to_string()
                .replace(&file.display().to_string(), "config/x.toml")
        })
        .collect();
    located.sort();
    located
}

/// Loading checks only what needs no plugin: whether a key names an alarm
/// or a metric is the plugin's to declare (a `display_metric` may be text),
/// so the naming convention is applied once the plugin is loaded and found
/// to declare nothing.
#[test]
fn policy_params_naming_alarms_and_metrics_follow_the_convention() {
    let conventional = |params: &str| conventional_problems(&with_params(params), None);
    assert!(
        conventional("{ scale_out_alarm = \"high\", scale_in_alarm = \"low\", operation = \"multiply\", scale_out_factor = 2, scale_in_factor = 2 }")
            .is_empty()
    );
    assert_eq!(
        conventional("{ scale_out_alarm = \"hihg\", scale_in_alarm = \"low\" }"),
        [
            "config/x.toml:5:30: application \"a\".policy.params.scale_out_alarm: no alarm with id \"hihg\" in this application (valid: \"high\", \"low\")"
        ]
    );
    let params =
        "{ scale_in_alarm = 3, watch_metric = \"mem\", extra_metrics = [\"cpu\", \"lag\"] }";
    valid(&with_params(params));
    assert_eq!(
        conventional(params),
        [
            "config/x.toml:5:29: application \"a\".policy.params.scale_in_alarm: scale_in_alarm must be a string naming an alarm id, not an integer (valid: \"high\", \"low\")",
            "config/x.toml:5:47: application \"a\".policy.params.watch_metric: no metric with id \"mem\" in this application (valid: \"cpu\")",
            "config/x.toml:5:78: application \"a\".policy.params.extra_metrics[1]: no metric with id \"lag\" in this application (valid: \"cpu\")",
        ]
    );
    // Interpreters follow the same convention.
    let text = format!(
        "{APP}[[application.interpreter]]\nplugin = \"rate\"\nparams = {{ input_metric = \"x\" }}\n"
    );
    assert_eq!(
        conventional_problems(&text, Some(0)),
        [
            "config/x.toml:7:27: application \"a\".interpreter[0].params.input_metric: no metric with id \"x\" in this application (this application defines no metrics)"
        ]
    );
}

#[test]
fn params_that_json_cannot_carry_are_refused() {
    let text = with_params("{ weights = [1.0, { w = nan }] }");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:5:34: application \"a\".policy.params.weights[1].w: NaN cannot be passed to a plugin (plugin parameters are JSON, which has no nan or inf)"
        ]
    );
}

#[test]
fn plugin_limits_are_checked() {
    let text = format!("[agent]\nplugin_timeout_ms = 0\nplugin_memory_limit_bytes = 65536\n{APP}");
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:2:21: agent.plugin_timeout_ms: plugin_timeout_ms 0 is out of range (valid: 1 to 60000; default 100)",
            "config/x.toml:3:29: agent.plugin_memory_limit_bytes: plugin_memory_limit_bytes 65536 is out of range (valid: 1048576 (1 MiB) to 4294967296 (4 GiB); default 67108864 (64 MiB))",
        ]
    );
    valid(&format!(
        "[agent]\nplugin_timeout_ms = 250\nplugin_memory_limit_bytes = 1048576\n{APP}"
    ));
}

#[test]
fn the_plugin_compile_timeout_is_checked_and_reaches_the_sandbox() {
    let loaded = valid(APP);
    assert_eq!(
        loaded.config.agent.sandbox_limits().compile_timeout,
        std::time::Duration::from_secs(60)
    );
    let loaded = valid(&format!(
        "[agent]\nplugin_compile_timeout_secs = 300\n{APP}"
    ));
    assert_eq!(
        loaded.config.agent.sandbox_limits().compile_timeout,
        std::time::Duration::from_secs(300)
    );
    assert_eq!(
        errors(&format!("[agent]\nplugin_compile_timeout_secs = 0\n{APP}")),
        [
            "config/x.toml:2:31: agent.plugin_compile_timeout_secs: plugin_compile_timeout_secs 0 is out of range (valid: 1 to 3600; default 60)"
        ]
    );
}

#[test]
fn plugin_quarantine_settings_are_checked() {
    let loaded = valid(APP);
    assert_eq!(loaded.config.agent.plugin_quarantine_after_failures, 3);
    assert_eq!(loaded.config.agent.plugin_quarantine_secs, 300);
    let text = format!(
        "[agent]\nplugin_quarantine_after_failures = 0\nplugin_quarantine_secs = 7200\n{APP}"
    );
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:2:36: agent.plugin_quarantine_after_failures: plugin_quarantine_after_failures 0 is out of range (valid: 1 to 1000; default 3)",
            "config/x.toml:3:26: agent.plugin_quarantine_secs: plugin_quarantine_secs 7200 is out of range (valid: 1 to 3600 (an hour, the longest quarantine); default 300)",
        ]
    );
    let loaded = valid(&format!(
        "[agent]\nplugin_quarantine_after_failures = 1\nplugin_quarantine_secs = 3600\n{APP}"
    ));
    assert_eq!(loaded.config.agent.plugin_quarantine_after_failures, 1);
}

#[test]
fn every_error_in_a_file_is_reported_in_file_order() {
    let text = r#"[agent]
plugin_timeout_ms = -3

[[application]]
name = "first"
min_kpu = 4
max_kpu = 2
colour = "blue"

[[application.metric]]
id = "lag"
namespace = "AWS/Kafka"
metric_name = "MaxOffsetLag"
statistic = "Maximum"
period_secs = 45

[[application.alarm]]
id = "out"
metric = "lagg"
comparison = "GreaterThanThreshold"
threshold = 1.0
evaluation_periods = 3
datapoints_to_alarm = 4

[application.policy]
plugin = "step"
params = { scale_out_alarm = "ot" }

[[application]]
name = "second"
min_kpu = 0
[application.policy]
plugin = "step"
"#;
    assert_eq!(
        errors(text),
        [
            "config/x.toml:2:21: agent.plugin_timeout_ms: invalid value: integer `-3` (expected a whole number; valid: 1 to 60000; default 100)",
            "config/x.toml:6:11: application \"first\".min_kpu: min_kpu 4 is greater than max_kpu 2 (valid: min_kpu <= max_kpu)",
            "config/x.toml:8:1: application \"first\".colour: unknown field `colour` (expected one of `name`, `target`, `rest_url`, `job_name`, `job_id`, `min_parallelism`, `max_parallelism`, `min_kpu`, `max_kpu`, `evaluation_interval_secs`, `update_poll_secs`, `update_timeout_secs`, `grace_period_secs`, `metric`, `alarm`, `interpreter`, `policy`, `mode`, `lazy_polling`)",
            "config/x.toml:15:15: application \"first\".metric \"lag\".period_secs: period_secs 45 is not a CloudWatch period (valid: 10, 20, 30 or a multiple of 60)",
            "config/x.toml:19:10: application \"first\".alarm \"out\".metric: no metric with id \"lagg\" in this application (valid: \"lag\")",
            "config/x.toml:23:23: application \"first\".alarm \"out\".datapoints_to_alarm: datapoints_to_alarm 4 is not between 1 and evaluation_periods 3 (valid: 1 to 3)",
            "config/x.toml:31:11: application \"second\".min_kpu: min_kpu is 0 (valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
        ],
        "a parse error (the unknown `colour`) no longer hides the other errors of its application: \
         every error of the file in one pass"
    );
    let fixed = text
        .replace("plugin_timeout_ms = -3", "")
        .replace("colour = \"blue\"", "");
    assert_eq!(
        errors(&fixed),
        [
            "config/x.toml:6:11: application \"first\".min_kpu: min_kpu 4 is greater than max_kpu 2 (valid: min_kpu <= max_kpu)",
            "config/x.toml:15:15: application \"first\".metric \"lag\".period_secs: period_secs 45 is not a CloudWatch period (valid: 10, 20, 30 or a multiple of 60)",
            "config/x.toml:19:10: application \"first\".alarm \"out\".metric: no metric with id \"lagg\" in this application (valid: \"lag\")",
            "config/x.toml:23:23: application \"first\".alarm \"out\".datapoints_to_alarm: datapoints_to_alarm 4 is not between 1 and evaluation_periods 3 (valid: 1 to 3)",
            "config/x.toml:31:11: application \"second\".min_kpu: min_kpu is 0 (valid: 1 to 4294967295; an MSF application runs on at least 1 KPU)",
        ]
    );
}

#[test]
fn several_parse_errors_in_one_table_are_all_reported() {
    let text = r#"[[application]]
name = 5
min_kpu = "one"
max_kpus = 3
[application.policy]
plugin = "step"
params = 7
[[application.metric]]
id = "m"
namespace = "N"
metric_name = "M"
statistic = "Sum"
period_secs = "60"
dimensions = { A = 1 }
"#;
    let errors = errors(text);
    let located: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        located,
        [
            "config/x.toml:2:8",
            "config/x.toml:3:11",
            "config/x.toml:4:1",
            "config/x.toml:7:10",
            "config/x.toml:13:15",
            "config/x.toml:14:20"
        ],
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains("missing field")),
        "{errors:#?}"
    );
}

/// A state folder that is a file is an error of the configuration, found
/// by `validate`, where `run` failed at its start with "File exists"
/// without naming the setting.
#[test]
fn the_environment_step_finds_a_state_dir_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), b"").unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, format!("[agent]\nstate_dir = \"afile\"\n{APP}")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert_eq!(
        rendered,
        format!(
            "{}:2:13: agent.state_dir: state_dir {}/afile is a file, not a folder (valid: a \
             folder the agent may create or write; without [agent] state_dir, \
             $STATE_DIRECTORY, else `state` beside the configuration)",
            path.display(),
            dir.path().display()
        )
    );
    // Under a file, it cannot be created (validate passed it, and `run`
    // failed at its start with "Not a directory").
    std::fs::write(&path, format!("[agent]\nstate_dir = \"afile/x/y\"\n{APP}")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "agent.state_dir: state_dir {0}/afile/x/y cannot be created: {0}/afile is a file, \
             not a folder",
            dir.path().display()
        )),
        "{rendered}"
    );
    // A plugin folder that is a file is refused as well (it left every
    // plugin to the built-ins without a word).
    std::fs::write(&path, format!("[agent]\nplugin_dir = \"afile\"\n{APP}")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "agent.plugin_dir: plugin_dir {}/afile is a file, not a folder",
            dir.path().display()
        )),
        "{rendered}"
    );
    std::fs::remove_file(dir.path().join("afile")).unwrap();
    load(&path).expect("a state folder not there yet is made at the start");
}

/// A file saved as Latin-1 is said by the line and column of its first
/// byte that is not UTF-8, not only "stream did not contain valid UTF-8".
#[test]
fn a_file_that_is_not_utf8_is_said_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        b"[[application]]\nname = \"\xc3\xa9t\xc3\xa9\" # caf\xe9\n",
    )
    .unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert_eq!(
        rendered,
        format!(
            "{}: cannot read the configuration: line 2, column 19: byte 0xE9 is not UTF-8 \
             (save the file as UTF-8)",
            path.display()
        )
    );
}

#[test]
fn the_environment_step_finds_missing_plugins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/step.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("plugins/target.wasm"), b"\0asm").unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, APP).unwrap();
    let loaded = load(&path).expect("step.wasm is there");
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::File(dir.path().join("plugins/step.wasm"))
    );

    let text = format!(
        "{}[[application.interpreter]]\nplugin = \"lib/rate.wasm\"\n",
        APP.replace("\"step\"", "\"stpe\"")
    );
    std::fs::write(&path, text).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    let file = path.display();
    let root = dir.path().display();
    assert_eq!(
        rendered,
        format!(
            "{file}:4:10: application \"a\".policy.plugin: plugin \"stpe\" not found at {root}/plugins/stpe.wasm (did you mean \"step\"? built-in: \"step\", \"hold\", \"target-tracking\", \"rate\", \"backlog-seconds\", \"expression\", \"flink-operator\", \"predictive\"; in plugin_dir: \"step\", \"target\")\n\
             {file}:6:10: application \"a\".interpreter[0].plugin: plugin \"lib/rate.wasm\" not found at {root}/lib/rate.wasm (a path is relative to the configuration file's folder)"
        )
    );
    // A folder where the file should be is said to be one.
    std::fs::create_dir_all(dir.path().join("lib/rate.wasm")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "application \"a\".interpreter[0].plugin: plugin \"lib/rate.wasm\" is {root}/lib/rate.wasm, a folder, not a component file"
        )),
        "{rendered}"
    );
    // A device, or a link that loops, is said to be what it is, not
    // missing.
    std::fs::remove_dir_all(dir.path().join("lib/rate.wasm")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("lib/rate.wasm")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "plugin \"lib/rate.wasm\" is {root}/lib/rate.wasm, not a regular file (a device, a \
             FIFO or a socket), not a component file"
        )),
        "{rendered}"
    );
    std::fs::remove_file(dir.path().join("lib/rate.wasm")).unwrap();
    std::os::unix::fs::symlink("rate.wasm", dir.path().join("lib/rate.wasm")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "plugin \"lib/rate.wasm\" at {root}/lib/rate.wasm cannot be read: "
        )),
        "{rendered}"
    );

    // Without the plugin folder, a built-in name needs no file, and an
    // unknown name's hint lists the built-ins.
    std::fs::remove_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(&path, APP).unwrap();
    let loaded = load(&path).expect("step is built in");
    assert!(loaded.plugins[0].policy.is_builtin());
    std::fs::write(&path, APP.replace("\"step\"", "\"stpe\"")).unwrap();
    let rendered = load(&path).unwrap_err().to_string();
    assert!(
        rendered.contains(&format!(
            "(did you mean \"step\"? built-in: \"step\", \"hold\", \"target-tracking\", \"rate\", \"backlog-seconds\", \"expression\", \"flink-operator\", \"predictive\"; plugin_dir {root}/plugins does not exist)"
        )),
        "{rendered}"
    );
}

#[test]
fn a_hyphenated_plugin_name_finds_cargos_underscored_component() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/target_tracking.wasm"), b"\0asm").unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, APP.replace("\"step\"", "\"target-tracking\"")).unwrap();
    let loaded = load(&path).expect("target_tracking.wasm is found for target-tracking");
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::File(dir.path().join("plugins/target_tracking.wasm"))
    );
    // The name as written wins when both exist.
    std::fs::write(dir.path().join("plugins/target-tracking.wasm"), b"\0asm").unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(
        loaded.plugins[0].policy,
        PluginSource::File(dir.path().join("plugins/target-tracking.wasm"))
    );
}

#[test]
fn the_environment_step_runs_only_on_a_valid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        APP.replace("name = \"a\"", "name = \"a\"\nmin_kpu = 0"),
    )
    .unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(errors.errors()[0].message.contains("min_kpu is 0"));
}

#[test]
fn an_unreadable_file_is_one_error() {
    let errors = load(Path::new("/nonexistent/flinkscale.toml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    let rendered = errors.to_string();
    assert!(
        rendered.starts_with("/nonexistent/flinkscale.toml: cannot read the configuration: "),
        "{rendered}"
    );
}

#[test]
fn config_errors_expose_their_parts() {
    let errors = load_str(
        &APP.replace("name = \"a\"", "name = \"a\"\nmin_kpu = 0"),
        Path::new("c.toml"),
    )
    .unwrap_err();
    let error = &errors.errors()[0];
    assert_eq!(error.file, Path::new("c.toml"));
    assert_eq!(
        error.position,
        Some(load::Position {
            line: 3,
            column: 11
        })
    );
    assert_eq!(error.field, "application \"a\".min_kpu");
    assert_eq!(error.message, "min_kpu is 0");
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("valid: 1 to 4294967295"))
    );
    let boxed: Box<dyn std::error::Error> = Box::new(errors);
    assert!(boxed.to_string().starts_with("c.toml:3:11: "));
}

#[test]
fn params_json_round_trips_nested_tables_and_arrays() {
    let table: toml::Table = toml::from_str(
        r#"
name = "step"
factor = 2
ratio = 0.5
enabled = true
at = 2026-11-05T10:00:00Z
levels = [1, 2, [3, "four"]]
nested = { a = { b = [{ c = 1 }, { d = "e" }] }, empty = {} }
"#,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&params_json(&table)).expect("valid JSON");
    assert_eq!(
        json,
        serde_json::json!({
            "name": "step",
            "factor": 2,
            "ratio": 0.5,
            "enabled": true,
            "at": "2026-11-05T10:00:00Z",
            "levels": [1, 2, [3, "four"]],
            "nested": { "a": { "b": [{ "c": 1 }, { "d": "e" }] }, "empty": {} }
        })
    );
    assert_eq!(params_json(&toml::Table::new()), "{}");
}

/// An alarm may watch an interpreter's signal: with an interpreter, a name
/// that is no metric id is taken as a signal; without one (or when it
/// cannot be a signal name) it is still an error. Fails on main, where any
/// alarm metric other than a metric id was refused.
#[test]
fn an_alarm_may_watch_an_interpreter_signal() {
    let alarm = |metric: &str| {
        format!(
            "{APP}[[application.alarm]]\nid = \"slow\"\nmetric = \"{metric}\"\n\
             comparison = \"GreaterThanThreshold\"\nthreshold = 300.0\nevaluation_periods = 3\n"
        )
    };
    let interpreter = "[[application.interpreter]]\nplugin = \"backlog-seconds\"\n";
    valid(&format!("{}{interpreter}", alarm("seconds_behind")));
    assert_eq!(
        errors(&alarm("seconds_behind")),
        [
            "config/x.toml:7:10: application \"a\".alarm \"slow\".metric: no metric with id \"seconds_behind\" in this application (this application defines no metrics)"
        ]
    );
    assert_eq!(
        errors(&format!("{}{interpreter}", alarm("seconds-behind"))),
        [
            "config/x.toml:7:10: application \"a\".alarm \"slow\".metric: no metric with id \"seconds-behind\" in this application, and not a signal name (this application defines no metrics, or a signal of one of its interpreters (letters, digits and '_', starting with a letter))"
        ]
    );
}

/// A metric may be CloudWatch metric math over the application's plain
/// metrics; a bad expression, an id that is no plain metric, or MetricStat
/// fields beside it are located errors. Fails on main, where `expression`
/// was an unknown field.
#[test]
fn a_metric_may_be_a_metric_math_expression() {
    let metrics = "[[application.metric]]\nid = \"lag\"\nnamespace = \"AWS/Kafka\"\n\
                   metric_name = \"SumOffsetLag\"\nstatistic = \"Maximum\"\n\
                   [[application.metric]]\nid = \"processed\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
                   metric_name = \"numRecordsInPerSecond\"\nstatistic = \"Average\"\n";
    let with =
        |math: &str| format!("{APP}{metrics}[[application.metric]]\nid = \"behind\"\n{math}\n");
    let loaded = valid(&with("expression = \"FILL(lag, 0) / processed\""));
    let query = crate::metrics::MetricQuery::from_config(
        &loaded.config.applications[0].metrics[2],
        &loaded.config.applications[0].metrics,
    );
    let math = query.expression.expect("an expression query");
    assert_eq!(
        math.inputs
            .iter()
            .map(|q| q.id.as_str())
            .collect::<Vec<_>>(),
        ["lag", "processed"]
    );

    assert_eq!(
        errors(&with("expression = \"lag / (processed\"")),
        [
            "config/x.toml:17:14: application \"a\".metric \"behind\".expression: expression \"lag / (processed\": at column 17: unbalanced parenthesis: the `(` at column 7 is not closed (supported: numbers, metric ids, + - * /, parentheses, AVG/MAX/MIN/SUM([a, b]), FILL(x, number))"
        ]
    );
    assert_eq!(
        errors(&with("expression = \"lag / procesed\"")),
        [
            "config/x.toml:17:14: application \"a\".metric \"behind\".expression: expression \"lag / procesed\" reads \"procesed\", which is not a plain metric of this application (valid: \"lag\", \"processed\")"
        ]
    );
    assert_eq!(
        errors(&with("expression = \"lag * 2\"\nstatistic = \"Sum\"")),
        [
            "config/x.toml:18:13: application \"a\".metric \"behind\".statistic: statistic is given beside expression (a metric is either namespace, metric_name, dimensions and statistic, or an expression over other metrics)"
        ]
    );
}

#[test]
fn a_cloudwatch_alarm_names_its_alarm_and_nothing_cloudwatch_evaluates() {
    let text = format!(
        "{APP}[[application.alarm]]\nid = \"out\"\nsource = \"cloudwatch\"\nalarm_name = \"ScaleOutAlarm-a\"\n"
    );
    let loaded = valid(&text);
    let alarm = &loaded.config.applications[0].alarms[0];
    assert_eq!(alarm.cloudwatch_name(), Some("ScaleOutAlarm-a"));

    let text = format!(
        "{APP}[[application.alarm]]\nid = \"out\"\nsource = \"cloudwatch\"\nalarm_name = \"ScaleOutAlarm-a\"\nmetric = \"cpu\"\nthreshold = 80.0\n"
    );
    let errors = errors(&text);
    for field in ["metric", "threshold"] {
        assert!(
            errors.iter().any(|e| e.contains(&format!(
                "application \"a\".alarm \"out\".{field}: {field} is not allowed with source = \"cloudwatch\""
            )) && e.starts_with("config/x.toml:")),
            "{field}: {errors:#?}"
        );
    }
    let errors = self::errors(&format!(
        "{APP}[[application.alarm]]\nid = \"out\"\nsource = \"cloudwatch\"\n"
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("alarm \"out\": missing field `alarm_name`")),
        "{errors:#?}"
    );
    // alarm_name on a local alarm is a mistake, not ignored.
    let errors = self::errors(&format!(
        "{APP}[[application.alarm]]\nid = \"out\"\nalarm_name = \"x\"\nmetric = \"cpu\"\ncomparison = \"GreaterThanThreshold\"\nthreshold = 1.0\nevaluation_periods = 1\n"
    ));
    assert!(
        errors.iter().any(
            |e| e.contains("alarm_name is only for an alarm whose state comes from CloudWatch")
        ),
        "{errors:#?}"
    );
    let errors = self::errors(&format!(
        "{APP}[[application.alarm]]\nid = \"out\"\nsource = \"cloud\"\nalarm_name = \"x\"\n"
    ));
    assert!(errors.iter().any(|e| e.contains("source")), "{errors:#?}");
}

#[test]
fn lazy_polling_is_on_by_default_and_set_per_agent_or_application() {
    let lazy = |text: &str| -> Vec<Option<bool>> {
        load_str(text, Path::new("config/x.toml"))
            .expect("valid")
            .config
            .applications
            .iter()
            .map(|a| a.lazy_polling)
            .collect()
    };
    let two = |first: &str| {
        format!(
            "[[application]]\nname = \"a\"\n{first}\n[application.policy]\nplugin = \"hold\"\n\n\
             [[application]]\nname = \"b\"\n[application.policy]\nplugin = \"hold\"\n"
        )
    };
    assert_eq!(lazy(&two("")), [Some(true), Some(true)]);
    assert_eq!(
        lazy(&format!("[agent]\nlazy_polling = false\n{}", two(""))),
        [Some(false), Some(false)]
    );
    assert_eq!(
        lazy(&format!(
            "[agent]\nlazy_polling = false\n{}",
            two("lazy_polling = true")
        )),
        [Some(true), Some(false)]
    );
}

/// A Flink application with everything defaulted but its REST URL.
const FLINK_APP: &str = "[[application]]\nname = \"orders\"\ntarget = \"flink\"\n";

#[test]
fn a_flink_application_bounds_its_parallelism_as_kpu() {
    let loaded = valid(&format!(
        "{FLINK_APP}rest_url = \"http://localhost:8081\"\nmin_parallelism = 2\nmax_parallelism = 6\n\
         [[application.metric]]\nid = \"busy\"\nsource = \"flink\"\nmetric_name = \"busyTimeMsPerSecond\"\n\
         statistic = \"Maximum\"\nvertex = \"Calc\"\nperiod_secs = 10\n\
         [application.policy]\nplugin = \"hold\"\n"
    ));
    let app = &loaded.config.applications[0];
    assert_eq!((app.min_kpu, app.max_kpu), (2, 6));
    assert_eq!(
        app.flink(),
        Some((
            crate::flink::RestUrl::from("http://localhost:8081"),
            FlinkJob::Name("orders".into())
        ))
    );
    let query = crate::metrics::MetricQuery::from_config(&app.metrics[0], &app.metrics);
    assert_eq!(query.namespace, crate::metrics::flink::NAMESPACE);
    assert_eq!(query.dimensions["vertex"], "Calc");

    // Defaults: the job named like the application, bounds 1 to 10; an id
    // names the job instead.
    let loaded = valid(&format!(
        "{FLINK_APP}rest_url = \"http://h:1\"\njob_id = \"0123456789abcdef0123456789ABCDEF\"\n\
         [application.policy]\nplugin = \"hold\"\n"
    ));
    let app = &loaded.config.applications[0];
    assert_eq!((app.min_kpu, app.max_kpu), (1, 10));
    assert_eq!(
        app.flink().map(|f| f.1),
        Some(FlinkJob::Id("0123456789abcdef0123456789ABCDEF".into()))
    );
}

/// Two applications that would scale one Flink job (the same job name,
/// given or implied, or the same id, on a REST URL they share) are refused
/// at the second; the same name on another cluster is another job.
#[test]
fn two_applications_of_one_flink_job_are_refused() {
    let app = |name: &str, extra: &str| {
        format!(
            "[[application]]\nname = \"{name}\"\ntarget = \"flink\"\n{extra}\n[application.policy]\nplugin = \"hold\"\n"
        )
    };
    let text = [
        app("orders", "rest_url = \"http://jm:8081\""),
        app(
            "orders-b",
            "rest_url = [\"http://JM:08081/\", \"http://jm-b:8081\"]\njob_name = \"orders\"",
        ),
        app(
            "ids-a",
            "rest_url = \"http://jm:8081\"\njob_id = \"0123456789abcdef0123456789abcdef\"",
        ),
        app(
            "ids-b",
            "rest_url = \"http://jm:8081\"\njob_id = \"0123456789ABCDEF0123456789ABCDEF\"",
        ),
        app(
            "elsewhere",
            "rest_url = \"http://other:8081\"\njob_name = \"orders\"",
        ),
    ]
    .concat();
    assert_eq!(
        errors(&text),
        [
            "config/x.toml:11:12: application \"orders-b\".job_name: application \"orders-b\" scales the same Flink job as application \"orders\" (job_name \"orders\" on a cluster they share): two controllers would rescale it against each other (give each job one [[application]]; the other is application[0])",
            "config/x.toml:25:10: application \"ids-b\".job_id: application \"ids-b\" scales the same Flink job as application \"ids-a\" (job_id \"0123456789ABCDEF0123456789ABCDEF\" on a cluster they share): two controllers would rescale it against each other (give each job one [[application]]; the other is application[2])",
        ]
    );
}

#[test]
fn flink_keys_are_checked_and_located() {
    let policy = "[application.policy]\nplugin = \"hold\"\n";
    assert_error(
        &format!("{FLINK_APP}{policy}"),
        "config/x.toml:1:1: application \"orders\": missing field `rest_url` (target = \"flink\" needs the JobManager's REST API, e.g. rest_url = \"http://localhost:8081\")",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"https://h:8081\"\n{policy}"),
        "config/x.toml:4:12: application \"orders\".rest_url: rest_url \"https://h:8081\": expected http://host:port: https is not supported yet (valid: http://host:port, e.g. \"http://localhost:8081\")",
    );
    // A list, for JobManagers reached one by one: each entry is checked
    // and located on its own, none twice, and not none.
    let loaded = valid(&format!(
        "{FLINK_APP}rest_url = [\"http://jm-a:8081\", \"http://jm-b:8081\"]\n{policy}"
    ));
    assert_eq!(
        loaded.config.applications[0]
            .rest_url
            .as_ref()
            .map(|r| r.urls().to_vec()),
        Some(vec![
            "http://jm-a:8081".to_owned(),
            "http://jm-b:8081".to_owned()
        ])
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = [\"http://a:1\", \"http//b:1\"]\n{policy}"),
        "config/x.toml:4:27: application \"orders\".rest_url[1]: rest_url \"http//b:1\": expected http://host:port: the scheme must be http:// (valid: http://host:port, e.g. \"http://localhost:8081\")",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = [\"http://a:1\", \"http://a:1\"]\n{policy}"),
        "config/x.toml:4:27: application \"orders\".rest_url[1]: rest_url \"http://a:1\" is listed twice (list each JobManager once)",
    );
    // Twice in another spelling of the same address too.
    assert_error(
        &format!("{FLINK_APP}rest_url = [\"http://a:1\", \"http://A:01/\"]\n{policy}"),
        "config/x.toml:4:27: application \"orders\".rest_url[1]: rest_url \"http://A:01/\" is listed twice (list each JobManager once)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = []\n{policy}"),
        "config/x.toml:4:12: application \"orders\".rest_url: rest_url is an empty list (give the JobManager's REST API, e.g. \"http://localhost:8081\", or a list of every JobManager's)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = 8081\n{policy}"),
        "config/x.toml:4:12: application \"orders\".rest_url: invalid type: integer `8081` (expected a URL such as \"http://localhost:8081\", or a list of them, one per JobManager)",
    );
    assert_error(
        &format!(
            "{FLINK_APP}rest_url = \"http://h:1\"\njob_name = \"a\"\njob_id = \"x\"\n{policy}"
        ),
        "config/x.toml:6:10: application \"orders\".job_id: both job_name and job_id are given (give one: job_name finds a resubmitted job again, job_id names one job)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\njob_id = \"x\"\n{policy}"),
        "config/x.toml:5:10: application \"orders\".job_id: \"x\" is not a Flink job id (valid: 32 hexadecimal digits, as GET /jobs lists them)",
    );
    // 32 characters, but a path's: the id goes into REST paths, so only
    // Flink's JobID form is taken.
    assert_error(
        &format!(
            "{FLINK_APP}rest_url = \"http://h:1\"\njob_id = \"../0123456789abcdef012345/?#. ab\"\n{policy}"
        ),
        "config/x.toml:5:10: application \"orders\".job_id: \"../0123456789abcdef012345/?#. ab\" is not a Flink job id (valid: 32 hexadecimal digits, as GET /jobs lists them)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\nmax_kpu = 4\n{policy}"),
        "config/x.toml:5:11: application \"orders\".max_kpu: max_kpu is MSF's; a Flink job is bounded by max_parallelism (valid: remove max_kpu and set max_parallelism, the highest parallelism the agent sets, default 10)",
    );
    // Even at their defaults (1 and 10, which a Flink job's bounds share):
    // a Flink user who writes them is told the key to use.
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\nmin_kpu = 1\n{policy}"),
        "config/x.toml:5:11: application \"orders\".min_kpu: min_kpu is MSF's; a Flink job is bounded by min_parallelism (valid: remove min_kpu and set min_parallelism, the lowest parallelism the agent sets, default 1)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\nmax_kpu = 10\n{policy}"),
        "config/x.toml:5:11: application \"orders\".max_kpu: max_kpu is MSF's; a Flink job is bounded by max_parallelism (valid: remove max_kpu and set max_parallelism, the highest parallelism the agent sets, default 10)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\nmin_parallelism = 12\n{policy}"),
        "config/x.toml:5:19: application \"orders\".min_parallelism: min_parallelism 12 is greater than max_parallelism 10 (valid: min_parallelism <= max_parallelism)",
    );
    assert_error(
        &format!("{FLINK_APP}rest_url = \"http://h:1\"\nmax_parallelism = 0\n{policy}"),
        "config/x.toml:5:19: application \"orders\".max_parallelism: max_parallelism is 0 (valid: 1 to 4294967295; a Flink job runs at parallelism 1 at least)",
    );
    // Flink's keys on an MSF application, and an unknown target.
    assert_error(
        &format!("[[application]]\nname = \"a\"\nrest_url = \"http://h:1\"\n{policy}"),
        "config/x.toml:3:12: application \"a\".rest_url: rest_url is for target = \"flink\", but this application's target is \"msf\" (set target = \"flink\" to scale a job of a self-managed Flink cluster, or remove it)",
    );
    assert_error(
        &format!("[[application]]\nname = \"a\"\ntarget = \"yarn\"\n{policy}"),
        "config/x.toml:3:10: application \"a\".target: unknown variant `yarn` (expected `msf` or `flink`)",
    );
    // A target refused is the one error: the Flink keys beside it are not
    // also said to be out of place on an MSF application.
    let errors = errors(&format!(
        "[[application]]\nname = \"a\"\ntarget = \"Flink\"\nrest_url = \"http://h:1\"\njob_name = \"j\"\n{policy}"
    ));
    assert_eq!(
        errors,
        [
            "config/x.toml:3:10: application \"a\".target: unknown variant `Flink` (did you mean `flink`? expected `msf` or `flink`)"
        ]
    );
}

#[test]
fn flink_metrics_are_checked_and_located() {
    let head = format!(
        "{FLINK_APP}rest_url = \"http://h:1\"\n[[application.metric]]\nid = \"m\"\nsource = \"flink\"\n"
    );
    let policy = "[application.policy]\nplugin = \"hold\"\n";
    assert_error(
        &format!("{head}metric_name = \"busyTime\"\nstatistic = \"Maximum\"\n{policy}"),
        "config/x.toml:8:15: application \"orders\".metric \"m\".metric_name: \"busyTime\" is not a Flink vertex metric flinkscale reads (valid: \"busyTimeMsPerSecond\", \"backPressuredTimeMsPerSecond\", \"idleTimeMsPerSecond\", \"numRecordsInPerSecond\", \"numRecordsOutPerSecond\" or \"pendingRecords\")",
    );
    assert_error(
        &format!("{head}metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"p99\"\n{policy}"),
        "config/x.toml:9:13: application \"orders\".metric \"m\".statistic: \"p99\" is not a statistic Flink aggregates over subtasks (valid: \"Maximum\", \"Average\", \"Minimum\" or \"Sum\")",
    );
    assert_error(
        &format!(
            "{head}metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Sum\"\nnamespace = \"AWS/Kafka\"\n{policy}"
        ),
        "config/x.toml:10:13: application \"orders\".metric \"m\".namespace: namespace is CloudWatch's, but this metric's source is \"flink\" (a Flink metric is metric_name, statistic and vertex)",
    );
    assert_error(
        &format!(
            "{head}metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Sum\"\nmin_publication_delay_secs = 60\n{policy}"
        ),
        "config/x.toml:10:30: application \"orders\".metric \"m\".min_publication_delay_secs: min_publication_delay_secs is CloudWatch's, but this metric's source is \"flink\" (a Flink metric is metric_name, statistic and vertex)",
    );
    // A Flink metric in an MSF application; a vertex on a CloudWatch one.
    assert_error(
        "[[application]]\nname = \"a\"\n[[application.metric]]\nid = \"m\"\nsource = \"flink\"\nmetric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Sum\"\n[application.policy]\nplugin = \"hold\"\n",
        "config/x.toml:5:10: application \"a\".metric \"m\".source: source = \"flink\" reads the metrics of a Flink job, but this application's target is \"msf\" (valid here: source = \"cloudwatch\" (the default), or set the application's target = \"flink\")",
    );
    assert_error(
        "[[application]]\nname = \"a\"\n[[application.metric]]\nid = \"m\"\nnamespace = \"N\"\nmetric_name = \"M\"\nstatistic = \"Sum\"\nvertex = \"all\"\n[application.policy]\nplugin = \"hold\"\n",
        "config/x.toml:8:10: application \"a\".metric \"m\".vertex: vertex names a Flink vertex, but this metric's source is CloudWatch (valid: vertex only with source = \"flink\")",
    );
}

#[test]
fn history_days_is_checked_and_only_for_the_policy() {
    assert_eq!(valid(APP).config.applications[0].policy.history_days, 0);
    let metric = "[[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
                  metric_name = \"containerCPUUtilization\"\nstatistic = \"Maximum\"\n";
    let loaded = valid(&format!("{APP}history_days = 15\n{metric}"));
    assert_eq!(loaded.config.applications[0].policy.history_days, 15);
    // With no metric there is no history to read: said, not refused.
    let none = valid(&format!("{APP}history_days = 15\n"));
    let warned = super::validate::history_warnings(none.config.applications.iter().enumerate());
    assert_eq!(warned.len(), 1);
    assert!(
        warned[0]
            .message
            .ends_with("but this application defines no metrics: nothing is read"),
        "{warned:?}"
    );
    assert!(
        super::validate::history_warnings(loaded.config.applications.iter().enumerate()).is_empty()
    );
    assert_eq!(
        errors(&format!("{APP}history_days = 16\n{metric}")),
        [
            "config/x.toml:5:16: application \"a\".policy.history_days: history_days 16 is out of range (valid: 0 to 15 (CloudWatch keeps 1-minute datapoints for 15 days); default 0)"
        ]
    );
    assert_eq!(
        errors(&format!(
            "{APP}[[application.interpreter]]\nplugin = \"backlog-seconds\"\nhistory_days = 1\n"
        )),
        [
            "config/x.toml:7:16: application \"a\".interpreter[0].history_days: history_days is read only for [application.policy] (remove it here; set it in [application.policy])"
        ]
    );
}

/// A region is named in lower case: "EU-WEST-1" passed validation and
/// signed every request for a region AWS does not know.
#[test]
fn a_region_is_lower_case_letters_digits_and_dashes() {
    let with_region = |region: &str| {
        format!(
            "[agent]\nregion = {region:?}\n\n[[application]]\nname = \"a\"\n\n[application.policy]\nplugin = \"hold\"\n"
        )
    };
    for region in ["eu-west-1", "us-gov-west-1", "cn-north-1"] {
        valid(&with_region(region));
    }
    for region in ["EU-WEST-1", "", "eu west 1", "-eu-west-1", "eu_west_1"] {
        assert_eq!(
            errors(&with_region(region)),
            [format!(
                "config/x.toml:2:10: agent.region: {region:?} is not an AWS region (lower-case \
                 letters, digits and '-', e.g. \"eu-west-1\"; or leave it out to use AWS_REGION \
                 or the profile)"
            )]
        );
    }
}

#[test]
fn a_listen_address_that_is_not_ip_port_says_what_is_valid() {
    assert_error(
        "[agent]\nlisten = \"localhost:9464\"\n\n[[application]]\nname = \"a\"\n\n\
         [application.policy]\nplugin = \"hold\"\n",
        "config/x.toml:2:10: agent.listen: \"localhost:9464\" is not an IP:PORT address \
         (valid: an IP address and a port, e.g. \"127.0.0.1:9464\", \"0.0.0.0:9464\" or \
         \"[::1]:9464\"; a host name is not resolved)",
    );
    let loaded = valid(
        "[agent]\nlisten = \"[::1]:9464\"\n\n[[application]]\nname = \"a\"\n\n\
         [application.policy]\nplugin = \"hold\"\n",
    );
    assert_eq!(
        loaded.config.agent.listen,
        Some("[::1]:9464".parse().expect("an address"))
    );
}

/// A file with errors still gives the part of it no error is about, for
/// `validate` to try its plugins: the applications without an error of
/// their own (a value refused, an entry left out, a plugin file that is
/// not there, also when that is the file's only error), each with its
/// index in the file; and no part at all once `[agent]` or the top level
/// has an error.
#[test]
fn a_refused_file_gives_the_applications_no_error_is_about() {
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str, extra: &str, plugin: &str| {
        format!(
            "[[application]]\nname = \"{name}\"\n{extra}[application.policy]\nplugin = \"{plugin}\"\n\n"
        )
    };
    let apps = [
        app("bounds", "min_kpu = 4\nmax_kpu = 2\n", "rate"),
        app("clean-1", "", "rate"),
        app("typo", "max_kpus = 4\n", "rate"),
        app("missing", "", "nosuch"),
        app("clean-4", "", "step"),
    ]
    .concat();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, &apps).unwrap();
    let refused = load::load_checkable(&path).expect_err("refused");
    let fields: Vec<&str> = refused
        .errors
        .errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "application \"bounds\".min_kpu",
            "application \"typo\".max_kpus",
            "application \"missing\".policy.plugin",
        ],
        "{}",
        refused.errors
    );
    let part = refused.unaffected.expect("a part to check");
    let names: Vec<(usize, &str)> = part
        .config
        .applications
        .iter()
        .enumerate()
        .map(|(k, a)| (part.file_index(k), a.name.as_str()))
        .collect();
    assert_eq!(names, [(1, "clean-1"), (4, "clean-4")]);
    assert_eq!(part.plugins.len(), 2);
    // `load` says the same errors, the missing plugin among them.
    assert_eq!(load(&path).expect_err("refused"), refused.errors);

    for top in [
        "[agent]\nplugin_dirr = \"p\"\n",
        "[agent]\nplugin_timeout_ms = 0\n",
        "[agnet]\n",
    ] {
        std::fs::write(&path, format!("{top}{apps}")).unwrap();
        let refused = load::load_checkable(&path).expect_err("refused");
        assert!(refused.unaffected.is_none(), "{top}: {}", refused.errors);
    }
    std::fs::write(&path, "[[application]]\nname = \n").unwrap();
    assert!(
        load::load_checkable(&path)
            .expect_err("refused")
            .unaffected
            .is_none()
    );
    // A file whose only error is a plugin not there: the others are
    // tried all the same.
    std::fs::write(&path, app("a", "", "nosuch") + &app("b", "", "rate")).unwrap();
    let refused = load::load_checkable(&path).expect_err("refused");
    assert_eq!(refused.errors.len(), 1, "{}", refused.errors);
    let part = refused.unaffected.expect("a part to check");
    assert_eq!(part.config.applications.len(), 1);
    assert_eq!(
        (
            part.file_index(0),
            part.config.applications[0].name.as_str()
        ),
        (1, "b")
    );
    // A valid file's applications are at their own index.
    std::fs::write(&path, app("a", "", "rate") + &app("b", "", "rate")).unwrap();
    let loaded = load(&path).expect("valid");
    assert_eq!((loaded.file_index(0), loaded.file_index(1)), (0, 1));
}

/// A table given a plain value is said in the file's words: a table to
/// write, not the Rust type it is read into (`expected struct
/// AgentConfig`).
#[test]
fn a_table_given_a_value_says_to_write_a_table() {
    assert_error(
        "agent = \"x\"\n[[application]]\nname = \"a\"\n[application.policy]\nplugin = \"hold\"\n",
        "config/x.toml:1:9: agent: invalid type: string \"x\" (expected a table: write [agent] with its keys below it, or an inline table { key = value, ... })",
    );
    assert_error(
        "[[application]]\nname = \"a\"\npolicy = 3\n",
        "config/x.toml:3:10: application \"a\".policy: invalid type: integer `3` (expected a table: write [application.policy] with its keys below it, or an inline table { key = value, ... })",
    );
    // An element of a list of tables.
    assert_error(
        "application = [\"x\"]\n",
        "config/x.toml:1:16: application[0]: invalid type: string \"x\" (expected a table: write [[application]] with its keys below it, or an inline table { key = value, ... })",
    );
}
