#![doc = include_str!("../README.md")]

mod database;
mod domain;
mod error;
pub mod ledger;
pub mod overrides;
mod postgres;
mod seed;
mod sql;
mod sqlite;
mod store;
mod store_impl;
#[cfg(feature = "testing")]
pub mod testing;

pub use database::{DEFAULT_DATABASE_URL, Database, redact_password};
pub use domain::{
    Customer, CustomerId, MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_ORDER_PRODUCTS, MAX_PRICE, Money,
    NewCustomer, NewOrder, NewProduct, Order, OrderId, Product, ProductId, earliest_instant,
    latest_instant,
};
pub use error::{CoreError, Result};
pub use seed::{SeedConfig, SeedProgress, SeedStage, SeedSummary, seed};
pub use store::{
    CrmStore, CustomerField, CustomerFilter, OrderField, OrderFilter, OrderReminder, PageRequest,
    ProductField, ProductFilter, Sort, Totals,
};
