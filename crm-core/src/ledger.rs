//! The run ledger: one row per run of a scheduled job, shared by every process that runs jobs.
//!
//! It is django-cron's `CronJobLog`, made safe across processes and machines:
//!
//! - a run is written as [`RunOutcome::Running`] *before* the job starts, so a crash ends as
//!   [`RunOutcome::Abandoned`], never as a success;
//! - a tick is claimed atomically ([`RunLedger::claim`]): the key `(code, kind, tick, attempt)` is
//!   unique, so two processes on one SQLite file or many machines on one PostgreSQL never run
//!   the same tick twice;
//! - a job that does not allow parallel runs cannot be claimed while another of its runs holds a
//!   live lease, and that check is made in the same transaction as the insert;
//! - a running claim holds a lease its runner renews ([`RunLedger::renew`]); a claim whose lease
//!   expired (its holder died) is marked abandoned and frees the job.
//!
//! Implementations: [`crate::Database`] (table `job_runs`, SQLite and PostgreSQL) and
//! [`MemoryLedger`] (one process; for embedding and tests).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;

#[cfg(feature = "_store")]
mod claim_if_clear;
#[cfg(feature = "sqlite")]
mod group_commit;
mod memory;
#[cfg(feature = "_store")]
mod sql;

#[cfg(feature = "sqlite")]
pub(crate) use group_commit::GroupCommit;
pub use memory::MemoryLedger;

/// Messages longer than this many characters are cut (a job's error can be a whole page).
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Longest job code the ledger accepts.
pub const MAX_CODE_CHARS: usize = 200;

/// The most rows [`RunLedger::history`] returns at once.
pub const MAX_HISTORY_LIMIT: u32 = 10_000;

/// How many days finished runs are kept by default (`CRM_JOB_RUNS_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// How many of each job's latest runs [`RunLedger::prune`] keeps however old, by default: at
/// least the jobs crate's health window (`crm_jobs::health::HEALTH_WINDOW`, 20), so a job's
/// health, durations and failure streak read the same after a prune.
pub const DEFAULT_KEEP_PER_JOB: u32 = 20;

/// Rows [`RunLedger::prune`] deletes per statement by default.
pub const DEFAULT_PRUNE_BATCH: u32 = 1_000;

/// The pause between two batches of [`RunLedger::prune`] by default: room for other writers
/// (SQLite has one write lock; its waiting writers poll for it).
pub const DEFAULT_PRUNE_PAUSE: Duration = Duration::from_millis(10);

/// What [`RunLedger::prune`] may delete, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Finished runs that started and ended before this instant may go (as may one-off runs
    /// asked for before it that ran, and incidents resolved before it).
    pub before: DateTime<Utc>,
    /// Each job's latest this-many runs stay, however old.
    pub keep_per_job: u32,
    /// Rows deleted per statement (each statement is its own short transaction).
    pub batch: u32,
    /// Pause between batches (the SQL ledgers pause at least as long as the batch took, so a
    /// prune holds the database at most half the time); zero: no pause at all.
    pub pause: Duration,
}

impl Retention {
    /// Everything finished before `before` may go, with the default batches and keeping each
    /// job's latest [`DEFAULT_KEEP_PER_JOB`] runs.
    pub fn before(before: DateTime<Utc>) -> Self {
        Self {
            before,
            keep_per_job: DEFAULT_KEEP_PER_JOB,
            batch: DEFAULT_PRUNE_BATCH,
            pause: DEFAULT_PRUNE_PAUSE,
        }
    }

    /// Keeps each job's latest `n` runs (capped at [`MAX_HISTORY_LIMIT`]).
    #[must_use]
    pub fn keep_per_job(mut self, n: u32) -> Self {
        self.keep_per_job = n.min(MAX_HISTORY_LIMIT);
        self
    }

    /// Deletes `n` rows per statement (1 to 100,000).
    #[must_use]
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n.clamp(1, 100_000);
        self
    }

    /// Pauses this long between batches.
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// What [`RunLedger::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Runs.
    pub runs: u64,
    /// One-off runs that had run.
    pub one_off_runs: u64,
    /// Resolved incidents.
    pub incidents: u64,
    /// The CRM's restock idempotency keys (`updateLowStockProducts`' `idempotencyKey`), by
    /// the database's ledger only: a [`MemoryLedger`] has none.
    pub restock_keys: u64,
    /// Statements that deleted runs.
    pub batches: u64,
}

/// The id of a run in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunOutcome {
    /// Claimed and started; not finished yet (or its holder died and nobody noticed yet).
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error, panicked or timed out.
    Failed,
    /// Not run, on purpose (e.g. a missed tick under the skip misfire policy).
    Skipped,
    /// Its runner stopped renewing the lease (crashed or was killed) before it finished.
    Abandoned,
}

impl RunOutcome {
    /// The word stored in the ledger and shown by `crm jobs history`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Abandoned => "abandoned",
        }
    }

    /// Whether this outcome counts towards an alert (a failure or a crash).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Abandoned)
    }
}

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunKind {
    /// A tick of the job's schedule.
    Scheduled,
    /// A failed tick run again after the job's retry delay (attempt 2, 3, …).
    Retry,
    /// Started by hand (`crm jobs run --force`), at a tick of its own.
    Manual,
    /// Started by hand with `--dry-run`: changes nothing, counts for nothing.
    DryRun,
}

impl RunKind {
    /// The word stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Retry => "retry",
            Self::Manual => "manual",
            Self::DryRun => "dry_run",
        }
    }
}

macro_rules! word_from_str {
    ($ty:ty, $what:literal, [$($variant:ident),*]) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                $(if s == <$ty>::$variant.as_str() { return Ok(<$ty>::$variant); })*
                Err(format!(concat!("unknown ", $what, " '{}'"), s))
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
word_from_str!(
    RunOutcome,
    "run outcome",
    [Running, Succeeded, Failed, Skipped, Abandoned]
);
word_from_str!(RunKind, "run kind", [Scheduled, Retry, Manual, DryRun]);
word_from_str!(IncidentKind, "incident kind", [Late, Missed]);

/// What is wrong with a job's schedule (its runs' failures are counted from the runs instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IncidentKind {
    /// A due tick has not started within the grace period.
    Late,
    /// A tick passed (the next one came) without a run, or was skipped.
    Missed,
}

impl IncidentKind {
    /// The word stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Late => "late",
            Self::Missed => "missed",
        }
    }
}

/// A job's schedule incident: opened when it is first seen late or missed, escalated once from
/// late to missed, resolved when the job runs again. At most one is open per job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The job's code.
    pub code: String,
    /// How bad it got.
    pub kind: IncidentKind,
    /// The tick that was late or missed (the latest one seen).
    pub tick: DateTime<Utc>,
    /// When it was first seen.
    pub opened_at: DateTime<Utc>,
    /// When it ended; `None` while open.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A late or missed tick as a watcher saw it: what [`RunLedger::open_incident`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenIncident<'a> {
    /// The job's code.
    pub code: &'a str,
    /// How bad it is.
    pub kind: IncidentKind,
    /// The tick that is late or missed.
    pub tick: DateTime<Utc>,
    /// When it was seen.
    pub at: DateTime<Utc>,
}

/// What [`RunLedger::open_incident`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncidentChange {
    /// No incident was open: this one is new (tell someone).
    Opened,
    /// A late incident became a missed one (tell someone).
    Escalated,
    /// This incident was already known (someone was told already).
    Known,
}

/// A run about to be claimed (or recorded as skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The job's code.
    pub code: String,
    /// The scheduled instant this run is for (for a manual run, when it was asked for).
    pub tick: DateTime<Utc>,
    /// Why it runs.
    pub kind: RunKind,
    /// 1 for a tick's first run, then 2, 3, … for its retries.
    pub attempt: u32,
    /// When it starts.
    pub started_at: DateTime<Utc>,
    /// Until when the claim holds unless renewed.
    pub lease_until: DateTime<Utc>,
    /// The host name of the process running it.
    pub host: String,
    /// The process id running it.
    pub pid: u32,
}

/// How a run ended: what [`RunLedger::finish`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd<'a> {
    /// Succeeded, failed or timed out (not running, skipped or abandoned).
    pub outcome: RunOutcome,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What it said (clipped to [`MAX_MESSAGE_CHARS`] characters when stored).
    pub message: &'a str,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The row's id.
    pub id: RunId,
    /// The job's code.
    pub code: String,
    /// The scheduled instant this run is for.
    pub tick: DateTime<Utc>,
    /// Why it ran.
    pub kind: RunKind,
    /// 1 for a tick's first run, more for retries.
    pub attempt: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished; `None` while running.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it went.
    pub outcome: RunOutcome,
    /// The job's outcome message or error, or why it was skipped or abandoned.
    pub message: Option<String>,
    /// Until when a running claim holds.
    pub lease_until: Option<DateTime<Utc>>,
    /// The host that ran it.
    pub host: String,
    /// The process id that ran it.
    pub pid: u32,
}

impl JobRun {
    /// How long it ran (or has been running until `now`).
    pub fn duration(&self, now: DateTime<Utc>) -> chrono::TimeDelta {
        self.ended_at.unwrap_or(now) - self.started_at
    }
}

/// A job's finished runs of one outcome, counted since the ledger began (a prune does not
/// lower it): [`RunLedger::run_counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunCount {
    /// The job's code.
    pub code: String,
    /// The outcome counted.
    pub outcome: RunOutcome,
    /// How many runs ended so (dry runs left out).
    pub runs: u64,
    /// Their durations, summed.
    pub total_duration: Duration,
    /// The latest end of such a run still in the ledger.
    pub last_ended: Option<DateTime<Utc>>,
}

/// What [`RunLedger::claim`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The run is ours: it was written as running; run the job, then finish it.
    Claimed(JobRun),
    /// Someone already claimed this tick (and attempt): do not run it.
    Taken(JobRun),
    /// The job does not allow parallel runs and this one holds a live lease: try later.
    Busy(JobRun),
}

/// The run ledger. Object-safe, so a runner holds any implementation as `Arc<dyn RunLedger>`.
///
/// Instants are passed in rather than read from a clock, so the callers' injected clock decides
/// what "expired" means.
#[async_trait]
pub trait RunLedger: Send + Sync + fmt::Debug {
    /// Atomically: marks this job's running claims whose lease ended before `now` as abandoned;
    /// then, if `exclusive` and another run of the job still holds a live lease, answers
    /// [`Claim::Busy`]; else inserts `run` as running unless its key `(code, kind, tick,
    /// attempt)` exists ([`Claim::Taken`]).
    async fn claim(&self, run: &NewRun, exclusive: bool, now: DateTime<Utc>) -> Result<Claim>;

    /// The claim of a run with nothing in its way, in one step (one statement where the ledger
    /// is a database): inserts `run` as running and answers it with the job's
    /// [`consecutive_failures`](RunLedger::consecutive_failures) before it, provided that no
    /// running claim of any job has a lease that ended before `run.started_at` (the instant the
    /// claim is judged at), that `run`'s key is free, and, if `exclusive`, that no other run of
    /// the job is running. Otherwise (or when the ledger has no such step: the default)
    /// `None`, and nothing is written: the caller takes the full path
    /// ([`abandon_expired`](RunLedger::abandon_expired),
    /// [`consecutive_failures`](RunLedger::consecutive_failures), [`claim`](RunLedger::claim)),
    /// which decides the same as this step whenever this step claims, at a fraction of the
    /// statements: a broker worker pays it for every task.
    async fn claim_if_clear(&self, run: &NewRun, exclusive: bool) -> Result<Option<(JobRun, u32)>> {
        let _ = (run, exclusive);
        Ok(None)
    }

    /// Records `run` as skipped (finished at its start) unless its key exists; `true` if written.
    async fn record_skipped(&self, run: &NewRun, message: &str) -> Result<bool>;

    /// Extends a running claim's lease; `false` if the run is no longer running (someone marked
    /// it abandoned).
    async fn renew(&self, id: RunId, lease_until: DateTime<Utc>) -> Result<bool>;

    /// Records how a run ended. A run marked abandoned meanwhile still gets its real outcome
    /// (the truth beats the guess); returns `false` in that case, `true` if it was running.
    async fn finish(&self, id: RunId, end: RunEnd<'_>) -> Result<bool>;

    /// Marks every running claim (of any job) whose lease ended before `now` as abandoned, and
    /// returns them.
    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>>;

    /// The job's latest scheduled run or retry (by tick, then attempt), whatever its outcome.
    async fn last_scheduled(&self, code: &str) -> Result<Option<JobRun>>;

    /// The latest run (not counting dry runs) of every job that has one, by code.
    async fn last_runs(&self) -> Result<Vec<JobRun>>;

    /// Past runs, newest first: of one job, or of all; at most `limit` (capped at
    /// [`MAX_HISTORY_LIMIT`]).
    async fn history(&self, code: Option<&str>, limit: u32) -> Result<Vec<JobRun>>;

    /// How many of the job's latest finished runs failed (or were abandoned) in a row, since its
    /// last success. Dry runs and skips do not count.
    async fn consecutive_failures(&self, code: &str) -> Result<u32>;

    /// The runs of a job (or of all jobs) still marked running.
    async fn running(&self, code: Option<&str>) -> Result<Vec<JobRun>>;

    /// For every job in one query: its latest `per_job` runs (capped at [`MAX_HISTORY_LIMIT`]),
    /// plus, however old, its latest success, its latest failure (or abandoned run) and its
    /// latest scheduled run or retry (by tick); dry runs left out. Ordered by code, then newest
    /// first (by start, then id). What the health of every job is computed from.
    async fn recent_runs(&self, per_job: u32) -> Result<Vec<JobRun>>;

    /// Records that the job's schedule is in trouble at `tick`, seen at `now`: opens an
    /// incident if none is open, escalates an open late one to missed, otherwise changes
    /// nothing. Atomic, so of several processes watching, exactly one hears `Opened` (or
    /// `Escalated`) and alerts.
    async fn open_incident(&self, seen: SeenIncident<'_>) -> Result<IncidentChange>;

    /// Resolves the job's open incident at `now` and returns it; `None` if none was open (or
    /// another process resolved it first).
    async fn resolve_incident(&self, code: &str, now: DateTime<Utc>) -> Result<Option<Incident>>;

    /// The incidents still open, by code.
    async fn open_incidents(&self) -> Result<Vec<Incident>>;

    /// Every job's finished runs per outcome, counted since the ledger began (also those a
    /// prune deleted; a run marked abandoned that later reports its real outcome counts under
    /// both, so no count ever goes down), with their summed durations and the latest end of
    /// such a run still in the ledger; dry runs left out. Ordered by code, then outcome. What a
    /// Prometheus scrape reads (`crm_job_runs_total`).
    async fn run_counts(&self) -> Result<Vec<RunCount>>;

    /// Retention: deletes the finished runs that started and ended before `retention.before`,
    /// oldest first, in batches of `retention.batch` rows (each one short statement, with
    /// `retention.pause` between them, so concurrent claims and finishes wait for one batch at
    /// most). It keeps, however old:
    ///
    /// - every run still running;
    /// - each job's latest `retention.keep_per_job` runs and the landmarks
    ///   [`RunLedger::recent_runs`] and [`RunLedger::last_runs`] read (latest success, latest
    ///   failure or abandoned run, latest scheduled run or retry, latest run), so health,
    ///   `crm jobs list` and the due-tick logic see the same after a prune; with
    ///   `keep_per_job` at least a job's `failures_before_alert`, a failure streak never drops
    ///   back under the alert threshold (no second alert for one streak);
    /// - the run of a one-off run still listed (without it the one-off would look pending and
    ///   run again). One-off runs asked for before `retention.before` that have a finished run
    ///   are deleted first, so their runs may go too.
    ///
    /// Also deletes incidents resolved before `retention.before` and, in [`crate::Database`],
    /// the restock idempotency keys taken before it (they only guard a tick's re-runs, which
    /// come within hours; without this they would pile up, one per tick, for ever). Safe to run from several
    /// processes at once and to interrupt: every batch stands on its own.
    ///
    /// The default keeps everything and says so (nothing pruned), so a ledger written outside
    /// this crate (a wrapper in a test, say) keeps compiling; [`crate::Database`] and
    /// [`MemoryLedger`] implement it.
    async fn prune(&self, retention: &Retention) -> Result<Pruned> {
        let _ = retention;
        Ok(Pruned::default())
    }
}

/// The ids [`RunLedger::prune`] keeps whatever their age: what `recent_runs(keep_per_job)` and
/// `last_runs()` return. Read once per prune: a run that becomes a landmark later is newer than
/// the cutoff anyway.
pub(crate) async fn kept_ids(
    ledger: &(impl RunLedger + ?Sized),
    keep_per_job: u32,
) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = ledger
        .recent_runs(keep_per_job)
        .await?
        .iter()
        .chain(ledger.last_runs().await?.iter())
        .map(|run| run.id.0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The message cut to [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn clip_message(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// Checks what every implementation refuses alike.
pub(crate) fn validate_new_run(run: &NewRun) -> Result<()> {
    let chars = run.code.chars().count();
    if chars == 0 || chars > MAX_CODE_CHARS {
        return Err(crate::CoreError::validation(
            "code",
            format!("a job code has 1 to {MAX_CODE_CHARS} characters"),
        ));
    }
    if run.attempt == 0 {
        return Err(crate::CoreError::validation(
            "attempt",
            "attempts count from 1",
        ));
    }
    Ok(())
}

/// The outcomes a run can end from, in the order an end tries them: a run only moves running ->
/// abandoned (its lease ran out) -> its real outcome, so two single-statement updates tell
/// which it was without a transaction.
#[cfg(feature = "_store")]
pub(crate) const ENDS_FROM: [RunOutcome; 2] = [RunOutcome::Running, RunOutcome::Abandoned];

/// Checks the outcome [`RunLedger::finish`] records: a finished run cannot be running.
pub(crate) fn validate_finish(outcome: RunOutcome) -> Result<()> {
    if outcome == RunOutcome::Running {
        return Err(crate::CoreError::validation(
            "outcome",
            "a finished run cannot be running",
        ));
    }
    Ok(())
}

/// The message recorded on a claim found expired.
pub(crate) fn abandoned_message(run_host: &str, pid: u32) -> String {
    format!("abandoned: the runner ({run_host}, pid {pid}) stopped renewing its lease")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_and_kind_words_round_trip() {
        for outcome in [
            RunOutcome::Running,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Skipped,
            RunOutcome::Abandoned,
        ] {
            assert_eq!(outcome.to_string().parse::<RunOutcome>(), Ok(outcome));
        }
        for kind in [
            RunKind::Scheduled,
            RunKind::Retry,
            RunKind::Manual,
            RunKind::DryRun,
        ] {
            assert_eq!(kind.to_string().parse::<RunKind>(), Ok(kind));
        }
        for kind in [IncidentKind::Late, IncidentKind::Missed] {
            assert_eq!(kind.to_string().parse::<IncidentKind>(), Ok(kind));
        }
        assert!("done".parse::<RunOutcome>().is_err());
    }

    #[test]
    fn long_messages_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let clipped = clip_message(&long);
        assert_eq!(clipped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip_message("short"), "short");
    }
}
