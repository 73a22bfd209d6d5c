//! The faults, when they strike and for how long. Every scenario sends load
//! for the whole window; its faults start after a quiet start and end before
//! the window does, so the checks afterwards see the pipeline recover while
//! load still runs.
//!
//! The `cluster-*` scenarios run on a stack of their own whose Redis is a
//! cluster of three masters and three replicas ([`Kind::needs_cluster`]);
//! the others on the single-Redis stack.

use std::net::SocketAddr;
use std::time::Duration;

use eventline_shared::redis_keys::{RedisKeys, key_slot};
use eventline_shared::testkit::cluster::{LocalRedisCluster, NODE_TIMEOUT};
use tokio::time::Instant;

use super::ChaosError;
use super::proxy::Fault;
use super::stack::{CLUSTER_SHARDS, Stack};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A random worker SIGKILLed every few seconds and started again (under
    /// a new consumer name, as a new pod would be).
    WorkerKill,
    /// PostgreSQL stopped (immediate: as a crash) and started again.
    PostgresStop,
    /// Redis SIGKILLed and started again from its append-only file.
    RedisKill,
    /// Redis frozen with SIGSTOP, then SIGCONT.
    RedisFreeze,
    /// The gateway SIGKILLed and started again.
    GatewayRestart,
    /// The network between the workers and PostgreSQL cut, then slow.
    Network,
    /// Every worker frozen until the stream passes its high-water mark: the
    /// gateway answers 429 with Retry-After and the client's retries get
    /// everything in once the workers are back.
    Overload,
    /// Entries no worker can store, written straight into the stream (as a
    /// broken producer would, past the gateway) among the load: undecodable
    /// bytes, no payload, a NUL in the message, metadata that is not JSON.
    /// Each must be dead-lettered, the rest of its batch stored, and
    /// commits must not stall for 10 s or more.
    Poison,
    /// On the Redis Cluster: the master serving one shard's stream
    /// SIGKILLed; its replica takes over; later the killed node is started
    /// again and rejoins as a replica. Run twice, with the gateway's
    /// `REDIS_MIN_REPLICAS_ACK` 0 (acknowledged writes the master had not
    /// replicated may be lost: reported, allowed) and 1 (nothing may be).
    ClusterFailover,
    /// On the Redis Cluster: the master serving one shard's stream frozen
    /// with SIGSTOP past the node timeout, until its replica has taken over
    /// and a while after (at least three node timeouts in all), then
    /// SIGCONT: it rejoins as a replica. With `REDIS_MIN_REPLICAS_ACK=1`,
    /// nothing may be lost.
    ClusterFreeze,
}

/// The longest stall the poison scenario allows.
pub const POISON_MAX_STALL: Duration = Duration::from_secs(10);

/// Poison entries written per round.
pub const POISON_PER_ROUND: u64 = 4;

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::WorkerKill,
        Kind::PostgresStop,
        Kind::RedisKill,
        Kind::RedisFreeze,
        Kind::GatewayRestart,
        Kind::Network,
        Kind::Overload,
        Kind::Poison,
        Kind::ClusterFailover,
        Kind::ClusterFreeze,
    ];

    /// Whether it runs on the Redis Cluster stack.
    pub fn needs_cluster(self) -> bool {
        matches!(self, Kind::ClusterFailover | Kind::ClusterFreeze)
    }

    /// The gateway's `REDIS_MIN_REPLICAS_ACK` of each run of the scenario,
    /// on the cluster stack (one run per value); empty on the single one.
    ///
    /// The freeze runs with 1: it asserts that nothing acknowledged is lost,
    /// which asynchronous replication (0) does not promise — a write the
    /// master answered just before SIGSTOP and had not yet sent to its
    /// replica is gone once the replica is promoted. What 0 loses is what
    /// `cluster-failover` measures.
    pub fn replica_acks(self) -> &'static [u32] {
        match self {
            Kind::ClusterFailover => &[0, 1],
            Kind::ClusterFreeze => &[1],
            _ => &[],
        }
    }

    /// Events per request of the scenario's load (0: single-event
    /// requests). A killed Redis and a killed gateway meet the single-event
    /// path too, where concurrent requests share an entry and one write
    /// answers them all (group commit, ADR 0002); the rest send batches of
    /// 100.
    pub fn batch_size(self) -> u32 {
        match self {
            Kind::RedisKill | Kind::GatewayRestart => 0,
            _ => 100,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::WorkerKill => "worker-kill",
            Kind::PostgresStop => "postgres-stop",
            Kind::RedisKill => "redis-kill",
            Kind::RedisFreeze => "redis-freeze",
            Kind::GatewayRestart => "gateway-restart",
            Kind::Network => "network",
            Kind::Overload => "overload",
            Kind::Poison => "poison",
            Kind::ClusterFailover => "cluster-failover",
            Kind::ClusterFreeze => "cluster-freeze",
        }
    }
}

/// Durations of the full run (`make chaos`) and of the quick one (`make test`).
pub struct Timing {
    pub window: Duration,
    pub postgres_down: Duration,
    pub redis_frozen: Duration,
    pub gateway_down: Duration,
    pub network_cut: Duration,
    pub network_slow: Duration,
    pub latency: Duration,
    pub workers_frozen: Duration,
    /// Between two worker kills: uniformly in this range.
    pub kill_every: (Duration, Duration),
    /// Rounds of poison entries, one a second.
    pub poison_rounds: u64,
    /// The gateway's STREAM_HIGH_WATER.
    pub high_water: u64,
    /// Workers claim entries idle this long (a killed worker's batch).
    pub claim_idle: Duration,
    /// The window of the `cluster-*` scenarios: room for the failover, the
    /// restart and load after both.
    pub cluster_window: Duration,
    /// How long a killed or frozen master stays away once its replica has
    /// taken over.
    pub master_down: Duration,
    /// The shortest freeze of a master: three node timeouts, well past the
    /// point where the others fail it (its replica's promotion takes about
    /// two; the freeze lasts until then and [`Self::master_down`] more).
    pub master_frozen: Duration,
}

impl Timing {
    pub fn new(quick: bool, window: Option<u64>) -> Self {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        if quick {
            Timing {
                window: s(window.unwrap_or(8)),
                postgres_down: s(3),
                redis_frozen: s(2),
                gateway_down: ms(500),
                network_cut: s(2),
                network_slow: s(2),
                latency: ms(50),
                workers_frozen: s(6),
                kill_every: (ms(1200), ms(2500)),
                poison_rounds: 3,
                high_water: 3_000,
                claim_idle: s(2),
                cluster_window: s(window.unwrap_or(14)),
                master_down: s(5),
                master_frozen: 3 * NODE_TIMEOUT,
            }
        } else {
            Timing {
                window: s(window.unwrap_or(45)),
                postgres_down: s(30),
                redis_frozen: s(5),
                gateway_down: s(1),
                network_cut: s(10),
                network_slow: s(10),
                latency: ms(50),
                workers_frozen: s(20),
                kill_every: (s(3), s(6)),
                poison_rounds: 20,
                high_water: 100_000,
                claim_idle: s(5),
                cluster_window: s(window.unwrap_or(45)),
                master_down: s(10),
                master_frozen: 3 * NODE_TIMEOUT,
            }
        }
    }

    /// Worker settings for the run: claims soon after a kill (the default
    /// minute would outlast the scenario), trimming every second (the
    /// gateway's high-water mark counts the stream's length).
    pub fn worker_env(&self) -> Vec<(String, String)> {
        [
            ("CLAIM_IDLE_MS", self.claim_idle.as_millis().to_string()),
            ("CLAIM_INTERVAL_MS", "1000".into()),
            ("TRIM_INTERVAL_MS", "1000".into()),
            ("DB_ACQUIRE_TIMEOUT_MS", "2000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The load's window in scenario `kind`.
    pub fn window_of(&self, kind: Kind) -> Duration {
        if kind.needs_cluster() {
            self.cluster_window
        } else {
            self.window
        }
    }

    /// When the first fault of `kind` strikes, after the load has settled.
    fn onset(&self, kind: Kind) -> Duration {
        (self.window_of(kind) / 5).max(Duration::from_secs(1))
    }
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t).await;
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// When the load started and when the faults strike, for the log lines.
struct Clock {
    started: Instant,
    onset: Instant,
}

impl Clock {
    /// `i` as time since the load started.
    fn at(&self, i: Instant) -> String {
        secs(i - self.started)
    }
}

/// What the faults of a scenario did.
pub struct Injected {
    /// A line per fault.
    pub faults: Vec<String>,
    /// `cluster-*`: events the gateway accepted (202, its counter) while
    /// the master was replaced and not back yet, from the replica's
    /// promotion to the old master's restart or thaw.
    pub accepted_while_failed_over: Option<u64>,
    /// What went wrong beyond the counts (the scenario fails).
    pub problems: Vec<String>,
}

impl From<String> for Injected {
    fn from(line: String) -> Self {
        Injected {
            faults: vec![line],
            accepted_while_failed_over: None,
            problems: Vec::new(),
        }
    }
}

/// Injects `kind`'s faults on `stack` (the load started at `started`).
/// Every fault is undone before it returns, also on error where that is
/// possible.
pub async fn inject(
    stack: &mut Stack,
    kind: Kind,
    t: &Timing,
    seed: u64,
    started: Instant,
) -> Result<Injected, ChaosError> {
    let clock = Clock {
        started,
        onset: started + t.onset(kind),
    };
    sleep_until(clock.onset).await;
    Ok(match kind {
        Kind::WorkerKill => kill_workers(stack, t, seed, &clock).await?.into(),
        Kind::PostgresStop => stop_postgres(stack, t, &clock).await?.into(),
        Kind::RedisKill => kill_redis(stack, &clock)?.into(),
        Kind::RedisFreeze => freeze_redis(stack, t, &clock).await?.into(),
        Kind::GatewayRestart => restart_gateway(stack, t, &clock).await?.into(),
        Kind::Network => degrade_network(stack, t, &clock).await.into(),
        Kind::Poison => write_poison(stack, t, &clock).await?.into(),
        Kind::Overload => freeze_every_worker(stack, t, &clock).await?.into(),
        Kind::ClusterFailover => fail_over(stack, t, seed, &clock, Outage::Kill).await?,
        Kind::ClusterFreeze => fail_over(stack, t, seed, &clock, Outage::Freeze).await?,
    })
}

/// A random worker SIGKILLed and started again 0.3 s later, every few
/// seconds until the last fifth of the window.
async fn kill_workers(
    stack: &mut Stack,
    t: &Timing,
    seed: u64,
    clock: &Clock,
) -> Result<String, ChaosError> {
    let mut rng = Rng::new(seed);
    let end = clock.started + t.window - t.window / 5;
    let (lo, hi) = t.kill_every;
    let mut kills = 0;
    while Instant::now() < end {
        let i = rng.below(stack.workers.len() as u64) as usize;
        let w = &mut stack.workers[i];
        w.kill().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.restart().await?;
        kills += 1;
        let gap = lo + (hi - lo).mul_f64(rng.unit());
        tokio::time::sleep(gap).await;
    }
    Ok(format!(
        "{kills} SIGKILLs of a random worker between {} and {}, each started again 0.3 s later",
        clock.at(clock.onset),
        clock.at(Instant::now())
    ))
}

async fn stop_postgres(stack: &mut Stack, t: &Timing, clock: &Clock) -> Result<String, ChaosError> {
    block(|| stack.pg.down())?;
    tokio::time::sleep(t.postgres_down).await;
    block(|| stack.pg.up())?;
    Ok(format!(
        "PostgreSQL stopped (immediate) at {} for {}",
        clock.at(clock.onset),
        secs(t.postgres_down)
    ))
}

fn kill_redis(stack: &mut Stack, clock: &Clock) -> Result<String, ChaosError> {
    let killed = Instant::now();
    let redis = stack.single_redis()?;
    block(|| redis.kill())?;
    block(|| redis.up())?;
    Ok(format!(
        "Redis SIGKILLed at {}, started again from its AOF in {}",
        clock.at(killed),
        secs(killed.elapsed())
    ))
}

async fn freeze_redis(stack: &mut Stack, t: &Timing, clock: &Clock) -> Result<String, ChaosError> {
    let redis = stack.single_redis()?;
    redis.freeze()?;
    tokio::time::sleep(t.redis_frozen).await;
    redis.thaw()?;
    Ok(format!(
        "Redis frozen (SIGSTOP) at {} for {}",
        clock.at(clock.onset),
        secs(t.redis_frozen)
    ))
}

async fn restart_gateway(
    stack: &mut Stack,
    t: &Timing,
    clock: &Clock,
) -> Result<String, ChaosError> {
    stack.gateway.kill().await?;
    tokio::time::sleep(t.gateway_down).await;
    stack.gateway.restart().await?;
    Ok(format!(
        "gateway SIGKILLed at {}, started again after {} (up in {})",
        clock.at(clock.onset),
        secs(t.gateway_down),
        secs(clock.onset.elapsed() - t.gateway_down)
    ))
}

/// The proxy between the workers and PostgreSQL cuts, then delays.
async fn degrade_network(stack: &mut Stack, t: &Timing, clock: &Clock) -> String {
    stack.proxy.set(Fault::Cut);
    tokio::time::sleep(t.network_cut).await;
    stack.proxy.set(Fault::Latency(t.latency));
    tokio::time::sleep(t.network_slow).await;
    stack.proxy.set(Fault::None);
    let (_, cut) = stack.proxy.counts();
    format!(
        "worker↔PostgreSQL cut at {} for {} ({cut} connections dropped or refused), then {} ms each way for {}",
        clock.at(clock.onset),
        secs(t.network_cut),
        t.latency.as_millis(),
        secs(t.network_slow)
    )
}

/// A round of [`poison_entries`] XADDed straight into the stream every
/// second.
async fn write_poison(stack: &mut Stack, t: &Timing, clock: &Clock) -> Result<String, ChaosError> {
    let client = redis::Client::open(stack.single_redis()?.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let stream = eventline_shared::redis_keys::RedisKeys::new(String::new()).stream(0);
    for round in 0..t.poison_rounds {
        let mut pipe = redis::pipe();
        for fields in poison_entries(round)? {
            let cmd = pipe.cmd("XADD").arg(&stream).arg("*");
            for (k, v) in fields {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(format!(
        "{} poison entries written straight into the stream from {}, {POISON_PER_ROUND} a second",
        t.poison_rounds * POISON_PER_ROUND,
        clock.at(clock.onset)
    ))
}

/// Every worker frozen, so the stream grows past its high-water mark.
async fn freeze_every_worker(
    stack: &mut Stack,
    t: &Timing,
    clock: &Clock,
) -> Result<String, ChaosError> {
    let frozen = freeze_workers(stack, "STOP");
    if let Err(e) = frozen {
        let _ = freeze_workers(stack, "CONT");
        return Err(e);
    }
    tokio::time::sleep(t.workers_frozen).await;
    freeze_workers(stack, "CONT")?;
    Ok(format!(
        "every worker frozen (SIGSTOP) at {} for {}, stream high-water mark {}",
        clock.at(clock.onset),
        secs(t.workers_frozen),
        t.high_water
    ))
}

/// How a cluster master is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// SIGKILL; started again later (with its AOF and `nodes.conf`).
    Kill,
    /// SIGSTOP; SIGCONT later.
    Freeze,
}

/// The master serving shard `seed % 3`'s stream killed or frozen; once its
/// replica has taken over, it stays away [`Timing::master_down`] (frozen:
/// and at least [`Timing::master_frozen`] in all), so the load runs on the
/// new master without it for a while, then is started again or thawed, and
/// rejoins as a replica. Returns once the cluster is healthy again.
///
/// Meanwhile [`canaries`] ask every shard whether the gateway still
/// accepts: each shard must answer 202 at least once while the old master is
/// away, but for the failed-over one with `REDIS_MIN_REPLICAS_ACK` > 0,
/// whose new master has no replica then and must not answer 202 at all.
async fn fail_over(
    stack: &mut Stack,
    t: &Timing,
    seed: u64,
    clock: &Clock,
    outage: Outage,
) -> Result<Injected, ChaosError> {
    let shard = (seed % u64::from(CLUSTER_SHARDS)) as u32;
    let stream = RedisKeys::cluster(String::new(), CLUSTER_SHARDS).stream(shard);
    let gateway = stack.gateway_addr();
    let acks = stack.min_replicas_ack();
    let target = crate::client::Target::parse(&stack.gateway_url(), Some(&stack.api_key))
        .map_err(ChaosError::Setup)?;
    let cluster = stack.cluster()?;
    let victim = block(|| cluster.master_of_slot(key_slot(stream.as_bytes())))?;
    let struck = Instant::now();
    match outage {
        Outage::Kill => block(|| cluster.kill(victim))?,
        Outage::Freeze => cluster.freeze(victim)?,
    }
    let promoted = match block(|| cluster.wait_for_failover(victim)) {
        Ok(node) => node,
        Err(e) => {
            let _ = bring_back(cluster, victim, outage);
            return Err(e);
        }
    };
    let promoted_at = Instant::now();
    let back_at = match outage {
        Outage::Kill => promoted_at + t.master_down,
        Outage::Freeze => (struck + t.master_frozen).max(promoted_at + t.master_down),
    };
    let canaries = tokio::spawn(canaries(target, back_at));
    let new_master = cluster.url(promoted);
    let before = Sample::take(gateway, &new_master, &stream).await;
    sleep_until(back_at).await;
    let after = Sample::take(gateway, &new_master, &stream).await;
    let canaries = canaries.await.unwrap_or_default();
    let back = Instant::now();
    bring_back(cluster, victim, outage)?;
    let healthy = Instant::now();
    let role = block(|| cluster.role(victim)).unwrap_or_else(|e| format!("unknown: {e}"));

    let away = if outage == Outage::Kill {
        "restart"
    } else {
        "thaw"
    };
    let mut problems = Vec::new();
    // Known and open (ADR 0060): with REDIS_MIN_REPLICAS_ACK > 0, a master
    // without a replica blocks its connections in WAIT, and the gateway's
    // one Redis breaker then refuses every shard, so a healthy shard may
    // accept nothing meanwhile. Reported, not failed; with 0 it must accept.
    let mut known = Vec::new();
    for (i, tally) in canaries.iter().enumerate() {
        let without_replica = i as u32 == shard && acks > 0;
        if without_replica && tally.accepted > 0 {
            problems.push(format!(
                "shard {i} answered 202 while its master had no replica (REDIS_MIN_REPLICAS_ACK={acks})"
            ));
        } else if !without_replica && tally.accepted == 0 {
            let line = format!("shard {i} accepted nothing between the takeover and the {away}");
            if acks > 0 {
                known.push(format!(
                    "KNOWN: {line} (the gateway's one Redis breaker, opened by the replica-less master's WAITs; ADR 0060)"
                ));
            } else {
                problems.push(line);
            }
        }
    }
    if role != "slave" {
        problems.push(format!(
            "node {victim} did not rejoin as a replica (role {role})"
        ));
    }
    let (struck_how, back_how) = match outage {
        Outage::Kill => ("SIGKILLed", "started again"),
        Outage::Freeze => ("frozen (SIGSTOP)", "thawed (SIGCONT)"),
    };
    let accepted = after.accepted.zip(before.accepted).map(|(a, b)| a - b);
    let mut faults = vec![
        format!(
            "node {victim}, master of shard {shard} ({stream}), {struck_how} at {}; its replica node {promoted} took over {} later; node {victim} {back_how} {} after that ({} after the {}), rejoined as a {role}, cluster healthy {} later",
            clock.at(struck),
            secs(promoted_at - struck),
            secs(back - promoted_at),
            secs(back - struck),
            if outage == Outage::Kill {
                "kill"
            } else {
                "freeze"
            },
            secs(healthy - back),
        ),
        format!(
            "between the takeover and the {away}: the load got {} events accepted, {} answers 503 for want of a replica's ack, shard {shard} took {} entries on node {promoted}",
            show(accepted),
            show(
                after
                    .replica_ack_timeouts
                    .zip(before.replica_ack_timeouts)
                    .map(|(a, b)| a - b)
            ),
            show(
                after
                    .entries_added
                    .zip(before.entries_added)
                    .map(|(a, b)| a - b)
            ),
        ),
        format!(
            "canaries, a single event per shard every {} ms meanwhile: {}",
            CANARY_EVERY.as_millis(),
            canaries
                .iter()
                .enumerate()
                .map(|(i, c)| format!("shard {i} {}", c.summary()))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    ];
    faults.extend(known);
    faults.extend(problems.iter().map(|p| format!("PROBLEM: {p}")));
    Ok(Injected {
        faults,
        accepted_while_failed_over: accepted,
        problems,
    })
}

/// How often [`canaries`] asks each shard.
const CANARY_EVERY: Duration = Duration::from_millis(500);

/// What one shard's canaries got.
#[derive(Debug, Clone, Default)]
pub struct CanaryTally {
    pub sent: u32,
    pub accepted: u32,
    /// Each other answer's status (0: no answer within 2 s) and how often.
    pub other: std::collections::BTreeMap<u16, u32>,
}

impl CanaryTally {
    fn summary(&self) -> String {
        let mut out = format!("{}/{} answered 202", self.accepted, self.sent);
        for (status, n) in &self.other {
            let what = if *status == 0 {
                "no answer".to_owned()
            } else {
                status.to_string()
            };
            out.push_str(&format!(", {n}× {what}"));
        }
        out
    }
}

/// Until `until`: one single-event request per shard (an `event_id` chosen
/// so that its dedup key lands on that shard, service `chaos-canary`, which
/// the load's checks do not count) every [`CANARY_EVERY`], each on a
/// connection of its own with a 2 s timeout, no retry. What each shard
/// answered, by shard. Unlike the load's count of accepted events, it does
/// not depend on what the load generator's connections are busy retrying.
async fn canaries(target: crate::client::Target, until: Instant) -> Vec<CanaryTally> {
    let tasks: Vec<_> = (0..CLUSTER_SHARDS)
        .map(|shard| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut tally = CanaryTally::default();
                let run = uuid::Uuid::now_v7();
                let mut n = 0u64;
                while Instant::now() < until {
                    let next = Instant::now() + CANARY_EVERY;
                    let event_id = loop {
                        n += 1;
                        let id = format!("canary-{run}-{n}");
                        let key = eventline_shared::event::dedup_key(
                            CANARY_SERVICE,
                            Some(&id),
                            uuid::Uuid::nil(),
                        );
                        if eventline_shared::redis_keys::shard_of(key, CLUSTER_SHARDS) == shard {
                            break id;
                        }
                    };
                    tally.sent += 1;
                    match canary(&target, &event_id).await {
                        Some(202) => tally.accepted += 1,
                        other => *tally.other.entry(other.unwrap_or(0)).or_default() += 1,
                    }
                    sleep_until(next).await;
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await.unwrap_or_default());
    }
    tallies
}

/// The service of the canaries' events.
const CANARY_SERVICE: &str = "chaos-canary";

/// One canary event sent; the answer's status, None without one in 2 s.
async fn canary(target: &crate::client::Target, event_id: &str) -> Option<u16> {
    let body = serde_json::json!({
        "service": CANARY_SERVICE,
        "message": "is the gateway accepting?",
        "event_id": event_id,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string();
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = crate::client::Connection::open(target).await.ok()?;
        conn.send(target, crate::client::Endpoint::EVENTS, body.as_bytes())
            .await
            .ok()
            .map(|answer| answer.status)
    })
    .await
    .ok()
    .flatten()
}

/// A count, or `?` when it could not be read.
fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

/// Starts the node again (killed) or thaws it (frozen), then waits until
/// the cluster is healthy.
fn bring_back(
    cluster: &mut LocalRedisCluster,
    node: usize,
    outage: Outage,
) -> Result<(), ChaosError> {
    match outage {
        Outage::Kill => block(|| cluster.restart(node))?,
        Outage::Freeze => cluster.thaw(node)?,
    }
    block(|| cluster.wait_healthy())
}

/// Counters read at one moment, each None when it could not be read.
struct Sample {
    /// The gateway's `eventline_ingest_events_accepted_total`.
    accepted: Option<u64>,
    /// The gateway's `eventline_ingest_replica_ack_timeouts_total`.
    replica_ack_timeouts: Option<u64>,
    /// The stream's `entries-added` on the node at `url`.
    entries_added: Option<u64>,
}

impl Sample {
    async fn take(gateway: SocketAddr, url: &str, stream: &str) -> Self {
        let metrics = gateway_metrics(gateway).await;
        let counter = |name| metrics.as_deref().and_then(|text| metric(text, name));
        Sample {
            accepted: counter("eventline_ingest_events_accepted_total"),
            replica_ack_timeouts: counter("eventline_ingest_replica_ack_timeouts_total"),
            entries_added: entries_added(url, stream).await,
        }
    }
}

/// The gateway's `/metrics` text.
async fn gateway_metrics(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: chaos\r\n\r\n")
            .await
            .ok()?;
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await.ok()?;
        String::from_utf8(reply).ok()
    })
    .await
    .ok()?
}

/// The value of the unlabelled metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value: f64 = line
            .strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()?;
        Some(value as u64)
    })
}

/// `XINFO STREAM`'s `entries-added` of `stream` on the node at `url`.
async fn entries_added(url: &str, stream: &str) -> Option<u64> {
    tokio::time::timeout(Duration::from_secs(1), async {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        worker::stream_stats::entries_added(&mut conn, stream)
            .await
            .ok()
            .flatten()
    })
    .await
    .ok()?
}

/// A stream entry's fields, as raw bytes.
type RawEntry = Vec<(&'static str, Vec<u8>)>;

/// One round of entries no worker can store.
fn poison_entries(round: u64) -> Result<Vec<RawEntry>, ChaosError> {
    use eventline_shared::stream_codec::{self, FIELD_EVENT, FIELD_VERSION, FORMAT_V1};
    let now = chrono::Utc::now();
    let event = |message: &str, metadata: &str| eventline_shared::EnrichedEvent {
        id: uuid::Uuid::now_v7(),
        service: "chaos-poison".into(),
        message: message.into(),
        ts: now,
        ingested_at: now,
        event_id: Some(format!("poison-{round}-{message}")),
        metadata: Some(metadata.into()),
        request_id: None,
    };
    let encode = |e| {
        stream_codec::encode(&e).map_err(|e| ChaosError::Setup(format!("encoding poison: {e}")))
    };
    let v = (FIELD_VERSION, FORMAT_V1.as_bytes().to_vec());
    Ok(vec![
        vec![v.clone(), (FIELD_EVENT, b"\xc1\xc1 not msgpack".to_vec())],
        vec![v.clone()],
        vec![
            v.clone(),
            (FIELD_EVENT, encode(event("nul \u{0} inside", "{}"))?),
        ],
        vec![
            v,
            (
                FIELD_EVENT,
                encode(event("bad metadata", "{\"unclosed\":"))?,
            ),
        ],
    ])
}

fn freeze_workers(stack: &Stack, signal: &str) -> Result<(), ChaosError> {
    for w in &stack.workers {
        w.signal(signal)?;
    }
    Ok(())
}

/// Runs a blocking server control (pg_ctl, a Redis restart) without stalling
/// the load generator's tasks on this thread.
fn block<T>(
    f: impl FnOnce() -> Result<T, eventline_shared::testkit::servers::ServerError>,
) -> Result<T, ChaosError> {
    Ok(tokio::task::block_in_place(f)?)
}
