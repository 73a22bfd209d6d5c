//! The worker's configuration: every flag has an environment variable, every
//! value is typed and checked by clap before anything connects, and a bad one
//! ends the process with one line naming the variable (see
//! [`eventline_shared::config::parse_or_exit`]).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser};
use eventline_shared::config::{
    DatabaseArgs, RedisArgs, StreamShards, TelemetryArgs, parse_millis, parse_positive_millis,
    parse_positive_seconds,
};
use eventline_shared::server::ListenArgs;

/// The default metrics/health address of the worker (the contract's 9091).
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9091);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "worker",
    version,
    about = "Move events from the Redis streams into PostgreSQL, exactly once"
)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This worker's name in the consumer group. Must differ between live
    /// workers; defaults to `POD_NAME`, else `<hostname>-<pid>`.
    #[arg(long, env = "CONSUMER")]
    pub consumer: Option<String>,
    #[command(flatten)]
    pub shards: StreamShards,
    /// Events in one batch: reading stops once a batch holds this many (an
    /// entry's events are never split, so a request larger than this is a
    /// batch of its own). With `MAX_IN_FLIGHT_BATCHES`, what one shard holds
    /// in memory; docs/adr/0010-worker-batch-insert.md.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2500, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch_size: u32,
    /// Longest wait, in milliseconds, for a batch to fill once its first entry arrived.
    #[arg(long, env = "FLUSH_INTERVAL_MS", value_name = "FLUSH_INTERVAL_MS", default_value = "100", value_parser = parse_millis)]
    pub flush_interval: Duration,
    /// Batches of one shard being inserted at once (reading the next while
    /// the previous ones commit).
    #[arg(long, env = "MAX_IN_FLIGHT_BATCHES", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_in_flight_batches: u32,
    /// An entry delivered more often than this goes to the dead-letter stream.
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_deliveries: u64,
    /// Entries pending this long (milliseconds) on any consumer are claimed by
    /// this one; keep it well above the slowest batch.
    #[arg(long, env = "CLAIM_IDLE_MS", value_name = "CLAIM_IDLE_MS", default_value = "60000", value_parser = parse_positive_millis)]
    pub claim_idle: Duration,
    /// How often (milliseconds) to look for entries to claim.
    #[arg(long, env = "CLAIM_INTERVAL_MS", value_name = "CLAIM_INTERVAL_MS", default_value = "5000", value_parser = parse_millis)]
    pub claim_interval: Duration,
    /// How long a dedup claim lives at least, in seconds (claims live one
    /// to two of these; every worker must use the same value).
    #[arg(long, env = "DEDUP_TTL_SECONDS", value_name = "DEDUP_TTL_SECONDS", default_value = "600", value_parser = parse_positive_seconds)]
    pub dedup_ttl: Duration,
    /// How often (milliseconds) to trim the streams and refresh the stream
    /// gauges. Each trim blocks Redis while it frees what it removes, so often
    /// and small beats rare and large (ADR 0011).
    #[arg(long, env = "TRIM_INTERVAL_MS", value_name = "TRIM_INTERVAL_MS", default_value = "1000", value_parser = parse_positive_millis)]
    pub trim_interval: Duration,
    /// A batch whose every entry was freshly claimed in Redis is `COPY`ed
    /// straight into `events` with the rollup computed by the worker, and
    /// redone on the guarded path (`INSERT … ON CONFLICT DO NOTHING`) only when
    /// a row existed after all (ADR 0010). `false` sends every batch through
    /// the guarded path.
    #[arg(long, env = "COPY_FRESH_BATCHES", default_value_t = true, action = clap::ArgAction::Set)]
    pub copy_fresh_batches: bool,
    /// First retry delay after a transient error, in milliseconds; doubles up to `RETRY_MAX_MS`.
    #[arg(long, env = "RETRY_BASE_MS", value_name = "RETRY_BASE_MS", default_value = "100", value_parser = parse_millis)]
    pub retry_base: Duration,
    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "RETRY_MAX_MS", value_name = "RETRY_MAX_MS", default_value = "5000", value_parser = parse_millis)]
    pub retry_max: Duration,
    /// Consecutive transient database failures that open the circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,
    /// How long (milliseconds) the open breaker keeps every batch away from
    /// the database before one probe is let through.
    #[arg(long, env = "BREAKER_OPEN_MS", value_name = "BREAKER_OPEN_MS", default_value = "5000", value_parser = parse_millis)]
    pub breaker_open: Duration,
}

impl WorkerArgs {
    /// The consumer name: `--consumer`, else `POD_NAME`, else `<hostname>-<pid>`
    /// (the pid keeps two workers on one host apart).
    pub fn consumer_name(&self) -> String {
        if let Some(name) = self.consumer.as_deref().filter(|n| !n.is_empty()) {
            return name.to_owned();
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        format!("{host}-{}", std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::try_parse_from(["worker", "--batch-size", "0"]).unwrap_err();
        assert!(err.to_string().contains("BATCH_SIZE"), "{err}");
        let err = Config::try_parse_from(["worker", "--claim-idle", "soon"]).unwrap_err();
        assert!(err.to_string().contains("CLAIM_IDLE_MS"), "{err}");
        let err = Config::try_parse_from(["worker", "--copy-fresh-batches", "maybe"]).unwrap_err();
        assert!(err.to_string().contains("COPY_FRESH_BATCHES"), "{err}");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = Config::try_parse_from(["worker"]).unwrap();
        assert_eq!(config.worker.dedup_ttl, Duration::from_secs(600));
        assert_eq!(config.worker.shards.count, 1);
        assert!(config.worker.copy_fresh_batches);
        let named = Config::try_parse_from(["worker", "--consumer", "w-1"]).unwrap();
        assert_eq!(named.worker.consumer_name(), "w-1");
    }
}
