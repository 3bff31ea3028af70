//! `crm serve`: the GraphQL API, optionally with the scheduler in the same process.

use std::sync::Arc;

use anyhow::Context as _;
use crm_core::{CrmStore, Database, SeedConfig};
use crm_server::{BoundServer, ServerConfig};

use crate::cli::{ServeArgs, Settings};
use crate::commands::{jobs, scheduler, seed, shutdown_signal};
use crate::outcome::{CommandResult, Failure};

pub(crate) async fn run(db: Database, settings: &Settings, args: &ServeArgs) -> CommandResult {
    if args.max_page_size > args.max_rows_per_request {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--max-page-size ({}) exceeds --max-rows-per-request ({}): a list without `first` \
             would always be refused",
            args.max_page_size,
            args.max_rows_per_request
        )));
    }
    if !args.no_demo_data {
        seed_if_empty(&db).await?;
    }
    let store: Arc<dyn CrmStore> = Arc::new(db.clone());
    let config = ServerConfig {
        bind: args.bind,
        api_token: settings.api_token.clone(),
        max_page_size: args.max_page_size,
        max_rows_per_request: args.max_rows_per_request,
        ..ServerConfig::default()
    };
    let server = BoundServer::bind(store, config)
        .await
        .with_context(|| format!("Failed to listen on {}", args.bind))?;
    // Listen for SIGINT/SIGTERM before anything announces it is running.
    let shutdown = shutdown_signal()?;
    // The jobs' runner over this database: `/status` and the `jobs` queries show its jobs'
    // health, `setJobEnabled`/`setJobSchedule`/`scheduleJobRun` change them (every scheduler
    // picks the changes up live), and with `--scheduler` it runs them. Its GraphQL jobs call
    // this very server unless told otherwise.
    let jobs_config = jobs::jobs_config(settings).and_then(|config| match &settings.graphql_url {
        Some(_) => Ok(config),
        None => config
            .with_graphql_url(&server.graphql_url())
            .map_err(|e| anyhow::Error::new(e).into()),
    });
    let runner = match jobs_config {
        Ok(config) if args.scheduler => {
            Some(scheduler::build(&db, &config, jobs::alert_hook(settings)?)?)
        }
        Ok(config) => match jobs::runner(&db, &config, Arc::new(crm_jobs::LogAlert)) {
            Ok(runner) => Some(Arc::new(runner)),
            Err(e) => {
                tracing::warn!(error = %e, "The jobs are unavailable through the API and /status");
                None
            }
        },
        Err(e) if args.scheduler => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "The jobs are unavailable through the API and /status");
            None
        }
    };
    let server = match &runner {
        Some(runner) => server.with_jobs(runner.clone()),
        None => server,
    };
    println!(
        "Serving GraphQL at {} (GraphiQL in a browser), the jobs' status at http://{}/status",
        server.graphql_url(),
        server.local_addr()
    );
    let serving = async_std::task::spawn(server.run());
    let stop = async move {
        let _ = shutdown.recv().await;
    };
    if let Some(runner) = runner.filter(|_| args.scheduler) {
        scheduler::run_until(runner, settings.retention(), stop).await;
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
    let mut bars = seed::ProgressBars::default();
    let mut announced = false;
    let seeded = crm_core::seed_if_empty(db, &SeedConfig::demo(chrono::Utc::now()), &mut |p| {
        if !std::mem::replace(&mut announced, true) {
            eprintln!("Empty database: adding demo data (pass --no-demo-data to start empty).");
        }
        bars.show(p);
    })
    .await
    .context("Failed to add demo data")?;
    bars.finish();
    if let Some(summary) = seeded {
        eprintln!(
            "Added {} customers, {} products and {} orders.",
            summary.customers, summary.products, summary.orders
        );
    }
    Ok(())
}
