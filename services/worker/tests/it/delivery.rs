//! The happy paths: many events through two workers, duplicates, health.

use std::time::Duration;

use chrono::{Days, Utc};
use eventline_shared::schema;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_through_two_workers_land_exactly_once() {
    let env = TestEnv::new().await;
    let events = events(100_000);
    // Half as batches (entries of 100 events), half as single events.
    env.add_requests(&events[..50_000], 100).await;
    env.add(&events[50_000..]).await;
    let args = ["--batch-size", "2000", "--consumer"];
    let a = InProcess::start(env.config(&[&args[..], &["a"]].concat())).await;
    let b = InProcess::start(env.config(&[&args[..], &["b"]].concat())).await;
    env.wait_drained(Duration::from_secs(120)).await;
    assert_exactly_once(&env.db.pool, &events).await;
    let inserted =
        a.metric(worker::metrics::INSERTED, None) + b.metric(worker::metrics::INSERTED, None);
    assert_eq!(inserted, 100_000.0);
    // Both took part.
    assert!(a.metric(worker::metrics::INSERTED, None) > 0.0);
    assert!(b.metric(worker::metrics::INSERTED, None) > 0.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_same_event_id_three_times_is_one_row() {
    let env = TestEnv::new().await;
    let first = event("billing", "invoice paid", Some("inv-42"));
    let mut retries = vec![first.clone()];
    for _ in 0..2 {
        // A client retry: a new entry (new id) carrying the same event.
        let mut again = first.clone();
        again.id = uuid::Uuid::now_v7();
        retries.push(again);
    }
    env.add(&retries).await;
    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(20)).await;
    assert_exactly_once(&env.db.pool, &retries[..1]).await;
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "claim"))),
        2.0
    );
    w.stop().await;
}

#[tokio::test]
async fn after_the_dedup_claim_expired_the_database_key_is_the_guard() {
    let env = TestEnv::new().await;
    let w = InProcess::start(env.config(&["--dedup-ttl", "1"])).await;
    let first = event("billing", "invoice paid", Some("inv-7"));
    env.add(std::slice::from_ref(&first)).await;
    env.wait_drained(Duration::from_secs(20)).await;
    // A claim lives one to two DEDUP_TTLs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut late = first.clone();
    late.id = uuid::Uuid::now_v7();
    env.add(&[late]).await;
    env.wait_drained(Duration::from_secs(20)).await;
    assert_exactly_once(&env.db.pool, &[first]).await;
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "database"))),
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn start_up_creates_partitions_and_health_reports_the_stream() {
    let env = TestEnv::new().await;
    env.add(&events(10)).await;
    let w = InProcess::start(env.config(&[])).await;
    let today = Utc::now().date_naive();
    let parts: Vec<String> = schema::list_partitions(&env.db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for d in 0..=2 {
        let day = today.checked_add_days(Days::new(d)).unwrap();
        assert!(parts.contains(&schema::partition_name(day)), "{parts:?}");
    }
    env.wait_drained(Duration::from_secs(20)).await;
    let (status, _) = w.get("/health/ready").await;
    assert_eq!(status, 200);
    let (status, body) = w.get("/health/detailed").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let service = &doc["service"];
    assert_eq!(service["circuit_breaker"], "closed");
    assert_eq!(service["streams"][0]["length"], 10);
    assert_eq!(service["streams"][0]["pending"], 0);
    assert_eq!(service["streams"][0]["lag"], 0);
    let (_, metrics) = w.get("/metrics").await;
    assert!(
        metrics.contains("eventline_worker_events_inserted_total 10"),
        "{metrics}"
    );
    assert!(metrics.contains("eventline_worker_dead_lettered_total{reason=\"decode\"} 0"));
    w.stop().await;
}

/// A read that fails while a batch is half gathered: the entries already
/// read are delivered to this consumer, so they are processed at once
/// instead of waiting, pending, for a claim after `CLAIM_IDLE`.
#[tokio::test]
async fn a_read_error_mid_batch_still_processes_the_entries_already_read() {
    use eventline_shared::config::SecretUrl;
    use eventline_shared::testkit::servers::LocalRedis;

    let redis = LocalRedis::start("everysec").expect("a private Redis starts");
    let mut env = TestEnv::new().await;
    env.redis.redis_url = SecretUrl::for_tests(&redis.url());
    env.conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // A batch gathers for up to 8 s, pausing 2 s between reads; nothing is
    // claimed for two minutes.
    let w = InProcess::start(env.config(&[
        "--batch-size",
        "1000",
        "--flush-interval",
        "8000",
        "--claim-idle",
        "120000",
    ]))
    .await;
    let events = events(10);
    env.add(&events).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            env.stats().await.pending == 10
        })
        .await,
        "the worker never read the entries"
    );
    // Every connection but ours drops while the worker pauses between reads.
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut env.conn.clone())
        .await
        .unwrap();
    env.wait_drained(Duration::from_secs(30)).await;
    assert_exactly_once(&env.db.pool, &events).await;
    assert_eq!(w.metric(worker::metrics::CLAIMED, None), 0.0);
    w.stop().await;
}

/// Only events with a client `event_id` claim, and their claims are fields
/// of bucket hashes that expire whole, one to two DEDUP_TTLs after they
/// were made.
#[tokio::test]
async fn only_client_ids_claim_in_hashes_that_expire_whole() {
    let env = TestEnv::new().await;
    let mut keyed = events(20);
    for (i, e) in keyed.iter_mut().enumerate() {
        e.event_id = Some(format!("order-{i}"));
    }
    let anonymous = events(20);
    let ids = env.add_requests(&keyed, 10).await;
    env.add_requests(&anonymous, 10).await;
    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let all: Vec<_> = keyed.iter().chain(&anonymous).cloned().collect();
    assert_exactly_once(&env.db.pool, &all).await;

    let mut conn = env.conn.clone();
    for (event, id) in keyed.iter().zip(&ids) {
        let holder =
            eventline_shared::testkit::claim_holder(&mut conn, &env.keys, event.dedup_key()).await;
        assert_eq!(holder.as_deref(), Some(id.as_str()));
    }
    for event in &anonymous {
        let holder =
            eventline_shared::testkit::claim_holder(&mut conn, &env.keys, event.dedup_key()).await;
        assert_eq!(holder, None, "an event without event_id claims nothing");
    }
    // Every claim hash expires within two TTLs, none before one.
    let hashes: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}dedup:*", env.keys.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !hashes.is_empty() && hashes.len() <= keyed.len(),
        "{hashes:?}"
    );
    for hash in hashes {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((590..=1200).contains(&ttl), "{hash} expires in {ttl} s");
    }
    w.stop().await;
}
