//! eventline's ingest gateway: `POST /v1/events`, `/v1/events/batch` and
//! `/v1/logs` (OTLP/HTTP) validate events and append them to Redis Streams;
//! a 202 (a 200 for OTLP) means the events are in Redis.
//!
//! - [`config`]: flags and environment variables;
//! - [`Context`]: what the parts below share about Redis (pool, keys, breaker);
//! - [`app`]: state, router, handlers;
//! - [`body`]: content types, size and time limits, gzip;
//! - [`batch`]: splitting a batch body into events;
//! - [`otlp`]: `POST /v1/logs`, OpenTelemetry log records as events;
//! - [`publish`]: XADD / MULTI pipelines over auto-reconnecting connections;
//! - [`backlog`]: stream length polling and the high-water mark;
//! - [`rate_limit`]: local token buckets reconciled through Redis;
//! - [`metrics`]: the `eventline_ingest_*` metrics;
//! - `fuzz_checks` (feature `fuzzing` only): the properties the fuzz targets
//!   check, replayed by tests.

pub mod app;
pub mod backlog;
pub mod batch;
pub mod body;
pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzz_checks;
pub mod group;
pub mod metrics;
pub mod otlp;
pub mod publish;
pub mod rate_limit;

use std::sync::Arc;

use eventline_shared::circuit_breaker::CircuitBreaker;
use eventline_shared::health::Health;
use eventline_shared::key_store::{KeyStore, KeyStoreError};
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::redis_pool::{Redis, RedisSetupError};
use eventline_shared::server::{self, ConnectionLimits};
use eventline_shared::shutdown;
use eventline_shared::stream_stats;
use prometheus::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::AppState;
use crate::backlog::Backlog;
use crate::config::{Config, ConfigError};
use crate::group::GroupWriter;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::rate_limit::{Rate, RateLimiter};

/// The name in `pg_stat_activity`, the metrics registry, logs and health.
pub const COMPONENT: &str = "ingest-gateway";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    #[error("cannot open the Redis publishing connections: {0}")]
    Publish(#[source] redis::RedisError),
    #[error(transparent)]
    Postgres(#[from] PgSetupError),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl StartError {
    /// The exit status: 64 (`EX_USAGE`) when the configuration is at
    /// fault (a bad value, a Redis that is not what it is said to be or does
    /// not answer), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => 64,
            StartError::Redis(e) if e.is_configuration() => 64,
            _ => 1,
        }
    }
}

/// What the gateway's parts share about Redis, built once by
/// [`Gateway::start`] (as the worker's `State` is): the publisher, the
/// backlog and rate-limit loops and `/health/detailed` take it instead of
/// each its own list of arguments.
pub struct Context {
    /// Pooled connections for the background reads (stream lengths,
    /// rate-limit sync, health); the XADDs have the publisher's own.
    pub redis: Redis,
    pub keys: RedisKeys,
    /// Ingest stream shards (`STREAM_SHARDS`).
    pub shards: u32,
    /// Opened by failing XADDs and failing length reads; every XADD asks it
    /// first, so a dead Redis costs requests nothing but a quick 503.
    pub breaker: CircuitBreaker,
    pub metrics: Arc<Metrics>,
    /// Every background loop stops when it fires.
    pub shutdown: CancellationToken,
}

/// A started gateway: its router and the background tasks behind it.
pub struct Gateway {
    pub router: axum::Router,
    pub metrics: Arc<metrics::Metrics>,
    pub tasks: TaskTracker,
}

impl Gateway {
    /// Connects to Redis (and PostgreSQL for keys), loads the keys, starts
    /// the background tasks (stream length, rate-limit sync, key reload).
    pub async fn start(
        config: &Config,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        config.check()?;
        let metrics = Arc::new(Metrics::new(&registry)?);
        let redis = Redis::connect(&config.redis).await?;
        warn_without_replicas(&redis, config.redis.redis_min_replicas_ack).await;
        let shards = config.stream.shards.count;
        let ctx = Arc::new(Context {
            keys: RedisKeys::for_deployment(
                config.redis.redis_key_prefix.clone(),
                shards,
                redis.is_cluster(),
            ),
            redis,
            shards,
            breaker: CircuitBreaker::new(
                "redis",
                config.stream.breaker_failures,
                config.stream.breaker_cooldown,
                Some(metrics.breaker_open.clone()),
            ),
            metrics: metrics.clone(),
            shutdown,
        });
        let publisher = Publisher::connect(
            ctx.clone(),
            &config.redis,
            config.stream.publish_connections,
        )
        .await
        .map_err(StartError::Publish)?;
        let tasks = TaskTracker::new();
        let (key_store, key_db) = start_keys(config, &tasks, &ctx.shutdown).await?;

        let backlog = Arc::new(Backlog::new(&config.stream));
        // Read the lengths once before serving, so backpressure holds from
        // the first request.
        if let Err(error) = backlog.refresh_once(&ctx).await {
            tracing::warn!(%error, "cannot read the stream length yet");
        }
        tasks.spawn(backlog.clone().run(ctx.clone()));

        let rl = &config.rate_limit;
        let rate_limiter = Arc::new(RateLimiter::new(
            Rate::new(rl.key_per_second, rl.key_burst),
            Rate::new(rl.ip_per_second, rl.ip_burst),
        ));
        tasks.spawn(rate_limiter.clone().run(ctx.clone(), rl.sync_interval));

        let publisher = Arc::new(publisher);
        let groups = GroupWriter::start(
            config.stream.group_writers,
            publisher.clone(),
            backlog.clone(),
            metrics.clone(),
        );
        let state = Arc::new(AppState {
            limits: config.limits.clone(),
            http: config.http.clone(),
            keys: key_store,
            rate_limiter,
            auth_failure_cost: rl.auth_failure_cost,
            publisher,
            groups,
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            in_flight: Semaphore::new(config.http.max_concurrent_requests),
        });
        let health = health(ctx, registry, key_db, backlog);
        Ok(Self {
            router: app::router(state, &health),
            metrics,
            tasks,
        })
    }
}

/// Says at start when `REDIS_MIN_REPLICAS_ACK` asks for more replicas than
/// some master has: its shards would answer every request 503 until they
/// catch up (replicas may be on their way, so this does not stop the start).
async fn warn_without_replicas(redis: &Redis, wanted: u32) {
    if wanted == 0 {
        return;
    }
    match redis.fewest_replicas().await {
        Ok(fewest) if fewest < wanted => tracing::warn!(
            fewest,
            wanted,
            "REDIS_MIN_REPLICAS_ACK is {wanted} but a master has {fewest} replicas connected: its requests will be answered 503"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot count the masters' replicas"),
    }
}

/// With `AUTH_REQUIRED` on, the key store (its reload running on `tasks`)
/// and the PostgreSQL pool it reads; with it off, neither.
async fn start_keys(
    config: &Config,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(Option<Arc<KeyStore>>, Option<PgPool>), StartError> {
    if !config.auth.auth_required {
        tracing::warn!("AUTH_REQUIRED=false: anyone who can reach this gateway can ingest");
        return Ok((None, None));
    }
    let db = pg_pool::connect(&config.database, COMPONENT).await?;
    let store = KeyStore::start(db.clone(), &config.auth, tasks, shutdown).await?;
    Ok((Some(store), Some(db)))
}

/// The health routes: Redis gates readiness, PostgreSQL (keys only) does
/// not. `/health/detailed` adds what an operator looks at first: besides
/// the gateway's own figures, each shard's length, pending entries and lag
/// for the workers' group, read when asked.
fn health(
    ctx: Arc<Context>,
    registry: Registry,
    key_db: Option<PgPool>,
    backlog: Arc<Backlog>,
) -> Health {
    let mut health =
        Health::new(COMPONENT, registry, ctx.shutdown.clone()).with_redis(ctx.redis.clone());
    if let Some(db) = key_db {
        health = health.with_optional_postgres(db);
    }
    health.with_details(Arc::new(move || {
        let mut body = serde_json::json!({
            "stream_lengths": backlog.lengths(),
            "stream_high_water": backlog.high_water(),
            "dead_letters": backlog.dead_letters(),
            "over_high_water": backlog.is_over(),
            "redis_breaker": ctx.breaker.state().as_str(),
        });
        let ctx = ctx.clone();
        Box::pin(async move {
            body["streams"] =
                stream_stats::shards_json(&ctx.redis, &ctx.keys, ctx.shards, CONSUMER_GROUP).await;
            body
        })
    }))
}

/// Runs the gateway on `listener` until `shutdown`, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let registry = eventline_shared::metrics::new_registry(COMPONENT);
    let gateway = Gateway::start(&config, registry, shutdown.clone()).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(component = COMPONENT, %addr, "listening");
    }
    let limits = ConnectionLimits {
        header_read_timeout: config.http.header_read_timeout,
        max_connections: config.http.max_connections,
        refused: Some(gateway.metrics.connections_refused.clone()),
    };
    server::serve(
        listener,
        gateway.router,
        limits,
        shutdown,
        config.listen.shutdown_grace,
    )
    .await;
    shutdown::drain(&gateway.tasks, config.listen.shutdown_grace).await;
    tracing::info!(component = COMPONENT, "stopped");
    Ok(())
}
