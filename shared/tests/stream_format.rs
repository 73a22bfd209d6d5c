//! The stream entry format, pinned: the bytes of an entry as this format
//! version writes it are checked in (`golden/stream_entry_v1.hex`), and every
//! build must both write exactly those bytes for the same event and read
//! them back to the same event (owned and in place). Entries outlive the
//! build that wrote them (a stream holds them across a deploy), so a
//! reordered or retyped field in `EnrichedEvent` must fail here rather than
//! in a worker reading an older gateway's entries.

use chrono::{TimeZone, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::stream_codec::{self, FORMAT_VERSION_STR};
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

fn golden_bytes() -> Vec<u8> {
    let hex = include_str!("golden/stream_entry_v1.hex");
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

#[test]
fn this_build_writes_the_checked_in_bytes() {
    let written = stream_codec::encode(&golden_event()).expect("encodes");
    let hex: String = written.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        written,
        golden_bytes(),
        "the stream format changed; this build writes {hex}"
    );
    assert_eq!(FORMAT_VERSION_STR, "1");
}

#[test]
fn this_build_reads_the_checked_in_bytes() {
    let bytes = golden_bytes();
    let owned = stream_codec::decode(Some(b"1"), Some(&bytes)).expect("decodes");
    assert_eq!(owned, golden_event());
    let in_place = stream_codec::decode_ref(Some(b"1"), Some(&bytes)).expect("decodes in place");
    assert_eq!(in_place, golden_event().as_ref());
}
