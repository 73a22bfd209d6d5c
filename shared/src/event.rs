//! The event as it travels: what a client sends ([`ValidEvent`], only ever
//! produced by [`crate::validate`]) and what the gateway puts on the stream
//! ([`EnrichedEvent`]: the valid event plus its id, receive time and request id).
//!
//! Invariant: an `EnrichedEvent` built by [`ValidEvent::enrich`] satisfies every
//! rule of the contract's event table; code downstream never re-checks it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for dedup keys derived from a client's `event_id`.
///
/// Changing it would make every stored event look new to the dedup guard, so
/// it is fixed forever (a UUIDv5 of the project URL).
const DEDUP_NAMESPACE: Uuid = Uuid::from_u128(0x6f1f_5c0e_93a2_5d4b_8e0f_2b61_7a7d_c3e1);

/// An event that passed every rule of the contract. Only the validator builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    pub(crate) service: String,
    pub(crate) message: String,
    /// The event's time: the client's timestamp in UTC, truncated to
    /// milliseconds, or the receive time when the client sent none.
    pub(crate) ts: DateTime<Utc>,
    /// Compact or client-formatted JSON text of an object, already checked for
    /// size, depth and U+0000.
    pub(crate) metadata: Option<String>,
    /// The client's idempotency key.
    pub(crate) event_id: Option<String>,
}

impl ValidEvent {
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// Sets the idempotency key from a source the validator already checked
    /// (the gateway's `Idempotency-Key` header goes through
    /// [`crate::validate::check_event_id`] first).
    pub fn set_event_id(&mut self, event_id: crate::validate::CheckedEventId) {
        self.event_id = Some(event_id.into_inner());
    }

    /// Adds what the gateway knows: a fresh time-ordered id, the receive time
    /// and the request id.
    pub fn enrich(self, ingested_at: DateTime<Utc>, request_id: Option<String>) -> EnrichedEvent {
        EnrichedEvent {
            id: Uuid::now_v7(),
            service: self.service,
            message: self.message,
            ts: self.ts,
            ingested_at,
            event_id: self.event_id,
            metadata: self.metadata,
            request_id,
        }
    }
}

/// The event on the stream and in the worker: the valid event plus what the
/// gateway added. Field order is the wire order of the MessagePack array (see
/// [`crate::stream_codec`]); append new fields at the end with `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    /// UUIDv7 given by the gateway; time-ordered, so inserts stay append-only.
    pub id: Uuid,
    pub service: String,
    pub message: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub ts: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub ingested_at: DateTime<Utc>,
    pub event_id: Option<String>,
    /// JSON text of the metadata object.
    pub metadata: Option<String>,
    /// The `X-Request-Id` of the request that carried the event, so the
    /// worker's logs join the gateway's.
    pub request_id: Option<String>,
}

impl EnrichedEvent {
    /// The dedup key: `service` + `event_id` when the client sent one (as a
    /// UUIDv5, so it has a fixed size in Redis and PostgreSQL), else `id`.
    pub fn dedup_key(&self) -> Uuid {
        dedup_key(&self.service, self.event_id.as_deref(), self.id)
    }

    /// The event as an [`EnrichedEventRef`] borrowing its strings.
    pub fn as_ref(&self) -> EnrichedEventRef<'_> {
        EnrichedEventRef {
            id: self.id,
            service: &self.service,
            message: &self.message,
            ts: self.ts,
            ingested_at: self.ingested_at,
            event_id: self.event_id.as_deref(),
            metadata: self.metadata.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }
}

/// An [`EnrichedEvent`] read in place: its strings borrow the bytes it was
/// decoded from (see [`crate::stream_codec::decode_ref`]), so the worker reads
/// a batch without an allocation per string.
///
/// Invariant: the same fields in the same order, with the same serde
/// attributes, as [`EnrichedEvent`], so both read the same wire format (a
/// test in `stream_codec` decodes one's encoding as the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedEventRef<'a> {
    pub id: Uuid,
    pub service: &'a str,
    pub message: &'a str,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub ts: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub ingested_at: DateTime<Utc>,
    #[serde(borrow)]
    pub event_id: Option<&'a str>,
    #[serde(borrow)]
    pub metadata: Option<&'a str>,
    #[serde(borrow)]
    pub request_id: Option<&'a str>,
}

impl EnrichedEventRef<'_> {
    /// See [`EnrichedEvent::dedup_key`].
    pub fn dedup_key(&self) -> Uuid {
        dedup_key(self.service, self.event_id, self.id)
    }

    /// The event with its strings copied.
    pub fn into_owned(self) -> EnrichedEvent {
        EnrichedEvent {
            id: self.id,
            service: self.service.to_owned(),
            message: self.message.to_owned(),
            ts: self.ts,
            ingested_at: self.ingested_at,
            event_id: self.event_id.map(str::to_owned),
            metadata: self.metadata.map(str::to_owned),
            request_id: self.request_id.map(str::to_owned),
        }
    }
}

/// See [`EnrichedEvent::dedup_key`].
pub fn dedup_key(service: &str, event_id: Option<&str>, id: Uuid) -> Uuid {
    match event_id {
        Some(event_id) => {
            // Service names cannot contain U+0000, so the separator makes the
            // (service, event_id) pair unambiguous.
            let mut name = Vec::with_capacity(service.len() + 1 + event_id.len());
            name.extend_from_slice(service.as_bytes());
            name.push(0);
            name.extend_from_slice(event_id.as_bytes());
            Uuid::new_v5(&DEDUP_NAMESPACE, &name)
        }
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_is_id_without_event_id() {
        let id = Uuid::now_v7();
        assert_eq!(dedup_key("svc", None, id), id);
    }

    #[test]
    fn dedup_key_depends_on_service_and_event_id_only() {
        let a = dedup_key("svc", Some("k1"), Uuid::now_v7());
        let b = dedup_key("svc", Some("k1"), Uuid::now_v7());
        assert_eq!(a, b);
        assert_ne!(a, dedup_key("svc", Some("k2"), Uuid::now_v7()));
        assert_ne!(a, dedup_key("svc2", Some("k1"), Uuid::now_v7()));
        // No ambiguity between the two parts.
        assert_ne!(
            dedup_key("ab", Some("c"), Uuid::nil()),
            dedup_key("a", Some("bc"), Uuid::nil())
        );
    }
}
