#![doc = include_str!("../README.md")]

pub mod crontab;
mod job;
mod schedule;

pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use schedule::{
    Schedule, ScheduleError, TIME_ZONE_ENV, default_time_zone, parse_time_zone, schedules,
};
