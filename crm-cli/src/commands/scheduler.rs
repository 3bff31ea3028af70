//! `crm scheduler` (and `crm serve --scheduler`): the jobs run when due, until SIGINT/SIGTERM.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crm_core::Database;
use crm_jobs::{AlertHook, JobsConfig, Runner, Scheduler};

use crate::commands::jobs;
use crate::outcome::CommandResult;

/// How long a stopping scheduler lets running jobs finish (systemd's default stop timeout is
/// 90 s, so this ends first).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// The five jobs on a runner recording into `db`, alerting `alerts`, ready for a scheduler.
pub(crate) fn build(
    db: &Database,
    config: &JobsConfig,
    alerts: Arc<dyn AlertHook>,
) -> CommandResult<Arc<Runner>> {
    let runner = jobs::runner(db, config, alerts)?;
    let codes: Vec<&str> = runner.codes().collect();
    eprintln!(
        "Scheduler running {} (times in {}), GraphQL jobs calling {}",
        codes.join(", "),
        runner.time_zone().name(),
        config.graphql_url
    );
    Ok(Arc::new(runner))
}

/// Runs the jobs of `runner` when due until `stop` resolves, then lets running jobs finish
/// (for at most [`SHUTDOWN_GRACE`]). Meanwhile checks the schedules every half minute, so a
/// late or missed job is alerted, and prunes runs older than `retention` at start and daily.
pub(crate) async fn run_until(
    runner: Arc<Runner>,
    retention: Option<Duration>,
    stop: impl Future<Output = ()>,
) {
    let stop = async move {
        stop.await;
        // Not `eprintln!`: it panics on a closed stderr, which would leave the scheduler deaf
        // to SIGTERM.
        let _ = writeln!(
            std::io::stderr(),
            "Stopping: letting running jobs finish (at most {} s)…",
            SHUTDOWN_GRACE.as_secs()
        );
    };
    let summary = Scheduler::new(runner)
        .retention(retention)
        .watch_schedules(true)
        .run_until(stop, SHUTDOWN_GRACE)
        .await;
    if summary.unfinished > 0 {
        tracing::warn!(
            unfinished = summary.unfinished,
            "Scheduler stopped with runs still going; they will be marked abandoned"
        );
    }
}
