//! Every metric the worker exports, registered on the registry `main` (or a
//! test) created. Names are `eventline_worker_<name>_<unit>`; labels come only
//! from the small fixed sets below (dead-letter reason, duplicate guard).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use eventline_shared::metrics::register;

pub const INSERTED: &str = "eventline_worker_events_inserted_total";
pub const DUPLICATES: &str = "eventline_worker_duplicates_skipped_total";
pub const DEAD_LETTERED: &str = "eventline_worker_dead_lettered_total";
pub const BATCH_SIZE: &str = "eventline_worker_batch_size_events";
pub const INSERT_DURATION: &str = "eventline_worker_insert_duration_seconds";
pub const END_TO_END: &str = "eventline_worker_end_to_end_latency_seconds";
pub const PENDING: &str = "eventline_worker_pending_entries";
pub const LAG: &str = "eventline_worker_stream_lag_entries";
pub const STREAM_LENGTH: &str = "eventline_worker_stream_length_entries";
pub const REDELIVERIES: &str = "eventline_worker_redeliveries_total";
pub const CLAIMED: &str = "eventline_worker_claimed_total";
pub const TRANSIENT_ERRORS: &str = "eventline_worker_transient_errors_total";
pub const BREAKER_OPEN: &str = "eventline_worker_circuit_breaker_open";
pub const TRIMMED: &str = "eventline_worker_trimmed_entries_total";
pub const COPY_FALLBACKS: &str = "eventline_worker_copy_fallbacks_total";

/// Why an entry went to the dead-letter stream (the `reason` label and field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The entry could not be decoded into an event.
    Decode,
    /// PostgreSQL refused the event's row.
    Data,
    /// Delivered more than `MAX_DELIVERIES` times.
    MaxDeliveries,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Decode => "decode",
            DeadLetterReason::Data => "data",
            DeadLetterReason::MaxDeliveries => "max_deliveries",
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub inserted: IntCounter,
    /// Duplicates found by the dedup claim in Redis.
    pub duplicates_claim: IntCounter,
    /// Duplicates that reached PostgreSQL and hit the unique key.
    pub duplicates_database: IntCounter,
    dead_lettered: IntCounterVec,
    pub batch_size: Histogram,
    pub insert_duration: Histogram,
    pub end_to_end: Histogram,
    pub pending: IntGauge,
    pub lag: IntGauge,
    pub stream_length: IntGauge,
    pub redeliveries: IntCounter,
    pub claimed: IntCounter,
    pub transient_errors: IntCounter,
    pub breaker_open: IntGauge,
    pub trimmed: IntCounter,
    /// Fresh batches whose direct `COPY` met an existing row and were redone
    /// with the conflict guard.
    pub copy_fallbacks: IntCounter,
}

/// Makes each metric and registers it on the registry.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        register(self.0, IntCounter::new(name, help)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        register(self.0, IntGauge::new(name, help)?)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<Histogram, prometheus::Error> {
        register(
            self.0,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?,
        )
    }

    /// Duplicates by the guard that caught them.
    fn duplicates(&self) -> Result<IntCounterVec, prometheus::Error> {
        register(
            self.0,
            IntCounterVec::new(
                Opts::new(
                    DUPLICATES,
                    "Entries skipped as duplicates, by the guard that caught them (claim: the Redis dedup claim; database: the unique key).",
                ),
                &["guard"],
            )?,
        )
    }

    /// Dead letters by reason, every reason exported from the start.
    fn dead_lettered(&self) -> Result<IntCounterVec, prometheus::Error> {
        let dead_lettered = register(
            self.0,
            IntCounterVec::new(
                Opts::new(
                    DEAD_LETTERED,
                    "Entries moved to the dead-letter stream, by reason.",
                ),
                &["reason"],
            )?,
        )?;
        for reason in [
            DeadLetterReason::Decode,
            DeadLetterReason::Data,
            DeadLetterReason::MaxDeliveries,
        ] {
            dead_lettered.with_label_values(&[reason.as_str()]);
        }
        Ok(dead_lettered)
    }
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let r = Registrar(registry);
        let duplicates = r.duplicates()?;
        let dead_lettered = r.dead_lettered()?;
        Ok(Metrics {
            inserted: r.counter(INSERTED, "Events inserted into PostgreSQL (new rows only).")?,
            duplicates_claim: duplicates.with_label_values(&["claim"]),
            duplicates_database: duplicates.with_label_values(&["database"]),
            dead_lettered,
            batch_size: r.histogram(
                BATCH_SIZE,
                "Events per batch read from a stream (an entry holds one event or a request's).",
                vec![
                    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
                ],
            )?,
            insert_duration: r.histogram(
                INSERT_DURATION,
                "Time to insert and commit one batch (or part of one, when bisecting).",
                prometheus::exponential_buckets(0.001, 2.0, 14)?,
            )?,
            end_to_end: r.histogram(
                END_TO_END,
                "From the gateway's ingested_at to the commit of the event's row.",
                prometheus::exponential_buckets(0.005, 2.0, 16)?,
            )?,
            pending: r.gauge(
                PENDING,
                "Entries delivered to the group and not yet acked, all shards.",
            )?,
            lag: r.gauge(
                LAG,
                "Entries in the streams not yet delivered to the group, all shards.",
            )?,
            stream_length: r.gauge(STREAM_LENGTH, "Entries held in the streams, all shards.")?,
            redeliveries: r.counter(
                REDELIVERIES,
                "Entries processed again after an earlier delivery (claimed, or our own earlier dedup claim).",
            )?,
            claimed: r.counter(
                CLAIMED,
                "Entries claimed from idle consumers with XAUTOCLAIM.",
            )?,
            transient_errors: r.counter(
                TRANSIENT_ERRORS,
                "Transient failures (database or Redis) that were retried.",
            )?,
            breaker_open: r.gauge(
                BREAKER_OPEN,
                "1 while the database circuit breaker is open, else 0.",
            )?,
            trimmed: r.counter(TRIMMED, "Stream entries removed by XTRIM MINID.")?,
            copy_fallbacks: r.counter(
                COPY_FALLBACKS,
                "Batches (or parts, when bisecting) of freshly claimed entries whose direct COPY met an existing row (unique violation) and were redone with ON CONFLICT DO NOTHING.",
            )?,
        })
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) -> IntCounter {
        self.dead_lettered.with_label_values(&[reason.as_str()])
    }
}
