//! `eventline-load`: parse the command line, run the command, print the result.

use clap::Parser;
use eventline_load::cli::{Cli, Command};
use eventline_load::{bench_report, ceiling};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let report =
                eventline_load::runtime(args.threads)?.block_on(eventline_load::run(&args))?;
            print!("{}", report.render());
            let failed = report
                .e2e
                .as_ref()
                .is_some_and(|e| e.lost > 0 || e.duplicates > 0);
            std::process::exit(i32::from(failed));
        }
        Command::CopyCeiling(args) => {
            let shape = args.shape.shape().map_err(anyhow::Error::msg)?;
            let result = eventline_load::runtime(1)?.block_on(ceiling::copy_ceiling(
                &args.database_url,
                &shape,
                args.rows,
                args.chunk,
            ))?;
            let json = serde_json::to_string_pretty(&result)?;
            if let Some(path) = &args.json {
                std::fs::write(path, &json)?;
            }
            println!("{json}");
        }
        Command::EntrySize(args) => {
            let shape = args.shape.shape().map_err(anyhow::Error::msg)?;
            println!("{}", ceiling::entry_size(&shape, args.samples));
        }
        Command::BenchReport { dir } => print!("{}", bench_report::report(&dir)?),
        Command::Chaos(args) => {
            let summary =
                eventline_load::runtime(2)?.block_on(eventline_load::chaos::run(&args))?;
            print!("{}", summary.render());
            std::process::exit(i32::from(!summary.ok()));
        }
    }
    Ok(())
}
