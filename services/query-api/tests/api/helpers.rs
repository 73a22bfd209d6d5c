//! Starting query-apis in-process against the test PostgreSQL (a database of
//! their own) and Redis (a key prefix of their own), storing events the way
//! the worker does (so the hourly rollup is right), and reading a
//! Server-Sent Events stream as it arrives (the plain requests are
//! `testkit::http`'s).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::config::{RedisArgs, SecretUrl};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::stream_codec;
pub use eventline_shared::testkit::http::{Response, Streaming, request};
use eventline_shared::testkit::serve::{Served, serve_args};
use eventline_shared::testkit::{self, TestDatabase, wait_until};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::batch_insert;
use worker::copy_binary::EventRow;

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

/// The command line of a query-api on `redis` and the database at
/// `database_url`, with keys (the test pepper) or without.
fn argv(redis: &RedisArgs, database_url: &str, auth: bool, extra: &[&str]) -> Vec<String> {
    let mut args = testkit::serve::keyed_service_args("query-api", redis, database_url);
    if !auth {
        args.extend(["--auth-required".to_owned(), "false".to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn spawn(auth: bool, redis: RedisArgs, extra: &[&str]) -> TestApp {
    testkit::init_logging();
    let db = TestDatabase::migrated().await;
    let args = argv(&redis, &db.url, auth, extra);
    let shutdown = CancellationToken::new();
    let addr = serve_args(args, query_api::run, shutdown.clone())
        .await
        .addr;
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
    let args = argv(&testkit::redis_args(), database_url, true, extra);
    serve_args(args, query_api::run, CancellationToken::new())
        .await
        .addr
}

/// A gateway without auth on the shared test Redis (a prefix of its own).
pub async fn open_gateway(stop: &CancellationToken) -> Served {
    let redis = testkit::redis_args();
    serve_args(
        [
            "ingest-gateway",
            "--redis-url",
            redis.redis_url.expose(),
            "--redis-key-prefix",
            &redis.redis_key_prefix,
            "--auth-required",
            "false",
        ],
        ingest_gateway::run,
        stop.clone(),
    )
    .await
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

    /// XADDs an event onto a stream as the gateway writes a single-event
    /// request; returns its entry id.
    pub async fn xadd(&self, stream: &str, event: &EnrichedEvent) -> String {
        self.xadd_request(stream, std::slice::from_ref(event)).await
    }

    /// XADDs `events` as one request's entry (format 2), as the gateway
    /// writes a batch; returns the entry id.
    pub async fn xadd_request(&self, stream: &str, events: &[EnrichedEvent]) -> String {
        let mut entry = stream_codec::EntryWriter::new(Some("req-test"), 0).expect("encode");
        for event in events {
            entry.push(event).expect("encode");
        }
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(stream_codec::FIELD_VERSION)
            .arg(stream_codec::FORMAT_V2)
            .arg(stream_codec::FIELD_EVENT)
            .arg(entry.finish())
            .query_async(&mut self.conn.clone())
            .await
            .expect("XADD")
    }

    pub async fn create_key(&self, scopes: &str) -> String {
        testkit::create_key(&self.db.pool, scopes).await
    }
}

/// A key of each scope.
pub struct ScopedKeys {
    pub query: String,
    pub admin: String,
    pub ingest: String,
}

impl TestApp {
    /// A key of each scope, once the query-api knows them: keys made after
    /// start-up are seen after the next reload (1 s here). The ingest key is
    /// made last: once it is known, all are.
    pub async fn key_of_each_scope(&self) -> ScopedKeys {
        let query = self.create_key("query").await;
        let admin = self.create_key("admin").await;
        let ingest = self.create_key("ingest").await;
        let loaded = wait_until(Duration::from_secs(5), || async {
            self.get_with_key("/v1/services", &ingest).await.status == 403
        })
        .await;
        assert!(loaded);
        ScopedKeys {
            query,
            admin,
            ingest,
        }
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
