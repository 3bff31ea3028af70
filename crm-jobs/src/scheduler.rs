//! The ready-made long-running loop: it sleeps until the runner's next wakeup, runs what is due
//! beside it, and shuts down gracefully.
//!
//! It runs on any executor (async-std, tokio, smol, `futures::executor::block_on`): it spawns
//! nothing, its rounds run concurrently inside its own future (a `for_each_concurrent` pool fed
//! by the loop), and its timers are `async-io`'s, which need no runtime.
//!
//! It does not poll for due jobs: each sleep ends at [`Runner::next_wakeup`] (a tick, a pending
//! retry, a one-off run, or the end of a lease someone else holds), when a run that held up
//! another of its job ends, or at shutdown. The one thing it polls, when the runner has an
//! override store, is the store's change counter (one integer, every
//! [`DEFAULT_OVERRIDE_POLL`]): when an operator changed a schedule, it plans again at once.
//! An app with its own event loop can skip this and drive the runner itself.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_listener::Event;
use futures::channel::mpsc;
use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt as _, StreamExt as _};

use crate::runner::{RunStatus, Runner};

/// How often a scheduler reads the override store's change counter.
pub const DEFAULT_OVERRIDE_POLL: Duration = Duration::from_secs(2);

/// How soon a round is tried again after the ledger could not be read or written (the database
/// down, its connections dropped, SQLite locked). Such a tick was neither run nor recorded;
/// without this it would wait for the next wakeup, which may be the next tick, and be lost.
/// Tried again, it runs as soon as the database is back (late, as a misfire, if that took
/// longer than the grace).
pub const LEDGER_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a scheduler keeps finished runs by default: 90 days
/// ([`crm_core::ledger::DEFAULT_RETENTION_DAYS`]).
pub const DEFAULT_RETENTION: Duration =
    Duration::from_secs(crm_core::ledger::DEFAULT_RETENTION_DAYS as u64 * 86_400);

/// How often a scheduler prunes the run history: once at start, then daily (by its clock).
pub const PRUNE_EVERY: Duration = Duration::from_secs(86_400);

/// Runs a [`Runner`]'s jobs when they are due, until shut down through its [`ShutdownHandle`].
#[derive(Debug)]
pub struct Scheduler {
    runner: Arc<Runner>,
    shutdown: Arc<Shutdown>,
    override_poll: Duration,
    retention: Option<Duration>,
    watch_schedules: bool,
}

/// Asks a running [`Scheduler`] to stop. Cheap to clone; usable from a signal handler's task.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shutdown: Arc<Shutdown>,
}

#[derive(Debug, Default)]
struct Shutdown {
    /// The grace period asked for, once shutdown is requested.
    requested: Mutex<Option<Duration>>,
    event: Event,
}

impl ShutdownHandle {
    /// Stops taking new runs and lets the running ones finish, for at most `grace`; runs still
    /// going then are left to end (or, if the process exits, to be marked abandoned when their
    /// lease expires).
    pub fn shutdown(&self, grace: Duration) {
        *self
            .shutdown
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(grace);
        self.shutdown.event.notify(usize::MAX);
    }
}

impl Shutdown {
    fn requested(&self) -> Option<Duration> {
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a [`Scheduler::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerSummary {
    /// How many times it looked for due jobs.
    pub rounds: u64,
    /// Rounds still running when the grace period ended (0 after a clean shutdown).
    pub unfinished: usize,
}

/// The rounds running in the background.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    /// Some job's tick waits for another run of it to end.
    busy_waiting: AtomicBool,
    /// A round could not use the ledger; another is due [`LEDGER_RETRY_AFTER`] later.
    ledger_retry: AtomicBool,
    /// Counts the ended rounds that ran something, so a round that found a job busy can tell
    /// whether a run ended while it looked (and the job may be free already).
    ran_rounds: AtomicU64,
    /// A round that ran something ended (so a tick waiting for it may go now).
    ran: Event,
    /// The last round in flight ended.
    drained: Event,
}

impl Scheduler {
    /// A scheduler over `runner`, using the runner's clock.
    pub fn new(runner: Arc<Runner>) -> Self {
        Self {
            runner,
            shutdown: Arc::default(),
            override_poll: DEFAULT_OVERRIDE_POLL,
            retention: Some(DEFAULT_RETENTION),
            watch_schedules: false,
        }
    }

    /// Also checks the schedules every [`SCHEDULE_CHECK_EVERY`](crate::SCHEDULE_CHECK_EVERY)
    /// and alerts each job that is late, missed a tick or is back on time
    /// ([`watch_schedules`](crate::watch_schedules)), inside this scheduler's future. Off by
    /// default: the runner's alert hook decides who hears of it, and only the app knows
    /// whether another process (a second scheduler, a worker) watches already. Any number
    /// may watch one ledger: each incident is alerted once.
    #[must_use]
    pub fn watch_schedules(mut self, on: bool) -> Self {
        self.watch_schedules = on;
        self
    }

    /// How long finished runs are kept (default [`DEFAULT_RETENTION`]); `None` keeps them all.
    /// The scheduler prunes at start and then every [`PRUNE_EVERY`], in the background and in
    /// small batches ([`Runner::prune_history`]), so the ledger (a heartbeat alone adds 105,000
    /// runs a year) stops growing without end.
    #[must_use]
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.retention = keep;
        self
    }

    /// How often to check the override store for changes (default [`DEFAULT_OVERRIDE_POLL`]).
    #[must_use]
    pub fn override_poll(mut self, every: Duration) -> Self {
        self.override_poll = every.max(Duration::from_millis(10));
        self
    }

    /// The handle that stops it.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shutdown: self.shutdown.clone(),
        }
    }

    /// Runs until shut down. Each round of due jobs runs beside the loop (inside this future,
    /// which spawns nothing), so a long job never delays another job's tick. Runs still going
    /// when the shutdown's grace period ends are dropped with this future; their claims expire
    /// and are recorded as abandoned, as after a crash.
    pub async fn run(self) -> SchedulerSummary {
        let (spawner, tasks) = mpsc::unbounded::<BoxFuture<'static, ()>>();
        let pool = tasks.for_each_concurrent(None, |task| task);
        let spawner = Spawner(spawner);
        if self.watch_schedules {
            // Never ends; not a round, so shutdown does not wait for it: it is dropped with
            // the pool.
            spawner.spawn(crate::watch_schedules(self.runner.clone()));
        }
        let rounds = self.run_rounds(spawner);
        futures::pin_mut!(pool, rounds);
        match future::select(rounds, pool).await {
            Either::Left((summary, _)) => summary,
            // The loop holds the sender until it ends, so the pool cannot end first; if it did,
            // the loop's own answer is still the one to give.
            Either::Right((_, rounds)) => rounds.await,
        }
    }

    /// [`run`](Self::run) until `stop` resolves (a signal, a channel, a test's trigger), then
    /// shuts down with `grace` ([`ShutdownHandle::shutdown`]): no new runs, the running ones
    /// given at most `grace` to finish. What an app's `main` calls.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> SchedulerSummary {
        let handle = self.handle();
        run_until_stopped(self.run(), stop, move || handle.shutdown(grace)).await
    }

    async fn run_rounds(&self, spawner: Spawner) -> SchedulerSummary {
        let clock = self.runner.clock().clone();
        let in_flight = Arc::new(InFlight::default());
        let mut rounds = 0;
        tracing::info!(
            jobs = self.runner.codes().count(),
            zone = %self.runner.time_zone(),
            "Scheduler started"
        );
        let pruning = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut next_prune = self.retention.map(|_| clock.now());
        'rounds: loop {
            if self.shutdown.requested().is_some() {
                break;
            }
            let now = clock.now();
            rounds += 1;
            // Read before planning: a change reloaded by anyone from here on (this round,
            // the API in this process, `/status`) makes the scheduler plan again.
            let planned_at = self.runner.overrides_generation();
            self.spawn_round(now, &in_flight, &spawner);
            if let Some(keep) = self.retention
                && next_prune.is_some_and(|at| at <= now)
            {
                next_prune = chrono::TimeDelta::from_std(PRUNE_EVERY)
                    .ok()
                    .and_then(|every| now.checked_add_signed(every));
                self.spawn_prune(keep, &pruning, &spawner);
            }
            let wake = match (self.runner.next_wakeup(now).await, next_prune) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = wake {
                tracing::debug!(next = %at, "Scheduler sleeping");
            }
            loop {
                // Listen first, then check, so no notification slips between the two.
                let stop = self.shutdown.event.listen();
                let ended = in_flight.ran.listen();
                if self.shutdown.requested().is_some() {
                    break 'rounds;
                }
                let sleep = match wake {
                    Some(at) => clock.sleep_until(at),
                    None => Box::pin(future::pending()),
                };
                let interrupted = future::select(stop, ended);
                let changed = overrides_changed(&self.runner, self.override_poll, planned_at);
                futures::pin_mut!(changed);
                match future::select(future::select(sleep, changed), interrupted).await {
                    Either::Left(_) => continue 'rounds,
                    Either::Right((Either::Left(_), _)) => break 'rounds,
                    Either::Right((Either::Right(_), _)) => {
                        let busy = in_flight.busy_waiting.swap(false, Ordering::SeqCst);
                        let retry = in_flight.ledger_retry.swap(false, Ordering::SeqCst);
                        if busy || retry {
                            continue 'rounds;
                        }
                    }
                }
            }
        }
        let grace = self.shutdown.requested().unwrap_or_default();
        tracing::info!(
            running = in_flight.count.load(Ordering::SeqCst),
            grace_ms = grace.as_millis() as u64,
            "Scheduler stopping: no new runs; waiting for the running ones"
        );
        let drained = async {
            loop {
                let ended = in_flight.drained.listen();
                if in_flight.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        };
        futures::pin_mut!(drained);
        let _ = future::select(drained, async_io::Timer::after(grace)).await;
        let unfinished = in_flight.count.load(Ordering::SeqCst);
        if unfinished > 0 {
            tracing::warn!(unfinished, "Scheduler stopped with runs still going");
        } else {
            tracing::info!("Scheduler stopped");
        }
        SchedulerSummary { rounds, unfinished }
    }

    /// Prunes the run history in the background, unless a prune is still going.
    fn spawn_prune(
        &self,
        keep: Duration,
        pruning: &Arc<std::sync::atomic::AtomicBool>,
        spawner: &Spawner,
    ) {
        if pruning.swap(true, Ordering::SeqCst) {
            return;
        }
        let runner = self.runner.clone();
        let pruning = pruning.clone();
        spawner.spawn(async move {
            if let Err(e) = runner.prune_history(keep).await {
                tracing::warn!(error = %e, "Could not prune the run history; trying again tomorrow");
            }
            pruning.store(false, Ordering::SeqCst);
        });
    }

    fn spawn_round(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        in_flight: &Arc<InFlight>,
        spawner: &Spawner,
    ) {
        let runner = self.runner.clone();
        let in_flight = in_flight.clone();
        let retry_spawner = spawner.clone();
        in_flight.count.fetch_add(1, Ordering::SeqCst);
        spawner.spawn(async move {
            let ran_before = in_flight.ran_rounds.load(Ordering::SeqCst);
            let reports = runner.run_due(now).await;
            let ran = reports
                .iter()
                .any(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed));
            let busy = reports.iter().any(|r| r.status == RunStatus::Busy);
            if busy {
                in_flight.busy_waiting.store(true, Ordering::SeqCst);
            }
            if reports.iter().any(|r| r.status == RunStatus::LedgerError) {
                let in_flight = in_flight.clone();
                tracing::warn!(
                    retry_in_s = LEDGER_RETRY_AFTER.as_secs(),
                    "The run ledger is unavailable; looking for due jobs again shortly"
                );
                retry_spawner.spawn(async move {
                    async_io::Timer::after(LEDGER_RETRY_AFTER).await;
                    in_flight.ledger_retry.store(true, Ordering::SeqCst);
                    in_flight.ran.notify(usize::MAX);
                });
            }
            let left = in_flight.count.fetch_sub(1, Ordering::SeqCst) - 1;
            if ran {
                in_flight.ran_rounds.fetch_add(1, Ordering::SeqCst);
                in_flight.ran.notify(usize::MAX);
            } else if busy && in_flight.ran_rounds.load(Ordering::SeqCst) != ran_before {
                // The run we waited for may have ended while we looked: look again.
                in_flight.ran.notify(usize::MAX);
            }
            if left == 0 {
                in_flight.drained.notify(usize::MAX);
            }
        });
    }
}

/// Drives `work` to its end; when `stop` resolves first, calls `shut_down` (which asks `work`
/// to wind down) and keeps driving it. What [`Scheduler::run_until`] and the broker's
/// `Worker::run_until` share.
pub(crate) async fn run_until_stopped<T>(
    work: impl Future<Output = T>,
    stop: impl Future<Output = ()>,
    shut_down: impl FnOnce(),
) -> T {
    futures::pin_mut!(work, stop);
    match future::select(work, stop).await {
        Either::Left((output, _)) => output,
        Either::Right(((), work)) => {
            shut_down();
            work.await
        }
    }
}

/// Hands a future to the pool that [`Scheduler::run`] drives beside its loop.
#[derive(Clone)]
struct Spawner(mpsc::UnboundedSender<BoxFuture<'static, ()>>);

impl Spawner {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        // Fails only once the pool is gone, i.e. after `run` returned: nothing is left to run it.
        let _ = self.0.unbounded_send(task.boxed());
    }
}

/// Completes when the runner's overrides were reloaded with a change since generation
/// `planned_at` (whoever reloaded them: this poll, a round of due jobs, or the API's job
/// control in the same process, which wakes it at once); never, if the runner has no store.
async fn overrides_changed(runner: &Runner, every: Duration, planned_at: u64) {
    if runner.override_store().is_none() {
        return future::pending().await;
    }
    loop {
        let reloaded = runner.overrides_reloaded();
        if runner.overrides_generation() != planned_at {
            return;
        }
        let _ = future::select(reloaded, async_io::Timer::after(every)).await;
        if let Err(e) = runner.refresh_overrides().await {
            tracing::warn!(error = %e, "Could not check the schedule overrides");
        }
        if runner.overrides_generation() != planned_at {
            return;
        }
    }
}
