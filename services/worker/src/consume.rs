//! The read loop of one stream shard (steps 1 and 7): claim idle entries of
//! dead consumers every `CLAIM_INTERVAL_MS`, otherwise `XREADGROUP` new ones
//! until the batch holds `BATCH_SIZE` entries or `FLUSH_INTERVAL_MS` passed
//! since its first entry (pausing between reads while it fills), then hand
//! the batch to a task of its own.
//!
//! At most `MAX_IN_FLIGHT_BATCHES` batches per shard are in flight: reading
//! the next batch overlaps the insert of the previous one, and when the
//! database stalls the in-flight batches hold every slot, so reading stops
//! instead of piling entries up in memory.
//!
//! An entry holds one event or a whole request's (format 2), and `COUNT`
//! counts entries: each read asks for as many entries as, at the mean size
//! of the entries read lately ([`EntrySize`]), make the events still
//! missing (`State::entry_size`), and at most [`MAX_ENTRIES_PER_READ`].
//!
//! Invariant: a blocking read is never abandoned half-way (a read whose
//! answer is dropped would leave entries pending on us, unseen until claimed);
//! shutdown is checked between reads, which block at most one second.

use std::sync::Arc;
use std::time::Duration;

use eventline_shared::redis_keys::CONSUMER_GROUP;
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION};
use redis::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{self, Batch};
use crate::claim;
use crate::retry::Backoff;
use crate::stream_reply::{self, Entry, ReplyError};
use crate::{State, create_group};

/// The longest single `XREADGROUP … BLOCK`.
pub const MAX_BLOCK: Duration = Duration::from_secs(1);

/// The most entries one read asks for: when requests grow from single
/// events to large batches, the first read at the old mean takes at most
/// this many of them.
pub const MAX_ENTRIES_PER_READ: usize = 500;

/// How many entries to ask for to get about `events` events, at the mean
/// size of the entries this worker read lately.
pub fn entries_for(state: &State, events: usize) -> usize {
    state
        .entry_size
        .entries_for(events)
        .min(MAX_ENTRIES_PER_READ.min(events.max(1)))
}

/// Counts a read's entries into the mean; returns their events.
fn observe(state: &State, entries: &[Entry]) -> usize {
    let events = entries.iter().map(events_of).sum();
    state.entry_size.observe(entries.len(), events);
    events
}

/// The events `entry` holds, from its header (1 when it is unreadable).
pub fn events_of(entry: &Entry) -> usize {
    stream_codec::event_count(entry.field(FIELD_VERSION), entry.field(FIELD_EVENT))
}

/// How long a partly filled batch waits between reads: a quarter of
/// `FLUSH_INTERVAL`, so a batch that fills early is noticed within a quarter
/// of the interval.
fn gather_pause(flush_interval: Duration) -> Duration {
    flush_interval / 4
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Claim(#[from] claim::ClaimError),
}

/// Reads shard `shard` until `shutdown`, spawning each batch on `tasks`.
pub async fn run_shard(
    state: Arc<State>,
    shard: u32,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let stream = state.keys.stream(shard);
    let slots = Arc::new(Semaphore::new(state.config.max_in_flight_batches as usize));
    let mut reader = Reader {
        state: &state,
        stream: &stream,
        conn: None,
        next_claim: Instant::now(),
        claim_cursor: "0-0".to_owned(),
    };
    let mut backoff = Backoff::new(state.config.retry_base, state.config.retry_max);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        if shutdown.is_cancelled() {
            break;
        }
        match reader.next_batch(&shutdown).await {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                backoff = Backoff::new(state.config.retry_base, state.config.retry_max);
                let state = state.clone();
                let batch = Batch {
                    stream: stream.clone(),
                    entries,
                };
                tasks.spawn(async move {
                    batch::process(&state, batch).await;
                    drop(slot);
                });
            }
            Err(e) => {
                state.metrics.transient_errors.inc();
                let delay = backoff.next_delay();
                tracing::warn!(stream, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the stream; will retry");
                reader.conn = None;
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracing::debug!(stream, "stopped reading");
}

struct Reader<'a> {
    state: &'a State,
    stream: &'a str,
    /// A connection of its own, held across reads.
    conn: Option<eventline_shared::redis_pool::RedisConn>,
    next_claim: Instant,
    claim_cursor: String,
}

impl Reader<'_> {
    /// The next batch: claimed idle entries when a claim is due and finds
    /// some, else new entries. Empty when nothing arrived within a second.
    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Result<Vec<Entry>, ReadError> {
        let state = self.state;
        if Instant::now() >= self.next_claim
            && state.breaker.state() == eventline_shared::circuit_breaker::BreakerState::Closed
        {
            let (entries, cursor) =
                claim::claim_idle(state, self.stream, &self.claim_cursor).await?;
            // Keep scanning at once while the pending list has more.
            self.next_claim = if cursor == "0-0" {
                Instant::now() + state.config.claim_interval
            } else {
                Instant::now()
            };
            self.claim_cursor = cursor;
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        let batch_size = state.config.batch_size as usize;
        let gather = gather_pause(state.config.flush_interval);
        let mut batch: Vec<Entry> = Vec::new();
        let mut events = 0;
        let mut deadline: Option<Instant> = None;
        let mut last_read_done = false;
        loop {
            let now = Instant::now();
            let block = match deadline {
                // What arrived during the last pause, without waiting for more.
                Some(d) if d <= now && !last_read_done => {
                    last_read_done = true;
                    Duration::from_millis(1)
                }
                Some(d) if d <= now => break,
                Some(d) => MAX_BLOCK.min(d - now),
                None => MAX_BLOCK.min(self.next_claim.saturating_duration_since(now)),
            };
            let count = entries_for(state, batch_size - events);
            let mut entries = match self.read(count, block).await {
                Ok(entries) => entries,
                // The entries gathered so far are delivered to us: process
                // them now rather than leave them pending until a claim.
                // The next read, on a fresh connection, meets the error
                // again if it lasts, and backs off.
                Err(e) if !batch.is_empty() => {
                    tracing::warn!(stream = self.stream, error = %e, entries = batch.len(), "read failed; processing the entries already read");
                    self.conn = None;
                    break;
                }
                Err(e) => return Err(e),
            };
            if batch.is_empty() && !entries.is_empty() {
                deadline = Some(Instant::now() + state.config.flush_interval);
            }
            let read_all = entries.len() >= count;
            events += observe(state, &entries);
            batch.append(&mut entries);
            if events >= batch_size
                || (batch.is_empty()
                    && (shutdown.is_cancelled() || Instant::now() >= self.next_claim))
            {
                break;
            }
            // A short read means the stream is read to its end: a blocking
            // read now would return with the next single XADD. Let entries
            // gather instead, so a batch takes a few reads, not one per
            // event at moderate rates (each read, and each XADD that wakes a
            // blocked reader, costs Redis time; ADR 0011).
            if read_all {
                continue;
            }
            if let Some(d) = deadline {
                let now = Instant::now();
                if d > now {
                    tokio::time::sleep(gather.min(d - now)).await;
                }
            }
        }
        Ok(batch)
    }

    async fn read(&mut self, count: usize, block: Duration) -> Result<Vec<Entry>, ReadError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self
                .conn
                .insert(self.state.redis_blocking.own_connection().await?),
        };
        let reply: Result<Value, _> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&self.state.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.stream)
            .arg(">")
            .query_async(conn)
            .await;
        match reply {
            Ok(reply) => Ok(stream_reply::read_group(reply)?),
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream (and so its group) was deleted: create both again.
                tracing::warn!(stream = self.stream, "consumer group missing; creating it");
                create_group(self.state, self.stream).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }
}
