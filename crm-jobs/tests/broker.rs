//! The broker way against the real Redis at 127.0.0.1:6379 (`CRM_TEST_REDIS_URL` to change
//! it) and real Python Celery (the venv `tests/python/setup.sh` creates). Each test works under
//! its own key prefix (kombu's `global_keyprefix`) and deletes its keys when done.
//!
//! Without Redis these tests fail when `CI=true` and are skipped with a notice otherwise.

#[path = "support/flaky_ledger.rs"]
mod flaky_ledger;
#[expect(
    dead_code,
    reason = "the shared helpers serve several test binaries; this one uses a few"
)]
mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::UTC;
use crm_core::testing::{Need, TestDb, require, this_test};
use crm_jobs::broker::{
    Beat, Broker, BrokerConfig, Handled, Worker, scheduled_envelope, tick_task_id,
};
use crm_jobs::{
    CronJob, JobContext, JobError, JobOptions, MemoryLedger, RunLedger, RunOutcome, RunStatus,
    Runner, Schedule, standard_jobs,
};
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("CRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A fresh key prefix per test, so tests running in parallel never see each other's messages.
fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "crm_t_{}_{}_{nanos}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A broker under a fresh prefix; its keys are deleted when it goes out of scope.
struct TestBroker {
    broker: Broker,
    prefix: String,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Synchronous, so it also runs when a test panics.
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

impl TestBroker {
    fn config(&self) -> BrokerConfig {
        BrokerConfig::new(redis_url()).key_prefix(&self.prefix)
    }

    /// Another connection with the same layout (another machine's beat or worker).
    async fn another(&self, config: BrokerConfig) -> Broker {
        Broker::connect(config).await.expect("Redis answers")
    }
}

/// The test's broker, or `None` when the person left Redis out (`CRM_TESTS_LEAVE_OUT=redis`,
/// said on the terminal); without Redis otherwise the test fails with the line installing it.
async fn test_broker(visibility: Option<Duration>) -> Option<TestBroker> {
    let prefix = fresh_prefix();
    let mut config = BrokerConfig::new(redis_url()).key_prefix(&prefix);
    if let Some(v) = visibility {
        config = config.visibility_timeout(v);
    }
    if !require(&this_test(), Need::Redis) {
        return None;
    }
    match Broker::connect(config).await {
        Ok(broker) => Some(TestBroker { broker, prefix }),
        Err(e) => panic!("Redis at {} refused the test: {e}", redis_url()),
    }
}

/// Each completed run's (tick, attempt), in order.
type Completed = Arc<Mutex<Vec<(DateTime<Utc>, u32)>>>;

/// A job that records each completed run's tick and attempt, after an optional hang on its
/// first attempt (to stand for a worker killed mid-task) or a wait for a gate.
struct Recorded {
    code: String,
    schedule: Schedule,
    parallel: bool,
    hang_on_first_attempt: bool,
    gate: Option<async_std::channel::Receiver<()>>,
    started: Option<async_std::channel::Sender<()>>,
    done: Completed,
}

impl Recorded {
    fn new(code: &str, cron: &str) -> Self {
        Self {
            code: code.into(),
            schedule: Schedule::cron(cron).unwrap().in_time_zone(UTC),
            parallel: false,
            hang_on_first_attempt: false,
            gate: None,
            started: None,
            done: Arc::default(),
        }
    }
}

#[async_trait]
impl CronJob for Recorded {
    fn code(&self) -> &str {
        &self.code
    }
    fn schedule(&self) -> Schedule {
        self.schedule.clone()
    }
    fn options(&self) -> JobOptions {
        JobOptions::default().allow_parallel_runs(self.parallel)
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        if let Some(started) = &self.started {
            let _ = started.send(()).await;
        }
        if self.hang_on_first_attempt && ctx.attempt == 1 {
            futures::future::pending::<()>().await;
        }
        if let Some(gate) = &self.gate {
            let _ = gate.recv().await;
        }
        self.done.lock().unwrap().push((ctx.tick, ctx.attempt));
        Ok(format!("ran tick {}", ctx.tick))
    }
}

fn runner(job: Recorded, ledger: Arc<dyn RunLedger>, pid: u32) -> Arc<Runner> {
    Arc::new(
        Runner::builder()
            .job(Box::new(job))
            .ledger(ledger)
            .time_zone(UTC)
            .lease(Duration::from_secs(1))
            .host("test")
            .pid(pid)
            .build()
            .unwrap(),
    )
}

fn monday_six() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
}

async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Python Celery ----

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's Python. A missing venv is created once per test run by `tests/python/setup.sh`
/// (real Celery from PyPI), so `cargo test --workspace` needs no step before it.
fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = std::env::var_os("CRM_CELERY_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/celery-venv"));
            let python = venv.join("bin/python");
            if !python.exists() {
                let setup = workspace_root().join("tests/python/setup.sh");
                let status = Command::new("bash")
                    .arg(&setup)
                    .env("CRM_CELERY_VENV", &venv)
                    .status()
                    .expect("bash runs tests/python/setup.sh");
                assert!(
                    status.success() && python.exists(),
                    "could not create the Python Celery venv at {} with {}",
                    venv.display(),
                    setup.display()
                );
            }
            python
        })
        .clone()
}

fn celery_command(tb: &TestBroker, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/crm_celery.py"))
        .args(args)
        .env("CRM_BROKER_URL", redis_url())
        .env("CRM_BROKER_KEY_PREFIX", &tb.prefix)
        .env("CRM_BROKER_QUEUE", "celery");
    cmd
}

/// Kills and reaps a child process on every path out of a test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[async_std::test]
async fn a_python_send_task_is_run_by_our_worker_and_python_reads_the_result() {
    if !require(
        "a_python_send_task_is_run_by_our_worker_and_python_reads_the_result",
        Need::Celery,
    ) {
        return;
    }
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let seeded = helpers::seed(&db).await;
    let crm = helpers::spawn_crm(db, None).await;
    let runner = Arc::new(
        Runner::builder()
            .jobs(standard_jobs(&crm.config, crm.store.clone()).unwrap())
            .time_zone(UTC)
            .build()
            .unwrap(),
    );
    let worker = Worker::new(tb.broker.clone(), runner.clone()).concurrency(2);
    let handle = worker.handle();
    let running = async_std::task::spawn(worker.run());

    let mut send = celery_command(&tb, &["send", "crm.tasks.generate_crm_report", "60"]);
    let output = async_std::task::spawn_blocking(move || send.output().unwrap()).await;
    handle.shutdown();
    let summary = running.await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Python's AsyncResult.get() failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["status"], "SUCCESS");
    let expected = format!(
        "Report: 6 customers, {} orders, {:.2} revenue.",
        seeded.orders, seeded.revenue
    );
    assert_eq!(answer["result"], json!(expected));
    assert!(crm.log("crm_report_log.txt").contains(&expected));
    assert_eq!(summary.succeeded, 1);
    // Recorded in the ledger like any run, as a manual one.
    let history = runner
        .ledger()
        .history(Some("generate_crm_report"), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, RunOutcome::Succeeded);
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);
}

#[async_std::test]
async fn a_message_published_by_our_beat_is_run_by_a_python_celery_worker() {
    if !require(
        "a_message_published_by_our_beat_is_run_by_a_python_celery_worker",
        Need::Celery,
    ) {
        return;
    }
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let beat = Beat::new(
        tb.broker.clone(),
        [(
            "log_crm_heartbeat".to_owned(),
            Schedule::cron("*/5 * * * *").unwrap().in_time_zone(UTC),
        )],
    );
    let tick = monday_six();
    let published = beat
        .publish_due(tick + TimeDelta::seconds(3))
        .await
        .unwrap();
    assert_eq!(published.len(), 1);
    assert!(published[0].by_us);
    let id = tick_task_id("log_crm_heartbeat", tick);

    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = celery_command(&tb, &["worker", "log_crm_heartbeat"]);
    cmd.env("CRM_TEST_OUT", out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _python_worker = Reaped(cmd.spawn().unwrap());

    let result = wait_for(
        "the Python worker's result",
        Duration::from_secs(60),
        async || {
            tb.broker
                .result(&id)
                .await
                .unwrap()
                .filter(|r| r["status"] == "SUCCESS")
        },
    )
    .await;
    assert_eq!(result["result"], "python ran crm.tasks.log_crm_heartbeat");
    let line = std::fs::read_to_string(out.path()).unwrap();
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["id"], json!(id));
    assert_eq!(record["crm_tick"], "2026-11-30T06:00:00Z");
    assert_eq!(record["args"], json!([]));
    assert_eq!(record["kwargs"], json!({}));
}

// ---- Beats ----

#[async_std::test]
async fn two_beats_publish_every_tick_of_a_day_once_and_one_left_alone_carries_on() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let schedule = || {
        [(
            "log_crm_heartbeat".to_owned(),
            Schedule::cron("*/5 * * * *").unwrap().in_time_zone(UTC),
        )]
    };
    let a = Beat::new(tb.broker.clone(), schedule());
    let b = Beat::new(tb.another(tb.config()).await, schedule());
    let midnight = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
    let mut by_a = 0;
    let mut by_b = 0;
    for minute in 0..24 * 60 {
        // Each beat wakes at its own moment within the minute; A dies at noon.
        let now = midnight + TimeDelta::minutes(minute);
        let (ra, rb) = if minute < 12 * 60 {
            futures::join!(
                a.publish_due(now + TimeDelta::milliseconds(300)),
                b.publish_due(now + TimeDelta::milliseconds(200))
            )
        } else {
            (Ok(Vec::new()), b.publish_due(now).await)
        };
        by_a += ra.unwrap().iter().filter(|p| p.by_us).count();
        by_b += rb.unwrap().iter().filter(|p| p.by_us).count();
    }
    assert_eq!(by_a + by_b, 288, "a day of */5 is 288 ticks");
    assert!(by_b >= 144, "the surviving beat published the afternoon");

    let worker_runner = Arc::new(
        Runner::builder()
            .job(Box::new(Recorded::new("log_crm_heartbeat", "*/5 * * * *")))
            .time_zone(UTC)
            .build()
            .unwrap(),
    );
    assert_eq!(tb.broker.queue_len().await.unwrap(), 288);
    let worker = Worker::new(tb.broker.clone(), worker_runner);
    let mut ids = BTreeSet::new();
    while let Some(Handled::Ran(report)) = worker
        .handle_next(Duration::from_millis(100))
        .await
        .unwrap()
    {
        ids.insert(report.tick.unwrap());
    }
    let expected: BTreeSet<_> = (0..288)
        .map(|i| midnight + TimeDelta::minutes(5 * i))
        .collect();
    assert_eq!(ids, expected);
}

#[async_std::test]
async fn a_tick_older_than_the_grace_is_not_published_by_a_late_beat() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let beat = Beat::new(
        tb.broker.clone(),
        [(
            "generate_crm_report".to_owned(),
            Schedule::cron("0 6 * * 1").unwrap().in_time_zone(UTC),
        )],
    )
    .grace(Duration::from_secs(60));
    let late = beat
        .publish_due(monday_six() + TimeDelta::minutes(2))
        .await
        .unwrap();
    assert!(late.is_empty());
    let on_time = beat
        .publish_due(monday_six() + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(on_time.len(), 1);
    assert_eq!(tb.broker.queue_len().await.unwrap(), 1);
}

// ---- Workers ----

#[async_std::test]
async fn two_workers_run_every_tick_once_even_when_ticks_are_published_twice() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let ledger: Arc<dyn RunLedger> = Arc::new(MemoryLedger::new());
    let mut job_a = Recorded::new("sync_things", "*/5 * * * *");
    job_a.parallel = true;
    let done = job_a.done.clone();
    let mut job_b = Recorded::new("sync_things", "*/5 * * * *");
    job_b.parallel = true;
    job_b.done = done.clone();
    let ticks: Vec<_> = (0..20)
        .map(|i| monday_six() + TimeDelta::minutes(5 * i))
        .collect();
    for tick in &ticks {
        let envelope = scheduled_envelope("sync_things", *tick, "celery", "test");
        tb.broker.publish(&envelope).await.unwrap();
    }
    // A duplicate publish of every other tick (another beat without the lock, a replay).
    for tick in ticks.iter().step_by(2) {
        let envelope = scheduled_envelope("sync_things", *tick, "celery", "test");
        tb.broker.publish(&envelope).await.unwrap();
    }
    let w1 = Worker::new(tb.broker.clone(), runner(job_a, ledger.clone(), 1)).concurrency(2);
    let w2 = Worker::new(
        tb.another(tb.config()).await,
        runner(job_b, ledger.clone(), 2),
    )
    .concurrency(2);
    let (h1, h2) = (w1.handle(), w2.handle());
    let r1 = async_std::task::spawn(w1.run());
    let r2 = async_std::task::spawn(w2.run());
    wait_for("the queue to drain", Duration::from_secs(30), async || {
        let idle = tb.broker.queue_len().await.unwrap() == 0
            && tb.broker.unacked_len().await.unwrap() == 0;
        idle.then_some(())
    })
    .await;
    h1.shutdown();
    h2.shutdown();
    let (s1, s2) = (r1.await, r2.await);
    assert_eq!(s1.received + s2.received, 30);
    assert_eq!(s1.succeeded + s2.succeeded, 20);

    let mut runs: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for (tick, _) in done.lock().unwrap().iter() {
        *runs.entry(*tick).or_default() += 1;
    }
    assert_eq!(runs.len(), 20);
    assert!(runs.values().all(|&n| n == 1), "a tick ran twice: {runs:?}");
    for tick in &ticks {
        let result = tb
            .broker
            .result(&tick_task_id("sync_things", *tick))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result["status"], "SUCCESS");
        assert_eq!(result["result"], json!(format!("ran tick {tick}")));
    }
}

#[async_std::test]
async fn a_worker_killed_mid_task_leaves_the_message_for_another_that_completes_the_tick_once() {
    let visibility = Duration::from_secs(1);
    let Some(tb) = test_broker(Some(visibility)).await else {
        return;
    };
    let ledger: Arc<dyn RunLedger> = Arc::new(MemoryLedger::new());
    let mut doomed_job = Recorded::new("sync_things", "*/5 * * * *");
    doomed_job.hang_on_first_attempt = true;
    let done = doomed_job.done.clone();
    let mut healthy_job = Recorded::new("sync_things", "*/5 * * * *");
    healthy_job.done = done.clone();
    let doomed = Worker::new(tb.broker.clone(), runner(doomed_job, ledger.clone(), 1));
    let healthy = Worker::new(
        tb.another(tb.config().visibility_timeout(visibility)).await,
        runner(healthy_job, ledger.clone(), 2),
    );
    let tick = monday_six();
    tb.broker
        .publish(&scheduled_envelope("sync_things", tick, "celery", "test"))
        .await
        .unwrap();

    // The first worker takes the message and dies mid-task: its future is dropped, so it
    // neither finishes the run nor acknowledges the message.
    let killed = async_std::future::timeout(
        Duration::from_millis(500),
        doomed.handle_next(Duration::from_secs(1)),
    )
    .await;
    assert!(killed.is_err(), "the doomed run should still be hanging");
    drop(doomed);
    assert_eq!(tb.broker.queue_len().await.unwrap(), 0);
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 1);
    assert!(done.lock().unwrap().is_empty());

    // Nothing is restored before the visibility timeout…
    assert_eq!(
        healthy
            .handle_next(Duration::from_millis(100))
            .await
            .unwrap(),
        None
    );
    // …and after it (and the dead run's lease) has passed, the message comes back once.
    async_std::task::sleep(Duration::from_millis(1600)).await;
    assert_eq!(tb.broker.restore_visible().await.unwrap(), 1);
    assert_eq!(tb.broker.restore_visible().await.unwrap(), 0);
    let handled = healthy
        .handle_next(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let Handled::Ran(report) = handled else {
        panic!("expected a run, got {handled:?}");
    };
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.attempt, 2);
    assert_eq!(*done.lock().unwrap(), vec![(tick, 2)]);
    let history = ledger.history(Some("sync_things"), 10).await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|r| (r.attempt, r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![(2, RunOutcome::Succeeded), (1, RunOutcome::Abandoned)]
    );
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);

    // Delivered once more (a duplicate): the ledger says the tick is done; no second effect.
    tb.broker
        .publish(&scheduled_envelope("sync_things", tick, "celery", "test"))
        .await
        .unwrap();
    let again = healthy
        .handle_next(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&again, Handled::Ran(r) if r.status == RunStatus::Taken),
        "{again:?}"
    );
    assert_eq!(done.lock().unwrap().len(), 1);
    let result = tb
        .broker
        .result(&tick_task_id("sync_things", tick))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result["status"], "SUCCESS");
}

#[async_std::test]
async fn malformed_and_unknown_messages_are_dead_lettered_and_the_worker_keeps_going() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let job = Recorded::new("sync_things", "*/5 * * * *");
    let done = job.done.clone();
    let worker = Worker::new(
        tb.broker.clone(),
        runner(job, Arc::new(MemoryLedger::new()), 1),
    );
    let handle = worker.handle();
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let queue = format!("{}celery", tb.prefix);
    let mut bad_body = scheduled_envelope("sync_things", monday_six(), "celery", "test");
    bad_body["body"] = json!("not base64 !!!");
    for raw in ["{ not json".to_owned(), bad_body.to_string()] {
        let _: () = redis::cmd("LPUSH")
            .arg(&queue)
            .arg(raw)
            .query(&mut conn)
            .unwrap();
    }
    let unknown = scheduled_envelope("drop_tables", monday_six(), "celery", "test");
    tb.broker.publish(&unknown).await.unwrap();
    let good_tick = monday_six() + TimeDelta::minutes(5);
    tb.broker
        .publish(&scheduled_envelope(
            "sync_things",
            good_tick,
            "celery",
            "test",
        ))
        .await
        .unwrap();

    let running = async_std::task::spawn(worker.run());
    let id = tick_task_id("sync_things", good_tick);
    wait_for(
        "the good message's result",
        Duration::from_secs(20),
        async || tb.broker.result(&id).await.unwrap(),
    )
    .await;
    handle.shutdown();
    let summary = running.await;
    assert_eq!(summary.received, 4);
    assert_eq!(summary.dead_lettered, 3);
    assert_eq!(summary.succeeded, 1);
    assert_eq!(*done.lock().unwrap(), vec![(good_tick, 1)]);

    let dead = tb.broker.dead_letters().await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("base64")), "{reasons:?}");
    assert!(
        reasons.contains(&"unknown task crm.tasks.drop_tables"),
        "{reasons:?}"
    );
    let rejected = tb
        .broker
        .result(&tick_task_id("drop_tables", monday_six()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejected["status"], "FAILURE");
    assert_eq!(rejected["result"]["exc_type"], "NotRegistered");
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);
}

#[async_std::test]
async fn a_failing_job_is_reported_as_a_celery_failure() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    struct Broken;
    #[async_trait]
    impl CronJob for Broken {
        fn code(&self) -> &str {
            "broken"
        }
        fn schedule(&self) -> Schedule {
            Schedule::cron("*/5 * * * *").unwrap()
        }
        async fn run(&self, _: &JobContext) -> Result<String, JobError> {
            Err(JobError::Other("the disk is full".into()))
        }
    }
    let runner = Arc::new(
        Runner::builder()
            .job(Box::new(Broken))
            .time_zone(UTC)
            .build()
            .unwrap(),
    );
    let worker = Worker::new(tb.broker.clone(), runner);
    tb.broker
        .publish(&scheduled_envelope("broken", monday_six(), "celery", "t"))
        .await
        .unwrap();
    let handled = worker.handle_next(Duration::from_secs(1)).await.unwrap();
    assert!(matches!(handled, Some(Handled::Ran(r)) if r.status == RunStatus::Failed));
    let result = tb
        .broker
        .result(&tick_task_id("broken", monday_six()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result["status"], "FAILURE");
    assert_eq!(result["result"]["exc_type"], "RuntimeError");
    assert_eq!(result["result"]["exc_message"], json!(["the disk is full"]));
}

#[async_std::test]
async fn a_stopping_worker_finishes_its_running_task_and_acknowledges_it() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let (release, gate) = async_std::channel::bounded(1);
    let (started_tx, started) = async_std::channel::bounded(1);
    let mut job = Recorded::new("sync_things", "*/5 * * * *");
    job.gate = Some(gate);
    job.started = Some(started_tx);
    let done = job.done.clone();
    let worker = Worker::new(
        tb.broker.clone(),
        runner(job, Arc::new(MemoryLedger::new()), 1),
    );
    let handle = worker.handle();
    tb.broker
        .publish(&scheduled_envelope(
            "sync_things",
            monday_six(),
            "celery",
            "t",
        ))
        .await
        .unwrap();
    let running = async_std::task::spawn(worker.run());
    started.recv().await.unwrap();
    handle.shutdown();
    async_std::task::sleep(Duration::from_millis(1500)).await;
    assert!(done.lock().unwrap().is_empty(), "the task is still running");
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 1);
    release.send(()).await.unwrap();
    let summary = async_std::future::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops once its task is done");
    assert_eq!(summary.succeeded, 1);
    assert_eq!(done.lock().unwrap().len(), 1);
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);
}

#[async_std::test]
async fn a_python_event_receiver_sees_our_worker_and_its_tasks_as_flower_would() {
    if !require(
        "a_python_event_receiver_sees_our_worker_and_its_tasks_as_flower_would",
        Need::Celery,
    ) {
        return;
    }
    let Some(tb) = test_broker(None).await else {
        return;
    };
    // kombu's receiver subscribes to a pattern (PSUBSCRIBE) on its first poll, after it says it
    // is ready; Redis counts pattern subscriptions, so the test waits for one more.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let patterns = async |redis: &mut redis::aio::MultiplexedConnection| -> i64 {
        redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(redis)
            .await
            .unwrap()
    };
    let before = patterns(&mut redis).await;
    let mut listen = celery_command(&tb, &["events", "4"]);
    listen.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut listen = Reaped(listen.spawn().unwrap());
    // Nothing is sent before the receiver says it is subscribed (Python may start slowly).
    let stderr = listen.0.stderr.take().unwrap();
    let ready = async_std::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).unwrap();
        line
    })
    .await;
    assert_eq!(
        ready.trim(),
        "ready",
        "the Python event receiver did not start"
    );
    wait_for(
        "the receiver's subscription",
        Duration::from_secs(20),
        async || (patterns(&mut redis).await > before).then_some(()),
    )
    .await;
    let listener = async_std::task::spawn_blocking(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut listen.0.stdout.take().unwrap(), &mut out).unwrap();
        let _ = listen.0.wait();
        out
    });

    let worker = Worker::new(
        tb.broker.clone(),
        runner(
            Recorded::new("sync_things", "*/5 * * * *"),
            Arc::new(MemoryLedger::new()),
            1,
        ),
    )
    .task_events(true);
    let hostname = worker.hostname().to_owned();
    let handle = worker.handle();
    let running = async_std::task::spawn(worker.run());
    tb.broker
        .publish(&scheduled_envelope(
            "sync_things",
            monday_six(),
            "celery",
            "t",
        ))
        .await
        .unwrap();
    let output = listener.await;
    handle.shutdown();
    running.await;

    let events: Vec<Value> = serde_json::from_slice(&output).unwrap();
    let id = tick_task_id("sync_things", monday_six());
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["hostname"] == json!(hostname))
            .count()
    };
    assert_eq!(of("worker-online"), 1, "{events:?}");
    assert!(of("worker-heartbeat") >= 1, "{events:?}");
    for kind in ["task-received", "task-started", "task-succeeded"] {
        assert!(
            events
                .iter()
                .any(|e| e["type"] == kind && e["uuid"] == json!(id)),
            "no {kind} for {id}: {events:?}"
        );
    }
}

#[async_std::test]
async fn a_message_our_killed_worker_left_unacknowledged_is_restored_and_run_by_python_celery() {
    if !require(
        "a_message_our_killed_worker_left_unacknowledged_is_restored_and_run_by_python_celery",
        Need::Celery,
    ) {
        return;
    }
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let mut job = Recorded::new("log_crm_heartbeat", "*/5 * * * *");
    job.hang_on_first_attempt = true;
    let doomed = Worker::new(
        tb.broker.clone(),
        runner(job, Arc::new(MemoryLedger::new()), 1),
    );
    let tick = monday_six();
    tb.broker
        .publish(&scheduled_envelope(
            "log_crm_heartbeat",
            tick,
            "celery",
            "t",
        ))
        .await
        .unwrap();
    let killed = async_std::future::timeout(
        Duration::from_millis(500),
        doomed.handle_next(Duration::from_secs(1)),
    )
    .await;
    assert!(killed.is_err(), "the doomed run should still be hanging");
    drop(doomed);
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 1);

    // kombu reads our unacked entry, puts the message back once it is older than the
    // visibility timeout (a Celery worker sweeps when it starts polling, then every 100 s, so
    // let the timeout pass first) and its worker runs it.
    async_std::task::sleep(Duration::from_millis(1500)).await;
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = celery_command(&tb, &["worker", "log_crm_heartbeat"]);
    cmd.env("CRM_TEST_OUT", out.path())
        .env("CRM_BROKER_VISIBILITY_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _python_worker = Reaped(cmd.spawn().unwrap());
    let id = tick_task_id("log_crm_heartbeat", tick);
    let result = wait_for(
        "Python to run the restored message",
        Duration::from_secs(60),
        async || {
            tb.broker
                .result(&id)
                .await
                .unwrap()
                .filter(|r| r["status"] == "SUCCESS")
        },
    )
    .await;
    assert_eq!(result["result"], "python ran crm.tasks.log_crm_heartbeat");
    let lines = std::fs::read_to_string(out.path()).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);
}

// ---- Operators' pauses and one-off runs (the broker way) ----

/// A runner of `job` recording into `db` and following its operators' changes, its clock at
/// `clock`.
fn live_runner(
    job: Recorded,
    db: &crm_core::Database,
    clock: &crm_jobs::ManualClock,
    pid: u32,
) -> Arc<Runner> {
    Arc::new(
        Runner::builder()
            .job(Box::new(job))
            .ledger(Arc::new(db.clone()))
            .overrides(Arc::new(db.clone()))
            .clock(Arc::new(clock.clone()))
            .time_zone(UTC)
            .lease(Duration::from_secs(1))
            .host("test")
            .pid(pid)
            .build()
            .unwrap(),
    )
}

#[async_std::test]
async fn a_paused_jobs_tasks_are_acknowledged_not_run_recorded_as_skipped_and_revoked() {
    use crm_jobs::JobControl as _;
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let t = TestDb::sqlite().await;
    let clock = crm_jobs::ManualClock::new(monday_six());
    let job = Recorded::new("sync_things", "*/5 * * * *");
    let done = job.done.clone();
    let runner = live_runner(job, t.database(), &clock, 1);
    let worker = Worker::new(tb.broker.clone(), runner.clone());

    // Published before the pause: a beat's tick, and a client's send_task (no tick).
    let tick = monday_six();
    tb.broker
        .publish(&scheduled_envelope("sync_things", tick, "celery", "beat"))
        .await
        .unwrap();
    let mut sent = scheduled_envelope("sync_things", tick, "celery", "python");
    sent["headers"]["id"] = json!("4b1d0c9e-client-task");
    sent["headers"]
        .as_object_mut()
        .unwrap()
        .remove(crm_jobs::broker::TICK_HEADER);
    tb.broker.publish(&sent).await.unwrap();
    runner
        .set_enabled("sync_things", false, "cli:operator")
        .await
        .unwrap();

    for id in [
        tick_task_id("sync_things", tick),
        "4b1d0c9e-client-task".to_owned(),
    ] {
        match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
            Some(Handled::Skipped { id: got, reason }) => {
                assert_eq!(got, id);
                assert!(reason.contains("paused"), "{reason}");
            }
            other => panic!("expected a skip of {id}, got {other:?}"),
        }
        let result = tb.broker.result(&id).await.unwrap().unwrap();
        assert_eq!(result["status"], "REVOKED", "{result}");
        assert_eq!(result["result"]["exc_type"], "TaskRevokedError");
    }
    assert!(done.lock().unwrap().is_empty(), "a paused job ran");
    assert_eq!(tb.broker.queue_len().await.unwrap(), 0);
    assert_eq!(
        tb.broker.unacked_len().await.unwrap(),
        0,
        "both acknowledged"
    );
    let history = t.database().history(Some("sync_things"), 10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for run in &history {
        assert_eq!(run.outcome, RunOutcome::Skipped);
        assert!(
            run.message
                .as_deref()
                .unwrap_or_default()
                .contains("paused by an operator"),
            "{run:?}"
        );
    }

    // Resumed: the skipped tick delivered again does not run late; the next tick runs.
    runner
        .set_enabled("sync_things", true, "cli:operator")
        .await
        .unwrap();
    tb.broker
        .publish(&scheduled_envelope("sync_things", tick, "celery", "beat"))
        .await
        .unwrap();
    let next = tick + TimeDelta::minutes(5);
    tb.broker
        .publish(&scheduled_envelope("sync_things", next, "celery", "beat"))
        .await
        .unwrap();
    match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
        Some(Handled::Ran(report)) => assert_eq!(report.status, RunStatus::Taken),
        other => panic!("the skipped tick is acknowledged as taken: {other:?}"),
    }
    match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
        Some(Handled::Ran(report)) => assert_eq!(report.status, RunStatus::Succeeded),
        other => panic!("the next tick runs: {other:?}"),
    }
    assert_eq!(*done.lock().unwrap(), vec![(next, 1)]);
}

#[async_std::test]
async fn beats_publish_a_one_off_run_once_and_a_paused_ones_waits_for_the_resume() {
    use crm_jobs::JobControl as _;
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let t = TestDb::sqlite().await;
    // A weekly job, so no tick of its own comes near the one-off runs.
    let wednesday = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
    let clock = crm_jobs::ManualClock::new(wednesday);
    let job = || Recorded::new("weekly_report", "0 6 * * 1");
    let worker_job = job();
    let done = worker_job.done.clone();
    let worker_runner = live_runner(worker_job, t.database(), &clock, 1);
    let worker = Worker::new(tb.broker.clone(), worker_runner.clone());
    let beat_a = Beat::for_live_runner(
        tb.broker.clone(),
        live_runner(job(), t.database(), &clock, 2),
    );
    let beat_b = Beat::for_live_runner(
        tb.another(tb.config()).await,
        live_runner(job(), t.database(), &clock, 3),
    );

    // `crm jobs at weekly_report 09:30`: nothing before its instant, then one message.
    let at = wednesday + TimeDelta::minutes(30);
    worker_runner
        .schedule_run("weekly_report", at, "cli:operator")
        .await
        .unwrap();
    let early = beat_a
        .publish_due(at - TimeDelta::seconds(1))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(
        beat_a.next_tick(wednesday + TimeDelta::minutes(1)),
        Some(at),
        "a beat wakes for the one-off run"
    );
    clock.set(at + TimeDelta::seconds(1));
    let (a, b) = futures::join!(
        beat_a.publish_due(at + TimeDelta::seconds(1)),
        beat_b.publish_due(at + TimeDelta::seconds(1))
    );
    let published: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(published.len(), 2, "each beat looked at it: {published:?}");
    assert!(published.iter().all(|p| p.one_off && p.tick == at));
    assert_eq!(published.iter().filter(|p| p.by_us).count(), 1);
    assert_eq!(tb.broker.queue_len().await.unwrap(), 1, "published once");

    // The worker runs it as the manual run at its instant; no beat publishes it again.
    match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
        Some(Handled::Ran(report)) => {
            assert_eq!(report.status, RunStatus::Succeeded);
            assert_eq!(report.kind, Some(crm_jobs::RunKind::Manual));
            assert_eq!(report.tick, Some(at));
        }
        other => panic!("the one-off run runs: {other:?}"),
    }
    assert_eq!(*done.lock().unwrap(), vec![(at, 1)]);
    let result = tb
        .broker
        .result(&crm_jobs::broker::one_off_task_id("weekly_report", at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result["status"], "SUCCESS");
    let again = beat_b
        .publish_due(at + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(tb.broker.queue_len().await.unwrap(), 0);
    // A scheduler on the same database does not run it a second time either.
    let reports = worker_runner.run_due(at + TimeDelta::minutes(2)).await;
    assert!(
        reports.iter().all(|r| r.status == RunStatus::Taken),
        "{reports:?}"
    );
    assert_eq!(done.lock().unwrap().len(), 1);

    // A second one-off, published, then the job is paused before a worker takes it: it is
    // not run and not recorded; it waits, and after the resume a beat publishes it again.
    let at2 = at + TimeDelta::minutes(30);
    worker_runner
        .schedule_run("weekly_report", at2, "cli:operator")
        .await
        .unwrap();
    clock.set(at2);
    let published = beat_a.publish_due(at2).await.unwrap();
    assert_eq!(published.iter().filter(|p| p.by_us).count(), 1);
    worker_runner
        .set_enabled("weekly_report", false, "cli:operator")
        .await
        .unwrap();
    match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
        Some(Handled::Skipped { .. }) => {}
        other => panic!("a paused job's one-off run is not run: {other:?}"),
    }
    assert_eq!(done.lock().unwrap().len(), 1);
    let pending = crm_jobs::OverrideStore::snapshot(t.database())
        .await
        .unwrap()
        .pending;
    assert_eq!(pending.iter().map(|r| r.at).collect::<Vec<_>>(), vec![at2]);
    clock.set(at2 + TimeDelta::minutes(1));
    let paused = beat_a.publish_due(clock_now(&clock)).await.unwrap();
    assert!(
        paused.is_empty(),
        "nothing published while paused: {paused:?}"
    );
    worker_runner
        .set_enabled("weekly_report", true, "cli:operator")
        .await
        .unwrap();
    let resumed = beat_b.publish_due(clock_now(&clock)).await.unwrap();
    assert_eq!(
        resumed.iter().filter(|p| p.by_us && p.tick == at2).count(),
        1,
        "{resumed:?}"
    );
    match worker.handle_next(Duration::from_secs(2)).await.unwrap() {
        Some(Handled::Ran(report)) => assert_eq!(report.status, RunStatus::Succeeded),
        other => panic!("the resumed job's one-off run runs: {other:?}"),
    }
    assert_eq!(*done.lock().unwrap(), vec![(at, 1), (at2, 1)]);
}

fn clock_now(clock: &crm_jobs::ManualClock) -> DateTime<Utc> {
    crm_jobs::Clock::now(clock)
}

// ---- Future-eta messages ----

/// A Redis server of this test's own (the machine's `redis-server` on a free port), so that
/// its command statistics count this test's commands only. Killed on drop.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Option<Self> {
        if !require(&this_test(), Need::Redis) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let url = format!("redis://127.0.0.1:{port}/0");
        let started = Instant::now();
        while redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, url })
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Commands the server ran since the last reset, by name (`INFO commandstats`).
    fn commands(&self) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    fn reset_stats(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.conn())
            .unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[async_std::test]
async fn future_eta_tasks_are_held_by_the_worker_not_requeued_over_and_over() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let broker = Broker::connect(BrokerConfig::new(&redis.url))
        .await
        .unwrap();
    let job = Recorded::new("sync_things", "*/5 * * * *");
    let done = job.done.clone();
    let mut job = job;
    job.parallel = true;
    let worker = Worker::new(
        broker.clone(),
        runner(job, Arc::new(MemoryLedger::new()), 1),
    )
    .concurrency(4);
    // 100 tasks due in an hour (Celery's `apply_async(countdown=3600)`).
    let eta = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    for i in 0..100 {
        let mut envelope = scheduled_envelope(
            "sync_things",
            monday_six() + TimeDelta::minutes(i),
            "celery",
            "test",
        );
        envelope["headers"]["eta"] = json!(eta);
        broker.publish(&envelope).await.unwrap();
    }
    let handle = worker.handle();
    let window = Duration::from_secs(5);
    let rate = |what: &str| {
        let commands = redis.commands();
        let per_second = commands.values().sum::<u64>() as f64 / window.as_secs_f64();
        eprintln!(
            "100 future-eta tasks, worker concurrency 4, {what}: {per_second:.1} Redis \
             commands/s over {} s: {commands:?}",
            window.as_secs()
        );
        (per_second, commands)
    };
    // The first seconds (taking the 100 tasks), then the steady state once all are held.
    redis.reset_stats();
    let running = async_std::task::spawn(worker.run());
    async_std::task::sleep(window).await;
    rate("first 5 s");
    assert_eq!(broker.queue_len().await.unwrap(), 0, "all taken");
    assert_eq!(
        broker.unacked_len().await.unwrap(),
        100,
        "all held, unacknowledged"
    );
    redis.reset_stats();
    async_std::task::sleep(window).await;
    let (per_second, commands) = rate("steady state");
    assert!(
        done.lock().unwrap().is_empty(),
        "nothing runs before its eta"
    );

    // One due in two seconds runs then, the held ones still held.
    let soon = Utc::now() + TimeDelta::seconds(2);
    let tick = monday_six() + TimeDelta::days(1);
    let mut envelope = scheduled_envelope("sync_things", tick, "celery", "test");
    envelope["headers"]["eta"] = json!(soon.to_rfc3339());
    broker.publish(&envelope).await.unwrap();
    let id = tick_task_id("sync_things", tick);
    wait_for("the task due soon", Duration::from_secs(15), async || {
        broker.result(&id).await.unwrap()
    })
    .await;
    assert!(Utc::now() >= soon, "not before its eta");
    assert_eq!(*done.lock().unwrap(), vec![(tick, 1)]);

    // Stopping gives the held tasks back to the queue for other workers.
    handle.shutdown();
    running.await;
    assert_eq!(
        broker.queue_len().await.unwrap() + broker.unacked_len().await.unwrap(),
        100
    );
    assert_eq!(
        broker.unacked_len().await.unwrap(),
        0,
        "handed back on shutdown"
    );
    // Round trips, not the commands a script runs inside Redis: the worker's atomic take is one
    // EVALSHA that tries the queue and its three priority lists (four RPOPs) in one step.
    let round_trips =
        per_second - commands.get("rpop").copied().unwrap_or(0) as f64 / window.as_secs_f64();
    assert!(
        round_trips < 20.0,
        "held tasks cost {round_trips:.1} Redis round trips/s ({per_second:.1} commands/s): {commands:?}"
    );
}

#[async_std::test]
async fn a_task_taken_while_the_ledger_is_down_goes_back_to_the_queue_and_runs_when_it_is_back() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let ledger = Arc::new(flaky_ledger::FlakyLedger::default());
    ledger.down.store(true, Ordering::SeqCst);
    let job = Recorded::new("sync_things", "*/5 * * * *");
    let done = job.done.clone();
    let worker = Worker::new(tb.broker.clone(), runner(job, ledger.clone(), 1));
    tb.broker
        .publish(&scheduled_envelope(
            "sync_things",
            monday_six(),
            "celery",
            "t",
        ))
        .await
        .unwrap();

    // The database is down: the task is put back on the queue after a short wait, rather than
    // left unacknowledged until the visibility timeout (an hour by default) restores it.
    let started = Instant::now();
    let handled = worker.handle_next(Duration::from_secs(1)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        matches!(&handled, Some(Handled::Requeued { reason, .. }) if reason.contains("ledger is unavailable")),
        "{handled:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(ledger.refused.load(Ordering::SeqCst) > 0);
    assert!(done.lock().unwrap().is_empty());

    // The database is back: the same message is on the queue and runs, once.
    ledger.down.store(false, Ordering::SeqCst);
    let handled = worker.handle_next(Duration::from_secs(1)).await.unwrap();
    assert!(
        matches!(&handled, Some(Handled::Ran(r)) if r.status == RunStatus::Succeeded),
        "{handled:?}"
    );
    assert_eq!(done.lock().unwrap().as_slice(), &[(monday_six(), 1)]);
    assert!(
        worker
            .handle_next(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    eprintln!("ledger down: the task went back to the queue after {waited:?}");
}

#[async_std::test]
async fn a_scheduled_task_for_a_time_that_is_not_a_tick_is_dead_lettered_not_run() {
    let Some(tb) = test_broker(None).await else {
        return;
    };
    let ledger = Arc::new(MemoryLedger::new());
    let job = Recorded::new("sync_things", "*/5 * * * *");
    let done = job.done.clone();
    let worker = Worker::new(tb.broker.clone(), runner(job, ledger.clone(), 1));
    // 06:00:07 and 06:03 are not ticks of */5; a client's `datetime.now()` looks like this.
    for off in [TimeDelta::seconds(7), TimeDelta::minutes(3)] {
        tb.broker
            .publish(&scheduled_envelope(
                "sync_things",
                monday_six() + off,
                "celery",
                "t",
            ))
            .await
            .unwrap();
        let handled = worker.handle_next(Duration::from_secs(1)).await.unwrap();
        assert!(
            matches!(&handled, Some(Handled::DeadLettered { reason, .. }) if reason.contains("is not a tick of job sync_things's schedule")),
            "{handled:?}"
        );
    }
    assert!(done.lock().unwrap().is_empty());
    assert!(ledger.history(None, 10).await.unwrap().is_empty());
    // A real tick still runs.
    tb.broker
        .publish(&scheduled_envelope(
            "sync_things",
            monday_six(),
            "celery",
            "t",
        ))
        .await
        .unwrap();
    let handled = worker.handle_next(Duration::from_secs(1)).await.unwrap();
    assert!(
        matches!(&handled, Some(Handled::Ran(r)) if r.status == RunStatus::Succeeded),
        "{handled:?}"
    );
    assert_eq!(done.lock().unwrap().as_slice(), &[(monday_six(), 1)]);
}
