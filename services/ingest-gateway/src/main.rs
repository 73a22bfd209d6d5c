//! `ingest-gateway`: parse the configuration, set up logging, bind, run.

use anyhow::Context;

// mimalloc: the hot path allocates per request; glibc malloc was ~13% of the
// gateway's CPU under load (docs/adr/0007-ingest-hot-path.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ingest_gateway::config::{Config, DEFAULT_ADDR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = eventline_shared::config::parse_or_exit();
    eventline_shared::telemetry::init(&config.telemetry)?;
    if let Err(e) = config.check() {
        eprintln!("ingest-gateway: {e}");
        std::process::exit(64);
    }
    let shutdown = eventline_shared::shutdown::on_signal().context("installing signal handlers")?;
    let listener = eventline_shared::server::bind(config.listen.addr_or(DEFAULT_ADDR)).await?;
    if let Err(e) = ingest_gateway::run(config, listener, shutdown).await {
        eprintln!("ingest-gateway: {e}");
        std::process::exit(e.exit_code());
    }
    Ok(())
}
