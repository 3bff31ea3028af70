//! What a test needs beyond the workspace (a service, a program, time), and the one way to run
//! without it: naming it in `CRM_TESTS_LEAVE_OUT`.
//!
//! A test whose need is missing fails with the line that installs it, so a machine without
//! Redis or cron cannot pass the suite unseen. A person who knowingly runs without something
//! says so, `CRM_TESTS_LEAVE_OUT=redis,cron,long cargo test --workspace`: each test left out
//! prints `crm-test LEFT OUT: <test> (<need>)` straight to the terminal (past cargo's output
//! capture), which `scripts/test` counts in its summary. CI (`.ci/run`) refuses the variable.
//!
//! ```no_run
//! use crm_core::testing::{Need, require};
//! if !require("the_status_page_renders", Need::Chromium) {
//!     return; // left out on purpose; counted
//! }
//! ```

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The variable that names the needs a person chose to run without, comma-separated.
pub const LEAVE_OUT_ENV: &str = "CRM_TESTS_LEAVE_OUT";

/// What `scripts/test` counts: the start of the line a left-out test prints.
pub const LEFT_OUT_MARK: &str = "crm-test LEFT OUT:";

/// The older switch for long tests; `CRM_LONG_TESTS=0` still leaves them out, loudly, as
/// `CRM_TESTS_LEAVE_OUT=long` does, so scripts that set it do not start 17-minute runs.
const OLD_LONG_TESTS_ENV: &str = "CRM_LONG_TESTS";

/// One thing a test needs from the machine (or from the person's patience).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Redis at `CRM_TEST_REDIS_URL` (default 127.0.0.1:6379), and `redis-server` to start
    /// private instances.
    Redis,
    /// The `crontab` program and the `cron` daemon (Debian package `cron`).
    Cron,
    /// Headless Chromium (Debian package `chromium`).
    Chromium,
    /// `systemd-analyze` (Debian package `systemd`).
    Systemd,
    /// The `sqlite3` command-line client.
    Sqlite3,
    /// Python 3 with `venv`, to build the real Celery the broker interop tests run against.
    Celery,
    /// Minutes of wall-clock time: the load, kill -9 and outage tests.
    Long,
    /// Prometheus' `promtool`, the real parser `/metrics` and the example alert rules are
    /// checked with (Debian package `prometheus`).
    Promtool,
}

impl Need {
    /// Every need, in the order the documentation lists them.
    pub const ALL: [Need; 8] = [
        Need::Redis,
        Need::Cron,
        Need::Chromium,
        Need::Systemd,
        Need::Sqlite3,
        Need::Celery,
        Need::Long,
        Need::Promtool,
    ];

    /// The name used in `CRM_TESTS_LEAVE_OUT`.
    pub fn name(self) -> &'static str {
        match self {
            Need::Redis => "redis",
            Need::Cron => "cron",
            Need::Chromium => "chromium",
            Need::Systemd => "systemd",
            Need::Sqlite3 => "sqlite3",
            Need::Celery => "celery",
            Need::Long => "long",
            Need::Promtool => "promtool",
        }
    }

    /// The need named `name` in `CRM_TESTS_LEAVE_OUT`.
    pub fn from_name(name: &str) -> Option<Need> {
        Need::ALL.into_iter().find(|n| n.name() == name)
    }

    /// What installs or starts it.
    fn remedy(self) -> &'static str {
        match self {
            Need::Redis => {
                "apt-get install -y redis-server && redis-server --daemonize yes \
                 (scripts/test-setup does both)"
            }
            Need::Cron => "apt-get install -y cron && cron (scripts/test-setup does both)",
            Need::Chromium => "apt-get install -y chromium (scripts/test-setup does it)",
            Need::Systemd => "apt-get install -y systemd (scripts/test-setup does it)",
            Need::Sqlite3 => "apt-get install -y sqlite3 (scripts/test-setup does it)",
            Need::Celery => {
                "apt-get install -y python3-venv && tests/python/setup.sh \
                 (scripts/test-setup does both)"
            }
            Need::Long => "nothing to install",
            Need::Promtool => "apt-get install -y prometheus (for its promtool)",
        }
    }
}

/// Whether the person running the tests left `need` out (`CRM_TESTS_LEAVE_OUT`, or the older
/// `CRM_LONG_TESTS=0` for [`Need::Long`]). When so, prints `crm-test LEFT OUT: <test> (<need>)`
/// to the terminal.
///
/// # Panics
/// When `CRM_TESTS_LEAVE_OUT` names something that is not a [`Need`]: a typo must not run
/// a different set of tests than the person meant.
pub fn left_out(test: &str, need: Need) -> bool {
    let out = leave_out_list().contains(&need);
    if out {
        // Straight to the file descriptor: `eprintln!` would be captured by the test harness
        // and shown only for failing tests.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{LEFT_OUT_MARK} {test} ({})",
            need.name()
        );
    }
    out
}

/// Why `need` cannot be had on this machine, with the line that installs it; `None` when it is
/// here. Looked up once per test process.
pub fn missing(need: Need) -> Option<String> {
    static FOUND: [OnceLock<Option<String>>; 8] = [const { OnceLock::new() }; 8];
    let index = Need::ALL.iter().position(|n| *n == need).unwrap_or(0);
    FOUND[index]
        .get_or_init(|| {
            look_for(need).map(|why| {
                format!(
                    "this test needs {}: {why}. Install it: {}; or leave it out knowingly: \
                     {LEAVE_OUT_ENV}={}",
                    need.name(),
                    need.remedy(),
                    need.name()
                )
            })
        })
        .clone()
}

/// Whether `test` may run its body: `false` when the person left `need` out (said on the
/// terminal, counted); `true` when `need` is here.
///
/// # Panics
/// When `need` is missing and was not left out, with the line that installs it.
pub fn require(test: &str, need: Need) -> bool {
    if left_out(test, need) {
        return false;
    }
    if let Some(why) = missing(need) {
        panic!("{test}: {why}");
    }
    true
}

/// The running test's name as the test harness gave it to its thread (`module::test`), for
/// helpers shared by many tests; `"this test"` outside the harness.
pub fn this_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("this test")
        .to_owned()
}

fn leave_out_list() -> &'static [Need] {
    static LIST: OnceLock<Vec<Need>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut list = Vec::new();
        let names = std::env::var(LEAVE_OUT_ENV).unwrap_or_default();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let need = Need::from_name(name).unwrap_or_else(|| {
                let known: Vec<_> = Need::ALL.iter().map(|n| n.name()).collect();
                panic!(
                    "{LEAVE_OUT_ENV} names {name:?}, which is not a test need; known: {}",
                    known.join(",")
                )
            });
            list.push(need);
        }
        if std::env::var(OLD_LONG_TESTS_ENV).is_ok_and(|v| v.is_empty() || v == "0") {
            list.push(Need::Long);
        }
        list
    })
}

/// Why `need` is not here, or `None`.
fn look_for(need: Need) -> Option<String> {
    match need {
        Need::Redis => {
            let url = std::env::var("CRM_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
            reachable(&url)
                .err()
                .or_else(|| runs("redis-server", &["--version"]))
        }
        // Debian's crontab has no harmless flag that exits 0 on every machine: found on PATH.
        Need::Cron => on_path("crontab").or_else(|| on_path("cron")),
        Need::Chromium => runs("chromium", &["--version"]),
        Need::Systemd => runs("systemd-analyze", &["--version"]),
        Need::Sqlite3 => runs("sqlite3", &["--version"]),
        Need::Celery => runs("python3", &["-c", "import venv, ensurepip"]),
        Need::Long => None,
        Need::Promtool => runs("promtool", &["--version"]),
    }
}

/// `None` when `program args` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> Option<String> {
    match Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!(
            "`{program} {}` ended with {status}",
            args.join(" ")
        )),
        Err(e) => Some(format!("`{program}` cannot be run ({e})")),
    }
}

/// `None` when `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    (!found).then(|| format!("`{program}` is not on PATH"))
}

/// Whether a TCP connection to the host and port of `url` opens within two seconds.
fn reachable(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs as _;
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let addrs = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{with_port} does not resolve ({e})"))?;
    let mut last = format!("{with_port} has no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("nothing answers at {addr} ({e})"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_is_found_by_the_name_the_variable_uses() {
        for need in Need::ALL {
            assert_eq!(Need::from_name(need.name()), Some(need));
        }
        assert_eq!(Need::from_name("redsi"), None);
    }

    #[test]
    fn a_missing_program_is_reported_with_what_ran() {
        let why = runs("crm-no-such-program-here", &["--version"]).unwrap();
        assert!(why.contains("crm-no-such-program-here"), "{why}");
        assert_eq!(runs("true", &[]), None);
        assert!(runs("false", &[]).unwrap().contains("false"));
        assert_eq!(on_path("sh"), None);
        assert!(on_path("crm-no-such-program-here").is_some());
    }

    #[test]
    fn a_closed_port_is_not_reachable_and_an_open_one_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(reachable(&format!("redis://127.0.0.1:{port}/0")), Ok(()));
        assert_eq!(
            reachable(&format!("redis://user:pw@127.0.0.1:{port}")),
            Ok(())
        );
        // The same port on another loopback address is closed, and stays closed while the
        // listener holds 127.0.0.1:{port}: dropping the listener instead would free the port
        // for a test running beside this one to take.
        assert!(reachable(&format!("redis://127.0.0.2:{port}/0")).is_err());
        drop(listener);
    }
}
