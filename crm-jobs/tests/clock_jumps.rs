//! The wall clock jumps: forward by hours or days (a suspended laptop, a VM restored, NTP after
//! a long drift) and back by an hour or a day (NTP correcting a fast clock, an operator's
//! mistake). With the injected [`ManualClock`], over the real SQLite ledger:
//!
//! - forward: each job runs its latest missed tick once (not one run per missed tick), a missed
//!   tick is alerted once and its end once, and the schedule goes on from there;
//! - back: no tick that already ran runs again, nothing panics, the next wakeup is the next tick
//!   of the new time (never in the past, never the old future), and the health check calls no
//!   job late or missed because of it;
//! - the async-std [`Scheduler`] wakes once for a forward jump and sits out a backward one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::testing::TestDb;
use crm_jobs::{
    Alert, AlertError, AlertHook, CronJob, JobContext, JobError, ManualClock, RunLedger,
    RunOutcome, RunStatus, Runner, Schedule, Scheduler, schedules,
};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// The ticks a job ran, shared between the job and the test.
type Ticks = Arc<Mutex<Vec<DateTime<Utc>>>>;

/// A job that records the tick of every run.
struct Recording {
    code: &'static str,
    schedule: &'static str,
    ticks: Ticks,
}

#[async_trait]
impl CronJob for Recording {
    fn code(&self) -> &str {
        self.code
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron(self.schedule).unwrap()
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.ticks.lock().unwrap().push(ctx.tick);
        Ok(format!("ran {}", ctx.tick))
    }
}

#[derive(Debug, Default)]
struct Alerts(Mutex<Vec<Alert>>);

#[async_trait]
impl AlertHook for Alerts {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

impl Alerts {
    fn take(&self) -> Vec<String> {
        let mut taken: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .drain(..)
            .map(|a| match a {
                Alert::Late { code, tick, .. } => format!("late {code} {tick}"),
                Alert::Missed { code, tick, .. } => format!("missed {code} {tick}"),
                Alert::BackOnSchedule { code, was, .. } => format!("back {code} (was {was})"),
                Alert::Failing { code, .. } => format!("failing {code}"),
                Alert::Recovered { code, .. } => format!("recovered {code}"),
                other => format!("{other:?}"),
            })
            .collect();
        taken.sort();
        taken
    }
}

/// The five contract schedules, each on a recording job.
struct World {
    _db: TestDb,
    clock: ManualClock,
    runner: Arc<Runner>,
    alerts: Arc<Alerts>,
    ticks: Vec<(&'static str, Ticks)>,
}

impl World {
    async fn new(start: DateTime<Utc>) -> Self {
        let db = TestDb::sqlite().await;
        let clock = ManualClock::new(start);
        let alerts = Arc::new(Alerts::default());
        let contract = [
            (
                "clean_inactive_customers",
                schedules::CLEAN_INACTIVE_CUSTOMERS,
            ),
            ("send_order_reminders", schedules::SEND_ORDER_REMINDERS),
            ("log_crm_heartbeat", schedules::LOG_CRM_HEARTBEAT),
            ("update_low_stock", schedules::UPDATE_LOW_STOCK),
            ("generate_crm_report", schedules::GENERATE_CRM_REPORT),
        ];
        let mut ticks = Vec::new();
        let mut builder = Runner::builder()
            .ledger(Arc::new(db.database().clone()))
            .clock(Arc::new(clock.clone()))
            .alert_hook(alerts.clone())
            .time_zone(Tz::UTC)
            .host("clock-test")
            .pid(1);
        for (code, schedule) in contract {
            let recorded = Arc::new(Mutex::new(Vec::new()));
            ticks.push((code, recorded.clone()));
            builder = builder.job(Box::new(Recording {
                code,
                schedule,
                ticks: recorded,
            }));
        }
        Self {
            _db: db,
            clock,
            runner: Arc::new(builder.build().unwrap()),
            alerts,
            ticks,
        }
    }

    /// Sets the clock to `now` and runs what is due; every report must be a success.
    async fn at(&self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        self.clock.set(now);
        let mut ran: Vec<(String, DateTime<Utc>)> = self
            .runner
            .run_due(now)
            .await
            .into_iter()
            .map(|r| {
                assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
                (r.code, r.tick.unwrap())
            })
            .collect();
        ran.sort();
        ran
    }

    /// Runs the schedule from `from` to `until` (inclusive) as a scheduler would, waking at
    /// each next wakeup; returns how many wakeups that took.
    async fn drive(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> usize {
        let mut now = from;
        let mut wakeups = 0;
        loop {
            self.at(now).await;
            wakeups += 1;
            match self.runner.next_wakeup(now).await {
                Some(next) if next <= until => {
                    assert!(next > now, "the wakeup must move forward");
                    now = next;
                }
                _ => return wakeups,
            }
        }
    }

    fn ticks_of(&self, code: &str) -> Vec<DateTime<Utc>> {
        let (_, ticks) = self.ticks.iter().find(|(c, _)| *c == code).unwrap();
        ticks.lock().unwrap().clone()
    }

    fn total_runs(&self) -> usize {
        self.ticks
            .iter()
            .map(|(_, t)| t.lock().unwrap().len())
            .sum()
    }

    /// Every tick recorded in the ledger, per job: no duplicates allowed.
    async fn assert_no_tick_twice(&self) {
        let history = self.runner.ledger().history(None, 10_000).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        for run in &history {
            assert!(
                seen.insert((run.code.clone(), run.tick)),
                "tick {} of {} recorded twice",
                run.tick,
                run.code
            );
        }
        for (code, ticks) in &self.ticks {
            let ticks = ticks.lock().unwrap();
            let distinct: std::collections::HashSet<_> = ticks.iter().collect();
            assert_eq!(distinct.len(), ticks.len(), "{code} ran a tick twice");
        }
    }
}

#[async_std::test]
async fn a_jump_forward_by_days_runs_each_jobs_latest_missed_tick_once_and_alerts_once() {
    // From Sunday 7 June 2026 00:00 UTC to Monday 06:05, every job keeps its schedule (each
    // has a first on-time tick in that span).
    let start = utc(2026, 6, 7, 0, 0);
    let world = World::new(start).await;
    world.drive(start, utc(2026, 6, 8, 6, 5)).await;
    for (code, ticks) in &world.ticks {
        assert!(!ticks.lock().unwrap().is_empty(), "{code} never ran");
    }
    assert!(world.alerts.take().is_empty());

    // The machine sleeps until Tuesday 16 June, 09:17: 8 days and some 2,300 heartbeat ticks,
    // a Sunday cleanup, a Monday report, 8 daily reminders and 16 restocks are missed.
    let back = utc(2026, 6, 16, 9, 17);
    world.clock.set(back);
    let alerts = world.runner.check_schedules(back).await.unwrap();
    assert_eq!(alerts.len(), 5, "one missed alert per job: {alerts:?}");
    // A weekly job whose one tick in the gap has not run is late; a job with a later tick
    // after an unrun one has missed that one (health's rules, not a burst per missed tick).
    assert_eq!(
        world.alerts.take(),
        vec![
            format!("late clean_inactive_customers {}", utc(2026, 6, 14, 2, 0)),
            format!("late generate_crm_report {}", utc(2026, 6, 15, 6, 0)),
            format!("missed log_crm_heartbeat {}", utc(2026, 6, 16, 9, 10)),
            format!("missed send_order_reminders {}", utc(2026, 6, 15, 8, 0)),
            format!("missed update_low_stock {}", utc(2026, 6, 15, 12, 0)),
        ]
    );
    // Checking again tells nothing new.
    assert!(world.runner.check_schedules(back).await.unwrap().is_empty());

    let before = world.total_runs();
    let ran = world.at(back).await;
    assert_eq!(
        ran,
        vec![
            (
                "clean_inactive_customers".to_owned(),
                utc(2026, 6, 14, 2, 0)
            ),
            ("generate_crm_report".to_owned(), utc(2026, 6, 15, 6, 0)),
            ("log_crm_heartbeat".to_owned(), utc(2026, 6, 16, 9, 15)),
            ("send_order_reminders".to_owned(), utc(2026, 6, 16, 8, 0)),
            ("update_low_stock".to_owned(), utc(2026, 6, 16, 0, 0)),
        ],
        "one catch-up run per job, of its latest missed tick"
    );
    assert_eq!(world.total_runs(), before + 5);
    // A second look at the same instant runs nothing more.
    assert!(world.at(back).await.is_empty());

    // The schedule goes on from the new time: the next wakeup is the next heartbeat.
    assert_eq!(
        world.runner.next_wakeup(back).await,
        Some(utc(2026, 6, 16, 9, 20))
    );
    let next = utc(2026, 6, 16, 9, 20);
    assert_eq!(
        world.at(next).await,
        vec![("log_crm_heartbeat".to_owned(), next)]
    );
    let ended = world.runner.check_schedules(next).await.unwrap();
    assert_eq!(ended.len(), 5, "{ended:?}");
    assert_eq!(
        world.alerts.take(),
        vec![
            "back clean_inactive_customers (was late)",
            "back generate_crm_report (was late)",
            "back log_crm_heartbeat (was missed)",
            "back send_order_reminders (was missed)",
            "back update_low_stock (was missed)",
        ]
    );
    world.assert_no_tick_twice().await;
}

#[async_std::test]
async fn a_jump_forward_by_hours_within_the_grace_runs_on_time_and_beyond_it_once() {
    let start = utc(2026, 6, 4, 0, 0);
    let world = World::new(start).await;
    assert_eq!(
        world.at(start).await,
        vec![
            ("log_crm_heartbeat".to_owned(), start),
            ("update_low_stock".to_owned(), start),
        ]
    );
    // 50 seconds late: within the 60 s grace, an ordinary on-time run.
    let slightly = utc(2026, 6, 4, 0, 5) + TimeDelta::seconds(50);
    assert_eq!(
        world.at(slightly).await,
        vec![("log_crm_heartbeat".to_owned(), utc(2026, 6, 4, 0, 5))]
    );
    // Thirteen hours forward: the 12:00 restock and 155 heartbeats were missed; one run each.
    let later = utc(2026, 6, 4, 13, 2);
    assert_eq!(
        world.at(later).await,
        vec![
            ("log_crm_heartbeat".to_owned(), utc(2026, 6, 4, 13, 0)),
            ("update_low_stock".to_owned(), utc(2026, 6, 4, 12, 0)),
        ]
    );
    assert_eq!(world.ticks_of("log_crm_heartbeat").len(), 3);
    world.assert_no_tick_twice().await;
}

#[async_std::test]
async fn a_jump_back_by_an_hour_runs_no_tick_twice_and_wakes_at_the_next_new_tick() {
    let start = utc(2026, 6, 4, 10, 0);
    let world = World::new(start).await;
    world.at(start).await;
    for minutes in (5..=60).step_by(5) {
        world.at(start + TimeDelta::minutes(minutes)).await;
    }
    assert_eq!(world.ticks_of("log_crm_heartbeat").len(), 13);
    let last = utc(2026, 6, 4, 11, 0);
    world.alerts.take();

    // NTP sets the clock back an hour: 10:01.
    let back = utc(2026, 6, 4, 10, 1);
    world.clock.set(back);
    // Nothing is late or missed: the ticks of the hour being lived again ran already.
    assert!(world.runner.check_schedules(back).await.unwrap().is_empty());
    let health = crm_jobs::health::assess(&world.runner, back).await.unwrap();
    for job in &health {
        assert!(
            !matches!(
                job.state,
                crm_jobs::health::HealthState::Late
                    | crm_jobs::health::HealthState::Missed
                    | crm_jobs::health::HealthState::Failing
            ),
            "{} is {:?} after the jump back",
            job.code,
            job.state
        );
    }
    // The next wakeup is the next tick of the new time: not in the past, not an hour away.
    let wake = world.runner.next_wakeup(back).await.unwrap();
    assert_eq!(wake, utc(2026, 6, 4, 10, 5));
    // Living the hour again runs nothing: each of its ticks ran already.
    for minutes in (5..=60).step_by(5) {
        let now = utc(2026, 6, 4, 10, 0) + TimeDelta::minutes(minutes);
        assert!(world.at(now).await.is_empty(), "a tick ran twice at {now}");
    }
    // Past the old present, the schedule goes on.
    let next = last + TimeDelta::minutes(5);
    assert_eq!(
        world.at(next).await,
        vec![("log_crm_heartbeat".to_owned(), next)]
    );
    assert!(world.alerts.take().is_empty());
    world.assert_no_tick_twice().await;
}

#[async_std::test]
async fn a_jump_back_by_a_day_runs_neither_the_daily_nor_the_weekly_ticks_again() {
    // Monday 8 June 2026 from midnight to 08:30: the 00:00 restock, the 06:00 report, the
    // 08:00 reminders and every heartbeat ran.
    let start = utc(2026, 6, 8, 0, 0);
    let world = World::new(start).await;
    world.drive(start, utc(2026, 6, 8, 8, 30)).await;
    assert_eq!(
        world.ticks_of("generate_crm_report"),
        vec![utc(2026, 6, 8, 6, 0)]
    );
    assert_eq!(
        world.ticks_of("send_order_reminders"),
        vec![utc(2026, 6, 8, 8, 0)]
    );
    let runs_before = world.total_runs();

    // Back a whole day: Sunday 7 June, 08:30. None of Sunday's ticks is due: the ledger has a
    // later tick of each job (the cleanup, whose first tick is next Sunday, never ran).
    let back = utc(2026, 6, 7, 8, 30);
    assert!(world.at(back).await.is_empty());
    assert!(world.runner.check_schedules(back).await.unwrap().is_empty());
    let wake = world.runner.next_wakeup(back).await.unwrap();
    assert!(
        wake > back && wake <= back + TimeDelta::minutes(5),
        "next wakeup {wake} after a jump back to {back}"
    );
    // Live through the repeated day in the scheduler's steps: only heartbeats newer than the
    // last recorded one (08:30 on Monday) may run, so nothing runs before Monday 08:35.
    let mut now = back;
    let mut wakeups = 0;
    while now < utc(2026, 6, 8, 8, 30) {
        assert!(world.at(now).await.is_empty(), "a tick ran again at {now}");
        let next = world.runner.next_wakeup(now).await.unwrap();
        assert!(next > now);
        now = next;
        wakeups += 1;
    }
    assert_eq!(world.total_runs(), runs_before);
    assert!(wakeups < 24 * 12 + 10, "{wakeups} wakeups for one day");
    let next = utc(2026, 6, 8, 8, 35);
    assert_eq!(
        world.at(next).await,
        vec![("log_crm_heartbeat".to_owned(), next)]
    );
    world.assert_no_tick_twice().await;
}

#[async_std::test]
async fn the_scheduler_wakes_once_for_a_jump_forward_and_sits_out_a_jump_back() {
    // Sunday 7 June 2026, midnight: the heartbeat and the restock are due at once.
    let start = utc(2026, 6, 7, 0, 0);
    let world = World::new(start).await;
    let scheduler = Scheduler::new(world.runner.clone());
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());
    let ledger = world.runner.ledger().clone();
    let runs = |ledger: Arc<dyn RunLedger>| async move {
        let mut runs: Vec<(String, DateTime<Utc>)> = ledger
            .history(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.outcome == RunOutcome::Succeeded)
            .map(|r| (r.code, r.tick))
            .collect();
        runs.sort();
        runs
    };
    let settle = || async_io::Timer::after(Duration::from_millis(100));
    let wait_for = |n: usize| {
        let ledger = ledger.clone();
        async move {
            for _ in 0..500 {
                if runs(ledger.clone()).await.len() >= n {
                    return;
                }
                async_io::Timer::after(Duration::from_millis(10)).await;
            }
            panic!("the scheduler never got to {n} runs");
        }
    };
    wait_for(2).await;

    // Forward two days and ten hours: one round, one catch-up run of each job that had run
    // (the others' first ticks are still to come).
    let forward = utc(2026, 6, 9, 10, 1);
    world.clock.set(forward);
    wait_for(4).await;
    settle().await;
    assert_eq!(
        runs(ledger.clone()).await,
        vec![
            ("log_crm_heartbeat".to_owned(), start),
            ("log_crm_heartbeat".to_owned(), utc(2026, 6, 9, 10, 0)),
            ("update_low_stock".to_owned(), start),
            ("update_low_stock".to_owned(), utc(2026, 6, 9, 0, 0)),
        ]
    );

    // Back two hours, then forward through them: nothing runs until the old present passes.
    world.clock.set(utc(2026, 6, 9, 8, 1));
    settle().await;
    for minute in [5, 30, 55] {
        world.clock.set(utc(2026, 6, 9, 9, minute));
        settle().await;
    }
    assert_eq!(runs(ledger.clone()).await.len(), 4, "a tick ran twice");
    world.clock.set(utc(2026, 6, 9, 10, 5));
    wait_for(5).await;
    settle().await;
    assert_eq!(runs(ledger.clone()).await.len(), 5);

    handle.shutdown(Duration::from_secs(5));
    let summary = task.await;
    assert_eq!(summary.unfinished, 0);
    world.assert_no_tick_twice().await;
}
