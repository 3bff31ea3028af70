#![doc = include_str!("../README.md")]

pub use crm_core as core;
pub use crm_jobs as jobs;
pub use crm_server as server;
