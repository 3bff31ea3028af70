//! The real `crm` starved of what it depends on: PostgreSQL connections ended under it, the
//! PostgreSQL server cut off by a proxy (the shared server itself is never stopped), the SQLite
//! file locked by another writer, and the log directory read-only or full (small tmpfs
//! mounts). Each test asserts what a client or an operator sees: the API keeps answering (a
//! clear GraphQL error while the database is away, never a 5xx nor a hang), nothing is
//! half-written, jobs fail with a clear, recorded reason, and everything works again after.
//!
//! The rows O1… of RELIABILITY.md are these tests; the figures they print (`O…:` lines on
//! stderr, shown with `--nocapture`) are the ones written there.

#[path = "support/outage.rs"]
mod outage;
#[path = "support/process.rs"]
mod process;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use crm_core::testing::{Need, TestDb, require};
use outage::{Answer, Proxy, Tmpfs, graphql, upstream_of, via};
use process::{
    KillOnDrop, assert_exit, crm_in, exits_within, quiet_schedules, served_url, stderr, stdout,
    wait_until,
};
use serde_json::json;
use sqlx::Connection as _;

const TOKEN: &str = "outage-token";
/// Longest a GraphQL answer may take while the database is away: the pool's 10 s wait for a
/// connection, plus room for a loaded machine.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers

/// `crm serve` (with the scheduler) over `database_url`, logs in `log_dir`; stderr is kept.
/// The jobs' schedules are moved out of the test's way first ([`quiet_schedules`]): the runs
/// the tests count are the ones they ask for.
struct Served {
    child: KillOnDrop,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn start(dir: &Path, database_url: &str, log_dir: &Path) -> Self {
        quiet_schedules(
            || {
                let mut crm = crm_in(dir);
                crm.env("CRM_DATABASE_URL", database_url);
                crm
            },
            &[],
        );
        let mut child = crm_in(dir)
            .env("CRM_DATABASE_URL", database_url)
            .env("CRM_LOG_DIR", log_dir)
            .env("CRM_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--scheduler",
                "--no-demo-data",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("crm serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = served_url(&line)
            .unwrap_or_else(|| {
                panic!(
                    "serve printed no URL: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_owned();
        Self {
            child: KillOnDrop(child),
            url,
            stderr,
        }
    }

    fn ask(&self, query: &str, variables: serde_json::Value) -> Answer {
        graphql(&self.url, Some(TOKEN), query, variables, ANSWER_LIMIT)
    }

    /// Still running, and its log shows no panic.
    fn assert_alive(&mut self) {
        assert!(
            self.child.0.try_wait().unwrap().is_none(),
            "crm serve exited; stderr: {}",
            self.stderr.lock().unwrap()
        );
        let log = self.stderr.lock().unwrap();
        assert!(!log.contains("panicked"), "crm serve panicked: {log}");
    }
}

const CREATE_CUSTOMER: &str =
    "mutation($i: CustomerInput!) { createCustomer(input: $i) { customer { id } } }";
const CREATE_PRODUCT: &str =
    "mutation($i: ProductInput!) { createProduct(input: $i) { product { id } } }";
const CREATE_ORDER: &str =
    "mutation($i: OrderInput!) { createOrder(input: $i) { order { id totalAmount } } }";
const TOTALS: &str = "{ totalCustomers totalOrders totalRevenue }";

fn create_customer(served: &Served, name: &str, email: &str) -> String {
    let answer = served.ask(
        CREATE_CUSTOMER,
        json!({"i": {"name": name, "email": email}}),
    );
    assert!(answer.ok(), "{answer:?}");
    answer.body["data"]["createCustomer"]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create_product(served: &Served, name: &str, price: &str, stock: i32) -> String {
    let answer = served.ask(
        CREATE_PRODUCT,
        json!({"i": {"name": name, "price": price, "stock": stock}}),
    );
    assert!(answer.ok(), "{answer:?}");
    answer.body["data"]["createProduct"]["product"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every order as (total, sum of its products' prices, number of products), read page by page
/// through the API.
fn all_orders(served: &Served) -> Vec<(String, f64, usize)> {
    let mut orders = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let answer = served.ask(
            "query($after: String) { allOrders(first: 100, after: $after) { \
               edges { cursor node { totalAmount products { price } } } } }",
            json!({ "after": after }),
        );
        assert!(answer.ok(), "{answer:?}");
        let edges = answer.body["data"]["allOrders"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        if edges.is_empty() {
            return orders;
        }
        for edge in &edges {
            let node = &edge["node"];
            let products = node["products"].as_array().unwrap();
            let sum: f64 = products
                .iter()
                .map(|p| p["price"].as_str().unwrap().parse::<f64>().unwrap())
                .sum();
            orders.push((
                node["totalAmount"].as_str().unwrap().to_owned(),
                sum,
                products.len(),
            ));
        }
        after = edges.last().unwrap()["cursor"].as_str().map(str::to_owned);
    }
}

/// `crm jobs run CODE --force` against `database_url` with logs in `log_dir`.
fn run_job(dir: &Path, database_url: &str, log_dir: &Path, code: &str, graphql: &str) -> Output {
    crm_in(dir)
        .env("CRM_DATABASE_URL", database_url)
        .env("CRM_LOG_DIR", log_dir)
        .env("CRM_API_TOKEN", TOKEN)
        .env("CRM_GRAPHQL_URL", graphql)
        // The command's own quiet default, as an operator gets it (`crm_in` asks for errors).
        .env_remove("RUST_LOG")
        .args(["jobs", "run", code, "--force"])
        .output()
        .expect("crm runs")
}

/// `crm jobs history CODE` as printed.
fn history(dir: &Path, database_url: &str, code: &str) -> String {
    let output = crm_in(dir)
        .env("CRM_DATABASE_URL", database_url)
        .args(["jobs", "history", code, "--limit", "50"])
        .output()
        .unwrap();
    assert_exit(&output, 0);
    stdout(&output)
}

/// Ends every connection to database `name` but the caller's, as an administrator would (or
/// a PostgreSQL restart does); how many were ended.
async fn terminate_backends(admin: &mut sqlx::PgConnection, name: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) ended",
    )
    .bind(name)
    .fetch_one(admin)
    .await
    .unwrap()
}

fn admin_url() -> String {
    std::env::var("CRM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| crm_core::testing::DEFAULT_TEST_POSTGRES_URL.to_owned())
}

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> String {
    let path = url.rsplit_once('/').unwrap().1;
    path.split('?').next().unwrap().to_owned()
}

/// A customer created 400 days ago who never ordered: what the cleanup deletes.
async fn inactive_customer(db: &TestDb, email: &str) {
    use crm_core::{CrmStore as _, NewCustomer};
    let customer = db
        .database()
        .create_customer(&NewCustomer::new("Gone Away", email, None).unwrap())
        .await
        .unwrap();
    db.set_customer_created_at(customer.id, Utc::now() - TimeDelta::days(400))
        .await
        .unwrap();
}

/// Asserts an answer is either a success or the clear "unavailable" GraphQL error (HTTP 200,
/// code UNAVAILABLE): never a 5xx, never an internal error.
#[track_caller]
fn assert_ok_or_unavailable(answer: &Answer) {
    assert!(
        answer.status < 500,
        "HTTP {} from the API: {}",
        answer.status,
        answer.body
    );
    if !answer.ok() {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.error_codes(), vec!["UNAVAILABLE"], "{}", answer.body);
        assert_eq!(
            answer.error_messages(),
            vec!["the database is unavailable or busy right now; try again shortly"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: connections ended

#[test]
fn postgres_connections_ended_again_and_again_cost_at_most_a_retry_and_never_half_an_order() {
    let db = async_std::task::block_on(TestDb::postgres());
    async_std::task::block_on(inactive_customer(&db, "gone@example.com"));
    let work = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut served = Served::start(work.path(), db.url(), logs.path());
    let customer = create_customer(&served, "Ada", "ada@example.com");
    let product = create_product(&served, "Widget", "2.50", 100_000);
    let name = database_name(db.url());

    // The server's own scheduler has a heartbeat due 3 s from now, in the middle of it all.
    let at =
        (Utc::now() + TimeDelta::seconds(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scheduled = crm_in(work.path())
        .env("CRM_DATABASE_URL", db.url())
        .args(["jobs", "at", "log_crm_heartbeat", &at])
        .output()
        .unwrap();
    assert_exit(&scheduled, 0);

    // Four clients order and read as fast as they can while every backend of the database is
    // ended every 200 ms, for 8 seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let told_ok = Arc::new(AtomicUsize::new(0));
    let told_unavailable = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, told_ok, told_unavailable, reads, slowest) = (
                stop.clone(),
                told_ok.clone(),
                told_unavailable.clone(),
                reads.clone(),
                slowest.clone(),
            );
            let (url, customer, product) = (served.url.clone(), customer.clone(), product.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let order = graphql(
                        &url,
                        Some(TOKEN),
                        CREATE_ORDER,
                        json!({"i": {"customerId": customer, "productIds": [product]}}),
                        ANSWER_LIMIT,
                    );
                    assert_ok_or_unavailable(&order);
                    if order.ok() {
                        assert_eq!(
                            order.body["data"]["createOrder"]["order"]["totalAmount"],
                            "2.50"
                        );
                        told_ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        told_unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    let read = graphql(&url, None, TOTALS, json!({}), ANSWER_LIMIT);
                    assert_ok_or_unavailable(&read);
                    if read.ok() {
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(order.took).max(read.took);
                }
            })
        })
        .collect();
    let killing = Instant::now();
    let mut kills = 0;
    let mut ended = 0;
    let mut job_runs = Vec::new();
    async_std::task::block_on(async {
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        while killing.elapsed() < Duration::from_secs(8) {
            ended += terminate_backends(&mut admin, &name).await;
            kills += 1;
            async_std::task::sleep(Duration::from_millis(200)).await;
        }
    });
    // A job run while connections are being ended: succeeds or fails with a clear reason.
    std::thread::scope(|s| {
        let runner = s.spawn(|| {
            run_job(
                work.path(),
                db.url(),
                logs.path(),
                "clean_inactive_customers",
                &served.url,
            )
        });
        async_std::task::block_on(async {
            let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
            for _ in 0..5 {
                terminate_backends(&mut admin, &name).await;
                async_std::task::sleep(Duration::from_millis(100)).await;
            }
        });
        job_runs.push(runner.join().unwrap());
    });
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client
            .join()
            .expect("a client saw a 5xx, an internal error or a hang");
    }
    served.assert_alive();

    // Recovered: the next request succeeds at once.
    let after = served.ask(TOTALS, json!({}));
    assert!(after.ok(), "{after:?}");
    let told_ok = told_ok.load(Ordering::SeqCst);
    let told_unavailable = told_unavailable.load(Ordering::SeqCst);
    let orders = all_orders(&served);
    // Every order the clients were told about exists; an order whose answer was lost with its
    // connection may exist too, but never half of one.
    assert!(
        orders.len() >= told_ok && orders.len() <= told_ok + told_unavailable,
        "{} orders for {told_ok} told created and {told_unavailable} told unavailable",
        orders.len()
    );
    for (total, sum, products) in &orders {
        assert_eq!((total.as_str(), *products), ("2.50", 1));
        assert!((sum - 2.5).abs() < 1e-9);
    }
    assert!(told_ok > 0 && reads.load(Ordering::SeqCst) > 0);
    for run in &job_runs {
        match run.status.code() {
            Some(0) => {}
            Some(1) => {
                let reason = stderr(run);
                assert_eq!(reason.lines().count(), 1, "{reason}");
                // Opening the database, claiming the run, or the run itself met an ended
                // connection: each says so.
                // Or the run did its work and recording its end met one: the reason says what
                // was done and that it was not recorded.
                assert!(
                    reason.starts_with("crm: clean_inactive_customers failed: storage")
                        || reason.starts_with("crm: Failed to open the database")
                        || (reason.starts_with("crm: clean_inactive_customers failed: Deleted ")
                            && reason.contains("(not recorded: storage")),
                    "{reason}"
                );
                // A run that started and failed is recorded as failed (unless recording its
                // end met an ended connection too, which the reason then says).
                if reason.starts_with("crm: clean_inactive_customers failed: storage: ")
                    && !reason.contains("not recorded")
                {
                    let runs = history(work.path(), db.url(), "clean_inactive_customers");
                    assert!(runs.contains("failed"), "{runs}");
                }
            }
            other => panic!("crm jobs run exited {other:?}: {}", stderr(run)),
        }
    }
    // The job works once the connections are left alone, and is recorded.
    let run = run_job(
        work.path(),
        db.url(),
        logs.path(),
        "clean_inactive_customers",
        &served.url,
    );
    assert_exit(&run, 0);
    assert!(history(work.path(), db.url(), "clean_inactive_customers").contains("succeeded"));
    // The scheduler's heartbeat due during the kills ran, once, and is recorded.
    wait_until(
        "the heartbeat due during the kills to be recorded",
        Duration::from_secs(30),
        || history(work.path(), db.url(), "log_crm_heartbeat").contains("succeeded"),
    );
    let heartbeats = history(work.path(), db.url(), "log_crm_heartbeat");
    assert_eq!(heartbeats.matches("succeeded").count(), 1, "{heartbeats}");
    served.assert_alive();
    eprintln!(
        "O1: {kills} rounds of pg_terminate_backend ({ended} backends ended) in 8 s; \
         {told_ok} orders created, {told_unavailable} answered UNAVAILABLE, {} orders in the \
         database, all whole; slowest answer {:?}; job run during the kills: exit {:?}",
        orders.len(),
        *slowest.lock().unwrap(),
        job_runs[0].status.code()
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: unreachable for a while (a proxy between crm and the shared server)

#[test]
fn postgres_cut_off_by_a_proxy_fails_requests_cleanly_and_crm_recovers_by_itself() {
    if !require(
        "postgres_cut_off_by_a_proxy_fails_requests_cleanly_and_crm_recovers_by_itself",
        Need::Long,
    ) {
        return;
    }
    let db = async_std::task::block_on(TestDb::postgres());
    async_std::task::block_on(inactive_customer(&db, "gone@example.com"));
    let proxy = Proxy::start(upstream_of(db.url()));
    let proxied = via(db.url(), proxy.addr());
    let work = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut served = Served::start(work.path(), &proxied, logs.path());
    let customer = create_customer(&served, "Ada", "ada@example.com");
    let product = create_product(&served, "Widget", "2.50", 100_000);
    let order = json!({"i": {"customerId": customer, "productIds": [product]}});
    assert!(served.ask(CREATE_ORDER, order.clone()).ok());

    // The cleanup is due once, 5 s from now: in the middle of the outage to come. The running
    // scheduler hears of it within its 2 s poll.
    let at =
        (Utc::now() + TimeDelta::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scheduled = crm_in(work.path())
        .env("CRM_DATABASE_URL", db.url())
        .args(["jobs", "at", "clean_inactive_customers", &at])
        .output()
        .unwrap();
    assert_exit(&scheduled, 0);
    std::thread::sleep(Duration::from_secs(3));

    // PostgreSQL goes away for 15 s: every connection is closed, new ones are refused.
    proxy.cut();
    let cut = Instant::now();
    let (read, write, job) = std::thread::scope(|s| {
        let read = s.spawn(|| served.ask(TOTALS, json!({})));
        let write = s.spawn(|| served.ask(CREATE_ORDER, order.clone()));
        let job = s.spawn(|| {
            let started = Instant::now();
            let run = run_job(
                work.path(),
                &proxied,
                logs.path(),
                "clean_inactive_customers",
                &served.url,
            );
            (run, started.elapsed())
        });
        (
            read.join().unwrap(),
            write.join().unwrap(),
            job.join().unwrap(),
        )
    });
    // Reads and writes get the clear GraphQL error within the pool's bounded wait.
    for answer in [&read, &write] {
        assert!(!answer.ok(), "{answer:?}");
        assert_ok_or_unavailable(answer);
        assert!(answer.took < Duration::from_secs(20), "{:?}", answer.took);
    }
    // The server itself is up: its health check answers.
    let health = served.url.replace("/graphql", "/healthz");
    assert_eq!(process::http_get(&health, None).0, 200);
    // A one-shot job cannot reach the database: exit 1, one line saying so.
    let (run, run_took) = job;
    assert_exit(&run, 1);
    let reason = stderr(&run);
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.starts_with("crm: Failed to open the database postgres://"),
        "{reason}"
    );
    served.assert_alive();
    while cut.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }

    // Back: the service recovers by itself.
    proxy.restore();
    let restored = Instant::now();
    let mut first_ok = None;
    while restored.elapsed() < Duration::from_secs(30) {
        let answer = served.ask(TOTALS, json!({}));
        assert_ok_or_unavailable(&answer);
        if answer.ok() {
            first_ok = Some(restored.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered_in = first_ok.expect("the API never recovered after the database came back");
    // The mutation that failed wrote nothing: one order, the one from before.
    let totals = served.ask(TOTALS, json!({}));
    assert_eq!(totals.body["data"]["totalOrders"], 1, "{}", totals.body);
    // The cleanup due during the outage runs once the database is back (the scheduler tries
    // again every 5 s after a ledger error) and is recorded.
    wait_until(
        "the cleanup due during the outage to run",
        Duration::from_secs(60),
        || history(work.path(), db.url(), "clean_inactive_customers").contains("succeeded"),
    );
    let ran_after = restored.elapsed();
    let runs = history(work.path(), db.url(), "clean_inactive_customers");
    assert_eq!(runs.matches("succeeded").count(), 1, "{runs}");
    assert!(runs.contains("Deleted 1 inactive customers"), "{runs}");
    assert_eq!(
        std::fs::read_to_string(logs.path().join("customer_cleanup_log.txt"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    served.assert_alive();
    eprintln!(
        "O2: during a 15 s outage a read answered UNAVAILABLE in {:?}, a mutation in {:?}; \
         `crm jobs run` exited 1 in {run_took:?}; after the proxy let traffic through again \
         the API answered in {recovered_in:?}, the cleanup due at {at} ran {ran_after:?} after",
        read.took, write.took
    );
}

/// `crm serve` against a PostgreSQL that is not there, in the two ways it can be not there.
fn start_without_database(proxy: &Proxy) -> (Option<i32>, String, Duration) {
    let work = tempfile::tempdir().unwrap();
    let url = via(
        &format!("{}/crm", admin_url().rsplit_once('/').unwrap().0),
        proxy.addr(),
    );
    let started = Instant::now();
    let mut child = KillOnDrop(
        crm_in(work.path())
            .env("CRM_DATABASE_URL", &url)
            .env("CRM_LOG_DIR", work.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--scheduler"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (code, err) = exits_within(&mut child, Duration::from_secs(40));
    (code, err, started.elapsed())
}

#[test]
fn crm_started_while_postgres_refuses_connections_exits_1_with_a_one_line_reason() {
    let proxy = Proxy::start(upstream_of(&admin_url()));
    proxy.cut();
    let (code, err, took) = start_without_database(&proxy);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("crm: Failed to open the database postgres://"),
        "{err}"
    );
    assert!(took < Duration::from_secs(25), "{took:?}");
    eprintln!("O3: refused: exit 1 after {took:?}: {}", err.trim());
}

#[test]
fn crm_started_while_postgres_never_answers_exits_1_with_a_one_line_reason() {
    let proxy = Proxy::start(upstream_of(&admin_url()));
    proxy.black_hole();
    let (code, err, took) = start_without_database(&proxy);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("crm: Failed to open the database postgres://")
            && err.ends_with(
                "error communicating with database: no answer from the server within 15 s\n"
            ),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("O3: never answering: exit 1 after {took:?}: {}", err.trim());
}

// ---------------------------------------------------------------------------------------------
// SQLite: locked by another writer

/// Holds SQLite's write lock on `url`'s file (`BEGIN IMMEDIATE` on a connection of its own)
/// for `hold`, on a thread; returns once the lock is taken.
fn hold_write_lock(url: &str, hold: Duration) -> std::thread::JoinHandle<()> {
    let url = url.to_owned();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        async_std::task::block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            // A write inside the lock, as a real writer would have pending.
            sqlx::query("UPDATE products SET stock = stock WHERE id < 0")
                .execute(&mut conn)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            async_std::task::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        });
    });
    locked_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the test takes the write lock");
    holder
}

/// The SQLite database of a test, served, with a customer, a product and an inactive customer.
struct SqliteCrm {
    db: TestDb,
    work: tempfile::TempDir,
    logs: tempfile::TempDir,
    served: Served,
    order: serde_json::Value,
}

impl SqliteCrm {
    fn start() -> Self {
        let db = async_std::task::block_on(TestDb::sqlite());
        async_std::task::block_on(inactive_customer(&db, "gone@example.com"));
        let work = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let served = Served::start(work.path(), db.url(), logs.path());
        let customer = create_customer(&served, "Ada", "ada@example.com");
        let product = create_product(&served, "Widget", "2.50", 100_000);
        let order = json!({"i": {"customerId": customer, "productIds": [product]}});
        Self {
            db,
            work,
            logs,
            served,
            order,
        }
    }

    fn cleanup(&self, log_dir: &Path) -> (Output, Duration) {
        let started = Instant::now();
        let run = run_job(
            self.work.path(),
            self.db.url(),
            log_dir,
            "clean_inactive_customers",
            &self.served.url,
        );
        (run, started.elapsed())
    }

    fn totals(&self) -> (i64, i64) {
        let answer = self.served.ask(TOTALS, json!({}));
        assert!(answer.ok(), "{answer:?}");
        (
            answer.body["data"]["totalCustomers"].as_i64().unwrap(),
            answer.body["data"]["totalOrders"].as_i64().unwrap(),
        )
    }
}

#[test]
fn sqlite_locked_by_another_writer_for_less_than_the_busy_timeout_makes_writes_wait_and_succeed() {
    let crm = SqliteCrm::start();
    assert_eq!(crm.totals(), (2, 0));

    let holder = hold_write_lock(crm.db.url(), Duration::from_secs(3));
    let locked = Instant::now();
    let (order, (job, job_took), read) = std::thread::scope(|s| {
        let order = s.spawn(|| crm.served.ask(CREATE_ORDER, crm.order.clone()));
        let job = s.spawn(|| crm.cleanup(crm.logs.path()));
        let read = s.spawn(|| crm.served.ask(TOTALS, json!({})));
        (
            order.join().unwrap(),
            job.join().unwrap(),
            read.join().unwrap(),
        )
    });
    holder.join().unwrap();
    // Readers are not held up by a writer (WAL); the mutation and the job waited and succeeded.
    assert!(read.ok(), "{read:?}");
    assert!(read.took < Duration::from_secs(2), "{:?}", read.took);
    assert!(order.ok(), "{order:?}");
    assert!(
        order.took >= Duration::from_millis(2500),
        "{:?}",
        order.took
    );
    assert_exit(&job, 0);
    let said = stdout(&job);
    assert!(
        said.starts_with("clean_inactive_customers: succeeded in ")
            && said.ends_with(": Deleted 1 inactive customers\n"),
        "{said}"
    );
    assert_eq!(crm.totals(), (1, 1));
    eprintln!(
        "O4: write lock held 3 s: a read answered in {:?}, createOrder waited {:?} and \
         succeeded, the cleanup waited and succeeded in {job_took:?} ({:?} after the lock)",
        read.took,
        order.took,
        locked.elapsed()
    );
}

#[test]
fn sqlite_locked_by_another_writer_past_the_busy_timeout_fails_cleanly_then_works_again() {
    if !require(
        "sqlite_locked_by_another_writer_past_the_busy_timeout_fails_cleanly_then_works_again",
        Need::Long,
    ) {
        return;
    }
    let crm = SqliteCrm::start();
    assert!(crm.served.ask(CREATE_ORDER, crm.order.clone()).ok());
    assert_eq!(crm.totals(), (2, 1));
    let before = std::fs::read_to_string(crm.logs.path().join("customer_cleanup_log.txt"))
        .unwrap_or_default();

    // 16 s: longer than the 10 s busy timeout, with room for a loaded machine.
    let holder = hold_write_lock(crm.db.url(), Duration::from_secs(16));
    let (order, (job, job_took), read) = std::thread::scope(|s| {
        let order = s.spawn(|| crm.served.ask(CREATE_ORDER, crm.order.clone()));
        let job = s.spawn(|| crm.cleanup(crm.logs.path()));
        let read = s.spawn(|| crm.served.ask(TOTALS, json!({})));
        (
            order.join().unwrap(),
            job.join().unwrap(),
            read.join().unwrap(),
        )
    });
    // Reads carry on; the mutation gets the clear error after the busy timeout.
    assert!(read.ok(), "{read:?}");
    assert!(!order.ok(), "{order:?}");
    assert_ok_or_unavailable(&order);
    assert!(order.took >= Duration::from_secs(9), "{:?}", order.took);
    // The job fails with a one-line reason naming the lock.
    assert_exit(&job, 1);
    let reason = stderr(&job);
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(reason.contains("database is locked"), "{reason}");
    holder.join().unwrap();

    // Nothing was half-written: the same customers and orders, no cleanup line.
    assert_eq!(crm.totals(), (2, 1));
    assert_eq!(
        std::fs::read_to_string(crm.logs.path().join("customer_cleanup_log.txt"))
            .unwrap_or_default(),
        before
    );
    // Works again after the release.
    assert!(crm.served.ask(CREATE_ORDER, crm.order.clone()).ok());
    let (again, _) = crm.cleanup(crm.logs.path());
    assert_exit(&again, 0);
    assert_eq!(crm.totals(), (1, 2));
    eprintln!(
        "O5: write lock held 16 s: a read answered in {:?}; createOrder answered UNAVAILABLE \
         after {:?}; the cleanup exited 1 after {job_took:?}: {}",
        read.took,
        order.took,
        reason.trim()
    );
}

// ---------------------------------------------------------------------------------------------
// The log directory read-only or full

#[test]
fn a_read_only_log_directory_fails_the_cleanup_before_it_deletes_anyone() {
    let crm = SqliteCrm::start();
    let read_only = Tmpfs::mount("64k", "ro");
    assert_eq!(crm.totals(), (2, 0));

    let (run, _) = crm.cleanup(read_only.path());
    assert_exit(&run, 1);
    let file = read_only.path().join("customer_cleanup_log.txt");
    assert_eq!(
        stderr(&run),
        format!(
            "crm: clean_inactive_customers failed: cannot write log file {}: Read-only file \
             system (os error 30)\n",
            file.display()
        )
    );
    // Nobody was deleted, and the failure is recorded with its reason.
    assert_eq!(crm.totals(), (2, 0));
    let runs = history(crm.work.path(), crm.db.url(), "clean_inactive_customers");
    assert!(runs.contains("failed"), "{runs}");
    assert!(runs.contains("Read-only file system"), "{runs}");
    // The other jobs and the server carry on.
    let report = run_job(
        crm.work.path(),
        crm.db.url(),
        crm.logs.path(),
        "generate_crm_report",
        &crm.served.url,
    );
    assert_exit(&report, 0);
    assert!(crm.served.ask(CREATE_ORDER, crm.order.clone()).ok());
    // And the cleanup works once the directory is writable again.
    read_only.remount("rw");
    let (again, _) = crm.cleanup(read_only.path());
    assert_exit(&again, 0);
    assert_eq!(crm.totals(), (1, 1));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .ends_with(" - Deleted 1 inactive customers\n")
    );
    eprintln!("O6: read-only log directory: {}", stderr(&run).trim());
}

#[test]
fn a_full_log_directory_fails_the_jobs_saying_what_they_did() {
    let crm = SqliteCrm::start();
    let full = Tmpfs::mount("64k", "");
    let file = full.path().join("customer_cleanup_log.txt");
    // Earlier runs' lines, 80 of 51 bytes: 16 bytes short of a 4 KiB page, so the next line
    // fits in part and then finds the disk full.
    let earlier: String = (0..80)
        .map(|i| {
            format!(
                "2026-01-{:02} 02:00:00 - Deleted 0 inactive customers\n",
                i % 28 + 1
            )
        })
        .collect();
    assert_eq!(earlier.len(), 4080);
    std::fs::write(&file, &earlier).unwrap();
    create_product(&crm.served, "Scarce", "1.00", 3);
    let filler = full.fill();

    // The cleanup did its work; the run fails and says what was done.
    let (run, _) = crm.cleanup(full.path());
    assert_exit(&run, 1);
    let expected = format!(
        "crm: clean_inactive_customers failed: Deleted 1 inactive customers, but cannot write \
         log file {}: No space left on device (os error 28)\n",
        file.display()
    );
    assert_eq!(stderr(&run), expected);
    assert_eq!(crm.totals(), (1, 0));
    let runs = history(crm.work.path(), crm.db.url(), "clean_inactive_customers");
    assert!(
        runs.contains("Deleted 1 inactive customers, but cannot write log file"),
        "{runs}"
    );
    // The log file is as it was: the part of the line that fit was taken back.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), earlier);
    // The restock, through the API, likewise.
    let restock = run_job(
        crm.work.path(),
        crm.db.url(),
        full.path(),
        "update_low_stock",
        &crm.served.url,
    );
    assert_exit(&restock, 1);
    assert_eq!(
        stderr(&restock),
        format!(
            "crm: update_low_stock failed: Restocked 1 products, but cannot write log file {}: \
             No space left on device (os error 28)\n",
            full.path().join("low_stock_updates_log.txt").display()
        )
    );
    let scarce = crm.served.ask(
        "{ allProducts(filter: {nameIcontains: \"Scarce\"}) { edges { node { stock } } } }",
        json!({}),
    );
    assert_eq!(
        scarce.body["data"]["allProducts"]["edges"][0]["node"]["stock"], 13,
        "{}",
        scarce.body
    );
    // The server and the jobs logging elsewhere carry on.
    assert!(crm.served.ask(CREATE_ORDER, crm.order.clone()).ok());
    let report = run_job(
        crm.work.path(),
        crm.db.url(),
        crm.logs.path(),
        "generate_crm_report",
        &crm.served.url,
    );
    assert_exit(&report, 0);
    // Room again: the next run logs.
    std::fs::remove_file(filler).unwrap();
    let (again, _) = crm.cleanup(full.path());
    assert_exit(&again, 0);
    let now = std::fs::read_to_string(&file).unwrap();
    let added = now.strip_prefix(&earlier).expect("earlier lines kept");
    assert_eq!(added.len(), 51, "{added:?}");
    assert!(
        added.ends_with(" - Deleted 0 inactive customers\n"),
        "{added:?}"
    );
    eprintln!(
        "O7: full log directory: {} / {}",
        stderr(&run).trim(),
        stderr(&restock).trim()
    );
}

#[test]
fn postgres_partitioned_mid_query_gets_a_503_within_the_request_timeout_not_a_hang() {
    if !require(
        "postgres_partitioned_mid_query_gets_a_503_within_the_request_timeout_not_a_hang",
        Need::Long,
    ) {
        return;
    }
    let db = async_std::task::block_on(TestDb::postgres());
    let proxy = Proxy::start(upstream_of(db.url()));
    let proxied = via(db.url(), proxy.addr());
    let work = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut served = Served::start(work.path(), &proxied, logs.path());
    let customer = create_customer(&served, "Ada", "ada@example.com");
    let product = create_product(&served, "Widget", "2.50", 100);
    let order = json!({"i": {"customerId": customer, "productIds": [product]}});

    // Six clients order in a loop; the network to PostgreSQL then stops carrying data, with
    // the connections left open (queries in flight wait for an answer that does not come).
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (url, order, stop) = (served.url.clone(), order.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let answer = graphql(
                        &url,
                        Some(TOKEN),
                        CREATE_ORDER,
                        order.clone(),
                        Duration::from_secs(120),
                    );
                    answers.push((answer.status, answer.error_codes(), answer.took));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    proxy.stall();
    // Longer than the server's request timeout.
    std::thread::sleep(crm_server::REQUEST_TIMEOUT + Duration::from_secs(8));
    proxy.restore();
    stop.store(true, Ordering::SeqCst);
    let mut slowest = Duration::ZERO;
    let (mut ok, mut unavailable, mut timed_out) = (0, 0, 0);
    for client in clients {
        for (status, codes, took) in client.join().unwrap() {
            slowest = slowest.max(took);
            match (status, codes.as_slice()) {
                (200, []) => ok += 1,
                (200, [code]) if code == "UNAVAILABLE" => unavailable += 1,
                (503, [code]) if code == "UNAVAILABLE" => timed_out += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
    // Nobody waited much past the request timeout, and those whose query was in flight were
    // told so.
    assert!(
        slowest < crm_server::REQUEST_TIMEOUT + Duration::from_secs(5),
        "{slowest:?}"
    );
    assert!(timed_out > 0, "no request was caught mid-query");
    served.assert_alive();
    // The network is back: the service answers by itself.
    let restored = Instant::now();
    wait_until("the API to answer again", Duration::from_secs(30), || {
        served.ask(TOTALS, json!({})).ok()
    });
    // Every order is whole (one product, 2.50), whichever way its request ended.
    for (total, _, products) in all_orders(&served) {
        assert_eq!((total.as_str(), products), ("2.50", 1));
    }
    eprintln!(
        "O8: partition of {} s mid-traffic: {ok} orders ok, {unavailable} answered UNAVAILABLE \
         (no connection within 10 s), {timed_out} answered 503 UNAVAILABLE at the request \
         timeout; slowest answer {slowest:?}; answering again {:?} after the network came back",
        (crm_server::REQUEST_TIMEOUT + Duration::from_secs(8)).as_secs(),
        restored.elapsed()
    );
}
