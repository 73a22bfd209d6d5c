//! `worker`: parse the configuration, set up logging, connect, serve the
//! health port and move events until SIGTERM. See the library crate.

use anyhow::Context;
use worker::config::{Config, DEFAULT_LISTEN};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = eventline_shared::config::parse_or_exit();
    eventline_shared::telemetry::init(&config.telemetry)?;
    let shutdown = eventline_shared::shutdown::on_signal().context("installing signal handlers")?;
    let default_addr = DEFAULT_LISTEN.parse().context("default listen address")?;
    let addr = config.listen.addr_or(default_addr);
    let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
    let worker = worker::Worker::start(config, registry).await?;
    let listener = eventline_shared::server::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "worker listening");
    worker::run(worker, listener, shutdown).await?;
    Ok(())
}
