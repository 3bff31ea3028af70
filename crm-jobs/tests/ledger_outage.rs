//! The scheduler when its run ledger (the database) is briefly unavailable: the tick due
//! meanwhile can be neither claimed nor recorded; the scheduler must look again soon
//! ([`LEDGER_RETRY_AFTER`]) rather than sleep until the next tick, so the tick runs, once, as
//! soon as the ledger is back. The outage tests of `crm-cli` show the same against a real
//! PostgreSQL cut off by a proxy (row O2); this one needs no database and no long-test flag.

#[path = "support/flaky_ledger.rs"]
mod flaky_ledger;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use crm_jobs::{
    CronJob, JobContext, JobError, LEDGER_RETRY_AFTER, ManualClock, RunLedger, RunOutcome,
    RunStatus, Runner, Schedule, Scheduler,
};
use flaky_ledger::FlakyLedger;

struct Heartbeat(Arc<AtomicU32>);

#[async_trait]
impl CronJob for Heartbeat {
    fn code(&self) -> &str {
        "log_crm_heartbeat"
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("*/5 * * * *").unwrap()
    }
    async fn run(&self, _ctx: &JobContext) -> std::result::Result<String, JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok("alive".to_owned())
    }
}

#[async_std::test]
async fn a_tick_due_while_the_ledger_is_down_runs_once_soon_after_it_is_back() {
    // The clock stands still at the tick: only the scheduler's own retry can bring it round.
    let tick = Utc.with_ymd_and_hms(2026, 6, 4, 10, 0, 0).unwrap();
    let clock = ManualClock::new(tick);
    let ledger = Arc::new(FlakyLedger::default());
    ledger.down.store(true, Ordering::SeqCst);
    let runs = Arc::new(AtomicU32::new(0));
    let runner = Arc::new(
        Runner::builder()
            .ledger(ledger.clone())
            .clock(Arc::new(clock.clone()))
            .time_zone(Tz::UTC)
            .job(Box::new(Heartbeat(runs.clone())))
            .build()
            .unwrap(),
    );
    let scheduler = Scheduler::new(runner.clone());
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());

    // The first round finds the ledger down: nothing runs, nothing can be recorded.
    let started = Instant::now();
    while ledger.refused.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no first round"
        );
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    async_io::Timer::after(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // The database is back; the next tick is five minutes of a clock that does not move away.
    ledger.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(
            back.elapsed() < LEDGER_RETRY_AFTER + Duration::from_secs(5),
            "the tick due during the outage never ran"
        );
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
    let ran_after = back.elapsed();
    // Once, recorded as the 10:00 tick.
    async_io::Timer::after(Duration::from_millis(300)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let history = ledger.inner.history(None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].tick, history[0].outcome),
        (tick, RunOutcome::Succeeded)
    );
    handle.shutdown(Duration::from_secs(5));
    assert_eq!(task.await.unfinished, 0);
    eprintln!("ledger back: the tick ran {ran_after:?} later");
}

/// A run whose end meets a connection the server has just ended (the first attempt fails at
/// once) is recorded on the second attempt: succeeded, as it did, not left "running" until its
/// lease runs out and then counted as abandoned. Found by the PostgreSQL outage test (row O1),
/// where a heartbeat due during the kills was never recorded as succeeded.
#[async_std::test]
async fn a_run_whose_end_meets_an_ended_connection_is_recorded_on_the_second_attempt() {
    let ledger = Arc::new(FlakyLedger::default());
    let runs = Arc::new(AtomicU32::new(0));
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 6, 4, 10, 0, 0).unwrap());
    let runner = Runner::builder()
        .ledger(ledger.clone())
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .job(Box::new(Heartbeat(runs.clone())))
        .build()
        .unwrap();

    ledger.finishes_to_fail.store(1, Ordering::SeqCst);
    let report = runner
        .run_now("log_crm_heartbeat", true, false)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{}", report.message);
    assert_eq!(ledger.refused.load(Ordering::SeqCst), 1);
    let history = ledger.inner.history(None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, RunOutcome::Succeeded);

    // Two failures in a row are an outage, not a dropped connection: reported, not hidden.
    clock.advance(chrono::TimeDelta::minutes(1));
    ledger.finishes_to_fail.store(2, Ordering::SeqCst);
    let report = runner
        .run_now("log_crm_heartbeat", true, false)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::LedgerError);
    assert!(
        report.message.contains("not recorded"),
        "{}",
        report.message
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
