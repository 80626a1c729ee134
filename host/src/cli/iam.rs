//! `flinkscale iam`: the least-privilege IAM policy for a configuration.
//!
//! The agent calls kinesisanalytics:DescribeApplication and
//! kinesisanalytics:UpdateApplication on each configured application, and
//! cloudwatch:GetMetricData, which supports no resource-level permission
//! (AWS requires `"Resource": "*"` for it). The policy grants exactly that:
//! the application ARNs by name, nothing else; alarms whose state comes
//! from CloudWatch (`source = "cloudwatch"`) add cloudwatch:DescribeAlarms
//! on exactly those alarms. Every application is in it
//! whatever its `mode`, so that switching a mode by a reload needs no IAM
//! change. host/tests/conventions.rs checks it against every call the
//! agent makes to the emulator. A `target = "flink"` application calls no
//! AWS API (its job is scaled, and its `source = "flink"` metrics read,
//! over Flink's REST API) and is left out; a configuration of only such
//! applications needs no policy, and `iam` says so instead of printing an
//! empty one (which IAM would refuse).

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, MetricSourceKind, TargetKind};

/// The actions the agent calls on each application.
pub const APPLICATION_ACTIONS: [&str; 2] = [
    "kinesisanalytics:DescribeApplication",
    "kinesisanalytics:UpdateApplication",
];

/// The actions a dry-run agent (`run --dry-run`, or every application in
/// `mode = "dry-run"` or `"paused"`) calls on each application: it never
/// calls UpdateApplication.
pub const READ_ONLY_APPLICATION_ACTIONS: [&str; 1] = ["kinesisanalytics:DescribeApplication"];

/// The actions the agent calls that take no resource (`"Resource": "*"`).
pub const UNSCOPED_ACTIONS: [&str; 1] = ["cloudwatch:GetMetricData"];

/// The action the agent calls for alarms whose state comes from CloudWatch
/// (`source = "cloudwatch"`), on those alarms only.
pub const ALARM_ACTIONS: [&str; 1] = ["cloudwatch:DescribeAlarms"];

/// The actions `flinkscale alarms sync` calls on the mirrors it keeps
/// (`flinkscale-APP-ID`), granted with `iam --alarms-sync`.
pub const ALARM_SYNC_ACTIONS: [&str; 2] =
    ["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"];

/// What the policy grants beyond what the agent itself calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// A dry-run agent's: no kinesisanalytics:UpdateApplication.
    pub read_only: bool,
    /// `flinkscale alarms sync`'s too: DescribeAlarms and PutMetricAlarm
    /// on the mirrors of the configuration's local alarms.
    pub alarms_sync: bool,
}

/// Checks `--account`: twelve digits.
pub fn parse_account(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "an AWS account id is 12 digits, e.g. 123456789012 (found {text:?})"
        ))
    }
}

/// Checks `--region`: lower-case letters, digits and `-`, e.g. `eu-west-1`.
pub fn parse_region(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "an AWS region is lower-case letters, digits and '-', e.g. eu-west-1 (found {text:?})"
        ))
    }
}

/// The ARN partition of `region`: `aws-cn` for China, `aws-us-gov` for
/// GovCloud, `aws-iso`, `aws-iso-b`, `aws-iso-f`, `aws-iso-e` and
/// `aws-eusc` for theirs, `aws`
/// elsewhere, and any (`*`) for any region (`*`), so that a policy made
/// without a region matches in China and GovCloud too.
fn partition(region: &str) -> &'static str {
    const PARTITIONS: [(&str, &str); 7] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("eusc-", "aws-eusc"),
    ];
    if region == "*" {
        return "*";
    }
    PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// `name` as the last part of an ARN in a policy: IAM reads `*` and `?`
/// as wildcards and `${...}` as a policy variable, so those characters
/// of a name are written as `${*}`, `${?}` and `${$}` (an alarm named
/// `ScaleOut*` granted every alarm whose name starts with `ScaleOut`).
fn arn_literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '*' | '?' | '$' => {
                out.push_str("${");
                out.push(c);
                out.push('}');
            }
            c => out.push(c),
        }
    }
    out
}

/// The ARN of application `name` (`*` for an unknown region or account).
pub fn application_arn(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:{}:kinesisanalytics:{region}:{account}:application/{}",
        partition(region),
        arn_literal(name)
    )
}

/// The ARN of CloudWatch alarm `name` (`*` for an unknown region or
/// account).
pub fn alarm_arn(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:{}:cloudwatch:{region}:{account}:alarm:{}",
        partition(region),
        arn_literal(name)
    )
}

/// The policy document for the applications of `config` in `region` and
/// `account` (`*` when not known). Alarms whose state comes from CloudWatch
/// add DescribeAlarms on exactly those alarms.
pub fn policy(config: &Config, region: &str, account: &str) -> serde_json::Value {
    policy_for(config, region, account, Grants::default())
}

/// [`policy`] with `grants`: with `read_only` the policy of a dry-run
/// agent, the same statements without kinesisanalytics:UpdateApplication
/// (for the period a migration runs the agent with `--dry-run` beside the
/// reference design); with `alarms_sync`, what `flinkscale alarms sync`
/// calls on the mirrors too.
pub fn policy_for(
    config: &Config,
    region: &str,
    account: &str,
    grants: Grants,
) -> serde_json::Value {
    let read_only = grants.read_only;
    let arns: Vec<String> = config
        .applications
        .iter()
        .filter(|app| app.target == TargetKind::Msf)
        .map(|app| application_arn(region, account, &app.name))
        .collect();
    let mut alarms: Vec<String> = config
        .applications
        .iter()
        .flat_map(|app| &app.alarms)
        .filter_map(|alarm| alarm.cloudwatch_name())
        .map(|name| alarm_arn(region, account, name))
        .collect();
    alarms.sort();
    alarms.dedup();
    let mut statements = Vec::new();
    if !arns.is_empty() {
        statements.push(serde_json::json!({
            "Sid": if read_only {
                "DescribeTheConfiguredApplications"
            } else {
                "ScaleTheConfiguredApplications"
            },
            "Effect": "Allow",
            "Action": if read_only {
                &READ_ONLY_APPLICATION_ACTIONS[..]
            } else {
                &APPLICATION_ACTIONS[..]
            },
            "Resource": arns,
        }));
    }
    if reads_cloudwatch_metrics(config) {
        statements.push(serde_json::json!({
            "Sid": "ReadMetrics",
            "Effect": "Allow",
            "Action": UNSCOPED_ACTIONS,
            "Resource": "*",
        }));
    }
    if !alarms.is_empty() {
        statements.push(serde_json::json!({
            "Sid": "ReadCloudWatchAlarmStates",
            "Effect": "Allow",
            "Action": ALARM_ACTIONS,
            "Resource": alarms,
        }));
    }
    if grants.alarms_sync {
        let mirrors: Vec<String> = super::alarms::wanted(config)
            .0
            .iter()
            .map(|spec| alarm_arn(region, account, &spec.name))
            .collect();
        if !mirrors.is_empty() {
            statements.push(serde_json::json!({
                "Sid": "SyncAlarmMirrors",
                "Effect": "Allow",
                "Action": ALARM_SYNC_ACTIONS,
                "Resource": mirrors,
            }));
        }
    }
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": statements,
    })
}

/// The most characters IAM takes in a managed policy, whitespace not
/// counted (an inline policy may have 10,240 for all of a role's
/// together, 2,048 for a user's).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;

/// The characters of `document` that IAM counts against its size limit:
/// all but whitespace outside strings (as the compact JSON has none, its
/// length).
pub fn policy_chars(document: &serde_json::Value) -> usize {
    document.to_string().chars().count()
}

/// The longest prefix all of `names` share (the empty string for none).
fn common_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut names = names.into_iter();
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut prefix = first.to_owned();
    for name in names {
        let shared = prefix
            .char_indices()
            .zip(name.chars())
            .find(|((_, a), b)| a != b)
            .map_or(prefix.len().min(name.len()), |((i, _), _)| i);
        prefix.truncate(shared);
    }
    prefix
}

/// `document` (a policy of [`policy_for`]) made to fit IAM's size limit:
/// the statement with the longest list of ARNs gets one ARN ending in `*`
/// after the prefix they share instead, then the next, until the policy
/// fits (each at the cost of granting every application, or alarm, whose
/// name starts the same). Returns the policy and the `Sid`s of the
/// statements widened; none when it fits as it is.
pub fn widened(document: &serde_json::Value) -> (serde_json::Value, Vec<String>) {
    let mut document = document.clone();
    let mut widened = Vec::new();
    while policy_chars(&document) > MANAGED_POLICY_MAX_CHARS {
        let Some(statements) = document["Statement"].as_array_mut() else {
            break;
        };
        let longest = statements
            .iter_mut()
            .filter(|s| s["Resource"].as_array().is_some_and(|arns| arns.len() > 1))
            .max_by_key(|s| s["Resource"].to_string().len());
        let Some(statement) = longest else {
            break;
        };
        let arns: Vec<&str> = statement["Resource"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        // A prefix cut inside an escape (`${*}` of a name with a `*`)
        // would end in an unclosed policy variable: cut before it.
        let prefix = common_prefix(arns);
        let prefix = match prefix.rfind("${") {
            Some(at) if !prefix[at..].contains('}') => &prefix[..at],
            _ => prefix.as_str(),
        };
        let wide = format!("{prefix}*");
        statement["Resource"] = serde_json::json!([wide]);
        widened.push(statement["Sid"].as_str().unwrap_or_default().to_owned());
    }
    (document, widened)
}

/// Whether any application reads CloudWatch metrics: every MSF
/// application may (its metrics can change by a reload without an IAM
/// change), a Flink application only through `source = "cloudwatch"`
/// metrics.
fn reads_cloudwatch_metrics(config: &Config) -> bool {
    config.applications.iter().any(|app| {
        app.target == TargetKind::Msf
            || app
                .metrics
                .iter()
                .any(|m| m.source == MetricSourceKind::Cloudwatch)
    })
}

/// The names of the `target = "flink"` applications, which need no AWS
/// permission of their own.
fn flink_applications(config: &Config) -> Vec<&str> {
    config
        .applications
        .iter()
        .filter(|app| app.target == TargetKind::Flink)
        .map(|app| app.name.as_str())
        .collect()
}

/// `flinkscale iam`: prints the policy for `config` on stdout, with
/// `grants` ([`Grants`]: a dry-run agent's, `alarms sync`'s); what it could
/// not know (the account, the region) is a `*` in it and a note on stderr.
pub fn run(
    config: &Path,
    account: Option<String>,
    region: Option<String>,
    grants: Grants,
) -> ExitCode {
    let loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(super::commands::EX_CONFIG);
        }
    };
    let flink = flink_applications(&loaded.config);
    if !flink.is_empty() {
        let flink_apps = || {
            loaded
                .config
                .applications
                .iter()
                .filter(|app| app.target == TargetKind::Flink)
        };
        let metrics = flink_apps().any(|app| {
            app.metrics
                .iter()
                .any(|m| m.source == MetricSourceKind::Cloudwatch)
        });
        let alarms =
            flink_apps().any(|app| app.alarms.iter().any(|a| a.cloudwatch_name().is_some()));
        let reads = match (metrics, alarms) {
            (true, true) => {
                " beyond cloudwatch:GetMetricData for source = \"cloudwatch\" metrics and cloudwatch:DescribeAlarms for source = \"cloudwatch\" alarms"
            }
            (true, false) => " beyond cloudwatch:GetMetricData for source = \"cloudwatch\" metrics",
            (false, true) => " beyond cloudwatch:DescribeAlarms for source = \"cloudwatch\" alarms",
            (false, false) => "",
        };
        eprintln!(
            "note: {flink:?} scale a self-managed Flink job over its REST API (target = \"flink\"): no AWS permission is needed for them{reads}"
        );
    }
    let document = policy(&loaded.config, "*", "*");
    if document["Statement"].as_array().is_some_and(Vec::is_empty) {
        eprintln!(
            "note: no application calls AWS (all are target = \"flink\" with only source = \"flink\" metrics): the agent needs no IAM policy"
        );
        return ExitCode::SUCCESS;
    }
    let region = region.or_else(|| loaded.config.agent.region.clone());
    // The notes on `*` in ARNs, only for a policy that has ARNs.
    let has_arns = document["Statement"]
        .as_array()
        .is_some_and(|statements| statements.iter().any(|s| s["Resource"].is_array()));
    if region.is_none() && has_arns {
        eprintln!(
            "note: no --region and no [agent] region: the ARNs allow any region of any partition (\"arn:*:...:*:...\"); give --region R to narrow them"
        );
    }
    if account.is_none() && has_arns {
        eprintln!(
            "note: no --account: the ARNs allow any account (\"*\"); give --account ID to narrow them"
        );
    }
    let mut document = policy_for(
        &loaded.config,
        region.as_deref().unwrap_or("*"),
        account.as_deref().unwrap_or("*"),
        grants,
    );
    if grants.alarms_sync && !document.to_string().contains("SyncAlarmMirrors") {
        eprintln!(
            "note: --alarms-sync: no local alarm of the configuration gets a CloudWatch mirror, so `alarms sync` calls nothing"
        );
    }
    let chars = policy_chars(&document);
    let (fitted, wide) = widened(&document);
    if !wide.is_empty() {
        let said: Vec<String> = fitted["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| wide.iter().any(|sid| s["Sid"] == sid.as_str()))
            .map(|s| {
                format!(
                    "{} on {}",
                    s["Sid"].as_str().unwrap_or_default(),
                    s["Resource"][0].as_str().unwrap_or_default()
                )
            })
            .collect();
        eprintln!(
            "warning: the policy naming every ARN would be {chars} characters, past IAM's {MANAGED_POLICY_MAX_CHARS} for a managed policy (10,240 for all of a role's inline policies): the longest lists of ARNs are one wildcard after the prefix their names share instead ({}), which also grants any other application or alarm whose name starts the same; give them a shared prefix, or split the configuration between agents, to narrow it",
            said.join("; ")
        );
        document = fitted;
    }
    match serde_json::to_string_pretty(&document) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write the policy: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_each_application_and_nothing_else() {
        let config: Config = toml::from_str(
            "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"step\"\n\
             [[application]]\nname = \"audit\"\nmode = \"paused\"\n\
             [application.policy]\nplugin = \"hold\"\n",
        )
        .expect("a configuration");
        let document = policy(&config, "eu-west-1", "123456789012");
        assert_eq!(
            document["Statement"][0]["Resource"],
            serde_json::json!([
                "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders",
                "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/audit",
            ])
        );
        assert_eq!(document["Statement"][1]["Resource"], "*");
        assert_eq!(document["Statement"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            application_arn("cn-north-1", "*", "a"),
            "arn:aws-cn:kinesisanalytics:cn-north-1:*:application/a"
        );
    }

    /// Past IAM's size limit, each list of ARNs becomes one wildcard after
    /// the prefix its names share, which fits for any number.
    #[test]
    fn a_policy_too_large_for_iam_is_widened_to_the_shared_prefix() {
        let mut text = String::new();
        for i in 0..150 {
            text.push_str(&format!(
                "[[application]]\nname = \"orders-enricher-production-{i:03}\"\n\
                 [application.policy]\nplugin = \"hold\"\n"
            ));
        }
        let config: Config = toml::from_str(&text).expect("a configuration");
        let document = policy(&config, "eu-west-1", "123456789012");
        assert!(policy_chars(&document) > MANAGED_POLICY_MAX_CHARS);
        let (wide, which) = widened(&document);
        assert_eq!(which, ["ScaleTheConfiguredApplications"]);
        assert!(policy_chars(&wide) < 1000, "{wide}");
        assert_eq!(
            wide["Statement"][0]["Resource"],
            serde_json::json!([
                "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders-enricher-production-*"
            ])
        );
        assert_eq!(
            wide["Statement"][0]["Action"],
            document["Statement"][0]["Action"]
        );
        assert_eq!(wide["Statement"][1], document["Statement"][1]);
        assert_eq!(common_prefix(["abc", "abd", "ab"]), "ab");
        assert_eq!(common_prefix(["x", "y"]), "");
        assert_eq!(common_prefix(["é1", "é2"]), "é");
    }

    /// Only what makes the policy too long is widened: many long alarm
    /// names on a few applications widen the alarms' statement alone.
    #[test]
    fn only_the_longest_lists_are_widened() {
        let mut text = String::new();
        for app in 0..8 {
            text.push_str(&format!("[[application]]\nname = \"app-{app}\"\n"));
            for alarm in 0..7 {
                text.push_str(&format!(
                    "[[application.alarm]]\nid = \"a{alarm}\"\nsource = \"cloudwatch\"\n\
                     alarm_name = \"ScaleOutAlarm-for-the-application-app-{app}-number-{alarm}-kept-long\"\n"
                ));
            }
            text.push_str("[application.policy]\nplugin = \"hold\"\n");
        }
        let config: Config = toml::from_str(&text).expect("a configuration");
        let document = policy(&config, "eu-west-1", "123456789012");
        assert!(policy_chars(&document) > MANAGED_POLICY_MAX_CHARS);
        let (wide, which) = widened(&document);
        assert_eq!(which, ["ReadCloudWatchAlarmStates"]);
        assert!(policy_chars(&wide) <= MANAGED_POLICY_MAX_CHARS);
        assert_eq!(wide["Statement"][0], document["Statement"][0], "{wide}");
        assert_eq!(
            wide["Statement"][2]["Resource"],
            serde_json::json!([
                "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ScaleOutAlarm-for-the-application-app-*"
            ])
        );
        // A policy that fits is left as it is.
        let small = policy(
            &toml::from_str::<Config>(
                "[[application]]\nname = \"a\"\n[application.policy]\nplugin = \"hold\"\n",
            )
            .expect("a configuration"),
            "*",
            "*",
        );
        assert_eq!(widened(&small), (small.clone(), Vec::new()));
    }

    #[test]
    fn the_read_only_policy_is_the_same_without_update_application() {
        let config: Config = toml::from_str(
            "[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"step\"\n",
        )
        .expect("a configuration");
        let full = policy(&config, "eu-west-1", "123456789012");
        let read_only = policy_for(
            &config,
            "eu-west-1",
            "123456789012",
            Grants {
                read_only: true,
                alarms_sync: false,
            },
        );
        assert_eq!(
            read_only["Statement"][0]["Action"],
            serde_json::json!(["kinesisanalytics:DescribeApplication"])
        );
        assert_eq!(
            full["Statement"][0]["Action"],
            serde_json::json!(APPLICATION_ACTIONS)
        );
        assert!(!read_only.to_string().contains("UpdateApplication"));
        // Everything else is the same: the resources, the metrics statement.
        assert_eq!(
            read_only["Statement"][0]["Resource"],
            full["Statement"][0]["Resource"]
        );
        assert_eq!(read_only["Statement"][1], full["Statement"][1]);
        assert_eq!(
            read_only["Statement"].as_array().map(Vec::len),
            full["Statement"].as_array().map(Vec::len)
        );
    }

    #[test]
    fn flink_applications_need_no_aws_permission() {
        let flink = "[[application]]\nname = \"jobs\"\ntarget = \"flink\"\n\
                     rest_url = \"http://localhost:8081\"\n\
                     [[application.metric]]\nid = \"busy\"\nsource = \"flink\"\n\
                     metric_name = \"busyTimeMsPerSecond\"\nstatistic = \"Maximum\"\n\
                     [application.policy]\nplugin = \"hold\"\n";
        let only_flink: Config = toml::from_str(flink).expect("a configuration");
        let document = policy(&only_flink, "eu-west-1", "123456789012");
        assert_eq!(document["Statement"], serde_json::json!([]));

        let mixed: Config = toml::from_str(&format!(
            "{flink}[[application]]\nname = \"orders\"\n[application.policy]\nplugin = \"step\"\n"
        ))
        .expect("a configuration");
        let document = policy(&mixed, "eu-west-1", "123456789012");
        assert_eq!(
            document["Statement"][0]["Resource"],
            serde_json::json!([
                "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders"
            ])
        );
        assert_eq!(document["Statement"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn alarms_read_from_cloudwatch_add_describe_alarms_on_exactly_those_alarms() {
        let config: Config = toml::from_str(
            "[[application]]\nname = \"orders\"\n\
             [[application.alarm]]\nid = \"scale-out\"\nsource = \"cloudwatch\"\n\
             alarm_name = \"ScaleOutAlarm-orders\"\n\
             [application.policy]\nplugin = \"step\"\n",
        )
        .expect("a configuration");
        let document = policy(&config, "eu-west-1", "123456789012");
        assert_eq!(document["Statement"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            document["Statement"][2]["Action"],
            serde_json::json!(["cloudwatch:DescribeAlarms"])
        );
        assert_eq!(
            document["Statement"][2]["Resource"],
            serde_json::json!([
                "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ScaleOutAlarm-orders"
            ])
        );
    }

    /// `--alarms-sync` adds what `alarms sync` calls, on exactly the
    /// mirrors; names IAM would read as wildcards or variables are
    /// escaped; the partition follows the region, any for any region.
    #[test]
    fn alarms_sync_escapes_and_partitions() {
        let config: Config = toml::from_str(
            "[[application]]\nname = \"orders\"\n\
             [[application.metric]]\nid = \"cpu\"\nnamespace = \"AWS/KinesisAnalytics\"\n\
             metric_name = \"containerCPUUtilization\"\nstatistic = \"Maximum\"\n\
             dimensions = { Application = \"orders\" }\n\
             [[application.alarm]]\nid = \"scale-out\"\nmetric = \"cpu\"\n\
             comparison = \"GreaterThanThreshold\"\nthreshold = 80.0\nevaluation_periods = 3\n\
             [[application.alarm]]\nid = \"theirs\"\nsource = \"cloudwatch\"\n\
             alarm_name = \"ScaleOut*${aws:username}?\"\n\
             [application.policy]\nplugin = \"step\"\n",
        )
        .expect("a configuration");
        let plain = policy(&config, "eu-west-1", "123456789012");
        assert!(!plain.to_string().contains("PutMetricAlarm"), "{plain}");
        assert_eq!(
            plain["Statement"][2]["Resource"],
            serde_json::json!([
                "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ScaleOut${*}${$}{aws:username}${?}"
            ])
        );
        let sync = policy_for(
            &config,
            "eu-west-1",
            "123456789012",
            Grants {
                read_only: false,
                alarms_sync: true,
            },
        );
        assert_eq!(sync["Statement"][3]["Sid"], "SyncAlarmMirrors");
        assert_eq!(
            sync["Statement"][3]["Action"],
            serde_json::json!(ALARM_SYNC_ACTIONS)
        );
        assert_eq!(
            sync["Statement"][3]["Resource"],
            serde_json::json!([
                "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:flinkscale-orders-scale-out"
            ])
        );
        for (region, partition) in [
            ("*", "*"),
            ("us-east-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(
                application_arn(region, "*", "a"),
                format!("arn:{partition}:kinesisanalytics:{region}:*:application/a")
            );
        }
    }

    /// Names that differ at an escaped character widen to the prefix
    /// before the escape, not into it (`alarm:Orders${*` was an unclosed
    /// policy variable).
    #[test]
    fn widening_never_cuts_an_escape_in_half() {
        let mut text = String::from("[[application]]\nname = \"app\"\n");
        for i in 0..60 {
            let mark = if i % 2 == 0 { '*' } else { '?' };
            text.push_str(&format!(
                "[[application.alarm]]\nid = \"a{i}\"\nsource = \"cloudwatch\"\n\
                 alarm_name = \"Orders{mark}-a-long-alarm-name-for-the-application-number-{i}\"\n"
            ));
        }
        text.push_str("[application.policy]\nplugin = \"hold\"\n");
        let config: Config = toml::from_str(&text).expect("a configuration");
        let document = policy(&config, "eu-west-1", "123456789012");
        assert!(policy_chars(&document) > MANAGED_POLICY_MAX_CHARS);
        let (wide, which) = widened(&document);
        assert_eq!(which, ["ReadCloudWatchAlarmStates"]);
        assert_eq!(
            wide["Statement"][2]["Resource"],
            serde_json::json!(["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Orders*"])
        );
    }

    #[test]
    fn account_and_region_are_checked() {
        assert!(parse_account("123456789012").is_ok());
        assert!(
            parse_account("12345")
                .expect_err("short")
                .contains("12 digits")
        );
        assert!(parse_region("eu-west-1").is_ok());
        assert!(parse_region("EU West").is_err());
    }
}
