//! `maintenance_runs`: one row per pass, what query-api reads to expose the
//! last success (so Prometheus can alert on a job that stopped running).
//!
//! Invariant: a pass's row exists from its start (outcome `running`), so a
//! pass that dies leaves a trace with its start time; it is finished exactly
//! once with `success` or `failed`. A pass that found the lock taken writes
//! one finished `skipped` row. Dry runs are recorded with `dry_run = true`
//! and what they would have done; readers of "last success" must filter
//! them out.

use serde_json::Value;
use sqlx::PgPool;

use crate::report::{Outcome, RunReport};

/// Inserts the `running` row of a pass; returns its id.
pub async fn start(pool: &PgPool, report: &RunReport) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO maintenance_runs (dry_run, details) VALUES ($1, $2) RETURNING id",
    )
    .bind(report.dry_run)
    .bind(report.details())
    .fetch_one(pool)
    .await
}

/// Records how a pass ended.
pub async fn finish(
    pool: &PgPool,
    id: i64,
    report: &RunReport,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    let outcome = match (report.outcome, error) {
        (_, Some(_)) => "failed",
        (Outcome::Skipped, None) => "skipped",
        (Outcome::Success, None) => "success",
    };
    sqlx::query(
        "UPDATE maintenance_runs
            SET finished_at = now(), outcome = $2, partitions_created = $3,
                partitions_dropped = $4, rows_deleted = $5, error = $6, details = $7
          WHERE id = $1",
    )
    .bind(id)
    .bind(outcome)
    .bind(&report.partitions_created)
    .bind(&report.partitions_dropped)
    .bind(i64::try_from(report.rows_deleted).unwrap_or(i64::MAX))
    .bind(error)
    .bind(report.details())
    .execute(pool)
    .await
    .map(drop)
}

/// Records a pass that did nothing because another one holds the lock.
pub async fn skipped(pool: &PgPool, report: &RunReport, reason: &str) -> Result<i64, sqlx::Error> {
    let mut details = report.details();
    if let Value::Object(map) = &mut details {
        map.insert("reason".into(), Value::from(reason));
    }
    sqlx::query_scalar(
        "INSERT INTO maintenance_runs (finished_at, dry_run, outcome, details)
         VALUES (now(), $1, 'skipped', $2) RETURNING id",
    )
    .bind(report.dry_run)
    .bind(details)
    .fetch_one(pool)
    .await
}
