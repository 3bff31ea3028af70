//! Load: 200 concurrent GraphQL clients for 60 s against the real `crm serve --scheduler`,
//! once over SQLite and once over PostgreSQL, while every job runs on a fast schedule.
//!
//! Each client is an async task with one keep-alive HTTP/1.1 connection on loopback, mixing
//! queries (customers, products and orders pages with filters, the totals), `createOrder`,
//! `updateLowStockProducts` and `createProduct` (new low-stock products, so restocking goes on
//! during the whole run: orders do not change stock, so without them the first restock would
//! be the last). Meanwhile an operator schedules a one-off run of each of the five jobs every
//! few seconds through `scheduleJobRun` (the schedules are also `* * * * *`), and dormant
//! customers (created two years ago, with an old order) keep appearing so the cleanup really
//! deletes during the load.
//!
//! What must hold: no 5xx, no transport error, no GraphQL error; every order a client was told
//! about exists and the order count reconciles exactly (+ orders created − the dormant
//! customers' orders the cleanup deleted); the cleanup deleted exactly the dormant customers
//! (its log lines add up to them) and none of the load's; every product's final stock is its
//! first stock + 10 × the restocks reported (to clients, and in the restock job's log); all five
//! jobs ran during the window, none failed. Latency percentiles per kind of request,
//! throughput, the server's peak memory and open descriptors are printed (RELIABILITY.md L1, L2).
//!
//! A third run, over SQLite for 20 s, has every client open a new connection per request (no
//! keep-alive), which stresses the server's accept loop (RELIABILITY.md L3).
//!
//! Long (about 65 s each, 25 s the third; one at a time): left out only by `CRM_TESTS_LEAVE_OUT=long`.
//! `CRM_LOAD_CLIENTS` and `CRM_LOAD_SECONDS` change the size for a quick try.

#[path = "support/load.rs"]
mod load;
#[path = "support/process.rs"]
mod process;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use crm_core::testing::{Need, TestDb, require};
use crm_core::{CrmStore as _, CustomerId};
use serde_json::{Value, json};

use load::{Answer, GraphqlConnection, Latencies, Rng, plain_id};
use process::{KillOnDrop, assert_exit, crm_in, exits_within, served_url, sigterm, wait_for_line};

const TOKEN: &str = "load-test-token";
const JOBS: [&str; 5] = [
    "clean_inactive_customers",
    "send_order_reminders",
    "log_crm_heartbeat",
    "update_low_stock",
    "generate_crm_report",
];
/// Customers the clients order for: created now, so never inactive.
const LOAD_CUSTOMERS: usize = 200;
/// Products the clients order (their stocks spread over 0–19, so some start low).
const SEED_PRODUCTS: usize = 40;
/// Dormant customers present before the load: half with an old order, half with none.
const SEED_DORMANT: usize = 20;
/// How long one request may take before it counts as a transport failure.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// Every this often, each job gets a one-off run (staggered across the jobs).
const ONE_OFF_EVERY: Duration = Duration::from_secs(5);
/// Every this often, a new dormant customer appears.
const DORMANT_EVERY: Duration = Duration::from_secs(3);

/// The two runs (SQLite, PostgreSQL) must not share the two cores with each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn load_sqlite_200_clients_60_s_with_every_job_running() {
    if !require(
        "load_sqlite_200_clients_60_s_with_every_job_running",
        Need::Long,
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    async_std::task::block_on(async {
        let db = TestDb::sqlite().await;
        run_load("sqlite", &db, Connections::KeepAlive, 60).await;
    });
}

#[test]
fn load_postgres_200_clients_60_s_with_every_job_running() {
    if !require(
        "load_postgres_200_clients_60_s_with_every_job_running",
        Need::Long,
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    async_std::task::block_on(async {
        let db = TestDb::postgres().await;
        run_load("postgres", &db, Connections::KeepAlive, 60).await;
    });
}

/// Clients that open a connection per request (no keep-alive) stress the accept loop: 200
/// clients for 20 s over SQLite, a few thousand connections.
#[test]
fn load_sqlite_200_clients_20_s_with_a_connection_per_request() {
    if !require(
        "load_sqlite_200_clients_20_s_with_a_connection_per_request",
        Need::Long,
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    async_std::task::block_on(async {
        let db = TestDb::sqlite().await;
        run_load("sqlite", &db, Connections::PerRequest, 20).await;
    });
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The kinds of request, for the latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Customers,
    Products,
    Orders,
    Totals,
    CreateOrder,
    Restock,
    CreateProduct,
    /// The operator's `scheduleJobRun` and the dormant customers' requests.
    Operator,
}

#[derive(Debug, Clone)]
struct SeedProduct {
    id: String,
    price_cents: i64,
}

/// What the load starts from.
struct Seeded {
    /// Global IDs and e-mails of the load's customers.
    customers: Vec<(String, String)>,
    products: Vec<SeedProduct>,
}

/// What one client saw.
#[derive(Default)]
struct Report {
    latencies: HashMap<Op, Latencies>,
    status_5xx: Vec<String>,
    other_status: Vec<String>,
    transport: Vec<String>,
    graphql_errors: Vec<String>,
    wrong_answers: Vec<String>,
    /// Orders the server said it created.
    orders: Vec<i64>,
    /// (product id, stock now) per product `updateLowStockProducts` said it restocked.
    restocks: Vec<(i64, i64)>,
    /// (product id, name, first stock) of the products created.
    products: Vec<(i64, String, i64)>,
    reconnects: u64,
    /// Requests answered in full: HTTP 200 without GraphQL errors (a GraphQL error answered
    /// with HTTP 200 is a failure, not a request served).
    served: u64,
}

impl Report {
    /// Records the outcome of a request; the answer's `data` when it fully succeeded.
    fn check(&mut self, op: Op, took: Duration, outcome: Result<Answer, String>) -> Option<Value> {
        self.latencies.entry(op).or_default().push(took);
        let answer = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                self.transport.push(format!("{op:?}: {e}"));
                return None;
            }
        };
        if answer.status >= 500 {
            self.status_5xx
                .push(format!("{op:?}: {} {}", answer.status, answer.body));
            return None;
        }
        if answer.status != 200 {
            self.other_status
                .push(format!("{op:?}: {} {}", answer.status, answer.body));
            return None;
        }
        let errors = answer.errors();
        if !errors.is_empty() {
            self.graphql_errors
                .push(format!("{op:?}: {}", errors.join("; ")));
            return None;
        }
        self.served += 1;
        Some(answer.body["data"].clone())
    }

    fn merge(&mut self, other: Report) {
        for (op, latencies) in other.latencies {
            self.latencies.entry(op).or_default().extend(latencies);
        }
        self.status_5xx.extend(other.status_5xx);
        self.other_status.extend(other.other_status);
        self.transport.extend(other.transport);
        self.graphql_errors.extend(other.graphql_errors);
        self.wrong_answers.extend(other.wrong_answers);
        self.orders.extend(other.orders);
        self.restocks.extend(other.restocks);
        self.products.extend(other.products);
        self.reconnects += other.reconnects;
        self.served += other.served;
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn post(
    conn: &mut GraphqlConnection,
    report: &mut Report,
    op: Op,
    query: &str,
    variables: Value,
) -> Option<Value> {
    let started = Instant::now();
    let outcome = conn.post(query, variables, REQUEST_LIMIT).await;
    report.check(op, started.elapsed(), outcome)
}

/// Setup and bookkeeping requests, which must simply work.
async fn must(conn: &mut GraphqlConnection, query: &str, variables: Value) -> Value {
    let answer = conn
        .post(query, variables, REQUEST_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    assert!(
        answer.status == 200 && answer.errors().is_empty(),
        "{query}: {} {}",
        answer.status,
        answer.body
    );
    answer.body["data"].clone()
}

const CREATE_ORDER: &str = "mutation($input: OrderInput!) { createOrder(input: $input) { order { id totalAmount orderDate customer { id } products { id } } } }";
const RESTOCK: &str = "mutation { updateLowStockProducts { products { id name stock } message } }";
const CREATE_PRODUCT: &str = "mutation($input: ProductInput!) { createProduct(input: $input) { product { id name stock } } }";

/// One client: its own connection, its own mix, until `until`.
async fn client(
    n: u64,
    addr: String,
    seeded: Arc<Seeded>,
    until: Instant,
    connections: Connections,
) -> Report {
    let mut report = Report::default();
    let mut conn = match GraphqlConnection::open(&addr, TOKEN).await {
        Ok(conn) if connections == Connections::PerRequest => conn.one_request_per_connection(),
        Ok(conn) => conn,
        Err(e) => {
            report.transport.push(format!("connect: {e}"));
            return report;
        }
    };
    let mut rng = Rng::new(n + 1);
    let mut made = 0;
    while Instant::now() < until {
        let roll = rng.below(100);
        let (customer_id, email) =
            &seeded.customers[rng.below(seeded.customers.len() as u64) as usize];
        match roll {
            0..=11 => {
                let filter = json!({ "nameIcontains": format!("load {}", rng.below(20)) });
                post(&mut conn, &mut report, Op::Customers,
                    "query($f: CustomerFilterInput) { allCustomers(filter: $f, orderBy: \"-createdAt\", first: 20) { totalCount edges { node { id name email createdAt } } } }",
                    json!({ "f": filter })).await;
            }
            12..=23 => {
                let filter = if rng.below(2) == 0 {
                    json!({ "stockLt": 10 })
                } else {
                    json!({ "priceGte": "2.00", "priceLte": money(1000 + rng.below(5000) as i64), "nameIcontains": "' OR 1=1 --" })
                };
                post(&mut conn, &mut report, Op::Products,
                    "query($f: ProductFilterInput) { allProducts(filter: $f, orderBy: \"-stock,name\", first: 20) { totalCount edges { node { id name price stock } } } }",
                    json!({ "f": filter })).await;
            }
            24..=35 => {
                post(&mut conn, &mut report, Op::Orders,
                    "query($email: String) { allOrders(filter: { customerEmail: $email }, orderBy: \"-orderDate\", first: 10) { totalCount edges { node { id totalAmount orderDate customer { email } products { id name price } } } } }",
                    json!({ "email": email })).await;
            }
            36..=49 => {
                post(
                    &mut conn,
                    &mut report,
                    Op::Totals,
                    "{ hello totalCustomers totalOrders totalRevenue }",
                    json!({}),
                )
                .await;
            }
            50..=92 => {
                let mut picked: Vec<&SeedProduct> = Vec::new();
                for _ in 0..=rng.below(3) {
                    let p = &seeded.products[rng.below(seeded.products.len() as u64) as usize];
                    if !picked.iter().any(|q| q.id == p.id) {
                        picked.push(p);
                    }
                }
                let ids: Vec<&str> = picked.iter().map(|p| p.id.as_str()).collect();
                let expected = money(picked.iter().map(|p| p.price_cents).sum());
                let data = post(
                    &mut conn,
                    &mut report,
                    Op::CreateOrder,
                    CREATE_ORDER,
                    json!({ "input": { "customerId": customer_id, "productIds": ids } }),
                )
                .await;
                if let Some(data) = data {
                    let order = &data["createOrder"]["order"];
                    report.orders.push(plain_id(order["id"].as_str().unwrap()));
                    if order["totalAmount"] != expected.as_str()
                        || order["customer"]["id"] != customer_id.as_str()
                        || order["products"].as_array().map(Vec::len) != Some(picked.len())
                    {
                        report.wrong_answers.push(format!(
                            "createOrder answered {order} for {ids:?}, expected total {expected}"
                        ));
                    }
                }
            }
            93..=96 => {
                if let Some(data) =
                    post(&mut conn, &mut report, Op::Restock, RESTOCK, json!({})).await
                {
                    for p in data["updateLowStockProducts"]["products"]
                        .as_array()
                        .unwrap()
                    {
                        report.restocks.push((
                            plain_id(p["id"].as_str().unwrap()),
                            p["stock"].as_i64().unwrap(),
                        ));
                    }
                }
            }
            _ => {
                made += 1;
                let stock = rng.below(10) as i64;
                let name = format!("Load item {n}-{made}");
                if let Some(data) = post(
                    &mut conn,
                    &mut report,
                    Op::CreateProduct,
                    CREATE_PRODUCT,
                    json!({ "input": { "name": name, "price": "3.75", "stock": stock } }),
                )
                .await
                {
                    let p = &data["createProduct"]["product"];
                    report
                        .products
                        .push((plain_id(p["id"].as_str().unwrap()), name, stock));
                }
            }
        }
    }
    report.reconnects = conn.reconnects;
    report
}

/// The load's starting point, made through the API as a user would.
async fn seed(conn: &mut GraphqlConnection) -> (Seeded, Vec<(i64, String, i64)>) {
    let input: Vec<Value> = (0..LOAD_CUSTOMERS)
        .map(|i| json!({ "name": format!("Load {i}"), "email": format!("load-{i}@example.com"), "phone": "+1234567890" }))
        .collect();
    let data = must(
        conn,
        "mutation($input: [CustomerInput!]!) { bulkCreateCustomers(input: $input) { customers { id email } errors } }",
        json!({ "input": input }),
    )
    .await;
    let customers: Vec<(String, String)> = data["bulkCreateCustomers"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(customers.len(), LOAD_CUSTOMERS, "{data}");
    let mut products = Vec::new();
    let mut first_stock = Vec::new();
    for i in 0..SEED_PRODUCTS {
        let price_cents = 199 + 37 * i as i64;
        let name = format!("Seed item {i}");
        let stock = (i % 20) as i64;
        let data = must(
            conn,
            CREATE_PRODUCT,
            json!({ "input": { "name": name, "price": money(price_cents), "stock": stock } }),
        )
        .await;
        let id = data["createProduct"]["product"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        first_stock.push((plain_id(&id), name, stock));
        products.push(SeedProduct { id, price_cents });
    }
    (
        Seeded {
            customers,
            products,
        },
        first_stock,
    )
}

/// A customer created two years ago (through the API, then backdated in the database, which
/// the API cannot do), with an old order when `with_order`: one the cleanup must delete.
/// Returns its id and how many orders it has.
async fn dormant_customer(
    conn: &mut GraphqlConnection,
    report: &mut Report,
    db: &TestDb,
    name: &str,
    with_order: Option<&str>,
) -> Option<(CustomerId, i64)> {
    let long_ago = Utc::now() - TimeDelta::days(730);
    let data = post(
        conn,
        report,
        Op::Operator,
        "mutation($input: CustomerInput!) { createCustomer(input: $input) { customer { id } } }",
        json!({ "input": { "name": name, "email": format!("{}@example.com", name.replace(' ', "-").to_lowercase()) } }),
    )
    .await?;
    let global = data["createCustomer"]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut orders = 0;
    if let Some(product) = with_order {
        post(
            conn,
            report,
            Op::Operator,
            CREATE_ORDER,
            json!({ "input": { "customerId": global, "productIds": [product], "orderDate": long_ago.to_rfc3339() } }),
        )
        .await?;
        orders = 1;
    }
    let id = plain_id(&global);
    db.set_customer_created_at(id, long_ago)
        .await
        .expect("backdating a customer");
    Some((id, orders))
}

/// Lines of a job's log file.
fn log_lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How the clients use their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    /// One keep-alive connection per client for the whole run.
    KeepAlive,
    /// A new connection for every request.
    PerRequest,
}

async fn run_load(backend: &str, db: &TestDb, connections: Connections, default_seconds: u64) {
    let clients = setting("CRM_LOAD_CLIENTS", 200);
    let seconds = setting("CRM_LOAD_SECONDS", default_seconds);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let crm = || {
        let mut command = crm_in(dir.path());
        command
            .env("CRM_DATABASE_URL", db.url())
            .env("CRM_API_TOKEN", TOKEN)
            .env("CRM_LOG_DIR", &logs);
        command
    };
    // Every job every minute, besides the one-off runs below.
    for code in JOBS {
        assert_exit(
            &crm()
                .args(["jobs", "schedule", code, "* * * * *"])
                .output()
                .unwrap(),
            0,
        );
    }
    let server_log = dir.path().join("server.log");
    let mut server = KillOnDrop(
        crm()
            .args([
                "serve",
                "--scheduler",
                "--bind",
                "127.0.0.1:0",
                "--no-demo-data",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(File::create(&server_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let banner = wait_for_line(&mut stdout, "Serving GraphQL at ");
    let url = served_url(&banner).expect("the GraphQL URL");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/graphql")
        .to_owned();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let server_tail = || {
        let mut text = String::new();
        File::open(&server_log)
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_owned()
    };

    let mut admin = GraphqlConnection::open(&addr, TOKEN).await.unwrap();
    // Runs started during the load (the reminders take seconds under it) finish first.
    let settled = Instant::now();
    loop {
        let data = must(&mut admin, "{ jobs { code state } }", json!({})).await;
        let jobs = data["jobs"].as_array().unwrap();
        if !jobs.iter().any(|j| j["state"] == "RUNNING") {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(120),
            "jobs still running 2 minutes after the load: {data}"
        );
        async_std::task::sleep(Duration::from_millis(500)).await;
    }
    let (seeded, mut first_stock) = seed(&mut admin).await;
    let mut operator = Report::default();
    // Dormant customers from before the load.
    let mut dormant = Vec::new();
    for i in 0..SEED_DORMANT {
        let product = (i % 2 == 0).then_some(seeded.products[i].id.as_str());
        dormant.push(
            dormant_customer(
                &mut admin,
                &mut operator,
                db,
                &format!("Dormant {i}"),
                product,
            )
            .await
            .expect("seeding dormant customers"),
        );
    }
    let before = must(&mut admin, "{ totalOrders totalCustomers }", json!({})).await;
    let orders_before = before["totalOrders"].as_i64().unwrap();

    // The load.
    let seeded = Arc::new(seeded);
    let started_at = Utc::now();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            async_std::task::spawn(client(n, addr.clone(), seeded.clone(), until, connections))
        })
        .collect();
    let (mut peak_rss, mut peak_fds) = (0_u64, 0_usize);
    let sampler = async {
        while Instant::now() < until {
            peak_rss = peak_rss.max(load::proc_status_kb(pid, "VmRSS").unwrap_or(0));
            peak_fds = peak_fds.max(load::open_fds(pid).unwrap_or(0));
            async_std::task::sleep(Duration::from_millis(500)).await;
        }
    };
    let mut ops_conn = GraphqlConnection::open(&addr, TOKEN).await.unwrap();
    let mut one_offs = 0;
    let mut next_dormant = 0;
    let operator_work = async {
        let mut next_one_off = Instant::now();
        let mut next_dormant_at = Instant::now();
        while Instant::now() < until {
            if Instant::now() >= next_one_off {
                next_one_off += ONE_OFF_EVERY;
                for (i, code) in JOBS.iter().enumerate() {
                    let at = Utc::now() + TimeDelta::milliseconds(1500 + 700 * i as i64);
                    if post(&mut ops_conn, &mut operator, Op::Operator,
                        "mutation($code: String!, $at: DateTime!) { scheduleJobRun(code: $code, at: $at) { code pendingRuns } }",
                        json!({ "code": code, "at": at.to_rfc3339() })).await.is_some()
                    {
                        one_offs += 1;
                    }
                }
            }
            if Instant::now() >= next_dormant_at {
                next_dormant_at += DORMANT_EVERY;
                let product = seeded.products[next_dormant % SEED_PRODUCTS].id.clone();
                if let Some(found) = dormant_customer(
                    &mut ops_conn,
                    &mut operator,
                    db,
                    &format!("Dormant late {next_dormant}"),
                    Some(&product),
                )
                .await
                {
                    dormant.push(found);
                }
                next_dormant += 1;
            }
            async_std::task::sleep(Duration::from_millis(100)).await;
        }
    };
    futures::join!(sampler, operator_work);
    let mut report = Report::default();
    for task in tasks {
        report.merge(task.await);
    }
    let elapsed = started.elapsed();
    let ended_at = Utc::now();

    // The jobs' ledger, as the API shows it. The setup connection sat idle through the load, and
    // the server closes connections left idle that long: a new one.
    let mut admin = GraphqlConnection::open(&addr, TOKEN).await.unwrap();
    let mut job_lines = Vec::new();
    let mut job_failures = Vec::new();
    for code in JOBS {
        let data = must(
            &mut admin,
            "query($code: String!) { jobRuns(code: $code, first: 500) { kind outcome startedAt durationMs message } }",
            json!({ "code": code }),
        )
        .await;
        let runs = data["jobRuns"].as_array().unwrap();
        let in_window = |r: &&Value| {
            DateTime::parse_from_rfc3339(r["startedAt"].as_str().unwrap())
                .is_ok_and(|t| t >= started_at && t <= ended_at)
        };
        let succeeded = runs
            .iter()
            .filter(in_window)
            .filter(|r| r["outcome"] == "SUCCEEDED")
            .count();
        let scheduled = runs
            .iter()
            .filter(in_window)
            .filter(|r| r["kind"] == "scheduled")
            .count();
        for run in runs
            .iter()
            .filter(|r| r["outcome"] == "FAILED" || r["outcome"] == "ABANDONED")
        {
            job_failures.push(format!("{code}: {run}"));
        }
        let longest = runs
            .iter()
            .filter(in_window)
            .filter_map(|r| r["durationMs"].as_f64())
            .fold(0.0_f64, f64::max);
        job_lines.push(format!(
            "{code}: {succeeded} runs succeeded in the window ({scheduled} of them scheduled \
             ticks), longest {longest:.0} ms"
        ));
        assert!(succeeded > 0, "{code} did not run during the load: {data}");
    }
    let hwm = load::proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let server_nofile = load::max_open_files(pid).unwrap_or(0);
    let own_nofile = load::max_open_files(std::process::id()).unwrap_or(0);
    sigterm(&server.0);
    let (code, _) = exits_within(&mut server, Duration::from_secs(75));
    assert_eq!(code, Some(0), "the server's stop: {}", server_tail());

    // Figures.
    let total: usize = report.latencies.values().map(Latencies::len).sum();
    let mut all = Latencies::default();
    println!(
        "\n== load over {backend}: {clients} clients ({connections:?}), {:.1} s ==",
        elapsed.as_secs_f64()
    );
    let mut kinds: Vec<_> = report.latencies.iter().collect();
    kinds.sort_by_key(|(op, _)| **op);
    for (op, latencies) in kinds {
        println!("{op:?}: {}", latencies.summary());
        all.extend(latencies.clone());
    }
    println!("all: {}", all.summary());
    println!(
        "throughput: {:.0} requests/s served in full ({} of {total} requests; GraphQL errors, \
         other statuses and transport failures are not counted as served)",
        report.served as f64 / elapsed.as_secs_f64(),
        report.served
    );
    println!(
        "server: peak RSS (VmHWM) {} MiB, RSS sampled max {} MiB, open fds max {peak_fds}, \
         open-files limit {server_nofile} (test process {own_nofile}); client reconnects {}",
        hwm / 1024,
        peak_rss / 1024,
        report.reconnects
    );
    println!(
        "operator: {one_offs} one-off runs scheduled, {} dormant customers made",
        dormant.len()
    );
    for line in &job_lines {
        println!("{line}");
    }

    // What every client was told must hold.
    report.merge(operator);
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n");
    assert!(
        report.status_5xx.is_empty(),
        "{} answers 5xx:\n{}\n{}",
        report.status_5xx.len(),
        sample(&report.status_5xx),
        server_tail()
    );
    assert!(
        report.transport.is_empty(),
        "{} transport errors:\n{}\n{}",
        report.transport.len(),
        sample(&report.transport),
        server_tail()
    );
    assert!(
        report.other_status.is_empty(),
        "{} answers not 200:\n{}",
        report.other_status.len(),
        sample(&report.other_status)
    );
    assert!(
        report.graphql_errors.is_empty(),
        "{} GraphQL errors:\n{}\n{}",
        report.graphql_errors.len(),
        sample(&report.graphql_errors),
        server_tail()
    );
    assert!(
        report.wrong_answers.is_empty(),
        "{} wrong answers:\n{}",
        report.wrong_answers.len(),
        sample(&report.wrong_answers)
    );
    assert!(
        job_failures.is_empty(),
        "runs failed:\n{}\n{}",
        job_failures.join("\n"),
        server_tail()
    );

    // Nothing lost: the database after the server stopped.
    let store = db.database();
    let found = store.orders_by_ids(&report.orders).await.unwrap();
    assert_eq!(
        found.len(),
        report.orders.len(),
        "orders the clients were told about are missing"
    );
    let load_ids: Vec<CustomerId> = seeded
        .customers
        .iter()
        .map(|(id, _)| plain_id(id))
        .collect();
    assert_eq!(
        store.customers_by_ids(&load_ids).await.unwrap().len(),
        LOAD_CUSTOMERS,
        "the cleanup deleted customers of the load"
    );
    let dormant_ids: Vec<CustomerId> = dormant.iter().map(|(id, _)| *id).collect();
    let left: Vec<CustomerId> = store
        .customers_by_ids(&dormant_ids)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    let deleted: Vec<&(CustomerId, i64)> = dormant
        .iter()
        .filter(|(id, _)| !left.contains(id))
        .collect();
    let cleanup_log = log_lines(&logs, "customer_cleanup_log.txt");
    let logged_deleted: usize = cleanup_log
        .iter()
        .map(|line| {
            line.split_once(" - Deleted ")
                .and_then(|(_, rest)| rest.strip_suffix(" inactive customers"))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a cleanup line not as the contract says: {line:?}"))
        })
        .sum();
    println!(
        "cleanup: {} runs logged, {logged_deleted} customers deleted ({} dormant, {} left)",
        cleanup_log.len(),
        dormant.len(),
        left.len()
    );
    assert_eq!(
        logged_deleted,
        deleted.len(),
        "the cleanup log disagrees with the customers gone"
    );
    assert!(
        deleted.len() > SEED_DORMANT,
        "the cleanup did not delete during the load"
    );
    let orders_deleted: i64 = deleted.iter().map(|(_, n)| n).sum();
    let dormant_orders_made: i64 = dormant.iter().map(|(_, n)| n).sum::<i64>()
        - dormant[..SEED_DORMANT].iter().map(|(_, n)| n).sum::<i64>();
    let totals = store.totals().await.unwrap();
    let expected_orders =
        orders_before + report.orders.len() as i64 + dormant_orders_made - orders_deleted;
    println!(
        "orders: {orders_before} before + {} created by clients + {dormant_orders_made} dormant ones \
         − {orders_deleted} deleted with their customers = {expected_orders}; the database has {}",
        report.orders.len(),
        totals.orders
    );
    assert_eq!(totals.orders, expected_orders, "orders lost or invented");

    // Stock: first stock + 10 × restocks, each restock reported to a client or logged by the job.
    first_stock.extend(report.products.iter().cloned());
    let mut restocked: HashMap<i64, i64> = HashMap::new();
    for (id, _) in &report.restocks {
        *restocked.entry(*id).or_default() += 1;
    }
    let by_name: HashMap<&str, i64> = first_stock
        .iter()
        .map(|(id, name, _)| (name.as_str(), *id))
        .collect();
    let restock_log = log_lines(&logs, "low_stock_updates_log.txt");
    for line in &restock_log {
        let (name, _) = line
            .split_once(" - ")
            .and_then(|(_, rest)| rest.rsplit_once(": stock now "))
            .unwrap_or_else(|| panic!("a restock line not as the contract says: {line:?}"));
        let id = by_name
            .get(name)
            .unwrap_or_else(|| panic!("restock of an unknown product: {line}"));
        *restocked.entry(*id).or_default() += 1;
    }
    let ids: Vec<i64> = first_stock.iter().map(|(id, _, _)| *id).collect();
    let now_stock: HashMap<i64, i64> = store
        .products_by_ids(&ids)
        .await
        .unwrap()
        .iter()
        .map(|p| (p.id, i64::from(p.stock)))
        .collect();
    let mut wrong = Vec::new();
    for (id, name, first) in &first_stock {
        let times = restocked.get(id).copied().unwrap_or(0);
        let expected = first + 10 * times;
        if now_stock.get(id) != Some(&expected) {
            wrong.push(format!(
                "{name}: first {first}, restocked {times}×, now {:?}",
                now_stock.get(id)
            ));
        }
    }
    println!(
        "stock: {} products, {} restocks reported to clients, {} logged by update_low_stock",
        first_stock.len(),
        report.restocks.len(),
        restock_log.len()
    );
    assert!(
        wrong.is_empty(),
        "stock does not reconcile:\n{}",
        wrong.join("\n")
    );
    assert!(
        !report.restocks.is_empty() || !restock_log.is_empty(),
        "nothing was restocked"
    );
}
