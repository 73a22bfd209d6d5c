//! Starting gateways in-process against the test Redis (a key prefix of
//! their own) and PostgreSQL (a database of their own), a minimal HTTP/1.1
//! client over raw TCP (so tests can also misbehave like slow clients), and a
//! Redis server of a test's own for the fault tests.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use eventline_shared::EnrichedEvent;
use eventline_shared::api_key::{self, KeyPepper, Scopes};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::stream_codec;
pub use eventline_shared::testkit::http::{Response, read_response, request, request_from};
pub use eventline_shared::testkit::servers::LocalRedis;
use eventline_shared::testkit::{self, TestDatabase};
use ingest_gateway::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const PEPPER: &str = "gateway-test-pepper-0123456789abcdef";

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
    let mut args: Vec<String> = vec![
        "ingest-gateway".into(),
        "--redis-url".into(),
        redis_url.into(),
        "--redis-key-prefix".into(),
        prefix.into(),
        "--redis-timeout".into(),
        "500".into(),
        "--stream-length-refresh".into(),
        "50".into(),
        "--rate-limit-sync".into(),
        "50".into(),
        "--key-cache-ttl".into(),
        "1".into(),
        "--shutdown-grace".into(),
        "2".into(),
    ];
    match db_url {
        Some(url) => args.extend([
            "--database-url".into(),
            url.to_owned(),
            "--key-pepper".into(),
            PEPPER.into(),
        ]),
        None => args.extend(["--auth-required".into(), "false".into()]),
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("test config parses");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        ingest_gateway::run(config, listener, stop)
            .await
            .expect("gateway runs");
    });
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

/// Creates a key; the gateway sees it after its next key reload.
pub async fn create_key(db: &TestDatabase, scopes: &str) -> String {
    let pepper: KeyPepper = PEPPER.parse().expect("pepper");
    let (_, key) = api_key::create(
        &db.pool,
        &pepper,
        "test",
        Scopes::parse_list(scopes).expect("scopes"),
    )
    .await
    .expect("create key");
    key
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

/// Every entry of a stream, decoded.
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
        .map(|entry| {
            let field = |name: &str| match entry.map.get(name) {
                Some(redis::Value::BulkString(bytes)) => Some(bytes.clone()),
                _ => None,
            };
            let event = stream_codec::decode(field("v").as_deref(), field("e").as_deref())
                .expect("entry decodes");
            (entry.id, event)
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
