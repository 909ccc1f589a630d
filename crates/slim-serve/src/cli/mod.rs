//! The `slim-serve` command: `serve` runs the service, `load` soaks one with clients.

mod load;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "slim-serve",
    about = "Serve an exported slimmable model over HTTP within a p95 latency target, or load such a service"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Serve(serve::Serve),
    Load(load::Load),
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Serve(a) => serve::run(a),
        Command::Load(a) => load::run(a),
    }
}
