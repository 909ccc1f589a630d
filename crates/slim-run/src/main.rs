//! `slim-run`: see [`slim_run::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = slim_run::cli::Args::parse();
    match slim_run::cli::run(&args, &mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
