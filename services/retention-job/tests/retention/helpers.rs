//! Test helpers: a migrated database per test, forty days of events, the
//! job run through its front door (`run_once` with parsed arguments) at a
//! clock the test sets, and snapshots of what the database holds.

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use clap::Parser;
use eventline_shared::schema;
use eventline_shared::testkit::{TestDatabase, init_logging};
use retention_job::report::RunReport;
use retention_job::{Cli, Command, JobError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The clock of every test: 10:00 UTC, so "30 days ago" is mid-day.
pub const NOW: &str = "2026-11-23T10:00:00Z";

pub fn now() -> DateTime<Utc> {
    NOW.parse().expect("NOW parses")
}

pub fn today() -> NaiveDate {
    now().date_naive()
}

pub fn day(back: i64) -> NaiveDate {
    today() + TimeDelta::days(-back)
}

pub const SERVICES: [&str; 3] = ["api", "audit-service", "debug"];

/// Times of day each service gets an event at: both edges of the day.
pub const TIMES: [(u32, u32, u32, u32); 3] = [(0, 0, 0, 0), (12, 0, 0, 0), (23, 59, 59, 999)];

pub async fn database() -> TestDatabase {
    init_logging();
    TestDatabase::migrated().await
}

/// Partitions for days 39..=0 back except day 5 back; events for days
/// 44..=0 back (days 44..=40 and 5 land in the default partition), three
/// per service and day; one rollup row per service and event hour.
pub async fn seed_forty_days(pool: &PgPool) {
    schema::ensure_partitions(pool, day(39), day(6))
        .await
        .unwrap();
    schema::ensure_partitions(pool, day(4), day(0))
        .await
        .unwrap();
    let mut services = Vec::new();
    let mut stamps = Vec::new();
    for back in 0..=44 {
        for service in SERVICES {
            for (h, m, s, ms) in TIMES {
                services.push(service.to_owned());
                stamps.push(day(back).and_hms_milli_opt(h, m, s, ms).unwrap().and_utc());
            }
        }
    }
    sqlx::query(
        "INSERT INTO events (id, dedup_key, service, message, ts, ingested_at)
         SELECT gen_random_uuid(), gen_random_uuid(), s, 'hello', t, t
           FROM unnest($1::text[], $2::timestamptz[]) AS x(s, t)",
    )
    .bind(&services)
    .bind(&stamps)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO event_counts (service, hour, count)
         SELECT service, date_trunc('hour', ts), count(*) FROM events GROUP BY 1, 2",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Events seeded per service and day.
pub const PER_DAY: i64 = TIMES.len() as i64;

/// `retention-job run --database-url … --delete-pause-ms 0 <extra>` at `NOW`.
pub async fn run_job(db: &TestDatabase, extra: &[&str]) -> Result<(RunReport, String), JobError> {
    let mut argv = vec![
        "retention-job",
        "run",
        "--database-url",
        &db.url,
        "--delete-pause",
        "0",
        "--now",
        NOW,
    ];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::try_parse_from(argv).expect("arguments parse").command else {
        unreachable!("run parses as Command::Run")
    };
    let registry = prometheus::Registry::new();
    let mut out = Vec::new();
    let report =
        retention_job::run_once(&args, &registry, &CancellationToken::new(), &mut out).await?;
    Ok((report, String::from_utf8(out).expect("utf-8 output")))
}

/// What a pass may change, to compare before and after.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub partitions: Vec<(String, NaiveDate)>,
    pub events: Vec<(String, i64)>,
    pub in_default: i64,
    pub counts: i64,
}

pub async fn snapshot(pool: &PgPool) -> Snapshot {
    Snapshot {
        partitions: schema::list_partitions(pool).await.unwrap(),
        events: sqlx::query_as("SELECT service, count(*) FROM events GROUP BY 1 ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap(),
        in_default: sqlx::query_scalar("SELECT count(*) FROM events_default")
            .fetch_one(pool)
            .await
            .unwrap(),
        counts: sqlx::query_scalar("SELECT count(*) FROM event_counts")
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

/// Events of `service` stored, and how many of them have `ts >= since`.
pub async fn events_of(pool: &PgPool, service: &str, since: DateTime<Utc>) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE ts >= $2) FROM events WHERE service = $1",
    )
    .bind(service)
    .bind(since)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Rollup rows of `service`: all, and those before `before`.
pub async fn counts_of(pool: &PgPool, service: &str, before: DateTime<Utc>) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE hour < $2) FROM event_counts WHERE service = $1",
    )
    .bind(service)
    .bind(before)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

pub fn days_after(d: NaiveDate, n: u64) -> NaiveDate {
    d + Days::new(n)
}

/// The `maintenance_runs` rows: (outcome, dry_run, dropped, rows_deleted), oldest first.
pub async fn runs(pool: &PgPool) -> Vec<(String, bool, Vec<String>, i64)> {
    sqlx::query_as(
        "SELECT outcome, dry_run, partitions_dropped, rows_deleted FROM maintenance_runs ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}
