//! The runner, the run ledger and the scheduler, against the real databases (SQLite files and
//! PostgreSQL) and a real HTTP listener for the webhook. Time is a manual clock: a week of
//! schedules runs in a moment, without sleeping.

#[path = "support/drive.rs"]
mod drive;
#[path = "support/webhook.rs"]
mod webhook;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_std::net::TcpListener;
use async_std::sync::Barrier;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::Database;
use crm_core::testing::TestDb;
use crm_jobs::{
    Alert, AlertError, AlertHook, Claim, CronJob, JobContext, JobError, JobOptions, ManualClock,
    MemoryLedger, MisfirePolicy, NewRun, RunEnd, RunKind, RunLedger, RunOutcome, RunReport,
    RunStatus, Runner, RunnerError, Schedule, WebhookAlert, schedules,
};
use drive::drive;
use futures::FutureExt;
use futures::future::BoxFuture;
use webhook::webhook_listener;

// ---------------------------------------------------------------------------------------------
// Helpers

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn local(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

type Body =
    Arc<dyn Fn(u32, JobContext) -> BoxFuture<'static, Result<String, JobError>> + Send + Sync>;

/// A job whose body is a closure of (call number from 0, context), which records the tick of
/// every call it gets.
struct TestJob {
    code: String,
    schedule: Schedule,
    options: JobOptions,
    calls: Arc<Mutex<Vec<DateTime<Utc>>>>,
    count: Arc<AtomicU32>,
    body: Body,
}

impl TestJob {
    fn new(code: &str, schedule: Schedule) -> Self {
        Self {
            code: code.to_owned(),
            schedule,
            options: JobOptions::default(),
            calls: Arc::default(),
            count: Arc::default(),
            body: Arc::new(|_, ctx| async move { Ok(format!("ran {}", ctx.tick)) }.boxed()),
        }
    }

    fn cron(code: &str, expr: &str) -> Self {
        Self::new(code, Schedule::cron(expr).unwrap())
    }

    fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    fn body(
        mut self,
        body: impl Fn(u32, JobContext) -> BoxFuture<'static, Result<String, JobError>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.body = Arc::new(body);
        self
    }

    /// A handle on the recorded ticks, usable after the job is moved into a runner.
    fn calls(&self) -> Arc<Mutex<Vec<DateTime<Utc>>>> {
        self.calls.clone()
    }
}

#[async_trait]
impl CronJob for TestJob {
    fn code(&self) -> &str {
        &self.code
    }
    fn schedule(&self) -> Schedule {
        self.schedule.clone()
    }
    fn options(&self) -> JobOptions {
        self.options.clone()
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.calls.lock().unwrap().push(ctx.tick);
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        (self.body)(n, ctx.clone()).await
    }
}

fn ticks(calls: &Arc<Mutex<Vec<DateTime<Utc>>>>) -> Vec<DateTime<Utc>> {
    calls.lock().unwrap().clone()
}

/// Collects alerts in memory.
#[derive(Debug, Default)]
struct Alerts(Mutex<Vec<Alert>>);

#[async_trait]
impl AlertHook for Alerts {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

fn statuses(reports: &[RunReport]) -> Vec<(String, RunStatus)> {
    let mut s: Vec<_> = reports.iter().map(|r| (r.code.clone(), r.status)).collect();
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

/// The five contract jobs, as counting stand-ins carrying the contract's schedules.
fn contract_jobs() -> Vec<TestJob> {
    [
        (
            "clean_inactive_customers",
            schedules::CLEAN_INACTIVE_CUSTOMERS,
        ),
        ("send_order_reminders", schedules::SEND_ORDER_REMINDERS),
        ("log_crm_heartbeat", schedules::LOG_CRM_HEARTBEAT),
        ("update_low_stock", schedules::UPDATE_LOW_STOCK),
        ("generate_crm_report", schedules::GENERATE_CRM_REPORT),
    ]
    .into_iter()
    .map(|(code, expr)| TestJob::cron(code, expr))
    .collect()
}

/// A week of the five contract jobs in `zone`, from Sunday 00:00 local, on `ledger`.
async fn simulate_week(
    zone: Tz,
    sunday: (i32, u32, u32),
    ledger: Arc<dyn RunLedger>,
) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let (y, m, d) = sunday;
    let from = local(zone, y, m, d, 0, 0);
    let until = from + TimeDelta::days(8); // a little past the week; cut below
    let week_end = zone
        .with_ymd_and_hms(y, m, d, 0, 0, 0)
        .unwrap()
        .checked_add_days(chrono::Days::new(7))
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(from);
    let jobs = contract_jobs();
    let calls: Vec<_> = jobs.iter().map(|j| (j.code.clone(), j.calls())).collect();
    let runner = Runner::builder()
        .ledger(ledger)
        .clock(Arc::new(clock.clone()))
        .time_zone(zone)
        .jobs(jobs.into_iter().map(|j| Box::new(j) as Box<dyn CronJob>))
        .build()
        .unwrap();
    drive(&runner, &clock, from, until.min(week_end)).await;
    calls
        .into_iter()
        .map(|(code, c)| (code, ticks(&c)))
        .collect()
}

fn assert_week(
    zone: Tz,
    runs: &BTreeMap<String, Vec<DateTime<Utc>>>,
    sunday: (i32, u32, u32),
    heartbeats: usize,
    cleanup_at: DateTime<Utc>,
) {
    let (y, m, d) = sunday;
    let day = |offset: u32, h: u32, mi: u32| {
        let date =
            chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() + chrono::Days::new(offset.into());
        zone.from_local_datetime(&date.and_hms_opt(h, mi, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!(runs["clean_inactive_customers"], vec![cleanup_at]);
    assert_eq!(
        runs["send_order_reminders"],
        (0..7).map(|i| day(i, 8, 0)).collect::<Vec<_>>()
    );
    assert_eq!(runs["generate_crm_report"], vec![day(1, 6, 0)]);
    assert_eq!(
        runs["update_low_stock"],
        (0..7)
            .flat_map(|i| [day(i, 0, 0), day(i, 12, 0)])
            .collect::<Vec<_>>()
    );
    let beats = &runs["log_crm_heartbeat"];
    assert_eq!(beats.len(), heartbeats);
    assert!(
        beats
            .windows(2)
            .all(|w| w[1] - w[0] == TimeDelta::minutes(5)),
        "heartbeats every 5 minutes of real time, none twice"
    );
}

fn new_run(code: &str, tick: DateTime<Utc>, at: DateTime<Utc>, lease_secs: i64) -> NewRun {
    NewRun {
        code: code.to_owned(),
        tick,
        kind: RunKind::Scheduled,
        attempt: 1,
        started_at: at,
        lease_until: at + TimeDelta::seconds(lease_secs),
        host: "test-host".to_owned(),
        pid: 42,
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger: one suite, every implementation.

async fn ledger_suite(ledger: &dyn RunLedger) {
    let t0 = utc(2026, 1, 5, 8, 0);
    let run = new_run("job_a", t0, t0, 60);

    // A claim is written as running, before anything runs.
    let Claim::Claimed(first) = ledger.claim(&run, true, t0).await.unwrap() else {
        panic!("the first claim of a tick is granted");
    };
    assert_eq!(first.outcome, RunOutcome::Running);
    assert_eq!(first.tick, t0);
    assert_eq!(first.host, "test-host");
    assert_eq!(
        ledger.running(Some("job_a")).await.unwrap(),
        vec![first.clone()]
    );

    // The same tick again is taken; another tick of the job is busy while the lease lives.
    assert!(
        matches!(ledger.claim(&run, true, t0).await.unwrap(), Claim::Taken(r) if r.id == first.id)
    );
    let later = new_run(
        "job_a",
        t0 + TimeDelta::minutes(5),
        t0 + TimeDelta::seconds(30),
        60,
    );
    assert!(matches!(
        ledger.claim(&later, true, t0 + TimeDelta::seconds(30)).await.unwrap(),
        Claim::Busy(r) if r.id == first.id
    ));
    // A job that allows parallel runs is not held back.
    let parallel = new_run("job_a", t0 + TimeDelta::minutes(1), t0, 60);
    let Claim::Claimed(parallel_row) = ledger.claim(&parallel, false, t0).await.unwrap() else {
        panic!("parallel runs are allowed when asked for");
    };
    assert!(
        ledger
            .finish(
                parallel_row.id,
                RunEnd {
                    outcome: RunOutcome::Succeeded,
                    at: t0,
                    message: "ok"
                }
            )
            .await
            .unwrap()
    );

    // Renewal keeps the claim alive past its first lease.
    assert!(
        ledger
            .renew(first.id, t0 + TimeDelta::seconds(120))
            .await
            .unwrap()
    );
    assert!(matches!(
        ledger
            .claim(&later, true, t0 + TimeDelta::seconds(90))
            .await
            .unwrap(),
        Claim::Busy(_)
    ));

    // Once the lease has expired, the claim is abandoned and the job is free again.
    let after = t0 + TimeDelta::seconds(121);
    let Claim::Claimed(second) = ledger.claim(&later, true, after).await.unwrap() else {
        panic!("an expired claim frees the job");
    };
    let history = ledger.history(Some("job_a"), 10).await.unwrap();
    let abandoned = history.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(abandoned.outcome, RunOutcome::Abandoned);
    assert!(
        abandoned
            .message
            .as_deref()
            .unwrap()
            .contains("stopped renewing its lease"),
        "{abandoned:?}"
    );
    assert_eq!(abandoned.ended_at, Some(after));
    // The abandoned run cannot renew any more; its late finish still records the truth.
    assert!(
        !ledger
            .renew(first.id, after + TimeDelta::seconds(60))
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .finish(
                first.id,
                RunEnd {
                    outcome: RunOutcome::Failed,
                    at: after,
                    message: "late"
                }
            )
            .await
            .unwrap()
    );

    // Finishing, with a long message clipped.
    let long = "x".repeat(5000);
    assert!(
        ledger
            .finish(
                second.id,
                RunEnd {
                    outcome: RunOutcome::Failed,
                    at: after,
                    message: &long
                }
            )
            .await
            .unwrap()
    );
    let row = ledger.history(Some("job_a"), 1).await.unwrap().remove(0);
    assert_eq!(row.id, second.id);
    assert_eq!(row.outcome, RunOutcome::Failed);
    assert_eq!(row.lease_until, None);
    assert!(row.message.unwrap().chars().count() <= 2001);
    // The late failure came before the parallel run's success: one failure in a row.
    assert_eq!(ledger.consecutive_failures("job_a").await.unwrap(), 1);

    // A retry is another attempt of the same tick; the latest scheduled run is by tick, attempt.
    let retry = NewRun {
        kind: RunKind::Retry,
        attempt: 2,
        ..later.clone()
    };
    let Claim::Claimed(retried) = ledger.claim(&retry, true, after).await.unwrap() else {
        panic!("a retry claims attempt 2");
    };
    assert_eq!(
        ledger.last_scheduled("job_a").await.unwrap().unwrap().id,
        retried.id
    );
    assert!(
        ledger
            .finish(
                retried.id,
                RunEnd {
                    outcome: RunOutcome::Succeeded,
                    at: after,
                    message: "fine"
                }
            )
            .await
            .unwrap()
    );
    assert_eq!(ledger.consecutive_failures("job_a").await.unwrap(), 0);

    // Skips are recorded once, and do not count as failures.
    let skip = new_run("job_b", t0, t0, 60);
    assert!(ledger.record_skipped(&skip, "missed").await.unwrap());
    assert!(!ledger.record_skipped(&skip, "missed").await.unwrap());
    assert!(
        matches!(ledger.claim(&skip, true, t0).await.unwrap(), Claim::Taken(r) if r.outcome == RunOutcome::Skipped)
    );
    assert_eq!(ledger.consecutive_failures("job_b").await.unwrap(), 0);

    // Expired claims of any job are swept by abandon_expired.
    let c = new_run("job_c", t0, t0, 10);
    let Claim::Claimed(c_row) = ledger.claim(&c, true, t0).await.unwrap() else {
        panic!()
    };
    assert!(
        ledger
            .abandon_expired(t0 + TimeDelta::seconds(5))
            .await
            .unwrap()
            .is_empty()
    );
    let swept = ledger
        .abandon_expired(t0 + TimeDelta::seconds(11))
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].id, c_row.id);
    assert_eq!(swept[0].outcome, RunOutcome::Abandoned);
    assert_eq!(ledger.consecutive_failures("job_c").await.unwrap(), 1);

    // Queries for `crm jobs list` and `history`.
    let last: Vec<_> = ledger
        .last_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.code, r.outcome))
        .collect();
    assert_eq!(
        last,
        vec![
            ("job_a".to_owned(), RunOutcome::Succeeded),
            ("job_b".to_owned(), RunOutcome::Skipped),
            ("job_c".to_owned(), RunOutcome::Abandoned),
        ]
    );
    assert_eq!(ledger.history(None, 100).await.unwrap().len(), 6);
    assert_eq!(ledger.history(None, 2).await.unwrap().len(), 2);
    let newest_first = ledger.history(None, 100).await.unwrap();
    assert!(
        newest_first
            .windows(2)
            .all(|w| (w[0].started_at, w[0].id) >= (w[1].started_at, w[1].id))
    );

    // Bad input is refused with a clear error and writes nothing.
    let bad = new_run("", t0, t0, 60);
    let err = ledger.claim(&bad, true, t0).await.unwrap_err();
    assert!(err.to_string().contains("code"), "{err}");
    assert_eq!(ledger.history(None, 100).await.unwrap().len(), 6);
}

/// `n` connections (as `n` processes) on `url` each `claim` a different tick of one
/// non-parallel job at the same moment (process `i` gets its own connection and run); their
/// answers in process order.
async fn race_to_claim<T, Claiming>(
    url: &str,
    n: usize,
    claim: impl Fn(usize, Database, NewRun) -> Claiming,
) -> Vec<T>
where
    T: Send + 'static,
    Claiming: Future<Output = T> + Send + 'static,
{
    let t0 = utc(2026, 1, 5, 8, 0);
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let db = Database::connect(url).await.unwrap();
        let run = NewRun {
            host: format!("process-{i}"),
            ..new_run("exclusive", t0 + TimeDelta::minutes(i as i64), t0, 600)
        };
        let claiming = claim(i, db, run);
        let barrier = barrier.clone();
        tasks.push(async_std::task::spawn(async move {
            barrier.wait().await;
            claiming.await
        }));
    }
    futures::future::join_all(tasks).await
}

/// `n` processes claim ticks of one non-parallel job at the same moment: exactly one may run,
/// the others must see it busy.
async fn exclusive_claims_race(url: &str, n: usize) {
    let t0 = utc(2026, 1, 5, 8, 0);
    let claims = race_to_claim(url, n, |_, db, run| async move {
        db.claim(&run, true, t0).await.unwrap()
    })
    .await;
    let claimed = claims
        .iter()
        .filter(|c| matches!(c, Claim::Claimed(_)))
        .count();
    let busy = claims
        .iter()
        .filter(|c| matches!(c, Claim::Busy(_)))
        .count();
    assert_eq!((claimed, busy), (1, n - 1), "{claims:?}");
}

/// The one-step claim on a database ledger: it claims only when the full path would have had
/// nothing to abandon, nothing taken and nothing running in the way, writes nothing otherwise,
/// and reads the failures in a row as `consecutive_failures` does.
async fn claim_if_clear_suite(ledger: &dyn RunLedger) {
    let t0 = utc(2026, 1, 5, 8, 0);
    let run = new_run("job_a", t0, t0, 60);
    let (first, failures) = ledger
        .claim_if_clear(&run, true)
        .await
        .unwrap()
        .expect("a free key of a job with nothing running is claimed");
    assert_eq!(failures, 0);
    // The row it answers is the row the ledger holds.
    assert_eq!(ledger.history(None, 10).await.unwrap(), vec![first.clone()]);
    assert_eq!(first.outcome, RunOutcome::Running);

    // The same key: not claimed, nothing written (the full path says Taken).
    assert_eq!(ledger.claim_if_clear(&run, true).await.unwrap(), None);
    // Another tick of an exclusive job while it runs: not claimed (the full path says Busy);
    // of a job that runs in parallel: claimed.
    let later = new_run("job_a", t0 + TimeDelta::minutes(1), t0, 60);
    assert_eq!(ledger.claim_if_clear(&later, true).await.unwrap(), None);
    assert_eq!(ledger.history(None, 10).await.unwrap().len(), 1);
    let (parallel, _) = ledger
        .claim_if_clear(&later, false)
        .await
        .unwrap()
        .expect("a parallel run is claimed beside the running one");

    // Once a claim's lease ended, no job claims in one step until it is marked abandoned.
    let after = t0 + TimeDelta::seconds(61);
    let other = new_run("job_b", after, after, 60);
    assert_eq!(ledger.claim_if_clear(&other, true).await.unwrap(), None);
    assert_eq!(ledger.history(None, 10).await.unwrap().len(), 2);
    assert_eq!(ledger.abandon_expired(after).await.unwrap().len(), 2);
    ledger
        .finish(
            parallel.id,
            RunEnd {
                outcome: RunOutcome::Failed,
                at: after,
                message: "boom",
            },
        )
        .await
        .unwrap();

    // job_a: abandoned, failed; the failures in a row come with the claim.
    let third = new_run("job_a", t0 + TimeDelta::minutes(2), after, 60);
    let (row, failures) = ledger
        .claim_if_clear(&third, true)
        .await
        .unwrap()
        .expect("nothing in the way any more");
    assert_eq!(failures, 2);
    assert_eq!(
        failures,
        ledger.consecutive_failures("job_a").await.unwrap()
    );
    ledger
        .finish(
            row.id,
            RunEnd {
                outcome: RunOutcome::Succeeded,
                at: after,
                message: "ok",
            },
        )
        .await
        .unwrap();
    let fourth = new_run("job_a", t0 + TimeDelta::minutes(3), after, 60);
    let (_, failures) = ledger
        .claim_if_clear(&fourth, true)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(failures, 0, "a success ends the failures in a row");
}

#[async_std::test]
async fn the_sqlite_ledger_claims_in_one_step_only_when_nothing_is_in_the_way() {
    let db = TestDb::sqlite().await;
    claim_if_clear_suite(db.database()).await;
}

#[async_std::test]
async fn the_postgres_ledger_claims_in_one_step_only_when_nothing_is_in_the_way() {
    let db = TestDb::postgres().await;
    claim_if_clear_suite(db.database()).await;
}

/// As [`exclusive_claims_race`], half the processes claiming in one step and half by the full
/// path: still exactly one claims.
async fn exclusive_one_step_claims_race(url: &str, n: usize) {
    let t0 = utc(2026, 1, 5, 8, 0);
    let claims = race_to_claim(url, n, |i, db, run| async move {
        if i % 2 == 0 {
            db.claim_if_clear(&run, true).await.unwrap().is_some()
        } else {
            matches!(db.claim(&run, true, t0).await.unwrap(), Claim::Claimed(_))
        }
    })
    .await;
    assert_eq!(claims.iter().filter(|claimed| **claimed).count(), 1);
    let db = Database::connect(url).await.unwrap();
    assert_eq!(db.running(Some("exclusive")).await.unwrap().len(), 1);
}

#[async_std::test]
async fn concurrent_one_step_claims_of_a_non_parallel_job_on_postgres_let_one_run() {
    let db = TestDb::postgres().await;
    for _ in 0..5 {
        let fresh = db.another().await;
        exclusive_one_step_claims_race(fresh.url(), 4).await;
    }
}

#[async_std::test]
async fn concurrent_one_step_claims_of_a_non_parallel_job_on_sqlite_let_one_run() {
    for _ in 0..5 {
        let db = TestDb::sqlite().await;
        exclusive_one_step_claims_race(db.url(), 4).await;
    }
}

#[async_std::test]
async fn concurrent_claims_of_a_non_parallel_job_on_postgres_let_one_run() {
    let db = TestDb::postgres().await;
    for _ in 0..5 {
        let fresh = db.another().await;
        exclusive_claims_race(fresh.url(), 4).await;
    }
}

#[async_std::test]
async fn concurrent_claims_of_a_non_parallel_job_on_sqlite_let_one_run() {
    for _ in 0..5 {
        let db = TestDb::sqlite().await;
        exclusive_claims_race(db.url(), 3).await;
    }
}

#[async_std::test]
async fn the_in_memory_ledger_keeps_the_ledger_rules() {
    ledger_suite(&MemoryLedger::new()).await;
}

#[async_std::test]
async fn the_sqlite_ledger_keeps_the_ledger_rules() {
    let db = TestDb::sqlite().await;
    ledger_suite(db.database()).await;
}

#[async_std::test]
async fn the_postgres_ledger_keeps_the_ledger_rules() {
    let db = TestDb::postgres().await;
    ledger_suite(db.database()).await;
}

// ---------------------------------------------------------------------------------------------
// A simulated week

#[async_std::test]
async fn a_week_runs_each_contract_job_exactly_at_its_times() {
    let db = TestDb::sqlite().await;
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let sunday = (2026, 6, 7);
    let runs = simulate_week(Tz::UTC, sunday, ledger.clone()).await;
    assert_eq!(runs["log_crm_heartbeat"].len(), 2016);
    assert_eq!(runs["send_order_reminders"].len(), 7);
    assert_eq!(runs["update_low_stock"].len(), 14);
    assert_week(Tz::UTC, &runs, sunday, 2016, utc(2026, 6, 7, 2, 0));
    // Every run is in the ledger, succeeded.
    let history = ledger.history(None, 10_000).await.unwrap();
    assert_eq!(history.len(), 2016 + 7 + 14 + 1 + 1);
    assert!(history.iter().all(|r| r.outcome == RunOutcome::Succeeded));
}

#[async_std::test]
async fn a_spring_forward_week_runs_the_skipped_hours_jobs_once_right_after_the_change() {
    let zone = chrono_tz::America::New_York;
    // 8 March 2026: 02:00 EST becomes 03:00 EDT; the week has 167 hours.
    let sunday = (2026, 3, 8);
    let runs = simulate_week(zone, sunday, Arc::new(MemoryLedger::new())).await;
    // The Sunday 02:00 cleanup does not exist that day: it runs at 03:00 EDT (07:00 UTC).
    assert_week(zone, &runs, sunday, 167 * 12, utc(2026, 3, 8, 7, 0));
}

#[async_std::test]
async fn a_fall_back_week_runs_the_repeated_hours_fixed_jobs_once() {
    let zone = chrono_tz::America::New_York;
    // 1 November 2026: 02:00 EDT becomes 01:00 EST; the week has 169 hours.
    let sunday = (2026, 11, 1);
    let runs = simulate_week(zone, sunday, Arc::new(MemoryLedger::new())).await;
    assert_week(zone, &runs, sunday, 169 * 12, utc(2026, 11, 1, 7, 0));

    let london = chrono_tz::Europe::London;
    // 25 October 2026 in London: 02:00 BST becomes 01:00 GMT.
    let runs = simulate_week(london, (2026, 10, 25), Arc::new(MemoryLedger::new())).await;
    assert_week(
        london,
        &runs,
        (2026, 10, 25),
        169 * 12,
        utc(2026, 10, 25, 2, 0),
    );
}

// ---------------------------------------------------------------------------------------------
// Races: several runners over one database, each tick once.

/// `n` runners, each with its own connection pool to `url` (as separate processes would have),
/// race `run_due` on every minute of two hours; each job's ticks must run exactly once.
async fn race(url: &str, n: usize) {
    let start = utc(2026, 6, 1, 10, 0);
    let minutes = 120;
    let clock = ManualClock::new(start);
    let heartbeat = TestJob::cron("log_crm_heartbeat", "*/5 * * * *");
    let every_minute = TestJob::cron("every_minute", "* * * * *")
        .options(JobOptions::default().allow_parallel_runs(true));
    let counted = [heartbeat.calls(), every_minute.calls()];
    let body: Body = Arc::new(|_, ctx: JobContext| {
        async move {
            // Yield to the other runners mid-job.
            async_io::Timer::after(Duration::from_millis(2)).await;
            Ok(format!("ran {}", ctx.tick))
        }
        .boxed()
    });
    let shared = Arc::new((heartbeat, every_minute));
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let db = Database::connect(url).await.unwrap();
        let (hb, em) = (&shared.0, &shared.1);
        let jobs: Vec<Box<dyn CronJob>> = vec![
            Box::new(TestJob {
                code: hb.code.clone(),
                schedule: hb.schedule.clone(),
                options: hb.options.clone(),
                calls: hb.calls.clone(),
                count: hb.count.clone(),
                body: body.clone(),
            }),
            Box::new(TestJob {
                code: em.code.clone(),
                schedule: em.schedule.clone(),
                options: em.options.clone(),
                calls: em.calls.clone(),
                count: em.count.clone(),
                body: body.clone(),
            }),
        ];
        let runner = Runner::builder()
            .ledger(Arc::new(db))
            .clock(Arc::new(clock.clone()))
            .time_zone(Tz::UTC)
            .host(format!("runner-{i}"))
            .jobs(jobs)
            .build()
            .unwrap();
        let barrier = barrier.clone();
        let clock = clock.clone();
        tasks.push(async_std::task::spawn(async move {
            let mut ran = 0;
            for minute in 0..minutes {
                let now = start + TimeDelta::minutes(minute);
                if barrier.wait().await.is_leader() {
                    clock.set(now);
                }
                barrier.wait().await; // everyone sees the new time, then all go at once
                for report in runner.run_due(now).await {
                    match report.status {
                        RunStatus::Succeeded => ran += 1,
                        RunStatus::Taken => {}
                        other => panic!("unexpected {other:?}: {report:?}"),
                    }
                }
            }
            ran
        }));
    }
    let total: u32 = futures::future::join_all(tasks).await.into_iter().sum();
    let expected_heartbeats: Vec<_> = (0..minutes)
        .step_by(5)
        .map(|m| start + TimeDelta::minutes(m))
        .collect();
    let expected_minutes: Vec<_> = (0..minutes)
        .map(|m| start + TimeDelta::minutes(m))
        .collect();
    let mut heartbeats = ticks(&counted[0]);
    heartbeats.sort();
    let mut every = ticks(&counted[1]);
    every.sort();
    assert_eq!(
        heartbeats, expected_heartbeats,
        "each heartbeat tick exactly once"
    );
    assert_eq!(every, expected_minutes, "each minute tick exactly once");
    assert_eq!(
        total as usize,
        expected_heartbeats.len() + expected_minutes.len()
    );
}

#[async_std::test]
async fn three_runners_on_one_postgres_database_run_each_tick_once() {
    let db = TestDb::postgres().await;
    race(db.url(), 3).await;
}

#[async_std::test]
async fn two_runners_on_one_sqlite_file_run_each_tick_once() {
    let db = TestDb::sqlite().await;
    race(db.url(), 2).await;
}

// ---------------------------------------------------------------------------------------------
// A runner that dies mid-job

async fn dead_runner_claim_expires(url: &str) {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let (started_tx, started_rx) = async_std::channel::bounded::<()>(1);
    let hangs = TestJob::cron("log_crm_heartbeat", "*/5 * * * *").body(move |n, ctx| {
        let started = started_tx.clone();
        async move {
            if n == 0 {
                let _ = started.send(()).await;
                futures::future::pending::<()>().await; // the process is about to be killed
            }
            Ok(format!("ran {}", ctx.tick))
        }
        .boxed()
    });
    let calls = hangs.calls();
    let build = |job: TestJob, db: Database, host: &str| {
        Runner::builder()
            .ledger(Arc::new(db))
            .clock(Arc::new(clock.clone()))
            .time_zone(Tz::UTC)
            .lease(Duration::from_secs(30))
            .host(host)
            .job(Box::new(job))
            .build()
            .unwrap()
    };
    let doomed = build(hangs, Database::connect(url).await.unwrap(), "doomed");
    // Run until the job has started, then drop the runner's future mid-job: like kill -9, no
    // finish is recorded and the lease is no longer renewed.
    {
        let run = doomed.run_due(start);
        futures::pin_mut!(run);
        futures::select! {
            _ = run.fuse() => panic!("the hanging job cannot finish"),
            _ = started_rx.recv().fuse() => {}
        }
    }
    drop(doomed);

    let ledger = Database::connect(url).await.unwrap();
    let running = ledger.running(None).await.unwrap();
    assert_eq!(running.len(), 1, "the dead run still shows as running");

    let survivor_job = TestJob::cron("log_crm_heartbeat", "*/5 * * * *");
    let survivor_calls = survivor_job.calls();
    let alerts = Arc::new(Alerts::default());
    let survivor = Runner::builder()
        .ledger(Arc::new(ledger.clone()))
        .clock(Arc::new(clock.clone()))
        .alert_hook(alerts.clone())
        .time_zone(Tz::UTC)
        .lease(Duration::from_secs(30))
        .host("survivor")
        .job(Box::new(survivor_job))
        .build()
        .unwrap();
    // While the lease lives, the next tick waits (the job does not allow parallel runs).
    let t1 = start + TimeDelta::minutes(5);
    clock.set(start + TimeDelta::seconds(20));
    assert!(
        survivor
            .run_due(start + TimeDelta::seconds(20))
            .await
            .is_empty()
    );
    // The lease has run out by the next tick: the claim is abandoned, the tick runs.
    clock.set(t1);
    let reports = survivor.run_due(t1).await;
    assert_eq!(
        statuses(&reports),
        vec![("log_crm_heartbeat".to_owned(), RunStatus::Succeeded)]
    );
    assert_eq!(ticks(&calls), vec![start]);
    assert_eq!(ticks(&survivor_calls), vec![t1]);
    let history = ledger.history(Some("log_crm_heartbeat"), 10).await.unwrap();
    let outcomes: Vec<_> = history
        .iter()
        .map(|r| (r.tick, r.outcome, r.host.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (t1, RunOutcome::Succeeded, "survivor"),
            (start, RunOutcome::Abandoned, "doomed"),
        ]
    );
    // The crash counts as a failure: alerted once, and the next success is a recovery.
    let alerts = alerts.0.lock().unwrap().clone();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(
        matches!(&alerts[0], Alert::Failing { message, host, .. }
            if message.contains("stopped renewing its lease") && host == "doomed"),
        "{alerts:?}"
    );
    assert!(
        matches!(
            &alerts[1],
            Alert::Recovered {
                after_failures: 1,
                ..
            }
        ),
        "{alerts:?}"
    );
}

#[async_std::test]
async fn a_dead_runners_claim_expires_on_sqlite_and_the_next_tick_runs() {
    let db = TestDb::sqlite().await;
    dead_runner_claim_expires(db.url()).await;
}

#[async_std::test]
async fn a_dead_runners_claim_expires_on_postgres_and_the_next_tick_runs() {
    let db = TestDb::postgres().await;
    dead_runner_claim_expires(db.url()).await;
}

// ---------------------------------------------------------------------------------------------
// Failures, retries, alerts, panics, timeouts

fn runner_with(
    clock: &ManualClock,
    ledger: Arc<dyn RunLedger>,
    hook: Arc<dyn AlertHook>,
    jobs: Vec<TestJob>,
) -> Runner {
    runner_with_lease(clock, ledger, hook, jobs, crm_jobs::DEFAULT_LEASE)
}

/// As [`runner_with`], with a lease long enough for tests that jump the clock past a run that
/// is still going (a real clock would let the runner renew it on the way).
fn runner_with_lease(
    clock: &ManualClock,
    ledger: Arc<dyn RunLedger>,
    hook: Arc<dyn AlertHook>,
    jobs: Vec<TestJob>,
    lease: Duration,
) -> Runner {
    Runner::builder()
        .lease(lease)
        .ledger(ledger)
        .clock(Arc::new(clock.clone()))
        .alert_hook(hook)
        .time_zone(Tz::UTC)
        .jobs(jobs.into_iter().map(|j| Box::new(j) as Box<dyn CronJob>))
        .build()
        .unwrap()
}

#[async_std::test]
async fn a_failed_tick_is_retried_after_the_delay_until_it_succeeds() {
    let db = TestDb::sqlite().await;
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let start = utc(2026, 6, 1, 8, 0);
    let clock = ManualClock::new(start);
    let flaky = TestJob::cron("send_order_reminders", "0 8 * * *")
        .options(JobOptions::default().retry_after_failure(Some(Duration::from_secs(600))))
        .body(|n, _| {
            async move {
                if n < 2 {
                    Err(JobError::Endpoint("connection refused".into()))
                } else {
                    Ok("3 reminders".into())
                }
            }
            .boxed()
        });
    let calls = flaky.calls();
    let runner = runner_with(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![flaky],
    );

    let at = |minutes: i64| start + TimeDelta::minutes(minutes);
    let step = |m: i64| {
        clock.set(at(m));
        runner.run_due(at(m))
    };
    assert_eq!(
        statuses(&step(0).await),
        vec![("send_order_reminders".into(), RunStatus::Failed)]
    );
    assert!(step(5).await.is_empty(), "not before the retry delay");
    assert_eq!(runner.next_wakeup(at(5)).await, Some(at(10)));
    let retry = step(10).await;
    assert_eq!(retry[0].status, RunStatus::Failed);
    assert_eq!((retry[0].kind, retry[0].attempt), (Some(RunKind::Retry), 2));
    assert_eq!(
        statuses(&step(20).await),
        vec![("send_order_reminders".into(), RunStatus::Succeeded)]
    );
    assert!(step(30).await.is_empty(), "a succeeded tick is not retried");
    assert_eq!(
        ticks(&calls),
        vec![start, start, start],
        "the retries carry the tick"
    );

    let history: Vec<_> = ledger
        .history(Some("send_order_reminders"), 10)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|r| (r.kind, r.attempt, r.outcome, r.message.unwrap_or_default()))
        .collect();
    assert_eq!(
        history,
        vec![
            (
                RunKind::Scheduled,
                1,
                RunOutcome::Failed,
                "GraphQL endpoint not responding: connection refused".into()
            ),
            (
                RunKind::Retry,
                2,
                RunOutcome::Failed,
                "GraphQL endpoint not responding: connection refused".into()
            ),
            (
                RunKind::Retry,
                3,
                RunOutcome::Succeeded,
                "3 reminders".into()
            ),
        ]
    );
}

#[async_std::test]
async fn an_endless_retry_delay_means_no_retry_and_no_overflow() {
    let start = utc(2026, 6, 1, 8, 0);
    let clock = ManualClock::new(start);
    let failing = TestJob::cron("job", "0 8 * * *")
        .options(JobOptions::default().retry_after_failure(Some(Duration::MAX)))
        .body(|_, _| async { Err(JobError::Other("nope".into())) }.boxed());
    let runner = runner_with(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![failing],
    );
    assert_eq!(runner.run_due(start).await.len(), 1);
    let later = start + TimeDelta::hours(3);
    clock.set(later);
    assert!(runner.run_due(later).await.is_empty());
    assert_eq!(runner.next_wakeup(later).await, Some(utc(2026, 6, 2, 8, 0)));
}

#[async_std::test]
async fn without_a_retry_delay_a_failed_tick_waits_for_the_next_one() {
    let start = utc(2026, 6, 1, 8, 0);
    let clock = ManualClock::new(start);
    let failing = TestJob::cron("job", "0 8 * * *")
        .body(|_, _| async { Err(JobError::Other("nope".into())) }.boxed());
    let calls = failing.calls();
    let runner = runner_with(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![failing],
    );
    assert_eq!(runner.run_due(start).await.len(), 1);
    clock.set(start + TimeDelta::hours(3));
    assert!(runner.run_due(start + TimeDelta::hours(3)).await.is_empty());
    assert_eq!(ticks(&calls).len(), 1);
}

#[async_std::test]
async fn the_webhook_hears_of_the_nth_failure_once_and_of_the_recovery() {
    let (url, received) = webhook_listener(vec![]).await;
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .timeout(Duration::from_secs(5));
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let job = TestJob::cron("log_crm_heartbeat", "*/5 * * * *")
        .options(JobOptions::default().failures_before_alert(2))
        .body(|n, _| {
            async move {
                if n < 3 {
                    Err(JobError::Endpoint(format!("refused #{n}")))
                } else {
                    Ok("alive".into())
                }
            }
            .boxed()
        });
    let db = TestDb::sqlite().await;
    let runner = runner_with(
        &clock,
        Arc::new(db.database().clone()),
        Arc::new(hook),
        vec![job],
    );
    for i in 0..5 {
        let now = start + TimeDelta::minutes(5 * i);
        clock.set(now);
        runner.run_due(now).await;
    }
    let first = received.recv().await.unwrap();
    assert_eq!(first["event"], "failing");
    assert_eq!(first["code"], "log_crm_heartbeat");
    assert_eq!(first["consecutive_failures"], 2);
    assert_eq!(
        first["message"],
        "GraphQL endpoint not responding: refused #1"
    );
    let second = received.recv().await.unwrap();
    assert_eq!(second["event"], "recovered");
    assert_eq!(second["after_failures"], 3);
    assert!(
        received.try_recv().is_err(),
        "one alert per incident, one per recovery"
    );
}

#[async_std::test]
async fn the_webhook_is_retried_when_it_answers_an_error() {
    let (url, received) = webhook_listener(vec![503, 500]).await;
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .attempts(3)
        .pause(Duration::from_millis(10));
    let alert = Alert::Recovered {
        code: "job".into(),
        after_failures: 1,
        tick: utc(2026, 1, 1, 0, 0),
        host: "h".into(),
    };
    hook.alert(&alert).await.unwrap();
    assert_eq!(received.recv().await.unwrap()["event"], "recovered");

    let (url, _never) = webhook_listener(vec![500, 500]).await;
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .attempts(2)
        .pause(Duration::from_millis(10));
    let err = hook.alert(&alert).await.unwrap_err().to_string();
    assert!(
        err.contains("after 2 attempts") && err.contains("500"),
        "{err}"
    );
    assert!(WebhookAlert::new("ftp://example.com").is_err());
}

#[async_std::test]
async fn a_webhook_that_never_answers_times_out_on_every_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    async_std::task::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream); // read nothing, answer nothing
        }
    });
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .attempts(2)
        .timeout(Duration::from_millis(100))
        .pause(Duration::from_millis(10));
    let alert = Alert::Recovered {
        code: "job".into(),
        after_failures: 1,
        tick: utc(2026, 1, 1, 0, 0),
        host: "h".into(),
    };
    let err = hook.alert(&alert).await.unwrap_err().to_string();
    assert!(
        err.contains("after 2 attempts") && err.contains("no answer within"),
        "{err}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[async_std::test]
async fn a_panicking_job_is_a_recorded_failure_and_the_others_still_run() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let panics = TestJob::cron("panics", "*/5 * * * *")
        .body(|_, _| async { panic!("boom at the worst moment") }.boxed());
    let fine = TestJob::cron("fine", "*/5 * * * *");
    let ledger = Arc::new(MemoryLedger::new());
    let alerts = Arc::new(Alerts::default());
    let runner = runner_with(&clock, ledger.clone(), alerts.clone(), vec![panics, fine]);
    let reports = runner.run_due(start).await;
    assert_eq!(
        statuses(&reports),
        vec![
            ("fine".into(), RunStatus::Succeeded),
            ("panics".into(), RunStatus::Failed)
        ]
    );
    let row = ledger.history(Some("panics"), 1).await.unwrap().remove(0);
    assert_eq!(row.outcome, RunOutcome::Failed);
    assert_eq!(
        row.message.as_deref(),
        Some("panicked: boom at the worst moment")
    );
    assert_eq!(
        alerts.0.lock().unwrap().len(),
        1,
        "default: alert after 1 failure"
    );
}

#[async_std::test]
async fn a_job_past_its_timeout_is_stopped_and_recorded_as_failed() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let hangs = TestJob::cron("hangs", "*/5 * * * *")
        .options(JobOptions::default().timeout(Some(Duration::from_millis(50))))
        .body(|_, _| futures::future::pending().boxed());
    let ledger = Arc::new(MemoryLedger::new());
    let runner = runner_with(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![hangs],
    );
    let reports = runner.run_due(start).await;
    assert_eq!(reports[0].status, RunStatus::Failed);
    assert_eq!(reports[0].message, "timed out after 0.05s");
    assert!(
        reports[0].to_string().starts_with("hangs: failed in "),
        "{}",
        reports[0]
    );
    assert!(
        reports[0]
            .to_string()
            .ends_with(" ms: timed out after 0.05s")
    );
    let row = ledger.history(Some("hangs"), 1).await.unwrap().remove(0);
    assert_eq!(row.outcome, RunOutcome::Failed);
    assert!(ledger.running(None).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Misfires, parallel runs, run_now, the builder

#[async_std::test]
async fn after_downtime_the_latest_missed_tick_runs_once_or_is_skipped_by_policy() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let catch_up = TestJob::cron("catch_up", "*/5 * * * *");
    let skip = TestJob::cron("skip", "*/5 * * * *")
        .options(JobOptions::default().misfire(MisfirePolicy::Skip));
    let (catch_up_calls, skip_calls) = (catch_up.calls(), skip.calls());
    let ledger = Arc::new(MemoryLedger::new());
    let runner = runner_with(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![catch_up, skip],
    );
    runner.run_due(start).await;
    // Down for an hour; back at 11:02.
    let back = start + TimeDelta::minutes(62);
    clock.set(back);
    let reports = runner.run_due(back).await;
    assert_eq!(
        statuses(&reports),
        vec![
            ("catch_up".into(), RunStatus::Succeeded),
            ("skip".into(), RunStatus::Skipped)
        ]
    );
    assert_eq!(
        ticks(&catch_up_calls),
        vec![start, start + TimeDelta::minutes(60)]
    );
    assert_eq!(ticks(&skip_calls), vec![start]);
    let skipped = ledger.history(Some("skip"), 1).await.unwrap().remove(0);
    assert_eq!(skipped.outcome, RunOutcome::Skipped);
    assert!(
        skipped
            .message
            .unwrap()
            .contains("missed tick 2026-06-01 11:00 UTC")
    );
    // Both go on normally at the next tick.
    let next = start + TimeDelta::minutes(65);
    clock.set(next);
    assert_eq!(runner.run_due(next).await.len(), 2);
}

#[async_std::test]
async fn a_new_job_starts_with_its_next_on_time_tick_not_an_old_one() {
    let now = utc(2026, 6, 3, 12, 0); // a Wednesday
    let clock = ManualClock::new(now);
    let weekly = TestJob::cron("weekly", schedules::CLEAN_INACTIVE_CUSTOMERS);
    let calls = weekly.calls();
    let runner = runner_with(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![weekly],
    );
    assert!(runner.run_due(now).await.is_empty());
    assert_eq!(runner.next_wakeup(now).await, Some(utc(2026, 6, 7, 2, 0)));
    assert!(ticks(&calls).is_empty());
}

#[async_std::test]
async fn a_long_run_holds_its_next_tick_until_it_ends_unless_parallel_runs_are_allowed() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let (release_tx, release_rx) = async_std::channel::bounded::<()>(1);
    let (started_tx, started_rx) = async_std::channel::bounded::<()>(4);
    let slow_body = move |n: u32, _ctx: JobContext| {
        let release = release_rx.clone();
        let started = started_tx.clone();
        async move {
            let _ = started.send(()).await;
            if n == 0 {
                let _ = release.recv().await;
            }
            Ok("done".to_owned())
        }
        .boxed()
    };
    let slow = TestJob::cron("slow", "*/5 * * * *").body(slow_body);
    let calls = slow.calls();
    let hour = Duration::from_secs(3600);
    let runner = Arc::new(runner_with_lease(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![slow],
        hour,
    ));
    let first = async_std::task::spawn({
        let runner = runner.clone();
        async move { runner.run_due(start).await }
    });
    started_rx.recv().await.unwrap();
    let t1 = start + TimeDelta::minutes(5);
    clock.set(t1);
    assert_eq!(
        statuses(&runner.run_due(t1).await),
        vec![("slow".into(), RunStatus::Busy)]
    );
    release_tx.send(()).await.unwrap();
    assert_eq!(first.await[0].status, RunStatus::Succeeded);
    // The held tick runs as soon as the job is free (within the misfire grace).
    let t1b = t1 + TimeDelta::seconds(30);
    clock.set(t1b);
    assert_eq!(
        statuses(&runner.run_due(t1b).await),
        vec![("slow".into(), RunStatus::Succeeded)]
    );
    assert_eq!(ticks(&calls), vec![start, t1]);

    // With parallel runs allowed, the next tick starts beside the long one.
    let (release_tx, release_rx) = async_std::channel::bounded::<()>(1);
    let (started_tx, started_rx) = async_std::channel::bounded::<()>(4);
    let parallel = TestJob::cron("parallel", "*/5 * * * *")
        .options(JobOptions::default().allow_parallel_runs(true))
        .body(move |n, _| {
            let release = release_rx.clone();
            let started = started_tx.clone();
            async move {
                let _ = started.send(()).await;
                if n == 0 {
                    let _ = release.recv().await;
                }
                Ok("done".to_owned())
            }
            .boxed()
        });
    clock.set(start);
    let runner = Arc::new(runner_with_lease(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![parallel],
        hour,
    ));
    let first = async_std::task::spawn({
        let runner = runner.clone();
        async move { runner.run_due(start).await }
    });
    started_rx.recv().await.unwrap();
    clock.set(t1);
    assert_eq!(
        statuses(&runner.run_due(t1).await),
        vec![("parallel".into(), RunStatus::Succeeded)]
    );
    release_tx.send(()).await.unwrap();
    assert_eq!(first.await[0].status, RunStatus::Succeeded);
}

#[async_std::test]
async fn run_now_runs_a_due_job_refuses_one_not_due_and_forces_or_dry_runs_on_request() {
    let now = utc(2026, 6, 3, 12, 0);
    let clock = ManualClock::new(now);
    let job = TestJob::cron("weekly", schedules::CLEAN_INACTIVE_CUSTOMERS).body(|_, ctx| {
        async move {
            Ok(if ctx.dry_run {
                "would delete 2".to_owned()
            } else {
                "deleted 2".to_owned()
            })
        }
        .boxed()
    });
    let calls = job.calls();
    let ledger = Arc::new(MemoryLedger::new());
    let runner = runner_with(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![job],
    );

    match runner.run_now("weekly", false, false).await {
        Err(RunnerError::NotDue { next, .. }) => assert_eq!(next, Some(utc(2026, 6, 7, 2, 0))),
        other => panic!("{other:?}"),
    }
    let dry = runner.run_now("weekly", false, true).await.unwrap();
    assert_eq!(
        (dry.status, dry.kind, dry.message.as_str()),
        (
            RunStatus::Succeeded,
            Some(RunKind::DryRun),
            "would delete 2"
        )
    );
    let forced = runner.run_now("weekly", true, false).await.unwrap();
    assert_eq!(
        (forced.status, forced.kind, forced.message.as_str()),
        (RunStatus::Succeeded, Some(RunKind::Manual), "deleted 2")
    );
    assert_eq!(ticks(&calls), vec![now, now]);
    // A forced run does not use up the schedule's next tick.
    let sunday = utc(2026, 6, 7, 2, 0);
    clock.set(sunday);
    assert_eq!(runner.run_due(sunday).await.len(), 1);
    let err = runner
        .run_now("nope", true, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "no job with code 'nope' (known: weekly)");
    // Dry runs are recorded, but do not count as the job's last run.
    assert_eq!(ledger.history(Some("weekly"), 10).await.unwrap().len(), 3);
    assert_eq!(
        ledger.last_runs().await.unwrap()[0].kind,
        RunKind::Scheduled
    );
}

#[async_std::test]
async fn the_builder_refuses_duplicate_and_malformed_codes() {
    let err = Runner::builder()
        .time_zone(Tz::UTC)
        .job(Box::new(TestJob::cron("same", "* * * * *")))
        .job(Box::new(TestJob::cron("same", "0 * * * *")))
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "two jobs share the code 'same'");
    let err = Runner::builder()
        .time_zone(Tz::UTC)
        .job(Box::new(TestJob::cron("has space", "* * * * *")))
        .build()
        .unwrap_err();
    assert!(matches!(err, RunnerError::InvalidCode { .. }), "{err}");
    let err = Runner::builder()
        .time_zone(Tz::UTC)
        .lease(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert!(matches!(err, RunnerError::LeaseOutOfRange(_)));
    let err = Runner::builder()
        .time_zone(Tz::UTC)
        .lease(Duration::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(err, RunnerError::LeaseOutOfRange(_)));
}

#[async_std::test]
async fn schedules_without_a_zone_take_the_runners_and_explicit_zones_win() {
    let zone = chrono_tz::Europe::London;
    let runner = Runner::builder()
        .time_zone(zone)
        .job(Box::new(TestJob::cron("plain", "0 8 * * *")))
        .job(Box::new(TestJob::new(
            "tokyo",
            Schedule::cron("0 8 * * *")
                .unwrap()
                .in_time_zone(chrono_tz::Asia::Tokyo),
        )))
        .build()
        .unwrap();
    assert_eq!(runner.schedule_of("plain").unwrap().time_zone(), zone);
    assert_eq!(
        runner.schedule_of("tokyo").unwrap().time_zone(),
        chrono_tz::Asia::Tokyo
    );
}

// ---------------------------------------------------------------------------------------------
// The scheduler

/// A job that reports each tick it runs on a channel, and waits for `gate` (if any) first.
fn signalling_job(
    code: &str,
    expr: &str,
    gate: Option<async_std::channel::Receiver<()>>,
) -> (TestJob, async_std::channel::Receiver<DateTime<Utc>>) {
    let (tx, rx) = async_std::channel::unbounded();
    let job = TestJob::cron(code, expr).body(move |_, ctx| {
        let tx = tx.clone();
        let gate = gate.clone();
        async move {
            let _ = tx.send(ctx.tick).await;
            if let Some(gate) = gate {
                let _ = gate.recv().await;
            }
            Ok("done".to_owned())
        }
        .boxed()
    });
    (job, rx)
}

async fn wait_until_idle(runner: &Runner) {
    // The run is recorded just after the job returns; wait for the ledger to show it.
    for _ in 0..1000 {
        if runner.ledger().running(None).await.unwrap().is_empty() {
            return;
        }
        async_io::Timer::after(Duration::from_millis(1)).await;
    }
    panic!("the run never finished");
}

#[async_std::test]
async fn the_scheduler_runs_each_tick_as_the_clock_reaches_it_and_sleeps_in_between() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let (job, ticks_rx) = signalling_job("log_crm_heartbeat", "*/5 * * * *", None);
    let ledger = Arc::new(MemoryLedger::new());
    let runner = Arc::new(runner_with(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![job],
    ));
    let scheduler = crm_jobs::Scheduler::new(runner.clone());
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());

    assert_eq!(ticks_rx.recv().await.unwrap(), start);
    wait_until_idle(&runner).await;
    for minutes in [5, 10, 15] {
        async_io::Timer::after(Duration::from_millis(20)).await;
        assert!(ticks_rx.try_recv().is_err(), "nothing runs before its tick");
        clock.set(start + TimeDelta::minutes(minutes) - TimeDelta::seconds(1));
        async_io::Timer::after(Duration::from_millis(20)).await;
        assert!(ticks_rx.try_recv().is_err(), "nothing runs a second early");
        clock.set(start + TimeDelta::minutes(minutes));
        assert_eq!(
            ticks_rx.recv().await.unwrap(),
            start + TimeDelta::minutes(minutes)
        );
        wait_until_idle(&runner).await;
    }
    handle.shutdown(Duration::from_secs(5));
    let summary = task.await;
    assert_eq!(summary.unfinished, 0);
    // One look at the due jobs at start and one per tick: it slept in between, even when the
    // clock moved to a second before a tick.
    assert_eq!(summary.rounds, 4);
    assert_eq!(ledger.history(None, 100).await.unwrap().len(), 4);
}

#[async_std::test]
async fn shutdown_stops_new_runs_and_waits_for_running_ones_up_to_the_deadline() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let (release_tx, release_rx) = async_std::channel::bounded::<()>(1);
    let (job, ticks_rx) = signalling_job("slow", "*/5 * * * *", Some(release_rx));
    let ledger = Arc::new(MemoryLedger::new());
    let runner = Arc::new(runner_with_lease(
        &clock,
        ledger.clone(),
        Arc::new(Alerts::default()),
        vec![job],
        Duration::from_secs(3600),
    ));
    let scheduler = crm_jobs::Scheduler::new(runner.clone());
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());
    assert_eq!(ticks_rx.recv().await.unwrap(), start);

    handle.shutdown(Duration::from_secs(30));
    // No new runs once asked to stop, even when a tick comes.
    clock.set(start + TimeDelta::minutes(5));
    async_io::Timer::after(Duration::from_millis(30)).await;
    assert!(ticks_rx.try_recv().is_err());
    // The running one is let finish; then the scheduler returns.
    release_tx.send(()).await.unwrap();
    let summary = task.await;
    assert_eq!(summary.unfinished, 0);
    let runs = ledger.history(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, RunOutcome::Succeeded);

    // A run that outlasts the deadline is left behind, and said so.
    let clock = ManualClock::new(start);
    let (_never_released, gate) = async_std::channel::bounded::<()>(1);
    let (job, ticks_rx) = signalling_job("stuck", "*/5 * * * *", Some(gate));
    let runner = Arc::new(runner_with(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![job],
    ));
    let scheduler = crm_jobs::Scheduler::new(runner);
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());
    ticks_rx.recv().await.unwrap();
    handle.shutdown(Duration::from_millis(50));
    assert_eq!(task.await.unfinished, 1);
}

#[async_std::test]
async fn the_scheduler_runs_a_held_tick_as_soon_as_the_long_run_before_it_ends() {
    let start = utc(2026, 6, 1, 10, 0);
    let clock = ManualClock::new(start);
    let (release_tx, release_rx) = async_std::channel::bounded::<()>(1);
    let (tx, ticks_rx) = async_std::channel::unbounded();
    let job = TestJob::cron("slow", "*/5 * * * *").body(move |n, ctx| {
        let tx = tx.clone();
        let release = release_rx.clone();
        async move {
            let _ = tx.send(ctx.tick).await;
            if n == 0 {
                let _ = release.recv().await;
            }
            Ok("done".to_owned())
        }
        .boxed()
    });
    let runner = Arc::new(runner_with_lease(
        &clock,
        Arc::new(MemoryLedger::new()),
        Arc::new(Alerts::default()),
        vec![job],
        Duration::from_secs(3600),
    ));
    let scheduler = crm_jobs::Scheduler::new(runner.clone());
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());
    assert_eq!(ticks_rx.recv().await.unwrap(), start);
    // The next tick comes while the first run goes on: it waits (the job is not parallel)…
    let t1 = start + TimeDelta::minutes(5);
    clock.set(t1);
    async_io::Timer::after(Duration::from_millis(30)).await;
    assert!(ticks_rx.try_recv().is_err());
    // …and runs as soon as the first ends, without the clock moving.
    release_tx.send(()).await.unwrap();
    assert_eq!(ticks_rx.recv().await.unwrap(), t1);
    handle.shutdown(Duration::from_secs(5));
    assert_eq!(task.await.unfinished, 0);
}

// ---------------------------------------------------------------------------------------------
// Runs cut short by a killed process (kill -9: crm-cli/tests/kill9.rs)

/// A claim as a process killed -9 mid-run leaves it: running, its lease never renewed.
async fn dead_claim(ledger: &Database, code: &str, tick: DateTime<Utc>, kind: RunKind) {
    let run = NewRun {
        kind,
        host: "killed".to_owned(),
        ..new_run(code, tick, tick, 30)
    };
    assert!(matches!(
        ledger.claim(&run, true, tick).await.unwrap(),
        Claim::Claimed(_)
    ));
}

#[async_std::test]
async fn a_tick_whose_runner_was_killed_runs_again_as_the_next_attempt_once_its_lease_ends() {
    use crm_jobs::Clock as _;
    let db = TestDb::sqlite().await;
    let ledger = db.database().clone();
    let tick = utc(2026, 6, 1, 12, 0);
    dead_claim(&ledger, "log_crm_heartbeat", tick, RunKind::Scheduled).await;
    let job = TestJob::cron("log_crm_heartbeat", "*/5 * * * *");
    let calls = job.calls();
    let clock = ManualClock::new(tick + TimeDelta::seconds(10));
    let runner = Runner::builder()
        .ledger(Arc::new(ledger.clone()))
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .host("survivor")
        .job(Box::new(job))
        .build()
        .unwrap();
    // While the dead run's lease lives, the tick waits.
    assert!(runner.run_due(clock.now()).await.is_empty());
    // Then it is marked abandoned and the same tick runs again, as attempt 2, once.
    clock.set(tick + TimeDelta::seconds(31));
    let reports = runner.run_due(clock.now()).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, RunStatus::Succeeded);
    assert_eq!(
        (reports[0].kind, reports[0].attempt),
        (Some(RunKind::Retry), 2)
    );
    assert_eq!(ticks(&calls), vec![tick]);
    clock.set(tick + TimeDelta::seconds(50));
    assert!(runner.run_due(clock.now()).await.is_empty());
    let history: Vec<_> = ledger
        .history(Some("log_crm_heartbeat"), 10)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.tick, r.kind, r.attempt, r.outcome))
        .collect();
    assert_eq!(
        history,
        vec![
            (tick, RunKind::Retry, 2, RunOutcome::Succeeded),
            (tick, RunKind::Scheduled, 1, RunOutcome::Abandoned),
        ]
    );
    // A newer tick that has come meanwhile runs instead of the abandoned one.
    let next = tick + TimeDelta::minutes(5);
    dead_claim(&ledger, "log_crm_heartbeat", next, RunKind::Scheduled).await;
    clock.set(tick + TimeDelta::minutes(10));
    let reports = runner.run_due(clock.now()).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        (reports[0].tick, reports[0].attempt),
        (Some(clock.now()), 1)
    );
}

#[async_std::test]
async fn a_one_off_run_whose_runner_was_killed_runs_again_as_its_next_attempt() {
    use crm_jobs::{Clock as _, JobControl as _};
    let db = TestDb::sqlite().await;
    let ledger = db.database().clone();
    let start = utc(2026, 6, 1, 12, 0);
    let at = start + TimeDelta::minutes(1);
    let clock = ManualClock::new(start);
    let job = TestJob::cron("generate_crm_report", "0 6 * * 1");
    let calls = job.calls();
    let runner = Runner::builder()
        .ledger(Arc::new(ledger.clone()))
        .overrides(Arc::new(ledger.clone()))
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .host("survivor")
        .job(Box::new(job))
        .build()
        .unwrap();
    runner
        .schedule_run("generate_crm_report", at, "test")
        .await
        .unwrap();
    // Another process claimed the one-off and was killed; this one waits for its lease...
    dead_claim(&ledger, "generate_crm_report", at, RunKind::Manual).await;
    clock.set(at + TimeDelta::seconds(10));
    let reports = runner.run_due(clock.now()).await;
    assert!(
        reports.iter().all(|r| r.status == RunStatus::Busy),
        "{reports:?}"
    );
    assert!(ticks(&calls).is_empty());
    // ...then runs it as attempt 2, once.
    clock.set(at + TimeDelta::seconds(31));
    let reports = runner.run_due(clock.now()).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, RunStatus::Succeeded);
    assert_eq!(
        (reports[0].kind, reports[0].attempt),
        (Some(RunKind::Manual), 2)
    );
    assert_eq!(ticks(&calls), vec![at]);
    clock.set(at + TimeDelta::seconds(40));
    assert!(runner.run_due(clock.now()).await.is_empty());
    // A fresh process sees nothing left to do either.
    let fresh = Runner::builder()
        .ledger(Arc::new(ledger.clone()))
        .overrides(Arc::new(ledger.clone()))
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .job(Box::new(TestJob::cron("generate_crm_report", "0 6 * * 1")))
        .build()
        .unwrap();
    let state = fresh.state("generate_crm_report").await.unwrap();
    assert!(state.pending_runs.is_empty(), "{state:?}");
    assert!(fresh.run_due(clock.now()).await.is_empty());
}
