//! Graphene-style global IDs.
//!
//! The Django original hands out relay global IDs: base64 of `CustomerType:1`. Clients written
//! against it send those back, and newer clients send plain numbers, so every ID argument accepts
//! both. Cursors are keyset cursors, in [`crate::cursor`].

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::error::ApiError;

/// The kinds of records the API hands out IDs for, named as the GraphQL types are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Customer,
    Product,
    Order,
}

impl Kind {
    /// The GraphQL type name, which is also the prefix inside a global ID.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::Customer => "CustomerType",
            Kind::Product => "ProductType",
            Kind::Order => "OrderType",
        }
    }

    /// The word used in error messages.
    fn noun(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Product => "product",
            Kind::Order => "order",
        }
    }
}

/// The global ID of record `id` of `kind`: base64 of `CustomerType:1`.
pub(crate) fn encode_id(kind: Kind, id: i64) -> String {
    STANDARD.encode(format!("{}:{id}", kind.type_name()))
}

/// The database id an API client meant: a global ID of the right kind, or a plain positive
/// number. `field` names the argument in the error message.
pub(crate) fn decode_id(kind: Kind, field: &'static str, raw: &str) -> Result<i64, ApiError> {
    let raw = raw.trim();
    let invalid = || ApiError::validation(field, format!("'{raw}' is not a {} ID", kind.noun()));
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(invalid);
    }
    let decoded = decode_base64(raw).ok_or_else(invalid)?;
    let (type_name, id) = decoded.split_once(':').ok_or_else(invalid)?;
    if type_name != kind.type_name() {
        return Err(ApiError::validation(
            field,
            format!(
                "'{raw}' is a {type_name} ID, expected a {}",
                kind.type_name()
            ),
        ));
    }
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(invalid)
}

/// Base64 in any of the common alphabets, padded or not, as UTF-8 text.
fn decode_base64(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 128 {
        return None;
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(raw).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_match_graphene() {
        // graphene: base64("CustomerType:1")
        assert_eq!(encode_id(Kind::Customer, 1), "Q3VzdG9tZXJUeXBlOjE=");
        assert_eq!(encode_id(Kind::Order, 42), "T3JkZXJUeXBlOjQy");
    }

    #[test]
    fn global_and_plain_ids_decode_to_the_same_record() {
        for id in [1, 7, 42, 1_000_000, i64::MAX] {
            let global = encode_id(Kind::Product, id);
            assert_eq!(decode_id(Kind::Product, "id", &global).unwrap(), id);
            assert_eq!(decode_id(Kind::Product, "id", &id.to_string()).unwrap(), id);
        }
        // Unpadded and surrounded by spaces still works.
        assert_eq!(
            decode_id(Kind::Customer, "id", " Q3VzdG9tZXJUeXBlOjE ").unwrap(),
            1
        );
    }

    #[test]
    fn an_id_of_another_type_is_refused_with_both_names() {
        let order = encode_id(Kind::Order, 3);
        let err = decode_id(Kind::Customer, "customerId", &order).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("customerId"), "{text}");
        assert!(
            text.contains("OrderType") && text.contains("CustomerType"),
            "{text}"
        );
    }

    #[test]
    fn malformed_ids_are_validation_errors() {
        for bad in [
            "",
            "0",
            "-1",
            "abc",
            "1.5",
            "99999999999999999999",
            "Q3VzdG9tZXJUeXBlOg==",
            "Q3VzdG9tZXJUeXBlOi0x",
        ] {
            let err = decode_id(Kind::Customer, "id", bad).unwrap_err();
            assert!(
                matches!(err, ApiError::Validation { field: "id", .. }),
                "{bad}: {err}"
            );
        }
    }
}
