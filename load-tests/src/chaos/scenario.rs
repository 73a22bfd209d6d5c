//! The faults, when they strike and for how long. Every scenario sends load
//! for the whole window; its faults start after a quiet start and end before
//! the window does, so the checks afterwards see the pipeline recover while
//! load still runs.

use std::time::Duration;

use tokio::time::Instant;

use super::ChaosError;
use super::proxy::Fault;
use super::stack::Stack;
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
}

/// The longest stall the poison scenario allows.
pub const POISON_MAX_STALL: Duration = Duration::from_secs(10);

/// Poison entries written per round.
pub const POISON_PER_ROUND: u64 = 4;

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::WorkerKill,
        Kind::PostgresStop,
        Kind::RedisKill,
        Kind::RedisFreeze,
        Kind::GatewayRestart,
        Kind::Network,
        Kind::Overload,
        Kind::Poison,
    ];

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

    /// When the first fault strikes, after the load has settled.
    fn onset(&self) -> Duration {
        (self.window / 5).max(Duration::from_secs(1))
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

/// Injects `kind`'s faults on `stack` (the load started at `started`);
/// returns a line per fault. Every fault is undone before it returns, also
/// on error where that is possible.
pub async fn inject(
    stack: &mut Stack,
    kind: Kind,
    t: &Timing,
    seed: u64,
    started: Instant,
) -> Result<Vec<String>, ChaosError> {
    let clock = Clock {
        started,
        onset: started + t.onset(),
    };
    sleep_until(clock.onset).await;
    let line = match kind {
        Kind::WorkerKill => kill_workers(stack, t, seed, &clock).await?,
        Kind::PostgresStop => stop_postgres(stack, t, &clock).await?,
        Kind::RedisKill => kill_redis(stack, &clock)?,
        Kind::RedisFreeze => freeze_redis(stack, t, &clock).await?,
        Kind::GatewayRestart => restart_gateway(stack, t, &clock).await?,
        Kind::Network => degrade_network(stack, t, &clock).await,
        Kind::Poison => write_poison(stack, t, &clock).await?,
        Kind::Overload => freeze_every_worker(stack, t, &clock).await?,
    };
    Ok(vec![line])
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
    block(|| stack.redis.kill())?;
    block(|| stack.redis.up())?;
    Ok(format!(
        "Redis SIGKILLed at {}, started again from its AOF in {}",
        clock.at(killed),
        secs(killed.elapsed())
    ))
}

async fn freeze_redis(stack: &mut Stack, t: &Timing, clock: &Clock) -> Result<String, ChaosError> {
    stack.redis.freeze()?;
    tokio::time::sleep(t.redis_frozen).await;
    stack.redis.thaw()?;
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
    let client = redis::Client::open(stack.redis.url())?;
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
