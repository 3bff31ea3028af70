//! Overrides in the CRM's database (migration 0004), SQLite and PostgreSQL.
//!
//! A change is one transaction: SQLite's `BEGIN IMMEDIATE` takes the write lock at once;
//! PostgreSQL's first statement increments the counter row, whose row lock queues concurrent
//! changes. Inside it the job's row is read, the new state computed (the same code as the
//! in-memory store), written, and the audit row added.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgRow;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteRow;

use super::{
    AuditEntry, JobOverride, MAX_AUDIT_LIMIT, OneOffRun, OverrideChange, OverrideSnapshot,
    OverrideStore, clip_actor, next_override, validate_change,
};
use crate::database::{Backend, Database};
use crate::error::{CoreError, Result};
use crate::sql::{from_micros, to_micros, truncate_to_micros};

fn version_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        CoreError::from(sqlx::Error::Decode(
            "job_override_version: negative counter".into(),
        ))
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_override(row: &SqliteRow) -> Result<JobOverride> {
    Ok(JobOverride {
        code: row.try_get("code")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        schedule: row.try_get("schedule")?,
        since: from_micros(row.try_get("since_us")?)?,
        changed_by: row.try_get("changed_by")?,
        changed_at: from_micros(row.try_get("changed_at_us")?)?,
    })
}

#[cfg(feature = "postgres")]
fn pg_override(row: &PgRow) -> Result<JobOverride> {
    Ok(JobOverride {
        code: row.try_get("code")?,
        enabled: row.try_get("enabled")?,
        schedule: row.try_get("schedule")?,
        since: row.try_get("since")?,
        changed_by: row.try_get("changed_by")?,
        changed_at: row.try_get("changed_at")?,
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_one_off(row: &SqliteRow) -> Result<OneOffRun> {
    Ok(OneOffRun {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        at: from_micros(row.try_get("at_us")?)?,
        requested_by: row.try_get("requested_by")?,
        requested_at: from_micros(row.try_get("requested_at_us")?)?,
    })
}

#[cfg(feature = "postgres")]
fn pg_one_off(row: &PgRow) -> Result<OneOffRun> {
    Ok(OneOffRun {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        at: row.try_get("at")?,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_audit(row: &SqliteRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: from_micros(row.try_get("at_us")?)?,
        actor: row.try_get("actor")?,
        code: row.try_get("code")?,
        action: row.try_get("action")?,
        detail: row.try_get("detail")?,
    })
}

#[cfg(feature = "postgres")]
fn pg_audit(row: &PgRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        code: row.try_get("code")?,
        action: row.try_get("action")?,
        detail: row.try_get("detail")?,
    })
}

#[async_trait]
impl OverrideStore for Database {
    async fn apply(
        &self,
        code: &str,
        change: &OverrideChange,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        validate_change(code, change, actor)?;
        let now = truncate_to_micros(now);
        let actor = clip_actor(actor);
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let version: i64 = sqlx::query_scalar(
                    "UPDATE job_override_version SET version = version + 1 WHERE id = 1 \
                     RETURNING version",
                )
                .fetch_one(&mut *tx)
                .await?;
                if let OverrideChange::RunAt(at) = change {
                    sqlx::query(
                        "INSERT INTO job_one_off_runs (code, at_us, requested_by, \
                         requested_at_us) VALUES (?, ?, ?, ?) ON CONFLICT (code, at_us) DO NOTHING",
                    )
                    .bind(code)
                    .bind(to_micros(*at))
                    .bind(&actor)
                    .bind(to_micros(now))
                    .execute(&mut *tx)
                    .await?;
                } else {
                    let current = sqlx::query(
                        "SELECT code, enabled, schedule, since_us, changed_by, changed_at_us \
                         FROM job_overrides WHERE code = ?",
                    )
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| sqlite_override(&row))
                    .transpose()?;
                    let next = next_override(current.as_ref(), code, change, &actor, now);
                    sqlx::query(
                        "INSERT INTO job_overrides (code, enabled, schedule, since_us, \
                         changed_by, changed_at_us) VALUES (?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (code) DO UPDATE SET enabled = excluded.enabled, \
                         schedule = excluded.schedule, since_us = excluded.since_us, \
                         changed_by = excluded.changed_by, changed_at_us = excluded.changed_at_us",
                    )
                    .bind(code)
                    .bind(i64::from(next.enabled))
                    .bind(&next.schedule)
                    .bind(to_micros(next.since))
                    .bind(&next.changed_by)
                    .bind(to_micros(next.changed_at))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO job_override_audit (at_us, actor, code, action, detail) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(to_micros(now))
                .bind(&actor)
                .bind(code)
                .bind(change.action())
                .bind(change.detail())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                version_u64(version)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The counter's row lock queues concurrent changes until this one commits.
                let version: i64 = sqlx::query_scalar(
                    "UPDATE job_override_version SET version = version + 1 WHERE id = 1 \
                     RETURNING version",
                )
                .fetch_one(&mut *tx)
                .await?;
                if let OverrideChange::RunAt(at) = change {
                    sqlx::query(
                        "INSERT INTO job_one_off_runs (code, at, requested_by, requested_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (code, at) DO NOTHING",
                    )
                    .bind(code)
                    .bind(truncate_to_micros(*at))
                    .bind(&actor)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    let current = sqlx::query(
                        "SELECT code, enabled, schedule, since, changed_by, changed_at \
                         FROM job_overrides WHERE code = $1",
                    )
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| pg_override(&row))
                    .transpose()?;
                    let next = next_override(current.as_ref(), code, change, &actor, now);
                    sqlx::query(
                        "INSERT INTO job_overrides (code, enabled, schedule, since, changed_by, \
                         changed_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (code) DO UPDATE SET enabled = excluded.enabled, \
                         schedule = excluded.schedule, since = excluded.since, \
                         changed_by = excluded.changed_by, changed_at = excluded.changed_at",
                    )
                    .bind(code)
                    .bind(next.enabled)
                    .bind(&next.schedule)
                    .bind(next.since)
                    .bind(&next.changed_by)
                    .bind(next.changed_at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO job_override_audit (at, actor, code, action, detail) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(now)
                .bind(&actor)
                .bind(code)
                .bind(change.action())
                .bind(change.detail())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                version_u64(version)
            }
        }
    }

    async fn version(&self) -> Result<u64> {
        let version: i64 = match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                sqlx::query_scalar("SELECT version FROM job_override_version WHERE id = 1")
                    .fetch_one(pool)
                    .await?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query_scalar("SELECT version FROM job_override_version WHERE id = 1")
                    .fetch_one(pool)
                    .await?
            }
        };
        version_u64(version)
    }

    async fn snapshot(&self) -> Result<OverrideSnapshot> {
        // The counter first: a change committed after it is read shows up in the rows below
        // and again at the next poll, never not at all.
        let version = self.version().await?;
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let overrides = sqlx::query(
                    "SELECT code, enabled, schedule, since_us, changed_by, changed_at_us \
                     FROM job_overrides ORDER BY code",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(sqlite_override)
                .collect::<Result<_>>()?;
                let pending = sqlx::query(
                    "SELECT id, code, at_us, requested_by, requested_at_us FROM job_one_off_runs o \
                     WHERE NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.code = o.code \
                     AND r.kind = 'manual' AND r.tick_us = o.at_us AND r.outcome NOT IN ('abandoned', 'running')) ORDER BY at_us, id",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(sqlite_one_off)
                .collect::<Result<_>>()?;
                Ok(OverrideSnapshot {
                    version,
                    overrides,
                    pending,
                })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let overrides = sqlx::query(
                    "SELECT code, enabled, schedule, since, changed_by, changed_at \
                     FROM job_overrides ORDER BY code",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(pg_override)
                .collect::<Result<_>>()?;
                let pending = sqlx::query(
                    "SELECT id, code, at, requested_by, requested_at FROM job_one_off_runs o \
                     WHERE NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.code = o.code \
                     AND r.kind = 'manual' AND r.tick = o.at AND r.outcome NOT IN ('abandoned', 'running')) ORDER BY at, id",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(pg_one_off)
                .collect::<Result<_>>()?;
                Ok(OverrideSnapshot {
                    version,
                    overrides,
                    pending,
                })
            }
        }
    }

    async fn audit(&self, code: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(MAX_AUDIT_LIMIT));
        match self.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query(
                "SELECT id, at_us, actor, code, action, detail FROM job_override_audit \
                 WHERE (?1 IS NULL OR code = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .bind(code)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_audit)
            .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query(
                "SELECT id, at, actor, code, action, detail FROM job_override_audit \
                 WHERE ($1::text IS NULL OR code = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(code)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_audit)
            .collect(),
        }
    }
}
