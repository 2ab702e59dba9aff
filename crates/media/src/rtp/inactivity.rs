//! The media inactivity timer ("RTP timeout"), paused while a leg is on hold.

use std::time::{Duration, Instant};

/// Media inactivity ("RTP timeout"): expires when no activity was seen for `timeout`, except
/// while paused (a leg on hold legitimately sends nothing).
///
/// It is armed by the first [`on_activity`](Self::on_activity) (call it when the leg's media
/// starts, so that a leg that never sends also times out) or by un-pausing. A zero timeout
/// disables it.
#[derive(Debug, Clone)]
pub struct InactivityTimer {
    timeout: Duration,
    last: Option<Instant>,
    paused: bool,
}

impl InactivityTimer {
    /// A timer expiring after `timeout` without activity.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last: None,
            paused: false,
        }
    }

    /// Media (or the start of the leg's media) was seen at `now`.
    pub fn on_activity(&mut self, now: Instant) {
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Pause (hold) or resume. Resuming starts a full new timeout window at `now`, since the
    /// remote needs a moment to restart its media after the hold ends.
    pub fn set_paused(&mut self, now: Instant, paused: bool) {
        if paused {
            self.paused = true;
        } else if self.paused {
            self.paused = false;
            self.last = Some(now);
        }
    }

    /// Whether the timer is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When the timer expires, if it runs (armed, not paused, non-zero timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.paused || self.timeout.is_zero() {
            return None;
        }
        self.last?.checked_add(self.timeout)
    }

    /// Whether the timer has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|deadline| now >= deadline)
    }
}
