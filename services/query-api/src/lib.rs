//! eventline's query-api: events by service and time with keyset pages,
//! stats from the hourly rollup, dead letters and their replay, a live tail.
//! It only reads PostgreSQL; it writes to Redis only to replay dead letters.
//!
//! - [`config`]: flags and environment variables;
//! - [`app`]: state, the route table, auth and metrics middleware;
//! - [`params`]: query strings to checked requests (every 400 names its field);
//! - [`cursor`]: the opaque keyset cursor;
//! - [`events`]: `GET /v1/events`, `GET /v1/events/{id}`;
//! - [`export`]: `GET /v1/events/export`, a search streamed as NDJSON or CSV;
//! - [`buckets`]: `GET /v1/stats/histogram`, a search's counts in time buckets;
//! - [`pipeline`]: `GET /v1/pipeline`, stream lag, backpressure, dead letters;
//! - [`console`]: the browser console's files, compiled in and served at `/`;
//! - [`stats`]: `/v1/stats`, `/v1/services`, `/health/business`, their cache;
//! - [`dlq`]: `GET /v1/dlq`, `POST /v1/dlq/replay`;
//! - [`tail`]: `GET /v1/tail` (Server-Sent Events);
//! - [`session`]: the console's sign-in, a stateless session cookie;
//! - [`openapi`]: `GET /openapi.json` for the gateway's and our endpoints;
//! - [`error`]: the one error enum and its JSON answer;
//! - [`metrics`]: the `eventline_query_*` metrics.
#![recursion_limit = "512"]

pub mod app;
pub mod buckets;
pub mod config;
pub mod console;
pub mod cursor;
pub mod dlq;
pub mod error;
pub mod events;
pub mod export;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod pipeline;
pub mod session;
pub mod stats;
pub mod tail;

use std::sync::Arc;

use eventline_shared::health::Health;
use eventline_shared::key_store::{KeyStore, KeyStoreError};
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::redis_pool::{Redis, RedisSetupError};
use eventline_shared::{server, shutdown};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::AppState;
use crate::config::{Config, ConfigError};
use crate::stats::StatsCache;

/// The name in `pg_stat_activity`, the metrics registry, logs and health.
pub const COMPONENT: &str = "query-api";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
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

/// A started query-api: its router and the background tasks behind it.
pub struct QueryApi {
    pub router: axum::Router,
    pub tasks: TaskTracker,
}

impl QueryApi {
    /// Connects to PostgreSQL and Redis (failing fast when either is
    /// unreachable), loads the API keys and starts their reloading.
    pub async fn start(
        config: &Config,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        config.check()?;
        let metrics = Arc::new(metrics::Metrics::new(&registry)?);
        // No statement may outlive the query timeout: the server cancels it.
        let mut database = config.database.clone();
        let timeout = config.query.query_timeout;
        if database.db_statement_timeout.is_zero() || database.db_statement_timeout > timeout {
            database.db_statement_timeout = timeout;
        }
        let pg = pg_pool::connect(&database, COMPONENT).await?;
        let redis = Redis::connect(&config.redis).await?;
        let tasks = TaskTracker::new();
        let key_store = if config.auth.auth_required {
            Some(KeyStore::start(pg.clone(), &config.auth, &tasks, &shutdown).await?)
        } else {
            tracing::warn!(
                "AUTH_REQUIRED=false: anyone who can reach this query-api can read every event"
            );
            None
        };
        let state = Arc::new(AppState {
            pg: pg.clone(),
            redis: redis.clone(),
            redis_args: config.redis.clone(),
            keys: RedisKeys::for_deployment(
                config.redis.redis_key_prefix.clone(),
                config.shards.count,
                redis.is_cluster(),
            ),
            shards: config.shards.count,
            key_store,
            console: console::ConsoleState::new(config),
            query: config.query.clone(),
            metrics,
            stats_cache: StatsCache::new(config.query.stats_cache),
            tails: Arc::new(Semaphore::new(config.query.max_tails)),
            tails_per_key: std::sync::Mutex::default(),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        tasks.spawn(stats::watch_retention(
            state.clone(),
            config.query.retention_watch,
            shutdown.clone(),
        ));
        let details_state = state.clone();
        let health = Health::new(COMPONENT, registry, shutdown)
            .with_redis(redis)
            .with_postgres(pg)
            .with_details(Arc::new(move || {
                let state = details_state.clone();
                Box::pin(async move {
                    let dead_letters = dlq::length(&state).await.ok();
                    serde_json::json!({
                        "dead_letters": dead_letters,
                        "tails_open": state.metrics.tails_open.get(),
                        "tails_max": state.query.max_tails,
                        "db_pool": { "size": state.pg.size(), "idle": state.pg.num_idle() },
                    })
                })
            }));
        Ok(Self {
            router: app::router(state, &health),
            tasks,
        })
    }
}

/// Runs the query-api on `listener` until `shutdown`, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let registry = eventline_shared::metrics::new_registry(COMPONENT);
    let api = QueryApi::start(&config, registry, shutdown.clone()).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(component = COMPONENT, %addr, "listening");
    }
    server::serve(
        listener,
        api.router,
        server::ConnectionLimits::default(),
        shutdown,
        config.listen.shutdown_grace,
    )
    .await;
    shutdown::drain(&api.tasks, config.listen.shutdown_grace).await;
    tracing::info!(component = COMPONENT, "stopped");
    Ok(())
}
