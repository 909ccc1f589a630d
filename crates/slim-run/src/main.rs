//! `slim-run`: see [`slim_run::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = slim_run::cli::Args::parse();
    slim_cli::main("slim-run", || {
        slim_run::cli::run(&args, &mut std::io::stdout().lock())
    })
}
