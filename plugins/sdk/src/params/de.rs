//! A serde `Deserializer` over the parameters' JSON, so that a plugin can
//! read them into its own `#[derive(Deserialize)]` struct
//! ([`Params::parse`](crate::Params::parse)) and still get the getters'
//! errors: each names the parameter (`signals.busy`, `alarms[1]` when
//! nested), what was expected and what was found. serde_json's own
//! deserializer would say `invalid type: string "two", expected u32`,
//! which names neither the key nor a kind a configuration author knows.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor,
};
use serde_json::Value;

use super::{closest, describe, list_or_none};

/// Why deserializing failed. Errors raised by a visitor (serde's derive, a
/// `Deserialize` impl) do not know where they are; the deserializer of the
/// value they were raised in puts the key on them.
#[derive(Debug)]
pub(crate) enum Error {
    /// A whole message, already naming the parameter.
    Located(String),
    /// What the value must be, to follow "parameter `key` ".
    Predicate(String),
    /// A message of a `Deserialize` impl, to follow "parameter `key`: ".
    Custom(String),
    /// A struct field absent.
    Missing(&'static str),
    /// A key a struct with `deny_unknown_fields` does not have.
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
}

impl Error {
    /// This error, raised within the value at `path`, as a message that
    /// names it. At the top (`path` empty) only a located error is final:
    /// the others are finished by [`Error::into_message`], which knows the
    /// declarations.
    fn at(self, path: &str) -> Error {
        if path.is_empty() {
            return self;
        }
        Error::Located(match self {
            Error::Located(message) => message,
            Error::Predicate(predicate) => format!("parameter `{path}` {predicate}"),
            Error::Custom(message) => format!("parameter `{path}`: {message}"),
            Error::Missing(field) => {
                format!("parameter `{path}` is missing its required key `{field}`")
            }
            Error::UnknownField { field, expected } => {
                let mut message = format!(
                    "parameter `{path}` has no key `{field}`; valid keys: {}",
                    list_or_none(expected.iter().copied())
                );
                if let Some(suggestion) = closest(&field, expected) {
                    message.push_str(&format!(" (did you mean `{suggestion}`?)"));
                }
                message
            }
        })
    }

    /// The message for the configuration's author; `expected_of` gives the
    /// declared shape of a top-level key, for a missing one.
    pub(crate) fn into_message(self, expected_of: impl Fn(&str) -> Option<&'static str>) -> String {
        match self {
            Error::Located(message) => message,
            Error::Predicate(predicate) => format!("parameters {predicate}"),
            Error::Custom(message) => format!("invalid parameters: {message}"),
            Error::Missing(field) => match expected_of(field) {
                Some(expected) => format!("missing required parameter `{field}` ({expected})"),
                None => format!("missing required parameter `{field}`"),
            },
            Error::UnknownField { field, expected } => {
                super::unknown_message(&[field.as_str()], expected)
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only reached if a `Deserialize` impl formats an error it caught;
        // the SDK itself finishes messages with `into_message`.
        match self {
            Error::Located(message) | Error::Custom(message) => f.write_str(message),
            Error::Predicate(predicate) => write!(f, "value {predicate}"),
            Error::Missing(field) => write!(f, "missing key `{field}`"),
            Error::UnknownField { field, .. } => write!(f, "unknown key `{field}`"),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::Custom(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error::Predicate(format!("must be {expected}, found {unexpected}"))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Error::Predicate(format!("must be {expected}, found {unexpected}"))
    }

    fn invalid_length(len: usize, expected: &dyn Expected) -> Self {
        Error::Predicate(format!("must be {expected}, found {len} items"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::Predicate(format!("must be {}, found {variant:?}", one_of(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::UnknownField {
            field: field.to_owned(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Error::Missing(field)
    }
}

/// `"a"`, `"a" or "b"`, `one of "a", "b", "c"`.
fn one_of(variants: &[&str]) -> String {
    let quoted: Vec<String> = variants.iter().map(|v| format!("{v:?}")).collect();
    match quoted.as_slice() {
        [] => "nothing (no value is valid)".to_owned(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// Deserializes `value`, the value at `path` (empty for the whole table).
pub(crate) struct ValueDeserializer<'a> {
    pub(crate) path: String,
    pub(crate) value: &'a Value,
    /// The order to read a table's keys in, known ones first: the plugin's
    /// declarations at the top, so that of several wrong keys the first in
    /// the documentation is reported.
    pub(crate) order: &'a [&'a str],
}

impl<'a> ValueDeserializer<'a> {
    fn child(&self, key: &str, value: &'a Value) -> Self {
        ValueDeserializer {
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            value,
            order: &[],
        }
    }

    fn wrong(&self, expected: &str) -> Error {
        let subject = if self.path.is_empty() {
            "parameters".to_owned()
        } else {
            format!("parameter `{}`", self.path)
        };
        Error::Located(format!(
            "{subject} must be {expected}, found {}",
            describe(self.value)
        ))
    }

    fn locate<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|error| error.at(&self.path))
    }

    /// A whole number in `0..=max`; an integral float such as `2.0` counts.
    fn unsigned(&self, max: u64) -> Result<u64, Error> {
        let expected = format!("a whole number from 0 to {max}");
        let Value::Number(number) = self.value else {
            return Err(self.wrong(&expected));
        };
        if let Some(whole) = number.as_u64() {
            return if whole <= max {
                Ok(whole)
            } else {
                Err(self.wrong(&expected))
            };
        }
        match number.as_f64() {
            // The range check makes the conversion exact for every max
            // below 2^53, which covers u32; beyond, it saturates within
            // the range.
            Some(float) if float.fract() == 0.0 && float >= 0.0 && float <= max as f64 => {
                Ok(float as u64)
            }
            _ => Err(self.wrong(&expected)),
        }
    }

    /// A whole number in `min..=max`; an integral float such as `2.0` counts.
    fn signed(&self, min: i64, max: i64) -> Result<i64, Error> {
        let expected = format!("a whole number from {min} to {max}");
        let Value::Number(number) = self.value else {
            return Err(self.wrong(&expected));
        };
        if let Some(whole) = number.as_i64() {
            return if (min..=max).contains(&whole) {
                Ok(whole)
            } else {
                Err(self.wrong(&expected))
            };
        }
        if number.is_u64() {
            return Err(self.wrong(&expected));
        }
        match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float >= min as f64 && float <= max as f64 => {
                Ok(float as i64)
            }
            _ => Err(self.wrong(&expected)),
        }
    }

    fn float(&self) -> Result<f64, Error> {
        match self.value {
            Value::Number(number) => number.as_f64().ok_or_else(|| self.wrong("a number")),
            _ => Err(self.wrong("a number")),
        }
    }

    fn seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let Value::Array(items) = self.value else {
            return Err(self.wrong("an array"));
        };
        let access = Elements {
            path: self.path.clone(),
            items: items.iter().enumerate(),
        };
        self.locate(visitor.visit_seq(access))
    }

    fn map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let Value::Object(entries) = self.value else {
            return Err(self.wrong("a table"));
        };
        // Keys in `order` first, then the others in the table's order. Two
        // passes rather than a stable sort, whose code made step's
        // component 12 KB (6 %) larger.
        let known = |key: &String| self.order.contains(&key.as_str());
        let entries: Vec<(&'a String, &'a Value)> = self
            .order
            .iter()
            .filter_map(|name| entries.get_key_value(*name))
            .chain(entries.iter().filter(|(key, _)| !known(key)))
            .collect();
        let access = Entries {
            parent: &self,
            entries: entries.into_iter(),
            value: None,
        };
        let result = visitor.visit_map(access);
        self.locate(result)
    }
}

macro_rules! unsigned {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let value = self.unsigned(<$ty>::MAX as u64)?;
            // `unsigned` checked the range.
            self.locate(visitor.$visit(value as $ty))
        }
    )*};
}

macro_rules! signed {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let value = self.signed(<$ty>::MIN as i64, <$ty>::MAX as i64)?;
            // `signed` checked the range.
            self.locate(visitor.$visit(value as $ty))
        }
    )*};
}

impl<'a> de::Deserializer<'a> for ValueDeserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Number(number) => {
                if let Some(whole) = number.as_u64() {
                    visitor.visit_u64(whole)
                } else if let Some(whole) = number.as_i64() {
                    visitor.visit_i64(whole)
                } else {
                    visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Array(_) => return self.seq(visitor),
            Value::Object(_) => return self.map(visitor),
        };
        self.locate(result)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Bool(flag) => self.locate(visitor.visit_bool(*flag)),
            _ => Err(self.wrong("true or false")),
        }
    }

    unsigned! {
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    signed! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.float()?;
        self.locate(visitor.visit_f32(value as f32))
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.float()?;
        self.locate(visitor.visit_f64(value))
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut chars = self.value.as_str().unwrap_or_default().chars();
        match (self.value.is_string(), chars.next(), chars.next()) {
            (true, Some(c), None) => self.locate(visitor.visit_char(c)),
            _ => Err(self.wrong("a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::String(text) => self.locate(visitor.visit_borrowed_str(text)),
            _ => Err(self.wrong("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    /// A present key is `Some`, whatever its value: TOML has no null, so an
    /// absent key is the only way to say "none", and a JSON `null` is
    /// refused by the inner type as the getters refuse it.
    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let path = self.path.clone();
        visitor.visit_some(self).map_err(|error| error.at(&path))
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => self.locate(visitor.visit_unit()),
            _ => Err(self.wrong("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let path = self.path.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|error| error.at(&path))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.map(visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.map(visitor)
    }

    /// Only unit variants, written as their name: what a TOML author writes
    /// for a choice such as `operation = "add"`. A value that is not a
    /// string is refused as one, in the getters' words (the Python and
    /// JavaScript helpers say the same).
    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::String(text) => {
                let variant: de::value::StrDeserializer<'_, Error> =
                    text.as_str().into_deserializer();
                self.locate(visitor.visit_enum(variant))
            }
            _ => Err(self.wrong("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// The items of an array, each deserialized at `path[i]`.
struct Elements<'a> {
    path: String,
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'a> SeqAccess<'a> for Elements<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{index}]", self.path);
        let element = ValueDeserializer {
            path: path.clone(),
            value,
            order: &[],
        };
        // A `Deserialize` impl may refuse a value after the deserializer
        // has handed it over (`try_from`): the key goes on here.
        seed.deserialize(element)
            .map(Some)
            .map_err(|error| error.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a table, each value deserialized at `path.key`.
struct Entries<'p, 'a> {
    parent: &'p ValueDeserializer<'a>,
    entries: std::vec::IntoIter<(&'a String, &'a Value)>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'a> MapAccess<'a> for Entries<'_, 'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        let key: de::value::BorrowedStrDeserializer<'a, Error> =
            de::value::BorrowedStrDeserializer::new(key);
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| Error::Custom("a value was asked for before its key".to_owned()))?;
        let child = self.parent.child(key, value);
        let path = child.path.clone();
        // See `Elements::next_element_seed`.
        seed.deserialize(child).map_err(|error| error.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
