//! Every Redis key eventline uses, in one place (the contract's "Redis
//! layout"). A prefix (`REDIS_KEY_PREFIX`, empty by default) lets several
//! deployments, or parallel tests, share one Redis.
//!
//! On one server, stream shards are `events:{0}`…`events:{N-1}` and dead
//! letters go to `events:dlq`. On a Redis Cluster (ADR 0060) the shard's
//! hash tag is chosen by slot ([`shard_tag`]) so that the shards spread
//! evenly over the masters, which `{0}`…`{N-1}` do not, and each shard has a
//! dead-letter stream of its own in its slot (`events:{t}:dlq`), so that a
//! replay moves a letter back with one script on one slot. Every key a
//! command, pipeline or script touches together shares one hash tag.

use std::sync::{Arc, LazyLock};

use uuid::Uuid;

/// The consumer group of the workers, on every shard.
pub const CONSUMER_GROUP: &str = "writers";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisKeys {
    prefix: String,
    /// On a cluster, each shard's hash tag.
    shard_tags: Option<Arc<[String]>>,
}

impl RedisKeys {
    /// The names on one Redis server.
    pub fn new(prefix: impl Into<String>) -> Self {
        // The claim groups' tags, now rather than in the first batch.
        LazyLock::force(&CLAIM_TAGS);
        Self {
            prefix: prefix.into(),
            shard_tags: None,
        }
    }

    /// The names on a Redis Cluster of `shards` stream shards.
    pub fn cluster(prefix: impl Into<String>, shards: u32) -> Self {
        LazyLock::force(&CLAIM_TAGS);
        Self {
            prefix: prefix.into(),
            shard_tags: Some(shard_tags(shards).into()),
        }
    }

    /// [`Self::cluster`] when `cluster`, else [`Self::new`].
    pub fn for_deployment(prefix: impl Into<String>, shards: u32, cluster: bool) -> Self {
        if cluster {
            Self::cluster(prefix, shards)
        } else {
            Self::new(prefix)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ingest stream of one shard.
    pub fn stream(&self, shard: u32) -> String {
        match self
            .shard_tags
            .as_deref()
            .and_then(|t| t.get(shard as usize))
        {
            Some(tag) => format!("{}events:{{{tag}}}", self.prefix),
            None => format!("{}events:{{{shard}}}", self.prefix),
        }
    }

    /// The dead-letter stream that takes `stream`'s letters: `events:dlq`
    /// on one server, `<stream>:dlq` (same slot) on a cluster.
    pub fn dlq_of(&self, stream: &str) -> String {
        if self.shard_tags.is_some() {
            format!("{stream}:dlq")
        } else {
            format!("{}events:dlq", self.prefix)
        }
    }

    /// Every dead-letter stream of `shards` shards: one on one server, one
    /// per shard on a cluster.
    pub fn dlqs(&self, shards: u32) -> Vec<String> {
        if self.shard_tags.is_some() {
            (0..shards).map(|s| self.dlq_of(&self.stream(s))).collect()
        } else {
            vec![self.dlq_of("")]
        }
    }

    /// The hash of dedup claims of time bucket `bucket` (see
    /// [`claim_bucket`]) that holds `key`'s claim: `dedup:{g}:pppp:<bucket>`,
    /// `pppp` the key's partition (its first two bytes in hex), `g` the
    /// tag of its partition's group ([`claim_group`]). One key's buckets
    /// share a slot, so a script checks them together; a group's partitions
    /// too, so one script claims many keys; the partitions keep each hash
    /// small (a listpack).
    pub fn claims(&self, key: Uuid, bucket: u64) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 40);
        self.write_claims(key, bucket, &mut out);
        out
    }

    /// [`Self::claims`] written into `out` (cleared first), so a loop over a
    /// batch reuses one buffer.
    pub fn write_claims(&self, key: Uuid, bucket: u64, out: &mut String) {
        use std::fmt::Write as _;
        let bytes = key.as_bytes();
        out.clear();
        out.push_str(&self.prefix);
        let tag = &CLAIM_TAGS[claim_group(key)];
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "dedup:{{{tag}}}:{:02x}{:02x}:{bucket}",
            bytes[0], bytes[1]
        );
    }

    /// A rate-limit window; `scope` is a small fixed word (`key`, `ip`).
    pub fn rate_limit(&self, scope: &str, subject: &str) -> String {
        format!("{}ratelimit:{scope}:{subject}", self.prefix)
    }
}

/// Groups of claim partitions, each a hash tag chosen by slot
/// ([`shard_tag`]): 64 spread within one or two groups per master up to
/// 32 masters, and a batch of a few thousand claims is a few dozen
/// script calls, one slot each.
pub const CLAIM_GROUPS: u32 = 64;

static CLAIM_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| shard_tags(CLAIM_GROUPS));

/// The claim group of `key`: the top six bits of its first byte, so a
/// partition (first two bytes) is in one group.
pub fn claim_group(key: Uuid) -> usize {
    usize::from(key.as_bytes()[0] >> 2) % CLAIM_GROUPS as usize
}

/// The time bucket of dedup claims made at `unix_secs`, for claims that
/// must live `ttl_secs` (`DEDUP_TTL`): buckets are `ttl_secs` long, a claim
/// is made in the current bucket and looked for in the one before and the
/// one after (clocks of workers that disagree by less than a bucket still
/// meet), and a bucket's hashes expire at [`claims_expire_at`].
pub fn claim_bucket(unix_secs: u64, ttl_secs: u64) -> u64 {
    unix_secs / ttl_secs.max(1)
}

/// When the claim hashes of `bucket` expire (Unix seconds): the end of the
/// bucket after it, so every claim lives between one and two `ttl_secs`,
/// and each hash goes whole instead of key by key.
pub fn claims_expire_at(bucket: u64, ttl_secs: u64) -> u64 {
    (bucket + 2).saturating_mul(ttl_secs.max(1))
}

/// The shard of an event: its dedup key modulo the shard count, so the
/// retries of one event always meet on the same shard.
pub fn shard_of(dedup_key: Uuid, shards: u32) -> u32 {
    let shards = shards.max(1);
    // The last 8 bytes of both v5 (hash) and v7 (random) UUIDs are uniform.
    let low = dedup_key.as_u64_pair().1;
    (low % u64::from(shards)) as u32
}

/// The number of hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// The hash slot of `key` on a Redis Cluster, as `CLUSTER KEYSLOT` computes
/// it: CRC16 (XMODEM) modulo 16384 of the key's hash tag, which is the part
/// between the first `{` and the first `}` after it when that part is not
/// empty, and the whole key otherwise (Redis Cluster specification, "Hash
/// tags").
pub fn key_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) % CLUSTER_SLOTS
}

/// What [`key_slot`] hashes.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// CRC16-CCITT in its XMODEM variant (polynomial 0x1021, initial value 0,
/// no reflection), the one Redis Cluster uses.
fn crc16_xmodem(data: &[u8]) -> u16 {
    crc16_continue(0, data)
}

/// [`crc16_xmodem`] of what gave `crc`, followed by `data`.
fn crc16_continue(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc = (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)];
    }
    crc
}

/// The CRC of each byte value, so [`crc16_continue`] takes a byte a step.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// How many suffixes [`shard_tag`] tries per shard: with 10,000 the chosen
/// slot is within 3 of the target for every N up to 256 (1,000 left up to 33).
const TAG_CANDIDATES: u32 = 10_000;

/// The slot shard `shard` of `shards` aims at: the middle of the `shard`-th of
/// `shards` equal, contiguous slot ranges.
pub fn shard_target_slot(shard: u32, shards: u32) -> u16 {
    let shards = u64::from(shards.max(1));
    let shard = u64::from(shard).min(shards - 1);
    // (2i + 1) * 16384 / 2N: the middle of [i * 16384 / N, (i + 1) * 16384 / N).
    ((2 * shard + 1) * u64::from(CLUSTER_SLOTS) / (2 * shards)) as u16
}

/// A short hash tag for shard `shard` of `shards`, chosen by slot so that the
/// shards spread over a Redis Cluster's masters: `"<shard>.<k>"` for the `k`
/// in `0..10000` whose [`key_slot`] is nearest [`shard_target_slot`] (the
/// smallest such `k` on a tie).
///
/// `redis-cli --cluster create` gives M masters M contiguous, equal slot
/// ranges; a shard whose slot is the middle of the i-th of N equal ranges
/// lands on master `floor((2i + 1) M / 2N)` (unless that middle is exactly a
/// boundary between two masters, which needs an even M), so every master
/// gets `floor(N / M)` or `ceil(N / M)` shards (N = 3 over 3 masters: 1/1/1;
/// N = 16: 5/6/5). The plain tags `{0}`…`{N-1}` do not: their slots are a CRC's, so
/// with N = 3 one master of 3 gets none.
///
/// Deterministic: the same `(shard, shards)` always gives the same tag, and
/// distinct shards give distinct tags (the shard number is part of it). A
/// stream key with it reads `events:{0.1643}`.
pub fn shard_tag(shard: u32, shards: u32) -> String {
    let target = i32::from(shard_target_slot(shard, shards));
    let prefix = format!("{shard}.");
    // The prefix's CRC once; each candidate adds only its digits.
    let start = crc16_continue(0, prefix.as_bytes());
    let mut digits = [0u8; 10];
    let distance = |k: &u32| {
        let digits = decimal(*k, &mut digits);
        let slot = crc16_continue(start, digits) % CLUSTER_SLOTS;
        (i32::from(slot) - target).abs()
    };
    // `min_by_key` keeps the first of equal minima: the smallest `k`.
    let k = (0..TAG_CANDIDATES).min_by_key(distance).unwrap_or(0);
    format!("{prefix}{k}")
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// [`shard_tag`] of every shard `0..shards`.
pub fn shard_tags(shards: u32) -> Vec<String> {
    (0..shards).map(|i| shard_tag(i, shards)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let keys = RedisKeys::default();
        assert_eq!(keys.stream(0), "events:{0}");
        assert_eq!(keys.dlq_of(&keys.stream(0)), "events:dlq");
        assert_eq!(keys.dlqs(4), ["events:dlq"]);
        let k = Uuid::from_u128(0x0a0b_0000_0000_0000_0000_0000_0000_00ab);
        assert_eq!(claim_group(k), 2);
        let tag = shard_tag(2, CLAIM_GROUPS);
        assert_eq!(
            keys.claims(k, 2_941_705),
            format!("dedup:{{{tag}}}:0a0b:2941705")
        );
        let keys = RedisKeys::new("t1:");
        assert_eq!(keys.stream(3), "t1:events:{3}");
        assert_eq!(keys.rate_limit("ip", "1.2.3.4"), "t1:ratelimit:ip:1.2.3.4");
        assert_eq!(keys.claims(k, 7), format!("t1:dedup:{{{tag}}}:0a0b:7"));
    }

    #[test]
    fn cluster_names_keep_each_shard_and_its_dead_letters_in_one_slot() {
        let keys = RedisKeys::cluster("t1:", 3);
        assert_eq!(keys.stream(0), "t1:events:{0.1643}");
        assert_eq!(keys.stream(2), "t1:events:{2.3547}");
        let dlqs = keys.dlqs(3);
        assert_eq!(dlqs[1], "t1:events:{1.2812}:dlq");
        for (shard, dlq) in dlqs.iter().enumerate() {
            let stream = keys.stream(shard as u32);
            assert_eq!(key_slot(stream.as_bytes()), key_slot(dlq.as_bytes()));
        }
        // The claim buckets around a key share its group's slot.
        let k = Uuid::now_v7();
        let slots: Vec<u16> = (9..12)
            .map(|b| key_slot(keys.claims(k, b).as_bytes()))
            .collect();
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{slots:?}");
        assert_eq!(RedisKeys::for_deployment("", 2, false), RedisKeys::new(""));
    }

    #[test]
    fn claim_groups_spread_over_three_masters_and_hold_whole_partitions() {
        assert_eq!(spread(&CLAIM_TAGS, 3), [21, 22, 21]);
        let a = Uuid::from_u128(0xfc00 << 112);
        let b = Uuid::from_u128((0xfcff << 112) | 77);
        assert_eq!(claim_group(a), claim_group(b));
        assert_eq!(claim_group(a), 63);
    }

    #[test]
    fn claims_live_between_one_and_two_ttls() {
        let ttl = 600;
        for made in [1_764_000_000u64, 1_764_000_599, 1_764_000_600] {
            let bucket = claim_bucket(made, ttl);
            let expires = claims_expire_at(bucket, ttl);
            assert!(expires >= made + ttl && expires <= made + 2 * ttl, "{made}");
            // A claim is still found one TTL later, in the bucket before.
            assert!(claim_bucket(made + ttl, ttl) <= bucket + 1);
        }
        assert_eq!(claim_bucket(5, 0), 5, "a zero TTL is taken as one second");
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

    #[test]
    fn key_slots_match_the_cluster_specification() {
        // The specification's CRC16 check value, and `CLUSTER KEYSLOT` answers.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.followers"), 3443);
        // Only the first `{…}` counts, and an empty one makes the whole key hash.
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_294_967_295, &mut buf), b"4294967295");
        assert_eq!(crc16_continue(crc16_xmodem(b"1234"), b"56789"), 0x31C3);
        // A prefix outside the braces does not move a shard.
        let keys = RedisKeys::new("t1:");
        assert_eq!(
            key_slot(keys.stream(7).as_bytes()),
            key_slot(RedisKeys::default().stream(7).as_bytes())
        );
    }

    /// The slot ranges `redis-cli --cluster create` gives `masters` masters.
    fn default_layout(masters: u16) -> Vec<(u16, u16)> {
        let per = f64::from(CLUSTER_SLOTS) / f64::from(masters);
        let mut first = 0;
        (0..masters)
            .map(|i| {
                let last = if i + 1 == masters {
                    CLUSTER_SLOTS - 1
                } else {
                    ((f64::from(i) + 1.0) * per - 1.0).round() as u16
                };
                let range = (first, last);
                first = last + 1;
                range
            })
            .collect()
    }

    /// How many of `tags` land on each master of the default layout.
    fn spread<T: AsRef<str>>(tags: &[T], masters: u16) -> Vec<u32> {
        let layout = default_layout(masters);
        let mut counts = vec![0; layout.len()];
        for tag in tags {
            let slot = key_slot(tag.as_ref().as_bytes());
            let master = layout.iter().position(|&(a, b)| (a..=b).contains(&slot));
            counts[master.expect("the layout covers every slot")] += 1;
        }
        counts
    }

    #[test]
    fn shard_tags_spread_evenly_over_the_masters() {
        assert_eq!(
            default_layout(3),
            [(0, 5460), (5461, 10922), (10923, 16383)]
        );
        for (shards, want) in [
            (3, [1, 1, 1]),
            (4, [1, 2, 1]),
            (6, [2, 2, 2]),
            (16, [5, 6, 5]),
        ] {
            let tags = shard_tags(shards);
            assert_eq!(spread(&tags, 3), want, "N = {shards}: {tags:?}");
            for (i, tag) in tags.iter().enumerate() {
                let target = shard_target_slot(i as u32, shards);
                assert!(key_slot(tag.as_bytes()).abs_diff(target) <= 3, "{tag}");
                assert!(tag.starts_with(&format!("{i}.")) && tag.len() <= 7, "{tag}");
            }
        }
        assert_eq!(shard_tags(3), ["0.1643", "1.2812", "2.3547"]);
        // Deterministic, and a shard count of 0 is treated as 1.
        assert_eq!(shard_tag(2, 6), shard_tags(6)[2]);
        assert_eq!(shard_target_slot(0, 0), 8192);
        // What the issue says of the plain shard numbers.
        assert_eq!(spread(&["0", "1", "2"], 3), [0, 2, 1]);
        let plain: Vec<String> = (0..16).map(|i| i.to_string()).collect();
        assert_eq!(spread(&plain, 3), [6, 6, 4]);
    }
}
