//! The stack under test: Redis — one server persisting to its append-only
//! file (`appendfsync everysec`), or a Redis Cluster of three masters and
//! three replicas ([`LocalRedisCluster`], append-only files too) — a
//! PostgreSQL, the TCP proxy between the workers and PostgreSQL, one gateway
//! and several workers, each service the real binary in a child process that
//! the runner may kill and start again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eventline_shared::testkit;
use eventline_shared::testkit::cluster::LocalRedisCluster;
use eventline_shared::testkit::servers::{self, LocalPostgres, LocalRedis};
use tokio::process::{Child, Command};

use super::ChaosError;
use super::proxy::Proxy;

/// Settings of the stack that the scenarios rely on.
pub struct StackOptions {
    pub bin_dir: PathBuf,
    pub dir: PathBuf,
    pub workers: usize,
    /// The gateway answers 429 above this stream length.
    pub high_water: u64,
    /// Worker settings (env) beyond the defaults.
    pub worker_env: Vec<(String, String)>,
    /// One Redis server, or a Redis Cluster.
    pub redis: RedisMode,
    /// The services' `RUST_LOG`.
    pub log_filter: String,
}

/// Which Redis the stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    Single,
    /// A cluster of three masters (each with a replica), the services given
    /// `REDIS_CLUSTER_NODES` and [`CLUSTER_SHARDS`] stream shards.
    Cluster,
}

/// `STREAM_SHARDS` on the cluster: one shard per master.
pub const CLUSTER_SHARDS: u32 = 3;

/// The stack's Redis.
pub enum RedisBackend {
    Single(LocalRedis),
    Cluster(LocalRedisCluster),
}

impl RedisBackend {
    /// What a service is given to reach it.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            RedisBackend::Single(redis) => vec![("REDIS_URL".into(), redis.url())],
            RedisBackend::Cluster(cluster) => vec![
                ("REDIS_CLUSTER_NODES".into(), cluster.urls().join(",")),
                ("STREAM_SHARDS".into(), CLUSTER_SHARDS.to_string()),
            ],
        }
    }
}

/// One service: its binary, environment and, while it runs, the child.
pub struct Service {
    pub name: String,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Consumer names change on every start, as a new pod's name would.
    consumer_base: Option<String>,
    starts: u32,
    child: Option<Child>,
    health: SocketAddr,
}

impl Service {
    async fn start(&mut self) -> Result<(), ChaosError> {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| ChaosError::io(format!("opening {}", self.log.display()), e))?;
        let err = log.try_clone().map_err(|e| ChaosError::io("log file", e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LISTEN_ADDR", self.health.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        if let Some(base) = &self.consumer_base {
            cmd.env("CONSUMER", format!("{base}-{}", self.starts));
        }
        self.child = Some(
            cmd.spawn()
                .map_err(|e| ChaosError::io(format!("starting {}", self.bin.display()), e))?,
        );
        self.wait_live().await
    }

    /// Waits until the health port answers (the process is up; readiness
    /// may follow later, e.g. while Redis is away).
    async fn wait_live(&mut self) -> Result<(), ChaosError> {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(self.health).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ChaosError::Exited(self.name.clone(), status.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ChaosError::NotReady(self.name.clone()))
    }

    /// SIGKILL and reap: no shutdown, no flush, no ack.
    pub async fn kill(&mut self) -> Result<(), ChaosError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .await
                .map_err(|e| ChaosError::io(format!("killing {}", self.name), e))?;
        }
        Ok(())
    }

    pub async fn restart(&mut self) -> Result<(), ChaosError> {
        self.kill().await?;
        self.start().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGSTOP or SIGCONT (`STOP`/`CONT`).
    pub fn signal(&self, signal: &str) -> Result<(), ChaosError> {
        match self.pid() {
            Some(pid) => Ok(servers::signal(pid, signal)?),
            None => Ok(()),
        }
    }

    /// SIGTERM and wait for a clean exit (at the end of a run).
    pub async fn stop(&mut self) -> Result<(), ChaosError> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                servers::signal(pid, "TERM")?;
            }
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .map_err(|_| ChaosError::NotReady(format!("{} (SIGTERM)", self.name)))?
                .map_err(|e| ChaosError::io("waiting for a service", e))?;
            if !status.success() {
                return Err(ChaosError::Exited(self.name.clone(), status.to_string()));
            }
        }
        Ok(())
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Sets `key` for the next start (replacing its value, if any).
    pub fn set_env(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value));
    }

    /// The value of `key` it is started with.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// SIGTERM, a clean exit, then started again (with its env as it is now).
    pub async fn stop_and_start(&mut self) -> Result<(), ChaosError> {
        self.stop().await?;
        self.start().await
    }
}

pub struct Stack {
    /// The scratch directory of this stack.
    pub dir: PathBuf,
    pub redis: RedisBackend,
    pub pg: LocalPostgres,
    pub proxy: Proxy,
    pub gateway: Service,
    pub workers: Vec<Service>,
    pub api_key: String,
    /// PostgreSQL directly (not through the proxy), for the checks.
    pub database_url: String,
}

fn free_addr() -> Result<SocketAddr, ChaosError> {
    Ok(SocketAddr::from(([127, 0, 0, 1], servers::free_port()?)))
}

fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf, ChaosError> {
    let path = bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ChaosError::MissingBinary(path))
    }
}

/// What every service is given: the Redis and PostgreSQL to use, JSON logs
/// filtered by `log_filter` (`warn` unless asked).
fn common_env(redis: &RedisBackend, db_url: &str, log_filter: &str) -> Vec<(String, String)> {
    let mut env = redis.env();
    env.extend(
        [
            ("DATABASE_URL", db_url.to_owned()),
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", log_filter.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// The gateway's: keys with the test pepper, the high-water mark, and rate
/// limits no load of the runner reaches.
fn gateway_env(o: &StackOptions, redis: &RedisBackend, db_url: &str) -> Vec<(String, String)> {
    let mut env = common_env(redis, db_url, &o.log_filter);
    env.extend(
        [
            // The test pepper: the stack's keys and database die with it.
            ("KEY_PEPPER", testkit::PEPPER.to_owned()),
            ("STREAM_HIGH_WATER", o.high_water.to_string()),
            ("RATE_LIMIT_KEY_PER_SECOND", "100000000".into()),
            ("RATE_LIMIT_KEY_BURST", "100000000".into()),
            ("RATE_LIMIT_IP_PER_SECOND", "100000000".into()),
            ("RATE_LIMIT_IP_BURST", "100000000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// Migrates the database at `url` and creates the load's ingest key.
async fn prepare_database(url: &str) -> Result<String, ChaosError> {
    let pool = sqlx::PgPool::connect(url).await.map_err(ChaosError::Db)?;
    eventline_shared::schema::migrate(&pool)
        .await
        .map_err(|e| ChaosError::Setup(format!("migrations: {e}")))?;
    let api_key = testkit::try_create_key(&pool, "chaos", "ingest")
        .await
        .map_err(|e| ChaosError::Setup(e.to_string()))?;
    pool.close().await;
    Ok(api_key)
}

impl Service {
    /// A service not started yet, its health port a free one.
    fn new(
        name: String,
        bin: PathBuf,
        env: Vec<(String, String)>,
        log: PathBuf,
        consumer_base: Option<String>,
    ) -> Result<Self, ChaosError> {
        Ok(Service {
            name,
            bin,
            env,
            log,
            consumer_base,
            starts: 0,
            child: None,
            health: free_addr()?,
        })
    }
}

impl Stack {
    pub async fn start(o: &StackOptions) -> Result<Self, ChaosError> {
        let gateway_bin = binary(&o.bin_dir, "ingest-gateway")?;
        let worker_bin = binary(&o.bin_dir, "worker")?;
        std::fs::create_dir_all(o.dir.join("logs"))
            .map_err(|e| ChaosError::io(format!("creating {}", o.dir.display()), e))?;

        let redis = match o.redis {
            RedisMode::Single => {
                RedisBackend::Single(LocalRedis::start_in(o.dir.join("redis"), "everysec")?)
            }
            // Six processes and `redis-cli --cluster create`: off the
            // runtime's threads.
            RedisMode::Cluster => {
                RedisBackend::Cluster(tokio::task::block_in_place(LocalRedisCluster::start)?)
            }
        };
        let pg = LocalPostgres::start_in(o.dir.join("pg"))?;
        let database_url = pg.url();
        let api_key = prepare_database(&database_url).await?;

        let pg_addr = SocketAddr::from(([127, 0, 0, 1], pg.port));
        let proxy = Proxy::start(pg_addr)
            .await
            .map_err(|e| ChaosError::io("starting the proxy", e))?;

        let mut gateway = Service::new(
            "gateway".into(),
            gateway_bin,
            gateway_env(o, &redis, &database_url),
            o.dir.join("logs/gateway.log"),
            None,
        )?;
        gateway.start().await?;

        let proxied = format!("postgres://postgres@{}/postgres", proxy.addr);
        let mut workers = Vec::new();
        for i in 0..o.workers {
            let mut env = common_env(&redis, &proxied, &o.log_filter);
            env.extend(o.worker_env.iter().cloned());
            let mut w = Service::new(
                format!("worker-{i}"),
                worker_bin.clone(),
                env,
                o.dir.join(format!("logs/worker-{i}.log")),
                Some(format!("chaos-w{i}")),
            )?;
            w.start().await?;
            workers.push(w);
        }
        Ok(Stack {
            dir: o.dir.clone(),
            redis,
            pg,
            proxy,
            gateway,
            workers,
            api_key,
            database_url,
        })
    }

    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway.health)
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.health
    }

    /// Leaves the servers' data and logs in the scratch directory (a
    /// cluster's, which lives in a directory of its own, as copies of each
    /// node's log and `nodes.conf` under `redis-cluster/`, made by
    /// [`Self::save_cluster_logs`]).
    pub fn keep_data(&mut self) {
        if let RedisBackend::Single(redis) = &mut self.redis {
            redis.keep_data();
        }
        self.pg.keep_data();
    }

    /// Copies each cluster node's `redis.log` and `nodes.conf` to
    /// `redis-cluster/node<i>-<port>.{log,conf}` in the scratch directory
    /// (nothing on one server, whose data stays where it is).
    pub fn save_cluster_logs(&self) -> Result<(), ChaosError> {
        let RedisBackend::Cluster(cluster) = &self.redis else {
            return Ok(());
        };
        let to = self.dir.join("redis-cluster");
        std::fs::create_dir_all(&to)
            .map_err(|e| ChaosError::io(format!("creating {}", to.display()), e))?;
        for (node, url) in cluster.urls().iter().enumerate() {
            let port = url.rsplit(':').next().unwrap_or_default();
            for (file, ext) in [("redis.log", "log"), ("nodes.conf", "conf")] {
                let from = cluster.dir().join(port).join(file);
                let copy = to.join(format!("node{node}-{port}.{ext}"));
                // A node that never wrote one has none.
                let _ = std::fs::copy(&from, &copy);
            }
        }
        Ok(())
    }

    /// The single Redis server; an error on a cluster stack.
    pub fn single_redis(&mut self) -> Result<&mut LocalRedis, ChaosError> {
        match &mut self.redis {
            RedisBackend::Single(redis) => Ok(redis),
            RedisBackend::Cluster(_) => Err(ChaosError::Setup(
                "this scenario needs the single-Redis stack".into(),
            )),
        }
    }

    /// The Redis Cluster; an error on a single-Redis stack.
    pub fn cluster(&mut self) -> Result<&mut LocalRedisCluster, ChaosError> {
        match &mut self.redis {
            RedisBackend::Cluster(cluster) => Ok(cluster),
            RedisBackend::Single(_) => Err(ChaosError::Setup(
                "this scenario needs the Redis Cluster stack".into(),
            )),
        }
    }

    /// The gateway's `REDIS_MIN_REPLICAS_ACK` (0 when not set).
    pub fn min_replicas_ack(&self) -> u32 {
        self.gateway
            .env("REDIS_MIN_REPLICAS_ACK")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Restarts the gateway (SIGTERM, then started again) with
    /// `REDIS_MIN_REPLICAS_ACK` = `n`, unless it already runs with it.
    pub async fn set_min_replicas_ack(&mut self, n: u32) -> Result<(), ChaosError> {
        if self.min_replicas_ack() == n {
            return Ok(());
        }
        self.gateway
            .set_env("REDIS_MIN_REPLICAS_ACK", n.to_string());
        self.gateway.stop_and_start().await
    }

    /// Stops the services politely (SIGTERM, exit 0 expected).
    pub async fn stop(&mut self) -> Result<(), ChaosError> {
        self.gateway.stop().await?;
        for w in &mut self.workers {
            w.stop().await?;
        }
        Ok(())
    }
}
