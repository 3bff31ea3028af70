//! `crm scheduler` (and `crm serve --scheduler`): the jobs run when due, until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use crm_core::Database;
use crm_jobs::{JobsConfig, Scheduler};

use crate::commands::jobs;
use crate::outcome::CommandResult;

/// How long a stopping scheduler lets running jobs finish (systemd's default stop timeout is
/// 90 s, so this ends first).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// A scheduler over the five jobs, recording into `db`.
pub(crate) fn build(db: &Database, config: &JobsConfig) -> CommandResult<Scheduler> {
    let runner = jobs::runner(db, config)?;
    let codes: Vec<&str> = runner.codes().collect();
    eprintln!(
        "Scheduler running {} (times in {}), GraphQL jobs calling {}",
        codes.join(", "),
        runner.time_zone().name(),
        config.graphql_url
    );
    Ok(Scheduler::new(Arc::new(runner)))
}

/// Runs `scheduler` until `stop` resolves, then lets running jobs finish.
pub(crate) async fn run_until(
    scheduler: Scheduler,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let handle = scheduler.handle();
    async_std::task::spawn(async move {
        stop.await;
        eprintln!(
            "Stopping: letting running jobs finish (at most {} s)…",
            SHUTDOWN_GRACE.as_secs()
        );
        handle.shutdown(SHUTDOWN_GRACE);
    });
    let summary = scheduler.run().await;
    if summary.unfinished > 0 {
        tracing::warn!(
            unfinished = summary.unfinished,
            "Scheduler stopped with runs still going; they will be marked abandoned"
        );
    }
}
