//! This example demonstrates writing a sixth job: `count_new_customers`, a daily digest of the
//! customers who signed up in the last 24 hours, with a schedule, django-cron-style options and
//! a dry run, registered on a runner that records it in the CRM's own run ledger, and run now.
//!
//! It works on a fresh SQLite database in a temporary directory (seeded with demo data), so it
//! needs no server: `cargo run --example custom_job`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use crm::core::{CrmStore, CustomerFilter, Database, SeedConfig};
use crm::jobs::{
    CronJob, JobContext, JobError, JobOptions, LogFile, RunStatus, Runner, Schedule, SystemClock,
};

/// Counts the customers created in the 24 hours before the run and logs the figure, so sales
/// sees each morning how many people signed up.
struct CountNewCustomers {
    store: Arc<dyn CrmStore>,
    log: LogFile,
}

#[async_trait]
impl CronJob for CountNewCustomers {
    fn code(&self) -> &str {
        "count_new_customers"
    }

    /// Every day at 07:30, before the team starts.
    fn schedule(&self) -> Schedule {
        Schedule::at_times(&["07:30"]).expect("a valid time of day")
    }

    /// A digest that fails (the database is down) is worth a retry 10 minutes later rather
    /// than a day later.
    fn options(&self) -> JobOptions {
        JobOptions::default().retry_after_failure(Some(Duration::from_secs(10 * 60)))
    }

    /// One count in the database (not a fetch of every customer), then one log line.
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        let filter = CustomerFilter {
            created_at_gte: Some(ctx.started_at - TimeDelta::hours(24)),
            ..CustomerFilter::default()
        };
        let count = self.store.count_customers(&filter).await?;
        let plural = if count == 1 { "" } else { "s" };
        let message = format!("{count} new customer{plural} in the last 24 hours");
        if !ctx.dry_run {
            self.log.append_events(ctx.started_at, &[&message])?;
        }
        Ok(message)
    }
}

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    let db = Database::connect(&url).await?;
    crm::core::seed(&db, &SeedConfig::demo(chrono::Utc::now()), &mut |_| {}).await?;

    let job = CountNewCustomers {
        store: Arc::new(db.clone()),
        log: LogFile::new(dir.path(), "new_customers_log.txt", chrono_tz::UTC),
    };
    let runner = Runner::builder()
        .job(Box::new(job))
        .ledger(Arc::new(db.clone()))
        .clock(Arc::new(SystemClock))
        .build()?;

    let dry = runner.run_now("count_new_customers", true, true).await?;
    println!("dry run: {}", dry.message);
    let report = runner.run_now("count_new_customers", true, false).await?;
    assert_eq!(report.status, RunStatus::Succeeded, "{}", report.message);
    println!("run: {}", report.message);
    print!(
        "log: {}",
        std::fs::read_to_string(dir.path().join("new_customers_log.txt"))?
    );
    Ok(())
}
