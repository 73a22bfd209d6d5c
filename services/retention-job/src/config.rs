//! The job's configuration: every flag has an environment variable, every
//! value is typed and checked by clap before anything connects, and a bad one
//! ends the process with one line naming the variable (exit 64).

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use eventline_shared::config::{DatabaseArgs, TelemetryArgs, parse_millis, parse_positive_millis};

use crate::policy::{MAX_RETENTION_DAYS, RetentionOverrides, RetentionPolicy};

/// Most rows one DELETE statement may remove: the bound, which keeps
/// every statement short and its locks and WAL burst small.
pub const MAX_DELETE_CHUNK_ROWS: u32 = 10_000;

/// What both `run` and `schedule` take.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days events are kept. The same variable the gateway's validator reads,
    /// so what is accepted and what is kept agree.
    #[arg(long, env = "RETENTION_DAYS", value_name = "RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RETENTION_DAYS)))]
    pub retention_days: u32,
    /// Per-service retention in days, `service=days,…` (e.g.
    /// `audit-service=365,debug=3`). Partitions are dropped only past the
    /// longest retention in force; shorter ones are expired by chunked deletes.
    #[arg(
        long,
        env = "RETENTION_OVERRIDES",
        value_name = "RETENTION_OVERRIDES",
        default_value = ""
    )]
    pub retention_overrides: RetentionOverrides,
    /// Daily partitions to create ahead of today (at least 1: with none, the
    /// hours between midnight and the next pass land in the default
    /// partition, and that pass has to move them).
    #[arg(long, env = "PRECREATE_DAYS", value_name = "PRECREATE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub precreate_days: u32,
    /// Most rows one DELETE statement removes (1-10000).
    #[arg(long, env = "DELETE_CHUNK_ROWS", value_name = "DELETE_CHUNK_ROWS", default_value_t = MAX_DELETE_CHUNK_ROWS, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DELETE_CHUNK_ROWS)))]
    pub delete_chunk_rows: u32,
    /// Pause between two DELETE chunks, in milliseconds: leaves I/O to ingest
    /// and lets autovacuum and replicas keep up.
    #[arg(long, env = "DELETE_PAUSE_MS", value_name = "DELETE_PAUSE_MS", default_value = "10", value_parser = parse_millis)]
    pub delete_pause: Duration,
    /// `lock_timeout` for partition DDL, in milliseconds. A DETACH waiting for
    /// its lock blocks every insert queued behind it, so it gives up quickly
    /// and retries rather than stall ingest.
    #[arg(long, env = "DDL_LOCK_TIMEOUT_MS", value_name = "DDL_LOCK_TIMEOUT_MS", default_value = "500", value_parser = parse_positive_millis)]
    pub ddl_lock_timeout: Duration,
    /// Retries of a DDL statement that timed out on its lock, with backoff.
    #[arg(long, env = "DDL_LOCK_RETRIES", value_name = "DDL_LOCK_RETRIES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub ddl_lock_retries: u32,
    /// Print what would be created, dropped and deleted; change nothing.
    #[arg(long, env = "DRY_RUN")]
    pub dry_run: bool,
    /// Pretend the time is this (RFC 3339), for tests and rehearsals.
    #[arg(long, env = "RETENTION_NOW", value_name = "RETENTION_NOW", hide = true, value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            default_days: self.retention_days,
            overrides: self.retention_overrides.clone(),
        }
    }

    /// The clock a pass runs at: `--now` when set, else the system's.
    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time ({e})"))
}

/// A cron schedule tokio-cron-scheduler accepts. The classic five fields
/// (`0 2 * * *`) are accepted and get a leading `0` seconds field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule(String);

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_cron(s: &str) -> Result<CronSchedule, String> {
    let fields = s.split_whitespace().count();
    let normalised = match fields {
        5 => format!("0 {}", s.trim()),
        6 | 7 => s.trim().to_owned(),
        _ => {
            return Err(format!(
                "expected 5 fields (minute hour day month weekday), or 6-7 with seconds (and year), got {fields}"
            ));
        }
    };
    tokio_cron_scheduler::Job::new_async(normalised.as_str(), |_, _| Box::pin(async {}))
        .map_err(|e| format!("not a cron schedule ({e})"))?;
    Ok(CronSchedule(normalised))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        retention: RetentionArgs,
    }

    #[test]
    fn defaults_and_bad_values_name_the_variable() {
        let ok = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(ok.retention.retention_days, 30);
        assert_eq!(ok.retention.precreate_days, 7);
        assert_eq!(ok.retention.delete_chunk_rows, 10_000);
        assert!(!ok.retention.dry_run && ok.retention.now.is_none());
        for (args, var) in [
            (
                ["probe", "--retention-overrides", "debug"],
                "RETENTION_OVERRIDES",
            ),
            (["probe", "--retention-days", "0"], "RETENTION_DAYS"),
            (
                ["probe", "--delete-chunk-rows", "10001"],
                "DELETE_CHUNK_ROWS",
            ),
            (["probe", "--now", "yesterday"], "RETENTION_NOW"),
            (["probe", "--ddl-lock-timeout", "0"], "DDL_LOCK_TIMEOUT_MS"),
        ] {
            let err = Probe::try_parse_from(args).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn cron_takes_five_or_six_fields() {
        assert_eq!(parse_cron("0 2 * * *").unwrap().as_str(), "0 0 2 * * *");
        assert_eq!(
            parse_cron("*/5 * * * * *").unwrap().as_str(),
            "*/5 * * * * *"
        );
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("0 99 * * *").is_err());
    }
}
