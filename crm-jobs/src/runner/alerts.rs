//! Alerts from runs: a job failing as often as its threshold, and recovering after.

use chrono::{DateTime, Utc};
use crm_core::ledger::JobRun;

use super::{Registered, Runner};
use crate::alert::Alert;

impl Runner {
    /// Tells the hook that `job` succeeded at `tick` after `prior_failures` failures in a row,
    /// if those had been alerted.
    pub(super) async fn alert_if_recovered(
        &self,
        job: &Registered,
        prior_failures: u32,
        tick: DateTime<Utc>,
    ) {
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

    /// Tells the hook that `job` is failing when its consecutive failures just reached its
    /// threshold.
    pub(super) async fn alert_if_failing(&self, job: &Registered, run: &JobRun, message: &str) {
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

    /// Delivers `alert` through the runner's hook; a failed delivery is logged, not raised.
    pub(crate) async fn send(&self, alert: Alert) {
        if let Err(e) = self.alert.alert(&alert).await {
            tracing::warn!(job.code = %alert.code(), error = %e, "Could not deliver an alert");
        }
    }
}
