//! `log_crm_heartbeat`: the original's django-crontab `crm.cron.log_crm_heartbeat`.

use crate::crm_access::CrmAccess;
use crate::job::{JobContext, JobError};

contract_job! {
    /// Appends a heartbeat line every five minutes, after checking that the GraphQL endpoint
    /// answers its `hello` query.
    pub struct LogCrmHeartbeat {
        code: "log_crm_heartbeat",
        schedule: LOG_CRM_HEARTBEAT = "every five minutes",
        log: HEARTBEAT = "crm_heartbeat_log.txt",
    }
}

impl LogCrmHeartbeat {
    /// A gap in the heartbeat log shows when the scheduler stopped; a "not responding" line
    /// shows when the API did. An unresponsive endpoint is logged with the reason and the run
    /// fails, so the runner's failure alerts fire too. A dry run checks but logs nothing.
    async fn run_once(&self, ctx: &JobContext) -> Result<String, JobError> {
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
