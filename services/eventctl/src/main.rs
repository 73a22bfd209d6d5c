//! `eventctl`: see the library crate for the commands.

use eventctl::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = eventline_shared::config::parse_or_exit();
    let mut stdout = std::io::stdout().lock();
    eventctl::run(cli, &mut stdout).await?;
    Ok(())
}
