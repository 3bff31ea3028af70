//! `send_order_reminders`: the original's `send_order_reminders.py`.

use async_trait::async_trait;
use chrono::Duration;

use crate::config::JobsConfig;
use std::sync::Arc;

use crate::crm_access::CrmAccess;
use crate::job::{CronJob, JobContext, JobError};
use crate::log_file::{LogFile, file_names};
use crate::schedule::Schedule;

/// What the command line prints after running [`SendOrderReminders`], as the original did.
pub const ORDER_REMINDERS_PROCESSED: &str = "Order reminders processed!";

/// How far back an order still gets a reminder.
const REMINDER_WINDOW_DAYS: i64 = 7;

/// Logs a reminder for every order placed in the last seven days, asking the GraphQL endpoint
/// (not the database) which orders those are.
pub struct SendOrderReminders {
    crm: Arc<dyn CrmAccess>,
    log: LogFile,
}

impl SendOrderReminders {
    /// The job's code.
    pub const CODE: &'static str = "send_order_reminders";
    /// The contract's schedule: every day at 08:00.
    pub const SCHEDULE: &'static str = crate::schedule::schedules::SEND_ORDER_REMINDERS;

    /// The job asking `crm`, logging to `order_reminders_log.txt` in `config.log_dir`.
    pub fn new(crm: impl CrmAccess, config: &JobsConfig) -> Self {
        Self {
            crm: Arc::new(crm),
            log: LogFile::new(
                &config.log_dir,
                file_names::ORDER_REMINDERS,
                config.time_zone,
            ),
        }
    }
}

#[async_trait]
impl CronJob for SendOrderReminders {
    fn code(&self) -> &str {
        Self::CODE
    }

    fn schedule(&self) -> Schedule {
        super::contract_schedule(Self::SCHEDULE)
    }

    /// Recent orders are the ones worth a follow-up; the log (one line per order, with the
    /// customer's e-mail, so the file is owner-only) is what a mailer picks up. It goes through
    /// the API like any client would, so it works against a remote CRM. The window is the seven
    /// days up to the run's start. A dry run asks but logs nothing.
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        let to = ctx.started_at;
        let from = to - Duration::days(REMINDER_WINDOW_DAYS);
        let orders = self.crm.orders_between(from, to).await?;
        if ctx.dry_run {
            return Ok(format!(
                "Would log reminders for {} orders (dry run)",
                orders.len()
            ));
        }
        let lines: Vec<String> = orders
            .iter()
            .map(|order| format!("Reminder: order {} for {}", order.id, order.customer_email))
            .collect();
        self.log.append_events(ctx.started_at, &lines)?;
        Ok(format!("Logged reminders for {} orders", orders.len()))
    }
}
