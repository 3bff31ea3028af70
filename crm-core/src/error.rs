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
    Storage(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failure: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl CoreError {
    /// Whether the database could not be reached or was too busy to answer: the pool found no
    /// connection in time, the connection broke or was ended by the server (PostgreSQL
    /// restarting, `pg_terminate_backend`), or SQLite stayed locked by another writer past the
    /// busy timeout. Such a failure is passing: the same request may well succeed shortly, so
    /// the API tells its clients to try again rather than report an internal error.
    pub fn is_unavailable(&self) -> bool {
        let CoreError::Storage(error) = self else {
            return false;
        };
        match error {
            // Not `PoolClosed`: that is this process shutting its own pool, not an outage.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    is_sqlite_busy(db.as_ref())
                } else {
                    // PostgreSQL: class 08 (connection exception), 57P01-57P03 (admin
                    // shutdown, crash shutdown, cannot connect now).
                    let code = db.code();
                    let code = code.as_deref().unwrap_or_default();
                    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
                }
            }
            _ => false,
        }
    }

    /// A validation error on `field`.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }
}

/// Whether a SQLite error is SQLITE_BUSY (5) or SQLITE_LOCKED (6), or one of their extended
/// codes: another connection holds the lock.
pub(crate) fn is_sqlite_busy(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|n| matches!(n & 0xff, 5 | 6))
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_or_dropped_database_is_unavailable_and_other_failures_are_not() {
        let unavailable = [
            CoreError::Storage(sqlx::Error::PoolTimedOut),
            CoreError::Storage(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        ];
        for error in &unavailable {
            assert!(error.is_unavailable(), "{error}");
        }
        let not = [
            CoreError::Storage(sqlx::Error::PoolClosed),
            CoreError::Storage(sqlx::Error::RowNotFound),
            CoreError::validation("email", "bad"),
            CoreError::Conflict("taken".into()),
        ];
        for error in &not {
            assert!(!error.is_unavailable(), "{error}");
        }
    }
}
