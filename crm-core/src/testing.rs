//! Fresh databases for tests (cargo feature `testing`): every test gets its own, so tests run in
//! parallel without seeing each other's rows.
//!
//! ```no_run
//! # async fn demo() {
//! use crm_core::testing::TestDb;
//! let db = TestDb::sqlite().await; // a temp file, deleted when `db` is dropped
//! let pg = TestDb::postgres().await; // CREATE DATABASE crm_t_…, dropped with `pg`
//! # let _ = (db.database(), pg.url());
//! # }
//! ```

use std::str::FromStr;

mod needs;
mod promtool;
pub use needs::{LEAVE_OUT_ENV, LEFT_OUT_MARK, Need, left_out, missing, require, this_test};
pub use promtool::promtool_problems;

use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::database::{Backend, Database};
use crate::domain::CustomerId;
use crate::error::Result;
use crate::sql::to_micros;
use crate::url::redact_password;

/// The PostgreSQL server tests use when `CRM_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated database that exists as long as this value: a SQLite file in a temporary
/// directory, or a PostgreSQL database of its own that is dropped (`WITH (FORCE)`) on drop.
#[derive(Debug)]
pub struct TestDb {
    database: Database,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// Removing the directory removes the database file and its WAL.
    Sqlite(
        #[expect(dead_code, reason = "held for its Drop, which deletes the files")]
        tempfile::TempDir,
    ),
    /// The server URL to connect to, and the database to drop there.
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh, migrated SQLite database in a new temporary directory.
    ///
    /// # Panics
    /// When the temporary directory or the database cannot be created: a test cannot go on.
    pub async fn sqlite() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crm-test-")
            .tempdir()
            .expect("cannot create a temporary directory for a test database");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        let database = Database::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test database {url}: {e}"));
        Self {
            database,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh, migrated PostgreSQL database `crm_t_<random>` on the server named by
    /// `CRM_TEST_POSTGRES_URL` (default [`DEFAULT_TEST_POSTGRES_URL`]).
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached: tests that need it fail rather than pass unseen.
    pub async fn postgres() -> Self {
        let admin_url = std::env::var("CRM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        let name = format!("crm_t_{}_{:016x}", std::process::id(), fastrand::u64(..));
        let mut admin = connect_admin(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {} ({e}); these tests need it: start it, or set \
                 CRM_TEST_POSTGRES_URL",
                redact_password(&admin_url)
            )
        });
        // The name is ours (letters, digits, underscores), not user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        let cleanup = Cleanup::Postgres { admin_url, name };
        let database = match Database::connect(&url).await {
            Ok(db) => db,
            Err(e) => {
                drop_postgres(&cleanup);
                panic!("cannot open test database {}: {e}", redact_password(&url));
            }
        };
        Self {
            database,
            url,
            cleanup,
        }
    }

    /// Another fresh database on the same backend, for tests that compare two databases.
    pub async fn another(&self) -> Self {
        match self.cleanup {
            Cleanup::Sqlite(_) => Self::sqlite().await,
            Cleanup::Postgres { .. } => Self::postgres().await,
        }
    }

    /// The URL of this database (as `CRM_DATABASE_URL` would name it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The open, migrated database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Deletes one order (its product lines go with it), as another client of the database
    /// would: the store itself deletes orders only with their customer.
    pub async fn delete_order(&self, id: crate::OrderId) -> Result<()> {
        match self.database.backend() {
            Backend::Sqlite(pool) => {
                sqlx::query("DELETE FROM orders WHERE id = ?")
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query("DELETE FROM orders WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// How many rows `table` holds: for tests of tables the store keeps but does not show,
    /// such as the rows of changes folded by their readers.
    pub async fn rows_in(&self, table: &str) -> Result<i64> {
        assert!(
            table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "not a table name: {table}"
        );
        let sql = format!("SELECT count(*) FROM {table}");
        Ok(match self.database.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Sets when a restock idempotency key was taken, which the store otherwise takes from the
    /// wall clock: tests of its retention need keys months old.
    pub async fn set_restock_key_created_at(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        match self.database.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                sqlx::query("UPDATE restock_keys SET created_at_us = ? WHERE key = ?")
                    .bind(to_micros(at))
                    .bind(key)
                    .execute(pool)
                    .await?;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query("UPDATE restock_keys SET created_at = $1 WHERE key = $2")
                    .bind(at)
                    .bind(key)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets a customer's creation time, which the store otherwise takes from the wall clock:
    /// tests of the cleanup need customers created a year ago.
    pub async fn set_customer_created_at(&self, id: CustomerId, at: DateTime<Utc>) -> Result<()> {
        match self.database.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                sqlx::query("UPDATE customers SET created_at_us = ? WHERE id = ?")
                    .bind(to_micros(at))
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query("UPDATE customers SET created_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if matches!(self.cleanup, Cleanup::Postgres { .. }) {
            let database = self.database.clone();
            let cleanup = &self.cleanup;
            // Drop cannot await; a scoped thread runs the async cleanup to its end, so the
            // database is gone when the test returns.
            // Closing waits for checked-out connections; a task the test leaked could hold one
            // forever, so the wait is bounded (DROP … WITH (FORCE) ends what is left).
            std::thread::scope(|s| {
                s.spawn(|| {
                    let (done, timeout) = futures::channel::oneshot::channel::<()>();
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        done.send(()).ok();
                    });
                    futures::executor::block_on(futures::future::select(
                        Box::pin(database.close()),
                        timeout,
                    ));
                });
            });
            drop_postgres(cleanup);
        }
    }
}

fn drop_postgres(cleanup: &Cleanup) {
    let Cleanup::Postgres { admin_url, name } = cleanup else {
        return;
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            futures::executor::block_on(async {
                let result = async {
                    let mut admin = connect_admin(admin_url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                }
                .await;
                if let Err(e) = result {
                    eprintln!("warning: could not drop test database {name}: {e}");
                }
            });
        });
    });
}

async fn connect_admin(url: &str) -> std::result::Result<PgConnection, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    PgConnection::connect_with(&options).await
}

/// `url` with its database (the path) replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let path_start = rest
        .find(['/', '?'])
        .map_or(url.len(), |i| authority_start + i);
    let query_start = url[path_start..]
        .find('?')
        .map_or(url.len(), |i| path_start + i);
    format!("{}/{name}{}", &url[..path_start], &url[query_start..])
}

/// Writes `count` finished scheduled runs of job `code` straight into the run ledger, set-based
/// (100,000 rows per statement): the first starting at `first`, then one every `every`, each
/// lasting one second; every tenth failed, the others succeeded. For tests and benchmarks of
/// the ledger's retention, which need months of history in a moment. Returns the rows written.
pub async fn seed_finished_runs(
    db: &Database,
    code: &str,
    count: u64,
    first: DateTime<Utc>,
    every: chrono::TimeDelta,
) -> Result<u64> {
    const CHUNK: u64 = 100_000;
    let step = every.num_microseconds().unwrap_or(i64::MAX);
    let mut written = 0;
    while written < count {
        let n = (count - written).min(CHUNK);
        let start = to_micros(first) + step.saturating_mul(written as i64);
        let offset = written as i64;
        // One statement per chunk, as the backend writes it.
        macro_rules! insert_runs {
            ($pool:expr, $statement:literal) => {
                sqlx::query(include_str!($statement))
                    .bind(code)
                    .bind(n as i64)
                    .bind(start)
                    .bind(step)
                    .bind(offset)
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        written += match db.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => insert_runs!(pool, "testing/sqlite/seed_finished_runs.sql"),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                insert_runs!(pool, "testing/postgres/seed_finished_runs.sql")
            }
        };
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_test_database_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "crm_t_1"),
            "postgres://postgres@127.0.0.1:5432/crm_t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(with_database("postgres://h?a=b", "x"), "postgres://h/x?a=b");
    }
}
