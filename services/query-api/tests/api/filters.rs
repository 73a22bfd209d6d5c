//! Every filter of `GET /v1/events`, and every way to get a 400.

use chrono::{TimeDelta, Utc};
use serde_json::Value;

use crate::helpers::{TestApp, enc, event_at, open_app, rfc3339};

fn messages(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

async fn messages_of(app: &TestApp, query: &str) -> Vec<String> {
    let res = app.get(&format!("/v1/events?{query}")).await;
    assert_eq!(
        res.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&res.body)
    );
    let mut m = messages(&res.json());
    m.sort();
    m
}

/// Six events a minute apart, the newest a minute ago.
async fn seeded() -> (TestApp, chrono::DateTime<Utc>) {
    let app = open_app(&[]).await;
    let base = Utc::now() - TimeDelta::minutes(10);
    let specs: [(&str, &str, Option<&str>); 6] = [
        (
            "checkout",
            "Payment FAILED for order 1",
            Some(r#"{"status":500,"user":"ann","http":{"method":"POST"}}"#),
        ),
        (
            "checkout",
            "payment ok",
            Some(r#"{"status":"500","user":"bob"}"#),
        ),
        (
            "checkout",
            "100% done_now",
            Some(r#"{"status":200,"flag":true}"#),
        ),
        ("search", "query took 12ms", Some(r#"{"user":"ann"}"#)),
        ("search", "100 percent done now", None),
        (
            "auth",
            "login failed",
            Some(r#"{"user":"ann","http":{"method":"GET"}}"#),
        ),
    ];
    let events: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(i, (service, message, metadata))| {
            let mut e = event_at(service, message, base + TimeDelta::minutes(i as i64));
            e.metadata = metadata.map(str::to_owned);
            e
        })
        .collect();
    app.store(&events).await;
    (app, base)
}

#[tokio::test]
async fn every_filter() {
    let (app, base) = seeded().await;

    assert_eq!(
        messages_of(&app, "service=search").await,
        ["100 percent done now", "query took 12ms"]
    );
    assert_eq!(messages_of(&app, "service=search,auth").await.len(), 3);
    assert_eq!(messages_of(&app, "").await.len(), 6);
    assert_eq!(messages_of(&app, "service=nobody").await.len(), 0);

    // from inclusive, to exclusive.
    let window = format!(
        "from={}&to={}",
        enc(&rfc3339(base + TimeDelta::minutes(1))),
        enc(&rfc3339(base + TimeDelta::minutes(3)))
    );
    assert_eq!(
        messages_of(&app, &window).await,
        ["100% done_now", "payment ok"]
    );

    // Metadata containment: a number matches its number and its string form.
    assert_eq!(messages_of(&app, "metadata.status=500").await.len(), 2);
    assert_eq!(
        messages_of(&app, "metadata.status=200&service=checkout").await,
        ["100% done_now"]
    );
    assert_eq!(messages_of(&app, "metadata.user=ann").await.len(), 3);
    assert_eq!(
        messages_of(&app, "metadata.user=ann&metadata.http.method=GET").await,
        ["login failed"]
    );
    assert_eq!(
        messages_of(&app, "metadata.flag=true").await,
        ["100% done_now"]
    );
    assert_eq!(messages_of(&app, "metadata.user=carol").await.len(), 0);

    // q: case-insensitive substring; % and _ match themselves.
    assert_eq!(
        messages_of(&app, "q=payment").await,
        ["Payment FAILED for order 1", "payment ok"]
    );
    assert_eq!(
        messages_of(&app, "q=FAILED").await,
        ["Payment FAILED for order 1", "login failed"]
    );
    assert_eq!(messages_of(&app, "q=100%25").await, ["100% done_now"]);
    assert_eq!(messages_of(&app, "q=e_n").await, ["100% done_now"]);
    assert_eq!(messages_of(&app, "q=%25%25").await.len(), 0);

    // limit and order.
    let res = app.get("/v1/events?limit=2&order=asc").await.json();
    assert_eq!(messages(&res), ["Payment FAILED for order 1", "payment ok"]);
    assert!(res["next_cursor"].is_string());
    let res = app.get("/v1/events?limit=2").await.json();
    assert_eq!(messages(&res), ["login failed", "100 percent done now"]);

    // page/pageSize: a bounded offset, the same rows as the cursor walk.
    let res = app.get("/v1/events?pageSize=2&page=2").await.json();
    assert_eq!(messages(&res), ["query took 12ms", "100% done_now"]);
    let res = app.get("/v1/events?pageSize=2&page=4").await.json();
    assert_eq!(messages(&res).len(), 0);
    assert!(res["next_cursor"].is_null());

    // A cursor continues only its own query.
    let first = app.get("/v1/events?limit=1&service=checkout").await.json();
    let cursor = enc(first["next_cursor"].as_str().unwrap());
    let res = app
        .get(&format!(
            "/v1/events?limit=1&service=checkout&cursor={cursor}"
        ))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(messages(&res.json()), ["payment ok"]);
    for other in [
        "service=search",
        "service=checkout&order=asc",
        "service=checkout&q=x",
    ] {
        let res = app
            .get(&format!("/v1/events?{other}&cursor={cursor}"))
            .await;
        assert_eq!(res.status, 400, "{other}");
        assert_eq!(res.error_code(), "cursor_mismatch");
        assert_eq!(res.error_field(), "cursor");
    }
}

#[tokio::test]
async fn every_bad_request_is_a_400_naming_its_field() {
    let app = open_app(&["--max-query-range-days", "7"]).await;
    let now = Utc::now();
    let wide = format!(
        "from={}&to={}",
        enc(&rfc3339(now - TimeDelta::days(8))),
        enc(&rfc3339(now))
    );
    let reversed = format!(
        "from={}&to={}",
        enc(&rfc3339(now)),
        enc(&rfc3339(now - TimeDelta::hours(1)))
    );
    let cases: Vec<(String, &str)> = vec![
        ("/v1/events?colour=red".into(), "colour"),
        ("/v1/events?service=has%20space".into(), "service"),
        ("/v1/events?from=yesterday".into(), "from"),
        ("/v1/events?to=2026-02-30T00:00:00Z".into(), "to"),
        (format!("/v1/events?{reversed}"), "from"),
        (format!("/v1/events?{wide}"), "from"),
        // Only `from`, eight days back: the default `to` makes it too wide.
        (
            format!(
                "/v1/events?from={}",
                enc(&rfc3339(now - TimeDelta::days(8)))
            ),
            "from",
        ),
        ("/v1/events?limit=0".into(), "limit"),
        ("/v1/events?limit=1001".into(), "limit"),
        ("/v1/events?limit=abc".into(), "limit"),
        ("/v1/events?limit=5&limit=6".into(), "limit"),
        ("/v1/events?limit=5&pageSize=6".into(), "pageSize"),
        ("/v1/events?page=0".into(), "page"),
        ("/v1/events?page=100&pageSize=1000".into(), "page"),
        ("/v1/events?order=sideways".into(), "order"),
        ("/v1/events?cursor=garbage".into(), "cursor"),
        ("/v1/events?q=".into(), "q"),
        (format!("/v1/events?q={}", "x".repeat(201)), "q"),
        ("/v1/events?metadata.=1".into(), "metadata."),
        ("/v1/events?service=a%00b".into(), "service"),
        ("/v1/events/nope".into(), "id"),
        ("/v1/stats?service=a&bucket=1h".into(), "bucket"),
        (format!("/v1/stats?{wide}"), "from"),
        ("/v1/stats?from=noon".into(), "from"),
        ("/v1/services?x=1".into(), "x"),
        ("/v1/tail?services=a".into(), "services"),
        ("/v1/dlq?limit=0".into(), "limit"),
        ("/v1/dlq?cursor=abc".into(), "cursor"),
        ("/v1/dlq?start=1".into(), "start"),
    ];
    for (path, field) in cases {
        let res = app.get(&path).await;
        assert_eq!(
            res.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&res.body)
        );
        let body = res.json();
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    }
    for body in [
        "",
        "{}",
        r#"{"ids":[]}"#,
        r#"{"ids":["x"]}"#,
        r#"{"all":true,"ids":["1-0"]}"#,
        r#"{"every":true}"#,
    ] {
        let res = app.post_json("/v1/dlq/replay", body).await;
        assert_eq!(res.status, 400, "{body}");
        assert!(!res.error_field().is_empty(), "{body}");
    }
    let res = app.get("/v1/nothing-here").await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "no_route");
}
