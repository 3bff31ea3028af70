//! How the five jobs reach the CRM: [`CrmAccess`], exactly what they ask of it, and
//! [`InProcessCrm`], its implementation over a crm-core store.
//!
//! The jobs of the original talk to the CRM's GraphQL endpoint (the `crm` binary does the same,
//! with [`GraphqlClient`](crate::GraphqlClient), feature `graphql-surf` or `graphql-tokio`); an app that holds the
//! CRM's database in its own process has no server to ask, so it hands the jobs an
//! [`InProcessCrm`] instead. Either way a job's log lines are the same.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::{CrmStore, ReminderPage};
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use rust_decimal::Decimal;

use crate::job::JobError;

/// How many orders [`InProcessCrm`] reads per query: as many as the server's largest page by
/// default (`CRM_MAX_PAGE_SIZE`), so both ways make about as many round trips, and a page stays
/// a few hundred kilobytes whatever the size of the week.
pub const IN_PROCESS_PAGE_SIZE: u64 = 1_000;

/// The orders of a date range, one page at a time (see [`CrmAccess::order_pages_between`]).
pub type OrderPages<'a> = BoxStream<'a, Result<Vec<OrderToRemind>, JobError>>;

/// Stock below this counts as low (the server's `updateLowStockProducts` uses the same rule).
pub const LOW_STOCK_THRESHOLD: i32 = 10;
/// What a restock adds to each low product (as the server's `updateLowStockProducts` does).
pub const RESTOCK_AMOUNT: i32 = 10;

/// What the five jobs need from the CRM, and nothing more: a liveness check, the orders of a
/// date range with their customers' e-mails, restocking low stock, the report's totals and
/// deleting inactive customers.
///
/// Object-safe: the jobs hold an `Arc<dyn CrmAccess>`. An implementation that cannot do one of
/// these (the GraphQL API has no operation that deletes customers) answers
/// [`JobError::Unsupported`] saying what to use instead.
#[async_trait]
pub trait CrmAccess: Send + Sync + 'static {
    /// Proves that the CRM answers (the heartbeat's check) and returns what it said.
    async fn hello(&self) -> Result<String, JobError>;

    /// Every order dated in `[from, to]` with its customer's e-mail, oldest first and then by
    /// id, one page at a time: a week of a large shop (82,000 orders at a million) is read in
    /// the memory of one page, and a job can write each page out before asking for the next.
    /// Pages follow a keyset (order date, id), so no order there throughout is skipped or
    /// repeated when others come and go meanwhile. The stream ends after the last page (which
    /// may be empty) or with the first error.
    fn order_pages_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> OrderPages<'_>;

    /// Every order dated in `[from, to]` with its customer's e-mail, oldest first and then by
    /// id, in one list: the pages of [`order_pages_between`](Self::order_pages_between), for a
    /// caller that wants them all at once (its memory grows with the range).
    async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderToRemind>, JobError> {
        let pages: Vec<Vec<OrderToRemind>> =
            self.order_pages_between(from, to).try_collect().await?;
        Ok(pages.concat())
    }

    /// Every product whose stock is below `threshold` (what a restock would touch), without
    /// changing anything.
    async fn products_below(&self, threshold: i32) -> Result<Vec<ProductStockLevel>, JobError>;

    /// Adds [`RESTOCK_AMOUNT`] to every product with stock below [`LOW_STOCK_THRESHOLD`],
    /// atomically, and returns what it restocked. With an `idempotency_key` (the job passes
    /// its tick) it does so once per key: asked again, it changes nothing and answers the first
    /// restock's products, [`replayed`](RestockOutcome::replayed).
    async fn restock_low_stock(
        &self,
        idempotency_key: Option<&str>,
    ) -> Result<RestockOutcome, JobError>;

    /// The report's totals: customers, orders and revenue, counted by the CRM's database.
    async fn report_totals(&self) -> Result<ReportTotals, JobError>;

    /// Deletes, in one transaction, every customer older than 365 days at `as_of` with no order
    /// in the 365 days before it (with their orders) and returns how many customers; with
    /// `dry_run`, only counts.
    async fn delete_inactive_customers(
        &self,
        as_of: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<u64, JobError>;
}

#[async_trait]
impl<T: CrmAccess + ?Sized> CrmAccess for Arc<T> {
    async fn hello(&self) -> Result<String, JobError> {
        (**self).hello().await
    }
    fn order_pages_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> OrderPages<'_> {
        (**self).order_pages_between(from, to)
    }
    async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderToRemind>, JobError> {
        (**self).orders_between(from, to).await
    }
    async fn products_below(&self, threshold: i32) -> Result<Vec<ProductStockLevel>, JobError> {
        (**self).products_below(threshold).await
    }
    async fn restock_low_stock(
        &self,
        idempotency_key: Option<&str>,
    ) -> Result<RestockOutcome, JobError> {
        (**self).restock_low_stock(idempotency_key).await
    }
    async fn report_totals(&self) -> Result<ReportTotals, JobError> {
        (**self).report_totals().await
    }
    async fn delete_inactive_customers(
        &self,
        as_of: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<u64, JobError> {
        (**self).delete_inactive_customers(as_of, dry_run).await
    }
}

/// An order dated within a reminder window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderToRemind {
    /// The order's id as people read it: the database number (over GraphQL, the number a
    /// graphene-style global ID such as `T3JkZXJUeXBlOjQy`, `OrderType:42`, encodes; an ID that
    /// encodes none is shown unchanged).
    pub id: String,
    /// The e-mail address of the order's customer.
    pub customer_email: String,
    /// When the order was placed.
    pub order_date: DateTime<Utc>,
}

impl OrderToRemind {
    /// The order `id` of the customer at `customer_email`, placed at `order_date`.
    pub fn new(
        id: impl Into<String>,
        customer_email: impl Into<String>,
        order_date: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.into(),
            customer_email: customer_email.into(),
            order_date,
        }
    }
}

/// A product and its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProductStockLevel {
    /// The product's id as people read it (see [`OrderToRemind::id`]).
    pub id: String,
    /// The product's name.
    pub name: String,
    /// Units in stock.
    pub stock: i32,
}

impl ProductStockLevel {
    /// The product `id` named `name`, with `stock` units.
    pub fn new(id: impl Into<String>, name: impl Into<String>, stock: i32) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            stock,
        }
    }
}

/// What a restock did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestockOutcome {
    /// Each product it restocked, with its new stock.
    pub products: Vec<ProductStockLevel>,
    /// The CRM's summary message.
    pub message: String,
    /// `true` when the idempotency key had been used already: nothing changed this time, and
    /// `products` are those the first restock with that key restocked.
    pub replayed: bool,
}

impl RestockOutcome {
    /// The restock of `products`, summed up by `message`.
    pub fn new(products: Vec<ProductStockLevel>, message: impl Into<String>) -> Self {
        Self {
            products,
            message: message.into(),
            replayed: false,
        }
    }

    /// This outcome, marked as a replay (or not) of an earlier restock with the same key.
    pub fn with_replayed(mut self, replayed: bool) -> Self {
        self.replayed = replayed;
        self
    }
}

/// The report's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportTotals {
    /// Number of customers.
    pub customers: i64,
    /// Number of orders.
    pub orders: i64,
    /// Sum of every order's total amount, exact.
    pub revenue: Decimal,
}

impl ReportTotals {
    /// `customers` customers and `orders` orders worth `revenue` in all.
    pub fn new(customers: i64, orders: i64, revenue: Decimal) -> Self {
        Self {
            customers,
            orders,
            revenue,
        }
    }
}

/// The CRM in this process: the jobs ask a crm-core store directly, with no server between.
///
/// For an app that holds the CRM's database (SQLite or PostgreSQL through `crm_core::Database`,
/// or its own [`CrmStore`]) and runs the jobs beside it. Cheap to clone.
#[derive(Clone)]
pub struct InProcessCrm {
    store: Arc<dyn CrmStore>,
    page_size: u64,
}

impl InProcessCrm {
    /// The CRM held by `store`, read [`IN_PROCESS_PAGE_SIZE`] rows a query.
    pub fn new(store: Arc<dyn CrmStore>) -> Self {
        Self {
            store,
            page_size: IN_PROCESS_PAGE_SIZE,
        }
    }

    /// This CRM read `rows` rows a query (at least 1): fewer for less memory a page, more for
    /// fewer round trips.
    pub fn with_page_size(mut self, rows: u64) -> Self {
        self.page_size = rows.max(1);
        self
    }
}

impl std::fmt::Debug for InProcessCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessCrm").finish_non_exhaustive()
    }
}

#[async_trait]
impl CrmAccess for InProcessCrm {
    /// One primary-key lookup: proof that the database answers queries, at any size.
    async fn hello(&self) -> Result<String, JobError> {
        self.store.products_by_ids(&[0]).await?;
        Ok("the CRM's database answers".to_owned())
    }

    /// [`IN_PROCESS_PAGE_SIZE`] orders a query (or [`InProcessCrm::with_page_size`]), each page
    /// starting after the previous one's last order (a keyset the database seeks to, never an
    /// offset it reads through), through `CrmStore::orders_between_pages` (on SQLite all on one
    /// connection, so one page cache is warmed, not one per pooled connection).
    fn order_pages_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> OrderPages<'_> {
        self.store
            .orders_between_pages(ReminderPage::first(from, to, self.page_size))
            .map_ok(|rows| {
                rows.into_iter()
                    .map(|order| {
                        OrderToRemind::new(
                            order.order_id.to_string(),
                            order.customer_email,
                            order.order_date,
                        )
                    })
                    .collect()
            })
            .map_err(JobError::from)
            .boxed()
    }

    async fn products_below(&self, threshold: i32) -> Result<Vec<ProductStockLevel>, JobError> {
        let filter = crm_core::ProductFilter {
            stock_lt: Some(threshold),
            ..Default::default()
        };
        let count = self.store.count_products(&filter).await?;
        let page = crm_core::PageRequest {
            limit: u64::try_from(count).unwrap_or(0),
            ..Default::default()
        };
        let products = self.store.list_products(&filter, &[], page).await?;
        Ok(products.into_iter().map(stock_level).collect())
    }

    async fn restock_low_stock(
        &self,
        idempotency_key: Option<&str>,
    ) -> Result<RestockOutcome, JobError> {
        let restock = crm_core::Restock::low_stock(
            &*self.store,
            idempotency_key,
            LOW_STOCK_THRESHOLD,
            RESTOCK_AMOUNT,
        )
        .await?;
        let message = restock.message(LOW_STOCK_THRESHOLD, RESTOCK_AMOUNT);
        Ok(RestockOutcome::new(
            restock.products.into_iter().map(stock_level).collect(),
            message,
        )
        .with_replayed(restock.replayed))
    }

    async fn report_totals(&self) -> Result<ReportTotals, JobError> {
        let totals = self.store.totals().await?;
        Ok(ReportTotals::new(
            totals.customers,
            totals.orders,
            totals.revenue,
        ))
    }

    async fn delete_inactive_customers(
        &self,
        as_of: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<u64, JobError> {
        Ok(self.store.delete_inactive_customers(as_of, dry_run).await?)
    }
}

fn stock_level(product: crm_core::Product) -> ProductStockLevel {
    ProductStockLevel::new(product.id.to_string(), product.name, product.stock)
}
