//! The circuit breaker in front of PostgreSQL: after `BREAKER_FAILURES`
//! consecutive transient failures it opens, and for `BREAKER_OPEN_MS` no batch
//! touches the database; then one probe is let through (half-open), and its
//! outcome closes or re-opens the breaker. A dead database is not hammered by
//! every batch of every worker, and reading from Redis pauses meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
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

pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
    /// 1 while open (`eventline_worker_circuit_breaker_open`).
    gauge: IntGauge,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration, gauge: IntGauge) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Waits until an attempt is allowed: at once when closed; when open,
    /// until the open period ends; when half-open, until the probe finished.
    pub async fn ready(&self) {
        loop {
            let wait_until = {
                let mut state = self.lock();
                let now = Instant::now();
                match *state {
                    State::Closed { .. } => return,
                    State::Open { until } if now < until => until,
                    State::Open { .. } | State::HalfOpen { probing: false } => {
                        *state = State::HalfOpen { probing: true };
                        return;
                    }
                    State::HalfOpen { probing: true } => {
                        now + self.open_for.min(Duration::from_millis(100))
                    }
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// The database answered (even with a data error: it is alive).
    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
        self.gauge.set(0);
    }

    /// A transient failure.
    pub fn failure(&self) {
        let mut state = self.lock();
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            State::Open { until } => State::Open { until },
            _ => {
                tracing::warn!(
                    open_for_ms = self.open_for.as_millis() as u64,
                    "database circuit breaker open"
                );
                State::Open {
                    until: Instant::now() + self.open_for,
                }
            }
        };
        *state = next;
        self.gauge
            .set(i64::from(matches!(next, State::Open { .. })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(2, Duration::from_secs(5), IntGauge::new("g", "g").unwrap());
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.gauge.get(), 1);

        let start = Instant::now();
        b.ready().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert_eq!(b.state(), BreakerState::HalfOpen);

        // A second caller waits while the probe runs…
        let waiting = tokio::time::timeout(Duration::from_secs(1), b.ready()).await;
        assert!(waiting.is_err());
        // …and the probe's failure re-opens the breaker.
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        b.ready().await;
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.gauge.get(), 0);
        b.ready().await;
    }
}
