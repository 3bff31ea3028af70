#![doc = include_str!("../README.md")]

mod job;
mod schedule;

pub use job::{CronJob, JobContext, JobError, JobOptions, MisfirePolicy};
pub use schedule::Schedule;
