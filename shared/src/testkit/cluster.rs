//! A Redis Cluster of a caller's own: six `redis-server` processes (three
//! masters, three replicas) on free ports under a directory of its own, that
//! it may kill, freeze and restart to watch a failover. Like
//! [`LocalRedis`](super::servers::LocalRedis), the binary comes from
//! `EVENTLINE_REDIS_SERVER` (else `redis-server` on the PATH), and dropping
//! the cluster kills every node and removes the directory.
//! [`LocalRedisCluster::lone_node`] starts one node that joins no cluster.
//!
//! The cluster is created with `redis-cli --cluster create … --cluster-replicas
//! 1` (the `redis-cli` next to `redis-server`, else the one on the PATH), so
//! the masters get the default layout: three contiguous, equal slot ranges.
//! [`NODE_TIMEOUT`] is short, so a master that stops answering is replaced by
//! its replica within a few seconds.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use redis::FromRedisValue;

use super::servers::{ServerError, io, redis_server, run_checked, signal, wait_listening};
use crate::redis_keys::CLUSTER_SLOTS;

/// `cluster-node-timeout`: how long a node may be unreachable before the
/// others start failing it over (the failover itself takes about as long
/// again: the replica's election delay).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long [`LocalRedisCluster::wait_healthy`] and
/// [`LocalRedisCluster::wait_for_failover`] wait.
const WAIT: Duration = Duration::from_secs(30);

/// Six nodes: one replica for each of three masters.
const NODES: usize = 6;

/// A master and the slots it serves, as the cluster reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The node's index in [`LocalRedisCluster::urls`].
    pub node: usize,
    pub port: u16,
    pub slots: Vec<RangeInclusive<u16>>,
}

struct Node {
    port: u16,
    /// The cluster bus port, given explicitly: the default (port + 10000)
    /// overflows for ports above 55535.
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    frozen: bool,
}

/// Six `redis-server` cluster nodes; see the module documentation.
pub struct LocalRedisCluster {
    dir: PathBuf,
    bin: PathBuf,
    nodes: Vec<Node>,
    /// The masters when the cluster was last seen healthy.
    layout: Vec<Master>,
}

impl LocalRedisCluster {
    /// Starts six nodes, creates the cluster and waits until it is healthy
    /// (see [`Self::wait_healthy`]).
    pub fn start() -> Result<Self, ServerError> {
        let mut cluster = Self::nodes_up(NODES)?;
        let mut create = Command::new(cluster.redis_cli());
        create.args(["--cluster", "create"]);
        create.args(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port)),
        );
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        run_checked(&mut create)?;
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// One cluster-enabled node that was never made part of a cluster: it
    /// serves no slot (`cluster_state:fail`, 0 slots assigned), as a node
    /// does before `redis-cli --cluster create`. For start-up checks that
    /// must refuse such a "cluster"; the failover helpers mean nothing on it.
    pub fn lone_node() -> Result<Self, ServerError> {
        Self::nodes_up(1)
    }

    /// `count` cluster-enabled nodes started, not yet a cluster.
    fn nodes_up(count: usize) -> Result<Self, ServerError> {
        let bin = std::env::var_os("EVENTLINE_REDIS_SERVER")
            .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from);
        let dir = std::env::temp_dir().join(super::unique_name("eventline-redis-cluster"));
        let ports = free_ports(2 * count)?;
        let nodes = ports
            .chunks(2)
            .map(|pair| Node {
                port: pair[0],
                bus_port: pair[1],
                dir: dir.join(pair[0].to_string()),
                child: None,
                frozen: false,
            })
            .collect();
        let mut cluster = LocalRedisCluster {
            dir,
            bin,
            nodes,
            layout: Vec::new(),
        };
        // Dropped on failure: the nodes already started are killed.
        for node in 0..count {
            cluster.up(node)?;
        }
        Ok(cluster)
    }

    /// `redis-cli` from the directory of `redis-server`, else the PATH's.
    fn redis_cli(&self) -> PathBuf {
        let sibling = self.bin.with_file_name("redis-cli");
        if self.bin.parent().is_some_and(|p| !p.as_os_str().is_empty()) && sibling.exists() {
            sibling
        } else {
            PathBuf::from("redis-cli")
        }
    }

    /// Starts node `node` (with the data and `nodes.conf` it has, if any) and
    /// waits until it accepts connections.
    fn up(&mut self, node: usize) -> Result<(), ServerError> {
        let n = &self.nodes[node];
        std::fs::create_dir_all(&n.dir).map_err(io(format!("creating {}", n.dir.display())))?;
        let child = redis_server(&self.bin, n.port, &n.dir, |cmd| {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &n.bus_port.to_string()])
                .args(["--cluster-config-file", "nodes.conf"])
                .args([
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT.as_millis().to_string(),
                ])
                .args(["--appendonly", "yes", "--save", ""])
                // A replica's first full sync at once, not after Redis 7's 5 s.
                .args(["--repl-diskless-sync-delay", "0"]);
        })?;
        let port = n.port;
        self.nodes[node].child = Some(child);
        self.nodes[node].frozen = false;
        wait_listening(port, "redis-server (cluster node)", WAIT)
    }

    /// The directory holding each node's data, log and `nodes.conf`, in
    /// `<dir>/<port>/` (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The `redis://` URL of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|n| self.url(n)).collect()
    }

    pub fn url(&self, node: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[node].port)
    }

    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(Child::id)
    }

    /// The masters serving slots, by their first slot, as the first running
    /// (not frozen) node sees them.
    pub fn masters(&self) -> Result<Vec<Master>, ServerError> {
        let node = self.live().next().ok_or_else(|| ServerError::Command {
            command: "CLUSTER NODES".into(),
            output: "no node is running".into(),
        })?;
        self.masters_seen_by(node)
    }

    /// The node serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> Result<usize, ServerError> {
        owner(&self.masters()?, slot).ok_or_else(|| ServerError::Command {
            command: "CLUSTER NODES".into(),
            output: format!("no master serves slot {slot}"),
        })
    }

    /// `master` or `slave`, from the node's `INFO replication`.
    pub fn role(&self, node: usize) -> Result<String, ServerError> {
        let info: String = self.query(node, &["INFO", "replication"])?;
        Ok(field(&info, "role").unwrap_or_default().to_owned())
    }

    /// SIGKILL and reap: a crash.
    pub fn kill(&mut self, node: usize) -> Result<(), ServerError> {
        self.thaw(node)?;
        if let Some(mut child) = self.nodes[node].child.take() {
            child.kill().map_err(io("killing redis-server"))?;
            child.wait().map_err(io("reaping redis-server"))?;
        }
        Ok(())
    }

    /// SIGSTOP: the node holds its connections but answers nothing, to the
    /// clients and to the other nodes.
    pub fn freeze(&mut self, node: usize) -> Result<(), ServerError> {
        if let Some(pid) = self.pid(node) {
            signal(pid, "STOP")?;
            self.nodes[node].frozen = true;
        }
        Ok(())
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&mut self, node: usize) -> Result<(), ServerError> {
        if let (Some(pid), true) = (self.pid(node), self.nodes[node].frozen) {
            signal(pid, "CONT")?;
            self.nodes[node].frozen = false;
        }
        Ok(())
    }

    /// Kills the node if it runs, then starts it again with its data and
    /// cluster configuration; it rejoins the cluster on its own (a failed-over
    /// master as a replica). [`Self::wait_healthy`] waits for that.
    pub fn restart(&mut self, node: usize) -> Result<(), ServerError> {
        self.kill(node)?;
        self.up(node)
    }

    /// Waits until node `old_master`'s slots are served by another node (its
    /// replica, promoted) and the cluster is healthy again; returns the new
    /// master. `old_master` must have been a master when the cluster was last
    /// seen healthy.
    pub fn wait_for_failover(&mut self, old_master: usize) -> Result<usize, ServerError> {
        let slot = self
            .layout
            .iter()
            .find(|m| m.node == old_master)
            .and_then(|m| m.slots.first())
            .map(|range| *range.start())
            .ok_or_else(|| ServerError::Command {
                command: format!("wait_for_failover({old_master})"),
                output: format!("node {old_master} was not a master"),
            })?;
        self.wait_until(|masters| match owner(masters, slot) {
            Some(node) if node != old_master => Ok(node),
            _ => Err(format!("slot {slot} is still served by node {old_master}")),
        })
    }

    /// Waits until the cluster is healthy: every running node reports
    /// `cluster_state:ok` with all 16384 slots served, every replica's link
    /// to its master is up, and all running nodes agree on the masters.
    pub fn wait_healthy(&mut self) -> Result<(), ServerError> {
        self.wait_until(|_| Ok(()))
    }

    /// Polls until the cluster is healthy and `done` accepts its masters.
    fn wait_until<T>(
        &mut self,
        done: impl Fn(&[Master]) -> Result<T, String>,
    ) -> Result<T, ServerError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let why = match self.health() {
                Ok(masters) => match done(&masters) {
                    Ok(value) => {
                        self.layout = masters;
                        return Ok(value);
                    }
                    Err(why) => why,
                },
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(ServerError::Timeout(
                    format!("a healthy Redis Cluster ({why})"),
                    WAIT,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The masters if the cluster is healthy (see [`Self::wait_healthy`]);
    /// otherwise why not.
    fn health(&self) -> Result<Vec<Master>, String> {
        let mut agreed: Option<(usize, Vec<Master>)> = None;
        for node in self.live() {
            let info: String = self
                .query(node, &["CLUSTER", "INFO"])
                .map_err(|e| e.to_string())?;
            let state = field(&info, "cluster_state").unwrap_or("?");
            let slots_ok = field(&info, "cluster_slots_ok").unwrap_or("?");
            if state != "ok" || slots_ok != CLUSTER_SLOTS.to_string() {
                return Err(format!(
                    "node {node}: cluster_state:{state}, cluster_slots_ok:{slots_ok}"
                ));
            }
            let replication: String = self
                .query(node, &["INFO", "replication"])
                .map_err(|e| e.to_string())?;
            if field(&replication, "role") != Some("master")
                && field(&replication, "master_link_status") != Some("up")
            {
                return Err(format!(
                    "node {node}: a replica whose master link is not up"
                ));
            }
            let masters = self.masters_seen_by(node).map_err(|e| e.to_string())?;
            match &agreed {
                Some((first, seen)) if *seen != masters => {
                    return Err(format!("nodes {first} and {node} disagree on the masters"));
                }
                Some(_) => {}
                None => agreed = Some((node, masters)),
            }
        }
        agreed
            .map(|(_, masters)| masters)
            .ok_or_else(|| "no node is running".into())
    }

    /// The nodes that run and are not frozen.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&n| self.nodes[n].child.is_some() && !self.nodes[n].frozen)
    }

    /// The masters serving slots according to node `node`'s `CLUSTER NODES`.
    fn masters_seen_by(&self, node: usize) -> Result<Vec<Master>, ServerError> {
        let text: String = self.query(node, &["CLUSTER", "NODES"])?;
        let mut masters: Vec<Master> = text
            .lines()
            .filter_map(|line| {
                // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>…
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port: u16 = fields
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = fields.get(2)?;
                let slots: Vec<_> = fields
                    .iter()
                    .skip(8)
                    .filter_map(|s| slot_range(s))
                    .collect();
                if !flags.split(',').any(|f| f == "master") || slots.is_empty() {
                    return None;
                }
                let node = self.nodes.iter().position(|n| n.port == port)?;
                Some(Master { node, port, slots })
            })
            .collect();
        masters.sort_by_key(|m| m.slots.first().map(|r| *r.start()));
        Ok(masters)
    }

    /// One command on one node, with short timeouts.
    fn query<T: FromRedisValue>(&self, node: usize, args: &[&str]) -> Result<T, ServerError> {
        let failed = |e: redis::RedisError| ServerError::Command {
            command: format!("{} on node {node}", args.join(" ")),
            output: e.to_string(),
        };
        let timeout = Some(Duration::from_secs(1));
        let client = redis::Client::open(self.url(node)).map_err(failed)?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .map_err(failed)?;
        conn.set_read_timeout(timeout).map_err(failed)?;
        conn.set_write_timeout(timeout).map_err(failed)?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).map_err(failed)
    }
}

impl Drop for LocalRedisCluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            let _ = self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `count` distinct free TCP ports on 127.0.0.1 (all bound at once, so none
/// repeats; free when asked).
fn free_ports(count: usize) -> Result<Vec<u16>, ServerError> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("binding free ports"))?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().map_err(io("reading a bound port"))?.port()))
        .collect()
}

/// The value of `name:value` in an `INFO`-style reply.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')
            .map(str::trim_end)
    })
}

/// `"5461-10922"` or `"42"`; `None` for a slot being migrated (`[…]`).
fn slot_range(s: &str) -> Option<RangeInclusive<u16>> {
    match s.split_once('-') {
        Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
        None => s.parse().ok().map(|a| a..=a),
    }
}

/// The node serving `slot` among `masters`.
fn owner(masters: &[Master], slot: u16) -> Option<usize> {
    masters
        .iter()
        .find(|m| m.slots.iter().any(|r| r.contains(&slot)))
        .map(|m| m.node)
}
