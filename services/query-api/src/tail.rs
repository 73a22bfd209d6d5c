//! `GET /v1/tail?service=…`: new events as Server-Sent Events, read from the
//! ingest streams with plain `XREAD BLOCK` (never the consumer group, so a
//! tail takes nothing from the workers).
//!
//! Each tail has its own task and its own Redis connection (a blocking read
//! would stall anyone sharing the connection). On a Redis Cluster one
//! `XREAD` cannot span the shards' slots, so each shard has a reading task
//! of the tail's own, with a connection of its own to the shard's master,
//! feeding the tail's task. A tail holds one of `MAX_TAILS`
//! permits and one of its API key's `MAX_TAILS_PER_KEY`. The task ends when the client goes away (its channel closes),
//! at shutdown, or when Redis fails; the stream's first comment
//! (`: connected`) is sent only once the starting positions are known, so
//! every event added after it reaches the client. Between events, the SSE
//! keep-alive sends a `: heartbeat` comment every `TAIL_HEARTBEAT_MS`.
//!
//! Resuming: each event's SSE `id` is the tail's position in every shard
//! (the shards' last entry ids, comma-separated, in shard order; with one
//! shard, the entry id). A client that reconnects with `Last-Event-ID` (as
//! `EventSource` does by itself) continues after it. The streams keep only
//! what the workers have not yet acked and trimmed (seconds), so when
//! entries after that position may have been trimmed, the tail first sends
//! an `event: gap` naming the shards and the time from which events may be
//! missing; `GET /v1/events` has them. An id that is not one of ours (or
//! from another shard count) starts the tail at the present, as a new one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eventline_shared::EnrichedEvent;
use eventline_shared::api_key::Authenticated;
use eventline_shared::redis_pool::RedisConn;
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION};
use eventline_shared::stream_reply::StreamId;
use eventline_shared::stream_stats;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Value};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::app::{AppState, Shared};
use crate::error::ApiError;
use crate::events::EventOut;
use crate::params::Params;

/// How long one `XREAD` blocks; shutdown and a gone client interrupt it.
const BLOCK: Duration = Duration::from_secs(5);
/// Most entries one `XREAD` returns per shard.
const READ_COUNT: usize = 200;
/// On a Redis Cluster: what a shard's reading task hands the tail.
type ShardReply = redis::RedisResult<StreamReadReply>;

/// `GET /v1/tail`.
pub async fn tail(
    State(state): State<Shared>,
    identity: Option<Extension<Arc<Authenticated>>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["service"], false)?;
    let services = params.services(&state.query.limits())?;
    let key_slot = match identity {
        Some(Extension(identity)) => Some(KeySlot::take(&state, identity.key_id)?),
        None => None,
    };
    let permit = state
        .tails
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyTails)?;
    let mut conn = connect(&state).await?;
    let streams: Vec<String> = (0..state.shards).map(|s| state.keys.stream(s)).collect();
    let (positions, gaps) = start_positions(&mut conn, &streams, &headers).await?;
    let (tx, rx) = mpsc::channel::<Event>(64);
    // Cannot fail: the channel is new and has room for both.
    let _ = tx.try_send(Event::default().comment("connected"));
    if !gaps.is_empty() {
        let data = json!({ "streams": gaps }).to_string();
        let _ = tx.try_send(Event::default().event("gap").data(data));
    }
    let shards = state.redis.is_cluster().then(|| {
        let (tx, rx) = mpsc::channel(streams.len() * 2);
        let stop = CancellationToken::new();
        for (stream, position) in streams.iter().zip(&positions) {
            state.tasks.spawn(read_shard(
                state.clone(),
                stream.clone(),
                position.clone(),
                tx.clone(),
                stop.clone(),
            ));
        }
        ShardReaders {
            replies: rx,
            _stop: stop.drop_guard(),
        }
    });
    let reader = Reader {
        state: state.clone(),
        services,
        streams,
        positions,
        conn,
        shards,
        tx,
        _permit: permit,
        _key_slot: key_slot,
    };
    state.tasks.spawn(reader.run());
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(state.query.tail_heartbeat)
                .text("heartbeat"),
        )
        .into_response())
}

/// Where the tail starts in each of `streams`: after the `Last-Event-ID`
/// the client resumes from, or after each stream's newest entry. With the
/// shards where entries after a resumed position may have been trimmed
/// (the `gap` event's list).
async fn start_positions(
    conn: &mut RedisConn,
    streams: &[String],
    headers: &HeaderMap,
) -> Result<(Vec<String>, Vec<serde_json::Value>), ApiError> {
    let mut positions = Vec::with_capacity(streams.len());
    let mut gaps = Vec::new();
    match resume_positions(headers, streams.len()) {
        Some(resume) => {
            for (stream, after) in streams.iter().zip(resume) {
                let lost = stream_stats::entries_lost_after(conn, stream, after)
                    .await
                    .map_err(ApiError::from_redis)?;
                if lost {
                    gaps.push(json!({
                        "stream": stream,
                        "after": after.to_string(),
                        // The entry after `after` was added no earlier.
                        "missing_from": after
                            .time()
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    }));
                }
                positions.push(after.to_string());
            }
        }
        None => {
            // After each stream's newest entry (`0-0` when it is empty):
            // exactly what is added from now on.
            for stream in streams {
                let newest = stream_stats::newest_id(conn, stream)
                    .await
                    .map_err(ApiError::from_redis)?;
                positions.push(newest.unwrap_or_else(|| "0-0".to_owned()));
            }
        }
    }
    Ok((positions, gaps))
}

/// The positions a `Last-Event-ID` names, one per shard; None when there is
/// none or it is not an id this tail wrote for `shards` shards.
fn resume_positions(headers: &HeaderMap, shards: usize) -> Option<Vec<StreamId>> {
    let text = headers.get("last-event-id")?.to_str().ok()?;
    let ids: Option<Vec<StreamId>> = text.split(',').map(|p| StreamId::parse(p.trim())).collect();
    ids.filter(|ids| ids.len() == shards)
}

/// On one server, a connection of the tail's own, whose answers may take
/// the whole block; on a cluster, the shared one, for the starting
/// positions (the shards' own tasks read).
async fn connect(state: &AppState) -> Result<RedisConn, ApiError> {
    if state.redis.is_cluster() {
        return state.redis.get().await.map_err(ApiError::from_redis);
    }
    let args = &state.redis_args;
    let client = redis::Client::open(args.redis_url.expose()).map_err(ApiError::from_redis)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(args.redis_timeout))
        .set_response_timeout(Some(BLOCK + args.redis_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map(RedisConn::Multiplexed)
        .map_err(ApiError::from_redis)
}

/// The tail's shard readers (a cluster): their replies, and what stops
/// them when the tail ends.
struct ShardReaders {
    replies: mpsc::Receiver<ShardReply>,
    _stop: DropGuard,
}

/// On a cluster: reads `stream` after `position` with `XREAD BLOCK` on a
/// connection of its own to the stream's master, and hands each reply to
/// the tail, until the tail stops it or goes away. A failure (a failover's
/// `MOVED`, an I/O error) is handed on and ends it: the tail ends, and its
/// client resumes with `Last-Event-ID`.
async fn read_shard(
    state: Shared,
    stream: String,
    mut position: String,
    tx: mpsc::Sender<ShardReply>,
    stop: CancellationToken,
) {
    let timeout = BLOCK + state.redis_args.redis_timeout;
    let read = async {
        let mut conn = state
            .redis
            .connection_for_key(&state.redis_args, stream.as_bytes(), timeout)
            .await?;
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&position)
                .query_async(&mut conn)
                .await?;
            let Some(reply) = reply else { continue };
            let last = reply.keys.iter().flat_map(|k| k.ids.last()).next_back();
            if let Some(last) = last {
                position.clone_from(&last.id);
            }
            if tx.send(Ok(reply)).await.is_err() {
                return Ok(());
            }
        }
    };
    let result: redis::RedisResult<()> = tokio::select! {
        result = read => result,
        () = stop.cancelled() => Ok(()),
        () = state.shutdown.cancelled() => Ok(()),
    };
    if let Err(error) = result {
        let _ = tx.send(Err(error)).await;
    }
}

struct Reader {
    state: Shared,
    /// Empty: every service.
    services: Vec<String>,
    streams: Vec<String>,
    /// The last id read from each stream.
    positions: Vec<String>,
    conn: RedisConn,
    /// On a cluster, the shards' reading tasks.
    shards: Option<ShardReaders>,
    tx: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
    _key_slot: Option<KeySlot>,
}

impl Reader {
    /// Runs the tail until its client leaves, shutdown, a Redis failure, or
    /// `TAIL_MAX_SECONDS`; then its last word is an `event: end` (the client
    /// reconnects with `Last-Event-ID` and loses nothing the streams hold).
    /// The lifetime bounds how long a client that stopped reading, with its
    /// connection still open, can hold a tail's places.
    async fn run(self) {
        let open = OpenTail::new(&self.state);
        let lifetime = self.state.query.tail_max_lifetime;
        let tx = self.tx.clone();
        if tokio::time::timeout(lifetime, self.follow()).await.is_err() {
            let _ = tx.try_send(
                Event::default()
                    .event("end")
                    .data("this tail reached TAIL_MAX_SECONDS; reconnect with Last-Event-ID"),
            );
        }
        drop(open);
    }

    async fn follow(mut self) {
        let shutdown = self.state.shutdown.clone();
        let client = self.tx.clone();
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => break,
                () = client.closed() => break,
                read = self.read() => read,
            };
            let reply = match read {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(%error, "tail: XREAD failed; ending the tail");
                    // Best effort: a client that does not read gets no more.
                    let _ = self
                        .tx
                        .try_send(Event::default().event("error").data("redis unavailable"));
                    break;
                }
            };
            if !self.forward(reply).await {
                break;
            }
        }
    }

    async fn read(&mut self) -> redis::RedisResult<Option<StreamReadReply>> {
        if let Some(shards) = &mut self.shards {
            return match shards.replies.recv().await {
                Some(reply) => reply.map(Some),
                None => Err(redis::RedisError::from(std::io::Error::other(
                    "the shards' readers stopped",
                ))),
            };
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.streams)
            .arg(&self.positions);
        cmd.query_async(&mut self.conn).await
    }

    /// Sends the reply's events that pass the filter; false when the client
    /// is gone.
    async fn forward(&mut self, reply: Option<StreamReadReply>) -> bool {
        let Some(reply) = reply else {
            return true;
        };
        for key in reply.keys {
            let Some(shard) = self.streams.iter().position(|s| *s == key.key) else {
                continue;
            };
            for entry in key.ids {
                self.positions[shard].clone_from(&entry.id);
                let field = |name| match entry.map.get(name) {
                    Some(Value::BulkString(b)) => Some(b.as_slice()),
                    _ => None,
                };
                let events = match stream_codec::decode(field(FIELD_VERSION), field(FIELD_EVENT)) {
                    Ok(events) => events,
                    Err(error) => {
                        tracing::debug!(%error, id = entry.id, "tail: skipping an undecodable entry");
                        continue;
                    }
                };
                // A request's events share its entry's position: a client
                // that reconnects resumes after the whole entry.
                for event in events {
                    if !self.send(event).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Sends `event` when it passes the filter; false when the client is gone.
    async fn send(&mut self, event: EnrichedEvent) -> bool {
        if !self.services.is_empty() && !self.services.contains(&event.service) {
            return true;
        }
        let out = EventOut::from_stream(event);
        let Ok(data) = serde_json::to_string(&out) else {
            return true;
        };
        let sse = Event::default()
            .event("event")
            .id(self.positions.join(","))
            .data(data);
        // A client that stops reading fills the channel; shutdown must not
        // wait for it.
        tokio::select! {
            sent = self.tx.send(sse) => sent.is_ok(),
            () = self.state.shutdown.cancelled() => false,
        }
    }
}

/// One of an API key's `MAX_TAILS_PER_KEY` tails, given back on drop.
struct KeySlot {
    state: Shared,
    key: Uuid,
}

impl KeySlot {
    fn take(state: &Shared, key: Uuid) -> Result<Self, ApiError> {
        let max = state.query.max_tails_per_key;
        let mut open = state
            .tails_per_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return Err(ApiError::TooManyTailsForKey(max));
        }
        *count += 1;
        Ok(KeySlot {
            state: state.clone(),
            key,
        })
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut open = self
            .state
            .tails_per_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Counts the tail in `eventline_query_tails_open` while it lives.
struct OpenTail(Arc<crate::metrics::Metrics>);

impl OpenTail {
    fn new(state: &AppState) -> Self {
        state.metrics.tails_open.inc();
        OpenTail(state.metrics.clone())
    }
}

impl Drop for OpenTail {
    fn drop(&mut self) {
        self.0.tails_open.dec();
    }
}
