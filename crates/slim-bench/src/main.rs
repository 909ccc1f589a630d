use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = slim_bench::cli::Args::parse();
    slim_bench::cli::run(&args)?;
    Ok(())
}
