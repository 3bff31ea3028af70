//! Property tests of the domain's validating constructors and of the stores (issue 8, row P7):
//! `NewCustomer`, `NewProduct` and `NewOrder` over arbitrary input never panic, refuse with a
//! field and a message, and what they accept keeps every rule; whatever they accept is stored
//! and read back exactly by both backends (SQLite and PostgreSQL).

use chrono::{DateTime, TimeDelta, Utc};
use crm_core::testing::TestDb;
use crm_core::{
    CoreError, CrmStore, MAX_NAME_CHARS, MAX_ORDER_PRODUCTS, MAX_PRICE, NewCustomer, NewOrder,
    NewProduct, earliest_instant, latest_instant,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rust_decimal::Decimal;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A refusal names its field and says why.
fn assert_validation(err: &CoreError, fields: &[&str]) {
    match err {
        CoreError::Validation { field, message } => {
            assert!(fields.contains(field), "field {field}: {message}");
            assert!(!message.trim().is_empty(), "no reason for {field}");
        }
        other => panic!("not a validation error: {other:?}"),
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[ \t]{0,3}[a-zA-Z0-9.'%_+-]{0,12}@[a-z0-9-]{0,8}\\.[a-z]{0,4}[ \t]{0,3}",
        "[+0-9-]{0,16}",
        (250..260usize).prop_map(|n| "é".repeat(n)),
    ]
}

fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (any::<i64>(), 0..=28u32).prop_map(|(m, s)| Decimal::new(m, s)),
        (-1_000_000i64..1_000_000, 0..=4u32).prop_map(|(m, s)| Decimal::new(m, s)),
        Just(MAX_PRICE),
        Just(MAX_PRICE + Decimal::new(1, 2)),
        Just(Decimal::MAX),
        Just(Decimal::MIN),
        Just(Decimal::ZERO),
        Just(Decimal::new(-0, 2)),
    ]
}

#[test]
fn p7_new_customer_accepts_only_what_keeps_the_rules() {
    let mut runner = TestRunner::new(config(1000));
    let strategy = (text(), text(), proptest::option::of(text()));
    runner
        .run(&strategy, |(name, email, phone)| {
            match NewCustomer::new(&name, &email, phone.as_deref()) {
                Ok(c) => {
                    assert_eq!(c.name(), name.trim());
                    assert!(!c.name().is_empty());
                    assert!(c.name().chars().count() <= MAX_NAME_CHARS);
                    assert!(!c.name().chars().any(char::is_control));
                    assert_eq!(c.email(), email.trim());
                    assert_eq!(c.email().matches('@').count(), 1, "{:?}", c.email());
                    assert!(
                        !c.email()
                            .chars()
                            .any(|ch| ch.is_whitespace() || ch.is_control())
                    );
                    if let Some(p) = c.phone() {
                        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                        assert!(
                            p.strip_prefix('+')
                                .is_some_and(|d| (7..=15).contains(&d.len()) && digits(d))
                                || (p.len() == 12 && digits(&p.replace('-', ""))),
                            "{p:?}"
                        );
                    }
                }
                Err(err) => assert_validation(&err, &["name", "email", "phone"]),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn p7_new_product_accepts_only_exact_positive_prices_and_stock() {
    let mut runner = TestRunner::new(config(1000));
    let strategy = (text(), decimal(), any::<i32>());
    runner
        .run(&strategy, |(name, price, stock)| {
            match NewProduct::new(&name, price, stock) {
                Ok(p) => {
                    assert_eq!(p.name(), name.trim());
                    assert!(
                        p.price() > Decimal::ZERO && p.price() <= MAX_PRICE,
                        "{price}"
                    );
                    assert_eq!(p.price(), price, "the same amount");
                    assert_eq!(p.price().scale(), 2, "{}", p.price());
                    assert_eq!(p.stock(), stock);
                    assert!(stock >= 0);
                }
                Err(err) => assert_validation(&err, &["name", "price", "stock"]),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn p7_new_order_keeps_distinct_products_in_order_and_dates_in_range() {
    let mut runner = TestRunner::new(config(300));
    let date = prop_oneof![
        Just(None),
        (-300_000i64..300_000).prop_map(|days| {
            Some(earliest_instant() + TimeDelta::days(days.rem_euclid(3_652_059)))
        }),
        any::<i64>().prop_map(DateTime::<Utc>::from_timestamp_micros),
    ];
    let ids = prop_oneof![
        proptest::collection::vec(any::<i64>(), 0..20),
        proptest::collection::vec(1..50i64, 0..60),
        proptest::collection::vec(any::<i64>(), 990..1_010),
    ];
    runner
        .run(&(any::<i64>(), ids, date), |(customer, ids, date)| {
            match NewOrder::new(customer, &ids, date) {
                Ok(order) => {
                    let mut expected: Vec<i64> = Vec::new();
                    for id in &ids {
                        if !expected.contains(id) {
                            expected.push(*id);
                        }
                    }
                    assert_eq!(order.product_ids(), expected.as_slice());
                    assert!((1..=MAX_ORDER_PRODUCTS).contains(&order.product_ids().len()));
                    assert_eq!(order.order_date(), date);
                    if let Some(d) = date {
                        assert!(earliest_instant() <= d && d <= latest_instant());
                    }
                }
                Err(err) => assert_validation(&err, &["productIds", "orderDate"]),
            }
            Ok(())
        })
        .unwrap();
}

/// Whatever the constructors accept is stored and read back exactly.
async fn accepted_input_round_trips(db: TestDb, cases: usize) {
    let store = db.database();
    let mut generator = TestRunner::new(config(cases as u32));
    let name = "[^\\p{Cc}]{1,60}".prop_filter("not blank", |n| !n.trim().is_empty());
    let strategy = (name, 1i64..=999_999_999_999, 0..=i32::MAX);
    for i in 0..cases {
        let (name, cents, stock) = strategy.new_tree(&mut generator).unwrap().current();
        let Ok(product) = NewProduct::new(&name, Decimal::new(cents, 2), stock) else {
            continue;
        };
        let stored = store.create_product(&product).await.unwrap();
        let read = store.products_by_ids(&[stored.id]).await.unwrap();
        assert_eq!(read, vec![stored.clone()]);
        assert_eq!(stored.name, product.name());
        assert_eq!(stored.price, product.price());
        assert_eq!(stored.stock, stock);
        let email = format!("x{i}'%_@example.com");
        let customer = NewCustomer::new(&name, &email, Some("+1234567890")).unwrap();
        let stored = store.create_customer(&customer).await.unwrap();
        let read = store.customers_by_ids(&[stored.id]).await.unwrap();
        assert_eq!(read, vec![stored.clone()]);
        assert_eq!(stored.name, customer.name());
        assert_eq!(stored.email, email);
    }
}

#[async_std::test]
async fn p7_accepted_input_round_trips_on_sqlite() {
    accepted_input_round_trips(TestDb::sqlite().await, 150).await;
}

#[async_std::test]
async fn p7_accepted_input_round_trips_on_postgres() {
    accepted_input_round_trips(TestDb::postgres().await, 50).await;
}
