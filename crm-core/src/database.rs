//! Opening the database a URL names, and keeping its schema current.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
#[cfg(feature = "postgres")]
use sqlx::Connection;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{CoreError, Result};
use crate::url::UrlScheme;

#[cfg(feature = "sqlite")]
/// How long a SQLite writer waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "postgres")]
/// How long a request waits for a PostgreSQL connection (the pool reconnecting after the
/// server dropped its connections, or the server down) before failing with "unavailable".
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "postgres")]
/// How long a pooled PostgreSQL connection sits idle before it is pinged when lent again.
const POSTGRES_PING_IDLE_AFTER: Duration = Duration::from_secs(1);

#[cfg(feature = "postgres")]
/// How long the one direct connection attempt made after the pool timed out at start may take.
const DIRECT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A migration embedded in the binary, so an installed `crm` needs no files beside it.
struct Embedded {
    version: i64,
    description: &'static str,
    sql: &'static str,
    /// Runs outside sqlx's transaction: the file manages its own (SQLite's table rebuilds
    /// must turn foreign keys off, which a transaction ignores).
    no_tx: bool,
}

/// The migrations of each backend, oldest first, listed by `build.rs` from
/// `migrations/{sqlite,postgres}/NNNN_description.sql`: a new migration is a new file. An
/// applied one is never edited (sqlx checks its checksum, the hash of the file's text). A file
/// that opens its own transaction runs outside sqlx's (see `build.rs`).
#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: &[Embedded] = include!(concat!(env!("OUT_DIR"), "/sqlite_migrations.rs"));
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: &[Embedded] =
    include!(concat!(env!("OUT_DIR"), "/postgres_migrations.rs"));

#[derive(Debug)]
struct EmbeddedSource(&'static [Embedded]);

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}_{}", self.version, self.description)
    }
}

impl MigrationSource<'static> for EmbeddedSource {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(m.sql),
                    m.no_tx,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// A connection pool to the CRM's database: SQLite (the embedded default) or PostgreSQL.
///
/// Cheap to clone (the pools are reference-counted). [`crate::CrmStore`] is implemented on it.
/// On a SQLite file it also opens, at the first claim or end of a run, one connection beside
/// the pool, on which the run ledger commits the claims and ends its clones make at the same
/// moment together (SQLite takes one writer at a time).
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
    /// The ledger's claims and ends made at the same moment in this process, committed together
    /// (SQLite's one writer at a time; see [`crate::ledger`]'s `group_commit`).
    #[cfg(feature = "sqlite")]
    group_commit: std::sync::Arc<crate::ledger::GroupCommit>,
}

/// The pool of the backend in use. Crate-internal modules match on it to run their SQL.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// Runs `sqlite::PATH(pool, ARGS)` or `postgres::PATH(pool, ARGS)` (modules in scope where it is
/// used) on the backend of `$db`, and awaits it: how each store hands an operation written once
/// for both backends (`crm_store_on_sql!`, `override_store_on_sql!`…) its pool.
macro_rules! on_backend {
    ($db:expr, $($path:ident).+ ($($arg:expr),*)) => {
        match $db.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlite::$($path).+(pool $(, $arg)*).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => postgres::$($path).+(pool $(, $arg)*).await,
        }
    };
}
pub(crate) use on_backend;

impl Database {
    /// Opens the database `url` names and applies any pending migrations (idempotent).
    ///
    /// `sqlite://PATH` (or `sqlite:PATH`) opens or creates a file, readable by its owner only
    /// since it holds customers' e-mail addresses, in WAL mode with a busy timeout;
    /// `sqlite::memory:` an in-memory database for tests; `postgres://…` a PostgreSQL pool.
    pub async fn connect(url: &str) -> Result<Self> {
        let db = Self::open(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Opens the database without migrating it.
    ///
    /// A URL of a backend this build was compiled without is an [`CoreError::InvalidUrl`] that
    /// names the missing feature.
    pub async fn open(url: &str) -> Result<Self> {
        let backend = match UrlScheme::of(url)? {
            #[cfg(feature = "sqlite")]
            UrlScheme::Sqlite => Backend::Sqlite(open_sqlite(url).await?),
            #[cfg(feature = "postgres")]
            UrlScheme::Postgres => Backend::Postgres(open_postgres(url).await?),
            #[allow(unreachable_patterns)]
            scheme => {
                return Err(CoreError::InvalidUrl(format!(
                    "{}: this build of crm-core has no `{}` feature",
                    crate::url::redact_password(url),
                    scheme.feature()
                )));
            }
        };
        #[cfg(feature = "sqlite")]
        let group_commit = std::sync::Arc::new(match &backend {
            Backend::Sqlite(pool) if !sqlite_in_memory(url) => {
                crate::ledger::GroupCommit::with_own_connection(pool)
            }
            // An in-memory database lives in the pool's one connection (PostgreSQL does not
            // use it).
            _ => crate::ledger::GroupCommit::on_pool(),
        });
        Ok(Self {
            backend,
            #[cfg(feature = "sqlite")]
            group_commit,
        })
    }

    /// Creates or upgrades the schema. Safe to run again, and from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => migrate_sqlite(pool).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                Migrator::new(EmbeddedSource(POSTGRES_MIGRATIONS))
                    .await?
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection; waits for queries in flight.
    pub async fn close(&self) {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                self.group_commit.close().await;
                pool.close().await;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn group_commit(&self) -> &crate::ledger::GroupCommit {
        &self.group_commit
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<PgPool> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|e| CoreError::InvalidUrl(crate::url::redact(url, &e.to_string())))?;
    let pool = match PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        // sqlx pings a connection before lending it: a round trip to the server before every
        // statement. Under load a connection comes back and goes out again within
        // microseconds, so only one idle long enough for the server to have dropped it (a
        // restart, an administrator's pg_terminate_backend) is pinged first, and so is one
        // idle since a statement of this process met an ended connection: whatever ended that
        // one may have ended it too, and a statement tried again (a run's end) must get one
        // that works.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                let idle_since = std::time::Instant::now().checked_sub(meta.idle_for);
                if meta.idle_for >= POSTGRES_PING_IDLE_AFTER
                    || idle_since.is_none_or(crate::error::unavailable_met_since)
                {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.clone())
        .await
    {
        Ok(pool) => pool,
        // The pool retries a refused connection until its timeout and then reports
        // only "timed out"; one direct attempt tells the operator why. That attempt is
        // bounded too: a server that accepts and never answers (a network partition,
        // a hung proxy) would otherwise keep `crm` from starting, and from exiting.
        Err(sqlx::Error::PoolTimedOut) => {
            let attempt = PgConnection::connect_with(&options);
            let timer = async_io::Timer::after(DIRECT_CONNECT_TIMEOUT);
            futures::pin_mut!(attempt);
            return Err(match futures::future::select(attempt, timer).await {
                futures::future::Either::Left((Err(cause), _)) => CoreError::from(cause),
                futures::future::Either::Left((Ok(_), _)) => {
                    CoreError::from(sqlx::Error::PoolTimedOut)
                }
                futures::future::Either::Right(_) => {
                    CoreError::from(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer from the server within {} s",
                            (POSTGRES_ACQUIRE_TIMEOUT + DIRECT_CONNECT_TIMEOUT).as_secs()
                        ),
                    )))
                }
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(pool)
}

/// Whether a SQLite URL names an in-memory database, which lives in one connection.
#[cfg(feature = "sqlite")]
fn sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| CoreError::InvalidUrl(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        // SQLite's default page cache is 2 MiB: the cleanup's cascades over a large database
        // then spill to disk again and again. 32 MiB per connection keeps them in memory.
        .pragma("cache_size", "-32768")
        // Rows cross from SQLite's worker thread in batches of this many; the default (50)
        // costs a thread hand-off every 50 rows of a large result such as the reminders'.
        .row_buffer_size(1024);
    let in_memory = sqlite_in_memory(url);
    if !in_memory {
        create_private_file(options.get_filename())?;
    }
    let pool_options = SqlitePoolOptions::new()
        // An in-memory database lives in one connection; a file is shared by several readers
        // and one writer at a time (WAL).
        .max_connections(if in_memory { 1 } else { 8 })
        .min_connections(if in_memory { 1 } else { 0 })
        .idle_timeout(if in_memory {
            None
        } else {
            Some(Duration::from_secs(600))
        })
        .max_lifetime(if in_memory {
            None
        } else {
            Some(Duration::from_secs(3600))
        })
        .acquire_timeout(Duration::from_secs(30))
        // sqlx pings a connection before lending it, which is a round trip to the
        // connection's worker thread before every statement: a third of a page's thread
        // hand-offs. A connection to a file it opened itself cannot go stale the way a
        // network connection does, and a worker that died fails the statement with an error.
        .test_before_acquire(false);
    // The first connection to a new file switches it to WAL, which needs the file to itself for
    // a moment; SQLite answers "database is locked" at once, without waiting the busy timeout,
    // when another process is opening the same new file (`crm serve` and `crm worker` started
    // together). The mode is kept in the file, so trying again shortly gets through.
    let mut waited = Duration::ZERO;
    loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(e))
                if crate::error::is_sqlite_busy(e.as_ref()) && waited < SQLITE_BUSY_TIMEOUT =>
            {
                async_io::Timer::after(SQLITE_OPEN_RETRY).await;
                waited += SQLITE_OPEN_RETRY;
            }
            opened => return Ok(opened?),
        }
    }
}

#[cfg(feature = "sqlite")]
/// How long an open that found a new SQLite file locked waits before trying again.
const SQLITE_OPEN_RETRY: Duration = Duration::from_millis(20);

#[cfg(feature = "sqlite")]
/// How many times a SQLite migration that failed is tried again (see [`migrate_sqlite`]).
const SQLITE_MIGRATION_ATTEMPTS: u32 = 20;

/// Runs the SQLite migrations, again if another process was migrating the same file at the
/// same moment (`crm serve` and `crm worker` started together on a new or upgraded database).
/// sqlx has no lock for SQLite's migrator, so the later process failed on a table the first had
/// just created, or on the bookkeeping row it had just written. After such a failure this waits
/// for the other writer's transaction to end (SQLite's busy timeout) and runs the migrator
/// again, which then finds the work done or continues it.
#[cfg(feature = "sqlite")]
async fn migrate_sqlite(pool: &SqlitePool) -> Result<()> {
    use sqlx::migrate::MigrateError;
    let mut attempt = 1;
    loop {
        let outcome = Migrator::new(EmbeddedSource(SQLITE_MIGRATIONS))
            .await?
            .run(pool)
            .await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(error @ (MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)))
                if attempt < SQLITE_MIGRATION_ATTEMPTS =>
            {
                tracing::debug!(%error, attempt, "SQLite migration failed; another process may be migrating: trying again");
                attempt += 1;
                let mut conn = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Creates the SQLite file with mode 0600 before SQLite does (it would use 0644): the file
/// holds personal data. An existing file is left as it is.
#[cfg(feature = "sqlite")]
fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::fs::OpenOptions;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CoreError::from(sqlx::Error::Io(e))),
    }
}
