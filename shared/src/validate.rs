//! The event rules of the contract, applied at the edge.
//!
//! [`parse_event`] turns one JSON object into a [`ValidEvent`] or an
//! [`EventError`] that names the field and says what is wrong. It never panics,
//! whatever the bytes (a property test holds it to that), and it reads each
//! field once from the borrowed input: no intermediate `serde_json::Value`.
//!
//! U+0000 is refused in every string, keys included: PostgreSQL stores it in
//! neither `text` nor `jsonb`, and one such event must never block a batch.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use clap::Args;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::event::ValidEvent;

/// The limits of the event table. Each is a configuration value whose default
/// is the contract's.
#[derive(Debug, Clone, Args)]
pub struct EventLimits {
    /// Longest service name, in characters.
    #[arg(long, env = "MAX_SERVICE_LEN", default_value_t = 100)]
    pub max_service_len: usize,
    /// Longest message, in Unicode scalar values.
    #[arg(long, env = "MAX_MESSAGE_CHARS", default_value_t = 2000)]
    pub max_message_chars: usize,
    /// Largest metadata object, in bytes of JSON.
    #[arg(long, env = "MAX_METADATA_BYTES", default_value_t = 16 * 1024)]
    pub max_metadata_bytes: usize,
    /// Deepest nesting of metadata objects and arrays (the object itself is 1).
    #[arg(long, env = "MAX_METADATA_DEPTH", default_value_t = 16)]
    pub max_metadata_depth: usize,
    /// Longest client `event_id`, in bytes of printable ASCII.
    #[arg(long, env = "MAX_EVENT_ID_LEN", default_value_t = 128)]
    pub max_event_id_len: usize,
    /// Oldest accepted timestamp, in days before now: the retention window.
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_days: u32,
    /// Furthest accepted timestamp in the future, in seconds.
    #[arg(long, env = "MAX_FUTURE_SECONDS", default_value_t = 3600)]
    pub max_future_seconds: u32,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_service_len: 100,
            max_message_chars: 2000,
            max_metadata_bytes: 16 * 1024,
            max_metadata_depth: 16,
            max_event_id_len: 128,
            retention_days: 30,
            max_future_seconds: 3600,
        }
    }
}

/// What is wrong with an event, in a form clients can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    InvalidUtf8,
    NotAnObject,
    UnknownField,
    DuplicateField,
    MissingField,
    InvalidType,
    Empty,
    TooLong,
    InvalidCharacters,
    NulCharacter,
    InvalidTimestamp,
    TimestampTooOld,
    TimestampInFuture,
    TooLarge,
    TooDeep,
}

impl ErrorCode {
    /// Every code, for metrics that start each label at zero.
    pub const ALL: [ErrorCode; 16] = [
        Self::InvalidJson,
        Self::InvalidUtf8,
        Self::NotAnObject,
        Self::UnknownField,
        Self::DuplicateField,
        Self::MissingField,
        Self::InvalidType,
        Self::Empty,
        Self::TooLong,
        Self::InvalidCharacters,
        Self::NulCharacter,
        Self::InvalidTimestamp,
        Self::TimestampTooOld,
        Self::TimestampInFuture,
        Self::TooLarge,
        Self::TooDeep,
    ];

    /// The stable machine-readable code of the JSON error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::NotAnObject => "not_an_object",
            Self::UnknownField => "unknown_field",
            Self::DuplicateField => "duplicate_field",
            Self::MissingField => "missing_field",
            Self::InvalidType => "invalid_type",
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::InvalidCharacters => "invalid_characters",
            Self::NulCharacter => "nul_character",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::TooLarge => "too_large",
            Self::TooDeep => "too_deep",
        }
    }
}

/// A rejected event: which field, what rule, and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub code: ErrorCode,
    /// The field at fault (`metadata.user.name` for a nested key), or `None`
    /// when the document as a whole is wrong.
    pub field: Option<String>,
    pub message: String,
}

impl EventError {
    fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An error about `field`, for validators of other sources (OTLP).
    pub fn for_field(
        code: ErrorCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(code, field, message)
    }

    fn document(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            message: message.into(),
        }
    }
}

/// The fields of an event as raw JSON slices of the input.
#[derive(Default)]
struct RawFields<'a> {
    service: Option<&'a RawValue>,
    message: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    metadata: Option<&'a RawValue>,
    event_id: Option<&'a RawValue>,
}

const FIELDS: &[&str] = &["service", "message", "timestamp", "metadata", "event_id"];

/// Parses and validates one event from the bytes of a JSON object.
pub fn parse_event(
    bytes: &[u8],
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, EventError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        EventError::document(
            ErrorCode::InvalidUtf8,
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    parse_event_str(text, limits, now)
}

/// [`parse_event`] for input already known to be UTF-8, such as one element
/// of a batch.
pub fn parse_event_str(
    text: &str,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, EventError> {
    let fields = read_fields(text)?;
    validate_fields(&fields, limits, now)
}

fn read_fields(text: &str) -> Result<RawFields<'_>, EventError> {
    let mut problem = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = FieldsSeed {
        problem: &mut problem,
    }
    .deserialize(&mut de)
    .and_then(|fields| de.end().map(|()| fields));
    match result {
        Ok(fields) => Ok(fields),
        Err(e) => Err(problem.unwrap_or_else(|| json_error(&e))),
    }
}

fn json_error(e: &serde_json::Error) -> EventError {
    EventError::document(
        ErrorCode::InvalidJson,
        format!(
            "invalid JSON at line {} column {}: {}",
            e.line(),
            e.column(),
            json_error_reason(e)
        ),
    )
}

/// serde_json's message without its trailing position, which we print ourselves.
fn json_error_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Deserializes the top-level object, recording the first structural problem
/// (unknown or duplicate field, not an object) with its field name.
struct FieldsSeed<'p> {
    problem: &'p mut Option<EventError>,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = RawFields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = RawFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RawFields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let slot = match key.as_str() {
                "service" => &mut fields.service,
                "message" => &mut fields.message,
                "timestamp" => &mut fields.timestamp,
                "metadata" => &mut fields.metadata,
                "event_id" => &mut fields.event_id,
                other => {
                    *self.problem = Some(EventError::new(
                        ErrorCode::UnknownField,
                        printable(other),
                        format!(
                            "unknown field `{}`; accepted fields are {}",
                            printable(other),
                            FIELDS.join(", ")
                        ),
                    ));
                    return Err(de::Error::custom("unknown field"));
                }
            };
            if slot.is_some() {
                *self.problem = Some(EventError::new(
                    ErrorCode::DuplicateField,
                    key.as_str(),
                    format!("field `{}` appears more than once", key.as_str()),
                ));
                return Err(de::Error::custom("duplicate field"));
            }
            *slot = Some(map.next_value::<&'de RawValue>()?);
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        *self.problem = Some(EventError::document(
            ErrorCode::NotAnObject,
            "expected one event as a JSON object, got an array (send arrays to /v1/events/batch)",
        ));
        Err(de::Error::custom("array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_an_object("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_an_object("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_an_object("a string"))
    }
}

impl FieldsSeed<'_> {
    fn not_an_object<E: de::Error>(self, got: &str) -> E {
        *self.problem = Some(EventError::document(
            ErrorCode::NotAnObject,
            format!("expected an event as a JSON object, got {got}"),
        ));
        E::custom("not an object")
    }
}

/// A JSON object key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A field name safe to echo back: control characters escaped, length capped.
fn printable(name: &str) -> String {
    let mut out: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn validate_fields(
    fields: &RawFields<'_>,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, EventError> {
    let service = required_string(fields.service, "service")?;
    check_service(&service, limits)?;

    let message = required_string(fields.message, "message")?;
    check_message(&message, limits)?;

    let ts = match fields.timestamp {
        Some(raw) if raw.get() != "null" => {
            let text = string_field(raw, "timestamp")?;
            check_timestamp(&text, limits, now)?
        }
        _ => now.trunc_subsecs(3),
    };

    let metadata = match fields.metadata {
        Some(raw) if raw.get() != "null" => Some(check_metadata(raw, limits)?),
        _ => None,
    };

    let event_id = match fields.event_id {
        Some(raw) if raw.get() != "null" => {
            let text = string_field(raw, "event_id")?;
            Some(check_event_id(&text, limits)?.into_inner())
        }
        _ => None,
    };

    Ok(ValidEvent {
        service: service.into_owned(),
        message: message.into_owned(),
        ts,
        metadata,
        event_id,
    })
}

/// An event from a source other than the contract's JSON (an OTLP log
/// record), its fields already decoded by that source's own format.
#[derive(Debug, Clone)]
pub struct DecodedFields<'a> {
    pub service: &'a str,
    pub message: &'a str,
    /// `None`: the receive time.
    pub timestamp: Option<DateTime<Utc>>,
    pub metadata: Option<DecodedMetadata<'a>>,
    pub event_id: Option<&'a str>,
}

/// Metadata from another source.
#[derive(Debug, Clone)]
pub enum DecodedMetadata<'a> {
    /// The JSON text of an object, held to every metadata rule here.
    Text(&'a str),
    /// An object the source wrote itself and already held to the depth and
    /// U+0000 rules while writing it, with numbers PostgreSQL stores (the
    /// OTLP mapping): only its size is checked here, and the text is kept
    /// without a copy.
    Checked(String),
}

/// Holds decoded fields to every rule of the contract, as [`parse_event`]
/// holds a JSON event: the same codes, fields and messages.
pub fn validate_decoded(
    fields: DecodedFields<'_>,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, EventError> {
    for (name, value) in [("service", fields.service), ("message", fields.message)] {
        if value.contains('\0') {
            return Err(EventError::new(
                ErrorCode::NulCharacter,
                name,
                format!("`{name}` must not contain U+0000"),
            ));
        }
    }
    check_service(fields.service, limits)?;
    check_message(fields.message, limits)?;
    let ts = match fields.timestamp {
        Some(ts) => check_window(ts, limits, now)?,
        None => now.trunc_subsecs(3),
    };
    let metadata = match fields.metadata {
        Some(DecodedMetadata::Text(text)) => Some(check_metadata_text(text, limits)?),
        Some(DecodedMetadata::Checked(json)) => Some(check_metadata_size(json, limits)?),
        None => None,
    };
    let event_id = match fields.event_id {
        Some(id) => Some(check_event_id(id, limits)?.into_inner()),
        None => None,
    };
    Ok(ValidEvent {
        service: fields.service.to_owned(),
        message: fields.message.to_owned(),
        ts,
        metadata,
        event_id,
    })
}

fn required_string<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Cow<'a, str>, EventError> {
    match raw {
        Some(raw) if raw.get() != "null" => string_field(raw, field),
        _ => Err(EventError::new(
            ErrorCode::MissingField,
            field,
            format!("`{field}` is required"),
        )),
    }
}

/// Reads a JSON string, borrowing it when it has no escapes.
fn string_field<'a>(raw: &'a RawValue, field: &'static str) -> Result<Cow<'a, str>, EventError> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(EventError::new(
            ErrorCode::InvalidType,
            field,
            format!("`{field}` must be a string, got {}", json_kind(text)),
        ));
    }
    let value: Cow<'a, str> = if text.contains('\\') {
        Cow::Owned(serde_json::from_str::<String>(text).map_err(|e| {
            EventError::new(
                ErrorCode::InvalidJson,
                field,
                format!("`{field}`: {}", json_error_reason(&e)),
            )
        })?)
    } else {
        // No escapes: the string is the text between the quotes.
        Cow::Borrowed(&text[1..text.len() - 1])
    };
    if value.contains('\0') {
        return Err(EventError::new(
            ErrorCode::NulCharacter,
            field,
            format!("`{field}` must not contain U+0000"),
        ));
    }
    Ok(value)
}

fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'"') => "a string",
        _ => "a number",
    }
}

/// The characters a service name is made of: `[A-Za-z0-9._:-]`.
pub fn is_service_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// The contract's service rule: 1 to `max_len` characters, each
/// [`is_service_char`].
pub fn is_service_name(name: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&name.len()) && name.chars().all(is_service_char)
}

fn check_service(service: &str, limits: &EventLimits) -> Result<(), EventError> {
    if service.is_empty() {
        return Err(EventError::new(
            ErrorCode::Empty,
            "service",
            "`service` must not be empty",
        ));
    }
    if let Some(bad) = service.chars().find(|&c| !is_service_char(c)) {
        return Err(EventError::new(
            ErrorCode::InvalidCharacters,
            "service",
            format!(
                "`service` may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'; found {:?}",
                bad
            ),
        ));
    }
    // Only ASCII remains, so bytes are characters.
    if service.len() > limits.max_service_len {
        return Err(EventError::new(
            ErrorCode::TooLong,
            "service",
            format!(
                "`service` is {} characters long; the limit is {}",
                service.len(),
                limits.max_service_len
            ),
        ));
    }
    Ok(())
}

fn check_message(message: &str, limits: &EventLimits) -> Result<(), EventError> {
    if message.is_empty() {
        return Err(EventError::new(
            ErrorCode::Empty,
            "message",
            "`message` must not be empty",
        ));
    }
    // Bytes bound characters from above: count only when it could matter.
    if message.len() > limits.max_message_chars {
        let chars = message.chars().count();
        if chars > limits.max_message_chars {
            return Err(EventError::new(
                ErrorCode::TooLong,
                "message",
                format!(
                    "`message` is {chars} characters long; the limit is {}",
                    limits.max_message_chars
                ),
            ));
        }
    }
    Ok(())
}

fn check_timestamp(
    text: &str,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, EventError> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
        EventError::new(
            ErrorCode::InvalidTimestamp,
            "timestamp",
            format!(
                "`timestamp` must be RFC 3339 with an offset, like 2026-01-31T12:00:00.123Z ({e})"
            ),
        )
    })?;
    check_window(parsed.with_timezone(&Utc), limits, now)
}

/// The event window: not older than the retention, not further ahead than
/// `max_future_seconds`; the time kept to the millisecond.
fn check_window(
    ts: DateTime<Utc>,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, EventError> {
    let ts = ts.trunc_subsecs(3);
    let oldest = now - TimeDelta::days(i64::from(limits.retention_days));
    if ts < oldest {
        return Err(EventError::new(
            ErrorCode::TimestampTooOld,
            "timestamp",
            format!(
                "`timestamp` is older than the retention window of {} days",
                limits.retention_days
            ),
        ));
    }
    let latest = now + TimeDelta::seconds(i64::from(limits.max_future_seconds));
    if ts > latest {
        return Err(EventError::new(
            ErrorCode::TimestampInFuture,
            "timestamp",
            format!(
                "`timestamp` is more than {} seconds in the future",
                limits.max_future_seconds
            ),
        ));
    }
    Ok(ts)
}

/// An `event_id` that passed its rule; how an `Idempotency-Key` header becomes
/// an event's `event_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEventId(String);

impl CheckedEventId {
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Checks an idempotency key: 1 to `max_event_id_len` printable ASCII
/// characters (space through tilde).
pub fn check_event_id(event_id: &str, limits: &EventLimits) -> Result<CheckedEventId, EventError> {
    if event_id.is_empty() {
        return Err(EventError::new(
            ErrorCode::Empty,
            "event_id",
            "`event_id` must not be empty",
        ));
    }
    if event_id.contains('\0') {
        return Err(EventError::new(
            ErrorCode::NulCharacter,
            "event_id",
            "`event_id` must not contain U+0000",
        ));
    }
    if !event_id.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(EventError::new(
            ErrorCode::InvalidCharacters,
            "event_id",
            "`event_id` may only contain printable ASCII characters",
        ));
    }
    if event_id.len() > limits.max_event_id_len {
        return Err(EventError::new(
            ErrorCode::TooLong,
            "event_id",
            format!(
                "`event_id` is {} characters long; the limit is {}",
                event_id.len(),
                limits.max_event_id_len
            ),
        ));
    }
    Ok(CheckedEventId(event_id.to_owned()))
}

fn check_metadata(raw: &RawValue, limits: &EventLimits) -> Result<String, EventError> {
    check_metadata_text(raw.get(), limits)
}

/// [`check_metadata`] for the text of one valid JSON value.
fn check_metadata_text(text: &str, limits: &EventLimits) -> Result<String, EventError> {
    if !text.starts_with('{') {
        return Err(EventError::new(
            ErrorCode::InvalidType,
            "metadata",
            format!("`metadata` must be a JSON object, got {}", json_kind(text)),
        ));
    }
    let mut problem = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let walk = Walk {
        problem: &mut problem,
        depth: 1,
        max_depth: limits.max_metadata_depth,
    };
    if let Err(e) = walk.deserialize(&mut de) {
        return Err(match problem {
            Some(p) => p.into_error(),
            None => EventError::new(
                ErrorCode::InvalidJson,
                "metadata",
                format!("`metadata`: {}", json_error_reason(&e)),
            ),
        });
    }
    if let Some(number) = number_beyond_numeric(text) {
        return Err(EventError::new(
            ErrorCode::InvalidJson,
            "metadata",
            format!(
                "`metadata` holds the number {number}, with more than {MAX_NUMERIC_SCALE} digits after the decimal point, which PostgreSQL cannot store"
            ),
        ));
    }
    if text.len() <= limits.max_metadata_bytes {
        return Ok(text.to_owned());
    }
    // The client's formatting may be what is large: judge the compact form,
    // made by dropping whitespace between tokens, so every number, key and
    // string is kept exactly as sent (a round trip through
    // `serde_json::Value` would turn integers beyond 64 bits into floats).
    let compact = without_insignificant_whitespace(text);
    if compact.len() > limits.max_metadata_bytes {
        return Err(EventError::new(
            ErrorCode::TooLarge,
            "metadata",
            format!(
                "`metadata` is {} bytes of JSON; the limit is {}",
                compact.len(),
                limits.max_metadata_bytes
            ),
        ));
    }
    Ok(compact)
}

fn check_metadata_size(json: String, limits: &EventLimits) -> Result<String, EventError> {
    if json.len() > limits.max_metadata_bytes {
        return Err(EventError::new(
            ErrorCode::TooLarge,
            "metadata",
            format!(
                "`metadata` is {} bytes of JSON; the limit is {}",
                json.len(),
                limits.max_metadata_bytes
            ),
        ));
    }
    Ok(json)
}

/// The most digits after the decimal point a PostgreSQL `numeric` (and so
/// a `jsonb` number) holds.
const MAX_NUMERIC_SCALE: i64 = 16_383;

/// The first number of valid JSON `text` whose decimal form needs more
/// than [`MAX_NUMERIC_SCALE`] fractional digits (`1e-16384`, `1.5e-16383`):
/// serde_json reads it as 0 or a float, but PostgreSQL refuses it, and the
/// worker would then dead-letter an event the gateway accepted. (Numbers too
/// large for PostgreSQL are beyond `f64` first, and serde_json refuses them.)
fn number_beyond_numeric(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
        } else if b == b'"' {
            in_string = true;
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let number = &text[start..i];
            if numeric_scale(number) > MAX_NUMERIC_SCALE {
                return Some(number);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Digits after the decimal point of a JSON number written out in full:
/// the fraction's length minus the exponent.
fn numeric_scale(number: &str) -> i64 {
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (&number[..at], &number[at + 1..]),
        None => (number, "0"),
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
    let fraction = i64::try_from(fraction).unwrap_or(i64::MAX);
    // Saturates: an exponent of any length stays an answer.
    let exponent = exponent.trim_start_matches('+');
    let exponent = match exponent.strip_prefix('-') {
        Some(digits) => digits
            .parse::<i64>()
            .map_or(i64::MIN, |n| n.saturating_neg()),
        None => exponent.parse::<i64>().unwrap_or(i64::MAX),
    };
    fraction.saturating_sub(exponent)
}

/// Valid JSON `text` without the whitespace between its tokens (outside
/// strings), byte for byte otherwise.
fn without_insignificant_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// A problem found inside metadata, with the path to it built while the
/// walk unwinds (innermost segment first).
struct MetaProblem {
    code: ErrorCode,
    reversed_path: Vec<String>,
    message: &'static str,
}

impl MetaProblem {
    fn into_error(self) -> EventError {
        let mut field = String::from("metadata");
        for segment in self.reversed_path.iter().rev() {
            if !segment.starts_with('[') {
                field.push('.');
            }
            field.push_str(segment);
        }
        let message = format!("`{field}` {}", self.message);
        EventError {
            code: self.code,
            field: Some(field),
            message,
        }
    }
}

/// Walks a metadata value without building it, checking depth and U+0000.
struct Walk<'p> {
    problem: &'p mut Option<MetaProblem>,
    depth: usize,
    max_depth: usize,
}

impl Walk<'_> {
    fn fail<E: de::Error>(self, code: ErrorCode, message: &'static str) -> E {
        *self.problem = Some(MetaProblem {
            code,
            reversed_path: Vec::new(),
            message,
        });
        E::custom(message)
    }

    fn child(&mut self) -> Walk<'_> {
        Walk {
            problem: &mut *self.problem,
            depth: self.depth + 1,
            max_depth: self.max_depth,
        }
    }

    fn too_deep(&self) -> bool {
        self.depth > self.max_depth
    }

    fn note_segment(&mut self, segment: impl FnOnce() -> String) {
        if let Some(p) = self.problem.as_mut() {
            p.reversed_path.push(segment());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.contains('\0') {
            return Err(self.fail(ErrorCode::NulCharacter, "must not contain U+0000"));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.too_deep() {
            return Err(self.fail(ErrorCode::TooDeep, "nests deeper than the limit"));
        }
        let mut index = 0usize;
        loop {
            match seq.next_element_seed(self.child()) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.note_segment(|| format!("[{index}]"));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if self.too_deep() {
            return Err(self.fail(ErrorCode::TooDeep, "nests deeper than the limit"));
        }
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str().contains('\0') {
                let e = self.child().fail(
                    ErrorCode::NulCharacter,
                    "has a key that contains U+0000 (shown escaped)",
                );
                self.note_segment(|| printable(key.as_str()));
                return Err(e);
            }
            if let Err(e) = map.next_value_seed(self.child()) {
                self.note_segment(|| printable(key.as_str()));
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
