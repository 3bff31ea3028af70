//! The report's totals are kept as rows change (SQLite: migration 0011's row; PostgreSQL:
//! migration 0013's rows of changes). The API never changes an order's amount or deletes a
//! customer outside the cleanup, but an operator's SQL may: the totals must follow it too.

use chrono::Utc;
use crm_core::testing::TestDb;
use crm_core::{CrmStore as _, Money, NewCustomer, NewOrder, NewProduct};
use sqlx::Connection as _;

/// Runs `sql` with `id` bound as `$1` (both backends read it), on its own connection, as an
/// operator's console would.
async fn by_hand(t: &TestDb, sql: &str, id: i64) {
    if t.url().starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(t.url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn totals_follow_changes_made_by_hand(t: TestDb, add_a_unit: &str) {
    let db = t.database();
    let pen = db
        .create_product(&NewProduct::new("Pen", "1.25".parse::<Money>().unwrap(), 9).unwrap())
        .await
        .unwrap();
    let mut first_orders = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let c = db
            .create_customer(&NewCustomer::new("A", email, None).unwrap())
            .await
            .unwrap();
        for _ in 0..2 {
            let order = db
                .create_order(&NewOrder::new(c.id, &[pen.id], None).unwrap(), Utc::now())
                .await
                .unwrap();
            first_orders.push((c.id, order.id));
        }
    }
    let totals = db.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (2, 4));
    assert_eq!(totals.revenue.to_string(), "5.00");

    by_hand(&t, add_a_unit, first_orders[0].1).await;
    assert_eq!(db.totals().await.unwrap().revenue.to_string(), "6.00");

    // The second customer and, by ON DELETE CASCADE, both of their orders.
    by_hand(&t, "DELETE FROM customers WHERE id = $1", first_orders[3].0).await;
    let totals = db.totals().await.unwrap();
    assert_eq!((totals.customers, totals.orders), (1, 2));
    assert_eq!(totals.revenue.to_string(), "3.50");
}

#[async_std::test]
async fn sqlite_totals_follow_an_amount_changed_and_a_customer_deleted_by_hand() {
    totals_follow_changes_made_by_hand(
        TestDb::sqlite().await,
        "UPDATE orders SET total_amount_cents = total_amount_cents + 100 WHERE id = $1",
    )
    .await;
}

#[async_std::test]
async fn postgres_totals_follow_an_amount_changed_and_a_customer_deleted_by_hand() {
    totals_follow_changes_made_by_hand(
        TestDb::postgres().await,
        "UPDATE orders SET total_amount = total_amount + 1 WHERE id = $1",
    )
    .await;
}
