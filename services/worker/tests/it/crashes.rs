//! Workers that die at the worst moments: aborted at each crash point,
//! killed (SIGKILL) between commit and ack, and stopped politely (SIGTERM)
//! under load. After another worker recovers: 0 lost, 0 duplicated.

use std::time::Duration;

use crate::common::*;

const EVENTS: usize = 3000;

/// The first worker (a child process) dies at `point`; an in-process worker
/// claims what it left and finishes.
async fn crash_then_recover(point: &str) {
    let env = TestEnv::new().await;
    let mut all = events(EVENTS);
    // Client retries among them, so dedup claims matter after the crash.
    let mut retry = all[10].clone();
    retry.id = uuid::Uuid::now_v7();
    all[10].event_id = Some("retried".into());
    retry.event_id = Some("retried".into());
    // As the gateway writes batches: requests of 50 events, one entry each.
    env.add_requests(&all, 50).await;
    env.add(std::slice::from_ref(&retry)).await;

    let mut child = spawn_child(
        &env,
        &[
            ("CONSUMER", "doomed"),
            ("BATCH_SIZE", "500"),
            (worker::failpoint::ENV, point),
        ],
    );
    let status = wait_exit(&mut child, Duration::from_secs(60)).await;
    assert!(!status.success(), "the worker should have died at {point}");
    let stats = env.stats().await;
    assert!(
        stats.pending > 0,
        "the dead worker left entries pending at {point}"
    );
    let rows_after_crash = row_count(&env.db.pool).await;
    if point == "after_commit" {
        assert!(rows_after_crash > 0, "committed before the crash");
    } else {
        assert_eq!(rows_after_crash, 0, "nothing committed before {point}");
    }

    let w = InProcess::start(env.config(&[
        "--consumer",
        "rescuer",
        "--claim-idle",
        "300",
        "--claim-interval",
        "100",
    ]))
    .await;
    env.wait_drained(Duration::from_secs(60)).await;
    assert_exactly_once(&env.db.pool, &all).await;
    assert!(w.metric(worker::metrics::CLAIMED, None) > 0.0);
    assert!(w.metric(worker::metrics::REDELIVERIES, None) > 0.0);
    assert_eq!(
        w.metric(worker::metrics::DUPLICATES, Some(("guard", "claim")))
            + w.metric(worker::metrics::DUPLICATES, Some(("guard", "database"))),
        // The client retry, plus (after the commit) the rows already stored.
        1.0 + rows_after_crash as f64
    );
    // Redelivered entries holding their own claims went the guarded path
    // (never a COPY that had to fall back); new ones were COPYed.
    assert_eq!(w.metric(worker::metrics::COPY_FALLBACKS, None), 0.0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_dedup_claim_and_commit() {
    crash_then_recover("after_claim").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_just_before_insert() {
    crash_then_recover("before_insert").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_just_before_commit() {
    crash_then_recover("before_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_ack() {
    crash_then_recover("after_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_after_insert_before_ack() {
    let env = TestEnv::new().await;
    let all = events(EVENTS);
    env.add(&all).await;
    let mut child = spawn_child(
        &env,
        &[
            ("CONSUMER", "victim"),
            ("BATCH_SIZE", "400"),
            (worker::failpoint::ENV, "after_commit=hang"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            row_count(&env.db.pool).await > 0
        })
        .await,
        "the worker committed a batch"
    );
    child.kill().await.unwrap(); // SIGKILL: no shutdown, no ack.
    let committed = row_count(&env.db.pool).await;
    assert!(env.stats().await.pending as i64 >= committed);

    let w = InProcess::start(env.config(&["--claim-idle", "300", "--claim-interval", "100"])).await;
    env.wait_drained(Duration::from_secs(60)).await;
    assert_exactly_once(&env.db.pool, &all).await;
    assert!(w.metric(worker::metrics::DUPLICATES, Some(("guard", "database"))) >= committed as f64);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_exits_zero_and_loses_nothing() {
    let env = TestEnv::new().await;
    let all = events(30_000);
    env.add(&all).await;
    let mut child = spawn_child(&env, &[("CONSUMER", "polite"), ("BATCH_SIZE", "200")]);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            row_count(&env.db.pool).await > 0
        })
        .await,
        "the worker started inserting"
    );
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0));
    // It finished and acked the batches in hand: nothing is left pending.
    let stats = env.stats().await;
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(
        (row_count(&env.db.pool).await as usize) < all.len(),
        "it stopped mid-load"
    );

    let w = InProcess::start(env.config(&[])).await;
    env.wait_drained(Duration::from_secs(60)).await;
    assert_exactly_once(&env.db.pool, &all).await;
    w.stop().await;
}
