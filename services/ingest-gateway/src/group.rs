//! Group commit for single-event requests: concurrent requests bound for the
//! same shard are written as one stream entry with one `XADD` (ADR 0002).
//!
//! Each shard has a queue and `GROUP_WRITERS` writer tasks (0: no grouping,
//! each request is its own entry). A writer
//! takes the first request waiting, and with it every other one already
//! queued (up to [`MAX_GROUP_EVENTS`] events or [`MAX_GROUP_BYTES`]), writes
//! them as one entry and answers each. A request that finds a writer idle is
//! written at once, alone: grouping adds no wait of its own. Requests group
//! only while the writers are busy, which is when Redis and the worker gain
//! from it (an entry costs an `XADD`, a delivery and an `XACK` whatever it
//! holds).
//!
//! A request is answered `Ok` only after the `XADD` of its group succeeded
//! (and, with `REDIS_MIN_REPLICAS_ACK`, was replicated): a 202 still means
//! the event is in Redis. When the write fails, every request of the group
//! gets the error, and none of their events is in the stream.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::metrics::Metrics;
use crate::publish::{Entry, PublishError, Publisher};

/// At most this many events in one grouped entry.
pub const MAX_GROUP_EVENTS: usize = 256;
/// A group is closed once its events' encodings pass this many bytes.
pub const MAX_GROUP_BYTES: usize = 512 * 1024;
/// Requests waiting per shard before a new one waits for room.
const QUEUE: usize = 4096;

/// What a request learns of its group's write.
pub type Written = Result<(), Arc<PublishError>>;

struct Waiting {
    /// The event, encoded with its own request id (`stream_codec::encode`).
    event: Vec<u8>,
    /// Its dedup key when it has a client `event_id`.
    keyed: Option<Uuid>,
    reply: oneshot::Sender<Written>,
}

pub struct GroupWriter {
    queues: Vec<mpsc::Sender<Waiting>>,
}

/// The gateway is shutting down: its writers are gone.
#[derive(Debug, thiserror::Error)]
#[error("the group writer has stopped")]
pub struct Stopped;

impl GroupWriter {
    /// Starts `writers` writers for every shard of `publisher`; `None` when
    /// `writers` is 0.
    pub fn start(
        writers: u32,
        publisher: Arc<Publisher>,
        backlog: Arc<Backlog>,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        if writers == 0 {
            return None;
        }
        let queues = (0..publisher.shards())
            .map(|shard| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let rx = Arc::new(Mutex::new(rx));
                for _ in 0..writers {
                    tokio::spawn(write_groups(
                        shard,
                        rx.clone(),
                        publisher.clone(),
                        backlog.clone(),
                        metrics.clone(),
                    ));
                }
                tx
            })
            .collect();
        Some(Self { queues })
    }

    /// Writes `event` (encoded by `stream_codec::encode`) to `shard`'s
    /// stream with whatever else is waiting for it, and waits for the write.
    /// `keyed` is its dedup key when it has a client `event_id`: a group
    /// never holds two events with the same one.
    pub async fn write(
        &self,
        shard: u32,
        event: Vec<u8>,
        keyed: Option<Uuid>,
    ) -> Result<Written, Stopped> {
        let queue = self.queues.get(shard as usize).ok_or(Stopped)?;
        let (reply, written) = oneshot::channel();
        queue
            .send(Waiting {
                event,
                keyed,
                reply,
            })
            .await
            .map_err(|_| Stopped)?;
        written.await.map_err(|_| Stopped)
    }
}

/// One writer of `shard`: takes what waits, writes it as one entry, answers.
async fn write_groups(
    shard: u32,
    queue: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    publisher: Arc<Publisher>,
    backlog: Arc<Backlog>,
    metrics: Arc<Metrics>,
) {
    let mut group: Vec<Waiting> = Vec::new();
    // An event whose `event_id` the group already held: it opens the next.
    let mut carried: Option<Waiting> = None;
    loop {
        let bytes = {
            let mut queue = queue.lock().await;
            let first = match carried.take() {
                Some(first) => first,
                None => match queue.recv().await {
                    Some(first) => first,
                    None => return,
                },
            };
            let mut bytes = first.event.len();
            group.push(first);
            while group.len() < MAX_GROUP_EVENTS && bytes < MAX_GROUP_BYTES {
                let Ok(next) = queue.try_recv() else {
                    break;
                };
                // The worker claims an entry's keys for the entry: two
                // events of one entry with the same key would both pass as
                // its own (ADR 0002).
                if next
                    .keyed
                    .is_some_and(|key| group.iter().any(|w| w.keyed == Some(key)))
                {
                    carried = Some(next);
                    break;
                }
                bytes += next.event.len();
                group.push(next);
            }
            bytes
        };
        let mut entry = Entry::grouped(shard, bytes);
        for waiting in &group {
            entry.push_encoded(&waiting.event);
        }
        let events = entry.len();
        let written: Written = publisher.publish(entry).await.map_err(Arc::new);
        if written.is_ok() {
            backlog.record_entry(events);
            metrics.grouped_entry_events.observe(f64::from(events));
        }
        for waiting in group.drain(..) {
            // A request whose client left no longer waits: nothing to tell.
            let _ = waiting.reply.send(written.clone());
        }
    }
}
