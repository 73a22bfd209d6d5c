//! Rows in PostgreSQL's binary `COPY` format, the cheapest way to hand
//! PostgreSQL many rows: no text parsing on the server, one buffer per batch.
//!
//! Invariant: the column order is the `events` table's
//! (`id, dedup_key, event_id, service, message, metadata, ts, ingested_at`),
//! and [`COLUMNS`] names it, so the `COPY` statement and the buffer agree.

use chrono::{DateTime, Utc};
use eventline_shared::EnrichedEventRef;
use uuid::Uuid;

/// The column list every `COPY` of [`encode`]'s output must use.
pub const COLUMNS: &str = "id, dedup_key, event_id, service, message, metadata, ts, ingested_at";

/// One event ready for the database: the decoded event (borrowing the stream
/// entry it was read from) and its dedup key.
#[derive(Debug, Clone, Copy)]
pub struct EventRow<'a> {
    pub event: EnrichedEventRef<'a>,
    pub dedup_key: Uuid,
}

impl<'a> EventRow<'a> {
    pub fn new(event: EnrichedEventRef<'a>) -> Self {
        let dedup_key = event.dedup_key();
        EventRow { event, dedup_key }
    }
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// `jsonb`'s binary format: a version byte, then the JSON text.
const JSONB_VERSION: u8 = 1;
const FIELDS: i16 = 8;

/// The whole `COPY … FROM STDIN (FORMAT binary)` payload for `rows`.
pub fn encode(rows: &[EventRow]) -> Vec<u8> {
    let size: usize = rows.iter().map(row_size).sum();
    let mut buf = Vec::with_capacity(SIGNATURE.len() + 8 + size + 2);
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for row in rows {
        let e = &row.event;
        buf.extend_from_slice(&FIELDS.to_be_bytes());
        uuid(&mut buf, e.id);
        uuid(&mut buf, row.dedup_key);
        opt_text(&mut buf, e.event_id);
        text(&mut buf, e.service);
        text(&mut buf, e.message);
        match e.metadata {
            Some(json) => {
                len(&mut buf, json.len() + 1);
                buf.push(JSONB_VERSION);
                buf.extend_from_slice(json.as_bytes());
            }
            None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        timestamp(&mut buf, e.ts);
        timestamp(&mut buf, e.ingested_at);
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
    buf
}

fn row_size(row: &EventRow) -> usize {
    let e = &row.event;
    2 + 8 * 4
        + 16 * 2
        + e.event_id.map_or(0, str::len)
        + e.service.len()
        + e.message.len()
        + e.metadata.map_or(0, |m| m.len() + 1)
        + 8 * 2
}

fn len(buf: &mut Vec<u8>, n: usize) {
    // Field sizes are bounded by the event limits (kilobytes), far below i32::MAX;
    // saturating keeps a corrupt giant value a server-side error, not a panic.
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    buf.extend_from_slice(&n.to_be_bytes());
}

fn uuid(buf: &mut Vec<u8>, id: Uuid) {
    len(buf, 16);
    buf.extend_from_slice(id.as_bytes());
}

fn text(buf: &mut Vec<u8>, s: &str) {
    len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn opt_text(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(buf, s),
        None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn timestamp(buf: &mut Vec<u8>, t: DateTime<Utc>) {
    len(buf, 8);
    let micros = t.timestamp_micros().saturating_sub(PG_EPOCH_OFFSET_MICROS);
    buf.extend_from_slice(&micros.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use eventline_shared::EnrichedEvent;

    #[test]
    fn encodes_header_fields_and_trailer() {
        let event = EnrichedEvent {
            id: Uuid::from_u128(1),
            service: "s".into(),
            message: "m".into(),
            ts: Utc.timestamp_opt(946_684_800, 0).unwrap(),
            ingested_at: Utc.timestamp_opt(946_684_801, 0).unwrap(),
            event_id: None,
            metadata: Some("{}".into()),
            request_id: None,
        };
        let buf = encode(&[EventRow::new(event.as_ref())]);
        assert!(buf.starts_with(SIGNATURE));
        assert!(buf.ends_with(&[0xff, 0xff]));
        let body = &buf[SIGNATURE.len() + 8..buf.len() - 2];
        assert_eq!(&body[..2], &8i16.to_be_bytes());
        // id: length 16, then the bytes.
        assert_eq!(&body[2..6], &16i32.to_be_bytes());
        assert_eq!(body[21], 1);
        // event_id is NULL.
        let after_keys = 2 + 2 * 20;
        assert_eq!(&body[after_keys..after_keys + 4], &(-1i32).to_be_bytes());
        // ts is PostgreSQL's epoch: zero; ingested_at one second later.
        let ts = &body[body.len() - 24..];
        assert_eq!(&ts[..4], &8i32.to_be_bytes());
        assert_eq!(&ts[4..12], &0i64.to_be_bytes());
        assert_eq!(&ts[16..24], &1_000_000i64.to_be_bytes());
        // jsonb: version byte then the text.
        let jsonb = &body[body.len() - 24 - 7..body.len() - 24];
        assert_eq!(jsonb, &[0, 0, 0, 3, 1, b'{', b'}']);
        // The size estimate is exact, so the buffer never regrows.
        let row = EventRow::new(event.as_ref());
        assert_eq!(buf.len(), SIGNATURE.len() + 8 + 2 + row_size(&row));
    }
}
