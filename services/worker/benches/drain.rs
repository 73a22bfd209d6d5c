//! Drain rate of a pre-filled stream, against a bare `COPY … FORMAT binary`
//! of the same rows measured in the same run (the figures of
//! docs/adr/0010-worker-batch-insert.md). Not part of `make test`; run it with
//! the throwaway servers of the test harness:
//!
//! ```sh
//! EVENTLINE_TEST_CMD='cargo bench -p worker --bench drain' make test
//! ```
//!
//! `BENCH_EVENTS` (default 1,000,000) events, in entries of
//! `BENCH_EVENTS_PER_ENTRY` (default 100; 1 for single-event requests);
//! `BENCH_RUNS` a comma-separated
//! list of `<method>:<workers>:<batch size>[:<batches in flight>]` (in flight
//! defaults to the worker's `MAX_IN_FLIGHT_BATCHES`) or
//! `insert:<method>:<batch size>` (the insert path alone, no Redis) (default
//! `fast:1:2500,fast:2:2500,unnest:1:2500,fast:1:2500`). `<method>` is `fast`
//! (fresh batches `COPY`ed straight into `events`, the default worker) or
//! `unnest` (every batch through the guarded path, `COPY_FRESH_BATCHES=false`);
//! `insert:` runs also take `copy`, the guarded path through a staging table
//! (`COPY` into it, then `INSERT … SELECT … ON CONFLICT DO NOTHING`), which
//! ADR 0010 measured against `unnest`: it lives here ([`staging_copy`]), not
//! in the worker. Each
//! run gets a fresh database and a fresh stream; the bare COPY runs first and
//! last, and every rate is also printed as a ratio to their mean. On a busy
//! machine `BENCH_COPY_EACH=1` also runs a bare COPY just before each run and
//! prints the run's ratio to that neighbour too.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::stream_codec;
use eventline_shared::testkit::{self, TestDatabase};
use uuid::Uuid;
use worker::config::Config;
use worker::copy_binary::{self, EventRow};

fn events(n: usize) -> Vec<EnrichedEvent> {
    let now = Utc::now();
    (0..n)
        .map(|i| EnrichedEvent {
            id: Uuid::now_v7(),
            service: ["checkout", "search", "auth", "billing"][i % 4].into(),
            message: format!("user 4711 did something interesting, step {i}"),
            ts: DateTime::from_timestamp_millis(now.timestamp_millis() - (i % 3_600_000) as i64)
                .unwrap_or(now),
            ingested_at: now,
            event_id: (i % 5 == 0).then(|| format!("client-{i}")),
            metadata: Some(format!(r#"{{"user":4711,"step":{i},"ok":true}}"#)),
            request_id: Some(format!("req-{i}")),
        })
        .collect()
}

/// Fills `stream` as the gateway would: requests of `BENCH_EVENTS_PER_ENTRY`
/// events (default 100, a batched client), one format-2 entry each.
async fn fill(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    events: &[EnrichedEvent],
) {
    let per_entry: usize = std::env::var("BENCH_EVENTS_PER_ENTRY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let requests: Vec<&[EnrichedEvent]> = events.chunks(per_entry.max(1)).collect();
    for chunk in requests.chunks(2000) {
        let mut pipe = redis::pipe();
        for request in chunk {
            let mut entry = stream_codec::EntryWriter::new(Some("bench"), 0).expect("encodes");
            for e in *request {
                entry.push(e).expect("encodes");
            }
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(stream_codec::FIELD_VERSION)
                .arg(stream_codec::FORMAT_V2)
                .arg(stream_codec::FIELD_EVENT)
                .arg(entry.finish())
                .ignore();
        }
        pipe.query_async::<()>(conn).await.expect("XADD");
    }
}

/// One `COPY events … FROM STDIN (FORMAT binary)` of every row.
async fn bare_copy(events: &[EnrichedEvent]) -> f64 {
    let db = TestDatabase::migrated().await;
    let today = Utc::now().date_naive();
    eventline_shared::schema::ensure_partitions(&db.pool, today.pred_opt().unwrap_or(today), today)
        .await
        .expect("partitions");
    let rows: Vec<EventRow> = events.iter().map(|e| EventRow::new(e.as_ref())).collect();
    let mut conn = db.pool.acquire().await.expect("connection");
    let start = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at) FROM STDIN (FORMAT binary)",
        )
        .await
        .expect("COPY starts");
    // One COPY, the payload sent in pieces as a client streaming it would.
    let payload = copy_binary::encode(&rows);
    for piece in payload.chunks(1 << 20) {
        copy.send(piece).await.expect("COPY data");
    }
    let n = copy.finish().await.expect("COPY ends");
    assert_eq!(n as usize, events.len());
    events.len() as f64 / start.elapsed().as_secs_f64()
}

/// The insert path alone (no Redis): `batch_insert::insert` of every row,
/// `batch` rows per transaction, one after the other on one connection.
async fn insert_only(events: &[EnrichedEvent], method: &str, batch: usize) -> f64 {
    assert!(
        matches!(method, "fast" | "unnest" | "copy"),
        "insert method {method:?} is fast, unnest or copy"
    );
    let db = TestDatabase::migrated().await;
    let today = Utc::now().date_naive();
    eventline_shared::schema::ensure_partitions(&db.pool, today.pred_opt().unwrap_or(today), today)
        .await
        .expect("partitions");
    let rows: Vec<EventRow> = events.iter().map(|e| EventRow::new(e.as_ref())).collect();
    let start = Instant::now();
    for chunk in rows.chunks(batch) {
        let n = match method {
            "fast" => {
                let n = worker::batch_insert::insert_fresh(&db.pool, chunk).await;
                let n = n.expect("insert");
                assert!(!n.fell_back);
                n.rows
            }
            "unnest" => worker::batch_insert::insert(&db.pool, chunk)
                .await
                .expect("insert"),
            _ => staging_copy::insert(&db.pool, chunk).await,
        };
        assert_eq!(n as usize, chunk.len());
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

async fn drain(
    events: &[EnrichedEvent],
    method: &str,
    workers: usize,
    batch: &str,
    in_flight: &str,
) -> f64 {
    let db = TestDatabase::migrated().await;
    let redis = testkit::redis_args();
    let keys = RedisKeys::new(redis.redis_key_prefix.clone());
    let mut conn = redis::Client::open(redis.redis_url.expose())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    fill(&mut conn, &keys.stream(0), events).await;
    eprintln!("  stream filled; draining");

    let mut running = Vec::new();
    let mut registries: Vec<prometheus::Registry> = Vec::new();
    let cpu_start = Cpu::now();
    let start = Instant::now();
    for w in 0..workers {
        let name = format!("bench-{w}");
        let fresh = match method {
            "fast" => "true",
            "unnest" => "false",
            other => panic!("drain method {other:?} is fast or unnest (copy: insert:copy:<batch>)"),
        };
        let mut config = config(&[
            "--copy-fresh-batches",
            fresh,
            "--batch-size",
            batch,
            "--max-in-flight-batches",
            in_flight,
            "--consumer",
            &name,
        ]);
        config.redis = redis.clone();
        config.redis.redis_timeout = Duration::from_secs(10);
        config.database = db.args();
        let registry = prometheus::Registry::new();
        registries.push(registry.clone());
        let worker = worker::Worker::start(config, registry)
            .await
            .expect("worker starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let shutdown = tokio_util::sync::CancellationToken::new();
        running.push((
            shutdown.clone(),
            tokio::spawn(worker::run(worker, listener, shutdown)),
        ));
    }
    loop {
        let s = worker::stream_stats::shard_stats(&mut conn, &keys.stream(0), CONSUMER_GROUP)
            .await
            .expect("stats");
        if s.pending == 0 && s.lag == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    if let (Some(before), Some(after)) = (cpu_start, Cpu::now()) {
        let per_event = |seconds: f64| seconds * 1e6 / events.len() as f64;
        eprintln!(
            "  CPU per event: worker(s) {:.2} µs, whole machine {:.2} µs ({:.2} of {} cores busy)",
            per_event(after.process - before.process),
            per_event(after.machine - before.machine),
            (after.machine - before.machine) / elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, usize::from),
        );
    }
    for registry in &registries {
        for family in registry.gather() {
            if family.name() == worker::metrics::INSERT_DURATION {
                let h = family.get_metric()[0].get_histogram();
                eprintln!(
                    "  insert time {:.2} s in {} inserts, of {:.2} s",
                    h.get_sample_sum(),
                    h.get_sample_count(),
                    elapsed.as_secs_f64()
                );
            }
        }
    }
    for (shutdown, task) in running {
        shutdown.cancel();
        let _ = task.await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(stored as usize, events.len(), "every event stored");
    let _: () = redis::cmd("DEL")
        .arg(keys.stream(0))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    events.len() as f64 / elapsed.as_secs_f64()
}

/// CPU seconds used so far by this process (the workers run in it) and by
/// the whole machine (every core's non-idle time), from Linux's `/proc`.
struct Cpu {
    process: f64,
    machine: f64,
}

impl Cpu {
    fn now() -> Option<Cpu> {
        // Both files count in USER_HZ ticks, 100 per second on Linux.
        const TICK: f64 = 0.01;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // utime and stime are the 12th and 13th fields after the `(comm)`.
        let after_comm = stat.rsplit_once(')')?.1;
        let mut fields = after_comm.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        let all = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<f64> = all
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
        let busy: f64 = cpu.iter().take(8).sum::<f64>() - cpu.get(3)? - cpu.get(4)?;
        Some(Cpu {
            process: (utime + stime) * TICK,
            machine: busy * TICK,
        })
    }
}

fn config(args: &[&str]) -> Config {
    use clap::Parser;
    let mut argv = vec!["worker"];
    argv.extend_from_slice(args);
    Config::try_parse_from(argv).expect("bench arguments parse")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs = std::env::var("BENCH_RUNS")
        .unwrap_or_else(|_| "fast:1:2500,fast:2:2500,unnest:1:2500,fast:1:2500".into());
    let default_in_flight = config(&[]).worker.max_in_flight_batches.to_string();
    eprintln!("generating {n} events");
    let events = events(n);

    let copy_each = std::env::var("BENCH_COPY_EACH").is_ok_and(|v| v == "1");
    let copy_before = bare_copy(&events).await;
    println!("bare COPY binary (before): {copy_before:>9.0} rows/s");
    let mut results = Vec::new();
    for run in runs.split(',') {
        let neighbour = if copy_each {
            let rate = bare_copy(&events).await;
            println!("bare COPY binary:          {rate:>9.0} rows/s");
            Some(rate)
        } else {
            None
        };
        let parts: Vec<&str> = run.split(':').collect();
        if let ["insert", method, batch] = parts[..] {
            let rate = insert_only(&events, method, batch.parse().expect("batch size")).await;
            println!("insert only {method:>6}, batch {batch:>5}: {rate:>9.0} rows/s");
            results.push((run.to_owned(), rate, neighbour));
            continue;
        }
        let (method, workers, batch, in_flight) = match parts[..] {
            [m, w, b] => (m, w, b, default_in_flight.as_str()),
            [m, w, b, f] => (m, w, b, f),
            _ => panic!("BENCH_RUNS entry {run:?} is not method:workers:batch[:in-flight]"),
        };
        let workers: usize = workers.parse().expect("workers is a number");
        let rate = drain(&events, method, workers, batch, in_flight).await;
        println!(
            "drain {method:>6}, {workers} worker(s), batch {batch:>5}, {in_flight} in flight: {rate:>9.0} events/s"
        );
        results.push((run.to_owned(), rate, neighbour));
    }
    let copy_after = bare_copy(&events).await;
    println!("bare COPY binary (after):  {copy_after:>9.0} rows/s");
    let baseline = (copy_before + copy_after) / 2.0;
    println!("\n{n} events; ratios to the mean bare COPY rate ({baseline:.0} rows/s):");
    for (run, rate, neighbour) in results {
        match neighbour {
            Some(copy) => println!(
                "  {run:<18} {rate:>9.0} events/s  {:.2}  ({:.2} of the COPY just before, {copy:.0} rows/s)",
                rate / baseline,
                rate / copy
            ),
            None => println!("  {run:<18} {rate:>9.0} events/s  {:.2}", rate / baseline),
        }
    }
}

/// The guarded path through a staging table, kept to repeat ADR 0010's
/// comparison with the worker's `unnest`: `COPY … FORMAT binary` into a
/// temporary table, then `INSERT … SELECT … ON CONFLICT DO NOTHING`, the
/// inserted rows counted into the rollup, in one transaction.
mod staging_copy {
    use sqlx::PgPool;
    use worker::copy_binary::{self, EventRow};

    /// One per session (temporary), emptied at every commit. Notices
    /// ("already exists, skipping") are silenced.
    const STAGING: &str = "SET LOCAL client_min_messages = warning; \
        CREATE TEMP TABLE IF NOT EXISTS eventline_staging \
        (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

    /// Must list [`copy_binary::COLUMNS`] in its order (checked before use).
    const COPY: &str = "COPY eventline_staging (id, dedup_key, event_id, service, message, metadata, ts, ingested_at) FROM STDIN (FORMAT binary)";

    /// Rows from the staging table into `events`: the worker's guarded
    /// statement, the rows read from the staging table.
    const INSERT_FROM_STAGING: &str = worker::guarded_insert_sql!(
        "SELECT id, dedup_key, event_id, service, message, metadata, ts, ingested_at
      FROM eventline_staging"
    );

    /// Inserts `rows` and commits; how many were new.
    pub async fn insert(pool: &PgPool, rows: &[EventRow<'_>]) -> u64 {
        assert!(COPY.contains(&format!("({})", copy_binary::COLUMNS)));
        let mut tx = pool.begin().await.expect("BEGIN");
        sqlx::raw_sql(STAGING)
            .execute(&mut *tx)
            .await
            .expect("staging table");
        let mut copy = tx.copy_in_raw(COPY).await.expect("COPY starts");
        copy.send(copy_binary::encode(rows))
            .await
            .expect("COPY data");
        copy.finish().await.expect("COPY ends");
        let inserted: i64 = sqlx::query_scalar(INSERT_FROM_STAGING)
            .fetch_one(&mut *tx)
            .await
            .expect("INSERT … SELECT");
        tx.commit().await.expect("COMMIT");
        u64::try_from(inserted).unwrap_or(0)
    }
}
