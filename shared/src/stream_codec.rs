//! The stream entry format: two fields, `v` (the format version, ASCII
//! digits) and `e` (the [`EnrichedEvent`] as a MessagePack array, rmp-serde).
//!
//! Decoding never panics: whatever bytes a stream holds (an entry written by
//! hand, by a newer gateway, or truncated), the worker gets a [`DecodeError`]
//! saying what was wrong and dead-letters the entry instead of stopping.

use crate::event::{EnrichedEvent, EnrichedEventRef};

/// The stream field holding the format version.
pub const FIELD_VERSION: &str = "v";
/// The stream field holding the encoded event.
pub const FIELD_EVENT: &str = "e";
/// The version this build writes; it reads this one only.
pub const FORMAT_VERSION: u32 = 1;
/// [`FORMAT_VERSION`] as the bytes written to the stream.
pub const FORMAT_VERSION_STR: &str = "1";

#[derive(Debug, thiserror::Error)]
#[error("cannot encode event for the stream: {0}")]
pub struct EncodeError(#[from] rmp_serde::encode::Error);

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stream entry has no `{0}` field")]
    MissingField(&'static str),
    #[error("stream entry has format version {0:?}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion(String),
    #[error("stream entry payload is not a valid event: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
}

/// Encodes an event as the `e` field's bytes.
pub fn encode(event: &EnrichedEvent) -> Result<Vec<u8>, EncodeError> {
    // Events are small; a buffer of the strings' size avoids regrowth.
    let hint = 64
        + event.service.len()
        + event.message.len()
        + event.metadata.as_ref().map_or(0, String::len)
        + event.event_id.as_ref().map_or(0, String::len)
        + event.request_id.as_ref().map_or(0, String::len);
    let mut buf = Vec::with_capacity(hint);
    rmp_serde::encode::write(&mut buf, event)?;
    Ok(buf)
}

/// Decodes an entry from its two fields, as read from the stream.
pub fn decode(
    version: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<EnrichedEvent, DecodeError> {
    Ok(rmp_serde::from_slice(checked_payload(version, payload)?)?)
}

/// [`decode`] without copying: the event's strings borrow `payload`.
pub fn decode_ref<'a>(
    version: Option<&[u8]>,
    payload: Option<&'a [u8]>,
) -> Result<EnrichedEventRef<'a>, DecodeError> {
    Ok(rmp_serde::from_slice(checked_payload(version, payload)?)?)
}

/// The payload of an entry whose version this build reads.
fn checked_payload<'a>(
    version: Option<&[u8]>,
    payload: Option<&'a [u8]>,
) -> Result<&'a [u8], DecodeError> {
    let version = version.ok_or(DecodeError::MissingField(FIELD_VERSION))?;
    if version != FORMAT_VERSION_STR.as_bytes() {
        return Err(DecodeError::UnsupportedVersion(
            String::from_utf8_lossy(version).chars().take(32).collect(),
        ));
    }
    payload.ok_or(DecodeError::MissingField(FIELD_EVENT))
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

    #[test]
    fn round_trips() {
        let event = sample();
        let bytes = encode(&event).unwrap();
        let back = decode(Some(b"1"), Some(&bytes)).unwrap();
        assert_eq!(back, event);
        assert_eq!(
            decode_ref(Some(b"1"), Some(&bytes)).unwrap(),
            event.as_ref()
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
            without_options.as_ref()
        );
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
        let err = decode(Some(b"2"), Some(&bytes)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream entry has format version \"2\"; this build reads version 1"
        );
        assert!(matches!(
            decode(Some(b"1"), Some(&bytes[..bytes.len() / 2])),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(Some(b"1"), Some(b"\xc1garbage")),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_ref(Some(b"2"), Some(&bytes)),
            Err(DecodeError::UnsupportedVersion(_))
        ));
        assert!(matches!(
            decode_ref(Some(b"1"), Some(&bytes[..bytes.len() / 2])),
            Err(DecodeError::Malformed(_))
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
            prop_assert_eq!(decode_ref(Some(b"1"), Some(&bytes)).unwrap(), event.as_ref());
            prop_assert_eq!(decode(Some(b"1"), Some(&bytes)).unwrap(), event);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let owned = decode(Some(b"1"), Some(&bytes));
            let borrowed = decode_ref(Some(b"1"), Some(&bytes));
            // Both read the same format: one accepts exactly what the other does.
            prop_assert_eq!(owned.is_ok(), borrowed.is_ok());
        }
    }
}
