//! The two custom scalars: exact money and instants with their zone.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use juniper::{
    GraphQLScalar, ParseScalarResult, ParseScalarValue, Scalar, ScalarToken, ScalarValue,
};
use rust_decimal::Decimal;

/// An exact decimal amount of money. Sent as a string with two decimals (`"19.99"`); accepted
/// as a string (`"2.50"`) or a number (`2.5`), never rounded through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, GraphQLScalar)]
#[graphql(
    name = "Decimal",
    to_output_with = Self::output,
    from_input_with = Self::from_input,
    parse_token_with = Self::parse_token
)]
pub struct Money(pub Decimal);

impl Money {
    fn output<S: ScalarValue>(v: &Self) -> S {
        S::from(format_money(v.0))
    }

    fn from_input(v: &Scalar<impl ScalarValue>) -> Result<Self, Box<str>> {
        if let Some(i) = v.try_to_int() {
            return Ok(Self(Decimal::from(i)));
        }
        if let Some(f) = v.try_to_float() {
            return parse_float(f).map(Self);
        }
        match v.try_to_string() {
            Some(s) => parse_decimal(&s).map(Self),
            None => {
                Err(format!("expected a decimal number as a string or a number, found {v}").into())
            }
        }
    }

    fn parse_token<S: ScalarValue>(token: ScalarToken<'_>) -> ParseScalarResult<S> {
        <String as ParseScalarValue<S>>::from_str(token)
            .or_else(|_| <i32 as ParseScalarValue<S>>::from_str(token))
            .or_else(|_| <f64 as ParseScalarValue<S>>::from_str(token))
    }
}

/// Two decimal places, always: `2.5` is sent as `"2.50"`.
pub(crate) fn format_money(amount: Decimal) -> String {
    let mut amount = amount.round_dp(2);
    amount.rescale(2);
    amount.to_string()
}

fn parse_decimal(text: &str) -> Result<Decimal, Box<str>> {
    let trimmed = text.trim();
    Decimal::from_str(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
        .map_err(|_| format!("'{text}' is not a decimal number").into())
}

/// A float literal as the client wrote it: Rust prints the shortest text that reads back as the
/// same float (`19.99`, not `19.989999999999998`), and that text is parsed exactly.
fn parse_float(f: f64) -> Result<Decimal, Box<str>> {
    if !f.is_finite() {
        return Err(format!("{f} is not a decimal number").into());
    }
    parse_decimal(&f.to_string())
}

/// An instant, sent in RFC 3339 with its offset (`2026-11-26T14:30:00+00:00`). Accepted in RFC
/// 3339, or as a bare date (`2026-11-26`, midnight UTC) or a date and time without an offset
/// (taken as UTC), as the original's filters took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, GraphQLScalar)]
#[graphql(
    name = "DateTime",
    to_output_with = Self::output,
    from_input_with = Self::from_input,
    parse_token(String)
)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    fn output<S: ScalarValue>(v: &Self) -> S {
        S::from(format_timestamp(v.0))
    }

    fn from_input(text: &str) -> Result<Self, Box<str>> {
        parse_timestamp(text)
            .map(Self)
            .ok_or_else(|| {
                format!(
                    "'{text}' is not a date-time: use RFC 3339 (2026-11-26T14:30:00+00:00) or a date (2026-11-26)"
                )
                .into()
            })
    }
}

/// RFC 3339 with the offset spelled out (`+00:00`) and only the fraction of a second there is.
pub(crate) fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use juniper::{DefaultScalarValue, FromInputValue, InputValue, ToInputValue};

    fn money_in(v: InputValue) -> Result<Money, String> {
        Money::from_input_value(&v).map_err(|e| e.message().to_owned())
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn money_is_accepted_as_string_int_or_float_without_float_error() {
        assert_eq!(money_in(InputValue::scalar("2.50")).unwrap().0, dec("2.50"));
        assert_eq!(money_in(InputValue::scalar(" 10 ")).unwrap().0, dec("10"));
        assert_eq!(money_in(InputValue::scalar(7)).unwrap().0, dec("7"));
        assert_eq!(money_in(InputValue::scalar(19.99)).unwrap().0, dec("19.99"));
        assert_eq!(money_in(InputValue::scalar(0.1)).unwrap().0, dec("0.1"));
        assert_eq!(money_in(InputValue::scalar(-3.5)).unwrap().0, dec("-3.5"));
    }

    #[test]
    fn money_that_is_not_a_number_is_refused_with_the_text() {
        let err = money_in(InputValue::scalar("abc")).unwrap_err();
        assert!(err.contains("'abc' is not a decimal number"), "{err}");
        assert!(money_in(InputValue::scalar(true)).is_err());
        assert!(money_in(InputValue::scalar(f64::NAN)).is_err());
    }

    #[test]
    fn money_is_always_sent_with_two_decimals() {
        let out = |s: &str| -> String {
            let v: InputValue<DefaultScalarValue> = Money(dec(s)).to_input_value();
            v.as_scalar()
                .and_then(|s| s.try_as_str())
                .unwrap()
                .to_owned()
        };
        assert_eq!(out("2.5"), "2.50");
        assert_eq!(out("10"), "10.00");
        assert_eq!(out("0.30"), "0.30");
        assert_eq!(out("1234567.891"), "1234567.89");
    }

    #[test]
    fn timestamps_are_accepted_with_zone_or_as_utc_dates() {
        let t = |s: &str| Timestamp::from_input(s).map(|t| t.0.to_rfc3339());
        assert_eq!(
            t("2026-11-26T14:30:00+02:00").unwrap(),
            "2026-11-26T12:30:00+00:00"
        );
        assert_eq!(
            t("2026-11-26T14:30:00Z").unwrap(),
            "2026-11-26T14:30:00+00:00"
        );
        assert_eq!(t("2026-11-26").unwrap(), "2026-11-26T00:00:00+00:00");
        assert_eq!(
            t("2026-11-26T14:30:00").unwrap(),
            "2026-11-26T14:30:00+00:00"
        );
        let err = t("yesterday").unwrap_err();
        assert!(err.contains("'yesterday' is not a date-time"), "{err}");
    }

    #[test]
    fn timestamps_are_sent_in_rfc3339_with_their_offset() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T14:30:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let v: InputValue<DefaultScalarValue> = Timestamp(at).to_input_value();
        assert_eq!(
            v.as_scalar().and_then(|s| s.try_as_str()).unwrap(),
            "2026-11-26T14:30:00.250+00:00"
        );
    }
}
