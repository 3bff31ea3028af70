//! The runner and the ready-made scheduler loop need no async runtime: they run to the end under
//! `futures::executor::block_on`, a bare executor with no reactor, no timer and no spawner,
//! which is the least any runtime (tokio, async-std, smol) gives.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_jobs::{
    CronJob, JobContext, JobError, LogAlert, ManualClock, MemoryLedger, RunLedger as _, RunOutcome,
    Runner, Schedule, Scheduler,
};

/// Tells the test which tick it ran.
struct ReportTick(std::sync::Mutex<mpsc::Sender<DateTime<Utc>>>);

#[async_trait]
impl CronJob for ReportTick {
    fn code(&self) -> &str {
        "report_tick"
    }

    fn schedule(&self) -> Schedule {
        Schedule::cron("*/5 * * * *").unwrap()
    }

    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.0.lock().unwrap().send(ctx.tick).unwrap();
        Ok(format!("ran {}", ctx.tick))
    }
}

#[test]
fn the_scheduler_runs_each_tick_and_shuts_down_under_a_bare_block_on() {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let ledger = Arc::new(MemoryLedger::new());
    let (ticks_tx, ticks) = mpsc::channel();
    let runner = Runner::builder()
        .ledger(ledger.clone())
        .clock(Arc::new(clock.clone()))
        .alert_hook(Arc::new(LogAlert))
        .time_zone(chrono_tz::UTC)
        .job(Box::new(ReportTick(std::sync::Mutex::new(ticks_tx))))
        .build()
        .unwrap();
    let scheduler = Scheduler::new(Arc::new(runner)).retention(None);
    let handle = scheduler.handle();

    // The test drives the clock from a plain thread while the scheduler runs on this one.
    let driver = std::thread::spawn(move || {
        let wait = Duration::from_secs(30);
        let first = ticks.recv_timeout(wait).expect("the first tick runs");
        clock.set(start + TimeDelta::minutes(5));
        let second = ticks.recv_timeout(wait).expect("the next tick runs");
        handle.shutdown(Duration::from_secs(5));
        (first, second)
    });
    let summary = futures::executor::block_on(scheduler.run());

    let (first, second) = driver.join().unwrap();
    assert_eq!((first, second), (start, start + TimeDelta::minutes(5)));
    assert_eq!(summary.unfinished, 0);
    let runs = futures::executor::block_on(ledger.history(None, 10)).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|run| run.outcome == RunOutcome::Succeeded));
}
