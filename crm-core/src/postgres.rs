//! [`crate::CrmStore`] on PostgreSQL. Money is NUMERIC (bound as exact decimals), instants
//! TIMESTAMPTZ; lists of ids are bound as one array (`= ANY($1)`).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::domain::{
    Customer, CustomerId, Money, NewCustomer, NewOrder, NewProduct, Order, OrderId, Product,
    ProductId,
};
use crate::error::{CoreError, Result};
use crate::sql::{
    INACTIVITY, contains_pattern, customer_insert_error, deletes_customers, first_missing,
    page_bound, prefix_pattern, uses_parameter,
};
use crate::store::{
    CustomerField, CustomerFilter, OrderField, OrderFilter, OrderReminder, PageRequest,
    ProductField, ProductFilter, Sort, Totals,
};

const CUSTOMER_COLUMNS: &str = "SELECT id, name, email, phone, created_at FROM customers c";
const PRODUCT_COLUMNS: &str = "SELECT id, name, price, stock FROM products p";
const ORDER_COLUMNS: &str = "SELECT id, customer_id, total_amount, order_date FROM orders o";

/// Money as stored, shown with exactly two places.
fn money(mut value: Money) -> Money {
    value.rescale(2);
    value
}

fn customer(row: &PgRow) -> Result<Customer> {
    Ok(Customer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        created_at: row.try_get("created_at")?,
    })
}

fn product(row: &PgRow) -> Result<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price: money(row.try_get("price")?),
        stock: row.try_get("stock")?,
    })
}

fn order(row: &PgRow) -> Result<Order> {
    Ok(Order {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        total_amount: money(row.try_get("total_amount")?),
        order_date: row.try_get("order_date")?,
    })
}

fn rows<T>(rows: &[PgRow], map: fn(&PgRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(map).collect()
}

/// Appends `WHERE`/`AND` before each condition.
struct Where {
    started: bool,
}

impl Where {
    fn new() -> Self {
        Self { started: false }
    }
    fn next<'a>(&mut self, qb: &'a mut QueryBuilder<Postgres>) -> &'a mut QueryBuilder<Postgres> {
        qb.push(if self.started { " AND " } else { " WHERE " });
        self.started = true;
        qb
    }
}

fn push_icontains(qb: &mut QueryBuilder<Postgres>, column: &str, text: &str) {
    qb.push(format_args!("{column} ILIKE "))
        .push_bind(contains_pattern(text))
        .push(" ESCAPE '\\'");
}

fn customer_where(qb: &mut QueryBuilder<Postgres>, f: &CustomerFilter) {
    let mut w = Where::new();
    if let Some(text) = &f.name_icontains {
        push_icontains(w.next(qb), "c.name", text);
    }
    if let Some(text) = &f.email_icontains {
        push_icontains(w.next(qb), "c.email", text);
    }
    if let Some(text) = &f.phone_startswith {
        w.next(qb)
            .push("c.phone LIKE ")
            .push_bind(prefix_pattern(text))
            .push(" ESCAPE '\\'");
    }
    if let Some(at) = f.created_at_gte {
        w.next(qb).push("c.created_at >= ").push_bind(at);
    }
    if let Some(at) = f.created_at_lte {
        w.next(qb).push("c.created_at <= ").push_bind(at);
    }
}

fn product_where(qb: &mut QueryBuilder<Postgres>, f: &ProductFilter) {
    let mut w = Where::new();
    if let Some(text) = &f.name_icontains {
        push_icontains(w.next(qb), "p.name", text);
    }
    if let Some(price) = f.price_gte {
        w.next(qb).push("p.price >= ").push_bind(price);
    }
    if let Some(price) = f.price_lte {
        w.next(qb).push("p.price <= ").push_bind(price);
    }
    if let Some(stock) = f.stock_gte {
        w.next(qb).push("p.stock >= ").push_bind(stock);
    }
    if let Some(stock) = f.stock_lte {
        w.next(qb).push("p.stock <= ").push_bind(stock);
    }
    if let Some(stock) = f.stock_lt {
        w.next(qb).push("p.stock < ").push_bind(stock);
    }
}

fn order_where(qb: &mut QueryBuilder<Postgres>, f: &OrderFilter) {
    let mut w = Where::new();
    if let Some(email) = &f.customer_email {
        w.next(qb)
            .push("o.customer_id IN (SELECT id FROM customers WHERE lower(email) = lower(")
            .push_bind(email.trim().to_owned())
            .push("))");
    }
    if let Some(text) = &f.customer_name_icontains {
        w.next(qb)
            .push("o.customer_id IN (SELECT id FROM customers WHERE ");
        push_icontains(qb, "name", text);
        qb.push(")");
    }
    if let Some(text) = &f.product_name_icontains {
        w.next(qb).push(
            "EXISTS (SELECT 1 FROM order_products op JOIN products p ON p.id = op.product_id \
             WHERE op.order_id = o.id AND ",
        );
        push_icontains(qb, "p.name", text);
        qb.push(")");
    }
    if let Some(at) = f.order_date_gte {
        w.next(qb).push("o.order_date >= ").push_bind(at);
    }
    if let Some(at) = f.order_date_lte {
        w.next(qb).push("o.order_date <= ").push_bind(at);
    }
    if let Some(total) = f.total_amount_gte {
        w.next(qb).push("o.total_amount >= ").push_bind(total);
    }
    if let Some(total) = f.total_amount_lte {
        w.next(qb).push("o.total_amount <= ").push_bind(total);
    }
}

/// `ORDER BY` the given keys, then the id, so pages are stable. Text sorts ignore letter case
/// and compare code points (`COLLATE "C"`), as SQLite does, whatever the database's locale.
fn push_order_by<F: Copy>(
    qb: &mut QueryBuilder<Postgres>,
    sort: &[Sort<F>],
    column: fn(F) -> &'static str,
    id: &str,
) {
    qb.push(" ORDER BY ");
    for key in sort {
        qb.push(column(key.field))
            .push(if key.descending { " DESC, " } else { " ASC, " });
    }
    qb.push(id).push(" ASC");
}

fn push_page(qb: &mut QueryBuilder<Postgres>, page: PageRequest) {
    qb.push(" LIMIT ")
        .push_bind(page_bound(page.limit))
        .push(" OFFSET ")
        .push_bind(page_bound(page.offset));
}

fn customer_column(field: CustomerField) -> &'static str {
    match field {
        CustomerField::Id => "c.id",
        CustomerField::Name => "lower(c.name) COLLATE \"C\"",
        CustomerField::Email => "lower(c.email) COLLATE \"C\"",
        CustomerField::CreatedAt => "c.created_at",
    }
}

fn product_column(field: ProductField) -> &'static str {
    match field {
        ProductField::Id => "p.id",
        ProductField::Name => "lower(p.name) COLLATE \"C\"",
        ProductField::Price => "p.price",
        ProductField::Stock => "p.stock",
    }
}

fn order_column(field: OrderField) -> &'static str {
    match field {
        OrderField::Id => "o.id",
        OrderField::OrderDate => "o.order_date",
        OrderField::TotalAmount => "o.total_amount",
    }
}

pub(crate) async fn create_customer(
    pool: &PgPool,
    new: &NewCustomer,
    now: DateTime<Utc>,
) -> Result<Customer> {
    let row = sqlx::query(
        "INSERT INTO customers (name, email, phone, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, email, phone, created_at",
    )
    .bind(new.name())
    .bind(new.email())
    .bind(new.phone())
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(|e| customer_insert_error(e, new))?;
    customer(&row)
}

pub(crate) async fn customers_by_ids(pool: &PgPool, ids: &[CustomerId]) -> Result<Vec<Customer>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found =
        sqlx::query("SELECT id, name, email, phone, created_at FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    rows(&found, customer)
}

pub(crate) async fn list_customers(
    pool: &PgPool,
    filter: &CustomerFilter,
    sort: &[Sort<CustomerField>],
    page: PageRequest,
) -> Result<Vec<Customer>> {
    let mut qb = QueryBuilder::new(CUSTOMER_COLUMNS);
    customer_where(&mut qb, filter);
    push_order_by(&mut qb, sort, customer_column, "c.id");
    push_page(&mut qb, page);
    let found = qb.build().fetch_all(pool).await?;
    rows(&found, customer)
}

pub(crate) async fn count_customers(pool: &PgPool, filter: &CustomerFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM customers c");
    customer_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn create_product(pool: &PgPool, new: &NewProduct) -> Result<Product> {
    let row = sqlx::query(
        "INSERT INTO products (name, price, stock) VALUES ($1, $2, $3) \
         RETURNING id, name, price, stock",
    )
    .bind(new.name())
    .bind(new.price())
    .bind(new.stock())
    .fetch_one(pool)
    .await?;
    product(&row)
}

pub(crate) async fn products_by_ids(pool: &PgPool, ids: &[ProductId]) -> Result<Vec<Product>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query("SELECT id, name, price, stock FROM products WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    rows(&found, product)
}

pub(crate) async fn list_products(
    pool: &PgPool,
    filter: &ProductFilter,
    sort: &[Sort<ProductField>],
    page: PageRequest,
) -> Result<Vec<Product>> {
    let mut qb = QueryBuilder::new(PRODUCT_COLUMNS);
    product_where(&mut qb, filter);
    push_order_by(&mut qb, sort, product_column, "p.id");
    push_page(&mut qb, page);
    let found = qb.build().fetch_all(pool).await?;
    rows(&found, product)
}

pub(crate) async fn count_products(pool: &PgPool, filter: &ProductFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM products p");
    product_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn create_order(
    pool: &PgPool,
    new: &NewOrder,
    order_date: DateTime<Utc>,
) -> Result<Order> {
    let mut tx = pool.begin().await?;
    // FOR KEY SHARE: the customer and products cannot be deleted before we commit, and
    // concurrent orders do not block each other.
    let customer_exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM customers WHERE id = $1 FOR KEY SHARE")
            .bind(new.customer_id())
            .fetch_optional(&mut *tx)
            .await?;
    if customer_exists.is_none() {
        return Err(CoreError::NotFound {
            entity: "customer",
            id: new.customer_id().to_string(),
        });
    }
    let ids = new.product_ids();
    let found: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM products WHERE id = ANY($1) FOR KEY SHARE")
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
    if let Some(missing) = first_missing(ids, &found) {
        return Err(CoreError::NotFound {
            entity: "product",
            id: missing.to_string(),
        });
    }
    let row = sqlx::query(include_str!("postgres/insert_order.sql"))
        .bind(new.customer_id())
        .bind(order_date)
        .bind(ids)
        .fetch_one(&mut *tx)
        .await?;
    let created = order(&row)?;
    sqlx::query(
        "INSERT INTO order_products (order_id, product_id) SELECT $1, unnest($2::BIGINT[])",
    )
    .bind(created.id)
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(created)
}

pub(crate) async fn orders_by_ids(pool: &PgPool, ids: &[OrderId]) -> Result<Vec<Order>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT id, customer_id, total_amount, order_date FROM orders WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows(&found, order)
}

pub(crate) async fn list_orders(
    pool: &PgPool,
    filter: &OrderFilter,
    sort: &[Sort<OrderField>],
    page: PageRequest,
) -> Result<Vec<Order>> {
    let mut qb = QueryBuilder::new(ORDER_COLUMNS);
    order_where(&mut qb, filter);
    push_order_by(&mut qb, sort, order_column, "o.id");
    push_page(&mut qb, page);
    let found = qb.build().fetch_all(pool).await?;
    rows(&found, order)
}

pub(crate) async fn count_orders(pool: &PgPool, filter: &OrderFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM orders o");
    order_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn order_products(
    pool: &PgPool,
    order_ids: &[OrderId],
) -> Result<Vec<(OrderId, Product)>> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT op.order_id, p.id, p.name, p.price, p.stock \
         FROM order_products op JOIN products p ON p.id = op.product_id \
         WHERE op.order_id = ANY($1) \
         ORDER BY op.order_id, p.id",
    )
    .bind(order_ids)
    .fetch_all(pool)
    .await?;
    found
        .iter()
        .map(|row| Ok((row.try_get("order_id")?, product(row)?)))
        .collect()
}

pub(crate) async fn delete_inactive_customers(
    pool: &PgPool,
    as_of: DateTime<Utc>,
    dry_run: bool,
) -> Result<u64> {
    let cutoff = as_of - INACTIVITY;
    if dry_run {
        let count: i64 = sqlx::query_scalar(include_str!("postgres/count_inactive.sql"))
            .bind(cutoff)
            .fetch_one(pool)
            .await?;
        return Ok(u64::try_from(count).unwrap_or(0));
    }
    // One transaction; the statements of the file run in turn, and the count is that of the
    // customers' DELETE.
    let mut tx = pool.begin().await?;
    let mut deleted = 0;
    for statement in include_str!("postgres/delete_inactive.sql").split_terminator(";\n") {
        let query = sqlx::query(statement);
        let query = if uses_parameter(statement, "$1") {
            query.bind(cutoff)
        } else {
            query
        };
        let done = query.execute(&mut *tx).await?;
        if deletes_customers(statement) {
            deleted = done.rows_affected();
        }
    }
    tx.commit().await?;
    Ok(deleted)
}

pub(crate) async fn orders_between(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<OrderReminder>> {
    let found = sqlx::query(include_str!("postgres/orders_between.sql"))
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    found
        .iter()
        .map(|row| {
            Ok(OrderReminder {
                order_id: row.try_get("id")?,
                customer_email: row.try_get("email")?,
                order_date: row.try_get("order_date")?,
            })
        })
        .collect()
}

pub(crate) async fn restock_low(
    pool: &PgPool,
    threshold: i32,
    amount: i32,
) -> Result<Vec<Product>> {
    // Under READ COMMITTED a concurrent UPDATE waits for the row lock and then re-checks the
    // WHERE clause on the row's newest version, so no increment is lost.
    let found = sqlx::query(include_str!("postgres/restock_low.sql"))
        .bind(amount)
        .bind(threshold)
        .fetch_all(pool)
        .await?;
    let mut updated = rows(&found, product)?;
    updated.sort_by_key(|p| p.id);
    Ok(updated)
}

pub(crate) async fn totals(pool: &PgPool) -> Result<Totals> {
    let row = sqlx::query(include_str!("postgres/totals.sql"))
        .fetch_one(pool)
        .await?;
    Ok(Totals {
        customers: row.try_get("customers")?,
        orders: row.try_get("orders")?,
        revenue: money(row.try_get("revenue")?),
    })
}
