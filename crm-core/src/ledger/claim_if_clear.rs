//! [`RunLedger::claim_if_clear`](super::RunLedger::claim_if_clear) in the CRM's database: one
//! statement (`claim_if_clear.sql` per backend) where the full claim takes a transaction of five
//! and is preceded by two more (abandon the expired claims, count the failures).
//!
//! The insert is conditional on what the full path would find nothing to do about: no running
//! claim of any job with an expired lease (there would be one to abandon), the run's key free
//! (it would be [`Claim::Taken`](super::Claim::Taken)), no other running run of an exclusive
//! job ([`Claim::Busy`](super::Claim::Busy)). The check and the insert are atomic: SQLite
//! takes the write lock for the whole statement, and on PostgreSQL the function
//! `job_runs_claim_if_clear` (migrations 0011, 0012) first takes the job's advisory lock, the one
//! the full claim serialises on, then inserts in a statement with a snapshot taken after the
//! lock. It takes the lock only for an exclusive claim: one that may run beside others has no
//! sibling to check, and the lock queued a job's claimants behind each other's commits.
//! The job's failures in a row before the run come back in the same statement. On SQLite the
//! claims and ends made at the same moment in one process share a transaction
//! ([`group_commit`](super::group_commit)), each statement seeing the ones before it.

use super::{JobRun, NewRun, RunId, RunOutcome, validate_new_run};
use crate::database::{Backend, Database};
use crate::error::Result;

/// The claimed row, as the insert wrote it (the database gave its id).
fn claimed(run: &NewRun, id: i64) -> JobRun {
    JobRun {
        id: RunId(id),
        code: run.code.clone(),
        tick: run.tick,
        kind: run.kind,
        attempt: run.attempt,
        started_at: run.started_at,
        ended_at: None,
        outcome: RunOutcome::Running,
        message: None,
        lease_until: Some(run.lease_until),
        host: run.host.clone(),
        pid: run.pid,
    }
}

/// See [`RunLedger::claim_if_clear`](super::RunLedger::claim_if_clear).
pub(super) async fn claim_if_clear(
    db: &Database,
    run: &NewRun,
    exclusive: bool,
) -> Result<Option<(JobRun, u32)>> {
    validate_new_run(run)?;
    let row: Option<(i64, i64)> = match db.backend() {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(pool) => db.group_commit().claim(pool, run, exclusive).await?,
        #[cfg(feature = "postgres")]
        Backend::Postgres(pool) => {
            let attempt = i32::try_from(run.attempt)
                .map_err(|_| crate::CoreError::validation("attempt", "too many attempts"))?;
            sqlx::query_as(include_str!("postgres/claim_if_clear.sql"))
                .bind(&run.code)
                .bind(run.tick)
                .bind(run.kind.as_str())
                .bind(attempt)
                .bind(run.started_at)
                .bind(run.lease_until)
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .bind(run.started_at)
                .bind(exclusive)
                .bind(super::sql::lock_key(&run.code))
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(row.map(|(id, failures)| {
        (
            claimed(run, id),
            u32::try_from(failures).unwrap_or(u32::MAX),
        )
    }))
}
