//! PostgreSQL's one-step claim (`job_runs_claim_if_clear`, migrations 0011 and 0012) takes the
//! job's advisory lock only for an exclusive claim. A claim that may run beside others has no
//! sibling to check; taking the lock queued a job's claimants behind each other's commits.

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use crm_core::ledger::{NewRun, RunKind, RunLedger};
use crm_core::testing::TestDb;
use sqlx::Connection as _;

/// The advisory lock key every process derives from a job's code (FNV-1a of `crm_jobs:` and
/// the code, as `crm-core`'s ledger computes it): stable, so that processes of different builds
/// queue on the same key.
fn lock_key(code: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"crm_jobs:".iter().chain(code.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn run(minute: u32) -> NewRun {
    let tick = Utc.with_ymd_and_hms(2026, 3, 2, 6, minute, 0).unwrap();
    NewRun {
        code: "generate_crm_report".to_owned(),
        tick,
        kind: RunKind::Scheduled,
        attempt: 1,
        started_at: tick,
        lease_until: tick + TimeDelta::hours(1),
        host: "test".to_owned(),
        pid: 1,
    }
}

#[async_std::test]
async fn a_claim_that_may_run_beside_others_does_not_wait_for_the_jobs_lock() {
    let t = TestDb::postgres().await;
    let mut holder = sqlx::PgConnection::connect(t.url()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key("generate_crm_report"))
        .execute(&mut holder)
        .await
        .unwrap();
    let claimed = async_std::future::timeout(
        Duration::from_secs(10),
        t.database().claim_if_clear(&run(0), false),
    )
    .await
    .expect("the claim did not wait for the job's lock")
    .unwrap();
    assert!(claimed.is_some());
    holder.close().await.unwrap();
    // The lock an exclusive claim takes is still the one held above: once it is free, an
    // exclusive claim finds the parallel run running and declines.
    assert_eq!(
        t.database().claim_if_clear(&run(1), true).await.unwrap(),
        None
    );
}
