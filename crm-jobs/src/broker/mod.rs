//! The broker way (feature `broker` on async-std, or `broker-tokio` on tokio): Celery-compatible
//! beat and workers on Redis.
//!
//! [`Beat`] publishes each job's scheduled ticks as Celery task messages (`crm.tasks.<code>`);
//! [`Worker`]s on any number of machines take them from the queue and run them through the same
//! [`Runner`](crate::Runner) and ledger as every other way of running the jobs, then write the
//! outcome where Celery clients read results. Python Celery speaks to the same Redis: its
//! `send_task('crm.tasks.generate_crm_report')` is run by our worker and its
//! `AsyncResult.get()` reads our result; its workers accept our beat's messages; Flower sees
//! our workers and their tasks through Celery's monitoring events.
//!
//! # Why our own thin protocol code rather than the `celery` crate
//!
//! rusty-celery (`celery` 0.5) runs on tokio and pulls rustls, writes no results (so
//! `AsyncResult.get()` would wait forever), and its beat knows only fixed-offset zones, while
//! our schedules are IANA zones with daylight saving. What the interop needs is small: one JSON
//! envelope (protocol v2), kombu's Redis key layout (queue list, `unacked` hash and index,
//! bindings) and the result backend's key. So this module implements exactly that on the
//! `redis` crate (its async-std or tokio flavour, no TLS), and the tests prove it against real Python Celery.
//!
//! # Each tick once
//!
//! - Every beat publishes every due tick, but through one Redis step that sets a lock key per
//!   (code, tick) and pushes only if the lock was free: with several beats each tick is
//!   published once, and if one dies the others go on publishing (no leader to elect).
//! - A message's task id is the tick (`crm.tasks.<code>@<tick>`), and the worker claims the
//!   tick in the ledger before running it: a message delivered twice (a duplicate publish, a
//!   redelivery after a worker died) runs the job once. A tick whose first claim was abandoned
//!   (its worker was killed) runs again as the next attempt, so it still completes.
//! - Acknowledgement comes after the run (kombu's late ack): a worker killed mid-task leaves
//!   the message in `unacked`, and any worker restores it after the visibility timeout.
//!
//! # Operators' pauses, one-off runs and eta
//!
//! - A worker whose runner has an override store checks the job's pause (one integer read)
//!   when it takes a task: a paused job's task is acknowledged without running, its result is
//!   REVOKED (as `celery revoke` leaves it) and the tick is recorded as skipped, so it does not
//!   run late after the resume. A one-off run's task is not recorded: the one-off stays pending
//!   and the beat's lock is released, so a beat publishes it again after the resume.
//! - A live beat publishes one-off runs (`crm jobs at`) when their instant comes, with the
//!   header `crm_one_off`, under the same one-step lock as ticks; the worker claims them as the
//!   manual run at that instant, the key a `crm scheduler` would use, so each runs once.
//! - A task with a future eta is held by the worker that took it, unacknowledged, until due
//!   (its `unacked_index` entry renewed so no sweep restores it), then goes to the head of the
//!   queue; a stopping worker hands its held tasks back.

mod beat;
mod events;
mod message;
mod rt;
mod transport;
mod worker;

use std::time::Duration;

pub use beat::{Beat, BeatHandle, DEFAULT_BEAT_GRACE, ONE_OFF_LOCK_TTL, Published};
pub use message::{
    MalformedMessage, ONE_OFF_HEADER, TASK_PREFIX, TICK_HEADER, TaskMessage, one_off_envelope,
    one_off_task_id, scheduled_envelope, task_name, tick_task_id,
};
pub use transport::Broker;
pub use worker::{Handled, Worker, WorkerHandle, WorkerSummary};

/// The broker URL when none is configured (the original's Celery setting).
pub const DEFAULT_BROKER_URL: &str = "redis://localhost:6379/0";

/// The queue Celery uses when none is configured.
pub const DEFAULT_QUEUE: &str = "celery";

/// kombu's default: a message taken and not acknowledged for this long is given to another
/// worker. It must exceed the longest job, or a slow run is delivered twice (the ledger then
/// stops the second run, but the message waits for the first).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Celery's default `result_expires`: one day.
pub const DEFAULT_RESULT_EXPIRES: Duration = Duration::from_secs(86_400);

/// Where the broker is and how its keys are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `redis://[:password@]host:port/db`.
    pub url: String,
    /// The queue (Celery's `task_default_queue`).
    pub queue: String,
    /// Prepended to every key, as kombu's and Celery's `global_keyprefix` (empty by default).
    pub key_prefix: String,
    /// How long a taken message may stay unacknowledged before it is redelivered.
    pub visibility_timeout: Duration,
    /// How long results are kept.
    pub result_expires: Duration,
}

impl BrokerConfig {
    /// The defaults for a broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            queue: DEFAULT_QUEUE.to_owned(),
            key_prefix: String::new(),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            result_expires: DEFAULT_RESULT_EXPIRES,
        }
    }

    /// Uses another queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Prefixes every key (set the same `global_keyprefix` on the Python side).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the visibility timeout.
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_BROKER_URL)
    }
}

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker URL cannot be understood.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),
    /// A setting is out of range.
    #[error("invalid broker setting: {0}")]
    InvalidConfig(String),
    /// The broker could not be reached.
    #[error("cannot reach the broker: {0}")]
    Unreachable(redis::RedisError),
    /// A command failed (connection lost, wrong type of key, …).
    #[error("broker command failed: {0}")]
    Redis(redis::RedisError),
}

// Not `#[from]`: the Redis error is shown in the message (logs print only the message), so it
// is not also reported as the source, which would print it twice in an error chain.
impl From<redis::RedisError> for BrokerError {
    fn from(error: redis::RedisError) -> Self {
        Self::Redis(error)
    }
}
