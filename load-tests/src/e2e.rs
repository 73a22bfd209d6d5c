//! End-to-end checks in PostgreSQL.
//!
//! - [`verify`]: after sending, waits until every accepted event is stored
//!   (or a timeout; progress is read from the `event_counts` rollup), then compares what is stored for this run's services
//!   with what was accepted, by dedup key: an accepted key never stored is a
//!   loss; a key stored more than once is a duplicate. Re-sent events with
//!   the same `event_id` are one key, stored once.
//! - [`poll_lag`]: while sending, polls PostgreSQL by id for a sample of
//!   accepted events without an `event_id` (stored under the id the 202
//!   gave them); lag is from the 202 arriving to the first poll that
//!   sees the row, so it is exact to within one poll interval plus the
//!   poll's own query time (reported as the resolution).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::driver::LagSample;
use crate::stats::{AcceptedEvent, EndToEnd, Percentiles, histogram};

/// What the lag poller measured.
pub struct Lag {
    pub percentiles: Percentiles,
    pub unseen: u64,
    pub resolution: Duration,
}

/// Polls for sampled ids until the sender is dropped and every sample is
/// seen or older than `give_up`.
pub async fn poll_lag(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<LagSample>,
    every: Duration,
    give_up: Duration,
) -> Lag {
    let mut h = histogram();
    let mut pending: Vec<LagSample> = Vec::new();
    let mut unseen = 0;
    let mut slowest_query = Duration::ZERO;
    let mut open = true;
    let mut failing = false;
    loop {
        while open {
            match rx.try_recv() {
                Ok(sample) => pending.push(sample),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if pending.is_empty() && !open {
            break;
        }
        if !pending.is_empty() {
            let ids: Vec<Uuid> = pending.iter().map(|p| p.0).collect();
            let started = Instant::now();
            let found: Result<Vec<Uuid>, _> =
                sqlx::query_scalar("SELECT id FROM events WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&pool)
                    .await;
            let seen_at = Instant::now();
            slowest_query = slowest_query.max(seen_at - started);
            match found {
                Ok(found) => {
                    failing = false;
                    let found: HashSet<Uuid> = found.into_iter().collect();
                    pending.retain(|(id, accepted_at)| {
                        if found.contains(id) {
                            let lag = seen_at - *accepted_at;
                            h.saturating_record(
                                u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).max(1),
                            );
                            false
                        } else {
                            true
                        }
                    });
                }
                Err(error) => {
                    // Once per outage, not once per poll.
                    if !failing {
                        eprintln!("eventline-load: lag poll failed (retrying): {error}");
                    }
                    failing = true;
                }
            }
            let before = pending.len();
            pending.retain(|(_, accepted_at)| accepted_at.elapsed() < give_up);
            unseen += (before - pending.len()) as u64;
        }
        tokio::time::sleep(every).await;
    }
    Lag {
        percentiles: Percentiles::of(&h),
        unseen,
        resolution: every + slowest_query,
    }
}

/// What must be stored: the distinct dedup keys of the accepted events.
pub fn expected_keys(accepted: &[AcceptedEvent]) -> HashSet<Uuid> {
    accepted.iter().map(|a| a.dedup_key).collect()
}

/// Compares stored rows (dedup key → row count) with the expected keys:
/// (stored, lost, duplicates, unexpected).
pub fn compare(expected: &HashSet<Uuid>, stored: &HashMap<Uuid, i64>) -> (u64, u64, u64, u64) {
    let found = expected.iter().filter(|k| stored.contains_key(k)).count() as u64;
    let lost = expected.len() as u64 - found;
    let duplicates = stored.values().map(|&n| (n - 1).max(0) as u64).sum();
    let unexpected = stored.keys().filter(|k| !expected.contains(k)).count() as u64;
    (found, lost, duplicates, unexpected)
}

/// Runs `command` with `sh -c`, this process's id in `EVENTLINE_LOAD_PID`,
/// and waits for it. A command that cannot start or fails is reported, not
/// fatal: the check goes on.
async fn run_hook(command: &str) {
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .env("EVENTLINE_LOAD_PID", std::process::id().to_string());
    match child.status().await {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("eventline-load: --on-drained command exited with {status}"),
        Err(error) => eprintln!("eventline-load: --on-drained command did not start: {error}"),
    }
}

/// Waits for the run's rows, runs `on_drained` (once, when the rollup first
/// counts them all or the wait times out), then counts losses and
/// duplicates.
pub async fn verify(
    pool: &PgPool,
    services: &[String],
    since: DateTime<Utc>,
    accepted: &[AcceptedEvent],
    timeout: Duration,
    mut on_drained: Option<&str>,
) -> Result<EndToEnd, sqlx::Error> {
    let expected = expected_keys(accepted);
    let started = Instant::now();
    let mut drained_at = None;
    loop {
        // Progress from the worker's hourly rollup (a few rows), not by
        // counting events: counting millions of rows every poll takes a core
        // from the worker being measured.
        let rows: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(count), 0)::int8 FROM event_counts \
             WHERE service = ANY($1) AND hour >= date_trunc('hour', $2::timestamptz)",
        )
        .bind(services)
        .bind(since)
        .fetch_one(pool)
        .await?;
        let timed_out = started.elapsed() >= timeout;
        if rows as u64 >= expected.len() as u64 || timed_out {
            drained_at.get_or_insert(started.elapsed());
            if let Some(command) = on_drained.take() {
                run_hook(command).await;
            }
            let stored: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
                "SELECT dedup_key, count(*) FROM events WHERE service = ANY($1) AND ts >= $2 GROUP BY dedup_key",
            )
            .bind(services)
            .bind(since)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
            let (found, lost, duplicates, unexpected) = compare(&expected, &stored);
            if lost == 0 || timed_out {
                return Ok(EndToEnd {
                    expected: expected.len() as u64,
                    stored: found,
                    lost,
                    duplicates,
                    unexpected,
                    drain_seconds: drained_at.unwrap_or_default().as_secs_f64(),
                    timed_out: lost > 0,
                    lag: None,
                    lag_samples_unseen: 0,
                    lag_resolution_ms: 0.0,
                });
            }
            // Enough rows but not the right ones yet (duplicates or strays
            // made up the count): keep waiting.
            drained_at = None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_duplicates_are_by_dedup_key() {
        let k: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        // k[1] accepted twice (a re-send with the same event_id): one key.
        let accepted: Vec<AcceptedEvent> = [0, 1, 1, 2, 3]
            .iter()
            .map(|&i| AcceptedEvent {
                id: Uuid::now_v7(),
                dedup_key: k[i],
            })
            .collect();
        let expected = expected_keys(&accepted);
        assert_eq!(expected.len(), 4);
        // k[2] stored twice, k[3] never, k[4] never accepted.
        let stored: HashMap<Uuid, i64> = [(k[0], 1), (k[1], 1), (k[2], 2), (k[4], 1)]
            .into_iter()
            .collect();
        assert_eq!(compare(&expected, &stored), (3, 1, 1, 1));
    }
}
