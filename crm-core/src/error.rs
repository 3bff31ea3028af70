//! The one error type of `crm-core`.

/// What can go wrong in the domain or its storage.
///
/// Callers tell the cases apart to answer users well: a [`CoreError::Validation`] or
/// [`CoreError::Conflict`] is the caller's to fix, [`CoreError::NotFound`] names what is missing,
/// and [`CoreError::Storage`] is ours (its text is for operators' logs, not for API clients).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Input broke a domain rule; the message says which, in words a user can act on.
    #[error("{field}: {message}")]
    Validation {
        /// The input field at fault (`email`, `price`, `productIds`…).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A referenced record does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `customer`, `product` or `order`.
        entity: &'static str,
        /// The identifier that was looked up.
        id: String,
    },
    /// The write would break a uniqueness rule (a duplicate e-mail, in any letter case).
    #[error("{0}")]
    Conflict(String),
    /// The database URL could not be understood.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database failed or could not be reached; nothing was written.
    #[error("storage failure: {0}")]
    Storage(#[source] StorageError),
    /// Applying the schema migrations failed.
    #[error("migration failure: {0}")]
    Migration(#[source] StorageError),
}

impl CoreError {
    /// Whether the database could not be reached or was too busy to answer (see
    /// [`StorageError::is_unavailable`]). Such a failure is passing: the same request may well
    /// succeed shortly, so the API tells its clients to try again rather than report an
    /// internal error.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CoreError::Storage(error) if error.is_unavailable())
    }

    /// A validation error on `field`.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }
}

/// A failure of the database under a store, opaque so that no driver type reaches the public
/// API: `crm-core` without its store features builds without sqlx, and an app that implements
/// the storage traits over its own database reports its failures with the same type.
///
/// Its text is the driver's own message, for operators' logs.
pub struct StorageError {
    unavailable: bool,
    cause: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl StorageError {
    /// A failure that trying again will not mend (a constraint, a corrupted row, a bug).
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            unavailable: false,
            cause: cause.into(),
        }
    }

    /// A database that could not be reached or was too busy to answer: see
    /// [`Self::is_unavailable`].
    pub fn unavailable(
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            unavailable: true,
            cause: cause.into(),
        }
    }

    /// Whether the database could not be reached or was too busy to answer: the pool found no
    /// connection in time, the connection broke or was ended by the server (PostgreSQL
    /// restarting, `pg_terminate_backend`), or SQLite stayed locked by another writer past the
    /// busy timeout. The same request may well succeed shortly.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl std::fmt::Debug for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageError")
            .field("unavailable", &self.unavailable)
            .field("cause", &self.cause)
            .finish()
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for StorageError {
    /// The cause's own cause: the text of the cause is already this error's.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

#[cfg(feature = "_store")]
impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = sqlx_unavailable(&error);
        if unavailable {
            note_unavailable();
        }
        Self {
            unavailable,
            cause: Box::new(error),
        }
    }
}

/// Since when [`UNAVAILABLE_AT`] counts.
#[cfg(feature = "_store")]
static EPOCH: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

/// When this process last met a database out of reach, in nanoseconds after [`EPOCH`], plus
/// one (0: never). Process-wide because errors become [`StorageError`]s far from their pool; a
/// false alarm costs no more than a ping.
#[cfg(feature = "_store")]
static UNAVAILABLE_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records that a database was just found out of reach (see [`unavailable_met_since`]).
#[cfg(feature = "_store")]
pub(crate) fn note_unavailable() {
    let now = u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
    UNAVAILABLE_AT.fetch_max(now + 1, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process has met a database out of reach at or after `since`: what ended one
/// connection (a restart, `pg_terminate_backend`) may have ended the others idle since then.
#[cfg(feature = "_store")]
pub(crate) fn unavailable_met_since(since: std::time::Instant) -> bool {
    match UNAVAILABLE_AT.load(std::sync::atomic::Ordering::Relaxed) {
        0 => false,
        at => *EPOCH + std::time::Duration::from_nanos(at - 1) >= since,
    }
}

#[cfg(feature = "_store")]
impl From<sqlx::Error> for CoreError {
    fn from(error: sqlx::Error) -> Self {
        CoreError::Storage(error.into())
    }
}

#[cfg(feature = "_store")]
impl From<sqlx::migrate::MigrateError> for CoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        CoreError::Migration(StorageError::new(error))
    }
}

/// Whether sqlx's error says the database is out of reach or busy (see
/// [`StorageError::is_unavailable`]).
#[cfg(feature = "_store")]
pub(crate) fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        // Not `PoolClosed`: that is this process shutting its own pool, not an outage.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        #[cfg(feature = "sqlite")]
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            is_sqlite_busy(db.as_ref())
        }
        sqlx::Error::Database(db) => {
            // PostgreSQL: class 08 (connection exception), 57P01-57P03 (admin shutdown, crash
            // shutdown, cannot connect now).
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// Whether a SQLite error is SQLITE_BUSY (5) or SQLITE_LOCKED (6), or one of their extended
/// codes: another connection holds the lock.
#[cfg(feature = "sqlite")]
pub(crate) fn is_sqlite_busy(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|n| matches!(n & 0xff, 5 | 6))
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[cfg(all(test, feature = "_store"))]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_or_dropped_database_is_unavailable_and_other_failures_are_not() {
        let unavailable = [
            CoreError::from(sqlx::Error::PoolTimedOut),
            CoreError::from(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        ];
        for error in &unavailable {
            assert!(error.is_unavailable(), "{error}");
        }
        let not = [
            CoreError::from(sqlx::Error::PoolClosed),
            CoreError::from(sqlx::Error::RowNotFound),
            CoreError::validation("email", "bad"),
            CoreError::Conflict("taken".into()),
        ];
        for error in &not {
            assert!(!error.is_unavailable(), "{error}");
        }
    }
}
