//! The schema and the API-key store against a real PostgreSQL (started by
//! `make test`), each test in a database of its own.

use chrono::{Days, NaiveDate, TimeZone, Utc};
use eventline_shared::api_key::{self, Scope, Scopes};
use eventline_shared::schema;
use eventline_shared::testkit::TestDatabase;
use uuid::Uuid;

async fn insert_event(pool: &sqlx::PgPool, ts: chrono::DateTime<Utc>) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (id, dedup_key, service, message, metadata, ts, ingested_at)
         VALUES ($1, $1, 'svc', 'hello', '{\"a\":1}', $2, now())",
    )
    .bind(id)
    .bind(ts)
    .execute(pool)
    .await
    .expect("insert");
    id
}

async fn partition_of(pool: &sqlx::PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM events WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row exists")
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_partitions_route_rows() {
    let db = TestDatabase::empty().await;
    schema::migrate(&db.pool).await.expect("migrations apply");
    // Applying again is a no-op.
    schema::migrate(&db.pool)
        .await
        .expect("migrations are idempotent");

    let today = Utc::now().date_naive();
    let created = schema::ensure_partitions(&db.pool, today, today + Days::new(2))
        .await
        .unwrap();
    assert_eq!(
        created,
        (0..3)
            .map(|d| schema::partition_name(today + Days::new(d)))
            .collect::<Vec<_>>()
    );
    // Nothing new the second time.
    assert!(
        schema::ensure_partitions(&db.pool, today, today + Days::new(2))
            .await
            .unwrap()
            .is_empty()
    );

    // Today's event lands in today's partition.
    let now_id = insert_event(&db.pool, Utc::now()).await;
    assert_eq!(
        partition_of(&db.pool, now_id).await,
        schema::partition_name(today)
    );

    // An event for a day without a partition lands in the default partition…
    let old_day = today - Days::new(10);
    let old_ts = Utc.from_utc_datetime(&old_day.and_hms_opt(23, 59, 59).unwrap());
    let old_id = insert_event(&db.pool, old_ts).await;
    assert_eq!(partition_of(&db.pool, old_id).await, "events_default");

    // …and moves into that day's partition when it is created.
    let created = schema::ensure_partitions(&db.pool, old_day, old_day)
        .await
        .unwrap();
    assert_eq!(created, vec![schema::partition_name(old_day)]);
    assert_eq!(
        partition_of(&db.pool, old_id).await,
        schema::partition_name(old_day)
    );

    // Day boundaries are UTC midnight.
    let midnight = Utc.from_utc_datetime(&(old_day + Days::new(1)).and_hms_opt(0, 0, 0).unwrap());
    let next_id = insert_event(&db.pool, midnight).await;
    assert_eq!(partition_of(&db.pool, next_id).await, "events_default");

    let listed = schema::list_partitions(&db.pool).await.unwrap();
    let days: Vec<NaiveDate> = listed.iter().map(|(_, d)| *d).collect();
    assert_eq!(
        days,
        vec![old_day, today, today + Days::new(1), today + Days::new(2)]
    );
}

#[tokio::test]
async fn the_unique_key_makes_a_second_insert_of_an_event_a_no_op() {
    let db = TestDatabase::migrated().await;
    let ts = Utc::now();
    let id = Uuid::now_v7();
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO events (id, dedup_key, service, message, ts, ingested_at)
             VALUES ($1, $1, 'svc', 'hello', $2, now()) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(ts)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_partition_range_is_checked() {
    let db = TestDatabase::migrated().await;
    let today = Utc::now().date_naive();
    let err = schema::ensure_partitions(&db.pool, today, today - Days::new(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid day range"), "{err}");
}

#[tokio::test]
async fn concurrent_partition_creation_does_not_collide() {
    let db = TestDatabase::migrated().await;
    let today = Utc::now().date_naive();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            schema::ensure_partitions(&pool, today, today + Days::new(6)).await
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.extend(task.await.expect("task").expect("no collision"));
    }
    created.sort();
    assert_eq!(created.len(), 7, "each partition created exactly once");
}

#[tokio::test]
async fn api_keys_are_stored_hashed_and_found_by_their_hash() {
    let db = TestDatabase::migrated().await;
    let pepper: api_key::KeyPepper = "test-pepper-test-pepper-test-pepper".parse().unwrap();
    let scopes = Scopes::parse_list("ingest,query").unwrap();
    let (record, plaintext) = api_key::create(&db.pool, &pepper, "ci", scopes)
        .await
        .unwrap();
    assert_eq!(record.name, "ci");
    assert_eq!(record.scopes, scopes);

    // Only the hash is stored.
    let (stored_hash, prefix): (Vec<u8>, String) =
        sqlx::query_as("SELECT key_hash, prefix FROM api_keys WHERE id = $1")
            .bind(record.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored_hash, api_key::hash_key(&pepper, &plaintext));
    assert!(plaintext.contains(&prefix));
    let dump: String = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let secret = plaintext.rsplit('_').next().unwrap();
    assert!(!dump.contains(secret));

    let auth = api_key::authenticate(&db.pool, &pepper, &plaintext)
        .await
        .unwrap()
        .expect("the key authenticates");
    assert_eq!(auth.key_id, record.id);
    assert!(auth.scopes.contains(Scope::Ingest) && !auth.scopes.contains(Scope::Admin));

    // Same prefix, wrong secret; wrong pepper; garbage: all unknown.
    let forged = format!(
        "{}{}",
        &plaintext[..plaintext.len() - 1],
        if plaintext.ends_with('A') { 'B' } else { 'A' }
    );
    assert!(
        api_key::authenticate(&db.pool, &pepper, &forged)
            .await
            .unwrap()
            .is_none()
    );
    let other: api_key::KeyPepper = "another-pepper-another-pepper-xx".parse().unwrap();
    assert!(
        api_key::authenticate(&db.pool, &other, &plaintext)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        api_key::authenticate(&db.pool, &pepper, "nope")
            .await
            .unwrap()
            .is_none()
    );

    // Listed, then revoked (by prefix), then refused.
    let listed = api_key::list(&db.pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].prefix, prefix);
    let revoked = api_key::revoke(&db.pool, &prefix)
        .await
        .unwrap()
        .expect("found");
    assert!(revoked.revoked_at.is_some());
    assert!(
        api_key::authenticate(&db.pool, &pepper, &plaintext)
            .await
            .unwrap()
            .is_none()
    );
    // Revoking by id works too, and an unknown key is None.
    assert!(
        api_key::revoke(&db.pool, &record.id.to_string())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        api_key::revoke(&db.pool, "ffffffffffff")
            .await
            .unwrap()
            .is_none()
    );
}

/// Connects to `db` as a new login user that is a member of `role`.
async fn connect_as(db: &TestDatabase, role: &str) -> sqlx::PgPool {
    let login = eventline_shared::testkit::unique_name(role);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{login}\" LOGIN IN ROLE {role}"
    )))
    .execute(&db.pool)
    .await
    .expect("create login role");
    let url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{login}@"), 1);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect as the login role")
}

async fn allowed(pool: &sqlx::PgPool, sql: &'static str) -> bool {
    match sqlx::query(sql).execute(pool).await {
        Ok(_) => true,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => false,
        Err(e) => panic!("{sql}: unexpected error {e}"),
    }
}

#[tokio::test]
async fn each_component_role_can_do_its_job_and_nothing_more() {
    let db = TestDatabase::migrated().await;
    let today = Utc::now().date_naive();
    schema::ensure_partitions(&db.pool, today, today)
        .await
        .unwrap();

    let worker = connect_as(&db, "eventline_worker").await;
    assert!(
        allowed(
            &worker,
            "WITH ins AS (INSERT INTO events (id, dedup_key, service, message, ts, ingested_at)
                          VALUES (gen_random_uuid(), gen_random_uuid(), 'w', 'm', now(), now())
                          ON CONFLICT DO NOTHING RETURNING service, ts)
             INSERT INTO event_counts (service, hour, count)
             SELECT service, date_trunc('hour', ts), count(*) FROM ins GROUP BY 1, 2
             ON CONFLICT (service, hour) DO UPDATE SET count = event_counts.count + EXCLUDED.count"
        )
        .await
    );
    assert!(allowed(&worker, "CREATE TEMP TABLE staging (LIKE events)").await);
    assert!(
        allowed(
            &worker,
            "SELECT eventline_ensure_partitions(current_date + 1, current_date + 2)"
        )
        .await
    );
    assert!(!allowed(&worker, "DELETE FROM events").await);
    assert!(!allowed(&worker, "SELECT * FROM api_keys").await);
    assert!(!allowed(&worker, "DROP TABLE events_default").await);

    let query = connect_as(&db, "eventline_query").await;
    assert!(allowed(&query, "SELECT * FROM events").await);
    assert!(
        allowed(
            &query,
            "SELECT * FROM event_counts, maintenance_runs, api_keys"
        )
        .await
    );
    assert!(!allowed(&query, "INSERT INTO event_counts VALUES ('s', now(), 1)").await);
    assert!(
        !allowed(
            &query,
            "SELECT eventline_ensure_partitions(current_date, current_date)"
        )
        .await
    );

    let gateway = connect_as(&db, "eventline_gateway").await;
    assert!(allowed(&gateway, "SELECT prefix, key_hash, scopes FROM api_keys").await);
    assert!(!allowed(&gateway, "SELECT * FROM events").await);

    let retention = connect_as(&db, "eventline_retention").await;
    let day = today + Days::new(3);
    sqlx::query("SELECT eventline_ensure_partitions($1, $1)")
        .bind(day)
        .execute(&retention)
        .await
        .expect("retention creates partitions");
    let name = schema::partition_name(day);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE events DETACH PARTITION {name}"
    )))
    .execute(&retention)
    .await
    .expect("retention detaches");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(&retention)
        .await
        .expect("retention drops");
    assert!(
        allowed(
            &retention,
            "DELETE FROM events_default WHERE ts < now() - interval '30 days'"
        )
        .await
    );
    assert!(
        allowed(
            &retention,
            "INSERT INTO maintenance_runs (outcome) VALUES ('success')"
        )
        .await
    );
}
