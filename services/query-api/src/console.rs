//! The console: a few static files compiled into the binary and served at
//! `/` — plain HTML, CSS and ES modules written in `console/`, no build
//! step, nothing fetched from elsewhere (docs/adr/0031-console.md).
//!
//! - `/`, `/services`, `/dead-letters` and `/events/{id}` (a permalink)
//!   answer `index.html` with `Cache-Control: no-cache`, so a deploy is
//!   seen at the next load; the page's state lives in its URL.
//! - `/assets/<name>.<hash>.<ext>` answers a file with a year's `immutable`
//!   cache life: the hash (16 hex digits of its SHA-256) changes whenever
//!   the file or any module it imports changes, since the names a file
//!   refers to are rewritten to hashed names before it is hashed itself.
//! - Files are gzipped once, at first use, and sent so to clients that
//!   accept it.
//!
//! The Content-Security-Policy (`default-src 'self'`, no inline script or
//! style) and `nosniff` come from the shared layer every response passes.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventline_shared::config::parse_positive_seconds;
use sha2::{Digest, Sha256};

use crate::app::Shared;

/// The console's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// How long a console session lasts, in seconds; signing in again
    /// starts a new one.
    #[arg(long = "session-ttl-seconds", env = "SESSION_TTL_SECONDS", value_name = "SESSION_TTL_SECONDS", default_value = "43200", value_parser = parse_positive_seconds)]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure`: set it when the console is served
    /// over HTTPS (by a proxy in front), so the cookie never travels in the
    /// clear.
    #[arg(long, env = "CONSOLE_SECURE_COOKIE", default_value_t = false, action = clap::ArgAction::Set)]
    pub console_secure_cookie: bool,
    /// The gateways' `STREAM_HIGH_WATER` (same variable): the console's
    /// strip shows backpressure when a shard holds more entries.
    #[arg(long, env = "STREAM_HIGH_WATER", default_value_t = 1_000_000)]
    pub stream_high_water: u64,
}

/// What the console's requests need beside the rest of the state.
pub struct ConsoleState {
    /// Session cookies; `None` when `AUTH_REQUIRED=false`.
    pub sessions: Option<crate::session::Sessions>,
    pub stream_high_water: u64,
}

impl ConsoleState {
    pub fn new(config: &crate::config::Config) -> Self {
        ConsoleState {
            sessions: crate::session::Sessions::new(
                config.auth.pepper().ok().flatten(),
                &config.console,
            ),
            stream_high_water: config.console.stream_high_water,
        }
    }
}

/// The files, as written: name, type, content.
const SOURCES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../console/favicon.svg"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/dom.js"),
    ),
    (
        "searchurl.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/searchurl.js"),
    ),
    (
        "search.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/search.js"),
    ),
    (
        "histogram.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/histogram.js"),
    ),
    (
        "tail.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/tail.js"),
    ),
    (
        "event.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/event.js"),
    ),
    (
        "services.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/services.js"),
    ),
    (
        "deadletters.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/deadletters.js"),
    ),
];

/// One file ready to serve.
pub struct Asset {
    /// `app.3f2a…9c.js`; `index.html` keeps its name.
    pub name: String,
    pub content_type: &'static str,
    pub body: Bytes,
    pub gzip: Bytes,
    pub etag: String,
}

/// The files by served name (`index.html` by that name).
pub struct Assets {
    pub by_name: HashMap<String, Asset>,
    /// Source name → served name.
    pub names: HashMap<&'static str, String>,
}

/// The assets, rewritten, hashed and gzipped on first use.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(build)
}

/// The references of one file to another: `"./api.js"` in a module,
/// `"/assets/app.js"` in the page.
fn references(source: &str, text: &str) -> bool {
    text.contains(&format!("\"./{source}\"")) || text.contains(&format!("\"/assets/{source}\""))
}

fn rewrite(text: &str, names: &HashMap<&'static str, String>) -> String {
    let mut out = text.to_owned();
    for (source, hashed) in names {
        out = out
            .replace(&format!("\"./{source}\""), &format!("\"./{hashed}\""))
            .replace(
                &format!("\"/assets/{source}\""),
                &format!("\"/assets/{hashed}\""),
            );
    }
    out
}

fn hashed_name(source: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    match source.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{source}.{hash}"),
    }
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Hashes the files leaves first: a file's references are rewritten to the
/// hashed names of the files it names, then it is hashed itself, so a
/// change anywhere renames every file that leads to it.
fn build() -> Assets {
    let texts: Vec<(&'static str, &'static str, String)> = SOURCES
        .iter()
        .map(|(name, ty, bytes)| (*name, *ty, String::from_utf8_lossy(bytes).into_owned()))
        .collect();
    let mut names: HashMap<&'static str, String> = HashMap::new();
    let mut contents: HashMap<&'static str, String> = HashMap::new();
    loop {
        let left: Vec<&(&'static str, &'static str, String)> = texts
            .iter()
            .filter(|(source, _, _)| !names.contains_key(source))
            .collect();
        if left.is_empty() {
            break;
        }
        let waits = |source: &str, text: &str| {
            left.iter()
                .any(|(other, _, _)| *other != source && references(other, text))
        };
        let mut ready: Vec<_> = left
            .iter()
            .filter(|(source, _, text)| !waits(source, text))
            .collect();
        // A cycle leaves all of its files waiting: take them as they are.
        if ready.is_empty() {
            ready = left.iter().collect();
        }
        for (source, _, text) in ready {
            let content = rewrite(text, &names);
            let name = if *source == "index.html" {
                (*source).to_owned()
            } else {
                hashed_name(source, content.as_bytes())
            };
            names.insert(source, name);
            contents.insert(source, content);
        }
    }
    let mut by_name = HashMap::new();
    for (source, content_type, _) in &texts {
        // Rewritten again with every name known (only a cycle needs it).
        let content = rewrite(&contents[source], &names);
        let digest = Sha256::digest(content.as_bytes());
        let etag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let body = Bytes::from(content);
        by_name.insert(
            names[source].clone(),
            Asset {
                name: names[source].clone(),
                content_type,
                gzip: gzip(&body),
                body,
                etag: format!("\"{etag}\""),
            },
        );
    }
    Assets { by_name, names }
}

/// Adds the console's pages and files to `router`.
pub fn routes(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/", get(page))
        .route("/services", get(page))
        .route("/dead-letters", get(page))
        .route("/events/{id}", get(page))
        .route("/assets/{name}", get(asset))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn serve(asset: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let mut r = asset.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.body.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, etag);
    }
    response
}

/// The page, for every path of the console.
async fn page(headers: HeaderMap) -> Response {
    match assets().by_name.get("index.html") {
        Some(index) => serve(index, &headers, "no-cache"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/assets/<name>.<hash>.<ext>`.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match assets().by_name.get(&name) {
        Some(asset) if name != "index.html" => {
            serve(asset, &headers, "public, max-age=31536000, immutable")
        }
        _ => eventline_shared::http_error::error_response(
            StatusCode::NOT_FOUND,
            "no_asset",
            "no such console file",
            None,
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_is_hashed_and_resolves() {
        let assets = assets();
        assert_eq!(assets.names.len(), SOURCES.len());
        let index = String::from_utf8_lossy(&assets.by_name["index.html"].body).into_owned();
        for (source, hashed) in &assets.names {
            if *source == "index.html" {
                continue;
            }
            assert_ne!(source, hashed);
            let asset = &assets.by_name[hashed];
            let text = String::from_utf8_lossy(&asset.body);
            // No file still names another by its unhashed name.
            for other in assets.names.keys() {
                assert!(
                    !references(other, &text),
                    "{source} still refers to {other}"
                );
            }
            assert!(!asset.gzip.is_empty());
        }
        assert!(index.contains(&format!("\"/assets/{}\"", assets.names["app.js"])));
        assert!(!references("app.js", &index));
    }

    #[test]
    fn gzip_is_negotiated() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            "br, gzip, deflate".parse().unwrap(),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0, br".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }
}
