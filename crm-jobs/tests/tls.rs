//! https for the jobs' GraphQL client and the alert webhook, against a real TLS server: a
//! rustls listener with a certificate from a CA this test makes, in front of the real CRM
//! server (and of a real webhook receiver). Trusted through `CRM_CA_FILE`, the heartbeat writes
//! its contract line; untrusted, misnamed or silent, the run fails with a one-line reason, in
//! time.

#[path = "support/failed_heartbeat.rs"]
mod failed_heartbeat;
#[expect(
    dead_code,
    reason = "the shared helpers serve several test binaries; this one uses a few"
)]
mod helpers;
#[path = "support/tls_server.rs"]
mod tls_server;
#[path = "support/webhook.rs"]
mod webhook;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_jobs::{
    Alert, AlertHook, CronJob, GraphqlClient, JobContext, JobError, JobsConfig, LogCrmHeartbeat,
    WebhookAlert,
};

use failed_heartbeat::assert_heartbeat_failed_with;
use helpers::{Crm, silent_endpoint, spawn_crm};
use tls_server::{test_ca, tls_proxy};
use webhook::webhook_listener;

/// The heartbeat's configuration: `url`, this CRM's log directory and zone, a 2 s timeout.
fn heartbeat_config(crm: &Crm, url: &str, ca_file: Option<PathBuf>) -> JobsConfig {
    crm.config
        .clone()
        .with_graphql_url(url)
        .unwrap()
        .with_ca_file(ca_file)
        .with_graphql_timeout(Duration::from_secs(2))
}

/// Runs the heartbeat once at 2026-01-02 03:05 UTC (22:05 the day before in New York).
async fn heartbeat(config: &JobsConfig) -> Result<String, JobError> {
    let job = LogCrmHeartbeat::new(GraphqlClient::new(config).unwrap(), config);
    let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap();
    job.run(&JobContext::new(at, at, false)).await
}

#[async_std::test]
async fn the_heartbeat_over_https_trusting_the_private_ca_writes_its_line() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &crm.url).await;
    let url = format!("https://127.0.0.1:{port}/graphql");

    heartbeat(&heartbeat_config(&crm, &url, Some(ca.ca_file.clone())))
        .await
        .unwrap();

    assert_eq!(
        crm.log("crm_heartbeat_log.txt"),
        "01/01/2026-22:05:00 CRM is alive\n"
    );
}

#[async_std::test]
async fn without_the_private_ca_the_certificate_is_untrusted_and_the_run_fails() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &crm.url).await;
    let url = format!("https://127.0.0.1:{port}/graphql");

    let result = heartbeat(&heartbeat_config(&crm, &url, None)).await;

    assert_heartbeat_failed_with(
        &crm,
        result,
        &url,
        &format!("{url}: certificate not trusted (UnknownIssuer)"),
    );
}

#[async_std::test]
async fn a_certificate_for_another_host_name_fails_the_run_saying_so() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &crm.url).await;
    let url = format!("https://localhost:{port}/graphql");

    let result = heartbeat(&heartbeat_config(&crm, &url, Some(ca.ca_file.clone()))).await;

    assert_heartbeat_failed_with(
        &crm,
        result,
        &url,
        "certificate not valid for the host name localhost (NotValidForName)",
    );
}

#[async_std::test]
async fn a_server_that_never_answers_the_handshake_fails_the_run_within_the_timeout() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let url = silent_endpoint().await.replace("http://", "https://");
    let started = Instant::now();

    let result = heartbeat(&heartbeat_config(&crm, &url, Some(ca.ca_file.clone()))).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_heartbeat_failed_with(&crm, result, &url, "within 2s");
}

#[async_std::test]
async fn an_unreadable_ca_file_is_refused_when_the_client_is_made() {
    let config = JobsConfig::default()
        .with_graphql_url("https://127.0.0.1:1/graphql")
        .unwrap()
        .with_ca_file(Some(PathBuf::from("/nonexistent/ca.pem")));

    let err = GraphqlClient::new(&config).unwrap_err();

    assert!(
        err.to_string()
            .contains("CRM_CA_FILE: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[async_std::test]
async fn an_alert_reaches_an_https_webhook_trusting_the_private_ca() {
    let (upstream, received) = webhook_listener(vec![]).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &upstream).await;
    let url = format!("https://127.0.0.1:{port}/hook");
    let alert = Alert::Missed {
        code: "log_crm_heartbeat".to_owned(),
        tick: Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap(),
        next_run: None,
    };

    let untrusted = WebhookAlert::new(&url).unwrap().attempts(1);
    let err = untrusted.alert(&alert).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate not trusted (UnknownIssuer)"),
        "{err}"
    );

    let trusted = WebhookAlert::new(&url)
        .unwrap()
        .ca_file(Some(ca.ca_file.clone()))
        .unwrap()
        .attempts(1);
    trusted.alert(&alert).await.unwrap();
    let body = received.recv().await.unwrap();
    assert_eq!(body["event"], "missed");
    assert_eq!(body["code"], "log_crm_heartbeat");
}

#[test]
fn an_https_webhook_with_an_unreadable_ca_file_is_refused_at_start() {
    let err = WebhookAlert::new("https://127.0.0.1:1/hook")
        .unwrap()
        .ca_file(Some(PathBuf::from("/nonexistent/ca.pem")))
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        "CRM_CA_FILE: cannot read /nonexistent/ca.pem: I/O error: No such file or directory (os error 2)"
    );
}
