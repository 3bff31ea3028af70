//! A run ledger in memory: for an app that runs its jobs in one process and keeps no history,
//! and for unit tests.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Claim, Incident, IncidentChange, IncidentKind, JobRun, NewRun, Pruned, Retention, RunCount,
    RunEnd, RunId, RunKind, RunLedger, RunOutcome, SeenIncident, abandoned_message, clip_message,
    kept_ids, validate_finish, validate_new_run,
};
use crate::error::Result;

/// A [`RunLedger`] in memory. Every operation holds one lock, so each is atomic like the
/// database's transactions; runners sharing one `Arc<MemoryLedger>` never run a tick twice.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    runs: Mutex<Vec<JobRun>>,
    incidents: Mutex<Vec<Incident>>,
    /// Runs counted per job and outcome as they end, which a prune leaves alone (as the
    /// database's `job_run_counts`); `last_ended` is filled in when read.
    counts: Mutex<Vec<RunCount>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> MutexGuard<'_, Vec<JobRun>> {
        // A panic elsewhere while holding the lock leaves the rows whole (each change is one
        // push or one field write), so the data is still good.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `row`, which just ended (or was recorded finished), as the database's triggers
    /// do: dry runs count for nothing. Called with the runs' lock held (always taken first).
    fn count(&self, row: &JobRun) {
        if row.kind == RunKind::DryRun || row.outcome == RunOutcome::Running {
            return;
        }
        let took = row
            .duration(row.ended_at.unwrap_or(row.started_at))
            .to_std()
            .unwrap_or_default();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts
            .iter_mut()
            .find(|c| c.code == row.code && c.outcome == row.outcome)
        {
            Some(count) => {
                count.runs += 1;
                count.total_duration += took;
            }
            None => counts.push(RunCount {
                code: row.code.clone(),
                outcome: row.outcome,
                runs: 1,
                total_duration: took,
                last_ended: None,
            }),
        }
    }

    fn incidents(&self) -> MutexGuard<'_, Vec<Incident>> {
        self.incidents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn same_key(row: &JobRun, run: &NewRun) -> bool {
    row.code == run.code
        && row.kind == run.kind
        && row.tick == run.tick
        && row.attempt == run.attempt
}

fn abandon(row: &mut JobRun, now: DateTime<Utc>) {
    row.outcome = RunOutcome::Abandoned;
    row.ended_at = Some(now);
    row.message = Some(abandoned_message(&row.host, row.pid));
}

fn expired(row: &JobRun, now: DateTime<Utc>) -> bool {
    row.outcome == RunOutcome::Running && row.lease_until.is_some_and(|until| until < now)
}

fn new_row(runs: &[JobRun], run: &NewRun, outcome: RunOutcome, message: Option<String>) -> JobRun {
    let finished = outcome != RunOutcome::Running;
    JobRun {
        // Rows are pushed in id order; after a prune the length no longer gives a fresh id.
        id: RunId(runs.last().map_or(1, |last| last.id.0 + 1)),
        code: run.code.clone(),
        tick: run.tick,
        kind: run.kind,
        attempt: run.attempt,
        started_at: run.started_at,
        ended_at: finished.then_some(run.started_at),
        outcome,
        message,
        lease_until: (!finished).then_some(run.lease_until),
        host: run.host.clone(),
        pid: run.pid,
    }
}

#[async_trait]
impl RunLedger for MemoryLedger {
    async fn claim(&self, run: &NewRun, exclusive: bool, now: DateTime<Utc>) -> Result<Claim> {
        validate_new_run(run)?;
        let mut runs = self.runs();
        for row in runs.iter_mut().filter(|r| r.code == run.code) {
            if expired(row, now) {
                abandon(row, now);
                self.count(row);
            }
        }
        if let Some(existing) = runs.iter().find(|r| same_key(r, run)) {
            return Ok(Claim::Taken(existing.clone()));
        }
        if exclusive
            && let Some(holder) = runs.iter().find(|r| {
                r.code == run.code && r.outcome == RunOutcome::Running && r.kind != RunKind::DryRun
            })
        {
            return Ok(Claim::Busy(holder.clone()));
        }
        let row = new_row(&runs, run, RunOutcome::Running, None);
        runs.push(row.clone());
        Ok(Claim::Claimed(row))
    }

    async fn record_skipped(&self, run: &NewRun, message: &str) -> Result<bool> {
        validate_new_run(run)?;
        let mut runs = self.runs();
        if runs.iter().any(|r| same_key(r, run)) {
            return Ok(false);
        }
        let row = new_row(&runs, run, RunOutcome::Skipped, Some(clip_message(message)));
        self.count(&row);
        runs.push(row);
        Ok(true)
    }

    async fn renew(&self, id: RunId, lease_until: DateTime<Utc>) -> Result<bool> {
        let mut runs = self.runs();
        match runs
            .iter_mut()
            .find(|r| r.id == id && r.outcome == RunOutcome::Running)
        {
            Some(row) => {
                row.lease_until = Some(lease_until);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn finish(&self, id: RunId, end: RunEnd<'_>) -> Result<bool> {
        let RunEnd {
            outcome,
            at: ended_at,
            message,
        } = end;
        validate_finish(outcome)?;
        let mut runs = self.runs();
        let Some(row) = runs.iter_mut().find(|r| {
            r.id == id && matches!(r.outcome, RunOutcome::Running | RunOutcome::Abandoned)
        }) else {
            return Ok(false);
        };
        let was_running = row.outcome == RunOutcome::Running;
        let changed = row.outcome != outcome;
        row.outcome = outcome;
        row.ended_at = Some(ended_at);
        row.message = Some(clip_message(message));
        row.lease_until = None;
        if changed {
            self.count(row);
        }
        Ok(was_running)
    }

    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>> {
        let mut runs = self.runs();
        let mut abandoned = Vec::new();
        for row in runs.iter_mut().filter(|r| expired(r, now)) {
            abandon(row, now);
            self.count(row);
            abandoned.push(row.clone());
        }
        Ok(abandoned)
    }

    async fn last_scheduled(&self, code: &str) -> Result<Option<JobRun>> {
        Ok(self
            .runs()
            .iter()
            .filter(|r| r.code == code && matches!(r.kind, RunKind::Scheduled | RunKind::Retry))
            .max_by_key(|r| (r.tick, r.attempt, r.id))
            .cloned())
    }

    async fn last_runs(&self) -> Result<Vec<JobRun>> {
        let runs = self.runs();
        let mut latest: Vec<JobRun> = Vec::new();
        for row in runs.iter().rev().filter(|r| r.kind != RunKind::DryRun) {
            if !latest.iter().any(|l| l.code == row.code) {
                latest.push(row.clone());
            }
        }
        latest.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(latest)
    }

    async fn history(&self, code: Option<&str>, limit: u32) -> Result<Vec<JobRun>> {
        let limit = limit.min(super::MAX_HISTORY_LIMIT) as usize;
        let mut rows: Vec<JobRun> = self
            .runs()
            .iter()
            .filter(|r| code.is_none_or(|c| r.code == c))
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn consecutive_failures(&self, code: &str) -> Result<u32> {
        let runs = self.runs();
        let mut count = 0;
        for row in runs.iter().rev().filter(|r| {
            r.code == code && r.kind != RunKind::DryRun && r.outcome != RunOutcome::Skipped
        }) {
            match row.outcome {
                RunOutcome::Succeeded => break,
                outcome if outcome.is_failure() => count += 1,
                _ => {}
            }
        }
        Ok(count)
    }

    async fn running(&self, code: Option<&str>) -> Result<Vec<JobRun>> {
        Ok(self
            .runs()
            .iter()
            .filter(|r| r.outcome == RunOutcome::Running && code.is_none_or(|c| r.code == c))
            .cloned()
            .collect())
    }

    async fn recent_runs(&self, per_job: u32) -> Result<Vec<JobRun>> {
        let per_job = per_job.min(super::MAX_HISTORY_LIMIT) as usize;
        let mut rows: Vec<JobRun> = self
            .runs()
            .iter()
            .filter(|r| r.kind != RunKind::DryRun)
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            a.code
                .cmp(&b.code)
                .then((b.started_at, b.id).cmp(&(a.started_at, a.id)))
        });
        let mut kept = Vec::new();
        for code_rows in rows.chunk_by(|a, b| a.code == b.code) {
            let latest_of = |wanted: &dyn Fn(&JobRun) -> bool| {
                code_rows.iter().filter(|r| wanted(r)).map(|r| r.id).max()
            };
            let success = latest_of(&|r| r.outcome == RunOutcome::Succeeded);
            let failure = latest_of(&|r| r.outcome.is_failure());
            let scheduled = code_rows
                .iter()
                .filter(|r| matches!(r.kind, RunKind::Scheduled | RunKind::Retry))
                .max_by_key(|r| (r.tick, r.attempt, r.id))
                .map(|r| r.id);
            kept.extend(code_rows.iter().enumerate().filter_map(|(i, r)| {
                let landmark = [success, failure, scheduled].contains(&Some(r.id));
                (i < per_job || landmark).then(|| r.clone())
            }));
        }
        Ok(kept)
    }

    async fn open_incident(&self, seen: SeenIncident<'_>) -> Result<IncidentChange> {
        let (code, kind, tick, now) = (seen.code, seen.kind, seen.tick, seen.at);
        let mut incidents = self.incidents();
        match incidents
            .iter_mut()
            .find(|i| i.code == code && i.resolved_at.is_none())
        {
            None => {
                incidents.push(Incident {
                    code: code.to_owned(),
                    kind,
                    tick,
                    opened_at: now,
                    resolved_at: None,
                });
                Ok(IncidentChange::Opened)
            }
            Some(open) if open.kind == IncidentKind::Late && kind == IncidentKind::Missed => {
                open.kind = kind;
                open.tick = tick;
                Ok(IncidentChange::Escalated)
            }
            Some(_) => Ok(IncidentChange::Known),
        }
    }

    async fn resolve_incident(&self, code: &str, now: DateTime<Utc>) -> Result<Option<Incident>> {
        let mut incidents = self.incidents();
        Ok(incidents
            .iter_mut()
            .find(|i| i.code == code && i.resolved_at.is_none())
            .map(|open| {
                open.resolved_at = Some(now);
                open.clone()
            }))
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        let mut open: Vec<Incident> = self
            .incidents()
            .iter()
            .filter(|i| i.resolved_at.is_none())
            .cloned()
            .collect();
        open.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(open)
    }

    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        let runs = self.runs();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for count in &mut counts {
            count.last_ended = runs
                .iter()
                .filter(|r| {
                    r.code == count.code && r.outcome == count.outcome && r.kind != RunKind::DryRun
                })
                .filter_map(|r| r.ended_at)
                .max();
        }
        counts.sort_by(|a, b| {
            (a.code.as_str(), a.outcome.to_string()).cmp(&(b.code.as_str(), b.outcome.to_string()))
        });
        Ok(counts)
    }

    /// As the database's, at once (one lock); there are no one-off runs in this ledger.
    async fn prune(&self, retention: &Retention) -> Result<Pruned> {
        let kept = kept_ids(self, retention.keep_per_job).await?;
        let before = retention.before;
        let mut runs = self.runs();
        let len = runs.len();
        runs.retain(|r| {
            kept.binary_search(&r.id.0).is_ok()
                || r.started_at >= before
                || r.ended_at.is_none_or(|ended| ended >= before)
        });
        let pruned_runs = (len - runs.len()) as u64;
        drop(runs);
        let mut incidents = self.incidents();
        let len = incidents.len();
        incidents.retain(|i| i.resolved_at.is_none_or(|at| at >= before));
        Ok(Pruned {
            runs: pruned_runs,
            one_off_runs: 0,
            incidents: (len - incidents.len()) as u64,
            restock_keys: 0,
            batches: u64::from(pruned_runs > 0),
        })
    }
}
