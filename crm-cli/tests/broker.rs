//! `crm beat` and `crm worker` as an operator runs them: the real binary against the real Redis
//! (127.0.0.1:6379, or `CRM_TEST_REDIS_URL`), each test under its own key prefix, killed the
//! hard way. Without Redis these tests fail, unless `redis` is named in `CRM_TESTS_LEAVE_OUT`.

#[path = "support/process.rs"]
mod process;
#[path = "support/redis_prefix.rs"]
mod redis_prefix;

use crm_core::testing::promtool_problems;
use process::{
    KillOnDrop, away_from_a_heartbeat_tick, crm_in, exits_within, quiet_schedules,
    read_metrics_url, read_served_url, sample, scrape, sigterm, wait_until, wait_until_some,
};
use redis_prefix::{Prefix, redis_url};

use std::io::BufReader;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn crm(dir: &Path, prefix: &str) -> Command {
    let mut command = crm_in(dir);
    command
        .env("CRM_LOG_DIR", dir.join("logs"))
        .env("CRM_BROKER_URL", redis_url())
        .env("CRM_BROKER_KEY_PREFIX", prefix);
    command
}

#[test]
fn a_worker_killed_mid_task_has_its_tick_run_once_by_another_and_beat_and_worker_stop_on_sigterm() {
    let Some(mut redis) = Prefix::new("cli_t") else {
        return;
    };
    let prefix = redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let migrate = crm(dir, &prefix).arg("migrate").output().unwrap();
    assert!(migrate.status.success());
    // Only the heartbeat's tick is published: the other jobs' ticks would be too whenever the
    // test ran within five minutes (beat's grace) after one of theirs.
    quiet_schedules(|| crm(dir, &prefix), &["log_crm_heartbeat"]);
    away_from_a_heartbeat_tick(Duration::from_secs(40));

    // The real server, for the worker that survives.
    let mut server = KillOnDrop(
        crm(dir, &prefix)
            .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = read_served_url(&mut BufReader::new(server.0.stdout.take().unwrap()));
    // An endpoint that accepts and never answers: the doomed worker's heartbeat hangs on it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/graphql", silent.local_addr().unwrap());

    // Beat publishes the heartbeat's current tick (within its grace), then stops on SIGTERM.
    let mut beat = KillOnDrop(
        crm(dir, &prefix)
            .arg("beat")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("beat to publish", Duration::from_secs(20), || {
        redis.len("LLEN", "celery") >= 1
    });
    sigterm(&beat.0);
    let (code, _) = exits_within(&mut beat, Duration::from_secs(5));
    assert_eq!(code, Some(0));

    // The doomed worker takes the heartbeat and is killed -9 while it waits for GraphQL.
    let mut doomed = KillOnDrop(
        crm(dir, &prefix)
            .args([
                "worker",
                "-c",
                "1",
                "--visibility-timeout",
                "2",
                "--lease",
                "2",
            ])
            .env("CRM_GRAPHQL_URL", &silent_url)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "the doomed worker to take a task",
        Duration::from_secs(20),
        || redis.len("HLEN", "unacked") >= 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let heartbeat_log = dir.join("logs/crm_heartbeat_log.txt");
    assert_eq!(read(&heartbeat_log), "", "the killed run wrote nothing");

    // Another worker restores the unacknowledged message after the visibility timeout and,
    // the dead run's lease over, runs the tick as its second attempt.
    let mut survivor = KillOnDrop(
        crm(dir, &prefix)
            .args([
                "worker",
                "-c",
                "2",
                "--visibility-timeout",
                "2",
                "--lease",
                "2",
            ])
            .env("CRM_GRAPHQL_URL", &url)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let results = wait_until_some(Duration::from_secs(40), || {
        let keys = redis.keys("celery-task-meta-crm.tasks.log_crm_heartbeat@*");
        let key = keys.first()?;
        redis.get(key).filter(|r| r.contains("SUCCESS"))
    });
    let result: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert_eq!(result["status"], "SUCCESS");
    assert_eq!(result["result"], "CRM is alive");
    let log = read(&heartbeat_log);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.ends_with(" CRM is alive\n"), "{log}");
    assert_eq!(redis.len("HLEN", "unacked"), 0);

    sigterm(&survivor.0);
    let (code, err) = exits_within(&mut survivor, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Worker stopped"), "{err}");

    let history = crm(dir, &prefix)
        .args(["jobs", "history", "log_crm_heartbeat"])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("abandoned"), "{history}");
    assert!(history.contains("succeeded"), "{history}");
    drop(silent);
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_bad_broker_url_is_a_usage_error_and_an_unreachable_broker_a_failure_neither_showing_the_password()
 {
    let dir = tempfile::tempdir().unwrap();
    for (url, code, reason) in [
        ("bogus://:s3cret@host/0", 2, "Invalid CRM_BROKER_URL"),
        (
            "redis://:s3cret@127.0.0.1:6379/notadb",
            2,
            "Invalid CRM_BROKER_URL",
        ),
        (
            "redis://:s3cret@127.0.0.1:1/0",
            1,
            "cannot reach the broker",
        ),
    ] {
        for command in ["beat", "worker"] {
            let output = crm(dir.path(), "unused:")
                .arg(command)
                .env("CRM_BROKER_URL", url)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(code),
                "{command} {url}: {stderr}"
            );
            assert!(stderr.contains(reason), "{command} {url}: {stderr}");
            assert!(!stderr.contains("s3cret"), "{command} {url}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        }
    }
}

#[test]
fn beat_publishes_a_one_off_run_and_a_worker_skips_the_tasks_of_a_paused_job() {
    let Some(mut redis) = Prefix::new("cli_t") else {
        return;
    };
    let prefix = redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let run = |args: &[&str]| {
        let out = crm(dir, &prefix).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "crm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate"]);
    // Only the heartbeat's current tick and the one-off are published (see above).
    quiet_schedules(|| crm(dir, &prefix), &["log_crm_heartbeat"]);
    away_from_a_heartbeat_tick(Duration::from_secs(40));
    // `crm jobs at` a few seconds ahead: beat publishes it when its instant comes, besides the
    // heartbeat's current tick.
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    run(&["jobs", "at", "log_crm_heartbeat", &at]);
    let mut beat = KillOnDrop(
        crm(dir, &prefix)
            .arg("beat")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "beat to publish the tick and the one-off run",
        Duration::from_secs(30),
        || redis.len("LLEN", "celery") >= 2,
    );
    sigterm(&beat.0);
    assert_eq!(exits_within(&mut beat, Duration::from_secs(5)).0, Some(0));
    let one_off_id = format!("crm.tasks.log_crm_heartbeat@{at}/one-off");

    // The operator pauses the job before a worker takes the tasks: neither runs.
    run(&["jobs", "disable", "log_crm_heartbeat"]);
    let mut worker = KillOnDrop(
        crm(dir, &prefix)
            .args(["worker", "-c", "1"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let revoked = wait_until_some(Duration::from_secs(30), || {
        let keys = redis.keys("celery-task-meta-crm.tasks.log_crm_heartbeat@*");
        let results: Vec<String> = keys.iter().filter_map(|k| redis.get(k)).collect();
        (results.len() == 2 && results.iter().all(|r| r.contains("REVOKED"))).then_some(keys)
    });
    assert!(
        revoked.iter().any(|k| k.ends_with(&one_off_id)),
        "{revoked:?}"
    );
    assert_eq!(redis.len("HLEN", "unacked"), 0, "both acknowledged");
    sigterm(&worker.0);
    let (code, err) = exits_within(&mut worker, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("2 skipped (job paused)"), "{err}");
    assert_eq!(
        read(&dir.join("logs/crm_heartbeat_log.txt")),
        "",
        "nothing ran"
    );

    // The tick is recorded as skipped, with the reason; the one-off run still waits.
    let history = run(&["jobs", "history", "log_crm_heartbeat"]);
    assert!(history.contains("skipped"), "{history}");
    assert!(history.contains("paused by an operator"), "{history}");
    assert_eq!(history.matches("skipped").count(), 1, "{history}");
    let resumed = run(&["jobs", "enable", "log_crm_heartbeat"]);
    assert!(resumed.contains("one-off run at"), "{resumed}");
}

#[test]
fn a_worker_prunes_the_run_history_it_records_at_start() {
    use crm_core::ledger::RunLedger as _;
    let Some(redis) = Prefix::new("cli_t") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    let count = || {
        async_std::task::block_on(async {
            let db = crm_core::Database::connect(&url).await.unwrap();
            let n = db.history(None, 10_000).await.unwrap().len();
            db.close().await;
            n
        })
    };
    async_std::task::block_on(async {
        let db = crm_core::Database::connect(&url).await.unwrap();
        let first =
            chrono::Utc::now() - chrono::TimeDelta::days(60) + chrono::TimeDelta::minutes(30);
        crm_core::testing::seed_finished_runs(
            &db,
            "log_crm_heartbeat",
            1_000,
            first,
            chrono::TimeDelta::hours(1),
        )
        .await
        .unwrap();
        db.close().await;
    });
    let mut worker = KillOnDrop(
        crm(dir.path(), &redis.prefix)
            .args(["worker", "-c", "1"])
            .env("CRM_DATABASE_URL", &url)
            .env("CRM_JOB_RUNS_RETENTION_DAYS", "30")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "the worker to prune runs older than 30 days",
        Duration::from_secs(30),
        || count() == 280,
    );
    sigterm(&worker.0);
    assert_eq!(
        exits_within(&mut worker, Duration::from_secs(10)).0,
        Some(0)
    );
}

#[test]
fn a_worker_holding_an_eta_task_keeps_it_from_others_and_when_killed_loses_none() {
    use crm_jobs::broker::{scheduled_envelope, tick_task_id};
    let Some(mut redis) = Prefix::new("cli_t") else {
        return;
    };
    let prefix = redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    assert!(
        crm(dir, &prefix)
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .success()
    );
    let worker = || {
        KillOnDrop(
            crm(dir, &prefix)
                .args(["worker", "-c", "1", "--visibility-timeout", "2"])
                // Nothing answers there: the heartbeat fails fast, but it runs and logs a line.
                .env("CRM_GRAPHQL_URL", "http://127.0.0.1:9/graphql")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // A heartbeat task due in 6 s, as `apply_async(countdown=6)` sends it.
    // Yesterday's tick of the heartbeat's */5 (a worker refuses a time that is not a tick).
    let tick = chrono::DurationRound::duration_trunc(
        chrono::Utc::now() - chrono::TimeDelta::days(1),
        chrono::TimeDelta::minutes(5),
    )
    .unwrap();
    let mut envelope = scheduled_envelope("log_crm_heartbeat", tick, "celery", "test");
    let eta = chrono::Utc::now() + chrono::TimeDelta::seconds(6);
    envelope["headers"]["eta"] = serde_json::json!(eta.to_rfc3339());
    let _: () = redis::cmd("LPUSH")
        .arg(format!("{prefix}celery"))
        .arg(envelope.to_string())
        .query(&mut redis.conn)
        .unwrap();

    // Worker A takes and holds it; B, started 3 s later (past the visibility timeout), does
    // not restore it from under A. A is then killed -9 while holding it.
    let mut a = worker();
    wait_until("A to hold the task", Duration::from_secs(20), || {
        redis.len("HLEN", "unacked") == 1 && redis.len("LLEN", "celery") == 0
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut b = worker();
    std::thread::sleep(Duration::from_secs(1));
    // A restore would have marked it redelivered (and B would hold it now).
    let held: Vec<String> = redis::cmd("HVALS")
        .arg(format!("{prefix}unacked"))
        .query(&mut redis.conn)
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        !held[0].contains("\"redelivered\":true"),
        "B restored the task A holds: {}",
        held[0]
    );
    a.0.kill().unwrap();
    a.0.wait().unwrap();

    // B restores it after the visibility timeout and runs it, at its eta, once.
    let id = tick_task_id("log_crm_heartbeat", tick);
    let result = wait_until_some(Duration::from_secs(30), || {
        redis.get(&format!("{prefix}celery-task-meta-{id}"))
    });
    assert!(chrono::Utc::now() >= eta, "not before its eta");
    assert!(
        result.contains("FAILURE"),
        "it ran (GraphQL was down): {result}"
    );
    let log = read(&dir.join("logs/crm_heartbeat_log.txt"));
    assert_eq!(log.lines().count(), 1, "ran once: {log}");
    assert_eq!(redis.len("HLEN", "unacked"), 0);
    sigterm(&b.0);
    assert_eq!(exits_within(&mut b, Duration::from_secs(10)).0, Some(0));
}

/// `crm worker --metrics-bind` and `crm beat --metrics-bind`: a one-off run beat publishes and
/// the worker runs shows in both processes' `/metrics` (read from the ledger they share), in an
/// exposition Prometheus' own parser accepts.
#[test]
fn worker_and_beat_with_metrics_bind_serve_the_runs_to_prometheus() {
    use crm_core::testing::{Need, require};
    let Some(redis) = Prefix::new("cli_t") else {
        return;
    };
    let prefix = redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let ok = |args: &[&str]| {
        let out = crm(dir, &prefix).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "crm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["migrate"]);
    quiet_schedules(|| crm(dir, &prefix), &[]);
    let start = |args: &[&str]| {
        let mut child = KillOnDrop(
            crm(dir, &prefix)
                .args(args)
                .args(["--metrics-bind", "127.0.0.1:0"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let url = read_metrics_url(&mut BufReader::new(child.0.stderr.take().unwrap()));
        (child, url)
    };
    let (mut worker, worker_url) = start(&["worker", "-c", "1"]);
    let (mut beat, beat_url) = start(&["beat"]);
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ok(&["jobs", "at", "clean_inactive_customers", &at]);
    let series = r#"crm_job_runs_total{job="clean_inactive_customers",outcome="succeeded"}"#;
    for url in [&worker_url, &beat_url] {
        let body = wait_until_some(Duration::from_secs(30), || {
            let (status, body) = scrape(url, None);
            assert_eq!(status, 200, "{url}: {body}");
            (sample(&body, series).as_deref() == Some("1")).then_some(body)
        });
        assert!(
            sample(
                &body,
                r#"crm_job_next_run_timestamp_seconds{job="update_low_stock"}"#
            )
            .is_some(),
            "{body}"
        );
        if require(
            "worker_and_beat_with_metrics_bind_serve_the_runs_to_prometheus",
            Need::Promtool,
        ) {
            assert_eq!(promtool_problems(&body), None, "{url}: {body}");
        }
    }
    for child in [&mut beat, &mut worker] {
        sigterm(&child.0);
        assert_eq!(exits_within(child, Duration::from_secs(10)).0, Some(0));
    }
}
