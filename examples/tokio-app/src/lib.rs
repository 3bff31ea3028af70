#![doc = include_str!("../README.md")]

mod own_job;
mod schedule_loop;

use std::sync::Arc;

use anyhow::Context as _;
use crm_core::{CrmStore, Database, SeedConfig};
use crm_jobs::{CronJob, HttpTransport, InProcessCrm, JobsConfig, LogAlert, Runner, SystemClock};

pub use own_job::{LogTokioUptime, TOKIO_APP_LOG};
pub use schedule_loop::{SHUTDOWN_GRACE, run_until_signal};

/// A little demo data for an empty database: enough that every job has work (orders of the
/// last week, products below 10, dormant customers), small enough to add in a blink.
pub fn demo_data(now: chrono::DateTime<chrono::Utc>) -> SeedConfig {
    SeedConfig {
        customers: 40,
        products: 20,
        orders: 200,
        ..SeedConfig::demo(now)
    }
}

/// The app: creates the log directory (`CRM_LOG_DIR`) if need be, opens and migrates
/// `CRM_DATABASE_URL` (default `sqlite://crm.db`), adds demo data if it is empty, registers the
/// five jobs plus [`LogTokioUptime`], and then either runs each once (`once`) or runs them when
/// due until SIGINT/SIGTERM. `Ok(false)` when a job failed (in `once` mode).
///
/// The jobs reach the CRM in-process, over the database; when `CRM_GRAPHQL_URL` is set, four
/// of them ask that GraphQL API instead (crm-jobs' client over hyper on tokio, with
/// `CRM_API_TOKEN` and `CRM_CA_FILE`), and the cleanup, which the API cannot do, stays on the
/// database. See [`crm_access_mode`].
pub async fn run(once: bool) -> anyhow::Result<bool> {
    let url =
        std::env::var("CRM_DATABASE_URL").unwrap_or_else(|_| crm_core::DEFAULT_DATABASE_URL.into());
    let config = JobsConfig::from_env().context("Invalid configuration")?;
    std::fs::create_dir_all(&config.log_dir)
        .with_context(|| format!("Failed to create {}", config.log_dir.display()))?;
    let db = Database::connect(&url)
        .await
        .with_context(|| format!("Failed to open {}", crm_core::redact_password(&url)))?;
    db.migrate().await.context("Failed to migrate")?;
    add_demo_data_if_empty(&db).await?;

    let store: Arc<dyn CrmStore> = Arc::new(db.clone());
    eprintln!("{}", crm_access_mode(&config));
    let mut jobs: Vec<Box<dyn CronJob>> = if graphql_mode() {
        crm_jobs::standard_jobs_over(&config, store, HttpTransport::Tokio)
            .context("Invalid GraphQL client settings")?
    } else {
        crm_jobs::jobs_with_access(&config, Arc::new(InProcessCrm::new(store)))
    };
    jobs.push(Box::new(LogTokioUptime::new(&config)));
    let runner = Runner::builder()
        .jobs(jobs)
        .ledger(Arc::new(db.clone()))
        .clock(Arc::new(SystemClock))
        .alert_hook(Arc::new(LogAlert))
        .config(&config)
        .build()
        .context("Invalid job registry")?;
    let runner = Arc::new(runner);

    let all_succeeded = if once {
        run_each_once(&runner).await?
    } else {
        run_until_signal(runner).await?;
        true
    };
    db.close().await;
    Ok(all_succeeded)
}

/// Whether the jobs ask a GraphQL API: `CRM_GRAPHQL_URL` is set and not empty.
fn graphql_mode() -> bool {
    std::env::var_os("CRM_GRAPHQL_URL").is_some_and(|url| !url.is_empty())
}

/// The line the app prints at start saying how its jobs reach the CRM (the URL's password, if
/// any, redacted).
pub fn crm_access_mode(config: &JobsConfig) -> String {
    if graphql_mode() {
        format!(
            "The jobs ask the GraphQL API at {} (over tokio); the cleanup works on the database",
            crm_core::redact_password(&config.graphql_url)
        )
    } else {
        "The jobs work on the database in-process (set CRM_GRAPHQL_URL to ask a GraphQL API)"
            .to_owned()
    }
}

/// Runs every registered job once now, in order, each recorded as a manual run; prints one line
/// per job. `false` if any failed.
async fn run_each_once(runner: &Runner) -> anyhow::Result<bool> {
    let mut all_succeeded = true;
    let codes: Vec<String> = runner.codes().map(str::to_owned).collect();
    for code in codes {
        let report = runner.run_now(&code, true, false).await?;
        println!("{code}: {} ({})", report.status.as_str(), report.message);
        all_succeeded &= !report.is_failure();
    }
    Ok(all_succeeded)
}

/// Fills an empty database with [`demo_data`] ([`crm_core::seed_if_empty`]); a database with
/// any customer, product or order is left as it is.
async fn add_demo_data_if_empty(db: &Database) -> anyhow::Result<()> {
    let seeded = crm_core::seed_if_empty(db, &demo_data(chrono::Utc::now()), &mut |_| {})
        .await
        .context("Failed to add demo data")?;
    if let Some(summary) = seeded {
        eprintln!(
            "Empty database: added {} customers, {} products and {} orders of demo data.",
            summary.customers, summary.products, summary.orders
        );
    }
    Ok(())
}
