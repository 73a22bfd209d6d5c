//! The gateway's state, router and handlers: admit (rate limit by address,
//! authenticate, backpressure), read the body, validate, enrich, XADD, and
//! only then answer 202.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use chrono::Utc;
use eventline_shared::ValidEvent;
use eventline_shared::api_key::{Authenticated, Scope};
use eventline_shared::health::Health;
use eventline_shared::http_error;
use eventline_shared::key_store::{KeyStore, presented_key};
use eventline_shared::redis_keys::shard_of;
use eventline_shared::request_id::{self, RequestId};
use eventline_shared::stream_codec;
use eventline_shared::validate::{self, EventLimits};
use serde::Serialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::batch;
use crate::body;
use crate::config::HttpArgs;
use crate::error::{ApiError, Rejected};
use crate::group::{GroupWriter, Written};
use crate::metrics::Metrics;
use crate::otlp;
use crate::publish::{Entry as StreamEntry, PublishError, Publisher};
use crate::rate_limit::{RateLimiter, Subject};

/// Everything a request needs, shared by all of them.
pub struct AppState {
    pub limits: EventLimits,
    pub http: HttpArgs,
    /// `None` when `AUTH_REQUIRED=false`.
    pub keys: Option<Arc<KeyStore>>,
    pub rate_limiter: Arc<RateLimiter>,
    pub auth_failure_cost: u64,
    pub publisher: Arc<Publisher>,
    /// Single-event requests' writes, grouped (`group`); `None`: each its own.
    pub groups: Option<GroupWriter>,
    pub backlog: Arc<Backlog>,
    pub metrics: Arc<Metrics>,
    /// Caps requests in flight; beyond it requests are shed with 503.
    pub in_flight: Semaphore,
}

type Shared = Arc<AppState>;

/// The full router: ingest routes, `/health/buffer`, the shared health
/// and metrics routes, and JSON 404 and 405 answers for everything else.
pub fn router(state: Shared, health: &Health) -> Router {
    let ingest = Router::new()
        .route("/v1/events", post(ingest_one))
        .route("/events", post(ingest_one))
        .route("/v1/events/batch", post(ingest_batch))
        .route("/v1/logs", post(ingest_otlp))
        .route("/health/buffer", get(buffer))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state);
    ingest
        .merge(health.router())
        .fallback(http_error::no_route)
        .method_not_allowed_fallback(http_error::method_not_allowed)
        .layer(middleware::from_fn(request_id::layer))
        .layer(middleware::from_fn(
            eventline_shared::security_headers::layer,
        ))
}

/// Counts and times requests by route and status, and sheds load beyond
/// `MAX_CONCURRENT_REQUESTS`.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = eventline_shared::metrics::route_label(&req);
    let started = Instant::now();
    let response = match state.in_flight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::Overloaded.into_response(),
    };
    eventline_shared::metrics::observe_request(
        &state.metrics.requests,
        &state.metrics.request_duration,
        &route,
        response.status(),
        started,
    );
    response
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    ids: Vec<Uuid>,
    /// Present on the batch endpoint only.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<Vec<Rejected>>,
}

impl AppState {
    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        if self.http.trust_forwarded_for {
            let last_hop = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|hop| hop.trim().parse().ok());
            if let Some(ip) = last_hop {
                return ip;
            }
        }
        peer.ip()
    }

    /// Everything decided before the body is read: the address's rate
    /// limit, the key, the scope, backpressure.
    fn admit(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Option<Arc<Authenticated>>, ApiError> {
        let ip = Subject::Ip(self.client_ip(headers, peer));
        self.limit(ip, 1)?;
        let identity = match &self.keys {
            None => None,
            Some(store) => {
                let Some(presented) = presented_key(headers) else {
                    return Err(self.auth_failed(ip, "missing", ApiError::MissingKey));
                };
                let Some(identity) = store.authenticate(presented) else {
                    return Err(self.auth_failed(ip, "invalid", ApiError::UnknownKey));
                };
                if !identity.scopes.contains(Scope::Ingest) {
                    self.metrics
                        .auth_failures
                        .with_label_values(&["scope"])
                        .inc();
                    return Err(ApiError::MissingScope("ingest"));
                }
                Some(identity)
            }
        };
        if self.backlog.is_over() {
            self.metrics.backpressured.inc();
            return Err(ApiError::Backpressure {
                retry_after: self.backlog.retry_after(),
            });
        }
        Ok(identity)
    }

    fn auth_failed(&self, ip: Subject, reason: &'static str, error: ApiError) -> ApiError {
        self.metrics
            .auth_failures
            .with_label_values(&[reason])
            .inc();
        self.rate_limiter.charge(ip, self.auth_failure_cost);
        error
    }

    fn limit(&self, subject: Subject, cost: u64) -> Result<(), ApiError> {
        self.rate_limiter
            .try_acquire(subject, cost)
            .map_err(|retry_after| {
                self.metrics
                    .rate_limited
                    .with_label_values(&[subject.scope()])
                    .inc();
                ApiError::RateLimited {
                    scope: subject.scope(),
                    retry_after,
                }
            })
    }

    fn limit_key(
        &self,
        identity: Option<&Arc<Authenticated>>,
        events: usize,
    ) -> Result<(), ApiError> {
        match identity {
            Some(id) => self.limit(Subject::Key(id.key_id), events as u64),
            None => Ok(()),
        }
    }

    fn reject(&self, code: &'static str) {
        self.metrics
            .events_rejected
            .with_label_values(&[code])
            .inc();
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
        body::read(
            headers,
            body,
            self.http.max_body_bytes,
            self.http.body_read_timeout,
        )
        .await
    }

    fn encode_failed(error: eventline_shared::stream_codec::EncodeError) -> ApiError {
        tracing::error!(%error, "cannot encode an event");
        ApiError::Internal
    }

    /// Charges the key for the request's events, appends them, counts them.
    async fn send(
        &self,
        identity: Option<&Arc<Authenticated>>,
        entry: StreamEntry,
    ) -> Result<(), ApiError> {
        let events = entry.len();
        self.limit_key(identity, events as usize)?;
        self.publish(entry).await?;
        self.backlog.record_entry(events);
        self.metrics.events_accepted.inc_by(u64::from(events));
        Ok(())
    }

    async fn publish(&self, entry: StreamEntry) -> Result<(), ApiError> {
        self.publish_result(self.publisher.publish(entry).await.map_err(Arc::new))
    }

    /// The answer to a write's outcome (the request's own, or its group's).
    fn publish_result(&self, written: Written) -> Result<(), ApiError> {
        written.map_err(|e| match &*e {
            PublishError::BreakerOpen { retry_after } => ApiError::Unavailable {
                retry_after: *retry_after,
            },
            PublishError::Redis(error) => {
                tracing::error!(%error, "XADD failed");
                ApiError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }
            }
            e @ PublishError::NotReplicated { .. } => {
                tracing::warn!(error = %e, "entry written but not replicated in time; answering 503");
                ApiError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }
            }
        })
    }
}

async fn ingest_one(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let identity = state.admit(&headers, peer)?;
    body::check_single(&headers)?;
    let bytes = state.read_body(&headers, body).await?;
    let now = Utc::now();
    let mut event = validate::parse_event(&bytes, &state.limits, now).map_err(|e| {
        state.reject(e.code.as_str());
        ApiError::InvalidEvent(e)
    })?;
    if let Some(header) = headers.get("idempotency-key") {
        let key = header.to_str().map_err(|_| ApiError::BadRequest {
            code: "invalid_characters",
            message: "the Idempotency-Key header must be printable ASCII".into(),
            field: Some("event_id"),
        })?;
        let key = validate::check_event_id(key, &state.limits).map_err(ApiError::InvalidEvent)?;
        if event
            .event_id()
            .is_some_and(|id| id != key.clone().into_inner())
        {
            return Err(ApiError::BadRequest {
                code: "conflicting_event_id",
                message: "the body's event_id differs from the Idempotency-Key header".into(),
                field: Some("event_id"),
            });
        }
        event.set_event_id(key);
    }
    let Some(groups) = &state.groups else {
        let enriched = event.enrich(now, None);
        let id = enriched.id;
        let mut entry =
            StreamEntry::new(&request_id.0, bytes.len()).map_err(AppState::encode_failed)?;
        entry
            .push(&enriched, enriched.dedup_key(), state.publisher.shards())
            .map_err(AppState::encode_failed)?;
        state.send(identity.as_ref(), entry).await?;
        return Ok(accepted_one(id));
    };
    let enriched = event.enrich(now, Some(request_id.0.clone()));
    let encoded = stream_codec::encode(&enriched).map_err(AppState::encode_failed)?;
    let dedup_key = enriched.dedup_key();
    let shard = shard_of(dedup_key, state.publisher.shards());
    state.limit_key(identity.as_ref(), 1)?;
    let keyed = enriched.event_id.is_some().then_some(dedup_key);
    let written = groups
        .write(shard, encoded, keyed)
        .await
        .map_err(|_| ApiError::Unavailable {
            retry_after: Duration::from_secs(1),
        })?;
    state.publish_result(written)?;
    state.metrics.events_accepted.inc();
    Ok(accepted_one(enriched.id))
}

/// The 202 of a single-event request.
fn accepted_one(id: Uuid) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: 1,
            ids: vec![id],
            rejected: None,
        }),
    )
        .into_response()
}

async fn ingest_batch(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let identity = state.admit(&headers, peer)?;
    let format = body::check_batch(&headers)?;
    let bytes = state.read_body(&headers, body).await?;
    let items = batch::split(&bytes, format, state.http.max_batch_events as usize)?;
    state.metrics.batch_size.observe(items.len() as f64);

    let now = Utc::now();
    let mut outgoing = Outgoing::new(&request_id, items.len(), bytes.len())?;
    let mut rejected = Vec::new();
    let mut first_error = None;
    for (index, item) in items.into_iter().enumerate() {
        let result = item.and_then(|text| validate::parse_event_str(text, &state.limits, now));
        match result {
            Ok(event) => outgoing.push(&state, event, now)?,
            Err(e) => {
                state.reject(e.code.as_str());
                rejected.push(Rejected {
                    index,
                    error: e.message.clone(),
                    code: e.code.as_str(),
                    field: e.field.clone(),
                });
                first_error.get_or_insert((index, e));
            }
        }
    }
    if outgoing.entry.is_empty() {
        return Err(match first_error {
            Some((index, first)) => ApiError::NoValidEvent {
                index,
                first,
                rejected,
            },
            None => ApiError::Internal,
        });
    }
    let ids = outgoing.ids;
    state.send(identity.as_ref(), outgoing.entry).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: ids.len(),
            ids,
            rejected: Some(rejected),
        }),
    )
        .into_response())
}

/// The valid events of one request on their way to the stream: the id of
/// each in request order, and each event with an `event_id` sent once.
struct Outgoing {
    ids: Vec<Uuid>,
    entry: StreamEntry,
    /// Events of this request by dedup key, for the ones with an
    /// `event_id`: a repeat within the request is the same event, answered
    /// with the first one's id (the id that will find the stored row) and
    /// not sent twice.
    keyed: HashMap<Uuid, Uuid>,
}

impl Outgoing {
    /// For `events` events of about `bytes` in all.
    fn new(request_id: &RequestId, events: usize, bytes: usize) -> Result<Self, ApiError> {
        Ok(Self {
            ids: Vec::with_capacity(events),
            entry: StreamEntry::new(&request_id.0, bytes).map_err(AppState::encode_failed)?,
            keyed: HashMap::new(),
        })
    }

    fn push(
        &mut self,
        state: &AppState,
        event: ValidEvent,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), ApiError> {
        // The request id is the entry's, written once.
        let enriched = event.enrich(now, None);
        let dedup_key = enriched.dedup_key();
        if enriched.event_id.is_some() {
            match self.keyed.entry(dedup_key) {
                Entry::Occupied(first) => {
                    self.ids.push(*first.get());
                    return Ok(());
                }
                Entry::Vacant(slot) => {
                    slot.insert(enriched.id);
                }
            }
        }
        self.ids.push(enriched.id);
        self.entry
            .push(&enriched, dedup_key, state.publisher.shards())
            .map_err(AppState::encode_failed)
    }
}

/// `POST /v1/logs`: OTLP/HTTP logs, answered the OTLP way (see [`otlp`]).
async fn ingest_otlp(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match otlp::Encoding::of(&headers) {
        Ok(encoding) => encoding,
        Err(e) => return otlp::error(otlp::Encoding::Json, e),
    };
    match export_logs(&state, peer, &request_id, &headers, body, encoding).await {
        Ok(response) => response,
        Err(e) => otlp::error(encoding, e),
    }
}

async fn export_logs(
    state: &AppState,
    peer: SocketAddr,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    encoding: otlp::Encoding,
) -> Result<Response, ApiError> {
    let identity = state.admit(headers, peer)?;
    let bytes = state.read_body(headers, body).await?;
    let limit = state.http.max_log_records as usize;
    let too_many = |count| ApiError::TooManyEvents { count, limit };
    if encoding == otlp::Encoding::Protobuf {
        let count = otlp::count_protobuf_records(&bytes);
        if count > limit {
            return Err(too_many(count));
        }
    }
    let request = otlp::decode(&bytes, encoding)?;
    let count = otlp::count_records(&request);
    if count > limit {
        return Err(too_many(count));
    }
    let now = Utc::now();
    let mut mapped = otlp::map_request(&request, &state.limits, now);
    drop(request);
    state.metrics.batch_size.observe(count as f64);
    for (code, n) in &mapped.rejected {
        state
            .metrics
            .events_rejected
            .with_label_values(&[code.as_str()])
            .inc_by(*n);
    }
    let mut outgoing = Outgoing::new(request_id, mapped.events.len(), bytes.len())?;
    for event in std::mem::take(&mut mapped.events) {
        outgoing.push(state, event, now)?;
    }
    if !outgoing.entry.is_empty() {
        state.send(identity.as_ref(), outgoing.entry).await?;
    }
    Ok(otlp::accepted(encoding, &mapped))
}

/// `GET /health/buffer`: stream depth against the high-water mark; 503 when over.
async fn buffer(State(state): State<Shared>) -> Response {
    let backlog = &state.backlog;
    let events = backlog.max_events();
    let over = backlog.is_over();
    let body = serde_json::json!({
        "status": if over { "over_high_water" } else { "ok" },
        // Events in the longest shard (its entries times the mean
        // events per entry), what `STREAM_HIGH_WATER` is compared with.
        "stream_length": events,
        "stream_entries": backlog.max_length(),
        "shards": backlog.lengths(),
        "events_per_entry": backlog.events_per_entry(),
        "high_water": backlog.high_water(),
        "utilization": events as f64 / backlog.high_water().max(1) as f64,
    });
    let status = if over {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}
