//! The OpenAPI 3.1 description of eventline's HTTP APIs — the ingest
//! gateway's and the query-api's — served at `GET /openapi.json`.
//!
//! The document is the checked-in `openapi.json` beside this crate's
//! `Cargo.toml`, edited by hand and served as it stands, rather than derived
//! with a macro crate: it keeps the dependency tree as it was, and the test
//! suite holds it to the truth instead — every operation tagged `query-api`
//! must be a route of [`crate::app::routes`] or a shared health route and
//! the other way round, every documented operation of either service is
//! requested against a running instance, which must serve it, and every
//! schema reference resolves.
//!
//! Each operation carries the services that answer it in `tags`
//! ([`QUERY_API`], [`INGEST_GATEWAY`]) and their address in `servers`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The document's text, as served.
const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub const QUERY_API: &str = "query-api";
pub const INGEST_GATEWAY: &str = "ingest-gateway";

/// The routes `eventline_shared::health::Health::router` mounts in every
/// service (`/health/database` only where PostgreSQL is used).
pub const SHARED_HEALTH_ROUTES: &[&str] = &[
    "/health/live",
    "/health/ready",
    "/health/detailed",
    "/metrics",
];

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// The document, parsed once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(OPENAPI_JSON).unwrap_or_else(|e| panic!("openapi.json: {e}"))
    })
}

/// `(method, path, tags)` of every operation in `doc`, methods upper-case.
pub fn operations(doc: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if !matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                continue;
            }
            let tags = op["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.push((method.to_uppercase(), path.clone(), tags));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                schemas.contains_key(&name),
                "{name} is referenced but not defined"
            );
        }
        for (method, path, tags) in operations(doc) {
            assert!(!tags.is_empty(), "{method} {path} names no service");
        }
    }

    #[test]
    fn the_version_is_the_crates() {
        assert_eq!(document()["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
