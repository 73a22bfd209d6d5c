//! A circuit breaker in front of Redis: after `threshold` consecutive
//! failures it opens, and requests fail fast (503 with `Retry-After`) instead
//! of piling up behind timeouts. After the cooldown one probe is let through;
//! its success closes the breaker. The stream-length poller reports to it
//! too, so the breaker closes when Redis is back even without traffic.
//!
//! Lock-free: a few atomics read on every request.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` when the breaker opened; 0 when closed.
    opened_at_ms: AtomicU64,
    /// Milliseconds since `epoch` when the current probe started; 0 when none.
    probe_started_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            epoch: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            probe_started_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "not set".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// `Ok` when a call may go ahead; `Err(retry_after)` when it must fail fast.
    pub fn allow(&self) -> Result<(), Duration> {
        let opened = self.opened_at_ms.load(Ordering::Acquire);
        if opened == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        let cooldown = self.cooldown.as_millis() as u64;
        let elapsed = now.saturating_sub(opened);
        if elapsed < cooldown {
            return Err(Duration::from_millis(cooldown - elapsed));
        }
        // Half-open: one probe at a time; a probe that never reported
        // (its request was dropped) expires after another cooldown.
        let probe = self.probe_started_ms.load(Ordering::Acquire);
        if (probe == 0 || now.saturating_sub(probe) >= cooldown)
            && self
                .probe_started_ms
                .compare_exchange(probe, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(());
        }
        Err(self.cooldown)
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        if self.opened_at_ms.swap(0, Ordering::AcqRel) != 0 {
            self.probe_started_ms.store(0, Ordering::Release);
            tracing::info!("Redis answers again; circuit breaker closed");
        }
    }

    pub fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold {
            let was = self.opened_at_ms.swap(self.now_ms(), Ordering::AcqRel);
            self.probe_started_ms.store(0, Ordering::Release);
            if was == 0 {
                tracing::warn!(failures, "Redis keeps failing; circuit breaker opened");
            }
        }
    }

    pub fn state(&self) -> State {
        let opened = self.opened_at_ms.load(Ordering::Acquire);
        if opened == 0 {
            State::Closed
        } else if self.now_ms().saturating_sub(opened) < self.cooldown.as_millis() as u64 {
            State::Open
        } else {
            State::HalfOpen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_after_cooldown_and_closes_on_success() {
        let b = CircuitBreaker::new(3, Duration::from_millis(40));
        assert!(b.allow().is_ok());
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), State::Closed);
        b.record_failure();
        assert_eq!(b.state(), State::Open);
        let retry = b.allow().unwrap_err();
        assert!(retry <= Duration::from_millis(40));

        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.allow().is_ok(), "one probe goes through");
        assert!(b.allow().is_err(), "only one");
        b.record_failure();
        assert_eq!(b.state(), State::Open, "a failed probe reopens");

        std::thread::sleep(Duration::from_millis(50));
        assert!(b.allow().is_ok());
        b.record_success();
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow().is_ok() && b.allow().is_ok());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = CircuitBreaker::new(2, Duration::from_secs(10));
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.state(), State::Closed);
    }
}
