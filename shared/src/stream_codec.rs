//! The stream entry format: two fields, `v` (the format version, ASCII
//! digits) and `e` (the payload, MessagePack written by rmp-serde). Two
//! versions exist (ADR 0002):
//!
//! - **1**, one event: the [`EnrichedEvent`] as a MessagePack array. The
//!   worker writes its dead letters in it, one event each.
//! - **2**, one request: `[request_id, [event, …]]`, the events as in
//!   version 1 but with `request_id` nil (it is the request's, written once).
//!   The gateway writes one such entry per request, so a batch costs one
//!   `XADD`, one delivery and one `XACK`, and lives on one key. Concurrent
//!   single-event requests are written together as one such entry (the
//!   gateway's group commit): its `request_id` is nil and each event keeps
//!   its own, which a reader takes over the entry's.
//!
//! Readers take both. Decoding never panics: whatever bytes a stream holds
//! (an entry written by hand, by a newer gateway, or truncated), the worker
//! gets a [`DecodeError`] saying what was wrong and dead-letters the entry
//! instead of stopping.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::event::{EnrichedEvent, EnrichedEventRef};

/// The stream field holding the format version.
pub const FIELD_VERSION: &str = "v";
/// The stream field holding the payload.
pub const FIELD_EVENT: &str = "e";
/// The version of a one-event entry ([`encode`]), as written to the stream.
pub const FORMAT_V1: &str = "1";
/// The version of a one-request entry ([`EntryWriter`]), as written to the stream.
pub const FORMAT_V2: &str = "2";

/// MessagePack markers the packed header is written with.
const FIXARRAY_2: u8 = 0x92;
const ARRAY32: u8 = 0xdd;
const NIL: u8 = 0xc0;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode event for the stream: {0}")]
pub struct EncodeError(#[from] rmp_serde::encode::Error);

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stream entry has no `{0}` field")]
    MissingField(&'static str),
    #[error(
        "stream entry has format version {0:?}; this build reads versions {FORMAT_V1} and {FORMAT_V2}"
    )]
    UnsupportedVersion(String),
    #[error("stream entry payload is not a valid event: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("stream entry holds no event")]
    Empty,
}

/// Encodes one event as a version-1 payload.
pub fn encode(event: &EnrichedEvent) -> Result<Vec<u8>, EncodeError> {
    encode_ref(&event.as_ref())
}

/// [`encode`] from borrowed strings (a dead letter re-encodes an event of a
/// version-2 entry this way).
pub fn encode_ref(event: &EnrichedEventRef<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(size_hint(event));
    rmp_serde::encode::write(&mut buf, event)?;
    Ok(buf)
}

/// Events are small; a buffer of the strings' size avoids regrowth.
fn size_hint(event: &EnrichedEventRef<'_>) -> usize {
    64 + event.service.len()
        + event.message.len()
        + event.metadata.map_or(0, str::len)
        + event.event_id.map_or(0, str::len)
        + event.request_id.map_or(0, str::len)
}

/// A version-2 payload being written: the request id, then the events one
/// by one, encoded as they come (no intermediate buffer per event).
#[derive(Debug)]
pub struct EntryWriter {
    buf: Vec<u8>,
    /// Where the events' array length goes, patched by [`Self::finish`].
    count_at: usize,
    count: u32,
}

impl EntryWriter {
    /// An entry for the request `request_id`, with room for `capacity` bytes.
    pub fn new(request_id: Option<&str>, capacity: usize) -> Result<Self, EncodeError> {
        let mut buf = Vec::with_capacity(capacity.max(64));
        buf.push(FIXARRAY_2);
        rmp_serde::encode::write(&mut buf, &request_id)?;
        let count_at = buf.len() + 1;
        // array32 always: the count is only known at the end, and five bytes
        // per request are cheaper than moving the events to fit a shorter header.
        buf.extend_from_slice(&[ARRAY32, 0, 0, 0, 0]);
        Ok(Self {
            buf,
            count_at,
            count: 0,
        })
    }

    /// An entry whose request id is nil, for events that carry their own
    /// ([`Self::push_encoded`]): several requests written together.
    pub fn grouped(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(64));
        buf.extend_from_slice(&[FIXARRAY_2, NIL, ARRAY32, 0, 0, 0, 0]);
        Self {
            buf,
            count_at: 3,
            count: 0,
        }
    }

    /// Appends `event`; its `request_id` is not written (the entry's is).
    pub fn push(&mut self, event: &EnrichedEvent) -> Result<(), EncodeError> {
        let event = EnrichedEventRef {
            request_id: None,
            ..event.as_ref()
        };
        self.buf.reserve(size_hint(&event));
        rmp_serde::encode::write(&mut self.buf, &event)?;
        self.count += 1;
        Ok(())
    }

    /// Appends an event already encoded by [`encode`] (version 1, its own
    /// `request_id` kept): how the gateway's group commit puts several
    /// requests' events in one entry without encoding them again.
    pub fn push_encoded(&mut self, event: &[u8]) {
        self.buf.extend_from_slice(event);
        self.count += 1;
    }

    /// Events pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished payload, to be written with version [`FORMAT_V2`].
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// How many events an entry holds, read from its header without decoding
/// it: 1 for version 1, and for anything whose header does not parse (the
/// decode says what is wrong with it).
pub fn event_count(version: Option<&[u8]>, payload: Option<&[u8]>) -> usize {
    fn packed_count(payload: &[u8]) -> Option<usize> {
        let (&first, rest) = payload.split_first()?;
        if first != FIXARRAY_2 {
            return None;
        }
        // The request id: nil, or a string of one of four header sizes.
        let (&marker, rest) = rest.split_first()?;
        let skip = match marker {
            0xc0 => 0,
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(*rest.first()?) + 1,
            0xda => usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)) + 2,
            0xdb => usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()? + 4,
            _ => return None,
        };
        let rest = rest.get(skip..)?;
        match *rest.first()? {
            marker @ 0x90..=0x9f => Some(usize::from(marker & 0x0f)),
            0xdc => Some(usize::from(u16::from_be_bytes(
                rest.get(1..3)?.try_into().ok()?,
            ))),
            ARRAY32 => usize::try_from(u32::from_be_bytes(rest.get(1..5)?.try_into().ok()?)).ok(),
            _ => None,
        }
    }
    match (version, payload) {
        (Some(v), Some(payload)) if v == FORMAT_V2.as_bytes() => {
            packed_count(payload).unwrap_or(1).max(1)
        }
        _ => 1,
    }
}

/// The mean events per entry of the entries seen lately: a moving average
/// that follows a rise at once and a fall slowly (each smaller sample
/// closes 1/16 of the gap), so what is sized by it (a read's `COUNT`, the
/// backlog against `STREAM_HIGH_WATER`) errs towards more events, not fewer.
#[derive(Debug)]
pub struct EventsPerEntry {
    /// In thousandths of an event; at least 1000.
    milli: AtomicU64,
}

impl Default for EventsPerEntry {
    fn default() -> Self {
        Self {
            milli: AtomicU64::new(1000),
        }
    }
}

impl EventsPerEntry {
    /// Counts `entries` entries holding `events` events in all.
    pub fn observe(&self, entries: usize, events: usize) {
        if entries == 0 {
            return;
        }
        let sample = (events as u64).saturating_mul(1000) / entries as u64;
        let old = self.milli.load(Ordering::Relaxed);
        let new = if sample >= old {
            sample
        } else {
            old - (old - sample).div_ceil(16)
        };
        // A lost update under contention only skips one sample.
        self.milli.store(new.max(1000), Ordering::Relaxed);
    }

    /// The mean, at least 1.
    pub fn get(&self) -> f64 {
        self.milli() as f64 / 1000.0
    }

    /// The events `entries` entries hold at the mean.
    pub fn events_in(&self, entries: u64) -> u64 {
        u64::try_from(u128::from(entries) * u128::from(self.milli()) / 1000).unwrap_or(u64::MAX)
    }

    /// The entries that hold about `events` events at the mean (at least 1).
    pub fn entries_for(&self, events: usize) -> usize {
        let entries = (events as u64).saturating_mul(1000).div_ceil(self.milli());
        usize::try_from(entries).unwrap_or(usize::MAX).max(1)
    }

    fn milli(&self) -> u64 {
        self.milli.load(Ordering::Relaxed).max(1000)
    }
}

/// A version-2 payload read in place.
#[derive(Deserialize)]
struct PackedRef<'a> {
    #[serde(borrow)]
    request_id: Option<&'a str>,
    #[serde(borrow)]
    events: Vec<EnrichedEventRef<'a>>,
}

/// Decodes an entry from its two fields, as read from the stream: its
/// events, in the order they were written.
pub fn decode(
    version: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<Vec<EnrichedEvent>, DecodeError> {
    Ok(decode_ref(version, payload)?
        .into_iter()
        .map(EnrichedEventRef::into_owned)
        .collect())
}

/// [`decode`] without copying: the events' strings borrow `payload`, and
/// each carries its entry's request id.
pub fn decode_ref<'a>(
    version: Option<&[u8]>,
    payload: Option<&'a [u8]>,
) -> Result<Vec<EnrichedEventRef<'a>>, DecodeError> {
    let version = version.ok_or(DecodeError::MissingField(FIELD_VERSION))?;
    let payload = payload.ok_or(DecodeError::MissingField(FIELD_EVENT))?;
    if version == FORMAT_V1.as_bytes() {
        return Ok(vec![rmp_serde::from_slice(payload)?]);
    }
    if version != FORMAT_V2.as_bytes() {
        return Err(DecodeError::UnsupportedVersion(
            String::from_utf8_lossy(version).chars().take(32).collect(),
        ));
    }
    let PackedRef {
        request_id,
        mut events,
    } = rmp_serde::from_slice(payload)?;
    if events.is_empty() {
        return Err(DecodeError::Empty);
    }
    for event in &mut events {
        event.request_id = event.request_id.or(request_id);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn sample() -> EnrichedEvent {
        EnrichedEvent {
            id: Uuid::now_v7(),
            service: "checkout".into(),
            message: "paid".into(),
            ts: Utc.timestamp_millis_opt(1_764_000_000_123).unwrap(),
            ingested_at: Utc.timestamp_micros(1_764_000_000_123_456).unwrap(),
            event_id: Some("order-1".into()),
            metadata: Some(r#"{"amount":12}"#.into()),
            request_id: Some("req-1".into()),
        }
    }

    fn packed(request_id: Option<&str>, events: &[EnrichedEvent]) -> Vec<u8> {
        let mut writer = EntryWriter::new(request_id, 0).unwrap();
        for event in events {
            writer.push(event).unwrap();
        }
        assert_eq!(writer.len() as usize, events.len());
        writer.finish()
    }

    #[test]
    fn version_1_round_trips() {
        let event = sample();
        let bytes = encode(&event).unwrap();
        assert_eq!(
            decode(Some(b"1"), Some(&bytes)).unwrap(),
            vec![event.clone()]
        );
        assert_eq!(
            decode_ref(Some(b"1"), Some(&bytes)).unwrap(),
            vec![event.as_ref()]
        );
        let without_options = EnrichedEvent {
            event_id: None,
            metadata: None,
            request_id: None,
            ..event
        };
        let bytes = encode(&without_options).unwrap();
        assert_eq!(
            decode_ref(Some(b"1"), Some(&bytes)).unwrap(),
            vec![without_options.as_ref()]
        );
    }

    #[test]
    fn a_grouped_entry_keeps_each_events_request_id() {
        let first = EnrichedEvent {
            request_id: Some("req-a".into()),
            ..sample()
        };
        let second = EnrichedEvent {
            request_id: Some("req-b".into()),
            message: "second".into(),
            ..sample()
        };
        assert_eq!(
            EntryWriter::grouped(0).finish(),
            EntryWriter::new(None, 0).unwrap().finish()
        );
        let mut writer = EntryWriter::grouped(0);
        writer.push_encoded(&encode(&first).unwrap());
        writer.push_encoded(&encode(&second).unwrap());
        let bytes = writer.finish();
        assert_eq!(event_count(Some(b"2"), Some(&bytes)), 2);
        let events = decode(Some(b"2"), Some(&bytes)).unwrap();
        assert_eq!(events, vec![first, second]);
    }

    #[test]
    fn version_2_carries_the_request_id_once() {
        let first = sample();
        let second = EnrichedEvent {
            id: Uuid::now_v7(),
            event_id: None,
            metadata: None,
            ..sample()
        };
        let bytes = packed(Some("req-1"), &[first.clone(), second.clone()]);
        assert_eq!(
            bytes.windows(5).filter(|w| w == b"req-1").count(),
            1,
            "the request id is written once"
        );
        assert_eq!(
            decode(Some(b"2"), Some(&bytes)).unwrap(),
            vec![first, second]
        );
        let events = decode_ref(Some(b"2"), Some(&bytes)).unwrap();
        assert!(events.iter().all(|e| e.request_id == Some("req-1")));
        // Without a request id, the events have none.
        let bytes = packed(None, &[sample()]);
        assert_eq!(
            decode_ref(Some(b"2"), Some(&bytes)).unwrap()[0].request_id,
            None
        );
    }

    #[test]
    fn the_mean_follows_a_rise_at_once_and_a_fall_slowly() {
        let mean = EventsPerEntry::default();
        assert_eq!(mean.get(), 1.0);
        assert_eq!(mean.entries_for(2500), 2500);
        mean.observe(1, 10);
        assert_eq!(mean.get(), 10.0);
        assert_eq!(mean.events_in(3), 30);
        assert_eq!(mean.entries_for(2500), 250);
        mean.observe(4, 4);
        assert!(mean.get() < 10.0 && mean.get() > 9.0, "{}", mean.get());
        for _ in 0..200 {
            mean.observe(1, 1);
        }
        assert!(mean.get() < 1.01, "{}", mean.get());
        mean.observe(0, 0);
        assert!(mean.get() >= 1.0);
        assert_eq!(mean.entries_for(0), 1);
    }

    #[test]
    fn counts_events_without_decoding() {
        for n in [1usize, 2, 15, 16, 300] {
            let events: Vec<_> = (0..n).map(|_| sample()).collect();
            for request_id in [
                None,
                Some("r"),
                Some(&*"x".repeat(40)),
                Some(&*"y".repeat(300)),
            ] {
                let bytes = packed(request_id, &events);
                assert_eq!(event_count(Some(b"2"), Some(&bytes)), n);
            }
        }
        // By hand, with the shorter array headers another writer may use.
        assert_eq!(event_count(Some(b"2"), Some(b"\x92\xc0\x93")), 3);
        assert_eq!(event_count(Some(b"2"), Some(b"\x92\xa1r\xdc\x01\x00")), 256);
        let one = encode(&sample()).unwrap();
        assert_eq!(event_count(Some(b"1"), Some(&one)), 1);
        assert_eq!(event_count(Some(b"2"), Some(b"\x92\xd9")), 1);
        assert_eq!(event_count(Some(b"2"), Some(b"")), 1);
        assert_eq!(event_count(None, Some(&one)), 1);
    }

    #[test]
    fn says_what_is_wrong() {
        let bytes = encode(&sample()).unwrap();
        assert!(matches!(
            decode(None, Some(&bytes)),
            Err(DecodeError::MissingField("v"))
        ));
        assert!(matches!(
            decode(Some(b"1"), None),
            Err(DecodeError::MissingField("e"))
        ));
        let err = decode(Some(b"3"), Some(&bytes)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream entry has format version \"3\"; this build reads versions 1 and 2"
        );
        assert!(matches!(
            decode(Some(b"1"), Some(&bytes[..bytes.len() / 2])),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Some(b"1"), Some(b"\xc1garbage")),
            Err(DecodeError::Malformed(_))
        ));
        // A version-1 payload is not a version-2 one, nor the reverse.
        assert!(matches!(
            decode_ref(Some(b"2"), Some(&bytes)),
            Err(DecodeError::Malformed(_))
        ));
        let two = packed(Some("r"), &[sample(), sample()]);
        assert!(decode_ref(Some(b"1"), Some(&two)).is_err());
        assert!(matches!(
            decode_ref(Some(b"2"), Some(&two[..two.len() - 3])),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_ref(Some(b"2"), Some(&packed(Some("r"), &[]))),
            Err(DecodeError::Empty)
        ));
    }

    fn any_event() -> impl Strategy<Value = EnrichedEvent> {
        (
            any::<u128>(),
            "[A-Za-z0-9._:-]{1,100}",
            "\\PC{1,200}",
            -62_000_000_000_000i64..250_000_000_000_000i64,
            0i64..4_000_000_000_000_000i64,
            proptest::option::of("[ -~]{1,128}"),
            proptest::option::of(
                "\\PC{0,50}".prop_map(|s| serde_json::json!({ "k": s }).to_string()),
            ),
            proptest::option::of("[ -~]{1,64}"),
        )
            .prop_map(
                |(id, service, message, ts, ing, event_id, metadata, request_id)| EnrichedEvent {
                    id: Uuid::from_u128(id),
                    service,
                    message,
                    ts: Utc.timestamp_millis_opt(ts).unwrap(),
                    ingested_at: Utc.timestamp_micros(ing).unwrap(),
                    event_id,
                    metadata,
                    request_id,
                },
            )
    }

    proptest! {
        #[test]
        fn any_event_round_trips(event in any_event()) {
            let bytes = encode(&event).unwrap();
            prop_assert_eq!(decode_ref(Some(b"1"), Some(&bytes)).unwrap(), vec![event.as_ref()]);
            prop_assert_eq!(decode(Some(b"1"), Some(&bytes)).unwrap(), vec![event]);
        }

        #[test]
        fn any_request_round_trips(
            request_id in proptest::option::of("[ -~]{1,64}"),
            events in proptest::collection::vec(any_event(), 1..20),
        ) {
            let bytes = packed(request_id.as_deref(), &events);
            let expected: Vec<EnrichedEvent> = events
                .into_iter()
                .map(|e| EnrichedEvent { request_id: request_id.clone(), ..e })
                .collect();
            prop_assert_eq!(decode(Some(b"2"), Some(&bytes)).unwrap(), expected);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for version in [&b"1"[..], b"2"] {
                let owned = decode(Some(version), Some(&bytes));
                let borrowed = decode_ref(Some(version), Some(&bytes));
                // Both read the same format: one accepts exactly what the other does.
                prop_assert_eq!(owned.is_ok(), borrowed.is_ok());
            }
        }
    }
}
