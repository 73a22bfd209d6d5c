//! The gateway's configuration: every flag with an environment variable,
//! checked before anything is bound or connected.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use eventline_shared::config::{
    AuthArgs, DatabaseArgs, MissingPepper, RedisArgs, StreamShards, TelemetryArgs,
    parse_positive_millis,
};
use eventline_shared::server::ListenArgs;
use eventline_shared::validate::EventLimits;

pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ingest-gateway",
    version,
    about = "eventline's HTTP ingest gateway"
)]
pub struct Config {
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub limits: EventLimits,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub rate_limit: RateLimitArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Largest request body, in bytes, after gzip decompression.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most events in one batch request.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch_events: u32,
    /// Most log records in one OTLP request (`/v1/logs`); above the
    /// Collector's default batch of 8192, so a default Collector is not
    /// refused. Counted before decoding a protobuf body.
    #[arg(long, env = "MAX_LOG_RECORDS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_log_records: u32,
    /// Longest time a client may take to send its request headers, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", value_name = "HEADER_READ_TIMEOUT_MS", default_value = "5000", value_parser = parse_positive_millis)]
    pub header_read_timeout: Duration,
    /// Longest time a client may take to send its request body, in milliseconds.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", value_name = "BODY_READ_TIMEOUT_MS", default_value = "10000", value_parser = parse_positive_millis)]
    pub body_read_timeout: Duration,
    /// Requests handled at once; beyond it, 503 with Retry-After at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 4096)]
    pub max_concurrent_requests: usize,
    /// Open connections; beyond it, new connections are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Take the client address from the last `X-Forwarded-For` hop (only
    /// behind a proxy that sets it).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub shards: StreamShards,
    /// Stream length above which ingest answers 429 (the workers are behind).
    #[arg(long, env = "STREAM_HIGH_WATER", default_value_t = 1_000_000)]
    pub stream_high_water: u64,
    /// How often the stream length is refreshed, in milliseconds.
    #[arg(long, env = "STREAM_LENGTH_REFRESH_MS", value_name = "STREAM_LENGTH_REFRESH_MS", default_value = "250", value_parser = parse_positive_millis)]
    pub stream_length_refresh: Duration,
    /// Consecutive Redis failures that open the circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long the open breaker fails requests before letting one through, in milliseconds.
    #[arg(long, env = "BREAKER_COOLDOWN_MS", value_name = "BREAKER_COOLDOWN_MS", default_value = "1000", value_parser = parse_positive_millis)]
    pub breaker_cooldown: Duration,
    /// Redis connections the hot path multiplexes requests over. One
    /// connection batches more commands per write than several (measured).
    #[arg(long, env = "REDIS_PUBLISH_CONNECTIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub publish_connections: u32,
    /// Writers per shard that group concurrent single-event requests into
    /// one stream entry (group commit); 0 writes each request as its own
    /// entry.
    #[arg(long, env = "GROUP_WRITERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub group_writers: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitArgs {
    /// Events per second one API key may send, over all gateway replicas; 0 turns it off.
    #[arg(
        long = "rate-limit-key-per-second",
        env = "RATE_LIMIT_KEY_PER_SECOND",
        value_name = "RATE_LIMIT_KEY_PER_SECOND",
        default_value_t = 100_000
    )]
    pub key_per_second: u64,
    /// Events one API key may send in a burst.
    #[arg(
        long = "rate-limit-key-burst",
        env = "RATE_LIMIT_KEY_BURST",
        value_name = "RATE_LIMIT_KEY_BURST",
        default_value_t = 200_000
    )]
    pub key_burst: u64,
    /// Requests per second one client address may make; 0 turns it off.
    #[arg(
        long = "rate-limit-ip-per-second",
        env = "RATE_LIMIT_IP_PER_SECOND",
        value_name = "RATE_LIMIT_IP_PER_SECOND",
        default_value_t = 100_000
    )]
    pub ip_per_second: u64,
    /// Requests one client address may make in a burst.
    #[arg(
        long = "rate-limit-ip-burst",
        env = "RATE_LIMIT_IP_BURST",
        value_name = "RATE_LIMIT_IP_BURST",
        default_value_t = 200_000
    )]
    pub ip_burst: u64,
    /// Requests a failed authentication costs against the address's limit,
    /// so keys cannot be guessed at line rate.
    #[arg(long, env = "AUTH_FAILURE_COST", default_value_t = 1000)]
    pub auth_failure_cost: u64,
    /// How often local buckets are reconciled with Redis, in milliseconds.
    #[arg(long = "rate-limit-sync", env = "RATE_LIMIT_SYNC_MS", value_name = "RATE_LIMIT_SYNC_MS", default_value = "100", value_parser = parse_positive_millis)]
    pub sync_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    MissingPepper(#[from] MissingPepper),
}

impl Config {
    /// Checks rules that involve several values.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.auth.pepper()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_cooldowns_refuse_zero() {
        for (flag, var) in [
            ("--header-read-timeout", "HEADER_READ_TIMEOUT_MS"),
            ("--body-read-timeout", "BODY_READ_TIMEOUT_MS"),
            ("--breaker-cooldown", "BREAKER_COOLDOWN_MS"),
        ] {
            let err = Config::try_parse_from(["ingest-gateway", flag, "0"]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains("at least 1"), "{text}");
            assert!(Config::try_parse_from(["ingest-gateway", flag, "1"]).is_ok());
        }
    }
}
