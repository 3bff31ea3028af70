//! The tokio app as a user runs it: the real binary on a fresh SQLite file in a temporary
//! directory, its real log files, SIGTERM from outside, the GraphQL mode against a real
//! `crm serve`, and `cargo tree` on its dependencies.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::NaiveDateTime;

/// `program` with none of the caller's `CRM_*` settings (a `CRM_GRAPHQL_URL` in the test's
/// environment would switch the app to its GraphQL mode).
fn without_crm_settings(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("CRM_") {
            command.env_remove(key);
        }
    }
    command
}

/// The app with a database and a log directory in `dir`.
fn app(dir: &Path) -> Command {
    let mut command = without_crm_settings(Path::new(env!("CARGO_BIN_EXE_crm-tokio-app")));
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
    // The GraphQL client is in (hyper on tokio), the async-std HTTP stack is not.
    for present in ["tokio", "crm-jobs", "hyper", "tokio-rustls", "cynic"] {
        assert!(names.contains(&present), "{present} missing in\n{tree}");
    }
    for absent in [
        "async-std",
        "surf",
        "tide",
        "redis",
        "http-types",
        "async-h1",
        "http-client",
        "futures-rustls",
    ] {
        assert!(!names.contains(&absent), "{absent} in\n{tree}");
    }
}

/// The `crm` binary beside the app's: `cargo test --workspace` builds it (crm-cli's tests run
/// it); `cargo test -p crm-tokio-app` alone uses the one last built.
fn crm_binary() -> PathBuf {
    let crm = Path::new(env!("CARGO_BIN_EXE_crm-tokio-app")).with_file_name("crm");
    assert!(
        crm.exists(),
        "{} is missing: build it with `cargo build -p crm-cli` (cargo test --workspace does)",
        crm.display()
    );
    crm
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `crm serve` on a free port over its own SQLite file in `dir`, with a little seeded
/// data (7 customers, 5 products, 30 orders) and the API token `token`; returns it and its
/// GraphQL URL.
fn crm_serve(dir: &Path, token: &str) -> (KillOnDrop, String) {
    let crm = |args: &[&str]| {
        let mut command = without_crm_settings(&crm_binary());
        command
            .current_dir(dir)
            .env(
                "CRM_DATABASE_URL",
                format!("sqlite://{}", dir.join("server.db").display()),
            )
            .env("CRM_LOG_DIR", dir.join("server-logs"))
            .env("CRM_API_TOKEN", token)
            .env("CRM_TIME_ZONE", "UTC")
            .env("RUST_LOG", "error")
            .args(args);
        command
    };
    let seeded = crm(&[
        "seed",
        "--customers",
        "7",
        "--products",
        "5",
        "--orders",
        "30",
        "--seed",
        "7",
    ])
    .output()
    .unwrap();
    assert!(seeded.status.success(), "crm seed: {seeded:?}");
    let mut child = KillOnDrop(
        crm(&["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut banner = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/graphql"))
        .unwrap_or_else(|| panic!("crm serve printed no URL: {banner:?}"))
        .to_owned();
    (child, url)
}

#[test]
fn with_crm_graphql_url_the_jobs_ask_a_real_crm_serve_over_tokio() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = crm_serve(dir.path(), "tokio-app-t0ken");

    let output = app(dir.path())
        .env("CRM_GRAPHQL_URL", &url)
        .env("CRM_API_TOKEN", "tokio-app-t0ken")
        .arg("--once")
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stderr.contains(&format!(
            "The jobs ask the GraphQL API at {url} (over tokio); the cleanup works on the database"
        )),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
    // The report's totals are the server's (7 customers, 30 orders), not those of the app's own
    // database (40 customers, 200 orders of demo data, less the cleanup's).
    let report = event_lines(dir.path(), "crm_report_log.txt");
    assert_eq!(report.len(), 1);
    assert!(
        report[0].starts_with("Report: 7 customers, 30 orders, "),
        "{report:?}"
    );
    let heartbeat = std::fs::read_to_string(dir.path().join("logs/crm_heartbeat_log.txt")).unwrap();
    assert!(heartbeat.ends_with(" CRM is alive\n"), "{heartbeat}");
    for line in event_lines(dir.path(), "low_stock_updates_log.txt") {
        let stock: i32 = line.rsplit_once(": stock now ").unwrap().1.parse().unwrap();
        assert!(stock >= 10, "{line}");
    }
    for line in event_lines(dir.path(), "order_reminders_log.txt") {
        assert!(line.starts_with("Reminder: order "), "{line}");
    }

    // The mutation really went to the server: without its token, the restock is refused there.
    let refused = app(dir.path())
        .env("CRM_GRAPHQL_URL", &url)
        .env("CRM_API_TOKEN", "not-the-t0ken")
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("update_low_stock: failed (")),
        "{stdout}"
    );
}
