//! `slim-bench`: see [`slim_bench::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = slim_bench::cli::Args::parse();
    slim_cli::main("slim-bench", || {
        slim_bench::cli::run(&args).map(|_| ExitCode::SUCCESS)
    })
}
