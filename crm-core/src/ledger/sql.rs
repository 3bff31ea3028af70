//! The run ledger in the CRM's database: table `job_runs` (migration 0002), SQLite and
//! PostgreSQL, written once in [`ledger_on_sql!`] and compiled for each backend with its
//! dialect ([`crate::dialect`]). Each statement is one `.sql` file per backend,
//! `src/ledger/{sqlite,postgres}/NAME.sql` (same parameters in the same order), picked by
//! `statement!("NAME")`; columns whose names differ (SQLite's `tick_us` is PostgreSQL's `tick`)
//! are read through `col!`.
//!
//! A claim is one transaction that first serialises the job's claimants (`begin_claim`):
//! SQLite's `BEGIN IMMEDIATE` takes the database's write lock at once (so two processes on one
//! file queue up, within the busy timeout), PostgreSQL's `pg_advisory_xact_lock` on a key
//! derived from the job code queues claims of that job across every connection and machine.
//! Inside it, the expired claims are abandoned, the lease checked and the row inserted; the
//! unique key `(code, kind, tick, attempt)` backs it all up.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Claim, Incident, IncidentChange, JobRun, NewRun, Pruned, Retention, RunCount, RunEnd, RunId,
    RunLedger, RunOutcome, SeenIncident, clip_message, kept_ids, validate_finish, validate_new_run,
};
use crate::database::{Backend, Database, on_backend};
use crate::error::{CoreError, Result};

fn decode_error(what: &str) -> CoreError {
    CoreError::from(sqlx::Error::Decode(
        format!("job_runs: {what} out of range").into(),
    ))
}

fn parse_word<T: std::str::FromStr<Err = String>>(word: &str) -> Result<T> {
    word.parse::<T>()
        .map_err(|e| CoreError::from(sqlx::Error::Decode(e.into())))
}

/// The ledger's operations, for the backend whose dialect ([`crate::dialect`]) is in scope with
/// the macros `statement!` and `col!`, the type `Attempt` (how the backend stores an attempt
/// number), and the functions `attempt` and `begin_claim`.
macro_rules! ledger_on_sql {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::Row as _;

        use super::{decode_error, parse_word};
        use crate::error::Result;
        use crate::ledger::{
            Incident, IncidentKind, JobRun, NewRun, RunCount, RunId, SeenIncident,
        };

        fn job_run(row: &Row) -> Result<JobRun> {
            Ok(JobRun {
                id: RunId(row.try_get("id")?),
                code: row.try_get("code")?,
                tick: read_at(row, col!(tick))?,
                kind: parse_word(row.try_get::<&str, _>("kind")?)?,
                attempt: u32::try_from(row.try_get::<Attempt, _>("attempt")?)
                    .map_err(|_| decode_error("attempt"))?,
                started_at: read_at(row, col!(started_at))?,
                ended_at: read_opt_at(row, col!(ended_at))?,
                outcome: parse_word(row.try_get::<&str, _>("outcome")?)?,
                message: row.try_get("message")?,
                lease_until: read_opt_at(row, col!(lease_until))?,
                host: row.try_get("host")?,
                pid: u32::try_from(row.try_get::<i64, _>("pid")?)
                    .map_err(|_| decode_error("pid"))?,
            })
        }

        fn incident(row: &Row) -> Result<Incident> {
            Ok(Incident {
                code: row.try_get("code")?,
                kind: parse_word(row.try_get("kind")?)?,
                tick: read_at(row, col!(tick))?,
                opened_at: read_at(row, col!(opened_at))?,
                resolved_at: read_opt_at(row, col!(resolved_at))?,
            })
        }

        fn job_runs(rows: &[Row]) -> Result<Vec<JobRun>> {
            rows.iter().map(job_run).collect()
        }

        /// See [`crate::ledger::RunLedger::claim`]; `run` is validated.
        pub(super) async fn claim(
            pool: &Pool,
            run: &NewRun,
            exclusive: bool,
            now: DateTime<Utc>,
        ) -> Result<crate::ledger::Claim> {
            use crate::ledger::Claim;
            let mut tx = begin_claim(pool, &run.code).await?;
            sqlx::query(statement!("abandon_expired_of_job"))
                .bind(&run.code)
                .bind(at(now))
                .execute(&mut *tx)
                .await?;
            let existing = sqlx::query(statement!("run_by_key"))
                .bind(&run.code)
                .bind(run.kind.as_str())
                .bind(at(run.tick))
                .bind(attempt(run)?)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                let taken = job_run(&row)?;
                tx.commit().await?; // keeps the abandoned marks
                return Ok(Claim::Taken(taken));
            }
            if exclusive {
                let holder = sqlx::query(statement!("lease_holder"))
                    .bind(&run.code)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = holder {
                    let busy = job_run(&row)?;
                    tx.commit().await?;
                    return Ok(Claim::Busy(busy));
                }
            }
            let row = sqlx::query(statement!("insert_claim"))
                .bind(&run.code)
                .bind(at(run.tick))
                .bind(run.kind.as_str())
                .bind(attempt(run)?)
                .bind(at(run.started_at))
                .bind(at(run.lease_until))
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .fetch_one(&mut *tx)
                .await?;
            let claimed = job_run(&row)?;
            tx.commit().await?;
            Ok(Claim::Claimed(claimed))
        }

        /// `run` is validated and `message` clipped.
        pub(super) async fn record_skipped(
            pool: &Pool,
            run: &NewRun,
            message: &str,
        ) -> Result<bool> {
            let written = sqlx::query(statement!("record_skipped"))
                .bind(&run.code)
                .bind(at(run.tick))
                .bind(run.kind.as_str())
                .bind(attempt(run)?)
                .bind(at(run.started_at))
                .bind(message)
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .execute(pool)
                .await?
                .rows_affected();
            Ok(written == 1)
        }

        pub(super) async fn renew(
            pool: &Pool,
            id: RunId,
            lease_until: DateTime<Utc>,
        ) -> Result<bool> {
            let updated = sqlx::query(statement!("renew"))
                .bind(at(lease_until))
                .bind(id.0)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(updated == 1)
        }

        pub(super) async fn abandon_expired(
            pool: &Pool,
            now: DateTime<Utc>,
        ) -> Result<Vec<JobRun>> {
            job_runs(
                &sqlx::query(statement!("abandon_expired"))
                    .bind(at(now))
                    .fetch_all(pool)
                    .await?,
            )
        }

        pub(super) async fn last_scheduled(pool: &Pool, code: &str) -> Result<Option<JobRun>> {
            sqlx::query(statement!("last_scheduled"))
                .bind(code)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(job_run)
                .transpose()
        }

        pub(super) async fn last_runs(pool: &Pool) -> Result<Vec<JobRun>> {
            job_runs(&sqlx::query(statement!("last_runs")).fetch_all(pool).await?)
        }

        pub(super) async fn history(
            pool: &Pool,
            code: Option<&str>,
            limit: i64,
        ) -> Result<Vec<JobRun>> {
            job_runs(
                &sqlx::query(statement!("history"))
                    .bind(code)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?,
            )
        }

        pub(super) async fn consecutive_failures(pool: &Pool, code: &str) -> Result<u32> {
            let count: i64 = sqlx::query_scalar(statement!("consecutive_failures"))
                .bind(code)
                .fetch_one(pool)
                .await?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        }

        pub(super) async fn running(pool: &Pool, code: Option<&str>) -> Result<Vec<JobRun>> {
            job_runs(
                &sqlx::query(statement!("running"))
                    .bind(code)
                    .fetch_all(pool)
                    .await?,
            )
        }

        pub(super) async fn recent_runs(pool: &Pool, per_job: i64) -> Result<Vec<JobRun>> {
            job_runs(
                &sqlx::query(statement!("recent_runs"))
                    .bind(per_job)
                    .fetch_all(pool)
                    .await?,
            )
        }

        /// Whether the incident was opened, and if not whether an open one was escalated.
        pub(super) async fn open_incident(
            pool: &Pool,
            seen: SeenIncident<'_>,
        ) -> Result<(bool, bool)> {
            let (code, kind, tick, now) = (seen.code, seen.kind, seen.tick, seen.at);
            let opened = sqlx::query(statement!("open_incident"))
                .bind(code)
                .bind(kind.as_str())
                .bind(at(tick))
                .bind(at(now))
                .execute(pool)
                .await?
                .rows_affected()
                == 1;
            let escalated = !opened
                && kind == IncidentKind::Missed
                && sqlx::query(statement!("escalate_incident"))
                    .bind(at(tick))
                    .bind(code)
                    .execute(pool)
                    .await?
                    .rows_affected()
                    == 1;
            Ok((opened, escalated))
        }

        pub(super) async fn resolve_incident(
            pool: &Pool,
            code: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<Incident>> {
            sqlx::query(statement!("resolve_incident"))
                .bind(at(now))
                .bind(code)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(incident)
                .transpose()
        }

        pub(super) async fn open_incidents(pool: &Pool) -> Result<Vec<Incident>> {
            sqlx::query(statement!("open_incidents"))
                .fetch_all(pool)
                .await?
                .iter()
                .map(incident)
                .collect()
        }

        pub(super) async fn run_counts(pool: &Pool) -> Result<Vec<RunCount>> {
            sqlx::query(statement!("run_counts"))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    let outcome: String = row.try_get("outcome")?;
                    Ok(RunCount {
                        code: row.try_get("code")?,
                        outcome: outcome
                            .parse()
                            .map_err(|e: String| crate::CoreError::validation("outcome", e))?,
                        runs: u64::try_from(row.try_get::<i64, _>("runs")?).unwrap_or(0),
                        total_duration: std::time::Duration::from_micros(
                            u64::try_from(row.try_get::<i64, _>("duration_us")?).unwrap_or(0),
                        ),
                        last_ended: row
                            .try_get::<Option<i64>, _>("last_ended_us")?
                            .and_then(DateTime::<Utc>::from_timestamp_micros),
                    })
                })
                .collect()
        }

        /// Retention's first step: one-off runs asked for before `before` whose run ended.
        pub(super) async fn prune_one_offs(pool: &Pool, before: DateTime<Utc>) -> Result<u64> {
            Ok(sqlx::query(statement!("prune_one_offs"))
                .bind(at(before))
                .execute(pool)
                .await?
                .rows_affected())
        }

        /// One batch of the retention: up to `limit` finished runs older than `before`, after
        /// the key `(started_at, id)`, except the ids `kept`; the keys of the deleted rows.
        pub(super) async fn prune_runs(
            pool: &Pool,
            before: DateTime<Utc>,
            after: (DateTime<Utc>, i64),
            kept: &[i64],
            limit: i64,
        ) -> Result<Vec<(DateTime<Utc>, i64)>> {
            sqlx::query(statement!("prune_runs"))
                .bind(at(before))
                .bind(at(after.0))
                .bind(after.1)
                .bind(ids(kept))
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((read_at(row, col!(started_at))?, row.try_get("id")?)))
                .collect()
        }

        /// Retention's last step: incidents resolved before `before`.
        pub(super) async fn prune_incidents(pool: &Pool, before: DateTime<Utc>) -> Result<u64> {
            Ok(sqlx::query(statement!("prune_incidents"))
                .bind(at(before))
                .execute(pool)
                .await?
                .rows_affected())
        }

        /// Retention of the CRM's restock idempotency keys taken before `before`.
        pub(super) async fn prune_restock_keys(pool: &Pool, before: DateTime<Utc>) -> Result<u64> {
            Ok(sqlx::query(statement!("prune_restock_keys"))
                .bind(at(before))
                .execute(pool)
                .await?
                .rows_affected())
        }
    };
}

/// SQLite (see [`crate::dialect::sqlite`]): instants are `*_us` columns of microseconds.
#[cfg(feature = "sqlite")]
mod sqlite {
    use crate::dialect::sqlite::*;

    macro_rules! col {
        (tick) => {
            "tick_us"
        };
        (started_at) => {
            "started_at_us"
        };
        (ended_at) => {
            "ended_at_us"
        };
        (lease_until) => {
            "lease_until_us"
        };
        (opened_at) => {
            "opened_at_us"
        };
        (resolved_at) => {
            "resolved_at_us"
        };
    }

    /// An attempt number as SQLite's INTEGER.
    type Attempt = i64;

    fn attempt(run: &NewRun) -> Result<Attempt> {
        Ok(i64::from(run.attempt))
    }

    /// `BEGIN IMMEDIATE`: the write lock queues every claimant of the file.
    async fn begin_claim(pool: &Pool, _code: &str) -> Result<sqlx::Transaction<'static, Db>> {
        begin_write(pool).await
    }

    ledger_on_sql!();

    /// Nothing to fold: SQLite keeps one row per job and outcome, updated in place (one
    /// writer at a time, so no end waits on another's row lock).
    pub(super) async fn fold_run_counts(_pool: &Pool) -> Result<()> {
        Ok(())
    }
}

/// PostgreSQL (see [`crate::dialect::postgres`]).
#[cfg(feature = "postgres")]
mod postgres {
    use crate::dialect::postgres::*;

    macro_rules! col {
        ($name:ident) => {
            stringify!($name)
        };
    }

    /// An attempt number as PostgreSQL's INTEGER.
    type Attempt = i32;

    fn attempt(run: &NewRun) -> Result<Attempt> {
        i32::try_from(run.attempt)
            .map_err(|_| crate::CoreError::validation("attempt", "too many attempts"))
    }

    /// The transaction's advisory lock on the job's key queues that job's claimants on every
    /// connection and machine.
    async fn begin_claim(pool: &Pool, code: &str) -> Result<sqlx::Transaction<'static, Db>> {
        let mut tx = begin_write(pool).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::lock_key(code))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    ledger_on_sql!();

    use crate::ledger::RunOutcome;

    /// Ends run `id` with `outcome` if its outcome is still `from`; whether it was. (SQLite's
    /// ends go through `group_commit`.)
    pub(super) async fn finish_from(
        pool: &Pool,
        id: RunId,
        from: RunOutcome,
        outcome: RunOutcome,
        ended_at: DateTime<Utc>,
        message: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(statement!("finish"))
            .bind(outcome.as_str())
            .bind(at(ended_at))
            .bind(message)
            .bind(id.0)
            .bind(from.as_str())
            .execute(pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// Past this many rows in `job_run_counts`, they are folded into one per job and outcome
    /// (migration 0014): a fold is a write, rare enough that a scrape stays a read.
    const FOLD_RUN_COUNTS_PAST: i64 = 64;

    /// Folds the rows the runs' ends appended to `job_run_counts`, if there are many.
    pub(super) async fn fold_run_counts(pool: &Pool) -> Result<()> {
        sqlx::query(statement!("fold_run_counts"))
            .bind(FOLD_RUN_COUNTS_PAST)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// The PostgreSQL advisory lock key of a job: FNV-1a of its code, so every process agrees.
#[cfg(feature = "postgres")]
pub(super) fn lock_key(code: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"crm_jobs:".iter().chain(code.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[async_trait]
impl RunLedger for Database {
    async fn claim(&self, run: &NewRun, exclusive: bool, now: DateTime<Utc>) -> Result<Claim> {
        validate_new_run(run)?;
        on_backend!(self, claim(run, exclusive, now))
    }

    async fn claim_if_clear(&self, run: &NewRun, exclusive: bool) -> Result<Option<(JobRun, u32)>> {
        super::claim_if_clear::claim_if_clear(self, run, exclusive).await
    }

    async fn record_skipped(&self, run: &NewRun, message: &str) -> Result<bool> {
        validate_new_run(run)?;
        let message = clip_message(message);
        on_backend!(self, record_skipped(run, &message))
    }

    async fn renew(&self, id: RunId, lease_until: DateTime<Utc>) -> Result<bool> {
        on_backend!(self, renew(id, lease_until))
    }

    async fn finish(&self, id: RunId, end: RunEnd<'_>) -> Result<bool> {
        validate_finish(end.outcome)?;
        let message = clip_message(end.message);
        let end = RunEnd {
            message: &message,
            ..end
        };
        match self.backend() {
            // With the claims and ends made meanwhile, in one transaction (`group_commit`).
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let from = self.group_commit().finish(pool, id, end).await?;
                Ok(from == Some(RunOutcome::Running))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                for from in super::ENDS_FROM {
                    if postgres::finish_from(pool, id, from, end.outcome, end.at, end.message)
                        .await?
                    {
                        return Ok(from == RunOutcome::Running);
                    }
                }
                Ok(false)
            }
        }
    }

    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>> {
        on_backend!(self, abandon_expired(now))
    }

    async fn last_scheduled(&self, code: &str) -> Result<Option<JobRun>> {
        on_backend!(self, last_scheduled(code))
    }

    async fn last_runs(&self) -> Result<Vec<JobRun>> {
        on_backend!(self, last_runs())
    }

    async fn history(&self, code: Option<&str>, limit: u32) -> Result<Vec<JobRun>> {
        let limit = i64::from(limit.min(super::MAX_HISTORY_LIMIT));
        on_backend!(self, history(code, limit))
    }

    async fn consecutive_failures(&self, code: &str) -> Result<u32> {
        on_backend!(self, consecutive_failures(code))
    }

    async fn running(&self, code: Option<&str>) -> Result<Vec<JobRun>> {
        on_backend!(self, running(code))
    }

    async fn recent_runs(&self, per_job: u32) -> Result<Vec<JobRun>> {
        // Per job, each part is an index walk from the newest entry down that stops at its
        // `LIMIT` (the query files say which index serves which part), so the cost follows the
        // number of jobs and `per_job`, not the ledger's length: a /metrics scrape and /status
        // read this on every request.
        let per_job = i64::from(per_job.min(super::MAX_HISTORY_LIMIT));
        on_backend!(self, recent_runs(per_job))
    }

    async fn open_incident(&self, seen: SeenIncident<'_>) -> Result<IncidentChange> {
        // Each step is one statement, atomic on its own: the partial unique index lets one
        // insert win, and the escalation's `kind = 'late'` condition lets one update win.
        let (opened, escalated) = on_backend!(self, open_incident(seen))?;
        Ok(if opened {
            IncidentChange::Opened
        } else if escalated {
            IncidentChange::Escalated
        } else {
            IncidentChange::Known
        })
    }

    async fn resolve_incident(&self, code: &str, now: DateTime<Utc>) -> Result<Option<Incident>> {
        on_backend!(self, resolve_incident(code, now))
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        on_backend!(self, open_incidents())
    }

    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        Database::run_counts(self).await
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned> {
        let before = retention.before;
        // One-off runs first: once one is gone, its run is an ordinary run.
        let one_off_runs = on_backend!(self, prune_one_offs(before))?;
        let mut pruned = Pruned {
            one_off_runs,
            ..Pruned::default()
        };
        let kept = kept_ids(self, retention.keep_per_job).await?;
        let limit = i64::from(retention.batch.max(1));
        // Where the previous batch stopped (started_at, id); year 1 before the first.
        let mut key: (DateTime<Utc>, i64) = (
            DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
            0,
        );
        loop {
            let began = std::time::Instant::now();
            let deleted = on_backend!(self, prune_runs(before, key, &kept, limit))?;
            if deleted.is_empty() {
                break;
            }
            pruned.batches += 1;
            pruned.runs += deleted.len() as u64;
            if let Some(last) = deleted.iter().max() {
                key = *last;
            }
            // A short batch does not end the prune: another prune running at once may have
            // deleted some of the rows this one selected. Only an empty batch does.
            // At least as long as the batch took: the prune holds the database at most half
            // the time, so a writer waiting on SQLite's busy handler (which sleeps up to 100 ms
            // between tries) finds it free soon rather than missing short gaps again and again.
            if !retention.pause.is_zero() {
                async_io::Timer::after(retention.pause.max(began.elapsed())).await;
            }
        }
        pruned.incidents = on_backend!(self, prune_incidents(before))?;
        // Not the ledger's, but in the same database and kept for the same reason (a tick's
        // re-runs), so the one daily prune keeps them in bounds too.
        pruned.restock_keys = on_backend!(self, prune_restock_keys(before))?;
        // A ledger nobody scrapes still has its counts' rows folded once a day.
        if let Err(e) = on_backend!(self, fold_run_counts()) {
            tracing::warn!(error = %e, "Could not fold the run counts' rows");
        }
        Ok(pruned)
    }
}

impl Database {
    /// Every job's finished runs per outcome, counted since the ledger began (also those a
    /// prune deleted), with their summed durations and the latest end of such a run still in
    /// the ledger: what a Prometheus scrape reads (`crm_job_runs_total`, the last success and
    /// failure). One statement over `job_run_counts` (migration 0009), whose rows triggers
    /// keep as runs finish, and an index walk per job and outcome (`job_runs_outcome_end_idx`);
    /// its cost does not grow with the ledger. On PostgreSQL the ends append rows (migration
    /// 0014), folded here once there are many.
    pub async fn run_counts(&self) -> Result<Vec<RunCount>> {
        let counts = on_backend!(self, run_counts())?;
        if let Err(e) = on_backend!(self, fold_run_counts()) {
            // The counts read are right; the next read tries again.
            tracing::warn!(error = %e, "Could not fold the run counts' rows");
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_differ_per_job() {
        assert_eq!(lock_key("log_crm_heartbeat"), lock_key("log_crm_heartbeat"));
        assert_ne!(lock_key("log_crm_heartbeat"), lock_key("update_low_stock"));
    }
}
