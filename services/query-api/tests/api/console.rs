//! The console's server side: the page and its files (content-hashed,
//! cached for a year, gzipped), the security headers on every response of
//! the query-api and the gateway, and the session cookie — issued for a key,
//! accepted wherever the key is (reads, the tail, the export, a second
//! replica), refused once forged, expired or revoked, and never enough on
//! its own to change state without `X-Requested-With`.

use std::time::Duration;

use eventline_shared::api_key;
use eventline_shared::security_headers::CONTENT_SECURITY_POLICY_VALUE;
use eventline_shared::testkit::wait_until;
use query_api::console::assets;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    Response, ScopedKeys, Streaming, TestApp, open_app, open_gateway, request, secured_app,
};

fn assert_secure_headers(res: &Response, what: &str) {
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        res.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY_VALUE),
        "{what}"
    );
}

/// `POST /v1/session` with `key`; the cookie's `name=value` when it worked.
async fn sign_in(app: &TestApp, key: &str) -> (Response, Option<String>) {
    let auth = format!("Bearer {key}");
    let res = request(
        app.addr,
        "POST",
        "/v1/session",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    let cookie = res
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    (res, cookie)
}

async fn with_cookie(app: &TestApp, method: &str, path: &str, cookie: &str) -> Response {
    request(app.addr, method, path, &[("Cookie", cookie)], b"").await
}

#[tokio::test]
async fn every_response_of_both_services_carries_nosniff_and_the_policy() {
    let app = secured_app(&[]).await;
    for path in [
        "/",
        "/health/live",
        "/metrics",
        "/openapi.json",
        "/v1/events",
        "/no/such/route",
        "/assets/nope.js",
    ] {
        let res = app.get(path).await;
        assert_secure_headers(&res, path);
    }
    let res = request(app.addr, "DELETE", "/v1/events", &[], b"").await;
    assert_eq!(res.status, 405);
    assert_secure_headers(&res, "405");
    let mut tail = Streaming::open(app.addr, "/v1/tail", &[]).await;
    assert!(tail.wait_for("\r\n\r\n", Duration::from_secs(10)).await);
    assert!(
        tail.received
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{}",
        tail.received
    );

    // The gateway: an accepted event, a refused one, an unknown route.
    let stop = CancellationToken::new();
    let gateway = open_gateway(&stop).await;
    let addr = gateway.addr;
    let json = [("Content-Type", "application/json")];
    let res = request(
        addr,
        "POST",
        "/v1/events",
        &json,
        br#"{"service":"s","message":"m"}"#,
    )
    .await;
    assert_eq!(res.status, 202);
    assert_secure_headers(&res, "gateway 202");
    let res = request(addr, "POST", "/v1/events", &json, b"{}").await;
    assert_eq!(res.status, 400);
    assert_secure_headers(&res, "gateway 400");
    let res = request(addr, "GET", "/nowhere", &[], b"").await;
    assert_secure_headers(&res, "gateway 404");
    let res = request(addr, "GET", "/health/live", &[], b"").await;
    assert_secure_headers(&res, "gateway health");
    stop.cancel();
    gateway.task.await.unwrap();
}

#[tokio::test]
async fn the_page_and_its_files_are_served_from_the_binary() {
    let app = open_app(&[]).await;
    let assets = assets();
    for path in [
        "/",
        "/services",
        "/dead-letters",
        "/events/0190b2a4-0000-7000-8000-000000000000",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
        let html = res.text();
        assert!(html.contains(&format!("/assets/{}", assets.names["app.js"])));
        // No inline script or style: everything is a file of its own.
        assert!(
            !html.contains("<script>") && !html.contains("<style") && !html.contains(" style=")
        );
    }
    let app_js = &assets.names["app.js"];
    let res = app.get(&format!("/assets/{app_js}")).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        res.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(res.text().contains("import"));
    // Gzipped for a client that accepts it, revalidated by its ETag.
    let res = request(
        app.addr,
        "GET",
        &format!("/assets/{app_js}"),
        &[("Accept-Encoding", "gzip, br")],
        b"",
    )
    .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(&res.body[..2], &[0x1f, 0x8b]);
    let etag = res.header("etag").unwrap().to_owned();
    let res = request(
        app.addr,
        "GET",
        &format!("/assets/{app_js}"),
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(res.status, 304);
    // Only hashed names; the page itself is not an asset.
    for path in [
        "/assets/app.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status, 404, "{path}");
    }
    // The whole console, compressed, is well under 150 KiB.
    let total: usize = assets.by_name.values().map(|a| a.gzip.len()).sum();
    assert!(total < 150 * 1024, "{total} bytes gzipped");
}

#[tokio::test]
async fn a_session_cookie_stands_for_its_key_until_revoked() {
    let app = secured_app(&[]).await;
    let ScopedKeys {
        query,
        admin,
        ingest,
    } = app.key_of_each_scope().await;

    // A wrong key, a key that cannot read, no key: no cookie.
    let (res, cookie) = sign_in(&app, "evl_000000000000_nope").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "invalid_api_key");
    assert!(cookie.is_none());
    let (res, cookie) = sign_in(&app, &ingest).await;
    assert_eq!(res.status, 403);
    assert!(cookie.is_none());
    let res = request(app.addr, "POST", "/v1/session", &[], b"").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "missing_api_key");

    let (res, cookie) = sign_in(&app, &query).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let set = res.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(&query), "the key is not in the cookie");
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    assert_eq!(body["scopes"], serde_json::json!(["query"]));
    let cookie = cookie.unwrap();

    // The cookie reads wherever the key does: pages, the tail, the export.
    let me = with_cookie(&app, "GET", "/v1/session", &cookie).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["key_prefix"], body["key_prefix"]);
    for path in [
        "/v1/events",
        "/v1/stats",
        "/v1/services",
        "/v1/stats/histogram",
        "/v1/pipeline",
        "/v1/events/export",
    ] {
        let res = with_cookie(&app, "GET", path, &cookie).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
    }
    let res = with_cookie(&app, "GET", "/v1/dlq", &cookie).await;
    assert_eq!(res.status, 403, "a query key's cookie is a query key");
    let mut tail = Streaming::open(app.addr, "/v1/tail", &[("Cookie", &cookie)]).await;
    assert!(
        tail.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        tail.received
    );
    drop(tail);

    // Forged, or from a server with another pepper: refused.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut forged: Vec<char> = value.chars().collect();
    forged[5] = if forged[5] == 'A' { 'B' } else { 'A' };
    let forged = format!("{name}={}", forged.into_iter().collect::<String>());
    let res = with_cookie(&app, "GET", "/v1/events", &forged).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "invalid_session");

    // An admin's cookie replays, but only with X-Requested-With: a
    // cross-site form cannot send it.
    let (_, admin_cookie) = sign_in(&app, &admin).await;
    let admin_cookie = admin_cookie.unwrap();
    let json = ("Content-Type", "application/json");
    let res = request(
        app.addr,
        "POST",
        "/v1/dlq/replay",
        &[("Cookie", &admin_cookie), json],
        br#"{"all":true}"#,
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.error_code(), "missing_csrf_header");
    let res = request(
        app.addr,
        "POST",
        "/v1/dlq/replay",
        &[
            ("Cookie", &admin_cookie),
            json,
            ("X-Requested-With", "eventline-console"),
        ],
        br#"{"all":true}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());

    // Signing out clears the cookie in the browser.
    let res = with_cookie(&app, "DELETE", "/v1/session", &cookie).await;
    assert_eq!(res.status, 204);
    assert!(res.header("set-cookie").unwrap().contains("Max-Age=0"));

    // Revoking the key ends its sessions within the key cache's reload.
    let prefix = body["key_prefix"].as_str().unwrap();
    api_key::revoke(&app.db.pool, prefix).await.unwrap();
    let refused = wait_until(Duration::from_secs(5), || async {
        with_cookie(&app, "GET", "/v1/events", &cookie).await.status == 401
    })
    .await;
    assert!(refused, "a revoked key's cookie still reads");
    let res = with_cookie(&app, "GET", "/v1/events", &cookie).await;
    assert_eq!(res.error_code(), "invalid_api_key");
}

#[tokio::test]
async fn a_cookie_from_one_replica_works_on_another_and_expires() {
    let app = secured_app(&["--session-ttl-seconds", "2"]).await;
    let key = app.create_key("query").await;
    // A second query-api on the same database and pepper.
    let url = app.db.url.clone();
    let other = crate::helpers::spawn_on(&url, &["--session-ttl-seconds", "2"]).await;
    let ok = wait_until(Duration::from_secs(5), || async {
        sign_in(&app, &key).await.0.status == 200
    })
    .await;
    assert!(ok);
    let (_, cookie) = sign_in(&app, &key).await;
    let cookie = cookie.unwrap();
    let seen = wait_until(Duration::from_secs(5), || async {
        request(other, "GET", "/v1/events", &[("Cookie", &cookie)], b"")
            .await
            .status
            == 200
    })
    .await;
    assert!(seen, "the other replica refuses the cookie");
    // Expired: the cookie's own time, whatever the browser keeps.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = with_cookie(&app, "GET", "/v1/events", &cookie).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "invalid_session");
}

#[tokio::test]
async fn an_open_query_api_needs_no_sign_in() {
    let app = open_app(&[]).await;
    let res = request(app.addr, "POST", "/v1/session", &[], b"").await;
    assert_eq!(res.status, 200);
    assert!(res.header("set-cookie").is_none());
    assert_eq!(res.json()["auth_required"], false);
    let res = app.get("/v1/session").await;
    assert_eq!(res.json()["scopes"], serde_json::json!(["query", "admin"]));
    let res = app.get("/v1/pipeline").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["dead_letters"], 0);
    assert_eq!(body["backpressure"], false);
    assert_eq!(body["streams"].as_array().unwrap().len(), 1);
}
