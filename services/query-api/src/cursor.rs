//! The opaque pagination cursor: where the last page ended (`ts`, `id`),
//! the order, the resolved window, and a fingerprint of the filters, packed
//! in 58 bytes and base64url-encoded.
//!
//! Invariants: a cursor continues exactly the query that produced it (same
//! filters, same order, same window even when the client left `to` to
//! default to "now"), so keyset pagination returns every row of the window
//! once; anything that does not decode to a cursor is refused, never
//! guessed at.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::params::Window;

const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 8 + 16 + 8 + 8 + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Desc => "desc",
            Order::Asc => "asc",
        }
    }
}

impl std::str::FromStr for Order {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "desc" => Ok(Order::Desc),
            "asc" => Ok(Order::Asc),
            _ => Err(()),
        }
    }
}

/// The last row of a page, in the keyset order `(ts, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub ts: DateTime<Utc>,
    pub id: Uuid,
}

/// A hash of the parameters that select rows (not `limit`): a cursor is
/// only valid with the parameters it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    pub fn of(parts: &[&str]) -> Self {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub position: Position,
    pub window: Window,
    pub fingerprint: Fingerprint,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(LEN);
        buf.push(VERSION);
        buf.push(match self.order {
            Order::Desc => 0,
            Order::Asc => 1,
        });
        buf.extend_from_slice(&self.position.ts.timestamp_micros().to_be_bytes());
        buf.extend_from_slice(self.position.id.as_bytes());
        buf.extend_from_slice(&self.window.from.timestamp_micros().to_be_bytes());
        buf.extend_from_slice(&self.window.to.timestamp_micros().to_be_bytes());
        buf.extend_from_slice(&self.fingerprint.0);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// `None` for anything that is not a cursor this version wrote. The
    /// cursor is not signed, so its times are held to what `from` and `to`
    /// can express (years 1–9999): the page arithmetic on them (a
    /// microsecond past the position, an hour before the window) and
    /// PostgreSQL's `timestamptz` then stay in range whatever a client
    /// writes into one.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return None;
        }
        let order = match bytes[1] {
            0 => Order::Desc,
            1 => Order::Asc,
            _ => return None,
        };
        let micros = |at: usize| -> Option<DateTime<Utc>> {
            let raw = i64::from_be_bytes(bytes[at..at + 8].try_into().ok()?);
            DateTime::from_timestamp_micros(raw).filter(|t| (1..=9999).contains(&t.year()))
        };
        let ts = micros(2)?;
        let id = Uuid::from_slice(&bytes[10..26]).ok()?;
        let from = micros(26)?;
        let to = micros(34)?;
        let fingerprint = Fingerprint(bytes[42..58].try_into().ok()?);
        Some(Cursor {
            order,
            position: Position { ts, id },
            window: Window { from, to },
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(order: Order) -> Cursor {
        Cursor {
            order,
            position: Position {
                ts: DateTime::from_timestamp_micros(1_764_000_000_123_000).unwrap(),
                id: Uuid::now_v7(),
            },
            window: Window {
                from: DateTime::from_timestamp_micros(1_763_000_000_000_000).unwrap(),
                to: DateTime::from_timestamp_micros(1_765_000_000_000_000).unwrap(),
            },
            fingerprint: Fingerprint::of(&["a", "b"]),
        }
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let cursor = sample(Order::Asc);
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text), Some(cursor));
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode("not base64!"), None);
        assert_eq!(Cursor::decode(&text[..text.len() - 2]), None);
        let mut other_version = URL_SAFE_NO_PAD.decode(&text).unwrap();
        other_version[0] = 9;
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode(other_version)), None);
    }

    #[test]
    fn refuses_times_outside_the_years_a_query_can_name() {
        let cursor = sample(Order::Desc);
        let bytes = URL_SAFE_NO_PAD.decode(cursor.encode()).unwrap();
        // position ts, window from, window to
        for at in [2, 26, 34] {
            for forged in [
                DateTime::<Utc>::MAX_UTC.timestamp_micros(),
                DateTime::<Utc>::MIN_UTC.timestamp_micros(),
                i64::MAX,
                i64::MIN,
                // 10000-01-01T00:00:00Z
                253_402_300_800_000_000,
            ] {
                let mut b = bytes.clone();
                b[at..at + 8].copy_from_slice(&forged.to_be_bytes());
                assert_eq!(
                    Cursor::decode(&URL_SAFE_NO_PAD.encode(&b)),
                    None,
                    "{at} {forged}"
                );
            }
        }
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes)),
            Some(cursor)
        );
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(Fingerprint::of(&["ab", "c"]), Fingerprint::of(&["a", "bc"]));
    }
}
