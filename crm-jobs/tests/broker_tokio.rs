//! The broker way on tokio (feature `broker-tokio`, without `broker`): redis' tokio flavour,
//! the workers' tasks and timers on tokio, against the real Redis at 127.0.0.1:6379
//! (`CRM_TEST_REDIS_URL` to change it), under a fresh key prefix deleted afterwards. The same
//! promises as on async-std: each tick published once, each run once, Celery's results written.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::UTC;
use crm_core::testing::{Need, require, this_test};
use crm_jobs::broker::{Beat, Broker, BrokerConfig, Worker, scheduled_envelope, tick_task_id};
use crm_jobs::{CronJob, JobContext, JobError, JobOptions, MemoryLedger, Runner, Schedule};

fn redis_url() -> String {
    std::env::var("CRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Deletes every key under `prefix` when dropped (synchronously, so also when a test panics).
struct DropKeys(String);

impl Drop for DropKeys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A job that records the tick of each run.
#[derive(Debug)]
struct Recorded {
    done: Arc<Mutex<Vec<DateTime<Utc>>>>,
}

#[async_trait]
impl CronJob for Recorded {
    fn code(&self) -> &str {
        "sync_things"
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("*/5 * * * *").unwrap().in_time_zone(UTC)
    }
    fn options(&self) -> JobOptions {
        JobOptions::default().allow_parallel_runs(true)
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        // A tokio timer inside the job: the worker runs it on tokio's runtime.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.done.lock().unwrap().push(ctx.tick);
        Ok(format!("ran tick {}", ctx.tick))
    }
}

#[tokio::test]
async fn on_tokio_a_beat_publishes_each_tick_once_and_a_worker_runs_each_once() {
    if !require(&this_test(), Need::Redis) {
        return;
    }
    let prefix = format!(
        "crm_tokio_t_{}_{}:",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let _cleanup = DropKeys(prefix.clone());
    let config = BrokerConfig::new(redis_url()).key_prefix(&prefix);
    let broker = Broker::connect(config)
        .await
        .unwrap_or_else(|e| panic!("Redis at {} refused the test: {e}", redis_url()));
    let start = Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap();

    // An hour of minutes, each looked at twice (a beat waking twice, or two beats): 12 ticks.
    let beat = Beat::new(
        broker.clone(),
        [(
            "sync_things".to_owned(),
            Schedule::cron("*/5 * * * *").unwrap().in_time_zone(UTC),
        )],
    );
    let mut published = 0;
    for minute in 0..60 {
        let now = start + TimeDelta::minutes(minute);
        for at in [now, now + TimeDelta::milliseconds(300)] {
            published += beat
                .publish_due(at)
                .await
                .unwrap()
                .iter()
                .filter(|p| p.by_us)
                .count();
        }
    }
    assert_eq!(published, 12);
    assert_eq!(broker.queue_len().await.unwrap(), 12);
    // Three ticks published again without the beat's lock (a replay): delivered, not rerun.
    let ticks: Vec<_> = (0..12).map(|i| start + TimeDelta::minutes(5 * i)).collect();
    for tick in &ticks[..3] {
        broker
            .publish(&scheduled_envelope("sync_things", *tick, "celery", "test"))
            .await
            .unwrap();
    }

    let done = Arc::new(Mutex::new(Vec::new()));
    let runner = Runner::builder()
        .job(Box::new(Recorded { done: done.clone() }))
        .ledger(Arc::new(MemoryLedger::new()))
        .time_zone(UTC)
        .host("test")
        .build()
        .unwrap();
    let worker = Worker::new(broker.clone(), Arc::new(runner)).concurrency(2);
    let handle = worker.handle();
    let running = tokio::spawn(worker.run());
    let started = Instant::now();
    while broker.queue_len().await.unwrap() > 0 || broker.unacked_len().await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the queue did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    let summary = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .expect("the worker task did not panic");

    assert_eq!(summary.received, 15);
    assert_eq!(summary.succeeded, 12);
    let ran: Vec<DateTime<Utc>> = done.lock().unwrap().clone();
    assert_eq!(ran.len(), 12, "a tick ran twice: {ran:?}");
    assert_eq!(
        ran.iter().copied().collect::<BTreeSet<_>>(),
        ticks.iter().copied().collect::<BTreeSet<_>>()
    );
    for tick in &ticks {
        let result = broker
            .result(&tick_task_id("sync_things", *tick))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result["status"], "SUCCESS");
        assert_eq!(result["result"], format!("ran tick {tick}"));
    }
}
