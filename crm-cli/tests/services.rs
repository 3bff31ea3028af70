//! Operators' run-time controls and running `crm` as a service, with the real binary: `crm jobs
//! enable|disable|schedule|at` (and their refusals, exit 2), a running scheduler obeying a
//! change made by another `crm` process, SIGHUP and SIGTERM, and the example systemd units
//! and Supervisord programs (`systemd-analyze verify`, and every command line they start is a
//! real `crm` subcommand).

#[path = "support/process.rs"]
mod process;
use crm_core::testing::promtool_problems;
use process::{
    CRM, KillOnDrop, assert_exit, crm_in, quiet_schedules, read_metrics_url, read_served_url,
    sample, scrape, stderr, stdout, wait_for_line, wait_until_some,
};

use std::io::{BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (examples live there).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `crm` in `dir`, with none of the caller's `CRM_*` settings, logs in `dir`, times in UTC.
fn crm(dir: &Path) -> Command {
    let mut command = crm_in(dir);
    command.env("CRM_LOG_DIR", dir).env("USER", "operator");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    crm(dir).args(args).output().expect("crm runs")
}

/// The `jobs list` row of `code`.
fn list_row(dir: &Path, code: &str) -> String {
    let output = run(dir, &["jobs", "list"]);
    assert_exit(&output, 0);
    stdout(&output)
        .lines()
        .find(|l| l.starts_with(code))
        .unwrap_or_else(|| panic!("no row for {code}"))
        .to_owned()
}

#[test]
fn operators_pause_reschedule_and_add_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let paused = run(dir, &["jobs", "disable", "log_crm_heartbeat"]);
    assert_exit(&paused, 0);
    assert!(
        stdout(&paused).contains("log_crm_heartbeat: paused"),
        "{}",
        stdout(&paused)
    );
    let row = list_row(dir, "log_crm_heartbeat");
    assert!(row.contains("paused"), "{row}");
    assert!(!row.contains("missed"), "{row}");

    let resumed = run(dir, &["jobs", "enable", "log_crm_heartbeat"]);
    assert_exit(&resumed, 0);
    assert!(
        stdout(&resumed).contains("next run"),
        "{}",
        stdout(&resumed)
    );
    assert!(!list_row(dir, "log_crm_heartbeat").contains("paused"));

    // Words as separate arguments or one quoted argument, the same.
    let replaced = run(
        dir,
        &[
            "jobs",
            "schedule",
            "send_order_reminders",
            "every",
            "10",
            "minutes",
        ],
    );
    assert_exit(&replaced, 0);
    let row = list_row(dir, "send_order_reminders");
    assert!(row.contains("every 10 minutes in UTC (override)"), "{row}");
    let restored = run(
        dir,
        &["jobs", "schedule", "send_order_reminders", "--default"],
    );
    assert_exit(&restored, 0);
    let row = list_row(dir, "send_order_reminders");
    assert!(row.contains("0 8 * * * in UTC"), "{row}");
    assert!(!row.contains("override"), "{row}");

    let one_off = run(
        dir,
        &[
            "jobs",
            "at",
            "update_low_stock",
            "2031-01-02T03:04:05+01:00",
        ],
    );
    assert_exit(&one_off, 0);
    assert!(
        stdout(&one_off).contains("one-off run at 2031-01-02 02:04:05 UTC"),
        "{}",
        stdout(&one_off)
    );

    // Refusals: exit 2, one line naming the reason, nothing stored.
    for (args, reason) in [
        (
            &["jobs", "schedule", "send_order_reminders", "61 * * * *"][..],
            "'61 * * * *'",
        ),
        (
            &[
                "jobs",
                "schedule",
                "send_order_reminders",
                "0 8 * * * in Mars/Base",
            ][..],
            "Mars/Base",
        ),
        (&["jobs", "disable", "no_such_job"][..], "'no_such_job'"),
        (&["jobs", "enable", "no_such_job"][..], "'no_such_job'"),
        (
            &["jobs", "schedule", "no_such_job", "--default"][..],
            "'no_such_job'",
        ),
        (
            &["jobs", "at", "no_such_job", "2031-01-01T00:00:00Z"][..],
            "'no_such_job'",
        ),
        (
            &["jobs", "at", "update_low_stock", "tomorrow"][..],
            "RFC 3339",
        ),
        (
            &["jobs", "at", "update_low_stock", "2001-01-01T00:00:00Z"][..],
            "in the past",
        ),
    ] {
        let output = run(dir, args);
        assert_exit(&output, 2);
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let row = list_row(dir, "send_order_reminders");
    assert!(row.contains("0 8 * * * in UTC"), "nothing stored: {row}");

    // Who changed what is on record, in the database the CLI uses.
    let db = async_std::task::block_on(crm_core::Database::connect(&format!(
        "sqlite://{}",
        dir.join("crm.db").display()
    )))
    .unwrap();
    let audit =
        async_std::task::block_on(crm_core::overrides::OverrideStore::audit(&db, None, 100))
            .unwrap();
    let actions: Vec<_> = audit
        .iter()
        .rev()
        .map(|e| (e.actor.as_str(), e.code.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("cli:operator", "log_crm_heartbeat", "disable"),
            ("cli:operator", "log_crm_heartbeat", "enable"),
            ("cli:operator", "send_order_reminders", "schedule"),
            ("cli:operator", "send_order_reminders", "default_schedule"),
            ("cli:operator", "update_low_stock", "run_at"),
        ]
    );
}

#[test]
fn a_running_scheduler_obeys_a_one_off_run_added_by_another_crm_and_survives_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert_exit(&run(dir, &["migrate"]), 0);
    // Nothing serves GraphQL here: the heartbeat then fails fast, and is recorded all the same.
    let mut scheduler = KillOnDrop(
        crm(dir)
            .args(["--graphql-url", "http://127.0.0.1:9/graphql", "scheduler"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(scheduler.0.stderr.take().unwrap());
    wait_for_line(&mut stderr, "Scheduler started");

    // SIGHUP is not fatal: logged, ignored.
    let hup = Command::new("kill")
        .args(["-HUP", &scheduler.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for_line(&mut stderr, "SIGHUP received");

    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339();
    let asked = run(dir, &["jobs", "at", "log_crm_heartbeat", &at]);
    assert_exit(&asked, 0);
    let started = Instant::now();
    loop {
        let history = run(dir, &["jobs", "history", "log_crm_heartbeat"]);
        assert_exit(&history, 0);
        if stdout(&history).contains("manual") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the scheduler never ran the one-off run: {}",
            stdout(&history)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        scheduler.0.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );
    let term = Command::new("kill")
        .args(["-TERM", &scheduler.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("Scheduler stopped"), "{rest}");
    assert!(scheduler.0.wait().unwrap().success());
}

/// The units that run `crm` (not the liveness check beside them).
fn unit_files() -> Vec<PathBuf> {
    let mut units: Vec<_> = std::fs::read_dir(root().join("examples/systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .filter(|p| !p.to_string_lossy().ends_with("-healthz.service"))
        .collect();
    units.sort();
    units
}

/// The liveness check's service and timer.
fn healthz_units() -> [PathBuf; 2] {
    ["crm-serve-healthz.service", "crm-serve-healthz.timer"]
        .map(|name| root().join("examples/systemd").join(name))
}

#[test]
fn the_systemd_units_start_serve_with_the_scheduler_a_worker_and_a_beat_hardened() {
    let units = unit_files();
    let names: Vec<_> = units
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "crm-beat.service",
            "crm-serve.service",
            "crm-worker.service"
        ]
    );
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        for setting in [
            "Restart=on-failure",
            "User=crm",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "EnvironmentFile=/etc/crm/crm.env",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=",
            "LogsDirectory=crm",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(setting)),
                "{}: no {setting}",
                unit.display()
            );
        }
    }
}

/// The arguments after the `crm` binary of each command line a unit or program starts.
fn service_command_lines() -> Vec<(String, Vec<String>)> {
    let mut lines = Vec::new();
    for unit in unit_files() {
        for line in std::fs::read_to_string(&unit).unwrap().lines() {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                lines.push((unit.display().to_string(), command.to_owned()));
            }
        }
    }
    let supervisord = root().join("examples/supervisord/crm.conf");
    let mut in_program = false;
    for line in std::fs::read_to_string(&supervisord).unwrap().lines() {
        if line.starts_with('[') {
            // Programs run crm; the event listener runs superlance's httpok.
            in_program = line.starts_with("[program:");
        }
        if let Some(command) = line.strip_prefix("command=").filter(|_| in_program) {
            lines.push((supervisord.display().to_string(), command.to_owned()));
        }
    }
    lines
        .into_iter()
        .map(|(file, command)| {
            let mut words = command.split_whitespace().map(str::to_owned);
            assert_eq!(
                words.next().as_deref(),
                Some("/usr/local/bin/crm"),
                "{file}: {command}"
            );
            (file, words.collect())
        })
        .collect()
}

#[test]
fn every_command_line_the_examples_start_is_a_real_crm_subcommand() {
    let lines = service_command_lines();
    assert_eq!(lines.len(), 6, "three units, three programs");
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("crm.env");
    std::fs::write(&env_file, "CRM_TIME_ZONE=UTC\n").unwrap();
    for (file, args) in lines {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if a == "/etc/crm/crm.env" {
                    env_file.display().to_string()
                } else {
                    a
                }
            })
            .collect();
        // Unknown subcommands or flags make clap fail before it gets to --help.
        let output = crm(dir.path()).args(&args).arg("--help").output().unwrap();
        assert_exit(&output, 0);
        assert!(
            stdout(&output).contains("Usage: crm"),
            "{file}: crm {args:?}: {}",
            stdout(&output)
        );
    }
    let started: Vec<_> = service_command_lines()
        .into_iter()
        .filter_map(|(_, args)| {
            args.iter()
                .find(|a| ["serve", "worker", "beat"].contains(&a.as_str()))
                .cloned()
        })
        .collect();
    assert_eq!(
        started,
        ["beat", "serve", "worker", "serve", "worker", "beat"]
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    if !crm_core::testing::require(
        "systemd_analyze_verify_accepts_the_units",
        crm_core::testing::Need::Systemd,
    ) {
        return;
    }
    // The units name the installed path; verify checks that the binary exists, so it gets a
    // copy pointing at the one just built (the previous test checks the arguments).
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for unit in unit_files().into_iter().chain(healthz_units()) {
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace("/usr/local/bin/crm", CRM);
        let copy = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&output),
        stderr(&output)
    );
}

/// The `ExecStartPost=` readiness wait of `crm-serve.service`, as `/bin/sh` runs it, against
/// a real `crm serve` on `port` (the unit's 8000 replaced), waiting at most `seconds`.
fn readiness_wait(port: u16, seconds: u32) -> Command {
    let unit = std::fs::read_to_string(root().join("examples/systemd/crm-serve.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPost=/bin/sh -c '"))
        .expect("crm-serve.service waits for /readyz");
    let script = line
        .strip_suffix('\'')
        .unwrap()
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
        .replace("seq 60", &format!("seq {seconds}"));
    assert!(script.contains("/readyz"), "{script}");
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

#[test]
fn the_serve_unit_is_started_once_readyz_answers_and_the_examples_check_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KillOnDrop(
        crm(dir.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = read_served_url(&mut BufReader::new(server.0.stdout.take().unwrap()));
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/graphql")
        .parse()
        .unwrap();
    let waited = readiness_wait(port, 30).output().unwrap();
    assert_exit(&waited, 0);
    // Nothing listens on a port just freed: the wait gives up with its reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = readiness_wait(closed_port, 2).output().unwrap();
    assert_exit(&refused, 1);
    assert!(
        stderr(&refused).contains("/readyz not 200"),
        "{}",
        stderr(&refused)
    );

    let [service, timer] = healthz_units().map(|p| std::fs::read_to_string(p).unwrap());
    assert!(
        service.contains("http://127.0.0.1:8000/healthz"),
        "{service}"
    );
    assert!(service.contains("systemctl restart crm-serve.service"));
    assert!(timer.contains("OnUnitActiveSec=1min"), "{timer}");
    let supervisord =
        std::fs::read_to_string(root().join("examples/supervisord/crm.conf")).unwrap();
    assert!(
        supervisord.contains("command=httpok -p crm-serve -t 10 http://127.0.0.1:8000/healthz"),
        "{supervisord}"
    );
}

/// `crm scheduler --metrics-bind`: Prometheus scrapes the scheduler itself and sees the runs it
/// made (a success and a failure), in an exposition Prometheus' own parser accepts, under the
/// token rule of `crm serve`'s `/metrics`.
#[test]
fn a_scheduler_with_metrics_bind_serves_the_runs_it_made_to_prometheus() {
    use crm_core::testing::{Need, require};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let crm = || {
        let mut command = crm(dir);
        // Nothing serves GraphQL here: the heartbeat fails fast, and is recorded all the same.
        command
            .env("CRM_GRAPHQL_URL", "http://127.0.0.1:9/graphql")
            .env("CRM_API_TOKEN", "metrics-s3cret");
        command
    };
    assert_exit(&crm().arg("migrate").output().unwrap(), 0);
    // Only the one-off runs asked for below run, whatever the wall clock's minute.
    quiet_schedules(crm, &[]);
    let mut scheduler = KillOnDrop(
        crm()
            .args(["scheduler", "--metrics-bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let url = read_metrics_url(&mut BufReader::new(scheduler.0.stderr.take().unwrap()));

    // The token rule: no token, no metrics; the liveness check beside it stays open.
    let (status, body) = scrape(&url, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(scrape(&url.replace("/metrics", "/healthz"), None).0, 200);
    assert_eq!(scrape(&url.replace("/metrics", "/graphql"), None).0, 404);
    let (status, before) = scrape(&url, Some("metrics-s3cret"));
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        sample(
            &before,
            r#"crm_job_runs_total{job="clean_inactive_customers",outcome="succeeded"}"#
        ),
        None,
        "{before}"
    );

    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339();
    for code in ["clean_inactive_customers", "log_crm_heartbeat"] {
        assert_exit(&crm().args(["jobs", "at", code, &at]).output().unwrap(), 0);
    }
    let after = wait_until_some(Duration::from_secs(30), || {
        let (status, body) = scrape(&url, Some("metrics-s3cret"));
        assert_eq!(status, 200, "{body}");
        let ran = |series: &str| sample(&body, series).as_deref() == Some("1");
        (ran(r#"crm_job_runs_total{job="clean_inactive_customers",outcome="succeeded"}"#)
            && ran(r#"crm_job_runs_total{job="log_crm_heartbeat",outcome="failed"}"#))
        .then_some(body)
    });
    for series in [
        r#"crm_job_last_success_timestamp_seconds{job="clean_inactive_customers"}"#,
        r#"crm_job_last_failure_timestamp_seconds{job="log_crm_heartbeat"}"#,
        r#"crm_job_duration_seconds_count{job="clean_inactive_customers"}"#,
        r#"crm_job_next_run_timestamp_seconds{job="generate_crm_report"}"#,
        r#"crm_job_health{job="log_crm_heartbeat",state="failing"}"#,
    ] {
        assert!(sample(&after, series).is_some(), "{series} in:\n{after}");
    }
    if require(
        "a_scheduler_with_metrics_bind_serves_the_runs_it_made_to_prometheus",
        Need::Promtool,
    ) {
        assert_eq!(promtool_problems(&after), None, "{after}");
    }
}

/// An address `--metrics-bind` cannot listen on (taken here) stops `crm scheduler`, `crm
/// worker` and `crm beat` at start, before they run or publish anything: exit 2, one line
/// naming the address. One that is not an address is refused by the parser, exit 2 too.
#[test]
fn an_unusable_metrics_bind_address_is_a_one_line_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert_exit(&run(dir, &["migrate"]), 0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for service in [&["scheduler"][..], &["worker"], &["beat"]] {
        let started = Instant::now();
        let out = crm(dir)
            // No broker is needed to find out: the address is tried first.
            .env("CRM_BROKER_URL", "redis://127.0.0.1:9/0")
            .args(service)
            .args(["--metrics-bind", &addr])
            .output()
            .unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{service:?}: {err}");
        assert!(err.contains("--metrics-bind"), "{service:?}: {err}");
        assert!(err.contains(&addr), "{service:?}: {err}");
        assert!(err.contains("in use"), "{service:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{service:?}");
    }
    let out = run(dir, &["scheduler", "--metrics-bind", "localhost-9464"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--metrics-bind"), "{}", stderr(&out));
    let history = stdout(&run(dir, &["jobs", "history"]));
    assert_eq!(history.lines().count(), 1, "nothing ran: {history}");
}

/// `crm jobs run CODE` runs one job now, every time (the contract's "run one job now"): called
/// again after a successful run of the current tick it runs again, recorded as a manual run,
/// and writes its line again, as the seed's cleanup script does each time it is called. The
/// schedules are set by the test (twelve hours away), not read off the wall clock's minute.
#[test]
fn jobs_run_runs_the_job_each_time_it_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert_exit(&run(dir, &["migrate"]), 0);
    quiet_schedules(|| crm(dir), &[]);
    let log = || std::fs::read_to_string(dir.join("customer_cleanup_log.txt")).unwrap_or_default();
    let history = || stdout(&run(dir, &["jobs", "history", "clean_inactive_customers"]));

    for (call, args) in [
        &["jobs", "run", "clean_inactive_customers"][..],
        &["jobs", "run", "clean_inactive_customers"][..],
        &["jobs", "run", "clean_inactive_customers", "--force"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let ran = run(dir, args);
        assert_exit(&ran, 0);
        assert!(stdout(&ran).contains("succeeded"), "{}", stdout(&ran));
        assert_eq!(log().lines().count(), call + 1, "{}", log());
    }
    let history = history();
    assert_eq!(history.matches("manual").count(), 3, "{history}");
}
