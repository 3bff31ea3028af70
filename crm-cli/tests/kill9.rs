//! kill -9 at random moments, 50 times each: the GraphQL server while clients write, the
//! scheduler (and `crm jobs run-due`, what cron starts) mid-job, and a broker worker mid-task.
//! After each kill the database must open whole, every write a client was told succeeded must
//! be there, the cleanup and the restock must be all or nothing, and no tick may succeed twice;
//! at the end every abandoned run must have been run again. Long tests (they run by default, as
//! in CI); each prints its figures (run with `--nocapture` to see them).

#[path = "support/process.rs"]
mod process;
#[path = "support/redis_prefix.rs"]
mod redis_prefix;
#[path = "support/kill9.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use process::{KillOnDrop, assert_exit, crm_in, exits_within, read_served_url, sigterm};
use redis_prefix::{Prefix, redis_url};

use serde_json::json;
use support::{Answer, Db, graphql, id_number};

const TOKEN: &str = "kill9-token";
const KILLS: usize = 50;
/// Fewer on PostgreSQL: each cycle there also creates connections for the server's pool.
const PG_KILLS: usize = 50;
const CUSTOMERS: usize = 20;
const PRODUCTS: usize = 30;
/// Inactive customers the cleanup deletes in one transaction (enough to take a while).
const INACTIVE: i64 = 8_000;
/// A killed job process dies this many ms at most (at random) after its claim.
const SCHEDULER_KILL_MS: u64 = 60;
/// Old customers with a recent order: never deleted.
const LOYAL: i64 = 30;

fn crm(dir: &Path, url: &str) -> Command {
    let mut command = crm_in(dir);
    command
        .env("CRM_DATABASE_URL", url)
        .env("CRM_LOG_DIR", dir.join("logs"))
        .env("CRM_API_TOKEN", TOKEN);
    command
}

fn migrate(dir: &Path, url: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    assert_exit(&crm(dir, url).arg("migrate").output().unwrap(), 0);
}

/// `crm serve` on a free port; returns it and its GraphQL URL once it listens.
fn serve(dir: &Path, url: &str) -> (KillOnDrop, String) {
    let mut server = KillOnDrop(
        crm(dir, url)
            .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = read_served_url(&mut BufReader::new(server.0.stdout.take().unwrap()));
    (server, url)
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Customers and products for the clients; returns each product's price in cents by id.
fn seed_shop(db: &mut Db) -> BTreeMap<i64, i64> {
    let customers: Vec<String> = (1..=CUSTOMERS)
        .map(|i| {
            if db.is_pg() {
                format!("('Buyer {i}', 'buyer{i}@example.com')")
            } else {
                format!("('Buyer {i}', 'buyer{i}@example.com', {})", now_us())
            }
        })
        .collect();
    let products: Vec<String> = (1..=PRODUCTS)
        .map(|i| {
            let cents = 100 + 7 * i;
            if db.is_pg() {
                format!("('Item {i}', {}.{:02}, 50)", cents / 100, cents % 100)
            } else {
                format!("('Item {i}', {cents}, 50)")
            }
        })
        .collect();
    let (customer_columns, price) = if db.is_pg() {
        ("(name, email)", "price")
    } else {
        ("(name, email, created_at_us)", "price_cents")
    };
    db.exec(&format!(
        "INSERT INTO customers {customer_columns} VALUES {}; \
         INSERT INTO products (name, {price}, stock) VALUES {};",
        customers.join(", "),
        products.join(", ")
    ));
    db.rows(&format!(
        "SELECT id, CAST({} AS BIGINT) FROM products ORDER BY id",
        if db.is_pg() {
            "price * 100"
        } else {
            "price_cents"
        }
    ))
    .into_iter()
    .map(|r| (r[0], r[1]))
    .collect()
}

/// Sets every product's stock (a fresh starting point for a cycle); returns it by id.
fn set_stocks(db: &mut Db, cycle: usize) -> BTreeMap<i64, i64> {
    let ids: Vec<i64> = db
        .rows("SELECT id FROM products ORDER BY id")
        .into_iter()
        .map(|r| r[0])
        .collect();
    let stocks: BTreeMap<i64, i64> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, ((cycle * 7 + i * 3) % 20) as i64))
        .collect();
    // One transaction: a restock the server is still running for a killed job lands wholly
    // before or after it.
    let sql: String = stocks
        .iter()
        .map(|(id, stock)| format!("UPDATE products SET stock = {stock} WHERE id = {id};"))
        .collect();
    db.exec(&format!("BEGIN; {sql} COMMIT;"));
    stocks
}

/// The restock is one statement over every low product: after any kill, the products that
/// were low (stock < 10) are either all 10 higher or all as they were, and the others as
/// they were. Returns whether the low ones were restocked.
#[track_caller]
fn check_stocks(db: &mut Db, base: &BTreeMap<i64, i64>, context: &str) -> bool {
    let now: BTreeMap<i64, i64> = db
        .rows("SELECT id, CAST(stock AS BIGINT) FROM products ORDER BY id")
        .into_iter()
        .map(|r| (r[0], r[1]))
        .collect();
    let low: Vec<i64> = base
        .iter()
        .filter(|(_, s)| **s < 10)
        .map(|(i, _)| *i)
        .collect();
    assert!(!low.is_empty());
    let restocked = low.iter().filter(|id| now[id] == base[id] + 10).count();
    let untouched = low.iter().filter(|id| now[id] == base[id]).count();
    assert!(
        restocked == low.len() || untouched == low.len(),
        "{context}: a restock was half-applied: {restocked} of {} low products got +10 \
         (before {base:?}, after {now:?})",
        low.len()
    );
    for (id, stock) in base.iter().filter(|(_, s)| **s >= 10) {
        assert_eq!(now[id], *stock, "{context}: product {id} was not low");
    }
    restocked == low.len()
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// What the clients were told, across every cycle.
#[derive(Default)]
struct Told {
    /// Order id → (its product ids, sorted; its total in cents).
    orders: BTreeMap<i64, (Vec<i64>, i64)>,
    /// Restocks answered in this cycle: the products each listed (id, new stock).
    restocks: Vec<Vec<(i64, i64)>>,
    /// Requests whose connection the kill cut (their outcome is unknown to the client).
    cut: usize,
    /// Answers with a 5xx status.
    server_errors: usize,
    /// GraphQL errors (an answer, but not a success), with their message.
    errors: Vec<String>,
    answered: usize,
}

const CREATE_ORDER: &str = "mutation($input: OrderInput!) { createOrder(input: $input) \
                            { order { id totalAmount products { id } } } }";
const RESTOCK: &str = "mutation { updateLowStockProducts { products { id stock } message } }";

fn cents(amount: &str) -> i64 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, "0"));
    whole.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<i64>().unwrap()
}

fn client(url: String, products: Vec<i64>, stop: Arc<AtomicBool>, told: Arc<Mutex<Told>>) {
    while !stop.load(Ordering::Relaxed) {
        let restock = fastrand::u8(..10) < 3;
        let answer = if restock {
            graphql(&url, TOKEN, RESTOCK, json!({}))
        } else {
            let mut chosen: Vec<i64> = (0..fastrand::usize(1..=4))
                .map(|_| products[fastrand::usize(..products.len())])
                .collect();
            chosen.sort_unstable();
            chosen.dedup();
            let input = json!({
                "customerId": fastrand::usize(1..=CUSTOMERS).to_string(),
                "productIds": chosen.iter().map(i64::to_string).collect::<Vec<_>>(),
            });
            graphql(&url, TOKEN, CREATE_ORDER, json!({ "input": input }))
        };
        let mut told = told.lock().unwrap();
        match answer {
            Answer::Refused => {}
            Answer::Cut => told.cut += 1,
            Answer::Http(status, _) if status >= 500 => told.server_errors += 1,
            Answer::Http(_, body) if body["errors"].is_array() || body["data"].is_null() => {
                told.errors.push(body.to_string());
            }
            Answer::Http(_, body) if restock => {
                told.answered += 1;
                let listed = body["data"]["updateLowStockProducts"]["products"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            id_number(p["id"].as_str().unwrap()),
                            p["stock"].as_i64().unwrap(),
                        )
                    })
                    .collect();
                told.restocks.push(listed);
            }
            Answer::Http(_, body) => {
                told.answered += 1;
                let order = &body["data"]["createOrder"]["order"];
                let mut items: Vec<i64> = order["products"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| id_number(p["id"].as_str().unwrap()))
                    .collect();
                items.sort_unstable();
                let total = cents(order["totalAmount"].as_str().unwrap());
                told.orders
                    .insert(id_number(order["id"].as_str().unwrap()), (items, total));
            }
        }
    }
}

/// The database after a kill: it opens and is whole, every order has items and the right
/// total, every order a client was told about is there as told, the restock all or nothing.
fn check_after_server_kill(
    db_url: &str,
    prices: &BTreeMap<i64, i64>,
    base: &BTreeMap<i64, i64>,
    told: &Told,
    cycle: usize,
) {
    let context = format!("after kill {cycle}");
    let mut db = Db::open(db_url);
    if db.is_pg() {
        // PostgreSQL finishes what the dead server had sent (a COMMIT may land after the
        // kill): wait until no other connection is busy (the test's own pool idles).
        process::wait_until(
            "the killed server's connections to end",
            Duration::from_secs(10),
            || {
                db.scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND state <> 'idle'",
                ) == 0
            },
        );
    } else {
        assert_eq!(db.texts("PRAGMA integrity_check"), ["ok"], "{context}");
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM pragma_foreign_key_check"),
            0,
            "{context}"
        );
    }
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS \
             (SELECT 1 FROM order_products op WHERE op.order_id = o.id)"
        ),
        0,
        "{context}: an order without items"
    );
    // Orders first: an order committed meanwhile has its items there when they are read.
    let totals: HashMap<i64, i64> = db
        .rows(if db.is_pg() {
            "SELECT id, CAST(total_amount * 100 AS BIGINT) FROM orders"
        } else {
            "SELECT id, total_amount_cents FROM orders"
        })
        .into_iter()
        .map(|r| (r[0], r[1]))
        .collect();
    let mut items: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in db.rows("SELECT order_id, product_id FROM order_products ORDER BY product_id") {
        items.entry(row[0]).or_default().push(row[1]);
    }
    for (order, total) in &totals {
        let sum: i64 = items[order].iter().map(|p| prices[p]).sum();
        assert_eq!(
            *total, sum,
            "{context}: order {order}'s total is not its items'"
        );
    }
    for (order, (products, total)) in &told.orders {
        assert_eq!(
            items.get(order),
            Some(products),
            "{context}: order {order} was answered but is not stored as answered"
        );
        assert_eq!(totals[order], *total, "{context}: order {order}'s total");
    }
    let restocked = check_stocks(&mut db, base, &context);
    for listed in told.restocks.iter().filter(|l| !l.is_empty()) {
        assert!(
            restocked,
            "{context}: a restock was answered but is not there"
        );
        let low: Vec<(i64, i64)> = base
            .iter()
            .filter(|(_, s)| **s < 10)
            .map(|(id, s)| (*id, s + 10))
            .collect();
        assert_eq!(
            listed, &low,
            "{context}: the restock answered other products"
        );
    }
    db.close();
}

/// 50 (or `kills`) cycles: start the server on the same database, let 4 clients write, kill
/// it -9 after a random 0–500 ms, check the database.
fn kill_the_server(db_url: &str, kills: usize, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    migrate(dir, db_url);
    let mut db = Db::open(db_url);
    let prices = seed_shop(&mut db);
    db.close();
    let products: Vec<i64> = prices.keys().copied().collect();
    let told = Arc::new(Mutex::new(Told::default()));
    let started = Instant::now();
    let mut startup = Duration::ZERO;
    let mut restocked_cycles = 0;
    for cycle in 1..=kills {
        let mut db = Db::open(db_url);
        let base = set_stocks(&mut db, cycle);
        db.close();
        told.lock().unwrap().restocks.clear();
        let launch = Instant::now();
        let (mut server, url) = serve(dir, db_url);
        startup += launch.elapsed();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (url, products, stop, told) =
                    (url.clone(), products.clone(), stop.clone(), told.clone());
                std::thread::spawn(move || client(url, products, stop, told))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..=500)));
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let told = told.lock().unwrap();
        check_after_server_kill(db_url, &prices, &base, &told, cycle);
        restocked_cycles += usize::from(told.restocks.iter().any(|l| !l.is_empty()));
    }
    let told = told.lock().unwrap();
    assert_eq!(told.server_errors, 0, "5xx answers");
    assert!(told.errors.is_empty(), "GraphQL errors: {:?}", told.errors);
    assert!(told.orders.len() > kills, "the clients got orders through");
    let mut db = Db::open(db_url);
    let stored = db.scalar("SELECT COUNT(*) FROM orders");
    db.close();
    eprintln!(
        "kill9 server ({backend}): {kills} kills in {:.1} s ({:.2} s per cycle, server start \
         {:.0} ms on average); {} answers ({} orders told, {stored} stored: {} written but cut \
         before the answer), {} requests cut by the kill, {restocked_cycles} cycles with an \
         answered restock, 0 5xx, 0 errors",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() / kills as f64,
        startup.as_secs_f64() * 1000.0 / kills as f64,
        told.answered,
        told.orders.len(),
        stored - told.orders.len() as i64,
        told.cut,
    );
}

#[test]
fn the_server_killed_50_times_while_clients_write_keeps_every_answered_write_sqlite() {
    if !crm_core::testing::require("kill9_server_sqlite", crm_core::testing::Need::Long) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    kill_the_server(&url, KILLS, "SQLite");
}

#[test]
fn the_server_killed_50_times_while_clients_write_keeps_every_answered_write_postgres() {
    if !crm_core::testing::require("kill9_server_postgres", crm_core::testing::Need::Long) {
        return;
    }
    let db = async_std::task::block_on(crm_core::testing::TestDb::postgres());
    kill_the_server(db.url(), PG_KILLS, "PostgreSQL");
}

// ---------------------------------------------------------------------------------------------
// The scheduler and `crm jobs run-due`
// ---------------------------------------------------------------------------------------------

/// Adds `INACTIVE` customers created two years ago without orders (the cleanup's work), as
/// generation `generation` (their e-mails are unique to it).
fn seed_inactive(db: &mut Db, generation: usize) {
    let old = now_us() - 2 * 366 * 86_400 * 1_000_000;
    db.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {INACTIVE}) \
         INSERT INTO customers (name, email, created_at_us) \
         SELECT 'Gone ' || i, 'inactive-{generation}-' || i || '@example.com', {old} FROM n"
    ));
}

/// `LOYAL` customers as old as the inactive ones, each with an order ten days ago: kept.
fn seed_loyal(db: &mut Db, product: i64, price: i64) {
    let old = now_us() - 2 * 366 * 86_400 * 1_000_000;
    let recent = now_us() - 10 * 86_400 * 1_000_000;
    db.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LOYAL}) \
         INSERT INTO customers (name, email, created_at_us) \
         SELECT 'Loyal ' || i, 'loyal-' || i || '@example.com', {old} FROM n; \
         INSERT INTO orders (customer_id, total_amount_cents, order_date_us) \
         SELECT id, {price}, {recent} FROM customers WHERE email LIKE 'loyal-%'; \
         INSERT INTO order_products (order_id, product_id) \
         SELECT o.id, {product} FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE c.email LIKE 'loyal-%';"
    ));
}

/// The cleanup is one transaction: after any kill, a generation of inactive customers is all
/// there or all gone, and the loyal ones and their orders are all there.
#[track_caller]
fn check_cleanup(db: &mut Db, context: &str) -> i64 {
    let inactive = db.scalar("SELECT COUNT(*) FROM customers WHERE email LIKE 'inactive-%'");
    assert!(
        inactive == 0 || inactive == INACTIVE,
        "{context}: a cleanup was half-applied: {inactive} of {INACTIVE} inactive customers left"
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM customers c JOIN orders o ON o.customer_id = c.id \
             JOIN order_products op ON op.order_id = o.id WHERE c.email LIKE 'loyal-%'"
        ),
        LOYAL,
        "{context}: a loyal customer or their order went"
    );
    inactive
}

#[track_caller]
fn check_no_tick_succeeded_twice(db: &mut Db, context: &str) {
    let twice = db.ticks_succeeded_twice();
    assert!(
        twice.is_empty(),
        "{context}: ticks that succeeded twice: {twice:?}"
    );
}

/// Whether the process `pid` holds a running claim in the ledger.
fn running_for(db: &mut Db, pid: u32) -> bool {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM job_runs WHERE outcome = 'running' AND pid = {pid}"
    )) > 0
}

fn jobs_at(dir: &Path, url: &str, code: &str, at: &str) {
    assert_exit(
        &crm(dir, url)
            .args(["jobs", "at", code, at])
            .output()
            .unwrap(),
        0,
    );
}

/// Waits until `victim` holds a running claim (or ends by itself, or 5 s pass), then a random
/// 0–`max_ms` ms, and kills it -9. Whether it was killed holding a claim.
fn kill_mid_run(victim: &mut KillOnDrop, db: &mut Db, max_ms: u64) -> (bool, bool) {
    let pid = victim.0.id();
    let limit = Instant::now() + Duration::from_secs(5);
    let mut claimed = false;
    while Instant::now() < limit {
        if running_for(db, pid) {
            claimed = true;
            break;
        }
        if victim.0.try_wait().unwrap().is_some() {
            return (false, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(fastrand::u64(0..=max_ms)));
    let holding = running_for(db, pid);
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    (claimed, holding)
}

#[test]
fn the_scheduler_and_run_due_killed_50_times_mid_job_leave_no_half_cleanup_and_rerun_every_abandoned_tick()
 {
    if !crm_core::testing::require("kill9_scheduler", crm_core::testing::Need::Long) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db_url = format!("sqlite://{}", dir.join("crm.db").display());
    migrate(dir, &db_url);
    let mut db = Db::open(&db_url);
    let prices = seed_shop(&mut db);
    let (&product, &price) = prices.iter().next().unwrap();
    seed_loyal(&mut db, product, price);
    let mut generation = 1;
    seed_inactive(&mut db, generation);
    let mut base = set_stocks(&mut db, 0);
    // The server the restock job calls; it is not killed here.
    let (_server, graphql_url) = serve(dir, &db_url);
    let job_env = |command: &mut Command| {
        command
            .env("CRM_GRAPHQL_URL", &graphql_url)
            .env("CRM_JOB_LEASE", "1");
    };
    // Scheduled ticks every minute besides the one-off runs, so scheduled ticks are killed too.
    for code in ["clean_inactive_customers", "update_low_stock"] {
        assert_exit(
            &crm(dir, &db_url)
                .args(["jobs", "schedule", code, "every 1 minute"])
                .output()
                .unwrap(),
            0,
        );
    }
    // The scheduled ticks come each minute: start so that one comes early in the kill loop
    // (it lasts about 40 s), where the killed processes take it.
    while !(45..58).contains(&chrono::Timelike::second(&Utc::now())) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let (mut claimed_kills, mut holding_kills, mut deleted_generations) = (0, 0, 0);
    for cycle in 1..=KILLS {
        let context = format!("after kill {cycle}");
        // One-off runs of both jobs a second from now: there is always work when it starts.
        let at = (Utc::now() + TimeDelta::seconds(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        jobs_at(dir, &db_url, "clean_inactive_customers", &at);
        jobs_at(dir, &db_url, "update_low_stock", &at);
        let mut command = crm(dir, &db_url);
        job_env(&mut command);
        let what = if cycle % 2 == 0 {
            vec!["scheduler"]
        } else {
            vec!["jobs", "run-due"]
        };
        // run-due runs what is due when it starts: start it once the one-offs are.
        if what.len() == 2 {
            let at = chrono::DateTime::parse_from_rfc3339(&at).unwrap();
            while Utc::now() < at {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut victim = KillOnDrop(
            command
                .args(&what)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (claimed, holding) = kill_mid_run(&mut victim, &mut db, SCHEDULER_KILL_MS);
        claimed_kills += usize::from(claimed);
        holding_kills += usize::from(holding);
        if check_cleanup(&mut db, &context) == 0 {
            deleted_generations += 1;
            generation += 1;
            seed_inactive(&mut db, generation);
        }
        check_stocks(&mut db, &base, &context);
        check_no_tick_succeeded_twice(&mut db, &context);
        base = set_stocks(&mut db, cycle);
    }
    let kill_phase = started.elapsed();

    // A scheduler that is left alone marks what the killed ones left running abandoned once
    // their lease (1 s) has passed, and runs those ticks and one-offs again.
    let mut command = crm(dir, &db_url);
    job_env(&mut command);
    let mut last = KillOnDrop(
        command
            .arg("scheduler")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(last.0.stderr.take().unwrap());
    process::wait_for_line(&mut stderr, "Scheduler running");
    let settle = Instant::now();
    let unfinished_one_offs = "SELECT COUNT(*) FROM job_one_off_runs o WHERE NOT EXISTS \
         (SELECT 1 FROM job_runs r WHERE r.code = o.code AND r.kind = 'manual' \
         AND r.tick_us = o.at_us AND r.outcome = 'succeeded')";
    let abandoned_not_rerun = "SELECT COUNT(*) FROM job_runs a WHERE a.outcome = 'abandoned' \
         AND a.kind IN ('scheduled', 'retry') AND NOT EXISTS (SELECT 1 FROM job_runs s \
         WHERE s.code = a.code AND s.kind IN ('scheduled', 'retry') AND s.tick_us = a.tick_us \
         AND s.outcome = 'succeeded') AND NOT EXISTS (SELECT 1 FROM job_runs n \
         WHERE n.code = a.code AND n.kind IN ('scheduled', 'retry') AND n.tick_us > a.tick_us)";
    let state = |db: &mut Db| {
        [
            db.scalar("SELECT COUNT(*) FROM job_runs WHERE outcome = 'running'"),
            db.scalar(unfinished_one_offs),
            db.scalar(abandoned_not_rerun),
        ]
    };
    while state(&mut db) != [0, 0, 0] {
        if settle.elapsed() > Duration::from_secs(60) {
            let runs = db.texts(
                "SELECT code || ' ' || kind || ' ' || tick_us || ' #' || attempt || ' ' || outcome \
                 || ' pid ' || pid FROM job_runs ORDER BY code, tick_us, attempt",
            );
            panic!(
                "not settled after 60 s: [running, one-offs not run, abandoned ticks not run \
                 again] = {:?}\n{}",
                state(&mut db),
                runs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let settle = settle.elapsed();
    sigterm(&last.0);
    let (code, _) = exits_within(&mut last, Duration::from_secs(10));
    assert_eq!(code, Some(0));

    check_cleanup(&mut db, "at the end");
    check_stocks(&mut db, &base, "at the end");
    check_no_tick_succeeded_twice(&mut db, "at the end");
    let count =
        |db: &mut Db, sql: &str| db.scalar(&format!("SELECT COUNT(*) FROM job_runs WHERE {sql}"));
    let abandoned = count(&mut db, "outcome = 'abandoned'");
    let abandoned_scheduled = count(&mut db, "outcome = 'abandoned' AND kind <> 'manual'");
    let scheduled_runs = count(&mut db, "kind IN ('scheduled', 'retry')");
    let failed = db.texts(
        "SELECT code || ': ' || COALESCE(message, '') FROM job_runs WHERE outcome = 'failed'",
    );
    assert!(failed.is_empty(), "failed runs: {failed:?}");
    let reruns = count(&mut db, "outcome = 'succeeded' AND attempt > 1");
    let one_offs = db.scalar("SELECT COUNT(*) FROM job_one_off_runs");
    assert!(abandoned > 0, "no kill hit a running job");
    assert!(reruns > 0, "no abandoned run was run again");
    let durations = db.texts(
        "SELECT code || ' ' || CAST(AVG(ended_at_us - started_at_us) / 1000 AS INTEGER) || ' ms' \
         FROM job_runs WHERE outcome = 'succeeded' GROUP BY code",
    );
    let by_job = db.texts(
        "SELECT code || ' ' || COUNT(*) FROM job_runs WHERE outcome = 'abandoned' GROUP BY code",
    );
    eprintln!("kill9 scheduler: average run {durations:?}; abandoned by job {by_job:?}");
    eprintln!(
        "kill9 scheduler: {KILLS} kills (odd: jobs run-due, even: scheduler) in {:.1} s ({:.2} s \
         per cycle); {claimed_kills} started a run before the kill, {holding_kills} were \
         killed holding one; {abandoned} runs abandoned ({abandoned_scheduled} scheduled or \
         retried ticks of {scheduled_runs} runs of scheduled ticks, the rest one-offs), all {one_offs} one-offs and every abandoned tick \
         succeeded in the end ({reruns} by a second or later attempt), settled {:.1} s after \
         the last kill; {deleted_generations} cleanups of {INACTIVE} customers, never half; no \
         tick succeeded twice; 0 failed runs",
        kill_phase.as_secs_f64(),
        kill_phase.as_secs_f64() / KILLS as f64,
        settle.as_secs_f64(),
    );
    db.close();
}

// ---------------------------------------------------------------------------------------------
// The broker worker
// ---------------------------------------------------------------------------------------------

impl Prefix {
    /// The task ids of the messages waiting in the queue.
    fn queued_ids(&mut self) -> Vec<String> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}celery", self.prefix))
            .arg(0)
            .arg(-1)
            .query(&mut self.conn)
            .unwrap();
        raw.iter()
            .map(|m| {
                let m: serde_json::Value = serde_json::from_str(m).unwrap();
                m["headers"]["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// Publishes scheduled ticks of three jobs, as a beat would (`count` of them, a minute apart
/// from `first`); returns their task ids.
fn publish_ticks(prefix: &str, first: chrono::DateTime<Utc>, count: usize) -> Vec<String> {
    use crm_jobs::broker::{Broker, BrokerConfig, scheduled_envelope, tick_task_id};
    async_std::task::block_on(async {
        let broker = Broker::connect(BrokerConfig::new(redis_url()).key_prefix(prefix))
            .await
            .unwrap();
        let codes = [
            "clean_inactive_customers",
            "update_low_stock",
            "log_crm_heartbeat",
        ];
        let mut ids = Vec::new();
        for k in 0..count {
            let code = codes[k % codes.len()];
            let tick = first + TimeDelta::minutes(k as i64);
            broker
                .publish(&scheduled_envelope(code, tick, "celery", "kill9-test"))
                .await
                .unwrap();
            ids.push(tick_task_id(code, tick));
        }
        ids
    })
}

/// A worker killed mid-task this many ms at most (at random) after its claim.
const WORKER_KILL_MS: u64 = 60;

#[test]
fn a_worker_killed_50_times_mid_task_runs_each_published_tick_once_and_leaves_nothing_queued() {
    if !crm_core::testing::require("kill9_worker", crm_core::testing::Need::Long) {
        return;
    }
    let Some(mut redis) = Prefix::new("kill9") else {
        return;
    };
    let prefix = redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db_url = format!("sqlite://{}", dir.join("crm.db").display());
    migrate(dir, &db_url);
    let mut db = Db::open(&db_url);
    let prices = seed_shop(&mut db);
    let (&product, &price) = prices.iter().next().unwrap();
    seed_loyal(&mut db, product, price);
    let mut generation = 1;
    seed_inactive(&mut db, generation);
    let (_server, graphql_url) = serve(dir, &db_url);
    let broker = |command: &mut Command| {
        command
            .env("CRM_BROKER_URL", redis_url())
            .env("CRM_BROKER_KEY_PREFIX", &prefix)
            .env("CRM_GRAPHQL_URL", &graphql_url);
    };

    // The real beat publishes what is due now; the test adds many past ticks, as beats that
    // ran for a while would have.
    let mut command = crm(dir, &db_url);
    broker(&mut command);
    let mut beat = KillOnDrop(command.arg("beat").stderr(Stdio::piped()).spawn().unwrap());
    process::wait_until("beat to publish", Duration::from_secs(20), || {
        redis.len("LLEN", "celery") >= 1
    });
    sigterm(&beat.0);
    assert_eq!(exits_within(&mut beat, Duration::from_secs(10)).0, Some(0));
    let mut published = redis.queued_ids();
    // The published ticks come a minute apart: every minute is a tick of each job (a worker
    // refuses a scheduled task whose tick is not one of its job's).
    for code in [
        "clean_inactive_customers",
        "update_low_stock",
        "log_crm_heartbeat",
    ] {
        assert_exit(
            &crm(dir, &db_url)
                .args(["jobs", "schedule", code, "every 1 minute"])
                .output()
                .unwrap(),
            0,
        );
    }
    let first = chrono::DurationRound::duration_trunc(
        Utc::now() - TimeDelta::days(30),
        TimeDelta::minutes(1),
    )
    .unwrap();
    let mut next_batch = 0;
    published.extend(publish_ticks(&prefix, first, 60));

    let started = Instant::now();
    let (mut claimed_kills, mut holding_kills, mut deleted_generations) = (0, 0, 0);
    for cycle in 1..=KILLS {
        let context = format!("after worker kill {cycle}");
        if redis.len("LLEN", "celery") < 10 {
            next_batch += 1;
            published.extend(publish_ticks(
                &prefix,
                first + TimeDelta::days(next_batch),
                30,
            ));
        }
        let mut command = crm(dir, &db_url);
        broker(&mut command);
        let mut victim = KillOnDrop(
            command
                .args([
                    "worker",
                    "-c",
                    "1",
                    "--visibility-timeout",
                    "1",
                    "--lease",
                    "1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (claimed, holding) = kill_mid_run(&mut victim, &mut db, WORKER_KILL_MS);
        claimed_kills += usize::from(claimed);
        holding_kills += usize::from(holding);
        if check_cleanup(&mut db, &context) == 0 {
            deleted_generations += 1;
            generation += 1;
            seed_inactive(&mut db, generation);
        }
        check_no_tick_succeeded_twice(&mut db, &context);
    }
    let kill_phase = started.elapsed();
    let unacked_after_kills = redis.len("HLEN", "unacked");

    // A worker left alone restores what the killed ones took (visibility timeout 1 s) and runs
    // each tick whose run was abandoned as its next attempt.
    let mut command = crm(dir, &db_url);
    broker(&mut command);
    let mut last = KillOnDrop(
        command
            .args([
                "worker",
                "-c",
                "2",
                "--visibility-timeout",
                "1",
                "--lease",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(last.0.stderr.take().unwrap());
    process::wait_for_line(&mut stderr, "Worker running");
    let settle = Instant::now();
    let not_run = |db: &mut Db, published: &[String]| -> Vec<String> {
        let done: std::collections::HashSet<String> = db
            .texts(
                "SELECT 'crm.tasks.' || code || '@' || strftime('%Y-%m-%dT%H:%M:%SZ', \
                 tick_us / 1000000, 'unixepoch') FROM job_runs \
                 WHERE outcome = 'succeeded' AND kind IN ('scheduled', 'retry')",
            )
            .into_iter()
            .collect();
        published
            .iter()
            .filter(|id| !done.contains(*id))
            .cloned()
            .collect()
    };
    loop {
        let missing = not_run(&mut db, &published);
        let (queued, unacked) = (redis.len("LLEN", "celery"), redis.len("HLEN", "unacked"));
        let running = db.scalar("SELECT COUNT(*) FROM job_runs WHERE outcome = 'running'");
        if missing.is_empty() && queued == 0 && unacked == 0 && running == 0 {
            break;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            let runs = db.texts(
                "SELECT code || ' ' || kind || ' ' || strftime('%Y-%m-%dT%H:%M:%SZ', \
                 tick_us / 1000000, 'unixepoch') || ' #' || attempt || ' ' || outcome || ' pid ' \
                 || pid || ' ' || COALESCE(message, '') FROM job_runs WHERE outcome <> 'succeeded' \
                 ORDER BY code, tick_us, attempt",
            );
            let dead: Vec<String> = redis::cmd("LRANGE")
                .arg(format!("{prefix}celery.dead_letter"))
                .arg(0)
                .arg(-1)
                .query(&mut redis.conn)
                .unwrap();
            panic!(
                "not settled after 60 s: {queued} queued, {unacked} unacknowledged, {running} \
                 running, not run: {missing:?}\nruns not succeeded:\n{}\ndead letters: {dead:?}",
                runs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let settle = settle.elapsed();
    sigterm(&last.0);
    assert_eq!(exits_within(&mut last, Duration::from_secs(10)).0, Some(0));
    drop(stderr);

    check_cleanup(&mut db, "at the end");
    check_no_tick_succeeded_twice(&mut db, "at the end");
    // Exactly once: one success per published tick, no other tick run.
    let ticks_run = db.scalar(
        "SELECT COUNT(DISTINCT code || tick_us) FROM job_runs WHERE kind IN ('scheduled', 'retry')",
    );
    assert_eq!(
        ticks_run,
        published.len() as i64,
        "ticks run besides those published"
    );
    assert_eq!(redis.len("LLEN", "celery.dead_letter"), 0, "dead letters");
    let results = redis.keys("celery-task-meta-*");
    let succeeded = results
        .iter()
        .filter(|k| redis.get(k).is_some_and(|r| r.contains("\"SUCCESS\"")))
        .count();
    assert_eq!(succeeded, published.len(), "a SUCCESS result per task");
    let count =
        |db: &mut Db, sql: &str| db.scalar(&format!("SELECT COUNT(*) FROM job_runs WHERE {sql}"));
    let abandoned = count(&mut db, "outcome = 'abandoned'");
    let reruns = count(&mut db, "outcome = 'succeeded' AND attempt > 1");
    let failed = db.texts(
        "SELECT code || ': ' || COALESCE(message, '') FROM job_runs WHERE outcome = 'failed'",
    );
    assert!(failed.is_empty(), "failed runs: {failed:?}");
    assert!(abandoned > 0, "no kill hit a running task");
    let by_job = db.texts(
        "SELECT code || ' ' || COUNT(*) FROM job_runs WHERE outcome = 'abandoned' GROUP BY code",
    );
    eprintln!("kill9 worker: abandoned by job {by_job:?}");
    eprintln!(
        "kill9 worker: {KILLS} kills in {:.1} s ({:.2} s per cycle); {claimed_kills} started a \
         task before the kill, {holding_kills} killed holding one; {} ticks published (1+ by \
         crm beat), {abandoned} runs abandoned, {reruns} ticks succeeded on a later attempt, \
         {unacked_after_kills} messages unacknowledged after the kills, all restored and run: \
         settled {:.1} s after the last kill; each tick succeeded exactly once, a SUCCESS \
         result each, queue, unacked and dead letters empty; {deleted_generations} cleanups of \
         {INACTIVE}, never half",
        kill_phase.as_secs_f64(),
        kill_phase.as_secs_f64() / KILLS as f64,
        published.len(),
        settle.as_secs_f64(),
    );
    db.close();
}

/// A service whose stderr reader went away (a pipe closed, a log collector restarted) still
/// stops on SIGTERM, also after logging into the closed pipe. Before: the "Stopping…" line
/// panicked inside the stop task (worker and scheduler never stopped), and any tracing event
/// panicked its task (tracing-subscriber reports a failed write with `eprintln!`): a scheduler
/// round that logged a failing job died and its shutdown waited 60 s for it.
#[test]
fn a_scheduler_and_a_worker_whose_stderr_was_closed_still_stop_on_sigterm() {
    let Some(redis) = Prefix::new("kill9") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db_url = format!("sqlite://{}", dir.join("crm.db").display());
    migrate(dir, &db_url);
    for (what, ready) in [
        (vec!["scheduler"], "Scheduler running"),
        (vec!["worker", "-c", "1"], "Worker running"),
    ] {
        let mut service = KillOnDrop(
            crm(dir, &db_url)
                .args(&what)
                .env("CRM_BROKER_URL", redis_url())
                .env("CRM_BROKER_KEY_PREFIX", &redis.prefix)
                // The heartbeat fails at once (and is logged as an error) rather than waiting
                // on whatever may listen on the default port.
                .env("CRM_GRAPHQL_URL", "http://127.0.0.1:1/graphql")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stderr = BufReader::new(service.0.stderr.take().unwrap());
        process::wait_for_line(&mut stderr, ready);
        drop(stderr);
        if what[0] == "scheduler" {
            // A failing run after the pipe closed: its error goes to the closed stderr.
            let at = (Utc::now() + TimeDelta::seconds(1))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            jobs_at(dir, &db_url, "log_crm_heartbeat", &at);
            let mut db = Db::open(&db_url);
            process::wait_until("the one-off to fail", Duration::from_secs(15), || {
                db.scalar("SELECT COUNT(*) FROM job_runs WHERE outcome = 'failed'") > 0
            });
            db.close();
            std::thread::sleep(Duration::from_millis(200));
        }
        sigterm(&service.0);
        process::wait_until(
            &format!("{what:?} to stop on SIGTERM"),
            Duration::from_secs(10),
            || service.0.try_wait().unwrap().is_some(),
        );
        assert_eq!(service.0.wait().unwrap().code(), Some(0), "{what:?}");
    }
}
