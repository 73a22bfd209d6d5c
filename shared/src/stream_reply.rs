//! Stream entries as Redis returns them (`XREADGROUP`, `XAUTOCLAIM`,
//! `XPENDING`), walked straight from the reply value.
//!
//! Invariant: parsing never fails on an entry's *content*: an entry with odd
//! fields, or none (deleted from the stream while pending), still comes out
//! as an [`Entry`] so the worker can dead-letter or ack it; only a reply
//! whose *shape* is not a stream reply is an error.

use redis::Value;

/// One stream entry, its fields as raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry id (`<ms>-<seq>`), kept as Redis wrote it.
    pub id: String,
    /// `field, value, field, value, …` in stream order, as the reply held them
    /// (kept rather than copied into pairs: this runs for every event); empty
    /// when the entry no longer exists.
    flat: Vec<Value>,
    /// How often the group delivered it: 1 for a fresh read, looked up with
    /// `XPENDING` for claimed entries.
    pub deliveries: u64,
}

impl Entry {
    /// Field/value pairs in stream order; fields whose name or value is not
    /// a string are left out.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.flat
            .chunks_exact(2)
            .filter_map(|pair| Some((bytes_ref(&pair[0])?, bytes_ref(&pair[1])?)))
    }

    /// Whether the entry has no fields (it was deleted from the stream).
    pub fn is_deleted(&self) -> bool {
        self.fields().next().is_none()
    }

    /// The value of field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }
}

fn bytes_ref(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected reply to {command}: {detail}")]
pub struct ReplyError {
    pub command: &'static str,
    pub detail: String,
}

fn shape(command: &'static str, detail: impl Into<String>) -> ReplyError {
    ReplyError {
        command,
        detail: detail.into(),
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

pub fn string(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}

/// `[[id, [field, value, …]], …]` → entries with `deliveries` set to 1.
pub fn entries(command: &'static str, value: Value) -> Result<Vec<Entry>, ReplyError> {
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            other => Err(shape(command, format!("entry list is {other:?}"))),
        };
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            return Err(shape(command, "entry is not an array"));
        };
        let mut pair = pair.into_iter();
        let id = pair
            .next()
            .and_then(string)
            .ok_or_else(|| shape(command, "entry without an id"))?;
        let flat = match pair.next() {
            Some(Value::Array(flat)) => flat,
            Some(Value::Map(map)) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            // A pending entry deleted from the stream reads as `[id, nil]`.
            _ => Vec::new(),
        };
        out.push(Entry {
            id,
            flat,
            deliveries: 1,
        });
    }
    Ok(out)
}

/// The reply of `XREADGROUP … STREAMS <one key> >`: nil on timeout, else one
/// stream with its entries (RESP2 array or RESP3 map).
pub fn read_group(value: Value) -> Result<Vec<Entry>, ReplyError> {
    const CMD: &str = "XREADGROUP";
    let stream = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(mut streams) if streams.len() == 1 => match streams.pop() {
            Some(Value::Array(mut kv)) if kv.len() == 2 => kv.pop(),
            _ => None,
        },
        Value::Map(mut streams) if streams.len() == 1 => streams.pop().map(|(_, v)| v),
        Value::Array(streams) if streams.is_empty() => return Ok(Vec::new()),
        other => return Err(shape(CMD, format!("{other:?}"))),
    };
    let stream = stream.ok_or_else(|| shape(CMD, "no [key, entries] pair"))?;
    entries(CMD, stream)
}

/// The reply of `XAUTOCLAIM`: the next cursor, the claimed entries, and the
/// ids that were pending but no longer exist in the stream.
pub fn autoclaim(value: Value) -> Result<(String, Vec<Entry>, Vec<String>), ReplyError> {
    const CMD: &str = "XAUTOCLAIM";
    let Value::Array(parts) = value else {
        return Err(shape(CMD, "not an array"));
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(string)
        .ok_or_else(|| shape(CMD, "no cursor"))?;
    let claimed = entries(CMD, parts.next().unwrap_or(Value::Nil))?;
    let deleted = match parts.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(string).collect(),
        _ => Vec::new(),
    };
    Ok((cursor, claimed, deleted))
}

/// The extended reply of `XPENDING key group start end count`: `(id, deliveries)`.
pub fn pending_deliveries(value: Value) -> Result<Vec<(String, u64)>, ReplyError> {
    const CMD: &str = "XPENDING";
    let Value::Array(rows) = value else {
        return Err(shape(CMD, "not an array"));
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Array(cols) = row else {
            return Err(shape(CMD, "row is not an array"));
        };
        let mut cols = cols.into_iter();
        let id = cols.next().and_then(string);
        let deliveries = cols.nth(2).and_then(|v| match v {
            Value::Int(n) => u64::try_from(n).ok(),
            other => string(other).and_then(|s| s.parse().ok()),
        });
        match (id, deliveries) {
            (Some(id), Some(d)) => out.push((id, d)),
            _ => return Err(shape(CMD, "row without id or delivery count")),
        }
    }
    Ok(out)
}

/// A stream id `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// When Redis added the entry: the id's millisecond part.
    pub fn time(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(i64::try_from(self.ms).ok()?)
    }

    /// The smallest id greater than this one.
    pub fn successor(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_a_group_reply_including_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events:{0}"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("v"), bulk("1"), bulk("e"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = read_group(reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].field("v"), Some(&b"1"[..]));
        assert_eq!(entries[0].field("e"), Some(&b"x"[..]));
        assert_eq!(entries[0].field("x"), None);
        assert!(!entries[0].is_deleted());
        assert!(entries[1].is_deleted());
        assert!(read_group(Value::Nil).unwrap().is_empty());
        assert!(read_group(Value::Int(3)).is_err());
    }

    #[test]
    fn reads_autoclaim_and_pending() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-1"),
                Value::Array(vec![bulk("v"), bulk("1")]),
            ])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (cursor, claimed, deleted) = autoclaim(reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(claimed[0].id, "5-1");
        assert_eq!(deleted, vec!["4-0".to_owned()]);

        let pending = Value::Array(vec![Value::Array(vec![
            bulk("5-1"),
            bulk("c1"),
            Value::Int(1200),
            Value::Int(3),
        ])]);
        assert_eq!(
            pending_deliveries(pending).unwrap(),
            vec![("5-1".to_owned(), 3)]
        );
    }

    #[test]
    fn ids_order_and_succeed() {
        let a = StreamId::parse("10-5").unwrap();
        assert!(a < StreamId::parse("10-6").unwrap());
        assert!(a < StreamId::parse("11-0").unwrap());
        assert_eq!(a.successor().to_string(), "10-6");
        assert_eq!(
            StreamId {
                ms: 3,
                seq: u64::MAX
            }
            .successor(),
            StreamId { ms: 4, seq: 0 }
        );
        assert!(StreamId::parse("x-1").is_none());
        assert_eq!(
            StreamId::parse("1764000000123-7").unwrap().time(),
            chrono::DateTime::from_timestamp_millis(1_764_000_000_123)
        );
    }
}
