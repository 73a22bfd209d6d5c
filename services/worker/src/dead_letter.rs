//! Moving events to the dead-letter stream of their shard (`events:dlq`;
//! on a cluster `events:{t}:dlq`, ADR 0060) (step 6): the event
//! alone as a format-1 entry (so one refused event of a request's entry is
//! replayed alone), or the original fields when the entry does not decode,
//! plus why (`reason`, `error`), when (`first_failure`,
//! `last_failure`), how often it was delivered (`deliveries`) and where it
//! came from (`source_stream`, `source_id`), so an operator can inspect and
//! replay it.
//!
//! Invariant: the dead letter is written before the original entry is
//! acked; a crash in between leaves the entry pending, and at worst a second
//! copy of the same dead letter is written, never none.

use chrono::{DateTime, SecondsFormat, Utc};
use eventline_shared::EnrichedEventRef;
use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION, FORMAT_V1};

use crate::State;
use crate::metrics::DeadLetterReason;
use crate::stream_reply::Entry;

/// One event (or undecodable entry) on its way to the dead-letter stream.
pub struct DeadLetter<'a> {
    /// The entry it came from.
    pub entry: &'a Entry,
    /// The event, when the entry decodes; `None` to copy the entry whole.
    pub event: Option<EnrichedEventRef<'a>>,
    pub reason: DeadLetterReason,
    pub error: String,
    /// When the entry was first seen to fail: the failing batch's start
    /// for a refused or undecodable entry; for one over `MAX_DELIVERIES`,
    /// whose earlier deliveries failed in workers that kept no record, the
    /// entry's own time (its id), which no failure can precede.
    pub first_failure: DateTime<Utc>,
}

/// Appends `letters` to the dead-letter stream in one pipeline.
pub async fn send(
    state: &State,
    source_stream: &str,
    letters: &[DeadLetter<'_>],
) -> Result<(), redis::RedisError> {
    if letters.is_empty() {
        return Ok(());
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let dlq = state.keys.dlq_of(source_stream);
    let mut pipe = redis::pipe();
    for letter in letters {
        let cmd = pipe.cmd("XADD").arg(&dlq).arg("*");
        match letter.event.map(|event| stream_codec::encode_ref(&event)) {
            Some(Ok(payload)) => {
                cmd.arg(FIELD_VERSION)
                    .arg(FORMAT_V1)
                    .arg(FIELD_EVENT)
                    .arg(payload);
            }
            failed => {
                if let Some(Err(error)) = failed {
                    // Not seen in practice (the event was just decoded);
                    // the whole entry keeps it.
                    tracing::error!(%error, id = letter.entry.id, "cannot re-encode a dead event; dead-lettering its whole entry");
                }
                for (field, value) in letter.entry.fields() {
                    cmd.arg(field).arg(value);
                }
            }
        }
        cmd.arg("reason")
            .arg(letter.reason.as_str())
            .arg("error")
            .arg(&letter.error)
            .arg("first_failure")
            .arg(
                letter
                    .first_failure
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            )
            .arg("last_failure")
            .arg(&now)
            .arg("deliveries")
            .arg(letter.entry.deliveries)
            .arg("source_stream")
            .arg(source_stream)
            .arg("source_id")
            .arg(&letter.entry.id)
            .ignore();
    }
    let mut conn = state.redis_conn().await?;
    pipe.query_async::<()>(&mut conn).await
}
