//! `crm seed`: deterministic demo data, with a progress bar on a terminal.

use anyhow::Context as _;
use crm_core::{Database, SeedConfig, SeedProgress, SeedStage, SeedSummary};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::SeedArgs;
use crate::outcome::CommandResult;

pub(crate) async fn run(db: &Database, args: &SeedArgs) -> CommandResult {
    let config = SeedConfig {
        customers: args.customers,
        products: args.products,
        orders: args.orders,
        seed: args.seed,
        now: chrono::Utc::now(),
    };
    let summary = seed_with_progress(db, &config).await?;
    println!(
        "Seeded {} customers, {} products, {} orders ({} order lines).",
        summary.customers, summary.products, summary.orders, summary.order_lines
    );
    Ok(())
}

/// Seeds, drawing one bar per table on stderr when it is a terminal (hidden otherwise).
async fn seed_with_progress(db: &Database, config: &SeedConfig) -> anyhow::Result<SeedSummary> {
    let mut bars = ProgressBars::default();
    let summary = crm_core::seed(db, config, &mut |progress| bars.show(progress))
        .await
        .context("Failed to seed the database")?;
    bars.finish();
    Ok(summary)
}

/// One progress bar per table being seeded, each finished when the next table starts.
#[derive(Default)]
pub(crate) struct ProgressBars {
    bar: Option<(SeedStage, ProgressBar)>,
}

impl ProgressBars {
    pub(crate) fn show(&mut self, progress: SeedProgress) {
        let current = match &self.bar {
            Some((stage, b)) if *stage == progress.stage => b.clone(),
            _ => {
                if let Some((_, previous)) = self.bar.take() {
                    previous.finish();
                }
                let style = ProgressStyle::with_template(
                    "{prefix:>9} [{bar:40}] {pos}/{len} ({per_sec}, {eta})",
                )
                .expect("the progress template is valid")
                .progress_chars("=> ");
                let b = ProgressBar::new(progress.total)
                    .with_style(style)
                    .with_prefix(stage_name(progress.stage));
                self.bar = Some((progress.stage, b.clone()));
                b
            }
        };
        current.set_position(progress.done);
    }

    pub(crate) fn finish(self) {
        if let Some((_, b)) = self.bar {
            b.finish();
        }
    }
}

fn stage_name(stage: SeedStage) -> &'static str {
    match stage {
        SeedStage::Customers => "customers",
        SeedStage::Products => "products",
        SeedStage::Orders => "orders",
        _ => "rows",
    }
}
