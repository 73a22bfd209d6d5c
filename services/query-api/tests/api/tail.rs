//! `GET /v1/tail`: events added after the client connected arrive as SSE,
//! filtered by service, with heartbeats; a client resumes with
//! `Last-Event-ID` and is told when the stream no longer holds what it
//! missed; tails are capped, and a tail whose client left frees its place.

use std::time::Duration;

use chrono::Utc;
use eventline_shared::testkit::wait_until;

use crate::helpers::{Streaming, event_at, open_app};

#[tokio::test]
async fn delivers_events_sent_after_connecting() {
    let app = open_app(&["--tail-heartbeat", "200", "--stream-shards", "2"]).await;
    // Already on the stream before the tail: not delivered.
    let old = event_at("checkout", "before", Utc::now());
    let old_entry = app.xadd(&app.keys.stream(0), &old).await;

    let mut tail = Streaming::open(app.addr, "/v1/tail?service=checkout", &[]).await;
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
    // The id is the tail's position in both shards.
    assert!(
        tail.received.contains(&format!("id: {old_entry},{entry}")),
        "{}",
        tail.received
    );
    assert!(tail.received.contains(r#""message":"after""#));
    assert!(!tail.received.contains(&old.id.to_string()));
    assert!(!tail.received.contains(&other.id.to_string()));
    assert!(tail.wait_for(": heartbeat", Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_batch_entry_arrives_event_by_event_filtered() {
    let app = open_app(&["--tail-heartbeat", "200"]).await;
    let mut tail = Streaming::open(app.addr, "/v1/tail?service=checkout", &[]).await;
    assert!(tail.wait_for(": connected", Duration::from_secs(10)).await);
    let now = Utc::now();
    let batch = [
        event_at("checkout", "first of the batch", now),
        event_at("search", "filtered out", now),
        event_at("checkout", "last of the batch", now),
    ];
    let entry = app.xadd_request(&app.keys.stream(0), &batch).await;
    assert!(
        tail.wait_for(&batch[2].id.to_string(), Duration::from_secs(10))
            .await,
        "{}",
        tail.received
    );
    assert!(tail.received.contains(&batch[0].id.to_string()));
    assert!(!tail.received.contains(&batch[1].id.to_string()));
    // Both share their entry's position.
    assert_eq!(
        tail.received.matches(&format!("id: {entry}")).count(),
        2,
        "{}",
        tail.received
    );
}

#[tokio::test]
async fn tails_are_capped_and_freed_when_the_client_leaves() {
    let app = open_app(&["--tail-heartbeat", "100", "--max-tails", "1"]).await;
    let mut first = Streaming::open(app.addr, "/v1/tail", &[]).await;
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
    let mut again = Streaming::open(app.addr, "/v1/tail", &[]).await;
    assert!(
        again.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        again.received
    );
}

/// The last SSE `id` line received.
fn last_id(received: &str) -> String {
    received
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id was received")
        .to_owned()
}

#[tokio::test]
async fn a_client_resumes_after_its_last_event_id() {
    let app = open_app(&["--stream-shards", "2"]).await;
    let mut tail = Streaming::open(app.addr, "/v1/tail", &[]).await;
    assert!(tail.wait_for(": connected", Duration::from_secs(10)).await);
    let first = event_at("checkout", "first", Utc::now());
    app.xadd(&app.keys.stream(1), &first).await;
    assert!(
        tail.wait_for(&first.id.to_string(), Duration::from_secs(10))
            .await
    );
    let resume = last_id(&tail.received);
    drop(tail);

    // Sent while the client was away, on both shards.
    let missed = [
        event_at("checkout", "missed 0", Utc::now()),
        event_at("search", "missed 1", Utc::now()),
    ];
    app.xadd(&app.keys.stream(0), &missed[0]).await;
    app.xadd(&app.keys.stream(1), &missed[1]).await;

    let mut again = Streaming::open(app.addr, "/v1/tail", &[("Last-Event-ID", &resume)]).await;
    for event in &missed {
        assert!(
            again
                .wait_for(&event.id.to_string(), Duration::from_secs(10))
                .await,
            "{}",
            again.received
        );
    }
    assert!(!again.received.contains(&first.id.to_string()));
    assert!(!again.received.contains("event: gap"));

    // An id that is not ours starts at the present.
    let mut fresh = Streaming::open(app.addr, "/v1/tail", &[("Last-Event-ID", "nonsense")]).await;
    assert!(fresh.wait_for(": connected", Duration::from_secs(10)).await);
    let later = event_at("checkout", "later", Utc::now());
    app.xadd(&app.keys.stream(0), &later).await;
    assert!(
        fresh
            .wait_for(&later.id.to_string(), Duration::from_secs(10))
            .await
    );
    assert!(!fresh.received.contains(&missed[0].id.to_string()));
}

#[tokio::test]
async fn a_resume_past_trimmed_entries_announces_the_gap() {
    let app = open_app(&[]).await;
    let stream = app.keys.stream(0);
    let gone = event_at("checkout", "trimmed", Utc::now());
    let gone_entry = app.xadd(&stream, &gone).await;
    let kept = event_at("checkout", "kept", Utc::now());
    let kept_entry = app.xadd(&stream, &kept).await;
    // As the workers' trimming does once both were stored.
    let _: i64 = redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MINID")
        .arg(&kept_entry)
        .query_async(&mut app.conn.clone())
        .await
        .unwrap();

    // The client had seen everything before `gone`.
    let before = {
        let (ms, seq) = gone_entry.split_once('-').unwrap();
        match seq.parse::<u64>().unwrap() {
            0 => format!("{}-{}", ms.parse::<u64>().unwrap() - 1, u64::MAX),
            n => format!("{ms}-{}", n - 1),
        }
    };
    let mut tail = Streaming::open(app.addr, "/v1/tail", &[("Last-Event-ID", &before)]).await;
    assert!(
        tail.wait_for(&kept.id.to_string(), Duration::from_secs(10))
            .await,
        "{}",
        tail.received
    );
    assert!(tail.received.contains("event: gap"), "{}", tail.received);
    assert!(tail.received.contains(&format!(r#""after":"{before}""#)));
    assert!(tail.received.contains(r#""missing_from":""#));
    assert!(!tail.received.contains(&gone.id.to_string()));
}

#[tokio::test]
async fn one_key_cannot_take_every_tail() {
    use crate::helpers::secured_app;

    let app = secured_app(&[
        "--max-tails",
        "4",
        "--max-tails-per-key",
        "2",
        "--tail-heartbeat",
        "100",
    ])
    .await;
    let greedy = app.create_key("query").await;
    let other = app.create_key("query").await;
    // Keys made after start-up are seen after the next reload (1 s here).
    let loaded = wait_until(Duration::from_secs(5), || async {
        app.get_with_key("/v1/services", &other).await.status == 200
    })
    .await;
    assert!(loaded);
    let auth = |key: &str| format!("Bearer {key}");
    let greedy_auth = auth(&greedy);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tail =
            Streaming::open(app.addr, "/v1/tail", &[("Authorization", &greedy_auth)]).await;
        assert!(tail.wait_for(": connected", Duration::from_secs(10)).await);
        held.push(tail);
    }
    let res = app.get_with_key("/v1/tail", &greedy).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.error_code(), "too_many_tails_for_key");
    // Another key still gets one.
    let other_auth = auth(&other);
    let mut theirs = Streaming::open(app.addr, "/v1/tail", &[("Authorization", &other_auth)]).await;
    assert!(
        theirs
            .wait_for(": connected", Duration::from_secs(10))
            .await,
        "{}",
        theirs.received
    );
    // A tail given up frees its key's place.
    drop(held.pop());
    let freed = wait_until(Duration::from_secs(10), || async {
        let mut again =
            Streaming::open(app.addr, "/v1/tail", &[("Authorization", &greedy_auth)]).await;
        again
            .wait_for(": connected", Duration::from_millis(500))
            .await
    })
    .await;
    assert!(freed, "the key's tail place came back");
}

#[tokio::test]
async fn a_tail_ends_after_its_lifetime_and_frees_its_place() {
    let app = open_app(&["--tail-max-seconds", "1", "--max-tails", "1"]).await;
    let mut tail = Streaming::open(app.addr, "/v1/tail", &[]).await;
    assert!(tail.wait_for(": connected", Duration::from_secs(10)).await);
    assert!(
        tail.wait_for("event: end", Duration::from_secs(10)).await,
        "{}",
        tail.received
    );
    assert!(tail.received.contains("Last-Event-ID"));
    // The place is free again although this client never closed.
    let freed = wait_until(Duration::from_secs(10), || async {
        let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
        metrics.contains("eventline_query_tails_open 0")
    })
    .await;
    assert!(freed);
    let mut next = Streaming::open(app.addr, "/v1/tail", &[]).await;
    assert!(
        next.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        next.received
    );
}
