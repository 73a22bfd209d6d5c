//! The stream entry formats, pinned: the bytes of an entry as each format
//! version writes it are checked in (`golden/stream_entry_v1.hex`, one event;
//! `golden/stream_entry_v2.hex`, one request of two events), and every build
//! must both write exactly those bytes for the same events and read them
//! back to the same events (owned and in place). Entries outlive the
//! build that wrote them (a stream holds them across a deploy), so a
//! reordered or retyped field in `EnrichedEvent` must fail here rather than
//! in a worker reading an older gateway's entries.

use chrono::{TimeZone, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::stream_codec::{self, EntryWriter, FORMAT_V1, FORMAT_V2};
use uuid::Uuid;

fn golden_event() -> EnrichedEvent {
    EnrichedEvent {
        id: Uuid::from_u128(0x0193_8a7e_1f00_7abc_8def_0123_4567_89ab),
        service: "checkout".into(),
        message: "paid ✓".into(),
        ts: Utc.timestamp_millis_opt(1_765_022_400_123).unwrap(),
        ingested_at: Utc.timestamp_micros(1_765_022_400_456_789).unwrap(),
        event_id: Some("order-42".into()),
        metadata: Some(r#"{"order":{"id":42}}"#.into()),
        request_id: Some("req-abc".into()),
    }
}

/// The second event of the version-2 entry: no `event_id`, no metadata.
fn second_event() -> EnrichedEvent {
    EnrichedEvent {
        id: Uuid::from_u128(0x0193_8a7e_1f00_7abc_8def_0123_4567_89ac),
        message: "shipped".into(),
        event_id: None,
        metadata: None,
        ..golden_event()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn golden_bytes() -> Vec<u8> {
    bytes_of(include_str!("golden/stream_entry_v1.hex"))
}

fn golden_v2_bytes() -> Vec<u8> {
    bytes_of(include_str!("golden/stream_entry_v2.hex"))
}

fn bytes_of(hex: &str) -> Vec<u8> {
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

#[test]
fn this_build_writes_the_checked_in_bytes() {
    let written = stream_codec::encode(&golden_event()).expect("encodes");
    assert_eq!(
        written,
        golden_bytes(),
        "the stream format changed; this build writes {}",
        hex_of(&written)
    );
    assert_eq!(FORMAT_V1, "1");
}

#[test]
fn this_build_writes_the_checked_in_request_entry() {
    let mut entry = EntryWriter::new(Some("req-abc"), 0).expect("encodes");
    entry.push(&golden_event()).expect("encodes");
    entry.push(&second_event()).expect("encodes");
    let written = entry.finish();
    assert_eq!(
        written,
        golden_v2_bytes(),
        "the stream format changed; this build writes {}",
        hex_of(&written)
    );
    assert_eq!(FORMAT_V2, "2");
}

#[test]
fn this_build_reads_the_checked_in_request_entry() {
    let bytes = golden_v2_bytes();
    let expected = vec![golden_event(), second_event()];
    assert_eq!(
        stream_codec::decode(Some(b"2"), Some(&bytes)).expect("decodes"),
        expected
    );
    let in_place = stream_codec::decode_ref(Some(b"2"), Some(&bytes)).expect("decodes in place");
    let expected: Vec<_> = expected.iter().map(EnrichedEvent::as_ref).collect();
    assert_eq!(in_place, expected);
    assert_eq!(stream_codec::event_count(Some(b"2"), Some(&bytes)), 2);
}

#[test]
fn this_build_reads_the_checked_in_bytes() {
    let bytes = golden_bytes();
    let owned = stream_codec::decode(Some(b"1"), Some(&bytes)).expect("decodes");
    assert_eq!(owned, vec![golden_event()]);
    let in_place = stream_codec::decode_ref(Some(b"1"), Some(&bytes)).expect("decodes in place");
    assert_eq!(in_place, vec![golden_event().as_ref()]);
}
