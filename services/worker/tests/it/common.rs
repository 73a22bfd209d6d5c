//! What every worker test needs: its own database and Redis key prefix,
//! events written to the stream as the gateway writes them, workers started
//! in-process or as child processes, the settings for a private PostgreSQL
//! that can be stopped (`testkit::servers`), and the exactly-once check.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::config::{DatabaseArgs, RedisArgs, SecretUrl};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::stream_codec;
use eventline_shared::testkit::serve::{Served, parse_args, serve};
pub use eventline_shared::testkit::servers::LocalPostgres;
pub use eventline_shared::testkit::wait_until;
use eventline_shared::testkit::{self, TestDatabase};
use redis::aio::MultiplexedConnection;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::config::Config;
use worker::stream_stats::{self, ShardStats};

pub struct TestEnv {
    pub db: TestDatabase,
    pub redis: RedisArgs,
    pub keys: RedisKeys,
    pub conn: MultiplexedConnection,
}

impl TestEnv {
    pub async fn new() -> Self {
        testkit::init_logging();
        let db = TestDatabase::migrated().await;
        let redis = testkit::redis_args();
        let keys = RedisKeys::new(redis.redis_key_prefix.clone());
        let conn = redis::Client::open(redis.redis_url.expose())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        TestEnv {
            db,
            redis,
            keys,
            conn,
        }
    }

    pub fn stream(&self) -> String {
        self.keys.stream(0)
    }

    pub fn config(&self, args: &[&str]) -> Config {
        config_for(&self.redis, self.db.args(), args)
    }

    /// Adds each event as a request of its own (one entry each).
    pub async fn add(&self, events: &[EnrichedEvent]) -> Vec<String> {
        add_events(&mut self.conn.clone(), &self.stream(), events).await
    }

    /// Adds the events as requests of `per_request` events, one entry each,
    /// as the gateway writes a batch; returns each event's entry id.
    pub async fn add_requests(&self, events: &[EnrichedEvent], per_request: usize) -> Vec<String> {
        add_packed(&mut self.conn.clone(), &self.stream(), events, per_request).await
    }

    /// Adds each event as an entry of format 1, as gateways before format 2
    /// wrote them.
    pub async fn add_v1(&self, events: &[EnrichedEvent]) -> Vec<String> {
        let mut ids = Vec::with_capacity(events.len());
        for chunk in events.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("XADD")
                    .arg(self.stream())
                    .arg("*")
                    .arg(stream_codec::FIELD_VERSION)
                    .arg(stream_codec::FORMAT_V1)
                    .arg(stream_codec::FIELD_EVENT)
                    .arg(stream_codec::encode(e).unwrap());
            }
            let chunk_ids: Vec<String> = pipe.query_async(&mut self.conn.clone()).await.unwrap();
            ids.extend(chunk_ids);
        }
        ids
    }

    /// Delivers new entries (up to `count`; all without) to `consumer`
    /// without processing them, as a worker that then crashed would.
    pub async fn deliver_to(&self, consumer: &str, count: Option<usize>) {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(CONSUMER_GROUP).arg(consumer);
        if let Some(count) = count {
            cmd.arg("COUNT").arg(count);
        }
        let _: redis::Value = cmd
            .arg("STREAMS")
            .arg(self.stream())
            .arg(">")
            .query_async(&mut self.conn.clone())
            .await
            .expect("XREADGROUP");
    }

    /// Adds an entry with arbitrary fields, as a broken producer might.
    pub async fn add_raw(&self, fields: &[(&str, &[u8])]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream()).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query_async(&mut self.conn.clone()).await.unwrap()
    }

    pub async fn stats(&self) -> ShardStats {
        stream_stats::shard_stats(&mut self.conn.clone(), &self.stream(), CONSUMER_GROUP)
            .await
            .unwrap()
    }

    /// Waits until the group has delivered and acked every entry.
    pub async fn wait_drained(&self, timeout: Duration) {
        let done = wait_until(timeout, || async {
            let s = self.stats().await;
            s.pending == 0 && s.lag == Some(0)
        })
        .await;
        assert!(
            done,
            "stream not drained within {timeout:?}: {:?}",
            self.stats().await
        );
    }

    pub async fn dead_letters(&self) -> Vec<BTreeMap<String, String>> {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(self.keys.dlq_of(&self.keys.stream(0)))
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        worker::stream_reply::entries("XRANGE", reply)
            .unwrap()
            .into_iter()
            .map(|e| {
                e.fields()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

pub fn config_for(redis: &RedisArgs, db: DatabaseArgs, args: &[&str]) -> Config {
    let mut argv = vec!["worker"];
    argv.extend_from_slice(args);
    let mut config: Config = parse_args(argv);
    config.redis = redis.clone();
    config.database = db;
    config.listen.shutdown_grace = Duration::from_secs(10);
    config
}

pub fn event(service: &str, message: &str, event_id: Option<&str>) -> EnrichedEvent {
    let now = Utc::now();
    EnrichedEvent {
        id: Uuid::now_v7(),
        service: service.into(),
        message: message.into(),
        ts: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap(),
        ingested_at: now,
        event_id: event_id.map(str::to_owned),
        metadata: Some(r#"{"k":1}"#.into()),
        request_id: Some("req-test".into()),
    }
}

pub fn events(n: usize) -> Vec<EnrichedEvent> {
    (0..n)
        .map(|i| {
            event(
                ["checkout", "search", "auth"][i % 3],
                &format!("message {i}"),
                None,
            )
        })
        .collect()
}

/// XADDs each of `events` as the gateway writes a single-event request.
pub async fn add_events(
    conn: &mut MultiplexedConnection,
    stream: &str,
    events: &[EnrichedEvent],
) -> Vec<String> {
    add_packed(conn, stream, events, 1).await
}

/// XADDs `events` as the gateway writes requests of `per_request` events
/// (format 2), 1000 entries per pipeline; returns each event's entry id.
pub async fn add_packed(
    conn: &mut MultiplexedConnection,
    stream: &str,
    events: &[EnrichedEvent],
    per_request: usize,
) -> Vec<String> {
    let requests: Vec<&[EnrichedEvent]> = events.chunks(per_request.max(1)).collect();
    let mut ids = Vec::with_capacity(events.len());
    for chunk in requests.chunks(1000) {
        let mut pipe = redis::pipe();
        for request in chunk {
            let mut entry = stream_codec::EntryWriter::new(Some("req-test"), 0).unwrap();
            for e in *request {
                entry.push(e).unwrap();
            }
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(stream_codec::FIELD_VERSION)
                .arg(stream_codec::FORMAT_V2)
                .arg(stream_codec::FIELD_EVENT)
                .arg(entry.finish());
        }
        let chunk_ids: Vec<String> = pipe.query_async(conn).await.unwrap();
        for (request, id) in chunk.iter().zip(chunk_ids) {
            ids.extend(std::iter::repeat_n(id, request.len()));
        }
    }
    ids
}

pub async fn row_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every expected event stored exactly once (no event missing, none twice,
/// no stranger), and the rollup counting each row exactly once. Events are
/// told apart by their dedup key: of two entries carrying the same event (a
/// client retry) either may be the one stored.
pub async fn assert_exactly_once(pool: &PgPool, expected: &[EnrichedEvent]) {
    let mut want: Vec<Uuid> = expected.iter().map(EnrichedEvent::dedup_key).collect();
    want.sort();
    want.dedup();
    let got: Vec<Uuid> = sqlx::query_scalar("SELECT dedup_key FROM events ORDER BY dedup_key")
        .fetch_all(pool)
        .await
        .unwrap();
    let missing = want
        .iter()
        .filter(|k| got.binary_search(k).is_err())
        .count();
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(missing, 0, "{missing} events lost");
    assert_eq!(
        got.len(),
        distinct.len(),
        "{} events stored twice",
        got.len() - distinct.len()
    );
    assert_eq!(got.len(), want.len(), "unexpected rows");
    let rollup: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(count), 0)::bigint FROM event_counts")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        rollup,
        want.len() as i64,
        "event_counts disagrees with events"
    );
    // And hour by hour, service by service.
    let wrong: Vec<(String, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(c.service, e.service), coalesce(c.hour, e.hour),
                coalesce(c.count, 0), coalesce(e.count, 0)
           FROM event_counts c
           FULL JOIN (SELECT service, date_trunc('hour', ts, 'UTC') AS hour, count(*) AS count
                        FROM events GROUP BY 1, 2) e
             ON e.service = c.service AND e.hour = c.hour
          WHERE c.count IS DISTINCT FROM e.count",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        wrong.is_empty(),
        "event_counts (service, hour, rollup, rows) disagrees: {wrong:?}"
    );
}

/// A worker running in this process.
pub struct InProcess {
    pub shutdown: CancellationToken,
    pub addr: std::net::SocketAddr,
    pub registry: prometheus::Registry,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    pub async fn start(config: Config) -> Self {
        let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
        let w = worker::Worker::start(config, registry.clone())
            .await
            .expect("worker starts");
        let shutdown = CancellationToken::new();
        let Served { addr, task } = serve(w, worker::run, shutdown.clone()).await;
        InProcess {
            shutdown,
            addr,
            registry,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }

    pub fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for m in family.get_metric() {
                let matches = label.is_none_or(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                });
                if matches {
                    return if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                        m.get_counter().get_value()
                    } else {
                        m.get_gauge().get_value()
                    };
                }
            }
        }
        panic!("no metric {name} {label:?}");
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        testkit::http::get_text(self.addr, path).await
    }
}

/// The built `worker` binary (with the `failpoints` feature) as a child
/// process on the test's Redis prefix and database.
pub fn spawn_child(env: &TestEnv, vars: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.env("REDIS_URL", env.redis.redis_url.expose())
        .env("REDIS_KEY_PREFIX", &env.redis.redis_key_prefix)
        .env("DATABASE_URL", &env.db.url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove(worker::failpoint::ENV)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("worker binary starts")
}

pub async fn wait_exit(
    child: &mut tokio::process::Child,
    timeout: Duration,
) -> std::process::ExitStatus {
    tokio::time::timeout(timeout, child.wait())
        .await
        .expect("child exits in time")
        .unwrap()
}

/// Configuration pointing at a private PostgreSQL's `postgres` database,
/// with a short acquire timeout so an outage shows quickly.
pub fn private_pg_args(pg: &LocalPostgres) -> DatabaseArgs {
    DatabaseArgs {
        database_url: SecretUrl::for_tests(&pg.url()),
        db_max_connections: 10,
        db_acquire_timeout: Duration::from_secs(1),
        db_statement_timeout: Duration::from_secs(10),
    }
}
