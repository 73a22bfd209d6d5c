//! The query-api's configuration: every flag with an environment variable,
//! checked before anything is bound or connected.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use eventline_shared::config::{
    AuthArgs, DatabaseArgs, MissingPepper, RedisArgs, StreamShards, TelemetryArgs, parse_millis,
    parse_positive_millis, parse_positive_seconds,
};
use eventline_shared::server::ListenArgs;
use eventline_shared::validate::EventLimits;

use crate::params::QueryLimits;

pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);

#[derive(Debug, Clone, Parser)]
#[command(name = "query-api", version, about = "eventline's HTTP query API")]
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
    pub query: QueryArgs,
    /// Replays go to the event's shard; tails read every shard.
    #[command(flatten)]
    pub shards: StreamShards,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub console: crate::console::ConsoleArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Widest `from`..`to` window of one query, in days: a wider one is a
    /// 400, not a slow query.
    #[arg(long, env = "MAX_QUERY_RANGE_DAYS", default_value_t = 31, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub max_query_range_days: u32,
    /// Longest any one database call may take, in milliseconds; also caps
    /// the sessions' `statement_timeout`, so the server gives up too.
    #[arg(long, env = "QUERY_TIMEOUT_MS", value_name = "QUERY_TIMEOUT_MS", default_value = "5000", value_parser = parse_millis)]
    pub query_timeout: Duration,
    /// How long `/v1/stats` and `/v1/services` answers are reused, in
    /// milliseconds; 0 turns the cache off.
    #[arg(long, env = "STATS_CACHE_MS", value_name = "STATS_CACHE_MS", default_value = "1000", value_parser = parse_millis)]
    pub stats_cache: Duration,
    /// How often the retention job's last success is read from
    /// `maintenance_runs` into a metric, in seconds.
    #[arg(long, env = "RETENTION_WATCH_SECONDS", value_name = "RETENTION_WATCH_SECONDS", default_value = "30", value_parser = eventline_shared::config::parse_positive_seconds)]
    pub retention_watch: Duration,
    /// Most rows `page`/`pageSize` may skip (an OFFSET): beyond it, clients
    /// must follow `next_cursor`.
    #[arg(long, env = "MAX_PAGE_OFFSET", default_value_t = 1000)]
    pub max_page_offset: u32,
    /// Most `service` values in one query.
    #[arg(long, env = "MAX_SERVICES_PER_QUERY", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_services: u32,
    /// Live tails (`/v1/tail`) open at once; each holds one Redis connection.
    #[arg(long, env = "MAX_TAILS", default_value_t = 64)]
    pub max_tails: usize,
    /// Live tails one API key may hold open at once, so one client cannot
    /// take every tail (with `AUTH_REQUIRED=false` only `MAX_TAILS` applies).
    #[arg(long, env = "MAX_TAILS_PER_KEY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tails_per_key: u32,
    /// Interval of the SSE heartbeat comment, in milliseconds.
    #[arg(long, env = "TAIL_HEARTBEAT_MS", value_name = "TAIL_HEARTBEAT_MS", default_value = "15000", value_parser = parse_positive_millis)]
    pub tail_heartbeat: Duration,
    /// Longest life of one tail, in seconds; it then ends with `event: end`
    /// and the client resumes with `Last-Event-ID`. Frees the places of
    /// clients that stopped reading without closing their connection.
    #[arg(long = "tail-max-seconds", env = "TAIL_MAX_SECONDS", value_name = "TAIL_MAX_SECONDS", default_value = "3600", value_parser = parse_positive_seconds)]
    pub tail_max_lifetime: Duration,
    /// Most dead letters one `POST /v1/dlq/replay` with `"all": true` replays.
    #[arg(long, env = "MAX_REPLAY", default_value_t = 10_000)]
    pub max_replay: usize,
    /// The gateway's event rules, read from the same variables; the
    /// query-api uses `MAX_SERVICE_LEN`, so every service name the gateway
    /// accepts can be asked for.
    #[command(
        flatten,
        next_help_heading = "Event rules (the gateway's; MAX_SERVICE_LEN applies here)"
    )]
    pub events: EventLimits,
}

impl QueryArgs {
    pub fn max_query_range(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::days(i64::from(self.max_query_range_days))
    }

    /// What one query may ask for.
    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            max_range: self.max_query_range(),
            max_services: self.max_services as usize,
            max_service_len: self.events.max_service_len,
            max_page_offset: self.max_page_offset,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    MissingPepper(#[from] MissingPepper),
    #[error("QUERY_TIMEOUT_MS must be at least 1")]
    ZeroQueryTimeout,
}

impl Config {
    /// Checks rules that involve several values.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.auth.pepper()?;
        if self.query.query_timeout.is_zero() {
            return Err(ConfigError::ZeroQueryTimeout);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let config = Config::try_parse_from(["query-api", "--auth-required", "false"]).unwrap();
        assert!(config.check().is_ok());
        assert_eq!(config.query.max_query_range(), chrono::TimeDelta::days(31));
        let config = Config::try_parse_from(["query-api"]).unwrap();
        assert!(matches!(config.check(), Err(ConfigError::MissingPepper(_))));
        let err = Config::try_parse_from(["query-api", "--query-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("QUERY_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn service_names_follow_the_gateways_max_service_len() {
        let config = Config::try_parse_from(["query-api"]).unwrap();
        assert_eq!(config.query.limits().max_service_len, 100);
        let config = Config::try_parse_from(["query-api", "--max-service-len", "150"]).unwrap();
        assert_eq!(config.query.limits().max_service_len, 150);
    }
}
