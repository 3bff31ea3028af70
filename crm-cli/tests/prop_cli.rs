//! Property test of the operator's command line against bad input (issue 8, row P3): `crm jobs
//! schedule`, `crm jobs at` and `crm jobs disable` with generated bad schedules, instants and
//! job codes, with the real binary over a real SQLite file. Each is refused with exit 2 and one
//! line on stderr naming the reason (never a panic, never the whole megabyte back), and nothing
//! is stored: no override, no audit row, no change counted.

#[path = "support/process.rs"]
mod process;
use process::{assert_exit, crm_in, stderr};

use std::path::Path;
use std::process::Output;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

fn run(dir: &Path, args: &[&str]) -> Output {
    crm_in(dir)
        .env("CRM_LOG_DIR", dir)
        .env("USER", "operator")
        .args(args)
        .output()
        .expect("crm runs")
}

/// `n` values of `strategy`, drawn up front.
fn draw<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// A bad command line, and a word its refusal must contain.
fn bad_command() -> impl Strategy<Value = (Vec<String>, &'static str)> {
    let schedule = prop_oneof![
        (60..10_000u32).prop_map(|m| (format!("{m} * * * *"), "invalid cron expression")),
        (24..1_000u32).prop_map(|h| (format!("0 {h} * * *"), "invalid cron expression")),
        Just(("*/0 * * * *".to_owned(), "invalid cron expression")),
        Just(("1,,2 * * * *".to_owned(), "empty list item")),
        Just(("* * * * * *".to_owned(), "expected 5 fields")),
        Just(("0 0 30 2 *".to_owned(), "never fires again")),
        Just(("every 0 minutes".to_owned(), "at least 1 minute")),
        Just(("at 24:00".to_owned(), "invalid time of day")),
        Just(("0 8 * * * in Mars/Olympus".to_owned(), "unknown time zone")),
        Just((
            "$(touch pwned) * * * *".to_owned(),
            "invalid cron expression"
        )),
        Just(("0 8 * * *; rm -rf ~".to_owned(), "invalid cron expression")),
        (600..100_000usize).prop_map(|n| ("*".repeat(n), "at most 500 characters")),
        "[a-z0-9 */,-]{1,30}"
            .prop_filter("not a schedule", |s| {
                !s.trim().is_empty() && s.parse::<crm_jobs::Schedule>().is_err()
            })
            .prop_map(|s| (s, "schedule")),
    ]
    .prop_map(|(s, why)| {
        let mut args: Vec<String> = vec![
            "jobs".into(),
            "schedule".into(),
            "send_order_reminders".into(),
        ];
        // Text starting with `-` would be taken as an option (a usage error): the operator
        // passes it after `--`.
        if s.starts_with('-') {
            args.push("--".into());
        }
        args.push(s);
        (args, why)
    });
    let instant = prop_oneof![
        Just(("tomorrow".to_owned(), "RFC 3339")),
        Just(("2001-01-01T00:00:00Z".to_owned(), "in the past")),
        Just(("+275760-01-01T00:00:00Z".to_owned(), "RFC 3339")),
        Just(("2030-02-30T00:00:00Z".to_owned(), "RFC 3339")),
        "[0-9T:Z+-]{1,25}"
            .prop_filter("not RFC 3339", |s| chrono::DateTime::parse_from_rfc3339(s)
                .is_err())
            .prop_map(|s| (s, "RFC 3339")),
    ]
    .prop_map(|(at, why)| {
        (
            vec!["jobs".into(), "at".into(), "update_low_stock".into(), at],
            why,
        )
    });
    let code = prop_oneof![
        Just("no_such_job".to_owned()),
        Just("log_crm_heartbeat; rm -rf ~".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("LOG_CRM_HEARTBEAT".to_owned()),
        "[a-z_]{1,20}".prop_filter("unknown", |c| {
            ![
                "clean_inactive_customers",
                "send_order_reminders",
                "log_crm_heartbeat",
                "update_low_stock",
                "generate_crm_report",
            ]
            .contains(&c.as_str())
        }),
    ]
    .prop_map(|c| (vec!["jobs".into(), "disable".into(), c], "not found"));
    prop_oneof![3 => schedule, 1 => instant, 1 => code]
}

#[test]
fn p3_the_command_line_refuses_bad_schedules_instants_and_codes_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert_exit(&run(dir, &["migrate"]), 0);
    for (mut args, why) in draw(bad_command(), 40) {
        // A value starting with `-` would be taken as an option: operators pass it after `--`.
        let last = args.len() - 1;
        if args[last].starts_with('-') && args[last - 1] != "--" {
            args.insert(last, "--".into());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown: Vec<String> = args.iter().map(|a| a.chars().take(80).collect()).collect();
        let output = run(dir, &argv);
        assert_exit(&output, 2);
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{shown:?}: {err}");
        assert!(
            err.len() < 2_000,
            "{shown:?}: {} bytes on stderr",
            err.len()
        );
        assert!(
            err.to_lowercase().contains(&why.to_lowercase()),
            "{shown:?}: {why:?} not in {err}"
        );
        assert!(!err.contains("panicked"), "{shown:?}: {err}");
    }
    let db = async_std::task::block_on(crm_core::Database::connect(&format!(
        "sqlite://{}",
        dir.join("crm.db").display()
    )))
    .unwrap();
    use crm_core::overrides::OverrideStore;
    async_std::task::block_on(async {
        assert_eq!(OverrideStore::version(&db).await.unwrap(), 0);
        assert!(
            OverrideStore::audit(&db, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            OverrideStore::snapshot(&db)
                .await
                .unwrap()
                .overrides
                .is_empty()
        );
    });
}
