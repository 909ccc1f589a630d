use clap::Parser;

fn main() -> anyhow::Result<()> {
    slim_train::cli::run(slim_train::cli::Cli::parse())
}
