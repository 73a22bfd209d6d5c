//! retention-job against a real PostgreSQL, at a clock the tests set: forty
//! days of events, then passes. One binary for all integration tests.

#![allow(clippy::unwrap_used)] // Test set-up: a failure should panic, loudly.

mod helpers;
mod schedule;

use eventline_shared::schema;
use helpers::*;
use retention_job::JobError;
use retention_job::job_lock::RETENTION_LOCK_KEY;
use retention_job::pass::PassError;
use retention_job::report::Outcome;

#[tokio::test]
async fn a_pass_keeps_thirty_days_drops_older_partitions_and_creates_the_coming_ones() {
    let db = database().await;
    seed_forty_days(&db.pool).await;
    let cutoff = midnight(day(30));

    // A small chunk size, so the chunk loops go round many times.
    let (report, out) = run_job(&db, &["--retention-days", "30", "--delete-chunk-rows", "4"])
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Success);

    // Partitions: days 30 back .. 7 ahead, nothing older.
    let partitions = schema::list_partitions(&db.pool).await.unwrap();
    let days: Vec<_> = partitions.iter().map(|(_, d)| *d).collect();
    assert_eq!(days.first(), Some(&day(30)));
    assert_eq!(days.last(), Some(&days_after(today(), 7)));
    assert_eq!(days.len(), 31 + 7, "one partition per day, none missing");
    assert!(
        days.contains(&days_after(today(), 1)),
        "tomorrow's partition exists"
    );
    assert_eq!(report.partitions_dropped.len(), 9, "days 31..=39 back");
    // The seven days ahead, and day 5 back whose rows sat in the default partition.
    assert_eq!(report.partitions_created.len(), 8);
    assert!(
        report
            .partitions_created
            .contains(&schema::partition_name(day(5)))
    );

    // Every event inside the window is still there, none outside.
    for service in SERVICES {
        let (all, inside) = events_of(&db.pool, service, cutoff).await;
        assert_eq!(
            inside,
            31 * PER_DAY,
            "{service}: every in-window event kept"
        );
        assert_eq!(all, inside, "{service}: nothing older than the cutoff left");
        let (counts, expired) = counts_of(&db.pool, service, cutoff).await;
        assert_eq!((counts, expired), (31 * PER_DAY, 0), "{service}: rollup");
    }
    // Default partition: the expired days (44..=40 back) deleted, day 5 moved out.
    let after = snapshot(&db.pool).await;
    assert_eq!(after.in_default, 0);
    assert_eq!(report.rows_deleted, 5 * 3 * PER_DAY as u64);
    assert!(out.contains("dropped partition events_p"), "{out}");
    assert_eq!(
        runs(&db.pool).await,
        vec![(
            "success".to_owned(),
            false,
            report.partitions_dropped.clone(),
            report.rows_deleted as i64
        )]
    );

    // A second pass changes nothing.
    let (again, _) = run_job(&db, &["--retention-days", "30", "--delete-chunk-rows", "4"])
        .await
        .unwrap();
    assert!(again.partitions_created.is_empty() && again.partitions_dropped.is_empty());
    assert_eq!((again.rows_deleted, again.counts_deleted), (0, 0));
    assert_eq!(snapshot(&db.pool).await, after);
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_predicts_the_real_run() {
    let db = database().await;
    seed_forty_days(&db.pool).await;
    let before = snapshot(&db.pool).await;

    let (dry, out) = run_job(&db, &["--dry-run", "--retention-overrides", "debug=3"])
        .await
        .unwrap();
    assert_eq!(
        snapshot(&db.pool).await,
        before,
        "a dry run changes nothing"
    );
    assert!(out.contains("would drop partition events_p"), "{out}");
    assert!(out.contains("would create partition events_p"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(runs(&db.pool).await[0].0, "success");
    assert!(runs(&db.pool).await[0].1, "recorded as a dry run");

    let (real, _) = run_job(&db, &["--retention-overrides", "debug=3"])
        .await
        .unwrap();
    assert_eq!(real.partitions_dropped, dry.partitions_dropped);
    let mut created = dry.partitions_created.clone();
    created.sort();
    let mut real_created = real.partitions_created.clone();
    real_created.sort();
    assert_eq!(real_created, created);
    assert_eq!(real.rows_deleted, dry.rows_deleted);
    assert_eq!(real.counts_deleted, dry.counts_deleted);
}

#[tokio::test]
async fn overrides_keep_and_delete_what_they_say() {
    let db = database().await;
    seed_forty_days(&db.pool).await;

    let (report, _) = run_job(
        &db,
        &[
            "--retention-days",
            "30",
            "--retention-overrides",
            "audit-service=365,debug=3",
            "--delete-chunk-rows",
            "5",
        ],
    )
    .await
    .unwrap();

    // The longest retention (365 days) keeps every partition; the days that
    // sat in the default partition got theirs.
    assert!(report.partitions_dropped.is_empty());
    assert_eq!(
        report.partitions_created.len(),
        7 + 6,
        "ahead, and days 44..=40 and 5 back"
    );
    assert_eq!(snapshot(&db.pool).await.in_default, 0);

    let expect = [("api", 30, 31), ("audit-service", 365, 45), ("debug", 3, 4)];
    for (service, days, kept_days) in expect {
        let cutoff = midnight(day(days));
        let (all, inside) = events_of(&db.pool, service, cutoff).await;
        assert_eq!(
            inside,
            kept_days * PER_DAY,
            "{service}: every in-window event kept"
        );
        assert_eq!(all, inside, "{service}: nothing expired left");
        let (counts, expired) = counts_of(&db.pool, service, cutoff).await;
        assert_eq!(
            (counts, expired),
            (kept_days * PER_DAY, 0),
            "{service}: rollup"
        );
    }
    assert_eq!(report.rows_deleted, ((45 - 31) + (45 - 4)) * PER_DAY as u64);
}

#[tokio::test]
async fn a_pass_that_finds_the_lock_taken_is_skipped_and_exits_cleanly() {
    let db = database().await;
    seed_forty_days(&db.pool).await;
    let before = snapshot(&db.pool).await;

    let mut holder = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(RETENTION_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let (report, out) = run_job(&db, &[]).await.unwrap();
    assert_eq!(report.outcome, Outcome::Skipped);
    assert!(out.starts_with("skipped"), "{out}");
    assert_eq!(snapshot(&db.pool).await, before);
    assert_eq!(
        runs(&db.pool).await,
        vec![("skipped".to_owned(), false, vec![], 0)]
    );
    drop(holder);
}

#[tokio::test]
async fn two_concurrent_passes_do_not_collide() {
    let db = database().await;
    seed_forty_days(&db.pool).await;

    let (a, b) = tokio::join!(
        run_job(&db, &["--delete-chunk-rows", "2"]),
        run_job(&db, &["--delete-chunk-rows", "2"])
    );
    let (a, b) = (a.unwrap().0, b.unwrap().0);
    let dropped = a.partitions_dropped.len() + b.partitions_dropped.len();
    assert_eq!(dropped, 9, "each partition dropped exactly once");
    assert_eq!(a.rows_deleted + b.rows_deleted, 5 * 3 * PER_DAY as u64);
    let outcomes: Vec<_> = runs(&db.pool).await.into_iter().map(|r| r.0).collect();
    assert!(!outcomes.contains(&"failed".to_owned()), "{outcomes:?}");
    for service in SERVICES {
        let (all, inside) = events_of(&db.pool, service, midnight(day(30))).await;
        assert_eq!((all, inside), (31 * PER_DAY, 31 * PER_DAY));
    }
}

#[tokio::test]
async fn a_detach_blocked_by_a_long_query_gives_up_fails_cleanly_and_the_next_pass_finishes() {
    let db = database().await;
    seed_forty_days(&db.pool).await;

    // A long-running reader of day 35's partition: DETACH must wait for it.
    let mut reader = db.pool.begin().await.unwrap();
    let blocked = schema::partition_name(day(35));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {blocked} IN ACCESS SHARE MODE"
    )))
    .execute(&mut *reader)
    .await
    .unwrap();
    let err = run_job(
        &db,
        &["--ddl-lock-timeout", "50", "--ddl-lock-retries", "1"],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, JobError::Pass(PassError::Ddl(_))), "{err:?}");
    assert!(err.to_string().contains("lock not obtained"), "{err}");
    let recorded = runs(&db.pool).await;
    assert_eq!(recorded[0].0, "failed");
    assert_eq!(
        recorded[0].2.len(),
        4,
        "days 39..=36 were dropped before it gave up"
    );
    reader.rollback().await.unwrap();

    let (report, _) = run_job(&db, &[]).await.unwrap();
    assert_eq!(report.partitions_dropped.len(), 5, "days 35..=31");
    assert!(report.partitions_dropped.contains(&blocked));
}

#[tokio::test]
async fn without_a_default_partition_detach_runs_concurrently() {
    let db = database().await;
    // The shared partition function needs a default partition, so every
    // partition the pass would create exists before it goes.
    schema::ensure_partitions(&db.pool, day(35), days_after(today(), 7))
        .await
        .unwrap();
    sqlx::query("DROP TABLE events_default")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (id, dedup_key, service, message, ts, ingested_at)
         SELECT gen_random_uuid(), gen_random_uuid(), 'api', 'hi', t, t
           FROM unnest(ARRAY[$1, $2]::timestamptz[]) AS t",
    )
    .bind(midnight(day(35)))
    .bind(midnight(day(0)))
    .execute(&db.pool)
    .await
    .unwrap();

    let (report, _) = run_job(&db, &[]).await.unwrap();
    assert_eq!(report.partitions_dropped.len(), 5, "days 35..=31");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let db = database().await;
    let mut bad = db.url.clone();
    bad.push_str("_missing");
    let mut argv_db = db;
    argv_db.url = bad;
    let err = run_job(&argv_db, &[]).await.unwrap_err();
    assert!(err.to_string().contains("does not answer"), "{err}");
}
