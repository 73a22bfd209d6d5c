//! The query-api's state, its route table and the middleware every route
//! goes through: request id, metrics by matched route, and the scope check.
//!
//! The route table ([`routes`]) is the one list the router is built from;
//! the OpenAPI test compares it with `/openapi.json`, so a route cannot be
//! served without being documented, or documented without being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use eventline_shared::api_key::{Authenticated, Scope};
use eventline_shared::config::RedisArgs;
use eventline_shared::health::Health;
use eventline_shared::http_error;
use eventline_shared::key_store::KeyStore;
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::{request_id, security_headers};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::QueryArgs;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::stats::StatsCache;
use crate::{buckets, console, dlq, events, export, openapi, pipeline, session, stats, tail};

/// Everything a request needs, shared by all of them.
pub struct AppState {
    pub pg: PgPool,
    /// Ordinary Redis calls (DLQ reads and replays, stream lengths).
    pub redis: eventline_shared::redis_pool::Redis,
    /// For tails, which each open a connection of their own: a blocking
    /// `XREAD` would stall every other caller of a shared connection.
    pub redis_args: RedisArgs,
    pub keys: RedisKeys,
    pub shards: u32,
    /// `None` when `AUTH_REQUIRED=false`.
    pub key_store: Option<Arc<KeyStore>>,
    /// The console's sessions and settings.
    pub console: crate::console::ConsoleState,
    pub query: QueryArgs,
    pub metrics: Arc<Metrics>,
    pub stats_cache: StatsCache,
    /// One permit per open tail (`MAX_TAILS`).
    pub tails: Arc<Semaphore>,
    /// Open tails per API key (`MAX_TAILS_PER_KEY`); a key with none has no
    /// entry.
    pub tails_per_key: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, u32>>,
    /// Tail tasks, awaited at shutdown.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The deadline of one database call: a little over the statement
    /// timeout, so PostgreSQL's own cancel normally comes first.
    pub fn db_timeout(&self) -> Duration {
        self.query.query_timeout + Duration::from_millis(250)
    }

    /// Times a database call under [`Self::db_timeout`].
    pub async fn db<T>(
        &self,
        query: &'static str,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = crate::error::db_call(self.db_timeout(), call).await;
        self.metrics
            .db_duration
            .with_label_values(&[query])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed (health, the API description).
    Open,
    /// A key with this scope (`admin` keys may also query).
    Scoped(Scope),
}

/// One row of the route table.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<Shared>,
}

/// Every route of the query-api except the shared health routes.
pub fn routes() -> Vec<ApiRoute> {
    use Access::{Open, Scoped};
    let route = |method, path, access, handler| ApiRoute {
        method,
        path,
        access,
        handler,
    };
    vec![
        route(
            Method::GET,
            "/v1/events",
            Scoped(Scope::Query),
            get(events::list),
        ),
        route(
            Method::GET,
            "/v1/events/export",
            Scoped(Scope::Query),
            get(export::export),
        ),
        route(
            Method::GET,
            "/v1/events/{id}",
            Scoped(Scope::Query),
            get(events::one),
        ),
        route(
            Method::GET,
            "/v1/stats",
            Scoped(Scope::Query),
            get(stats::stats),
        ),
        route(
            Method::GET,
            "/v1/stats/histogram",
            Scoped(Scope::Query),
            get(buckets::histogram),
        ),
        route(
            Method::GET,
            "/v1/pipeline",
            Scoped(Scope::Query),
            get(pipeline::pipeline),
        ),
        route(
            Method::GET,
            "/v1/services",
            Scoped(Scope::Query),
            get(stats::services),
        ),
        route(
            Method::GET,
            "/v1/tail",
            Scoped(Scope::Query),
            get(tail::tail),
        ),
        route(Method::GET, "/v1/dlq", Scoped(Scope::Admin), get(dlq::list)),
        route(
            Method::POST,
            "/v1/dlq/replay",
            Scoped(Scope::Admin),
            post(dlq::replay),
        ),
        // Sign-in checks the key itself: it is the one route that takes a
        // key only from its header, never from the cookie it hands out.
        route(Method::POST, "/v1/session", Open, post(session::sign_in)),
        route(Method::GET, "/v1/session", Open, get(session::current)),
        route(
            Method::DELETE,
            "/v1/session",
            Open,
            delete(session::sign_out),
        ),
        route(Method::GET, "/health/business", Open, get(stats::business)),
        route(Method::GET, "/openapi.json", Open, get(openapi::serve)),
    ]
}

/// The full router: the route table, the shared health and metrics routes,
/// a JSON 404 for unknown paths and a JSON 405 for unserved methods.
pub fn router(state: Shared, health: &Health) -> Router {
    let mut api = Router::new();
    for ApiRoute {
        path,
        access,
        handler,
        ..
    } in routes()
    {
        let handler = match access {
            Access::Open => handler,
            Access::Scoped(scope) => handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), scope),
                authorize,
            )),
        };
        api = api.route(path, handler);
    }
    // The console's pages and files: not API routes (not in the table, not
    // in the OpenAPI document), but counted like them.
    console::routes(api)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
        .merge(health.router())
        .fallback(http_error::no_route)
        .method_not_allowed_fallback(http_error::method_not_allowed)
        .layer(middleware::from_fn(request_id::layer))
        .layer(middleware::from_fn(security_headers::layer))
}

/// Checks the presented key for the route's scope; an `admin` key may also
/// use the `query` routes.
async fn authorize(
    State((state, scope)): State<(Shared, Scope)>,
    mut req: Request,
    next: Next,
) -> Response {
    match check_key(&state, &req, scope) {
        Ok(identity) => {
            // Handlers that count per key (the tail) read it from here.
            if let Some(identity) = identity {
                req.extensions_mut().insert(identity);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The caller's key (from its header, or the console's session cookie)
/// when it may use `scope`; `None` when keys are off.
fn check_key(
    state: &AppState,
    req: &Request,
    scope: Scope,
) -> Result<Option<Arc<Authenticated>>, ApiError> {
    let Some((identity, _)) = session::caller(state, req.headers(), req.method())? else {
        return Ok(None);
    };
    if session::allows(&identity, scope) {
        Ok(Some(identity))
    } else {
        Err(ApiError::MissingScope(scope.as_str()))
    }
}

/// Counts and times requests by route and status.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = eventline_shared::metrics::route_label(&req);
    let started = Instant::now();
    let response = next.run(req).await;
    eventline_shared::metrics::observe_request(
        &state.metrics.requests,
        &state.metrics.request_duration,
        &route,
        response.status(),
        started,
    );
    response
}
