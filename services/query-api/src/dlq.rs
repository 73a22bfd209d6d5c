//! `GET /v1/dlq` and `POST /v1/dlq/replay`: the dead letters the workers set
//! aside (`events:dlq`), and putting them back on the ingest stream.
//!
//! On a Redis Cluster each shard has its own dead-letter stream in its
//! slot (ADR 0060): a letter's id is then `<shard>:<entry id>`, the list
//! merges the shards' letters oldest first, and a letter is replayed to its
//! own shard (the one script must stay in one slot). On one server an id
//! is the entry id, and a letter goes back to its event's shard.
//!
//! Invariant: a replay is atomic per entry (one Lua script): the dead letter
//! still exists, its event goes back on its shard as a *new* entry with the
//! original `v`/`e` fields, and the dead letter is deleted — all or nothing.
//! The new entry has a new id; the old entry's dedup claim, if the event had
//! one, was released by the worker when it dead-lettered the event (the
//! contract's step 6), so the new entry claims afresh. A claim taken since
//! by a *different* entry (a client retry that was stored) makes the
//! replay a duplicate, not a second row.
//! An entry whose event cannot be decoded is not replayed (the worker would
//! only dead-letter it again) and stays in the DLQ for inspection.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use eventline_shared::EnrichedEvent;
use eventline_shared::redis_keys::shard_of;
use eventline_shared::redis_pool::{self, RedisConn};
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION};
use eventline_shared::stream_stats;
use redis::Value;
use redis::streams::{StreamId, StreamRangeReply};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{AppState, Shared};
use crate::error::ApiError;
use crate::params::Params;

/// Default and largest page of `GET /v1/dlq`.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
/// Most ids in one replay request.
const MAX_REPLAY_IDS: usize = 1000;

/// KEYS: the DLQ, the target stream. ARGV: the dead letter's id, `v`, `e`.
/// The dead event's dedup claim, if it had one, was released by the worker
/// when it wrote the letter, so the replayed entry claims afresh (and is a
/// duplicate if a client retry stored the event meanwhile).
const REPLAY_SCRIPT: &str = r"
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', 'v', ARGV[2], 'e', ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
";

async fn conn(state: &AppState) -> Result<RedisConn, ApiError> {
    state.redis.get().await.map_err(ApiError::from_redis)
}

/// The dead-letter streams, in shard order (one on one server).
fn dlqs(state: &AppState) -> Vec<String> {
    state.keys.dlqs(state.shards)
}

/// Entries in the DLQ (every shard's).
pub async fn length(state: &AppState) -> Result<u64, ApiError> {
    let conn = conn(state).await?;
    let pipes: Vec<redis::Pipeline> = dlqs(state)
        .into_iter()
        .map(|dlq| {
            let mut pipe = redis::pipe();
            pipe.cmd("XLEN").arg(dlq);
            pipe
        })
        .collect();
    let lengths: Vec<(u64,)> = redis_pool::query_each(&conn, &pipes)
        .await
        .map_err(ApiError::from_redis)?;
    Ok(lengths.iter().map(|(len,)| len).sum())
}

/// A dead letter's id: which dead-letter stream, and the entry there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LetterId {
    /// Ordered by entry first, so letters sort oldest first across shards.
    entry: (u64, u64),
    dlq: usize,
}

impl LetterId {
    /// `<ms>-<seq>` (the first dead-letter stream) or `<shard>:<ms>-<seq>`.
    fn parse(text: &str, dlqs: usize) -> Option<Self> {
        let (dlq, id) = match text.split_once(':') {
            Some((dlq, id)) if dlq.len() <= 4 && dlq.bytes().all(|b| b.is_ascii_digit()) => {
                (dlq.parse().ok()?, id)
            }
            Some(_) => return None,
            None => (0, text),
        };
        if dlq >= dlqs || !valid_entry_id(id) {
            return None;
        }
        let (ms, seq) = id.split_once('-')?;
        Some(LetterId {
            entry: (ms.parse().ok()?, seq.parse().ok()?),
            dlq,
        })
    }

    fn entry_id(&self) -> String {
        format!("{}-{}", self.entry.0, self.entry.1)
    }

    /// As the API shows it: the entry id alone when there is one stream.
    fn display(&self, dlqs: usize) -> String {
        if dlqs == 1 {
            self.entry_id()
        } else {
            format!("{}:{}", self.dlq, self.entry_id())
        }
    }
}

fn text(entry: &StreamId, field: &str) -> Option<String> {
    match entry.map.get(field)? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn raw<'a>(entry: &'a StreamId, field: &str) -> Option<&'a [u8]> {
    match entry.map.get(field)? {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

/// The letter's event. The worker dead-letters events one by one, so a
/// letter that decodes holds one; an entry of several (written by hand)
/// is shown as not replayable rather than replayed in part.
fn decode(entry: &StreamId) -> Result<EnrichedEvent, String> {
    let mut events = stream_codec::decode(raw(entry, FIELD_VERSION), raw(entry, FIELD_EVENT))
        .map_err(|e| e.to_string())?;
    match events.len() {
        1 => Ok(events.remove(0)),
        n => Err(format!(
            "the entry holds {n} events; a dead letter holds one"
        )),
    }
}

/// A stream entry id, `<ms>-<seq>`.
fn valid_entry_id(id: &str) -> bool {
    let mut parts = id.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(ms), Some(seq), None)
            if !ms.is_empty() && !seq.is_empty() && ms.len() <= 20 && seq.len() <= 20
                && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    )
}

#[derive(Serialize)]
struct DeadLetterOut {
    id: String,
    reason: Option<String>,
    error: Option<String>,
    first_failure: Option<String>,
    last_failure: Option<String>,
    deliveries: Option<u64>,
    source_stream: Option<String>,
    source_id: Option<String>,
    /// The event, when the entry decodes.
    event: Option<serde_json::Value>,
    /// Why the entry does not decode (it cannot be replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    decode_error: Option<String>,
}

fn event_json(event: &EnrichedEvent) -> serde_json::Value {
    let metadata = event
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok());
    json!({
        "id": event.id,
        "service": event.service,
        "message": event.message,
        "timestamp": event.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "ingested_at": event.ingested_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "event_id": event.event_id,
        "metadata": metadata,
        "request_id": event.request_id,
    })
}

fn describe(id: String, entry: &StreamId) -> DeadLetterOut {
    let (event, decode_error) = match decode(entry) {
        Ok(event) => (Some(event_json(&event)), None),
        Err(e) => (None, Some(e)),
    };
    DeadLetterOut {
        id,
        reason: text(entry, "reason"),
        error: text(entry, "error"),
        first_failure: text(entry, "first_failure"),
        last_failure: text(entry, "last_failure"),
        deliveries: text(entry, "deliveries").and_then(|d| d.parse().ok()),
        source_stream: text(entry, "source_stream"),
        source_id: text(entry, "source_id"),
        event,
        decode_error,
    }
}

/// Up to `count` entries of dead-letter stream `dlq` from `start` (an
/// `XRANGE` bound: `-`, `<id>`, or `(<id>` for after it) up to `until`
/// (inclusive; `+` for the end), oldest first.
async fn range(
    state: &AppState,
    dlq: &str,
    start: &str,
    until: &str,
    count: usize,
) -> Result<Vec<StreamId>, ApiError> {
    let mut conn = conn(state).await?;
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(dlq)
        .arg(start)
        .arg(until)
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await
        .map_err(ApiError::from_redis)?;
    Ok(reply.ids)
}

/// Up to `count` letters after `after` across every dead-letter stream,
/// oldest first (ties in shard order).
async fn merged_page(
    state: &AppState,
    after: Option<&LetterId>,
    count: usize,
) -> Result<Vec<(LetterId, StreamId)>, ApiError> {
    let mut letters = Vec::new();
    for (i, dlq) in dlqs(state).iter().enumerate() {
        // Past the cursor: after its entry in its own and earlier streams,
        // from its entry on in later ones (the order is entry, then stream).
        let start = match after {
            None => "-".to_owned(),
            Some(c) if i <= c.dlq => format!("({}", c.entry_id()),
            Some(c) => c.entry_id(),
        };
        for entry in range(state, dlq, &start, "+", count).await? {
            if let Some(id) = LetterId::parse(&entry.id, usize::MAX) {
                letters.push((LetterId { dlq: i, ..id }, entry));
            }
        }
    }
    letters.sort_by(|a, b| a.0.cmp(&b.0));
    letters.truncate(count);
    Ok(letters)
}

/// `GET /v1/dlq?limit=&cursor=`: dead letters, oldest first, with why they
/// failed and the event when it decodes.
pub async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    params.only(&["limit", "cursor"], false)?;
    let limit = params
        .number("limit", 1..=MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT) as usize;
    let streams = dlqs(&state).len();
    let cursor = match params.single("cursor")? {
        Some(c) => Some(LetterId::parse(c, streams).ok_or_else(|| {
            ApiError::bad(
                "invalid_cursor",
                "cursor",
                "`cursor` is a dead letter id such as 1764000000000-0",
            )
        })?),
        None => None,
    };
    let mut entries = merged_page(&state, cursor.as_ref(), limit + 1).await?;
    let next_cursor = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|(id, _)| id.display(streams))
    } else {
        None
    };
    let total = length(&state).await?;
    state
        .metrics
        .rows_returned
        .with_label_values(&["/v1/dlq"])
        .observe(entries.len() as f64);
    let entries: Vec<DeadLetterOut> = entries
        .iter()
        .map(|(id, entry)| describe(id.display(streams), entry))
        .collect();
    Ok(Json(json!({
        "entries": entries,
        "next_cursor": next_cursor,
        "total": total,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

#[derive(Serialize, Default)]
struct ReplayOutcome {
    /// Dead letter id → the new entry's id on the ingest stream.
    replayed: Vec<Replayed>,
    /// Entries left in the DLQ because their event cannot be decoded.
    not_replayable: Vec<NotReplayable>,
    /// Ids asked for that are not (or no longer) in the DLQ.
    not_found: Vec<String>,
    /// With `all`: whether entries remain beyond `MAX_REPLAY`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
struct Replayed {
    id: String,
    stream: String,
    new_id: String,
}

#[derive(Serialize)]
struct NotReplayable {
    id: String,
    error: String,
}

fn parse_replay(body: &[u8]) -> Result<ReplayRequest, ApiError> {
    let request: ReplayRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            "invalid_json",
            "body",
            format!("the body must be {{\"ids\":[…]}} or {{\"all\":true}}: {e}"),
        )
    })?;
    match (&request.ids, request.all) {
        (Some(_), true) | (None, false) => Err(ApiError::bad(
            "invalid_replay",
            "ids",
            "give either `ids` (a list of dead letter ids) or `\"all\": true`",
        )),
        (Some(ids), false) => {
            if ids.is_empty() || ids.len() > MAX_REPLAY_IDS {
                return Err(ApiError::bad(
                    "invalid_replay",
                    "ids",
                    format!("`ids` holds 1-{MAX_REPLAY_IDS} ids"),
                ));
            }
            Ok(request)
        }
        (None, true) => Ok(request),
    }
}

/// `POST /v1/dlq/replay` with `{"ids":[…]}` or `{"all":true}`.
pub async fn replay(State(state): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let request = parse_replay(&body)?;
    let dlqs = dlqs(&state);
    let mut outcome = ReplayOutcome::default();
    match request.ids {
        Some(ids) => {
            let letters: Vec<LetterId> = ids
                .iter()
                .map(|id| LetterId::parse(id, dlqs.len()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalid_replay",
                        "ids",
                        "a dead letter id looks like 1764000000000-0 (on a cluster, 2:1764000000000-0)",
                    )
                })?;
            for (letter, id) in letters.iter().zip(ids) {
                let entry_id = letter.entry_id();
                let dlq = &dlqs[letter.dlq];
                let entries = range(&state, dlq, &entry_id, &entry_id, 1).await?;
                match entries.first() {
                    Some(entry) => {
                        replay_entry(&state, letter, entry, &mut outcome).await?;
                    }
                    None => outcome.not_found.push(id),
                }
            }
        }
        None => {
            let mut handled = 0;
            for (i, dlq) in dlqs.iter().enumerate() {
                if !replay_all(&state, i, dlq, &mut handled, &mut outcome).await? {
                    outcome.truncated = true;
                    break;
                }
            }
        }
    }
    Ok(respond(&state, outcome))
}

/// Replays dead-letter stream `dlq` (the `index`-th) up to its newest
/// letter when the request came, and no more: an event that fails again
/// while this runs comes back as a new, later entry, and replaying it again
/// in the same request would churn it up to MAX_REPLAY times. False when
/// `MAX_REPLAY` letters were handled (`handled` counts across streams)
/// before the end.
async fn replay_all(
    state: &AppState,
    index: usize,
    dlq: &str,
    handled: &mut usize,
    outcome: &mut ReplayOutcome,
) -> Result<bool, ApiError> {
    let newest = stream_stats::newest_id(&mut conn(state).await?, dlq)
        .await
        .map_err(ApiError::from_redis)?;
    let Some(last) = newest else {
        return Ok(true);
    };
    let mut start = "-".to_owned();
    loop {
        let page = range(state, dlq, &start, &last, 100).await?;
        if page.is_empty() {
            return Ok(true);
        }
        for entry in &page {
            if *handled == state.query.max_replay {
                return Ok(false);
            }
            let Some(letter) = LetterId::parse(&entry.id, usize::MAX) else {
                continue;
            };
            let letter = LetterId {
                dlq: index,
                ..letter
            };
            replay_entry(state, &letter, entry, outcome).await?;
            *handled += 1;
        }
        if let Some(entry) = page.last() {
            start = format!("({}", entry.id);
        }
    }
}

/// Counts and logs the outcome of a replay, and answers it.
fn respond(state: &AppState, outcome: ReplayOutcome) -> Response {
    let m = &state.metrics.dlq_replayed;
    m.with_label_values(&["replayed"])
        .inc_by(outcome.replayed.len() as u64);
    m.with_label_values(&["undecodable"])
        .inc_by(outcome.not_replayable.len() as u64);
    m.with_label_values(&["not_found"])
        .inc_by(outcome.not_found.len() as u64);
    tracing::info!(
        replayed = outcome.replayed.len(),
        not_replayable = outcome.not_replayable.len(),
        not_found = outcome.not_found.len(),
        "dead letters replayed"
    );
    Json(outcome).into_response()
}

async fn replay_entry(
    state: &AppState,
    letter: &LetterId,
    entry: &StreamId,
    outcome: &mut ReplayOutcome,
) -> Result<(), ApiError> {
    let dlqs = dlqs(state);
    let id = letter.display(dlqs.len());
    let event = match decode(entry) {
        Ok(event) => event,
        Err(e) => {
            outcome.not_replayable.push(NotReplayable { id, error: e });
            return Ok(());
        }
    };
    let (Some(version), Some(payload)) = (raw(entry, FIELD_VERSION), raw(entry, FIELD_EVENT))
    else {
        // decode() succeeded, so both fields exist.
        return Ok(());
    };
    // One server: the event's own shard. A cluster: the letter's shard,
    // whose stream shares the dead-letter stream's slot.
    let shard = if dlqs.len() == 1 {
        shard_of(event.dedup_key(), state.shards)
    } else {
        letter.dlq as u32
    };
    let stream = state.keys.stream(shard);
    let mut conn = conn(state).await?;
    let new_id: Option<String> = redis::Script::new(REPLAY_SCRIPT)
        .key(&dlqs[letter.dlq])
        .key(&stream)
        .arg(&entry.id)
        .arg(version)
        .arg(payload)
        .invoke_async(&mut conn)
        .await
        .map_err(ApiError::from_redis)?;
    match new_id {
        Some(new_id) => outcome.replayed.push(Replayed { id, stream, new_id }),
        // Replayed or deleted by someone else since we read it.
        None => outcome.not_found.push(id),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids() {
        assert!(valid_entry_id("1764000000000-0"));
        assert!(!valid_entry_id("1764000000000"));
        assert!(!valid_entry_id("-0"));
        assert!(!valid_entry_id("1-2-3"));
        assert!(!valid_entry_id("a-1"));
    }

    #[test]
    fn letter_ids_name_their_stream_and_sort_oldest_first() {
        let plain = LetterId::parse("1764000000000-3", 1).unwrap();
        assert_eq!((plain.dlq, plain.entry), (0, (1_764_000_000_000, 3)));
        assert_eq!(plain.display(1), "1764000000000-3");
        let sharded = LetterId::parse("2:1764000000000-3", 3).unwrap();
        assert_eq!(sharded.display(3), "2:1764000000000-3");
        assert!(LetterId::parse("3:1-0", 3).is_none(), "no fourth stream");
        assert!(LetterId::parse("1:1-0", 1).is_none());
        for bad in ["x", "a:1-0", "1:x", ":1-0", "99999:1-0"] {
            assert!(LetterId::parse(bad, 8).is_none(), "{bad}");
        }
        let older = LetterId::parse("2:5-0", 3).unwrap();
        let newer = LetterId::parse("0:6-0", 3).unwrap();
        let tie = LetterId::parse("1:5-0", 3).unwrap();
        let mut ids = vec![newer.clone(), older.clone(), tie.clone()];
        ids.sort();
        assert_eq!(ids, [tie, older, newer]);
    }

    #[test]
    fn replay_requests() {
        assert!(parse_replay(br#"{"all":true}"#).is_ok());
        assert!(parse_replay(br#"{"ids":["1-0"]}"#).is_ok());
        for bad in [
            &br#"{}"#[..],
            br#"{"all":false}"#,
            br#"{"ids":[]}"#,
            br#"{"ids":["1-0"],"all":true}"#,
            br#"{"id":["1-0"]}"#,
            b"not json",
        ] {
            assert!(
                parse_replay(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
