//! `query-api`: parse the configuration, set up logging, bind, run.

use anyhow::Context;
use query_api::config::{Config, DEFAULT_ADDR};

// mimalloc: a page allocates per row and per field; glibc malloc was ~13% of
// the query-api's CPU under load (docs/adr/0030-query-api-reads.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = eventline_shared::config::parse_or_exit();
    eventline_shared::telemetry::init(&config.telemetry)?;
    if let Err(e) = config.check() {
        eprintln!("query-api: {e}");
        std::process::exit(64);
    }
    let shutdown = eventline_shared::shutdown::on_signal().context("installing signal handlers")?;
    let listener = eventline_shared::server::bind(config.listen.addr_or(DEFAULT_ADDR)).await?;
    if let Err(e) = query_api::run(config, listener, shutdown).await {
        eprintln!("query-api: {e}");
        std::process::exit(e.exit_code());
    }
    Ok(())
}
