//! Keys, scopes, rate limits and backpressure.

use std::time::Duration;

use eventline_shared::testkit::create_key;

use crate::helpers::*;

const EVENT: &str = r#"{"service":"s","message":"m"}"#;

#[tokio::test]
async fn keys_scopes_and_revocation() {
    let (gw, db) = secured_gateway(&[]).await;
    let ingest = create_key(&db.pool, "ingest").await;
    let query_only = create_key(&db.pool, "query").await;
    // Keys created after start-up are seen at the next reload (1 s in tests).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "missing_api_key");
    let res = post_json(
        gw.addr,
        "/v1/events",
        EVENT,
        Some("evl_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "invalid_api_key");
    let res = post_json(gw.addr, "/v1/events", EVENT, Some(&query_only)).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.error_code(), "insufficient_scope");

    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, Some(&ingest))
            .await
            .status,
        202
    );
    let res = request(
        gw.addr,
        "POST",
        "/v1/events/batch",
        &[("X-API-Key", &ingest)],
        format!("[{EVENT}]").as_bytes(),
    )
    .await;
    assert_eq!(res.status, 202);

    let prefix = eventline_shared::api_key::key_prefix(&ingest)
        .unwrap()
        .to_owned();
    eventline_shared::api_key::revoke(&db.pool, &prefix)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, Some(&ingest))
            .await
            .status,
        401
    );
    assert_eq!(
        stream_events(&gw.redis_url, &gw.keys.stream(0)).await.len(),
        2
    );
}

#[tokio::test]
async fn failed_keys_count_against_the_address() {
    // 20 requests/s per address, burst 20; a failed key costs 10.
    let (gw, db) = secured_gateway(&[
        "--rate-limit-ip-per-second",
        "20",
        "--rate-limit-ip-burst",
        "20",
        "--auth-failure-cost",
        "10",
    ])
    .await;
    let key = create_key(&db.pool, "ingest").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..2 {
        let res = post_json(gw.addr, "/v1/events", EVENT, Some("evl_bad")).await;
        assert_eq!(res.status, 401);
    }
    // The address is now out of tokens, even with a good key.
    let res = post_json(gw.addr, "/v1/events", EVENT, Some(&key)).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.error_code(), "rate_limited");
    assert!(res.header("retry-after").is_some());
}

#[tokio::test]
async fn a_flood_from_one_address_does_not_limit_another() {
    let (gw, db) = secured_gateway(&[
        "--rate-limit-ip-per-second",
        "5",
        "--rate-limit-ip-burst",
        "5",
    ])
    .await;
    let flooder = create_key(&db.pool, "ingest").await;
    let neighbour = create_key(&db.pool, "ingest").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let post_from = |ip: &str, key: &str| {
        let (ip, key) = (ip.parse().ok(), key.to_owned());
        async move { post_json_from(ip, gw.addr, "/v1/events", EVENT, Some(&key)).await }
    };

    let mut limited = 0;
    for _ in 0..20 {
        let res = post_from("127.0.0.1", &flooder).await;
        match res.status {
            202 => {}
            429 => {
                assert_eq!(res.error_code(), "rate_limited");
                assert!(res.header("retry-after").is_some());
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited >= 10, "only {limited} of 20 limited");
    // Another address is served while the first is out of tokens.
    assert_eq!(post_from("127.0.0.2", &neighbour).await.status, 202);
}

#[tokio::test]
async fn a_key_limit_holds_across_two_gateways_sharing_redis() {
    let db = eventline_shared::testkit::TestDatabase::migrated().await;
    let redis = eventline_shared::testkit::redis_args();
    let flags = [
        "--rate-limit-key-per-second",
        "1",
        "--rate-limit-key-burst",
        "30",
    ];
    let a = spawn_gateway(
        redis.redis_url.expose(),
        &redis.redis_key_prefix,
        Some(&db),
        &flags,
    )
    .await;
    let b = spawn_gateway(
        redis.redis_url.expose(),
        &redis.redis_key_prefix,
        Some(&db),
        &flags,
    )
    .await;
    let key = create_key(&db.pool, "ingest").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Both replicas have served the key (a replica's first sight of a key
    // grants a local burst until its first sync: see docs/adr/0006).
    assert_eq!(
        post_json(b.addr, "/v1/events", EVENT, Some(&key))
            .await
            .status,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Gateway A spends the rest of the key's burst…
    let batch = format!("[{}]", [EVENT; 29].join(","));
    let res = post_json(a.addr, "/v1/events/batch", &batch, Some(&key)).await;
    assert_eq!(res.status, 202);
    // …and once the replicas have synced, gateway B knows it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut accepted_by_b = 0;
    for _ in 0..10 {
        if post_json(b.addr, "/v1/events", EVENT, Some(&key))
            .await
            .status
            == 202
        {
            accepted_by_b += 1;
        }
    }
    // At 1 token/s, B may see a refill or two, never its own full burst.
    assert!(accepted_by_b <= 2, "gateway B accepted {accepted_by_b}");

    // A different key is unaffected.
    let other = create_key(&db.pool, "ingest").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        post_json(b.addr, "/v1/events", EVENT, Some(&other))
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn backpressure_answers_429_over_the_high_water_mark() {
    let gw = open_gateway(&["--stream-high-water", "5"]).await;
    let batch = format!("[{}]", [EVENT; 10].join(","));
    assert_eq!(
        post_json(gw.addr, "/v1/events/batch", &batch, None)
            .await
            .status,
        202
    );
    // The length is refreshed every 50 ms in tests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = post_json(gw.addr, "/v1/events", EVENT, None).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.error_code(), "backpressure");
    assert!(res.header("retry-after").is_some());
    let buffer = request(gw.addr, "GET", "/health/buffer", &[], b"").await;
    assert_eq!(buffer.status, 503);
    assert_eq!(buffer.json()["stream_length"], 10);

    // The workers catch up (here: the stream is trimmed) and ingest resumes.
    let client = redis::Client::open(gw.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg(gw.keys.stream(0))
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post_json(gw.addr, "/v1/events", EVENT, None).await.status,
        202
    );
}
