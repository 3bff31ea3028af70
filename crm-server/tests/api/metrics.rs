//! `/metrics` over the real server: the run ledger's counts in Prometheus' text format, read
//! back with Prometheus' own parser (`promtool check metrics`), on SQLite and PostgreSQL.

use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::testing::{Need, TestDb, promtool_problems, require};
use crm_jobs::{
    CronJob, JobContext, JobError, ManualClock, Retention, RunLedger, RunOutcome, Runner, Schedule,
};
use crm_server::ServerConfig;

use crate::helpers::{TestApp, spawn_app_with};
use crate::status::record;

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

/// "Now" in these tests: 2026-06-10 10:07 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 10, 7, 0).unwrap()
}

/// The sample `name{labels}`'s value in `text`, if it is there.
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = app.request("GET", "/metrics", &headers, b"").await;
    (r.status, r.headers, r.body)
}

/// Runs of two jobs on `db`, scraped, pruned, scraped again: counts per outcome, timestamps,
/// the counter unchanged by the prune, the token rule, and Prometheus' parser accepts it all.
async fn metrics_count_every_run_and_survive_a_prune(db: TestDb, test: &str) {
    let ledger: Arc<dyn RunLedger> = Arc::new(db.database().clone());
    let l = &*ledger;
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 6, 10, h, m, 0).unwrap();
    let mut last_success = None;
    for i in 0..6 {
        let outcome = if i == 2 {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        };
        let ended = record(
            l,
            "heartbeat",
            at(9, 0) + TimeDelta::minutes(5 * i),
            250,
            outcome,
            "done",
        )
        .await;
        if outcome == RunOutcome::Succeeded {
            last_success = Some(ended);
        }
    }
    let first_failure = record(l, "report", at(8, 0), 1500, RunOutcome::Failed, "done").await;
    let last_failure = record(l, "report", at(9, 0), 500, RunOutcome::Failed, "done").await;
    let runner = Runner::builder()
        .job(Box::new(Named("heartbeat", "*/5 * * * *")))
        .job(Box::new(Named("report", "0 * * * *")))
        .ledger(ledger.clone())
        .clock(Arc::new(ManualClock::new(now())))
        .time_zone(chrono_tz::Tz::UTC)
        .build()
        .unwrap();
    let app = spawn_app_with(
        db,
        ServerConfig {
            api_token: Some("s3cret".to_owned()),
            jobs: Some(Arc::new(runner)),
            ..ServerConfig::default()
        },
    )
    .await;

    for token in [None, Some("wrong")] {
        let (status, _, body) = scrape(&app, token).await;
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("crm_job"), "{body}");
    }
    let (status, headers, before) = scrape(&app, Some("s3cret")).await;
    assert_eq!(status, 200, "{before}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let value = |text: &str, series: &str| {
        sample(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let secs = |t: DateTime<Utc>| (t.timestamp_micros() as f64 / 1e6).to_string();
    assert_eq!(
        value(
            &before,
            r#"crm_job_runs_total{job="heartbeat",outcome="succeeded"}"#
        ),
        "5"
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_runs_total{job="heartbeat",outcome="failed"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_runs_total{job="report",outcome="failed"}"#
        ),
        "2"
    );
    assert_eq!(
        sample(
            &before,
            r#"crm_job_runs_total{job="report",outcome="succeeded"}"#
        ),
        None
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_duration_seconds_count{job="heartbeat"}"#
        ),
        "6"
    );
    assert_eq!(
        value(&before, r#"crm_job_duration_seconds_sum{job="heartbeat"}"#),
        "1.5"
    );
    assert_eq!(
        value(&before, r#"crm_job_duration_seconds_sum{job="report"}"#),
        "2"
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_last_success_timestamp_seconds{job="heartbeat"}"#
        ),
        secs(last_success.unwrap())
    );
    assert_eq!(
        sample(
            &before,
            r#"crm_job_last_success_timestamp_seconds{job="report"}"#
        ),
        None,
        "a job that never succeeded has no last success"
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_last_failure_timestamp_seconds{job="report"}"#
        ),
        secs(last_failure)
    );
    // */5 at 10:07 next fires at 10:10; hourly at 11:00.
    assert_eq!(
        value(
            &before,
            r#"crm_job_next_run_timestamp_seconds{job="heartbeat"}"#
        ),
        secs(at(10, 10))
    );
    assert_eq!(
        value(
            &before,
            r#"crm_job_next_run_timestamp_seconds{job="report"}"#
        ),
        secs(at(11, 0))
    );
    assert_eq!(
        value(&before, r#"crm_job_health{job="report",state="failing"}"#),
        "1"
    );
    assert_eq!(
        value(&before, r#"crm_job_health{job="report",state="ok"}"#),
        "0"
    );

    // A prune deletes all but each job's latest run; the counters stay as they were.
    let pruned = ledger
        .prune(&Retention::before(now()).keep_per_job(1))
        .await
        .unwrap();
    assert!(pruned.runs >= 5, "{pruned:?}");
    assert!(
        ledger
            .history(Some("report"), 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.ended_at != Some(first_failure)),
        "the old failure was pruned"
    );
    let (_, _, after) = scrape(&app, Some("s3cret")).await;
    for series in [
        r#"crm_job_runs_total{job="heartbeat",outcome="succeeded"}"#,
        r#"crm_job_runs_total{job="heartbeat",outcome="failed"}"#,
        r#"crm_job_runs_total{job="report",outcome="failed"}"#,
        r#"crm_job_duration_seconds_sum{job="heartbeat"}"#,
        r#"crm_job_duration_seconds_count{job="report"}"#,
        r#"crm_job_last_success_timestamp_seconds{job="heartbeat"}"#,
        r#"crm_job_last_failure_timestamp_seconds{job="report"}"#,
    ] {
        assert_eq!(value(&after, series), value(&before, series), "{series}");
    }

    // This server's own requests: the two refused scrapes and the first one answered.
    assert_eq!(
        value(
            &after,
            r#"crm_http_requests_total{path="/metrics",status="4xx"}"#
        ),
        "2"
    );
    assert_eq!(
        value(
            &after,
            r#"crm_http_requests_total{path="/metrics",status="2xx"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &after,
            r#"crm_http_request_duration_seconds_count{path="/metrics"}"#
        ),
        "3"
    );

    if require(test, Need::Promtool) {
        assert_eq!(promtool_problems(&after), None, "{after}");
    }
}

#[async_std::test]
async fn metrics_count_every_run_and_survive_a_prune_on_sqlite() {
    metrics_count_every_run_and_survive_a_prune(
        TestDb::sqlite().await,
        "metrics::metrics_count_every_run_and_survive_a_prune_on_sqlite",
    )
    .await;
}

#[async_std::test]
async fn metrics_count_every_run_and_survive_a_prune_on_postgresql() {
    metrics_count_every_run_and_survive_a_prune(
        TestDb::postgres().await,
        "metrics::metrics_count_every_run_and_survive_a_prune_on_postgresql",
    )
    .await;
}

#[async_std::test]
async fn metrics_without_jobs_answer_an_exposition_prometheus_accepts() {
    let app = spawn_app_with(TestDb::sqlite().await, ServerConfig::default()).await;
    let (status, _, body) = scrape(&app, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE crm_job_runs_total counter"), "{body}");
    if require(
        "metrics::metrics_without_jobs_answer_an_exposition_prometheus_accepts",
        Need::Promtool,
    ) {
        assert_eq!(promtool_problems(&body), None, "{body}");
    }
}

/// `examples/prometheus/crm-alerts.yml` is valid Prometheus rules, and its unit tests (series
/// as `/metrics` gives them) see each alert fire when it should and not before.
#[test]
fn the_example_alert_rules_load_and_fire_on_the_served_series() {
    let test = "metrics::the_example_alert_rules_load_and_fire_on_the_served_series";
    if !require(test, Need::Promtool) {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/prometheus");
    for args in [
        ["check", "rules", "crm-alerts.yml"],
        ["test", "rules", "crm-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
