//! Redis down, frozen or refusing writes; PostgreSQL down; slow and
//! excessive clients.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

const EVENT: &str = r#"{"service":"s","message":"m"}"#;

#[tokio::test]
async fn redis_down_is_a_503_and_recovery_needs_no_restart() {
    let mut redis = LocalRedis::start("everysec").expect("a private Redis starts");
    let gw = spawn_gateway(&redis.url(), "", None, &["--breaker-cooldown", "200"]).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, None).await.status,
        202
    );

    redis.kill().expect("Redis killed");
    for _ in 0..8 {
        let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
        assert_eq!(res.status, 503);
        assert_eq!(res.error_code(), "unavailable");
        assert!(res.header("retry-after").is_some());
    }
    let ready = request(gw.addr, "GET", "/health/ready", &[], b"").await;
    assert_eq!(ready.status, 503);
    let detailed = request(gw.addr, "GET", "/health/detailed", &[], b"")
        .await
        .json();
    assert_ne!(detailed["service"]["redis_breaker"], "closed");

    redis.up().expect("Redis starts again from its AOF");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
        if res.status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: still {}",
            res.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        request(gw.addr, "GET", "/health/ready", &[], b"")
            .await
            .status,
        200
    );
    // Both events are there: the one accepted before the crash came back
    // from the append-only file (a process crash loses nothing with
    // `appendfsync everysec`), and the one accepted after it.
    assert_eq!(
        stream_events(&redis.url(), &gw.keys.stream(0)).await.len(),
        2
    );
}

#[tokio::test]
async fn a_frozen_redis_is_a_503_within_two_seconds() {
    let redis = LocalRedis::start("everysec").expect("a private Redis starts");
    let gw = spawn_gateway(&redis.url(), "", None, &[]).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, None).await.status,
        202
    );
    redis.freeze().expect("Redis frozen");
    let started = Instant::now();
    let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
    let waited = started.elapsed();
    assert_eq!(res.status, 503);
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    assert_eq!(
        request(gw.addr, "GET", "/health/ready", &[], b"")
            .await
            .status,
        503
    );
    redis.thaw().expect("Redis thawed");
}

#[tokio::test]
async fn out_of_memory_redis_is_a_503() {
    let redis = LocalRedis::start("everysec").expect("a private Redis starts");
    let gw = spawn_gateway(&redis.url(), "", None, &[]).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
    assert_eq!(res.status, 503);
    assert!(res.header("retry-after").is_some());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, None).await.status,
        202
    );
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let gw = open_gateway(&["--header-read-timeout", "300", "--body-read-timeout", "300"]).await;

    // Headers that never end: the connection is closed.
    let (_slow, answer, waited) = unfinished_headers(gw.addr).await;
    assert!(waited < Duration::from_secs(5));
    if let Some(res) = answer {
        assert_eq!(res.status, 408);
    }

    // A body that never arrives: 408.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"se")
        .await
        .unwrap();
    let res = read_response(&mut slow).await.expect("an answer");
    assert_eq!(res.status, 408);
    assert_eq!(res.error_code(), "body_timeout");

    // Meanwhile normal traffic is served.
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, None).await.status,
        202
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let gw = open_gateway(&["--max-connections", "2"]).await;
    let _a = TcpStream::connect(gw.addr).await.unwrap();
    let _b = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok();
    assert!(
        read_response(&mut c).await.is_none(),
        "the third connection is closed without an answer"
    );
    drop(_a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        request(gw.addr, "GET", "/health/live", &[], b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn shutdown_drains_and_readiness_turns_503() {
    let gw = open_gateway(&[]).await;
    assert_eq!(
        request(gw.addr, "GET", "/health/ready", &[], b"")
            .await
            .status,
        200
    );
    gw.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("stops within the grace period")
        .unwrap();
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "no longer listening"
    );
}

/// The gateway needs PostgreSQL only for its API keys, which it caches: with
/// the database down it keeps accepting events with known keys and stays
/// ready; `/health/database` and `/health/detailed` show the outage.
#[tokio::test]
async fn postgres_down_leaves_the_gateway_ready_and_ingesting() {
    use eventline_shared::testkit::{self, servers::LocalPostgres};

    let pg = LocalPostgres::start().expect("a private PostgreSQL starts");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    eventline_shared::schema::migrate(&pool).await.unwrap();
    let key = testkit::create_key(&pool, "ingest").await;
    pool.close().await;
    let redis = testkit::redis_args();
    let gw = spawn_gateway_with_db_url(
        redis.redis_url.expose(),
        &redis.redis_key_prefix,
        Some(&pg.url()),
        &[],
    )
    .await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, Some(&key))
            .await
            .status,
        202
    );
    let database = request(gw.addr, "GET", "/health/database", &[], b"").await;
    assert_eq!(database.status, 200);
    assert_eq!(database.json()["status"], "ok");

    pg.down().expect("PostgreSQL stops");
    // Past a few key reloads (every second in tests), which now fail.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, Some(&key))
            .await
            .status,
        202
    );
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, Some("elk_unknown"))
            .await
            .status,
        401
    );
    let ready = request(gw.addr, "GET", "/health/ready", &[], b"").await;
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let database = request(gw.addr, "GET", "/health/database", &[], b"").await;
    assert_eq!(database.status, 503);
    let detailed = request(gw.addr, "GET", "/health/detailed", &[], b"")
        .await
        .json();
    assert_eq!(detailed["status"], "degraded");
    let postgres = detailed["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "postgres")
        .cloned()
        .unwrap();
    assert_eq!(postgres["ok"], false);
    assert_eq!(
        stream_events(&gw.redis_url, &gw.keys.stream(0)).await.len(),
        2
    );
}
