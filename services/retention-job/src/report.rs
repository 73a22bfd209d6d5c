//! What a pass did (or, dry, would do): filled in step by step as changes
//! commit, so a pass that fails half-way still reports and records exactly
//! what it changed. Rendered three ways: the `maintenance_runs` details, the
//! one structured summary log line, and the lines `run` prints.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Another pass held the lock; nothing was done.
    Skipped,
}

/// Rows deleted (or to delete) from one table for one retention class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableExpiry {
    pub table: String,
    /// The service, or `default` for every service without an override.
    pub class: String,
    pub cutoff: DateTime<Utc>,
    pub rows: u64,
}

/// A day whose rows sat in the default partition and got (or would get) a
/// partition of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedDay {
    pub day: NaiveDate,
    pub rows: u64,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    /// The `maintenance_runs` row, once written.
    pub run_id: Option<i64>,
    pub outcome: Outcome,
    pub dry_run: bool,
    /// The clock the pass ran at.
    pub now: DateTime<Utc>,
    pub retention_days: u32,
    pub overrides: String,
    pub partitions_created: Vec<String>,
    pub partitions_dropped: Vec<String>,
    pub moved: Vec<MovedDay>,
    /// Event rows deleted (sum of `expiries`).
    pub rows_deleted: u64,
    pub expiries: Vec<TableExpiry>,
    /// Rows of the `event_counts` rollup deleted.
    pub counts_deleted: u64,
    pub duration: Duration,
}

impl RunReport {
    pub fn new(now: DateTime<Utc>, dry_run: bool, retention_days: u32, overrides: String) -> Self {
        RunReport {
            run_id: None,
            outcome: Outcome::Success,
            dry_run,
            now,
            retention_days,
            overrides,
            partitions_created: Vec::new(),
            partitions_dropped: Vec::new(),
            moved: Vec::new(),
            rows_deleted: 0,
            expiries: Vec::new(),
            counts_deleted: 0,
            duration: Duration::ZERO,
        }
    }

    /// The `details` column of `maintenance_runs`.
    pub fn details(&self) -> Value {
        json!({
            "now": self.now,
            "retention_days": self.retention_days,
            "retention_overrides": self.overrides,
            "moved_from_default": self.moved.iter()
                .map(|m| json!({ "day": m.day, "rows": m.rows }))
                .collect::<Vec<_>>(),
            "expired": self.expiries.iter()
                .map(|e| json!({ "table": e.table, "class": e.class, "cutoff": e.cutoff, "rows": e.rows }))
                .collect::<Vec<_>>(),
            "event_counts_deleted": self.counts_deleted,
            "duration_seconds": self.duration.as_secs_f64(),
        })
    }

    /// The one summary line of a pass.
    pub fn log_summary(&self, error: Option<&str>) {
        let outcome = match (self.outcome, error) {
            (_, Some(_)) => "failed",
            (Outcome::Skipped, None) => "skipped",
            (Outcome::Success, None) => "success",
        };
        let moved: u64 = self.moved.iter().map(|m| m.rows).sum();
        macro_rules! summary {
            ($level:ident) => {
                tracing::$level!(
                    run_id = self.run_id,
                    outcome,
                    dry_run = self.dry_run,
                    now = %self.now,
                    partitions_created = self.partitions_created.len(),
                    partitions_dropped = self.partitions_dropped.len(),
                    created = %self.partitions_created.join(","),
                    dropped = %self.partitions_dropped.join(","),
                    rows_moved = moved,
                    rows_deleted = self.rows_deleted,
                    event_counts_deleted = self.counts_deleted,
                    duration_seconds = self.duration.as_secs_f64(),
                    error,
                    "retention pass finished"
                )
            };
        }
        match error {
            Some(_) => summary!(error),
            None => summary!(info),
        }
    }

    /// What `retention-job run` prints: one line per change (or, dry, per
    /// change it would make).
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        if self.outcome == Outcome::Skipped {
            return writeln!(
                out,
                "skipped: another retention pass holds the lock; nothing done"
            );
        }
        let (create, drop, delete) = if self.dry_run {
            ("would create", "would drop", "would delete")
        } else {
            ("created", "dropped", "deleted")
        };
        for name in &self.partitions_created {
            writeln!(out, "{create} partition {name}")?;
        }
        for m in &self.moved {
            writeln!(
                out,
                "  {} rows of {} {} out of events_default",
                m.rows,
                m.day,
                if self.dry_run { "would move" } else { "moved" }
            )?;
        }
        for name in &self.partitions_dropped {
            writeln!(out, "{drop} partition {name}")?;
        }
        for e in &self.expiries {
            writeln!(
                out,
                "{delete} {} rows from {} (retention class {}, ts < {})",
                e.rows,
                e.table,
                e.class,
                e.cutoff.to_rfc3339()
            )?;
        }
        if self.counts_deleted > 0 {
            writeln!(out, "{delete} {} event_counts rows", self.counts_deleted)?;
        }
        writeln!(
            out,
            "{}: {} partitions created, {} dropped, {} rows deleted{}",
            if self.dry_run { "dry run" } else { "done" },
            self.partitions_created.len(),
            self.partitions_dropped.len(),
            self.rows_deleted,
            if self.dry_run {
                "; nothing was changed"
            } else {
                ""
            }
        )
    }
}
