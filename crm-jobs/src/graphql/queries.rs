//! The operations the jobs send, typed against the server's schema (`schema.graphql`) by cynic:
//! a query or a field that drifts from the server's SDL fails to compile.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

#[cynic::schema("crm")]
#[expect(
    unreachable_pub,
    reason = "cynic generates `pub` marker types for the schema; the module itself is private"
)]
mod schema {}

/// The server's `Decimal` scalar: exact, sent as a string with two decimals. A number is
/// accepted too, parsed from its JSON text so no float ever holds money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Money(pub(crate) Decimal);

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(D::Error::custom(format!("not a decimal: {other}"))),
        };
        text.trim()
            .parse::<Decimal>()
            .or_else(|_| Decimal::from_scientific(text.trim()))
            .map(Money)
            .map_err(|_| D::Error::custom(format!("not a decimal: {text}")))
    }
}

cynic::impl_scalar!(Money, schema::Decimal);
cynic::impl_scalar!(DateTime<Utc>, schema::DateTime);

/// `{ hello }`: the cheapest question that proves the endpoint executes queries.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query")]
pub(crate) struct Hello {
    pub(crate) hello: String,
}

/// Variables of [`OrdersBetween`].
#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct OrdersBetweenVariables {
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
    pub(crate) first: Option<i32>,
    pub(crate) after: Option<String>,
}

/// One page of the orders dated in `[from, to]`, oldest first (ties by id, as the server
/// breaks them), so the server seeks in its order-date index and the pages come in log order.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "OrdersBetweenVariables")]
pub(crate) struct OrdersBetween {
    #[arguments(
        filter: { orderDateGte: $from, orderDateLte: $to },
        orderBy: "orderDate",
        first: $first,
        after: $after
    )]
    pub(crate) all_orders: OrderConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "OrderTypeConnection")]
pub(crate) struct OrderConnection {
    pub(crate) edges: Vec<OrderTypeEdge>,
    pub(crate) page_info: PageInfo,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct OrderTypeEdge {
    pub(crate) node: OrderType,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct OrderType {
    pub(crate) id: cynic::Id,
    pub(crate) order_date: DateTime<Utc>,
    pub(crate) customer: CustomerEmail,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "CustomerType")]
pub(crate) struct CustomerEmail {
    pub(crate) email: String,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct PageInfo {
    pub(crate) has_next_page: bool,
    pub(crate) end_cursor: Option<String>,
}

/// Variables of [`ProductsBelow`].
#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ProductsBelowVariables {
    pub(crate) threshold: Option<i32>,
    pub(crate) first: Option<i32>,
    pub(crate) after: Option<String>,
}

/// One page of the products with stock below a threshold (what a restock would touch).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProductsBelowVariables")]
pub(crate) struct ProductsBelow {
    #[arguments(filter: { stockLt: $threshold }, first: $first, after: $after)]
    pub(crate) all_products: ProductConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProductTypeConnection")]
pub(crate) struct ProductConnection {
    pub(crate) edges: Vec<ProductTypeEdge>,
    pub(crate) page_info: PageInfo,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct ProductTypeEdge {
    pub(crate) node: ProductStock,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProductType")]
pub(crate) struct ProductStock {
    pub(crate) id: cynic::Id,
    pub(crate) name: String,
    pub(crate) stock: i32,
}

/// Variables of [`UpdateLowStock`].
#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct UpdateLowStockVariables {
    pub(crate) idempotency_key: Option<String>,
}

/// `mutation($idempotencyKey: String) { updateLowStockProducts(idempotencyKey: $idempotencyKey)
/// { products { id name stock } message replayed } }`.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "UpdateLowStockVariables")]
pub(crate) struct UpdateLowStock {
    #[arguments(idempotencyKey: $idempotency_key)]
    pub(crate) update_low_stock_products: UpdateLowStockProducts,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct UpdateLowStockProducts {
    pub(crate) products: Vec<ProductStock>,
    pub(crate) message: String,
    pub(crate) replayed: bool,
}

/// The report's totals, counted by the server's database.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query")]
pub(crate) struct Report {
    pub(crate) total_customers: i32,
    pub(crate) total_orders: i32,
    pub(crate) total_revenue: Money,
}
