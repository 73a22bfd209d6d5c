//! Every Redis key eventline uses, in one place (the contract's "Redis
//! layout"). A prefix (`REDIS_KEY_PREFIX`, empty by default) lets several
//! deployments, or parallel tests, share one Redis.
//!
//! Stream shards are named `events:{N}`. eventline runs on a single Redis
//! node (Redis Cluster is not supported yet); the braces make the shard
//! number a hash tag, so that on a cluster each shard would have a slot of
//! its own.

use uuid::Uuid;

/// The consumer group of the workers, on every shard.
pub const CONSUMER_GROUP: &str = "writers";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ingest stream of one shard.
    pub fn stream(&self, shard: u32) -> String {
        format!("{}events:{{{shard}}}", self.prefix)
    }

    /// The dead-letter stream.
    pub fn dlq(&self) -> String {
        format!("{}events:dlq", self.prefix)
    }

    /// The dedup claim of one event (see `EnrichedEvent::dedup_key`).
    pub fn dedup(&self, key: Uuid) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 38);
        self.write_dedup(key, &mut out);
        out
    }

    /// [`Self::dedup`] written into `out` (cleared first), so a loop over a
    /// batch reuses one buffer.
    pub fn write_dedup(&self, key: Uuid, out: &mut String) {
        out.clear();
        out.push_str(&self.prefix);
        out.push_str("dedup:");
        out.push_str(key.as_simple().encode_lower(&mut Uuid::encode_buffer()));
    }

    /// A rate-limit window; `scope` is a small fixed word (`key`, `ip`).
    pub fn rate_limit(&self, scope: &str, subject: &str) -> String {
        format!("{}ratelimit:{scope}:{subject}", self.prefix)
    }
}

/// The shard of an event: its dedup key modulo the shard count, so the
/// retries of one event always meet on the same shard.
pub fn shard_of(dedup_key: Uuid, shards: u32) -> u32 {
    let shards = shards.max(1);
    // The last 8 bytes of both v5 (hash) and v7 (random) UUIDs are uniform.
    let low = dedup_key.as_u64_pair().1;
    (low % u64::from(shards)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let keys = RedisKeys::default();
        assert_eq!(keys.stream(0), "events:{0}");
        assert_eq!(keys.dlq(), "events:dlq");
        let k = Uuid::from_u128(0xab);
        assert_eq!(keys.dedup(k), "dedup:000000000000000000000000000000ab");
        let keys = RedisKeys::new("t1:");
        assert_eq!(keys.stream(3), "t1:events:{3}");
        assert_eq!(keys.rate_limit("ip", "1.2.3.4"), "t1:ratelimit:ip:1.2.3.4");
    }

    #[test]
    fn shards_spread_and_stay_in_range() {
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[shard_of(Uuid::now_v7(), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_of(Uuid::now_v7(), 0), 0);
    }
}
