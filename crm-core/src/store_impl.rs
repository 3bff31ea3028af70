//! [`CrmStore`] on [`Database`]: each method hands the work to the backend's module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::database::{Backend, Database, on_backend};
use crate::domain::{
    Customer, CustomerId, NewCustomer, NewOrder, NewProduct, Order, OrderId, Product, ProductId,
};
use crate::error::{CoreError, Result};
use crate::sql::truncate_to_micros;
use crate::store::{
    CrmStore, CustomerField, CustomerFilter, MAX_IDEMPOTENCY_KEY_LEN, OrderField, OrderFilter,
    OrderRelations, OrderReminder, PageRequest, ProductField, ProductFilter, ReminderPage,
    ReminderPages, Restock, Sort, Totals,
};
#[cfg(feature = "postgres")]
use crate::store_sql::postgres;
#[cfg(feature = "sqlite")]
use crate::store_sql::sqlite;

#[async_trait]
impl CrmStore for Database {
    /// The creation time is the wall clock's now (whole microseconds).
    async fn create_customer(&self, customer: &NewCustomer) -> Result<Customer> {
        let now = truncate_to_micros(Utc::now());
        on_backend!(self, create_customer(customer, now))
    }

    async fn customers_by_ids(&self, ids: &[CustomerId]) -> Result<Vec<Customer>> {
        on_backend!(self, customers_by_ids(ids))
    }

    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        sort: &[Sort<CustomerField>],
        page: PageRequest,
    ) -> Result<Vec<Customer>> {
        on_backend!(self, CUSTOMERS.list(filter, sort, page))
    }

    async fn count_customers(&self, filter: &CustomerFilter) -> Result<i64> {
        on_backend!(self, CUSTOMERS.count(filter))
    }

    async fn create_product(&self, product: &NewProduct) -> Result<Product> {
        on_backend!(self, create_product(product))
    }

    async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        on_backend!(self, products_by_ids(ids))
    }

    async fn list_products(
        &self,
        filter: &ProductFilter,
        sort: &[Sort<ProductField>],
        page: PageRequest,
    ) -> Result<Vec<Product>> {
        on_backend!(self, PRODUCTS.list(filter, sort, page))
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<i64> {
        on_backend!(self, PRODUCTS.count(filter))
    }

    /// The order date is kept to whole microseconds, the precision both backends store, so
    /// the returned order equals what a later read gives.
    async fn create_order(&self, order: &NewOrder, now: DateTime<Utc>) -> Result<Order> {
        let order_date = truncate_to_micros(order.order_date().unwrap_or(now));
        on_backend!(self, create_order(order, order_date))
    }

    async fn orders_by_ids(&self, ids: &[OrderId]) -> Result<Vec<Order>> {
        on_backend!(self, orders_by_ids(ids))
    }

    async fn list_orders(
        &self,
        filter: &OrderFilter,
        sort: &[Sort<OrderField>],
        page: PageRequest,
    ) -> Result<Vec<Order>> {
        on_backend!(self, ORDERS.list(filter, sort, page))
    }

    async fn count_orders(&self, filter: &OrderFilter) -> Result<i64> {
        on_backend!(self, ORDERS.count(filter))
    }

    async fn order_products(&self, order_ids: &[OrderId]) -> Result<Vec<(OrderId, Product)>> {
        on_backend!(self, order_products(order_ids))
    }

    async fn order_relations(
        &self,
        customer_ids: &[CustomerId],
        order_ids: &[OrderId],
    ) -> Result<OrderRelations> {
        on_backend!(self, order_relations(customer_ids, order_ids))
    }

    /// The boundary, to the microsecond: with `cutoff = as_of - 365 days`, a customer is
    /// deleted when `created_at < cutoff` (one created exactly 365 days before `as_of` is not
    /// "older than 365 days" and stays) and no order of theirs has `order_date >= cutoff` (an
    /// order exactly 365 days old is "within the last 365 days" and keeps its customer; so does
    /// any order dated after `as_of`, so the cleanup never destroys a future order). Their
    /// orders and order lines are deleted with them; the count is customers only. An order
    /// committed while the cleanup runs keeps its customer: SQLite holds the write lock
    /// throughout; PostgreSQL locks the candidates, then checks them again.
    async fn delete_inactive_customers(&self, as_of: DateTime<Utc>, dry_run: bool) -> Result<u64> {
        on_backend!(self, delete_inactive_customers(as_of, dry_run))
    }

    async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderReminder>> {
        on_backend!(self, orders_between(from, to))
    }

    async fn orders_between_page(&self, page: ReminderPage<'_>) -> Result<Vec<OrderReminder>> {
        let (from, to, after, limit) = (page.from, page.to, page.after, page.limit);
        on_backend!(self, orders_between_page(from, to, after, limit))
    }

    fn orders_between_pages(&self, first: ReminderPage<'_>) -> ReminderPages<'_> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlite::orders_between_pages(pool, first),
            // PostgreSQL's cache is the server's: any pooled connection will do.
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => crate::store::keyset_pages(self, first),
        }
    }

    /// `amount` must be at least 1. A product whose stock would pass `i32::MAX` is left as it
    /// is rather than failing the whole restock.
    async fn restock_low(&self, threshold: i32, amount: i32) -> Result<Vec<Product>> {
        if amount < 1 {
            return Err(CoreError::validation("amount", "must be at least 1"));
        }
        on_backend!(self, restock_low(threshold, amount))
    }

    async fn restock_low_once(&self, key: &str, threshold: i32, amount: i32) -> Result<Restock> {
        if amount < 1 {
            return Err(CoreError::validation("amount", "must be at least 1"));
        }
        let length = key.chars().count();
        if length == 0 || length > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(CoreError::validation(
                "idempotencyKey",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
            ));
        }
        let now = truncate_to_micros(Utc::now());
        on_backend!(self, restock_low_once(key, threshold, amount, now))
    }

    async fn totals(&self) -> Result<Totals> {
        on_backend!(self, totals())
    }

    async fn ping(&self) -> Result<()> {
        on_backend!(self, ping())
    }
}
