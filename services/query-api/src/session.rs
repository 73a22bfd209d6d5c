//! The console's sign-in: `POST /v1/session` exchanges an API key (in the
//! `Authorization` or `X-API-Key` header, as everywhere) for a session
//! cookie, `GET /v1/session` says who is signed in, `DELETE /v1/session`
//! signs out (docs/adr/0031-console.md).
//!
//! The cookie is stateless, so any replica behind a load balancer accepts
//! it: the key's public prefix and id, an expiry, and an HMAC-SHA256 over
//! them under a secret derived from `KEY_PEPPER`. It never holds the key.
//! Every request re-checks the key id in the key store, so revoking the key
//! (or changing its scopes) takes effect within `KEY_CACHE_TTL`, as for the
//! key itself.
//!
//! Invariants: a cookie is `HttpOnly; SameSite=Strict; Path=/` (and
//! `Secure` with `CONSOLE_SECURE_COOKIE`); a request that changes state and
//! is authenticated by the cookie alone must also carry `X-Requested-With`,
//! which no cross-site form can send (and a cross-site `fetch` can only
//! send after a CORS preflight this API never grants).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use eventline_shared::api_key::{Authenticated, KeyPepper, Scope};
use eventline_shared::key_store::presented_key;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::app::{AppState, Shared};
use crate::console::ConsoleArgs;
use crate::error::ApiError;

/// The cookie's name.
pub const COOKIE: &str = "eventline_session";
/// The header a cookie-authenticated request that changes state must carry.
pub const CSRF_HEADER: &str = "x-requested-with";

const VERSION: u8 = 1;
/// version, key id, prefix (6 bytes of its 12 hex digits), expiry (Unix
/// seconds), then the MAC.
const BODY_LEN: usize = 1 + 16 + 6 + 8;
const MAC_LEN: usize = 32;

/// Issues and checks session cookies; `None` in the state when keys are
/// off (`AUTH_REQUIRED=false`), since there is nothing to sign in to.
pub struct Sessions {
    secret: [u8; 32],
    ttl: Duration,
    secure: bool,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// What a valid cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub key_id: Uuid,
    pub prefix: String,
    pub expires_at: DateTime<Utc>,
}

impl Sessions {
    /// The cookies' secret is derived from the pepper (its own label, so a
    /// session MAC can never be mistaken for a key hash).
    pub fn new(pepper: Option<&KeyPepper>, args: &ConsoleArgs) -> Option<Self> {
        let pepper = pepper?;
        let mut derive = mac(pepper.as_bytes());
        derive.update(b"eventline console session cookie v1");
        Some(Sessions {
            secret: derive.finalize().into_bytes().into(),
            ttl: args.session_ttl,
            secure: args.console_secure_cookie,
        })
    }

    /// A new cookie value for `identity`, valid until the returned time.
    pub fn issue(&self, identity: &Authenticated, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let ttl = chrono::TimeDelta::from_std(self.ttl).unwrap_or(chrono::TimeDelta::hours(12));
        // Whole seconds: what the cookie holds.
        let expires_at = now + ttl;
        let expires_at = DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
        let mut body = Vec::with_capacity(BODY_LEN + MAC_LEN);
        body.push(VERSION);
        body.extend_from_slice(identity.key_id.as_bytes());
        body.extend_from_slice(&prefix_bytes(&identity.prefix).unwrap_or_default());
        body.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        let mut signer = mac(&self.secret);
        signer.update(&body);
        body.extend_from_slice(&signer.finalize().into_bytes());
        (URL_SAFE_NO_PAD.encode(body), expires_at)
    }

    /// The session a cookie value stands for, when its MAC holds and it has
    /// not expired.
    pub fn verify(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        if value.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() != BODY_LEN + MAC_LEN || bytes[0] != VERSION {
            return None;
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut check = mac(&self.secret);
        check.update(body);
        check.verify_slice(tag).ok()?;
        let key_id = Uuid::from_slice(&body[1..17]).ok()?;
        let prefix: String = body[17..23].iter().map(|b| format!("{b:02x}")).collect();
        let expires = i64::from_be_bytes(body[23..31].try_into().ok()?);
        let expires_at = DateTime::from_timestamp(expires, 0)?;
        (expires_at > now).then_some(Session {
            key_id,
            prefix,
            expires_at,
        })
    }

    /// `Set-Cookie` for a value living `max_age` seconds (0 clears it).
    fn set_cookie(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .ok()
    }
}

/// A key prefix's 12 hex digits as 6 bytes.
fn prefix_bytes(prefix: &str) -> Option<[u8; 6]> {
    if prefix.len() != 12 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(prefix.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A caller: its key's identity, and the session when it came by cookie.
pub type Caller = (Arc<Authenticated>, Option<Session>);

/// Who a request comes from, by its key header or else its session cookie;
/// `Ok(None)` when keys are off. A cookie-authenticated request with an
/// unsafe method must carry [`CSRF_HEADER`].
pub fn caller(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Option<Caller>, ApiError> {
    let Some(store) = &state.key_store else {
        return Ok(None);
    };
    if let Some(presented) = presented_key(headers) {
        let identity = store.authenticate(presented).ok_or(ApiError::UnknownKey)?;
        return Ok(Some((identity, None)));
    }
    let (Some(value), Some(sessions)) = (cookie(headers, COOKIE), &state.console.sessions) else {
        return Err(ApiError::MissingKey);
    };
    let session = sessions
        .verify(value, Utc::now())
        .ok_or(ApiError::InvalidSession)?;
    let identity = store
        .live(&session.prefix, session.key_id)
        .ok_or(ApiError::UnknownKey)?;
    if !method.is_safe() && !headers.contains_key(CSRF_HEADER) {
        return Err(ApiError::MissingCsrfHeader);
    }
    Ok(Some((identity, Some(session))))
}

/// Whether `identity` may use routes of `scope` (`admin` may also query).
pub fn allows(identity: &Authenticated, scope: Scope) -> bool {
    identity.scopes.contains(scope)
        || (scope == Scope::Query && identity.scopes.contains(Scope::Admin))
}

fn describe(identity: &Authenticated, expires_at: Option<DateTime<Utc>>) -> serde_json::Value {
    let scopes: Vec<&str> = identity.scopes.iter().map(Scope::as_str).collect();
    json!({
        "auth_required": true,
        "key_prefix": identity.prefix,
        "scopes": scopes,
        "expires_at": expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
    })
}

/// What an open query-api (`AUTH_REQUIRED=false`) answers: anyone may do
/// anything.
fn open_session() -> Response {
    no_store(Json(json!({
        "auth_required": false,
        "key_prefix": null,
        "scopes": ["query", "admin"],
        "expires_at": null,
    })))
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /v1/session`: the key in the header, for a cookie. Only a key
/// that may read (`query` or `admin`) signs in.
pub async fn sign_in(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let (Some(store), Some(sessions)) = (&state.key_store, &state.console.sessions) else {
        return open_session();
    };
    let Some(presented) = presented_key(&headers) else {
        return ApiError::MissingKey.into_response();
    };
    let Some(identity) = store.authenticate(presented) else {
        return ApiError::UnknownKey.into_response();
    };
    if !allows(&identity, Scope::Query) {
        return ApiError::MissingScope(Scope::Query.as_str()).into_response();
    }
    let (value, expires_at) = sessions.issue(&identity, Utc::now());
    let mut response = no_store(Json(describe(&identity, Some(expires_at))));
    if let Some(cookie) = sessions.set_cookie(&value, sessions.ttl.as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    tracing::info!(key_prefix = %identity.prefix, "console session started");
    response
}

/// `GET /v1/session`: who the cookie (or key) stands for; 401 when nobody.
pub async fn current(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match caller(&state, &headers, &Method::GET) {
        Ok(None) => open_session(),
        Ok(Some((identity, session))) => {
            no_store(Json(describe(&identity, session.map(|s| s.expires_at))))
        }
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/session`: clears the cookie (the browser forgets it; the
/// value itself stays valid until it expires or its key is revoked).
pub async fn sign_out(State(state): State<Shared>) -> Response {
    let mut response = no_store(StatusCode::NO_CONTENT);
    if let Some(cookie) = state
        .console
        .sessions
        .as_ref()
        .and_then(|s| s.set_cookie("", 0))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_shared::api_key::Scopes;

    fn sessions(pepper: &str) -> Sessions {
        let pepper: KeyPepper = pepper.parse().unwrap();
        let args = ConsoleArgs {
            session_ttl: Duration::from_secs(60),
            console_secure_cookie: true,
            stream_high_water: 1,
        };
        Sessions::new(Some(&pepper), &args).unwrap()
    }

    fn identity() -> Authenticated {
        Authenticated {
            key_id: Uuid::now_v7(),
            prefix: "0123456789ab".into(),
            scopes: Scopes::parse_list("query").unwrap(),
        }
    }

    #[test]
    fn cookies_round_trip_expire_and_resist_forgery() {
        let s = sessions("session-test-pepper-0123456789abcdef");
        let who = identity();
        let now = Utc::now();
        let (value, expires_at) = s.issue(&who, now);
        let session = s.verify(&value, now).unwrap();
        assert_eq!(session.key_id, who.key_id);
        assert_eq!(session.prefix, who.prefix);
        assert_eq!(session.expires_at, expires_at);
        // Expired.
        assert_eq!(s.verify(&value, now + chrono::TimeDelta::seconds(61)), None);
        // Another pepper, another secret.
        let other = sessions("another-pepper-0123456789abcdef-xyz");
        assert_eq!(other.verify(&value, now), None);
        // Any bit flipped.
        let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 1;
            assert_eq!(s.verify(&URL_SAFE_NO_PAD.encode(&forged), now), None, "{i}");
        }
        assert_eq!(s.verify("", now), None);
        assert_eq!(s.verify("not base64 !", now), None);
        let header = s.set_cookie(&value, 60).unwrap();
        let header = header.to_str().unwrap();
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(header.contains(part), "{header}");
        }
    }

    #[test]
    fn cookie_headers_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; eventline_session=xyz".parse().unwrap(),
        );
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
