//! The per-request context: the store, whether mutations are allowed, and the batch loader that
//! keeps a list of orders from costing a query per order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_std::sync::Mutex;
use crm_core::overrides::JobControl;
use crm_core::{CrmStore, Customer, CustomerId, Order, OrderId, Product, Totals};

use crate::config::Clock;
use crate::error::ApiError;

/// What every resolver of one request sees.
pub struct Context {
    store: Arc<dyn CrmStore>,
    write_access: WriteAccess,
    clock: Clock,
    max_page_size: u64,
    max_bulk_customers: usize,
    max_rows: u64,
    /// List rows this request may still ask for (see [`Context::charge_rows`]).
    rows_left: AtomicU64,
    job_control: Option<Arc<dyn JobControl>>,
    loader: Mutex<OrderLoader>,
    totals: Mutex<Option<Totals>>,
    jobs: Option<Arc<crm_jobs::Runner>>,
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

/// The customers and products of the orders this request has seen.
///
/// Each list resolver registers the orders it returns. The first order whose `customer` (or
/// `products`) is asked for loads them for every registered order not loaded yet, in one query;
/// the others find them cached. A page of orders thus costs one query for the page, one for the
/// customers and one for the products, however many orders it holds.
#[derive(Default)]
struct OrderLoader {
    orders: Vec<(OrderId, CustomerId)>,
    customers: HashMap<CustomerId, Customer>,
    products: HashMap<OrderId, Vec<Product>>,
}

impl Context {
    /// A context for one request; `write_access` says whether mutations may run.
    pub(crate) fn new(
        store: Arc<dyn CrmStore>,
        write_access: WriteAccess,
        clock: Clock,
        max_page_size: u64,
        max_bulk_customers: usize,
        max_rows: u64,
        job_control: Option<Arc<dyn JobControl>>,
    ) -> Self {
        Self {
            store,
            write_access,
            clock,
            max_page_size,
            max_bulk_customers,
            max_rows,
            rows_left: AtomicU64::new(max_rows),
            job_control,
            loader: Mutex::new(OrderLoader::default()),
            totals: Mutex::new(None),
            jobs: None,
        }
    }

    /// The scheduled jobs the `jobs` queries report on.
    pub(crate) fn with_jobs(mut self, jobs: Option<Arc<crm_jobs::Runner>>) -> Self {
        self.jobs = jobs;
        self
    }

    /// The scheduled jobs, if this server was given them.
    pub(crate) fn jobs(&self) -> Result<&crm_jobs::Runner, ApiError> {
        self.jobs.as_deref().ok_or_else(|| {
            ApiError::NotFound("this server was started without the scheduled jobs".to_owned())
        })
    }

    pub(crate) fn store(&self) -> &dyn CrmStore {
        &*self.store
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn max_page_size(&self) -> u64 {
        self.max_page_size
    }

    pub(crate) fn max_bulk_customers(&self) -> usize {
        self.max_bulk_customers
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
                        self.max_rows
                    ),
                )
            })
    }

    /// The jobs' run-time controls, or a clear error when this server has none.
    pub(crate) fn job_control(&self) -> Result<&dyn JobControl, ApiError> {
        self.job_control.as_deref().ok_or_else(|| {
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

    /// Remembers orders about to be returned, so their customers and products load together.
    pub(crate) async fn register_orders(&self, orders: &[Order]) {
        let mut loader = self.loader.lock().await;
        loader
            .orders
            .extend(orders.iter().map(|o| (o.id, o.customer_id)));
    }

    /// Loads, for every registered order, the customers and/or products the query is about to
    /// ask for: one store call each, before the per-order resolvers run, so they find them
    /// cached instead of queueing on the loader.
    pub(crate) async fn preload(&self, customers: bool, products: bool) -> Result<(), ApiError> {
        let mut loader = self.loader.lock().await;
        if customers {
            self.load_customers(&mut loader, None).await?;
        }
        if products {
            self.load_products(&mut loader, None).await?;
        }
        Ok(())
    }

    /// The customer of `order`, loading those of every registered order at once.
    pub(crate) async fn customer_of(&self, order: &Order) -> Result<Customer, ApiError> {
        let mut loader = self.loader.lock().await;
        if !loader.customers.contains_key(&order.customer_id) {
            self.load_customers(&mut loader, Some(order)).await?;
        }
        loader
            .customers
            .get(&order.customer_id)
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "customer {} of order {} not found",
                    order.customer_id, order.id
                ))
            })
    }

    /// The products of `order` by id, loading those of every registered order at once.
    pub(crate) async fn products_of(&self, order: &Order) -> Result<Vec<Product>, ApiError> {
        let mut loader = self.loader.lock().await;
        if !loader.products.contains_key(&order.id) {
            self.load_products(&mut loader, Some(order)).await?;
        }
        Ok(loader.products.get(&order.id).cloned().unwrap_or_default())
    }

    /// Loads the customers of the registered orders (and of `also`) not loaded yet.
    async fn load_customers(
        &self,
        loader: &mut OrderLoader,
        also: Option<&Order>,
    ) -> Result<(), ApiError> {
        let mut wanted: Vec<CustomerId> = loader
            .orders
            .iter()
            .map(|(_, c)| *c)
            .chain(also.map(|o| o.customer_id))
            .filter(|c| !loader.customers.contains_key(c))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let found = self.store.customers_by_ids(&wanted).await?;
        loader
            .customers
            .extend(found.into_iter().map(|c| (c.id, c)));
        Ok(())
    }

    /// Loads the products of the registered orders (and of `also`) not loaded yet.
    async fn load_products(
        &self,
        loader: &mut OrderLoader,
        also: Option<&Order>,
    ) -> Result<(), ApiError> {
        let mut wanted: Vec<OrderId> = loader
            .orders
            .iter()
            .map(|(o, _)| *o)
            .chain(also.map(|o| o.id))
            .filter(|o| !loader.products.contains_key(o))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let pairs = self.store.order_products(&wanted).await?;
        for id in &wanted {
            loader.products.entry(*id).or_default();
        }
        for (order_id, product) in pairs {
            loader.products.entry(order_id).or_default().push(product);
        }
        for id in &wanted {
            if let Some(list) = loader.products.get_mut(id) {
                list.sort_by_key(|p| p.id);
            }
        }
        Ok(())
    }
}
