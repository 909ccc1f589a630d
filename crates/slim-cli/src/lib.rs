//! `slim-cli`: what every slim command shares and no library does.
//!
//! - [`Reporter`]: draws the [`slim_core::Progress`] that libraries report, as a bar on a
//!   terminal and as a plain line every few seconds when stderr goes to a file or a pipe;
//! - [`main`]: runs a command and prints its error the same way in every binary,
//!   `slim-X: error: what failed: why`, with the whole cause chain.

mod reporter;

use std::process::ExitCode;

pub use reporter::Reporter;

/// Runs `command`; an error is printed as `name: error: ...` with its causes and gives
/// exit status 1.
pub fn main(name: &str, command: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    match command() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
