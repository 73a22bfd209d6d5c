//! Keys and scopes: `query` for reads, `admin` for the dead letters; health
//! routes and the API description stay open.

use std::time::Duration;

use eventline_shared::testkit::http::{head, request_whole_body_first};

use crate::helpers::{request, secured_app, wait_until};

#[tokio::test]
async fn scopes_decide() {
    let app = secured_app(&[]).await;
    let query = app.create_key("query").await;
    let admin = app.create_key("admin").await;
    let ingest = app.create_key("ingest").await;
    // Keys made after start-up are seen after the next reload (1 s here).
    // (The ingest key was made last: once it is known, all are.)
    let loaded = wait_until(Duration::from_secs(5), || async {
        app.get_with_key("/v1/services", &ingest).await.status == 403
    })
    .await;
    assert!(loaded);

    let res = app.get("/v1/events").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "missing_api_key");
    let res = app.get_with_key("/v1/events", "elk_nope_nope").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "invalid_api_key");
    let res = app.get_with_key("/v1/events", &ingest).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.error_code(), "insufficient_scope");

    assert_eq!(app.get_with_key("/v1/events", &query).await.status, 200);
    assert_eq!(app.get_with_key("/v1/stats", &query).await.status, 200);
    assert_eq!(app.get_with_key("/v1/dlq", &query).await.status, 403);
    assert_eq!(app.get_with_key("/v1/dlq", &admin).await.status, 200);
    assert_eq!(app.get_with_key("/v1/events", &admin).await.status, 200);
    let res = request(
        app.addr,
        "GET",
        "/v1/events",
        &[("X-API-Key", query.as_str())],
        b"",
    )
    .await;
    assert_eq!(res.status, 200);
    let res = request(
        app.addr,
        "POST",
        "/v1/dlq/replay",
        &[("Authorization", &format!("Bearer {query}"))],
        br#"{"all":true}"#,
    )
    .await;
    assert_eq!(res.status, 403);

    for open in [
        "/health/live",
        "/health/ready",
        "/health/business",
        "/openapi.json",
        "/metrics",
    ] {
        assert_eq!(app.get(open).await.status, 200, "{open}");
    }
    // Request ids: echoed when sane.
    let res = request(
        app.addr,
        "GET",
        "/health/live",
        &[("X-Request-Id", "abc-1")],
        b"",
    )
    .await;
    assert_eq!(res.header("x-request-id"), Some("abc-1"));
    let res = app.get("/v1/events").await;
    assert!(res.header("x-request-id").is_some());
}

/// An answer given before the body is read reaches a client that writes its
/// whole request first (Python's `requests`): the server reads and discards
/// the rest before closing instead of resetting the connection.
#[tokio::test]
async fn linger_an_early_401_reaches_a_client_that_sends_the_whole_body_first() {
    let app = secured_app(&[]).await;
    let body = vec![b' '; 4 << 20];
    let json = [("Content-Type", "application/json")];
    let res = request_whole_body_first(
        app.addr,
        &head("POST", "/v1/dlq/replay", &json, body.len()),
        &body,
    )
    .await
    .expect("a 401, not a reset or a broken pipe");
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "missing_api_key");
}
