//! Where the runner gets the time: an injected [`Clock`], so schedules are tested over days
//! without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use event_listener::Event;
use futures::future::BoxFuture;

/// A source of the current instant, and a way to wait for one.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Completes at `instant` (at once if it has passed). The scheduler sleeps on it, so a test
    /// clock decides when the scheduler wakes.
    fn sleep_until(&self, instant: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The machine's clock. Sleeping uses `async-io`'s timer, which works under any executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, instant: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (instant - Utc::now()).to_std().unwrap_or_default();
        Box::pin(async move {
            async_io::Timer::after(wait).await;
        })
    }
}

/// A clock that only moves when told to: for tests and simulations. Clones share the time.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    moved: Event,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                moved: Event::new(),
            }),
        }
    }

    /// Sets the time (it may go backwards, as a real clock can) and wakes the sleepers due.
    pub fn set(&self, instant: DateTime<Utc>) {
        *self
            .inner
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = instant;
        self.inner.moved.notify(usize::MAX);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let now = self.now();
        self.set(now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .inner
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep_until(&self, instant: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let clock = self.clone();
        Box::pin(async move {
            loop {
                // Listen before checking, so a move between the check and the wait is seen.
                let listener = clock.inner.moved.listen();
                if clock.now() >= instant {
                    return;
                }
                listener.await;
            }
        })
    }
}

/// `future`'s output, or `Err(TimedOut)` if `limit` passes first. Runtime-agnostic (async-io's
/// timer), so the library's futures need no particular executor.
#[cfg(feature = "graphql")]
pub(crate) async fn timeout<F: std::future::Future>(
    limit: std::time::Duration,
    future: F,
) -> Result<F::Output, TimedOut> {
    use futures::future::{Either, select};
    let timer = async_io::Timer::after(limit);
    futures::pin_mut!(future);
    match select(future, timer).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(_) => Err(TimedOut),
    }
}

/// The error of [`timeout`].
#[cfg(feature = "graphql")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_manual_clock_wakes_its_sleepers_when_moved_past_their_instant() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let sleeper = clock.sleep_until(start + TimeDelta::minutes(5));
        let mover = clock.clone();
        let woke = async_io::block_on(async move {
            let mover = async move {
                mover.advance(TimeDelta::minutes(2));
                mover.advance(TimeDelta::minutes(3));
            };
            futures::join!(sleeper, mover);
            true
        });
        assert!(woke);
        assert_eq!(clock.now(), start + TimeDelta::minutes(5));
    }
}
