//! The app's own scheduling loop, on tokio's timers and tasks (not crm-jobs' `Scheduler`): the
//! runner says what is due and when to look again; tokio sleeps, runs each round as a task and
//! listens for SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crm_jobs::{RunReport, RunStatus, Runner};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

/// How long a stopping app lets running jobs finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The longest sleep between two looks: the wall clock may jump (NTP, a suspended laptop), and
/// tokio's timers follow the monotonic one.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// Runs `runner`'s jobs when they are due until SIGINT or SIGTERM, then lets the running ones
/// finish (at most [`SHUTDOWN_GRACE`]). Each round runs as a tokio task, so a long job never
/// delays another job's tick; the runner's ledger keeps each tick to one run. Beside them, as a
/// tokio task, crm-jobs' [`upkeep`](crm_jobs::upkeep): late and missed jobs are alerted and runs
/// older than [`crm_jobs::DEFAULT_RETENTION`] pruned daily, so the ledger of an app that runs
/// for months stays small.
pub async fn run_until_signal(runner: Arc<Runner>) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("Failed to listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("Failed to listen for SIGTERM")?;
    let mut rounds = JoinSet::new();
    let upkeep = tokio::spawn(crm_jobs::upkeep(
        runner.clone(),
        Some(crm_jobs::DEFAULT_RETENTION),
    ));
    eprintln!(
        "Running {} on tokio until SIGINT/SIGTERM (times in {})",
        runner.codes().collect::<Vec<_>>().join(", "),
        runner.time_zone().name()
    );
    'plan: loop {
        let now = runner.clock().now();
        let round = runner.clone();
        rounds.spawn(async move { round.run_due(now).await });
        let sleep = match runner.next_wakeup(now).await {
            Some(at) => (at - runner.clock().now())
                .to_std()
                .unwrap_or_default()
                .min(LONGEST_SLEEP),
            None => LONGEST_SLEEP,
        };
        let wake = tokio::time::sleep(sleep);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => continue 'plan,
                _ = interrupt.recv() => break 'plan,
                _ = terminate.recv() => break 'plan,
                Some(ended) = rounds.join_next() => {
                    // A round that ran something may have freed a tick held up behind it (a
                    // round that found its job busy): plan again. A round that ran nothing
                    // changes nothing.
                    if ended.map(|reports| ran_something(&reports)).unwrap_or(true) {
                        continue 'plan;
                    }
                }
            }
        }
    }
    upkeep.abort();
    eprintln!(
        "Stopping: letting {} running rounds finish (at most {} s)",
        rounds.len(),
        SHUTDOWN_GRACE.as_secs()
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while rounds.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            unfinished = rounds.len(),
            "Stopped with runs still going; they will be marked abandoned"
        );
    }
    Ok(())
}

fn ran_something(reports: &[RunReport]) -> bool {
    reports
        .iter()
        .any(|report| matches!(report.status, RunStatus::Succeeded | RunStatus::Failed))
}
