//! The guard around a job's run: its timeout, and a panic caught and recorded as a failure.

use std::panic::AssertUnwindSafe;

use crm_core::ledger::RunOutcome;
use futures::FutureExt as _;
use futures::future::{self, Either};

use super::Registered;
use crate::job::JobContext;

/// Runs `job` for `ctx` within its timeout, a panic caught: the run's outcome and message,
/// whatever the job did.
pub(super) async fn run_guarded(job: &Registered, ctx: &JobContext) -> (RunOutcome, String) {
    let run = AssertUnwindSafe(job.job.run(ctx)).catch_unwind();
    let result = match job.options.timeout {
        Some(limit) => {
            let timer = async_io::Timer::after(limit);
            futures::pin_mut!(run);
            match future::select(run, timer).await {
                Either::Left((result, _)) => Some(result),
                Either::Right(_) => None,
            }
        }
        None => Some(run.await),
    };
    match result {
        Some(Ok(Ok(message))) => (RunOutcome::Succeeded, message),
        Some(Ok(Err(error))) => (RunOutcome::Failed, error.to_string()),
        Some(Err(payload)) => (
            RunOutcome::Failed,
            format!("panicked: {}", panic_message(payload.as_ref())),
        ),
        None => (
            RunOutcome::Failed,
            format!(
                "timed out after {}s",
                job.options.timeout.unwrap_or_default().as_secs_f64()
            ),
        ),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}
