//! Pages written straight to JSON (issue 14, item 4) answer exactly what juniper answers field
//! by field: every document here is sent to a server that writes pages directly and to one
//! with `prerender_pages: false` over the same database, and the two answers must be the same
//! bytes. `/metrics` shows which way each page went, so a document meant for the direct path
//! cannot silently take juniper's.

use chrono::Duration;
use crm_core::{SeedConfig, seed};
use crm_server::ServerConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, now, spawn_app};

/// A name that JSON must escape (quotes, a backslash) or carry as it is (non-ASCII, an emoji).
const ZOE: &str = "Zoë \"Z\" O'Brien \\ </script> \u{1F600}";

/// A database with customers whose names and e-mails need escaping, phones present and absent,
/// and seeded orders.
async fn shop() -> TestApp {
    let app = spawn_app().await;
    let quoted = app.customer(ZOE, "zoe@shop.com").await;
    let plain = app.customer("Bob", "bob@shop.com").await;
    let pen = app.product("Pen \"fine\"", "1.50", 10).await;
    let ink = app.product("Ink", "12.00", 0).await;
    app.order(&quoted, &[&pen, &ink], now() - Duration::days(1))
        .await;
    app.order(&plain, &[&ink], now() - Duration::hours(5)).await;
    let config = SeedConfig {
        customers: 30,
        products: 12,
        orders: 80,
        seed: 7,
        now: now(),
    };
    seed(app.database(), &config, &mut |_| {}).await.unwrap();
    app
}

/// [`shop`] served twice: writing pages directly, and by juniper alone.
async fn two_servers() -> (TestApp, TestApp) {
    let direct = shop().await;
    let juniper = direct
        .twin(ServerConfig {
            prerender_pages: false,
            ..ServerConfig::default()
        })
        .await;
    (direct, juniper)
}

/// `crm_graphql_pages_total` by how the edges were written: (direct, juniper).
async fn pages(app: &TestApp) -> (u64, u64) {
    let body = app.request("GET", "/metrics", &[], b"").await.body;
    let count = |written: &str| {
        let prefix = format!("crm_graphql_pages_total{{written=\"{written}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{body}"))
            .parse()
            .unwrap()
    };
    (count("direct"), count("juniper"))
}

/// Sends `body` to both servers; the answers must be the same bytes. Returns the answer.
async fn same_answer(direct: &TestApp, juniper: &TestApp, body: &Value) -> Value {
    let body = body.to_string();
    let headers = [("Content-Type", "application/json")];
    let a = direct
        .request("POST", "/graphql", &headers, body.as_bytes())
        .await;
    let b = juniper
        .request("POST", "/graphql", &headers, body.as_bytes())
        .await;
    assert_eq!(a.status, b.status, "{body}");
    assert_eq!(
        a.body, b.body,
        "the two servers answered {body} differently"
    );
    a.json()
}

/// The documents that take the direct path, each with what it is about.
const DIRECT: &[(&str, &str)] = &[
    (
        "the issue's 100-order page",
        "{ allOrders(first: 100) { edges { node { id orderDate totalAmount customer { name email } \
         products { name price } } } } }",
    ),
    (
        "the reminders job's page, with cursors and pageInfo",
        "{ allOrders(first: 50, orderBy: \"orderDate\") { edges { node { id orderDate \
         totalAmount customer { email } } cursor } pageInfo { hasNextPage endCursor } } }",
    ),
    (
        "every field of every type",
        "{ allOrders(first: 30, orderBy: \"-totalAmount\") { totalCount edges { cursor node { id \
         orderDate totalAmount customer { id name email phone createdAt } products { id name \
         price stock } } } } }",
    ),
    (
        "aliases at every level",
        "{ a: allOrders(first: 7) { e: edges { c: cursor n: node { i: id d: orderDate who: \
         customer { m: email n: name } what: products { p: price } } } } }",
    ),
    (
        "__typename at every level",
        "{ allOrders(first: 5) { __typename edges { __typename node { __typename id customer { \
         __typename } products { __typename id } } } } }",
    ),
    (
        "named fragments on the edge, the order and the customer",
        "query { allOrders(first: 9) { edges { ...E } } } fragment E on OrderTypeEdge { cursor \
         node { ...O } } fragment O on OrderType { id customer { ...C } } fragment C on \
         CustomerType { email phone }",
    ),
    (
        "inline fragments with and without a type",
        "{ allOrders(first: 6) { edges { ... { cursor } node { ... on OrderType { id } ... { \
         totalAmount } } } } }",
    ),
    (
        "@skip and @include, literal",
        "{ allOrders(first: 6) { edges { cursor @skip(if: true) node { id @include(if: true) \
         totalAmount @include(if: false) customer @skip(if: false) { email } } } } }",
    ),
    (
        "the same scalar field twice under one key",
        "{ allOrders(first: 4) { edges { cursor cursor node { id id customer { email email } } } \
         } }",
    ),
    (
        "customers, every field",
        "{ allCustomers(first: 40, orderBy: \"name\") { edges { cursor node { __typename id name \
         email phone createdAt } } } }",
    ),
    (
        "products, every field",
        "{ allProducts(first: 20, orderBy: \"-price\") { edges { cursor node { id name price \
         stock } } } }",
    ),
    (
        "an empty page",
        "{ allOrders(first: 5, filter: {orderDateGte: \"2099-01-01\"}) { edges { node { id } } } }",
    ),
];

#[async_std::test]
async fn pages_written_straight_to_json_are_juniper_s_answers_byte_for_byte() {
    let (direct, juniper) = two_servers().await;
    for (what, query) in DIRECT {
        let before = pages(&direct).await;
        let answer = same_answer(&direct, &juniper, &json!({ "query": query })).await;
        assert!(answer.get("errors").is_none(), "{what}: {answer}");
        assert_eq!(
            pages(&direct).await,
            (before.0 + 1, before.1),
            "{what}: the page was not written directly"
        );
    }
    // The juniper-only server wrote every page field by field.
    assert_eq!(pages(&juniper).await, (0, DIRECT.len() as u64));
}

#[async_std::test]
async fn skip_and_include_read_their_variables() {
    let (direct, juniper) = two_servers().await;
    let query = "query($withCustomer: Boolean!, $noCursor: Boolean!) { allOrders(first: 8) { \
                 edges { cursor @skip(if: $noCursor) node { id customer @include(if: \
                 $withCustomer) { name } } } } }";
    for (with_customer, no_cursor) in [(true, false), (false, true), (true, true)] {
        let body = json!({
            "query": query,
            "variables": {"withCustomer": with_customer, "noCursor": no_cursor},
        });
        let answer = same_answer(&direct, &juniper, &body).await;
        let edge = &answer["data"]["allOrders"]["edges"][0];
        assert_eq!(edge.get("cursor").is_some(), !no_cursor, "{answer}");
        assert_eq!(
            edge["node"].get("customer").is_some(),
            with_customer,
            "{answer}"
        );
    }
    assert_eq!(pages(&direct).await, (3, 0));
}

/// Juniper merges a response key selected twice after resolving each occurrence; such
/// documents, and batches, are answered by juniper alone, still correctly.
#[async_std::test]
async fn documents_that_merge_selections_are_left_to_juniper_and_answered_right() {
    let (direct, juniper) = two_servers().await;
    let merged = [
        "{ allOrders(first: 3) { edges { node { id } } edges { cursor } } }",
        "{ a: allOrders(first: 3) { edges { cursor } } a: allOrders(first: 3) { edges { node { \
         id } } } }",
        "{ allOrders(first: 3) { edges { node { customer { name } customer { email } } } } }",
        "query { allOrders(first: 3) { ...A ...B } } fragment A on OrderTypeConnection { edges { \
         cursor } } fragment B on OrderTypeConnection { edges { node { totalAmount } } }",
    ];
    for query in merged {
        let answer = same_answer(&direct, &juniper, &json!({ "query": query })).await;
        let edge = &answer["data"]["allOrders"]["edges"][0];
        let edge = if edge.is_null() {
            &answer["data"]["a"]["edges"][0]
        } else {
            edge
        };
        assert!(edge.is_object(), "{query}: {answer}");
        if query.contains("edges { cursor }") {
            assert!(edge["cursor"].is_string(), "{query}: {answer}");
            assert!(edge["node"].is_object(), "{query}: {answer}");
        } else {
            assert!(edge["node"]["customer"]["name"].is_string(), "{answer}");
            assert!(edge["node"]["customer"]["email"].is_string(), "{answer}");
        }
    }
    let batch = json!([
        {"query": DIRECT[0].1},
        {"query": "{ allCustomers(first: 2) { edges { node { email } } } }"},
    ]);
    let answers = same_answer(&direct, &juniper, &batch).await;
    assert_eq!(answers.as_array().map(Vec::len), Some(2));
    // Juniper resolves each occurrence of a repeated key: 2 + 2 + 1 + 2 pages, and the batch's 2.
    assert_eq!(pages(&direct).await, (0, 9));
}

/// The rows SQLite hands over as one JSON array, and the edges written straight to JSON,
/// carry names that need escaping exactly as they were stored.
#[async_std::test]
async fn names_that_need_escaping_read_back_exactly() {
    let (direct, juniper) = two_servers().await;
    let page = json!({ "query": "{ allOrders(first: 100) { edges { node { customer { name \
                                 email } products { name } } } } }" });
    let answer = same_answer(&direct, &juniper, &page).await;
    let edges = answer["data"]["allOrders"]["edges"].as_array().unwrap();
    let zoe = edges
        .iter()
        .map(|edge| &edge["node"])
        .find(|node| node["customer"]["email"] == "zoe@shop.com")
        .unwrap_or_else(|| panic!("no order of zoe@shop.com: {answer}"));
    assert_eq!(zoe["customer"]["name"], ZOE);
    assert_eq!(
        zoe["products"],
        json!([{"name": "Pen \"fine\""}, {"name": "Ink"}])
    );
    assert_eq!(pages(&direct).await, (1, 0));
}
