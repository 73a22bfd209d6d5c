//! What Redis and PostgreSQL say about progress, asked with short timeouts
//! so that a frozen or dead server reads as "unknown", never as a hang.

use std::time::Duration;

use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

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

/// `<ms>-<seq>` as a pair, for comparing entry ids.
fn entry_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn field<'a>(map: &'a [(String, redis::Value)], name: &str) -> Option<&'a redis::Value> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn as_u64(v: Option<&redis::Value>) -> Option<u64> {
    match v? {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn as_string(v: Option<&redis::Value>) -> Option<String> {
    match v? {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A reply of alternating names and values (RESP2 map) as pairs.
fn pairs(v: redis::Value) -> Option<Vec<(String, redis::Value)>> {
    match v {
        redis::Value::Array(items) => {
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((as_string(Some(&k))?, v));
            }
            Some(out)
        }
        redis::Value::Map(items) => Some(
            items
                .into_iter()
                .filter_map(|(k, v)| Some((as_string(Some(&k))?, v)))
                .collect(),
        ),
        _ => None,
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
        Ok(Probe {
            redis,
            pg,
            stream: keys.stream(0),
            dlq: keys.dlq(),
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

    /// The group's backlog: pending from `XINFO GROUPS`; undelivered 0 when
    /// the last delivered id has reached the stream's last id, else the
    /// group's `lag` (at least 1). None when Redis does not answer (down,
    /// frozen, loading).
    pub async fn backlog(&self) -> Option<Backlog> {
        let mut conn = self.redis.clone();
        let groups: redis::Value = timeout(
            ASK,
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&self.stream)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        let redis::Value::Array(groups) = groups else {
            return None;
        };
        for group in groups {
            let g = pairs(group)?;
            if as_string(field(&g, "name")).as_deref() != Some(CONSUMER_GROUP) {
                continue;
            }
            let pending = as_u64(field(&g, "pending"))?;
            // Redis's `lag` comes from counters that a restart from the AOF
            // can leave far off (198,300 "undelivered" on a stream whose
            // every entry was stored): whether anything is undelivered is
            // whether the last delivered id has reached the stream's last.
            let delivered = entry_id(&as_string(field(&g, "last-delivered-id"))?)?;
            let info: redis::Value = timeout(
                ASK,
                redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(&self.stream)
                    .query_async(&mut conn),
            )
            .await
            .ok()?
            .ok()?;
            let last = entry_id(&as_string(field(&pairs(info)?, "last-generated-id"))?)?;
            let undelivered = if delivered >= last {
                0
            } else {
                as_u64(field(&g, "lag")).unwrap_or(0).max(1)
            };
            return Some(Backlog {
                pending,
                undelivered,
            });
        }
        // No group yet: nothing was ever delivered; empty when the stream is.
        let len: u64 = timeout(
            ASK,
            redis::cmd("XLEN").arg(&self.stream).query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        Some(Backlog {
            pending: 0,
            undelivered: len,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_compare_as_numbers() {
        assert!(entry_id("9-5") < entry_id("10-0"));
        assert!(entry_id("10-2") < entry_id("10-10"));
        assert_eq!(entry_id("0-0"), Some((0, 0)));
        assert_eq!(entry_id("junk"), None);
    }
}
