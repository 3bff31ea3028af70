//! Run-time schedule overrides against the real databases (SQLite files and PostgreSQL) and the
//! in-memory store: pause, resume, replacement schedules and one-off runs over a simulated week
//! (a manual clock, no sleeping), live pickup by a running scheduler, and two runners on one
//! PostgreSQL with a change in between.

#[path = "support/drive.rs"]
mod drive;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::testing::TestDb;
use crm_core::{CoreError, Database};
use crm_jobs::{
    CronJob, JobContext, JobControl, JobError, ManualClock, MemoryLedger, MemoryOverrides,
    OverrideStore, RunKind, RunLedger, RunStatus, Runner, Schedule, Scheduler,
};
use drive::drive;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

type Calls = Arc<Mutex<Vec<DateTime<Utc>>>>;

/// A job that records the tick of every run.
struct Recording {
    code: &'static str,
    schedule: &'static str,
    calls: Calls,
}

#[async_trait]
impl CronJob for Recording {
    fn code(&self) -> &str {
        self.code
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron(self.schedule).unwrap()
    }
    async fn run(&self, ctx: &JobContext) -> Result<String, JobError> {
        self.calls.lock().unwrap().push(ctx.tick);
        Ok(format!("ran {}", ctx.tick))
    }
}

fn job(code: &'static str, schedule: &'static str) -> (Box<dyn CronJob>, Calls) {
    let calls = Calls::default();
    let job = Recording {
        code,
        schedule,
        calls: calls.clone(),
    };
    (Box::new(job), calls)
}

fn sorted(calls: &Calls) -> Vec<DateTime<Utc>> {
    let mut ticks = calls.lock().unwrap().clone();
    ticks.sort();
    ticks
}

fn runner(
    ledger: Arc<dyn RunLedger>,
    overrides: Arc<dyn OverrideStore>,
    clock: &ManualClock,
    pid: u32,
    jobs: Vec<Box<dyn CronJob>>,
) -> Runner {
    Runner::builder()
        .ledger(ledger)
        .overrides(overrides)
        .clock(Arc::new(clock.clone()))
        .time_zone(Tz::UTC)
        .pid(pid)
        .jobs(jobs)
        .build()
        .unwrap()
}

/// Every hour from `from` (inclusive) to `to` (exclusive).
fn hourly(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut ticks = Vec::new();
    let mut t = from;
    while t < to {
        ticks.push(t);
        t += TimeDelta::hours(1);
    }
    ticks
}

/// A week from Monday 1 June 2026 00:00 UTC with an hourly job and a daily 08:00 job; the
/// operator pauses and resumes the hourly one, replaces the daily one's schedule and restores
/// it, and asks for a one-off run. Each job runs exactly the ticks it should, nothing else.
async fn week_of_overrides(ledger: Arc<dyn RunLedger>, overrides: Arc<dyn OverrideStore>) {
    let start = utc(2026, 6, 1, 0, 0); // a Monday
    let end = utc(2026, 6, 8, 0, 0);
    let clock = ManualClock::new(start);
    let (hourly_job, hourly_calls) = job("hourly", "0 * * * *");
    let (daily_job, daily_calls) = job("daily", "0 8 * * *");
    let runner = runner(
        ledger.clone(),
        overrides.clone(),
        &clock,
        1,
        vec![hourly_job, daily_job],
    );
    // (instant, change) in order; the runner is driven up to each, then it is made.
    let pause = utc(2026, 6, 1, 12, 30);
    let resume = utc(2026, 6, 2, 12, 30);
    let replace = utc(2026, 6, 3, 10, 0);
    let one_off_asked = utc(2026, 6, 4, 10, 0);
    let one_off = utc(2026, 6, 4, 15, 45);
    let restore = utc(2026, 6, 5, 10, 0);

    drive(&runner, &clock, start, pause).await;
    clock.set(pause);
    let state = runner
        .set_enabled("hourly", false, "cli:test")
        .await
        .unwrap();
    assert!(!state.enabled);
    assert_eq!(state.next_run, None, "a paused job has no next run");

    drive(&runner, &clock, pause, resume).await;
    clock.set(resume);
    let state = runner
        .set_enabled("hourly", true, "cli:test")
        .await
        .unwrap();
    assert_eq!(state.next_run, Some(utc(2026, 6, 2, 13, 0)));

    drive(&runner, &clock, resume, replace).await;
    clock.set(replace);
    let state = runner
        .set_schedule("daily", Some("0 20 * * *"), "api")
        .await
        .unwrap();
    assert!(state.overridden);
    assert_eq!(state.schedule, "0 20 * * * in UTC");
    assert_eq!(state.default_schedule, "0 8 * * * in UTC");
    assert_eq!(state.next_run, Some(utc(2026, 6, 3, 20, 0)));

    drive(&runner, &clock, replace, one_off_asked).await;
    clock.set(one_off_asked);
    let state = runner
        .schedule_run("hourly", one_off, "cli:test")
        .await
        .unwrap();
    assert_eq!(state.pending_runs, vec![one_off]);

    drive(&runner, &clock, one_off_asked, restore).await;
    clock.set(restore);
    let state = runner.set_schedule("daily", None, "api").await.unwrap();
    assert!(!state.overridden);
    assert!(state.pending_runs.is_empty());

    drive(&runner, &clock, restore, end).await;

    let mut expected_hourly = hourly(start, utc(2026, 6, 1, 13, 0));
    expected_hourly.extend(hourly(utc(2026, 6, 2, 13, 0), end));
    expected_hourly.push(one_off);
    expected_hourly.sort();
    assert_eq!(sorted(&hourly_calls), expected_hourly);
    let expected_daily = vec![
        utc(2026, 6, 1, 8, 0),
        utc(2026, 6, 2, 8, 0),
        utc(2026, 6, 3, 8, 0),
        utc(2026, 6, 3, 20, 0),
        utc(2026, 6, 4, 20, 0),
        // Friday 08:00 fell under the replacement; the code's schedule is back from 10:00.
        utc(2026, 6, 6, 8, 0),
        utc(2026, 6, 7, 8, 0),
    ];
    assert_eq!(sorted(&daily_calls), expected_daily);

    // The one-off run is in the ledger as a manual run at its instant, once.
    let history = ledger.history(Some("hourly"), 1000).await.unwrap();
    let manual: Vec<_> = history
        .iter()
        .filter(|r| r.kind == RunKind::Manual)
        .map(|r| r.tick)
        .collect();
    assert_eq!(manual, vec![one_off]);

    // Who changed what, and when, newest first.
    let audit = overrides.audit(None, 100).await.unwrap();
    let seen: Vec<_> = audit
        .iter()
        .map(|e| {
            (
                e.at,
                e.actor.as_str(),
                e.code.as_str(),
                e.action.as_str(),
                e.detail.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (restore, "api", "daily", "default_schedule", None),
            (
                one_off_asked,
                "cli:test",
                "hourly",
                "run_at",
                Some(one_off.to_rfc3339())
            ),
            (
                replace,
                "api",
                "daily",
                "schedule",
                Some("0 20 * * *".to_owned())
            ),
            (resume, "cli:test", "hourly", "enable", None),
            (pause, "cli:test", "hourly", "disable", None),
        ]
    );
    assert_eq!(overrides.version().await.unwrap(), 5);
}

#[async_std::test]
async fn a_week_of_overrides_in_memory_changes_exactly_the_ticks_it_should() {
    week_of_overrides(
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryOverrides::new()),
    )
    .await;
}

#[async_std::test]
async fn a_week_of_overrides_on_sqlite_changes_exactly_the_ticks_it_should() {
    let db = TestDb::sqlite().await;
    let database = Arc::new(db.database().clone());
    week_of_overrides(database.clone(), database).await;
}

#[async_std::test]
async fn a_week_of_overrides_on_postgres_changes_exactly_the_ticks_it_should() {
    let db = TestDb::postgres().await;
    let database = Arc::new(db.database().clone());
    week_of_overrides(database.clone(), database).await;
}

/// Bad changes are refused with the reason, and nothing is stored or counted.
async fn bad_changes_are_refused(database: Database) {
    let store: Arc<dyn OverrideStore> = Arc::new(database.clone());
    let clock = ManualClock::new(utc(2026, 6, 1, 0, 0));
    let (daily, _) = job("daily", "0 8 * * *");
    let runner = runner(Arc::new(database), store.clone(), &clock, 1, vec![daily]);

    let err = runner
        .set_schedule("daily", Some("61 * * * *"), "api")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::Validation {
                field: "schedule",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("'61 * * * *'"), "{err}");

    let err = runner
        .set_schedule("daily", Some("0 8 * * * in Mars/Olympus"), "api")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");

    let err = runner
        .set_enabled("nightly", false, "api")
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NotFound { entity: "job", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("'nightly'"), "{err}");
    assert!(
        err.to_string().contains("daily"),
        "names the known codes: {err}"
    );

    let err = runner
        .schedule_run("daily", utc(2026, 5, 1, 0, 0), "api")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in the past"), "{err}");

    assert_eq!(store.version().await.unwrap(), 0);
    assert!(store.audit(None, 10).await.unwrap().is_empty());
    assert!(store.snapshot().await.unwrap().overrides.is_empty());
    assert_eq!(
        runner.effective_schedule("daily").unwrap().to_string(),
        "0 8 * * * in UTC"
    );
}

#[async_std::test]
async fn bad_expressions_and_unknown_codes_are_refused_on_sqlite_and_nothing_is_stored() {
    let db = TestDb::sqlite().await;
    bad_changes_are_refused(db.database().clone()).await;
}

#[async_std::test]
async fn bad_expressions_and_unknown_codes_are_refused_on_postgres_and_nothing_is_stored() {
    let db = TestDb::postgres().await;
    bad_changes_are_refused(db.database().clone()).await;
}

/// Waits (really) until `check` holds, at most 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A scheduler running on one connection pool obeys changes another process makes through its
/// own pool, without a restart: a one-off run, a new schedule, a pause.
async fn live_pickup(url: &str) {
    let start = utc(2026, 6, 1, 0, 30);
    let clock = ManualClock::new(start);
    let (daily, calls) = job("daily", "0 8 * * *");
    let ours = Database::connect(url).await.unwrap();
    let scheduled = Arc::new(runner(
        Arc::new(ours.clone()),
        Arc::new(ours),
        &clock,
        1,
        vec![daily],
    ));
    let scheduler = Scheduler::new(scheduled.clone()).override_poll(Duration::from_millis(50));
    let handle = scheduler.handle();
    let running = async_std::task::spawn(scheduler.run());

    // "Another process": its own pool, its own runner (it never runs anything here).
    let theirs = Database::connect(url).await.unwrap();
    let (daily_too, _) = job("daily", "0 8 * * *");
    let operator = runner(
        Arc::new(theirs.clone()),
        Arc::new(theirs),
        &clock,
        2,
        vec![daily_too],
    );

    // A one-off run now: the sleeping scheduler (next tick 08:00) runs it at once.
    operator
        .schedule_run("daily", start, "cli:other")
        .await
        .unwrap();
    eventually("the one-off run ran", || sorted(&calls) == vec![start]).await;

    // A new schedule: every minute. The scheduler plans again and runs 00:31 when it comes.
    operator
        .set_schedule("daily", Some("every 1 minute"), "cli:other")
        .await
        .unwrap();
    eventually("the scheduler saw the new schedule", || {
        scheduled
            .effective_schedule("daily")
            .is_some_and(|s| s.to_string().starts_with("every 1 minute"))
    })
    .await;
    clock.set(utc(2026, 6, 1, 0, 31));
    eventually("the 00:31 tick ran", || {
        sorted(&calls) == vec![start, utc(2026, 6, 1, 0, 31)]
    })
    .await;

    // A pause: 00:32 and later do not run.
    operator
        .set_enabled("daily", false, "cli:other")
        .await
        .unwrap();
    eventually("the scheduler saw the pause", || {
        scheduled.is_enabled("daily") == Some(false)
    })
    .await;
    clock.set(utc(2026, 6, 1, 0, 35));
    async_io::Timer::after(Duration::from_millis(200)).await;
    handle.shutdown(Duration::from_secs(5));
    let summary = running.await;
    assert_eq!(summary.unfinished, 0);
    assert_eq!(sorted(&calls), vec![start, utc(2026, 6, 1, 0, 31)]);
}

#[async_std::test]
async fn a_live_scheduler_on_sqlite_picks_up_changes_made_by_another_process() {
    let db = TestDb::sqlite().await;
    live_pickup(db.url()).await;
}

#[async_std::test]
async fn a_live_scheduler_on_postgres_picks_up_changes_made_by_another_process() {
    let db = TestDb::postgres().await;
    live_pickup(db.url()).await;
}

/// A change made through the scheduler's own runner (`crm serve --scheduler`'s API: the job
/// mutations go through that runner) or read first by someone else in the process (`/status`)
/// wakes the sleeping scheduler at once. It once slept on to its old wakeup: the reload had
/// been done by the API call, so the scheduler's poll saw nothing new, and a one-off run asked
/// for "now" waited for the next tick (here 08:00, seven and a half hours).
#[async_std::test]
async fn a_live_scheduler_obeys_changes_made_through_its_own_runner_at_once() {
    let start = utc(2026, 6, 1, 0, 30);
    let clock = ManualClock::new(start);
    let (daily, calls) = job("daily", "0 8 * * *");
    let overrides: Arc<dyn OverrideStore> = Arc::new(MemoryOverrides::new());
    let ledger: Arc<dyn RunLedger> = Arc::new(MemoryLedger::new());
    let scheduled = Arc::new(runner(
        ledger.clone(),
        overrides.clone(),
        &clock,
        1,
        vec![daily],
    ));
    // A poll far longer than the test: only the runner's own notice can wake the scheduler.
    let scheduler = Scheduler::new(scheduled.clone()).override_poll(Duration::from_secs(3600));
    let handle = scheduler.handle();
    let running = async_std::task::spawn(scheduler.run());
    eventually("the scheduler planned its first sleep", || {
        scheduled.next_run_of("daily", start) == Some(utc(2026, 6, 1, 8, 0))
    })
    .await;
    async_io::Timer::after(Duration::from_millis(100)).await;

    // Through the scheduler's own runner, as the API of `crm serve --scheduler` does.
    scheduled.schedule_run("daily", start, "api").await.unwrap();
    eventually("the one-off run asked through the API ran", || {
        sorted(&calls) == vec![start]
    })
    .await;

    // Through another process, but read first by this process's `/status` page.
    let (daily_too, _) = job("daily", "0 8 * * *");
    let operator = runner(ledger, overrides, &clock, 2, vec![daily_too]);
    let second = start + TimeDelta::seconds(30);
    clock.set(second);
    operator
        .schedule_run("daily", second, "cli:other")
        .await
        .unwrap();
    crm_jobs::health::assess(&scheduled, second).await.unwrap();
    eventually("the one-off run /status read first ran", || {
        sorted(&calls) == vec![start, second]
    })
    .await;

    handle.shutdown(Duration::from_secs(5));
    assert_eq!(running.await.unfinished, 0);
}

/// Two runners (two processes' pools) on one PostgreSQL database drive a day of a job every 10
/// minutes; at noon one of them changes it to every 15 minutes. Each tick runs once, on one of
/// them, and the other sees the change at its next round.
#[async_std::test]
async fn two_schedulers_on_one_postgres_with_a_change_in_between_run_each_tick_once() {
    let db = TestDb::postgres().await;
    let start = utc(2026, 6, 1, 0, 0);
    let change = utc(2026, 6, 1, 12, 5);
    let end = utc(2026, 6, 2, 0, 0);
    let clock = ManualClock::new(start);
    let calls = Calls::default();
    let mut runners = Vec::new();
    for pid in [1, 2] {
        let pool = Database::connect(db.url()).await.unwrap();
        let job = Recording {
            code: "often",
            schedule: "*/10 * * * *",
            calls: calls.clone(),
        };
        runners.push(runner(
            Arc::new(pool.clone()),
            Arc::new(pool),
            &clock,
            pid,
            vec![Box::new(job)],
        ));
    }
    let mut now = start;
    let mut changed = false;
    while now < end {
        if !changed && now >= change {
            clock.set(change);
            runners[0]
                .set_schedule("often", Some("*/15 * * * *"), "cli:one")
                .await
                .unwrap();
            changed = true;
        }
        clock.set(now);
        let (a, b) = futures::join!(runners[0].run_due(now), runners[1].run_due(now));
        for report in a.iter().chain(&b) {
            assert!(
                matches!(report.status, RunStatus::Succeeded | RunStatus::Taken),
                "{report:?}"
            );
        }
        let (wa, wb) = futures::join!(runners[0].next_wakeup(now), runners[1].next_wakeup(now));
        assert_eq!(wa, wb, "both runners plan the same next tick");
        now = wa.unwrap();
    }
    let mut expected = Vec::new();
    let mut t = start;
    while t < change {
        expected.push(t);
        t += TimeDelta::minutes(10);
    }
    let mut t = utc(2026, 6, 1, 12, 15);
    while t < end {
        expected.push(t);
        t += TimeDelta::minutes(15);
    }
    assert_eq!(sorted(&calls), expected, "each tick exactly once");
}

/// Sends one GraphQL operation, with the bearer token if given; returns the JSON answer.
async fn graphql(url: &str, token: Option<&str>, query: &str) -> serde_json::Value {
    let mut request = surf::post(url)
        .body_json(&serde_json::json!({ "query": query }))
        .unwrap();
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.await.unwrap();
    response.body_json().await.unwrap()
}

fn error_code(answer: &serde_json::Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {answer}"))
}

#[async_std::test]
async fn the_api_pauses_reschedules_and_adds_runs_with_the_token_and_refuses_bad_input_clearly() {
    let db = TestDb::sqlite().await;
    let database = db.database().clone();
    let clock = ManualClock::new(utc(2026, 6, 1, 10, 0));
    let (daily, _) = job("daily", "0 8 * * *");
    let runner = Arc::new(runner(
        Arc::new(database.clone()),
        Arc::new(database.clone()),
        &clock,
        1,
        vec![daily],
    ));
    let config = crm_server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        api_token: Some("sesame".to_owned()),
        job_control: Some(runner.clone()),
        ..crm_server::ServerConfig::default()
    };
    let server = crm_server::BoundServer::bind(Arc::new(database.clone()), config)
        .await
        .unwrap();
    let url = server.graphql_url();
    async_std::task::spawn(server.run());
    let token = Some("sesame");

    let pause =
        r#"mutation { setJobEnabled(code: "daily", enabled: false) { code enabled nextRun } }"#;
    let refused = graphql(&url, None, pause).await;
    assert_eq!(error_code(&refused), "UNAUTHORIZED", "{refused}");
    assert_eq!(OverrideStore::version(&database).await.unwrap(), 0);

    let paused = graphql(&url, token, pause).await;
    assert_eq!(
        paused["data"]["setJobEnabled"],
        serde_json::json!({ "code": "daily", "enabled": false, "nextRun": null }),
        "{paused}"
    );
    let resumed = graphql(
        &url,
        token,
        r#"mutation { setJobEnabled(code: "daily", enabled: true) { enabled nextRun } }"#,
    )
    .await;
    assert_eq!(
        resumed["data"]["setJobEnabled"]["enabled"], true,
        "{resumed}"
    );
    assert!(
        resumed["data"]["setJobEnabled"]["nextRun"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-06-02T08:00:00")),
        "{resumed}"
    );

    let bad = graphql(
        &url,
        token,
        r#"mutation { setJobSchedule(code: "daily", schedule: "61 * * * *") { schedule } }"#,
    )
    .await;
    assert_eq!(error_code(&bad), "VALIDATION", "{bad}");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("'61 * * * *'"),
        "{bad}"
    );
    let unknown = graphql(
        &url,
        token,
        r#"mutation { setJobSchedule(code: "nightly", schedule: null) { schedule } }"#,
    )
    .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");

    let replaced = graphql(
        &url,
        token,
        r#"mutation { setJobSchedule(code: "daily", schedule: "every 15 minutes") { schedule defaultSchedule overridden } }"#,
    )
    .await;
    assert_eq!(
        replaced["data"]["setJobSchedule"],
        serde_json::json!({
            "schedule": "every 15 minutes in UTC",
            "defaultSchedule": "0 8 * * * in UTC",
            "overridden": true
        }),
        "{replaced}"
    );
    let one_off = graphql(
        &url,
        token,
        r#"mutation { scheduleJobRun(code: "daily", at: "2026-06-01T12:00:00Z") { pendingRuns } }"#,
    )
    .await;
    let pending = one_off["data"]["scheduleJobRun"]["pendingRuns"]
        .as_array()
        .unwrap_or_else(|| panic!("{one_off}"));
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0]
            .as_str()
            .unwrap()
            .starts_with("2026-06-01T12:00:00")
    );

    // Four changes stored, each recorded as the API's; the refused ones left nothing.
    let audit = OverrideStore::audit(&database, None, 100).await.unwrap();
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|e| e.actor == "api"));
}
