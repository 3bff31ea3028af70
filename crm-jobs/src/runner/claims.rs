//! Claims and leases: a run is claimed in the ledger before its job starts, its lease renewed
//! while it runs, and claims whose runner died are marked abandoned.

use chrono::{DateTime, Utc};
use crm_core::ledger::{Claim, JobRun, NewRun, RunId, RunKind, RunOutcome};
use futures::future;

use super::{Registered, RunReport, RunStatus, Runner, later, micros};

impl Runner {
    /// Marks claims whose runner died as abandoned, and alerts if that makes a job's failures
    /// reach its threshold.
    pub(super) async fn abandon_expired(&self) {
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

    /// The ledger row of a run of `job` for `tick` starting now, with a fresh lease.
    pub(super) fn new_run(
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

    /// Claims `tick` of `job` in one ledger step if nothing stands in its way
    /// ([`RunLedger::claim_if_clear`]): the row and the job's failures in a row before it.
    /// `Ok(None)` sends the caller down the full path ([`Runner::claim`]), which also explains
    /// a refusal (taken, busy). A failing ledger is reported at once, built on `base`: going
    /// down the full path as well would wait out a locked database's busy timeout twice.
    ///
    /// [`RunLedger::claim_if_clear`]: crm_core::ledger::RunLedger::claim_if_clear
    pub(super) async fn claim_if_clear(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
        base: &RunReport,
    ) -> Result<Option<(JobRun, u32)>, RunReport> {
        let exclusive = kind != RunKind::DryRun && !job.options.allow_parallel_runs;
        let run = self.new_run(job, tick, kind, attempt);
        self.ledger
            .claim_if_clear(&run, exclusive)
            .await
            .map_err(|e| {
                tracing::error!(job.code = %job.code, error = %e, "Could not claim a run");
                RunReport {
                    status: RunStatus::LedgerError,
                    message: e.to_string(),
                    ..base.clone()
                }
            })
    }

    /// Claims `tick` of `job` in the ledger (exclusively unless the job allows parallel runs):
    /// the claimed row and its attempt, or the report of why it does not run (taken, busy, the
    /// ledger failing), built on `base`.
    pub(super) async fn claim(
        &self,
        job: &Registered,
        tick: DateTime<Utc>,
        kind: RunKind,
        attempt: u32,
        mut base: RunReport,
    ) -> Result<(JobRun, u32), RunReport> {
        let exclusive = kind != RunKind::DryRun && !job.options.allow_parallel_runs;
        let mut run = self.new_run(job, tick, kind, attempt);
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
        match row {
            Ok(Claim::Claimed(row)) => Ok((row, attempt)),
            Ok(Claim::Taken(other)) => Err(RunReport {
                run_id: Some(other.id),
                message: format!("already claimed by {} (pid {})", other.host, other.pid),
                ..base
            }),
            Ok(Claim::Busy(other)) => {
                tracing::info!(job.code = %job.code, %tick, holder = %other.id, "Job still running; tick waits");
                Err(RunReport {
                    status: RunStatus::Busy,
                    run_id: Some(other.id),
                    message: format!(
                        "previous run {} still running on {} (pid {})",
                        other.id, other.host, other.pid
                    ),
                    ..base
                })
            }
            Ok(_) => Err(RunReport {
                status: RunStatus::LedgerError,
                message: "the ledger gave an unknown answer to a claim".to_owned(),
                ..base
            }),
            Err(e) => {
                tracing::error!(job.code = %job.code, error = %e, "Could not claim a run");
                Err(RunReport {
                    status: RunStatus::LedgerError,
                    message: e.to_string(),
                    ..base
                })
            }
        }
    }

    /// Renews the lease of run `id` every third of the lease, forever (a lost lease is said
    /// once, then the job is let finish).
    pub(super) async fn keep_lease(&self, job: &Registered, id: RunId) {
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
    }
}
