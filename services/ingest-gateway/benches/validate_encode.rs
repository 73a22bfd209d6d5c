//! The gateway's CPU work per event: validate + enrich + encode, for one
//! event and for a 1000-event batch, with plain `serde_json::from_slice` into
//! a `Value` as the baseline measured in the same run; and the same 1000
//! events as one OTLP protobuf request (decode + map + enrich + encode), to
//! set beside the JSON batch.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventline_shared::stream_codec;
use eventline_shared::validate::{EventLimits, parse_event, parse_event_str};
use ingest_gateway::batch;
use ingest_gateway::body::Format;
use ingest_gateway::otlp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

// As in the gateway's binary, so allocation costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENT: &str = r#"{"service":"checkout-api","message":"order 8812 paid by card ending 4242, 3 items, total 129.90 EUR","metadata":{"order_id":8812,"items":3,"currency":"EUR","customer":{"id":"c-1942","tier":"gold"},"tags":["web","eu-west-1"]},"event_id":"order-8812-paid"}"#;

fn single(c: &mut Criterion) {
    let limits = EventLimits::default();
    let mut group = c.benchmark_group("single_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_serde_value", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(EVENT.as_bytes())).ok())
        })
    });
    group.bench_function("validate", |b| {
        b.iter(|| black_box(parse_event(black_box(EVENT.as_bytes()), &limits, Utc::now()).ok()))
    });
    group.bench_function("validate_enrich_encode", |b| {
        b.iter(|| {
            let now = Utc::now();
            let event = parse_event(black_box(EVENT.as_bytes()), &limits, now).ok()?;
            let enriched = event.enrich(now, Some("req-1".into()));
            black_box(stream_codec::encode(&enriched).ok())
        })
    });
    group.finish();
}

fn batch_1000(c: &mut Criterion) {
    let limits = EventLimits::default();
    let body = format!("[{}]", vec![EVENT; 1000].join(","));
    let mut group = c.benchmark_group("batch_1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("baseline_serde_value", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(body.as_bytes())).ok())
        })
    });
    group.bench_function("split_validate_enrich_encode", |b| {
        b.iter_batched(
            || body.as_bytes(),
            |bytes| {
                let now = Utc::now();
                let items = batch::split(bytes, Format::Json, 1000).ok()?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let event = parse_event_str(item.ok()?, &limits, now).ok()?;
                    let enriched = event.enrich(now, Some("req-1".into()));
                    out.push(stream_codec::encode(&enriched).ok()?);
                }
                black_box(Some(out))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn any(value: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(value),
        ..Default::default()
    }
}

fn string(s: &str) -> Value {
    Value::StringValue(s.into())
}

/// [`EVENT`] as an OTLP log record: the message as the body, the metadata
/// as attributes, the `event_id` as `log.record.uid`.
fn otlp_record() -> LogRecord {
    LogRecord {
        time_unix_nano: Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: any(string(
            "order 8812 paid by card ending 4242, 3 items, total 129.90 EUR",
        )),
        attributes: vec![
            kv("order_id", Value::IntValue(8812)),
            kv("items", Value::IntValue(3)),
            kv("currency", string("EUR")),
            kv(
                "customer",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("id", string("c-1942")), kv("tier", string("gold"))],
                }),
            ),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(string("web")),
                        },
                        AnyValue {
                            value: Some(string("eu-west-1")),
                        },
                    ],
                }),
            ),
            kv("log.record.uid", string("order-8812-paid")),
        ],
        ..Default::default()
    }
}

fn otlp_1000(c: &mut Criterion) {
    let limits = EventLimits::default();
    let body = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", string("checkout-api"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![otlp_record(); 1000],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let mut group = c.benchmark_group("otlp_1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("count_decode_map_enrich_encode", |b| {
        b.iter(|| {
            let now = Utc::now();
            let bytes = black_box(&body[..]);
            black_box(otlp::count_protobuf_records(bytes));
            let request = otlp::decode(bytes, otlp::Encoding::Protobuf).ok()?;
            let mapped = otlp::map_request(&request, &limits, now);
            let mut out = Vec::with_capacity(mapped.events.len());
            for event in mapped.events {
                let enriched = event.enrich(now, Some("req-1".into()));
                out.push(stream_codec::encode(&enriched).ok()?);
            }
            black_box(Some(out))
        })
    });
    group.finish();
}

criterion_group!(benches, single, batch_1000, otlp_1000);
criterion_main!(benches);
