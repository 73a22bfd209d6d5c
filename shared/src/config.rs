//! Configuration pieces every service flattens into its own clap `Parser`:
//! Redis, PostgreSQL, logging, API keys and the stream shards, each declared
//! once here. Every flag has an environment variable;
//! values are typed and checked by clap before anything is bound or
//! connected, and a bad one ends the process with one line naming the
//! variable (exit code 64, `EX_USAGE`). Secrets are never printed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// Parses the command line and environment, or prints why not and exits:
/// 0 for `--help`/`--version`, 64 for a bad value.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            // Nothing useful can be done if printing fails; we exit anyway.
            let _ = e.print();
            std::process::exit(code);
        }
    }
}

/// A connection URL whose password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL without checking it; for tests, which build their own.
    #[cfg(feature = "testkit")]
    pub fn for_tests(url: &str) -> Self {
        SecretUrl(url.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

fn parse_redis_url(s: &str) -> Result<SecretUrl, String> {
    redis::Client::open(s).map_err(|e| format!("not a Redis URL ({e})"))?;
    Ok(SecretUrl(s.to_owned()))
}

fn parse_postgres_url(s: &str) -> Result<SecretUrl, String> {
    sqlx::postgres::PgConnectOptions::from_str(s)
        .map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
    Ok(SecretUrl(s.to_owned()))
}

/// Parses a whole number of milliseconds.
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("expected a whole number of milliseconds, got {s:?}"))
}

/// Parses a whole number of seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("expected a whole number of seconds, got {s:?}"))
}

/// Parses a whole number of milliseconds, at least 1: for periods, TTLs and
/// timeouts, where 0 would mean a busy loop, a panicking timer or a call
/// that always times out.
pub fn parse_positive_millis(s: &str) -> Result<Duration, String> {
    match parse_millis(s)? {
        Duration::ZERO => Err("must be at least 1 millisecond".to_owned()),
        d => Ok(d),
    }
}

/// Parses a whole number of seconds, at least 1 (see [`parse_positive_millis`]).
pub fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    match parse_seconds(s)? {
        Duration::ZERO => Err("must be at least 1 second".to_owned()),
        d => Ok(d),
    }
}

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL, `redis://[user:password@]host:port[/db]`.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:16379",
        value_parser = parse_redis_url,
        hide_env_values = true
    )]
    pub redis_url: SecretUrl,
    /// Connections in the pool (each one multiplexes many requests).
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub redis_pool_size: u32,
    /// Longest wait for any one Redis call, in milliseconds: a frozen Redis
    /// answers nothing, and callers must not hang with it.
    #[arg(long, env = "REDIS_TIMEOUT_MS", value_name = "REDIS_TIMEOUT_MS", default_value = "1000", value_parser = parse_positive_millis)]
    pub redis_timeout: Duration,
    /// Prefix of every key eventline writes (`events:{0}` becomes
    /// `<prefix>events:{0}`), to share one Redis between deployments or tests.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,
    /// A Redis Cluster's nodes, comma-separated (`redis://[user:password@]host:port`
    /// or `host:port`; a few masters are enough, the rest is discovered).
    /// When set and not empty, eventline talks to the cluster and `REDIS_URL`
    /// is not used.
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        value_parser = parse_cluster_nodes,
        hide_env_values = true
    )]
    pub redis_cluster_nodes: Option<ClusterNodes>,
    /// Replicas that must confirm an ingest write (`WAIT`) before the
    /// gateway answers 202; 0 answers as soon as the master has it. With a
    /// replica per master, 1 keeps acknowledged events through a failover.
    #[arg(long, env = "REDIS_MIN_REPLICAS_ACK", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub redis_min_replicas_ack: u32,
    /// Longest wait for those replicas, in milliseconds; past it the
    /// gateway answers 503 with `Retry-After`. Must be below `REDIS_TIMEOUT_MS`.
    #[arg(long, env = "REDIS_REPLICA_ACK_TIMEOUT_MS", value_name = "REDIS_REPLICA_ACK_TIMEOUT_MS", default_value = "500", value_parser = parse_positive_millis)]
    pub redis_replica_ack_timeout: Duration,
}

impl RedisArgs {
    /// The cluster's nodes when `REDIS_CLUSTER_NODES` lists some: then
    /// eventline runs on a Redis Cluster.
    pub fn cluster_nodes(&self) -> Option<&ClusterNodes> {
        self.redis_cluster_nodes
            .as_ref()
            .filter(|n| !n.0.is_empty())
    }

    /// Where Redis is, for logs and start-up errors (passwords hidden).
    pub fn describe(&self) -> String {
        match self.cluster_nodes() {
            Some(nodes) => format!("the Redis Cluster at {nodes} (REDIS_CLUSTER_NODES)"),
            None => format!("Redis at {} (REDIS_URL)", self.redis_url.redacted()),
        }
    }
}

/// The seed nodes of a Redis Cluster (`REDIS_CLUSTER_NODES`), whose
/// passwords are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterNodes(Vec<SecretUrl>);

impl ClusterNodes {
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(SecretUrl::expose)
    }

    /// The list as `REDIS_CLUSTER_NODES` takes it, passwords included.
    pub fn expose(&self) -> String {
        self.urls().collect::<Vec<_>>().join(",")
    }
}

impl fmt::Debug for ClusterNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ClusterNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: Vec<String> = self.0.iter().map(SecretUrl::redacted).collect();
        f.write_str(&redacted.join(","))
    }
}

/// Parses `REDIS_CLUSTER_NODES`: comma-separated URLs or `host:port` pairs.
/// Empty (or only commas and spaces) is no cluster, so deployment files can
/// leave the variable empty.
pub fn parse_cluster_nodes(s: &str) -> Result<ClusterNodes, String> {
    let nodes = s
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| {
            let url = if node.contains("://") {
                node.to_owned()
            } else {
                format!("redis://{node}")
            };
            parse_redis_url(&url).map_err(|e| format!("{}: {e}", redact_url(&url)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClusterNodes(nodes))
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, `postgres://user[:password]@host:port/database`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:15432/eventline",
        value_parser = parse_postgres_url,
        hide_env_values = true
    )]
    pub database_url: SecretUrl,
    /// Most connections this process opens.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// Longest wait for a pooled connection (including connecting), in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", value_name = "DB_ACQUIRE_TIMEOUT_MS", default_value = "3000", value_parser = parse_positive_millis)]
    pub db_acquire_timeout: Duration,
    /// `statement_timeout` of every session, in milliseconds; 0 turns it off.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", value_name = "DB_STATEMENT_TIMEOUT_MS", default_value = "30000", value_parser = parse_millis)]
    pub db_statement_timeout: Duration,
}

/// The number of ingest stream shards, `events:{0}` … `events:{N-1}`: the
/// gateway writes them, the workers read them, the query-api replays dead
/// letters to them and tails them, so all three take this one argument and
/// must be given the same value.
#[derive(Debug, Clone, Copy, Args)]
pub struct StreamShards {
    /// Ingest stream shards, `events:{0..N-1}`; the same value for the
    /// gateway, the workers and the query-api.
    #[arg(long = "stream-shards", env = "STREAM_SHARDS", value_name = "STREAM_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub count: u32,
}

/// API-key authentication, as the gateway and query-api take it.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Require an API key with the route's scope. `false` is for local
    /// experiments only.
    #[arg(long, env = "AUTH_REQUIRED", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth_required: bool,
    /// The server-side secret API keys are hashed with (required with auth).
    #[arg(long, env = "KEY_PEPPER", hide_env_values = true)]
    pub key_pepper: Option<crate::api_key::KeyPepper>,
    /// How often the key table is reloaded, in seconds: a new or revoked key
    /// takes effect within this time.
    #[arg(long, env = "KEY_CACHE_TTL_SECONDS", value_name = "KEY_CACHE_TTL_SECONDS", default_value = "10", value_parser = parse_positive_seconds)]
    pub key_cache_ttl: Duration,
}

impl AuthArgs {
    /// The pepper when authentication is on; `Err` when it is on without one.
    pub fn pepper(&self) -> Result<Option<&crate::api_key::KeyPepper>, MissingPepper> {
        match (self.auth_required, &self.key_pepper) {
            (false, _) => Ok(None),
            (true, Some(pepper)) => Ok(Some(pepper)),
            (true, None) => Err(MissingPepper),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "KEY_PEPPER is required when AUTH_REQUIRED is true (generate one with `openssl rand -hex 32`)"
)]
pub struct MissingPepper;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info,eventline_worker=debug`.
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/eventline"),
            "postgres://app:***@db:5432/eventline"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:15432/eventline"),
            "postgres://postgres@127.0.0.1:15432/eventline"
        );
        let url = SecretUrl("redis://u:p@h/0".into());
        assert!(!format!("{url:?} {url}").contains(":p@"));
    }

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Probe::try_parse_from(["probe", "--redis-url", "http://nope"]).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
        let err = Probe::try_parse_from(["probe", "--db-acquire-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("DB_ACQUIRE_TIMEOUT_MS"), "{err}");
        let ok = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(ok.redis.redis_timeout, Duration::from_millis(1000));
        assert!(ok.redis.cluster_nodes().is_none());
    }

    #[test]
    fn cluster_nodes_are_a_list_whose_passwords_stay_hidden() {
        let nodes = parse_cluster_nodes("127.0.0.1:7000, redis://:pw@10.0.0.2:7001,").unwrap();
        assert_eq!(
            nodes.urls().collect::<Vec<_>>(),
            ["redis://127.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
        );
        assert_eq!(
            nodes.to_string(),
            "redis://127.0.0.1:7000,redis://:***@10.0.0.2:7001"
        );
        let err = parse_cluster_nodes("http://x:1").unwrap_err();
        assert!(err.contains("http://x:1"), "{err}");
        let ok = Probe::try_parse_from(["probe", "--redis-cluster-nodes", "b:2"]).unwrap();
        assert!(ok.redis.describe().contains("Cluster at redis://b:2"));
        // Empty is one server, as when a deployment leaves the variable empty.
        let empty = Probe::try_parse_from(["probe", "--redis-cluster-nodes", " , "]).unwrap();
        assert!(empty.redis.cluster_nodes().is_none());
        assert!(empty.redis.describe().starts_with("Redis at redis://"));
    }

    #[test]
    fn periods_and_timeouts_refuse_zero() {
        for (flag, var) in [
            ("--redis-timeout", "REDIS_TIMEOUT_MS"),
            ("--db-acquire-timeout", "DB_ACQUIRE_TIMEOUT_MS"),
        ] {
            let err = Probe::try_parse_from(["probe", flag, "0"]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains("at least 1"), "{text}");
        }
        assert_eq!(
            parse_positive_seconds("0"),
            Err("must be at least 1 second".into())
        );
        assert_eq!(parse_positive_seconds("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_positive_millis("1"), Ok(Duration::from_millis(1)));
        assert!(parse_positive_millis("-1").is_err());
    }
}
