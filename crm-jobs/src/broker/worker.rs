//! The worker: takes Celery task messages off the queue and runs them through the runner.

use super::rt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_core::ledger::{JobRun, RunKind, RunOutcome};
use serde_json::{Value, json};

use super::beat::publish_lock;
use super::events::{Events, HEARTBEAT_SECS};
use super::transport::{Broker, Delivery, Finished};
use super::{BrokerError, TaskMessage};
use crate::runner::{RunReport, RunStatus, Runner, RunnerError};

/// How long a worker waits on an empty queue before it looks at its stop flag again.
const POLL: Duration = Duration::from_secs(1);

/// How often a worker sweeps for messages whose worker died (kombu sweeps about as often).
const RESTORE_EVERY: Duration = Duration::from_secs(10);

/// How long a task waits before it goes back to the queue when the run ledger (the database)
/// could not be used, as the scheduler waits before it looks again.
const LEDGER_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a message held up (job busy, eta not reached) waits before going back on the queue.
const HOLD_UP: Duration = Duration::from_millis(500);

/// At most this many future-eta messages are held in memory by one worker; beyond, they go
/// back on the queue as before.
const MAX_HELD: usize = 10_000;

/// How often a worker marks the messages it holds as freshly taken (at most: a third of the
/// visibility timeout if that is shorter).
const TOUCH_HELD_EVERY: Duration = Duration::from_secs(60);

/// A redelivered tick whose runs keep being abandoned is tried at most this many times.
const MAX_ATTEMPTS: u32 = 10;

/// What the worker did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// The job ran (or its tick had already run elsewhere); acknowledged, result written.
    Ran(RunReport),
    /// The job does not run in parallel and is running for another tick, the tick itself is
    /// being run by another worker (which may have died), the message's eta is still ahead, or
    /// the run ledger could not be used: put back on the queue.
    Requeued {
        /// The task id.
        id: String,
        /// Why.
        reason: String,
    },
    /// An unknown task or an unreadable message: moved to the dead-letter list, acknowledged.
    DeadLettered {
        /// The task id, when the message had one.
        id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Its `expires` had passed: not run, result REVOKED, acknowledged.
    Expired {
        /// The task id.
        id: String,
    },
    /// Its eta is ahead: held by this worker, unacknowledged, until then (its time come, it
    /// goes to the head of the queue and runs).
    Held {
        /// The task id.
        id: String,
        /// When it is due.
        until: DateTime<Utc>,
    },
    /// Its job is paused by an operator: not run, result REVOKED, acknowledged; recorded in
    /// the ledger as skipped (a one-off run is not: it waits for the job's resume).
    Skipped {
        /// The task id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// How a worker's run went, when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSummary {
    /// Messages taken off the queue.
    pub received: u64,
    /// Jobs run to success.
    pub succeeded: u64,
    /// Jobs run that failed.
    pub failed: u64,
    /// Messages moved to the dead-letter list.
    pub dead_lettered: u64,
    /// Tasks not run because their job was paused.
    pub skipped: u64,
}

/// Stops a running [`Worker`]: it takes no new message and returns once the running ones are
/// done (and acknowledged).
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    stop: Arc<AtomicBool>,
}

impl WorkerHandle {
    /// Asks the worker to stop after its running tasks.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
}

/// Consumes `crm.tasks.<code>` messages for the runner's jobs, `concurrency` at a time.
#[derive(Debug, Clone)]
pub struct Worker {
    broker: Broker,
    runner: Arc<Runner>,
    concurrency: usize,
    stop: Arc<AtomicBool>,
    unknown_seen: Arc<Mutex<HashSet<String>>>,
    counters: Arc<Counters>,
    in_flight: Arc<AtomicU64>,
    events: Arc<Events>,
    held: Arc<Mutex<Vec<HeldTask>>>,
}

/// A message taken off the queue whose eta is ahead, held unacknowledged until then.
#[derive(Debug, Clone)]
struct HeldTask {
    eta: DateTime<Utc>,
    delivery_tag: String,
    raw: String,
}

/// The name this worker goes by in Celery's monitoring (Flower): `crm-<pid>@<host>`.
fn worker_hostname() -> String {
    format!(
        "crm-{}@{}",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    )
}

fn failure_result(exc_type: &str, module: &str, message: &str) -> Value {
    json!({"exc_type": exc_type, "exc_message": [message], "exc_module": module})
}

impl Worker {
    /// A worker over `broker` running the runner's jobs, one at a time until
    /// [`Worker::concurrency`] says otherwise.
    pub fn new(broker: Broker, runner: Arc<Runner>) -> Self {
        let events = Arc::new(Events::new(broker.clone(), worker_hostname(), false));
        Self {
            broker,
            runner,
            concurrency: 1,
            stop: Arc::new(AtomicBool::new(false)),
            unknown_seen: Arc::default(),
            counters: Arc::default(),
            in_flight: Arc::default(),
            events,
            held: Arc::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<HeldTask>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Releases held messages whose eta has come (to the head of the queue), keeps the others
    /// marked as taken, until stopped; then hands every held message back to the queue, so
    /// that another worker takes it (kombu restores a stopping consumer's messages alike).
    async fn hold(&self, slots_done: &AtomicBool) {
        let touch_every = TOUCH_HELD_EVERY.min(self.broker.config().visibility_timeout / 3);
        let mut touched = std::time::Instant::now();
        // Until the last slot stopped: a slot may still take (and hold) a message after the
        // stop was asked for.
        while !slots_done.load(Ordering::SeqCst) {
            let now = self.runner.clock().now();
            let (due, next): (Vec<HeldTask>, Option<DateTime<Utc>>) = {
                let mut held = self.held();
                let (due, keep) = held.drain(..).partition(|h| h.eta <= now);
                *held = keep;
                (due, held.iter().map(|h| h.eta).min())
            };
            for task in &due {
                if let Err(e) = self
                    .broker
                    .requeue_front(&task.delivery_tag, &task.raw)
                    .await
                {
                    tracing::warn!(error = %e, "Could not release a held task; it is restored after the visibility timeout");
                }
            }
            if touched.elapsed() >= touch_every {
                touched = std::time::Instant::now();
                let tags: Vec<String> =
                    self.held().iter().map(|h| h.delivery_tag.clone()).collect();
                if let Err(e) = self.broker.touch_unacked(&tags).await {
                    tracing::warn!(error = %e, "Could not renew the held tasks' visibility");
                }
            }
            let wait = next
                .and_then(|at| (at - now).to_std().ok())
                .unwrap_or(POLL)
                .min(POLL)
                .min(touch_every)
                .max(Duration::from_millis(10));
            rt::sleep(wait).await;
        }
        let held: Vec<HeldTask> = self.held().drain(..).collect();
        for task in &held {
            if let Err(e) = self.broker.requeue(&task.delivery_tag, &task.raw).await {
                tracing::warn!(error = %e, "Could not hand a held task back; it is restored after the visibility timeout");
            }
        }
        if !held.is_empty() {
            tracing::info!(
                tasks = held.len(),
                "Held eta tasks handed back to the queue"
            );
        }
    }

    /// Also sends Celery's task events (received, started, succeeded, failed) for Flower, as
    /// `celery worker -E` does. Worker heartbeats are always sent.
    #[must_use]
    pub fn task_events(mut self, on: bool) -> Self {
        let hostname = self.events.hostname().to_owned();
        self.events = Arc::new(Events::new(self.broker.clone(), hostname, on));
        self
    }

    /// The name this worker goes by in Celery's monitoring (Flower).
    pub fn hostname(&self) -> &str {
        self.events.hostname()
    }

    /// How many messages it handles at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// A handle to stop it from elsewhere (a signal handler).
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            stop: self.stop.clone(),
        }
    }

    /// [`run`](Self::run) until `stop` resolves (a signal, a channel), then stops as
    /// [`WorkerHandle::shutdown`] does: no new message, the running tasks finished and
    /// acknowledged. What an app's `main` calls.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) -> WorkerSummary {
        let handle = self.handle();
        crate::scheduler::run_until_stopped(self.run(), stop, move || handle.shutdown()).await
    }

    /// Consumes until stopped through a [`WorkerHandle`]; then lets the running tasks finish.
    /// Losing the broker is logged and retried, never fatal.
    pub async fn run(self) -> WorkerSummary {
        self.events.heartbeat("worker-online", 0, 0).await;
        let heart = {
            let worker = self.clone();
            rt::spawn(async move {
                let mut last = std::time::Instant::now();
                while !worker.stop.load(Ordering::SeqCst) {
                    rt::sleep(Duration::from_millis(200)).await;
                    if last.elapsed().as_secs_f64() >= HEARTBEAT_SECS {
                        last = std::time::Instant::now();
                        worker
                            .events
                            .heartbeat(
                                "worker-heartbeat",
                                worker.in_flight.load(Ordering::Relaxed),
                                worker.counters.received.load(Ordering::Relaxed),
                            )
                            .await;
                    }
                }
            })
        };
        let slots: Vec<_> = (0..self.concurrency)
            .map(|slot| {
                let worker = self.clone();
                rt::spawn(async move { worker.slot(slot).await })
            })
            .collect();
        let slots_done = Arc::new(AtomicBool::new(false));
        let holder = {
            let worker = self.clone();
            let slots_done = slots_done.clone();
            rt::spawn(async move { worker.hold(&slots_done).await })
        };
        futures::future::join_all(slots).await;
        slots_done.store(true, Ordering::SeqCst);
        holder.await;
        heart.await;
        let processed = self.counters.received.load(Ordering::Relaxed);
        self.events.heartbeat("worker-offline", 0, processed).await;
        WorkerSummary {
            received: self.counters.received.load(Ordering::Relaxed),
            succeeded: self.counters.succeeded.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dead_lettered: self.counters.dead_lettered.load(Ordering::Relaxed),
            skipped: self.counters.skipped.load(Ordering::Relaxed),
        }
    }

    async fn slot(&self, slot: usize) {
        let mut conn = None;
        let mut last_restore: Option<std::time::Instant> = None;
        // The last task's result and acknowledgement, sent with the next take.
        let mut finished = None;
        while !self.stop.load(Ordering::SeqCst) {
            if slot == 0 && last_restore.is_none_or(|t| t.elapsed() >= RESTORE_EVERY) {
                last_restore = Some(std::time::Instant::now());
                if let Err(e) = self.broker.restore_visible().await {
                    tracing::warn!(error = %e, "Could not restore unacknowledged messages");
                }
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.broker.dedicated().await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "Broker unreachable; retrying in 1 s");
                        rt::sleep(POLL).await;
                        continue;
                    }
                },
            };
            if let Err(e) = self.handle_next_on(c, POLL, Some(&mut finished)).await {
                tracing::warn!(error = %e, "Broker command failed; reconnecting in 1 s");
                conn = None;
                rt::sleep(POLL).await;
            }
        }
        // Stopping: the last task is acknowledged before the worker says it stopped.
        while let Some(last) = &finished {
            match self.broker.store_finished(last).await {
                Ok(()) => finished = None,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not acknowledge the last task; retrying in 1 s");
                    rt::sleep(POLL).await;
                }
            }
        }
    }

    /// Waits up to `wait` for one message and handles it (a test hook, and one step of
    /// [`Worker::run`]). `None` if no message came.
    pub async fn handle_next(&self, wait: Duration) -> Result<Option<Handled>, BrokerError> {
        let mut conn = self.broker.dedicated().await?;
        self.handle_next_on(&mut conn, wait, None).await
    }

    /// `finished`, given only while [`Worker::run`] runs: a task that ran leaves its result and
    /// acknowledgement there, and they are sent with the next fetch (the one before is sent
    /// first); a future-eta message is held by the worker's holder rather than put back on the
    /// queue. Without it, each is sent at once.
    async fn handle_next_on(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        wait: Duration,
        mut finished: Option<&mut Option<Finished>>,
    ) -> Result<Option<Handled>, BrokerError> {
        let last = finished.as_deref().and_then(Option::as_ref);
        let delivery = self.broker.fetch(conn, wait, last).await?;
        if let Some(sent) = finished.as_deref_mut() {
            *sent = None;
        }
        let Some(delivery) = delivery else {
            return Ok(None);
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let handled = match delivery {
            Delivery::Malformed { raw, reason, tag } => {
                tracing::warn!(%reason, "Malformed message moved to the dead-letter list");
                self.broker
                    .dead_letter(&raw, &reason.0, tag.as_deref())
                    .await?;
                Handled::DeadLettered {
                    id: None,
                    reason: reason.0,
                }
            }
            Delivery::Message { message, raw } => {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let handled = self.handle_message(message, &raw, finished).await;
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                handled?
            }
        };
        match &handled {
            Handled::Ran(report) if report.status == RunStatus::Succeeded => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Handled::Ran(report) if report.status == RunStatus::Failed => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            Handled::DeadLettered { .. } => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            Handled::Skipped { .. } => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(Some(handled))
    }

    async fn handle_message(
        &self,
        message: TaskMessage,
        raw: &str,
        finished: Option<&mut Option<Finished>>,
    ) -> Result<Handled, BrokerError> {
        let hold = finished.is_some();
        let id = message.id.clone();
        let known = message
            .job_code()
            .filter(|code| self.runner.codes().any(|c| c == *code));
        let Some(code) = known else {
            let first = self
                .unknown_seen
                .lock()
                .map(|mut seen| seen.insert(message.task.clone()))
                .unwrap_or(true);
            if first {
                tracing::warn!(task = %message.task, task.id = %id, "Unknown task rejected to the dead-letter list (logged once per name)");
            }
            let reason = format!("unknown task {}", message.task);
            let result = failure_result("NotRegistered", "celery.exceptions", &message.task);
            return self.refuse(&message, raw, id, result, reason).await;
        };
        let now = self.runner.clock().now();
        if message.expires.is_some_and(|at| at < now) {
            tracing::info!(task.id = %id, "Expired message not run");
            self.broker
                .store_result(
                    &id,
                    "REVOKED",
                    failure_result("TaskRevokedError", "celery.exceptions", "expired"),
                    None,
                )
                .await?;
            self.broker.ack(&message.delivery_tag).await?;
            return Ok(Handled::Expired { id });
        }
        if let Some(eta) = message.eta.filter(|at| *at > now)
            && hold
        {
            let mut held = self.held();
            if held.len() < MAX_HELD {
                held.push(HeldTask {
                    eta,
                    delivery_tag: message.delivery_tag.clone(),
                    raw: raw.to_owned(),
                });
                return Ok(Handled::Held { id, until: eta });
            }
        }
        if message.eta.is_some_and(|at| at > now) {
            rt::sleep(HOLD_UP).await;
            self.broker.requeue(&message.delivery_tag, raw).await?;
            return Ok(Handled::Requeued {
                id,
                reason: "its eta is ahead".into(),
            });
        }
        let (tick, kind) = match message.tick {
            Some(tick) if message.one_off => (tick, RunKind::Manual),
            Some(tick) => (tick, RunKind::Scheduled),
            None => (self.broker.first_seen(&id, now).await?, RunKind::Manual),
        };
        // An operator's pause holds here too, not only in the beat: a task published before
        // the pause (or sent by a client) is not run while its job is paused.
        if let Err(e) = self.runner.refresh_overrides().await {
            tracing::warn!(error = %e, "Could not read the schedule overrides; keeping the last ones read");
        }
        if self.runner.is_enabled(code) == Some(false) {
            return self.skip_paused(&message, raw, code, tick, kind).await;
        }
        if kind == RunKind::Scheduled
            && let Some(reason) = self.off_schedule(code, tick)
        {
            tracing::warn!(task.id = %id, job.code = %code, %reason, "Scheduled task for a time that is not a tick of its job: dead-lettered");
            let result = failure_result("ValueError", "builtins", &reason);
            return self.refuse(&message, raw, id, result, reason).await;
        }
        self.events
            .send(
                "task-received",
                json!({
                    "uuid": id, "name": message.task, "args": "()", "kwargs": "{}",
                    "root_id": id, "parent_id": null, "retries": 0,
                    "eta": message.eta.map(|t| t.to_rfc3339()),
                    "expires": message.expires.map(|t| t.to_rfc3339()),
                }),
            )
            .await;
        self.events.send("task-started", json!({"uuid": id})).await;
        let (report, holder) = match self.run_tick(code, tick, kind).await {
            Ok(ran) => ran,
            Err(e) => {
                return self
                    .ledger_unavailable(&message.delivery_tag, raw, id, e.to_string())
                    .await;
            }
        };
        // The result to write, in the same Redis step as the acknowledgement.
        let result: Option<(&str, Value, Option<String>)> = match report.status {
            RunStatus::Succeeded => {
                let runtime = report.duration.unwrap_or_default().as_secs_f64();
                self.events
                    .send(
                        "task-succeeded",
                        json!({"uuid": id, "result": format!("{:?}", report.message), "runtime": runtime}),
                    )
                    .await;
                Some(("SUCCESS", Value::from(report.message.as_str()), None))
            }
            RunStatus::Failed => {
                self.events
                    .send(
                        "task-failed",
                        json!({"uuid": id, "exception": format!("RuntimeError({:?})", report.message), "traceback": report.message}),
                    )
                    .await;
                Some((
                    "FAILURE",
                    failure_result("RuntimeError", "builtins", &report.message),
                    Some(report.message.clone()),
                ))
            }
            RunStatus::Busy => {
                rt::sleep(HOLD_UP).await;
                self.broker.requeue(&message.delivery_tag, raw).await?;
                return Ok(Handled::Requeued {
                    id,
                    reason: report.message,
                });
            }
            RunStatus::LedgerError => {
                return self
                    .ledger_unavailable(&message.delivery_tag, raw, id, report.message)
                    .await;
            }
            // Taken by a run still going: that run may be a killed worker's whose lease has
            // not run out yet. Put the message back until the run ends (then it is
            // acknowledged) or is found abandoned (then this message runs the next attempt).
            RunStatus::Taken
                if holder
                    .as_ref()
                    .is_none_or(|run| run.outcome == RunOutcome::Running) =>
            {
                rt::sleep(HOLD_UP).await;
                self.broker.requeue(&message.delivery_tag, raw).await?;
                return Ok(Handled::Requeued {
                    id,
                    reason: format!("the tick is being run: {}", report.message),
                });
            }
            // Taken: the tick ran elsewhere. Its outcome is written again (the same result).
            // Skipped does not come from run_at.
            _ => {
                tracing::info!(task.id = %id, job.code = %code, "Tick already claimed; message acknowledged without a second run");
                let text = holder
                    .as_ref()
                    .and_then(|run| run.message.clone())
                    .unwrap_or_default();
                match holder.as_ref().map(|run| run.outcome) {
                    Some(RunOutcome::Succeeded) => Some(("SUCCESS", Value::from(text), None)),
                    Some(RunOutcome::Failed) => Some((
                        "FAILURE",
                        failure_result("RuntimeError", "builtins", &text),
                        Some(text),
                    )),
                    _ => None,
                }
            }
        };
        match result {
            Some((status, value, traceback)) => {
                let done = Broker::finished(
                    &id,
                    status,
                    value,
                    traceback.as_deref(),
                    &message.delivery_tag,
                );
                match finished {
                    Some(next_fetch) => *next_fetch = Some(done),
                    None => self.broker.store_finished(&done).await?,
                }
            }
            None => self.broker.ack(&message.delivery_tag).await?,
        }
        Ok(Handled::Ran(report))
    }

    /// Refuses a readable task that cannot run: its FAILURE `result` is written (so a client's
    /// `AsyncResult.get()` raises instead of waiting) and the message goes to the dead-letter
    /// list with `reason`, acknowledged.
    async fn refuse(
        &self,
        message: &TaskMessage,
        raw: &str,
        id: String,
        result: Value,
        reason: String,
    ) -> Result<Handled, BrokerError> {
        self.broker
            .store_result(&id, "FAILURE", result, Some(&reason))
            .await?;
        self.broker
            .dead_letter(raw, &reason, Some(&message.delivery_tag))
            .await?;
        Ok(Handled::DeadLettered {
            id: Some(id),
            reason,
        })
    }

    /// Why a scheduled task's `crm_tick` is refused, if it is: it must be a tick of the job's
    /// schedule (the one in force, or the job's own, in case an operator changed it after the
    /// beat published). The worker claims that tick in the ledger; a made-up or mistyped time
    /// (a client's `datetime.now()`, seconds included) would otherwise run the job as a
    /// scheduled run and fill the ledger with ticks no schedule has.
    fn off_schedule(&self, code: &str, tick: DateTime<Utc>) -> Option<String> {
        let on_schedule = [
            self.runner.effective_schedule(code),
            self.runner.schedule_of(code).cloned(),
        ]
        .into_iter()
        .flatten()
        .any(|schedule| schedule.latest_at_or_before(tick) == Some(tick));
        (!on_schedule).then(|| {
            format!(
                "crm_tick {} is not a tick of job {code}'s schedule",
                tick.to_rfc3339()
            )
        })
    }

    /// The run ledger (the database) could not be used: the task goes back to the queue after
    /// [`LEDGER_RETRY_AFTER`], so it runs soon after the database is back. Left unacknowledged
    /// instead, it would wait for the visibility timeout (an hour by default) to be restored.
    /// Waiting here first keeps a worker from spinning on a database that stays down.
    async fn ledger_unavailable(
        &self,
        delivery_tag: &str,
        raw: &str,
        id: String,
        error: String,
    ) -> Result<Handled, BrokerError> {
        tracing::error!(task.id = %id, %error, retry_in_s = LEDGER_RETRY_AFTER.as_secs(), "The run ledger is unavailable; the task goes back to the queue shortly");
        rt::sleep(LEDGER_RETRY_AFTER).await;
        self.broker.requeue(delivery_tag, raw).await?;
        Ok(Handled::Requeued {
            id,
            reason: format!("the run ledger is unavailable: {error}"),
        })
    }

    /// Acknowledges a task of a paused job without running it, as Celery treats a revoked task:
    /// result REVOKED (`AsyncResult.get()` raises `TaskRevokedError`), a `task-revoked` event.
    /// A tick or a client's task is recorded as skipped with the reason (`crm jobs history`),
    /// so it never runs later; a one-off run is not recorded, so it stays pending as with
    /// `crm scheduler`, and its beat lock is released so a beat publishes it again once the job
    /// is resumed.
    async fn skip_paused(
        &self,
        message: &TaskMessage,
        raw: &str,
        code: &str,
        tick: DateTime<Utc>,
        kind: RunKind,
    ) -> Result<Handled, BrokerError> {
        let id = message.id.clone();
        let reason = format!("not run: job {code} is paused by an operator");
        if message.one_off {
            self.broker.delete_key(&publish_lock(&id)).await?;
        } else if let Err(e) = self.runner.record_skipped(code, tick, kind, &reason).await {
            return self
                .ledger_unavailable(&message.delivery_tag, raw, id, e.to_string())
                .await;
        }
        tracing::info!(task.id = %id, job.code = %code, "Task of a paused job acknowledged without running it");
        self.events
            .send(
                "task-revoked",
                json!({"uuid": id, "terminated": false, "signum": null, "expired": false}),
            )
            .await;
        self.broker
            .store_result_and_ack(
                &id,
                "REVOKED",
                failure_result("TaskRevokedError", "celery.exceptions", &reason),
                None,
                &message.delivery_tag,
            )
            .await?;
        Ok(Handled::Skipped { id, reason })
    }

    /// Runs a tick once across every worker: a tick whose earlier claim was abandoned (its
    /// worker died) runs as the next attempt; one that ran or runs elsewhere answers `Taken`
    /// with the run holding it.
    async fn run_tick(
        &self,
        code: &str,
        tick: DateTime<Utc>,
        kind: RunKind,
    ) -> Result<(RunReport, Option<JobRun>), RunnerError> {
        let mut attempt = 1;
        loop {
            let this_kind = if attempt > 1 && kind == RunKind::Scheduled {
                RunKind::Retry
            } else {
                kind
            };
            let report = self.runner.run_at(code, tick, this_kind, attempt).await?;
            if report.status != RunStatus::Taken || attempt >= MAX_ATTEMPTS {
                return Ok((report, None));
            }
            let holder = match report.run_id {
                Some(id) => self
                    .runner
                    .ledger()
                    .history(Some(code), 1_000)
                    .await?
                    .into_iter()
                    .find(|run| run.id == id),
                None => None,
            };
            match holder {
                Some(run) if run.outcome == RunOutcome::Abandoned => {
                    attempt = run.attempt.max(attempt) + 1;
                }
                Some(run) => return Ok((report, Some(run))),
                None => return Ok((report, None)),
            }
        }
    }
}
