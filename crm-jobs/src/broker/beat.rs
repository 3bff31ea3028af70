//! The beat: publishes each job's due ticks as Celery messages, each tick once however many
//! beats run. It never runs a job itself.

use super::rt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::message::{one_off_envelope, one_off_task_id, scheduled_envelope, tick_task_id};
use super::{Broker, BrokerError};
use crate::clock::{Clock, SystemClock};
use crate::runner::{EffectiveSchedule, Runner};
use crate::schedule::Schedule;

/// How late a tick may be published: a beat (re)started within this after a tick publishes it;
/// an older tick is left alone (as Celery beat does not replay missed ticks either).
pub const DEFAULT_BEAT_GRACE: Duration = Duration::from_secs(300);

/// How long the lock of a published one-off run lasts. A beat publishes a one-off run while it
/// has no run in the ledger: if no worker takes it within this time, it is published again (the
/// ledger's claim still runs it once).
pub const ONE_OFF_LOCK_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The Redis key (before the prefix) that lets one beat publish the task `task_id`.
pub(crate) fn publish_lock(task_id: &str) -> String {
    format!("crm.beat.{task_id}")
}

/// How often a waiting beat looks at its stop flag.
const POLL: Duration = Duration::from_millis(500);

/// How often a beat over a live runner reads the override store's change counter.
const OVERRIDE_POLL: Duration = Duration::from_secs(2);

/// One tick a beat looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The job's code.
    pub code: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// The Celery task id (`crm.tasks.<code>@<tick>`).
    pub task_id: String,
    /// `true` if this beat published it; `false` if another beat had.
    pub by_us: bool,
    /// Whether it is an operator's one-off run (`crm jobs at`) rather than a tick.
    pub one_off: bool,
}

/// Stops a running [`Beat`].
#[derive(Debug, Clone)]
pub struct BeatHandle {
    stop: Arc<AtomicBool>,
}

impl BeatHandle {
    /// Asks the beat to stop (within half a second).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Publishes due ticks of a set of schedules to a broker.
#[derive(Debug, Clone)]
pub struct Beat {
    broker: Broker,
    schedules: Vec<(String, Schedule)>,
    clock: Arc<dyn Clock>,
    grace: Duration,
    origin: String,
    stop: Arc<AtomicBool>,
    /// A runner with an override store: its jobs' schedules as operators change them.
    live: Option<Arc<Runner>>,
}

impl Beat {
    /// A beat for `(code, schedule)` pairs.
    pub fn new(broker: Broker, schedules: impl IntoIterator<Item = (String, Schedule)>) -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Self {
            broker,
            schedules: schedules.into_iter().collect(),
            clock: Arc::new(SystemClock),
            grace: DEFAULT_BEAT_GRACE,
            origin: format!("crm-beat-{}@{host}", std::process::id()),
            stop: Arc::new(AtomicBool::new(false)),
            live: None,
        }
    }

    /// A beat for the runner's jobs that follows operators' changes (pauses, replacement
    /// schedules) from the runner's override store, noticed within a few seconds, and publishes
    /// the one-off runs operators ask for (`crm jobs at`) when their instant comes, each once
    /// across beats (a paused job's wait until it is resumed).
    pub fn for_live_runner(broker: Broker, runner: Arc<Runner>) -> Self {
        let mut beat = Self::for_runner(broker, &runner);
        beat.live = Some(runner);
        beat
    }

    /// Each job's schedule as it stands now.
    fn effective(&self) -> Vec<(&str, EffectiveSchedule)> {
        self.schedules
            .iter()
            .filter_map(|(code, schedule)| {
                let effective = match &self.live {
                    Some(runner) => runner.effective_of(code)?,
                    None => EffectiveSchedule::fixed(schedule.clone()),
                };
                Some((code.as_str(), effective))
            })
            .collect()
    }

    /// A beat for the runner's jobs, with their schedules in the runner's zone and its clock.
    pub fn for_runner(broker: Broker, runner: &Runner) -> Self {
        let schedules = runner
            .codes()
            .filter_map(|code| Some((code.to_owned(), runner.schedule_of(code)?.clone())))
            .collect::<Vec<_>>();
        Self::new(broker, schedules).clock(runner.clock().clone())
    }

    /// The clock (default: the system's).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How late a tick may still be published (default [`DEFAULT_BEAT_GRACE`]).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// A handle to stop it from elsewhere.
    pub fn handle(&self) -> BeatHandle {
        BeatHandle {
            stop: self.stop.clone(),
        }
    }

    /// Publishes each job's latest tick at or before `now` unless it is older than the grace or
    /// some beat already published it. One Redis step per tick sets the (code, tick) lock and
    /// pushes the message, so two beats never both publish a tick and a beat dying between the
    /// two cannot lose it.
    pub async fn publish_due(&self, now: DateTime<Utc>) -> Result<Vec<Published>, BrokerError> {
        let grace = TimeDelta::from_std(self.grace).unwrap_or(TimeDelta::MAX);
        let mut published = Vec::new();
        if let Some(runner) = &self.live
            && let Err(e) = runner.refresh_overrides().await
        {
            tracing::warn!(error = %e, "Could not read the schedule overrides; keeping the last ones read");
        }
        for (code, schedule) in self.effective() {
            let Some(tick) = schedule.latest_at_or_before(now) else {
                continue;
            };
            if now - tick > grace {
                continue;
            }
            let task_id = tick_task_id(code, tick);
            let envelope =
                scheduled_envelope(code, tick, &self.broker.config().queue, &self.origin);
            // The lock outlives the grace, after which no beat looks at the tick again.
            let ttl = self.grace + Duration::from_secs(3600);
            let by_us = self
                .broker
                .publish_once(&publish_lock(&task_id), ttl, &envelope)
                .await?;
            if by_us {
                tracing::info!(job.code = %code, %tick, task.id = %task_id, "Published a due tick");
            }
            published.push(Published {
                code: code.to_owned(),
                tick,
                task_id,
                by_us,
                one_off: false,
            });
        }
        if let Some(runner) = &self.live {
            self.publish_one_offs(runner, now, &mut published).await?;
        }
        Ok(published)
    }

    /// Publishes the one-off runs whose instant has come and that have no run in the ledger
    /// yet (read afresh, so one already run is not published again), however late: as
    /// `crm scheduler` runs them. A paused job's wait. The lock is set in the same Redis step
    /// as the push, so of several beats one publishes.
    async fn publish_one_offs(
        &self,
        runner: &Runner,
        now: DateTime<Utc>,
        published: &mut Vec<Published>,
    ) -> Result<(), BrokerError> {
        let Some(store) = runner.override_store() else {
            return Ok(());
        };
        let pending = match store.snapshot().await {
            Ok(snapshot) => snapshot.pending,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the one-off runs; trying at the next round");
                return Ok(());
            }
        };
        for run in pending.into_iter().filter(|run| run.at <= now) {
            if runner.is_enabled(&run.code) != Some(true) {
                continue; // paused (it waits), or not one of this beat's jobs
            }
            let task_id = one_off_task_id(&run.code, run.at);
            let envelope =
                one_off_envelope(&run.code, run.at, &self.broker.config().queue, &self.origin);
            let by_us = self
                .broker
                .publish_once(&publish_lock(&task_id), ONE_OFF_LOCK_TTL, &envelope)
                .await?;
            if by_us {
                tracing::info!(job.code = %run.code, at = %run.at, task.id = %task_id, "Published a one-off run");
            }
            published.push(Published {
                code: run.code,
                tick: run.at,
                task_id,
                by_us,
                one_off: true,
            });
        }
        Ok(())
    }

    /// The next instant after `now` when some job has a tick (or, for a live beat, a one-off
    /// run of a job not paused).
    pub fn next_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let ticks = self
            .effective()
            .into_iter()
            .filter_map(|(_, s)| s.next_after(now));
        let one_offs = self.live.iter().flat_map(|runner| {
            self.schedules
                .iter()
                .filter(|(code, _)| runner.is_enabled(code) == Some(true))
                .flat_map(|(code, _)| runner.pending_runs(code))
                .map(|run| run.at)
                .filter(|at| *at > now)
        });
        ticks.chain(one_offs).min()
    }

    /// Publishes due ticks until stopped: once at start (a tick within the grace that no beat
    /// published yet), then at each next tick. A broker error is logged and retried.
    pub async fn run(self) {
        let mut due_at = Some(self.clock.now());
        let mut checked = std::time::Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let now = self.clock.now();
            if let Some(runner) = &self.live
                && checked.elapsed() >= OVERRIDE_POLL
            {
                checked = std::time::Instant::now();
                match runner.refresh_overrides().await {
                    // Plan again from now: a tick at or before the change never counts.
                    Ok(true) => due_at = Some(now),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "Could not check the schedule overrides"),
                }
            }
            if due_at.is_some_and(|at| at <= now) {
                match self.publish_due(now).await {
                    Ok(_) => due_at = self.next_tick(now),
                    Err(e) => {
                        tracing::warn!(error = %e, "Could not publish due ticks; retrying");
                        due_at = Some(now + TimeDelta::seconds(1));
                    }
                }
                continue;
            }
            let wait = due_at
                .and_then(|at| (at - now).to_std().ok())
                .unwrap_or(POLL)
                .min(POLL);
            rt::sleep(wait).await;
        }
    }
}
