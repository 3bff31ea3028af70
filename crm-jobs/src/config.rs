//! What the five jobs need to know about their surroundings, read from the environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

/// The GraphQL endpoint used when `CRM_GRAPHQL_URL` is not set (the original's).
pub const DEFAULT_GRAPHQL_URL: &str = "http://localhost:8000/graphql";
/// The log directory used when `CRM_LOG_DIR` is not set (the original's).
pub const DEFAULT_LOG_DIR: &str = "/tmp";
/// How long one GraphQL request may take, connection to last byte, by default.
pub const DEFAULT_GRAPHQL_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of the five jobs.
///
/// | variable | field | default |
/// |---|---|---|
/// | `CRM_GRAPHQL_URL` | [`graphql_url`](Self::graphql_url) | `http://localhost:8000/graphql` |
/// | `CRM_API_TOKEN` | [`api_token`](Self::api_token) | none (no `Authorization` header) |
/// | `CRM_LOG_DIR` | [`log_dir`](Self::log_dir) | `/tmp` |
/// | `CRM_TIME_ZONE` | [`time_zone`](Self::time_zone) | the zone `TZ` names (as most Unix programs read it: `Europe/Paris`, `:Europe/Paris`, a zoneinfo path), else the machine's (`/etc/localtime`, then `/etc/timezone`), else UTC |
/// | `CRM_JOB_LEASE` | [`lease`](Self::lease) | 60 (seconds) |
/// | `CRM_CA_FILE` | [`ca_file`](Self::ca_file) | none (the system's roots only) |
///
/// An empty variable counts as unset. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobsConfig {
    /// Where the GraphQL jobs send their queries.
    pub graphql_url: String,
    /// Sent as `Authorization: Bearer <token>` when set (the server requires it for mutations
    /// when it is configured with one).
    pub api_token: Option<String>,
    /// The directory holding the jobs' log files (the file names are fixed).
    pub log_dir: PathBuf,
    /// The zone log timestamps are written in (an IANA zone).
    pub time_zone: Tz,
    /// How long one GraphQL request may take before it counts as "not responding".
    pub graphql_timeout: Duration,
    /// How long a run's claim holds unless renewed (the runner renews it every third of
    /// this): a run whose process was killed is marked abandoned, and its tick run again, this
    /// long after its last renewal. The default (60 s) suits most machines; operators whose
    /// jobs are short and who want a crashed run retried sooner set a few seconds (the
    /// kill -9 tests use 1 s). From 1 second to 1 day.
    pub lease: Duration,
    /// A PEM file of CA certificates trusted for an `https://` GraphQL URL (and by the `crm`
    /// binary for the alert webhook) besides the system's roots: a private CA.
    pub ca_file: Option<PathBuf>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `CRM_TIME_ZONE` is not an IANA zone name.
    #[error("CRM_TIME_ZONE: '{0}' is not an IANA time zone (e.g. Europe/Paris, UTC)")]
    TimeZone(String),
    /// `CRM_TIME_ZONE` is unset and `TZ` names no IANA zone (a POSIX rule such as `EST+5`).
    #[error(
        "TZ: '{0}' names no IANA time zone (e.g. Europe/Paris); set CRM_TIME_ZONE to one, or \
         unset TZ to use the machine's zone"
    )]
    Tz(String),
    /// `CRM_API_TOKEN` holds characters an HTTP header cannot carry (its value is not shown).
    #[error("CRM_API_TOKEN: must be printable ASCII without spaces")]
    ApiToken,
    /// `CRM_GRAPHQL_URL` is not an http:// or https:// URL.
    #[error("CRM_GRAPHQL_URL: '{0}' is not an http:// or https:// URL")]
    GraphqlUrl(String),
    /// `CRM_JOB_LEASE` is not a whole number of seconds from 1 to 86400.
    #[error("CRM_JOB_LEASE: '{0}' is not a number of seconds from 1 to 86400")]
    Lease(String),
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            graphql_url: DEFAULT_GRAPHQL_URL.to_owned(),
            api_token: None,
            log_dir: PathBuf::from(DEFAULT_LOG_DIR),
            time_zone: machine_time_zone(),
            graphql_timeout: DEFAULT_GRAPHQL_TIMEOUT,
            lease: crate::runner::DEFAULT_LEASE,
            ca_file: None,
        }
    }
}

impl fmt::Debug for JobsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsConfig")
            .field("graphql_url", &self.graphql_url)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("log_dir", &self.log_dir)
            .field("time_zone", &self.time_zone)
            .field("graphql_timeout", &self.graphql_timeout)
            .field("lease", &self.lease)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl JobsConfig {
    /// The log file `file_name` in [`log_dir`](Self::log_dir), its lines stamped in
    /// [`time_zone`](Self::time_zone): where each job appends its line.
    pub fn log_file(&self, file_name: &str) -> crate::LogFile {
        crate::LogFile::new(&self.log_dir, file_name, self.time_zone)
    }

    /// Reads the variables in the table above from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (a name to its value), so callers and tests can
    /// supply them without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(url) = get("CRM_GRAPHQL_URL") {
            config = config.with_graphql_url(&url)?;
        }
        if let Some(token) = get("CRM_API_TOKEN") {
            let token = token.trim();
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::ApiToken);
            }
            config.api_token = Some(token.to_owned());
        }
        if let Some(dir) = get("CRM_LOG_DIR") {
            config.log_dir = PathBuf::from(dir);
        }
        if let Some(zone) = get("CRM_TIME_ZONE") {
            config.time_zone = parse_time_zone(&zone)?;
        } else if let Some(tz) = lookup(crate::TZ_ENV)
            && let Some(zone) =
                crate::tz_variable_zone(&tz).map_err(|_| ConfigError::Tz(tz.clone()))?
        {
            config.time_zone = zone;
        }
        if let Some(lease) = get("CRM_JOB_LEASE") {
            config.lease = match lease.trim().parse::<u64>() {
                Ok(secs @ 1..=86_400) => Duration::from_secs(secs),
                _ => return Err(ConfigError::Lease(lease)),
            };
        }
        if let Some(file) = get("CRM_CA_FILE") {
            config.ca_file = Some(PathBuf::from(file));
        }
        Ok(config)
    }

    /// This configuration with another GraphQL endpoint, checked to be an `http://` or
    /// `https://` URL (the same check the GraphQL client makes, so a configuration that loads
    /// gives a working client).
    pub fn with_graphql_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let url = url.trim();
        if is_http_url(url) {
            self.graphql_url = url.to_owned();
            Ok(self)
        } else {
            Err(ConfigError::GraphqlUrl(crm_core::redact_password(url)))
        }
    }

    /// This configuration with a private CA file trusted for https (`None`: the system's roots
    /// only).
    pub fn with_ca_file(mut self, file: Option<PathBuf>) -> Self {
        self.ca_file = file;
        self
    }

    /// This configuration with another log directory.
    pub fn with_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = dir.into();
        self
    }

    /// This configuration with another API token (`None`: send no `Authorization` header).
    pub fn with_api_token(mut self, token: Option<String>) -> Self {
        self.api_token = token;
        self
    }

    /// This configuration with another time zone for log timestamps.
    pub fn with_time_zone(mut self, zone: Tz) -> Self {
        self.time_zone = zone;
        self
    }

    /// This configuration with another GraphQL request timeout.
    pub fn with_graphql_timeout(mut self, timeout: Duration) -> Self {
        self.graphql_timeout = timeout;
        self
    }
}

/// An IANA zone name (`Europe/Paris`, `UTC`) as a zone, or the error naming the variable.
pub(crate) fn parse_time_zone(name: &str) -> Result<Tz, ConfigError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ConfigError::TimeZone(name.to_owned()))
}

/// The machine's IANA zone ([`crate::machine_time_zone`]), or UTC when it has none we know.
pub(crate) fn machine_time_zone() -> Tz {
    crate::machine_time_zone().unwrap_or(Tz::UTC)
}

/// Whether `url` is an `http://` or `https://` URL with a host: parsed as the client will parse it when the
/// client is compiled in (feature `graphql-surf` or `graphql-tokio`), else checked by its shape
/// (no URL parser is worth its dependencies for a setting nothing reads).
#[cfg(feature = "graphql")]
fn is_http_url(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.has_host())
}

#[cfg(not(feature = "graphql"))]
fn is_http_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '?', '#']))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<JobsConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        JobsConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = config(&[]).unwrap();
        assert_eq!(c.graphql_url, "http://localhost:8000/graphql");
        assert_eq!(c.log_dir, PathBuf::from("/tmp"));
        assert_eq!(c.api_token, None);
        assert_eq!(c.time_zone, machine_time_zone());
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            ("CRM_GRAPHQL_URL", "http://127.0.0.1:9000/graphql/"),
            ("CRM_API_TOKEN", "s3cret"),
            ("CRM_LOG_DIR", "/var/log/crm"),
            ("CRM_TIME_ZONE", "Africa/Cairo"),
            ("CRM_JOB_LEASE", "5"),
        ])
        .unwrap();
        assert_eq!(c.lease, Duration::from_secs(5));
        assert_eq!(c.graphql_url, "http://127.0.0.1:9000/graphql/");
        assert_eq!(c.api_token.as_deref(), Some("s3cret"));
        assert_eq!(c.log_dir, PathBuf::from("/var/log/crm"));
        assert_eq!(c.time_zone, chrono_tz::Africa::Cairo);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let c = config(&[("CRM_API_TOKEN", ""), ("CRM_LOG_DIR", " ")]).unwrap();
        assert_eq!(c.api_token, None);
        assert_eq!(c.log_dir, PathBuf::from("/tmp"));
    }

    #[test]
    fn tz_gives_the_zone_unless_crm_time_zone_is_set() {
        let c = config(&[("TZ", ":Asia/Tokyo")]).unwrap();
        assert_eq!(c.time_zone, Tz::Asia__Tokyo);
        let c = config(&[("TZ", "Asia/Tokyo"), ("CRM_TIME_ZONE", "Africa/Cairo")]).unwrap();
        assert_eq!(c.time_zone, Tz::Africa__Cairo);
        let c = config(&[("TZ", "")]).unwrap();
        assert_eq!(c.time_zone, machine_time_zone());
        let err = config(&[("TZ", "EST+5")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TZ: 'EST+5' names no IANA time zone (e.g. Europe/Paris); set CRM_TIME_ZONE to one, \
             or unset TZ to use the machine's zone"
        );
    }

    #[test]
    fn an_unknown_time_zone_is_a_clear_error() {
        let err = config(&[("CRM_TIME_ZONE", "Mars/Olympus")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CRM_TIME_ZONE: 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Paris, UTC)"
        );
    }

    #[test]
    fn a_graphql_url_without_http_is_refused() {
        for bad in [
            "localhost:8000/graphql",
            "http://",
            "http://exa mple/graphql",
            "ftp://x/",
        ] {
            let err = config(&[("CRM_GRAPHQL_URL", bad)]).unwrap_err();
            assert!(matches!(err, ConfigError::GraphqlUrl(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn a_refused_url_never_shows_its_password() {
        let err = config(&[("CRM_GRAPHQL_URL", "ftp://bob:hunter2@x/")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_token_http_cannot_carry_is_refused_without_showing_it() {
        let err = config(&[("CRM_API_TOKEN", "tök en")]).unwrap_err();
        assert!(matches!(err, ConfigError::ApiToken));
        assert!(!err.to_string().contains("tök"));
    }

    #[test]
    fn a_lease_outside_one_second_to_one_day_is_refused() {
        for bad in ["0", "86401", "-1", "1.5", "soon"] {
            let err = config(&[("CRM_JOB_LEASE", bad)]).unwrap_err();
            assert!(matches!(err, ConfigError::Lease(_)), "{bad}: {err}");
        }
        assert_eq!(config(&[]).unwrap().lease, Duration::from_secs(60));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let c = config(&[("CRM_API_TOKEN", "s3cret-token")]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
