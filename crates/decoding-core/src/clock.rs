//! Time as an input: what a strategy that times itself reads instead of the system clock.
//!
//! Decisions that depend on measured time (a composite resting a source whose drafting costs
//! more than it brings) make a run depend on the machine's speed. As quinn-proto takes `now`
//! as an argument, the strategies here read time from a [`Clock`] they are given: the
//! [`SystemClock`] by default, a [`ManualClock`] to make a run reproducible (it stands still,
//! or advances by a fixed tick per reading, or by what the caller sets).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic source of time.
pub trait Clock: fmt::Debug + Send {
    /// The time since some fixed origin; never decreasing.
    fn now(&self) -> Duration;
}

/// The system's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock under the caller's control: it reads the time last [`set`](Self::set) (or
/// [`advance`](Self::advance)d to), plus a fixed `tick` after every reading. Clones share
/// the time, so a test can keep a handle while the strategy owns the clock.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
    tick: u64,
}

impl ManualClock {
    /// A clock that stands still at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock that advances by `tick` after every reading.
    pub fn ticking(tick: Duration) -> Self {
        Self {
            nanos: Arc::default(),
            tick: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Sets the time (never backwards: an earlier time is ignored).
    pub fn set(&self, time: Duration) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        let before = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(self.tick))
            })
            .unwrap_or(0);
        Duration::from_nanos(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clocks_stand_still_tick_and_advance() {
        let still = ManualClock::new();
        assert_eq!((still.now(), still.now()), (Duration::ZERO, Duration::ZERO));
        let ticking = ManualClock::ticking(Duration::from_millis(2));
        assert_eq!(ticking.now(), Duration::ZERO);
        assert_eq!(ticking.now(), Duration::from_millis(2));
        let handle = ticking.clone();
        handle.advance(Duration::from_millis(10));
        assert_eq!(ticking.now(), Duration::from_millis(14));
        handle.set(Duration::from_millis(1)); // backwards: ignored
        assert_eq!(ticking.now(), Duration::from_millis(16));
        let system = SystemClock::new();
        assert!(system.now() <= system.now());
    }
}
