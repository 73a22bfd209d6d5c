//! Keys and scopes: `query` for reads, `admin` for the dead letters; health
//! routes and the API description stay open.

use eventline_shared::testkit::http::{head, request_whole_body_first};

use crate::helpers::{ScopedKeys, request, secured_app};

#[tokio::test]
async fn scopes_decide() {
    let app = secured_app(&[]).await;
    let ScopedKeys {
        query,
        admin,
        ingest,
    } = app.key_of_each_scope().await;

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
