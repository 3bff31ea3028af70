//! What the job tests share: the real server over a fresh seeded database, endpoints that fail
//! in known ways, and reading the logs.

use std::path::Path;
use std::sync::Arc;

use async_std::net::TcpListener;
use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_core::{
    CrmStore, CustomerFilter, CustomerId, NewCustomer, NewOrder, NewProduct, PageRequest, ProductId,
};
use crm_jobs::{JobContext, JobsConfig};
use rust_decimal::Decimal;

/// The instant the jobs run at in these tests: Sunday 14 June 2026, 02:00 UTC (22:00 the
/// evening before in New York, the zone the logs are written in).
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 14, 2, 0, 0).unwrap()
}

/// The prefix of every `YYYY-MM-DD HH:MM:SS - ` line written at [`now`], in New York.
pub(crate) const NOW_STAMP: &str = "2026-06-13 22:00:00";

/// A context for a run at [`now`].
pub(crate) fn ctx_now(dry_run: bool) -> JobContext {
    JobContext::new(now(), now(), dry_run)
}

/// The real CRM: a fresh database, the GraphQL server over it on a free port, and the jobs'
/// configuration pointing at it with a fresh log directory.
pub(crate) struct Crm {
    /// The database (kept alive as long as the test).
    pub(crate) _db: TestDb,
    /// The same database as the store the cleanup uses.
    pub(crate) store: Arc<dyn CrmStore>,
    /// The server's GraphQL URL.
    pub(crate) url: String,
    /// The log directory.
    pub(crate) logs: tempfile::TempDir,
    /// The jobs' configuration: this server, this log directory, New York time.
    pub(crate) config: JobsConfig,
}

impl Crm {
    /// The whole text of the log file `name`.
    pub(crate) fn log(&self, name: &str) -> String {
        read_log(self.logs.path(), name)
    }
}

/// Starts the real server (token `token` if given) over `db` on port 0.
pub(crate) async fn spawn_crm(db: TestDb, token: Option<&str>) -> Crm {
    spawn_crm_with(db, token, |_| {}).await
}

/// Starts the real server over `db` on port 0, its configuration adjusted by `adjust`.
pub(crate) async fn spawn_crm_with(
    db: TestDb,
    token: Option<&str>,
    adjust: impl FnOnce(&mut crm_server::ServerConfig),
) -> Crm {
    let store: Arc<dyn CrmStore> = Arc::new(db.database().clone());
    let mut server_config = crm_server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        api_token: token.map(str::to_owned),
        ..crm_server::ServerConfig::default()
    };
    adjust(&mut server_config);
    let server = crm_server::BoundServer::bind(store.clone(), server_config)
        .await
        .expect("the server binds a free port");
    let url = server.graphql_url();
    async_std::task::spawn(server.run());
    crm(db, store, url, token)
}

/// The database alone, for the job that needs no server (the cleanup): the GraphQL URL is a
/// closed port.
pub(crate) async fn offline_crm(db: TestDb) -> Crm {
    let store: Arc<dyn CrmStore> = Arc::new(db.database().clone());
    let url = closed_port_url().await;
    crm(db, store, url, None)
}

fn crm(db: TestDb, store: Arc<dyn CrmStore>, url: String, token: Option<&str>) -> Crm {
    let logs = tempfile::tempdir().unwrap();
    let config = JobsConfig::default()
        .with_graphql_url(&url)
        .unwrap()
        .with_api_token(token.map(str::to_owned))
        .with_log_dir(logs.path())
        .with_time_zone(chrono_tz::America::New_York);
    Crm {
        _db: db,
        store,
        url,
        logs,
        config,
    }
}

/// What [`seed`] put in the database.
pub(crate) struct Seeded {
    /// Customers older than a year with no order in the last year: the cleanup deletes them.
    pub(crate) inactive: Vec<CustomerId>,
    /// Every other customer: the cleanup keeps them.
    pub(crate) active: Vec<CustomerId>,
    /// `(order id, customer e-mail)` of the orders dated within the 7 days before [`now`],
    /// oldest first.
    pub(crate) last_week: Vec<(i64, String)>,
    /// `(name, stock after restocking)` of the products with stock below 10, by id.
    pub(crate) low_stock: Vec<(String, i32)>,
    /// `(name, stock)` of the products with stock 10 or more.
    pub(crate) enough_stock: Vec<(String, i32)>,
    /// The sum of every order's total.
    pub(crate) revenue: Decimal,
    /// Number of orders.
    pub(crate) orders: i64,
}

/// Seeds a small CRM around [`now`]: customers on both sides of the cleanup's year, orders on
/// both sides of the reminders' week, products on both sides of the restock's 10.
pub(crate) async fn seed(db: &TestDb) -> Seeded {
    let store = db.database();
    let now = now();
    let days = Duration::days;

    let product = |name: &str, cents: i64, stock: i32| {
        NewProduct::new(name, Decimal::new(cents, 2), stock).unwrap()
    };
    let mut products: Vec<(ProductId, String, Decimal, i32)> = Vec::new();
    for (name, cents, stock) in [
        ("Laptop", 99_999, 0),
        ("Mouse", 1_999, 9),
        ("Keyboard", 4_550, 10),
        ("Cable", 1, 50),
    ] {
        let p = store
            .create_product(&product(name, cents, stock))
            .await
            .unwrap();
        products.push((p.id, p.name, p.price, p.stock));
    }
    let price = |i: usize| products[i].2;

    let mut inactive = Vec::new();
    let mut active = Vec::new();
    let mut last_week = Vec::new();
    let mut revenue = Decimal::ZERO;
    let mut orders = 0;

    let customer = |name: &str, email: &str, created: DateTime<Utc>| {
        let new = NewCustomer::new(name, email, None).unwrap();
        async move {
            let c = store.create_customer(&new).await.unwrap();
            db.set_customer_created_at(c.id, created).await.unwrap();
            c
        }
    };
    let old_quiet = customer("Old Quiet", "quiet@example.com", now - days(400)).await;
    let never = customer("Never Bought", "never@example.com", now - days(500)).await;
    let old_loyal = customer("Old Loyal", "loyal@example.com", now - days(400)).await;
    let just_in = customer("Just Joined", "new@example.com", now - days(10)).await;
    let edge = customer("Edge Case", "edge@example.com", now - days(366)).await;
    let buyer = customer("Busy Buyer", "Buyer@Example.com", now - days(20)).await;
    inactive.extend([old_quiet.id, never.id]);
    active.extend([old_loyal.id, just_in.id, edge.id, buyer.id]);

    // (customer, product indexes, order date)
    let plan: Vec<(CustomerId, Vec<usize>, DateTime<Utc>)> = vec![
        (old_quiet.id, vec![0], now - days(380)),
        (old_loyal.id, vec![1, 2], now - days(30)),
        (edge.id, vec![3], now - days(364)),
        (buyer.id, vec![1], now - days(8)),
        (buyer.id, vec![0, 3], now - days(3)),
        (old_loyal.id, vec![2], now - days(6) - Duration::hours(23)),
        (buyer.id, vec![2, 3], now - Duration::hours(1)),
        (buyer.id, vec![1], now + Duration::hours(1)),
    ];
    for (customer_id, indexes, date) in plan {
        let ids: Vec<ProductId> = indexes.iter().map(|&i| products[i].0).collect();
        let order = store
            .create_order(&NewOrder::new(customer_id, &ids, Some(date)).unwrap(), now)
            .await
            .unwrap();
        let expected: Decimal = indexes.iter().map(|&i| price(i)).sum();
        assert_eq!(order.total_amount, expected);
        revenue += expected;
        orders += 1;
        if date >= now - days(7) && date <= now {
            let email = [&old_loyal, &buyer]
                .iter()
                .find(|c| c.id == customer_id)
                .map(|c| c.email.clone())
                .unwrap();
            last_week.push((date, order.id, email));
        }
    }
    last_week.sort();

    Seeded {
        inactive,
        active,
        last_week: last_week
            .into_iter()
            .map(|(_, id, email)| (id, email))
            .collect(),
        low_stock: products
            .iter()
            .filter(|p| p.3 < 10)
            .map(|p| (p.1.clone(), p.3 + 10))
            .collect(),
        enough_stock: products
            .iter()
            .filter(|p| p.3 >= 10)
            .map(|p| (p.1.clone(), p.3))
            .collect(),
        revenue,
        orders,
    }
}

/// The URL of a port nothing listens on: bound, then released, so connecting is refused.
pub(crate) async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/graphql")
}

/// The URL of an endpoint that accepts connections and never answers (a hung server).
pub(crate) async fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    async_std::task::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://127.0.0.1:{port}/graphql")
}

/// The whole text of the log file `name` in `dir`.
pub(crate) fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(name).display()))
}

/// The ids of every customer in `crm`'s database, sorted.
pub(crate) async fn customer_ids(crm: &Crm) -> Vec<i64> {
    let mut ids: Vec<i64> = crm
        .store
        .list_customers(&CustomerFilter::default(), &[], PageRequest::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

/// After the five jobs ran once, in the standard order, on [`seed`]'s data at [`now`]: each
/// log holds the contract's lines and the cleanup deleted exactly the inactive customers.
pub(crate) async fn assert_the_contracts_lines(crm: &Crm, seeded: &Seeded) {
    assert_eq!(
        crm.log("customer_cleanup_log.txt"),
        format!("{NOW_STAMP} - Deleted 2 inactive customers\n")
    );
    let reminders: String = seeded
        .last_week
        .iter()
        .map(|(id, email)| format!("{NOW_STAMP} - Reminder: order {id} for {email}\n"))
        .collect();
    assert_eq!(crm.log("order_reminders_log.txt"), reminders);
    assert_eq!(
        crm.log("crm_heartbeat_log.txt"),
        "13/06/2026-22:00:00 CRM is alive\n"
    );
    assert_eq!(
        crm.log("low_stock_updates_log.txt"),
        format!("{NOW_STAMP} - Laptop: stock now 10\n{NOW_STAMP} - Mouse: stock now 19\n")
    );
    // The cleanup ran first: two customers and the one order of "Old Quiet" (999.99) are gone.
    let totals = crm.store.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (4, 7));
    assert_eq!(
        crm.log("crm_report_log.txt"),
        format!("{NOW_STAMP} - Report: 4 customers, 7 orders, 1196.49 revenue.\n")
    );
    let mut kept = seeded.active.clone();
    kept.sort();
    assert_eq!(customer_ids(crm).await, kept);
}

/// `n` orders of one customer ("Many", `many@example.com`) for one product, a minute apart
/// going back from [`now`]: a week that takes several pages to read.
pub(crate) async fn orders_of_one_customer(db: &TestDb, n: i64) {
    let store = db.database();
    let customer = store
        .create_customer(&NewCustomer::new("Many", "many@example.com", None).unwrap())
        .await
        .unwrap();
    let product = store
        .create_product(&NewProduct::new("Pen", Decimal::new(150, 2), 5).unwrap())
        .await
        .unwrap();
    for i in 0..n {
        let date = now() - Duration::minutes(i);
        let order = NewOrder::new(customer.id, &[product.id], Some(date)).unwrap();
        store.create_order(&order, now()).await.unwrap();
    }
}
