//! `slim-export --checkpoint C (--width W | --all) --out DIR`: see [`slim_onnx::cli::Args`].

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use slim_onnx::cli::{Args, table};

fn main() -> ExitCode {
    let args = Args::parse();
    slim_cli::main("slim-export", || {
        let report = slim_onnx::export_with(&args.checkpoint, &args.options(), &args.out)?;
        std::io::stdout()
            .lock()
            .write_all(table(&report).as_bytes())
            .context("writing the summary to stdout")?;
        Ok(ExitCode::SUCCESS)
    })
}
