//! Starting query-apis in-process against the test PostgreSQL (a database of
//! their own) and Redis (a key prefix of their own), storing events the way
//! the worker does (so the hourly rollup is right), and reading a
//! Server-Sent Events stream as it arrives (the plain requests are
//! `testkit::http`'s).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use eventline_shared::EnrichedEvent;
use eventline_shared::api_key::{self, KeyPepper, Scopes};
use eventline_shared::config::{RedisArgs, SecretUrl};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::stream_codec;
pub use eventline_shared::testkit::http::{Response, head, request};
use eventline_shared::testkit::{self, TestDatabase};
use query_api::config::Config;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::batch_insert;
use worker::copy_binary::EventRow;

pub const PEPPER: &str = "query-test-pepper-0123456789abcdef";

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDatabase,
    pub redis: RedisArgs,
    pub keys: RedisKeys,
    pub conn: MultiplexedConnection,
    pub shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A query-api without auth.
pub async fn open_app(extra: &[&str]) -> TestApp {
    spawn(false, testkit::redis_args(), extra).await
}

/// A query-api without auth on the Redis at `redis_url` (one the test may
/// stop), with a key prefix of its own.
pub async fn open_app_on_redis(redis_url: &str, extra: &[&str]) -> TestApp {
    let redis = RedisArgs {
        redis_url: SecretUrl::for_tests(redis_url),
        ..testkit::redis_args()
    };
    spawn(false, redis, extra).await
}

/// A query-api that requires keys.
pub async fn secured_app(extra: &[&str]) -> TestApp {
    spawn(true, testkit::redis_args(), extra).await
}

async fn spawn(auth: bool, redis: RedisArgs, extra: &[&str]) -> TestApp {
    testkit::init_logging();
    let db = TestDatabase::migrated().await;
    let mut args: Vec<String> = vec![
        "query-api".into(),
        "--redis-url".into(),
        redis.redis_url.expose().into(),
        "--redis-key-prefix".into(),
        redis.redis_key_prefix.clone(),
        "--database-url".into(),
        db.url.clone(),
        "--key-cache-ttl".into(),
        "1".into(),
        "--shutdown-grace".into(),
        "2".into(),
    ];
    if auth {
        args.extend(["--key-pepper".into(), PEPPER.into()]);
    } else {
        args.extend(["--auth-required".into(), "false".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("test config parses");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        query_api::run(config, listener, stop)
            .await
            .expect("query-api runs");
    });
    let conn = redis::Client::open(redis.redis_url.expose())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    TestApp {
        addr,
        db,
        keys: RedisKeys::new(redis.redis_key_prefix.clone()),
        redis,
        conn,
        shutdown,
    }
}

/// Another query-api with keys on an existing database (and a Redis prefix
/// of its own): a second replica behind the same load balancer. It stops
/// with the test's runtime.
pub async fn spawn_on(database_url: &str, extra: &[&str]) -> SocketAddr {
    let redis = testkit::redis_args();
    let mut args: Vec<String> = vec![
        "query-api".into(),
        "--redis-url".into(),
        redis.redis_url.expose().into(),
        "--redis-key-prefix".into(),
        redis.redis_key_prefix.clone(),
        "--database-url".into(),
        database_url.into(),
        "--key-cache-ttl".into(),
        "1".into(),
        "--key-pepper".into(),
        PEPPER.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("test config parses");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(query_api::run(config, listener, CancellationToken::new()));
    addr
}

impl TestApp {
    pub async fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"").await
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> Response {
        let auth = format!("Bearer {key}");
        request(self.addr, "GET", path, &[("Authorization", &auth)], b"").await
    }

    pub async fn post_json(&self, path: &str, body: &str) -> Response {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// Stores events as the worker does: one transaction, rollup included.
    pub async fn store(&self, events: &[EnrichedEvent]) {
        store(&self.db.pool, events).await;
    }

    /// Creates the daily partitions covering `first..=last`.
    pub async fn partitions(&self, first: DateTime<Utc>, last: DateTime<Utc>) {
        eventline_shared::schema::ensure_partitions(
            &self.db.pool,
            first.date_naive(),
            last.date_naive(),
        )
        .await
        .expect("partitions");
    }

    /// XADDs an event onto a stream as the gateway does; returns its id.
    pub async fn xadd(&self, stream: &str, event: &EnrichedEvent) -> String {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(stream_codec::FIELD_VERSION)
            .arg(stream_codec::FORMAT_VERSION_STR)
            .arg(stream_codec::FIELD_EVENT)
            .arg(stream_codec::encode(event).expect("encode"))
            .query_async(&mut self.conn.clone())
            .await
            .expect("XADD")
    }

    pub async fn create_key(&self, scopes: &str) -> String {
        let pepper: KeyPepper = PEPPER.parse().expect("pepper");
        let (_, key) = api_key::create(
            &self.db.pool,
            &pepper,
            "test",
            Scopes::parse_list(scopes).expect("scopes"),
        )
        .await
        .expect("create key");
        key
    }
}

pub async fn store(pool: &sqlx::PgPool, events: &[EnrichedEvent]) {
    for chunk in events.chunks(5000) {
        let rows: Vec<EventRow> = chunk.iter().map(|e| EventRow::new(e.as_ref())).collect();
        batch_insert::insert(pool, &rows).await.expect("insert");
    }
}

/// An event of `service` at `ts` (milliseconds, as the gateway stores them).
pub fn event_at(service: &str, message: &str, ts: DateTime<Utc>) -> EnrichedEvent {
    let ts = DateTime::from_timestamp_millis(ts.timestamp_millis()).expect("ms");
    EnrichedEvent {
        id: Uuid::now_v7(),
        service: service.into(),
        message: message.into(),
        ts,
        ingested_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("us"),
        event_id: None,
        metadata: None,
        request_id: Some("req-test".into()),
    }
}

/// The start of today (UTC) minus `days`.
pub fn days_ago(days: i64) -> DateTime<Utc> {
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    today - TimeDelta::days(days)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An open `GET` whose response is read as it arrives (Server-Sent Events).
pub struct Streaming {
    pub stream: TcpStream,
    pub received: String,
}

impl Streaming {
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        Self::open_with(addr, path, &[]).await
    }

    /// [`Streaming::open`] with more request headers.
    pub async fn open_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(head("GET", path, &all, 0).as_bytes())
            .await
            .expect("write");
        Streaming {
            stream,
            received: String::new(),
        }
    }

    /// Reads until `needle` has arrived (true) or `timeout` passes (false).
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while !self.received.contains(needle) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.received.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return false,
            }
        }
        true
    }
}

/// Waits until `check` holds, polling every 50 ms; false on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
