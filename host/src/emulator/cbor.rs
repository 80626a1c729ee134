//! The Smithy RPC v2 CBOR codec: request bodies to [`Value`] and answers
//! back.
//!
//! What the SDKs expect was read from their generated code
//! (`aws-smithy-cbor`'s decoder): maps with text keys, timestamps as tag 1
//! over an integer or a float of epoch seconds, doubles as floats (an
//! integer where a double is expected does not parse). Requests arrive with
//! indefinite-length maps (the SDK's encoder opens maps without a length);
//! answers use definite lengths, which every decoder reads.

use minicbor::data::{IanaTag, Tag, Type};
use minicbor::{Decoder, Encoder};

use super::value::Value;

/// Nesting deeper than this is refused (no request needs it, and it bounds
/// the recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// Why a CBOR body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed CBOR body at byte {at}: {reason}")]
pub struct CborError {
    /// Byte offset of the problem.
    pub at: usize,
    /// What was wrong.
    pub reason: String,
}

fn err(at: usize, reason: impl Into<String>) -> CborError {
    CborError {
        at,
        reason: reason.into(),
    }
}

fn wrap(at: usize) -> impl Fn(minicbor::decode::Error) -> CborError {
    move |e| err(at, e.to_string())
}

/// Decodes one request body. An empty body is an empty map (an operation
/// with no input may send nothing).
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    if bytes.is_empty() {
        return Ok(Value::Map(Vec::new()));
    }
    let mut d = Decoder::new(bytes);
    let value = decode_value(&mut d, 0)?;
    if d.position() != bytes.len() {
        return Err(err(d.position(), "trailing bytes after the body"));
    }
    Ok(value)
}

fn decode_value(d: &mut Decoder<'_>, depth: usize) -> Result<Value, CborError> {
    if depth > MAX_DEPTH {
        return Err(err(d.position(), "nested too deeply"));
    }
    let at = d.position();
    let ty = d.datatype().map_err(wrap(at))?;
    Ok(match ty {
        Type::Bool => Value::Bool(d.bool().map_err(wrap(at))?),
        Type::Null => {
            d.null().map_err(wrap(at))?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined().map_err(wrap(at))?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            let n = d.u64().map_err(wrap(at))?;
            i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            let n = d.int().map_err(wrap(at))?;
            i64::try_from(n).map_or_else(|_| Value::Float(i128::from(n) as f64), Value::Int)
        }
        Type::F16 => Value::Float(decode_f16(d)?),
        Type::F32 | Type::F64 => Value::Float(d.f64().map_err(wrap(at))?),
        Type::String => Value::Str(d.str().map_err(wrap(at))?.to_owned()),
        Type::StringIndef => {
            let mut s = String::new();
            for chunk in d.str_iter().map_err(wrap(at))? {
                s.push_str(chunk.map_err(|e| err(at, e.to_string()))?);
            }
            Value::Str(s)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(wrap(at))?;
            let mut items = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        items.push(decode_value(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype().map_err(wrap(at))? != Type::Break {
                        items.push(decode_value(d, depth + 1)?);
                    }
                    d.skip().map_err(wrap(at))?;
                }
            }
            Value::List(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(wrap(at))?;
            let mut pairs = Vec::new();
            let mut entry = |d: &mut Decoder<'_>| -> Result<(), CborError> {
                let key = match decode_value(d, depth + 1)? {
                    Value::Str(k) => k,
                    _ => return Err(err(d.position(), "a map key is not a text string")),
                };
                let value = decode_value(d, depth + 1)?;
                pairs.push((key, value));
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => {
                    while d.datatype().map_err(wrap(at))? != Type::Break {
                        entry(d)?;
                    }
                    d.skip().map_err(wrap(at))?;
                }
            }
            Value::Map(pairs)
        }
        Type::Tag => {
            let tag = d.tag().map_err(wrap(at))?;
            if tag != Tag::from(IanaTag::Timestamp) {
                return Err(err(at, format!("unsupported tag {}", tag.as_u64())));
            }
            // RFC 8949 3.4.2: the content of tag 1 is an integer or a float.
            match decode_value(d, depth + 1)? {
                Value::Int(i) => Value::Timestamp(i as f64),
                Value::Float(f) if f.is_finite() => Value::Timestamp(f),
                _ => return Err(err(at, "a timestamp (tag 1) holds no number")),
            }
        }
        Type::Bytes | Type::BytesIndef => {
            return Err(err(at, "blobs are not used by any emulated operation"));
        }
        other => return Err(err(at, format!("unexpected CBOR item {other}"))),
    })
}

/// A half-precision float, decoded by hand so the codec does not need
/// minicbor's `half` feature.
fn decode_f16(d: &mut Decoder<'_>) -> Result<f64, CborError> {
    let at = d.position();
    let bytes = d
        .input()
        .get(at + 1..at + 3)
        .ok_or_else(|| err(at, "truncated half float"))?;
    let bits = u16::from_be_bytes([bytes[0], bytes[1]]);
    d.set_position(at + 3);
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    Ok(sign
        * match exponent {
            0 => mantissa * 2f64.powi(-24),
            31 if mantissa == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
        })
}

/// Encodes one answer body. A timestamp with whole seconds is written as
/// an integer under tag 1, any other as a float: both are what the SDKs
/// read.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    encode_value(&mut e, value);
    e.into_writer()
}

fn encode_value(e: &mut Encoder<Vec<u8>>, value: &Value) {
    // Writing into a Vec cannot fail, so the results carry no information.
    match value {
        Value::Null => {
            let _ = e.null();
        }
        Value::Bool(b) => {
            let _ = e.bool(*b);
        }
        Value::Int(i) => {
            let _ = e.i64(*i);
        }
        Value::Float(f) => {
            let _ = e.f64(*f);
        }
        Value::Str(s) => {
            let _ = e.str(s);
        }
        Value::Timestamp(secs) => {
            let _ = e.tag(Tag::from(IanaTag::Timestamp));
            if secs.fract() == 0.0 && secs.abs() < 9.0e15 {
                let _ = e.i64(*secs as i64);
            } else {
                let _ = e.f64(*secs);
            }
        }
        Value::List(items) => {
            let _ = e.array(items.len() as u64);
            for item in items {
                encode_value(e, item);
            }
        }
        Value::Map(pairs) => {
            let _ = e.map(pairs.len() as u64);
            for (k, v) in pairs {
                let _ = e.str(k);
                encode_value(e, v);
            }
        }
    }
}
