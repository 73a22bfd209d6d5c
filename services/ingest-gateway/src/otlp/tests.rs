use super::*;
use chrono::TimeZone;
use opentelemetry_proto::tonic::common::v1::{
    ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn nanos(ts: DateTime<Utc>) -> u64 {
    ts.timestamp_nanos_opt().unwrap() as u64
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", string(service))],
        ..Default::default()
    }
}

fn record(body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: nanos(now()) + 123_456_789,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(string(body)),
        ..Default::default()
    }
}

fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.module".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metadata(event: &ValidEvent) -> serde_json::Value {
    serde_json::from_str(event.metadata().unwrap()).unwrap()
}

#[test]
fn a_record_maps_to_the_contracts_fields() {
    let mut rec = record("user signed in");
    rec.trace_id = (1..=16).collect();
    rec.span_id = vec![0xab; 8];
    rec.flags = 1;
    rec.attributes = vec![
        kv("user.id", string("u-1")),
        kv(
            "n",
            AnyValue {
                value: Some(Value::IntValue(i64::MAX)),
            },
        ),
        kv(RECORD_UID, string("uid-1")),
    ];
    let mapped = map_request(
        &request("checkout", vec![rec]),
        &EventLimits::default(),
        now(),
    );
    assert!(mapped.rejected.is_empty());
    let event = &mapped.events[0];
    assert_eq!(event.service(), "checkout");
    assert_eq!(event.message(), "user signed in");
    assert_eq!(
        event.ts(),
        now() + chrono::TimeDelta::milliseconds(123),
        "to the millisecond"
    );
    assert_eq!(event.event_id(), Some("uid-1"));
    assert_eq!(
        metadata(event),
        serde_json::json!({
            "severity_text": "INFO",
            "severity_number": 9,
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "abababababababab",
            "flags": 1,
            "attributes": {"user.id": "u-1", "n": i64::MAX, "log.record.uid": "uid-1"},
            "resource": {"service.name": "checkout"},
            "scope": {"name": "app.module", "version": "1.2"},
        })
    );
    // Integers beyond 2^53 stay exact in the text.
    assert!(event.metadata().unwrap().contains("9223372036854775807"));
}

#[test]
fn service_names_are_made_to_fit_the_rule() {
    let limits = EventLimits::default();
    let name = |s: &str| service_name(Some(&resource(s)), &limits).into_owned();
    assert_eq!(name("unknown_service:python3"), "unknown_service:python3");
    assert_eq!(name("my service/api é"), "my_service_api__");
    assert_eq!(name(&"a".repeat(300)).len(), 100);
    assert_eq!(name(""), UNKNOWN_SERVICE);
    assert_eq!(service_name(None, &limits), UNKNOWN_SERVICE);
}

#[test]
fn bodies_other_than_strings_are_their_json_text() {
    let mut rec = record("");
    rec.body = Some(AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "list",
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(Value::BoolValue(true)),
                                },
                                AnyValue {
                                    value: Some(Value::DoubleValue(1.5)),
                                },
                            ],
                        })),
                    },
                ),
                kv(
                    "raw",
                    AnyValue {
                        value: Some(Value::BytesValue(b"hi".to_vec())),
                    },
                ),
            ],
        })),
    });
    let mapped = map_request(&request("s", vec![rec]), &EventLimits::default(), now());
    assert_eq!(
        mapped.events[0].message(),
        r#"{"list":[true,1.5],"raw":"aGk="}"#
    );
}

#[test]
fn timestamps_fall_back_to_observed_then_receive_time() {
    let limits = EventLimits::default();
    let mut observed = record("m");
    observed.time_unix_nano = 0;
    observed.observed_time_unix_nano = nanos(now()) - 5_000_000_000;
    let mut none = record("m");
    none.time_unix_nano = 0;
    let mapped = map_request(&request("s", vec![observed, none]), &limits, now());
    assert_eq!(mapped.events[0].ts(), now() - chrono::TimeDelta::seconds(5));
    assert_eq!(mapped.events[1].ts(), now());
}

#[test]
fn records_that_break_a_rule_are_counted_and_the_first_reason_named() {
    let limits = EventLimits::default();
    let mut old = record("old");
    old.time_unix_nano = nanos(now() - chrono::TimeDelta::days(40));
    let mut nul = record("m");
    nul.attributes = vec![kv("k", string("a\0b"))];
    let mut bad_uid = record("m");
    bad_uid.attributes = vec![kv(RECORD_UID, string("é"))];
    let mut deep = AnyValue::default();
    for _ in 0..20 {
        deep = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![deep] })),
        };
    }
    let mut too_deep = record("m");
    too_deep.attributes = vec![kv("deep", deep)];
    let mut many = record("m");
    many.attributes = (0..10_000)
        .map(|i| kv(&format!("k{i}"), string("v")))
        .collect();
    let records = vec![
        record(""),
        old,
        nul,
        bad_uid,
        too_deep,
        many,
        record("fine"),
    ];
    let mapped = map_request(&request("s", records), &limits, now());
    assert_eq!(mapped.events.len(), 1);
    assert_eq!(mapped.events[0].message(), "fine");
    let codes: Vec<_> = mapped
        .rejected
        .iter()
        .map(|(code, n)| (code.as_str(), *n))
        .collect();
    assert_eq!(
        codes,
        [
            ("empty", 1),
            ("timestamp_too_old", 1),
            ("nul_character", 1),
            ("invalid_characters", 1),
            ("too_deep", 1),
            ("too_large", 1)
        ]
    );
    assert_eq!(mapped.rejected_count(), 6);
    let reason = mapped.first_reason.unwrap();
    assert!(
        reason.starts_with("resourceLogs[0].scopeLogs[0].logRecords[0]: `message`"),
        "{reason}"
    );
}

#[test]
fn both_encodings_decode_and_bad_bodies_are_400s() {
    let req = request("s", vec![record("m")]);
    let bytes = req.encode_to_vec();
    assert_eq!(decode(&bytes, Encoding::Protobuf).unwrap(), req);
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano":"1765022400000000000","severityNumber":9,
        "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"abababababababab",
        "body":{"stringValue":"m"},"attributes":[{"key":"n","value":{"intValue":"42"}},
        {"key":"m","value":{"intValue":7}}],"unknownField":true}]}]}]}"#;
    let decoded = decode(json.as_bytes(), Encoding::Json).unwrap();
    let rec = &decoded.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(rec.time_unix_nano, 1_765_022_400_000_000_000);
    assert_eq!(rec.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(rec.attributes.len(), 2);
    for bad in [&bytes[..bytes.len() - 3], b"\xff\xff\xff"] {
        assert!(matches!(
            decode(bad, Encoding::Protobuf),
            Err(ApiError::BadRequest { .. })
        ));
    }
    assert!(matches!(
        decode(&bytes, Encoding::Json),
        Err(ApiError::BadRequest { .. })
    ));
}

#[test]
fn ids_of_the_wrong_length_or_all_zero_are_left_out() {
    assert_eq!(id_hex(&[0; 16], 16), None);
    assert_eq!(id_hex(&[1; 15], 16), None);
    assert_eq!(id_hex(&[1; 8], 8).as_deref(), Some("0101010101010101"));
}

#[test]
fn records_are_counted_on_the_wire_as_decoding_would_count_them() {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![
            request("a", vec![record("1"), record("2")])
                .resource_logs
                .remove(0),
            request("b", vec![record("3")]).resource_logs.remove(0),
            ResourceLogs::default(),
        ],
    };
    let bytes = req.encode_to_vec();
    assert_eq!(count_protobuf_records(&bytes), 3);
    assert_eq!(count_records(&req), 3);
    // Empty records are two bytes each: counted without building them.
    let mut empty = vec![0x0a, 0x00];
    let scope: Vec<u8> = [0x12, 0x00].repeat(1000);
    let mut resource = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut resource);
    resource.extend(&scope);
    empty.clear();
    empty.push(0x0a);
    prost::encoding::encode_varint(resource.len() as u64, &mut empty);
    empty.extend(&resource);
    assert_eq!(count_protobuf_records(&empty), 1000);
    // Malformed input stops the count without a panic.
    for cut in 0..bytes.len() {
        assert!(count_protobuf_records(&bytes[..cut]) <= 3);
    }
    assert_eq!(
        count_protobuf_records(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        0
    );
}

/// The rules checked while writing agree with the validator's own walk of
/// the same JSON text, for nesting around the limit and U+0000 anywhere.
#[test]
fn rules_checked_while_writing_agree_with_the_validators_walk() {
    let limits = EventLimits::default();
    let nest = |leaf: AnyValue, levels: usize, kvlist: bool| {
        let mut value = leaf;
        for _ in 0..levels {
            value = AnyValue {
                value: Some(if kvlist {
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("k", value)],
                    })
                } else {
                    Value::ArrayValue(ArrayValue {
                        values: vec![value],
                    })
                }),
            };
        }
        value
    };
    let mut cases = Vec::new();
    for levels in 0..20 {
        for kvlist in [false, true] {
            cases.push((levels, kvlist, "x"));
            cases.push((levels, kvlist, "x\0y"));
        }
    }
    for (i, (levels, kvlist, leaf)) in cases.into_iter().enumerate() {
        let mut rec = record("m");
        rec.attributes = vec![kv("a", nest(string(leaf), levels, kvlist))];
        let source = Source {
            service: "s",
            resource: None,
            scope: None,
        };
        let checked = map_record(&source, &rec, &limits, now()).map_err(|e| e.code);
        // The same JSON text, written without the rules: the NUL goes in
        // as the escape the validator's parser reads back as U+0000.
        rec.attributes = vec![kv("a", nest(string("xZy"), levels, kvlist))];
        let json = metadata::record_json(&rec, None, None, usize::MAX, 0)
            .unwrap()
            .replace("xZy", &leaf.replace('\0', "\\u0000"));
        let walked = validate::validate_decoded(
            DecodedFields {
                service: "s",
                message: "m",
                timestamp: None,
                metadata: Some(DecodedMetadata::Text(&json)),
                event_id: None,
            },
            &limits,
            now(),
        )
        .map(|_| ())
        .map_err(|e| e.code);
        assert_eq!(checked.map(|_| ()), walked, "case {i}: {json}");
    }
}

#[test]
fn a_nul_in_the_resource_or_scope_rejects_each_of_their_records_with_the_field() {
    let mut req = request("svc", vec![record("a"), record("b")]);
    req.resource_logs[0].scope_logs[0].scope = Some(InstrumentationScope {
        name: "lib\0".into(),
        ..Default::default()
    });
    let mapped = map_request(&req, &EventLimits::default(), now());
    assert!(mapped.events.is_empty());
    assert_eq!(mapped.rejected_count(), 2);
    assert!(
        mapped
            .first_reason
            .as_deref()
            .unwrap()
            .contains("`metadata.scope.name` must not contain U+0000"),
        "{:?}",
        mapped.first_reason
    );
}
