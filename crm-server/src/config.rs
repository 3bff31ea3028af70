//! How the server is set up: where it listens, the token mutations need, and its limits.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::overrides::JobControl;

/// The address the contract names: `127.0.0.1:8000`.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// Where "now" comes from: the order date `createOrder` uses when none is given. Injected so
/// tests can fix the time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that always answers `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(move || at))
    }

    /// A clock reading `now` (for tests that move time along).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The server's settings. `Default` gives the contract's defaults and no token.
///
/// The CLI fills it from the environment: `CRM_API_TOKEN` becomes `api_token`.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port ([`crate::BoundServer::local_addr`] tells
    /// which). Default `127.0.0.1:8000`.
    pub bind: SocketAddr,
    /// When set, every mutation needs `Authorization: Bearer <token>`; queries stay open.
    pub api_token: Option<String>,
    /// With a token set, also refuse queries without it (HTTP 401), not only mutations.
    /// `GET /graphql` (GraphiQL's page) and `/healthz` stay open. Default `false`: queries are
    /// open, as in the original.
    pub token_for_queries: bool,
    /// Largest request body accepted, in bytes; larger ones get HTTP 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Deepest nesting of a GraphQL document (selection sets, fragments, input values).
    /// Default 20: deep enough for GraphiQL's introspection query.
    pub max_depth: usize,
    /// Most rows a list returns at once (`CRM_MAX_PAGE_SIZE`, `--max-page-size`); `first` above
    /// it is a `VALIDATION` error naming it, and it is the page size when `first` is absent, so
    /// a client that leaves the size to the server (the jobs do) reads the largest pages
    /// allowed. Default 1,000: with keyset cursors a page costs the same wherever it starts,
    /// and 1,000 rows keep one answer near a megabyte. Keep it at most
    /// `max_rows_per_request`, or a list without `first` is refused.
    pub max_page_size: u64,
    /// Most customers one `bulkCreateCustomers` call takes. Default 1,000.
    pub max_bulk_customers: usize,
    /// Most list rows one request (a whole batch) may ask for, summed over its lists' page
    /// sizes (`first`, or the page size when absent) (`CRM_MAX_ROWS_PER_REQUEST`,
    /// `--max-rows-per-request`): a bound on the work one request can cause. Without it, a 10 KB document of 1,000 aliases of `allCustomers(first: 100)`
    /// reads 100,000 rows (3.5 s of server time in a debug build). Default 5,000.
    pub max_rows_per_request: u64,
    /// Longest a connection may keep the server waiting for its next bytes (a stalled or
    /// trickled body, an idle keep-alive connection) before it is closed. Default 30 s.
    pub idle_timeout: std::time::Duration,
    /// Where "now" comes from.
    pub clock: Clock,
    /// The scheduled jobs whose health `/status` and the `jobs` queries show (their schedules
    /// and the ledger they record into); `None` serves no job information.
    pub jobs: Option<Arc<crm_jobs::Runner>>,
    /// The scheduled jobs' run-time controls behind `setJobEnabled`, `setJobSchedule` and
    /// `scheduleJobRun` (the jobs crate's runner over the same database). Without it those
    /// mutations answer that job control is not configured. Default none.
    pub job_control: Option<Arc<dyn JobControl>>,
    /// Write a page's edges straight to JSON rather than through juniper's executor field by
    /// field (a 100-order page took 6.5 M instructions instead of 10.6 M; BENCHMARKS.md).
    /// Default `true`. `false` answers every
    /// request through juniper alone: the same answers, slower; the tests compare the two.
    pub prerender_pages: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND
                .parse()
                .expect("the default bind address parses"),
            api_token: None,
            token_for_queries: false,
            max_body_bytes: 1024 * 1024,
            max_depth: 20,
            max_page_size: 1_000,
            max_bulk_customers: 1_000,
            max_rows_per_request: 5_000,
            idle_timeout: std::time::Duration::from_secs(30),
            clock: Clock::system(),
            jobs: None,
            job_control: None,
            prerender_pages: true,
        }
    }
}

impl fmt::Debug for ServerConfig {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("token_for_queries", &self.token_for_queries)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_depth", &self.max_depth)
            .field("max_page_size", &self.max_page_size)
            .field("max_bulk_customers", &self.max_bulk_customers)
            .field("max_rows_per_request", &self.max_rows_per_request)
            .field("idle_timeout", &self.idle_timeout)
            .field("jobs", &self.jobs.as_ref().map(|r| r.codes().count()))
            .field("job_control", &self.job_control.is_some())
            .field("prerender_pages", &self.prerender_pages)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let config = ServerConfig {
            api_token: Some("s3cret-token".into()),
            ..ServerConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn the_default_address_is_the_contracts() {
        assert_eq!(ServerConfig::default().bind.to_string(), "127.0.0.1:8000");
    }
}
