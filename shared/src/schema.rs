//! The database schema: the embedded migrations (`migrations/` at the
//! repository root) and the partition maintenance every component shares.
//!
//! `events` is partitioned by UTC day on `ts`, with a default partition that
//! catches anything no daily partition covers, so an insert never fails for
//! want of a partition. Creating a day's partition moves the rows the default
//! partition holds for that day into it (SQL function
//! `eventline_ensure_partitions`).

use chrono::NaiveDate;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// All migrations, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
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
