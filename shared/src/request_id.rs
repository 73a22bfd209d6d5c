//! Request ids: every HTTP request gets one (the client's `X-Request-Id` when
//! it is sane, else a new UUIDv7), it is echoed in the response, recorded in
//! the request's span so every log line carries it, and handed to handlers as
//! a [`RequestId`] extension so the gateway can put it in the stream entry.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id kept as is; longer or non-printable ids
/// are replaced, since they end up in logs and stream entries.
const MAX_LEN: usize = 128;

/// The request's id, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn acceptable(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(s)
}

/// Middleware (`axum::middleware::from_fn(request_id::layer)`): assigns the
/// id, runs the request inside a span carrying it, echoes it back, and logs
/// server errors at error level and client errors at debug.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&REQUEST_ID_HEADER).and_then(acceptable) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = route.as_deref().unwrap_or("unmatched"),
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    if status.is_server_error() {
        span.in_scope(|| tracing::error!(status = status.as_u16(), "request failed"));
    } else if status.is_client_error() {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "request rejected"));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                get(|axum::Extension(id): axum::Extension<RequestId>| async move { id.0 }),
            )
            .layer(axum::middleware::from_fn(layer))
    }

    #[tokio::test]
    async fn keeps_a_sane_client_id_and_echoes_it() {
        let res = app()
            .oneshot(
                Request::get("/")
                    .header("x-request-id", "abc-123")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "abc-123");
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"abc-123");
    }

    #[tokio::test]
    async fn replaces_missing_or_unsafe_ids() {
        for header in [None, Some("has space"), Some(&*"x".repeat(200))] {
            let mut req = Request::get("/");
            if let Some(h) = header {
                req = req.header("x-request-id", h);
            }
            let res = app()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        }
    }
}
