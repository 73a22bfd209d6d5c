//! The pipeline end to end on both Redis deployments `make test` starts: one
//! Redis server (`testkit::redis_args`) and a Redis Cluster of three masters
//! and three replicas (`testkit::cluster_redis_args`). Each scenario is an
//! async fn of the `RedisArgs`, run as `single::<scenario>` and
//! `cluster::<scenario>` on a stack of its own: a gateway, a worker and a
//! query-api in-process, on a database and a key prefix of their own, with
//! three stream shards (on the cluster, one on each master). What was
//! accepted is read back from PostgreSQL and the query-api, never taken on
//! the 202's word.
//!
//! - ingest: single events and the three batch bodies, each stored once;
//! - dedup: one `event_id` sent twice, in two requests and in one batch;
//! - dead letters: a poison entry set aside without holding up its shard,
//!   a letter replayed to its shard, the list paged across shards;
//! - trimming: the streams emptied once stored, except from an unacked entry on;
//! - the live tail: events of every shard arrive;
//! - health: ready everywhere; on the cluster, three masters and the shards
//!   spread over them.
//!
//! `start_up` (cluster only, no stack): `Redis::connect` refuses each Redis
//! that is not what the configuration says, naming the problem. The exit
//! status of a real binary is the worker's test (`services/worker/tests/it/startup.rs`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use eventline_shared::EnrichedEvent;
use eventline_shared::config::RedisArgs;
use eventline_shared::event::dedup_key;
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys, key_slot, shard_of};
use eventline_shared::redis_pool::{Redis, RedisConn};
use eventline_shared::stream_codec;
use eventline_shared::stream_stats::{self, ShardStats};
use eventline_shared::testkit::http::{Response, Streaming, request};
use eventline_shared::testkit::serve::{keyed_service_args, parse_args, serve, serve_args};
use eventline_shared::testkit::{self, TestDatabase};
use redis::Value as RedisValue;
use redis::streams::StreamRangeReply;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Stream shards of every stack: one per master of the cluster.
const SHARDS: u32 = 3;
/// Longest wait for the pipeline to catch up.
const WAIT: Duration = Duration::from_secs(30);

/// Each scenario as `single::<name>` and `cluster::<name>`.
macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(eventline_shared::testkit::redis_args()).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(eventline_shared::testkit::cluster_redis_args()).await;
                }
            )*
        }
    };
}

in_both_modes!(
    single_events_and_batches_are_stored_once_and_read_back,
    an_event_id_sent_twice_is_stored_once,
    poison_is_set_aside_and_dead_letters_are_listed_and_replayed,
    streams_are_trimmed_once_stored_but_not_from_an_unacked_entry_on,
    the_tail_sees_events_of_every_shard,
    every_service_is_ready_and_the_cluster_health_names_its_masters,
    with_replica_acks_a_202_waits_for_a_replica,
);

/// A gateway, a worker and a query-api sharing a database and a key prefix.
struct Stack {
    gateway: SocketAddr,
    worker: SocketAddr,
    query: SocketAddr,
    /// `Bearer <key>`, a key with every scope.
    auth: String,
    /// The test's own connections, to the same Redis as the services.
    redis: Redis,
    keys: RedisKeys,
    cluster: bool,
    db: TestDatabase,
    shutdown: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn stack(redis: RedisArgs) -> Stack {
    testkit::init_logging();
    let db = TestDatabase::migrated().await;
    // Made before the services start, so they load it at once.
    let key = testkit::try_create_key(&db.pool, "redis-modes", "ingest,query,admin")
        .await
        .expect("create key");
    let shutdown = CancellationToken::new();
    let shards = SHARDS.to_string();

    let mut args = keyed_service_args("ingest-gateway", &redis, &db.url);
    args.extend(["--stream-shards", &shards, "--stream-length-refresh", "50"].map(str::to_owned));
    let gateway = serve_args(args, ingest_gateway::run, shutdown.clone())
        .await
        .addr;

    let mut config: worker::config::Config = parse_args([
        "worker",
        "--flush-interval",
        "20",
        "--trim-interval",
        "100",
        "--claim-interval",
        "200",
    ]);
    config.worker.shards.count = SHARDS;
    config.redis = redis.clone();
    config.database = db.args();
    config.listen.shutdown_grace = Duration::from_secs(2);
    let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
    let w = worker::Worker::start(config, registry)
        .await
        .expect("worker starts");
    let worker = serve(w, worker::run, shutdown.clone()).await.addr;

    let mut args = keyed_service_args("query-api", &redis, &db.url);
    args.extend(["--stream-shards", &shards, "--tail-heartbeat", "200"].map(str::to_owned));
    let query = serve_args(args, query_api::run, shutdown.clone())
        .await
        .addr;

    let conn = match Redis::connect(&redis).await {
        Ok(conn) => conn,
        Err(e) => panic!("the test's Redis connection: {e}"),
    };
    let cluster = conn.is_cluster();
    assert_eq!(cluster, redis.cluster_nodes().is_some());
    Stack {
        gateway,
        worker,
        query,
        auth: format!("Bearer {key}"),
        keys: RedisKeys::for_deployment(redis.redis_key_prefix.clone(), SHARDS, cluster),
        redis: conn,
        cluster,
        db,
        shutdown,
    }
}

/// `REDIS_MIN_REPLICAS_ACK=1`: on the cluster (a replica per master) every
/// event is answered 202 once a replica has it; on the single server (no
/// replica) 503 with `Retry-After` — the entry is written all the same, so
/// the client's retries of one `event_id` are stored once.
async fn with_replica_acks_a_202_waits_for_a_replica(mut redis: RedisArgs) {
    redis.redis_min_replicas_ack = 1;
    redis.redis_replica_ack_timeout = Duration::from_millis(100);
    let stack = stack(redis).await;
    let service = "replica-acks";
    for i in 0..6 {
        let body = event(service, &format!("acked {i}"), Some(&format!("ack-{i}")));
        if stack.cluster {
            stack.ingest(&body).await;
            continue;
        }
        for _attempt in 0..2 {
            let res = request(
                stack.gateway,
                "POST",
                "/v1/events",
                &[
                    ("Authorization", stack.auth.as_str()),
                    ("Content-Type", "application/json"),
                ],
                body.to_string().as_bytes(),
            )
            .await;
            assert_eq!(res.status, 503, "no replica confirms: {}", res.text());
            assert_eq!(res.header("retry-after"), Some("1"));
            assert_eq!(res.json()["error"]["code"], "unavailable", "{}", res.text());
        }
    }
    stack.wait_drained().await;
    let rows = stack.rows_by_id(service).await;
    assert_eq!(rows.len(), 6, "each event_id stored: {rows:?}");
    assert!(rows.values().all(|&n| n == 1), "{rows:?}");
    let timeouts = stack
        .gateway_metric("eventline_ingest_replica_ack_timeouts_total")
        .await;
    assert_eq!(timeouts, if stack.cluster { 0.0 } else { 12.0 });
}

/// `POST /v1/events` with `event`; the id of the accepted event.
async fn post_event(gateway: SocketAddr, auth: &str, event: &Value) -> Uuid {
    let res = request(
        gateway,
        "POST",
        "/v1/events",
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        event.to_string().as_bytes(),
    )
    .await;
    assert_eq!(res.status, 202, "POST /v1/events {event}: {}", res.text());
    let body = res.json();
    assert_eq!(body["accepted"], 1, "{body}");
    let [id] = ids(&body["ids"])[..] else {
        panic!("one id: {body}");
    };
    id
}

fn ids(list: &Value) -> Vec<Uuid> {
    list.as_array()
        .expect("a list of ids")
        .iter()
        .map(|id| id.as_str().and_then(|s| s.parse().ok()).expect("an id"))
        .collect()
}

/// An event of `service` as the API takes it.
fn event(service: &str, message: &str, event_id: Option<&str>) -> Value {
    let mut event = json!({ "service": service, "message": message });
    if let Some(id) = event_id {
        event["event_id"] = json!(id);
    }
    event
}

/// Now, to the millisecond, as the API writes times.
fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `count` event ids whose events (of `service`) land on `shard`: a
/// request's shard is its first event's dedup key modulo the shard count.
fn ids_on_shard(service: &str, prefix: &str, shard: u32, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|id| shard_of(dedup_key(service, Some(id), Uuid::nil()), SHARDS) == shard)
        .take(count)
        .collect()
}

impl Stack {
    async fn ingest(&self, event: &Value) -> Uuid {
        post_event(self.gateway, &self.auth, event).await
    }

    /// `POST /v1/events/batch`; the ids answered, every event accepted.
    async fn ingest_batch(&self, content_type: &str, body: &str) -> Vec<Uuid> {
        let res = request(
            self.gateway,
            "POST",
            "/v1/events/batch",
            &[
                ("Authorization", &self.auth),
                ("Content-Type", content_type),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(res.status, 202, "batch ({content_type}): {}", res.text());
        let answer = res.json();
        assert_eq!(answer["rejected"], json!([]), "{answer}");
        let ids = ids(&answer["ids"]);
        assert_eq!(answer["accepted"], ids.len(), "{answer}");
        ids
    }

    /// Single events posted a few at a time; their ids in `events` order.
    async fn ingest_concurrently(&self, events: Vec<Value>) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(events.len());
        for chunk in events.chunks(8) {
            let mut set = tokio::task::JoinSet::new();
            for (i, event) in chunk.iter().cloned().enumerate() {
                let (gateway, auth) = (self.gateway, self.auth.clone());
                set.spawn(async move { (i, post_event(gateway, &auth, &event).await) });
            }
            let mut answered = set.join_all().await;
            answered.sort();
            ids.extend(answered.into_iter().map(|(_, id)| id));
        }
        ids
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Response {
        request(addr, "GET", path, &[("Authorization", &self.auth)], b"").await
    }

    /// GET on the query-api; the JSON of a 200.
    async fn query(&self, path: &str) -> Value {
        let res = self.get(self.query, path).await;
        assert_eq!(res.status, 200, "GET {path}: {}", res.text());
        res.json()
    }

    async fn post_query(&self, path: &str, body: &Value) -> Value {
        let res = request(
            self.query,
            "POST",
            path,
            &[
                ("Authorization", &self.auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(res.status, 200, "POST {path} {body}: {}", res.text());
        res.json()
    }

    /// Every event of `service` through the query-api, oldest first.
    async fn events(&self, service: &str) -> Vec<Value> {
        let page = self
            .query(&format!(
                "/v1/events?service={service}&order=asc&limit=1000"
            ))
            .await;
        assert!(page["next_cursor"].is_null(), "more than a page: {page}");
        page["events"].as_array().expect("events").clone()
    }

    async fn conn(&self) -> RedisConn {
        self.redis.get().await.expect("a Redis connection")
    }

    async fn shard_stats(&self) -> Vec<ShardStats> {
        let mut conn = self.conn().await;
        let mut all = Vec::new();
        for shard in 0..SHARDS {
            let stream = self.keys.stream(shard);
            all.push(
                stream_stats::shard_stats(&mut conn, &stream, CONSUMER_GROUP)
                    .await
                    .expect("stream stats"),
            );
        }
        all
    }

    /// Waits until the group has delivered and acked every entry of every
    /// shard: everything accepted so far is in PostgreSQL.
    async fn wait_drained(&self) {
        let drained = testkit::poll(
            WAIT,
            || self.shard_stats(),
            |stats| stats.iter().all(|s| s.pending == 0 && s.lag == Some(0)),
        )
        .await;
        if let Err(stats) = drained {
            panic!("the streams were not drained in {WAIT:?}: {stats:#?}");
        }
    }

    async fn rows(&self, service: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE service = $1")
            .bind(service)
            .fetch_one(&self.db.pool)
            .await
            .expect("count rows")
    }

    /// The stored rows of `service`: id → how many rows have it.
    async fn rows_by_id(&self, service: &str) -> HashMap<Uuid, i64> {
        sqlx::query_as::<_, (Uuid, i64)>(
            "SELECT id, count(*) FROM events WHERE service = $1 GROUP BY id",
        )
        .bind(service)
        .fetch_all(&self.db.pool)
        .await
        .expect("rows by id")
        .into_iter()
        .collect()
    }

    /// XADD `fields` to `key` with entry id `id` (`*`: a new one).
    async fn xadd(&self, key: &str, id: &str, fields: &[(&str, &[u8])]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg(id);
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        cmd.query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("XADD {key} {id}: {e}"))
    }

    /// The entries of `key`, oldest first, their fields as text.
    async fn xrange(&self, key: &str) -> Vec<(String, HashMap<String, String>)> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .expect("XRANGE");
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let fields = entry
                    .map
                    .into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            RedisValue::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                            other => format!("{other:?}"),
                        };
                        (k, text)
                    })
                    .collect();
                (entry.id, fields)
            })
            .collect()
    }

    async fn xlen(&self, key: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.conn().await)
            .await
            .expect("XLEN")
    }

    /// Entries ever added to `stream` (`XINFO STREAM` `entries-added`).
    async fn entries_added(&self, stream: &str) -> u64 {
        stream_stats::entries_added(&mut self.conn().await, stream)
            .await
            .expect("XINFO STREAM")
            .expect("the stream exists")
    }

    /// A dead letter as the worker writes one for an event of shard
    /// `shard` it refused (the event alone, format 1, and why), with entry
    /// id `id` in the shard's dead-letter stream.
    async fn dead_letter(&self, shard: u32, id: &str, event: &EnrichedEvent) -> String {
        let payload = stream_codec::encode(event).expect("encode");
        let source = self.keys.stream(shard);
        self.xadd(
            &self.keys.dlq_of(&source),
            id,
            &[
                ("v", b"1"),
                ("e", &payload),
                ("reason", b"data"),
                ("error", b"value too long for type character varying"),
                ("first_failure", b"2026-11-23T03:12:00.000Z"),
                ("last_failure", b"2026-11-23T03:12:05.000Z"),
                ("deliveries", b"1"),
                ("source_stream", source.as_bytes()),
                ("source_id", b"1-1"),
            ],
        )
        .await
    }

    /// The API's id of entry `entry` of shard `shard`'s dead-letter stream:
    /// `<shard>:<entry>` on a cluster, the entry id on one server.
    fn letter_id(&self, shard: usize, entry: &str) -> String {
        if self.cluster {
            format!("{shard}:{entry}")
        } else {
            entry.to_owned()
        }
    }

    /// Every dead letter in Redis as the API should list them: oldest
    /// first across the dead-letter streams, ties in shard order.
    async fn letters_in_redis(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (dlq_index, dlq) in self.keys.dlqs(SHARDS).iter().enumerate() {
            for (entry, _) in self.xrange(dlq).await {
                let (ms, seq) = entry.split_once('-').expect("an entry id");
                let order = (
                    ms.parse::<u64>().expect("ms"),
                    seq.parse::<u64>().expect("seq"),
                    dlq_index,
                );
                all.push((order, self.letter_id(dlq_index, &entry)));
            }
        }
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// `GET /v1/dlq` page by page, `limit` at a time: every id listed.
    async fn dlq_pages(&self, limit: usize) -> Vec<String> {
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                Some(c) => format!("/v1/dlq?limit={limit}&cursor={c}"),
                None => format!("/v1/dlq?limit={limit}"),
            };
            let page = self.query(&path).await;
            let entries = page["entries"].as_array().expect("entries");
            assert!(
                !entries.is_empty() && entries.len() <= limit,
                "{path}: {page}"
            );
            listed.extend(
                entries
                    .iter()
                    .map(|e| e["id"].as_str().expect("id").to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return listed,
            }
        }
        panic!("GET /v1/dlq did not end in 100 pages: {listed:?}");
    }

    /// The sum of every series of the worker's metric `name`.
    async fn worker_metric(&self, name: &str) -> f64 {
        self.metric(self.worker, name).await
    }

    async fn gateway_metric(&self, name: &str) -> f64 {
        self.metric(self.gateway, name).await
    }

    /// The sum of `name`'s series on the service at `addr`.
    async fn metric(&self, addr: SocketAddr, name: &str) -> f64 {
        let res = self.get(addr, "/metrics").await;
        assert_eq!(res.status, 200);
        res.text()
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Scenario 1: single events and the three batch bodies (a JSON array,
/// `{"events":[…]}`, NDJSON), each accepted event stored exactly once and
/// listed by the query-api; requests reached every shard.
async fn single_events_and_batches_are_stored_once_and_read_back(redis: RedisArgs) {
    let s = stack(redis).await;
    let service = "modes-ingest";
    let mut sent = Vec::new();
    // Single events: a third keyed (two on each shard, so every shard gets
    // requests), half with a timestamp, all with metadata.
    let keyed: Vec<String> = (0..SHARDS)
        .flat_map(|shard| ids_on_shard(service, &format!("one-{shard}"), shard, 2))
        .collect();
    for i in 0..18 {
        let mut e = event(
            service,
            &format!("single {i}"),
            keyed.get(i / 3).filter(|_| i % 3 == 0).map(String::as_str),
        );
        e["metadata"] = json!({ "i": i, "kind": "single" });
        if i % 2 == 0 {
            e["timestamp"] = json!(now_text());
        }
        sent.push(s.ingest(&e).await);
    }
    let batch = |kind: &str| -> Vec<Value> {
        (0..20)
            .map(|i| {
                let id = format!("{kind}-{i}");
                event(
                    service,
                    &format!("{kind} {i}"),
                    (i % 2 == 0).then_some(id.as_str()),
                )
            })
            .collect()
    };
    let array = Value::Array(batch("array")).to_string();
    sent.extend(s.ingest_batch("application/json", &array).await);
    let object = json!({ "events": batch("object") }).to_string();
    sent.extend(s.ingest_batch("application/json", &object).await);
    let ndjson: Vec<String> = batch("ndjson").iter().map(Value::to_string).collect();
    sent.extend(
        s.ingest_batch("application/x-ndjson", &ndjson.join("\n"))
            .await,
    );
    let distinct: BTreeSet<Uuid> = sent.iter().copied().collect();
    assert_eq!(distinct.len(), 78, "the gateway answered 78 distinct ids");

    s.wait_drained().await;
    let stored = s.rows_by_id(service).await;
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let stored_ids: BTreeSet<Uuid> = stored.keys().copied().collect();
    assert_eq!(
        stored_ids, distinct,
        "PostgreSQL holds exactly the accepted events"
    );
    let (rows, keys): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT dedup_key) FROM events")
            .fetch_one(&s.db.pool)
            .await
            .expect("count");
    assert_eq!((rows, keys), (78, 78));

    let listed = s.events(service).await;
    let listed_ids: BTreeSet<Uuid> = listed
        .iter()
        .map(|e| e["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
        .collect();
    assert_eq!(listed.len(), 78, "GET /v1/events lists each event once");
    assert_eq!(listed_ids, distinct);
    let single = listed
        .iter()
        .find(|e| e["message"] == "single 3")
        .expect("single 3");
    assert_eq!(single["metadata"], json!({ "i": 3, "kind": "single" }));
    assert_eq!(single["event_id"], keyed[1].as_str());

    // One entry per request, spread over every shard.
    let mut entries = 0;
    for shard in 0..SHARDS {
        let added = s.entries_added(&s.keys.stream(shard)).await;
        assert!(added >= 2, "shard {shard} got {added} requests");
        entries += added;
    }
    assert_eq!(entries, 18 + 3, "one stream entry per request");
}

/// Scenario 2: one `event_id` sent twice, in two requests (with the same
/// timestamp, and without one, so only the worker's claims can tell), twice
/// in one batch, and once in a batch and once alone: one row each.
async fn an_event_id_sent_twice_is_stored_once(redis: RedisArgs) {
    let s = stack(redis).await;
    let service = "modes-dedup";
    let ts = now_text();
    let mut timed = event(service, "same time", Some("dup-1"));
    timed["timestamp"] = json!(ts);
    s.ingest(&timed).await;
    s.ingest(&timed).await;
    let untimed = event(service, "receive time", Some("dup-2"));
    s.ingest(&untimed).await;
    s.ingest(&untimed).await;
    let body = Value::Array(vec![
        event(service, "twice in a batch", Some("dup-3")),
        event(service, "once in a batch", None),
        event(service, "twice in a batch", Some("dup-3")),
    ]);
    let answered = s.ingest_batch("application/json", &body.to_string()).await;
    assert_eq!(answered.len(), 3);
    assert_eq!(
        answered[0], answered[2],
        "a repeat within a batch is answered with the first one's id"
    );
    let body = Value::Array(vec![
        event(service, "batch, then alone", Some("dup-4")),
        event(service, "beside dup-4", None),
    ]);
    s.ingest_batch("application/json", &body.to_string()).await;
    s.ingest(&event(service, "batch, then alone", Some("dup-4")))
        .await;

    s.wait_drained().await;
    let per_event_id: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT event_id, count(*) FROM events WHERE service = $1
          GROUP BY event_id ORDER BY event_id",
    )
    .bind(service)
    .fetch_all(&s.db.pool)
    .await
    .expect("rows");
    assert_eq!(
        per_event_id,
        [
            (Some("dup-1".to_owned()), 1),
            (Some("dup-2".to_owned()), 1),
            (Some("dup-3".to_owned()), 1),
            (Some("dup-4".to_owned()), 1),
            (None, 2),
        ],
        "one row per event_id"
    );
    let listed = s.events(service).await;
    assert_eq!(listed.len(), 6, "{listed:#?}");
    let stored_at = listed
        .iter()
        .find(|e| e["event_id"] == "dup-1")
        .expect("dup-1");
    assert_eq!(stored_at["timestamp"], ts.as_str());
    // The three repeats that reached the worker were skipped there.
    let skipped = s.worker_metric(worker::metrics::DUPLICATES).await;
    assert_eq!(skipped, 3.0, "duplicates the worker skipped");
}

/// Scenario 3: an undecodable entry among good ones on shard 1 goes to
/// shard 1's dead letters and the good ones land; a replayable letter goes
/// back to its shard by its listed id, is stored once and leaves the DLQ;
/// letters of several shards page oldest first, each once.
async fn poison_is_set_aside_and_dead_letters_are_listed_and_replayed(redis: RedisArgs) {
    let s = stack(redis).await;
    let service = "modes-poison";
    let stream = s.keys.stream(1);
    let dlq = s.keys.dlq_of(&stream);
    let around = ids_on_shard(service, "around", 1, 10);
    let mut good = Vec::new();
    for id in &around[..5] {
        good.push(s.ingest(&event(service, id, Some(id))).await);
    }
    let poison = s
        .xadd(&stream, "*", &[("v", b"1"), ("e", b"\xc1\xc1 not msgpack")])
        .await;
    for id in &around[5..] {
        good.push(s.ingest(&event(service, id, Some(id))).await);
    }
    // And some on the other shards.
    for shard in [0, 2] {
        for id in ids_on_shard(service, &format!("elsewhere-{shard}"), shard, 2) {
            good.push(s.ingest(&event(service, &id, Some(&id))).await);
        }
    }
    s.wait_drained().await;
    let stored = s.rows_by_id(service).await;
    assert_eq!(stored.len(), good.len(), "{stored:?}");
    for id in &good {
        assert_eq!(stored.get(id), Some(&1), "event {id}");
    }

    // The poison, in its shard's dead letters, listed with its id.
    let letters = s.xrange(&dlq).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let (letter_entry, fields) = &letters[0];
    assert_eq!(fields["source_id"], poison);
    assert_eq!(fields["source_stream"], stream);
    assert_eq!(fields["reason"], "decode", "{fields:?}");
    let poison_id = s.letter_id(1, letter_entry);
    if s.cluster {
        assert!(poison_id.starts_with("1:"), "{poison_id}");
    }
    let list = s.query("/v1/dlq").await;
    assert_eq!(list["total"], 1, "{list}");
    let listed = &list["entries"][0];
    assert_eq!(listed["id"], poison_id.as_str(), "{list}");
    assert_eq!(listed["source_id"], poison.as_str());
    assert!(listed["event"].is_null() && listed["decode_error"].is_string());

    // A replayable letter in shard 1's dead letters goes back to shard 1.
    let replay_key = ids_on_shard(service, "replay", 1, 1).remove(0);
    let now = Utc::now();
    let dead = EnrichedEvent {
        id: Uuid::now_v7(),
        service: service.into(),
        message: "replayed".into(),
        ts: DateTime::from_timestamp_millis(now.timestamp_millis()).expect("ms"),
        ingested_at: DateTime::from_timestamp_micros(now.timestamp_micros()).expect("us"),
        event_id: Some(replay_key.clone()),
        metadata: Some(r#"{"replay":true}"#.into()),
        request_id: Some("req-replay".into()),
    };
    let entry = s.dead_letter(1, "*", &dead).await;
    let list = s.query("/v1/dlq").await;
    assert_eq!(list["total"], 2, "{list}");
    let letter = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|l| l["event"]["message"] == "replayed")
        .unwrap_or_else(|| panic!("the replayable letter is listed: {list}"));
    let letter_id = s.letter_id(1, &entry);
    assert_eq!(letter["id"], letter_id.as_str());
    assert_eq!(letter["event"]["id"], dead.id.to_string());

    let outcome = s
        .post_query("/v1/dlq/replay", &json!({ "ids": [letter_id, poison_id] }))
        .await;
    assert_eq!(
        outcome["replayed"][0]["id"],
        letter_id.as_str(),
        "{outcome}"
    );
    assert_eq!(
        outcome["replayed"][0]["stream"],
        stream.as_str(),
        "{outcome}"
    );
    assert_eq!(outcome["replayed"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        outcome["not_replayable"][0]["id"],
        poison_id.as_str(),
        "{outcome}"
    );
    s.wait_drained().await;
    let stored = s.rows_by_id(service).await;
    assert_eq!(stored.get(&dead.id), Some(&1), "the replayed event, once");
    assert_eq!(stored.len(), good.len() + 1);
    let res = s.get(s.query, &format!("/v1/events/{}", dead.id)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["event_id"], replay_key.as_str());
    let list = s.query("/v1/dlq").await;
    assert_eq!(list["total"], 1, "only the poison is left: {list}");
    assert_eq!(list["entries"][0]["id"], poison_id.as_str());
    let again = s
        .post_query("/v1/dlq/replay", &json!({ "ids": [letter_id] }))
        .await;
    assert_eq!(again["not_found"], json!([letter_id]), "{again}");

    // Letters in shards 0 and 2 too (on the cluster with equal entry ids in
    // two streams): every page of one, oldest first, none twice.
    let t = Utc::now().timestamp_millis();
    let writes: [(u32, String); 5] = if s.cluster {
        [
            (0, format!("{t}-0")),
            (2, format!("{t}-0")),
            (0, format!("{t}-1")),
            (2, format!("{}-0", t + 1)),
            (0, format!("{}-0", t + 2)),
        ]
    } else {
        // One dead-letter stream: ids of its own making.
        [0, 2, 0, 2, 0].map(|shard| (shard, "*".to_owned()))
    };
    for (i, (shard, id)) in writes.iter().enumerate() {
        let mut e = dead.clone();
        e.id = Uuid::now_v7();
        e.message = format!("page {i}");
        s.dead_letter(*shard, id, &e).await;
    }
    let expected = s.letters_in_redis().await;
    assert_eq!(expected.len(), 6, "{expected:?}");
    if s.cluster {
        let streams: BTreeSet<&str> = expected
            .iter()
            .filter_map(|id| id.split_once(':').map(|(shard, _)| shard))
            .collect();
        assert_eq!(streams, BTreeSet::from(["0", "1", "2"]), "{expected:?}");
    }
    let whole = s.query("/v1/dlq?limit=500").await;
    let whole: Vec<&str> = whole["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(whole, expected, "one page, oldest first");
    assert_eq!(s.dlq_pages(1).await, expected, "pages of one");
    assert_eq!(s.dlq_pages(4).await, expected, "pages of four");
}

/// Scenario 4: once the worker has stored a few hundred events, the trim
/// timer empties every stream; an entry a consumer took and never acked
/// keeps itself and every later entry of its shard.
async fn streams_are_trimmed_once_stored_but_not_from_an_unacked_entry_on(redis: RedisArgs) {
    let s = stack(redis).await;
    let service = "modes-trim";
    let singles: Vec<Value> = (0..120)
        .map(|i| event(service, &format!("single {i}"), None))
        .collect();
    s.ingest_concurrently(singles).await;
    for b in 0..18 {
        let body: Vec<Value> = (0..10)
            .map(|i| event(service, &format!("batch {b}.{i}"), None))
            .collect();
        s.ingest_batch("application/json", &Value::Array(body).to_string())
            .await;
    }
    s.wait_drained().await;
    assert_eq!(s.rows(service).await, 300);
    let mut added = 0;
    for shard in 0..SHARDS {
        added += s.entries_added(&s.keys.stream(shard)).await;
    }
    // A batch is one entry; concurrent singles may share one (group commit).
    assert!(
        (18 + 1..=18 + 120).contains(&added),
        "{added} entries for 18 batches and 120 single events"
    );
    let streams: Vec<String> = (0..SHARDS).map(|shard| s.keys.stream(shard)).collect();
    let lengths = || async {
        let mut all = Vec::new();
        for stream in &streams {
            all.push(s.xlen(stream).await);
        }
        all
    };
    let trimmed = testkit::poll(Duration::from_secs(10), lengths, |l| {
        l.iter().all(|&n| n == 0)
    })
    .await;
    assert!(trimmed.is_ok(), "stream lengths: {trimmed:?}");
    // Counted just after each XTRIM returns.
    let counted = testkit::poll(
        Duration::from_secs(5),
        || s.worker_metric(worker::metrics::TRIMMED),
        |&n| n == added as f64,
    )
    .await;
    assert_eq!(counted, Ok(added as f64), "entries the worker trimmed");

    // A consumer takes a new entry of shard 0 and never acks it (the worker
    // claims only after CLAIM_IDLE, a minute): written and taken in one
    // script, so the worker cannot read it first.
    let mut stuck_entry = stream_codec::EntryWriter::new(Some("req-stuck"), 0).expect("entry");
    let mut stuck_event = EnrichedEvent {
        id: Uuid::now_v7(),
        service: "modes-trim-stuck".into(),
        message: "taken, never acked".into(),
        ts: DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("ms"),
        ingested_at: Utc::now(),
        event_id: None,
        metadata: None,
        request_id: None,
    };
    stuck_event.ingested_at =
        DateTime::from_timestamp_micros(stuck_event.ingested_at.timestamp_micros()).expect("us");
    stuck_entry.push(&stuck_event).expect("encode");
    let taken: RedisValue = redis::Script::new(
        "local id = redis.call('XADD', KEYS[1], '*', 'v', ARGV[1], 'e', ARGV[2])
         redis.call('XREADGROUP', 'GROUP', ARGV[3], 'stuck', 'COUNT', 1, 'STREAMS', KEYS[1], '>')
         return id",
    )
    .key(&streams[0])
    .arg(stream_codec::FORMAT_V2)
    .arg(stuck_entry.finish())
    .arg(CONSUMER_GROUP)
    .invoke_async(&mut s.conn().await)
    .await
    .expect("XADD and XREADGROUP");
    let RedisValue::BulkString(stuck) = taken else {
        panic!("the script answered {taken:?}");
    };
    let stuck = String::from_utf8(stuck).expect("an entry id");
    let later = ids_on_shard(service, "later", 0, 20);
    for id in &later {
        s.ingest(&event(service, id, Some(id))).await;
    }
    let caught_up = testkit::poll(
        WAIT,
        || s.shard_stats(),
        |stats| {
            stats.iter().all(|st| st.lag == Some(0))
                && stats.iter().map(|st| st.pending).collect::<Vec<_>>() == [1, 0, 0]
        },
    )
    .await;
    assert!(caught_up.is_ok(), "{caught_up:#?}");
    assert_eq!(s.rows(service).await, 320);
    // Trimmed down to the unacked entry, and no further, trim after trim.
    let kept = testkit::poll(Duration::from_secs(10), lengths, |l| l == &[21, 0, 0]).await;
    assert!(kept.is_ok(), "stream lengths: {kept:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lengths().await, [21, 0, 0]);
    let first = s.xrange(&streams[0]).await;
    assert_eq!(first[0].0, stuck, "the unacked entry is the oldest kept");
}

/// Scenario 5: a live tail sees every event of every shard added after it
/// connected, and only its service's; its SSE ids name a position in each
/// shard. Requests come in rounds, one to each shard, a little apart (as
/// traffic does): each is a race between the tail's next read and the
/// worker storing, acking and trimming the entry, which the tail must win.
async fn the_tail_sees_events_of_every_shard(redis: RedisArgs) {
    const ROUNDS: usize = 10;
    let s = stack(redis).await;
    let service = "modes-tail";
    let mut tail = Streaming::open(
        s.query,
        &format!("/v1/tail?service={service}"),
        &[("Authorization", &s.auth)],
    )
    .await;
    assert!(
        tail.wait_for(": connected", Duration::from_secs(10)).await,
        "{}",
        tail.received
    );
    // Event ids that land on each shard, a round's worth and one more.
    let mut keys: Vec<_> = (0..SHARDS)
        .map(|shard| ids_on_shard(service, &format!("tail-{shard}"), shard, ROUNDS + 1).into_iter())
        .collect();
    let mut sent: Vec<(u32, Uuid)> = Vec::new();
    for _ in 0..ROUNDS {
        for (shard, keys) in (0..SHARDS).zip(&mut keys) {
            let key = keys.next().expect("an event id");
            sent.push((shard, s.ingest(&event(service, &key, Some(&key))).await));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let other = s
        .ingest(&event("modes-not-tailed", "elsewhere", None))
        .await;
    // A batch, on shard 1 (its first event's), arrives event by event.
    let key = keys[1].next().expect("an event id");
    let batch = Value::Array(vec![
        event(service, "batch a", Some(&key)),
        event(service, "batch b", None),
    ]);
    let answered = s.ingest_batch("application/json", &batch.to_string()).await;
    sent.extend(answered.into_iter().map(|id| (1, id)));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut missing = Vec::new();
    for &(shard, id) in &sent {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !tail.wait_for(&id.to_string(), left).await {
            missing.push((shard, id));
        }
    }
    if !missing.is_empty() {
        // Stored, acked and trimmed all the same.
        s.wait_drained().await;
        let stored = s.rows(service).await;
        let mut lengths = Vec::new();
        for shard in 0..SHARDS {
            let stream = s.keys.stream(shard);
            lengths.push((s.xlen(&stream).await, s.entries_added(&stream).await));
        }
        panic!(
            "{} of {} events (shard, id) never reached the tail: {missing:?}; \
             PostgreSQL holds {stored} of them; each shard's (XLEN, entries-added): \
             {lengths:?}\n--- the tail:\n{}",
            missing.len(),
            sent.len(),
            tail.received
        );
    }
    assert!(!tail.received.contains(&other.to_string()));
    let positions: Vec<&str> = tail
        .received
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .collect();
    assert_eq!(positions.len(), sent.len(), "{}", tail.received);
    for position in positions {
        assert_eq!(position.split(',').count(), SHARDS as usize, "{position}");
    }
}

/// Scenario 6: `/health/ready` is 200 on all three services; on the
/// cluster `/health/detailed` names three masters, all answering, and the
/// three shards live on three different masters.
async fn every_service_is_ready_and_the_cluster_health_names_its_masters(redis: RedisArgs) {
    let s = stack(redis).await;
    for (name, addr) in [
        ("gateway", s.gateway),
        ("worker", s.worker),
        ("query-api", s.query),
    ] {
        let res = s.get(addr, "/health/ready").await;
        assert_eq!(res.status, 200, "{name}: {}", res.text());
        assert_eq!(res.json()["status"], "ready", "{name}");
    }
    let detailed = s.get(s.gateway, "/health/detailed").await;
    assert_eq!(detailed.status, 200);
    let detailed = detailed.json();
    assert_eq!(detailed["status"], "ok", "{detailed:#}");
    let streams = detailed["service"]["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), SHARDS as usize, "{detailed:#}");
    for shard in streams {
        assert!(shard["error"].is_null(), "{detailed:#}");
    }
    let masters = &detailed["redis_masters"];
    if !s.cluster {
        assert!(masters.is_null(), "{detailed:#}");
        return;
    }
    let masters = masters.as_array().expect("redis_masters");
    assert_eq!(masters.len(), 3, "{detailed:#}");
    assert!(masters.iter().all(|m| m["ok"] == true), "{detailed:#}");
    let addresses: BTreeSet<&str> = masters
        .iter()
        .map(|m| m["address"].as_str().expect("address"))
        .collect();

    // The shards' slots, one on each master.
    let slots: RedisValue = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut s.conn().await)
        .await
        .expect("CLUSTER SLOTS");
    let ranges = slot_ranges(slots);
    let owners: BTreeSet<u16> = (0..SHARDS)
        .map(|shard| {
            let slot = key_slot(s.keys.stream(shard).as_bytes());
            ranges
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&slot))
                .map(|(_, _, port)| *port)
                .unwrap_or_else(|| panic!("no master serves slot {slot}: {ranges:?}"))
        })
        .collect();
    assert_eq!(owners.len(), 3, "the shards share masters: {owners:?}");
    for port in owners {
        assert!(
            addresses.iter().any(|a| a.ends_with(&format!(":{port}"))),
            "master on port {port} is not in /health/detailed: {addresses:?}"
        );
    }
}

/// `CLUSTER SLOTS` as (first, last, master's port).
fn slot_ranges(reply: RedisValue) -> Vec<(u16, u16, u16)> {
    let int = |v: &RedisValue| match v {
        RedisValue::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let RedisValue::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS answered {reply:?}");
    };
    ranges
        .iter()
        .map(|range| {
            let RedisValue::Array(parts) = range else {
                panic!("a slot range is {range:?}");
            };
            let master = match parts.get(2) {
                Some(RedisValue::Array(node)) => node.get(1).and_then(int),
                _ => None,
            };
            match (
                parts.first().and_then(int),
                parts.get(1).and_then(int),
                master,
            ) {
                (Some(first), Some(last), Some(port)) => (first, last, port),
                _ => panic!("a slot range is {range:?}"),
            }
        })
        .collect()
}

/// Scenario 7 (cluster only, no stack): `Redis::connect` refuses a Redis
/// that is not what the configuration says, with the kind and a message
/// naming the problem (the services exit 64 with it).
mod start_up {
    use eventline_shared::config::{RedisArgs, SecretUrl, parse_cluster_nodes};
    use eventline_shared::redis_pool::{Redis, RedisSetupError};
    use eventline_shared::testkit;
    use eventline_shared::testkit::cluster::LocalRedisCluster;

    async fn refused(args: &RedisArgs) -> RedisSetupError {
        match Redis::connect(args).await {
            Ok(_) => panic!("{} was accepted", args.describe()),
            Err(e) => {
                assert!(e.is_configuration(), "{e:?}");
                e
            }
        }
    }

    fn on_nodes(nodes: &str) -> RedisArgs {
        RedisArgs {
            redis_cluster_nodes: Some(parse_cluster_nodes(nodes).expect("nodes")),
            ..testkit::redis_args()
        }
    }

    #[tokio::test]
    async fn cluster_nodes_that_refuse_connections_are_unreachable() {
        let port = testkit::servers::free_port().expect("a free port");
        let node = format!("redis://127.0.0.1:{port}");
        let e = refused(&on_nodes(&node)).await;
        assert!(matches!(e, RedisSetupError::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&node) && text.contains("does not answer"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_redis_url_at_a_cluster_node_is_refused() {
        let cluster = testkit::cluster_redis_args();
        let node = cluster
            .cluster_nodes()
            .and_then(|nodes| nodes.urls().next())
            .expect("a cluster node")
            .to_owned();
        let args = RedisArgs {
            redis_url: SecretUrl::for_tests(&node),
            ..testkit::redis_args()
        };
        let e = refused(&args).await;
        assert!(
            matches!(e, RedisSetupError::ClusterNodeAsSingle { .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&node) && text.contains("REDIS_CLUSTER_NODES"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn cluster_nodes_at_a_plain_redis_are_not_a_cluster() {
        let single = testkit::redis_args();
        let url = single.redis_url.expose().to_owned();
        let e = refused(&on_nodes(&url)).await;
        assert!(matches!(e, RedisSetupError::NotACluster { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("REDIS_CLUSTER_NODES")
                && text.contains(&url)
                && text.contains("not a Redis Cluster"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_cluster_node_serving_no_slot_is_refused() {
        let lone = tokio::task::spawn_blocking(LocalRedisCluster::lone_node)
            .await
            .expect("join")
            .expect("a lone cluster node");
        let node = lone.url(0);
        let e = refused(&on_nodes(&node)).await;
        assert!(
            matches!(e, RedisSetupError::UncoveredSlots { assigned: 0, .. }),
            "a node that answers but serves no slot must be UncoveredSlots, not {e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&node) && text.contains("does not serve every slot"),
            "{text}"
        );
        drop(lone);
    }

    /// What the gateway checks when `REDIS_MIN_REPLICAS_ACK` is set: the
    /// harness's cluster has a replica per master, the single server none.
    #[tokio::test]
    async fn replicas_are_counted_per_master() {
        let cluster = Redis::connect(&testkit::cluster_redis_args())
            .await
            .expect("the harness's cluster");
        assert_eq!(cluster.fewest_replicas().await, Ok(1));
        let single = Redis::connect(&testkit::redis_args())
            .await
            .expect("the harness's Redis");
        assert_eq!(single.fewest_replicas().await, Ok(0));
    }
}
