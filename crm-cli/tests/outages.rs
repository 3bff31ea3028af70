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
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use crm_core::testing::{TestDb, long_tests_enabled};
use outage::{Answer, Proxy, Tmpfs, graphql, upstream_of, via};
use process::{KillOnDrop, assert_exit, crm_in, exits_within, stderr, stdout, wait_until};
use serde_json::json;
use sqlx::Connection as _;

const TOKEN: &str = "outage-token";
/// Longest a GraphQL answer may take while the database is away: the pool's 10 s wait for a
/// connection, plus room for a loaded machine.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers

/// `crm serve` (with the scheduler) over `database_url`, logs in `log_dir`; stderr is kept.
struct Served {
    child: KillOnDrop,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn start(dir: &Path, database_url: &str, log_dir: &Path) -> Self {
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
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
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

fn create_product(served: &Served, name: &str, price: &str) -> String {
    let answer = served.ask(
        CREATE_PRODUCT,
        json!({"i": {"name": name, "price": price, "stock": 100}}),
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

fn total_customers(served: &Served) -> i64 {
    let answer = served.ask(TOTALS, json!({}));
    assert!(answer.ok(), "{answer:?}");
    answer.body["data"]["totalCustomers"].as_i64().unwrap()
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
    let product = create_product(&served, "Widget", "2.50");
    let name = database_name(db.url());

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
            Some(1) => assert!(
                stderr(run).lines().count() == 1 && stderr(run).contains("database"),
                "{}",
                stderr(run)
            ),
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
    eprintln!(
        "O1: {kills} rounds of pg_terminate_backend ({ended} backends ended) in 8 s; \
         {told_ok} orders created, {told_unavailable} answered UNAVAILABLE, {} orders in the \
         database, all whole; slowest answer {:?}; job run during the kills: exit {:?}",
        orders.len(),
        *slowest.lock().unwrap(),
        job_runs[0].status.code()
    );
}
