//! eventline's load generator.
//!
//! - [`cli`]: the command line;
//! - [`scenario`]: scenario files (TOML) and the resolved plan of a run;
//! - [`event_gen`]: realistic events and request bodies;
//! - [`rng`]: the seedable random source behind them;
//! - [`client`]: one keep-alive HTTP/1.1 connection to the gateway;
//! - [`driver`]: open- and closed-loop sending, retries, the progress line;
//! - [`stats`]: HDR histograms, status counts and the report;
//! - [`e2e`]: loss, duplicates and lag, checked in PostgreSQL;
//! - [`ceiling`]: the raw COPY ceiling and the stream-entry size for XADD;
//! - [`bench_report`]: the `make bench` table;
//! - [`chaos`]: the chaos runner (`make chaos`).

pub mod bench_report;
pub mod ceiling;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod driver;
pub mod e2e;
pub mod event_gen;
pub mod rng;
pub mod scenario;
pub mod stats;

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::mpsc;

use crate::cli::RunArgs;
use crate::client::Target;
use crate::driver::{LagTap, RunConfig};
use crate::scenario::{Plan, Scenario};
use crate::stats::Report;

/// A tag no other run uses, for service names and event ids.
pub fn run_tag() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("lt{:08x}", u32::from_le_bytes(bytes))
}

/// Resolves the plan from the flags and the scenario file.
pub fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    Ok(Plan::resolve(&scenario, &args.overrides())?)
}

/// Runs the load and, with `--e2e`, the checks in PostgreSQL.
pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let plan = plan(args)?;
    let api_key = api_key(args)?;
    let target = Target::parse(&args.target, api_key.as_deref()).map_err(anyhow::Error::msg)?;
    let tag = run_tag();
    let services = event_gen::service_names(&tag, plan.shape.services);
    let since = Utc::now() - chrono::Duration::minutes(5);

    let pool = e2e_pool(args).await?;
    let (lag, lag_task) = match &pool {
        Some(pool) => {
            let (tap, task) = tap_lag(pool, args);
            (Some(tap), Some(task))
        }
        None => (None, None),
    };

    let config = RunConfig {
        target,
        plan: plan.clone(),
        seed: args.seed,
        run_tag: tag,
        services: services.clone(),
        drain_timeout: args.drain_timeout,
        keep_ids: pool.is_some(),
        progress: !args.quiet,
        lag,
    };
    let (elapsed, recorder) = driver::run(config).await;
    let mut totals_recorder = recorder;
    let totals = std::mem::replace(
        &mut totals_recorder.totals,
        std::sync::Mutex::new(empty_totals()),
    )
    .into_inner()
    .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut report = Report::new(args.label.clone(), plan, elapsed, &totals_recorder, &totals);

    if let Some(pool) = &pool {
        if !args.quiet {
            eprintln!(
                "waiting for {} accepted events in PostgreSQL…",
                totals.accepted.len()
            );
        }
        let mut e2e = e2e::verify(
            pool,
            &services,
            since,
            &totals.accepted,
            args.e2e_timeout,
            args.on_drained.as_deref(),
        )
        .await?;
        if let Some(task) = lag_task {
            let lag = task.await?;
            e2e.lag = (lag.percentiles.count > 0).then_some(lag.percentiles);
            e2e.lag_samples_unseen = lag.unseen;
            e2e.lag_resolution_ms = lag.resolution.as_secs_f64() * 1000.0;
        }
        report.e2e = Some(e2e);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The API key: `--api-key`, or the contents of `--api-key-file`.
fn api_key(args: &RunArgs) -> anyhow::Result<Option<String>> {
    Ok(match (&args.api_key, &args.api_key_file) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        (None, None) => None,
    })
}

/// With `--e2e` and a database URL, a small pool for the checks.
async fn e2e_pool(args: &RunArgs) -> anyhow::Result<Option<sqlx::PgPool>> {
    Ok(match (&args.e2e, &args.database_url) {
        (true, Some(url)) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(url)
                .await
                .context("connecting to PostgreSQL for --e2e")?,
        ),
        _ => None,
    })
}

/// The tap the driver samples accepted events into, and the task that
/// polls PostgreSQL until each sample is queryable.
fn tap_lag(pool: &sqlx::PgPool, args: &RunArgs) -> (LagTap, tokio::task::JoinHandle<e2e::Lag>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(e2e::poll_lag(
        pool.clone(),
        rx,
        args.lag_poll,
        args.e2e_timeout,
    ));
    let tap = LagTap {
        tx,
        every: args.lag_sample_every,
    };
    (tap, task)
}

fn empty_totals() -> stats::Totals {
    stats::Totals {
        latency: stats::histogram(),
        service_time: stats::histogram(),
        interval: stats::histogram(),
        statuses: Default::default(),
        accepted: Vec::new(),
        rejected_events: 0,
    }
}

/// The runtime for a run: `threads` worker threads (1: current thread).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Default wait between retries when a 429/503 carries no Retry-After.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
