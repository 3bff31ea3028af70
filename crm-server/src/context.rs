//! The per-request context: the store, whether mutations are allowed, the limits, and the
//! report's totals read once per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_std::sync::Mutex;
use crm_core::overrides::JobControl;
use crm_core::{CrmStore, Totals};
use juniper::SchemaType;

use crate::config::{Clock, ServerConfig};
use crate::error::ApiError;
use crate::metrics::HttpStats;
use crate::scalar_value::CrmScalar;

/// What every resolver of one request sees.
pub struct Context {
    store: Arc<dyn CrmStore>,
    write_access: WriteAccess,
    /// The server's limits, clock and jobs, shared by every request.
    config: Arc<ServerConfig>,
    /// List rows this request may still ask for (see [`Context::charge_rows`]).
    rows_left: AtomicU64,
    totals: Mutex<Option<Totals>>,
    /// The request's document, when its pages may be written straight to JSON once it is
    /// checked (see [`Context::allow_prerender`]).
    document: Option<String>,
    /// Whether they may: checked the first time a page asks, so a request without a page
    /// never parses its document a second time.
    prerender: OnceLock<bool>,
    /// The server's request counters, where pages are counted.
    stats: Arc<HttpStats>,
}

impl juniper::Context for Context {}

/// Whether a request may run mutations, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteAccess {
    /// No token is configured, or the request carried the right one.
    Allowed,
    /// A token is configured and the request did not carry it.
    MissingToken,
    /// No token is configured and the request came from another host.
    NoTokenConfigured,
    /// The request came by GET, which may only read (a link must not write).
    ReadOnlyMethod,
}

impl Context {
    /// A context for one request of the server `config` describes; `write_access` says
    /// whether mutations may run.
    pub(crate) fn new(
        store: Arc<dyn CrmStore>,
        write_access: WriteAccess,
        config: Arc<ServerConfig>,
        stats: Arc<HttpStats>,
    ) -> Self {
        Self {
            store,
            write_access,
            rows_left: AtomicU64::new(config.max_rows_per_request),
            config,
            totals: Mutex::new(None),
            document: None,
            prerender: OnceLock::new(),
            stats,
        }
    }

    /// Lets the pages of `document` (this request's one document) be written straight to JSON
    /// if the server allows it and the document passes
    /// [`crate::schema::document_can_prerender`].
    pub(crate) fn allow_prerender(&mut self, document: &str) {
        if self.config.prerender_pages {
            self.document = Some(document.to_owned());
        }
    }

    /// Whether this request's pages may be written straight to JSON (`schema` parses the
    /// document the first time).
    pub(crate) fn may_prerender(&self, schema: &SchemaType<CrmScalar>) -> bool {
        let Some(document) = &self.document else {
            return false;
        };
        *self
            .prerender
            .get_or_init(|| crate::schema::document_can_prerender(document, schema))
    }

    /// Counts a page answered, `direct`ly written or not, for `/metrics`.
    pub(crate) fn record_page(&self, direct: bool) {
        self.stats.record_page(direct);
    }

    /// The scheduled jobs, if this server was given them.
    pub(crate) fn jobs(&self) -> Result<&crm_jobs::Runner, ApiError> {
        self.config.jobs.as_deref().ok_or_else(|| {
            ApiError::NotFound("this server was started without the scheduled jobs".to_owned())
        })
    }

    pub(crate) fn store(&self) -> &dyn CrmStore {
        &*self.store
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.config.clock
    }

    pub(crate) fn max_page_size(&self) -> u64 {
        self.config.max_page_size
    }

    pub(crate) fn max_bulk_customers(&self) -> usize {
        self.config.max_bulk_customers
    }

    /// Takes `rows` (a list's page size) from what this request may still read, or refuses
    /// the list when the request's lists together ask for more than the server's limit
    /// (`max_rows_per_request`): aliases let one small document repeat a list a thousand times.
    pub(crate) fn charge_rows(&self, rows: u64) -> Result<(), ApiError> {
        self.rows_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(rows)
            })
            .map(|_| ())
            .map_err(|_| {
                ApiError::validation(
                    "first",
                    format!(
                        "this request's lists ask for more than {} rows in all (each list \
                         counts its `first`, or the page size); split it into several requests",
                        self.config.max_rows_per_request
                    ),
                )
            })
    }

    /// The jobs' run-time controls, or a clear error when this server has none.
    pub(crate) fn job_control(&self) -> Result<&dyn JobControl, ApiError> {
        self.config.job_control.as_deref().ok_or_else(|| {
            ApiError::validation(
                "code",
                "job control is not configured on this server (start it with `crm serve`)",
            )
        })
    }

    /// Refuses a mutation unless the request may write. Called first in every mutation, so a
    /// refused one writes nothing.
    pub(crate) fn require_write_access(&self) -> Result<(), ApiError> {
        match self.write_access {
            WriteAccess::Allowed => Ok(()),
            WriteAccess::MissingToken => Err(ApiError::Unauthorized),
            WriteAccess::NoTokenConfigured => Err(ApiError::NoTokenConfigured),
            WriteAccess::ReadOnlyMethod => Err(ApiError::validation(
                "method",
                "mutations must be sent by POST, not GET",
            )),
        }
    }

    /// The report's totals, asked of the database once per request however many of the
    /// three total fields the query selects.
    pub(crate) async fn totals(&self) -> Result<Totals, ApiError> {
        let mut cached = self.totals.lock().await;
        if let Some(totals) = *cached {
            return Ok(totals);
        }
        let totals = self.store.totals().await?;
        *cached = Some(totals);
        Ok(totals)
    }
}
