//! The console in a real browser: a gateway, a worker and a query-api (with
//! keys) in-process on one database and Redis prefix; events sent through
//! the gateway and stored by the worker; a dead letter waiting; then
//! `tests/browser/console_test.py` drives headless Chromium over WebDriver
//! (Selenium from the browser virtualenv, `EVENTLINE_BROWSER_PYTHON`, and
//! Debian's `chromium` and `chromium-driver`, all of which `make test`
//! installs) through sign-in, search, filters, an event and its permalink,
//! the live tail, HTML in events, and the dead letters of an admin and of a
//! query-only key. It saves a screenshot of the search page to
//! `target/console-test/console.png` (to `docs/console.png` with
//! `EVENTLINE_UPDATE_SCREENSHOT=1`); on failure a screenshot,
//! the page and the browser's console log land in `target/console-test/`.
//! The figures it measured (time to the first 100 rows, bytes transferred)
//! are written to `target/console-test/summary.json`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta, Utc};
use eventline_shared::stream_codec;
use eventline_shared::testkit::python::Script;
use eventline_shared::testkit::serve::{keyed_service_args, parse_args, serve, serve_args};
use eventline_shared::testkit::wait_until;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, event_at, request, secured_app};

/// Events sent for the search, and how many a filter keeps.
const SENT: usize = 150;
/// Events loaded into the list at once.
const BIG: usize = 10_000;

/// console_test.py, run by the browser virtualenv's Python.
fn console_test() -> Script {
    Script::new(
        "EVENTLINE_BROWSER_PYTHON",
        "the browser virtualenv (services/query-api/tests/browser/requirements.txt: \
         Selenium), installs chromium and chromium-driver,",
        "EVENTLINE_TEST_CMD='cargo nextest run -p query-api -E \"test(/browser/)\"' make test",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console_test.py"),
    )
}

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace().join(t)
            }
        })
        .unwrap_or_else(|| workspace().join("target"));
    target.join("console-test")
}

/// A gateway and a worker beside the test's query-api.
async fn gateway_and_worker(app: &TestApp, stop: &CancellationToken) -> std::net::SocketAddr {
    let gateway = serve_args(
        keyed_service_args("ingest-gateway", &app.redis, &app.db.url),
        ingest_gateway::run,
        stop.clone(),
    )
    .await;

    let mut config: worker::config::Config = parse_args(["worker"]);
    config.redis = app.redis.clone();
    config.database = app.db.args();
    config.listen.shutdown_grace = Duration::from_secs(2);
    let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
    let w = worker::Worker::start(config, registry).await.unwrap();
    serve(w, worker::run, stop.clone()).await;
    gateway.addr
}

#[tokio::test]
async fn browser_console_end_to_end() {
    let mut script = console_test();
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: `make test` installs Debian's chromium and chromium-driver"
        );
    }
    let app = secured_app(&["--tail-heartbeat", "1000"]).await;
    let query = app.create_key("query").await;
    let admin = app.create_key("admin").await;
    let ingest = app.create_key("ingest").await;
    let stop = CancellationToken::new();
    let gateway = gateway_and_worker(&app, &stop).await;
    let auth = format!("Bearer {ingest}");
    let ready = wait_until(Duration::from_secs(10), || async {
        request(
            gateway,
            "POST",
            "/v1/events",
            &[("Authorization", &auth)],
            b"{}",
        )
        .await
        .status
            == 400
    })
    .await;
    assert!(ready, "the gateway does not know the ingest key");

    // The events: 150 in the last 25 minutes, half in region eu, every
    // tenth a failed payment in eu; and one holding HTML in its message
    // and in a metadata key.
    let service = format!(
        "console-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let marker = format!("xss{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let now = Utc::now();
    let mut batch: Vec<Value> = (0..SENT)
        .map(|i| {
            let ts = now - TimeDelta::seconds(10 * i as i64 + 5);
            json!({
                "service": service,
                "message": if i % 5 == 0 { format!("payment FAILED for order {i}") } else { format!("order {i} placed") },
                "timestamp": ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                "metadata": { "region": if i % 2 == 0 { "eu" } else { "us" }, "order": i },
            })
        })
        .collect();
    batch.push(json!({
        "service": service,
        "message": format!("<img src=x onerror=\"window.__xss=1\"> {marker}"),
        "timestamp": (now - TimeDelta::seconds(2)).to_rfc3339_opts(SecondsFormat::Millis, true),
        "metadata": { "<img src=x onerror=window.__xss=2>": "<script>window.__xss=3</script>" },
    }));
    let res = request(
        gateway,
        "POST",
        "/v1/events/batch",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        serde_json::to_string(&batch).unwrap().as_bytes(),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let ids: Vec<String> = res.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), SENT + 1);
    let path = format!("/v1/events?service={service}&limit=1000");
    let stored = wait_until(Duration::from_secs(30), || async {
        let res = app.get_with_key(&path, &query).await;
        res.status == 200 && res.json()["events"].as_array().map(Vec::len) == Some(SENT + 1)
    })
    .await;
    assert!(stored, "the worker did not store the events");

    // 10,000 events of another service, one in a hundred with a
    // 2,000-character message and ~16 KiB of metadata: the list must stay
    // smooth with all of them loaded.
    let big_service = format!("{service}-big");
    let long_message: String = "long message ".repeat(200).chars().take(2000).collect();
    let big: Vec<_> = (0..BIG)
        .map(|i| {
            let ts = now - TimeDelta::milliseconds(300 * i as i64 + 1000);
            let mut e = event_at(&big_service, &format!("row {i}"), ts);
            if i % 100 == 0 {
                e.message = long_message.clone();
                let fields: serde_json::Map<String, Value> = (0..100)
                    .map(|k| (format!("field_{k:03}"), json!("v".repeat(148))))
                    .collect();
                e.metadata = Some(Value::Object(fields).to_string());
            } else {
                e.metadata = Some(json!({ "n": i }).to_string());
            }
            e
        })
        .collect();
    app.store(&big).await;

    // A dead letter, as the worker writes one.
    let dead = event_at(
        &service,
        &format!("replayed {marker}"),
        now - TimeDelta::seconds(30),
    );
    let dead_letter: String = redis::cmd("XADD")
        .arg(app.keys.dlq_of(&app.keys.stream(0)))
        .arg("*")
        .arg(stream_codec::FIELD_VERSION)
        .arg(stream_codec::FORMAT_V1)
        .arg(stream_codec::FIELD_EVENT)
        .arg(stream_codec::encode(&dead).unwrap())
        .arg("reason")
        .arg("data_error")
        .arg("error")
        .arg("value too long for type character varying")
        .arg("deliveries")
        .arg(3)
        .query_async(&mut app.conn.clone())
        .await
        .unwrap();

    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let config = json!({
        "query_url": format!("http://{}", app.addr),
        "gateway_url": format!("http://{gateway}"),
        "query_key": query,
        "admin_key": admin,
        "ingest_key": ingest,
        "service": service,
        "ids": ids,
        "eu": SENT / 2,
        "failed_eu": SENT / 10,
        "xss_marker": marker,
        "big_service": big_service,
        "big_count": BIG,
        "dead_letter_id": dead_letter,
        "dead_event_id": dead.id.to_string(),
        "dead_message": format!("replayed {marker}"),
        "failure_dir": out.join("failure"),
        "shots_dir": out.join("views"),
        // docs/console.png is refreshed on request only, so a test run
        // leaves the tree as it found it.
        "screenshot": if std::env::var_os("EVENTLINE_UPDATE_SCREENSHOT").is_some() {
            workspace().join("docs/console.png")
        } else {
            out.join("console.png")
        },
    });
    let config_path = out.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(out.join("failure"));

    script
        .command()
        .arg(&config_path)
        .env("SE_AVOID_STATS", "true");
    let result = script.run(Duration::from_secs(300)).await;
    // The keys were in the config file only for the script's run.
    let _ = std::fs::remove_file(&config_path);
    assert!(
        result.status.success(),
        "console_test.py failed ({}):\n--- stderr\n{}\n--- stdout\n{}",
        result.status,
        result.stderr,
        result.stdout
    );
    let summary = result.summary();
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary).unwrap(),
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    let cold = &summary["cold"];
    assert!(
        cold["page_transfer_bytes"].as_f64().unwrap_or(f64::MAX) < 150.0 * 1024.0,
        "the page weighs more than 150 KiB: {cold}"
    );

    // The replayed dead letter is stored and gone from the DLQ.
    let res = app
        .get_with_key(&format!("/v1/events/{}", dead.id), &query)
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let res = app.get_with_key("/v1/dlq", &admin).await;
    assert_eq!(res.json()["total"], 0);
    stop.cancel();
}
