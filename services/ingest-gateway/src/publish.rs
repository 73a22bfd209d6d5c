//! Appending events to the ingest streams. One `XADD` for a single event; for
//! a batch, one `MULTI … EXEC` pipeline, so a batch is on the stream entirely
//! or not at all, in one round trip. The caller answers 202 only after this
//! returns `Ok`: a 202 means the events are in Redis.
//!
//! Requests are multiplexed over a few auto-reconnecting connections, each
//! with a response timeout, behind a circuit breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventline_shared::EnrichedEvent;
use eventline_shared::config::RedisArgs;
use eventline_shared::redis_keys::shard_of;
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION, FORMAT_VERSION_STR};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::Context;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Redis is failing; the circuit breaker is open")]
    BreakerOpen { retry_after: Duration },
    #[error("Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Encode(#[from] stream_codec::EncodeError),
}

pub struct Publisher {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    /// The key names, the shard count, the breaker every XADD asks first
    /// and reports to, the metrics.
    ctx: Arc<Context>,
}

/// An event encoded for its shard.
pub struct Encoded {
    shard: u32,
    payload: Vec<u8>,
}

impl Encoded {
    /// `event`, whose dedup key (`event.dedup_key()`, a hash when it has
    /// an `event_id`) the caller has already computed, on its shard.
    pub fn new(
        event: &EnrichedEvent,
        dedup_key: Uuid,
        shards: u32,
    ) -> Result<Self, stream_codec::EncodeError> {
        Ok(Self {
            shard: shard_of(dedup_key, shards),
            payload: stream_codec::encode(event)?,
        })
    }
}

impl Publisher {
    /// Opens `connections` auto-reconnecting connections to `redis`.
    pub async fn connect(
        ctx: Arc<Context>,
        redis: &RedisArgs,
        connections: u32,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis.redis_url.expose())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(redis.redis_timeout))
            .set_response_timeout(Some(redis.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut managers = Vec::with_capacity(connections as usize);
        for _ in 0..connections.max(1) {
            managers.push(
                client
                    .get_connection_manager_with_config(config.clone())
                    .await?,
            );
        }
        Ok(Self {
            connections: managers,
            next: AtomicUsize::new(0),
            ctx,
        })
    }

    pub fn shards(&self) -> u32 {
        self.ctx.shards
    }

    fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    /// Appends the events; `Ok` means every one of them is in Redis.
    pub async fn publish(&self, events: &[Encoded]) -> Result<(), PublishError> {
        let breaker = &self.ctx.breaker;
        breaker
            .allow()
            .map_err(|retry_after| PublishError::BreakerOpen { retry_after })?;
        let mut conn = self.connection();
        let started = Instant::now();
        let result = if let [one] = events {
            self.xadd(one).exec_async(&mut conn).await
        } else {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for event in events {
                pipe.add_command(self.xadd(event)).ignore();
            }
            pipe.exec_async(&mut conn).await
        };
        self.ctx
            .metrics
            .redis_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                breaker.success();
                Ok(())
            }
            Err(e) => {
                breaker.failure();
                Err(e.into())
            }
        }
    }

    fn xadd(&self, event: &Encoded) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.ctx.keys.stream(event.shard))
            .arg("*")
            .arg(FIELD_VERSION)
            .arg(FORMAT_VERSION_STR)
            .arg(FIELD_EVENT)
            .arg(&event.payload);
        cmd
    }
}
