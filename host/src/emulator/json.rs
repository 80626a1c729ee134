//! The AWS JSON 1.0 and 1.1 codec (kinesisanalyticsv2 for every client,
//! CloudWatch for boto3): JSON bodies, timestamps as epoch-second numbers.
//! The two versions differ only in the `Content-Type` they carry.

use super::value::Value;

/// Why a JSON body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed JSON body: {0}")]
pub struct JsonError(#[from] serde_json::Error);

/// Decodes one request body; an empty body is an empty object.
pub fn decode(bytes: &[u8]) -> Result<Value, JsonError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Map(Vec::new()));
    }
    let json: serde_json::Value = serde_json::from_slice(bytes)?;
    Ok(Value::from_json(&json))
}

/// Encodes one answer body.
pub fn encode(value: &Value) -> Vec<u8> {
    // Serialising a serde_json::Value into memory cannot fail.
    serde_json::to_vec(&value.to_json()).unwrap_or_default()
}
