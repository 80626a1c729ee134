//! CloudWatch's own alarms: DescribeAlarms and PutMetricAlarm.
//!
//! Three features read or write alarms that CloudWatch evaluates rather
//! than flinkscale: `import alarms` (which alarms watch an application),
//! alarms with `source = "cloudwatch"` (their state, asked for all of them
//! in one call per evaluation) and `alarms sync` (CloudWatch alarms that
//! mirror local ones). They share this client, so that every call pages
//! the same way and its failures fall in the same classes as
//! GetMetricData's ([`MetricsError`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricAlarm, StateValue, Statistic as SdkStatistic,
};

use super::MetricsError;
use crate::config::{Comparison, TreatMissingData};
use crate::model::AlarmState;
use crate::telemetry::prometheus::CountedCall;

/// DescribeAlarms takes at most this many names per call.
pub const MAX_NAMES_PER_CALL: usize = 100;

/// A metric alarm as CloudWatch describes it: the fields flinkscale reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DescribedAlarm {
    /// `AlarmName`.
    pub name: String,
    /// `StateValue`; `None` for a value this version does not know.
    pub state: Option<AlarmState>,
    /// `StateUpdatedTimestamp`, milliseconds since the Unix epoch.
    pub state_updated_ms: Option<i64>,
    /// `Namespace`; `None` for a metric math alarm.
    pub namespace: Option<String>,
    /// `MetricName`; `None` for a metric math alarm.
    pub metric_name: Option<String>,
    /// `Dimensions`, name -> value.
    pub dimensions: BTreeMap<String, String>,
    /// `Statistic`, or `ExtendedStatistic` (a percentile).
    pub statistic: Option<String>,
    /// `Period` in seconds.
    pub period_secs: Option<u32>,
    /// `Unit`: when set, CloudWatch judges only the data published in it.
    pub unit: Option<String>,
    /// `ComparisonOperator`, as CloudWatch spells it.
    pub comparison: Option<String>,
    /// `Threshold`; `None` for an anomaly detection alarm.
    pub threshold: Option<f64>,
    /// `EvaluationPeriods` (N).
    pub evaluation_periods: Option<u32>,
    /// `DatapointsToAlarm` (M); CloudWatch's default is N.
    pub datapoints_to_alarm: Option<u32>,
    /// `TreatMissingData`; CloudWatch's default is `missing`.
    pub treat_missing_data: Option<String>,
    /// Whether the alarm is on metric math (`Metrics`) rather than on one
    /// metric.
    pub metric_math: bool,
    /// `EvaluateLowSampleCountPercentile` of a percentile alarm:
    /// `evaluate` (CloudWatch's default) or `ignore`.
    pub low_sample_count: Option<String>,
}

impl DescribedAlarm {
    fn from_sdk(a: &MetricAlarm) -> Self {
        let state = a.state_value().and_then(|s| match s {
            StateValue::Ok => Some(AlarmState::Ok),
            StateValue::Alarm => Some(AlarmState::Alarm),
            StateValue::InsufficientData => Some(AlarmState::InsufficientData),
            _ => None,
        });
        let statistic = a
            .statistic()
            .map(|s| s.as_str().to_owned())
            .or_else(|| a.extended_statistic().map(str::to_owned));
        Self {
            name: a.alarm_name().unwrap_or_default().to_owned(),
            state,
            state_updated_ms: a.state_updated_timestamp().and_then(|t| t.to_millis().ok()),
            namespace: a.namespace().map(str::to_owned),
            metric_name: a.metric_name().map(str::to_owned),
            dimensions: a
                .dimensions()
                .iter()
                .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                .collect(),
            statistic,
            period_secs: a.period().and_then(|p| u32::try_from(p).ok()),
            unit: a.unit().map(|u| u.as_str().to_owned()),
            comparison: a.comparison_operator().map(|c| c.as_str().to_owned()),
            threshold: a.threshold(),
            evaluation_periods: a.evaluation_periods().and_then(|n| u32::try_from(n).ok()),
            datapoints_to_alarm: a.datapoints_to_alarm().and_then(|n| u32::try_from(n).ok()),
            treat_missing_data: a.treat_missing_data().map(str::to_owned),
            metric_math: !a.metrics().is_empty(),
            low_sample_count: a.evaluate_low_sample_count_percentile().map(str::to_owned),
        }
    }
}

/// A metric alarm to create or update with PutMetricAlarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSpec {
    /// `AlarmName`.
    pub name: String,
    /// `AlarmDescription`.
    pub description: String,
    /// `Namespace`.
    pub namespace: String,
    /// `MetricName`.
    pub metric_name: String,
    /// `Dimensions`.
    pub dimensions: BTreeMap<String, String>,
    /// A statistic, or a percentile (sent as `ExtendedStatistic`).
    pub statistic: String,
    /// `Period` in seconds.
    pub period_secs: u32,
    /// `ComparisonOperator`.
    pub comparison: Comparison,
    /// `Threshold`.
    pub threshold: f64,
    /// `EvaluationPeriods`.
    pub evaluation_periods: u32,
    /// `DatapointsToAlarm`.
    pub datapoints_to_alarm: u32,
    /// `TreatMissingData`.
    pub treat_missing_data: TreatMissingData,
}

/// CloudWatch's spelling of `c`.
pub fn comparison_name(c: Comparison) -> &'static str {
    match c {
        Comparison::GreaterThanOrEqualToThreshold => "GreaterThanOrEqualToThreshold",
        Comparison::GreaterThanThreshold => "GreaterThanThreshold",
        Comparison::LessThanThreshold => "LessThanThreshold",
        Comparison::LessThanOrEqualToThreshold => "LessThanOrEqualToThreshold",
    }
}

/// CloudWatch's spelling of `t`.
pub fn treat_missing_name(t: TreatMissingData) -> &'static str {
    match t {
        TreatMissingData::Missing => "missing",
        TreatMissingData::Breaching => "breaching",
        TreatMissingData::NotBreaching => "notBreaching",
        TreatMissingData::Ignore => "ignore",
    }
}

/// Whether `statistic` is a percentile (`p99`, `p99.9`), which CloudWatch
/// takes as `ExtendedStatistic`.
pub(crate) fn is_percentile(statistic: &str) -> bool {
    statistic
        .strip_prefix('p')
        .is_some_and(|rest| !rest.is_empty() && rest.parse::<f64>().is_ok())
}

/// Where the controller reads the state of `source = "cloudwatch"` alarms:
/// [`CloudWatchAlarms`] in production, a fake in tests.
#[async_trait]
pub trait AlarmStates: Send + Sync {
    /// The alarms of those names that exist, in one DescribeAlarms call per
    /// [`MAX_NAMES_PER_CALL`] names.
    async fn describe_named(&self, names: &[String]) -> Result<Vec<DescribedAlarm>, MetricsError>;
}

#[async_trait]
impl AlarmStates for CloudWatchAlarms {
    async fn describe_named(&self, names: &[String]) -> Result<Vec<DescribedAlarm>, MetricsError> {
        CloudWatchAlarms::describe_named(self, names).await
    }
}

/// Reads and writes CloudWatch metric alarms.
#[derive(Debug, Clone)]
pub struct CloudWatchAlarms {
    client: Client,
}

impl CloudWatchAlarms {
    /// A client built from `config` (endpoint, region, credentials, retries
    /// and timeouts all come from there).
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            client: Client::new(config),
        }
    }

    /// Every metric alarm of the account and region, all pages.
    pub async fn describe_all(&self) -> Result<Vec<DescribedAlarm>, MetricsError> {
        self.describe(None).await
    }

    /// The metric alarms named `names` (those that exist): one call per
    /// [`MAX_NAMES_PER_CALL`] names (and its pages, which CloudWatch does
    /// not need for names alone).
    pub async fn describe_named(
        &self,
        names: &[String],
    ) -> Result<Vec<DescribedAlarm>, MetricsError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(MAX_NAMES_PER_CALL) {
            out.extend(self.describe(Some(chunk)).await?);
        }
        Ok(out)
    }

    async fn describe(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<DescribedAlarm>, MetricsError> {
        let mut out = Vec::new();
        let mut next_token: Option<String> = None;
        // The pages are the service's to give: a token seen before would
        // page for ever.
        let mut tokens = std::collections::HashSet::new();
        loop {
            let call = CountedCall::aws("DescribeAlarms");
            let result = self
                .client
                .describe_alarms()
                .set_alarm_names(names.map(<[String]>::to_vec))
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeAlarms", &e));
            // Each page is a call of its own, counted as one.
            call.ended(result.as_ref().map_or_else(MetricsError::outcome, |_| "ok"));
            let output = result?;
            out.extend(output.metric_alarms().iter().map(DescribedAlarm::from_sdk));
            match output.next_token() {
                Some(token) if !token.is_empty() => {
                    if !tokens.insert(token.to_owned()) {
                        return Err(MetricsError::Source(format!(
                            "DescribeAlarms answered the NextToken {token:?} a second time: \
                             its pages would never end"
                        )));
                    }
                    next_token = Some(token.to_owned());
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Creates the alarm, or replaces the one of that name (CloudWatch
    /// keeps its state).
    pub async fn put(&self, spec: &AlarmSpec) -> Result<(), MetricsError> {
        let dimensions: Vec<Dimension> = spec
            .dimensions
            .iter()
            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
            .collect();
        let mut call = self
            .client
            .put_metric_alarm()
            .alarm_name(&spec.name)
            .alarm_description(&spec.description)
            .namespace(&spec.namespace)
            .metric_name(&spec.metric_name)
            .set_dimensions(Some(dimensions))
            .period(i32::try_from(spec.period_secs).unwrap_or(i32::MAX))
            .evaluation_periods(i32::try_from(spec.evaluation_periods).unwrap_or(i32::MAX))
            .datapoints_to_alarm(i32::try_from(spec.datapoints_to_alarm).unwrap_or(i32::MAX))
            .threshold(spec.threshold)
            .comparison_operator(ComparisonOperator::from(comparison_name(spec.comparison)))
            .treat_missing_data(treat_missing_name(spec.treat_missing_data));
        call = if is_percentile(&spec.statistic) {
            call.extended_statistic(&spec.statistic)
        } else {
            call.statistic(SdkStatistic::from(spec.statistic.as_str()))
        };
        call.send()
            .await
            .map_err(|e| classify("PutMetricAlarm", &e))?;
        Ok(())
    }
}

/// The failure class of a call, as GetMetricData's are classified.
fn classify<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> MetricsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = error.code();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let full = crate::aws::error_text(error);
    let message = error.message().unwrap_or(&full);
    let action = format!("cloudwatch:{operation}");
    if code.is_some_and(|c| c.starts_with("Throttl") || c == "TooManyRequestsException")
        || status == Some(429)
    {
        return MetricsError::Throttled(format!("{operation}: {}: {message}", code.unwrap_or("")));
    }
    if crate::aws::is_credentials_failure(error) {
        return MetricsError::Permission(format!(
            "{operation} was not sent: no usable AWS credentials ({}): {full}",
            crate::aws::CREDENTIAL_SOURCES
        ));
    }
    if code.is_some_and(crate::aws::is_permission_code) || status == Some(403) {
        return MetricsError::Permission(format!(
            "{operation} refused: {}",
            crate::aws::permission_message(&action, code.unwrap_or("HTTP 403"), message)
        ));
    }
    let client_error = status.is_some_and(|s| (400..500).contains(&s));
    if client_error || matches!(error, SdkError::ConstructionFailure(_)) {
        return MetricsError::Invalid(match code {
            Some(code) => format!("{operation} failed with {code}: {full}"),
            None => format!("{operation} failed: {full}"),
        });
    }
    MetricsError::Source(format!("{operation} failed: {full}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_go_as_extended_statistics() {
        assert!(is_percentile("p99"));
        assert!(is_percentile("p99.9"));
        assert!(!is_percentile("Average"));
        assert!(!is_percentile("p"));
        assert!(!is_percentile("pmax"));
    }
}
