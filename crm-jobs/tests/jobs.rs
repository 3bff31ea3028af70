//! The five jobs end to end: the real GraphQL server on port 0 over a fresh, seeded database,
//! the real log files in a temporary directory, and the exact lines of the contract.

mod helpers;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use crm_core::testing::TestDb;
use crm_core::{PageRequest, ProductFilter};
use crm_jobs::{
    CleanInactiveCustomers, CrmAccess, CronJob, GenerateCrmReport, GraphqlClient, GraphqlError,
    InProcessCrm, JobContext, JobError, JobsConfig, LogCrmHeartbeat, SendOrderReminders,
    UpdateLowStock, jobs_with_access, standard_jobs,
};

use helpers::{
    Crm, NOW_STAMP, assert_the_contracts_lines, closed_port_url, ctx_now, customer_ids, now,
    offline_crm, orders_of_one_customer, read_log, seed, silent_endpoint, spawn_crm,
    spawn_crm_with,
};

fn client(crm: &Crm) -> GraphqlClient {
    GraphqlClient::new(&crm.config).unwrap()
}

async fn stock_by_name(crm: &Crm) -> Vec<(String, i32)> {
    let mut products: Vec<(String, i32)> = crm
        .store
        .list_products(&ProductFilter::default(), &[], PageRequest::default())
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.stock))
        .collect();
    products.sort();
    products
}

// ---- clean_inactive_customers ----

#[async_std::test]
async fn cleanup_deletes_exactly_the_inactive_customers_and_logs_how_many() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = offline_crm(db).await;
    let job = CleanInactiveCustomers::new(InProcessCrm::new(crm.store.clone()), &crm.config);

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
    let job = CleanInactiveCustomers::new(InProcessCrm::new(crm.store.clone()), &crm.config);

    let outcome = job.run(&ctx_now(true)).await.unwrap();

    assert_eq!(outcome, "Would delete 2 inactive customers (dry run)");
    assert_eq!(
        customer_ids(&crm).await.len(),
        seeded.active.len() + seeded.inactive.len()
    );
    assert!(!crm.logs.path().join("customer_cleanup_log.txt").exists());
}

// ---- send_order_reminders ----

#[async_std::test]
async fn reminders_list_exactly_last_weeks_orders_with_their_customers_emails() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, None).await;
    let job = SendOrderReminders::new(client(&crm), &crm.config);

    let outcome = job.run(&ctx_now(false)).await.unwrap();

    let expected: String = seeded
        .last_week
        .iter()
        .map(|(id, email)| format!("{NOW_STAMP} - Reminder: order {id} for {email}\n"))
        .collect();
    assert_eq!(seeded.last_week.len(), 3);
    assert_eq!(crm.log("order_reminders_log.txt"), expected);
    assert_eq!(outcome, "Logged reminders for 3 orders");
}

#[async_std::test]
async fn reminders_follow_the_connection_through_every_page() {
    let db = TestDb::sqlite().await;
    // Seven pages of a server whose page size limit is 40 (a client asking for more than the
    // limit would be refused, so the client leaves the page size to the server).
    orders_of_one_customer(&db, 250).await;
    let crm = spawn_crm_with(db, None, |server| server.max_page_size = 40).await;

    let orders = client(&crm)
        .orders_between(now() - chrono::Duration::days(7), now())
        .await
        .unwrap();

    assert_eq!(orders.len(), 250);
    assert!(orders.windows(2).all(|w| w[0].order_date < w[1].order_date));
    assert!(
        orders
            .iter()
            .all(|o| o.customer_email == "many@example.com")
    );
}

/// Creates orders dated `minutes_ago` before [`now`] (several at one instant: ties the pages
/// must break by id), in an order of creation that is not the order of dates, and returns the
/// reminder lines the week's orders must give, in log order (oldest first, then by id).
async fn orders_with_ties(store: &dyn crm_core::CrmStore, minutes_ago: &[i64]) -> String {
    let customer = store
        .create_customer(&crm_core::NewCustomer::new("Tie", "tie@example.com", None).unwrap())
        .await
        .unwrap();
    let product = store
        .create_product(
            &crm_core::NewProduct::new("Pen", rust_decimal::Decimal::new(150, 2), 5).unwrap(),
        )
        .await
        .unwrap();
    let mut expected = Vec::new();
    for &minutes in minutes_ago {
        let date = now() - chrono::Duration::minutes(minutes);
        let order = crm_core::NewOrder::new(customer.id, &[product.id], Some(date)).unwrap();
        let order = store.create_order(&order, now()).await.unwrap();
        if minutes <= 7 * 24 * 60 {
            expected.push((date, order.id));
        }
    }
    expected.sort();
    expected
        .iter()
        .map(|(_, id)| format!("{NOW_STAMP} - Reminder: order {id} for tie@example.com\n"))
        .collect()
}

/// Dates over the week (and two outside it), with ties, for pages of a few orders.
const MINUTES_AGO: [i64; 23] = [
    5, 600, 5, 3000, 5, 20, 9000, 600, 1, 0, 10079, 10080, 10081, 20000, 5, 600, 42, 42, 42, 42,
    3000, 7000, 1,
];

#[async_std::test]
async fn reminders_over_many_graphql_pages_are_logged_oldest_first_ties_by_id() {
    let db = TestDb::sqlite().await;
    let store = db.database().clone();
    let expected = orders_with_ties(&store, &MINUTES_AGO).await;
    let crm = spawn_crm_with(db, None, |server| server.max_page_size = 4).await;
    let job = SendOrderReminders::new(client(&crm), &crm.config);

    let outcome = job.run(&ctx_now(false)).await.unwrap();

    assert_eq!(crm.log("order_reminders_log.txt"), expected);
    assert_eq!(outcome, "Logged reminders for 21 orders");
}

#[async_std::test]
async fn reminders_in_process_read_the_week_in_keyset_pages_ties_by_id() {
    let db = TestDb::sqlite().await;
    let store = db.database().clone();
    let expected = orders_with_ties(&store, &MINUTES_AGO).await;
    let crm = offline_crm(db).await;
    for page_size in [1, 3, 4, 21, 1000] {
        let access = InProcessCrm::new(crm.store.clone()).with_page_size(page_size);
        let job = SendOrderReminders::new(access, &crm.config);
        let path = crm.logs.path().join("order_reminders_log.txt");
        let _ = std::fs::remove_file(&path);

        let outcome = job.run(&ctx_now(false)).await.unwrap();

        assert_eq!(
            crm.log("order_reminders_log.txt"),
            expected,
            "pages of {page_size}"
        );
        assert_eq!(outcome, "Logged reminders for 21 orders");
    }
}

#[async_std::test]
async fn a_week_without_orders_logs_nothing_and_creates_no_file() {
    let crm = offline_crm(TestDb::sqlite().await).await;
    let job = SendOrderReminders::new(InProcessCrm::new(crm.store.clone()), &crm.config);

    let outcome = job.run(&ctx_now(false)).await.unwrap();

    assert_eq!(outcome, "Logged reminders for 0 orders");
    assert!(!crm.logs.path().join("order_reminders_log.txt").exists());
}

// ---- log_crm_heartbeat ----

#[async_std::test]
async fn the_heartbeat_logs_that_the_crm_is_alive_and_keeps_earlier_lines() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let job = LogCrmHeartbeat::new(client(&crm), &crm.config);
    let first = Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap();
    let second = first + chrono::Duration::minutes(5);

    job.run(&JobContext::new(first, first, false))
        .await
        .unwrap();
    job.run(&JobContext::new(second, second, false))
        .await
        .unwrap();

    // New York in winter is UTC-5.
    assert_eq!(
        crm.log("crm_heartbeat_log.txt"),
        "01/01/2026-22:05:00 CRM is alive\n01/01/2026-22:10:00 CRM is alive\n"
    );
}

#[cfg(unix)]
#[async_std::test]
async fn log_files_are_created_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = spawn_crm(db, None).await;

    for job in standard_jobs(&crm.config, crm.store.clone()).unwrap() {
        job.run(&ctx_now(false)).await.unwrap();
    }

    let mut files: Vec<String> = std::fs::read_dir(crm.logs.path())
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", entry.path());
            entry.file_name().into_string().unwrap()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "crm_heartbeat_log.txt",
            "crm_report_log.txt",
            "customer_cleanup_log.txt",
            "low_stock_updates_log.txt",
            "order_reminders_log.txt",
        ]
    );
}

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
async fn restocking_touches_exactly_the_products_below_ten_and_logs_each() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, Some("restock-token")).await;
    let job = UpdateLowStock::new(client(&crm), &crm.config);

    let outcome = job.run(&ctx_now(false)).await.unwrap();

    let expected: String = seeded
        .low_stock
        .iter()
        .map(|(name, stock)| format!("{NOW_STAMP} - {name}: stock now {stock}\n"))
        .collect();
    assert_eq!(
        expected,
        format!("{NOW_STAMP} - Laptop: stock now 10\n{NOW_STAMP} - Mouse: stock now 19\n")
    );
    assert_eq!(crm.log("low_stock_updates_log.txt"), expected);
    assert_eq!(outcome, "Restocked 2 products");
    let mut all: Vec<(String, i32)> = seeded.low_stock.clone();
    all.extend(seeded.enough_stock.clone());
    all.sort();
    assert_eq!(stock_by_name(&crm).await, all);
}

/// A tick run again after its first attempt's restock committed (the answer was lost, or the
/// run was cut short) restocks nothing more, over GraphQL and in process: the tick is the
/// restock's idempotency key. The retry logs the first attempt's products; a new tick restocks.
async fn a_tick_rerun_restocks_nothing_more(crm: &Crm, access: impl CrmAccess + Clone) {
    let job = UpdateLowStock::new(access.clone(), &crm.config);
    assert_eq!(
        job.run(&ctx_now(false)).await.unwrap(),
        "Restocked 2 products"
    );
    let later = crm
        .store
        .create_product(&crm_core::NewProduct::new("Cable", "3.00".parse().unwrap(), 1).unwrap())
        .await
        .unwrap();
    let before = stock_by_name(crm).await;

    let retry = ctx_now(false).with_run(crm_jobs::RunId(1), 2);
    let outcome = job.run(&retry).await.unwrap();

    assert_eq!(
        outcome,
        "Restocked 2 products (by this tick's earlier attempt; nothing changed now)"
    );
    assert_eq!(stock_by_name(crm).await, before, "nothing restocked twice");
    let log = crm.log("low_stock_updates_log.txt");
    assert_eq!(log.matches(": stock now").count(), 4, "{log}");

    let next_tick = now() + chrono::TimeDelta::hours(12);
    let next = UpdateLowStock::new(access, &crm.config)
        .run(&JobContext::new(next_tick, next_tick, false))
        .await
        .unwrap();
    assert_eq!(next, "Restocked 1 products");
    let cable = crm.store.products_by_ids(&[later.id]).await.unwrap();
    assert_eq!(cable[0].stock, 11);
}

#[async_std::test]
async fn a_tick_rerun_over_graphql_restocks_nothing_more() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = spawn_crm(db, Some("restock-token")).await;
    a_tick_rerun_restocks_nothing_more(&crm, client(&crm)).await;
}

#[async_std::test]
async fn a_tick_rerun_in_process_restocks_nothing_more() {
    let db = TestDb::postgres().await;
    seed(&db).await;
    let crm = offline_crm(db).await;
    let access = Arc::new(InProcessCrm::new(crm.store.clone()));
    a_tick_rerun_restocks_nothing_more(&crm, access).await;
}

#[async_std::test]
async fn a_restock_dry_run_lists_the_low_products_and_changes_nothing() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = spawn_crm(db, Some("restock-token")).await;
    let before = stock_by_name(&crm).await;
    let job = UpdateLowStock::new(client(&crm), &crm.config);

    let outcome = job.run(&ctx_now(true)).await.unwrap();

    assert_eq!(outcome, "Would restock 2 products (dry run)");
    assert_eq!(stock_by_name(&crm).await, before);
    assert!(!crm.logs.path().join("low_stock_updates_log.txt").exists());
}

// ---- generate_crm_report ----

#[async_std::test]
async fn the_report_logs_the_databases_totals() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, None).await;
    let totals = crm.store.totals().await.unwrap();
    let job = GenerateCrmReport::new(client(&crm), &crm.config);

    job.run(&ctx_now(false)).await.unwrap();

    assert_eq!((totals.customers, totals.orders), (6, seeded.orders));
    assert_eq!(totals.revenue, seeded.revenue);
    assert_eq!(
        crm.log("crm_report_log.txt"),
        format!(
            "{NOW_STAMP} - Report: 6 customers, 8 orders, {:.2} revenue.\n",
            seeded.revenue
        )
    );
    assert_eq!(seeded.revenue.to_string(), "2196.48");
}

#[async_std::test]
async fn an_unwritable_log_directory_fails_the_run_with_the_path() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let crm = offline_crm(db).await;
    let before = customer_ids(&crm).await;
    // A regular file where the directory should be: unwritable even for root.
    let not_a_dir = crm.logs.path().join("plain-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let config = crm.config.clone().with_log_dir(&not_a_dir);
    let job = CleanInactiveCustomers::new(InProcessCrm::new(crm.store.clone()), &config);

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
    // The log is opened before the deletion: nobody was deleted unrecorded.
    assert_eq!(customer_ids(&crm).await, before);
}

// ---- the client ----

#[async_std::test]
async fn the_bearer_token_is_sent_and_a_missing_one_is_a_graphql_error() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, Some("right-token")).await;
    let before = stock_by_name(&crm).await;
    let no_token = GraphqlClient::with_endpoint(&crm.url, None, Duration::from_secs(10)).unwrap();
    let wrong_token =
        GraphqlClient::with_endpoint(&crm.url, Some("wrong-token"), Duration::from_secs(10))
            .unwrap();

    for refused in [no_token, wrong_token] {
        let err = refused.update_low_stock_products(None).await.unwrap_err();
        let GraphqlError::Graphql { messages } = &err else {
            panic!("expected GraphQL errors, got {err:?}");
        };
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(!err.to_string().contains("right-token"), "{err}");
        assert_eq!(stock_by_name(&crm).await, before, "nothing written");
    }
    let restocked = client(&crm).update_low_stock_products(None).await.unwrap();
    assert_eq!(restocked.products.len(), seeded.low_stock.len());
}

#[async_std::test]
async fn an_http_error_status_is_mapped_with_its_status() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    let wrong_path = crm.url.replace("/graphql", "/no-such-path");
    let client = GraphqlClient::with_endpoint(&wrong_path, None, Duration::from_secs(10)).unwrap();

    let err = client.hello().await.unwrap_err();

    assert!(
        matches!(err, GraphqlError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("HTTP 404 from {wrong_path}"))
    );
}

#[async_std::test]
async fn the_real_endpoint_says_hello() {
    let crm = spawn_crm(TestDb::sqlite().await, None).await;
    assert_eq!(client(&crm).hello().await.unwrap(), "Hello, GraphQL!");
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

// ---- PostgreSQL, once ----

#[async_std::test]
async fn all_five_jobs_write_the_contracts_lines_over_postgresql() {
    let db = TestDb::postgres().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, Some("pg-token")).await;
    let jobs = standard_jobs(&crm.config, crm.store.clone()).unwrap();
    let codes: Vec<&str> = jobs.iter().map(|j| j.code()).collect();
    assert_eq!(
        codes,
        [
            "clean_inactive_customers",
            "send_order_reminders",
            "log_crm_heartbeat",
            "update_low_stock",
            "generate_crm_report",
        ]
    );

    for job in &jobs {
        job.run(&ctx_now(false)).await.unwrap();
    }

    assert_the_contracts_lines(&crm, &seeded).await;
}

// ---- the in-process CRM access: no server ----

#[async_std::test]
async fn all_five_jobs_write_the_contracts_lines_in_process_without_a_server() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = offline_crm(db).await;
    let access: Arc<dyn CrmAccess> = Arc::new(InProcessCrm::new(crm.store.clone()));

    for job in jobs_with_access(&crm.config, access) {
        job.run(&ctx_now(false)).await.unwrap();
    }

    assert_the_contracts_lines(&crm, &seeded).await;
}

#[async_std::test]
async fn an_in_process_low_stock_dry_run_lists_the_low_products_and_changes_nothing() {
    let db = TestDb::postgres().await;
    let seeded = seed(&db).await;
    let crm = offline_crm(db).await;
    let before = stock_by_name(&crm).await;
    let job = UpdateLowStock::new(InProcessCrm::new(crm.store.clone()), &crm.config);

    let outcome = job.run(&ctx_now(true)).await.unwrap();

    assert_eq!(
        outcome,
        format!(
            "Would restock {} products (dry run)",
            seeded.low_stock.len()
        )
    );
    assert_eq!(stock_by_name(&crm).await, before);
    assert!(!crm.logs.path().join("low_stock_updates_log.txt").exists());
}

#[async_std::test]
async fn the_graphql_access_refuses_the_cleanup_and_says_what_to_use() {
    let db = TestDb::sqlite().await;
    let seeded = seed(&db).await;
    let crm = spawn_crm(db, None).await;
    let job = CleanInactiveCustomers::new(client(&crm), &crm.config);

    let err = job.run(&ctx_now(false)).await.unwrap_err();

    assert!(matches!(err, JobError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("InProcessCrm"), "{err}");
    assert_eq!(
        customer_ids(&crm).await.len(),
        seeded.active.len() + seeded.inactive.len()
    );
}
