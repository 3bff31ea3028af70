//! PostgreSQL's pool lends a connection that came back moments ago without pinging it first
//! (a round trip before every statement under load), and pings one that sat idle long enough
//! for the server to have dropped it, so a restart or an administrator's `pg_terminate_backend`
//! between two quiet moments costs no request an error. Once a statement has met an ended
//! connection, the connections idle since then are pinged too, so a statement tried again gets
//! one that works.

use std::time::Duration;

use crm_core::CrmStore as _;
use crm_core::testing::TestDb;
use sqlx::Connection as _;

/// Ends every connection to the test's database (as `pg_terminate_backend` by an
/// administrator, or a server restart, would): how many.
async fn end_connections(t: &TestDb) -> i64 {
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
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) ended",
    )
    .bind(name)
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

#[async_std::test]
async fn a_connection_the_server_ended_while_it_sat_idle_is_not_lent_out() {
    let t = TestDb::postgres().await;
    let db = t.database();
    db.totals().await.expect("the pool's connection works");
    assert!(
        end_connections(&t).await >= 1,
        "the pool's connection was ended"
    );
    // Idle past the time after which a connection is pinged before it is lent.
    async_std::task::sleep(Duration::from_millis(1_200)).await;
    db.totals()
        .await
        .expect("a fresh connection, not the ended one, answers");
}

/// The runner records a run's end once more when the first attempt met an ended connection:
/// that second attempt must not be handed another connection the same event ended, however
/// recently it was used.
#[async_std::test]
async fn once_a_statement_met_an_ended_connection_the_next_is_not_lent_another() {
    let t = TestDb::postgres().await;
    let db = t.database();
    // Two connections in the pool, both used moments ago.
    let (a, b) = futures::join!(db.totals(), db.totals());
    a.and(b).expect("the pool's connections work");
    assert!(
        end_connections(&t).await >= 2,
        "both connections were ended"
    );
    let first = db.totals().await;
    assert!(
        first.as_ref().is_err_and(|e| e.is_unavailable()),
        "the first statement met an ended connection: {first:?}"
    );
    db.totals()
        .await
        .expect("the next statement gets a connection that works");
}
