#![doc = include_str!("../README.md")]

mod config;
mod context;
mod cursor;
mod error;
mod graphiql;
mod http;
mod ids;
mod metrics;
mod scalar_value;
mod scalars;
mod schema;
mod status;

pub use config::{Clock, DEFAULT_BIND, ServerConfig};
pub use context::Context;
pub use error::ApiError;
pub use http::{AppState, BoundServer, READY_TIMEOUT, REQUEST_TIMEOUT, app, serve};
pub use metrics::render as render_metrics;
pub use scalar_value::{CrmScalar, PrerenderedJson};
pub use scalars::{Money, Timestamp};
pub use schema::{Mutation, Query, Schema, schema};
