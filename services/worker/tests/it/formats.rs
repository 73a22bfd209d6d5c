//! The stream formats side by side: entries of format 1, written by
//! gateways before format 2, are stored as before; a request's entry
//! (format 2) is stored event by event, and its bad events are dead-lettered
//! one by one while the rest of the request lands.

use std::time::Duration;

use eventline_shared::stream_codec;

use eventline_shared::testkit;

use crate::common::*;

#[tokio::test]
async fn entries_of_both_formats_are_stored_exactly_once() {
    let env = TestEnv::new().await;
    let old = events(300);
    let new = events(700);
    // An event sent by a client to an old gateway, then retried to a new
    // one: the same event_id in both formats.
    let retried = event("billing", "invoice paid", Some("inv-7"));
    let mut again = retried.clone();
    again.id = uuid::Uuid::now_v7();
    env.add_v1(&old[..150]).await;
    env.add_v1(std::slice::from_ref(&retried)).await;
    env.add_requests(&new, 70).await;
    env.add_v1(&old[150..]).await;
    env.add_requests(std::slice::from_ref(&again), 1).await;

    let w = InProcess::start(env.config(&["--batch-size", "250"])).await;
    env.wait_drained(Duration::from_secs(30)).await;
    let all: Vec<_> = old.iter().chain(&new).chain([&retried]).cloned().collect();
    assert_exactly_once(&env.db.pool, &all).await;
    assert_eq!(w.metric(worker::metrics::INSERTED, None), 1001.0);
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "claim"))),
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn an_entry_holding_one_event_id_twice_stores_it_once() {
    // The gateway's grouped entries hold several single-event requests; two
    // of them may carry the same event_id (a client's retry racing its
    // first try), with different ids and timestamps. Both are claimed for
    // the same entry, so the claim alone would keep both.
    let env = TestEnv::new().await;
    let mut request = events(20);
    let first = event("billing", "paid", Some("pay-1"));
    let mut retry = first.clone();
    retry.id = uuid::Uuid::now_v7();
    retry.ts += chrono::TimeDelta::milliseconds(3);
    retry.request_id = Some("req-retry".into());
    request.insert(5, first.clone());
    request.insert(12, retry);
    env.add_requests(&request, request.len()).await;

    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(30)).await;
    assert_exactly_once(&env.db.pool, &request).await;
    assert_eq!(w.metric(worker::metrics::INSERTED, None), 21.0);
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "claim"))),
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn a_request_with_bad_events_stores_the_good_ones_and_dead_letters_each_bad_one() {
    let env = TestEnv::new().await;
    let mut request = events(40);
    let nul = event("svc", "nul \u{0} inside", Some("nul-1"));
    let mut bad_json = event("svc", "bad json", None);
    bad_json.metadata = Some("{\"unclosed\":".into());
    request.insert(7, nul.clone());
    request.insert(30, bad_json.clone());
    let ids = env.add_requests(&request, request.len()).await;

    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(30)).await;
    let good: Vec<_> = request
        .iter()
        .filter(|e| e.id != nul.id && e.id != bad_json.id)
        .cloned()
        .collect();
    assert_exactly_once(&env.db.pool, &good).await;

    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    for letter in &letters {
        assert_eq!(letter["reason"], "data", "{letter:?}");
        assert_eq!(letter["source_id"], ids[0], "the request's entry");
        assert_eq!(letter["v"], "1");
    }
    // Each holds its event alone, in format 1: a replay sends it and
    // nothing else of the request.
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(env.keys.dlq_of(&env.keys.stream(0)))
        .arg("-")
        .arg("+")
        .query_async(&mut env.conn.clone())
        .await
        .unwrap();
    let mut held: Vec<_> = worker::stream_reply::entries("XRANGE", reply)
        .unwrap()
        .iter()
        .map(|entry| {
            let events = stream_codec::decode(entry.field("v"), entry.field("e"))
                .expect("the letter holds a decodable event");
            assert_eq!(events.len(), 1, "{events:?}");
            let e = &events[0];
            (
                e.id,
                e.message.clone(),
                e.metadata.clone(),
                e.request_id.clone(),
            )
        })
        .collect();
    held.sort();
    let mut bad: Vec<_> = [&nul, &bad_json]
        .iter()
        .map(|e| {
            (
                e.id,
                e.message.clone(),
                e.metadata.clone(),
                e.request_id.clone(),
            )
        })
        .collect();
    bad.sort();
    assert_eq!(held, bad);
    assert_eq!(
        w.metric(worker::metrics::DEAD_LETTERED, Some(("reason", "data"))),
        2.0
    );
    // The refused event's claim is released: a fixed retry can land.
    let held = testkit::claim_holder(&mut env.conn.clone(), &env.keys, nul.dedup_key()).await;
    assert_eq!(held, None);
    w.stop().await;
}
