//! The chaos runner (`eventline-load chaos`, `make chaos`): the load
//! generator, end to end, against a real local stack while faults are
//! injected, one scenario after the other on the same stack; after each, the
//! accepted events are checked against PostgreSQL. The `cluster-*`
//! scenarios run afterwards on a second stack whose Redis is a Redis Cluster
//! (three masters, three replicas, `STREAM_SHARDS=3`), once per gateway
//! `REDIS_MIN_REPLICAS_ACK` setting they are measured with.
//!
//! Per scenario it reports events accepted, stored, lost, duplicated,
//! dead-lettered, the longest stall (the longest time nothing was committed
//! while the group had entries waiting) and whether the stream drained
//! (pending list empty, nothing undelivered) within 60 s of the last fault.
//! Every event carries a client `event_id`, so a request the load generator
//! re-sends after a broken connection is one event, as it would be for a
//! real client retrying.
//!
//! - [`stack`]: Redis (AOF, `appendfsync everysec`; one server or a
//!   cluster), PostgreSQL, the proxy, the gateway and the workers as child
//!   processes;
//! - [`proxy`]: the TCP proxy between the workers and PostgreSQL;
//! - [`scenario`]: the faults and their timing;
//! - [`probe`]: what Redis and PostgreSQL say about progress.

pub mod probe;
pub mod proxy;
pub mod scenario;
pub mod stack;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use scenario::{Kind, Timing};
use stack::{CLUSTER_SHARDS, RedisBackend, RedisMode, Stack, StackOptions};

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Server(#[from] eventline_shared::testkit::servers::ServerError),
    #[error("PostgreSQL: {0}")]
    Db(#[source] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("setting up: {0}")]
    Setup(String),
    #[error("{} not found: build it first (cargo build --release -p ingest-gateway -p worker), or pass --bin-dir", .0.display())]
    MissingBinary(PathBuf),
    #[error("{0} exited: {1}")]
    Exited(String, String),
    #[error("{0} did not come up")]
    NotReady(String),
    #[error("load: {0}")]
    Load(String),
}

impl ChaosError {
    pub fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        ChaosError::Io(what.into(), e)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Where the ingest-gateway and worker binaries are (default: beside
    /// this one; for a test binary, the directory above it).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Scratch directory for the servers' data and the logs (default: a new
    /// one under the temp dir, removed afterwards unless --keep).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the scratch directory (logs, Redis AOF, PostgreSQL data).
    #[arg(long)]
    pub keep: bool,
    /// Short faults and windows, for `make test` (about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Only these scenarios (comma-separated), in this order (the
    /// `cluster-*` ones after the others, on the Redis Cluster stack).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub scenarios: Vec<Kind>,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Events per second sent during each scenario (default 8000; --quick 1000).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load per scenario (default 45; --quick 8, and 12 for the
    /// `cluster-*` scenarios).
    #[arg(long)]
    pub window: Option<u64>,
    /// Seed of the fault schedule and the events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The services' `RUST_LOG` (their logs are in the scratch directory;
    /// keep it with --keep), e.g. `warn,redis=debug` to follow the Redis
    /// client through a failover.
    #[arg(long, default_value = "warn")]
    pub service_log: String,
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    /// On the Redis Cluster stack: the gateway's `REDIS_MIN_REPLICAS_ACK`
    /// (None on the single-Redis stack).
    pub min_replicas_ack: Option<u32>,
    /// Whether losing accepted events is the documented behaviour here, not
    /// a failure: a failover with `REDIS_MIN_REPLICAS_ACK=0` (asynchronous
    /// replication) may lose what the master acknowledged and had not yet
    /// sent to its replica. The loss is still counted and shown; a stream
    /// that did not drain fails the scenario all the same (what is missing
    /// may be waiting in it).
    pub loss_allowed: bool,
    pub faults: Vec<String>,
    /// `cluster-*`: events of the load accepted between the replica's
    /// takeover and the old master's return (the gateway's counter).
    pub accepted_while_failed_over: Option<u64>,
    /// What went wrong beyond the counts; any fails the scenario.
    pub problems: Vec<String>,
    pub accepted: u64,
    pub stored: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub dead_lettered: u64,
    /// What this scenario wrote that must be dead-lettered.
    pub expected_dead_letters: u64,
    pub retried_429_503: u64,
    pub transport_errors: u64,
    pub abandoned: u64,
    pub longest_stall_seconds: f64,
    /// The scenario fails when a stall lasts this long.
    pub max_stall_seconds: Option<f64>,
    /// Seconds from the end of the last fault to pending 0 and lag 0; None
    /// when that did not happen within 60 s.
    pub drained_after_seconds: Option<f64>,
    /// The same from the end of the load (the earliest it can be empty).
    pub drained_after_load_seconds: Option<f64>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        (self.lost == 0 || self.loss_allowed)
            && self.duplicated == 0
            && self.problems.is_empty()
            && self.unexpected == 0
            && self.abandoned == 0
            && self.dead_lettered == self.expected_dead_letters
            && self
                .max_stall_seconds
                .is_none_or(|max| self.longest_stall_seconds < max)
            && self.drained_after_seconds.is_some()
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub quick: bool,
    pub workers: usize,
    pub rate: f64,
    pub window_seconds: u64,
    /// The window of the `cluster-*` scenarios.
    pub cluster_window_seconds: u64,
    pub scenarios: Vec<Outcome>,
    pub accepted: u64,
    pub lost: u64,
    /// Of `lost`, what scenarios that allow a loss lost (and drained).
    pub lost_allowed: u64,
    pub duplicated: u64,
    /// Every service exited 0 on SIGTERM at the end.
    pub clean_shutdown: bool,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.clean_shutdown && self.scenarios.iter().all(Outcome::ok)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<W$} {:>9} {:>9} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9}  drained",
            "scenario",
            "accepted",
            "stored",
            "lost",
            "dup",
            "dlq",
            "429/503",
            "stall s",
            "conn err"
        );
        let mut on_cluster = false;
        for o in &self.scenarios {
            if o.min_replicas_ack.is_some() && !on_cluster {
                on_cluster = true;
                let _ = writeln!(
                    out,
                    "on a Redis Cluster (3 masters, 3 replicas, STREAM_SHARDS={CLUSTER_SHARDS}); ack=n: the gateway's REDIS_MIN_REPLICAS_ACK"
                );
            }
            let drained = match (o.drained_after_seconds, o.drained_after_load_seconds) {
                (Some(fault), Some(load)) => {
                    format!("yes: {load:.1} s after the load, {fault:.1} s after the last fault")
                }
                _ => "NO (not within 60 s of the last fault)".into(),
            };
            let label = match o.min_replicas_ack {
                Some(n) => format!("{} ack={n}", o.scenario),
                None => o.scenario.clone(),
            };
            let lost = format!("{}{}", o.lost, if o.loss_allowed { "*" } else { "" });
            let _ = writeln!(
                out,
                "{:<W$} {:>9} {:>9} {:>6} {:>5} {:>5} {:>8} {:>8.1} {:>9}  {}",
                label,
                o.accepted,
                o.stored,
                lost,
                o.duplicated,
                o.dead_lettered,
                o.retried_429_503,
                o.longest_stall_seconds,
                o.transport_errors,
                drained
            );
            for f in &o.faults {
                let _ = writeln!(out, "{:<W$}   {f}", "");
            }
            if o.loss_allowed {
                let why = if o.drained_after_seconds.is_some() {
                    "* loss allowed, not a failure: with REDIS_MIN_REPLICAS_ACK=0 a 202 does not wait for a replica, and a failover loses what the master had not replicated (ADR 0060)"
                } else {
                    "* the stream did not drain: what is missing may still wait in it, not be lost to the failover"
                };
                let _ = writeln!(out, "{:<W$}   {why}", "");
            }
        }
        let _ = writeln!(
            out,
            "{:<W$} {:>9} {:>9} {:>6} {:>5}",
            "all",
            self.accepted,
            self.scenarios.iter().map(|o| o.stored).sum::<u64>(),
            self.lost,
            self.duplicated
        );
        let _ = writeln!(
            out,
            "services stopped with SIGTERM: {}\n{}",
            if self.clean_shutdown {
                "all exited 0"
            } else {
                "NOT all exited 0"
            },
            match (self.ok(), self.lost_allowed) {
                (true, 0) =>
                    "PASS: nothing lost, nothing stored twice, drained after every fault".to_owned(),
                (true, n) => format!(
                    "PASS: nothing stored twice, drained after every fault; nothing lost but the {n} events a failover with REDIS_MIN_REPLICAS_ACK=0 may lose"
                ),
                (false, _) => "FAIL".to_owned(),
            }
        );
        out
    }
}

/// The width of the table's first column.
const W: usize = 22;

fn default_bin_dir() -> Result<PathBuf, ChaosError> {
    let exe = std::env::current_exe().map_err(|e| ChaosError::io("locating this binary", e))?;
    let mut dir = exe
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| ChaosError::Setup("this binary has no directory".into()))?;
    // A test binary lives in target/<profile>/deps; the services one above.
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The scratch directory, and whether it is a temporary one of this run.
fn scratch_dir(args: &ChaosArgs) -> (PathBuf, bool) {
    match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(eventline_shared::testkit::unique_name("eventline-chaos")),
            true,
        ),
    }
}

fn stack_options(
    args: &ChaosArgs,
    timing: &Timing,
    dir: PathBuf,
    redis: RedisMode,
) -> Result<StackOptions, ChaosError> {
    Ok(StackOptions {
        bin_dir: match &args.bin_dir {
            Some(d) => d.clone(),
            None => default_bin_dir()?,
        },
        dir,
        workers: args.workers.max(1),
        high_water: timing.high_water,
        worker_env: timing.worker_env(),
        redis,
        log_filter: args.service_log.clone(),
    })
}

/// One run of a scenario: on the cluster stack, with the gateway's
/// `REDIS_MIN_REPLICAS_ACK` (`cluster-failover` runs once per setting).
#[derive(Debug, Clone, Copy)]
struct Run {
    kind: Kind,
    min_replicas_ack: Option<u32>,
}

/// The runs of `kinds` on each stack: the single-Redis one's in the order
/// given, then the cluster one's.
fn plan_runs(kinds: &[Kind]) -> (Vec<Run>, Vec<Run>) {
    let single = kinds
        .iter()
        .filter(|k| !k.needs_cluster())
        .map(|&kind| Run {
            kind,
            min_replicas_ack: None,
        })
        .collect();
    let cluster = kinds
        .iter()
        .filter(|k| k.needs_cluster())
        .flat_map(|&kind| {
            kind.replica_acks().iter().map(move |&n| Run {
                kind,
                min_replicas_ack: Some(n),
            })
        })
        .collect();
    (single, cluster)
}

/// Runs every scenario (the single-Redis stack's, then the cluster
/// stack's, each stack started for its scenarios and stopped after them)
/// and returns what happened.
pub async fn run(args: &ChaosArgs) -> Result<Summary, ChaosError> {
    let timing = Timing::new(args.quick, args.window);
    let rate = args
        .rate
        .unwrap_or(if args.quick { 1000.0 } else { 8000.0 });
    let kinds = if args.scenarios.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let (single, cluster) = plan_runs(&kinds);
    let (dir, temp) = scratch_dir(args);
    eprintln!(
        "chaos: {} scenario runs, {} workers, {rate} events/s for {} s each ({} s on the cluster); data and logs in {}",
        single.len() + cluster.len(),
        args.workers.max(1),
        timing.window.as_secs(),
        timing.cluster_window.as_secs(),
        dir.display()
    );
    // SIGINT or SIGTERM ends the run with the servers and services stopped
    // (their owners dropped) rather than left behind.
    let interrupted = eventline_shared::shutdown::on_signal()
        .map_err(|e| ChaosError::io("installing signal handlers", e))?;
    let load = Load {
        timing: &timing,
        rate,
        seed: args.seed,
    };
    let mut outcomes = Vec::new();
    let mut failure = None;
    let mut clean_shutdown = true;
    let stacks = [
        (RedisMode::Single, single, dir.clone()),
        (RedisMode::Cluster, cluster, dir.join("cluster")),
    ];
    for (mode, runs, stack_dir) in stacks {
        if runs.is_empty() || failure.is_some() || interrupted.is_cancelled() {
            continue;
        }
        let options = stack_options(args, &timing, stack_dir, mode)?;
        if mode == RedisMode::Cluster {
            eprintln!("chaos: starting the Redis Cluster stack");
        }
        let mut stack = match Stack::start(&options).await {
            Ok(stack) => stack,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if args.keep {
            stack.keep_data();
        }
        let first_seed = outcomes.len() as u64;
        let (mut done, failed) =
            run_scenarios(&mut stack, &runs, &load, first_seed, &interrupted).await;
        outcomes.append(&mut done);
        failure = failed;
        if let Err(e) = stack.stop().await {
            eprintln!("chaos: stopping the services: {e}");
            clean_shutdown = false;
        }
        if args.keep
            && let Err(e) = stack.save_cluster_logs()
        {
            eprintln!("chaos: keeping the cluster's logs: {e}");
        }
        drop(stack);
    }
    // Ends the signal watcher's task.
    interrupted.cancel();
    if temp && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let summary = Summary {
        quick: args.quick,
        workers: args.workers.max(1),
        rate,
        window_seconds: timing.window.as_secs(),
        cluster_window_seconds: timing.cluster_window.as_secs(),
        accepted: outcomes.iter().map(|o| o.accepted).sum(),
        lost: outcomes.iter().map(|o| o.lost).sum(),
        lost_allowed: outcomes
            .iter()
            .filter(|o| o.loss_allowed && o.drained_after_seconds.is_some())
            .map(|o| o.lost)
            .sum(),
        duplicated: outcomes.iter().map(|o| o.duplicated).sum(),
        scenarios: outcomes,
        clean_shutdown,
    };
    if let Some(path) = &args.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| ChaosError::Setup(e.to_string()))?;
        std::fs::write(path, json)
            .map_err(|e| ChaosError::io(format!("writing {}", path.display()), e))?;
    }
    Ok(summary)
}

/// The load every scenario runs under: its timing, rate, and the seed of
/// the first scenario (the next ones count up from it).
struct Load<'a> {
    timing: &'a Timing,
    rate: f64,
    seed: u64,
}

/// The runs one after the other until one fails or the run is interrupted:
/// the outcomes so far, and the error that ended them. The `i`-th run's
/// seed is the load's seed + `first_seed` + `i`.
async fn run_scenarios(
    stack: &mut Stack,
    runs: &[Run],
    load: &Load<'_>,
    first_seed: u64,
    interrupted: &CancellationToken,
) -> (Vec<Outcome>, Option<ChaosError>) {
    let mut outcomes = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let setting = run
            .min_replicas_ack
            .map(|n| format!(" with REDIS_MIN_REPLICAS_ACK={n}"))
            .unwrap_or_default();
        eprintln!(
            "chaos: scenario {}{setting} ({}/{})",
            run.kind.name(),
            i + 1,
            runs.len()
        );
        let seed = load.seed + first_seed + i as u64;
        let result = tokio::select! {
            r = run_scenario(stack, *run, load.timing, load.rate, seed) => r,
            () = interrupted.cancelled() => Err(ChaosError::Setup("interrupted".into())),
        };
        match result {
            Ok(outcome) => {
                eprintln!(
                    "chaos: {}{setting}: {} accepted, {} lost, {} duplicated",
                    outcome.scenario, outcome.accepted, outcome.lost, outcome.duplicated
                );
                outcomes.push(outcome);
            }
            Err(e) => return (outcomes, Some(e)),
        }
    }
    (outcomes, None)
}

/// The arguments of the scenario's load: open loop at `rate` events/s for
/// the window, in requests of the scenario's batch size, every event with an
/// `event_id`, checked end to end.
fn load_args(
    stack: &Stack,
    kind: Kind,
    timing: &Timing,
    rate: f64,
    seed: u64,
) -> Result<Box<crate::cli::RunArgs>, ChaosError> {
    let window = timing.window_of(kind).as_secs().to_string();
    let rate_arg = format!("{rate}");
    let seed_arg = seed.to_string();
    let batch_arg = kind.batch_size().to_string();
    // Single-event requests each hold a connection until answered: more of
    // them keep the same rate through a stall.
    let connections = if kind.batch_size() == 0 { "64" } else { "16" };
    let target = stack.gateway_url();
    let argv = [
        "eventline-load",
        "run",
        "--target",
        &target,
        "--api-key",
        &stack.api_key,
        "--mode",
        "open",
        "--rate",
        &rate_arg,
        "--duration",
        &format!("{window}s"),
        "-c",
        connections,
        "-b",
        &batch_arg,
        "--event-id-share",
        "1",
        "--seed",
        &seed_arg,
        "--e2e",
        "--database-url",
        &stack.database_url,
        "--drain-timeout",
        "90s",
        "--e2e-timeout",
        "120s",
        "--lag-poll",
        "100ms",
        "--label",
        kind.name(),
        "--quiet",
    ];
    let Command::Run(run_args) = Cli::try_parse_from(argv)
        .map_err(|e| ChaosError::Load(e.to_string()))?
        .command
    else {
        return Err(ChaosError::Load("not a run command".into()));
    };
    Ok(run_args)
}

/// When the stream drained: every entry delivered and acked, within 60 s of
/// the last fault (and once the load has stopped at `load_end`, so that
/// "empty" is not a moment between two batches). None when it did not.
async fn drained_at(
    probe: &probe::Probe,
    load_end: Instant,
    last_fault_end: Instant,
) -> Option<Instant> {
    tokio::time::sleep_until(load_end).await;
    let drained_at = probe
        .wait_drained(last_fault_end + Duration::from_secs(60))
        .await;
    match drained_at {
        Ok(at) => eprintln!(
            "chaos:   drained {:.1} s after the load, {:.1} s after the last fault",
            (at - load_end).as_secs_f64(),
            (at - last_fault_end).as_secs_f64()
        ),
        Err(b) => eprintln!("chaos:   NOT drained within 60 s of the last fault: {b:?}"),
    }
    drained_at.ok()
}

/// What a scenario measured, beside the load's report.
struct Measured {
    injected: scenario::Injected,
    dead_lettered: u64,
    longest_stall: Duration,
    load_end: Instant,
    last_fault_end: Instant,
    drained_at: Option<Instant>,
}

/// The probe of the stack's Redis (all shards on the cluster).
async fn probe(stack: &Stack) -> Result<probe::Probe, ChaosError> {
    let nodes;
    let target = match &stack.redis {
        RedisBackend::Single(redis) => {
            nodes = vec![redis.url()];
            probe::Target::Single(&nodes[0])
        }
        RedisBackend::Cluster(cluster) => {
            nodes = cluster.urls();
            probe::Target::Cluster {
                nodes: &nodes,
                shards: CLUSTER_SHARDS,
            }
        }
    };
    probe::Probe::new(target, &stack.database_url).await
}

async fn run_scenario(
    stack: &mut Stack,
    run: Run,
    timing: &Timing,
    rate: f64,
    seed: u64,
) -> Result<Outcome, ChaosError> {
    let kind = run.kind;
    if let Some(n) = run.min_replicas_ack {
        // Healthy before it starts (the last scenario waited for it too),
        // and the gateway restarted when its setting changes.
        let cluster = stack.cluster()?;
        tokio::task::block_in_place(|| cluster.wait_healthy())?;
        stack.set_min_replicas_ack(n).await?;
    }
    let probe = probe(stack).await?;
    let dlq_before = probe.dlq_len().await.unwrap_or(0);
    let stop_watch = CancellationToken::new();
    let watcher = tokio::spawn(probe.clone().longest_stall(stop_watch.clone()));

    let run_args = load_args(stack, kind, timing, rate, seed)?;
    let load = tokio::spawn(async move { crate::run(&run_args).await });

    let started = Instant::now();
    let injected = scenario::inject(stack, kind, timing, seed, started).await;
    let last_fault_end = Instant::now();
    let injected = injected?;
    eprintln!(
        "chaos:   faults over at {:.1} s",
        (last_fault_end - started).as_secs_f64()
    );
    let load_end = started + timing.window_of(kind);
    let drained_at = drained_at(&probe, load_end, last_fault_end).await;

    let report = load
        .await
        .map_err(|e| ChaosError::Load(e.to_string()))?
        .map_err(|e| ChaosError::Load(format!("{e:#}")))?;
    eprintln!("chaos:   load and checks done");
    stop_watch.cancel();
    let longest_stall = watcher.await.unwrap_or_default();
    let dlq_after = probe.dlq_len().await.unwrap_or(dlq_before);
    let measured = Measured {
        injected,
        dead_lettered: dlq_after.saturating_sub(dlq_before),
        longest_stall,
        load_end,
        last_fault_end,
        drained_at,
    };
    outcome(run, timing, report, measured)
}

/// The scenario's outcome from the load's report and what it measured.
fn outcome(
    run: Run,
    timing: &Timing,
    report: crate::stats::Report,
    m: Measured,
) -> Result<Outcome, ChaosError> {
    let e2e = report
        .e2e
        .ok_or_else(|| ChaosError::Load("no end-to-end check".into()))?;
    let retried = report
        .statuses
        .iter()
        .filter(|(s, _)| **s == 429 || **s == 503)
        .map(|(_, n)| *n)
        .sum();
    let (expected_dead_letters, max_stall) = match run.kind {
        Kind::Poison => (
            timing.poison_rounds * scenario::POISON_PER_ROUND,
            Some(scenario::POISON_MAX_STALL.as_secs_f64()),
        ),
        _ => (0, None),
    };
    Ok(Outcome {
        scenario: run.kind.name().into(),
        min_replicas_ack: run.min_replicas_ack,
        loss_allowed: run.kind == Kind::ClusterFailover && run.min_replicas_ack == Some(0),
        expected_dead_letters,
        max_stall_seconds: max_stall,
        faults: m.injected.faults,
        accepted_while_failed_over: m.injected.accepted_while_failed_over,
        problems: m.injected.problems,
        accepted: e2e.expected,
        stored: e2e.stored,
        lost: e2e.lost,
        duplicated: e2e.duplicates,
        unexpected: e2e.unexpected,
        dead_lettered: m.dead_lettered,
        retried_429_503: retried,
        transport_errors: report.transport_errors,
        abandoned: report.abandoned,
        longest_stall_seconds: m.longest_stall.as_secs_f64(),
        drained_after_seconds: m.drained_at.map(|at| (at - m.last_fault_end).as_secs_f64()),
        drained_after_load_seconds: m.drained_at.map(|at| (at - m.load_end).as_secs_f64()),
    })
}
