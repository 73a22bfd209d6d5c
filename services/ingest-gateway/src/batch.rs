//! Splitting a batch body into its events: a JSON array, an object
//! `{"events":[…]}`, or NDJSON (one event per line). The split only finds
//! each event's bytes; each is then validated on its own, so one bad event
//! never rejects its neighbours. A body that is not valid JSON as a whole
//! (JSON formats) is rejected; in NDJSON a bad line is one rejected event.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::body::Format;
use crate::error::ApiError;

/// One event's text, or why it could not even be delimited.
pub type Item<'a> = Result<&'a str, eventline_shared::validate::EventError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// The events of a batch body, in order.
pub fn split(body: &[u8], format: Format, max_events: usize) -> Result<Vec<Item<'_>>, ApiError> {
    let items = match format {
        Format::Json => split_json(body)?,
        Format::Ndjson => split_ndjson(body),
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest {
            code: "empty_batch",
            message: "the batch holds no events".into(),
            field: None,
        });
    }
    if items.len() > max_events {
        return Err(ApiError::TooManyEvents {
            count: items.len(),
            limit: max_events,
        });
    }
    Ok(items)
}

fn split_json(body: &[u8]) -> Result<Vec<Item<'_>>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::BadRequest {
        code: "invalid_utf8",
        message: format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        field: None,
    })?;
    let invalid = |e: serde_json::Error| ApiError::BadRequest {
        code: "invalid_json",
        message: format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
        field: None,
    };
    // RawValue cannot sit inside an untagged enum, so look at the first byte.
    let raw: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map_err(invalid)?,
        Some(b'{') => {
            serde_json::from_str::<Wrapped<'_>>(text)
                .map_err(invalid)?
                .events
        }
        _ => {
            return Err(ApiError::BadRequest {
                code: "invalid_json",
                message: "a batch is a JSON array of events or an object {\"events\": [...]}"
                    .into(),
                field: None,
            });
        }
    };
    Ok(raw.into_iter().map(|r| Ok(r.get())).collect())
}

fn split_ndjson(body: &[u8]) -> Vec<Item<'_>> {
    body.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            std::str::from_utf8(line).map_err(|e| eventline_shared::validate::EventError {
                code: eventline_shared::validate::ErrorCode::InvalidUtf8,
                field: None,
                message: format!("line is not valid UTF-8 (at byte {})", e.valid_up_to()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_wrapped_and_ndjson() {
        let items = split(br#"[{"a":1}, {"b":2}]"#, Format::Json, 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].as_ref().unwrap(), &r#"{"b":2}"#);
        let items = split(br#"{"events":[{"a":1}]}"#, Format::Json, 10).unwrap();
        assert_eq!(items.len(), 1);
        let items = split(
            b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n",
            Format::Ndjson,
            10,
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].as_ref().unwrap(), &"not json");
        let items = split(b"{\"a\":\"\xff\"}\n{}", Format::Ndjson, 10).unwrap();
        assert!(items[0].is_err() && items[1].is_ok());
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            split(b"[]", Format::Json, 10),
            Err(ApiError::BadRequest {
                code: "empty_batch",
                ..
            })
        ));
        assert!(matches!(
            split(b"\n\n", Format::Ndjson, 10),
            Err(ApiError::BadRequest {
                code: "empty_batch",
                ..
            })
        ));
        assert!(matches!(
            split(b"[1,2,3]", Format::Json, 2),
            Err(ApiError::TooManyEvents { count: 3, limit: 2 })
        ));
        assert!(matches!(
            split(b"[1,", Format::Json, 2),
            Err(ApiError::BadRequest {
                code: "invalid_json",
                ..
            })
        ));
        assert!(matches!(
            split(br#"{"other":[]}"#, Format::Json, 2),
            Err(ApiError::BadRequest {
                code: "invalid_json",
                ..
            })
        ));
        assert!(matches!(
            split(br#"{"service":"s"}"#, Format::Json, 2),
            Err(ApiError::BadRequest {
                code: "invalid_json",
                ..
            })
        ));
    }
}
