//! `crm serve`: the GraphQL API, optionally with the scheduler in the same process.

use std::sync::Arc;

use anyhow::Context as _;
use crm_core::{CrmStore, Database, SeedConfig};
use crm_server::{BoundServer, ServerConfig};

use crate::cli::{ServeArgs, Settings};
use crate::commands::{jobs, scheduler, seed, shutdown_signal};
use crate::outcome::CommandResult;

pub(crate) async fn run(db: Database, settings: &Settings, args: &ServeArgs) -> CommandResult {
    if !args.no_demo_data {
        seed_if_empty(&db).await?;
    }
    let store: Arc<dyn CrmStore> = Arc::new(db.clone());
    // The API's setJobEnabled/setJobSchedule/scheduleJobRun change the jobs of this database
    // (validated against the registered jobs); every scheduler picks the changes up live.
    let job_control = match jobs::jobs_config(settings).and_then(|c| jobs::runner(&db, &c)) {
        Ok(runner) => Some(Arc::new(runner) as Arc<dyn crm_core::overrides::JobControl>),
        Err(e) => {
            tracing::warn!(error = %e, "Job control unavailable through the API");
            None
        }
    };
    let config = ServerConfig {
        bind: args.bind,
        api_token: settings.api_token.clone(),
        job_control,
        ..ServerConfig::default()
    };
    let server = BoundServer::bind(store, config)
        .await
        .with_context(|| format!("Failed to listen on {}", args.bind))?;
    println!(
        "Serving GraphQL at {} (GraphiQL in a browser)",
        server.graphql_url()
    );
    let shutdown = shutdown_signal()?;
    // The scheduler's GraphQL jobs call this very server unless told otherwise.
    let scheduler = if args.scheduler {
        let mut config = jobs::jobs_config(settings)?;
        if settings.graphql_url.is_none() {
            config = config
                .with_graphql_url(&server.graphql_url())
                .map_err(anyhow::Error::new)?;
        }
        Some(scheduler::build(&db, &config)?)
    } else {
        None
    };
    let serving = async_std::task::spawn(server.run());
    let stop = async move {
        let _ = shutdown.recv().await;
    };
    match scheduler {
        Some(scheduler) => scheduler::run_until(scheduler, stop).await,
        None => {
            if let futures::future::Either::Left((result, _)) =
                futures::future::select(serving, Box::pin(stop)).await
            {
                result.context("The server stopped")?;
            }
        }
    }
    db.close().await;
    Ok(())
}

/// A newcomer's first `crm serve` on the embedded SQLite file gets demo data, so every job has
/// work; an existing or PostgreSQL database is never touched.
async fn seed_if_empty(db: &Database) -> anyhow::Result<()> {
    if db.backend_name() != "sqlite" {
        return Ok(());
    }
    let totals = db.totals().await.context("Failed to read the database")?;
    let empty = totals.customers == 0
        && totals.orders == 0
        && db.count_products(&Default::default()).await? == 0;
    if empty {
        eprintln!("Empty database: adding demo data (pass --no-demo-data to start empty).");
        let summary = seed::seed_with_progress(db, &SeedConfig::demo(chrono::Utc::now())).await?;
        eprintln!(
            "Added {} customers, {} products and {} orders.",
            summary.customers, summary.products, summary.orders
        );
    }
    Ok(())
}
