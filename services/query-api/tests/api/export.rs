//! `GET /v1/events/export`: a search's whole window, streamed page by page.
//! 50,000 events over three days (ties on the timestamp, two services, the
//! default partition) come out each exactly once, in order; CSV quotes what
//! it must; filters and limits are those of `/v1/events`.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::helpers::{enc, event_at, open_app, rfc3339};

#[tokio::test]
async fn exports_fifty_thousand_events_each_once_in_order() {
    let app = open_app(&[]).await;
    let end = Utc::now() - TimeDelta::minutes(1);
    let start = end - TimeDelta::days(3);
    // Partitions for the first two days only: the rest lands in the
    // default partition, which the export must read too.
    app.partitions(start, start + TimeDelta::days(1)).await;
    let mut events = Vec::with_capacity(50_000);
    for i in 0..50_000i64 {
        // Every third event shares its predecessor's millisecond.
        let step = i - i / 3;
        let ts = start + TimeDelta::milliseconds(step * 7_777 % (3 * 86_400_000));
        let service = if i % 2 == 0 { "checkout" } else { "search" };
        let mut e = event_at(service, &format!("event {i}"), ts);
        if i % 10 == 0 {
            e.metadata = Some(json!({"n": i, "tag": "tenth"}).to_string());
        }
        events.push(e);
    }
    // One message a CSV must quote.
    events[7].message = "a, \"quoted\"\nmessage".into();
    app.store(&events).await;
    let sent: HashSet<String> = events.iter().map(|e| e.id.to_string()).collect();

    let window = format!(
        "from={}&to={}",
        enc(&rfc3339(start)),
        enc(&rfc3339(end + TimeDelta::seconds(1)))
    );
    let res = app
        .get(&format!(
            "/v1/events/export?format=ndjson&service=checkout,search&{window}"
        ))
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(res.header("transfer-encoding"), Some("chunked"));
    assert!(res.header("content-length").is_none());
    assert!(
        res.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=\"events-"))
    );
    let text = res.text();
    let mut seen = HashSet::new();
    let mut previous: Option<(DateTime<Utc>, String)> = None;
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let id = event["id"].as_str().unwrap().to_owned();
        let ts = DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        if let Some((pts, pid)) = &previous {
            assert!(
                (ts, &id) < (*pts, pid),
                "newest first, strictly: {pts} {pid} then {ts} {id}"
            );
        }
        previous = Some((ts, id.clone()));
        assert!(seen.insert(id), "exported twice: {line}");
    }
    assert_eq!(seen.len(), 50_000);
    assert_eq!(seen, sent);

    // Oldest first, and without naming a service (those the rollup saw).
    let res = app
        .get(&format!("/v1/events/export?order=asc&{window}"))
        .await;
    let ids: Vec<String> = res
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 50_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50_000);

    // Filters as in /v1/events; CSV with a header and quoting.
    let res = app
        .get(&format!(
            "/v1/events/export?format=csv&metadata.tag=tenth&{window}"
        ))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = res.text();
    assert!(csv.starts_with("id,timestamp,service,message,metadata,event_id,ingested_at\r\n"));
    assert_eq!(
        csv.matches("\r\n").count(),
        1 + 5_000,
        "a header and 5,000 rows"
    );
    let res = app
        .get(&format!("/v1/events/export?format=csv&q=quoted&{window}"))
        .await;
    let csv = res.text();
    assert!(
        csv.contains(",\"a, \"\"quoted\"\"\nmessage\","),
        "the message is quoted, its quotes doubled: {csv}"
    );
}

#[tokio::test]
async fn export_parameters_are_checked_before_anything_is_sent() {
    let app = open_app(&[]).await;
    for (query, field) in [
        ("format=xml", "format"),
        ("limit=10", "limit"),
        ("cursor=abc", "cursor"),
        ("page=2", "page"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("service=a%20b", "service"),
        ("whatever=1", "whatever"),
    ] {
        let res = app.get(&format!("/v1/events/export?{query}")).await;
        assert_eq!(res.status, 400, "{query}: {}", res.text());
        assert_eq!(res.error_field(), field, "{query}");
    }
    // Nothing in the window: an empty body (CSV: the header alone).
    let res = app.get("/v1/events/export?service=none").await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    let res = app.get("/v1/events/export?format=csv&service=none").await;
    assert_eq!(res.text().lines().count(), 1);
}
