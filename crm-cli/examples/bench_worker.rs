//! This example demonstrates the broker way on its real path, beside Python Celery: N
//! `generate_crm_report` tasks drained by `crm worker` (the real binary, its run ledger in the
//! CRM's database, each task asking `crm serve` for the totals over GraphQL and appending the
//! report line), then the same N tasks drained by a Celery 5.5 worker of the same concurrency
//! whose task does the same (tests/python/crm_celery.py `report-worker`), on the same Redis and
//! against the same server; for SQLite, then PostgreSQL. Prints tasks per second and the peak
//! resident memory of each worker (all of Celery's pool processes summed), then two ceilings
//! of a worker's rate here: the report's request alone (wrk) and the ledger's claim and end of
//! a run alone (crm-core, in this process).
//!
//! ```text
//! tests/python/setup.sh
//! cargo build --release -p crm-cli --bin crm
//! cargo run --release -p crm-cli --example bench_worker -- [N] [CONCURRENCY] [sqlite|postgres|both]
//! ```
//!
//! `CRM_BIN` picks the `crm` binary (default `target/release/crm`); `CRM_BIN_BEFORE`, if set,
//! another one measured first in the same run (each binary migrates, seeds and serves its own
//! database; Celery runs against the last one's server). `CRM_BENCH_REDIS_URL` picks the
//! Redis (default `redis://127.0.0.1:6379/0`; every key under a prefix of this run's own),
//! `CRM_BENCH_PG_URL` the PostgreSQL server (a database of this run's own is created and
//! dropped). The data is `crm seed`'s default (1,000 customers, 100 products, 5,000 orders).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, TimeZone as _, Utc};
use crm_core::ledger::{NewRun, RunEnd, RunKind, RunLedger as _, RunOutcome};
use crm_jobs::broker::{Broker, BrokerConfig, scheduled_envelope};
use sqlx::Connection as _;

const CODE: &str = "generate_crm_report";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn crm_bin() -> PathBuf {
    std::env::var_os("CRM_BIN").map_or_else(|| root().join("target/release/crm"), PathBuf::from)
}

fn redis_url() -> String {
    std::env::var("CRM_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn pg_url() -> String {
    std::env::var("CRM_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A resident-set field (`VmRSS:`, `VmHWM:`) of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The process and its descendants (Celery's prefork pool).
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        pids.extend(tree(child));
    }
    pids
}

/// CPU time the processes have used (user and system), in milliseconds.
fn cpu_ms(pids: &[u32]) -> f64 {
    // `/proc/PID/stat` counts in clock ticks, 100 a second on Linux.
    let ticks: u64 = pids
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command's name, which may hold spaces: utime and stime are fields 14, 15.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
                .unwrap_or(0)
        })
        .sum();
    ticks as f64 * 10.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn crm(bin: &Path, db_url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .env("CRM_DATABASE_URL", db_url)
        .env("CRM_TIME_ZONE", "UTC")
        .env("CRM_LOG_DIR", dir)
        .env_remove("CRM_API_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until the server answers `{ hello }`.
fn wait_for_server(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("crm serve did not listen within 60 s");
}

/// Publishes `n` tasks of the report job, each for its own Monday 06:00 (UTC) tick.
async fn publish(broker: &Broker, n: u32) {
    // 2001-01-01 was a Monday.
    let first = Utc.with_ymd_and_hms(2001, 1, 1, 6, 0, 0).unwrap();
    for i in 0..n {
        let tick = first + TimeDelta::weeks(i64::from(i));
        broker
            .publish(&scheduled_envelope(CODE, tick, "celery", "bench"))
            .await
            .expect("publish");
    }
}

/// What one worker did: seconds from its first task taken to the queue drained, peak RSS
/// (sampled every 10 ms, summed over the process tree).
struct Drained {
    seconds: f64,
    peak_kib: u64,
    /// CPU time the worker (its whole tree) and the server used while it drained.
    worker_cpu_ms: f64,
    server_cpu_ms: f64,
}

/// Times `child` draining `n` tasks from `broker`'s queue: from the first task taken (start-up
/// not counted) until none is queued or unacknowledged, sampling its tree's resident set.
async fn drain(broker: &Broker, child: &mut Child, server: u32, n: u32) -> Drained {
    let started = Instant::now();
    while broker.queue_len().await.expect("queue length") == n as usize {
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the worker exited before taking a task"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no task taken in 120 s"
        );
        async_std::task::sleep(Duration::from_millis(2)).await;
    }
    let start = Instant::now();
    let (worker_cpu, server_cpu) = (cpu_ms(&tree(child.id())), cpu_ms(&[server]));
    let mut peak_kib = 0;
    loop {
        let rss: u64 = tree(child.id())
            .iter()
            .map(|&p| memory_kib(p, "VmRSS:"))
            .sum();
        peak_kib = peak_kib.max(rss);
        if broker.queue_len().await.expect("queue length") == 0
            && broker.unacked_len().await.expect("unacked length") == 0
        {
            break;
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the worker exited before the queue was drained"
        );
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    Drained {
        seconds: start.elapsed().as_secs_f64(),
        peak_kib,
        worker_cpu_ms: cpu_ms(&tree(child.id())) - worker_cpu,
        server_cpu_ms: cpu_ms(&[server]) - server_cpu,
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - Report: "))
        .count()
}

async fn broker(prefix: &str) -> Broker {
    Broker::connect(BrokerConfig::new(redis_url()).key_prefix(prefix))
        .await
        .expect("Redis")
}

fn report(side: &str, n: u32, d: &Drained) -> f64 {
    let rate = f64::from(n) / d.seconds;
    println!(
        "  {side:<28} {n} tasks in {:6.2} s = {rate:6.0} tasks/s, peak RSS {:5.1} MiB, \
         CPU a task: worker {:4.0} µs, server {:4.0} µs",
        d.seconds,
        d.peak_kib as f64 / 1024.0,
        d.worker_cpu_ms * 1000.0 / f64::from(n),
        d.server_cpu_ms * 1000.0 / f64::from(n),
    );
    rate
}

/// A database with `crm seed`'s default data and `crm serve` over it, both from `bin`.
struct Site {
    dir: tempfile::TempDir,
    db_url: String,
    graphql: String,
    server: Child,
    pg_db: Option<(sqlx::PgConnection, String)>,
}

async fn site(bin: &Path, backend: &str, label: &str) -> Site {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (db_url, pg_db) = match backend {
        "sqlite" => (
            format!("sqlite://{}?mode=rwc", dir.path().join("crm.db").display()),
            None,
        ),
        _ => {
            let name = format!("crm_bench_worker_{}_{label}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_url()))
                .await
                .expect("PostgreSQL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .expect("create the bench database");
            (format!("{}/{name}", pg_url()), Some((admin, name)))
        }
    };
    run(crm(bin, &db_url, dir.path(), &["migrate"]), "crm migrate");
    run(crm(bin, &db_url, dir.path(), &["seed"]), "crm seed");
    let port = free_port();
    let server = crm(
        bin,
        &db_url,
        dir.path(),
        &["serve", "--bind", &format!("127.0.0.1:{port}")],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("serve.log")).expect("serve.log"))
    .spawn()
    .expect("crm serve starts");
    wait_for_server(port);
    Site {
        dir,
        db_url,
        graphql: format!("http://127.0.0.1:{port}/graphql"),
        server,
        pg_db,
    }
}

impl Site {
    async fn close(mut self) {
        terminate(&mut self.server);
        if std::env::var_os("CRM_BENCH_KEEP").is_some() {
            println!("  kept {}", self.dir.keep().display());
        }
        if let Some((mut admin, name)) = self.pg_db.take() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("drop the bench database");
        }
    }
}

/// `crm worker` (binary `bin`) drains `n` report tasks; checks the report lines and the ledger.
async fn crm_worker(
    bin: &Path,
    site: &Site,
    label: &str,
    n: u32,
    concurrency: usize,
) -> (f64, u64) {
    let logs = site.dir.path().join(label);
    std::fs::create_dir_all(&logs).expect("log dir");
    let prefix = format!("crm_bench_worker_{}_{label}:", std::process::id());
    let queue = broker(&prefix).await;
    publish(&queue, n).await;
    let mut worker = crm(
        bin,
        &site.db_url,
        site.dir.path(),
        &["worker", "--concurrency", &concurrency.to_string()],
    )
    .env("CRM_LOG_DIR", &logs)
    .env("CRM_GRAPHQL_URL", &site.graphql)
    .env("CRM_BROKER_URL", redis_url())
    .env("CRM_BROKER_KEY_PREFIX", &prefix)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(logs.join("worker.log")).expect("worker.log"))
    .spawn()
    .expect("crm worker starts");
    let drained = drain(&queue, &mut worker, site.server.id(), n).await;
    terminate(&mut worker);
    queue.delete_prefixed_keys().await.expect("clean up");
    assert_eq!(
        lines(&logs.join("crm_report_log.txt")),
        n as usize,
        "crm worker's report lines"
    );
    assert_eq!(
        count_succeeded(&site.db_url).await,
        i64::from(n),
        "succeeded runs in the ledger"
    );
    let rate = report(&format!("crm worker ({label})"), n, &drained);
    (rate, drained.peak_kib)
}

/// A Celery worker of the same concurrency drains `n` report tasks against the same server.
async fn celery_worker(site: &Site, backend: &str, n: u32, concurrency: usize) -> (f64, u64) {
    let logs = site.dir.path().join("celery");
    std::fs::create_dir_all(&logs).expect("log dir");
    let prefix = format!("crm_bench_worker_{}_{backend}_py:", std::process::id());
    let queue = broker(&prefix).await;
    publish(&queue, n).await;
    let mut celery = Command::new(root().join("target/celery-venv/bin/python"))
        .arg(root().join("tests/python/crm_celery.py"))
        .arg("report-worker")
        .env("CRM_BROKER_URL", redis_url())
        .env("CRM_BROKER_KEY_PREFIX", &prefix)
        .env("CRM_CELERY_CONCURRENCY", concurrency.to_string())
        .env("CRM_GRAPHQL_URL", &site.graphql)
        .env("CRM_LOG_DIR", &logs)
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join("celery.log")).expect("celery.log"))
        .spawn()
        .expect("python starts");
    let drained = drain(&queue, &mut celery, site.server.id(), n).await;
    terminate(&mut celery);
    queue.delete_prefixed_keys().await.expect("clean up");
    assert_eq!(
        lines(&logs.join("crm_report_log.txt")),
        n as usize,
        "Celery's report lines"
    );
    let rate = report("Celery 5.5 worker", n, &drained);
    (rate, drained.peak_kib)
}

/// wrk's Lua hooks that count the answers that are not a GraphQL success (a status other than
/// 200, no `data`, or `errors`) and print "GraphQL errors: N" at the end.
const COUNT_GRAPHQL_ERRORS: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors = 0 end
function response(status, headers, body)
  if status ~= 200 or not body:find('"data"', 1, true) or body:find('"errors"', 1, true) then
    errors = errors + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("errors") end
  io.write("GraphQL errors: " .. n .. "\n")
end
"#;

/// The report's GraphQL request with nothing around it, `concurrency` at a time on kept-alive
/// connections (wrk, 3 s): the ceiling of a worker's rate against this server on this machine.
/// `None`, said on stdout, without wrk.
fn request_alone(site: &Site, concurrency: usize) -> Option<f64> {
    let script = site.dir.path().join("report.lua");
    // A long bracket string: Lua reads it as is, so the JSON's `\n` escapes stay escapes.
    let body =
        r#"{"query":"query Report {\n  totalCustomers\n  totalOrders\n  totalRevenue\n}\n"}"#;
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.body = [[{body}]]\n{COUNT_GRAPHQL_ERRORS}"
        ),
    )
    .expect("wrk script");
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{concurrency}"), "-d3s", "-s"])
        .arg(&script)
        .arg(&site.graphql)
        .output();
    let text = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            println!("  (wrk not found or failed: the request alone not measured)");
            return None;
        }
    };
    if text.contains("Non-2xx") || !text.contains("GraphQL errors: 0\n") {
        println!(
            "  (wrk saw answers other than 200 or with GraphQL errors: the request alone not measured)"
        );
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The ledger's two writes a task with nothing around them, `concurrency` at a time: a report
/// run claimed (`claim_if_clear`, as `crm worker` claims one) and ended, `n` times, through
/// crm-core on the site's database: the ceiling of a worker's rate on this ledger here.
async fn ledger_alone(site: &Site, n: u32, concurrency: usize) -> f64 {
    let db = crm_core::Database::connect(&site.db_url)
        .await
        .expect("the ledger");
    // Ticks of their own, far from the ones the workers ran.
    let first = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    let next = std::sync::atomic::AtomicU32::new(0);
    let start = Instant::now();
    let slot = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                break;
            }
            let now = Utc::now();
            let run = NewRun {
                code: CODE.to_owned(),
                tick: first + TimeDelta::seconds(i64::from(i)),
                kind: RunKind::Scheduled,
                attempt: 1,
                started_at: now,
                lease_until: now + TimeDelta::minutes(10),
                host: "bench".to_owned(),
                pid: std::process::id(),
            };
            let (claimed, _) = db
                .claim_if_clear(&run, false)
                .await
                .expect("claim")
                .expect("nothing in the way of a claim");
            let end = RunEnd {
                outcome: RunOutcome::Succeeded,
                at: Utc::now(),
                message: "ledger alone",
            };
            assert!(db.finish(claimed.id, end).await.expect("end"));
        }
    };
    futures::future::join_all((0..concurrency).map(|_| slot())).await;
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    db.close().await;
    rate
}

async fn bench(backend: &str, n: u32, concurrency: usize) {
    println!(
        "{backend} ledger, concurrency {concurrency}, load average before: {}",
        load_average()
    );
    let mut bins = Vec::new();
    if let Some(before) = std::env::var_os("CRM_BIN_BEFORE") {
        bins.push(("before", PathBuf::from(before)));
    }
    bins.push(("crm", crm_bin()));
    let mut ours = Vec::new();
    for (i, (label, bin)) in bins.iter().enumerate() {
        let site = site(bin, backend, label).await;
        ours.push((*label, crm_worker(bin, &site, label, n, concurrency).await));
        if i + 1 == bins.len() {
            // Against the last binary's server.
            let (rate, kib) = celery_worker(&site, backend, n, concurrency).await;
            for (label, (our_rate, our_kib)) in &ours {
                println!(
                    "  {label}: {:.2}x Celery's throughput at 1/{:.1} of its memory",
                    our_rate / rate,
                    kib as f64 / (*our_kib).max(1) as f64,
                );
            }
            if let Some(alone) = request_alone(&site, concurrency) {
                println!(
                    "  the report's GraphQL request alone (wrk, {concurrency} connections): \
                     {alone:.0} requests/s = {:.2}x Celery's rate, the most any worker that \
                     makes it could reach here",
                    alone / rate
                );
            }
            let ledger = ledger_alone(&site, n, concurrency).await;
            println!(
                "  the ledger's claim and end alone (crm-core, {concurrency} at once): \
                 {ledger:.0} runs/s = {:.2}x Celery's rate, the most any worker that records \
                 its runs there could reach here",
                ledger / rate
            );
        }
        site.close().await;
    }
    println!("  load average after: {}", load_average());
}

async fn count_succeeded(db_url: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM job_runs WHERE code = 'generate_crm_report' \
               AND outcome = 'succeeded'";
    if db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(db_url)
            .await
            .expect("the ledger");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
    } else {
        let mut c = sqlx::PgConnection::connect(db_url)
            .await
            .expect("the ledger");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
    }
}

#[async_std::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let backends = match args.next().as_deref() {
        Some("sqlite") => vec!["sqlite"],
        Some("postgres") => vec!["postgres"],
        _ => vec!["sqlite", "postgres"],
    };
    assert!(
        crm_bin().exists(),
        "{} is missing: cargo build --release -p crm-cli --bin crm",
        crm_bin().display()
    );
    assert!(
        root().join("target/celery-venv/bin/python").exists(),
        "run tests/python/setup.sh first"
    );
    for backend in backends {
        bench(backend, n, concurrency).await;
    }
}
