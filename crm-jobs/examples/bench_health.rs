//! This example demonstrates what the jobs' health costs: after simulated weeks of the five
//! contract schedules (13 weeks, about 26,500 runs, on SQLite; 4 weeks, about 8,200 runs, on
//! PostgreSQL, whose claims are slower to fill), how long
//! `crm_jobs::health::assess` takes (the one ledger query behind `crm jobs list`, `/status` and
//! the `jobs` query) and how long `Runner::check_schedules` takes, on SQLite and PostgreSQL.
//!
//! Run it in release mode (PostgreSQL at `CRM_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`):
//!
//! ```sh
//! cargo run --release -p crm-jobs --example bench_health
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_jobs::{
    Clock as _, CronJob, JobContext, JobError, ManualClock, RunLedger, Runner, Schedule, schedules,
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

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn bench(name: &str, ledger: Arc<dyn RunLedger>, weeks: i64) {
    let start = Utc.with_ymd_and_hms(2026, 1, 4, 0, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let runner = Runner::builder()
        .jobs([
            Box::new(Noop(
                "clean_inactive_customers",
                schedules::CLEAN_INACTIVE_CUSTOMERS,
            )) as Box<dyn CronJob>,
            Box::new(Noop(
                "send_order_reminders",
                schedules::SEND_ORDER_REMINDERS,
            )),
            Box::new(Noop("log_crm_heartbeat", schedules::LOG_CRM_HEARTBEAT)),
            Box::new(Noop("update_low_stock", schedules::UPDATE_LOW_STOCK)),
            Box::new(Noop("generate_crm_report", schedules::GENERATE_CRM_REPORT)),
        ])
        .ledger(ledger.clone())
        .clock(Arc::new(clock.clone()))
        .time_zone(chrono_tz::Tz::UTC)
        .build()
        .expect("a runner");
    let end = start + TimeDelta::weeks(weeks);
    let filled = Instant::now();
    let mut runs = 0;
    while let Some(next) = runner.next_wakeup(clock.now()).await {
        if next > end {
            break;
        }
        clock.set(next);
        runs += runner.run_due(next).await.len();
    }
    let fill = filled.elapsed();
    let now = clock.now();
    let mut assess = Vec::new();
    let mut check = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let health = crm_jobs::health::assess(&runner, now)
            .await
            .expect("assess");
        assess.push(t.elapsed());
        assert_eq!(health.len(), 5);
        let t = Instant::now();
        runner.check_schedules(now).await.expect("check");
        check.push(t.elapsed());
    }
    println!(
        "{name:<10} {runs:>6} runs (filled in {:>5.1} s)   assess {:>7.2} ms   check_schedules {:>7.2} ms   (medians of 21)",
        fill.as_secs_f64(),
        median(assess).as_secs_f64() * 1000.0,
        median(check).as_secs_f64() * 1000.0,
    );
}

fn main() {
    async_std::task::block_on(async {
        let sqlite = TestDb::sqlite().await;
        bench("SQLite", Arc::new(sqlite.database().clone()), 13).await;
        let postgres = TestDb::postgres().await;
        bench("PostgreSQL", Arc::new(postgres.database().clone()), 4).await;
    });
}
