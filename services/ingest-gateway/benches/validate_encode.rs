//! The gateway's CPU work per event: validate + enrich + encode, for one
//! event and for a 1000-event batch, with plain `serde_json::from_slice` into
//! a `Value` as the baseline measured in the same run.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventline_shared::stream_codec;
use eventline_shared::validate::{EventLimits, parse_event, parse_event_str};
use ingest_gateway::batch;
use ingest_gateway::body::Format;

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

criterion_group!(benches, single, batch_1000);
criterion_main!(benches);
