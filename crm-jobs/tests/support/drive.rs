//! Driving a runner through simulated time, as the scheduler does.

use chrono::{DateTime, Utc};
use crm_jobs::{ManualClock, RunStatus, Runner};

/// Drives `runner` the way the scheduler does, from `from` until before `until`: run what is
/// due, ask when to wake, jump the clock there. Every report must be a success.
pub(crate) async fn drive(
    runner: &Runner,
    clock: &ManualClock,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) {
    let mut now = from;
    loop {
        clock.set(now);
        for report in runner.run_due(now).await {
            assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        }
        match runner.next_wakeup(now).await {
            Some(next) if next < until => {
                assert!(next > now, "the wakeup must move forward");
                now = next;
            }
            _ => return,
        }
    }
}
