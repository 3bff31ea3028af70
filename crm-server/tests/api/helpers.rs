//! Starts the real server on port 0 over a fresh database and talks raw HTTP/1.1 to it.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_std::io::{ReadExt as _, WriteExt as _};
use async_std::net::TcpStream;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_core::{
    CrmStore, Customer, CustomerField, CustomerFilter, CustomerId, Money, NewCustomer, NewOrder,
    NewProduct, Order, OrderField, OrderFilter, OrderId, OrderRelations, OrderReminder,
    PageRequest, Product, ProductField, ProductFilter, ProductId, ReminderPage, Result, Sort,
    Totals,
};
use crm_server::{BoundServer, Clock, ServerConfig};
use serde_json::{Value, json};

/// The instant the server's clock shows in every test.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// A running server, the database under it, and a count of the store calls it made.
pub(crate) struct TestApp {
    pub(crate) db: Arc<TestDb>,
    pub(crate) address: std::net::SocketAddr,
    pub(crate) store: Arc<CountingStore>,
    token: Option<String>,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(TestDb::sqlite().await, ServerConfig::default()).await
}

pub(crate) async fn spawn_app_with(db: TestDb, config: ServerConfig) -> TestApp {
    let store = Arc::new(db.database().clone());
    spawn_app_over(db, store, config).await
}

/// The server over `store` (which may reach `db` another way), keeping `db` alive.
pub(crate) async fn spawn_app_over(
    db: TestDb,
    store: Arc<dyn CrmStore>,
    config: ServerConfig,
) -> TestApp {
    serve(Arc::new(db), store, config).await
}

/// A server on a free port over `store` (which reads `db`), at the tests' fixed instant.
async fn serve(db: Arc<TestDb>, store: Arc<dyn CrmStore>, config: ServerConfig) -> TestApp {
    let store = Arc::new(CountingStore::new(store));
    let token = config.api_token.clone();
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        clock: Clock::fixed(now()),
        ..config
    };
    let server = BoundServer::bind(store.clone(), config)
        .await
        .expect("bind port 0");
    let address = server.local_addr();
    async_std::task::spawn(server.run());
    TestApp {
        db,
        address,
        store,
        token,
    }
}

pub(crate) const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// What came back over HTTP.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl HttpResponse {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl TestApp {
    /// A second server over the same database, configured by `config`.
    pub(crate) async fn twin(&self, config: ServerConfig) -> TestApp {
        let store = Arc::new(self.database().clone());
        serve(self.db.clone(), store, config).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut stream = TcpStream::connect(self.address).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send head");
        // The server may answer (413) before reading a large body and close: ignore write errors.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read answer");
        let text = String::from_utf8(raw).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        HttpResponse {
            status,
            headers: head.to_owned(),
            body,
        }
    }

    /// POSTs a GraphQL request as JSON with the given bearer token, if any.
    pub(crate) async fn post_graphql(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> HttpResponse {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        self.request("POST", "/graphql", &headers, body.as_bytes())
            .await
    }

    /// Runs a query or mutation with the app's token (if it has one); returns the JSON answer
    /// after checking the status was 200.
    pub(crate) async fn gql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .post_graphql(query, variables, self.token.as_deref())
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()
    }

    /// Like [`TestApp::gql`], and checks there were no errors; returns `data`.
    pub(crate) async fn data(&self, query: &str, variables: Value) -> Value {
        let answer = self.gql(query, variables).await;
        assert!(
            answer.get("errors").is_none(),
            "unexpected errors: {answer}"
        );
        answer["data"].clone()
    }

    pub(crate) fn database(&self) -> &crm_core::Database {
        self.db.database()
    }

    pub(crate) async fn customer(&self, name: &str, email: &str) -> Customer {
        let new = NewCustomer::new(name, email, None).unwrap();
        self.database().create_customer(&new).await.unwrap()
    }

    pub(crate) async fn product(&self, name: &str, price: &str, stock: i32) -> Product {
        let new = NewProduct::new(name, Money::from_str(price).unwrap(), stock).unwrap();
        self.database().create_product(&new).await.unwrap()
    }

    pub(crate) async fn order(
        &self,
        customer: &Customer,
        products: &[&Product],
        at: DateTime<Utc>,
    ) -> Order {
        let ids: Vec<ProductId> = products.iter().map(|p| p.id).collect();
        let new = NewOrder::new(customer.id, &ids, Some(at)).unwrap();
        self.database().create_order(&new, at).await.unwrap()
    }

    pub(crate) async fn totals(&self) -> Totals {
        self.database().totals().await.unwrap()
    }
}

/// The first error's message and code.
pub(crate) fn first_error(answer: &Value) -> (String, String) {
    let error = &answer["errors"][0];
    assert!(!error.is_null(), "expected an error: {answer}");
    (
        error["message"].as_str().unwrap_or_default().to_owned(),
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// base64 of `<Type>:<id>`, as the server hands out.
pub(crate) fn global_id(type_name: &str, id: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{type_name}:{id}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A store that counts the calls made to it (each call is one statement or one transaction in
/// the real store), to check that lists cost a fixed number of queries.
pub(crate) struct CountingStore {
    inner: Arc<dyn CrmStore>,
    calls: AtomicUsize,
    panic_next: std::sync::atomic::AtomicBool,
}

impl CountingStore {
    fn new(inner: Arc<dyn CrmStore>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            panic_next: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Makes the next call panic, as a bug in a store would.
    pub(crate) fn panic_on_next_call(&self) {
        self.panic_next.store(true, Ordering::SeqCst);
    }

    fn count(&self) -> &dyn CrmStore {
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("a store bug (injected by the test)");
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        &*self.inner
    }
}

#[async_trait]
impl CrmStore for CountingStore {
    async fn create_customer(&self, customer: &NewCustomer) -> Result<Customer> {
        self.count().create_customer(customer).await
    }
    async fn customers_by_ids(&self, ids: &[CustomerId]) -> Result<Vec<Customer>> {
        self.count().customers_by_ids(ids).await
    }
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        sort: &[Sort<CustomerField>],
        page: PageRequest,
    ) -> Result<Vec<Customer>> {
        self.count().list_customers(filter, sort, page).await
    }
    async fn count_customers(&self, filter: &CustomerFilter) -> Result<i64> {
        self.count().count_customers(filter).await
    }
    async fn create_product(&self, product: &NewProduct) -> Result<Product> {
        self.count().create_product(product).await
    }
    async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.count().products_by_ids(ids).await
    }
    async fn list_products(
        &self,
        filter: &ProductFilter,
        sort: &[Sort<ProductField>],
        page: PageRequest,
    ) -> Result<Vec<Product>> {
        self.count().list_products(filter, sort, page).await
    }
    async fn count_products(&self, filter: &ProductFilter) -> Result<i64> {
        self.count().count_products(filter).await
    }
    async fn create_order(&self, order: &NewOrder, now: DateTime<Utc>) -> Result<Order> {
        self.count().create_order(order, now).await
    }
    async fn orders_by_ids(&self, ids: &[OrderId]) -> Result<Vec<Order>> {
        self.count().orders_by_ids(ids).await
    }
    async fn list_orders(
        &self,
        filter: &OrderFilter,
        sort: &[Sort<OrderField>],
        page: PageRequest,
    ) -> Result<Vec<Order>> {
        self.count().list_orders(filter, sort, page).await
    }
    async fn count_orders(&self, filter: &OrderFilter) -> Result<i64> {
        self.count().count_orders(filter).await
    }
    async fn order_products(&self, order_ids: &[OrderId]) -> Result<Vec<(OrderId, Product)>> {
        self.count().order_products(order_ids).await
    }
    async fn order_relations(
        &self,
        customer_ids: &[CustomerId],
        order_ids: &[OrderId],
    ) -> Result<OrderRelations> {
        self.count().order_relations(customer_ids, order_ids).await
    }
    async fn delete_inactive_customers(&self, as_of: DateTime<Utc>, dry_run: bool) -> Result<u64> {
        self.count().delete_inactive_customers(as_of, dry_run).await
    }
    async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderReminder>> {
        self.count().orders_between(from, to).await
    }
    async fn orders_between_page(&self, page: ReminderPage<'_>) -> Result<Vec<OrderReminder>> {
        self.count().orders_between_page(page).await
    }
    async fn restock_low(&self, threshold: i32, amount: i32) -> Result<Vec<Product>> {
        self.count().restock_low(threshold, amount).await
    }
    async fn restock_low_once(
        &self,
        key: &str,
        threshold: i32,
        amount: i32,
    ) -> Result<crm_core::Restock> {
        self.count().restock_low_once(key, threshold, amount).await
    }
    async fn totals(&self) -> Result<Totals> {
        self.count().totals().await
    }
    async fn ping(&self) -> Result<()> {
        self.count().ping().await
    }
}

/// Everything the server logs in this test binary, at every level: installed once as the
/// global subscriber, since the server's tasks run on the runtime's threads.
pub(crate) fn captured_logs() -> String {
    use std::sync::{Mutex, OnceLock};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    let buffer = BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    });
    String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
}
