//! The run clock: how long a test has been running, not counting paused time.
//!
//! Load shapes are ticked with this clock, so a ramp resumes exactly where it was paused.
//! It starts when the test starts (AioTest starts its clock when the shape is created,
//! which makes every shape skip ahead by the time spent loading and waiting for workers).
//!
//! The clock never reads the time itself: every call takes `now`. The runner passes
//! `tokio::time::Instant::now().into_std()`, so tests of timing logic run on tokio's paused
//! clock, and this module's own tests need no clock at all.

use std::time::{Duration, Instant};

/// Elapsed run time excluding pauses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunClock {
    started_at: Option<Instant>,
    paused_at: Option<Instant>,
    paused_total: Duration,
}

impl RunClock {
    /// A clock that has not started: its run time is zero until [`RunClock::start`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts (or restarts) the clock at `now`, forgetting earlier runs and pauses.
    pub fn start(&mut self, now: Instant) {
        *self = RunClock {
            started_at: Some(now),
            paused_at: None,
            paused_total: Duration::ZERO,
        };
    }

    /// Whether [`RunClock::start`] has been called.
    pub fn is_started(&self) -> bool {
        self.started_at.is_some()
    }

    /// Whether the clock is frozen by a pause.
    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// Freezes the clock. Pausing a paused or unstarted clock does nothing.
    pub fn pause(&mut self, now: Instant) {
        if self.started_at.is_some() && self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }

    /// Lets the clock run again; the pause's length is never counted. Resuming a running
    /// clock does nothing.
    pub fn resume(&mut self, now: Instant) {
        if let Some(paused_at) = self.paused_at.take() {
            self.paused_total += now.saturating_duration_since(paused_at);
        }
    }

    /// Run time at `now`: zero before the start, frozen while paused.
    pub fn run_time(&self, now: Instant) -> Duration {
        let Some(started_at) = self.started_at else {
            return Duration::ZERO;
        };
        let until = self.paused_at.unwrap_or(now);
        until
            .saturating_duration_since(started_at)
            .saturating_sub(self.paused_total)
    }

    /// Total time spent paused up to `now`, including a pause still in progress.
    pub fn paused_time(&self, now: Instant) -> Duration {
        let current = self
            .paused_at
            .map_or(Duration::ZERO, |p| now.saturating_duration_since(p));
        self.paused_total + current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn run_time_is_zero_until_the_test_starts() {
        let t0 = Instant::now();
        let clock = RunClock::new();
        assert_eq!(clock.run_time(t0 + secs(100)), Duration::ZERO);
        assert!(!clock.is_started());
    }

    #[test]
    fn run_time_counts_from_start_not_from_creation() {
        let t0 = Instant::now();
        let mut clock = RunClock::new();
        clock.start(t0 + secs(30));
        assert_eq!(clock.run_time(t0 + secs(45)), secs(15));
    }

    #[test]
    fn paused_time_is_excluded_and_frozen_while_paused() {
        let t0 = Instant::now();
        let mut clock = RunClock::new();
        clock.start(t0);
        clock.pause(t0 + secs(10));
        assert!(clock.is_paused());
        assert_eq!(clock.run_time(t0 + secs(10)), secs(10));
        assert_eq!(
            clock.run_time(t0 + secs(25)),
            secs(10),
            "frozen while paused"
        );
        assert_eq!(clock.paused_time(t0 + secs(25)), secs(15));
        clock.resume(t0 + secs(30));
        assert_eq!(clock.run_time(t0 + secs(35)), secs(15));
        // A second pause adds up with the first.
        clock.pause(t0 + secs(40));
        clock.resume(t0 + secs(50));
        assert_eq!(clock.run_time(t0 + secs(60)), secs(30));
        assert_eq!(clock.paused_time(t0 + secs(60)), secs(30));
    }

    #[test]
    fn repeated_pause_and_resume_are_idempotent() {
        let t0 = Instant::now();
        let mut clock = RunClock::new();
        clock.pause(t0); // not started: ignored
        clock.start(t0);
        clock.pause(t0 + secs(5));
        clock.pause(t0 + secs(8)); // ignored: the first pause stands
        clock.resume(t0 + secs(10));
        clock.resume(t0 + secs(20)); // ignored: not paused
        assert_eq!(clock.run_time(t0 + secs(20)), secs(15));
    }

    #[test]
    fn restart_forgets_earlier_pauses() {
        let t0 = Instant::now();
        let mut clock = RunClock::new();
        clock.start(t0);
        clock.pause(t0 + secs(1));
        clock.start(t0 + secs(100));
        assert!(!clock.is_paused());
        assert_eq!(clock.run_time(t0 + secs(103)), secs(3));
    }
}
