//! This benchmark measures the storage's four set-based operations (and seeding) on a seeded
//! database, each beside the same SQL run directly (the floor): on SQLite through the very
//! library and settings our pool uses (the bundled SQLite, driven by rusqlite), on PostgreSQL
//! by `psql`.
//!
//! ```text
//! cargo bench -p crm-core --bench store
//! ```
//!
//! Sizes and backends come from the environment: `CRM_BENCH_CUSTOMERS` (100000),
//! `CRM_BENCH_PRODUCTS` (1000), `CRM_BENCH_ORDERS` (1000000), `CRM_BENCH_RUNS` (7, the median
//! is reported), `CRM_BENCH_BACKENDS` (`sqlite,postgres`), and `CRM_TEST_POSTGRES_URL`.
//! Databases are fresh (the `testing` feature's `TestDb`) and removed afterwards.
//!
//! "Ours" is the wall time of the `CrmStore` call, rows decoded into structs; the floor is each
//! statement's own time: SQLite, from prepare to the last row stepped (not decoded), on one
//! connection with the pool's PRAGMAs ([`sqlite_floor`]); PostgreSQL, `psql`'s `\timing on`,
//! output discarded. The real cleanup deletes, so it runs on fresh copies of the seeded
//! database (3 each); the restock is undone (untimed) after every run.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use crm_core::testing::TestDb;
use crm_core::{CrmStore, Database, SeedConfig};

struct Row {
    backend: &'static str,
    operation: &'static str,
    rows: String,
    ours: Duration,
    floor: Duration,
}

/// Timings of one operation: ours and the floor's.
#[derive(Default)]
struct Times {
    ours: Vec<Duration>,
    floor: Vec<Duration>,
}

/// Rounds of `runs` each, ours and the floor taking turns.
const ROUNDS: usize = 2;
/// Fresh copies per side for the real cleanup.
const COPIES: usize = 3;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    async_std::task::block_on(run());
}

async fn run() {
    let config = SeedConfig {
        customers: env_u64("CRM_BENCH_CUSTOMERS", 100_000),
        products: env_u64("CRM_BENCH_PRODUCTS", 1_000),
        orders: env_u64("CRM_BENCH_ORDERS", 1_000_000),
        seed: 42,
        now: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    };
    let runs = env_u64("CRM_BENCH_RUNS", 7) as usize;
    let backends =
        std::env::var("CRM_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let mut table = Vec::new();
    let mut seeds = Vec::new();
    for backend in backends.split(',') {
        let t = match backend.trim() {
            "sqlite" => TestDb::sqlite().await,
            "postgres" => TestDb::postgres().await,
            other => panic!("unknown backend {other}"),
        };
        let floor = Floor::new(&t);
        eprintln!("{}: seeding {config:?}", floor.name);
        let started = Instant::now();
        let summary = crm_core::seed(t.database(), &config, &mut |_| {})
            .await
            .expect("seeding failed");
        let seed_time = started.elapsed();
        eprintln!("{}: seeded in {seed_time:?}: {summary:?}", floor.name);
        seeds.push((floor.name, seed_time, summary));
        floor.run(&floor.analyze_sql(), 1);
        table.extend(measure(&t, &floor, &config, runs).await);
    }
    println!();
    println!(
        "Seed: {} customers, {} products, {} orders (seed 42); median of {} runs each side, in {ROUNDS} alternating rounds; the real cleanup: median of {COPIES} copies each side\n",
        config.customers,
        config.products,
        config.orders,
        runs * ROUNDS
    );
    println!("| backend | seeding | rows written |");
    println!("|---|---|---|");
    for (backend, time, s) in seeds {
        println!(
            "| {backend} | {:.1} s | {} customers, {} products, {} orders, {} order lines |",
            time.as_secs_f64(),
            s.customers,
            s.products,
            s.orders,
            s.order_lines
        );
    }
    println!();
    println!("| backend | operation | rows | ours (ms) | floor (ms) | ours / floor |");
    println!("|---|---|---|---|---|---|");
    for r in table {
        let floor = ms(r.floor);
        let ratio = format!(
            "{:.2}",
            r.ours.as_secs_f64() / r.floor.as_secs_f64().max(1e-6)
        );
        println!(
            "| {} | {} | {} | {} | {floor} | {ratio} |",
            r.backend,
            r.operation,
            r.rows,
            ms(r.ours)
        );
    }
}

async fn measure(t: &TestDb, floor: &Floor, config: &SeedConfig, runs: usize) -> Vec<Row> {
    let db = t.database();
    let now = config.now;
    let mut rows = Vec::new();
    let mut row = |operation, n: String, times: Times| {
        let (ours, floor_time) = (median(times.ours), median(times.floor));
        eprintln!(
            "{}: {operation}: {n} rows, ours {ours:?}, floor {floor_time:?}",
            floor.name
        );
        rows.push(Row {
            backend: floor.name,
            operation,
            rows: n,
            ours,
            floor: floor_time,
        });
    };

    // The read-only operations: ours and the floor take turns, `runs` each per round, so a
    // change in the machine's load weighs on both.
    let cutoff = now - TimeDelta::days(365);
    let from = now - TimeDelta::days(7);
    let dry_sql = floor.bind(floor.sql("count_inactive"), &[floor.instant(cutoff)]);
    let between_sql = floor.bind(
        floor.sql("orders_between"),
        &[floor.instant(from), floor.instant(now)],
    );
    let (mut dry, mut between, mut totals) = (Times::default(), Times::default(), Times::default());
    let (mut count, mut n) = (0, 0);
    for _ in 0..ROUNDS {
        for _ in 0..runs {
            let started = Instant::now();
            count = db.delete_inactive_customers(now, true).await.unwrap();
            dry.ours.push(started.elapsed());
        }
        dry.floor.extend(floor.run(&dry_sql, runs));
        for _ in 0..runs {
            let started = Instant::now();
            n = db.orders_between(from, now).await.unwrap().len();
            between.ours.push(started.elapsed());
        }
        between.floor.extend(floor.run(&between_sql, runs));
        for _ in 0..runs {
            let started = Instant::now();
            db.totals().await.unwrap();
            totals.ours.push(started.elapsed());
        }
        totals.floor.extend(floor.run(floor.sql("totals"), runs));
    }
    row(
        "delete_inactive_customers (dry run)",
        count.to_string(),
        dry,
    );
    row("orders_between (last 7 days)", n.to_string(), between);
    row("totals", "1".to_owned(), totals);

    // Restock: undone after every run, untimed, so each run has the same work.
    floor.run(
        "CREATE TABLE stock_backup AS SELECT id, stock FROM products",
        1,
    );
    let reset =
        "UPDATE products SET stock = (SELECT b.stock FROM stock_backup b WHERE b.id = products.id)";
    let update = floor.bind(
        floor.sql("restock_low"),
        &["10".to_owned(), "10".to_owned()],
    );
    let script = format!("{update};\n{reset}");
    let mut restock = Times::default();
    let mut n = 0;
    for _ in 0..ROUNDS {
        for _ in 0..runs {
            let started = Instant::now();
            n = db.restock_low(10, 10).await.unwrap().len();
            restock.ours.push(started.elapsed());
            floor.run(reset, 1);
        }
        restock
            .floor
            .extend(floor.run(&script, runs).into_iter().step_by(2));
    }
    row("restock_low (stock < 10 gets +10)", n.to_string(), restock);

    // The real cleanup, on fresh copies of the seeded database; which side goes first
    // alternates.
    db.close().await;
    let sql = floor.bind(floor.sql("delete_inactive"), &[floor.instant(cutoff)]);
    // The cleanup is several statements in one transaction, as the store runs it.
    let sql = match floor.name {
        "sqlite" => format!("BEGIN IMMEDIATE;\n{sql}COMMIT"),
        _ => format!("BEGIN;\n{sql}COMMIT"),
    };
    let mut delete = Times::default();
    let mut deleted = 0;
    for i in 0..COPIES {
        for side in if i % 2 == 0 {
            ["ours", "floor"]
        } else {
            ["floor", "ours"]
        } {
            let copy = format!("{side}{i}");
            let url = floor.copy(&copy);
            if side == "ours" {
                let db = Database::connect(&url).await.unwrap();
                let started = Instant::now();
                deleted = db.delete_inactive_customers(now, false).await.unwrap();
                delete.ours.push(started.elapsed());
                db.close().await;
            } else {
                // The sum of the transaction's statements.
                delete
                    .floor
                    .push(floor.run_on(&copy, &sql, 1).into_iter().sum());
            }
            floor.remove(&copy);
        }
    }
    row(
        "delete_inactive_customers (real, on a copy)",
        deleted.to_string(),
        delete,
    );
    rows
}

/// The SQLite floor: `sql` (one or more statements) run `times` times on one connection of the
/// very SQLite library crm-core's pool uses (the bundled one sqlx links, through rusqlite: one
/// `libsqlite3-sys`), with the pool's settings (`crm_core::database::open_sqlite`: WAL,
/// `synchronous = NORMAL`, foreign keys on, 10 s busy timeout, 32 MiB page cache). Each
/// statement is timed from its prepare to its last row stepped; rows are stepped, not decoded.
/// (It replaced the Debian `sqlite3` client, an older SQLite with a 2 MiB cache.)
fn sqlite_floor(target: &str, sql: &str, times: usize) -> Vec<Duration> {
    use rusqlite::fallible_iterator::FallibleIterator as _;
    let conn = rusqlite::Connection::open(target).expect("the SQLite floor opens the file");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -32768;",
    )
    .expect("the pool's settings");
    let mut timings = Vec::new();
    for _ in 0..times {
        let mut batch = rusqlite::Batch::new(&conn, sql);
        loop {
            let started = Instant::now();
            let Some(mut statement) = batch.next().expect("the floor's SQL prepares") else {
                break;
            };
            let mut rows = statement.raw_query();
            while rows.next().expect("the floor's SQL runs").is_some() {}
            drop(rows);
            timings.push(started.elapsed());
        }
    }
    timings
}

/// The same SQL through PostgreSQL's command-line client, or SQLite's library directly.
struct Floor {
    name: &'static str,
    /// SQLite: the file; PostgreSQL: the database URL.
    target: String,
}

impl Floor {
    fn new(t: &TestDb) -> Self {
        match t.database().backend_name() {
            "sqlite" => Self {
                name: "sqlite",
                target: t.url().strip_prefix("sqlite://").unwrap().to_owned(),
            },
            _ => Self {
                name: "postgres",
                target: t.url().to_owned(),
            },
        }
    }

    fn sql(&self, name: &str) -> &'static str {
        match (self.name, name) {
            ("sqlite", "count_inactive") => include_str!("../src/sqlite/count_inactive.sql"),
            ("sqlite", "delete_inactive") => include_str!("../src/sqlite/delete_inactive.sql"),
            ("sqlite", "orders_between") => include_str!("../src/sqlite/orders_between.sql"),
            ("sqlite", "restock_low") => include_str!("../src/sqlite/restock_low.sql"),
            ("sqlite", "totals") => include_str!("../src/sqlite/totals.sql"),
            ("postgres", "count_inactive") => include_str!("../src/postgres/count_inactive.sql"),
            ("postgres", "delete_inactive") => include_str!("../src/postgres/delete_inactive.sql"),
            ("postgres", "orders_between") => include_str!("../src/postgres/orders_between.sql"),
            ("postgres", "restock_low") => include_str!("../src/postgres/restock_low.sql"),
            ("postgres", "totals") => include_str!("../src/postgres/totals.sql"),
            _ => unreachable!(),
        }
    }

    fn analyze_sql(&self) -> String {
        match self.name {
            "sqlite" => "ANALYZE".to_owned(),
            _ => "VACUUM ANALYZE".to_owned(),
        }
    }

    /// An instant as a literal of the backend's storage type.
    fn instant(&self, at: DateTime<Utc>) -> String {
        match self.name {
            "sqlite" => at.timestamp_micros().to_string(),
            _ => format!("'{}'::timestamptz", at.to_rfc3339()),
        }
    }

    /// The query with its parameters written in as literals (`?1`/`$1` …).
    fn bind(&self, sql: &str, values: &[String]) -> String {
        let mut sql = sql.to_owned();
        for (i, v) in values.iter().enumerate().rev() {
            let mark = if self.name == "sqlite" { "?" } else { "$" };
            sql = sql.replace(&format!("{mark}{}", i + 1), v);
        }
        sql
    }

    fn run(&self, sql: &str, times: usize) -> Vec<Duration> {
        self.run_target(&self.target, sql, times)
    }

    fn run_on(&self, copy: &str, sql: &str, times: usize) -> Vec<Duration> {
        self.run_target(&self.copy_target(copy), sql, times)
    }

    /// Runs `sql` `times` times in one session; returns each statement's timing.
    fn run_target(&self, target: &str, sql: &str, times: usize) -> Vec<Duration> {
        let sql = sql.trim().trim_end_matches(';');
        if self.name == "sqlite" {
            return sqlite_floor(target, sql, times);
        }
        let mut command = Command::new("psql");
        command.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-o",
            "/dev/null",
            target,
        ]);
        let mut script = "\\timing on\n".to_owned();
        for _ in 0..times {
            script.push_str(sql);
            script.push_str(";\n");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the command-line client runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "client failed on: {sql}");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("Time: ")?;
                let ms: f64 = rest.split_whitespace().next()?.parse().ok()?;
                Some(Duration::from_secs_f64(ms / 1000.0))
            })
            .collect()
    }

    fn copy_target(&self, copy: &str) -> String {
        match self.name {
            "sqlite" => format!("{}.{copy}", self.target),
            _ => {
                let (server, _) = self.target.rsplit_once('/').unwrap();
                format!("{server}/{}_{copy}", self.database())
            }
        }
    }

    fn database(&self) -> &str {
        self.target.rsplit_once('/').unwrap().1
    }

    /// A copy of the seeded database; returns the URL of the copy.
    fn copy(&self, copy: &str) -> String {
        let target = self.copy_target(copy);
        match self.name {
            "sqlite" => {
                // Everything in the main file, so a file copy is the whole database.
                self.run("PRAGMA wal_checkpoint(TRUNCATE)", 1);
                std::fs::copy(&self.target, &target).unwrap();
                format!("sqlite://{target}")
            }
            _ => {
                let (server, _) = self.target.rsplit_once('/').unwrap();
                let admin = format!("{server}/postgres");
                let sql = format!(
                    "CREATE DATABASE {}_{copy} TEMPLATE {}",
                    self.database(),
                    self.database()
                );
                self.run_target(&admin, &sql, 1);
                target
            }
        }
    }

    fn remove(&self, copy: &str) {
        let target = self.copy_target(copy);
        match self.name {
            "sqlite" => {
                for suffix in ["", "-wal", "-shm"] {
                    std::fs::remove_file(format!("{target}{suffix}")).ok();
                }
            }
            _ => {
                let (server, _) = self.target.rsplit_once('/').unwrap();
                let admin = format!("{server}/postgres");
                let sql = format!("DROP DATABASE {}_{copy} WITH (FORCE)", self.database());
                self.run_target(&admin, &sql, 1);
            }
        }
    }
}
