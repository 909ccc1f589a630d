//! `slim-train`: see [`slim_train::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = slim_train::cli::Cli::parse();
    slim_cli::main("slim-train", || {
        slim_train::cli::run(cli).map(|()| ExitCode::SUCCESS)
    })
}
