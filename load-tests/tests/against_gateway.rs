//! The generator against a real gateway, started in-process on the test
//! Redis with a key prefix of its own (no auth): every accepted event is on
//! the stream once, and 429s are waited out and retried.

use std::net::SocketAddr;

use clap::Parser;
use eventline_load::cli::{Cli, Command, RunArgs};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::testkit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Gateway {
    addr: SocketAddr,
    keys: RedisKeys,
    redis_url: String,
    shutdown: CancellationToken,
}

async fn gateway(extra: &[&str]) -> Gateway {
    testkit::init_logging();
    let redis = testkit::redis_args();
    let redis_url = redis.redis_url.expose().to_owned();
    let mut args = vec![
        "ingest-gateway",
        "--redis-url",
        &redis_url,
        "--redis-key-prefix",
        &redis.redis_key_prefix,
        "--auth-required",
        "false",
        "--stream-length-refresh",
        "50",
        "--rate-limit-sync",
        "50",
    ];
    args.extend_from_slice(extra);
    let config = ingest_gateway::config::Config::try_parse_from(args).expect("gateway config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(ingest_gateway::run(config, listener, shutdown.clone()));
    Gateway {
        addr,
        keys: RedisKeys::new(redis.redis_key_prefix.clone()),
        redis_url,
        shutdown,
    }
}

fn run_args(gw: &Gateway, flags: &[&str]) -> RunArgs {
    let target = format!("http://{}", gw.addr);
    let mut argv = vec!["eventline-load", "run", "--target", &target, "--quiet"];
    argv.extend_from_slice(flags);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Run(args) => *args,
        _ => unreachable!("run"),
    }
}

async fn stream_len(gw: &Gateway) -> u64 {
    let client = redis::Client::open(gw.redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("XLEN")
        .arg(gw.keys.stream(0))
        .query_async(&mut conn)
        .await
        .expect("xlen")
}

#[tokio::test]
async fn open_loop_batches_and_single_events_are_all_accepted_and_on_the_stream() {
    let gw = gateway(&[]).await;
    let batch = eventline_load::run(&run_args(
        &gw,
        &[
            "--rate",
            "2000",
            "--duration",
            "1s",
            "-c",
            "4",
            "-b",
            "20",
            "--duplicate-share",
            "0.1",
        ],
    ))
    .await
    .expect("batch run");
    assert_eq!(batch.requests, 100, "{}", batch.render());
    assert_eq!(batch.statuses.get(&202), Some(&100));
    assert_eq!(batch.events_accepted, 2000);
    assert!(
        batch.latency.p50_ms > 0.0 && batch.latency.p99_ms < 1000.0,
        "{:?}",
        batch.latency
    );

    let single = eventline_load::run(&run_args(
        &gw,
        &[
            "--mode",
            "closed",
            "--max-events",
            "300",
            "-c",
            "3",
            "-b",
            "0",
            "--metadata",
            "big",
        ],
    ))
    .await
    .expect("single run");
    assert_eq!(single.statuses.get(&202), Some(&300), "{}", single.render());
    // Re-sends are accepted too: deduplication is the worker's job.
    assert_eq!(stream_len(&gw).await, 2300);
    gw.shutdown.cancel();
}

#[tokio::test]
async fn rate_limited_requests_wait_for_retry_after_and_are_retried() {
    let gw = gateway(&[
        "--rate-limit-ip-per-second",
        "100",
        "--rate-limit-ip-burst",
        "10",
    ])
    .await;
    let report = eventline_load::run(&run_args(
        &gw,
        &[
            "--rate",
            "300",
            "--duration",
            "300ms",
            "-c",
            "4",
            "-b",
            "0",
            "--drain-timeout",
            "20s",
        ],
    ))
    .await
    .expect("run");
    assert!(
        report.retries > 0,
        "the limiter answered 429: {}",
        report.render()
    );
    assert_eq!(report.statuses.get(&429), Some(&report.retries));
    assert_eq!(report.statuses.get(&202), Some(&90), "{}", report.render());
    assert_eq!(report.abandoned, 0);
    // Waiting out Retry-After shows in the latency from the due time.
    assert!(report.latency.max_ms >= 900.0, "{:?}", report.latency);
    assert_eq!(stream_len(&gw).await, 90);
    gw.shutdown.cancel();
}
