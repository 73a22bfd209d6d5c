//! The real OpenTelemetry Python SDK against `POST /v1/logs`: a gateway with
//! auth, a worker and a query-api, all in-process on one test database and
//! Redis key prefix; `load-tests/otel/send_logs.py` (run with the tools
//! virtualenv's Python, `EVENTLINE_TOOLS_PYTHON`, which `make test` builds)
//! logs records through Python's `logging` and the SDK's OTLP/HTTP exporter,
//! and the test reads them back from the query-api: service, message,
//! timestamp, severity, trace and span ids, attributes, resource and scope
//! as the contract maps them, each record stored once, the record with a
//! `log.record.uid` once although it was sent twice. Once per encoding:
//! protobuf, protobuf + gzip, JSON, JSON + gzip.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use eventline_shared::redis_keys::{CONSUMER_GROUP, RedisKeys};
use eventline_shared::stream_stats;
use eventline_shared::testkit::http::request;
use eventline_shared::testkit::python::Script;
use eventline_shared::testkit::serve::{keyed_service_args, parse_args, serve, serve_args};
use eventline_shared::testkit::{self, TestDatabase};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// The contract's longest service name.
const MAX_SERVICE_LEN: usize = 100;

/// Gateway, worker and query-api sharing a database and a Redis prefix.
struct Stack {
    gateway: SocketAddr,
    query: SocketAddr,
    key: String,
    redis_url: String,
    keys: RedisKeys,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn stack() -> Stack {
    testkit::init_logging();
    let db = TestDatabase::migrated().await;
    let redis = testkit::redis_args();
    let redis_url = redis.redis_url.expose().to_owned();
    let prefix = redis.redis_key_prefix.clone();
    let key = testkit::try_create_key(&db.pool, "otel-sdk", "ingest,query")
        .await
        .expect("create key");
    let shutdown = CancellationToken::new();

    let gateway = serve_args(
        keyed_service_args("ingest-gateway", &redis, &db.url),
        ingest_gateway::run,
        shutdown.clone(),
    )
    .await
    .addr;

    let mut config: worker::config::Config = parse_args(["worker"]);
    config.redis = redis.clone();
    config.database = db.args();
    config.listen.shutdown_grace = Duration::from_secs(2);
    let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
    let w = worker::Worker::start(config, registry)
        .await
        .expect("worker starts");
    serve(w, worker::run, shutdown.clone()).await;

    let query = serve_args(
        keyed_service_args("query-api", &redis, &db.url),
        query_api::run,
        shutdown.clone(),
    )
    .await
    .addr;

    Stack {
        gateway,
        query,
        key,
        redis_url,
        keys: RedisKeys::new(prefix),
        shutdown,
        _db: db,
    }
}

/// How the SDK is pointed at the gateway.
struct Mode {
    encoding: &'static str,
    gzip: bool,
    /// The resource's `service.name`.
    service: &'static str,
    /// `authorization=Bearer …` (false: `x-api-key=…`).
    bearer: bool,
    /// 64-bit integers in OTLP/JSON as numbers where exact (else strings).
    int64_numbers: bool,
}

/// send_logs.py, run by the tools virtualenv's Python.
fn send_logs() -> Script {
    Script::new(
        "EVENTLINE_TOOLS_PYTHON",
        "the tools virtualenv (load-tests/otel/requirements.txt: the OpenTelemetry SDK)",
        "EVENTLINE_TEST_CMD='cargo nextest run -p eventline-load --test otel' make test",
        concat!(env!("CARGO_MANIFEST_DIR"), "/otel/send_logs.py"),
    )
}

/// Runs send_logs.py against the stack's gateway; its JSON summary.
async fn send(mut script: Script, stack: &Stack, mode: &Mode) -> Value {
    let cmd = script.command();
    // Nothing from the caller's OpenTelemetry set-up may leak in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(&name);
        }
    }
    let headers = if mode.bearer {
        // The specification's form: percent-encoded values.
        format!("authorization=Bearer%20{}", stack.key)
    } else {
        format!("x-api-key={}", stack.key)
    };
    cmd.args(["--service", mode.service, "--encoding", mode.encoding])
        .args([
            "--int64",
            if mode.int64_numbers {
                "number"
            } else {
                "string"
            },
        ])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", stack.gateway),
        )
        .env("OTEL_EXPORTER_OTLP_HEADERS", headers)
        .env(
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            if mode.gzip { "gzip" } else { "none" },
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "10");
    let out = script.run(Duration::from_secs(120)).await;
    assert!(
        out.status.success(),
        "send_logs.py failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.summary()
}

/// The contract's service rule applied to `service.name`.
fn service_of(name: &str) -> String {
    if name.is_empty() {
        return "unknown_service".into();
    }
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_SERVICE_LEN);
    s
}

/// The events of `service` through the query-api, oldest first.
async fn events(stack: &Stack, service: &str, from: DateTime<Utc>) -> Vec<Value> {
    let path = format!(
        "/v1/events?service={service}&order=asc&limit=1000&from={}",
        from.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let auth = format!("Bearer {}", stack.key);
    let res = request(stack.query, "GET", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(res.status, 200, "GET {path}: {}", res.text());
    let page = res.json();
    assert!(page["next_cursor"].is_null(), "more than one page: {page}");
    page["events"].as_array().expect("events").clone()
}

/// Waits until the worker has delivered and acknowledged every entry.
async fn wait_drained(stack: &Stack) {
    let conn = redis::Client::open(stack.redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let stream = stack.keys.stream(0);
    let drained = testkit::poll(
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            let stream = &stream;
            async move {
                stream_stats::shard_stats(&mut conn, stream, CONSUMER_GROUP)
                    .await
                    .expect("stream stats")
            }
        },
        |stats| stats.pending == 0 && stats.lag == Some(0),
    )
    .await;
    if let Err(stats) = drained {
        panic!("stream not drained in 30 s: {stats:?}");
    }
}

/// The metadata the contract maps an exported record to.
fn expected_metadata(record: &Value) -> Value {
    let mut m = Map::new();
    let text = record["severity_text"].as_str().unwrap_or_default();
    if !text.is_empty() {
        m.insert("severity_text".into(), json!(text));
    }
    let number = record["severity_number"].as_u64().unwrap_or_default();
    if number != 0 {
        m.insert("severity_number".into(), json!(number));
    }
    if let Some(name) = record["event_name"].as_str().filter(|s| !s.is_empty()) {
        m.insert("event_name".into(), json!(name));
    }
    for id in ["trace_id", "span_id"] {
        if let Some(hex) = record[id].as_str() {
            m.insert(id.into(), json!(hex));
        }
    }
    let flags = record["flags"].as_u64().unwrap_or_default();
    if flags != 0 {
        m.insert("flags".into(), json!(flags));
    }
    let attributes = record["attributes"].as_object().expect("attributes");
    if !attributes.is_empty() {
        m.insert("attributes".into(), Value::Object(attributes.clone()));
    }
    m.insert("resource".into(), record["resource"].clone());
    let mut scope = Map::new();
    scope.insert("name".into(), record["scope"]["name"].clone());
    if let Some(version) = record["scope"]["version"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        scope.insert("version".into(), json!(version));
    }
    m.insert("scope".into(), Value::Object(scope));
    let dropped = record["dropped_attributes_count"]
        .as_u64()
        .unwrap_or_default();
    if dropped != 0 {
        m.insert("dropped_attributes_count".into(), json!(dropped));
    }
    Value::Object(m)
}

/// The keys of two JSON objects whose values differ (for a readable failure).
fn differences(want: &Value, got: &Value) -> Vec<String> {
    let (Some(want), Some(got)) = (want.as_object(), got.as_object()) else {
        return vec![format!("want {want}, got {got}")];
    };
    let mut out = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => out.push(format!("`{k}` missing (want {w})")),
            Some(g) if g != w => {
                if w.is_object() && g.is_object() {
                    for d in differences(w, g) {
                        out.push(format!("{k}.{d}"));
                    }
                } else {
                    out.push(format!("`{k}`: want {w}, got {g}"));
                }
            }
            Some(_) => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push(format!("`{k}` unexpected ({g})"));
        }
    }
    out
}

/// The record's message as stored: a string body as is, anything else as
/// its JSON text (compared parsed, so key order and spacing do not matter).
fn message_matches(body: &Value, message: &str) -> bool {
    match body {
        Value::String(s) => s == message,
        other => serde_json::from_str::<Value>(message).is_ok_and(|v| &v == other),
    }
}

async fn check(mode: Mode) {
    let script = send_logs();
    let stack = stack().await;
    let started = Utc::now() - TimeDelta::hours(1);
    let summary = send(script, &stack, &mode).await;
    let dump = || serde_json::to_string_pretty(&summary).unwrap_or_default();

    // What the SDK did and what the gateway answered.
    let content_type = match mode.encoding {
        "protobuf" => "application/x-protobuf",
        _ => "application/json",
    };
    let answers = summary["answers"].as_array().expect("answers");
    let exports = summary["exports"].as_array().expect("exports");
    assert!(
        exports.len() >= 3,
        "expected ≥ 3 exports (the records, the uid record, its resend):\n{}",
        dump()
    );
    // A 429 or 503 (a busy machine) is retried by the exporter: fine, as
    // long as every export ends in a 200.
    let (accepted, retried): (Vec<&Value>, Vec<&Value>) =
        answers.iter().partition(|a| a["status"] == 200);
    for answer in retried {
        assert!(
            [429, 502, 503, 504].contains(&answer["status"].as_u64().unwrap_or_default()),
            "an export was refused: {answer}"
        );
    }
    assert_eq!(
        accepted.len(),
        exports.len(),
        "one 200 per export:\n{}",
        dump()
    );
    for answer in accepted {
        assert_eq!(
            answer["request_content_type"], content_type,
            "the script sent another encoding: {answer}"
        );
        assert_eq!(
            answer["request_content_encoding"],
            if mode.gzip { "gzip" } else { "" },
            "{answer}"
        );
        assert!(
            answer["content_type"]
                .as_str()
                .is_some_and(|t| t.starts_with(content_type)),
            "the answer is not an ExportLogsServiceResponse in the request's encoding: {answer}"
        );
        assert_eq!(
            answer["rejected"], 0,
            "records rejected (partial success): {answer}"
        );
    }
    assert_eq!(summary["uid_resent"], 1, "the uid record was not resent");

    let records = summary["records"].as_array().expect("records");
    let uid = summary["uid"].as_str().expect("uid");
    assert_eq!(records.len(), 9, "{}", dump());
    let levels: Vec<(&str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["severity_text"].as_str().unwrap_or_default(),
                r["severity_number"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    for level in [
        ("DEBUG", 5),
        ("INFO", 9),
        ("WARN", 13),
        ("ERROR", 17),
        ("FATAL", 21),
    ] {
        assert!(levels.contains(&level), "no {level:?} record: {levels:?}");
    }
    let trace_id = summary["trace_id"].as_str().expect("a record in a span");
    let span_id = summary["span_id"].as_str().expect("a record in a span");
    assert!(
        trace_id.len() == 32 && span_id.len() == 16,
        "{trace_id} {span_id}"
    );
    let typed = records
        .iter()
        .find(|r| r["attributes"]["order.id"] == "o-1001" && r["attributes"]["items"] == 3)
        .expect("the record with typed attributes");
    assert!(typed["attributes"]["amount"].is_f64() && typed["attributes"]["paid"] == true);

    // What the query-api reads back, once the worker has stored it all.
    let service = service_of(mode.service);
    let _ = testkit::poll(
        Duration::from_secs(30),
        || events(&stack, &service, started),
        |stored| stored.len() >= records.len(),
    )
    .await;
    wait_drained(&stack).await;
    let stored = events(&stack, &service, started).await;

    let mut problems = Vec::new();
    for record in records {
        let body = &record["body"];
        let matching: Vec<&Value> = stored
            .iter()
            .filter(|e| message_matches(body, e["message"].as_str().unwrap_or_default()))
            .collect();
        let [event] = matching.as_slice() else {
            problems.push(format!(
                "record {body}: stored {} times (want once)",
                matching.len()
            ));
            continue;
        };
        if event["service"] != service.as_str() {
            problems.push(format!(
                "record {body}: service {} (want {service})",
                event["service"]
            ));
        }
        let ns = record["time_unix_nano"].as_u64().expect("time_unix_nano");
        let want_ts = DateTime::from_timestamp_millis((ns / 1_000_000) as i64)
            .expect("time")
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        if event["timestamp"] != want_ts.as_str() {
            problems.push(format!(
                "record {body}: timestamp {} (want {want_ts}, from timeUnixNano {ns})",
                event["timestamp"]
            ));
        }
        let has_uid = record["attributes"]["log.record.uid"] == uid;
        let want_event_id = if has_uid { json!(uid) } else { Value::Null };
        if event["event_id"] != want_event_id {
            problems.push(format!(
                "record {body}: event_id {} (want {want_event_id})",
                event["event_id"]
            ));
        }
        let want = expected_metadata(record);
        for d in differences(&want, &event["metadata"]) {
            problems.push(format!("record {body}: metadata.{d}"));
        }
    }
    if stored.len() != records.len() {
        problems.push(format!(
            "{} events stored for {} records sent",
            stored.len(),
            records.len()
        ));
    }
    let with_uid = stored.iter().filter(|e| e["event_id"] == uid).count();
    if with_uid != 1 {
        problems.push(format!(
            "the log.record.uid record (sent twice) is stored {with_uid} times"
        ));
    }
    let spanned = stored
        .iter()
        .filter(|e| e["metadata"]["trace_id"] == trace_id && e["metadata"]["span_id"] == span_id)
        .count();
    if spanned != 1 {
        problems.push(format!(
            "{spanned} events carry the span's trace id {trace_id} and span id {span_id}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} ({} encoding, gzip {}): {} problem(s):\n  {}\n--- stored:\n{}\n--- sent:\n{}",
        mode.service,
        mode.encoding,
        mode.gzip,
        problems.len(),
        problems.join("\n  "),
        serde_json::to_string_pretty(&stored).unwrap_or_default(),
        dump()
    );
}

#[tokio::test]
async fn sdk_protobuf_records_are_stored_once_as_mapped() {
    check(Mode {
        encoding: "protobuf",
        gzip: false,
        service: "otel-py.protobuf",
        bearer: true,
        int64_numbers: false,
    })
    .await;
}

#[tokio::test]
async fn sdk_protobuf_gzip_records_are_stored_once_as_mapped() {
    check(Mode {
        encoding: "protobuf",
        gzip: true,
        // Outside the service rule: made valid, not rejected.
        service: "otel py/protobuf+gzip",
        bearer: false,
        int64_numbers: false,
    })
    .await;
}

#[tokio::test]
async fn sdk_records_as_otlp_json_are_stored_once_as_mapped() {
    check(Mode {
        encoding: "json",
        gzip: false,
        service: "otel-py.json",
        bearer: true,
        int64_numbers: false,
    })
    .await;
}

#[tokio::test]
async fn sdk_records_as_gzipped_otlp_json_with_numeric_int64_are_stored_once_as_mapped() {
    check(Mode {
        encoding: "json",
        gzip: true,
        service: "otel-py.json-gzip",
        bearer: false,
        int64_numbers: true,
    })
    .await;
}

#[test]
fn service_names_are_made_valid_as_the_contract_says() {
    assert_eq!(service_of("otel py/protobuf+gzip"), "otel_py_protobuf_gzip");
    assert_eq!(service_of(""), "unknown_service");
    assert_eq!(service_of(&"x".repeat(150)).len(), MAX_SERVICE_LEN);
}
