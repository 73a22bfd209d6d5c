//! How long does expiring one day of events take: dropping its partition,
//! or deleting its rows? One timed comparison, on the machine it runs on, in
//! one process so the figures share the same conditions. The numbers go in
//! docs/adr/0022-expire-by-dropping-partitions.md.
//!
//! Not part of `make test`. Run it against a PostgreSQL with production-like
//! durability settings (not the test harness's `fsync=off`), as a superuser:
//!
//! ```sh
//! EVENTLINE_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:15432/postgres \
//! EVENTLINE_BENCH_ROWS=1000000 \
//!   cargo bench -p retention-job --bench expire_day --profile dev
//! ```
//!
//! It creates a scratch database, fills four days with `ROWS` events each
//! (20 services, ~250 bytes a row, the schema's indexes), and expires them
//! four ways through the job's own code: detach + drop; chunked deletes
//! walking the table by ctid (the default retention class); chunked deletes
//! per service through the `(service, ts DESC, id DESC)` index (the
//! per-service overrides); one single DELETE. The VACUUM a delete leaves
//! behind is timed too: a drop leaves nothing to vacuum. The scratch
//! database is dropped at the end.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Utc};
use eventline_shared::schema;
use retention_job::expire::{self, Expiry};
use retention_job::job_lock::JobLock;
use retention_job::partitions::{self, DdlSettings};
use retention_job::policy::{Services, midnight_utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor, PgConnection};
use tokio_util::sync::CancellationToken;

const SERVICES: i64 = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(admin_url) = std::env::var("EVENTLINE_BENCH_DATABASE_URL") else {
        eprintln!(
            "expire_day: set EVENTLINE_BENCH_DATABASE_URL (a superuser URL) to run it; skipping"
        );
        return Ok(());
    };
    let rows: i64 = std::env::var("EVENTLINE_BENCH_ROWS")
        .ok()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let admin = PgConnectOptions::from_str(&admin_url)?;
    let name = format!("retention_bench_{}", std::process::id());
    let mut admin_conn = admin.connect().await?;
    admin_conn
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    let options = admin.clone().database(&name);
    let result = bench(&options, rows).await;
    admin_conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .await?;
    result
}

async fn bench(options: &PgConnectOptions, rows: i64) -> Result<(), Box<dyn std::error::Error>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await?;
    schema::migrate(&pool).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    let settings: (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers')",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "PostgreSQL {version} (fsync={}, synchronous_commit={}, shared_buffers={}); {rows} events per day, {SERVICES} services",
        settings.0, settings.1, settings.2
    );

    let first = Utc::now().date_naive() - Days::new(100);
    let days: Vec<NaiveDate> = (0..4).map(|i| first + Days::new(i)).collect();
    schema::ensure_partitions(&pool, days[0], days[3]).await?;
    for day in &days {
        let started = Instant::now();
        fill(&pool, *day, rows).await?;
        println!(
            "filled {} in {:.1} s",
            schema::partition_name(*day),
            started.elapsed().as_secs_f64()
        );
    }
    // Old data has long been vacuumed and checkpointed in real life.
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;
    sqlx::query("CHECKPOINT").execute(&pool).await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size($1::regclass))")
            .bind(schema::partition_name(days[0]))
            .fetch_one(&pool)
            .await?;
    println!("one day's partition with its indexes: {size}\n");

    let shutdown = CancellationToken::new();
    let ddl = DdlSettings {
        lock_timeout: Duration::from_millis(500),
        retries: 10,
    };
    let mut lock = JobLock::try_acquire(options)
        .await?
        .ok_or("another pass holds the retention lock")?;
    let conn = lock.conn();

    // 1. Detach and drop the partition.
    let name = schema::partition_name(days[0]);
    let started = Instant::now();
    partitions::detach_and_drop(conn, &name, &ddl, &shutdown).await?;
    report("DETACH + DROP partition", started.elapsed(), None, rows);

    // 2. Chunked deletes walking the partition by ctid (default class).
    let name = schema::partition_name(days[1]);
    let all = Services::AllBut(Vec::new());
    let started = Instant::now();
    let deleted =
        expire::delete_events(conn, &expiry(&name, &all, days[1]), &shutdown, |_| {}).await?;
    let elapsed = started.elapsed();
    let vacuumed = vacuum(conn, &name).await?;
    report(
        "chunked DELETE, 10,000 rows, by ctid",
        elapsed,
        Some(vacuumed),
        deleted as i64,
    );

    // 3. Chunked deletes per service through the (service, ts, id) index.
    let name = schema::partition_name(days[2]);
    let started = Instant::now();
    let mut deleted = 0;
    for s in 0..SERVICES {
        let only = Services::Only(format!("svc-{s}"));
        deleted +=
            expire::delete_events(conn, &expiry(&name, &only, days[2]), &shutdown, |_| {}).await?;
    }
    let elapsed = started.elapsed();
    let vacuumed = vacuum(conn, &name).await?;
    report(
        "chunked DELETE, 10,000 rows, by service index",
        elapsed,
        Some(vacuumed),
        deleted as i64,
    );

    // 4. One DELETE of the whole day.
    let name = schema::partition_name(days[3]);
    let started = Instant::now();
    let done = sqlx::query("DELETE FROM events WHERE ts >= $1 AND ts < $2")
        .bind(midnight_utc(days[3]))
        .bind(midnight_utc(days[3] + Days::new(1)))
        .execute(&mut *conn)
        .await?;
    let elapsed = started.elapsed();
    let vacuumed = vacuum(conn, &name).await?;
    report(
        "single DELETE",
        elapsed,
        Some(vacuumed),
        done.rows_affected() as i64,
    );

    lock.release().await;
    pool.close().await;
    Ok(())
}

fn expiry<'a>(table: &'a str, services: &'a Services, day: NaiveDate) -> Expiry<'a> {
    Expiry {
        table,
        services,
        cutoff: midnight_utc(day + Days::new(1)),
        chunk_rows: 10_000,
        pause: Duration::ZERO,
    }
}

async fn fill(pool: &sqlx::PgPool, day: NaiveDate, rows: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at)
         SELECT gen_random_uuid(), gen_random_uuid(), 'evt-' || i, 'svc-' || (i % $3),
                'user signed in from a browser, request handled, response sent ' || md5(i::text),
                jsonb_build_object('request_id', md5(i::text), 'status', 200, 'path', '/v1/login'),
                t, t
           FROM generate_series(0, $2 - 1) AS i,
                LATERAL (SELECT $1::timestamptz + (i * (86400000.0 / $2)) * interval '1 millisecond' AS t) AS x",
    )
    .bind(midnight_utc(day))
    .bind(rows)
    .bind(SERVICES)
    .execute(pool)
    .await
    .map(drop)
}

async fn vacuum(conn: &mut PgConnection, table: &str) -> Result<Duration, sqlx::Error> {
    let started = Instant::now();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "VACUUM {}",
        partitions::quote_ident(table)
    )))
    .await?;
    Ok(started.elapsed())
}

fn report(what: &str, elapsed: Duration, vacuum: Option<Duration>, rows: i64) {
    match vacuum {
        Some(v) => println!(
            "{what:<48} {:>8.2} s  (+ VACUUM {:>6.2} s)  {rows} rows",
            elapsed.as_secs_f64(),
            v.as_secs_f64()
        ),
        None => println!(
            "{what:<48} {:>8.3} s  (nothing to vacuum)   {rows} rows",
            elapsed.as_secs_f64()
        ),
    }
}
