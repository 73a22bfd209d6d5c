//! Test helpers (feature `testkit`): every test gets its own PostgreSQL
//! database and its own Redis key prefix on the servers `make test` started
//! (`EVENTLINE_TEST_DATABASE_URL`, `EVENTLINE_TEST_REDIS_URL`), so tests run
//! in parallel without seeing each other. Databases are left behind: the
//! whole throwaway cluster is deleted when the test run ends.

pub mod cluster;
pub mod http;
pub mod python;
pub mod serve;
pub mod servers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use crate::api_key::{self, ApiKeyError, KeyPepper, Scopes};
use crate::config::{DatabaseArgs, LogFormat, RedisArgs, SecretUrl, TelemetryArgs};

/// The `KEY_PEPPER` of every test service (`--key-pepper`): the keys of
/// [`create_key`] authenticate against a service started with it.
pub const PEPPER: &str = "eventline-test-pepper-0123456789abcdef";

/// How often [`wait_until`] and [`poll`] try again.
const POLL_EVERY: Duration = Duration::from_millis(50);

fn env_or_explain(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, which starts \
             throwaway Redis and PostgreSQL servers and sets it"
        )
    })
}

/// A name no other test uses: `<prefix>_<random hex>`.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{prefix}_{:016x}", u64::from_le_bytes(bytes))
}

/// Logs to the test's output when `TEST_LOG` is set; silent otherwise.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = crate::telemetry::init(&TelemetryArgs {
            log_format: LogFormat::Pretty,
            log_filter: std::env::var("TEST_LOG").unwrap_or_else(|_| "debug".into()),
        });
    }
}

/// [`PEPPER`], parsed.
pub fn pepper() -> KeyPepper {
    PEPPER.parse().expect("the test pepper is long enough")
}

/// Stores a new key named `name` with `scopes` (`ingest,query`), hashed with
/// [`PEPPER`]; its plaintext.
pub async fn try_create_key(
    pool: &PgPool,
    name: &str,
    scopes: &str,
) -> Result<String, ApiKeyError> {
    let (_, key) = api_key::create(pool, &pepper(), name, Scopes::parse_list(scopes)?).await?;
    Ok(key)
}

/// [`try_create_key`] named `test`; panics when it fails. A service sees the
/// key after its next key reload.
pub async fn create_key(pool: &PgPool, scopes: &str) -> String {
    try_create_key(pool, "test", scopes)
        .await
        .expect("create key")
}

/// Calls `probe` every 50 ms until `done` holds for what it returns or
/// `timeout` has passed: `Ok` with the value that satisfied it, or `Err`
/// with the last one (for the test's failure message).
pub async fn poll<T, P, Fut, D>(timeout: Duration, mut probe: P, mut done: D) -> Result<T, T>
where
    P: FnMut() -> Fut,
    Fut: Future<Output = T>,
    D: FnMut(&T) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(value);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits until `check` holds, polling every 50 ms; false on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(timeout, check, |ok| *ok).await.is_ok()
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        crate::schema::migrate(&db.pool)
            .await
            .expect("migrations apply to a new database");
        db
    }

    /// A new database with nothing in it.
    pub async fn empty() -> Self {
        let admin_url = env_or_explain("EVENTLINE_TEST_DATABASE_URL");
        let name = unique_name("t");
        let admin = PgConnectOptions::from_str(&admin_url).expect("EVENTLINE_TEST_DATABASE_URL");
        let mut conn = sqlx::ConnectOptions::connect(&admin)
            .await
            .expect("connect to the test PostgreSQL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create the test database");
        let url = database_url(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(admin.database(&name))
            .await
            .expect("connect to the test database");
        TestDatabase { name, url, pool }
    }

    /// Configuration pointing at this database, as a service would parse it.
    pub fn args(&self) -> DatabaseArgs {
        DatabaseArgs {
            database_url: SecretUrl::for_tests(&self.url),
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(30),
        }
    }
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Redis configuration with a key prefix no other test uses.
pub fn redis_args() -> RedisArgs {
    RedisArgs {
        redis_url: SecretUrl::for_tests(&env_or_explain("EVENTLINE_TEST_REDIS_URL")),
        redis_pool_size: 4,
        redis_timeout: Duration::from_secs(2),
        redis_key_prefix: format!("{}:", unique_name("t")),
        redis_cluster_nodes: None,
        redis_min_replicas_ack: 0,
        redis_replica_ack_timeout: Duration::from_millis(500),
    }
}

/// [`redis_args`] for the Redis Cluster the harness started
/// (`EVENTLINE_TEST_REDIS_CLUSTER_NODES`, six nodes, three masters).
pub fn cluster_redis_args() -> RedisArgs {
    let nodes = env_or_explain("EVENTLINE_TEST_REDIS_CLUSTER_NODES");
    RedisArgs {
        redis_cluster_nodes: Some(
            crate::config::parse_cluster_nodes(&nodes)
                .expect("EVENTLINE_TEST_REDIS_CLUSTER_NODES lists cluster nodes"),
        ),
        ..redis_args()
    }
}

/// The `DEDUP_TTL_SECONDS` of test workers that do not set it.
pub const DEDUP_TTL_SECS: u64 = 600;

/// The claim hashes of `key` in the buckets around now, as a worker with
/// the default `DEDUP_TTL_SECONDS` looks them up: before, current, after.
pub fn claim_hashes(keys: &crate::redis_keys::RedisKeys, key: uuid::Uuid) -> [String; 3] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bucket = crate::redis_keys::claim_bucket(now, DEDUP_TTL_SECS);
    [bucket.saturating_sub(1), bucket, bucket + 1].map(|b| keys.claims(key, b))
}

/// The entry id holding `key`'s dedup claim, if any.
pub async fn claim_holder(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &crate::redis_keys::RedisKeys,
    key: uuid::Uuid,
) -> Option<String> {
    for hash in claim_hashes(keys, key) {
        let holder: Option<String> = redis::cmd("HGET")
            .arg(&hash)
            .arg(key.as_bytes())
            .query_async(conn)
            .await
            .expect("HGET a claim");
        if holder.is_some() {
            return holder;
        }
    }
    None
}

/// Makes entry `holder` hold `key`'s claim, as a worker's claim does.
pub async fn set_claim(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &crate::redis_keys::RedisKeys,
    key: uuid::Uuid,
    holder: &str,
) {
    let [_, current, _] = claim_hashes(keys, key);
    redis::cmd("HSET")
        .arg(&current)
        .arg(key.as_bytes())
        .arg(holder)
        .query_async::<()>(conn)
        .await
        .expect("HSET a claim");
}

/// Deletes `key`'s claim wherever it is, as its expiry would.
pub async fn expire_claim(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &crate::redis_keys::RedisKeys,
    key: uuid::Uuid,
) {
    for hash in claim_hashes(keys, key) {
        redis::cmd("HDEL")
            .arg(&hash)
            .arg(key.as_bytes())
            .query_async::<()>(conn)
            .await
            .expect("HDEL a claim");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database() {
        assert_eq!(
            super::database_url("postgres://u@h:1/postgres", "t_x"),
            "postgres://u@h:1/t_x"
        );
        assert_eq!(
            super::database_url("postgres://u@h:1/postgres?sslmode=disable", "t_x"),
            "postgres://u@h:1/t_x?sslmode=disable"
        );
        assert_eq!(
            super::database_url("postgres://u@h:1", "t_x"),
            "postgres://u@h:1/t_x"
        );
    }
}
