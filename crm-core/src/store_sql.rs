//! [`crate::CrmStore`] on SQL: one Rust body for both backends, written once in
//! [`crm_store_on_sql!`] and compiled for each in its module ([`sqlite`], [`postgres`]), which
//! says only how its dialect differs: how an instant, an amount of money and a list of ids are
//! stored and bound, its column names, case-insensitive matching, and how a writing transaction
//! starts. Each statement is one `.sql` file per backend, `src/{sqlite,postgres}/NAME.sql`,
//! picked by `statement!("NAME")`.
//!
//! A new query: write `src/sqlite/NAME.sql` and `src/postgres/NAME.sql` (same parameters in the
//! same order), and one function in `crm_store_on_sql!` that runs `statement!("NAME")`. A filter
//! or sort key is built with `QueryBuilder` in the body, naming columns through `col!`.

/// The storage operations, for the backend whose dialect ([`crate::dialect`]) is in scope, with
/// the macros `col!`, `collate!` and `statement!`.
macro_rules! crm_store_on_sql {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::{QueryBuilder, Row as _};

        use crate::domain::{Customer, NewCustomer, NewOrder, NewProduct, Order, OrderId, Product};
        use crate::error::{CoreError, Result};
        use crate::paging::{SortField, SortValue};
        use crate::sql::{
            INACTIVITY, customer_insert_error, deletes_customers, first_missing, page_bound,
            prefix_pattern, push_after, push_order_by, uses_parameter,
        };
        use crate::store::{
            CustomerField, CustomerFilter, OrderField, OrderFilter, PageRequest, ProductField,
            ProductFilter, Restock, Sort, Totals,
        };

        const CUSTOMER_COLUMNS: &str = concat!(
            "SELECT id, name, email, phone, ",
            col!(created_at),
            " FROM customers c"
        );
        const PRODUCT_COLUMNS: &str =
            concat!("SELECT id, name, ", col!(price), ", stock FROM products p");
        const ORDER_COLUMNS: &str = concat!(
            "SELECT id, customer_id, ",
            col!(total_amount),
            ", ",
            col!(order_date),
            " FROM orders o"
        );

        fn customer(row: &Row) -> Result<Customer> {
            Ok(Customer {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                email: row.try_get("email")?,
                phone: row.try_get("phone")?,
                created_at: read_at(row, col!(created_at))?,
            })
        }

        fn product(row: &Row) -> Result<Product> {
            Ok(Product {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                price: read_cash(row, col!(price))?,
                stock: row.try_get("stock")?,
            })
        }

        fn order(row: &Row) -> Result<Order> {
            Ok(Order {
                id: row.try_get("id")?,
                customer_id: row.try_get("customer_id")?,
                total_amount: read_cash(row, col!(total_amount))?,
                order_date: read_at(row, col!(order_date))?,
            })
        }

        fn rows<T>(rows: &[Row], map: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
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
            fn next<'a>(&mut self, qb: &'a mut QueryBuilder<Db>) -> &'a mut QueryBuilder<Db> {
                qb.push(if self.started { " AND " } else { " WHERE " });
                self.started = true;
                qb
            }
            /// `column >= at_least` and `column <= at_most`, each where given (bound as
            /// stored: see the callers' conversions).
            fn range<T>(
                &mut self,
                qb: &mut QueryBuilder<Db>,
                column: &str,
                at_least: Option<T>,
                at_most: Option<T>,
            ) where
                T: for<'t> sqlx::Encode<'t, Db> + sqlx::Type<Db>,
            {
                if let Some(bound) = at_least {
                    self.next(qb).push(column).push(" >= ").push_bind(bound);
                }
                if let Some(bound) = at_most {
                    self.next(qb).push(column).push(" <= ").push_bind(bound);
                }
            }
        }

        fn customer_where(qb: &mut QueryBuilder<Db>, f: &CustomerFilter, mut w: Where) -> Where {
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
            let created_at = concat!("c.", col!(created_at));
            w.range(
                qb,
                created_at,
                f.created_at_gte.map(at),
                f.created_at_lte.map(at),
            );
            w
        }

        fn product_where(qb: &mut QueryBuilder<Db>, f: &ProductFilter, mut w: Where) -> Where {
            if let Some(text) = &f.name_icontains {
                push_icontains(w.next(qb), "p.name", text);
            }
            let price = concat!("p.", col!(price));
            w.range(
                qb,
                price,
                f.price_gte.map(cash_ceil),
                f.price_lte.map(cash_floor),
            );
            w.range(qb, "p.stock", f.stock_gte, f.stock_lte);
            if let Some(stock) = f.stock_lt {
                w.next(qb).push("p.stock < ").push_bind(stock);
            }
            w
        }

        fn order_where(qb: &mut QueryBuilder<Db>, f: &OrderFilter, mut w: Where) -> Where {
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
                    "EXISTS (SELECT 1 FROM order_products op JOIN products p ON p.id = \
                     op.product_id WHERE op.order_id = o.id AND ",
                );
                push_icontains(qb, "p.name", text);
                qb.push(")");
            }
            let order_date = concat!("o.", col!(order_date));
            w.range(
                qb,
                order_date,
                f.order_date_gte.map(at),
                f.order_date_lte.map(at),
            );
            let total = concat!("o.", col!(total_amount));
            let (at_least, at_most) = (f.total_amount_gte, f.total_amount_lte);
            w.range(qb, total, at_least.map(cash_ceil), at_most.map(cash_floor));
            w
        }

        /// One bound value of a keyset, as this backend stores and compares it: text lowered
        /// and collated as the sort does.
        fn push_value(qb: &mut QueryBuilder<Db>, value: &SortValue) {
            match value {
                SortValue::Int(n) => qb.push_bind(*n),
                SortValue::Text(text) => qb
                    .push("lower(")
                    .push_bind(text.clone())
                    .push(concat!(")", collate!())),
                SortValue::Money(money) => qb.push_bind(cash(*money)),
                SortValue::Time(instant) => qb.push_bind(at(*instant)),
            };
        }

        fn customer_column(field: CustomerField) -> &'static str {
            match field {
                CustomerField::Id => "c.id",
                CustomerField::Name => concat!("lower(c.name)", collate!()),
                CustomerField::Email => concat!("lower(c.email)", collate!()),
                CustomerField::CreatedAt => concat!("c.", col!(created_at)),
            }
        }

        fn product_column(field: ProductField) -> &'static str {
            match field {
                ProductField::Id => "p.id",
                ProductField::Name => concat!("lower(p.name)", collate!()),
                ProductField::Price => concat!("p.", col!(price)),
                ProductField::Stock => "p.stock",
            }
        }

        fn order_column(field: OrderField) -> &'static str {
            match field {
                OrderField::Id => "o.id",
                OrderField::OrderDate => concat!("o.", col!(order_date)),
                OrderField::TotalAmount => concat!("o.", col!(total_amount)),
            }
        }

        /// One kind of row the API lists: how to select, filter, sort, count and read it.
        pub(crate) struct Listing<T: 'static, F: 'static, Filter: 'static> {
            select: &'static str,
            count: &'static str,
            /// Appends the filter's conditions after those `Where` has started.
            filter: fn(&mut QueryBuilder<Db>, &Filter, Where) -> Where,
            column: fn(F) -> &'static str,
            id: &'static str,
            read: fn(&Row) -> Result<T>,
        }

        pub(crate) const CUSTOMERS: Listing<Customer, CustomerField, CustomerFilter> = Listing {
            select: CUSTOMER_COLUMNS,
            count: "SELECT COUNT(*) FROM customers c",
            filter: customer_where,
            column: customer_column,
            id: "c.id",
            read: customer,
        };

        pub(crate) const PRODUCTS: Listing<Product, ProductField, ProductFilter> = Listing {
            select: PRODUCT_COLUMNS,
            count: "SELECT COUNT(*) FROM products p",
            filter: product_where,
            column: product_column,
            id: "p.id",
            read: product,
        };

        pub(crate) const ORDERS: Listing<Order, OrderField, OrderFilter> = Listing {
            select: ORDER_COLUMNS,
            count: "SELECT COUNT(*) FROM orders o",
            filter: order_where,
            column: order_column,
            id: "o.id",
            read: order,
        };

        impl<T, F: SortField, Filter> Listing<T, F, Filter> {
            /// A filtered, sorted page.
            pub(crate) async fn list(
                &self,
                pool: &Pool,
                filter: &Filter,
                sort: &[Sort<F>],
                page: PageRequest,
            ) -> Result<Vec<T>> {
                let mut qb = QueryBuilder::new(self.select);
                let mut w = Where::new();
                // The position comes before the filter: SQLite seeks with the first lower bound
                // it finds on the sort's column, and a filter's bound on the same column (the
                // week's start, for the reminders' pages) would make every page scan from the
                // filter's start, the last page of a week costing 10x the first at a million
                // orders. PostgreSQL takes the tighter bound either way.
                if let Some(after) = &page.after {
                    push_after(
                        w.next(&mut qb),
                        sort,
                        after,
                        self.column,
                        self.id,
                        push_value,
                    )?;
                }
                let _ = (self.filter)(&mut qb, filter, w);
                push_order_by(&mut qb, sort, self.column, self.id);
                qb.push(" LIMIT ").push_bind(page_bound(page.limit));
                let found = qb.build().fetch_all(pool).await?;
                rows(&found, self.read)
            }

            /// How many rows match the filter.
            pub(crate) async fn count(&self, pool: &Pool, filter: &Filter) -> Result<i64> {
                let mut qb = QueryBuilder::new(self.count);
                let _ = (self.filter)(&mut qb, filter, Where::new());
                Ok(qb.build_query_scalar().fetch_one(pool).await?)
            }
        }

        pub(crate) async fn create_customer(
            pool: &Pool,
            new: &NewCustomer,
            now: DateTime<Utc>,
        ) -> Result<Customer> {
            let row = sqlx::query(statement!("insert_customer"))
                .bind(new.name())
                .bind(new.email())
                .bind(new.phone())
                .bind(at(now))
                .fetch_one(pool)
                .await
                .map_err(|e| customer_insert_error(e, new))?;
            customer(&row)
        }

        pub(crate) async fn create_product(pool: &Pool, new: &NewProduct) -> Result<Product> {
            let row = sqlx::query(statement!("insert_product"))
                .bind(new.name())
                .bind(cash(new.price()))
                .bind(new.stock())
                .fetch_one(pool)
                .await?;
            product(&row)
        }

        pub(crate) async fn create_order(
            pool: &Pool,
            new: &NewOrder,
            order_date: DateTime<Utc>,
        ) -> Result<Order> {
            let mut tx = begin_write(pool).await?;
            let customer_exists: Option<i64> = sqlx::query_scalar(statement!("order_customer"))
                .bind(new.customer_id())
                .fetch_optional(&mut *tx)
                .await?;
            if customer_exists.is_none() {
                return Err(CoreError::NotFound {
                    entity: "customer",
                    id: new.customer_id().to_string(),
                });
            }
            let products = ids(new.product_ids());
            let found: Vec<i64> = sqlx::query_scalar(statement!("order_products_found"))
                .bind(&products)
                .fetch_all(&mut *tx)
                .await?;
            if let Some(missing) = first_missing(new.product_ids(), &found) {
                return Err(CoreError::NotFound {
                    entity: "product",
                    id: missing.to_string(),
                });
            }
            let row = sqlx::query(statement!("insert_order"))
                .bind(new.customer_id())
                .bind(at(order_date))
                .bind(&products)
                .fetch_one(&mut *tx)
                .await?;
            let created = order(&row)?;
            sqlx::query(statement!("insert_order_products"))
                .bind(created.id)
                .bind(&products)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(created)
        }

        pub(crate) async fn delete_inactive_customers(
            pool: &Pool,
            as_of: DateTime<Utc>,
            dry_run: bool,
        ) -> Result<u64> {
            let cutoff = at(as_of - INACTIVITY);
            if dry_run {
                let count: i64 = sqlx::query_scalar(statement!("count_inactive"))
                    .bind(cutoff)
                    .fetch_one(pool)
                    .await?;
                return Ok(u64::try_from(count).unwrap_or(0));
            }
            // One transaction; the statements of the file run in turn, and the count is that
            // of the customers' DELETE.
            let mut tx = begin_write(pool).await?;
            let mut deleted = 0;
            for statement in statement!("delete_inactive").split_terminator(";\n") {
                let query = sqlx::query(statement);
                let query = if uses_parameter(statement, FIRST_PARAM) {
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

        /// See the statement for how each backend keeps concurrent restocks from losing an
        /// increment.
        pub(crate) async fn restock_low(
            pool: &Pool,
            threshold: i32,
            amount: i32,
        ) -> Result<Vec<Product>> {
            let found = sqlx::query(statement!("restock_low"))
                .bind(amount)
                .bind(threshold)
                .fetch_all(pool)
                .await?;
            let mut updated = rows(&found, product)?;
            updated.sort_by_key(|p| p.id);
            Ok(updated)
        }

        /// The restock and its idempotency key in one writing transaction. The key's INSERT
        /// comes first: a concurrent call with the same key waits for this one (SQLite's write
        /// lock; PostgreSQL's unique index) and then finds the key taken.
        pub(crate) async fn restock_low_once(
            pool: &Pool,
            key: &str,
            threshold: i32,
            amount: i32,
            now: DateTime<Utc>,
        ) -> Result<Restock> {
            let mut tx = begin_write(pool).await?;
            let claimed = sqlx::query(statement!("claim_restock_key"))
                .bind(key)
                .bind(at(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                let found = sqlx::query(statement!("replayed_restock"))
                    .bind(key)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(Restock::new(rows(&found, product)?, true));
            }
            let found = sqlx::query(statement!("restock_low"))
                .bind(amount)
                .bind(threshold)
                .fetch_all(&mut *tx)
                .await?;
            let mut updated = rows(&found, product)?;
            updated.sort_by_key(|p| p.id);
            let restocked: Vec<i64> = updated.iter().map(|p| p.id).collect();
            sqlx::query(statement!("record_restock_key"))
                .bind(key)
                .bind(ids(&restocked))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Restock::new(updated, false))
        }

        /// The totals `totals.sql` answered.
        fn totals_from(row: &Row) -> Result<Totals> {
            Ok(Totals {
                customers: row.try_get("customers")?,
                orders: row.try_get("orders")?,
                revenue: read_cash(row, col!(revenue))?,
            })
        }
    };
}

/// SQLite (see [`crate::dialect::sqlite`]).
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use crate::dialect::sqlite::*;
    use crate::domain::CustomerId;
    use crate::sql::{from_cents, from_micros};
    use crate::store::OrderRelations;

    macro_rules! col {
        (created_at) => {
            "created_at_us"
        };
        (order_date) => {
            "order_date_us"
        };
        (price) => {
            "price_cents"
        };
        (total_amount) => {
            "total_amount_cents"
        };
        (revenue) => {
            "revenue_cents"
        };
    }
    /// SQLite compares text by code point already.
    macro_rules! collate {
        () => {
            ""
        };
    }

    crm_store_on_sql!();

    /// Readiness: the cheapest statement on a connection of the pool.
    pub(crate) async fn ping(pool: &Pool) -> Result<()> {
        sqlx::query(statement!("ping")).execute(pool).await?;
        Ok(())
    }

    /// Migration 0011's row of totals, which triggers keep.
    pub(crate) async fn totals(pool: &Pool) -> Result<Totals> {
        totals_from(&sqlx::query(statement!("totals")).fetch_one(pool).await?)
    }

    /// The rows of a statement that returns them as ONE JSON array (see `orders_between.sql`):
    /// handing rows over one by one from SQLite's worker thread, each value copied, cost more
    /// than the query; one text crosses instead. `list` is bound as the statement's JSON ids.
    async fn json_rows<R: serde::de::DeserializeOwned>(
        pool: &Pool,
        statement: &'static str,
        list: &[i64],
    ) -> Result<Vec<R>> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let json: String = sqlx::query_scalar(statement)
            .bind(ids(list))
            .fetch_one(pool)
            .await?;
        from_json(&json)
    }

    /// The rows of one JSON array a statement returned.
    fn from_json<R: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<R>> {
        serde_json::from_str(json).map_err(|e| CoreError::from(sqlx::Error::Decode(Box::new(e))))
    }

    /// A product as SQLite's JSON statements list its columns: `[id, name, price_cents, stock]`.
    fn product_from((id, name, cents, stock): (i64, String, i64, i32)) -> Product {
        Product {
            id,
            name,
            price: from_cents(cents),
            stock,
        }
    }

    /// A customer as SQLite's JSON statements list its columns: `[id, name, email, phone,
    /// created_at_us]`.
    type CustomerColumns = (i64, String, String, Option<String>, i64);

    fn customers_from(found: Vec<CustomerColumns>) -> Result<Vec<Customer>> {
        found
            .into_iter()
            .map(|(id, name, email, phone, created_at)| {
                let created_at = from_micros(created_at)?;
                Ok(Customer {
                    id,
                    name,
                    email,
                    phone,
                    created_at,
                })
            })
            .collect()
    }

    /// An order's product as SQLite's JSON statements list it: `[order_id, product_id, name,
    /// price_cents, stock]`.
    type OrderProductColumns = (i64, i64, String, i64, i32);

    /// The pairs by order, then product id.
    fn order_products_from(mut found: Vec<OrderProductColumns>) -> Vec<(OrderId, Product)> {
        found.sort_unstable_by_key(|(order, product, ..)| (*order, *product));
        found
            .into_iter()
            .map(|(order, id, name, cents, stock)| (order, product_from((id, name, cents, stock))))
            .collect()
    }

    /// The customers with these ids that exist, in no particular order.
    pub(crate) async fn customers_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Customer>> {
        customers_from(json_rows(pool, statement!("customers_by_ids"), list).await?)
    }

    /// The products with these ids that exist, in no particular order.
    pub(crate) async fn products_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Product>> {
        let found = json_rows(pool, statement!("products_by_ids"), list).await?;
        Ok(found.into_iter().map(product_from).collect())
    }

    /// The orders with these ids that exist, in no particular order.
    pub(crate) async fn orders_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Order>> {
        let found: Vec<(i64, i64, i64, i64)> =
            json_rows(pool, statement!("orders_by_ids"), list).await?;
        found
            .into_iter()
            .map(|(id, customer_id, cents, date)| {
                let (total_amount, order_date) = (from_cents(cents), from_micros(date)?);
                Ok(Order {
                    id,
                    customer_id,
                    total_amount,
                    order_date,
                })
            })
            .collect()
    }

    /// The products of these orders, by order then product id.
    pub(crate) async fn order_products(
        pool: &Pool,
        order_ids: &[OrderId],
    ) -> Result<Vec<(OrderId, Product)>> {
        let found = json_rows(pool, statement!("order_products"), order_ids).await?;
        Ok(order_products_from(found))
    }

    /// Both in one statement: a page's customers and products cross from SQLite's worker
    /// thread together. An empty list binds `[]`, which SQLite answers with no rows at once.
    pub(crate) async fn order_relations(
        pool: &Pool,
        customer_ids: &[CustomerId],
        order_ids: &[OrderId],
    ) -> Result<OrderRelations> {
        if customer_ids.is_empty() && order_ids.is_empty() {
            return Ok(OrderRelations::default());
        }
        let (customers, products): (String, String) = sqlx::query_as(statement!("order_relations"))
            .bind(ids(customer_ids))
            .bind(ids(order_ids))
            .fetch_one(pool)
            .await?;
        Ok(OrderRelations {
            customers: customers_from(from_json(&customers)?)?,
            products: order_products_from(from_json(&products)?),
        })
    }

    /// Orders with `from <= order_date <= to` and their customer's e-mail, oldest first. The
    /// rows come as one JSON array: handing them over one by one from SQLite's worker thread
    /// cost twice the query itself.
    pub(crate) async fn orders_between(
        pool: &Pool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::store::OrderReminder>> {
        let json: String = sqlx::query_scalar(statement!("orders_between"))
            .bind(at(from))
            .bind(at(to))
            .fetch_one(pool)
            .await?;
        let mut found: Vec<(i64, String, i64)> = serde_json::from_str(&json)
            .map_err(|e| CoreError::from(sqlx::Error::Decode(Box::new(e))))?;
        found.sort_unstable_by_key(|(id, _, date)| (*date, *id));
        found
            .into_iter()
            .map(|(order_id, customer_email, date)| {
                Ok(crate::store::OrderReminder {
                    order_id,
                    customer_email,
                    order_date: from_micros(date)?,
                })
            })
            .collect()
    }

    /// One page of [`orders_between`]: at most `limit` orders after `after` in the order
    /// (order date, id), as one JSON array like it.
    pub(crate) async fn orders_between_page(
        pool: &Pool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&crate::store::OrderReminder>,
        limit: u64,
    ) -> Result<Vec<crate::store::OrderReminder>> {
        let mut conn = pool.acquire().await?;
        orders_between_page_on(&mut conn, from, to, after, limit).await
    }

    /// [`orders_between`] in pages of `limit`, every page read on ONE pooled connection: each
    /// connection has its own page cache (32 MiB), and pages taken by whichever connection is
    /// idle filled several of them (a job reading a week of a million orders in process grew
    /// to 108 MiB; on one connection it stays within one cache).
    pub(crate) fn orders_between_pages<'p>(
        pool: &'p Pool,
        first: crate::store::ReminderPage<'_>,
    ) -> crate::store::ReminderPages<'p> {
        use futures::StreamExt as _;
        type State = Option<(
            Option<sqlx::pool::PoolConnection<Db>>,
            Option<crate::store::OrderReminder>,
        )>;
        let (from, to, limit) = (first.from, first.to, first.limit.max(1));
        let start: State = Some((None, first.after.cloned()));
        futures::stream::try_unfold(start, move |state| async move {
            let Some((conn, after)) = state else {
                return Ok::<_, CoreError>(None);
            };
            let mut conn = match conn {
                Some(conn) => conn,
                None => pool.acquire().await?,
            };
            let rows = orders_between_page_on(&mut conn, from, to, after.as_ref(), limit).await?;
            let next = match rows.last() {
                Some(last) if rows.len() as u64 >= limit => Some((Some(conn), Some(last.clone()))),
                _ => None,
            };
            Ok(Some((rows, next)))
        })
        .boxed()
    }

    async fn orders_between_page_on(
        conn: &mut sqlx::SqliteConnection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&crate::store::OrderReminder>,
        limit: u64,
    ) -> Result<Vec<crate::store::OrderReminder>> {
        // One lower bound, the later of the window's start and the position (SQLite seeks with
        // the first lower bound it finds, so two would make each page scan from the start).
        let (after_date, after_id) = after.map_or((from, i64::MIN), |r| (r.order_date, r.order_id));
        let after_date = after_date.max(from);
        let json: String = sqlx::query_scalar(statement!("orders_between_page"))
            .bind(at(after_date))
            .bind(at(to))
            .bind(after_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_one(&mut *conn)
            .await?;
        let mut found: Vec<(i64, String, i64)> = serde_json::from_str(&json)
            .map_err(|e| CoreError::from(sqlx::Error::Decode(Box::new(e))))?;
        found.sort_unstable_by_key(|(id, _, date)| (*date, *id));
        found
            .into_iter()
            .map(|(order_id, customer_email, date)| {
                Ok(crate::store::OrderReminder {
                    order_id,
                    customer_email,
                    order_date: from_micros(date)?,
                })
            })
            .collect()
    }
}

/// PostgreSQL (see [`crate::dialect::postgres`]).
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use crate::dialect::postgres::*;
    use crate::domain::CustomerId;
    use crate::store::OrderRelations;

    /// PostgreSQL's columns have the names of the fields they hold.
    macro_rules! col {
        ($name:ident) => {
            stringify!($name)
        };
    }
    macro_rules! collate {
        () => {
            " COLLATE \"C\""
        };
    }

    crm_store_on_sql!();

    /// Readiness: the cheapest statement, on a connection that works now. The pool lends a
    /// connection used within the last second without pinging it first (`database.rs`), so one
    /// the server ended meanwhile (a restart, `DROP DATABASE … WITH (FORCE)`) fails its first
    /// statement. Readiness asks about the database, not about that connection: the ended one
    /// is closed and another tried, at most once per connection the pool holds.
    pub(crate) async fn ping(pool: &Pool) -> Result<()> {
        let mut others = pool.size();
        loop {
            let mut conn = pool.acquire().await?;
            match sqlx::query(statement!("ping")).execute(&mut *conn).await {
                Ok(_) => return Ok(()),
                Err(e) if others > 0 && crate::error::sqlx_unavailable(&e) => {
                    crate::error::note_unavailable();
                    conn.close_on_drop();
                    others -= 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Past this many rows of changes, the totals' reader folds them into one (migration 0013):
    /// a fold is a write, rare enough here that the read stays a read.
    const FOLD_TOTALS_PAST: i64 = 64;

    /// The sum of migration 0013's rows of changes; folds them when they are many.
    pub(crate) async fn totals(pool: &Pool) -> Result<Totals> {
        let row = sqlx::query(statement!("totals")).fetch_one(pool).await?;
        let deltas: i64 = row.try_get("deltas")?;
        if deltas > FOLD_TOTALS_PAST
            && let Err(e) = sqlx::query(statement!("fold_totals")).execute(pool).await
        {
            // The totals read are right; the next read tries again.
            tracing::warn!(error = %e, "Could not fold the totals' rows of changes");
        }
        totals_from(&row)
    }

    /// The rows a statement returns for the ids `list` (bound as one array), read by `read`.
    async fn id_rows<T>(
        pool: &Pool,
        statement: &'static str,
        list: &[i64],
        read: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query(statement)
            .bind(ids(list))
            .fetch_all(pool)
            .await?;
        rows(&found, read)
    }

    /// The customers with these ids that exist, in no particular order.
    pub(crate) async fn customers_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Customer>> {
        id_rows(pool, statement!("customers_by_ids"), list, customer).await
    }

    /// The products with these ids that exist, in no particular order.
    pub(crate) async fn products_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Product>> {
        id_rows(pool, statement!("products_by_ids"), list, product).await
    }

    /// The orders with these ids that exist, in no particular order.
    pub(crate) async fn orders_by_ids(pool: &Pool, list: &[i64]) -> Result<Vec<Order>> {
        id_rows(pool, statement!("orders_by_ids"), list, order).await
    }

    /// The products of these orders, by order then product id.
    pub(crate) async fn order_products(
        pool: &Pool,
        order_ids: &[OrderId],
    ) -> Result<Vec<(OrderId, Product)>> {
        let read = |row: &Row| Ok((row.try_get("order_id")?, product(row)?));
        id_rows(pool, statement!("order_products"), order_ids, read).await
    }

    /// The two statements one after the other: PostgreSQL reads rows on the caller's task,
    /// with no worker thread to hand them over from, so joining them would gain little.
    pub(crate) async fn order_relations(
        pool: &Pool,
        customer_ids: &[CustomerId],
        order_ids: &[OrderId],
    ) -> Result<OrderRelations> {
        Ok(OrderRelations {
            customers: customers_by_ids(pool, customer_ids).await?,
            products: order_products(pool, order_ids).await?,
        })
    }

    /// Orders with `from <= order_date <= to` and their customer's e-mail, oldest first.
    pub(crate) async fn orders_between(
        pool: &Pool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::store::OrderReminder>> {
        let found = sqlx::query(statement!("orders_between"))
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(crate::store::OrderReminder {
                    order_id: row.try_get("id")?,
                    customer_email: row.try_get("email")?,
                    order_date: row.try_get("order_date")?,
                })
            })
            .collect()
    }

    /// One page of [`orders_between`]: at most `limit` orders after `after` in the order
    /// (order date, id).
    pub(crate) async fn orders_between_page(
        pool: &Pool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&crate::store::OrderReminder>,
        limit: u64,
    ) -> Result<Vec<crate::store::OrderReminder>> {
        // One lower bound, the later of the window's start and the position (SQLite seeks with
        // the first lower bound it finds, so two would make each page scan from the start).
        let (after_date, after_id) = after.map_or((from, i64::MIN), |r| (r.order_date, r.order_id));
        let after_date = after_date.max(from);
        let found = sqlx::query(statement!("orders_between_page"))
            .bind(after_date)
            .bind(to)
            .bind(after_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(crate::store::OrderReminder {
                    order_id: row.try_get("id")?,
                    customer_email: row.try_get("email")?,
                    order_date: row.try_get("order_date")?,
                })
            })
            .collect()
    }
}
