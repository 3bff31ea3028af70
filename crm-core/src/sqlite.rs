//! [`crate::CrmStore`] on SQLite. Money is INTEGER cents and instants INTEGER microseconds
//! since the epoch (UTC), so sums are exact and comparisons are on numbers; lists of ids are
//! passed as one JSON array expanded by `json_each`.

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::domain::{
    Customer, CustomerId, NewCustomer, NewOrder, NewProduct, Order, OrderId, Product, ProductId,
};
use crate::error::{CoreError, Result};
use crate::sql::{
    INACTIVITY, cents_ceil, cents_floor, contains_pattern, customer_insert_error,
    deletes_customers, first_missing, from_cents, from_micros, json_ids, page_bound,
    prefix_pattern, to_cents, to_micros, uses_parameter,
};
use crate::store::{
    CustomerField, CustomerFilter, OrderField, OrderFilter, OrderReminder, PageRequest,
    ProductField, ProductFilter, Sort, Totals,
};

const CUSTOMER_COLUMNS: &str = "SELECT id, name, email, phone, created_at_us FROM customers c";
const PRODUCT_COLUMNS: &str = "SELECT id, name, price_cents, stock FROM products p";
const ORDER_COLUMNS: &str =
    "SELECT id, customer_id, total_amount_cents, order_date_us FROM orders o";

fn customer(row: &SqliteRow) -> Result<Customer> {
    Ok(Customer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        created_at: from_micros(row.try_get("created_at_us")?)?,
    })
}

fn product(row: &SqliteRow) -> Result<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price: from_cents(row.try_get("price_cents")?),
        stock: row.try_get("stock")?,
    })
}

fn order(row: &SqliteRow) -> Result<Order> {
    Ok(Order {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        total_amount: from_cents(row.try_get("total_amount_cents")?),
        order_date: from_micros(row.try_get("order_date_us")?)?,
    })
}

fn rows<T>(rows: &[SqliteRow], map: fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
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
    fn next<'a>(&mut self, qb: &'a mut QueryBuilder<Sqlite>) -> &'a mut QueryBuilder<Sqlite> {
        qb.push(if self.started { " AND " } else { " WHERE " });
        self.started = true;
        qb
    }
}

fn push_icontains(qb: &mut QueryBuilder<Sqlite>, column: &str, text: &str) {
    // SQLite's LIKE ignores the case of ASCII letters; lower() on both sides says so plainly.
    qb.push(format_args!("lower({column}) LIKE lower("))
        .push_bind(contains_pattern(text))
        .push(") ESCAPE '\\'");
}

fn customer_where(qb: &mut QueryBuilder<Sqlite>, f: &CustomerFilter) {
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
        w.next(qb)
            .push("c.created_at_us >= ")
            .push_bind(to_micros(at));
    }
    if let Some(at) = f.created_at_lte {
        w.next(qb)
            .push("c.created_at_us <= ")
            .push_bind(to_micros(at));
    }
}

fn product_where(qb: &mut QueryBuilder<Sqlite>, f: &ProductFilter) {
    let mut w = Where::new();
    if let Some(text) = &f.name_icontains {
        push_icontains(w.next(qb), "p.name", text);
    }
    if let Some(price) = f.price_gte {
        w.next(qb)
            .push("p.price_cents >= ")
            .push_bind(cents_ceil(price));
    }
    if let Some(price) = f.price_lte {
        w.next(qb)
            .push("p.price_cents <= ")
            .push_bind(cents_floor(price));
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

fn order_where(qb: &mut QueryBuilder<Sqlite>, f: &OrderFilter) {
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
        w.next(qb)
            .push("o.order_date_us >= ")
            .push_bind(to_micros(at));
    }
    if let Some(at) = f.order_date_lte {
        w.next(qb)
            .push("o.order_date_us <= ")
            .push_bind(to_micros(at));
    }
    if let Some(total) = f.total_amount_gte {
        w.next(qb)
            .push("o.total_amount_cents >= ")
            .push_bind(cents_ceil(total));
    }
    if let Some(total) = f.total_amount_lte {
        w.next(qb)
            .push("o.total_amount_cents <= ")
            .push_bind(cents_floor(total));
    }
}

/// `ORDER BY` the given keys, then the id, so pages are stable. Text sorts ignore letter case.
fn push_order_by<F: Copy>(
    qb: &mut QueryBuilder<Sqlite>,
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

fn push_page(qb: &mut QueryBuilder<Sqlite>, page: PageRequest) {
    qb.push(" LIMIT ")
        .push_bind(page_bound(page.limit))
        .push(" OFFSET ")
        .push_bind(page_bound(page.offset));
}

fn customer_column(field: CustomerField) -> &'static str {
    match field {
        CustomerField::Id => "c.id",
        CustomerField::Name => "lower(c.name)",
        CustomerField::Email => "lower(c.email)",
        CustomerField::CreatedAt => "c.created_at_us",
    }
}

fn product_column(field: ProductField) -> &'static str {
    match field {
        ProductField::Id => "p.id",
        ProductField::Name => "lower(p.name)",
        ProductField::Price => "p.price_cents",
        ProductField::Stock => "p.stock",
    }
}

fn order_column(field: OrderField) -> &'static str {
    match field {
        OrderField::Id => "o.id",
        OrderField::OrderDate => "o.order_date_us",
        OrderField::TotalAmount => "o.total_amount_cents",
    }
}

pub(crate) async fn create_customer(
    pool: &SqlitePool,
    new: &NewCustomer,
    now: DateTime<Utc>,
) -> Result<Customer> {
    let row = sqlx::query(
        "INSERT INTO customers (name, email, phone, created_at_us) VALUES (?, ?, ?, ?) \
         RETURNING id, name, email, phone, created_at_us",
    )
    .bind(new.name())
    .bind(new.email())
    .bind(new.phone())
    .bind(to_micros(now))
    .fetch_one(pool)
    .await
    .map_err(|e| customer_insert_error(e, new))?;
    customer(&row)
}

pub(crate) async fn customers_by_ids(
    pool: &SqlitePool,
    ids: &[CustomerId],
) -> Result<Vec<Customer>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT id, name, email, phone, created_at_us FROM customers \
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_ids(ids))
    .fetch_all(pool)
    .await?;
    rows(&found, customer)
}

pub(crate) async fn list_customers(
    pool: &SqlitePool,
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

pub(crate) async fn count_customers(pool: &SqlitePool, filter: &CustomerFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM customers c");
    customer_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn create_product(pool: &SqlitePool, new: &NewProduct) -> Result<Product> {
    let row = sqlx::query(
        "INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?) \
         RETURNING id, name, price_cents, stock",
    )
    .bind(new.name())
    .bind(to_cents(new.price()))
    .bind(new.stock())
    .fetch_one(pool)
    .await?;
    product(&row)
}

pub(crate) async fn products_by_ids(pool: &SqlitePool, ids: &[ProductId]) -> Result<Vec<Product>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT id, name, price_cents, stock FROM products \
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_ids(ids))
    .fetch_all(pool)
    .await?;
    rows(&found, product)
}

pub(crate) async fn list_products(
    pool: &SqlitePool,
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

pub(crate) async fn count_products(pool: &SqlitePool, filter: &ProductFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM products p");
    product_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn create_order(
    pool: &SqlitePool,
    new: &NewOrder,
    order_date: DateTime<Utc>,
) -> Result<Order> {
    // BEGIN IMMEDIATE takes the write lock up front: a concurrent writer waits on the busy
    // timeout instead of failing when a read transaction tries to upgrade.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let customer_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM customers WHERE id = ?")
        .bind(new.customer_id())
        .fetch_optional(&mut *tx)
        .await?;
    if customer_exists.is_none() {
        return Err(CoreError::NotFound {
            entity: "customer",
            id: new.customer_id().to_string(),
        });
    }
    let ids = json_ids(new.product_ids());
    let found: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM products WHERE id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    if let Some(missing) = first_missing(new.product_ids(), &found) {
        return Err(CoreError::NotFound {
            entity: "product",
            id: missing.to_string(),
        });
    }
    let row = sqlx::query(include_str!("sqlite/insert_order.sql"))
        .bind(new.customer_id())
        .bind(to_micros(order_date))
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
    let created = order(&row)?;
    sqlx::query(
        "INSERT INTO order_products (order_id, product_id) \
         SELECT ?, value FROM json_each(?)",
    )
    .bind(created.id)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(created)
}

pub(crate) async fn orders_by_ids(pool: &SqlitePool, ids: &[OrderId]) -> Result<Vec<Order>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT id, customer_id, total_amount_cents, order_date_us FROM orders \
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_ids(ids))
    .fetch_all(pool)
    .await?;
    rows(&found, order)
}

pub(crate) async fn list_orders(
    pool: &SqlitePool,
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

pub(crate) async fn count_orders(pool: &SqlitePool, filter: &OrderFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM orders o");
    order_where(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

pub(crate) async fn order_products(
    pool: &SqlitePool,
    order_ids: &[OrderId],
) -> Result<Vec<(OrderId, Product)>> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query(
        "SELECT op.order_id, p.id, p.name, p.price_cents, p.stock \
         FROM order_products op JOIN products p ON p.id = op.product_id \
         WHERE op.order_id IN (SELECT value FROM json_each(?)) \
         ORDER BY op.order_id, p.id",
    )
    .bind(json_ids(order_ids))
    .fetch_all(pool)
    .await?;
    found
        .iter()
        .map(|row| Ok((row.try_get("order_id")?, product(row)?)))
        .collect()
}

pub(crate) async fn delete_inactive_customers(
    pool: &SqlitePool,
    as_of: DateTime<Utc>,
    dry_run: bool,
) -> Result<u64> {
    let cutoff = to_micros(as_of - INACTIVITY);
    if dry_run {
        let count: i64 = sqlx::query_scalar(include_str!("sqlite/count_inactive.sql"))
            .bind(cutoff)
            .fetch_one(pool)
            .await?;
        return Ok(u64::try_from(count).unwrap_or(0));
    }
    // One transaction, holding the write lock from the start; the statements of the file run
    // in turn, and the count is that of the customers' DELETE.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut deleted = 0;
    for statement in include_str!("sqlite/delete_inactive.sql").split_terminator(";\n") {
        let query = sqlx::query(statement);
        let query = if uses_parameter(statement, "?1") {
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
    pool: &SqlitePool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<OrderReminder>> {
    let json: String = sqlx::query_scalar(include_str!("sqlite/orders_between.sql"))
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_one(pool)
        .await?;
    let mut found: Vec<(i64, String, i64)> = serde_json::from_str(&json)
        .map_err(|e| CoreError::from(sqlx::Error::Decode(Box::new(e))))?;
    found.sort_unstable_by_key(|(id, _, date)| (*date, *id));
    found
        .into_iter()
        .map(|(order_id, customer_email, date)| {
            Ok(OrderReminder {
                order_id,
                customer_email,
                order_date: from_micros(date)?,
            })
        })
        .collect()
}

pub(crate) async fn restock_low(
    pool: &SqlitePool,
    threshold: i32,
    amount: i32,
) -> Result<Vec<Product>> {
    let found = sqlx::query(include_str!("sqlite/restock_low.sql"))
        .bind(amount)
        .bind(threshold)
        .fetch_all(pool)
        .await?;
    let mut updated = rows(&found, product)?;
    updated.sort_by_key(|p| p.id);
    Ok(updated)
}

pub(crate) async fn totals(pool: &SqlitePool) -> Result<Totals> {
    let row = sqlx::query(include_str!("sqlite/totals.sql"))
        .fetch_one(pool)
        .await?;
    Ok(Totals {
        customers: row.try_get("customers")?,
        orders: row.try_get("orders")?,
        revenue: from_cents(row.try_get("revenue_cents")?),
    })
}
