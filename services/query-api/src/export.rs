//! `GET /v1/events/export?format=ndjson|csv&…`: every event a search
//! selects over its whole window, streamed as NDJSON or CSV.
//!
//! The search's own parameters (`service`, `from`, `to`, `order`, `q`,
//! `metadata.*`) with `/v1/events`' limits; `limit`, `cursor` and `page`
//! are refused, since the export is the whole window. The body is produced
//! page by page in the keyset order (`(ts, id)`, [`crate::events::read_page`]),
//! each page read only when the client has taken the previous one, so the
//! server holds one page at a time and no database connection between
//! pages, whatever the export's size; the window is resolved once, so a
//! default "now" does not move while it runs.
//!
//! Invariant: each event of the window once. A failure after the first
//! byte cannot become an error status any more: the body is then cut short
//! without its final chunk, so the client sees an incomplete download,
//! never a silently short one.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::app::{AppState, Shared};
use crate::cursor::Position;
use crate::error::ApiError;
use crate::events::{EventRow, read_page};
use crate::params::{EventQuery, Params, QueryLimits};

/// Rows read per page.
pub const PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// The CSV columns, in order.
const CSV_HEADER: &str = "id,timestamp,service,message,metadata,event_id,ingested_at\r\n";

/// Parses the export's parameters: `format` and the search's own.
fn parse(raw: Option<&str>, limits: &QueryLimits) -> Result<(Format, EventQuery), ApiError> {
    let params = Params::parse(raw)?;
    for refused in ["limit", "pageSize", "page", "cursor"] {
        if params.single(refused)?.is_some() {
            return Err(ApiError::bad(
                "unknown_parameter",
                refused,
                format!("`{refused}` does not apply to an export, which covers the whole window"),
            ));
        }
    }
    let format = match params.single("format")? {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_format",
                "format",
                "`format` is `ndjson` or `csv`",
            ));
        }
    };
    // The rest is a search: parsed by the same code as `/v1/events`.
    let rest: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes()).filter(|(k, _)| k != "format"),
        )
        .finish();
    let mut query = EventQuery::parse(Some(&rest), limits, Utc::now())?;
    query.limit = PAGE;
    Ok((format, query))
}

/// `GET /v1/events/export`.
pub async fn export(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (format, query) = parse(raw.as_deref(), &state.query.limits())?;
    let services = if query.services.is_empty() {
        crate::events::services_in_window(&state, &query.window).await?
    } else {
        query.services.clone()
    };
    // The first page before the status line: a database that fails at once
    // is still a 503, not a cut-short 200.
    let first = read_page(&state, &query, &services).await?;
    let filename = format!(
        "events-{}-{}.{}",
        query.window.from.format("%Y%m%dT%H%M%SZ"),
        query.window.to.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    let pages = Pages {
        state: state.clone(),
        query,
        services,
        format,
        pending: Some(first),
        header: format == Format::Csv,
        rows: 0,
        done: false,
    };
    let body = futures_util::stream::unfold(pages, |mut pages| async move {
        pages.next().await.map(|chunk| (chunk, pages))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The export's state between chunks.
struct Pages {
    state: Shared,
    /// The search, its `after` moved to the end of each page sent.
    query: EventQuery,
    services: Vec<String>,
    format: Format,
    /// A page read but not yet sent (the first, read before the headers).
    pending: Option<Vec<EventRow>>,
    /// The CSV header is still to be sent.
    header: bool,
    rows: u64,
    done: bool,
}

type Chunk = Result<Bytes, std::io::Error>;

impl Pages {
    /// The next chunk of the body: one page rendered; `None` at the end.
    async fn next(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        let rows = match self.pending.take() {
            Some(rows) => rows,
            None => match read_page(&self.state, &self.query, &self.services).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, rows = self.rows, "export cut short");
                    self.done = true;
                    return Some(Err(std::io::Error::other("export failed")));
                }
            },
        };
        let page = self.query.limit as usize;
        let more = rows.len() > page;
        let mut out = String::with_capacity(rows.len().min(page) * 256 + CSV_HEADER.len());
        if std::mem::take(&mut self.header) {
            out.push_str(CSV_HEADER);
        }
        let mut last = None;
        for row in rows.into_iter().take(page) {
            last = Some(Position {
                ts: row.ts,
                id: row.id,
            });
            self.rows += 1;
            render(self.format, row, &mut out);
        }
        if more {
            self.query.after = last;
        } else {
            self.done = true;
            observe(&self.state, self.rows);
        }
        (!out.is_empty()).then(|| Ok(Bytes::from(out)))
    }
}

fn observe(state: &AppState, rows: u64) {
    state
        .metrics
        .rows_returned
        .with_label_values(&["/v1/events/export"])
        .observe(rows as f64);
}

/// Appends one event in `format`.
fn render(format: Format, row: EventRow, out: &mut String) {
    match format {
        Format::Ndjson => {
            let event = row.into_out();
            // An EventOut always serializes.
            if let Ok(line) = serde_json::to_string(&event) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        Format::Csv => {
            let event = row.into_out();
            let metadata = event.metadata.as_ref().map(|m| m.get()).unwrap_or("");
            let fields = [
                event.id.to_string(),
                event.timestamp,
                event.service,
                event.message,
                metadata.to_owned(),
                event.event_id.unwrap_or_default(),
                event.ingested_at,
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(field, out);
            }
            out.push_str("\r\n");
        }
    }
}

/// RFC 4180: a field holding a comma, a quote or a line break is quoted,
/// its quotes doubled. Values are written verbatim otherwise.
fn csv_field(value: &str, out: &mut String) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QueryLimits {
        QueryLimits {
            max_range: chrono::TimeDelta::days(31),
            max_services: 50,
            max_service_len: 100,
            max_page_offset: 1000,
        }
    }

    #[test]
    fn parameters() {
        let (format, q) = parse(Some("format=csv&service=a&q=x"), &limits()).unwrap();
        assert_eq!(format, Format::Csv);
        assert_eq!(q.services, ["a"]);
        assert_eq!(q.limit, PAGE);
        assert_eq!(parse(None, &limits()).unwrap().0, Format::Ndjson);
        for (bad, field) in [
            ("format=xml", "format"),
            ("limit=5", "limit"),
            ("cursor=abc", "cursor"),
            ("page=2", "page"),
            ("nope=1", "nope"),
        ] {
            match parse(Some(bad), &limits()) {
                Err(ApiError::BadRequest { field: f, .. }) => assert_eq!(f, field, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn csv_quoting() {
        let mut out = String::new();
        csv_field("plain", &mut out);
        out.push('|');
        csv_field("a,b", &mut out);
        out.push('|');
        csv_field("say \"hi\"\nbye", &mut out);
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\nbye\"");
    }
}
