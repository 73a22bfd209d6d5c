//! eventctl against a real PostgreSQL: migrate, then the key lifecycle.

use clap::Parser;
use eventctl::{Cli, run};
use eventline_shared::api_key::{self, Scope};
use eventline_shared::testkit::{self, PEPPER, TestDatabase};

async fn eventctl(db: &TestDatabase, args: &[&str]) -> Result<String, eventctl::CtlError> {
    let mut argv = vec!["eventctl", "--database-url", &db.url];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    run(cli, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

#[tokio::test]
async fn migrate_then_create_list_and_revoke_a_key() {
    let db = TestDatabase::empty().await;
    let out = eventctl(&db, &["migrate", "--precreate-days", "2"])
        .await
        .unwrap();
    // Yesterday, today and two days ahead.
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("created events_p"))
            .count(),
        4
    );
    // Running it again changes nothing.
    assert_eq!(
        eventctl(&db, &["migrate", "--precreate-days", "2"])
            .await
            .unwrap(),
        ""
    );

    let out = eventctl(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scopes",
            "ingest,admin",
            "--key-pepper",
            PEPPER,
        ],
    )
    .await
    .unwrap();
    let key = out.trim();
    assert_eq!(out.lines().count(), 1, "only the key is printed");

    // The printed key is found by its hash.
    let pepper = testkit::pepper();
    let auth = api_key::authenticate(&db.pool, &pepper, key)
        .await
        .unwrap()
        .expect("the printed key authenticates");
    assert!(auth.scopes.contains(Scope::Ingest) && auth.scopes.contains(Scope::Admin));
    assert!(!auth.scopes.contains(Scope::Query));

    let listed = eventctl(&db, &["keys", "list", "--json"]).await.unwrap();
    assert!(listed.contains(&auth.prefix) && listed.contains("\"ci\""));
    assert!(!listed.contains(key), "list never shows the key");

    let out = eventctl(&db, &["keys", "revoke", &auth.prefix])
        .await
        .unwrap();
    assert_eq!(out.trim(), auth.key_id.to_string());
    assert!(
        api_key::authenticate(&db.pool, &pepper, key)
            .await
            .unwrap()
            .is_none()
    );
    let table = eventctl(&db, &["keys", "list"]).await.unwrap();
    assert!(table.contains("revoked"));

    assert!(matches!(
        eventctl(&db, &["keys", "revoke", "000000000000"]).await,
        Err(eventctl::CtlError::NoSuchKey(_))
    ));
}

/// `eventctl keys create --name x --scopes <scopes> --key-pepper <pepper>`, parsed.
fn parse_create(scopes: &str, pepper: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from([
        "eventctl",
        "keys",
        "create",
        "--name",
        "x",
        "--scopes",
        scopes,
        "--key-pepper",
        pepper,
    ])
}

#[test]
fn bad_scopes_and_short_peppers_are_refused_before_connecting() {
    let err = parse_create("root", PEPPER).unwrap_err();
    assert!(err.to_string().contains("unknown scope"), "{err}");
    let err = parse_create("ingest", "short").unwrap_err();
    assert!(err.to_string().contains("KEY_PEPPER"), "{err}");
}
