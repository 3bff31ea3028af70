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
    /// A validation error on `field`.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
