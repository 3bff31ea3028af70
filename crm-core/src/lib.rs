#![doc = include_str!("../README.md")]
// With one store left out, helpers the two backends share go partly unused; the workspace's
// lints run with both stores on, where none may be.
#![cfg_attr(
    all(feature = "_store", not(all(feature = "sqlite", feature = "postgres"))),
    allow(dead_code, unused_imports, unused_macros)
)]

#[cfg(all(
    any(feature = "sqlite", feature = "postgres"),
    not(any(feature = "runtime-async-std", feature = "runtime-tokio"))
))]
compile_error!(
    "crm-core's `sqlite` and `postgres` stores need sqlx's runtime: turn on the feature \
     `runtime-async-std` or `runtime-tokio` of crm-core"
);

#[cfg(all(feature = "_store", not(any(feature = "sqlite", feature = "postgres"))))]
compile_error!("crm-core's `_store` is internal: turn on `sqlite` or `postgres` instead");

#[cfg(feature = "_store")]
mod database;
#[cfg(feature = "_store")]
mod dialect;
mod domain;
mod error;
pub mod ledger;
pub mod overrides;
mod paging;
#[cfg(feature = "_store")]
mod seed;
#[cfg(feature = "_store")]
mod sql;
mod store;
#[cfg(feature = "_store")]
mod store_impl;
#[cfg(feature = "_store")]
mod store_sql;
#[cfg(feature = "testing")]
pub mod testing;
mod url;

#[cfg(feature = "_store")]
pub use database::Database;
pub use domain::{
    Customer, CustomerId, MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_ORDER_PRODUCTS, MAX_PRICE, Money,
    NewCustomer, NewOrder, NewProduct, Order, OrderId, Product, ProductId, earliest_instant,
    latest_instant,
};
pub use error::{CoreError, Result, StorageError};
pub use paging::{Keyset, SortField, SortValue, ValueKind, effective_sort};
#[cfg(feature = "_store")]
pub use seed::{SeedConfig, SeedProgress, SeedStage, SeedSummary, seed, seed_if_empty};
pub use store::{
    CrmStore, CustomerField, CustomerFilter, MAX_IDEMPOTENCY_KEY_LEN, OrderField, OrderFilter,
    OrderRelations, OrderReminder, PageRequest, ProductField, ProductFilter, ReminderPage,
    ReminderPages, Restock, Sort, Totals,
};
pub use url::{DEFAULT_DATABASE_URL, UrlScheme, redact_password};
