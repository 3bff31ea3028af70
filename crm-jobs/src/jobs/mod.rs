//! The CRM's five jobs, one file each, and the list of them an app registers.

mod clean_inactive_customers;
mod generate_crm_report;
mod log_crm_heartbeat;
mod send_order_reminders;
mod update_low_stock;

use std::sync::Arc;

#[cfg(feature = "graphql")]
use crm_core::CrmStore;

pub use clean_inactive_customers::CleanInactiveCustomers;
pub use generate_crm_report::GenerateCrmReport;
pub use log_crm_heartbeat::LogCrmHeartbeat;
pub use send_order_reminders::{ORDER_REMINDERS_PROCESSED, SendOrderReminders};
pub use update_low_stock::UpdateLowStock;

use crate::config::JobsConfig;
use crate::crm_access::CrmAccess;
#[cfg(feature = "graphql")]
use crate::crm_access::InProcessCrm;
#[cfg(feature = "graphql")]
use crate::graphql::{GraphqlClient, GraphqlError};
use crate::job::CronJob;
use crate::schedule::Schedule;

/// The five jobs of the contract as the `crm` binary runs them, configured by `config`: the
/// cleanup works on `store` (the GraphQL API cannot delete customers), the other four share one
/// GraphQL client of `config.graphql_url`, as the original's scripts talk to its endpoint.
///
/// Fails only when the GraphQL client cannot be set up (a URL or token HTTP cannot carry).
#[cfg(feature = "graphql")]
pub fn standard_jobs(
    config: &JobsConfig,
    store: Arc<dyn CrmStore>,
) -> Result<Vec<Box<dyn CronJob>>, GraphqlError> {
    standard_jobs_over(config, store, crate::HttpTransport::default())
}

/// [`standard_jobs`] with the GraphQL client's requests carried by `transport`: a tokio app
/// names [`HttpTransport::Tokio`](crate::HttpTransport) so that a build that also compiles
/// surf in (features unify across a workspace) still runs its client on tokio.
#[cfg(feature = "graphql")]
pub fn standard_jobs_over(
    config: &JobsConfig,
    store: Arc<dyn CrmStore>,
    transport: crate::HttpTransport,
) -> Result<Vec<Box<dyn CronJob>>, GraphqlError> {
    let client: Arc<dyn CrmAccess> = Arc::new(GraphqlClient::with_transport(config, transport)?);
    let mut jobs = jobs_with_access(config, client);
    jobs[0] = Box::new(CleanInactiveCustomers::new(
        InProcessCrm::new(store),
        config,
    ));
    Ok(jobs)
}

/// The five jobs of the contract, configured by `config`, all reaching the CRM through `crm`:
/// an [`InProcessCrm`] for an app that holds the CRM's database, or a client of its API.
/// In the order cleanup, reminders, heartbeat, low stock, report.
pub fn jobs_with_access(config: &JobsConfig, crm: Arc<dyn CrmAccess>) -> Vec<Box<dyn CronJob>> {
    vec![
        Box::new(CleanInactiveCustomers::new(crm.clone(), config)),
        Box::new(SendOrderReminders::new(crm.clone(), config)),
        Box::new(LogCrmHeartbeat::new(crm.clone(), config)),
        Box::new(UpdateLowStock::new(crm.clone(), config)),
        Box::new(GenerateCrmReport::new(crm, config)),
    ]
}

/// The schedule of one of the contract's cron expressions (a job's `SCHEDULE`), in no explicit
/// zone: the runner places it in the configured one (`CRM_TIME_ZONE`, else the machine's).
fn contract_schedule(expression: &'static str) -> Schedule {
    Schedule::cron(expression).expect("the contract's cron expressions are valid (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_schedule_is_its_contract_cron_expression() {
        let shown: Vec<(&str, String)> = [
            (
                CleanInactiveCustomers::CODE,
                CleanInactiveCustomers::SCHEDULE,
            ),
            (SendOrderReminders::CODE, SendOrderReminders::SCHEDULE),
            (LogCrmHeartbeat::CODE, LogCrmHeartbeat::SCHEDULE),
            (UpdateLowStock::CODE, UpdateLowStock::SCHEDULE),
            (GenerateCrmReport::CODE, GenerateCrmReport::SCHEDULE),
        ]
        .into_iter()
        .map(|(code, expr)| (code, contract_schedule(expr).to_string()))
        .collect();
        assert_eq!(
            shown,
            [
                ("clean_inactive_customers", "0 2 * * 0".to_owned()),
                ("send_order_reminders", "0 8 * * *".to_owned()),
                ("log_crm_heartbeat", "*/5 * * * *".to_owned()),
                ("update_low_stock", "0 */12 * * *".to_owned()),
                ("generate_crm_report", "0 6 * * 1".to_owned()),
            ]
        );
    }
}
