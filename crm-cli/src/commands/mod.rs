//! One function per subcommand; each turns settings into library calls.

mod broker;
mod crontab;
mod jobs;
mod metrics;
mod scheduler;
mod seed;
mod serve;

use std::sync::Arc;

use anyhow::Context as _;
use crm_core::Database;

use crate::cli::{Cli, Command, CrontabCommand, Settings};
use crate::outcome::{CommandResult, Failure, UsageContext as _};

pub(crate) async fn run(cli: Cli) -> CommandResult {
    if cli.command.is_long_running() {
        ignore_hangups()?;
    }
    let settings = cli.settings;
    match cli.command {
        Command::Migrate => {
            let db = connect(&settings).await?;
            println!("Database {} is up to date.", db.backend_name());
            Ok(())
        }
        Command::Seed(args) => seed::run(&connect(&settings).await?, &args).await,
        Command::Serve(args) => serve::run(connect(&settings).await?, &settings, &args).await,
        Command::Schema => {
            print!("{}", crm_server::schema().as_sdl());
            Ok(())
        }
        Command::Jobs(command) => jobs::run(&connect(&settings).await?, &settings, &command).await,
        Command::Crontab(command) => {
            let lines = match command {
                CrontabCommand::Add => crontab_lines(&settings).await?,
                CrontabCommand::Show | CrontabCommand::Remove => Vec::new(),
            };
            crontab::run(&command, &settings, &lines)
        }
        Command::Beat(args) => broker::beat(&settings, &args).await,
        Command::Worker(args) => {
            let db = connect(&settings).await?;
            let outcome = broker::worker(&db, &settings, &args, shutdown_signal()?).await;
            db.close().await;
            outcome
        }
        Command::Scheduler(args) => {
            let db = connect(&settings).await?;
            let config = jobs::jobs_config(&settings)?;
            let metrics = metrics::bind(&db, &settings, &args.metrics).await?;
            // Listen for SIGINT/SIGTERM before the scheduler announces it is running.
            let stop = shutdown_signal()?;
            let runner = scheduler::build(&db, &config, jobs::alert_hook(&settings)?)?;
            metrics::start(metrics, runner.clone());
            scheduler::run_until(runner, settings.retention(), async move {
                let _ = stop.recv().await;
            })
            .await;
            db.close().await;
            Ok(())
        }
    }
}

/// Each job's crontab schedule and the zone it is meant in (checked against the zone cron fires
/// in when the lines are written).
async fn crontab_lines(settings: &Settings) -> CommandResult<Vec<crontab::CronJobLine>> {
    let config = jobs::jobs_config(settings)?;
    let db = connect(settings).await?;
    let runner = jobs::runner(&db, &config, Arc::new(crm_jobs::LogAlert))?;
    let mut lines = Vec::new();
    for code in runner.codes() {
        let schedule = runner
            .schedule_of(code)
            .expect("a registered code has a schedule");
        let expression = crm_jobs::crontab::crontab_expression(schedule)
            .map_err(|reason| Failure::Usage(anyhow::anyhow!("{code}: {reason}")))?;
        lines.push(crontab::CronJobLine {
            code: code.to_owned(),
            schedule: expression,
            zone: schedule.time_zone(),
        });
    }
    Ok(lines)
}

/// Opens (and migrates) the configured database. A URL that cannot be understood is a
/// configuration error (exit 2); a database that cannot be reached is a failure (exit 1).
async fn connect(settings: &Settings) -> CommandResult<Database> {
    let url = &settings.database_url;
    match Database::connect(url).await {
        Ok(db) => Ok(db),
        Err(e @ crm_core::CoreError::InvalidUrl(_)) => Err(e).usage("Invalid CRM_DATABASE_URL"),
        Err(e) => Err(Failure::Failed(anyhow::Error::new(e).context(format!(
            "Failed to open the database {}",
            crm_core::redact_password(url)
        )))),
    }
}

/// Resolves once SIGINT or SIGTERM arrives, so long-running commands can stop cleanly (let
/// running jobs finish, close the database). SIGHUP is not one of them: see [`ignore_hangups`].
pub(crate) fn shutdown_signal() -> anyhow::Result<async_std::channel::Receiver<()>> {
    use futures::StreamExt as _;

    let (sender, receiver) = async_std::channel::bounded(1);
    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .context("Failed to install the SIGINT/SIGTERM handler")?;
    async_std::task::spawn(async move {
        while let Some(signal) = signals.next().await {
            if signal.is_ok() {
                let _ = sender.try_send(());
            }
        }
    });
    Ok(receiver)
}

/// Services ignore SIGHUP (its default action would kill them) and say so in their log: there
/// is nothing to reload, since schedule changes are picked up live from the database, and the
/// environment file is read at start (restart the service to change a setting).
fn ignore_hangups() -> anyhow::Result<()> {
    use futures::StreamExt as _;

    let mut hangups = async_signal::Signals::new([async_signal::Signal::Hup])
        .context("Failed to install the SIGHUP handler")?;
    async_std::task::spawn(async move {
        while let Some(signal) = hangups.next().await {
            if signal.is_ok() {
                tracing::info!(
                    "SIGHUP received: nothing to reload (schedule changes are picked up live; \
                     restart the service to re-read its environment file)"
                );
            }
        }
    });
    Ok(())
}
