//! Headers every response of every eventline HTTP service carries, whatever
//! produced it (a handler, an error, a fallback, the health routes):
//!
//! - `X-Content-Type-Options: nosniff` — a browser never guesses a type, so
//!   an event stored verbatim and returned as JSON or CSV is never run as
//!   HTML or script;
//! - `Content-Security-Policy: default-src 'self'; …` — the query-api's
//!   console loads only its own files (no inline script or style, no other
//!   origin, no framing), and any other response opened in a browser can
//!   run nothing at all;
//! - `Referrer-Policy: same-origin` — a console URL (a search) never leaves
//!   with a link.
//!
//! Invariant: one layer, outermost in each router, so no response escapes
//! it; a header a handler set itself is kept.

use axum::extract::Request;
use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of every response: only this origin's own files, no inline
/// script or style, no plugins, no framing, no `<base>` tricks.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

const HEADERS: [(HeaderName, &str); 3] = [
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
    (REFERRER_POLICY, "same-origin"),
];

/// Middleware (`axum::middleware::from_fn(security_headers::layer)`): adds
/// the headers above to the response unless the handler set them.
pub async fn layer(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_response_gets_them_fallbacks_included() {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/own",
                get(|| async { ([(CONTENT_SECURITY_POLICY, "sandbox")], "own") }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn(layer));
        for path in ["/", "/nowhere"] {
            let res = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.headers()["x-content-type-options"], "nosniff");
            assert_eq!(
                res.headers()["content-security-policy"],
                CONTENT_SECURITY_POLICY_VALUE
            );
        }
        let res = app
            .oneshot(Request::get("/own").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.headers()["content-security-policy"], "sandbox");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
}
