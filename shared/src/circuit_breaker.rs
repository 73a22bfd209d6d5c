//! A circuit breaker in front of a dependency (Redis for the gateway,
//! PostgreSQL for the worker). After `threshold` consecutive failures it
//! opens: for `open_for` no call goes through, so a dead dependency is not
//! hammered and callers fail fast (the gateway's 503) or wait (the worker's
//! next batch). Then it is half-open: one probe goes through; its success
//! closes the breaker, its failure opens it again. A probe that never reports
//! (its caller was dropped) gives way to a new one after another `open_for`.
//!
//! Time is `tokio::time::Instant`, so tests run it on a paused clock.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Option<Instant> },
}

/// What `/health/detailed` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    state: Mutex<Inner>,
    threshold: u32,
    open_for: Duration,
    /// 1 while not closed, when the owner exports one.
    gauge: Option<IntGauge>,
}

impl CircuitBreaker {
    /// `name` says in logs what the breaker guards ("redis", "postgres").
    pub fn new(
        name: &'static str,
        threshold: u32,
        open_for: Duration,
        gauge: Option<IntGauge>,
    ) -> Self {
        CircuitBreaker {
            name,
            state: Mutex::new(Inner::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a plain value: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_gauge(&self, state: Inner) {
        if let Some(gauge) = &self.gauge {
            gauge.set(i64::from(!matches!(state, Inner::Closed { .. })));
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Decides at once: `Ok` when the call may go ahead (closed, or the one
    /// half-open probe), `Err(retry_after)` when it must fail fast.
    pub fn allow(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now < until => Err(until - now),
            Inner::HalfOpen {
                probe_since: Some(since),
            } if now < since + self.open_for => Err(self.open_for),
            Inner::Open { .. } | Inner::HalfOpen { .. } => {
                *state = Inner::HalfOpen {
                    probe_since: Some(now),
                };
                Ok(())
            }
        }
    }

    /// Waits until a call is allowed: at once when closed; when open, until
    /// the open period ends; when a probe runs, until it has reported.
    pub async fn ready(&self) {
        loop {
            match self.allow() {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.min(Duration::from_millis(100))).await,
            }
        }
    }

    /// The dependency answered.
    pub fn success(&self) {
        let mut state = self.lock();
        if !matches!(*state, Inner::Closed { .. }) {
            tracing::info!(dependency = self.name, "circuit breaker closed");
        }
        *state = Inner::Closed { failures: 0 };
        self.set_gauge(*state);
    }

    /// The dependency failed (connection, timeout: not a refusal of the data).
    pub fn failure(&self) {
        let mut state = self.lock();
        let next = match *state {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            Inner::Open { until } => Inner::Open { until },
            _ => {
                tracing::warn!(
                    dependency = self.name,
                    open_for_ms = self.open_for.as_millis() as u64,
                    "circuit breaker open"
                );
                Inner::Open {
                    until: Instant::now() + self.open_for,
                }
            }
        };
        *state = next;
        self.set_gauge(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_probes_once() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let b = CircuitBreaker::new("db", 2, Duration::from_secs(5), Some(gauge.clone()));
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
        assert!(b.allow().unwrap_err() <= Duration::from_secs(5));

        let start = Instant::now();
        b.ready().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert_eq!(b.state(), BreakerState::HalfOpen);

        // A second caller fails fast or waits while the probe runs…
        assert!(b.allow().is_err());
        let waiting = tokio::time::timeout(Duration::from_secs(1), b.ready()).await;
        assert!(waiting.is_err());
        // …and the probe's failure re-opens the breaker.
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        b.ready().await;
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(gauge.get(), 0);
        assert!(b.allow().is_ok() && b.allow().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reports_gives_way() {
        let b = CircuitBreaker::new("redis", 1, Duration::from_secs(1), None);
        b.failure();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow().is_ok(), "the probe");
        assert!(b.allow().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow().is_ok(), "a new probe once the first is overdue");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = CircuitBreaker::new("db", 2, Duration::from_secs(10), None);
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
