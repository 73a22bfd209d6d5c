//! Query-string parsing: the raw `name=value` pairs become typed, checked
//! requests ([`EventQuery`], [`StatsQuery`]) or a 400 naming the parameter.
//!
//! Invariant: code past this module never sees an unknown parameter, a
//! duplicated single-valued one, a string holding U+0000 (PostgreSQL could
//! not bind it), or a window that is empty-by-mistake (`from` after `to`) or
//! wider than `MAX_QUERY_RANGE`.

use chrono::{DateTime, TimeDelta, Utc};
use eventline_shared::schema::rollup_hour;
use serde_json::{Map, Value};

use crate::cursor::{Cursor, Fingerprint, Order};
use crate::error::ApiError;

/// How far ahead of now an event's time may be (the contract's event rule),
/// and so where the default window ends.
pub const FUTURE_SLACK: TimeDelta = TimeDelta::hours(1);
/// Most `metadata.<key>` filters in one query.
pub const MAX_METADATA_FILTERS: usize = 10;
/// Longest `q`, in characters.
pub const MAX_Q_CHARS: usize = 200;
/// Default and largest `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The request's query pairs, percent-decoded, in order.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (name, value) in &pairs {
            if name.contains('\0') || value.contains('\0') {
                return Err(ApiError::bad(
                    "invalid_characters",
                    name.replace('\0', ""),
                    "parameters may not contain U+0000",
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// Refuses any parameter not in `known` (or, for `metadata.`, not
    /// starting with an allowed prefix).
    pub fn only(&self, known: &[&str], metadata_allowed: bool) -> Result<(), ApiError> {
        for (name, _) in &self.pairs {
            let ok = known.contains(&name.as_str())
                || (metadata_allowed && name.starts_with("metadata."));
            if !ok {
                return Err(ApiError::bad(
                    "unknown_parameter",
                    name.as_str(),
                    format!("unknown query parameter `{name}`"),
                ));
            }
        }
        Ok(())
    }

    /// A parameter that may appear at most once.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(ApiError::bad(
                        "duplicate_parameter",
                        name,
                        format!("`{name}` may be given once"),
                    ));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `service=a&service=b` or `service=a,b`: sorted, without duplicates,
    /// each a valid service name (the gateway's rule and `MAX_SERVICE_LEN`),
    /// at most `limits.max_services`.
    pub fn services(&self, limits: &QueryLimits) -> Result<Vec<String>, ApiError> {
        let (max, max_len) = (limits.max_services, limits.max_service_len);
        let mut services = Vec::new();
        for value in self.all("service") {
            for name in value.split(',') {
                if !eventline_shared::validate::is_service_name(name, max_len) {
                    return Err(ApiError::bad(
                        "invalid_service",
                        "service",
                        format!("a service is 1-{max_len} characters of A-Z a-z 0-9 . _ : -"),
                    ));
                }
                services.push(name.to_owned());
            }
        }
        services.sort_unstable();
        services.dedup();
        if services.len() > max {
            return Err(ApiError::bad(
                "too_many_services",
                "service",
                format!("at most {max} services in one query"),
            ));
        }
        Ok(services)
    }

    /// The `metadata.<key>` filters (sorted by parameter) and `q`, checked:
    /// what `/v1/events`, its export and the histogram select rows by.
    pub fn filters(&self) -> Result<(Vec<MetadataFilter>, Option<&str>), ApiError> {
        let mut metadata = Vec::new();
        for (name, value) in &self.pairs {
            if name.starts_with("metadata.") {
                if metadata.iter().any(|f: &MetadataFilter| &f.param == name) {
                    return Err(ApiError::bad(
                        "duplicate_parameter",
                        name.as_str(),
                        format!("`{name}` may be given once"),
                    ));
                }
                metadata.push(metadata_filter(name, value)?);
            }
        }
        if metadata.len() > MAX_METADATA_FILTERS {
            return Err(ApiError::bad(
                "too_many_metadata_filters",
                "metadata",
                format!("at most {MAX_METADATA_FILTERS} metadata filters"),
            ));
        }
        metadata.sort_by(|a, b| a.param.cmp(&b.param));
        let q = self.single("q")?;
        if let Some(q) = q {
            let chars = q.chars().count();
            if chars == 0 || chars > MAX_Q_CHARS {
                return Err(ApiError::bad(
                    "invalid_q",
                    "q",
                    format!("`q` is 1-{MAX_Q_CHARS} characters"),
                ));
            }
        }
        Ok((metadata, q))
    }

    /// An RFC 3339 time parameter.
    pub fn time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.single(name)?
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad(
                            "invalid_time",
                            name,
                            format!(
                                "`{name}` must be an RFC 3339 time such as 2026-11-23T03:12:00Z"
                            ),
                        )
                    })
            })
            .transpose()
    }

    /// A whole-number parameter within `range`.
    pub fn number(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, ApiError> {
        self.single(name)?
            .map(|s| match s.parse::<u32>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ApiError::bad(
                    "invalid_number",
                    name,
                    format!(
                        "`{name}` must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            })
            .transpose()
    }

    /// `order`: `desc` unless given.
    pub fn order(&self) -> Result<Order, ApiError> {
        match self.single("order")? {
            None => Ok(Order::Desc),
            Some(s) => s.parse().map_err(|()| {
                ApiError::bad("invalid_order", "order", "`order` is `asc` or `desc`")
            }),
        }
    }

    /// `limit`, or its alias `pageSize` (not both); `DEFAULT_LIMIT` unless given.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match (
            self.number("limit", 1..=MAX_LIMIT)?,
            self.number("pageSize", 1..=MAX_LIMIT)?,
        ) {
            (Some(_), Some(_)) => Err(ApiError::bad(
                "conflicting_parameters",
                "pageSize",
                "give `limit` or `pageSize`, not both",
            )),
            (Some(n), None) | (None, Some(n)) => Ok(n),
            (None, None) => Ok(DEFAULT_LIMIT),
        }
    }
}

/// A checked `[from, to)` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// `from`/`to` as given, the missing ends filled in: `to` defaults to
    /// now plus the future slack events are allowed, `from` to `to` minus
    /// `default_span`.
    pub fn resolve(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        default_span: TimeDelta,
        max: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let to = to.unwrap_or(now + FUTURE_SLACK);
        let from = from.unwrap_or(to - default_span);
        let window = Window { from, to };
        window.check(max)?;
        Ok(window)
    }

    pub fn check(&self, max: TimeDelta) -> Result<(), ApiError> {
        if self.from > self.to {
            return Err(ApiError::bad(
                "invalid_range",
                "from",
                "`from` is after `to`",
            ));
        }
        if self.to - self.from > max {
            return Err(ApiError::bad(
                "range_too_wide",
                "from",
                format!(
                    "the window from `from` to `to` is wider than MAX_QUERY_RANGE ({} days)",
                    max.num_days()
                ),
            ));
        }
        Ok(())
    }
}

/// One `metadata.<key>=<value>` filter as the JSON objects any of which the
/// event's metadata must contain: `{"key": 42}` or `{"key": "42"}` for a
/// value that reads as a JSON scalar, only the string otherwise. A dotted
/// key (`metadata.http.status=500`) reaches into nested objects.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataFilter {
    pub param: String,
    pub alternatives: Vec<Value>,
}

/// Appends the `metadata.*` filters (each one `@>` of any of its
/// alternatives) and the `q` substring to a `WHERE` clause being built.
pub fn push_filters(
    sql: &mut sqlx::QueryBuilder<sqlx::Postgres>,
    metadata: &[MetadataFilter],
    message_pattern: Option<&str>,
) {
    for filter in metadata {
        sql.push(" AND metadata @> ANY(")
            .push_bind(filter.alternatives.clone())
            .push("::jsonb[])");
    }
    if let Some(pattern) = message_pattern {
        sql.push(" AND message ILIKE ")
            .push_bind(pattern.to_owned());
    }
}

fn metadata_filter(param: &str, value: &str) -> Result<MetadataFilter, ApiError> {
    let path = &param["metadata.".len()..];
    let segments: Vec<&str> = path.split('.').collect();
    if path.is_empty() || path.len() > 256 || segments.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad(
            "invalid_metadata_filter",
            param,
            "a metadata filter is metadata.<key>[.<key>…]=<value> with non-empty keys",
        ));
    }
    let mut leaves = vec![Value::String(value.to_owned())];
    if let Ok(scalar @ (Value::Number(_) | Value::Bool(_) | Value::Null)) =
        serde_json::from_str::<Value>(value)
    {
        leaves.insert(0, scalar);
    }
    let alternatives = leaves
        .into_iter()
        .map(|leaf| {
            segments.iter().rev().fold(leaf, |inner, key| {
                let mut object = Map::new();
                object.insert((*key).to_owned(), inner);
                Value::Object(object)
            })
        })
        .collect();
    Ok(MetadataFilter {
        param: param.to_owned(),
        alternatives,
    })
}

/// `q` as an ILIKE pattern: `%`, `_` and `\` match themselves.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A checked `GET /v1/events` request.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Empty: every service seen in the window.
    pub services: Vec<String>,
    pub window: Window,
    pub limit: u32,
    pub order: Order,
    pub metadata: Vec<MetadataFilter>,
    /// The ILIKE pattern of `q`.
    pub message_pattern: Option<String>,
    /// Where the previous page ended.
    pub after: Option<crate::cursor::Position>,
    /// Rows skipped by `page` (compatibility only; bounded).
    pub offset: u32,
    /// What a cursor must match to continue this query.
    pub fingerprint: Fingerprint,
}

/// What one query may ask for (`QueryArgs::limits`): the widest window, the
/// most services, the longest service name (`MAX_SERVICE_LEN`, the
/// gateway's), the most rows `page` may skip.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub max_range: TimeDelta,
    pub max_services: usize,
    pub max_service_len: usize,
    pub max_page_offset: u32,
}

impl EventQuery {
    pub fn parse(
        raw: Option<&str>,
        limits: &QueryLimits,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let params = Params::parse(raw)?;
        params.only(
            &[
                "service", "from", "to", "limit", "pageSize", "page", "cursor", "order", "q",
            ],
            true,
        )?;
        let services = params.services(limits)?;
        let from = params.time("from")?;
        let to = params.time("to")?;
        let order = params.order()?;
        let limit = params.limit()?;
        let (metadata, q) = params.filters()?;
        let fingerprint = fingerprint(&services, from, to, order, &metadata, q);

        // Where the page starts: after a cursor, or `page` rows in.
        let page = params.number("page", 1..=u32::MAX)?;
        let (window, after) = match params.single("cursor")? {
            Some(text) => {
                let cursor = continued_cursor(text, page, fingerprint, order, limits)?;
                (cursor.window, Some(cursor.position))
            }
            None => (
                Window::resolve(from, to, limits.max_range, limits.max_range, now)?,
                None,
            ),
        };
        let offset = page_offset(page, limit, limits)?;
        Ok(EventQuery {
            services,
            window,
            limit,
            order,
            metadata,
            message_pattern: q.map(like_pattern),
            after,
            offset,
            fingerprint,
        })
    }
}

/// What a cursor must match to continue a query: its filters and order
/// (not `limit`, which may change between pages).
fn fingerprint(
    services: &[String],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    order: Order,
    metadata: &[MetadataFilter],
    q: Option<&str>,
) -> Fingerprint {
    let micros = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.timestamp_micros().to_string())
            .unwrap_or_default()
    };
    Fingerprint::of(&[
        &services.join(","),
        &micros(from),
        &micros(to),
        order.as_str(),
        &metadata
            .iter()
            .map(|f| format!("{}={}", f.param, f.alternatives[0]))
            .collect::<Vec<_>>()
            .join("&"),
        q.unwrap_or(""),
    ])
}

/// The cursor `text` decoded, if it continues this query (same
/// `fingerprint` and `order`, no `page` beyond the first, a window still
/// within `MAX_QUERY_RANGE`).
fn continued_cursor(
    text: &str,
    page: Option<u32>,
    fingerprint: Fingerprint,
    order: Order,
    limits: &QueryLimits,
) -> Result<Cursor, ApiError> {
    if page.is_some_and(|p| p > 1) {
        return Err(ApiError::bad(
            "conflicting_parameters",
            "page",
            "give `cursor` or `page`, not both",
        ));
    }
    let cursor = Cursor::decode(text).ok_or_else(|| {
        ApiError::bad(
            "invalid_cursor",
            "cursor",
            "`cursor` is not a cursor this API returned",
        )
    })?;
    if cursor.fingerprint != fingerprint || cursor.order != order {
        return Err(ApiError::bad(
            "cursor_mismatch",
            "cursor",
            "`cursor` belongs to a query with other filters; repeat the query's own parameters with it",
        ));
    }
    cursor.window.check(limits.max_range)?;
    Ok(cursor)
}

/// The rows `page` skips, at most `MAX_PAGE_OFFSET`.
fn page_offset(page: Option<u32>, limit: u32, limits: &QueryLimits) -> Result<u32, ApiError> {
    match page {
        None | Some(1) => Ok(0),
        Some(p) => {
            let offset = u64::from(p - 1) * u64::from(limit);
            if offset > u64::from(limits.max_page_offset) {
                return Err(ApiError::bad(
                    "page_too_deep",
                    "page",
                    format!(
                        "`page` may skip at most {} rows; follow `next_cursor` instead",
                        limits.max_page_offset
                    ),
                ));
            }
            Ok(offset as u32)
        }
    }
}

/// A checked `GET /v1/stats` request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsQuery {
    pub services: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The window `/v1/stats` covers without `from`.
pub const STATS_DEFAULT_SPAN: TimeDelta = TimeDelta::hours(24);

impl StatsQuery {
    pub fn parse(
        raw: Option<&str>,
        limits: &QueryLimits,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let params = Params::parse(raw)?;
        params.only(&["service", "from", "to"], false)?;
        let services = params.services(limits)?;
        let from = params.time("from")?;
        let to = params.time("to")?;
        // Round the defaults to the hour: the rollup has no finer grain, and
        // equal requests within the hour share the cache.
        let window = Window::resolve(
            from,
            to.or_else(|| rollup_hour(now).checked_add_signed(TimeDelta::hours(1))),
            STATS_DEFAULT_SPAN,
            limits.max_range,
            now,
        )?;
        Ok(StatsQuery {
            services,
            from: window.from,
            to: window.to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QueryLimits {
        QueryLimits {
            max_range: TimeDelta::days(31),
            max_services: 3,
            max_service_len: 100,
            max_page_offset: 1000,
        }
    }

    fn parse(q: &str) -> Result<EventQuery, ApiError> {
        EventQuery::parse(Some(q), &limits(), Utc::now())
    }

    fn field(q: &str) -> String {
        match parse(q) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("{q}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let q = parse("").unwrap();
        assert_eq!(q.limit, 100);
        assert_eq!(q.order, Order::Desc);
        assert_eq!(q.window.to - q.window.from, TimeDelta::days(31));
        assert!(q.services.is_empty() && q.metadata.is_empty() && q.after.is_none());
    }

    #[test]
    fn services_split_sort_and_dedup() {
        let q = parse("service=b,a&service=a").unwrap();
        assert_eq!(q.services, ["a", "b"]);
    }

    #[test]
    fn service_names_are_held_to_max_service_len() {
        let long = "s".repeat(150);
        let q = format!("service={long}");
        assert_eq!(field(&q), "service");
        let limits = QueryLimits {
            max_service_len: 150,
            ..limits()
        };
        let query = EventQuery::parse(Some(&q), &limits, Utc::now()).unwrap();
        assert_eq!(query.services, [long]);
        let limits = QueryLimits {
            max_service_len: 10,
            ..limits
        };
        match EventQuery::parse(Some("service=eleven-char"), &limits, Utc::now()) {
            Err(ApiError::BadRequest { message, .. }) => {
                assert!(message.contains("1-10 characters"), "{message}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_parameter_names_itself() {
        assert_eq!(field("nope=1"), "nope");
        assert_eq!(field("service=bad%20name"), "service");
        assert_eq!(field("service=a,b,c,d"), "service");
        assert_eq!(field("from=yesterday"), "from");
        assert_eq!(field("to=2026-13-01T00:00:00Z"), "to");
        assert_eq!(
            field("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z"),
            "from"
        );
        assert_eq!(
            field("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"),
            "from"
        );
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=1001"), "limit");
        assert_eq!(field("limit=ten"), "limit");
        assert_eq!(field("limit=5&pageSize=5"), "pageSize");
        assert_eq!(field("order=up"), "order");
        assert_eq!(field("order=asc&order=desc"), "order");
        assert_eq!(field("cursor=abc"), "cursor");
        assert_eq!(field("page=0"), "page");
        assert_eq!(field("page=3&pageSize=1000"), "page");
        assert_eq!(field("q="), "q");
        assert_eq!(field("metadata.=1"), "metadata.");
        assert_eq!(field("metadata.a..b=1"), "metadata.a..b");
        assert_eq!(field("q=a%00b"), "q");
    }

    #[test]
    fn metadata_values_match_as_typed_or_string() {
        let q = parse("metadata.http.status=500&metadata.user=ann").unwrap();
        assert_eq!(
            q.metadata[0].alternatives,
            [
                serde_json::json!({"http":{"status":500}}),
                serde_json::json!({"http":{"status":"500"}})
            ]
        );
        assert_eq!(
            q.metadata[1].alternatives,
            [serde_json::json!({"user":"ann"})]
        );
    }

    #[test]
    fn q_is_escaped() {
        let q = parse("q=50%25_off%5C").unwrap();
        assert_eq!(q.message_pattern.as_deref(), Some(r"%50\%\_off\\%"));
    }

    #[test]
    fn pages_are_bounded_offsets() {
        assert_eq!(parse("page=3&pageSize=10").unwrap().offset, 20);
        assert_eq!(parse("page=1").unwrap().offset, 0);
    }
}
