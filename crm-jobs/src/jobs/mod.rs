//! The CRM's five jobs, one file each, and the list of them an app registers.

mod clean_inactive_customers;
mod generate_crm_report;
mod log_crm_heartbeat;
mod send_order_reminders;
mod update_low_stock;

use std::sync::Arc;

use crm_core::CrmStore;

pub use clean_inactive_customers::CleanInactiveCustomers;
pub use generate_crm_report::GenerateCrmReport;
pub use log_crm_heartbeat::LogCrmHeartbeat;
pub use send_order_reminders::{ORDER_REMINDERS_PROCESSED, SendOrderReminders};
pub use update_low_stock::UpdateLowStock;

use crate::config::JobsConfig;
use crate::graphql::{GraphqlClient, GraphqlError};
use crate::job::CronJob;
use crate::schedule::Schedule;

/// The five jobs of the contract, configured by `config`: the cleanup works on `store`, the
/// other four share one GraphQL client of `config.graphql_url`.
///
/// Fails only when the GraphQL client cannot be set up (a URL or token HTTP cannot carry).
pub fn standard_jobs(
    config: &JobsConfig,
    store: Arc<dyn CrmStore>,
) -> Result<Vec<Box<dyn CronJob>>, GraphqlError> {
    let client = GraphqlClient::new(config)?;
    Ok(vec![
        Box::new(CleanInactiveCustomers::new(store, config)),
        Box::new(SendOrderReminders::new(client.clone(), config)),
        Box::new(LogCrmHeartbeat::new(client.clone(), config)),
        Box::new(UpdateLowStock::new(client.clone(), config)),
        Box::new(GenerateCrmReport::new(client, config)),
    ])
}

/// The schedule of a contract cron expression (a constant of one of the jobs).
fn contract_schedule(_expression: &'static str) -> Schedule {
    // Placeholder until the runner's `Schedule::cron` lands.
    Schedule
}
