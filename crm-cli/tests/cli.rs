//! The real `crm` binary, run in a temporary directory the way an operator runs it: migrate,
//! seed, serve on a free port, each job, run-due, history, crontab management against the real
//! `crontab` program, and bad input with its exit codes.

#[path = "support/process.rs"]
mod process;
use process::{
    JOB_CODES, KillOnDrop, assert_exit, crm_in, http_get, quiet_schedules, read_served_url, stderr,
    stdout,
};
#[path = "support/crontab.rs"]
mod crontab;
use crontab::{
    SavedCrontab, crontab_turn, current_crontab, ensure_cron_daemon, install_crontab,
    install_crontab_for_cron,
};

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One operator's working directory and log directory.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_dir(&self) -> PathBuf {
        let logs = self.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        logs
    }

    /// `crm` in this directory, with none of the caller's `CRM_*` settings and logs in `logs/`.
    fn crm(&self) -> Command {
        let mut command = crm_in(self.path());
        command.env("CRM_LOG_DIR", self.log_dir());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.crm().args(args).output().expect("crm runs")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir().join(name)).unwrap_or_default()
    }

    /// Starts `crm serve` on a free port; the server stops when the guard drops.
    fn serve(&self, extra: &[&str]) -> Server {
        let mut child = self
            .crm()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("crm serve starts");
        let url = read_served_url(&mut BufReader::new(child.stdout.take().unwrap()));
        Server { child, url }
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of a log matches `YYYY-MM-DD HH:MM:SS - <rest>`; returns the rests.
fn dated_lines(log: &str) -> Vec<String> {
    log.lines()
        .map(|line| {
            let (stamp, rest) = line.split_at(19);
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("bad timestamp in {line:?}: {e}"));
            rest.strip_prefix(" - ")
                .unwrap_or_else(|| panic!("no ' - ' after the timestamp in {line:?}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn migrate_creates_a_private_database_file_and_is_idempotent() {
    use std::os::unix::fs::PermissionsExt as _;

    let ws = Workspace::new();
    let first = ws.run(&["migrate"]);
    assert_exit(&first, 0);
    let mode = std::fs::metadata(ws.path().join("crm.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the database holds e-mails: owner only"
    );
    assert_exit(&ws.run(&["migrate"]), 0);
}

#[test]
fn the_jobs_run_against_a_served_database_and_log_the_contracts_lines() {
    let ws = Workspace::new();
    assert_exit(
        &ws.run(&[
            "seed",
            "--customers",
            "300",
            "--products",
            "40",
            "--orders",
            "2000",
        ]),
        0,
    );
    let server = ws.serve(&["--no-demo-data"]);
    let graphql = ["--graphql-url", server.url.as_str()];

    let cleanup = ws.run(&["jobs", "run", "clean_inactive_customers"]);
    assert_exit(&cleanup, 0);
    let lines = dated_lines(&ws.log("customer_cleanup_log.txt"));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("Deleted ") && lines[0].ends_with(" inactive customers"),
        "{lines:?}"
    );

    let reminders = ws
        .crm()
        .args(graphql)
        .args(["jobs", "run", "send_order_reminders"])
        .output()
        .unwrap();
    assert_exit(&reminders, 0);
    assert!(stdout(&reminders).contains("Order reminders processed!"));
    let lines = dated_lines(&ws.log("order_reminders_log.txt"));
    assert!(!lines.is_empty(), "seeded data has orders in the last week");
    for line in &lines {
        let rest = line.strip_prefix("Reminder: order ").expect(line);
        let (id, email) = rest.split_once(" for ").expect(line);
        assert!(id.parse::<u64>().is_ok(), "{line}");
        assert!(email.contains('@'), "{line}");
    }

    let heartbeat = ws
        .crm()
        .args(graphql)
        .args(["jobs", "run", "log_crm_heartbeat"])
        .output()
        .unwrap();
    assert_exit(&heartbeat, 0);
    let beat = ws.log("crm_heartbeat_log.txt");
    let (stamp, rest) = beat.trim_end().split_at(19);
    chrono::NaiveDateTime::parse_from_str(stamp, "%d/%m/%Y-%H:%M:%S").expect(stamp);
    assert_eq!(rest, " CRM is alive");

    let restock = ws
        .crm()
        .args(graphql)
        .args(["jobs", "run", "update_low_stock"])
        .output()
        .unwrap();
    assert_exit(&restock, 0);
    for line in dated_lines(&ws.log("low_stock_updates_log.txt")) {
        let (_, stock) = line.rsplit_once(": stock now ").expect(&line);
        let stock: i32 = stock.parse().expect(&line);
        assert!(
            (10..20).contains(&stock),
            "restocked from below 10 by 10: {line}"
        );
    }

    let report = ws
        .crm()
        .args(graphql)
        .args(["jobs", "run", "generate_crm_report"])
        .output()
        .unwrap();
    assert_exit(&report, 0);
    let lines = dated_lines(&ws.log("crm_report_log.txt"));
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words[0], "Report:");
    assert_eq!(words[2], "customers,");
    assert_eq!(words[4], "orders,");
    assert_eq!(words[6], "revenue.");
    let deleted: u64 = dated_lines(&ws.log("customer_cleanup_log.txt"))[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(words[1].parse::<u64>().unwrap(), 300 - deleted, "{lines:?}");
    assert!(words[3].parse::<u64>().unwrap() > 0, "{lines:?}");
    let revenue = words[5];
    assert_eq!(
        revenue.split_once('.').map(|(_, cents)| cents.len()),
        Some(2),
        "{revenue}"
    );

    let history = ws.run(&["jobs", "history"]);
    assert_exit(&history, 0);
    let history = stdout(&history);
    for code in [
        "clean_inactive_customers",
        "send_order_reminders",
        "log_crm_heartbeat",
        "update_low_stock",
        "generate_crm_report",
    ] {
        assert!(
            history.contains(code),
            "{code} missing from history:\n{history}"
        );
    }
    assert_eq!(history.matches("succeeded").count(), 5, "{history}");
}

#[test]
fn run_due_runs_each_due_run_once_and_a_second_call_right_after_finds_nothing() {
    let ws = Workspace::new();
    assert_exit(&ws.run(&["migrate"]), 0);
    // Every schedule moved twelve hours away, so no scheduled tick can fall due while the
    // test runs, whatever the wall clock says; the runs that are due are the one-offs asked
    // for below (an instant must be in the future when asked for: a few seconds from now).
    quiet_schedules(|| ws.crm(), &[]);
    let mut last = chrono::Utc::now();
    for code in JOB_CODES {
        last = chrono::Utc::now() + chrono::Duration::seconds(2);
        assert_exit(&ws.run(&["jobs", "at", code, &last.to_rfc3339()]), 0);
    }
    while chrono::Utc::now() <= last {
        std::thread::sleep(Duration::from_millis(100));
    }
    // No server: the GraphQL jobs fail, and that is recorded too; what matters is that each
    // due run is taken once.
    let run_due = || {
        ws.crm()
            .args(["--graphql-url", "http://127.0.0.1:9/graphql"])
            .args(["jobs", "run-due"])
            .output()
            .unwrap()
    };
    let first = run_due();
    let second = run_due();

    let first_out = stdout(&first);
    assert_exit(&first, 1);
    let mut ran: Vec<&str> = first_out
        .lines()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    ran.sort_unstable();
    let mut all = JOB_CODES.to_vec();
    all.sort_unstable();
    assert_eq!(ran, all, "each job's one-off ran once:\n{first_out}");

    assert_exit(&second, 0);
    assert_eq!(stdout(&second).trim(), "Nothing due.");
    let history = stdout(&ws.run(&["jobs", "history"]));
    for code in JOB_CODES {
        assert_eq!(history.matches(code).count(), 1, "{code}:\n{history}");
    }
}

#[test]
fn bad_input_gets_a_one_line_reason_and_the_contracts_exit_code() {
    let ws = Workspace::new();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["jobs", "run", "no_such_job"],
            2,
            "no job with code 'no_such_job'",
        ),
        (
            &["--database-url", "mysql://db/crm", "migrate"],
            2,
            "neither sqlite",
        ),
        (
            &["--time-zone", "Mars/Olympus", "jobs", "list"],
            2,
            "Mars/Olympus",
        ),
        (&["--graphql-url", "ftp://x", "jobs", "list"], 2, "ftp://x"),
        (&["jobs", "frobnicate"], 2, "unrecognized subcommand"),
        (
            &[
                "--graphql-url",
                "http://127.0.0.1:9/graphql",
                "jobs",
                "run",
                "log_crm_heartbeat",
            ],
            1,
            "GraphQL endpoint not responding",
        ),
    ];
    for (args, code, reason) in cases {
        let output = ws.run(args);
        assert_eq!(
            output.status.code(),
            Some(*code),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(reason),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let unreachable = ws.run(&[
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "migrate",
    ]);
    assert_exit(&unreachable, 1);
    let reason = stderr(&unreachable);
    assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    assert!(
        reason.starts_with("crm: Failed to open the database"),
        "{reason}"
    );
}

#[test]
fn a_database_password_never_appears_in_errors() {
    let ws = Workspace::new();
    let output = ws.run(&[
        "--database-url",
        "postgres://bob:hunter2@127.0.0.1:1/none",
        "migrate",
    ]);
    assert_exit(&output, 1);
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
}

#[test]
fn crontab_add_show_remove_manage_only_our_lines() {
    let Some(_turn) = crontab_turn() else {
        return;
    };
    let _saved = SavedCrontab::save();
    let foreign = "# backups\n30 3 * * * /usr/local/bin/backup --all\n";
    install_crontab(foreign);
    let ws = Workspace::new();

    let add = ws.run(&["crontab", "add"]);
    assert_exit(&add, 0);
    let installed = current_crontab();
    assert!(
        installed.starts_with(foreign),
        "the user's lines stay first:\n{installed}"
    );
    let ours: Vec<&str> = installed
        .lines()
        .filter(|l| l.contains("# crm-job:"))
        .collect();
    assert_eq!(ours.len(), 5, "{installed}");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_crm")).unwrap();
    for (code, schedule) in [
        ("clean_inactive_customers", "0 2 * * 0"),
        ("send_order_reminders", "0 8 * * *"),
        ("log_crm_heartbeat", "*/5 * * * *"),
        ("update_low_stock", "0 */12 * * *"),
        ("generate_crm_report", "0 6 * * 1"),
    ] {
        let line = ours
            .iter()
            .find(|l| l.ends_with(&format!("# crm-job:{code}")))
            .unwrap_or_else(|| panic!("no line for {code}:\n{installed}"));
        assert!(line.starts_with(&format!("{schedule} /")), "{line}");
        assert!(
            line.contains(&exe.display().to_string()) || line.contains(env!("CARGO_BIN_EXE_crm")),
            "{line}"
        );
        assert!(
            line.contains(&format!("jobs run {code} >> "))
                && line.ends_with(&format!("2>&1 # crm-job:{code}")),
            "{line}"
        );
    }

    let again = ws.run(&["crontab", "add"]);
    assert_exit(&again, 0);
    assert_eq!(current_crontab(), installed, "adding twice adds nothing");

    let show = ws.run(&["crontab", "show"]);
    assert_exit(&show, 0);
    assert_eq!(stdout(&show).lines().collect::<Vec<_>>(), ours);

    let remove = ws.run(&["crontab", "remove"]);
    assert_exit(&remove, 0);
    assert_eq!(current_crontab(), foreign, "only our lines go");
}

#[test]
fn crontab_add_refuses_to_write_a_token_into_the_crontab() {
    let Some(_turn) = crontab_turn() else {
        return;
    };
    let _saved = SavedCrontab::save();
    install_crontab("");
    let ws = Workspace::new();
    let output = ws
        .crm()
        .env("CRM_API_TOKEN", "s3cret")
        .args(["crontab", "add"])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--env-file"),
        "{}",
        stderr(&output)
    );
    assert!(!current_crontab().contains("s3cret"));
    assert!(
        !current_crontab().contains("crm-job"),
        "nothing was written"
    );
}

/// `--help` says what `--force` does and where the default time zone comes from.
#[test]
fn help_says_what_force_does_and_what_the_default_zone_reads() {
    let ws = Workspace::new();
    let run = ws.run(&["jobs", "run", "--help"]);
    assert_exit(&run, 0);
    let run = stdout(&run)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        run.contains(
            "--force Run as a manual run of its own and leave the job's current tick to its \
             schedule, even when that tick is due now."
        ),
        "{run}"
    );
    let top = ws.run(&["--help"]);
    let top = stdout(&top)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        top.contains(
            "[default: the zone TZ names, as most Unix programs read it; else the machine's \
             zone, read from /etc/localtime, else /etc/timezone; else UTC]"
        ),
        "{top}"
    );
}

/// Without `CRM_TIME_ZONE`, the jobs' zone is the one `TZ` names, as for most Unix programs;
/// `CRM_TIME_ZONE` wins over it; a `TZ` that names no IANA zone is refused (exit 2, one line)
/// rather than quietly replaced by another zone.
#[test]
fn the_jobs_follow_tz_unless_crm_time_zone_is_set() {
    let ws = Workspace::new();
    let list = |vars: &[(&str, &str)]| {
        let mut command = ws.crm();
        command.env_remove("CRM_TIME_ZONE");
        for (name, value) in vars {
            command.env(name, value);
        }
        command.args(["jobs", "list"]).output().unwrap()
    };
    let row = |output: &Output| {
        assert_exit(output, 0);
        stdout(output)
            .lines()
            .find(|l| l.starts_with("send_order_reminders"))
            .unwrap_or_default()
            .to_owned()
    };
    let tokyo = row(&list(&[("TZ", ":Asia/Tokyo")]));
    assert!(tokyo.contains("0 8 * * * in Asia/Tokyo"), "{tokyo}");
    assert!(tokyo.contains(" JST"), "next run in Tokyo time: {tokyo}");
    let cairo = row(&list(&[
        ("TZ", "Asia/Tokyo"),
        ("CRM_TIME_ZONE", "Africa/Cairo"),
    ]));
    assert!(cairo.contains("0 8 * * * in Africa/Cairo"), "{cairo}");
    let posix = list(&[("TZ", "EST+5")]);
    assert_exit(&posix, 2);
    assert_eq!(stderr(&posix).lines().count(), 1, "{}", stderr(&posix));
    assert!(
        stderr(&posix).contains("TZ: 'EST+5' names no IANA time zone"),
        "{}",
        stderr(&posix)
    );
}

/// A zone whose clock differs from this machine's today: Tokyo, unless the machine is on Tokyo
/// time.
fn a_zone_cron_does_not_fire_in() -> &'static str {
    use chrono::Offset as _;
    let offset = chrono::Local::now().offset().fix().local_minus_utc();
    if offset == 9 * 3600 {
        "America/New_York"
    } else {
        "Asia/Tokyo"
    }
}

/// `crm crontab add` with the jobs in another zone than cron's: refused with exit 2 and both
/// zones named, and the crontab left as it was, whether the zone came from the flag, the
/// variable or the environment file (cron would fire 02:00 UTC while the log said 02:00 Tokyo).
#[test]
fn crontab_add_refuses_a_time_zone_cron_does_not_fire_in_however_it_is_given() {
    let _turn = crontab_turn();
    let _saved = SavedCrontab::save();
    let foreign = "# backups\n30 3 * * * /usr/local/bin/backup --all\n";
    install_crontab(foreign);
    let ws = Workspace::new();
    let zone = a_zone_cron_does_not_fire_in();
    let env_file = ws.path().join("crm.env");
    std::fs::write(&env_file, format!("CRM_TIME_ZONE={zone}\n")).unwrap();
    std::fs::set_permissions(
        &env_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut ways = [ws.crm(), ws.crm(), ws.crm(), ws.crm()];
    ways[0].args(["--time-zone", zone]);
    ways[1].env("CRM_TIME_ZONE", zone);
    // The environment wins over the file: this way has no CRM_TIME_ZONE of its own.
    ways[2]
        .env_remove("CRM_TIME_ZONE")
        .arg("--env-file")
        .arg(&env_file);
    // TZ, which the jobs follow when CRM_TIME_ZONE is not set (cron does not).
    ways[3].env_remove("CRM_TIME_ZONE").env("TZ", zone);
    for (way, mut command) in ["flag", "variable", "env file", "TZ"].into_iter().zip(ways) {
        let output = command.args(["crontab", "add"]).output().unwrap();
        assert_exit(&output, 2);
        let reason = stderr(&output);
        assert_eq!(reason.lines().count(), 1, "{way}: {reason}");
        assert!(
            reason.contains(zone) && reason.contains("cron fires"),
            "{way}: {reason}"
        );
        assert_eq!(current_crontab(), foreign, "{way}: nothing was written");
    }
}

/// A `CRON_TZ=` line in the user's crontab that disagrees with the jobs' zone: cronie would
/// fire the jobs' lines in it, so `add` refuses and writes nothing.
#[test]
fn crontab_add_refuses_under_a_cron_tz_line_of_another_zone() {
    let _turn = crontab_turn();
    let _saved = SavedCrontab::save();
    let foreign = format!(
        "CRON_TZ={}\n30 3 * * * /bin/true\n",
        a_zone_cron_does_not_fire_in()
    );
    install_crontab(&foreign);
    let ws = Workspace::new();
    let output = ws.run(&["crontab", "add"]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("CRON_TZ="), "{}", stderr(&output));
    assert_eq!(current_crontab(), foreign);
}

/// The system-cron files of `examples/cron_jobs/`, as the README installs them.
fn cron_example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/cron_jobs")
        .join(name)
}

/// Lines of the seed's log `/tmp/<name>` holding `needle` (other test runs may append to it
/// too, so tests count lines rather than expect exact content).
fn seed_log_lines(name: &str, needle: &str) -> usize {
    std::fs::read_to_string(Path::new("/tmp").join(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

impl Workspace {
    /// An env file like the README's `/etc/crm/crm.env` (mode 0600): this workspace's database,
    /// and a log directory other than `/tmp` (as the services' example has), plus `extra`.
    fn env_file(&self, extra: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let file = self.path().join("crm.env");
        std::fs::write(
            &file,
            format!(
                "CRM_DATABASE_URL=sqlite://{}/crm.db\nCRM_LOG_DIR={}\n{extra}",
                self.path().display(),
                self.log_dir().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        file
    }

    /// A command as cron starts it: an almost empty environment, `$HOME` (here an empty
    /// directory of the workspace) as the working directory.
    fn as_cron(&self, program: &str) -> Command {
        let home = self.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &home)
            .env("SHELL", "/bin/sh")
            .current_dir(&home)
            .stdin(Stdio::null());
        command
    }

    /// `clean_inactive_customers.sh` as cron runs it, with this build's `crm` and `env_file`;
    /// what it did and its output log.
    fn run_cleanup_script(&self, env_file: &Path) -> (Output, String) {
        let output_log = self.path().join("cron_output.log");
        let run = self
            .as_cron("bash")
            .arg(cron_example("clean_inactive_customers.sh"))
            .env("CRM_BIN", env!("CARGO_BIN_EXE_crm"))
            .env("CRM_ENV_FILE", env_file)
            .env("CRM_CRON_OUTPUT_LOG", &output_log)
            .output()
            .unwrap();
        (
            run,
            std::fs::read_to_string(&output_log).unwrap_or_default(),
        )
    }
}

/// `clean_inactive_customers.sh` as installed: the job reads `/etc/crm/crm.env` (here a copy)
/// and logs to the seed's `/tmp/customer_cleanup_log.txt` even when the env file names another
/// log directory; the script's own output goes to its output log.
#[test]
fn the_cleanup_script_logs_to_the_seeds_tmp_file_with_the_env_files_database() {
    let ws = Workspace::new();
    assert_exit(
        &ws.run(&["seed", "--customers", "50", "--orders", "200"]),
        0,
    );
    let env_file = ws.env_file("");
    let before = seed_log_lines("customer_cleanup_log.txt", " inactive customers");
    let (run, output) = ws.run_cleanup_script(&env_file);
    assert_exit(&run, 0);
    assert!(
        seed_log_lines("customer_cleanup_log.txt", " inactive customers") > before,
        "no new line in /tmp/customer_cleanup_log.txt; script output: {output}"
    );
    assert_eq!(
        ws.log("customer_cleanup_log.txt"),
        "",
        "not the env file's log dir"
    );
    assert!(
        output.contains("clean_inactive_customers.sh starting"),
        "{output}"
    );
    assert!(
        !ws.path().join("home/crm.db").exists(),
        "the env file's database was used, not $HOME/crm.db"
    );
}

/// Without its env file the cleanup fails and says why, in the script's output log; it does not
/// clean a fresh empty `$HOME/crm.db` and report "Deleted 0 inactive customers".
#[test]
fn the_cleanup_script_fails_with_the_reason_when_the_env_file_is_missing() {
    let ws = Workspace::new();
    let missing = ws.path().join("no-such.env");
    let (run, output) = ws.run_cleanup_script(&missing);
    assert_exit(&run, 2);
    assert!(
        output.contains(&format!(
            "crm: cannot read the environment file {}",
            missing.display()
        )),
        "{output}"
    );
    assert!(!ws.path().join("home/crm.db").exists());
}

/// `order_reminders_crontab.txt`'s command, run as cron runs it (with the binary, env file and
/// output log at this test's paths): the same env-file convention as the cleanup script, and
/// the reminders land in the seed's `/tmp/order_reminders_log.txt`.
#[test]
fn the_reminders_crontab_line_reads_the_env_file_and_logs_to_the_seeds_tmp_file() {
    let ws = Workspace::new();
    assert_exit(
        &ws.run(&["seed", "--customers", "50", "--orders", "400"]),
        0,
    );
    let server = ws.serve(&["--no-demo-data"]);
    let env_file = ws.env_file(&format!("CRM_GRAPHQL_URL={}\n", server.url));
    let output_log = ws.path().join("cron_output.log");
    let line = std::fs::read_to_string(cron_example("order_reminders_crontab.txt")).unwrap();
    let command = line
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        command.contains("--env-file /etc/crm/crm.env --log-dir /tmp "),
        "{command}"
    );
    let command = command
        .replace("/usr/local/bin/crm", env!("CARGO_BIN_EXE_crm"))
        .replace("/etc/crm/crm.env", &env_file.display().to_string())
        .replace(
            "/tmp/crm_cron_output.log",
            &output_log.display().to_string(),
        );
    let before = seed_log_lines("order_reminders_log.txt", " - Reminder: order ");
    let run = ws
        .as_cron("/bin/sh")
        .arg("-c")
        .arg(&command)
        .output()
        .unwrap();
    let output = std::fs::read_to_string(&output_log).unwrap_or_default();
    assert_exit(&run, 0);
    assert!(output.contains("Order reminders processed!"), "{output}");
    assert!(
        seed_log_lines("order_reminders_log.txt", " - Reminder: order ") > before,
        "no new reminder in /tmp/order_reminders_log.txt; output: {output}"
    );
    assert_eq!(ws.log("order_reminders_log.txt"), "");

    // Without the env file: the reason, and no run against an empty $HOME/crm.db.
    std::fs::remove_file(&env_file).unwrap();
    let run = ws
        .as_cron("/bin/sh")
        .arg("-c")
        .arg(&command)
        .output()
        .unwrap();
    assert_exit(&run, 2);
    let output = std::fs::read_to_string(&output_log).unwrap();
    assert!(
        output.contains("cannot read the environment file"),
        "{output}"
    );
    assert!(!ws.path().join("home/crm.db").exists());
}

/// The real cron daemon runs a `* * * * *` heartbeat line and the contract's line appears.
#[test]
fn the_cron_daemon_runs_a_heartbeat_line_within_a_minute() {
    let Some(_turn) = crontab_turn() else {
        return;
    };
    let _saved = SavedCrontab::save();
    ensure_cron_daemon();
    let ws = Workspace::new();
    let server = ws.serve(&["--no-demo-data"]);
    let line = format!(
        "* * * * * cd {dir} && {crm} --log-dir {logs} --graphql-url {url} jobs run log_crm_heartbeat >> {logs}/cron_output.log 2>&1\n",
        dir = ws.path().display(),
        crm = env!("CARGO_BIN_EXE_crm"),
        logs = ws.log_dir().display(),
        url = server.url,
    );
    install_crontab_for_cron(&line);
    // cron reads the changed crontab at the top of the next minute and runs the line then.
    let deadline = Instant::now() + Duration::from_secs(130);
    while Instant::now() < deadline {
        let beat = ws.log("crm_heartbeat_log.txt");
        if !beat.is_empty() {
            assert!(beat.lines().all(|l| l.ends_with(" CRM is alive")), "{beat}");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let daemons = Command::new("ps")
        .args(["-C", "cron", "-o", "pid,stat,etimes,args"])
        .output()
        .unwrap();
    panic!(
        "cron did not run the heartbeat within 130 s; cron output: {}; cron processes:\n{}",
        ws.log("cron_output.log"),
        stdout(&daemons)
    );
}

#[test]
fn the_scheduler_and_the_server_stop_cleanly_on_sigterm() {
    let ws = Workspace::new();
    assert_exit(&ws.run(&["migrate"]), 0);
    for args in [
        &["scheduler"][..],
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--scheduler",
            "--no-demo-data",
        ][..],
    ] {
        let mut child = KillOnDrop(
            ws.crm()
                .args(args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
        let mut line = String::new();
        // Wait until it says it is running, then ask it to stop the way systemd does.
        while !line.contains("Scheduler running") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "{args:?} ended early"
            );
        }
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert!(rest.contains("Scheduler stopped"), "{args:?}: {rest}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn jobs_list_and_the_status_page_tell_each_jobs_state() {
    let ws = Workspace::new();
    assert_exit(&ws.run(&["migrate"]), 0);
    // Without a server the heartbeat fails, and is recorded as such.
    let beat = ws
        .crm()
        .args(["--graphql-url", "http://127.0.0.1:9/graphql"])
        .args(["jobs", "run", "log_crm_heartbeat"])
        .output()
        .unwrap();
    assert_exit(&beat, 1);

    let list = ws.run(&["jobs", "list"]);
    assert_exit(&list, 0);
    let out = stdout(&list);
    let header = out.lines().next().unwrap_or_default();
    for column in [
        "CODE",
        "SCHEDULE",
        "STATE",
        "NEXT RUN",
        "LAST RUN",
        "OUTCOME",
        "LAST SUCCESS",
        "LAST FAILURE",
    ] {
        assert!(header.contains(column), "{out}");
    }
    let row = |code: &str| {
        out.lines()
            .find(|l| l.starts_with(code))
            .unwrap_or_else(|| panic!("no row for {code}: {out}"))
            .to_owned()
    };
    assert!(row("log_crm_heartbeat").contains("failing"), "{out}");
    assert!(row("log_crm_heartbeat").contains("s ago"), "{out}");
    assert!(
        row("clean_inactive_customers").contains("never run"),
        "{out}"
    );

    // `crm serve` shows the same on /status; with a token, only to who has it.
    let server = ws.serve(&["--no-demo-data"]);
    let status_url = server.url.replace("/graphql", "/status");
    let (status, page) = http_get(&status_url, None);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<tr data-job=\"log_crm_heartbeat\" data-state=\"failing\">"),
        "{page}"
    );
    assert_eq!(page.matches("<tr data-job=").count(), 5, "{page}");
    drop(server);
    let mut child = ws
        .crm()
        .env("CRM_API_TOKEN", "cli-t0ken")
        .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guarded = Server {
        url: read_served_url(&mut BufReader::new(child.stdout.take().unwrap()))
            .replace("/graphql", "/status"),
        child,
    };
    assert_eq!(http_get(&guarded.url, None).0, 401);
    assert_eq!(http_get(&guarded.url, Some("cli-t0ken")).0, 200);
}

#[test]
fn serve_refuses_a_page_size_limit_above_the_row_budget_or_zero() {
    let ws = Workspace::new();
    let output = ws
        .crm()
        .env("CRM_MAX_PAGE_SIZE", "6000")
        .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    let reason = stderr(&output);
    assert!(
        reason.contains("--max-page-size (6000) exceeds --max-rows-per-request (5000)"),
        "{reason}"
    );
    let output = ws
        .crm()
        .args(["serve", "--bind", "127.0.0.1:0", "--max-page-size", "0"])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--max-page-size"),
        "{}",
        stderr(&output)
    );
}
