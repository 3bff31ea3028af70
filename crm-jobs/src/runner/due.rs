//! What is due: which tick of a job to run now (on time, a misfire, a retry), or to skip.

use chrono::{DateTime, Utc};
use crm_core::ledger::{RunKind, RunOutcome};

use super::{Registered, RunReport, RunStatus, Runner, delta, later};
use crate::job::MisfirePolicy;

impl Runner {
    /// Decides what `job` needs at `now` and does it; `None` if nothing.
    pub(super) async fn turn(&self, job: &Registered, now: DateTime<Utc>) -> Option<RunReport> {
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
}
