//! PostgreSQL's pool lends a connection that came back moments ago without pinging it first
//! (a round trip before every statement under load), and pings one that sat idle long enough
//! for the server to have dropped it, so a restart or an administrator's `pg_terminate_backend`
//! between two quiet moments costs no request an error.

use std::time::Duration;

use crm_core::CrmStore as _;
use crm_core::testing::TestDb;
use sqlx::Connection as _;

#[async_std::test]
async fn a_connection_the_server_ended_while_it_sat_idle_is_not_lent_out() {
    let t = TestDb::postgres().await;
    let db = t.database();
    db.totals().await.expect("the pool's connection works");
    let name = t
        .url()
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap();
    let admin_url = t.url().replacen(&format!("/{name}"), "/postgres", 1);
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) ended",
    )
    .bind(name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ended >= 1, "the pool's connection was ended");
    // Idle past the time after which a connection is pinged before it is lent.
    async_std::task::sleep(Duration::from_millis(1_200)).await;
    db.totals()
        .await
        .expect("a fresh connection, not the ended one, answers");
}
