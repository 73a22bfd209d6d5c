//! API-key checks from memory. The whole (small) table of live keys is
//! loaded at start-up and reloaded every `KEY_CACHE_TTL`, so a request never
//! waits on PostgreSQL, and PostgreSQL being down does not stop ingest: the
//! last snapshot stays in force. A new or revoked key takes effect within one
//! reload.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::api_key::{Authenticated, KeyPepper, Scopes, hash_key, key_prefix};
use crate::config::{AuthArgs, MissingPepper};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    MissingPepper(#[from] MissingPepper),
    #[error("cannot load API keys from PostgreSQL: {0}")]
    Load(#[source] sqlx::Error),
}

/// The key a request presents: `Authorization: Bearer <key>` or `X-API-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

struct Entry {
    hash: [u8; 32],
    identity: Arc<Authenticated>,
}

pub struct KeyStore {
    pool: PgPool,
    pepper: KeyPepper,
    snapshot: RwLock<Arc<HashMap<String, Entry>>>,
}

impl KeyStore {
    /// The key store of a service that checks keys, running: the live keys
    /// loaded from `pool` with `auth`'s pepper, then reloaded every
    /// `KEY_CACHE_TTL_SECONDS` by a task on `tasks` until `shutdown`. What
    /// the gateway and the query-api call when `AUTH_REQUIRED` is on.
    pub async fn start(
        pool: PgPool,
        auth: &AuthArgs,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Self>, KeyStoreError> {
        let pepper = auth.key_pepper.clone().ok_or(MissingPepper)?;
        let store = Arc::new(
            Self::load(pool, pepper)
                .await
                .map_err(KeyStoreError::Load)?,
        );
        tasks.spawn(store.clone().run(auth.key_cache_ttl, shutdown.clone()));
        Ok(store)
    }

    /// Loads the live keys; fails when PostgreSQL cannot be read, since a
    /// gateway that knows no key would refuse every request.
    pub async fn load(pool: PgPool, pepper: KeyPepper) -> Result<Self, sqlx::Error> {
        let store = Self {
            pool,
            pepper,
            snapshot: RwLock::new(Arc::new(HashMap::new())),
        };
        store.reload().await?;
        Ok(store)
    }

    /// Replaces the snapshot with the table's live keys.
    pub async fn reload(&self) -> Result<usize, sqlx::Error> {
        let rows: Vec<(Uuid, String, Vec<u8>, Vec<String>)> = sqlx::query_as(
            "SELECT id, prefix, key_hash, scopes FROM api_keys WHERE revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for (key_id, prefix, hash, scopes) in rows {
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            let mut set = Scopes::default();
            for s in scopes {
                if let Ok(scope) = s.parse() {
                    set.insert(scope);
                }
            }
            let identity = Arc::new(Authenticated {
                key_id,
                prefix: prefix.clone(),
                scopes: set,
            });
            map.insert(prefix, Entry { hash, identity });
        }
        let count = map.len();
        match self.snapshot.write() {
            Ok(mut guard) => *guard = Arc::new(map),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(map),
        }
        Ok(count)
    }

    fn current(&self) -> Arc<HashMap<String, Entry>> {
        match self.snapshot.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The identity behind a presented key, or `None` when it is malformed,
    /// unknown, revoked or does not match its hash.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<Authenticated>> {
        let prefix = key_prefix(presented)?;
        let snapshot = self.current();
        let entry = snapshot.get(prefix)?;
        let hash = hash_key(&self.pepper, presented);
        bool::from(hash.ct_eq(&entry.hash)).then(|| Arc::clone(&entry.identity))
    }

    /// The identity of a live key by its public prefix and id, for a
    /// credential that stands for a key already checked (the query-api's
    /// session cookie): `None` once the key is revoked or gone.
    pub fn live(&self, prefix: &str, key_id: Uuid) -> Option<Arc<Authenticated>> {
        let snapshot = self.current();
        let entry = snapshot.get(prefix)?;
        (entry.identity.key_id == key_id).then(|| Arc::clone(&entry.identity))
    }

    /// Reloads every `interval` until `shutdown`; a failed reload keeps the
    /// previous snapshot and is logged.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "cannot reload API keys; keeping the previous set");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_presented_key() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", " k1 ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, "Bearer k2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, "bearer k3".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k3"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }
}
