//! The fresh path: a batch whose every entry was freshly claimed is `COPY`ed
//! straight into `events`; when a row exists after all (its dedup claim
//! expired), the batch is redone with `ON CONFLICT DO NOTHING`, and every
//! event is stored and counted once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use eventline_shared::testkit;

use crate::common::*;

#[tokio::test]
async fn an_old_row_whose_claim_expired_sends_the_batch_back_to_the_guarded_path() {
    let env = TestEnv::new().await;
    let first = event("billing", "invoice paid", Some("inv-9"));
    env.add(std::slice::from_ref(&first)).await;
    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(w.metric(worker::metrics::COPY_FALLBACKS, None), 0.0);
    w.stop().await;

    // Its claim expired (DEDUP_TTL); a client sends the same event again
    // (same event_id and timestamp, a new entry) among new ones, and they
    // are read as one batch.
    testkit::expire_claim(&mut env.conn.clone(), &env.keys, first.dedup_key()).await;
    let mut late = first.clone();
    late.id = uuid::Uuid::now_v7();
    let mut fresh = events(50);
    fresh[7].service = "billing".into();
    let mut batch = fresh.clone();
    batch.insert(25, late);
    env.add(&batch).await;
    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(20)).await;

    let mut all = fresh;
    all.push(first.clone());
    // Stored once, counted once (hour by hour) in the rollup.
    assert_exactly_once(&env.db.pool, &all).await;
    let kept: uuid::Uuid = sqlx::query_scalar("SELECT id FROM events WHERE dedup_key = $1")
        .bind(first.dedup_key())
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, first.id, "the old row stays");
    assert_eq!(w.metric(worker::metrics::COPY_FALLBACKS, None), 1.0);
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "database"))),
        1.0
    );
    assert_eq!(w.metric(worker::metrics::INSERTED, None), 50.0);
    w.stop().await;
}

#[tokio::test]
async fn the_rollup_of_fresh_batches_adds_to_existing_hours() {
    let env = TestEnv::new().await;
    // Spread over hours, services, today's partition and the default one
    // (yesterday has none), in several
    // batches that raise the same rollup rows.
    let now = Utc::now();
    let mut all = events(600);
    for (i, e) in all.iter_mut().enumerate() {
        let minutes = (i as i64 * 7) % (30 * 60);
        e.ts = DateTime::from_timestamp_millis(now.timestamp_millis() - minutes * 60_000)
            .unwrap_or(now);
    }
    env.add(&all).await;
    let w = InProcess::start(env.config(&["--batch-size", "100"])).await;
    env.wait_drained(Duration::from_secs(20)).await;
    assert_exactly_once(&env.db.pool, &all).await;
    assert_eq!(w.metric(worker::metrics::COPY_FALLBACKS, None), 0.0);
    assert_eq!(w.metric(worker::metrics::INSERTED, None), 600.0);
    w.stop().await;
}
