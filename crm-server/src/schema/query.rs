//! The read side: `hello`, the three lists, single lookups and the report's totals.

use std::fmt::Debug;

use juniper::{Executor, ID, graphql_object};

use crm_core::{PageRequest, Sort, SortField};

use crate::context::Context;
use crate::cursor::CursorScope;
use crate::error::ApiError;
use crate::ids::{Kind, decode_id};
use crate::scalar_value::CrmScalar;
use crate::scalars::Money;
use crate::schema::filters::{
    CUSTOMER_SORTS, CustomerFilterInput, ORDER_SORTS, OrderFilterInput, PRODUCT_SORTS,
    ProductFilterInput, page_size, parse_order_by,
};
use crate::schema::jobs::{JobNode, JobRunNode};
use crate::schema::types::{
    CustomerConnection, CustomerNode, ListPage, OrderConnection, OrderNode, ProductConnection,
    ProductNode, Related,
};

/// What can be read. Open to everyone, token or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query;

#[graphql_object(context = Context)]
#[graphql(scalar = CrmScalar)]
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
        let (rows, page) = ListRequest::new(filter, order_by, first, after)
            .read(
                context,
                Kind::Customer,
                CUSTOMER_SORTS,
                async |filter, sort, page| context.store().list_customers(filter, sort, page).await,
            )
            .await?;
        let nodes = rows.into_iter().map(CustomerNode).collect();
        Ok(CustomerConnection { nodes, page })
    }

    /// Products, filtered and sorted, a page at a time; e.g. `orderBy: "-stock"`.
    async fn all_products(
        context: &Context,
        filter: Option<ProductFilterInput>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ProductConnection, ApiError> {
        let (rows, page) = ListRequest::new(filter, order_by, first, after)
            .read(
                context,
                Kind::Product,
                PRODUCT_SORTS,
                async |filter, sort, page| context.store().list_products(filter, sort, page).await,
            )
            .await?;
        let nodes = rows.into_iter().map(ProductNode).collect();
        Ok(ProductConnection { nodes, page })
    }

    /// Orders, filtered and sorted, a page at a time; e.g. the last week's with
    /// `filter: {orderDateGte: "…"}`. Their customers and products cost one query each per page.
    async fn all_orders(
        context: &Context,
        executor: &Executor<'_, '_, Context, CrmScalar>,
        filter: Option<OrderFilterInput>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<OrderConnection, ApiError> {
        let (rows, page) = ListRequest::new(filter, order_by, first, after)
            .read(
                context,
                Kind::Order,
                ORDER_SORTS,
                async |filter, sort, page| context.store().list_orders(filter, sort, page).await,
            )
            .await?;
        let related = Related::selected_under(&executor.look_ahead());
        let nodes = OrderNode::load(context, rows, related).await?;
        Ok(OrderConnection { nodes, page })
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
    async fn order(
        context: &Context,
        executor: &Executor<'_, '_, Context, CrmScalar>,
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

/// The arguments every list takes, as the client gave them.
struct ListRequest<Input> {
    filter: Option<Input>,
    order_by: Option<String>,
    first: Option<i32>,
    after: Option<String>,
}

impl<Input: Default> ListRequest<Input> {
    fn new(
        filter: Option<Input>,
        order_by: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Self {
        Self {
            filter,
            order_by,
            first,
            after,
        }
    }

    /// Checks the arguments of list `kind` (sortable by `sorts`), charges the request for the
    /// page and reads it with `list`: one row more than asked for, to learn whether a next
    /// page exists, which is left out of the rows returned.
    async fn read<F, Filter, Row>(
        self,
        context: &Context,
        kind: Kind,
        sorts: &[(&str, F)],
        list: impl AsyncFnOnce(&Filter, &[Sort<F>], PageRequest) -> crm_core::Result<Vec<Row>>,
    ) -> Result<(Vec<Row>, ListPage<F, Filter>), ApiError>
    where
        F: SortField + Debug,
        Filter: TryFrom<Input, Error = ApiError> + Debug,
    {
        let filter: Filter = self.filter.unwrap_or_default().try_into()?;
        let sort = parse_order_by(self.order_by.as_deref(), sorts)?;
        let limit = page_size(self.first, context.max_page_size())?;
        let scope = CursorScope::new(kind, &sort, &filter);
        let page = PageRequest {
            limit: limit + 1,
            after: self.after.as_deref().map(|c| scope.decode(c)).transpose()?,
        };
        context.charge_rows(limit)?;
        let after = page.after.is_some();
        let mut rows = list(&filter, scope.sort(), page).await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let page = ListPage {
            after,
            has_next_page,
            filter,
            scope,
        };
        Ok((rows, page))
    }
}
