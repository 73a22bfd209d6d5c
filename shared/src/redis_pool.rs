//! Redis connections, to one server or to a Redis Cluster, chosen by
//! configuration (`REDIS_URL` or `REDIS_CLUSTER_NODES`, ADR 0060).
//!
//! - One server: a deadpool-redis pool of multiplexed connections.
//! - A cluster: redis-rs's async cluster client, one multiplexed connection
//!   per node, which follows `MOVED`/`ASK` and refreshes its slot map.
//!
//! Either way every connection has a connect timeout and a response timeout,
//! so a frozen Redis (one that accepts connections and never answers) fails
//! calls within `REDIS_TIMEOUT_MS` instead of hanging them. Callers get a
//! [`RedisConn`], which runs commands, pipelines and scripts the same way on
//! both; what a cluster adds is the rule that one command, pipeline or script
//! stays within one hash slot ([`Redis::slot`] groups work by slot).
//!
//! Start-up checks ([`Redis::connect`]) turn the mistakes an operator makes
//! into one line naming the problem ([`RedisSetupError`], exit 64): nodes
//! that do not answer, a cluster whose slots are not all served, a
//! `REDIS_URL` pointed at a cluster node, or cluster nodes that are not one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, Value,
};

use crate::config::{ClusterNodes, RedisArgs};
use crate::redis_keys::{CLUSTER_SLOTS, key_slot};

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("REDIS_URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("REDIS_CLUSTER_NODES: {0}")]
    ClusterNodes(#[source] redis::RedisError),
    #[error("cannot build the Redis pool: {0}")]
    Build(#[from] deadpool_redis::BuildError),
    #[error("{what} does not answer: {reason}")]
    Unreachable { what: String, reason: String },
    #[error(
        "REDIS_URL {url} is a Redis Cluster node; list the cluster's nodes in REDIS_CLUSTER_NODES instead"
    )]
    ClusterNodeAsSingle { url: String },
    #[error("REDIS_CLUSTER_NODES {nodes}: not a Redis Cluster ({reason})")]
    NotACluster { nodes: String, reason: String },
    #[error(
        "the Redis Cluster at {nodes} does not serve every slot (cluster_state:{state}, {assigned} of 16384 slots assigned, {failing} failing)"
    )]
    UncoveredSlots {
        nodes: String,
        state: String,
        assigned: u32,
        failing: u32,
    },
}

impl RedisSetupError {
    /// Whether the error is the configuration's (exit 64): every kind is,
    /// a Redis that does not answer at start included (its address is
    /// configuration too).
    pub fn is_configuration(&self) -> bool {
        !matches!(self, RedisSetupError::Build(_))
    }
}

/// A handle to Redis: cheap to clone, shared by a process's tasks.
#[derive(Clone)]
pub enum Redis {
    Single(Pool),
    Cluster {
        client: Arc<ClusterClient>,
        /// Shared by ordinary calls; blocking reads open their own
        /// ([`Redis::own_connection`]).
        conn: Arc<HealingCluster>,
    },
}

/// A cluster connection that is replaced when it stops answering.
///
/// redis-rs's async `ClusterConnection` (1.8.1, 1.8.2 and 2.0.0-rc.2 alike)
/// can stop for good when a master dies while many requests are in flight
/// on it (the worker's claims: a pipeline per claim group, dozens at once):
/// its slot refresh never completes, every call times out, long after the
/// cluster is whole again, while a new connection from the same client
/// answers at once. It also keeps sending a frozen master's slots to it
/// (a response timeout does not refresh its slot map) after the master's
/// replica has taken over, until the old master answers again. So a
/// connection that has not answered for [`HealingCluster::stuck_after`]
/// while calls failed is rebuilt in the background (a try per response
/// timeout until one succeeds: a cluster that is failing over refuses new
/// connections until its slots are served again), and callers get the new
/// one from then on.
pub struct HealingCluster {
    client: Arc<ClusterClient>,
    current: RwLock<ClusterConnection>,
    /// No answer for this long while calls fail: rebuild.
    stuck_after: Duration,
    /// Between two tries to rebuild.
    retry_every: Duration,
    /// When it was made: what [`Self::last_answer_ms`] counts from.
    born: Instant,
    /// Milliseconds from `born` to the last answer: an atomic, so a call
    /// that is answered (nearly all) takes no lock.
    last_answer_ms: AtomicU64,
    health: Mutex<Health>,
}

/// The rebuild's state, touched only after a failed call.
struct Health {
    last_rebuild: Instant,
    rebuilding: bool,
}

impl HealingCluster {
    fn new(
        client: Arc<ClusterClient>,
        conn: ClusterConnection,
        response_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        HealingCluster {
            client,
            current: RwLock::new(conn),
            stuck_after: 2 * response_timeout,
            retry_every: response_timeout,
            born: now,
            last_answer_ms: AtomicU64::new(0),
            health: Mutex::new(Health {
                last_rebuild: now,
                rebuilding: false,
            }),
        }
    }

    fn answered_now(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_answer_ms.store(ms, Ordering::Relaxed);
    }

    fn connection(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends `cmd` to every master; the answer maps each master's address
    /// to its reply.
    async fn to_all_masters(self: &Arc<Self>, cmd: redis::Cmd) -> RedisResult<Value> {
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let reply = self.connection().route_command(cmd, routing).await;
        self.observe(&reply);
        reply
    }

    /// Notes a call's outcome; after a failure, starts a rebuild when the
    /// connection looks stuck.
    fn observe<T>(self: &Arc<Self>, result: &RedisResult<T>) {
        let answered = match result {
            Ok(_) => true,
            // The server answered (an error reply), or the failure is not
            // the connection's.
            Err(e) => !(e.is_timeout() || e.is_io_error() || e.is_connection_dropped()),
        };
        if answered {
            self.answered_now();
            return;
        }
        let last_answer =
            self.born + Duration::from_millis(self.last_answer_ms.load(Ordering::Relaxed));
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if health.rebuilding
            || now.saturating_duration_since(last_answer) < self.stuck_after
            || now - health.last_rebuild < self.retry_every
        {
            return;
        }
        health.rebuilding = true;
        health.last_rebuild = now;
        drop(health);
        let this = self.clone();
        tokio::spawn(async move {
            let built =
                tokio::time::timeout(this.stuck_after * 2, this.client.get_async_connection())
                    .await;
            let mut health = this
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            health.rebuilding = false;
            match built {
                Ok(Ok(conn)) => {
                    tracing::warn!("the Redis Cluster connection stopped answering; replaced it");
                    *this
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
                    this.answered_now();
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot replace the stuck Redis Cluster connection yet")
                }
                Err(_) => tracing::warn!(
                    "cannot replace the stuck Redis Cluster connection yet: timed out"
                ),
            }
        });
    }
}

impl Redis {
    /// Connects and checks the deployment (see the module's start-up checks).
    pub async fn connect(args: &RedisArgs) -> Result<Self, RedisSetupError> {
        Self::connect_with_response_timeout(args, args.redis_timeout).await
    }

    /// Like [`Self::connect`] with a different response timeout, for
    /// connections that issue blocking commands (`XREADGROUP … BLOCK`) whose
    /// answers legitimately take longer than ordinary calls.
    pub async fn connect_with_response_timeout(
        args: &RedisArgs,
        response_timeout: Duration,
    ) -> Result<Self, RedisSetupError> {
        let unreachable = |reason: String| RedisSetupError::Unreachable {
            what: args.describe(),
            reason,
        };
        match args.cluster_nodes() {
            None => {
                let pool = build(args, response_timeout)?;
                let redis = Redis::Single(pool);
                redis.ping().await.map_err(unreachable)?;
                if redis.is_cluster_node().await.map_err(unreachable)? {
                    return Err(RedisSetupError::ClusterNodeAsSingle {
                        url: args.redis_url.redacted(),
                    });
                }
                Ok(redis)
            }
            Some(nodes) => {
                let client = cluster_client(args, response_timeout)?;
                let conn = match client.get_async_connection().await {
                    Ok(conn) => conn,
                    Err(e) => return Err(diagnose_seeds(args, nodes, e.to_string()).await),
                };
                let client = Arc::new(client);
                let redis = Redis::Cluster {
                    conn: Arc::new(HealingCluster::new(client.clone(), conn, response_timeout)),
                    client,
                };
                // A node that answers but serves no slot leaves the client
                // no connection to send `CLUSTER INFO` on: ask it directly.
                let info = match redis.cluster_info().await {
                    Ok(info) => info,
                    Err(e) => return Err(diagnose_seeds(args, nodes, e).await),
                };
                if !info.covers_every_slot() {
                    return Err(RedisSetupError::UncoveredSlots {
                        nodes: nodes.to_string(),
                        state: info.state,
                        assigned: info.slots_assigned,
                        failing: info.slots_fail,
                    });
                }
                Ok(redis)
            }
        }
    }

    /// A single server must not be a cluster node: it would refuse every
    /// key of a slot it does not serve with `MOVED`.
    async fn is_cluster_node(&self) -> Result<bool, String> {
        let mut conn = self.get().await.map_err(|e| e.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(info_field(&info, "cluster_enabled") == Some("1"))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster { .. })
    }

    /// The slot `key` must share with every other key of one command,
    /// pipeline or script: its hash slot on a cluster, 0 on one server (where
    /// anything goes together). Group work by it.
    pub fn slot(&self, key: &[u8]) -> u16 {
        if self.is_cluster() { key_slot(key) } else { 0 }
    }

    /// A connection for ordinary calls. It is multiplexed: clones share it,
    /// and concurrent calls on them are pipelined on its socket.
    pub async fn get(&self) -> RedisResult<RedisConn> {
        match self {
            Redis::Single(pool) => {
                let pooled = pool.get().await.map_err(pool_error)?;
                Ok(RedisConn::Multiplexed(MultiplexedConnection::clone(
                    &pooled,
                )))
            }
            Redis::Cluster { conn, .. } => Ok(RedisConn::Cluster(conn.clone())),
        }
    }

    /// A connection nobody else uses while it is held, for blocking reads
    /// (`XREADGROUP … BLOCK` on a shared one would stall every other call
    /// behind it): one of the pool's (size the pool to the readers), or a
    /// new cluster connection.
    pub async fn own_connection(&self) -> RedisResult<RedisConn> {
        match self {
            Redis::Single(pool) => Ok(RedisConn::Pooled(pool.get().await.map_err(pool_error)?)),
            Redis::Cluster { client, conn } => {
                let own = client.get_async_connection().await?;
                Ok(RedisConn::Cluster(Arc::new(HealingCluster::new(
                    client.clone(),
                    own,
                    conn.retry_every,
                ))))
            }
        }
    }

    /// A plain connection of its own to the server that holds `key` (on a
    /// cluster, the master serving its slot now, found with `CLUSTER
    /// SLOTS`; credentials from the first seed node), whose answers may
    /// take `response_timeout`: for a blocking read of that one key. It does
    /// not follow the slot: after a failover its calls fail with `MOVED` or
    /// an I/O error, and the caller opens a new one.
    pub async fn connection_for_key(
        &self,
        args: &RedisArgs,
        key: &[u8],
        response_timeout: Duration,
    ) -> RedisResult<RedisConn> {
        let info = match self {
            Redis::Single(_) => args.redis_url.expose().into_connection_info()?,
            Redis::Cluster { .. } => {
                let mut conn = self.get().await?;
                let slots: Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await?;
                let (host, port) = master_of_slot(&slots, key_slot(key)).ok_or_else(|| {
                    redis::RedisError::from(std::io::Error::other(
                        "CLUSTER SLOTS names no master for the key's slot",
                    ))
                })?;
                let seed = args
                    .cluster_nodes()
                    .and_then(|nodes| nodes.urls().next())
                    .unwrap_or("redis://127.0.0.1");
                seed.into_connection_info()?
                    .set_addr(ConnectionAddr::Tcp(host, port))
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(args.redis_timeout))
            .set_response_timeout(Some(response_timeout));
        redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map(RedisConn::Multiplexed)
    }

    /// One `PING` (on a cluster: to every master, and the cluster's state);
    /// the error says why it failed.
    pub async fn ping(&self) -> Result<(), String> {
        match self {
            Redis::Single(_) => {
                let mut conn = self.get().await.map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Redis::Cluster { .. } => {
                let masters = self.masters().await?;
                let down: Vec<String> = masters
                    .iter()
                    .filter(|m| !m.ok)
                    .map(|m| format!("{}: {}", m.address, m.error.as_deref().unwrap_or("down")))
                    .collect();
                if !down.is_empty() {
                    return Err(format!("masters not answering: {}", down.join("; ")));
                }
                let info = self.cluster_info().await?;
                if !info.covers_every_slot() {
                    return Err(format!(
                        "cluster_state:{} with {} of {CLUSTER_SLOTS} slots assigned, {} failing",
                        info.state, info.slots_assigned, info.slots_fail
                    ));
                }
                Ok(())
            }
        }
    }

    /// `CLUSTER INFO` from any node.
    async fn cluster_info(&self) -> Result<ClusterInfo, String> {
        let mut conn = self.get().await.map_err(|e| e.to_string())?;
        let text: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ClusterInfo::parse(&text))
    }

    /// The fewest replicas any master has connected (`INFO replication`'s
    /// `connected_slaves`; on one server, its own).
    pub async fn fewest_replicas(&self) -> Result<u32, String> {
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let replies: Vec<Value> = match self {
            Redis::Single(_) => {
                let mut conn = self.get().await.map_err(|e| e.to_string())?;
                vec![
                    info.query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?,
                ]
            }
            Redis::Cluster { conn, .. } => match conn.to_all_masters(info).await {
                Ok(Value::Map(answers)) => answers.into_iter().map(|(_, v)| v).collect(),
                Ok(other) => vec![other],
                Err(e) => return Err(e.to_string()),
            },
        };
        replies
            .iter()
            .map(|reply| {
                let text: String = redis::from_redis_value_ref(reply).map_err(|e| e.to_string())?;
                info_field(&text, "connected_slaves")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| "INFO replication has no connected_slaves".to_owned())
            })
            .try_fold(u32::MAX, |fewest, n| n.map(|n: u32| fewest.min(n)))
    }

    /// Each master's answer to `PING` (empty on one server).
    pub async fn masters(&self) -> Result<Vec<MasterStatus>, String> {
        let Redis::Cluster { conn: healing, .. } = self else {
            return Ok(Vec::new());
        };
        let reply = healing
            .to_all_masters(redis::cmd("PING"))
            .await
            .map_err(|e| e.to_string())?;
        let Value::Map(answers) = reply else {
            return Err(format!("PING to every master answered {reply:?}"));
        };
        let mut masters: Vec<MasterStatus> = answers
            .into_iter()
            .map(|(address, answer)| {
                let address = match address {
                    Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    Value::SimpleString(s) => s,
                    other => format!("{other:?}"),
                };
                let error = match answer {
                    Value::ServerError(e) => Some(format!("{e:?}")),
                    _ => None,
                };
                MasterStatus {
                    address,
                    ok: error.is_none(),
                    error,
                }
            })
            .collect();
        masters.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(masters)
    }
}

/// Why the cluster client could not connect, asking each seed node on a
/// connection of its own what it is: one with cluster support disabled is
/// [`RedisSetupError::NotACluster`], one whose cluster does not serve every
/// slot (a node never joined to a cluster serves none, and the client then
/// finds no connection at all) [`RedisSetupError::UncoveredSlots`]; when no
/// seed answers, [`RedisSetupError::Unreachable`] with the client's error.
async fn diagnose_seeds(args: &RedisArgs, nodes: &ClusterNodes, error: String) -> RedisSetupError {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(args.redis_timeout))
        .set_response_timeout(Some(args.redis_timeout));
    for url in nodes.urls() {
        let Ok(client) = redis::Client::open(url) else {
            continue;
        };
        let Ok(mut conn) = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        else {
            continue;
        };
        let Ok(info) = redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
        else {
            continue;
        };
        if info_field(&info, "cluster_enabled") != Some("1") {
            return RedisSetupError::NotACluster {
                nodes: nodes.to_string(),
                reason: "cluster support disabled (cluster_enabled:0)".into(),
            };
        }
        let Ok(text) = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut conn)
            .await
        else {
            continue;
        };
        let info = ClusterInfo::parse(&text);
        if !info.covers_every_slot() {
            return RedisSetupError::UncoveredSlots {
                nodes: nodes.to_string(),
                state: info.state,
                assigned: info.slots_assigned,
                failing: info.slots_fail,
            };
        }
    }
    if error.contains("cluster support disabled") {
        RedisSetupError::NotACluster {
            nodes: nodes.to_string(),
            reason: error,
        }
    } else {
        RedisSetupError::Unreachable {
            what: args.describe(),
            reason: error,
        }
    }
}

/// The master's address in a `CLUSTER SLOTS` reply for `slot`: each
/// element is `[first, last, [host, port, id, …], replicas…]`.
fn master_of_slot(reply: &Value, slot: u16) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    ranges.iter().find_map(|range| {
        let Value::Array(parts) = range else {
            return None;
        };
        let (first, last) = (int(parts.first()?)?, int(parts.get(1)?)?);
        if !(first..=last).contains(&i64::from(slot)) {
            return None;
        }
        let Value::Array(master) = parts.get(2)? else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        Some((host, u16::try_from(int(master.get(1)?)?).ok()?))
    })
}

/// One master's health, for `/health/detailed`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MasterStatus {
    pub address: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `CLUSTER INFO` says of slot coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterInfo {
    state: String,
    slots_assigned: u32,
    slots_fail: u32,
}

impl ClusterInfo {
    fn parse(text: &str) -> Self {
        let number = |field| {
            info_field(text, field)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        ClusterInfo {
            state: info_field(text, "cluster_state")
                .unwrap_or("unknown")
                .to_owned(),
            slots_assigned: number("cluster_slots_assigned"),
            slots_fail: number("cluster_slots_fail"),
        }
    }

    fn covers_every_slot(&self) -> bool {
        self.state == "ok" && self.slots_assigned == u32::from(CLUSTER_SLOTS)
    }
}

/// The value of `field` in an `INFO`-style `field:value` text.
fn info_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn pool_error(e: deadpool_redis::PoolError) -> redis::RedisError {
    match e {
        deadpool_redis::PoolError::Backend(e) => e,
        other => redis::RedisError::from(std::io::Error::other(other.to_string())),
    }
}

/// Builds the single-server pool without connecting: the first call connects.
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

/// The cluster client: the seed nodes, the timeouts, and few retries (a
/// failover takes seconds; callers retry with their own backoff).
fn cluster_client(
    args: &RedisArgs,
    response_timeout: Duration,
) -> Result<ClusterClient, RedisSetupError> {
    let nodes: Vec<&str> = args
        .cluster_nodes()
        .into_iter()
        .flat_map(|nodes| nodes.urls())
        .collect();
    ClusterClientBuilder::new(nodes)
        .connection_timeout(args.redis_timeout)
        .response_timeout(response_timeout)
        .retries(2)
        .build()
        .map_err(RedisSetupError::ClusterNodes)
}

/// A connection from [`Redis`]: commands, pipelines and scripts run on it
/// alike on one server and on a cluster.
pub enum RedisConn {
    /// Held from the pool until dropped: nobody else uses it meanwhile.
    Pooled(deadpool_redis::Connection),
    Multiplexed(MultiplexedConnection),
    /// Reconnects by itself (the gateway's publishing connections).
    Managed(ConnectionManager),
    /// Replaced when it stops answering ([`HealingCluster`]).
    Cluster(Arc<HealingCluster>),
}

/// A clone shares the connection (all of them are multiplexed): cloning a
/// pooled one gives a handle that no longer holds it.
impl Clone for RedisConn {
    fn clone(&self) -> Self {
        match self {
            RedisConn::Pooled(c) => RedisConn::Multiplexed(MultiplexedConnection::clone(c)),
            RedisConn::Multiplexed(c) => RedisConn::Multiplexed(c.clone()),
            RedisConn::Managed(c) => RedisConn::Managed(c.clone()),
            RedisConn::Cluster(c) => RedisConn::Cluster(c.clone()),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Pooled(c) => c.req_packed_command(cmd),
            RedisConn::Multiplexed(c) => c.req_packed_command(cmd),
            RedisConn::Managed(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => {
                let healing = c.clone();
                Box::pin(async move {
                    let result = healing.connection().req_packed_command(cmd).await;
                    healing.observe(&result);
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => {
                let healing = c.clone();
                Box::pin(async move {
                    let result = healing
                        .connection()
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                    healing.observe(&result);
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Pooled(c) => c.get_db(),
            RedisConn::Multiplexed(c) => c.get_db(),
            RedisConn::Managed(c) => c.get_db(),
            RedisConn::Cluster(c) => c.connection().get_db(),
        }
    }
}

/// Runs `pipelines` concurrently on clones of `conn` (on one server they
/// share its socket, back to back; on a cluster each goes to its slot's
/// master) and answers each one's replies, in order. Each pipeline must
/// stay within one slot ([`Redis::slot`]).
pub async fn query_each<T: redis::FromRedisValue>(
    conn: &RedisConn,
    pipelines: &[Pipeline],
) -> RedisResult<Vec<T>> {
    futures_util::future::try_join_all(pipelines.iter().map(|pipe| {
        let mut conn = conn.clone();
        async move { pipe.query_async::<T>(&mut conn).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_name_the_master_of_a_slot() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("10.0.0.2", 7001),
            ]),
        ]);
        assert_eq!(master_of_slot(&reply, 0), Some(("10.0.0.1".into(), 7000)));
        assert_eq!(
            master_of_slot(&reply, 5461),
            Some(("10.0.0.2".into(), 7001))
        );
        assert_eq!(master_of_slot(&Value::Nil, 1), None);
        let partial = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            node("h", 1),
        ])]);
        assert_eq!(master_of_slot(&partial, 11), None);
    }

    #[test]
    fn cluster_info_tells_whether_every_slot_is_served() {
        let ok = ClusterInfo::parse(
            "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_fail:0\r\n",
        );
        assert!(ok.covers_every_slot(), "{ok:?}");
        let partial = ClusterInfo::parse(
            "cluster_state:fail\r\ncluster_slots_assigned:10923\r\ncluster_slots_fail:0\r\n",
        );
        assert!(!partial.covers_every_slot());
        assert_eq!(partial.slots_assigned, 10923);
        assert_eq!(ClusterInfo::parse("").state, "unknown");
        assert_eq!(info_field("a:1\r\nab:2\r\n", "ab"), Some("2"));
    }
}
