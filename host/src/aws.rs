//! Shared AWS SDK configuration for every client the agent builds.
//!
//! All clients (CloudWatch, kinesisanalyticsv2) start from one
//! [`aws_config::SdkConfig`] loaded by the SDK's own default chain, so the
//! standard mechanisms keep working with no code of ours in the way:
//! `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_CLOUDWATCH` /
//! `AWS_ENDPOINT_URL_KINESIS_ANALYTICS_V2` (how the agent is pointed at the
//! project's emulator), `AWS_PROFILE`, `AWS_REGION`, and the credentials
//! chain (environment, profile, SSO, web identity, ECS, IMDS). The agent only
//! pins the retry policy and the timeouts, and lets the configuration file
//! override the region.
//!
//! It also holds what every adapter needs to recognise the `permission`
//! failure class the same way: AWS's error codes for a refused identity or
//! action ([`is_permission_code`]), a credentials provider that could not
//! produce credentials ([`is_credentials_failure`]), and the action a refusal
//! names ([`missing_action`]). Such failures do not heal by retrying.

use std::error::Error;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatch::error::SdkError;

/// Attempts per call, the first included.
///
/// The SDK's standard mode retries throttling, transient and 5xx errors with
/// jittered exponential back-off and a client-side retry quota. Three
/// attempts absorb a blip; anything longer is better handled by the
/// controller, which re-evaluates on its next tick with fresh data instead of
/// insisting on a stale request. Being set in code, it takes precedence over
/// `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE`.
pub const MAX_ATTEMPTS: u32 = 3;

/// Deadline of one attempt (connect, send, and read the whole answer).
///
/// A GetMetricData page or a DescribeApplication answers in well under a
/// second; a hung connection must not stall a controller for the SDK's
/// default of no deadline at all.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of one call, all attempts and back-off included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(35);

/// The SDK's app name for every client of the agent, `flinkscale-VERSION`:
/// the SDK sends it as `app/flinkscale-VERSION` in the User-Agent, so
/// CloudTrail's `userAgent` shows who called UpdateApplication, and which
/// release. (An app name cannot hold a `/`, so the version is joined with
/// `-`.)
pub fn app_name() -> Option<aws_config::AppName> {
    aws_config::AppName::new(format!("flinkscale-{}", env!("CARGO_PKG_VERSION"))).ok()
}

/// The config loader with the agent's retry and timeout policy and app name
/// ([`app_name`]) applied and, when given, the region overridden. Everything else comes from the SDK's
/// default chains; callers (tests, the emulator) may refine the loader
/// further, e.g. with an endpoint URL or test credentials.
pub fn config_loader(region: Option<&str>) -> ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(name) = app_name() {
        loader = loader.app_name(name);
    }
    loader
}

/// Loads the SDK configuration shared by every AWS client of the agent.
///
/// `region`, when given (from the configuration file), overrides
/// `AWS_REGION` and the profile's region.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let sdk = config_loader(region).load().await;
    // The global override, then each service's own, which the SDK reads
    // when it builds that service's client and which wins over it.
    let mut endpoints: Vec<(&str, String)> = Vec::new();
    if let Some(url) = sdk.endpoint_url() {
        endpoints.push(("all services", url.to_owned()));
    }
    for (service, variable) in [
        ("CloudWatch", "AWS_ENDPOINT_URL_CLOUDWATCH"),
        ("Kinesis Analytics", "AWS_ENDPOINT_URL_KINESIS_ANALYTICS_V2"),
    ] {
        if let Some(url) = std::env::var(variable).ok().filter(|url| !url.is_empty()) {
            endpoints.push((service, url));
        }
    }
    say_endpoints(&endpoints);
    sdk
}

/// Says, once per process, which AWS calls go to an overridden endpoint
/// (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`, or a service's own
/// `AWS_ENDPOINT_URL_<SERVICE>`) rather than to AWS's own: a variable left
/// over from trying the emulator would otherwise scale the emulator while
/// `/readyz` says all is well. Plain HTTP to anything but loopback is a
/// warning: the requests, signed with the real credentials and their
/// session token, cross the network unencrypted. (A profile's per-service
/// `endpoint_url` is not said.)
fn say_endpoints(endpoints: &[(&str, String)]) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if endpoints.is_empty() || SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    for (service, url) in endpoints {
        if endpoint_is_plain_and_remote(url) {
            tracing::warn!(
                message = "AWS calls go to an overridden endpoint over plain HTTP, off this host: signed requests and session tokens cross the network unencrypted.",
                service = %service,
                endpoint = %url,
            );
        } else {
            tracing::info!(
                message = "AWS calls go to an overridden endpoint, not AWS's own.",
                service = %service,
                endpoint = %url,
            );
        }
    }
}

/// Whether `url` is `http://` to a host other than loopback (`localhost`,
/// 127.0.0.0/8, `::1`).
fn endpoint_is_plain_and_remote(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Error codes with which AWS refuses the caller's identity or the action
/// it asked for, across services and protocols (query, JSON, CBOR).
pub const PERMISSION_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
];

/// Whether `code` says the agent's identity or permissions were refused
/// (see [`PERMISSION_CODES`]).
pub fn is_permission_code(code: &str) -> bool {
    PERMISSION_CODES.contains(&code)
}

/// Whether the SDK failed because its credentials provider could not
/// produce credentials (none configured, an expired SSO session, a role that
/// cannot be assumed, ...), rather than because of the call.
///
/// The SDK resolves the identity at the start of each attempt; a
/// provider's [`CredentialsError`] is passed up unchanged and, the request
/// not having been sent, surfaces as [`SdkError::DispatchFailure`] wrapping
/// a connector error of kind "other" whose source is that
/// `CredentialsError` (aws-smithy-runtime's `try_attempt` and
/// `convert_dispatch_error`). It is recognised by finding the
/// `CredentialsError` in the error's source chain, wherever a later SDK
/// version may put it, so a network failure (also a dispatch failure) is
/// never mistaken for one.
pub fn is_credentials_failure<E, R>(error: &SdkError<E, R>) -> bool
where
    E: Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = next {
        if current.is::<CredentialsError>() {
            return true;
        }
        next = current.source();
    }
    false
}

/// Where the agent's region comes from, for a message saying none was
/// found: `under` is where `region` goes (`[agent]`, or `[agent] in
/// FILE`).
pub fn region_sources(under: &str) -> String {
    format!(
        "set `region` under {under}, or AWS_REGION, or the profile's `region` (AWS_PROFILE, \
         ~/.aws/config); on EC2 the instance metadata service gives it, and did not"
    )
}

/// Whether a region the SDK's chain did not find may still come: the
/// host is an EC2 instance, whose instance metadata service always knows
/// its region, and `AWS_EC2_METADATA_DISABLED` does not keep the SDK from
/// asking it. The service then failed to answer for the moment (the
/// agent started before the network was up, the service throttled it) or,
/// in a container whose instance requires IMDSv2 with a hop limit of 1,
/// never answers there; starting again can help with the first.
pub fn region_may_come_later() -> bool {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED").ok();
    !metadata_disabled(disabled.as_deref()) && on_ec2(std::path::Path::new("/"))
}

/// What `run` adds to its no-region error on an EC2 instance
/// ([`region_may_come_later`]), which then exits 1 for a restart.
pub const METADATA_REGION_HINT: &str = "this host is an EC2 instance, whose instance metadata \
     service gives the region, and it did not answer now: the agent exits 1 so that its service \
     manager starts it again (in a container, an instance that requires IMDSv2 needs a hop \
     limit of 2 for the service to answer there; `region` under [agent] or AWS_REGION needs no \
     answer)";

/// Whether `AWS_EC2_METADATA_DISABLED`'s value turns the SDK's instance
/// metadata client off: `true` in any case, as the SDK reads it.
fn metadata_disabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether the machine whose root file system is `root` is an EC2
/// instance, by what its firmware tells Linux: the system vendor `Amazon
/// EC2` (Nitro instances), a hypervisor UUID starting with `ec2` or a BIOS
/// version naming `amazon` (Xen instances). Off Linux, or where `/sys` is
/// not readable, it is not known to be one.
fn on_ec2(root: &std::path::Path) -> bool {
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path))
            .map(|text| text.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    read("sys/devices/virtual/dmi/id/sys_vendor") == "amazon ec2"
        || read("sys/hypervisor/uuid").starts_with("ec2")
        || read("sys/devices/virtual/dmi/id/bios_version").contains("amazon")
}

/// Where the SDK's default chain takes credentials from, for a message
/// that says none were usable (the SDK's own text names only the last
/// place it tried, usually the instance metadata service).
pub const CREDENTIAL_SOURCES: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
     AWS_PROFILE (~/.aws/credentials, ~/.aws/config), or give the host an instance or container \
     role; the emulator takes any keys";

/// An SDK error's text for a log line or a report: its message and each
/// cause's, joined by `: `, a cause whose text is already said left out.
///
/// The SDK's own `DisplayErrorContext` says the same and then appends the
/// whole error's `Debug` form (the response, its headers and extensions),
/// about a kilobyte per failed call in the log of an agent that retries.
pub fn error_text(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// The IAM action an AWS refusal names, e.g. `cloudwatch:GetMetricData`
/// from "User: arn:aws:iam::1:user/a is not authorized to perform:
/// cloudwatch:GetMetricData because no identity-based policy allows ...".
pub fn missing_action(message: &str) -> Option<&str> {
    const MARK: &str = "not authorized to perform:";
    let rest = message[message.find(MARK)? + MARK.len()..].trim_start();
    let action = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .next()?
        .trim_end_matches('.');
    let (service, name) = action.split_once(':')?;
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (word(service) && word(name)).then_some(action)
}

/// The text of a permission failure of a call that needs `call_action`
/// (`cloudwatch:GetMetricData`): the code and AWS's message, and the
/// action to grant, as AWS named it or, for a plain refusal that names
/// none, the call's own.
pub fn permission_message(call_action: &str, code: &str, message: &str) -> String {
    match missing_action(message) {
        Some(action) => format!("{code}: missing permission {action}: {message}"),
        None if code.starts_with("AccessDenied") || code == "UnauthorizedOperation" => {
            format!("{code}: {message} (the call needs {call_action})")
        }
        None => format!("{code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EC2 instance is told by its firmware as Linux shows it, in
    /// either generation; a machine without those files (a laptop, a
    /// container without `/sys`) is not one.
    #[test]
    fn an_ec2_instance_is_known_by_its_firmware() {
        // Each machine: the files its /sys holds, and whether it is one.
        let machines: [(&[(&str, &str)], bool); 5] = [
            (
                &[("sys/devices/virtual/dmi/id/sys_vendor", "Amazon EC2\n")],
                true,
            ),
            (
                &[(
                    "sys/hypervisor/uuid",
                    "ec2e1916-9099-7caf-fd21-012345abcdef\n",
                )],
                true,
            ),
            (
                &[("sys/devices/virtual/dmi/id/bios_version", "4.11.amazon\n")],
                true,
            ),
            (
                &[
                    ("sys/devices/virtual/dmi/id/sys_vendor", "QEMU\n"),
                    (
                        "sys/hypervisor/uuid",
                        "4c4c4544-0033-3010-8033-b4c04f4d4b32\n",
                    ),
                ],
                false,
            ),
            (&[], false),
        ];
        for (files, ec2) in machines {
            let root = tempfile::tempdir().expect("a folder");
            for (path, text) in files {
                let file = root.path().join(path);
                std::fs::create_dir_all(file.parent().expect("a parent")).expect("made");
                std::fs::write(file, text).expect("written");
            }
            assert_eq!(on_ec2(root.path()), ec2, "{files:?}");
        }
    }

    /// `AWS_EC2_METADATA_DISABLED` turns the metadata client off as the
    /// SDK reads it: `true` in any case; anything else leaves it on.
    #[test]
    fn the_metadata_service_is_off_only_when_the_variable_says_true() {
        assert!(metadata_disabled(Some("true")));
        assert!(metadata_disabled(Some("TRUE")));
        assert!(!metadata_disabled(Some("false")));
        assert!(!metadata_disabled(Some("1")));
        assert!(!metadata_disabled(None));
    }

    /// Plain HTTP off this host is what the start warns of; the emulator
    /// on loopback and HTTPS anywhere are only said.
    #[test]
    fn an_endpoint_is_plain_and_remote_only_over_http_off_loopback() {
        for remote in [
            "http://10.0.0.5:4566",
            "http://emulator.internal:4566",
            "http://[2001:db8::1]:4566",
        ] {
            assert!(endpoint_is_plain_and_remote(remote), "{remote}");
        }
        for not in [
            "http://127.0.0.1:4566",
            "http://127.9.9.9:4566",
            "http://localhost:4566",
            "http://[::1]:4566",
            "https://kinesisanalytics.vpce.example.com",
            "not a url",
        ] {
            assert!(!endpoint_is_plain_and_remote(not), "{not}");
        }
    }

    #[test]
    fn permission_codes_are_recognised_and_others_are_not() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ] {
            assert!(is_permission_code(code), "{code}");
        }
        for code in [
            "ThrottlingException",
            "InvalidParameterValue",
            "InternalServiceError",
            "ResourceNotFoundException",
            "accessdenied",
            "",
        ] {
            assert!(!is_permission_code(code), "{code}");
        }
    }

    #[test]
    fn a_credentials_failure_is_recognised_for_every_client() {
        use aws_sdk_kinesisanalyticsv2::error::ConnectorError;
        use aws_sdk_kinesisanalyticsv2::operation::update_application::UpdateApplicationError;
        // The MSF client's SdkError is the same type as CloudWatch's, so
        // the target can use the same recognition.
        let missing: SdkError<UpdateApplicationError> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::provider_error(
                    "the SSO session has expired",
                )),
                None,
            ));
        assert!(is_credentials_failure(&missing));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let network: SdkError<UpdateApplicationError> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert!(!is_credentials_failure(&network));
        let timeout: SdkError<UpdateApplicationError> = SdkError::timeout_error("slow");
        assert!(!is_credentials_failure(&timeout));
    }

    #[test]
    fn an_error_text_says_each_cause_once_and_no_debug_form() {
        use aws_sdk_kinesisanalyticsv2::error::ConnectorError;
        use aws_sdk_kinesisanalyticsv2::operation::describe_application::DescribeApplicationError;
        let missing: SdkError<DescribeApplicationError> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::not_loaded("no credentials in the chain")),
                None,
            ));
        let text = error_text(&missing);
        assert!(text.starts_with("dispatch failure"), "{text}");
        assert!(text.contains("no credentials in the chain"), "{text}");
        // The SDK's DisplayErrorContext ends with `(DispatchFailure(...))`.
        assert!(!text.contains("DispatchFailure"), "{text}");
        assert!(!text.contains("ConnectorError"), "{text}");
        assert_eq!(
            text.matches("no credentials in the chain").count(),
            1,
            "{text}"
        );
        let timeout: SdkError<DescribeApplicationError> = SdkError::timeout_error("slow");
        assert_eq!(error_text(&timeout), "request has timed out: slow");
    }

    #[test]
    fn the_missing_action_is_read_from_the_refusal() {
        assert_eq!(
            missing_action(
                "User: arn:aws:sts::123456789012:assumed-role/agent/i-0 is not authorized to perform: cloudwatch:GetMetricData because no identity-based policy allows the cloudwatch:GetMetricData action"
            ),
            Some("cloudwatch:GetMetricData")
        );
        assert_eq!(
            missing_action(
                "User: arn:aws:iam::1:user/a is not authorized to perform: kinesisanalytics:UpdateApplication on resource: arn:aws:kinesisanalytics:us-east-1:1:application/orders"
            ),
            Some("kinesisanalytics:UpdateApplication")
        );
        assert_eq!(
            missing_action("... not authorized to perform: cloudwatch:GetMetricData."),
            Some("cloudwatch:GetMetricData")
        );
        for message in [
            "Access denied",
            "not authorized to perform:",
            "not authorized to perform: something odd",
            "not authorized to perform: \u{1b}[2J:x",
        ] {
            assert_eq!(missing_action(message), None, "{message}");
        }
    }

    #[test]
    fn a_permission_message_names_the_action_to_grant() {
        let named = permission_message(
            "cloudwatch:GetMetricData",
            "AccessDenied",
            "User: u is not authorized to perform: cloudwatch:GetMetricData",
        );
        assert!(
            named.starts_with("AccessDenied: missing permission cloudwatch:GetMetricData: "),
            "{named}"
        );
        let plain = permission_message(
            "cloudwatch:GetMetricData",
            "AccessDeniedException",
            "denied",
        );
        assert_eq!(
            plain,
            "AccessDeniedException: denied (the call needs cloudwatch:GetMetricData)"
        );
        let expired = permission_message("cloudwatch:GetMetricData", "ExpiredToken", "expired");
        assert_eq!(expired, "ExpiredToken: expired");
    }
}
