//! `update_low_stock`: the original's django-crontab `crm.cron.update_low_stock`.

use crate::crm_access::{CrmAccess, LOW_STOCK_THRESHOLD};
use crate::job::{JobContext, JobError};

contract_job! {
    /// Restocks every product with fewer than 10 units (over GraphQL, the `updateLowStockProducts`
    /// mutation) and logs each product's new stock.
    pub struct UpdateLowStock {
        code: "update_low_stock",
        schedule: UPDATE_LOW_STOCK = "every twelve hours, at 00:00 and 12:00",
        log: LOW_STOCK_UPDATES = "low_stock_updates_log.txt",
    }
}

impl UpdateLowStock {
    /// Simulated restocking keeps products orderable; the server applies it atomically, so
    /// this job only asks and records what changed, one line per product. A dry run lists the
    /// products that would be restocked and changes nothing.
    ///
    /// The log is opened before the mutation, so an unwritable log directory fails the run
    /// with no stock changed; a write that fails after it (a full disk) fails the run with an
    /// error that says how many products were restocked.
    async fn run_once(&self, ctx: &JobContext) -> Result<String, JobError> {
        if ctx.dry_run {
            let low = self.crm.products_below(LOW_STOCK_THRESHOLD).await?;
            return Ok(format!("Would restock {} products (dry run)", low.len()));
        }
        let mut log = self.log.open()?;
        let outcome = self
            .crm
            .restock_low_stock(Some(&restock_key(ctx.tick)))
            .await?;
        let lines: Vec<String> = outcome
            .products
            .iter()
            .map(|product| format!("{}: stock now {}", product.name, product.stock))
            .collect();
        let message = if outcome.replayed {
            format!(
                "Restocked {} products (by this tick's earlier attempt; nothing changed now)",
                outcome.products.len()
            )
        } else {
            format!("Restocked {} products", outcome.products.len())
        };
        log.append_events(ctx.started_at, &lines)
            .map_err(|e| e.after_work(&message))?;
        Ok(message)
    }
}

/// The restock's idempotency key: the job's code and the tick, unique per tick. A retry of the
/// tick (its first attempt restocked, then the answer was lost or the run was cut short) sends
/// the same key, so the CRM does not restock twice; the logged products are those the first
/// attempt restocked, whose lines that attempt may not have written.
fn restock_key(tick: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}@{}",
        UpdateLowStock::CODE,
        tick.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}
