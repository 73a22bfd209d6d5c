//! retention-job: the partition maintenance of `events`, as a one-shot
//! (`run`, for a Kubernetes CronJob) or on a cron schedule (`schedule`).
//! One module per concern:
//!
//! - [`config`]: flags and environment variables, checked before anything connects;
//! - [`policy`]: retention classes, cutoffs and which partitions go (no I/O);
//! - [`job_lock`]: the advisory lock that keeps passes from overlapping;
//! - [`partitions`]: partition DDL with short lock timeouts and retries;
//! - [`expire`]: chunked row deletes that never touch a row inside the window;
//! - [`pass`]: one pass, step by step;
//! - [`report`], [`run_record`]: what a pass did, printed, logged and stored;
//! - [`metrics`]: the `eventline_retention_*` metrics;
//! - [`schedule`]: the long-running mode with its health and metrics routes.

use std::io::Write;

use clap::{Args, Parser, Subcommand};
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::server::ListenArgs;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod expire;
pub mod job_lock;
pub mod metrics;
pub mod partitions;
pub mod pass;
pub mod policy;
pub mod report;
pub mod run_record;
pub mod schedule;

use config::{CronSchedule, JobArgs, parse_cron};
use pass::{Job, PassError};
use report::RunReport;

/// The name in `pg_stat_activity`, the metrics registry, logs and health.
pub const COMPONENT: &str = "retention-job";

#[derive(Debug, Parser)]
#[command(
    name = "retention-job",
    version,
    about = "Create eventline's daily partitions ahead, drop and delete expired events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One pass, then exit: 0 when done or skipped (another pass holds the lock).
    Run(JobArgs),
    /// Passes on a cron schedule, serving /health/* and /metrics meanwhile.
    Schedule(ScheduleArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// When passes run: cron fields in UTC, `minute hour day month weekday`,
    /// or with a leading seconds field.
    #[arg(long = "cron", env = "CRON_SCHEDULE", value_name = "CRON_SCHEDULE", default_value = "0 2 * * *", value_parser = parse_cron)]
    pub cron: CronSchedule,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Postgres(#[from] PgSetupError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Connects to PostgreSQL (eagerly: a wrong URL fails start-up) and
/// registers the metrics.
pub async fn connect(args: &JobArgs, registry: &Registry) -> Result<Job, StartError> {
    let pool = pg_pool::connect(&args.db, COMPONENT).await?;
    let options = pg_pool::connect_options(&args.db, COMPONENT)?;
    let metrics = metrics::Metrics::register(registry)?;
    Ok(Job::new(pool, options, args.retention.clone(), metrics))
}

/// `retention-job run`: one pass at the configured clock; what it did (or
/// would do) is written to `out`.
pub async fn run_once(
    args: &JobArgs,
    registry: &Registry,
    shutdown: &CancellationToken,
    out: &mut impl Write,
) -> Result<RunReport, JobError> {
    let job = connect(args, registry).await?;
    let report = job.run_pass(job.now(), shutdown).await?;
    report.write_to(out)?;
    Ok(report)
}

/// `retention-job schedule`, serving on `listener` until `shutdown` fires.
pub async fn run_schedule(
    args: &ScheduleArgs,
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    let job = connect(&args.job, &registry).await?;
    schedule::run(
        job,
        &args.cron,
        listener,
        args.listen.shutdown_grace,
        registry,
        shutdown,
    )
    .await?;
    Ok(())
}
