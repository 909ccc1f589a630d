//! `slim-serve`: see [`slim_serve::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = slim_serve::cli::Args::parse();
    slim_cli::main("slim-serve", || slim_serve::cli::run(&args))
}
