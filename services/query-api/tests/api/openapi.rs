//! `/openapi.json` against the routes actually served: every query-api
//! operation is a route of the route table (or a shared health route) and
//! the other way round, and every documented operation of the query-api and
//! of the gateway is answered by a running instance — not with a 404 for an
//! unknown route, not with a 405.

use std::collections::BTreeSet;
use std::time::Duration;

use query_api::openapi::{self, INGEST_GATEWAY, QUERY_API, SHARED_HEALTH_ROUTES};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Streaming, open_app, open_gateway, request};

fn documented(tag: &str) -> BTreeSet<(String, String)> {
    openapi::operations(openapi::document())
        .into_iter()
        .filter(|(_, _, tags)| tags.iter().any(|t| t == tag))
        .map(|(m, p, _)| (m, p))
        .collect()
}

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-0000-0000-000000000000")
}

/// Fails when `method path` is answered as a route that does not exist
/// (404 `no_route`) or a method it does not serve (405).
async fn assert_served(addr: std::net::SocketAddr, method: &str, path: &str) {
    let res = request(addr, method, path, &[], b"").await;
    assert_ne!(res.status, 405, "{method} {path}");
    if res.status == 404 {
        assert_ne!(
            res.error_code(),
            "no_route",
            "{method} {path} is documented, not served"
        );
    }
}

#[test]
fn the_query_api_routes_are_the_documented_ones() {
    let mut served: BTreeSet<(String, String)> = query_api::app::routes()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    for path in SHARED_HEALTH_ROUTES.iter().chain(&["/health/database"]) {
        served.insert(("GET".into(), (*path).to_owned()));
    }
    assert_eq!(served, documented(QUERY_API));
}

#[tokio::test]
async fn every_documented_query_api_operation_is_served() {
    let app = open_app(&[]).await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, 200);
    assert_eq!(&res.json(), openapi::document());
    for (method, path) in documented(QUERY_API) {
        let path = concrete(&path);
        if path == "/v1/tail" {
            let mut tail = Streaming::open(app.addr, &path, &[]).await;
            assert!(
                tail.wait_for(" 200 ", Duration::from_secs(10)).await,
                "{path}"
            );
            continue;
        }
        assert_served(app.addr, &method, &path).await;
    }
}

#[tokio::test]
async fn every_documented_gateway_operation_is_served() {
    let stop = CancellationToken::new();
    let gateway = open_gateway(&stop).await;
    let addr = gateway.addr;
    let ops = documented(INGEST_GATEWAY);
    assert!(ops.contains(&("POST".into(), "/v1/events/batch".into())));
    for (method, path) in ops {
        assert_served(addr, &method, &concrete(&path)).await;
    }
    stop.cancel();
    gateway.task.await.unwrap();
}
