//! A log record's `metadata` object, written as JSON straight from the
//! decoded OTLP messages and held to the contract's metadata rules while it
//! is written: no container deeper than `MAX_METADATA_DEPTH` (the object
//! itself is level 1), no U+0000 in a key or a string. The validator then
//! only checks the size ([`validate::DecodedMetadata::Checked`]), instead of
//! parsing JSON that was just written here. Numbers need no check: they are
//! 64-bit integers and doubles, far inside PostgreSQL's `numeric`.
//!
//! A resource's and a scope's part is written once for all their records
//! and spliced into each record's object as raw JSON.
//!
//! Layout (each key only when the record has it): `severity_text`,
//! `severity_number`, `event_name`, `trace_id`, `span_id`, `flags`,
//! `attributes`, `dropped_attributes_count`, `resource`, `scope`.

use std::cell::RefCell;

use base64::Engine as _;
use eventline_shared::validate::{ErrorCode, EventError};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// The rules a value is held to while it is written, and where the first
/// broken one is kept. `None` writes without checks (a structured body,
/// which becomes message text).
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    max_depth: usize,
    problem: &'a RefCell<Option<EventError>>,
}

impl<'a> Rules<'a> {
    pub fn new(max_depth: usize, problem: &'a RefCell<Option<EventError>>) -> Self {
        Self { max_depth, problem }
    }

    fn fail<E: serde::ser::Error>(self, code: ErrorCode, at: Place<'_>, what: &str) -> E {
        let field = at.field();
        let message = format!("`{field}` {what}");
        self.problem
            .borrow_mut()
            .get_or_insert_with(|| EventError::for_field(code, field, message));
        E::custom(what)
    }

    fn check_str<E: serde::ser::Error>(self, s: &str, at: Place<'_>) -> Result<(), E> {
        if s.contains('\0') {
            return Err(self.fail(ErrorCode::NulCharacter, at, "must not contain U+0000"));
        }
        Ok(())
    }
}

/// Where in `metadata` a value is: its section and top-level key, enough
/// for the error to name the attribute.
#[derive(Clone, Copy)]
struct Place<'a> {
    section: &'a str,
    key: &'a str,
}

impl Place<'_> {
    fn field(self) -> String {
        let mut field = String::from("metadata");
        for part in [self.section, self.key] {
            if !part.is_empty() {
                field.push('.');
                field.extend(part.chars().take(64).flat_map(char::escape_debug));
            }
        }
        field
    }
}

/// Writes `value` as JSON under `rules`; the first broken rule, or a
/// writing error, comes back as the event error to reject with.
fn write_checked(
    value: &impl Serialize,
    problem: &RefCell<Option<EventError>>,
    capacity: usize,
) -> Result<String, EventError> {
    let mut out = Vec::with_capacity(capacity);
    let written = serde_json::to_writer(&mut out, value)
        // serde_json writes UTF-8 only.
        .map(|()| String::from_utf8(out).unwrap_or_default());
    written.map_err(|e| {
        problem.borrow_mut().take().unwrap_or_else(|| {
            EventError::for_field(
                ErrorCode::InvalidJson,
                "metadata",
                format!("the record's attributes cannot be written as JSON: {e}"),
            )
        })
    })
}

/// A resource's attributes as the raw JSON of `metadata.resource`; `None`
/// when it has none.
pub fn resource_json(
    resource: Option<&Resource>,
    max_depth: usize,
) -> Result<Option<Box<RawValue>>, EventError> {
    let Some(resource) = resource.filter(|r| !r.attributes.is_empty()) else {
        return Ok(None);
    };
    let problem = RefCell::new(None);
    let rules = Rules::new(max_depth, &problem);
    let attributes = Attributes {
        list: &resource.attributes,
        depth: 2,
        rules: Some(rules),
        section: "resource",
    };
    raw(write_checked(&attributes, &problem, 128)?)
}

/// A scope as the raw JSON of `metadata.scope`; `None` when it is empty.
pub fn scope_json(
    scope: Option<&InstrumentationScope>,
    max_depth: usize,
) -> Result<Option<Box<RawValue>>, EventError> {
    let Some(scope) =
        scope.filter(|s| !(s.name.is_empty() && s.version.is_empty() && s.attributes.is_empty()))
    else {
        return Ok(None);
    };
    let problem = RefCell::new(None);
    let rules = Rules::new(max_depth, &problem);
    raw(write_checked(&Scope { scope, rules }, &problem, 64)?)
}

fn raw(json: String) -> Result<Option<Box<RawValue>>, EventError> {
    RawValue::from_string(json).map(Some).map_err(|e| {
        EventError::for_field(
            ErrorCode::InvalidJson,
            "metadata",
            format!("the attributes cannot be written as JSON: {e}"),
        )
    })
}

/// A record's whole metadata object, with its resource's and scope's parts
/// already written, in a buffer of `capacity` bytes to start with (the
/// previous record's size is a good guess).
pub fn record_json(
    record: &LogRecord,
    resource: Option<&RawValue>,
    scope: Option<&RawValue>,
    max_depth: usize,
    capacity: usize,
) -> Result<String, EventError> {
    let problem = RefCell::new(None);
    let metadata = RecordMetadata {
        record,
        resource,
        scope,
        rules: Rules::new(max_depth, &problem),
    };
    write_checked(&metadata, &problem, capacity)
}

struct RecordMetadata<'a> {
    record: &'a LogRecord,
    resource: Option<&'a RawValue>,
    scope: Option<&'a RawValue>,
    rules: Rules<'a>,
}

impl Serialize for RecordMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (record, rules) = (self.record, self.rules);
        let top = |key| Place { section: "", key };
        let mut map = serializer.serialize_map(None)?;
        if !record.severity_text.is_empty() {
            rules.check_str(&record.severity_text, top("severity_text"))?;
            map.serialize_entry("severity_text", &record.severity_text)?;
        }
        if record.severity_number != 0 {
            map.serialize_entry("severity_number", &record.severity_number)?;
        }
        if !record.event_name.is_empty() {
            rules.check_str(&record.event_name, top("event_name"))?;
            map.serialize_entry("event_name", &record.event_name)?;
        }
        if let Some(id) = id_hex(&record.trace_id, 16) {
            map.serialize_entry("trace_id", &id)?;
        }
        if let Some(id) = id_hex(&record.span_id, 8) {
            map.serialize_entry("span_id", &id)?;
        }
        if record.flags != 0 {
            map.serialize_entry("flags", &record.flags)?;
        }
        if !record.attributes.is_empty() {
            let attributes = Attributes {
                list: &record.attributes,
                depth: 2,
                rules: Some(rules),
                section: "attributes",
            };
            map.serialize_entry("attributes", &attributes)?;
        }
        if record.dropped_attributes_count != 0 {
            map.serialize_entry("dropped_attributes_count", &record.dropped_attributes_count)?;
        }
        if let Some(resource) = self.resource {
            map.serialize_entry("resource", resource)?;
        }
        if let Some(scope) = self.scope {
            map.serialize_entry("scope", scope)?;
        }
        map.end()
    }
}

/// A trace or span id in lowercase hex; `None` when it is absent, of the
/// wrong length or all zeros (the specification's invalid ids).
pub fn id_hex(bytes: &[u8], len: usize) -> Option<String> {
    if bytes.len() != len || bytes.iter().all(|&b| b == 0) {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(len * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    Some(out)
}

struct Scope<'a> {
    scope: &'a InstrumentationScope,
    rules: Rules<'a>,
}

impl Serialize for Scope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (scope, rules) = (self.scope, self.rules);
        let at = |key| Place {
            section: "scope",
            key,
        };
        if rules.max_depth < 2 {
            return Err(rules.fail(ErrorCode::TooDeep, at(""), "nests deeper than the limit"));
        }
        let mut map = serializer.serialize_map(None)?;
        if !scope.name.is_empty() {
            rules.check_str(&scope.name, at("name"))?;
            map.serialize_entry("name", &scope.name)?;
        }
        if !scope.version.is_empty() {
            rules.check_str(&scope.version, at("version"))?;
            map.serialize_entry("version", &scope.version)?;
        }
        if !scope.attributes.is_empty() {
            let attributes = Attributes {
                list: &scope.attributes,
                depth: 3,
                rules: Some(rules),
                section: "scope.attributes",
            };
            map.serialize_entry("attributes", &attributes)?;
        }
        map.end()
    }
}

/// Key-value pairs as a JSON object at nesting `depth`, in their order.
struct Attributes<'a> {
    list: &'a [KeyValue],
    depth: usize,
    rules: Option<Rules<'a>>,
    /// The section of `metadata` they are in, for error messages.
    section: &'a str,
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(rules) = self.rules.filter(|r| self.depth > r.max_depth) {
            let at = Place {
                section: self.section,
                key: "",
            };
            return Err(rules.fail(ErrorCode::TooDeep, at, "nests deeper than the limit"));
        }
        let mut map = serializer.serialize_map(Some(self.list.len()))?;
        for kv in self.list {
            let at = Place {
                section: self.section,
                key: &kv.key,
            };
            if let Some(rules) = self.rules {
                rules.check_str(&kv.key, at)?;
            }
            let value = Any {
                value: kv.value.as_ref().and_then(|v| v.value.as_ref()),
                depth: self.depth + 1,
                rules: self.rules,
                at,
            };
            map.serialize_entry(&kv.key, &value)?;
        }
        map.end()
    }
}

/// An `AnyValue` as plain JSON: kvlists as objects, arrays as arrays, bytes
/// as base64, an empty value as null. A container here is at `depth`.
pub struct Any<'a> {
    value: Option<&'a Value>,
    depth: usize,
    rules: Option<Rules<'a>>,
    at: Place<'a>,
}

impl<'a> Any<'a> {
    /// A value written without the metadata rules (a body becomes text).
    pub fn unchecked(value: &'a Value) -> Self {
        Any {
            value: Some(value),
            depth: 1,
            rules: None,
            at: Place {
                section: "",
                key: "",
            },
        }
    }

    fn child(&self, value: &'a AnyValue) -> Any<'a> {
        Any {
            value: value.value.as_ref(),
            depth: self.depth + 1,
            rules: self.rules,
            at: self.at,
        }
    }

    fn check_depth<E: serde::ser::Error>(&self) -> Result<(), E> {
        match self.rules {
            Some(rules) if self.depth > rules.max_depth => {
                Err(rules.fail(ErrorCode::TooDeep, self.at, "nests deeper than the limit"))
            }
            _ => Ok(()),
        }
    }
}

impl Serialize for Any<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            // A string-table index means something only in profiles, which
            // carry the table; in a log record it names nothing.
            None | Some(Value::StringValueStrindex(_)) => serializer.serialize_unit(),
            Some(Value::StringValue(s)) => {
                if let Some(rules) = self.rules {
                    rules.check_str(s, self.at)?;
                }
                serializer.serialize_str(s)
            }
            Some(Value::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Value::IntValue(i)) => serializer.serialize_i64(*i),
            Some(Value::DoubleValue(d)) if d.is_finite() => serializer.serialize_f64(*d),
            // JSON has no NaN or infinities: their names, as OTLP/JSON writes them.
            Some(Value::DoubleValue(d)) => serializer.serialize_str(&d.to_string()),
            Some(Value::ArrayValue(array)) => {
                self.check_depth()?;
                serializer.collect_seq(array.values.iter().map(|v| self.child(v)))
            }
            Some(Value::KvlistValue(list)) => {
                self.check_depth()?;
                let attributes = Attributes {
                    list: &list.values,
                    depth: self.depth,
                    rules: self.rules,
                    section: self.at.section,
                };
                attributes.serialize(serializer)
            }
            Some(Value::BytesValue(bytes)) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }
}
