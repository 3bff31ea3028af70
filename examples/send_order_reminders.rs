//! This example demonstrates the original's `crm/cron_jobs/send_order_reminders.py` as a
//! standalone Rust program: it asks the GraphQL endpoint (`CRM_GRAPHQL_URL`, default
//! `http://localhost:8000/graphql`) for the orders of the last seven days through the typed
//! client, appends one reminder line per order to `order_reminders_log.txt` in `CRM_LOG_DIR`
//! (default `/tmp`), and prints `Order reminders processed!`.
//!
//! Run a server first (`cargo run -p crm-cli -- serve`), then:
//! `cargo run --example send_order_reminders`.
//! It exits with status 1, saying why, when the endpoint cannot be reached.

use std::process::ExitCode;

use crm::jobs::{
    CronJob as _, GraphqlClient, JobContext, JobsConfig, ORDER_REMINDERS_PROCESSED,
    SendOrderReminders,
};

#[async_std::main]
async fn main() -> ExitCode {
    match remind().await {
        Ok(()) => {
            println!("{ORDER_REMINDERS_PROCESSED}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("send_order_reminders: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn remind() -> Result<(), Box<dyn std::error::Error>> {
    let config = JobsConfig::from_env()?;
    let client = GraphqlClient::new(&config)?;
    let job = SendOrderReminders::new(client, &config);
    let now = chrono::Utc::now();
    let outcome = job.run(&JobContext::new(now, now, false)).await?;
    eprintln!("{outcome}");
    Ok(())
}
