//! One batch into PostgreSQL in one transaction: the events with
//! `ON CONFLICT DO NOTHING` on their unique key (the final guard against
//! duplicates), and the hourly rollup `event_counts` raised by exactly the
//! rows that were inserted (the `RETURNING` of the insert feeds the rollup, so
//! a duplicate never counts twice).
//!
//! Errors come out classified: [`InsertError::Data`] when PostgreSQL refused
//! the rows themselves (the caller bisects the batch), [`InsertError::Transient`]
//! for everything else (the caller retries the same rows later). A transaction
//! that failed is rolled back whole: nothing of it is visible.

use sqlx::{PgPool, Postgres, Transaction};

use crate::config::InsertMethod;
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

/// The staging table of the `COPY` method: one per session (temporary), emptied
/// at every commit. Notices ("already exists, skipping") are silenced.
const STAGING: &str = "SET LOCAL client_min_messages = warning; \
    CREATE TEMP TABLE IF NOT EXISTS eventline_staging \
    (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

/// Must list [`copy_binary::COLUMNS`] in its order (checked by a test).
const COPY: &str = "COPY eventline_staging (id, dedup_key, event_id, service, message, metadata, ts, ingested_at) FROM STDIN (FORMAT binary)";

/// Rows from the staging table into `events`, the inserted ones counted into
/// the rollup. Rollup rows are written in (service, hour) order so concurrent
/// workers lock them in the same order and never deadlock.
const INSERT_FROM_STAGING: &str = "
WITH ins AS (
    INSERT INTO events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at)
    SELECT id, dedup_key, event_id, service, message, metadata, ts, ingested_at
      FROM eventline_staging
    ON CONFLICT DO NOTHING
    RETURNING service, ts
), rollup AS (
    INSERT INTO event_counts (service, hour, count)
    SELECT service, date_trunc('hour', ts, 'UTC'), count(*) FROM ins
     GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (service, hour) DO UPDATE SET count = event_counts.count + EXCLUDED.count
)
SELECT count(*) FROM ins";

/// The same as [`INSERT_FROM_STAGING`] from bound arrays.
const INSERT_UNNEST: &str = "
WITH ins AS (
    INSERT INTO events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                         $6::text[]::jsonb[], $7::timestamptz[], $8::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING service, ts
), rollup AS (
    INSERT INTO event_counts (service, hour, count)
    SELECT service, date_trunc('hour', ts, 'UTC'), count(*) FROM ins
     GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (service, hour) DO UPDATE SET count = event_counts.count + EXCLUDED.count
)
SELECT count(*) FROM ins";

/// Inserts `rows` and commits; returns how many were new (the rest already
/// existed). Nothing is committed when it fails.
pub async fn insert(
    pool: &PgPool,
    method: InsertMethod,
    rows: &[EventRow],
) -> Result<u64, InsertError> {
    let mut tx = pool.begin().await?;
    failpoint::hit("before_insert");
    let inserted = match method {
        InsertMethod::Copy => insert_copy(&mut tx, rows).await?,
        InsertMethod::Unnest => insert_unnest(&mut tx, rows).await?,
    };
    failpoint::hit("before_commit");
    tx.commit().await?;
    Ok(u64::try_from(inserted).unwrap_or(0))
}

async fn insert_copy(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[EventRow],
) -> Result<i64, sqlx::Error> {
    sqlx::raw_sql(STAGING).execute(&mut **tx).await?;
    let mut copy = tx.copy_in_raw(COPY).await?;
    copy.send(copy_binary::encode(rows)).await?;
    copy.finish().await?;
    sqlx::query_scalar(INSERT_FROM_STAGING)
        .fetch_one(&mut **tx)
        .await
}

async fn insert_unnest(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[EventRow],
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
        event_ids.push(e.event_id.as_deref());
        services.push(e.service.as_str());
        messages.push(e.message.as_str());
        metadata.push(e.metadata.as_deref());
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
        assert!(super::COPY.contains(&format!("({})", crate::copy_binary::COLUMNS)));
    }
}
