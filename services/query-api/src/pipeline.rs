//! `GET /v1/pipeline`: the pipeline's state as the console's strip shows
//! it — each ingest shard's length, the workers' pending entries and lag,
//! whether the gateways are pushing back (a shard over `STREAM_HIGH_WATER`,
//! the gateways' own rule), and the dead letters waiting.
//!
//! Read from Redis at each request (one `XINFO STREAM` and `XINFO GROUPS`
//! per shard, one `XLEN`); it names no service, like `/health/detailed`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use eventline_shared::redis_keys::CONSUMER_GROUP;
use eventline_shared::stream_stats::{self, ShardStats};
use serde::Serialize;

use crate::app::Shared;
use crate::error::ApiError;
use crate::params::Params;

#[derive(Serialize)]
struct Pipeline {
    /// Entries not yet delivered to the workers, over all shards (`null`
    /// when Redis cannot tell).
    lag: Option<u64>,
    /// Entries delivered but not yet acknowledged, over all shards.
    pending: u64,
    /// The longest shard, which the gateways compare with the high-water mark.
    longest_stream: u64,
    stream_high_water: u64,
    /// Whether the gateways answer 429 now.
    backpressure: bool,
    dead_letters: u64,
    streams: Vec<ShardStats>,
    generated_at: String,
}

/// `GET /v1/pipeline`.
pub async fn pipeline(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(raw.as_deref())?.only(&[], false)?;
    let mut conn = state.redis.get().await.map_err(ApiError::from_redis)?;
    let mut streams = Vec::with_capacity(state.shards as usize);
    for shard in 0..state.shards {
        let stream = state.keys.stream(shard);
        streams.push(
            stream_stats::shard_stats(&mut conn, &stream, CONSUMER_GROUP)
                .await
                .map_err(ApiError::from_redis)?,
        );
    }
    drop(conn);
    let dead_letters = crate::dlq::length(&state).await?;
    let lag = streams
        .iter()
        .try_fold(0u64, |sum, s| s.lag.map(|lag| sum + lag));
    let longest_stream = streams.iter().map(|s| s.length).max().unwrap_or(0);
    let high_water = state.console.stream_high_water;
    Ok(Json(Pipeline {
        lag,
        pending: streams.iter().map(|s| s.pending).sum(),
        longest_stream,
        stream_high_water: high_water,
        backpressure: longest_stream > high_water,
        dead_letters,
        streams,
        generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .into_response())
}
