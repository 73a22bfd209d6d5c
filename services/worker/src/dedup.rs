//! The dedup claim (step 2 of the delivery protocol): `SET dedup:{key}
//! <entry id> NX GET EX <DEDUP_TTL>` for the whole batch in one pipeline.
//! `NX GET` tells in the same round trip who holds the key: nobody (we claimed
//! it), this very entry (our own earlier claim, the entry is being
//! redelivered: keep it), or another entry (a duplicate: skip it).
//!
//! Invariant: a key is only ever released ([`release`]) by the entry that
//! holds it, and only when that entry will not be stored (dead-lettered), so
//! a retry of the same event can still be stored later.

use redis::{Script, Value};
use uuid::Uuid;

use crate::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody held the key; this entry does now.
    Claimed,
    /// This entry already held the key: a redelivery of our own claim.
    OwnRedelivery,
    /// Another entry holds the key: this one is a duplicate.
    Duplicate,
}

/// Claims `keys` (dedup key and the entry id claiming it), in order: of two
/// entries of one batch with the same key, the first claims and the second is
/// a duplicate.
pub async fn claim(state: &State, keys: &[(Uuid, &str)]) -> Result<Vec<Claim>, redis::RedisError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ttl = state.config.dedup_ttl.as_secs().max(1);
    // Sized up front: one allocation per command instead of a string and
    // several regrowths (this runs for every event).
    let mut pipe = redis::Pipeline::with_capacity(keys.len());
    let mut name = String::with_capacity(64);
    for (key, id) in keys {
        state.keys.write_dedup(*key, &mut name);
        let mut cmd = redis::Cmd::with_capacity(7, name.len() + id.len() + 32);
        cmd.arg("SET")
            .arg(&name)
            .arg(*id)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(ttl);
        pipe.add_command(cmd);
    }
    let mut conn = state.redis_conn().await?;
    let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
    Ok(keys
        .iter()
        .zip(replies)
        .map(|((_, id), reply)| match reply {
            Value::Nil => Claim::Claimed,
            Value::BulkString(holder) if holder == id.as_bytes() => Claim::OwnRedelivery,
            _ => Claim::Duplicate,
        })
        .collect())
}

/// Deletes each key that `entry id` still holds (compare-and-delete, one key
/// per call). eventline runs on a single Redis node: Redis Cluster is not
/// supported yet (the claims above are one pipeline over many keys).
pub async fn release(state: &State, keys: &[(Uuid, &str)]) -> Result<(), redis::RedisError> {
    if keys.is_empty() {
        return Ok(());
    }
    let script = Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    );
    let mut conn = state.redis_conn().await?;
    for (key, id) in keys {
        let _: i64 = script
            .key(state.keys.dedup(*key))
            .arg(*id)
            .invoke_async(&mut conn)
            .await?;
    }
    Ok(())
}
