//! The runner's side of run-time overrides: reading them (only when the store's change counter
//! moved), the effective schedule of each job, and the operator's validated controls
//! ([`JobControl`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use crm_core::CoreError;
use crm_core::overrides::{
    ChangeRequest, JobControl, JobState, OneOffRun, OverrideChange, OverrideStore,
};

use super::{Registered, Runner, RunnerError, micros};
use crate::schedule::Schedule;

/// How far in the past a one-off run may be asked for (a clock a little behind the caller's).
const ONE_OFF_PAST_TOLERANCE: TimeDelta = TimeDelta::minutes(1);

/// The overrides as last read.
#[derive(Debug, Default)]
pub(super) struct OverrideCache {
    /// The change counter they were read at; `None` before the first read.
    version: Option<u64>,
    by_code: HashMap<String, CachedOverride>,
    pending: Vec<OneOffRun>,
    /// One-off runs this runner claimed or found taken: not tried again.
    pub(super) done: HashSet<i64>,
}

#[derive(Debug, Clone)]
struct CachedOverride {
    enabled: bool,
    schedule: Option<Schedule>,
    since: DateTime<Utc>,
}

/// A job's schedule as it stands: the code's or an operator's replacement, paused or not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveSchedule {
    /// `false` while an operator has the job paused.
    pub enabled: bool,
    /// The schedule in force.
    pub schedule: Schedule,
    /// Ticks at or before this instant do not count (the job's state changed then), so a
    /// resumed or rescheduled job does not catch up on ticks from before the change.
    pub since: Option<DateTime<Utc>>,
    /// Whether `schedule` is an operator's replacement.
    pub overridden: bool,
}

impl EffectiveSchedule {
    /// A schedule no operator changed.
    pub fn fixed(schedule: Schedule) -> Self {
        Self {
            enabled: true,
            schedule,
            since: None,
            overridden: false,
        }
    }

    /// The latest tick at or before `now` that counts; `None` while paused.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.enabled {
            return None;
        }
        self.schedule
            .latest_at_or_before(now)
            .filter(|tick| self.since.is_none_or(|since| *tick > since))
    }

    /// The next tick after `now` that will run; `None` while paused.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.enabled {
            return None;
        }
        let from = self.since.map_or(now, |since| since.max(now));
        self.schedule.next_after(from)
    }
}

impl Runner {
    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, OverrideCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store of operators' changes, if the runner has one.
    pub fn override_store(&self) -> Option<&std::sync::Arc<dyn OverrideStore>> {
        self.overrides.as_ref()
    }

    /// Reads the store's change counter and, only if it moved since the last read, every
    /// override; `true` if something changed. Cheap when nothing did: one row of one table.
    pub async fn refresh_overrides(&self) -> Result<bool, RunnerError> {
        let Some(store) = &self.overrides else {
            return Ok(false);
        };
        let version = store.version().await?;
        if self.cache().version == Some(version) {
            return Ok(false);
        }
        let snapshot = store.snapshot().await?;
        let mut by_code = HashMap::new();
        for o in snapshot.overrides {
            let schedule = match &o.schedule {
                None => None,
                Some(text) => match text.parse::<Schedule>() {
                    Ok(schedule) => Some(schedule.or_time_zone(self.zone)),
                    Err(e) => {
                        // Validated when stored; a zone database that lost a name could still
                        // make it unreadable. The code's schedule is the safe fallback.
                        tracing::warn!(job.code = %o.code, schedule = %text, error = %e,
                            "Stored schedule override unreadable; using the code's schedule");
                        None
                    }
                },
            };
            by_code.insert(
                o.code,
                CachedOverride {
                    enabled: o.enabled,
                    schedule,
                    since: o.since,
                },
            );
        }
        let mut cache = self.cache();
        if cache.version.is_some_and(|v| v >= snapshot.version) {
            return Ok(false); // a concurrent refresh got there first, with data as new
        }
        let first = cache.version.is_none();
        cache.version = Some(snapshot.version);
        cache.by_code = by_code;
        cache.pending = snapshot.pending;
        drop(cache);
        if !first {
            self.overrides_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.overrides_event.notify(usize::MAX);
            tracing::info!(
                version = snapshot.version,
                "Schedule overrides changed; reloaded"
            );
        }
        Ok(true)
    }

    /// How many times the overrides were reloaded with a change since the first read.
    ///
    /// A scheduler cannot rely on [`Runner::refresh_overrides`] answering `true` to learn of a
    /// change: the first caller to see the counter move reloads the cache and gets the `true`,
    /// and in `crm serve --scheduler` that is usually the API's `scheduleJobRun` or
    /// `setJobSchedule` itself (or `/status`), in this very process. The scheduler then slept
    /// on to its old wakeup, running a one-off run asked for in two seconds only at the next
    /// tick, minutes or hours late. It compares this number instead, and listens on
    /// [`Runner::overrides_reloaded`] to hear of a change made in-process at once.
    pub(crate) fn overrides_generation(&self) -> u64 {
        self.overrides_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Notified each time [`Runner::overrides_generation`] moves.
    pub(crate) fn overrides_reloaded(&self) -> event_listener::EventListener {
        self.overrides_event.listen()
    }

    pub(super) async fn refresh_or_warn(&self) {
        if let Err(e) = self.refresh_overrides().await {
            tracing::warn!(error = %e, "Could not read the schedule overrides; keeping the last ones read");
        }
    }

    pub(super) fn effective(&self, job: &Registered) -> EffectiveSchedule {
        match self.cache().by_code.get(&job.code) {
            None => EffectiveSchedule {
                enabled: true,
                schedule: job.schedule.clone(),
                since: None,
                overridden: false,
            },
            Some(o) => EffectiveSchedule {
                enabled: o.enabled,
                overridden: o.schedule.is_some(),
                schedule: o.schedule.clone().unwrap_or_else(|| job.schedule.clone()),
                since: Some(o.since),
            },
        }
    }

    /// The job's schedule as it stands (as last read from the override store); `None` for an
    /// unknown code.
    pub fn effective_of(&self, code: &str) -> Option<EffectiveSchedule> {
        let job = self.jobs.iter().find(|j| j.code == code)?;
        Some(self.effective(job))
    }

    /// The schedule `code` runs on now (an operator's replacement, else the code's), as last
    /// read from the override store; `None` for an unknown code.
    pub fn effective_schedule(&self, code: &str) -> Option<Schedule> {
        let job = self.jobs.iter().find(|j| j.code == code)?;
        Some(self.effective(job).schedule)
    }

    /// Whether `code` runs (`false`: an operator paused it), as last read; `None` for an
    /// unknown code.
    pub fn is_enabled(&self, code: &str) -> Option<bool> {
        let job = self.jobs.iter().find(|j| j.code == code)?;
        Some(self.effective(job).enabled)
    }

    /// The job's next run: its next tick or one-off run; `None` while paused.
    pub fn next_run_of(&self, code: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let job = self.jobs.iter().find(|j| j.code == code)?;
        let effective = self.effective(job);
        if !effective.enabled {
            return None;
        }
        let tick = effective.next_after(now);
        let one_off = self
            .pending_one_offs(code)
            .into_iter()
            .map(|r| r.at.max(now))
            .min();
        match (tick, one_off) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One-off runs of `code` not run yet (by this runner), as last read from the override
    /// store (re-read when an operator changes something), earliest first.
    pub fn pending_runs(&self, code: &str) -> Vec<OneOffRun> {
        let mut runs = self.pending_one_offs(code);
        runs.sort_by_key(|r| (r.at, r.id));
        runs
    }

    /// One-off runs of `code` not run yet, as last read.
    pub(super) fn pending_one_offs(&self, code: &str) -> Vec<OneOffRun> {
        let cache = self.cache();
        cache
            .pending
            .iter()
            .filter(|r| r.code == code && !cache.done.contains(&r.id))
            .cloned()
            .collect()
    }

    /// The job's one-off runs whose instant has come; none while it is paused.
    pub(super) fn due_one_offs(&self, job: &Registered, now: DateTime<Utc>) -> Vec<OneOffRun> {
        if !self.effective(job).enabled {
            return Vec::new();
        }
        self.pending_one_offs(&job.code)
            .into_iter()
            .filter(|r| r.at <= now)
            .collect()
    }

    fn job_or_not_found(&self, code: &str) -> Result<&Registered, CoreError> {
        self.jobs
            .iter()
            .find(|j| j.code == code)
            .ok_or_else(|| CoreError::NotFound {
                entity: "job",
                id: format!(
                    "'{code}' (known: {})",
                    self.codes().collect::<Vec<_>>().join(", ")
                ),
            })
    }

    fn store_or_refuse(&self) -> Result<&std::sync::Arc<dyn OverrideStore>, CoreError> {
        self.overrides.as_ref().ok_or_else(|| {
            CoreError::validation(
                "overrides",
                "this runner has no override store, so schedules cannot be changed at run time",
            )
        })
    }

    async fn change(
        &self,
        code: &str,
        change: OverrideChange,
        actor: &str,
    ) -> Result<JobState, CoreError> {
        let store = self.store_or_refuse()?;
        let now = micros(self.clock.now());
        store
            .apply(ChangeRequest {
                code,
                change: &change,
                actor,
                at: now,
            })
            .await?;
        tracing::info!(job.code = %code, action = change.action(), detail = change.detail().as_deref().unwrap_or(""), actor,
            "Schedule override changed");
        self.refresh_overrides().await.map_err(|e| match e {
            RunnerError::Ledger(core) => core,
            other => CoreError::validation("overrides", other.to_string()),
        })?;
        self.state(code).await
    }
}

/// Parses and checks a replacement schedule: it must parse and fire at least once more.
fn validate_schedule(
    expression: &str,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Schedule, CoreError> {
    // Checked before parsing, which echoes the expression: a megabyte of text must not come
    // back in the error (twice), nor reach the log (found by the property tests of issue 8).
    let chars = expression.chars().count();
    let max = crm_core::overrides::MAX_SCHEDULE_CHARS;
    if chars > max {
        return Err(CoreError::validation(
            "schedule",
            format!("a schedule has at most {max} characters, this one has {chars}"),
        ));
    }
    let schedule = expression
        .parse::<Schedule>()
        .map_err(|e| CoreError::validation("schedule", format!("'{expression}': {e}")))?;
    if schedule
        .clone()
        .or_time_zone(zone)
        .next_after(now)
        .is_none()
    {
        return Err(CoreError::validation(
            "schedule",
            format!("'{expression}' never fires again"),
        ));
    }
    Ok(schedule)
}

#[async_trait]
impl JobControl for Runner {
    async fn set_enabled(
        &self,
        code: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<JobState, CoreError> {
        self.job_or_not_found(code)?;
        let change = if enabled {
            OverrideChange::Enable
        } else {
            OverrideChange::Disable
        };
        self.change(code, change, actor).await
    }

    async fn set_schedule(
        &self,
        code: &str,
        expression: Option<&str>,
        actor: &str,
    ) -> Result<JobState, CoreError> {
        self.job_or_not_found(code)?;
        let change = match expression {
            None => OverrideChange::DefaultSchedule,
            Some(expression) => {
                let schedule = validate_schedule(expression, self.zone, self.clock.now())?;
                // The text form, without the runner's zone unless the operator named one, so
                // a schedule reads the same wherever it is shown.
                OverrideChange::Schedule(schedule.to_string())
            }
        };
        self.change(code, change, actor).await
    }

    async fn schedule_run(
        &self,
        code: &str,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<JobState, CoreError> {
        self.job_or_not_found(code)?;
        let now = self.clock.now();
        if at < now - ONE_OFF_PAST_TOLERANCE {
            return Err(CoreError::validation(
                "at",
                format!(
                    "{} is in the past (now {})",
                    at.to_rfc3339(),
                    micros(now).to_rfc3339()
                ),
            ));
        }
        self.change(code, OverrideChange::RunAt(micros(at)), actor)
            .await
    }

    async fn state(&self, code: &str) -> Result<JobState, CoreError> {
        let job = self.job_or_not_found(code)?;
        let effective = self.effective(job);
        let now = self.clock.now();
        let mut pending_runs: Vec<DateTime<Utc>> =
            self.pending_one_offs(code).iter().map(|r| r.at).collect();
        pending_runs.sort();
        Ok(JobState {
            code: code.to_owned(),
            enabled: effective.enabled,
            schedule: effective.schedule.to_string(),
            default_schedule: job.schedule.to_string(),
            overridden: effective.overridden,
            next_run: effective.next_after(now),
            pending_runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_that_never_fires_again_is_refused() {
        let now = "2026-11-26T12:00:00Z".parse().unwrap();
        let err = validate_schedule("0 0 31 2 *", chrono_tz::UTC, now).unwrap_err();
        assert!(err.to_string().contains("schedule"), "{err}");
        let err = validate_schedule("61 * * * *", chrono_tz::UTC, now).unwrap_err();
        assert!(err.to_string().contains("'61 * * * *'"), "{err}");
        assert!(validate_schedule("every 5 minutes", chrono_tz::UTC, now).is_ok());
    }
}
