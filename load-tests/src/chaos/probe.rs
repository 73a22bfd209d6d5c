//! What Redis and PostgreSQL say about progress, asked with short timeouts
//! so that a frozen or dead server reads as "unknown", never as a hang.
//!
//! On one Redis server the probe holds a `ConnectionManager`: when Redis is
//! killed, the call that meets the broken connection fails (unknown) and
//! the manager reconnects on the calls after it, which succeed once Redis is
//! back; a frozen Redis's calls are abandoned at the timeout. On a Redis
//! Cluster it holds a [`Redis`] handle (`redis_pool`, the services' own)
//! with short connect and response timeouts, read over every shard; a call
//! that fails or times out drops the handle, and the next call builds a new
//! one (at most once a second, and only while the cluster serves every slot:
//! [`Redis::connect`]'s check), rather than trusting a connection whose
//! master died to find the new one by itself.

use std::sync::Arc;
use std::time::Duration;

use eventline_shared::config::{RedisArgs, SecretUrl, parse_cluster_nodes};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::redis_pool::{Redis, RedisConn};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use worker::stream_stats;

use super::ChaosError;

/// The longest a question may take.
const ASK: Duration = Duration::from_millis(800);

/// A cluster handle's connect and response timeouts (`REDIS_TIMEOUT_MS`).
const CLUSTER_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest a new cluster handle may take to build.
const CLUSTER_CONNECT: Duration = Duration::from_secs(2);

/// Builds of a cluster handle are at least this far apart.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// The Redis the probe reads.
pub enum Target<'a> {
    /// One server at this URL.
    Single(&'a str),
    /// A cluster: its nodes' URLs, and the services' `STREAM_SHARDS`.
    Cluster { nodes: &'a [String], shards: u32 },
}

#[derive(Clone)]
pub struct Probe {
    redis: RedisProbe,
    pg: PgPool,
    /// Every shard's stream (one on one server).
    streams: Vec<String>,
    /// Every dead-letter stream (one on one server, one per shard on a
    /// cluster).
    dlqs: Vec<String>,
}

#[derive(Clone)]
enum RedisProbe {
    Single(ConnectionManager),
    Cluster(Arc<ClusterLink>),
}

/// A cluster handle, rebuilt after a failure.
struct ClusterLink {
    args: RedisArgs,
    state: tokio::sync::Mutex<LinkState>,
}

struct LinkState {
    redis: Option<Redis>,
    /// When the next build may be tried.
    next_build: Instant,
}

impl ClusterLink {
    async fn connect(args: &RedisArgs) -> Option<Redis> {
        timeout(CLUSTER_CONNECT, Redis::connect(args))
            .await
            .ok()?
            .ok()
    }

    /// A connection from the current handle, building one when there is
    /// none and a build is due; None when there is none to be had now.
    async fn conn(&self) -> Option<RedisConn> {
        let mut state = self.state.lock().await;
        if state.redis.is_none() && Instant::now() >= state.next_build {
            state.next_build = Instant::now() + REBUILD_EVERY;
            state.redis = Self::connect(&self.args).await;
        }
        state.redis.as_ref()?.get().await.ok()
    }

    /// A call failed: drop the handle, so that the next call builds one.
    async fn failed(&self) {
        self.state.lock().await.redis = None;
    }
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

/// A cluster's [`RedisArgs`] for the probe: its nodes, short timeouts.
fn cluster_args(nodes: &[String]) -> Result<RedisArgs, ChaosError> {
    let nodes = parse_cluster_nodes(&nodes.join(","))
        .map_err(|e| ChaosError::Setup(format!("the cluster's nodes: {e}")))?;
    Ok(RedisArgs {
        // Not read: the cluster's nodes are.
        redis_url: SecretUrl::for_tests("redis://127.0.0.1:6379"),
        redis_pool_size: 2,
        redis_timeout: CLUSTER_TIMEOUT,
        redis_key_prefix: String::new(),
        redis_cluster_nodes: Some(nodes),
        redis_min_replicas_ack: 0,
        redis_replica_ack_timeout: Duration::from_millis(500),
    })
}

impl Probe {
    pub async fn new(target: Target<'_>, database_url: &str) -> Result<Self, ChaosError> {
        let (redis, keys, shards) = match target {
            Target::Single(url) => {
                let client = redis::Client::open(url)?;
                let redis = RedisProbe::Single(ConnectionManager::new(client).await?);
                (redis, RedisKeys::new(String::new()), 1)
            }
            Target::Cluster { nodes, shards } => {
                let args = cluster_args(nodes)?;
                let redis = ClusterLink::connect(&args).await.ok_or_else(|| {
                    ChaosError::Setup("the probe cannot connect to the Redis Cluster".into())
                })?;
                let link = ClusterLink {
                    args,
                    state: tokio::sync::Mutex::new(LinkState {
                        redis: Some(redis),
                        next_build: Instant::now(),
                    }),
                };
                let redis = RedisProbe::Cluster(Arc::new(link));
                (redis, RedisKeys::cluster(String::new(), shards), shards)
            }
        };
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ASK)
            .connect(database_url)
            .await
            .map_err(ChaosError::Db)?;
        let streams: Vec<String> = (0..shards).map(|s| keys.stream(s)).collect();
        let dlqs = match &redis {
            RedisProbe::Single(_) => vec![keys.dlq_of(&streams[0])],
            RedisProbe::Cluster(_) => keys.dlqs(shards),
        };
        Ok(Probe {
            redis,
            pg,
            streams,
            dlqs,
        })
    }

    /// Runs `ask` on a connection within [`ASK`]; None when there is no
    /// connection, or it fails or takes longer (on a cluster the handle is
    /// then rebuilt).
    async fn ask<T, F, Fut>(&self, ask: F) -> Option<T>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        match &self.redis {
            RedisProbe::Single(manager) => {
                let conn = RedisConn::Managed(manager.clone());
                timeout(ASK, ask(conn)).await.ok()?.ok()
            }
            RedisProbe::Cluster(link) => {
                let answer = timeout(ASK, async {
                    let conn = link.conn().await?;
                    ask(conn).await.ok()
                })
                .await
                .ok()
                .flatten();
                if answer.is_none() {
                    link.failed().await;
                }
                answer
            }
        }
    }

    /// Entries in the dead-letter streams (all of them); None when one
    /// cannot be read.
    pub async fn dlq_len(&self) -> Option<u64> {
        self.ask(|mut conn| async move {
            let mut total = 0;
            for dlq in &self.dlqs {
                total += redis::cmd("XLEN")
                    .arg(dlq)
                    .query_async::<u64>(&mut conn)
                    .await?;
            }
            Ok(total)
        })
        .await
    }

    /// The group's backlog over every shard, as the worker's own gauges
    /// read it ([`worker::stream_stats::shard_stats`], whose lag is
    /// corrected for Redis's counters after a restart from the AOF); an
    /// unknown lag counts as one entry waiting, and with no group yet every
    /// entry is waiting. None when a shard's master does not answer (down,
    /// frozen, loading, failing over).
    pub async fn backlog(&self) -> Option<Backlog> {
        self.ask(|mut conn| async move {
            let mut total = Backlog {
                pending: 0,
                undelivered: 0,
            };
            for stream in &self.streams {
                let stats = stream_stats::shard_stats(&mut conn, stream, CONSUMER_GROUP).await?;
                total.pending += stats.pending;
                total.undelivered += match (&stats.last_delivered_id, stats.lag) {
                    (None, _) => stats.length,
                    (Some(_), Some(lag)) => lag,
                    (Some(_), None) => 1,
                };
            }
            Ok(total)
        })
        .await
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
