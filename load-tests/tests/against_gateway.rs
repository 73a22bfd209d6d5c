//! The generator against a real gateway, started in-process on the test
//! Redis with a key prefix of its own (no auth): every accepted event is on
//! the stream once, in JSON and in OTLP, and 429s are waited out and retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use eventline_load::cli::{Cli, Command, RunArgs};
use eventline_load::client::Target;
use eventline_load::driver::{self, RunConfig};
use eventline_shared::redis_keys::RedisKeys;
use eventline_shared::testkit::serve::serve_args;
use eventline_shared::{stream_codec, stream_reply, testkit};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
    let shutdown = CancellationToken::new();
    let addr = serve_args(args, ingest_gateway::run, shutdown.clone())
        .await
        .addr;
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

/// Events on the stream (a request's events are one entry).
async fn stream_len(gw: &Gateway) -> u64 {
    stream_events(gw).await.len() as u64
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

/// The stream's entries, decoded: (dedup key, event) in stream order.
async fn stream_events(gw: &Gateway) -> Vec<(Uuid, eventline_shared::event::EnrichedEvent)> {
    let client = redis::Client::open(gw.redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(gw.keys.stream(0))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    stream_reply::entries("XRANGE", reply)
        .expect("entries")
        .iter()
        .flat_map(|entry| {
            stream_codec::decode(
                entry.field(stream_codec::FIELD_VERSION),
                entry.field(stream_codec::FIELD_EVENT),
            )
            .expect("a decodable entry")
        })
        .map(|event| (event.dedup_key(), event))
        .collect()
}

#[tokio::test]
async fn otlp_records_are_each_on_the_stream_once() {
    let gw = gateway(&[]).await;
    let args = run_args(
        &gw,
        &[
            "--format",
            "otlp",
            "--mode",
            "closed",
            "--max-events",
            "1000",
            "-c",
            "4",
            "-b",
            "50",
            "--duplicate-share",
            "0.1",
        ],
    );
    let plan = eventline_load::plan(&args).expect("plan");
    let tag = eventline_load::run_tag();
    let services = eventline_load::event_gen::service_names(&tag, plan.shape.services);
    let (_, recorder) = driver::run(RunConfig {
        target: Target::parse(&args.target, None).expect("target"),
        plan,
        seed: 5,
        run_tag: tag,
        services: services.clone(),
        drain_timeout: Duration::from_secs(20),
        keep_ids: true,
        progress: false,
        lag: None,
    })
    .await;
    assert_eq!(recorder.requests_done.load(Ordering::Relaxed), 20);
    assert_eq!(recorder.events_accepted.load(Ordering::Relaxed), 1000);
    let totals = recorder.into_totals();
    assert_eq!(
        totals.statuses.get(&200),
        Some(&20),
        "{:?}",
        totals.statuses
    );
    assert_eq!(totals.rejected_events, 0);

    // Each accepted record is one entry, under the key the generator
    // expects; re-sends (same service and event_id) as often as accepted.
    let mut accepted: HashMap<Uuid, u32> = HashMap::new();
    for a in &totals.accepted {
        *accepted.entry(a.dedup_key).or_default() += 1;
    }
    assert!(
        accepted.values().any(|&n| n > 1),
        "the run re-sent some records"
    );
    let stream = stream_events(&gw).await;
    let mut on_stream: HashMap<Uuid, u32> = HashMap::new();
    for (key, event) in &stream {
        *on_stream.entry(*key).or_default() += 1;
        assert!(services.contains(&event.service), "{}", event.service);
        assert!(event.event_id.is_some() && !event.message.is_empty());
        let metadata: serde_json::Value =
            serde_json::from_str(event.metadata.as_deref().expect("metadata")).expect("json");
        assert_eq!(
            metadata["attributes"]["log.record.uid"].as_str(),
            event.event_id.as_deref()
        );
        assert!(metadata["severity_text"].is_string(), "{metadata}");
        assert_eq!(metadata["resource"]["service.name"], event.service.as_str());
    }
    assert_eq!(stream.len(), 1000);
    assert_eq!(on_stream, accepted);

    // The command's own path, one record per request.
    let single = eventline_load::run(&run_args(
        &gw,
        &[
            "--format",
            "otlp",
            "--mode",
            "closed",
            "--max-events",
            "60",
            "-c",
            "2",
            "-b",
            "0",
        ],
    ))
    .await
    .expect("single run");
    assert_eq!(single.statuses.get(&200), Some(&60), "{}", single.render());
    assert_eq!(single.events_accepted, 60);
    assert_eq!(stream_len(&gw).await, 1060);
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

/// `--format json-as-otlp` is the OTLP run's baseline in `make bench`: its
/// JSON events must be stored as the OTLP records of the same seed are, so
/// that the two differ only in the path they take.
#[tokio::test]
async fn json_as_otlp_events_are_stored_as_the_otlp_records_of_the_same_seed() {
    let mut stored = Vec::new();
    for format in ["otlp", "json-as-otlp"] {
        let gw = gateway(&[]).await;
        let report = eventline_load::run(&run_args(
            &gw,
            &[
                "--format",
                format,
                "--mode",
                "closed",
                "--max-events",
                "200",
                "-c",
                "1",
                "-b",
                "50",
                "--duplicate-share",
                "0",
                "--seed",
                "5",
            ],
        ))
        .await
        .expect("run");
        assert_eq!(report.events_accepted, 200, "{format}");
        // Rows as PostgreSQL will hold them, but for the ids of this run.
        let rows: Vec<_> = stream_events(&gw)
            .await
            .into_iter()
            .map(|(_, event)| {
                let mut metadata: serde_json::Value =
                    serde_json::from_str(event.metadata.as_deref().expect("metadata"))
                        .expect("json");
                let uid = metadata["attributes"]
                    .as_object_mut()
                    .and_then(|a| a.remove("log.record.uid"));
                assert_eq!(
                    uid.as_ref().and_then(|u| u.as_str()),
                    event.event_id.as_deref()
                );
                // Service names carry the run's tag: compare without it.
                let untagged =
                    |name: &str| name.split_once('-').map_or(name, |(_, n)| n).to_owned();
                let service = untagged(&event.service);
                assert_eq!(metadata["resource"]["service.name"], event.service.as_str());
                metadata["resource"]["service.name"] = serde_json::Value::from(service.clone());
                (service, event.message, metadata)
            })
            .collect();
        // OTLP groups a request's records by service: compare as sets.
        let mut rows = rows;
        rows.sort_by_cached_key(|(service, message, metadata)| {
            (service.clone(), message.clone(), metadata.to_string())
        });
        stored.push(rows);
        gw.shutdown.cancel();
    }
    assert_eq!(stored[0].len(), 200);
    assert_eq!(stored[0], stored[1]);
}
