//! The protocol-neutral form of a request or response body, and the AWS
//! error every operation answers with.
//!
//! Each operation is written once over [`Value`]; the wire codecs
//! ([`super::cbor`], [`super::json`]) only translate. The one thing the
//! protocols disagree on is timestamps: RPC v2 CBOR marks them (tag 1), the
//! JSON protocols send bare epoch-second numbers, so readers accept both and
//! writers say [`Value::Timestamp`] and let each codec spell it.

/// A body value in the shapes the AWS protocols share.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null (or CBOR undefined).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A text string.
    Str(String),
    /// A point in time, seconds since the Unix epoch (millisecond precision
    /// on the wire).
    Timestamp(f64),
    /// A list.
    List(Vec<Value>),
    /// A structure or map, in insertion order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A map of `pairs`.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Self::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// A timestamp of `ms` milliseconds since the Unix epoch.
    pub fn timestamp_ms(ms: i64) -> Self {
        Self::Timestamp(ms as f64 / 1000.0)
    }

    /// The member `key` of a map; a null member counts as absent, as the
    /// SDKs treat it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .filter(|v| !matches!(v, Value::Null)),
            _ => None,
        }
    }

    /// Adds (or replaces) the member `key` of a map; does nothing to a
    /// non-map.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Self::Map(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => pairs.push((key.to_owned(), value)),
            }
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, also from a float with no fractional part (JSON readers
    /// may see `2.0` for `2`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::Int(i) => Some(i),
            Self::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    /// A number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Int(i) => Some(i as f64),
            Self::Float(f) => Some(f),
            _ => None,
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(items) => Some(items),
            _ => None,
        }
    }

    /// A point in time in milliseconds since the Unix epoch: a tagged
    /// timestamp, or a bare number of epoch seconds (the JSON protocols).
    pub fn as_timestamp_ms(&self) -> Option<i64> {
        let secs = match *self {
            Self::Timestamp(s) | Self::Float(s) => s,
            Self::Int(i) => i as f64,
            _ => return None,
        };
        secs.is_finite().then(|| (secs * 1000.0).round() as i64)
    }

    /// A JSON rendering for logs and the control API: timestamps become
    /// epoch seconds, non-finite floats null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Null => J::Null,
            Self::Bool(b) => J::Bool(*b),
            Self::Int(i) => J::from(*i),
            Self::Float(f) | Self::Timestamp(f) => float_json(*f),
            Self::Str(s) => J::String(s.clone()),
            Self::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Self::Map(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value of a JSON document: integers stay integers, other numbers
    /// become floats (a JSON timestamp is read as a number and accepted by
    /// [`Value::as_timestamp_ms`]).
    pub fn from_json(json: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match json {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Self::Str(s.clone()),
            J::Array(items) => Self::List(items.iter().map(Value::from_json).collect()),
            J::Object(members) => Self::Map(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// A float as JSON: integral values as integers (so `1700000000.0` reads as
/// `1700000000`), non-finite ones as null (JSON has no NaN).
fn float_json(f: f64) -> serde_json::Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        serde_json::Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// An error answer of an AWS operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The error code (`__type`), e.g. `ResourceInUseException`.
    pub code: String,
    /// The human-readable message.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
}

impl AwsError {
    /// A client error (HTTP 400).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_status(code, message, 400)
    }

    /// An error with an explicit HTTP status.
    pub fn with_status(code: impl Into<String>, message: impl Into<String>, status: u16) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    /// Whether the fault is the server's (5xx), as the query-compatible
    /// error header spells it: `Receiver`, else `Sender`.
    pub fn fault(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

impl From<crate::sim::ApiError> for AwsError {
    fn from(error: crate::sim::ApiError) -> Self {
        Self::with_status(error.code(), error.message, error.kind.http_status())
    }
}

/// The timestamps a request may carry: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999Z, what a service's date-time holds. Beyond them
/// the arithmetic on periods would leave what i64 milliseconds hold.
const TIMESTAMP_RANGE_MS: std::ops::RangeInclusive<i64> = -62_135_596_800_000..=253_402_300_799_999;

/// Reads the members of one request structure, answering a service's own
/// error codes for a missing member or one of the wrong type.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    value: &'a Value,
    /// Where this structure sits in the request, for messages.
    path: &'a str,
    codes: ErrorCodes,
}

/// The codes a service answers a malformed request with.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodes {
    /// A required member is absent.
    pub missing: &'static str,
    /// A member has the wrong type or an invalid value.
    pub invalid: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of the request body `value`.
    pub fn new(value: &'a Value, codes: ErrorCodes) -> Self {
        Self {
            value,
            path: "",
            codes,
        }
    }

    /// An error of the service's "invalid" code.
    pub fn invalid(&self, message: impl Into<String>) -> AwsError {
        AwsError::new(self.codes.invalid, message)
    }

    fn missing(&self, key: &str) -> AwsError {
        AwsError::new(
            self.codes.missing,
            format!("The parameter {}{key} is required.", self.path),
        )
    }

    fn wrong(&self, key: &str, what: &str) -> AwsError {
        self.invalid(format!("The parameter {}{key} must be {what}.", self.path))
    }

    /// An optional member of any type.
    pub fn opt(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key)
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, AwsError> {
        self.opt(key)
            .map(|v| v.as_str().ok_or_else(|| self.wrong(key, "a string")))
            .transpose()
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&'a str, AwsError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional integer.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, AwsError> {
        self.opt(key)
            .map(|v| v.as_i64().ok_or_else(|| self.wrong(key, "an integer")))
            .transpose()
    }

    /// A required integer.
    pub fn i64(&self, key: &str) -> Result<i64, AwsError> {
        self.opt_i64(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, AwsError> {
        self.opt(key)
            .map(|v| {
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| self.wrong(key, "a number"))
            })
            .transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, AwsError> {
        self.opt(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong(key, "a boolean")))
            .transpose()
    }

    /// A required timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self, key: &str) -> Result<i64, AwsError> {
        self.opt(key)
            .ok_or_else(|| self.missing(key))?
            .as_timestamp_ms()
            .filter(|ms| TIMESTAMP_RANGE_MS.contains(ms))
            .ok_or_else(|| self.wrong(key, "a timestamp from year 1 to year 9999"))
    }

    /// An optional list (absent reads as empty).
    pub fn list(&self, key: &str) -> Result<&'a [Value], AwsError> {
        match self.opt(key) {
            None => Ok(&[]),
            Some(v) => v.as_list().ok_or_else(|| self.wrong(key, "a list")),
        }
    }

    /// An optional nested structure, read with the same codes; `path` names
    /// it in messages (e.g. `MetricStat.`).
    pub fn opt_struct(&self, key: &str, path: &'a str) -> Result<Option<Reader<'a>>, AwsError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v @ Value::Map(_)) => Ok(Some(Reader {
                value: v,
                path,
                codes: self.codes,
            })),
            Some(_) => Err(self.wrong(key, "a structure")),
        }
    }

    /// A required nested structure.
    pub fn structure(&self, key: &str, path: &'a str) -> Result<Reader<'a>, AwsError> {
        self.opt_struct(key, path)?.ok_or_else(|| self.missing(key))
    }

    /// A list item read as a structure.
    pub fn item(&self, item: &'a Value, path: &'a str) -> Result<Reader<'a>, AwsError> {
        match item {
            Value::Map(_) => Ok(Reader {
                value: item,
                path,
                codes: self.codes,
            }),
            _ => Err(self.invalid(format!("Every item of {path} must be a structure."))),
        }
    }
}
