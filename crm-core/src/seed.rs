//! Deterministic demo and benchmark data: the same [`SeedConfig`] on the same database state
//! always writes the same rows, spread over the two years before `now` so that every job has
//! real work.
//!
//! What the data holds, by customer (every tenth is "new", two in ten "dormant"):
//! - active customers (7 in 10), created between two years and 8 days ago, with orders from
//!   their creation up to `now`; one order in 20 is dated within the last 7 days;
//! - dormant customers (2 in 10), created more than 400 days ago, whose orders (if any) are all
//!   older than 365 days: the cleanup deletes them;
//! - new customers (1 in 10), created within the last 30 days, with no orders: the cleanup
//!   keeps them;
//! - one product in five has a stock below 10 (the restock's work); prices run from 0.50 to
//!   2,000.00 and every order's total is the exact sum of its products' prices.
//!
//! Everything is written in ONE transaction, in multi-row batches (SQLite: `INSERT … VALUES`
//! lists; PostgreSQL: `UNNEST` of arrays), so a failed seed writes nothing. Ids are assigned
//! here, after the existing rows, while the transaction holds the tables (SQLite's write lock;
//! PostgreSQL `LOCK TABLE … IN EXCLUSIVE MODE`, then the id sequences are moved past them).

use chrono::{DateTime, TimeDelta, Utc};
#[cfg(feature = "postgres")]
use rust_decimal::Decimal;
#[cfg(feature = "postgres")]
use sqlx::Postgres;
use sqlx::QueryBuilder;
#[cfg(feature = "sqlite")]
use sqlx::Sqlite;

use crate::database::{Backend, Database};
use crate::error::{CoreError, Result};
#[cfg(feature = "postgres")]
use crate::sql::from_cents;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedConfig {
    /// Customers to create.
    pub customers: u64,
    /// Products to create.
    pub products: u64,
    /// Orders to create (each with one to four distinct products).
    pub orders: u64,
    /// The random generator's seed: the same seed gives the same data.
    pub seed: u64,
    /// The instant the data is arranged around ("two years before now" … "now").
    pub now: DateTime<Utc>,
}

impl SeedConfig {
    /// A demo-sized configuration: 1,000 customers, 100 products, 10,000 orders, seed 42.
    pub fn demo(now: DateTime<Utc>) -> Self {
        Self {
            customers: 1_000,
            products: 100,
            orders: 10_000,
            seed: 42,
            now,
        }
    }
}

/// Which table [`seed`] is filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeedStage {
    /// Customers.
    Customers,
    /// Products.
    Products,
    /// Orders and their products.
    Orders,
}

/// Progress of [`seed`], reported after each batch: `done` of `total` rows of `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedProgress {
    /// The table being filled.
    pub stage: SeedStage,
    /// Rows of this stage written so far.
    pub done: u64,
    /// Rows of this stage to write.
    pub total: u64,
}

/// What [`seed`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    /// Customers created.
    pub customers: u64,
    /// Products created.
    pub products: u64,
    /// Orders created.
    pub orders: u64,
    /// Order lines (order, product pairs) created.
    pub order_lines: u64,
}

#[cfg(feature = "sqlite")]
/// Rows per multi-row INSERT on SQLite: the widest table has 5 columns and SQLite allows
/// 32,766 bound values per statement.
const SQLITE_BATCH: usize = 6_000;
#[cfg(feature = "postgres")]
/// Rows per `UNNEST` insert on PostgreSQL (arrays have no parameter limit).
const POSTGRES_BATCH: usize = 50_000;

const DAY_US: i64 = 86_400_000_000;

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Karim",
    "Lena", "Mallory", "Nadia", "Oscar", "Peggy", "Quentin", "Rupert", "Sybil", "Trent", "Uma",
    "Victor", "Wendy", "Xavier", "Yasmin", "Zoe",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Okafor", "Garcia", "Müller", "Rossi", "Dubois", "Kowalski", "Tanaka",
    "Silva", "Haddad", "Nguyen", "Ivanova", "Cohen", "Larsen", "Mensah",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.example.net",
    "shop.example",
];
const ADJECTIVES: &[&str] = &[
    "Compact",
    "Deluxe",
    "Eco",
    "Ergonomic",
    "Heavy-duty",
    "Mini",
    "Portable",
    "Pro",
    "Smart",
    "Wireless",
];
const NOUNS: &[&str] = &[
    "Keyboard",
    "Mouse",
    "Monitor",
    "Laptop",
    "Headset",
    "Webcam",
    "Desk Lamp",
    "Chair",
    "Notebook",
    "Pen",
    "Router",
    "Speaker",
];

/// What kind of customer row `index` is (by index, so small seeds still have every kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Active,
    Dormant,
    New,
}

fn profile(index: u64) -> Profile {
    match index % 10 {
        7 | 8 => Profile::Dormant,
        9 => Profile::New,
        _ => Profile::Active,
    }
}

/// A generated customer, kept in memory to date its orders.
struct SeedCustomer {
    id: i64,
    created_us: i64,
}

/// The largest ids in use, as `(customers, products, orders)` (0 for an empty table): the seed
/// numbers its rows after them.
const MAX_IDS: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM customers), \
                              (SELECT COALESCE(MAX(id), 0) FROM products), \
                              (SELECT COALESCE(MAX(id), 0) FROM orders)";

/// Writes the configured data; see the module documentation for its shape.
///
/// Fails with a `Validation` error, before writing anything, for orders without any customer
/// or product to refer to; with `Conflict` if a generated e-mail already exists.
pub async fn seed(
    db: &Database,
    config: &SeedConfig,
    progress: &mut dyn FnMut(SeedProgress),
) -> Result<SeedSummary> {
    if config.orders > 0 && (config.customers == 0 || config.products == 0) {
        return Err(CoreError::validation(
            "orders",
            "orders need at least one customer and one product",
        ));
    }
    match db.backend() {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let max_ids = sqlx::query_as(MAX_IDS).fetch_one(&mut *tx).await?;
            let mut out = SqliteOut { tx: &mut tx };
            let summary = generate(&mut out, config, max_ids, progress).await?;
            tx.commit().await?;
            Ok(summary)
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("LOCK TABLE customers, products, orders, order_products IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let max_ids = sqlx::query_as(MAX_IDS).fetch_one(&mut *tx).await?;
            let mut out = PostgresOut { tx: &mut tx };
            let summary = generate(&mut out, config, max_ids, progress).await?;
            // The rows carry explicit ids: move each sequence past them.
            for sql in [
                "SELECT setval(pg_get_serial_sequence('customers', 'id'), MAX(id)) \
                 FROM customers HAVING MAX(id) IS NOT NULL",
                "SELECT setval(pg_get_serial_sequence('products', 'id'), MAX(id)) \
                 FROM products HAVING MAX(id) IS NOT NULL",
                "SELECT setval(pg_get_serial_sequence('orders', 'id'), MAX(id)) \
                 FROM orders HAVING MAX(id) IS NOT NULL",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(summary)
        }
    }
}

/// Seeds `config` into `db` when it holds no customer, product or order, and leaves a database
/// with any of them as it is: what an app's first start on a fresh database wants (every job
/// then has work), and what must never pile demo rows onto real ones. `Ok(None)` when the
/// database was not empty.
///
/// `crm serve` calls it on a newcomer's SQLite file; an embedding app calls it with the
/// size of demo data it wants. The check and the seed are two steps: two processes starting on
/// one empty database at once may both seed (their rows then sit side by side).
pub async fn seed_if_empty(
    db: &Database,
    config: &SeedConfig,
    progress: &mut dyn FnMut(SeedProgress),
) -> Result<Option<SeedSummary>> {
    use crate::store::CrmStore as _;

    let totals = db.totals().await?;
    let empty = totals.customers == 0
        && totals.orders == 0
        && db.count_products(&Default::default()).await? == 0;
    if !empty {
        return Ok(None);
    }
    seed(db, config, progress).await.map(Some)
}

/// Rows ready to write, in the database's own units.
struct CustomerRow {
    id: i64,
    name: String,
    email: String,
    phone: Option<String>,
    created_us: i64,
}

struct ProductRow {
    id: i64,
    name: String,
    price_cents: i64,
    stock: i32,
}

struct OrderRow {
    id: i64,
    customer_id: i64,
    total_cents: i64,
    date_us: i64,
}

/// Where the generated rows go: one backend's transaction.
trait Out {
    /// How many rows one insert takes.
    fn batch(&self) -> usize;
    async fn customers(&mut self, rows: &[CustomerRow]) -> Result<()>;
    async fn products(&mut self, rows: &[ProductRow]) -> Result<()>;
    async fn orders(&mut self, rows: &[OrderRow], lines: &[(i64, i64)]) -> Result<()>;
}

async fn generate(
    out: &mut impl Out,
    config: &SeedConfig,
    max_ids: (i64, i64, i64),
    progress: &mut dyn FnMut(SeedProgress),
) -> Result<SeedSummary> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let now_us = config.now.timestamp_micros();
    let (max_customer, max_product, max_order) = max_ids;
    let batch = out.batch();

    // Customers.
    let mut customers: Vec<SeedCustomer> = Vec::with_capacity(len(config.customers));
    let mut rows = Vec::with_capacity(batch);
    for i in 0..config.customers {
        let id = max_customer + 1 + i as i64;
        let created_us = match profile(i) {
            Profile::Active => now_us - rng.i64(8 * DAY_US..=730 * DAY_US),
            Profile::Dormant => now_us - rng.i64(400 * DAY_US..=730 * DAY_US),
            Profile::New => now_us - rng.i64(0..=30 * DAY_US),
        };
        let first = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
        let domain = DOMAINS[rng.usize(..DOMAINS.len())];
        // The id makes the e-mail unique, also when seeding again into the same database.
        let email = format!(
            "{}.{}.{id}@{domain}",
            first.to_lowercase(),
            ascii_fold(&last.to_lowercase())
        );
        let phone = match rng.u8(..4) {
            0 => Some(format!("+{}", rng.u64(1_000_000_000..10_000_000_000))),
            1 => Some(format!(
                "{:03}-{:03}-{:04}",
                rng.u16(100..1000),
                rng.u16(0..1000),
                rng.u16(0..10_000)
            )),
            _ => None,
        };
        if profile(i) != Profile::New {
            customers.push(SeedCustomer { id, created_us });
        }
        rows.push(CustomerRow {
            id,
            name: format!("{first} {last}"),
            email,
            phone,
            created_us,
        });
        if rows.len() == batch || i + 1 == config.customers {
            out.customers(&rows).await?;
            rows.clear();
            progress(SeedProgress {
                stage: SeedStage::Customers,
                done: i + 1,
                total: config.customers,
            });
        }
    }
    // Which of the ordering customers are active (their orders may be recent).
    let active: Vec<usize> = customers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.created_us <= now_us - 8 * DAY_US && is_active(c, max_customer))
        .map(|(i, _)| i)
        .collect();

    // Products.
    let mut prices: Vec<i64> = Vec::with_capacity(len(config.products));
    let mut rows = Vec::with_capacity(batch);
    for i in 0..config.products {
        let id = max_product + 1 + i as i64;
        let price_cents = rng.i64(50..=200_000);
        let stock = if i % 5 == 0 {
            rng.i32(0..10)
        } else {
            rng.i32(10..=500)
        };
        let name = format!(
            "{} {} {}",
            ADJECTIVES[rng.usize(..ADJECTIVES.len())],
            NOUNS[rng.usize(..NOUNS.len())],
            id
        );
        prices.push(price_cents);
        rows.push(ProductRow {
            id,
            name,
            price_cents,
            stock,
        });
        if rows.len() == batch || i + 1 == config.products {
            out.products(&rows).await?;
            rows.clear();
            progress(SeedProgress {
                stage: SeedStage::Products,
                done: i + 1,
                total: config.products,
            });
        }
    }

    // Orders, with one to four distinct products each.
    let mut orders = Vec::with_capacity(batch);
    let mut lines = Vec::with_capacity(batch * 4);
    let mut order_lines = 0u64;
    let max_lines = prices.len().min(4);
    let mut chosen: Vec<usize> = Vec::with_capacity(4);
    for k in 0..config.orders {
        let id = max_order + 1 + k as i64;
        let recent = k % 20 == 0 && !active.is_empty();
        let customer = if recent {
            &customers[active[rng.usize(..active.len())]]
        } else {
            &customers[rng.usize(..customers.len())]
        };
        let dormant = !is_active(customer, max_customer);
        let date_us = if recent {
            now_us - rng.i64(0..7 * DAY_US)
        } else if dormant {
            rng.i64(customer.created_us..=now_us - 366 * DAY_US)
        } else {
            rng.i64(customer.created_us..=now_us)
        };
        chosen.clear();
        let count = rng.usize(1..=max_lines);
        while chosen.len() < count {
            let p = rng.usize(..prices.len());
            if !chosen.contains(&p) {
                chosen.push(p);
            }
        }
        let mut total_cents = 0;
        for &p in &chosen {
            total_cents += prices[p];
            lines.push((id, max_product + 1 + p as i64));
        }
        order_lines += chosen.len() as u64;
        orders.push(OrderRow {
            id,
            customer_id: customer.id,
            total_cents,
            date_us,
        });
        if orders.len() == batch || k + 1 == config.orders {
            out.orders(&orders, &lines).await?;
            orders.clear();
            lines.clear();
            progress(SeedProgress {
                stage: SeedStage::Orders,
                done: k + 1,
                total: config.orders,
            });
        }
    }
    Ok(SeedSummary {
        customers: config.customers,
        products: config.products,
        orders: config.orders,
        order_lines,
    })
}

/// Whether a seeded customer has the active profile (its index is its id after the old ones).
fn is_active(customer: &SeedCustomer, max_customer: i64) -> bool {
    profile((customer.id - max_customer - 1) as u64) == Profile::Active
}

fn len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).min(1 << 24)
}

/// E-mail local parts are ASCII: folds the few accented letters of the name lists.
fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ü' => 'u',
            'ö' => 'o',
            'ä' => 'a',
            'é' | 'è' => 'e',
            c => c,
        })
        .collect()
}

#[cfg(feature = "sqlite")]
struct SqliteOut<'t, 'c> {
    tx: &'t mut sqlx::Transaction<'c, Sqlite>,
}

#[cfg(feature = "sqlite")]
impl Out for SqliteOut<'_, '_> {
    fn batch(&self) -> usize {
        SQLITE_BATCH
    }

    async fn customers(&mut self, rows: &[CustomerRow]) -> Result<()> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO customers (id, name, email, phone, created_at_us) ");
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.name.as_str())
                .push_bind(r.email.as_str())
                .push_bind(r.phone.as_deref())
                .push_bind(r.created_us);
        });
        qb.build()
            .execute(&mut **self.tx)
            .await
            .map_err(seed_insert_error)?;
        Ok(())
    }

    async fn products(&mut self, rows: &[ProductRow]) -> Result<()> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO products (id, name, price_cents, stock) ");
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.name.as_str())
                .push_bind(r.price_cents)
                .push_bind(r.stock);
        });
        qb.build().execute(&mut **self.tx).await?;
        Ok(())
    }

    async fn orders(&mut self, rows: &[OrderRow], lines: &[(i64, i64)]) -> Result<()> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO orders (id, customer_id, total_amount_cents, order_date_us) ",
        );
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.customer_id)
                .push_bind(r.total_cents)
                .push_bind(r.date_us);
        });
        qb.build().execute(&mut **self.tx).await?;
        for chunk in lines.chunks(SQLITE_BATCH * 2) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO order_products (order_id, product_id) ");
            qb.push_values(chunk, |mut b, (order, product)| {
                b.push_bind(*order).push_bind(*product);
            });
            qb.build().execute(&mut **self.tx).await?;
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
struct PostgresOut<'t, 'c> {
    tx: &'t mut sqlx::Transaction<'c, Postgres>,
}

#[cfg(feature = "postgres")]
impl Out for PostgresOut<'_, '_> {
    fn batch(&self) -> usize {
        POSTGRES_BATCH
    }

    async fn customers(&mut self, rows: &[CustomerRow]) -> Result<()> {
        sqlx::query(
            "INSERT INTO customers (id, name, email, phone, created_at) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], \
                                  $5::TIMESTAMPTZ[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.email.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.phone.as_deref()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| micros_to_time(r.created_us))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **self.tx)
        .await
        .map_err(seed_insert_error)?;
        Ok(())
    }

    async fn products(&mut self, rows: &[ProductRow]) -> Result<()> {
        sqlx::query(
            "INSERT INTO products (id, name, price, stock) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::NUMERIC[], $4::INTEGER[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| from_cents(r.price_cents))
                .collect::<Vec<Decimal>>(),
        )
        .bind(rows.iter().map(|r| r.stock).collect::<Vec<_>>())
        .execute(&mut **self.tx)
        .await?;
        Ok(())
    }

    async fn orders(&mut self, rows: &[OrderRow], lines: &[(i64, i64)]) -> Result<()> {
        sqlx::query(
            "INSERT INTO orders (id, customer_id, total_amount, order_date) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::NUMERIC[], $4::TIMESTAMPTZ[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.customer_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| from_cents(r.total_cents))
                .collect::<Vec<Decimal>>(),
        )
        .bind(
            rows.iter()
                .map(|r| micros_to_time(r.date_us))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO order_products (order_id, product_id) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[])",
        )
        .bind(lines.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.1).collect::<Vec<_>>())
        .execute(&mut **self.tx)
        .await?;
        Ok(())
    }
}

#[cfg(feature = "postgres")]
fn micros_to_time(us: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::microseconds(us)
}

/// A generated e-mail that already exists (someone created it by hand) is a conflict.
fn seed_insert_error(error: sqlx::Error) -> CoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => CoreError::Conflict(
            "a seeded e-mail address already exists; nothing was written".to_owned(),
        ),
        _ => CoreError::from(error),
    }
}
