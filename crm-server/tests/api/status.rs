//! The jobs' health over the real server: the `jobs` and `jobRuns` queries, and `/status`
//! loaded in a real headless Chromium (Debian's `chromium`; `.ci/run` installs it), with
//! screenshots saved as `target/status.png` and `target/status-phone.png`.
//!
//! The ledger is the test's SQLite database, written as six jobs' histories would have left it,
//! so that each state shows at once: ok, failing, late, missed, running and never run.

use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_jobs::{
    Claim, CronJob, JobContext, JobError, ManualClock, NewRun, RunEnd, RunKind, RunLedger,
    RunOutcome, Runner, Schedule,
};
use crm_server::ServerConfig;
use serde_json::json;

use crate::helpers::{CHROMIUM_FLAGS, TestApp, captured_logs, first_error, spawn_app_with};

/// A job that is only ever looked at here.
struct Named(&'static str, &'static str);

#[async_trait]
impl CronJob for Named {
    fn code(&self) -> &str {
        self.0
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron(self.1).unwrap()
    }
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        Ok("not run in these tests".to_owned())
    }
}

fn utc(d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, d, h, mi, 0).unwrap()
}

/// "Now" in these tests: Wednesday 2026-06-10 10:07 UTC.
fn now() -> DateTime<Utc> {
    utc(10, 10, 7)
}

/// Records a run of `code` for `tick` that started a second after it and took `millis`, and
/// returns when it ended (a `Running` run is left unfinished). `/metrics`' tests use it too.
pub(crate) async fn record(
    ledger: &dyn RunLedger,
    code: &str,
    tick: DateTime<Utc>,
    millis: i64,
    outcome: RunOutcome,
    message: &str,
) -> DateTime<Utc> {
    let started = tick + TimeDelta::seconds(1);
    let run = NewRun {
        code: code.to_owned(),
        tick,
        kind: RunKind::Scheduled,
        attempt: 1,
        started_at: started,
        lease_until: started + TimeDelta::minutes(1),
        host: "status-test".to_owned(),
        pid: 7,
    };
    let Claim::Claimed(row) = ledger.claim(&run, false, started).await.unwrap() else {
        panic!("tick {tick} of {code} is free");
    };
    let ended = started + TimeDelta::milliseconds(millis);
    if outcome != RunOutcome::Running {
        ledger
            .finish(
                row.id,
                RunEnd {
                    outcome,
                    at: ended,
                    message,
                },
            )
            .await
            .unwrap();
    }
    ended
}

/// Six jobs, one in each state at [`now`], on a server whose `/status` shows them.
async fn app_with_jobs(token: Option<&str>) -> TestApp {
    let db = TestDb::sqlite().await;
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let l = &*ledger;
    // ok: every 5 minutes since 09:00, durations varying, one failure long ago.
    for i in 0..14 {
        let tick = utc(10, 9, 0) + TimeDelta::minutes(5 * i);
        let outcome = if i == 4 {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        };
        record(
            l,
            "log_crm_heartbeat",
            tick,
            150 + 90 * (i % 5),
            outcome,
            "timeout",
        )
        .await;
    }
    // failing: today's reminders failed, quoting a customer's address.
    for d in 7..=9 {
        record(
            l,
            "send_order_reminders",
            utc(d, 8, 0),
            2400,
            RunOutcome::Succeeded,
            "3 reminders",
        )
        .await;
    }
    record(
        l,
        "send_order_reminders",
        utc(10, 8, 0),
        900,
        RunOutcome::Failed,
        "GraphQL endpoint not responding: order 12 for ann.lee@example.com",
    )
    .await;
    // late: hourly, 10:00 not started at 10:07.
    for h in 6..=9 {
        record(
            l,
            "generate_crm_report",
            utc(10, h, 0),
            600,
            RunOutcome::Succeeded,
            "ok",
        )
        .await;
    }
    // missed: daily at 02:00, last ran on the 8th.
    for d in 6..=8 {
        record(
            l,
            "clean_inactive_customers",
            utc(d, 2, 0),
            4100,
            RunOutcome::Succeeded,
            "ok",
        )
        .await;
    }
    // running: twice a day, today's 00:00 ran, and a run is going now.
    record(
        l,
        "update_low_stock",
        utc(9, 12, 0),
        1300,
        RunOutcome::Succeeded,
        "ok",
    )
    .await;
    record(
        l,
        "update_low_stock",
        utc(10, 0, 0),
        1700,
        RunOutcome::Succeeded,
        "ok",
    )
    .await;
    let manual = NewRun {
        code: "update_low_stock".to_owned(),
        tick: utc(10, 10, 6),
        kind: RunKind::Manual,
        attempt: 1,
        started_at: utc(10, 10, 6),
        lease_until: utc(10, 10, 6) + TimeDelta::minutes(5),
        host: "status-test".to_owned(),
        pid: 8,
    };
    assert!(matches!(
        ledger
            .claim(&manual, false, manual.started_at)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));

    let runner = Runner::builder()
        .job(Box::new(Named("log_crm_heartbeat", "*/5 * * * *")))
        .job(Box::new(Named("send_order_reminders", "0 8 * * *")))
        .job(Box::new(Named("generate_crm_report", "0 * * * *")))
        .job(Box::new(Named("clean_inactive_customers", "0 2 * * *")))
        .job(Box::new(Named("update_low_stock", "0 */12 * * *")))
        .job(Box::new(Named("new_job", "0 3 * * *")))
        .ledger(ledger)
        .clock(Arc::new(ManualClock::new(now())))
        .time_zone(chrono_tz::Tz::UTC)
        .build()
        .unwrap();
    let config = ServerConfig {
        api_token: token.map(str::to_owned),
        jobs: Some(Arc::new(runner)),
        ..ServerConfig::default()
    };
    spawn_app_with(db, config).await
}

const EXPECTED: [(&str, &str); 6] = [
    ("log_crm_heartbeat", "ok"),
    ("send_order_reminders", "failing"),
    ("generate_crm_report", "late"),
    ("clean_inactive_customers", "missed"),
    ("update_low_stock", "running"),
    ("new_job", "never run"),
];

#[async_std::test]
async fn the_jobs_query_tells_each_jobs_state_without_customer_data() {
    let app = app_with_jobs(None).await;
    let data = app
        .data(
            "{ jobs { code schedule timeZone state overdueTick nextRun consecutiveFailures
                 p50Ms p95Ms lastSuccess { tick } lastFailure { message outcome }
                 recentRuns { outcome durationMs } } }",
            json!({}),
        )
        .await;
    let jobs = data["jobs"].as_array().unwrap();
    let states: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["code"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("log_crm_heartbeat", "OK"),
            ("send_order_reminders", "FAILING"),
            ("generate_crm_report", "LATE"),
            ("clean_inactive_customers", "MISSED"),
            ("update_low_stock", "RUNNING"),
            ("new_job", "NEVER_RUN"),
        ]
    );
    let beat = &jobs[0];
    assert_eq!(beat["schedule"], "*/5 * * * *");
    assert_eq!(beat["timeZone"], "UTC");
    assert_eq!(beat["nextRun"], "2026-06-10T10:10:00+00:00");
    assert_eq!(beat["recentRuns"].as_array().unwrap().len(), 14);
    assert_eq!(beat["lastFailure"]["outcome"], "FAILED");
    assert!(beat["p50Ms"].as_f64().unwrap() >= 150.0);
    assert!(beat["p95Ms"].as_f64().unwrap() >= beat["p50Ms"].as_f64().unwrap());
    let reminders = &jobs[1];
    assert_eq!(reminders["consecutiveFailures"], 1);
    assert_eq!(
        reminders["lastFailure"]["message"],
        "GraphQL endpoint not responding: order 12 for [e-mail]"
    );
    assert_eq!(jobs[2]["overdueTick"], "2026-06-10T10:00:00+00:00");
    assert_eq!(jobs[3]["overdueTick"], "2026-06-09T02:00:00+00:00");

    let runs = app
        .data(
            "{ jobRuns(code: \"send_order_reminders\", first: 2) { tick outcome message kind attempt } }",
            json!({}),
        )
        .await;
    assert_eq!(
        runs["jobRuns"],
        json!([
            { "tick": "2026-06-10T08:00:00+00:00", "outcome": "FAILED", "kind": "scheduled", "attempt": 1,
              "message": "GraphQL endpoint not responding: order 12 for [e-mail]" },
            { "tick": "2026-06-09T08:00:00+00:00", "outcome": "SUCCEEDED", "kind": "scheduled", "attempt": 1,
              "message": "3 reminders" },
        ])
    );
    let unknown = app
        .gql("{ jobRuns(code: \"nope\") { id } }", json!({}))
        .await;
    let (message, code) = first_error(&unknown);
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("log_crm_heartbeat"), "{message}");
    let zero = app
        .gql("{ jobRuns(code: \"new_job\", first: 0) { id } }", json!({}))
        .await;
    assert_eq!(first_error(&zero).1, "VALIDATION");
}

#[async_std::test]
async fn a_server_without_jobs_says_so() {
    let app = spawn_app_with(TestDb::sqlite().await, ServerConfig::default()).await;
    let answer = app.gql("{ jobs { code } }", json!({})).await;
    let (message, code) = first_error(&answer);
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("without the scheduled jobs"), "{message}");
    let page = app.request("GET", "/status", &[], b"").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("without the scheduled jobs"));
}

#[async_std::test]
async fn with_a_token_the_status_page_needs_it_and_never_logs_it() {
    let app = app_with_jobs(Some("st4tus-s3cret")).await;
    let refused = app.request("GET", "/status", &[], b"").await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{}",
        refused.headers
    );
    assert!(!refused.body.contains("log_crm_heartbeat"));
    let wrong = app
        .request("GET", "/status", &[("Authorization", "Bearer nope")], b"")
        .await;
    assert_eq!(wrong.status, 401);
    let bearer = app
        .request(
            "GET",
            "/status",
            &[("Authorization", "Bearer st4tus-s3cret")],
            b"",
        )
        .await;
    assert_eq!(bearer.status, 200);
    assert!(bearer.body.contains("data-job=\"log_crm_heartbeat\""));
    // A browser's own login dialog: any user name, the token as password.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "ops:st4tus-s3cret"
        )
    );
    let browser = app
        .request("GET", "/status", &[("Authorization", &basic)], b"")
        .await;
    assert_eq!(browser.status, 200);
    assert!(!captured_logs().contains("st4tus-s3cret"));
}

/// Runs headless Chromium with the flags this machine needs, in a fresh profile.
fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs (Debian package `chromium`; .ci/run installs it)")
}

/// The workspace's `target/` directory, where the screenshots are kept.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[async_std::test]
async fn the_status_page_shows_every_job_and_its_state_in_a_real_browser() {
    if !crm_core::testing::require(
        "the_status_page_shows_every_job_and_its_state_in_a_real_browser",
        crm_core::testing::Need::Chromium,
    ) {
        return;
    }
    let app = app_with_jobs(None).await;
    let url = format!("http://{}/status", app.address);
    let url_for_dom = url.clone();
    let dom =
        async_std::task::spawn_blocking(move || chromium(&["--dump-dom".to_owned(), url_for_dom]))
            .await;
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    for (code, state) in EXPECTED {
        assert!(
            dom.contains(&format!("<tr data-job=\"{code}\" data-state=\"{state}\">")),
            "no row for {code} in state {state}: {dom}"
        );
    }
    assert_eq!(dom.matches("<tr data-job=").count(), 6);
    assert!(dom.contains("3 of 6 jobs need attention"), "{dom}");
    assert!(dom.contains("<svg class=\"chart\""));
    assert!(!dom.contains("ann.lee@example.com"), "no customer data");
    assert!(dom.contains("order 12 for [e-mail]"));

    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    for (file, size) in [("status.png", "1400,620"), ("status-phone.png", "390,1900")] {
        let path = target.join(file);
        let _ = std::fs::remove_file(&path);
        let args = vec![
            format!("--window-size={size}"),
            format!("--screenshot={}", path.display()),
            url.clone(),
        ];
        let shot = async_std::task::spawn_blocking(move || chromium(&args)).await;
        assert!(
            shot.status.success(),
            "{}",
            String::from_utf8_lossy(&shot.stderr)
        );
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{file} is a PNG");
        assert!(png.len() > 10_000, "{file} shows something");
    }
}
