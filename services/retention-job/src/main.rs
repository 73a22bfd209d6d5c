//! `retention-job`: see the library crate for the modes and modules.

use anyhow::Context;
use eventline_shared::{config, metrics, server, shutdown, telemetry};
use retention_job::{Cli, Command, schedule};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = config::parse_or_exit();
    let registry = metrics::new_registry(retention_job::COMPONENT);
    match cli.command {
        Command::Run(args) => {
            telemetry::init(&args.telemetry)?;
            let shutdown = shutdown::on_signal().context("installing signal handlers")?;
            let mut stdout = std::io::stdout().lock();
            retention_job::run_once(&args, &registry, &shutdown, &mut stdout).await?;
        }
        Command::Schedule(args) => {
            telemetry::init(&args.job.telemetry)?;
            let shutdown = shutdown::on_signal().context("installing signal handlers")?;
            let listener = server::bind(args.listen.addr_or(schedule::DEFAULT_LISTEN)).await?;
            retention_job::run_schedule(&args, listener, registry, shutdown).await?;
        }
    }
    Ok(())
}
