//! The storage trait the server and the jobs use, and the query types it takes.
//!
//! Implementations: [`crate::Database`] (SQLite or PostgreSQL, chosen by URL). Every operation the
//! jobs rest on is one statement or one transaction in the database, never a loop over rows here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Customer, CustomerId, Money, NewCustomer, NewOrder, NewProduct, Order, OrderId, Product,
    ProductId,
};
use crate::error::Result;
pub use crate::paging::PageRequest;

/// One sort key: a field and a direction. Lists always end with the id as a tie-breaker, so
/// pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<F> {
    /// The field to sort by.
    pub field: F,
    /// `true` for descending (the `-field` form of the API).
    pub descending: bool,
}

/// Fields customers can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomerField {
    /// Database id.
    Id,
    /// Name.
    Name,
    /// E-mail address.
    Email,
    /// Creation time.
    CreatedAt,
}

/// Fields products can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProductField {
    /// Database id.
    Id,
    /// Name.
    Name,
    /// Price.
    Price,
    /// Stock.
    Stock,
}

/// Fields orders can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderField {
    /// Database id.
    Id,
    /// Order date.
    OrderDate,
    /// Total amount.
    TotalAmount,
}

/// Filters on customers; every given condition must hold. Text matches ignore letter case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    /// Name contains this text.
    pub name_icontains: Option<String>,
    /// E-mail contains this text.
    pub email_icontains: Option<String>,
    /// Phone starts with this text.
    pub phone_startswith: Option<String>,
    /// Created at or after this instant.
    pub created_at_gte: Option<DateTime<Utc>>,
    /// Created at or before this instant.
    pub created_at_lte: Option<DateTime<Utc>>,
}

/// Filters on products; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Name contains this text, ignoring case.
    pub name_icontains: Option<String>,
    /// Price at least this.
    pub price_gte: Option<Money>,
    /// Price at most this.
    pub price_lte: Option<Money>,
    /// Stock at least this.
    pub stock_gte: Option<i32>,
    /// Stock at most this.
    pub stock_lte: Option<i32>,
    /// Stock below this.
    pub stock_lt: Option<i32>,
}

/// Filters on orders; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// The customer's e-mail equals this, ignoring case.
    pub customer_email: Option<String>,
    /// The customer's name contains this text, ignoring case.
    pub customer_name_icontains: Option<String>,
    /// Some product's name contains this text, ignoring case.
    pub product_name_icontains: Option<String>,
    /// Order date at or after this instant.
    pub order_date_gte: Option<DateTime<Utc>>,
    /// Order date at or before this instant.
    pub order_date_lte: Option<DateTime<Utc>>,
    /// Total at least this.
    pub total_amount_gte: Option<Money>,
    /// Total at most this.
    pub total_amount_lte: Option<Money>,
}

/// One order due a reminder: the order and its customer's e-mail, from one joined query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderReminder {
    /// The order.
    pub order_id: OrderId,
    /// Its customer's e-mail address.
    pub customer_email: String,
    /// When it was placed.
    pub order_date: DateTime<Utc>,
}

/// Where a page of [`CrmStore::orders_between`] starts and how long it is: the orders from
/// `from` to `to` that come after `after` (the previous page's last order; from the start when
/// `None`), at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderPage<'a> {
    /// The earliest order date (inclusive).
    pub from: DateTime<Utc>,
    /// The latest order date (inclusive).
    pub to: DateTime<Utc>,
    /// The previous page's last order; `None` for the first page.
    pub after: Option<&'a OrderReminder>,
    /// At most this many orders.
    pub limit: u64,
}

impl ReminderPage<'static> {
    /// The first page of the orders from `from` to `to`, `limit` long.
    pub fn first(from: DateTime<Utc>, to: DateTime<Utc>, limit: u64) -> Self {
        Self {
            from,
            to,
            after: None,
            limit,
        }
    }
}

/// [`CrmStore::orders_between_pages`]' answer: the pages as they are read.
pub type ReminderPages<'a> = futures::stream::BoxStream<'a, Result<Vec<OrderReminder>>>;

/// Totals for the weekly report, computed by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Number of customers.
    pub customers: i64,
    /// Number of orders.
    pub orders: i64,
    /// Sum of all orders' total amounts (zero when there are none).
    pub revenue: Money,
}

/// [`CrmStore::order_relations`]' answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderRelations {
    /// The customers asked for that exist, in no particular order.
    pub customers: Vec<Customer>,
    /// The products of the orders asked for, as `(order, product)` pairs, by order then
    /// product id.
    pub products: Vec<(OrderId, Product)>,
}

/// What [`CrmStore::restock_low_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restock {
    /// The products restocked, by id: by this call, or, when `replayed`, by the first call
    /// with the same key (as they are now).
    pub products: Vec<Product>,
    /// `true` when the key had been used already, so nothing was changed this time.
    pub replayed: bool,
}

impl Restock {
    /// What a restock of `products` did (`replayed`: nothing, the key was used already).
    pub fn new(products: Vec<Product>, replayed: bool) -> Self {
        Self { products, replayed }
    }

    /// What `updateLowStockProducts` does, for the server and for the jobs in process: once
    /// per `key` ([`CrmStore::restock_low_once`]) when there is one, else
    /// [`CrmStore::restock_low`] (the original's clients send none).
    pub async fn low_stock(
        store: &dyn CrmStore,
        key: Option<&str>,
        threshold: i32,
        amount: i32,
    ) -> Result<Self> {
        match key {
            Some(key) => store.restock_low_once(key, threshold, amount).await,
            None => Ok(Self::new(
                store.restock_low(threshold, amount).await?,
                false,
            )),
        }
    }

    /// The summary for people, as `updateLowStockProducts` answers it.
    pub fn message(&self, threshold: i32, amount: i32) -> String {
        match (self.replayed, self.products.len()) {
            (true, n) => format!(
                "Already restocked with this idempotency key ({n} products then); nothing changed"
            ),
            (false, 0) => format!("No products had stock below {threshold}"),
            (false, 1) => format!("Restocked 1 product by {amount}"),
            (false, n) => format!("Restocked {n} products by {amount}"),
        }
    }
}

/// [`CrmStore::orders_between_pages`] over any store: each page from
/// [`CrmStore::orders_between_page`] after the previous page's last order.
pub(crate) fn keyset_pages<'s, S: CrmStore + ?Sized>(
    store: &'s S,
    first: ReminderPage<'_>,
) -> ReminderPages<'s> {
    use futures::StreamExt as _;
    let (from, to, page_size) = (first.from, first.to, first.limit.max(1));
    let start: Option<Option<OrderReminder>> = Some(first.after.cloned());
    futures::stream::try_unfold(start, move |state| async move {
        let Some(after) = state else {
            return Ok::<_, crate::error::CoreError>(None);
        };
        let page = ReminderPage {
            from,
            to,
            after: after.as_ref(),
            limit: page_size,
        };
        let rows = store.orders_between_page(page).await?;
        let next = match rows.last() {
            Some(last) if rows.len() as u64 >= page_size => Some(Some(last.clone())),
            _ => None,
        };
        Ok(Some((rows, next)))
    })
    .boxed()
}

/// The longest idempotency key [`CrmStore::restock_low_once`] takes, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// What the server and the jobs need from storage.
///
/// Object-safe, so callers hold an `Arc<dyn CrmStore>`; every method is one statement or one
/// transaction.
#[async_trait]
pub trait CrmStore: Send + Sync + 'static {
    /// Creates a customer; a duplicate e-mail in any letter case is a `Conflict`.
    async fn create_customer(&self, customer: &NewCustomer) -> Result<Customer>;
    /// The customers with these ids that exist, in no particular order (one query).
    async fn customers_by_ids(&self, ids: &[CustomerId]) -> Result<Vec<Customer>>;
    /// A filtered, sorted page of customers.
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        sort: &[Sort<CustomerField>],
        page: PageRequest,
    ) -> Result<Vec<Customer>>;
    /// How many customers match the filter.
    async fn count_customers(&self, filter: &CustomerFilter) -> Result<i64>;

    /// Creates a product.
    async fn create_product(&self, product: &NewProduct) -> Result<Product>;
    /// The products with these ids that exist, in no particular order (one query).
    async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>>;
    /// A filtered, sorted page of products.
    async fn list_products(
        &self,
        filter: &ProductFilter,
        sort: &[Sort<ProductField>],
        page: PageRequest,
    ) -> Result<Vec<Product>>;
    /// How many products match the filter.
    async fn count_products(&self, filter: &ProductFilter) -> Result<i64>;

    /// Creates an order in one transaction: the customer and every product must exist
    /// (`NotFound` otherwise, and nothing is written); the total is the sum of the products'
    /// current prices; the order date is `now` when the input has none.
    async fn create_order(&self, order: &NewOrder, now: DateTime<Utc>) -> Result<Order>;
    /// The orders with these ids that exist, in no particular order (one query).
    async fn orders_by_ids(&self, ids: &[OrderId]) -> Result<Vec<Order>>;
    /// A filtered, sorted page of orders.
    async fn list_orders(
        &self,
        filter: &OrderFilter,
        sort: &[Sort<OrderField>],
        page: PageRequest,
    ) -> Result<Vec<Order>>;
    /// How many orders match the filter.
    async fn count_orders(&self, filter: &OrderFilter) -> Result<i64>;
    /// The products of each of these orders, as `(order, product)` pairs (one query), so a
    /// page of orders costs a fixed number of queries.
    async fn order_products(&self, order_ids: &[OrderId]) -> Result<Vec<(OrderId, Product)>>;
    /// A page of orders' customers (`customers_by_ids(customer_ids)`) and products
    /// (`order_products(order_ids)`) together; an empty list asks for nothing. A backend that
    /// can answers both in one statement (SQLite: one hand-over to its worker thread).
    async fn order_relations(
        &self,
        customer_ids: &[CustomerId],
        order_ids: &[OrderId],
    ) -> Result<OrderRelations> {
        let customers = if customer_ids.is_empty() {
            Vec::new()
        } else {
            self.customers_by_ids(customer_ids).await?
        };
        let products = if order_ids.is_empty() {
            Vec::new()
        } else {
            self.order_products(order_ids).await?
        };
        Ok(OrderRelations {
            customers,
            products,
        })
    }

    /// Deletes, in one transaction, every customer created more than 365 days before `as_of`
    /// who has no order dated within the 365 days before `as_of`, with their orders; returns
    /// how many customers. With `dry_run`, only counts.
    async fn delete_inactive_customers(&self, as_of: DateTime<Utc>, dry_run: bool) -> Result<u64>;
    /// Orders with `from <= order_date <= to`, each with its customer's e-mail, oldest first
    /// (one joined query).
    async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderReminder>>;
    /// One page of [`orders_between`](Self::orders_between): at most `page.limit` of its
    /// orders, those after `page.after` (the previous page's last one; from the start when
    /// `None`) in its order, oldest first and then by id (one joined query). A keyset page,
    /// not an offset: the database seeks to the position, so the last page of a large week
    /// costs what the first does and a job can read any week in bounded memory; an order
    /// inserted or deleted before the position does not make a later page skip or repeat
    /// another.
    async fn orders_between_page(&self, page: ReminderPage<'_>) -> Result<Vec<OrderReminder>>;
    /// [`orders_between`](Self::orders_between) as a stream of pages from `first` on, each
    /// `first.limit` long (at least 1) and from [`orders_between_page`](Self::orders_between_page)
    /// after the previous page's last order, ending after the first page shorter than that
    /// (which may be empty). A store may read them all on one connection (the SQLite store
    /// does, so a job paging a large week warms one page cache, not one per pooled connection).
    fn orders_between_pages(&self, first: ReminderPage<'_>) -> ReminderPages<'_> {
        keyset_pages(self, first)
    }
    /// Atomically adds `amount` to the stock of every product whose stock is below
    /// `threshold`; returns the updated products, by id. Concurrent restocks never lose an
    /// update.
    async fn restock_low(&self, threshold: i32, amount: i32) -> Result<Vec<Product>>;
    /// [`restock_low`](Self::restock_low) once per `key` (1 to
    /// [`MAX_IDEMPOTENCY_KEY_LEN`] characters): the restock and the key are written in one
    /// transaction, and a later call with the same key changes nothing and answers the first
    /// call's products. A job passes its tick, so a tick re-run after its first attempt
    /// committed (the answer was lost on the way) does not restock twice.
    async fn restock_low_once(&self, key: &str, threshold: i32, amount: i32) -> Result<Restock>;
    /// Customer count, order count and revenue, computed by the database.
    async fn totals(&self) -> Result<Totals>;

    /// Whether the database answers now: the cheapest statement (`SELECT 1`) on a pooled
    /// connection, for readiness probes (`/readyz`), which must not load the database they
    /// watch.
    async fn ping(&self) -> Result<()>;
}
