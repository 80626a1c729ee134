//! Fault injection: an error, a dropped connection or a delay for the next
//! N calls of an operation, or for a seeded fraction of them.
//!
//! A fault is drawn when the call arrives. By default it strikes before the
//! operation runs, so a faulted UpdateApplication changes nothing (a
//! request lost on its way, or refused); a `Delay` waits and then lets the
//! operation run. With `after_effect` the operation runs first and takes
//! effect as if nothing were wrong, and only then is the answer lost: an
//! error instead of the real answer, the connection closed with no answer
//! (`Drop`), or the answer held past the client's deadline. That is the
//! fault a client cannot tell from "never applied" without reading the
//! state back, which is what it exists to test. The fraction's draws
//! depend only on the seed and on how many matching calls came before, so a
//! test that sends the same calls sees the same faults.
//!
//! A fault may name an `application`: it then matches only the calls that
//! name that application (see [`names_application`]), so one application's
//! calls can be slowed or refused while the others' run as usual. A call
//! that carries several applications (a GetMetricData merging the queries
//! of several applications) is struck in whole when any of them is the
//! fault's: a slow or refused call is slow or refused for everything it
//! carries, as a real one is.

use serde::{Deserialize, Serialize};

use super::Service;
use super::value::{AwsError, Value};

/// The `error` of a fault that delays instead of failing.
pub const DELAY: &str = "Delay";

/// The `error` of a fault that closes the connection without an answer.
pub const DROP: &str = "Drop";

/// A fault to inject (`POST /_emulator/faults`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The operation it applies to, e.g. `UpdateApplication` or
    /// `GetMetricData`; `*` for every AWS operation.
    pub operation: String,
    /// The application it applies to: only the calls that name it (a
    /// kinesisanalyticsv2 call's `ApplicationName`; any `Application`
    /// dimension of a CloudWatch call, e.g. of one query of a
    /// GetMetricData, which is then struck in whole). Absent: every call
    /// of the operation, whatever it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// What the call answers: an error code (`ThrottlingException`,
    /// `InternalFailure` (HTTP 500), `ServiceUnavailable` (503),
    /// `ConcurrentModificationException`, `ResourceInUseException`,
    /// `LimitExceededException`, the permission errors `AccessDenied`
    /// (see [`FaultSpec::answer`] for their statuses per service),
    /// `UnrecognizedClientException`, `ExpiredTokenException`, or any other
    /// code, HTTP 400); `Delay` to answer normally after `delay_ms`; or
    /// `Drop` to close the connection without any answer.
    pub error: String,
    /// How long to wait, milliseconds (required for `Delay`): before the
    /// operation runs, or with `after_effect` after it took effect and
    /// before the answer (or the drop) goes out.
    #[serde(default)]
    pub delay_ms: u64,
    /// Let the operation run and take effect first, then answer the error,
    /// drop the connection, or wait `delay_ms` before the normal answer:
    /// an answer lost after the effect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_effect: bool,
    /// With a `Delay` before the effect: the request reaches the service
    /// when the wait ends even if its client hung up meanwhile (a request
    /// held in the network, landing after its client gave up; the call
    /// log marks it `client_gone`). Without it such a request is lost, as
    /// on a network that drops it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lands_late: bool,
    /// Applies to the next `count` matching calls, then ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Applies to this fraction (0..=1) of matching calls, drawn from
    /// `seed`, until cleared. With neither `count` nor `fraction`, every
    /// matching call is faulted until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The seed of the fraction's draws (default 42).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The HTTP status of the error, instead of the code's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The error message, instead of a generic one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FaultSpec {
    /// A fault failing the next `count` calls of `operation` with `error`.
    pub fn error(operation: &str, error: &str, count: u32) -> Self {
        Self {
            operation: operation.to_owned(),
            application: None,
            error: error.to_owned(),
            delay_ms: 0,
            after_effect: false,
            lands_late: false,
            count: Some(count),
            fraction: None,
            seed: None,
            http_status: None,
            message: None,
        }
    }

    /// The same fault, only for the calls that name `application`.
    pub fn for_application(self, application: &str) -> Self {
        Self {
            application: Some(application.to_owned()),
            ..self
        }
    }

    /// Checks the spec against the emulated `applications` (an
    /// `application` must be one of them); the message says what is wrong
    /// and what is valid.
    pub fn validate(&self, applications: &[&str]) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.operation != "*" && !super::OPERATIONS.contains(&self.operation.as_str()) {
            problems.push(format!(
                "operation {:?} is not one the emulator answers; valid: \"*\" (every operation), {}",
                self.operation,
                super::OPERATIONS
                    .iter()
                    .map(|o| format!("{o:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(name) = &self.application
            && !applications.contains(&name.as_str())
        {
            problems.push(format!(
                "application {name:?} is not an application of the scenario; valid: {}",
                applications
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let code_ok = self
            .error
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && self
                .error
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !code_ok {
            problems.push(format!(
                "error {:?} is not an error code, Delay or Drop",
                self.error
            ));
        }
        if self.error == DELAY && self.delay_ms == 0 {
            problems.push("a Delay needs delay_ms above 0".to_owned());
        }
        if self.lands_late && (self.error != DELAY || self.after_effect) {
            problems.push(
                "lands_late is for a Delay before the effect (error \"Delay\", no after_effect)"
                    .to_owned(),
            );
        }
        if self.delay_ms > 600_000 {
            problems.push("delay_ms must be at most 600000".to_owned());
        }
        if self.count.is_some() && self.fraction.is_some() {
            problems.push("give count or fraction, not both".to_owned());
        }
        if self.count == Some(0) {
            problems.push("count must be at least 1".to_owned());
        }
        if let Some(f) = self.fraction
            && !(0.0..=1.0).contains(&f)
        {
            problems.push(format!("fraction {f} must be between 0 and 1"));
        }
        if let Some(s) = self.http_status
            && !(400..=599).contains(&s)
        {
            problems.push(format!("http_status {s} must be between 400 and 599"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// What this fault answers on `service` for `operation`.
    ///
    /// The permission errors take the status and the code the service
    /// really answers: kinesisanalyticsv2 (AWS JSON 1.1) answers
    /// `AccessDeniedException` with HTTP 400; CloudWatch, being
    /// query-compatible, names the query code `AccessDenied` (in
    /// `x-amzn-query-error`, which is what the SDK reads) with HTTP 403.
    /// `AccessDenied` and `AccessDeniedException` are both accepted for
    /// either service. The default message of a permission error is the
    /// one AWS writes, naming the action that was refused.
    pub fn answer(&self, service: Service, operation: &str) -> Answer {
        match self.error.as_str() {
            DELAY => return Answer::Normal,
            DROP => return Answer::Drop,
            _ => {}
        }
        let (code, status, message) = match (self.error.as_str(), service) {
            ("AccessDenied" | "AccessDeniedException", Service::Kinesis) => (
                "AccessDeniedException",
                400,
                access_denied_message(service, operation),
            ),
            ("AccessDenied" | "AccessDeniedException", Service::CloudWatch) => (
                "AccessDenied",
                403,
                access_denied_message(service, operation),
            ),
            ("UnrecognizedClientException", _) => (
                "UnrecognizedClientException",
                400,
                "The security token included in the request is invalid.".to_owned(),
            ),
            ("ExpiredTokenException", _) => (
                "ExpiredTokenException",
                400,
                "The security token included in the request is expired".to_owned(),
            ),
            (code @ ("InternalFailure" | "InternalServiceError" | "InternalServerError"), _) => {
                (code, 500, format!("Injected by the emulator: {code}."))
            }
            (code @ ("ServiceUnavailable" | "ServiceUnavailableException"), _) => {
                (code, 503, format!("Injected by the emulator: {code}."))
            }
            (code, _) => (code, 400, format!("Injected by the emulator: {code}.")),
        };
        Answer::Error(AwsError::with_status(
            code,
            self.message.clone().unwrap_or(message),
            self.http_status.unwrap_or(status),
        ))
    }
}

/// AWS's message for a refused action: the role, the action, the resource.
fn access_denied_message(service: Service, operation: &str) -> String {
    let (prefix, resource) = match service {
        Service::Kinesis => (
            "kinesisanalytics",
            "arn:aws:kinesisanalytics:us-east-1:123456789012:application/*",
        ),
        Service::CloudWatch => ("cloudwatch", "*"),
    };
    format!(
        "User: arn:aws:sts::123456789012:assumed-role/flinkscale-agent/flinkscale \
         is not authorized to perform: {prefix}:{operation} on resource: {resource} \
         because no identity-based policy allows the {prefix}:{operation} action"
    )
}

/// What a faulted call answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The operation's own answer (a `Delay`).
    Normal,
    /// This error.
    Error(AwsError),
    /// No answer: the connection is closed.
    Drop,
}

/// What an injected fault does to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    /// Wait this long: before the operation, or after its effect.
    pub delay_ms: u64,
    /// What the call answers.
    pub answer: Answer,
    /// Whether the operation runs (and takes effect) before the answer.
    pub after_effect: bool,
    /// Whether the request runs when its wait ends even if the client hung
    /// up ([`FaultSpec::lands_late`]).
    pub lands_late: bool,
    /// Set by the server when the wait ended: whether the client had hung
    /// up by then (for the call log).
    pub client_gone: bool,
}

/// A fault in force.
#[derive(Debug, Clone)]
struct Active {
    spec: FaultSpec,
    /// Calls still to fault, for a `count` fault.
    remaining: Option<u32>,
    /// Matching calls seen so far (the index of the next draw).
    seen: u64,
}

/// The faults in force, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    active: Vec<Active>,
}

impl Faults {
    /// Adds a fault after checking it against the emulated `applications`.
    pub fn add(&mut self, spec: FaultSpec, applications: &[&str]) -> Result<(), String> {
        spec.validate(applications)?;
        self.active.push(Active {
            remaining: spec.count,
            spec,
            seen: 0,
        });
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The faults in force, with what is left of their counts.
    pub fn list(&self) -> Vec<FaultSpec> {
        self.active
            .iter()
            .map(|a| FaultSpec {
                count: a.remaining,
                ..a.spec.clone()
            })
            .collect()
    }

    /// Decides the fault (if any) of one call of `operation` on `service`
    /// with the request `input`: the first fault in force that matches
    /// (its operation, and its application if it names one) and fires.
    pub fn take(&mut self, service: Service, operation: &str, input: &Value) -> Option<Injected> {
        let mut fired = None;
        for (index, active) in self.active.iter_mut().enumerate() {
            if active.spec.operation != "*" && active.spec.operation != operation {
                continue;
            }
            if let Some(application) = &active.spec.application
                && !names_application(input, application)
            {
                continue;
            }
            let draw = active.seen;
            active.seen += 1;
            let fires = match active.spec.fraction {
                Some(fraction) => {
                    crate::random::uniform(active.spec.seed.unwrap_or(42), draw) < fraction
                }
                None => true,
            };
            if fires {
                if let Some(n) = active.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
                fired = Some((
                    index,
                    Injected {
                        delay_ms: active.spec.delay_ms,
                        answer: active.spec.answer(service, operation),
                        after_effect: active.spec.after_effect,
                        lands_late: active.spec.lands_late,
                        client_gone: false,
                    },
                ));
                break;
            }
        }
        let (index, injected) = fired?;
        if self.active[index].remaining == Some(0) {
            self.active.remove(index);
        }
        Some(injected)
    }
}

/// Whether the request `input` names `application`: its `ApplicationName`
/// (kinesisanalyticsv2), or any `{"Name": "Application", "Value": ...}`
/// dimension anywhere in it (CloudWatch: any query of a GetMetricData, an
/// alarm's metric, a ListMetrics filter).
pub fn names_application(input: &Value, application: &str) -> bool {
    if input.get("ApplicationName").and_then(Value::as_str) == Some(application) {
        return true;
    }
    match input {
        Value::Map(pairs) => {
            (input.get("Name").and_then(Value::as_str) == Some("Application")
                && input.get("Value").and_then(Value::as_str) == Some(application))
                || pairs.iter().any(|(_, v)| names_application(v, application))
        }
        Value::List(items) => items.iter().any(|v| names_application(v, application)),
        _ => false,
    }
}
