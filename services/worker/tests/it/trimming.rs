//! Trimming never deletes an entry the group still needs.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn trimming_keeps_every_unacked_and_undelivered_entry() {
    let env = TestEnv::new().await;
    let conn = env.conn.clone();
    let w = InProcess::start(env.config(&["--trim-interval", "100000"])).await;
    let early = events(300);
    env.add(&early).await;
    env.wait_drained(Duration::from_secs(20)).await;
    w.stop().await;

    // 100 entries taken by a consumer that never acks (and is never claimed
    // from: CLAIM_IDLE stays at its default minute).
    let stuck_events = events(100);
    let stuck = env.add(&stuck_events).await;
    env.deliver_to("stuck", Some(100)).await;
    let late = events(200);
    env.add(&late).await;
    let w = InProcess::start(env.config(&["--trim-interval", "100"])).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            env.stats().await.lag == Some(0) && row_count(&env.db.pool).await == 500
        })
        .await
    );
    // The timer trims the 300 acked entries below the oldest pending one.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            env.stats().await.length == 300
        })
        .await,
        "{:?}",
        env.stats().await
    );
    w.stop().await;

    // Entries not delivered yet survive too.
    let undelivered = env.add(&events(50)).await;
    let removed = worker::trim::trim(&*w_state(&env).await, &env.stream())
        .await
        .unwrap();
    assert_eq!(removed, 0);
    let present = |ids: Vec<String>| {
        let mut conn = conn.clone();
        let stream = env.stream();
        async move {
            for id in ids {
                let found: redis::Value = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&id)
                    .arg(&id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_ne!(found, redis::Value::Array(vec![]), "entry {id} was trimmed");
            }
        }
    };
    present(stuck).await;
    present(undelivered).await;
    assert_eq!(env.stats().await.length, 350);
}

/// A worker's state without running it, to call the trimmer directly.
async fn w_state(env: &TestEnv) -> std::sync::Arc<worker::State> {
    let registry = prometheus::Registry::new();
    worker::Worker::start(env.config(&[]), registry)
        .await
        .unwrap()
        .state()
        .clone()
}
