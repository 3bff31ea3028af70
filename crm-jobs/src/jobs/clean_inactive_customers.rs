//! `clean_inactive_customers`: the original's `clean_inactive_customers.sh`.

use crate::crm_access::CrmAccess;
use crate::job::{JobContext, JobError};

contract_job! {
    /// Deletes customers who have ordered nothing for a year and have been customers for longer,
    /// and logs how many.
    pub struct CleanInactiveCustomers {
        code: "clean_inactive_customers",
        schedule: CLEAN_INACTIVE_CUSTOMERS = "Sundays at 02:00",
        log: CUSTOMER_CLEANUP = "customer_cleanup_log.txt",
    }
}

impl CleanInactiveCustomers {
    /// Customers who stopped ordering a year ago are dead weight in every list and mailing;
    /// the store deletes them (and their orders) set-based, in one transaction, so a failure
    /// deletes nobody. The count is of customers only. A dry run counts and changes nothing,
    /// not even the log.
    ///
    /// The log is opened before anything is deleted, so an unwritable log directory fails the
    /// run with every customer still there; a write that fails after the deletion (a full
    /// disk) fails the run with an error that says how many were deleted.
    async fn run_once(&self, ctx: &JobContext) -> Result<String, JobError> {
        if ctx.dry_run {
            let count = self
                .crm
                .delete_inactive_customers(ctx.started_at, true)
                .await?;
            return Ok(format!("Would delete {count} inactive customers (dry run)"));
        }
        let mut log = self.log.open()?;
        let count = self
            .crm
            .delete_inactive_customers(ctx.started_at, false)
            .await?;
        let message = format!("Deleted {count} inactive customers");
        log.append_events(ctx.started_at, &[&message])
            .map_err(|e| e.after_work(&message))?;
        Ok(message)
    }
}
