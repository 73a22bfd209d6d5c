//! `GET /v1/events` and `GET /v1/events/{id}`.
//!
//! Pages are keyset pages on `(ts, id)`, read with the index
//! `(service, ts DESC, id DESC)`: one index range walk per service, never an
//! OFFSET scan (the compatibility `page` parameter skips a bounded number of
//! rows, see [`crate::params`]). Several services are read as one ordered
//! walk per service (`LATERAL`), merged and cut to the page; without a
//! `service`, the services the hourly rollup saw in the window are used, so
//! the same index serves every query.
//!
//! Invariant: every query is built from fixed SQL fragments and bind
//! parameters; no value from the request is ever part of the SQL text.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use eventline_shared::EnrichedEvent;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::app::{AppState, Shared};
use crate::cursor::{Cursor, Order, Position};
use crate::error::ApiError;
use crate::metrics::query;
use crate::params::{EventQuery, push_filters};

/// One stored event as the API returns it.
#[derive(Debug, Serialize)]
pub struct EventOut {
    pub id: Uuid,
    pub service: String,
    pub message: String,
    /// The event's time (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    pub ingested_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
}

impl EventOut {
    /// An event read from the stream (the live tail), as the API shows it.
    pub fn from_stream(event: EnrichedEvent) -> Self {
        EventOut {
            id: event.id,
            service: event.service,
            message: event.message,
            timestamp: event.ts.to_rfc3339_opts(SecondsFormat::Millis, true),
            ingested_at: event
                .ingested_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            event_id: event.event_id,
            metadata: event.metadata.and_then(|m| RawValue::from_string(m).ok()),
        }
    }
}

/// One row as read, `metadata` as jsonb's text.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub(crate) id: Uuid,
    pub(crate) service: String,
    pub(crate) message: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) ingested_at: DateTime<Utc>,
    pub(crate) event_id: Option<String>,
    pub(crate) metadata: Option<String>,
}

impl EventRow {
    pub(crate) fn into_out(self) -> EventOut {
        EventOut {
            id: self.id,
            service: self.service,
            message: self.message,
            timestamp: self.ts.to_rfc3339_opts(SecondsFormat::Millis, true),
            ingested_at: self
                .ingested_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            event_id: self.event_id,
            // PostgreSQL's jsonb text is valid JSON; a failure would be a
            // server bug, and dropping the field beats failing the page.
            metadata: self.metadata.and_then(|m| RawValue::from_string(m).ok()),
        }
    }
}

const COLUMNS: &str = "id, service, message, ts, ingested_at, event_id, metadata::text AS metadata";

#[derive(Serialize)]
struct Page {
    events: Vec<EventOut>,
    next_cursor: Option<String>,
}

/// `GET /v1/events`.
pub async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = EventQuery::parse(raw.as_deref(), &state.query.limits(), Utc::now())?;
    let services = if query.services.is_empty() {
        services_in_window(&state, &query.window).await?
    } else {
        query.services.clone()
    };
    let mut rows = read_page(&state, &query, &services).await?;
    // One row more than the page was read: whether it exists says whether
    // there is a next page.
    let next_cursor = if rows.len() > query.limit as usize {
        rows.truncate(query.limit as usize);
        rows.last().map(|last| {
            Cursor {
                order: query.order,
                position: Position {
                    ts: last.ts,
                    id: last.id,
                },
                window: query.window,
                fingerprint: query.fingerprint,
            }
            .encode()
        })
    } else {
        None
    };
    state
        .metrics
        .rows_returned
        .with_label_values(&["/v1/events"])
        .observe(rows.len() as f64);
    let events = rows.into_iter().map(EventRow::into_out).collect();
    Ok(Json(Page {
        events,
        next_cursor,
    })
    .into_response())
}

/// Up to `query.limit + 1` rows of `services` (none: an empty page) in
/// page order, after `query.after`; the extra row says a next page exists.
pub(crate) async fn read_page(
    state: &AppState,
    query: &EventQuery,
    services: &[String],
) -> Result<Vec<EventRow>, ApiError> {
    let mut rows = Vec::new();
    if services.is_empty() {
        return Ok(rows);
    }
    let want = query.limit as usize + 1;
    for (from, to) in chunks(query) {
        let mut sql = page_sql(query, services, from, to, want - rows.len());
        let found = state
            .db(
                query::EVENTS,
                sql.build_query_as::<EventRow>().fetch_all(&state.pg),
            )
            .await?;
        rows.extend(found);
        if rows.len() >= want {
            break;
        }
    }
    Ok(rows)
}

/// The services the hourly rollup counted in `window`.
pub(crate) async fn services_in_window(
    state: &AppState,
    window: &crate::params::Window,
) -> Result<Vec<String>, ApiError> {
    state
        .db(
            query::SERVICES_IN_WINDOW,
            sqlx::query_scalar(
                "SELECT DISTINCT service FROM event_counts
                  WHERE hour > $1 AND hour < $2 AND count > 0
                  ORDER BY service",
            )
            .bind(window.from - TimeDelta::hours(1))
            .bind(window.to)
            .fetch_all(&state.pg),
        )
        .await
}

/// The first chunk of a window wider than this is read alone.
const FIRST_CHUNK: TimeDelta = TimeDelta::days(1);

/// The parts of the window read one after the other, in the page's order:
/// for a window wider than a day, the day at its start (the newest day for
/// `desc`, the oldest for `asc`), then the rest. A page of a busy service is
/// then read from one or two daily partitions instead of one index descent
/// into every partition of the window (PostgreSQL merges them with a Merge
/// Append: the default partition rules out an ordered Append): bare SQL, 8
/// clients, 10 M events, a 50-event page over 7 days took 0.79 ms, over one
/// day 0.54 ms (docs/adr/0030-query-api-reads.md). The chunks are disjoint
/// and ordered, so their rows concatenate in page order. With the
/// compatibility `page` offset the window is read whole.
/// A cursor narrows the window first: a page after it starts at its row.
fn chunks(query: &EventQuery) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let (mut from, mut to) = (query.window.from, query.window.to);
    if let Some(after) = &query.after {
        match query.order {
            // Rows with the cursor's ts and a smaller id are still to come.
            Order::Desc => to = to.min(after.ts + TimeDelta::microseconds(1)),
            Order::Asc => from = from.max(after.ts),
        }
    }
    if query.offset > 0 || to - from <= FIRST_CHUNK {
        return vec![(from, to)];
    }
    match query.order {
        Order::Desc => vec![(to - FIRST_CHUNK, to), (from, to - FIRST_CHUNK)],
        Order::Asc => vec![(from, from + FIRST_CHUNK), (from + FIRST_CHUNK, to)],
    }
}

/// The page's SQL over `[from, to)`, at most `fetch` rows (plus the
/// compatibility offset): for one service a plain index walk, for several
/// one walk per service (`LATERAL`) merged by `(ts, id)`.
fn page_sql(
    query: &EventQuery,
    services: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    fetch: usize,
) -> QueryBuilder<Postgres> {
    let (cmp, dir) = match query.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    let fetch = i64::try_from(fetch).unwrap_or(i64::MAX) + i64::from(query.offset);
    let mut sql = QueryBuilder::new("");
    let single = services.len() == 1;
    if single {
        sql.push("SELECT ")
            .push(COLUMNS)
            .push(" FROM events WHERE service = ")
            .push_bind(services[0].clone());
    } else {
        sql.push("SELECT e.* FROM unnest(")
            .push_bind(services.to_vec())
            .push("::text[]) AS s(service) CROSS JOIN LATERAL (SELECT ")
            .push(COLUMNS)
            .push(" FROM events WHERE service = s.service");
    }
    sql.push(" AND ts >= ")
        .push_bind(from)
        .push(" AND ts < ")
        .push_bind(to);
    if let Some(after) = &query.after {
        sql.push(" AND (ts, id) ")
            .push(cmp)
            .push(" (")
            .push_bind(after.ts)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    push_filters(&mut sql, &query.metadata, query.message_pattern.as_deref());
    let order_by = |sql: &mut QueryBuilder<Postgres>, prefix: &str| {
        sql.push(" ORDER BY ")
            .push(prefix)
            .push("ts ")
            .push(dir)
            .push(", ")
            .push(prefix)
            .push("id ")
            .push(dir)
            .push(" LIMIT ")
            .push_bind(fetch);
    };
    order_by(&mut sql, "");
    if !single {
        sql.push(") e");
        order_by(&mut sql, "e.");
    }
    if query.offset > 0 {
        sql.push(" OFFSET ").push_bind(i64::from(query.offset));
    }
    sql
}

/// `GET /v1/events/{id}`.
pub async fn one(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad("invalid_id", "id", "an event id is a UUID"))?;
    let row: Option<EventRow> = state
        .db(
            query::EVENT,
            sqlx::query_as(
                "SELECT id, service, message, ts, ingested_at, event_id, metadata::text AS metadata
                   FROM events WHERE id = $1 LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&state.pg),
        )
        .await?;
    let row = row.ok_or(ApiError::NotFound("event"))?;
    Ok(Json(row.into_out()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::QueryLimits;

    fn sql(q: &str) -> String {
        let limits = QueryLimits {
            max_range: TimeDelta::days(31),
            max_services: 50,
            max_service_len: 100,
            max_page_offset: 1000,
        };
        let query = EventQuery::parse(Some(q), &limits, Utc::now()).unwrap();
        let services = query.services.clone();
        let (from, to) = (query.window.from, query.window.to);
        page_sql(&query, &services, from, to, query.limit as usize + 1).into_string()
    }

    fn parse(q: &str) -> EventQuery {
        let limits = QueryLimits {
            max_range: TimeDelta::days(31),
            max_services: 50,
            max_service_len: 100,
            max_page_offset: 1000,
        };
        EventQuery::parse(Some(q), &limits, Utc::now()).unwrap()
    }

    #[test]
    fn wide_windows_are_read_newest_day_first_in_order() {
        let q = parse("service=a&from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z");
        let c = chunks(&q);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], (q.window.to - TimeDelta::days(1), q.window.to));
        assert_eq!(c[1], (q.window.from, q.window.to - TimeDelta::days(1)));
        let q = parse("service=a&from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z&order=asc");
        let c = chunks(&q);
        assert_eq!(c[0], (q.window.from, q.window.from + TimeDelta::days(1)));
        assert_eq!(c[1].1, q.window.to);
        // A day or less, or the compatibility offset: one read.
        let q = parse("service=a&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z");
        assert_eq!(chunks(&q), vec![(q.window.from, q.window.to)]);
        let q =
            parse("service=a&from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z&page=2&pageSize=10");
        assert_eq!(chunks(&q).len(), 1);
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let text = sql("service=checkout&q=drop%20table&metadata.user=ann&order=asc");
        assert!(!text.contains("checkout") && !text.contains("drop") && !text.contains("ann"));
        assert!(text.contains("ORDER BY ts ASC, id ASC"), "{text}");
        let text = sql("service=a,b");
        assert!(text.contains("LATERAL") && text.contains("ORDER BY e.ts DESC, e.id DESC"));
    }
}
