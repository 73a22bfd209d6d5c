//! `retention-job schedule`: passes on a cron schedule (tokio-cron-scheduler)
//! for deployments without a Kubernetes CronJob, with `/health/*` and
//! `/metrics` served meanwhile.
//!
//! Invariants: every pass runs in a tracked task; on shutdown the scheduler
//! stops first (no new pass starts), a pass in flight stops at its next
//! chunk or retry and records itself as failed, and the process waits for it
//! at most the grace period. Two passes never overlap, even when one runs
//! past the next tick: the second finds the advisory lock taken and is
//! recorded as `skipped`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_shared::health::{DetailsFn, Health};
use eventline_shared::{server, shutdown};
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_cron_scheduler::{JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CronSchedule;
use crate::pass::Job;
use crate::report::Outcome;

/// The default `--listen` address of `schedule`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9092);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron scheduler: {0}")]
    Scheduler(#[from] JobSchedulerError),
    #[error("HTTP server: {0}")]
    Serve(#[from] std::io::Error),
}

/// The last pass's summary, shown by `/health/details`.
type LastPass = Arc<Mutex<Value>>;

/// Runs passes on `cron` and serves the health routes on `listener` until
/// `shutdown` fires.
pub async fn run(
    job: Job,
    cron: &CronSchedule,
    listener: TcpListener,
    grace: Duration,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), ScheduleError> {
    if let Err(error) = job.restore_last_success().await {
        tracing::warn!(%error, "cannot read the last successful pass from maintenance_runs");
    }
    let job = Arc::new(job);
    let tracker = TaskTracker::new();
    let last_pass: LastPass = Arc::new(Mutex::new(Value::Null));

    let cron_job = cron_job(cron, &job, &tracker, &last_pass, &shutdown)?;
    let mut scheduler = JobScheduler::new().await?;
    let job_id = scheduler.add(cron_job).await?;
    scheduler.start().await?;
    let next = scheduler
        .next_tick_for_job(job_id)
        .await
        .ok()
        .flatten()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    tracing::info!(
        cron = cron.as_str(),
        listen = %listener.local_addr()?,
        next_pass = %next,
        "retention passes scheduled"
    );

    let details: DetailsFn = {
        let cron = cron.as_str().to_owned();
        Arc::new(move || {
            let last = last_pass.lock().map(|v| v.clone()).unwrap_or(Value::Null);
            let cron = cron.clone();
            Box::pin(async move { json!({ "cron": cron, "last_pass": last }) })
        })
    };
    let router = Health::new(crate::COMPONENT, registry, shutdown.clone())
        .with_postgres(job.pool().clone())
        .with_details(details)
        .router();

    let serving = server::serve(
        listener,
        router,
        server::ConnectionLimits::default(),
        shutdown.clone(),
        grace,
    );
    let stopping = async {
        shutdown.cancelled().await;
        let stopped = scheduler.shutdown().await;
        shutdown::drain(&tracker, grace).await;
        stopped
    };
    let ((), stopped) = tokio::join!(serving, stopping);
    tracing::info!(component = crate::COMPONENT, "stopped");
    stopped?;
    Ok(())
}

/// The scheduled job: each tick runs a pass in a task of `tracker` (none
/// once `shutdown` has fired) and keeps its summary in `last_pass`.
fn cron_job(
    cron: &CronSchedule,
    job: &Arc<Job>,
    tracker: &TaskTracker,
    last_pass: &LastPass,
    shutdown: &CancellationToken,
) -> Result<tokio_cron_scheduler::Job, JobSchedulerError> {
    let (job, tracker, last_pass, shutdown) = (
        job.clone(),
        tracker.clone(),
        last_pass.clone(),
        shutdown.clone(),
    );
    tokio_cron_scheduler::Job::new_async(cron.as_str(), move |_, _| {
        let (job, last_pass, shutdown) = (job.clone(), last_pass.clone(), shutdown.clone());
        if !shutdown.is_cancelled() {
            tracker.spawn(async move {
                let summary = pass_summary(&job, &shutdown).await;
                if let Ok(mut last) = last_pass.lock() {
                    *last = summary;
                }
            });
        }
        Box::pin(async {})
    })
}

/// Runs one pass now; its summary.
async fn pass_summary(job: &Job, shutdown: &CancellationToken) -> Value {
    match job.run_pass(job.now(), shutdown).await {
        Ok(report) => json!({
            "outcome": if report.outcome == Outcome::Skipped { "skipped" } else { "success" },
            "run_id": report.run_id,
            "dry_run": report.dry_run,
            "partitions_created": report.partitions_created.len(),
            "partitions_dropped": report.partitions_dropped.len(),
            "rows_deleted": report.rows_deleted,
            "finished_at": chrono::Utc::now(),
        }),
        // Already logged and recorded by the pass.
        Err(e) => json!({
            "outcome": "failed",
            "error": e.to_string(),
            "finished_at": chrono::Utc::now(),
        }),
    }
}
