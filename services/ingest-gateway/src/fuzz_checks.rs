//! The properties the fuzz targets (`fuzz/`) check on arbitrary bytes, in one
//! place so `make test` replays the checked-in corpus (`fuzz/corpus/`) through
//! exactly the same code: each function panics when a property fails.
//!
//! - the validator returns for any bytes, and what it accepts obeys the rules;
//! - the batch splitter returns for any bytes in both formats, never more
//!   items than the limit, and each item validates without panicking;
//! - the stream decoder returns for any payload, and what it decodes
//!   re-encodes to an equal event; the worker's in-place decoder accepts
//!   exactly the same payloads and reads the same event from them.

use eventline_shared::stream_codec::{decode, decode_ref, encode};
use eventline_shared::validate::{EventLimits, parse_event, parse_event_str};

use crate::batch;
use crate::body::Format;

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
    let in_place = decode_ref(Some(b"1"), Some(data));
    match (decode(Some(b"1"), Some(data)), in_place) {
        (Ok(event), Ok(borrowed)) => assert_eq!(borrowed, event.as_ref()),
        (Err(_), Err(_)) => {}
        (owned, borrowed) => panic!(
            "the decoders disagree: owned {:?}, in place {:?}",
            owned.map(|_| ()),
            borrowed.map(|_| ())
        ),
    }
    if let Ok(event) = decode(Some(b"1"), Some(data)) {
        let Ok(bytes) = encode(&event) else {
            panic!("a decoded event does not encode");
        };
        let Ok(again) = decode(Some(b"1"), Some(&bytes)) else {
            panic!("a re-encoded event does not decode");
        };
        assert_eq!(again, event);
    }
}
