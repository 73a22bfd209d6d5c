//! The properties the fuzz targets (`fuzz/`) check on arbitrary bytes, in one
//! place so `make test` replays the checked-in corpus (`fuzz/corpus/`) through
//! exactly the same code: each function panics when a property fails.
//!
//! - the validator returns for any bytes, and what it accepts obeys the rules;
//! - the batch splitter returns for any bytes in both formats, never more
//!   items than the limit, and each item validates without panicking;
//! - the stream decoder returns for any payload, and what it decodes
//!   re-encodes to an equal event; the worker's in-place decoder accepts
//!   exactly the same payloads and reads the same event from them;
//! - the OTLP decoder returns for any bytes in both encodings, and what it
//!   decodes maps to events and rejections that account for every record,
//!   each event within the contract's limits and decodable from the stream.

use chrono::SubsecRound;
use eventline_shared::EnrichedEvent;
use eventline_shared::ValidEvent;
use eventline_shared::stream_codec::{EntryWriter, decode, decode_ref, encode};
use eventline_shared::validate::{EventLimits, parse_event, parse_event_str};

use crate::batch;
use crate::body::Format;
use crate::otlp;

pub fn validate_event(data: &[u8]) {
    let limits = EventLimits::default();
    if let Ok(event) = parse_event(data, &limits, chrono::Utc::now()) {
        assert!(!event.service().is_empty() && event.service().len() <= limits.max_service_len);
        assert!(!event.message().is_empty() && !event.message().contains('\0'));
        assert!(event.message().chars().count() <= limits.max_message_chars);
        if let Some(metadata) = event.metadata() {
            assert!(metadata.len() <= limits.max_metadata_bytes);
            assert!(metadata.starts_with('{'));
        }
    }
}

pub fn batch_split(data: &[u8]) {
    let limits = EventLimits::default();
    for format in [Format::Json, Format::Ndjson] {
        if let Ok(items) = batch::split(data, format, 1000) {
            assert!(!items.is_empty() && items.len() <= 1000);
            for item in items.into_iter().flatten() {
                let _ = parse_event_str(item, &limits, chrono::Utc::now());
            }
        }
    }
}

pub fn stream_decode(data: &[u8]) {
    for version in [&b"1"[..], b"2"] {
        let in_place = decode_ref(Some(version), Some(data));
        let events = match (decode(Some(version), Some(data)), in_place) {
            (Ok(events), Ok(borrowed)) => {
                assert!(!events.is_empty(), "an entry decodes to at least one event");
                let owned: Vec<_> = events.iter().map(EnrichedEvent::as_ref).collect();
                assert_eq!(borrowed, owned);
                events
            }
            (Err(_), Err(_)) => continue,
            (owned, borrowed) => panic!(
                "the decoders disagree: owned {:?}, in place {:?}",
                owned.map(|_| ()),
                borrowed.map(|_| ())
            ),
        };
        // Each event survives being re-encoded alone, as a dead letter is.
        for event in events {
            let Ok(bytes) = encode(&event) else {
                panic!("a decoded event does not encode");
            };
            let Ok(again) = decode(Some(b"1"), Some(&bytes)) else {
                panic!("a re-encoded event does not decode");
            };
            assert_eq!(again, vec![event]);
        }
    }
}

pub fn otlp_logs(data: &[u8]) {
    let limits = EventLimits::default();
    for encoding in [otlp::Encoding::Protobuf, otlp::Encoding::Json] {
        let Ok(request) = otlp::decode(data, encoding) else {
            continue;
        };
        let records = otlp::count_records(&request);
        if encoding == otlp::Encoding::Protobuf {
            assert_eq!(
                otlp::count_protobuf_records(data),
                records,
                "the wire count is the decoded count"
            );
        }
        let now = chrono::Utc::now();
        let mapped = otlp::map_request(&request, &limits, now);
        assert_eq!(
            mapped.events.len() as u64 + mapped.rejected_count(),
            records as u64,
            "every record is either an event or a rejection ({encoding:?})"
        );
        assert_eq!(mapped.first_reason.is_some(), !mapped.rejected.is_empty());
        for event in mapped.events {
            check_otlp_event(event, &limits, now);
        }
    }
}

/// The contract's rules on an event mapped from a log record, and its round
/// trip through the stream format.
fn check_otlp_event(event: ValidEvent, limits: &EventLimits, now: chrono::DateTime<chrono::Utc>) {
    let service = event.service();
    assert!(!service.is_empty() && service.len() <= limits.max_service_len);
    assert!(
        service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')),
        "service {service:?} breaks the service rule"
    );
    let message = event.message();
    assert!(!message.is_empty() && !message.contains('\0'));
    assert!(message.chars().count() <= limits.max_message_chars);
    let oldest = now - chrono::TimeDelta::days(i64::from(limits.retention_days));
    let latest = now + chrono::TimeDelta::seconds(i64::from(limits.max_future_seconds));
    assert!(event.ts() >= oldest && event.ts() <= latest);
    if let Some(metadata) = event.metadata() {
        assert!(metadata.len() <= limits.max_metadata_bytes);
        let value: serde_json::Value = serde_json::from_str(metadata).expect("metadata is JSON");
        assert!(value.is_object(), "metadata is an object");
        assert_json_within(&value, 1, limits.max_metadata_depth);
    }
    if let Some(id) = event.event_id() {
        assert!(!id.is_empty() && id.len() <= limits.max_event_id_len);
        assert!(id.bytes().all(|b| (b' '..=b'~').contains(&b)));
    }
    // The stream keeps the receive time to the microsecond.
    let enriched = event.enrich(now.trunc_subsecs(6), None);
    let encoded = EntryWriter::new(Some("fuzz"), 0).and_then(|mut entry| {
        entry.push(&enriched)?;
        Ok(entry.finish())
    });
    let Ok(bytes) = encoded else {
        panic!("a mapped event does not encode");
    };
    let Ok(decoded) = decode(Some(b"2"), Some(&bytes)) else {
        panic!("a mapped event does not decode from the stream");
    };
    let expected = EnrichedEvent {
        request_id: Some("fuzz".into()),
        ..enriched
    };
    assert_eq!(decoded, vec![expected]);
}

/// No U+0000 in any key or string, and no deeper than `max_depth`.
fn assert_json_within(value: &serde_json::Value, depth: usize, max_depth: usize) {
    match value {
        serde_json::Value::String(s) => assert!(!s.contains('\0')),
        serde_json::Value::Array(items) => {
            assert!(depth <= max_depth, "metadata deeper than {max_depth}");
            for item in items {
                assert_json_within(item, depth + 1, max_depth);
            }
        }
        serde_json::Value::Object(map) => {
            assert!(depth <= max_depth, "metadata deeper than {max_depth}");
            for (key, item) in map {
                assert!(!key.contains('\0'));
                assert_json_within(item, depth + 1, max_depth);
            }
        }
        _ => {}
    }
}
