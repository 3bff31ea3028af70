//! This example demonstrates the broker way's throughput: it publishes N no-op task messages to
//! the real Redis, drains them with our `Worker` (each run claimed in a ledger, its result
//! written in Celery's format), then does the same with a real Python Celery worker of the same
//! concurrency (if `target/celery-venv` exists), and prints messages per second and peak
//! resident memory of each.
//!
//! ```text
//! cargo run --release -p crm-jobs --features broker --example bench_broker -- [N] [CONCURRENCY]
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone as _, Utc};
use crm_jobs::broker::{Broker, BrokerConfig, Worker, scheduled_envelope};
use crm_jobs::{CronJob, JobContext, JobError, JobOptions, MemoryLedger, Runner, Schedule};

/// A job that does nothing: what is measured is the broker, the ledger claim and the result.
struct Noop;

#[async_trait]
impl CronJob for Noop {
    fn code(&self) -> &str {
        "noop"
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("* * * * *").expect("a valid expression")
    }
    fn options(&self) -> JobOptions {
        JobOptions::default().allow_parallel_runs(true)
    }
    async fn run(&self, _: &JobContext) -> Result<String, JobError> {
        Ok("done".into())
    }
}

fn redis_url() -> String {
    std::env::var("CRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Peak resident set (VmHWM) of a process, or its current one (VmRSS), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The process and its children (a prefork pool).
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        pids.extend(tree(child));
    }
    pids
}

async fn publish(broker: &Broker, n: u32) -> Duration {
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let start = Instant::now();
    for i in 0..n {
        // A tick of noop's every-minute schedule each (a worker refuses other times).
        let tick = base + TimeDelta::minutes(i64::from(i));
        broker
            .publish(&scheduled_envelope("noop", tick, "celery", "bench"))
            .await
            .expect("publish");
    }
    start.elapsed()
}

async fn drained(broker: &Broker) -> bool {
    broker.queue_len().await.unwrap_or(1) == 0 && broker.unacked_len().await.unwrap_or(1) == 0
}

#[async_std::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);

    // Ours.
    let prefix = format!("crm_bench_{}:", std::process::id());
    let broker = Broker::connect(BrokerConfig::new(redis_url()).key_prefix(&prefix))
        .await
        .expect("Redis at 127.0.0.1:6379");
    let published = publish(&broker, n).await;
    println!(
        "publish:        {n} messages in {:.2} s = {:.0} msg/s",
        published.as_secs_f64(),
        f64::from(n) / published.as_secs_f64()
    );
    let runner = Arc::new(
        Runner::builder()
            .job(Box::new(Noop))
            .ledger(Arc::new(MemoryLedger::new()))
            .time_zone(chrono_tz::UTC)
            .build()
            .expect("a runner"),
    );
    let worker = Worker::new(broker.clone(), runner).concurrency(concurrency);
    let handle = worker.handle();
    let start = Instant::now();
    let running = async_std::task::spawn(worker.run());
    while !drained(&broker).await {
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    let ours = start.elapsed();
    handle.shutdown();
    let summary = running.await;
    assert_eq!(summary.succeeded, u64::from(n));
    println!(
        "crm worker:     {n} no-op tasks in {:.2} s = {:.0} tasks/s (concurrency {concurrency}), peak RSS {} MiB",
        ours.as_secs_f64(),
        f64::from(n) / ours.as_secs_f64(),
        memory_kib(std::process::id(), "VmHWM:") / 1024
    );
    broker.delete_prefixed_keys().await.expect("clean up");

    // Python Celery, same Redis, same concurrency.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/celery-venv/bin/python");
    if !python.exists() {
        println!("celery worker:  skipped (run tests/python/setup.sh)");
        return;
    }
    let prefix = format!("crm_bench_py_{}:", std::process::id());
    let broker = Broker::connect(BrokerConfig::new(redis_url()).key_prefix(&prefix))
        .await
        .expect("Redis");
    publish(&broker, n).await;
    let mut child = Command::new(python)
        .arg(root.join("tests/python/crm_celery.py"))
        .args(["worker", "noop"])
        .env("CRM_BROKER_URL", redis_url())
        .env("CRM_BROKER_KEY_PREFIX", &prefix)
        .env("CRM_CELERY_CONCURRENCY", concurrency.to_string())
        .env("CRM_CELERY_LOGLEVEL", "WARNING")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python starts");
    // The clock starts with the first message taken, so start-up time is not counted.
    while broker.queue_len().await.unwrap_or(0) == n as usize {
        async_std::task::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    let mut peak_kib = 0;
    while !drained(&broker).await {
        let rss: u64 = tree(child.id())
            .iter()
            .map(|&p| memory_kib(p, "VmRSS:"))
            .sum();
        peak_kib = peak_kib.max(rss);
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    let theirs = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "celery worker:  {n} no-op tasks in {:.2} s = {:.0} tasks/s (concurrency {concurrency}), peak RSS {} MiB (all pool processes)",
        theirs.as_secs_f64(),
        f64::from(n) / theirs.as_secs_f64(),
        peak_kib / 1024
    );
    broker.delete_prefixed_keys().await.expect("clean up");
}
