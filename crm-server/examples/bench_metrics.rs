//! This example demonstrates what a Prometheus scrape of `/metrics` costs after a year of the
//! five contract jobs' runs (about 106,600 rows: the heartbeat every 5 minutes, the others
//! daily, twice daily and weekly), on a SQLite file and on PostgreSQL: `GET /metrics` over HTTP
//! to the real server, median of 21 scrapes (the goal is 50 ms or less).
//!
//! Run it in release mode (PostgreSQL at `CRM_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`):
//!
//! ```sh
//! cargo run --release -p crm-server --example bench_metrics
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt as _, WriteExt as _};
use async_std::net::TcpStream;
use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use crm_core::testing::{TestDb, seed_finished_runs};
use crm_jobs::{
    CronJob, JobContext, JobError, ManualClock, RunLedger, Runner, Schedule, schedules,
};
use crm_server::{BoundServer, ServerConfig};

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

async fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

async fn bench(name: &str, db: TestDb) {
    let start = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let year = [
        (
            "log_crm_heartbeat",
            schedules::LOG_CRM_HEARTBEAT,
            105_120,
            TimeDelta::minutes(5),
        ),
        (
            "clean_inactive_customers",
            schedules::CLEAN_INACTIVE_CUSTOMERS,
            365,
            TimeDelta::days(1),
        ),
        (
            "send_order_reminders",
            schedules::SEND_ORDER_REMINDERS,
            365,
            TimeDelta::days(1),
        ),
        (
            "update_low_stock",
            schedules::UPDATE_LOW_STOCK,
            730,
            TimeDelta::hours(12),
        ),
        (
            "generate_crm_report",
            schedules::GENERATE_CRM_REPORT,
            52,
            TimeDelta::weeks(1),
        ),
    ];
    let mut rows = 0;
    for (code, _, count, every) in year {
        rows += seed_finished_runs(db.database(), code, count, start, every)
            .await
            .expect("seed");
    }
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let runner = Runner::builder()
        .jobs(year.map(|(code, schedule, _, _)| Box::new(Noop(code, schedule)) as Box<dyn CronJob>))
        .ledger(ledger)
        .clock(Arc::new(ManualClock::new(start + TimeDelta::days(365))))
        .time_zone(chrono_tz::Tz::UTC)
        .build()
        .expect("a runner");
    let runner = Arc::new(runner);
    // The handler's two ledger reads, alone.
    let (mut assess, mut counts) = (Vec::new(), Vec::new());
    let now = start + TimeDelta::days(365);
    for _ in 0..21 {
        let t = Instant::now();
        crm_jobs::health::assess(&runner, now)
            .await
            .expect("assess");
        assess.push(t.elapsed());
        let t = Instant::now();
        runner.ledger().run_counts().await.expect("run_counts");
        counts.push(t.elapsed());
    }
    assess.sort();
    counts.sort();
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        jobs: Some(runner),
        ..ServerConfig::default()
    };
    let server = BoundServer::bind(Arc::new(db.database().clone()), config)
        .await
        .expect("bind");
    let address = server.local_addr();
    async_std::task::spawn(server.run());
    let first = scrape(address).await;
    assert!(
        first.contains("crm_job_runs_total{job=\"log_crm_heartbeat\",outcome=\"succeeded\"} 94608"),
        "{first}"
    );
    let mut took: Vec<Duration> = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let answer = scrape(address).await;
        took.push(t.elapsed());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    took.sort();
    println!(
        "{name:<10} {rows:>7} runs   GET /metrics {:>7.2} ms (median of 21; fastest {:.2} ms, slowest {:.2} ms), {} bytes; of it assess {:.2} ms, run_counts {:.2} ms",
        took[10].as_secs_f64() * 1000.0,
        took[0].as_secs_f64() * 1000.0,
        took[20].as_secs_f64() * 1000.0,
        first.len(),
        assess[10].as_secs_f64() * 1000.0,
        counts[10].as_secs_f64() * 1000.0,
    );
}

fn main() {
    async_std::task::block_on(async {
        bench("SQLite", TestDb::sqlite().await).await;
        bench("PostgreSQL", TestDb::postgres().await).await;
    });
}
