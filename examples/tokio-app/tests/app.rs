//! The tokio app as a user runs it: the real binary on a fresh SQLite file in a temporary
//! directory, its real log files, SIGTERM from outside, and `cargo tree` on its dependencies.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::NaiveDateTime;

/// The app with a database and a log directory in `dir`.
fn app(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm-tokio-app"));
    command
        .env(
            "CRM_DATABASE_URL",
            format!("sqlite://{}", dir.join("crm.db").display()),
        )
        .env("CRM_LOG_DIR", dir.join("logs"))
        .env("CRM_TIME_ZONE", "UTC")
        .env("RUST_LOG", "warn");
    command
}

fn run_once(dir: &Path) -> Output {
    let output = app(dir).arg("--once").output().unwrap();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The lines of the log file `name`, each checked to start with the contract's `YYYY-MM-DD
/// HH:MM:SS - ` stamp, without it.
fn event_lines(dir: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("logs").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(text.ends_with('\n'), "{name}: {text:?}");
    text.lines()
        .map(|line| {
            let (stamp, event) = line
                .split_once(" - ")
                .unwrap_or_else(|| panic!("{name}: no ' - ' in {line:?}"));
            NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("{name}: bad stamp in {line:?}: {e}"));
            event.to_owned()
        })
        .collect()
}

/// The text after `prefix` and before `suffix` in `line`, or a failure that shows the line.
fn between<'a>(line: &'a str, prefix: &str, suffix: &str) -> &'a str {
    line.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{line:?} is not '{prefix}…{suffix}'"))
}

#[test]
fn once_migrates_adds_demo_data_and_runs_every_job_once_with_the_contracts_lines() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_once(dir.path());

    let stdout = String::from_utf8(output.stdout).unwrap();
    let codes: Vec<&str> = stdout
        .lines()
        .map(|line| line.split(':').next().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "clean_inactive_customers",
            "send_order_reminders",
            "log_crm_heartbeat",
            "update_low_stock",
            "generate_crm_report",
            "log_tokio_uptime",
        ],
        "{stdout}"
    );
    assert!(
        stdout.lines().all(|line| line.contains(": succeeded (")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("Empty database: added 40 customers"));

    let cleanup = event_lines(dir.path(), "customer_cleanup_log.txt");
    assert_eq!(cleanup.len(), 1);
    between(&cleanup[0], "Deleted ", " inactive customers")
        .parse::<u32>()
        .unwrap();

    let reminders = event_lines(dir.path(), "order_reminders_log.txt");
    assert!(
        !reminders.is_empty(),
        "the demo data has last week's orders"
    );
    for line in &reminders {
        let (id, email) = between(line, "Reminder: order ", "")
            .split_once(" for ")
            .unwrap();
        id.parse::<u64>().unwrap();
        assert!(email.contains('@'), "{line}");
    }

    let heartbeat = std::fs::read_to_string(dir.path().join("logs/crm_heartbeat_log.txt")).unwrap();
    let stamp = between(heartbeat.trim_end_matches('\n'), "", " CRM is alive");
    NaiveDateTime::parse_from_str(stamp, "%d/%m/%Y-%H:%M:%S").unwrap();
    assert_eq!(heartbeat.lines().count(), 1);

    let restocked = event_lines(dir.path(), "low_stock_updates_log.txt");
    assert!(!restocked.is_empty(), "the demo data has products below 10");
    for line in &restocked {
        let stock: i32 = line.rsplit_once(": stock now ").unwrap().1.parse().unwrap();
        assert!(stock >= 10, "{line}");
    }

    let report = event_lines(dir.path(), "crm_report_log.txt");
    assert_eq!(report.len(), 1);
    let totals = between(&report[0], "Report: ", " revenue.");
    let revenue = totals.rsplit_once(" orders, ").unwrap().1;
    assert_eq!(revenue.split_once('.').unwrap().1.len(), 2, "{totals}");

    let own = event_lines(dir.path(), "tokio_app_log.txt");
    assert_eq!(own.len(), 1);
    between(&own[0], "tokio app up on ", " worker threads");
}

#[test]
fn a_database_with_data_gets_no_more_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    run_once(dir.path());

    let second = run_once(dir.path());

    assert!(!String::from_utf8_lossy(&second.stderr).contains("Empty database"));
    let report = event_lines(dir.path(), "crm_report_log.txt");
    assert_eq!(report.len(), 2);
    // The first run's cleanup left only customers who stay; the second finds no one to delete.
    assert_eq!(
        event_lines(dir.path(), "customer_cleanup_log.txt")[1],
        "Deleted 0 inactive customers"
    );
}

/// Reads `child`'s stderr until a line containing `wanted` (failing after `limit` without
/// one); the rest of its lines come through the returned receiver.
fn wait_for_stderr(child: &mut Child, wanted: &str, limit: Duration) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(limit) {
            Ok(line) if line.contains(wanted) => return rx,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no '{wanted}' on stderr ({e}); saw {seen:?}"),
        }
    }
}

#[test]
fn sigterm_stops_the_running_app_which_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = app(dir.path()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = wait_for_stderr(&mut child, "until SIGINT/SIGTERM", Duration::from_secs(60));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let mut rest = Vec::new();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(30)) {
        rest.push(line);
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status:?}; stderr after SIGTERM: {rest:?}"
    );
    assert!(
        rest.iter()
            .any(|line| line.starts_with("Stopping: letting")),
        "{rest:?}"
    );
}

#[test]
fn its_dependency_tree_has_tokio_and_no_async_std() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "-p",
            "crm-tokio-app",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let tree = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(names.contains(&"tokio"), "{tree}");
    assert!(names.contains(&"crm-jobs"), "{tree}");
    for absent in [
        "async-std",
        "surf",
        "tide",
        "redis",
        "http-types",
        "async-h1",
    ] {
        assert!(!names.contains(&absent), "{absent} in\n{tree}");
    }
}
