//! The runner: decides which jobs are due, claims their ticks in the ledger, runs them (panics
//! and timeouts become failures), records the outcome and raises alerts.
//!
//! It owns no loop and no runtime: an app calls [`Runner::run_due`] when it likes (from its own
//! scheduler, or from a crontab line every minute) and [`Runner::next_wakeup`] to know when to
//! call it next. [`crate::Scheduler`] is a ready-made loop on top.
//!
//! One module, one job: the builder (`builder`), what is due (`due`), claims and leases
//! (`claims`), the panic and timeout guard (`guard`), alerts (`alerts`), reports (`reports`)
//! and run-time overrides (`overrides`); this file holds the runner and the order of a run.
//! Incidents (`crate::incidents`) and retention (`crate::retention`) sit beside it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use chrono_tz::Tz;
use crm_core::CoreError;
use crm_core::ledger::{JobRun, RunEnd, RunId, RunKind, RunLedger, RunOutcome};
use crm_core::overrides::OverrideStore;
use futures::future::{self, Either};

use crate::alert::AlertHook;
use crate::clock::Clock;
use crate::job::{CronJob, JobContext, JobOptions};
use crate::schedule::{Schedule, ScheduleError};

mod alerts;
mod builder;
mod claims;
mod due;
mod guard;
mod overrides;
mod reports;

pub use builder::RunnerBuilder;
pub use overrides::EffectiveSchedule;
use overrides::OverrideCache;
pub use reports::{RunReport, RunStatus};

/// How long a claim holds unless renewed; the runner renews it every third of this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How late a tick may be processed and still count as on time (not a misfire).
pub const DEFAULT_MISFIRE_GRACE: Duration = Duration::from_secs(60);

/// Why the runner could not be built or could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// Two registered jobs share a code; codes key the ledger, so they must be unique.
    #[error("two jobs share the code '{0}'")]
    DuplicateCode(String),
    /// A job's code is empty, too long, or has characters other than letters, digits, `_`,
    /// `-` and `.`.
    #[error("invalid job code '{code}': {reason}")]
    InvalidCode {
        /// The code as given.
        code: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured time zone is not an IANA name.
    #[error(transparent)]
    TimeZone(#[from] ScheduleError),
    /// A lease lasts from 1 second to 1 day.
    #[error("the lease must last from 1 second to 1 day, got {0:?}")]
    LeaseOutOfRange(Duration),
    /// No registered job has this code.
    #[error("no job with code '{code}' (known: {known})")]
    UnknownJob {
        /// The code asked for.
        code: String,
        /// The registered codes, comma-separated.
        known: String,
    },
    /// The job is not due now (use `force` to run it anyway).
    #[error("job '{code}' is not due{}", match .next { Some(t) => format!(" (next run {t})"), None => String::new() })]
    NotDue {
        /// The job's code.
        code: String,
        /// Its next tick, if any.
        next: Option<DateTime<Utc>>,
    },
    /// The ledger failed.
    #[error("run ledger: {0}")]
    Ledger(#[from] CoreError),
}

/// A registered job with its schedule and options read once.
struct Registered {
    job: Arc<dyn CronJob>,
    code: String,
    schedule: Schedule,
    options: JobOptions,
}

/// Runs registered jobs when they are due, each tick once across every runner sharing the
/// ledger. Cheap to share: wrap it in an `Arc`.
pub struct Runner {
    jobs: Vec<Registered>,
    ledger: Arc<dyn RunLedger>,
    overrides: Option<Arc<dyn OverrideStore>>,
    /// The overrides as last read, keyed by the store's change counter.
    cache: Mutex<OverrideCache>,
    /// Bumped, and `overrides_event` notified, each time `cache` is reloaded with a change.
    /// Whoever reloads it (the API's job control, `/status`, a round of due jobs), a scheduler
    /// sleeping on this runner must plan again: see [`Runner::overrides_generation`].
    overrides_generation: std::sync::atomic::AtomicU64,
    overrides_event: event_listener::Event,
    clock: Arc<dyn Clock>,
    alert: Arc<dyn AlertHook>,
    host: String,
    pid: u32,
    lease: Duration,
    misfire_grace: Duration,
    zone: Tz,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field(
                "jobs",
                &self.jobs.iter().map(|j| &j.code).collect::<Vec<_>>(),
            )
            .field("ledger", &self.ledger)
            .field("clock", &self.clock)
            .field("host", &self.host)
            .field("pid", &self.pid)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// `t` cut to whole microseconds, the ledger's precision, so what is stored reads back equal.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// `t + d`, or `None` past the end of time (a `Duration::MAX` delay means never).
fn later(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    t.checked_add_signed(TimeDelta::from_std(d).ok()?)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Runner {
    /// The registered jobs' codes, in registration order.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.jobs.iter().map(|j| j.code.as_str())
    }

    /// A registered job's schedule (in the runner's zone unless it names its own).
    pub fn schedule_of(&self, code: &str) -> Option<&Schedule> {
        self.jobs
            .iter()
            .find(|j| j.code == code)
            .map(|j| &j.schedule)
    }

    /// Every registered job's code, schedule and options, in registration order.
    pub fn registered(&self) -> impl Iterator<Item = (&str, &Schedule, &JobOptions)> {
        self.jobs
            .iter()
            .map(|j| (j.code.as_str(), &j.schedule, &j.options))
    }

    /// How late a tick may start and still be on time; later, health calls the job late.
    pub fn misfire_grace(&self) -> Duration {
        self.misfire_grace
    }

    /// The ledger runs are recorded in.
    pub fn ledger(&self) -> &Arc<dyn RunLedger> {
        &self.ledger
    }

    /// The runner's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The zone of schedules that name none.
    pub fn time_zone(&self) -> Tz {
        self.zone
    }

    /// Runs every job that is due at `now`, once, concurrently, and reports on each job that
    /// had something happen (jobs not due are left out).
    ///
    /// A job is due when its latest tick at or before `now` has no run yet. A tick older than the
    /// misfire grace (the runner was down) runs once under [`MisfirePolicy::RunLatest`] (only the
    /// latest of the missed ticks) or is recorded as skipped under [`MisfirePolicy::Skip`]. A
    /// job never seen before starts with its first on-time tick. A failed tick is retried after
    /// the job's `retry_after_failure`, until it succeeds or the next tick comes.
    ///
    /// With an override store, a paused job does nothing, a replacement schedule replaces the
    /// code's, ticks at or before the job's last change never count as missed, and one-off runs
    /// whose instant has come run once each (claimed as manual runs at that instant).
    ///
    /// [`MisfirePolicy::RunLatest`]: crate::job::MisfirePolicy::RunLatest
    /// [`MisfirePolicy::Skip`]: crate::job::MisfirePolicy::Skip
    pub async fn run_due(&self, now: DateTime<Utc>) -> Vec<RunReport> {
        self.refresh_or_warn().await;
        self.abandon_expired().await;
        let turns = self.jobs.iter().map(|job| async move {
            let mut reports: Vec<RunReport> = self.turn(job, now).await.into_iter().collect();
            for one_off in self.due_one_offs(job, now) {
                let report = self.execute(job, one_off.at, RunKind::Manual, 1).await;
                if !matches!(report.status, RunStatus::Busy | RunStatus::LedgerError) {
                    self.cache().done.insert(one_off.id);
                }
                reports.push(report);
            }
            reports
        });
        future::join_all(turns)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The registered job `code`, or the error that names the known ones.
    fn registered_job(&self, code: &str) -> Result<&Registered, RunnerError> {
        self.jobs
            .iter()
            .find(|j| j.code == code)
            .ok_or_else(|| RunnerError::UnknownJob {
                code: code.to_owned(),
                known: self.codes().collect::<Vec<_>>().join(", "),
            })
    }

    /// Runs the job `code` now, recorded like any run. Without `force` it runs only if due (as
    /// [`Runner::run_due`] would); with `force` it runs at a tick of its own (still claimed, so
    /// it waits for no one but runs beside no other run of a non-parallel job). A `dry_run`
    /// asks the job to change nothing and is recorded as such.
    pub async fn run_now(
        &self,
        code: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<RunReport, RunnerError> {
        let job = self.registered_job(code)?;
        let now = micros(self.clock.now());
        if dry_run {
            return Ok(self.execute(job, now, RunKind::DryRun, 1).await);
        }
        if force {
            return Ok(self.execute(job, now, RunKind::Manual, 1).await);
        }
        self.abandon_expired().await;
        match self.turn(job, now).await {
            Some(report) => Ok(report),
            None => Err(RunnerError::NotDue {
                code: code.to_owned(),
                next: self.effective(job).next_after(now),
            }),
        }
    }

    /// Runs the job `code` for the given `tick` (as `kind`, attempt `attempt`), claimed in the
    /// ledger like any run, whether or not the schedule says it is due: for callers that decide
    /// the tick themselves, such as a broker worker handed a tick by a beat. A tick already
    /// claimed answers [`RunStatus::Taken`] with the holder's run id, so a redelivered message
    /// never runs a tick twice. Claims whose runner died are marked abandoned first.
    pub async fn run_at(
        &self,
        code: &str,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
    ) -> Result<RunReport, RunnerError> {
        let job = self.registered_job(code)?;
        Ok(self
            .execute_with(job, micros(tick), kind, attempt.max(1), true)
            .await)
    }

    /// Records that the job `code`'s run for `tick` (as `kind`) did not happen, and why (a
    /// broker worker handed a task for a job an operator paused), unless that tick was already
    /// claimed: `true` if recorded. A tick recorded so never runs later.
    pub async fn record_skipped(
        &self,
        code: &str,
        tick: DateTime<Utc>,
        kind: RunKind,
        reason: &str,
    ) -> Result<bool, RunnerError> {
        let job = self.registered_job(code)?;
        let run = self.new_run(job, micros(tick), kind, 1);
        Ok(self.ledger.record_skipped(&run, reason).await?)
    }

    /// When [`Runner::run_due`] should next be called: the earliest of the jobs' next ticks
    /// after `now`, pending retries, and the lease ends of other processes' runs still going (a
    /// dead runner's claim frees its job then). `None` if nothing will ever be due. A tick held
    /// up by this runner's own long run is due again when that run ends.
    pub async fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refresh_or_warn().await;
        let mut wake = self
            .jobs
            .iter()
            .filter_map(|j| self.effective(j).next_after(now))
            .min();
        let mut consider = |t: DateTime<Utc>| {
            if t > now && wake.is_none_or(|w| t < w) {
                wake = Some(t);
            }
        };
        for job in &self.jobs {
            if self.effective(job).enabled {
                for one_off in self.pending_one_offs(&job.code) {
                    consider(one_off.at);
                }
            }
        }
        for job in &self.jobs {
            if let Some(after) = job.options.retry_after_failure
                && let Ok(Some(last)) = self.ledger.last_scheduled(&job.code).await
                && last.outcome.is_failure()
                && let Some(retry_at) = later(last.ended_at.unwrap_or(last.started_at), after)
            {
                consider(retry_at);
            }
        }
        match self.ledger.running(None).await {
            Ok(running) => running
                .iter()
                .filter(|r| self.jobs.iter().any(|j| j.code == r.code))
                // Our own runs end under our eyes (the scheduler hears of it); only another
                // process's claim can end silently, by expiring.
                .filter(|r| r.host != self.host || r.pid != self.pid)
                .filter_map(|r| r.lease_until)
                // A lease that ended since the last look is marked abandoned at once.
                .map(|until| until.max(now))
                // Just past the end, when the claim counts as expired.
                .filter_map(|until| until.checked_add_signed(TimeDelta::milliseconds(1)))
                .for_each(&mut consider),
            Err(e) => tracing::warn!(error = %e, "Could not read the running jobs from the ledger"),
        }
        wake
    }

    /// Claims the run, runs the job, records the outcome, alerts.
    async fn execute(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
    ) -> RunReport {
        self.execute_with(job, tick, kind, attempt, false).await
    }

    /// [`Runner::execute`], marking expired claims abandoned first (`abandon_first`) unless the
    /// one-step claim succeeds, which it only does when there are none.
    async fn execute_with(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
        abandon_first: bool,
    ) -> RunReport {
        let counts = kind != RunKind::DryRun;
        let base = RunReport {
            kind: Some(kind),
            attempt,
            ..RunReport::without_run(&job.code, RunStatus::Taken, Some(tick), String::new())
        };
        let (row, attempt, prior_failures) =
            match self.claim_if_clear(job, tick, kind, attempt, &base).await {
                Err(report) => return report,
                Ok(Some((row, prior_failures))) => (row, attempt, prior_failures),
                Ok(None) => {
                    if abandon_first {
                        self.abandon_expired().await;
                    }
                    let prior_failures = if counts {
                        self.ledger
                            .consecutive_failures(&job.code)
                            .await
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    match self.claim(job, tick, kind, attempt, base.clone()).await {
                        Ok((row, attempt)) => (row, attempt, prior_failures),
                        Err(report) => return report,
                    }
                }
            };
        let base = RunReport { attempt, ..base };
        let ctx = JobContext::new(tick, row.started_at, kind == RunKind::DryRun)
            .with_run(row.id, attempt);
        let clock_start = std::time::Instant::now();
        let (outcome, message) = self.run_guarded(job, &ctx, row.id).await;
        let duration = clock_start.elapsed();
        let ended_at = micros(self.clock.now());
        let mut status = match outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            _ => RunStatus::Failed,
        };
        match outcome {
            RunOutcome::Succeeded => tracing::info!(
                job.code = %job.code, run.id = %row.id, %tick, duration_ms = duration.as_millis() as u64,
                "Job succeeded"
            ),
            _ => tracing::warn!(
                job.code = %job.code, run.id = %row.id, %tick, duration_ms = duration.as_millis() as u64,
                // Redacted: a job's message may quote customers' addresses; the ledger keeps it whole.
                error = %crate::redact::redact_emails(&message), "Job failed"
            ),
        }
        let mut report_message = message.clone();
        let end = RunEnd {
            outcome,
            at: ended_at,
            message: &message,
        };
        match self.record_end(job, row.id, end).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                job.code = %job.code, run.id = %row.id,
                "Run finished after another runner marked it abandoned; its real outcome is recorded"
            ),
            Err(e) => {
                tracing::error!(job.code = %job.code, run.id = %row.id, error = %e, "Could not record a run's end");
                status = RunStatus::LedgerError;
                report_message = format!("{message} (not recorded: {e})");
            }
        }
        if counts {
            let finished = JobRun {
                outcome,
                ended_at: Some(ended_at),
                message: Some(message.clone()),
                ..row.clone()
            };
            match outcome {
                RunOutcome::Succeeded => {
                    self.alert_if_recovered(job, prior_failures, tick).await;
                }
                _ => self.alert_if_failing(job, &finished, &message).await,
            }
        }
        RunReport {
            status,
            run_id: Some(row.id),
            message: report_message,
            duration: Some(duration),
            ..base
        }
    }

    /// Records how run `id` ended, once more on a fresh connection if the first attempt met an
    /// unavailable database: a connection the server ended (PostgreSQL restarting,
    /// `pg_terminate_backend`) fails the statement at once, and a run whose end is not recorded
    /// stays "running" until its lease runs out and then counts as abandoned, though it ran. If
    /// the first attempt was committed and only its answer lost, the second finds the run
    /// finished already and changes nothing.
    async fn record_end(
        &self,
        job: &Registered,
        id: RunId,
        end: RunEnd<'_>,
    ) -> Result<bool, CoreError> {
        match self.ledger.finish(id, end).await {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(job.code = %job.code, run.id = %id, error = %e,
                    "Could not record a run's end; trying once more");
                self.ledger.finish(id, end).await
            }
            done => done,
        }
    }

    /// Runs the job under its guard (timeout, panics), renewing its lease meanwhile.
    async fn run_guarded(
        &self,
        job: &Registered,
        ctx: &JobContext,
        id: RunId,
    ) -> (RunOutcome, String) {
        let work = guard::run_guarded(job, ctx);
        let renew = self.keep_lease(job, id);
        futures::pin_mut!(work, renew);
        match future::select(work, renew).await {
            Either::Left((result, _)) => result,
            // The renewal loop never ends; were it to, the job's end would go unobserved.
            Either::Right(_) => (
                RunOutcome::Failed,
                "the lease renewal stopped before the job ended".to_owned(),
            ),
        }
    }
}
