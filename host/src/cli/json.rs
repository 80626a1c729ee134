//! JSON given on the command line (`--params`), read as TOML and the
//! params files are: a key given twice is an error, not the last one kept.
//!
//! `serde_json` keeps the last of two equal keys without a word, so
//! `{"catch_up_secs": 1, "catch_up_secs": 2}` ran with 2 where the same
//! table in the configuration is refused. [`parse`] reads the text into a
//! [`Value`] through a visitor that refuses a repeated key at any depth,
//! with `serde_json`'s line and column.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// `text` as JSON, refusing a key given twice in one object.
pub fn parse(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str::<Unique>(text).map(|unique| unique.0)
}

/// A JSON value whose objects have no repeated key.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity: a number too large for an f64 is
        // refused by the parser before it gets here.
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "the key {key:?} is given twice (give each key once)"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key given twice is refused at any depth, where it is; the rest
    /// reads as `serde_json` reads it.
    #[test]
    fn a_key_given_twice_is_refused_and_the_rest_is_json() {
        let error = parse(r#"{"a": 1, "a": 2}"#).expect_err("twice").to_string();
        assert!(
            error.starts_with("the key \"a\" is given twice (give each key once) at line 1"),
            "{error}"
        );
        assert!(parse(r#"{"x": [{"b": true, "b": false}]}"#).is_err());
        let text = r#"{"a": [1, -2, 2.5, "s", null, {"b": {}}], "c": 18446744073709551615}"#;
        assert_eq!(
            parse(text).expect("JSON"),
            serde_json::from_str::<Value>(text).expect("JSON")
        );
        assert!(parse("{").is_err() && parse("1e400").is_err());
    }
}
