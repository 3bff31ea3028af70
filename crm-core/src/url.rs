//! Database URLs: which backend a URL names, and its text with the password hidden. Free of any
//! driver, so configuration can be checked and logged by a build without the store features.

use crate::error::{CoreError, Result};

/// The URL used when none is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://crm.db";

/// The backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlScheme {
    /// `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:` (feature `sqlite`).
    Sqlite,
    /// `postgres://…` or `postgresql://…` (feature `postgres`).
    Postgres,
}

impl UrlScheme {
    /// The backend `url` names, or [`CoreError::InvalidUrl`] (the password hidden) when it names
    /// none this crate knows.
    pub fn of(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(CoreError::InvalidUrl(format!(
                "'{}' is neither sqlite:… nor postgres://…",
                redact_password(url)
            )))
        }
    }

    /// The name of the Cargo feature that compiles this backend's store.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The URL with any password replaced by `***`, for error messages and logs.
pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `message` about `url`, prefixed with the URL, its password hidden.
#[cfg(feature = "postgres")]
pub(crate) fn redact(url: &str, message: &str) -> String {
    format!("{}: {message}", redact_password(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact_password("postgres://bob:s3cret@db:5432/crm"),
            "postgres://bob:***@db:5432/crm"
        );
        assert_eq!(
            redact_password("postgres://bob@db/crm"),
            "postgres://bob@db/crm"
        );
        assert_eq!(redact_password("sqlite://crm.db"), "sqlite://crm.db");
    }

    #[test]
    fn a_url_names_its_backend_or_is_refused_without_its_password() {
        assert_eq!(UrlScheme::of("sqlite::memory:").unwrap(), UrlScheme::Sqlite);
        assert_eq!(
            UrlScheme::of("postgresql://h/crm").unwrap(),
            UrlScheme::Postgres
        );
        let refused = UrlScheme::of("mysql://bob:s3cret@h/crm").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "invalid database URL: 'mysql://bob:***@h/crm' is neither sqlite:… nor postgres://…"
        );
    }
}
