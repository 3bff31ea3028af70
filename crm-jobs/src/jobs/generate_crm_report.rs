//! `generate_crm_report`: the original's Celery task `crm.tasks.generate_crm_report`.

use async_trait::async_trait;

use crate::config::JobsConfig;
use std::sync::Arc;

use crate::crm_access::{CrmAccess, ReportTotals};
use crate::job::{CronJob, JobContext, JobError};
use crate::log_file::{LogFile, file_names};
use crate::schedule::Schedule;

/// Logs the weekly totals: customers, orders and revenue, as the GraphQL endpoint counts them.
pub struct GenerateCrmReport {
    crm: Arc<dyn CrmAccess>,
    log: LogFile,
}

impl GenerateCrmReport {
    /// The job's code.
    pub const CODE: &'static str = "generate_crm_report";
    /// The contract's schedule: Mondays at 06:00.
    pub const SCHEDULE: &'static str = crate::schedule::schedules::GENERATE_CRM_REPORT;

    /// The job asking `crm`, logging to `crm_report_log.txt` in `config.log_dir`.
    pub fn new(crm: impl CrmAccess, config: &JobsConfig) -> Self {
        Self {
            crm: Arc::new(crm),
            log: config.log_file(file_names::CRM_REPORT),
        }
    }
}

/// `Report: X customers, Y orders, Z revenue.` with Z exact, rounded half away from zero to
/// two decimals.
pub(crate) fn report_line(totals: &ReportTotals) -> String {
    let revenue = totals
        .revenue
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    format!(
        "Report: {} customers, {} orders, {:.2} revenue.",
        totals.customers, totals.orders, revenue
    )
}

#[async_trait]
impl CronJob for GenerateCrmReport {
    fn code(&self) -> &str {
        Self::CODE
    }

    fn schedule(&self) -> Schedule {
        super::contract_schedule(Self::SCHEDULE)
    }

    /// A weekly line in a file is the cheapest dashboard there is; the totals are counted by
    /// the server's database, not by fetching every row. A dry run asks but logs nothing.
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        let totals = self.crm.report_totals().await?;
        let line = report_line(&totals);
        if !ctx.dry_run {
            self.log.append_events(ctx.started_at, &[&line])?;
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn totals(revenue: Decimal) -> ReportTotals {
        ReportTotals {
            customers: 3,
            orders: 5,
            revenue,
        }
    }

    #[test]
    fn revenue_always_shows_two_decimals() {
        assert_eq!(
            report_line(&totals(Decimal::new(1234, 0))),
            "Report: 3 customers, 5 orders, 1234.00 revenue."
        );
        assert_eq!(
            report_line(&totals(Decimal::new(0, 0))),
            "Report: 3 customers, 5 orders, 0.00 revenue."
        );
    }

    #[test]
    fn extra_decimals_are_rounded_half_away_from_zero() {
        assert_eq!(
            report_line(&totals(Decimal::new(10005, 3))),
            "Report: 3 customers, 5 orders, 10.01 revenue."
        );
    }
}
