//! Customers, products and orders, and the rules their input must satisfy.
//!
//! The `New*` types can only be built through their validating constructors, so a store never
//! sees input that breaks a domain rule: validation happens once, at the edge.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{CoreError, Result};

/// Money: an exact decimal with at most two places. Never a float.
pub type Money = Decimal;

/// Database identifier of a customer.
pub type CustomerId = i64;
/// Database identifier of a product.
pub type ProductId = i64;
/// Database identifier of an order.
pub type OrderId = i64;

/// Longest name we accept, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest e-mail address we accept (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Largest price we accept; NUMERIC(12,2) holds it.
pub const MAX_PRICE: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2); // 9_999_999_999.99
/// Most products one order may hold.
pub const MAX_ORDER_PRODUCTS: usize = 1_000;

/// The earliest instant an order may carry: 0001-01-01 00:00:00 UTC.
///
/// Instants are kept to the years 1 to 9999, the range of the original's Python `datetime`.
/// PostgreSQL's `timestamptz` stops at 4713 BC, where chrono goes on to 262144 BC: an order
/// dated before that was an internal error there and stored fine in SQLite (found by the
/// property tests of issue 8).
pub fn earliest_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The latest instant an order may carry: 9999-12-31 23:59:59.999999 UTC (see
/// [`earliest_instant`]).
pub fn latest_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 999_999_000).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Database identifier.
    pub id: CustomerId,
    /// Display name.
    pub name: String,
    /// E-mail address as entered; unique regardless of letter case.
    pub email: String,
    /// Phone number in one of the accepted forms, if given.
    pub phone: Option<String>,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
}

/// A stored product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Database identifier.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Unit price, exact, > 0.
    pub price: Money,
    /// Units in stock, >= 0.
    pub stock: i32,
}

/// A stored order. Its products are loaded separately (in one query for many orders) so that
/// listing orders never costs a query per order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Database identifier.
    pub id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Sum of the products' prices at order time, computed by us.
    pub total_amount: Money,
    /// When the order was placed.
    pub order_date: DateTime<Utc>,
}

/// Validated input for a new customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    name: String,
    email: String,
    phone: Option<String>,
}

impl NewCustomer {
    /// Checks and normalises the input: a non-empty name, a well-formed e-mail, and a phone in
    /// the `+1234567890` or `123-456-7890` form (an empty phone counts as none).
    pub fn new(name: &str, email: &str, phone: Option<&str>) -> Result<Self> {
        let name = validate_name(name)?;
        let email = validate_email(email)?;
        let phone = match phone.map(str::trim) {
            None | Some("") => None,
            Some(p) => Some(validate_phone(p)?),
        };
        Ok(Self { name, email, phone })
    }

    /// The trimmed name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The trimmed e-mail address.
    pub fn email(&self) -> &str {
        &self.email
    }
    /// The phone number, if any.
    pub fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }
}

/// Validated input for a new product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    name: String,
    price: Money,
    stock: i32,
}

impl NewProduct {
    /// Checks the input: a non-empty name, a price > 0 with at most two decimal places, and a
    /// stock >= 0.
    pub fn new(name: &str, price: Money, stock: i32) -> Result<Self> {
        let name = validate_name(name)?;
        let price = validate_price(price)?;
        if stock < 0 {
            return Err(CoreError::validation("stock", "must be zero or more"));
        }
        Ok(Self { name, price, stock })
    }

    /// The trimmed name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The unit price.
    pub fn price(&self) -> Money {
        self.price
    }
    /// The initial stock.
    pub fn stock(&self) -> i32 {
        self.stock
    }
}

/// Validated input for a new order. Whether the customer and products exist is checked by the
/// store, inside the transaction that writes the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    customer_id: CustomerId,
    product_ids: Vec<ProductId>,
    order_date: Option<DateTime<Utc>>,
}

impl NewOrder {
    /// Checks the input: at least one product (a product named twice counts once, as in the
    /// original's many-to-many relation), at most [`MAX_ORDER_PRODUCTS`].
    /// `order_date` defaults to the store's "now" when absent.
    pub fn new(
        customer_id: CustomerId,
        product_ids: &[ProductId],
        order_date: Option<DateTime<Utc>>,
    ) -> Result<Self> {
        let mut ids = Vec::with_capacity(product_ids.len());
        for id in product_ids {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        if ids.is_empty() {
            return Err(CoreError::validation(
                "productIds",
                "an order needs at least one product",
            ));
        }
        if ids.len() > MAX_ORDER_PRODUCTS {
            return Err(CoreError::validation(
                "productIds",
                format!("an order holds at most {MAX_ORDER_PRODUCTS} products"),
            ));
        }
        if let Some(date) = order_date
            && !(earliest_instant()..=latest_instant()).contains(&date)
        {
            return Err(CoreError::validation(
                "orderDate",
                format!("{date} is outside the years 1 to 9999"),
            ));
        }
        Ok(Self {
            customer_id,
            product_ids: ids,
            order_date,
        })
    }

    /// Who orders.
    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }
    /// The distinct products, in the order first given.
    pub fn product_ids(&self) -> &[ProductId] {
        &self.product_ids
    }
    /// The requested order date, if any.
    pub fn order_date(&self) -> Option<DateTime<Utc>> {
        self.order_date
    }
}

fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CoreError::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(CoreError::validation(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CoreError::validation(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// A pragmatic syntax check: one `@`, a non-empty local part, a dotted domain of letters,
/// digits and hyphens, no spaces or control characters.
fn validate_email(email: &str) -> Result<String> {
    let email = email.trim();
    let invalid =
        || CoreError::validation("email", format!("'{email}' is not a valid e-mail address"));
    if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if local_ok && domain_ok {
        Ok(email.to_owned())
    } else {
        Err(invalid())
    }
}

/// The two forms the original accepts: `+` and 7 to 15 digits, or `123-456-7890`.
fn validate_phone(phone: &str) -> Result<String> {
    let international = phone
        .strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()));
    let dashed = {
        let parts: Vec<&str> = phone.split('-').collect();
        parts.len() == 3
            && [3, 3, 4]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_digit()))
    };
    if international || dashed {
        Ok(phone.to_owned())
    } else {
        Err(CoreError::validation(
            "phone",
            format!("'{phone}' must look like +1234567890 or 123-456-7890"),
        ))
    }
}

fn validate_price(price: Money) -> Result<Money> {
    if price <= Decimal::ZERO {
        return Err(CoreError::validation("price", "must be greater than zero"));
    }
    let normalized = price.normalize();
    if normalized.scale() > 2 {
        return Err(CoreError::validation(
            "price",
            "must have at most two decimal places",
        ));
    }
    if price > MAX_PRICE {
        return Err(CoreError::validation(
            "price",
            format!("must be at most {MAX_PRICE}"),
        ));
    }
    let mut price = normalized;
    price.rescale(2);
    Ok(price)
}

/// `at` rounded down to whole microseconds, as the database will give it back.
pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_largest_price_is_ten_billion_less_a_cent() {
        assert_eq!(MAX_PRICE, Decimal::from_str("9999999999.99").unwrap());
    }

    #[test]
    fn well_formed_customers_are_accepted_and_trimmed() {
        let c = NewCustomer::new("  Alice ", " alice@example.com ", Some("+1234567890")).unwrap();
        assert_eq!(c.name(), "Alice");
        assert_eq!(c.email(), "alice@example.com");
        assert_eq!(c.phone(), Some("+1234567890"));
        let c = NewCustomer::new("Bob", "bob@example.co.uk", Some("123-456-7890")).unwrap();
        assert_eq!(c.phone(), Some("123-456-7890"));
        assert_eq!(
            NewCustomer::new("Bob", "b@ex.com", Some(""))
                .unwrap()
                .phone(),
            None
        );
    }

    #[test]
    fn malformed_emails_are_rejected_with_the_field_named() {
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@c.com",
            "a@.com",
            "a@c.c0m",
            "a..b@c.com",
        ] {
            let err = NewCustomer::new("X", bad, None).unwrap_err();
            assert!(
                matches!(err, CoreError::Validation { field: "email", .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn phones_outside_the_two_forms_are_rejected() {
        for bad in [
            "12345",
            "+12",
            "123-4567-890",
            "(123) 456-7890",
            "+123abc4567",
        ] {
            let err = NewCustomer::new("X", "x@ex.com", Some(bad)).unwrap_err();
            assert!(
                matches!(err, CoreError::Validation { field: "phone", .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_only_names_are_rejected() {
        assert!(NewCustomer::new("   ", "x@ex.com", None).is_err());
        assert!(NewProduct::new("\t", Decimal::ONE, 0).is_err());
    }

    #[test]
    fn prices_must_be_positive_with_at_most_two_places() {
        let p = |s| NewProduct::new("P", Decimal::from_str(s).unwrap(), 1);
        assert!(p("0").is_err());
        assert!(p("-1.00").is_err());
        assert!(p("1.005").is_err());
        assert!(p("10000000000.00").is_err());
        assert_eq!(p("2.50").unwrap().price().to_string(), "2.50");
        assert_eq!(p("2.500").unwrap().price().to_string(), "2.50");
    }

    #[test]
    fn negative_stock_is_rejected() {
        assert!(NewProduct::new("P", Decimal::ONE, -1).is_err());
        assert!(NewProduct::new("P", Decimal::ONE, 0).is_ok());
    }

    #[test]
    fn an_order_needs_a_product_and_counts_each_once() {
        assert!(NewOrder::new(1, &[], None).is_err());
        let first = earliest_instant();
        assert_eq!(first.to_rfc3339(), "0001-01-01T00:00:00+00:00");
        assert_eq!(
            latest_instant().to_rfc3339(),
            "9999-12-31T23:59:59.999999+00:00"
        );
        assert!(NewOrder::new(1, &[2], Some(first)).is_ok());
        assert!(NewOrder::new(1, &[2], Some(latest_instant())).is_ok());
        let err = NewOrder::new(1, &[2], Some(first - chrono::TimeDelta::microseconds(1)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the years 1 to 9999"), "{err}");
        assert!(
            NewOrder::new(
                1,
                &[2],
                Some(latest_instant() + chrono::TimeDelta::seconds(1))
            )
            .is_err()
        );
        assert_eq!(
            NewOrder::new(1, &[3, 2, 3], None).unwrap().product_ids(),
            &[3, 2]
        );
    }
}
