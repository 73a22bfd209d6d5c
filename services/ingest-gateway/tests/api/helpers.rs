//! Starting gateways in-process against the test Redis (a key prefix of
//! their own) and PostgreSQL (a database of their own), a minimal HTTP/1.1
//! client over raw TCP (so tests can also misbehave like slow clients), and a
//! Redis server of a test's own for the fault tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use eventline_shared::EnrichedEvent;
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::stream_codec;
pub use eventline_shared::testkit::http::{Response, read_response, request, request_from};
use eventline_shared::testkit::serve::{Served, serve_args};
pub use eventline_shared::testkit::servers::LocalRedis;
use eventline_shared::testkit::{self, TestDatabase};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub keys: RedisKeys,
    pub redis_url: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a gateway with `extra` flags on top of the test servers' URLs.
pub async fn spawn_gateway(
    redis_url: &str,
    prefix: &str,
    db: Option<&TestDatabase>,
    extra: &[&str],
) -> TestGateway {
    spawn_gateway_with_db_url(redis_url, prefix, db.map(|db| db.url.as_str()), extra).await
}

/// [`spawn_gateway`] with API keys in the database at `db_url` (any
/// PostgreSQL, a private one that a test stops included).
pub async fn spawn_gateway_with_db_url(
    redis_url: &str,
    prefix: &str,
    db_url: Option<&str>,
    extra: &[&str],
) -> TestGateway {
    testkit::init_logging();
    let mut args = vec![
        "ingest-gateway",
        "--redis-url",
        redis_url,
        "--redis-key-prefix",
        prefix,
        "--redis-timeout",
        "500",
        "--stream-length-refresh",
        "50",
        "--rate-limit-sync",
        "50",
        "--key-cache-ttl",
        "1",
        "--shutdown-grace",
        "2",
    ];
    match db_url {
        Some(url) => args.extend(["--database-url", url, "--key-pepper", testkit::PEPPER]),
        None => args.extend(["--auth-required", "false"]),
    }
    args.extend_from_slice(extra);
    let shutdown = CancellationToken::new();
    let Served { addr, task } = serve_args(args, ingest_gateway::run, shutdown.clone()).await;
    TestGateway {
        addr,
        keys: RedisKeys::new(prefix),
        redis_url: redis_url.to_owned(),
        shutdown,
        task,
    }
}

/// A gateway without auth on the shared test Redis.
pub async fn open_gateway(extra: &[&str]) -> TestGateway {
    let redis = testkit::redis_args();
    spawn_gateway(
        redis.redis_url.expose(),
        &redis.redis_key_prefix,
        None,
        extra,
    )
    .await
}

/// A gateway with auth, and a database holding its keys.
pub async fn secured_gateway(extra: &[&str]) -> (TestGateway, TestDatabase) {
    let db = TestDatabase::migrated().await;
    let redis = testkit::redis_args();
    let gw = spawn_gateway(
        redis.redis_url.expose(),
        &redis.redis_key_prefix,
        Some(&db),
        extra,
    )
    .await;
    (gw, db)
}

/// Sends request headers that never end on a new connection: the
/// connection, the gateway's answer (None when it closed without one) and
/// how long that took.
pub async fn unfinished_headers(addr: SocketAddr) -> (TcpStream, Option<Response>, Duration) {
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write the headers");
    let started = Instant::now();
    let answer = read_response(&mut slow).await;
    (slow, answer, started.elapsed())
}

/// A corpus case's headers as [`request`] takes them.
pub fn header_refs(headers: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str, key: Option<&str>) -> Response {
    post_json_from(None, addr, path, body, key).await
}

/// [`post_json`] from a given local address (see [`request_from`]).
pub async fn post_json_from(
    source: Option<std::net::IpAddr>,
    addr: SocketAddr,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    request_from(source, addr, "POST", path, &headers, body.as_bytes()).await
}

/// Every event of a stream with the id of its entry, decoded, in order.
pub async fn stream_events(redis_url: &str, stream: &str) -> Vec<(String, EnrichedEvent)> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .flat_map(|entry| {
            let field = |name: &str| match entry.map.get(name) {
                Some(redis::Value::BulkString(bytes)) => Some(bytes.clone()),
                _ => None,
            };
            let events = stream_codec::decode(field("v").as_deref(), field("e").as_deref())
                .expect("entry decodes");
            events
                .into_iter()
                .map(move |event| (entry.id.clone(), event))
        })
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// `google.rpc.Status`, the body of every OTLP error, as a client reads it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The cases of a JSON-lines corpus file; a corpus that shrank below 200
/// cases (a generator gone wrong) fails the test.
pub fn corpus_cases<T: serde::de::DeserializeOwned>(corpus: &str) -> Vec<T> {
    let cases: Vec<T> = corpus
        .lines()
        .map(|l| serde_json::from_str(l).expect("corpus line parses"))
        .collect();
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    cases
}
