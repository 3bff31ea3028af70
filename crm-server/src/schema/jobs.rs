//! The scheduled jobs' health in GraphQL: `jobs` (one entry per job: state, schedule, next run,
//! last success and failure, durations) and `jobRuns(code, first)` (a job's past runs).
//!
//! Run messages can quote customer data (a reminder names an e-mail address), so every message
//! leaves here with its e-mail addresses redacted.

use crm_jobs::health::{HealthState, JobHealth, redact_emails};
use crm_jobs::{JobRun, RunOutcome};
use juniper::{GraphQLEnum, ID, graphql_object};

use crate::context::Context;
use crate::error::ApiError;
use crate::scalars::Timestamp;

/// Most runs one `jobRuns` call returns.
pub(crate) const MAX_JOB_RUNS: i32 = 500;

/// A job's health in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "JobHealthState")]
pub(crate) enum JobState {
    /// Running on schedule, and its last run did not fail past the alert threshold.
    Ok,
    /// A run is going on now.
    Running,
    /// No scheduled run recorded yet.
    NeverRun,
    /// The latest tick is due and has not started within the grace period.
    Late,
    /// A tick passed with no run (or was skipped).
    Missed,
    /// Its latest runs failed, at least its alert threshold in a row.
    Failing,
    /// An operator paused it.
    Paused,
}

impl From<HealthState> for JobState {
    fn from(state: HealthState) -> Self {
        match state {
            HealthState::Ok => Self::Ok,
            HealthState::Running => Self::Running,
            HealthState::Late => Self::Late,
            HealthState::Missed => Self::Missed,
            HealthState::Failing => Self::Failing,
            HealthState::Paused => Self::Paused,
            _ => Self::NeverRun,
        }
    }
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, GraphQLEnum)]
pub(crate) enum RunResult {
    /// Still going.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error, panicked or timed out.
    Failed,
    /// Not run on purpose (a missed tick under the skip policy).
    Skipped,
    /// Its runner stopped renewing its lease (crashed or was killed).
    Abandoned,
}

impl From<RunOutcome> for RunResult {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Running => Self::Running,
            RunOutcome::Succeeded => Self::Succeeded,
            RunOutcome::Failed => Self::Failed,
            RunOutcome::Skipped => Self::Skipped,
            _ => Self::Abandoned,
        }
    }
}

/// One scheduled job and how it is doing.
pub(crate) struct JobNode(pub(crate) JobHealth);

/// One scheduled job and how it is doing.
#[graphql_object(name = "Job", context = Context)]
impl JobNode {
    /// The job's stable code, e.g. `log_crm_heartbeat`.
    fn code(&self) -> &str {
        &self.0.code
    }

    /// The schedule in force: a cron expression such as `*/5 * * * *` (read in `timeZone`).
    fn schedule(&self) -> String {
        self.0.schedule_expression()
    }

    /// Whether `schedule` is an operator's replacement of the job's own.
    fn schedule_overridden(&self) -> bool {
        self.0.overridden
    }

    /// The IANA time zone the schedule is read in.
    fn time_zone(&self) -> &str {
        self.0.schedule.time_zone().name()
    }

    /// The verdict.
    fn state(&self) -> JobState {
        self.0.state.into()
    }

    /// For a late or missed job: the tick that did not run.
    fn overdue_tick(&self) -> Option<Timestamp> {
        self.0.overdue_tick.map(Timestamp)
    }

    /// When it next runs (its next tick, or an operator's one-off run); null while paused.
    fn next_run(&self) -> Option<Timestamp> {
        self.0.next_run.map(Timestamp)
    }

    /// Its latest run (dry runs aside).
    fn last_run(&self) -> Option<JobRunNode> {
        self.0.last_run.clone().map(JobRunNode)
    }

    /// Its latest successful run.
    fn last_success(&self) -> Option<JobRunNode> {
        self.0.last_success.clone().map(JobRunNode)
    }

    /// Its latest failed or abandoned run.
    fn last_failure(&self) -> Option<JobRunNode> {
        self.0.last_failure.clone().map(JobRunNode)
    }

    /// Failures in a row since its last success.
    fn consecutive_failures(&self) -> i32 {
        i32::try_from(self.0.consecutive_failures).unwrap_or(i32::MAX)
    }

    /// Median duration of its recent finished runs, in milliseconds.
    fn p50_ms(&self) -> Option<f64> {
        self.0.p50.map(|d| d.as_secs_f64() * 1000.0)
    }

    /// 95th percentile duration of its recent finished runs, in milliseconds.
    fn p95_ms(&self) -> Option<f64> {
        self.0.p95.map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Its recent runs, newest first.
    fn recent_runs(&self) -> Vec<JobRunNode> {
        self.0.recent.iter().cloned().map(JobRunNode).collect()
    }
}

/// One run of a scheduled job, from the run ledger.
pub(crate) struct JobRunNode(pub(crate) JobRun);

/// One run of a scheduled job, from the run ledger.
#[graphql_object(name = "JobRun", context = Context)]
impl JobRunNode {
    /// The ledger's id of the run.
    fn id(&self) -> ID {
        ID::new(self.0.id.to_string())
    }

    /// The job's code.
    fn code(&self) -> &str {
        &self.0.code
    }

    /// The scheduled instant the run was for.
    fn tick(&self) -> Timestamp {
        Timestamp(self.0.tick)
    }

    /// Why it ran: `scheduled`, `retry`, `manual` or `dry_run`.
    fn kind(&self) -> &str {
        self.0.kind.as_str()
    }

    /// 1 for a tick's first run, more for its retries.
    fn attempt(&self) -> i32 {
        i32::try_from(self.0.attempt).unwrap_or(i32::MAX)
    }

    /// When it started.
    fn started_at(&self) -> Timestamp {
        Timestamp(self.0.started_at)
    }

    /// When it ended; null while running.
    fn ended_at(&self) -> Option<Timestamp> {
        self.0.ended_at.map(Timestamp)
    }

    /// How long it ran, in milliseconds; null while running.
    fn duration_ms(&self) -> Option<f64> {
        self.0
            .ended_at
            .map(|end| (end - self.0.started_at).as_seconds_f64() * 1000.0)
    }

    /// How it went.
    fn outcome(&self) -> RunResult {
        self.0.outcome.into()
    }

    /// The job's outcome message or error, with e-mail addresses redacted.
    fn message(&self) -> Option<String> {
        self.0.message.as_deref().map(redact_emails)
    }

    /// The host that ran it.
    fn host(&self) -> &str {
        &self.0.host
    }
}

/// Every job's health, in registration order.
pub(crate) async fn jobs(context: &Context) -> Result<Vec<JobNode>, ApiError> {
    let runner = context.jobs()?;
    let now = runner.clock().now();
    let health = crm_jobs::health::assess(runner, now).await.map_err(|e| {
        tracing::error!(error = %e, "could not read the run ledger");
        ApiError::Internal
    })?;
    Ok(health.into_iter().map(JobNode).collect())
}

/// The latest `first` runs of job `code`, newest first.
pub(crate) async fn job_runs(
    context: &Context,
    code: &str,
    first: Option<i32>,
) -> Result<Vec<JobRunNode>, ApiError> {
    let runner = context.jobs()?;
    if runner.schedule_of(code).is_none() {
        return Err(ApiError::NotFound(format!(
            "no job with code '{code}' (known: {})",
            runner.codes().collect::<Vec<_>>().join(", ")
        )));
    }
    let first = first.unwrap_or(20);
    if !(1..=MAX_JOB_RUNS).contains(&first) {
        return Err(ApiError::validation(
            "first",
            format!("must be between 1 and {MAX_JOB_RUNS}, got {first}"),
        ));
    }
    let runs = runner
        .ledger()
        .history(Some(code), first as u32)
        .await
        .map_err(ApiError::from)?;
    Ok(runs.into_iter().map(JobRunNode).collect())
}
