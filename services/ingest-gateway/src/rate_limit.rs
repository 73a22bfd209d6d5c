//! Rate limits per API key (events/s) and per client address (requests/s),
//! shared by every gateway replica through Redis, without a Redis call on the
//! request path.
//!
//! Each replica keeps local token buckets and decides from them alone. A
//! background task reconciles them with Redis every `RATE_LIMIT_SYNC_MS`: in
//! one script call it reports what this replica consumed since the last sync
//! to the global bucket (`ratelimit:{rl}:<scope>:<subject>`, refilled by
//! Redis's clock) and sets the local bucket to the global level. The global
//! bucket may go into debt (down to minus one burst), so replicas that
//! over-admitted between syncs pay it back: the long-run rate over all
//! replicas is the configured one, and the overshoot is bounded by one sync
//! interval's worth of traffic per replica.
//!
//! When Redis is slow or down the sync fails and every replica limits on its
//! own buckets: the local fallback. See docs/adr/0006-rate-limits.md.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventline_shared::redis_keys::RedisKeys;
use uuid::Uuid;

use crate::Context;

/// Whom a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(Uuid),
    Ip(IpAddr),
}

impl Subject {
    pub fn scope(self) -> &'static str {
        match self {
            Subject::Key(_) => "key",
            Subject::Ip(_) => "ip",
        }
    }

    fn redis_key(self, keys: &RedisKeys) -> String {
        // `{rl}` keeps every bucket in one hash slot on a Redis Cluster, so
        // that one script call touches them all (a sync is a few calls per
        // `RATE_LIMIT_SYNC_MS`, so their one master is not a hot spot).
        match self {
            Subject::Key(id) => keys.rate_limit("{rl}:key", &id.simple().to_string()),
            Subject::Ip(ip) => keys.rate_limit("{rl}:ip", &ip.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Tokens per second; 0 means unlimited.
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub fn new(per_second: u64, burst: u64) -> Option<Self> {
        (per_second > 0).then(|| Rate {
            per_second: per_second as f64,
            burst: burst.max(1) as f64,
        })
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Consumed since the last report to Redis.
    unreported: f64,
    last_used: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.refilled = now;
    }
}

const SHARDS: usize = 16;
/// Buckets unused this long are forgotten (their Redis state expires too).
const IDLE_EVICTION: Duration = Duration::from_secs(120);
/// Buckets used this recently are synced even with nothing to report, to
/// learn what other replicas consumed.
const ACTIVE_WINDOW: Duration = Duration::from_secs(5);
/// Most buckets in one script call.
const SYNC_CHUNK: usize = 500;

pub struct RateLimiter {
    key_rate: Option<Rate>,
    ip_rate: Option<Rate>,
    shards: Vec<Mutex<HashMap<Subject, Bucket>>>,
    hasher: RandomState,
}

const SYNC_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 3
  local rate = tonumber(ARGV[base + 1])
  local burst = tonumber(ARGV[base + 2])
  local delta = tonumber(ARGV[base + 3])
  local state = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  tokens = math.max(-burst, tokens - delta)
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate) + 60000)
  out[i] = tostring(tokens)
end
return out
";

impl RateLimiter {
    pub fn new(key_rate: Option<Rate>, ip_rate: Option<Rate>) -> Self {
        Self {
            key_rate,
            ip_rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn rate(&self, subject: Subject) -> Option<Rate> {
        match subject {
            Subject::Key(_) => self.key_rate,
            Subject::Ip(_) => self.ip_rate,
        }
    }

    fn shard(&self, subject: &Subject) -> &Mutex<HashMap<Subject, Bucket>> {
        let i = (self.hasher.hash_one(subject) as usize) % SHARDS;
        &self.shards[i]
    }

    fn with_bucket<T>(&self, subject: Subject, rate: Rate, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let now = Instant::now();
        let mut map = match self.shard(&subject).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bucket = map.entry(subject).or_insert(Bucket {
            tokens: rate.burst,
            refilled: now,
            unreported: 0.0,
            last_used: now,
        });
        bucket.refill(rate, now);
        bucket.last_used = now;
        f(bucket)
    }

    /// Takes `cost` tokens, or says how long until they would be there.
    pub fn try_acquire(&self, subject: Subject, cost: u64) -> Result<(), Duration> {
        let Some(rate) = self.rate(subject) else {
            return Ok(());
        };
        let cost = cost as f64;
        self.with_bucket(subject, rate, |bucket| {
            if bucket.tokens >= cost {
                bucket.tokens -= cost;
                bucket.unreported += cost;
                Ok(())
            } else {
                let missing = cost - bucket.tokens;
                Err(Duration::from_secs_f64(
                    (missing / rate.per_second).clamp(0.001, 3600.0),
                ))
            }
        })
    }

    /// Takes `cost` tokens unconditionally (a failed authentication), down
    /// to one burst of debt.
    pub fn charge(&self, subject: Subject, cost: u64) {
        let Some(rate) = self.rate(subject) else {
            return;
        };
        self.with_bucket(subject, rate, |bucket| {
            bucket.tokens = (bucket.tokens - cost as f64).max(-rate.burst);
            bucket.unreported += cost as f64;
        });
    }

    /// Takes what each active bucket consumed since the last report.
    fn take_reports(&self) -> Vec<(Subject, Rate, f64)> {
        let now = Instant::now();
        let mut reports = Vec::new();
        for shard in &self.shards {
            let mut map = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.retain(|_, b| now.saturating_duration_since(b.last_used) < IDLE_EVICTION);
            for (subject, bucket) in map.iter_mut() {
                let active = now.saturating_duration_since(bucket.last_used) < ACTIVE_WINDOW;
                if (bucket.unreported > 0.0 || active)
                    && let Some(rate) = self.rate(*subject)
                {
                    reports.push((*subject, rate, bucket.unreported));
                    bucket.unreported = 0.0;
                }
            }
        }
        reports
    }

    /// Sets a bucket to the global level, minus what was consumed locally
    /// while the sync was in flight.
    fn apply_global(&self, subject: Subject, rate: Rate, global: f64) {
        self.with_bucket(subject, rate, |bucket| {
            bucket.tokens = (global - bucket.unreported).clamp(-rate.burst, rate.burst);
        });
    }

    /// One reconciliation with Redis.
    pub async fn sync_once(
        &self,
        redis: &eventline_shared::redis_pool::Redis,
        keys: &RedisKeys,
    ) -> Result<(), String> {
        let reports = self.take_reports();
        if reports.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(SYNC_SCRIPT);
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        for chunk in reports.chunks(SYNC_CHUNK) {
            let mut invocation = script.prepare_invoke();
            for (subject, rate, delta) in chunk {
                invocation
                    .key(subject.redis_key(keys))
                    .arg(rate.per_second / 1000.0)
                    .arg(rate.burst)
                    .arg(*delta);
            }
            let levels: Vec<String> = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            for ((subject, rate, _), level) in chunk.iter().zip(levels) {
                if let Ok(global) = level.parse::<f64>() {
                    self.apply_global(*subject, *rate, global);
                }
            }
        }
        Ok(())
    }

    /// Reconciles every `interval` until shutdown.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sync_once(&ctx.redis, &ctx.keys).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("rate limits are shared through Redis again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot sync rate limits with Redis; limiting locally");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_with_a_wait() {
        let rl = RateLimiter::new(Rate::new(10, 20), None);
        let key = Subject::Key(Uuid::nil());
        for _ in 0..20 {
            assert!(rl.try_acquire(key, 1).is_ok());
        }
        let wait = rl.try_acquire(key, 1).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Unlimited scopes always pass.
        assert!(
            rl.try_acquire(Subject::Ip(IpAddr::from([1, 2, 3, 4])), 1_000_000)
                .is_ok()
        );
    }

    #[test]
    fn charges_go_into_debt() {
        let rl = RateLimiter::new(None, Rate::new(100, 100));
        let ip = Subject::Ip(IpAddr::from([10, 0, 0, 1]));
        rl.charge(ip, 1000);
        let wait = rl.try_acquire(ip, 1).unwrap_err();
        assert!(wait >= Duration::from_secs(1), "{wait:?}");
        // Other addresses are unaffected.
        assert!(
            rl.try_acquire(Subject::Ip(IpAddr::from([10, 0, 0, 2])), 1)
                .is_ok()
        );
    }

    #[test]
    fn reports_carry_consumption_once() {
        let rl = RateLimiter::new(Rate::new(1000, 1000), None);
        let key = Subject::Key(Uuid::nil());
        rl.try_acquire(key, 7).unwrap();
        let reports = rl.take_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].2, 7.0);
        // Still active: reported again with nothing consumed.
        assert_eq!(rl.take_reports()[0].2, 0.0);
    }
}
