//! The gateway's metrics, `eventline_ingest_*`. Labels come from small fixed
//! sets: the matched route, the status code, a rejection reason code, a
//! rate-limit scope, a shard number (bounded by STREAM_SHARDS).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use eventline_shared::metrics::register;
use eventline_shared::validate::ErrorCode;

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub events_accepted: IntCounter,
    pub events_rejected: IntCounterVec,
    pub batch_size: Histogram,
    pub redis_duration: Histogram,
    pub stream_length: IntGaugeVec,
    pub dead_letters: IntGauge,
    pub rate_limited: IntCounterVec,
    pub backpressured: IntCounter,
    pub auth_failures: IntCounterVec,
    pub breaker_open: IntGauge,
    pub connections_refused: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::register(registry)?;
        // Every label of a fixed set starts at 0, so the series exist (and
        // rate() works) before the first occurrence.
        for code in ErrorCode::ALL {
            metrics.events_rejected.with_label_values(&[code.as_str()]);
        }
        for scope in ["key", "ip"] {
            metrics.rate_limited.with_label_values(&[scope]);
        }
        for reason in ["missing", "invalid", "scope"] {
            metrics.auth_failures.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            requests: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "eventline_ingest_requests_total",
                        "HTTP requests by route and status.",
                    ),
                    &["route", "status"],
                )?,
            )?,
            request_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "eventline_ingest_request_duration_seconds",
                        "Time from request to response, by route.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                    &["route"],
                )?,
            )?,
            events_accepted: register(
                registry,
                IntCounter::new(
                    "eventline_ingest_events_accepted_total",
                    "Events appended to the stream (answered 202).",
                )?,
            )?,
            events_rejected: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "eventline_ingest_events_rejected_total",
                        "Events refused, by reason code.",
                    ),
                    &["reason"],
                )?,
            )?,
            batch_size: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "eventline_ingest_batch_size_events",
                        "Events per batch request.",
                    )
                    .buckets(vec![1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
                )?,
            )?,
            redis_duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "eventline_ingest_redis_duration_seconds",
                        "Round trip of the XADD call (or pipeline).",
                    )
                    .buckets(vec![
                        0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                    ]),
                )?,
            )?,
            stream_length: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "eventline_ingest_stream_length",
                        "Entries in each ingest stream shard, as last read.",
                    ),
                    &["shard"],
                )?,
            )?,
            dead_letters: register(
                registry,
                IntGauge::new(
                    "eventline_ingest_dead_letter_entries",
                    "Entries in the dead-letter stream (events:dlq), as last read.",
                )?,
            )?,
            rate_limited: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "eventline_ingest_rate_limited_total",
                        "Requests refused by a rate limit, by scope (key, ip).",
                    ),
                    &["scope"],
                )?,
            )?,
            backpressured: register(
                registry,
                IntCounter::new(
                    "eventline_ingest_backpressured_total",
                    "Requests refused because the stream was over its high-water mark.",
                )?,
            )?,
            auth_failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "eventline_ingest_auth_failures_total",
                        "Requests refused by authentication, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            breaker_open: register(
                registry,
                IntGauge::new(
                    "eventline_ingest_redis_breaker_open",
                    "1 while the Redis circuit breaker is open or half-open.",
                )?,
            )?,
            connections_refused: register(
                registry,
                IntCounter::new(
                    "eventline_ingest_connections_refused_total",
                    "Connections closed at once because MAX_CONNECTIONS were open.",
                )?,
            )?,
        })
    }
}
