//! `crm jobs prune`, run as a cron user would: months of run history in the SQLite file, then
//! the real binary deletes what is older than the retention and says how much; bad settings are
//! refused with exit 2 and delete nothing.

#[path = "support/process.rs"]
mod process;
use process::{assert_exit, crm_in, stderr, stdout};

use chrono::{TimeDelta, Utc};
use crm_core::Database;
use crm_core::ledger::RunLedger as _;
use crm_core::testing::seed_finished_runs;

/// How many heartbeat runs the database at `url` holds (up to 10,000).
fn runs(url: &str) -> usize {
    async_std::task::block_on(async {
        let db = Database::connect(url).await.unwrap();
        let n = db
            .history(Some("log_crm_heartbeat"), 10_000)
            .await
            .unwrap()
            .len();
        db.close().await;
        n
    })
}

#[test]
fn prune_deletes_runs_older_than_the_retention_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    // 1,000 hourly heartbeat runs, the first 60 days (less half an hour) ago.
    async_std::task::block_on(async {
        let db = Database::connect(&url).await.unwrap();
        let first = Utc::now() - TimeDelta::days(60) + TimeDelta::minutes(30);
        let n = seed_finished_runs(&db, "log_crm_heartbeat", 1_000, first, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(n, 1_000);
        db.close().await;
    });
    let crm = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = crm_in(dir.path());
        command.env("CRM_DATABASE_URL", &url).args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };

    // Retention off and no age given, or an age of 0 days: refused, nothing deleted.
    let off = crm(&["jobs", "prune"], &[("CRM_JOB_RUNS_RETENTION_DAYS", "0")]);
    assert_exit(&off, 2);
    assert!(stderr(&off).contains("--older-than"), "{}", stderr(&off));
    let zero = crm(&["jobs", "prune", "--older-than", "0"], &[]);
    assert_exit(&zero, 2);
    assert_eq!(runs(&url), 1_000);

    // Older than 30 days: the first 720 hours go.
    let out = crm(&["jobs", "prune", "--older-than", "30"], &[]);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        "Pruned 720 runs, 0 one-off runs, 0 resolved incidents and 0 restock keys older than 30 days."
    );
    assert_eq!(runs(&url), 280);

    // The retention setting is the default age; the default (90 days) finds nothing more.
    let out = crm(&["jobs", "prune"], &[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("Pruned 0 runs"),
        "{}",
        stdout(&out)
    );
    let out = crm(&["jobs", "prune"], &[("CRM_JOB_RUNS_RETENTION_DAYS", "20")]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("Pruned 240 runs"),
        "{}",
        stdout(&out)
    );
    assert_eq!(runs(&url), 40);

    // `crm jobs history` still answers, newest first.
    let out = crm(
        &["jobs", "history", "log_crm_heartbeat", "--limit", "1"],
        &[],
    );
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("log_crm_heartbeat"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_prune_killed_mid_way_leaves_whole_batches_and_the_next_one_finishes() {
    use std::time::{Duration, Instant};
    if !crm_core::testing::require(
        "a_prune_killed_mid_way_leaves_whole_batches_and_the_next_one_finishes",
        crm_core::testing::Need::Long,
    ) {
        return;
    }
    if !crm_core::testing::require(
        "a_prune_killed_mid_way_leaves_whole_batches_and_the_next_one_finishes",
        crm_core::testing::Need::Sqlite3,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    // 200,000 heartbeat runs, one a minute, the first 200,000 minutes (138.9 days) ago, less
    // half a minute: older than 30 days are the first 156,800.
    let total = 200_000;
    async_std::task::block_on(async {
        let db = Database::connect(&url).await.unwrap();
        let first = Utc::now() - TimeDelta::minutes(total) + TimeDelta::seconds(30);
        seed_finished_runs(
            &db,
            "log_crm_heartbeat",
            total as u64,
            first,
            TimeDelta::minutes(1),
        )
        .await
        .unwrap();
        db.close().await;
    });
    let prune = || {
        let mut command = crm_in(dir.path());
        command
            .env("CRM_DATABASE_URL", &url)
            .args(["jobs", "prune", "--older-than", "30"]);
        command
    };
    // More rows than `crm jobs history` pages: counted by the sqlite3 command-line client.
    let count = || -> i64 {
        let out = std::process::Command::new("sqlite3")
            .arg(dir.path().join("crm.db"))
            .arg("SELECT COUNT(*) FROM job_runs")
            .output()
            .expect("sqlite3 (Debian's sqlite3 package; .ci/run installs it)");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let mut remaining = count();
    assert_eq!(remaining, total);
    // Killed with SIGKILL three times while it deletes (once rows start going, then 0, 150 and
    // 300 ms later): only whole batches of 1,000 go.
    for extra in [0, 150, 300] {
        let mut child = prune().stdout(std::process::Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        while count() >= remaining {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the prune ended before it deleted anything"
            );
            assert!(started.elapsed() < Duration::from_secs(60), "no deletes");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(extra));
        let _ = child.kill();
        child.wait().unwrap();
        let now = count();
        assert_eq!(
            (remaining - now) % 1_000,
            0,
            "a half-applied batch: {remaining} -> {now}"
        );
        eprintln!("killed {extra} ms after its first delete: {remaining} -> {now} runs");
        remaining = now;
    }
    assert!(
        remaining > 43_200,
        "the kills came before the end: {remaining}"
    );
    // The next prune finishes the work: the last 30 days (43,200 minutes) stay.
    let out = prune().output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(count(), 43_200);
}
