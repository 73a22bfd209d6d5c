//! `/v1/stats`, `/v1/services` and `/health/business` against a direct
//! count of the events table; the cache.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::Value;

use eventline_shared::testkit::servers::LocalRedis;

use crate::helpers::{TestApp, enc, event_at, open_app, open_app_on_redis, rfc3339};

/// Events in the current hour, the previous hour, 2..30 hours back and 3
/// days back, for three services.
async fn seeded(app: &TestApp) {
    let now = Utc::now();
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    app.partitions(hour - TimeDelta::days(4), hour + TimeDelta::days(1))
        .await;
    let mut events = Vec::new();
    let mut add = |service: &str, n: usize, at: DateTime<Utc>| {
        for i in 0..n {
            events.push(event_at(service, "e", at + TimeDelta::seconds(i as i64)));
        }
    };
    add("api", 7, hour.max(now - TimeDelta::seconds(30)).min(now));
    add("api", 11, hour - TimeDelta::minutes(30));
    add("web", 5, hour - TimeDelta::minutes(50));
    add("web", 13, hour - TimeDelta::hours(2));
    add(
        "api",
        17,
        hour - TimeDelta::hours(23) - TimeDelta::minutes(5),
    );
    add("db", 19, hour - TimeDelta::hours(30));
    add("db", 23, hour - TimeDelta::days(3));
    app.store(&events).await;
}

async fn count(app: &TestApp, sql: &'static str, binds: &[DateTime<Utc>]) -> i64 {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_one(&app.db.pool).await.unwrap()
}

#[tokio::test]
async fn stats_equal_a_direct_count() {
    let app = open_app(&["--stats-cache", "0"]).await;
    seeded(&app).await;
    let now = Utc::now();
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    let from = hour - TimeDelta::days(2);
    let to = hour + TimeDelta::hours(1);

    let res = app
        .get(&format!(
            "/v1/stats?from={}&to={}",
            enc(&rfc3339(from)),
            enc(&rfc3339(to))
        ))
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let stats = res.json();

    let total = count(
        &app,
        "SELECT count(*) FROM events WHERE ts >= $1 AND ts < $2",
        &[from, to],
    )
    .await;
    assert_eq!(stats["total"], total);
    let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(stats["from"], secs(from));
    assert_eq!(stats["to"], secs(to));
    // A window that ends (and starts) mid-hour counts whole hours, and says
    // which: the same answer as the hour-aligned window.
    let res = app
        .get(&format!(
            "/v1/stats?from={}&to={}",
            enc(&rfc3339(from + TimeDelta::minutes(20))),
            enc(&rfc3339(hour + TimeDelta::minutes(30)))
        ))
        .await;
    let widened = res.json();
    assert_eq!(widened["from"], secs(from));
    assert_eq!(widened["to"], secs(to));
    assert_eq!(widened["total"], total);
    let per_service: Vec<(String, i64)> = between(
        &app,
        "SELECT service, count(*) FROM events WHERE ts >= $1 AND ts < $2 GROUP BY 1 ORDER BY 1",
        from,
        to,
    )
    .await;
    let got = counts(&stats["services"], "service");
    assert_eq!(got, per_service);
    let hourly: Vec<(DateTime<Utc>, i64)> = between(
        &app,
        "SELECT date_trunc('hour', ts, 'UTC'), count(*) FROM events
          WHERE ts >= $1 AND ts < $2 GROUP BY 1 ORDER BY 1",
        from,
        to,
    )
    .await;
    let got = counts(&stats["hourly"], "hour");
    let want: Vec<(String, i64)> = hourly
        .into_iter()
        .map(|(h, c)| (h.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), c))
        .collect();
    assert_eq!(got, want);

    let h = hour;
    let current = count(&app, "SELECT count(*) FROM events WHERE ts >= $1", &[h]).await;
    let last = count(
        &app,
        "SELECT count(*) FROM events WHERE ts >= $1 - interval '1 hour' AND ts < $1",
        &[h],
    )
    .await;
    let day = count(
        &app,
        "SELECT count(*) FROM events WHERE ts >= $1 - interval '24 hours' AND ts < $1",
        &[h],
    )
    .await;
    assert_eq!(stats["current_hour"], current);
    assert_eq!(stats["last_hour"], last);
    assert_eq!(stats["last_24h"], day);
    assert_eq!(
        stats["events_per_minute"].as_f64().unwrap(),
        last as f64 / 60.0
    );
    assert_eq!(
        (current, last, day),
        (7, 16, 46),
        "the seed is what this test thinks"
    );

    // One service.
    let res = app.get("/v1/stats?service=web").await.json();
    assert_eq!(res["services"].as_array().unwrap().len(), 1);
    assert_eq!(res["total"], 18);
    assert_eq!(res["last_hour"], 5);
}

#[tokio::test]
async fn services_with_counts_and_last_seen() {
    let app = open_app(&[]).await;
    seeded(&app).await;
    let want: Vec<(String, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT service, count(*), max(ts) FROM events GROUP BY 1 ORDER BY 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let res = app.get("/v1/services").await;
    assert_eq!(res.status, 200);
    let got: Vec<(String, i64, String)> = res.json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_owned(),
                s["count"].as_i64().unwrap(),
                s["last_seen"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String)> = want
        .into_iter()
        .map(|(s, c, t)| (s, c, rfc3339(t)))
        .collect();
    assert_eq!(got, want);
}

fn cache_hits(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("eventline_query_cache_requests_total") && l.contains("result=\"hit\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn stats_are_cached_briefly() {
    let app = open_app(&["--stats-cache", "500"]).await;
    seeded(&app).await;
    let first: Value = app.get("/v1/stats").await.json();
    app.store(&[event_at("api", "later", Utc::now())]).await;
    let second: Value = app.get("/v1/stats").await.json();
    assert_eq!(first, second, "within the TTL the answer is reused");
    let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
    assert!(cache_hits(&metrics) >= 1, "{metrics}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let third: Value = app.get("/v1/stats").await.json();
    assert_eq!(
        third["current_hour"].as_i64().unwrap(),
        first["current_hour"].as_i64().unwrap() + 1
    );
}

#[tokio::test]
async fn business_and_database_health() {
    let app = open_app(&[]).await;
    seeded(&app).await;
    sqlx::query(
        "INSERT INTO maintenance_runs (started_at, finished_at, outcome) VALUES (now(), now(), 'success')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let res = app.get("/health/business").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["events"]["current_hour"], 7);
    assert_eq!(body["active_services_24h"], 2);
    assert_eq!(body["dead_letters"], 0);
    assert!(body["retention_last_success"].is_string());
    assert!(!body.to_string().contains("\"web\""), "no service names");
    let res = app.get("/health/database").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["status"], "ok");
    let res = app.get("/health/detailed").await;
    assert_eq!(res.json()["service"]["dead_letters"], 0);
}

#[tokio::test]
async fn business_health_is_degraded_while_redis_is_down() {
    let mut redis = LocalRedis::start("everysec").expect("a private Redis starts");
    let app = open_app_on_redis(&redis.url(), &["--stats-cache", "0"]).await;
    let body = app.get("/health/business").await.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["unavailable"], serde_json::json!([]));
    assert_eq!(body["dead_letters"], 0);

    redis.kill().expect("Redis killed");
    let res = app.get("/health/business").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["unavailable"], serde_json::json!(["redis"]));
    assert!(body["dead_letters"].is_null());
    assert!(body["events"]["current_hour"].is_i64(), "{body}");
}

#[tokio::test]
async fn the_retention_jobs_last_success_is_a_metric() {
    let app = open_app(&["--retention-watch", "1"]).await;
    let finished: i64 = sqlx::query_scalar(
        "INSERT INTO maintenance_runs (started_at, finished_at, outcome, dry_run)
         VALUES (now() - interval '2 hours', now() - interval '2 hours', 'success', false),
                (now(), now(), 'success', true),
                (now(), now(), 'failed', false)
         RETURNING floor(extract(epoch FROM finished_at))::bigint",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let expected = format!("eventline_query_retention_last_success_timestamp_seconds {finished}");
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = String::from_utf8_lossy(&app.get("/metrics").await.body).into_owned();
        if metrics.contains(&expected) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{expected} not in:\n{metrics}");
}

/// The rows of `sql`, its `$1` and `$2` bound to `from` and `to`.
async fn between<T>(
    app: &TestApp,
    sql: &'static str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(from)
        .bind(to)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// `(entry[key], entry["count"])` of each entry of a stats list.
fn counts(list: &Value, key: &str) -> Vec<(String, i64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[key].as_str().unwrap().to_owned(),
                e["count"].as_i64().unwrap(),
            )
        })
        .collect()
}
