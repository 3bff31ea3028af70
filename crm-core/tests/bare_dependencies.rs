//! The guard of issue 13: crm-core without its default features is the domain, the errors and
//! the storage traits, and must stay free of any runtime, database driver or HTTP stack, so an
//! app that implements the traits itself (or embeds crm-jobs) pulls none of ours. Read from
//! `cargo tree`, the dependency graph Cargo itself resolves from this workspace's lock file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates that bare crm-core must never depend on, at any depth: async runtimes, the database
/// driver and its SQLite, HTTP clients and servers.
const FORBIDDEN: &[&str] = &[
    "sqlx",
    "libsqlite3-sys",
    "async-std",
    "tokio",
    "surf",
    "tide",
    "redis",
    "http-types",
    "async-h1",
];

/// The packages `cargo tree` lists for crm-core's normal dependencies with `features`.
fn packages(features: &[&str]) -> BTreeSet<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crm-core sits in the workspace");
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(workspace)
        .args(["tree", "--locked", "-p", "crm-core", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"]);
    command.args(features);
    let output = command.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        // "name v1.2.3 (path) (*)": the name is the first word.
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether `package` is one of `FORBIDDEN` or part of it (`sqlx-core`, `tokio-util`…).
fn forbidden(package: &str) -> bool {
    FORBIDDEN
        .iter()
        .any(|name| package == *name || package.starts_with(&format!("{name}-")))
}

#[test]
fn crm_core_without_default_features_pulls_no_runtime_driver_or_http_stack() {
    let bare = packages(&["--no-default-features"]);
    let pulled: Vec<&String> = bare.iter().filter(|p| forbidden(p)).collect();
    assert!(
        pulled.is_empty(),
        "bare crm-core ({} packages) pulls {pulled:?}: put what needs them behind a feature",
        bare.len()
    );
    // Measured at 36 when the stores moved behind their features (from 155 with them).
    assert!(
        bare.len() <= 45,
        "bare crm-core grew to {} packages: {bare:?}",
        bare.len()
    );
}

#[test]
fn the_default_features_bring_both_stores_on_async_std() {
    // The check above can fail: the same query, with the defaults, finds the driver.
    let full = packages(&[]);
    for expected in ["sqlx", "sqlx-sqlite", "sqlx-postgres", "async-std"] {
        assert!(full.contains(expected), "{expected} missing from {full:?}");
    }
    assert!(!full.contains("tokio"), "tokio with the default features");
}
