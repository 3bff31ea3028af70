//! `generate_crm_report`: the original's Celery task `crm.tasks.generate_crm_report`.

use crate::crm_access::{CrmAccess, ReportTotals};
use crate::job::{JobContext, JobError};

contract_job! {
    /// Logs the weekly totals: customers, orders and revenue, as the GraphQL endpoint counts them.
    ///
    /// Runs of different ticks may overlap, as the original's Celery task's do: a run only
    /// reads and appends its one line (in one write), so nothing is gained by making a broker
    /// worker that drains a backlog of ticks run them one at a time. Each tick still runs once.
    pub struct GenerateCrmReport {
        code: "generate_crm_report",
        schedule: GENERATE_CRM_REPORT = "Mondays at 06:00",
        log: CRM_REPORT = "crm_report_log.txt",
        options: crate::job::JobOptions::default().allow_parallel_runs(true),
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

impl GenerateCrmReport {
    /// A weekly line in a file is the cheapest dashboard there is; the totals are counted by
    /// the server's database, not by fetching every row. A dry run asks but logs nothing.
    async fn run_once(&self, ctx: &JobContext) -> Result<String, JobError> {
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
