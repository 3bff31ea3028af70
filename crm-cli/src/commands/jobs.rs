//! `crm jobs list|run|run-due|history`: the five jobs through the runner and its ledger.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crm_core::{CoreError, Database};
use crm_jobs::health::HealthState;
use crm_jobs::{
    AlertHook, AlertHooks, Clock as _, JobControl as _, JobRun, JobState, JobsConfig, LogAlert,
    ORDER_REMINDERS_PROCESSED, RunReport, RunStatus, Runner, RunnerError, SendOrderReminders,
    SystemClock, WebhookAlert,
};

use crate::cli::{JobsCommand, Settings};
use crate::outcome::{CommandResult, Failure, UsageContext as _};

/// The jobs' settings from the command line's (flags, then `CRM_*` variables).
pub(crate) fn jobs_config(settings: &Settings) -> CommandResult<JobsConfig> {
    JobsConfig::from_lookup(|name| match name {
        "CRM_GRAPHQL_URL" => settings.graphql_url.clone(),
        "CRM_API_TOKEN" => settings.api_token.clone(),
        "CRM_LOG_DIR" => Some(settings.log_dir.display().to_string()),
        "CRM_TIME_ZONE" => settings.time_zone.clone(),
        "CRM_JOB_LEASE" => settings.job_lease.clone(),
        "CRM_CA_FILE" => settings.ca_file.as_ref().map(|f| f.display().to_string()),
        // What most Unix programs take their zone from; read when CRM_TIME_ZONE is not set.
        crm_jobs::TZ_ENV => std::env::var(crm_jobs::TZ_ENV).ok(),
        _ => None,
    })
    .usage("Invalid configuration")
}

/// Where alerts go: the log, and the webhook `CRM_ALERT_WEBHOOK_URL` names if set.
pub(crate) fn alert_hook(settings: &Settings) -> CommandResult<Arc<dyn AlertHook>> {
    let mut hooks: Vec<Arc<dyn AlertHook>> = vec![Arc::new(LogAlert)];
    if let Some(url) = &settings.alert_webhook_url {
        hooks.push(Arc::new(
            WebhookAlert::new(url)
                .usage("Invalid CRM_ALERT_WEBHOOK_URL")?
                .ca_file(settings.ca_file.clone())
                .usage("Cannot set up the alert webhook")?,
        ));
    }
    Ok(Arc::new(AlertHooks(hooks)))
}

/// The five jobs on a runner recording into the CRM's own database.
pub(crate) fn runner(
    db: &Database,
    config: &JobsConfig,
    alerts: Arc<dyn AlertHook>,
) -> CommandResult<Runner> {
    crm_jobs::standard_runner(config, Arc::new(db.clone()))
        .usage("Invalid configuration")?
        .alert_hook(alerts)
        .build()
        .usage("Invalid job registry")
}

pub(crate) async fn run(
    db: &Database,
    settings: &Settings,
    command: &JobsCommand,
) -> CommandResult {
    let config = jobs_config(settings)?;
    let runner = runner(db, &config, alert_hook(settings)?)?;
    match command {
        JobsCommand::List => list(&runner, config.time_zone).await,
        JobsCommand::Run {
            code,
            force,
            dry_run,
        } => run_one(&runner, code, *force, *dry_run).await,
        JobsCommand::RunDue => {
            let reports = runner.run_due(SystemClock.now()).await;
            // A crontab line runs this every minute: the natural place to notice a job that
            // is late or missed a run (each incident is alerted once, whoever notices).
            if let Err(e) = runner.check_schedules(SystemClock.now()).await {
                tracing::warn!(error = %e, "Could not check the jobs' schedules");
            }
            if reports.is_empty() {
                println!("Nothing due.");
            }
            let mut failed = false;
            for report in &reports {
                print_report(report);
                failed |= report.is_failure();
            }
            if failed {
                return Err(Failure::Failed(anyhow::anyhow!("a job failed")));
            }
            Ok(())
        }
        JobsCommand::Enable { code } => control(
            runner.set_enabled(code, true, &cli_actor()).await,
            config.time_zone,
        ),
        JobsCommand::Disable { code } => control(
            runner.set_enabled(code, false, &cli_actor()).await,
            config.time_zone,
        ),
        JobsCommand::Schedule {
            code,
            expression,
            default,
        } => {
            let expression = (!*default).then(|| expression.join(" "));
            control(
                runner
                    .set_schedule(code, expression.as_deref(), &cli_actor())
                    .await,
                config.time_zone,
            )
        }
        JobsCommand::At { code, instant } => {
            let at = DateTime::parse_from_rfc3339(instant.trim())
                .map_err(|e| {
                    Failure::Usage(anyhow::anyhow!(
                        "'{instant}' is not an RFC 3339 instant such as 2026-11-27T08:00:00Z: {e}"
                    ))
                })?
                .with_timezone(&Utc);
            control(
                runner.schedule_run(code, at, &cli_actor()).await,
                config.time_zone,
            )
        }
        JobsCommand::History { code, limit } => {
            if let Some(code) = code
                && runner.schedule_of(code).is_none()
            {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "no job with code '{code}' (known: {})",
                    runner.codes().collect::<Vec<_>>().join(", ")
                )));
            }
            let runs = runner
                .ledger()
                .history(code.as_deref(), *limit)
                .await
                .context("Failed to read the run history")?;
            print_history(&runs, config.time_zone);
            Ok(())
        }
        JobsCommand::Prune { older_than } => {
            let days = match older_than {
                Some(days) => *days,
                None if settings.job_runs_retention_days > 0 => settings.job_runs_retention_days,
                None => {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "retention is off (CRM_JOB_RUNS_RETENTION_DAYS=0): say how old with --older-than DAYS"
                    )));
                }
            };
            let pruned = runner
                .prune_history(std::time::Duration::from_secs(u64::from(days) * 86_400))
                .await
                .context("Failed to prune the run history")?;
            println!(
                "Pruned {} runs, {} one-off runs, {} resolved incidents and {} restock keys older \
                 than {days} days.",
                pruned.runs, pruned.one_off_runs, pruned.incidents, pruned.restock_keys
            );
            Ok(())
        }
    }
}

/// Who a change from the command line is recorded as: `cli:<OS user>`.
fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// Prints the job's state after a change; a refused change is a usage error (exit 2).
fn control(result: Result<JobState, CoreError>, zone: Tz) -> CommandResult {
    match result {
        Ok(state) => {
            let schedule = if state.overridden {
                format!("{} (replaces {})", state.schedule, state.default_schedule)
            } else {
                format!("{} (the job's own)", state.schedule)
            };
            let next = match (state.enabled, state.next_run) {
                (false, _) => "paused".to_owned(),
                (true, Some(t)) => format!("next run {}", local(t, zone)),
                (true, None) => "no next run".to_owned(),
            };
            println!("{}: {next}; schedule {schedule}", state.code);
            for at in &state.pending_runs {
                println!("{}: one-off run at {}", state.code, local(*at, zone));
            }
            Ok(())
        }
        Err(e @ (CoreError::Validation { .. } | CoreError::NotFound { .. })) => {
            Err(Failure::Usage(anyhow::Error::new(e)))
        }
        Err(e) => Err(Failure::Failed(
            anyhow::Error::new(e).context("Failed to store the change"),
        )),
    }
}

/// Runs one job now, always (the contract's "run one job now": the seed's cleanup script and a
/// person at a terminal expect the work done and its line written each time). Without
/// `--force` it takes the job's current tick when that is due (so a scheduler or cron line does
/// not run it again) and otherwise runs as a manual run; with `--force` it runs as a manual run
/// and leaves a due tick to the schedule.
async fn run_one(runner: &Runner, code: &str, force: bool, dry_run: bool) -> CommandResult {
    // The schedule in force (an operator's replacement, a pause) decides what the current
    // tick is, as it does for the scheduler.
    if let Err(e) = runner.refresh_overrides().await {
        tracing::warn!(error = %e, "Could not read the operators' schedule changes");
    }
    let report = match runner.run_now(code, force, dry_run).await {
        Ok(report) => report,
        Err(RunnerError::NotDue { .. }) => runner
            .run_now(code, true, dry_run)
            .await
            .context("Failed to run the job")?,
        Err(e @ RunnerError::UnknownJob { .. }) => return Err(e).usage("Unknown job"),
        Err(e) => return Err(Failure::Failed(anyhow::Error::new(e))),
    };
    print_report(&report);
    match report.status {
        RunStatus::Succeeded => {
            if code == SendOrderReminders::CODE && !dry_run {
                println!("{ORDER_REMINDERS_PROCESSED}");
            }
            Ok(())
        }
        RunStatus::Taken => Ok(()),
        RunStatus::Busy => Err(Failure::Failed(anyhow::anyhow!(
            "{code} is already running (it does not allow parallel runs)"
        ))),
        _ => Err(Failure::Failed(anyhow::anyhow!(
            "{code} failed: {}",
            report.message
        ))),
    }
}

fn print_report(report: &RunReport) {
    let status = match report.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "FAILED",
        RunStatus::Skipped => "skipped",
        RunStatus::Busy => "busy",
        RunStatus::Taken => "taken by another runner",
        RunStatus::LedgerError => "LEDGER ERROR",
        _ => "other",
    };
    let duration = report
        .duration
        .map(|d| format!(" in {} ms", d.as_millis()))
        .unwrap_or_default();
    println!("{}: {status}{duration}: {}", report.code, report.message);
}

async fn list(runner: &Runner, zone: Tz) -> CommandResult {
    let now = SystemClock.now();
    let health = crm_jobs::health::assess(runner, now)
        .await
        .context("Failed to read the run ledger")?;
    let mut rows = vec![[
        "CODE".to_owned(),
        "SCHEDULE".to_owned(),
        "STATE".to_owned(),
        "NEXT RUN".to_owned(),
        "LAST RUN".to_owned(),
        "OUTCOME".to_owned(),
        "LAST SUCCESS".to_owned(),
        "LAST FAILURE".to_owned(),
    ]];
    for job in &health {
        let state = match job.overdue_tick {
            Some(tick) => format!("{} ({})", job.state, local_short(tick, zone)),
            None => job.state.to_string(),
        };
        // The schedule in force: an operator's replacement is marked as such.
        let schedule = if job.overridden {
            format!("{} (override)", job.schedule)
        } else {
            job.schedule.to_string()
        };
        let next = match (job.state, job.next_run) {
            (HealthState::Paused, _) => "paused".to_owned(),
            (_, Some(t)) => local(t, zone),
            (_, None) => "never".to_owned(),
        };
        rows.push([
            job.code.clone(),
            schedule,
            state,
            next,
            job.last_run
                .as_ref()
                .map_or_else(|| "never".to_owned(), |r| local(r.started_at, zone)),
            job.last_run
                .as_ref()
                .map_or_else(String::new, |r| r.outcome.to_string()),
            job.last_success
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| ago(now, r.started_at)),
            job.last_failure
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| ago(now, r.started_at)),
        ]);
    }
    print_table(&rows);
    Ok(())
}

/// How long ago `t` was, in its largest unit: `45s ago`, `12m ago`, `3h ago`, `2d ago`.
fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn local_short(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%m-%d %H:%M").to_string()
}

fn print_history(runs: &[JobRun], zone: Tz) {
    let now = SystemClock.now();
    let mut rows = vec![[
        "STARTED".to_owned(),
        "CODE".to_owned(),
        "KIND".to_owned(),
        "DURATION".to_owned(),
        "OUTCOME".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for run in runs {
        rows.push([
            local(run.started_at, zone),
            run.code.clone(),
            run.kind.to_string(),
            format!("{} ms", run.duration(now).num_milliseconds()),
            run.outcome.to_string(),
            run.message.clone().unwrap_or_default(),
        ]);
    }
    print_table(&rows);
}

fn local(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}
