//! The command line: `run` (the load), `copy-ceiling`, `entry-size` and
//! `bench-report` (the pieces `make bench` puts together), and `chaos`
//! (`make chaos`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::event_gen::{EventShape, Format, MetadataKind};
use crate::scenario::{Mode, Overrides, ShapeOverrides, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "eventline-load",
    version,
    about = "Load generator and benchmark for eventline"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send events to a gateway and report throughput, latency and (with
    /// --e2e) loss, duplicates and lag in PostgreSQL.
    Run(Box<RunArgs>),
    /// Measure a bare COPY of generated rows into a scratch copy of `events`.
    CopyCeiling(CopyArgs),
    /// Print the mean stream-entry size (bytes) of generated events.
    EntrySize(ShapeArgs),
    /// Print the bench table from a bench-results directory and write its summary.json.
    BenchReport { dir: PathBuf },
    /// Run the load end to end on a local stack of its own while killing,
    /// freezing and cutting its parts; check every accepted event was stored
    /// once (`make chaos`).
    Chaos(crate::chaos::ChaosArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The gateway, http://host:port.
    #[arg(
        long,
        env = "EVENTLINE_LOAD_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// API key with the ingest scope.
    #[arg(long, env = "EVENTLINE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from this file (e.g. .run/dev-api-key).
    #[arg(long, conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// A scenario file (TOML, see load-tests/scenarios/); flags override it.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// open: send at --rate on a schedule; closed: each connection as fast as answers come.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Target events per second (open loop; one phase of --duration).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Multiply every phase's rate (e.g. to run a scenario at half rate).
    #[arg(long)]
    pub rate_scale: Option<f64>,
    /// How long to send: 500ms, 30s, 10m, 1h.
    #[arg(long, value_parser = duration)]
    pub duration: Option<Duration>,
    /// Stop after this many events.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Keep-alive connections.
    #[arg(long, short = 'c')]
    pub connections: Option<u32>,
    /// Events per request on /v1/events/batch; 0 for one event per request on
    /// /v1/events. With --format otlp: records per /v1/logs request (0: one).
    #[arg(long, short = 'b')]
    pub batch_size: Option<u32>,
    /// Request bodies: json (eventline's events) or otlp (the same events as
    /// OTLP/HTTP protobuf logs on /v1/logs, grouped by service, every record
    /// with an event_id as log.record.uid).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub shape: ShapeFlags,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime threads of the generator (it shares the machine with what it measures).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How long after the send window to wait for answers and retries.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,
    /// After sending, wait for every accepted event in PostgreSQL and check
    /// loss, duplicates and lag.
    #[arg(long, requires = "database_url")]
    pub e2e: bool,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How long to wait for the accepted events to be stored.
    #[arg(long, default_value = "120s", value_parser = duration)]
    pub e2e_timeout: Duration,
    /// With --e2e: a shell command run once every accepted event is stored,
    /// before the per-key check (which reads all of the run's rows), and
    /// waited for. `make bench` takes each process's CPU time there, so a
    /// run's cost is the pipeline's, not the check's. The command gets this
    /// process's id in EVENTLINE_LOAD_PID.
    #[arg(long, requires = "e2e", value_name = "COMMAND")]
    pub on_drained: Option<String>,
    /// Sample one accepted event per this interval for the lag measurement.
    #[arg(long, default_value = "20ms", value_parser = duration)]
    pub lag_sample_every: Duration,
    /// How often the lag poller looks for the sampled ids.
    #[arg(long, default_value = "10ms", value_parser = duration)]
    pub lag_poll: Duration,
    /// Name of the run in the report.
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Event-shape flags (override the scenario's `[events]`).
#[derive(Debug, Clone, Default, Args)]
pub struct ShapeFlags {
    /// Distinct services.
    #[arg(long)]
    pub services: Option<u32>,
    /// Share of events with a client event_id.
    #[arg(long)]
    pub event_id_share: Option<f64>,
    /// Share of events that re-send a recent event (same service and event_id).
    #[arg(long)]
    pub duplicate_share: Option<f64>,
    /// Median message length in bytes.
    #[arg(long)]
    pub message_median: Option<u32>,
    #[arg(long, value_enum)]
    pub metadata: Option<MetadataKind>,
}

impl ShapeFlags {
    pub fn overrides(&self) -> ShapeOverrides {
        ShapeOverrides {
            services: self.services,
            event_id_share: self.event_id_share,
            duplicate_share: self.duplicate_share,
            message_median: self.message_median,
            metadata: self.metadata,
        }
    }

    pub fn shape(&self) -> Result<EventShape, String> {
        let d = EventShape::default();
        let shape = EventShape {
            services: self.services.unwrap_or(d.services),
            event_id_share: self.event_id_share.unwrap_or(d.event_id_share),
            duplicate_share: self.duplicate_share.unwrap_or(d.duplicate_share),
            message_median: self.message_median.unwrap_or(d.message_median),
            metadata: self.metadata.unwrap_or(d.metadata),
        };
        shape.check()?;
        Ok(shape)
    }
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            mode: self.mode,
            connections: self.connections,
            format: self.format,
            batch_size: self.batch_size,
            duration: self.duration,
            rate: self.rate,
            rate_scale: self.rate_scale,
            max_events: self.max_events,
            shape: self.shape.overrides(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ShapeArgs {
    #[command(flatten)]
    pub shape: ShapeFlags,
    /// Events to average over.
    #[arg(long, default_value_t = 10_000)]
    pub samples: usize,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[command(flatten)]
    pub shape: ShapeFlags,
    /// Rows to COPY.
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// Rows per COPY (one transaction each); the worker's batch size.
    #[arg(long, default_value_t = 5000)]
    pub chunk: usize,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
