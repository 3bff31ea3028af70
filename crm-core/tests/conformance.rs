//! The storage conformance suite: every test body is written once and run against SQLite and
//! against PostgreSQL (127.0.0.1:5432, or `CRM_TEST_POSTGRES_URL`), each in a fresh database.
//! A missing PostgreSQL fails the `postgres::` tests; it never skips them.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_core::{
    CoreError, CrmStore, Customer, CustomerField, CustomerFilter, Database, Keyset, Money,
    NewCustomer, NewOrder, NewProduct, Order, OrderField, OrderFilter, OrderRelations, PageRequest,
    Product, ProductField, ProductFilter, ReminderPage, Sort,
};
use futures::TryStreamExt as _;
use futures::future::{BoxFuture, join_all};

/// Instantiates each test body for both backends, as `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[async_std::test]
                async fn $name() {
                    super::$name(crm_core::testing::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[async_std::test]
                async fn $name() {
                    super::$name(crm_core::testing::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

conformance!(
    customers_read_back_as_they_were_created,
    duplicate_emails_in_any_case_conflict,
    customer_filters_ignore_case_and_treat_wildcards_as_text,
    customers_sort_by_any_field_and_page_stably,
    products_keep_exact_prices,
    product_filters_compare_prices_exactly,
    products_sort_by_price_and_stock_with_id_breaking_ties,
    an_order_totals_its_products_prices_and_lists_them,
    an_order_without_a_date_is_dated_now,
    an_order_with_an_unknown_product_writes_nothing,
    an_order_for_an_unknown_customer_writes_nothing,
    concurrent_orders_all_succeed,
    order_filters_select_by_customer_products_dates_and_totals,
    orders_sort_by_date_and_total,
    lookups_by_id_return_only_existing_rows,
    a_pages_customers_and_products_come_together_as_each_lookup_gives_them,
    cleanup_deletes_only_customers_inactive_past_the_boundary,
    a_customer_created_yesterday_without_orders_is_not_deleted,
    cleanup_dry_run_counts_without_deleting,
    ids_of_deleted_customers_and_orders_are_never_handed_out_again,
    orders_between_includes_both_bounds_with_the_customer_email,
    orders_between_pages_are_the_whole_list_in_order_ties_included,
    orders_between_pages_skip_and_repeat_nothing_when_orders_come_and_go,
    restock_raises_only_products_below_the_threshold,
    two_concurrent_restocks_lose_no_update,
    a_restock_of_nothing_is_rejected,
    a_restock_asked_again_with_its_key_changes_nothing_and_answers_the_first,
    concurrent_restocks_with_one_key_restock_once,
    restock_keys_older_than_the_retention_are_pruned_and_newer_ones_still_guard,
    an_empty_or_overlong_idempotency_key_is_rejected,
    revenue_sums_that_floats_would_get_wrong_are_exact,
    totals_of_an_empty_store_are_zero,
    totals_follow_customers_and_orders_as_they_come_and_go,
    seeding_gives_every_job_work_with_consistent_totals,
    seeding_is_deterministic_and_can_run_again,
    seeding_orders_without_products_writes_nothing,
    seeding_if_empty_fills_an_empty_database_and_never_adds_to_rows,
    keyset_pages_follow_every_sort_and_filter_ties_included,
    rows_inserted_and_deleted_between_pages_never_skip_or_repeat_the_others,
    a_keyset_made_for_another_sort_is_a_validation_error,
);

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
}

/// The instant the tests call "now".
fn now() -> DateTime<Utc> {
    at(2026, 3, 1, 12, 0, 0)
}

fn money(s: &str) -> Money {
    Money::from_str(s).unwrap()
}

async fn customer(db: &Database, name: &str, email: &str) -> Customer {
    db.create_customer(&NewCustomer::new(name, email, None).unwrap())
        .await
        .unwrap()
}

async fn product(db: &Database, name: &str, price: &str, stock: i32) -> Product {
    db.create_product(&NewProduct::new(name, money(price), stock).unwrap())
        .await
        .unwrap()
}

async fn order(
    db: &Database,
    customer: &Customer,
    products: &[&Product],
    date: DateTime<Utc>,
) -> Order {
    let ids: Vec<i64> = products.iter().map(|p| p.id).collect();
    db.create_order(
        &NewOrder::new(customer.id, &ids, Some(date)).unwrap(),
        now(),
    )
    .await
    .unwrap()
}

fn names_of_customers(list: &[Customer]) -> Vec<&str> {
    list.iter().map(|c| c.name.as_str()).collect()
}

fn names_of_products(list: &[Product]) -> Vec<&str> {
    list.iter().map(|p| p.name.as_str()).collect()
}

fn ids_of_orders(list: &[Order]) -> Vec<i64> {
    list.iter().map(|o| o.id).collect()
}

const ALL: PageRequest = PageRequest {
    limit: 1000,
    after: None,
};

fn asc<F>(field: F) -> Sort<F> {
    Sort {
        field,
        descending: false,
    }
}

fn desc<F>(field: F) -> Sort<F> {
    Sort {
        field,
        descending: true,
    }
}

async fn customers_read_back_as_they_were_created(t: TestDb) {
    let db = t.database();
    let before = Utc::now() - TimeDelta::seconds(1);
    let created = db
        .create_customer(
            &NewCustomer::new(" Alice ", "Alice@Example.com", Some("+1234567890")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.name, "Alice");
    assert_eq!(
        created.email, "Alice@Example.com",
        "the e-mail keeps its letter case"
    );
    assert_eq!(created.phone.as_deref(), Some("+1234567890"));
    assert!(created.created_at >= before && created.created_at <= Utc::now());
    let read = db.customers_by_ids(&[created.id]).await.unwrap();
    assert_eq!(read, vec![created.clone()]);
    let listed = db
        .list_customers(&CustomerFilter::default(), &[], ALL)
        .await
        .unwrap();
    assert_eq!(listed, vec![created]);
}

async fn duplicate_emails_in_any_case_conflict(t: TestDb) {
    let db = t.database();
    customer(db, "Alice", "alice@example.com").await;
    let err = db
        .create_customer(&NewCustomer::new("Other Alice", "ALICE@Example.COM", None).unwrap())
        .await
        .unwrap_err();
    match err {
        CoreError::Conflict(message) => assert_eq!(
            message,
            "a customer with e-mail ALICE@Example.COM already exists"
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        db.count_customers(&CustomerFilter::default())
            .await
            .unwrap(),
        1
    );
    // The failed insert left the store usable.
    customer(db, "Bob", "bob@example.com").await;
    assert_eq!(
        db.count_customers(&CustomerFilter::default())
            .await
            .unwrap(),
        2
    );
}

async fn customer_filters_ignore_case_and_treat_wildcards_as_text(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice Smith", "alice@shop.com").await;
    customer(db, "Bob 50% off", "bob@mail.org").await;
    customer(db, "Carol_x", "carol@shop.com").await;
    db.create_customer(
        &NewCustomer::new("Dan\\Backslash", "dan@mail.org", Some("123-456-7890")).unwrap(),
    )
    .await
    .unwrap();
    let names = |filter: CustomerFilter| async move {
        let found = db
            .list_customers(&filter, &[asc(CustomerField::Id)], ALL)
            .await
            .unwrap();
        assert_eq!(
            db.count_customers(&filter).await.unwrap(),
            found.len() as i64
        );
        names_of_customers(&found)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let by_name = |text: &str| CustomerFilter {
        name_icontains: Some(text.to_owned()),
        ..Default::default()
    };
    assert_eq!(names(by_name("aLIce")).await, ["Alice Smith"]);
    assert_eq!(names(by_name("%")).await, ["Bob 50% off"]);
    assert_eq!(names(by_name("_")).await, ["Carol_x"]);
    assert_eq!(names(by_name("\\")).await, ["Dan\\Backslash"]);
    assert!(names(by_name("zzz")).await.is_empty());
    let by_email = CustomerFilter {
        email_icontains: Some("SHOP.COM".to_owned()),
        ..Default::default()
    };
    assert_eq!(names(by_email).await, ["Alice Smith", "Carol_x"]);
    let by_phone = CustomerFilter {
        phone_startswith: Some("123-".to_owned()),
        ..Default::default()
    };
    assert_eq!(names(by_phone).await, ["Dan\\Backslash"]);

    t.set_customer_created_at(alice.id, at(2025, 1, 1, 0, 0, 0))
        .await
        .unwrap();
    let old = CustomerFilter {
        created_at_lte: Some(at(2025, 1, 1, 0, 0, 0)),
        ..Default::default()
    };
    assert_eq!(names(old).await, ["Alice Smith"]);
    let newer = CustomerFilter {
        created_at_gte: Some(at(2025, 1, 1, 0, 0, 1)),
        email_icontains: Some("shop".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        names(newer).await,
        ["Carol_x"],
        "conditions combine with AND"
    );
}

async fn customers_sort_by_any_field_and_page_stably(t: TestDb) {
    let db = t.database();
    let b = customer(db, "bob", "z@example.com").await;
    let a = customer(db, "Alice", "y@example.com").await;
    let c = customer(db, "Carol", "x@example.com").await;
    let b2 = customer(db, "Bob", "w@example.com").await;
    t.set_customer_created_at(b.id, at(2025, 5, 1, 0, 0, 0))
        .await
        .unwrap();
    t.set_customer_created_at(a.id, at(2025, 4, 1, 0, 0, 0))
        .await
        .unwrap();
    t.set_customer_created_at(c.id, at(2025, 6, 1, 0, 0, 0))
        .await
        .unwrap();
    t.set_customer_created_at(b2.id, at(2025, 3, 1, 0, 0, 0))
        .await
        .unwrap();
    let sorted = |sort: Vec<Sort<CustomerField>>, page: PageRequest| async move {
        let found = db
            .list_customers(&CustomerFilter::default(), &sort, page)
            .await
            .unwrap();
        found.iter().map(|c| c.id).collect::<Vec<_>>()
    };
    // Names ignore case; the two Bobs tie and the id decides.
    assert_eq!(
        sorted(vec![asc(CustomerField::Name)], ALL).await,
        [a.id, b.id, b2.id, c.id]
    );
    assert_eq!(
        sorted(vec![desc(CustomerField::Name)], ALL).await,
        [c.id, b.id, b2.id, a.id]
    );
    assert_eq!(
        sorted(vec![asc(CustomerField::Email)], ALL).await,
        [b2.id, c.id, a.id, b.id]
    );
    assert_eq!(
        sorted(vec![desc(CustomerField::CreatedAt)], ALL).await,
        [c.id, b.id, a.id, b2.id]
    );
    assert_eq!(
        sorted(vec![desc(CustomerField::Id)], ALL).await,
        [b2.id, c.id, a.id, b.id]
    );
    assert_eq!(
        sorted(vec![], ALL).await,
        [b.id, a.id, c.id, b2.id],
        "no sort means by id"
    );
    // A keyset page starts after the row it names, ties included.
    let by_name = vec![asc(CustomerField::Name)];
    let listed = db
        .list_customers(&CustomerFilter::default(), &by_name, ALL)
        .await
        .unwrap();
    let after = |i: usize, limit| PageRequest {
        limit,
        after: Some(Keyset::of(&listed[i], &by_name)),
    };
    assert_eq!(sorted(by_name.clone(), after(0, 2)).await, [b.id, b2.id]);
    assert_eq!(sorted(by_name.clone(), after(1, 2)).await, [b2.id, c.id]);
    assert!(sorted(by_name.clone(), after(3, 2)).await.is_empty());
    assert!(sorted(vec![], PageRequest::first(0)).await.is_empty());
    assert_eq!(sorted(vec![], PageRequest::all()).await.len(), 4);
}

async fn products_keep_exact_prices(t: TestDb) {
    let db = t.database();
    let p = product(db, "Laptop", "999.9", 5).await;
    assert_eq!(p.price.to_string(), "999.90");
    let max = product(db, "Yacht", "9999999999.99", 0).await;
    let read = db.products_by_ids(&[p.id, max.id]).await.unwrap();
    let mut read: Vec<(String, String, i32)> = read
        .into_iter()
        .map(|p| (p.name, p.price.to_string(), p.stock))
        .collect();
    read.sort();
    assert_eq!(
        read,
        [
            ("Laptop".to_owned(), "999.90".to_owned(), 5),
            ("Yacht".to_owned(), "9999999999.99".to_owned(), 0)
        ]
    );
}

async fn product_filters_compare_prices_exactly(t: TestDb) {
    let db = t.database();
    product(db, "Cheap pen", "2.50", 100).await;
    product(db, "Pencil", "2.51", 3).await;
    product(db, "Notebook", "10.00", 9).await;
    product(db, "Fountain PEN", "120.00", 10).await;
    let names = |filter: ProductFilter| async move {
        let found = db
            .list_products(&filter, &[asc(ProductField::Id)], ALL)
            .await
            .unwrap();
        assert_eq!(
            db.count_products(&filter).await.unwrap(),
            found.len() as i64
        );
        names_of_products(&found)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let price = |gte: Option<&str>, lte: Option<&str>| ProductFilter {
        price_gte: gte.map(money),
        price_lte: lte.map(money),
        ..Default::default()
    };
    assert_eq!(
        names(price(Some("2.51"), Some("10"))).await,
        ["Pencil", "Notebook"]
    );
    // More places than money has: compared exactly, not rounded to the nearest cent.
    assert_eq!(
        names(price(Some("2.505"), None)).await,
        ["Pencil", "Notebook", "Fountain PEN"]
    );
    assert_eq!(names(price(None, Some("2.509"))).await, ["Cheap pen"]);
    assert_eq!(
        names(price(Some("100000000000000"), None)).await,
        Vec::<String>::new()
    );
    let stock = |gte, lte, lt| ProductFilter {
        stock_gte: gte,
        stock_lte: lte,
        stock_lt: lt,
        ..Default::default()
    };
    assert_eq!(
        names(stock(None, None, Some(10))).await,
        ["Pencil", "Notebook"]
    );
    assert_eq!(
        names(stock(Some(9), Some(10), None)).await,
        ["Notebook", "Fountain PEN"]
    );
    let pens = ProductFilter {
        name_icontains: Some("pen".to_owned()),
        ..Default::default()
    };
    assert_eq!(names(pens).await, ["Cheap pen", "Pencil", "Fountain PEN"]);
}

async fn products_sort_by_price_and_stock_with_id_breaking_ties(t: TestDb) {
    let db = t.database();
    let a = product(db, "b", "5.00", 1).await;
    let b = product(db, "A", "5.00", 7).await;
    let c = product(db, "c", "1.99", 7).await;
    let sorted = |sort: Vec<Sort<ProductField>>| async move {
        let found = db
            .list_products(&ProductFilter::default(), &sort, ALL)
            .await
            .unwrap();
        found.iter().map(|p| p.id).collect::<Vec<_>>()
    };
    assert_eq!(
        sorted(vec![desc(ProductField::Price)]).await,
        [a.id, b.id, c.id]
    );
    assert_eq!(
        sorted(vec![asc(ProductField::Price)]).await,
        [c.id, a.id, b.id]
    );
    assert_eq!(
        sorted(vec![desc(ProductField::Stock)]).await,
        [b.id, c.id, a.id]
    );
    assert_eq!(
        sorted(vec![asc(ProductField::Name)]).await,
        [b.id, a.id, c.id]
    );
    assert_eq!(
        sorted(vec![desc(ProductField::Stock), asc(ProductField::Price)]).await,
        [c.id, b.id, a.id]
    );
}

async fn an_order_totals_its_products_prices_and_lists_them(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let laptop = product(db, "Laptop", "999.99", 5).await;
    let mouse = product(db, "Mouse", "19.01", 50).await;
    let date = at(2026, 2, 27, 9, 30, 15) + TimeDelta::microseconds(123_456);
    let created = db
        .create_order(
            &NewOrder::new(alice.id, &[mouse.id, laptop.id, mouse.id], Some(date)).unwrap(),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(created.customer_id, alice.id);
    assert_eq!(created.total_amount.to_string(), "1019.00");
    assert_eq!(created.order_date, date);
    assert_eq!(
        db.orders_by_ids(&[created.id]).await.unwrap(),
        vec![created.clone()]
    );
    let lines = db.order_products(&[created.id]).await.unwrap();
    assert_eq!(
        lines,
        vec![(created.id, laptop.clone()), (created.id, mouse.clone())]
    );
    // Stock is not consumed by an order (as in the original).
    assert_eq!(db.products_by_ids(&[laptop.id]).await.unwrap()[0].stock, 5);
}

async fn an_order_without_a_date_is_dated_now(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let now = now() + TimeDelta::nanoseconds(123_456_789);
    let created = db
        .create_order(&NewOrder::new(alice.id, &[pen.id], None).unwrap(), now)
        .await
        .unwrap();
    let stored = now - TimeDelta::nanoseconds(789);
    assert_eq!(
        created.order_date, stored,
        "kept to the microsecond, as stored"
    );
    assert_eq!(
        db.orders_by_ids(&[created.id]).await.unwrap()[0].order_date,
        stored
    );
}

async fn an_order_with_an_unknown_product_writes_nothing(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let missing = pen.id + 1000;
    let err = db
        .create_order(
            &NewOrder::new(alice.id, &[pen.id, missing], None).unwrap(),
            now(),
        )
        .await
        .unwrap_err();
    match err {
        CoreError::NotFound { entity, id } => {
            assert_eq!(entity, "product");
            assert_eq!(id, missing.to_string());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(db.count_orders(&OrderFilter::default()).await.unwrap(), 0);
    assert_eq!(db.totals().await.unwrap().revenue, Money::ZERO);
    // Nothing half-written blocks the next order.
    let ok = order(db, &alice, &[&pen], now()).await;
    assert_eq!(db.order_products(&[ok.id]).await.unwrap().len(), 1);
}

async fn an_order_for_an_unknown_customer_writes_nothing(t: TestDb) {
    let db = t.database();
    let pen = product(db, "Pen", "1.00", 5).await;
    let err = db
        .create_order(&NewOrder::new(4242, &[pen.id], None).unwrap(), now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::NotFound { entity: "customer", id } if id == "4242"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "customer 4242 not found");
    assert_eq!(db.count_orders(&OrderFilter::default()).await.unwrap(), 0);
}

async fn concurrent_orders_all_succeed(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.25", 5).await;
    let new = NewOrder::new(alice.id, &[pen.id], None).unwrap();
    let results = join_all((0..16).map(|_| {
        let db = db.clone();
        let new = new.clone();
        async_std::task::spawn(async move { db.create_order(&new, now()).await })
    }))
    .await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let totals = db.totals().await.unwrap();
    assert_eq!(totals.orders, 16);
    assert_eq!(totals.revenue.to_string(), "20.00");
}

async fn order_filters_select_by_customer_products_dates_and_totals(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "Alice@Example.com").await;
    let bob = customer(db, "Bob", "bob@example.com").await;
    let laptop = product(db, "Laptop", "1000.00", 5).await;
    let mouse = product(db, "Mouse", "20.00", 5).await;
    let o1 = order(db, &alice, &[&laptop], at(2026, 1, 1, 0, 0, 0)).await;
    let o2 = order(db, &alice, &[&mouse], at(2026, 2, 1, 0, 0, 0)).await;
    let o3 = order(db, &bob, &[&laptop, &mouse], at(2026, 2, 15, 0, 0, 0)).await;
    let ids = |filter: OrderFilter| async move {
        let found = db
            .list_orders(&filter, &[asc(OrderField::Id)], ALL)
            .await
            .unwrap();
        assert_eq!(db.count_orders(&filter).await.unwrap(), found.len() as i64);
        ids_of_orders(&found)
    };
    let by_email = OrderFilter {
        customer_email: Some("alice@EXAMPLE.com".to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(by_email).await, [o1.id, o2.id]);
    let by_partial_email = OrderFilter {
        customer_email: Some("alice".to_owned()),
        ..Default::default()
    };
    assert!(
        ids(by_partial_email).await.is_empty(),
        "customer_email is an exact match"
    );
    let by_name = OrderFilter {
        customer_name_icontains: Some("BO".to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(by_name).await, [o3.id]);
    let by_product = OrderFilter {
        product_name_icontains: Some("mOuSe".to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(by_product).await, [o2.id, o3.id]);
    let by_dates = OrderFilter {
        order_date_gte: Some(at(2026, 2, 1, 0, 0, 0)),
        order_date_lte: Some(at(2026, 2, 15, 0, 0, 0)),
        ..Default::default()
    };
    assert_eq!(ids(by_dates).await, [o2.id, o3.id], "both bounds included");
    let by_total = OrderFilter {
        total_amount_gte: Some(money("1000")),
        total_amount_lte: Some(money("1019.999")),
        ..Default::default()
    };
    assert_eq!(ids(by_total).await, [o1.id]);
    let combined = OrderFilter {
        customer_email: Some("bob@example.com".to_owned()),
        product_name_icontains: Some("laptop".to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(combined).await, [o3.id]);
}

async fn orders_sort_by_date_and_total(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let cheap = product(db, "Cheap", "1.00", 5).await;
    let dear = product(db, "Dear", "9.00", 5).await;
    let o1 = order(db, &alice, &[&dear], at(2026, 1, 3, 0, 0, 0)).await;
    let o2 = order(db, &alice, &[&cheap], at(2026, 1, 1, 0, 0, 0)).await;
    let o3 = order(db, &alice, &[&cheap], at(2026, 1, 2, 0, 0, 0)).await;
    let sorted = |sort: Vec<Sort<OrderField>>| async move {
        ids_of_orders(
            &db.list_orders(&OrderFilter::default(), &sort, ALL)
                .await
                .unwrap(),
        )
    };
    assert_eq!(
        sorted(vec![asc(OrderField::OrderDate)]).await,
        [o2.id, o3.id, o1.id]
    );
    assert_eq!(
        sorted(vec![desc(OrderField::OrderDate)]).await,
        [o1.id, o3.id, o2.id]
    );
    assert_eq!(
        sorted(vec![desc(OrderField::TotalAmount)]).await,
        [o1.id, o2.id, o3.id]
    );
    assert_eq!(
        sorted(vec![
            asc(OrderField::TotalAmount),
            desc(OrderField::OrderDate)
        ])
        .await,
        [o3.id, o2.id, o1.id]
    );
}

async fn lookups_by_id_return_only_existing_rows(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let o = order(db, &alice, &[&pen], now()).await;
    assert_eq!(
        db.customers_by_ids(&[alice.id, 999]).await.unwrap(),
        vec![alice]
    );
    assert_eq!(
        db.products_by_ids(&[999, pen.id]).await.unwrap(),
        vec![pen.clone()]
    );
    assert_eq!(
        db.orders_by_ids(&[o.id, 999]).await.unwrap(),
        vec![o.clone()]
    );
    assert_eq!(
        db.order_products(&[999, o.id]).await.unwrap(),
        vec![(o.id, pen)]
    );
    assert!(db.customers_by_ids(&[]).await.unwrap().is_empty());
    assert!(db.products_by_ids(&[]).await.unwrap().is_empty());
    assert!(db.orders_by_ids(&[]).await.unwrap().is_empty());
    assert!(db.order_products(&[]).await.unwrap().is_empty());
}

async fn a_pages_customers_and_products_come_together_as_each_lookup_gives_them(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice \"Al\" O'Neil \\ 🦀", "alice@example.com").await;
    let bob = customer(db, "Bob", "bob@example.com").await;
    let pen = product(db, "Pen", "1.25", 5).await;
    let ink = product(db, "Ink \"blue\"", "19.99", 7).await;
    let o1 = order(db, &alice, &[&ink, &pen], now()).await;
    let o2 = order(db, &bob, &[&pen], now()).await;
    let both = db
        .order_relations(&[bob.id, alice.id, 999], &[o2.id, 999, o1.id])
        .await
        .unwrap();
    let mut customers = both.customers.clone();
    customers.sort_by_key(|c| c.id);
    assert_eq!(customers, vec![alice.clone(), bob.clone()]);
    assert_eq!(
        both.products,
        vec![
            (o1.id, pen.clone()),
            (o1.id, ink.clone()),
            (o2.id, pen.clone())
        ],
        "by order, then product id"
    );
    assert_eq!(
        both.products,
        db.order_products(&[o1.id, o2.id]).await.unwrap()
    );
    // Either list may be empty: only what is asked for comes back.
    let customers_only = db.order_relations(&[alice.id], &[]).await.unwrap();
    assert_eq!(customers_only.customers, vec![alice]);
    assert!(customers_only.products.is_empty());
    let products_only = db.order_relations(&[], &[o2.id]).await.unwrap();
    assert!(products_only.customers.is_empty());
    assert_eq!(products_only.products, vec![(o2.id, pen)]);
    assert_eq!(
        db.order_relations(&[], &[]).await.unwrap(),
        OrderRelations::default()
    );
}

/// Customers around the cleanup's boundary, as of `now()`; returns them by role.
struct Cleanup {
    deleted: Vec<Customer>,
    kept: Vec<Customer>,
}

async fn cleanup_fixture(t: &TestDb) -> Cleanup {
    let db = t.database();
    let year = TimeDelta::days(365);
    let us = TimeDelta::microseconds(1);
    let pen = product(db, "Pen", "1.00", 5).await;
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    let make = async |email: &str, created: DateTime<Utc>, orders: &[DateTime<Utc>]| {
        let c = customer(db, email, email).await;
        t.set_customer_created_at(c.id, created).await.unwrap();
        for &date in orders {
            order(db, &c, &[&pen], date).await;
        }
        db.customers_by_ids(&[c.id]).await.unwrap().remove(0)
    };
    let now = now();
    deleted.push(
        make(
            "never-ordered@old.com",
            now - year - TimeDelta::days(30),
            &[],
        )
        .await,
    );
    deleted.push(make("just-older@old.com", now - year - us, &[]).await);
    deleted.push(
        make(
            "old-orders@old.com",
            now - year * 2,
            &[now - year - us, now - year - TimeDelta::days(100)],
        )
        .await,
    );
    kept.push(make("exactly-a-year@new.com", now - year, &[]).await);
    kept.push(make("order-at-boundary@old.com", now - year * 2, &[now - year]).await);
    kept.push(
        make(
            "recent-order@old.com",
            now - year * 2,
            &[now - TimeDelta::days(3)],
        )
        .await,
    );
    kept.push(
        make(
            "future-order@old.com",
            now - year * 2,
            &[now + TimeDelta::days(1)],
        )
        .await,
    );
    kept.push(make("yesterday@new.com", now - TimeDelta::days(1), &[]).await);
    Cleanup { deleted, kept }
}

async fn cleanup_deletes_only_customers_inactive_past_the_boundary(t: TestDb) {
    let db = t.database();
    let fixture = cleanup_fixture(&t).await;
    let orders_before = db.count_orders(&OrderFilter::default()).await.unwrap();
    assert_eq!(
        db.delete_inactive_customers(now(), false).await.unwrap(),
        3,
        "customers only"
    );
    let left = db
        .list_customers(&CustomerFilter::default(), &[asc(CustomerField::Id)], ALL)
        .await
        .unwrap();
    assert_eq!(left, fixture.kept);
    assert!(
        db.customers_by_ids(&fixture.deleted.iter().map(|c| c.id).collect::<Vec<_>>())
            .await
            .unwrap()
            .is_empty()
    );
    // The two orders of the deleted customer went with them, and nothing else.
    assert_eq!(
        db.count_orders(&OrderFilter::default()).await.unwrap(),
        orders_before - 2
    );
    let orphan = OrderFilter {
        customer_email: Some("old-orders@old.com".to_owned()),
        ..Default::default()
    };
    assert_eq!(db.count_orders(&orphan).await.unwrap(), 0);
    assert_eq!(
        db.delete_inactive_customers(now(), false).await.unwrap(),
        0,
        "idempotent"
    );
}

async fn a_customer_created_yesterday_without_orders_is_not_deleted(t: TestDb) {
    let db = t.database();
    let c = customer(db, "New", "new@example.com").await;
    t.set_customer_created_at(c.id, now() - TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(db.delete_inactive_customers(now(), false).await.unwrap(), 0);
    assert_eq!(
        db.count_customers(&CustomerFilter::default())
            .await
            .unwrap(),
        1
    );
}

async fn cleanup_dry_run_counts_without_deleting(t: TestDb) {
    let db = t.database();
    cleanup_fixture(&t).await;
    let before = db.totals().await.unwrap();
    assert_eq!(db.delete_inactive_customers(now(), true).await.unwrap(), 3);
    assert_eq!(db.totals().await.unwrap(), before);
    // A later as_of moves the boundary: a year on, the recent customers are old too.
    let later = now() + TimeDelta::days(400);
    assert_eq!(db.delete_inactive_customers(later, true).await.unwrap(), 8);
}

/// An ID a client holds keeps naming the record it named, or nothing: after the cleanup
/// deleted the newest customer and its order, new ones get new ids (SQLite once gave the next
/// customer the deleted one's id, so an order placed with the old ID went to a stranger).
async fn ids_of_deleted_customers_and_orders_are_never_handed_out_again(t: TestDb) {
    let db = t.database();
    let pen = product(db, "Pen", "1.00", 5).await;
    customer(db, "Kept", "kept@example.com").await;
    let gone = customer(db, "Gone", "gone@example.com").await;
    let long_ago = now() - TimeDelta::days(800);
    let old_order = order(db, &gone, &[&pen], long_ago).await;
    t.set_customer_created_at(gone.id, long_ago).await.unwrap();
    assert_eq!(db.delete_inactive_customers(now(), false).await.unwrap(), 1);

    let next = customer(db, "Next", "next@example.com").await;
    assert!(
        next.id > gone.id,
        "customer id {} handed out again",
        gone.id
    );
    assert!(db.customers_by_ids(&[gone.id]).await.unwrap().is_empty());
    let next_order = order(db, &next, &[&pen], now()).await;
    assert!(
        next_order.id > old_order.id,
        "order id {} handed out again",
        old_order.id
    );
    assert!(db.orders_by_ids(&[old_order.id]).await.unwrap().is_empty());
}

async fn orders_between_includes_both_bounds_with_the_customer_email(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "Alice@Example.com").await;
    // Quotes and braces survive the trip (SQLite hands the rows over as JSON).
    let bob = customer(db, "Bob", "bob.o'neil+{vip}@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let from = now() - TimeDelta::days(7);
    let us = TimeDelta::microseconds(1);
    order(db, &alice, &[&pen], from - us).await;
    let first = order(db, &bob, &[&pen], from).await;
    let middle = order(db, &alice, &[&pen], now() - TimeDelta::days(1)).await;
    let last = order(db, &alice, &[&pen], now()).await;
    order(db, &bob, &[&pen], now() + us).await;
    let due = db.orders_between(from, now()).await.unwrap();
    let seen: Vec<(i64, &str, DateTime<Utc>)> = due
        .iter()
        .map(|r| (r.order_id, r.customer_email.as_str(), r.order_date))
        .collect();
    assert_eq!(
        seen,
        [
            (first.id, "bob.o'neil+{vip}@example.com", from),
            (middle.id, "Alice@Example.com", middle.order_date),
            (last.id, "Alice@Example.com", now()),
        ]
    );
    assert!(db.orders_between(now(), from).await.unwrap().is_empty());
}

/// Reads `[from, to]` with `orders_between_page`, `limit` at a time, calling `between` after
/// each page; returns the pages' order ids.
async fn page_through_orders(
    db: &Database,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u64,
    mut between: impl AsyncFnMut(usize),
) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let at = ReminderPage {
            from,
            to,
            after: after.as_ref(),
            limit,
        };
        let page = db.orders_between_page(at).await.unwrap();
        assert!(page.len() as u64 <= limit, "a page longer than its limit");
        pages.push(page.iter().map(|r| r.order_id).collect());
        match page.last() {
            Some(last) if page.len() as u64 == limit => after = Some(last.clone()),
            _ => return pages,
        }
        between(pages.len()).await;
    }
}

async fn orders_between_pages_are_the_whole_list_in_order_ties_included(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let bob = customer(db, "Bob", "bob.o'neil+{vip}@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let from = now() - TimeDelta::days(7);
    let us = TimeDelta::microseconds(1);
    order(db, &alice, &[&pen], from - us).await;
    // Three instants with four orders each (ties broken by id), in an order of creation that
    // is not the order of dates, so pages that followed the ids would be wrong.
    for hours in [30, 2, 100] {
        for who in [&alice, &bob, &alice, &bob] {
            order(db, who, &[&pen], now() - TimeDelta::hours(hours)).await;
        }
    }
    order(db, &bob, &[&pen], from).await;
    order(db, &alice, &[&pen], now()).await;
    order(db, &bob, &[&pen], now() + us).await;
    let whole = db.orders_between(from, now()).await.unwrap();
    assert_eq!(whole.len(), 14);
    for limit in [1, 3, 4, 5, 14, 100] {
        let pages = page_through_orders(db, from, now(), limit, async |_| {}).await;
        let paged: Vec<i64> = pages.concat();
        let expected: Vec<i64> = whole.iter().map(|r| r.order_id).collect();
        assert_eq!(paged, expected, "pages of {limit}");
    }
    for limit in [1, 5, 14, 100] {
        let pages: Vec<Vec<crm_core::OrderReminder>> = db
            .orders_between_pages(ReminderPage::first(from, now(), limit))
            .try_collect()
            .await
            .unwrap();
        assert!(pages.iter().all(|page| page.len() as u64 <= limit));
        assert_eq!(pages.concat(), whole, "streamed pages of {limit}");
    }
    // The rows of a page carry what the whole list does, e-mail included.
    let first = db
        .orders_between_page(ReminderPage::first(from, now(), 2))
        .await
        .unwrap();
    assert_eq!(first, whole[..2]);
    let next = db
        .orders_between_page(ReminderPage {
            after: first.last(),
            ..ReminderPage::first(from, now(), 100)
        })
        .await
        .unwrap();
    assert_eq!(next, whole[2..]);
    assert!(
        db.orders_between_page(ReminderPage::first(now(), from, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn orders_between_pages_skip_and_repeat_nothing_when_orders_come_and_go(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.00", 5).await;
    let from = now() - TimeDelta::days(7);
    let mut orders = Vec::new();
    for minutes in 0..20 {
        let date = from + TimeDelta::hours(6) + TimeDelta::minutes(minutes * 10);
        orders.push(order(db, &alice, &[&pen], date).await.id);
    }
    // After the first page (6 orders): delete one already read and one not read yet, add one
    // before the position and one after it.
    let deleted = [orders[2], orders[10]];
    let mut added_later = None;
    let pages = page_through_orders(db, from, now(), 6, async |page| {
        if page == 1 {
            for id in deleted {
                t.delete_order(id).await.unwrap();
            }
            order(db, &alice, &[&pen], from + TimeDelta::minutes(1)).await;
            added_later = Some(order(db, &alice, &[&pen], now()).await.id);
        }
    })
    .await;
    let paged: Vec<i64> = pages.concat();
    let throughout: Vec<i64> = orders
        .iter()
        .copied()
        .filter(|id| !deleted.contains(id))
        .collect();
    let mut expected: Vec<i64> = orders[..6].to_vec();
    expected.extend(
        throughout
            .iter()
            .copied()
            .filter(|id| !orders[..6].contains(id)),
    );
    expected.extend(added_later);
    assert_eq!(paged, expected);
}

async fn restock_raises_only_products_below_the_threshold(t: TestDb) {
    let db = t.database();
    let empty = product(db, "Empty", "1.00", 0).await;
    let nine = product(db, "Nine", "1.00", 9).await;
    let ten = product(db, "Ten", "1.00", 10).await;
    let updated = db.restock_low(10, 10).await.unwrap();
    let seen: Vec<(i64, &str, i32)> = updated
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.stock))
        .collect();
    assert_eq!(seen, [(empty.id, "Empty", 10), (nine.id, "Nine", 19)]);
    let stocks: Vec<i32> = db
        .list_products(&ProductFilter::default(), &[asc(ProductField::Id)], ALL)
        .await
        .unwrap()
        .iter()
        .map(|p| p.stock)
        .collect();
    assert_eq!(stocks, [10, 19, 10]);
    assert_eq!(ten.stock, 10);
    assert!(
        db.restock_low(10, 10).await.unwrap().is_empty(),
        "nothing is low any more"
    );
}

async fn two_concurrent_restocks_lose_no_update(t: TestDb) {
    let db = t.database();
    let a = product(db, "A", "1.00", 0).await;
    let b = product(db, "B", "1.00", 5).await;
    // A threshold every run passes: each of the runs must add its unit.
    let runs = 20;
    let results = join_all((0..runs).map(|_| {
        let db = db.clone();
        async_std::task::spawn(async move { db.restock_low(1_000_000, 1).await })
    }))
    .await;
    for r in &results {
        assert_eq!(r.as_ref().unwrap().len(), 2);
    }
    let after = db.products_by_ids(&[a.id, b.id]).await.unwrap();
    let mut stocks: Vec<(i64, i32)> = after.iter().map(|p| (p.id, p.stock)).collect();
    stocks.sort();
    assert_eq!(stocks, [(a.id, runs), (b.id, 5 + runs)]);
    // With the job's own rule, the second of two concurrent runs sees the first's result.
    let c = product(db, "C", "1.00", 3).await;
    let (x, y) = futures::join!(db.restock_low(10, 10), db.restock_low(10, 10));
    let raised: usize = [x.unwrap(), y.unwrap()]
        .iter()
        .map(|v| v.iter().filter(|p| p.id == c.id).count())
        .sum();
    assert_eq!(raised, 1);
    assert_eq!(db.products_by_ids(&[c.id]).await.unwrap()[0].stock, 13);
}

async fn stocks(db: &Database) -> Vec<i32> {
    db.list_products(&ProductFilter::default(), &[asc(ProductField::Id)], ALL)
        .await
        .unwrap()
        .iter()
        .map(|p| p.stock)
        .collect()
}

async fn a_restock_asked_again_with_its_key_changes_nothing_and_answers_the_first(t: TestDb) {
    let db = t.database();
    let low = product(db, "Low", "1.00", 2).await;
    product(db, "Full", "1.00", 50).await;
    let first = db.restock_low_once("tick-1", 10, 10).await.unwrap();
    assert!(!first.replayed);
    let seen: Vec<(i64, i32)> = first.products.iter().map(|p| (p.id, p.stock)).collect();
    assert_eq!(seen, [(low.id, 12)]);
    // The lost-answer case: the product is low again, and the same tick asks again.
    let again = db.restock_low_once("tick-1", 1_000, 10).await.unwrap();
    assert!(again.replayed);
    let seen: Vec<(i64, i32)> = again.products.iter().map(|p| (p.id, p.stock)).collect();
    assert_eq!(
        seen,
        [(low.id, 12)],
        "the first call's products, nothing more"
    );
    assert_eq!(stocks(db).await, [12, 50]);
    // Another key is another restock; the key-less restock ignores keys.
    let next = db.restock_low_once("tick-2", 20, 10).await.unwrap();
    assert!(!next.replayed);
    assert_eq!(stocks(db).await, [22, 50]);
    assert_eq!(db.restock_low(30, 1).await.unwrap().len(), 1);
    // A key whose restock found nothing stays used.
    let none = db.restock_low_once("tick-3", 0, 10).await.unwrap();
    assert!(!none.replayed && none.products.is_empty());
    let none = db.restock_low_once("tick-3", 1_000, 10).await.unwrap();
    assert!(none.replayed && none.products.is_empty());
    assert_eq!(stocks(db).await, [23, 50]);
}

async fn concurrent_restocks_with_one_key_restock_once(t: TestDb) {
    let db = t.database();
    product(db, "A", "1.00", 0).await;
    let runs = 10;
    let results = join_all((0..runs).map(|_| {
        let db = db.clone();
        async_std::task::spawn(async move { db.restock_low_once("same", 1_000_000, 1).await })
    }))
    .await;
    let fresh = results
        .iter()
        .filter(|r| !r.as_ref().unwrap().replayed)
        .count();
    assert_eq!(fresh, 1, "exactly one call restocked");
    assert_eq!(stocks(db).await, [1]);
}

/// The daily prune (`RunLedger::prune`, retention 90 days) deletes restock keys taken before
/// the cutoff, so they do not pile up one per tick for ever; a newer key still turns its
/// tick's re-run into a replay.
async fn restock_keys_older_than_the_retention_are_pruned_and_newer_ones_still_guard(t: TestDb) {
    use crm_core::ledger::{Retention, RunLedger as _};
    let db = t.database();
    product(db, "Low", "1.00", 0).await;
    assert!(
        !db.restock_low_once("tick-old", 10, 1)
            .await
            .unwrap()
            .replayed
    );
    assert!(
        !db.restock_low_once("tick-new", 10, 1)
            .await
            .unwrap()
            .replayed
    );
    let cutoff = Utc::now() - TimeDelta::days(90);
    t.set_restock_key_created_at("tick-old", cutoff - TimeDelta::seconds(1))
        .await
        .unwrap();
    t.set_restock_key_created_at("tick-new", cutoff + TimeDelta::minutes(1))
        .await
        .unwrap();
    let pruned = db.prune(&Retention::before(cutoff)).await.unwrap();
    assert_eq!(pruned.restock_keys, 1, "{pruned:?}");
    assert!(
        db.restock_low_once("tick-new", 10, 1)
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(stocks(db).await, [2]);
    // The old key is gone: asked again, it restocks (nothing will ask months later).
    assert!(
        !db.restock_low_once("tick-old", 10, 1)
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(stocks(db).await, [3]);
    let again = db.prune(&Retention::before(cutoff)).await.unwrap();
    assert_eq!(again.restock_keys, 0, "{again:?}");
}

async fn an_empty_or_overlong_idempotency_key_is_rejected(t: TestDb) {
    let db = t.database();
    product(db, "A", "1.00", 0).await;
    for key in [String::new(), "k".repeat(201)] {
        let err = db.restock_low_once(&key, 10, 10).await.unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::Validation {
                    field: "idempotencyKey",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(
        !db.restock_low_once(&"é".repeat(200), 10, 10)
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(stocks(db).await, [10]);
}

async fn a_restock_of_nothing_is_rejected(t: TestDb) {
    let db = t.database();
    product(db, "A", "1.00", 0).await;
    for amount in [0, -5] {
        let err = db.restock_low(10, amount).await.unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::Validation {
                    field: "amount",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(db.products_by_ids(&[1]).await.unwrap()[0].stock, 0);
}

async fn revenue_sums_that_floats_would_get_wrong_are_exact(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let dime = product(db, "Dime", "0.10", 5).await;
    let twenty = product(db, "Twenty", "0.20", 5).await;
    let n = 100;
    let mut float_sum = 0.0_f64;
    for _ in 0..n {
        let o = order(db, &alice, &[&dime, &twenty], now()).await;
        assert_eq!(o.total_amount.to_string(), "0.30");
        float_sum += 0.1 + 0.2;
    }
    assert_ne!(float_sum, 30.0, "the case is one floats get wrong");
    let totals = db.totals().await.unwrap();
    assert_eq!(totals.customers, 1);
    assert_eq!(totals.orders, n);
    assert_eq!(totals.revenue.to_string(), "30.00");
}

/// SQLite keeps the totals as rows change (migration 0011); they must stay what counting
/// gives, through the cleanup's deletes too.
async fn totals_follow_customers_and_orders_as_they_come_and_go(t: TestDb) {
    let db = t.database();
    let counted = async || {
        let customers = db
            .count_customers(&CustomerFilter::default())
            .await
            .unwrap();
        let orders = db.count_orders(&OrderFilter::default()).await.unwrap();
        (customers, orders)
    };
    cleanup_fixture(&t).await;
    let totals = db.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), counted().await);
    // Every order of the fixture is one 1.00 pen.
    assert_eq!(totals.revenue, money(&totals.orders.to_string()));
    assert_eq!(db.delete_inactive_customers(now(), false).await.unwrap(), 3);
    let after = db.totals().await.unwrap();
    assert!(after.orders < totals.orders, "the cleanup deleted orders");
    assert_eq!((after.customers, after.orders), counted().await);
    assert_eq!(after.revenue, money(&after.orders.to_string()));
    let c = customer(db, "Later", "later@example.com").await;
    let pen = product(db, "Pen 2", "2.50", 5).await;
    order(db, &c, &[&pen], now()).await;
    let last = db.totals().await.unwrap();
    assert_eq!(
        (last.customers, last.orders),
        (after.customers + 1, after.orders + 1)
    );
    assert_eq!(last.revenue.to_string(), format!("{}.50", after.orders + 2));
}

async fn totals_of_an_empty_store_are_zero(t: TestDb) {
    let totals = t.database().totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (0, 0));
    assert_eq!(totals.revenue.to_string(), "0.00");
}

#[async_std::test]
async fn an_unreachable_postgres_is_a_storage_error_without_the_password() {
    let err = Database::connect("postgres://bob:s3cret-pw@127.0.0.1:1/crm")
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Storage(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("s3cret-pw"), "{message}");
    assert!(message.contains("refused"), "the cause is named: {message}");
}

#[cfg(unix)]
#[async_std::test]
async fn a_sqlite_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDb::sqlite().await;
    let path = t.url().strip_prefix("sqlite://").unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Several processes opening one new SQLite file at the same moment (`crm serve` and `crm
/// worker` started together) all get a migrated database; the later ones once failed on the
/// tables the first had just created.
#[async_std::test]
async fn several_pools_migrating_one_new_sqlite_file_at_once_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        let opened = join_all((0..4).map(|_| Database::connect(&url))).await;
        for db in &opened {
            let db = db.as_ref().expect("every pool migrates the file");
            assert_eq!(db.totals().await.unwrap().customers, 0);
        }
    }
}

fn seed_config(seed: u64) -> crm_core::SeedConfig {
    crm_core::SeedConfig {
        customers: 200,
        products: 30,
        orders: 2_000,
        seed,
        now: now(),
    }
}

async fn everything(
    db: &Database,
) -> (Vec<Customer>, Vec<Product>, Vec<Order>, Vec<(i64, Product)>) {
    let customers = db
        .list_customers(&CustomerFilter::default(), &[], PageRequest::all())
        .await
        .unwrap();
    let products = db
        .list_products(&ProductFilter::default(), &[], PageRequest::all())
        .await
        .unwrap();
    let orders = db
        .list_orders(&OrderFilter::default(), &[], PageRequest::all())
        .await
        .unwrap();
    let lines = db.order_products(&ids_of_orders(&orders)).await.unwrap();
    (customers, products, orders, lines)
}

async fn seeding_gives_every_job_work_with_consistent_totals(t: TestDb) {
    let db = t.database();
    let mut reports = Vec::new();
    let summary = crm_core::seed(db, &seed_config(7), &mut |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(
        (summary.customers, summary.products, summary.orders),
        (200, 30, 2_000)
    );
    let last = |stage| {
        reports
            .iter()
            .rev()
            .find(|p| p.stage == stage)
            .copied()
            .unwrap()
    };
    assert_eq!(last(crm_core::SeedStage::Orders).done, 2_000);
    assert_eq!(last(crm_core::SeedStage::Customers).done, 200);
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].stage != w[1].stage || w[0].done < w[1].done)
    );

    let (customers, _, orders, lines) = everything(db).await;
    assert_eq!(customers.len(), 200);
    assert_eq!(orders.len(), 2_000);
    assert_eq!(lines.len() as u64, summary.order_lines);
    // Every total is the exact sum of its products' prices, and revenue their sum.
    let mut sums = std::collections::HashMap::<i64, Money>::new();
    for (order_id, product) in &lines {
        *sums.entry(*order_id).or_default() += product.price;
    }
    for o in &orders {
        assert_eq!(sums[&o.id], o.total_amount, "order {}", o.id);
        assert!(o.order_date <= now() && o.order_date >= now() - TimeDelta::days(731));
    }
    let revenue: Money = orders.iter().map(|o| o.total_amount).sum();
    assert_eq!(db.totals().await.unwrap().revenue, revenue);
    // Each job has work: recent orders, low stock, inactive customers; and new customers
    // without orders that the cleanup must keep.
    assert!(
        db.orders_between(now() - TimeDelta::days(7), now())
            .await
            .unwrap()
            .len()
            >= 100
    );
    let low = ProductFilter {
        stock_lt: Some(10),
        ..Default::default()
    };
    assert!(db.count_products(&low).await.unwrap() >= 6);
    let new = CustomerFilter {
        created_at_gte: Some(now() - TimeDelta::days(30)),
        ..Default::default()
    };
    let new_before = db.count_customers(&new).await.unwrap();
    assert!(new_before >= 20);
    let inactive = db.delete_inactive_customers(now(), true).await.unwrap();
    assert!(inactive >= 40, "{inactive}");
    assert_eq!(
        db.delete_inactive_customers(now(), false).await.unwrap(),
        inactive
    );
    assert_eq!(db.count_customers(&new).await.unwrap(), new_before);
}

async fn seeding_if_empty_fills_an_empty_database_and_never_adds_to_rows(t: TestDb) {
    let db = t.database();
    let summary = crm_core::seed_if_empty(db, &seed_config(7), &mut |_| {})
        .await
        .unwrap()
        .expect("an empty database is seeded");
    assert_eq!(
        (summary.customers, summary.products, summary.orders),
        (200, 30, 2_000)
    );
    assert_eq!(
        crm_core::seed_if_empty(db, &seed_config(8), &mut |_| {})
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.totals().await.unwrap().orders, 2_000);
    // One product alone (no customer, no order) is not an empty database either.
    let other = t.another().await;
    product(other.database(), "Pen", "1.50", 3).await;
    let mut reported = false;
    assert_eq!(
        crm_core::seed_if_empty(other.database(), &seed_config(7), &mut |_| reported = true)
            .await
            .unwrap(),
        None
    );
    assert!(!reported, "nothing was seeded, so no progress was reported");
    let totals = other.database().totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (0, 0));
    assert_eq!(
        other
            .database()
            .count_products(&ProductFilter::default())
            .await
            .unwrap(),
        1
    );
}

async fn seeding_is_deterministic_and_can_run_again(t: TestDb) {
    let db = t.database();
    crm_core::seed(db, &seed_config(7), &mut |_| {})
        .await
        .unwrap();
    let other = t.another().await;
    crm_core::seed(other.database(), &seed_config(7), &mut |_| {})
        .await
        .unwrap();
    let first = everything(db).await;
    assert_eq!(first, everything(other.database()).await);
    // A different seed gives different data.
    let third = t.another().await;
    crm_core::seed(third.database(), &seed_config(8), &mut |_| {})
        .await
        .unwrap();
    assert_ne!(first.2, everything(third.database()).await.2);
    // Seeding again adds rows after the existing ones; ordinary writes still work after it.
    crm_core::seed(db, &seed_config(7), &mut |_| {})
        .await
        .unwrap();
    let totals = db.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (400, 4_000));
    let alice = customer(db, "Alice", "alice@example.com").await;
    let pen = product(db, "Pen", "1.00", 1).await;
    let o = order(db, &alice, &[&pen], now()).await;
    assert_eq!((alice.id, pen.id, o.id), (401, 61, 4_001));
}

async fn seeding_orders_without_products_writes_nothing(t: TestDb) {
    let db = t.database();
    let config = crm_core::SeedConfig {
        products: 0,
        ..seed_config(1)
    };
    let err = crm_core::seed(db, &config, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, CoreError::Validation { .. }), "{err:?}");
    assert_eq!(db.totals().await.unwrap().customers, 0);
}

/// PostgreSQL runs writers side by side: an order committed while the cleanup is deciding must
/// keep its customer (and itself). The order's transaction is opened by hand, the cleanup
/// starts and waits on the customer's row lock, and only then does the order commit.
#[async_std::test]
async fn an_order_committed_during_the_cleanup_keeps_its_customer_on_postgres() {
    use sqlx::Connection;
    let t = TestDb::postgres().await;
    let db = t.database().clone();
    let old = customer(&db, "Old", "old@example.com").await;
    t.set_customer_created_at(old.id, now() - TimeDelta::days(800))
        .await
        .unwrap();
    let pen = product(&db, "Pen", "1.00", 5).await;

    let mut writer = sqlx::PgConnection::connect(t.url()).await.unwrap();
    let mut tx = writer.begin().await.unwrap();
    // As create_order does: lock the customer against deletion, then write the order.
    sqlx::query("SELECT id FROM customers WHERE id = $1 FOR KEY SHARE")
        .bind(old.id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let order_id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (customer_id, total_amount, order_date) VALUES ($1, 1.00, $2) \
         RETURNING id",
    )
    .bind(old.id)
    .bind(now())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("INSERT INTO order_products (order_id, product_id) VALUES ($1, $2)")
        .bind(order_id)
        .bind(pen.id)
        .execute(&mut *tx)
        .await
        .unwrap();

    let cleanup = async_std::task::spawn({
        let db = db.clone();
        async move { db.delete_inactive_customers(now(), false).await }
    });
    // Wait until the cleanup is blocked on the lock the order's transaction holds.
    let mut observer = sqlx::PgConnection::connect(t.url()).await.unwrap();
    let database = t.url().rsplit_once('/').unwrap().1.to_owned();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&database)
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        async_std::task::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();

    assert_eq!(cleanup.await.unwrap(), 0);
    assert_eq!(db.customers_by_ids(&[old.id]).await.unwrap().len(), 1);
    assert_eq!(db.order_products(&[order_id]).await.unwrap().len(), 1);
}

/// Reads a whole list `limit` rows at a time, each page after the last row of the previous one
/// (as a client follows `endCursor`), and checks that the pages together are the list read in
/// one go: same rows, same order, none skipped or repeated.
async fn pages_equal_the_whole_list<F: crm_core::SortField>(
    what: &str,
    sort: Vec<Sort<F>>,
    limit: u64,
    list: impl Fn(Vec<Sort<F>>, PageRequest) -> BoxFuture<'static, Vec<F::Row>>,
) where
    F::Row: Clone + PartialEq + std::fmt::Debug,
{
    let whole = list(sort.clone(), PageRequest::all()).await;
    let mut paged: Vec<F::Row> = Vec::new();
    let mut after = None;
    loop {
        let page = list(sort.clone(), PageRequest { limit, after }).await;
        assert!(page.len() as u64 <= limit);
        let Some(last) = page.last() else { break };
        after = Some(Keyset::of(last, &sort));
        paged.extend(page);
        assert!(paged.len() <= whole.len(), "{what}: pages repeat rows");
    }
    assert_eq!(paged, whole, "{what}: the pages differ from the whole list");
}

fn every_sort<F: Copy>(fields: &[F]) -> Vec<Vec<Sort<F>>> {
    let mut sorts = vec![vec![]];
    for field in fields {
        sorts.push(vec![asc(*field)]);
        sorts.push(vec![desc(*field)]);
    }
    sorts
}

async fn keyset_pages_follow_every_sort_and_filter_ties_included(t: TestDb) {
    let db = t.database().clone();
    crm_core::seed(&db, &seed_config(11), &mut |_| {})
        .await
        .unwrap();
    // Ties in every sort key: equal names in other letter cases, equal creation times, prices,
    // stocks, dates and totals.
    let twins = [
        customer(&db, "Zed Twin", "zed1@example.com").await,
        customer(&db, "zed twin", "zed2@example.com").await,
        customer(&db, "ZED TWIN", "zed3@example.com").await,
    ];
    for twin in &twins {
        t.set_customer_created_at(twin.id, at(2025, 1, 1, 0, 0, 0))
            .await
            .unwrap();
    }
    let pens = [
        product(&db, "Pen", "2.50", 7).await,
        product(&db, "pen", "2.50", 7).await,
        product(&db, "PEN", "2.50", 7).await,
    ];
    for _ in 0..3 {
        order(&db, &twins[0], &[&pens[0]], at(2026, 2, 1, 0, 0, 0)).await;
    }

    let customer_fields = [
        CustomerField::Id,
        CustomerField::Name,
        CustomerField::Email,
        CustomerField::CreatedAt,
    ];
    let mut customer_sorts = every_sort(&customer_fields);
    customer_sorts.push(vec![
        desc(CustomerField::CreatedAt),
        asc(CustomerField::Name),
    ]);
    customer_sorts.push(vec![asc(CustomerField::Name), desc(CustomerField::Id)]);
    let customer_filters = [
        CustomerFilter::default(),
        CustomerFilter {
            name_icontains: Some("e".into()),
            created_at_gte: Some(at(2024, 6, 1, 0, 0, 0)),
            ..CustomerFilter::default()
        },
    ];
    for filter in &customer_filters {
        for sort in &customer_sorts {
            let (db, filter) = (db.clone(), filter.clone());
            pages_equal_the_whole_list(
                &format!("customers by {sort:?} where {filter:?}"),
                sort.clone(),
                17,
                move |sort, page| {
                    let (db, filter) = (db.clone(), filter.clone());
                    Box::pin(async move { db.list_customers(&filter, &sort, page).await.unwrap() })
                },
            )
            .await;
        }
    }

    let product_fields = [
        ProductField::Id,
        ProductField::Name,
        ProductField::Price,
        ProductField::Stock,
    ];
    let mut product_sorts = every_sort(&product_fields);
    product_sorts.push(vec![desc(ProductField::Stock), asc(ProductField::Name)]);
    product_sorts.push(vec![asc(ProductField::Price), desc(ProductField::Stock)]);
    let product_filters = [
        ProductFilter::default(),
        ProductFilter {
            stock_lt: Some(60),
            price_gte: Some(money("1.00")),
            ..ProductFilter::default()
        },
    ];
    for filter in &product_filters {
        for sort in &product_sorts {
            let (db, filter) = (db.clone(), filter.clone());
            pages_equal_the_whole_list(
                &format!("products by {sort:?} where {filter:?}"),
                sort.clone(),
                4,
                move |sort, page| {
                    let (db, filter) = (db.clone(), filter.clone());
                    Box::pin(async move { db.list_products(&filter, &sort, page).await.unwrap() })
                },
            )
            .await;
        }
    }

    let order_fields = [
        OrderField::Id,
        OrderField::OrderDate,
        OrderField::TotalAmount,
    ];
    let mut order_sorts = every_sort(&order_fields);
    order_sorts.push(vec![
        desc(OrderField::TotalAmount),
        asc(OrderField::OrderDate),
    ]);
    let order_filters = [
        OrderFilter::default(),
        OrderFilter {
            order_date_gte: Some(now() - TimeDelta::days(7)),
            order_date_lte: Some(now()),
            ..OrderFilter::default()
        },
        OrderFilter {
            total_amount_gte: Some(money("10.00")),
            product_name_icontains: Some("e".into()),
            ..OrderFilter::default()
        },
    ];
    for filter in &order_filters {
        for sort in &order_sorts {
            let (db, filter) = (db.clone(), filter.clone());
            pages_equal_the_whole_list(
                &format!("orders by {sort:?} where {filter:?}"),
                sort.clone(),
                97,
                move |sort, page| {
                    let (db, filter) = (db.clone(), filter.clone());
                    Box::pin(async move { db.list_orders(&filter, &sort, page).await.unwrap() })
                },
            )
            .await;
        }
    }

    // The ties are there and the id decides between them.
    let by_name = db
        .list_customers(
            &CustomerFilter {
                name_icontains: Some("zed twin".into()),
                ..CustomerFilter::default()
            },
            &[desc(CustomerField::Name)],
            ALL,
        )
        .await
        .unwrap();
    assert_eq!(
        by_name.iter().map(|c| c.id).collect::<Vec<_>>(),
        twins.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    let by_stock = db
        .list_products(
            &ProductFilter::default(),
            &[desc(ProductField::Stock)],
            PageRequest {
                limit: 2,
                after: Some(Keyset::of(&pens[0], &[desc(ProductField::Stock)])),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_stock.iter().map(|p| p.id).collect::<Vec<_>>(),
        [pens[1].id, pens[2].id],
        "after a tie, its next rows by id"
    );
}

async fn rows_inserted_and_deleted_between_pages_never_skip_or_repeat_the_others(t: TestDb) {
    let db = t.database().clone();
    let alice = customer(&db, "Alice", "alice@example.com").await;
    let pen = product(&db, "Pen", "1.00", 5).await;
    let mut orders = Vec::new();
    for day in 0..30 {
        // Two orders a day: ties in the date.
        for _ in 0..2 {
            orders.push(
                order(
                    &db,
                    &alice,
                    &[&pen],
                    at(2026, 1, 1, 0, 0, 0) + TimeDelta::days(day),
                )
                .await,
            );
        }
    }
    let sort = vec![desc(OrderField::OrderDate)];
    let list = OrderFilter::default();
    let first = db
        .list_orders(&list, &sort, PageRequest::first(10))
        .await
        .unwrap();
    let mut seen: Vec<i64> = ids_of_orders(&first);
    let mut after = Keyset::of(first.last().unwrap(), &sort);
    // Between pages: delete a row already read and rows not read yet, insert rows before and
    // after the position (an offset would shift by each of these).
    let deleted = [orders[59].id, orders[30].id, orders[31].id, orders[0].id];
    for id in deleted {
        t.delete_order(id).await.unwrap();
    }
    let mut inserted = Vec::new();
    for day in [29, 20, 10, 0] {
        inserted.push(
            order(
                &db,
                &alice,
                &[&pen],
                at(2026, 1, 1, 0, 0, 0) + TimeDelta::days(day),
            )
            .await
            .id,
        );
    }
    loop {
        let page = db
            .list_orders(
                &list,
                &sort,
                PageRequest {
                    limit: 10,
                    after: Some(after.clone()),
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Keyset::of(last, &sort);
        seen.extend(ids_of_orders(&page));
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was repeated: {seen:?}");
    for o in &orders {
        if !deleted.contains(&o.id) {
            assert!(
                seen.contains(&o.id),
                "order {} existed throughout and was skipped",
                o.id
            );
        }
    }
    // Rows inserted behind the position are read; those ahead of it are not.
    assert!(seen.contains(&inserted[2]) && seen.contains(&inserted[3]));
    assert!(!seen.contains(&inserted[0]));
}

async fn a_keyset_made_for_another_sort_is_a_validation_error(t: TestDb) {
    let db = t.database();
    let alice = customer(db, "Alice", "alice@example.com").await;
    let page = PageRequest {
        limit: 10,
        after: Some(Keyset::of(&alice, &[asc(CustomerField::Name)])),
    };
    let err = db
        .list_customers(
            &CustomerFilter::default(),
            &[asc(CustomerField::CreatedAt)],
            page,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Validation { field: "after", .. }),
        "{err}"
    );
}
