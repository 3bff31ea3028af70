//! `send_order_reminders`: the original's `send_order_reminders.py`.

use chrono::Duration;
use futures::TryStreamExt as _;

use crate::crm_access::{CrmAccess, OrderToRemind};
use crate::job::{JobContext, JobError};
use crate::log_file::OpenLogFile;

/// What the command line prints after running [`SendOrderReminders`], as the original did.
pub const ORDER_REMINDERS_PROCESSED: &str = "Order reminders processed!";

/// How far back an order still gets a reminder.
const REMINDER_WINDOW_DAYS: i64 = 7;

contract_job! {
    /// Logs a reminder for every order placed in the last seven days, asking the GraphQL endpoint
    /// (not the database) which orders those are.
    pub struct SendOrderReminders {
        code: "send_order_reminders",
        schedule: SEND_ORDER_REMINDERS = "every day at 08:00",
        log: ORDER_REMINDERS = "order_reminders_log.txt",
    }
}

impl SendOrderReminders {
    /// Recent orders are the ones worth a follow-up; the log (one line per order, with the
    /// customer's e-mail, so the file is owner-only) is what a mailer picks up. It goes through
    /// the API like any client would, so it works against a remote CRM. The window is the seven
    /// days up to the run's start. A dry run asks but logs nothing.
    ///
    /// The orders come a page at a time (the largest page the CRM gives) and each page's lines
    /// go to the log in one append before the next page is asked for, so the run holds one page
    /// whatever the week's size (82,000 orders at a million). A failure part way leaves the
    /// pages already logged (whole lines), and the error says how many orders they held.
    async fn run_once(&self, ctx: &JobContext) -> Result<String, JobError> {
        let to = ctx.started_at;
        let from = to - Duration::days(REMINDER_WINDOW_DAYS);
        let mut pages = self.crm.order_pages_between(from, to);
        // Opened at the first order, so a week without orders creates no file.
        let mut log: Option<OpenLogFile> = None;
        let mut count: u64 = 0;
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(error) if count == 0 || ctx.dry_run => return Err(error),
                Err(error) => {
                    return Err(JobError::Other(format!(
                        "Logged reminders for {count} orders, then stopped: {error}"
                    )));
                }
            };
            if !ctx.dry_run && !page.is_empty() {
                if log.is_none() {
                    log = Some(self.log.open()?);
                }
                let Some(file) = log.as_mut() else {
                    unreachable!("opened above")
                };
                file.append_event_messages(ctx.started_at, page.iter().map(Reminder))
                    .map_err(|e| {
                        if count == 0 {
                            e
                        } else {
                            e.after_work(format!("Logged reminders for {count} orders"))
                        }
                    })?;
            }
            count += page.len() as u64;
        }
        if ctx.dry_run {
            return Ok(format!("Would log reminders for {count} orders (dry run)"));
        }
        Ok(format!("Logged reminders for {count} orders"))
    }
}

/// An order's reminder message, `Reminder: order <id> for <customer email>`, formatted straight
/// into the log's batch.
struct Reminder<'a>(&'a OrderToRemind);

impl std::fmt::Display for Reminder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Reminder: order {} for {}",
            self.0.id, self.0.customer_email
        )
    }
}
