//! Prometheus' own parser, for the tests of every `/metrics` endpoint.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// What Prometheus' own parser (`promtool check metrics`) finds wrong with `exposition`;
/// `None` when it accepts it silently. Panics when promtool cannot run: call
/// [`require`](super::require) with [`Need::Promtool`](super::Need) first.
pub fn promtool_problems(exposition: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !said.trim().is_empty()).then_some(said)
}
