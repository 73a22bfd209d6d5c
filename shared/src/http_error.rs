//! The JSON error shape of every eventline HTTP API:
//! `{"error":{"code":"…","message":"…","field":"…"}}`, with `Retry-After` on
//! the statuses a client should retry (429, 503).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Debug, Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// Builds an error response. `retry_after` is rounded up to whole seconds.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
    retry_after: Option<Duration>,
) -> Response {
    let envelope = Envelope {
        error: Body {
            code,
            message,
            field,
        },
    };
    let mut response = (status, axum::Json(envelope)).into_response();
    if let Some(after) = retry_after {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// The fallback for paths no route matches: 404 in the JSON shape.
pub async fn no_route() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route",
        None,
        None,
    )
}

/// The fallback for a known path asked with a method it does not serve:
/// 405 in the JSON shape (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method; see the Allow header",
        None,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shape_and_retry_after() {
        let res = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "slow down",
            Some("service"),
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "2");
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"code":"rate_limited","message":"slow down","field":"service"}})
        );
    }
}
