//! Run-time schedule overrides: what an operator changes about the scheduled jobs without a
//! deploy (django-celery-beat's admin page, done our way).
//!
//! Per job: an enabled flag, a replacement schedule (stored as the schedule's text form, which
//! the jobs crate parses and validates *before* it calls [`OverrideStore::apply`]), and one-off
//! runs at given instants. The code's schedule stays the default: a job nobody touched has no
//! override, and [`OverrideChange::DefaultSchedule`] restores the code's schedule.
//!
//! Every change is one transaction that writes the new state, an audit row (who, when, what)
//! and increments the single-row change counter ([`OverrideStore::version`]). A running
//! scheduler polls that one integer and reloads the overrides only when it moved.
//!
//! Implementations: [`crate::Database`] (SQLite and PostgreSQL, migration 0004) and
//! [`MemoryOverrides`] (one process; for embedding and tests).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{CoreError, Result};

mod memory;
#[cfg(feature = "_store")]
mod sql;

pub use memory::MemoryOverrides;

/// Longest schedule text an override stores.
pub const MAX_SCHEDULE_CHARS: usize = 500;

/// Longest actor name recorded in the audit (longer ones are cut).
pub const MAX_ACTOR_CHARS: usize = 200;

/// The most audit rows [`OverrideStore::audit`] returns at once.
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

/// One job's override: the state an operator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOverride {
    /// The job's code.
    pub code: String,
    /// `false` while the job is paused: it does not run from its schedule or one-off runs.
    pub enabled: bool,
    /// The replacement schedule's text form; `None` means the code's own schedule.
    pub schedule: Option<String>,
    /// When the effective schedule or the enabled flag last changed. Ticks at or before this
    /// instant never count as missed, so resuming a job or changing its schedule does not
    /// run a "missed" tick at once.
    pub since: DateTime<Utc>,
    /// Who made the last change (`cli:alice`, `api`).
    pub changed_by: String,
    /// When the last change was made.
    pub changed_at: DateTime<Utc>,
}

/// A one-off run asked for at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOffRun {
    /// The row's id.
    pub id: i64,
    /// The job's code.
    pub code: String,
    /// When it should run (the tick it is claimed at, as a manual run).
    pub at: DateTime<Utc>,
    /// Who asked for it.
    pub requested_by: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
}

/// A change an operator makes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverrideChange {
    /// Resume the job (its schedule applies again from now on).
    Enable,
    /// Pause the job: it runs no more until enabled.
    Disable,
    /// Replace the job's schedule with this one (its text form, already validated).
    Schedule(String),
    /// Remove the replacement schedule: the code's own applies again.
    DefaultSchedule,
    /// Run the job once at this instant.
    RunAt(DateTime<Utc>),
}

impl OverrideChange {
    /// The word recorded in the audit.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Schedule(_) => "schedule",
            Self::DefaultSchedule => "default_schedule",
            Self::RunAt(_) => "run_at",
        }
    }

    /// The detail recorded in the audit (the schedule, or the instant).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Schedule(text) => Some(text.clone()),
            Self::RunAt(at) => Some(at.to_rfc3339()),
            _ => None,
        }
    }
}

/// A change to one job, with who asks for it and when: what [`OverrideStore::apply`] writes
/// (the job's new state, its audit row and the counter's increment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeRequest<'a> {
    /// The job's code.
    pub code: &'a str,
    /// What changes.
    pub change: &'a OverrideChange,
    /// Who asks (`cli:alice`, `api`); clipped when stored.
    pub actor: &'a str,
    /// When (kept to whole microseconds).
    pub at: DateTime<Utc>,
}

/// One row of the audit: who changed what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The row's id (increasing).
    pub id: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it (`cli:alice`, `api`).
    pub actor: String,
    /// The job's code.
    pub code: String,
    /// `enable`, `disable`, `schedule`, `default_schedule` or `run_at`.
    pub action: String,
    /// The schedule or instant, for the actions that have one.
    pub detail: Option<String>,
}

/// Everything a runner needs, read at one version of the change counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverrideSnapshot {
    /// The change counter the rest was read at (or after: a change made meanwhile shows up
    /// again at the next poll, so nothing is missed).
    pub version: u64,
    /// The overrides of every job that has one.
    pub overrides: Vec<JobOverride>,
    /// One-off runs not run yet (the SQL stores leave out those that finished in the run
    /// ledger; one still running is kept, as its runner may die: the runner's claim decides).
    pub pending: Vec<OneOffRun>,
}

/// Where overrides are kept. Object-safe: a runner holds any implementation as
/// `Arc<dyn OverrideStore>`. Instants are passed in, so the callers' injected clock decides.
#[async_trait]
pub trait OverrideStore: Send + Sync + fmt::Debug {
    /// Applies `change` to the job `code` in one transaction with its audit row and the
    /// counter's increment; returns the new counter. The caller validated the change (a known
    /// code, a schedule that parses); this refuses only what breaks the storage's own rules.
    async fn apply(&self, request: ChangeRequest<'_>) -> Result<u64>;

    /// The change counter: 0 until the first change, then one more per change.
    async fn version(&self) -> Result<u64>;

    /// Every override and the pending one-off runs.
    async fn snapshot(&self) -> Result<OverrideSnapshot>;

    /// The audit, newest first: of one job or of all; at most `limit` (capped at
    /// [`MAX_AUDIT_LIMIT`]).
    async fn audit(&self, code: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>>;
}

/// What an operator sees of one job after a change (the API's and CLI's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// The job's code.
    pub code: String,
    /// Whether it runs (`false`: paused).
    pub enabled: bool,
    /// The schedule in force, as text.
    pub schedule: String,
    /// The code's own schedule, as text.
    pub default_schedule: String,
    /// Whether `schedule` is an operator's replacement.
    pub overridden: bool,
    /// Its next scheduled run (`None` while paused or if the schedule never fires again).
    pub next_run: Option<DateTime<Utc>>,
    /// One-off runs still to come, earliest first.
    pub pending_runs: Vec<DateTime<Utc>>,
}

/// The operator's controls over the jobs, validated: implemented by the jobs crate's runner,
/// which knows the job codes and parses schedules; the GraphQL server and the CLI call it.
///
/// Errors: [`CoreError::NotFound`] (entity `job`) for an unknown code,
/// [`CoreError::Validation`] for a bad schedule or instant; nothing is stored then.
#[async_trait]
pub trait JobControl: Send + Sync + fmt::Debug {
    /// Pauses (`false`) or resumes (`true`) the job.
    async fn set_enabled(&self, code: &str, enabled: bool, actor: &str) -> Result<JobState>;

    /// Replaces the job's schedule with `expression` (`0 2 * * 0 in Europe/London`,
    /// `every 5 minutes`, `at 08:00`), or restores the code's own with `None`.
    async fn set_schedule(
        &self,
        code: &str,
        expression: Option<&str>,
        actor: &str,
    ) -> Result<JobState>;

    /// Runs the job once at `at`.
    async fn schedule_run(&self, code: &str, at: DateTime<Utc>, actor: &str) -> Result<JobState>;

    /// The job's current state.
    async fn state(&self, code: &str) -> Result<JobState>;
}

/// The state of a job with no override.
pub(crate) fn default_override(code: &str) -> JobOverride {
    JobOverride {
        code: code.to_owned(),
        enabled: true,
        schedule: None,
        since: DateTime::<Utc>::UNIX_EPOCH,
        changed_by: String::new(),
        changed_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// The override after `change` (not for [`OverrideChange::RunAt`], which adds a run instead).
/// `since` moves only when the job's state really changes, so a repeated "enable" does not
/// drop a tick that is due right now.
pub(crate) fn next_override(
    current: Option<&JobOverride>,
    code: &str,
    change: &OverrideChange,
    actor: &str,
    now: DateTime<Utc>,
) -> JobOverride {
    let mut next = current.cloned().unwrap_or_else(|| default_override(code));
    let before = (next.enabled, next.schedule.clone());
    match change {
        OverrideChange::Enable => next.enabled = true,
        OverrideChange::Disable => next.enabled = false,
        OverrideChange::Schedule(text) => next.schedule = Some(text.clone()),
        OverrideChange::DefaultSchedule => next.schedule = None,
        OverrideChange::RunAt(_) => {}
    }
    if (next.enabled, next.schedule.clone()) != before {
        next.since = now;
    }
    next.changed_by = actor.to_owned();
    next.changed_at = now;
    next
}

/// Checks what every implementation refuses alike.
pub(crate) fn validate_change(code: &str, change: &OverrideChange, actor: &str) -> Result<()> {
    let chars = code.chars().count();
    if chars == 0 || chars > crate::ledger::MAX_CODE_CHARS {
        return Err(CoreError::validation(
            "code",
            format!(
                "a job code has 1 to {} characters",
                crate::ledger::MAX_CODE_CHARS
            ),
        ));
    }
    if actor.is_empty() {
        return Err(CoreError::validation("actor", "say who makes the change"));
    }
    if let OverrideChange::Schedule(text) = change {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_SCHEDULE_CHARS {
            return Err(CoreError::validation(
                "schedule",
                format!("a schedule has 1 to {MAX_SCHEDULE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

/// The actor cut to [`MAX_ACTOR_CHARS`] characters.
pub(crate) fn clip_actor(actor: &str) -> String {
    actor.chars().take(MAX_ACTOR_CHARS).collect()
}

/// What every implementation does first with a change: checks it ([`validate_change`]), and
/// gives the actor as stored (clipped) and `now` as stored (whole microseconds, so the memory
/// store keeps what the SQL stores would).
pub(crate) fn accept_change(request: &ChangeRequest<'_>) -> Result<(String, DateTime<Utc>)> {
    validate_change(request.code, request.change, request.actor)?;
    Ok((
        clip_actor(request.actor),
        crate::domain::truncate_to_micros(request.at),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn repeating_a_change_keeps_the_instant_the_state_last_changed() {
        let first = next_override(
            None,
            "job",
            &OverrideChange::Disable,
            "cli:a",
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(first.since, at("2026-01-01T00:00:00Z"));
        let again = next_override(
            Some(&first),
            "job",
            &OverrideChange::Disable,
            "cli:b",
            at("2026-01-02T00:00:00Z"),
        );
        assert_eq!(again.since, at("2026-01-01T00:00:00Z"));
        assert_eq!(again.changed_by, "cli:b");
        assert_eq!(again.changed_at, at("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn enabling_a_job_nobody_touched_changes_nothing_it_runs() {
        let next = next_override(
            None,
            "job",
            &OverrideChange::Enable,
            "api",
            at("2026-01-01T00:00:00Z"),
        );
        assert!(next.enabled);
        assert_eq!(next.since, DateTime::<Utc>::UNIX_EPOCH);
    }

    #[test]
    fn empty_codes_and_overlong_schedules_are_refused() {
        assert!(validate_change("", &OverrideChange::Enable, "api").is_err());
        let long = OverrideChange::Schedule("x".repeat(MAX_SCHEDULE_CHARS + 1));
        assert!(validate_change("job", &long, "api").is_err());
        assert!(validate_change("job", &OverrideChange::Enable, "").is_err());
    }
}
