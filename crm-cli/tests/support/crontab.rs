//! The user's real crontab in tests: taking turns with every other test that touches it (in
//! this process and in others), saving it and putting it back. Shared by the test files of
//! this crate (`#[path = "support/crontab.rs"] mod crontab;`). Without the `cron` package a
//! test fails with the line that installs it, unless `CRM_TESTS_LEAVE_OUT` names `cron`.
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Tests that touch the real crontab of the user running them take turns.
static CRONTAB: Mutex<()> = Mutex::new(());

/// The user's crontab is one per machine: tests in other processes (another checkout's test
/// run) take turns with ours through an exclusive lock on a file, held until dropped. `None`
/// when the person left cron out (`CRM_TESTS_LEAVE_OUT=cron`, said on the terminal).
pub(crate) fn crontab_turn() -> Option<(std::sync::MutexGuard<'static, ()>, std::fs::File)> {
    use crm_core::testing::{Need, require, this_test};
    if !require(&this_test(), Need::Cron) {
        return None;
    }
    let in_process = CRONTAB.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("crm-crontab-tests.lock"))
        .expect("the crontab lock file");
    file.lock().expect("the crontab lock");
    Some((in_process, file))
}

/// Saves the user's crontab and puts it back when dropped, whatever the test did.
pub(crate) struct SavedCrontab(Option<String>);

impl SavedCrontab {
    pub(crate) fn save() -> Self {
        let out = Command::new("crontab")
            .arg("-l")
            .output()
            .expect("the crontab program (Debian package cron) must be installed");
        Self(
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned()),
        )
    }
}

impl Drop for SavedCrontab {
    fn drop(&mut self) {
        match &self.0 {
            Some(text) => install_crontab(text),
            None => {
                let _ = Command::new("crontab").arg("-r").output();
            }
        }
    }
}

pub(crate) fn install_crontab(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("crontab")
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

pub(crate) fn current_crontab() -> String {
    let out = Command::new("crontab").arg("-l").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ages in seconds of the live `cron` processes (the daemon and any job it is running).
/// `ps` also lists zombies, e.g. a daemon killed while the process that adopted it (this
/// container's first process) never reaps it: `pgrep -x cron` counted such a zombie as a
/// running daemon, and the test then waited for a cron that was not there.
fn live_cron_ages() -> Vec<u64> {
    let out = Command::new("ps")
        .args(["-C", "cron", "-o", "stat=,etimes="])
        .output()
        .expect("ps (Debian package procps)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let stat = fields.next()?;
            let age = fields.next()?.parse().ok()?;
            (!stat.starts_with('Z')).then_some(age)
        })
        .collect()
}

/// Starts the cron daemon unless a live one runs, and returns once it has run for two
/// seconds: it reads the crontabs when it starts, and a crontab written in that same second
/// would go unseen (see [`install_crontab_for_cron`]).
pub(crate) fn ensure_cron_daemon() {
    use std::time::{Duration, Instant};
    if live_cron_ages().is_empty() {
        let started = Command::new("cron")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the cron daemon (Debian package cron; scripts/test-setup installs it)");
        assert!(started.success(), "cron did not start: {started}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let oldest = live_cron_ages().into_iter().max();
        if oldest.is_some_and(|age| age >= 2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cron daemon is not running 15 s after it was started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Installs `text` as the crontab so that the running cron daemon reads it at its next minute.
///
/// Debian's cron rereads crontabs only when the spool directory's modification time, in whole
/// seconds, differs from the one it saw at its last look (at its start and at the top of each
/// minute). A crontab written in the same second as that look, just after it, leaves the
/// time unchanged and is never read: that is how a cold machine's first run missed the
/// heartbeat for 130 s. So the crontab is written only between seconds 5 and 50 of a minute,
/// at least two seconds after the daemon started ([`ensure_cron_daemon`]): its second is
/// then later than any look, and the next look reads it.
pub(crate) fn install_crontab_for_cron(text: &str) {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    loop {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs()
            % 60;
        if (5..=50).contains(&second) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    install_crontab(text);
}
