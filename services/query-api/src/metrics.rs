//! The query-api's metrics, `eventline_query_*`. Labels come from small
//! fixed sets: the matched route, the status code, a query name, a cache
//! name, a replay outcome. Never a service name or a client address.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, exponential_buckets,
};

use eventline_shared::metrics::register;

pub const REQUESTS: &str = "eventline_query_requests_total";
pub const REQUEST_DURATION: &str = "eventline_query_request_duration_seconds";
pub const ROWS_RETURNED: &str = "eventline_query_rows_returned";
pub const DB_DURATION: &str = "eventline_query_db_duration_seconds";
pub const CACHE: &str = "eventline_query_cache_requests_total";
pub const TAILS_OPEN: &str = "eventline_query_tails_open";
pub const RETENTION_LAST_SUCCESS: &str = "eventline_query_retention_last_success_timestamp_seconds";
pub const DLQ_REPLAYED: &str = "eventline_query_dlq_replay_entries_total";

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub rows_returned: HistogramVec,
    pub db_duration: HistogramVec,
    pub cache: IntCounterVec,
    pub tails_open: IntGauge,
    pub dlq_replayed: IntCounterVec,
    /// From `maintenance_runs`: what Prometheus alerts on when the retention
    /// job runs as a CronJob, which nothing scrapes.
    pub retention_last_success: IntGauge,
}

/// The `query` label of [`Metrics::db_duration`].
pub mod query {
    pub const EVENTS: &str = "events";
    pub const EVENT: &str = "event";
    pub const SERVICES_IN_WINDOW: &str = "services_in_window";
    pub const STATS: &str = "stats";
    pub const SERVICES: &str = "services";
    pub const BUSINESS: &str = "business";
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help)?);
        let histograms = |name: &str, help: &str, buckets: Vec<f64>, label: &str| {
            register(
                registry,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])?,
            )
        };
        Ok(Self {
            requests: counters(
                REQUESTS,
                "HTTP requests by route and status.",
                &["route", "status"],
            )?,
            request_duration: histograms(
                REQUEST_DURATION,
                "Time from request to response headers, by route.",
                vec![
                    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0,
                ],
                "route",
            )?,
            rows_returned: histograms(
                ROWS_RETURNED,
                "Rows (events, dead letters) in one response, by route.",
                exponential_buckets(1.0, 4.0, 6)?,
                "route",
            )?,
            db_duration: histograms(
                DB_DURATION,
                "Time of one database call, by query.",
                vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
                ],
                "query",
            )?,
            cache: counters(
                CACHE,
                "Lookups of the stats cache, by cache and result (hit, miss).",
                &["cache", "result"],
            )?,
            tails_open: gauge(TAILS_OPEN, "Live tails (/v1/tail) streaming now.")?,
            retention_last_success: gauge(
                RETENTION_LAST_SUCCESS,
                "Unix time of the retention job's last successful pass (dry runs excluded), read from maintenance_runs; 0 when none.",
            )?,
            dlq_replayed: counters(
                DLQ_REPLAYED,
                "Dead letters a replay handled, by outcome (replayed, undecodable, not_found).",
                &["outcome"],
            )?,
        })
    }
}
