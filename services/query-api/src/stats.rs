//! `GET /v1/stats`, `GET /v1/services` and `GET /health/business`: figures
//! from the hourly rollup `event_counts`, which the workers maintain in the
//! insert transaction.
//!
//! Invariants: these routes never scan `events` (only `/v1/services` reads
//! one index entry per service for its last-seen time, in the one partition
//! that holds it); answers are reused for `STATS_CACHE_MS`, and once expired
//! recomputed by one request while the others still get the previous one,
//! so dashboards polling many times a second cost one query per interval.
//!
//! The rollup counts whole hours, so windows are widened to whole hours;
//! the "recent" figures are whole hours too: `current_hour` (so far),
//! `last_hour` (the last complete clock hour), `last_24h` (the 24 complete
//! hours before the current one), `events_per_minute` (`last_hour` / 60).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use eventline_shared::schema::{self, rollup_hour};
use serde::Serialize;
use serde_json::json;

use crate::app::{AppState, Shared};
use crate::error::ApiError;
use crate::metrics::query;
use crate::params::{Params, StatsQuery};

/// `t` rounded up to a clock hour: the end of the last rollup hour that a
/// window ending at `t` counts (the rollup cannot split an hour).
pub fn hour_end(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let start = rollup_hour(t);
    if start == t {
        Some(t)
    } else {
        start.checked_add_signed(TimeDelta::hours(1))
    }
}

/// Most answers kept; beyond it the cache starts over (its entries live a
/// second anyway).
const CACHE_ENTRIES: usize = 1024;
/// An expired answer is still served while one request refreshes it, but
/// never once it is this many TTLs old (the refreshes keep failing).
const MAX_STALE_TTLS: u32 = 10;
/// A refresh not finished after this long (its request was dropped) may be
/// taken over by the next request.
const REFRESH_TAKEOVER: Duration = Duration::from_secs(5);

/// Short-lived answers by request, JSON bytes ready to send. When an answer
/// expires, the first request recomputes it and the others get the expired
/// one meanwhile, so expiry never makes every concurrent caller query.
pub struct StatsCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

struct CacheEntry {
    at: Instant,
    body: Bytes,
    refreshing: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Stats(StatsQuery),
    Services,
    Business,
}

impl CacheKey {
    fn name(&self) -> &'static str {
        match self {
            CacheKey::Stats(_) => "stats",
            CacheKey::Services => "services",
            CacheKey::Business => "business",
        }
    }
}

enum Lookup {
    /// Fresh, or expired while someone else refreshes it.
    Use(Bytes),
    /// Expired: this caller refreshes it; the body is the fallback.
    Refresh(Bytes),
    Miss,
}

impl StatsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, key: &CacheKey) -> Lookup {
        if self.ttl.is_zero() {
            return Lookup::Miss;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let age = entry.at.elapsed();
        if age < self.ttl {
            return Lookup::Use(entry.body.clone());
        }
        if age > self.ttl * MAX_STALE_TTLS {
            return Lookup::Miss;
        }
        match entry.refreshing {
            Some(since) if since.elapsed() < REFRESH_TAKEOVER => Lookup::Use(entry.body.clone()),
            _ => {
                entry.refreshing = Some(Instant::now());
                Lookup::Refresh(entry.body.clone())
            }
        }
    }

    fn put(&self, key: CacheKey, body: Bytes) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_ENTRIES && !entries.contains_key(&key) {
            let keep = self.ttl * MAX_STALE_TTLS;
            entries.retain(|_, e| e.at.elapsed() < keep);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            CacheEntry {
                at: Instant::now(),
                body,
                refreshing: None,
            },
        );
    }

    /// A refresh failed: let the next request try again.
    fn refresh_failed(&self, key: &CacheKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.refreshing = None;
        }
    }
}

/// The cached answer for `key`, or `compute`'s, stored for the next caller.
async fn cached<T: Serialize>(
    state: &AppState,
    key: CacheKey,
    compute: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response, ApiError> {
    let name = key.name();
    let cache = &state.stats_cache;
    let fallback = match cache.lookup(&key) {
        Lookup::Use(body) => {
            state.metrics.cache.with_label_values(&[name, "hit"]).inc();
            return Ok(json_bytes(body));
        }
        Lookup::Refresh(body) => Some(body),
        Lookup::Miss => None,
    };
    state.metrics.cache.with_label_values(&[name, "miss"]).inc();
    let computed = compute.await.and_then(|value| {
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|error| {
                tracing::error!(%error, "cannot serialize stats");
                ApiError::Internal
            })
    });
    match (computed, fallback) {
        (Ok(body), _) => {
            cache.put(key, body.clone());
            Ok(json_bytes(body))
        }
        (Err(error), Some(stale)) => {
            tracing::warn!(%error, cache = name, "refresh failed; serving the previous answer");
            cache.refresh_failed(&key);
            Ok(json_bytes(stale))
        }
        (Err(error), None) => Err(error),
    }
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct ServiceCount {
    service: String,
    count: i64,
}

#[derive(Serialize)]
struct HourCount {
    hour: String,
    count: i64,
}

#[derive(Serialize, Default)]
struct Recent {
    current_hour: i64,
    last_hour: i64,
    last_24h: i64,
    events_per_minute: f64,
}

#[derive(Serialize)]
struct Stats {
    from: String,
    to: String,
    total: i64,
    services: Vec<ServiceCount>,
    hourly: Vec<HourCount>,
    #[serde(flatten)]
    recent: Recent,
    generated_at: String,
}

/// `GET /v1/stats?from=&to=&service=`.
pub async fn stats(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let query = StatsQuery::parse(raw.as_deref(), &state.query.limits(), now)?;
    cached(
        &state,
        CacheKey::Stats(query.clone()),
        compute_stats(&state, query, now),
    )
    .await
}

async fn compute_stats(
    state: &AppState,
    query: StatsQuery,
    now: DateTime<Utc>,
) -> Result<Stats, ApiError> {
    // The rollup counts whole hours: the window widens to the hours it
    // touches, and the answer says so.
    let from_hour = rollup_hour(query.from);
    let to_hour = hour_end(query.to).unwrap_or(query.to);
    // One scan of the window's rollup rows, grouped both ways.
    let grouped = state.db(
        query::STATS,
        sqlx::query_as::<_, (Option<String>, Option<DateTime<Utc>>, i64)>(
            "SELECT service, hour, sum(count)::bigint FROM event_counts
              WHERE hour >= $1 AND hour < $2
                AND (cardinality($3::text[]) = 0 OR service = ANY($3))
              GROUP BY GROUPING SETS ((service), (hour))
              ORDER BY service, hour",
        )
        .bind(from_hour)
        .bind(to_hour)
        .bind(&query.services)
        .fetch_all(&state.pg),
    );
    let recent = recent(state, &query.services, now);
    let (rows, recent) = tokio::try_join!(grouped, recent)?;
    let mut services = Vec::new();
    let mut hourly = Vec::new();
    let mut total = 0;
    for (service, hour, count) in rows {
        match (service, hour) {
            (Some(service), None) => {
                total += count;
                services.push(ServiceCount { service, count });
            }
            (None, Some(hour)) => hourly.push(HourCount {
                hour: rfc3339(hour),
                count,
            }),
            _ => {}
        }
    }
    Ok(Stats {
        from: rfc3339(from_hour),
        to: rfc3339(to_hour),
        total,
        services,
        hourly,
        recent,
        generated_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// The recent figures (see the module docs), for `services` or all.
async fn recent(
    state: &AppState,
    services: &[String],
    now: DateTime<Utc>,
) -> Result<Recent, ApiError> {
    let current = rollup_hour(now);
    let (current_hour, last_hour, last_24h): (i64, i64, i64) = state
        .db(
            query::STATS,
            sqlx::query_as(
                "SELECT coalesce(sum(count) FILTER (WHERE hour = $1), 0)::bigint,
                        coalesce(sum(count) FILTER (WHERE hour = $1 - interval '1 hour'), 0)::bigint,
                        coalesce(sum(count) FILTER (WHERE hour < $1), 0)::bigint
                   FROM event_counts
                  WHERE hour >= $1 - interval '24 hours' AND hour <= $1
                    AND (cardinality($2::text[]) = 0 OR service = ANY($2))",
            )
            .bind(current)
            .bind(services)
            .fetch_one(&state.pg),
        )
        .await?;
    Ok(Recent {
        current_hour,
        last_hour,
        last_24h,
        events_per_minute: last_hour as f64 / 60.0,
    })
}

#[derive(Serialize)]
struct KnownService {
    service: String,
    count: i64,
    last_seen: Option<String>,
    /// The console's figures: the last hours from the rollup.
    #[serde(flatten)]
    recent: crate::buckets::ServiceHours,
}

/// `GET /v1/services`: every service the rollup knows, with its count and
/// the time of its newest event.
pub async fn services(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(raw.as_deref())?.only(&[], false)?;
    cached(&state, CacheKey::Services, async {
        // The newest event lies in the service's newest rollup hour: one
        // index probe in one partition per service.
        let rows: Vec<(String, i64, Option<DateTime<Utc>>)> = state
            .db(
                query::SERVICES,
                sqlx::query_as(
                    "SELECT c.service, c.total, l.ts
                       FROM (SELECT service, sum(count)::bigint AS total, max(hour) AS newest
                               FROM event_counts GROUP BY service) c
                       LEFT JOIN LATERAL (
                            SELECT ts FROM events e
                             WHERE e.service = c.service
                               AND e.ts >= c.newest AND e.ts < c.newest + interval '1 hour'
                             ORDER BY e.ts DESC LIMIT 1) l ON true
                      ORDER BY c.service",
                )
                .fetch_all(&state.pg),
            )
            .await?;
        state
            .metrics
            .rows_returned
            .with_label_values(&["/v1/services"])
            .observe(rows.len() as f64);
        let mut recent = crate::buckets::recent_hours(&state, Utc::now()).await?;
        let services: Vec<KnownService> = rows
            .into_iter()
            .map(|(service, count, last)| KnownService {
                recent: recent.remove(&service).unwrap_or_default(),
                service,
                count,
                last_seen: last.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            })
            .collect();
        Ok(json!({ "services": services }))
    })
    .await
}

/// `GET /health/business` (the Aurore Events API's): the pipeline's figures
/// without service names, so it can stay open like the other health
/// routes — recent throughput, dead letters waiting, the retention job's
/// last success. The figures come from PostgreSQL (without it, a 503 or
/// 504), the dead letters from Redis: without Redis, `dead_letters` is
/// `null`, `status` is `degraded` and `unavailable` names `redis`, as
/// `/health/detailed` says `degraded` when a dependency fails.
pub async fn business(State(state): State<Shared>) -> Result<Response, ApiError> {
    cached(&state, CacheKey::Business, async {
        let now = Utc::now();
        let recent = recent(&state, &[], now);
        let services = state.db(
            query::BUSINESS,
            sqlx::query_scalar::<_, i64>(
                "SELECT count(DISTINCT service) FROM event_counts
                  WHERE hour >= $1 - interval '24 hours'",
            )
            .bind(now)
            .fetch_one(&state.pg),
        );
        let retention = state.db(query::BUSINESS, schema::last_retention_success(&state.pg));
        let (recent, services, retention) = tokio::try_join!(recent, services, retention)?;
        let dead_letters = crate::dlq::length(&state).await.ok();
        let unavailable: &[&str] = if dead_letters.is_some() {
            &[]
        } else {
            &["redis"]
        };
        Ok(json!({
            "status": if unavailable.is_empty() { "ok" } else { "degraded" },
            "unavailable": unavailable,
            "generated_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "events": recent,
            "active_services_24h": services,
            "dead_letters": dead_letters,
            "retention_last_success": retention.map(rfc3339),
        }))
    })
    .await
}

/// Reads the retention job's last success from `maintenance_runs` every
/// `interval` into `eventline_query_retention_last_success_timestamp_seconds`,
/// until `shutdown`.
pub async fn watch_retention(
    state: Arc<AppState>,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let last = schema::last_retention_success(&state.pg).await;
        match last {
            Ok(last) => state
                .metrics
                .retention_last_success
                .set(last.map_or(0, |at| at.timestamp())),
            Err(error) => tracing::warn!(%error, "cannot read the retention job's last success"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_truncate() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T03:12:45.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(rollup_hour(t)), "2026-11-23T03:00:00Z");
        assert_eq!(rfc3339(hour_end(t).unwrap()), "2026-11-23T04:00:00Z");
        let on_the_hour = rollup_hour(t);
        assert_eq!(hour_end(on_the_hour), Some(on_the_hour));
    }

    #[test]
    fn one_caller_refreshes_an_expired_answer_the_others_get_it_meanwhile() {
        let key = CacheKey::Services;
        let cache = StatsCache::new(Duration::from_millis(50));
        assert!(matches!(cache.lookup(&key), Lookup::Miss));
        cache.put(key.clone(), Bytes::from_static(b"{}"));
        assert!(matches!(cache.lookup(&key), Lookup::Use(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(cache.lookup(&key), Lookup::Refresh(_)));
        assert!(matches!(cache.lookup(&key), Lookup::Use(_)));
        cache.refresh_failed(&key);
        assert!(matches!(cache.lookup(&key), Lookup::Refresh(_)));
        cache.put(key.clone(), Bytes::from_static(b"{}"));
        assert!(matches!(cache.lookup(&key), Lookup::Use(_)));
        // Far too old to serve.
        std::thread::sleep(Duration::from_millis(550));
        assert!(matches!(cache.lookup(&key), Lookup::Miss));
        let off = StatsCache::new(Duration::ZERO);
        off.put(key.clone(), Bytes::from_static(b"{}"));
        assert!(matches!(off.lookup(&key), Lookup::Miss));
    }
}
