//! Partition DDL: creating daily partitions (ahead of time, and for past days
//! whose rows landed in the default partition) and detaching and dropping
//! expired ones.
//!
//! Invariant: ingest never waits long on us. Every statement that needs a
//! lock ingest also needs runs with a short `lock_timeout` and is retried
//! with backoff; while it waits in the lock queue it blocks the inserts
//! queued behind it, so it gives up quickly rather than stall them. Why
//! DETACH is not CONCURRENTLY: docs/adr/0021-detach-with-lock-timeout.md.
//!
//! Table names reach SQL only through [`quote_ident`], and only names that
//! eventline generated (`events_pYYYYMMDD` from the catalogue, filtered by
//! that pattern).

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

/// How partition DDL waits for its locks.
#[derive(Debug, Clone)]
pub struct DdlSettings {
    /// `lock_timeout` of each attempt.
    pub lock_timeout: Duration,
    /// Further attempts after a lock timeout.
    pub retries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "{what}: lock not obtained within {timeout_ms} ms in {attempts} attempts (ingest keeps priority; the next run tries again)"
    )]
    LockTimeout {
        what: String,
        attempts: u32,
        timeout_ms: u128,
    },
    #[error("stopped by shutdown")]
    Interrupted,
}

/// `"name"`, quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "55P03")
}

/// The retry policy around one attempt's result: `Some(value)` on success;
/// `None` after sleeping the backoff (200 ms, doubling, at most 5 s) when the
/// attempt timed out on its lock and retries remain; an error otherwise.
/// (A loop around plain calls rather than a closure-taking helper: the
/// futures of async closures over `&mut PgConnection` are not `Send`.)
async fn retry_on_lock_timeout<T>(
    result: Result<T, sqlx::Error>,
    failures: &mut u32,
    ddl: &DdlSettings,
    shutdown: &CancellationToken,
    what: &str,
) -> Result<Option<T>, DdlError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if is_lock_timeout(&e) => {
            *failures += 1;
            if *failures > ddl.retries {
                return Err(DdlError::LockTimeout {
                    what: what.to_owned(),
                    attempts: *failures,
                    timeout_ms: ddl.lock_timeout.as_millis(),
                });
            }
            let backoff =
                Duration::from_millis(100 << (*failures).min(6)).min(Duration::from_secs(5));
            tracing::info!(
                what,
                attempt = *failures,
                backoff_ms = backoff.as_millis() as u64,
                "lock not obtained in time; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => Ok(None),
                () = shutdown.cancelled() => Err(DdlError::Interrupted),
            }
        }
        Err(source) => Err(DdlError::Sql {
            what: what.to_owned(),
            source,
        }),
    }
}

fn sql_error(what: &str) -> impl FnOnce(sqlx::Error) -> DdlError + '_ {
    move |source| DdlError::Sql {
        what: what.to_owned(),
        source,
    }
}

/// Runs `sql` in a transaction of its own with `lock_timeout` set.
async fn execute_with_lock_timeout(
    conn: &mut PgConnection,
    ddl: &DdlSettings,
    sql: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", ddl.lock_timeout.as_millis()))
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Creates the daily partitions `first..=last` that do not exist yet, moving
/// the default partition's rows of those days into them (the shared SQL
/// function `eventline_ensure_partitions`, called on our connection so the
/// lock timeout applies). Returns the names created.
pub async fn create(
    conn: &mut PgConnection,
    first: NaiveDate,
    last: NaiveDate,
    ddl: &DdlSettings,
    shutdown: &CancellationToken,
) -> Result<Vec<String>, DdlError> {
    let what = format!("creating partitions {first} .. {last}");
    let mut failures = 0;
    loop {
        let result = create_once(conn, first, last, ddl).await;
        if let Some(created) =
            retry_on_lock_timeout(result, &mut failures, ddl, shutdown, &what).await?
        {
            return Ok(created);
        }
    }
}

async fn create_once(
    conn: &mut PgConnection,
    first: NaiveDate,
    last: NaiveDate,
    ddl: &DdlSettings,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", ddl.lock_timeout.as_millis()))
        .execute(&mut *tx)
        .await?;
    let created: Vec<String> = sqlx::query_scalar("SELECT eventline_ensure_partitions($1, $2)")
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(created)
}

/// The default partition of `events` (`events_default` as the migrations
/// create it), if there is one.
pub async fn default_partition(conn: &mut PgConnection) -> Result<Option<String>, DdlError> {
    sqlx::query_scalar(
        "SELECT c.relname::text
           FROM pg_partitioned_table p
           JOIN pg_class c ON c.oid = p.partdefid
          WHERE p.partrelid = 'events'::regclass",
    )
    .fetch_optional(conn)
    .await
    .map_err(sql_error("looking for the default partition"))
}

/// The days from `from` to `to` (inclusive) that have rows in the default
/// partition `default`, with their row counts, oldest first. Such a day has
/// no partition (or its rows would be there).
pub async fn days_in_default(
    conn: &mut PgConnection,
    default: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, i64)>, DdlError> {
    let sql = format!(
        "SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*)
           FROM {}
          WHERE ts >= ($1::date)::timestamp AT TIME ZONE 'UTC'
            AND ts < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
          GROUP BY 1
          ORDER BY 1",
        quote_ident(default)
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await
        .map_err(sql_error("looking for days in the default partition"))
}

/// Daily partition tables that are no longer attached: what a pass that died
/// between DETACH and DROP left behind. Oldest first.
pub async fn detached_leftovers(
    conn: &mut PgConnection,
) -> Result<Vec<(String, NaiveDate)>, DdlError> {
    sqlx::query_as(
        "SELECT c.relname::text, to_date(substr(c.relname, 9), 'YYYYMMDD')
           FROM pg_class c
          WHERE c.relkind = 'r'
            AND NOT c.relispartition
            AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'events'::regclass)
            AND c.relname ~ '^events_p[0-9]{8}$'
          ORDER BY 2",
    )
    .fetch_all(conn)
    .await
    .map_err(sql_error("looking for detached partitions"))
}

/// Detaches partition `name` from `events` (if still attached) and drops it.
///
/// With a default partition, PostgreSQL refuses `DETACH … CONCURRENTLY`, so
/// the plain DETACH runs with a short lock timeout and retries (it is a
/// catalogue change: milliseconds once the lock is held). Without one,
/// CONCURRENTLY is used, and a detach a previous pass left pending is
/// finalised.
pub async fn detach_and_drop(
    conn: &mut PgConnection,
    name: &str,
    ddl: &DdlSettings,
    shutdown: &CancellationToken,
) -> Result<(), DdlError> {
    let ident = quote_ident(name);
    let what = format!("detaching {name}");
    let state: Option<(bool, bool)> = sqlx::query_as(
        "SELECT i.inhdetachpending,
                (SELECT partdefid <> 0 FROM pg_partitioned_table
                  WHERE partrelid = 'events'::regclass)
           FROM pg_inherits i
          WHERE i.inhparent = 'events'::regclass
            AND i.inhrelid = to_regclass($1)",
    )
    .bind(&ident)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error(&what))?;
    match state {
        None => {} // Already detached by a pass that died before DROP.
        Some((_, true)) => {
            let sql = format!("ALTER TABLE events DETACH PARTITION {ident}");
            execute_with_retries(conn, ddl, shutdown, &what, &sql).await?;
        }
        Some((pending, false)) => {
            let sql = if pending {
                format!("ALTER TABLE events DETACH PARTITION {ident} FINALIZE")
            } else {
                format!("ALTER TABLE events DETACH PARTITION {ident} CONCURRENTLY")
            };
            // Cannot run in a transaction block; waits without blocking
            // inserts, bounded by the session's statement_timeout.
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .map_err(sql_error(&what))?;
        }
    }
    let what = format!("dropping {name}");
    let sql = format!("DROP TABLE IF EXISTS {ident}");
    execute_with_retries(conn, ddl, shutdown, &what, &sql).await
}

/// [`execute_with_lock_timeout`], retried on lock timeouts.
async fn execute_with_retries(
    conn: &mut PgConnection,
    ddl: &DdlSettings,
    shutdown: &CancellationToken,
    what: &str,
    sql: &str,
) -> Result<(), DdlError> {
    let mut failures = 0;
    loop {
        let result = execute_with_lock_timeout(conn, ddl, sql).await;
        if let Some(()) = retry_on_lock_timeout(result, &mut failures, ddl, shutdown, what).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_identifiers() {
        assert_eq!(
            super::quote_ident("events_p20261123"),
            "\"events_p20261123\""
        );
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
