//! The GraphQL API end to end: the real server on port 0 over a fresh SQLite database (and
//! PostgreSQL where named), driven with raw HTTP.

mod graphiql;
mod helpers;
mod metrics;
mod paging;
mod prerender;
mod probes;
mod prop_input;
mod security;
mod status;

use std::str::FromStr;

use chrono::Duration;
use crm_core::testing::TestDb;
use crm_core::{CrmStore, CustomerFilter, Money, OrderFilter, PageRequest, ProductFilter};
use crm_server::ServerConfig;
use helpers::{first_error, global_id, now, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const CREATE_CUSTOMER: &str = "mutation($input: CustomerInput!) {
    createCustomer(input: $input) { customer { id name email phone } message } }";
const CREATE_PRODUCT: &str = "mutation($input: ProductInput!) {
    createProduct(input: $input) { product { id name price stock } } }";
const CREATE_ORDER: &str = "mutation($input: OrderInput!) {
    createOrder(input: $input) {
        order { id customer { id email } products { id name price } totalAmount orderDate } } }";
const RESTOCK: &str = "mutation { updateLowStockProducts { products { id name stock } message } }";

async fn customer_count(app: &helpers::TestApp) -> i64 {
    app.database()
        .count_customers(&CustomerFilter::default())
        .await
        .unwrap()
}

// ---------------------------------------------------------------- HTTP

#[async_std::test]
async fn hello_answers_at_both_paths_in_json_and_graphql_text() {
    let app = spawn_app().await;
    for path in ["/graphql", "/graphql/"] {
        let r = app
            .request(
                "POST",
                path,
                &[("Content-Type", "application/json")],
                br#"{"query":"{ hello }"}"#,
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{}",
            r.headers
        );
        assert_eq!(r.json(), json!({"data": {"hello": "Hello, GraphQL!"}}));
    }
    let r = app
        .request(
            "POST",
            "/graphql",
            &[("Content-Type", "application/graphql")],
            b"{ hello }",
        )
        .await;
    assert_eq!(r.json()["data"]["hello"], "Hello, GraphQL!");
}

#[async_std::test]
async fn get_serves_graphiql_and_healthz_answers() {
    let app = spawn_app().await;
    let r = app.request("GET", "/graphql", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.to_ascii_lowercase().contains("text/html"),
        "{}",
        r.headers
    );
    assert!(
        r.body.contains("GraphiQL") || r.body.contains("graphiql"),
        "not GraphiQL"
    );
    let r = app.request("GET", "/healthz", &[], b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_std::test]
async fn get_with_a_query_runs_it_for_programs_but_never_a_mutation() {
    let app = spawn_app().await;
    let path = format!(
        "/graphql?query={}&variables={}",
        percent_encode("query($n: Int) { hello allCustomers(first: $n) { totalCount } }"),
        percent_encode(r#"{"n": 5}"#)
    );
    let r = app
        .request("GET", &path, &[("Accept", "application/json")], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"data": {"hello": "Hello, GraphQL!", "allCustomers": {"totalCount": 0}}})
    );
    // A browser asking for the same URL gets GraphiQL.
    let r = app
        .request("GET", &path, &[("Accept", "text/html,*/*")], b"")
        .await;
    assert!(
        r.headers.to_ascii_lowercase().contains("text/html"),
        "{}",
        r.headers
    );
    // A link must not write.
    let mutation = "mutation { createCustomer(input: {name: \"Gus\", email: \"gus@example.com\"}) { message } }";
    let path = format!("/graphql/?query={}", percent_encode(mutation));
    let r = app.request("GET", &path, &[], b"").await;
    let (message, code) = first_error(&r.json());
    assert_eq!(code, "VALIDATION");
    assert!(
        message.contains("mutations must be sent by POST"),
        "{message}"
    );
    assert_eq!(customer_count(&app).await, 0);
}

#[async_std::test]
async fn batched_requests_get_one_answer_each() {
    let app = spawn_app().await;
    let body = br#"[{"query":"{ hello }"},{"query":"{ totalCustomers }"}]"#;
    let r = app
        .request(
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"data": {"hello": "Hello, GraphQL!"}}, {"data": {"totalCustomers": 0}}])
    );
}

#[async_std::test]
async fn a_batch_over_sixteen_operations_is_refused_whole() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..17).map(|_| json!({"query": "{ hello }"})).collect();
    let body = Value::Array(batch).to_string();
    let r = app
        .request(
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400);
    let (message, code) = first_error(&r.json());
    assert_eq!(message, "a batch holds at most 16 operations, got 17");
    assert_eq!(code, "BAD_REQUEST");
}

#[async_std::test]
async fn a_body_that_is_not_json_gets_a_clear_400() {
    let app = spawn_app().await;
    let r = app
        .request(
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            b"{query",
        )
        .await;
    assert_eq!(r.status, 400);
    let (message, code) = first_error(&r.json());
    assert!(
        message.contains("not a GraphQL request in JSON"),
        "{message}"
    );
    assert_eq!(code, "BAD_REQUEST");
}

#[async_std::test]
async fn an_oversized_body_is_refused_with_413_and_nothing_written() {
    let config = ServerConfig {
        max_body_bytes: 2_000,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    let padding = "x".repeat(3_000);
    let variables = json!({"input": {"name": padding, "email": "big@example.com"}});
    let r = app.post_graphql(CREATE_CUSTOMER, variables, None).await;
    assert_eq!(r.status, 413);
    let (message, code) = first_error(&r.json());
    assert!(
        message.contains("exceeds the limit of 2000 bytes"),
        "{message}"
    );
    assert_eq!(code, "PAYLOAD_TOO_LARGE");
    assert_eq!(customer_count(&app).await, 0);
}

#[async_std::test]
async fn a_too_deep_query_is_refused_with_a_clear_message() {
    let config = ServerConfig {
        max_depth: 6,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    let ok = "{ allOrders { edges { node { customer { email } } } } }";
    app.data(ok, json!({})).await;
    // Each fragment spread nests one level deeper.
    let deep = "{ allOrders { edges { node { ...A } } } }
        fragment A on OrderType { ...B } fragment B on OrderType { ...C }
        fragment C on OrderType { customer { email } }";
    let r = app.post_graphql(deep, json!({}), None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let (message, _) = first_error(&r.json());
    assert!(
        message.contains("nesting exceeds the limit of 6 levels"),
        "{message}"
    );
}

#[async_std::test]
async fn the_default_depth_limit_admits_graphiqls_introspection_query() {
    let app = spawn_app().await;
    let introspection = "query IntrospectionQuery { __schema { queryType { name } mutationType { name }
        types { ...FullType } directives { name description locations args { ...InputValue } } } }
      fragment FullType on __Type { kind name description
        fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
        inputFields { ...InputValue } interfaces { ...TypeRef }
        enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
      fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
      fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let data = app.data(introspection, json!({})).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

// ---------------------------------------------------------------- customers

#[async_std::test]
async fn create_customer_answers_the_contract_shape() {
    let app = spawn_app().await;
    let input =
        json!({"input": {"name": "Alice", "email": "alice@example.com", "phone": "+1234567890"}});
    let data = app.data(CREATE_CUSTOMER, input).await;
    let created = &data["createCustomer"];
    assert_eq!(created["customer"]["name"], "Alice");
    assert_eq!(created["customer"]["email"], "alice@example.com");
    assert_eq!(created["customer"]["phone"], "+1234567890");
    assert_eq!(created["message"], "Customer created successfully");
    let stored = app
        .database()
        .list_customers(&CustomerFilter::default(), &[], PageRequest::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        created["customer"]["id"],
        global_id("CustomerType", stored[0].id)
    );
}

#[async_std::test]
async fn an_invalid_email_is_a_validation_error_and_writes_nothing() {
    let app = spawn_app().await;
    let answer = app
        .gql(
            CREATE_CUSTOMER,
            json!({"input": {"name": "Bob", "email": "bob-at-example"}}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(
        message,
        "email: 'bob-at-example' is not a valid e-mail address"
    );
    assert_eq!(code, "VALIDATION");
    assert_eq!(answer["errors"][0]["extensions"]["field"], "email");
    assert_eq!(customer_count(&app).await, 0);
}

#[async_std::test]
async fn a_bad_phone_is_a_validation_error_naming_the_phone() {
    let app = spawn_app().await;
    let answer = app
        .gql(
            CREATE_CUSTOMER,
            json!({"input": {"name": "Bob", "email": "bob@example.com", "phone": "12"}}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert!(message.starts_with("phone: '12'"), "{message}");
    assert_eq!(code, "VALIDATION");
    assert_eq!(customer_count(&app).await, 0);
}

#[async_std::test]
async fn a_duplicate_email_in_another_case_conflicts_and_writes_nothing() {
    let app = spawn_app().await;
    app.data(
        CREATE_CUSTOMER,
        json!({"input": {"name": "Alice", "email": "alice@example.com"}}),
    )
    .await;
    let answer = app
        .gql(
            CREATE_CUSTOMER,
            json!({"input": {"name": "Alice 2", "email": "ALICE@Example.com"}}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.to_lowercase().contains("alice@example.com"),
        "{message}"
    );
    assert!(answer["data"].is_null(), "{answer}");
    assert_eq!(customer_count(&app).await, 1);
}

#[async_std::test]
async fn bulk_create_creates_the_valid_ones_and_reports_the_rest_in_order() {
    let app = spawn_app().await;
    app.customer("Existing", "taken@example.com").await;
    let input = json!({"input": [
        {"name": "Ann", "email": "ann@example.com", "phone": "123-456-7890"},
        {"name": "Bad", "email": "not-an-email"},
        {"name": "Dup", "email": "TAKEN@example.com"},
        {"name": "Ben", "email": "ben@example.com"},
        {"name": "Ben again", "email": "Ben@Example.com"},
        {"name": "  ", "email": "blank@example.com"}
    ]});
    let data = app
        .data(
            "mutation($input: [CustomerInput!]!) { bulkCreateCustomers(input: $input) {
                customers { id name email phone } errors } }",
            input,
        )
        .await;
    let result = &data["bulkCreateCustomers"];
    let names: Vec<&str> = result["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann", "Ben"]);
    let errors: Vec<&str> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].starts_with("input[1] (not-an-email): email:"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("input[2] (TAKEN@example.com):"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("input[4] (Ben@Example.com):"),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].starts_with("input[5] (blank@example.com): name:"),
        "{}",
        errors[3]
    );
    assert_eq!(customer_count(&app).await, 3);
}

#[async_std::test]
async fn a_bulk_call_over_the_limit_is_refused_and_writes_nothing() {
    let config = ServerConfig {
        max_bulk_customers: 2,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    let input: Vec<Value> = (0..3)
        .map(|i| json!({"name": "N", "email": format!("n{i}@example.com")}))
        .collect();
    let answer = app
        .gql(
            "mutation($input: [CustomerInput!]!) { bulkCreateCustomers(input: $input) { errors } }",
            json!({"input": input}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert_eq!(message, "input: at most 2 customers per call, got 3");
    assert_eq!(customer_count(&app).await, 0);
}

#[async_std::test]
async fn customers_filter_by_name_email_and_creation_and_sort() {
    let app = spawn_app().await;
    let alice = app.customer("Alice Smith", "alice@shop.com").await;
    let alina = app.customer("Alina", "alina@other.org").await;
    let bob = app.customer("Bob", "bob@shop.com").await;
    app.db
        .set_customer_created_at(alice.id, now() - Duration::days(30))
        .await
        .unwrap();
    app.db
        .set_customer_created_at(alina.id, now() - Duration::days(2))
        .await
        .unwrap();
    app.db
        .set_customer_created_at(bob.id, now() - Duration::days(1))
        .await
        .unwrap();
    let names = |data: &Value| -> Vec<String> {
        data["allCustomers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = "query($f: CustomerFilterInput, $o: String) { allCustomers(filter: $f, orderBy: $o) {
        totalCount edges { node { id name email createdAt } } } }";
    let data = app
        .data(q, json!({"f": {"nameIcontains": "ALI"}, "o": "-name"}))
        .await;
    assert_eq!(names(&data), ["Alina", "Alice Smith"]);
    assert_eq!(data["allCustomers"]["totalCount"], 2);
    let data = app
        .data(q, json!({"f": {"emailIcontains": "@SHOP."}, "o": "name"}))
        .await;
    assert_eq!(names(&data), ["Alice Smith", "Bob"]);
    let since = (now() - Duration::days(3)).to_rfc3339();
    let data = app
        .data(q, json!({"f": {"createdAtGte": since}, "o": "-createdAt"}))
        .await;
    assert_eq!(names(&data), ["Bob", "Alina"]);
    // A bare date, as the original's filters took it.
    let data = app
        .data(q, json!({"f": {"createdAtGte": "2026-11-24"}}))
        .await;
    assert_eq!(names(&data), ["Alina", "Bob"]);
    assert_eq!(
        data["allCustomers"]["edges"][0]["node"]["createdAt"],
        "2026-11-24T12:00:00+00:00"
    );
}

#[async_std::test]
async fn single_lookups_take_global_and_plain_ids_and_answer_null_when_absent() {
    let app = spawn_app().await;
    let c = app.customer("Carol", "carol@example.com").await;
    let p = app.product("Pen", "1.50", 3).await;
    let o = app.order(&c, &[&p], now()).await;
    let q = "query($c: ID!, $p: ID!, $o: ID!) { customer(id: $c) { name } product(id: $p) { name price }
        order(id: $o) { totalAmount customer { email } } }";
    for (cid, pid, oid) in [
        (
            global_id("CustomerType", c.id),
            global_id("ProductType", p.id),
            global_id("OrderType", o.id),
        ),
        (c.id.to_string(), p.id.to_string(), o.id.to_string()),
    ] {
        let data = app.data(q, json!({"c": cid, "p": pid, "o": oid})).await;
        assert_eq!(data["customer"]["name"], "Carol");
        assert_eq!(data["product"]["price"], "1.50");
        assert_eq!(data["order"]["customer"]["email"], "carol@example.com");
    }
    let data = app
        .data(q, json!({"c": "999", "p": "999", "o": "999"}))
        .await;
    assert_eq!(
        data,
        json!({"customer": null, "product": null, "order": null})
    );
    let answer = app
        .gql("{ customer(id: \"T3JkZXJUeXBlOjE=\") { name } }", json!({}))
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert!(
        message.contains("OrderType") && message.contains("CustomerType"),
        "{message}"
    );
}

// ---------------------------------------------------------------- products

#[async_std::test]
async fn create_product_takes_price_as_string_or_number_and_answers_two_decimals() {
    let app = spawn_app().await;
    let data = app
        .data(
            CREATE_PRODUCT,
            json!({"input": {"name": "Laptop", "price": "999.9", "stock": 5}}),
        )
        .await;
    assert_eq!(data["createProduct"]["product"]["price"], "999.90");
    assert_eq!(data["createProduct"]["product"]["stock"], 5);
    let data = app
        .data(
            CREATE_PRODUCT,
            json!({"input": {"name": "Mouse", "price": 19.99}}),
        )
        .await;
    assert_eq!(data["createProduct"]["product"]["price"], "19.99");
    assert_eq!(data["createProduct"]["product"]["stock"], 0);
    // An inline literal, as a hand-written query would have it.
    let data = app
        .data("mutation { createProduct(input: {name: \"Cable\", price: 3, stock: 1}) { product { price } } }", json!({}))
        .await;
    assert_eq!(data["createProduct"]["product"]["price"], "3.00");
    let stored = app
        .database()
        .list_products(&ProductFilter::default(), &[], PageRequest::default())
        .await
        .unwrap();
    let prices: Vec<String> = stored.iter().map(|p| p.price.to_string()).collect();
    assert_eq!(prices, ["999.90", "19.99", "3.00"]);
}

#[async_std::test]
async fn a_negative_or_malformed_price_or_stock_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    for (input, field) in [
        (json!({"name": "P", "price": "-1.00", "stock": 1}), "price"),
        (json!({"name": "P", "price": "0", "stock": 1}), "price"),
        (json!({"name": "P", "price": "1.999", "stock": 1}), "price"),
        (json!({"name": "P", "price": "1.00", "stock": -1}), "stock"),
    ] {
        let answer = app.gql(CREATE_PRODUCT, json!({"input": input})).await;
        let (message, code) = first_error(&answer);
        assert_eq!(code, "VALIDATION", "{input}: {message}");
        assert!(
            message.starts_with(&format!("{field}:")),
            "{input}: {message}"
        );
    }
    let r = app
        .post_graphql(
            CREATE_PRODUCT,
            json!({"input": {"name": "P", "price": "abc"}}),
            None,
        )
        .await;
    assert!(
        r.body.contains("'abc' is not a decimal number"),
        "{}",
        r.body
    );
    assert_eq!(
        app.database()
            .count_products(&ProductFilter::default())
            .await
            .unwrap(),
        0
    );
}

#[async_std::test]
async fn products_filter_by_price_and_stock_and_sort_by_stock_descending() {
    let app = spawn_app().await;
    app.product("Cheap", "5.00", 50).await;
    app.product("Mid", "50.00", 3).await;
    app.product("Dear", "500.00", 8).await;
    app.product("Dearer", "900.00", 20).await;
    let q = "query($f: ProductFilterInput, $o: String) { allProducts(filter: $f, orderBy: $o) {
        edges { node { name price stock } } } }";
    let names = |data: &Value| -> Vec<String> {
        data["allProducts"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let data = app
        .data(
            q,
            json!({"f": {"priceGte": "50", "priceLte": 500}, "o": "-stock"}),
        )
        .await;
    assert_eq!(names(&data), ["Dear", "Mid"]);
    let data = app
        .data(q, json!({"f": {"stockLt": 10}, "o": "stock"}))
        .await;
    assert_eq!(names(&data), ["Mid", "Dear"]);
    let data = app.data(q, json!({"o": "-stock"})).await;
    assert_eq!(names(&data), ["Cheap", "Dearer", "Dear", "Mid"]);
    let data = app.data("{ allProducts(orderBy: \"-price\", filter: {nameIcontains: \"dear\"}) { edges { node { name } } } }", json!({})).await;
    assert_eq!(names(&data), ["Dearer", "Dear"]);
}

#[async_std::test]
async fn an_unknown_order_by_field_is_a_clear_error() {
    let app = spawn_app().await;
    let answer = app
        .gql(
            "{ allProducts(orderBy: \"-weight\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert!(
        message.contains("unknown field 'weight'") && message.contains("stock"),
        "{message}"
    );
}

#[async_std::test]
async fn pages_follow_each_other_with_first_and_after() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.product(&format!("P{i}"), "1.00", i).await;
    }
    let q = "query($after: String) { allProducts(first: 3, after: $after, orderBy: \"stock\") {
        edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let mut after = Value::Null;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let data = app.data(q, json!({"after": after})).await;
        let conn = &data["allProducts"];
        for edge in conn["edges"].as_array().unwrap() {
            seen.push(edge["node"]["name"].as_str().unwrap().to_owned());
        }
        pages += 1;
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], pages > 1);
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["P0", "P1", "P2", "P3", "P4", "P5", "P6"]);
}

#[async_std::test]
async fn first_above_the_page_size_limit_is_refused() {
    let config = ServerConfig {
        max_page_size: 50,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    let answer = app
        .gql(
            "{ allOrders(first: 51) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "VALIDATION");
    assert!(message.contains("first: must be at most 50"), "{message}");
    let answer = app
        .gql(
            "{ allOrders(first: 5, after: \"bogus\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(first_error(&answer).1, "VALIDATION");
}

// ---------------------------------------------------------------- orders

#[async_std::test]
async fn create_order_computes_the_total_and_takes_global_or_plain_ids() {
    let app = spawn_app().await;
    let c = app.customer("Dan", "dan@example.com").await;
    let a = app.product("A", "0.10", 5).await;
    let b = app.product("B", "0.20", 5).await;
    let input = json!({"input": {
        "customerId": global_id("CustomerType", c.id),
        "productIds": [global_id("ProductType", a.id), b.id.to_string()],
        "orderDate": "2026-11-20T08:30:00+01:00"
    }});
    let data = app.data(CREATE_ORDER, input).await;
    let order = &data["createOrder"]["order"];
    assert_eq!(order["totalAmount"], "0.30");
    assert_eq!(order["orderDate"], "2026-11-20T07:30:00+00:00");
    assert_eq!(order["customer"]["email"], "dan@example.com");
    assert_eq!(order["customer"]["id"], global_id("CustomerType", c.id));
    let names: Vec<&str> = order["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B"]);
    // Without orderDate the server's clock decides; the customer's own id as handed out works.
    let input =
        json!({"input": {"customerId": order["customer"]["id"], "productIds": [a.id.to_string()]}});
    let data = app.data(CREATE_ORDER, input).await;
    assert_eq!(
        data["createOrder"]["order"]["orderDate"],
        now().to_rfc3339()
    );
    let totals = app.totals().await;
    assert_eq!(
        (totals.orders, totals.revenue),
        (2, Money::from_str("0.40").unwrap())
    );
}

#[async_std::test]
async fn an_order_with_an_unknown_product_or_customer_writes_nothing() {
    let app = spawn_app().await;
    let c = app.customer("Eve", "eve@example.com").await;
    let p = app.product("P", "1.00", 1).await;
    let answer = app
        .gql(CREATE_ORDER, json!({"input": {"customerId": c.id.to_string(), "productIds": [p.id.to_string(), "999"]}}))
        .await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "NOT_FOUND");
    assert!(
        message.contains("product") && message.contains("999"),
        "{message}"
    );
    let answer = app
        .gql(
            CREATE_ORDER,
            json!({"input": {"customerId": "4242", "productIds": [p.id.to_string()]}}),
        )
        .await;
    assert_eq!(first_error(&answer).1, "NOT_FOUND");
    let answer = app
        .gql(
            CREATE_ORDER,
            json!({"input": {"customerId": c.id.to_string(), "productIds": []}}),
        )
        .await;
    assert_eq!(first_error(&answer).1, "VALIDATION");
    let answer = app
        .gql(CREATE_ORDER, json!({"input": {"customerId": global_id("ProductType", p.id), "productIds": [p.id.to_string()]}}))
        .await;
    assert_eq!(first_error(&answer).1, "VALIDATION");
    assert_eq!(app.totals().await.orders, 0);
}

#[async_std::test]
async fn orders_filter_by_date_customer_and_total() {
    let app = spawn_app().await;
    let ann = app.customer("Ann Lee", "ann@example.com").await;
    let bo = app.customer("Bo", "bo@example.com").await;
    let cheap = app.product("Pencil", "2.00", 5).await;
    let dear = app.product("Laptop", "800.00", 5).await;
    let old = app.order(&ann, &[&cheap], now() - Duration::days(10)).await;
    let recent = app
        .order(&ann, &[&dear, &cheap], now() - Duration::days(2))
        .await;
    let other = app.order(&bo, &[&cheap], now() - Duration::days(1)).await;
    let q = "query($f: OrderFilterInput, $o: String) { allOrders(filter: $f, orderBy: $o) {
        totalCount edges { node { id totalAmount customer { email } } } } }";
    let ids = |data: &Value| -> Vec<String> {
        data["allOrders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let gid = |o: &crm_core::Order| global_id("OrderType", o.id);
    let week = json!({"orderDateGte": (now() - Duration::days(7)).to_rfc3339(), "orderDateLte": now().to_rfc3339()});
    let data = app.data(q, json!({"f": week, "o": "-orderDate"})).await;
    assert_eq!(ids(&data), [gid(&other), gid(&recent)]);
    assert_eq!(data["allOrders"]["totalCount"], 2);
    let data = app
        .data(
            q,
            json!({"f": {"customerEmail": "ANN@example.com"}, "o": "order_date"}),
        )
        .await;
    assert_eq!(ids(&data), [gid(&old), gid(&recent)]);
    let data = app.data(q, json!({"f": {"totalAmountGte": "500"}})).await;
    assert_eq!(ids(&data), [gid(&recent)]);
    assert_eq!(
        data["allOrders"]["edges"][0]["node"]["totalAmount"],
        "802.00"
    );
    let data = app
        .data(
            q,
            json!({"f": {"customerName": "lee", "productName": "LAP"}}),
        )
        .await;
    assert_eq!(ids(&data), [gid(&recent)]);
}

#[async_std::test]
async fn a_page_of_orders_costs_two_store_calls_however_long() {
    let app = spawn_app().await;
    let mut customers = Vec::new();
    for i in 0..5 {
        customers.push(
            app.customer(&format!("C{i}"), &format!("c{i}@example.com"))
                .await,
        );
    }
    let mut products = Vec::new();
    for i in 0..4 {
        products.push(app.product(&format!("P{i}"), "1.25", 10).await);
    }
    let q = "query($n: Int) { allOrders(first: $n) { edges { node { id customer { email } products { name } } } } }";
    for n in [5, 40] {
        while app.totals().await.orders < n {
            let k = app.totals().await.orders as usize;
            let ps: Vec<&crm_core::Product> =
                products.iter().cycle().skip(k).take(1 + k % 3).collect();
            app.order(&customers[k % 5], &ps, now()).await;
        }
        app.store.reset();
        let data = app.data(q, json!({"n": n})).await;
        let edges = data["allOrders"]["edges"].as_array().unwrap();
        assert_eq!(edges.len() as i64, n);
        for (k, edge) in edges.iter().enumerate() {
            assert_eq!(
                edge["node"]["customer"]["email"],
                format!("c{}@example.com", k % 5)
            );
            assert_eq!(
                edge["node"]["products"].as_array().unwrap().len(),
                1 + k % 3
            );
        }
        assert_eq!(
            app.store.calls(),
            2,
            "{n} orders: the list, then their customers and products together"
        );
    }
    // Through an alias and a fragment, and only what is asked for.
    app.store.reset();
    let q = "{ page: allOrders(first: 40) { edges { node { ...O } } } }
             fragment O on OrderType { buyer: customer { email } }";
    let data = app.data(q, json!({})).await;
    assert_eq!(
        data["page"]["edges"][7]["node"]["buyer"]["email"],
        "c2@example.com"
    );
    assert_eq!(app.store.calls(), 2, "list + customers");
}

#[async_std::test]
async fn an_orders_customer_and_products_answer_however_the_query_reaches_them() {
    let app = spawn_app().await;
    let c = app.customer("Ann", "ann@example.com").await;
    let pen = app.product("Pen", "1.25", 10).await;
    let ink = app.product("Ink", "2.00", 10).await;
    let order = app.order(&c, &[&ink, &pen], now()).await;
    // Directives with variables (one defaulted), an inline fragment, a named fragment, aliases.
    let q = "query($with: Boolean = true, $skip: Boolean!) {
        allOrders(first: 5) { edges { node {
            ... on OrderType @include(if: $with) { customer { email } }
            products @skip(if: $skip) { name }
            again: customer { ...C }
        } } } }
        fragment C on CustomerType { name }";
    let data = app.data(q, json!({"skip": false})).await;
    let node = &data["allOrders"]["edges"][0]["node"];
    assert_eq!(node["customer"]["email"], "ann@example.com");
    assert_eq!(node["again"]["name"], "Ann");
    assert_eq!(node["products"], json!([{"name": "Pen"}, {"name": "Ink"}]));
    let data = app.data(q, json!({"with": false, "skip": true})).await;
    assert_eq!(
        data["allOrders"]["edges"][0]["node"],
        json!({"again": {"name": "Ann"}})
    );
    // The single lookup, by global ID.
    let q = "query($id: ID!) { order(id: $id) { customer { email } products { price } } }";
    let data = app
        .data(q, json!({"id": global_id("OrderType", order.id)}))
        .await;
    assert_eq!(
        data["order"],
        json!({"customer": {"email": "ann@example.com"},
               "products": [{"price": "1.25"}, {"price": "2.00"}]})
    );
}

#[async_std::test]
async fn totals_are_counted_by_the_database_in_one_call() {
    let app = spawn_app().await;
    let q = "{ totalCustomers totalOrders totalRevenue }";
    assert_eq!(
        app.data(q, json!({})).await,
        json!({"totalCustomers": 0, "totalOrders": 0, "totalRevenue": "0.00"})
    );
    let c = app.customer("F", "f@example.com").await;
    app.customer("G", "g@example.com").await;
    let p = app.product("Dime", "0.10", 1).await;
    let q2 = app.product("Twenty", "0.20", 1).await;
    for _ in 0..10 {
        app.order(&c, &[&p, &q2], now()).await;
    }
    app.store.reset();
    let data = app.data(q, json!({})).await;
    assert_eq!(
        data,
        json!({"totalCustomers": 2, "totalOrders": 10, "totalRevenue": "3.00"})
    );
    assert_eq!(app.store.calls(), 1);
}

// ---------------------------------------------------------------- restock

#[async_std::test]
async fn update_low_stock_restocks_exactly_the_products_below_ten() {
    let app = spawn_app().await;
    app.product("Zero", "1.00", 0).await;
    app.product("Nine", "1.00", 9).await;
    app.product("Ten", "1.00", 10).await;
    app.product("Many", "1.00", 100).await;
    let data = app.data(RESTOCK, json!({})).await;
    let result = &data["updateLowStockProducts"];
    let changed: Vec<(String, i64)> = result["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["stock"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(changed, [("Zero".to_owned(), 10), ("Nine".to_owned(), 19)]);
    assert_eq!(result["message"], "Restocked 2 products by 10");
    let data = app.data(RESTOCK, json!({})).await;
    assert_eq!(data["updateLowStockProducts"]["products"], json!([]));
    let stocks: Vec<i32> = app
        .database()
        .list_products(&ProductFilter::default(), &[], PageRequest::default())
        .await
        .unwrap()
        .iter()
        .map(|p| p.stock)
        .collect();
    assert_eq!(stocks, [10, 19, 10, 100]);
}

/// A restock retried with its idempotency key (the answer was lost; the product went low again
/// meanwhile) changes nothing and says so; the original's key-less call still works.
#[async_std::test]
async fn update_low_stock_with_a_used_idempotency_key_restocks_nothing_and_says_replayed() {
    const KEYED: &str = "mutation($key: String) { updateLowStockProducts(idempotencyKey: $key) \
                         { products { name stock } message replayed } }";
    let app = spawn_app().await;
    let low = app.product("Low", "1.00", 4).await;
    let key = json!({"key": "update_low_stock@2026-12-04T12:00:00+00:00"});
    let first = app.data(KEYED, key.clone()).await;
    assert_eq!(
        first["updateLowStockProducts"],
        json!({"products": [{"name": "Low", "stock": 14}], "message": "Restocked 1 product by 10", "replayed": false})
    );
    let later = app.product("Later", "1.00", 2).await;
    let again = app.data(KEYED, key).await;
    assert_eq!(again["updateLowStockProducts"]["replayed"], true);
    assert_eq!(
        again["updateLowStockProducts"]["products"],
        json!([{"name": "Low", "stock": 14}])
    );
    let stock = |mut products: Vec<crm_core::Product>| {
        products.sort_by_key(|p| p.id);
        products.iter().map(|p| p.stock).collect::<Vec<_>>()
    };
    let ids = [low.id, later.id];
    assert_eq!(
        stock(app.database().products_by_ids(&ids).await.unwrap()),
        [14, 2]
    );
    let other = app
        .data(
            KEYED,
            json!({"key": "update_low_stock@2026-12-05T00:00:00+00:00"}),
        )
        .await;
    assert_eq!(other["updateLowStockProducts"]["replayed"], false);
    assert_eq!(
        stock(app.database().products_by_ids(&ids).await.unwrap()),
        [14, 12]
    );
    // Old clients: no key, no `replayed` asked for.
    let data = app.data(RESTOCK, json!({})).await;
    assert_eq!(data["updateLowStockProducts"]["products"], json!([]));
    let empty = app.gql(KEYED, json!({"key": ""})).await;
    assert!(
        empty.to_string().contains("idempotencyKey"),
        "an empty key is a validation error naming the argument: {empty}"
    );
}

#[async_std::test]
async fn fifty_concurrent_orders_and_restocks_lose_no_update() {
    let app = spawn_app().await;
    let c = app.customer("H", "h@example.com").await;
    let low = app.product("Low", "2.50", 3).await;
    let other = app.product("Other", "1.00", 0).await;
    let order_input = json!({"input": {"customerId": c.id.to_string(), "productIds": [low.id.to_string(), other.id.to_string()]}});
    let calls = (0..50).map(|i| {
        let app = &app;
        let order_input = order_input.clone();
        async move {
            if i % 2 == 0 {
                app.data(CREATE_ORDER, order_input).await
            } else {
                app.data(RESTOCK, json!({})).await
            }
        }
    });
    let answers = futures::future::join_all(calls).await;
    let restocked: usize = answers
        .iter()
        .filter_map(|a| a["updateLowStockProducts"]["products"].as_array())
        .map(Vec::len)
        .sum();
    // Each product was below 10 once: exactly one restock saw each.
    assert_eq!(restocked, 2);
    let products = app
        .database()
        .products_by_ids(&[low.id, other.id])
        .await
        .unwrap();
    let mut stocks: Vec<(i64, i32)> = products.iter().map(|p| (p.id, p.stock)).collect();
    stocks.sort();
    assert_eq!(stocks, [(low.id, 13), (other.id, 10)]);
    let totals = app.totals().await;
    assert_eq!(
        (totals.orders, totals.revenue),
        (25, Money::from_str("87.50").unwrap())
    );
}

// ---------------------------------------------------------------- protection

#[async_std::test]
async fn mutations_without_or_with_a_wrong_token_are_refused_and_write_nothing() {
    let config = ServerConfig {
        api_token: Some("s3cret-token".into()),
        ..ServerConfig::default()
    };
    helpers::captured_logs();
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    app.product("Low", "1.00", 1).await;
    let input = json!({"input": {"name": "Mallory", "email": "mallory@example.com"}});
    for token in [None, Some("wrong"), Some("s3cret-token2"), Some("")] {
        for (query, vars) in [(CREATE_CUSTOMER, input.clone()), (RESTOCK, json!({}))] {
            let r = app.post_graphql(query, vars, token).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let (message, code) = first_error(&r.json());
            assert_eq!(code, "UNAUTHORIZED", "{token:?}");
            assert!(message.contains("Authorization: Bearer"), "{message}");
            assert!(!message.contains("s3cret"), "the token leaked: {message}");
        }
    }
    let r = app
        .request(
            "POST",
            "/graphql",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", "Basic s3cret-token"),
            ],
            json!({"query": RESTOCK}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(first_error(&r.json()).1, "UNAUTHORIZED");
    assert_eq!(customer_count(&app).await, 0);
    assert_eq!(
        app.database()
            .list_products(&ProductFilter::default(), &[], PageRequest::default())
            .await
            .unwrap()[0]
            .stock,
        1
    );
    // Queries stay open; the right token writes.
    let r = app
        .post_graphql("{ hello totalCustomers }", json!({}), None)
        .await;
    assert_eq!(r.json()["data"]["totalCustomers"], 0);
    let data = app.data(CREATE_CUSTOMER, input).await;
    assert_eq!(data["createCustomer"]["customer"]["name"], "Mallory");
    assert_eq!(customer_count(&app).await, 1);
    // Requests are logged, tokens and bodies never.
    let logs = helpers::captured_logs();
    assert!(logs.contains("request answered"), "{logs}");
    assert!(
        !logs.contains("s3cret") && !logs.contains("mallory@"),
        "{logs}"
    );
}

#[async_std::test]
async fn with_token_for_queries_every_request_needs_the_token_but_graphiql_and_healthz() {
    let config = ServerConfig {
        api_token: Some("s3cret-token".into()),
        token_for_queries: true,
        ..ServerConfig::default()
    };
    let app = spawn_app_with(TestDb::sqlite().await, config).await;
    for token in [None, Some("wrong")] {
        let r = app.post_graphql("{ hello }", json!({}), token).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{}",
            r.headers
        );
        let (message, code) = first_error(&r.json());
        assert_eq!(code, "UNAUTHORIZED");
        assert!(message.contains("Authorization: Bearer"), "{message}");
    }
    let r = app
        .post_graphql("{ hello }", json!({}), Some("s3cret-token"))
        .await;
    assert_eq!(r.json()["data"]["hello"], "Hello, GraphQL!");
    assert_eq!(app.request("GET", "/graphql", &[], b"").await.status, 200);
    assert_eq!(app.request("GET", "/healthz", &[], b"").await.status, 200);
}

#[async_std::test]
async fn a_panic_in_a_resolver_is_answered_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    app.store.panic_on_next_call();
    let r = app
        .post_graphql("{ totalCustomers }", json!({}), None)
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        first_error(&r.json()),
        ("internal error".to_owned(), "INTERNAL".to_owned())
    );
    assert!(!r.body.contains("injected"), "{}", r.body);
    let data = app.data("{ hello totalCustomers }", json!({})).await;
    assert_eq!(
        data,
        json!({"hello": "Hello, GraphQL!", "totalCustomers": 0})
    );
}

#[async_std::test]
async fn an_empty_token_is_refused_at_startup_and_a_padded_one_is_trimmed() {
    let db = TestDb::sqlite().await;
    let store = std::sync::Arc::new(db.database().clone());
    let config = |token: &str| ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        api_token: Some(token.to_owned()),
        ..ServerConfig::default()
    };
    let err = crm_server::BoundServer::bind(store.clone(), config("  "))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("CRM_API_TOKEN"), "{err}");
    let app = spawn_app_with(db, config("tok\n")).await;
    let r = app.post_graphql(RESTOCK, json!({}), Some("tok")).await;
    assert!(r.json().get("errors").is_none(), "{}", r.body);
}

#[async_std::test]
async fn storage_failures_answer_internal_error_without_sql_or_500() {
    helpers::captured_logs();
    let app = spawn_app().await;
    app.database().close().await;
    let r = app
        .post_graphql("{ allOrders { edges { node { id } } } }", json!({}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (message, code) = first_error(&r.json());
    assert_eq!(
        (message.as_str(), code.as_str()),
        ("internal error", "INTERNAL")
    );
    let lower = r.body.to_lowercase();
    assert!(
        !lower.contains("select") && !lower.contains("pool") && !lower.contains("sqlite"),
        "{}",
        r.body
    );
}

// ---------------------------------------------------------------- PostgreSQL

#[async_std::test]
async fn the_api_works_the_same_over_postgresql() {
    let app = spawn_app_with(TestDb::postgres().await, ServerConfig::default()).await;
    let data = app
        .data(
            CREATE_CUSTOMER,
            json!({"input": {"name": "Pat", "email": "pat@example.com", "phone": "+15550001111"}}),
        )
        .await;
    let customer_id = data["createCustomer"]["customer"]["id"].clone();
    let dup = app
        .gql(
            CREATE_CUSTOMER,
            json!({"input": {"name": "Pat", "email": "PAT@example.com"}}),
        )
        .await;
    assert_eq!(first_error(&dup).1, "CONFLICT");
    let p1 = app
        .data(
            CREATE_PRODUCT,
            json!({"input": {"name": "Ink", "price": "0.10", "stock": 2}}),
        )
        .await;
    let p2 = app
        .data(
            CREATE_PRODUCT,
            json!({"input": {"name": "Quill", "price": 0.2, "stock": 50}}),
        )
        .await;
    let pid1 = p1["createProduct"]["product"]["id"].clone();
    let pid2 = p2["createProduct"]["product"]["id"].clone();
    for _ in 0..3 {
        let data = app
            .data(
                CREATE_ORDER,
                json!({"input": {"customerId": customer_id, "productIds": [pid1, pid2]}}),
            )
            .await;
        assert_eq!(data["createOrder"]["order"]["totalAmount"], "0.30");
    }
    let bad = app
        .gql(
            CREATE_ORDER,
            json!({"input": {"customerId": customer_id, "productIds": [pid1, "999"]}}),
        )
        .await;
    assert_eq!(first_error(&bad).1, "NOT_FOUND");
    app.store.reset();
    let data = app
        .data(
            "{ allOrders(filter: {customerEmail: \"pat@example.com\"}, orderBy: \"-totalAmount\") {
            edges { node { customer { name } products { name } totalAmount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["allOrders"]["edges"].as_array().unwrap().len(), 3);
    assert_eq!(
        data["allOrders"]["edges"][2]["node"]["products"],
        json!([{"name": "Ink"}, {"name": "Quill"}])
    );
    assert_eq!(
        app.store.calls(),
        2,
        "the list, then customers and products"
    );
    let data = app.data(RESTOCK, json!({})).await;
    assert_eq!(
        data["updateLowStockProducts"]["products"],
        json!([{"id": pid1, "name": "Ink", "stock": 12}])
    );
    let data = app
        .data("{ totalCustomers totalOrders totalRevenue }", json!({}))
        .await;
    assert_eq!(
        data,
        json!({"totalCustomers": 1, "totalOrders": 3, "totalRevenue": "0.90"})
    );
    let orders = app
        .database()
        .count_orders(&OrderFilter::default())
        .await
        .unwrap();
    assert_eq!(orders, 3);
}
