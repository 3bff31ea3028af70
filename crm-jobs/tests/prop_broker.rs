//! Property test of the broker worker against hostile messages (issue 8, row P6): arbitrary
//! bytes, JSON of the wrong shape, and Celery envelopes broken one part at a time (missing
//! headers, wrong content type, bad base64, a body of the wrong shape, unknown task names,
//! dates that are not dates) are put on the queue of a real worker on the real Redis, under
//! the test's own key prefix. The worker does not panic or stop; each bad message is
//! dead-lettered with the reason its kind calls for (an expired one is revoked); no job runs
//! and the run ledger (SQLite) stays empty; good messages after the bad ones still run, once.
//!
//! Without Redis the test fails when `CI=true` and is skipped with a notice otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::UTC;
use crm_core::testing::{Need, TestDb, require, this_test};
use crm_jobs::broker::{Broker, BrokerConfig, Handled, Worker, scheduled_envelope, tick_task_id};
use crm_jobs::{CronJob, JobContext, JobError, RunLedger, Runner, Schedule};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const CODE: &str = "sync_things";

fn redis_url() -> String {
    std::env::var("CRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A broker under a fresh key prefix; every key under it is deleted when it is dropped.
struct TestBroker {
    broker: Broker,
    prefix: String,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Synchronous, so it also runs when the test panics.
        let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) else {
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

async fn test_broker() -> Option<TestBroker> {
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "crm_prop_{}_{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    if !require(&this_test(), Need::Redis) {
        return None;
    }
    match Broker::connect(BrokerConfig::new(redis_url()).key_prefix(&prefix)).await {
        Ok(broker) => Some(TestBroker { broker, prefix }),
        Err(e) => panic!("Redis at {} refused the test: {e}", redis_url()),
    }
}

/// A job that records the tick of every run.
struct Recorded(Arc<Mutex<Vec<DateTime<Utc>>>>);

#[async_trait]
impl CronJob for Recorded {
    fn code(&self) -> &str {
        CODE
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("*/5 * * * *").unwrap().in_time_zone(UTC)
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.0.lock().unwrap().push(ctx.tick);
        Ok(format!("ran tick {}", ctx.tick))
    }
}

// ------------------------------------------------------------------ generators

/// What the worker must do with a message.
#[derive(Debug, Clone)]
enum Expect {
    /// Dead-lettered, its reason containing this text (empty: any non-empty reason).
    Dead(&'static str),
    /// Not run: revoked as expired and acknowledged.
    Expired,
}

/// A well-formed envelope of the known task, at a tick of its own.
fn good(n: i64) -> Value {
    let tick = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(5 * n);
    scheduled_envelope(CODE, tick, "celery", "prop-test")
}

fn without(mut envelope: Value, path: &[&str]) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut envelope;
    for p in parents {
        at = &mut at[*p];
    }
    at.as_object_mut().unwrap().remove(*last);
    envelope
}

fn with(mut envelope: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut envelope;
    for p in path {
        at = &mut at[*p];
    }
    *at = value;
    envelope
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "\\PC{0,8}",
                    Just("headers".to_owned()),
                    Just("body".to_owned()),
                    Just("properties".to_owned())
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that is not a date-time in any form Celery sends.
fn not_a_date() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z ]{0,12}".prop_map(Value::from),
        Just(json!("+10000-01-01T00:00:00Z")),
        Just(json!("2026-13-01T00:00:00Z")),
        Just(json!("2026-02-30T00:00:00")),
        Just(json!("tomorrow")),
        any::<i64>().prop_map(Value::from),
        Just(json!([])),
        Just(json!({"eta": 1})),
    ]
}

/// A bad message (raw bytes as they sit on the queue) and what the worker must do with it.
fn bad_message() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    prop_oneof![
        // Bytes and JSON that are not an envelope at all.
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, Expect::Dead(""))),
        1 => json_value().prop_map(|v| (v.to_string().into_bytes(), Expect::Dead(""))),
        6 => broken_envelope().prop_map(|(v, e)| (v.to_string().into_bytes(), e)),
    ]
}

/// A Celery envelope of the known task broken in one place.
fn broken_envelope() -> impl Strategy<Value = (Value, Expect)> {
    let n = 0..100_000i64;
    prop_oneof![
        n.clone()
            .prop_map(|n| (without(good(n), &["headers"]), Expect::Dead("no headers"))),
        (
            n.clone(),
            json_value().prop_filter("not an object", |v| !v.is_object())
        )
            .prop_map(|(n, v)| (with(good(n), &["headers"], v), Expect::Dead("no headers"))),
        (n.clone(), prop_oneof![Just("task"), Just("id")]).prop_map(|(n, h)| {
            let reason = if h == "task" { "no task" } else { "no id" };
            (without(good(n), &["headers", h]), Expect::Dead(reason))
        }),
        (
            n.clone(),
            prop_oneof![Just("task"), Just("id")],
            any::<i64>()
        )
            .prop_map(|(n, h, v)| {
                let reason = if h == "task" { "no task" } else { "no id" };
                (
                    with(good(n), &["headers", h], json!(v)),
                    Expect::Dead(reason),
                )
            }),
        n.clone().prop_map(|n| (
            without(good(n), &["properties"]),
            Expect::Dead("no properties")
        )),
        n.clone().prop_map(|n| (
            without(good(n), &["properties", "delivery_tag"]),
            Expect::Dead("no delivery_tag")
        )),
        (n.clone(), "\\PC{0,30}")
            .prop_filter("wrong", |(_, ct)| ct != "application/json")
            .prop_map(|(n, ct)| (
                with(good(n), &["content-type"], json!(ct)),
                Expect::Dead("is not application/json")
            )),
        n.clone().prop_map(|n| (
            without(good(n), &["content-type"]),
            Expect::Dead("content type")
        )),
        (n.clone(), "[!@#$%^&*()]\\PC{0,40}").prop_map(|(n, body)| (
            with(good(n), &["body"], json!(body)),
            Expect::Dead("the body is not base64")
        )),
        (n.clone(), proptest::collection::vec(any::<u8>(), 1..100))
            .prop_filter("not JSON", |(_, b)| serde_json::from_slice::<Value>(b)
                .is_err())
            .prop_map(|(n, b)| (
                with(good(n), &["body"], json!(BASE64.encode(b))),
                Expect::Dead("the body is not JSON")
            )),
        (n.clone(), json_value())
            .prop_filter("wrong shape", |(_, v)| !matches!(
                v.as_array().map(Vec::as_slice),
                Some([a, Value::Object(_), ..]) if a.is_array()
            ))
            .prop_map(|(n, v)| (
                with(good(n), &["body"], json!(BASE64.encode(v.to_string()))),
                Expect::Dead("the body is not [args, kwargs, embed]")
            )),
        (n.clone(), "[a-z0-9-]{0,12}")
            .prop_filter("not base64", |(_, e)| e != "base64")
            .prop_map(|(n, e)| (
                with(good(n), &["properties", "body_encoding"], json!(e)),
                Expect::Dead("unknown body encoding")
            )),
        (
            n.clone(),
            prop_oneof![
                "crm\\.tasks\\.[a-z_]{0,20}",
                "\\PC{0,40}",
                Just("crm.tasks.sync_things ".to_owned()),
                Just("CRM.TASKS.SYNC_THINGS".to_owned()),
                Just("crm.tasks.sync_things\u{0}".to_owned()),
                Just("celery.backend_cleanup".to_owned()),
                Just("os.system".to_owned()),
            ]
        )
            .prop_filter("unknown", |(_, t)| t != "crm.tasks.sync_things")
            .prop_map(|(n, t)| (
                with(good(n), &["headers", "task"], json!(t)),
                Expect::Dead("unknown task ")
            )),
        (
            n.clone(),
            prop_oneof![Just("eta"), Just("expires"), Just("crm_tick")],
            not_a_date()
        )
            .prop_map(|(n, h, v)| (
                with(good(n), &["headers", h], v),
                Expect::Dead("is not a date-time")
            )),
        // Expired: revoked, not run.
        (n, 1..100_000i64).prop_map(|(n, ago)| {
            let expired = (Utc::now() - TimeDelta::minutes(ago)).to_rfc3339();
            (
                with(good(n), &["headers", "expires"], json!(expired)),
                Expect::Expired,
            )
        }),
    ]
}

/// `n` values of `strategy`, drawn up front (the messages are then handled one by one).
fn draw<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// At most 300 characters of `bytes`, for failure messages.
fn short(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(300).collect()
}

#[async_std::test]
async fn p6_bad_messages_are_dead_lettered_nothing_runs_and_good_ones_still_do() {
    let Some(tb) = test_broker().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let done = Arc::new(Mutex::new(Vec::new()));
    let runner = Runner::builder()
        .job(Box::new(Recorded(done.clone())))
        .ledger(ledger.clone())
        .time_zone(UTC)
        .host("test")
        .pid(1)
        .build()
        .unwrap();
    let worker = Worker::new(tb.broker.clone(), Arc::new(runner));

    // The bad messages, straight onto the worker's queue, then two good ones behind them: a
    // plain one, and one with odd but harmless headers (negative retries, an unknown header).
    let cases = draw(bad_message(), 250);
    let mut conn = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("Redis answers");
    let queue = format!("{}celery", tb.prefix);
    for (raw, _) in &cases {
        let _: () = redis::cmd("LPUSH")
            .arg(&queue)
            .arg(raw.as_slice())
            .query(&mut conn)
            .unwrap();
    }
    let good_ticks = [200_001, 200_002]
        .map(|n| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(5 * n));
    let plain = scheduled_envelope(CODE, good_ticks[0], "celery", "prop-test");
    let odd = with(
        with(
            scheduled_envelope(CODE, good_ticks[1], "celery", "prop-test"),
            &["headers", "retries"],
            json!(-1),
        ),
        &["headers", "x-unknown"],
        json!({"deep": [1, 2, 3]}),
    );
    tb.broker.publish(&plain).await.unwrap();
    tb.broker.publish(&odd).await.unwrap();

    // One at a time, in order: each bad message is refused as its kind calls for.
    let mut dead = 0;
    for (raw, expect) in &cases {
        let handled = worker
            .handle_next(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("the worker failed on {:?}: {e}", short(raw)))
            .unwrap_or_else(|| panic!("no message where {:?} was", short(raw)));
        match (expect, &handled) {
            (Expect::Dead(text), Handled::DeadLettered { reason, .. })
                if !reason.trim().is_empty() && reason.contains(text) =>
            {
                dead += 1;
            }
            (Expect::Expired, Handled::Expired { .. }) => {}
            _ => panic!(
                "{:?}: expected {expect:?}, the worker did {handled:?}",
                short(raw)
            ),
        }
    }
    assert!(
        dead > cases.len() / 2,
        "{dead} dead letters of {}",
        cases.len()
    );
    assert!(done.lock().unwrap().is_empty(), "a bad message ran the job");
    assert!(
        ledger.history(None, 10).await.unwrap().is_empty(),
        "a bad message wrote to the ledger"
    );
    let letters = tb.broker.dead_letters().await.unwrap();
    assert_eq!(letters.len(), dead, "one dead letter per refused message");
    assert!(
        letters.iter().all(
            |l| l["reason"].as_str().is_some_and(|r| !r.is_empty()) && l["message"].is_string()
        ),
        "each dead letter keeps the message and its reason"
    );
    assert_eq!(
        tb.broker.unacked_len().await.unwrap(),
        0,
        "nothing left unacknowledged"
    );

    // The worker's own loop after all that: it runs the good messages, once each.
    let handle = worker.handle();
    let running = async_std::task::spawn(worker.clone().run());
    let started = Instant::now();
    for tick in good_ticks {
        let id = tick_task_id(CODE, tick);
        loop {
            if let Some(result) = tb.broker.result(&id).await.unwrap() {
                assert_eq!(result["status"], "SUCCESS", "{result}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the good message {id} did not run"
            );
            async_std::task::sleep(Duration::from_millis(50)).await;
        }
    }
    handle.shutdown();
    let summary = running.await;
    assert_eq!(summary.received, cases.len() as u64 + 2, "{summary:?}");
    assert_eq!(summary.succeeded, 2, "{summary:?}");
    assert_eq!(summary.dead_lettered, dead as u64, "{summary:?}");
    assert_eq!(*done.lock().unwrap(), good_ticks.to_vec());
    assert_eq!(ledger.history(None, 10).await.unwrap().len(), 2);
    assert_eq!(tb.broker.queue_len().await.unwrap(), 0);
}

/// An eta centuries ahead is not a malformed message (Celery holds such tasks too): the worker
/// puts it back on the queue without running it or writing anything, and carries on.
#[async_std::test]
async fn p6_a_message_with_an_eta_centuries_ahead_is_held_back_not_run() {
    let Some(tb) = test_broker().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let done = Arc::new(Mutex::new(Vec::new()));
    let runner = Runner::builder()
        .job(Box::new(Recorded(done.clone())))
        .ledger(ledger.clone())
        .time_zone(UTC)
        .host("test")
        .pid(1)
        .build()
        .unwrap();
    let worker = Worker::new(tb.broker.clone(), Arc::new(runner));
    for eta in ["9999-12-31T23:59:59Z", "2200-01-01T00:00:00+14:00"] {
        let message = with(good(7), &["headers", "eta"], json!(eta));
        tb.broker.publish(&message).await.unwrap();
        let handled = worker
            .handle_next(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&handled, Handled::Requeued { reason, .. } if reason.contains("eta")),
            "{handled:?}"
        );
        assert_eq!(tb.broker.queue_len().await.unwrap(), 1, "kept on the queue");
        assert_eq!(tb.broker.unacked_len().await.unwrap(), 0);
        let _: () = redis::cmd("DEL")
            .arg(format!("{}celery", tb.prefix))
            .query(
                &mut redis::Client::open(redis_url())
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
            .unwrap();
    }
    assert!(done.lock().unwrap().is_empty());
    assert!(ledger.history(None, 10).await.unwrap().is_empty());
}
