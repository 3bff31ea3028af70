//! PostgreSQL keeps the report's totals as rows of changes that its reader folds into one
//! once they are many (migration 0013, `fold_totals.sql`). Folds that run at once, beside
//! orders being added, must neither lose a change nor count one twice.

use chrono::Utc;
use crm_core::testing::TestDb;
use crm_core::{CrmStore, Database, Money, NewCustomer, NewOrder, NewProduct};
use futures::future::join_all;

async fn delta_rows(t: &TestDb) -> i64 {
    t.rows_in("crm_totals_delta").await.unwrap()
}

async fn add_orders(db: &Database, customer: i64, product: i64, n: usize) {
    for _ in 0..n {
        db.create_order(
            &NewOrder::new(customer, &[product], Some(Utc::now())).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
    }
}

#[async_std::test]
async fn totals_read_while_orders_come_fold_their_changes_and_lose_none() {
    let t = TestDb::postgres().await;
    let db = t.database();
    let c = db
        .create_customer(&NewCustomer::new("Alice", "alice@example.com", None).unwrap())
        .await
        .unwrap();
    let pen = db
        .create_product(&NewProduct::new("Pen", "1.25".parse::<Money>().unwrap(), 5).unwrap())
        .await
        .unwrap();
    add_orders(db, c.id, pen.id, 100).await;
    assert!(delta_rows(&t).await > 100, "a row of changes a statement");

    let totals = db.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (1, 100));
    assert_eq!(totals.revenue.to_string(), "125.00");
    assert_eq!(delta_rows(&t).await, 1, "the read folded them into one");

    // Readers fold while orders keep coming.
    add_orders(db, c.id, pen.id, 70).await;
    let readers = join_all((0..6).map(|_| db.totals()));
    let writer = add_orders(db, c.id, pen.id, 30);
    let (read, ()) = futures::join!(readers, writer);
    for totals in read {
        let totals = totals.unwrap();
        assert!((170..=200).contains(&totals.orders), "{totals:?}");
        assert_eq!(
            totals.revenue,
            "1.25".parse::<Money>().unwrap() * Money::from(totals.orders)
        );
    }
    let last = db.totals().await.unwrap();
    assert_eq!((last.customers, last.orders), (1, 200));
    assert_eq!(last.revenue.to_string(), "250.00");
}
