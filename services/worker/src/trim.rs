//! Trimming that never loses data (step 8): each stream is trimmed with
//! `XTRIM MINID` below the oldest entry that *any* group still has pending
//! or has not delivered yet, on a timer. The same timer refreshes the stream
//! gauges.
//!
//! Invariant: the bound is the minimum, over every group, of its oldest
//! pending id and the id right after its last delivered one. Both only grow
//! while we look (acks remove pending entries, deliveries move past the last
//! delivered id), so an entry at or above the bound when it was computed is
//! never deleted. With no group at all nothing is trimmed.
//!
//! The timer also forgets consumers of our group that hold nothing and have
//! been silent for [`FORGET_CONSUMER_AFTER`]: default consumer names carry a
//! pid, so every restart would otherwise leave one behind.

use std::time::Duration;

use eventline_shared::redis_keys::CONSUMER_GROUP;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::stream_reply::StreamId;
use crate::stream_stats;

/// The `MINID` below which `stream` may be trimmed, or `None` when it must
/// not be trimmed at all.
pub async fn safe_bound(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<Option<StreamId>, redis::RedisError> {
    let groups = stream_stats::groups(conn, stream).await?;
    if groups.is_empty() {
        return Ok(None);
    }
    let mut bound: Option<StreamId> = None;
    for group in groups {
        let Some(last) = StreamId::parse(&group.last_delivered_id) else {
            return Ok(None);
        };
        let mut group_bound = last.successor();
        if group.pending > 0 {
            match stream_stats::oldest_pending(conn, stream, &group.name).await? {
                Some(oldest) => group_bound = group_bound.min(oldest),
                None => return Ok(None),
            }
        }
        bound = Some(bound.map_or(group_bound, |b| b.min(group_bound)));
    }
    Ok(bound)
}

/// Trims `stream` to its safe bound; returns how many entries were removed.
pub async fn trim(state: &State, stream: &str) -> Result<u64, redis::RedisError> {
    let mut conn = state.redis_conn().await?;
    let Some(bound) = safe_bound(&mut conn, stream).await? else {
        return Ok(0);
    };
    let removed: u64 = redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg(bound.to_string())
        .query_async(&mut conn)
        .await?;
    state.metrics.trimmed.inc_by(removed);
    if removed > 0 {
        tracing::debug!(stream, removed, minid = %bound, "trimmed stream");
    }
    Ok(removed)
}

/// How long a consumer with no pending entry stays in the group unheard of.
pub const FORGET_CONSUMER_AFTER: Duration = Duration::from_secs(3600);

/// `XGROUP DELCONSUMER` for each consumer of our group with nothing pending
/// and idle longer than [`FORGET_CONSUMER_AFTER`]. Deleting a consumer with
/// no pending entry loses nothing.
pub async fn forget_idle_consumers(state: &State, stream: &str) -> Result<u64, redis::RedisError> {
    let mut conn = state.redis_conn().await?;
    let reply: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .query_async(&mut conn)
        .await?;
    let redis::Value::Array(consumers) = reply else {
        return Ok(0);
    };
    let mut forgotten = 0;
    for consumer in consumers {
        let info = stream_stats::flat_pairs(consumer);
        let field = |name: &str| {
            info.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(pending), Some(idle)) =
            (field("name"), field("pending"), field("idle"))
        else {
            continue;
        };
        let idle = Duration::from_millis(idle.parse().unwrap_or(0));
        if pending == "0" && idle > FORGET_CONSUMER_AFTER && name != state.consumer {
            // A worker reads at least every second, so one silent for an hour
            // is gone and cannot read between XINFO and DELCONSUMER (which
            // would drop what it read from the pending list).
            let dropped: i64 = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(CONSUMER_GROUP)
                .arg(name)
                .query_async(&mut conn)
                .await?;
            if dropped > 0 {
                tracing::error!(
                    stream,
                    consumer = name,
                    dropped,
                    "deleted a consumer that had pending entries"
                );
            }
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// Every `TRIM_INTERVAL_MS`: trim every shard and refresh the gauges, until shutdown.
pub async fn run(state: std::sync::Arc<State>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.trim_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let (mut length, mut pending, mut lag) = (0u64, 0u64, 0u64);
        for shard in 0..state.config.shards.count {
            let stream = state.keys.stream(shard);
            if let Err(e) = trim(&state, &stream).await {
                tracing::warn!(stream, error = %e, "cannot trim stream");
            }
            if let Err(e) = forget_idle_consumers(&state, &stream).await {
                tracing::warn!(stream, error = %e, "cannot list the group's consumers");
            }
            let stats = async {
                let mut conn = state.redis_conn().await?;
                stream_stats::shard_stats(&mut conn, &stream, CONSUMER_GROUP).await
            };
            match stats.await {
                Ok(s) => {
                    length += s.length;
                    pending += s.pending;
                    // When Redis cannot tell (its counters after a restart
                    // from the AOF, `stream_stats::corrected_lag`), the
                    // upper bound: every entry neither pending nor yet
                    // trimmed. Counting it as 0 would blind the lag alert
                    // exactly then.
                    lag += s.lag.unwrap_or(s.length.saturating_sub(s.pending));
                }
                Err(e) => tracing::warn!(stream, error = %e, "cannot read stream stats"),
            }
        }
        state.metrics.stream_length.set(length as i64);
        state.metrics.pending.set(pending as i64);
        state.metrics.lag.set(lag as i64);
    }
}
