//! `worker`: parse the configuration, set up logging, bind the health port,
//! connect, and move events until SIGTERM. See the library crate.

use anyhow::Context;
use worker::config::{Config, DEFAULT_ADDR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = eventline_shared::config::parse_or_exit();
    eventline_shared::telemetry::init(&config.telemetry)?;
    let shutdown = eventline_shared::shutdown::on_signal().context("installing signal handlers")?;
    let listener = eventline_shared::server::bind(config.listen.addr_or(DEFAULT_ADDR)).await?;
    let registry = eventline_shared::metrics::new_registry(worker::COMPONENT);
    let worker = match worker::Worker::start(config, registry).await {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(e.exit_code());
        }
    };
    worker::run(worker, listener, shutdown).await?;
    Ok(())
}
