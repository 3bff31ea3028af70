//! `crm crontab show|add|remove`: the jobs' lines in the invoking user's crontab.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use crm_jobs::crontab::{self, CrontabEntry, SystemCrontab, shell_quote};

use crate::cli::{CrontabCommand, Settings};
use crate::outcome::{CommandResult, Failure};

/// One job as cron should run it.
pub(crate) struct CronJobLine {
    pub(crate) code: String,
    pub(crate) schedule: String,
    /// The zone the schedule is meant in (the jobs' zone, or the one its schedule names).
    pub(crate) zone: chrono_tz::Tz,
}

/// Where the output of cron-run jobs goes (the jobs' own log lines go to their own files).
const CRON_OUTPUT_LOG: &str = "crm_cron_output.log";

pub(crate) fn run(
    command: &CrontabCommand,
    settings: &Settings,
    jobs: &[CronJobLine],
) -> CommandResult {
    let system = SystemCrontab::default();
    let current = system.read().context("Failed to read your crontab")?;
    match command {
        CrontabCommand::Show => {
            for line in crontab::our_lines(&current) {
                println!("{line}");
            }
        }
        CrontabCommand::Add => {
            let exe = std::env::current_exe().context("Failed to find the crm binary's path")?;
            let entries = jobs
                .iter()
                .map(|job| entry(job, &exe, settings))
                .collect::<Result<Vec<_>, _>>()?;
            let outcome = crontab::merge(&current, &entries);
            check_zones(&outcome.text, jobs)?;
            if outcome.text != current {
                system
                    .write(&outcome.text)
                    .context("Failed to install the new crontab")?;
            }
            for code in &outcome.added {
                println!("added {code}");
            }
            for code in &outcome.updated {
                println!("updated {code}");
            }
            for code in &outcome.unchanged {
                println!("unchanged {code}");
            }
        }
        CrontabCommand::Remove => {
            let (text, removed) = crontab::remove_ours(&current);
            if removed > 0 {
                system
                    .write(&text)
                    .context("Failed to install the new crontab")?;
            }
            println!("removed {removed} line(s)");
        }
    }
    Ok(())
}

/// Refuses (a usage error: nothing is written) when cron would fire a job's line in another
/// zone than the one its schedule means, however that zone was configured (flag,
/// `CRM_TIME_ZONE`, environment file): the log and the ledger would say 02:00 Tokyo for a run
/// cron started at 02:00 UTC.
fn check_zones(text: &str, jobs: &[CronJobLine]) -> CommandResult {
    let machine = cron_machine_zone()?;
    let now = chrono::Utc::now();
    for (code, cron_tz) in crontab::cron_tz_at_our_lines(text) {
        let Some(job) = jobs.iter().find(|job| job.code == code) else {
            continue;
        };
        if let Some(reason) = crontab::cron_zone_mismatch(job.zone, machine, cron_tz, now) {
            return Err(Failure::Usage(anyhow!("{code}: {reason}")));
        }
    }
    Ok(())
}

/// The zone the cron daemon runs in: the machine's (`/etc/localtime`, `/etc/timezone`), or UTC
/// on a machine with neither (the C library's default, which cron then uses too).
fn cron_machine_zone() -> CommandResult<chrono_tz::Tz> {
    if let Some(zone) = crm_jobs::machine_time_zone() {
        return Ok(zone);
    }
    if !Path::new("/etc/localtime").exists() && !Path::new("/etc/timezone").exists() {
        return Ok(chrono_tz::UTC);
    }
    Err(Failure::Usage(anyhow!(
        "cannot tell the zone cron runs in: /etc/localtime is not a link into /usr/share/zoneinfo \
         and /etc/timezone names no zone (fix with: timedatectl set-timezone ZONE)"
    )))
}

/// The line for one job: the binary's absolute path, the settings cron needs (cron's own
/// environment is nearly empty), and the output appended to a log. Secrets never go into the
/// crontab: with a token or a database password configured, they must come from `--env-file`.
fn entry(job: &CronJobLine, exe: &Path, settings: &Settings) -> CommandResult<CrontabEntry> {
    let command = command_line(job, exe, settings)?;
    // Quoting keeps every value one inert shell word, but a crontab entry is one line: a line
    // break inside a value would end it, and what follows would be read as a crontab line of
    // its own (a schedule and a command, e.g. from a database URL or a directory name someone
    // else chose). Such values cannot be written; nor can other control characters.
    if let Some(bad) = command.chars().find(|c| c.is_control()) {
        return Err(Failure::Usage(anyhow!(
            "a setting for the crontab line (binary path, database URL, directories, time zone) \
             holds the control character {bad:?}, which a crontab line cannot hold; rename it"
        )));
    }
    Ok(CrontabEntry {
        code: job.code.clone(),
        schedule: job.schedule.clone(),
        command,
    })
}

/// The shell command of one job's line, every value quoted.
fn command_line(job: &CronJobLine, exe: &Path, settings: &Settings) -> CommandResult<String> {
    let mut words = vec![shell_quote(&exe.display().to_string())];
    match &settings.env_file {
        Some(file) => {
            words.push("--env-file".into());
            words.push(shell_quote(&absolute(file)?.display().to_string()));
        }
        None => {
            if settings.api_token.is_some() {
                return Err(Failure::Usage(anyhow!(
                    "CRM_API_TOKEN is set, and a crontab must not hold secrets: put it in a file \
                     readable only by you and pass --env-file FILE"
                )));
            }
            if crm_core::redact_password(&settings.database_url) != settings.database_url {
                return Err(Failure::Usage(anyhow!(
                    "the database URL holds a password, and a crontab must not hold secrets: put \
                     CRM_DATABASE_URL in a file readable only by you and pass --env-file FILE"
                )));
            }
            words.push("--database-url".into());
            words.push(shell_quote(&absolute_database_url(&settings.database_url)?));
        }
    }
    if let Some(url) = &settings.graphql_url {
        words.push("--graphql-url".into());
        words.push(shell_quote(url));
    }
    let log_dir = absolute(&settings.log_dir)?;
    words.push("--log-dir".into());
    words.push(shell_quote(&log_dir.display().to_string()));
    if let Some(zone) = &settings.time_zone {
        words.push("--time-zone".into());
        words.push(shell_quote(zone));
    }
    words.extend(["jobs".into(), "run".into(), shell_quote(&job.code)]);
    let output = log_dir.join(CRON_OUTPUT_LOG);
    Ok(format!(
        "{} >> {} 2>&1",
        words.join(" "),
        shell_quote(&output.display().to_string())
    ))
}

fn absolute(path: &Path) -> CommandResult<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("Failed to make {} absolute", path.display()))
        .map_err(Failure::Usage)
}

/// cron runs in `$HOME`: a relative SQLite path must become absolute to name the same file.
fn absolute_database_url(url: &str) -> CommandResult<String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(url.to_owned());
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() || path.starts_with(':') || path.starts_with('/') {
        return Ok(url.to_owned());
    }
    let absolute = absolute(Path::new(path))?;
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", absolute.display()),
        None => format!("sqlite://{}", absolute.display()),
    })
}
