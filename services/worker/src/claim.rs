//! Taking over entries whose consumer died (step 7): `XAUTOCLAIM` of entries
//! idle longer than `CLAIM_IDLE`, then `XPENDING` for their delivery counts,
//! which `MAX_DELIVERIES` is checked against.
//!
//! A claimed entry keeps its id, so the dedup claim it made before its
//! consumer died is recognised as our own (`Claim::OwnRedelivery`).

use eventline_shared::redis_keys::CONSUMER_GROUP;
use redis::Value;

use crate::State;
use crate::stream_reply::{self, Entry, ReplyError};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

/// Claims about `BATCH_SIZE` events' worth of idle entries of `stream`, starting at `cursor`;
/// returns them with their delivery counts, and the cursor to continue from
/// (`0-0` once the whole pending list was scanned).
pub async fn claim_idle(
    state: &State,
    stream: &str,
    cursor: &str,
) -> Result<(Vec<Entry>, String), ClaimError> {
    let mut conn = state.redis_conn().await?;
    let reply: Value = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .arg(&state.consumer)
        .arg(state.config.claim_idle.as_millis() as u64)
        .arg(cursor)
        .arg("COUNT")
        .arg(
            state
                .entry_size
                .entries_for(state.config.batch_size as usize),
        )
        .query_async(&mut conn)
        .await?;
    let (next, mut entries, deleted) = stream_reply::autoclaim(reply)?;
    if !deleted.is_empty() {
        tracing::warn!(
            stream,
            count = deleted.len(),
            "pending entries were deleted from the stream"
        );
    }
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok((entries, next));
    };
    state.metrics.claimed.inc_by(entries.len() as u64);
    tracing::info!(stream, count = entries.len(), "claimed idle entries");
    let reply: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len().max(state.config.batch_size as usize) * 2)
        .arg(&state.consumer)
        .query_async(&mut conn)
        .await?;
    let counts: std::collections::HashMap<String, u64> = stream_reply::pending_deliveries(reply)?
        .into_iter()
        .collect();
    for entry in &mut entries {
        // A claimed entry was delivered at least twice (once to the dead
        // consumer, once to us) even if its row vanished meanwhile.
        entry.deliveries = counts.get(&entry.id).copied().unwrap_or(2).max(2);
    }
    Ok((entries, next))
}
