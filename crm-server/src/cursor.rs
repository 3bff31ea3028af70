//! Opaque keyset cursors: where a page ends, valid only for the list, `orderBy` and `filter`
//! it was made for.
//!
//! A cursor is base64 (URL-safe, unpadded) of `<json>~<checksum>`, the JSON holding the list's
//! type, a hash of its sort and filter, the row's sort values and its id. The checksum catches
//! a cursor cut short or altered by hand; the hash catches one passed to another list, sort or
//! filter, whose values would compare against other columns and page through other rows. Each
//! of these, and graphene's offset cursors of earlier versions, is a `VALIDATION` error naming
//! the cause, never a 500 and never rows of another list. A cursor that passes every check can
//! only name a position in the list it is used on, so it needs no secret.

use std::fmt::Debug;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::DateTime;
use crm_core::{Keyset, Money, Sort, SortField, SortValue, ValueKind, effective_sort};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ids::Kind;

/// Longest cursor taken, in bytes: a cursor holds at most a few sort values, the longest a
/// 255-character name (up to 1,020 bytes of UTF-8).
const MAX_CURSOR_BYTES: usize = 4096;

/// What a cursor is bound to: one list under one sort and one filter.
#[derive(Debug, Clone)]
pub(crate) struct CursorScope<F> {
    kind: Kind,
    sort: Vec<Sort<F>>,
    hash: String,
}

impl<F: SortField + Debug> CursorScope<F> {
    /// The scope of list `kind` sorted by `sort` and filtered by `filter`.
    pub(crate) fn new(kind: Kind, sort: &[Sort<F>], filter: &impl Debug) -> Self {
        let sort = effective_sort(sort).to_vec();
        let hash = format!(
            "{:016x}",
            fnv1a(format!("{}|{sort:?}|{filter:?}", kind.type_name()).as_bytes())
        );
        Self { kind, sort, hash }
    }

    /// The sort the cursors of this scope follow.
    pub(crate) fn sort(&self) -> &[Sort<F>] {
        &self.sort
    }

    /// The cursor of `row`: pass it as `after` to read the rows that follow it.
    pub(crate) fn encode(&self, row: &F::Row) -> String {
        let keyset = Keyset::of(row, &self.sort);
        let values: Vec<Value> = keyset.values.iter().map(value_json).collect();
        let text = json!([self.kind.type_name(), self.hash, values, keyset.id]).to_string();
        let checksum = fnv1a(text.as_bytes());
        URL_SAFE_NO_PAD.encode(format!("{text}~{checksum:016x}"))
    }

    /// The position `raw` names, if it is a cursor of this scope.
    pub(crate) fn decode(&self, raw: &str) -> Result<Keyset, ApiError> {
        let invalid = |why: &str| {
            ApiError::validation(
                "after",
                format!("not a cursor of this list ({why}); start again without `after`"),
            )
        };
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_CURSOR_BYTES {
            return Err(invalid("malformed"));
        }
        let text = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(raw).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| invalid("malformed"))?;
        if text.starts_with("arrayconnection:") {
            return Err(ApiError::validation(
                "after",
                "this is an offset cursor of an earlier version; cursors are now keyset \
                 cursors: start again without `after` and use the cursors this server returns",
            ));
        }
        let (json, checksum) = text.rsplit_once('~').ok_or_else(|| invalid("malformed"))?;
        if checksum != format!("{:016x}", fnv1a(json.as_bytes())) {
            return Err(invalid("damaged or altered"));
        }
        let parsed: Value = serde_json::from_str(json).map_err(|_| invalid("malformed"))?;
        let [kind, hash, values, id] = parsed
            .as_array()
            .and_then(|a| <&[Value; 4]>::try_from(a.as_slice()).ok())
            .ok_or_else(|| invalid("malformed"))?;
        if kind.as_str() != Some(self.kind.type_name()) {
            return Err(invalid(&format!(
                "it is a cursor of {}, not of {}",
                kind.as_str().unwrap_or("another list"),
                self.kind.type_name()
            )));
        }
        if hash.as_str() != Some(self.hash.as_str()) {
            return Err(invalid("it was made for another orderBy or filter"));
        }
        let values = values.as_array().ok_or_else(|| invalid("malformed"))?;
        if values.len() != self.sort.len() {
            return Err(invalid("malformed"));
        }
        let values = self
            .sort
            .iter()
            .zip(values)
            .map(|(key, value)| value_from_json(key.field.kind(), value))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("malformed"))?;
        let id = id.as_i64().ok_or_else(|| invalid("malformed"))?;
        Ok(Keyset { values, id })
    }
}

fn value_json(value: &SortValue) -> Value {
    match value {
        SortValue::Int(n) => json!(n),
        SortValue::Text(text) => json!(text),
        SortValue::Money(money) => json!(money.to_string()),
        SortValue::Time(at) => json!(at.timestamp_micros()),
    }
}

fn value_from_json(kind: ValueKind, value: &Value) -> Option<SortValue> {
    Some(match kind {
        ValueKind::Int => SortValue::Int(value.as_i64()?),
        ValueKind::Text => SortValue::Text(value.as_str()?.to_owned()),
        ValueKind::Money => SortValue::Money(value.as_str()?.parse::<Money>().ok()?),
        ValueKind::Time => SortValue::Time(DateTime::from_timestamp_micros(value.as_i64()?)?),
    })
}

/// 64-bit FNV-1a: a stable hash (the standard library's may change between releases, and a
/// cursor must outlive a server upgrade of the same format).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use crm_core::{Order, OrderField, OrderFilter, Product, ProductField, ProductFilter};

    fn order() -> Order {
        Order {
            id: 42,
            customer_id: 1,
            total_amount: Money::new(1999, 2),
            order_date: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        }
    }

    fn by(field: OrderField, descending: bool) -> Vec<Sort<OrderField>> {
        vec![Sort { field, descending }]
    }

    fn message(err: ApiError) -> String {
        assert!(matches!(err, ApiError::Validation { field: "after", .. }));
        err.to_string()
    }

    #[test]
    fn a_cursor_reads_back_as_the_rows_position() {
        let filter = OrderFilter::default();
        for sort in [
            vec![],
            by(OrderField::OrderDate, true),
            by(OrderField::TotalAmount, false),
            by(OrderField::Id, true),
        ] {
            let scope = CursorScope::new(Kind::Order, &sort, &filter);
            let cursor = scope.encode(&order());
            assert_eq!(scope.decode(&cursor).unwrap(), Keyset::of(&order(), &sort));
        }
    }

    #[test]
    fn a_cursor_of_another_sort_filter_or_list_is_refused() {
        let filter = OrderFilter::default();
        let by_date = CursorScope::new(Kind::Order, &by(OrderField::OrderDate, false), &filter);
        let cursor = by_date.encode(&order());
        let by_date_desc = CursorScope::new(Kind::Order, &by(OrderField::OrderDate, true), &filter);
        assert!(message(by_date_desc.decode(&cursor).unwrap_err()).contains("another orderBy"));
        let filtered = OrderFilter {
            customer_email: Some("a@b.c".into()),
            ..OrderFilter::default()
        };
        let other_filter =
            CursorScope::new(Kind::Order, &by(OrderField::OrderDate, false), &filtered);
        assert!(message(other_filter.decode(&cursor).unwrap_err()).contains("filter"));
        let products =
            CursorScope::<ProductField>::new(Kind::Product, &[], &ProductFilter::default());
        let product = Product {
            id: 1,
            name: "Pen".into(),
            price: Money::new(150, 2),
            stock: 3,
        };
        let err = message(by_date.decode(&products.encode(&product)).unwrap_err());
        assert!(err.contains("ProductType"), "{err}");
    }

    #[test]
    fn truncated_altered_forged_and_offset_cursors_are_refused() {
        let scope = CursorScope::<OrderField>::new(Kind::Order, &[], &OrderFilter::default());
        let cursor = scope.encode(&order());
        message(scope.decode(&cursor[..cursor.len() - 3]).unwrap_err());
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
        let altered = URL_SAFE_NO_PAD.encode(text.replace("42", "41"));
        assert!(message(scope.decode(&altered).unwrap_err()).contains("altered"));
        for forged in ["", "nope", "////", &"A".repeat(10_000), "e30", "W10"] {
            message(scope.decode(forged).unwrap_err());
        }
        let offset = STANDARD.encode("arrayconnection:99");
        assert!(message(scope.decode(&offset).unwrap_err()).contains("offset cursor"));
    }
}
