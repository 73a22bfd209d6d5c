//! OpenTelemetry logs in: `POST /v1/logs` per the OTLP/HTTP specification.
//!
//! A request is decoded whole (protobuf, or the OTLP JSON mapping) by
//! `opentelemetry-proto`'s generated messages; each log record is then mapped
//! to the contract's event fields ([`map_record`]) and held to the same rules
//! as a JSON event ([`validate::validate_decoded`]). A record that breaks a
//! rule is left out and counted in the answer's `partial_success`; the rest
//! of the request goes on. Errors of the request as a whole are answered with
//! a `google.rpc.Status` in the request's encoding, with the status codes
//! exporters know how to treat (429, 502, 503 and 504 are retried, the
//! others are not).
//!
//! The mapping (also in docs/ARCHITECTURE.md, "OTLP logs"):
//! - `service` ← the resource's `service.name`; characters outside the
//!   service rule become `_`, the name is cut to `MAX_SERVICE_LEN`; missing
//!   or empty → `unknown_service`;
//! - `message` ← the body: a string as is, any other value as its JSON text;
//! - `timestamp` ← `timeUnixNano`, else `observedTimeUnixNano`, else the
//!   receive time;
//! - `metadata` ← severity, event name, trace and span ids, flags, and the
//!   record's, resource's and scope's attributes each under a key of its own
//!   (see [`Metadata`]);
//! - `event_id` ← the record's `log.record.uid` attribute, when a string.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use eventline_shared::ValidEvent;
use eventline_shared::validate::{self, DecodedFields, DecodedMetadata, EventError, EventLimits};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde_json::value::RawValue;

use crate::error::ApiError;

mod metadata;

#[cfg(test)]
use metadata::id_hex;

/// The service of records whose resource names none: what the OpenTelemetry
/// SDKs call a service they were not told the name of.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The record attribute that becomes the event's `event_id`.
pub const RECORD_UID: &str = "log.record.uid";

/// A request's encoding, which is also its answer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding named by `Content-Type`; anything else is a 415.
    pub fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/x-protobuf" | "application/protobuf") => Ok(Self::Protobuf),
            Some("application/json") => Ok(Self::Json),
            _ => Err(ApiError::UnsupportedMedia(
                "OTLP/HTTP takes Content-Type application/x-protobuf or application/json".into(),
            )),
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        })
    }
}

/// Decodes an export request; the error says why, for a 400.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, ApiError> {
    let invalid = |message: String| ApiError::BadRequest {
        code: "invalid_otlp",
        message,
        field: None,
    };
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes)
            .map_err(|e| invalid(format!("the body is not an OTLP logs export request: {e}"))),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "the body is not an OTLP/JSON logs export request: {e}"
            ))
        }),
    }
}

/// Log records in a protobuf export request, counted on the wire before
/// anything is decoded, so a request cannot make the gateway build more
/// records than its limit allows (an empty record is 2 bytes on the wire
/// and ~200 once decoded). Malformed input stops the count; the decoder
/// then says what is wrong.
pub fn count_protobuf_records(body: &[u8]) -> usize {
    let mut records = 0;
    each_message_field(body, |tag, resource_logs| {
        if tag == 1 {
            each_message_field(resource_logs, |tag, scope_logs| {
                if tag == 2 {
                    each_message_field(scope_logs, |tag, _| records += usize::from(tag == 2));
                }
            });
        }
    });
    records
}

/// Calls `f` with the tag and bytes of each length-delimited field of a
/// protobuf message, skipping the others.
fn each_message_field(mut buf: &[u8], mut f: impl FnMut(u32, &[u8])) {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    while !buf.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut buf) else {
            return;
        };
        if wire_type != WireType::LengthDelimited {
            if skip_field(wire_type, tag, &mut buf, DecodeContext::default()).is_err() {
                return;
            }
            continue;
        }
        let Ok(len) = decode_varint(&mut buf) else {
            return;
        };
        let Some(field) = usize::try_from(len).ok().and_then(|len| buf.get(..len)) else {
            return;
        };
        f(tag, field);
        buf = &buf[field.len()..];
    }
}

/// Log records in a decoded request.
pub fn count_records(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// The records of a request, mapped: the valid events in request order and
/// what was left out.
#[derive(Debug, Default)]
pub struct Mapped {
    pub events: Vec<ValidEvent>,
    /// How many records were left out, by error code.
    pub rejected: Vec<(validate::ErrorCode, u64)>,
    /// The first rejected record's place and reason, for `partial_success`.
    pub first_reason: Option<String>,
}

impl Mapped {
    /// Records left out.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    fn reject(&mut self, place: impl FnOnce() -> String, error: EventError) {
        self.first_reason
            .get_or_insert_with(|| format!("{}: {}", place(), error.message));
        match self
            .rejected
            .iter_mut()
            .find(|(code, _)| *code == error.code)
        {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((error.code, 1)),
        }
    }
}

/// Maps and validates every record of `request`.
pub fn map_request(
    request: &ExportLogsServiceRequest,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Mapped {
    let mut mapped = Mapped::default();
    let max_depth = limits.max_metadata_depth;
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource = resource_logs.resource.as_ref();
        let service = service_name(resource, limits);
        let resource_json = metadata::resource_json(resource, max_depth);
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let scope_json = metadata::scope_json(scope_logs.scope.as_ref(), max_depth);
            let shared = match (&resource_json, &scope_json) {
                (Ok(resource), Ok(scope)) => Ok(Source {
                    service: &service,
                    resource: resource.as_deref(),
                    scope: scope.as_deref(),
                }),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            for (l, record) in scope_logs.log_records.iter().enumerate() {
                let result = match &shared {
                    Ok(source) => map_record(source, record, limits, now),
                    Err(e) => Err((*e).clone()),
                };
                match result {
                    Ok(event) => mapped.events.push(event),
                    Err(error) => mapped.reject(
                        || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{l}]"),
                        error,
                    ),
                }
            }
        }
    }
    mapped
}

/// What a record inherits from its resource and scope: the service name,
/// already made to fit the service rule, and their parts of the metadata,
/// already written.
pub struct Source<'a> {
    pub service: &'a str,
    pub resource: Option<&'a RawValue>,
    pub scope: Option<&'a RawValue>,
}

/// One log record as an event, or the rule it breaks.
pub fn map_record(
    source: &Source<'_>,
    record: &LogRecord,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, EventError> {
    let message = body_text(record.body.as_ref());
    let timestamp = [record.time_unix_nano, record.observed_time_unix_nano]
        .into_iter()
        .find(|&nanos| nanos != 0)
        .map(from_unix_nanos);
    // Records of one request look alike: start from the resource's and
    // scope's size plus room for the record's own keys.
    let capacity = 256
        + source.resource.map_or(0, |r| r.get().len())
        + source.scope.map_or(0, |s| s.get().len());
    let metadata = metadata::record_json(
        record,
        source.resource,
        source.scope,
        limits.max_metadata_depth,
        capacity,
    )?;
    let event_id = record
        .attributes
        .iter()
        .find(|kv| kv.key == RECORD_UID)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(uid) => Some(uid.as_str()),
            _ => None,
        });
    validate::validate_decoded(
        DecodedFields {
            service: source.service,
            message: &message,
            timestamp,
            metadata: Some(DecodedMetadata::Checked(metadata)),
            event_id,
        },
        limits,
        now,
    )
}

/// The resource's `service.name` made to fit the service rule: each other
/// character becomes `_`, the name is cut to the limit.
pub fn service_name<'a>(resource: Option<&'a Resource>, limits: &EventLimits) -> Cow<'a, str> {
    let name = resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(name) => Some(name.as_str()),
            _ => None,
        })
        .filter(|name| !name.is_empty());
    let Some(name) = name else {
        return Cow::Borrowed(UNKNOWN_SERVICE);
    };
    if validate::is_service_name(name, limits.max_service_len) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| if validate::is_service_char(c) { c } else { '_' })
            .take(limits.max_service_len)
            .collect(),
    )
}

fn body_text(body: Option<&AnyValue>) -> Cow<'_, str> {
    match body.and_then(|b| b.value.as_ref()) {
        None => Cow::Borrowed(""),
        Some(Value::StringValue(text)) => Cow::Borrowed(text),
        Some(other) => {
            Cow::Owned(serde_json::to_string(&metadata::Any::unchecked(other)).unwrap_or_default())
        }
    }
}

fn from_unix_nanos(nanos: u64) -> DateTime<Utc> {
    const NANOS: u64 = 1_000_000_000;
    // u64 nanoseconds end in 2554, well inside chrono's range.
    DateTime::from_timestamp((nanos / NANOS) as i64, (nanos % NANOS) as u32).unwrap_or_default()
}

/// The 200 answer: an `ExportLogsServiceResponse`, with `partial_success`
/// when records were left out.
pub fn accepted(encoding: Encoding, mapped: &Mapped) -> Response {
    let partial = mapped
        .first_reason
        .as_ref()
        .map(|reason| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(mapped.rejected_count()).unwrap_or(i64::MAX),
            error_message: reason.clone(),
        });
    let body = match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Encoding::Json => {
            let body = match partial {
                Some(p) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedLogRecords": p.rejected_log_records.to_string(),
                        "errorMessage": p.error_message,
                    }
                }),
                None => serde_json::json!({}),
            };
            body.to_string().into_bytes()
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, encoding.content_type());
    response
}

/// `google.rpc.Status`, the body of every OTLP error answer. Written here
/// because `opentelemetry-proto` does not carry it: two fields (`details`
/// is never sent).
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error answered the OTLP way: the HTTP status and `Retry-After` of
/// the JSON endpoints, the body a `google.rpc.Status` in `encoding`.
pub fn error(encoding: Encoding, error: ApiError) -> Response {
    let status = error.status();
    let retry_after = error.retry_after();
    let message = error.to_string();
    let code = grpc_code(status);
    let body = match encoding {
        Encoding::Protobuf => Status { code, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, encoding.content_type());
    if let Some(after) = retry_after {
        headers.insert(header::RETRY_AFTER, retry_after_value(after));
    }
    response
}

fn retry_after_value(after: Duration) -> HeaderValue {
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// The gRPC status code that goes with an HTTP status, as the
/// specification pairs them.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        408 => 4,             // DEADLINE_EXCEEDED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

#[cfg(test)]
mod tests;
