//! The gateway's metrics, `eventline_ingest_*`, registered on the registry
//! `main` (or a test) created. Labels come from small fixed sets: the
//! matched route, the status code, a rejection reason code, a rate-limit
//! scope, a shard number (bounded by STREAM_SHARDS).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use eventline_shared::metrics::register;
use eventline_shared::validate::ErrorCode;

pub const REQUESTS: &str = "eventline_ingest_requests_total";
pub const REQUEST_DURATION: &str = "eventline_ingest_request_duration_seconds";
pub const EVENTS_ACCEPTED: &str = "eventline_ingest_events_accepted_total";
pub const EVENTS_REJECTED: &str = "eventline_ingest_events_rejected_total";
pub const BATCH_SIZE: &str = "eventline_ingest_batch_size_events";
pub const GROUPED_ENTRY_EVENTS: &str = "eventline_ingest_grouped_entry_events";
pub const REDIS_DURATION: &str = "eventline_ingest_redis_duration_seconds";
pub const STREAM_LENGTH: &str = "eventline_ingest_stream_length";
pub const DEAD_LETTERS: &str = "eventline_ingest_dead_letter_entries";
pub const RATE_LIMITED: &str = "eventline_ingest_rate_limited_total";
pub const BACKPRESSURED: &str = "eventline_ingest_backpressured_total";
pub const AUTH_FAILURES: &str = "eventline_ingest_auth_failures_total";
pub const BREAKER_OPEN: &str = "eventline_ingest_redis_breaker_open";
pub const CONNECTIONS_REFUSED: &str = "eventline_ingest_connections_refused_total";
pub const REPLICA_ACK_TIMEOUTS: &str = "eventline_ingest_replica_ack_timeouts_total";

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub events_accepted: IntCounter,
    pub events_rejected: IntCounterVec,
    pub batch_size: Histogram,
    pub grouped_entry_events: Histogram,
    pub redis_duration: Histogram,
    pub stream_length: IntGaugeVec,
    pub dead_letters: IntGauge,
    pub rate_limited: IntCounterVec,
    pub backpressured: IntCounter,
    pub auth_failures: IntCounterVec,
    pub breaker_open: IntGauge,
    pub connections_refused: IntCounter,
    pub replica_ack_timeouts: IntCounter,
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
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help)?);
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help)?);
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?,
            )
        };
        let (requests, request_duration) = Self::register_http(registry)?;
        Ok(Self {
            requests,
            request_duration,
            events_accepted: counter(
                EVENTS_ACCEPTED,
                "Events appended to the stream (answered 202).",
            )?,
            events_rejected: counters(
                EVENTS_REJECTED,
                "Events refused, by reason code.",
                &["reason"],
            )?,
            batch_size: histogram(
                BATCH_SIZE,
                "Events per batch request.",
                vec![1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
            )?,
            grouped_entry_events: histogram(
                GROUPED_ENTRY_EVENTS,
                "Single-event requests written together as one stream entry (group commit).",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )?,
            redis_duration: histogram(
                REDIS_DURATION,
                "Round trip of the XADD call (or pipeline).",
                vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                ],
            )?,
            stream_length: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        STREAM_LENGTH,
                        "Entries in each ingest stream shard, as last read.",
                    ),
                    &["shard"],
                )?,
            )?,
            dead_letters: gauge(
                DEAD_LETTERS,
                "Entries in the dead-letter streams (events:dlq; on a cluster, every shard's), as last read.",
            )?,
            rate_limited: counters(
                RATE_LIMITED,
                "Requests refused by a rate limit, by scope (key, ip).",
                &["scope"],
            )?,
            backpressured: counter(
                BACKPRESSURED,
                "Requests refused because the stream was over its high-water mark.",
            )?,
            auth_failures: counters(
                AUTH_FAILURES,
                "Requests refused by authentication, by reason.",
                &["reason"],
            )?,
            breaker_open: gauge(
                BREAKER_OPEN,
                "1 while the Redis circuit breaker is open or half-open.",
            )?,
            connections_refused: counter(
                CONNECTIONS_REFUSED,
                "Connections closed at once because MAX_CONNECTIONS were open.",
            )?,
            replica_ack_timeouts: counter(
                REPLICA_ACK_TIMEOUTS,
                "Requests answered 503 because fewer than REDIS_MIN_REPLICAS_ACK replicas confirmed their entry in time.",
            )?,
        })
    }

    /// The request metrics [`eventline_shared::metrics::observe_request`]
    /// observes: requests by route and status, their duration by route.
    fn register_http(
        registry: &Registry,
    ) -> Result<(IntCounterVec, HistogramVec), prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS, "HTTP requests by route and status."),
            &["route", "status"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION, "Time from request to response, by route.")
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            &["route"],
        )?;
        Ok((
            register(registry, requests)?,
            register(registry, durations)?,
        ))
    }
}
