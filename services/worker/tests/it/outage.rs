//! PostgreSQL stopped under load: nothing is acked while it is away, the
//! worker reports not-ready and an open breaker, and once it is back every
//! event lands exactly once without restarting the worker.
//!
//! Scaled for the test suite's time budget: the contract's 30 s outage is
//! 8 s here (with CLAIM_IDLE 2 s, so claims and MAX_DELIVERIES would bite
//! during it if the waiting batches did not keep their entries), and the
//! "longer than DEDUP_TTL" case uses DEDUP_TTL 2 s and a 5 s outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventline_shared::EnrichedEvent;
use eventline_shared::schema;

use crate::common::*;

/// Retries and a breaker short enough that an outage shows within seconds.
const SHORT_RETRIES: [&str; 6] = [
    "--retry-base",
    "50",
    "--retry-max",
    "500",
    "--breaker-open",
    "500",
];

async fn outage(outage: Duration, dedup_ttl: &str) {
    let env = TestEnv::new().await;
    let pg = LocalPostgres::start().expect("a private PostgreSQL starts");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    schema::migrate(&pool).await.unwrap();
    let config = config_for(
        &env.redis,
        private_pg_args(&pg),
        &[
            "--dedup-ttl",
            dedup_ttl,
            "--claim-idle",
            "2000",
            "--claim-interval",
            "200",
            "--max-deliveries",
            "3",
            "--batch-size",
            "200",
        ]
        .iter()
        .chain(&SHORT_RETRIES)
        .copied()
        .collect::<Vec<_>>(),
    );
    let mut second = config.clone();
    second.worker.consumer = Some("second".into());
    let a = InProcess::start(config).await;
    let b = InProcess::start(second).await;

    // Load: 50 events every 50 ms, each 10th one sent twice (a client retry).
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let producing = producing.clone();
        let mut conn = env.conn.clone();
        let stream = env.stream();
        tokio::spawn(async move {
            let mut sent: Vec<EnrichedEvent> = Vec::new();
            while producing.load(Ordering::Relaxed) {
                let mut chunk = events(50);
                let mut retry = chunk[0].clone();
                let key = format!("retry-{}", sent.len());
                chunk[0].event_id = Some(key.clone());
                retry.event_id = Some(key);
                retry.id = uuid::Uuid::now_v7();
                add_events(&mut conn, &stream, &chunk).await;
                sent.extend(chunk);
                // The retry arrives a little later, maybe after the claim expired.
                add_events(&mut conn, &stream, &[retry]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        })
    };

    assert!(
        wait_until(Duration::from_secs(20), || async {
            row_count(&pool).await > 500
        })
        .await
    );
    pg.down().expect("PostgreSQL stops");
    // Give batches that were committing when it stopped a moment to fail.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let inserted = |w: &InProcess| w.metric(worker::metrics::INSERTED, None);
    let before = (inserted(&a), inserted(&b), env.stats().await.pending);
    let deadline = tokio::time::Instant::now() + outage - Duration::from_millis(1000);
    let mut saw_open = false;
    let mut pending = before.2;
    while tokio::time::Instant::now() < deadline {
        let now = env.stats().await.pending;
        assert!(
            now >= pending,
            "an entry was acked while PostgreSQL was down ({pending} → {now})"
        );
        pending = now;
        let (status, _) = a.get("/health/ready").await;
        assert_eq!(status, 503, "ready while PostgreSQL is down");
        for w in [&a, &b] {
            let (_, body) = w.get("/health/detailed").await;
            saw_open |= body.contains("\"circuit_breaker\":\"open\"");
            saw_open |= w.metric(worker::metrics::BREAKER_OPEN, None) == 1.0;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        (inserted(&a), inserted(&b)),
        (before.0, before.1),
        "nothing committed meanwhile"
    );
    assert!(saw_open, "the circuit breaker opened");
    pg.up().expect("PostgreSQL starts again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    producing.store(false, Ordering::Relaxed);
    let sent = producer.await.unwrap();

    env.wait_drained(Duration::from_secs(60)).await;
    assert_exactly_once(&pool, &sent).await;
    for w in [&a, &b] {
        for reason in ["decode", "data", "max_deliveries"] {
            assert_eq!(
                w.metric(worker::metrics::DEAD_LETTERED, Some(("reason", reason))),
                0.0
            );
        }
    }
    let (status, _) = a.get("/health/ready").await;
    assert_eq!(status, 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load() {
    outage(Duration::from_secs(8), "600").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_longer_than_dedup_ttl() {
    outage(Duration::from_secs(5), "2").await;
}

/// SIGTERM while PostgreSQL is down: the batches waiting for it give up
/// at once instead of retrying through the whole grace period; their
/// entries stay pending, and a worker started after the outage stores
/// every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_during_a_database_outage_is_prompt_and_loses_nothing() {
    let env = TestEnv::new().await;
    let pg = LocalPostgres::start().expect("a private PostgreSQL starts");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    schema::migrate(&pool).await.unwrap();
    let mut config = config_for(
        &env.redis,
        private_pg_args(&pg),
        &["--claim-idle", "1000", "--claim-interval", "200"]
            .iter()
            .chain(&SHORT_RETRIES)
            .copied()
            .collect::<Vec<_>>(),
    );
    config.listen.shutdown_grace = Duration::from_secs(30);
    let first = events(300);
    env.add(&first).await;
    let worker = InProcess::start(config.clone()).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            row_count(&pool).await == 300
        })
        .await
    );
    pool.close().await;

    pg.down().expect("PostgreSQL stops");
    let second = events(300);
    env.add(&second).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            worker.metric(worker::metrics::TRANSIENT_ERRORS, None) > 0.0
        })
        .await,
        "the worker meets the outage"
    );
    let stopping = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), worker.stop())
        .await
        .expect("stops well within its 30 s grace period while PostgreSQL is down");
    let took = stopping.elapsed();
    assert!(
        env.stats().await.pending > 0,
        "the waiting batch stays pending"
    );

    pg.up().expect("PostgreSQL starts again");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let mut again = config;
    again.worker.consumer = Some("after-the-outage".into());
    let after = InProcess::start(again).await;
    env.wait_drained(Duration::from_secs(60)).await;
    let all: Vec<_> = first.into_iter().chain(second).collect();
    assert_exactly_once(&pool, &all).await;
    after.stop().await;
    eprintln!("stopped {took:?} after SIGTERM with PostgreSQL down");
}
