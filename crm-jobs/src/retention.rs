//! Retention: the run history pruned in small batches, keeping what health reads.

use std::time::Duration;

use chrono::TimeDelta;

use crate::runner::{Runner, RunnerError};

impl Runner {
    /// Retention: deletes the ledger's finished runs older than `older_than` (by the runner's
    /// clock), in small batches, through [`RunLedger::prune`]. Each job keeps, however old, its
    /// latest runs (at least the health window and its `failures_before_alert`) and the
    /// landmarks health reads, so [`crate::health::assess`] answers the same afterwards.
    /// Incidents resolved and one-off runs done before then go too.
    ///
    /// [`RunLedger::prune`]: crm_core::ledger::RunLedger::prune
    pub async fn prune_history(
        &self,
        older_than: Duration,
    ) -> Result<crm_core::ledger::Pruned, RunnerError> {
        let Some(before) = TimeDelta::from_std(older_than)
            .ok()
            .and_then(|d| self.clock().now().checked_sub_signed(d))
        else {
            return Ok(crm_core::ledger::Pruned::default()); // nothing is that old
        };
        let keep_per_job = self
            .registered()
            .map(|(_, _, options)| options.failures_before_alert)
            .chain([crate::health::HEALTH_WINDOW])
            .max()
            .unwrap_or(crate::health::HEALTH_WINDOW);
        let started = std::time::Instant::now();
        let retention = crm_core::ledger::Retention::before(crate::runner::micros(before))
            .keep_per_job(keep_per_job);
        let pruned = self.ledger().prune(&retention).await?;
        tracing::info!(
            runs = pruned.runs,
            one_off_runs = pruned.one_off_runs,
            incidents = pruned.incidents,
            restock_keys = pruned.restock_keys,
            batches = pruned.batches,
            before = %before,
            duration_ms = started.elapsed().as_millis() as u64,
            "Pruned the run history"
        );
        Ok(pruned)
    }
}
