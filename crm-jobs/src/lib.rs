#![doc = include_str!("../README.md")]

mod config;
pub mod crontab;
mod graphql;
mod job;
mod jobs;
mod log_file;
mod schedule;

pub use config::{
    ConfigError, DEFAULT_GRAPHQL_TIMEOUT, DEFAULT_GRAPHQL_URL, DEFAULT_LOG_DIR, JobsConfig,
};
pub use graphql::{
    GraphqlClient, GraphqlError, OrderToRemind, ProductStockLevel, ReportTotals, RestockOutcome,
    readable_id,
};
pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use jobs::{
    CleanInactiveCustomers, GenerateCrmReport, LogCrmHeartbeat, ORDER_REMINDERS_PROCESSED,
    SendOrderReminders, UpdateLowStock, standard_jobs,
};
pub use log_file::{LogFile, file_names};
pub use schedule::{
    Schedule, ScheduleError, TIME_ZONE_ENV, default_time_zone, parse_time_zone, schedules,
};
