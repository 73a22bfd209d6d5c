//! Every rule of the event table, accepted and rejected.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn ok(json: &str) -> ValidEvent {
    parse_event(json.as_bytes(), &EventLimits::default(), now())
        .unwrap_or_else(|e| panic!("{json} rejected: {e:?}"))
}

fn err(json: &str) -> EventError {
    match parse_event(json.as_bytes(), &EventLimits::default(), now()) {
        Ok(v) => panic!("{json} accepted: {v:?}"),
        Err(e) => e,
    }
}

fn assert_rejects(json: &str, code: ErrorCode, field: Option<&str>) {
    let e = err(json);
    assert_eq!(e.code, code, "{json}: {e:?}");
    assert_eq!(e.field.as_deref(), field, "{json}: {e:?}");
    assert!(!e.message.is_empty());
}

#[test]
fn minimal_event_defaults_timestamp_to_now() {
    let v = ok(r#"{"service":"checkout","message":"paid"}"#);
    assert_eq!(v.service(), "checkout");
    assert_eq!(v.message(), "paid");
    assert_eq!(v.ts(), now());
    assert_eq!(v.metadata(), None);
    assert_eq!(v.event_id(), None);
}

#[test]
fn full_event() {
    let v = ok(
        r#"{"service":"a.b_c:d-1","message":"m","timestamp":"2026-11-23T13:30:00.123456+01:00",
                  "metadata":{"k":[1,{"x":null}]},"event_id":"order-42"}"#,
    );
    assert_eq!(
        v.ts(),
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 30, 0).unwrap()
            + chrono::TimeDelta::milliseconds(123)
    );
    assert_eq!(v.metadata(), Some(r#"{"k":[1,{"x":null}]}"#));
    assert_eq!(v.event_id(), Some("order-42"));
}

#[test]
fn null_optional_fields_are_absent() {
    let v = ok(r#"{"service":"s","message":"m","timestamp":null,"metadata":null,"event_id":null}"#);
    assert_eq!(v.ts(), now());
    assert_eq!(v.metadata(), None);
    assert_eq!(v.event_id(), None);
}

#[test]
fn document_errors() {
    assert_rejects("", ErrorCode::InvalidJson, None);
    assert_rejects("{", ErrorCode::InvalidJson, None);
    assert_rejects(
        r#"{"service":"s","message":"m"} x"#,
        ErrorCode::InvalidJson,
        None,
    );
    assert_rejects(
        r#"[{"service":"s","message":"m"}]"#,
        ErrorCode::NotAnObject,
        None,
    );
    assert_rejects("42", ErrorCode::NotAnObject, None);
    assert_rejects("null", ErrorCode::NotAnObject, None);
    assert_rejects(r#""text""#, ErrorCode::NotAnObject, None);
    let e = parse_event(b"{\"service\":\"\xff\"}", &EventLimits::default(), now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidUtf8);
}

#[test]
fn unknown_and_duplicate_fields_are_named() {
    assert_rejects(
        r#"{"service":"s","message":"m","level":"info"}"#,
        ErrorCode::UnknownField,
        Some("level"),
    );
    assert_rejects(
        r#"{"service":"s","service":"t","message":"m"}"#,
        ErrorCode::DuplicateField,
        Some("service"),
    );
    // An unknown key with control characters is echoed escaped.
    let e = err(r#"{"service":"s","message":"m","a\u0000b":1}"#);
    assert_eq!(e.code, ErrorCode::UnknownField);
    assert_eq!(e.field.as_deref(), Some("a\\0b"));
}

#[test]
fn service_rules() {
    assert_rejects(
        r#"{"message":"m"}"#,
        ErrorCode::MissingField,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":null,"message":"m"}"#,
        ErrorCode::MissingField,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":"","message":"m"}"#,
        ErrorCode::Empty,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":7,"message":"m"}"#,
        ErrorCode::InvalidType,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":"a b","message":"m"}"#,
        ErrorCode::InvalidCharacters,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":"é","message":"m"}"#,
        ErrorCode::InvalidCharacters,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":"a/b","message":"m"}"#,
        ErrorCode::InvalidCharacters,
        Some("service"),
    );
    assert_rejects(
        r#"{"service":"a\u0000","message":"m"}"#,
        ErrorCode::NulCharacter,
        Some("service"),
    );
    let hundred = "s".repeat(100);
    ok(&format!(r#"{{"service":"{hundred}","message":"m"}}"#));
    assert_rejects(
        &format!(r#"{{"service":"{hundred}x","message":"m"}}"#),
        ErrorCode::TooLong,
        Some("service"),
    );
    // Escaped but valid characters are fine.
    assert_eq!(ok(r#"{"service":"\u0061b","message":"m"}"#).service(), "ab");
}

#[test]
fn message_rules() {
    assert_rejects(
        r#"{"service":"s"}"#,
        ErrorCode::MissingField,
        Some("message"),
    );
    assert_rejects(
        r#"{"service":"s","message":""}"#,
        ErrorCode::Empty,
        Some("message"),
    );
    assert_rejects(
        r#"{"service":"s","message":["m"]}"#,
        ErrorCode::InvalidType,
        Some("message"),
    );
    assert_rejects(
        r#"{"service":"s","message":"a\u0000b"}"#,
        ErrorCode::NulCharacter,
        Some("message"),
    );
    // 2000 scalar values, multi-byte, are accepted; 2001 are not.
    let long = "é".repeat(2000);
    assert_eq!(
        ok(&format!(r#"{{"service":"s","message":"{long}"}}"#))
            .message()
            .chars()
            .count(),
        2000
    );
    assert_rejects(
        &format!(r#"{{"service":"s","message":"{long}e"}}"#),
        ErrorCode::TooLong,
        Some("message"),
    );
    // Escapes decode: newlines, quotes and astral characters via surrogate pairs.
    assert_eq!(
        ok(r#"{"service":"s","message":"a\n\"\ud83d\ude00"}"#).message(),
        "a\n\"😀"
    );
    // A lone surrogate is not a Unicode scalar value.
    assert_rejects(
        r#"{"service":"s","message":"\ud800"}"#,
        ErrorCode::InvalidJson,
        Some("message"),
    );
}

#[test]
fn timestamp_rules() {
    let field = Some("timestamp");
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":1700000000}"#,
        ErrorCode::InvalidType,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"yesterday"}"#,
        ErrorCode::InvalidTimestamp,
        field,
    );
    // No offset is not RFC 3339.
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"2026-11-23T12:00:00"}"#,
        ErrorCode::InvalidTimestamp,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"2026-02-30T12:00:00Z"}"#,
        ErrorCode::InvalidTimestamp,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"2026-11-23T12:00:00Z\u0000"}"#,
        ErrorCode::NulCharacter,
        field,
    );
    // The retention window (30 days) and one hour of future.
    ok(r#"{"service":"s","message":"m","timestamp":"2026-10-24T12:00:00Z"}"#);
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"2026-10-24T11:59:59.999Z"}"#,
        ErrorCode::TimestampTooOld,
        field,
    );
    ok(r#"{"service":"s","message":"m","timestamp":"2026-11-23T13:00:00Z"}"#);
    assert_rejects(
        r#"{"service":"s","message":"m","timestamp":"2026-11-23T13:00:00.001Z"}"#,
        ErrorCode::TimestampInFuture,
        field,
    );
    // Offsets are honoured and precision is cut to milliseconds.
    let v = ok(r#"{"service":"s","message":"m","timestamp":"2026-11-23T07:00:00.999999-05:00"}"#);
    assert_eq!(v.ts(), now() + chrono::TimeDelta::milliseconds(999));
}

#[test]
fn limits_are_configurable() {
    let limits = EventLimits {
        max_service_len: 3,
        max_message_chars: 2,
        max_metadata_bytes: 10,
        max_metadata_depth: 1,
        max_event_id_len: 2,
        retention_days: 1,
        max_future_seconds: 0,
    };
    let check = |json: &str| parse_event(json.as_bytes(), &limits, now()).map_err(|e| e.code);
    assert!(check(r#"{"service":"abc","message":"mm"}"#).is_ok());
    assert_eq!(
        check(r#"{"service":"abcd","message":"m"}"#),
        Err(ErrorCode::TooLong)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"mmm"}"#),
        Err(ErrorCode::TooLong)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"m","event_id":"abc"}"#),
        Err(ErrorCode::TooLong)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"m","metadata":{"a":{}}}"#),
        Err(ErrorCode::TooDeep)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"m","metadata":{"abcdefgh":1}}"#),
        Err(ErrorCode::TooLarge)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"m","timestamp":"2026-11-22T11:59:59Z"}"#),
        Err(ErrorCode::TimestampTooOld)
    );
    assert_eq!(
        check(r#"{"service":"a","message":"m","timestamp":"2026-11-23T12:00:01Z"}"#),
        Err(ErrorCode::TimestampInFuture)
    );
}

#[test]
fn metadata_rules() {
    let field = Some("metadata");
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":[1]}"#,
        ErrorCode::InvalidType,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":"x"}"#,
        ErrorCode::InvalidType,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":3}"#,
        ErrorCode::InvalidType,
        field,
    );
    ok(r#"{"service":"s","message":"m","metadata":{}}"#);

    // U+0000 in a value or a key, at any depth, names the path.
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":{"a":{"b":"x\u0000"}}}"#,
        ErrorCode::NulCharacter,
        Some("metadata.a.b"),
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":{"list":[1,"ok","\u0000"]}}"#,
        ErrorCode::NulCharacter,
        Some("metadata.list[2]"),
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":{"a":{"k\u0000":1}}}"#,
        ErrorCode::NulCharacter,
        Some("metadata.a.k\\0"),
    );

    // 16 levels deep is the limit; the object itself is level 1.
    let nest = |levels: usize| {
        let mut s = String::from("1");
        for _ in 0..levels {
            s = format!(r#"{{"a":{s}}}"#);
        }
        format!(r#"{{"service":"s","message":"m","metadata":{s}}}"#)
    };
    ok(&nest(16));
    let e = err(&nest(17));
    assert_eq!(e.code, ErrorCode::TooDeep);
    assert!(e.field.as_deref().unwrap().starts_with("metadata.a.a"));
    let arrays = format!(
        r#"{{"service":"s","message":"m","metadata":{{"a":{}1{}}}}}"#,
        "[".repeat(16),
        "]".repeat(16)
    );
    assert_eq!(err(&arrays).code, ErrorCode::TooDeep);

    // 16 KiB of JSON: compact size counts, so whitespace does not push it over.
    let pad = |n: usize| "x".repeat(n);
    // {"k":"…"} is 8 bytes plus the value.
    ok(&format!(
        r#"{{"service":"s","message":"m","metadata":{{"k":"{}"}}}}"#,
        pad(16 * 1024 - 8)
    ));
    assert_rejects(
        &format!(
            r#"{{"service":"s","message":"m","metadata":{{"k":"{}"}}}}"#,
            pad(16 * 1024 - 7)
        ),
        ErrorCode::TooLarge,
        field,
    );
    let spaced = format!(
        r#"{{"service":"s","message":"m","metadata":{{ "k" :  "{}"  }}}}"#,
        pad(16 * 1024 - 8)
    );
    assert_eq!(ok(&spaced).metadata().unwrap().len(), 16 * 1024);
    // Compacting keeps every token as sent: a 128-bit integer, key order,
    // whitespace and escaped quotes inside strings.
    let spaced_big = format!(
        "{{\"service\":\"s\",\"message\":\"m\",\"metadata\":{{ \"z\" : 123456789012345678901234 ,\n \"a\" : \"two  \\\" spaces\",  \"k\" :  \"{}\"  }}}}",
        pad(16 * 1024 - 60)
    );
    let kept = ok(&spaced_big);
    let metadata = kept.metadata().unwrap();
    assert!(
        metadata.starts_with(r#"{"z":123456789012345678901234,"a":"two  \" spaces","k":""#),
        "{}",
        &metadata[..80]
    );

    // Numbers PostgreSQL can store; JSON it cannot is refused up front.
    ok(
        r#"{"service":"s","message":"m","metadata":{"big":1e308,"neg":-0.0,"int":18446744073709551615}}"#,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":{"n":1e400}}"#,
        ErrorCode::InvalidJson,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","metadata":{"n":NaN}}"#,
        ErrorCode::InvalidJson,
        None,
    );
    // PostgreSQL's numeric holds 16383 digits after the point (measured on
    // PostgreSQL 15: 1e-16383 and 0.0000001e-16376 are stored; 1e-16384 and
    // 1.5e-16383 are "value overflows numeric format").
    for stored in ["1e-16383", "0.0000001e-16376", "-2.5E-100", "12.75", "3e+5"] {
        ok(&format!(
            r#"{{"service":"s","message":"m","metadata":{{"n":{stored},"s":"1e-99999"}}}}"#
        ));
    }
    for refused in [
        "1e-16384",
        "1.5e-16383",
        "0e-20000",
        "1e-99999999999999999999999",
    ] {
        assert_rejects(
            &format!(r#"{{"service":"s","message":"m","metadata":{{"a":[1,{{"n":{refused}}}]}}}}"#),
            ErrorCode::InvalidJson,
            field,
        );
    }
}

#[test]
fn event_id_rules() {
    let field = Some("event_id");
    ok(r#"{"service":"s","message":"m","event_id":" ~printable ASCII~ "}"#);
    assert_rejects(
        r#"{"service":"s","message":"m","event_id":""}"#,
        ErrorCode::Empty,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","event_id":5}"#,
        ErrorCode::InvalidType,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","event_id":"é"}"#,
        ErrorCode::InvalidCharacters,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","event_id":"a\tb"}"#,
        ErrorCode::InvalidCharacters,
        field,
    );
    assert_rejects(
        r#"{"service":"s","message":"m","event_id":"a\u0000"}"#,
        ErrorCode::NulCharacter,
        field,
    );
    let id128 = "k".repeat(128);
    ok(&format!(
        r#"{{"service":"s","message":"m","event_id":"{id128}"}}"#
    ));
    assert_rejects(
        &format!(r#"{{"service":"s","message":"m","event_id":"{id128}k"}}"#),
        ErrorCode::TooLong,
        field,
    );
    // The header path uses the same rule.
    assert!(check_event_id("abc", &EventLimits::default()).is_ok());
    assert_eq!(
        check_event_id("a\nb", &EventLimits::default())
            .unwrap_err()
            .code,
        ErrorCode::InvalidCharacters
    );
}

#[test]
fn codes_are_stable_strings() {
    assert_eq!(ErrorCode::UnknownField.as_str(), "unknown_field");
    assert_eq!(ErrorCode::TimestampInFuture.as_str(), "timestamp_in_future");
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC*|.*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(20, 256, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("service".to_string()),
                    Just("message".to_string()),
                    Just("timestamp".to_string()),
                    Just("metadata".to_string()),
                    Just("event_id".to_string()),
                    ".*"
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_json(value in arb_json()) {
        let text = value.to_string();
        let _ = parse_event(text.as_bytes(), &EventLimits::default(), now());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&bytes, &EventLimits::default(), now());
    }

    #[test]
    fn valid_events_keep_their_fields(
        service in "[A-Za-z0-9._:-]{1,100}",
        message in "\\PC{1,300}",
        event_id in proptest::option::of("[ -~]{1,128}"),
        offset_ms in -29i64 * 86_400_000..3_600_000i64,
    ) {
        let ts = now() + chrono::TimeDelta::milliseconds(offset_ms);
        let json = serde_json::json!({
            "service": service,
            "message": message,
            "timestamp": ts.to_rfc3339(),
            "event_id": event_id,
            "metadata": {"m": message},
        });
        let v = parse_event(json.to_string().as_bytes(), &EventLimits::default(), now()).unwrap();
        prop_assert_eq!(v.service(), service.as_str());
        prop_assert_eq!(v.message(), message.as_str());
        prop_assert_eq!(v.event_id(), event_id.as_deref());
        prop_assert_eq!(v.ts(), ts);
    }
}
