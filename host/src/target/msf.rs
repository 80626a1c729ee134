//! Managed Service for Apache Flink (kinesisanalyticsv2) as a scaling target.
//!
//! `describe` reads DescribeApplication; `rescale` calls UpdateApplication
//! exactly as the reference design's Lambda does: quoting
//! `CurrentApplicationVersionId` (so a concurrent change is refused rather
//! than overwritten), with a CUSTOM parallelism configuration whose
//! parallelism is `kpu x ParallelismPerKPU`, ParallelismPerKPU unchanged, and
//! MSF's own autoscaling switched off (two scalers fighting over one
//! application is the failure this agent exists to avoid). Failures are
//! classified into [`TargetError`] by what the controller should do next.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_kinesisanalyticsv2::Client;
use aws_sdk_kinesisanalyticsv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesisanalyticsv2::operation::describe_application::DescribeApplicationError;
use aws_sdk_kinesisanalyticsv2::operation::update_application::UpdateApplicationError;
use aws_sdk_kinesisanalyticsv2::types::{
    ApplicationConfigurationUpdate, ApplicationDetail, ConfigurationType,
    FlinkApplicationConfigurationUpdate, ParallelismConfigurationUpdate,
};

use super::{AppState, AppStatus, ScalingTarget, TargetError};
use crate::telemetry::prometheus::CountedCall;

/// Counts `call` for `flinkscale_aws_calls_total` and its duration
/// histogram by how it ended, and passes its result on.
fn counted<T>(call: CountedCall, result: Result<T, TargetError>) -> Result<T, TargetError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(TargetError::Throttled(_)) => "throttled",
        Err(TargetError::ConcurrentModification(_)) => "concurrent_modification",
        Err(TargetError::ResourceInUse(_)) => "resource_in_use",
        Err(TargetError::LimitExceeded(_) | TargetError::SlotsExceeded { .. }) => "limit_exceeded",
        Err(TargetError::Invalid(_)) => "invalid",
        Err(TargetError::NotFound(_)) => "not_found",
        Err(TargetError::Permission(_)) => "permission",
        Err(TargetError::Request(_)) => "request",
        Err(TargetError::Transient(_)) => "transient",
    };
    call.ended(outcome);
    result
}

/// Scales applications of Managed Service for Apache Flink.
#[derive(Debug, Clone)]
pub struct MsfTarget {
    client: Client,
}

impl MsfTarget {
    /// A target using a kinesisanalyticsv2 client built from `config`
    /// (endpoint, region, credentials, retries and timeouts come from there).
    pub fn new(config: &SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    /// A target over an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ScalingTarget for MsfTarget {
    async fn describe(&self, application: &str) -> Result<AppState, TargetError> {
        let call = CountedCall::aws("DescribeApplication");
        let result = self
            .client
            .describe_application()
            .application_name(application)
            .send()
            .await
            .map_err(|error| classify("DescribeApplication", &error));
        let output = counted(call, result)?;
        let detail = output.application_detail().ok_or_else(|| {
            TargetError::Transient("DescribeApplication answered no ApplicationDetail".into())
        })?;
        app_state(detail)
    }

    async fn rescale(
        &self,
        application: &str,
        kpu: u32,
        current: &AppState,
    ) -> Result<u64, TargetError> {
        let parallelism = kpu
            .checked_mul(current.parallelism_per_kpu)
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| {
                TargetError::Request(format!(
                    "{kpu} KPU x {} parallelism per KPU is out of range",
                    current.parallelism_per_kpu
                ))
            })?;
        let parallelism_per_kpu = i32::try_from(current.parallelism_per_kpu).map_err(|_| {
            TargetError::Request(format!(
                "parallelism per KPU {} is out of range",
                current.parallelism_per_kpu
            ))
        })?;
        let version_id = i64::try_from(current.version_id).map_err(|_| {
            TargetError::Request(format!("version id {} is out of range", current.version_id))
        })?;
        let update = ApplicationConfigurationUpdate::builder()
            .flink_application_configuration_update(
                FlinkApplicationConfigurationUpdate::builder()
                    .parallelism_configuration_update(
                        ParallelismConfigurationUpdate::builder()
                            .configuration_type_update(ConfigurationType::Custom)
                            .parallelism_update(parallelism)
                            .parallelism_per_kpu_update(parallelism_per_kpu)
                            .auto_scaling_enabled_update(false)
                            .build(),
                    )
                    .build(),
            )
            .build();
        // One attempt, whatever the client's retry policy: a retried
        // attempt after a lost answer quotes a version id the first one
        // already moved, and its ConcurrentModification would hide that
        // the update took effect. The controller resolves every failure
        // against DescribeApplication instead.
        let call = CountedCall::aws("UpdateApplication");
        let result = self
            .client
            .update_application()
            .application_name(application)
            .current_application_version_id(version_id)
            .application_configuration_update(update)
            .customize()
            .config_override(
                aws_sdk_kinesisanalyticsv2::config::Builder::default()
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|error| classify("UpdateApplication", &error));
        let output = counted(call, result)?;
        let detail = output.application_detail().ok_or_else(|| {
            TargetError::Transient("UpdateApplication answered no ApplicationDetail".into())
        })?;
        version(detail.application_version_id())
    }
}

/// Reads status, capacity and version from an application's description.
///
/// The parallelism is `CurrentParallelism` when MSF reports it, because that
/// is what runs now (MSF's own autoscaling changes it without touching the
/// configured `Parallelism`), and the configured `Parallelism` otherwise.
fn app_state(detail: &ApplicationDetail) -> Result<AppState, TargetError> {
    let parallelism_config = detail
        .application_configuration_description()
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.parallelism_configuration_description())
        .ok_or_else(|| {
            TargetError::Invalid(format!(
                "application {} has no Flink parallelism configuration",
                detail.application_name()
            ))
        })?;
    let parallelism = parallelism_config
        .current_parallelism()
        .or(parallelism_config.parallelism())
        .ok_or_else(|| {
            TargetError::Invalid(format!(
                "application {} reports no parallelism",
                detail.application_name()
            ))
        })?;
    let positive = |value: i32, what: &str| {
        u32::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| TargetError::Invalid(format!("{what} {value} is not positive")))
    };
    Ok(AppState {
        status: AppStatus::from_msf(detail.application_status().as_str()),
        parallelism: positive(parallelism, "parallelism")?,
        // MSF's default when the field is absent.
        parallelism_per_kpu: positive(
            parallelism_config.parallelism_per_kpu().unwrap_or(1),
            "parallelism per KPU",
        )?,
        version_id: version(detail.application_version_id())?,
        autoscaling_enabled: parallelism_config.auto_scaling_enabled().unwrap_or(false),
        // A `DateTime` out of i64 milliseconds (a year past 292 million) says
        // nothing usable: unknown, as when the field is absent.
        last_update_ms: detail
            .last_update_timestamp()
            .and_then(|at| at.to_millis().ok()),
        // Re-created under its name, an application keeps its ARN and
        // starts again at version 1: only its creation time is new.
        identity: detail
            .create_timestamp()
            .and_then(|at| at.to_millis().ok())
            .map(|ms| ms.to_string()),
        // Not said: whether the configured `Parallelism` reads as the one
        // asked for while an update is applied is not documented (the
        // emulator reports the one in effect), and reading an update that
        // took as one that did not would send it twice. A lost answer
        // met by another writer's update takes the safe reading.
        asked_kpu: None,
        // A negative version is nonsense; read as no rollback said.
        rolled_back_from: detail
            .application_version_rolled_back_from()
            .and_then(|v| u64::try_from(v).ok()),
    })
}

fn version(id: i64) -> Result<u64, TargetError> {
    u64::try_from(id).map_err(|_| TargetError::Invalid(format!("version id {id} is negative")))
}

/// The typed errors the two operations model, reduced to what a caller does
/// about them.
trait Classified {
    /// The class of a modelled error, if this is one.
    fn class(&self) -> Option<fn(String) -> TargetError>;
}

impl Classified for DescribeApplicationError {
    fn class(&self) -> Option<fn(String) -> TargetError> {
        match self {
            Self::InvalidArgumentException(_) | Self::InvalidRequestException(_) => {
                Some(TargetError::Invalid)
            }
            Self::ResourceNotFoundException(_) => Some(TargetError::NotFound),
            _ => None,
        }
    }
}

impl Classified for UpdateApplicationError {
    fn class(&self) -> Option<fn(String) -> TargetError> {
        match self {
            Self::ConcurrentModificationException(_) => Some(TargetError::ConcurrentModification),
            Self::ResourceInUseException(_) => Some(TargetError::ResourceInUse),
            Self::LimitExceededException(_) => Some(TargetError::LimitExceeded),
            Self::InvalidArgumentException(_)
            | Self::InvalidApplicationConfigurationException(_)
            | Self::InvalidRequestException(_)
            | Self::CodeValidationException(_) => Some(TargetError::Invalid),
            Self::ResourceNotFoundException(_) => Some(TargetError::NotFound),
            _ => None,
        }
    }
}

/// The class of an error code the operation does not model (throttling is
/// never modelled; the rest appear on one operation and not the other).
fn class_of_code(code: &str) -> Option<fn(String) -> TargetError> {
    Some(match code {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "TooManyRequests" => {
            TargetError::Throttled
        }
        "ConcurrentModificationException" => TargetError::ConcurrentModification,
        "ResourceInUseException" => TargetError::ResourceInUse,
        "LimitExceededException" => TargetError::LimitExceeded,
        "InvalidArgumentException"
        | "InvalidApplicationConfigurationException"
        | "InvalidRequestException"
        | "UnsupportedOperationException"
        | "CodeValidationException" => TargetError::Invalid,
        "ResourceNotFoundException" => TargetError::NotFound,
        code if crate::aws::is_permission_code(code) => TargetError::Permission,
        _ => return None,
    })
}

/// Maps an SDK failure of `operation` to a [`TargetError`]. Dispatch
/// failures, timeouts, 5xx and unknown codes are transient.
fn classify<E>(operation: &str, error: &SdkError<E>) -> TargetError
where
    E: Classified + ProvideErrorMetadata + std::error::Error + 'static,
{
    let class = error
        .as_service_error()
        .and_then(|service| {
            service
                .class()
                .or_else(|| service.code().and_then(class_of_code))
        })
        .or_else(|| {
            crate::aws::is_credentials_failure(error)
                .then_some(TargetError::Permission as fn(String) -> TargetError)
        })
        .or_else(|| {
            // A bare 429 without a code is throttling all the same.
            (error.raw_response().map(|r| r.status().as_u16()) == Some(429))
                .then_some(TargetError::Throttled as fn(String) -> TargetError)
        })
        .unwrap_or(TargetError::Transient);
    let message = match error.code() {
        None if crate::aws::is_credentials_failure(error) => format!(
            "{operation} was not sent: no usable AWS credentials ({}): {}",
            crate::aws::CREDENTIAL_SOURCES,
            crate::aws::error_text(error)
        ),
        // Name the permission to grant, as AWS's refusal says it.
        Some(code) if crate::aws::is_permission_code(code) => format!(
            "{operation} failed with {}",
            crate::aws::permission_message(
                &format!("kinesisanalytics:{operation}"),
                code,
                error.message().unwrap_or("no message")
            )
        ),
        Some(code) => format!(
            "{operation} failed with {code}: {}",
            error.message().unwrap_or("no message")
        ),
        None => format!("{operation} failed: {}", crate::aws::error_text(error)),
    };
    match class(message) {
        TargetError::LimitExceeded(message)
            if speaks_of_a_rate(error.message().unwrap_or_default()) =>
        {
            TargetError::Throttled(message)
        }
        classified => classified,
    }
}

/// Whether a `LimitExceededException`'s message is about a request rate
/// (Kinesis Data Streams answers its throttling with that code: "Rate
/// exceeded for stream ..."; the SDK's retry classifier takes the code for
/// throttling too), not a capacity: MSF does not document the message of
/// its KPU refusal, and a ceiling recorded from a throttled update would
/// hold the application below the size refused for an hour, and the
/// probes one KPU lower every 5 s would be throttled in turn.
fn speaks_of_a_rate(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "rate exceeded",
        "rate limit",
        "throttl",
        "too many requests",
    ]
    .iter()
    .any(|words| message.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_classes() {
        let class = |code| class_of_code(code).map(|c| c(String::new()));
        assert_eq!(
            class("ThrottlingException"),
            Some(TargetError::Throttled(String::new()))
        );
        assert_eq!(
            class("TooManyRequests"),
            Some(TargetError::Throttled(String::new()))
        );
        assert_eq!(
            class("UnsupportedOperationException"),
            Some(TargetError::Invalid(String::new()))
        );
        assert_eq!(class("InternalFailure"), None);
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "ExpiredTokenException",
        ] {
            assert_eq!(class(code), Some(TargetError::Permission(String::new())));
        }
    }

    #[test]
    fn missing_credentials_are_said_in_one_short_line() {
        use aws_credential_types::provider::error::CredentialsError;
        use aws_sdk_kinesisanalyticsv2::error::ConnectorError;
        use aws_sdk_kinesisanalyticsv2::operation::describe_application::DescribeApplicationError;
        let missing: SdkError<DescribeApplicationError> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::not_loaded("no credentials in the chain")),
                None,
            ));
        let TargetError::Permission(message) = classify("DescribeApplication", &missing) else {
            panic!("not a permission failure");
        };
        assert_eq!(
            message,
            format!(
                "DescribeApplication was not sent: no usable AWS credentials ({}): dispatch \
                 failure: other: the credential provider was not enabled: no credentials in the \
                 chain",
                crate::aws::CREDENTIAL_SOURCES
            )
        );
    }
}
