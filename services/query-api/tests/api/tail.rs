//! `GET /v1/tail`: events added after the client connected arrive as SSE,
//! filtered by service, with heartbeats; tails are capped, and a tail whose
//! client left frees its place.

use std::time::Duration;

use chrono::Utc;

use crate::helpers::{Streaming, event_at, open_app, wait_until};

#[tokio::test]
async fn delivers_events_sent_after_connecting() {
    let app = open_app(&["--tail-heartbeat", "200", "--stream-shards", "2"]).await;
    // Already on the stream before the tail: not delivered.
    let old = event_at("checkout", "before", Utc::now());
    app.xadd(&app.keys.stream(0), &old).await;

    let mut tail = Streaming::open(app.addr, "/v1/tail?service=checkout").await;
    assert!(
        tail.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        tail.received
    );
    assert!(tail.received.contains("200 OK"));
    assert!(tail.received.contains("text/event-stream"));

    let other = event_at("search", "not for this tail", Utc::now());
    app.xadd(&app.keys.stream(1), &other).await;
    let new = event_at("checkout", "after", Utc::now());
    let entry = app.xadd(&app.keys.stream(1), &new).await;
    assert!(
        tail.wait_for(&new.id.to_string(), Duration::from_secs(10))
            .await,
        "{}",
        tail.received
    );
    assert!(tail.received.contains("event: event"));
    assert!(tail.received.contains(&format!("id: {entry}")));
    assert!(tail.received.contains(r#""message":"after""#));
    assert!(!tail.received.contains(&old.id.to_string()));
    assert!(!tail.received.contains(&other.id.to_string()));
    assert!(tail.wait_for(": heartbeat", Duration::from_secs(5)).await);
}

#[tokio::test]
async fn tails_are_capped_and_freed_when_the_client_leaves() {
    let app = open_app(&["--tail-heartbeat", "100", "--max-tails", "1"]).await;
    let mut first = Streaming::open(app.addr, "/v1/tail").await;
    assert!(first.wait_for(": connected", Duration::from_secs(10)).await);

    let res = app.get("/v1/tail").await;
    assert_eq!(res.status, 429);
    assert_eq!(res.error_code(), "too_many_tails");

    drop(first);
    // The next heartbeat finds the client gone and ends the tail.
    let freed = wait_until(Duration::from_secs(10), || async {
        let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
        metrics.contains("eventline_query_tails_open 0")
    })
    .await;
    assert!(freed, "the tail ended after its client left");
    let mut again = Streaming::open(app.addr, "/v1/tail").await;
    assert!(
        again.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        again.received
    );
}
