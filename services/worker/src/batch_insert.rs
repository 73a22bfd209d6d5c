//! One batch into PostgreSQL in one transaction: the events, and the hourly
//! rollup `event_counts` raised by exactly the rows that were inserted, so a
//! duplicate never counts twice.
//!
//! Two paths (docs/adr/0010-worker-batch-insert.md):
//!
//! - the **guarded** path, for any batch that may hold rows already stored:
//!   `ON CONFLICT DO NOTHING` on the events' unique key (the final guard
//!   against duplicates), the rows bound as arrays (`unnest`), the rollup fed
//!   by the insert's `RETURNING` (the staging-table `COPY` it was measured
//!   against lives in the drain bench, `benches/drain.rs`);
//! - the **fresh** path, for a batch whose every entry was freshly claimed in
//!   Redis (none is a redelivery of our own claim): `COPY … FORMAT binary`
//!   straight into `events`, no conflict guard, and the rollup computed here
//!   from the rows. The unique key `(ts, dedup_key, service)` is the only
//!   constraint `ON CONFLICT DO NOTHING` would have skipped on, so when a row
//!   did exist after all (its Redis claim expired) the `COPY` fails with a
//!   unique violation (23505), nothing of it is kept, and the batch is redone
//!   on the guarded path.
//!
//! Errors come out classified: [`InsertError::Data`] when PostgreSQL refused
//! the rows themselves (the caller bisects the batch), [`InsertError::Transient`]
//! for everything else (the caller retries the same rows later). A transaction
//! that failed is rolled back whole: nothing of it is visible.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use eventline_shared::schema::rollup_hour;
use sqlx::{PgPool, Postgres, Transaction};

use crate::copy_binary::{self, EventRow};
use crate::failpoint;

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// PostgreSQL refused some row's content (U+0000 in a string, invalid
    /// JSON, a value out of range): retrying the same rows cannot succeed.
    #[error("PostgreSQL refused the rows: {0}")]
    Data(#[source] sqlx::Error),
    /// The database could not be reached or gave up (connection, timeout,
    /// deadlock, shutdown): the same rows may succeed later.
    #[error("database unavailable: {0}")]
    Transient(#[source] sqlx::Error),
}

impl From<sqlx::Error> for InsertError {
    fn from(e: sqlx::Error) -> Self {
        if is_data_error(&e) {
            InsertError::Data(e)
        } else {
            InsertError::Transient(e)
        }
    }
}

/// `unique_violation`: on the fresh path, a row that already exists.
const UNIQUE_VIOLATION: &str = "23505";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION))
}

/// SQLSTATE classes that blame the data: 22 (data exception), 23 (integrity
/// constraint), 54 (program limit exceeded, e.g. a row too large).
fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// The fresh path's `COPY`, straight into `events` (no conflict guard: a row
/// that exists fails it with 23505). Must list [`copy_binary::COLUMNS`].
const COPY_EVENTS: &str = "COPY events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at) FROM STDIN (FORMAT binary)";

/// The fresh path's rollup from bound arrays, one row per (service, hour)
/// (so no row is hit twice). Rows are written in (service, hour) order as
/// PostgreSQL sorts them, the same order as the guarded path's, so workers
/// on either path lock them in the same order and never deadlock.
const ROLLUP_UNNEST: &str = "
INSERT INTO event_counts (service, hour, count)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[])
 ORDER BY 1, 2
ON CONFLICT (service, hour) DO UPDATE SET count = event_counts.count + EXCLUDED.count";

/// The guarded path's statement for the rows `SELECT`ed by `$rows` (a string
/// literal listing the eight columns of `events` in their order): the rows
/// into `events` (`ON CONFLICT DO NOTHING`), the inserted ones counted into
/// the rollup, and their count returned. Rollup rows are written in
/// (service, hour) order so concurrent workers lock them in the same order
/// and never deadlock. (A macro so the drain bench's staging-table variant
/// is the same statement.)
#[macro_export]
macro_rules! guarded_insert_sql {
    ($rows:literal) => {
        concat!(
            "
WITH ins AS (
    INSERT INTO events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at)
    ",
            $rows,
            "
    ON CONFLICT DO NOTHING
    RETURNING service, ts
), rollup AS (
    INSERT INTO event_counts (service, hour, count)
    SELECT service, date_trunc('hour', ts, 'UTC'), count(*) FROM ins
     GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (service, hour) DO UPDATE SET count = event_counts.count + EXCLUDED.count
)
SELECT count(*) FROM ins"
        )
    };
}

/// The guarded path from bound arrays.
const INSERT_UNNEST: &str = guarded_insert_sql!(
    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                         $6::text[]::jsonb[], $7::timestamptz[], $8::timestamptz[])"
);

/// What one [`insert_fresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Rows that were new (the rest already existed).
    pub rows: u64,
    /// A row existed after all and the batch was redone guarded.
    pub fell_back: bool,
}

/// Inserts `rows`, which may already be stored, on the guarded path and
/// commits; returns how many were new (the rest already existed). Nothing is
/// committed when it fails.
pub async fn insert(pool: &PgPool, rows: &[EventRow<'_>]) -> Result<u64, InsertError> {
    let mut tx = pool.begin().await?;
    failpoint::hit("before_insert");
    let inserted = insert_unnest(&mut tx, rows).await?;
    failpoint::hit("before_commit");
    tx.commit().await?;
    Ok(u64::try_from(inserted).unwrap_or(0))
}

/// Inserts `rows`, whose dedup keys were all freshly claimed, on the fresh
/// path, and when one of them exists after all, on the guarded path
/// ([`insert`]). Nothing is committed when it fails.
pub async fn insert_fresh(pool: &PgPool, rows: &[EventRow<'_>]) -> Result<Inserted, InsertError> {
    match copy_fresh(pool, rows).await {
        Ok(()) => Ok(Inserted {
            rows: rows.len() as u64,
            fell_back: false,
        }),
        Err(e) if is_unique_violation(&e) => {
            tracing::debug!(rows = rows.len(), error = %e, "a freshly claimed row exists; redoing the batch guarded");
            let rows = insert(pool, rows).await?;
            Ok(Inserted {
                rows,
                fell_back: true,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The fresh path: `COPY` into `events` and the rollup from the rows, one
/// transaction. A unique violation comes back as is (the caller redoes the
/// batch guarded); the transaction is rolled back when it is dropped.
async fn copy_fresh(pool: &PgPool, rows: &[EventRow<'_>]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    failpoint::hit("before_insert");
    let mut copy = tx.copy_in_raw(COPY_EVENTS).await?;
    copy.send(copy_binary::encode(rows)).await?;
    copy.finish().await?;
    let rollup = Rollup::of(rows);
    sqlx::query(ROLLUP_UNNEST)
        .bind(rollup.services)
        .bind(rollup.hours)
        .bind(rollup.counts)
        .execute(&mut *tx)
        .await?;
    failpoint::hit("before_commit");
    tx.commit().await
}

/// The rollup rows of a batch: events per (service, UTC hour), one entry per
/// pair. (The byte order they come out in does not matter: [`ROLLUP_UNNEST`]
/// sorts them under the database's collation, as the guarded path does.)
struct Rollup<'a> {
    services: Vec<&'a str>,
    hours: Vec<DateTime<Utc>>,
    counts: Vec<i64>,
}

impl<'a> Rollup<'a> {
    fn of(rows: &'a [EventRow]) -> Self {
        let mut by_hour: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
        for row in rows {
            let e = &row.event;
            *by_hour.entry((e.service, rollup_hour(e.ts))).or_default() += 1;
        }
        let mut rollup = Rollup {
            services: Vec::with_capacity(by_hour.len()),
            hours: Vec::with_capacity(by_hour.len()),
            counts: Vec::with_capacity(by_hour.len()),
        };
        for ((service, hour), count) in by_hour {
            rollup.services.push(service);
            rollup.hours.push(hour);
            rollup.counts.push(count);
        }
        rollup
    }
}

async fn insert_unnest(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[EventRow<'_>],
) -> Result<i64, sqlx::Error> {
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut event_ids = Vec::with_capacity(n);
    let mut services = Vec::with_capacity(n);
    let mut messages = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut ingested = Vec::with_capacity(n);
    for row in rows {
        let e = &row.event;
        ids.push(e.id);
        keys.push(row.dedup_key);
        event_ids.push(e.event_id);
        services.push(e.service);
        messages.push(e.message);
        metadata.push(e.metadata);
        ts.push(e.ts);
        ingested.push(e.ingested_at);
    }
    sqlx::query_scalar(INSERT_UNNEST)
        .bind(ids)
        .bind(keys)
        .bind(event_ids)
        .bind(services)
        .bind(messages)
        .bind(metadata)
        .bind(ts)
        .bind(ingested)
        .fetch_one(&mut **tx)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_lists_the_encoded_columns() {
        let columns = format!("({})", crate::copy_binary::COLUMNS);
        assert!(super::COPY_EVENTS.contains(&columns));
    }

    #[test]
    fn rollup_counts_per_service_and_utc_hour_in_order() {
        use super::*;
        use eventline_shared::EnrichedEventRef;
        let at = |service: &'static str, rfc3339: &str| {
            let ts = DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
            EventRow::new(EnrichedEventRef {
                id: uuid::Uuid::now_v7(),
                service,
                message: "m",
                ts,
                ingested_at: ts,
                event_id: None,
                metadata: None,
                request_id: None,
            })
        };
        let rows = [
            at("b", "2026-11-23T10:59:59.999Z"),
            at("a", "2026-11-23T11:00:00Z"),
            at("b", "2026-11-23T10:00:00Z"),
            at("a", "2026-11-23T12:30:00+01:00"),
            at("b", "2026-11-23T11:00:00.001Z"),
        ];
        let rollup = Rollup::of(&rows);
        let hour = |h: &str| DateTime::parse_from_rfc3339(h).unwrap().to_utc();
        assert_eq!(rollup.services, ["a", "b", "b"]);
        assert_eq!(
            rollup.hours,
            [
                hour("2026-11-23T11:00:00Z"),
                hour("2026-11-23T10:00:00Z"),
                hour("2026-11-23T11:00:00Z")
            ]
        );
        assert_eq!(rollup.counts, [2, 2, 1]);
    }
}
