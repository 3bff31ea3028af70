//! Retention of the run ledger (`RunLedger::prune`, `Runner::prune_history`, the scheduler's
//! daily prune): on every ledger (memory, SQLite, PostgreSQL), what goes, what always stays, and
//! that a job's health, `jobs list` and pending one-off runs read the same afterwards. Time is a
//! manual clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::Database;
use crm_core::ledger::Retention;
use crm_core::testing::{TestDb, seed_finished_runs};
use crm_jobs::health::assess;
use crm_jobs::{
    ChangeRequest, Claim, CronJob, IncidentKind, JobContext, JobError, JobOptions, ManualClock,
    MemoryLedger, NewRun, OverrideChange, OverrideStore, RunEnd, RunKind, RunLedger, RunOutcome,
    Runner, Schedule, Scheduler, SeenIncident,
};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// "Now" in these tests.
fn now() -> DateTime<Utc> {
    utc(2026, 11, 26, 12, 30)
}

/// 12:00 UTC, `days` days before [`now`].
fn noon(days: i64) -> DateTime<Utc> {
    utc(2026, 11, 26, 12, 0) - TimeDelta::days(days)
}

const KEEP_DAYS: i64 = 90;

/// A daily job that does nothing (the runs are written into the ledger by the tests).
#[derive(Debug)]
struct Daily(&'static str);

#[async_trait]
impl CronJob for Daily {
    fn code(&self) -> &str {
        self.0
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("0 12 * * *").unwrap()
    }
    fn options(&self) -> JobOptions {
        JobOptions::default()
    }
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        Ok("ran".to_owned())
    }
}

fn runner(ledger: Arc<dyn RunLedger>, clock: &ManualClock) -> Runner {
    Runner::builder()
        .jobs(
            ["daily", "streak", "dormant", "stuck"]
                .map(|code| Box::new(Daily(code)) as Box<dyn CronJob>),
        )
        .ledger(ledger)
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .host("retention-test")
        .pid(1)
        .build()
        .unwrap()
}

fn new_run(code: &str, kind: RunKind, tick: DateTime<Utc>) -> NewRun {
    NewRun {
        code: code.to_owned(),
        tick,
        kind,
        attempt: 1,
        started_at: tick,
        lease_until: tick + TimeDelta::minutes(1),
        host: "writer".to_owned(),
        pid: 7,
    }
}

/// Claims and finishes one run that lasted `secs` seconds.
async fn ran(
    ledger: &dyn RunLedger,
    code: &str,
    kind: RunKind,
    tick: DateTime<Utc>,
    outcome: RunOutcome,
    secs: i64,
) {
    let Claim::Claimed(row) = ledger
        .claim(&new_run(code, kind, tick), false, tick)
        .await
        .unwrap()
    else {
        panic!("{code} at {tick} is free");
    };
    ledger
        .finish(
            row.id,
            RunEnd {
                outcome,
                at: tick + TimeDelta::seconds(secs),
                message: "done",
            },
        )
        .await
        .unwrap();
}

/// Two hundred days of history:
/// - `daily` ran every day at noon for 200 days (every tenth run failed), plus an old dry run;
/// - `streak` last succeeded 150 days ago and has failed every day since;
/// - `dormant` ran three times, 120 to 122 days ago;
/// - `stuck` has a run started 100 days ago that is still marked running;
/// - incidents: one resolved 100 days ago, one open since 95 days, one resolved 9 days ago.
async fn history(ledger: &dyn RunLedger) {
    // Oldest first, as time goes (the ledger's "latest" is by id, i.e. by insertion).
    for d in (0..200).rev() {
        let outcome = if d % 10 == 5 {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        };
        ran(
            ledger,
            "daily",
            RunKind::Scheduled,
            noon(d),
            outcome,
            d % 7 + 1,
        )
        .await;
    }
    ran(
        ledger,
        "daily",
        RunKind::DryRun,
        noon(150) + TimeDelta::hours(3),
        RunOutcome::Succeeded,
        1,
    )
    .await;
    ran(
        ledger,
        "streak",
        RunKind::Scheduled,
        noon(150),
        RunOutcome::Succeeded,
        2,
    )
    .await;
    for d in (0..150).rev() {
        ran(
            ledger,
            "streak",
            RunKind::Scheduled,
            noon(d),
            RunOutcome::Failed,
            3,
        )
        .await;
    }
    for d in (120..123).rev() {
        ran(
            ledger,
            "dormant",
            RunKind::Scheduled,
            noon(d),
            RunOutcome::Succeeded,
            4,
        )
        .await;
    }
    let mut stuck = new_run("stuck", RunKind::Scheduled, noon(100));
    stuck.lease_until = now() + TimeDelta::days(1);
    assert!(matches!(
        ledger.claim(&stuck, false, noon(100)).await.unwrap(),
        Claim::Claimed(_)
    ));
    ledger
        .open_incident(SeenIncident {
            code: "daily",
            kind: IncidentKind::Late,
            tick: noon(100),
            at: noon(100),
        })
        .await
        .unwrap();
    ledger
        .resolve_incident("daily", noon(100) + TimeDelta::hours(1))
        .await
        .unwrap();
    ledger
        .open_incident(SeenIncident {
            code: "streak",
            kind: IncidentKind::Missed,
            tick: noon(95),
            at: noon(95),
        })
        .await
        .unwrap();
    ledger
        .open_incident(SeenIncident {
            code: "dormant",
            kind: IncidentKind::Late,
            tick: noon(10),
            at: noon(10),
        })
        .await
        .unwrap();
    ledger.resolve_incident("dormant", noon(9)).await.unwrap();
}

async fn count(ledger: &dyn RunLedger, code: &str) -> usize {
    ledger.history(Some(code), 10_000).await.unwrap().len()
}

/// What every ledger must do; `one_off_runs` is what the ledger's own one-off runs add.
async fn retention_suite(ledger: Arc<dyn RunLedger>, extra_runs: u64, one_off_runs: u64) {
    let clock = ManualClock::new(now());
    let runner = runner(ledger.clone(), &clock);
    history(ledger.as_ref()).await;

    let health_before = assess(&runner, now()).await.unwrap();
    let recent_before = ledger.recent_runs(20).await.unwrap();
    let last_before = ledger.last_runs().await.unwrap();
    let running_before = ledger.running(None).await.unwrap();
    assert_eq!(ledger.consecutive_failures("streak").await.unwrap(), 150);

    // Small batches, so that several statements run.
    let retention = Retention::before(now() - TimeDelta::days(KEEP_DAYS))
        .keep_per_job(20)
        .batch(7)
        .pause(Duration::ZERO);
    let pruned = ledger.prune(&retention).await.unwrap();

    // daily: days 90..199 (110 runs) and the dry run; streak: failures of days 90..149.
    assert_eq!(pruned.runs, 110 + 1 + 60 + extra_runs, "{pruned:?}");
    assert_eq!(pruned.one_off_runs, one_off_runs);
    assert_eq!(
        pruned.incidents, 1,
        "only the incident resolved 100 days ago"
    );
    assert_eq!(count(ledger.as_ref(), "daily").await, 90, "days 0..89");
    assert_eq!(
        count(ledger.as_ref(), "streak").await,
        91,
        "90 days of failures and the success 150 days ago, however old"
    );
    assert_eq!(
        count(ledger.as_ref(), "dormant").await,
        3,
        "a job's latest runs stay"
    );
    assert_eq!(ledger.running(None).await.unwrap(), running_before);
    let open: Vec<String> = ledger
        .open_incidents()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.code)
        .collect();
    assert_eq!(open, ["streak"]);

    // What health, `jobs list` and alerting read is the same.
    assert_eq!(assess(&runner, now()).await.unwrap(), health_before);
    assert_eq!(ledger.recent_runs(20).await.unwrap(), recent_before);
    assert_eq!(ledger.last_runs().await.unwrap(), last_before);
    let streak = ledger.consecutive_failures("streak").await.unwrap();
    assert!(
        streak >= 20,
        "the streak stays over any alert threshold: {streak}"
    );

    // Pruning again finds nothing; new runs get fresh ids.
    let again = ledger.prune(&retention).await.unwrap();
    assert_eq!((again.runs, again.one_off_runs, again.incidents), (0, 0, 0));
    let max_id = ledger
        .history(None, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .max()
        .unwrap();
    let Claim::Claimed(fresh) = ledger
        .claim(&new_run("daily", RunKind::Manual, now()), false, now())
        .await
        .unwrap()
    else {
        panic!("a new run after the prune is claimed");
    };
    assert!(fresh.id > max_id);
}

#[async_std::test]
async fn the_in_memory_ledger_prunes_old_runs_and_keeps_what_health_reads() {
    retention_suite(Arc::new(MemoryLedger::new()), 0, 0).await;
}

/// The SQL ledgers also hold one-off runs: one done 100 days ago goes with its run; one still
/// pending (its job paused since) stays, and stays pending.
async fn sql_suite(t: TestDb) {
    let db = t.database().clone();
    let old = noon(100) + TimeDelta::minutes(30);
    change(&db, "daily", OverrideChange::RunAt(old), noon(101)).await;
    ran(&db, "daily", RunKind::Manual, old, RunOutcome::Succeeded, 1).await;
    let pending_at = noon(95) + TimeDelta::minutes(30);
    change(&db, "dormant", OverrideChange::Disable, noon(96)).await;
    change(&db, "dormant", OverrideChange::RunAt(pending_at), noon(96)).await;
    let pending_before = db.snapshot().await.unwrap().pending;
    assert_eq!(pending_before.len(), 1);
    assert_eq!(pending_before[0].at, pending_at);

    retention_suite(Arc::new(db.clone()), 1, 1).await;

    let pending_after = db.snapshot().await.unwrap().pending;
    assert_eq!(
        pending_after, pending_before,
        "no one-off run comes back, the waiting one stays"
    );
}

#[async_std::test]
async fn the_sqlite_ledger_prunes_old_runs_and_keeps_what_health_reads() {
    sql_suite(TestDb::sqlite().await).await;
}

#[async_std::test]
async fn the_postgres_ledger_prunes_old_runs_and_keeps_what_health_reads() {
    sql_suite(TestDb::postgres().await).await;
}

/// How many runs the ledger holds.
async fn total(db: &Database) -> usize {
    db.history(None, 10_000).await.unwrap().len()
}

async fn wait_for_total(db: &Database, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = total(db).await;
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger still holds {have} runs, not {want}"
        );
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
}

#[async_std::test]
async fn the_scheduler_prunes_at_start_and_again_a_day_later() {
    let t = TestDb::sqlite().await;
    let db = t.database().clone();
    let clock = ManualClock::new(now());
    // 200 days of hourly runs of a job the runner does not know (e.g. one retired since).
    let seeded = seed_finished_runs(
        &db,
        "retired",
        4_800,
        now() - TimeDelta::days(200),
        TimeDelta::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(seeded, 4_800);
    let runner = Arc::new(runner(Arc::new(db.clone()), &clock));
    let scheduler =
        Scheduler::new(runner).retention(Some(Duration::from_secs(KEEP_DAYS as u64 * 86_400)));
    let handle = scheduler.handle();
    let task = async_std::task::spawn(scheduler.run());

    // At start: the last 90 days stay (2,160 hourly runs), the rest goes.
    wait_for_total(&db, 2_160).await;
    // A day later (by the scheduler's clock) one more day of runs has aged out.
    clock.set(now() + TimeDelta::days(1) - TimeDelta::seconds(1));
    async_io::Timer::after(Duration::from_millis(200)).await;
    assert_eq!(total(&db).await, 2_160, "no second prune within the day");
    clock.set(now() + TimeDelta::days(1));
    wait_for_total(&db, 2_160 - 24).await;

    handle.shutdown(Duration::from_secs(5));
    assert_eq!(task.await.unfinished, 0);
}

/// Prunes `rows` seeded runs (five jobs, one run every ten minutes each, years of history)
/// while a writer claims and finishes runs as a runner does, and reports the figures.
async fn prune_under_writes(t: TestDb, rows: u64) {
    let db = t.database().clone();
    let start = Instant::now();
    let per_code = rows / 5;
    let first = now() - TimeDelta::minutes(10) * (per_code as i32);
    for code in ["a", "b", "c", "d", "e"] {
        seed_finished_runs(&db, code, per_code, first, TimeDelta::minutes(10))
            .await
            .unwrap();
    }
    let seeded = start.elapsed();
    // Runs that started 90 days ago or later stay: 90 days of ten-minute runs per job.
    let kept_per_code = (KEEP_DAYS * 24 * 6) as u64;
    let expected = 5 * per_code.saturating_sub(kept_per_code);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        async_std::task::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut tick = now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tick += TimeDelta::seconds(1);
                let began = Instant::now();
                let run = new_run("writer", RunKind::Scheduled, tick);
                match db.claim(&run, true, tick).await {
                    Ok(Claim::Claimed(row)) => {
                        if let Err(e) = db
                            .finish(
                                row.id,
                                RunEnd {
                                    outcome: RunOutcome::Succeeded,
                                    at: tick,
                                    message: "ok",
                                },
                            )
                            .await
                        {
                            errors.push(e.to_string());
                        }
                    }
                    Ok(other) => errors.push(format!("unexpected claim answer {other:?}")),
                    Err(e) => errors.push(e.to_string()),
                }
                latencies.push(began.elapsed());
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
            (latencies, errors)
        })
    };
    async_io::Timer::after(Duration::from_millis(300)).await;
    let began = Instant::now();
    let pruned = db
        .prune(&Retention::before(now() - TimeDelta::days(KEEP_DAYS)))
        .await
        .unwrap();
    let took = began.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut latencies, errors) = writer.await;
    assert!(errors.is_empty(), "concurrent writes failed: {errors:?}");
    assert_eq!(pruned.runs, expected, "{pruned:?}");
    assert_eq!(
        db.history(Some("writer"), 10_000).await.unwrap().len(),
        latencies.len(),
        "every run the writer wrote is there"
    );
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let max = *latencies.last().unwrap();
    eprintln!(
        "{}: seeded {rows} runs in {:.1} s; pruned {} runs in {} batches in {:.1} s \
         ({:.0} rows/s); meanwhile {} claim+finish pairs, none failed, latency p50 {} ms, \
         p99 {} ms, max {} ms",
        db.backend_name(),
        seeded.as_secs_f64(),
        pruned.runs,
        pruned.batches,
        took.as_secs_f64(),
        pruned.runs as f64 / took.as_secs_f64(),
        latencies.len(),
        pct(50).as_millis(),
        pct(99).as_millis(),
        max.as_millis()
    );
    assert!(
        max < Duration::from_secs(5),
        "a writer waited {max:?} for the prune"
    );
}

/// Rows for the long prune tests: `CRM_PRUNE_ROWS` (1,000,000 for the measured figures), else
/// 200,000.
fn prune_rows() -> u64 {
    std::env::var("CRM_PRUNE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

#[async_std::test]
async fn a_large_sqlite_prune_leaves_concurrent_claims_working() {
    if !crm_core::testing::require(
        "a_large_sqlite_prune_leaves_concurrent_claims_working",
        crm_core::testing::Need::Long,
    ) {
        return;
    }
    prune_under_writes(TestDb::sqlite().await, prune_rows()).await;
}

#[async_std::test]
async fn a_large_postgres_prune_leaves_concurrent_claims_working() {
    if !crm_core::testing::require(
        "a_large_postgres_prune_leaves_concurrent_claims_working",
        crm_core::testing::Need::Long,
    ) {
        return;
    }
    prune_under_writes(TestDb::postgres().await, prune_rows()).await;
}

/// Two prunes at once (two schedulers' daily prunes meeting) delete every old run once
/// between them, and neither fails.
async fn two_prunes_at_once(t: TestDb) {
    let db = t.database().clone();
    let first = now() - TimeDelta::minutes(10) * 20_000;
    seed_finished_runs(&db, "a", 20_000, first, TimeDelta::minutes(10))
        .await
        .unwrap();
    let expected = 20_000 - (KEEP_DAYS * 24 * 6) as u64;
    let retention = Retention::before(now() - TimeDelta::days(KEEP_DAYS))
        .batch(500)
        .pause(Duration::from_millis(1));
    let (a, b) = futures::join!(db.prune(&retention), db.prune(&retention));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.runs + b.runs, expected, "{a:?} {b:?}");
    let again = db.prune(&retention).await.unwrap();
    assert_eq!(again.runs, 0);
}

#[async_std::test]
async fn two_prunes_at_once_on_sqlite_delete_every_old_run_once() {
    two_prunes_at_once(TestDb::sqlite().await).await;
}

#[async_std::test]
async fn two_prunes_at_once_on_postgres_delete_every_old_run_once() {
    two_prunes_at_once(TestDb::postgres().await).await;
}

/// Applies `change` to the job `code` at `at`, as the test's operator.
async fn change(
    db: &crm_core::Database,
    code: &str,
    change: OverrideChange,
    at: chrono::DateTime<Utc>,
) {
    let request = ChangeRequest {
        code,
        change: &change,
        actor: "test",
        at,
    };
    db.apply(request).await.unwrap();
}
