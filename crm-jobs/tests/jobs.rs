//! The five jobs end to end: the real GraphQL server on port 0 over a fresh, seeded database,
//! the real log files in a temporary directory, and the exact lines of the contract.

mod helpers;

use std::time::Duration;

use chrono::TimeZone;
use chrono::Utc;
use crm_jobs::{
    CronJob, GraphqlClient, GraphqlError, JobContext, JobError, JobsConfig, LogCrmHeartbeat,
};

use helpers::{closed_port_url, read_log, silent_endpoint};

#[async_std::test]
async fn an_unreachable_endpoint_logs_the_reason_and_fails_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let url = closed_port_url().await;
    let config = JobsConfig::default()
        .with_graphql_url(&url)
        .unwrap()
        .with_log_dir(dir.path())
        .with_time_zone(chrono_tz::UTC);
    let job = LogCrmHeartbeat::new(GraphqlClient::new(&config).unwrap(), &config);
    let at = Utc.with_ymd_and_hms(2026, 3, 9, 14, 5, 0).unwrap();

    let err = job
        .run(&JobContext::new(at, at, false))
        .await
        .expect_err("the run fails when the endpoint does not answer");

    assert!(matches!(err, JobError::Endpoint(_)), "{err:?}");
    let log = read_log(dir.path(), "crm_heartbeat_log.txt");
    let prefix = "09/03/2026-14:05:00 CRM is alive - GraphQL endpoint not responding: ";
    assert!(log.starts_with(prefix), "{log}");
    assert!(log.contains(&format!("cannot reach {url}")), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.ends_with('\n'));
}

#[async_std::test]
async fn an_endpoint_that_never_answers_times_out() {
    let url = silent_endpoint().await;
    let client = GraphqlClient::with_endpoint(&url, None, Duration::from_millis(300)).unwrap();

    let err = client.hello().await.unwrap_err();

    assert!(matches!(err, GraphqlError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no answer from {url} within 300ms")
    );
}
