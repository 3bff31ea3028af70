//! This example demonstrates another Rust app embedding the CRM's jobs: it registers the five
//! jobs plus one of its own on a `Runner` and drives them with its own loop, asking the runner
//! when to wake (`next_wakeup`) and what is due (`run_due`).
//!
//! To run without waiting for real time, the app's loop uses a test clock and jumps from one
//! wake-up to the next over a simulated day; a real app would sleep until the wake-up instead.
//! The CRM's API is served in-process on a free port (the GraphQL jobs talk to it) over a fresh
//! SQLite database with demo data, and the logs go to a temporary directory.
//!
//! `cargo run --example embed_own_scheduler [HOURS]` (default 24).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone as _, Utc};
use crm::core::{CrmStore, Database, SeedConfig};
use crm::jobs::{
    CronJob, JobContext, JobError, JobsConfig, ManualClock, RunStatus, Runner, Schedule,
};
use crm::server::{BoundServer, ServerConfig};

/// The app's own job: flushes its caches every 30 minutes.
#[derive(Default)]
struct FlushCaches {
    flushes: AtomicU32,
}

#[async_trait]
impl CronJob for FlushCaches {
    fn code(&self) -> &str {
        "flush_caches"
    }

    fn schedule(&self) -> Schedule {
        Schedule::every_minutes(30).expect("not zero")
    }

    /// Stale caches serve stale prices; flushing twice an hour bounds how stale.
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        let n = self.flushes.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(format!("flush #{n}"))
    }
}

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hours: i64 = std::env::args().nth(1).map_or(Ok(24), |h| h.parse())?;
    let dir = tempfile::tempdir()?;
    let db =
        Database::connect(&format!("sqlite://{}", dir.path().join("crm.db").display())).await?;
    // Start the simulated day at midnight, so every daily job comes round.
    let start = Utc
        .with_ymd_and_hms(2026, 11, 29, 0, 0, 0)
        .single()
        .expect("a valid instant");
    crm::core::seed(&db, &SeedConfig::demo(start), &mut |_| {}).await?;
    let store: Arc<dyn CrmStore> = Arc::new(db.clone());

    let server = BoundServer::bind(
        store.clone(),
        ServerConfig {
            bind: "127.0.0.1:0".parse()?,
            ..ServerConfig::default()
        },
    )
    .await?;
    let config = JobsConfig::default()
        .with_graphql_url(&server.graphql_url())?
        .with_log_dir(dir.path());
    async_std::task::spawn(server.run());

    let clock = Arc::new(ManualClock::new(start));
    let runner = Runner::builder()
        .jobs(crm::jobs::standard_jobs(&config, store)?)
        .job(Box::new(FlushCaches::default()))
        .ledger(Arc::new(db.clone()))
        .clock(clock.clone())
        .time_zone(chrono_tz::UTC)
        .build()?;

    // The app's own loop: wake, run what is due, ask when to wake next.
    let end = start + TimeDelta::hours(hours);
    let mut runs: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut now = start;
    while now <= end {
        clock.set(now);
        for report in runner.run_due(now).await {
            let entry = runs.entry(report.code.clone()).or_default();
            match report.status {
                RunStatus::Succeeded => entry.0 += 1,
                _ => {
                    entry.1 += 1;
                    eprintln!(
                        "{} at {now}: {:?}: {}",
                        report.code, report.status, report.message
                    );
                }
            }
        }
        match runner.next_wakeup(now).await {
            Some(next) => now = next,
            None => break,
        }
    }

    println!("In {hours} simulated hours from {start}:");
    for (code, (succeeded, failed)) in &runs {
        println!("  {code:<26} {succeeded:>4} succeeded, {failed} failed");
    }
    println!("Logs in {}:", dir.path().display());
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path)?;
            println!(
                "  {} ({} lines), last: {}",
                path.display(),
                text.lines().count(),
                text.lines().last().unwrap_or("")
            );
        }
    }
    Ok(())
}
