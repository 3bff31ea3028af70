//! The GraphQL client and the alert webhook over the tokio transport (features `graphql-tokio`,
//! `webhook-tokio`: hyper on tokio's I/O), run on a tokio runtime against the real parts: the
//! real CRM server on port 0 over a fresh database, a rustls listener with a certificate from a
//! CA this test makes, a real webhook receiver. The same contract lines and the same one-line
//! reasons as over surf.

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
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_jobs::{
    Alert, AlertHook, CleanInactiveCustomers, CrmAccess, CronJob, GraphqlClient, GraphqlError,
    HttpTransport, InProcessCrm, JobContext, JobError, JobsConfig, LogCrmHeartbeat, WebhookAlert,
    jobs_with_access,
};

use failed_heartbeat::assert_heartbeat_failed_with;
use helpers::{
    Crm, assert_the_contracts_lines, closed_port_url, ctx_now, now, orders_of_one_customer, seed,
    silent_endpoint, spawn_crm, spawn_crm_with,
};
use tls_server::{test_ca, tls_proxy};
use webhook::webhook_listener;

/// A client of `config`'s endpoint over tokio.
fn tokio_client(config: &JobsConfig) -> GraphqlClient {
    let client = GraphqlClient::with_transport(config, HttpTransport::Tokio).unwrap();
    assert_eq!(client.transport(), HttpTransport::Tokio);
    client
}

/// Runs the heartbeat over tokio once at 2026-01-02 03:05 UTC (22:05 the day before in New
/// York) against `url`, trusting `ca_file`, with a 2 s timeout.
async fn heartbeat(crm: &Crm, url: &str, ca_file: Option<PathBuf>) -> Result<String, JobError> {
    let config = crm
        .config
        .clone()
        .with_graphql_url(url)
        .unwrap()
        .with_ca_file(ca_file)
        .with_graphql_timeout(Duration::from_secs(2));
    let job = LogCrmHeartbeat::new(tokio_client(&config), &config);
    let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap();
    job.run(&JobContext::new(at, at, false)).await
}

#[tokio::test]
async fn all_five_jobs_write_the_contracts_lines_over_the_tokio_client() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, Some("tokio-token")).await;
    let client: Arc<dyn CrmAccess> = Arc::new(tokio_client(&crm.config));
    let mut jobs = jobs_with_access(&crm.config, client);
    // The GraphQL API cannot delete customers: the cleanup works on the database, as in
    // `standard_jobs`.
    jobs[0] = Box::new(CleanInactiveCustomers::new(
        InProcessCrm::new(crm.store.clone()),
        &crm.config,
    ));

    for job in &jobs {
        job.run(&ctx_now(false)).await.unwrap();
    }

    assert_the_contracts_lines(&crm, &seeded).await;
}

#[tokio::test]
async fn reminders_over_tokio_follow_the_connection_through_every_page() {
    let db = TestDb::sqlite().await;
    // Three pages: one connection each.
    orders_of_one_customer(&db, 100).await;
    let crm = spawn_crm_with(db, None, |server| server.max_page_size = 40).await;

    let orders = tokio_client(&crm.config)
        .orders_between(now() - chrono::Duration::days(7), now())
        .await
        .unwrap();

    assert_eq!(orders.len(), 100);
    assert!(
        orders
            .windows(2)
            .all(|w| w[0].order_date <= w[1].order_date)
    );
}

#[tokio::test]
async fn a_refused_token_is_a_graphql_error_and_a_wrong_path_an_http_404() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = spawn_crm(db, Some("right-token")).await;
    let wrong = crm
        .config
        .clone()
        .with_api_token(Some("wrong-token".to_owned()));

    let err = tokio_client(&wrong)
        .update_low_stock_products(None)
        .await
        .unwrap_err();
    let GraphqlError::Graphql { messages } = &err else {
        panic!("expected GraphQL errors, got {err:?}");
    };
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(!err.to_string().contains("wrong-token"), "{err}");

    let wrong_path = crm.url.replace("/graphql", "/no-such-path");
    let config = crm.config.clone().with_graphql_url(&wrong_path).unwrap();
    let err = tokio_client(&config).hello().await.unwrap_err();
    assert!(
        matches!(err, GraphqlError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("HTTP 404 from {wrong_path}")),
        "{err}"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_over_tokio() {
    let url = silent_endpoint().await;
    let config = JobsConfig::default()
        .with_graphql_url(&url)
        .unwrap()
        .with_graphql_timeout(Duration::from_millis(300));

    let err = tokio_client(&config).hello().await.unwrap_err();

    assert!(matches!(err, GraphqlError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no answer from {url} within 300ms")
    );
}

#[tokio::test]
async fn a_closed_port_fails_the_heartbeat_with_connection_refused() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let url = closed_port_url().await;

    let result = heartbeat(&crm, &url, None).await;

    assert_heartbeat_failed_with(
        &crm,
        result,
        &url,
        &format!("cannot reach {url}: Connection refused"),
    );
}

#[tokio::test]
async fn the_heartbeat_over_https_trusting_the_private_ca_writes_its_line() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &crm.url).await;
    let url = format!("https://127.0.0.1:{port}/graphql");

    heartbeat(&crm, &url, Some(ca.ca_file.clone()))
        .await
        .unwrap();

    assert_eq!(
        crm.log("crm_heartbeat_log.txt"),
        "01/01/2026-22:05:00 CRM is alive\n"
    );
}

#[tokio::test]
async fn over_https_an_untrusted_or_misnamed_certificate_fails_the_run_saying_so() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &crm.url).await;
    let url = format!("https://127.0.0.1:{port}/graphql");

    let result = heartbeat(&crm, &url, None).await;
    assert_heartbeat_failed_with(
        &crm,
        result,
        &url,
        &format!("{url}: certificate not trusted (UnknownIssuer)"),
    );

    std::fs::remove_file(crm.logs.path().join("crm_heartbeat_log.txt")).unwrap();
    let misnamed = format!("https://localhost:{port}/graphql");
    let result = heartbeat(&crm, &misnamed, Some(ca.ca_file.clone())).await;
    assert_heartbeat_failed_with(
        &crm,
        result,
        &misnamed,
        "certificate not valid for the host name localhost (NotValidForName)",
    );
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_fails_within_the_timeout() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let ca = test_ca();
    let url = silent_endpoint().await.replace("http://", "https://");
    let started = Instant::now();

    let result = heartbeat(&crm, &url, Some(ca.ca_file.clone())).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_heartbeat_failed_with(&crm, result, &url, "within 2s");
}

#[test]
fn outside_a_tokio_runtime_a_request_fails_with_the_reason_instead_of_panicking() {
    let config = JobsConfig::default()
        .with_graphql_url("http://127.0.0.1:1/graphql")
        .unwrap();
    let client = tokio_client(&config);

    let err = futures::executor::block_on(client.hello()).unwrap_err();

    assert!(matches!(err, GraphqlError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the tokio HTTP transport needs a tokio runtime"),
        "{err}"
    );
}

fn missed_alert() -> Alert {
    Alert::Missed {
        code: "log_crm_heartbeat".to_owned(),
        tick: Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap(),
        next_run: None,
    }
}

#[tokio::test]
async fn an_alert_reaches_the_webhook_over_tokio_after_a_failed_attempt() {
    let (url, received) = webhook_listener(vec![503]).await;
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .transport(HttpTransport::Tokio)
        .attempts(2)
        .pause(Duration::from_millis(10));

    hook.alert(&missed_alert()).await.unwrap();

    // The receiver hands over the body it answered 200 to: the second attempt's.
    let body = received.recv().await.unwrap();
    assert_eq!(body["event"], "missed");
    assert_eq!(body["code"], "log_crm_heartbeat");
}

#[tokio::test]
async fn a_webhook_that_keeps_refusing_fails_with_its_status_over_tokio() {
    let (url, _received) = webhook_listener(vec![404, 404]).await;
    let hook = WebhookAlert::new(&url)
        .unwrap()
        .transport(HttpTransport::Tokio)
        .attempts(2)
        .pause(Duration::from_millis(10));

    let err = hook.alert(&missed_alert()).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        "webhook delivery failed after 2 attempts: the webhook answered 404"
    );
}

#[tokio::test]
async fn an_alert_reaches_an_https_webhook_over_tokio_trusting_the_private_ca() {
    let (upstream, received) = webhook_listener(vec![]).await;
    let ca = test_ca();
    let port = tls_proxy(&ca, &upstream).await;
    let url = format!("https://127.0.0.1:{port}/hook");

    let untrusted = WebhookAlert::new(&url)
        .unwrap()
        .transport(HttpTransport::Tokio)
        .attempts(1);
    let err = untrusted.alert(&missed_alert()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate not trusted (UnknownIssuer)"),
        "{err}"
    );

    let trusted = WebhookAlert::new(&url)
        .unwrap()
        .transport(HttpTransport::Tokio)
        .ca_file(Some(ca.ca_file.clone()))
        .unwrap()
        .attempts(1);
    trusted.alert(&missed_alert()).await.unwrap();
    let body = received.recv().await.unwrap();
    assert_eq!(body["event"], "missed");
}
