//! The SQLite ledger's claims and ends made at the same moment in one process share a
//! transaction (`group_commit`). What its callers see must not change: each write recorded
//! once and answered as if alone, a claim's conditions seen with the writes before it in the
//! batch, and a write that fails failing alone.
//!
//! To make batches form, a second connection (another process, as far as SQLite can tell)
//! holds the write lock while the writes are made: the first caller waits on the lock with its
//! own write, the others queue behind it and go in the next transaction together.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::Database;
use crm_core::ledger::{NewRun, RunEnd, RunKind, RunLedger, RunOutcome};
use crm_core::testing::TestDb;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::Connection as _;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, minute, 0).unwrap()
}

fn run(code: &str, tick: DateTime<Utc>) -> NewRun {
    NewRun {
        code: code.to_owned(),
        tick,
        kind: RunKind::Scheduled,
        attempt: 1,
        started_at: tick,
        lease_until: tick + TimeDelta::hours(1),
        host: "test".to_owned(),
        pid: 1,
    }
}

/// Runs `writes` at once on tasks of their own while another connection holds `url`'s write
/// lock, released once they have all been started; their answers in order.
async fn while_locked<T: Send + 'static>(url: &str, writes: Vec<BoxFuture<'static, T>>) -> Vec<T> {
    let mut holder = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let tasks: Vec<_> = writes.into_iter().map(async_std::task::spawn).collect();
    // Long enough for every task to reach its write and queue.
    async_std::task::sleep(Duration::from_millis(300)).await;
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    futures::future::join_all(tasks).await
}

#[async_std::test]
async fn claims_and_ends_made_together_in_one_process_are_each_recorded_once() {
    let t = TestDb::sqlite().await;
    let db = t.database().clone();
    // Sixteen ticks of a job that allows parallel runs, each claimed twice: one claim each wins.
    let claims = (0..32)
        .map(|i| {
            let db = db.clone();
            let run = run("report", at(i / 2));
            async move { db.claim_if_clear(&run, false).await.unwrap() }.boxed()
        })
        .collect();
    let claims = while_locked(t.url(), claims).await;
    let won: Vec<_> = claims.iter().flatten().collect();
    assert_eq!(won.len(), 16, "{claims:?}");
    for pair in claims.chunks(2) {
        assert_eq!(
            pair.iter().flatten().count(),
            1,
            "one claim per tick: {pair:?}"
        );
    }
    let ends = won
        .iter()
        .map(|(row, _)| {
            let db: Database = db.clone();
            let id = row.id;
            async move {
                let end = RunEnd {
                    outcome: RunOutcome::Succeeded,
                    at: at(30),
                    message: "done",
                };
                db.finish(id, end).await.unwrap()
            }
            .boxed()
        })
        .collect();
    let ends = while_locked(t.url(), ends).await;
    assert_eq!(ends, vec![true; 16], "each run ended from running");
    let history = db.history(Some("report"), 100).await.unwrap();
    assert_eq!(history.len(), 16);
    assert!(
        history
            .iter()
            .all(|r| r.outcome == RunOutcome::Succeeded && r.message.as_deref() == Some("done"))
    );
    assert!(db.running(None).await.unwrap().is_empty());
}

#[async_std::test]
async fn claims_of_a_non_parallel_job_made_together_in_one_process_let_one_run() {
    let t = TestDb::sqlite().await;
    let db = t.database().clone();
    let claims = (0..8)
        .map(|i| {
            let db = db.clone();
            let run = run("cleanup", at(i));
            async move { db.claim_if_clear(&run, true).await.unwrap() }.boxed()
        })
        .collect();
    let claims = while_locked(t.url(), claims).await;
    assert_eq!(claims.iter().flatten().count(), 1, "{claims:?}");
    assert_eq!(db.running(Some("cleanup")).await.unwrap().len(), 1);
}

#[async_std::test]
async fn a_claim_that_fails_among_others_fails_alone() {
    let t = TestDb::sqlite().await;
    let db = t.database().clone();
    let mut conn = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON job_runs WHEN NEW.code = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned run refused'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let claims = (0..6)
        .map(|i| {
            let db = db.clone();
            let code = if i == 3 { "poison" } else { "report" };
            let run = run(code, at(i));
            async move { db.claim_if_clear(&run, false).await.map(|c| c.is_some()) }.boxed()
        })
        .collect();
    let claims = while_locked(t.url(), claims).await;
    for (i, claim) in claims.iter().enumerate() {
        match claim {
            Err(e) if i == 3 => assert!(e.to_string().contains("poisoned run refused"), "{e}"),
            Ok(true) if i != 3 => {}
            other => panic!("claim {i}: {other:?}"),
        }
    }
    let history = db.history(None, 100).await.unwrap();
    assert_eq!(history.len(), 5, "the others were recorded: {history:?}");
    assert!(history.iter().all(|r| r.code == "report"));
}
