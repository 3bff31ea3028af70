//! `log_crm_heartbeat`: the original's django-crontab `crm.cron.log_crm_heartbeat`.

use async_trait::async_trait;

use crate::config::JobsConfig;
use std::sync::Arc;

use crate::crm_access::CrmAccess;
use crate::job::{CronJob, JobContext, JobError};
use crate::log_file::{LogFile, file_names};
use crate::schedule::Schedule;

/// Appends a heartbeat line every five minutes, after checking that the GraphQL endpoint
/// answers its `hello` query.
pub struct LogCrmHeartbeat {
    crm: Arc<dyn CrmAccess>,
    log: LogFile,
}

impl LogCrmHeartbeat {
    /// The job's code.
    pub const CODE: &'static str = "log_crm_heartbeat";
    /// The contract's schedule: every five minutes.
    pub const SCHEDULE: &'static str = crate::schedule::schedules::LOG_CRM_HEARTBEAT;

    /// The job asking `crm`, logging to `crm_heartbeat_log.txt` in `config.log_dir`.
    pub fn new(crm: impl CrmAccess, config: &JobsConfig) -> Self {
        Self {
            crm: Arc::new(crm),
            log: config.log_file(file_names::HEARTBEAT),
        }
    }
}

#[async_trait]
impl CronJob for LogCrmHeartbeat {
    fn code(&self) -> &str {
        Self::CODE
    }

    fn schedule(&self) -> Schedule {
        super::contract_schedule(Self::SCHEDULE)
    }

    /// A gap in the heartbeat log shows when the scheduler stopped; a "not responding" line
    /// shows when the API did. An unresponsive endpoint is logged with the reason and the run
    /// fails, so the runner's failure alerts fire too. A dry run checks but logs nothing.
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        let stamp = self.log.heartbeat_timestamp(ctx.started_at);
        match self.crm.hello().await {
            Ok(_) => {
                if !ctx.dry_run {
                    self.log.append_lines(&[format!("{stamp} CRM is alive")])?;
                }
                Ok("CRM is alive".to_owned())
            }
            Err(error) => {
                if !ctx.dry_run {
                    self.log
                        .append_lines(&[format!("{stamp} CRM is alive - {error}")])?;
                }
                Err(error)
            }
        }
    }
}
