//! The read side: `hello`, the three lists, single lookups and the report's totals.

use juniper::{Executor, ID, ScalarValue, graphql_object};

use crm_core::PageRequest;

use crate::context::Context;
use crate::cursor::CursorScope;
use crate::error::ApiError;
use crate::ids::{Kind, decode_id};
use crate::scalars::Money;
use crate::schema::filters::{
    CUSTOMER_SORTS, CustomerFilterInput, ORDER_SORTS, OrderFilterInput, PRODUCT_SORTS,
    ProductFilterInput, page_size, parse_order_by,
};
use crate::schema::jobs::{JobNode, JobRunNode};
use crate::schema::types::{
    CustomerConnection, CustomerNode, OrderConnection, OrderNode, ProductConnection, ProductNode,
    Related,
};

/// What can be read. Open to everyone, token or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query;

#[graphql_object(context = Context)]
#[graphql(scalar = S: ScalarValue)]
impl Query {
    /// Answers `Hello, GraphQL!`: the liveness probe the heartbeat job uses.
    fn hello() -> &'static str {
        "Hello, GraphQL!"
    }

    /// Customers, filtered and sorted, a page at a time (`first` at most the server's page
    /// size limit, `after` a cursor from the previous page). `orderBy` is comma-separated field
    /// names, `-` for descending, e.g. `"-createdAt"`.
    async fn all_customers(
        context: &Context,
        filter: Option<CustomerFilterInput>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<CustomerConnection, ApiError> {
        let filter: crm_core::CustomerFilter = filter.unwrap_or_default().try_into()?;
        let sort = parse_order_by(order_by.as_deref(), CUSTOMER_SORTS)?;
        let limit = page_size(first, context.max_page_size())?;
        let scope = CursorScope::new(Kind::Customer, &sort, &filter);
        let page = PageRequest {
            // One more than asked for, to learn whether a next page exists.
            limit: limit + 1,
            after: after.as_deref().map(|c| scope.decode(c)).transpose()?,
        };
        context.charge_rows(limit)?;
        let has_after = page.after.is_some();
        let mut rows = context
            .store()
            .list_customers(&filter, scope.sort(), page)
            .await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok(CustomerConnection {
            nodes: rows.into_iter().map(CustomerNode).collect(),
            after: has_after,
            has_next_page,
            filter,
            scope,
        })
    }

    /// Products, filtered and sorted, a page at a time; e.g. `orderBy: "-stock"`.
    async fn all_products(
        context: &Context,
        filter: Option<ProductFilterInput>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ProductConnection, ApiError> {
        let filter: crm_core::ProductFilter = filter.unwrap_or_default().try_into()?;
        let sort = parse_order_by(order_by.as_deref(), PRODUCT_SORTS)?;
        let limit = page_size(first, context.max_page_size())?;
        let scope = CursorScope::new(Kind::Product, &sort, &filter);
        let page = PageRequest {
            // One more than asked for, to learn whether a next page exists.
            limit: limit + 1,
            after: after.as_deref().map(|c| scope.decode(c)).transpose()?,
        };
        context.charge_rows(limit)?;
        let has_after = page.after.is_some();
        let mut rows = context
            .store()
            .list_products(&filter, scope.sort(), page)
            .await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok(ProductConnection {
            nodes: rows.into_iter().map(ProductNode).collect(),
            after: has_after,
            has_next_page,
            filter,
            scope,
        })
    }

    /// Orders, filtered and sorted, a page at a time; e.g. the last week's with
    /// `filter: {orderDateGte: "…"}`. Their customers and products cost one query each per page.
    async fn all_orders<S: ScalarValue>(
        context: &Context,
        executor: &Executor<'_, '_, Context, S>,
        filter: Option<OrderFilterInput>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<OrderConnection, ApiError> {
        let filter: crm_core::OrderFilter = filter.unwrap_or_default().try_into()?;
        let sort = parse_order_by(order_by.as_deref(), ORDER_SORTS)?;
        let limit = page_size(first, context.max_page_size())?;
        let scope = CursorScope::new(Kind::Order, &sort, &filter);
        let page = PageRequest {
            // One more than asked for, to learn whether a next page exists.
            limit: limit + 1,
            after: after.as_deref().map(|c| scope.decode(c)).transpose()?,
        };
        context.charge_rows(limit)?;
        let has_after = page.after.is_some();
        let mut rows = context
            .store()
            .list_orders(&filter, scope.sort(), page)
            .await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let related = Related::selected_under(&executor.look_ahead());
        Ok(OrderConnection {
            nodes: OrderNode::load(context, rows, related).await?,
            after: has_after,
            has_next_page,
            filter,
            scope,
        })
    }

    /// One customer by ID (global or plain number); null when there is none.
    async fn customer(context: &Context, id: ID) -> Result<Option<CustomerNode>, ApiError> {
        let id = decode_id(Kind::Customer, "id", &id)?;
        let found = context.store().customers_by_ids(&[id]).await?;
        Ok(found.into_iter().next().map(CustomerNode))
    }

    /// One product by ID (global or plain number); null when there is none.
    async fn product(context: &Context, id: ID) -> Result<Option<ProductNode>, ApiError> {
        let id = decode_id(Kind::Product, "id", &id)?;
        let found = context.store().products_by_ids(&[id]).await?;
        Ok(found.into_iter().next().map(ProductNode))
    }

    /// One order by ID (global or plain number); null when there is none.
    async fn order<S: ScalarValue>(
        context: &Context,
        executor: &Executor<'_, '_, Context, S>,
        id: ID,
    ) -> Result<Option<OrderNode>, ApiError> {
        let id = decode_id(Kind::Order, "id", &id)?;
        let found = context.store().orders_by_ids(&[id]).await?;
        let related = Related::selected_under(&executor.look_ahead());
        Ok(OrderNode::load(context, found, related).await?.pop())
    }

    /// Number of customers (counted by the database; the weekly report's first figure).
    async fn total_customers(context: &Context) -> Result<i32, ApiError> {
        let totals = context.totals().await?;
        Ok(i32::try_from(totals.customers).unwrap_or(i32::MAX))
    }

    /// Number of orders (counted by the database).
    async fn total_orders(context: &Context) -> Result<i32, ApiError> {
        let totals = context.totals().await?;
        Ok(i32::try_from(totals.orders).unwrap_or(i32::MAX))
    }

    /// Sum of every order's total amount (summed by the database; `"0.00"` with no orders).
    async fn total_revenue(context: &Context) -> Result<Money, ApiError> {
        Ok(Money(context.totals().await?.revenue))
    }

    /// Every scheduled job with its health: state (ok, running, late, missed, failing),
    /// schedule, next run, last success and failure, recent durations.
    async fn jobs(context: &Context) -> Result<Vec<JobNode>, ApiError> {
        crate::schema::jobs::jobs(context).await
    }

    /// A scheduled job's latest runs, newest first (`first` from 1 to 500, default 20).
    async fn job_runs(
        context: &Context,
        code: String,
        first: Option<i32>,
    ) -> Result<Vec<JobRunNode>, ApiError> {
        crate::schema::jobs::job_runs(context, &code, first).await
    }
}
