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

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};

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

/// The config loader with the agent's retry and timeout policy applied and,
/// when given, the region overridden. Everything else comes from the SDK's
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
    loader
}

/// Loads the SDK configuration shared by every AWS client of the agent.
///
/// `region`, when given (from the configuration file), overrides
/// `AWS_REGION` and the profile's region.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    config_loader(region).load().await
}

/// Whether an AWS error code says the agent's identity or permissions were
/// refused.
pub fn is_permission_code(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "UnrecognizedClient"
            | "UnrecognizedClientException"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "MissingAuthenticationToken"
    )
}

/// Whether a failed call failed because no credentials could be loaded
/// (the SDK reports the credentials provider's error as a dispatch
/// failure; its source chain holds a `CredentialsError`).
pub fn is_credentials_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        next = error.source();
    }
    false
}
