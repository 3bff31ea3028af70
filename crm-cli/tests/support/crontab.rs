//! The user's real crontab in tests: taking turns with every other test that touches it (in
//! this process and in others), saving it and putting it back. Shared by the test files of
//! this crate (`#[path = "support/crontab.rs"] mod crontab;`).
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Tests that touch the real crontab of the user running them take turns.
static CRONTAB: Mutex<()> = Mutex::new(());

/// The user's crontab is one per machine: tests in other processes (another checkout's test
/// run) take turns with ours through an exclusive lock on a file, held until dropped.
pub(crate) fn crontab_turn() -> (std::sync::MutexGuard<'static, ()>, std::fs::File) {
    let in_process = CRONTAB.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("crm-crontab-tests.lock"))
        .expect("the crontab lock file");
    file.lock().expect("the crontab lock");
    (in_process, file)
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
