//! The command line: every subcommand of the contract, with flags that fall back to `CRM_*`
//! environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A CRM backend with a GraphQL API and scheduled jobs.
///
/// Every setting comes from a flag or, failing that, from its `CRM_*` environment variable.
#[derive(Debug, Parser)]
#[command(name = "crm", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) settings: Settings,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct Settings {
    /// A file of `KEY=VALUE` lines (such as CRM_API_TOKEN) read before anything else; keep it
    /// readable by you only. Variables already set in the environment win.
    #[arg(long, global = true, env = "CRM_ENV_FILE")]
    pub(crate) env_file: Option<PathBuf>,
    /// Database: `sqlite://FILE` (created on first use) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        global = true,
        env = "CRM_DATABASE_URL",
        default_value = crm_core::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub(crate) database_url: String,
    /// Where the jobs reach the GraphQL API [default: http://localhost:8000/graphql; for
    /// `serve --scheduler`, the server itself].
    #[arg(long, global = true, env = "CRM_GRAPHQL_URL")]
    pub(crate) graphql_url: Option<String>,
    /// Bearer token mutations require (server) and send (jobs); none by default.
    #[arg(long, global = true, env = "CRM_API_TOKEN", hide_env_values = true)]
    pub(crate) api_token: Option<String>,
    /// Directory of the jobs' log files.
    #[arg(long, global = true, env = "CRM_LOG_DIR", default_value = "/tmp")]
    pub(crate) log_dir: PathBuf,
    /// Where alerts about failing, late or missed jobs are POSTed as JSON (besides the log);
    /// none by default.
    #[arg(
        long,
        global = true,
        env = "CRM_ALERT_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub(crate) alert_webhook_url: Option<String>,
    /// A PEM file of CA certificates trusted, besides the system's roots, for an https://
    /// GraphQL URL or alert webhook (a private CA); none by default.
    #[arg(long, global = true, env = "CRM_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// IANA time zone of schedules and log timestamps [default: the zone TZ names, as most Unix
    /// programs read it; else the machine's zone, read from /etc/localtime, else /etc/timezone;
    /// else UTC].
    #[arg(long, global = true, env = "CRM_TIME_ZONE")]
    pub(crate) time_zone: Option<String>,
    /// Seconds a job run's claim holds unless renewed (scheduler, run-due, jobs run): a run
    /// whose process died is marked abandoned, and its tick run again, this long after its
    /// last renewal [default: 60]. `crm worker` has its own `--lease`.
    #[arg(long, global = true, env = "CRM_JOB_LEASE")]
    pub(crate) job_lease: Option<String>,
    /// Celery broker for `beat` and `worker`: `redis://[:PASSWORD@]HOST:PORT/DB`.
    #[arg(
        long,
        global = true,
        env = "CRM_BROKER_URL",
        default_value = "redis://localhost:6379/0",
        hide_env_values = true
    )]
    pub(crate) broker_url: String,
    /// Days finished job runs are kept in the database: `crm scheduler`, `crm serve
    /// --scheduler` and `crm worker` prune older ones at start and daily (each job's latest runs
    /// always stay); `0` keeps them all.
    #[arg(
        long,
        global = true,
        env = "CRM_JOB_RUNS_RETENTION_DAYS",
        default_value_t = crm_core::ledger::DEFAULT_RETENTION_DAYS,
        value_parser = clap::value_parser!(u32).range(0..=36_500)
    )]
    pub(crate) job_runs_retention_days: u32,
}

impl Settings {
    /// How long finished runs are kept; `None` when retention is off (`0`).
    pub(crate) fn retention(&self) -> Option<std::time::Duration> {
        (self.job_runs_retention_days > 0).then(|| {
            std::time::Duration::from_secs(u64::from(self.job_runs_retention_days) * 86_400)
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade the database schema (idempotent).
    Migrate,
    /// Fill the database with deterministic demo data.
    Seed(SeedArgs),
    /// Serve the GraphQL API (migrates first).
    Serve(ServeArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// List, run and inspect the jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Manage the jobs' lines in your crontab (django-crontab's way).
    #[command(subcommand)]
    Crontab(CrontabCommand),
    /// Run each job when it is due, until stopped (SIGINT or SIGTERM).
    Scheduler(SchedulerArgs),
    /// Publish the jobs' due runs to the broker as Celery tasks, until stopped (the broker way;
    /// run several for availability: each run is published once).
    Beat(BeatArgs),
    /// Run the jobs' Celery tasks from the broker, until stopped (SIGTERM lets running tasks
    /// finish).
    Worker(WorkerArgs),
}

impl Command {
    /// Whether this command runs as a service until stopped.
    pub(crate) fn is_long_running(&self) -> bool {
        matches!(
            self,
            Command::Serve(_) | Command::Scheduler(_) | Command::Beat(_) | Command::Worker(_)
        )
    }
}

#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// Customers to create.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) customers: u64,
    /// Products to create.
    #[arg(long, default_value_t = 100)]
    pub(crate) products: u64,
    /// Orders to create.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) orders: u64,
    /// Seed of the random generator: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CRM_BIND", default_value = "127.0.0.1:8000")]
    pub(crate) bind: SocketAddr,
    /// Also run the job scheduler in this process.
    #[arg(long)]
    pub(crate) scheduler: bool,
    /// Do not fill an empty SQLite database with demo data on start.
    #[arg(long)]
    pub(crate) no_demo_data: bool,
    /// Largest page a list returns (`first` above it is refused; without `first` a list
    /// returns this many rows). At most --max-rows-per-request.
    #[arg(long, env = "CRM_MAX_PAGE_SIZE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_page_size: u64,
    /// Most list rows one request may ask for, all its lists' page sizes together (a bound on
    /// the work one request can cause).
    #[arg(long, env = "CRM_MAX_ROWS_PER_REQUEST", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_rows_per_request: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Code, schedule, next run, last run and its outcome of every job.
    List,
    /// Run one job now, recorded like any run.
    Run {
        /// The job's code, e.g. clean_inactive_customers.
        code: String,
        /// Run as a manual run of its own and leave the job's current tick to its schedule,
        /// even when that tick is due now. Without it, a tick that is due now is taken by this
        /// run, so the scheduler or a cron line does not run it again. Either way the job runs
        /// now, also when its current tick already ran.
        #[arg(long)]
        force: bool,
        /// Report what the job would do, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run every job that is due, once (for a crontab line firing every minute).
    RunDue,
    /// Past runs: start, duration, outcome, message.
    History {
        /// Only this job's runs.
        code: Option<String>,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Resume a paused job: its schedule applies again from now on (missed ticks do not run).
    Enable {
        /// The job's code.
        code: String,
    },
    /// Pause a job: it runs no more (shown as paused, not missed) until enabled. Every running
    /// scheduler and beat obeys within seconds.
    Disable {
        /// The job's code.
        code: String,
    },
    /// Replace a job's schedule at run time (`0 3 * * *`, `every 10 minutes`, `at 08:00,17:30`,
    /// optionally `in Europe/London`), or restore the code's own with --default.
    Schedule {
        /// The job's code.
        code: String,
        /// The new schedule (quote it, or give its words as separate arguments).
        #[arg(required_unless_present = "default", conflicts_with = "default", num_args = 1..)]
        expression: Vec<String>,
        /// Remove the replacement: the job's own schedule applies again.
        #[arg(long)]
        default: bool,
    },
    /// Delete finished runs older than the retention (CRM_JOB_RUNS_RETENTION_DAYS, 90 days by
    /// default), for cron users (`0 3 * * * crm jobs prune`); each job's latest runs, its last
    /// success and failure and running runs always stay. Resolved incidents, one-off runs done
    /// before then and restock idempotency keys taken before then go too. In small batches:
    /// jobs keep running meanwhile.
    Prune {
        /// Delete runs that ended more than this many days ago [default: the retention].
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than: Option<u32>,
    },
    /// Run a job once at an instant (RFC 3339, e.g. 2026-11-27T08:00:00Z or
    /// 2026-11-27T09:00:00+01:00), besides its schedule.
    At {
        /// The job's code.
        code: String,
        /// When to run it (RFC 3339, with its offset).
        instant: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CrontabCommand {
    /// Print the crontab lines `crm` manages.
    Show,
    /// Add (or update) one line per job; lines you wrote are kept.
    Add,
    /// Remove the lines `crm` added, and only those.
    Remove,
}

/// Where on the broker the tasks go; the same on every beat, worker and Python client.
#[derive(Debug, Clone, Args)]
pub(crate) struct BrokerArgs {
    /// The Celery queue (Celery's `task_default_queue`).
    #[arg(long, env = "CRM_BROKER_QUEUE", default_value = "celery")]
    pub(crate) queue: String,
    /// Prefix of every Redis key (kombu's and Celery's `global_keyprefix`); none by default.
    #[arg(long, env = "CRM_BROKER_KEY_PREFIX", default_value = "")]
    pub(crate) key_prefix: String,
    /// Seconds a taken task may stay unacknowledged before another worker gets it (kombu's
    /// `visibility_timeout`); longer than your longest job.
    #[arg(long, env = "CRM_BROKER_VISIBILITY_TIMEOUT", default_value_t = 3600)]
    pub(crate) visibility_timeout: u64,
}

/// Prometheus' way in to a process without a GraphQL server.
#[derive(Debug, Clone, Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics while running (the same as `crm
    /// serve`'s /metrics, read from the run ledger, so every process's runs count; with
    /// CRM_API_TOKEN set, a scrape needs it); off by default. E.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_bind: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BeatArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Tasks run at once [default: the number of CPUs].
    #[arg(long, short = 'c', env = "CRM_WORKER_CONCURRENCY")]
    pub(crate) concurrency: Option<usize>,
    /// Seconds a run's claim holds unless renewed: a tick whose worker was killed is run again
    /// (as the next attempt) once both this and the visibility timeout have passed.
    #[arg(long, env = "CRM_WORKER_LEASE", default_value_t = 60)]
    pub(crate) lease: u64,
    /// Send Celery's task events for Flower (`celery worker -E`); heartbeats are always sent.
    #[arg(long, short = 'E', env = "CRM_WORKER_EVENTS")]
    pub(crate) events: bool,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
}
