//! The `filter` input objects, `orderBy`, and `first`/`after`, turned into crm-core's query types.

use crm_core::{
    CustomerField, CustomerFilter, OrderField, OrderFilter, ProductField, ProductFilter, Sort,
};
use juniper::GraphQLInputObject;

use crate::error::ApiError;
use crate::scalars::{Money, Timestamp};

/// Conditions on customers; every given one must hold. Text matches ignore letter case.
#[derive(Debug, Clone, Default, GraphQLInputObject)]
pub(crate) struct CustomerFilterInput {
    /// Name contains this text.
    name_icontains: Option<String>,
    /// E-mail contains this text.
    email_icontains: Option<String>,
    /// Phone starts with this text (e.g. `+1`).
    phone_startswith: Option<String>,
    /// Created at or after this instant.
    created_at_gte: Option<Timestamp>,
    /// Created at or before this instant.
    created_at_lte: Option<Timestamp>,
}

impl TryFrom<CustomerFilterInput> for CustomerFilter {
    type Error = ApiError;

    fn try_from(f: CustomerFilterInput) -> Result<Self, ApiError> {
        Ok(CustomerFilter {
            name_icontains: filter_text("nameIcontains", f.name_icontains)?,
            email_icontains: filter_text("emailIcontains", f.email_icontains)?,
            phone_startswith: filter_text("phoneStartswith", f.phone_startswith)?,
            created_at_gte: f.created_at_gte.map(bound),
            created_at_lte: f.created_at_lte.map(bound),
        })
    }
}

/// A date bound of a filter, brought within the years 1 to 9999 that stored instants keep to.
/// Nothing lies outside, so the matches are the same; PostgreSQL refuses instants before
/// 4713 BC, which was an internal error (found by the property tests of issue 8).
fn bound(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    t.0.clamp(crm_core::earliest_instant(), crm_core::latest_instant())
}

/// Longest text a filter takes, in characters. No stored name or e-mail is longer than 255
/// characters, so longer text could never match; refusing it keeps megabyte patterns away from
/// the database.
pub(crate) const MAX_FILTER_CHARS: usize = 1_000;

/// Checks a filter's text: at most [`MAX_FILTER_CHARS`] characters and no NUL. Both were
/// internal errors before (found by the property tests of issue 8): PostgreSQL refuses NUL in
/// text, and SQLite refuses `LIKE` patterns over 50,000 bytes. No stored value holds a NUL.
fn filter_text(field: &'static str, text: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(ApiError::validation(
            field,
            format!("must be at most {MAX_FILTER_CHARS} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(ApiError::validation(
            field,
            "must not contain the NUL character",
        ));
    }
    Ok(Some(text))
}

/// Conditions on products; every given one must hold.
#[derive(Debug, Clone, Default, GraphQLInputObject)]
pub(crate) struct ProductFilterInput {
    /// Name contains this text, ignoring letter case.
    name_icontains: Option<String>,
    /// Price at least this.
    price_gte: Option<Money>,
    /// Price at most this.
    price_lte: Option<Money>,
    /// Stock at least this.
    stock_gte: Option<i32>,
    /// Stock at most this.
    stock_lte: Option<i32>,
    /// Stock below this (`stockLt: 10` lists the products the restock job would touch).
    stock_lt: Option<i32>,
}

impl TryFrom<ProductFilterInput> for ProductFilter {
    type Error = ApiError;

    fn try_from(f: ProductFilterInput) -> Result<Self, ApiError> {
        Ok(ProductFilter {
            name_icontains: filter_text("nameIcontains", f.name_icontains)?,
            price_gte: f.price_gte.map(|m| m.0),
            price_lte: f.price_lte.map(|m| m.0),
            stock_gte: f.stock_gte,
            stock_lte: f.stock_lte,
            stock_lt: f.stock_lt,
        })
    }
}

/// Conditions on orders; every given one must hold. Text matches ignore letter case.
#[derive(Debug, Clone, Default, GraphQLInputObject)]
pub(crate) struct OrderFilterInput {
    /// The customer's e-mail equals this.
    customer_email: Option<String>,
    /// The customer's name contains this text.
    customer_name: Option<String>,
    /// Some product's name contains this text.
    product_name: Option<String>,
    /// Placed at or after this instant.
    order_date_gte: Option<Timestamp>,
    /// Placed at or before this instant.
    order_date_lte: Option<Timestamp>,
    /// Total at least this.
    total_amount_gte: Option<Money>,
    /// Total at most this.
    total_amount_lte: Option<Money>,
}

impl TryFrom<OrderFilterInput> for OrderFilter {
    type Error = ApiError;

    fn try_from(f: OrderFilterInput) -> Result<Self, ApiError> {
        Ok(OrderFilter {
            customer_email: filter_text("customerEmail", f.customer_email)?,
            customer_name_icontains: filter_text("customerName", f.customer_name)?,
            product_name_icontains: filter_text("productName", f.product_name)?,
            order_date_gte: f.order_date_gte.map(bound),
            order_date_lte: f.order_date_lte.map(bound),
            total_amount_gte: f.total_amount_gte.map(|m| m.0),
            total_amount_lte: f.total_amount_lte.map(|m| m.0),
        })
    }
}

/// The sortable fields of each list, by the names `orderBy` takes (camelCase as the API shows
/// them, snake_case as Django spells them).
pub(crate) const CUSTOMER_SORTS: &[(&str, CustomerField)] = &[
    ("id", CustomerField::Id),
    ("name", CustomerField::Name),
    ("email", CustomerField::Email),
    ("createdAt", CustomerField::CreatedAt),
    ("created_at", CustomerField::CreatedAt),
];
pub(crate) const PRODUCT_SORTS: &[(&str, ProductField)] = &[
    ("id", ProductField::Id),
    ("name", ProductField::Name),
    ("price", ProductField::Price),
    ("stock", ProductField::Stock),
];
pub(crate) const ORDER_SORTS: &[(&str, OrderField)] = &[
    ("id", OrderField::Id),
    ("orderDate", OrderField::OrderDate),
    ("order_date", OrderField::OrderDate),
    ("totalAmount", OrderField::TotalAmount),
    ("total_amount", OrderField::TotalAmount),
];

/// Parses `orderBy`: comma-separated field names, `-` in front for descending
/// (`"-stock,name"`). An unknown field is an error naming the known ones.
pub(crate) fn parse_order_by<F: Copy>(
    raw: Option<&str>,
    fields: &[(&str, F)],
) -> Result<Vec<Sort<F>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut sorts = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (descending, name) = match part.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let field = fields
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let known: Vec<&str> = fields
                    .iter()
                    .map(|(n, _)| *n)
                    .filter(|n| !n.contains('_'))
                    .collect();
                ApiError::validation(
                    "orderBy",
                    format!(
                        "unknown field '{name}'; sort by one of {} (prefix - for descending)",
                        known.join(", ")
                    ),
                )
            })?;
        sorts.push(Sort { field, descending });
    }
    if sorts.len() > fields.len() {
        return Err(ApiError::validation("orderBy", "too many sort fields"));
    }
    Ok(sorts)
}

/// The page size `first` asks for: `max_page_size` when absent (so a client that leaves the
/// size to the server, as the jobs do, reads the largest pages it allows), and at most that.
pub(crate) fn page_size(first: Option<i32>, max_page_size: u64) -> Result<u64, ApiError> {
    match first {
        None => Ok(max_page_size),
        Some(n) if n < 0 => Err(ApiError::validation("first", "must be zero or more")),
        Some(n) if n as u64 > max_page_size => Err(ApiError::validation(
            "first",
            format!(
                "must be at most {max_page_size} (the server's page size limit, \
                 CRM_MAX_PAGE_SIZE); page with `after`"
            ),
        )),
        Some(n) => Ok(n as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_takes_commas_minus_and_both_spellings() {
        let sorts = parse_order_by(Some("-stock, name"), PRODUCT_SORTS).unwrap();
        assert_eq!(
            sorts,
            vec![
                Sort {
                    field: ProductField::Stock,
                    descending: true
                },
                Sort {
                    field: ProductField::Name,
                    descending: false
                },
            ]
        );
        let sorts = parse_order_by(Some("-order_date"), ORDER_SORTS).unwrap();
        assert_eq!(
            sorts,
            vec![Sort {
                field: OrderField::OrderDate,
                descending: true
            }]
        );
        assert!(parse_order_by(None, ORDER_SORTS).unwrap().is_empty());
        assert!(parse_order_by(Some(""), ORDER_SORTS).unwrap().is_empty());
    }

    #[test]
    fn an_unknown_sort_field_is_named_with_the_known_ones() {
        let err = parse_order_by(Some("-weight"), PRODUCT_SORTS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field 'weight'"), "{err}");
        assert!(err.contains("id, name, price, stock"), "{err}");
    }

    #[test]
    fn first_beyond_the_page_size_limit_is_refused() {
        assert_eq!(page_size(None, 100).unwrap(), 100);
        assert_eq!(page_size(Some(10), 100).unwrap(), 10);
        let err = page_size(Some(101), 100).unwrap_err().to_string();
        assert!(err.contains("first: must be at most 100"), "{err}");
        assert!(page_size(Some(-1), 100).is_err());
    }

    #[test]
    fn filter_text_over_the_limit_or_with_nul_is_refused_naming_the_field() {
        assert_eq!(filter_text("nameIcontains", None).unwrap(), None);
        let ok = "%_\\'; é".to_owned();
        assert_eq!(
            filter_text("nameIcontains", Some(ok.clone())).unwrap(),
            Some(ok)
        );
        let long = "é".repeat(MAX_FILTER_CHARS + 1);
        let err = filter_text("nameIcontains", Some(long))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "nameIcontains: must be at most 1000 characters");
        let err = filter_text("productName", Some("a\0b".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "productName: must not contain the NUL character");
    }
}
