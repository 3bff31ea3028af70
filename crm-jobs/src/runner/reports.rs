//! What the runner tells its caller about each job's turn.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_core::ledger::{RunId, RunKind};

/// What happened to one job in a call to [`Runner::run_due`] or [`Runner::run_now`].
///
/// [`Runner::run_due`]: crate::runner::Runner::run_due
/// [`Runner::run_now`]: crate::runner::Runner::run_now
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed: an error, a panic or a timeout.
    Failed,
    /// Its tick was missed and the misfire policy says skip; recorded as skipped.
    Skipped,
    /// It does not allow parallel runs and another run of it is still going; tried again later.
    Busy,
    /// Another runner claimed this tick first; nothing to do.
    Taken,
    /// The ledger could not be read or written, so the job was not run (or its end not recorded).
    LedgerError,
}

/// A report on one job's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// The job's code.
    pub code: String,
    /// What happened.
    pub status: RunStatus,
    /// The tick concerned.
    pub tick: Option<DateTime<Utc>>,
    /// Why the run happened, when it was claimed or recorded.
    pub kind: Option<RunKind>,
    /// The attempt number of the tick.
    pub attempt: u32,
    /// The ledger row, when one was written.
    pub run_id: Option<RunId>,
    /// The job's outcome message or error, or why it did not run.
    pub message: String,
    /// How long the job ran, when it ran.
    pub duration: Option<Duration>,
}

impl RunReport {
    /// Whether this counts as a failure for the command line's exit status.
    pub fn is_failure(&self) -> bool {
        matches!(self.status, RunStatus::Failed | RunStatus::LedgerError)
    }

    pub(super) fn without_run(
        code: &str,
        status: RunStatus,
        tick: Option<DateTime<Utc>>,
        message: String,
    ) -> Self {
        Self {
            code: code.to_owned(),
            status,
            tick,
            kind: None,
            attempt: 0,
            run_id: None,
            message,
            duration: None,
        }
    }
}

impl RunStatus {
    /// The word the command line shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Busy => "busy",
            Self::Taken => "taken",
            Self::LedgerError => "ledger error",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line for the command line: `log_crm_heartbeat: succeeded in 12 ms: CRM is alive`.
impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.status)?;
        if let Some(duration) = self.duration {
            write!(f, " in {} ms", duration.as_millis())?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}
