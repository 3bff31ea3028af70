#![doc = include_str!("../README.md")]

mod alert;
mod clock;
pub mod crontab;
mod job;
mod runner;
mod schedule;

pub use alert::{Alert, AlertError, AlertHook, LogAlert, WebhookAlert};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crm_core::ledger::{
    Claim, JobRun, MemoryLedger, NewRun, RunId, RunKind, RunLedger, RunOutcome,
};
pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use runner::{
    DEFAULT_LEASE, DEFAULT_MISFIRE_GRACE, RunReport, RunStatus, Runner, RunnerBuilder, RunnerError,
};
pub use schedule::{
    Schedule, ScheduleError, TIME_ZONE_ENV, default_time_zone, parse_time_zone, schedules,
};
