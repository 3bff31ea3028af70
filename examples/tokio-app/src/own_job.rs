//! The app's own job, registered beside the CRM's five: proof that an embedder's `CronJob`
//! runs on the same runner, here using tokio's own API from inside the job.

use async_trait::async_trait;
use crm_jobs::{CronJob, JobContext, JobError, JobsConfig, LogFile, Schedule};

/// The log file of [`LogTokioUptime`], in the jobs' log directory.
pub const TOKIO_APP_LOG: &str = "tokio_app_log.txt";

/// Logs, every minute, that the app is up and on how many tokio worker threads.
#[derive(Debug)]
pub struct LogTokioUptime {
    log: LogFile,
}

impl LogTokioUptime {
    /// The job's code.
    pub const CODE: &'static str = "log_tokio_uptime";

    /// The job, logging to [`TOKIO_APP_LOG`] in `config.log_dir`.
    pub fn new(config: &JobsConfig) -> Self {
        Self {
            log: LogFile::new(&config.log_dir, TOKIO_APP_LOG, config.time_zone),
        }
    }
}

#[async_trait]
impl CronJob for LogTokioUptime {
    fn code(&self) -> &str {
        Self::CODE
    }

    fn schedule(&self) -> Schedule {
        Schedule::every_minutes(1).expect("one minute is a valid interval")
    }

    /// A line a minute tells the app's operator it is alive, apart from the CRM's heartbeat
    /// (which says the CRM answers). It asks tokio's runtime, which it runs inside.
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        let workers = tokio::runtime::Handle::try_current()
            .map_err(|e| JobError::Other(format!("not on a tokio runtime: {e}")))?
            .metrics()
            .num_workers();
        let line = format!("tokio app up on {workers} worker threads");
        if !ctx.dry_run {
            self.log.append_events(ctx.started_at, &[&line])?;
        }
        Ok(line)
    }
}
