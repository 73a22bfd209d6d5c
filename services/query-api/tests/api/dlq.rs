//! Dead letters: listed with their reasons, replayed back onto the ingest
//! stream atomically per entry (dedup claim released, gone from the DLQ),
//! undecodable ones left in place — and a replayed event stored by a real
//! worker.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use eventline_shared::EnrichedEvent;
use eventline_shared::stream_codec;
use eventline_shared::testkit::serve::{parse_args, serve};
use eventline_shared::testkit::{claim_holder, set_claim, wait_until};
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, event_at, open_app};

/// Writes a dead letter as the worker does: the original fields plus why.
async fn dead_letter(app: &TestApp, v: &[u8], e: &[u8], source_id: &str) -> String {
    redis::cmd("XADD")
        .arg(app.keys.dlq_of(&app.keys.stream(0)))
        .arg("*")
        .arg("v")
        .arg(v)
        .arg("e")
        .arg(e)
        .arg("reason")
        .arg("data_error")
        .arg("error")
        .arg("value too long for type character varying")
        .arg("first_failure")
        .arg("2026-11-23T03:12:00.000Z")
        .arg("last_failure")
        .arg("2026-11-23T03:12:05.000Z")
        .arg("deliveries")
        .arg(3)
        .arg("source_stream")
        .arg(app.keys.stream(0))
        .arg("source_id")
        .arg(source_id)
        .query_async(&mut app.conn.clone())
        .await
        .unwrap()
}

async fn dead_event(app: &TestApp, event: &EnrichedEvent, source_id: &str) -> String {
    let payload = stream_codec::encode(event).unwrap();
    dead_letter(app, b"1", &payload, source_id).await
}

async fn entries(app: &TestApp, key: &str) -> Vec<(String, HashMap<String, redis::Value>)> {
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut app.conn.clone())
        .await
        .unwrap();
    reply.ids.into_iter().map(|e| (e.id, e.map)).collect()
}

#[tokio::test]
async fn lists_dead_letters_with_reasons_in_pages() {
    let app = open_app(&[]).await;
    let event = event_at("checkout", "poison", Utc::now());
    let good = dead_event(&app, &event, "1-1").await;
    let bad = dead_letter(&app, b"1", b"\xc1garbage", "1-2").await;

    let res = app.get("/v1/dlq").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["total"], 2);
    let list = body["entries"].as_array().unwrap();
    assert_eq!(list[0]["id"], good.as_str());
    assert_eq!(list[0]["reason"], "data_error");
    assert_eq!(list[0]["deliveries"], 3);
    assert_eq!(list[0]["source_id"], "1-1");
    assert_eq!(list[0]["event"]["message"], "poison");
    assert_eq!(list[1]["id"], bad.as_str());
    assert!(list[1]["event"].is_null());
    assert!(
        list[1]["decode_error"]
            .as_str()
            .unwrap()
            .contains("not a valid event")
    );

    let page = app.get("/v1/dlq?limit=1").await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let next = page["next_cursor"].as_str().unwrap();
    let page = app
        .get(&format!("/v1/dlq?limit=1&cursor={next}"))
        .await
        .json();
    assert_eq!(page["entries"][0]["id"], bad.as_str());
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn replay_by_id_puts_the_event_back() {
    let app = open_app(&[]).await;
    let mut event = event_at("checkout", "poison", Utc::now());
    event.event_id = Some("order-7".into());
    let good = dead_event(&app, &event, "1-1").await;
    let bad = dead_letter(&app, b"1", b"\xc1garbage", "1-2").await;

    let body = format!(r#"{{"ids":["{good}","{bad}","9-9"]}}"#);
    let res = app.post_json("/v1/dlq/replay", &body).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let outcome = res.json();
    assert_eq!(outcome["replayed"][0]["id"], good.as_str());
    assert_eq!(
        outcome["replayed"][0]["stream"],
        app.keys.stream(0).as_str()
    );
    assert_eq!(outcome["not_replayable"][0]["id"], bad.as_str());
    assert_eq!(outcome["not_found"][0], "9-9");

    // Back on the stream with the original fields, as a new entry.
    let stream = entries(&app, &app.keys.stream(0)).await;
    assert_eq!(stream.len(), 1);
    assert_eq!(
        stream[0].0,
        outcome["replayed"][0]["new_id"].as_str().unwrap()
    );
    let field = |name: &str| match stream[0].1.get(name) {
        Some(redis::Value::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    let back = stream_codec::decode(field("v").as_deref(), field("e").as_deref()).unwrap();
    assert_eq!(back, vec![event]);
    // The DLQ keeps only the undecodable one.
    let dlq = entries(&app, &app.keys.dlq_of(&app.keys.stream(0))).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].0, bad);

    // Replaying it again finds nothing.
    let res = app
        .post_json("/v1/dlq/replay", &format!(r#"{{"ids":["{good}"]}}"#))
        .await;
    assert_eq!(res.json()["not_found"][0], good.as_str());
}

/// "Replay all" replays the dead letters there when it was asked, not the
/// ones that arrive while it runs (a replayed event failing again comes
/// back as a new entry; replaying it again in the same request would churn).
#[tokio::test]
async fn replay_all_stops_at_the_dead_letters_there_when_asked() {
    let app = open_app(&[]).await;
    for i in 0..300 {
        let event = event_at("search", &format!("dead {i}"), Utc::now());
        dead_event(&app, &event, &format!("1-{i}")).await;
    }
    // As soon as the replay has begun (the DLQ shrinks), 50 more arrive.
    let late = {
        let app_conn = app.conn.clone();
        let dlq = app.keys.dlq_of(&app.keys.stream(0));
        let stream = app.keys.stream(0);
        tokio::spawn(async move {
            let mut conn = app_conn;
            loop {
                let len: u64 = redis::cmd("XLEN")
                    .arg(&dlq)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if len < 300 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for i in 0..50 {
                let event = event_at("search", &format!("late {i}"), Utc::now());
                let payload = stream_codec::encode(&event).unwrap();
                let _: String = redis::cmd("XADD")
                    .arg(&dlq)
                    .arg("*")
                    .arg("v")
                    .arg("1")
                    .arg("e")
                    .arg(payload)
                    .arg("reason")
                    .arg("data_error")
                    .arg("source_stream")
                    .arg(&stream)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })
    };
    let res = app.post_json("/v1/dlq/replay", r#"{"all":true}"#).await;
    assert_eq!(res.status, 200);
    late.await.unwrap();
    assert_eq!(res.json()["replayed"].as_array().unwrap().len(), 300);
    let left = entries(&app, &app.keys.dlq_of(&app.keys.stream(0))).await;
    assert_eq!(left.len(), 50);
}

#[tokio::test]
async fn replay_all_keeps_a_claim_held_by_another_entry() {
    let app = open_app(&["--stream-shards", "4"]).await;
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for i in 0..5 {
        let event = event_at("search", &format!("dead {i}"), Utc::now());
        ids.push(dead_event(&app, &event, &format!("1-{i}")).await);
        events.push(event);
    }
    // Event 0's claim belongs to a later entry that was stored: it stays
    // (the worker will count the replay as its duplicate). Claims of dead
    // events were released by the worker that wrote the letters.
    let mut conn = app.conn.clone();
    set_claim(&mut conn, &app.keys, events[0].dedup_key(), "5-0").await;

    let res = app.post_json("/v1/dlq/replay", r#"{"all":true}"#).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["replayed"].as_array().unwrap().len(), 5);
    assert_eq!(
        claim_holder(&mut conn, &app.keys, events[0].dedup_key())
            .await
            .as_deref(),
        Some("5-0")
    );
    assert!(
        entries(&app, &app.keys.dlq_of(&app.keys.stream(0)))
            .await
            .is_empty()
    );
    // Each went to its own shard.
    let mut on_streams = 0;
    for shard in 0..4 {
        for (_, fields) in entries(&app, &app.keys.stream(shard)).await {
            let Some(redis::Value::BulkString(e)) = fields.get("e") else {
                panic!()
            };
            let [event] = &stream_codec::decode(Some(b"1"), Some(e)).unwrap()[..] else {
                panic!("a replayed letter is one event")
            };
            assert_eq!(
                eventline_shared::redis_keys::shard_of(event.dedup_key(), 4),
                shard
            );
            on_streams += 1;
        }
    }
    assert_eq!(on_streams, 5);
}

#[tokio::test]
async fn a_replayed_dead_letter_is_stored_by_the_worker() {
    let app = open_app(&[]).await;
    let mut event = event_at("checkout", "second chance", Utc::now());
    event.event_id = Some("order-99".into());
    let id = dead_event(&app, &event, "1-1").await;

    // A real worker on the same database and key prefix.
    let mut config: worker::config::Config = parse_args(["worker"]);
    config.redis = app.redis.clone();
    config.database = app.db.args();
    config.listen.shutdown_grace = Duration::from_secs(5);
    let registry = eventline_shared::metrics::new_registry("worker");
    let worker = worker::Worker::start(config, registry).await.unwrap();
    let stop = CancellationToken::new();
    let running = serve(worker, worker::run, stop.clone()).await;

    let res = app
        .post_json("/v1/dlq/replay", &format!(r#"{{"ids":["{id}"]}}"#))
        .await;
    assert_eq!(res.json()["replayed"].as_array().unwrap().len(), 1);
    let stored = wait_until(Duration::from_secs(20), || async {
        app.get(&format!("/v1/events/{}", event.id)).await.status == 200
    })
    .await;
    assert!(stored, "the worker stored the replayed event");
    let res = app.get(&format!("/v1/events/{}", event.id)).await.json();
    assert_eq!(res["message"], "second chance");
    assert_eq!(res["event_id"], "order-99");
    stop.cancel();
    running.task.await.unwrap();
}
