//! Each example runs and does what its opening comment says.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use crm::core::testing::TestDb;
use crm::core::{CrmStore, SeedConfig};
use crm::server::{BoundServer, ServerConfig};

/// `cargo test` builds the examples beside the test binaries: `target/<profile>/examples/`.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path: PathBuf = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    let mut command = Command::new(path);
    for (key, _) in std::env::vars() {
        if key.starts_with("CRM_") {
            command.env_remove(key);
        }
    }
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[async_std::test]
async fn send_order_reminders_logs_last_weeks_orders_and_says_so() {
    let db = TestDb::sqlite().await;
    crm::core::seed(
        db.database(),
        &SeedConfig::demo(chrono::Utc::now()),
        &mut |_| {},
    )
    .await
    .unwrap();
    let store: Arc<dyn CrmStore> = Arc::new(db.database().clone());
    let week_ago = chrono::Utc::now() - chrono::TimeDelta::days(7);
    let expected = store
        .orders_between(week_ago, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        !expected.is_empty(),
        "demo data has orders in the last week"
    );
    let server = BoundServer::bind(
        store,
        ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let url = server.graphql_url();
    async_std::task::spawn(server.run());
    let logs = tempfile::tempdir().unwrap();

    let output = async_std::task::spawn_blocking({
        let logs = logs.path().to_owned();
        move || {
            example("send_order_reminders")
                .env("CRM_GRAPHQL_URL", url)
                .env("CRM_LOG_DIR", logs)
                .output()
                .unwrap()
        }
    })
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "Order reminders processed!\n");
    let log = std::fs::read_to_string(logs.path().join("order_reminders_log.txt")).unwrap();
    assert_eq!(log.lines().count(), expected.len());
    for reminder in &expected {
        let wanted = format!(
            " - Reminder: order {} for {}",
            reminder.order_id, reminder.customer_email
        );
        assert!(
            log.lines().any(|l| l.ends_with(&wanted)),
            "{wanted} missing"
        );
    }
}

#[test]
fn send_order_reminders_says_why_when_the_endpoint_is_down() {
    let output = example("send_order_reminders")
        .env("CRM_GRAPHQL_URL", "http://127.0.0.1:9/graphql")
        .env("CRM_LOG_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(!stdout.contains("processed"), "{stdout}");
    assert!(stderr.contains("not responding"), "{stderr}");
}

#[test]
fn custom_job_runs_a_sixth_job_and_logs_it() {
    let output = example("custom_job").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("dry run: "), "{stdout}");
    let log_line = stdout
        .lines()
        .find(|l| l.starts_with("log: "))
        .expect(&stdout);
    assert!(log_line.ends_with("in the last 24 hours"), "{log_line}");
}

#[test]
fn embed_own_scheduler_runs_each_job_at_its_times_over_a_day() {
    let output = example("embed_own_scheduler").arg("24").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    // From Sunday 00:00 to Monday 00:00 inclusive.
    for (code, runs) in [
        ("clean_inactive_customers", 1),
        ("flush_caches", 49),
        ("log_crm_heartbeat", 289),
        ("send_order_reminders", 1),
        ("update_low_stock", 3),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(code))
            .unwrap_or_else(|| panic!("{code} missing:\n{stdout}"));
        assert!(
            line.contains(&format!(" {runs} succeeded, 0 failed")),
            "{line}\n{stderr}"
        );
    }
    assert!(
        !stdout.contains("generate_crm_report"),
        "Monday 06:00 is outside the day"
    );
}
