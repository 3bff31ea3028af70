//! The original's system-cron files under `examples/cron_jobs/`: what `crontab FILE` installs
//! must be exactly one line, on the job's own schedule, and acceptable to the real `crontab`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crm::jobs::schedules;

fn cron_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cron_jobs")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(cron_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The five schedule fields of a crontab line.
fn schedule_of(line: &str) -> String {
    line.split_whitespace()
        .take(5)
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_one_installable_line(name: &str, job_schedule: &str) {
    use crm_core::testing::{Need, require, this_test};
    let text = read(name);
    assert!(text.ends_with('\n'), "{name} must end with a newline");
    assert_eq!(
        text.matches('\n').count(),
        1,
        "{name} must be exactly one line"
    );
    let line = text.trim_end();
    assert_eq!(
        schedule_of(line),
        job_schedule,
        "{name} disagrees with the job"
    );
    let command = line
        .split_whitespace()
        .nth(5)
        .expect("a command after the schedule");
    assert!(
        command.starts_with('/'),
        "{name} must run an absolute path, not {command}"
    );
    // `crontab -n` checks the file exactly as `crontab FILE` would install it, without
    // installing anything.
    if !require(&this_test(), Need::Cron) {
        return;
    }
    let check = Command::new("crontab")
        .arg("-n")
        .arg(cron_dir().join(name))
        .output()
        .expect("the crontab program (Debian package cron) must be installed");
    assert!(
        check.status.success(),
        "crontab refused {name}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_cleanup_crontab_runs_the_script_on_the_jobs_schedule() {
    assert_one_installable_line(
        "customer_cleanup_crontab.txt",
        schedules::CLEAN_INACTIVE_CUSTOMERS,
    );
    assert!(read("customer_cleanup_crontab.txt").contains("/clean_inactive_customers.sh"));
}

#[test]
fn the_reminders_crontab_runs_the_job_on_its_schedule() {
    assert_one_installable_line(
        "order_reminders_crontab.txt",
        schedules::SEND_ORDER_REMINDERS,
    );
    assert!(read("order_reminders_crontab.txt").contains("jobs run send_order_reminders"));
}

#[test]
fn the_cleanup_script_is_executable_strict_bash() {
    use std::os::unix::fs::PermissionsExt as _;

    let path = cron_dir().join("clean_inactive_customers.sh");
    let text = read("clean_inactive_customers.sh");
    assert!(text.starts_with("#!/bin/bash\n"));
    assert!(text.contains("set -euo pipefail"));
    assert!(text.contains("jobs run clean_inactive_customers"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "the script must be executable by all");
    let syntax = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(syntax.success(), "bash -n found a syntax error");
}
