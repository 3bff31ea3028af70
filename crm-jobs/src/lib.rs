#![doc = include_str!("../README.md")]

pub mod crontab;
mod job;
mod schedule;

pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use schedule::Schedule;
