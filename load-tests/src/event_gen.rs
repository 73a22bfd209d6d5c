//! Realistic events, cheaply: many services with a skewed popularity, message
//! lengths from a log-normal distribution, a few metadata shapes (or big
//! ones), a share of events with a client `event_id`, and a share of exact
//! re-sends of recent events (what a retrying client does), which the
//! pipeline must store once.
//!
//! Every generated event carries its dedup key when it has an `event_id`
//! (the same UUIDv5 the gateway computes), so the end-to-end check can tell a
//! correctly collapsed duplicate from a lost event.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rng::Rng;

/// Which metadata objects events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataKind {
    /// No metadata at all.
    None,
    /// A mix of none, flat, nested (HTTP request) and tracing shapes.
    Mixed,
    /// Objects of 4–12 KiB (the limit is 16 KiB).
    Big,
}

/// What the generated events look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventShape {
    /// Distinct service names (popularity is skewed towards the first ones).
    pub services: u32,
    /// Share of events that carry a client `event_id` (and a timestamp).
    pub event_id_share: f64,
    /// Share of events that are an exact re-send of a recent event with an
    /// `event_id`: stored once by the pipeline.
    pub duplicate_share: f64,
    /// Median message length in bytes; lengths are log-normal around it,
    /// capped at 2000.
    pub message_median: u32,
    pub metadata: MetadataKind,
}

impl Default for EventShape {
    fn default() -> Self {
        Self {
            services: 40,
            event_id_share: 0.5,
            duplicate_share: 0.02,
            message_median: 80,
            metadata: MetadataKind::Mixed,
        }
    }
}

impl EventShape {
    pub fn check(&self) -> Result<(), String> {
        if self.services == 0 {
            return Err("services must be at least 1".into());
        }
        for (name, share) in [
            ("event_id_share", self.event_id_share),
            ("duplicate_share", self.duplicate_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1, not {share}"));
            }
        }
        if self.duplicate_share > 0.0 && self.event_id_share == 0.0 {
            return Err(
                "duplicate_share needs event_id_share > 0 (duplicates are by event_id)".into(),
            );
        }
        if !(1..=2000).contains(&self.message_median) {
            return Err("message_median must be 1..=2000".into());
        }
        Ok(())
    }
}

/// One generated event: its JSON and, when it has an `event_id`, its dedup key.
#[derive(Debug, Clone)]
pub struct GeneratedEvent {
    pub json: Vec<u8>,
    /// `Some` when the event has an `event_id`; otherwise the dedup key is
    /// the id the gateway assigns.
    pub dedup_key: Option<Uuid>,
    pub is_duplicate: bool,
}

const SERVICE_WORDS: &[&str] = &[
    "checkout",
    "payments",
    "auth",
    "search",
    "cart",
    "inventory",
    "shipping",
    "billing",
    "notifications",
    "recommendations",
    "profile",
    "gateway",
    "orders",
    "catalog",
    "reviews",
    "pricing",
    "fraud",
    "ledger",
    "email",
    "sms",
    "media",
    "analytics",
    "scheduler",
    "export",
];

const WORDS: &[&str] = &[
    "request",
    "completed",
    "failed",
    "user",
    "order",
    "payment",
    "timeout",
    "retrying",
    "connection",
    "accepted",
    "queued",
    "cache",
    "miss",
    "hit",
    "for",
    "with",
    "after",
    "the",
    "in",
    "ms",
    "upstream",
    "returned",
    "status",
    "session",
    "token",
    "refreshed",
    "café",
    "naïve",
    "über",
    "日本",
    "→",
    "warning:",
    "error:",
    "id=42",
    "duration=17ms",
    "region=eu-west-1",
];

/// The service names of a run: `<tag>-<word>[-<n>]`, so one run's events can
/// be found by service name.
pub fn service_names(tag: &str, count: u32) -> Arc<[String]> {
    (0..count as usize)
        .map(|i| {
            let word = SERVICE_WORDS[i % SERVICE_WORDS.len()];
            match i / SERVICE_WORDS.len() {
                0 => format!("{tag}-{word}"),
                round => format!("{tag}-{word}-{round}"),
            }
        })
        .collect()
}

/// A block of text messages are cut from: words only, nothing that needs
/// escaping in JSON or in PostgreSQL's COPY text format.
fn text_block(rng: &mut Rng) -> Arc<str> {
    let mut text = String::with_capacity(8 * 1024);
    while text.len() < 8 * 1024 {
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    text.into()
}

/// Generates events for one connection (each has its own, so no locks).
pub struct EventGen {
    rng: Rng,
    shape: EventShape,
    services: Arc<[String]>,
    /// Makes `event_id`s unique across runs and connections.
    id_prefix: String,
    seq: u64,
    text: Arc<str>,
    /// Recent events with an `event_id` from earlier requests, the
    /// candidates for re-sending (a retrying client re-sends what it sent
    /// before, not within the same request).
    recent: VecDeque<GeneratedEvent>,
    /// This request's events with an `event_id`, candidates from the next.
    current: Vec<GeneratedEvent>,
    /// The RFC 3339 timestamp of the current millisecond, reused.
    now_text: (i64, String),
}

const RECENT: usize = 256;

impl EventGen {
    pub fn new(
        shape: EventShape,
        services: Arc<[String]>,
        run_tag: &str,
        stream: u32,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed ^ (u64::from(stream) << 32));
        let text = text_block(&mut rng);
        Self {
            rng,
            shape,
            services,
            id_prefix: format!("{run_tag}-{stream}-"),
            seq: 0,
            text,
            recent: VecDeque::with_capacity(RECENT),
            current: Vec::new(),
            now_text: (i64::MIN, String::new()),
        }
    }

    /// The next event.
    pub fn next_event(&mut self) -> GeneratedEvent {
        if !self.recent.is_empty() && self.rng.chance(self.shape.duplicate_share) {
            let pick = self.rng.below(self.recent.len() as u64) as usize;
            // Taken out: re-sent once, so never twice in one request.
            if let Some(mut event) = self.recent.swap_remove_back(pick) {
                event.is_duplicate = true;
                return event;
            }
        }
        let services = self.services.clone();
        let service = &services[self.rng.skewed(services.len() as u64) as usize];
        let mut json = Vec::with_capacity(256);
        json.extend_from_slice(b"{\"service\":\"");
        json.extend_from_slice(service.as_bytes());
        json.extend_from_slice(b"\",\"message\":\"");
        let len = self.message_len();
        json.extend_from_slice(self.message(len).as_bytes());
        json.push(b'"');
        let mut dedup_key = None;
        if self.rng.chance(self.shape.event_id_share) {
            self.seq += 1;
            let event_id = format!("{}{}", self.id_prefix, self.seq);
            json.extend_from_slice(b",\"event_id\":\"");
            json.extend_from_slice(event_id.as_bytes());
            json.extend_from_slice(b"\",\"timestamp\":\"");
            json.extend_from_slice(self.now_rfc3339().as_bytes());
            json.push(b'"');
            dedup_key = Some(eventline_shared::event::dedup_key(
                service,
                Some(&event_id),
                Uuid::nil(),
            ));
        }
        self.push_metadata(&mut json);
        json.push(b'}');
        let event = GeneratedEvent {
            json,
            dedup_key,
            is_duplicate: false,
        };
        if dedup_key.is_some() && self.shape.duplicate_share > 0.0 {
            self.current.push(event.clone());
        }
        event
    }

    /// Starts a new request: the last one's events become candidates for
    /// re-sending.
    pub fn begin_request(&mut self) {
        for event in self.current.drain(..) {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(event);
        }
    }

    /// Log-normal around the median (σ = 0.8: a tenth of messages are over
    /// 2.8× the median), within 1..=2000 bytes.
    fn message_len(&mut self) -> usize {
        let z = self.rng.normal();
        let len = f64::from(self.shape.message_median) * (0.8 * z).exp();
        (len.round() as usize).clamp(1, 2000)
    }

    /// About `len` bytes of text, cut at character boundaries, never blank.
    fn message(&mut self, len: usize) -> &str {
        let text: &str = &self.text;
        let len = len.min(text.len() - 8);
        let mut start = self.rng.below((text.len() - len) as u64) as usize;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = &text[start..end];
        match cut.trim() {
            "" => "ok",
            message => message,
        }
    }

    fn now_rfc3339(&mut self) -> &str {
        let now = Utc::now();
        let millis = now.timestamp_millis();
        if self.now_text.0 != millis {
            self.now_text = (millis, now.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        &self.now_text.1
    }

    fn push_metadata(&mut self, json: &mut Vec<u8>) {
        let mut m = String::with_capacity(128);
        let r = &mut self.rng;
        match self.shape.metadata {
            MetadataKind::None => return,
            MetadataKind::Mixed => match r.below(20) {
                0..=4 => return,
                5..=11 => {
                    let _ = write!(
                        m,
                        r#"{{"user_id":"u-{}","region":"{}","status":{}}}"#,
                        r.below(100_000),
                        ["eu-west-1", "us-east-1", "ap-south-1"][r.below(3) as usize],
                        [200, 201, 204, 400, 404, 500][r.below(6) as usize]
                    );
                }
                12..=16 => {
                    let _ = write!(
                        m,
                        r#"{{"http":{{"method":"{}","path":"/api/v1/orders/{}","status":{},"duration_ms":{}.{}}},"user":{{"id":"u-{}","plan":"{}"}}}}"#,
                        ["GET", "POST", "PUT", "DELETE"][r.below(4) as usize],
                        r.below(1_000_000),
                        [200, 201, 404, 500, 503][r.below(5) as usize],
                        r.below(2000),
                        r.below(10),
                        r.below(100_000),
                        ["free", "pro", "enterprise"][r.below(3) as usize]
                    );
                }
                _ => {
                    let _ = write!(
                        m,
                        r#"{{"trace_id":"{:016x}{:016x}","span_id":"{:016x}","tags":["{}","{}"],"retry":{},"attempt":{}}}"#,
                        r.next_u64(),
                        r.next_u64(),
                        r.next_u64(),
                        ["web", "mobile", "batch", "internal"][r.below(4) as usize],
                        ["canary", "stable"][r.below(2) as usize],
                        r.chance(0.1),
                        r.below(4)
                    );
                }
            },
            MetadataKind::Big => {
                // 40–120 fields of ~100 bytes, two levels deep: 4–12 KiB.
                let fields = 40 + r.below(81);
                m.push_str(r#"{"context":{"#);
                for i in 0..fields {
                    if i > 0 {
                        m.push(',');
                    }
                    let _ = write!(m, r#""attr_{i}":""#);
                    for _ in 0..6 {
                        let _ = write!(m, "{:016x}", r.next_u64());
                    }
                    m.push('"');
                }
                let _ = write!(m, r#"}},"size_class":"big","n":{fields}}}"#);
            }
        }
        json.extend_from_slice(b",\"metadata\":");
        json.extend_from_slice(m.as_bytes());
    }
}

/// A request body of `count` events: one JSON object when `count` is `None`
/// (the single-event endpoint), a JSON array otherwise.
pub fn request_body(
    generator: &mut EventGen,
    count: Option<u32>,
    into: &mut Vec<GeneratedEvent>,
) -> Vec<u8> {
    into.clear();
    generator.begin_request();
    match count {
        None => {
            let event = generator.next_event();
            let body = event.json.clone();
            into.push(event);
            body
        }
        Some(n) => {
            let mut body = Vec::with_capacity(n as usize * 200);
            body.push(b'[');
            for i in 0..n {
                if i > 0 {
                    body.push(b',');
                }
                let event = generator.next_event();
                body.extend_from_slice(&event.json);
                into.push(event);
            }
            body.push(b']');
            body
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::Utc;
    use eventline_shared::validate::{EventLimits, parse_event};

    use super::*;

    fn generator(shape: EventShape) -> EventGen {
        EventGen::new(shape, service_names("lt0test", 30), "lt0test", 0, 7)
    }

    fn limits() -> EventLimits {
        use clap::Parser;
        #[derive(Parser)]
        struct L {
            #[command(flatten)]
            limits: EventLimits,
        }
        L::parse_from(["l"]).limits
    }

    #[test]
    fn every_event_passes_the_gateway_validator() {
        let limits = limits();
        for metadata in [MetadataKind::None, MetadataKind::Mixed, MetadataKind::Big] {
            let mut g = generator(EventShape {
                metadata,
                ..EventShape::default()
            });
            for _ in 0..2000 {
                let event = g.next_event();
                let parsed = parse_event(&event.json, &limits, Utc::now());
                assert!(
                    parsed.is_ok(),
                    "{:?}: {}",
                    parsed.err(),
                    String::from_utf8_lossy(&event.json)
                );
            }
        }
    }

    #[test]
    fn shares_and_sizes_follow_the_shape() {
        let shape = EventShape {
            duplicate_share: 0.1,
            event_id_share: 0.6,
            ..EventShape::default()
        };
        let mut g = generator(shape);
        let n = 20_000;
        // Requests of 10 events.
        let events: Vec<_> = (0..n)
            .map(|i| {
                if i % 10 == 0 {
                    g.begin_request();
                }
                g.next_event()
            })
            .collect();
        // A re-send repeats an earlier request's event, never one of its own
        // request (the gateway would fold that into one).
        for request in events.chunks(10) {
            let fresh: HashSet<&[u8]> = request
                .iter()
                .filter(|e| !e.is_duplicate)
                .map(|e| e.json.as_slice())
                .collect();
            assert!(
                request
                    .iter()
                    .filter(|e| e.is_duplicate)
                    .all(|e| !fresh.contains(e.json.as_slice()))
            );
        }
        let dups = events.iter().filter(|e| e.is_duplicate).count() as f64 / n as f64;
        let with_id = events.iter().filter(|e| e.dedup_key.is_some()).count() as f64 / n as f64;
        assert!((0.08..0.12).contains(&dups), "duplicate share {dups}");
        // Fresh events carry an id 60% of the time; duplicates always do.
        assert!((0.60..0.68).contains(&with_id), "event_id share {with_id}");
        // A duplicate is byte for byte an earlier event, with the same key.
        let originals: HashSet<&[u8]> = events
            .iter()
            .filter(|e| !e.is_duplicate)
            .map(|e| e.json.as_slice())
            .collect();
        assert!(
            events
                .iter()
                .filter(|e| e.is_duplicate)
                .all(|e| originals.contains(e.json.as_slice()))
        );
        let services: HashSet<String> = events
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.json).expect("json");
                v["service"].as_str().expect("service").to_owned()
            })
            .collect();
        assert!(services.len() > 20, "{} services used", services.len());
    }

    #[test]
    fn dedup_keys_match_the_gateways() {
        let mut g = generator(EventShape {
            event_id_share: 1.0,
            ..EventShape::default()
        });
        let event = g.next_event();
        let v: serde_json::Value = serde_json::from_slice(&event.json).expect("json");
        let expected = eventline_shared::event::dedup_key(
            v["service"].as_str().expect("service"),
            v["event_id"].as_str(),
            Uuid::now_v7(),
        );
        assert_eq!(event.dedup_key, Some(expected));
    }

    #[test]
    fn big_metadata_is_big_but_within_the_limit() {
        let mut g = generator(EventShape {
            metadata: MetadataKind::Big,
            ..EventShape::default()
        });
        for _ in 0..200 {
            let v: serde_json::Value = serde_json::from_slice(&g.next_event().json).expect("json");
            let size = v["metadata"].to_string().len();
            assert!((4 * 1024..16 * 1024).contains(&size), "{size}");
        }
    }

    #[test]
    fn batch_bodies_are_json_arrays() {
        let mut g = generator(EventShape::default());
        let mut events = Vec::new();
        let body = request_body(&mut g, Some(50), &mut events);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("array");
        assert_eq!((v.len(), events.len()), (50, 50));
        let single = request_body(&mut g, None, &mut events);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&single)
                .expect("object")
                .is_object()
        );
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn service_names_are_valid_and_distinct() {
        let names = service_names("lt1a2b3c", 60);
        let set: HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), 60);
        assert!(names.iter().all(|n| {
            n.starts_with("lt1a2b3c-")
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        }));
    }
}
