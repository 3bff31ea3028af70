//! A run ledger that fails every call while told to, as a database that cannot be reached.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::{CoreError, Result, StorageError};
use crm_jobs::{
    Claim, Incident, IncidentChange, JobRun, MemoryLedger, NewRun, RunCount, RunEnd, RunId,
    RunLedger, SeenIncident,
};

/// A ledger in memory that fails every call while `down`, as a database that cannot be reached.
#[derive(Debug, Default)]
pub(crate) struct FlakyLedger {
    pub(crate) inner: MemoryLedger,
    pub(crate) down: AtomicBool,
    pub(crate) refused: AtomicU32,
    /// How many of the next `finish` calls fail, as on a connection the server just ended.
    pub(crate) finishes_to_fail: AtomicU32,
}

impl FlakyLedger {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(CoreError::Storage(StorageError::unavailable(
                "pool timed out while waiting for an open connection",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl RunLedger for FlakyLedger {
    async fn claim(&self, run: &NewRun, exclusive: bool, now: DateTime<Utc>) -> Result<Claim> {
        self.check()?;
        self.inner.claim(run, exclusive, now).await
    }
    async fn record_skipped(&self, run: &NewRun, message: &str) -> Result<bool> {
        self.check()?;
        self.inner.record_skipped(run, message).await
    }
    async fn renew(&self, id: RunId, lease_until: DateTime<Utc>) -> Result<bool> {
        self.check()?;
        self.inner.renew(id, lease_until).await
    }
    async fn finish(&self, id: RunId, end: RunEnd<'_>) -> Result<bool> {
        self.check()?;
        let fail = self
            .finishes_to_fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if fail.is_ok() {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(CoreError::Storage(StorageError::unavailable(
                "terminating connection due to administrator command",
            )));
        }
        self.inner.finish(id, end).await
    }
    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>> {
        self.check()?;
        self.inner.abandon_expired(now).await
    }
    async fn last_scheduled(&self, code: &str) -> Result<Option<JobRun>> {
        self.check()?;
        self.inner.last_scheduled(code).await
    }
    async fn last_runs(&self) -> Result<Vec<JobRun>> {
        self.check()?;
        self.inner.last_runs().await
    }
    async fn history(&self, code: Option<&str>, limit: u32) -> Result<Vec<JobRun>> {
        self.check()?;
        self.inner.history(code, limit).await
    }
    async fn consecutive_failures(&self, code: &str) -> Result<u32> {
        self.check()?;
        self.inner.consecutive_failures(code).await
    }
    async fn running(&self, code: Option<&str>) -> Result<Vec<JobRun>> {
        self.check()?;
        self.inner.running(code).await
    }
    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        self.check()?;
        self.inner.run_counts().await
    }
    async fn recent_runs(&self, per_job: u32) -> Result<Vec<JobRun>> {
        self.check()?;
        self.inner.recent_runs(per_job).await
    }
    async fn open_incident(&self, seen: SeenIncident<'_>) -> Result<IncidentChange> {
        self.check()?;
        self.inner.open_incident(seen).await
    }
    async fn resolve_incident(&self, code: &str, now: DateTime<Utc>) -> Result<Option<Incident>> {
        self.check()?;
        self.inner.resolve_incident(code, now).await
    }
    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        self.check()?;
        self.inner.open_incidents().await
    }
}
