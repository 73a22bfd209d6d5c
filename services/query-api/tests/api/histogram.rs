//! `GET /v1/stats/histogram`: every bucket holds exactly the events a direct
//! count finds in `[start, end)` with the same filters — whether it came
//! from the hourly rollup (whole hours), from `events` (finer buckets, text
//! and metadata filters), or from both (whole hours inside an unaligned
//! window) — and the request obeys `/v1/events`' limits.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, enc, event_at, open_app, rfc3339};

const SERVICES: [&str; 3] = ["checkout", "search", "billing"];

/// What a bucket must equal: a count straight from `events`.
async fn direct(
    app: &TestApp,
    services: &[&str],
    q: Option<&str>,
    metadata: &[Value],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> i64 {
    let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE (cardinality($1::text[]) = 0 OR service = ANY($1))
            AND ts >= $2 AND ts < $3
            AND ($4::text IS NULL OR message ILIKE '%' || $4 || '%')
            AND (cardinality($5::jsonb[]) = 0 OR metadata @> ANY($5))",
    )
    .bind(&services)
    .bind(from)
    .bind(to)
    .bind(q)
    .bind(metadata.to_vec())
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

struct Case<'a> {
    services: &'a [&'a str],
    q: Option<&'a str>,
    /// `(key, value)` as the parameter, and the JSON objects any of which
    /// it must contain.
    metadata: Option<(&'a str, &'a str, Vec<Value>)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    buckets: u32,
    source: &'a str,
}

async fn check(app: &TestApp, case: Case<'_>) -> Value {
    let mut path = format!(
        "/v1/stats/histogram?from={}&to={}&buckets={}",
        enc(&rfc3339(case.from)),
        enc(&rfc3339(case.to)),
        case.buckets
    );
    for s in case.services {
        path.push_str(&format!("&service={s}"));
    }
    if let Some(q) = case.q {
        path.push_str(&format!("&q={}", enc(q)));
    }
    if let Some((k, v, _)) = &case.metadata {
        path.push_str(&format!("&metadata.{k}={}", enc(v)));
    }
    let res = app.get(&path).await;
    assert_eq!(res.status, 200, "{path}: {}", res.text());
    let body = res.json();
    assert_eq!(body["source"], case.source, "{path}: {body}");
    let buckets = body["buckets"].as_array().unwrap();
    assert!(
        !buckets.is_empty() && buckets.len() <= case.buckets as usize,
        "{path}: {} buckets",
        buckets.len()
    );
    assert_eq!(time(&buckets[0]["start"]), case.from);
    assert_eq!(time(&buckets[buckets.len() - 1]["end"]), case.to);
    let meta: &[Value] = case.metadata.as_ref().map_or(&[], |(_, _, j)| j);
    let mut sum = 0;
    let mut previous_end = case.from;
    for b in buckets {
        let (start, end) = (time(&b["start"]), time(&b["end"]));
        assert_eq!(start, previous_end, "buckets are contiguous");
        previous_end = end;
        let want = direct(app, case.services, case.q, meta, start, end).await;
        assert_eq!(b["count"], want, "{path}: bucket {b}");
        sum += want;
    }
    assert_eq!(body["total"], sum);
    let all = direct(app, case.services, case.q, meta, case.from, case.to).await;
    assert_eq!(sum, all, "{path}: the buckets add up to the window");
    assert!(all > 0, "{path}: a case that counts nothing proves little");
    body
}

#[tokio::test]
async fn buckets_equal_a_direct_count_from_the_rollup_the_events_or_both() {
    let app = open_app(&[]).await;
    let now = Utc::now();
    let h0 =
        DateTime::from_timestamp(now.timestamp() / 3600 * 3600, 0).unwrap() - TimeDelta::hours(50);
    app.partitions(h0 - TimeDelta::days(1), now + TimeDelta::days(1))
        .await;
    // 4,000 events over 50 hours, spread unevenly, some with metadata and
    // a word to find.
    let mut events = Vec::new();
    for i in 0..4000i64 {
        let offset = (i * 7919 * 1000 + i * 37) % (50 * 3600 * 1000);
        let mut e = event_at(
            SERVICES[(i % 3) as usize],
            if i % 4 == 0 {
                "upstream TIMEOUT after 5s"
            } else {
                "ok"
            },
            h0 + TimeDelta::milliseconds(offset),
        );
        if i % 3 == 0 {
            e.metadata = Some(json!({"user": "ann", "http": {"status": 500}}).to_string());
        } else if i % 5 == 0 {
            e.metadata = Some(json!({"user": "bob", "http": {"status": "500"}}).to_string());
        }
        events.push(e);
    }
    app.store(&events).await;

    // Whole hours, one service: the rollup alone.
    check(
        &app,
        Case {
            services: &["checkout"],
            q: None,
            metadata: None,
            from: h0,
            to: h0 + TimeDelta::hours(48),
            buckets: 48,
            source: "rollup",
        },
    )
    .await;
    // An unaligned window in hour-wide buckets: whole hours from the
    // rollup, its ragged edges from the events.
    check(
        &app,
        Case {
            services: &[],
            q: None,
            metadata: None,
            from: h0 + TimeDelta::seconds(17 * 60 + 23),
            to: h0 + TimeDelta::hours(40) + TimeDelta::milliseconds(5_000_123),
            buckets: 20,
            source: "rollup+events",
        },
    )
    .await;
    // Minute buckets: the events.
    check(
        &app,
        Case {
            services: &["checkout", "search"],
            q: None,
            metadata: None,
            from: h0 + TimeDelta::hours(3) + TimeDelta::seconds(11),
            to: h0 + TimeDelta::hours(9),
            buckets: 60,
            source: "events",
        },
    )
    .await;
    // Text and metadata filters over whole hours: the rollup cannot tell,
    // so the events; a metadata value matches as number or string.
    check(
        &app,
        Case {
            services: &["checkout", "search", "billing"],
            q: Some("timeout"),
            metadata: None,
            from: h0,
            to: h0 + TimeDelta::hours(50),
            buckets: 25,
            source: "events",
        },
    )
    .await;
    let body = check(
        &app,
        Case {
            services: &[],
            q: None,
            metadata: Some((
                "http.status",
                "500",
                vec![
                    json!({"http": {"status": 500}}),
                    json!({"http": {"status": "500"}}),
                ],
            )),
            from: h0,
            to: h0 + TimeDelta::hours(50),
            buckets: 10,
            source: "events",
        },
    )
    .await;
    // `metadata.http.status=500` also matches the string "500".
    let typed = direct(
        &app,
        &[],
        None,
        &[json!({"http": {"status": 500}})],
        h0,
        h0 + TimeDelta::hours(50),
    )
    .await;
    let text = direct(
        &app,
        &[],
        None,
        &[json!({"http": {"status": "500"}})],
        h0,
        h0 + TimeDelta::hours(50),
    )
    .await;
    assert!(text > 0);
    assert_eq!(body["total"], typed + text);
}

#[tokio::test]
async fn histogram_parameters_obey_the_search_limits() {
    let app = open_app(&[]).await;
    for (query, field) in [
        ("buckets=0", "buckets"),
        ("buckets=501", "buckets"),
        ("from=yesterday", "from"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("service=bad%20name", "service"),
        ("q=", "q"),
        ("limit=5", "limit"),
        ("metadata.=1", "metadata."),
    ] {
        let res = app.get(&format!("/v1/stats/histogram?{query}")).await;
        assert_eq!(res.status, 400, "{query}");
        assert_eq!(res.error_field(), field, "{query}");
    }
    // Defaults: the last 24 hours, 60 buckets at most.
    let body = app.get("/v1/stats/histogram").await.json();
    assert_eq!(body["total"], 0);
    let span = time(&body["to"]) - time(&body["from"]);
    assert_eq!(span, TimeDelta::hours(24));
    assert!(body["buckets"].as_array().unwrap().len() <= 60);
}
