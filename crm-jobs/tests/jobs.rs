//! The five jobs end to end: the real GraphQL server on port 0 over a fresh, seeded database,
//! the real log files in a temporary directory, and the exact lines of the contract.

#[expect(
    dead_code,
    reason = "interim: the server-backed tests that read these land with the server's HTTP layer"
)]
mod helpers;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_core::{CustomerFilter, PageRequest};
use crm_jobs::{
    CleanInactiveCustomers, CronJob, GraphqlClient, GraphqlError, JobContext, JobError, JobsConfig,
    LogCrmHeartbeat,
};

use helpers::{
    Crm, NOW_STAMP, closed_port_url, ctx_now, offline_crm, read_log, seed, silent_endpoint,
};

async fn customer_ids(crm: &Crm) -> Vec<i64> {
    let mut ids: Vec<i64> = crm
        .store
        .list_customers(&CustomerFilter::default(), &[], PageRequest::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

// ---- clean_inactive_customers ----

#[async_std::test]
async fn cleanup_deletes_exactly_the_inactive_customers_and_logs_how_many() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = offline_crm(db).await;
    let job = CleanInactiveCustomers::new(crm.store.clone(), &crm.config);

    let outcome = job.run(&ctx_now(false)).await.unwrap();

    assert_eq!(outcome, "Deleted 2 inactive customers");
    assert_eq!(
        crm.log("customer_cleanup_log.txt"),
        format!("{NOW_STAMP} - Deleted 2 inactive customers\n")
    );
    let mut kept = seeded.active.clone();
    kept.sort();
    assert_eq!(customer_ids(&crm).await, kept);
}

#[async_std::test]
async fn a_cleanup_dry_run_counts_but_deletes_and_logs_nothing() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = offline_crm(db).await;
    let job = CleanInactiveCustomers::new(crm.store.clone(), &crm.config);

    let outcome = job.run(&ctx_now(true)).await.unwrap();

    assert_eq!(outcome, "Would delete 2 inactive customers (dry run)");
    assert_eq!(
        customer_ids(&crm).await.len(),
        seeded.active.len() + seeded.inactive.len()
    );
    assert!(!crm.logs.path().join("customer_cleanup_log.txt").exists());
}

// ---- send_order_reminders ----

#[cfg(unix)]
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
    assert!(log.contains("Connection refused"), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.ends_with('\n'));
}

// ---- update_low_stock ----

#[async_std::test]
async fn an_unwritable_log_directory_fails_the_run_with_the_path() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = offline_crm(db).await;
    // A regular file where the directory should be: unwritable even for root.
    let not_a_dir = crm.logs.path().join("plain-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let config = crm.config.clone().with_log_dir(&not_a_dir);
    let job = CleanInactiveCustomers::new(crm.store.clone(), &config);

    let err = job.run(&ctx_now(false)).await.unwrap_err();

    match &err {
        JobError::LogFile { path, .. } => {
            assert_eq!(path, &not_a_dir.join("customer_cleanup_log.txt"));
        }
        other => panic!("expected a log file error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write log file {}", not_a_dir.display())),
        "{err}"
    );
}

// ---- the client ----

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

// ---- PostgreSQL, once ----
