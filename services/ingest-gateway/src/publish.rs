//! Appending events to the ingest streams: one request's events are one
//! stream entry (format 2, see `stream_codec`), written with one `XADD`, so
//! a batch is on the stream entirely or not at all, on one key. The caller
//! answers 202 only after this returns `Ok`: a 202 means the events are in
//! Redis.
//!
//! Requests are multiplexed over a few auto-reconnecting connections (on a
//! Redis Cluster, cluster connections that follow the slots' masters), each
//! with a response timeout, behind a circuit breaker.
//!
//! With `REDIS_MIN_REPLICAS_ACK` = n > 0 the `XADD` is pipelined with
//! `WAIT n <REDIS_REPLICA_ACK_TIMEOUT_MS>` on the same connection (the same
//! master): `Ok` then also means n replicas have the entry, so a failover
//! cannot take it. Fewer in time is [`PublishError::NotReplicated`], which
//! the caller answers 503: the client retries, and the worker's claims keep
//! a retried `event_id` stored once (ADR 0060).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventline_shared::EnrichedEvent;
use eventline_shared::config::RedisArgs;
use eventline_shared::redis_keys::shard_of;
use eventline_shared::redis_pool::RedisConn;
use eventline_shared::stream_codec::{self, EntryWriter, FIELD_EVENT, FIELD_VERSION, FORMAT_V2};
use redis::aio::ConnectionManagerConfig;
use uuid::Uuid;

use crate::Context;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Redis is failing; the circuit breaker is open")]
    BreakerOpen { retry_after: Duration },
    #[error("Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{confirmed} of {wanted} replicas confirmed the entry in time")]
    NotReplicated { wanted: u32, confirmed: u32 },
}

pub struct Publisher {
    connections: Vec<RedisConn>,
    /// `REDIS_MIN_REPLICAS_ACK` and its timeout in milliseconds.
    replicas: u32,
    replica_timeout_ms: u64,
    next: AtomicUsize,
    /// The key names, the shard count, the breaker every XADD asks first
    /// and reports to, the metrics.
    ctx: Arc<Context>,
}

/// One request's events on their way to one stream entry.
pub struct Entry {
    writer: EntryWriter,
    /// The first event's shard (by its dedup key): a request of one event
    /// lands where it always did, and requests spread over the shards.
    shard: Option<u32>,
}

impl Entry {
    /// An empty entry for the request `request_id`, with room for about
    /// `bytes` of events.
    pub fn new(request_id: &str, bytes: usize) -> Result<Self, stream_codec::EncodeError> {
        Ok(Self {
            writer: EntryWriter::new(Some(request_id), bytes)?,
            shard: None,
        })
    }

    /// An empty entry for single-event requests written together to
    /// `shard` (`group`), with room for `bytes` of encoded events. Its
    /// request id is nil: each event carries its own.
    pub fn grouped(shard: u32, bytes: usize) -> Self {
        Self {
            writer: EntryWriter::grouped(bytes + 16),
            shard: Some(shard),
        }
    }

    /// Appends an event encoded with its request id by
    /// `stream_codec::encode`.
    pub fn push_encoded(&mut self, event: &[u8]) {
        self.writer.push_encoded(event);
    }

    /// Appends `event`, whose dedup key (`event.dedup_key()`, a hash when
    /// it has an `event_id`) the caller has already computed.
    pub fn push(
        &mut self,
        event: &EnrichedEvent,
        dedup_key: Uuid,
        shards: u32,
    ) -> Result<(), stream_codec::EncodeError> {
        self.writer.push(event)?;
        self.shard
            .get_or_insert_with(|| shard_of(dedup_key, shards));
        Ok(())
    }

    /// Events in the entry.
    pub fn len(&self) -> u32 {
        self.writer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }
}

impl Publisher {
    /// Opens `connections` auto-reconnecting connections to `redis` (on a
    /// cluster, as many cluster connections).
    pub async fn connect(
        ctx: Arc<Context>,
        redis: &RedisArgs,
        connections: u32,
    ) -> Result<Self, redis::RedisError> {
        let mut opened = Vec::with_capacity(connections as usize);
        if ctx.redis.is_cluster() {
            for _ in 0..connections.max(1) {
                opened.push(ctx.redis.own_connection().await?);
            }
        } else {
            let client = redis::Client::open(redis.redis_url.expose())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(redis.redis_timeout))
                .set_response_timeout(Some(redis.redis_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            for _ in 0..connections.max(1) {
                let manager = client
                    .get_connection_manager_with_config(config.clone())
                    .await?;
                opened.push(RedisConn::Managed(manager));
            }
        }
        Ok(Self {
            connections: opened,
            replicas: redis.redis_min_replicas_ack,
            replica_timeout_ms: redis.redis_replica_ack_timeout.as_millis() as u64,
            next: AtomicUsize::new(0),
            ctx,
        })
    }

    pub fn shards(&self) -> u32 {
        self.ctx.shards
    }

    fn connection(&self) -> RedisConn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    /// Appends the entry; `Ok` means every one of its events is in Redis.
    /// An empty entry writes nothing.
    pub async fn publish(&self, entry: Entry) -> Result<(), PublishError> {
        let Some(shard) = entry.shard else {
            return Ok(());
        };
        let breaker = &self.ctx.breaker;
        breaker
            .allow()
            .map_err(|retry_after| PublishError::BreakerOpen { retry_after })?;
        let mut conn = self.connection();
        let started = Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(self.ctx.keys.stream(shard))
            .arg("*")
            .arg(FIELD_VERSION)
            .arg(FORMAT_V2)
            .arg(FIELD_EVENT)
            .arg(entry.writer.finish())
            .ignore();
        if self.replicas > 0 {
            pipe.cmd("WAIT")
                .arg(self.replicas)
                .arg(self.replica_timeout_ms);
        }
        let result: Result<Vec<u32>, _> = pipe.query_async(&mut conn).await;
        self.ctx
            .metrics
            .redis_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(confirmed) => {
                // Redis answered: the breaker counts Redis's health, and a
                // replica that lags is not Redis failing.
                breaker.success();
                match confirmed.first() {
                    Some(&confirmed) if confirmed < self.replicas => {
                        self.ctx.metrics.replica_ack_timeouts.inc();
                        Err(PublishError::NotReplicated {
                            wanted: self.replicas,
                            confirmed,
                        })
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                breaker.failure();
                Err(e.into())
            }
        }
    }
}
