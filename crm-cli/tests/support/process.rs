//! Running the real `crm` binary from a test: a clean environment, its output, waiting for it,
//! and making sure no child outlives the test. Shared by every test file of this crate
//! (`#[path = "support/process.rs"] mod process;`), each of which uses a part of it.
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::io::{BufRead, Read as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `crm` binary cargo built for these tests.
pub(crate) const CRM: &str = env!("CARGO_BIN_EXE_crm");

/// `crm` in `dir` with none of the caller's `CRM_*` settings, times in UTC, quiet logging and
/// no stdin; the caller adds the log directory and whatever else the test needs.
pub(crate) fn crm_in(dir: &Path) -> Command {
    let mut command = Command::new(CRM);
    for (key, _) in std::env::vars() {
        if key.starts_with("CRM_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("CRM_TIME_ZONE", "UTC")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null());
    command
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it is not the expected one.
#[track_caller]
pub(crate) fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// A child process that is killed (SIGKILL) and reaped if the test ends early.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` every 50 ms; fails the test after `limit`.
#[track_caller]
pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 50 ms until it returns something; fails the test after `limit`.
#[track_caller]
pub(crate) fn wait_until_some<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `stream` until a line contains `what` (or the stream ends: a failure); returns all
/// that was read.
pub(crate) fn wait_for_line(stream: &mut impl BufRead, what: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "ended before printing {what:?}: {seen}"
        );
        seen.push_str(&line);
        if line.contains(what) {
            return seen;
        }
    }
}

/// Sends SIGTERM, as systemd or Supervisord do to stop a service.
pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for a child to exit on its own; its exit code and its stderr (if piped).
pub(crate) fn exits_within(child: &mut KillOnDrop, limit: Duration) -> (Option<i32>, String) {
    wait_until("the process to exit", limit, || {
        child.0.try_wait().unwrap().is_some()
    });
    let mut err = String::new();
    if let Some(mut stderr) = child.0.stderr.take() {
        stderr.read_to_string(&mut err).unwrap();
    }
    (child.0.wait().unwrap().code(), err)
}

/// GETs `url` (plain HTTP) with an optional bearer token; the status and the whole answer.
pub(crate) fn http_get(url: &str, token: Option<&str>) -> (u16, String) {
    use std::io::Write as _;
    let rest = url.strip_prefix("http://").expect(url);
    let (host, path) = rest.split_once('/').expect(url);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status");
    (status, answer)
}

/// The GraphQL URL in `crm serve`'s banner (`Serving GraphQL at http://…/graphql …`), if the
/// line is that banner.
pub(crate) fn served_url(banner: &str) -> Option<String> {
    banner
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/graphql"))
        .map(str::to_owned)
}

/// Reads `crm serve`'s first line from its stdout and returns the GraphQL URL it announces
/// (the server listens from then on); fails the test with the line otherwise.
pub(crate) fn read_served_url(stdout: &mut impl BufRead) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    served_url(&line).unwrap_or_else(|| panic!("serve printed no URL: {line:?}"))
}

/// The five jobs, as `crm jobs list` names them.
pub(crate) const JOB_CODES: [&str; 5] = [
    "clean_inactive_customers",
    "send_order_reminders",
    "log_crm_heartbeat",
    "update_low_stock",
    "generate_crm_report",
];

/// Moves every job's schedule in the database the `crm` commands from `crm` use (an operator's
/// override, as `crm jobs schedule` stores it) to one time of day twelve hours from now, so that a
/// scheduler, beat or server the test then starts runs only what the test asks for (`crm jobs
/// at`, `crm jobs run`). With the default schedules, a test that counts runs failed whenever
/// the wall clock crossed one of their ticks while it ran: the heartbeat's `*/5` tick ran
/// beside the one-off the test had asked for. Jobs in `keep` keep their defaults.
pub(crate) fn quiet_schedules(crm: impl Fn() -> Command, keep: &[&str]) {
    let in_12_hours = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        + 12 * 3600;
    let schedule = format!(
        "{} {} * * * in UTC",
        in_12_hours / 60 % 60,
        in_12_hours / 3600 % 24
    );
    for code in JOB_CODES.iter().filter(|code| !keep.contains(code)) {
        let moved = crm()
            .args(["jobs", "schedule", code, &schedule])
            .output()
            .expect("crm runs");
        assert_exit(&moved, 0);
    }
}

/// Waits, if need be, until the wall clock is at least `margin` away from the next tick of the
/// heartbeat's default `*/5` schedule, for a test that keeps that schedule and must see only
/// its current tick (a beat publishes the latest tick within its grace, and a new one when the
/// clock crosses the next).
pub(crate) fn away_from_a_heartbeat_tick(margin: Duration) {
    loop {
        let into_period = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs()
            % 300;
        if Duration::from_secs(300 - into_period) > margin && into_period >= 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads a service's stderr until its `Serving metrics at http://…/metrics` line (printed when
/// started with `--metrics-bind`) and returns that URL.
pub(crate) fn read_metrics_url(stderr: &mut impl BufRead) -> String {
    let seen = wait_for_line(stderr, "Serving metrics at ");
    let line = seen.lines().last().unwrap_or_default();
    line.split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no metrics URL in {line:?}"))
        .to_owned()
}

/// GETs a `/metrics` URL: the status and the body (the exposition).
pub(crate) fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let (status, answer) = http_get(url, token);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

/// The value of the sample `series` (`name{labels}` as written) in an exposition, if present.
pub(crate) fn sample(exposition: &str, series: &str) -> Option<String> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}
