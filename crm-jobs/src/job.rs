//! What a job is: the [`CronJob`] trait, its options, the context of one run, and its errors.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::schedule::Schedule;

/// A scheduled job, like a django-cron `CronJobBase` subclass.
///
/// Object-safe: jobs of different types are registered side by side as `Box<dyn CronJob>`.
/// A job should be idempotent for a given [`JobContext::tick`]: after a crash the same tick may
/// be retried.
#[async_trait]
pub trait CronJob: Send + Sync + 'static {
    /// A unique, stable code (django-cron's `code`), e.g. `clean_inactive_customers`. It keys
    /// the run ledger, so renaming it forgets the job's history.
    fn code(&self) -> &str;

    /// When the job is due.
    fn schedule(&self) -> Schedule;

    /// How the runner treats this job; django-cron's defaults unless overridden.
    fn options(&self) -> JobOptions {
        JobOptions::default()
    }

    /// Does the work of one run and returns a short outcome message for the ledger
    /// (e.g. `Deleted 3 inactive customers`).
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError>;
}

/// Per-job options, with django-cron's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobOptions {
    /// Whether a new run may start while one is still running (django-cron's
    /// `ALLOW_PARALLEL_RUNS`; default `false`).
    pub allow_parallel_runs: bool,
    /// After a failed run, retry this long after it ended rather than waiting for the next tick
    /// (django-cron's `RETRY_AFTER_FAILURE_MINS`); `None` never retries early (the default).
    pub retry_after_failure: Option<Duration>,
    /// Consecutive failures before the alert hook fires (django-cron's
    /// `MIN_NUM_FAILURES`; default 1).
    pub failures_before_alert: u32,
    /// A run still going after this long is stopped and recorded as failed; `None` for no limit.
    pub timeout: Option<Duration>,
    /// What to do about ticks missed while nothing was running.
    pub misfire: MisfirePolicy,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            allow_parallel_runs: false,
            retry_after_failure: None,
            failures_before_alert: 1,
            timeout: Some(Duration::from_secs(3600)),
            misfire: MisfirePolicy::RunLatest,
        }
    }
}

impl JobOptions {
    /// Sets [`JobOptions::allow_parallel_runs`].
    pub fn allow_parallel_runs(mut self, allow: bool) -> Self {
        self.allow_parallel_runs = allow;
        self
    }
    /// Sets [`JobOptions::retry_after_failure`].
    pub fn retry_after_failure(mut self, after: Option<Duration>) -> Self {
        self.retry_after_failure = after;
        self
    }
    /// Sets [`JobOptions::failures_before_alert`].
    pub fn failures_before_alert(mut self, failures: u32) -> Self {
        self.failures_before_alert = failures;
        self
    }
    /// Sets [`JobOptions::timeout`].
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`JobOptions::misfire`].
    pub fn misfire(mut self, policy: MisfirePolicy) -> Self {
        self.misfire = policy;
        self
    }
}

/// What the runner does after downtime, when one or more ticks passed without a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MisfirePolicy {
    /// Run the latest missed tick once (cron's catch-up, without a burst of runs).
    RunLatest,
    /// Skip missed ticks; wait for the next one.
    Skip,
}

/// What one run knows about itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobContext {
    /// The scheduled instant this run is for; unique per job, so usable as an idempotency key.
    pub tick: DateTime<Utc>,
    /// When the run started, by the runner's clock.
    pub started_at: DateTime<Utc>,
    /// When `true`, the job reports what it would do and changes nothing.
    pub dry_run: bool,
    /// The run's row in the ledger, when a runner recorded it (not in a bare test call).
    pub run_id: Option<crm_core::ledger::RunId>,
    /// 1 for the tick's first run, 2, 3, … for retries after failure.
    pub attempt: u32,
}

impl JobContext {
    /// A context for running the tick `tick`, started at `started_at`.
    pub fn new(tick: DateTime<Utc>, started_at: DateTime<Utc>, dry_run: bool) -> Self {
        Self {
            tick,
            started_at,
            dry_run,
            run_id: None,
            attempt: 1,
        }
    }

    /// This context, for the ledger's run `run_id`, attempt `attempt` of its tick.
    pub fn with_run(mut self, run_id: crm_core::ledger::RunId, attempt: u32) -> Self {
        self.run_id = Some(run_id);
        self.attempt = attempt;
        self
    }
}

/// Why a run failed. The message is recorded in the ledger and shown by `crm jobs history`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The CRM's storage failed.
    #[error("storage: {0}")]
    Storage(#[from] crm_core::CoreError),
    /// The GraphQL endpoint could not be reached or answered with an error.
    #[error("GraphQL endpoint not responding: {0}")]
    Endpoint(String),
    /// The job's log file could not be written.
    #[error("cannot write log file {path}: {source}")]
    LogFile {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The run's work was done (and committed) but its log lines could not be written, e.g.
    /// on a full disk. The message starts with what was done, so the ledger and the alert say
    /// it although the log file cannot.
    #[error("{done}, but cannot write log file {path}: {source}")]
    LogFileAfterWork {
        /// What the run did, as its success message would have said (`Deleted 3 inactive
        /// customers`).
        done: String,
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The CRM access in use cannot do what the job asks (the GraphQL API cannot delete
    /// customers); the message says what to use instead.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
}

impl JobError {
    /// This error, if it is a log file failure, as one that happened after the work `done`
    /// (a [`JobError::LogFileAfterWork`]); any other error unchanged.
    pub fn after_work(self, done: impl Into<String>) -> Self {
        match self {
            JobError::LogFile { path, source } => JobError::LogFileAfterWork {
                done: done.into(),
                path,
                source,
            },
            other => other,
        }
    }
}
