//! `crm beat` and `crm worker`: the broker way (Celery's protocol on Redis).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crm_core::Database;
use crm_jobs::broker::{Beat, Broker, BrokerConfig, Worker};

use crate::cli::{BeatArgs, BrokerArgs, Settings, WorkerArgs};
use crate::commands::{jobs, metrics, shutdown_signal};
use crate::outcome::{CommandResult, Failure, UsageContext as _};

async fn connect(settings: &Settings, args: &BrokerArgs) -> CommandResult<Broker> {
    if args.visibility_timeout == 0 {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--visibility-timeout must be at least 1 second"
        )));
    }
    let config = BrokerConfig::new(&settings.broker_url)
        .queue(&args.queue)
        .key_prefix(&args.key_prefix)
        .visibility_timeout(Duration::from_secs(args.visibility_timeout));
    match Broker::connect(config).await {
        Ok(broker) => Ok(broker),
        Err(e @ crm_jobs::broker::BrokerError::InvalidUrl(_)) => {
            Err(e).usage("Invalid CRM_BROKER_URL")
        }
        Err(e) => Err(Failure::Failed(
            anyhow::Error::new(e).context("Failed to connect to the broker"),
        )),
    }
}

/// Publishes the jobs' due ticks until SIGINT/SIGTERM. Beat runs no job; it reads the
/// database only for operators' schedule overrides (pauses, replacement schedules), which it
/// follows live.
pub(crate) async fn beat(settings: &Settings, args: &BeatArgs) -> CommandResult {
    let config = jobs::jobs_config(settings)?;
    let db = crate::commands::connect(settings).await?;
    let runner = Arc::new(jobs::runner(&db, &config, Arc::new(crm_jobs::LogAlert))?);
    let metrics = metrics::bind(&db, settings, &args.metrics).await?;
    let broker = connect(settings, &args.broker).await?;
    let beat = Beat::for_live_runner(broker, runner.clone());
    let handle = beat.handle();
    let stop = shutdown_signal()?;
    async_std::task::spawn(async move {
        let _ = stop.recv().await;
        handle.shutdown();
    });
    eprintln!(
        "Beat publishing {} to queue {:?} (times in {})",
        runner.codes().collect::<Vec<_>>().join(", "),
        args.broker.queue,
        runner.time_zone().name()
    );
    metrics::start(metrics, runner);
    beat.run().await;
    Ok(())
}

/// Runs the jobs' tasks from the broker until SIGINT/SIGTERM, then lets running tasks finish.
pub(crate) async fn worker(
    db: &Database,
    settings: &Settings,
    args: &WorkerArgs,
    stop: async_std::channel::Receiver<()>,
) -> CommandResult {
    let config = jobs::jobs_config(settings)?;
    // With the database's overrides: a task of a paused job is acknowledged, not run.
    let runner = crm_jobs::standard_runner(&config, Arc::new(db.clone()))
        .usage("Invalid configuration")?
        .alert_hook(jobs::alert_hook(settings)?)
        .lease(Duration::from_secs(args.lease))
        .build()
        .usage("Invalid worker settings")?;
    let runner = Arc::new(runner);
    let metrics = metrics::bind(db, settings, &args.metrics).await?;
    let broker = connect(settings, &args.broker).await?;
    let concurrency = args.concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if concurrency == 0 {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--concurrency must be at least 1"
        )));
    }
    let worker = Worker::new(broker, runner.clone())
        .concurrency(concurrency)
        .task_events(args.events);
    eprintln!(
        "Worker running {} from queue {:?}, concurrency {concurrency}",
        runner
            .codes()
            .map(crm_jobs::broker::task_name)
            .collect::<Vec<_>>()
            .join(", "),
        args.broker.queue,
    );
    metrics::start(metrics, runner.clone());
    // Workers share the database's ledger: they watch for late and missed jobs (each incident
    // is alerted once, however many workers watch), and keep the history in bounds (any
    // number may).
    let upkeep = async_std::task::spawn(crm_jobs::upkeep(runner.clone(), settings.retention()));
    let summary = worker
        .run_until(async move {
            let _ = stop.recv().await;
            // Not `eprintln!`: it panics on a closed stderr, which left a worker deaf to SIGTERM.
            let _ = writeln!(std::io::stderr(), "Stopping: letting running tasks finish…");
        })
        .await;
    upkeep.cancel().await;
    let _ = writeln!(
        std::io::stderr(),
        "Worker stopped: {} tasks received, {} succeeded, {} failed, {} dead-lettered, {} skipped (job paused)",
        summary.received,
        summary.succeeded,
        summary.failed,
        summary.dead_lettered,
        summary.skipped
    );
    Ok(())
}
