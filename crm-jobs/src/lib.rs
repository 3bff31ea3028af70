#![doc = include_str!("../README.md")]

mod alert;
#[cfg(any(feature = "broker", feature = "broker-tokio"))]
pub mod broker;
mod clock;
mod config;
mod crm_access;
pub mod crontab;
#[cfg(feature = "graphql")]
mod graphql;
pub mod health;
#[cfg(any(feature = "https", feature = "tokio-http"))]
mod http_transport;
#[cfg(feature = "https")]
mod https;
mod incidents;
mod job;
mod jobs;
mod log_file;
mod redact;
mod retention;
mod runner;
mod schedule;
mod scheduler;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tokio-http")]
mod tokio_http;
mod upkeep;

#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
pub use alert::WebhookAlert;
pub use alert::{Alert, AlertError, AlertHook, AlertHooks, LogAlert};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ConfigError, DEFAULT_GRAPHQL_TIMEOUT, DEFAULT_GRAPHQL_URL, DEFAULT_LOG_DIR, JobsConfig,
};
pub use crm_access::{
    CrmAccess, IN_PROCESS_PAGE_SIZE, InProcessCrm, LOW_STOCK_THRESHOLD, OrderPages, OrderToRemind,
    ProductStockLevel, RESTOCK_AMOUNT, ReportTotals, RestockOutcome,
};
pub use crm_core::ledger::{
    Claim, Incident, IncidentChange, IncidentKind, JobRun, MemoryLedger, NewRun, Pruned, Retention,
    RunCount, RunEnd, RunId, RunKind, RunLedger, RunOutcome, SeenIncident,
};
pub use crm_core::overrides::{
    AuditEntry, ChangeRequest, JobControl, JobOverride, JobState, MemoryOverrides, OneOffRun,
    OverrideChange, OverrideStore,
};
#[cfg(feature = "graphql")]
pub use graphql::{GraphqlClient, GraphqlError, readable_id};
#[cfg(any(feature = "https", feature = "tokio-http"))]
pub use http_transport::HttpTransport;
pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use jobs::{
    CleanInactiveCustomers, GenerateCrmReport, LogCrmHeartbeat, ORDER_REMINDERS_PROCESSED,
    SendOrderReminders, UpdateLowStock, jobs_with_access,
};
#[cfg(feature = "graphql")]
pub use jobs::{standard_jobs, standard_jobs_over, standard_runner};
pub use log_file::{LogFile, OpenLogFile, file_names};
pub use runner::{
    DEFAULT_LEASE, DEFAULT_MISFIRE_GRACE, EffectiveSchedule, RunReport, RunStatus, Runner,
    RunnerBuilder, RunnerError,
};
pub use schedule::{
    Schedule, ScheduleError, TIME_ZONE_ENV, TZ_ENV, default_time_zone, machine_time_zone,
    parse_time_zone, schedules, tz_variable_zone,
};
pub use scheduler::{
    DEFAULT_OVERRIDE_POLL, DEFAULT_RETENTION, LEDGER_RETRY_AFTER, PRUNE_EVERY, Scheduler,
    SchedulerSummary, ShutdownHandle,
};
pub use upkeep::{SCHEDULE_CHECK_EVERY, prune_daily, upkeep, watch_schedules};
