//! The dedup claim (step 2 of the delivery protocol), for events that carry
//! a client `event_id`. An event without one has the gateway's id as its
//! dedup key: only a redelivery of its own entry can repeat it, and
//! PostgreSQL's unique key refuses that row, so it claims nothing (the batch
//! code treats a redelivered entry's events as possibly stored).
//!
//! A claim is a field of a hash, `dedup:{g}:pppp:<bucket>` (partition, its
//! group's hash tag, and time bucket, see `RedisKeys::claims`): the field is the 16-byte dedup
//! key, the value the entry id that claimed it. A script looks in the
//! buckets before and after the current one and, when the key is free,
//! claims it in the current bucket, atomically, for a batch's keys at once. Whole hashes expire at once, one to two TTLs after
//! their claims, so Redis lets go of claims as fast as they age instead of
//! sampling millions of keys, and a claim costs a listpack field (tens of
//! bytes) rather than a key of its own (~190; ADR 0003).
//!
//! The answer tells who holds the key: nobody (we claimed it), this very
//! entry (our own earlier claim, the entry is being redelivered: keep it),
//! or another entry (a duplicate: skip it).
//!
//! Invariant: a key is only ever released ([`release`]) by the entry that
//! holds it, and only when that entry will not store it (dead-lettered), so
//! a retry or a replay of the same event can still be stored later.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use eventline_shared::redis_keys::{claim_bucket, claims_expire_at};
use eventline_shared::redis_pool;
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

/// Claims a batch's keys in one call. KEYS: for each key its previous,
/// current and next bucket's hash; ARGV: when a new current hash expires,
/// then for each key its field and the claiming entry id. Returns, per key,
/// the holder found in the bucket before or after or already in the
/// current one, or false (nil) when this call claimed the key; a hash it
/// creates gets its expiry. One call instead of one per key: the script
/// call itself cost Redis more than the claim (ADR 0011).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holders = {}
for i = 1, #KEYS / 3 do
  local prev, cur, next = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local field, id = ARGV[2 * i], ARGV[2 * i + 1]
  local held = redis.call('HGET', prev, field) or redis.call('HGET', next, field)
  if not held then
    if redis.call('HSETNX', cur, field, id) == 1 then
      if redis.call('HLEN', cur) == 1 then
        redis.call('EXPIREAT', cur, ARGV[1])
      end
    else
      held = redis.call('HGET', cur, field)
    end
  end
  holders[i] = held
end
return holders
",
    )
});

/// KEYS: the buckets a claim may be in; ARGV: the field, the entry id that
/// must hold it. Deletes the field where that entry holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 0
",
    )
});

/// The bucket of now, on this worker's clock.
fn current_bucket(state: &State) -> (u64, u64) {
    let ttl = state.config.dedup_ttl.as_secs().max(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (claim_bucket(now, ttl), ttl)
}

/// Adds the hashes of the buckets around `bucket` for `key` (before,
/// current, after) as keys of `invocation`, written through `name` (one
/// buffer for a batch instead of three strings per claim).
fn add_buckets(
    state: &State,
    invocation: &mut redis::ScriptInvocation<'_>,
    name: &mut String,
    key: Uuid,
    bucket: u64,
) {
    for b in [bucket.saturating_sub(1), bucket, bucket + 1] {
        state.keys.write_claims(key, b, name);
        invocation.key(name.as_str());
    }
}

/// Claims per script call. A call holds Redis for its whole run (~10 µs a
/// claim): 32 keeps that near a third of a millisecond, so a batch's claims
/// do not stall the gateways' `XADD`s for milliseconds; the call's own cost
/// is already amortised at this size.
const CLAIMS_PER_CALL: usize = 32;

/// `keys`' positions grouped by the slot of their claim hashes
/// ([`Redis::slot`](eventline_shared::redis_pool::Redis::slot): one group on
/// one server, one per claim group on a cluster), in order within a group.
fn by_slot(state: &State, keys: &[(Uuid, &str)], bucket: u64) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    let mut name = String::with_capacity(64);
    for (i, (key, _)) in keys.iter().enumerate() {
        state.keys.write_claims(*key, bucket, &mut name);
        groups
            .entry(state.redis.slot(name.as_bytes()))
            .or_default()
            .push(i);
    }
    groups.into_values().collect()
}

/// Claims `keys` (dedup key and the entry id claiming it), in order: of two
/// entries of one batch with the same key, the first claims and the second is
/// a duplicate. One pipeline of script calls per slot, each call for up to
/// [`CLAIMS_PER_CALL`] keys; the pipelines go out together.
pub async fn claim(state: &State, keys: &[(Uuid, &str)]) -> Result<Vec<Claim>, redis::RedisError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (bucket, ttl) = current_bucket(state);
    let expire_at = claims_expire_at(bucket, ttl);
    let groups = by_slot(state, keys, bucket);
    let mut name = String::with_capacity(64);
    let pipes: Vec<redis::Pipeline> = groups
        .iter()
        .map(|group| {
            let mut pipe = redis::Pipeline::with_capacity(group.len() / CLAIMS_PER_CALL + 2);
            // Loading is idempotent and cheap; it spares a NOSCRIPT round
            // trip after a Redis restart (or on a master new since a failover).
            pipe.load_script(&CLAIM).ignore();
            for chunk in group.chunks(CLAIMS_PER_CALL) {
                let mut invocation = CLAIM.prepare_invoke();
                invocation.arg(expire_at);
                for &i in chunk {
                    let (key, id) = keys[i];
                    add_buckets(state, &mut invocation, &mut name, key, bucket);
                    invocation.arg(key.as_bytes()).arg(id);
                }
                pipe.invoke_script(&invocation);
            }
            pipe
        })
        .collect();
    let conn = state.redis_conn().await?;
    let replies: Vec<Vec<Vec<Value>>> = redis_pool::query_each(&conn, &pipes).await?;
    let mut claims = vec![None; keys.len()];
    for (group, replies) in groups.iter().zip(replies) {
        for (&i, holder) in group.iter().zip(replies.into_iter().flatten()) {
            claims[i] = Some(match holder {
                Value::Nil => Claim::Claimed,
                Value::BulkString(holder) if holder == keys[i].1.as_bytes() => Claim::OwnRedelivery,
                _ => Claim::Duplicate,
            });
        }
    }
    let answered = claims.iter().flatten().count();
    if answered != keys.len() {
        return Err(redis::RedisError::from(std::io::Error::other(format!(
            "the claim script answered {answered} of {} keys",
            keys.len()
        ))));
    }
    Ok(claims.into_iter().flatten().collect())
}

/// Deletes each key that `entry id` still holds, in whichever bucket around
/// now it is (compare-and-delete, one script call per key, one pipeline
/// per slot).
pub async fn release(state: &State, keys: &[(Uuid, &str)]) -> Result<(), redis::RedisError> {
    if keys.is_empty() {
        return Ok(());
    }
    let (bucket, _) = current_bucket(state);
    let mut name = String::with_capacity(64);
    let pipes: Vec<redis::Pipeline> = by_slot(state, keys, bucket)
        .iter()
        .map(|group| {
            let mut pipe = redis::Pipeline::with_capacity(group.len() + 1);
            pipe.load_script(&RELEASE).ignore();
            for &i in group {
                let (key, id) = keys[i];
                let mut invocation = RELEASE.prepare_invoke();
                // A claim made up to one bucket ago is in the bucket before.
                add_buckets(state, &mut invocation, &mut name, key, bucket);
                invocation.arg(key.as_bytes()).arg(id);
                pipe.invoke_script(&invocation).ignore();
            }
            pipe
        })
        .collect();
    let conn = state.redis_conn().await?;
    redis_pool::query_each::<()>(&conn, &pipes).await.map(drop)
}
