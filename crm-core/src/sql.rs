//! Helpers both backends share: LIKE escaping, money and time conversions, error mapping.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use sqlx::QueryBuilder;

use crate::domain::{Money, NewCustomer};
use crate::error::CoreError;
use crate::paging::{Keyset, SortField, SortValue, effective_sort};
use crate::store::Sort;

/// How far back "the last 365 days" of the cleanup rule reaches.
pub(crate) const INACTIVITY: TimeDelta = TimeDelta::days(365);

/// `text` as a `LIKE … ESCAPE '\'` pattern that matches it anywhere: `%`, `_` and `\` in user
/// text match themselves, not any character.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    push_escaped(&mut pattern, text);
    pattern.push('%');
    pattern
}

/// `text` as a `LIKE … ESCAPE '\'` pattern that matches values starting with it.
pub(crate) fn prefix_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 1);
    push_escaped(&mut pattern, text);
    pattern.push('%');
    pattern
}

fn push_escaped(pattern: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
}

/// An instant truncated to whole microseconds, the precision both backends store.
pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The instant `micros` microseconds after the Unix epoch, or a storage error for a value no
/// `DateTime` can hold (a corrupted row).
pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>, CoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        CoreError::from(sqlx::Error::Decode(
            format!("timestamp {micros} µs is out of range").into(),
        ))
    })
}

pub(crate) use crate::domain::truncate_to_micros;

/// A stored amount of cents as money with two places.
pub(crate) fn from_cents(cents: i64) -> Money {
    Decimal::new(cents, 2)
}

/// Exact cents of a validated price (two places at most, so nothing is lost).
pub(crate) fn to_cents(money: Money) -> i64 {
    (money * Decimal::ONE_HUNDRED)
        .trunc()
        .to_i64()
        .unwrap_or(i64::MAX)
}

/// The smallest whole number of cents that is `>= money`, for `>=` filters given with more
/// than two places (`price >= 2.505` is `cents >= 251`). Saturates at the `i64` range.
pub(crate) fn cents_ceil(money: Money) -> i64 {
    saturate(
        money.checked_mul(Decimal::ONE_HUNDRED).map(|c| c.ceil()),
        money,
    )
}

/// The largest whole number of cents that is `<= money`, for `<=` filters.
pub(crate) fn cents_floor(money: Money) -> i64 {
    saturate(
        money.checked_mul(Decimal::ONE_HUNDRED).map(|c| c.floor()),
        money,
    )
}

fn saturate(cents: Option<Decimal>, money: Money) -> i64 {
    match cents.and_then(|c| c.to_i64()) {
        Some(c) => c,
        None if money.is_sign_negative() => i64::MIN,
        None => i64::MAX,
    }
}

/// A page bound as the `i64` SQL takes; larger values mean "no limit".
pub(crate) fn page_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Maps a failed customer insert: a unique violation can only be the e-mail (in any case), and
/// becomes a `Conflict` that names it rather than the database's own message.
pub(crate) fn customer_insert_error(error: sqlx::Error, customer: &NewCustomer) -> CoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => CoreError::Conflict(format!(
            "a customer with e-mail {} already exists",
            customer.email()
        )),
        _ => CoreError::from(error),
    }
}

/// Whether the code of `statement` (its comments aside) uses the parameter `mark` (`?1`,
/// `$1`), so a script's statements are bound only with what they take.
pub(crate) fn uses_parameter(statement: &str, mark: &str) -> bool {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .any(|line| line.contains(mark))
}

/// Whether this statement of a script is the DELETE from customers, whose count is the
/// cleanup's (comment lines before it aside).
pub(crate) fn deletes_customers(statement: &str) -> bool {
    statement
        .lines()
        .find(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"))
        .is_some_and(|line| {
            line.split_whitespace()
                .take(3)
                .eq(["DELETE", "FROM", "customers"])
        })
}

/// The first id of `wanted` that is not in `found`, for a `NotFound` that names it.
pub(crate) fn first_missing(wanted: &[i64], found: &[i64]) -> Option<i64> {
    wanted.iter().copied().find(|id| !found.contains(id))
}

/// Ids as a JSON array, the one bound value SQLite's `json_each` expands into a list (so a
/// list of any length is one query with one parameter).
pub(crate) fn json_ids(ids: &[i64]) -> String {
    let mut json = String::with_capacity(ids.len() * 8 + 2);
    json.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&id.to_string());
    }
    json.push(']');
    json
}

/// Appends a list's `ORDER BY`: the deciding keys (`column` gives each field's SQL expression),
/// then the id ascending unless an id key ended the sort, so the order is total and a keyset
/// names one position.
pub(crate) fn push_order_by<DB: sqlx::Database, F: SortField>(
    qb: &mut QueryBuilder<DB>,
    sort: &[Sort<F>],
    column: fn(F) -> &'static str,
    id: &str,
) {
    let keys = effective_sort(sort);
    qb.push(" ORDER BY ");
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(column(key.field))
            .push(if key.descending { " DESC" } else { " ASC" });
    }
    if keys.last().is_none_or(|key| !key.field.is_id()) {
        if !keys.is_empty() {
            qb.push(", ");
        }
        qb.push(id).push(" ASC");
    }
}

/// Appends the condition "after `after`" in the order [`push_order_by`] writes, to follow a
/// `WHERE` or `AND`: for keys `k1, k2` and the id,
/// `k1 >= v1 AND (k1 > v1 OR (k1 = v1 AND (k2 > v2 OR (k2 = v2 AND id > i))))`, with `<` for a
/// descending key. The leading bound repeats the first comparison so that both planners seek
/// in the first key's index instead of scanning. `value` writes one bound value (with the
/// backend's conversions, e.g. `lower(?)` for text).
pub(crate) fn push_after<DB: sqlx::Database, F: SortField>(
    qb: &mut QueryBuilder<DB>,
    sort: &[Sort<F>],
    after: &Keyset,
    column: fn(F) -> &'static str,
    id: &str,
    value: fn(&mut QueryBuilder<DB>, &SortValue),
) -> Result<(), CoreError>
where
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    after.check(sort)?;
    let keys = effective_sort(sort);
    let ends_with_id = keys.last().is_some_and(|key| key.field.is_id());
    if let (Some(first), Some(v)) = (keys.first(), after.values.first()) {
        qb.push(column(first.field))
            .push(if first.descending { " <= " } else { " >= " });
        value(qb, v);
        qb.push(" AND ");
    }
    let mut open = 0;
    for (i, (key, v)) in keys.iter().zip(&after.values).enumerate() {
        let last = ends_with_id && i + 1 == keys.len();
        qb.push("(").push(column(key.field));
        qb.push(if key.descending { " < " } else { " > " });
        value(qb, v);
        open += 1;
        if last {
            break;
        }
        qb.push(" OR (").push(column(key.field)).push(" = ");
        value(qb, v);
        qb.push(" AND ");
        open += 1;
    }
    if !ends_with_id {
        qb.push(id).push(" > ").push_bind(after.id);
    }
    for _ in 0..open {
        qb.push(")");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn like_wildcards_in_user_text_match_only_themselves() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(prefix_pattern("+1"), "+1%");
    }

    #[test]
    fn money_filters_with_extra_places_round_toward_the_condition() {
        let m = |s| Decimal::from_str(s).unwrap();
        assert_eq!(cents_ceil(m("2.505")), 251);
        assert_eq!(cents_floor(m("2.505")), 250);
        assert_eq!(cents_ceil(m("2.50")), 250);
        assert_eq!(cents_floor(m("-0.001")), -1);
        assert_eq!(cents_ceil(Decimal::MAX), i64::MAX);
        assert_eq!(cents_floor(Decimal::MIN), i64::MIN);
    }

    #[test]
    fn cents_round_trip_exactly() {
        let price = Decimal::from_str("9999999999.99").unwrap();
        assert_eq!(from_cents(to_cents(price)), price);
        assert_eq!(from_cents(10).to_string(), "0.10");
    }

    #[test]
    fn script_statements_are_bound_by_their_code_not_their_comments() {
        assert!(!uses_parameter(
            "-- ?1 is the cutoff\nCREATE TABLE t (id INTEGER)",
            "?1"
        ));
        assert!(uses_parameter(
            "-- the cutoff\nDELETE FROM t WHERE x < ?1",
            "?1"
        ));
        assert!(deletes_customers(
            "-- last\nDELETE FROM customers WHERE id = 1"
        ));
        assert!(!deletes_customers(
            "DELETE FROM customers_archive"[..0].trim()
        ));
        assert!(!deletes_customers(
            "DELETE FROM orders WHERE customer_id = 1"
        ));
    }

    #[test]
    fn id_lists_become_json_arrays() {
        assert_eq!(json_ids(&[]), "[]");
        assert_eq!(json_ids(&[1, -2, 30]), "[1,-2,30]");
    }
}
