//! Keyset pagination: a walk over 10,000 events spread over several days
//! (daily partitions and the default partition) returns every one exactly
//! once, in order, in both orders, with one and several services and with
//! none named — while new events keep arriving.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::helpers::{TestApp, days_ago, enc, event_at, open_app, rfc3339, store};

const EVENTS: usize = 10_000;

/// 10,000 events over five days: days 4..1 have partitions, day 5 lands in
/// the default partition. Every third event shares its timestamp with its
/// neighbours, so the id must break ties.
async fn seeded() -> (TestApp, HashSet<Uuid>, HashSet<Uuid>) {
    let app = open_app(&[]).await;
    app.partitions(days_ago(4), days_ago(1)).await;
    let start = days_ago(5);
    let step = TimeDelta::milliseconds((5 * 86_400_000 / EVENTS as i64) * 3);
    let mut a = HashSet::new();
    let mut b = HashSet::new();
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let service = if i % 2 == 0 { "svc-a" } else { "svc-b" };
            let event = event_at(
                service,
                &format!("event {i}"),
                start + step * (i / 3) as i32,
            );
            if i % 2 == 0 { &mut a } else { &mut b }.insert(event.id);
            event
        })
        .collect();
    app.store(&events).await;
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM events_default")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(in_default > 1000, "day 5 is in the default partition");
    (app, a, b)
}

/// Keeps inserting events inside the window until stopped.
fn insert_meanwhile(app: &TestApp, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let pool = app.db.pool.clone();
    tokio::spawn(async move {
        let mut added = 0;
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let events: Vec<_> = (0..50)
                .map(|k| {
                    let ts = days_ago(5) + TimeDelta::minutes((i * 50 + k) * 37 % (5 * 1440));
                    event_at(if k % 2 == 0 { "svc-a" } else { "svc-b" }, "late", ts)
                })
                .collect();
            store(&pool, &events).await;
            added += events.len();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        added
    })
}

/// Follows `next_cursor` to the end; checks the order of every step.
async fn walk(app: &TestApp, query: &str, desc: bool) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut last: Option<(DateTime<Utc>, Uuid)> = None;
    let mut cursor: Option<String> = None;
    for _page in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/v1/events?{query}&cursor={}", enc(c)),
            None => format!("/v1/events?{query}"),
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
        let body = res.json();
        for e in body["events"].as_array().unwrap() {
            let ts = DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            let id: Uuid = e["id"].as_str().unwrap().parse().unwrap();
            if let Some(prev) = last {
                if desc {
                    assert!((ts, id) < prev, "out of order");
                } else {
                    assert!((ts, id) > prev, "out of order");
                }
            }
            last = Some((ts, id));
            seen.push(id);
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
    panic!("the walk did not end");
}

fn exactly_once(seen: &[Uuid], expected: &HashSet<Uuid>) {
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was returned twice");
    let missing = expected.difference(&unique).count();
    assert_eq!(missing, 0, "{missing} events were never returned");
}

#[tokio::test]
async fn pagination_returns_every_event_once_in_both_orders_during_inserts() {
    let (app, a, b) = seeded().await;
    let both: HashSet<Uuid> = a.union(&b).copied().collect();
    let window = format!(
        "from={}&to={}",
        enc(&rfc3339(days_ago(5))),
        enc(&rfc3339(days_ago(0)))
    );
    let stop = Arc::new(AtomicBool::new(false));
    let inserter = insert_meanwhile(&app, stop.clone());

    let cases = [
        (format!("service=svc-a&{window}&limit=997"), true, &a),
        (
            format!("service=svc-b&{window}&limit=1000&order=asc"),
            false,
            &b,
        ),
        (
            format!("service=svc-a,svc-b&{window}&limit=1000"),
            true,
            &both,
        ),
        (
            format!("service=svc-a&service=svc-b&{window}&limit=333&order=asc"),
            false,
            &both,
        ),
        // No service: those the rollup saw in the window.
        (format!("{window}&limit=1000&order=desc"), true, &both),
    ];
    for (query, desc, expected) in cases {
        let seen = walk(&app, &query, desc).await;
        exactly_once(&seen, expected);
    }
    stop.store(true, Ordering::Relaxed);
    let added = inserter.await.unwrap();
    assert!(added > 0, "inserts ran during the walks");
}

#[tokio::test]
async fn one_event_by_id() {
    let app = open_app(&[]).await;
    let mut event = event_at("checkout", "paid", Utc::now());
    event.metadata = Some(r#"{"order":42}"#.into());
    event.event_id = Some("order-42".into());
    app.store(std::slice::from_ref(&event)).await;

    let res = app.get(&format!("/v1/events/{}", event.id)).await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["service"], "checkout");
    assert_eq!(body["message"], "paid");
    assert_eq!(body["metadata"]["order"], 42);
    assert_eq!(body["event_id"], "order-42");
    assert_eq!(body["timestamp"], rfc3339(event.ts));

    let res = app.get(&format!("/v1/events/{}", Uuid::now_v7())).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "not_found");
    let res = app.get("/v1/events/not-a-uuid").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_field(), "id");
}
