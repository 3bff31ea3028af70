//! Incidents: a job late or missing a tick, remembered in the ledger so each is alerted once
//! however many processes check, and its end (back on schedule).

use chrono::{DateTime, Utc};
use crm_core::ledger::{IncidentChange, IncidentKind, SeenIncident};

use crate::alert::Alert;
use crate::health::HealthState;
use crate::runner::{Runner, RunnerError};

impl Runner {
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
                    let change = self
                        .ledger()
                        .open_incident(SeenIncident {
                            code: &code,
                            kind,
                            tick,
                            at: now,
                        })
                        .await?;
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
                    if let Some(incident) = self.ledger().resolve_incident(&code, now).await? {
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
}
