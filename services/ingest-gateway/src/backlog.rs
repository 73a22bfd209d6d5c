//! Backpressure: a background task reads every shard's length (`XLEN`s sent
//! together) a few times a second; requests compare the cached
//! value with `STREAM_HIGH_WATER` and answer 429 when the workers are behind,
//! instead of growing Redis without bound. No request pays a Redis call for it.
//!
//! A stream entry is one request (format 2), and `STREAM_HIGH_WATER` counts
//! events: the events waiting are estimated as the longest shard's entries
//! times the mean events per entry of the requests this gateway wrote
//! lately, a mean that follows larger requests at once and smaller ones
//! slowly, so the estimate errs high (ADR 0002).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventline_shared::redis_pool;
use eventline_shared::stream_codec::EventsPerEntry;

use crate::Context;
use crate::config::StreamArgs;

#[derive(Debug)]
pub struct Backlog {
    lengths: Vec<AtomicU64>,
    /// Entries in the dead-letter stream, read in the same round trip: what
    /// an operator alerts on.
    dead_letters: AtomicU64,
    high_water: u64,
    refresh: Duration,
    /// Mean events per entry of the requests written.
    events_per_entry: EventsPerEntry,
}

impl Backlog {
    /// Every shard at length 0 until the first read.
    pub fn new(stream: &StreamArgs) -> Self {
        Self {
            lengths: (0..stream.shards.count)
                .map(|_| AtomicU64::new(0))
                .collect(),
            dead_letters: AtomicU64::new(0),
            high_water: stream.stream_high_water,
            refresh: stream.stream_length_refresh,
            events_per_entry: EventsPerEntry::default(),
        }
    }

    /// Counts an entry of `events` events into the mean.
    pub fn record_entry(&self, events: u32) {
        self.events_per_entry.observe(1, events as usize);
    }

    /// The mean events per entry written lately (at least 1).
    pub fn events_per_entry(&self) -> f64 {
        self.events_per_entry.get()
    }

    /// The events waiting in the longest shard, estimated.
    pub fn max_events(&self) -> u64 {
        self.events_per_entry.events_in(self.max_length())
    }

    /// The longest shard, as last read.
    pub fn max_length(&self) -> u64 {
        self.lengths
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    pub fn lengths(&self) -> Vec<u64> {
        self.lengths
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect()
    }

    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    pub fn is_over(&self) -> bool {
        self.max_events() > self.high_water
    }

    /// How long a client should wait before retrying: the refresh period,
    /// at least a second.
    pub fn retry_after(&self) -> Duration {
        self.refresh.max(Duration::from_secs(1))
    }

    /// Reads every shard's length and the dead-letter streams', one `XLEN`
    /// per key, all at once (on a cluster each goes to its key's master).
    pub async fn refresh_once(&self, ctx: &Context) -> Result<(), String> {
        let keys = &ctx.keys;
        let conn = ctx.redis.get().await.map_err(|e| e.to_string())?;
        let shards = self.lengths.len() as u32;
        let xlen = |key: String| {
            let mut pipe = redis::pipe();
            pipe.cmd("XLEN").arg(key);
            pipe
        };
        let mut pipes: Vec<redis::Pipeline> = (0..shards).map(|s| xlen(keys.stream(s))).collect();
        pipes.extend(keys.dlqs(shards).into_iter().map(xlen));
        let lengths: Vec<(u64,)> = redis_pool::query_each(&conn, &pipes)
            .await
            .map_err(|e| e.to_string())?;
        let (streams, dlqs) = lengths.split_at(shards as usize);
        for (slot, (len,)) in self.lengths.iter().zip(streams) {
            slot.store(*len, Ordering::Relaxed);
        }
        let dead_letters = dlqs.iter().map(|(len,)| len).sum();
        self.dead_letters.store(dead_letters, Ordering::Relaxed);
        Ok(())
    }

    /// Refreshes until shutdown, reporting failed reads to the breaker.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>) {
        let metrics = &ctx.metrics;
        let mut tick = tokio::time::interval(self.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.refresh_once(&ctx).await {
                Ok(()) => {
                    for (shard, len) in self.lengths().into_iter().enumerate() {
                        metrics
                            .stream_length
                            .with_label_values(&[&shard.to_string()])
                            .set(len as i64);
                    }
                    metrics
                        .dead_letters
                        .set(i64::try_from(self.dead_letters()).unwrap_or(i64::MAX));
                }
                // A failed read is evidence that Redis is unreachable; a
                // successful one is not evidence that it takes writes (a full
                // Redis with `noeviction` answers XLEN and refuses XADD), so
                // only the XADDs themselves close the breaker.
                Err(error) => {
                    ctx.breaker.failure();
                    tracing::warn!(%error, "cannot read the stream length");
                }
            }
        }
    }
}
