//! `retention-job schedule`: answers /health/ready, runs passes on its cron
//! schedule, exposes the metrics, and stops when cancelled.

use std::time::Duration;

use clap::Parser;
use retention_job::{Cli, Command};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn schedule_serves_health_runs_passes_and_stops_on_cancel() {
    let db = database().await;
    seed_forty_days(&db.pool).await;
    let argv = [
        "retention-job",
        "schedule",
        "--database-url",
        &db.url,
        "--cron",
        "* * * * * *",
        "--now",
        NOW,
        "--delete-pause",
        "0",
        "--shutdown-grace",
        "5",
    ];
    let Command::Schedule(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!("schedule parses as Command::Schedule")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { retention_job::run_schedule(&args, listener, registry, shutdown).await }
    });

    let (status, body) = http_get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");

    // Within a few ticks, a pass has succeeded and the metrics say so.
    let mut succeeded = false;
    for _ in 0..100 {
        if runs(&db.pool).await.iter().any(|r| r.0 == "success") {
            succeeded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        succeeded,
        "a scheduled pass succeeded: {:?}",
        runs(&db.pool).await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("eventline_retention_partitions_dropped_total 9"),
        "{metrics}"
    );
    assert!(metrics.contains("eventline_retention_last_success_timestamp_seconds"));
    let (_, detailed) = http_get(addr, "/health/detailed").await;
    assert!(detailed.contains("last_pass"), "{detailed}");

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within the grace period")
        .unwrap();
    stopped.unwrap();
}

#[tokio::test]
async fn a_starting_scheduler_reports_the_last_success_before_it() {
    let db = database().await;
    let finished: i64 = sqlx::query_scalar(
        "INSERT INTO maintenance_runs (outcome, finished_at, dry_run)
         VALUES ('success', now() - interval '3 hours', false),
                ('success', now() - interval '1 hour', true),
                ('failed', now(), false)
         RETURNING floor(extract(epoch FROM finished_at))::bigint",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let argv = [
        "retention-job",
        "schedule",
        "--database-url",
        &db.url,
        // Yearly: no pass runs during the test.
        "--cron",
        "0 0 2 1 1 *",
        "--shutdown-grace",
        "5",
    ];
    let Command::Schedule(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!("schedule parses as Command::Schedule")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            retention_job::run_schedule(&args, listener, prometheus::Registry::new(), shutdown)
                .await
        }
    });
    let (status, _) = http_get(addr, "/health/ready").await;
    assert_eq!(status, 200);
    let (_, metrics) = http_get(addr, "/metrics").await;
    // The real success three hours ago; not the dry run, not the failure.
    assert!(
        metrics.contains(&format!(
            "eventline_retention_last_success_timestamp_seconds {finished}"
        )),
        "{metrics}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}
