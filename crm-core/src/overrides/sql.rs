//! Overrides in the CRM's database (migration 0004), SQLite and PostgreSQL.
//!
//! A change is one transaction: SQLite's `BEGIN IMMEDIATE` takes the write lock at once;
//! PostgreSQL's first statement increments the counter row, whose row lock queues concurrent
//! changes. Inside it the job's row is read, the new state computed (the same code as the
//! in-memory store), written, and the audit row added.

use async_trait::async_trait;

use super::{AuditEntry, ChangeRequest, MAX_AUDIT_LIMIT, OverrideSnapshot, OverrideStore};
use crate::database::{Backend, Database, on_backend};
use crate::error::{CoreError, Result};

/// The change counter as the trait gives it.
fn version_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        CoreError::from(sqlx::Error::Decode(
            "job_override_version: negative counter".into(),
        ))
    })
}

/// The operations, once, for the backend whose dialect ([`crate::dialect`]) and `statement!`
/// are in scope. A new query: `src/overrides/{sqlite,postgres}/NAME.sql` (same parameters,
/// columns named alike with `AS`), and a function here running `statement!("NAME")`.
macro_rules! override_store_on_sql {
    () => {
        use sqlx::Row as _;

        use super::version_u64;
        use crate::domain::truncate_to_micros;
        use crate::error::Result;
        use crate::overrides::{
            AuditEntry, ChangeRequest, JobOverride, OneOffRun, OverrideChange, OverrideSnapshot,
            accept_change, next_override,
        };

        fn job_override(row: &Row) -> Result<JobOverride> {
            Ok(JobOverride {
                code: row.try_get("code")?,
                enabled: read_flag(row, "enabled")?,
                schedule: row.try_get("schedule")?,
                since: read_at(row, "since")?,
                changed_by: row.try_get("changed_by")?,
                changed_at: read_at(row, "changed_at")?,
            })
        }

        fn one_off(row: &Row) -> Result<OneOffRun> {
            Ok(OneOffRun {
                id: row.try_get("id")?,
                code: row.try_get("code")?,
                at: read_at(row, "at")?,
                requested_by: row.try_get("requested_by")?,
                requested_at: read_at(row, "requested_at")?,
            })
        }

        fn audit_entry(row: &Row) -> Result<AuditEntry> {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                at: read_at(row, "at")?,
                actor: row.try_get("actor")?,
                code: row.try_get("code")?,
                action: row.try_get("action")?,
                detail: row.try_get("detail")?,
            })
        }

        /// One transaction: the counter first (on PostgreSQL its row lock queues concurrent
        /// changes), then the job's row read, the new state computed by the same code as the
        /// in-memory store and written, and the audit row added.
        pub(super) async fn apply(pool: &Pool, request: ChangeRequest<'_>) -> Result<u64> {
            let (code, change) = (request.code, request.change);
            let (actor, now) = accept_change(&request)?;
            let mut tx = begin_write(pool).await?;
            let version: i64 = sqlx::query_scalar(statement!("bump_version"))
                .fetch_one(&mut *tx)
                .await?;
            if let OverrideChange::RunAt(when) = change {
                sqlx::query(statement!("insert_one_off"))
                    .bind(code)
                    .bind(at(truncate_to_micros(*when)))
                    .bind(&actor)
                    .bind(at(now))
                    .execute(&mut *tx)
                    .await?;
            } else {
                let current = sqlx::query(statement!("override"))
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| job_override(&row))
                    .transpose()?;
                let next = next_override(current.as_ref(), code, change, &actor, now);
                sqlx::query(statement!("upsert_override"))
                    .bind(code)
                    .bind(flag(next.enabled))
                    .bind(&next.schedule)
                    .bind(at(next.since))
                    .bind(&next.changed_by)
                    .bind(at(next.changed_at))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(statement!("insert_audit"))
                .bind(at(now))
                .bind(&actor)
                .bind(code)
                .bind(change.action())
                .bind(change.detail())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            version_u64(version)
        }

        /// The overrides and the pending one-off runs, after `version` was read.
        pub(super) async fn snapshot(pool: &Pool, version: u64) -> Result<OverrideSnapshot> {
            let overrides = sqlx::query(statement!("overrides"))
                .fetch_all(pool)
                .await?
                .iter()
                .map(job_override)
                .collect::<Result<_>>()?;
            let pending = sqlx::query(statement!("pending_one_offs"))
                .fetch_all(pool)
                .await?
                .iter()
                .map(one_off)
                .collect::<Result<_>>()?;
            Ok(OverrideSnapshot {
                version,
                overrides,
                pending,
            })
        }

        pub(super) async fn audit(
            pool: &Pool,
            code: Option<&str>,
            limit: i64,
        ) -> Result<Vec<AuditEntry>> {
            sqlx::query(statement!("audit"))
                .bind(code)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(audit_entry)
                .collect()
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use crate::dialect::sqlite::*;
    override_store_on_sql!();
}

#[cfg(feature = "postgres")]
mod postgres {
    use crate::dialect::postgres::*;
    override_store_on_sql!();

    /// On SQLite the counter is read on the ledger's batches' connection (`group_commit`).
    pub(super) async fn version(pool: &Pool) -> Result<u64> {
        let version: i64 = sqlx::query_scalar(statement!("version"))
            .fetch_one(pool)
            .await?;
        version_u64(version)
    }
}

#[async_trait]
impl OverrideStore for Database {
    async fn apply(&self, request: ChangeRequest<'_>) -> Result<u64> {
        on_backend!(self, apply(request))
    }

    async fn version(&self) -> Result<u64> {
        match self.backend() {
            // Beside the ledger's claims and ends (`group_commit`): a broker worker reads it
            // before each task.
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                version_u64(self.group_commit().overrides_version(pool).await?)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => postgres::version(pool).await,
        }
    }

    async fn snapshot(&self) -> Result<OverrideSnapshot> {
        // The counter first: a change committed after it is read shows up in the rows below
        // and again at the next poll, never not at all.
        let version = self.version().await?;
        on_backend!(self, snapshot(version))
    }

    async fn audit(&self, code: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(MAX_AUDIT_LIMIT));
        on_backend!(self, audit(code, limit))
    }
}
