//! What every eventline service shares. One line per module:
//!
//! - [`event`]: the valid event and the enriched event on the stream;
//! - [`validate`]: the contract's event rules, with errors naming the field;
//! - [`stream_codec`]: the stream entry format (version + MessagePack);
//! - [`redis_keys`]: every Redis key name, and the shard of an event;
//! - [`circuit_breaker`]: failing fast (or waiting) while a dependency fails;
//! - [`config`]: clap pieces for Redis, PostgreSQL, logging, API keys and the stream shards;
//! - [`telemetry`]: the tracing subscriber (pretty or JSON);
//! - [`request_id`]: `X-Request-Id` in, out, and in every log line;
//! - [`metrics`]: the Prometheus registry and its encoding;
//! - [`health`]: `/health/*` and `/metrics` routes;
//! - [`http_error`]: the JSON error shape of the HTTP APIs;
//! - [`security_headers`]: `nosniff`, the Content-Security-Policy and the referrer policy on every response;
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token, draining;
//! - [`redis_pool`], [`pg_pool`]: connection pools with timeouts;
//! - [`schema`]: embedded migrations, daily partitions, the rollup hour, the retention job's last success;
//! - [`server`]: `--listen`, binding, the HTTP/1 loop (header-read timeout, connection cap, lingering close, graceful shutdown);
//! - [`api_key`]: key generation, hashing, storage and lookup;
//! - [`key_store`]: API-key checks from an in-memory snapshot that reloads itself in the background;
//! - `testkit` (feature `testkit`): isolated databases and key prefixes for tests.

pub mod api_key;
pub mod circuit_breaker;
pub mod config;
pub mod event;
pub mod health;
pub mod http_error;
pub mod key_store;
pub mod metrics;
pub mod pg_pool;
pub mod redis_keys;
pub mod redis_pool;
pub mod request_id;
pub mod schema;
pub mod security_headers;
pub mod server;
pub mod shutdown;
pub mod stream_codec;
pub mod stream_reply;
pub mod stream_stats;
pub mod telemetry;
pub mod validate;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use event::{EnrichedEvent, EnrichedEventRef, ValidEvent};
