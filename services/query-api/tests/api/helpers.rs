//! Starting query-apis in-process against the test PostgreSQL (a database of
//! their own) and Redis (a key prefix of their own), storing events the way
//! the worker does (so the hourly rollup is right), and a minimal HTTP/1.1
//! client over raw TCP that can also read a Server-Sent Events stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use eventline_shared::EnrichedEvent;
use eventline_shared::api_key::{self, KeyPepper, Scopes};
use eventline_shared::config::RedisArgs;
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::stream_codec;
use eventline_shared::testkit::{self, TestDatabase};
use query_api::config::Config;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::batch_insert;
use worker::config::InsertMethod;
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
    spawn(false, extra).await
}

/// A query-api that requires keys.
pub async fn secured_app(extra: &[&str]) -> TestApp {
    spawn(true, extra).await
}

async fn spawn(auth: bool, extra: &[&str]) -> TestApp {
    testkit::init_logging();
    let db = TestDatabase::migrated().await;
    let redis = testkit::redis_args();
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
        let rows: Vec<EventRow> = chunk.iter().cloned().map(EventRow::new).collect();
        batch_insert::insert(pool, InsertMethod::Unnest, &rows)
            .await
            .expect("insert");
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

pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn error_field(&self) -> String {
        self.json()["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn head(method: &str, path: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {body_len}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends one request on a fresh connection and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head(method, path, headers, body.len()).as_bytes())
        .await
        .expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("a response within 30 s")
        .expect("read");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// An open `GET` whose response is read as it arrives (Server-Sent Events).
pub struct Streaming {
    pub stream: TcpStream,
    pub received: String,
}

impl Streaming {
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(head("GET", path, &[("Accept", "text/event-stream")], 0).as_bytes())
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
