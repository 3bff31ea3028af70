//! The runner and the ready-made scheduler loop need no async runtime: they run to the end under
//! `futures::executor::block_on`, a bare executor with no reactor, no timer and no spawner,
//! which is the least any runtime (tokio, async-std, smol) gives.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_jobs::{
    Alert, AlertError, AlertHook, CronJob, JobContext, JobError, LogAlert, ManualClock,
    MemoryLedger, RunLedger as _, RunOutcome, Runner, Schedule, Scheduler,
};
use crm_jobs::{JobOptions, MisfirePolicy};
use futures::channel::oneshot;

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

/// An hourly job that skips the ticks it missed, and tells the test each tick it ran.
struct SkipsMissedTicks(std::sync::Mutex<mpsc::Sender<DateTime<Utc>>>);

#[async_trait]
impl CronJob for SkipsMissedTicks {
    fn code(&self) -> &str {
        "skips_missed_ticks"
    }

    fn schedule(&self) -> Schedule {
        Schedule::cron("0 * * * *").unwrap()
    }

    fn options(&self) -> JobOptions {
        JobOptions::default().misfire(MisfirePolicy::Skip)
    }

    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.0.lock().unwrap().send(ctx.tick).unwrap();
        Ok("ran".to_owned())
    }
}

/// Hands the code and tick of each late or missed tick's alert to the test.
#[derive(Debug)]
struct ToldOverdue(std::sync::Mutex<mpsc::Sender<(String, DateTime<Utc>)>>);

#[async_trait]
impl AlertHook for ToldOverdue {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        if let Alert::Late { code, tick, .. } | Alert::Missed { code, tick, .. } = alert {
            let _ = self.0.lock().unwrap().send((code.clone(), *tick));
        }
        Ok(())
    }
}

#[test]
fn a_scheduler_watching_schedules_alerts_a_skipped_tick_and_stops_when_its_stop_resolves() {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let (ran_tx, ran) = mpsc::channel();
    let (told_tx, told) = mpsc::channel();
    let runner = Runner::builder()
        .ledger(Arc::new(MemoryLedger::new()))
        .clock(Arc::new(clock.clone()))
        .alert_hook(Arc::new(ToldOverdue(std::sync::Mutex::new(told_tx))))
        .time_zone(chrono_tz::UTC)
        .job(Box::new(SkipsMissedTicks(std::sync::Mutex::new(ran_tx))))
        .build()
        .unwrap();
    let (stop_tx, stop) = oneshot::channel::<()>();
    let scheduler = Scheduler::new(Arc::new(runner))
        .retention(None)
        .watch_schedules(true);

    let driver = std::thread::spawn(move || {
        let wait = Duration::from_secs(30);
        let first = ran.recv_timeout(wait).expect("the 10:00 tick runs");
        // The process slept through 11:00 (a suspended machine): the tick is skipped, and the
        // watch inside the scheduler tells the hook.
        clock.set(start + TimeDelta::minutes(65));
        let alert = told.recv_timeout(wait).ok();
        stop_tx.send(()).unwrap();
        (first, alert, ran)
    });
    let summary = futures::executor::block_on(scheduler.run_until(
        async move {
            let _ = stop.await;
        },
        Duration::from_secs(5),
    ));

    let (first, alert, ran) = driver.join().unwrap();
    assert_eq!(first, start);
    assert_eq!(
        alert,
        Some((
            "skips_missed_ticks".to_owned(),
            start + TimeDelta::minutes(60)
        ))
    );
    assert!(
        ran.try_recv().is_err(),
        "the 11:00 tick was skipped, not run"
    );
    assert_eq!(summary.unfinished, 0);
}
