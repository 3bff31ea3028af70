//! The guard on what an embedder compiles: `crm-jobs` with `default-features = false` pulls no
//! async runtime, no database driver and no HTTP stack, and stays small. It asks `cargo tree`
//! (the same cargo that runs the test) about the workspace's real lock file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// What a library that any app can embed must not bring into that app.
const FORBIDDEN: [&str; 11] = [
    "async-std",
    "tokio",
    "surf",
    "sqlx",
    "tide",
    "redis",
    "http-types",
    "async-h1",
    // TLS (https for the GraphQL client and the webhook) comes only with their features.
    "rustls",
    "futures-rustls",
    "ring",
];

/// The most packages bare crm-jobs may pull, itself included (69 when this guard was written).
const MOST_PACKAGES: usize = 80;

/// `name version` of every package in `cargo tree -p PACKAGE -e normal` with `args`.
fn packages(package: &str, args: &[&str]) -> BTreeSet<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect()
}

fn names(packages: &BTreeSet<String>) -> BTreeSet<&str> {
    packages
        .iter()
        .filter_map(|p| p.split_whitespace().next())
        .collect()
}

#[test]
fn bare_crm_jobs_pulls_no_runtime_driver_or_http_stack() {
    let bare = packages("crm-jobs", &["--no-default-features"]);
    let found: Vec<&str> = names(&bare)
        .into_iter()
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "crm-jobs --no-default-features pulls {found:?}; see `cargo tree -p crm-jobs -e normal \
         --no-default-features -i {}`",
        found.first().copied().unwrap_or_default()
    );
    assert!(
        bare.len() <= MOST_PACKAGES,
        "crm-jobs --no-default-features pulls {} packages (at most {MOST_PACKAGES}): {bare:?}",
        bare.len()
    );
}

#[test]
fn the_guard_sees_what_the_default_features_pull() {
    // The check above can fail: with its defaults, crm-jobs does pull surf and rustls.
    let with_defaults = packages("crm-jobs", &[]);
    assert!(names(&with_defaults).contains("surf"), "{with_defaults:?}");
    assert!(
        names(&with_defaults).contains("rustls"),
        "{with_defaults:?}"
    );
}

#[test]
fn the_tokio_features_pull_no_async_std_and_no_surf() {
    // A tokio app's GraphQL client, webhook and broker: hyper and redis on tokio, the same
    // rustls, and none of the async-std stack.
    let tokio_only = packages(
        "crm-jobs",
        &[
            "--no-default-features",
            "--features",
            "graphql-tokio,webhook-tokio,broker-tokio",
        ],
    );
    let found = names(&tokio_only);
    for present in ["tokio", "hyper", "tokio-rustls", "rustls", "cynic", "redis"] {
        assert!(found.contains(present), "{present} missing: {tokio_only:?}");
    }
    for absent in [
        "async-std",
        "surf",
        "http-types",
        "async-h1",
        "http-client",
        "futures-rustls",
        "async-global-executor",
        "sqlx",
        "tide",
    ] {
        assert!(
            !found.contains(absent),
            "crm-jobs --no-default-features --features graphql-tokio,webhook-tokio,broker-tokio \
             pulls {absent}; see `cargo tree -p crm-jobs -e normal --no-default-features \
             --features graphql-tokio,webhook-tokio,broker-tokio -i {absent}`"
        );
    }
}
