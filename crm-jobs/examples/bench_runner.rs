//! This example demonstrates what the runner costs: how long a `Schedule` takes to find its next
//! tick, and how fast a simulated week of the five contract schedules (2039 runs, each claimed
//! and finished in the ledger) goes through `run_due`/`next_wakeup` on each ledger.
//!
//! Run it in release mode (PostgreSQL at `CRM_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`):
//!
//! ```sh
//! cargo run --release -p crm-jobs --example bench_runner
//! ```

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_jobs::{
    CronJob, JobContext, JobError, ManualClock, MemoryLedger, RunLedger, Runner, Schedule,
    schedules,
};

struct Noop(&'static str, &'static str);

#[async_trait]
impl CronJob for Noop {
    fn code(&self) -> &str {
        self.0
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron(self.1).expect("a contract schedule")
    }
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        Ok("done".to_owned())
    }
}

fn bench_schedules() {
    let zone = chrono_tz::America::New_York;
    let cases = [
        ("cron */5 * * * *", Schedule::cron("*/5 * * * *").unwrap()),
        ("cron 0 2 * * 0", Schedule::cron("0 2 * * 0").unwrap()),
        ("every 5 minutes", Schedule::every_minutes(5).unwrap()),
        (
            "at 08:00,17:30",
            Schedule::at_times(&["08:00", "17:30"]).unwrap(),
        ),
    ];
    for (name, schedule) in cases {
        let schedule = schedule.in_time_zone(zone);
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let calls = 20_000;
        let began = Instant::now();
        let mut t = start;
        for _ in 0..calls {
            t = schedule.next_after(t).expect("a next tick");
        }
        let per_call = began.elapsed() / calls;
        println!(
            "next_after, {name:<18} {:>8.2} µs/call",
            per_call.as_secs_f64() * 1e6
        );
    }
}

async fn bench_week(name: &str, ledger: Arc<dyn RunLedger>) {
    let zone = chrono_tz::UTC;
    let from: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 6, 7, 0, 0, 0).unwrap();
    let until = from + TimeDelta::days(7);
    let clock = ManualClock::new(from);
    let runner = Runner::builder()
        .ledger(ledger)
        .clock(Arc::new(clock.clone()))
        .time_zone(zone)
        .job(Box::new(Noop(
            "clean_inactive_customers",
            schedules::CLEAN_INACTIVE_CUSTOMERS,
        )))
        .job(Box::new(Noop(
            "send_order_reminders",
            schedules::SEND_ORDER_REMINDERS,
        )))
        .job(Box::new(Noop(
            "log_crm_heartbeat",
            schedules::LOG_CRM_HEARTBEAT,
        )))
        .job(Box::new(Noop(
            "update_low_stock",
            schedules::UPDATE_LOW_STOCK,
        )))
        .job(Box::new(Noop(
            "generate_crm_report",
            schedules::GENERATE_CRM_REPORT,
        )))
        .build()
        .expect("a valid runner");
    let began = Instant::now();
    let mut now = from;
    let mut runs = 0u32;
    while now < until {
        clock.set(now);
        runs += runner.run_due(now).await.len() as u32;
        now = runner.next_wakeup(now).await.expect("jobs run forever");
    }
    let elapsed = began.elapsed();
    println!(
        "a week of the five schedules on {name:<10} {runs} runs in {:>7.1} ms: {:>6.0} runs/s, {:>6.0} µs/run",
        elapsed.as_secs_f64() * 1e3,
        f64::from(runs) / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / f64::from(runs)
    );
}

fn main() {
    bench_schedules();
    async_std::task::block_on(async {
        bench_week("memory", Arc::new(MemoryLedger::new())).await;
        let sqlite = TestDb::sqlite().await;
        bench_week("SQLite", Arc::new(sqlite.database().clone())).await;
        let postgres = TestDb::postgres().await;
        bench_week("PostgreSQL", Arc::new(postgres.database().clone())).await;
    });
}
