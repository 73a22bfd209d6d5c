//! The machine's raw ceilings, measured with the same events as a run:
//!
//! - [`copy_ceiling`]: a bare `COPY … FROM STDIN` (text format) of the
//!   generated rows into a scratch table shaped like `events` (partitioned
//!   by day; its unique key and every index copied from `events`, so the
//!   GIN index on `metadata` too), in chunks of the worker's batch
//!   size, one transaction each. Rows are encoded before the clock starts:
//!   only PostgreSQL's work is timed. The table is dropped afterwards.
//! - [`entry_size`]: the mean size of the stream entry (MessagePack) the
//!   gateway writes for these events, the payload for `redis-benchmark`
//!   XADD.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventline_shared::EnrichedEvent;
use serde::Serialize;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::event_gen::{EventGen, EventShape, service_names};

/// One generated event as the worker would store it.
struct Row {
    event: EnrichedEvent,
    dedup_key: Uuid,
}

fn rows(shape: &EventShape, count: usize, seed: u64) -> Vec<Row> {
    let tag = format!("ceil{:06x}", seed & 0xff_ffff);
    let services = service_names(&tag, shape.services);
    // Re-sends are dropped before the insert by the worker; the ceiling
    // stores distinct events.
    let shape = EventShape {
        duplicate_share: 0.0,
        ..shape.clone()
    };
    let mut generator = EventGen::new(shape, services, &tag, 0, seed);
    let now = Utc::now();
    (0..count)
        .map(|_| {
            let generated = generator.next_event();
            let event = to_enriched(&generated.json, now);
            let dedup_key = generated.dedup_key.unwrap_or(event.id);
            Row { event, dedup_key }
        })
        .collect()
}

fn to_enriched(json: &[u8], now: DateTime<Utc>) -> EnrichedEvent {
    let v: serde_json::Value = serde_json::from_slice(json).expect("generated events are JSON");
    let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
    EnrichedEvent {
        id: Uuid::now_v7(),
        service: text("service").unwrap_or_default(),
        message: text("message").unwrap_or_default(),
        ts: now,
        ingested_at: now,
        event_id: text("event_id"),
        metadata: v.get("metadata").map(|m| m.to_string()),
        request_id: Some(format!("{:032x}", Uuid::now_v7().as_u128())),
    }
}

/// Mean bytes of the MessagePack stream entry for `count` generated events.
pub fn entry_size(shape: &EventShape, count: usize) -> usize {
    let rows = rows(shape, count.max(1), 11);
    let total: usize = rows
        .iter()
        .map(|r| eventline_shared::stream_codec::encode(&r.event).map_or(0, |b| b.len()))
        .sum();
    total / rows.len()
}

/// PostgreSQL's COPY text format: backslash, tab, newline and carriage
/// return escaped.
fn push_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn push_row(out: &mut String, r: &Row) {
    let e = &r.event;
    let _ = write!(out, "{}\t{}\t", e.id, r.dedup_key);
    match &e.event_id {
        Some(id) => push_text(out, id),
        None => out.push_str("\\N"),
    }
    out.push('\t');
    push_text(out, &e.service);
    out.push('\t');
    push_text(out, &e.message);
    out.push('\t');
    match &e.metadata {
        Some(m) => push_text(out, m),
        None => out.push_str("\\N"),
    }
    let _ = writeln!(
        out,
        "\t{}\t{}",
        e.ts.to_rfc3339(),
        e.ingested_at.to_rfc3339()
    );
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyCeiling {
    pub rows: usize,
    pub chunk: usize,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub bytes_per_row: f64,
}

/// COPYs `count` rows in chunks of `chunk` into a scratch table and reports
/// rows per second.
pub async fn copy_ceiling(
    database_url: &str,
    shape: &EventShape,
    count: usize,
    chunk: usize,
) -> anyhow::Result<CopyCeiling> {
    let rows = rows(shape, count, 5);
    let chunks: Vec<String> = rows
        .chunks(chunk.max(1))
        .map(|c| {
            let mut text = String::with_capacity(c.len() * 300);
            for r in c {
                push_row(&mut text, r);
            }
            text
        })
        .collect();
    let bytes: usize = chunks.iter().map(String::len).sum();
    let mut conn = PgConnection::connect(database_url).await?;
    let table = format!("eventline_copy_ceiling_{}", std::process::id());
    let today = Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    // Identifiers and dates are ours, not user input.
    let ddl = format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES) PARTITION BY RANGE (ts);
         CREATE TABLE {t}_d0 PARTITION OF {t} FOR VALUES FROM ('{d0} 00:00+00') TO ('{d1} 00:00+00');
         CREATE TABLE {t}_d1 PARTITION OF {t} FOR VALUES FROM ('{d1} 00:00+00') TO ('{d2} 00:00+00');
         CREATE TABLE {t}_default PARTITION OF {t} DEFAULT;",
        t = table,
        d0 = day(today),
        d1 = day(today + chrono::Days::new(1)),
        d2 = day(today + chrono::Days::new(2)),
    );
    conn.execute(sqlx::AssertSqlSafe(ddl)).await?;
    let statement = format!(
        "COPY {table} (id, dedup_key, event_id, service, message, metadata, ts, ingested_at) FROM STDIN"
    );
    let result = async {
        let started = Instant::now();
        for text in &chunks {
            let mut copy = conn.copy_in_raw(&statement).await?;
            copy.send(text.as_bytes()).await?;
            copy.finish().await?;
        }
        Ok::<Duration, sqlx::Error>(started.elapsed())
    }
    .await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .await?;
    let elapsed = result?;
    Ok(CopyCeiling {
        rows: count,
        chunk,
        seconds: elapsed.as_secs_f64(),
        rows_per_second: count as f64 / elapsed.as_secs_f64(),
        bytes_per_row: bytes as f64 / count.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_rows_have_eight_escaped_columns() {
        let now = Utc::now();
        let mut e = to_enriched(
            br#"{"service":"s","message":"a\tb\\c","metadata":{"k":"v\nw"}}"#,
            now,
        );
        e.event_id = None;
        let mut out = String::new();
        push_row(
            &mut out,
            &Row {
                dedup_key: e.id,
                event: e,
            },
        );
        assert!(out.ends_with('\n'));
        let columns: Vec<&str> = out.trim_end_matches('\n').split('\t').collect();
        assert_eq!(columns.len(), 8, "{out}");
        assert_eq!(columns[2], "\\N");
        assert_eq!(columns[4], "a\\tb\\\\c");
        assert_eq!(columns[5], r#"{"k":"v\\nw"}"#);
    }

    #[test]
    fn entry_sizes_grow_with_metadata() {
        use crate::event_gen::MetadataKind;
        let small = entry_size(
            &EventShape {
                metadata: MetadataKind::None,
                ..EventShape::default()
            },
            500,
        );
        let big = entry_size(
            &EventShape {
                metadata: MetadataKind::Big,
                ..EventShape::default()
            },
            100,
        );
        assert!((60..400).contains(&small), "{small}");
        assert!(big > 4000, "{big}");
    }
}
