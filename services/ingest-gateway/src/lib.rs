//! eventline's ingest gateway: `POST /v1/events`, `/v1/events/batch` and
//! `/v1/logs` (OTLP/HTTP) validate events and append them to Redis Streams;
//! a 202 (a 200 for OTLP) means the events are in Redis.
//!
//! - [`config`]: flags and environment variables;
//! - [`app`]: state, router, handlers;
//! - [`body`]: content types, size and time limits, gzip;
//! - [`batch`]: splitting a batch body into events;
//! - [`otlp`]: `POST /v1/logs`, OpenTelemetry log records as events;
//! - [`publish`]: XADD / MULTI pipelines over auto-reconnecting connections;
//! - [`backlog`]: stream length polling and the high-water mark;
//! - [`rate_limit`]: local token buckets reconciled through Redis;
//! - [`metrics`]: the `eventline_ingest_*` metrics;
//! - [`fuzz_checks`]: the properties the fuzz targets check, replayed by tests.

pub mod app;
pub mod backlog;
pub mod batch;
pub mod body;
pub mod config;
pub mod error;
pub mod fuzz_checks;
pub mod metrics;
pub mod otlp;
pub mod publish;
pub mod rate_limit;

use std::sync::Arc;

use eventline_shared::health::Health;
use eventline_shared::key_store::KeyStore;
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::redis_pool::{self, RedisSetupError};
use eventline_shared::server::{self, ConnectionLimits};
use eventline_shared::shutdown;
use eventline_shared::stream_stats;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::AppState;
use crate::backlog::Backlog;
use crate::config::{Config, ConfigError};
use crate::publish::Publisher;
use crate::rate_limit::{Rate, RateLimiter};
use eventline_shared::circuit_breaker::CircuitBreaker;

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
    #[error("cannot load API keys from PostgreSQL: {0}")]
    Keys(#[source] sqlx::Error),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
        let metrics = Arc::new(metrics::Metrics::new(&registry)?);
        let pool = redis_pool::connect(&config.redis).await?;
        let keys = RedisKeys::new(config.redis.redis_key_prefix.clone());
        let breaker = Arc::new(CircuitBreaker::new(
            "redis",
            config.stream.breaker_failures,
            config.stream.breaker_cooldown,
            Some(metrics.breaker_open.clone()),
        ));
        let publisher = Publisher::connect(
            &config.redis,
            config.stream.publish_connections,
            config.stream.stream_shards,
            breaker.clone(),
            metrics.clone(),
        )
        .await
        .map_err(StartError::Publish)?;

        let tasks = TaskTracker::new();
        let (key_store, key_db) = match (&config.auth.auth_required, &config.auth.key_pepper) {
            (true, Some(pepper)) => {
                let db = pg_pool::connect(&config.database, "ingest-gateway").await?;
                let store = Arc::new(
                    KeyStore::load(db.clone(), pepper.clone())
                        .await
                        .map_err(StartError::Keys)?,
                );
                tasks.spawn(
                    store
                        .clone()
                        .run(config.auth.key_cache_ttl, shutdown.clone()),
                );
                (Some(store), Some(db))
            }
            _ => {
                tracing::warn!("AUTH_REQUIRED=false: anyone who can reach this gateway can ingest");
                (None, None)
            }
        };

        let backlog = Arc::new(Backlog::new(
            config.stream.stream_shards,
            config.stream.stream_high_water,
            config.stream.stream_length_refresh,
        ));
        // Read the lengths once before serving, so backpressure holds from
        // the first request.
        if let Err(error) = backlog.refresh_once(&pool, &keys).await {
            tracing::warn!(%error, "cannot read the stream length yet");
        }
        tasks.spawn(backlog.clone().run(
            pool.clone(),
            keys.clone(),
            breaker.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));

        let rl = &config.rate_limit;
        let rate_limiter = Arc::new(RateLimiter::new(
            Rate::new(rl.key_per_second, rl.key_burst),
            Rate::new(rl.ip_per_second, rl.ip_burst),
        ));
        let details_keys = keys.clone();
        tasks.spawn(rate_limiter.clone().run(
            pool.clone(),
            keys,
            rl.sync_interval,
            shutdown.clone(),
        ));

        let state = Arc::new(AppState {
            limits: config.limits.clone(),
            http: config.http.clone(),
            keys: key_store,
            rate_limiter,
            auth_failure_cost: rl.auth_failure_cost,
            publisher: Arc::new(publisher),
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            in_flight: Semaphore::new(config.http.max_concurrent_requests),
        });
        let details_backlog = backlog;
        let details_breaker = breaker;
        let details_pool = pool.clone();
        let shards = config.stream.stream_shards;
        let mut health = Health::new("ingest-gateway", registry, shutdown).with_redis(pool);
        if let Some(db) = key_db {
            health = health.with_optional_postgres(db);
        }
        // What an operator looks at first: besides the gateway's own
        // figures, each shard's length, pending entries and lag for the
        // workers' group, read when asked.
        let health = health.with_details(Arc::new(move || {
            let mut body = serde_json::json!({
                "stream_lengths": details_backlog.lengths(),
                "stream_high_water": details_backlog.high_water(),
                "dead_letters": details_backlog.dead_letters(),
                "over_high_water": details_backlog.is_over(),
                "redis_breaker": details_breaker.state().as_str(),
            });
            let pool = details_pool.clone();
            let keys = details_keys.clone();
            Box::pin(async move {
                body["streams"] =
                    stream_stats::shards_json(&pool, &keys, shards, CONSUMER_GROUP).await;
                body
            })
        }));
        Ok(Self {
            router: app::router(state, &health),
            metrics,
            tasks,
        })
    }
}

/// Runs the gateway on `listener` until `shutdown`, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let registry = eventline_shared::metrics::new_registry("ingest-gateway");
    let gateway = Gateway::start(&config, registry, shutdown.clone()).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ingest gateway listening");
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
    tracing::info!("ingest gateway stopped");
    Ok(())
}
