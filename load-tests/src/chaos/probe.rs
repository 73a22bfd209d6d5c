//! What Redis and PostgreSQL say about progress, asked with short timeouts
//! so that a frozen or dead server reads as "unknown", never as a hang.

use std::time::Duration;

use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use worker::stream_stats;

use super::ChaosError;

const ASK: Duration = Duration::from_millis(800);

#[derive(Clone)]
pub struct Probe {
    redis: ConnectionManager,
    pg: PgPool,
    stream: String,
    dlq: String,
}

/// The consumer group's backlog on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Delivered, not yet acked.
    pub pending: u64,
    /// Not yet delivered.
    pub undelivered: u64,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.undelivered == 0
    }
}

impl Probe {
    pub async fn new(redis_url: &str, database_url: &str) -> Result<Self, ChaosError> {
        let client = redis::Client::open(redis_url)?;
        let redis = ConnectionManager::new(client).await?;
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ASK)
            .connect(database_url)
            .await
            .map_err(ChaosError::Db)?;
        let keys = RedisKeys::new(String::new());
        let stream = keys.stream(0);
        Ok(Probe {
            redis,
            pg,
            dlq: keys.dlq_of(&stream),
            stream,
        })
    }

    pub async fn dlq_len(&self) -> Option<u64> {
        let mut conn = self.redis.clone();
        let n: u64 = timeout(
            ASK,
            redis::cmd("XLEN").arg(&self.dlq).query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        Some(n)
    }

    /// The group's backlog, as the worker's own gauges read it
    /// ([`worker::stream_stats::shard_stats`], whose lag is corrected for
    /// Redis's counters after a restart from the AOF); an unknown lag counts
    /// as one entry waiting, and with no group yet every entry is waiting.
    /// None when Redis does not answer (down, frozen, loading).
    pub async fn backlog(&self) -> Option<Backlog> {
        let mut conn = self.redis.clone();
        let stats = timeout(
            ASK,
            stream_stats::shard_stats(&mut conn, &self.stream, CONSUMER_GROUP),
        )
        .await
        .ok()?
        .ok()?;
        let undelivered = match (&stats.last_delivered_id, stats.lag) {
            (None, _) => stats.length,
            (Some(_), Some(lag)) => lag,
            (Some(_), None) => 1,
        };
        Some(Backlog {
            pending: stats.pending,
            undelivered,
        })
    }

    /// Rows committed so far, from the workers' hourly rollup (a few rows,
    /// not a count of `events`). None when PostgreSQL does not answer.
    pub async fn stored(&self) -> Option<i64> {
        timeout(
            ASK,
            sqlx::query_scalar::<_, i64>("SELECT coalesce(sum(count), 0)::int8 FROM event_counts")
                .fetch_one(&self.pg),
        )
        .await
        .ok()?
        .ok()
    }

    /// Waits until the backlog is empty; the time it was seen empty, or at
    /// `deadline` the backlog last seen (None: Redis did not answer).
    pub async fn wait_drained(&self, deadline: Instant) -> Result<Instant, Option<Backlog>> {
        loop {
            let backlog = self.backlog().await;
            if backlog.is_some_and(|b| b.is_empty()) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(backlog);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until `stop`: the longest time during which nothing was committed
    /// while the group had entries waiting (or Redis could not say whether
    /// it had).
    pub async fn longest_stall(self, stop: CancellationToken) -> Duration {
        let mut longest = Duration::ZERO;
        let mut last_progress = Instant::now();
        let mut last_stored = None;
        while !stop.is_cancelled() {
            let (stored, backlog) = tokio::join!(self.stored(), self.backlog());
            let now = Instant::now();
            let progressed = matches!((stored, last_stored), (Some(s), Some(l)) if s > l);
            if stored.is_some() && (last_stored.is_none() || progressed) {
                last_stored = stored;
            }
            if progressed || backlog.is_some_and(|b| b.is_empty()) {
                last_progress = now;
            }
            longest = longest.max(now - last_progress);
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        longest
    }
}
