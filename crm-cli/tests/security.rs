//! Security review of the `crm` binary (RELIABILITY.md rows S6–S11): file permissions, what
//! the service's own logs may hold, crontab lines that hostile settings cannot turn into shell
//! commands or extra crontab lines, and the dependencies' sources and licences.

#[path = "support/process.rs"]
mod process;
use process::{CRM, KillOnDrop, assert_exit, crm_in, read_served_url, stderr, wait_until};
#[path = "support/crontab.rs"]
mod crontab;
use crontab::{SavedCrontab, crontab_turn, current_crontab, install_crontab};

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::time::Duration;

const JOBS: [(&str, &str); 5] = [
    ("clean_inactive_customers", "customer_cleanup_log.txt"),
    ("send_order_reminders", "order_reminders_log.txt"),
    ("log_crm_heartbeat", "crm_heartbeat_log.txt"),
    ("update_low_stock", "low_stock_updates_log.txt"),
    ("generate_crm_report", "crm_report_log.txt"),
];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `crm` in `dir` as [`crm_in`] sets it up, but started by `sh` under umask 022 (the usual
/// default, under which new files are 0644).
fn crm_umask_022(dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022; exec \"$0\" \"$@\"", CRM])
        .current_dir(dir)
        .env("CRM_TIME_ZONE", "UTC")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("CRM_") && key != "CRM_TIME_ZONE" {
            command.env_remove(key);
        }
    }
    command
}

/// A running `crm serve`, its URL and its output streams.
struct Served {
    _child: KillOnDrop,
    url: String,
    stdout: BufReader<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Starts `crm serve --bind 127.0.0.1:0 ARGS` with `command`'s settings.
fn serve(mut command: Command, args: &[&str]) -> Served {
    let mut child = command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crm serve starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let url = read_served_url(&mut stdout);
    Served {
        _child: child,
        url,
        stdout,
        stderr: Some(stderr),
    }
}

/// POSTs a GraphQL request with an optional bearer token; the JSON answer.
fn post(url: &str, body: &serde_json::Value, token: Option<&str>) -> serde_json::Value {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let body = body.to_string();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// S6: the five jobs' log files are 0600 under umask 022, including one that existed as 0644
/// (it is made 0600 and keeps its lines); the SQLite database and its `-wal` and `-shm` files
/// are 0600 while the server has them open.
#[test]
fn log_files_and_the_database_are_owner_only_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let existing = logs.join("order_reminders_log.txt");
    std::fs::write(
        &existing,
        "2026-01-01 08:00:00 - Reminder: order 1 for old@example.com\n",
    )
    .unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut command = crm_umask_022(dir.path());
    command.env("CRM_LOG_DIR", &logs);
    // Demo data on the first start: recent orders, so the reminders log gets e-mails.
    let server = serve(command, &[]);
    for file in ["crm.db", "crm.db-wal", "crm.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    for (code, file) in JOBS {
        let output = crm_umask_022(dir.path())
            .env("CRM_LOG_DIR", &logs)
            .args(["--graphql-url", &server.url, "jobs", "run", code])
            .output()
            .unwrap();
        assert_exit(&output, 0);
        assert_eq!(mode(&logs.join(file)), 0o600, "{file}");
    }
    let reminders = std::fs::read_to_string(&existing).unwrap();
    assert!(reminders.starts_with("2026-01-01 08:00:00 - Reminder: order 1 for old@"));
    assert!(reminders.lines().count() > 1, "{reminders}");
}

/// S7: an `--env-file` others can read gets a warning naming the file and its mode (never
/// its contents); an owner-only one gets none. The command still runs.
#[test]
fn a_world_readable_env_file_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.env");
    std::fs::write(&file, "CRM_API_TOKEN=tok-3nv-s3cret\n").unwrap();
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = crm_in(dir.path())
            .arg("--env-file")
            .arg(&file)
            .args(["jobs", "list"])
            .output()
            .unwrap();
        assert_exit(&output, 0);
        let err = stderr(&output);
        assert!(!err.contains("tok-3nv-s3cret"), "{err}");
        if warned {
            assert!(err.contains("warning"), "{mode:o}: {err}");
            assert!(err.contains(&file.display().to_string()), "{err}");
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
        } else {
            assert!(!err.contains("warning"), "{err}");
        }
    }
}

/// S8: `crm serve --scheduler` at trace level for our crates, over PostgreSQL with a password
/// in the URL, a token, a webhook URL with a secret, customers with e-mails created through
/// the API, and jobs run (reminders, which read the e-mails; a heartbeat that fails and
/// alerts): none of the e-mails, the token, the password or the webhook secret appear
/// anywhere in the service's stdout or stderr. (The reminders log file, the contract's, holds
/// the e-mails; it is 0600, row S6.)
#[test]
fn the_services_own_logs_hold_no_personal_data_or_secrets() {
    const TOKEN: &str = "tok-L0g-s3cret-9f8e7d";
    const PASSWORD: &str = "pw-L0g-s3cret-1a2b3c";
    const HOOK_SECRET: &str = "whsec-L0g-s3cret-4d5e6f";
    let db = async_std::task::block_on(crm_core::testing::TestDb::postgres());
    let url = db.url().to_owned();
    let rest = url.strip_prefix("postgres://").expect(&url);
    let url = match rest.split_once('@') {
        Some((user, host)) => format!("postgres://{user}:{PASSWORD}@{host}"),
        None => format!("postgres://postgres:{PASSWORD}@{rest}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // The heartbeat cannot write its log (a directory is in the way): it fails, and alerts.
    std::fs::create_dir(logs.join("crm_heartbeat_log.txt")).unwrap();
    let settings = |command: &mut Command| {
        command
            .env("CRM_DATABASE_URL", &url)
            .env("CRM_API_TOKEN", TOKEN)
            .env("CRM_LOG_DIR", &logs)
            .env(
                "CRM_ALERT_WEBHOOK_URL",
                format!("http://127.0.0.1:9/hook?key={HOOK_SECRET}"),
            )
            .env(
                "RUST_LOG",
                "trace,sqlx=trace,surf=trace,tide=trace,async_h1=trace,redis=trace",
            );
    };
    let mut command = crm_in(dir.path());
    settings(&mut command);
    let mut server = serve(command, &["--scheduler"]);
    // Read stderr as it comes: at trace level it would soon fill the pipe and stall the server.
    let logged = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let logged = logged.clone();
        let mut stderr = BufReader::new(server.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                logged.lock().unwrap().push_str(&line);
                line.clear();
            }
        })
    };
    let emails: Vec<String> = (0..3).map(|i| format!("pii{i}.l0g@example.com")).collect();
    let mut ids = Vec::new();
    for email in &emails {
        let answer = post(
            &server.url,
            &serde_json::json!({
                "query": "mutation($i: CustomerInput!) { createCustomer(input: $i) { customer { id } } }",
                "variables": {"i": {"name": "Pat Doe", "email": email, "phone": "+1234567890"}}
            }),
            Some(TOKEN),
        );
        ids.push(answer["data"]["createCustomer"]["customer"]["id"].clone());
    }
    let product = post(
        &server.url,
        &serde_json::json!({"query": "mutation { createProduct(input: {name: \"P\", price: \"1.00\", stock: 1}) { product { id } } }"}),
        Some(TOKEN),
    );
    let product = product["data"]["createProduct"]["product"]["id"].clone();
    for id in &ids {
        let answer = post(
            &server.url,
            &serde_json::json!({
                "query": "mutation($c: ID!, $p: ID!) { createOrder(input: {customerId: $c, productIds: [$p]}) { order { id } } }",
                "variables": {"c": id, "p": product}
            }),
            Some(TOKEN),
        );
        assert!(answer.get("errors").is_none(), "{answer}");
    }
    // Queries that name the e-mails, by POST and by GET (the URL's query string).
    let query = format!(
        "{{ allCustomers(filter: {{emailIcontains: \"{}\"}}) {{ edges {{ node {{ email }} }} }} }}",
        emails[0]
    );
    let answer = post(&server.url, &serde_json::json!({ "query": query }), None);
    assert!(answer.to_string().contains(&emails[0]), "{answer}");
    let encoded: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (status, answer) = process::http_get(&format!("{}?query={encoded}", server.url), None);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(&emails[0]), "{answer}");
    // Run the jobs through the scheduler in the server: one-off runs soon (time enough for
    // both `jobs at` commands to be given it as a future instant on a loaded machine).
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(8)).to_rfc3339();
    for code in ["send_order_reminders", "log_crm_heartbeat"] {
        let mut command = crm_in(dir.path());
        settings(&mut command);
        command.env("RUST_LOG", "error");
        let output = command.args(["jobs", "at", code, &at]).output().unwrap();
        assert_exit(&output, 0);
    }
    let reminders = logs.join("order_reminders_log.txt");
    wait_until("the reminders", Duration::from_secs(60), || {
        std::fs::read_to_string(&reminders).is_ok_and(|t| t.lines().count() >= 3)
    });
    // The heartbeat's failure, its alert and the webhook's three attempts (1 s apart).
    wait_until("the undelivered alert", Duration::from_secs(60), || {
        logged
            .lock()
            .unwrap()
            .contains("Could not deliver an alert")
    });
    drop(server._child);
    reader.join().unwrap();
    let mut out = String::new();
    server.stdout.read_to_string(&mut out).unwrap();
    let err = logged.lock().unwrap().clone();
    let all = format!("{out}\n{err}");
    assert!(
        all.contains("Job failed") || all.contains("keeps failing"),
        "the heartbeat did not fail: {all}"
    );
    assert!(all.contains("request answered"), "{all}");
    let reminder_log = std::fs::read_to_string(&reminders).unwrap();
    assert!(
        reminder_log.contains(&emails[0]),
        "the job log holds them: {reminder_log}"
    );
    for secret in emails.iter().map(String::as_str).chain([
        TOKEN,
        PASSWORD,
        HOOK_SECRET,
        "pii0.l0g",
        "+1234567890",
    ]) {
        let at = all.find(secret);
        assert!(
            at.is_none(),
            "{secret} in the service's output: …{}…",
            &all[at.unwrap().saturating_sub(300)..(at.unwrap() + 100).min(all.len())]
        );
    }
    eprintln!(
        "S8 service output scanned: {} bytes, {} lines",
        all.len(),
        all.lines().count()
    );
}

/// The command of one of our crontab lines, as cron's child hands it to `sh -c`: the text
/// after the five schedule fields, before our tag, with `\%` made `%` (cron's own step).
fn cron_command(line: &str) -> String {
    let command = line.splitn(6, ' ').nth(5).unwrap();
    let command = command.rsplit_once(" # crm-job:").unwrap().0;
    command.replace("\\%", "%")
}

/// S9: `crm crontab add` with hostile settings. Paths and values with spaces, quotes, `$(…)`,
/// backticks, `;`, `|`, `&`, `%` and `#` become one inert word each: installed through the
/// real `crontab` program, and each line's command run with `sh -c` as cron would, no
/// injected command runs (the marker file is never created) and `crm` receives the values
/// as given. A line break (or any control character) in a value is refused, exit 2, and
/// nothing is installed: it would end the crontab line and start another.
#[test]
fn crontab_lines_keep_hostile_settings_out_of_the_shell_and_out_of_cron() {
    let Some(_turn) = crontab_turn() else {
        return;
    };
    let _saved = SavedCrontab::save();
    let foreign = "# mine\n30 3 * * * /bin/true\n";
    install_crontab(foreign);
    // A directory under the target dir (same file system as the binary, for the hard link).
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let marker = base.path().join("PWNED");
    // Relative to the directory the line is run in (a `/` would make these nested paths).
    let evil = "a b'c\"d $(touch PWNED) `touch PWNED`; touch PWNED | & 50% #x";
    let bin_dir = base.path().join(format!("bin {evil}"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    let crm = bin_dir.join("crm");
    std::fs::hard_link(CRM, &crm)
        .or_else(|_| std::fs::copy(CRM, &crm).map(|_| ()))
        .unwrap();
    let logs = base.path().join(format!("logs {evil}"));
    std::fs::create_dir_all(&logs).unwrap();
    let db_path = base.path().join(format!("db {evil}.db"));
    let env_file = base.path().join(format!("env {evil}"));
    std::fs::write(&env_file, "CRM_TIME_ZONE=UTC\n").unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = Command::new(&crm);
        for (key, _) in std::env::vars() {
            if key.starts_with("CRM_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(base.path())
            .env("CRM_TIME_ZONE", "UTC")
            .env("RUST_LOG", "error")
            .env("CRM_LOG_DIR", &logs)
            .env(
                "CRM_GRAPHQL_URL",
                "http://127.0.0.1:9/graphql?x=$(touch PWNED)`touch PWNED`",
            );
        for (k, v) in extra {
            command.env(k, v);
        }
        command.args(args).stdin(Stdio::null()).output().unwrap()
    };
    let db_url = format!("sqlite://{}", db_path.display());
    for extra in [
        vec![("CRM_DATABASE_URL", db_url.as_str())],
        vec![("CRM_ENV_FILE", env_file.to_str().unwrap())],
    ] {
        install_crontab(foreign);
        let output = run(&["crontab", "add"], &extra);
        assert_exit(&output, 0);
        let installed = current_crontab();
        assert!(installed.starts_with(foreign), "{installed}");
        let ours: Vec<&str> = installed
            .lines()
            .filter(|l| l.contains("# crm-job:"))
            .collect();
        assert_eq!(ours.len(), 5, "one line per job, no more: {installed}");
        assert_eq!(
            installed.lines().count(),
            foreign.lines().count() + 5,
            "{installed}"
        );
        // Run the heartbeat's line as cron would: the job runs (and fails: no server), and
        // nothing injected runs.
        let line = ours
            .iter()
            .find(|l| l.ends_with("log_crm_heartbeat"))
            .unwrap();
        let status = Command::new("sh")
            .args(["-c", &cron_command(line)])
            .current_dir(base.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .status()
            .unwrap();
        assert_eq!(
            status.code(),
            Some(1),
            "the job ran and failed as expected: {line}"
        );
        assert!(!marker.exists(), "an injected command ran: {line}");
        let heartbeat = std::fs::read_to_string(logs.join("crm_heartbeat_log.txt")).unwrap();
        assert!(
            heartbeat.contains("GraphQL endpoint not responding"),
            "{heartbeat}"
        );
        let output_log = std::fs::read_to_string(logs.join("crm_cron_output.log")).unwrap();
        assert!(output_log.contains("not responding"), "{output_log}");
        if extra[0].0 == "CRM_DATABASE_URL" {
            assert!(db_path.exists(), "crm got the database path as given");
        }
    }
    // Line breaks (or other control characters) in any value are refused, nothing written.
    install_crontab(foreign);
    let newline_dir = base.path().join("logs\n* * * * * touch PWNED #");
    std::fs::create_dir_all(&newline_dir).unwrap();
    let cases = [
        ("CRM_LOG_DIR", newline_dir.display().to_string()),
        (
            "CRM_DATABASE_URL",
            format!(
                "sqlite://{}/db\n* * * * * touch PWNED #.db",
                base.path().display()
            ),
        ),
        ("CRM_TIME_ZONE", "UTC\r".to_owned()),
    ];
    for (key, value) in &cases {
        let output = run(&["crontab", "add"], &[(key, value.as_str())]);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("control character"),
            "{key}: {}",
            stderr(&output)
        );
        assert_eq!(current_crontab(), foreign, "{key}: nothing installed");
    }
    assert!(!marker.exists());
    // Secrets never go into the crontab: a database password is refused like a token (the
    // token's case is `cli.rs`'s), and through an env file neither appears in the lines.
    let db = async_std::task::block_on(crm_core::testing::TestDb::postgres());
    let with_password = match db
        .url()
        .strip_prefix("postgres://")
        .unwrap()
        .split_once('@')
    {
        Some((user, host)) => format!("postgres://{user}:pw-cr0n-s3cret@{host}"),
        None => panic!("a PostgreSQL test URL without a user: {}", db.url()),
    };
    let output = run(
        &["crontab", "add"],
        &[("CRM_DATABASE_URL", with_password.as_str())],
    );
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--env-file"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("pw-cr0n-s3cret"));
    assert_eq!(current_crontab(), foreign, "nothing installed");
    std::fs::write(
        &env_file,
        format!("CRM_DATABASE_URL={with_password}\nCRM_API_TOKEN=tok-cr0n-s3cret\n"),
    )
    .unwrap();
    let output = run(
        &["crontab", "add"],
        &[("CRM_ENV_FILE", env_file.to_str().unwrap())],
    );
    assert_exit(&output, 0);
    let installed = current_crontab();
    assert!(
        !installed.contains("s3cret") && installed.contains("--env-file"),
        "{installed}"
    );
}

/// S10: every dependency in Cargo.lock comes from crates.io (no git or path sources besides
/// the workspace's own crates), and every licence `cargo metadata` reports is in the allow
/// list below: permissive licences only, no copyleft in the shipped binary.
#[test]
fn dependencies_come_from_crates_io_under_permissive_licences() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let mut packages = 0;
    for block in lock.split("[[package]]").skip(1) {
        packages += 1;
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .unwrap();
        match block.lines().find_map(|l| l.strip_prefix("source = ")) {
            Some(source) => assert_eq!(
                source, "\"registry+https://github.com/rust-lang/crates.io-index\"",
                "{name}"
            ),
            None => assert!(
                [
                    "\"crm\"",
                    "\"crm-core\"",
                    "\"crm-jobs\"",
                    "\"crm-server\"",
                    "\"crm-cli\"",
                    "\"crm-tokio-app\""
                ]
                .contains(&name),
                "{name} has no source: a path dependency outside the workspace?"
            ),
        }
    }
    // Only this platform's packages: the others (Windows crates…) are not downloaded here.
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    const ALLOWED: [&str; 11] = [
        "MIT",
        "Apache-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "Zlib",
        "Unicode-3.0",
        "Unicode-DFS-2016",
        "CC0-1.0",
        "MPL-2.0",
        "Apache-2.0 WITH LLVM-exception",
    ];
    let mut refused = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let license = package["license"].as_str().unwrap_or("");
        // An SPDX expression: OR needs one allowed side, AND needs all.
        // Old manifests write `MIT/Apache-2.0` for `MIT OR Apache-2.0`.
        let ok = license
            .replace(['(', ')'], "")
            .replace('/', " OR ")
            .split(" OR ")
            .any(|alternative| {
                alternative.split(" AND ").all(|l| {
                    let l = l.trim();
                    ALLOWED.contains(&l) || l.ends_with("WITH LLVM-exception")
                })
            });
        if !ok {
            refused.push(format!("{name}: {license:?}"));
        }
    }
    eprintln!(
        "S10 {packages} packages in Cargo.lock, {} in cargo metadata",
        metadata["packages"].as_array().unwrap().len()
    );
    assert!(
        refused.is_empty(),
        "licences outside the allow list: {refused:#?}"
    );
}
