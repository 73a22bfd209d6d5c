//! Realistic events, cheaply: many services with a skewed popularity, message
//! lengths from a log-normal distribution, a few metadata shapes (or big
//! ones), a share of events with a client `event_id`, and a share of exact
//! re-sends of recent events (what a retrying client does), which the
//! pipeline must store once.
//!
//! Every generated event carries its dedup key when it has an `event_id`
//! (the same UUIDv5 the gateway computes), so the end-to-end check can tell a
//! correctly collapsed duplicate from a lost event.
//!
//! Two request formats ([`Format`]): eventline's JSON, or OTLP/HTTP logs in
//! protobuf (`opentelemetry-proto`'s messages, encoded by `prost`). Both are
//! drawn from the same random numbers in the same order, so a seed gives the
//! same services, messages, `event_id`s and metadata values in either.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rng::Rng;

/// Which requests carry the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// eventline's JSON events: `/v1/events`, or `/v1/events/batch` with a
    /// batch size.
    #[default]
    Json,
    /// OTLP/HTTP logs in protobuf on `/v1/logs`: one
    /// `ExportLogsServiceRequest` per request; every record carries an
    /// `event_id` as its `log.record.uid` (the answer names no ids).
    Otlp,
    /// eventline's JSON events carrying what the gateway maps an OTLP
    /// record to: every event with an `event_id` and a timestamp, and
    /// metadata `{severity_text, severity_number, attributes: {log.record.uid,
    /// …}, resource: {service.name}, scope: {name, version}}`. The same rows
    /// as `otlp` stores, sent the JSON way: the baseline that tells what the
    /// OTLP path itself costs.
    JsonAsOtlp,
}

/// The record attribute the gateway takes as the `event_id`.
pub const RECORD_UID: &str = "log.record.uid";

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

/// One generated event: its JSON or OTLP record and, when it has an
/// `event_id`, its dedup key.
#[derive(Debug, Clone)]
pub struct GeneratedEvent {
    /// The event as JSON; empty in the OTLP format.
    pub json: Vec<u8>,
    /// The event as an OTLP log record (OTLP format; taken out when its
    /// request is built).
    pub otlp: Option<OtlpRecord>,
    /// `Some` when the event has an `event_id`; otherwise the dedup key is
    /// the id the gateway assigns.
    pub dedup_key: Option<Uuid>,
    pub is_duplicate: bool,
}

/// A log record and the index of its service (the resource's
/// `service.name`) in the run's service names.
#[derive(Debug, Clone)]
pub struct OtlpRecord {
    pub service: usize,
    pub record: LogRecord,
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
    format: Format,
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
            format: Format::Json,
            services,
            id_prefix: format!("{run_tag}-{stream}-"),
            seq: 0,
            text,
            recent: VecDeque::with_capacity(RECENT),
            current: Vec::new(),
            now_text: (i64::MIN, String::new()),
        }
    }

    /// Generates `format`'s requests (JSON by default). In the OTLP format
    /// every event has an `event_id`, whatever the shape's share.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn format(&self) -> Format {
        self.format
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
        let index = self.rng.skewed(services.len() as u64) as usize;
        let service = &services[index];
        let len = self.message_len();
        let event = match self.format {
            Format::Json | Format::JsonAsOtlp => self.json_event(service, len),
            Format::Otlp => self.otlp_event(index, service, len),
        };
        // OTLP records come back after encoding instead ([`otlp_body`]):
        // moved, not cloned.
        if event.dedup_key.is_some()
            && self.shape.duplicate_share > 0.0
            && self.format != Format::Otlp
        {
            self.current.push(event.clone());
        }
        event
    }

    /// Draws whether the event has an `event_id` (always in the OTLP-shaped
    /// formats; drawn anyway, so every format takes the same numbers) and
    /// makes it.
    fn event_id(&mut self, service: &str) -> Option<(String, Uuid)> {
        let keyed = self.rng.chance(self.shape.event_id_share) || self.format != Format::Json;
        keyed.then(|| {
            self.seq += 1;
            let event_id = format!("{}{}", self.id_prefix, self.seq);
            let key = eventline_shared::event::dedup_key(service, Some(&event_id), Uuid::nil());
            (event_id, key)
        })
    }

    fn json_event(&mut self, service: &str, len: usize) -> GeneratedEvent {
        let mut json = Vec::with_capacity(256);
        json.extend_from_slice(b"{\"service\":\"");
        json.extend_from_slice(service.as_bytes());
        json.extend_from_slice(b"\",\"message\":\"");
        json.extend_from_slice(self.message(len).as_bytes());
        json.push(b'"');
        let mut dedup_key = None;
        let mut uid = None;
        if let Some((event_id, key)) = self.event_id(service) {
            json.extend_from_slice(b",\"event_id\":\"");
            json.extend_from_slice(event_id.as_bytes());
            json.extend_from_slice(b"\",\"timestamp\":\"");
            json.extend_from_slice(self.now_rfc3339().as_bytes());
            json.push(b'"');
            dedup_key = Some(key);
            uid = Some(event_id);
        }
        let mut metadata = JsonMetadata {
            out: &mut json,
            started: false,
            comma: false,
        };
        match (self.format, uid) {
            (Format::JsonAsOtlp, Some(uid)) => {
                // The layout of the gateway's OTLP mapping (otlp/metadata.rs).
                let (severity, severity_text) = severity(self.seq);
                metadata.str("severity_text", format_args!("{severity_text}"));
                metadata.int("severity_number", severity as u64);
                metadata.open("attributes");
                metadata.str(RECORD_UID, format_args!("{uid}"));
                write_metadata(&mut self.rng, self.shape.metadata, &mut metadata);
                metadata.close();
                metadata.open("resource");
                metadata.str("service.name", format_args!("{service}"));
                metadata.close();
                metadata.open("scope");
                metadata.str("name", format_args!("eventline-load"));
                metadata.str("version", format_args!("{}", env!("CARGO_PKG_VERSION")));
                metadata.close();
            }
            _ => write_metadata(&mut self.rng, self.shape.metadata, &mut metadata),
        }
        metadata.finish();
        json.push(b'}');
        GeneratedEvent {
            json,
            otlp: None,
            dedup_key,
            is_duplicate: false,
        }
    }

    /// A log record: body the message, time now, a severity, the
    /// `event_id` as `log.record.uid` and the metadata's values as
    /// attributes (objects as key-value lists, arrays as arrays).
    fn otlp_event(&mut self, index: usize, service: &str, len: usize) -> GeneratedEvent {
        let message = self.message(len).to_owned();
        let (event_id, key) = self
            .event_id(service)
            .expect("every OTLP event has an event_id");
        let mut attributes = OtlpAttributes {
            current: Vec::with_capacity(8),
            open: Vec::new(),
        };
        attributes.put(RECORD_UID, Value::StringValue(event_id));
        write_metadata(&mut self.rng, self.shape.metadata, &mut attributes);
        let (severity, severity_text) = severity(self.seq);
        let record = LogRecord {
            time_unix_nano: unix_nanos_now(),
            severity_number: severity as i32,
            severity_text: severity_text.to_owned(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(message)),
            }),
            attributes: attributes.current,
            ..LogRecord::default()
        };
        GeneratedEvent {
            json: Vec::new(),
            otlp: Some(OtlpRecord {
                service: index,
                record,
            }),
            dedup_key: Some(key),
            is_duplicate: false,
        }
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
}

/// A severity without a draw of its own (so both formats take the same
/// numbers): by the `event_id`'s sequence number, mostly INFO.
fn severity(seq: u64) -> (SeverityNumber, &'static str) {
    match seq % 20 {
        0..=2 => (SeverityNumber::Debug, "DEBUG"),
        3..=16 => (SeverityNumber::Info, "INFO"),
        17 | 18 => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Error, "ERROR"),
    }
}

fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Where a metadata shape is written: JSON text or OTLP attributes. One
/// description of the shapes ([`write_metadata`]) serves both formats.
trait MetadataSink {
    fn str(&mut self, key: &str, value: std::fmt::Arguments<'_>);
    fn int(&mut self, key: &str, value: u64);
    /// The number `whole.tenths`.
    fn decimal(&mut self, key: &str, whole: u64, tenths: u64);
    fn bool(&mut self, key: &str, value: bool);
    fn strs(&mut self, key: &str, values: &[&str]);
    /// Starts an object under `key`, until [`close`](Self::close).
    fn open(&mut self, key: &str);
    fn close(&mut self);
}

/// The metadata of one event: none, or one of the mixed shapes, or a big
/// object.
fn write_metadata(r: &mut Rng, kind: MetadataKind, m: &mut impl MetadataSink) {
    match kind {
        MetadataKind::None => {}
        MetadataKind::Mixed => match r.below(20) {
            0..=4 => {}
            5..=11 => {
                m.str("user_id", format_args!("u-{}", r.below(100_000)));
                m.str(
                    "region",
                    format_args!(
                        "{}",
                        ["eu-west-1", "us-east-1", "ap-south-1"][r.below(3) as usize]
                    ),
                );
                m.int(
                    "status",
                    [200, 201, 204, 400, 404, 500][r.below(6) as usize],
                );
            }
            12..=16 => {
                m.open("http");
                m.str(
                    "method",
                    format_args!("{}", ["GET", "POST", "PUT", "DELETE"][r.below(4) as usize]),
                );
                m.str(
                    "path",
                    format_args!("/api/v1/orders/{}", r.below(1_000_000)),
                );
                m.int("status", [200, 201, 404, 500, 503][r.below(5) as usize]);
                let whole = r.below(2000);
                m.decimal("duration_ms", whole, r.below(10));
                m.close();
                m.open("user");
                m.str("id", format_args!("u-{}", r.below(100_000)));
                m.str(
                    "plan",
                    format_args!("{}", ["free", "pro", "enterprise"][r.below(3) as usize]),
                );
                m.close();
            }
            _ => {
                m.str(
                    "trace_id",
                    format_args!("{:016x}{:016x}", r.next_u64(), r.next_u64()),
                );
                m.str("span_id", format_args!("{:016x}", r.next_u64()));
                let tag = ["web", "mobile", "batch", "internal"][r.below(4) as usize];
                m.strs("tags", &[tag, ["canary", "stable"][r.below(2) as usize]]);
                m.bool("retry", r.chance(0.1));
                m.int("attempt", r.below(4));
            }
        },
        MetadataKind::Big => {
            // 40–120 fields of ~100 bytes, two levels deep: 4–12 KiB.
            let fields = 40 + r.below(81);
            m.open("context");
            for i in 0..fields {
                m.str(
                    &BIG_KEYS[i as usize],
                    format_args!(
                        "{:016x}{:016x}{:016x}{:016x}{:016x}{:016x}",
                        r.next_u64(),
                        r.next_u64(),
                        r.next_u64(),
                        r.next_u64(),
                        r.next_u64(),
                        r.next_u64()
                    ),
                );
            }
            m.close();
            m.str("size_class", format_args!("big"));
            m.int("n", fields);
        }
    }
}

/// The keys of big metadata's fields, made once.
static BIG_KEYS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (0..120).map(|i| format!("attr_{i}")).collect());

/// Writes `,"metadata":{…}` into an event's JSON when the shape has any
/// field. Keys and values need no escaping.
struct JsonMetadata<'a> {
    out: &'a mut Vec<u8>,
    started: bool,
    /// A value was written at this level: the next needs a comma.
    comma: bool,
}

impl JsonMetadata<'_> {
    fn key(&mut self, key: &str) {
        if !self.started {
            self.out.extend_from_slice(b",\"metadata\":{");
            self.started = true;
        } else if self.comma {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.comma = true;
    }

    fn finish(self) {
        if self.started {
            self.out.push(b'}');
        }
    }
}

// Writing into a Vec cannot fail.
impl MetadataSink for JsonMetadata<'_> {
    fn str(&mut self, key: &str, value: std::fmt::Arguments<'_>) {
        self.key(key);
        self.out.push(b'"');
        let _ = self.out.write_fmt(value);
        self.out.push(b'"');
    }

    fn int(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn decimal(&mut self, key: &str, whole: u64, tenths: u64) {
        self.key(key);
        let _ = write!(self.out, "{whole}.{tenths}");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn strs(&mut self, key: &str, values: &[&str]) {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        }
        self.out.push(b']');
    }

    fn open(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'{');
        self.comma = false;
    }

    fn close(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }
}

/// Builds a record's attributes: the metadata's top-level keys, objects as
/// key-value lists.
struct OtlpAttributes {
    current: Vec<KeyValue>,
    /// The enclosing levels of an open object: its key and the level's
    /// attributes so far.
    open: Vec<(String, Vec<KeyValue>)>,
}

fn any(value: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

impl OtlpAttributes {
    fn put(&mut self, key: &str, value: Value) {
        self.current.push(KeyValue {
            key: key.to_owned(),
            value: any(value),
            ..KeyValue::default()
        });
    }
}

impl MetadataSink for OtlpAttributes {
    fn str(&mut self, key: &str, value: std::fmt::Arguments<'_>) {
        self.put(key, Value::StringValue(std::fmt::format(value)));
    }

    fn int(&mut self, key: &str, value: u64) {
        self.put(
            key,
            Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn decimal(&mut self, key: &str, whole: u64, tenths: u64) {
        self.put(key, Value::DoubleValue(whole as f64 + tenths as f64 / 10.0));
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, Value::BoolValue(value));
    }

    fn strs(&mut self, key: &str, values: &[&str]) {
        let values = values
            .iter()
            .map(|v| AnyValue {
                value: Some(Value::StringValue((*v).to_owned())),
            })
            .collect();
        self.put(key, Value::ArrayValue(ArrayValue { values }));
    }

    fn open(&mut self, key: &str) {
        let outer = std::mem::take(&mut self.current);
        self.open.push((key.to_owned(), outer));
    }

    fn close(&mut self) {
        if let Some((key, outer)) = self.open.pop() {
            let values = std::mem::replace(&mut self.current, outer);
            self.put(&key, Value::KvlistValue(KeyValueList { values }));
        }
    }
}

/// A request body of `count` events. JSON: one object when `count` is
/// `None` (the single-event endpoint), an array otherwise. OTLP: one
/// protobuf `ExportLogsServiceRequest` of `count` records (1 when `None`),
/// see [`otlp_request`].
pub fn request_body(
    generator: &mut EventGen,
    count: Option<u32>,
    into: &mut Vec<GeneratedEvent>,
) -> Vec<u8> {
    into.clear();
    generator.begin_request();
    match (generator.format, count) {
        (Format::Json | Format::JsonAsOtlp, None) => {
            let event = generator.next_event();
            let body = event.json.clone();
            into.push(event);
            body
        }
        (Format::Json | Format::JsonAsOtlp, Some(n)) => {
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
        (Format::Otlp, count) => {
            into.extend((0..count.unwrap_or(1)).map(|_| generator.next_event()));
            otlp_body(generator, into)
        }
    }
}

/// The encoded request of `events`' records. The records then go back to
/// the generator (in the order generated, as the JSON format's do) as
/// candidates for re-sending, moved rather than cloned: building them is
/// most of what an OTLP record costs the generator.
fn otlp_body(generator: &mut EventGen, events: &mut [GeneratedEvent]) -> Vec<u8> {
    let (request, order) = otlp_request(&generator.services, events);
    let body = request.encode_to_vec();
    if generator.shape.duplicate_share > 0.0 {
        let mut back: Vec<Option<OtlpRecord>> = (0..events.len()).map(|_| None).collect();
        let records = request
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records);
        for (record, (service, i)) in records.zip(order) {
            back[i] = Some(OtlpRecord { service, record });
        }
        for (event, otlp) in events.iter().zip(back) {
            // A re-sent event is not a candidate again.
            if !event.is_duplicate && otlp.is_some() {
                generator.current.push(GeneratedEvent {
                    json: Vec::new(),
                    otlp,
                    dedup_key: event.dedup_key,
                    is_duplicate: false,
                });
            }
        }
    }
    body
}

/// The export request of `events`' records (taken out of them): one
/// `ResourceLogs` per service (`service.name`), in order of first
/// appearance, each with one `ScopeLogs` of scope `eventline-load`. With it,
/// each record's (service, event index) in request order.
fn otlp_request(
    services: &[String],
    events: &mut [GeneratedEvent],
) -> (ExportLogsServiceRequest, Vec<(usize, usize)>) {
    let mut groups: Vec<(usize, Vec<LogRecord>, Vec<usize>)> = Vec::new();
    for (i, event) in events.iter_mut().enumerate() {
        let Some(otlp) = event.otlp.take() else {
            continue;
        };
        match groups
            .iter_mut()
            .find(|(service, _, _)| *service == otlp.service)
        {
            Some((_, records, indexes)) => {
                records.push(otlp.record);
                indexes.push(i);
            }
            None => groups.push((otlp.service, vec![otlp.record], vec![i])),
        }
    }
    let mut order = Vec::with_capacity(events.len());
    let resource_logs = groups
        .into_iter()
        .map(|(service, log_records, indexes)| {
            order.extend(indexes.into_iter().map(|i| (service, i)));
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: any(Value::StringValue(services[service].clone())),
                        ..KeyValue::default()
                    }],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "eventline-load".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    (ExportLogsServiceRequest { resource_logs }, order)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::Utc;
    use eventline_shared::validate::{EventLimits, parse_event};
    use prost::Message as _;

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

    fn otlp_generator(shape: EventShape) -> EventGen {
        generator(shape).with_format(Format::Otlp)
    }

    fn string_value(kv: &KeyValue) -> &str {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            other => panic!("{}: not a string: {other:?}", kv.key),
        }
    }

    #[test]
    fn otlp_bodies_decode_to_the_requests_records() {
        let names = service_names("lt0test", 30);
        let mut g = otlp_generator(EventShape {
            duplicate_share: 0.1,
            event_id_share: 0.2,
            ..EventShape::default()
        });
        let mut events = Vec::new();
        let started = unix_nanos_now();
        for _ in 0..20 {
            let body = request_body(&mut g, Some(50), &mut events);
            let request = ExportLogsServiceRequest::decode(body.as_slice()).expect("protobuf");
            let mut keys = Vec::new();
            let mut seen_services = HashSet::new();
            for resource_logs in &request.resource_logs {
                let resource = resource_logs.resource.as_ref().expect("resource");
                assert_eq!(resource.attributes.len(), 1);
                assert_eq!(resource.attributes[0].key, "service.name");
                let service = string_value(&resource.attributes[0]);
                assert!(names.iter().any(|n| n == service), "{service}");
                assert!(
                    seen_services.insert(service),
                    "one ResourceLogs per service"
                );
                assert_eq!(resource_logs.scope_logs.len(), 1);
                let scope_logs = &resource_logs.scope_logs[0];
                assert_eq!(
                    scope_logs.scope.as_ref().expect("scope").name,
                    "eventline-load"
                );
                for record in &scope_logs.log_records {
                    let Some(Value::StringValue(body)) =
                        record.body.as_ref().and_then(|b| b.value.as_ref())
                    else {
                        panic!("a string body: {record:?}")
                    };
                    assert!(!body.trim().is_empty());
                    assert!(
                        (started..=unix_nanos_now()).contains(&record.time_unix_nano),
                        "time is now"
                    );
                    let expected = match record.severity_number {
                        5 => "DEBUG",
                        9 => "INFO",
                        13 => "WARN",
                        17 => "ERROR",
                        n => panic!("severity {n}"),
                    };
                    assert_eq!(record.severity_text, expected);
                    assert_eq!(record.attributes[0].key, RECORD_UID);
                    let uid = string_value(&record.attributes[0]);
                    keys.push(eventline_shared::event::dedup_key(
                        service,
                        Some(uid),
                        Uuid::nil(),
                    ));
                }
            }
            // Every record, once, keyed as the driver expects; the records
            // were moved into the request.
            let mut expected: Vec<Uuid> = events
                .iter()
                .map(|e| e.dedup_key.expect("every OTLP event has a key"))
                .collect();
            expected.sort_unstable();
            keys.sort_unstable();
            assert_eq!(keys, expected);
            assert!(events.iter().all(|e| e.otlp.is_none() && e.json.is_empty()));
        }
        assert!(events.len() == 50);
        let single = request_body(&mut g, None, &mut events);
        let request = ExportLogsServiceRequest::decode(single.as_slice()).expect("protobuf");
        assert_eq!(request.resource_logs.len(), 1);
        assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }

    /// Through the gateway's own mapping: every record is valid, and it is
    /// the event the JSON format would have sent from the same seed (its
    /// metadata the record's attributes, `log.record.uid` aside).
    #[test]
    fn otlp_records_are_the_json_events_of_the_same_seed() {
        let limits = limits();
        for metadata in [MetadataKind::None, MetadataKind::Mixed, MetadataKind::Big] {
            let shape = EventShape {
                metadata,
                event_id_share: 1.0,
                duplicate_share: 0.05,
                ..EventShape::default()
            };
            let mut json = generator(shape.clone());
            let mut otlp = otlp_generator(shape);
            let (mut json_events, mut otlp_events) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                let json_body = request_body(&mut json, Some(25), &mut json_events);
                let otlp_body = request_body(&mut otlp, Some(25), &mut otlp_events);
                let request =
                    ExportLogsServiceRequest::decode(otlp_body.as_slice()).expect("protobuf");
                let mapped = ingest_gateway::otlp::map_request(&request, &limits, Utc::now());
                assert!(mapped.rejected.is_empty(), "{:?}", mapped.first_reason);
                let json_body: Vec<serde_json::Value> =
                    serde_json::from_slice(&json_body).expect("json");
                let mut from_json: Vec<_> = json_body
                    .iter()
                    .map(|v| {
                        (
                            v["event_id"].as_str().expect("event_id").to_owned(),
                            v["service"].clone(),
                            v["message"].clone(),
                            v.get("metadata").cloned(),
                        )
                    })
                    .collect();
                let mut from_otlp: Vec<_> = mapped
                    .events
                    .iter()
                    .map(|e| {
                        let metadata: serde_json::Value =
                            serde_json::from_str(e.metadata().expect("metadata")).expect("json");
                        let mut attributes = metadata["attributes"].clone();
                        let uid = attributes
                            .as_object_mut()
                            .expect("attributes")
                            .remove(RECORD_UID)
                            .expect("uid");
                        assert_eq!(e.event_id(), uid.as_str());
                        let attributes = attributes.as_object().expect("object");
                        (
                            e.event_id().expect("event_id").to_owned(),
                            serde_json::Value::from(e.service()),
                            serde_json::Value::from(e.message()),
                            (!attributes.is_empty())
                                .then(|| serde_json::Value::Object(attributes.clone())),
                        )
                    })
                    .collect();
                from_json.sort_by(|a, b| a.0.cmp(&b.0));
                from_otlp.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(from_otlp, from_json);
                let keys = |events: &[GeneratedEvent]| {
                    let mut keys: Vec<_> = events.iter().map(|e| e.dedup_key).collect();
                    keys.sort_unstable();
                    keys
                };
                assert_eq!(keys(&otlp_events), keys(&json_events));
            }
        }
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
