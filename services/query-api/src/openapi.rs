//! The OpenAPI 3.1 description of eventline's HTTP APIs — the ingest
//! gateway's and the query-api's — served at `GET /openapi.json`.
//!
//! Written by hand as JSON (a few hundred lines) rather than derived with a
//! macro crate: it keeps the dependency tree as it was, and the test suite
//! holds it to the truth instead — every operation tagged `query-api` must
//! be a route of [`crate::app::routes`] or a shared health route and the
//! other way round, and every documented operation of either service is
//! requested against a running instance, which must serve it.
//!
//! Each operation carries the services that answer it in `tags`
//! ([`QUERY_API`], [`INGEST_GATEWAY`]) and their address in `servers`.

use std::sync::OnceLock;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
    Json(document()).into_response()
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
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

fn gateway_server() -> Value {
    json!([{ "url": "http://localhost:8080", "description": "ingest-gateway" }])
}

fn query_server() -> Value {
    json!([{ "url": "http://localhost:8081", "description": "query-api" }])
}

fn error_responses(codes: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for code in codes {
        let description = match *code {
            "400" => "Bad parameters or body; `field` names the one at fault",
            "401" => "Missing or unknown API key, or an expired or invalid session cookie",
            "403" => "The key lacks the scope, or a state change by cookie lacks X-Requested-With",
            "404" => "Not found",
            "413" => "Body too large",
            "415" => "Unsupported content type",
            "429" => "Rate limited, over the high-water mark, or too many tails (Retry-After)",
            "503" => "A dependency is unavailable (Retry-After)",
            "504" => "The database did not answer in time",
            _ => "Error",
        };
        out.insert(
            (*code).to_owned(),
            json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        );
    }
    Value::Object(out)
}

fn with_errors(mut responses: Value, codes: &[&str]) -> Value {
    if let (Some(map), Value::Object(errors)) = (responses.as_object_mut(), error_responses(codes))
    {
        map.extend(errors);
    }
    responses
}

fn json_ok(description: &str, schema: &str) -> Value {
    json!({ "200": { "description": description, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } } })
}

fn param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn health_op(summary: &str, tags: &[&str], servers: Value) -> Value {
    json!({
        "tags": tags,
        "summary": summary,
        "servers": servers,
        "security": [],
        "responses": {
            "200": { "description": "OK" },
            "503": { "description": "Not ready, or a dependency is down" }
        }
    })
}

fn build() -> Value {
    let both = [QUERY_API, INGEST_GATEWAY];
    let both_servers = json!([
        { "url": "http://localhost:8080", "description": "ingest-gateway" },
        { "url": "http://localhost:8081", "description": "query-api" }
    ]);
    let time = json!({ "type": "string", "format": "date-time" });
    let services_param = param(
        "service",
        "One or several services: repeat the parameter or separate with commas.",
        json!({ "type": "array", "items": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$" } }),
    );
    let ingest_errors = ["400", "401", "403", "413", "415", "429", "503"];

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "eventline",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event ingestion (ingest-gateway, port 8080) and queries (query-api, port 8081). Each operation lists the service that answers it in `tags` and `servers`. Errors share one shape: {\"error\":{\"code\",\"message\",\"field\"}}."
        },
        "tags": [
            { "name": INGEST_GATEWAY, "description": "HTTP ingest into Redis Streams (port 8080)" },
            { "name": QUERY_API, "description": "Reads: events, stats, dead letters, live tail (port 8081)" }
        ],
        "security": [ { "bearer": [] }, { "apiKey": [] }, { "session": [] } ],
        "paths": {
            "/v1/events": {
                "post": {
                    "tags": [INGEST_GATEWAY],
                    "summary": "Send one event (scope ingest). 202 means it is in Redis.",
                    "servers": gateway_server(),
                    "parameters": [ { "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string" } } ],
                    "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/NewEvent" } } } },
                    "responses": with_errors(json!({ "202": { "description": "Accepted", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } } }), &ingest_errors)
                },
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Events by service and time, newest first, with keyset pagination (scope query).",
                    "servers": query_server(),
                    "parameters": [
                        services_param,
                        param("from", "Start of the window (inclusive), RFC 3339. Default: `to` minus MAX_QUERY_RANGE.", time.clone()),
                        param("to", "End of the window (exclusive), RFC 3339. Default: now plus one hour.", time.clone()),
                        param("limit", "Events per page.", json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 })),
                        param("order", "By (timestamp, id).", json!({ "type": "string", "enum": ["desc", "asc"], "default": "desc" })),
                        param("cursor", "`next_cursor` of the previous page; valid only with the same filters.", json!({ "type": "string" })),
                        param("q", "Case-insensitive substring of the message (1-200 characters).", json!({ "type": "string" })),
                        param("pageSize", "Compatibility alias of `limit`.", json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
                        param("page", "Compatibility: skips (page-1)*pageSize rows, at most MAX_PAGE_OFFSET; prefer `cursor`.", json!({ "type": "integer", "minimum": 1 })),
                        { "name": "metadata", "in": "query", "required": false, "style": "deepObject", "explode": true,
                          "description": "`metadata.<key>=<value>`: the metadata contains this key with this value (a JSON scalar or its string form); dots in the key reach into nested objects.",
                          "schema": { "type": "object", "additionalProperties": { "type": "string" } } }
                    ],
                    "responses": with_errors(json_ok("A page of events", "EventPage"), &["400", "401", "403", "503", "504"])
                }
            },
            "/events": {
                "post": {
                    "tags": [INGEST_GATEWAY],
                    "summary": "Alias of POST /v1/events.",
                    "servers": gateway_server(),
                    "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/NewEvent" } } } },
                    "responses": with_errors(json!({ "202": { "description": "Accepted", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } } }), &ingest_errors)
                }
            },
            "/v1/events/batch": {
                "post": {
                    "tags": [INGEST_GATEWAY],
                    "summary": "Up to 1000 events: a JSON array, {\"events\":[…]}, or NDJSON (scope ingest). Invalid events are listed in `rejected`.",
                    "servers": gateway_server(),
                    "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "oneOf": [
                            { "type": "array", "items": { "$ref": "#/components/schemas/NewEvent" } },
                            { "type": "object", "properties": { "events": { "type": "array", "items": { "$ref": "#/components/schemas/NewEvent" } } }, "required": ["events"] }
                        ] } },
                        "application/x-ndjson": { "schema": { "type": "string" } } } },
                    "responses": with_errors(json!({ "202": { "description": "Accepted (some may be rejected)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } } }), &ingest_errors)
                }
            },
            "/v1/events/{id}": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "One event by id (scope query).",
                    "servers": query_server(),
                    "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } } ],
                    "responses": with_errors(json_ok("The event", "Event"), &["400", "401", "403", "404", "503", "504"])
                }
            },
            "/v1/stats": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Counts from the hourly rollup: per service, per hour, and recent figures (scope query). Cached for STATS_CACHE_MS.",
                    "servers": query_server(),
                    "parameters": [
                        services_param,
                        param("from", "Start of the window, widened to the hour. Default: `to` minus 24 hours.", time.clone()),
                        param("to", "End of the window, widened to the hour (the answer's `from` and `to` are the hours counted). Default: the end of the current hour.", time.clone())
                    ],
                    "responses": with_errors(json_ok("Stats", "Stats"), &["400", "401", "403", "503", "504"])
                }
            },
            "/v1/events/export": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Every event a search selects over its whole window, streamed (chunked) page by page in the keyset order, as NDJSON (one Event per line) or CSV (RFC 4180, a header row). The search parameters and limits of GET /v1/events; `limit`, `cursor` and `page` do not apply (scope query). A failure after the first byte cuts the body short without its final chunk.",
                    "servers": query_server(),
                    "parameters": [
                        param("format", "`ndjson` (default) or `csv`.", json!({ "type": "string", "enum": ["ndjson", "csv"], "default": "ndjson" })),
                        services_param,
                        param("from", "Start of the window (inclusive), RFC 3339.", time.clone()),
                        param("to", "End of the window (exclusive), RFC 3339. Default: now plus one hour.", time.clone()),
                        param("order", "By (timestamp, id).", json!({ "type": "string", "enum": ["desc", "asc"], "default": "desc" })),
                        param("q", "Case-insensitive substring of the message.", json!({ "type": "string" })),
                        { "name": "metadata", "in": "query", "required": false, "style": "deepObject", "explode": true,
                          "description": "`metadata.<key>=<value>` filters, as for GET /v1/events.",
                          "schema": { "type": "object", "additionalProperties": { "type": "string" } } }
                    ],
                    "responses": with_errors(json!({ "200": { "description": "The events, streamed", "content": {
                        "application/x-ndjson": { "schema": { "type": "string" } },
                        "text/csv": { "schema": { "type": "string" } } } } }), &["400", "401", "403", "503", "504"])
                }
            },
            "/v1/stats/histogram": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Counts of the events a search selects in at most `buckets` time buckets (scope query). The width is the smallest of 1 s … 12 h, then whole days, that fits; buckets are aligned to the epoch and the first and last clipped to the window. Whole hours without `q` or metadata filters come from the hourly rollup, the rest from the events.",
                    "servers": query_server(),
                    "parameters": [
                        services_param,
                        param("from", "Start of the window, RFC 3339. Default: `to` minus 24 hours.", time.clone()),
                        param("to", "End of the window, RFC 3339. Default: now.", time.clone()),
                        param("buckets", "Most buckets.", json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 60 })),
                        param("q", "Case-insensitive substring of the message.", json!({ "type": "string" })),
                        { "name": "metadata", "in": "query", "required": false, "style": "deepObject", "explode": true,
                          "description": "`metadata.<key>=<value>` filters, as for GET /v1/events.",
                          "schema": { "type": "object", "additionalProperties": { "type": "string" } } }
                    ],
                    "responses": with_errors(json_ok("The buckets", "Histogram"), &["400", "401", "403", "503", "504"])
                }
            },
            "/v1/pipeline": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "The pipeline's state: per-shard length, pending entries and lag, backpressure (a shard over STREAM_HIGH_WATER), dead letters waiting (scope query).",
                    "servers": query_server(),
                    "responses": with_errors(json_ok("The pipeline", "Pipeline"), &["400", "401", "403", "503"])
                }
            },
            "/v1/session": {
                "post": {
                    "tags": [QUERY_API],
                    "summary": "Sign in to the console: the API key (Authorization or X-API-Key header, scope query or admin) for a session cookie `eventline_session` (HttpOnly, SameSite=Strict, Path=/; Secure with CONSOLE_SECURE_COOKIE), accepted in place of the key until it expires (SESSION_TTL_SECONDS) or the key is revoked. A request with the cookie alone that changes state must carry X-Requested-With.",
                    "servers": query_server(),
                    "responses": with_errors(json_ok("The session; Set-Cookie", "Session"), &["401", "403"])
                },
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Who the cookie (or key) stands for.",
                    "servers": query_server(),
                    "responses": with_errors(json_ok("The session", "Session"), &["401"])
                },
                "delete": {
                    "tags": [QUERY_API],
                    "summary": "Sign out: clears the cookie.",
                    "servers": query_server(),
                    "security": [],
                    "responses": { "204": { "description": "Signed out" } }
                }
            },
            "/v1/services": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Every known service with its count and last-seen time (scope query).",
                    "servers": query_server(),
                    "responses": with_errors(json_ok("Services", "Services"), &["400", "401", "403", "503", "504"])
                }
            },
            "/v1/tail": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Live tail: new events as Server-Sent Events (`event: event`, data = an Event), `: heartbeat` comments between (scope query). Send the last `id` back as `Last-Event-ID` to resume; when events after it have left the stream, an `event: gap` comes first with the time from which to read them from /v1/events.",
                    "servers": query_server(),
                    "parameters": [
                        services_param,
                        { "name": "Last-Event-ID", "in": "header", "required": false, "description": "The `id` of the last event received, to resume after it.", "schema": { "type": "string" } }
                    ],
                    "responses": with_errors(json!({ "200": { "description": "An event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } } }), &["400", "401", "403", "429", "503"])
                }
            },
            "/v1/dlq": {
                "get": {
                    "tags": [QUERY_API],
                    "summary": "Dead letters, oldest first, with why they failed (scope admin).",
                    "servers": query_server(),
                    "parameters": [
                        param("limit", "Entries per page.", json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 50 })),
                        param("cursor", "`next_cursor` of the previous page.", json!({ "type": "string" }))
                    ],
                    "responses": with_errors(json_ok("A page of dead letters", "DeadLetterPage"), &["400", "401", "403", "503"])
                }
            },
            "/v1/dlq/replay": {
                "post": {
                    "tags": [QUERY_API],
                    "summary": "Put dead letters back on the ingest stream and remove them from the DLQ, atomically per entry (scope admin).",
                    "servers": query_server(),
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ReplayRequest" } } } },
                    "responses": with_errors(json_ok("What was replayed", "ReplayOutcome"), &["400", "401", "403", "503"])
                }
            },
            "/health/live": { "get": health_op("The process runs.", &both, both_servers.clone()) },
            "/health/ready": { "get": health_op("Dependencies answer and the service is not shutting down.", &both, both_servers.clone()) },
            "/health/detailed": { "get": health_op("Every dependency's status and latency, and the service's own figures.", &both, both_servers.clone()) },
            "/metrics": { "get": health_op("Prometheus text format.", &both, both_servers.clone()) },
            "/health/database": { "get": health_op("PostgreSQL's status and the pool. The gateway answers it too when it checks API keys (`AUTH_REQUIRED`), without making readiness wait for PostgreSQL.", &[QUERY_API], query_server()) },
            "/health/business": { "get": health_op("Pipeline figures without service names: recent throughput, dead letters, the retention job's last success.", &[QUERY_API], query_server()) },
            "/health/buffer": { "get": health_op("Stream depth against the high-water mark; 503 when over.", &[INGEST_GATEWAY], gateway_server()) },
            "/openapi.json": { "get": {
                "tags": [QUERY_API],
                "summary": "This document.",
                "servers": query_server(),
                "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1" } }
            } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "session": { "type": "apiKey", "in": "cookie", "name": "eventline_session", "description": "The console's session (POST /v1/session); query-api only." }
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } } } }
                },
                "NewEvent": {
                    "type": "object", "required": ["service", "message"], "additionalProperties": false,
                    "properties": {
                        "service": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$" },
                        "message": { "type": "string", "minLength": 1, "maxLength": 2000 },
                        "timestamp": { "type": "string", "format": "date-time" },
                        "metadata": { "type": "object" },
                        "event_id": { "type": "string", "minLength": 1, "maxLength": 128 }
                    }
                },
                "Accepted": {
                    "type": "object", "required": ["accepted", "ids"],
                    "properties": {
                        "accepted": { "type": "integer" },
                        "ids": { "type": "array", "items": { "type": "string", "format": "uuid" } },
                        "rejected": { "type": "array", "items": { "type": "object", "properties": {
                            "index": { "type": "integer" }, "error": { "type": "string" }, "code": { "type": "string" }, "field": { "type": "string" } } } }
                    }
                },
                "Event": {
                    "type": "object", "required": ["id", "service", "message", "timestamp", "ingested_at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "service": { "type": "string" },
                        "message": { "type": "string" },
                        "timestamp": { "type": "string", "format": "date-time" },
                        "ingested_at": { "type": "string", "format": "date-time" },
                        "event_id": { "type": "string" },
                        "metadata": { "type": "object" }
                    }
                },
                "EventPage": {
                    "type": "object", "required": ["events", "next_cursor"],
                    "properties": {
                        "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                        "next_cursor": { "type": ["string", "null"] }
                    }
                },
                "Stats": {
                    "type": "object",
                    "properties": {
                        "from": { "type": "string", "format": "date-time" },
                        "to": { "type": "string", "format": "date-time" },
                        "total": { "type": "integer" },
                        "services": { "type": "array", "items": { "type": "object", "properties": { "service": { "type": "string" }, "count": { "type": "integer" } } } },
                        "hourly": { "type": "array", "items": { "type": "object", "properties": { "hour": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } },
                        "current_hour": { "type": "integer", "description": "Events in the current clock hour so far." },
                        "last_hour": { "type": "integer", "description": "Events in the last complete clock hour." },
                        "last_24h": { "type": "integer", "description": "Events in the 24 complete hours before the current one." },
                        "events_per_minute": { "type": "number", "description": "last_hour / 60." },
                        "generated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "Services": {
                    "type": "object",
                    "properties": { "services": { "type": "array", "items": { "type": "object", "properties": {
                        "service": { "type": "string" }, "count": { "type": "integer" }, "last_seen": { "type": ["string", "null"], "format": "date-time" },
                        "current_hour": { "type": "integer", "description": "The current clock hour so far." },
                        "last_hour": { "type": "integer", "description": "The last complete clock hour." },
                        "last_24h": { "type": "integer", "description": "The 24 complete hours before the current one." },
                        "hourly": { "type": "array", "description": "Those 24 hours and the current one, oldest first.", "items": { "type": "object", "properties": { "hour": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } } } } } }
                },
                "Histogram": {
                    "type": "object",
                    "properties": {
                        "from": { "type": "string", "format": "date-time" },
                        "to": { "type": "string", "format": "date-time" },
                        "bucket_seconds": { "type": "integer" },
                        "source": { "type": "string", "enum": ["rollup", "events", "rollup+events"] },
                        "total": { "type": "integer" },
                        "buckets": { "type": "array", "items": { "type": "object", "properties": {
                            "start": { "type": "string", "format": "date-time" }, "end": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } }
                    }
                },
                "Pipeline": {
                    "type": "object",
                    "properties": {
                        "lag": { "type": ["integer", "null"] }, "pending": { "type": "integer" },
                        "longest_stream": { "type": "integer" }, "stream_high_water": { "type": "integer" },
                        "backpressure": { "type": "boolean" }, "dead_letters": { "type": "integer" },
                        "streams": { "type": "array", "items": { "type": "object" } },
                        "generated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "Session": {
                    "type": "object",
                    "properties": {
                        "auth_required": { "type": "boolean" },
                        "key_prefix": { "type": ["string", "null"] },
                        "scopes": { "type": "array", "items": { "type": "string" } },
                        "expires_at": { "type": ["string", "null"], "format": "date-time" }
                    }
                },
                "DeadLetterPage": {
                    "type": "object",
                    "properties": {
                        "entries": { "type": "array", "items": { "type": "object", "properties": {
                            "id": { "type": "string" }, "reason": { "type": ["string", "null"] }, "error": { "type": ["string", "null"] },
                            "first_failure": { "type": ["string", "null"] }, "last_failure": { "type": ["string", "null"] },
                            "deliveries": { "type": ["integer", "null"] }, "source_stream": { "type": ["string", "null"] }, "source_id": { "type": ["string", "null"] },
                            "event": { "type": ["object", "null"] }, "decode_error": { "type": "string" } } } },
                        "next_cursor": { "type": ["string", "null"] },
                        "total": { "type": "integer" }
                    }
                },
                "ReplayRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": { "ids": { "type": "array", "items": { "type": "string" }, "maxItems": 1000 }, "all": { "type": "boolean" } }
                },
                "ReplayOutcome": {
                    "type": "object",
                    "properties": {
                        "replayed": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" }, "stream": { "type": "string" }, "new_id": { "type": "string" } } } },
                        "not_replayable": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" }, "error": { "type": "string" } } } },
                        "not_found": { "type": "array", "items": { "type": "string" } },
                        "truncated": { "type": "boolean" }
                    }
                }
            }
        }
    })
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
}
