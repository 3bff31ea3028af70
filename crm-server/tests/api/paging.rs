//! Keyset cursors and page sizes through the API (issue 14): every list and sort pages to the
//! end without a row skipped or repeated, `totalCount` ignores the position, and hostile
//! cursors are `VALIDATION` errors, never a 500 and never another list's rows.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Duration;
use crm_core::testing::TestDb;
use crm_server::ServerConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error, now, spawn_app, spawn_app_with};

/// Reads `list` with `orderBy` to the end, `first` rows a page; the node ids in order and the
/// number of pages. Checks `totalCount` on every page.
async fn read_all(
    app: &TestApp,
    list: &str,
    order_by: &str,
    filter: Value,
    first: i32,
) -> (Vec<String>, usize) {
    let filter_type = match list {
        "allCustomers" => "CustomerFilterInput",
        "allProducts" => "ProductFilterInput",
        _ => "OrderFilterInput",
    };
    let q = format!(
        "query($after: String, $o: String, $f: {filter_type}, $n: Int) {{ {list}(first: $n, \
         after: $after, orderBy: $o, filter: $f) {{ totalCount edges {{ cursor node {{ id }} }} \
         pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"
    );
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, Value::Null);
    let mut total = None;
    loop {
        let data = app
            .data(
                &q,
                json!({"after": after, "o": order_by, "f": filter, "n": first}),
            )
            .await;
        let conn = &data[list];
        let edges = conn["edges"].as_array().unwrap();
        if let Some(total) = total {
            assert_eq!(conn["totalCount"], total, "totalCount changed with `after`");
        }
        total = Some(conn["totalCount"].clone());
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], pages > 0);
        if let Some(last) = edges.last() {
            assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
            assert_eq!(conn["pageInfo"]["startCursor"], edges[0]["cursor"]);
        }
        ids.extend(
            edges
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            assert_eq!(total.unwrap().as_u64().unwrap() as usize, ids.len());
            return (ids, pages);
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

async fn app_with_ties() -> TestApp {
    let app = spawn_app().await;
    let mut customers = Vec::new();
    for i in 0..9 {
        let name = ["Ann", "ann", "Bob"][i % 3];
        customers.push(app.customer(name, &format!("c{i}@example.com")).await);
    }
    let mut products = Vec::new();
    for i in 0..8 {
        products.push(
            app.product(
                ["Pen", "pen", "Cup", "Ink"][i % 4],
                ["1.00", "2.50"][i % 2],
                (i % 3) as i32,
            )
            .await,
        );
    }
    for i in 0..25 {
        let at = now() - Duration::hours((i % 6) as i64);
        app.order(&customers[i % 9], &[&products[i % 8]], at).await;
    }
    app
}

#[async_std::test]
async fn every_list_and_sort_pages_to_the_end_without_skipping_or_repeating() {
    let app = app_with_ties().await;
    let lists = [
        (
            "allCustomers",
            &[
                "",
                "id",
                "-id",
                "name",
                "-name",
                "email",
                "-email",
                "createdAt",
                "-createdAt",
                "-name,email",
            ][..],
        ),
        (
            "allProducts",
            &[
                "",
                "id",
                "-id",
                "name",
                "-name",
                "price",
                "-price",
                "stock",
                "-stock",
                "-stock,name",
            ][..],
        ),
        (
            "allOrders",
            &[
                "",
                "id",
                "-id",
                "orderDate",
                "-orderDate",
                "totalAmount",
                "-totalAmount",
                "-totalAmount,orderDate",
            ][..],
        ),
    ];
    for (list, sorts) in lists {
        for order_by in sorts {
            let (whole, _) = read_all(&app, list, order_by, Value::Null, 1000).await;
            for first in [1, 2, 4] {
                let (paged, pages) = read_all(&app, list, order_by, Value::Null, first).await;
                assert_eq!(paged, whole, "{list} by '{order_by}', {first} a page");
                assert!(pages >= whole.len() / first as usize);
            }
        }
    }
    let (whole, _) = read_all(
        &app,
        "allOrders",
        "-orderDate",
        json!({"totalAmountGte": "2.00"}),
        1000,
    )
    .await;
    let (paged, _) = read_all(
        &app,
        "allOrders",
        "-orderDate",
        json!({"totalAmountGte": "2.00"}),
        3,
    )
    .await;
    assert_eq!(paged, whole);
    assert!(!whole.is_empty() && whole.len() < 25);
}

/// The first page of `allProducts` by stock, and its end cursor.
async fn product_cursor(app: &TestApp, order_by: &str) -> String {
    let data = app
        .data(
            "query($o: String) { allProducts(first: 2, orderBy: $o) { pageInfo { endCursor } } }",
            json!({"o": order_by}),
        )
        .await;
    data["allProducts"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn refused(app: &TestApp, query: &str, after: &str) -> String {
    let answer = app.gql(query, json!({"a": after})).await;
    assert!(
        answer["data"].is_null()
            || answer["data"]
                .as_object()
                .is_some_and(|d| d.values().all(Value::is_null)),
        "{answer}"
    );
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION", "{answer}");
    assert!(message.starts_with("after: "), "{message}");
    message
}

#[async_std::test]
async fn hostile_cursors_are_validation_errors_never_other_rows() {
    let app = app_with_ties().await;
    let products = "query($a: String) { allProducts(first: 2, after: $a, orderBy: \"stock\") { edges { node { id } } } }";
    let cursor = product_cursor(&app, "stock").await;
    // The genuine cursor works.
    assert!(app.gql(products, json!({"a": cursor})).await["errors"].is_null());

    // graphene's offset cursors of earlier versions.
    let offset = STANDARD.encode("arrayconnection:1");
    assert!(
        refused(&app, products, &offset)
            .await
            .contains("offset cursor")
    );
    // Cut short, or with a byte changed.
    refused(&app, products, &cursor[..cursor.len() - 4]).await;
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
    let forged = URL_SAFE_NO_PAD.encode(text.replacen("ProductType", "CustomerType", 1));
    assert!(refused(&app, products, &forged).await.contains("altered"));
    for junk in ["x", "////", "e30", "W10", &"QQ".repeat(5_000), "\u{0}"] {
        refused(&app, products, junk).await;
    }
    // Another list's, another sort's, another filter's.
    let customers =
        "query($a: String) { allCustomers(first: 2, after: $a) { edges { node { id } } } }";
    assert!(
        refused(&app, customers, &cursor)
            .await
            .contains("ProductType")
    );
    let by_price = "query($a: String) { allProducts(first: 2, after: $a, orderBy: \"price\") { edges { node { id } } } }";
    assert!(
        refused(&app, by_price, &cursor)
            .await
            .contains("another orderBy or filter")
    );
    let filtered = "query($a: String) { allProducts(first: 2, after: $a, orderBy: \"stock\", filter: {stockLt: 2}) { edges { node { id } } } }";
    refused(&app, filtered, &cursor).await;
}

#[async_std::test]
async fn without_first_a_list_returns_the_largest_page_and_more_is_refused_naming_the_limit() {
    let db = TestDb::sqlite().await;
    let config = ServerConfig {
        max_page_size: 4,
        max_rows_per_request: 10,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(db, config).await;
    for i in 0..6 {
        app.product(&format!("P{i}"), "1.00", i).await;
    }
    let data = app
        .data(
            "{ allProducts { edges { node { id } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["allProducts"]["edges"].as_array().unwrap().len(), 4);
    assert_eq!(data["allProducts"]["pageInfo"]["hasNextPage"], true);
    let answer = app
        .gql("{ allProducts(first: 5) { totalCount } }", json!({}))
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert!(
        message.contains("at most 4") && message.contains("CRM_MAX_PAGE_SIZE"),
        "{message}"
    );
    // Three lists of 4 rows ask for 12 of the request's 10.
    let answer = app
        .gql("{ a: allProducts { totalCount } b: allProducts { totalCount } c: allProducts { totalCount } }", json!({}))
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert!(message.contains("more than 10 rows"), "{message}");
}

#[async_std::test]
async fn the_default_page_size_limit_is_a_thousand() {
    let app = spawn_app().await;
    assert!(
        app.gql("{ allOrders(first: 1000) { totalCount } }", json!({}))
            .await["errors"]
            .is_null()
    );
    let (message, code) = first_error(
        &app.gql("{ allOrders(first: 1001) { totalCount } }", json!({}))
            .await,
    );
    assert_eq!(code, "VALIDATION");
    assert!(message.contains("at most 1000"), "{message}");
}
