//! What the streams look like to the group: length, pending entries, lag and
//! the last delivered id (`XINFO STREAM`, `XINFO GROUPS`, `XPENDING`). Read by the
//! trimmer (to know what it may delete), the gauges and `/health/detailed`.

use redis::Value;
use serde::Serialize;

use crate::stream_reply::{StreamId, string};

/// One consumer group of a stream, from `XINFO GROUPS`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub pending: u64,
    pub last_delivered_id: String,
    /// Entries not yet delivered to the group (Redis ≥ 7; absent when Redis
    /// cannot tell).
    pub lag: Option<u64>,
}

/// `XINFO <what> stream`; None when the stream does not exist.
async fn xinfo(
    conn: &mut impl redis::aio::ConnectionLike,
    what: &str,
    stream: &str,
) -> Result<Option<Value>, redis::RedisError> {
    let reply: Result<Value, _> = redis::cmd("XINFO")
        .arg(what)
        .arg(stream)
        .query_async(conn)
        .await;
    match reply {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.to_string().contains("no such key") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `XINFO GROUPS stream`; empty when the stream does not exist.
pub async fn groups(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<Vec<GroupInfo>, redis::RedisError> {
    let Some(Value::Array(groups)) = xinfo(conn, "GROUPS", stream).await? else {
        return Ok(Vec::new());
    };
    Ok(groups.into_iter().filter_map(parse_group).collect())
}

/// An `XINFO` record's key-value pairs, from a flat RESP2 array or a RESP3
/// map; `None` for anything else.
fn record_pairs(value: Value) -> Option<Vec<(Value, Value)>> {
    match value {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Some(pairs)
        }
        Value::Map(pairs) => Some(pairs),
        _ => None,
    }
}

/// An `XINFO` record (flat RESP2 array or RESP3 map) as text pairs.
pub fn flat_pairs(value: Value) -> Vec<(String, String)> {
    record_pairs(value)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((string(k)?, string(v)?)))
        .collect()
}

fn parse_group(value: Value) -> Option<GroupInfo> {
    let pairs = record_pairs(value)?;
    let mut info = GroupInfo {
        name: String::new(),
        pending: 0,
        last_delivered_id: String::new(),
        lag: None,
    };
    for (k, v) in pairs {
        let Some(k) = string(k) else { continue };
        match k.as_str() {
            "name" => info.name = string(v)?,
            "pending" => info.pending = int(v).unwrap_or(0),
            "last-delivered-id" => info.last_delivered_id = string(v)?,
            "lag" => info.lag = int(v),
            _ => {}
        }
    }
    Some(info)
}

fn int(v: Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(n).ok(),
        other => string(other)?.parse().ok(),
    }
}

/// The smallest id pending for `group` (`XPENDING` summary), if any.
pub async fn oldest_pending(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    group: &str,
) -> Result<Option<StreamId>, redis::RedisError> {
    let reply: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Ok(None);
    };
    Ok(parts
        .into_iter()
        .nth(1)
        .and_then(string)
        .and_then(|s| StreamId::parse(&s)))
}

/// One shard as `/health/detailed` and the gauges show it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStats {
    pub stream: String,
    pub length: u64,
    pub pending: u64,
    pub lag: Option<u64>,
    pub last_delivered_id: Option<String>,
}

/// A stream's `XINFO STREAM` record, as text pairs.
struct StreamInfo(Vec<(String, String)>);

impl StreamInfo {
    /// `XINFO STREAM stream`; None when the stream does not exist.
    async fn read(
        conn: &mut impl redis::aio::ConnectionLike,
        stream: &str,
    ) -> Result<Option<Self>, redis::RedisError> {
        Ok(xinfo(conn, "STREAM", stream)
            .await?
            .map(|reply| StreamInfo(flat_pairs(reply))))
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }

    fn id(&self, field: &str) -> Option<StreamId> {
        self.text(field).and_then(StreamId::parse)
    }

    fn count(&self, field: &str) -> u64 {
        self.text(field).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// Entries ever added to `stream` (`XINFO STREAM`'s `entries-added`, Redis
/// >= 7), trimmed ones included; None when the stream does not exist.
pub async fn entries_added(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<Option<u64>, redis::RedisError> {
    Ok(StreamInfo::read(conn, stream)
        .await?
        .map(|info| info.count("entries-added")))
}

/// The id of the newest entry in `stream`, if it holds any
/// (`XREVRANGE … COUNT 1`).
pub async fn newest_id(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> Result<Option<String>, redis::RedisError> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let Value::Array(entries) = reply else {
        return Ok(None);
    };
    Ok(entries.into_iter().next().and_then(|entry| match entry {
        Value::Array(parts) => parts.into_iter().next().and_then(string),
        _ => None,
    }))
}

/// Whether entries added after `after` may have left the stream since
/// (trimmed or deleted), so that a reader resuming after `after` cannot
/// see them all. From `XINFO STREAM` (Redis >= 7): entries were deleted
/// after it (`max-deleted-entry-id`); or entries were ever removed
/// (`entries-added` exceeds `length`) and the oldest one left
/// (`recorded-first-entry-id`) leaves room for ids after `after`, or none
/// is left though ids were generated after it. Never no when something
/// after `after` was lost; yes when `after` itself was trimmed and the
/// next entry was not, since ids are times and cannot tell that nothing
/// came between. False when the stream does not exist.
pub async fn entries_lost_after(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    after: StreamId,
) -> Result<bool, redis::RedisError> {
    Ok(StreamInfo::read(conn, stream)
        .await?
        .is_some_and(|info| lost_after(&info, after)))
}

fn lost_after(info: &StreamInfo, after: StreamId) -> bool {
    let length = info.count("length");
    if info.id("max-deleted-entry-id").is_some_and(|d| d > after) {
        return true;
    }
    if info.count("entries-added") <= length {
        // Nothing was ever trimmed.
        return false;
    }
    if length == 0 {
        return info
            .id("last-generated-id")
            .is_some_and(|last| last > after);
    }
    info.id("recorded-first-entry-id")
        .is_some_and(|first| first > after.successor())
}

/// The group's lag, corrected: Redis derives `lag` from counters that a
/// restart from the append-only file can leave far off (seen: 198,300
/// "undelivered" on a stream whose every entry had been delivered and
/// acked), so a group whose last delivered id has reached the stream's last
/// id has lag 0 whatever the counter says, and one that has not has an
/// unknown lag when the counter says 0.
pub fn corrected_lag(group: &GroupInfo, last_generated: Option<StreamId>) -> Option<u64> {
    let delivered = StreamId::parse(&group.last_delivered_id);
    match (delivered, last_generated) {
        (_, None) => Some(0),
        (Some(d), Some(last)) if d >= last => Some(0),
        _ => group.lag.filter(|&n| n > 0),
    }
}

/// Length and our group's pending/lag for one stream.
pub async fn shard_stats(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    group: &str,
) -> Result<ShardStats, redis::RedisError> {
    // One XINFO STREAM gives the length and the last generated id.
    let info = StreamInfo::read(conn, stream).await?;
    let length = info.as_ref().map_or(0, |i| i.count("length"));
    let ours = groups(conn, stream)
        .await?
        .into_iter()
        .find(|g| g.name == group);
    let lag = ours.as_ref().and_then(|g| {
        let last_generated = info.as_ref().and_then(|i| i.id("last-generated-id"));
        corrected_lag(g, last_generated)
    });
    Ok(ShardStats {
        stream: stream.to_owned(),
        length,
        pending: ours.as_ref().map_or(0, |g| g.pending),
        lag,
        last_delivered_id: ours.map(|g| g.last_delivered_id),
    })
}

/// Every shard's [`ShardStats`] for `/health/detailed`, as JSON: a shard
/// that cannot be read shows its error instead.
pub async fn shards_json(
    redis: &crate::redis_pool::Redis,
    keys: &crate::redis_keys::RedisKeys,
    shards: u32,
    group: &str,
) -> serde_json::Value {
    let mut out = Vec::with_capacity(shards as usize);
    for shard in 0..shards {
        let stream = keys.stream(shard);
        let stats = async {
            let mut conn = redis.get().await.map_err(|e| e.to_string())?;
            shard_stats(&mut conn, &stream, group)
                .await
                .map_err(|e| e.to_string())
        };
        out.push(match stats.await {
            Ok(s) => serde_json::json!(s),
            Err(error) => serde_json::json!({ "stream": stream, "error": error }),
        });
    }
    serde_json::Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(last_delivered: &str, lag: Option<u64>) -> GroupInfo {
        GroupInfo {
            name: "writers".into(),
            pending: 0,
            last_delivered_id: last_delivered.into(),
            lag,
        }
    }

    fn info(pairs: &[(&str, &str)]) -> StreamInfo {
        StreamInfo(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn tells_when_entries_after_a_position_have_left_the_stream() {
        let at = |s: &str| StreamId::parse(s).unwrap();
        let trimmed = info(&[
            ("length", "1"),
            ("entries-added", "3"),
            ("last-generated-id", "30-0"),
            ("max-deleted-entry-id", "0-0"),
            ("recorded-first-entry-id", "30-0"),
        ]);
        // 10-0 seen; 20-0 (and maybe more) trimmed before 30-0.
        assert!(lost_after(&trimmed, at("10-0")));
        // Everything up to 29-x seen, or the next id is 30-0 itself.
        assert!(!lost_after(&trimmed, at("30-0")));
        assert!(!lost_after(&trimmed, at("29-18446744073709551615")));
        let emptied = info(&[
            ("length", "0"),
            ("entries-added", "3"),
            ("last-generated-id", "30-0"),
            ("max-deleted-entry-id", "0-0"),
            ("recorded-first-entry-id", "0-0"),
        ]);
        assert!(lost_after(&emptied, at("10-0")));
        assert!(!lost_after(&emptied, at("30-0")));
        let deleted = info(&[
            ("length", "2"),
            ("entries-added", "3"),
            ("last-generated-id", "30-0"),
            ("max-deleted-entry-id", "25-0"),
            ("recorded-first-entry-id", "10-0"),
        ]);
        assert!(lost_after(&deleted, at("20-0")));
        assert!(!lost_after(&deleted, at("25-0")));
        // Never trimmed: whatever came after 0-0 is all still there.
        let whole = info(&[
            ("length", "2"),
            ("entries-added", "2"),
            ("last-generated-id", "30-0"),
            ("max-deleted-entry-id", "0-0"),
            ("recorded-first-entry-id", "20-0"),
        ]);
        assert!(!lost_after(&whole, at("0-0")));
    }

    #[test]
    fn lag_is_zero_once_the_last_entry_was_delivered_whatever_the_counter() {
        let last = StreamId::parse("100-5");
        assert_eq!(corrected_lag(&group("100-5", Some(198_300)), last), Some(0));
        assert_eq!(corrected_lag(&group("100-4", Some(7)), last), Some(7));
        // Behind, but the counter says 0 (or nothing): unknown.
        assert_eq!(corrected_lag(&group("99-0", Some(0)), last), None);
        assert_eq!(corrected_lag(&group("99-0", None), last), None);
        // No stream: nothing to deliver.
        assert_eq!(corrected_lag(&group("0-0", None), None), Some(0));
    }
}
