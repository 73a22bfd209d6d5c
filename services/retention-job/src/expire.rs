//! Row expiry in bounded chunks: events of a retention class in the default
//! partition and in kept partitions, and rows of the hourly rollup.
//!
//! Invariants:
//!
//! - No statement deletes more than `chunk_rows` rows, and each chunk is its
//!   own transaction: locks and WAL bursts stay small, and ingest (which
//!   never touches expired rows) is not held up.
//! - Every DELETE re-checks the class's predicate and `ts < cutoff` on the
//!   rows it removes, whatever the chunk selection: a row inside the
//!   retention window is never deleted.
//! - Each chunk is found without rescanning what earlier chunks removed:
//!   one service's rows through the `(service, ts DESC, id DESC)` index; the
//!   "every other service" class by walking the table in ctid order from
//!   where the previous chunk ended (a TID range scan).
//!
//! `ctid` identifies a row only within one table, so these statements run
//! on a single partition (or `event_counts`), never on `events`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::partitions::quote_ident;
use crate::policy::Services;

#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    #[error("deleting expired rows from {table}: {source}")]
    Sql {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("stopped by shutdown")]
    Interrupted,
}

/// One chunked expiry: `table`'s rows of `services` older than `cutoff`.
#[derive(Debug, Clone)]
pub struct Expiry<'a> {
    /// A partition of `events` (or `event_counts` for [`delete_counts`]).
    pub table: &'a str,
    pub services: &'a Services,
    pub cutoff: DateTime<Utc>,
    pub chunk_rows: u32,
    /// Pause between chunks.
    pub pause: Duration,
}

impl Expiry<'_> {
    fn error(&self) -> impl FnOnce(sqlx::Error) -> ExpireError + '_ {
        move |source| ExpireError::Sql {
            table: self.table.to_owned(),
            source,
        }
    }
}

/// Waits `pause` between chunks, or stops on shutdown.
async fn between_chunks(pause: Duration, shutdown: &CancellationToken) -> Result<(), ExpireError> {
    if shutdown.is_cancelled() {
        return Err(ExpireError::Interrupted);
    }
    if pause.is_zero() {
        return Ok(());
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => Ok(()),
        () = shutdown.cancelled() => Err(ExpireError::Interrupted),
    }
}

/// Deletes the expired event rows of `e.services` from partition `e.table`
/// in chunks; returns how many went. `on_chunk` sees each chunk's count as it
/// commits (for metrics and progress).
pub async fn delete_events(
    conn: &mut PgConnection,
    e: &Expiry<'_>,
    shutdown: &CancellationToken,
    mut on_chunk: impl FnMut(u64),
) -> Result<u64, ExpireError> {
    let t = quote_ident(e.table);
    let chunk = i64::from(e.chunk_rows);
    let mut total = 0u64;
    match e.services {
        Services::Only(service) => {
            let sql = format!(
                "WITH deleted AS (
                    DELETE FROM {t} WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM {t}
                         WHERE service = $1 AND ts < $2
                         ORDER BY service, ts DESC, id DESC
                         LIMIT $3))
                      AND service = $1 AND ts < $2
                    RETURNING 1)
                 SELECT count(*) FROM deleted"
            );
            loop {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(service)
                    .bind(e.cutoff)
                    .bind(chunk)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(e.error())?;
                total += n as u64;
                on_chunk(n as u64);
                if n < chunk {
                    return Ok(total);
                }
                between_chunks(e.pause, shutdown).await?;
            }
        }
        Services::AllBut(excluded) => {
            let sql = format!(
                "WITH deleted AS (
                    DELETE FROM {t} WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM {t}
                         WHERE ctid > $1::text::tid AND service <> ALL ($2) AND ts < $3
                         LIMIT $4))
                      AND service <> ALL ($2) AND ts < $3
                    RETURNING ctid)
                 SELECT count(*), max(ctid)::text FROM deleted"
            );
            let mut after = "(0,0)".to_owned();
            loop {
                let (n, last): (i64, Option<String>) =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(&after)
                        .bind(excluded)
                        .bind(e.cutoff)
                        .bind(chunk)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(e.error())?;
                total += n as u64;
                on_chunk(n as u64);
                match last {
                    Some(last) if n == chunk => after = last,
                    _ => return Ok(total),
                }
                between_chunks(e.pause, shutdown).await?;
            }
        }
    }
}

/// How many rows [`delete_events`] would delete (for dry runs).
pub async fn count_events(conn: &mut PgConnection, e: &Expiry<'_>) -> Result<u64, ExpireError> {
    let t = quote_ident(e.table);
    let n: i64 = match e.services {
        Services::Only(service) => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {t} WHERE service = $1 AND ts < $2"
        )))
        .bind(service)
        .bind(e.cutoff),
        Services::AllBut(excluded) => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {t} WHERE service <> ALL ($1) AND ts < $2"
        )))
        .bind(excluded)
        .bind(e.cutoff),
    }
    .fetch_one(conn)
    .await
    .map_err(e.error())?;
    Ok(n as u64)
}

/// The rollup predicate of a class, `$1` being the service(s) and `$2` the cutoff.
fn counts_predicate(services: &Services) -> &'static str {
    match services {
        Services::Only(_) => "service = $1 AND hour < $2",
        Services::AllBut(_) => "service <> ALL ($1) AND hour < $2",
    }
}

fn bind_services<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    services: &Services,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    match services {
        Services::Only(service) => query.bind(service.clone()),
        Services::AllBut(excluded) => query.bind(excluded.clone()),
    }
}

/// Deletes the expired `event_counts` rows of a class in chunks (through
/// the primary key or the `hour` index); returns how many went.
pub async fn delete_counts(
    conn: &mut PgConnection,
    e: &Expiry<'_>,
    shutdown: &CancellationToken,
) -> Result<u64, ExpireError> {
    let predicate = counts_predicate(e.services);
    let sql = format!(
        "WITH deleted AS (
            DELETE FROM event_counts WHERE ctid = ANY (ARRAY(
                SELECT ctid FROM event_counts WHERE {predicate} ORDER BY hour LIMIT $3))
              AND {predicate}
            RETURNING 1)
         SELECT count(*) FROM deleted"
    );
    let chunk = i64::from(e.chunk_rows);
    let mut total = 0u64;
    loop {
        let query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()));
        let n = bind_services(query, e.services)
            .bind(e.cutoff)
            .bind(chunk)
            .fetch_one(&mut *conn)
            .await
            .map_err(e.error())?;
        total += n as u64;
        if n < chunk {
            return Ok(total);
        }
        between_chunks(e.pause, shutdown).await?;
    }
}

/// How many rows [`delete_counts`] would delete.
pub async fn count_counts(conn: &mut PgConnection, e: &Expiry<'_>) -> Result<u64, ExpireError> {
    let predicate = counts_predicate(e.services);
    let query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM event_counts WHERE {predicate}"
    )));
    let n = bind_services(query, e.services)
        .bind(e.cutoff)
        .fetch_one(conn)
        .await
        .map_err(e.error())?;
    Ok(n as u64)
}
