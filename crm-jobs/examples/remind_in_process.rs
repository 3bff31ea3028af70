//! This example demonstrates `send_order_reminders` in the in-process mode: the job reads the
//! CRM's database through [`InProcessCrm`] (no server), as an app that embeds the jobs does.
//!
//! It opens `CRM_DATABASE_URL` (migrating it if needed), runs the job once, now, appending its
//! lines to `order_reminders_log.txt` in `CRM_LOG_DIR` (default `/tmp`), and prints the
//! outcome: the program that measures the job's time and memory at a million orders in
//! BENCHMARKS.md (`/usr/bin/time -v`).
//!
//! ```text
//! cargo build --release -p crm-jobs --example remind_in_process
//! CRM_DATABASE_URL=sqlite:///path/1m.db CRM_LOG_DIR=/tmp/logs /usr/bin/time -v \
//!     target/release/examples/remind_in_process
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use crm_jobs::{CronJob as _, InProcessCrm, JobContext, JobsConfig, SendOrderReminders};

#[async_std::main]
async fn main() -> ExitCode {
    match remind().await {
        Ok(outcome) => {
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("remind_in_process: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn remind() -> Result<String, Box<dyn std::error::Error>> {
    let config = JobsConfig::from_env()?;
    let url = std::env::var("CRM_DATABASE_URL")
        .map_err(|_| "set CRM_DATABASE_URL to the CRM's database")?;
    let store = crm_core::Database::connect(&url).await?;
    let job = SendOrderReminders::new(InProcessCrm::new(Arc::new(store)), &config);
    let now = chrono::Utc::now();
    Ok(job.run(&JobContext::new(now, now, false)).await?)
}
