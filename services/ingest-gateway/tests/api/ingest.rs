//! The ingest contract: what is accepted, what lands on the stream, and every
//! 4xx for bad input.

use chrono::{SecondsFormat, Utc};

use crate::helpers::*;

#[tokio::test]
async fn a_single_event_lands_on_the_stream_as_sent() {
    let gw = open_gateway(&[]).await;
    let ts =
        (Utc::now() - chrono::TimeDelta::minutes(5)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = format!(
        r#"{{"service":"checkout","message":"paid ✓","timestamp":"{ts}","metadata":{{"order":{{"id":42,"tags":["a","b"]}}}},"event_id":"order-42"}}"#
    );
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "req-abc"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.header("x-request-id"), Some("req-abc"));
    let json = res.json();
    assert_eq!(json["accepted"], 1);
    assert!(json.get("rejected").is_none());
    let id = json["ids"][0].as_str().unwrap().to_owned();

    let entries = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(entries.len(), 1);
    let event = &entries[0].1;
    assert_eq!(event.id.to_string(), id);
    assert_eq!(event.id.get_version_num(), 7);
    assert_eq!(event.service, "checkout");
    assert_eq!(event.message, "paid ✓");
    assert_eq!(event.ts.to_rfc3339_opts(SecondsFormat::Millis, true), ts);
    assert_eq!(event.event_id.as_deref(), Some("order-42"));
    assert_eq!(event.request_id.as_deref(), Some("req-abc"));
    let metadata: serde_json::Value =
        serde_json::from_str(event.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"order":{"id":42,"tags":["a","b"]}})
    );
    assert!((Utc::now() - event.ingested_at).num_seconds() < 60);
}

#[tokio::test]
async fn the_alias_route_and_defaults() {
    let gw = open_gateway(&[]).await;
    // No Content-Type is read as JSON; no timestamp means now; a request id is made up.
    let res = request(
        gw.addr,
        "POST",
        "/events",
        &[],
        br#"{"service":"s","message":"m"}"#,
    )
    .await;
    assert_eq!(res.status, 202);
    let request_id = res.header("x-request-id").unwrap().to_owned();
    let entries = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(
        entries[0].1.request_id.as_deref(),
        Some(request_id.as_str())
    );
    assert!((Utc::now() - entries[0].1.ts).num_seconds().abs() < 60);
    assert_eq!(entries[0].1.metadata, None);
}

#[tokio::test]
async fn the_idempotency_key_header_sets_event_id() {
    let gw = open_gateway(&[]).await;
    let send = |headers: Vec<(&'static str, &'static str)>, body: &'static str| {
        let addr = gw.addr;
        async move {
            let mut h = vec![("Content-Type", "application/json")];
            h.extend(headers);
            request(addr, "POST", "/v1/events", &h, body.as_bytes()).await
        }
    };
    let res = send(
        vec![("Idempotency-Key", "k-1")],
        r#"{"service":"s","message":"m"}"#,
    )
    .await;
    assert_eq!(res.status, 202);
    let res = send(
        vec![("Idempotency-Key", "k-2")],
        r#"{"service":"s","message":"m","event_id":"other"}"#,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "conflicting_event_id");
    let res = send(
        vec![("Idempotency-Key", "")],
        r#"{"service":"s","message":"m"}"#,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["field"], "event_id");
    let entries = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1.event_id.as_deref(), Some("k-1"));
}

#[tokio::test]
async fn a_mixed_batch_accepts_the_valid_and_lists_the_rest() {
    let gw = open_gateway(&[]).await;
    let body = r#"[
        {"service":"a","message":"one"},
        {"service":"bad service","message":"two"},
        {"service":"b","message":"three","metadata":{"k":1}},
        {"service":"c"},
        42
    ]"#;
    let res = post_json(gw.addr, "/v1/events/batch", body, None).await;
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    let json = res.json();
    assert_eq!(json["accepted"], 2);
    assert_eq!(json["ids"].as_array().unwrap().len(), 2);
    let rejected = json["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "invalid_characters"),
            (3, "missing_field"),
            (4, "not_an_object")
        ]
    );
    assert_eq!(rejected[0]["field"], "service");
    assert!(rejected[0]["error"].as_str().unwrap().contains("service"));

    let entries = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    let messages: Vec<&str> = entries.iter().map(|(_, e)| e.message.as_str()).collect();
    assert_eq!(messages, vec!["one", "three"]);
    let ids: Vec<String> = entries.iter().map(|(_, e)| e.id.to_string()).collect();
    assert_eq!(json["ids"], serde_json::json!(ids));

    // The wrapped form, and a batch with nothing valid.
    let res = post_json(
        gw.addr,
        "/v1/events/batch",
        r#"{"events":[{"service":"w","message":"x"}]}"#,
        None,
    )
    .await;
    assert_eq!(res.status, 202);
    assert_eq!(res.json()["rejected"], serde_json::json!([]));
    let res = post_json(
        gw.addr,
        "/v1/events/batch",
        r#"[{"service":""},{"message":"m"}]"#,
        None,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "no_valid_event");
    let body = res.json();
    // The first bad event's field, with its position, and every event's error.
    assert_eq!(body["error"]["field"], "events[0].service");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 0);
    assert_eq!(rejected[0]["field"], "service");
    assert_eq!(rejected[1]["index"], 1);
    assert_eq!(rejected[1]["field"], "service");
    assert_eq!(
        stream_events(&gw.redis_url, &gw.keys.stream(0)).await.len(),
        3
    );
}

#[tokio::test]
async fn ndjson_and_gzip() {
    let gw = open_gateway(&[]).await;
    let ndjson = b"{\"service\":\"n\",\"message\":\"1\"}\n\n{\"service\":\"n\",\"message\":\"2\"}\r\nnot json\n";
    let res = request(
        gw.addr,
        "POST",
        "/v1/events/batch",
        &[("Content-Type", "application/x-ndjson")],
        ndjson,
    )
    .await;
    assert_eq!(res.status, 202);
    assert_eq!(res.json()["accepted"], 2);
    assert_eq!(res.json()["rejected"][0]["index"], 2);
    assert_eq!(res.json()["rejected"][0]["code"], "invalid_json");

    let body = gzip(br#"{"service":"g","message":"zipped"}"#);
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &body,
    )
    .await;
    assert_eq!(res.status, 202);
    let batch: String = (0..500)
        .map(|i| format!("{{\"service\":\"g\",\"message\":\"m{i}\"}}\n"))
        .collect();
    let res = request(
        gw.addr,
        "POST",
        "/v1/events/batch",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(batch.as_bytes()),
    )
    .await;
    assert_eq!(res.status, 202);
    assert_eq!(res.json()["accepted"], 500);
    assert_eq!(
        stream_events(&gw.redis_url, &gw.keys.stream(0)).await.len(),
        503
    );
}

#[tokio::test]
async fn sizes_bombs_and_content_types() {
    let gw = open_gateway(&[]).await;
    // A gzip bomb: 64 MiB of spaces inside a valid-looking JSON prefix.
    let mut bomb = b"{\"service\":\"s\",\"message\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&bomb),
    )
    .await;
    assert_eq!(res.status, 413);
    assert_eq!(res.error_code(), "payload_too_large");

    let big = format!(
        r#"{{"service":"s","message":"{}"}}"#,
        "x".repeat((1 << 20) + 1)
    );
    assert_eq!(
        post_json(gw.addr, "/v1/events", &big, None).await.status,
        413
    );

    let many: Vec<String> = (0..1001)
        .map(|_| r#"{"service":"s","message":"m"}"#.to_string())
        .collect();
    let res = post_json(
        gw.addr,
        "/v1/events/batch",
        &format!("[{}]", many.join(",")),
        None,
    )
    .await;
    assert_eq!(res.status, 413);
    assert_eq!(res.error_code(), "too_many_events");

    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "text/plain")],
        b"hi",
    )
    .await;
    assert_eq!(res.status, 415);
    assert_eq!(res.error_code(), "unsupported_media_type");
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "br"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(res.status, 415);
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        b"plain",
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "invalid_gzip");

    // Nothing of the above reached the stream.
    assert!(
        stream_events(&gw.redis_url, &gw.keys.stream(0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn every_event_rule_is_a_400_naming_the_field() {
    let gw = open_gateway(&[]).await;
    let old = (Utc::now() - chrono::TimeDelta::days(31)).to_rfc3339();
    let future = (Utc::now() + chrono::TimeDelta::hours(2)).to_rfc3339();
    let deep = format!("{}1{}", r#"{"a":"#.repeat(17), "}".repeat(17));
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("not json".into(), "invalid_json", None),
        (
            r#"[{"service":"s","message":"m"}]"#.into(),
            "not_an_object",
            None,
        ),
        (
            r#"{"service":"s","message":"m","level":"x"}"#.into(),
            "unknown_field",
            Some("level"),
        ),
        (
            r#"{"message":"m"}"#.into(),
            "missing_field",
            Some("service"),
        ),
        (
            r#"{"service":"s"}"#.into(),
            "missing_field",
            Some("message"),
        ),
        (
            r#"{"service":"","message":"m"}"#.into(),
            "empty",
            Some("service"),
        ),
        (
            format!(r#"{{"service":"{}","message":"m"}}"#, "s".repeat(101)),
            "too_long",
            Some("service"),
        ),
        (
            r#"{"service":"a b","message":"m"}"#.into(),
            "invalid_characters",
            Some("service"),
        ),
        (
            r#"{"service":"s","message":""}"#.into(),
            "empty",
            Some("message"),
        ),
        (
            format!(r#"{{"service":"s","message":"{}"}}"#, "é".repeat(2001)),
            "too_long",
            Some("message"),
        ),
        (
            r#"{"service":"s","message":"a\u0000"}"#.into(),
            "nul_character",
            Some("message"),
        ),
        (
            r#"{"service":"s","message":"m","timestamp":"nope"}"#.into(),
            "invalid_timestamp",
            Some("timestamp"),
        ),
        (
            r#"{"service":"s","message":"m","timestamp":"2026-01-01T00:00:00"}"#.into(),
            "invalid_timestamp",
            Some("timestamp"),
        ),
        (
            format!(r#"{{"service":"s","message":"m","timestamp":"{old}"}}"#),
            "timestamp_too_old",
            Some("timestamp"),
        ),
        (
            format!(r#"{{"service":"s","message":"m","timestamp":"{future}"}}"#),
            "timestamp_in_future",
            Some("timestamp"),
        ),
        (
            r#"{"service":"s","message":"m","metadata":[1]}"#.into(),
            "invalid_type",
            Some("metadata"),
        ),
        (
            format!(r#"{{"service":"s","message":"m","metadata":{deep}}}"#),
            "too_deep",
            None,
        ),
        (
            format!(
                r#"{{"service":"s","message":"m","metadata":{{"k":"{}"}}}}"#,
                "x".repeat(16 * 1024)
            ),
            "too_large",
            Some("metadata"),
        ),
        (
            r#"{"service":"s","message":"m","metadata":{"a":{"k\u0000":1}}}"#.into(),
            "nul_character",
            Some("metadata.a.k\\0"),
        ),
        (
            r#"{"service":"s","message":"m","event_id":""}"#.into(),
            "empty",
            Some("event_id"),
        ),
        (
            format!(
                r#"{{"service":"s","message":"m","event_id":"{}"}}"#,
                "k".repeat(129)
            ),
            "too_long",
            Some("event_id"),
        ),
        (
            r#"{"service":"s","message":"m","event_id":"ü"}"#.into(),
            "invalid_characters",
            Some("event_id"),
        ),
    ];
    for (body, code, field) in &cases {
        let res = post_json(gw.addr, "/v1/events", body, None).await;
        assert_eq!(res.status, 400, "{body}");
        let json = res.json();
        assert_eq!(json["error"]["code"], *code, "{body}: {json}");
        if let Some(field) = field {
            assert_eq!(json["error"]["field"], *field, "{body}: {json}");
        }
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
    }
    // Invalid UTF-8 in the body.
    let res = request(
        gw.addr,
        "POST",
        "/v1/events",
        &[],
        b"{\"service\":\"s\xff\",\"message\":\"m\"}",
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "invalid_utf8");
    assert!(
        stream_events(&gw.redis_url, &gw.keys.stream(0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn shards_spread_requests_by_dedup_key() {
    let gw = open_gateway(&["--stream-shards", "4"]).await;
    // Single events: each on the shard of its dedup key.
    for i in 0..200 {
        let res = post_json(
            gw.addr,
            "/v1/events",
            &format!(r#"{{"service":"s","message":"m","event_id":"e{i}"}}"#),
            None,
        )
        .await;
        assert_eq!(res.status, 202);
    }
    let mut total = 0;
    for shard in 0..4 {
        let entries = stream_events(&gw.redis_url, &gw.keys.stream(shard)).await;
        assert!(entries.len() > 20, "shard {shard} has {}", entries.len());
        for (_, event) in &entries {
            assert_eq!(
                eventline_shared::redis_keys::shard_of(event.dedup_key(), 4),
                shard
            );
        }
        total += entries.len();
    }
    assert_eq!(total, 200);

    // A batch: one entry, on the shard of its first event.
    let batch: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"service":"s","message":"m","event_id":"b{i}"}}"#))
        .collect();
    let res = post_json(
        gw.addr,
        "/v1/events/batch",
        &format!("[{}]", batch.join(",")),
        None,
    )
    .await;
    assert_eq!(res.status, 202);
    let first = eventline_shared::event::dedup_key("s", Some("b0"), uuid::Uuid::nil());
    let shard = eventline_shared::redis_keys::shard_of(first, 4);
    let entries = stream_events(&gw.redis_url, &gw.keys.stream(shard)).await;
    let batch_entry = &entries.last().expect("the batch's entry").0;
    let packed: Vec<_> = entries.iter().filter(|(id, _)| id == batch_entry).collect();
    assert_eq!(packed.len(), 50, "the batch is one entry");
    for (i, (_, event)) in packed.iter().enumerate() {
        assert_eq!(event.event_id.as_deref(), Some(format!("b{i}").as_str()));
    }
}

#[tokio::test]
async fn metrics_and_health() {
    let gw = open_gateway(&[]).await;
    post_json(
        gw.addr,
        "/v1/events",
        r#"{"service":"s","message":"m"}"#,
        None,
    )
    .await;
    post_json(gw.addr, "/v1/events", r#"{"service":""}"#, None).await;
    let res = request(gw.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body).unwrap();
    assert!(
        text.contains(r#"eventline_ingest_requests_total{route="/v1/events",status="202"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"eventline_ingest_events_rejected_total{reason="empty"} 1"#),
        "{text}"
    );
    assert!(text.contains("eventline_ingest_events_accepted_total 1"));
    for path in [
        "/health/live",
        "/health/ready",
        "/health/buffer",
        "/health/detailed",
    ] {
        let res = request(gw.addr, "GET", path, &[], b"").await;
        assert_eq!(res.status, 200, "{path}");
    }
    let detailed = request(gw.addr, "GET", "/health/detailed", &[], b"")
        .await
        .json();
    assert_eq!(detailed["service"]["redis_breaker"], "closed");
    assert_eq!(detailed["dependencies"][0]["name"], "redis");
    // The workers' group as the gateway sees it: nothing reads this test's
    // stream, so its one entry is undelivered (no group yet: lag unknown).
    let shard = &detailed["service"]["streams"][0];
    assert_eq!(shard["stream"], gw.keys.stream(0));
    assert_eq!(shard["length"], 1);
    assert_eq!(shard["pending"], 0);
}

#[tokio::test]
async fn the_dead_letter_stream_length_is_exported() {
    let gw = open_gateway(&[]).await;
    let client = redis::Client::open(gw.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for reason in ["decode", "data"] {
        let _: String = redis::cmd("XADD")
            .arg(gw.keys.dlq_of(&gw.keys.stream(0)))
            .arg("*")
            .arg("reason")
            .arg(reason)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The gateway reads the lengths every 50 ms in tests.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let res = request(gw.addr, "GET", "/metrics", &[], b"").await;
        let text = String::from_utf8(res.body).unwrap();
        if text.contains("eventline_ingest_dead_letter_entries 2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gauge never read 2: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let detailed = request(gw.addr, "GET", "/health/detailed", &[], b"")
        .await
        .json();
    assert_eq!(detailed["service"]["dead_letters"], 2);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let gw = open_gateway(&[]).await;
    let res = request(gw.addr, "GET", "/v1/nothing-here", &[], b"").await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "no_route");
    let res = request(gw.addr, "GET", "/v1/events", &[], b"").await;
    assert_eq!(res.status, 405);
    assert_eq!(res.error_code(), "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST"));
    let res = request(gw.addr, "DELETE", "/health/ready", &[], b"").await;
    assert_eq!(res.status, 405);
    assert_eq!(res.error_code(), "method_not_allowed");
    // The request id still comes back on errors.
    assert!(res.header("x-request-id").is_some());
}

#[tokio::test]
async fn an_event_id_repeated_within_a_batch_is_sent_once_and_answered_with_one_id() {
    let gw = open_gateway(&[]).await;
    let res = post_json(
        gw.addr,
        "/v1/events/batch",
        r#"[{"service":"s","message":"a","event_id":"e-1"},
            {"service":"s","message":"b"},
            {"service":"s","message":"a again","event_id":"e-1"},
            {"service":"t","message":"other service, same id","event_id":"e-1"}]"#,
        None,
    )
    .await;
    assert_eq!(res.status, 202);
    let body = res.json();
    assert_eq!(body["accepted"], 4);
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 4);
    // The repeat answers with the first one's id: the one its row will have.
    assert_eq!(ids[2], ids[0]);
    assert_ne!(ids[3], ids[0]);
    assert_ne!(ids[1], ids[0]);
    let entries = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(entries.len(), 3);
    let messages: Vec<&str> = entries.iter().map(|(_, e)| e.message.as_str()).collect();
    assert_eq!(messages, ["a", "b", "other service, same id"]);
}

/// `count` single-event requests at once, each with its own request id
/// (the odd ones with `event_id` "same" when `repeat_event_id`); every
/// answer must be 202. Returns the stream's (entry id, event) pairs.
async fn concurrent_singles(
    gw: &TestGateway,
    count: usize,
    repeat_event_id: bool,
) -> Vec<(String, EnrichedEvent)> {
    let mut requests = tokio::task::JoinSet::new();
    // 64 at a time: the in-process server's listen backlog (128) must hold
    // the connections its one test thread has not accepted yet.
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..count {
        let addr = gw.addr;
        let connections = connections.clone();
        requests.spawn(async move {
            let _connection = connections.acquire().await.expect("semaphore");
            let request_id = format!("req-{i}");
            let event_id = if repeat_event_id && i % 2 == 1 {
                r#","event_id":"same""#
            } else {
                ""
            };
            let body = format!(r#"{{"service":"s","message":"m{i}"{event_id}}}"#);
            let res = request(
                addr,
                "POST",
                "/v1/events",
                &[
                    ("Content-Type", "application/json"),
                    ("X-Request-Id", &request_id),
                ],
                body.as_bytes(),
            )
            .await;
            assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
        });
    }
    while let Some(done) = requests.join_next().await {
        done.expect("request task");
    }
    stream_events(&gw.redis_url, &gw.keys.stream(0)).await
}

#[tokio::test]
async fn concurrent_single_events_share_entries_and_keep_their_request_ids() {
    let gw = open_gateway(&[]).await;
    let count = 300;
    let events = concurrent_singles(&gw, count, true).await;
    assert_eq!(
        events.len(),
        count,
        "every accepted event is on the stream once"
    );
    for (_, event) in &events {
        let i = event.message.strip_prefix('m').expect("message m<i>");
        assert_eq!(
            event.request_id.as_deref(),
            Some(format!("req-{i}").as_str()),
            "each event keeps its own request's id"
        );
    }
    let entries: std::collections::BTreeSet<&str> =
        events.iter().map(|(entry, _)| entry.as_str()).collect();
    assert!(
        entries.len() < count,
        "{count} concurrent requests were written as {} entries: none grouped",
        entries.len()
    );
    // The worker claims an entry's keys for the entry: one entry never
    // holds the same event_id twice, so each of the 150 "same" has its own.
    for entry in &entries {
        let same = events
            .iter()
            .filter(|(id, e)| id == entry && e.event_id.as_deref() == Some("same"))
            .count();
        assert!(
            same <= 1,
            "entry {entry} holds event_id \"same\" {same} times"
        );
    }
}

#[tokio::test]
async fn group_writers_0_writes_each_request_as_its_own_entry() {
    let gw = open_gateway(&["--group-writers", "0"]).await;
    let count = 100;
    let events = concurrent_singles(&gw, count, false).await;
    let entries: std::collections::BTreeSet<&str> =
        events.iter().map(|(entry, _)| entry.as_str()).collect();
    assert_eq!(entries.len(), count);
}
