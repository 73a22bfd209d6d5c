//! API keys: `evl_<prefix>_<secret>`, where the prefix (12 hex characters) is
//! public and finds the row, and the secret is 256 random bits. Only the
//! HMAC-SHA256 of the whole key under a server-side pepper (`KEY_PEPPER`) is
//! stored, so a leaked table is useless without the pepper; hashes are
//! compared in constant time. Keys are never logged.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

const KEY_TAG: &str = "evl_";
const PREFIX_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;
/// Shortest pepper accepted: it is an HMAC key, so it needs real entropy.
pub const MIN_PEPPER_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("unknown scope {0:?}; scopes are ingest, query and admin")]
    UnknownScope(String),
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("the key name must be 1 to 200 characters")]
    BadName,
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Ingest,
    Query,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Query, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = ApiKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ingest" => Ok(Scope::Ingest),
            "query" => Ok(Scope::Query),
            "admin" => Ok(Scope::Admin),
            other => Err(ApiKeyError::UnknownScope(other.to_owned())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

impl Scopes {
    fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Ingest => 1,
            Scope::Query => 2,
            Scope::Admin => 4,
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= Self::bit(scope);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses `ingest,query,admin`.
    pub fn parse_list(list: &str) -> Result<Self, ApiKeyError> {
        let mut scopes = Scopes::default();
        for part in list.split(',').filter(|p| !p.trim().is_empty()) {
            scopes.insert(part.parse()?);
        }
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScopes);
        }
        Ok(scopes)
    }

    fn to_strings(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// From the database column; unknown names (from a newer version) are skipped.
    fn from_strings(names: &[String]) -> Self {
        let mut scopes = Scopes::default();
        for name in names {
            if let Ok(scope) = name.parse() {
                scopes.insert(scope);
            }
        }
        scopes
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// The server-side secret keys are hashed with. Never printed.
#[derive(Clone)]
pub struct KeyPepper(Vec<u8>);

impl KeyPepper {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPepper(***)")
    }
}

impl FromStr for KeyPepper {
    type Err = String;

    /// For clap: at least [`MIN_PEPPER_LEN`] bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < MIN_PEPPER_LEN {
            return Err(format!(
                "the pepper must be at least {MIN_PEPPER_LEN} bytes (try `openssl rand -hex 32`)"
            ));
        }
        Ok(KeyPepper(s.as_bytes().to_vec()))
    }
}

/// The keyed hash of a presented key.
pub fn hash_key(pepper: &KeyPepper, key: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(pepper.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(key.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The public prefix of a well-formed key, or `None` for anything else.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_TAG)?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == PREFIX_BYTES * 2
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(prefix)
}

/// A new key: the plaintext (shown once) and what is stored.
pub struct GeneratedKey {
    pub plaintext: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub fn generate(pepper: &KeyPepper) -> Result<GeneratedKey, ApiKeyError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut prefix).map_err(ApiKeyError::Random)?;
    getrandom::fill(&mut secret).map_err(ApiKeyError::Random)?;
    let prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
    let plaintext = format!("{KEY_TAG}{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_key(pepper, &plaintext);
    Ok(GeneratedKey {
        plaintext,
        prefix,
        hash,
    })
}

/// A stored key as operators see it (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

type RecordRow = (
    Uuid,
    String,
    String,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

impl From<RecordRow> for ApiKeyRecord {
    fn from(row: RecordRow) -> Self {
        let (id, name, prefix, scopes, created_at, revoked_at, last_used_at) = row;
        ApiKeyRecord {
            id,
            name,
            prefix,
            scopes: Scopes::from_strings(&scopes),
            created_at,
            revoked_at,
            last_used_at,
        }
    }
}

const RECORD_COLUMNS: &str = "id, name, prefix, scopes, created_at, revoked_at, last_used_at";

/// Creates and stores a key; returns its record and the plaintext, which
/// exists nowhere else from then on.
pub async fn create(
    pool: &PgPool,
    pepper: &KeyPepper,
    name: &str,
    scopes: Scopes,
) -> Result<(ApiKeyRecord, String), ApiKeyError> {
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiKeyError::BadName);
    }
    if scopes.is_empty() {
        return Err(ApiKeyError::NoScopes);
    }
    let key = generate(pepper)?;
    let row: RecordRow = sqlx::query_as(
        "INSERT INTO api_keys (id, name, prefix, key_hash, scopes)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, prefix, scopes, created_at, revoked_at, last_used_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(scopes.to_strings())
    .fetch_one(pool)
    .await?;
    Ok((row.into(), key.plaintext))
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
    let rows: Vec<RecordRow> = sqlx::query_as(const_format_list()).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

fn const_format_list() -> &'static str {
    // Kept beside RECORD_COLUMNS so the two cannot drift.
    debug_assert!(RECORD_COLUMNS.starts_with("id, name"));
    "SELECT id, name, prefix, scopes, created_at, revoked_at, last_used_at
       FROM api_keys ORDER BY created_at DESC, id DESC"
}

/// Revokes the key with this id or prefix; `None` when there is no such key.
/// Revoking twice keeps the first revocation time.
pub async fn revoke(
    pool: &PgPool,
    id_or_prefix: &str,
) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
    let id = Uuid::parse_str(id_or_prefix).ok();
    let row: Option<RecordRow> = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
          WHERE id = $1 OR prefix = $2
         RETURNING id, name, prefix, scopes, created_at, revoked_at, last_used_at",
    )
    .bind(id)
    .bind(id_or_prefix)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// A key that checked out: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub key_id: Uuid,
    pub prefix: String,
    pub scopes: Scopes,
}

/// Looks a presented key up: `Some` only for a well-formed, known,
/// unrevoked key whose hash matches.
pub async fn authenticate(
    pool: &PgPool,
    pepper: &KeyPepper,
    presented: &str,
) -> Result<Option<Authenticated>, ApiKeyError> {
    let Some(prefix) = key_prefix(presented) else {
        return Ok(None);
    };
    let row: Option<(Uuid, Vec<u8>, Vec<String>)> = sqlx::query_as(
        "SELECT id, key_hash, scopes FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    let Some((key_id, stored, scopes)) = row else {
        return Ok(None);
    };
    let presented_hash = hash_key(pepper, presented);
    if !bool::from(presented_hash.as_slice().ct_eq(stored.as_slice())) {
        return Ok(None);
    }
    Ok(Some(Authenticated {
        key_id,
        prefix: prefix.to_owned(),
        scopes: Scopes::from_strings(&scopes),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper() -> KeyPepper {
        "0123456789abcdef0123456789abcdef".parse().unwrap()
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate(&pepper()).unwrap();
        let b = generate(&pepper()).unwrap();
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(key_prefix(&a.plaintext), Some(a.prefix.as_str()));
        assert_eq!(a.plaintext.len(), 4 + 12 + 1 + 43);
        assert_eq!(hash_key(&pepper(), &a.plaintext), a.hash);
        let other: KeyPepper = "another pepper that is long enough!!".parse().unwrap();
        assert_ne!(hash_key(&other, &a.plaintext), a.hash);
        assert!(!format!("{a:?}").contains(&a.plaintext));
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "",
            "evl_",
            "evl_abc_def",
            "xyz_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "evl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "evl_0123456789ag_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "evl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(key_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse_list("ingest, admin").unwrap();
        assert!(s.contains(Scope::Ingest) && s.contains(Scope::Admin));
        assert!(!s.contains(Scope::Query));
        assert_eq!(s.to_string(), "ingest,admin");
        assert!(matches!(Scopes::parse_list(""), Err(ApiKeyError::NoScopes)));
        assert!(matches!(
            Scopes::parse_list("ingest,root"),
            Err(ApiKeyError::UnknownScope(_))
        ));
        assert!("short".parse::<KeyPepper>().is_err());
        assert_eq!(format!("{:?}", pepper()), "KeyPepper(***)");
    }
}
