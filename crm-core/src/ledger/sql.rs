//! The run ledger in the CRM's database: table `job_runs` (migration 0002), SQLite and
//! PostgreSQL.
//!
//! A claim is one transaction that first serialises the job's claimants: SQLite's
//! `BEGIN IMMEDIATE` takes the database's write lock at once (so two processes on one file
//! queue up, within the busy timeout), PostgreSQL's `pg_advisory_xact_lock` on a key derived from
//! the job code queues claims of that job across every connection and machine. Inside it, the
//! expired claims are abandoned, the lease checked and the row inserted; the unique key
//! `(code, kind, tick, attempt)` backs it all up.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgRow;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteRow;

use super::{
    Claim, Incident, IncidentChange, IncidentKind, JobRun, NewRun, Pruned, Retention, RunCount,
    RunId, RunLedger, RunOutcome, clip_message, kept_ids, validate_new_run,
};
use crate::database::{Backend, Database};
use crate::error::{CoreError, Result};

/// The columns every query returns, in [`sqlite_row`]'s order.
macro_rules! sqlite_columns {
    () => {
        "id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message, \
         lease_until_us, host, pid"
    };
}

/// The columns every query returns, in [`pg_row`]'s order.
#[cfg(feature = "postgres")]
macro_rules! pg_columns {
    () => {
        "id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until, \
         host, pid"
    };
}

/// The message of an abandoned claim, built in SQL from the row (kept in step with
/// `super::abandoned_message`).
macro_rules! abandon_set {
    ($now:literal, $ended:literal) => {
        concat!(
            "outcome = 'abandoned', ",
            $ended,
            " = ",
            $now,
            ", message = 'abandoned: the runner (' || host || ', pid ' || pid || ') stopped \
             renewing its lease'"
        )
    };
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn decode_error(what: &str) -> CoreError {
    CoreError::from(sqlx::Error::Decode(
        format!("job_runs: {what} out of range").into(),
    ))
}

fn from_micros(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| decode_error("timestamp"))
}

fn parse_word<T: std::str::FromStr<Err = String>>(word: &str) -> Result<T> {
    word.parse::<T>()
        .map_err(|e| CoreError::from(sqlx::Error::Decode(e.into())))
}

#[cfg(feature = "sqlite")]
fn sqlite_row(row: &SqliteRow) -> Result<JobRun> {
    let optional = |name: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(name)?
            .map(from_micros)
            .transpose()
    };
    Ok(JobRun {
        id: RunId(row.try_get("id")?),
        code: row.try_get("code")?,
        tick: from_micros(row.try_get("tick_us")?)?,
        kind: parse_word(row.try_get::<&str, _>("kind")?)?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?)
            .map_err(|_| decode_error("attempt"))?,
        started_at: from_micros(row.try_get("started_at_us")?)?,
        ended_at: optional("ended_at_us")?,
        outcome: parse_word(row.try_get::<&str, _>("outcome")?)?,
        message: row.try_get("message")?,
        lease_until: optional("lease_until_us")?,
        host: row.try_get("host")?,
        pid: u32::try_from(row.try_get::<i64, _>("pid")?).map_err(|_| decode_error("pid"))?,
    })
}

#[cfg(feature = "postgres")]
fn pg_row(row: &PgRow) -> Result<JobRun> {
    Ok(JobRun {
        id: RunId(row.try_get("id")?),
        code: row.try_get("code")?,
        tick: row.try_get("tick")?,
        kind: parse_word(row.try_get::<&str, _>("kind")?)?,
        attempt: u32::try_from(row.try_get::<i32, _>("attempt")?)
            .map_err(|_| decode_error("attempt"))?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        outcome: parse_word(row.try_get::<&str, _>("outcome")?)?,
        message: row.try_get("message")?,
        lease_until: row.try_get("lease_until")?,
        host: row.try_get("host")?,
        pid: u32::try_from(row.try_get::<i64, _>("pid")?).map_err(|_| decode_error("pid"))?,
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_incident(row: &SqliteRow) -> Result<Incident> {
    Ok(Incident {
        code: row.try_get("code")?,
        kind: parse_word(row.try_get("kind")?)?,
        tick: from_micros(row.try_get("tick_us")?)?,
        opened_at: from_micros(row.try_get("opened_at_us")?)?,
        resolved_at: row
            .try_get::<Option<i64>, _>("resolved_at_us")?
            .map(from_micros)
            .transpose()?,
    })
}

#[cfg(feature = "postgres")]
fn pg_incident(row: &PgRow) -> Result<Incident> {
    Ok(Incident {
        code: row.try_get("code")?,
        kind: parse_word(row.try_get("kind")?)?,
        tick: row.try_get("tick")?,
        opened_at: row.try_get("opened_at")?,
        resolved_at: row.try_get("resolved_at")?,
    })
}

/// The PostgreSQL advisory lock key of a job: FNV-1a of its code, so every process agrees.
#[cfg(feature = "postgres")]
fn lock_key(code: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"crm_jobs:".iter().chain(code.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(feature = "postgres")]
fn attempt_i32(run: &NewRun) -> Result<i32> {
    i32::try_from(run.attempt).map_err(|_| CoreError::validation("attempt", "too many attempts"))
}

#[async_trait]
impl RunLedger for Database {
    async fn claim(&self, run: &NewRun, exclusive: bool, now: DateTime<Utc>) -> Result<Claim> {
        validate_new_run(run)?;
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(concat!(
                    "UPDATE job_runs SET ",
                    abandon_set!("?2", "ended_at_us"),
                    " WHERE code = ?1 AND outcome = 'running' AND lease_until_us < ?2"
                ))
                .bind(&run.code)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
                let existing = sqlx::query(concat!(
                    "SELECT ",
                    sqlite_columns!(),
                    " FROM job_runs WHERE code = ? AND kind = ? AND tick_us = ? AND attempt = ?"
                ))
                .bind(&run.code)
                .bind(run.kind.as_str())
                .bind(micros(run.tick))
                .bind(i64::from(run.attempt))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = existing {
                    let taken = sqlite_row(&row)?;
                    tx.commit().await?; // keeps the abandoned marks
                    return Ok(Claim::Taken(taken));
                }
                if exclusive {
                    let holder = sqlx::query(concat!(
                        "SELECT ",
                        sqlite_columns!(),
                        " FROM job_runs WHERE code = ? AND outcome = 'running' \
                         AND kind <> 'dry_run' ORDER BY id LIMIT 1"
                    ))
                    .bind(&run.code)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(row) = holder {
                        let busy = sqlite_row(&row)?;
                        tx.commit().await?;
                        return Ok(Claim::Busy(busy));
                    }
                }
                let row = sqlx::query(concat!(
                    "INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, outcome, \
                     lease_until_us, host, pid) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?) \
                     RETURNING ",
                    sqlite_columns!()
                ))
                .bind(&run.code)
                .bind(micros(run.tick))
                .bind(run.kind.as_str())
                .bind(i64::from(run.attempt))
                .bind(micros(run.started_at))
                .bind(micros(run.lease_until))
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .fetch_one(&mut *tx)
                .await?;
                let claimed = sqlite_row(&row)?;
                tx.commit().await?;
                Ok(Claim::Claimed(claimed))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_key(&run.code))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(concat!(
                    "UPDATE job_runs SET ",
                    abandon_set!("$2", "ended_at"),
                    " WHERE code = $1 AND outcome = 'running' AND lease_until < $2"
                ))
                .bind(&run.code)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let existing = sqlx::query(concat!(
                    "SELECT ",
                    pg_columns!(),
                    " FROM job_runs WHERE code = $1 AND kind = $2 AND tick = $3 AND attempt = $4"
                ))
                .bind(&run.code)
                .bind(run.kind.as_str())
                .bind(run.tick)
                .bind(attempt_i32(run)?)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = existing {
                    let taken = pg_row(&row)?;
                    tx.commit().await?; // keeps the abandoned marks
                    return Ok(Claim::Taken(taken));
                }
                if exclusive {
                    let holder = sqlx::query(concat!(
                        "SELECT ",
                        pg_columns!(),
                        " FROM job_runs WHERE code = $1 AND outcome = 'running' \
                         AND kind <> 'dry_run' ORDER BY id LIMIT 1"
                    ))
                    .bind(&run.code)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(row) = holder {
                        let busy = pg_row(&row)?;
                        tx.commit().await?;
                        return Ok(Claim::Busy(busy));
                    }
                }
                let row = sqlx::query(concat!(
                    "INSERT INTO job_runs (code, tick, kind, attempt, started_at, outcome, \
                     lease_until, host, pid) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) \
                     RETURNING ",
                    pg_columns!()
                ))
                .bind(&run.code)
                .bind(run.tick)
                .bind(run.kind.as_str())
                .bind(attempt_i32(run)?)
                .bind(run.started_at)
                .bind(run.lease_until)
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .fetch_one(&mut *tx)
                .await?;
                let claimed = pg_row(&row)?;
                tx.commit().await?;
                Ok(Claim::Claimed(claimed))
            }
        }
    }

    async fn record_skipped(&self, run: &NewRun, message: &str) -> Result<bool> {
        validate_new_run(run)?;
        let message = clip_message(message);
        let written = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(
                "INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, ended_at_us, \
                 outcome, message, host, pid) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'skipped', ?6, ?7, ?8) \
                 ON CONFLICT (code, kind, tick_us, attempt) DO NOTHING",
            )
            .bind(&run.code)
            .bind(micros(run.tick))
            .bind(run.kind.as_str())
            .bind(i64::from(run.attempt))
            .bind(micros(run.started_at))
            .bind(&message)
            .bind(&run.host)
            .bind(i64::from(run.pid))
            .execute(pool)
            .await?
            .rows_affected(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(
                "INSERT INTO job_runs (code, tick, kind, attempt, started_at, ended_at, outcome, \
                 message, host, pid) VALUES ($1, $2, $3, $4, $5, $5, 'skipped', $6, $7, $8) \
                 ON CONFLICT (code, kind, tick, attempt) DO NOTHING",
            )
            .bind(&run.code)
            .bind(run.tick)
            .bind(run.kind.as_str())
            .bind(attempt_i32(run)?)
            .bind(run.started_at)
            .bind(&message)
            .bind(&run.host)
            .bind(i64::from(run.pid))
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(written == 1)
    }

    async fn renew(&self, id: RunId, lease_until: DateTime<Utc>) -> Result<bool> {
        let updated = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(
                "UPDATE job_runs SET lease_until_us = ? WHERE id = ? AND outcome = 'running'",
            )
            .bind(micros(lease_until))
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(
                "UPDATE job_runs SET lease_until = $1 WHERE id = $2 AND outcome = 'running'",
            )
            .bind(lease_until)
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(updated == 1)
    }

    async fn finish(
        &self,
        id: RunId,
        outcome: RunOutcome,
        ended_at: DateTime<Utc>,
        message: &str,
    ) -> Result<bool> {
        if outcome == RunOutcome::Running {
            return Err(CoreError::validation(
                "outcome",
                "a finished run cannot be running",
            ));
        }
        let message = clip_message(message);
        // A run only moves running -> abandoned -> its real outcome, so two single-statement
        // updates tell which it was without a transaction.
        for from in ["running", "abandoned"] {
            let updated = match self.backend() {
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(pool) => sqlx::query(
                    "UPDATE job_runs SET outcome = ?, ended_at_us = ?, message = ?, \
                     lease_until_us = NULL WHERE id = ? AND outcome = ?",
                )
                .bind(outcome.as_str())
                .bind(micros(ended_at))
                .bind(&message)
                .bind(id.0)
                .bind(from)
                .execute(pool)
                .await?
                .rows_affected(),
                #[cfg(feature = "postgres")]
                Backend::Postgres(pool) => sqlx::query(
                    "UPDATE job_runs SET outcome = $1, ended_at = $2, message = $3, \
                     lease_until = NULL WHERE id = $4 AND outcome = $5",
                )
                .bind(outcome.as_str())
                .bind(ended_at)
                .bind(&message)
                .bind(id.0)
                .bind(from)
                .execute(pool)
                .await?
                .rows_affected(),
            };
            if updated == 1 {
                return Ok(from == "running");
            }
        }
        Ok(false)
    }

    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "UPDATE job_runs SET ",
                abandon_set!("?1", "ended_at_us"),
                " WHERE outcome = 'running' AND lease_until_us < ?1 RETURNING ",
                sqlite_columns!()
            ))
            .bind(micros(now))
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "UPDATE job_runs SET ",
                abandon_set!("$1", "ended_at"),
                " WHERE outcome = 'running' AND lease_until < $1 RETURNING ",
                pg_columns!()
            ))
            .bind(now)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }

    async fn last_scheduled(&self, code: &str) -> Result<Option<JobRun>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                sqlite_columns!(),
                " FROM job_runs WHERE code = ? AND kind IN ('scheduled', 'retry') \
                 ORDER BY tick_us DESC, attempt DESC, id DESC LIMIT 1"
            ))
            .bind(code)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_row)
            .transpose(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                pg_columns!(),
                " FROM job_runs WHERE code = $1 AND kind IN ('scheduled', 'retry') \
                 ORDER BY tick DESC, attempt DESC, id DESC LIMIT 1"
            ))
            .bind(code)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_row)
            .transpose(),
        }
    }

    async fn last_runs(&self) -> Result<Vec<JobRun>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                sqlite_columns!(),
                " FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs \
                 WHERE kind <> 'dry_run' GROUP BY code) ORDER BY code"
            ))
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                pg_columns!(),
                " FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs \
                 WHERE kind <> 'dry_run' GROUP BY code) ORDER BY code"
            ))
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }

    async fn history(&self, code: Option<&str>, limit: u32) -> Result<Vec<JobRun>> {
        let limit = i64::from(limit.min(super::MAX_HISTORY_LIMIT));
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                sqlite_columns!(),
                " FROM job_runs WHERE (?1 IS NULL OR code = ?1) \
                 ORDER BY started_at_us DESC, id DESC LIMIT ?2"
            ))
            .bind(code)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                pg_columns!(),
                " FROM job_runs WHERE ($1::text IS NULL OR code = $1) \
                 ORDER BY started_at DESC, id DESC LIMIT $2"
            ))
            .bind(code)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }

    async fn consecutive_failures(&self, code: &str) -> Result<u32> {
        let count: i64 = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM job_runs WHERE code = ?1 AND kind <> 'dry_run' \
                     AND outcome IN ('failed', 'abandoned') AND id > COALESCE((SELECT MAX(id) \
                     FROM job_runs WHERE code = ?1 AND kind <> 'dry_run' \
                     AND outcome = 'succeeded'), 0)",
                )
                .bind(code)
                .fetch_one(pool)
                .await?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM job_runs WHERE code = $1 AND kind <> 'dry_run' \
                     AND outcome IN ('failed', 'abandoned') AND id > COALESCE((SELECT MAX(id) \
                     FROM job_runs WHERE code = $1 AND kind <> 'dry_run' \
                     AND outcome = 'succeeded'), 0)",
                )
                .bind(code)
                .fetch_one(pool)
                .await?
            }
        };
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn running(&self, code: Option<&str>) -> Result<Vec<JobRun>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                sqlite_columns!(),
                " FROM job_runs WHERE outcome = 'running' AND (?1 IS NULL OR code = ?1) \
                 ORDER BY id"
            ))
            .bind(code)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                pg_columns!(),
                " FROM job_runs WHERE outcome = 'running' AND ($1::text IS NULL OR code = $1) \
                 ORDER BY id"
            ))
            .bind(code)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }

    async fn recent_runs(&self, per_job: u32) -> Result<Vec<JobRun>> {
        // Per job, each part is an index walk from the newest row down (a `LIMIT` on
        // `(code, started_at, id)`, on the primary key, on the claim key), so the cost follows
        // the number of jobs and `per_job`, not the ledger's length.
        let per_job = i64::from(per_job.min(super::MAX_HISTORY_LIMIT));
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(concat!(
                "WITH codes AS (SELECT DISTINCT code FROM job_runs) SELECT ",
                sqlite_columns!(),
                " FROM job_runs WHERE id IN ( \
                 SELECT y.id FROM codes AS c JOIN job_runs AS y ON y.id IN ( \
                    SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' ORDER BY z.started_at_us DESC, z.id DESC LIMIT ?1) \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' AND z.outcome = 'succeeded' \
                    ORDER BY z.id DESC LIMIT 1) FROM codes AS c \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' AND z.outcome IN ('failed', 'abandoned') \
                    ORDER BY z.id DESC LIMIT 1) FROM codes AS c \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind IN ('scheduled', 'retry') \
                    ORDER BY z.tick_us DESC, z.attempt DESC, z.id DESC LIMIT 1) FROM codes AS c) \
                 ORDER BY code, started_at_us DESC, id DESC"
            ))
            .bind(per_job)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(concat!(
                "WITH codes AS (SELECT DISTINCT code FROM job_runs) SELECT ",
                pg_columns!(),
                " FROM job_runs WHERE id IN ( \
                 SELECT y.id FROM codes AS c CROSS JOIN LATERAL ( \
                    SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' ORDER BY z.started_at DESC, z.id DESC LIMIT $1) AS y \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' AND z.outcome = 'succeeded' \
                    ORDER BY z.id DESC LIMIT 1) FROM codes AS c \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind <> 'dry_run' AND z.outcome IN ('failed', 'abandoned') \
                    ORDER BY z.id DESC LIMIT 1) FROM codes AS c \
                 UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code \
                    AND z.kind IN ('scheduled', 'retry') \
                    ORDER BY z.tick DESC, z.attempt DESC, z.id DESC LIMIT 1) FROM codes AS c) \
                 ORDER BY code, started_at DESC, id DESC"
            ))
            .bind(per_job)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        }
    }

    async fn open_incident(
        &self,
        code: &str,
        kind: IncidentKind,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<IncidentChange> {
        // Each step is one statement, atomic on its own: the partial unique index lets one
        // insert win, and the escalation's `kind = 'late'` condition lets one update win.
        let (opened, escalated) = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let opened = sqlx::query(
                    "INSERT INTO job_incidents (code, kind, tick_us, opened_at_us) \
                     VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(code)
                .bind(kind.as_str())
                .bind(micros(tick))
                .bind(micros(now))
                .execute(pool)
                .await?
                .rows_affected()
                    == 1;
                let escalated = !opened
                    && kind == IncidentKind::Missed
                    && sqlx::query(
                        "UPDATE job_incidents SET kind = 'missed', tick_us = ? \
                         WHERE code = ? AND resolved_at_us IS NULL AND kind = 'late'",
                    )
                    .bind(micros(tick))
                    .bind(code)
                    .execute(pool)
                    .await?
                    .rows_affected()
                        == 1;
                (opened, escalated)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let opened = sqlx::query(
                    "INSERT INTO job_incidents (code, kind, tick, opened_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(code)
                .bind(kind.as_str())
                .bind(tick)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
                    == 1;
                let escalated = !opened
                    && kind == IncidentKind::Missed
                    && sqlx::query(
                        "UPDATE job_incidents SET kind = 'missed', tick = $1 \
                         WHERE code = $2 AND resolved_at IS NULL AND kind = 'late'",
                    )
                    .bind(tick)
                    .bind(code)
                    .execute(pool)
                    .await?
                    .rows_affected()
                        == 1;
                (opened, escalated)
            }
        };
        Ok(if opened {
            IncidentChange::Opened
        } else if escalated {
            IncidentChange::Escalated
        } else {
            IncidentChange::Known
        })
    }

    async fn resolve_incident(&self, code: &str, now: DateTime<Utc>) -> Result<Option<Incident>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(
                "UPDATE job_incidents SET resolved_at_us = ? \
                 WHERE code = ? AND resolved_at_us IS NULL \
                 RETURNING code, kind, tick_us, opened_at_us, resolved_at_us",
            )
            .bind(micros(now))
            .bind(code)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_incident)
            .transpose(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(
                "UPDATE job_incidents SET resolved_at = $1 \
                 WHERE code = $2 AND resolved_at IS NULL \
                 RETURNING code, kind, tick, opened_at, resolved_at",
            )
            .bind(now)
            .bind(code)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_incident)
            .transpose(),
        }
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(
                "SELECT code, kind, tick_us, opened_at_us, resolved_at_us FROM job_incidents \
                 WHERE resolved_at_us IS NULL ORDER BY code",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_incident)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(
                "SELECT code, kind, tick, opened_at, resolved_at FROM job_incidents \
                 WHERE resolved_at IS NULL ORDER BY code",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_incident)
            .collect(),
        }
    }

    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        Database::run_counts(self).await
    }

    async fn prune(&self, retention: &Retention) -> Result<Pruned> {
        let before = retention.before;
        // One-off runs first: once one is gone, its run is an ordinary run.
        let one_off_runs = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(include_str!("sqlite/prune_one_offs.sql"))
                .bind(micros(before))
                .execute(pool)
                .await?
                .rows_affected(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(include_str!("postgres/prune_one_offs.sql"))
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected(),
        };
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
            let deleted: Vec<(DateTime<Utc>, i64)> = match self.backend() {
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(pool) => {
                    let kept = serde_json::to_string(&kept)
                        .map_err(|e| CoreError::from(sqlx::Error::Encode(e.into())))?;
                    sqlx::query(include_str!("sqlite/prune_runs.sql"))
                        .bind(micros(before))
                        .bind(micros(key.0))
                        .bind(key.1)
                        .bind(kept)
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                        .iter()
                        .map(|row| Ok((from_micros(row.try_get(0)?)?, row.try_get(1)?)))
                        .collect::<Result<_>>()?
                }
                #[cfg(feature = "postgres")]
                Backend::Postgres(pool) => sqlx::query(include_str!("postgres/prune_runs.sql"))
                    .bind(before)
                    .bind(key.0)
                    .bind(key.1)
                    .bind(&kept)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<_>>()?,
            };
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
        pruned.incidents = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(include_str!("sqlite/prune_incidents.sql"))
                .bind(micros(before))
                .execute(pool)
                .await?
                .rows_affected(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(include_str!("postgres/prune_incidents.sql"))
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(pruned)
    }
}

impl Database {
    /// Every job's finished runs per outcome, counted since the ledger began (also those a
    /// prune deleted), with their summed durations and the latest end of such a run still in
    /// the ledger: what a Prometheus scrape reads (`crm_job_runs_total`, the last success and
    /// failure). One statement over `job_run_counts` (migration 0009), whose rows triggers
    /// keep as runs finish, and an index walk per row (`job_runs_outcome_end_idx`); its cost
    /// does not grow with the ledger.
    pub async fn run_counts(&self) -> Result<Vec<RunCount>> {
        macro_rules! read {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|row| {
                        let outcome: String = row.try_get("outcome")?;
                        Ok(RunCount {
                            code: row.try_get("code")?,
                            outcome: outcome
                                .parse()
                                .map_err(|e: String| CoreError::validation("outcome", e))?,
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
            };
        }
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => read!(
                sqlx::query(include_str!("sqlite/run_counts.sql"))
                    .fetch_all(pool)
                    .await?
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => read!(
                sqlx::query(include_str!("postgres/run_counts.sql"))
                    .fetch_all(pool)
                    .await?
            ),
        }
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
