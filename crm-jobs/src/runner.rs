//! The runner: decides which jobs are due, claims their ticks in the ledger, runs them (panics
//! and timeouts become failures), records the outcome and raises alerts.
//!
//! It owns no loop and no runtime: an app calls [`Runner::run_due`] when it likes (from its own
//! scheduler, or from a crontab line every minute) and [`Runner::next_wakeup`] to know when to
//! call it next. [`crate::Scheduler`] is a ready-made loop on top.

use std::collections::HashSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use chrono_tz::Tz;
use crm_core::CoreError;
use crm_core::ledger::{
    Claim, IncidentChange, IncidentKind, JobRun, MAX_CODE_CHARS, MemoryLedger, NewRun, RunId,
    RunKind, RunLedger, RunOutcome,
};
use crm_core::overrides::OverrideStore;
use futures::FutureExt;
use futures::future::{self, Either};

use crate::alert::{Alert, AlertHook, LogAlert};
use crate::clock::{Clock, SystemClock};
use crate::health::HealthState;
use crate::job::{CronJob, JobContext, JobOptions, MisfirePolicy};
use crate::schedule::{Schedule, ScheduleError, default_time_zone};

mod overrides;

pub use overrides::EffectiveSchedule;
use overrides::OverrideCache;

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

/// What happened to one job in a call to [`Runner::run_due`] or [`Runner::run_now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed: an error, a panic or a timeout.
    Failed,
    /// Its tick was missed and the misfire policy says skip; recorded as skipped.
    Skipped,
    /// It does not allow parallel runs and another run of it is still going; tried again later.
    Busy,
    /// Another runner claimed this tick first; nothing to do.
    Taken,
    /// The ledger could not be read or written, so the job was not run (or its end not recorded).
    LedgerError,
}

/// A report on one job's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// The job's code.
    pub code: String,
    /// What happened.
    pub status: RunStatus,
    /// The tick concerned.
    pub tick: Option<DateTime<Utc>>,
    /// Why the run happened, when it was claimed or recorded.
    pub kind: Option<RunKind>,
    /// The attempt number of the tick.
    pub attempt: u32,
    /// The ledger row, when one was written.
    pub run_id: Option<RunId>,
    /// The job's outcome message or error, or why it did not run.
    pub message: String,
    /// How long the job ran, when it ran.
    pub duration: Option<Duration>,
}

impl RunReport {
    /// Whether this counts as a failure for the command line's exit status.
    pub fn is_failure(&self) -> bool {
        matches!(self.status, RunStatus::Failed | RunStatus::LedgerError)
    }

    fn without_run(
        code: &str,
        status: RunStatus,
        tick: Option<DateTime<Utc>>,
        message: String,
    ) -> Self {
        Self {
            code: code.to_owned(),
            status,
            tick,
            kind: None,
            attempt: 0,
            run_id: None,
            message,
            duration: None,
        }
    }
}

impl RunStatus {
    /// The word the command line shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Busy => "busy",
            Self::Taken => "taken",
            Self::LedgerError => "ledger error",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line for the command line: `log_crm_heartbeat: succeeded in 12 ms: CRM is alive`.
impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.status)?;
        if let Some(duration) = self.duration {
            write!(f, " in {} ms", duration.as_millis())?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
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

/// Builds a [`Runner`]: `Runner::builder().ledger(..).clock(..).job(..).build()`.
#[must_use]
pub struct RunnerBuilder {
    jobs: Vec<Box<dyn CronJob>>,
    ledger: Option<Arc<dyn RunLedger>>,
    overrides: Option<Arc<dyn OverrideStore>>,
    clock: Option<Arc<dyn Clock>>,
    alert: Option<Arc<dyn AlertHook>>,
    host: Option<String>,
    pid: Option<u32>,
    lease: Duration,
    misfire_grace: Duration,
    zone: Option<Tz>,
}

impl fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field(
                "jobs",
                &self
                    .jobs
                    .iter()
                    .map(|j| j.code().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RunnerBuilder {
    /// Registers a job.
    pub fn job(mut self, job: Box<dyn CronJob>) -> Self {
        self.jobs.push(job);
        self
    }

    /// Registers several jobs.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = Box<dyn CronJob>>) -> Self {
        self.jobs.extend(jobs);
        self
    }

    /// Where runs are recorded and claimed; default: a fresh [`MemoryLedger`] (one process only).
    pub fn ledger(mut self, ledger: Arc<dyn RunLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Where operators' run-time changes are kept (pause, replacement schedule, one-off
    /// runs); default: none, so every job keeps its code's schedule. Use the same database as
    /// the ledger, so one-off runs are claimed like any tick.
    pub fn overrides(mut self, overrides: Arc<dyn OverrideStore>) -> Self {
        self.overrides = Some(overrides);
        self
    }

    /// The clock; default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Who hears about failing and recovered jobs; default: [`LogAlert`].
    pub fn alert_hook(mut self, hook: Arc<dyn AlertHook>) -> Self {
        self.alert = Some(hook);
        self
    }

    /// The zone of schedules that name none; default: [`default_time_zone`].
    pub fn time_zone(mut self, zone: Tz) -> Self {
        self.zone = Some(zone);
        self
    }

    /// How long a claim holds unless renewed (default [`DEFAULT_LEASE`]). A runner that dies
    /// frees its job this long after its last renewal.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How late a tick may be run and still be on time (default [`DEFAULT_MISFIRE_GRACE`]).
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.misfire_grace = grace;
        self
    }

    /// The host name recorded with each run; default: the machine's.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The process id recorded with each run; default: this process's.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Checks the configuration and builds the runner.
    pub fn build(self) -> Result<Runner, RunnerError> {
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(86_400) {
            return Err(RunnerError::LeaseOutOfRange(self.lease));
        }
        let zone = match self.zone {
            Some(zone) => zone,
            None => default_time_zone()?,
        };
        let mut seen = HashSet::new();
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            let code = job.code().to_owned();
            validate_code(&code)?;
            if !seen.insert(code.clone()) {
                return Err(RunnerError::DuplicateCode(code));
            }
            let job: Arc<dyn CronJob> = Arc::from(job);
            jobs.push(Registered {
                schedule: job.schedule().or_time_zone(zone),
                options: job.options(),
                code,
                job,
            });
        }
        Ok(Runner {
            jobs,
            ledger: self.ledger.unwrap_or_else(|| Arc::new(MemoryLedger::new())),
            overrides: self.overrides,
            cache: Mutex::default(),
            overrides_generation: std::sync::atomic::AtomicU64::new(0),
            overrides_event: event_listener::Event::new(),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            alert: self.alert.unwrap_or_else(|| Arc::new(LogAlert)),
            host: self
                .host
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            pid: self.pid.unwrap_or_else(std::process::id),
            lease: self.lease,
            misfire_grace: self.misfire_grace,
            zone,
        })
    }
}

fn validate_code(code: &str) -> Result<(), RunnerError> {
    let invalid = |reason: &str| RunnerError::InvalidCode {
        code: code.to_owned(),
        reason: reason.to_owned(),
    };
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return Err(invalid(&format!(
            "a code has 1 to {MAX_CODE_CHARS} characters"
        )));
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid("use letters, digits, '_', '-' and '.' only"));
    }
    Ok(())
}

/// `t` cut to whole microseconds, the ledger's precision, so what is stored reads back equal.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// `t + d`, or `None` past the end of time (a `Duration::MAX` delay means never).
fn later(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    t.checked_add_signed(TimeDelta::from_std(d).ok()?)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

impl Runner {
    /// A builder with the defaults.
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder {
            jobs: Vec::new(),
            ledger: None,
            overrides: None,
            clock: None,
            alert: None,
            host: None,
            pid: None,
            lease: DEFAULT_LEASE,
            misfire_grace: DEFAULT_MISFIRE_GRACE,
            zone: None,
        }
    }

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

    /// Retention: deletes the ledger's finished runs older than `older_than` (by the runner's
    /// clock), in small batches, through [`RunLedger::prune`]. Each job keeps, however old, its
    /// latest runs (at least the health window and its `failures_before_alert`) and the
    /// landmarks health reads, so [`crate::health::assess`] answers the same afterwards.
    /// Incidents resolved and one-off runs done before then go too.
    pub async fn prune_history(
        &self,
        older_than: Duration,
    ) -> Result<crm_core::ledger::Pruned, RunnerError> {
        let Some(before) = TimeDelta::from_std(older_than)
            .ok()
            .and_then(|d| self.clock.now().checked_sub_signed(d))
        else {
            return Ok(crm_core::ledger::Pruned::default()); // nothing is that old
        };
        let keep_per_job = self
            .jobs
            .iter()
            .map(|j| j.options.failures_before_alert)
            .chain([crate::health::HEALTH_WINDOW])
            .max()
            .unwrap_or(crate::health::HEALTH_WINDOW);
        let started = std::time::Instant::now();
        let retention =
            crm_core::ledger::Retention::before(micros(before)).keep_per_job(keep_per_job);
        let pruned = self.ledger.prune(&retention).await?;
        tracing::info!(
            runs = pruned.runs,
            one_off_runs = pruned.one_off_runs,
            incidents = pruned.incidents,
            batches = pruned.batches,
            before = %before,
            duration_ms = started.elapsed().as_millis() as u64,
            "Pruned the run history"
        );
        Ok(pruned)
    }

    /// Checks every job's schedule at `now` and alerts (through the runner's hook) once per
    /// incident: when a job is first seen late, when it has missed a tick, and when it is back
    /// on schedule. Incidents are remembered in the ledger, so any number of processes may
    /// check, as often as they like: each incident is told once. Failing runs are alerted by
    /// the runs themselves. Returns the alerts sent.
    pub async fn check_schedules(&self, now: DateTime<Utc>) -> Result<Vec<Alert>, RunnerError> {
        let mut alerts = Vec::new();
        for health in crate::health::assess(self, now).await? {
            let code = health.code.clone();
            let trouble = match (health.state, health.overdue_tick) {
                (HealthState::Late, Some(tick)) => Some((IncidentKind::Late, tick)),
                (HealthState::Missed, Some(tick)) => Some((IncidentKind::Missed, tick)),
                _ => None,
            };
            match trouble {
                Some((kind, tick)) => {
                    let change = self.ledger.open_incident(&code, kind, tick, now).await?;
                    if matches!(change, IncidentChange::Opened | IncidentChange::Escalated) {
                        alerts.push(match kind {
                            IncidentKind::Late => Alert::Late {
                                code,
                                tick,
                                next_run: health.next_run,
                            },
                            _ => Alert::Missed {
                                code,
                                tick,
                                next_run: health.next_run,
                            },
                        });
                    }
                }
                // A job never run has nothing to recover from, a paused one is not due (its
                // incident ends once it runs again); any other state means its schedule is
                // kept again.
                None if matches!(health.state, HealthState::NeverRun | HealthState::Paused) => {}
                None => {
                    if let Some(incident) = self.ledger.resolve_incident(&code, now).await? {
                        alerts.push(Alert::BackOnSchedule {
                            code,
                            was: incident.kind.as_str().to_owned(),
                            tick: incident.tick,
                            since: incident.opened_at,
                        });
                    }
                }
            }
        }
        for alert in &alerts {
            self.send(alert.clone()).await;
        }
        Ok(alerts)
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
        self.abandon_expired().await;
        Ok(self.execute(job, micros(tick), kind, attempt.max(1)).await)
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

    /// Marks claims whose runner died as abandoned, and alerts if that makes a job's failures
    /// reach its threshold.
    async fn abandon_expired(&self) {
        let abandoned = match self.ledger.abandon_expired(micros(self.clock.now())).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "Could not check the ledger for abandoned runs");
                return;
            }
        };
        for run in abandoned {
            tracing::warn!(
                job.code = %run.code,
                run.id = %run.id,
                run.host = %run.host,
                run.pid = run.pid,
                "Run abandoned: its runner stopped renewing the lease"
            );
            if let Some(job) = self.jobs.iter().find(|j| j.code == run.code) {
                self.alert_if_failing(job, &run, run.message.as_deref().unwrap_or("abandoned"))
                    .await;
            }
        }
    }

    /// Decides what `job` needs at `now` and does it; `None` if nothing.
    async fn turn(&self, job: &Registered, now: DateTime<Utc>) -> Option<RunReport> {
        let effective = self.effective(job);
        if !effective.enabled {
            return None;
        }
        let last = match self.ledger.last_scheduled(&job.code).await {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(job.code = %job.code, error = %e, "Could not read the ledger");
                return Some(RunReport::without_run(
                    &job.code,
                    RunStatus::LedgerError,
                    None,
                    e.to_string(),
                ));
            }
        };
        let grace = delta(self.misfire_grace);
        let latest = effective.latest_at_or_before(now);
        let new_tick = match (latest, &last) {
            (Some(tick), Some(last)) if tick > last.tick => Some(tick),
            (Some(tick), None) if now - tick <= grace => Some(tick),
            _ => None,
        };
        if let Some(tick) = new_tick {
            if now - tick > grace && job.options.misfire == MisfirePolicy::Skip {
                return Some(self.skip(job, tick).await);
            }
            return Some(self.execute(job, tick, RunKind::Scheduled, 1).await);
        }
        // A run whose process died (marked abandoned when its lease ran out) did not fail: it
        // was cut short, maybe half-way. Its tick is run again at once as the next attempt
        // (the job's work is transactional, so the re-run finds the database as before or
        // after the dead run, never half-way), unless a newer tick has come since (that one
        // runs instead) or the job skips missed ticks and this one is past its grace.
        if let Some(last) = &last
            && last.outcome == RunOutcome::Abandoned
            && latest == Some(last.tick)
            && !(job.options.misfire == MisfirePolicy::Skip && now - last.tick > grace)
        {
            return Some(
                self.execute(job, last.tick, RunKind::Retry, last.attempt + 1)
                    .await,
            );
        }
        if let (Some(last), Some(after)) = (&last, job.options.retry_after_failure)
            && last.outcome.is_failure()
            && later(last.ended_at.unwrap_or(last.started_at), after).is_some_and(|at| now >= at)
        {
            return Some(
                self.execute(job, last.tick, RunKind::Retry, last.attempt + 1)
                    .await,
            );
        }
        None
    }

    fn new_run(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
    ) -> NewRun {
        let started_at = micros(self.clock.now());
        NewRun {
            code: job.code.clone(),
            tick,
            kind,
            attempt,
            started_at,
            lease_until: later(started_at, self.lease).unwrap_or(DateTime::<Utc>::MAX_UTC),
            host: self.host.clone(),
            pid: self.pid,
        }
    }

    async fn skip(&self, job: &Registered, tick: DateTime<Utc>) -> RunReport {
        let run = self.new_run(job, tick, RunKind::Scheduled, 1);
        let message = format!(
            "missed tick {} skipped (misfire policy: skip)",
            tick.with_timezone(&job.schedule.time_zone())
                .format("%Y-%m-%d %H:%M %Z")
        );
        let status = match self.ledger.record_skipped(&run, &message).await {
            Ok(true) => {
                tracing::info!(job.code = %job.code, %tick, "Missed tick skipped");
                RunStatus::Skipped
            }
            Ok(false) => RunStatus::Taken,
            Err(e) => {
                tracing::error!(job.code = %job.code, error = %e, "Could not record a skipped tick");
                return RunReport::without_run(
                    &job.code,
                    RunStatus::LedgerError,
                    Some(tick),
                    e.to_string(),
                );
            }
        };
        RunReport {
            kind: Some(RunKind::Scheduled),
            attempt: 1,
            ..RunReport::without_run(&job.code, status, Some(tick), message)
        }
    }

    /// Claims the run, runs the job, records the outcome, alerts.
    async fn execute(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
    ) -> RunReport {
        let counts = kind != RunKind::DryRun;
        let prior_failures = if counts {
            self.ledger
                .consecutive_failures(&job.code)
                .await
                .unwrap_or(0)
        } else {
            0
        };
        let mut run = self.new_run(job, tick, kind, attempt);
        let exclusive = counts && !job.options.allow_parallel_runs;
        let mut base = RunReport {
            kind: Some(kind),
            attempt,
            ..RunReport::without_run(&job.code, RunStatus::Taken, Some(tick), String::new())
        };
        let row = loop {
            match self.ledger.claim(&run, exclusive, run.started_at).await {
                // A one-off run (manual, at its own instant) whose runner died is run again as
                // its next attempt, as a worker does with a redelivered tick; without this, the
                // abandoned row would count as the one-off's run and it would never happen.
                Ok(Claim::Taken(other))
                    if kind == RunKind::Manual && other.outcome == RunOutcome::Abandoned =>
                {
                    run.attempt = other.attempt + 1;
                    base.attempt = run.attempt;
                }
                // Held by a run still going, perhaps of a process that died and whose lease
                // has not run out yet: the one-off waits (it is tried again when that lease
                // ends) rather than counting as done.
                Ok(Claim::Taken(other))
                    if kind == RunKind::Manual && other.outcome == RunOutcome::Running =>
                {
                    break Ok(Claim::Busy(other));
                }
                claim => break claim,
            }
        };
        let attempt = run.attempt;
        let row = match row {
            Ok(Claim::Claimed(row)) => row,
            Ok(Claim::Taken(other)) => {
                return RunReport {
                    run_id: Some(other.id),
                    message: format!("already claimed by {} (pid {})", other.host, other.pid),
                    ..base
                };
            }
            Ok(Claim::Busy(other)) => {
                tracing::info!(job.code = %job.code, %tick, holder = %other.id, "Job still running; tick waits");
                return RunReport {
                    status: RunStatus::Busy,
                    run_id: Some(other.id),
                    message: format!(
                        "previous run {} still running on {} (pid {})",
                        other.id, other.host, other.pid
                    ),
                    ..base
                };
            }
            Ok(_) => {
                return RunReport {
                    status: RunStatus::LedgerError,
                    message: "the ledger gave an unknown answer to a claim".to_owned(),
                    ..base
                };
            }
            Err(e) => {
                tracing::error!(job.code = %job.code, error = %e, "Could not claim a run");
                return RunReport {
                    status: RunStatus::LedgerError,
                    message: e.to_string(),
                    ..base
                };
            }
        };
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
                error = %crate::health::redact_emails(&message), "Job failed"
            ),
        }
        let mut report_message = message.clone();
        match self
            .ledger
            .finish(row.id, outcome, ended_at, &message)
            .await
        {
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
                    if prior_failures >= job.options.failures_before_alert.max(1) {
                        self.send(Alert::Recovered {
                            code: job.code.clone(),
                            after_failures: prior_failures,
                            tick,
                            host: self.host.clone(),
                        })
                        .await;
                    }
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

    /// Runs the job with its timeout, catching panics, renewing the lease meanwhile.
    async fn run_guarded(
        &self,
        job: &Registered,
        ctx: &JobContext,
        id: RunId,
    ) -> (RunOutcome, String) {
        let work = async {
            let run = AssertUnwindSafe(job.job.run(ctx)).catch_unwind();
            let result = match job.options.timeout {
                Some(limit) => {
                    let timer = async_io::Timer::after(limit);
                    futures::pin_mut!(run);
                    match future::select(run, timer).await {
                        Either::Left((result, _)) => Some(result),
                        Either::Right(_) => None,
                    }
                }
                None => Some(run.await),
            };
            match result {
                Some(Ok(Ok(message))) => (RunOutcome::Succeeded, message),
                Some(Ok(Err(error))) => (RunOutcome::Failed, error.to_string()),
                Some(Err(payload)) => (
                    RunOutcome::Failed,
                    format!("panicked: {}", panic_message(payload.as_ref())),
                ),
                None => (
                    RunOutcome::Failed,
                    format!(
                        "timed out after {}s",
                        job.options.timeout.unwrap_or_default().as_secs_f64()
                    ),
                ),
            }
        };
        let renew = async {
            let every = self.lease / 3;
            loop {
                async_io::Timer::after(every).await;
                let until =
                    later(micros(self.clock.now()), self.lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
                match self.ledger.renew(id, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job.code = %job.code, run.id = %id, "Lease lost: the run was marked abandoned");
                        future::pending::<()>().await;
                    }
                    Err(e) => {
                        tracing::warn!(job.code = %job.code, run.id = %id, error = %e, "Could not renew a lease")
                    }
                }
            }
        };
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

    async fn alert_if_failing(&self, job: &Registered, run: &JobRun, message: &str) {
        let failures = match self.ledger.consecutive_failures(&job.code).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(job.code = %job.code, error = %e, "Could not count failures for alerting");
                return;
            }
        };
        if failures == job.options.failures_before_alert.max(1) {
            self.send(Alert::Failing {
                code: job.code.clone(),
                consecutive_failures: failures,
                message: message.to_owned(),
                tick: run.tick,
                host: run.host.clone(),
            })
            .await;
        }
    }

    async fn send(&self, alert: Alert) {
        if let Err(e) = self.alert.alert(&alert).await {
            tracing::warn!(job.code = %alert.code(), error = %e, "Could not deliver an alert");
        }
    }
}
