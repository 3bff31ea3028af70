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
    let config = ServerConfig {
        bind: args.bind,
        api_token: settings.api_token.clone(),
        ..ServerConfig::default()
    };
    let server = BoundServer::bind(store, config)
        .await
        .with_context(|| format!("Failed to listen on {}", args.bind))?;
    // Listen for SIGINT/SIGTERM before anything announces it is running.
    let shutdown = shutdown_signal()?;
    // The jobs' runner: `/status` and the `jobs` queries show its jobs' health, and with
    // `--scheduler` it runs them. Its GraphQL jobs call this very server unless told otherwise.
    let mut jobs_config = jobs::jobs_config(settings)?;
    if settings.graphql_url.is_none() {
        jobs_config = jobs_config
            .with_graphql_url(&server.graphql_url())
            .map_err(anyhow::Error::new)?;
    }
    let runner = if args.scheduler {
        scheduler::build(&db, &jobs_config, jobs::alert_hook(settings)?)?
    } else {
        Arc::new(jobs::runner(
            &db,
            &jobs_config,
            Arc::new(crm_jobs::LogAlert),
        )?)
    };
    let server = server.with_jobs(runner.clone());
    println!(
        "Serving GraphQL at {} (GraphiQL in a browser), the jobs' status at http://{}/status",
        server.graphql_url(),
        server.local_addr()
    );
    let serving = async_std::task::spawn(server.run());
    let stop = async move {
        let _ = shutdown.recv().await;
    };
    if args.scheduler {
        scheduler::run_until(runner, stop).await;
    } else if let futures::future::Either::Left((result, _)) =
        futures::future::select(serving, Box::pin(stop)).await
    {
        result.context("The server stopped")?;
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
