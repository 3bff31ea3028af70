//! Job health and schedule alerts over a simulated timeline (a manual clock, no sleeping), on
//! every ledger (memory, SQLite, PostgreSQL), and the late alert delivered to a real HTTP
//! listener.

#[path = "support/webhook.rs"]
mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::testing::TestDb;
use crm_jobs::health::{HealthState, JobHealth, assess};
use crm_jobs::{
    Alert, AlertError, AlertHook, AlertHooks, Claim, Clock as _, CronJob, JobContext,
    JobControl as _, JobError, JobOptions, LogAlert, ManualClock, MemoryLedger, MemoryOverrides,
    NewRun, RunEnd, RunKind, RunLedger, Runner, Schedule, WebhookAlert,
};
use webhook::webhook_listener;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// An hourly job that fails (quoting a customer's e-mail) while `fail` is set.
#[derive(Debug)]
struct Hourly {
    fail: Arc<AtomicBool>,
}

#[async_trait]
impl CronJob for Hourly {
    fn code(&self) -> &str {
        "hourly"
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("0 * * * *").unwrap()
    }
    fn options(&self) -> JobOptions {
        JobOptions::default()
    }
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(JobError::Other(
                "could not remind ann@example.com".to_owned(),
            ))
        } else {
            Ok("done".to_owned())
        }
    }
}

/// Collects alerts in memory.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<Alert>>);

#[async_trait]
impl AlertHook for Recorded {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

impl Recorded {
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .map(|a| {
                serde_json::to_value(&a).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

fn runner(
    ledger: Arc<dyn RunLedger>,
    clock: &ManualClock,
    fail: &Arc<AtomicBool>,
    hook: Arc<dyn AlertHook>,
    pid: u32,
) -> Runner {
    Runner::builder()
        .job(Box::new(Hourly { fail: fail.clone() }))
        .ledger(ledger)
        .clock(Arc::new(clock.clone()))
        .alert_hook(hook)
        .time_zone(Tz::UTC)
        .host("health-test")
        .pid(pid)
        .build()
        .unwrap()
}

async fn health(runner: &Runner, now: DateTime<Utc>) -> JobHealth {
    assess(runner, now).await.unwrap().remove(0)
}

async fn state_at(runner: &Runner, clock: &ManualClock, at: DateTime<Utc>) -> HealthState {
    clock.set(at);
    health(runner, at).await.state
}

/// The timeline every ledger goes through: each state reached and left, each incident alerted
/// once (by whichever of two processes checks first) and its end alerted once.
async fn timeline(ledger: Arc<dyn RunLedger>) {
    let clock = ManualClock::new(utc(2026, 3, 2, 9, 30, 0));
    let fail = Arc::new(AtomicBool::new(false));
    let alerts = Arc::new(Recorded::default());
    let a = runner(ledger.clone(), &clock, &fail, alerts.clone(), 1);
    let b = runner(ledger.clone(), &clock, &fail, alerts.clone(), 2);

    // Nothing ran yet: nothing to judge, nothing to alert.
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 9, 30, 0)).await,
        HealthState::NeverRun
    );
    assert!(a.check_schedules(clock.now()).await.unwrap().is_empty());

    // 10:00 runs on time: ok, next run at 11:00.
    clock.set(utc(2026, 3, 2, 10, 0, 5));
    assert_eq!(a.run_due(clock.now()).await.len(), 1);
    let h = health(&a, clock.now()).await;
    assert_eq!(h.state, HealthState::Ok);
    assert_eq!(h.next_run, Some(utc(2026, 3, 2, 11, 0, 0)));
    assert_eq!(
        h.last_success.as_ref().map(|r| r.tick),
        Some(utc(2026, 3, 2, 10, 0, 0))
    );
    assert!(h.last_failure.is_none());
    assert_eq!(h.recent.len(), 1);
    assert!(h.p50.is_some() && h.p95.is_some());

    // 11:00 is claimed by another process and still going: running; it ends: ok.
    clock.set(utc(2026, 3, 2, 11, 0, 10));
    let started = clock.now();
    let run = NewRun {
        code: "hourly".to_owned(),
        tick: utc(2026, 3, 2, 11, 0, 0),
        kind: RunKind::Scheduled,
        attempt: 1,
        started_at: started,
        lease_until: started + TimeDelta::minutes(5),
        host: "elsewhere".to_owned(),
        pid: 9,
    };
    let Claim::Claimed(row) = ledger.claim(&run, true, started).await.unwrap() else {
        panic!("the 11:00 tick is free");
    };
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 11, 2, 0)).await,
        HealthState::Running
    );
    let ended = utc(2026, 3, 2, 11, 3, 10);
    ledger
        .finish(
            row.id,
            RunEnd {
                outcome: crm_jobs::RunOutcome::Succeeded,
                at: ended,
                message: "ok",
            },
        )
        .await
        .unwrap();
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 11, 4, 0)).await,
        HealthState::Ok
    );
    let h = health(&a, clock.now()).await;
    assert_eq!(h.p95, Some(Duration::from_secs(180)), "the 3-minute run");

    // No scheduler at 12:00: within the grace it is ok, after it late, alerted once.
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 12, 0, 50)).await,
        HealthState::Ok
    );
    assert!(a.check_schedules(clock.now()).await.unwrap().is_empty());
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 12, 2, 0)).await,
        HealthState::Late
    );
    assert_eq!(
        health(&a, clock.now()).await.overdue_tick,
        Some(utc(2026, 3, 2, 12, 0, 0))
    );
    a.check_schedules(clock.now()).await.unwrap();
    b.check_schedules(clock.now()).await.unwrap();
    clock.set(utc(2026, 3, 2, 12, 30, 0));
    b.check_schedules(clock.now()).await.unwrap();
    assert_eq!(alerts.take(), ["late"], "one alert for the incident");

    // 13:00 comes and 12:00 never ran: missed (the incident escalates, alerted once).
    assert_eq!(
        state_at(&a, &clock, utc(2026, 3, 2, 13, 0, 20)).await,
        HealthState::Missed
    );
    assert_eq!(
        health(&a, clock.now()).await.overdue_tick,
        Some(utc(2026, 3, 2, 12, 0, 0))
    );
    b.check_schedules(clock.now()).await.unwrap();
    a.check_schedules(clock.now()).await.unwrap();
    assert_eq!(alerts.take(), ["missed"]);

    // The scheduler is back and runs 13:00: ok again, and the end is told once.
    a.run_due(clock.now()).await;
    assert_eq!(health(&a, clock.now()).await.state, HealthState::Ok);
    a.check_schedules(clock.now()).await.unwrap();
    b.check_schedules(clock.now()).await.unwrap();
    let back = alerts.0.lock().unwrap().clone();
    assert_eq!(alerts.take(), ["back_on_schedule"]);
    assert!(matches!(&back[0], Alert::BackOnSchedule { was, .. } if was == "missed"));

    // 14:00 fails: failing (the run alerts it), its message without the customer's e-mail.
    fail.store(true, Ordering::SeqCst);
    clock.set(utc(2026, 3, 2, 14, 0, 3));
    a.run_due(clock.now()).await;
    let h = health(&a, clock.now()).await;
    assert_eq!(h.state, HealthState::Failing);
    assert_eq!(h.consecutive_failures, 1);
    assert_eq!(
        h.last_failure_message().as_deref(),
        Some("could not remind [e-mail]")
    );
    a.check_schedules(clock.now()).await.unwrap();
    assert_eq!(alerts.take(), ["failing"]);

    // 15:00 succeeds: ok, recovered.
    fail.store(false, Ordering::SeqCst);
    clock.set(utc(2026, 3, 2, 15, 0, 3));
    a.run_due(clock.now()).await;
    let h = health(&a, clock.now()).await;
    assert_eq!(h.state, HealthState::Ok);
    assert_eq!(h.consecutive_failures, 0);
    assert_eq!(
        h.last_failure.as_ref().map(|r| r.tick),
        Some(utc(2026, 3, 2, 14, 0, 0))
    );
    let ticks: Vec<u32> = h
        .recent
        .iter()
        .map(|r| chrono::Timelike::hour(&r.tick))
        .collect();
    assert_eq!(ticks, [15, 14, 13, 11, 10], "newest first, no 12:00");
    assert_eq!(alerts.take(), ["recovered"]);
    assert!(ledger.open_incidents().await.unwrap().is_empty());
}

#[async_std::test]
async fn health_states_are_reached_and_left_on_the_memory_ledger() {
    timeline(Arc::new(MemoryLedger::new())).await;
}

#[async_std::test]
async fn health_states_are_reached_and_left_on_sqlite() {
    let db = TestDb::sqlite().await;
    timeline(Arc::new(db.database().clone())).await;
}

#[async_std::test]
async fn health_states_are_reached_and_left_on_postgres() {
    let db = TestDb::postgres().await;
    timeline(Arc::new(db.database().clone())).await;
}

/// The runs read for health: the latest `per_job` of each job, plus each job's latest success,
/// failure and scheduled run however old.
async fn recent_runs_keep_the_landmarks(ledger: &dyn RunLedger) {
    let t0 = utc(2026, 4, 1, 0, 0, 0);
    let mut ids = Vec::new();
    for (i, outcome) in [
        crm_jobs::RunOutcome::Succeeded,
        crm_jobs::RunOutcome::Failed,
        crm_jobs::RunOutcome::Failed,
        crm_jobs::RunOutcome::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        for code in ["a", "b"] {
            let at = t0 + TimeDelta::hours(i as i64);
            let run = NewRun {
                code: code.to_owned(),
                tick: at,
                kind: if i == 3 {
                    RunKind::Manual
                } else {
                    RunKind::Scheduled
                },
                attempt: 1,
                started_at: at,
                lease_until: at + TimeDelta::minutes(1),
                host: "h".to_owned(),
                pid: 1,
            };
            ids.push((code, i, claimed(ledger, &run, Some(outcome)).await));
        }
    }
    let runs = ledger.recent_runs(1).await.unwrap();
    let got: Vec<(String, DateTime<Utc>)> = runs.iter().map(|r| (r.code.clone(), r.tick)).collect();
    let h = |i: i64| t0 + TimeDelta::hours(i);
    // Per job: the latest (3, a failure, manual), the latest scheduled (2), the success (0).
    assert_eq!(
        got,
        [
            ("a".to_owned(), h(3)),
            ("a".to_owned(), h(2)),
            ("a".to_owned(), h(0)),
            ("b".to_owned(), h(3)),
            ("b".to_owned(), h(2)),
            ("b".to_owned(), h(0)),
        ]
    );
    assert_eq!(ledger.recent_runs(10).await.unwrap().len(), 8);
}

/// Of two landmarks that share a walk no more, the later one: the latest failure is the later
/// of the latest failed and the latest abandoned run (by id), the latest scheduled run is the
/// later of the latest scheduled run and the latest retry (by tick, then attempt, not by id);
/// dry runs count for none. Each job has them the other way round.
async fn recent_runs_pick_the_later_landmark(ledger: &dyn RunLedger) {
    use crm_jobs::RunOutcome::{Failed, Succeeded};
    let t0 = utc(2026, 4, 1, 0, 0, 0);
    let h = |i: i64| t0 + TimeDelta::hours(i);
    // (code, kind, tick, attempt, outcome; None: left running, so the next claim abandons it)
    let a = [
        ("a", RunKind::Scheduled, h(1), 1, Some(Failed)),
        ("a", RunKind::Retry, h(1), 2, None),
        ("a", RunKind::Scheduled, h(0), 1, Some(Succeeded)),
        ("a", RunKind::Manual, h(3), 1, Some(Succeeded)),
        ("a", RunKind::DryRun, h(4), 1, Some(Failed)),
    ];
    let b = [
        ("b", RunKind::Retry, h(0), 2, None),
        ("b", RunKind::Scheduled, h(1), 1, Some(Failed)),
        ("b", RunKind::Manual, h(3), 1, Some(Succeeded)),
        ("b", RunKind::DryRun, h(4), 1, Some(Succeeded)),
    ];
    let mut at = t0;
    let mut ids = Vec::new();
    for (code, kind, tick, attempt, outcome) in a.into_iter().chain(b) {
        at += TimeDelta::hours(1);
        let run = NewRun {
            code: code.to_owned(),
            tick,
            kind,
            attempt,
            started_at: at,
            lease_until: at + TimeDelta::minutes(1),
            host: "h".to_owned(),
            pid: 1,
        };
        ids.push(claimed(ledger, &run, outcome).await);
    }
    ledger
        .abandon_expired(at + TimeDelta::hours(1))
        .await
        .unwrap();
    let got: Vec<_> = ledger
        .recent_runs(1)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.id, r.outcome))
        .collect();
    assert_eq!(
        got,
        [
            // a: the latest run (manual, also the latest success); the abandoned retry (the
            // latest failure, and the latest scheduled run by tick and attempt).
            (ids[3], Succeeded),
            (ids[1], crm_jobs::RunOutcome::Abandoned),
            // b: the latest run; the failed scheduled run (the latest failure, and the latest
            // scheduled run by tick).
            (ids[7], Succeeded),
            (ids[6], Failed),
        ]
    );
}

#[async_std::test]
async fn recent_runs_pick_the_later_landmark_on_every_ledger() {
    recent_runs_pick_the_later_landmark(&MemoryLedger::new()).await;
    let sqlite = TestDb::sqlite().await;
    recent_runs_pick_the_later_landmark(sqlite.database()).await;
    let postgres = TestDb::postgres().await;
    recent_runs_pick_the_later_landmark(postgres.database()).await;
}

#[async_std::test]
async fn recent_runs_keep_each_jobs_landmarks_on_every_ledger() {
    recent_runs_keep_the_landmarks(&MemoryLedger::new()).await;
    let sqlite = TestDb::sqlite().await;
    recent_runs_keep_the_landmarks(sqlite.database()).await;
    let postgres = TestDb::postgres().await;
    recent_runs_keep_the_landmarks(postgres.database()).await;
}

#[async_std::test]
async fn a_late_job_is_posted_to_the_webhook_once_after_a_retry() {
    // 503 to the first request, 200 after.
    let (url, received) = webhook_listener(vec![503]).await;
    let webhook = WebhookAlert::new(&url)
        .unwrap()
        .attempts(3)
        .pause(Duration::from_millis(10))
        .timeout(Duration::from_secs(5));
    let hook = Arc::new(AlertHooks(vec![Arc::new(LogAlert), Arc::new(webhook)]));
    let clock = ManualClock::new(utc(2026, 3, 2, 10, 0, 5));
    let fail = Arc::new(AtomicBool::new(false));
    let ledger: Arc<dyn RunLedger> = Arc::new(MemoryLedger::new());
    let runner = runner(ledger, &clock, &fail, hook, 1);
    runner.run_due(clock.now()).await;
    clock.set(utc(2026, 3, 2, 11, 5, 0));
    let sent = runner.check_schedules(clock.now()).await.unwrap();
    assert_eq!(sent.len(), 1);
    runner.check_schedules(clock.now()).await.unwrap();

    let body = received.recv().await.unwrap();
    assert_eq!(body["event"], "late");
    assert_eq!(body["code"], "hourly");
    assert_eq!(body["tick"], "2026-03-02T11:00:00Z");
    assert_eq!(body["next_run"], "2026-03-02T12:00:00Z");
    assert!(
        received.try_recv().is_err(),
        "the second check sent nothing: {:?}",
        received.try_recv()
    );
}

#[async_std::test]
async fn a_paused_job_is_paused_not_late_and_resumes_without_counting_the_pause() {
    let clock = ManualClock::new(utc(2026, 3, 2, 10, 0, 5));
    let fail = Arc::new(AtomicBool::new(false));
    let alerts = Arc::new(Recorded::default());
    let runner = Runner::builder()
        .job(Box::new(Hourly { fail: fail.clone() }))
        .ledger(Arc::new(MemoryLedger::new()))
        .overrides(Arc::new(MemoryOverrides::new()))
        .clock(Arc::new(clock.clone()))
        .alert_hook(alerts.clone())
        .time_zone(Tz::UTC)
        .build()
        .unwrap();
    runner.run_due(clock.now()).await;
    assert_eq!(health(&runner, clock.now()).await.state, HealthState::Ok);

    clock.set(utc(2026, 3, 2, 10, 30, 0));
    runner.set_enabled("hourly", false, "test").await.unwrap();
    // Two ticks pass while paused: paused, no next run, nothing alerted.
    let h = health(&runner, utc(2026, 3, 2, 12, 5, 0)).await;
    assert_eq!((h.state, h.next_run), (HealthState::Paused, None));
    clock.set(utc(2026, 3, 2, 12, 5, 0));
    assert!(
        runner
            .check_schedules(clock.now())
            .await
            .unwrap()
            .is_empty()
    );

    // Resumed at 12:10: the ticks of the pause are not missed ones; 13:00 is next.
    clock.set(utc(2026, 3, 2, 12, 10, 0));
    runner.set_enabled("hourly", true, "test").await.unwrap();
    let h = health(&runner, utc(2026, 3, 2, 12, 11, 0)).await;
    assert_eq!(h.state, HealthState::Ok);
    assert_eq!(h.next_run, Some(utc(2026, 3, 2, 13, 0, 0)));
    clock.set(utc(2026, 3, 2, 13, 3, 0));
    assert_eq!(
        health(&runner, clock.now()).await.state,
        HealthState::Late,
        "the first tick after resuming counts"
    );
    assert!(alerts.take().is_empty());
}

/// Claims `run` (a free tick) and, given an outcome, records it as ended at its start.
async fn claimed(
    ledger: &dyn RunLedger,
    run: &NewRun,
    outcome: Option<crm_jobs::RunOutcome>,
) -> crm_jobs::RunId {
    let Claim::Claimed(row) = ledger.claim(run, true, run.started_at).await.unwrap() else {
        panic!("free tick");
    };
    if let Some(outcome) = outcome {
        let end = RunEnd {
            outcome,
            at: run.started_at,
            message: "m",
        };
        ledger.finish(row.id, end).await.unwrap();
    }
    row.id
}
