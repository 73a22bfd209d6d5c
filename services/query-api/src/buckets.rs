//! `GET /v1/stats/histogram`: counts of the events a search selects, in at
//! most `buckets` equal time buckets over its window — what the console
//! draws above the results.
//!
//! The bucket width is the smallest step of a fixed ladder (1 s … 12 h,
//! then whole days) that covers the window in at most `buckets` buckets;
//! buckets are aligned to multiples of the width since the Unix epoch, so
//! zooming and re-asking give the same boundaries, and the first and last
//! are clipped to the window. Where the counts come from:
//!
//! - a width of whole hours and no text or metadata filter: the whole hours
//!   inside the window from the hourly rollup `event_counts` (one row per
//!   service and hour, whatever the volume), and the partial hours at its
//!   edges from `events`;
//! - otherwise (a finer width, or `q`/`metadata.*`, which the rollup cannot
//!   answer): `events`, grouped with `date_bin`, read through the
//!   `(service, ts, id)` index for the services named (or, as for
//!   `/v1/events`, those the rollup saw in the window).
//!
//! Invariant: a bucket's count is exactly the number of stored events of
//! the search in `[start, end)` (the test compares each with a direct
//! count); the window and filters obey `/v1/events`' limits, and every value
//! is a bind parameter.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};

use crate::app::{AppState, Shared};
use crate::error::ApiError;
use crate::params::{MetadataFilter, Params, QueryLimits, Window, push_filters};
use crate::stats::hour_end;
use eventline_shared::schema::rollup_hour;

/// Default and largest `buckets`.
pub const DEFAULT_BUCKETS: u32 = 60;
pub const MAX_BUCKETS: u32 = 500;
/// The window without `from`: the day before `to`.
pub const DEFAULT_SPAN: TimeDelta = TimeDelta::hours(24);
/// The `query` label of the database-time metric for these reads.
const DB_ROLLUP: &str = "histogram_rollup";
const DB_EVENTS: &str = "histogram_events";

/// Bucket widths below a day, in seconds; beyond, whole days.
const LADDER: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
];
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// A checked histogram request.
#[derive(Debug, Clone)]
pub struct HistogramQuery {
    /// Empty: every service seen in the window.
    pub services: Vec<String>,
    pub window: Window,
    pub buckets: u32,
    pub metadata: Vec<MetadataFilter>,
    /// The ILIKE pattern of `q`.
    pub message_pattern: Option<String>,
}

impl HistogramQuery {
    pub fn parse(
        raw: Option<&str>,
        limits: &QueryLimits,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let params = Params::parse(raw)?;
        params.only(&["service", "from", "to", "buckets", "q"], true)?;
        let services = params.services(limits)?;
        let from = params.time("from")?;
        let to = params.time("to")?;
        let buckets = params
            .number("buckets", 1..=MAX_BUCKETS)?
            .unwrap_or(DEFAULT_BUCKETS);
        let (metadata, q) = params.filters()?;
        let window = Window::resolve(
            from,
            Some(to.unwrap_or(now)),
            DEFAULT_SPAN,
            limits.max_range,
            now,
        )?;
        Ok(HistogramQuery {
            services,
            window,
            buckets,
            metadata,
            message_pattern: q.map(crate::params::like_pattern),
        })
    }

    fn filtered(&self) -> bool {
        !self.metadata.is_empty() || self.message_pattern.is_some()
    }
}

/// The bucket width in seconds for `window` in at most `buckets` buckets
/// aligned to the epoch; `None` for an empty window.
pub fn width(window: &Window, buckets: u32) -> Option<i64> {
    let (from, to) = (window.from.timestamp_micros(), window.to.timestamp_micros());
    if to <= from {
        return None;
    }
    let fits = |w: i64| {
        let w = w * 1_000_000;
        let first = from.div_euclid(w);
        let last = (to - 1).div_euclid(w);
        last - first < i64::from(buckets)
    };
    if let Some(&w) = LADDER.iter().find(|&&w| fits(w)) {
        return Some(w);
    }
    let span_days = (to - from).div_euclid(DAY * 1_000_000) + 1;
    let mut days = (span_days + i64::from(buckets) - 1) / i64::from(buckets);
    while !fits(days * DAY) {
        days += 1;
    }
    Some(days * DAY)
}

#[derive(Serialize)]
struct Bucket {
    start: String,
    end: String,
    count: i64,
}

#[derive(Serialize)]
struct Histogram {
    from: String,
    to: String,
    bucket_seconds: i64,
    /// `rollup`, `events`, or `rollup+events`.
    source: &'static str,
    total: i64,
    buckets: Vec<Bucket>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `GET /v1/stats/histogram`.
pub async fn histogram(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = HistogramQuery::parse(raw.as_deref(), &state.query.limits(), Utc::now())?;
    let Window { from, to } = query.window;
    let Some(width) = width(&query.window, query.buckets) else {
        return Ok(Json(Histogram {
            from: rfc3339(from),
            to: rfc3339(to),
            bucket_seconds: 0,
            source: "events",
            total: 0,
            buckets: Vec::new(),
        })
        .into_response());
    };
    let mut counts: HashMap<DateTime<Utc>, i64> = HashMap::new();
    let mut add = |rows: Vec<(DateTime<Utc>, i64)>| {
        for (start, n) in rows {
            *counts.entry(start).or_default() += n;
        }
    };
    let source;
    let whole_hours = (hour_end(from), Some(rollup_hour(to)));
    if let (false, 0, (Some(h1), Some(h2))) = (query.filtered(), width % HOUR, whole_hours)
        && h1 < h2
    {
        // Whole hours from the rollup; the partial hours at the edges (if
        // any) from the events.
        source = if from < h1 || h2 < to {
            "rollup+events"
        } else {
            "rollup"
        };
        add(rollup_counts(&state, &query, width, h1, h2).await?);
        if from < h1 || h2 < to {
            let services = services(&state, &query).await?;
            if from < h1 {
                add(event_counts(&state, &query, &services, width, from, h1).await?);
            }
            if h2 < to {
                add(event_counts(&state, &query, &services, width, h2, to).await?);
            }
        }
    } else {
        source = "events";
        let services = services(&state, &query).await?;
        add(event_counts(&state, &query, &services, width, from, to).await?);
    }
    let step = TimeDelta::seconds(width);
    let micros = width * 1_000_000;
    let first =
        DateTime::from_timestamp_micros(from.timestamp_micros().div_euclid(micros) * micros)
            .unwrap_or(from);
    let mut buckets = Vec::new();
    let mut total = 0;
    let mut start = first;
    while start < to {
        let end = start + step;
        let count = counts.get(&start).copied().unwrap_or(0);
        total += count;
        buckets.push(Bucket {
            start: rfc3339(start.max(from)),
            end: rfc3339(end.min(to)),
            count,
        });
        start = end;
    }
    Ok(Json(Histogram {
        from: rfc3339(from),
        to: rfc3339(to),
        bucket_seconds: width,
        source,
        total,
        buckets,
    })
    .into_response())
}

/// The services to read `events` for: those named, or those the rollup saw.
async fn services(state: &AppState, query: &HistogramQuery) -> Result<Vec<String>, ApiError> {
    if query.services.is_empty() {
        crate::events::services_in_window(state, &query.window).await
    } else {
        Ok(query.services.clone())
    }
}

/// Bucket start → count from the rollup's hours in `[h1, h2)`.
async fn rollup_counts(
    state: &AppState,
    query: &HistogramQuery,
    width: i64,
    h1: DateTime<Utc>,
    h2: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, i64)>, ApiError> {
    state
        .db(
            DB_ROLLUP,
            sqlx::query_as(
                "SELECT date_bin(make_interval(secs => $1), hour, 'epoch'::timestamptz) AS bucket,
                        sum(count)::bigint
                   FROM event_counts
                  WHERE hour >= $2 AND hour < $3
                    AND (cardinality($4::text[]) = 0 OR service = ANY($4))
                  GROUP BY bucket",
            )
            .bind(width as f64)
            .bind(h1)
            .bind(h2)
            .bind(&query.services)
            .fetch_all(&state.pg),
        )
        .await
}

/// Bucket start → count of the search's events in `[from, to)`.
async fn event_counts(
    state: &AppState,
    query: &HistogramQuery,
    services: &[String],
    width: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, i64)>, ApiError> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = count_sql(query, services, width, from, to);
    state
        .db(DB_EVENTS, sql.build_query_as().fetch_all(&state.pg))
        .await
}

fn count_sql(
    query: &HistogramQuery,
    services: &[String],
    width: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::new("SELECT date_bin(make_interval(secs => ");
    sql.push_bind(width as f64)
        .push("), ts, 'epoch'::timestamptz) AS bucket, count(*) FROM events WHERE service = ANY(")
        .push_bind(services.to_vec())
        .push("::text[]) AND ts >= ")
        .push_bind(from)
        .push(" AND ts < ")
        .push_bind(to);
    push_filters(&mut sql, &query.metadata, query.message_pattern.as_deref());
    sql.push(" GROUP BY bucket");
    sql
}

/// One hour of the rollup.
#[derive(Debug, Clone, Serialize)]
pub struct HourCount {
    pub hour: String,
    pub count: i64,
}

/// A service's recent hours for `/v1/services` (the console's services
/// view), in whole rollup hours as `/v1/stats`' recent figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceHours {
    /// The current clock hour so far.
    pub current_hour: i64,
    /// The last complete clock hour.
    pub last_hour: i64,
    /// The 24 complete hours before the current one.
    pub last_24h: i64,
    /// Those 24 hours and the current one, oldest first (a sparkline).
    pub hourly: Vec<HourCount>,
}

/// Every service's [`ServiceHours`]: one scan of the rollup's last 25
/// hours (a row per service and hour).
pub(crate) async fn recent_hours(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<HashMap<String, ServiceHours>, ApiError> {
    let current = rollup_hour(now);
    let first = current - TimeDelta::hours(24);
    let rows: Vec<(String, DateTime<Utc>, i64)> = state
        .db(
            DB_ROLLUP,
            sqlx::query_as(
                "SELECT service, hour, sum(count)::bigint FROM event_counts
                  WHERE hour >= $1 AND hour <= $2
                  GROUP BY service, hour",
            )
            .bind(first)
            .bind(current)
            .fetch_all(&state.pg),
        )
        .await?;
    let mut out: HashMap<String, ServiceHours> = HashMap::new();
    for (service, hour, count) in rows {
        let entry = out.entry(service).or_insert_with(|| ServiceHours {
            hourly: (0..25)
                .map(|i| HourCount {
                    hour: rfc3339(first + TimeDelta::hours(i)),
                    count: 0,
                })
                .collect(),
            ..ServiceHours::default()
        });
        let index = (hour - first).num_hours();
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| entry.hourly.get_mut(i))
        {
            slot.count += count;
        }
        if hour == current {
            entry.current_hour += count;
        } else {
            entry.last_24h += count;
            if hour == current - TimeDelta::hours(1) {
                entry.last_hour += count;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from: &str, to: &str) -> Window {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        Window {
            from: t(from),
            to: t(to),
        }
    }

    #[test]
    fn widths_come_from_the_ladder_and_fit() {
        let hour = window("2026-11-23T03:00:00Z", "2026-11-23T04:00:00Z");
        assert_eq!(width(&hour, 60), Some(60));
        assert_eq!(width(&hour, 500), Some(10));
        // Unaligned: 15:30 spans 61 minute buckets, so 2 minutes.
        let unaligned = window("2026-11-23T03:00:30Z", "2026-11-23T04:00:30Z");
        assert_eq!(width(&unaligned, 60), Some(120));
        let week = window("2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z");
        assert_eq!(width(&week, 60), Some(10800));
        assert!(width(&week, 1) >= Some(7 * DAY));
        let month = window("2026-10-23T00:00:00Z", "2026-11-23T00:00:00Z");
        assert_eq!(width(&month, 10), Some(4 * DAY));
        let empty = window("2026-11-23T03:00:00Z", "2026-11-23T03:00:00Z");
        assert_eq!(width(&empty, 60), None);
        for n in [1, 7, 60, 500] {
            for w in [hour, unaligned, week, month] {
                let step = width(&w, n).unwrap() * 1_000_000;
                let first = w.from.timestamp_micros().div_euclid(step);
                let last = (w.to.timestamp_micros() - 1).div_euclid(step);
                assert!(last - first < i64::from(n), "{n} {w:?}");
            }
        }
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let limits = QueryLimits {
            max_range: TimeDelta::days(31),
            max_services: 50,
            max_service_len: 100,
            max_page_offset: 1000,
        };
        let q = HistogramQuery::parse(
            Some("service=checkout&q=drop&metadata.user=ann"),
            &limits,
            Utc::now(),
        )
        .unwrap();
        let w = q.window;
        let text = count_sql(&q, &q.services, 60, w.from, w.to).into_string();
        assert!(!text.contains("checkout") && !text.contains("drop") && !text.contains("ann"));
        assert_eq!(q.window.to - q.window.from, DEFAULT_SPAN);
    }
}
