//! The database schema: the embedded migrations (`migrations/` at the
//! repository root) and the partition maintenance every component shares.
//!
//! `events` is partitioned by UTC day on `ts`, with a default partition that
//! catches anything no daily partition covers, so an insert never fails for
//! want of a partition. Creating a day's partition moves the rows the default
//! partition holds for that day into it (SQL function
//! `eventline_ensure_partitions`).
//!
//! `event_counts` is the hourly rollup: events per service and UTC hour
//! ([`rollup_hour`]), maintained by the worker in the insert transaction,
//! read by the query-api's stats. `maintenance_runs` records the retention
//! job's passes ([`last_retention_success`]).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// All migrations, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The `hour` of `ts` in `event_counts`: the start of its UTC clock hour,
/// what `date_trunc('hour', ts, 'UTC')` gives (UTC hours are whole
/// multiples of an hour since the Unix epoch: no leap seconds in either
/// clock). The worker counts events by it; the query-api widens windows to it.
pub fn rollup_hour(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.timestamp().div_euclid(3600) * 3600, 0).unwrap_or(ts)
}

/// When the retention job last finished a real (not dry) pass that
/// succeeded, if it ever did: what its metric restarts from and what the
/// query-api reports.
pub async fn last_retention_success(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(finished_at) FROM maintenance_runs WHERE outcome = 'success' AND NOT dry_run",
    )
    .fetch_one(pool)
    .await
}

/// The partition holding `day`'s events, e.g. `events_p20261123`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("events_p{}", day.format("%Y%m%d"))
}

/// Creates the daily partitions `first..=last` that do not exist yet (moving
/// any rows of those days out of the default partition) and returns the names
/// of those it created. Safe to call concurrently: the function serialises
/// itself with an advisory lock.
pub async fn ensure_partitions(
    pool: &PgPool,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT eventline_ensure_partitions($1, $2)")
        .bind(first)
        .bind(last)
        .fetch_all(pool)
        .await
}

/// The daily partitions that exist, oldest first.
pub async fn list_partitions(pool: &PgPool) -> Result<Vec<(String, NaiveDate)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.relname::text, to_date(substr(c.relname, 9), 'YYYYMMDD')
           FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'events'::regclass
            AND c.relname ~ '^events_p[0-9]{8}$'
          ORDER BY 2",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_rollup_hour_is_the_utc_clock_hour() {
        assert_eq!(
            rollup_hour(at("2026-11-23T03:59:59.999+05:30")),
            at("2026-11-22T22:00:00Z")
        );
        assert_eq!(
            rollup_hour(at("2026-11-23T03:00:00Z")),
            at("2026-11-23T03:00:00Z")
        );
        assert_eq!(
            rollup_hour(at("1969-12-31T23:30:00Z")),
            at("1969-12-31T23:00:00Z")
        );
    }
}
