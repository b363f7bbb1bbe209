//! The device's clocks. Entries carry the wall clock and a monotonic clock; the
//! monotonic one counts µs since the agent process started (its `boot`), so it
//! restarts exactly when the boot counter changes. Injected so tests can make
//! the wall clock jump.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync {
    /// Wall clock, µs since the Unix epoch.
    fn wall_us(&self) -> i64;
    /// Monotonic µs since this agent process started.
    fn mono_us(&self) -> u64;
    /// Monotonic µs of an `Instant` taken in this process (a frame's capture time).
    fn mono_of(&self, t: Instant) -> u64;
}

/// The system clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Clocks whose monotonic zero is now.
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn wall_us(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }
    fn mono_us(&self) -> u64 {
        self.mono_of(Instant::now())
    }
    fn mono_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }
}
