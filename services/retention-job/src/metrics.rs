//! The job's metrics, registered on the registry `main` creates (never a
//! global). Only real changes are counted: a dry run observes its duration
//! and outcome but moves no counter and no last-success time, so an alert on
//! `eventline_retention_last_success_timestamp_seconds` cannot be silenced by
//! dry runs.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use eventline_shared::metrics::register;

pub const PARTITIONS_CREATED: &str = "eventline_retention_partitions_created_total";
pub const PARTITIONS_DROPPED: &str = "eventline_retention_partitions_dropped_total";
pub const ROWS_DELETED: &str = "eventline_retention_rows_deleted_total";
pub const RUNS: &str = "eventline_retention_runs_total";
pub const RUN_DURATION: &str = "eventline_retention_run_duration_seconds";
pub const LAST_SUCCESS: &str = "eventline_retention_last_success_timestamp_seconds";

/// A run's outcome, the only label (a fixed set).
pub const OUTCOMES: [&str; 3] = ["success", "failed", "skipped"];

#[derive(Clone)]
pub struct Metrics {
    pub partitions_created: IntCounter,
    pub partitions_dropped: IntCounter,
    /// Event rows removed by DELETE (rows of dropped partitions are not
    /// counted: nobody scanned them).
    pub rows_deleted: IntCounter,
    pub runs: IntCounterVec,
    pub run_duration: Histogram,
    pub last_success: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let runs = register(
            registry,
            IntCounterVec::new(
                Opts::new(RUNS, "Retention passes, by outcome."),
                &["outcome"],
            )?,
        )?;
        for outcome in OUTCOMES {
            runs.with_label_values(&[outcome]);
        }
        Ok(Self {
            partitions_created: register(
                registry,
                IntCounter::new(PARTITIONS_CREATED, "Daily partitions created.")?,
            )?,
            partitions_dropped: register(
                registry,
                IntCounter::new(PARTITIONS_DROPPED, "Expired daily partitions dropped.")?,
            )?,
            rows_deleted: register(
                registry,
                IntCounter::new(
                    ROWS_DELETED,
                    "Expired event rows deleted (default partition, shorter per-service retentions).",
                )?,
            )?,
            runs,
            run_duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(RUN_DURATION, "Duration of a retention pass.")
                        .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
                )?,
            )?,
            last_success: register(
                registry,
                IntGauge::new(
                    LAST_SUCCESS,
                    "Unix time of the last pass that succeeded (dry runs excluded).",
                )?,
            )?,
        })
    }
}
