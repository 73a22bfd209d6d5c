//! The baseline the gateway is measured against (`load-tests/gateway-wrk.sh`):
//! the least an HTTP-to-Redis ingest can do. It parses the JSON into a
//! `serde_json::Value` (no rules), XADDs the body as is, and answers 202. No
//! auth, no rate limits, no metrics, no request ids.
//!
//! `--mode script` instead calls one Lua script that does a token-bucket
//! check and the XADD together: the "fold the rate limit into the XADD round
//! trip" design, measured against our local-buckets design (ADR 0006).
//!
//! Usage: bare_gateway <listen addr> <redis url> <stream key> [xadd|script]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use redis::aio::ConnectionManager;

// The same allocator as the gateway, so the comparison is of the work done.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FOLDED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[2], 't', 'ts')
local tokens = tonumber(s[1]) or 1e9
local ts = tonumber(s[2]) or now
tokens = math.min(1e9, tokens + (now - ts) * 1e6)
if tokens < 1 then return 0 end
redis.call('HSET', KEYS[2], 't', tokens - 1, 'ts', now)
redis.call('XADD', KEYS[1], '*', 'v', '1', 'e', ARGV[1])
return 1
";

#[derive(Clone)]
struct Bare {
    redis: ConnectionManager,
    stream: String,
    script: Option<redis::Script>,
}

async fn ingest(State(bare): State<Bare>, body: Bytes) -> StatusCode {
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return StatusCode::BAD_REQUEST;
    }
    let mut conn = bare.redis.clone();
    let result = match &bare.script {
        None => {
            redis::cmd("XADD")
                .arg(&bare.stream)
                .arg("*")
                .arg("v")
                .arg("1")
                .arg("e")
                .arg(&body[..])
                .exec_async(&mut conn)
                .await
        }
        Some(script) => script
            .key(&bare.stream)
            .key(format!("{}:bucket", bare.stream))
            .arg(&body[..])
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop),
    };
    match result {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A batch: parse the array, XADD each event in one pipeline.
async fn ingest_batch(State(bare): State<Bare>, body: Bytes) -> StatusCode {
    let Ok(events) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut pipe = redis::pipe();
    for event in &events {
        let Ok(bytes) = serde_json::to_vec(event) else {
            return StatusCode::BAD_REQUEST;
        };
        pipe.cmd("XADD")
            .arg(&bare.stream)
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("e")
            .arg(bytes)
            .ignore();
    }
    let mut conn = bare.redis.clone();
    match pipe.exec_async(&mut conn).await {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, url, stream, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: bare_gateway <listen addr> <redis url> <stream key> [xadd|script]".into(),
        );
    };
    let addr: SocketAddr = addr.parse()?;
    let redis = redis::Client::open(url.as_str())?
        .get_connection_manager()
        .await?;
    let script = match rest.first().map(String::as_str) {
        Some("script") => Some(redis::Script::new(FOLDED)),
        _ => None,
    };
    let bare = Bare {
        redis,
        stream: stream.clone(),
        script,
    };
    let app = Router::new()
        .route("/v1/events", post(ingest))
        .route("/v1/events/batch", post(ingest_batch))
        .with_state(bare);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
