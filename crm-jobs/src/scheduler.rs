//! The ready-made long-running loop (cargo feature `async-std-scheduler`, on by default): it
//! sleeps until the runner's next wakeup, runs what is due in the background, and shuts down
//! gracefully.
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
use futures::future::{self, Either};

use crate::runner::{RunStatus, Runner};

/// How often a scheduler reads the override store's change counter.
pub const DEFAULT_OVERRIDE_POLL: Duration = Duration::from_secs(2);

/// Runs a [`Runner`]'s jobs when they are due, until shut down through its [`ShutdownHandle`].
#[derive(Debug)]
pub struct Scheduler {
    runner: Arc<Runner>,
    shutdown: Arc<Shutdown>,
    override_poll: Duration,
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
        }
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

    /// Runs until shut down. Each round of due jobs runs as a background task, so a long job
    /// never delays another job's tick.
    pub async fn run(self) -> SchedulerSummary {
        let clock = self.runner.clock().clone();
        let in_flight = Arc::new(InFlight::default());
        let mut rounds = 0;
        tracing::info!(
            jobs = self.runner.codes().count(),
            zone = %self.runner.time_zone(),
            "Scheduler started"
        );
        'rounds: loop {
            if self.shutdown.requested().is_some() {
                break;
            }
            let now = clock.now();
            rounds += 1;
            // Read before planning: a change reloaded by anyone from here on (this round,
            // the API in this process, `/status`) makes the scheduler plan again.
            let planned_at = self.runner.overrides_generation();
            self.spawn_round(now, &in_flight);
            let wake = self.runner.next_wakeup(now).await;
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
                        if in_flight.busy_waiting.swap(false, Ordering::SeqCst) {
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

    fn spawn_round(&self, now: chrono::DateTime<chrono::Utc>, in_flight: &Arc<InFlight>) {
        let runner = self.runner.clone();
        let in_flight = in_flight.clone();
        in_flight.count.fetch_add(1, Ordering::SeqCst);
        async_std::task::spawn(async move {
            let ran_before = in_flight.ran_rounds.load(Ordering::SeqCst);
            let reports = runner.run_due(now).await;
            let ran = reports
                .iter()
                .any(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed));
            let busy = reports.iter().any(|r| r.status == RunStatus::Busy);
            if busy {
                in_flight.busy_waiting.store(true, Ordering::SeqCst);
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
