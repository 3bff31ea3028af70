//! Building a [`Runner`]: its jobs, ledger, clock, hook, zone and lease, checked once.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use crm_core::ledger::{MAX_CODE_CHARS, MemoryLedger, RunLedger};
use crm_core::overrides::OverrideStore;

use super::{DEFAULT_LEASE, DEFAULT_MISFIRE_GRACE, Registered, Runner, RunnerError};
use crate::alert::{AlertHook, LogAlert};
use crate::clock::{Clock, SystemClock};
use crate::config::JobsConfig;
use crate::job::CronJob;
use crate::schedule::default_time_zone;

/// Builds a [`Runner`]: `Runner::builder().ledger(..).clock(..).job(..).build()`.
#[must_use]
pub struct RunnerBuilder {
    jobs: Vec<Box<dyn CronJob>>,
    ledger: Option<Arc<dyn RunLedger>>,
    overrides: Option<Arc<dyn OverrideStore>>,
    clock: Option<Arc<dyn Clock>>,
    alert: Option<Arc<dyn AlertHook>>,
    host: Option<String>,
    pid: Option<u32>,
    lease: Duration,
    misfire_grace: Duration,
    zone: Option<Tz>,
}

impl fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field(
                "jobs",
                &self
                    .jobs
                    .iter()
                    .map(|j| j.code().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RunnerBuilder {
    /// Registers a job.
    pub fn job(mut self, job: Box<dyn CronJob>) -> Self {
        self.jobs.push(job);
        self
    }

    /// Registers several jobs.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = Box<dyn CronJob>>) -> Self {
        self.jobs.extend(jobs);
        self
    }

    /// Where runs are recorded and claimed; default: a fresh [`MemoryLedger`] (one process only).
    pub fn ledger(mut self, ledger: Arc<dyn RunLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Where operators' run-time changes are kept (pause, replacement schedule, one-off
    /// runs); default: none, so every job keeps its code's schedule. Use the same database as
    /// the ledger, so one-off runs are claimed like any tick.
    pub fn overrides(mut self, overrides: Arc<dyn OverrideStore>) -> Self {
        self.overrides = Some(overrides);
        self
    }

    /// The clock; default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Who hears about failing and recovered jobs; default: [`LogAlert`].
    pub fn alert_hook(mut self, hook: Arc<dyn AlertHook>) -> Self {
        self.alert = Some(hook);
        self
    }

    /// The zone of schedules that name none; default: [`default_time_zone`].
    pub fn time_zone(mut self, zone: Tz) -> Self {
        self.zone = Some(zone);
        self
    }

    /// How long a claim holds unless renewed (default [`DEFAULT_LEASE`]). A runner that dies
    /// frees its job this long after its last renewal.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The zone and lease of `config` ([`JobsConfig::time_zone`], [`JobsConfig::lease`]): what
    /// `CRM_TIME_ZONE` and `CRM_JOB_LEASE` say, so every process started with the same
    /// environment agrees on when a tick is and how long a claim holds.
    pub fn config(self, config: &JobsConfig) -> Self {
        self.time_zone(config.time_zone).lease(config.lease)
    }

    /// How late a tick may be run and still be on time (default [`DEFAULT_MISFIRE_GRACE`]).
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.misfire_grace = grace;
        self
    }

    /// The host name recorded with each run; default: the machine's.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The process id recorded with each run; default: this process's.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Checks the configuration and builds the runner.
    pub fn build(self) -> Result<Runner, RunnerError> {
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(86_400) {
            return Err(RunnerError::LeaseOutOfRange(self.lease));
        }
        let zone = match self.zone {
            Some(zone) => zone,
            None => default_time_zone()?,
        };
        let mut seen = HashSet::new();
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            let code = job.code().to_owned();
            validate_code(&code)?;
            if !seen.insert(code.clone()) {
                return Err(RunnerError::DuplicateCode(code));
            }
            let job: Arc<dyn CronJob> = Arc::from(job);
            jobs.push(Registered {
                schedule: job.schedule().or_time_zone(zone),
                options: job.options(),
                code,
                job,
            });
        }
        Ok(Runner {
            jobs,
            ledger: self.ledger.unwrap_or_else(|| Arc::new(MemoryLedger::new())),
            overrides: self.overrides,
            cache: Mutex::default(),
            overrides_generation: std::sync::atomic::AtomicU64::new(0),
            overrides_event: event_listener::Event::new(),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            alert: self.alert.unwrap_or_else(|| Arc::new(LogAlert)),
            host: self
                .host
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            pid: self.pid.unwrap_or_else(std::process::id),
            lease: self.lease,
            misfire_grace: self.misfire_grace,
            zone,
        })
    }
}

fn validate_code(code: &str) -> Result<(), RunnerError> {
    let invalid = |reason: &str| RunnerError::InvalidCode {
        code: code.to_owned(),
        reason: reason.to_owned(),
    };
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return Err(invalid(&format!(
            "a code has 1 to {MAX_CODE_CHARS} characters"
        )));
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid("use letters, digits, '_', '-' and '.' only"));
    }
    Ok(())
}

impl Runner {
    /// A builder with the defaults.
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder {
            jobs: Vec::new(),
            ledger: None,
            overrides: None,
            clock: None,
            alert: None,
            host: None,
            pid: None,
            lease: DEFAULT_LEASE,
            misfire_grace: DEFAULT_MISFIRE_GRACE,
            zone: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_takes_its_zone_and_lease_from_the_jobs_config() {
        let config = JobsConfig::from_lookup(|name| match name {
            "CRM_TIME_ZONE" => Some("Asia/Tokyo".to_owned()),
            "CRM_JOB_LEASE" => Some("5".to_owned()),
            _ => None,
        })
        .unwrap();
        let runner = Runner::builder().config(&config).build().unwrap();
        assert_eq!(
            (runner.zone, runner.lease),
            (chrono_tz::Asia::Tokyo, Duration::from_secs(5))
        );
        // A later setting still wins (a worker's own lease flag).
        let runner = Runner::builder()
            .config(&config)
            .lease(Duration::from_secs(90))
            .build()
            .unwrap();
        assert_eq!(runner.lease, Duration::from_secs(90));
    }
}
