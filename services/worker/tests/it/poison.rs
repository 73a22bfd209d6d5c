//! Entries that can never be stored go to `events:dlq` with a reason; the
//! good entries around them land and the group keeps moving.

use std::time::Duration;

use eventline_shared::redis_keys::CONSUMER_GROUP;

use eventline_shared::testkit;

use crate::common::*;

#[tokio::test]
async fn poison_entries_go_to_the_dlq_and_the_good_ones_land() {
    let env = TestEnv::new().await;
    let mut good = events(100);
    env.add(&good[..50]).await;
    let garbage = env
        .add_raw(&[("v", b"1"), ("e", b"\xc1\xc1 not msgpack")])
        .await;
    let no_payload = env.add_raw(&[("v", b"1")]).await;
    let nul = event("svc", "nul \u{0} inside", Some("nul-1"));
    let mut bad_json = event("svc", "bad json", None);
    bad_json.metadata = Some("{\"unclosed\":".into());
    let bad_ids = env.add(&[nul.clone(), bad_json]).await;
    env.add(&good[50..]).await;

    let w = InProcess::start(env.config(&["--batch-size", "500"])).await;
    env.wait_drained(Duration::from_secs(30)).await;
    assert_exactly_once(&env.db.pool, &good).await;

    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let by_source = |id: &str| {
        letters
            .iter()
            .find(|l| l["source_id"] == id)
            .unwrap_or_else(|| panic!("no dead letter for {id}"))
    };
    for (id, reason) in [
        (&garbage, "decode"),
        (&no_payload, "decode"),
        (&bad_ids[0], "data"),
        (&bad_ids[1], "data"),
    ] {
        let l = by_source(id);
        assert_eq!(l["reason"], reason, "{l:?}");
        assert_eq!(l["source_stream"], env.stream());
        assert_eq!(l["deliveries"], "1");
        assert!(!l["error"].is_empty());
        assert!(l.contains_key("first_failure") && l.contains_key("last_failure"));
        assert_eq!(l["v"], "1", "the original fields are kept");
    }
    assert!(
        by_source(&bad_ids[1])["error"].contains("json"),
        "{:?}",
        by_source(&bad_ids[1])
    );
    assert_eq!(
        w.metric(worker::metrics::DEAD_LETTERED, Some(("reason", "decode"))),
        2.0
    );
    assert_eq!(
        w.metric(worker::metrics::DEAD_LETTERED, Some(("reason", "data"))),
        2.0
    );

    // The refused event's dedup claim was released, so a fixed retry can land.
    let held = testkit::claim_holder(&mut env.conn.clone(), &env.keys, nul.dedup_key()).await;
    assert_eq!(held, None);
    let mut fixed = nul.clone();
    fixed.id = uuid::Uuid::now_v7();
    fixed.message = "nul removed".into();
    env.add(std::slice::from_ref(&fixed)).await;
    env.wait_drained(Duration::from_secs(20)).await;
    good.push(fixed);
    assert_exactly_once(&env.db.pool, &good).await;
    w.stop().await;
}

#[tokio::test]
async fn entries_delivered_too_often_go_to_the_dlq() {
    let env = TestEnv::new().await;
    let mut doomed = events(5);
    doomed[0].event_id = Some("doomed-0".into());
    let ids = env.add(&doomed).await;
    let mut conn = env.conn.clone();
    // An earlier delivery claimed the event that has an event_id.
    testkit::set_claim(&mut conn, &env.keys, doomed[0].dedup_key(), &ids[0]).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(env.stream())
        .arg(CONSUMER_GROUP)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A consumer that keeps failing on them: read, then re-claimed over and over.
    env.deliver_to("crashy", None).await;
    for _ in 0..4 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(env.stream())
            .arg(CONSUMER_GROUP)
            .arg("crashy")
            .arg(0)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let w = InProcess::start(env.config(&[
        "--max-deliveries",
        "3",
        "--claim-idle",
        "100",
        "--claim-interval",
        "100",
    ]))
    .await;
    env.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(row_count(&env.db.pool).await, 0);
    assert_eq!(
        testkit::claim_holder(&mut conn, &env.keys, doomed[0].dedup_key()).await,
        None,
        "a dead event's claim is released, so a replay can store it"
    );
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 5);
    for l in &letters {
        assert_eq!(l["reason"], "max_deliveries");
        assert_eq!(l["deliveries"], "6", "{l:?}");
        // Its earlier deliveries failed elsewhere: the first failure is
        // dated no earlier than the entry itself, i.e. its id's time.
        let source = &l["source_id"];
        let ms: i64 = source.split_once('-').unwrap().0.parse().unwrap();
        let added = chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let first: chrono::DateTime<chrono::Utc> = l["first_failure"].parse().unwrap();
        let last: chrono::DateTime<chrono::Utc> = l["last_failure"].parse().unwrap();
        assert_eq!(first, added, "{l:?}");
        assert!(first <= last);
    }
    assert_eq!(w.metric(worker::metrics::CLAIMED, None), 5.0);
    w.stop().await;
}
