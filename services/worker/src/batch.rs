//! One batch through steps 2–6 of the delivery protocol: decode, claim the
//! dedup keys, insert (bisecting around rows PostgreSQL refuses), dead-letter
//! what cannot be stored, and only then `XACK`. An entry holds one event
//! (format 1) or a request's events (format 2); each event goes through the
//! steps on its own, and the entry is acked once all of them are through.
//!
//! Invariant: an entry is acked only once each of its events is stored
//! (committed), known to be a duplicate of an entry that holds its dedup
//! claim, or written to the dead-letter stream. Transient failures are retried here until they
//! pass, never acked around; when the worker is stopping, a failing step
//! gives up instead and leaves the whole batch pending, for another worker
//! to claim (redelivery is safe at every step: claims are held by entry id,
//! inserts of redeliveries are guarded).

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventline_shared::redis_keys::CONSUMER_GROUP;
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION};
use tokio::time::Instant;
use uuid::Uuid;

use crate::batch_insert::{self, InsertError, Inserted};
use crate::copy_binary::EventRow;
use crate::dead_letter::{self, DeadLetter};
use crate::dedup::{self, Claim};
use crate::metrics::DeadLetterReason;
use crate::retry::Backoff;
use crate::stream_reply::{Entry, StreamId};
use crate::{State, failpoint};

/// Whether a batch (or a part of one) may hold rows already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Every row's dedup key was just claimed (`SET NX` found it free), so
    /// none should exist: `COPY` it ([`batch_insert::insert_fresh`]).
    Fresh,
    /// Some row is a redelivery of our own claim, whose earlier delivery may
    /// have committed it: the guarded path only ([`batch_insert::insert`]).
    MayExist,
}

/// Entries read from one shard, to be processed together.
pub struct Batch {
    pub stream: String,
    pub entries: Vec<Entry>,
}

/// Events and entries to move to the dead-letter stream, with why: what
/// the steps decided cannot be stored. Everything else of the batch is
/// stored or a duplicate by the time it is acked.
type Letters<'a> = Vec<DeadLetter<'a>>;

/// The rows whose dedup claims this batch holds, ready for the insert.
struct Claimed<'a> {
    rows: Vec<EventRow<'a>>,
    /// For each row, the index of the entry it came from.
    row_entry: Vec<usize>,
    kind: Rows,
}

/// Processes `batch` to the end: every entry is acked when this returns,
/// unless the process stops first.
pub async fn process(state: &State, batch: Batch) {
    let Batch { stream, entries } = batch;
    let started = Utc::now();
    let heartbeat = Heartbeat::new(state, &stream, &entries);
    if run_steps(state, &heartbeat, &stream, &entries, started)
        .await
        .is_none()
    {
        left_pending(&stream, entries.len());
    }
}

/// Steps 2–6 in order; `None` when the worker stopped while one kept failing.
async fn run_steps(
    state: &State,
    heartbeat: &Heartbeat<'_>,
    stream: &str,
    entries: &[Entry],
    started: DateTime<Utc>,
) -> Option<()> {
    let mut letters = Letters::new();
    let decoded = decode(state, stream, entries, started, &mut letters);
    state.metrics.batch_size.observe(decoded.len() as f64);

    // Step 2: the dedup claims.
    let claimed = claim(state, entries, decoded).await?;
    failpoint::hit("after_claim");

    // Step 3: the insert; rows PostgreSQL refuses come back one by one.
    let refused = insert_bisecting(state, heartbeat, &claimed.rows, claimed.kind).await?;
    failpoint::hit("after_commit");
    sort_inserted(stream, entries, &claimed, refused, started, &mut letters);

    // Step 6: dead letters before their acks.
    dead_letter_all(state, stream, &letters).await?;

    // Step 4: XACK, only now: every event of every entry is through.
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    xack(state, stream, &ids).await
}

/// Decodes the entries' events that can still be stored; the rest go to
/// `letters` (over `MAX_DELIVERIES`: each event, or the entry when it does
/// not decode; undecodable: the entry). Entries deleted from the stream
/// hold nothing left to store. Returns each decoded event with its entry's
/// index.
fn decode<'a>(
    state: &State,
    stream: &str,
    entries: &'a [Entry],
    started: DateTime<Utc>,
    letters: &mut Letters<'a>,
) -> Vec<(usize, EventRow<'a>)> {
    let mut decoded = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.deliveries > 1 {
            state.metrics.redeliveries.inc();
        }
        if entry.is_deleted() {
            tracing::warn!(
                stream,
                id = entry.id,
                "pending entry no longer in the stream; acking it"
            );
            continue;
        }
        let events = stream_codec::decode_ref(entry.field(FIELD_VERSION), entry.field(FIELD_EVENT));
        if entry.deliveries > state.config.max_deliveries {
            let letter = |event| DeadLetter {
                entry,
                event,
                reason: DeadLetterReason::MaxDeliveries,
                error: format!(
                    "delivered {} times (MAX_DELIVERIES is {})",
                    entry.deliveries, state.config.max_deliveries
                ),
                first_failure: StreamId::parse(&entry.id)
                    .and_then(StreamId::time)
                    .unwrap_or(started),
            };
            match events {
                Ok(events) => letters.extend(events.into_iter().map(|e| letter(Some(e)))),
                Err(_) => letters.push(letter(None)),
            }
            continue;
        }
        match events {
            Ok(events) => decoded.extend(events.into_iter().map(|e| (i, EventRow::new(e)))),
            Err(e) => letters.push(DeadLetter {
                entry,
                event: None,
                reason: DeadLetterReason::Decode,
                error: e.to_string(),
                first_failure: started,
            }),
        }
    }
    decoded
}

/// Step 2: claims the dedup keys of the decoded rows that have a client
/// `event_id`, each for its entry. A key that an earlier row of the batch
/// has is a duplicate without asking Redis: the earlier row is stored or is
/// itself a duplicate, and the claim, made for an entry, could not tell two
/// events of one entry apart (the gateway's grouped entries may hold two
/// single-event requests with the same `event_id`; ADR 0002). Duplicates of
/// an entry that holds the claim are left out; the rest are kept for the
/// insert. A row without an `event_id` claims nothing: it is new when its
/// entry is delivered for the first time, and may be stored already when
/// the entry is redelivered. `None` when the worker stopped while Redis kept
/// failing.
async fn claim<'a>(
    state: &State,
    entries: &'a [Entry],
    decoded: Vec<(usize, EventRow<'a>)>,
) -> Option<Claimed<'a>> {
    let mut seen = HashSet::with_capacity(decoded.len());
    // Per row: whether it has a client `event_id` seen earlier in the batch.
    let repeated: Vec<bool> = decoded
        .iter()
        .map(|(_, row)| row.event.event_id.is_some() && !seen.insert(row.dedup_key))
        .collect();
    let keys: Vec<_> = decoded
        .iter()
        .zip(&repeated)
        .filter(|((_, row), repeated)| row.event.event_id.is_some() && !**repeated)
        .map(|((i, row), _)| (row.dedup_key, entries[*i].id.as_str()))
        .collect();
    let mut claims = redis_retrying(state, "dedup claim", || dedup::claim(state, &keys))
        .await?
        .into_iter();
    let mut claimed = Claimed {
        rows: Vec::with_capacity(decoded.len()),
        row_entry: Vec::with_capacity(decoded.len()),
        // Fresh unless some row is a redelivery of our own claim, whose
        // earlier delivery may have committed it.
        kind: if state.config.copy_fresh_batches {
            Rows::Fresh
        } else {
            Rows::MayExist
        },
    };
    for ((i, row), repeated) in decoded.into_iter().zip(repeated) {
        let claim = if repeated {
            Claim::Duplicate
        } else if row.event.event_id.is_some() {
            // One answer per keyed row, in order.
            claims.next().unwrap_or(Claim::OwnRedelivery)
        } else if entries[i].deliveries > 1 {
            Claim::OwnRedelivery
        } else {
            Claim::Claimed
        };
        match claim {
            Claim::Duplicate => state.metrics.duplicates_claim.inc(),
            Claim::OwnRedelivery | Claim::Claimed => {
                if claim == Claim::OwnRedelivery {
                    claimed.kind = Rows::MayExist;
                    if entries[i].deliveries <= 1 {
                        state.metrics.redeliveries.inc();
                    }
                }
                claimed.row_entry.push(i);
                claimed.rows.push(row);
            }
        }
    }
    Some(claimed)
}

/// After the insert: refused rows become dead letters, each on its own.
fn sort_inserted<'a>(
    stream: &str,
    entries: &'a [Entry],
    claimed: &Claimed<'a>,
    refused: Vec<(usize, String)>,
    started: DateTime<Utc>,
    letters: &mut Letters<'a>,
) {
    let Claimed {
        rows, row_entry, ..
    } = claimed;
    for (r, error) in refused {
        let entry = &entries[row_entry[r]];
        tracing::warn!(
            stream,
            id = entry.id,
            request_id = rows[r].event.request_id,
            error,
            "event refused by PostgreSQL; dead-lettering it"
        );
        letters.push(DeadLetter {
            entry,
            event: Some(rows[r].event),
            reason: DeadLetterReason::Data,
            error,
            first_failure: started,
        });
    }
}

/// Step 6: writes the dead letters, then releases the claims of the dead
/// events that have an `event_id` (not stored, so a later retry or a replay
/// of the same event must be able to claim). `None` when the worker stopped
/// while Redis kept failing.
async fn dead_letter_all(state: &State, stream: &str, letters: &Letters<'_>) -> Option<()> {
    if letters.is_empty() {
        return Some(());
    }
    redis_retrying(state, "dead-letter", || {
        dead_letter::send(state, stream, letters)
    })
    .await?;
    for letter in letters {
        state.metrics.dead_lettered(letter.reason).inc();
        if letter.reason != DeadLetterReason::Data {
            // The refused rows' line above has it already.
            tracing::warn!(
                stream,
                id = letter.entry.id,
                request_id = letter.event.and_then(|e| e.request_id),
                reason = letter.reason.as_str(),
                error = letter.error,
                "entry dead-lettered"
            );
        }
    }
    let release: Vec<(Uuid, &str)> = letters
        .iter()
        .filter_map(|letter| {
            let event = letter.event.filter(|e| e.event_id.is_some())?;
            Some((event.dedup_key(), letter.entry.id.as_str()))
        })
        .collect();
    redis_retrying(state, "dedup release", || dedup::release(state, &release)).await
}

/// Step 4: `XACK`s `ack`. `None` when the worker stopped while Redis kept
/// failing.
async fn xack(state: &State, stream: &str, ack: &[&str]) -> Option<()> {
    if ack.is_empty() {
        return Some(());
    }
    redis_retrying(state, "XACK", || async {
        let mut conn = state.redis_conn().await?;
        redis::cmd("XACK")
            .arg(stream)
            .arg(CONSUMER_GROUP)
            .arg(ack)
            .query_async::<i64>(&mut conn)
            .await
    })
    .await
    .map(drop)
}

/// A batch given up because the worker is stopping: its entries stay
/// pending in the group and are claimed by another worker after
/// `CLAIM_IDLE` (or by this one when it starts again).
fn left_pending(stream: &str, entries: usize) {
    tracing::warn!(
        stream,
        entries,
        "stopping while a step kept failing; the batch stays pending for another worker"
    );
}

/// Inserts `rows`, splitting any part PostgreSQL refuses in halves until the
/// refused rows stand alone; everything else is committed. Returns the
/// refused rows' indexes with PostgreSQL's error, or `None` when the worker
/// stopped while the database kept failing.
async fn insert_bisecting(
    state: &State,
    heartbeat: &Heartbeat<'_>,
    rows: &[EventRow<'_>],
    kind: Rows,
) -> Option<Vec<(usize, String)>> {
    let mut refused = Vec::new();
    let mut todo: Vec<Range<usize>> = Vec::with_capacity(16);
    todo.push(0..rows.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        let part = &rows[range.clone()];
        match insert_retrying(state, heartbeat, part, kind).await {
            Ok(inserted) => {
                let now = Utc::now();
                state.metrics.inserted.inc_by(inserted);
                state
                    .metrics
                    .duplicates_database
                    .inc_by(part.len() as u64 - inserted.min(part.len() as u64));
                for row in part {
                    state
                        .metrics
                        .end_to_end
                        .observe(seconds_between(row.event.ingested_at, now));
                }
            }
            Err(Halt::Stopping) => return None,
            Err(Halt::Refused(e)) if range.len() == 1 => refused.push((range.start, e.to_string())),
            Err(Halt::Refused(e)) => {
                tracing::debug!(rows = range.len(), error = %e, "batch refused; bisecting");
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
        }
    }
    Some(refused)
}

/// Why an insert did not commit.
enum Halt {
    /// PostgreSQL refused the data: retrying the same rows cannot succeed.
    Refused(sqlx::Error),
    /// The worker is stopping and the database kept failing.
    Stopping,
}

/// One insert, retried through transient errors (with backoff and the
/// circuit breaker) until it commits, PostgreSQL refuses the data, or the
/// worker stops.
async fn insert_retrying(
    state: &State,
    heartbeat: &Heartbeat<'_>,
    rows: &[EventRow<'_>],
    kind: Rows,
) -> Result<u64, Halt> {
    let mut backoff = Backoff::new(state.config.retry_base, state.config.retry_max);
    loop {
        // Biased: a closed breaker means "try", even while stopping (the
        // batches in hand are finished when the database answers).
        tokio::select! {
            biased;
            () = state.breaker.ready() => {}
            () = state.stopping.cancelled() => return Err(Halt::Stopping),
        }
        let start = Instant::now();
        let result = match kind {
            Rows::Fresh => batch_insert::insert_fresh(&state.pg, rows).await,
            Rows::MayExist => batch_insert::insert(&state.pg, rows)
                .await
                .map(|rows| Inserted {
                    rows,
                    fell_back: false,
                }),
        };
        match result {
            Ok(inserted) => {
                state
                    .metrics
                    .insert_duration
                    .observe(start.elapsed().as_secs_f64());
                if inserted.fell_back {
                    state.metrics.copy_fallbacks.inc();
                }
                state.breaker.success();
                return Ok(inserted.rows);
            }
            Err(InsertError::Data(e)) => {
                state.breaker.success();
                return Err(Halt::Refused(e));
            }
            Err(InsertError::Transient(e)) => {
                state.breaker.failure();
                state.metrics.transient_errors.inc();
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, rows = rows.len(), retry_in_ms = delay.as_millis() as u64, "insert failed; will retry");
                if !pause_unless_stopping(state, delay).await {
                    return Err(Halt::Stopping);
                }
                heartbeat.beat_if_due().await;
            }
        }
    }
}

/// Keeps a batch that waits for the database from looking abandoned: every
/// third of `CLAIM_IDLE` it re-claims its entries for this consumer with
/// `XCLAIM … JUSTID`, which resets their idle time without counting a
/// delivery, so other workers do not claim them and no entry reaches
/// `MAX_DELIVERIES` only because the database was down.
struct Heartbeat<'a> {
    state: &'a State,
    stream: &'a str,
    ids: Vec<&'a str>,
    last: std::sync::Mutex<Instant>,
}

impl<'a> Heartbeat<'a> {
    fn new(state: &'a State, stream: &'a str, entries: &'a [Entry]) -> Self {
        Heartbeat {
            state,
            stream,
            ids: entries.iter().map(|e| e.id.as_str()).collect(),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    async fn beat_if_due(&self) {
        let every = self.state.config.claim_idle / 3;
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let result = async {
            let mut conn = self.state.redis_conn().await?;
            redis::cmd("XCLAIM")
                .arg(self.stream)
                .arg(CONSUMER_GROUP)
                .arg(&self.state.consumer)
                .arg(0)
                .arg(&self.ids)
                .arg("JUSTID")
                .query_async::<redis::Value>(&mut conn)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot refresh the claim on a waiting batch");
        }
    }
}

/// Runs a Redis step until it succeeds, with backoff between attempts;
/// `None` when the worker stopped while it kept failing.
async fn redis_retrying<T, F, Fut>(state: &State, what: &'static str, mut step: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, redis::RedisError>>,
{
    let mut backoff = Backoff::new(state.config.retry_base, state.config.retry_max);
    loop {
        match step().await {
            Ok(value) => return Some(value),
            Err(e) => {
                state.metrics.transient_errors.inc();
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, step = what, retry_in_ms = delay.as_millis() as u64, "Redis step failed; will retry");
                if !pause_unless_stopping(state, delay).await {
                    return None;
                }
            }
        }
    }
}

/// Waits `delay` before a retry; `false`, at once, when the worker is
/// stopping (or stops meanwhile).
async fn pause_unless_stopping(state: &State, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => !state.stopping.is_cancelled(),
        () = state.stopping.cancelled() => false,
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).to_std().unwrap_or(Duration::ZERO).as_secs_f64()
}
