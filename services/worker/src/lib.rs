//! The eventline worker: moves events from the Redis streams into
//! PostgreSQL, every accepted event stored exactly once, even when workers
//! are killed at any moment (the contract's "worker — the delivery protocol").
//!
//! - [`config`]: flags and environment variables;
//! - [`consume`]: the read loop of one shard (XREADGROUP, claims, batching);
//! - [`batch`]: one batch through decode, dedup claim, insert, dead letters, XACK;
//! - [`dedup`]: the dedup claims, fields of time-bucket hashes;
//! - [`batch_insert`] and [`copy_binary`]: the insert and the rollup, in one transaction;
//! - [`dead_letter`]: writing to the dead-letter stream of the entry's shard;
//! - [`claim`]: XAUTOCLAIM of entries whose consumer died;
//! - [`trim`]: XTRIM MINID below what any group still needs;
//! - [`stream_stats`], [`stream_reply`]: reading stream state and replies;
//! - [`retry`]: backoff with jitter (the database circuit breaker is the shared one);
//! - [`metrics`]: the `eventline_worker_…` metrics;
//! - [`failpoint`]: crash points for the crash tests (feature `failpoints` only).

pub mod batch;
pub mod batch_insert;
pub mod claim;
pub mod config;
pub mod consume;
pub mod copy_binary;
pub mod dead_letter;
pub mod dedup;
pub mod failpoint;
pub mod metrics;
pub mod retry;
pub mod trim;

/// Stream replies and the group's view of the streams, shared with the
/// gateway's `/health/detailed` and the load tests.
pub use eventline_shared::{stream_reply, stream_stats};

use std::sync::Arc;

use chrono::{Days, Utc};
use eventline_shared::health::{DetailsFn, Health};
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::redis_pool::{Redis, RedisConn, RedisSetupError};
use eventline_shared::{schema, server, shutdown};
use prometheus::Registry;
use serde_json::json;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, WorkerArgs};
use crate::metrics::Metrics;
use eventline_shared::circuit_breaker::CircuitBreaker;

/// The name in `pg_stat_activity`, the metrics registry, logs and health.
pub const COMPONENT: &str = "worker";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    #[error(transparent)]
    Postgres(#[from] PgSetupError),
    #[error("cannot create the daily partitions: {0}")]
    Partitions(#[source] sqlx::Error),
    #[error("cannot create consumer group on {stream}: {source}")]
    Group {
        stream: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl StartError {
    /// The exit status: 64 (`EX_USAGE`) when the configuration is at
    /// fault (a bad value, a Redis that is not what it is said to be or does
    /// not answer), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Redis(e) if e.is_configuration() => 64,
            _ => 1,
        }
    }
}

/// Everything a batch needs, shared by the worker's tasks.
pub struct State {
    pub config: WorkerArgs,
    /// This worker's consumer name in the group.
    pub consumer: String,
    pub keys: RedisKeys,
    /// Ordinary commands (claims, acks, dead letters).
    pub redis: Redis,
    /// Where each read loop takes a connection of its own for `XREADGROUP …
    /// BLOCK`, whose answers take up to [`consume::MAX_BLOCK`] longer than
    /// ordinary ones.
    pub redis_blocking: Redis,
    pub pg: PgPool,
    pub metrics: Metrics,
    pub breaker: CircuitBreaker,
    /// Cancelled when the worker stops: the retry loops give up then and
    /// leave their entries pending for another worker (nothing is acked).
    pub stopping: CancellationToken,
    /// Events per entry lately read: what a read's `COUNT` asks for.
    pub entry_size: eventline_shared::stream_codec::EventsPerEntry,
}

impl State {
    pub async fn redis_conn(&self) -> Result<RedisConn, redis::RedisError> {
        self.redis.get().await
    }
}

/// A connected worker, ready to [`run`].
pub struct Worker {
    state: Arc<State>,
    registry: Registry,
    grace: std::time::Duration,
}

impl Worker {
    /// Connects to Redis and PostgreSQL (failing fast when either is
    /// unreachable), creates today's and the next two days' partitions and
    /// the consumer group on every shard.
    pub async fn start(config: Config, registry: Registry) -> Result<Self, StartError> {
        let metrics = Metrics::register(&registry)?;
        let redis = Redis::connect(&config.redis).await?;
        let blocking_timeout = config.redis.redis_timeout + consume::MAX_BLOCK;
        let mut blocking_args = config.redis.clone();
        blocking_args.redis_pool_size = config.worker.shards.count.max(1);
        let redis_blocking =
            Redis::connect_with_response_timeout(&blocking_args, blocking_timeout).await?;
        let pg = pg_pool::connect(&config.database, COMPONENT).await?;
        let today = Utc::now().date_naive();
        let last = today.checked_add_days(Days::new(2)).unwrap_or(today);
        let created = schema::ensure_partitions(&pg, today, last)
            .await
            .map_err(StartError::Partitions)?;
        if !created.is_empty() {
            tracing::info!(?created, "created daily partitions");
        }
        let breaker = CircuitBreaker::new(
            "postgres",
            config.worker.breaker_failures,
            config.worker.breaker_open,
            Some(metrics.breaker_open.clone()),
        );
        let state = Arc::new(State {
            consumer: config.worker.consumer_name(),
            keys: RedisKeys::for_deployment(
                config.redis.redis_key_prefix.clone(),
                config.worker.shards.count,
                redis.is_cluster(),
            ),
            config: config.worker,
            redis,
            redis_blocking,
            pg,
            metrics,
            breaker,
            stopping: CancellationToken::new(),
            entry_size: Default::default(),
        });
        for shard in 0..state.config.shards.count {
            let stream = state.keys.stream(shard);
            create_group(&state, &stream)
                .await
                .map_err(|source| StartError::Group { stream, source })?;
        }
        tracing::info!(
            consumer = state.consumer,
            shards = state.config.shards.count,
            "worker connected"
        );
        Ok(Worker {
            state,
            registry,
            grace: config.listen.shutdown_grace,
        })
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }
}

/// `XGROUP CREATE <stream> writers 0 MKSTREAM`, accepting an existing group.
/// From `0`, so entries written before any worker started are read too.
pub async fn create_group(state: &State, stream: &str) -> Result<(), redis::RedisError> {
    let mut conn = state.redis_conn().await?;
    let result: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    match result {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Runs the worker until `shutdown`: serves the health routes on
/// `listener`, reads every shard, trims on a timer. On shutdown it stops
/// reading, finishes and acks the batches in hand (at most the grace period),
/// and returns.
pub async fn run(
    worker: Worker,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Worker {
        state,
        registry,
        grace,
    } = worker;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(component = COMPONENT, %addr, "listening");
    }
    let health = Health::new(COMPONENT, registry, shutdown.clone())
        .with_redis(state.redis.clone())
        .with_postgres(state.pg.clone())
        .with_details(details(state.clone()));
    let server = tokio::spawn(server::serve(
        listener,
        health
            .router()
            .fallback(eventline_shared::http_error::no_route)
            .method_not_allowed_fallback(eventline_shared::http_error::method_not_allowed),
        server::ConnectionLimits::default(),
        shutdown.clone(),
        grace,
    ));

    let tasks = TaskTracker::new();
    for shard in 0..state.config.shards.count {
        tasks.spawn(consume::run_shard(
            state.clone(),
            shard,
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    tasks.spawn(trim::run(state.clone(), shutdown.clone()));

    shutdown.cancelled().await;
    state.stopping.cancel();
    tracing::info!("shutting down: finishing the batches in hand");
    if shutdown::drain(&tasks, grace).await {
        tracing::info!("all batches finished");
    }
    server.await.map_err(std::io::Error::other)?;
    tracing::info!(component = COMPONENT, "stopped");
    Ok(())
}

/// The worker's part of `/health/detailed`: each shard's length, pending
/// entries, lag, and the breaker state.
fn details(state: Arc<State>) -> DetailsFn {
    Arc::new(move || {
        let state = state.clone();
        Box::pin(async move {
            let shards = stream_stats::shards_json(
                &state.redis,
                &state.keys,
                state.config.shards.count,
                CONSUMER_GROUP,
            )
            .await;
            json!({
                "consumer": state.consumer,
                "group": CONSUMER_GROUP,
                "circuit_breaker": state.breaker.state().as_str(),
                "streams": shards,
            })
        })
    })
}
