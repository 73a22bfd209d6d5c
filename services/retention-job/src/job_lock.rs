//! The one-at-a-time guarantee: a pass does all its work on one dedicated
//! connection that holds a session-level PostgreSQL advisory lock.
//!
//! Invariant: no two passes (from any number of processes or hosts) ever
//! change the schema or delete rows at the same time. The lock lives as long
//! as the connection: released explicitly at the end of a pass, and by the
//! server if the process dies, so a crashed run never blocks the next one.
//!
//! The connection is not taken from the pool: its session settings
//! (`synchronize_seqscans`) and the lock itself must never leak into a
//! pooled connection someone else reuses.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// The advisory lock key of retention passes: "evlnret1" in ASCII, a
/// constant no other eventline component uses.
pub const RETENTION_LOCK_KEY: i64 = 0x6576_6c6e_7265_7431;

/// A maintenance connection holding the retention lock.
pub struct JobLock {
    conn: PgConnection,
}

impl JobLock {
    /// Opens a connection and tries the lock once. `None` when another pass
    /// holds it (the connection is closed again).
    pub async fn try_acquire(options: &PgConnectOptions) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = options.connect().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            conn.close().await?;
            return Ok(None);
        }
        // Chunked deletes walk a table by ctid and rely on scans starting at
        // its first block; a synchronised scan may start anywhere.
        sqlx::query("SET synchronize_seqscans = off")
            .execute(&mut conn)
            .await?;
        Ok(Some(JobLock { conn }))
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Releases the lock and closes the connection. Errors are only logged:
    /// closing the connection releases the lock anyway.
    pub async fn release(mut self) {
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(RETENTION_LOCK_KEY)
            .fetch_one(&mut self.conn)
            .await;
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, "cannot release the retention lock; closing the connection releases it");
        }
        if let Err(e) = self.conn.close().await {
            tracing::debug!(error = %e, "closing the maintenance connection failed");
        }
    }
}
