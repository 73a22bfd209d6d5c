//! The operational routes every service mounts: `/health/live`,
//! `/health/ready`, `/health/detailed`, `/health/database` (when it uses
//! PostgreSQL) and `/metrics`.
//!
//! Ready means: not shutting down, and every dependency answered within the
//! check timeout. It turns 503 the moment shutdown starts, so load balancers
//! stop sending traffic before the process stops taking it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A service's own facts for `/health/detailed` (stream length, breaker
/// state…), merged into the document under `"service"`.
pub type DetailsFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>;

#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    component: &'static str,
    registry: Registry,
    shutdown: CancellationToken,
    redis: Option<crate::redis_pool::Redis>,
    postgres: Option<PgPool>,
    /// Whether `/health/ready` waits for PostgreSQL (see
    /// [`Health::with_optional_postgres`]).
    postgres_gates_readiness: bool,
    check_timeout: Duration,
    details: Option<DetailsFn>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DependencyStatus {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    pub fn new(component: &'static str, registry: Registry, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                component,
                registry,
                shutdown,
                redis: None,
                postgres: None,
                postgres_gates_readiness: false,
                check_timeout: Duration::from_secs(2),
                details: None,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                component: shared.component,
                registry: shared.registry.clone(),
                shutdown: shared.shutdown.clone(),
                redis: shared.redis.clone(),
                postgres: shared.postgres.clone(),
                postgres_gates_readiness: shared.postgres_gates_readiness,
                check_timeout: shared.check_timeout,
                details: shared.details.clone(),
            },
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn with_redis(self, redis: crate::redis_pool::Redis) -> Self {
        self.with(|i| i.redis = Some(redis))
    }

    pub fn with_postgres(self, pool: PgPool) -> Self {
        self.with(|i| {
            i.postgres = Some(pool);
            i.postgres_gates_readiness = true;
        })
    }

    /// PostgreSQL for a service that keeps working without it (the
    /// gateway: its API keys are cached, its events go to Redis): checked
    /// and shown by `/health/detailed` and `/health/database`, but
    /// `/health/ready` does not wait for it, so a database outage does not
    /// take every gateway out of its load balancer.
    pub fn with_optional_postgres(self, pool: PgPool) -> Self {
        self.with(|i| {
            i.postgres = Some(pool);
            i.postgres_gates_readiness = false;
        })
    }

    pub fn with_check_timeout(self, timeout: Duration) -> Self {
        self.with(|i| i.check_timeout = timeout)
    }

    pub fn with_details(self, details: DetailsFn) -> Self {
        self.with(|i| i.details = Some(details))
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Checks every dependency concurrently.
    pub async fn check(&self) -> Vec<DependencyStatus> {
        let redis = async {
            match &self.inner.redis {
                Some(redis) => Some(self.timed("redis", redis.ping()).await),
                None => None,
            }
        };
        let postgres = async {
            match &self.inner.postgres {
                Some(pool) => Some(self.timed("postgres", ping_postgres(pool)).await),
                None => None,
            }
        };
        let (redis, postgres) = tokio::join!(redis, postgres);
        redis.into_iter().chain(postgres).collect()
    }

    async fn timed(
        &self,
        name: &'static str,
        check: impl Future<Output = Result<(), String>>,
    ) -> DependencyStatus {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.inner.check_timeout, check).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.inner.check_timeout.as_millis()
            )),
        };
        DependencyStatus {
            name,
            ok: result.is_ok(),
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            error: result.err(),
        }
    }

    /// The routes, to merge into the service's router (or serve alone, as
    /// the worker does).
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/health/detailed", get(detailed))
            .route("/metrics", get(metrics));
        if self.inner.postgres.is_some() {
            router = router.route("/health/database", get(database));
        }
        router.with_state(self.clone())
    }
}

async fn ping_postgres(pool: &PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn live(State(health): State<Health>) -> Response {
    Json200(json!({ "status": "live", "component": health.inner.component })).into_response()
}

async fn ready(State(health): State<Health>) -> Response {
    if health.inner.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    let checks = health.check().await;
    let ok = checks
        .iter()
        .all(|c| c.ok || (c.name == "postgres" && !health.inner.postgres_gates_readiness));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": checks,
    });
    (status, axum::Json(body)).into_response()
}

async fn detailed(State(health): State<Health>) -> Response {
    let checks = health.check().await;
    let service = match &health.inner.details {
        Some(details) => details().await,
        None => Value::Null,
    };
    let ok = checks.iter().all(|c| c.ok) && !health.inner.shutdown.is_cancelled();
    // On a cluster, each master's own answer.
    let masters = match &health.inner.redis {
        Some(redis) if redis.is_cluster() => match redis.masters().await {
            Ok(masters) => json!(masters),
            Err(error) => json!({ "error": error }),
        },
        _ => Value::Null,
    };
    Json200(json!({
        "redis_masters": masters,
        "status": if ok { "ok" } else { "degraded" },
        "component": health.inner.component,
        "version": env!("CARGO_PKG_VERSION"),
        "shutting_down": health.inner.shutdown.is_cancelled(),
        "dependencies": checks,
        "service": service,
    }))
    .into_response()
}

async fn database(State(health): State<Health>) -> Response {
    let Some(pool) = &health.inner.postgres else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let status = health.timed("postgres", ping_postgres(pool)).await;
    let code = if status.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status.ok { "ok" } else { "unavailable" },
        "database": status,
        "pool": { "size": pool.size(), "idle": pool.num_idle() },
    });
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(health): State<Health>) -> Response {
    match crate::metrics::encode(&health.inner.registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

struct Json200(Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self.0)).into_response()
    }
}
