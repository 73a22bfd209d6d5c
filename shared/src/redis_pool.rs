//! The Redis connection pool: multiplexed connections from deadpool-redis,
//! each with a connect timeout and a response timeout, so a frozen Redis (one
//! that accepts connections and never answers) fails calls within
//! `REDIS_TIMEOUT_MS` instead of hanging them.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;

use crate::config::RedisArgs;

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("REDIS_URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("cannot build the Redis pool: {0}")]
    Build(#[from] deadpool_redis::BuildError),
    #[error("Redis at {url} does not answer: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Builds the pool and checks that Redis answers a `PING`.
pub async fn connect(args: &RedisArgs) -> Result<Pool, RedisSetupError> {
    connect_with_response_timeout(args, args.redis_timeout).await
}

/// Like [`connect`] with a different response timeout, for connections that
/// issue blocking commands (`XREADGROUP … BLOCK`) whose answers legitimately
/// take longer than ordinary calls.
pub async fn connect_with_response_timeout(
    args: &RedisArgs,
    response_timeout: Duration,
) -> Result<Pool, RedisSetupError> {
    let pool = build(args, response_timeout)?;
    ping(&pool)
        .await
        .map_err(|reason| RedisSetupError::Unreachable {
            url: args.redis_url.redacted(),
            reason,
        })?;
    Ok(pool)
}

/// Builds the pool without connecting: the first call connects.
pub fn build(args: &RedisArgs, response_timeout: Duration) -> Result<Pool, RedisSetupError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(args.redis_timeout))
        .set_response_timeout(Some(response_timeout));
    let manager = Manager::new_with_config(args.redis_url.expose(), connection)
        .map_err(RedisSetupError::Url)?;
    let pool = Pool::builder(manager)
        .max_size(args.redis_pool_size as usize)
        .wait_timeout(Some(args.redis_timeout))
        .create_timeout(Some(args.redis_timeout))
        .recycle_timeout(Some(args.redis_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// One `PING` through the pool; the error says why it failed.
pub async fn ping(pool: &Pool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
