//! The upkeep a process that runs jobs does beside them, forever: noticing late and missed
//! jobs ([`watch_schedules`]) and keeping the run history in bounds ([`prune_daily`]).
//!
//! Both are plain futures that never end: spawn them on your runtime beside the jobs (or
//! `select` them with your loop) and drop or cancel them at shutdown. They wait on the runner's
//! [`Clock`](crate::Clock), so they need no particular executor and a test's manual clock
//! drives them. The [`Scheduler`](crate::Scheduler) prunes by itself (its
//! [`retention`](crate::Scheduler::retention)); a process without one (a broker worker, an app
//! with its own loop) runs [`prune_daily`]. Any number of processes may run either: each
//! incident is alerted once, and prunes of one ledger do not conflict.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::runner::Runner;
use crate::scheduler::PRUNE_EVERY;

/// How often [`watch_schedules`] checks the schedules: often enough that a late job is told
/// within a minute of its grace running out, rarely enough to cost nothing.
pub const SCHEDULE_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Checks the jobs' schedules every [`SCHEDULE_CHECK_EVERY`] (by the runner's clock, the first
/// time one period after it starts) and alerts, through the runner's hook, each job that is
/// late, missed a tick, or is back on schedule ([`Runner::check_schedules`]). Never returns; a
/// check that fails (the database down) is logged and tried again next period.
pub async fn watch_schedules(runner: Arc<Runner>) {
    loop {
        sleep_for(&runner, SCHEDULE_CHECK_EVERY).await;
        if let Err(e) = runner.check_schedules(runner.clock().now()).await {
            tracing::warn!(error = %e, "Could not check the jobs' schedules");
        }
    }
}

/// Prunes runs older than `retention` ([`Runner::prune_history`]) at once and then every
/// [`PRUNE_EVERY`] (by the runner's clock), so the ledger of a process that records runs
/// without a [`Scheduler`](crate::Scheduler) stops growing without end. Never returns; a prune
/// that fails is logged and tried again next time.
pub async fn prune_daily(runner: Arc<Runner>, retention: Duration) {
    loop {
        if let Err(e) = runner.prune_history(retention).await {
            tracing::warn!(error = %e, "Could not prune the run history; trying again tomorrow");
        }
        sleep_for(&runner, PRUNE_EVERY).await;
    }
}

/// Both of the above for a process that runs jobs without a [`Scheduler`](crate::Scheduler)
/// (a broker worker, an app with its own loop): [`watch_schedules`], and [`prune_daily`] when
/// `retention` is given (`None` keeps every run). One future to spawn beside the jobs and drop
/// at shutdown; never returns.
pub async fn upkeep(runner: Arc<Runner>, retention: Option<Duration>) {
    let watch = watch_schedules(runner.clone());
    match retention {
        Some(keep) => {
            futures::future::join(watch, prune_daily(runner, keep)).await;
        }
        None => watch.await,
    }
}

/// Sleeps `period` by the runner's clock.
async fn sleep_for(runner: &Runner, period: Duration) {
    let clock = runner.clock();
    clock.sleep_until(later(clock.now(), period)).await;
}

/// `now + period`, or the end of time when that does not fit (so a huge period means never).
fn later(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(period)
        .ok()
        .and_then(|period| now.checked_add_signed(period))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc;

    use async_trait::async_trait;
    use chrono::TimeZone as _;
    use crm_core::ledger::{Claim, MemoryLedger, NewRun, RunEnd, RunKind, RunLedger, RunOutcome};
    use futures::future::{self, Either};

    use super::*;
    use crate::alert::{Alert, AlertError, AlertHook};
    use crate::clock::{Clock as _, ManualClock};
    use crate::job::{CronJob, JobContext, JobError};
    use crate::schedule::Schedule;

    fn utc(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, mi, s).unwrap()
    }

    /// An hourly job that does nothing.
    #[derive(Debug)]
    struct Hourly;

    #[async_trait]
    impl CronJob for Hourly {
        fn code(&self) -> &str {
            "hourly"
        }
        fn schedule(&self) -> Schedule {
            Schedule::cron("0 * * * *").unwrap()
        }
        async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
            Ok("ran".to_owned())
        }
    }

    /// Hands each alert's kind to the test thread.
    #[derive(Debug)]
    struct Told(Mutex<mpsc::Sender<&'static str>>);

    #[async_trait]
    impl AlertHook for Told {
        async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
            let kind = match alert {
                Alert::Late { .. } => "late",
                Alert::Missed { .. } => "missed",
                _ => "other",
            };
            let _ = self.0.lock().unwrap().send(kind);
            Ok(())
        }
    }

    fn runner(ledger: Arc<MemoryLedger>, clock: &ManualClock, hook: Told) -> Arc<Runner> {
        Arc::new(
            Runner::builder()
                .job(Box::new(Hourly))
                .ledger(ledger)
                .clock(Arc::new(clock.clone()))
                .alert_hook(Arc::new(hook))
                .time_zone(chrono_tz::UTC)
                .host("upkeep-test")
                .pid(1)
                .build()
                .unwrap(),
        )
    }

    /// Runs `forever` on this thread (a bare executor: no runtime) until `driver`, on a thread of
    /// its own, returns; then returns what the driver returned. The driver starts once `forever`
    /// was first polled (`select` polls its left side first), i.e. is waiting on the clock.
    fn drive<T: Send + 'static>(
        forever: impl Future<Output = ()>,
        driver: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let driving = async move {
            let (done_tx, done) = futures::channel::oneshot::channel();
            let driver = std::thread::spawn(move || {
                let out = driver();
                let _ = done_tx.send(());
                out
            });
            let _ = done.await;
            driver
        };
        futures::pin_mut!(forever, driving);
        match futures::executor::block_on(future::select(forever, driving)) {
            Either::Left(_) => panic!("the upkeep future ended"),
            Either::Right((driver, _)) => driver.join().unwrap(),
        }
    }

    #[test]
    fn watching_checks_every_half_minute_by_the_clock_and_keeps_watching() {
        let clock = ManualClock::new(utc(10, 0, 5));
        let ledger = Arc::new(MemoryLedger::new());
        let (told_tx, told) = mpsc::channel();
        let runner = runner(ledger, &clock, Told(Mutex::new(told_tx)));
        futures::executor::block_on(runner.run_due(clock.now()));
        // 11:02: the 11:00 tick has not started, past its grace.
        clock.set(utc(11, 2, 0));
        let seen = drive(watch_schedules(runner), move || {
            let before_half_a_minute = told.recv_timeout(Duration::from_millis(300)).ok();
            clock.set(utc(11, 2, 30));
            let first = told.recv_timeout(Duration::from_secs(30)).ok();
            // 12:00 came and 11:00 never ran: the same incident, now missed. The watch sleeps
            // until half a minute after it last looked: 11:03:00, or 12:00:50 if the clock
            // moved before it went back to sleep (the alert comes before its check ends).
            clock.set(utc(12, 0, 20));
            let next = told
                .recv_timeout(Duration::from_millis(300))
                .or_else(|_| {
                    clock.set(utc(12, 0, 50));
                    told.recv_timeout(Duration::from_secs(30))
                })
                .ok();
            (before_half_a_minute, first, next)
        });
        assert_eq!(
            seen,
            (None, Some("late"), Some("missed")),
            "no check before the first half minute, then a check each time one passed"
        );
    }

    /// Records a finished run of `hourly` at `at`.
    fn record(ledger: &MemoryLedger, at: DateTime<Utc>) {
        futures::executor::block_on(async {
            let run = NewRun {
                code: "hourly".to_owned(),
                tick: at,
                kind: RunKind::Scheduled,
                attempt: 1,
                started_at: at,
                lease_until: at + TimeDelta::minutes(1),
                host: "writer".to_owned(),
                pid: 7,
            };
            let Claim::Claimed(row) = ledger.claim(&run, false, at).await.unwrap() else {
                panic!("{at} is free");
            };
            ledger
                .finish(
                    row.id,
                    RunEnd {
                        outcome: RunOutcome::Succeeded,
                        at,
                        message: "ran",
                    },
                )
                .await
                .unwrap();
        });
    }

    fn runs(ledger: &MemoryLedger) -> usize {
        futures::executor::block_on(ledger.history(Some("hourly"), 1_000))
            .unwrap()
            .len()
    }

    /// The number of runs once it is `want`, or after 30 s of waiting for it.
    fn runs_once(ledger: &MemoryLedger, want: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while runs(ledger) != want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        runs(ledger)
    }

    #[test]
    fn pruning_daily_prunes_at_start_and_again_each_day_by_the_clock() {
        let now = utc(12, 0, 0);
        let clock = ManualClock::new(now);
        let ledger = Arc::new(MemoryLedger::new());
        let (told_tx, _told) = mpsc::channel();
        let runner = runner(ledger.clone(), &clock, Told(Mutex::new(told_tx)));
        // 30 runs, one a day, 30 to 1 days ago; kept 10 days, all but the latest 20 go.
        for days in (1..=30).rev() {
            record(&ledger, now - TimeDelta::days(days));
        }
        let keep = Duration::from_secs(10 * 86_400);
        let counts = drive(prune_daily(runner, keep), move || {
            let at_start = runs_once(&ledger, 20);
            // Five new runs push five more old ones out of the latest 20.
            for hours in 1..=5 {
                record(&ledger, now + TimeDelta::hours(hours));
            }
            std::thread::sleep(Duration::from_millis(300));
            let within_the_day = runs(&ledger);
            clock.set(now + TimeDelta::days(1));
            (at_start, within_the_day, runs_once(&ledger, 20))
        });
        assert_eq!(counts, (20, 25, 20));
    }

    #[test]
    fn a_period_too_long_for_the_calendar_means_never() {
        assert_eq!(
            later(utc(0, 0, 0), Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(later(utc(0, 0, 0), SCHEDULE_CHECK_EVERY), utc(0, 0, 30));
    }
}
