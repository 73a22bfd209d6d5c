//! A service started in this process the way its `main` starts it: its
//! command line parsed, a listener bound on a free port of 127.0.0.1, and its
//! `run` spawned until the test cancels it.

use std::ffi::OsString;
use std::fmt::Debug;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RedisArgs;

/// A service running in this process.
pub struct Served {
    /// Where its listener is bound.
    pub addr: SocketAddr,
    /// Ends when `run` returns; panics (so awaiting it fails) when `run`
    /// returned an error.
    pub task: JoinHandle<()>,
}

/// Parses `argv` (the program name first) as the service's command line;
/// panics when it does not parse.
pub fn parse_args<C, I, T>(argv: I) -> C
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    C::try_parse_from(argv).expect("test arguments parse")
}

/// The command line of `program` (the gateway or the query-api) on `redis`
/// (its key prefix, cluster nodes and replica acks included) and the database at
/// `database_url`, with keys hashed with the test [`PEPPER`](super::PEPPER)
/// reloaded every second, and a 2 s shutdown grace.
pub fn keyed_service_args(program: &str, redis: &RedisArgs, database_url: &str) -> Vec<String> {
    let (redis_flag, redis_value) = match redis.cluster_nodes() {
        Some(nodes) => ("--redis-cluster-nodes", nodes.expose()),
        None => ("--redis-url", redis.redis_url.expose().to_owned()),
    };
    [
        program,
        redis_flag,
        &redis_value,
        "--redis-key-prefix",
        &redis.redis_key_prefix,
        "--database-url",
        database_url,
        "--key-pepper",
        super::PEPPER,
        "--key-cache-ttl",
        "1",
        "--shutdown-grace",
        "2",
    ]
    .map(str::to_owned)
    .to_vec()
    .into_iter()
    .chain(
        (redis.redis_min_replicas_ack > 0)
            .then(|| {
                [
                    "--redis-min-replicas-ack".to_owned(),
                    redis.redis_min_replicas_ack.to_string(),
                ]
            })
            .into_iter()
            .flatten(),
    )
    .collect()
}

/// Binds a listener and spawns `run(service, listener, shutdown)`.
pub async fn serve<S, F, Fut, E>(service: S, run: F, shutdown: CancellationToken) -> Served
where
    F: FnOnce(S, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Debug + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let name = std::any::type_name::<F>();
    let running = run(service, listener, shutdown);
    let task = tokio::spawn(async move {
        if let Err(e) = running.await {
            panic!("{name} failed: {e:?}");
        }
    });
    Served { addr, task }
}

/// [`serve`] with the configuration parsed from `argv` ([`parse_args`]).
pub async fn serve_args<C, I, T, F, Fut, E>(argv: I, run: F, shutdown: CancellationToken) -> Served
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Debug + Send + 'static,
{
    serve(parse_args(argv), run, shutdown).await
}
