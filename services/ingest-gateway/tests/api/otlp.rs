//! `POST /v1/logs` through the front door: both encodings, gzip, partial
//! success, and every error answered as a `google.rpc.Status` in the
//! request's encoding.

use std::time::Duration;

use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use eventline_shared::testkit::create_key;

use crate::helpers::*;

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn record(body: &str, attributes: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        time_unix_nano: Utc::now().timestamp_nanos_opt().expect("a time within u64") as u64,
        severity_number: 13,
        severity_text: "WARN".into(),
        body: string(body),
        attributes: attributes
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).into(),
                value: string(v),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn export(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn protobuf_records_land_on_the_stream_and_bad_ones_are_counted() {
    let gw = open_gateway(&[]).await;
    let body = export(
        "billing api",
        vec![
            record("charged", &[("order", "42")]),
            record("", &[]),
            record("refunded", &[("log.record.uid", "uid-7")]),
            record("refunded", &[("log.record.uid", "uid-7")]),
        ],
    )
    .encode_to_vec();
    let res = request(gw.addr, "POST", "/v1/logs", &[PROTOBUF], &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/x-protobuf"));
    let answer = ExportLogsServiceResponse::decode(&res.body[..]).expect("a response message");
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial
            .error_message
            .starts_with("resourceLogs[0].scopeLogs[0].logRecords[1]: `message` must not be empty"),
        "{}",
        partial.error_message
    );

    // The uid repeated within the request is sent once.
    let events = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(events.len(), 2);
    let (_, charged) = &events[0];
    assert_eq!(charged.service, "billing_api");
    assert_eq!(charged.message, "charged");
    assert!(charged.request_id.is_some());
    let metadata: serde_json::Value =
        serde_json::from_str(charged.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(metadata["severity_text"], "WARN");
    assert_eq!(metadata["severity_number"], 13);
    assert_eq!(metadata["attributes"]["order"], "42");
    assert_eq!(metadata["resource"]["service.name"], "billing api");
    assert_eq!(events[1].1.event_id.as_deref(), Some("uid-7"));
}

#[tokio::test]
async fn json_and_gzip_are_accepted_and_answered_in_json() {
    let gw = open_gateway(&[]).await;
    let nanos = Utc::now().timestamp_nanos_opt().unwrap();
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"web"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"lib"}},"logRecords":[{{"timeUnixNano":"{nanos}","severityNumber":9,
        "severityText":"INFO","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "body":{{"stringValue":"hello"}},"attributes":[{{"key":"n","value":{{"intValue":"7"}}}}],
        "someFutureField":{{"x":1}}}}]}}]}}]}}"#
    );
    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[JSON, ("Content-Encoding", "gzip")],
        &gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json(), serde_json::json!({}));
    let events = stream_events(&gw.redis_url, &gw.keys.stream(0)).await;
    assert_eq!(events.len(), 1);
    let event = &events[0].1;
    assert_eq!(event.service, "web");
    assert_eq!(event.ts.timestamp_millis(), nanos / 1_000_000);
    let metadata: serde_json::Value =
        serde_json::from_str(event.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(metadata["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(metadata["span_id"], "eee19b7ec3c1b174");
    assert_eq!(metadata["attributes"]["n"], 7);
    assert_eq!(metadata["scope"]["name"], "lib");

    // Every record rejected: still a 200, with the count.
    let stale = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1000","body":{"stringValue":"x"}}]}]}]}"#;
    let res = request(gw.addr, "POST", "/v1/logs", &[JSON], stale.as_bytes()).await;
    assert_eq!(res.status, 200);
    let json = res.json();
    assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        json["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("older than the retention window")
    );
}

#[tokio::test]
async fn undecodable_bodies_are_400_statuses_in_the_requests_encoding() {
    let gw = open_gateway(&[]).await;
    let whole = export("s", vec![record("m", &[])]).encode_to_vec();
    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[PROTOBUF],
        &whole[..whole.len() - 2],
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.header("content-type"), Some("application/x-protobuf"));
    let status = Status::decode(&res.body[..]).expect("a google.rpc.Status");
    assert_eq!(status.code, 3);
    assert!(status.message.contains("not an OTLP logs export request"));

    // A protobuf body sent as JSON.
    let res = request(gw.addr, "POST", "/v1/logs", &[JSON], &whole).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["code"], 3);

    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "text/plain")],
        b"hi",
    )
    .await;
    assert_eq!(res.status, 415);
    assert!(res.json()["message"].as_str().unwrap().contains("protobuf"));
    assert!(
        stream_events(&gw.redis_url, &gw.keys.stream(0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn over_the_limit_inflated_is_a_413() {
    let gw = open_gateway(&["--max-body-bytes", "65536"]).await;
    let big = "x".repeat(1500);
    let records = (0..100).map(|_| record(&big, &[])).collect();
    let body = gzip(&export("s", records).encode_to_vec());
    assert!(body.len() < 65536, "small on the wire");
    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &body,
    )
    .await;
    assert_eq!(res.status, 413);
    assert!(Status::decode(&res.body[..]).is_ok());
}

#[tokio::test]
async fn more_records_than_max_log_records_is_a_413_in_either_encoding() {
    let gw = open_gateway(&["--max-log-records", "5"]).await;
    let five = export("s", (0..5).map(|_| record("m", &[])).collect());
    let six = export("s", (0..6).map(|_| record("m", &[])).collect());
    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[PROTOBUF],
        &five.encode_to_vec(),
    )
    .await;
    assert_eq!(res.status, 200);
    let res = request(
        gw.addr,
        "POST",
        "/v1/logs",
        &[PROTOBUF],
        &six.encode_to_vec(),
    )
    .await;
    assert_eq!(res.status, 413);
    let status = Status::decode(&res.body[..]).expect("a google.rpc.Status");
    assert!(status.message.contains("6"), "{}", status.message);
    let json = serde_json::to_vec(&six).expect("OTLP/JSON");
    let res = request(gw.addr, "POST", "/v1/logs", &[JSON], &json).await;
    assert_eq!(res.status, 413);
    assert_eq!(
        stream_events(&gw.redis_url, &gw.keys.stream(0)).await.len(),
        5
    );
}

#[tokio::test]
async fn keys_scopes_and_limits_are_those_of_the_json_endpoints() {
    let (gw, db) = secured_gateway(&[
        "--rate-limit-key-per-second",
        "1",
        "--rate-limit-key-burst",
        "2",
    ])
    .await;
    let ingest = create_key(&db.pool, "ingest").await;
    let query = create_key(&db.pool, "query").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = export("s", vec![record("m", &[])]).encode_to_vec();
    let post = |headers: Vec<(&'static str, String)>| {
        let body = body.clone();
        async move {
            let mut all: Vec<(&str, &str)> = vec![PROTOBUF];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            request(gw.addr, "POST", "/v1/logs", &all, &body).await
        }
    };

    let res = post(vec![]).await;
    assert_eq!(res.status, 401);
    assert_eq!(Status::decode(&res.body[..]).unwrap().code, 16);
    let res = post(vec![("Authorization", format!("Bearer {query}"))]).await;
    assert_eq!(res.status, 403);
    // What OTEL_EXPORTER_OTLP_HEADERS=x-api-key=… sends.
    let res = post(vec![("X-API-Key", ingest.clone())]).await;
    assert_eq!(res.status, 200);
    let res = post(vec![("Authorization", format!("Bearer {ingest}"))]).await;
    assert_eq!(res.status, 200);
    // The key's burst of 2 events is spent: 429, which exporters retry.
    let res = post(vec![("Authorization", format!("Bearer {ingest}"))]).await;
    assert_eq!(res.status, 429);
    assert!(res.header("retry-after").is_some());
    assert_eq!(Status::decode(&res.body[..]).unwrap().code, 8);
}
