//! Every way a query-api request can fail, and its HTTP answer in the
//! contract's JSON shape. Every 400 names the parameter at fault in `field`.
//! Internal details (SQL or Redis error text) are logged, never sent.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eventline_shared::http_error::error_response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        /// The parameter at fault (a query parameter or body field name).
        field: String,
    },
    #[error("missing API key")]
    MissingKey,
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("the console session has expired or is not valid; sign in again")]
    InvalidSession,
    #[error(
        "a request that changes state with the session cookie must carry the X-Requested-With header"
    )]
    MissingCsrfHeader,
    #[error("this API key lacks the `{0}` scope")]
    MissingScope(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("too many live tails are open; retry later")]
    TooManyTails,
    #[error("this API key already holds {0} live tails, its limit; close one first")]
    TooManyTailsForKey(u32),
    #[error("the database did not answer in time; retry later")]
    Timeout,
    #[error("{0} is unavailable; retry later")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 400 naming the parameter at fault.
    pub fn bad(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingKey | ApiError::UnknownKey | ApiError::InvalidSession => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::MissingScope(_) | ApiError::MissingCsrfHeader => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyTails | ApiError::TooManyTailsForKey(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::MissingKey => "missing_api_key",
            ApiError::UnknownKey => "invalid_api_key",
            ApiError::InvalidSession => "invalid_session",
            ApiError::MissingCsrfHeader => "missing_csrf_header",
            ApiError::MissingScope(_) => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooManyTails => "too_many_tails",
            ApiError::TooManyTailsForKey(_) => "too_many_tails_for_key",
            ApiError::Timeout => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyTails | ApiError::Timeout | ApiError::Unavailable(_) => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// Logs a database error and turns it into what the client may see: a
    /// statement timeout is a 504, anything else a 503.
    pub fn from_db(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            // 57014: query_canceled, what statement_timeout raises.
            if db.code().as_deref() == Some("57014") {
                tracing::warn!(%error, "statement timeout");
                return ApiError::Timeout;
            }
        }
        tracing::error!(%error, "database call failed");
        ApiError::Unavailable("the database")
    }

    /// Logs a Redis error and turns it into a 503.
    pub fn from_redis(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "Redis call failed");
        ApiError::Unavailable("Redis")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = match &self {
            ApiError::BadRequest { field, .. } => Some(field.as_str()),
            _ => None,
        };
        error_response(
            self.status(),
            self.code(),
            &self.to_string(),
            field,
            self.retry_after(),
        )
    }
}

/// Runs a database call with a deadline: the `statement_timeout` set on the
/// session should fire first (leaving the connection usable); this one
/// catches what it cannot, such as waiting for a connection or a network
/// that stopped answering.
pub async fn db_call<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(ApiError::from_db),
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "database call timed out"
            );
            Err(ApiError::Timeout)
        }
    }
}
