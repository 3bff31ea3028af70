//! Property tests of the GraphQL API against hostile variables (issue 8, rows P4-P5): one real
//! server per test (SQLite; a smaller run on PostgreSQL), many generated requests against it.
//!
//! - Refused input (huge strings, control characters, lone surrogates, negative and enormous
//!   numbers, prices like `1e400` or `NaN`, 20-digit ids, `first` beyond `i32`, deep nesting of
//!   the document or of the JSON variables) gets HTTP 200 or 4xx with a GraphQL error that is
//!   not `INTERNAL` and holds no SQL, and the database is unchanged (rows counted before and
//!   after every request).
//! - Filters with SQL metacharacters (`%`, `_`, `'`, `\`, `;--`) and unicode never fail and match
//!   literally: every product whose name contains the text is found, and nothing else.
//! - Odd but valid input (unicode names, RTL and combining marks, SQL text, prices with up to two
//!   places given as strings or numbers) is stored and read back exactly.

use crm_core::testing::TestDb;
use crm_core::{CrmStore, CustomerFilter, ProductFilter};
use crm_server::ServerConfig;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const CREATE_CUSTOMER: &str = "mutation($input: CustomerInput!) {
    createCustomer(input: $input) { customer { id name email phone } message } }";
const BULK: &str = "mutation($input: [CustomerInput!]!) {
    bulkCreateCustomers(input: $input) { customers { id } errors } }";
const CREATE_PRODUCT: &str = "mutation($input: ProductInput!) {
    createProduct(input: $input) { product { id name price stock } } }";
const CREATE_ORDER: &str = "mutation($input: OrderInput!) {
    createOrder(input: $input) { order { id totalAmount } } }";

/// `n` values of `strategy`, drawn up front (the requests are then awaited one by one).
fn draw<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// At most 300 characters of `text`, for failure messages.
fn short(text: &str) -> String {
    let mut s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        s.push_str(&format!("… ({} bytes)", text.len()));
    }
    s
}

/// Everything a request could change, read straight from the database.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    customers: i64,
    products: i64,
    orders: i64,
    revenue: Decimal,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let db = app.database();
    let totals = db.totals().await.unwrap();
    Snapshot {
        customers: db
            .count_customers(&CustomerFilter::default())
            .await
            .unwrap(),
        products: db.count_products(&ProductFilter::default()).await.unwrap(),
        orders: totals.orders,
        revenue: totals.revenue,
    }
}

/// Words in an error message that would mean storage detail leaked to the client.
const SQL_WORDS: &[&str] = &[
    "select ",
    "insert ",
    "update ",
    "delete ",
    "sqlite",
    "postgres",
    "sqlx",
    "syntax error",
    "constraint",
    "database",
    "relation \"",
    "no such column",
    "pattern too complex",
    "byte sequence",
];

/// Sends `body` (a JSON text, so that it can hold escapes `serde_json::Value` cannot) and checks
/// the answer is a refusal a client can read: HTTP 200 or 4xx, JSON, a GraphQL error with a
/// message and a code other than `INTERNAL`, no SQL. Returns the answer.
async fn expect_refusal(app: &TestApp, body: &str, token: Option<&str>) -> Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let r = app
        .request("POST", "/graphql", &headers, body.as_bytes())
        .await;
    let case = || {
        format!(
            "request {}\n -> {} {}",
            short(body),
            r.status,
            short(&r.body)
        )
    };
    assert!(
        r.status == 200 || (400..500).contains(&r.status),
        "not 200/4xx: {}",
        case()
    );
    let answer: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", case()));
    let errors = answer["errors"].as_array();
    let bulk_refused_each = answer["data"]["bulkCreateCustomers"]["customers"]
        .as_array()
        .is_some_and(Vec::is_empty)
        && answer["data"]["bulkCreateCustomers"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty());
    let messages: Vec<String> = if bulk_refused_each {
        answer["data"]["bulkCreateCustomers"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_owned())
            .collect()
    } else {
        let errors = errors.unwrap_or_else(|| panic!("no error: {}", case()));
        assert!(!errors.is_empty(), "no error: {}", case());
        for e in errors {
            let code = e["extensions"]["code"].as_str();
            assert_ne!(code, Some("INTERNAL"), "an internal error: {}", case());
        }
        assert!(
            answer["data"].is_null()
                || answer["data"]
                    .as_object()
                    .is_some_and(|d| d.values().all(Value::is_null)),
            "data alongside the error: {}",
            case()
        );
        errors
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for message in &messages {
        assert!(!message.trim().is_empty(), "an empty message: {}", case());
        assert!(
            message.len() <= 1_000,
            "a message of {} bytes: {}",
            message.len(),
            case()
        );
        let lower = message.to_lowercase();
        for word in SQL_WORDS {
            assert!(!lower.contains(word), "{word:?} in the message: {}", case());
        }
    }
    answer
}

fn body(query: &str, variables: &str) -> String {
    format!(
        r#"{{"query":{},"variables":{variables}}}"#,
        Value::from(query)
    )
}

// ------------------------------------------------------------------ generators

/// Text no name may be: empty, blank, too long, with control characters.
fn bad_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ \t]{1,5}",
        (256..2_000usize).prop_map(|n| "é".repeat(n)),
        (50_000..300_000usize).prop_map(|n| "x".repeat(n)),
        "[a-z]{1,5}[\u{0}-\u{1f}\u{7f}-\u{9f}][a-z]{1,5}",
        Just("a\u{0}b".to_owned()),
    ]
}

/// Text no e-mail address may be.
fn bad_email() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,10}",
        "[a-z]{1,5}@[a-z]{1,5}",
        "[a-z]{1,5}@@[a-z]{1,5}\\.com",
        "[a-z]{1,5} [a-z]{1,5}@x\\.com",
        "[a-z]{1,5}@[a-z]{1,5}\\.c",
        Just("ü@exämple.com".to_owned()),
        Just("a@b.com'; DROP TABLE customers;--".to_owned()),
        Just("%@%.%".to_owned()),
        (300..100_000usize).prop_map(|n| format!("{}@example.com", "a".repeat(n))),
    ]
}

/// A price that must be refused, as the JSON text of the value.
fn bad_price() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""0""#.to_owned()),
        Just(r#""-0""#.to_owned()),
        Just("-0".to_owned()),
        Just("0".to_owned()),
        Just("-0.0".to_owned()),
        Just(r#""NaN""#.to_owned()),
        Just(r#""Infinity""#.to_owned()),
        Just(r#""-Infinity""#.to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just(r#""1e400""#.to_owned()),
        Just(r#""1e-400""#.to_owned()),
        Just(r#""10000000000.00""#.to_owned()),
        Just("99999999999999999999".to_owned()),
        Just(r#""99999999999999999999999999999999""#.to_owned()),
        Just(r#""0.001""#.to_owned()),
        Just("0.005".to_owned()),
        Just(r#""1,50""#.to_owned()),
        Just(r#""0x10""#.to_owned()),
        Just(r#""""#.to_owned()),
        Just(r#"" ""#.to_owned()),
        Just(r#""12 34""#.to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[1]".to_owned()),
        Just(r#"{"amount": 1}"#.to_owned()),
        (1i64..1_000_000).prop_map(|n| format!("-{n}")),
        (1i64..1_000_000).prop_map(|n| format!(r#""-{n}.5""#)),
        (1u32..1000, 3u32..20)
            .prop_map(|(n, places)| format!(r#""{n}.{}1""#, "0".repeat(places as usize - 1))),
        "[a-z]{1,10}".prop_map(|s| format!("{:?}", s)),
    ]
}

/// A stock that must be refused (JSON text).
fn bad_stock() -> impl Strategy<Value = String> {
    prop_oneof![
        (1i64..=i64::from(i32::MAX)).prop_map(|n| format!("-{n}")),
        Just("2147483648".to_owned()),
        Just("-2147483649".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("1.5".to_owned()),
        Just("1e10".to_owned()),
        Just(r#""5""#.to_owned()),
        Just("[5]".to_owned()),
    ]
}

/// An ID that names no customer or product (JSON text).
fn bad_id() -> impl Strategy<Value = String> {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    prop_oneof![
        Just(r#""0""#.to_owned()),
        Just(r#""-1""#.to_owned()),
        Just(r#""99999999999999999999""#.to_owned()),
        Just(r#""9223372036854775808""#.to_owned()),
        Just(r#""9223372036854775807""#.to_owned()),
        Just("99999999999999999999".to_owned()),
        Just(r#""""#.to_owned()),
        Just(r#""1; DROP TABLE orders;--""#.to_owned()),
        Just(r#""1 OR 1=1""#.to_owned()),
        "[0-9]{12,18}".prop_map(|n| format!("{n:?}")),
        "\\PC{1,30}".prop_map(|s| Value::from(s).to_string()),
        (1i64..1000).prop_map(move |n| format!("{:?}", b64(format!("OrderType:{n}")))),
        Just(format!("{:?}", b64("CustomerType:-5".into()))),
        Just(format!(
            "{:?}",
            b64("CustomerType:99999999999999999999".into())
        )),
        Just(format!("{:?}", b64("CustomerType:".into()))),
        Just(format!("{:?}", "A".repeat(10_000))),
    ]
}

/// A timestamp that is not one (JSON text).
fn bad_date() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""yesterday""#.to_owned()),
        Just(r#""2026-13-01""#.to_owned()),
        Just(r#""2026-02-30T00:00:00Z""#.to_owned()),
        Just(r#""+275760-09-13T00:00:00Z""#.to_owned()),
        Just(r#""99999-01-01""#.to_owned()),
        Just(r#""2026-11-26T25:00:00Z""#.to_owned()),
        Just("1764158400".to_owned()),
        Just(r#""""#.to_owned()),
        "\\PC{1,30}".prop_map(|s| Value::from(s).to_string()),
    ]
}

/// The two phone forms the API accepts (`+` and 7 to 15 digits, `123-456-7890`), or none.
fn valid_phone(p: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    p.is_empty()
        || p.strip_prefix('+')
            .is_some_and(|d| (7..=15).contains(&d.len()) && digits(d))
        || (p.len() == 12
            && p.split('-').map(str::len).eq([3, 3, 4])
            && digits(&p.replace('-', "")))
}

/// JSON text nested `depth` levels deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// A mutation whose variables must be refused, as (query, variables JSON text).
fn refused_mutation(
    order_customer: i64,
    order_product: i64,
) -> impl Strategy<Value = (String, String)> {
    let s = |v: &str| Value::from(v).to_string();
    prop_oneof![
        // createCustomer: one bad field, the others fine.
        (bad_name(), "[a-z]{1,8}").prop_map(move |(name, e)| {
            (CREATE_CUSTOMER.to_owned(), format!(r#"{{"input":{{"name":{},"email":"{e}@example.com"}}}}"#, s(&name)))
        }),
        bad_email().prop_map(move |email| {
            (CREATE_CUSTOMER.to_owned(), format!(r#"{{"input":{{"name":"N","email":{}}}}}"#, s(&email)))
        }),
        ("[0-9+() -]{0,20}", "[a-z]{1,8}")
            .prop_filter("not a valid phone", |(p, _)| !valid_phone(p.trim()))
            .prop_map(move |(phone, e)| {
                (CREATE_CUSTOMER.to_owned(), format!(r#"{{"input":{{"name":"N","email":"{e}@example.com","phone":{}}}}}"#, s(&phone)))
            }),
        // Lone surrogates, raw control characters and invalid escapes in the JSON itself.
        prop_oneof![
            Just(r#""\ud800""#), Just(r#""a\udfffb""#), Just(r#""\udc00\ud800""#),
            Just("\"a\u{1}b\""), Just(r#""\x41""#), Just(r#""\u12""#),
        ]
        .prop_map(|name| (CREATE_CUSTOMER.to_owned(), format!(r#"{{"input":{{"name":{name},"email":"s@example.com"}}}}"#))),
        // Variables of the wrong shape, or nested deeper than anyone means.
        prop_oneof![
            Just(r#"{"input":"Alice"}"#.to_owned()),
            Just(r#"{"input":[{"name":"A","email":"a@example.com"}]}"#.to_owned()),
            Just(r#"{"input":{"name":"A"}}"#.to_owned()),
            Just(r#"{"input":{"name":"A","email":"a@example.com","admin":true}}"#.to_owned()),
            Just(r#"{"input":null}"#.to_owned()),
            Just("[]".to_owned()),
            Just(r#""x""#.to_owned()),
            (1..120usize).prop_map(|d| format!(r#"{{"input":{{"name":{},"email":"a@example.com"}}}}"#, nested(d))),
            (129..5_000usize).prop_map(|d| format!(r#"{{"input":{}}}"#, nested(d))),
            (129..5_000usize).prop_map(|d| format!(r#"{{"input":{}{}}}"#, "[".repeat(d), "]".repeat(d))),
        ]
        .prop_map(|vars| (CREATE_CUSTOMER.to_owned(), vars)),
        // createProduct: a bad price or stock, or a bad name.
        (bad_price(), 0..100i32).prop_map(|(price, stock)| {
            (CREATE_PRODUCT.to_owned(), format!(r#"{{"input":{{"name":"P","price":{price},"stock":{stock}}}}}"#))
        }),
        bad_stock().prop_map(|stock| {
            (CREATE_PRODUCT.to_owned(), format!(r#"{{"input":{{"name":"P","price":"1.00","stock":{stock}}}}}"#))
        }),
        bad_name().prop_map(move |name| {
            (CREATE_PRODUCT.to_owned(), format!(r#"{{"input":{{"name":{},"price":"1.00"}}}}"#, s(&name)))
        }),
        // createOrder: a bad customer, product list or date; the rest real.
        bad_id().prop_map(move |id| {
            (CREATE_ORDER.to_owned(), format!(r#"{{"input":{{"customerId":{id},"productIds":["{order_product}"]}}}}"#))
        }),
        prop_oneof![
            bad_id().prop_map(|id| format!("[{id}]")),
            bad_id().prop_map(move |id| format!(r#"["{order_product}",{id}]"#)),
            Just("[]".to_owned()),
            Just("null".to_owned()),
            Just(format!("[{}]", (1..=1_001).map(|i| format!(r#""{i}""#)).collect::<Vec<_>>().join(","))),
        ]
        .prop_map(move |ids| {
            (CREATE_ORDER.to_owned(), format!(r#"{{"input":{{"customerId":"{order_customer}","productIds":{ids}}}}}"#))
        }),
        bad_date().prop_map(move |date| {
            (CREATE_ORDER.to_owned(), format!(r#"{{"input":{{"customerId":"{order_customer}","productIds":["{order_product}"],"orderDate":{date}}}}}"#))
        }),
        // bulkCreateCustomers where every entry is bad, or too many entries.
        proptest::collection::vec((bad_name(), bad_email()), 1..5).prop_map(move |entries| {
            let input: Vec<String> = entries
                .iter()
                .map(|(n, e)| format!(r#"{{"name":{},"email":{}}}"#, s(&n.chars().take(1000).collect::<String>()), s(&e.chars().take(1000).collect::<String>())))
                .collect();
            (BULK.to_owned(), format!(r#"{{"input":[{}]}}"#, input.join(",")))
        }),
        Just((BULK.to_owned(), format!(r#"{{"input":[{}]}}"#, (0..1_001).map(|i| format!(r#"{{"name":"N","email":"bulk{i}@example.com"}}"#)).collect::<Vec<_>>().join(",")))),
    ]
}

/// A query with hostile filters, ordering or paging, as (query, variables JSON text).
fn hostile_query() -> impl Strategy<Value = (String, String)> {
    let text = prop_oneof![
        Just("%".to_owned()),
        Just("_".to_owned()),
        Just("\\".to_owned()),
        Just("'".to_owned()),
        Just("';--".to_owned()),
        Just("\" OR 1=1 --".to_owned()),
        Just("%' OR '1'='1".to_owned()),
        Just("\u{0}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("\u{202e}evil".to_owned()),
        Just("e\u{301}".to_owned()),
        Just("🙂".to_owned()),
        Just("[a-z]".to_owned()),
        Just("*".to_owned()),
        "\\PC{0,20}",
        any::<String>(),
        (1_000..60_000usize).prop_map(|n| "%".repeat(n)),
        (49_000..200_000usize).prop_map(|n| "a".repeat(n)),
    ];
    let s = |v: &str| Value::from(v).to_string();
    prop_oneof![
        (text.clone(), prop_oneof![Just("nameIcontains"), Just("emailIcontains"), Just("phoneStartswith")]).prop_map(move |(t, f)| (
            "query($f: CustomerFilterInput) { allCustomers(filter: $f, first: 5) { totalCount edges { node { id } } } }".to_owned(),
            format!(r#"{{"f":{{"{f}":{}}}}}"#, s(&t)),
        )),
        text.clone().prop_map(move |t| (
            "query($f: ProductFilterInput) { allProducts(filter: $f, first: 5) { totalCount edges { node { id } } } }".to_owned(),
            format!(r#"{{"f":{{"nameIcontains":{}}}}}"#, s(&t)),
        )),
        (text, prop_oneof![Just("customerEmail"), Just("customerName"), Just("productName")]).prop_map(move |(t, f)| (
            "query($f: OrderFilterInput) { allOrders(filter: $f, first: 5) { totalCount edges { node { id } } } }".to_owned(),
            format!(r#"{{"f":{{"{f}":{}}}}}"#, s(&t)),
        )),
        prop_oneof![
            Just(r#"{"f":{"priceGte":"1e400"}}"#.to_owned()),
            Just(r#"{"f":{"priceLte":1e400}}"#.to_owned()),
            Just(r#"{"f":{"priceGte":"NaN"}}"#.to_owned()),
            Just(r#"{"f":{"priceGte":"-99999999999999999999999999"}}"#.to_owned()),
            Just(r#"{"f":{"priceLte":"99999999999999999999999999"}}"#.to_owned()),
            Just(r#"{"f":{"stockLt":2147483648}}"#.to_owned()),
            Just(r#"{"f":{"stockGte":-2147483649}}"#.to_owned()),
        ]
        .prop_map(|vars| (
            "query($f: ProductFilterInput) { allProducts(filter: $f) { totalCount } }".to_owned(),
            vars,
        )),
        prop_oneof![
            Just("2147483648".to_owned()), Just("-2147483649".to_owned()), Just("9223372036854775808".to_owned()),
            Just("-1".to_owned()), Just("101".to_owned()), Just("1e3".to_owned()), Just(r#""5""#.to_owned()),
            Just(format!("{}", i64::MIN)),
        ]
        .prop_map(|first| (
            "query($n: Int) { allCustomers(first: $n) { totalCount } }".to_owned(),
            format!(r#"{{"n":{first}}}"#),
        )),
        prop_oneof![
            "\\PC{0,30}",
            Just("-".to_owned()), Just("--stock".to_owned()), Just("stock;DROP TABLE products".to_owned()),
            Just("stock,stock,stock,stock,stock".to_owned()), Just("id) --".to_owned()),
        ]
        .prop_filter("not a valid ordering", |o| {
            !o.split(',').map(str::trim).filter(|p| !p.is_empty()).all(|p| {
                ["id", "name", "price", "stock"].contains(&p.trim_start_matches(['-', '+']))
            }) || o.split(',').filter(|p| !p.trim().is_empty()).count() > 4
        })
        .prop_map(move |o| (
            "query($o: String) { allProducts(orderBy: $o) { totalCount } }".to_owned(),
            format!(r#"{{"o":{}}}"#, s(&o)),
        )),
        prop_oneof![
            "\\PC{0,30}",
            Just("YXJyYXljb25uZWN0aW9uOi0x".to_owned()), // arrayconnection:-1
            Just("YXJyYXljb25uZWN0aW9uOjk5OTk5OTk5OTk5OTk5OTk5OTk5".to_owned()), // arrayconnection:99999999999999999999
            Just("A".repeat(100_000)),
        ]
        .prop_filter("not a cursor", |c| !c.trim().is_empty())
        .prop_map(move |c| (
            "query($a: String) { allOrders(first: 2, after: $a) { totalCount } }".to_owned(),
            format!(r#"{{"a":{}}}"#, s(&c)),
        )),
        // Date bounds from anywhere in chrono's range.
        (
            any_order_date(),
            prop_oneof![
                Just(("allCustomers", "CustomerFilterInput", "createdAtGte")),
                Just(("allCustomers", "CustomerFilterInput", "createdAtLte")),
                Just(("allOrders", "OrderFilterInput", "orderDateGte")),
                Just(("allOrders", "OrderFilterInput", "orderDateLte")),
            ]
        )
            .prop_map(|(date, (list, input, field))| (
                format!("query($f: {input}) {{ {list}(filter: $f) {{ totalCount }} }}"),
                format!(r#"{{"f":{{"{field}":"{date}"}}}}"#),
            )),
        // A document nested beyond the depth limit.
        (21..2_000usize).prop_map(|d| (
            format!("{{ allOrders {{ edges {{ node {{ {} id {} }} }} }} }}", "customer { ".repeat(d), "}".repeat(d)),
            "{}".to_owned(),
        )),
    ]
}

// ------------------------------------------------------------------ runs

/// Refused mutations against one server: each a readable refusal, nothing written.
async fn refused_mutations_write_nothing(db: TestDb, cases: usize) {
    let app = spawn_app_with(db, ServerConfig::default()).await;
    let customer = app.customer("Olga", "olga@example.com").await;
    let product = app.product("Pen", "1.50", 5).await;
    let before = snapshot(&app).await;
    for (query, variables) in draw(refused_mutation(customer.id, product.id), cases) {
        expect_refusal(&app, &body(&query, &variables), None).await;
        assert_eq!(
            snapshot(&app).await,
            before,
            "written by {}",
            short(&variables)
        );
    }
}

/// Hostile queries against one server with a few rows: each answers or refuses readably.
async fn hostile_queries_never_fail(db: TestDb, cases: usize) {
    let app = spawn_app_with(db, ServerConfig::default()).await;
    let customer = app.customer("100% Olga_'\\", "olga@example.com").await;
    let product = app.product("50% off; DROP", "2.50", 5).await;
    app.order(&customer, &[&product], crate::helpers::now())
        .await;
    let before = snapshot(&app).await;
    for (query, variables) in draw(hostile_query(), cases) {
        let text = body(&query, &variables);
        let r = app
            .request(
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                text.as_bytes(),
            )
            .await;
        if r.status == 200
            && serde_json::from_str::<Value>(&r.body).is_ok_and(|a| a.get("errors").is_none())
        {
            continue; // answered
        }
        expect_refusal(&app, &text, None).await;
    }
    assert_eq!(snapshot(&app).await, before);
}

#[async_std::test]
async fn p4_refused_mutations_get_a_clear_error_and_write_nothing_on_sqlite() {
    refused_mutations_write_nothing(TestDb::sqlite().await, 600).await;
}

#[async_std::test]
async fn p4_refused_mutations_get_a_clear_error_and_write_nothing_on_postgres() {
    refused_mutations_write_nothing(TestDb::postgres().await, 150).await;
}

#[async_std::test]
async fn p4_hostile_filters_orderings_and_pages_never_fail_on_sqlite() {
    hostile_queries_never_fail(TestDb::sqlite().await, 400).await;
}

#[async_std::test]
async fn p4_hostile_filters_orderings_and_pages_never_fail_on_postgres() {
    hostile_queries_never_fail(TestDb::postgres().await, 150).await;
}

// ------------------------------------------------------------------ P5: accepted exactly

/// Names people have, and names adversaries try: all valid, all to be kept exactly.
fn odd_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("O'Brien; DROP TABLE products;--".to_owned()),
        Just("100% cotton".to_owned()),
        Just("100 cotton".to_owned()),
        Just("a_b".to_owned()),
        Just("axb".to_owned()),
        Just("back\\slash".to_owned()),
        Just("\\%_".to_owned()),
        Just("שלום עולם".to_owned()),
        Just("مرحبا".to_owned()),
        Just("\u{202e}txt.exe".to_owned()),
        Just("e\u{301}te\u{301}".to_owned()),
        Just("été".to_owned()),
        Just("Ω≈ç√∫".to_owned()),
        Just("🙂🙃".to_owned()),
        Just("日本語の名前".to_owned()),
        Just("ǅungla".to_owned()),
        Just("x".repeat(255)),
        Just("é".repeat(255)),
        "[a-zA-Z0-9%_\\\\' ;-]{1,20}",
        "\\PL{1,12}",
    ]
    .prop_filter("a name", |n| {
        let t = n.trim();
        !t.is_empty() && !t.chars().any(char::is_control)
    })
}

/// A valid price as JSON text, and the two-place string it must come back as.
fn odd_price() -> impl Strategy<Value = (String, String)> {
    let expect = |d: Decimal| {
        let mut d = d;
        d.rescale(2);
        d.to_string()
    };
    prop_oneof![
        (1i64..=999_999_999_999).prop_map(move |cents| {
            let d = Decimal::new(cents, 2);
            (format!("{:?}", d.to_string()), expect(d))
        }),
        (1i64..=99_999_999).prop_map(move |n| (n.to_string(), expect(Decimal::from(n)))),
        (1i64..=9_999_999, 0u32..100).prop_map(move |(n, c)| {
            let d = Decimal::new(n * 100 + i64::from(c), 2);
            (d.to_string(), expect(d))
        }),
        Just((r#""1e2""#.to_owned(), "100.00".to_owned())),
        Just((r#"" 7.5 ""#.to_owned(), "7.50".to_owned())),
        Just((r#""0.01""#.to_owned(), "0.01".to_owned())),
        Just((r#""9999999999.99""#.to_owned(), "9999999999.99".to_owned())),
        Just((r#""2.500""#.to_owned(), "2.50".to_owned())),
    ]
}

/// Creates products with odd names and prices, reads each back, then filters by random text:
/// every product whose name contains it is found, and nothing that does not.
async fn odd_input_round_trips(db: TestDb, cases: usize) {
    let app = spawn_app_with(db, ServerConfig::default()).await;
    let mut names: Vec<(String, String)> = Vec::new(); // (id, stored name)
    for (name, (price, expected_price)) in draw((odd_name(), odd_price()), cases) {
        let variables = format!(
            r#"{{"input":{{"name":{},"price":{price},"stock":3}}}}"#,
            Value::from(name.as_str())
        );
        let answer = app
            .gql(CREATE_PRODUCT, serde_json::from_str(&variables).unwrap())
            .await;
        let product = &answer["data"]["createProduct"]["product"];
        assert_eq!(product["name"], name.trim(), "{answer}");
        assert_eq!(
            product["price"],
            expected_price.as_str(),
            "{price} -> {answer}"
        );
        let id = product["id"].as_str().unwrap().to_owned();
        let read = app
            .data(
                "query($id: ID!) { product(id: $id) { name price stock } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            read["product"],
            json!({"name": name.trim(), "price": expected_price, "stock": 3})
        );
        names.push((id, name.trim().to_owned()));
    }
    // Filters: substrings of the stored names, and metacharacters.
    let needles = draw(
        prop_oneof![
            Just("%".to_owned()),
            Just("_".to_owned()),
            Just("\\".to_owned()),
            Just("'".to_owned()),
            Just(";--".to_owned()),
            Just("%_".to_owned()),
            Just("\\%".to_owned()),
            Just("cotton".to_owned()),
            (0..names.len(), 0..6usize, 1..6usize).prop_map({
                let names = names.clone();
                move |(i, from, len)| names[i].1.chars().skip(from).take(len).collect::<String>()
            }),
        ],
        cases / 2,
    );
    for needle in needles.into_iter().filter(|n| !n.is_empty()) {
        let data = app
            .data(
                "query($f: ProductFilterInput) { allProducts(filter: $f, first: 100) { totalCount edges { node { id name } } } }",
                json!({"f": {"nameIcontains": needle}}),
            )
            .await;
        let found: Vec<String> = data["allProducts"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect();
        for (id, name) in &names {
            // Letter case aside (ASCII always; beyond it, as the backend folds it), a product
            // is found exactly when its name contains the text.
            let exact = name.contains(&needle);
            let folded = name.to_lowercase().contains(&needle.to_lowercase())
                || name
                    .to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase());
            let is_found = found.contains(id);
            assert!(
                !exact || is_found,
                "{name:?} contains {needle:?} but was not found"
            );
            assert!(
                !is_found || folded,
                "{name:?} does not contain {needle:?} but was found"
            );
        }
    }
}

#[async_std::test]
async fn p5_odd_but_valid_input_round_trips_and_filters_match_literally_on_sqlite() {
    odd_input_round_trips(TestDb::sqlite().await, 90).await;
}

#[async_std::test]
async fn p5_odd_but_valid_input_round_trips_and_filters_match_literally_on_postgres() {
    odd_input_round_trips(TestDb::postgres().await, 40).await;
}

/// Unicode customer names and e-mails with SQL metacharacters that are valid addresses.
#[async_std::test]
async fn p5_customers_with_odd_names_and_quoted_emails_round_trip() {
    let app = spawn_app_with(TestDb::sqlite().await, ServerConfig::default()).await;
    let cases = draw(
        (
            odd_name(),
            prop_oneof![
                Just("o'brien"),
                Just("a%b"),
                Just("a_b"),
                Just("x+tag"),
                Just("{x}|~")
            ],
        ),
        40,
    );
    for (i, (name, local)) in cases.into_iter().enumerate() {
        let email = format!("{local}{i}@example.com");
        let data = app
            .data(
                CREATE_CUSTOMER,
                json!({"input": {"name": name, "email": email}}),
            )
            .await;
        let customer = &data["createCustomer"]["customer"];
        assert_eq!(customer["name"], name.trim());
        assert_eq!(customer["email"], email);
        let data = app
            .data(
                "query($f: CustomerFilterInput) { allCustomers(filter: $f) { edges { node { email } } } }",
                json!({"f": {"emailIcontains": email}}),
            )
            .await;
        assert_eq!(
            data["allCustomers"]["edges"],
            json!([{"node": {"email": email}}]),
            "{email}"
        );
    }
}

// ------------------------------------------------------------------ P3: setJobSchedule

/// A job whose schedule the operator tries to replace; it never runs here.
struct Nightly;

#[async_trait::async_trait]
impl crm_jobs::CronJob for Nightly {
    fn code(&self) -> &str {
        "nightly"
    }
    fn schedule(&self) -> crm_jobs::Schedule {
        crm_jobs::Schedule::cron("0 3 * * *").unwrap()
    }
    async fn run(&self, _ctx: &crm_jobs::JobContext) -> Result<String, crm_jobs::JobError> {
        Ok("ran".to_owned())
    }
}

/// Schedules no one may set: cron fields out of range or malformed, bad zones, intervals and
/// times, huge and hostile text.
fn bad_schedule() -> impl Strategy<Value = String> {
    prop_oneof![
        (60..10_000u32).prop_map(|m| format!("{m} * * * *")),
        (24..1_000u32).prop_map(|h| format!("0 {h} * * *")),
        Just("*/0 * * * *".to_owned()),
        Just("* * * *".to_owned()),
        Just("* * * * * *".to_owned()),
        Just("0 0 30 2 *".to_owned()),
        Just("1,,2 * * * *".to_owned()),
        Just("@reboot".to_owned()),
        Just("every 0 minutes".to_owned()),
        Just("every -5 minutes".to_owned()),
        Just("every 99999999999 minutes".to_owned()),
        Just("at 24:00".to_owned()),
        Just("at ".to_owned()),
        Just("0 8 * * * in Mars/Olympus".to_owned()),
        Just("0 8 * * * in ../../etc/passwd".to_owned()),
        Just("0 8 * * *; rm -rf /".to_owned()),
        Just("$(reboot) * * * *".to_owned()),
        Just("0 8 * * * `id`".to_owned()),
        Just("".to_owned()),
        Just("   ".to_owned()),
        Just("\u{0}".to_owned()),
        Just("0 8 * * *\n0 9 * * *".to_owned()),
        (600..300_000usize).prop_map(|n| "*".repeat(n)),
        "\\PC{1,40}".prop_filter("not a schedule", |s| s
            .parse::<crm_jobs::Schedule>()
            .is_err()),
    ]
}

/// `setJobSchedule` with refused schedules, with and without the token: each a readable
/// refusal (`VALIDATION` or `UNAUTHORIZED`), and no override, audit row or change counted.
#[async_std::test]
async fn p3_set_job_schedule_refuses_bad_schedules_and_writes_nothing() {
    use crm_core::overrides::OverrideStore;
    use std::sync::Arc;

    let db = TestDb::sqlite().await;
    let database = db.database().clone();
    let clock = crm_jobs::ManualClock::new(crate::helpers::now());
    let runner = crm_jobs::Runner::builder()
        .ledger(Arc::new(database.clone()))
        .overrides(Arc::new(database.clone()))
        .clock(Arc::new(clock))
        .time_zone(chrono_tz::UTC)
        .jobs(vec![Box::new(Nightly) as Box<dyn crm_jobs::CronJob>])
        .build()
        .unwrap();
    let config = ServerConfig {
        api_token: Some("sesame".to_owned()),
        job_control: Some(Arc::new(runner)),
        ..ServerConfig::default()
    };
    let app = spawn_app_with(db, config).await;
    let query = "mutation($code: String!, $s: String) { setJobSchedule(code: $code, schedule: $s) { schedule } }";
    for (i, schedule) in draw(bad_schedule(), 200).into_iter().enumerate() {
        let variables = json!({"code": "nightly", "s": schedule}).to_string();
        let token = (i % 5 != 0).then_some("sesame");
        let answer = expect_refusal(&app, &body(query, &variables), token).await;
        let code = answer["errors"][0]["extensions"]["code"].as_str();
        let expected = if token.is_some() {
            "VALIDATION"
        } else {
            "UNAUTHORIZED"
        };
        assert_eq!(code, Some(expected), "{}: {answer}", short(&schedule));
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.len() < 2_000, "{} bytes of message", message.len());
    }
    // Unknown job codes, hostile ones included: NOT_FOUND.
    for code in [
        "no_such_job",
        "nightly; DROP TABLE job_overrides",
        "",
        "\u{0}",
    ] {
        let variables = json!({"code": code, "s": "0 4 * * *"}).to_string();
        let answer = expect_refusal(&app, &body(query, &variables), Some("sesame")).await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{answer}"
        );
    }
    assert_eq!(OverrideStore::version(&database).await.unwrap(), 0);
    assert!(
        OverrideStore::audit(&database, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        OverrideStore::snapshot(&database)
            .await
            .unwrap()
            .overrides
            .is_empty()
    );
}

// ------------------------------------------------------------------ P5: instants

/// An order date from anywhere in chrono's range, in each form the API takes.
fn any_order_date() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        -262_143..=262_142i32,
        -5_000..=-4_000i32,
        0..=3_000i32,
        9_990..=10_010i32,
        294_270..=294_280i32,
    ];
    let generated = (year, 1..=12u32, 1..=28u32, 0..24u32, 0..60u32, 0..3usize).prop_map(
        |(y, mo, d, h, mi, form)| {
            let date = if (0..=9999).contains(&y) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:+05}-{mo:02}-{d:02}")
            };
            match form {
                0 => date,
                1 => format!("{date}T{h:02}:{mi:02}:00Z"),
                _ => format!("{date}T{h:02}:{mi:02}:00+05:30"),
            }
        },
    );
    // Just past the ends of PostgreSQL's range and of the years 1 to 9999.
    let edges = prop_oneof![
        Just("-4714-01-01".to_owned()),
        Just("-4979-01-08".to_owned()),
        Just("0000-12-31T23:59:59Z".to_owned()),
        Just("+10000-01-01".to_owned()),
    ];
    prop_oneof![4 => generated, 1 => edges]
}

/// Order dates across chrono's whole range: each is stored and read back as the same instant,
/// or refused with a `VALIDATION` error and nothing written; never an internal error.
async fn order_dates_round_trip_or_are_refused(db: TestDb, cases: usize) {
    let app = spawn_app_with(db, ServerConfig::default()).await;
    let customer = app.customer("Olga", "olga@example.com").await;
    let product = app.product("Pen", "1.50", 5).await;
    let query =
        "mutation($input: OrderInput!) { createOrder(input: $input) { order { id orderDate } } }";
    for date in draw(any_order_date(), cases) {
        let before = snapshot(&app).await;
        let variables = json!({"input": {
            "customerId": customer.id.to_string(),
            "productIds": [product.id.to_string()],
            "orderDate": date,
        }});
        let r = app.post_graphql(query, variables, None).await;
        assert!(
            r.status == 200 || r.status == 400,
            "{date}: {} {}",
            r.status,
            r.body
        );
        let answer = r.json();
        if answer.get("errors").is_some() {
            // Refused while reading the variables (HTTP 400), or by the resolver (VALIDATION).
            let code = answer["errors"][0]["extensions"]["code"].as_str();
            let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(
                (r.status == 400 && message.contains("is not a date-time"))
                    || code == Some("VALIDATION"),
                "{date}: {answer}"
            );
            assert_eq!(snapshot(&app).await, before, "{date}: written");
            continue;
        }
        let sent = answer["data"]["createOrder"]["order"]["orderDate"]
            .as_str()
            .unwrap();
        let id = answer["data"]["createOrder"]["order"]["id"]
            .as_str()
            .unwrap();
        let read = app
            .data(
                "query($id: ID!) { order(id: $id) { orderDate } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(read["order"]["orderDate"], sent, "{date}");
        // The same instant as the input (a bare date is midnight UTC).
        let parse = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc())
                })
        };
        let expected = parse(&date)
            .or_else(|| {
                chrono::DateTime::parse_from_str(&date, "%Y-%m-%dT%H:%M:%S%:z")
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            })
            .unwrap_or_else(|| panic!("{date} was accepted but this test cannot read it"));
        let got = chrono::DateTime::parse_from_rfc3339(sent)
            .map(|t| t.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::DateTime::parse_from_str(sent, "%Y-%m-%dT%H:%M:%S%:z")
                    .map(|t| t.with_timezone(&chrono::Utc))
            })
            .unwrap_or_else(|e| panic!("{date} came back as {sent} ({e})"));
        assert_eq!(got, expected, "{date} came back as {sent}");
    }
}

#[async_std::test]
async fn p5_order_dates_round_trip_or_are_refused_on_sqlite() {
    order_dates_round_trip_or_are_refused(TestDb::sqlite().await, 150).await;
}

#[async_std::test]
async fn p5_order_dates_round_trip_or_are_refused_on_postgres() {
    order_dates_round_trip_or_are_refused(TestDb::postgres().await, 100).await;
}

// ------------------------------------------------------------------ P4: any body at all

/// Text made of GraphQL's own tokens glued at random: mostly documents that do not parse or
/// validate, some that do.
fn graphql_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just(":"),
        Just("$"),
        Just("..."),
        Just("@include(if: true)"),
        Just("query"),
        Just("mutation"),
        Just("fragment"),
        Just("on"),
        Just("hello"),
        Just("allCustomers"),
        Just("allOrders"),
        Just("edges"),
        Just("node"),
        Just("customer"),
        Just("id"),
        Just("first: -1"),
        Just("first: 2147483648"),
        Just("updateLowStockProducts"),
        Just("createCustomer"),
        Just("__schema"),
        Just("__typename"),
        Just("\"\\u0000\""),
        Just("\"\\ud800\""),
        Just("1e400"),
        Just("#"),
        Just("\n"),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.join(" "))
}

/// Any body, as JSON or as GraphQL text, with or without a (wrong) token: never a 5xx, always
/// a JSON answer, and nothing written (`updateLowStockProducts` and `createCustomer` are among
/// the tokens, but the server has a token and the requests carry a wrong one or none).
#[async_std::test]
async fn p4_any_body_gets_a_json_answer_and_never_a_5xx() {
    let config = ServerConfig {
        api_token: Some("sesame".to_owned()),
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    app.product("Low", "1.00", 1).await;
    let before = snapshot(&app).await;
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2_000),
        any::<String>().prop_map(String::into_bytes),
        graphql_soup().prop_map(|q| json!({ "query": q }).to_string().into_bytes()),
        graphql_soup().prop_map(String::into_bytes),
        (graphql_soup(), 1..20usize).prop_map(|(q, n)| {
            Value::Array(vec![json!({ "query": q }); n])
                .to_string()
                .into_bytes()
        }),
    ];
    let strategy = (
        body,
        prop_oneof![
            Just("application/json"),
            Just("application/graphql"),
            Just("text/plain")
        ],
        prop_oneof![
            Just(None),
            Just(Some("Bearer wrong")),
            Just(Some("Bearer ")),
            Just(Some("Basic c2VzYW1lOg==")),
            Just(Some("bearer sesame2")),
        ],
    );
    for (bytes, content_type, auth) in draw(strategy, 400) {
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let r = app.request("POST", "/graphql", &headers, &bytes).await;
        let case = || {
            format!(
                "{content_type} {:?} -> {} {}",
                short(&String::from_utf8_lossy(&bytes)),
                r.status,
                short(&r.body)
            )
        };
        assert!(r.status < 500, "a 5xx: {}", case());
        assert!(
            serde_json::from_str::<Value>(&r.body).is_ok(),
            "not JSON: {}",
            case()
        );
    }
    assert_eq!(snapshot(&app).await, before);
    let product = app
        .database()
        .list_products(&ProductFilter::default(), &[], Default::default())
        .await
        .unwrap();
    assert_eq!(product[0].stock, 1, "restocked without the token");
}
