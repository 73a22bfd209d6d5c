//! `retention-job schedule`: answers /health/ready, runs passes on its cron
//! schedule, exposes the metrics, and stops when cancelled.

use std::time::Duration;

use eventline_shared::testkit::http::get_text;
use eventline_shared::testkit::serve::{Served, parse_args, serve};
use eventline_shared::testkit::wait_until;
use retention_job::{Cli, Command};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// `retention-job schedule --shutdown-grace 5 <args>` in this process,
/// until `shutdown` is cancelled.
async fn schedule(args: &[&str], shutdown: &CancellationToken) -> Served {
    let mut argv = vec!["retention-job", "schedule", "--shutdown-grace", "5"];
    argv.extend_from_slice(args);
    let Command::Schedule(args) = parse_args::<Cli, _, _>(argv).command else {
        unreachable!("schedule parses as Command::Schedule")
    };
    let run = |args, listener, stop| async move {
        retention_job::run_schedule(&args, listener, prometheus::Registry::new(), stop).await
    };
    serve(args, run, shutdown.clone()).await
}

#[tokio::test]
async fn schedule_serves_health_runs_passes_and_stops_on_cancel() {
    let db = database().await;
    seed_forty_days(&db.pool).await;
    let shutdown = CancellationToken::new();
    let Served { addr, task } = schedule(
        &[
            "--database-url",
            &db.url,
            "--cron",
            "* * * * * *",
            "--now",
            NOW,
            "--delete-pause",
            "0",
        ],
        &shutdown,
    )
    .await;

    let (status, body) = get_text(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");

    // Within a few ticks, a pass has succeeded and the metrics say so.
    let succeeded = wait_until(Duration::from_secs(10), || async {
        runs(&db.pool).await.iter().any(|r| r.0 == "success")
    })
    .await;
    assert!(
        succeeded,
        "a scheduled pass succeeded: {:?}",
        runs(&db.pool).await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, metrics) = get_text(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("eventline_retention_partitions_dropped_total 9"),
        "{metrics}"
    );
    assert!(metrics.contains("eventline_retention_last_success_timestamp_seconds"));
    let (_, detailed) = get_text(addr, "/health/detailed").await;
    assert!(detailed.contains("last_pass"), "{detailed}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within the grace period")
        .unwrap();
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
    let shutdown = CancellationToken::new();
    let Served { addr, task } = schedule(
        &[
            "--database-url",
            &db.url,
            // Yearly: no pass runs during the test.
            "--cron",
            "0 0 2 1 1 *",
        ],
        &shutdown,
    )
    .await;
    let (status, _) = get_text(addr, "/health/ready").await;
    assert_eq!(status, 200);
    let (_, metrics) = get_text(addr, "/metrics").await;
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
        .unwrap();
}
