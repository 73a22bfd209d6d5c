//! Every way an ingest request can fail, and its HTTP answer in the
//! contract's JSON shape. Internal details (Redis error text) are logged,
//! never sent to clients.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eventline_shared::http_error::error_response;
use eventline_shared::validate::EventError;
use serde::Serialize;

/// An event of a batch that was refused, as the batch answer lists it.
#[derive(Debug, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidEvent(EventError),
    #[error("no event in the batch is valid")]
    NoValidEvent {
        /// The first invalid event's position in the batch, and its error.
        index: usize,
        first: EventError,
        /// Every event's error, as a partly valid batch's 202 lists them.
        rejected: Vec<Rejected>,
    },
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("missing API key")]
    MissingKey,
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("this API key lacks the `{0}` scope")]
    MissingScope(&'static str),
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the batch holds {count} events; the limit is {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("the client sent its body too slowly")]
    BodyTimeout,
    #[error("rate limit exceeded for this {scope}")]
    RateLimited {
        scope: &'static str,
        retry_after: Duration,
    },
    #[error("the pipeline is behind (stream over its high-water mark); retry later")]
    Backpressure { retry_after: Duration },
    #[error("too many requests in flight; retry later")]
    Overloaded,
    #[error("event storage is unavailable; retry later")]
    Unavailable { retry_after: Duration },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidEvent(_)
            | ApiError::NoValidEvent { .. }
            | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingKey | ApiError::UnknownKey => StatusCode::UNAUTHORIZED,
            ApiError::MissingScope(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } | ApiError::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } | ApiError::Backpressure { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Overloaded | ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidEvent(e) => e.code.as_str(),
            ApiError::NoValidEvent { .. } => "no_valid_event",
            ApiError::BadRequest { code, .. } => code,
            ApiError::MissingKey => "missing_api_key",
            ApiError::UnknownKey => "invalid_api_key",
            ApiError::MissingScope(_) => "insufficient_scope",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::TooManyEvents { .. } => "too_many_events",
            ApiError::UnsupportedMedia(_) => "unsupported_media_type",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Backpressure { .. } => "backpressure",
            ApiError::Overloaded => "overloaded",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The field at fault; in a batch, prefixed with the event's position
    /// (`events[3].service`).
    fn field(&self) -> Option<Cow<'_, str>> {
        match self {
            ApiError::InvalidEvent(e) => e.field.as_deref().map(Cow::Borrowed),
            ApiError::NoValidEvent { index, first, .. } => Some(Cow::Owned(match &first.field {
                Some(field) => format!("events[{index}].{field}"),
                None => format!("events[{index}]"),
            })),
            ApiError::BadRequest { field, .. } => field.map(Cow::Borrowed),
            _ => None,
        }
    }

    /// How long a client should wait before retrying, when it should.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::Backpressure { retry_after }
            | ApiError::Unavailable { retry_after } => Some(*retry_after),
            ApiError::Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// A short fixed word for metrics labels.
    pub fn reason(&self) -> &'static str {
        self.code()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = self.field().map(Cow::into_owned);
        let code = self.code();
        match self {
            // The error, and beside it the same list a partly valid batch's
            // 202 carries: a client fixes every event from one answer.
            ApiError::NoValidEvent {
                index,
                first,
                rejected,
            } => {
                let message = format!(
                    "no event in the batch is valid; the first error, event {index}: {first}"
                );
                let body = serde_json::json!({
                    "error": { "code": code, "message": message, "field": field },
                    "rejected": rejected,
                });
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
            }
            other => error_response(
                other.status(),
                code,
                &other.to_string(),
                field.as_deref(),
                other.retry_after(),
            ),
        }
    }
}
