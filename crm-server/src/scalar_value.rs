//! The scalar values of the schema: juniper's four, and a fifth for a subtree the server has
//! already written as JSON.
//!
//! Juniper builds its answer as a tree of [`juniper::Value`]s (an `IndexMap` with a `String`
//! key per field of every object) and serializes the tree afterwards. For a page of 100 orders
//! with their customers and products, building, serializing and dropping that tree was most of
//! the request's CPU. A page's edges are written straight to JSON instead
//! ([`crate::schema::prerender`]) and travel through juniper's executor as one
//! [`CrmScalar::Json`] value, which serializes as its text, unchanged.

use std::fmt;
use std::sync::Arc;

use derive_more::with_trait::{Display, From, TryInto};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::value::RawValue;

/// A scalar value of the CRM's schema: [`juniper::DefaultScalarValue`]'s four, plus
/// [`CrmScalar::Json`], which only the server produces (a client's input never parses into it).
#[derive(Clone, Debug, Display, From, PartialEq, juniper::ScalarValue, Serialize, TryInto)]
#[serde(untagged)]
pub enum CrmScalar {
    /// `Int`: a signed 32-bit integer.
    #[from]
    #[value(to_float, to_int)]
    Int(i32),
    /// `Float`: a double-precision number.
    #[from]
    #[value(to_float)]
    Float(f64),
    /// `String` (and the custom scalars sent as strings: `ID`, `Decimal`, `DateTime`).
    #[from(&str, String)]
    #[value(as_str, to_string)]
    String(String),
    /// `Boolean`.
    #[from]
    #[value(to_bool)]
    Boolean(bool),
    /// A subtree of the answer already written as JSON, sent as it is.
    Json(PrerenderedJson),
}

/// JSON text the server wrote itself (so it is valid by construction), shared cheaply when
/// juniper clones a value.
#[derive(Clone, Debug, Display)]
#[display("{}", _0.get())]
pub struct PrerenderedJson(Arc<RawValue>);

impl PrerenderedJson {
    /// Writes `value` as JSON once.
    pub(crate) fn new(value: &impl Serialize) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(value).map(|raw| Self(Arc::from(raw)))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for PrerenderedJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for PrerenderedJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A client's scalar: as juniper reads one for its own default scalar type (integers beyond
/// 32 bits become floats, as JavaScript sends them).
impl<'de> Deserialize<'de> for CrmScalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = CrmScalar;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a valid input value")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<CrmScalar, E> {
                Ok(CrmScalar::Boolean(b))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<CrmScalar, E> {
                #[expect(clippy::cast_precision_loss, reason = "as JavaScript's numbers")]
                Ok(i32::try_from(n).map_or(CrmScalar::Float(n as f64), CrmScalar::Int))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<CrmScalar, E> {
                #[expect(clippy::cast_precision_loss, reason = "as JavaScript's numbers")]
                Ok(i32::try_from(n).map_or(CrmScalar::Float(n as f64), CrmScalar::Int))
            }

            fn visit_f64<E: de::Error>(self, f: f64) -> Result<CrmScalar, E> {
                Ok(CrmScalar::Float(f))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<CrmScalar, E> {
                Ok(CrmScalar::String(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<CrmScalar, E> {
                Ok(CrmScalar::String(s))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerendered_json_is_sent_as_its_text_not_as_a_string() {
        let json = PrerenderedJson::new(&serde_json::json!([{"a": "x\"y"}])).unwrap();
        let value = juniper::Value::<CrmScalar>::object(
            [("edges", juniper::Value::Scalar(CrmScalar::Json(json)))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"edges":[{"a":"x\"y"}]}"#
        );
    }

    #[test]
    fn client_numbers_read_as_juniper_reads_them() {
        let read = |text: &str| serde_json::from_str::<CrmScalar>(text).unwrap();
        assert_eq!(read("7"), CrmScalar::Int(7));
        assert_eq!(read("-7"), CrmScalar::Int(-7));
        assert_eq!(read("123567890123"), CrmScalar::Float(123_567_890_123.0));
        assert_eq!(read("2.5"), CrmScalar::Float(2.5));
        assert_eq!(read("\"x\""), CrmScalar::String("x".to_owned()));
        assert_eq!(read("true"), CrmScalar::Boolean(true));
    }
}
